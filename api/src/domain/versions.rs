//! Function versions: publishing snapshots the function as it is now.

use chrono::Utc;
use fresco_store::PgConnection;

use super::runtimes::marker_error;
use super::{db_error, validate, DomainError, DomainResult};
use fresco_store::functions::{self as function_store, CodeInfo};
use fresco_store::paging::{Page, PageRequest};
use fresco_store::retirements::{self, Revisions};
use fresco_store::versions::{self as store, Version};
use fresco_store::Scope;

/// A version with its code's metadata.
#[derive(Debug, Clone)]
pub struct VersionDetail {
    pub version: Version,
    pub code: Option<CodeInfo>,
}

fn detail(conn: &mut PgConnection, version: Version) -> DomainResult<VersionDetail> {
    let code = match &version.code_sha256 {
        Some(sha) => Some(function_store::code_info(conn, &version.project_id, sha)?),
        None => None,
    };
    Ok(VersionDetail { version, code })
}

pub fn publish(
    conn: &mut PgConnection,
    scope: &Scope,
    key: &str,
    description: String,
) -> DomainResult<VersionDetail> {
    validate::description(&description)?;
    let found = function_store::get_by_ref(conn, scope, key).map_err(db_error("function", key))?;
    super::transaction(conn, |conn| {
        // The row lock serialises concurrent publishes: version numbers are never reused.
        let mut function = function_store::lock(conn, &found.project_id, found.id)
            .map_err(db_error("function", key))?;
        if function.runtime_id.is_some() && function.code_sha256.is_none() {
            return Err(DomainError::Conflict(format!(
                "function {key} has no code to publish"
            )));
        }
        function.latest_version += 1;
        let version = Version {
            function_id: function.id,
            version: function.latest_version,
            project_id: function.project_id.clone(),
            description,
            runtime_id: function.runtime_id,
            image: function.image.clone(),
            handler: function.handler.clone(),
            memory_mb: function.memory_mb,
            timeout_s: function.timeout_s,
            environment: function.environment.clone(),
            code_sha256: function.code_sha256.clone(),
            created_at: Utc::now(),
        };
        store::insert(conn, &version)?;
        function_store::save(conn, &function)?;
        detail(conn, version)
    })
}

pub fn get(
    conn: &mut PgConnection,
    scope: &Scope,
    key: &str,
    number: i32,
) -> DomainResult<VersionDetail> {
    let function =
        function_store::get_by_ref(conn, scope, key).map_err(db_error("function", key))?;
    let version = store::get(conn, &function.project_id, function.id, number)
        .map_err(db_error("version", format!("{number} of function {key}")))?;
    detail(conn, version)
}

pub fn list(
    conn: &mut PgConnection,
    scope: &Scope,
    key: &str,
    page: &PageRequest<i32>,
) -> DomainResult<Page<VersionDetail>> {
    let function =
        function_store::get_by_ref(conn, scope, key).map_err(db_error("function", key))?;
    let page = store::list(conn, &function.project_id, function.id, page).map_err(marker_error)?;
    let mut items = Vec::with_capacity(page.items.len());
    for version in page.items {
        items.push(detail(conn, version)?);
    }
    Ok(Page {
        items,
        more: page.more,
    })
}

/// Deletes a version; returns the function's id.
pub fn delete(
    conn: &mut PgConnection,
    scope: &Scope,
    key: &str,
    number: i32,
) -> DomainResult<uuid::Uuid> {
    let function =
        function_store::get_by_ref(conn, scope, key).map_err(db_error("function", key))?;
    super::transaction(conn, |conn| {
        let version = store::delete(conn, &function.project_id, function.id, number)
            .map_err(db_error("version", format!("{number} of function {key}")))?;
        if let Some(sha) = version.code_sha256 {
            function_store::drop_code_if_unused(conn, &function.project_id, &sha)?;
        }
        retirements::record(
            conn,
            &function.project_id,
            function.id,
            Some(number),
            Revisions::All,
        )?;
        Ok(function.id)
    })
}
