//! Resolving what an invocation runs: the function, the version (explicit, via an alias with
//! its traffic split, or the latest state), its runtime, and the project's limits.

use std::collections::BTreeMap;

use fresco_common::conf::QuotaSection;
use fresco_common::wire::FunctionSpec;
use fresco_store::PgConnection;

use super::quotas::{self, Limits};
use super::{db_error, DomainError, DomainResult};
use fresco_store::{aliases, functions, runtimes, versions, Scope};

/// Which state of the function to run.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Selector {
    /// The function as it is now (version 0).
    Latest,
    Version(i32),
    /// An alias; `roll` (0..100) picks between its two versions by weight.
    Alias {
        name: String,
        roll: u32,
    },
}

/// Everything the invocation path needs, resolved once.
#[derive(Debug, Clone)]
pub struct Target {
    pub spec: FunctionSpec,
    pub alias: Option<String>,
    pub limits: Limits,
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
) -> DomainResult<Target> {
    let function = functions::get_by_ref(conn, scope, key).map_err(db_error("function", key))?;
    let (alias, number) = match selector {
        Selector::Latest => (None, 0),
        Selector::Version(n) => (None, *n),
        Selector::Alias { name, roll } => {
            let alias = aliases::get(conn, &function.project_id, function.id, name)
                .map_err(db_error("alias", name))?;
            (
                Some(alias.name.clone()),
                super::aliases::route(&alias, *roll),
            )
        }
    };
    // The settings that run: the function's current ones, or a published snapshot.
    // A published version is immutable: revision 0; the latest state carries its revision.
    let (runtime_id, image, handler, memory_mb, timeout_s, environment, code_sha256, revision) =
        if number == 0 {
            (
                function.runtime_id,
                function.image.clone(),
                function.handler.clone(),
                function.memory_mb,
                function.timeout_s,
                function.environment.clone(),
                function.code_sha256.clone(),
                function.revision,
            )
        } else {
            let v = versions::get(conn, &function.project_id, function.id, number)
                .map_err(db_error("version", format!("{number} of function {key}")))?;
            (
                v.runtime_id,
                v.image,
                v.handler,
                v.memory_mb,
                v.timeout_s,
                v.environment,
                v.code_sha256,
                0,
            )
        };
    let (image, runtime_kind, network) = match (runtime_id, image) {
        (Some(id), _) => {
            // Only a runtime the function's project may still use: public, or its own.
            let runtime = runtimes::get(conn, &Scope::Project(function.project_id.clone()), id)
                .map_err(|e| match e {
                    fresco_store::DbError::NotFound => DomainError::Conflict(format!(
                        "function {key} cannot run: its runtime {id} is no longer available to its project"
                    )),
                    other => db_error("runtime", id)(other),
                })?;
            if runtime.status != "available" {
                return Err(DomainError::Conflict(format!(
                    "function {key} cannot run: runtime {} is {}",
                    runtime.name, runtime.status
                )));
            }
            if code_sha256.is_none() {
                return Err(DomainError::Conflict(format!("function {key} has no code")));
            }
            (runtime.image, runtime.kind, runtime.network)
        }
        (None, Some(image)) => {
            if !fresco_common::images::allowed(&image, allowed_image_prefixes) {
                return Err(DomainError::Conflict(format!(
                    "function {key} cannot run: its image {image} is not among the images this cloud allows"
                )));
            }
            (image, "image".to_owned(), false)
        }
        (None, None) => {
            return Err(DomainError::Internal(format!(
                "function {key} has neither runtime nor image"
            )))
        }
    };
    let environment: BTreeMap<String, String> =
        serde_json::from_value(environment).map_err(|e| {
            DomainError::Internal(format!("stored environment is not a string map: {e}"))
        })?;
    let limits = quotas::limits(conn, quota_defaults, &function.project_id)?;
    Ok(Target {
        spec: FunctionSpec {
            project_id: function.project_id,
            function_id: function.id,
            function_name: function.name,
            version: number,
            image,
            runtime_kind,
            handler,
            memory_mb,
            timeout_s,
            environment,
            code_sha256,
            network,
            revision,
        },
        alias,
        limits,
    })
}
