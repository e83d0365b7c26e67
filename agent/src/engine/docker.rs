//! `ContainerEngine` on the Docker engine API, through bollard.

use std::collections::HashMap;

use bollard::errors::Error as BollardError;
use bollard::models::{ContainerCreateBody, HostConfig, HostConfigLogConfig, ResourcesUlimits};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, ListImagesOptionsBuilder,
    RemoveContainerOptionsBuilder, WaitContainerOptionsBuilder,
};
use bollard::Docker;
use futures_util::StreamExt;

use super::{ContainerEngine, ContainerSpec, EngineError, ExitInfo};

/// Seconds bollard waits for an answer to one engine request.
const REQUEST_TIMEOUT_S: u64 = 120;
/// Seconds the engine gives a container between SIGTERM and SIGKILL when it stops it.
const STOP_TIMEOUT_S: i64 = 1;

pub struct DockerEngine {
    docker: Docker,
}

impl DockerEngine {
    /// Connects to `unix:///path` and agrees on an API version with the daemon.
    pub async fn connect(docker_host: &str) -> Result<Self, EngineError> {
        let path = docker_host.strip_prefix("unix://").unwrap_or(docker_host);
        let docker =
            Docker::connect_with_unix(path, REQUEST_TIMEOUT_S, bollard::API_DEFAULT_VERSION)
                .map_err(|e| EngineError::Docker(e.to_string()))?
                .negotiate_version()
                .await
                .map_err(|e| EngineError::Docker(e.to_string()))?;
        docker
            .ping()
            .await
            .map_err(|e| EngineError::Docker(e.to_string()))?;
        Ok(Self { docker })
    }

    async fn inspect_exit(&self, id: &str) -> Result<Option<ExitInfo>, EngineError> {
        let info = self
            .docker
            .inspect_container(id, None)
            .await
            .map_err(|e| map_error(e, id))?;
        let state = info.state.unwrap_or_default();
        if state.running == Some(true) {
            return Ok(None);
        }
        Ok(Some(ExitInfo {
            exit_code: state.exit_code.unwrap_or(-1),
            oom_killed: state.oom_killed.unwrap_or(false),
        }))
    }
}

/// The engine options that make a function container hostile-proof; see `ContainerSpec`.
pub fn create_body(spec: &ContainerSpec) -> ContainerCreateBody {
    let binds = spec
        .mounts
        .iter()
        .map(|m| {
            format!(
                "{}:{}:{}",
                m.host.display(),
                m.container,
                if m.read_only { "ro" } else { "rw" }
            )
        })
        .collect();
    let tmpfs = HashMap::from([(
        "/tmp".to_owned(),
        format!("rw,nosuid,nodev,mode=1777,size={}m", spec.tmpfs_mb),
    )]);
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        entrypoint: Some(spec.entrypoint.clone()),
        cmd: Some(Vec::new()),
        env: Some(spec.env.clone()),
        user: Some(spec.user.clone()),
        working_dir: Some("/var/task".to_owned()),
        labels: Some(spec.labels.clone().into_iter().collect()),
        network_disabled: Some(!spec.network),
        // Output goes over the agent's own pipe (see `logs`), never through the engine.
        attach_stdout: Some(false),
        attach_stderr: Some(false),
        // Nothing in a function container needs a graceful stop: an engine that shuts down
        // (or restarts) kills it after this, not after Docker's default 10 s.
        stop_timeout: Some(STOP_TIMEOUT_S),
        host_config: Some(HostConfig {
            network_mode: Some(if spec.network { "default" } else { "none" }.to_owned()),
            readonly_rootfs: Some(true),
            tmpfs: Some(tmpfs),
            cap_drop: Some(vec!["ALL".to_owned()]),
            security_opt: Some(vec!["no-new-privileges".to_owned()]),
            memory: Some(spec.memory_bytes),
            memory_swap: Some(spec.memory_bytes),
            pids_limit: Some(spec.pids_limit),
            cpu_shares: Some(spec.cpu_shares),
            cpu_period: Some(spec.cpu_period_us),
            cpu_quota: Some(spec.cpu_quota_us),
            ulimits: Some(vec![
                ResourcesUlimits {
                    name: Some("nofile".to_owned()),
                    soft: Some(spec.nofile_limit),
                    hard: Some(spec.nofile_limit),
                },
                ResourcesUlimits {
                    name: Some("nproc".to_owned()),
                    soft: Some(spec.nproc_limit),
                    hard: Some(spec.nproc_limit),
                },
            ]),
            binds: Some(binds),
            log_config: Some(HostConfigLogConfig {
                typ: Some("none".to_owned()),
                config: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn map_error(error: BollardError, what: &str) -> EngineError {
    match error {
        BollardError::DockerResponseServerError {
            status_code: 404, ..
        } => EngineError::NoSuchContainer(what.to_owned()),
        other => engine_error(other),
    }
}

/// Transport failures (the daemon is not there, or does not answer) are `Unavailable`: the
/// platform failed, not the operation.
fn engine_error(error: BollardError) -> EngineError {
    match error {
        BollardError::IOError { .. }
        | BollardError::HyperResponseError { .. }
        | BollardError::HyperLegacyError { .. }
        | BollardError::HttpClientError { .. }
        | BollardError::RequestTimeoutError
        | BollardError::SocketNotFoundError(_) => EngineError::Unavailable(error.to_string()),
        other => EngineError::Docker(other.to_string()),
    }
}

impl ContainerEngine for DockerEngine {
    async fn create(&self, spec: &ContainerSpec) -> Result<String, EngineError> {
        let options = CreateContainerOptionsBuilder::new()
            .name(&spec.name)
            .build();
        match self
            .docker
            .create_container(Some(options), create_body(spec))
            .await
        {
            Ok(created) => Ok(created.id),
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => Err(EngineError::NoSuchImage(spec.image.clone())),
            Err(e) => Err(engine_error(e)),
        }
    }

    async fn start(&self, id: &str) -> Result<(), EngineError> {
        self.docker
            .start_container(id, None)
            .await
            .map_err(|e| map_error(e, id))
    }

    async fn pid(&self, id: &str) -> Result<u32, EngineError> {
        let info = self
            .docker
            .inspect_container(id, None)
            .await
            .map_err(|e| map_error(e, id))?;
        info.state
            .and_then(|s| s.pid)
            .and_then(|pid| u32::try_from(pid).ok())
            .filter(|pid| *pid > 0)
            .ok_or_else(|| EngineError::Docker(format!("container {id} has no running process")))
    }

    async fn wait(&self, id: &str) -> Result<ExitInfo, EngineError> {
        loop {
            let options = WaitContainerOptionsBuilder::new()
                .condition("not-running")
                .build();
            let mut stream = self.docker.wait_container(id, Some(options));
            match stream.next().await {
                Some(Ok(_)) | Some(Err(BollardError::DockerContainerWaitError { .. })) => {}
                Some(Err(e)) => {
                    // A dropped or timed-out wait request: ask again while it still runs.
                    log::debug!("waiting for container {id}: {e}");
                }
                None => {}
            }
            if let Some(exit) = self.inspect_exit(id).await? {
                return Ok(exit);
            }
        }
    }

    async fn remove(&self, id: &str) -> Result<(), EngineError> {
        let options = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(true)
            .build();
        match self.docker.remove_container(id, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) => match map_error(e, id) {
                EngineError::NoSuchContainer(_) => Ok(()),
                // A removal already under way for this container.
                EngineError::Docker(message) if message.contains("already in progress") => Ok(()),
                other => Err(other),
            },
        }
    }

    async fn list_labelled(&self, label: &str, value: &str) -> Result<Vec<String>, EngineError> {
        let filters = HashMap::from([("label", vec![format!("{label}={value}")])]);
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let containers = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(engine_error)?;
        Ok(containers.into_iter().filter_map(|c| c.id).collect())
    }

    async fn images(&self) -> Result<Vec<String>, EngineError> {
        let images = self
            .docker
            .list_images(Some(ListImagesOptionsBuilder::new().build()))
            .await
            .map_err(engine_error)?;
        let mut tags: Vec<String> = images
            .into_iter()
            .flat_map(|i| i.repo_tags)
            .filter(|t| !t.starts_with("<none>"))
            .collect();
        tags.sort();
        tags.dedup();
        Ok(tags)
    }

    async fn ping(&self) -> Result<(), EngineError> {
        self.docker.ping().await.map(|_| ()).map_err(engine_error)
    }

    fn peak_memory(&self, id: &str) -> Option<u64> {
        if !id.chars().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        // cgroup v1 (cgroupfs driver). Not reset per invocation: that would be a write on
        // every invocation's path, and Lambda reports the sandbox's peak too.
        let v1 = format!("/sys/fs/cgroup/memory/docker/{id}/memory.max_usage_in_bytes");
        if let Ok(text) = std::fs::read_to_string(&v1) {
            return text.trim().parse().ok();
        }
        // cgroup v2 (systemd driver): the container's lifetime peak.
        let v2 = format!("/sys/fs/cgroup/system.slice/docker-{id}.scope/memory.peak");
        std::fs::read_to_string(v2).ok()?.trim().parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containers_are_killed_soon_when_the_engine_stops_them() {
        let spec = ContainerSpec {
            name: "fresco-x".into(),
            image: "fresco/python3:dev".into(),
            entrypoint: vec!["/opt/fresco/shim".into()],
            env: vec![],
            user: "1000:1000".into(),
            labels: Default::default(),
            network: false,
            memory_bytes: 128 << 20,
            cpu_shares: 74,
            cpu_quota_us: 25_000,
            cpu_period_us: 100_000,
            pids_limit: 64,
            nofile_limit: 1024,
            nproc_limit: 64,
            tmpfs_mb: 16,
            mounts: vec![],
        };
        // A dockerd restart must not wait Docker's default 10 s per function container.
        assert_eq!(create_body(&spec).stop_timeout, Some(STOP_TIMEOUT_S));
        const { assert!(STOP_TIMEOUT_S <= 2) };
    }
}
