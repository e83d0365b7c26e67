//! Events the scheduler's leader turns into async executions: cron ticks of triggers, and
//! what an async execution's end asks for (a retry, a destination, a dead letter). Every write
//! happens inside a fenced transaction, so each tick and each end is acted on exactly once.

use chrono::{DateTime, Utc};
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Int4, Jsonb, Nullable, Text, Timestamptz};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::{fenced, Fence, StorageError, Store, QUEUE_CHANNEL};
use crate::event_configs::EventConfig;
use crate::executions::{insert_queued, Origin};
use crate::schema::{dead_letters, executions, function_event_configs, triggers};
use crate::targets::{self, Pick};
use crate::ExecutionStatus;

/// Deepest chain of destinations: an execution queued by a destination of an execution queued
/// by a destination ... stops here (a loop of functions naming each other ends).
pub const MAX_CHAIN_DEPTH: i32 = 8;

/// What one cron pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Fired {
    /// Ticks that queued an execution.
    pub queued: usize,
    /// Ticks that could not (the function cannot run; recorded in `last_error`).
    pub failed: usize,
    /// Every trigger read was due: more may be.
    pub more: bool,
}

/// A due cron trigger, as the pass reads it.
#[derive(QueryableByName)]
struct Due {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    id: Uuid,
    #[diesel(sql_type = Text)]
    project_id: String,
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    function_id: Uuid,
    #[diesel(sql_type = Nullable<Int4>)]
    function_version: Option<i32>,
    #[diesel(sql_type = Nullable<Text>)]
    alias: Option<String>,
    #[diesel(sql_type = Jsonb)]
    input: Value,
    #[diesel(sql_type = Text)]
    cron: String,
    #[diesel(sql_type = Text)]
    timezone: String,
    #[diesel(sql_type = Timestamptz)]
    next_run_at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    now: DateTime<Utc>,
}

/// The event a trigger hands its function: the members of its fixed input, then the event's
/// own (which win on a clash).
pub fn merge_event(input: &Value, own: Map<String, Value>) -> Value {
    let mut event = match input {
        Value::Object(members) => members.clone(),
        _ => Map::new(),
    };
    event.extend(own);
    Value::Object(event)
}

/// The id of the execution a cron tick queues: the same for the same trigger and tick.
pub fn tick_execution_id(trigger_id: Uuid, tick: DateTime<Utc>) -> Uuid {
    Uuid::new_v5(&trigger_id, &tick.timestamp_millis().to_be_bytes())
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Store {
    /// Fires the due cron ticks, at most `limit` triggers (the earliest due first, through the
    /// partial index of enabled cron triggers by `next_run_at`: the pass costs what is due,
    /// not how many triggers exist). For each: the execution of its tick is queued and
    /// `next_run_at` moves to `next(cron, timezone, after)`, in one fenced transaction, with
    /// the tick's row locked (`SKIP LOCKED`) and the move conditional on the tick: a tick
    /// queues one execution however often the pass runs, on whichever scheduler leads.
    ///
    /// Missed ticks (the platform was down past several): the oldest due tick runs once and
    /// the next is the first tick after now: a trigger runs at most once for every tick it
    /// missed. `next` returns `None` for a schedule with no tick left (the trigger is then
    /// left without `next_run_at` and fires no more).
    pub fn fire_cron(
        &self,
        fence: &Fence,
        limit: i64,
        next: impl Fn(&str, &str, DateTime<Utc>) -> Option<DateTime<Utc>>,
    ) -> Result<Fired, StorageError> {
        let mut conn = self.conn()?;
        let images = self.allowed_image_prefixes.clone();
        fenced(&mut conn, fence, |conn| {
            let due: Vec<Due> = diesel::sql_query(
                "SELECT id, project_id, name, function_id, function_version, alias, input, \
                        cron, timezone, next_run_at, now() AS now \
                 FROM triggers \
                 WHERE kind = 'cron' AND enabled AND next_run_at <= now() \
                 ORDER BY next_run_at LIMIT $1 \
                 FOR UPDATE SKIP LOCKED",
            )
            .bind::<BigInt, _>(limit.max(1))
            .load(conn)?;
            let mut fired = Fired {
                more: due.len() as i64 >= limit.max(1),
                ..Fired::default()
            };
            for trigger in due {
                let tick = trigger.next_run_at;
                let following = next(&trigger.cron, &trigger.timezone, tick.max(trigger.now));
                let id = tick_execution_id(trigger.id, tick);
                let pick = match (trigger.function_version, &trigger.alias) {
                    (Some(n), _) => Pick::Version(n),
                    (None, Some(alias)) => Pick::Alias(alias.clone()),
                    (None, None) => Pick::Latest,
                };
                let roll = u32::from(id.as_bytes()[0]) % 100;
                let event = merge_event(
                    &trigger.input,
                    [(
                        "trigger".to_owned(),
                        json!({
                            "id": trigger.id,
                            "name": trigger.name,
                            "type": "cron",
                            "time": rfc3339(tick),
                        }),
                    )]
                    .into_iter()
                    .collect(),
                );
                // Each tick in a savepoint: one that cannot queue fails alone.
                let queued = conn.transaction(|conn| {
                    let (spec, alias) = targets::resolve(
                        conn,
                        &trigger.project_id,
                        trigger.function_id,
                        &pick,
                        roll,
                        &images,
                    )
                    .map_err(|e| e.to_string())
                    .map_err(QueueError::Refused)?;
                    // Inserted only once: a second pass over the same tick finds its id.
                    insert_queued(
                        conn,
                        &spec,
                        alias.as_deref(),
                        event.to_string().as_bytes(),
                        &Origin {
                            id,
                            trigger_id: Some(trigger.id),
                            chain_depth: 0,
                        },
                    )
                    .map_err(|e| QueueError::Refused(e.to_string()))
                });
                let last_error = match queued {
                    Ok(inserted) => {
                        fired.queued += usize::from(inserted);
                        None
                    }
                    Err(QueueError::Db(e)) => return Err(e.into()),
                    Err(QueueError::Refused(reason)) => {
                        log::warn!(
                            "cron trigger {} (project {}): tick {tick} not queued: {reason}",
                            trigger.id,
                            trigger.project_id
                        );
                        fired.failed += 1;
                        Some(format!("tick {} not queued: {reason}", rfc3339(tick)))
                    }
                };
                diesel::update(
                    triggers::table
                        .filter(triggers::id.eq(trigger.id))
                        .filter(triggers::next_run_at.eq(tick)),
                )
                .set((
                    triggers::next_run_at.eq(following),
                    triggers::last_run_at.eq(tick),
                    triggers::last_error.eq(last_error),
                ))
                .execute(conn)?;
            }
            if fired.queued > 0 {
                diesel::sql_query(format!("NOTIFY {QUEUE_CHANNEL}")).execute(conn)?;
            }
            Ok(fired)
        })
    }
}

/// One OpenStack notification, as the consumer hands it over: whose it is, its type, and an id
/// unique to it (oslo's `message_id`), which makes a redelivered notification queue nothing
/// new.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub project_id: String,
    pub event_type: String,
    pub message_id: String,
    /// The members of the event (the notification without its request context).
    pub event: Map<String, Value>,
}

/// The id of the execution a notification queues for a trigger: the same for a redelivery.
pub fn notification_execution_id(trigger_id: Uuid, message_id: &str) -> Uuid {
    Uuid::new_v5(&trigger_id, message_id.as_bytes())
}

impl Store {
    /// Queues one async execution for every enabled notification trigger of the
    /// notification's project whose event types match it, in one fenced transaction (each
    /// trigger in a savepoint: one whose function cannot run is skipped and logged). Returns
    /// how many executions were queued; a notification delivered again queues none again.
    pub fn fire_notification(
        &self,
        fence: &Fence,
        notification: &Notification,
    ) -> Result<usize, StorageError> {
        self.fire_notifications(fence, std::slice::from_ref(notification))
    }

    /// `fire_notification` for a batch, in one fenced transaction: all of them are queued or
    /// none (the consumer acknowledges the batch after this commits, or hands it all back).
    /// Each project's triggers are read once per batch.
    pub fn fire_notifications(
        &self,
        fence: &Fence,
        notifications: &[Notification],
    ) -> Result<usize, StorageError> {
        let mut conn = self.conn()?;
        let images = self.allowed_image_prefixes.clone();
        fenced(&mut conn, fence, |conn| {
            let mut by_project: std::collections::HashMap<&str, Vec<crate::triggers::Trigger>> =
                std::collections::HashMap::new();
            let mut queued = 0;
            for notification in notifications {
                if !by_project.contains_key(notification.project_id.as_str()) {
                    // The enabled notification triggers of the project, through their partial
                    // index.
                    let triggers: Vec<crate::triggers::Trigger> = triggers::table
                        .filter(triggers::project_id.eq(&notification.project_id))
                        .filter(triggers::kind.eq(crate::triggers::NOTIFICATION))
                        .filter(triggers::enabled.eq(true))
                        .select(crate::triggers::Trigger::as_select())
                        .load(conn)?;
                    by_project.insert(&notification.project_id, triggers);
                }
                let triggers = by_project
                    .get(notification.project_id.as_str())
                    .map_or(&[][..], Vec::as_slice);
                queued += queue_notification(conn, &images, triggers, notification)?;
            }
            if queued > 0 {
                diesel::sql_query(format!("NOTIFY {QUEUE_CHANNEL}")).execute(conn)?;
            }
            Ok(queued)
        })
    }
}

/// Queues `notification` for each of `triggers` (its project's) that matches it, each in a
/// savepoint; returns how many executions were queued.
fn queue_notification(
    conn: &mut PgConnection,
    images: &[String],
    triggers: &[crate::triggers::Trigger],
    notification: &Notification,
) -> Result<usize, StorageError> {
    let mut queued = 0;
    for trigger in triggers {
        let matches =
            trigger.event_types.iter().flatten().any(|pattern| {
                crate::triggers::event_type_matches(pattern, &notification.event_type)
            });
        if !matches {
            continue;
        }
        let id = notification_execution_id(trigger.id, &notification.message_id);
        let pick = match (trigger.function_version, &trigger.alias) {
            (Some(n), _) => Pick::Version(n),
            (None, Some(alias)) => Pick::Alias(alias.clone()),
            (None, None) => Pick::Latest,
        };
        let roll = u32::from(id.as_bytes()[0]) % 100;
        let mut own = notification.event.clone();
        own.insert(
            "trigger".to_owned(),
            json!({"id": trigger.id, "name": trigger.name, "type": "notification"}),
        );
        let event = merge_event(&trigger.input, own);
        let inserted = conn.transaction(|conn| {
            let (spec, alias) = targets::resolve(
                conn,
                &trigger.project_id,
                trigger.function_id,
                &pick,
                roll,
                images,
            )
            .map_err(|e| QueueError::Refused(e.to_string()))?;
            insert_queued(
                conn,
                &spec,
                alias.as_deref(),
                event.to_string().as_bytes(),
                &Origin {
                    id,
                    trigger_id: Some(trigger.id),
                    chain_depth: 0,
                },
            )
            .map_err(|e| QueueError::Refused(e.to_string()))
        });
        match inserted {
            Ok(inserted) => queued += usize::from(inserted),
            Err(QueueError::Db(e)) => return Err(e.into()),
            Err(QueueError::Refused(reason)) => log::warn!(
                "notification trigger {} (project {}): {} not queued: {reason}",
                trigger.id,
                trigger.project_id,
                notification.event_type
            ),
        }
    }
    Ok(queued)
}

/// A savepoint's failure: the database's (the whole pass fails) or a refusal of this one item.
#[derive(Debug)]
enum QueueError {
    Db(diesel::result::Error),
    Refused(String),
}

impl From<diesel::result::Error> for QueueError {
    fn from(e: diesel::result::Error) -> Self {
        QueueError::Db(e)
    }
}

/// What an async execution's end needs from its row.
#[derive(Queryable)]
struct Ended {
    project_id: String,
    function_id: Uuid,
    is_async: bool,
    status: ExecutionStatus,
    input: Option<Vec<u8>>,
    result: Option<String>,
    error: Option<Value>,
    attempts: i32,
    created_at: DateTime<Utc>,
    chain_depth: i32,
    pipeline_run_id: Option<Uuid>,
}

/// What became of an ended execution under its function's event config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// No config, or nothing to do.
    Nothing,
    /// Queued again (the function failed and attempts remain).
    Retried,
    /// Its destination was queued.
    Destination,
    /// It was added to the dead-letter list.
    DeadLettered,
    /// It was a pipeline step: its run advanced (the step's own retry policy applies, not
    /// the function's event config).
    Pipeline,
}

/// Applies the function's event config to execution `id`, which has just ended (inside the
/// fenced transaction that wrote its end): a failed run with attempts left and not too old is
/// queued again; else the success or failure destination gets its record, or the dead-letter
/// list the event. A pipeline step's end advances its run instead (`pipelines::advance`).
pub(super) fn after_end(
    conn: &mut PgConnection,
    id: Uuid,
    images: &[String],
) -> Result<Outcome, diesel::result::Error> {
    let Some(ended) = executions::table
        .filter(executions::id.eq(id))
        .select((
            executions::project_id,
            executions::function_id,
            executions::is_async,
            executions::status,
            executions::input,
            executions::result,
            executions::error,
            executions::attempts,
            executions::created_at,
            executions::chain_depth,
            executions::pipeline_run_id,
        ))
        .first::<Ended>(conn)
        .optional()?
    else {
        return Ok(Outcome::Nothing);
    };
    if !ended.is_async || !ended.status.is_terminal() {
        return Ok(Outcome::Nothing);
    }
    if let Some(run) = ended.pipeline_run_id {
        let advanced = crate::pipelines::advance(conn, run, images)?;
        if advanced.queued > 0 {
            diesel::sql_query(format!("NOTIFY {QUEUE_CHANNEL}")).execute(conn)?;
        }
        return Ok(Outcome::Pipeline);
    }
    // A shadow copy is compared with its primary, and nothing else: no retry, destination
    // or dead letter.
    let copy = crate::shadows::Ended {
        status: ended.status,
        result: ended.result.as_deref(),
        error: ended.error.as_ref(),
        input: ended.input.as_deref(),
    };
    if crate::shadows::compare_ended(conn, id, &copy)?.is_some() {
        return Ok(Outcome::Nothing);
    }
    let Some(config) = function_event_configs::table
        .filter(function_event_configs::function_id.eq(ended.function_id))
        .filter(function_event_configs::project_id.eq(&ended.project_id))
        .select(EventConfig::as_select())
        .first::<EventConfig>(conn)
        .optional()?
    else {
        return Ok(Outcome::Nothing);
    };
    let succeeded = ended.status == ExecutionStatus::Succeeded;
    let age = Utc::now() - ended.created_at;
    let too_old = config
        .max_event_age_s
        .is_some_and(|max| age.num_seconds() >= i64::from(max));
    if !succeeded && ended.attempts < config.max_attempts && !too_old {
        diesel::update(executions::table.filter(executions::id.eq(id)))
            .set((
                executions::status.eq(ExecutionStatus::Queued),
                executions::agent_id.eq(None::<String>),
                executions::started_at.eq(None::<DateTime<Utc>>),
                executions::finished_at.eq(None::<DateTime<Utc>>),
            ))
            .execute(conn)?;
        diesel::sql_query(format!("NOTIFY {QUEUE_CHANNEL}")).execute(conn)?;
        return Ok(Outcome::Retried);
    }
    let destination = if succeeded {
        config.on_success
    } else {
        config.on_failure
    };
    if let Some(function_id) = destination {
        if ended.chain_depth >= MAX_CHAIN_DEPTH {
            log::warn!(
                "execution {id}: destination {function_id} not invoked: {MAX_CHAIN_DEPTH} destinations deep already"
            );
            return Ok(Outcome::Nothing);
        }
        let parse = |text: &Option<String>| -> Value {
            text.as_deref().map_or(Value::Null, |t| {
                serde_json::from_str(t).unwrap_or_else(|_| Value::String(t.to_owned()))
            })
        };
        let request = ended.input.as_deref().map_or(Value::Null, |b| {
            serde_json::from_slice(b)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(b).into_owned()))
        });
        let record = json!({
            "execution_id": id,
            "function_id": ended.function_id,
            "condition": if succeeded { "success" } else { "failure" },
            "status": ended.status.as_str(),
            "attempts": ended.attempts,
            "request": request,
            "response": parse(&ended.result),
            "error": ended.error,
        });
        let queued = conn.transaction(|conn| {
            let (spec, _) = targets::resolve(
                conn,
                &ended.project_id,
                function_id,
                &Pick::Latest,
                0,
                images,
            )
            .map_err(|e| QueueError::Refused(e.to_string()))?;
            insert_queued(
                conn,
                &spec,
                None,
                record.to_string().as_bytes(),
                &Origin {
                    id: Uuid::new_v5(&id, b"destination"),
                    trigger_id: None,
                    chain_depth: ended.chain_depth + 1,
                },
            )
            .map_err(|e| QueueError::Refused(e.to_string()))?;
            Ok::<_, QueueError>(())
        });
        return match queued {
            Ok(()) => {
                diesel::sql_query(format!("NOTIFY {QUEUE_CHANNEL}")).execute(conn)?;
                Ok(Outcome::Destination)
            }
            Err(QueueError::Db(e)) => Err(e),
            Err(QueueError::Refused(reason)) => {
                log::warn!("execution {id}: destination {function_id} not invoked: {reason}");
                Ok(Outcome::Nothing)
            }
        };
    }
    if !succeeded && config.dead_letter {
        diesel::insert_into(dead_letters::table)
            .values((
                dead_letters::id.eq(Uuid::new_v4()),
                dead_letters::project_id.eq(&ended.project_id),
                dead_letters::function_id.eq(ended.function_id),
                dead_letters::execution_id.eq(id),
                dead_letters::input.eq(&ended.input),
                dead_letters::status.eq(ended.status.as_str()),
                dead_letters::error.eq(&ended.error),
                dead_letters::attempts.eq(ended.attempts),
            ))
            .on_conflict_do_nothing()
            .execute(conn)?;
        return Ok(Outcome::DeadLettered);
    }
    Ok(Outcome::Nothing)
}
