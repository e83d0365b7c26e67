//! What the agent does to a sandbox directly on the host, beside the container engine: the
//! cgroup freezer (a sandbox never runs between invocations), CPU accounting (cpuacct), and
//! the per-sandbox network of network-enabled functions (`net`).
//!
//! `HostControl` is the seam: `LinuxHost` does it for real (cgroup files under
//! `/sys/fs/cgroup`, `ip`/`nsenter`/`nft`), `fake::FakeHost` records calls in unit tests. The
//! trait offers primitives only (write a freezer state, read it back, read a counter); the
//! policy above them (poll FREEZING with a bound, destroy what cannot be frozen, bill CPU from
//! thaw to freeze) lives in `container` and `service`, where the fake exercises it.

use std::path::{Path, PathBuf};

use super::net::{LinuxNetwork, NetworkLease, NetworkPolicy};

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("cannot {what} {path}: {source}")]
    Io {
        what: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no {controller} cgroup found for process {pid}")]
    NoCgroup { controller: &'static str, pid: u32 },
    #[error("unexpected content in {path}: {content:?}")]
    Parse { path: String, content: String },
    #[error("{command} failed ({status}): {stderr}")]
    Command {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("cannot run {command}: {source}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no free sandbox address left in {0}")]
    AddressesExhausted(String),
    #[error("sandbox networking is not available on this node: {0}")]
    NetworkUnavailable(String),
}

/// Where a container's cgroups are, found from its init process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupHandle {
    /// cgroup v1: the freezer and cpuacct hierarchies.
    V1 { freezer: PathBuf, cpuacct: PathBuf },
    /// cgroup v2: one directory (`cgroup.freeze`, `cgroup.events`, `cpu.stat`).
    V2 { dir: PathBuf },
}

/// The state the freezer reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FreezerState {
    Thawed,
    /// Asked to freeze, not every task stopped yet.
    Freezing,
    Frozen,
}

/// Host operations on one sandbox. Every method is a quick, synchronous system call or file
/// access, except `connect_network`, which runs commands: call it from a blocking thread.
pub trait HostControl: Send + Sync + 'static {
    /// The cgroups of the container whose init process is `pid`.
    fn cgroups(&self, pid: u32) -> Result<CgroupHandle, HostError>;
    /// Asks the freezer to freeze (true) or thaw (false) every task of the cgroup.
    fn set_frozen(&self, cgroup: &CgroupHandle, frozen: bool) -> Result<(), HostError>;
    fn freezer_state(&self, cgroup: &CgroupHandle) -> Result<FreezerState, HostError>;
    /// CPU time used by every task of the cgroup since it was created, in nanoseconds.
    fn cpu_time_ns(&self, cgroup: &CgroupHandle) -> Result<u64, HostError>;
    /// Gives the network namespace of process `pid` an egress-filtered link (see `net`); `tag`
    /// is unique per container (hex).
    fn connect_network(&self, pid: u32, tag: &str) -> Result<NetworkLease, HostError>;
    /// Removes what `connect_network` set up (a link already gone with its namespace is fine).
    fn disconnect_network(&self, lease: &NetworkLease);
    /// Removes every network artefact of this agent (start-up and shutdown).
    fn reset_network(&self) -> Result<(), HostError>;
    /// Binds the Runtime API listener (`RUNTIME_API_ADDR`, loopback) inside the network
    /// namespace of process `pid`, so that only that sandbox can reach it.
    fn runtime_listener(&self, pid: u32) -> Result<std::net::TcpListener, HostError>;
}

/// Binds `addr` in the network namespace of process `pid`, from a thread of its own that
/// enters the namespace and ends after the bind: no other thread of the agent ever leaves the
/// host's namespace, and the socket stays in the one it was made in.
pub fn bind_in_netns(pid: u32, addr: &str) -> Result<std::net::TcpListener, HostError> {
    let path = format!("/proc/{pid}/ns/net");
    let namespace = std::fs::File::open(&path).map_err(io_error("open", Path::new(&path)))?;
    let addr_text = addr.to_owned();
    let bound = std::thread::Builder::new()
        .name("netns-bind".to_owned())
        .spawn(move || -> std::io::Result<std::net::TcpListener> {
            rustix::thread::move_into_link_name_space(
                std::os::fd::AsFd::as_fd(&namespace),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )?;
            let listener = std::net::TcpListener::bind(&addr_text)?;
            listener.set_nonblocking(true)?;
            Ok(listener)
        })
        .map_err(io_error("start a thread to enter", Path::new(&path)))?
        .join()
        .map_err(|_| HostError::Io {
            what: "bind in",
            path: path.clone(),
            source: std::io::Error::other("the binding thread panicked"),
        })?;
    bound.map_err(|source| HostError::Io {
        what: "bind the runtime api in",
        path,
        source,
    })
}

/// `HostControl` on Linux: cgroup v1 (freezer + cpuacct) or v2 files, and `net::LinuxNetwork`.
pub struct LinuxHost {
    cgroup_root: PathBuf,
    network: LinuxNetwork,
}

impl LinuxHost {
    /// `agent_tag` names this agent's host interfaces and firewall table (see `net`).
    pub fn new(agent_tag: &str, policy: NetworkPolicy) -> Self {
        Self {
            cgroup_root: PathBuf::from("/sys/fs/cgroup"),
            network: LinuxNetwork::new(agent_tag, policy),
        }
    }

    /// Same, with cgroups looked up below `root` instead of `/sys/fs/cgroup` (tests).
    pub fn with_cgroup_root(mut self, root: &Path) -> Self {
        self.cgroup_root = root.to_path_buf();
        self
    }
}

fn io_error(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> HostError {
    let path = path.display().to_string();
    move |source| HostError::Io { what, path, source }
}

fn read_trimmed(path: &Path) -> Result<String, HostError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .map_err(io_error("read", path))
}

/// The cgroup of each controller in `/proc/<pid>/cgroup` text: (controllers, path) pairs.
fn cgroup_lines(text: &str) -> impl Iterator<Item = (&str, &str)> {
    text.lines().filter_map(|line| {
        let mut parts = line.splitn(3, ':');
        let _id = parts.next()?;
        Some((parts.next()?, parts.next()?))
    })
}

/// Resolves the handle from `/proc/<pid>/cgroup` text: v1 when a freezer hierarchy is mounted
/// under `root`, else the v2 unified hierarchy.
pub fn resolve_cgroups(root: &Path, text: &str, pid: u32) -> Result<CgroupHandle, HostError> {
    let relative = |path: &str| path.trim_start_matches('/').to_owned();
    let v1 = |controller: &'static str| {
        cgroup_lines(text)
            .find(|(controllers, _)| controllers.split(',').any(|c| c == controller))
            .map(|(_, path)| root.join(controller).join(relative(path)))
    };
    if root.join("freezer").is_dir() {
        let freezer = v1("freezer").ok_or(HostError::NoCgroup {
            controller: "freezer",
            pid,
        })?;
        let cpuacct = v1("cpuacct").ok_or(HostError::NoCgroup {
            controller: "cpuacct",
            pid,
        })?;
        return Ok(CgroupHandle::V1 { freezer, cpuacct });
    }
    let unified = cgroup_lines(text)
        .find(|(controllers, _)| controllers.is_empty())
        .map(|(_, path)| root.join(relative(path)))
        .ok_or(HostError::NoCgroup {
            controller: "unified",
            pid,
        })?;
    Ok(CgroupHandle::V2 { dir: unified })
}

/// `cpu.stat` (v2) `usage_usec` in nanoseconds.
fn parse_cpu_stat(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("usage_usec "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|us| us.saturating_mul(1000))
}

impl HostControl for LinuxHost {
    fn cgroups(&self, pid: u32) -> Result<CgroupHandle, HostError> {
        let path = PathBuf::from(format!("/proc/{pid}/cgroup"));
        let text = std::fs::read_to_string(&path).map_err(io_error("read", &path))?;
        resolve_cgroups(&self.cgroup_root, &text, pid)
    }

    fn set_frozen(&self, cgroup: &CgroupHandle, frozen: bool) -> Result<(), HostError> {
        let (path, value) = match cgroup {
            CgroupHandle::V1 { freezer, .. } => (
                freezer.join("freezer.state"),
                if frozen { "FROZEN" } else { "THAWED" },
            ),
            CgroupHandle::V2 { dir } => (dir.join("cgroup.freeze"), if frozen { "1" } else { "0" }),
        };
        std::fs::write(&path, value).map_err(io_error("write", &path))
    }

    fn freezer_state(&self, cgroup: &CgroupHandle) -> Result<FreezerState, HostError> {
        match cgroup {
            CgroupHandle::V1 { freezer, .. } => {
                let path = freezer.join("freezer.state");
                let state = read_trimmed(&path)?;
                match state.as_str() {
                    "THAWED" => Ok(FreezerState::Thawed),
                    "FREEZING" => Ok(FreezerState::Freezing),
                    "FROZEN" => Ok(FreezerState::Frozen),
                    _ => Err(HostError::Parse {
                        path: path.display().to_string(),
                        content: state,
                    }),
                }
            }
            CgroupHandle::V2 { dir } => {
                let wanted = read_trimmed(&dir.join("cgroup.freeze"))? == "1";
                let path = dir.join("cgroup.events");
                let events = read_trimmed(&path)?;
                let frozen = events
                    .lines()
                    .find_map(|l| l.strip_prefix("frozen "))
                    .map(|v| v.trim() == "1")
                    .ok_or_else(|| HostError::Parse {
                        path: path.display().to_string(),
                        content: events.clone(),
                    })?;
                Ok(match (wanted, frozen) {
                    (true, true) => FreezerState::Frozen,
                    (true, false) => FreezerState::Freezing,
                    (false, _) => FreezerState::Thawed,
                })
            }
        }
    }

    fn cpu_time_ns(&self, cgroup: &CgroupHandle) -> Result<u64, HostError> {
        let (path, parse): (PathBuf, fn(&str) -> Option<u64>) = match cgroup {
            CgroupHandle::V1 { cpuacct, .. } => {
                (cpuacct.join("cpuacct.usage"), |t| t.trim().parse().ok())
            }
            CgroupHandle::V2 { dir } => (dir.join("cpu.stat"), parse_cpu_stat),
        };
        let text = read_trimmed(&path)?;
        parse(&text).ok_or_else(|| HostError::Parse {
            path: path.display().to_string(),
            content: text,
        })
    }

    fn connect_network(&self, pid: u32, tag: &str) -> Result<NetworkLease, HostError> {
        self.network.connect(pid, tag)
    }

    fn disconnect_network(&self, lease: &NetworkLease) {
        self.network.disconnect(lease);
    }

    fn runtime_listener(&self, pid: u32) -> Result<std::net::TcpListener, HostError> {
        bind_in_netns(pid, crate::container::RUNTIME_API_ADDR)
    }

    fn reset_network(&self) -> Result<(), HostError> {
        self.network.reset()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCKER_V1: &str = "9:name=systemd:/docker/abc\n8:pids:/docker/abc\n6:freezer:/docker/abc\n2:cpu,cpuacct:/docker/abc\n0::/docker/abc\n";

    fn scratch() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("fh-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        dir
    }

    #[test]
    fn cgroup_v1_is_preferred_when_the_freezer_hierarchy_exists() {
        let root = scratch();
        std::fs::create_dir_all(root.join("freezer")).expect("mkdir");
        let handle = resolve_cgroups(&root, DOCKER_V1, 7).expect("v1");
        assert_eq!(
            handle,
            CgroupHandle::V1 {
                freezer: root.join("freezer/docker/abc"),
                cpuacct: root.join("cpuacct/docker/abc"),
            }
        );
        assert!(matches!(
            resolve_cgroups(&root, "0::/x\n", 7),
            Err(HostError::NoCgroup {
                controller: "freezer",
                pid: 7
            })
        ));
        std::fs::remove_dir_all(root).ok();
    }

    #[test]
    fn cgroup_v2_uses_the_unified_directory() {
        let root = scratch();
        let handle = resolve_cgroups(&root, "0::/system.slice/docker-abc.scope\n", 1).expect("v2");
        let dir = root.join("system.slice/docker-abc.scope");
        assert_eq!(handle, CgroupHandle::V2 { dir: dir.clone() });
        std::fs::create_dir_all(&dir).expect("mkdir");
        let host = LinuxHost::new("t", NetworkPolicy::default()).with_cgroup_root(&root);
        std::fs::write(dir.join("cgroup.events"), "populated 1\nfrozen 0\n").expect("write");
        host.set_frozen(&handle, true).expect("freeze");
        assert_eq!(
            std::fs::read_to_string(dir.join("cgroup.freeze")).expect("read"),
            "1"
        );
        assert_eq!(
            host.freezer_state(&handle).expect("state"),
            FreezerState::Freezing
        );
        std::fs::write(dir.join("cgroup.events"), "populated 1\nfrozen 1\n").expect("write");
        assert_eq!(
            host.freezer_state(&handle).expect("state"),
            FreezerState::Frozen
        );
        std::fs::write(dir.join("cpu.stat"), "usage_usec 1500\nuser_usec 1000\n").expect("write");
        assert_eq!(host.cpu_time_ns(&handle).expect("cpu"), 1_500_000);
        std::fs::remove_dir_all(root).ok();
    }

    #[test]
    fn cgroup_v1_files_are_read_and_written() {
        let root = scratch();
        let handle = CgroupHandle::V1 {
            freezer: root.join("f"),
            cpuacct: root.join("c"),
        };
        std::fs::create_dir_all(root.join("f")).expect("mkdir");
        std::fs::create_dir_all(root.join("c")).expect("mkdir");
        let host = LinuxHost::new("t", NetworkPolicy::default());
        host.set_frozen(&handle, true).expect("freeze");
        assert_eq!(
            host.freezer_state(&handle).expect("state"),
            FreezerState::Frozen
        );
        std::fs::write(root.join("f/freezer.state"), "FREEZING\n").expect("write");
        assert_eq!(
            host.freezer_state(&handle).expect("state"),
            FreezerState::Freezing
        );
        std::fs::write(root.join("f/freezer.state"), "SOMETHING\n").expect("write");
        assert!(matches!(
            host.freezer_state(&handle),
            Err(HostError::Parse { .. })
        ));
        std::fs::write(root.join("c/cpuacct.usage"), "123456789\n").expect("write");
        assert_eq!(host.cpu_time_ns(&handle).expect("cpu"), 123_456_789);
        std::fs::remove_dir_all(&root).ok();
        assert!(matches!(
            host.cpu_time_ns(&handle),
            Err(HostError::Io { what: "read", .. })
        ));
    }
}
