//! The agent's core: run one execution named by a ticket, keep warm pools, report capacity.
//! It knows nothing about HTTP; `http` adapts it.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use fresco_common::ticket::{TicketError, TicketVerifier};
use fresco_common::wire::{FunctionError, FunctionSpec, Heartbeat, RunResult, RunStatus};
use uuid::Uuid;

use crate::code::{CodeCache, CodeError};
use crate::config::Settings;
use crate::container::{function_arn, Container, LABEL_AGENT};
use crate::engine::{ContainerEngine, EngineError};
use crate::pool::{Acquired, Pools};
use crate::runtime_api::{DispatchError, Invocation, Outcome};

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
}

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Code(#[from] CodeError),
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
    pub timeouts: std::sync::atomic::AtomicU64,
}

pub struct Agent<E: ContainerEngine> {
    settings: Settings,
    engine: Arc<E>,
    verifier: TicketVerifier,
    code: CodeCache,
    pools: Mutex<Pools<Arc<Container>>>,
    running: AtomicU32,
    images: Mutex<Vec<String>>,
    shutting_down: AtomicBool,
    pub metrics: Metrics,
}

/// Pool key: the public warm key plus everything that must match for a container to be reused
/// (version 0 is mutable, so code and settings are part of the key).
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
    format!("{}#{:016x}", spec.warm_key(), hasher.finish())
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

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

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

/// What ended an invocation, before it becomes a `RunResult`.
enum Ending {
    Outcome(Outcome),
    Timeout,
    Lost,
}

impl<E: ContainerEngine> Agent<E> {
    pub fn new(
        settings: Settings,
        engine: Arc<E>,
        verifier: TicketVerifier,
    ) -> Result<Self, StartupError> {
        let code = CodeCache::new(
            settings.code_dir(),
            &settings.api_url,
            settings.code_max_bytes,
            settings.code_limits,
        )?;
        Ok(Self {
            pools: Mutex::new(Pools::new(settings.memory_mb)),
            settings,
            engine,
            verifier,
            code,
            running: AtomicU32::new(0),
            images: Mutex::new(Vec::new()),
            shutting_down: AtomicBool::new(false),
            metrics: Metrics::default(),
        })
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
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
            self.engine.remove(id).await?;
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
        if self.shutting_down.load(Ordering::SeqCst) {
            return Err(RunError::ShuttingDown);
        }
        let claims = self
            .verifier
            .verify(ticket, Some(&self.settings.agent_id))?;
        let spec = claims.spec;
        validate_spec(&spec)?;
        let memory_mb = u64::try_from(spec.memory_mb).unwrap_or(0);
        let running = self.running.fetch_add(1, Ordering::SeqCst);
        let _running = RunningGuard(&self.running);
        if running >= self.settings.max_running {
            return Err(RunError::NoCapacity(format!(
                "{running} invocations already running"
            )));
        }
        self.metrics.runs.fetch_add(1, Ordering::Relaxed);
        let key = pool_key(&spec);
        let acquired = self.pools().acquire(&key, &spec.warm_key(), memory_mb);
        let started = Instant::now();
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
                match self.start_container(&spec, ticket).await {
                    Ok(container) => {
                        self.metrics.cold_starts.fetch_add(1, Ordering::Relaxed);
                        (container, Some(ms(started.elapsed())))
                    }
                    Err(error) => {
                        self.pools().retire(&key);
                        return Ok(RunResult {
                            execution_id: claims.sub,
                            status: RunStatus::Error,
                            response: None,
                            error: Some(error),
                            duration_ms: ms(started.elapsed()),
                            init_ms: None,
                            max_memory_mb: None,
                            cold: true,
                            logs: String::new(),
                        });
                    }
                }
            }
        };
        let cold = !container.used.swap(true, Ordering::SeqCst);
        Ok(self
            .invoke(&spec, claims.sub, &key, container, cold, init_ms, payload)
            .await)
    }

    async fn start_container(
        &self,
        spec: &FunctionSpec,
        ticket: &str,
    ) -> Result<Arc<Container>, FunctionError> {
        let code_dir = match &spec.code_sha256 {
            Some(sha) => Some(
                self.code
                    .get(&spec.project_id, sha, ticket)
                    .await
                    .map_err(|e| platform_error("CodeUnavailable", e.to_string()))?,
            ),
            None => None,
        };
        Container::start(&self.engine, &self.settings, spec, code_dir.as_deref())
            .await
            .map_err(|e| platform_error("ContainerStartFailed", e.to_string()))
    }

    #[allow(clippy::too_many_arguments)]
    async fn invoke(
        &self,
        spec: &FunctionSpec,
        execution_id: Uuid,
        key: &str,
        container: Arc<Container>,
        cold: bool,
        init_ms: Option<f64>,
        payload: Bytes,
    ) -> RunResult {
        if !cold {
            container.logs.begin();
            let _ = self.engine.take_peak_memory(&container.id);
        }
        let timeout = Duration::from_secs(u64::try_from(spec.timeout_s).unwrap_or(1));
        let invocation = Invocation {
            request_id: execution_id.to_string(),
            payload,
            deadline_ms: now_ms() + u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            function_arn: function_arn(spec),
            trace_id: format!(
                "Root=1-{:08x}-{};Sampled=0",
                now_ms() / 1000,
                &execution_id.simple().to_string()[..24]
            ),
        };
        let started = Instant::now();
        let ending = match container.channel.dispatch(invocation) {
            Ok(rx) => match tokio::time::timeout(timeout, rx).await {
                Ok(Ok(outcome)) => Ending::Outcome(outcome),
                Ok(Err(_)) => Ending::Lost,
                Err(_) => Ending::Timeout,
            },
            Err(DispatchError::Dead(outcome)) => Ending::Outcome(outcome),
            Err(DispatchError::Busy) => Ending::Lost,
        };
        let duration_ms = ms(started.elapsed());
        if !self.settings.log_settle.is_zero() {
            tokio::time::sleep(self.settings.log_settle).await;
        }
        let max_memory_mb = self
            .engine
            .take_peak_memory(&container.id)
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
        };
        result.logs = container.logs.take();
        if reusable && container.channel.is_usable() && !self.shutting_down.load(Ordering::SeqCst) {
            self.pools().release(key, container, Instant::now());
        } else {
            // Killed before answering: gone before the caller hears about it.
            container.destroy(&self.engine).await;
            self.pools().retire(key);
        }
        result
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

    /// Refreshes the list of images present on the node.
    pub async fn refresh_images(&self) {
        match self.engine.images().await {
            Ok(images) => *self.images.lock().unwrap_or_else(|e| e.into_inner()) = images,
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
        }
    }

    /// Stops taking runs and removes every container of this agent.
    pub async fn shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        let idle = self.pools().drain_idle();
        for container in idle {
            container.destroy(&self.engine).await;
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
    }
}

struct RunningGuard<'a>(&'a AtomicU32);

impl Drop for RunningGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
