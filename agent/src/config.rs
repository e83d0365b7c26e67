//! The agent's settings, resolved once from the INI sections it reads.

use std::path::PathBuf;
use std::time::Duration;

use fresco_common::archive::Limits;

use crate::engine::net::{Ipv4Net, NetworkPolicy};
use fresco_common::conf::{
    AgentSection, ConfigError, DefaultSection, InternalAuthSection, InternalTlsSection, RawConfig,
    SchedulerSection,
};
use fresco_common::ticket::check_agent_id;

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("[agent] sandbox_uid_base {base} and sandbox_uid_count {count}: the range must be non-empty, above 0 and below 2^32 - 1")]
    UidRange { base: u32, count: u32 },
    #[error("[agent] {option}: {message}")]
    Network {
        option: &'static str,
        message: String,
    },
    #[error("cannot determine the machine's memory: {0}")]
    Memory(String),
    #[error("[agent] agent_id: {0}")]
    AgentId(#[source] fresco_common::ticket::TicketError),
    #[error("[agent] unpack_uid and unpack_gid must not be 0 (root), 4294967295, nor in the sandbox uid range {sandbox_base}..{sandbox_end}, got {uid}:{gid}")]
    UnpackUser {
        uid: u32,
        gid: u32,
        sandbox_base: u32,
        sandbox_end: u32,
    },
    #[error("[agent] {option}: {message}")]
    Prewarm {
        option: &'static str,
        message: String,
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
    /// Sandboxes run as uids (and gids) `sandbox_uid_base..sandbox_uid_base + sandbox_uid_count`.
    pub sandbox_uid_base: u32,
    pub sandbox_uid_count: u32,
    pub pids_limit: i64,
    pub memory_mb_per_cpu: u64,
    pub cpu_min_millicores: u64,
    pub nofile_limit: i64,
    pub nproc_limit: i64,
    pub freeze_timeout: Duration,
    pub freeze_delay: Duration,
    pub output_max_bytes: u64,
    pub container_output_max_bytes: u64,
    pub network: NetworkPolicy,
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
    /// The pre-warmed pools (see `prewarm`).
    pub prewarm: PrewarmSettings,
}

/// `[agent] prewarm_*`, resolved.
#[derive(Debug, Clone, Default)]
pub struct PrewarmSettings {
    /// (runtime kind, image) pairs.
    pub runtimes: Vec<(String, String)>,
    pub memory_mb: Vec<u64>,
    pub size: u32,
    pub max: u32,
    pub window: Duration,
    pub fill_concurrency: u32,
}

impl PrewarmSettings {
    fn from_section(agent: &AgentSection) -> Result<Self, SettingsError> {
        let bad =
            |option: &'static str, message: String| SettingsError::Prewarm { option, message };
        let mut runtimes = Vec::new();
        for entry in &agent.prewarm_runtimes {
            let (kind, image) = entry
                .split_once('=')
                .map(|(k, i)| (k.trim(), i.trim()))
                .ok_or_else(|| bad("prewarm_runtimes", format!("{entry:?} is not kind=image")))?;
            if !matches!(kind, "python" | "provided") {
                return Err(bad(
                    "prewarm_runtimes",
                    format!("kind {kind:?} of {entry:?} is not python or provided"),
                ));
            }
            if image.is_empty() || image.contains(char::is_whitespace) {
                return Err(bad(
                    "prewarm_runtimes",
                    format!("image {image:?} of {entry:?}"),
                ));
            }
            runtimes.push((kind.to_owned(), image.to_owned()));
        }
        let mut memory_mb = Vec::new();
        for size in &agent.prewarm_memory_mb {
            match size.trim().parse::<u64>() {
                Ok(mb) if mb >= 16 => memory_mb.push(mb),
                _ => {
                    return Err(bad(
                        "prewarm_memory_mb",
                        format!("{size:?} is not a memory size of at least 16 MB"),
                    ))
                }
            }
        }
        Ok(Self {
            runtimes,
            memory_mb,
            size: agent.prewarm_size,
            max: agent.prewarm_max.max(agent.prewarm_size),
            window: Duration::from_secs(agent.prewarm_window),
            fill_concurrency: agent.prewarm_fill_concurrency.max(1),
        })
    }
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
        if agent.sandbox_uid_base == 0
            || agent.sandbox_uid_count == 0
            || agent
                .sandbox_uid_base
                .checked_add(agent.sandbox_uid_count)
                .is_none_or(|end| end == u32::MAX)
        {
            return Err(SettingsError::UidRange {
                base: agent.sandbox_uid_base,
                count: agent.sandbox_uid_count,
            });
        }
        let network = network_policy(&agent)?;
        let prewarm = PrewarmSettings::from_section(&agent)?;
        // Code is unpacked as a user no sandbox runs as: sandboxes can read it, never write it.
        let sandbox_uids = agent.sandbox_uid_base..agent.sandbox_uid_base + agent.sandbox_uid_count;
        let unusable = |id: u32| id == 0 || id == u32::MAX || sandbox_uids.contains(&id);
        if unusable(agent.unpack_uid) || unusable(agent.unpack_gid) {
            return Err(SettingsError::UnpackUser {
                uid: agent.unpack_uid,
                gid: agent.unpack_gid,
                sandbox_base: sandbox_uids.start,
                sandbox_end: sandbox_uids.end,
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
            sandbox_uid_base: agent.sandbox_uid_base,
            sandbox_uid_count: agent.sandbox_uid_count,
            pids_limit: agent.pids_limit,
            memory_mb_per_cpu: agent.memory_mb_per_cpu.max(1),
            cpu_min_millicores: agent.cpu_min_millicores,
            nofile_limit: i64::try_from(agent.nofile_limit).unwrap_or(i64::MAX),
            nproc_limit: i64::try_from(agent.nproc_limit).unwrap_or(i64::MAX),
            freeze_timeout: Duration::from_millis(agent.freeze_timeout_ms),
            freeze_delay: Duration::from_millis(agent.freeze_delay_ms),
            output_max_bytes: agent.output_max_bytes,
            container_output_max_bytes: agent.container_output_max_bytes,
            network,
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
            prewarm,
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

/// The `[agent] sandbox_*` network options, parsed.
fn network_policy(agent: &AgentSection) -> Result<NetworkPolicy, SettingsError> {
    let parse = |option: &'static str, text: &str| {
        text.parse::<Ipv4Net>()
            .map_err(|message| SettingsError::Network { option, message })
    };
    let pool = parse("sandbox_network_cidr", &agent.sandbox_network_cidr)?;
    if pool.prefix > 30 {
        return Err(SettingsError::Network {
            option: "sandbox_network_cidr",
            message: format!("{pool} is too small (at most /30)"),
        });
    }
    let list = |option: &'static str, items: &[String]| {
        items
            .iter()
            .map(|text| parse(option, text))
            .collect::<Result<Vec<_>, _>>()
    };
    Ok(NetworkPolicy {
        pool,
        denied: list("sandbox_denied_networks", &agent.sandbox_denied_networks)?,
        allowed: list("sandbox_allowed_networks", &agent.sandbox_allowed_networks)?,
    })
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
    fn uid_ranges_and_networks_are_checked() {
        let settings = |text: &str| {
            let raw =
                RawConfig::parse(&format!("[agent]\nagent_id = n\n{text}"), "test").expect("parse");
            Settings::from_raw(&raw)
        };
        let ok = settings("").expect("defaults");
        assert_eq!(
            (ok.sandbox_uid_base, ok.sandbox_uid_count),
            (200_000, 65_536)
        );
        assert_eq!(ok.network.pool.to_string(), "198.18.0.0/16");
        assert!(ok
            .network
            .denied
            .iter()
            .any(|n| n.contains(std::net::Ipv4Addr::new(169, 254, 169, 254))));
        assert!(ok.network.allowed.is_empty());
        for bad in [
            "sandbox_uid_base = 0",
            "sandbox_uid_count = 0",
            "sandbox_uid_base = 4294967000\nsandbox_uid_count = 295",
        ] {
            assert!(
                matches!(settings(bad), Err(SettingsError::UidRange { .. })),
                "{bad}"
            );
        }
        for bad in [
            "sandbox_network_cidr = 10.0.0.1/8",
            "sandbox_network_cidr = 10.0.0.0/31",
            "sandbox_allowed_networks = 10.0.0.0/8, nonsense",
        ] {
            assert!(
                matches!(settings(bad), Err(SettingsError::Network { .. })),
                "{bad}"
            );
        }
        let allowed = settings("sandbox_allowed_networks = 10.1.0.0/16").expect("allowed");
        assert_eq!(allowed.network.allowed.len(), 1);
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
        for bad in [
            "unpack_uid = 0",
            "unpack_gid = 0",
            "unpack_uid = 200000",
            "unpack_gid = 265535",
        ] {
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
