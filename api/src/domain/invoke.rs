//! Resolving what an invocation runs: the function, the version (explicit, via an alias with
//! its traffic split, or the latest state), its runtime, and the project's limits.

use std::sync::Arc;

use fresco_common::conf::QuotaSection;
use fresco_common::wire::FunctionSpec;
use fresco_store::PgConnection;

use super::quotas::{self, Limits};
use super::{db_error, DomainError, DomainResult};
use fresco_store::targets::{self, TargetError};
use fresco_store::{aliases, functions, Scope};

/// Which state of the function to run.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Selector {
    /// The function as it is now (version 0).
    Latest,
    Version(i32),
    /// An alias: it resolves to its version, or to its two versions with their weights.
    Alias(String),
}

/// Everything the invocation path needs, resolved once.
#[derive(Debug, Clone)]
pub struct Target {
    pub spec: FunctionSpec,
    pub alias: Option<String>,
    pub limits: Limits,
}

/// What a selector resolves to: one version, or an alias's two with the second's weight.
/// Cached as a whole (when every version can run); each invocation picks its version
/// afterwards ([`Resolved::pick`]). A version that cannot run keeps its refusal, so an alias
/// whose other version is broken still runs the invocations that roll the good one.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub function_id: uuid::Uuid,
    pub first: DomainResult<Arc<Target>>,
    /// An alias's second version and the percentage (0..=100) of invocations it takes.
    pub second: Option<(DomainResult<Arc<Target>>, u32)>,
    /// An alias's shadow version, when it has one that can run.
    pub shadow: Option<Shadow>,
}

/// An alias's shadow version: it gets a copy of `percent`% of the alias's invocations, each
/// compared with the primary's answer in comparison period `comparison_id`.
#[derive(Debug, Clone)]
pub struct Shadow {
    pub target: Arc<Target>,
    pub percent: u32,
    pub comparison_id: uuid::Uuid,
}

impl Resolved {
    /// The target of one invocation, given a uniform `roll` in 0..100: the alias's second
    /// version with probability its weight, else the first (as `aliases::route`).
    pub fn pick(&self, roll: u32) -> DomainResult<Arc<Target>> {
        match &self.second {
            Some((second, weight)) if roll < *weight => second.clone(),
            _ => self.first.clone(),
        }
    }

    /// The shadow that gets a copy of an invocation answered by `primary`, given a uniform
    /// `roll` in 0..100: with probability the shadow's percentage (never when the primary is
    /// the shadow version itself).
    pub fn shadow(&self, roll: u32, primary: &Target) -> Option<&Shadow> {
        self.shadow.as_ref().filter(|shadow| {
            roll < shadow.percent && shadow.target.spec.version != primary.spec.version
        })
    }

    /// Whether every version resolved (a refusal is not cached: it may be the database's).
    pub fn cacheable(&self) -> bool {
        self.first.is_ok()
            && self
                .second
                .as_ref()
                .is_none_or(|(second, _)| second.is_ok())
    }
}

/// Resolves what an invocation runs, and refuses (`Conflict`) a function that may no longer
/// run: its runtime disabled or no longer visible to its project (made private to another),
/// or its own image no longer within `allowed_image_prefixes`. These rules are checked on
/// every resolution, so with the API's target cache they hold within
/// `[api] function_cache_ttl` of the change.
pub fn resolve(
    conn: &mut PgConnection,
    quota_defaults: &QuotaSection,
    allowed_image_prefixes: &[String],
    scope: &Scope,
    key: &str,
    selector: &Selector,
) -> DomainResult<Resolved> {
    let function = functions::get_by_ref(conn, scope, key).map_err(db_error("function", key))?;
    let limits = quotas::limits(conn, quota_defaults, &function.project_id)?;
    let version = |conn: &mut PgConnection, alias: Option<String>, number: i32| {
        let rules = Rules {
            allowed_image_prefixes,
            key,
        };
        target(conn, &rules, &function, alias, number, limits.clone()).map(Arc::new)
    };
    let (first, second, shadow) = match selector {
        Selector::Latest => (version(conn, None, 0), None, None),
        Selector::Version(n) => (version(conn, None, *n), None, None),
        Selector::Alias(name) => {
            let alias = aliases::get(conn, &function.project_id, function.id, name)
                .map_err(db_error("alias", name))?;
            let first = version(conn, Some(alias.name.clone()), alias.version);
            let weight = u32::try_from(alias.second_weight).unwrap_or(0);
            let second = match alias.second_version {
                Some(second) if weight > 0 => {
                    Some((version(conn, Some(alias.name.clone()), second), weight))
                }
                _ => None,
            };
            let shadow = match alias.shadow_version {
                Some(number) if alias.shadow_percent > 0 => {
                    shadow(conn, &alias, number, |conn, n| {
                        version(conn, Some(alias.name.clone()), n)
                    })?
                }
                _ => None,
            };
            (first, second, shadow)
        }
    };
    Ok(Resolved {
        function_id: function.id,
        first,
        second,
        shadow,
    })
}

/// The alias's shadow, or `None` when its version cannot run now (its copies are then not
/// taken: the primary's invocations are never refused for their shadow) or no comparison
/// period is open.
fn shadow(
    conn: &mut PgConnection,
    alias: &aliases::Alias,
    number: i32,
    version: impl FnOnce(&mut PgConnection, i32) -> DomainResult<Arc<Target>>,
) -> DomainResult<Option<Shadow>> {
    let Some(period) =
        fresco_store::shadows::current(conn, &alias.project_id, alias.function_id, &alias.name)?
    else {
        return Ok(None);
    };
    match version(conn, number) {
        Ok(target) => Ok(Some(Shadow {
            target,
            percent: u32::try_from(alias.shadow_percent).unwrap_or(0),
            comparison_id: period.id,
        })),
        Err(e) => {
            log::warn!(
                "alias {} of function {}: shadow version {number} not copied to: {e}",
                alias.name,
                alias.function_id
            );
            Ok(None)
        }
    }
}

/// What the rules of `target` need besides the function.
#[derive(Clone, Copy)]
struct Rules<'a> {
    allowed_image_prefixes: &'a [String],
    /// The function as the caller named it (for messages).
    key: &'a str,
}

/// The target that runs version `number` of `function` (0: its latest state), refused
/// (`Conflict`) when that version may no longer run (`fresco_store::targets::spec`).
fn target(
    conn: &mut PgConnection,
    rules: &Rules<'_>,
    function: &functions::Function,
    alias: Option<String>,
    number: i32,
    limits: Limits,
) -> DomainResult<Target> {
    let Rules {
        allowed_image_prefixes,
        key,
    } = *rules;
    let spec =
        targets::spec(conn, function, number, allowed_image_prefixes).map_err(|e| match e {
            TargetError::NoVersion(_) => DomainError::NotFound {
                kind: "version",
                id: format!("{number} of function {key}"),
            },
            TargetError::NoAlias(name) => DomainError::NotFound {
                kind: "alias",
                id: name,
            },
            TargetError::NoCode => DomainError::Conflict(format!("function {key} has no code")),
            TargetError::Broken => {
                DomainError::Internal(format!("function {key} has neither runtime nor image"))
            }
            TargetError::Environment(e) => {
                DomainError::Internal(format!("stored environment is not a string map: {e}"))
            }
            TargetError::Db(e) => db_error("version", number)(e),
            refused @ (TargetError::RuntimeGone(_)
            | TargetError::RuntimeUnavailable { .. }
            | TargetError::ImageRefused(_)) => {
                DomainError::Conflict(format!("function {key} cannot run: {refused}"))
            }
        })?;
    Ok(Target {
        spec,
        alias,
        limits,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn target(version: i32) -> Arc<Target> {
        Arc::new(Target {
            spec: FunctionSpec {
                project_id: "p".into(),
                function_id: uuid::Uuid::nil(),
                function_name: "f".into(),
                version,
                image: "img".into(),
                runtime_kind: "python".into(),
                handler: "main.handler".into(),
                memory_mb: 128,
                timeout_s: 3,
                environment: BTreeMap::new(),
                code_sha256: None,
                network: false,
                revision: 0,
            },
            alias: Some("live".into()),
            limits: Limits::defaults(&QuotaSection::default()),
        })
    }

    #[test]
    fn the_roll_picks_the_second_version_by_its_weight() {
        let split = Resolved {
            function_id: uuid::Uuid::nil(),
            first: Ok(target(1)),
            second: Some((Ok(target(2)), 30)),
            shadow: None,
        };
        let one = Resolved {
            function_id: uuid::Uuid::nil(),
            first: Ok(target(1)),
            second: None,
            shadow: None,
        };
        // (resolution, roll, version run)
        for (resolved, roll, version) in [
            (&split, 0, 2),
            (&split, 29, 2),
            (&split, 30, 1),
            (&split, 99, 1),
            (&one, 0, 1),
            (&one, 99, 1),
        ] {
            let picked = resolved.pick(roll).expect("a target");
            assert_eq!(picked.spec.version, version, "roll {roll}");
        }
        let taken = (0..100).filter(|roll| split.pick(*roll).is_ok_and(|t| t.spec.version == 2));
        assert_eq!(taken.count(), 30, "the weight is the share of rolls");
        assert!(split.cacheable() && one.cacheable());
    }

    #[test]
    fn a_version_that_cannot_run_fails_only_the_invocations_that_roll_it() {
        let refused = DomainError::Conflict("function f cannot run: runtime py is disabled".into());
        let broken = Resolved {
            function_id: uuid::Uuid::nil(),
            first: Ok(target(1)),
            second: Some((Err(refused), 10)),
            shadow: None,
        };
        assert!(!broken.cacheable(), "a refusal is resolved again");
        for roll in 0..10 {
            assert!(matches!(broken.pick(roll), Err(DomainError::Conflict(_))));
        }
        for roll in 10..100 {
            assert_eq!(broken.pick(roll).expect("the first").spec.version, 1);
        }
    }

    #[test]
    fn the_roll_takes_a_shadow_copy_by_its_percentage() {
        let shadowed = Resolved {
            function_id: uuid::Uuid::nil(),
            first: Ok(target(1)),
            second: Some((Ok(target(3)), 50)),
            shadow: Some(Shadow {
                target: target(3),
                percent: 25,
                comparison_id: uuid::Uuid::nil(),
            }),
        };
        let one = target(1);
        let copied = (0..100).filter(|roll| shadowed.shadow(*roll, &one).is_some());
        assert_eq!(copied.count(), 25, "the percentage is the share of rolls");
        assert!(
            shadowed.shadow(0, &target(3)).is_none(),
            "the shadow version answering is not copied to itself"
        );
    }
}
