//! One function container: the hardened engine settings built from a `FunctionSpec`, its
//! per-container directory and Runtime API socket, its output, and its lifecycle: started
//! (network attached, then the shim may start the runtime), frozen whenever it is idle, thawed
//! to run, destroyed.
//!
//! Every container runs as its own uid (and gid) from `[agent] sandbox_uid_base`, a range that
//! maps to no host user; its socket directory is owned by that uid with mode 0700, so no other
//! sandbox and no host user but root can reach its Runtime API.

use std::collections::{BTreeMap, HashSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use fresco_common::wire::FunctionSpec;
use tokio::net::UnixListener;
use tokio::task::JoinHandle;

use crate::code::CodePin;
use crate::config::Settings;
use crate::engine::host::{CgroupHandle, FreezerState, HostControl, HostError};
use crate::engine::net::NetworkLease;
use crate::engine::{BindMount, ContainerEngine, ContainerSpec, EngineError};
use crate::logs::{LogBuffer, OutputPipe};
use crate::runtime_api::{PrewarmedWait, RuntimeChannel};

/// Where things live inside every function container.
pub const TASK_ROOT: &str = "/var/task";
pub const SHIM_IN_CONTAINER: &str = "/opt/fresco/shim";
pub const SOCKET_DIR_IN_CONTAINER: &str = "/run/fresco";
pub const SOCKET_NAME: &str = "runtime.sock";
/// The FIFO the shim makes the stdout and stderr of everything in the container (see `logs`).
pub const OUTPUT_NAME: &str = "output";
/// The Runtime API address the agent serves inside the container's network namespace.
pub const RUNTIME_API_ADDR: &str = "127.0.0.1:9001";

pub const LABEL_PROJECT: &str = "fresco.project";
pub const LABEL_FUNCTION: &str = "fresco.function";
pub const LABEL_VERSION: &str = "fresco.version";
pub const LABEL_AGENT: &str = "fresco.agent";
/// On a pre-warmed sandbox: the runtime kind it was started for (it has no function yet).
pub const LABEL_PREWARM: &str = "fresco.prewarm";

#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("cannot prepare container directory {path}: {source}")]
    Directory {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("container did not start within {0} s")]
    StartTimeout(u64),
    #[error("no free uid left in the sandbox range")]
    NoUid,
    #[error("cannot prepare the sandbox: {0}")]
    Host(#[from] HostError),
    #[error("cannot give the sandbox the function's code in {path}: {source}")]
    Code {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Thaw(#[from] ThawError),
}

/// A pre-warmed sandbox's runtime: what is started before any function is known.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PrewarmSpec {
    /// `python` (the managed runtime boots and waits) or `provided` (the shim waits).
    pub runtime_kind: String,
    pub image: String,
    /// Its limits are those of a function of this size (pools are kept per memory size).
    pub memory_mb: u64,
}

impl PrewarmSpec {
    /// The function spec a pre-warmed sandbox is built from: no tenant, no code, no
    /// environment, no network; only its image, kind and memory size.
    fn as_function(&self) -> FunctionSpec {
        FunctionSpec {
            project_id: String::new(),
            function_id: uuid::Uuid::nil(),
            function_name: String::new(),
            version: 0,
            image: self.image.clone(),
            runtime_kind: self.runtime_kind.clone(),
            handler: String::new(),
            memory_mb: i32::try_from(self.memory_mb).unwrap_or(i32::MAX),
            timeout_s: 1,
            environment: BTreeMap::new(),
            code_sha256: None,
            network: false,
            revision: 0,
        }
    }

    fn wait(&self) -> PrewarmedWait {
        if self.runtime_kind == "provided" {
            PrewarmedWait::Start
        } else {
            PrewarmedWait::Function
        }
    }
}

/// The engine settings of a pre-warmed sandbox: those of a function of its size (every
/// security default: no network, read-only root, all limits) with the platform's environment
/// only, its empty per-sandbox code directory at `/var/task`, labelled as pre-warmed.
pub fn prewarm_container_spec(
    settings: &Settings,
    prewarm: &PrewarmSpec,
    name: &str,
    task_dir: &Path,
    socket_dir: &Path,
    uid: u32,
) -> ContainerSpec {
    let function = prewarm.as_function();
    let mut spec = container_spec(settings, &function, name, Some(task_dir), socket_dir, uid);
    let runtime = if prewarm.runtime_kind == "provided" {
        "provided"
    } else {
        "managed"
    };
    spec.env = vec![
        format!("AWS_LAMBDA_RUNTIME_API={RUNTIME_API_ADDR}"),
        format!("LAMBDA_TASK_ROOT={TASK_ROOT}"),
        "LAMBDA_RUNTIME_DIR=/var/runtime".to_owned(),
        format!("FRESCO_RUNTIME={runtime}"),
    ];
    if prewarm.wait() == PrewarmedWait::Function {
        spec.env.push("FRESCO_PREWARM=1".to_owned());
    }
    spec.labels = BTreeMap::from([
        (LABEL_AGENT.to_owned(), settings.agent_id.clone()),
        (LABEL_PREWARM.to_owned(), prewarm.runtime_kind.clone()),
    ]);
    spec
}

/// Fills a pre-warmed sandbox's code directory `to` with the unpacked package at `from`:
/// hard links (the cache's files are never written again), a copy where the two are on
/// different file systems. Symbolic links are made again as they are, never followed.
pub fn fill_task_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let (source, target) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type()?;
        if kind.is_dir() {
            std::fs::create_dir(&target)?;
            let mode = std::fs::symlink_metadata(&source)?.permissions();
            fill_task_dir(&source, &target)?;
            std::fs::set_permissions(&target, mode)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&source)?, &target)?;
        } else if kind.is_file() && std::fs::hard_link(&source, &target).is_err() {
            std::fs::copy(&source, &target)?;
        }
    }
    Ok(())
}

/// Why a sandbox could not be frozen (it must then be destroyed).
#[derive(Debug, thiserror::Error)]
pub enum FreezeError {
    #[error(transparent)]
    Host(#[from] HostError),
    #[error("sandbox still freezing after {0:?}")]
    Timeout(Duration),
    #[error("sandbox cgroups are unknown")]
    NoCgroups,
}

/// Why an idle sandbox cannot run an invocation (it must then be replaced).
#[derive(Debug, thiserror::Error)]
pub enum ThawError {
    #[error(transparent)]
    Host(#[from] HostError),
    #[error("sandbox is no longer usable (it stopped, or never finished freezing)")]
    Unusable,
}

/// Where a sandbox is in its freeze/thaw cycle.
#[derive(Debug, Default)]
struct Lifecycle {
    /// Counts thaws: a freeze confirmation that sees another epoch is moot.
    epoch: u64,
    /// Given up on (it did not freeze in time): never thawed again.
    broken: bool,
}

/// The uids of one agent's sandboxes: each live container holds one; handed out round-robin
/// so a freed uid is reused as late as possible.
struct UidRange {
    base: u32,
    count: u32,
    next: u32,
    used: HashSet<u32>,
}

impl UidRange {
    fn take(&mut self) -> Option<u32> {
        for _ in 0..self.count {
            let uid = self.base + self.next;
            self.next = (self.next + 1) % self.count;
            if self.used.insert(uid) {
                return Some(uid);
            }
        }
        None
    }

    fn give_back(&mut self, uid: u32) {
        self.used.remove(&uid);
    }
}

/// What the containers of one agent share on the host: its controls and the uid range.
pub struct Sandboxes {
    pub host: Arc<dyn HostControl>,
    uids: Mutex<UidRange>,
}

impl Sandboxes {
    pub fn new(host: Arc<dyn HostControl>, uid_base: u32, uid_count: u32) -> Self {
        Self {
            host,
            uids: Mutex::new(UidRange {
                base: uid_base,
                count: uid_count.max(1),
                next: 0,
                used: HashSet::new(),
            }),
        }
    }

    fn uids(&self) -> std::sync::MutexGuard<'_, UidRange> {
        self.uids.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Uids held by live containers.
    pub fn uids_in_use(&self) -> usize {
        self.uids().used.len()
    }
}

/// The function's version as Lambda names it.
pub fn version_name(version: i32) -> String {
    if version <= 0 {
        "$LATEST".to_owned()
    } else {
        version.to_string()
    }
}

/// `arn:fresco:function:<project>:<name>:<version>`.
pub fn function_arn(spec: &FunctionSpec) -> String {
    format!(
        "arn:fresco:function:{}:{}:{}",
        spec.project_id,
        spec.function_name,
        version_name(spec.version)
    )
}

/// Whether a tenant may set this environment variable: the platform's own names are reserved
/// and anything Docker could misread is refused.
pub fn tenant_env_allowed(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 256
        && !name.contains(['=', '\0'])
        && !name.starts_with("AWS_LAMBDA_")
        && !name.starts_with("FRESCO_")
        && !matches!(name, "_HANDLER" | "LAMBDA_TASK_ROOT" | "LAMBDA_RUNTIME_DIR")
}

/// The container's environment: the tenant's variables, then the platform's, which win.
pub fn build_env(spec: &FunctionSpec, log_stream: &str) -> Vec<String> {
    let mut env: BTreeMap<String, String> = spec
        .environment
        .iter()
        .filter(|(k, v)| tenant_env_allowed(k) && !v.contains('\0'))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let runtime = if spec.runtime_kind == "provided" {
        "provided"
    } else {
        "managed"
    };
    for (k, v) in [
        ("AWS_LAMBDA_RUNTIME_API", RUNTIME_API_ADDR.to_owned()),
        ("AWS_LAMBDA_FUNCTION_NAME", spec.function_name.clone()),
        ("AWS_LAMBDA_FUNCTION_VERSION", version_name(spec.version)),
        (
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
            spec.memory_mb.to_string(),
        ),
        (
            "AWS_LAMBDA_LOG_GROUP_NAME",
            format!("/fresco/{}/{}", spec.project_id, spec.function_name),
        ),
        ("AWS_LAMBDA_LOG_STREAM_NAME", log_stream.to_owned()),
        ("_HANDLER", spec.handler.clone()),
        ("LAMBDA_TASK_ROOT", TASK_ROOT.to_owned()),
        ("LAMBDA_RUNTIME_DIR", "/var/runtime".to_owned()),
        ("FRESCO_RUNTIME", runtime.to_owned()),
    ] {
        env.insert(k.to_owned(), v);
    }
    env.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// CPU shares proportional to memory: 1024 (one full share) per 1769 MB, as Lambda sizes vCPUs.
pub fn cpu_shares(memory_mb: u64) -> i64 {
    let shares = memory_mb.saturating_mul(1024) / 1769;
    i64::try_from(shares).unwrap_or(262_144).clamp(2, 262_144)
}

/// CFS period of every sandbox, in microseconds.
pub const CPU_PERIOD_US: i64 = 100_000;

/// The hard CPU limit of a sandbox as a CFS quota per `CPU_PERIOD_US`: one CPU per
/// `memory_mb_per_cpu` MB of memory, never below `min_millicores`, never above the machine.
pub fn cpu_quota_us(memory_mb: u64, memory_mb_per_cpu: u64, min_millicores: u64, cpus: i32) -> i64 {
    let period = CPU_PERIOD_US as u64;
    let proportional = memory_mb.saturating_mul(period) / memory_mb_per_cpu.max(1);
    let floor = min_millicores.saturating_mul(period) / 1000;
    let machine = u64::try_from(cpus.max(1))
        .unwrap_or(1)
        .saturating_mul(period);
    // The engine refuses a quota below 1 ms.
    let quota = proportional.max(floor).min(machine).max(1000);
    i64::try_from(quota).unwrap_or(i64::MAX)
}

/// The engine settings of a container for `spec`, running as `uid` (and gid `uid`).
pub fn container_spec(
    settings: &Settings,
    spec: &FunctionSpec,
    name: &str,
    code_dir: Option<&Path>,
    socket_dir: &Path,
    uid: u32,
) -> ContainerSpec {
    let memory_mb = u64::try_from(spec.memory_mb.max(1)).unwrap_or(1);
    let mut mounts = vec![
        BindMount {
            host: settings.shim_path.clone(),
            container: SHIM_IN_CONTAINER.to_owned(),
            read_only: true,
        },
        // Read-only: connecting to a socket needs no write access to the mount, and the
        // function cannot drop files into the host directory.
        BindMount {
            host: socket_dir.to_path_buf(),
            container: SOCKET_DIR_IN_CONTAINER.to_owned(),
            read_only: true,
        },
    ];
    if let Some(code) = code_dir {
        mounts.push(BindMount {
            host: code.to_path_buf(),
            container: TASK_ROOT.to_owned(),
            read_only: true,
        });
    }
    let labels = BTreeMap::from([
        (LABEL_PROJECT.to_owned(), spec.project_id.clone()),
        (LABEL_FUNCTION.to_owned(), spec.function_id.to_string()),
        (LABEL_VERSION.to_owned(), spec.version.to_string()),
        (LABEL_AGENT.to_owned(), settings.agent_id.clone()),
    ]);
    ContainerSpec {
        name: name.to_owned(),
        image: spec.image.clone(),
        entrypoint: vec![SHIM_IN_CONTAINER.to_owned()],
        env: build_env(spec, name),
        user: format!("{uid}:{uid}"),
        labels,
        network: spec.network,
        memory_bytes: i64::try_from(memory_mb * 1024 * 1024).unwrap_or(i64::MAX),
        cpu_shares: cpu_shares(memory_mb),
        cpu_quota_us: cpu_quota_us(
            memory_mb,
            settings.memory_mb_per_cpu,
            settings.cpu_min_millicores,
            settings.cpus,
        ),
        cpu_period_us: CPU_PERIOD_US,
        pids_limit: settings.pids_limit,
        nofile_limit: settings.nofile_limit,
        nproc_limit: settings.nproc_limit,
        tmpfs_mb: settings.tmpfs_mb,
        mounts,
    }
}

/// A started container and what the agent keeps beside it.
pub struct Container {
    pub id: String,
    pub name: String,
    /// The uid (and gid) it runs as, its own among the live containers.
    pub uid: u32,
    pub channel: Arc<RuntimeChannel>,
    pub logs: Arc<LogBuffer>,
    output: Arc<OutputPipe>,
    dir: PathBuf,
    /// Keeps the code package in the node's cache for the container's whole life (a
    /// pre-warmed sandbox: from its claim).
    code: Mutex<Option<CodePin>>,
    /// A pre-warmed sandbox's own code directory (mounted at `/var/task`), filled at claim.
    task_dir: Option<PathBuf>,
    /// What a pre-warmed sandbox was started as; `None` for one started for its function.
    pub prewarm: Option<PrewarmSpec>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    sandboxes: Arc<Sandboxes>,
    cgroups: OnceLock<CgroupHandle>,
    network: Mutex<Option<NetworkLease>>,
    /// Whether the freezer holds it (or was asked to).
    frozen: AtomicBool,
    lifecycle: Mutex<Lifecycle>,
    /// Its CPU time when its last invocation was billed (0: since it started), in nanoseconds.
    cpu_base_ns: AtomicU64,
    /// Whether it has run an invocation yet (the first one is the cold one).
    pub used: AtomicBool,
    destroyed: AtomicBool,
}

impl Container {
    /// Creates and starts a container for `spec`, with its socket directory, output pipe and
    /// Runtime API (in its network namespace) ready before the shim starts the runtime, its network attached (when the
    /// function has network) before the shim may start the runtime.
    pub async fn start<E: ContainerEngine>(
        engine: &Arc<E>,
        sandboxes: &Arc<Sandboxes>,
        settings: &Settings,
        spec: &FunctionSpec,
        code: Option<CodePin>,
    ) -> Result<Arc<Container>, ContainerError> {
        let code_dir = code.as_ref().map(|c| c.path().to_path_buf());
        Self::start_sandbox(
            engine,
            sandboxes,
            settings,
            RuntimeChannel::new(),
            code,
            None,
            spec.network,
            |name, dir, uid| container_spec(settings, spec, name, code_dir.as_deref(), dir, uid),
        )
        .await
    }

    /// Creates and starts a pre-warmed sandbox: the runtime of `prewarm` booted as far as it
    /// goes without a function, waiting (see `runtime_api`) for `claim`.
    pub async fn start_prewarmed<E: ContainerEngine>(
        engine: &Arc<E>,
        sandboxes: &Arc<Sandboxes>,
        settings: &Settings,
        prewarm: &PrewarmSpec,
    ) -> Result<Arc<Container>, ContainerError> {
        Self::start_sandbox(
            engine,
            sandboxes,
            settings,
            RuntimeChannel::prewarmed(prewarm.wait()),
            None,
            Some(prewarm.clone()),
            false,
            |name, dir, uid| {
                prewarm_container_spec(settings, prewarm, name, &task_dir_of(dir), dir, uid)
            },
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn start_sandbox<E: ContainerEngine>(
        engine: &Arc<E>,
        sandboxes: &Arc<Sandboxes>,
        settings: &Settings,
        channel: RuntimeChannel,
        code: Option<CodePin>,
        prewarm: Option<PrewarmSpec>,
        network: bool,
        make_spec: impl FnOnce(&str, &Path, u32) -> ContainerSpec,
    ) -> Result<Arc<Container>, ContainerError> {
        let name = format!("fresco-{}", uuid::Uuid::new_v4().simple());
        let dir = settings
            .containers_dir()
            .join(&name["fresco-".len()..][..16]);
        let task_dir = prewarm.as_ref().map(|_| task_dir_of(&dir));
        let uid = sandboxes.uids().take().ok_or(ContainerError::NoUid)?;
        let cleanup = |sandboxes: &Sandboxes| {
            let _ = std::fs::remove_dir_all(&dir);
            if let Some(task) = &task_dir {
                let _ = std::fs::remove_dir_all(task);
            }
            sandboxes.uids().give_back(uid);
        };
        let prepared = prepare_socket_dir(&dir, uid, uid).and_then(|prepared| {
            if let Some(task) = &task_dir {
                prepare_task_dir(task)?;
            }
            Ok(prepared)
        });
        let (listener, output) = match prepared {
            Ok(prepared) => prepared,
            Err(e) => {
                cleanup(sandboxes);
                return Err(e);
            }
        };
        let channel = Arc::new(channel);
        let server = channel.serve(listener);
        let container_spec = make_spec(&name, &dir, uid);
        let id = match engine.create(&container_spec).await {
            Ok(id) => id,
            Err(e) => {
                channel.close();
                server.abort();
                cleanup(sandboxes);
                return Err(e.into());
            }
        };
        let container = Arc::new(Container {
            id,
            name,
            uid,
            channel,
            logs: Arc::new(LogBuffer::with_limits(
                settings.log_max_bytes,
                settings.output_max_bytes,
                settings.container_output_max_bytes,
            )),
            output: Arc::new(output),
            dir,
            code: Mutex::new(code),
            task_dir,
            prewarm,
            tasks: Mutex::new(vec![server]),
            sandboxes: Arc::clone(sandboxes),
            cgroups: OnceLock::new(),
            network: Mutex::new(None),
            frozen: AtomicBool::new(false),
            lifecycle: Mutex::new(Lifecycle::default()),
            cpu_base_ns: AtomicU64::new(0),
            used: AtomicBool::new(false),
            destroyed: AtomicBool::new(false),
        });
        let prepared = async {
            container.start_reading_output();
            engine.start(&container.id).await?;
            container.watch_exit(engine);
            container.prepare_sandbox(engine, network).await
        };
        match tokio::time::timeout(settings.start_timeout, prepared).await {
            Ok(Ok(())) => {
                container.channel.set_ready();
                Ok(container)
            }
            Ok(Err(e)) => {
                container.destroy(engine).await;
                Err(e)
            }
            Err(_) => {
                container.destroy(engine).await;
                Err(ContainerError::StartTimeout(
                    settings.start_timeout.as_secs(),
                ))
            }
        }
    }

    /// Gives a pre-warmed sandbox to the function of `env` (its environment, see
    /// `build_env`): its code goes into the sandbox's own `/var/task` (`code`, kept in the
    /// node's cache from now on), the sandbox is thawed with its CPU time counted from here,
    /// and its runtime is told the function. From now on it belongs to that function only.
    pub async fn claim(
        &self,
        code: Option<CodePin>,
        env: Vec<String>,
    ) -> Result<(), ContainerError> {
        if let (Some(pin), Some(task)) = (&code, &self.task_dir) {
            let (from, to) = (pin.path().to_path_buf(), task.clone());
            tokio::task::spawn_blocking(move || fill_task_dir(&from, &to))
                .await
                .map_err(std::io::Error::other)
                .and_then(|filled| filled)
                .map_err(|source| ContainerError::Code {
                    path: task.display().to_string(),
                    source,
                })?;
        }
        *self.code.lock().unwrap_or_else(|e| e.into_inner()) = code;
        self.begin_output();
        if let Some(cgroups) = self.cgroups.get() {
            if let Ok(base) = self.sandboxes.host.cpu_time_ns(cgroups) {
                self.cpu_base_ns.store(base, Ordering::SeqCst);
            }
        }
        self.thaw()?;
        self.channel.specialize(env);
        Ok(())
    }

    /// Empties the output pipe as output arrives, so a function never blocks on a full pipe;
    /// a container that passes its output limit is told to its channel (the service kills it
    /// when the invocation ends with that).
    fn start_reading_output(&self) {
        let (output, logs, channel) = (
            Arc::clone(&self.output),
            Arc::clone(&self.logs),
            Arc::clone(&self.channel),
        );
        let pump = tokio::spawn(async move {
            // Past its output limit a container is being killed: its output stays unread (a
            // flooder blocks on the full pipe meanwhile).
            while !output.ended() && logs.exceeded().is_none() {
                if let Some(limit) = output.read_when_readable(&logs).await {
                    channel.output_limit_passed(limit);
                }
            }
        });
        self.tasks().push(pump);
    }

    /// Reads the output the container wrote so far into its log buffer: called when the
    /// function answered, everything it wrote before is there.
    pub fn read_output(&self) {
        if let Some(limit) = self.output.read_available(&self.logs) {
            self.channel.output_limit_passed(limit);
        }
    }

    /// Starts a new invocation's output: what the container wrote while idle is dropped.
    pub fn begin_output(&self) {
        self.read_output();
        self.logs.begin();
    }

    /// Watches for the container to stop: its last output is read, then its channel told.
    fn watch_exit<E: ContainerEngine>(self: &Arc<Self>, engine: &Arc<E>) {
        let (watch_engine, id, channel, this) = (
            Arc::clone(engine),
            self.id.clone(),
            Arc::clone(&self.channel),
            Arc::downgrade(self),
        );
        let (output, logs) = (Arc::clone(&self.output), Arc::clone(&self.logs));
        let watcher = tokio::spawn(async move {
            match watch_engine.wait(&id).await {
                Ok(exit) => {
                    // Every process of the container is gone: the pipe holds all it wrote.
                    if let Some(limit) = output.read_available(&logs) {
                        channel.output_limit_passed(limit);
                    }
                    logs.close();
                    channel.container_exited(exit);
                }
                Err(e) => {
                    // Removing a container ends its wait too: only other failures are news.
                    if !channel.is_closed() {
                        log::warn!("lost track of container {id}: {e}");
                    }
                    // Not the function's doing: its engine failed (e.g. dockerd stopped).
                    channel.engine_lost(e.to_string());
                    if let Some(container) = this.upgrade() {
                        container.thaw_for_engine();
                    }
                }
            }
        });
        self.tasks().push(watcher);
    }

    /// Finds the container's cgroups, binds its Runtime API in its network namespace and, for
    /// a function with network, gives it its link.
    async fn prepare_sandbox<E: ContainerEngine>(
        &self,
        engine: &Arc<E>,
        network: bool,
    ) -> Result<(), ContainerError> {
        let pid = engine.pid(&self.id).await?;
        let host = Arc::clone(&self.sandboxes.host);
        let cgroups = host.cgroups(pid)?;
        let _ = self.cgroups.set(cgroups);
        let binder = Arc::clone(&host);
        let listener = tokio::task::spawn_blocking(move || binder.runtime_listener(pid))
            .await
            .map_err(|e| {
                HostError::NetworkUnavailable(format!("runtime api set-up task failed: {e}"))
            })??;
        let listener = tokio::net::TcpListener::from_std(listener).map_err(|source| {
            ContainerError::Directory {
                path: format!("{RUNTIME_API_ADDR} in the sandbox"),
                source,
            }
        })?;
        let server = self.channel.serve(listener);
        self.tasks().push(server);
        if network {
            let tag = self.name["fresco-".len()..].to_owned();
            let lease = tokio::task::spawn_blocking(move || host.connect_network(pid, &tag))
                .await
                .map_err(|e| {
                    HostError::NetworkUnavailable(format!("network set-up task failed: {e}"))
                })??;
            log::debug!(
                "container {} has address {} on {}",
                self.name,
                lease.address,
                lease.interface
            );
            *self.network() = Some(lease);
        }
        Ok(())
    }

    fn tasks(&self) -> std::sync::MutexGuard<'_, Vec<JoinHandle<()>>> {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn network(&self) -> std::sync::MutexGuard<'_, Option<NetworkLease>> {
        self.network.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The sandbox's address, when it has network.
    pub fn address(&self) -> Option<std::net::Ipv4Addr> {
        self.network().as_ref().map(|lease| lease.address)
    }

    /// CPU time used since the last invocation was billed (a new container: since it
    /// started), in ms; what follows is the next invocation's. Frozen in between, a sandbox
    /// uses none; what processes left behind use before it freezes is the next invocation's.
    pub fn take_cpu_ms(&self) -> Option<f64> {
        let cgroups = self.cgroups.get()?;
        match self.sandboxes.host.cpu_time_ns(cgroups) {
            Ok(now) => {
                let used = now.saturating_sub(self.cpu_base_ns.swap(now, Ordering::SeqCst));
                Some(used as f64 / 1_000_000.0)
            }
            Err(e) => {
                // A container that stopped has lost its cgroup: nothing to bill after that.
                log::debug!("cannot read the cpu time of {}: {e}", self.name);
                None
            }
        }
    }

    fn lifecycle(&self) -> std::sync::MutexGuard<'_, Lifecycle> {
        self.lifecycle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The epoch of its current (or last) use: `freeze_if_idle` with it is moot once the
    /// sandbox is taken again.
    pub fn epoch(&self) -> u64 {
        self.lifecycle().epoch
    }

    /// Freezes the sandbox (cgroup freezer) unless it was taken again since `epoch`: from
    /// this call on none of its tasks runs user code again until thawed, each stopping the
    /// moment it would (a running one at once, a sleeping one when it wakes). True when it
    /// froze it (confirm with `confirm_frozen`). On error the sandbox may still run: give it
    /// up and destroy it.
    pub fn freeze_if_idle(&self, epoch: u64) -> Result<bool, FreezeError> {
        let cgroups = self.cgroups.get().ok_or(FreezeError::NoCgroups)?;
        let life = self.lifecycle();
        if life.epoch != epoch || life.broken || self.destroyed.load(Ordering::SeqCst) {
            return Ok(false);
        }
        self.frozen.store(true, Ordering::SeqCst);
        self.sandboxes.host.set_frozen(cgroups, true)?;
        Ok(true)
    }

    /// Waits, at most `limit`, until the freezer reports every task stopped (FROZEN, not
    /// FREEZING); also done when the sandbox was thawed again meanwhile (another epoch).
    pub async fn confirm_frozen(&self, epoch: u64, limit: Duration) -> Result<(), FreezeError> {
        let cgroups = self.cgroups.get().ok_or(FreezeError::NoCgroups)?;
        wait_frozen(self.sandboxes.host.as_ref(), cgroups, limit, || {
            self.lifecycle().epoch != epoch
        })
        .await
    }

    /// Gives up on a sandbox that did not freeze in `epoch`: it is never thawed again. False
    /// when it was thawed meanwhile (an invocation holds it: nothing to give up).
    pub fn give_up(&self, epoch: u64) -> bool {
        let mut life = self.lifecycle();
        if life.epoch != epoch {
            return false;
        }
        life.broken = true;
        true
    }

    /// Whether the freezer holds it (or was asked to), for `/metrics`.
    pub fn is_frozen(&self) -> bool {
        self.frozen.load(Ordering::SeqCst)
    }

    /// Takes the sandbox for an invocation: a pending freeze is called off, and a frozen
    /// sandbox is thawed (the only cgroup write on a warm invocation's path, and only after
    /// `[agent] freeze_delay_ms` of idleness). A sandbox given up on, or whose container
    /// stopped, is refused.
    pub fn thaw(&self) -> Result<(), ThawError> {
        let mut life = self.lifecycle();
        if life.broken || !self.channel.is_usable() || self.destroyed.load(Ordering::SeqCst) {
            return Err(ThawError::Unusable);
        }
        let Some(cgroups) = self.cgroups.get() else {
            return Err(ThawError::Unusable);
        };
        life.epoch += 1;
        if self.frozen.load(Ordering::SeqCst) {
            self.sandboxes.host.set_frozen(cgroups, false)?;
            self.frozen.store(false, Ordering::SeqCst);
        }
        Ok(())
    }

    /// The engine was lost (it is stopping, or restarting, and stops its containers as it
    /// goes): a frozen sandbox is thawed so its processes can act on the engine's SIGTERM and
    /// SIGKILL (a cgroup v1 freezer holds back even SIGKILL), and it never serves again. Its
    /// CPU time from here on is nobody's: it is not billed.
    fn thaw_for_engine(&self) {
        let mut life = self.lifecycle();
        life.broken = true;
        if self.destroyed.load(Ordering::SeqCst) || !self.frozen.load(Ordering::SeqCst) {
            return;
        }
        if let Some(cgroups) = self.cgroups.get() {
            match self.sandboxes.host.set_frozen(cgroups, false) {
                Ok(()) => self.frozen.store(false, Ordering::SeqCst),
                Err(e) => log::warn!("cannot thaw {} for its engine: {e}", self.name),
            }
        }
    }

    /// Kills and removes the container, its directory and its network, and frees its uid.
    pub async fn destroy<E: ContainerEngine>(&self, engine: &Arc<E>) {
        if self.destroyed.swap(true, Ordering::SeqCst) {
            return;
        }
        self.channel.close();
        // A frozen task cannot act on SIGKILL on every kernel: thaw first.
        if self.frozen.load(Ordering::SeqCst) {
            if let Some(cgroups) = self.cgroups.get() {
                if let Err(e) = self.sandboxes.host.set_frozen(cgroups, false) {
                    log::warn!("cannot thaw {} before removing it: {e}", self.name);
                }
            }
        }
        let removed = engine.remove(&self.id).await;
        if let Err(e) = &removed {
            log::warn!("cannot remove container {}: {e}", self.name);
        }
        for task in self.tasks().drain(..) {
            task.abort();
        }
        let lease = self.network().take();
        if let Some(lease) = lease {
            let host = Arc::clone(&self.sandboxes.host);
            let _ = tokio::task::spawn_blocking(move || host.disconnect_network(&lease)).await;
        }
        for dir in std::iter::once(&self.dir).chain(self.task_dir.as_ref()) {
            if let Err(e) = std::fs::remove_dir_all(dir) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    log::warn!("cannot remove {}: {e}", dir.display());
                }
            }
        }
        // A container that may still exist keeps its uid: no other sandbox may share it.
        if removed.is_ok() {
            self.sandboxes.uids().give_back(self.uid);
        }
    }
}

/// Waits, at most `limit`, until the freezer reports every task of `cgroups` stopped: a v1
/// freezer stays FREEZING until each task woken to freeze has been scheduled once (on a busy
/// node or under the CPU quota, milliseconds). Stops early, successfully, when `moot` says so.
pub async fn wait_frozen(
    host: &dyn HostControl,
    cgroups: &CgroupHandle,
    limit: Duration,
    moot: impl Fn() -> bool,
) -> Result<(), FreezeError> {
    let started = Instant::now();
    let mut polls = 0u32;
    loop {
        if moot() {
            return Ok(());
        }
        match host.freezer_state(cgroups)? {
            FreezerState::Frozen => return Ok(()),
            FreezerState::Freezing | FreezerState::Thawed => {
                if started.elapsed() >= limit {
                    return Err(FreezeError::Timeout(limit));
                }
                polls += 1;
                // The timer's granularity is a millisecond: yield during the first one.
                if started.elapsed() < Duration::from_millis(1) {
                    tokio::task::yield_now().await;
                } else {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                // Writing FROZEN again is how a v1 freezer is told to retry the tasks it
                // could not stop yet.
                if polls.is_multiple_of(64) && !moot() {
                    host.set_frozen(cgroups, true)?;
                }
            }
        }
    }
}

/// Thaws `cgroups`; returns its CPU time (ns) read just before, while it could not move.
pub fn thaw_cgroup(host: &dyn HostControl, cgroups: &CgroupHandle) -> Result<u64, HostError> {
    let base = host.cpu_time_ns(cgroups)?;
    host.set_frozen(cgroups, false)?;
    Ok(base)
}

/// A pre-warmed sandbox's code directory, beside its run directory `dir`.
fn task_dir_of(dir: &Path) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(".task");
    dir.with_file_name(name)
}

/// Creates a pre-warmed sandbox's code directory: owned by the agent (root), mode 0755, so
/// the sandbox reads it (read-only mount) and cannot write it.
fn prepare_task_dir(dir: &Path) -> Result<(), ContainerError> {
    let fail = |source| ContainerError::Directory {
        path: dir.display().to_string(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(fail)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).map_err(fail)
}

/// Creates `dir` (mode 0700, owned by the container user), binds the Runtime API socket in it
/// and creates the output FIFO.
fn prepare_socket_dir(
    dir: &Path,
    uid: u32,
    gid: u32,
) -> Result<(UnixListener, OutputPipe), ContainerError> {
    let fail = |source| ContainerError::Directory {
        path: dir.display().to_string(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(fail)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(fail)?;
    let socket = dir.join(SOCKET_NAME);
    let _ = std::fs::remove_file(&socket);
    let listener = UnixListener::bind(&socket).map_err(fail)?;
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600)).map_err(fail)?;
    // Only root may hand files to another user; an unprivileged agent (tests as non-root)
    // keeps its own ownership and the container user must then match it.
    if is_root() {
        std::os::unix::fs::chown(dir, Some(uid), Some(gid)).map_err(fail)?;
        std::os::unix::fs::chown(&socket, Some(uid), Some(gid)).map_err(fail)?;
    }
    let output =
        OutputPipe::create(&dir.join(OUTPUT_NAME), is_root().then_some(uid)).map_err(fail)?;
    Ok((listener, output))
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fresco_common::conf::RawConfig;

    pub(crate) fn spec() -> FunctionSpec {
        FunctionSpec {
            project_id: "p1".into(),
            function_id: uuid::Uuid::nil(),
            function_name: "hello".into(),
            version: 3,
            image: "fresco/python3:dev".into(),
            runtime_kind: "python".into(),
            handler: "main.handler".into(),
            memory_mb: 128,
            timeout_s: 3,
            environment: BTreeMap::from([
                ("GREETING".to_owned(), "hi".to_owned()),
                ("AWS_LAMBDA_RUNTIME_API".to_owned(), "evil:1".to_owned()),
                ("_HANDLER".to_owned(), "evil.handler".to_owned()),
                ("BAD=NAME".to_owned(), "x".to_owned()),
                ("FRESCO_RUNTIME".to_owned(), "provided".to_owned()),
            ]),
            code_sha256: Some("ab".repeat(32)),
            network: false,
            revision: 0,
        }
    }

    #[test]
    fn tenant_variables_never_override_the_platform() {
        let env = build_env(&spec(), "stream");
        assert!(env.contains(&"GREETING=hi".to_owned()));
        assert!(env.contains(&"AWS_LAMBDA_RUNTIME_API=127.0.0.1:9001".to_owned()));
        assert!(env.contains(&"_HANDLER=main.handler".to_owned()));
        assert!(env.contains(&"FRESCO_RUNTIME=managed".to_owned()));
        assert!(env.contains(&"AWS_LAMBDA_FUNCTION_VERSION=3".to_owned()));
        assert!(env.contains(&"AWS_LAMBDA_FUNCTION_MEMORY_SIZE=128".to_owned()));
        assert!(env.contains(&"LAMBDA_TASK_ROOT=/var/task".to_owned()));
        assert!(!env.iter().any(|e| e.contains("evil")));
        assert!(!env.iter().any(|e| e.starts_with("BAD")));
        assert_eq!(
            env.iter().filter(|e| e.starts_with("_HANDLER=")).count(),
            1,
            "one value per name"
        );
    }

    #[test]
    fn provided_functions_run_their_own_bootstrap_and_latest_is_named_like_lambda() {
        let mut s = spec();
        s.runtime_kind = "provided".into();
        s.version = 0;
        let env = build_env(&s, "x");
        assert!(env.contains(&"FRESCO_RUNTIME=provided".to_owned()));
        assert!(env.contains(&"AWS_LAMBDA_FUNCTION_VERSION=$LATEST".to_owned()));
        assert_eq!(function_arn(&s), "arn:fresco:function:p1:hello:$LATEST");
    }

    #[test]
    fn containers_are_hardened_and_labelled() {
        let raw = RawConfig::parse(
            "[agent]\nagent_id = a1\nmemory_mb = 1024\npids_limit = 32\ntmpfs_mb = 16\n",
            "test",
        )
        .expect("parse");
        let settings = Settings::from_raw(&raw).expect("settings");
        let c = container_spec(
            &settings,
            &spec(),
            "fresco-x",
            Some(Path::new("/code")),
            Path::new("/sock"),
            200_007,
        );
        assert!(!c.network);
        assert_eq!(c.memory_bytes, 128 * 1024 * 1024);
        assert_eq!(c.pids_limit, 32);
        assert_eq!(c.tmpfs_mb, 16);
        assert_eq!(c.user, "200007:200007");
        assert_eq!((c.nofile_limit, c.nproc_limit), (1024, 64));
        assert_eq!(c.cpu_period_us, CPU_PERIOD_US);
        assert_eq!(
            c.cpu_quota_us, 25_000,
            "128 MB gets the 250 millicore floor"
        );
        assert_eq!(c.entrypoint, vec![SHIM_IN_CONTAINER.to_owned()]);
        assert_eq!(c.labels.get(LABEL_AGENT).map(String::as_str), Some("a1"));
        assert_eq!(c.labels.get(LABEL_VERSION).map(String::as_str), Some("3"));
        assert!(
            c.mounts.iter().all(|m| m.read_only),
            "every mount is read-only"
        );
        assert!(c
            .mounts
            .iter()
            .any(|m| m.container == TASK_ROOT && m.host == Path::new("/code")));
        let body = crate::engine::docker::create_body(&c);
        let host = body.host_config.expect("host config");
        assert_eq!(body.network_disabled, Some(true));
        assert_eq!(host.network_mode.as_deref(), Some("none"));
        assert_eq!(host.readonly_rootfs, Some(true));
        assert_eq!(host.cap_drop, Some(vec!["ALL".to_owned()]));
        assert_eq!(
            host.security_opt,
            Some(vec!["no-new-privileges".to_owned()])
        );
        assert_eq!(host.memory, host.memory_swap, "no swap beyond the limit");
        assert!(host.tmpfs.expect("tmpfs")["/tmp"].contains("size=16m"));
        assert_eq!(host.cpu_quota, Some(25_000));
        assert_eq!(host.cpu_period, Some(100_000));
        let ulimits: Vec<(String, i64)> = host
            .ulimits
            .expect("ulimits")
            .into_iter()
            .map(|u| (u.name.unwrap_or_default(), u.hard.unwrap_or_default()))
            .collect();
        assert_eq!(
            ulimits,
            vec![("nofile".to_owned(), 1024), ("nproc".to_owned(), 64)]
        );
    }

    #[test]
    fn cpu_quota_follows_memory_between_the_floor_and_the_machine() {
        // 1 CPU per 1769 MB, floor 250 millicores, 4 CPUs.
        let quota = |mb| cpu_quota_us(mb, 1769, 250, 4);
        assert_eq!(quota(1769), 100_000, "one full CPU");
        assert_eq!(quota(3538), 200_000);
        assert_eq!(quota(128), 25_000, "the floor");
        assert_eq!(quota(100_000), 400_000, "never more than the machine");
        assert_eq!(
            cpu_quota_us(128, 1769, 0, 4),
            7235,
            "no floor: Lambda's share"
        );
        assert_eq!(cpu_quota_us(1, 1769, 0, 4), 1000, "the engine's minimum");
    }

    #[test]
    fn uids_are_distinct_and_reused_late() {
        let mut range = UidRange {
            base: 200_000,
            count: 3,
            next: 0,
            used: HashSet::new(),
        };
        assert_eq!(range.take(), Some(200_000));
        assert_eq!(range.take(), Some(200_001));
        range.give_back(200_000);
        assert_eq!(range.take(), Some(200_002), "the freed uid waits its turn");
        assert_eq!(range.take(), Some(200_000));
        assert_eq!(range.take(), None, "range exhausted");
    }

    #[test]
    fn cpu_shares_follow_memory() {
        assert_eq!(cpu_shares(1769), 1024);
        assert_eq!(cpu_shares(128), 74);
        assert_eq!(cpu_shares(1), 2, "never below the engine's minimum");
        assert!(cpu_shares(3538) > cpu_shares(1769));
    }
}
