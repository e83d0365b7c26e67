//! The agent's settings, resolved once from the INI sections it reads.

use std::path::PathBuf;
use std::time::Duration;

use fresco_common::archive::Limits;
use fresco_common::conf::{
    AgentSection, ConfigError, DefaultSection, InternalAuthSection, InternalTlsSection, RawConfig,
    SchedulerSection,
};
use fresco_common::ticket::check_agent_id;

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("[agent] container_user must be numeric uid:gid, got {0:?}")]
    ContainerUser(String),
    #[error("cannot determine the machine's memory: {0}")]
    Memory(String),
    #[error("[agent] agent_id: {0}")]
    AgentId(#[source] fresco_common::ticket::TicketError),
    #[error("[agent] unpack_uid and unpack_gid must not be 0 (root), 4294967295, nor the container user's uid {container_uid}, got {uid}:{gid}")]
    UnpackUser {
        uid: u32,
        gid: u32,
        container_uid: u32,
    },
    #[error("runtime socket paths would be {0} bytes long, the limit is 107: shorten [DEFAULT] state_path or [agent] agent_id")]
    SocketPath(usize),
}

/// Longest path a unix socket can be bound at (sockaddr_un.sun_path, with its NUL).
const MAX_SOCKET_PATH: usize = 108;

/// Everything the agent needs to know, with defaults resolved.
#[derive(Debug, Clone)]
pub struct Settings {
    pub agent_id: String,
    pub host: String,
    pub bind_host: String,
    pub bind_port: u16,
    /// Empty until the server is bound when `[agent] advertise_url` is empty.
    pub advertise_url: String,
    pub api_url: String,
    pub docker_host: String,
    pub memory_mb: u64,
    pub cpus: i32,
    pub heartbeat_interval: Duration,
    pub idle_timeout: Duration,
    pub start_timeout: Duration,
    pub shim_path: PathBuf,
    pub container_uid: u32,
    pub container_gid: u32,
    pub pids_limit: i64,
    pub tmpfs_mb: u64,
    pub log_max_bytes: usize,
    pub log_sync_timeout: Duration,
    pub code_max_bytes: usize,
    pub code_limits: Limits,
    pub code_cache_max_bytes: u64,
    pub unpack_uid: u32,
    pub unpack_gid: u32,
    pub max_running: u32,
    pub state_path: PathBuf,
    pub ticket_verify_key_file: String,
    /// Seconds a ticket lives (`[internal_auth] ticket_ttl`): longer-lived tickets are refused.
    pub ticket_ttl: u64,
    pub agent_key_file: String,
    pub replay_cache_entries: usize,
    pub tls: InternalTlsSection,
    pub scheduler_urls: Vec<String>,
    /// Prefixes of the images this node runs as a function's own image.
    pub allowed_image_prefixes: Vec<String>,
}

impl Settings {
    pub fn from_raw(raw: &RawConfig) -> Result<Self, SettingsError> {
        let default: DefaultSection = raw.section()?;
        let agent: AgentSection = raw.section()?;
        let auth: InternalAuthSection = raw.section()?;
        let scheduler: SchedulerSection = raw.section()?;
        let tls: InternalTlsSection = raw.section()?;
        let host = if default.host.is_empty() {
            hostname()
        } else {
            default.host.clone()
        };
        let agent_id = if agent.agent_id.is_empty() {
            host.clone()
        } else {
            agent.agent_id.clone()
        };
        check_agent_id(&agent_id).map_err(SettingsError::AgentId)?;
        // <state>/sockets/<agent id>/<16 hex>/runtime.sock must fit in sockaddr_un.
        let socket_len =
            default.state_path.len() + agent_id.len() + "/sockets///runtime.sock".len() + 16;
        if socket_len >= MAX_SOCKET_PATH {
            return Err(SettingsError::SocketPath(socket_len));
        }
        let (container_uid, container_gid) = parse_user(&agent.container_user)?;
        let unusable = |id: u32| id == 0 || id == u32::MAX;
        if unusable(agent.unpack_uid)
            || unusable(agent.unpack_gid)
            || agent.unpack_uid == container_uid
        {
            return Err(SettingsError::UnpackUser {
                uid: agent.unpack_uid,
                gid: agent.unpack_gid,
                container_uid,
            });
        }
        let memory_mb = if agent.memory_mb == 0 {
            machine_memory_mb()? * 8 / 10
        } else {
            agent.memory_mb
        };
        let cpus = std::thread::available_parallelism()
            .map(|n| i32::try_from(n.get()).unwrap_or(i32::MAX))
            .unwrap_or(1);
        Ok(Self {
            agent_id,
            host,
            bind_host: agent.bind_host,
            bind_port: agent.bind_port,
            advertise_url: agent.advertise_url,
            api_url: agent.api_url.trim_end_matches('/').to_owned(),
            docker_host: agent.docker_host,
            memory_mb,
            cpus,
            heartbeat_interval: Duration::from_secs(agent.heartbeat_interval.max(1)),
            idle_timeout: Duration::from_secs(agent.idle_timeout),
            start_timeout: Duration::from_secs(agent.start_timeout.max(1)),
            shim_path: PathBuf::from(agent.shim_path),
            container_uid,
            container_gid,
            pids_limit: agent.pids_limit,
            tmpfs_mb: agent.tmpfs_mb,
            log_max_bytes: agent.log_max_bytes,
            log_sync_timeout: Duration::from_millis(agent.log_sync_timeout_ms),
            code_max_bytes: agent.code_max_bytes,
            code_limits: Limits {
                max_entries: agent.code_max_entries,
                max_unpacked_bytes: agent.code_max_unpacked_bytes,
            },
            code_cache_max_bytes: agent.code_cache_max_bytes,
            unpack_uid: agent.unpack_uid,
            unpack_gid: agent.unpack_gid,
            max_running: agent.max_running,
            allowed_image_prefixes: agent.allowed_image_prefixes,
            state_path: PathBuf::from(default.state_path),
            ticket_verify_key_file: auth.ticket_verify_key_file,
            ticket_ttl: auth.ticket_ttl,
            agent_key_file: auth.agent_key_file,
            replay_cache_entries: agent.replay_cache_entries,
            tls,
            scheduler_urls: scheduler.urls,
        })
    }

    /// Directory holding the per-container runtime sockets (kept short: a unix socket path
    /// must fit in 108 bytes).
    pub fn containers_dir(&self) -> PathBuf {
        self.state_path.join("sockets").join(&self.agent_id)
    }

    /// Directory holding unpacked code packages.
    pub fn code_dir(&self) -> PathBuf {
        self.state_path.join("code")
    }
}

/// `uid:gid` (or a bare `uid`, which then is also the gid); names are refused because the
/// agent must own the per-container directory by the same numbers the container uses.
pub fn parse_user(text: &str) -> Result<(u32, u32), SettingsError> {
    let bad = || SettingsError::ContainerUser(text.to_owned());
    let (uid, gid) = match text.split_once(':') {
        Some((uid, gid)) => (uid, gid),
        None => (text, text),
    };
    let uid: u32 = uid.trim().parse().map_err(|_| bad())?;
    let gid: u32 = gid.trim().parse().map_err(|_| bad())?;
    if uid == 0 {
        return Err(bad());
    }
    Ok((uid, gid))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".to_owned())
}

/// Total memory of the machine in MB, from /proc/meminfo.
pub fn machine_memory_mb() -> Result<u64, SettingsError> {
    let text = std::fs::read_to_string("/proc/meminfo")
        .map_err(|e| SettingsError::Memory(e.to_string()))?;
    parse_meminfo(&text).ok_or_else(|| SettingsError::Memory("no MemTotal line".to_owned()))
}

fn parse_meminfo(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_must_be_numeric_and_not_root() {
        assert_eq!(parse_user("1000:1000").expect("ok"), (1000, 1000));
        assert_eq!(parse_user("1001").expect("ok"), (1001, 1001));
        assert_eq!(parse_user("1000:2000").expect("ok"), (1000, 2000));
        assert!(parse_user("nobody").is_err());
        assert!(parse_user("0:0").is_err(), "root is refused");
        assert!(parse_user("1000:").is_err());
    }

    #[test]
    fn meminfo_total_is_read_in_mb() {
        let text = "MemTotal:       24683520 kB\nMemFree:        1 kB\n";
        assert_eq!(parse_meminfo(text), Some(24105));
        assert_eq!(parse_meminfo("MemFree: 3 kB\n"), None);
    }

    #[test]
    fn zero_memory_means_most_of_the_machine_and_ids_are_checked() {
        let raw = RawConfig::parse("[agent]\nagent_id = node-1\n", "test").expect("parse");
        let settings = Settings::from_raw(&raw).expect("settings");
        let machine = machine_memory_mb().expect("meminfo");
        assert_eq!(settings.memory_mb, machine * 8 / 10);
        assert_eq!(settings.agent_id, "node-1");
        for bad in ["../etc", "fresco-scheduler", "fresco-api", ".hidden"] {
            let raw =
                RawConfig::parse(&format!("[agent]\nagent_id = {bad}\n"), "test").expect("parse");
            assert!(
                matches!(Settings::from_raw(&raw), Err(SettingsError::AgentId(_))),
                "{bad}"
            );
        }
        assert_eq!(
            (settings.unpack_uid, settings.unpack_gid),
            (199_999, 199_999)
        );
        for bad in ["unpack_uid = 0", "unpack_gid = 0", "unpack_uid = 1000"] {
            let raw = RawConfig::parse(&format!("[agent]\nagent_id = a\n{bad}\n"), "test")
                .expect("parse");
            assert!(
                matches!(
                    Settings::from_raw(&raw),
                    Err(SettingsError::UnpackUser { .. })
                ),
                "{bad}"
            );
        }
    }
}
