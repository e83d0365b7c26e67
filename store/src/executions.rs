//! Execution records: every invocation, sync or async. Async ones are the durable queue the
//! scheduler dispatches from.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

use super::paging::{after, order, Page, PageRequest, SortValue};
use super::schema::executions;
use super::{scoped, DbError, DbResult, ExecutionStatus, Scope};

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = executions)]
pub struct Execution {
    pub id: Uuid,
    pub project_id: String,
    pub function_id: Uuid,
    pub function_version: i32,
    pub alias: Option<String>,
    pub status: ExecutionStatus,
    pub is_async: bool,
    pub input: Option<Vec<u8>>,
    pub input_size: i32,
    pub spec: Option<serde_json::Value>,
    pub result: Option<String>,
    pub error: Option<serde_json::Value>,
    pub duration_ms: Option<f64>,
    pub max_memory_mb: Option<f64>,
    pub memory_mb: i32,
    pub cold: Option<bool>,
    pub agent_id: Option<String>,
    pub attempts: i32,
    pub logs: String,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// CPU time of the sandbox for this execution, as the agent measured it.
    pub cpu_ms: Option<f64>,
    /// The runtime's initialisation before it took the event (cold and pre-warmed starts).
    pub init_duration_ms: Option<f64>,
}

/// What lists and shows return: everything but the input, spec and logs.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = executions)]
pub struct ExecutionSummary {
    pub id: Uuid,
    pub project_id: String,
    pub function_id: Uuid,
    pub function_version: i32,
    pub alias: Option<String>,
    pub status: ExecutionStatus,
    pub is_async: bool,
    pub input_size: i32,
    pub result: Option<String>,
    pub error: Option<serde_json::Value>,
    pub duration_ms: Option<f64>,
    pub max_memory_mb: Option<f64>,
    pub memory_mb: i32,
    pub cold: Option<bool>,
    pub agent_id: Option<String>,
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// CPU time of the sandbox for this execution, as the agent measured it.
    pub cpu_ms: Option<f64>,
    /// The runtime's initialisation before it took the event (cold and pre-warmed starts).
    pub init_duration_ms: Option<f64>,
}

#[derive(Debug, Default)]
pub struct ExecutionFilter {
    pub function_id: Option<Uuid>,
    pub status: Option<ExecutionStatus>,
}

type Boxed<'a> = executions::BoxedQuery<'a, diesel::pg::Pg>;

fn in_scope(scope: &Scope) -> Boxed<'static> {
    scoped!(
        executions::table.into_boxed(),
        executions::project_id,
        scope
    )
}

/// The foreign key that keeps the code package of a queued or running execution (see the
/// `faults_data` migration).
pub const CODE_FOREIGN_KEY: &str = "executions_code_fkey";

/// Records finished sync executions in one statement.
pub fn insert_many(conn: &mut PgConnection, rows: &[Execution]) -> DbResult<()> {
    diesel::insert_into(executions::table)
        .values(rows)
        .on_conflict_do_nothing()
        .execute(conn)?;
    Ok(())
}

/// Commits an async execution and wakes the scheduler's dispatcher, in one transaction: once
/// this returns, the execution cannot be lost.
pub fn enqueue(conn: &mut PgConnection, row: &Execution) -> DbResult<ExecutionSummary> {
    Ok(conn.transaction::<_, diesel::result::Error, _>(|conn| {
        let queued = diesel::insert_into(executions::table)
            .values(row)
            .returning(ExecutionSummary::as_returning())
            .get_result(conn)?;
        diesel::sql_query(format!("NOTIFY {}", super::queue::QUEUE_CHANNEL)).execute(conn)?;
        Ok(queued)
    })?)
}

pub fn get(conn: &mut PgConnection, scope: &Scope, id: Uuid) -> DbResult<ExecutionSummary> {
    Ok(in_scope(scope)
        .filter(executions::id.eq(id))
        .select(ExecutionSummary::as_select())
        .first(conn)?)
}

pub fn logs(conn: &mut PgConnection, scope: &Scope, id: Uuid) -> DbResult<String> {
    Ok(in_scope(scope)
        .filter(executions::id.eq(id))
        .select(executions::logs)
        .first(conn)?)
}

pub fn list(
    conn: &mut PgConnection,
    scope: &Scope,
    filter: &ExecutionFilter,
    page: &PageRequest<Uuid>,
) -> DbResult<Page<ExecutionSummary>> {
    let mut query = in_scope(scope);
    if let Some(function) = filter.function_id {
        query = query.filter(executions::function_id.eq(function));
    }
    if let Some(status) = &filter.status {
        query = query.filter(executions::status.eq(*status));
    }
    if let Some(marker) = page.marker {
        let row = get(conn, scope, marker)?;
        query = query.filter(after(
            "created_at",
            SortValue::Time(row.created_at),
            Some(("id", row.id)),
            page.dir,
        ));
    }
    let items = query
        .order(diesel::dsl::sql::<diesel::sql_types::Bool>(&order(
            "created_at",
            Some("id"),
            page.dir,
        )))
        .limit(page.limit + 1)
        .select(ExecutionSummary::as_select())
        .load(conn)?;
    Ok(Page::from_overfetch(items, page.limit))
}

/// Deletes a finished execution; a queued or running one is a `Conflict`.
pub fn delete(conn: &mut PgConnection, scope: &Scope, id: Uuid) -> DbResult<()> {
    let status: ExecutionStatus = in_scope(scope)
        .filter(executions::id.eq(id))
        .select(executions::status)
        .first(conn)?;
    if !status.is_terminal() {
        return Err(DbError::Conflict(format!("execution is {status}")));
    }
    diesel::delete(
        executions::table
            .filter(executions::id.eq(id))
            .filter(executions::status.eq_any(ExecutionStatus::TERMINAL)),
    )
    .execute(conn)?;
    Ok(())
}

/// Usage of one project: executions by status and GB-seconds (memory × duration).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Usage {
    pub by_status: Vec<(ExecutionStatus, i64)>,
    pub gb_seconds: f64,
}

pub fn usage(conn: &mut PgConnection, project_id: &str) -> DbResult<Usage> {
    use diesel::dsl::sql;
    use diesel::sql_types::{BigInt, Double};
    let by_status: Vec<(ExecutionStatus, i64)> = executions::table
        .filter(executions::project_id.eq(project_id))
        .group_by(executions::status)
        .select((executions::status, sql::<BigInt>("count(*)")))
        .load(conn)?;
    let gb_seconds: f64 = executions::table
        .filter(executions::project_id.eq(project_id))
        .select(sql::<Double>(
            "COALESCE(SUM(memory_mb::float8 / 1024.0 * COALESCE(duration_ms, 0) / 1000.0), 0)",
        ))
        .first(conn)?;
    Ok(Usage {
        by_status,
        gb_seconds,
    })
}

/// Async executions of the project waiting in the queue, counting at most `cap` of them (the
/// quota check needs no more, and a long queue then costs no more than `cap` index entries).
pub fn queued(conn: &mut PgConnection, project_id: &str, cap: Option<i64>) -> DbResult<i64> {
    use diesel::sql_types::{BigInt, Text};
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    // The status is part of the statement's text (not a parameter), so the plan is the
    // partial index of queued rows.
    let counted: Count = diesel::sql_query(format!(
        "SELECT count(*) AS n FROM (SELECT 1 FROM executions \
         WHERE project_id = $1 AND status = '{}' LIMIT $2) AS q",
        ExecutionStatus::Queued
    ))
    .bind::<Text, _>(project_id)
    .bind::<diesel::sql_types::Nullable<BigInt>, _>(cap)
    .get_result(conn)?;
    Ok(counted.n)
}

/// Executions of the project that are queued or running.
pub fn in_flight(conn: &mut PgConnection, project_id: &str) -> DbResult<i64> {
    Ok(executions::table
        .filter(executions::project_id.eq(project_id))
        .filter(executions::status.eq_any([ExecutionStatus::Queued, ExecutionStatus::Running]))
        .count()
        .get_result(conn)?)
}

/// An async execution that Fresco itself queues (a trigger's tick or call, a destination):
/// where it comes from besides what it runs.
#[derive(Debug, Clone)]
pub struct Origin {
    /// Its id (deterministic for a cron tick, so a tick can never queue two).
    pub id: Uuid,
    pub trigger_id: Option<Uuid>,
    pub chain_depth: i32,
}

/// Inserts a queued async execution of `spec` with `input` (nothing when `origin.id` exists
/// already); returns whether it was inserted. The caller NOTIFYs the dispatcher when its
/// transaction commits (`NOTIFY` is transactional).
pub fn insert_queued(
    conn: &mut PgConnection,
    spec: &fresco_common::wire::FunctionSpec,
    alias: Option<&str>,
    input: &[u8],
    origin: &Origin,
) -> DbResult<bool> {
    let spec_json = serde_json::to_value(spec).map_err(|e| DbError::Other(e.to_string()))?;
    let inserted = diesel::insert_into(executions::table)
        .values((
            executions::id.eq(origin.id),
            executions::project_id.eq(&spec.project_id),
            executions::function_id.eq(spec.function_id),
            executions::function_version.eq(spec.version),
            executions::alias.eq(alias),
            executions::status.eq(ExecutionStatus::Queued),
            executions::is_async.eq(true),
            executions::input.eq(Some(input)),
            executions::input_size.eq(i32::try_from(input.len()).unwrap_or(i32::MAX)),
            executions::spec.eq(Some(spec_json)),
            executions::memory_mb.eq(spec.memory_mb),
            executions::trigger_id.eq(origin.trigger_id),
            executions::chain_depth.eq(origin.chain_depth),
        ))
        .on_conflict_do_nothing()
        .execute(conn)?;
    Ok(inserted == 1)
}
