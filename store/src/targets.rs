//! What a function version runs (its `FunctionSpec`), and whether it may still run: the one
//! resolution shared by the API's invocations and the scheduler's trigger ticks and
//! destinations.

use std::collections::BTreeMap;

use diesel::pg::PgConnection;
use fresco_common::wire::FunctionSpec;
use uuid::Uuid;

use crate::functions::Function;
use crate::{aliases, functions, runtimes, versions, DbError, Scope};

/// Why a version cannot run.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("version {0} not found")]
    NoVersion(i32),
    #[error("alias {0} not found")]
    NoAlias(String),
    #[error("its runtime {0} is no longer available to its project")]
    RuntimeGone(Uuid),
    #[error("runtime {name} is {status}")]
    RuntimeUnavailable { name: String, status: String },
    #[error("it has no code")]
    NoCode,
    #[error("its image {0} is not among the images this cloud allows")]
    ImageRefused(String),
    #[error("it has neither runtime nor image")]
    Broken,
    #[error("stored environment is not a string map: {0}")]
    Environment(#[source] serde_json::Error),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// How a trigger or destination names what runs: the latest state, a version or an alias.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pick {
    Latest,
    Version(i32),
    Alias(String),
}

/// The spec that runs version `number` (0: the latest state) of `function`, refused when that
/// version may no longer run: its runtime disabled or no longer visible to the function's
/// project, no code, or its own image outside `allowed_image_prefixes`.
pub fn spec(
    conn: &mut PgConnection,
    function: &Function,
    number: i32,
    allowed_image_prefixes: &[String],
) -> Result<FunctionSpec, TargetError> {
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
            let v = match versions::get(conn, &function.project_id, function.id, number) {
                Ok(v) => v,
                Err(DbError::NotFound) => return Err(TargetError::NoVersion(number)),
                Err(e) => return Err(e.into()),
            };
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
            let runtime =
                match runtimes::get(conn, &Scope::Project(function.project_id.clone()), id) {
                    Ok(runtime) => runtime,
                    Err(DbError::NotFound) => return Err(TargetError::RuntimeGone(id)),
                    Err(e) => return Err(e.into()),
                };
            if runtime.status != "available" {
                return Err(TargetError::RuntimeUnavailable {
                    name: runtime.name,
                    status: runtime.status,
                });
            }
            if code_sha256.is_none() {
                return Err(TargetError::NoCode);
            }
            (runtime.image, runtime.kind, runtime.network)
        }
        (None, Some(image)) => {
            if !fresco_common::images::allowed(&image, allowed_image_prefixes) {
                return Err(TargetError::ImageRefused(image));
            }
            (image, "image".to_owned(), false)
        }
        (None, None) => return Err(TargetError::Broken),
    };
    let environment: BTreeMap<String, String> =
        serde_json::from_value(environment).map_err(TargetError::Environment)?;
    Ok(FunctionSpec {
        project_id: function.project_id.clone(),
        function_id: function.id,
        function_name: function.name.clone(),
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
    })
}

/// The spec one event of `function_id` (in `project_id`) runs, with the alias it went
/// through: `roll` (uniform in 0..100) picks between an alias's two versions by weight.
pub fn resolve(
    conn: &mut PgConnection,
    project_id: &str,
    function_id: Uuid,
    pick: &Pick,
    roll: u32,
    allowed_image_prefixes: &[String],
) -> Result<(FunctionSpec, Option<String>), TargetError> {
    let scope = Scope::Project(project_id.to_owned());
    let function = functions::get(conn, &scope, function_id)?;
    match pick {
        Pick::Latest => Ok((spec(conn, &function, 0, allowed_image_prefixes)?, None)),
        Pick::Version(n) => Ok((spec(conn, &function, *n, allowed_image_prefixes)?, None)),
        Pick::Alias(name) => {
            let alias = match aliases::get(conn, project_id, function_id, name) {
                Ok(alias) => alias,
                Err(DbError::NotFound) => return Err(TargetError::NoAlias(name.clone())),
                Err(e) => return Err(e.into()),
            };
            let weight = u32::try_from(alias.second_weight).unwrap_or(0);
            let number = match alias.second_version {
                Some(second) if roll < weight => second,
                _ => alias.version,
            };
            Ok((
                spec(conn, &function, number, allowed_image_prefixes)?,
                Some(alias.name),
            ))
        }
    }
}
