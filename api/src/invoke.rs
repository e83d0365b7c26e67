//! The invocation path: place with the scheduler, run on the agent, release, record.
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
use fresco_common::scheduler_client::{SchedulerClient, SchedulerError};
use fresco_common::storable;
use fresco_common::ticket::sha256_hex;
use fresco_common::tls::InternalTls;
use fresco_common::wire::{PlacementRequest, Release, RunRequest, RunResult, RunStatus};
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::domain::executions::QueueGauge;
use crate::domain::invoke::{Resolved, Selector, Target};
use crate::domain::DomainError;
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
    agents: reqwest::Client,
    pub recorder: Recorder,
    pub cache: TargetCache,
    /// Recent counts of queued executions per project (the `queued_executions` quota).
    pub queue_gauge: Arc<QueueGauge>,
}

impl Invoker {
    pub fn new(
        scheduler: SchedulerClient,
        recorder: Recorder,
        cache_ttl: Duration,
        tls: &InternalTls,
    ) -> Result<Self, String> {
        let agents = tls
            .client_builder()
            .connect_timeout(Duration::from_secs(2))
            .pool_max_idle_per_host(512)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| format!("cannot build the agent client: {e}"))?;
        Ok(Invoker {
            scheduler,
            agents,
            recorder,
            cache: TargetCache::new(cache_ttl),
            queue_gauge: Arc::new(QueueGauge::default()),
        })
    }

    /// Runs the target synchronously: one placement, one agent call, then the lease is
    /// released and the execution recorded in the background. When the platform fails
    /// before any of the function ran (the agent cannot be reached, answers 503, or reports
    /// a retry-safe platform error such as a container that could not be created), it is
    /// placed once more, on another agent where possible. A platform failure is never the
    /// function's result: it is recorded as status `error` with a `Platform.*` error type and
    /// answered as `InvokeError::AgentFailed` (503).
    pub async fn invoke_sync(
        &self,
        target: &Target,
        payload: Box<RawValue>,
    ) -> Result<Outcome, InvokeError> {
        let execution_id = Uuid::new_v4();
        let created_at = Utc::now();
        let input_size = i32::try_from(payload.get().len()).unwrap_or(i32::MAX);
        let request = PlacementRequest {
            execution_id,
            payload_sha256: sha256_hex(payload.get().as_bytes()),
            spec: target.spec.clone(),
            concurrent_limit: target.limits.concurrent_executions,
            per_minute_limit: target.limits.executions_per_minute,
        };
        let body = serde_json::to_vec(&RunRequest { payload })
            .map_err(|e| InvokeError::Domain(DomainError::Internal(e.to_string())))?;
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
        let mut attempts = 0;
        let mut earlier: Option<(String, PlatformFailure)> = None;
        let (placement, result) = loop {
            attempts += 1;
            let last = attempts >= SYNC_ATTEMPTS;
            let placement = match self.scheduler.place(&request).await {
                Ok(placement) => placement,
                // A retry that cannot be placed ends with the first attempt's failure.
                Err(e) => match earlier.take() {
                    Some((agent, error)) => return Err(failure(attempts - 1, Some(&agent), error)),
                    None => return Err(e.into()),
                },
            };
            let agent = placement.agent_id.as_str();
            let timeout =
                Duration::from_secs(u64::try_from(target.spec.timeout_s).unwrap_or(900) + 30);
            let sent = self
                .agents
                .post(format!("{}/v1/run", placement.agent_url))
                .bearer_auth(&placement.ticket)
                .header("content-type", "application/json")
                .body(body.clone())
                .timeout(timeout)
                .send()
                .await;
            let release = |warm| {
                self.scheduler
                    .release_in_background(placement.lease_id, Release { warm })
            };
            let error = match sent {
                Ok(response) if response.status().is_success() => {
                    match response.json::<RunResult>().await {
                        Ok(result) if result.status != RunStatus::Error => {
                            break (placement, result)
                        }
                        Ok(result) => {
                            release(false);
                            let retry = result.retry_safe && !last;
                            let error = PlatformFailure::from_result(result);
                            if retry {
                                log::warn!(
                                    "execution {execution_id}: agent {agent} failed before the function ran ({}), placing again",
                                    error.message
                                );
                                earlier = Some((agent.to_owned(), error));
                                continue;
                            }
                            return Err(failure(attempts, Some(agent), error));
                        }
                        Err(e) => PlatformFailure::new(
                            "AgentError",
                            format!("invalid answer from agent {agent}: {e}"),
                        ),
                    }
                }
                // 503: the agent took none of it (its engine is down, it is full or stopping).
                Ok(response) if response.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE => {
                    let text = response.text().await.unwrap_or_default();
                    release(false);
                    let error = PlatformFailure::new(
                        "AgentUnavailable",
                        format!("agent {agent} cannot run it now: {}", agent_message(&text)),
                    );
                    self.report_unreachable(agent).await;
                    if !last {
                        log::warn!("execution {execution_id}: {}, placing again", error.message);
                        earlier = Some((agent.to_owned(), error));
                        continue;
                    }
                    return Err(failure(attempts, Some(agent), error));
                }
                Ok(response) => {
                    let status = response.status();
                    let text = response.text().await.unwrap_or_default();
                    PlatformFailure::new(
                        "AgentError",
                        format!("agent {agent} answered {status}: {}", agent_message(&text)),
                    )
                }
                // The agent could not be reached: nothing ran, so another agent may try.
                Err(e) if e.is_connect() => {
                    release(false);
                    // Tell the scheduler first, or bin-packing picks the same dead agent again.
                    self.report_unreachable(agent).await;
                    let error = PlatformFailure::new(
                        "AgentUnavailable",
                        format!("agent {agent} cannot be reached: {e}"),
                    );
                    if !last {
                        log::warn!("execution {execution_id}: {}, placing again", error.message);
                        earlier = Some((agent.to_owned(), error));
                        continue;
                    }
                    return Err(failure(attempts, Some(agent), error));
                }
                // Timed out, or the connection broke during the run: the function may have run.
                Err(e) => PlatformFailure::new("AgentLost", format!("agent {agent} failed: {e}")),
            };
            release(false);
            return Err(failure(attempts, Some(agent), error));
        };
        let warm = result.status == RunStatus::Succeeded || result.status == RunStatus::Failed;
        self.scheduler
            .release_in_background(placement.lease_id, Release { warm });
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
            agent_id: Some(placement.agent_id.clone()),
            attempts,
            logs: result.logs.clone(),
            created_at,
            started_at: Some(created_at),
            finished_at: Some(finished_at),
            cpu_ms: result.cpu_ms,
        });
        Ok(Outcome {
            execution_id,
            result,
        })
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

/// The message of an agent's JSON error body, else the start of its text.
fn agent_message(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| text.chars().take(300).collect())
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
    })
}
