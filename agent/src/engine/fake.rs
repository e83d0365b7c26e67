//! A recording fake of the container engine for unit tests. "Starting" a container runs a
//! scripted Lambda runtime (chosen by the container's `_HANDLER`) against the real Runtime
//! API socket, so the agent's logic above the engine is exercised end to end without Docker.
//!
//! Scripts: `echo` answers the event; `slow` answers it after 300 ms; `fail` reports an
//! error; `sleep` never answers;
//! `oom` / `crash` stop the container (OOM-killed / exit 1); `init_error` reports an init
//! failure; `wrong_id` first answers with a wrong request id, then with the right one and the
//! status it got; `log` prints a line before answering; `flood` prints `event` bytes before
//! answering.
//!
//! `FakeHost` is the recording fake of `host::HostControl`: freezer states and CPU counters in
//! memory, with knobs for the failures the agent must survive.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::host::{CgroupHandle, FreezerState, HostControl, HostError};
use super::net::NetworkLease;
use super::{ContainerEngine, ContainerSpec, EngineError, ExitInfo};

struct FakeContainer {
    spec: ContainerSpec,
    exit: watch::Sender<Option<ExitInfo>>,
    runtime: Option<JoinHandle<()>>,
}

#[derive(Default)]
pub struct FakeEngine {
    calls: Mutex<Vec<String>>,
    containers: Mutex<HashMap<String, FakeContainer>>,
    /// Containers "left from a previous run": id → labels.
    pub leftovers: Mutex<HashMap<String, BTreeMap<String, String>>>,
    next_id: AtomicU64,
    /// The "daemon" is down: every call fails with `Unavailable`, waits end in errors.
    down: AtomicBool,
    down_tx: Mutex<Option<watch::Sender<bool>>>,
    /// The host whose freezer the containers are in: a removal of a container whose cgroup is
    /// not thawed is recorded as `frozen-at-remove <id>` too (a real engine cannot kill it).
    host: Mutex<Option<Arc<FakeHost>>>,
}

impl FakeEngine {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every engine call so far, e.g. `create fresco-…`, `start c1`, `remove c1`.
    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn count(&self, verb: &str) -> usize {
        self.calls()
            .iter()
            .filter(|c| c.split(' ').next() == Some(verb))
            .count()
    }

    /// The spec of the container created last.
    pub fn last_spec(&self) -> Option<ContainerSpec> {
        let containers = self.containers.lock().unwrap_or_else(|e| e.into_inner());
        let mut all: Vec<(&String, &FakeContainer)> = containers.iter().collect();
        all.sort_by_key(|(id, _)| id[1..].parse::<u64>().unwrap_or(0));
        all.last().map(|(_, c)| c.spec.clone())
    }

    /// Containers that exist now.
    pub fn live(&self) -> usize {
        self.containers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// Stops or restarts the "daemon". Stopping it ends every `wait` with an error, as a
    /// dropped connection to dockerd does; containers are not touched.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
        self.down_watch().send_replace(down);
    }

    /// Checks every removal against `host`'s freezer (see `frozen-at-remove`).
    pub fn watch_freezer(&self, host: Arc<FakeHost>) {
        *self.host.lock().unwrap_or_else(|e| e.into_inner()) = Some(host);
    }

    fn down_watch(&self) -> watch::Sender<bool> {
        self.down_tx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(|| watch::channel(false).0)
            .clone()
    }

    fn check_up(&self) -> Result<(), EngineError> {
        if self.down.load(Ordering::SeqCst) {
            Err(EngineError::Unavailable(
                "connection refused (fake engine is down)".to_owned(),
            ))
        } else {
            Ok(())
        }
    }

    fn record(&self, call: String) {
        self.calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(call);
    }
}

impl ContainerEngine for FakeEngine {
    async fn create(&self, spec: &ContainerSpec) -> Result<String, EngineError> {
        self.record(format!("create {}", spec.name));
        self.check_up()?;
        if spec.image == "missing" {
            return Err(EngineError::NoSuchImage(spec.image.clone()));
        }
        let id = format!("c{}", self.next_id.fetch_add(1, Ordering::SeqCst));
        self.containers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                id.clone(),
                FakeContainer {
                    spec: spec.clone(),
                    exit: watch::channel(None).0,
                    runtime: None,
                },
            );
        Ok(id)
    }

    async fn start(&self, id: &str) -> Result<(), EngineError> {
        self.record(format!("start {id}"));
        self.check_up()?;
        let mut containers = self.containers.lock().unwrap_or_else(|e| e.into_inner());
        let container = containers
            .get_mut(id)
            .ok_or_else(|| EngineError::NoSuchContainer(id.to_owned()))?;
        let env: HashMap<String, String> = container
            .spec
            .env
            .iter()
            .filter_map(|e| e.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let dir = container
            .spec
            .mounts
            .iter()
            .find(|m| m.container == crate::container::SOCKET_DIR_IN_CONTAINER)
            .map(|m| m.host.clone())
            .ok_or_else(|| EngineError::Docker("no socket mount".to_owned()))?;
        // What the shim does first: make the output FIFO its stdout and stderr.
        let output = tokio::net::unix::pipe::OpenOptions::new()
            .open_sender(dir.join(crate::container::OUTPUT_NAME))
            .map_err(|e| EngineError::Docker(format!("cannot open the output fifo: {e}")))?;
        let script = env.get("_HANDLER").cloned().unwrap_or_default();
        let exit = container.exit.clone();
        let socket = dir.join(crate::container::SOCKET_NAME);
        container.runtime = Some(tokio::spawn(fake_runtime(script, socket, exit, output)));
        Ok(())
    }

    async fn pid(&self, id: &str) -> Result<u32, EngineError> {
        self.check_up()?;
        if !self
            .containers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(id)
        {
            return Err(EngineError::NoSuchContainer(id.to_owned()));
        }
        id[1..]
            .parse::<u32>()
            .map(|n| 1000 + n)
            .map_err(|_| EngineError::Docker(format!("bad fake id {id}")))
    }

    async fn wait(&self, id: &str) -> Result<ExitInfo, EngineError> {
        self.check_up()?;
        let mut down = self.down_watch().subscribe();
        let mut rx = {
            let containers = self.containers.lock().unwrap_or_else(|e| e.into_inner());
            containers
                .get(id)
                .ok_or_else(|| EngineError::NoSuchContainer(id.to_owned()))?
                .exit
                .subscribe()
        };
        tokio::select! {
            exit = rx.wait_for(Option::is_some) => {
                let exit = exit.map_err(|_| EngineError::NoSuchContainer(id.to_owned()))?;
                (*exit).ok_or_else(|| EngineError::NoSuchContainer(id.to_owned()))
            }
            _ = down.wait_for(|d| *d) => {
                Err(EngineError::Unavailable("connection reset (fake engine stopped)".to_owned()))
            }
        }
    }

    async fn remove(&self, id: &str) -> Result<(), EngineError> {
        self.record(format!("remove {id}"));
        self.check_up()?;
        let host = self.host.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let (Some(host), Some(Ok(n))) = (host, id.get(1..).map(str::parse::<u32>)) {
            if host
                .state(1000 + n)
                .is_some_and(|state| state != FreezerState::Thawed)
            {
                self.record(format!("frozen-at-remove {id}"));
            }
        }
        if let Some(container) = self
            .containers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id)
        {
            if let Some(runtime) = container.runtime {
                runtime.abort();
            }
            container.exit.send_if_modified(|e| {
                if e.is_none() {
                    *e = Some(ExitInfo {
                        exit_code: 137,
                        oom_killed: false,
                    });
                    true
                } else {
                    false
                }
            });
        }
        self.leftovers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
        Ok(())
    }

    async fn list_labelled(&self, label: &str, value: &str) -> Result<Vec<String>, EngineError> {
        let mut ids: Vec<String> = self
            .containers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(_, c)| c.spec.labels.get(label).map(String::as_str) == Some(value))
            .map(|(id, _)| id.clone())
            .collect();
        ids.extend(
            self.leftovers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .filter(|(_, labels)| labels.get(label).map(String::as_str) == Some(value))
                .map(|(id, _)| id.clone()),
        );
        Ok(ids)
    }

    async fn images(&self) -> Result<Vec<String>, EngineError> {
        self.check_up()?;
        Ok(vec!["fresco/python3:dev".to_owned()])
    }

    async fn ping(&self) -> Result<(), EngineError> {
        self.check_up()
    }

    fn peak_memory(&self, _id: &str) -> Option<u64> {
        Some(42 * 1024 * 1024)
    }
}

/// A minimal HTTP/1.1 exchange over the container's socket (one request per connection).
pub async fn http(
    socket: &Path,
    method: &str,
    path: &str,
    body: &[u8],
) -> std::io::Result<(u16, HashMap<String, String>, Vec<u8>)> {
    let mut stream = tokio::net::UnixStream::connect(socket).await?;
    let head = format!(
        "{method} /2018-06-01/runtime{path} HTTP/1.1\r\nHost: runtime\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no header end"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("bad status line"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok((status, headers, raw[split + 4..].to_vec()))
}

async fn fake_runtime(
    script: String,
    socket: PathBuf,
    exit: watch::Sender<Option<ExitInfo>>,
    mut logs: tokio::net::unix::pipe::Sender,
) {
    let stop = |code: i64, oom: bool| {
        exit.send_replace(Some(ExitInfo {
            exit_code: code,
            oom_killed: oom,
        }));
    };
    // What the shim does before it starts the runtime.
    match http(&socket, "GET", "/fresco/start", b"").await {
        Ok((200, _, _)) => {}
        _ => {
            stop(70, false);
            return;
        }
    }
    if script == "init_error" {
        let body =
            br#"{"errorType":"Runtime.ImportModuleError","errorMessage":"no module named main"}"#;
        let _ = http(&socket, "POST", "/init/error", body).await;
        stop(1, false);
        return;
    }
    loop {
        let Ok((200, headers, event)) = http(&socket, "GET", "/invocation/next", b"").await else {
            stop(2, false);
            return;
        };
        let id = headers
            .get("lambda-runtime-aws-request-id")
            .cloned()
            .unwrap_or_default();
        let respond = |body: Vec<u8>| {
            let socket = socket.clone();
            let id = id.clone();
            async move {
                http(
                    &socket,
                    "POST",
                    &format!("/invocation/{id}/response"),
                    &body,
                )
                .await
            }
        };
        match script.as_str() {
            "echo" => {
                let _ = respond(event).await;
            }
            "log" => {
                let line = format!("log line {}\n", String::from_utf8_lossy(&event));
                let _ = logs.write_all(line.as_bytes()).await;
                let _ = respond(b"\"logged\"".to_vec()).await;
            }
            "flood" => {
                let bytes: usize = String::from_utf8_lossy(&event).trim().parse().unwrap_or(0);
                for _ in 0..bytes / 1024 {
                    if logs.write_all(&[b'x'; 1024]).await.is_err() {
                        break;
                    }
                }
                let _ = respond(b"\"flooded\"".to_vec()).await;
            }
            "fail" => {
                let body = br#"{"errorType":"ValueError","errorMessage":"boom","stackTrace":["  File \"main.py\", line 2"]}"#;
                let _ = http(&socket, "POST", &format!("/invocation/{id}/error"), body).await;
            }
            "wrong_id" => {
                let wrong = http(&socket, "POST", "/invocation/not-the-id/response", b"1")
                    .await
                    .map(|r| r.0)
                    .unwrap_or(0);
                let _ = respond(format!("{{\"wrong_id_status\":{wrong}}}").into_bytes()).await;
            }
            "headers" => {
                let body = serde_json::json!({
                    "deadline": headers.get("lambda-runtime-deadline-ms"),
                    "arn": headers.get("lambda-runtime-invoked-function-arn"),
                    "trace": headers.get("lambda-runtime-trace-id"),
                });
                let _ = respond(body.to_string().into_bytes()).await;
            }
            "sleep" => std::future::pending::<()>().await,
            "slow" => {
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                let _ = respond(event).await;
            }
            "oom" => {
                stop(137, true);
                return;
            }
            _ => {
                stop(1, false);
                return;
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct FakeCgroup {
    state: FreezerState,
    cpu_ns: u64,
    /// Polls left before a FREEZING cgroup reports FROZEN.
    freezing_left: u32,
}

/// A recording `HostControl`: freezer and CPU counters in memory. Each freeze of a thawed
/// cgroup adds `cpu_step_ns` to its CPU time, as if it had run meanwhile.
pub struct FakeHost {
    calls: Mutex<Vec<String>>,
    cgroups: Mutex<HashMap<PathBuf, FakeCgroup>>,
    pub cpu_step_ns: AtomicU64,
    /// Polls a freeze stays FREEZING (u32::MAX: it never completes).
    pub freezing_polls: AtomicU32,
    pub fail_thaw: AtomicBool,
    pub fail_network: AtomicBool,
    next_address: AtomicU32,
}

impl Default for FakeHost {
    fn default() -> Self {
        Self {
            calls: Mutex::default(),
            cgroups: Mutex::default(),
            cpu_step_ns: AtomicU64::new(7_000_000),
            freezing_polls: AtomicU32::new(0),
            fail_thaw: AtomicBool::new(false),
            fail_network: AtomicBool::new(false),
            next_address: AtomicU32::new(1),
        }
    }
}

impl FakeHost {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every call so far, e.g. `freeze 1000`, `thaw 1000`, `connect 1000`.
    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn count(&self, verb: &str) -> usize {
        self.calls()
            .iter()
            .filter(|c| c.split(' ').next() == Some(verb))
            .count()
    }

    /// The freezer state of the container with fake pid `pid`.
    pub fn state(&self, pid: u32) -> Option<FreezerState> {
        self.cgroups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&Self::dir(pid))
            .map(|c| c.state)
    }

    fn dir(pid: u32) -> PathBuf {
        PathBuf::from(format!("/fake/{pid}"))
    }

    fn record(&self, call: String) {
        self.calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(call);
    }

    fn with<T>(
        &self,
        cgroup: &CgroupHandle,
        f: impl FnOnce(&mut FakeCgroup) -> T,
    ) -> Result<T, HostError> {
        let CgroupHandle::V2 { dir } = cgroup else {
            return Err(HostError::NoCgroup {
                controller: "fake",
                pid: 0,
            });
        };
        let mut cgroups = self.cgroups.lock().unwrap_or_else(|e| e.into_inner());
        let entry = cgroups.get_mut(dir).ok_or(HostError::NoCgroup {
            controller: "fake",
            pid: 0,
        })?;
        Ok(f(entry))
    }

    fn pid_of(cgroup: &CgroupHandle) -> String {
        match cgroup {
            CgroupHandle::V2 { dir } => dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            CgroupHandle::V1 { .. } => String::new(),
        }
    }
}

impl HostControl for FakeHost {
    fn cgroups(&self, pid: u32) -> Result<CgroupHandle, HostError> {
        self.record(format!("cgroups {pid}"));
        self.cgroups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(Self::dir(pid))
            .or_insert(FakeCgroup {
                state: FreezerState::Thawed,
                cpu_ns: 0,
                freezing_left: 0,
            });
        Ok(CgroupHandle::V2 {
            dir: Self::dir(pid),
        })
    }

    fn set_frozen(&self, cgroup: &CgroupHandle, frozen: bool) -> Result<(), HostError> {
        let pid = Self::pid_of(cgroup);
        if !frozen && self.fail_thaw.load(Ordering::SeqCst) {
            self.record(format!("thaw-failed {pid}"));
            return Err(HostError::NoCgroup {
                controller: "freezer",
                pid: 0,
            });
        }
        let step = self.cpu_step_ns.load(Ordering::SeqCst);
        let polls = self.freezing_polls.load(Ordering::SeqCst);
        let recorded = self.with(cgroup, |c| {
            if frozen {
                if c.state == FreezerState::Thawed {
                    c.cpu_ns += step;
                    c.freezing_left = polls;
                    c.state = FreezerState::Freezing;
                    return true;
                }
                false
            } else {
                c.state = FreezerState::Thawed;
                true
            }
        })?;
        if recorded {
            self.record(format!("{} {pid}", if frozen { "freeze" } else { "thaw" }));
        }
        Ok(())
    }

    fn freezer_state(&self, cgroup: &CgroupHandle) -> Result<FreezerState, HostError> {
        self.with(cgroup, |c| {
            if c.state == FreezerState::Freezing {
                if c.freezing_left == 0 {
                    c.state = FreezerState::Frozen;
                } else if c.freezing_left != u32::MAX {
                    c.freezing_left -= 1;
                }
            }
            c.state
        })
    }

    fn cpu_time_ns(&self, cgroup: &CgroupHandle) -> Result<u64, HostError> {
        self.with(cgroup, |c| c.cpu_ns)
    }

    fn connect_network(&self, pid: u32, tag: &str) -> Result<NetworkLease, HostError> {
        self.record(format!("connect {pid}"));
        if self.fail_network.load(Ordering::SeqCst) {
            return Err(HostError::NetworkUnavailable("fake failure".to_owned()));
        }
        let n = self.next_address.fetch_add(1, Ordering::SeqCst);
        Ok(NetworkLease {
            interface: format!("ffake{}", &tag[..8.min(tag.len())]),
            address: std::net::Ipv4Addr::from(0xc612_0000 + n),
        })
    }

    fn disconnect_network(&self, lease: &NetworkLease) {
        self.record(format!("disconnect {}", lease.interface));
    }

    fn runtime_listener(&self, _pid: u32) -> Result<std::net::TcpListener, HostError> {
        // No namespace to enter: any free loopback port of the host stands in (not recorded:
        // the tests assert the freezer's calls).
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").map_err(|source| HostError::Io {
                what: "bind",
                path: "127.0.0.1:0".to_owned(),
                source,
            })?;
        listener
            .set_nonblocking(true)
            .map_err(|source| HostError::Io {
                what: "configure",
                path: "127.0.0.1:0".to_owned(),
                source,
            })?;
        Ok(listener)
    }

    fn reset_network(&self) -> Result<(), HostError> {
        self.record("reset".to_owned());
        Ok(())
    }
}
