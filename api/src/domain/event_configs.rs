//! A function's async invocation config: how many runs an event gets when the function fails,
//! how old it may grow, and where its outcome goes (a function of the same project on success
//! or failure, or the function's dead-letter list). The scheduler applies it when an async
//! execution ends; dead letters are replayed here.

use chrono::Utc;
use fresco_store::event_configs::{self as store, DeadLetter, EventConfig};
use fresco_store::paging::{Page, PageRequest};
use fresco_store::{functions, PgConnection, Scope};
use serde_json::value::RawValue;
use uuid::Uuid;

use super::executions::{self, Enqueued, QueueGauge};
use super::invoke::Target;
use super::runtimes::marker_error;
use super::{db_error, validate, DomainError, DomainResult};
use crate::invoke::queued_execution;

/// What a PUT asks for (the whole config; what is not given takes its default).
#[derive(Debug, Clone, Default)]
pub struct EventConfigInput {
    pub max_attempts: Option<i32>,
    pub max_event_age_s: Option<i32>,
    /// A function of the same project, by id or name.
    pub on_success: Option<String>,
    pub on_failure: Option<String>,
    pub dead_letter: Option<bool>,
}

fn function(
    conn: &mut PgConnection,
    scope: &Scope,
    key: &str,
) -> DomainResult<functions::Function> {
    functions::get_by_ref(conn, scope, key).map_err(db_error("function", key))
}

/// A destination: a function of `project_id` (another project's is not found).
fn destination(
    conn: &mut PgConnection,
    project_id: &str,
    field: &str,
    key: &str,
) -> DomainResult<Uuid> {
    functions::get_by_ref(conn, &Scope::Project(project_id.to_owned()), key)
        .map(|f| f.id)
        .map_err(|_| DomainError::invalid(format!("{field}: function {key} could not be found")))
}

pub fn get(conn: &mut PgConnection, scope: &Scope, key: &str) -> DomainResult<EventConfig> {
    let f = function(conn, scope, key)?;
    store::get(conn, &f.project_id, f.id).map_err(db_error("event config of function", key))
}

pub fn put(
    conn: &mut PgConnection,
    scope: &Scope,
    key: &str,
    input: EventConfigInput,
) -> DomainResult<EventConfig> {
    let f = function(conn, scope, key)?;
    let max_attempts = input.max_attempts.unwrap_or(1);
    validate::range("max_attempts", max_attempts, 1, 10)?;
    if let Some(age) = input.max_event_age_s {
        validate::range("max_event_age_s", age, 1, 86_400)?;
    }
    let dead_letter = input.dead_letter.unwrap_or(false);
    if dead_letter && input.on_failure.is_some() {
        return Err(DomainError::invalid(
            "give on_failure or dead_letter, not both",
        ));
    }
    let on_success = match &input.on_success {
        Some(k) => Some(destination(conn, &f.project_id, "on_success", k)?),
        None => None,
    };
    let on_failure = match &input.on_failure {
        Some(k) => Some(destination(conn, &f.project_id, "on_failure", k)?),
        None => None,
    };
    let now = Utc::now();
    store::put(
        conn,
        &EventConfig {
            function_id: f.id,
            project_id: f.project_id,
            max_attempts,
            max_event_age_s: input.max_event_age_s,
            on_success,
            on_failure,
            dead_letter,
            created_at: now,
            updated_at: now,
        },
    )
    .map_err(db_error("event config of function", key))
}

pub fn delete(conn: &mut PgConnection, scope: &Scope, key: &str) -> DomainResult<()> {
    let f = function(conn, scope, key)?;
    store::delete(conn, &f.project_id, f.id).map_err(db_error("event config of function", key))
}

pub fn dead_letters(
    conn: &mut PgConnection,
    scope: &Scope,
    key: &str,
    page: &PageRequest<Uuid>,
) -> DomainResult<Page<DeadLetter>> {
    let f = function(conn, scope, key)?;
    store::dead_letters(conn, &f.project_id, f.id, page).map_err(marker_error)
}

/// The dead letter `id` of the function, for a replay.
pub fn dead_letter(
    conn: &mut PgConnection,
    scope: &Scope,
    key: &str,
    id: Uuid,
) -> DomainResult<DeadLetter> {
    let f = function(conn, scope, key)?;
    store::dead_letter(conn, &f.project_id, f.id, id).map_err(db_error("dead letter", id))
}

/// Replays dead letter `id`: in one transaction it leaves the list and its event is queued
/// again for `target` (the function's latest state), within the `queued_executions` quota.
pub fn replay(
    conn: &mut PgConnection,
    scope: &Scope,
    key: &str,
    id: Uuid,
    target: &Target,
    gauge: &QueueGauge,
) -> DomainResult<Enqueued> {
    let f = function(conn, scope, key)?;
    super::transaction(conn, |conn| {
        let letter = store::remove_dead_letter(conn, &f.project_id, f.id, id)
            .map_err(db_error("dead letter", id))?;
        let text = String::from_utf8(letter.input.unwrap_or_default())
            .map_err(|_| DomainError::Conflict("the dead letter's event is not text".into()))?;
        let text = if text.trim().is_empty() {
            "{}".to_owned()
        } else {
            text
        };
        let event = RawValue::from_string(text).map_err(|e| {
            DomainError::Conflict(format!("the dead letter's event is not JSON: {e}"))
        })?;
        let execution = queued_execution(target, &event)?;
        let enqueued =
            executions::enqueue(conn, &execution, target.limits.queued_executions, gauge)?;
        if matches!(enqueued, Enqueued::StaleCode) {
            // Roll the removal back: the caller resolves the target again.
            return Err(DomainError::Conflict(STALE.into()));
        }
        Ok(enqueued)
    })
    .or_else(|e| match e {
        DomainError::Conflict(m) if m == STALE => Ok(Enqueued::StaleCode),
        other => Err(other),
    })
}

const STALE: &str = "the function's code changed while the event was replayed";
