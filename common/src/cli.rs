//! The command line and start-up routine every Fresco service binary shares (feature `cli`).
//!
//! Each binary declares its own flags as a clap `Parser` that flattens [`ConfigArgs`], and
//! hands its body to [`run`]:
//!
//! ```text
//! #[derive(clap::Parser)]
//! #[command(name = "fresco-x", version, about = "...")]
//! struct Cli {
//!     #[command(flatten)]
//!     config: ConfigArgs,
//! }
//!
//! fn main() -> ExitCode {
//!     cli::run(|args: Cli| -> anyhow::Result<()> { ... })
//! }
//! ```
//!
//! What every binary gets, as OpenStack services behave under oslo.config:
//! - `--config-file PATH`, repeatable: the files are read in order and a later file overrides
//!   an option set by an earlier one. Without it, `/etc/fresco/fresco.conf`.
//! - `--config-dir DIR`, repeatable: every `*.conf` in DIR (sorted by name) is read after all
//!   the `--config-file`s. With a `--config-dir` and no `--config-file`, the default file is
//!   read only when it exists.
//! - `--help` and `--version` (exit status 0).
//! - Errors as one line on stderr, `NAME: error: MESSAGE`, never a backtrace: status 2 for a
//!   command-line mistake, 1 for anything that fails after parsing (configuration, start-up).

use std::error::Error;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{Args, Parser};

use crate::conf::{self, ConfigError, RawConfig};

/// The configuration options of every binary.
#[derive(Debug, Clone, Default, Args)]
pub struct ConfigArgs {
    /// Configuration file; repeat it to layer files (later files override earlier ones)
    /// [default: /etc/fresco/fresco.conf]
    #[arg(long = "config-file", value_name = "PATH", value_parser = non_empty_path)]
    pub config_files: Vec<PathBuf>,
    /// Directory whose *.conf files are read, sorted by name, after every --config-file
    #[arg(long = "config-dir", value_name = "DIR", value_parser = non_empty_path)]
    pub config_dirs: Vec<PathBuf>,
}

fn non_empty_path(text: &str) -> Result<PathBuf, String> {
    if text.is_empty() {
        Err("the path is empty".to_owned())
    } else {
        Ok(PathBuf::from(text))
    }
}

/// The configuration as loaded from the command line's files.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub raw: RawConfig,
    /// The files read, in the order they were applied.
    pub files: Vec<PathBuf>,
}

impl ConfigArgs {
    /// The files to read, in order: the `--config-file`s (or the default file), then each
    /// `--config-dir`'s `*.conf` files.
    pub fn files(&self) -> Result<Vec<PathBuf>, ConfigError> {
        let mut files = self.config_files.clone();
        if files.is_empty() {
            let default = PathBuf::from(conf::DEFAULT_CONFIG_FILE);
            if self.config_dirs.is_empty() || default.exists() {
                files.push(default);
            }
        }
        for dir in &self.config_dirs {
            files.extend(conf::config_dir_files(dir)?);
        }
        Ok(files)
    }

    /// Reads and layers the configuration files.
    pub fn load(&self) -> Result<LoadedConfig, ConfigError> {
        let files = self.files()?;
        Ok(LoadedConfig {
            raw: RawConfig::load_files(&files)?,
            files,
        })
    }
}

impl LoadedConfig {
    /// Starts logging (`debug` from `[DEFAULT] debug`; `RUST_LOG` overrides the level) and
    /// warns about every option no section declares, naming the file that set it.
    pub fn init_logging(&self, debug: bool) {
        let level = if debug { "debug" } else { "info" };
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level)).init();
        for (section, option) in self.raw.unknown_options() {
            log::warn!(
                "unknown option [{section}] {option} in {}",
                self.raw
                    .origin(&section, &option)
                    .unwrap_or("the configuration")
            );
        }
    }
}

/// The error of a binary's body: anything that converts into a boxed error (`anyhow::Error`
/// does), rendered with its chain of causes on one line.
pub type BoxError = Box<dyn Error + Send + Sync + 'static>;

/// Parses the process's command line into `A`, runs `body`, and turns the outcome into an
/// exit status (see the module documentation).
pub fn run<A, E>(body: impl FnOnce(A) -> Result<(), E>) -> ExitCode
where
    A: Parser,
    E: Into<BoxError>,
{
    run_from(std::env::args_os(), body)
}

/// [`run`] with explicit arguments (the first is the program name).
pub fn run_from<A, E, I, T>(args: I, body: impl FnOnce(A) -> Result<(), E>) -> ExitCode
where
    A: Parser,
    E: Into<BoxError>,
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let name = A::command().get_name().to_owned();
    let parsed = match A::try_parse_from(args) {
        Ok(parsed) => parsed,
        Err(err) => return usage_error(&name, &err),
    };
    match body(parsed) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{name}: error: {}", one_line(&*err.into()));
            ExitCode::FAILURE
        }
    }
}

/// `--help`/`--version` print and succeed; a mistake is one line and status 2.
fn usage_error(name: &str, err: &clap::Error) -> ExitCode {
    match err.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            // Printing help can only fail on a closed stdout; nothing is left to report then.
            let _ = err.print();
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{name}: error: {}", clap_message(err));
            ExitCode::from(2)
        }
    }
}

/// clap's message without its usage block: the first line, and its tips in parentheses.
fn clap_message(err: &clap::Error) -> String {
    let text = err.to_string();
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or("invalid command line");
    let mut message = first.strip_prefix("error: ").unwrap_or(first).to_owned();
    for tip in lines.filter(|l| l.starts_with("tip: ")) {
        message.push_str(&format!(" ({tip})"));
    }
    message.push_str(" (see --help)");
    message
}

/// An error and its causes on one line: `outer: cause: root cause`. A cause whose text the
/// outer message already includes (thiserror's `{source}`) is not repeated.
pub fn one_line(err: &(dyn Error + 'static)) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Parser)]
    #[command(name = "fresco-test", version = "9.9.9")]
    struct Cli {
        #[command(flatten)]
        config: ConfigArgs,
        /// A flag of this binary
        #[arg(long)]
        db_sync: bool,
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("fresco-test").chain(args.iter().copied()))
    }

    #[test]
    fn config_files_repeat_in_both_spellings_and_dirs_come_after() {
        let cli = parse(&[
            "--config-dir",
            "/nonexistent-d",
            "--config-file=/a.conf",
            "--db-sync",
            "--config-file",
            "/b.conf",
        ])
        .expect("parses");
        assert_eq!(
            cli.config.config_files,
            [PathBuf::from("/a.conf"), PathBuf::from("/b.conf")]
        );
        assert!(cli.db_sync);
        let err = cli.config.files().expect_err("the directory is missing");
        assert!(err.to_string().contains("/nonexistent-d"), "{err}");
    }

    #[test]
    fn without_files_the_default_is_read() {
        let cli = parse(&[]).expect("parses");
        assert_eq!(
            cli.config.files().expect("files"),
            [PathBuf::from(conf::DEFAULT_CONFIG_FILE)]
        );
    }

    #[test]
    fn mistakes_are_one_line_with_tips() {
        for (args, fragment) in [
            (
                vec!["--config_file", "x"],
                "unexpected argument '--config_file' found",
            ),
            (
                vec!["--config-file"],
                "a value is required for '--config-file",
            ),
            (vec!["--config-file="], "the path is empty"),
            (vec!["stray"], "unexpected argument 'stray' found"),
        ] {
            let err = parse(&args).expect_err("a mistake");
            let message = clap_message(&err);
            assert!(message.contains(fragment), "{args:?}: {message}");
            assert!(!message.contains('\n'), "{args:?}: {message}");
            assert!(message.ends_with("(see --help)"), "{message}");
        }
        let err = parse(&["--config_file", "x"]).expect_err("a mistake");
        assert!(
            clap_message(&err).contains("tip: a similar argument exists: '--config-file'"),
            "{}",
            clap_message(&err)
        );
    }

    #[test]
    fn help_and_version_succeed() {
        assert_eq!(
            run_from(["fresco-test", "--version"], |_: Cli| Ok::<_, BoxError>(())),
            ExitCode::SUCCESS
        );
        assert_eq!(
            run_from(["fresco-test", "--bogus"], |_: Cli| Ok::<_, BoxError>(())),
            ExitCode::from(2)
        );
        assert_eq!(
            run_from(["fresco-test"], |_: Cli| Err::<(), _>("boom")),
            ExitCode::FAILURE
        );
    }

    #[test]
    fn causes_are_joined_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let err = ConfigError::Read {
            path: "/x.conf".into(),
            source: io,
        };
        assert_eq!(
            one_line(&err),
            "cannot read config file /x.conf: no such file"
        );
        #[derive(Debug, thiserror::Error)]
        #[error("cannot start\nthe service")]
        struct Outer(#[source] ConfigError);
        let outer = Outer(ConfigError::Syntax {
            path: "f".into(),
            line: 2,
            message: "bad".into(),
        });
        assert_eq!(one_line(&outer), "cannot start the service: f:2: bad");
    }
}
