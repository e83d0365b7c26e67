//! Execution records: listing, showing, logs, deletion, usage.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use fresco_store::PgConnection;
use uuid::Uuid;

use super::runtimes::marker_error;
use super::{db_error, DomainError, DomainResult};
use fresco_store::executions::{
    self as store, Execution, ExecutionFilter, ExecutionSummary, Usage,
};
use fresco_store::paging::{Page, PageRequest};
use fresco_store::DbError;
use fresco_store::{ExecutionStatus, Scope};

/// The status a list filter names, or why it names none.
pub fn status_filter(text: &str) -> DomainResult<ExecutionStatus> {
    ExecutionStatus::parse(text).ok_or_else(|| {
        let known: Vec<&str> = ExecutionStatus::ALL.iter().map(|s| s.as_str()).collect();
        DomainError::invalid(format!(
            "status must be one of {}, got {text:?}",
            known.join(", ")
        ))
    })
}

pub fn list(
    conn: &mut PgConnection,
    scope: &Scope,
    filter: &ExecutionFilter,
    page: &PageRequest<Uuid>,
) -> DomainResult<Page<ExecutionSummary>> {
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
    Accepted(Box<ExecutionSummary>),
    /// The code package the execution names is gone (the function's code changed after the
    /// target was resolved): resolve the target again.
    StaleCode,
}

/// Recent counts of projects' queued executions, so that an enqueue comfortably below its
/// project's `queued_executions` quota costs no count (counting a long queue costs about a
/// millisecond of the database's time per thousand rows). A count is trusted for
/// `QueueGauge::TTL`, plus what this process queued since; within a tenth of the quota (or
/// once the count is stale) every enqueue counts again.
#[derive(Debug, Default)]
pub struct QueueGauge {
    entries: Mutex<HashMap<String, (Instant, i64)>>,
}

impl QueueGauge {
    const TTL: Duration = Duration::from_secs(1);
    const MAX_ENTRIES: usize = 50_000;

    /// Whether one more surely fits under `limit`, going by a recent count.
    fn comfortably_below(&self, project_id: &str, limit: i64) -> bool {
        let Ok(entries) = self.entries.lock() else {
            return false;
        };
        entries.get(project_id).is_some_and(|(at, queued)| {
            at.elapsed() < Self::TTL && queued.saturating_add(1) <= limit - limit / 10
        })
    }

    fn counted(&self, project_id: &str, queued: i64) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= Self::MAX_ENTRIES {
                entries.retain(|_, (at, _)| at.elapsed() < Self::TTL);
                if entries.len() >= Self::MAX_ENTRIES {
                    entries.clear();
                }
            }
            entries.insert(project_id.to_owned(), (Instant::now(), queued));
        }
    }

    fn accepted(&self, project_id: &str) {
        if let Ok(mut entries) = self.entries.lock() {
            if let Some((_, queued)) = entries.get_mut(project_id) {
                *queued += 1;
            }
        }
    }
}

/// Commits an async execution within the project's `queued_executions` quota (`limit`, -1 =
/// unlimited; the caller's resolved target carries it, so a change applies within
/// `[api] function_cache_ttl`, as for the other invocation quotas).
///
/// The check and the insert are not serialised per project: concurrent enqueues may overshoot
/// the quota by what they add at once, and by what other API replicas queued within the
/// gauge's second while far below the quota; in exchange enqueues never wait for each other's
/// commit, and one far below the quota costs no count.
pub fn enqueue(
    conn: &mut PgConnection,
    row: &Execution,
    limit: i64,
    gauge: &QueueGauge,
) -> DomainResult<Enqueued> {
    enqueue_with(conn, row, limit, gauge, |conn| store::enqueue(conn, row))
}

/// [`enqueue`], with `insert` committing the row (a shadow copy commits its comparison's
/// record with it).
pub fn enqueue_with(
    conn: &mut PgConnection,
    row: &Execution,
    limit: i64,
    gauge: &QueueGauge,
    insert: impl FnOnce(&mut PgConnection) -> Result<ExecutionSummary, DbError>,
) -> DomainResult<Enqueued> {
    let project = row.project_id.as_str();
    if limit >= 0 && !gauge.comfortably_below(project, limit) {
        let queued = store::queued(conn, project, Some(limit))?;
        gauge.counted(project, queued);
        if queued >= limit {
            return Err(DomainError::Throttled(format!(
                "quota queued_executions exceeded: the project has {queued} of {limit} async executions waiting; retry once some have started"
            )));
        }
    }
    match insert(conn) {
        Ok(summary) => {
            gauge.accepted(project);
            Ok(Enqueued::Accepted(Box::new(summary)))
        }
        Err(DbError::Conflict(constraint)) if constraint == store::CODE_FOREIGN_KEY => {
            Ok(Enqueued::StaleCode)
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gauge_spares_counts_only_well_below_the_quota() {
        let gauge = QueueGauge::default();
        assert!(!gauge.comfortably_below("p", 100), "nothing counted yet");
        gauge.counted("p", 88);
        assert!(gauge.comfortably_below("p", 100));
        gauge.accepted("p");
        gauge.accepted("p");
        assert!(!gauge.comfortably_below("p", 100), "90 is within a tenth");
        assert!(gauge.comfortably_below("p", 1000));
        assert!(!gauge.comfortably_below("q", 1000), "another project");
        gauge.counted("small", 2);
        assert!(gauge.comfortably_below("small", 3));
        gauge.accepted("small");
        assert!(!gauge.comfortably_below("small", 3));
    }
}
