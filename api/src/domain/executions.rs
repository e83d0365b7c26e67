//! Execution records: listing, showing, logs, deletion, usage.

use diesel::PgConnection;
use uuid::Uuid;

use super::runtimes::marker_error;
use super::{db_error, DomainError, DomainResult};
use crate::db::executions::{
    self as store, Execution, ExecutionFilter, ExecutionSummary, Usage,
};
use crate::db::{quotas as quota_store, DbError};
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

/// How an enqueue ended.
#[derive(Debug)]
pub enum Enqueued {
    /// Committed: the execution will run.
    Accepted(ExecutionSummary),
    /// The code package the execution names is gone (the function's code changed after the
    /// target was resolved): resolve the target again.
    StaleCode,
}

/// Commits an async execution within the project's `queued_executions` quota (read at once,
/// not from a cache; `default` applies without an override; -1 = unlimited).
///
/// The count and the insert are not serialised per project: concurrent enqueues of one project
/// may overshoot the quota by at most their number (bounded by the API's database pools), in
/// exchange for enqueues that never wait for each other's commit.
pub fn enqueue(conn: &mut PgConnection, row: &Execution, default: i64) -> DomainResult<Enqueued> {
    let limit = quota_store::get(conn, &row.project_id, "queued_executions")?.unwrap_or(default);
    if limit >= 0 {
        let queued = store::queued(conn, &row.project_id, Some(limit))?;
        if queued >= limit {
            return Err(DomainError::Throttled(format!(
                "quota queued_executions exceeded: the project has {queued} of {limit} async executions waiting; retry once some have started"
            )));
        }
    }
    match store::enqueue(conn, row) {
        Ok(summary) => Ok(Enqueued::Accepted(summary)),
        Err(DbError::Conflict(constraint)) if constraint == store::CODE_FOREIGN_KEY => {
            Ok(Enqueued::StaleCode)
        }
        Err(e) => Err(e.into()),
    }
}
