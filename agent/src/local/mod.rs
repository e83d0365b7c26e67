//! The local emulator (`fresco-agent run-local`, `fresco-agent serve-local`): a developer runs
//! a function on their own machine exactly as an agent runs it, without PostgreSQL, a
//! scheduler, Keystone or tickets.
//!
//! It is an `Agent` built with `Agent::local` (no ticket gate, no key, no control plane): the
//! same hardened container spec, container life (freeze when idle, thaw, reaping), Lambda
//! Runtime API, shim, limits and timeout. Code goes through the agent's own code cache
//! (`Agent::add_local_code`): a `--package` is unpacked by the same unprivileged child as a
//! downloaded one, and a code directory is first packed as a tar.gz (`pack_dir`) so it meets
//! the same rules. The state (runtime sockets, unpacked code) lives in a directory of its own,
//! removed at the end, under an agent id of its own, so a real agent on the same machine is
//! never touched. `manifest` reads a directory of functions (`serve-local`); `http` serves
//! them on loopback with the platform's sync invoke answer (`answer`).

pub mod http;
pub mod manifest;

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fresco_common::conf::RawConfig;
use fresco_common::wire::{FunctionSpec, RunResult, RunStatus};
use uuid::Uuid;

use crate::code::{CodeError, CodePin};
use crate::config::{PrewarmSettings, Settings, SettingsError};
use crate::container::tenant_env_allowed;
use crate::engine::{DockerEngine, EngineError};
use crate::service::{validate_spec, Agent, RunError, StartupError};

/// The project every local function belongs to (a name for the code cache and the spec).
pub const PROJECT: &str = "local";
/// Largest event accepted, as the platform's synchronous limit.
pub const MAX_EVENT_BYTES: usize = 6 * 1024 * 1024;
/// Longest path a unix socket can be bound at (sockaddr_un.sun_path, with its NUL).
const MAX_SOCKET_PATH: usize = 108;
/// A function's memory and timeout when its definition gives none (the platform's defaults).
pub const DEFAULT_MEMORY_MB: i32 = 128;
pub const DEFAULT_TIMEOUT_S: i32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error("the local emulator runs functions as fresco-agent does and needs root (each sandbox gets its own uid, is frozen when idle and gets its runtime socket in its own network namespace): run it with sudo")]
    NotRoot,
    #[error("shim {0} is missing: give --shim-path, FRESCO_SHIM_PATH or [agent] shim_path")]
    NoShim(String),
    #[error("cannot reach the docker engine at {host}: {source}")]
    Engine {
        host: String,
        #[source]
        source: EngineError,
    },
    #[error(transparent)]
    Startup(#[from] StartupError),
    #[error("cannot prepare the state directory {path}: {source}")]
    State {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("code package {path} refused: {source}")]
    Code {
        path: String,
        #[source]
        source: CodeError,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("the event is larger than {0} bytes")]
    EventTooLarge(usize),
    #[error("no function {0:?}")]
    NoSuchFunction(String),
    #[error(transparent)]
    Run(#[from] RunError),
}

/// Where a local function's code is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Code {
    /// A directory, packed as a tar.gz (without the files named in `skip`, relative to it).
    Dir { path: PathBuf, skip: Vec<String> },
    /// A code package (zip or tar.gz), as uploaded to the platform.
    Package(PathBuf),
}

/// A function as the emulator runs it: what the platform's function record would say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalFunction {
    pub name: String,
    pub image: String,
    /// `python` or `provided` (see `runtime_kind_of`).
    pub runtime_kind: String,
    pub handler: String,
    pub memory_mb: i32,
    pub timeout_s: i32,
    pub environment: BTreeMap<String, String>,
    pub code: Code,
}

/// The runtime kind an image's name says (`fresco/python3:dev` → `python`,
/// `fresco/provided:dev` → `provided`), as the platform's runtime records say it.
pub fn runtime_kind_of(image: &str) -> Option<&'static str> {
    let without_digest = image.split('@').next().unwrap_or(image);
    let repository = without_digest.rsplit('/').next().unwrap_or(without_digest);
    let name = repository.split(':').next().unwrap_or(repository);
    if name.starts_with("python") {
        Some("python")
    } else if name.starts_with("provided") {
        Some("provided")
    } else {
        None
    }
}

/// Checks a function's name as the platform does: 1 to 64 letters, digits, `_`, `-`, `.`,
/// starting with a letter or digit.
pub fn check_name(name: &str) -> Result<(), LocalError> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if valid {
        Ok(())
    } else {
        Err(LocalError::Invalid(format!(
            "function name {name:?} must be 1 to 64 characters of letters, digits, '_', '-' and '.', starting with a letter or digit"
        )))
    }
}

/// Parses `K=V` into a name the platform lets a function set and its value.
pub fn parse_env(text: &str) -> Result<(String, String), LocalError> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| LocalError::Invalid(format!("environment {text:?} is not NAME=VALUE")))?;
    check_env_name(name)?;
    Ok((name.to_owned(), value.to_owned()))
}

fn check_env_name(name: &str) -> Result<(), LocalError> {
    if tenant_env_allowed(name) {
        Ok(())
    } else {
        Err(LocalError::Invalid(format!(
            "environment variable {name:?} is reserved by the platform or not a valid name"
        )))
    }
}

/// The event as the platform takes it: JSON (blank means `{}`), at most `MAX_EVENT_BYTES`;
/// returns its text without surrounding white space.
pub fn parse_event(bytes: &[u8]) -> Result<Bytes, LocalError> {
    if bytes.len() > MAX_EVENT_BYTES {
        return Err(LocalError::EventTooLarge(MAX_EVENT_BYTES));
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|e| LocalError::Invalid(format!("the event must be JSON: {e}")))?
        .trim();
    if text.is_empty() {
        return Ok(Bytes::from_static(b"{}"));
    }
    serde_json::from_str::<serde::de::IgnoredAny>(text)
        .map_err(|e| LocalError::Invalid(format!("the event must be JSON: {e}")))?;
    Ok(Bytes::copy_from_slice(text.as_bytes()))
}

/// The address `serve-local` listens on: an IP address and port on loopback, nothing else
/// (the emulator has no authentication: it serves the developer's own machine only).
pub fn loopback_listen(text: &str) -> Result<std::net::SocketAddr, LocalError> {
    let addr: std::net::SocketAddr = text.parse().map_err(|_| {
        LocalError::Invalid(format!(
            "listen address {text:?} is not IP:PORT (such as 127.0.0.1:8080)"
        ))
    })?;
    if !addr.ip().is_loopback() {
        return Err(LocalError::Invalid(format!(
            "serve-local listens on loopback only: {} is not a loopback address",
            addr.ip()
        )));
    }
    Ok(addr)
}

/// A code directory as a tar.gz package: its files, directories and symbolic links (never
/// followed), names relative to it, without `skip`. The package then meets the same rules as
/// an uploaded one.
pub fn pack_dir(dir: &Path, skip: &[String]) -> io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    builder.follow_symlinks(false);
    builder.mode(tar::HeaderMode::Deterministic);
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(dir.join(&relative))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()?;
        entries.sort();
        for name in entries {
            let entry = relative.join(&name);
            if skip.iter().any(|s| Path::new(s) == entry) {
                continue;
            }
            let path = dir.join(&entry);
            let metadata = std::fs::symlink_metadata(&path)?;
            if metadata.is_dir() {
                builder.append_dir(&entry, &path)?;
                pending.push(entry);
            } else {
                builder.append_path_with_name(&path, &entry)?;
            }
        }
    }
    builder.into_inner()?.finish()
}

/// The platform's answer to a sync invocation, as `POST /v1/functions/{f}/invoke` gives it:
/// status 200, the execution's headers, and the function's response or its error.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub execution_id: Uuid,
    /// The execution's status (`x-execution-status`).
    pub status: String,
    pub succeeded: bool,
    /// `x-execution-cold`: `cold`, `prewarmed` or `false`.
    pub cold: &'static str,
    pub duration_ms: f64,
    /// JSON: the response, or the error (`errorType`, `errorMessage`, `stackTrace`).
    pub body: String,
}

/// The status's text, as the wire (and the store) spell it.
fn status_text(status: RunStatus) -> String {
    match serde_json::to_value(status) {
        Ok(serde_json::Value::String(text)) => text,
        _ => format!("{status:?}").to_lowercase(),
    }
}

/// `result` as the platform answers it (with the platform's details: the developer's own).
pub fn answer(result: &RunResult) -> Answer {
    let status = status_text(result.status);
    let succeeded = result.status == RunStatus::Succeeded;
    let body = if succeeded {
        result.response.clone().unwrap_or_else(|| "null".to_owned())
    } else {
        let error = match &result.error {
            Some(error) => serde_json::to_value(error).unwrap_or_default(),
            None => serde_json::json!({
                "errorType": format!("Runtime.{status}"),
                "errorMessage": format!("execution ended with status {status}"),
            }),
        };
        error.to_string()
    };
    Answer {
        execution_id: result.execution_id,
        status,
        succeeded,
        cold: match (result.cold, result.prewarmed) {
            (false, _) => "false",
            (true, true) => "prewarmed",
            (true, false) => "cold",
        },
        duration_ms: result.duration_ms,
        body,
    }
}

/// A loaded function: its spec and the pin that keeps its code in the cache.
struct Loaded {
    spec: FunctionSpec,
    _code: CodePin,
}

/// The emulator: a local agent and the functions it runs.
pub struct Emulator {
    agent: Arc<Agent<DockerEngine>>,
    state: PathBuf,
    functions: HashMap<String, Loaded>,
}

/// What the emulator's agent is built from: the configuration (`[agent]` options such as the
/// sandbox uid range, the unpacking user, the docker host, the shim), the shim if given
/// apart, and where its state goes (a new directory under the system's temporary one when
/// `None`).
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub config: RawConfig,
    pub shim_path: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
}

impl Emulator {
    /// Connects to the engine and prepares an agent of its own.
    pub async fn start(options: Options) -> Result<Self, LocalError> {
        if !rustix::process::geteuid().is_root() {
            return Err(LocalError::NotRoot);
        }
        let mut settings = Settings::from_raw(&options.config)?;
        let id = Uuid::new_v4().simple().to_string();
        settings.agent_id = format!("local-{}", &id[..10]);
        settings.prewarm = PrewarmSettings::default();
        if let Some(shim) = options.shim_path {
            settings.shim_path = shim;
        }
        if !settings.shim_path.is_file() {
            return Err(LocalError::NoShim(settings.shim_path.display().to_string()));
        }
        let parent = options.state_dir.unwrap_or_else(std::env::temp_dir);
        let state = parent.join(format!("fresco-{}", settings.agent_id));
        // <state>/sockets/<agent id>/<16 hex>/runtime.sock must fit in a unix socket address.
        let socket_len = state.as_os_str().len()
            + settings.agent_id.len()
            + "/sockets///runtime.sock".len()
            + 16;
        if socket_len >= MAX_SOCKET_PATH {
            return Err(LocalError::Invalid(format!(
                "runtime socket paths under {} would be {socket_len} bytes long, the limit is {}: give a shorter --state-dir",
                parent.display(),
                MAX_SOCKET_PATH - 1
            )));
        }
        std::fs::create_dir_all(&state).map_err(|source| LocalError::State {
            path: state.display().to_string(),
            source,
        })?;
        settings.state_path = state.clone();
        let engine = match DockerEngine::connect(&settings.docker_host).await {
            Ok(engine) => engine,
            Err(source) => {
                let _ = std::fs::remove_dir_all(&state);
                return Err(LocalError::Engine {
                    host: settings.docker_host.clone(),
                    source,
                });
            }
        };
        let agent = match Agent::local(settings, Arc::new(engine)) {
            Ok(agent) => Arc::new(agent),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&state);
                return Err(e.into());
            }
        };
        let emulator = Self {
            agent,
            state,
            functions: HashMap::new(),
        };
        if let Err(e) = emulator.agent.reconcile().await {
            emulator.shutdown().await;
            return Err(e.into());
        }
        Ok(emulator)
    }

    /// The agent (its idle containers are reaped with `Agent::expire_idle`).
    pub fn agent(&self) -> &Arc<Agent<DockerEngine>> {
        &self.agent
    }

    /// The names of the loaded functions, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.functions.keys().cloned().collect();
        names.sort();
        names
    }

    /// Checks `function`, puts its code in the agent's cache and makes it invocable.
    pub async fn load(&mut self, function: LocalFunction) -> Result<(), LocalError> {
        check_name(&function.name)?;
        for name in function.environment.keys() {
            check_env_name(name)?;
        }
        if !matches!(function.runtime_kind.as_str(), "python" | "provided") {
            return Err(LocalError::Invalid(format!(
                "runtime kind {:?} of {}: the emulator runs python and provided functions",
                function.runtime_kind, function.name
            )));
        }
        let (path, package) = match &function.code {
            Code::Dir { path, skip } => {
                let packed = {
                    let (path, skip) = (path.clone(), skip.clone());
                    tokio::task::spawn_blocking(move || pack_dir(&path, &skip))
                        .await
                        .map_err(|e| io::Error::other(e.to_string()))
                        .and_then(|r| r)
                };
                let bytes = packed.map_err(|source| LocalError::Read {
                    path: path.display().to_string(),
                    source,
                })?;
                (path, bytes)
            }
            Code::Package(path) => {
                let bytes = std::fs::read(path).map_err(|source| LocalError::Read {
                    path: path.display().to_string(),
                    source,
                })?;
                (path, bytes)
            }
        };
        let (sha256, pin) =
            self.agent
                .add_local_code(PROJECT, package)
                .await
                .map_err(|source| LocalError::Code {
                    path: path.display().to_string(),
                    source,
                })?;
        let spec = FunctionSpec {
            project_id: PROJECT.to_owned(),
            function_id: Uuid::new_v4(),
            function_name: function.name.clone(),
            version: 0,
            image: function.image,
            runtime_kind: function.runtime_kind,
            handler: function.handler,
            memory_mb: function.memory_mb,
            timeout_s: function.timeout_s,
            environment: function.environment,
            code_sha256: Some(sha256),
            network: false,
            revision: 0,
        };
        validate_spec(&spec)?;
        self.functions
            .insert(function.name, Loaded { spec, _code: pin });
        Ok(())
    }

    /// Runs function `name` with `event` (JSON text, see `parse_event`) as a new execution.
    pub async fn invoke(&self, name: &str, event: Bytes) -> Result<RunResult, LocalError> {
        let loaded = self
            .functions
            .get(name)
            .ok_or_else(|| LocalError::NoSuchFunction(name.to_owned()))?;
        Ok(self
            .agent
            .run_local(&loaded.spec, Uuid::new_v4(), event)
            .await?)
    }

    /// Removes the containers and the state directory (the emulator runs nothing after).
    pub async fn shutdown(&self) {
        self.agent.shutdown().await;
        if let Err(e) = std::fs::remove_dir_all(&self.state) {
            log::warn!("cannot remove {}: {e}", self.state.display());
        }
    }
}

/// Reaps idle containers of `agent` every second (as the agent's own reaper does).
pub async fn reap_idle(agent: Arc<Agent<DockerEngine>>) {
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    loop {
        ticker.tick().await;
        agent.expire_idle();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_kinds_come_from_the_image_name() {
        assert_eq!(runtime_kind_of("fresco/python3:dev"), Some("python"));
        assert_eq!(
            runtime_kind_of("registry:5000/x/python3.12"),
            Some("python")
        );
        assert_eq!(runtime_kind_of("fresco/provided:dev"), Some("provided"));
        assert_eq!(
            runtime_kind_of("fresco/provided@sha256:ab"),
            Some("provided")
        );
        assert_eq!(runtime_kind_of("ubuntu:24.04"), None);
        assert_eq!(runtime_kind_of("python-like/node:20"), None);
    }

    #[test]
    fn only_loopback_addresses_are_served() {
        assert_eq!(
            loopback_listen("127.0.0.1:8080")
                .expect("as in the test")
                .to_string(),
            "127.0.0.1:8080"
        );
        assert!(loopback_listen("[::1]:0").is_ok());
        assert!(loopback_listen("127.3.4.5:1").is_ok());
        for bad in [
            "0.0.0.0:8080",
            "[::]:80",
            "192.168.1.2:80",
            "localhost:80",
            "8080",
        ] {
            assert!(loopback_listen(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn events_are_json_and_blank_is_an_empty_object() {
        assert_eq!(
            parse_event(b"  ").expect("as in the test"),
            Bytes::from_static(b"{}")
        );
        assert_eq!(
            parse_event(b" {\"a\": 1}\n").expect("as in the test"),
            Bytes::from_static(b"{\"a\": 1}")
        );
        let bad = parse_event(b"{nope").expect_err("refused").to_string();
        assert!(bad.starts_with("the event must be JSON"), "{bad}");
        let large = vec![b' '; MAX_EVENT_BYTES + 1];
        assert!(matches!(
            parse_event(&large),
            Err(LocalError::EventTooLarge(MAX_EVENT_BYTES))
        ));
    }

    #[test]
    fn environment_and_names_are_checked_as_the_platform_does() {
        assert_eq!(
            parse_env("GREETING=a=b").expect("as in the test"),
            ("GREETING".to_owned(), "a=b".to_owned())
        );
        for bad in [
            "NOVALUE",
            "AWS_LAMBDA_X=1",
            "FRESCO_Y=2",
            "_HANDLER=x",
            "=v",
        ] {
            assert!(parse_env(bad).is_err(), "{bad}");
        }
        assert!(check_name("hello-1.x").is_ok());
        for bad in ["", "-a", "a/b", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn answers_are_the_platforms() {
        let mut result = RunResult {
            execution_id: Uuid::nil(),
            status: RunStatus::Succeeded,
            response: Some("{\"x\":1}".into()),
            error: None,
            duration_ms: 1.5,
            init_ms: None,
            max_memory_mb: None,
            cold: true,
            logs: String::new(),
            cpu_ms: None,
            output_truncated: false,
            retry_safe: false,
            prewarmed: false,
        };
        let ok = answer(&result);
        assert!(ok.succeeded);
        assert_eq!((ok.status.as_str(), ok.cold), ("succeeded", "cold"));
        assert_eq!(ok.body, "{\"x\":1}");
        result.status = RunStatus::Timeout;
        result.cold = false;
        let timeout = answer(&result);
        assert!(!timeout.succeeded);
        assert_eq!(
            (timeout.status.as_str(), timeout.cold),
            ("timeout", "false")
        );
        let body: serde_json::Value = serde_json::from_str(&timeout.body).expect("as in the test");
        assert_eq!(body["errorType"], "Runtime.timeout");
    }

    #[test]
    fn a_code_directory_packs_to_an_accepted_package_without_what_it_skips() {
        let dir = std::env::temp_dir().join(format!("fresco-pack-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(dir.join("lib")).expect("as in the test");
        std::fs::write(dir.join("main.py"), b"x = 1\n").expect("as in the test");
        std::fs::write(dir.join("lib/util.py"), b"y = 2\n").expect("as in the test");
        std::fs::write(dir.join("fresco-function.json"), b"{}").expect("as in the test");
        std::os::unix::fs::symlink("lib/util.py", dir.join("link.py")).expect("as in the test");
        let bytes = pack_dir(&dir, &["fresco-function.json".to_owned()]).expect("as in the test");
        let out = dir.join("out");
        std::fs::create_dir(&out).expect("as in the test");
        let limits = fresco_common::archive::Limits {
            max_entries: 100,
            max_unpacked_bytes: 1 << 20,
        };
        fresco_common::archive::unpack(&bytes, limits, &out).expect("as in the test");
        assert_eq!(
            std::fs::read(out.join("lib/util.py")).expect("as in the test"),
            b"y = 2\n"
        );
        assert_eq!(
            std::fs::read_link(out.join("link.py")).expect("as in the test"),
            Path::new("lib/util.py")
        );
        assert!(!out.join("fresco-function.json").exists());
        std::fs::remove_dir_all(&dir).expect("as in the test");
    }
}
