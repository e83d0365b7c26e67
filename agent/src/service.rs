//! The agent's core: run one execution named by a ticket, keep warm pools, report capacity.
//! It knows nothing about HTTP; `http` adapts it.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fresco_common::ticket::{AgentSigner, TicketError, TicketVerifier};
use fresco_common::tls::{InternalTls, TlsError};
use fresco_common::wire::{
    FunctionError, FunctionSpec, Heartbeat, HeartbeatReply, RetiredKey, RunResult, RunStatus,
};
use uuid::Uuid;

use crate::clock::now_ms;
use crate::code::{CodeCache, CodeError, CodeOptions};
use crate::config::Settings;
use crate::container::{
    build_env, function_arn, Container, ContainerError, PrewarmSpec, Sandboxes, LABEL_AGENT,
};
use crate::engine::host::{HostControl, LinuxHost};
use crate::engine::net::agent_tag;
use crate::engine::{ContainerEngine, EngineError};
use crate::logs::OutputLimit;
use crate::pool::{Acquired, Pools};
use crate::prewarm::Prewarmed;
use crate::retire::Retired;
use crate::runtime_api::{DispatchError, Invocation, Outcome};
use crate::tickets::{AdmitError, TicketGate};

/// What lets a run happen.
enum Authority<'a> {
    /// A single-use execution ticket for this payload.
    Ticket(&'a str),
    /// A grant, for the execution id its holder chose.
    Grant { token: &'a str, execution_id: Uuid },
    /// A local agent's own run (`fresco-agent run-local`, `serve-local`): no ticket exists.
    Local {
        spec: &'a FunctionSpec,
        execution_id: Uuid,
    },
}

/// An admitted run: the ticket's claims, or the grant slot it holds until it ends.
enum Admitted<'a> {
    Ticket(&'a str, Box<fresco_common::ticket::TicketClaims>),
    Grant(&'a str, Uuid, crate::grants::Slot),
    Local(&'a FunctionSpec, Uuid),
}

/// Why a run was refused before anything ran (the HTTP layer maps these to status codes).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("invalid ticket: {0}")]
    Ticket(#[from] TicketError),
    #[error("invalid function spec: {0}")]
    Spec(String),
    #[error("no capacity: {0}")]
    NoCapacity(String),
    #[error("agent is shutting down")]
    ShuttingDown,
    /// Every slot of the grant is in use: its holder sent more than it was granted.
    #[error("{0}")]
    SlotsTaken(String),
    /// The container engine cannot be reached; nothing ran.
    #[error("{0}")]
    EngineUnavailable(String),
    /// The function's image is not on this node (this agent does not pull); nothing ran.
    #[error("{0}")]
    NoImage(String),
}

impl From<AdmitError> for RunError {
    fn from(error: AdmitError) -> Self {
        match error {
            AdmitError::Ticket(e) => RunError::Ticket(e),
            full @ (AdmitError::Full(_) | AdmitError::GrantsFull(_)) => {
                RunError::NoCapacity(full.to_string())
            }
            taken @ AdmitError::SlotsTaken(_) => RunError::SlotsTaken(taken.to_string()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Code(#[from] CodeError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot prepare {path}: {source}")]
    Directory {
        path: String,
        source: std::io::Error,
    },
}

/// Counters of what the agent did, for logs and tests.
#[derive(Debug, Default)]
pub struct Metrics {
    pub runs: std::sync::atomic::AtomicU64,
    pub cold_starts: std::sync::atomic::AtomicU64,
    /// First invocations served by a claimed pre-warmed sandbox.
    pub prewarmed_claims: std::sync::atomic::AtomicU64,
    /// Pre-warmed sandboxes started.
    pub prewarmed_started: std::sync::atomic::AtomicU64,
    pub timeouts: std::sync::atomic::AtomicU64,
    /// Idle sandboxes destroyed because they could not be frozen (or thawed).
    pub freeze_failures: std::sync::atomic::AtomicU64,
    /// Containers killed for passing their output limit.
    pub output_cutoffs: std::sync::atomic::AtomicU64,
    /// Invocations served by a warm sandbox of their function.
    pub warm_starts: std::sync::atomic::AtomicU64,
    /// Runs by outcome: the status of their result, in the order of `RUN_STATUSES`, then
    /// refused (an error answer: nothing ran).
    pub outcomes: [std::sync::atomic::AtomicU64; RUN_STATUSES.len() + 1],
}

/// The statuses counted in `Metrics::outcomes`, in its order (the last counter is refusals).
pub const RUN_STATUSES: [RunStatus; 5] = [
    RunStatus::Succeeded,
    RunStatus::Failed,
    RunStatus::Timeout,
    RunStatus::Oom,
    RunStatus::Error,
];

impl Metrics {
    fn count(&self, result: &Result<RunResult, RunError>) {
        let index = match result {
            Ok(result) => RUN_STATUSES
                .iter()
                .position(|status| *status == result.status)
                .unwrap_or(RUN_STATUSES.len()),
            Err(_) => RUN_STATUSES.len(),
        };
        self.outcomes[index].fetch_add(1, Ordering::Relaxed);
    }
}

/// What the agent holds now, for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holdings {
    /// Sandboxes running an invocation.
    pub busy: u64,
    /// Idle sandboxes of a function, not frozen (yet).
    pub idle: u64,
    /// Idle sandboxes of a function held by the freezer.
    pub frozen: u64,
    /// Pre-warmed sandboxes waiting for a function.
    pub prewarmed: u64,
    pub capacity_mb: u64,
    /// Memory reserved by sandboxes (busy, idle and pre-warmed).
    pub reserved_mb: u64,
    pub code: crate::code::CodeUsage,
    pub code_lookups: crate::code::CodeLookups,
}

pub struct Agent<E: ContainerEngine> {
    settings: Settings,
    engine: Arc<E>,
    sandboxes: Arc<Sandboxes>,
    /// Admits execution tickets: for this agent, for their payload, once. `None` for a local
    /// agent (`local`), which admits no ticket and runs only its own functions.
    gate: Option<TicketGate>,
    /// This agent's own key (heartbeats, code downloads); `None` when the key file is missing.
    signer: Option<Arc<AgentSigner>>,
    tls: InternalTls,
    code: CodeCache,
    pools: Mutex<Pools<Arc<Container>>>,
    /// Pre-warmed sandboxes (their memory is held in `pools`; lock `pools` first).
    prewarmed: Mutex<Prewarmed<Arc<Container>>>,
    /// Wakes the pre-warmed pools' refill (a sandbox was claimed).
    prewarm_wake: tokio::sync::Notify,
    running: AtomicU32,
    images: Mutex<Vec<String>>,
    shutting_down: AtomicBool,
    /// The engine failed to answer last time it was asked; cleared when it answers again.
    engine_down: AtomicBool,
    /// Function versions whose containers must not serve again.
    retired: Mutex<Retired>,
    pub metrics: Metrics,
}

/// Pool key: the public warm key, the revision (see `retire::pool_identity`) and everything
/// that must match for a container to be reused (version 0 is mutable, so code and settings
/// are part of the key).
pub fn pool_key(spec: &FunctionSpec) -> String {
    let mut hasher = DefaultHasher::new();
    (
        &spec.project_id,
        &spec.image,
        &spec.runtime_kind,
        &spec.handler,
        spec.memory_mb,
        &spec.environment,
        &spec.code_sha256,
        spec.network,
        &spec.function_name,
    )
        .hash(&mut hasher);
    format!(
        "{}@{}#{:016x}",
        spec.warm_key(),
        spec.revision,
        hasher.finish()
    )
}

/// Checks what the engine and the file system will be given.
pub fn validate_spec(spec: &FunctionSpec) -> Result<(), RunError> {
    let bad = |m: String| Err(RunError::Spec(m));
    if spec.memory_mb < 16 {
        return bad(format!("memory_mb {} is below 16", spec.memory_mb));
    }
    if spec.timeout_s < 1 {
        return bad(format!("timeout_s {} is below 1", spec.timeout_s));
    }
    if spec.image.is_empty() || spec.image.contains(char::is_whitespace) {
        return bad(format!("image {:?}", spec.image));
    }
    match spec.runtime_kind.as_str() {
        "python" | "provided" => {
            if spec.code_sha256.is_none() {
                return bad(format!("{} functions need code", spec.runtime_kind));
            }
        }
        "image" => {}
        other => return bad(format!("unknown runtime kind {other:?}")),
    }
    if spec.handler.contains('\0') || spec.function_name.contains('\0') {
        return bad("NUL byte in handler or name".to_owned());
    }
    Ok(())
}

/// Longest wait, after an invocation, for the runtime and the shim to be idle before freezing.
const IDLE_WAIT: Duration = Duration::from_millis(20);

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn platform_error(kind: &str, message: String) -> FunctionError {
    FunctionError {
        error_type: format!("Platform.{kind}"),
        error_message: message,
        stack_trace: Vec::new(),
    }
}

/// How an invocation found its sandbox.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Start {
    /// Its runtime was waiting for the next event.
    Warm,
    /// A new sandbox (started, or claimed from the pre-warmed pool: `prewarmed`), prepared
    /// in `prepared_ms` before its runtime got the event.
    Cold { prepared_ms: f64, prewarmed: bool },
}

/// The result of an execution whose sandbox could not be prepared: a platform error none of
/// the function ran in (another agent may run it).
fn not_started(execution_id: Uuid, error: FunctionError, started: Instant) -> RunResult {
    RunResult {
        execution_id,
        status: RunStatus::Error,
        response: None,
        error: Some(error),
        duration_ms: ms(started.elapsed()),
        init_ms: None,
        max_memory_mb: None,
        cold: true,
        logs: String::new(),
        cpu_ms: None,
        output_truncated: false,
        retry_safe: true,
        prewarmed: false,
    }
}

/// `(duration_ms, init_ms)` of an invocation dispatched at `started` whose runtime took the
/// event at `taken` (if it did) and that ended at `ended`. A cold start's initialisation
/// (the sandbox's preparation, the runtime's boot, the handler's import) is `init_ms`, as
/// Lambda reports it, and not part of the duration; a runtime that never took the event
/// spent all of it initialising.
fn timings(
    start: &Start,
    started: Instant,
    taken: Option<Instant>,
    ended: Instant,
) -> (f64, Option<f64>) {
    let whole = ms(ended.saturating_duration_since(started));
    match (start, taken) {
        (Start::Warm, _) => (whole, None),
        (Start::Cold { prepared_ms, .. }, Some(taken)) => (
            ms(ended.saturating_duration_since(taken)),
            Some(prepared_ms + ms(taken.saturating_duration_since(started))),
        ),
        (Start::Cold { prepared_ms, .. }, None) => (whole, Some(prepared_ms + whole)),
    }
}

/// The line that ends every invocation's log, as Lambda writes it: request id, duration,
/// billed duration (whole milliseconds, rounded up), memory size, max memory used and, for a
/// cold or pre-warmed start, the init duration.
pub fn report_line(result: &RunResult, memory_mb: i32) -> String {
    let mut line = format!(
        "REPORT RequestId: {}\tDuration: {:.2} ms\tBilled Duration: {} ms\tMemory Size: {} MB\tMax Memory Used: {} MB",
        result.execution_id,
        result.duration_ms,
        result.duration_ms.max(0.0).ceil().max(1.0) as u64,
        memory_mb,
        result.max_memory_mb.map_or(0, |m| m.max(0.0).ceil() as u64),
    );
    if let Some(init) = result.init_ms {
        line.push_str(&format!("\tInit Duration: {init:.2} ms"));
    }
    let separator = if result.logs.is_empty() || result.logs.ends_with('\n') {
        ""
    } else {
        "\n"
    };
    format!("{separator}{line}\n")
}

/// What ended an invocation, before it becomes a `RunResult`.
enum Ending {
    Outcome(Outcome),
    Timeout,
    Lost,
    /// The container could not take the invocation: none of it ran.
    NotRun(&'static str),
}

/// Why a container could not be started for an execution (none of the function ran).
enum StartFailure {
    /// The engine cannot be reached: the agent refuses work until it can.
    EngineDown(String),
    /// The image is not on this node: the agent refuses this run, another may take it.
    NoImage(String),
    Failed(FunctionError),
}

impl<E: ContainerEngine> Agent<E> {
    pub fn new(
        settings: Settings,
        engine: Arc<E>,
        verifier: TicketVerifier,
    ) -> Result<Self, StartupError> {
        let signer = match AgentSigner::from_file(&settings.agent_key_file, &settings.agent_id) {
            Ok(signer) => Some(Arc::new(signer)),
            Err(e) => {
                log::warn!(
                    "heartbeats and code downloads are disabled until [internal_auth] \
                     agent_key_file is fixed: {e}"
                );
                None
            }
        };
        let gate = TicketGate::new(
            verifier,
            &settings.agent_id,
            settings.ticket_ttl,
            settings.replay_cache_entries,
        );
        Self::assemble(settings, engine, Some(gate), signer)
    }

    /// A local agent (`crate::local`): the same engine, containers, runtime API and limits,
    /// without tickets, keys or a control plane; it runs only what `run_local` gives it, with
    /// code added by `add_local_code`.
    pub fn local(settings: Settings, engine: Arc<E>) -> Result<Self, StartupError> {
        Self::assemble(settings, engine, None, None)
    }

    fn assemble(
        settings: Settings,
        engine: Arc<E>,
        gate: Option<TicketGate>,
        signer: Option<Arc<AgentSigner>>,
    ) -> Result<Self, StartupError> {
        let host = LinuxHost::new(&agent_tag(&settings.agent_id), settings.network.clone());
        let tls = InternalTls::from_section(&settings.tls)?;
        let code = CodeCache::new(CodeOptions::from_settings(&settings), signer.clone(), &tls)?;
        Ok(Self {
            pools: Mutex::new(Pools::new(settings.memory_mb)),
            prewarmed: Mutex::new(Prewarmed::new(&settings.prewarm)),
            prewarm_wake: tokio::sync::Notify::new(),
            sandboxes: Arc::new(Sandboxes::new(
                Arc::new(host),
                settings.sandbox_uid_base,
                settings.sandbox_uid_count,
            )),
            settings,
            engine,
            gate,
            signer,
            tls,
            code,
            running: AtomicU32::new(0),
            images: Mutex::new(Vec::new()),
            shutting_down: AtomicBool::new(false),
            engine_down: AtomicBool::new(false),
            retired: Mutex::new(Retired::default()),
            metrics: Metrics::default(),
        })
    }

    /// Uses `host` instead of the real one for what the agent does to sandboxes on the host
    /// (unit tests); call before the first run.
    pub fn with_host(mut self, host: Arc<dyn HostControl>) -> Self {
        self.sandboxes = Arc::new(Sandboxes::new(
            host,
            self.settings.sandbox_uid_base,
            self.settings.sandbox_uid_count,
        ));
        self
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Uids held by live containers.
    pub fn uids_in_use(&self) -> usize {
        self.sandboxes.uids_in_use()
    }

    /// This agent's own key, when configured.
    pub fn signer(&self) -> Option<&Arc<AgentSigner>> {
        self.signer.as_ref()
    }

    /// `[internal_tls]`, loaded.
    pub fn tls(&self) -> &InternalTls {
        &self.tls
    }

    fn pools(&self) -> std::sync::MutexGuard<'_, Pools<Arc<Container>>> {
        self.pools.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Removes the containers a previous run of this agent left behind, and their directories.
    pub async fn reconcile(&self) -> Result<usize, StartupError> {
        let leftovers = self
            .engine
            .list_labelled(LABEL_AGENT, &self.settings.agent_id)
            .await?;
        for id in &leftovers {
            // It may be frozen, and a frozen task cannot act on SIGKILL on every kernel.
            if let Ok(pid) = self.engine.pid(id).await {
                if let Ok(cgroups) = self.sandboxes.host.cgroups(pid) {
                    let _ = self.sandboxes.host.set_frozen(&cgroups, false);
                }
            }
            self.engine.remove(id).await?;
        }
        let host = Arc::clone(&self.sandboxes.host);
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || host.reset_network()).await {
            log::warn!("cannot remove the sandbox network of a previous run: {e}");
        }
        let dir = self.settings.containers_dir();
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|source| StartupError::Directory {
                path: dir.display().to_string(),
                source,
            })?;
        }
        std::fs::create_dir_all(&dir).map_err(|source| StartupError::Directory {
            path: dir.display().to_string(),
            source,
        })?;
        self.code.reconcile()?;
        if !leftovers.is_empty() {
            log::info!(
                "removed {} container(s) left from a previous run",
                leftovers.len()
            );
        }
        Ok(leftovers.len())
    }

    /// Runs the execution a ticket names, with `payload` as the event.
    pub async fn run(&self, ticket: &str, payload: Bytes) -> Result<RunResult, RunError> {
        let result = self.run_as(Authority::Ticket(ticket), payload).await;
        self.metrics.count(&result);
        result
    }

    /// Runs execution `execution_id` under a grant (see `grants`), with `payload` as the
    /// event; it holds one of the grant's slots while it runs.
    pub async fn run_granted(
        &self,
        grant: &str,
        execution_id: Uuid,
        payload: Bytes,
    ) -> Result<RunResult, RunError> {
        let result = self
            .run_as(
                Authority::Grant {
                    token: grant,
                    execution_id,
                },
                payload,
            )
            .await;
        self.metrics.count(&result);
        result
    }

    /// What the agent holds now: sandboxes by state, memory, code cache.
    pub fn holdings(&self) -> Holdings {
        let (busy, idle, frozen, capacity_mb, reserved_mb) = {
            let pools = self.pools();
            let (mut idle, mut frozen) = (0, 0);
            for container in pools.idle_items() {
                if container.is_frozen() {
                    frozen += 1;
                } else {
                    idle += 1;
                }
            }
            (
                u64::from(pools.running()),
                idle,
                frozen,
                pools.capacity_mb(),
                pools.reserved_mb(),
            )
        };
        let prewarmed = self
            .prewarmed()
            .snapshot()
            .iter()
            .map(|pool| u64::from(pool.ready))
            .sum();
        Holdings {
            busy,
            idle,
            frozen,
            prewarmed,
            capacity_mb,
            reserved_mb,
            code: self.code.usage(),
            code_lookups: self.code.lookups(),
        }
    }

    /// A local agent's run of `spec` as execution `execution_id`, with `payload` as the event:
    /// the path a ticketed run takes after its admission. Its code must have been added with
    /// `add_local_code` (and stay pinned). Refused by an agent that admits tickets.
    pub async fn run_local(
        &self,
        spec: &FunctionSpec,
        execution_id: Uuid,
        payload: Bytes,
    ) -> Result<RunResult, RunError> {
        self.run_as(Authority::Local { spec, execution_id }, payload)
            .await
    }

    /// Verifies, unpacks (as `CodeCache::add` does for a download) and pins a local agent's
    /// code package; returns its sha256 (what the function's spec names) and the pin, which
    /// keeps it in the cache while it lives.
    pub async fn add_local_code(
        &self,
        project: &str,
        package: Vec<u8>,
    ) -> Result<(String, crate::code::CodePin), CodeError> {
        self.code.add(project, package).await
    }

    async fn run_as(
        &self,
        authority: Authority<'_>,
        payload: Bytes,
    ) -> Result<RunResult, RunError> {
        if self.shutting_down.load(Ordering::SeqCst) {
            return Err(RunError::ShuttingDown);
        }
        // What runs, and the token and id a code download presents for it.
        let admitted = match (authority, &self.gate) {
            (Authority::Ticket(ticket), Some(gate)) => {
                let claims = gate.admit(ticket, &payload)?;
                Admitted::Ticket(ticket, Box::new(claims))
            }
            (
                Authority::Grant {
                    token,
                    execution_id,
                },
                Some(gate),
            ) => Admitted::Grant(token, execution_id, gate.admit_grant(token, execution_id)?),
            (Authority::Local { spec, execution_id }, None) => Admitted::Local(spec, execution_id),
            // A local agent admits no ticket; a service agent runs nothing without one.
            (Authority::Ticket(_) | Authority::Grant { .. }, None) => {
                return Err(RunError::Ticket(TicketError::Mismatch(
                    "is not admitted: this agent runs local functions only".to_owned(),
                )))
            }
            (Authority::Local { .. }, Some(_)) => {
                return Err(RunError::Ticket(TicketError::Mismatch(
                    "is missing: this agent runs nothing without a ticket or a grant".to_owned(),
                )))
            }
        };
        let (ticket, ticket_id, execution_id, spec) = match &admitted {
            Admitted::Ticket(ticket, claims) => (*ticket, claims.jti, claims.sub, &claims.spec),
            Admitted::Grant(token, execution_id, slot) => {
                let claims = &slot.grant().claims;
                (*token, claims.sub, *execution_id, &claims.spec)
            }
            // The code is in the cache already (`add_local_code`): nothing is downloaded.
            Admitted::Local(spec, execution_id) => ("", Uuid::nil(), *execution_id, *spec),
        };
        validate_spec(spec)?;
        // Defence in depth: the control plane allows a function's own image only within its
        // allowlist; this node runs one only within its own.
        if spec.runtime_kind == "image"
            && !fresco_common::images::allowed(&spec.image, &self.settings.allowed_image_prefixes)
        {
            return Err(RunError::Spec(format!(
                "image {} is not allowed on this node",
                spec.image
            )));
        }
        self.check_engine().await?;
        let memory_mb = u64::try_from(spec.memory_mb).unwrap_or(0);
        let running = self.running.fetch_add(1, Ordering::SeqCst);
        let _running = RunningGuard(&self.running);
        if running >= self.settings.max_running {
            return Err(RunError::NoCapacity(format!(
                "{running} invocations already running"
            )));
        }
        self.metrics.runs.fetch_add(1, Ordering::Relaxed);
        let key = pool_key(spec);
        let started = Instant::now();
        let acquired = loop {
            let acquired = self.pools().acquire(&key, &spec.warm_key(), memory_mb);
            match acquired {
                Acquired::Warm(container) if !container.channel.is_usable() => {
                    // It stopped while idle (its engine restarted, or a process the function
                    // left behind killed it): none of this execution ran there, so it gets a
                    // fresh container rather than the dead one's exit status. `destroy` thaws
                    // it first if it is frozen.
                    self.pools().retire(&key);
                    self.destroy_later(container);
                }
                Acquired::Warm(container) => match container.thaw() {
                    Ok(()) => break Acquired::Warm(container),
                    Err(e) => {
                        // Never run (or keep) a sandbox in an unknown freezer state: the
                        // platform failed, not the function, and none of this execution ran
                        // there, so it is replaced like a dead one.
                        log::warn!("cannot use {}: {e}; replacing it", container.name);
                        self.metrics.freeze_failures.fetch_add(1, Ordering::Relaxed);
                        self.pools().retire(&key);
                        self.destroy_later(container);
                    }
                },
                Acquired::Full { .. } if self.evict_prewarmed() => {}
                other => break other,
            }
        };
        let (container, init_ms) = match acquired {
            Acquired::Warm(container) => (container, None),
            Acquired::Full { free_mb } => {
                return Err(RunError::NoCapacity(format!(
                    "function needs {memory_mb} MB, {free_mb} MB free"
                )));
            }
            Acquired::Cold { evicted } => {
                for old in evicted {
                    self.destroy_later(old);
                }
                match self.claim_prewarmed(spec, ticket, ticket_id).await {
                    Ok(Some(container)) => {
                        self.metrics
                            .prewarmed_claims
                            .fetch_add(1, Ordering::Relaxed);
                        container.used.store(true, Ordering::SeqCst);
                        let start = Start::Cold {
                            prepared_ms: ms(started.elapsed()),
                            prewarmed: true,
                        };
                        return Ok(self
                            .invoke(spec, execution_id, &key, container, start, payload)
                            .await);
                    }
                    Ok(None) => {}
                    Err(error) => {
                        self.pools().retire(&key);
                        return Ok(not_started(execution_id, error, started));
                    }
                }
                match self.start_container(spec, ticket, ticket_id).await {
                    Ok(container) => {
                        self.metrics.cold_starts.fetch_add(1, Ordering::Relaxed);
                        (container, Some(ms(started.elapsed())))
                    }
                    Err(StartFailure::EngineDown(reason)) => {
                        self.pools().retire(&key);
                        self.engine_down.store(true, Ordering::SeqCst);
                        log::warn!("container engine unavailable: {reason}");
                        return Err(RunError::EngineUnavailable(format!(
                            "container engine unavailable: {reason}"
                        )));
                    }
                    Err(StartFailure::NoImage(reason)) => {
                        self.pools().retire(&key);
                        log::warn!("execution {execution_id}: {reason}; refused");
                        return Err(RunError::NoImage(reason));
                    }
                    Err(StartFailure::Failed(error)) => {
                        self.pools().retire(&key);
                        return Ok(not_started(execution_id, error, started));
                    }
                }
            }
        };
        let cold = !container.used.swap(true, Ordering::SeqCst);
        let start = match (cold, init_ms) {
            (false, _) => {
                self.metrics.warm_starts.fetch_add(1, Ordering::Relaxed);
                Start::Warm
            }
            (true, init) => Start::Cold {
                prepared_ms: init.unwrap_or(0.0),
                prewarmed: false,
            },
        };
        Ok(self
            .invoke(spec, execution_id, &key, container, start, payload)
            .await)
    }

    /// Refuses work while the engine is known to be down, unless it answers again.
    async fn check_engine(&self) -> Result<(), RunError> {
        if !self.engine_down.load(Ordering::SeqCst) {
            return Ok(());
        }
        match self.engine.ping().await {
            Ok(()) => {
                log::info!("container engine answers again");
                self.engine_down.store(false, Ordering::SeqCst);
                Ok(())
            }
            Err(e) => Err(RunError::EngineUnavailable(e.to_string())),
        }
    }

    /// Whether the engine is known to be unreachable (reported in heartbeats).
    pub fn engine_down(&self) -> bool {
        self.engine_down.load(Ordering::SeqCst)
    }

    /// A pre-warmed sandbox claimed for `spec` (its code in place, its runtime told the
    /// function), when the function may use one and one is ready; `None` otherwise (a cold
    /// start follows). A claimed sandbox that cannot be given the function is removed and
    /// the next one tried.
    async fn claim_prewarmed(
        &self,
        spec: &FunctionSpec,
        ticket: &str,
        ticket_id: Uuid,
    ) -> Result<Option<Arc<Container>>, FunctionError> {
        let memory_mb = u64::try_from(spec.memory_mb).unwrap_or(0);
        let Some(pool) = self.prewarm_pool_for(spec) else {
            return Ok(None);
        };
        loop {
            let taken = {
                let mut pools = self.pools();
                let taken = self.prewarmed().take(&pool, Instant::now());
                if taken.is_some() {
                    // The function's own reservation counts from now on.
                    pools.unhold(memory_mb);
                }
                taken
            };
            self.prewarm_wake.notify_one();
            let Some(container) = taken else {
                return Ok(None);
            };
            if !container.channel.is_usable() {
                self.destroy_later(container);
                continue;
            }
            let code = match &spec.code_sha256 {
                Some(sha) => match self
                    .code
                    .get(&spec.project_id, sha, ticket, ticket_id)
                    .await
                {
                    Ok(code) => Some(code),
                    Err(e) => {
                        self.destroy_later(container);
                        return Err(platform_error("CodeUnavailable", e.to_string()));
                    }
                },
                None => None,
            };
            match container
                .claim(code, build_env(spec, &container.name))
                .await
            {
                Ok(()) => return Ok(Some(container)),
                Err(e) => {
                    log::warn!(
                        "cannot claim pre-warmed {}: {e}; removing it",
                        container.name
                    );
                    self.destroy_later(container);
                }
            }
        }
    }

    /// The pre-warmed pool a function may claim from: one of its runtime kind, image and
    /// memory size, for a function without network (a pre-warmed sandbox has none), whose
    /// environment the already started runtime can honour (variables a Python interpreter
    /// reads only as it starts, or the dynamic loader, need a cold start).
    fn prewarm_pool_for(&self, spec: &FunctionSpec) -> Option<PrewarmSpec> {
        if spec.network {
            return None;
        }
        if spec.runtime_kind == "python"
            && spec.environment.keys().any(|name| {
                ["PYTHON", "LD_", "LC_"]
                    .iter()
                    .any(|prefix| name.starts_with(prefix))
                    || matches!(name.as_str(), "LANG" | "TZ" | "HOME" | "PATH")
            })
        {
            return None;
        }
        let memory_mb = u64::try_from(spec.memory_mb).ok()?;
        self.prewarmed()
            .pool_for(&spec.runtime_kind, &spec.image, memory_mb)
            .cloned()
    }

    /// Ready pre-warmed sandboxes per pool.
    pub fn prewarmed_snapshot(&self) -> Vec<fresco_common::wire::PrewarmedPool> {
        self.prewarmed().snapshot()
    }

    fn prewarmed(&self) -> std::sync::MutexGuard<'_, Prewarmed<Arc<Container>>> {
        self.prewarmed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Removes one ready pre-warmed sandbox to make room for a function; false when there is
    /// none.
    fn evict_prewarmed(&self) -> bool {
        let evicted = {
            let mut pools = self.pools();
            let evicted = self.prewarmed().evict();
            if let Some((memory_mb, _)) = &evicted {
                pools.unhold(*memory_mb);
            }
            evicted
        };
        match evicted {
            Some((_, container)) => {
                self.destroy_later(container);
                true
            }
            None => false,
        }
    }

    /// Keeps the pre-warmed pools filled, off the invocation path: woken by each claim and
    /// every 250 ms; removes sandboxes beyond the pools' targets when demand falls.
    pub async fn keep_prewarmed(self: Arc<Self>) {
        if !self.prewarmed().is_enabled() {
            return;
        }
        self.refresh_images().await;
        loop {
            if !self.shutting_down.load(Ordering::SeqCst) && !self.engine_down() {
                self.fill_prewarmed();
                let surplus = {
                    let mut pools = self.pools();
                    let surplus = self.prewarmed().surplus(Instant::now());
                    for (memory_mb, _) in &surplus {
                        pools.unhold(*memory_mb);
                    }
                    surplus
                };
                for (_, container) in surplus {
                    self.destroy_later(container);
                }
            }
            tokio::select! {
                () = self.prewarm_wake.notified() => {}
                () = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
        }
    }

    /// Starts the pre-warmed sandboxes the pools want now (each in a task of its own).
    fn fill_prewarmed(self: &Arc<Self>) {
        let images = self
            .images
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let wanted = {
            let mut pools = self.pools();
            self.prewarmed().to_start(
                Instant::now(),
                |image| images.iter().any(|i| i == image),
                |memory_mb| pools.hold(memory_mb),
            )
        };
        for prewarm in wanted {
            let agent = Arc::clone(self);
            tokio::spawn(async move { agent.start_prewarmed(prewarm).await });
        }
    }

    /// Starts one pre-warmed sandbox, waits until its runtime waits for a function, freezes
    /// it and puts it in its pool (its memory is already held).
    async fn start_prewarmed(&self, prewarm: PrewarmSpec) {
        let started =
            Container::start_prewarmed(&self.engine, &self.sandboxes, &self.settings, &prewarm)
                .await;
        let container = match started {
            Ok(container) => container,
            Err(e) => {
                if let ContainerError::Engine(EngineError::Unavailable(_)) = &e {
                    self.engine_down.store(true, Ordering::SeqCst);
                }
                log::warn!("cannot start a pre-warmed {} sandbox: {e}", prewarm.image);
                self.pools().unhold(prewarm.memory_mb);
                self.prewarmed().start_failed(&prewarm, Instant::now());
                return;
            }
        };
        let waiting = container
            .channel
            .wait_until_idle(self.settings.start_timeout)
            .await;
        let epoch = container.epoch();
        let frozen = waiting
            && match container.freeze_if_idle(epoch) {
                Ok(true) => container
                    .confirm_frozen(epoch, self.settings.freeze_timeout)
                    .await
                    .is_ok(),
                _ => false,
            };
        if !frozen || self.shutting_down.load(Ordering::SeqCst) {
            if !frozen {
                log::warn!(
                    "pre-warmed {} sandbox {} did not come to wait frozen; removing it",
                    prewarm.image,
                    container.name
                );
            }
            container.destroy(&self.engine).await;
            self.pools().unhold(prewarm.memory_mb);
            self.prewarmed().start_failed(&prewarm, Instant::now());
            return;
        }
        self.metrics
            .prewarmed_started
            .fetch_add(1, Ordering::Relaxed);
        let pools = self.pools();
        self.prewarmed().started(&prewarm, container);
        drop(pools);
    }

    async fn start_container(
        &self,
        spec: &FunctionSpec,
        ticket: &str,
        ticket_id: Uuid,
    ) -> Result<Arc<Container>, StartFailure> {
        let code = match &spec.code_sha256 {
            Some(sha) => Some(
                self.code
                    .get(&spec.project_id, sha, ticket, ticket_id)
                    .await
                    .map_err(|e| {
                        StartFailure::Failed(platform_error("CodeUnavailable", e.to_string()))
                    })?,
            ),
            None => None,
        };
        Container::start(&self.engine, &self.sandboxes, &self.settings, spec, code)
            .await
            .map_err(|e| match e {
                ContainerError::Engine(EngineError::Unavailable(reason)) => {
                    StartFailure::EngineDown(reason)
                }
                ContainerError::Engine(EngineError::NoSuchImage(image)) => {
                    StartFailure::NoImage(format!("image {image} is not present on this node"))
                }
                other => {
                    StartFailure::Failed(platform_error("ContainerStartFailed", other.to_string()))
                }
            })
    }

    #[allow(clippy::too_many_arguments)]
    async fn invoke(
        &self,
        spec: &FunctionSpec,
        execution_id: Uuid,
        key: &str,
        container: Arc<Container>,
        start: Start,
        payload: Bytes,
    ) -> RunResult {
        let cold = !matches!(start, Start::Warm);
        if !cold {
            container.begin_output();
        }
        let timeout = Duration::from_secs(u64::try_from(spec.timeout_s).unwrap_or(1));
        let taken = Arc::new(tokio::sync::Notify::new());
        let invocation = Invocation {
            request_id: execution_id.to_string(),
            payload,
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            function_arn: function_arn(spec),
            trace_id: format!(
                "Root=1-{:08x}-{};Sampled=0",
                now_ms() / 1000,
                &execution_id.simple().to_string()[..24]
            ),
            taken: Arc::clone(&taken),
        };
        // A cold runtime first initialises (interpreter start, handler import); that phase is
        // bounded by `[agent] start_timeout`, and the function's own timeout starts when the
        // runtime takes the event. A warm runtime is already waiting, so it takes it at once.
        let init_limit = if cold {
            self.settings.start_timeout
        } else {
            timeout
        };
        let started = Instant::now();
        // When the runtime took the event: before it, the runtime was initialising.
        let mut taken_at = None;
        let ending = match container.channel.dispatch(invocation) {
            Ok(mut rx) => {
                let taken_or_done = tokio::time::timeout(init_limit, async {
                    tokio::select! {
                        () = taken.notified() => None,
                        outcome = &mut rx => Some(outcome),
                    }
                })
                .await;
                match taken_or_done {
                    Err(_) => Ending::Timeout,
                    Ok(Some(Ok(outcome))) => Ending::Outcome(outcome),
                    Ok(Some(Err(_))) => Ending::Lost,
                    Ok(None) => {
                        taken_at = Some(Instant::now());
                        match tokio::time::timeout(timeout, rx).await {
                            Ok(Ok(outcome)) => Ending::Outcome(outcome),
                            Ok(Err(_)) => Ending::Lost,
                            Err(_) => Ending::Timeout,
                        }
                    }
                }
            }
            Err(DispatchError::Dead(_)) => Ending::NotRun("the container had stopped"),
            Err(DispatchError::Busy) => Ending::NotRun("the container was busy"),
        };
        // A container that stopped while its engine is unreachable was most likely stopped by
        // the engine (dockerd shutting down kills its containers): a platform failure.
        let ending = match ending {
            Ending::Outcome(Outcome::Exited(exit)) => match self.engine.ping().await {
                Ok(()) => Ending::Outcome(Outcome::Exited(exit)),
                Err(e) => Ending::Outcome(Outcome::EngineLost(format!(
                    "the container stopped (status {}) and its engine does not answer: {e}",
                    exit.exit_code
                ))),
            },
            other => other,
        };
        let (duration_ms, init_ms) = timings(&start, started, taken_at, Instant::now());
        let sync_started = Instant::now();
        self.collect_output(&container, &ending).await;
        let sync_ms = ms(sync_started.elapsed());
        let max_memory_mb = self
            .engine
            .peak_memory(&container.id)
            .map(|b| b as f64 / (1024.0 * 1024.0));
        let mut result = RunResult {
            execution_id,
            status: RunStatus::Succeeded,
            response: None,
            error: None,
            duration_ms,
            init_ms,
            max_memory_mb,
            cold,
            logs: String::new(),
            cpu_ms: None,
            output_truncated: false,
            retry_safe: false,
            prewarmed: matches!(
                start,
                Start::Cold {
                    prewarmed: true,
                    ..
                }
            ),
        };
        let reusable = match ending {
            Ending::Outcome(Outcome::Response(body)) => {
                result.response = Some(String::from_utf8_lossy(&body).into_owned());
                true
            }
            Ending::Outcome(Outcome::Error(error)) => {
                result.status = RunStatus::Failed;
                result.error = Some(error);
                true
            }
            Ending::Outcome(Outcome::ResponseTooLarge) => {
                result.status = RunStatus::Failed;
                result.error = Some(FunctionError {
                    error_type: "Function.ResponseSizeTooLarge".to_owned(),
                    error_message: format!(
                        "response payload exceeds {} bytes",
                        crate::runtime_api::MAX_RESPONSE_BYTES
                    ),
                    stack_trace: Vec::new(),
                });
                true
            }
            Ending::Outcome(Outcome::OutputLimit(limit)) => {
                self.metrics.output_cutoffs.fetch_add(1, Ordering::Relaxed);
                result.status = RunStatus::Failed;
                result.error = Some(FunctionError {
                    error_type: "Function.OutputLimitExceeded".to_owned(),
                    error_message: match limit {
                        OutputLimit::Invocation(max) => {
                            format!("the function wrote more than {max} bytes of output")
                        }
                        OutputLimit::Lifetime(max) => format!(
                            "the function's container wrote more than {max} bytes of output"
                        ),
                    },
                    stack_trace: Vec::new(),
                });
                false
            }
            Ending::Outcome(Outcome::InitError(error)) => {
                result.status = RunStatus::Failed;
                result.error = Some(error);
                false
            }
            Ending::Outcome(Outcome::Exited(exit)) => {
                if exit.oom_killed || exit.exit_code == 137 {
                    result.status = RunStatus::Oom;
                    result.error = Some(FunctionError {
                        error_type: "Runtime.OutOfMemory".to_owned(),
                        error_message: format!(
                            "function exceeded its memory limit of {} MB",
                            spec.memory_mb
                        ),
                        stack_trace: Vec::new(),
                    });
                } else {
                    result.status = RunStatus::Failed;
                    result.error = Some(FunctionError {
                        error_type: "Runtime.ExitError".to_owned(),
                        error_message: format!("runtime exited with status {}", exit.exit_code),
                        stack_trace: Vec::new(),
                    });
                }
                false
            }
            Ending::Timeout => {
                self.metrics.timeouts.fetch_add(1, Ordering::Relaxed);
                container.channel.abandon();
                result.status = RunStatus::Timeout;
                result.error = Some(FunctionError {
                    error_type: "Function.Timeout".to_owned(),
                    error_message: format!("task timed out after {} s", spec.timeout_s),
                    stack_trace: Vec::new(),
                });
                false
            }
            Ending::Lost => {
                result.status = RunStatus::Error;
                result.error = Some(platform_error(
                    "ContainerLost",
                    "the container stopped answering".to_owned(),
                ));
                false
            }
            Ending::Outcome(Outcome::EngineLost(reason)) => {
                self.engine_down.store(true, Ordering::SeqCst);
                log::warn!("execution {execution_id}: container engine lost: {reason}");
                result.status = RunStatus::Error;
                result.error = Some(platform_error("EngineUnavailable", reason));
                false
            }
            Ending::NotRun(reason) => {
                result.status = RunStatus::Error;
                result.error = Some(platform_error("ContainerLost", reason.to_owned()));
                result.retry_safe = true;
                false
            }
        };
        (result.logs, result.output_truncated) = container.logs.take();
        result.logs.push_str(&report_line(&result, spec.memory_mb));
        let keep =
            reusable && container.channel.is_usable() && !self.shutting_down.load(Ordering::SeqCst);
        // Bill what the sandbox used since the last invocation was billed: this one, and what
        // processes left behind by the last one used before it froze.
        result.cpu_ms = container.take_cpu_ms();
        log::debug!(
            "execution {execution_id}: {:?} in {duration_ms:.3} ms, output {sync_ms:.3} ms, cpu {:?} ms, cold {cold}",
            result.status,
            result.cpu_ms,
        );
        let unused = if keep {
            let epoch = container.epoch();
            // A retirement that arrived meanwhile sends it away.
            match self.release_unless_retired(spec, key, Arc::clone(&container)) {
                None => {
                    self.freeze_later(container, epoch);
                    None
                }
                Some(_) => Some(container),
            }
        } else {
            Some(container)
        };
        if let Some(container) = unused {
            // Killed (or retired) before answering: gone before the caller hears about it.
            container.destroy(&self.engine).await;
            self.pools().retire(key);
        }
        result
    }

    /// Between invocations a sandbox does not run: once it has been idle for
    /// `[agent] freeze_delay_ms` (not taken again meanwhile: back-to-back invocations pay no
    /// freeze and thaw), it is frozen, off the invocation path, and watched until the freezer
    /// confirms it; one that is still FREEZING after `[agent] freeze_timeout_ms` (and was not
    /// taken again meanwhile), or that cannot be frozen, is given up on and removed; its pool
    /// entry is replaced by a new sandbox when next used.
    fn freeze_later(&self, container: Arc<Container>, epoch: u64) {
        let engine = Arc::clone(&self.engine);
        let (delay, limit) = (self.settings.freeze_delay, self.settings.freeze_timeout);
        tokio::spawn(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            if container.epoch() != epoch {
                return;
            }
            // Lambda's invocation ends when the runtime asks for the next event: freezing it
            // then leaves it ready for the next one. A sandbox that does not come back to idle
            // in time is frozen wherever it is.
            container
                .channel
                .wait_until_idle(IDLE_WAIT.min(limit))
                .await;
            let failure = match container.freeze_if_idle(epoch) {
                Ok(false) => return,
                Ok(true) => match container.confirm_frozen(epoch, limit).await {
                    Ok(()) => return,
                    Err(e) => e,
                },
                Err(e) => e,
            };
            if container.give_up(epoch) {
                log::warn!("{} did not freeze: {failure}; removing it", container.name);
                container.destroy(&engine).await;
            }
        });
    }

    /// Reads the output the function wrote before its invocation ended: when it answered,
    /// all of it is in the output pipe already; when its container stopped, all of it was read
    /// when the engine said so; a runtime that reported an init error is given a moment to
    /// stop (it exits right after) so what it printed on its way out is kept too.
    async fn collect_output(&self, container: &Container, ending: &Ending) {
        if let Ending::Outcome(Outcome::InitError(_)) = ending {
            container
                .logs
                .wait_closed(self.settings.log_sync_timeout)
                .await;
        }
        container.read_output();
    }

    fn destroy_later(&self, container: Arc<Container>) {
        let engine = Arc::clone(&self.engine);
        tokio::spawn(async move { container.destroy(&engine).await });
    }

    /// Removes containers idle longer than `[agent] idle_timeout`.
    pub fn expire_idle(&self) -> usize {
        let expired = self
            .pools()
            .expire(Instant::now(), self.settings.idle_timeout);
        let count = expired.len();
        for container in expired {
            self.destroy_later(container);
        }
        count
    }

    fn retired(&self) -> std::sync::MutexGuard<'_, Retired> {
        self.retired.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Puts a container back in its pool unless its function version was retired; returns it
    /// when it must go. Checked under the pools lock (taken before the retirements lock, as
    /// everywhere), so a retirement cannot slip between the check and the release.
    fn release_unless_retired(
        &self,
        spec: &FunctionSpec,
        key: &str,
        container: Arc<Container>,
    ) -> Option<Arc<Container>> {
        let mut pools = self.pools();
        if self.retired().covers(spec) {
            return Some(container);
        }
        pools.release(key, container, Instant::now());
        None
    }

    /// Retires function versions: their idle containers are destroyed now, busy ones when
    /// their invocation ends, and none serves again. Returns how many idle containers went.
    pub fn retire(&self, keys: &[RetiredKey]) -> usize {
        if keys.is_empty() {
            return 0;
        }
        let retired = {
            let mut pools = self.pools();
            let mut retired = self.retired();
            retired.add(keys, Instant::now());
            pools.take_idle_where(|pool| retired.covers_pool(pool))
        };
        let count = retired.len();
        for container in retired {
            self.destroy_later(container);
        }
        if count > 0 {
            log::info!("retired {count} idle container(s)");
        }
        count
    }

    /// Applies a scheduler's heartbeat reply: a reset (retirements this agent missed were
    /// purged) destroys every idle container; then the retirements; then the acknowledgement.
    pub fn apply_retirements(&self, reply: &HeartbeatReply) {
        if reply.reset {
            let idle = self.pools().take_idle_where(|_| true);
            log::warn!(
                "retirements were missed: removing all {} idle container(s)",
                idle.len()
            );
            for container in idle {
                self.destroy_later(container);
            }
        }
        self.retire(&reply.retire);
        self.retired().acknowledge(reply.retired_seq);
    }

    /// Refreshes the list of images present on the node; also tells whether the engine
    /// answers (reported in heartbeats).
    pub async fn refresh_images(&self) {
        match self.engine.images().await {
            Ok(images) => {
                *self.images.lock().unwrap_or_else(|e| e.into_inner()) = images;
                if self.engine_down.swap(false, Ordering::SeqCst) {
                    log::info!("container engine answers again");
                }
            }
            Err(e) if e.is_unavailable() => {
                if !self.engine_down.swap(true, Ordering::SeqCst) {
                    log::warn!("{e}: taking no work until it answers");
                }
            }
            Err(e) => log::warn!("cannot list images: {e}"),
        }
    }

    /// The agent's report to the schedulers.
    pub fn heartbeat(&self, url: &str) -> Heartbeat {
        let pools = self.pools();
        Heartbeat {
            agent_id: self.settings.agent_id.clone(),
            host: self.settings.host.clone(),
            url: url.to_owned(),
            memory_mb_total: i64::try_from(pools.capacity_mb()).unwrap_or(i64::MAX),
            memory_mb_reserved: i64::try_from(pools.reserved_mb()).unwrap_or(i64::MAX),
            cpus: self.settings.cpus,
            running: pools.running(),
            warm: pools.snapshot(),
            images: self
                .images
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            engine_down: self.engine_down(),
            retired_seq: self.retired().acked(),
            prewarmed: self.prewarmed().snapshot(),
        }
    }

    /// Stops taking runs and removes every container of this agent, and its sandbox network.
    pub async fn shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        let idle = self.pools().drain_idle();
        for container in idle {
            container.destroy(&self.engine).await;
        }
        let prewarmed = self.prewarmed().drain();
        for (memory_mb, container) in prewarmed {
            container.destroy(&self.engine).await;
            self.pools().unhold(memory_mb);
        }
        match self
            .engine
            .list_labelled(LABEL_AGENT, &self.settings.agent_id)
            .await
        {
            Ok(ids) => {
                for id in ids {
                    let _ = self.engine.remove(&id).await;
                }
            }
            Err(e) => log::warn!("cannot list containers at shutdown: {e}"),
        }
        let host = Arc::clone(&self.sandboxes.host);
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || host.reset_network()).await {
            log::warn!("cannot remove the sandbox network: {e}");
        }
    }
}

struct RunningGuard<'a>(&'a AtomicU32);

impl Drop for RunningGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::fake::{FakeEngine, FakeHost};
    use crate::engine::host::FreezerState;
    use fresco_common::conf::RawConfig;
    use fresco_common::ticket::TicketSigner;

    // A throwaway Ed25519 key pair for tests only.
    const PRIVATE: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIPDphl9SqanFK+zTSluaX26jfvxzKtsDBf4ntwe+UDy7\n-----END PRIVATE KEY-----\n";
    const PUBLIC: &str = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEALN3/XuOh0wrB4/jbsZwWdiMRVZL2PUepzf18DzEv6D4=\n-----END PUBLIC KEY-----\n";
    const OTHER_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIBDZreGq6jI/TQJ2OayLZBOClICsyJeLMB8MNK6B959x\n-----END PRIVATE KEY-----\n";

    struct Harness {
        agent: Agent<FakeEngine>,
        engine: Arc<FakeEngine>,
        host: Arc<FakeHost>,
        state: PathBuf,
    }

    impl Drop for Harness {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.state);
        }
    }

    use std::path::PathBuf;

    fn harness(memory_mb: u64) -> Harness {
        harness_with(memory_mb, "")
    }

    /// A harness with `extra` `[agent]` options.
    fn harness_with(memory_mb: u64, extra: &str) -> Harness {
        let state =
            std::env::temp_dir().join(format!("fu-{}", &Uuid::new_v4().simple().to_string()[..10]));
        let raw = RawConfig::parse(
            &format!(
                "[DEFAULT]\nstate_path = {}\n[agent]\nagent_id = unit\nmemory_mb = {memory_mb}\nidle_timeout = 0\nlog_sync_timeout_ms = 500\nmax_running = 4\nallowed_image_prefixes = fresco/, missing\nfreeze_timeout_ms = 200\nfreeze_delay_ms = 0\n{extra}\n",
                state.display()
            ),
            "test",
        )
        .expect("config");
        let settings = Settings::from_raw(&raw).expect("settings");
        let engine = Arc::new(FakeEngine::new());
        let host = Arc::new(FakeHost::new());
        engine.watch_freezer(Arc::clone(&host));
        let verifier = TicketVerifier::from_pem(PUBLIC.as_bytes()).expect("verifier");
        let agent = Agent::new(settings, Arc::clone(&engine), verifier)
            .expect("agent")
            .with_host(Arc::clone(&host) as Arc<dyn HostControl>);
        Harness {
            agent,
            engine,
            host,
            state,
        }
    }

    /// An image function (no code to fetch) whose fake runtime follows `script`.
    fn spec(script: &str) -> FunctionSpec {
        FunctionSpec {
            project_id: "p1".into(),
            function_id: Uuid::new_v4(),
            function_name: script.into(),
            version: 1,
            image: "fresco/python3:dev".into(),
            runtime_kind: "image".into(),
            handler: script.into(),
            memory_mb: 128,
            timeout_s: 2,
            environment: Default::default(),
            code_sha256: None,
            network: false,
            revision: 0,
        }
    }

    /// A ticket for running `spec` with an empty payload.
    fn ticket(spec: &FunctionSpec) -> String {
        ticket_with(spec, b"")
    }

    /// A ticket for running `spec` with `payload`.
    fn ticket_with(spec: &FunctionSpec, payload: &[u8]) -> String {
        TicketSigner::from_pem(PRIVATE.as_bytes(), 30)
            .expect("signer")
            .sign(
                "unit",
                Uuid::new_v4(),
                Uuid::new_v4(),
                &fresco_common::ticket::sha256_hex(payload),
                spec.clone(),
            )
            .expect("sign")
    }

    async fn run(h: &Harness, spec: &FunctionSpec, payload: &str) -> RunResult {
        h.agent
            .run(
                &ticket_with(spec, payload.as_bytes()),
                Bytes::from(payload.to_owned()),
            )
            .await
            .expect("run accepted")
    }

    #[tokio::test]
    async fn only_a_local_agent_runs_without_a_ticket_and_it_admits_no_ticket() {
        let h = harness(1024);
        h.agent.reconcile().await.expect("reconcile");
        let echo = spec("echo");
        let refused = h
            .agent
            .run_local(&echo, Uuid::new_v4(), Bytes::from_static(b"{}"))
            .await
            .expect_err("a service agent runs nothing without a ticket");
        assert!(matches!(refused, RunError::Ticket(_)), "{refused}");
        assert_eq!(h.engine.count("create"), 0);

        // The same settings, built as the local emulator builds its agent.
        let settings = h.agent.settings().clone();
        let engine = Arc::new(FakeEngine::new());
        let host = Arc::new(FakeHost::new());
        engine.watch_freezer(Arc::clone(&host));
        let local = Agent::local(settings, Arc::clone(&engine))
            .expect("local agent")
            .with_host(Arc::clone(&host) as Arc<dyn HostControl>);
        let first = local
            .run_local(&echo, Uuid::new_v4(), Bytes::from_static(br#"{"n":1}"#))
            .await
            .expect("a local run");
        assert_eq!(
            (first.status, first.response.as_deref(), first.cold),
            (RunStatus::Succeeded, Some(r#"{"n":1}"#), true)
        );
        let second = local
            .run_local(&echo, Uuid::new_v4(), Bytes::from_static(br#"{"n":2}"#))
            .await
            .expect("a warm local run");
        assert!(!second.cold, "the warm container answers again");
        assert_eq!(engine.count("create"), 1);
        let ticketed = local
            .run(&ticket(&echo), Bytes::new())
            .await
            .expect_err("a local agent admits no ticket");
        assert!(
            ticketed.to_string().contains("local functions only"),
            "{ticketed}"
        );
        local.shutdown().await;
    }

    #[tokio::test]
    async fn warm_containers_are_reused_and_reported() {
        let h = harness(1024);
        h.agent.reconcile().await.expect("reconcile");
        let echo = spec("echo");
        let first = run(&h, &echo, r#"{"n":1}"#).await;
        assert_eq!(first.status, RunStatus::Succeeded);
        assert_eq!(first.response.as_deref(), Some(r#"{"n":1}"#));
        assert!(first.cold && first.init_ms.is_some());
        assert_eq!(first.max_memory_mb, Some(42.0));
        let second = run(&h, &echo, r#"{"n":2}"#).await;
        assert_eq!(second.response.as_deref(), Some(r#"{"n":2}"#));
        assert!(!second.cold && second.init_ms.is_none());
        assert_eq!(h.engine.count("create"), 1, "{:?}", h.engine.calls());
        let beat = h.agent.heartbeat("http://a");
        assert_eq!(beat.memory_mb_reserved, 128);
        assert_eq!(beat.warm.len(), 1);
        assert_eq!(
            (beat.warm[0].key.as_str(), beat.warm[0].idle),
            (echo.warm_key().as_str(), 1)
        );
        assert_eq!(beat.images, Vec::<String>::new(), "not refreshed yet");
        h.agent.refresh_images().await;
        assert_eq!(
            h.agent.heartbeat("x").images,
            vec!["fresco/python3:dev".to_owned()]
        );
    }

    #[tokio::test]
    async fn changed_code_or_settings_never_reuse_a_container() {
        let h = harness(1024);
        let echo = spec("echo");
        run(&h, &echo, "1").await;
        let mut changed = echo.clone();
        changed.environment.insert("X".into(), "1".into());
        assert_eq!(changed.warm_key(), echo.warm_key());
        assert_ne!(pool_key(&changed), pool_key(&echo));
        assert!(run(&h, &changed, "2").await.cold);
        assert_eq!(h.engine.count("create"), 2);
    }

    #[tokio::test]
    async fn function_errors_are_structured_and_keep_the_container() {
        let h = harness(1024);
        let fail = spec("fail");
        let result = run(&h, &fail, "{}").await;
        assert_eq!(result.status, RunStatus::Failed);
        let error = result.error.expect("error");
        assert_eq!(
            (error.error_type.as_str(), error.error_message.as_str()),
            ("ValueError", "boom")
        );
        assert_eq!(error.stack_trace.len(), 1);
        assert!(!run(&h, &fail, "{}").await.cold, "reused after an error");
    }

    #[test]
    fn cold_starts_report_their_initialisation_apart_from_the_duration() {
        let t0 = Instant::now();
        let (taken, ended) = (
            t0 + Duration::from_millis(30),
            t0 + Duration::from_millis(35),
        );
        let cold = Start::Cold {
            prepared_ms: 60.0,
            prewarmed: false,
        };
        let (duration, init) = timings(&cold, t0, Some(taken), ended);
        assert!((duration - 5.0).abs() < 0.01, "{duration}");
        assert!((init.expect("init") - 90.0).abs() < 0.01, "{init:?}");
        let (duration, init) = timings(&cold, t0, None, ended);
        assert!((duration - 35.0).abs() < 0.01);
        assert!(
            (init.expect("init") - 95.0).abs() < 0.01,
            "never took the event"
        );
        let (duration, init) = timings(&Start::Warm, t0, Some(taken), ended);
        assert!((duration - 35.0).abs() < 0.01);
        assert_eq!(init, None, "a warm start has no init duration");
    }

    #[test]
    fn the_report_line_ends_the_log_like_lambda() {
        let mut result = RunResult {
            execution_id: Uuid::nil(),
            status: RunStatus::Succeeded,
            response: None,
            error: None,
            duration_ms: 1.234,
            init_ms: Some(12.5),
            max_memory_mb: Some(17.2),
            cold: true,
            logs: "no newline".into(),
            cpu_ms: None,
            output_truncated: false,
            retry_safe: false,
            prewarmed: true,
        };
        assert_eq!(
            report_line(&result, 128),
            "\nREPORT RequestId: 00000000-0000-0000-0000-000000000000\tDuration: 1.23 ms\t\
             Billed Duration: 2 ms\tMemory Size: 128 MB\tMax Memory Used: 18 MB\t\
             Init Duration: 12.50 ms\n"
        );
        result.logs = "line\n".into();
        result.init_ms = None;
        result.duration_ms = 0.2;
        let warm = report_line(&result, 256);
        assert!(warm.starts_with("REPORT RequestId: "), "{warm}");
        assert!(
            warm.contains("Billed Duration: 1 ms\tMemory Size: 256 MB"),
            "{warm}"
        );
        assert!(!warm.contains("Init Duration"), "{warm}");
    }

    #[tokio::test]
    async fn timeouts_kill_the_container_and_free_its_memory() {
        let h = harness(1024);
        let mut sleep = spec("sleep");
        sleep.timeout_s = 1;
        let started = Instant::now();
        let result = run(&h, &sleep, "{}").await;
        assert_eq!(result.status, RunStatus::Timeout);
        assert!(started.elapsed() < Duration::from_secs(3));
        assert_eq!(h.engine.count("remove"), 1);
        assert_eq!(h.engine.live(), 0);
        assert_eq!(h.agent.heartbeat("x").memory_mb_reserved, 0);
        assert_eq!(h.agent.metrics.timeouts.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn exits_become_oom_or_runtime_errors() {
        let h = harness(1024);
        let oom = run(&h, &spec("oom"), "{}").await;
        assert_eq!(oom.status, RunStatus::Oom);
        let crash = run(&h, &spec("crash"), "{}").await;
        assert_eq!(crash.status, RunStatus::Failed);
        assert_eq!(crash.error.expect("error").error_type, "Runtime.ExitError");
        let init = run(&h, &spec("init_error"), "{}").await;
        assert_eq!(init.status, RunStatus::Failed);
        assert_eq!(
            init.error.expect("error").error_type,
            "Runtime.ImportModuleError"
        );
        assert_eq!(h.engine.live(), 0, "broken containers are removed");
        assert_eq!(h.agent.heartbeat("x").memory_mb_reserved, 0);
    }

    #[tokio::test]
    async fn mismatched_request_ids_are_refused() {
        let h = harness(1024);
        let result = run(&h, &spec("wrong_id"), "{}").await;
        assert_eq!(result.status, RunStatus::Succeeded);
        assert_eq!(
            result.response.as_deref(),
            Some(r#"{"wrong_id_status":400}"#)
        );
    }

    #[tokio::test]
    async fn runtime_gets_lambda_headers() {
        let h = harness(1024);
        let s = spec("headers");
        let before = now_ms();
        let result = run(&h, &s, "{}").await;
        let body: serde_json::Value =
            serde_json::from_str(result.response.as_deref().expect("response")).expect("json");
        let deadline: u64 = body["deadline"]
            .as_str()
            .expect("deadline")
            .parse()
            .expect("ms");
        assert!(
            deadline >= before + 2000 && deadline <= now_ms() + 2000,
            "{deadline}"
        );
        assert_eq!(body["arn"], "arn:fresco:function:p1:headers:1");
        assert!(body["trace"]
            .as_str()
            .expect("trace")
            .starts_with("Root=1-"));
    }

    #[tokio::test]
    async fn output_of_the_invocation_is_returned() {
        let h = harness(1024);
        let result = run(&h, &spec("log"), r#""x""#).await;
        assert!(
            result
                .logs
                .starts_with("log line \"x\"\nREPORT RequestId: "),
            "{}",
            result.logs
        );
    }

    #[tokio::test]
    async fn capacity_is_enforced_with_eviction_of_idle_containers() {
        let h = harness(300);
        let mut big = spec("echo");
        big.memory_mb = 512;
        assert!(matches!(
            h.agent
                .run(&ticket_with(&big, b"1"), Bytes::from_static(b"1"))
                .await,
            Err(RunError::NoCapacity(_))
        ));
        let a = spec("echo");
        let mut b = spec("echo");
        b.memory_mb = 200;
        run(&h, &a, "1").await;
        // 128 MB idle + 200 MB needed > 300 MB: the idle container is evicted.
        assert!(run(&h, &b, "2").await.cold);
        assert_eq!(h.agent.heartbeat("x").memory_mb_reserved, 200);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(h.engine.count("remove"), 1, "{:?}", h.engine.calls());
    }

    #[tokio::test]
    async fn concurrent_runs_are_capped() {
        let h = harness(4096);
        let mut sleep = spec("sleep");
        sleep.timeout_s = 1;
        let tickets: Vec<String> = (0..5).map(|_| ticket_with(&sleep, b"{}")).collect();
        let runs = tickets
            .iter()
            .map(|t| h.agent.run(t, Bytes::from_static(b"{}")));
        let results = futures_util::future::join_all(runs).await;
        let refused = results
            .iter()
            .filter(|r| matches!(r, Err(RunError::NoCapacity(_))))
            .count();
        assert_eq!(refused, 1, "max_running = 4");
    }

    #[tokio::test]
    async fn bad_tickets_and_specs_are_refused() {
        let h = harness(1024);
        let echo = spec("echo");
        let empty = fresco_common::ticket::sha256_hex(b"");
        let forged = TicketSigner::from_pem(OTHER_PRIVATE.as_bytes(), 60)
            .expect("signer")
            .sign("unit", Uuid::new_v4(), Uuid::new_v4(), &empty, echo.clone())
            .expect("sign");
        let other_agent = TicketSigner::from_pem(PRIVATE.as_bytes(), 30)
            .expect("signer")
            .sign(
                "other",
                Uuid::new_v4(),
                Uuid::new_v4(),
                &empty,
                echo.clone(),
            )
            .expect("sign");
        // A valid ticket for this agent, but for another payload; then the same ticket twice.
        let other_payload = ticket_with(&echo, b"{\"n\":1}");
        for token in [forged, other_agent, other_payload, "garbage".to_owned()] {
            assert!(matches!(
                h.agent.run(&token, Bytes::new()).await,
                Err(RunError::Ticket(_))
            ));
        }
        let mut python_without_code = echo.clone();
        python_without_code.runtime_kind = "python".into();
        let mut odd_kind = echo.clone();
        odd_kind.runtime_kind = "cobol".into();
        let mut tiny = echo.clone();
        tiny.memory_mb = 1;
        for bad in [python_without_code, odd_kind, tiny] {
            assert!(matches!(
                h.agent.run(&ticket(&bad), Bytes::new()).await,
                Err(RunError::Spec(_))
            ));
        }
        assert_eq!(h.engine.count("create"), 0, "nothing ran");
    }

    #[tokio::test]
    async fn failed_starts_release_their_reservation() {
        let h = harness(1024);
        let mut missing = spec("echo");
        missing.image = "missing".into();
        let refused = h
            .agent
            .run(&ticket_with(&missing, b"{}"), Bytes::from_static(b"{}"))
            .await;
        assert!(
            matches!(&refused, Err(RunError::NoImage(m)) if m == "image missing is not present on this node"),
            "a missing image is a clear refusal before anything ran, not an engine error: {refused:?}"
        );
        assert_eq!(h.agent.heartbeat("x").memory_mb_reserved, 0);
    }

    #[tokio::test]
    async fn an_engine_that_is_down_refuses_work_until_it_answers() {
        let h = harness(1024);
        h.engine.set_down(true);
        let echo = spec("echo");
        let refused = h
            .agent
            .run(&ticket_with(&echo, b"{}"), Bytes::from_static(b"{}"))
            .await;
        assert!(
            matches!(&refused, Err(RunError::EngineUnavailable(m)) if m.contains("unavailable")),
            "{refused:?}"
        );
        let beat = h.agent.heartbeat("x");
        assert!(beat.engine_down, "reported to the schedulers");
        assert_eq!(beat.memory_mb_reserved, 0, "the reservation is released");
        // Known down: refused without trying to create anything.
        let creates = h.engine.count("create");
        assert!(matches!(
            h.agent
                .run(&ticket_with(&echo, b"{}"), Bytes::from_static(b"{}"))
                .await,
            Err(RunError::EngineUnavailable(_))
        ));
        assert_eq!(h.engine.count("create"), creates);
        // The engine is back: the next run finds out and runs.
        h.engine.set_down(false);
        let result = run(&h, &echo, "1").await;
        assert_eq!(result.status, RunStatus::Succeeded);
        assert!(!h.agent.heartbeat("x").engine_down);
        // The heartbeat's probe also clears it.
        h.engine.set_down(true);
        h.agent.refresh_images().await;
        assert!(h.agent.heartbeat("x").engine_down);
        h.engine.set_down(false);
        h.agent.refresh_images().await;
        assert!(!h.agent.heartbeat("x").engine_down);
    }

    #[tokio::test]
    async fn losing_the_engine_mid_run_is_a_platform_error_not_the_functions() {
        let h = harness(1024);
        let mut sleep = spec("sleep");
        sleep.timeout_s = 5;
        let ticket = ticket_with(&sleep, b"{}");
        let running = h.agent.run(&ticket, Bytes::from_static(b"{}"));
        let stop_engine = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            h.engine.set_down(true);
        };
        let (result, ()) = tokio::join!(running, stop_engine);
        let result = result.expect("run accepted");
        assert_eq!(result.status, RunStatus::Error, "{result:?}");
        assert!(!result.retry_safe, "the function was running");
        let error = result.error.expect("error");
        assert_eq!(error.error_type, "Platform.EngineUnavailable", "{error:?}");
        assert!(h.agent.heartbeat("x").engine_down);
    }

    #[tokio::test]
    async fn a_warm_container_that_died_while_idle_is_replaced() {
        let h = harness(1024);
        let echo = spec("echo");
        assert!(run(&h, &echo, "1").await.cold);
        // Killed behind the agent's back while idle (SIGKILL: exit 137, like an engine stop).
        h.engine.remove("c0").await.expect("remove");
        tokio::time::sleep(Duration::from_millis(50)).await;
        let result = run(&h, &echo, "2").await;
        assert_eq!(
            (result.status, result.response.as_deref()),
            (RunStatus::Succeeded, Some("2")),
            "{result:?}"
        );
        assert!(result.cold, "a fresh container");
        assert_eq!(h.engine.count("create"), 2);
        assert_eq!(h.agent.heartbeat("x").memory_mb_reserved, 128);
    }

    #[tokio::test]
    async fn own_images_outside_the_nodes_allowlist_are_refused() {
        let h = harness(1024);
        for image in [
            "operator/tools:1",
            "frescoevil/x:1",
            "docker.io/fresco/python3:dev",
        ] {
            let mut other = spec("echo");
            other.image = image.into();
            match h
                .agent
                .run(&ticket_with(&other, b"{}"), Bytes::from_static(b"{}"))
                .await
            {
                Err(RunError::Spec(message)) => {
                    assert!(message.contains("is not allowed on this node"), "{message}")
                }
                other => panic!("{image}: {other:?}"),
            }
        }
        assert_eq!(h.engine.count("create"), 0, "nothing ran");
        assert!(run(&h, &spec("echo"), "{}").await.status == RunStatus::Succeeded);
    }

    fn retired(seq: i64, spec: &FunctionSpec, below: Option<i64>) -> RetiredKey {
        RetiredKey {
            seq,
            function_id: spec.function_id,
            version: Some(spec.version),
            below_revision: below,
        }
    }

    #[tokio::test]
    async fn retired_versions_never_serve_again() {
        let h = harness(1024);
        let echo = spec("echo");
        run(&h, &echo, "1").await;
        assert_eq!(h.engine.live(), 1);
        assert_eq!(h.agent.retire(&[retired(1, &echo, None)]), 1);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            h.engine.live(),
            0,
            "the idle container is destroyed at once"
        );
        assert_eq!(h.agent.heartbeat("x").memory_mb_reserved, 0);
        // A stale ticket for the retired version runs once, in a container that then goes.
        let stale = run(&h, &echo, "2").await;
        assert!(stale.cold && stale.status == RunStatus::Succeeded);
        assert_eq!(h.engine.live(), 0);
        assert!(h.agent.heartbeat("x").warm.is_empty());

        // Version 0 changed: containers of older revisions go, the new revision stays warm.
        let mut latest = spec("echo");
        latest.version = 0;
        latest.revision = 3;
        run(&h, &latest, "3").await;
        let mut newer = latest.clone();
        newer.revision = 7;
        assert_eq!(h.agent.retire(&[retired(7, &latest, Some(7))]), 1);
        assert!(run(&h, &newer, "4").await.cold);
        assert!(
            !run(&h, &newer, "5").await.cold,
            "the new revision is reused"
        );
        assert!(
            run(&h, &latest, "6").await.cold,
            "a stale revision is never reused"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(h.engine.live(), 1);
        // Idle ones are frozen: each is thawed before the engine is told to remove it.
        assert!(h.host.count("freeze") >= 1, "{:?}", h.host.calls());
        assert_eq!(
            h.engine.count("frozen-at-remove"),
            0,
            "{:?}",
            h.engine.calls()
        );
    }

    #[tokio::test]
    async fn busy_containers_of_a_retired_version_go_when_their_invocation_ends() {
        let h = Arc::new(harness(1024));
        let slow = spec("slow");
        let running = {
            let h = Arc::clone(&h);
            let slow = slow.clone();
            tokio::spawn(async move { run(&h, &slow, "\"x\"").await })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(h.agent.retire(&[retired(1, &slow, None)]), 0, "none idle");
        let result = running.await.expect("run");
        assert_eq!(result.response.as_deref(), Some("\"x\""));
        assert_eq!(h.engine.live(), 0, "gone before the caller hears");
        assert_eq!(h.agent.heartbeat("x").memory_mb_reserved, 0);
        // Never frozen: it went as soon as its invocation ended (its CPU time billed).
        assert_eq!(
            (h.host.count("freeze"), h.host.count("thaw")),
            (0, 0),
            "{:?}",
            h.host.calls()
        );
        assert_eq!(h.engine.count("frozen-at-remove"), 0);
        assert!(result.cpu_ms.is_some());
    }

    #[tokio::test]
    async fn heartbeat_replies_are_applied_and_acknowledged() {
        let h = harness(1024);
        let (a, b) = (spec("echo"), spec("log"));
        run(&h, &a, "1").await;
        run(&h, &b, "2").await;
        assert_eq!(h.agent.heartbeat("x").retired_seq, None);
        h.agent.apply_retirements(&HeartbeatReply {
            retired_seq: 12,
            retire: vec![retired(12, &a, None)],
            reset: false,
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(h.engine.live(), 1);
        assert_eq!(h.agent.heartbeat("x").retired_seq, Some(12));
        // Missed retirements: every idle container goes.
        h.agent.apply_retirements(&HeartbeatReply {
            retired_seq: 40,
            retire: Vec::new(),
            reset: true,
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(h.engine.live(), 0);
        assert_eq!(h.agent.heartbeat("x").retired_seq, Some(40));
        assert_eq!(h.host.count("freeze"), 2);
        assert_eq!(
            h.engine.count("frozen-at-remove"),
            0,
            "{:?}",
            h.engine.calls()
        );
    }

    #[tokio::test]
    async fn losing_the_engine_thaws_frozen_sandboxes_and_they_are_replaced() {
        let h = harness(1024);
        let echo = spec("echo");
        assert!(run(&h, &echo, "1").await.cold);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(h.host.state(1000), Some(FreezerState::Frozen));
        // dockerd stops: it stops its containers itself, which a frozen process would
        // ignore (cgroup v1 holds back even SIGKILL); the agent thaws it at once.
        h.engine.set_down(true);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(h.host.state(1000), Some(FreezerState::Thawed));
        // Nothing ran: a refusal the caller may take elsewhere, not the function's failure.
        assert!(matches!(
            h.agent
                .run(&ticket_with(&echo, b"2"), Bytes::from_static(b"2"))
                .await,
            Err(RunError::EngineUnavailable(_))
        ));
        h.engine.set_down(false);
        let result = run(&h, &echo, "3").await;
        assert_eq!(
            (result.status, result.response.as_deref(), result.cold),
            (RunStatus::Succeeded, Some("3"), true),
            "{result:?}"
        );
        assert_eq!(h.host.count("thaw-failed"), 0);
        assert_eq!(h.agent.heartbeat("x").memory_mb_reserved, 128);
    }

    #[tokio::test]
    async fn reconcile_idle_expiry_and_shutdown_remove_containers() {
        let h = harness(1024);
        h.engine.leftovers.lock().expect("lock").extend([
            (
                "old1".to_owned(),
                [(LABEL_AGENT.to_owned(), "unit".to_owned())].into(),
            ),
            (
                "foreign".to_owned(),
                [(LABEL_AGENT.to_owned(), "other".to_owned())].into(),
            ),
        ]);
        assert_eq!(h.agent.reconcile().await.expect("reconcile"), 1);
        assert!(h.engine.calls().contains(&"remove old1".to_owned()));
        assert!(!h.engine.calls().contains(&"remove foreign".to_owned()));

        run(&h, &spec("echo"), "{}").await;
        assert_eq!(h.engine.live(), 1);
        tokio::time::sleep(Duration::from_millis(30)).await;
        // idle_timeout = 0: the idle container expires at once.
        assert_eq!(h.agent.expire_idle(), 1);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(h.engine.live(), 0);

        run(&h, &spec("echo"), "{}").await;
        tokio::time::sleep(Duration::from_millis(30)).await;
        h.agent.shutdown().await;
        assert_eq!(h.engine.live(), 0);
        // Both were frozen while idle, and thawed before their removal.
        assert_eq!(h.host.count("freeze"), 2);
        assert_eq!(
            h.engine.count("frozen-at-remove"),
            0,
            "{:?}",
            h.engine.calls()
        );
        assert!(matches!(
            h.agent.run(&ticket(&spec("echo")), Bytes::new()).await,
            Err(RunError::ShuttingDown)
        ));
    }

    #[tokio::test]
    async fn idle_sandboxes_are_frozen_and_all_their_cpu_time_is_billed() {
        let h = harness(1024);
        let echo = spec("echo");
        let first = run(&h, &echo, "1").await;
        assert!(first.cold);
        // The fake host adds 7 ms of CPU time each time a running sandbox is frozen (as if a
        // process left behind ran until then).
        assert_eq!(first.cpu_ms, Some(0.0));
        // Frozen off the invocation path, once idle (freeze_delay_ms = 0 here).
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(h.host.calls(), vec!["cgroups 1000", "freeze 1000"]);
        assert_eq!(
            h.host.state(1000),
            Some(FreezerState::Frozen),
            "idle = frozen"
        );
        let second = run(&h, &echo, "2").await;
        assert!(!second.cold);
        assert_eq!(
            second.cpu_ms,
            Some(7.0),
            "what ran after the last invocation was billed, before the freeze, is billed now"
        );
        assert_eq!(
            h.host.calls()[2..],
            ["thaw 1000".to_owned()],
            "thawed to run"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(h.host.state(1000), Some(FreezerState::Frozen));
        assert_eq!(h.host.count("freeze"), 2);
        // Removing a frozen sandbox thaws it first.
        assert_eq!(h.agent.expire_idle(), 1);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(h.host.calls().last().map(String::as_str), Some("thaw 1000"));
        assert_eq!(h.engine.live(), 0);
    }

    #[tokio::test]
    async fn back_to_back_invocations_pay_no_freeze_and_thaw() {
        let h = harness_with(1024, "freeze_delay_ms = 300\n");
        let echo = spec("echo");
        for i in 0..5 {
            let result = run(&h, &echo, &i.to_string()).await;
            assert_eq!(result.cold, i == 0);
            assert!(result.cpu_ms.is_some());
        }
        assert_eq!(
            h.host.calls(),
            vec!["cgroups 1000"],
            "no cgroup write between back-to-back invocations"
        );
        assert_eq!(h.host.state(1000), Some(FreezerState::Thawed));
        // Idle past the delay: frozen; the next invocation thaws it.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(h.host.state(1000), Some(FreezerState::Frozen));
        assert!(!run(&h, &echo, "again").await.cold);
        assert_eq!(
            h.host.calls(),
            vec!["cgroups 1000", "freeze 1000", "thaw 1000"]
        );
    }

    #[tokio::test]
    async fn a_slow_freeze_is_waited_for_and_a_stuck_one_destroys_the_sandbox() {
        let h = harness(1024);
        h.host.freezing_polls.store(40, Ordering::SeqCst);
        let echo = spec("echo");
        run(&h, &echo, "1").await;
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(h.host.state(1000), Some(FreezerState::Frozen));
        assert_eq!(h.engine.live(), 1, "kept once frozen");
        assert!(!run(&h, &echo, "2").await.cold, "and reused");
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(h.host.state(1000), Some(FreezerState::Frozen));

        // A sandbox that stays FREEZING past freeze_timeout_ms (200 ms here) is removed.
        let stuck = spec("echo");
        h.host.freezing_polls.store(u32::MAX, Ordering::SeqCst);
        let started = Instant::now();
        let result = run(&h, &stuck, "3").await;
        assert_eq!(
            result.status,
            RunStatus::Succeeded,
            "the invocation itself is fine"
        );
        assert!(result.cpu_ms.is_some(), "billed up to the freeze");
        assert!(
            started.elapsed() < Duration::from_millis(200),
            "the confirmation is not on the invocation path"
        );
        assert_eq!(h.engine.live(), 2);
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(h.engine.live(), 1, "the unfrozen sandbox is removed");
        assert_eq!(
            h.agent.heartbeat("x").memory_mb_reserved,
            256,
            "until it is replaced"
        );
        h.host.freezing_polls.store(0, Ordering::SeqCst);
        let again = run(&h, &stuck, "4").await;
        assert_eq!(again.status, RunStatus::Succeeded);
        assert!(again.cold, "replaced by a new sandbox");
        assert_eq!(h.agent.metrics.freeze_failures.load(Ordering::Relaxed), 1);
        assert_eq!(h.agent.heartbeat("x").memory_mb_reserved, 256);
    }

    #[tokio::test]
    async fn a_freeze_confirmed_after_a_new_thaw_is_moot() {
        let h = harness(1024);
        // Each freeze takes a while to confirm; the next invocation comes first.
        h.host.freezing_polls.store(u32::MAX, Ordering::SeqCst);
        let echo = spec("echo");
        for i in 0..3 {
            let result = run(&h, &echo, &i.to_string()).await;
            assert_eq!(result.status, RunStatus::Succeeded);
            assert_eq!(result.cold, i == 0);
        }
        // The last one thaws it before that freeze is given up on, and freezes normally.
        h.host.freezing_polls.store(0, Ordering::SeqCst);
        assert!(!run(&h, &echo, "3").await.cold);
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(h.engine.live(), 1, "thawed meanwhile: not given up on");
        assert_eq!(h.host.state(1000), Some(FreezerState::Frozen));
        assert!(!run(&h, &echo, "again").await.cold);
    }

    #[tokio::test]
    async fn a_sandbox_that_cannot_thaw_is_replaced() {
        let h = harness(1024);
        let echo = spec("echo");
        run(&h, &echo, "1").await;
        tokio::time::sleep(Duration::from_millis(30)).await;
        h.host.fail_thaw.store(true, Ordering::SeqCst);
        let result = run(&h, &echo, r#""again""#).await;
        assert_eq!(result.status, RunStatus::Succeeded);
        assert_eq!(result.response.as_deref(), Some(r#""again""#));
        assert!(result.cold, "ran in a new sandbox");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(h.engine.count("create"), 2);
        assert_eq!(h.engine.live(), 1, "{:?}", h.engine.calls());
        assert_eq!(h.agent.heartbeat("x").memory_mb_reserved, 128);
    }

    #[tokio::test]
    async fn every_sandbox_has_its_own_uid_until_it_is_gone() {
        let h = harness(4096);
        let mut sleepy = spec("sleep");
        sleepy.timeout_s = 1;
        let tickets: Vec<String> = (0..3).map(|_| ticket_with(&sleepy, b"{}")).collect();
        let runs = tickets
            .iter()
            .map(|t| h.agent.run(t, Bytes::from_static(b"{}")));
        let users = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            h.agent.uids_in_use()
        };
        let (results, in_use) = tokio::join!(futures_util::future::join_all(runs), users);
        assert_eq!(in_use, 3);
        for result in results {
            assert_eq!(result.expect("run").status, RunStatus::Timeout);
        }
        assert_eq!(
            h.agent.uids_in_use(),
            0,
            "timed-out sandboxes give theirs back"
        );
        let first = run(&h, &spec("echo"), "1").await;
        assert_eq!(first.status, RunStatus::Succeeded);
        let user = h.engine.last_spec().expect("spec").user;
        let uid: u32 = user
            .split(':')
            .next()
            .expect("uid")
            .parse()
            .expect("number");
        assert!((200_000..265_536).contains(&uid), "{user}");
        assert_eq!(user, format!("{uid}:{uid}"));
    }

    #[tokio::test]
    async fn network_functions_get_their_link_and_lose_it_with_the_container() {
        let h = harness(1024);
        assert_eq!(
            run(&h, &spec("echo"), "1").await.status,
            RunStatus::Succeeded
        );
        assert_eq!(h.host.count("connect"), 0, "no network, no link");
        let mut net = spec("echo");
        net.network = true;
        let result = run(&h, &net, "1").await;
        assert_eq!(result.status, RunStatus::Succeeded);
        assert_eq!(h.host.count("connect"), 1);
        h.agent.shutdown().await;
        assert_eq!(h.host.count("disconnect"), 1);
        assert_eq!(h.host.calls().last().map(String::as_str), Some("reset"));

        let h = harness(1024);
        h.host.fail_network.store(true, Ordering::SeqCst);
        let result = run(&h, &net, "1").await;
        assert_eq!(result.status, RunStatus::Error);
        let error = result.error.expect("error");
        assert_eq!(error.error_type, "Platform.ContainerStartFailed");
        assert!(
            error.error_message.contains("fake failure"),
            "{}",
            error.error_message
        );
        assert_eq!(h.engine.live(), 0, "{:?}", h.engine.calls());
        assert_eq!(h.agent.uids_in_use(), 0);
        assert_eq!(h.agent.heartbeat("x").memory_mb_reserved, 0);
    }

    #[tokio::test]
    async fn a_flood_of_output_is_cut_off_and_recorded() {
        let h = harness_with(1024, "log_max_bytes = 100\noutput_max_bytes = 65536\n");
        let flood = spec("flood");
        let small = run(&h, &flood, "2048").await;
        assert_eq!(small.status, RunStatus::Succeeded);
        assert!(small.output_truncated, "past log_max_bytes");
        assert!(
            small.logs.contains("more bytes of output dropped"),
            "{}",
            small.logs
        );
        assert_eq!(h.engine.live(), 1, "still reusable");

        let big = run(&h, &flood, "10485760").await;
        assert_eq!(big.status, RunStatus::Failed);
        assert!(big.output_truncated);
        let error = big.error.expect("error");
        assert_eq!(error.error_type, "Function.OutputLimitExceeded");
        let output = big.logs.split("REPORT RequestId: ").next().unwrap_or("");
        assert!(output.len() < 300, "{}", output.len());
        assert!(
            big.logs.contains("output limit of 65536 bytes"),
            "{}",
            big.logs
        );
        assert_eq!(h.engine.live(), 0, "the flooding container is killed");
        assert_eq!(h.agent.metrics.output_cutoffs.load(Ordering::Relaxed), 1);
        assert_eq!(
            run(&h, &spec("echo"), "1").await.status,
            RunStatus::Succeeded
        );
    }

    fn grant(spec: &FunctionSpec, agent: &str, slots: u32, ttl_s: i64) -> String {
        TicketSigner::from_pem(PRIVATE.as_bytes(), 30)
            .expect("signer")
            .sign_grant(agent, Uuid::new_v4(), slots, ttl_s, spec.clone())
            .expect("sign")
    }

    #[tokio::test]
    async fn grants_run_any_event_within_their_slots_each_execution_once() {
        let h = harness(4096);
        let echo = spec("echo");
        let token = grant(&echo, "unit", 2, 10);
        let id = Uuid::new_v4();
        let result = h
            .agent
            .run_granted(&token, id, Bytes::from_static(br#"{"n":1}"#))
            .await
            .expect("run under the grant");
        assert_eq!(result.status, RunStatus::Succeeded);
        assert_eq!(result.execution_id, id);
        // Another event under the same grant: the signature is not checked again, the
        // container is warm.
        let again = h
            .agent
            .run_granted(&token, Uuid::new_v4(), Bytes::from_static(br#"{"n":2}"#))
            .await
            .expect("second run");
        assert_eq!(again.status, RunStatus::Succeeded);
        assert!(!again.cold);
        // The same execution id again: refused, nothing runs.
        // (Every run thaws its sandbox first.)
        let thaws = h.host.count("thaw");
        assert!(matches!(
            h.agent
                .run_granted(&token, id, Bytes::from_static(b"{}"))
                .await,
            Err(RunError::Ticket(TicketError::Replayed))
        ));
        assert_eq!(h.host.count("thaw"), thaws, "nothing ran");

        // At most `slots` at once: a third concurrent run under a two-slot grant is refused.
        let mut sleep = spec("sleep");
        sleep.timeout_s = 1;
        let token = grant(&sleep, "unit", 2, 10);
        let runs = (0..3).map(|_| {
            h.agent
                .run_granted(&token, Uuid::new_v4(), Bytes::from_static(b"{}"))
        });
        let results = futures_util::future::join_all(runs).await;
        let taken = results
            .iter()
            .filter(|r| matches!(r, Err(RunError::SlotsTaken(_))))
            .count();
        assert_eq!(taken, 1, "{results:?}");
        // The slots came back when the runs ended.
        let result = h
            .agent
            .run_granted(&token, Uuid::new_v4(), Bytes::from_static(b"{}"))
            .await
            .expect("a slot is free again");
        assert_eq!(result.status, RunStatus::Timeout);
    }

    #[tokio::test]
    async fn expired_foreign_or_forged_grants_and_grants_as_tickets_are_refused() {
        let h = harness(4096);
        let echo = spec("echo");
        let refused = |r: Result<RunResult, RunError>| matches!(r, Err(RunError::Ticket(_)));
        // Expired beyond the leeway.
        let expired = grant(&echo, "unit", 1, -60);
        assert!(refused(
            h.agent
                .run_granted(&expired, Uuid::new_v4(), Bytes::new())
                .await
        ));
        // For another agent.
        let other = grant(&echo, "other", 1, 10);
        assert!(refused(
            h.agent
                .run_granted(&other, Uuid::new_v4(), Bytes::new())
                .await
        ));
        // Signed with another key.
        let forged = TicketSigner::from_pem(OTHER_PRIVATE.as_bytes(), 30)
            .expect("signer")
            .sign_grant("unit", Uuid::new_v4(), 1, 10, echo.clone())
            .expect("sign");
        assert!(refused(
            h.agent
                .run_granted(&forged, Uuid::new_v4(), Bytes::new())
                .await
        ));
        // A grant is not a ticket, and a ticket is not a grant.
        let valid = grant(&echo, "unit", 1, 10);
        assert!(refused(h.agent.run(&valid, Bytes::new()).await));
        assert!(refused(
            h.agent
                .run_granted(&ticket(&echo), Uuid::new_v4(), Bytes::new())
                .await
        ));
        assert_eq!(h.engine.count("create"), 0, "{:?}", h.engine.calls());
    }
}
