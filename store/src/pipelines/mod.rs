//! Pipelines and their runs. A pipeline is a named, versioned definition (`definition.rs`);
//! a run is a row of `pipeline_runs` plus one async execution per step attempt. A run
//! advances (`advance`) with its row locked: when it starts (the API, in the transaction that
//! stores it) and in the fenced transaction that writes the end of one of its step executions
//! (`queue::events::after_end`). `eval.rs` says what the run needs from its records; the
//! executions it asks for have ids derived from (run, step, attempt) and are inserted only
//! once, so an advance done twice queues nothing twice.

pub mod definition;
pub mod eval;

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde_json::Value;
use uuid::Uuid;

use super::paging::{after, order, Page, PageRequest, SortValue};
use super::schema::{executions, pipeline_runs, pipeline_versions, pipelines};
use super::targets::{self, Pick};
use super::{scoped, DbError, DbResult, ExecutionStatus, Scope};
use crate::executions::{insert_queued, Origin};
use definition::Definition;
use eval::{evaluate, Record, State};

/// Run statuses, as stored.
pub const RUNNING: &str = "running";
pub const SUCCEEDED: &str = "succeeded";
pub const FAILED: &str = "failed";

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = pipelines)]
pub struct Pipeline {
    pub id: Uuid,
    pub project_id: String,
    pub name: String,
    pub version: i32,
    pub definition: Value,
    pub description: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Pipeline {
    /// The stored definition, read back.
    pub fn definition(&self) -> DbResult<Definition> {
        parse_definition(&self.definition)
    }
}

fn parse_definition(value: &Value) -> DbResult<Definition> {
    serde_json::from_value(value.clone())
        .map_err(|e| DbError::Other(format!("stored pipeline definition unreadable: {e}")))
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = pipeline_runs)]
pub struct Run {
    pub id: Uuid,
    pub project_id: String,
    pub pipeline_id: Uuid,
    pub pipeline_name: String,
    pub pipeline_version: i32,
    pub definition: Value,
    pub status: String,
    pub input: Value,
    pub result: Option<Value>,
    pub error: Option<Value>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// One step execution of a run, as shown.
#[derive(Debug, Clone, Queryable)]
pub struct StepExecution {
    pub id: Uuid,
    pub path: Option<String>,
    pub attempt: Option<i32>,
    pub status: ExecutionStatus,
    pub function_id: Uuid,
    pub function_version: i32,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<f64>,
}

type Boxed<'a> = pipelines::BoxedQuery<'a, diesel::pg::Pg>;
type RunsBoxed<'a> = pipeline_runs::BoxedQuery<'a, diesel::pg::Pg>;

fn in_scope(scope: &Scope) -> Boxed<'static> {
    scoped!(pipelines::table.into_boxed(), pipelines::project_id, scope)
}

fn runs_in_scope(scope: &Scope) -> RunsBoxed<'static> {
    scoped!(
        pipeline_runs::table.into_boxed(),
        pipeline_runs::project_id,
        scope
    )
}

/// Stores a new pipeline and its first version.
pub fn insert(conn: &mut PgConnection, pipeline: &Pipeline) -> DbResult<()> {
    conn.transaction::<_, diesel::result::Error, _>(|conn| {
        diesel::insert_into(pipelines::table)
            .values(pipeline)
            .execute(conn)?;
        diesel::insert_into(pipeline_versions::table)
            .values((
                pipeline_versions::pipeline_id.eq(pipeline.id),
                pipeline_versions::version.eq(pipeline.version),
                pipeline_versions::definition.eq(&pipeline.definition),
            ))
            .execute(conn)?;
        Ok(())
    })?;
    Ok(())
}

/// A pipeline by id or, failing that, by name within the scope's project; with `lock`, its
/// row is locked for the rest of the transaction.
pub fn get_by_ref(
    conn: &mut PgConnection,
    scope: &Scope,
    key: &str,
    lock: bool,
) -> DbResult<Pipeline> {
    let mut query = in_scope(scope);
    query = match Uuid::parse_str(key) {
        Ok(id) => query.filter(pipelines::id.eq(id)),
        Err(_) => query.filter(pipelines::name.eq(key.to_owned())),
    };
    let mut rows = query.select(Pipeline::as_select()).limit(2).load(conn)?;
    let found = match rows.len() {
        1 => rows.remove(0),
        0 => return Err(DbError::NotFound),
        _ => {
            return Err(DbError::Conflict(
                "ambiguous pipeline name across projects".into(),
            ))
        }
    };
    if !lock {
        return Ok(found);
    }
    Ok(pipelines::table
        .filter(pipelines::id.eq(found.id))
        .filter(pipelines::project_id.eq(&found.project_id))
        .for_update()
        .select(Pipeline::as_select())
        .first(conn)?)
}

/// A new version of a pipeline (its row locked by the caller): the definition, the
/// description, and `version` one more.
pub fn new_version(
    conn: &mut PgConnection,
    pipeline: &Pipeline,
    definition: &Value,
    description: &str,
) -> DbResult<Pipeline> {
    let version = pipeline.version + 1;
    diesel::insert_into(pipeline_versions::table)
        .values((
            pipeline_versions::pipeline_id.eq(pipeline.id),
            pipeline_versions::version.eq(version),
            pipeline_versions::definition.eq(definition),
        ))
        .execute(conn)?;
    Ok(diesel::update(
        pipelines::table
            .filter(pipelines::id.eq(pipeline.id))
            .filter(pipelines::project_id.eq(&pipeline.project_id)),
    )
    .set((
        pipelines::version.eq(version),
        pipelines::definition.eq(definition),
        pipelines::description.eq(description),
        pipelines::updated_at.eq(diesel::dsl::now),
    ))
    .returning(Pipeline::as_returning())
    .get_result(conn)?)
}

pub fn list(
    conn: &mut PgConnection,
    scope: &Scope,
    page: &PageRequest<Uuid>,
) -> DbResult<Page<Pipeline>> {
    let mut query = in_scope(scope);
    if let Some(marker) = page.marker {
        let row: Pipeline = in_scope(scope)
            .filter(pipelines::id.eq(marker))
            .select(Pipeline::as_select())
            .first(conn)?;
        let value = match page.sort_key {
            "name" => SortValue::Text(row.name.clone()),
            _ => SortValue::Time(row.created_at),
        };
        query = query.filter(after(page.sort_key, value, Some(("id", row.id)), page.dir));
    }
    let items = query
        .order(diesel::dsl::sql::<diesel::sql_types::Bool>(&order(
            page.sort_key,
            Some("id"),
            page.dir,
        )))
        .limit(page.limit + 1)
        .select(Pipeline::as_select())
        .load(conn)?;
    Ok(Page::from_overfetch(items, page.limit))
}

pub fn count(conn: &mut PgConnection, project_id: &str) -> DbResult<i64> {
    Ok(pipelines::table
        .filter(pipelines::project_id.eq(project_id))
        .count()
        .get_result(conn)?)
}

/// Deletes a pipeline and its versions; its runs keep their own definitions and go on.
pub fn delete(conn: &mut PgConnection, scope: &Scope, key: &str) -> DbResult<()> {
    let pipeline = get_by_ref(conn, scope, key, true)?;
    diesel::delete(
        pipelines::table
            .filter(pipelines::id.eq(pipeline.id))
            .filter(pipelines::project_id.eq(&pipeline.project_id)),
    )
    .execute(conn)?;
    Ok(())
}

/// Stores run `run` (status `running`) and queues its first steps, in the caller's
/// transaction, and wakes the dispatcher when that commits. Returns the run as it stands after the first advance (a
/// definition that cannot start, e.g. a map over no list, has ended already).
pub fn start_run(
    conn: &mut PgConnection,
    run: &Run,
    allowed_image_prefixes: &[String],
) -> DbResult<Run> {
    diesel::insert_into(pipeline_runs::table)
        .values(run)
        .execute(conn)?;
    if advance(conn, run.id, allowed_image_prefixes)?.queued > 0 {
        diesel::sql_query(format!("NOTIFY {}", crate::queue::QUEUE_CHANNEL)).execute(conn)?;
    }
    Ok(pipeline_runs::table
        .filter(pipeline_runs::id.eq(run.id))
        .select(Run::as_select())
        .first(conn)?)
}

/// A step execution's row as the advance reads it: id, path, attempt, status, result, error,
/// end.
type StepRow = (
    Uuid,
    Option<String>,
    Option<i32>,
    ExecutionStatus,
    Option<String>,
    Option<Value>,
    Option<DateTime<Utc>>,
);

/// What one advance did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Advanced {
    /// Step executions inserted (0 when they all existed).
    pub queued: usize,
    /// The run ended in this advance.
    pub ended: bool,
}

/// Advances run `id`: with its row locked, reads its step executions, evaluates, and either
/// ends the run (its result or error) or inserts the step executions it needs now (each once,
/// by its derived id). A run that ended already is left alone. A step whose function can no
/// longer run (deleted, its runtime disabled since the pipeline was stored) fails the run.
pub fn advance(
    conn: &mut PgConnection,
    id: Uuid,
    allowed_image_prefixes: &[String],
) -> Result<Advanced, diesel::result::Error> {
    let Some(run) = pipeline_runs::table
        .filter(pipeline_runs::id.eq(id))
        .for_update()
        .select(Run::as_select())
        .first::<Run>(conn)
        .optional()?
    else {
        return Ok(Advanced::default());
    };
    if run.status != RUNNING {
        return Ok(Advanced::default());
    }
    let definition: Definition = match serde_json::from_value(run.definition.clone()) {
        Ok(d) => d,
        Err(e) => {
            let error = serde_json::json!({
                "errorType": "Pipeline.Error",
                "errorMessage": format!("stored definition unreadable: {e}"),
            });
            end_run(conn, id, FAILED, None, Some(error))?;
            return Ok(Advanced {
                queued: 0,
                ended: true,
            });
        }
    };
    let rows: Vec<StepRow> = executions::table
        .filter(executions::pipeline_run_id.eq(id))
        .select((
            executions::id,
            executions::pipeline_step,
            executions::pipeline_attempt,
            executions::status,
            executions::result,
            executions::error,
            executions::finished_at,
        ))
        .load(conn)?;
    let mut records = HashMap::with_capacity(rows.len());
    for (exec_id, path, attempt, status, result, error, finished_at) in rows {
        let (Some(path), Some(attempt)) = (path, attempt) else {
            continue;
        };
        let result = result.as_deref().map_or(Value::Null, |text| {
            serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
        });
        records.insert(
            (path, attempt),
            Record {
                id: exec_id,
                status,
                result,
                error,
                finished_at,
            },
        );
    }
    let (state, wanted) = evaluate(id, &definition, &run.input, &records);
    match state {
        State::Done(result) => {
            end_run(conn, id, SUCCEEDED, Some(result), None)?;
            return Ok(Advanced {
                queued: 0,
                ended: true,
            });
        }
        State::Failed(error) => {
            end_run(conn, id, FAILED, None, Some(error))?;
            return Ok(Advanced {
                queued: 0,
                ended: true,
            });
        }
        State::Waiting => {}
    }
    let mut queued = 0;
    for step in wanted {
        let pick = match (step.version, &step.alias) {
            (Some(n), _) => Pick::Version(n),
            (None, Some(alias)) => Pick::Alias(alias.clone()),
            (None, None) => Pick::Latest,
        };
        let roll = u32::from(step.id.as_bytes()[0]) % 100;
        let resolved = targets::resolve(
            conn,
            &run.project_id,
            step.function_id,
            &pick,
            roll,
            allowed_image_prefixes,
        );
        let (spec, alias) = match resolved {
            Ok(found) => found,
            Err(targets::TargetError::Db(DbError::NotFound)) => {
                return fail_step(conn, id, &step.path, "its function no longer exists");
            }
            Err(targets::TargetError::Db(e)) => return Err(into_diesel(e)),
            Err(e) => return fail_step(conn, id, &step.path, &e.to_string()),
        };
        let input = step.input.to_string();
        let inserted = insert_queued(
            conn,
            &spec,
            alias.as_deref(),
            input.as_bytes(),
            &Origin {
                id: step.id,
                trigger_id: None,
                chain_depth: 0,
            },
        )
        .map_err(into_diesel)?;
        if inserted {
            diesel::update(executions::table.filter(executions::id.eq(step.id)))
                .set((
                    executions::pipeline_run_id.eq(id),
                    executions::pipeline_step.eq(&step.path),
                    executions::pipeline_attempt.eq(step.attempt),
                    executions::not_before.eq(step.not_before),
                ))
                .execute(conn)?;
            queued += 1;
        }
    }
    Ok(Advanced {
        queued,
        ended: false,
    })
}

/// A storage error met inside a transaction the queue drives with diesel's errors: an
/// unreachable database stays one (the writer retries), anything else is a refusal.
fn into_diesel(e: DbError) -> diesel::result::Error {
    match e {
        DbError::Unavailable(_) => diesel::result::Error::BrokenTransactionManager,
        other => diesel::result::Error::QueryBuilderError(Box::new(other)),
    }
}

fn fail_step(
    conn: &mut PgConnection,
    id: Uuid,
    path: &str,
    reason: &str,
) -> Result<Advanced, diesel::result::Error> {
    let error = serde_json::json!({
        "errorType": "Pipeline.StepUnavailable",
        "errorMessage": format!("step {path} cannot run: {reason}"),
        "step_path": path,
    });
    end_run(conn, id, FAILED, None, Some(error))?;
    Ok(Advanced {
        queued: 0,
        ended: true,
    })
}

fn end_run(
    conn: &mut PgConnection,
    id: Uuid,
    status: &str,
    result: Option<Value>,
    error: Option<Value>,
) -> Result<(), diesel::result::Error> {
    let result = result.map(|mut v| {
        fresco_common::storable::fix_json(&mut v);
        v
    });
    let error = error.map(|mut v| {
        fresco_common::storable::fix_json(&mut v);
        v
    });
    diesel::update(pipeline_runs::table.filter(pipeline_runs::id.eq(id)))
        .set((
            pipeline_runs::status.eq(status),
            pipeline_runs::result.eq(result),
            pipeline_runs::error.eq(error),
            pipeline_runs::finished_at.eq(diesel::dsl::now),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn get_run(conn: &mut PgConnection, scope: &Scope, id: Uuid) -> DbResult<Run> {
    Ok(runs_in_scope(scope)
        .filter(pipeline_runs::id.eq(id))
        .select(Run::as_select())
        .first(conn)?)
}

/// The step executions of a run, oldest first.
pub fn run_steps(conn: &mut PgConnection, run: &Run) -> DbResult<Vec<StepExecution>> {
    Ok(executions::table
        .filter(executions::pipeline_run_id.eq(run.id))
        .filter(executions::project_id.eq(&run.project_id))
        .order((executions::created_at, executions::id))
        .select((
            executions::id,
            executions::pipeline_step,
            executions::pipeline_attempt,
            executions::status,
            executions::function_id,
            executions::function_version,
            executions::created_at,
            executions::started_at,
            executions::finished_at,
            executions::duration_ms,
        ))
        .load(conn)?)
}

/// Filters of the run list.
#[derive(Debug, Default)]
pub struct RunFilter {
    pub pipeline_id: Option<Uuid>,
    pub status: Option<String>,
}

pub fn list_runs(
    conn: &mut PgConnection,
    scope: &Scope,
    filter: &RunFilter,
    page: &PageRequest<Uuid>,
) -> DbResult<Page<Run>> {
    let mut query = runs_in_scope(scope);
    if let Some(pipeline) = filter.pipeline_id {
        query = query.filter(pipeline_runs::pipeline_id.eq(pipeline));
    }
    if let Some(status) = &filter.status {
        query = query.filter(pipeline_runs::status.eq(status.clone()));
    }
    if let Some(marker) = page.marker {
        let row = get_run(conn, scope, marker)?;
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
        .select(Run::as_select())
        .load(conn)?;
    Ok(Page::from_overfetch(items, page.limit))
}
