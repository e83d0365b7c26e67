//! The network of network-enabled sandboxes, built by the agent itself (the engine runs with
//! `--bridge=none` and every container starts with only its own loopback).
//!
//! Per sandbox: a veth pair, one end (`eth0`) in the container's network namespace with a /32
//! from `[agent] sandbox_network_cidr` and a default route via the link-local gateway
//! `169.254.1.1`, the other end (`f<agent tag><container tag>`) on the host holding that gateway
//! address, strict reverse-path filtering (no spoofed sources) and a host route to the /32 (the
//! kernel refuses a second route to the same /32, so claiming an address is atomic host-wide).
//!
//! Per agent: one nftables table (`inet fresco_<agent tag>`) matching its interfaces by name
//! prefix, so starting a sandbox changes no rule:
//! - nothing from a sandbox reaches the host itself (input: only replies to connections the
//!   host opened);
//! - nothing reaches a sandbox unless it answers a connection the sandbox opened (so no
//!   sandbox, of any tenant or agent, can connect to another);
//! - IPv4 only; never the sandbox network; `sandbox_allowed_networks` accepted; then
//!   `sandbox_denied_networks` (private, link-local with the metadata address, loopback,
//!   shared, multicast and reserved ranges by default) dropped; everything else is masqueraded
//!   out of the host's own interfaces.

use std::collections::HashSet;
use std::fmt;
use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::sync::Mutex;

use super::host::HostError;

/// The gateway every sandbox routes through; held by each host-side interface.
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);
/// Name of the interface inside the sandbox.
pub const SANDBOX_INTERFACE: &str = "eth0";
/// Addresses tried before giving up on finding a free one.
const MAX_CLAIM_ATTEMPTS: u32 = 256;

/// An IPv4 network in CIDR notation, with no host bits set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Net {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Ipv4Net {
    fn mask(prefix: u8) -> u32 {
        if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(prefix))
        }
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & Self::mask(self.prefix) == u32::from(self.addr)
    }

    /// Number of addresses in the network.
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix))
    }

    /// The `i`-th address of the network (modulo its size).
    pub fn nth(&self, i: u64) -> Ipv4Addr {
        let offset = (i % self.size()) as u32;
        Ipv4Addr::from(u32::from(self.addr).wrapping_add(offset))
    }
}

impl FromStr for Ipv4Net {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (addr, prefix) = text
            .trim()
            .split_once('/')
            .ok_or_else(|| format!("{text:?} is not an IPv4 CIDR (a.b.c.d/n)"))?;
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| format!("{text:?} is not an IPv4 CIDR (a.b.c.d/n)"))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| format!("{text:?} has a prefix length outside 0-32"))?;
        if u32::from(addr) & !Self::mask(prefix) != 0 {
            return Err(format!("{text:?} has host bits set"));
        }
        Ok(Self { addr, prefix })
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Where network-enabled sandboxes may go (from `[agent] sandbox_*` options).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkPolicy {
    pub pool: Ipv4Net,
    pub denied: Vec<Ipv4Net>,
    pub allowed: Vec<Ipv4Net>,
}

impl Default for NetworkPolicy {
    fn default() -> Self {
        Self {
            pool: Ipv4Net {
                addr: Ipv4Addr::new(198, 18, 0, 0),
                prefix: 16,
            },
            denied: Vec::new(),
            allowed: Vec::new(),
        }
    }
}

/// What `connect` set up for one sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkLease {
    /// The host-side interface.
    pub interface: String,
    pub address: Ipv4Addr,
}

/// A short, stable tag of an agent id (FNV-1a, 24 bits, hex): part of interface and table names.
pub fn agent_tag(agent_id: &str) -> String {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in agent_id.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    format!("{:06x}", hash & 0x00ff_ffff)
}

/// Name prefix of an agent's host-side interfaces (`f` + tag: 7 characters of the 15 allowed).
pub fn interface_prefix(agent_tag: &str) -> String {
    format!("f{agent_tag}")
}

/// The nftables table of an agent.
pub fn table_name(agent_tag: &str) -> String {
    format!("fresco_{agent_tag}")
}

fn set_elements(networks: &[Ipv4Net]) -> String {
    if networks.is_empty() {
        return String::new();
    }
    let list: Vec<String> = networks.iter().map(ToString::to_string).collect();
    format!(" elements = {{ {} }};", list.join(", "))
}

/// The agent's whole nftables table, replacing any previous one atomically (`nft -f -`).
pub fn ruleset(agent_tag: &str, policy: &NetworkPolicy) -> String {
    let table = table_name(agent_tag);
    let sandboxes = format!("\"{}*\"", interface_prefix(agent_tag));
    format!(
        "table inet {table} {{}}\n\
         delete table inet {table}\n\
         table inet {table} {{\n\
         \tset allowed {{ type ipv4_addr; flags interval; auto-merge;{allowed} }}\n\
         \tset denied {{ type ipv4_addr; flags interval; auto-merge;{denied} }}\n\
         \tchain input {{\n\
         \t\ttype filter hook input priority filter - 10; policy accept;\n\
         \t\tiifname {sandboxes} ct state established,related accept\n\
         \t\tiifname {sandboxes} drop\n\
         \t}}\n\
         \tchain forward {{\n\
         \t\ttype filter hook forward priority filter - 10; policy accept;\n\
         \t\toifname {sandboxes} ct state established,related accept\n\
         \t\toifname {sandboxes} drop\n\
         \t\tiifname {sandboxes} meta nfproto != ipv4 drop\n\
         \t\tiifname {sandboxes} ip daddr {pool} drop\n\
         \t\tiifname {sandboxes} ip daddr @allowed accept\n\
         \t\tiifname {sandboxes} ip daddr @denied drop\n\
         \t}}\n\
         \tchain postrouting {{\n\
         \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
         \t\tiifname {sandboxes} oifname != {sandboxes} masquerade\n\
         \t}}\n\
         }}\n",
        allowed = set_elements(&policy.allowed),
        denied = set_elements(&policy.denied),
        pool = policy.pool,
    )
}

/// Commands run inside the sandbox's namespace (`ip -batch -`).
pub fn sandbox_batch(address: Ipv4Addr) -> String {
    format!(
        "addr add {address}/32 dev {SANDBOX_INTERFACE}\n\
         link set {SANDBOX_INTERFACE} up\n\
         route add {GATEWAY}/32 dev {SANDBOX_INTERFACE} scope link\n\
         route add default via {GATEWAY} dev {SANDBOX_INTERFACE}\n"
    )
}

/// Runs `program args`, feeding `stdin`; an error carries what the command printed.
fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<(), HostError> {
    let command = format!("{program} {}", args.join(" "));
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| HostError::Spawn {
            command: command.clone(),
            source,
        })?;
    if let (Some(text), Some(mut input)) = (stdin, child.stdin.take()) {
        input
            .write_all(text.as_bytes())
            .map_err(|source| HostError::Spawn {
                command: command.clone(),
                source,
            })?;
    }
    let output = child
        .wait_with_output()
        .map_err(|source| HostError::Spawn {
            command: command.clone(),
            source,
        })?;
    if output.status.success() {
        return Ok(());
    }
    Err(HostError::Command {
        command,
        status: output.status.to_string(),
        stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
    })
}

fn write_sysctl(path: &str, value: &str) -> Result<(), HostError> {
    std::fs::write(path, value).map_err(|source| HostError::Io {
        what: "write",
        path: path.to_owned(),
        source,
    })
}

#[derive(Default)]
struct State {
    /// Forwarding was turned on.
    prepared: bool,
    used: HashSet<Ipv4Addr>,
    cursor: u64,
}

/// The real network set-up, with `ip`, `nsenter` and `nft` (iproute2, util-linux, nftables).
pub struct LinuxNetwork {
    tag: String,
    policy: NetworkPolicy,
    state: Mutex<State>,
}

impl LinuxNetwork {
    pub fn new(agent_tag: &str, policy: NetworkPolicy) -> Self {
        // Start at a point of the pool that depends on the agent, so agents sharing a pool
        // rarely try the same addresses.
        let cursor = u64::from_str_radix(agent_tag, 16).unwrap_or(0);
        Self {
            tag: agent_tag.to_owned(),
            policy,
            state: Mutex::new(State {
                cursor,
                ..State::default()
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Installs (or replaces, atomically) the table, then turns IPv4 forwarding on. Done
    /// before every new link, not once: were the table flushed by someone else meanwhile,
    /// sandboxes would be forwarded unfiltered; this way a new sandbox never starts so, and
    /// the filter comes back for the others. Forwarding is only turned on by a node that runs
    /// a network-enabled function.
    fn prepare(&self) -> Result<(), HostError> {
        run("nft", &["-f", "-"], Some(&ruleset(&self.tag, &self.policy)))
            .map_err(|e| HostError::NetworkUnavailable(e.to_string()))?;
        let mut state = self.state();
        if !state.prepared {
            write_sysctl("/proc/sys/net/ipv4/ip_forward", "1")?;
            state.prepared = true;
        }
        Ok(())
    }

    /// Reserves the next address of the pool not known to be used (the route claims it).
    fn next_candidate(&self) -> Option<Ipv4Addr> {
        let mut state = self.state();
        let size = self.policy.pool.size();
        for _ in 0..size.min(u64::from(MAX_CLAIM_ATTEMPTS) * 4) {
            state.cursor = state.cursor.wrapping_add(1);
            let candidate = self.policy.pool.nth(state.cursor);
            let offset = state.cursor % size;
            // Not the network's first or last address: a /32 would work, but people read them
            // as network and broadcast.
            if size > 2 && (offset == 0 || offset == size - 1) {
                continue;
            }
            if state.used.insert(candidate) {
                return Some(candidate);
            }
        }
        None
    }

    fn forget(&self, address: Ipv4Addr) {
        self.state().used.remove(&address);
    }

    pub fn connect(&self, pid: u32, tag: &str) -> Result<NetworkLease, HostError> {
        self.prepare()?;
        let short: String = tag
            .chars()
            .filter(char::is_ascii_hexdigit)
            .take(8)
            .collect();
        let interface = format!("{}{short}", interface_prefix(&self.tag));
        let pid_text = pid.to_string();
        run(
            "ip",
            &[
                "link",
                "add",
                &interface,
                "type",
                "veth",
                "peer",
                "name",
                SANDBOX_INTERFACE,
                "netns",
                &pid_text,
            ],
            None,
        )?;
        match self.configure(pid, &interface) {
            Ok(address) => Ok(NetworkLease { interface, address }),
            Err(e) => {
                let _ = run("ip", &["link", "del", &interface], None);
                Err(e)
            }
        }
    }

    fn configure(&self, pid: u32, interface: &str) -> Result<Ipv4Addr, HostError> {
        write_sysctl(
            &format!("/proc/sys/net/ipv4/conf/{interface}/rp_filter"),
            "1",
        )?;
        // No IPv6 on the host side (the firewall drops it anyway).
        let _ = write_sysctl(
            &format!("/proc/sys/net/ipv6/conf/{interface}/disable_ipv6"),
            "1",
        );
        run(
            "ip",
            &["-batch", "-"],
            Some(&format!(
                "addr add {GATEWAY}/32 dev {interface}\nlink set {interface} up\n"
            )),
        )?;
        let address = self.claim(interface)?;
        let netns = format!("--net=/proc/{pid}/ns/net");
        if let Err(e) = run(
            "nsenter",
            &[&netns, "--", "ip", "-batch", "-"],
            Some(&sandbox_batch(address)),
        ) {
            self.forget(address);
            return Err(e);
        }
        Ok(address)
    }

    /// Claims a free address by routing it to `interface` (refused if another route has it).
    fn claim(&self, interface: &str) -> Result<Ipv4Addr, HostError> {
        for _ in 0..MAX_CLAIM_ATTEMPTS {
            let Some(candidate) = self.next_candidate() else {
                break;
            };
            let target = format!("{candidate}/32");
            match run("ip", &["route", "add", &target, "dev", interface], None) {
                Ok(()) => return Ok(candidate),
                Err(HostError::Command { stderr, .. }) if stderr.contains("File exists") => {
                    // Another agent's sandbox has it; keep it marked used here.
                    continue;
                }
                Err(e) => {
                    self.forget(candidate);
                    return Err(e);
                }
            }
        }
        Err(HostError::AddressesExhausted(self.policy.pool.to_string()))
    }

    pub fn disconnect(&self, lease: &NetworkLease) {
        // Deleting one end deletes the pair and the route; the container's exit may already
        // have done it.
        if let Err(e) = run("ip", &["link", "del", &lease.interface], None) {
            if !e.to_string().contains("Cannot find device") {
                log::warn!("cannot remove sandbox link {}: {e}", lease.interface);
            }
        }
        self.forget(lease.address);
    }

    pub fn reset(&self) -> Result<(), HostError> {
        let prefix = interface_prefix(&self.tag);
        if let Ok(entries) = std::fs::read_dir("/sys/class/net") {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with(&prefix) {
                    let _ = run("ip", &["link", "del", &name], None);
                }
            }
        }
        let table = table_name(&self.tag);
        // Only when nft exists: a node without nftables simply has no sandbox network.
        if let Err(e) = run(
            "nft",
            &["-f", "-"],
            Some(&format!(
                "table inet {table} {{}}\ndelete table inet {table}\n"
            )),
        ) {
            log::debug!("cannot remove nftables table {table}: {e}");
        }
        let mut state = self.state();
        state.prepared = false;
        state.used.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(text: &str) -> Ipv4Net {
        text.parse().expect("cidr")
    }

    #[test]
    fn cidrs_are_parsed_strictly() {
        assert_eq!(
            net("10.0.0.0/8"),
            Ipv4Net {
                addr: Ipv4Addr::new(10, 0, 0, 0),
                prefix: 8
            }
        );
        for bad in ["10.0.0.1/8", "10.0.0.0", "10.0.0.0/33", "x/8", "::1/128"] {
            assert!(bad.parse::<Ipv4Net>().is_err(), "{bad}");
        }
        let pool = net("198.18.0.0/16");
        assert!(pool.contains(Ipv4Addr::new(198, 18, 255, 1)));
        assert!(!pool.contains(Ipv4Addr::new(198, 19, 0, 1)));
        assert_eq!(pool.size(), 65536);
        assert_eq!(pool.nth(65537), Ipv4Addr::new(198, 18, 0, 1));
        assert!(net("0.0.0.0/0").contains(Ipv4Addr::new(1, 2, 3, 4)));
        assert_eq!(net("1.2.3.4/32").size(), 1);
    }

    #[test]
    fn names_fit_the_kernel_limits_and_are_stable() {
        let tag = agent_tag("node-1");
        assert_eq!(tag.len(), 6);
        assert_eq!(tag, agent_tag("node-1"), "stable across calls and restarts");
        assert_ne!(tag, agent_tag("node-2"));
        let interface = format!("{}{}", interface_prefix(&tag), "0123abcd");
        assert!(interface.len() <= 15, "IFNAMSIZ: {interface}");
    }

    #[test]
    fn the_ruleset_drops_everything_but_allowed_egress() {
        let policy = NetworkPolicy {
            pool: net("198.18.0.0/16"),
            denied: vec![net("10.0.0.0/8"), net("169.254.0.0/16")],
            allowed: vec![net("10.1.2.0/24")],
        };
        let rules = ruleset("abc123", &policy);
        assert!(rules.starts_with("table inet fresco_abc123 {}\ndelete table inet fresco_abc123\n"));
        assert!(rules.contains("elements = { 10.0.0.0/8, 169.254.0.0/16 }"));
        assert!(rules.contains("elements = { 10.1.2.0/24 }"));
        // Order matters: replies first, then other sandboxes, then allowed before denied.
        let order = [
            "oifname \"fabc123*\" ct state established,related accept",
            "oifname \"fabc123*\" drop",
            "iifname \"fabc123*\" meta nfproto != ipv4 drop",
            "iifname \"fabc123*\" ip daddr 198.18.0.0/16 drop",
            "iifname \"fabc123*\" ip daddr @allowed accept",
            "iifname \"fabc123*\" ip daddr @denied drop",
        ];
        let positions: Vec<usize> = order
            .iter()
            .map(|rule| {
                rules
                    .find(rule)
                    .unwrap_or_else(|| panic!("{rule} in {rules}"))
            })
            .collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{rules}");
        assert!(
            rules.contains("iifname \"fabc123*\" drop"),
            "no host access"
        );
        let empty = ruleset("abc123", &NetworkPolicy::default());
        assert!(empty.contains("set allowed { type ipv4_addr; flags interval; auto-merge; }"));
    }

    #[test]
    fn addresses_are_handed_out_once_and_skip_the_edges() {
        let network = LinuxNetwork::new(
            "000000",
            NetworkPolicy {
                pool: net("198.18.0.0/30"),
                ..NetworkPolicy::default()
            },
        );
        let first = network.next_candidate().expect("one");
        let second = network.next_candidate().expect("two");
        assert_ne!(first, second);
        for address in [first, second] {
            assert!([Ipv4Addr::new(198, 18, 0, 1), Ipv4Addr::new(198, 18, 0, 2)].contains(&address));
        }
        assert_eq!(network.next_candidate(), None, "pool exhausted");
        network.forget(first);
        assert_eq!(network.next_candidate(), Some(first));
        assert_eq!(
            sandbox_batch(first).lines().next(),
            Some(format!("addr add {first}/32 dev eth0").as_str())
        );
    }
}
