//! Execution records: listing, showing, logs, deletion, usage.

use diesel::PgConnection;
use uuid::Uuid;

use super::runtimes::marker_error;
use super::{db_error, DomainError, DomainResult};
use crate::db::executions::{self as store, ExecutionFilter, ExecutionSummary, Usage};
use crate::db::paging::{Page, PageRequest};
use crate::db::Scope;

pub const STATUSES: &[&str] = &[
    "queued",
    "running",
    "succeeded",
    "failed",
    "timeout",
    "oom",
    "error",
];

pub fn list(
    conn: &mut PgConnection,
    scope: &Scope,
    filter: &ExecutionFilter,
    page: &PageRequest<Uuid>,
) -> DomainResult<Page<ExecutionSummary>> {
    if let Some(status) = &filter.status {
        if !STATUSES.contains(&status.as_str()) {
            return Err(DomainError::invalid(format!(
                "status must be one of {}, got {status:?}",
                STATUSES.join(", ")
            )));
        }
    }
    store::list(conn, scope, filter, page).map_err(marker_error)
}

pub fn get(conn: &mut PgConnection, scope: &Scope, id: Uuid) -> DomainResult<ExecutionSummary> {
    store::get(conn, scope, id).map_err(db_error("execution", id))
}

pub fn logs(conn: &mut PgConnection, scope: &Scope, id: Uuid) -> DomainResult<String> {
    store::logs(conn, scope, id).map_err(db_error("execution", id))
}

pub fn delete(conn: &mut PgConnection, scope: &Scope, id: Uuid) -> DomainResult<()> {
    store::delete(conn, scope, id).map_err(db_error("execution", id))
}

pub fn usage(conn: &mut PgConnection, project_id: &str) -> DomainResult<Usage> {
    Ok(store::usage(conn, project_id)?)
}
