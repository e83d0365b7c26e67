//! Configuration: one typed struct per INI section, declared once with each option's type,
//! default and one-line help. The sample config (`etc/fresco.conf.sample`) is generated from
//! these declarations, so code and documentation cannot drift apart.
//!
//! The file format is OpenStack's INI dialect: `[section]` headers, `key = value` lines,
//! `#` or `;` comments. Unknown options are reported as warnings (a typo should be visible,
//! but an option meant for a newer release must not stop a service).

mod ini;
mod sections;
mod value;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use sections::*;
pub use value::OptionValue;

/// The default location of the configuration file.
pub const DEFAULT_CONFIG_FILE: &str = "/etc/fresco/fresco.conf";

/// Error while reading or interpreting the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot read config directory {path}: {source}")]
    ReadDir {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Syntax {
        path: String,
        line: usize,
        message: String,
    },
    #[error("[{section}] {option}: {message}")]
    Value {
        section: &'static str,
        option: &'static str,
        message: String,
    },
}

/// Documentation of one option, used for the sample config and for validation.
#[derive(Debug, Clone, Copy)]
pub struct OptionDoc {
    pub name: &'static str,
    pub type_name: &'static str,
    pub default: &'static str,
    pub help: &'static str,
    pub secret: bool,
}

/// One INI section as a typed struct.
pub trait Section: Sized {
    /// The `[name]` of the section in the file.
    const NAME: &'static str;
    /// What the section configures, one line.
    const HELP: &'static str;
    /// Every option of the section, in declaration order.
    fn options() -> &'static [OptionDoc];
    /// Builds the section from raw values; options absent from `raw` take their defaults.
    fn from_raw(raw: &BTreeMap<String, String>) -> Result<Self, ConfigError>;
}

/// Raw key/value pairs per section, as read from the file(s).
#[derive(Debug, Default, Clone)]
pub struct RawConfig {
    sections: BTreeMap<String, BTreeMap<String, String>>,
    /// Where each `(section, option)` was last set (for messages about it).
    origins: BTreeMap<(String, String), String>,
}

impl RawConfig {
    /// Parses INI text; `origin` names the source in error messages.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let sections = ini::parse(text, origin)?;
        let origins = sections
            .iter()
            .flat_map(|(section, values)| {
                values
                    .keys()
                    .map(move |option| ((section.clone(), option.clone()), origin.to_owned()))
            })
            .collect();
        Ok(Self { sections, origins })
    }

    /// Reads and parses a file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Reads the files in order into one configuration, as oslo.config layers its
    /// `--config-file`s: a value in a later file overrides the same option in an earlier one.
    pub fn load_files(paths: &[PathBuf]) -> Result<Self, ConfigError> {
        let mut merged = Self::default();
        for path in paths {
            merged.merge(Self::load(path)?);
        }
        Ok(merged)
    }

    /// Lays `other` over this configuration: its options win.
    pub fn merge(&mut self, other: RawConfig) {
        for (section, values) in other.sections {
            self.sections.entry(section).or_default().extend(values);
        }
        self.origins.extend(other.origins);
    }

    /// The file (or other source) that set `[section] option`, when it was set.
    pub fn origin(&self, section: &str, option: &str) -> Option<&str> {
        self.origins
            .get(&(section.to_owned(), option.to_owned()))
            .map(String::as_str)
    }

    /// Sets one value, as a command-line override would.
    pub fn set(&mut self, section: &str, option: &str, value: &str) {
        self.sections
            .entry(section.to_owned())
            .or_default()
            .insert(option.to_owned(), value.to_owned());
    }

    /// The typed view of one section.
    pub fn section<S: Section>(&self) -> Result<S, ConfigError> {
        static EMPTY: BTreeMap<String, String> = BTreeMap::new();
        S::from_raw(self.sections.get(S::NAME).unwrap_or(&EMPTY))
    }

    /// Options present in the file that no known section declares: `(section, option)`.
    pub fn unknown_options(&self) -> Vec<(String, String)> {
        let mut unknown = Vec::new();
        for (section, values) in &self.sections {
            let known = ALL_SECTIONS.iter().find(|s| s.name == section.as_str());
            for option in values.keys() {
                let declared =
                    known.is_some_and(|s| (s.options)().iter().any(|o| o.name == option.as_str()));
                if !declared {
                    unknown.push((section.clone(), option.clone()));
                }
            }
        }
        unknown
    }
}

/// The files of a config directory that oslo.config's `--config-dir` reads: every `*.conf`
/// (not hidden) directly in it, sorted by name.
pub fn config_dir_files(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let read_dir = |source| ConfigError::ReadDir {
        path: dir.display().to_string(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_dir)? {
        let path = entry.map_err(read_dir)?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.ends_with(".conf") && !name.starts_with('.') && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// The documentation of one section, for the sample generator.
pub struct SectionDoc {
    pub name: &'static str,
    pub help: &'static str,
    pub options: fn() -> &'static [OptionDoc],
}

/// Renders the sample configuration file from the option declarations.
pub fn sample_config() -> String {
    let mut out = String::from(
        "# Fresco configuration sample.\n\
         # Generated from the code by `fresco-api --print-sample-config`; do not edit by hand.\n\
         # Every option is shown commented out with its default value.\n",
    );
    for section in ALL_SECTIONS {
        out.push_str(&format!("\n[{}]\n# {}\n", section.name, section.help));
        for option in (section.options)() {
            out.push_str(&format!(
                "\n# {} ({})\n#{} = {}\n",
                option.help, option.type_name, option.name, option.default
            ));
        }
    }
    out
}

/// Declares a configuration section: the struct, its defaults, its docs and its parser.
///
/// ```text
/// config_section! {
///     /// Help for the section.
///     pub struct ApiSection("api") {
///         /// Address to listen on.
///         bind_host: String = "127.0.0.1",
///     }
/// }
/// ```
#[macro_export]
macro_rules! config_section {
    (
        #[doc = $section_help:literal]
        pub struct $name:ident($section:literal) {
            $(
                #[doc = $help:literal]
                $(#[$attr:ident])?
                $field:ident : $ty:ty = $default:literal
            ),* $(,)?
        }
    ) => {
        #[doc = $section_help]
        #[derive(Debug, Clone, PartialEq)]
        pub struct $name {
            $( #[doc = $help] pub $field: $ty, )*
        }

        impl $crate::conf::Section for $name {
            const NAME: &'static str = $section;
            const HELP: &'static str = $section_help;

            fn options() -> &'static [$crate::conf::OptionDoc] {
                const OPTIONS: &[$crate::conf::OptionDoc] = &[$(
                    $crate::conf::OptionDoc {
                        name: stringify!($field),
                        type_name: <$ty as $crate::conf::OptionValue>::TYPE_NAME,
                        default: $default,
                        help: $help.trim_ascii(),
                        secret: $crate::config_section!(@secret $($attr)?),
                    },
                )*];
                OPTIONS
            }

            fn from_raw(
                raw: &::std::collections::BTreeMap<String, String>,
            ) -> Result<Self, $crate::conf::ConfigError> {
                Ok(Self {
                    $(
                        $field: {
                            let text = raw.get(stringify!($field)).map(String::as_str).unwrap_or($default);
                            <$ty as $crate::conf::OptionValue>::parse_option(text).map_err(|message| {
                                $crate::conf::ConfigError::Value {
                                    section: $section,
                                    option: stringify!($field),
                                    message,
                                }
                            })?
                        },
                    )*
                })
            }
        }

        impl Default for $name {
            fn default() -> Self {
                static EMPTY: ::std::collections::BTreeMap<String, String> =
                    ::std::collections::BTreeMap::new();
                <Self as $crate::conf::Section>::from_raw(&EMPTY)
                    .expect(concat!("defaults of [", $section, "] must parse"))
            }
        }
    };
    (@secret secret) => { true };
    (@secret) => { false };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_default_parses() {
        // Default::default() panics if a declared default does not parse as its type.
        let raw = RawConfig::default();
        for section in ALL_SECTIONS {
            assert!(
                !(section.options)().is_empty(),
                "[{}] has no options",
                section.name
            );
        }
        raw.section::<DefaultSection>().expect("DEFAULT");
        raw.section::<DatabaseSection>().expect("database");
        raw.section::<ApiSection>().expect("api");
        raw.section::<KeystoneAuthtokenSection>()
            .expect("keystone_authtoken");
        raw.section::<QuotaSection>().expect("quota");
        raw.section::<SchedulerSection>().expect("scheduler");
        raw.section::<AgentSection>().expect("agent");
        raw.section::<OsloPolicySection>().expect("oslo_policy");
    }

    #[test]
    fn values_override_defaults_and_bad_values_name_the_option() {
        let mut raw = RawConfig::parse("[api]\nbind_port = 9999\n", "test").expect("parse");
        assert_eq!(raw.section::<ApiSection>().expect("api").bind_port, 9999);
        raw.set("api", "bind_port", "ninety");
        let err = raw
            .section::<ApiSection>()
            .expect_err("must fail")
            .to_string();
        assert!(err.contains("[api] bind_port"), "{err}");
    }

    #[test]
    fn unknown_options_are_reported() {
        let raw = RawConfig::parse("[api]\nbind_prot = 1\n[nope]\nx = 1\n", "test").expect("parse");
        let unknown = raw.unknown_options();
        assert!(unknown.contains(&("api".into(), "bind_prot".into())));
        assert!(unknown.contains(&("nope".into(), "x".into())));
        assert_eq!(unknown.len(), 2);
    }

    #[test]
    fn later_files_override_earlier_ones_and_remember_where_values_came_from() {
        let dir = std::env::temp_dir().join(format!("fresco-conf-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(dir.join("fresco.conf.d")).expect("mkdir");
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).expect("write");
            path
        };
        let base = write(
            "base.conf",
            "[api]\nbind_port = 1\nworkers = 3\n[DEFAULT]\ndebug = true\n",
        );
        let local = write("local.conf", "[api]\nbind_port = 2\n");
        write("fresco.conf.d/20-b.conf", "[api]\nbind_port = 4\n");
        write(
            "fresco.conf.d/10-a.conf",
            "[api]\nbind_port = 3\nworkers = 5\n",
        );
        write("fresco.conf.d/30-c.conf.bak", "[api]\nbind_port = 99\n");
        write("fresco.conf.d/.40-hidden.conf", "[api]\nbind_port = 98\n");

        let raw = RawConfig::load_files(&[base.clone(), local.clone()]).expect("load");
        let api = raw.section::<ApiSection>().expect("api");
        assert_eq!((api.bind_port, api.workers), (2, 3));
        assert!(raw.section::<DefaultSection>().expect("DEFAULT").debug);
        assert_eq!(
            raw.origin("api", "bind_port"),
            Some(local.display().to_string().as_str())
        );
        assert_eq!(
            raw.origin("api", "workers"),
            Some(base.display().to_string().as_str())
        );

        let in_dir = config_dir_files(&dir.join("fresco.conf.d")).expect("dir");
        let names: Vec<_> = in_dir
            .iter()
            .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["10-a.conf", "20-b.conf"]);
        let mut files = vec![base, local];
        files.extend(in_dir);
        let api = RawConfig::load_files(&files)
            .expect("load")
            .section::<ApiSection>()
            .expect("api");
        assert_eq!((api.bind_port, api.workers), (4, 5));

        let missing = config_dir_files(&dir.join("nope")).expect_err("missing dir");
        assert!(
            missing
                .to_string()
                .starts_with("cannot read config directory "),
            "{missing}"
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn committed_sample_is_current() {
        let committed = include_str!("../../../etc/fresco.conf.sample");
        assert!(
            committed == sample_config(),
            "etc/fresco.conf.sample is stale: regenerate it with \
             `cargo run -q -p fresco-api -- --print-sample-config > etc/fresco.conf.sample`"
        );
    }

    #[test]
    fn sample_lists_every_option_of_every_section() {
        let sample = sample_config();
        for section in ALL_SECTIONS {
            assert!(sample.contains(&format!("[{}]", section.name)));
            for option in (section.options)() {
                assert!(
                    sample.contains(&format!("#{} = ", option.name)),
                    "{}",
                    option.name
                );
            }
        }
    }
}
