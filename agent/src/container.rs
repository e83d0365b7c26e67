//! One function container: the hardened engine settings built from a `FunctionSpec`, its
//! per-container directory and Runtime API socket, its output, and its lifecycle.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use fresco_common::wire::FunctionSpec;
use futures_util::StreamExt;
use tokio::net::UnixListener;
use tokio::task::JoinHandle;

use crate::code::CodePin;
use crate::config::Settings;
use crate::engine::{BindMount, ContainerEngine, ContainerSpec, EngineError};
use crate::logs::LogBuffer;
use crate::runtime_api::RuntimeChannel;

/// Where things live inside every function container.
pub const TASK_ROOT: &str = "/var/task";
pub const SHIM_IN_CONTAINER: &str = "/opt/fresco/shim";
pub const SOCKET_DIR_IN_CONTAINER: &str = "/run/fresco";
pub const SOCKET_NAME: &str = "runtime.sock";
/// The Runtime API address the shim serves inside the container.
pub const RUNTIME_API_ADDR: &str = "127.0.0.1:9001";

pub const LABEL_PROJECT: &str = "fresco.project";
pub const LABEL_FUNCTION: &str = "fresco.function";
pub const LABEL_VERSION: &str = "fresco.version";
pub const LABEL_AGENT: &str = "fresco.agent";

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

/// The engine settings of a container for `spec`.
pub fn container_spec(
    settings: &Settings,
    spec: &FunctionSpec,
    name: &str,
    code_dir: Option<&Path>,
    socket_dir: &Path,
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
        user: format!("{}:{}", settings.container_uid, settings.container_gid),
        labels,
        network: spec.network,
        memory_bytes: i64::try_from(memory_mb * 1024 * 1024).unwrap_or(i64::MAX),
        cpu_shares: cpu_shares(memory_mb),
        pids_limit: settings.pids_limit,
        tmpfs_mb: settings.tmpfs_mb,
        mounts,
    }
}

/// A started container and what the agent keeps beside it.
pub struct Container {
    pub id: String,
    pub name: String,
    pub channel: Arc<RuntimeChannel>,
    pub logs: Arc<LogBuffer>,
    dir: PathBuf,
    /// Keeps the code package in the node's cache for the container's whole life.
    _code: Option<CodePin>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Whether it has run an invocation yet (the first one is the cold one).
    pub used: AtomicBool,
}

impl Container {
    /// Creates and starts a container for `spec`, with its socket directory and Runtime API
    /// server ready before the shim's first connection.
    pub async fn start<E: ContainerEngine>(
        engine: &Arc<E>,
        settings: &Settings,
        spec: &FunctionSpec,
        code: Option<CodePin>,
    ) -> Result<Arc<Container>, ContainerError> {
        let name = format!("fresco-{}", uuid::Uuid::new_v4().simple());
        let dir = settings
            .containers_dir()
            .join(&name["fresco-".len()..][..16]);
        let listener = prepare_socket_dir(&dir, settings.container_uid, settings.container_gid)?;
        let channel = Arc::new(RuntimeChannel::new());
        let server = channel.serve(listener);
        let code_dir = code.as_ref().map(CodePin::path);
        let container_spec = container_spec(settings, spec, &name, code_dir, &dir);
        let id = match engine.create(&container_spec).await {
            Ok(id) => id,
            Err(e) => {
                channel.close();
                server.abort();
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e.into());
            }
        };
        let container = Arc::new(Container {
            id,
            name,
            channel,
            logs: Arc::new(LogBuffer::new(settings.log_max_bytes)),
            dir,
            _code: code,
            tasks: Mutex::new(vec![server]),
            used: AtomicBool::new(false),
        });
        match tokio::time::timeout(settings.start_timeout, container.attach_and_start(engine)).await
        {
            Ok(Ok(())) => Ok(container),
            Ok(Err(e)) => {
                container.destroy(engine).await;
                Err(e.into())
            }
            Err(_) => {
                container.destroy(engine).await;
                Err(ContainerError::StartTimeout(
                    settings.start_timeout.as_secs(),
                ))
            }
        }
    }

    async fn attach_and_start<E: ContainerEngine>(
        &self,
        engine: &Arc<E>,
    ) -> Result<(), EngineError> {
        let mut output = engine.attach(&self.id).await?;
        let logs = Arc::clone(&self.logs);
        let pump = tokio::spawn(async move {
            while let Some(chunk) = output.next().await {
                logs.push(&chunk);
            }
            logs.close();
        });
        self.tasks().push(pump);
        engine.start(&self.id).await?;
        let (watch_engine, id, channel) = (
            Arc::clone(engine),
            self.id.clone(),
            Arc::clone(&self.channel),
        );
        let watcher = tokio::spawn(async move {
            match watch_engine.wait(&id).await {
                Ok(exit) => channel.container_exited(exit),
                Err(e) => {
                    // Removing a container ends its wait too: only other failures are news.
                    if !channel.is_closed() {
                        log::warn!("lost track of container {id}: {e}");
                    }
                    // Not the function's doing: its engine failed (e.g. dockerd stopped).
                    channel.engine_lost(e.to_string());
                }
            }
        });
        self.tasks().push(watcher);
        Ok(())
    }

    fn tasks(&self) -> std::sync::MutexGuard<'_, Vec<JoinHandle<()>>> {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Kills and removes the container and its directory.
    pub async fn destroy<E: ContainerEngine>(&self, engine: &Arc<E>) {
        self.channel.close();
        if let Err(e) = engine.remove(&self.id).await {
            log::warn!("cannot remove container {}: {e}", self.name);
        }
        for task in self.tasks().drain(..) {
            task.abort();
        }
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                log::warn!("cannot remove {}: {e}", self.dir.display());
            }
        }
    }
}

/// Creates `dir` (mode 0700, owned by the container user) and binds the Runtime API socket in it.
fn prepare_socket_dir(dir: &Path, uid: u32, gid: u32) -> Result<UnixListener, ContainerError> {
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
    Ok(listener)
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
        );
        assert!(!c.network);
        assert_eq!(c.memory_bytes, 128 * 1024 * 1024);
        assert_eq!(c.pids_limit, 32);
        assert_eq!(c.tmpfs_mb, 16);
        assert_eq!(c.user, "1000:1000");
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
    }

    #[test]
    fn cpu_shares_follow_memory() {
        assert_eq!(cpu_shares(1769), 1024);
        assert_eq!(cpu_shares(128), 74);
        assert_eq!(cpu_shares(1), 2, "never below the engine's minimum");
        assert!(cpu_shares(3538) > cpu_shares(1769));
    }
}
