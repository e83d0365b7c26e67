//! Authorization: named rules in the oslo.policy language, defaults in code
//! ([`DEFAULT_RULES`]), operator overrides from a YAML file, parsed once at startup.
//!
//! ```
//! use fresco_auth::policy::{Enforcer, Target};
//! # use fresco_auth::{NoAuth};
//! let enforcer = Enforcer::defaults();
//! let caller = NoAuth::default().parse("alice:p1:reader").expect("token");
//! assert!(enforcer.enforce("function:list", &caller, &Target::project("p1")).is_ok());
//! assert!(enforcer.enforce("function:create", &caller, &Target::project("p1")).is_err());
//! ```

mod check;
mod defaults;

use std::collections::HashMap;
use std::path::Path;

use fresco_common::conf::{OsloPolicySection, RawConfig};
use yaml_rust2::{Yaml, YamlLoader};

use self::check::Check;
pub use self::defaults::{default_policy_yaml, Operation, RuleDefault, DEFAULT_RULES};
use crate::Context;

/// Why an action is refused, or the policy could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The caller may not perform the action (HTTP 403; the message names the rule).
    #[error("policy does not allow {rule} to be performed")]
    Forbidden { rule: String },
    /// The code asked about a rule that does not exist: a programming error (HTTP 500).
    #[error("unknown policy rule {0:?}")]
    UnknownRule(String),
    /// A rule does not parse, refers to an unknown rule, or is part of a cycle.
    #[error("{origin}: rule {rule:?}: {message}")]
    InvalidRule {
        origin: String,
        rule: String,
        message: String,
    },
    /// The policy file cannot be read or is not a YAML mapping of rule names to strings.
    #[error("policy file {path}: {message}")]
    File { path: String, message: String },
}

/// The object an action is performed on, as the rules see it (`%(project_id)s`, `%(user_id)s`).
/// Borrowed, so building one costs nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Target<'a> {
    /// The project owning the object (for lists and creations: the project listed or created in).
    pub project_id: Option<&'a str>,
    /// The user owning the object, where it has one.
    pub user_id: Option<&'a str>,
}

impl<'a> Target<'a> {
    /// An object of `project_id`.
    pub fn project(project_id: &'a str) -> Self {
        Self {
            project_id: Some(project_id),
            user_id: None,
        }
    }

    /// The caller's own project (and user): the target of lists and creations in its project.
    pub fn own(ctx: &'a Context) -> Self {
        Self {
            project_id: ctx.project_id.as_deref(),
            user_id: Some(&ctx.user_id),
        }
    }

    /// The same target, owned by `user_id`.
    pub fn with_user(self, user_id: &'a str) -> Self {
        Self {
            user_id: Some(user_id),
            ..self
        }
    }
}

struct Rule {
    name: Box<str>,
    text: String,
    overridden: bool,
}

/// The loaded policy: every rule parsed, references resolved, cycles refused. Cheap to share
/// (`Arc<Enforcer>`); enforcing allocates nothing unless it refuses.
pub struct Enforcer {
    index: HashMap<Box<str>, usize>,
    rules: Vec<Rule>,
    checks: Vec<Check>,
}

impl Enforcer {
    /// The defaults in code, without overrides.
    pub fn defaults() -> Self {
        // The defaults are code; a unit test proves they load.
        Self::build(&[], "policy defaults").unwrap_or_else(|e| panic!("{e}"))
    }

    /// The defaults with the overrides of a YAML document (`"rule": "check"` pairs). Rules the
    /// defaults do not know may be added, e.g. base rules others refer to.
    pub fn from_yaml(text: &str, origin: &str) -> Result<Self, PolicyError> {
        let file_error = |message: String| PolicyError::File {
            path: origin.to_owned(),
            message,
        };
        let docs = YamlLoader::load_from_str(text).map_err(|e| file_error(e.to_string()))?;
        let mut overrides = Vec::new();
        match docs.as_slice() {
            [] | [Yaml::Null] => {}
            [Yaml::Hash(map)] => {
                for (key, value) in map {
                    let Yaml::String(name) = key else {
                        return Err(file_error(format!(
                            "rule names must be strings, got {key:?}"
                        )));
                    };
                    let check = match value {
                        Yaml::String(check) => check.clone(),
                        Yaml::Null => String::new(),
                        other => {
                            return Err(PolicyError::InvalidRule {
                                origin: origin.to_owned(),
                                rule: name.clone(),
                                message: format!("the rule must be a string, got {other:?}"),
                            })
                        }
                    };
                    overrides.push((name.clone(), check));
                }
            }
            [_] => {
                return Err(file_error(
                    "expected a mapping of rule names to rules".into(),
                ))
            }
            _ => return Err(file_error("expected a single YAML document".into())),
        }
        Self::build(&overrides, origin)
    }

    /// The defaults with the overrides of `path`; a missing file means no overrides.
    pub fn from_file(path: &Path) -> Result<Self, PolicyError> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let enforcer = Self::from_yaml(&text, &path.display().to_string())?;
                log::info!(
                    "policy: {} rule(s) overridden by {}",
                    enforcer.overridden().count(),
                    path.display()
                );
                Ok(enforcer)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                log::info!("policy: no {}, using the defaults", path.display());
                Ok(Self::defaults())
            }
            Err(e) => Err(PolicyError::File {
                path: path.display().to_string(),
                message: e.to_string(),
            }),
        }
    }

    /// The policy `[oslo_policy] policy_file` names.
    pub fn from_config(raw: &RawConfig) -> Result<Self, PolicyError> {
        let section: OsloPolicySection = raw.section().map_err(|e| PolicyError::File {
            path: "[oslo_policy] policy_file".into(),
            message: e.to_string(),
        })?;
        Self::from_file(Path::new(&section.policy_file))
    }

    fn build(overrides: &[(String, String)], origin: &str) -> Result<Self, PolicyError> {
        let mut rules: Vec<Rule> = DEFAULT_RULES
            .iter()
            .map(|d| Rule {
                name: d.name.into(),
                text: d.check.to_owned(),
                overridden: false,
            })
            .collect();
        let mut index: HashMap<Box<str>, usize> = rules
            .iter()
            .enumerate()
            .map(|(i, r)| (r.name.clone(), i))
            .collect();
        for (name, text) in overrides {
            match index.get(name.as_str()) {
                Some(&i) => {
                    rules[i].text = text.clone();
                    rules[i].overridden = true;
                }
                None => {
                    index.insert(name.as_str().into(), rules.len());
                    rules.push(Rule {
                        name: name.as_str().into(),
                        text: text.clone(),
                        overridden: true,
                    });
                }
            }
        }
        let invalid = |rule: &Rule, message: String| PolicyError::InvalidRule {
            origin: if rule.overridden {
                origin.to_owned()
            } else {
                "policy defaults".to_owned()
            },
            rule: rule.name.to_string(),
            message,
        };
        let checks = rules
            .iter()
            .map(|rule| check::parse(&rule.text, &index).map_err(|m| invalid(rule, m)))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(i) = find_cycle(&checks) {
            return Err(invalid(
                &rules[i],
                "the rule refers to itself through rule: references".into(),
            ));
        }
        Ok(Self {
            index,
            rules,
            checks,
        })
    }

    /// `Ok(())` if `ctx` may perform `rule` on `target`.
    pub fn enforce(
        &self,
        rule: &str,
        ctx: &Context,
        target: &Target<'_>,
    ) -> Result<(), PolicyError> {
        if self.check(rule, ctx, target)? {
            Ok(())
        } else {
            Err(PolicyError::Forbidden {
                rule: rule.to_owned(),
            })
        }
    }

    /// Whether `ctx` may perform `rule` on `target`; an error only for an unknown rule.
    pub fn check(
        &self,
        rule: &str,
        ctx: &Context,
        target: &Target<'_>,
    ) -> Result<bool, PolicyError> {
        let index = *self
            .index
            .get(rule)
            .ok_or_else(|| PolicyError::UnknownRule(rule.to_owned()))?;
        Ok(self.checks[index].eval(ctx, target, &self.checks))
    }

    /// The effective text of a rule.
    pub fn rule(&self, name: &str) -> Option<&str> {
        self.index.get(name).map(|&i| self.rules[i].text.as_str())
    }

    /// Names of the rules the policy file set.
    pub fn overridden(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().filter(|r| r.overridden).map(|r| &*r.name)
    }
}

/// The index of a rule on a `rule:` reference cycle, if any (iterative depth-first search).
fn find_cycle(checks: &[Check]) -> Option<usize> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    let edges: Vec<Vec<usize>> = checks
        .iter()
        .map(|c| {
            let mut out = Vec::new();
            c.references(&mut out);
            out
        })
        .collect();
    let mut marks = vec![Mark::New; checks.len()];
    for start in 0..checks.len() {
        if marks[start] != Mark::New {
            continue;
        }
        let mut stack = vec![(start, 0usize)];
        marks[start] = Mark::Open;
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            if let Some(&child) = edges[node].get(*next) {
                *next += 1;
                match marks[child] {
                    Mark::Open => return Some(child),
                    Mark::New => {
                        marks[child] = Mark::Open;
                        stack.push((child, 0));
                    }
                    Mark::Done => {}
                }
            } else {
                marks[node] = Mark::Done;
                stack.pop();
            }
        }
    }
    None
}

#[cfg(test)]
mod tests;
