//! The invocation path: a slot of a grant (see `grants`), run on the agent, record.
//!
//! Sync invocations are recorded off the hot path by the `Recorder` (batched inserts from a
//! dedicated thread); async ones are committed to PostgreSQL before the caller hears 202, and
//! the scheduler's dispatcher runs them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use fresco_common::agent_client::{AgentCallError, AgentClient};
use fresco_common::scheduler_client::{SchedulerClient, SchedulerError};
use fresco_common::storable;
use fresco_common::wire::{GrantRequest, RunResult, RunStatus};
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::domain::executions::QueueGauge;
use crate::domain::invoke::{Resolved, Selector, Target};
use crate::domain::DomainError;
use crate::grants::{GrantPool, GrantSlot, PoolKey};
use fresco_store::executions::{self, Execution};
use fresco_store::{DbError, ExecutionStatus, PgConnection, PgPool, Scope};

/// Why an invocation did not produce a result from the function.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error("{message}")]
    RateLimited {
        retry_after: Duration,
        message: String,
    },
    #[error("no capacity to run the function now: {0}")]
    NoCapacity(String),
    #[error("scheduler unavailable: {0}")]
    SchedulerUnavailable(String),
    /// The platform failed to run the function (recorded as status `error`, `Platform.*`);
    /// `message` is the platform's own text (agents, URLs, the engine's words).
    #[error("the platform could not run the function: execution {execution_id}: {message}")]
    AgentFailed { execution_id: Uuid, message: String },
    /// Execution records wait to be written beyond the recorder's bound: nothing ran.
    #[error(transparent)]
    RecordsBehind(#[from] RecorderBehind),
}

impl From<SchedulerError> for InvokeError {
    fn from(error: SchedulerError) -> Self {
        match error {
            SchedulerError::RateLimited {
                retry_after,
                message,
            } => InvokeError::RateLimited {
                retry_after,
                message,
            },
            SchedulerError::NoCapacity(m) => InvokeError::NoCapacity(m),
            other => InvokeError::SchedulerUnavailable(other.to_string()),
        }
    }
}

/// A finished sync invocation.
pub struct Outcome {
    pub execution_id: Uuid,
    pub result: RunResult,
}

/// What a target is cached under: who asks, for which function, and which state of it.
pub type TargetKey = (Scope, String, Selector);

/// Resolved targets kept for `[api] function_cache_ttl` seconds, so a hot function costs no
/// database round trip per invocation. A change made through this replica drops the targets
/// it affects at once; a change made through another replica (or straight in the database)
/// is seen after at most the TTL.
pub struct TargetCache {
    ttl: Duration,
    entries: Mutex<HashMap<TargetKey, (Instant, Arc<Resolved>)>>,
}

const CACHE_MAX_ENTRIES: usize = 50_000;

impl TargetCache {
    pub fn new(ttl: Duration) -> Self {
        TargetCache {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub fn get(&self, key: &TargetKey) -> Option<Arc<Resolved>> {
        if self.ttl.is_zero() {
            return None;
        }
        let entries = self.entries.lock().ok()?;
        entries
            .get(key)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, target)| Arc::clone(target))
    }

    /// Drops every target of one function (it changed or went away).
    pub fn forget_function(&self, function_id: Uuid) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.retain(|_, (_, resolved)| resolved.function_id != function_id);
        }
    }

    /// Drops every target (a runtime changed: any function may use it).
    pub fn clear(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.clear();
        }
    }

    /// Forgets a target (it named code that is gone).
    pub fn remove(&self, key: &TargetKey) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(key);
        }
    }

    pub fn put(&self, key: TargetKey, target: Arc<Resolved>) {
        if self.ttl.is_zero() {
            return;
        }
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= CACHE_MAX_ENTRIES {
                let ttl = self.ttl;
                entries.retain(|_, (at, _)| at.elapsed() < ttl);
                if entries.len() >= CACHE_MAX_ENTRIES {
                    entries.clear();
                }
            }
            entries.insert(key, (Instant::now(), target));
        }
    }
}

/// Writes finished sync executions in batches from its own thread.
///
/// Bounded in bytes and in records: past `max_bytes` of records waiting (the database is slow
/// or down), [`Recorder::admit`] refuses new invocations (503) until they are written; a
/// record that still arrives past twice that keeps its accounting (status, duration, memory)
/// but not its output. Every record is made storable first (no NUL), and a batch PostgreSQL
/// refuses is written again row by row, so one bad record fails alone: it is stored as a
/// platform error, or dropped with a log line if even that is refused, never retried forever.
#[derive(Clone)]
pub struct Recorder {
    sender: SyncSender<(Execution, usize)>,
    backlog: Arc<Backlog>,
}

/// What the recorder holds and has not written yet.
#[derive(Debug, Default)]
struct Backlog {
    bytes: AtomicUsize,
    records: AtomicUsize,
    max_bytes: usize,
}

/// The recorder is too far behind to accept more work.
#[derive(Debug, thiserror::Error)]
#[error("execution records are not being written fast enough ({records} records, {bytes} bytes waiting): retry shortly")]
pub struct RecorderBehind {
    pub records: usize,
    pub bytes: usize,
}

const RECORDER_QUEUE: usize = 100_000;
const RECORDER_BATCH: usize = 500;
const RECORDER_LINGER: Duration = Duration::from_millis(20);
/// Bytes a record costs beyond its bodies (ids, timestamps, numbers, allocation overhead).
const RECORD_OVERHEAD: usize = 512;
/// What a record kept without its output says in place of its logs.
const OUTPUT_DROPPED: &str =
    "[fresco: this execution's output was not kept: the api's execution recorder was over its memory bound]\n";

impl Recorder {
    /// Starts the writer thread; `max_bytes` bounds what waits to be written.
    pub fn start(pool: PgPool, max_bytes: usize) -> Self {
        let (sender, receiver) = mpsc::sync_channel(RECORDER_QUEUE);
        let backlog = Arc::new(Backlog {
            max_bytes: max_bytes.max(1),
            ..Backlog::default()
        });
        {
            let backlog = Arc::clone(&backlog);
            std::thread::Builder::new()
                .name("execution-recorder".into())
                .spawn(move || record_loop(&pool, &receiver, &backlog))
                .map_err(|e| log::error!("cannot start the execution recorder: {e}"))
                .ok();
        }
        Recorder { sender, backlog }
    }

    /// Whether a new invocation may start: refused while more than `max_bytes` (or nine
    /// tenths of the record bound) wait to be written.
    pub fn admit(&self) -> Result<(), RecorderBehind> {
        let bytes = self.backlog.bytes.load(Ordering::Relaxed);
        let records = self.backlog.records.load(Ordering::Relaxed);
        if bytes > self.backlog.max_bytes || records > RECORDER_QUEUE / 10 * 9 {
            return Err(RecorderBehind { records, bytes });
        }
        Ok(())
    }

    pub fn record(&self, mut execution: Execution) {
        make_storable(&mut execution);
        let mut size = record_size(&execution);
        let held = self.backlog.bytes.load(Ordering::Relaxed);
        if held.saturating_add(size) > self.backlog.max_bytes.saturating_mul(2) {
            log::warn!(
                "execution recorder holds {held} bytes: execution {} recorded without its output",
                execution.id
            );
            execution.result = None;
            execution.logs = OUTPUT_DROPPED.to_owned();
            execution.error = execution.error.map(|_| {
                serde_json::json!({"errorType": "Platform.OutputDropped", "errorMessage": "the error was not kept: the api's execution recorder was over its memory bound"})
            });
            size = record_size(&execution);
        }
        self.backlog.bytes.fetch_add(size, Ordering::Relaxed);
        self.backlog.records.fetch_add(1, Ordering::Relaxed);
        match self.sender.try_send((execution, size)) {
            Ok(()) => {}
            Err(TrySendError::Full((e, size))) => {
                self.backlog.forget(size);
                log::error!("execution recorder is {RECORDER_QUEUE} records behind: execution {} not recorded", e.id)
            }
            Err(TrySendError::Disconnected((e, size))) => {
                self.backlog.forget(size);
                log::error!(
                    "execution recorder stopped: execution {} not recorded",
                    e.id
                )
            }
        }
    }
}

impl Backlog {
    fn forget(&self, size: usize) {
        self.bytes.fetch_sub(size, Ordering::Relaxed);
        self.records.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Replaces every NUL of what the function produced (see `fresco_common::storable`).
fn make_storable(execution: &mut Execution) {
    if let Some(result) = &mut execution.result {
        storable::fix_text(result);
    }
    if let Some(error) = &mut execution.error {
        storable::fix_json(error);
    }
    storable::fix_text(&mut execution.logs);
}

/// Roughly what a record holds in memory.
fn record_size(e: &Execution) -> usize {
    RECORD_OVERHEAD
        + e.result.as_ref().map_or(0, String::len)
        + e.error.as_ref().map_or(0, json_size)
        + e.input.as_ref().map_or(0, Vec::len)
        + e.spec.as_ref().map_or(0, json_size)
        + e.logs.len()
}

fn json_size(value: &serde_json::Value) -> usize {
    use serde_json::Value;
    match value {
        Value::String(s) => s.len() + 8,
        Value::Array(items) => 8 + items.iter().map(json_size).sum::<usize>(),
        Value::Object(map) => {
            8 + map
                .iter()
                .map(|(k, v)| k.len() + json_size(v))
                .sum::<usize>()
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => 8,
    }
}

/// The record of an execution whose own record PostgreSQL refused: a platform error that keeps
/// the accounting (duration, memory, agent) and says how the function ended.
pub fn rejected_record(row: &Execution, reason: &str) -> Execution {
    Execution {
        status: ExecutionStatus::Error,
        input: None,
        spec: None,
        result: None,
        error: Some(serde_json::json!({
            "errorType": "Platform.RecordRejected",
            "errorMessage": format!(
                "the database refused this execution's record ({}); the function ended with status {}",
                storable::text(reason),
                row.status
            ),
        })),
        logs: String::new(),
        ..row.clone()
    }
}

/// How writing a batch ended.
enum Written {
    /// Every row is written or given up on.
    Done,
    /// The database is unavailable: these rows are still to write.
    Retry(Vec<(Execution, usize)>),
}

/// Writes a batch in one statement; when PostgreSQL refuses it for its content, row by row.
fn write_batch(pool: &PgPool, batch: Vec<(Execution, usize)>, backlog: &Backlog) -> Written {
    let mut conn = match pool.get() {
        Ok(conn) => conn,
        Err(e) => {
            log::warn!("cannot record {} executions yet: {e}", batch.len());
            return Written::Retry(batch);
        }
    };
    let rows: Vec<Execution> = batch.iter().map(|(row, _)| row.clone()).collect();
    match executions::insert_many(&mut conn, &rows) {
        Ok(()) => {
            batch.iter().for_each(|(_, size)| backlog.forget(*size));
            return Written::Done;
        }
        Err(DbError::Unavailable(e)) => {
            log::warn!("cannot record {} executions yet: {e}", batch.len());
            return Written::Retry(batch);
        }
        Err(e) => log::warn!(
            "the database refused a batch of {} execution records ({e}): writing them one by one",
            batch.len()
        ),
    }
    let mut pending = batch.into_iter();
    while let Some((row, size)) = pending.next() {
        match write_one(&mut conn, row) {
            None => backlog.forget(size),
            Some(row) => {
                let mut rest = vec![(row, size)];
                rest.extend(pending);
                return Written::Retry(rest);
            }
        }
    }
    Written::Done
}

/// Writes one record; a record PostgreSQL refuses becomes a platform error, and one refused
/// even then is dropped with a log line. Gives the row back only when the database is
/// unavailable (worth another try).
fn write_one(conn: &mut PgConnection, row: Execution) -> Option<Execution> {
    let reason = match executions::insert_many(conn, std::slice::from_ref(&row)) {
        Ok(()) => return None,
        Err(DbError::Unavailable(_)) => return Some(row),
        Err(e) => e.to_string(),
    };
    log::warn!(
        "the database refused the record of execution {} ({reason}): recording it as a platform error",
        row.id
    );
    let substitute = rejected_record(&row, &reason);
    match executions::insert_many(conn, std::slice::from_ref(&substitute)) {
        Ok(()) => None,
        Err(DbError::Unavailable(_)) => Some(substitute),
        Err(e) => {
            log::error!(
                "the database refused even the platform-error record of execution {} ({e}): not recorded",
                row.id
            );
            None
        }
    }
}

fn record_loop(pool: &PgPool, receiver: &Receiver<(Execution, usize)>, backlog: &Backlog) {
    let mut batch: Vec<(Execution, usize)> = Vec::with_capacity(RECORDER_BATCH);
    loop {
        if batch.is_empty() {
            match receiver.recv() {
                Ok(row) => batch.push(row),
                Err(_) => return,
            }
        }
        let deadline = Instant::now() + RECORDER_LINGER;
        while batch.len() < RECORDER_BATCH {
            match receiver.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(row) => batch.push(row),
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        match write_batch(pool, std::mem::take(&mut batch), backlog) {
            Written::Done => {}
            Written::Retry(rest) => {
                // Keep the rows and retry: the database may be restarting.
                batch = rest;
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}

/// Runs invocations.
pub struct Invoker {
    pub scheduler: SchedulerClient,
    agents: AgentClient,
    /// Grants held for warm invocations.
    pub grants: Arc<GrantPool>,
    grant_idle: Duration,
    returning: std::sync::atomic::AtomicBool,
    pub recorder: Recorder,
    pub cache: TargetCache,
    /// Projects' hooks (`crate::hooks`), kept as long as targets.
    pub hooks: crate::hooks::HookCache,
    /// Recent counts of queued executions per project (the `queued_executions` quota).
    pub queue_gauge: Arc<QueueGauge>,
}

impl Invoker {
    pub fn new(
        scheduler: SchedulerClient,
        recorder: Recorder,
        cache_ttl: Duration,
        agents: AgentClient,
        grants: GrantPool,
        grant_idle: Duration,
    ) -> Self {
        Invoker {
            grants: Arc::new(grants),
            grant_idle,
            returning: std::sync::atomic::AtomicBool::new(false),
            scheduler,
            agents,
            recorder,
            cache: TargetCache::new(cache_ttl),
            hooks: crate::hooks::HookCache::new(cache_ttl),
            queue_gauge: Arc::new(QueueGauge::default()),
        }
    }

    /// Runs the target synchronously: a slot of a grant this replica holds for the target
    /// (asked of the scheduler only when none has room), one agent call, then the execution
    /// is recorded in the background. When the platform fails before any of the function ran
    /// (the agent cannot be reached, refuses it before running, or reports a retry-safe
    /// platform error such as a container that could not be created), the grant is retired
    /// and the invocation tried once more, on another grant (another agent where possible). A
    /// platform failure is never the function's result: it is recorded as status `error` with
    /// a `Platform.*` error type and answered as `InvokeError::AgentFailed` (503).
    pub async fn invoke_sync(
        &self,
        target: &Target,
        payload: Box<RawValue>,
    ) -> Result<Outcome, InvokeError> {
        let execution_id = Uuid::new_v4();
        let created_at = Utc::now();
        let input_size = i32::try_from(payload.get().len()).unwrap_or(i32::MAX);
        let failure = |attempts: i32, agent_id: Option<&str>, error: PlatformFailure| {
            self.fail(
                target,
                execution_id,
                created_at,
                input_size,
                attempts,
                agent_id,
                error,
            )
        };
        self.start_returning_grants();
        let key = PoolKey::of(&target.spec);
        let mut attempts = 0;
        let mut earlier: Option<(String, PlatformFailure)> = None;
        let (agent_id, result) = loop {
            attempts += 1;
            let last = attempts >= SYNC_ATTEMPTS;
            let slot = match self.slot(target, key).await {
                Ok(slot) => slot,
                // A retry that cannot get a grant ends with the first attempt's failure.
                Err(e) => match earlier.take() {
                    Some((agent, error)) => return Err(failure(attempts - 1, Some(&agent), error)),
                    None => return Err(e),
                },
            };
            let grant = slot.grant();
            let agent = grant.agent_id.as_str();
            let sent = self
                .agents
                .run_grant(
                    agent,
                    &grant.agent_url,
                    &grant.token,
                    execution_id,
                    &payload,
                    target.spec.timeout_s,
                )
                .await;
            let error = match sent {
                Ok(result) if result.status != RunStatus::Error => {
                    break (agent.to_owned(), result)
                }
                Ok(result) => {
                    slot.retire();
                    let retry = result.retry_safe && !last;
                    let error = PlatformFailure::from_result(result);
                    if retry {
                        log::warn!(
                            "execution {execution_id}: agent {agent} failed before the function ran ({}), trying again",
                            error.message
                        );
                        earlier = Some((agent.to_owned(), error));
                        continue;
                    }
                    return Err(failure(attempts, Some(agent), error));
                }
                // Nothing ran (the agent cannot be reached, or refused it before running:
                // engine down, full, stopping): another agent may try.
                // The function's image is not on that node: the agent is well (it is not
                // reported), another agent may hold the image.
                Err(e @ AgentCallError::NotRun { .. })
                    if e.not_run_reason() == Some("no-image") =>
                {
                    slot.retire();
                    let error = PlatformFailure::new("ImageUnavailable", e.to_string());
                    if !last {
                        log::warn!("execution {execution_id}: {}, trying again", error.message);
                        earlier = Some((agent.to_owned(), error));
                        continue;
                    }
                    return Err(failure(attempts, Some(agent), error));
                }
                Err(e) if e.nothing_ran() => {
                    slot.retire();
                    // Tell the scheduler first, or it grants the same agent again.
                    self.report_unreachable(agent).await;
                    let error = PlatformFailure::new("AgentUnavailable", e.to_string());
                    if !last {
                        log::warn!("execution {execution_id}: {}, trying again", error.message);
                        earlier = Some((agent.to_owned(), error));
                        continue;
                    }
                    return Err(failure(attempts, Some(agent), error));
                }
                // The agent refused the grant itself (it restarted since, so the grant predates
                // it; or it expired in flight): nothing ran, another grant may serve.
                Err(e @ AgentCallError::Refused { status: 401, .. }) if !last => {
                    slot.retire();
                    log::warn!("execution {execution_id}: {e}, trying again with another grant");
                    earlier = Some((
                        agent.to_owned(),
                        PlatformFailure::new("AgentError", e.to_string()),
                    ));
                    continue;
                }
                // Timed out, or the connection broke during the run: the function may have run.
                Err(e @ (AgentCallError::TimedOut { .. } | AgentCallError::Lost { .. })) => {
                    slot.retire();
                    PlatformFailure::new("AgentLost", e.to_string())
                }
                Err(e) => {
                    slot.retire();
                    PlatformFailure::new("AgentError", e.to_string())
                }
            };
            return Err(failure(attempts, Some(agent), error));
        };
        let finished_at = Utc::now();
        self.recorder.record(Execution {
            id: execution_id,
            project_id: target.spec.project_id.clone(),
            function_id: target.spec.function_id,
            function_version: target.spec.version,
            alias: target.alias.clone(),
            status: ExecutionStatus::from(result.status),
            is_async: false,
            input: None,
            input_size,
            spec: None,
            result: result.response.clone(),
            error: result
                .error
                .as_ref()
                .and_then(|e| serde_json::to_value(e).ok()),
            duration_ms: Some(result.duration_ms),
            max_memory_mb: result.max_memory_mb,
            memory_mb: target.spec.memory_mb,
            cold: Some(result.cold),
            agent_id: Some(agent_id),
            attempts,
            logs: result.logs.clone(),
            created_at,
            started_at: Some(created_at),
            finished_at: Some(finished_at),
            cpu_ms: result.cpu_ms,
            init_duration_ms: result.init_ms,
        });
        Ok(Outcome {
            execution_id,
            result,
        })
    }

    /// A slot of a held grant of the target, else of a new one from the scheduler.
    async fn slot(&self, target: &Target, key: PoolKey) -> Result<GrantSlot, InvokeError> {
        if let Some(slot) = self.grants.take(&key, Instant::now()) {
            return Ok(slot);
        }
        let (slots, invocations) = self.grants.wanted(&key);
        let answer = self
            .scheduler
            .grant(&GrantRequest {
                spec: target.spec.clone(),
                concurrent_limit: target.limits.concurrent_executions,
                per_minute_limit: target.limits.executions_per_minute,
                slots,
                invocations,
            })
            .await?;
        let grant_id = answer.grant_id;
        self.grants.add(key, answer, Instant::now()).ok_or_else(|| {
            InvokeError::SchedulerUnavailable(format!("grant {grant_id} came without a slot"))
        })
    }

    /// Starts the task returning idle grants, once (it needs the runtime, so the first
    /// invocation starts it).
    fn start_returning_grants(&self) {
        if self.returning.swap(true, Ordering::AcqRel) {
            return;
        }
        let grants = Arc::clone(&self.grants);
        let scheduler = self.scheduler.clone();
        let every = (self.grant_idle / 2).max(Duration::from_millis(50));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                for (grant_id, returned) in grants.due(Instant::now()) {
                    scheduler.return_grant_in_background(grant_id, returned);
                }
            }
        });
    }

    async fn report_unreachable(&self, agent_id: &str) {
        if let Err(e) = self.scheduler.report_unreachable(agent_id).await {
            log::warn!("cannot report agent {agent_id} unreachable: {e}");
        }
    }

    /// Records a platform failure (status `error`) and returns the error to answer with.
    #[allow(clippy::too_many_arguments)]
    fn fail(
        &self,
        target: &Target,
        execution_id: Uuid,
        created_at: chrono::DateTime<Utc>,
        input_size: i32,
        attempts: i32,
        agent_id: Option<&str>,
        failure: PlatformFailure,
    ) -> InvokeError {
        let message = failure.message.clone();
        self.recorder.record(Execution {
            id: execution_id,
            project_id: target.spec.project_id.clone(),
            function_id: target.spec.function_id,
            function_version: target.spec.version,
            alias: target.alias.clone(),
            status: ExecutionStatus::Error,
            is_async: false,
            input: None,
            input_size,
            spec: None,
            result: None,
            error: Some(serde_json::json!({
                "errorType": failure.error_type,
                "errorMessage": failure.message,
            })),
            duration_ms: failure.duration_ms,
            max_memory_mb: None,
            memory_mb: target.spec.memory_mb,
            cold: failure.cold,
            agent_id: agent_id.map(str::to_owned),
            attempts,
            logs: failure.logs,
            created_at,
            started_at: Some(created_at),
            finished_at: Some(Utc::now()),
            cpu_ms: None,
            init_duration_ms: None,
        });
        InvokeError::AgentFailed {
            execution_id,
            message,
        }
    }
}

/// Placements a sync invocation gets when the platform fails before the function runs.
const SYNC_ATTEMPTS: i32 = 2;

/// A failure of the platform on the sync path, as it is recorded.
struct PlatformFailure {
    /// `Platform.*`.
    error_type: String,
    message: String,
    duration_ms: Option<f64>,
    cold: Option<bool>,
    logs: String,
}

impl PlatformFailure {
    fn new(kind: &str, message: String) -> Self {
        Self {
            error_type: format!("Platform.{kind}"),
            message,
            duration_ms: None,
            cold: None,
            logs: String::new(),
        }
    }

    /// An agent's `error` result (its error type is already `Platform.*`).
    fn from_result(result: RunResult) -> Self {
        let (error_type, message) = match result.error {
            Some(e) if e.error_type.starts_with("Platform.") => (e.error_type, e.error_message),
            Some(e) => (
                "Platform.Error".to_owned(),
                format!("{}: {}", e.error_type, e.error_message),
            ),
            None => (
                "Platform.Error".to_owned(),
                "the agent reported a platform error".to_owned(),
            ),
        };
        Self {
            error_type,
            message,
            duration_ms: Some(result.duration_ms),
            cold: Some(result.cold),
            logs: result.logs,
        }
    }
}

/// The queued execution an async invocation commits.
pub fn queued_execution(target: &Target, payload: &RawValue) -> Result<Execution, DomainError> {
    let input = payload.get().as_bytes().to_vec();
    Ok(Execution {
        id: Uuid::new_v4(),
        project_id: target.spec.project_id.clone(),
        function_id: target.spec.function_id,
        function_version: target.spec.version,
        alias: target.alias.clone(),
        status: ExecutionStatus::Queued,
        is_async: true,
        input_size: i32::try_from(input.len()).unwrap_or(i32::MAX),
        input: Some(input),
        spec: Some(
            serde_json::to_value(&target.spec).map_err(|e| DomainError::Internal(e.to_string()))?,
        ),
        result: None,
        error: None,
        duration_ms: None,
        max_memory_mb: None,
        memory_mb: target.spec.memory_mb,
        cold: None,
        agent_id: None,
        attempts: 0,
        logs: String::new(),
        created_at: Utc::now(),
        started_at: None,
        finished_at: None,
        cpu_ms: None,
        init_duration_ms: None,
    })
}
