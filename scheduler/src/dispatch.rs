//! The async queue dispatcher, run by the active scheduler only.
//!
//! It wakes on `NOTIFY fresco_executions` (a dedicated LISTEN connection), on a poll timer
//! (the safety net), and whenever one of its own executions ends. Each wake claims queued
//! executions (`FOR UPDATE SKIP LOCKED`, oldest first) and places them in the same
//! transaction, then calls the chosen agents concurrently, at most `max_in_flight` at once.
//!
//! Every accepted execution reaches a terminal state: an attempt ends with the agent's
//! result, or is lost (the agent's connection failed, it answered 5xx, it went down, or no
//! result came in time) and is queued again while attempts remain, else fails with the reason.
//! Every state change after the claim is conditional on the execution still being `running`
//! in the same attempt, so no attempt is recorded twice and no late answer overwrites a newer
//! state. Exactly one of the attempt's task and the agent-down handler writes its end: the
//! one that removes it from the in-flight table.
//!
//! Every write is fenced (see `leader`): it happens only while this scheduler holds the
//! leader lease, checked in the writing transaction. A scheduler that lost the lease (it was
//! paused, or its database session died) keeps its pending results for `FENCED_HOLD` in case
//! it leads again (the writes stay conditional on the attempt), then drops them: the new
//! leader requeues those executions once their deadline passes.
//!
//! Platform failures: an agent that refuses an attempt before any of the function ran
//! answers 503 with `x-fresco-not-run` (its container engine is unavailable, it has no room
//! after all, it is stopping), or cannot be reached at all (no connection was made): the
//! execution is queued again without counting the attempt
//! (at most `MAX_REFUNDS` times per execution and leader), and the agent gets no placements
//! until its next heartbeat (which says whether its engine answers). An agent's `error`
//! result (the platform failed: container start, engine lost mid-run) is retried like a lost
//! attempt; the last one keeps the agent's error.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use fresco_common::agent_client::{AgentCallError, AgentClient, AgentClientError};
use fresco_common::ticket::{sha256_hex, TicketSigner};
use fresco_common::tls::InternalTls;
use fresco_common::wire::{FunctionSpec, RunResult, RunStatus};
use serde_json::value::RawValue;
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::AbortHandle;
use uuid::Uuid;

use crate::leader::{Fence, Leadership, Listener};
use crate::placement::{Demand, Lease, PlaceError, Placer};
use fresco_store::queue::{Finish, Limits, Queued, StorageError, Store, Verdict};
use fresco_store::ExecutionStatus;

/// How often running executions are checked against agent state and deadlines.
const RECONCILE_INTERVAL: Duration = Duration::from_secs(2);
/// Most attempt ends written in one transaction.
const FINISH_BATCH: usize = 512;
/// How long results that could not be written for want of the lease are kept (and retried).
const FENCED_HOLD: Duration = Duration::from_secs(30);
/// Attempts of one execution refused by agents whose engine is down that do not count.
const MAX_REFUNDS: u32 = 20;
/// How long a project whose queued rows were all refused (quota or capacity) is left out of
/// claims, unless one of this dispatcher's executions ends first (which frees room).
const REFUSED_BACKOFF: Duration = Duration::from_millis(500);

/// An attempt's end on its way to the database, with its size in bytes.
type Ended = (Uuid, i32, Finish, usize);

/// Settings of the dispatcher.
#[derive(Debug, Clone)]
pub struct DispatchConfig {
    /// URL of the database, for the LISTEN connection.
    pub database_url: String,
    pub max_in_flight: usize,
    pub batch_size: usize,
    pub poll_interval: Duration,
    pub max_attempts: i32,
    /// Waited beyond a function's timeout for the agent's answer.
    pub lease_grace: Duration,
    pub ticket_ttl: Duration,
    /// An agent unknown for this long after start is taken as down.
    pub agent_down_time: Duration,
    /// Limits of projects without their own quota rows.
    pub defaults: Limits,
    /// Bytes of attempt ends waiting to be written beyond which nothing more is claimed.
    pub finish_max_bytes: usize,
}

/// Counters of the dispatcher's work since start.
#[derive(Debug, Default)]
pub struct Stats {
    pub dispatched: AtomicU64,
    pub completed: AtomicU64,
    pub requeued: AtomicU64,
    pub failed: AtomicU64,
    /// Writes refused because this scheduler no longer held the lease.
    pub fenced: AtomicU64,
}

/// The dispatcher; cheap to clone.
#[derive(Clone)]
pub struct Dispatcher {
    inner: Arc<Inner>,
}

struct Inner {
    config: DispatchConfig,
    store: Store,
    placer: Arc<Placer>,
    signer: Arc<TicketSigner>,
    leadership: Arc<Leadership>,
    agents: AgentClient,
    wake: Arc<Notify>,
    in_flight: Mutex<HashMap<Uuid, Flight>>,
    /// Refunded attempts per execution (see `MAX_REFUNDS`).
    refunds: Mutex<HashMap<Uuid, u32>>,
    /// Attempt ends to write. Unbounded as a channel, bounded in content: every entry is the
    /// end of an attempt this dispatcher started (at most `max_in_flight` at once), and no
    /// attempt starts while `unwritten` exceeds `finish_max_bytes`.
    finished: mpsc::UnboundedSender<Ended>,
    /// Bytes of attempt ends handed to the writer and not yet written.
    unwritten: Arc<AtomicUsize>,
    /// Where the next claim starts in the list of projects with queued work (fair turns).
    cursor: Mutex<String>,
    /// Projects left out of claims until the instant, after all their rows were refused.
    backoff: Mutex<HashMap<String, Instant>>,
    started: Instant,
    stats: Stats,
}

struct Flight {
    agent_id: Arc<str>,
    attempt: i32,
    lease_id: Uuid,
    abort: Option<AbortHandle>,
}

/// A claimed execution, placed and ready to send.
struct Prepared {
    id: Uuid,
    attempt: i32,
    lease: Lease,
    spec: FunctionSpec,
    payload: Box<RawValue>,
}

/// How one call to an agent ended.
enum Attempt {
    Done(RunResult),
    /// The attempt is lost; worth another one.
    Lost(String),
    /// The agent refused the execution itself; another attempt would fare no better.
    Refused(String),
    /// None of it ran: the agent refused it first (503 with `x-fresco-not-run`) or could not
    /// be reached at all.
    Bounced(String),
}

/// What becomes of an execution whose attempt number `attempt` was lost.
pub fn after_lost_attempt(attempt: i32, max_attempts: i32, reason: &str) -> Finish {
    if attempt < max_attempts {
        Finish::Requeue { refund: false }
    } else {
        Finish::Fail(format!("{reason} (gave up after {attempt} attempts)"))
    }
}

/// The event handed to the function: the stored input, `{}` when there is none.
fn payload_of(input: Option<&[u8]>) -> Result<Box<RawValue>, String> {
    let text = match input {
        None | Some(b"") => "{}".to_owned(),
        Some(bytes) => String::from_utf8(bytes.to_vec())
            .map_err(|_| "stored input is not utf-8 text".to_owned())?,
    };
    RawValue::from_string(text).map_err(|e| format!("stored input is not json: {e}"))
}

impl Dispatcher {
    /// A dispatcher, and the writer task that records attempt ends (spawned here; it lives
    /// as long as the process).
    pub fn new(
        config: DispatchConfig,
        store: Store,
        placer: Arc<Placer>,
        signer: Arc<TicketSigner>,
        leadership: Arc<Leadership>,
        tls: &InternalTls,
    ) -> Result<Self, AgentClientError> {
        let agents = AgentClient::new(tls, config.lease_grace)?;
        let (finished, receiver) = mpsc::unbounded_channel();
        let unwritten = Arc::new(AtomicUsize::new(0));
        let dispatcher = Self {
            inner: Arc::new(Inner {
                config,
                store: store.clone(),
                placer,
                signer,
                leadership: leadership.clone(),
                agents,
                wake: Arc::new(Notify::new()),
                in_flight: Mutex::new(HashMap::new()),
                refunds: Mutex::new(HashMap::new()),
                finished,
                unwritten: unwritten.clone(),
                cursor: Mutex::new(String::new()),
                backoff: Mutex::new(HashMap::new()),
                started: Instant::now(),
                stats: Stats::default(),
            }),
        };
        tokio::spawn(write_finishes(store, leadership, receiver, unwritten));
        Ok(dispatcher)
    }

    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    /// Executions this scheduler is running right now.
    pub fn in_flight(&self) -> usize {
        self.inner.flights().len()
    }

    /// Runs the queue until `stop` turns true (this scheduler stopped being active). Attempts
    /// already sent go on and are recorded.
    pub async fn run(&self, mut stop: watch::Receiver<bool>) {
        let inner = &self.inner;
        let mut listener: Option<Listener> = None;
        let mut last_reconcile: Option<Instant> = None;
        log::info!("dispatcher started");
        while !*stop.borrow() {
            if listener.as_ref().is_none_or(|l| !l.is_alive()) {
                match Listener::start(&inner.config.database_url, inner.wake.clone()).await {
                    Ok(l) => listener = Some(l),
                    Err(e) => log::warn!("cannot listen for queued executions: {e}"),
                }
            }
            if last_reconcile.is_none_or(|t| t.elapsed() >= RECONCILE_INTERVAL) {
                self.reconcile().await;
                last_reconcile = Some(Instant::now());
            }
            self.fill().await;
            tokio::select! {
                _ = inner.wake.notified() => {}
                _ = tokio::time::sleep(inner.config.poll_interval) => {}
                _ = stop.changed() => {}
            }
        }
        log::info!("dispatcher stopped");
    }

    /// Claims and sends as much queued work as the in-flight bound and capacity allow.
    async fn fill(&self) {
        let inner = &self.inner;
        let unwritten = inner.unwritten.load(Ordering::Relaxed);
        if unwritten > inner.config.finish_max_bytes {
            // Back-pressure: results are not being written (the database is slow or down);
            // claiming more would only pile up more of them in memory.
            log::warn!(
                "{unwritten} bytes of results wait to be written: claiming nothing until they are"
            );
            return;
        }
        let mut skip: HashSet<String> = inner.backed_off();
        let batch = inner.config.batch_size.max(1);
        // Near saturation, wait until a quarter batch of slots is free: fewer, larger claims.
        // An idle dispatcher (nothing in flight) claims at once, so latency is unaffected.
        let threshold = (batch.min(inner.config.max_in_flight) / 4).max(1);
        loop {
            let in_flight = inner.flights().len();
            let free = inner.config.max_in_flight.saturating_sub(in_flight);
            if free == 0 || (in_flight > 0 && free < threshold) {
                return;
            }
            let limit = free.min(batch);
            let Some(fence) = inner.leadership.fence() else {
                return;
            };
            let skipped_before = skip.len();
            let store = inner.store.clone();
            let placer = inner.placer.clone();
            let max_attempts = inner.config.max_attempts;
            let defaults = inner.config.defaults;
            let mut cursor = inner.cursor().clone();
            let claimed = tokio::task::spawn_blocking(move || {
                let mut prepared = Vec::new();
                let claim = store.claim(
                    &fence,
                    limit as i64,
                    &mut skip,
                    &mut cursor,
                    defaults,
                    |row, limits| decide(&placer, row, limits, max_attempts, &mut prepared),
                );
                (claim, prepared, skip, cursor)
            })
            .await;
            let (claim, prepared, returned_skip, cursor) = match claimed {
                Ok(parts) => parts,
                Err(e) => {
                    log::error!("claim task failed: {e}");
                    return;
                }
            };
            skip = returned_skip;
            *inner.cursor() = cursor;
            let claim = match claim {
                Ok(claim) => claim,
                Err(e) => {
                    if e.is_fenced() {
                        inner.stats.fenced.fetch_add(1, Ordering::Relaxed);
                        log::warn!("claim refused, the leader lease is lost: {e}");
                    } else {
                        log::warn!("cannot claim queued executions: {e}");
                    }
                    for p in prepared {
                        inner.placer.release(p.lease.lease_id, false);
                    }
                    return;
                }
            };
            let ran = prepared.len();
            inner
                .stats
                .failed
                .fetch_add(claim.failed as u64, Ordering::Relaxed);
            for p in prepared {
                self.launch(p);
            }
            if !claim.refused.is_empty() {
                let until = Instant::now() + REFUSED_BACKOFF.min(inner.config.poll_interval);
                let mut backoff = inner.backoff();
                for project in &claim.refused {
                    backoff.insert(project.clone(), until);
                    skip.insert(project.clone());
                }
            }
            let progress = ran > 0 || claim.failed > 0 || skip.len() > skipped_before;
            if !claim.more || !progress {
                return;
            }
        }
    }

    fn launch(&self, p: Prepared) {
        let inner = self.inner.clone();
        let id = p.id;
        inner.flights().insert(
            id,
            Flight {
                agent_id: p.lease.agent_id.clone(),
                attempt: p.attempt,
                lease_id: p.lease.lease_id,
                abort: None,
            },
        );
        inner.stats.dispatched.fetch_add(1, Ordering::Relaxed);
        let task = tokio::spawn({
            let inner = inner.clone();
            async move { inner.run_one(p).await }
        });
        let mut flights = inner.flights();
        if let Some(flight) = flights.get_mut(&id) {
            flight.abort = Some(task.abort_handle());
        }
    }

    /// Agents went down: their attempts in flight are lost.
    pub fn agents_down(&self, agents: &[Arc<str>]) {
        let inner = &self.inner;
        let mut lost = Vec::new();
        inner.flights().retain(|id, flight| {
            if agents.contains(&flight.agent_id) {
                lost.push((
                    *id,
                    flight.attempt,
                    flight.lease_id,
                    flight.abort.take(),
                    flight.agent_id.clone(),
                ));
                false
            } else {
                true
            }
        });
        for (id, attempt, lease_id, abort, agent) in lost {
            if let Some(abort) = abort {
                abort.abort();
            }
            inner.placer.release(lease_id, false);
            let reason = format!("agent {agent} went down during the execution");
            log::warn!("execution {id}: {reason}");
            inner.finish(
                id,
                attempt,
                after_lost_attempt(attempt, inner.config.max_attempts, &reason),
            );
        }
        inner.wake.notify_one();
    }

    /// Running executions that nobody will finish: their agent is down or unknown, or their
    /// deadline passed without a result (e.g. the scheduler that sent them died).
    async fn reconcile(&self) {
        let inner = &self.inner;
        let store = inner.store.clone();
        let running = match tokio::task::spawn_blocking(move || store.running()).await {
            Ok(Ok(running)) => running,
            Ok(Err(e)) => {
                log::warn!("cannot list running executions: {e}");
                return;
            }
            Err(e) => {
                log::error!("reconcile task failed: {e}");
                return;
            }
        };
        let Some(fence) = inner.leadership.fence() else {
            return;
        };
        let known_long_enough = inner.started.elapsed() >= inner.config.agent_down_time;
        if known_long_enough {
            // Agents no scheduler has heard from (e.g. they died while none was active).
            let store = inner.store.clone();
            let down_time = inner.config.agent_down_time;
            match tokio::task::spawn_blocking(move || {
                store.mark_silent_agents_down(&fence, down_time)
            })
            .await
            {
                Ok(Ok(ids)) if !ids.is_empty() => log::warn!("agents marked down: {ids:?}"),
                Ok(Err(e)) => log::warn!("cannot mark silent agents down: {e}"),
                _ => {}
            }
        }
        let now = chrono::Utc::now();
        for r in running {
            if inner.flights().contains_key(&r.id) {
                continue;
            }
            let agent = r.agent_id.as_deref().unwrap_or("");
            let deadline = r.started_at.map(|t| {
                let extra =
                    Duration::from_secs(u64::try_from(r.timeout_s.unwrap_or(0)).unwrap_or(0))
                        + inner.config.ticket_ttl
                        + 2 * inner.config.lease_grace;
                chrono::Duration::from_std(extra)
                    .ok()
                    .and_then(|extra| t.checked_add_signed(extra))
                    .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC)
            });
            let reason = match inner.placer.agent(agent) {
                Some(view) if !view.up => Some(format!("agent {agent} is down")),
                None if known_long_enough => Some(format!("agent {agent} is not reporting")),
                _ if deadline.is_some_and(|d| d < now) => {
                    Some(format!("no result from agent {agent} before the deadline"))
                }
                _ => None,
            };
            if let Some(reason) = reason {
                log::warn!("execution {}: {reason}", r.id);
                inner.finish(
                    r.id,
                    r.attempts,
                    after_lost_attempt(r.attempts, inner.config.max_attempts, &reason),
                );
            }
        }
    }
}

/// Decides about one claimed row: parse, place, or give up.
fn decide(
    placer: &Placer,
    row: &Queued,
    limits: Limits,
    max_attempts: i32,
    prepared: &mut Vec<Prepared>,
) -> Verdict {
    // The function's event config may allow more runs than the platform's own retries.
    let max_attempts = max_attempts.max(row.max_attempts.unwrap_or(0));
    if row.attempts >= max_attempts {
        return Verdict::Fail(format!("gave up after {} attempts", row.attempts));
    }
    let spec: FunctionSpec = match row.spec.clone().map(serde_json::from_value) {
        Some(Ok(spec)) => spec,
        Some(Err(e)) => return Verdict::Fail(format!("stored spec is invalid: {e}")),
        None => return Verdict::Fail("execution has no spec".into()),
    };
    let payload = match payload_of(row.input.as_deref()) {
        Ok(payload) => payload,
        Err(reason) => return Verdict::Fail(reason),
    };
    let demand = Demand {
        project_id: &row.project_id,
        image: &spec.image,
        function_id: spec.function_id,
        version: spec.version,
        memory_mb: spec.memory_mb,
        timeout_s: spec.timeout_s,
        concurrent_limit: limits.concurrent,
        per_minute_limit: limits.per_minute,
    };
    match placer.place(&demand, Instant::now()) {
        Ok(lease) => {
            let agent_id = lease.agent_id.clone();
            prepared.push(Prepared {
                id: row.id,
                attempt: row.attempts + 1,
                lease,
                spec,
                payload,
            });
            Verdict::Run { agent_id }
        }
        Err(PlaceError::NoCapacity { .. }) => Verdict::Leave,
        Err(PlaceError::Concurrency { .. } | PlaceError::Rate { .. }) => Verdict::LeaveProject,
    }
}

impl Inner {
    fn flights(&self) -> MutexGuard<'_, HashMap<Uuid, Flight>> {
        self.in_flight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn refunds(&self) -> MutexGuard<'_, HashMap<Uuid, u32>> {
        self.refunds
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn cursor(&self) -> MutexGuard<'_, String> {
        self.cursor
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether one more refused attempt of `id` may be refunded (and counts it).
    fn refund(&self, id: Uuid) -> bool {
        let mut refunds = self.refunds();
        let count = refunds.entry(id).or_insert(0);
        *count += 1;
        *count <= MAX_REFUNDS
    }

    fn backoff(&self) -> MutexGuard<'_, HashMap<String, Instant>> {
        self.backoff
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Projects still left out of claims after their rows were refused.
    fn backed_off(&self) -> HashSet<String> {
        let now = Instant::now();
        let mut backoff = self.backoff();
        backoff.retain(|_, until| *until > now);
        backoff.keys().cloned().collect()
    }

    fn finish(&self, id: Uuid, attempt: i32, finish: Finish) {
        let counter = match finish {
            Finish::Completed { .. } => &self.stats.completed,
            Finish::Requeue { .. } => &self.stats.requeued,
            Finish::Fail(_) => &self.stats.failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        // Room was freed (a slot, memory on an agent, a project's concurrency): projects that
        // were refused may fit now.
        self.backoff().clear();
        let size = finish.size();
        self.unwritten.fetch_add(size, Ordering::Relaxed);
        if self.finished.send((id, attempt, finish, size)).is_err() {
            self.unwritten.fetch_sub(size, Ordering::Relaxed);
            log::error!("execution {id}: the result writer is gone");
        }
    }

    async fn run_one(self: Arc<Self>, p: Prepared) {
        let id = p.id;
        let attempt = p.attempt;
        let lease_id = p.lease.lease_id;
        let agent_id = p.lease.agent_id.clone();
        let outcome = self.call_agent(p).await;
        if self.flights().remove(&id).is_none() {
            // The agent-down handler took this attempt over.
            return;
        }
        let (finish, warm) = match outcome {
            Attempt::Done(result)
                if result.status == RunStatus::Error && attempt < self.config.max_attempts =>
            {
                // The platform failed (the container did not start, the engine went away):
                // not the function's doing, so it gets another attempt, elsewhere if possible.
                let reason = result
                    .error
                    .as_ref()
                    .map_or("platform error", |e| e.error_type.as_str());
                log::warn!("execution {id} attempt {attempt} on {agent_id}: {reason}");
                (Finish::Requeue { refund: false }, false)
            }
            Attempt::Done(result) => {
                let warm = matches!(result.status, RunStatus::Succeeded | RunStatus::Failed);
                let error = result
                    .error
                    .as_ref()
                    .and_then(|e| serde_json::to_value(e).ok());
                (
                    Finish::completed(
                        ExecutionStatus::from(result.status),
                        result.response,
                        error,
                        result.duration_ms,
                        result.max_memory_mb,
                        result.cpu_ms,
                        result.cold,
                        result.logs,
                        result.init_ms,
                    ),
                    warm,
                )
            }
            Attempt::Lost(reason) => {
                log::warn!("execution {id} attempt {attempt} on {agent_id}: {reason}");
                (
                    after_lost_attempt(attempt, self.config.max_attempts, &reason),
                    false,
                )
            }
            Attempt::Refused(reason) => {
                log::warn!("execution {id} attempt {attempt} on {agent_id}: {reason}");
                (Finish::Fail(reason), false)
            }
            Attempt::Bounced(reason) => {
                log::warn!("execution {id} attempt {attempt} on {agent_id}: {reason}");
                self.placer.pause(&agent_id);
                if self.refund(id) {
                    (Finish::Requeue { refund: true }, false)
                } else {
                    (
                        after_lost_attempt(attempt, self.config.max_attempts, &reason),
                        false,
                    )
                }
            }
        };
        if !matches!(finish, Finish::Requeue { refund: true }) {
            self.refunds().remove(&id);
        }
        self.placer.release(lease_id, warm);
        self.finish(id, attempt, finish);
        self.wake.notify_one();
    }

    /// An agent that cannot be reached or dropped the connection gets no placements until
    /// its next heartbeat.
    fn take_out_of_placement(&self, agent: &str) {
        if self.placer.mark_down(agent) {
            self.persist_down(agent);
        }
    }

    async fn call_agent(&self, p: Prepared) -> Attempt {
        let agent = &*p.lease.agent_id;
        let payload_sha256 = sha256_hex(p.payload.get().as_bytes());
        let timeout_s = p.spec.timeout_s;
        let ticket = match self
            .signer
            .sign(agent, p.id, p.lease.lease_id, &payload_sha256, p.spec)
        {
            Ok(ticket) => ticket,
            Err(e) => return Attempt::Lost(format!("cannot sign a ticket: {e}")),
        };
        let sent = self
            .agents
            .run_ticket(agent, &p.lease.agent_url, &ticket, &p.payload, timeout_s)
            .await;
        match sent {
            Ok(result) if result.execution_id == p.id => Attempt::Done(result),
            Ok(result) => Attempt::Lost(format!(
                "agent {agent} answered for execution {} instead",
                result.execution_id
            )),
            Err(e @ AgentCallError::NotRun { .. }) => Attempt::Bounced(e.to_string()),
            Err(e @ AgentCallError::Refused { .. }) => Attempt::Refused(e.to_string()),
            // No connection was made: none of it ran, so the attempt is given back like a
            // bounce (an agent that just died may still be up in placement, for example when
            // its last heartbeat was in flight as it died).
            Err(e @ AgentCallError::Unreachable { .. }) => {
                self.take_out_of_placement(agent);
                Attempt::Bounced(e.to_string())
            }
            // The connection broke after the request was sent: it may have run.
            Err(e @ AgentCallError::Lost { .. }) => {
                self.take_out_of_placement(agent);
                Attempt::Lost(e.to_string())
            }
            Err(
                e @ (AgentCallError::TimedOut { .. }
                | AgentCallError::Failed { .. }
                | AgentCallError::Invalid { .. }),
            ) => Attempt::Lost(e.to_string()),
        }
    }

    fn persist_down(&self, agent: &str) {
        let Some(fence) = self.leadership.fence() else {
            return;
        };
        let store = self.store.clone();
        let ids = vec![agent.to_owned()];
        tokio::task::spawn_blocking(move || {
            if let Err(e) = store.mark_agents_down(&fence, &ids) {
                log::warn!("cannot mark agent {} down: {e}", ids[0]);
            }
        });
    }
}

/// Writes attempt ends in batches, retrying while the database is unavailable. A batch the
/// database refuses for its content is written again end by end, so one bad end fails alone:
/// it is written as a platform error instead, or dropped with a log line if even that is
/// refused (reconciliation then finds the execution), never retried forever. Without the
/// lease a batch is kept for `FENCED_HOLD` (written if this scheduler leads again), then
/// dropped for the new leader to reconcile.
async fn write_finishes(
    store: Store,
    leadership: Arc<Leadership>,
    mut receiver: mpsc::UnboundedReceiver<Ended>,
    unwritten: Arc<AtomicUsize>,
) {
    while let Some(first) = receiver.recv().await {
        let mut batch = vec![first];
        while batch.len() < FINISH_BATCH {
            match receiver.try_recv() {
                Ok(item) => batch.push(item),
                Err(_) => break,
            }
        }
        let mut fenced_since: Option<Instant> = None;
        loop {
            let Some(fence) = leadership.fence() else {
                let since = *fenced_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= FENCED_HOLD {
                    log::warn!(
                        "not the leader: {} execution results dropped, the leader reconciles them",
                        batch.len()
                    );
                    let bytes: usize = batch.iter().map(|(_, _, _, size)| size).sum();
                    unwritten.fetch_sub(bytes, Ordering::Relaxed);
                    break;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            };
            let store = store.clone();
            let unwritten_bytes = unwritten.clone();
            let written = tokio::task::spawn_blocking(move || {
                write_batch(&store, &fence, batch, &unwritten_bytes)
            })
            .await;
            match written {
                Ok(Unwritten::None) => break,
                Ok(Unwritten::Fenced(rest)) => {
                    fenced_since.get_or_insert_with(Instant::now);
                    log::warn!(
                        "{} execution results not written: the leader lease is lost",
                        rest.len()
                    );
                    batch = rest;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
                Ok(Unwritten::Unavailable(rest)) => {
                    log::warn!(
                        "cannot record {} execution results yet, retrying",
                        rest.len()
                    );
                    batch = rest;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => {
                    log::error!("result writer task failed: {e}");
                    break;
                }
            }
        }
    }
}

/// What a batch write left to try again, and why.
enum Unwritten {
    None,
    /// The database is unavailable.
    Unavailable(Vec<Ended>),
    /// This scheduler no longer holds the leader lease.
    Fenced(Vec<Ended>),
}

impl Unwritten {
    /// `rest` to retry after `e`, or `Err(e)` when retrying the same write cannot help.
    fn after(e: StorageError, rest: Vec<Ended>) -> Result<Self, (StorageError, Vec<Ended>)> {
        if e.is_fenced() {
            Ok(Unwritten::Fenced(rest))
        } else if e.is_unavailable() {
            Ok(Unwritten::Unavailable(rest))
        } else {
            Err((e, rest))
        }
    }
}

/// Writes a batch of attempt ends; returns those to try again (the database is unavailable or
/// the lease is lost). What is written or given up on stops counting in `unwritten`.
fn write_batch(
    store: &Store,
    fence: &Fence,
    batch: Vec<Ended>,
    unwritten: &AtomicUsize,
) -> Unwritten {
    let ends: Vec<(Uuid, i32, &Finish)> = batch
        .iter()
        .map(|(id, attempt, finish, _)| (*id, *attempt, finish))
        .collect();
    let refused = store.finish(fence, &ends);
    drop(ends);
    let batch = match refused {
        Ok(_) => {
            let bytes: usize = batch.iter().map(|(_, _, _, size)| size).sum();
            unwritten.fetch_sub(bytes, Ordering::Relaxed);
            return Unwritten::None;
        }
        Err(e) => match Unwritten::after(e, batch) {
            Ok(retry) => return retry,
            Err((e, batch)) => {
                log::warn!(
                    "the database refused a batch of {} execution results ({e}): writing them one by one",
                    batch.len()
                );
                batch
            }
        },
    };
    let mut pending = batch.into_iter();
    while let Some((id, attempt, finish, size)) = pending.next() {
        let reason = match store.finish(fence, &[(id, attempt, &finish)]) {
            Ok(_) => {
                unwritten.fetch_sub(size, Ordering::Relaxed);
                continue;
            }
            Err(e) if e.is_fenced() || e.is_unavailable() => {
                let mut rest = vec![(id, attempt, finish, size)];
                rest.extend(pending);
                return Unwritten::after(e, rest).unwrap_or(Unwritten::None);
            }
            Err(e) => e.to_string(),
        };
        log::warn!(
            "the database refused the result of execution {id} ({reason}): recording it as a platform error"
        );
        let substitute = finish.rejected(&reason);
        match store.finish(fence, &[(id, attempt, &substitute)]) {
            Ok(_) => {
                unwritten.fetch_sub(size, Ordering::Relaxed);
            }
            Err(e) if e.is_fenced() || e.is_unavailable() => {
                let mut rest = vec![(id, attempt, substitute, size)];
                rest.extend(pending);
                return Unwritten::after(e, rest).unwrap_or(Unwritten::None);
            }
            Err(e) => {
                log::error!(
                    "the database refused even the platform error of execution {id} ({e}): not recorded"
                );
                unwritten.fetch_sub(size, Ordering::Relaxed);
            }
        }
    }
    Unwritten::None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_attempts_are_retried_until_the_last() {
        let cases = [
            (1, 3, true),
            (2, 3, true),
            (3, 3, false),
            (4, 3, false),
            (1, 1, false),
        ];
        for (attempt, max, requeued) in cases {
            match after_lost_attempt(attempt, max, "agent a went down") {
                Finish::Requeue { refund } => {
                    assert!(requeued, "attempt {attempt} of {max}");
                    assert!(!refund, "a lost attempt counts");
                }
                Finish::Fail(reason) => {
                    assert!(!requeued, "attempt {attempt} of {max}");
                    assert!(reason.starts_with("agent a went down"), "{reason}");
                    assert!(
                        reason.contains(&format!("after {attempt} attempts")),
                        "{reason}"
                    );
                }
                Finish::Completed { .. } => panic!("not a completion"),
            }
        }
    }

    #[test]
    fn payloads_are_json_or_refused() {
        assert_eq!(payload_of(None).expect("empty").get(), "{}");
        assert_eq!(payload_of(Some(b"")).expect("empty").get(), "{}");
        assert_eq!(payload_of(Some(b"[1, 2]")).expect("json").get(), "[1, 2]");
        assert!(payload_of(Some(b"{nope")).is_err());
        assert!(payload_of(Some(&[0xff, 0xfe])).is_err());
    }
}
