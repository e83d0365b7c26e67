//! The container engine behind a trait: the bollard implementation talks to Docker, the
//! recording fake (`fake`) stands in for it in unit tests. `host` is the same seam for what the
//! agent does to a sandbox on the host itself (freezer, CPU accounting, `net`work).

pub mod docker;
#[cfg(test)]
pub mod fake;
pub mod host;
pub mod net;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;

pub use docker::DockerEngine;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("image {0} is not present on this node")]
    NoSuchImage(String),
    #[error("no such container {0}")]
    NoSuchContainer(String),
    /// The engine cannot be reached (not running, its socket gone, no answer in time).
    #[error("container engine unavailable: {0}")]
    Unavailable(String),
    #[error("docker: {0}")]
    Docker(String),
}

impl EngineError {
    /// Whether the engine itself failed, rather than the operation.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, EngineError::Unavailable(_))
    }
}

/// A host directory or file made visible inside the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    pub host: PathBuf,
    pub container: String,
    pub read_only: bool,
}

/// Everything the engine needs to create one hardened function container (plain data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    pub entrypoint: Vec<String>,
    /// `KEY=value` entries.
    pub env: Vec<String>,
    /// `uid:gid`.
    pub user: String,
    pub labels: BTreeMap<String, String>,
    /// Whether the container gets a network beyond its own loopback.
    pub network: bool,
    pub memory_bytes: i64,
    pub cpu_shares: i64,
    /// Hard CPU limit: CPU time per `cpu_period_us` (CFS quota), in microseconds.
    pub cpu_quota_us: i64,
    pub cpu_period_us: i64,
    pub pids_limit: i64,
    /// RLIMIT_NOFILE and RLIMIT_NPROC (soft = hard).
    pub nofile_limit: i64,
    pub nproc_limit: i64,
    pub tmpfs_mb: u64,
    pub mounts: Vec<BindMount>,
}

/// How a container ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitInfo {
    pub exit_code: i64,
    pub oom_killed: bool,
}

/// What the agent asks of a container engine. Every method is one engine operation.
pub trait ContainerEngine: Send + Sync + 'static {
    /// Creates a container; returns its id.
    fn create(
        &self,
        spec: &ContainerSpec,
    ) -> impl Future<Output = Result<String, EngineError>> + Send;
    fn start(&self, id: &str) -> impl Future<Output = Result<(), EngineError>> + Send;
    /// The host pid of the container's init process (a started container).
    fn pid(&self, id: &str) -> impl Future<Output = Result<u32, EngineError>> + Send;
    /// Resolves when the container has stopped.
    fn wait(&self, id: &str) -> impl Future<Output = Result<ExitInfo, EngineError>> + Send;
    /// Kills and removes the container (with anonymous volumes); a missing one is fine.
    fn remove(&self, id: &str) -> impl Future<Output = Result<(), EngineError>> + Send;
    /// Ids of the containers (running or not) carrying `label=value`.
    fn list_labelled(
        &self,
        label: &str,
        value: &str,
    ) -> impl Future<Output = Result<Vec<String>, EngineError>> + Send;
    /// `repository:tag` of the images on the node.
    fn images(&self) -> impl Future<Output = Result<Vec<String>, EngineError>> + Send;
    /// Checks that the engine answers.
    fn ping(&self) -> impl Future<Output = Result<(), EngineError>> + Send;
    /// Peak memory use of a running container over its life so far, in bytes, where the
    /// engine can tell (one file read; as Lambda's "Max Memory Used", it is the sandbox's).
    fn peak_memory(&self, id: &str) -> Option<u64>;
}
