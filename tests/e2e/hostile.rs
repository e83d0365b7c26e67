//! Hostile functions against a real node: each attack is a real invocation through the API
//! (real fresco-api, fresco-scheduler, fresco-agent, PostgreSQL and Docker engine), and each
//! test asserts the safe outcome, then that the node still serves a normal invocation.
//!
//! The network test builds its "other hosts" as network namespaces on this machine (addresses
//! in 203.0.113.0/24, 10.255.255.0/24 and 169.254.169.254 exist only inside them); it never
//! sends a packet to a real host.

#![allow(clippy::unwrap_used)]

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fresco_e2e::{wait_until, Stack, StackOptions, ADMIN, AGENT_UIDS};
use serde_json::{json, Value};

const ALICE: &str = "alice:hostile-project-a:member";
const BOB: &str = "bob:hostile-project-b:member";
const DOCKER: &str = "/usr/bin/docker";
/// The sandbox uids of the stack's (first) agent (`[agent] sandbox_uid_base`, `sandbox_uid_count`).
fn uids(stack: &Stack) -> std::ops::Range<u64> {
    let base = u64::from(stack.agent_uid_bases[0]);
    base..base + u64::from(AGENT_UIDS)
}

/// Invokes synchronously: (execution status, execution id, JSON body or the raw text).
fn invoke(stack: &Stack, token: &str, function: &str, event: &Value) -> (String, String, Value) {
    let response = stack.invoke(token, function, event);
    assert_eq!(response.status().as_u16(), 200, "invoking {function}");
    let header = |name: &str| response.headers()[name].to_str().unwrap().to_owned();
    let (status, id) = (header("x-execution-status"), header("x-execution-id"));
    let text = response.text().unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, id, body)
}

/// The ids of the containers of a function (by its id) on the stack's agents.
fn containers_of(function_id: &str) -> Vec<String> {
    let out = Command::new(DOCKER)
        .args([
            "ps",
            "-q",
            "--no-trunc",
            "--filter",
            &format!("label=fresco.function={function_id}"),
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

fn the_container_of(function_id: &str) -> String {
    let ids = containers_of(function_id);
    assert_eq!(ids.len(), 1, "one container for {function_id}: {ids:?}");
    ids[0].clone()
}

fn inspect(id: &str, format: &str) -> String {
    let out = Command::new(DOCKER)
        .args(["inspect", "--format", format, id])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A cgroup v1 file of a container (the engine uses the cgroupfs driver, parent `docker`).
fn cgroup(controller: &str, id: &str, file: &str) -> PathBuf {
    PathBuf::from(format!("/sys/fs/cgroup/{controller}/docker/{id}/{file}"))
}

/// Each task of the container: pid, uid, state and what it waits in (for failure messages).
fn task_states(id: &str) -> String {
    let tasks = std::fs::read_to_string(cgroup("pids", id, "tasks")).unwrap_or_default();
    tasks
        .split_whitespace()
        .map(|pid| {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            let field = |name: &str| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .map(|v| v.split_whitespace().next().unwrap_or("").to_owned())
                    .unwrap_or_default()
            };
            let wchan = std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
            format!(
                "{pid} {} uid {} {} {wchan}",
                field("Name:"),
                field("Uid:"),
                field("State:")
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn read_cgroup(controller: &str, id: &str, file: &str) -> String {
    let path = cgroup(controller, id, file);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
        .trim()
        .to_owned()
}

/// Waits until the container's freezer reports FROZEN, within the agent's default
/// `freeze_timeout_ms` (1 s) and a margin.
fn wait_frozen(id: &str) {
    wait_until(
        Duration::from_millis(1500),
        "the sandbox to be FROZEN",
        || read_cgroup("freezer", id, "freezer.state") == "FROZEN",
    );
}

fn cpu_ns(id: &str) -> u64 {
    read_cgroup("cpuacct", id, "cpuacct.usage").parse().unwrap()
}

/// The container's user as a number (`uid:gid` with both equal).
fn uid_of(id: &str) -> u64 {
    let user = inspect(id, "{{.Config.User}}");
    let (uid, gid) = user.split_once(':').unwrap();
    assert_eq!(uid, gid, "own group too: {user}");
    uid.parse().unwrap()
}

/// The host path of a container's runtime socket (`<state>/sockets/<agent>/<16 hex>/…`).
fn socket_of(stack: &Stack, id: &str) -> PathBuf {
    let name = inspect(id, "{{.Name}}");
    let hex = name.trim_start_matches("/fresco-");
    let agent = inspect(id, "{{index .Config.Labels \"fresco.agent\"}}");
    stack
        .dir
        .join("a0/sockets")
        .join(agent)
        .join(&hex[..16])
        .join("runtime.sock")
}

/// Connects to a unix socket as `uid:uid` with no supplementary group, in a child process.
fn connect_as(uid: u64, socket: &std::path::Path) -> String {
    use std::os::unix::process::CommandExt;
    let uid = u32::try_from(uid).unwrap();
    let out = Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import socket, sys\ns = socket.socket(socket.AF_UNIX)\ntry:\n    s.connect(sys.argv[1]); print('connected')\nexcept OSError as e:\n    print(type(e).__name__)",
        ])
        .arg(socket)
        .uid(uid)
        .gid(uid)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The recorded output of an execution.
fn log_of(stack: &Stack, token: &str, id: &str) -> String {
    stack.wait_execution(token, id, Duration::from_secs(10));
    stack
        .request(
            reqwest::Method::GET,
            token,
            &format!("/v1/executions/{id}/log"),
        )
        .send()
        .unwrap()
        .text()
        .unwrap()
}

fn normal_invocation_works(stack: &Stack) {
    let (status, _, body) = invoke(stack, ALICE, "after", &json!({"name": "still here"}));
    assert_eq!(status, "succeeded", "{body}");
    assert_eq!(body, json!({"greeting": "hello still here"}));
}

#[test]
fn stray_processes_are_frozen_between_invocations_and_their_cpu_is_billed() {
    let stack = Stack::start(StackOptions::default());
    stack.register_runtimes();
    let stray = stack.create_function(
        ALICE,
        "stray",
        "python-stray",
        "python3",
        json!({"memory_mb": 128, "timeout_s": 10}),
    );
    let function_id = stray["id"].as_str().unwrap();
    let (status, first, body) = invoke(&stack, ALICE, "stray", &json!({"spawn": true}));
    assert_eq!(status, "succeeded", "{body}");
    let id = the_container_of(function_id);

    // The busy loop is still there, in its own session...
    let procs = read_cgroup("pids", &id, "cgroup.procs");
    let looping = procs.lines().any(|pid| {
        std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|c| String::from_utf8_lossy(&c).contains("while :; do :; done"))
            .unwrap_or(false)
    });
    assert!(looping, "the stray loop survives the invocation: {procs}");
    // ...but the sandbox was frozen (once idle for `[agent] freeze_delay_ms`, confirmed
    // within `freeze_timeout_ms`), and uses no CPU while idle.
    wait_frozen(&id);
    let idle_start = cpu_ns(&id);
    std::thread::sleep(Duration::from_secs(3));
    let idle_end = cpu_ns(&id);
    assert_eq!(
        idle_end - idle_start,
        0,
        "an idle sandbox must not run (it used {} ms in 3 s)",
        (idle_end - idle_start) / 1_000_000
    );

    // The first execution is billed for what ran until it answered.
    let execution = stack.wait_execution(ALICE, &first, Duration::from_secs(10));
    assert!(execution["cpu_ms"].as_f64().unwrap() > 0.0, "{execution}");
    let first_end_ns = idle_end;

    // While thawed for the next invocation, the loop runs again: billed to that invocation,
    // under the sandbox's hard CPU limit (128 MB: the 250 millicore floor).
    assert_eq!(read_cgroup("cpu", &id, "cpu.cfs_quota_us"), "25000");
    assert_eq!(read_cgroup("cpu", &id, "cpu.cfs_period_us"), "100000");
    let (status, second, _) = invoke(&stack, ALICE, "stray", &json!({"sleep": 1}));
    assert_eq!(status, "succeeded");
    wait_frozen(&id);
    let second_end_ns = cpu_ns(&id);
    let used_ms = (second_end_ns - first_end_ns) as f64 / 1e6;
    let execution = stack.wait_execution(ALICE, &second, Duration::from_secs(10));
    let billed = execution["cpu_ms"].as_f64().unwrap();
    // Billed from the first answer to its own; `used_ms` runs from freeze to freeze. The two
    // differ by what the loop ran between each answer and the freeze after it (at most the
    // freeze delay, 50 ms, plus the freeze itself, at the 25% quota): the second one's is the
    // next invocation's, the first one's is this one's.
    // What the loop can run between an answer and the freeze after it: the freeze delay and
    // the freeze itself (150 ms at most here) at the 25% quota.
    let after_answer_max_ms = 0.25 * 150.0;
    let after_answer = used_ms - billed;
    assert!(
        (-after_answer_max_ms..after_answer_max_ms).contains(&after_answer),
        "billed {billed} ms, the cgroup used {used_ms} ms until the freeze"
    );
    assert!(
        billed > 100.0,
        "the loop ran while thawed and is billed: {billed} ms"
    );
    assert!(
        billed < 1000.0 * 0.25 * 1.6 + 200.0,
        "the CFS quota caps the loop: {billed} ms in about 1 s"
    );
    // Nothing goes unbilled: the next invocation is billed for what ran after the last one
    // answered, and its own time.
    let (status, third, _) = invoke(&stack, ALICE, "stray", &json!({}));
    assert_eq!(status, "succeeded");
    wait_frozen(&id);
    let third_used_ms = (cpu_ns(&id) - second_end_ns) as f64 / 1e6;
    let execution = stack.wait_execution(ALICE, &third, Duration::from_secs(10));
    let third_billed = execution["cpu_ms"].as_f64().unwrap();
    assert!(
        third_billed >= after_answer - 1.0,
        "the time after the second answer is billed to the third: {third_billed} ms, {after_answer} ms"
    );
    // The third is billed from the second answer: what ran before the second freeze (at most
    // `after_answer_max_ms`) plus what `third_used_ms` counts from that freeze on.
    assert!(
        third_billed <= third_used_ms + after_answer_max_ms + 1.0,
        "never more than the cgroup used: billed {third_billed} ms, the cgroup used {third_used_ms} ms since the second freeze"
    );

    stack.create_function(ALICE, "after", "python-hello", "python3", json!({}));
    normal_invocation_works(&stack);
}

#[test]
fn hostile_functions_are_contained_and_the_node_keeps_working() {
    let stack = Stack::start(StackOptions {
        agent_config: "output_max_bytes = 4194304\nlog_max_bytes = 65536\n".to_owned(),
        ..Default::default()
    });
    stack.register_runtimes();
    stack.create_function(ALICE, "after", "python-hello", "python3", json!({}));

    // A fork bomb (Python): the kernel refuses forks at the pids limit.
    let bomb = stack.create_function(
        ALICE,
        "forkbomb",
        "python-forkbomb",
        "python3",
        json!({"memory_mb": 256, "timeout_s": 30}),
    );
    let (status, _, body) = invoke(&stack, ALICE, "forkbomb", &json!({}));
    assert_eq!(status, "succeeded", "{body}");
    // Refused by the sandbox uid's RLIMIT_NPROC or the cgroup's pids limit, both 64.
    assert_eq!(body["refused"], "EAGAIN", "{body}");
    assert!(body["children"].as_u64().unwrap() < 64, "{body}");
    let id = the_container_of(bomb["id"].as_str().unwrap());
    assert_eq!(read_cgroup("pids", &id, "pids.max"), "64");
    let current: u64 = read_cgroup("pids", &id, "pids.current").parse().unwrap();
    assert!(current <= 64, "{current} tasks");
    normal_invocation_works(&stack);

    // A shell fork bomb (provided runtime): capped the same way, then killed by the timeout.
    let shell_bomb = stack.create_function(
        ALICE,
        "shellbomb",
        "provided-forkbomb",
        "provided",
        json!({"handler": "bootstrap", "timeout_s": 4}),
    );
    let shell_bomb_id = shell_bomb["id"].as_str().unwrap().to_owned();
    let watcher = std::thread::spawn(move || {
        // Find the container once, then sample its task count until it is gone.
        let start = Instant::now();
        let deadline = start + Duration::from_secs(30);
        let mut id = None;
        let mut most = 0u64;
        // (ms since the watcher started, tasks) at each change, for the failure message.
        let mut changes: Vec<(u128, u64)> = Vec::new();
        // What its tasks do 2 s in (for the failure message).
        let mut snapshot = String::new();
        while Instant::now() < deadline {
            match &id {
                None => id = containers_of(&shell_bomb_id).into_iter().next(),
                Some(id) => match std::fs::read_to_string(cgroup("pids", id, "pids.current")) {
                    Ok(text) => {
                        let tasks = text.trim().parse().unwrap_or(0);
                        if changes.last().is_none_or(|(_, last)| *last != tasks) {
                            changes.push((start.elapsed().as_millis(), tasks));
                        }
                        most = most.max(tasks);
                        if snapshot.is_empty() && start.elapsed() > Duration::from_secs(2) {
                            snapshot = task_states(id);
                        }
                    }
                    Err(_) => break,
                },
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        (most, changes, snapshot)
    });
    let started = Instant::now();
    let (status, bomb_execution, body) = invoke(&stack, ALICE, "shellbomb", &json!({}));
    assert_eq!(status, "timeout", "{body}");
    assert!(started.elapsed() < Duration::from_secs(30));
    let (most, changes, snapshot) = watcher.join().unwrap();
    assert!(
        most > 10 && most <= 64,
        "{most} tasks at most; (ms, tasks): {changes:?}; tasks 2 s in: {snapshot}; log: {}",
        log_of(&stack, ALICE, &bomb_execution)
    );
    normal_invocation_works(&stack);

    // Memory past the limit is recorded as oom.
    stack.create_function(
        ALICE,
        "memhog",
        "python-memhog",
        "python3",
        json!({"memory_mb": 64, "timeout_s": 20}),
    );
    let (status, oom, _) = invoke(&stack, ALICE, "memhog", &json!({"mb": 512}));
    assert_eq!(status, "oom");
    assert_eq!(
        stack.wait_execution(ALICE, &oom, Duration::from_secs(10))["status"],
        "oom"
    );

    // Writes outside /tmp are refused; the function runs as a sandbox uid.
    let write = stack.create_function(ALICE, "write", "python-write", "python3", json!({}));
    let (status, _, body) = invoke(&stack, ALICE, "write", &json!({}));
    assert_eq!(status, "succeeded");
    assert_eq!(body["/tmp"], "ok");
    for path in ["/var/task", "/", "/etc"] {
        let outcome = body[path].as_str().unwrap();
        assert!(
            outcome.contains("Read-only") || outcome.contains("Permission"),
            "{path}: {outcome}"
        );
    }
    assert!(
        uids(&stack).contains(&body["uid"].as_u64().unwrap()),
        "{body}"
    );

    // No socket to the host, the metadata address or another container: only loopback.
    stack.create_function(
        ALICE,
        "net",
        "python-net",
        "python3",
        json!({"timeout_s": 10}),
    );
    let (status, _, body) = invoke(&stack, ALICE, "net", &json!({"port": stack.api.port}));
    assert_eq!(status, "succeeded");
    assert_eq!(body["interfaces"], json!(["lo"]), "{body}");
    assert_eq!(body["routes"], json!([]), "{body}");
    assert_ne!(body["host"], "connected", "{body}");

    // Distinct uids per container, and one sandbox's uid cannot reach another's socket.
    let other = stack.create_function(BOB, "write", "python-write", "python3", json!({}));
    let (status, _, _) = invoke(&stack, BOB, "write", &json!({}));
    assert_eq!(status, "succeeded");
    let mine = the_container_of(write["id"].as_str().unwrap());
    let theirs = the_container_of(other["id"].as_str().unwrap());
    let (my_uid, their_uid) = (uid_of(&mine), uid_of(&theirs));
    assert!(uids(&stack).contains(&my_uid) && uids(&stack).contains(&their_uid));
    assert_ne!(my_uid, their_uid, "each container has its own uid");
    let their_socket = socket_of(&stack, &theirs);
    assert_eq!(
        connect_as(their_uid, &their_socket),
        "connected",
        "its own uid reaches it (the socket is live)"
    );
    assert_eq!(
        connect_as(my_uid, &their_socket),
        "PermissionError",
        "another sandbox's uid cannot"
    );
    assert_eq!(
        connect_as(1000, &their_socket),
        "PermissionError",
        "nor an ordinary host user"
    );

    // A flood of output (about 4 GB) is cut off at the output limit and recorded.
    stack.create_function(
        ALICE,
        "flood",
        "provided-flood",
        "provided",
        json!({"handler": "bootstrap", "timeout_s": 120}),
    );
    let started = Instant::now();
    let (status, flood, body) = invoke(&stack, ALICE, "flood", &json!({}));
    if status != "failed" {
        panic!("{status} {body}: {}", log_of(&stack, ALICE, &flood));
    }
    assert_eq!(status, "failed", "{body}");
    assert_eq!(body["errorType"], "Function.OutputLimitExceeded", "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "cut off long before 4 GB: {:?}",
        started.elapsed()
    );
    stack.wait_execution(ALICE, &flood, Duration::from_secs(10));
    let log = stack
        .request(
            reqwest::Method::GET,
            ALICE,
            &format!("/v1/executions/{flood}/log"),
        )
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(log.len() <= 65536 + 512, "{} bytes kept", log.len());
    assert!(
        log.contains("more bytes of output dropped"),
        "{}",
        &log[log.len() - 300..]
    );
    assert!(
        log.contains("output limit of 4194304 bytes per invocation passed"),
        "{}",
        &log[log.len() - 300..]
    );

    // After all of it, the node still serves a normal invocation.
    normal_invocation_works(&stack);
}

/// The network namespaces, links and servers standing in for other hosts; removed on drop.
struct TestNet {
    tag: String,
    servers: Vec<Child>,
    links: Vec<String>,
    namespaces: Vec<String>,
    agent_table: Option<String>,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A TCP server answering `banner` to each connection.
const SERVER: &str = "import socket, sys\ns = socket.socket()\ns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\ns.bind((sys.argv[1], int(sys.argv[2])))\ns.listen(16)\nwhile True:\n    c, _ = s.accept()\n    c.sendall(sys.argv[3].encode() + b'\\n')\n    c.close()\n";

impl TestNet {
    fn new() -> TestNet {
        let tag = uuid::Uuid::new_v4().simple().to_string()[..6].to_owned();
        TestNet {
            tag,
            servers: Vec::new(),
            links: Vec::new(),
            namespaces: Vec::new(),
            agent_table: None,
        }
    }

    /// A namespace `kind` joined to the host by a veth pair with `host_addr` on the host side
    /// and `ns_addr` inside (both `ip addr` arguments), serving `banner` on `ns_ip:port`.
    fn host(
        &mut self,
        kind: char,
        host_addr: &[&str],
        ns_addr: &[&str],
        server: (&str, u16, &str),
    ) {
        let ns = format!("fx{kind}{}", self.tag);
        let link = format!("fx{kind}{}h", self.tag);
        ip(&["netns", "add", &ns]);
        self.namespaces.push(ns.clone());
        ip(&[
            "link", "add", &link, "type", "veth", "peer", "name", "eth0", "netns", &ns,
        ]);
        self.links.push(link.clone());
        let mut add = vec!["addr", "add"];
        add.extend_from_slice(host_addr);
        add.extend_from_slice(&["dev", &link]);
        ip(&add);
        ip(&["link", "set", &link, "up"]);
        let mut add = vec!["-n", &ns, "addr", "add"];
        add.extend_from_slice(ns_addr);
        add.extend_from_slice(&["dev", "eth0"]);
        ip(&add);
        ip(&["-n", &ns, "link", "set", "eth0", "up"]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        let (addr, port, banner) = server;
        let child = Command::new("ip")
            .args(["netns", "exec", &ns, "/usr/bin/python3", "-c", SERVER, addr])
            .arg(port.to_string())
            .arg(banner)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        self.servers.push(child);
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        for server in &mut self.servers {
            server.kill().ok();
            server.wait().ok();
        }
        for link in &self.links {
            Command::new("ip").args(["link", "del", link]).output().ok();
        }
        for ns in &self.namespaces {
            Command::new("ip").args(["netns", "del", ns]).output().ok();
        }
        if let Some(table) = &self.agent_table {
            Command::new("nft")
                .args(["delete", "table", "inet", table])
                .output()
                .ok();
        }
    }
}

/// The agent's nftables table name (`fresco_` + FNV-1a of its id, 24 bits; see the agent's
/// `engine::net::agent_tag`).
fn agent_table(agent_id: &str) -> String {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in agent_id.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    format!("fresco_{:06x}", hash & 0x00ff_ffff)
}

/// A TCP server in this (the host's) network namespace answering `banner`, for the test's life.
fn serve_on_host(addr: &str, banner: &'static str) {
    let listener = TcpListener::bind(addr).unwrap();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let _ = std::io::Write::write_all(&mut stream, format!("{banner}\n").as_bytes());
        }
    });
}

/// Connects from this (the host's) network namespace: "connected" with the banner, or the error.
fn host_connect(addr: &str) -> String {
    let target = addr.parse().unwrap();
    match TcpStream::connect_timeout(&target, Duration::from_secs(2)) {
        Ok(mut stream) => {
            stream
                .set_read_timeout(Some(Duration::from_secs(1)))
                .unwrap();
            let mut banner = String::new();
            let _ = stream.read_to_string(&mut banner);
            format!("connected {}", banner.trim())
        }
        Err(e) => format!("{:?}", e.kind()),
    }
}

#[test]
fn network_enabled_functions_reach_the_outside_but_not_the_host_metadata_or_other_tenants() {
    let stack = Stack::start(StackOptions::default());
    let mut net = TestNet::new();
    let agent_id = stack.get(ADMIN, "/v1/agents")["agents"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    net.agent_table = Some(agent_table(&agent_id));

    // The other hosts, each in a namespace of its own.
    // An allowed outside host (TEST-NET-3, documentation addresses).
    net.host(
        'o',
        &["203.0.113.1/24"],
        &["203.0.113.10/24"],
        ("203.0.113.10", 8080, "outside-ok"),
    );
    // A service on a private management network, like the control plane's database.
    net.host(
        'm',
        &["10.255.255.1/24"],
        &["10.255.255.10/24"],
        ("10.255.255.10", 8082, "mgmt-secret"),
    );
    // The cloud's metadata service.
    net.host(
        'd',
        &["169.254.169.1", "peer", "169.254.169.254"],
        &["169.254.169.254", "peer", "169.254.169.1"],
        ("169.254.169.254", 80, "metadata-secret"),
    );
    // A service of the host itself, on one of its addresses.
    serve_on_host("203.0.113.1:8081", "host-secret");
    // Every one of them answers the host (the tests' premise holds).
    for (addr, banner) in [
        ("203.0.113.10:8080", "outside-ok"),
        ("10.255.255.10:8082", "mgmt-secret"),
        ("169.254.169.254:80", "metadata-secret"),
        ("203.0.113.1:8081", "host-secret"),
    ] {
        let mut answer = String::new();
        wait_until(
            Duration::from_secs(10),
            &format!("{addr} to answer"),
            || {
                answer = host_connect(addr);
                answer.starts_with("connected")
            },
        );
        assert_eq!(answer, format!("connected {banner}"));
    }

    // A runtime the operator allowed network for.
    let response = stack.post(
        ADMIN,
        "/v1/runtimes",
        &json!({"name": "python3-net", "image": "fresco/python3:dev", "kind": "python", "network": true}),
    );
    assert_eq!(response.status().as_u16(), 201);
    for token in [ALICE, BOB] {
        stack.create_function(
            token,
            "probe",
            "python-netprobe",
            "python3-net",
            json!({"timeout_s": 30}),
        );
    }
    // Another tenant's function listens on its address.
    let (status, id, theirs) = invoke(&stack, BOB, "probe", &json!({"listen": 8090}));
    assert_eq!(
        status,
        "succeeded",
        "{theirs}: {}",
        log_of(&stack, BOB, &id)
    );
    let their_address = theirs["address"].as_str().unwrap().to_owned();
    assert!(their_address.starts_with("198.18."), "{theirs}");
    let tenant = format!("{their_address}:8090");
    assert!(
        host_connect(&tenant).starts_with("connected"),
        "the other tenant's port is open (seen from the host)"
    );
    // A host service on the sandboxes' gateway address (it exists while a sandbox has a link).
    serve_on_host("169.254.1.1:8081", "gateway-secret");
    assert_eq!(host_connect("169.254.1.1:8081"), "connected gateway-secret");

    let targets = json!([
        ["203.0.113.10", 8080],
        ["203.0.113.1", 8081],
        ["169.254.1.1", 8081],
        ["10.255.255.10", 8082],
        ["169.254.169.254", 80],
        [their_address, 8090],
    ]);
    let (status, id, mine) = invoke(&stack, ALICE, "probe", &json!({"targets": targets}));
    assert_eq!(
        status,
        "succeeded",
        "{mine}: {}",
        log_of(&stack, ALICE, &id)
    );
    assert_eq!(mine["interfaces"], json!(["eth0", "lo"]), "{mine}");
    let my_address = mine["address"].as_str().unwrap();
    assert!(my_address.starts_with("198.18.") && my_address != their_address);
    let results = &mine["results"];
    assert_eq!(
        results["203.0.113.10:8080"], "connected: outside-ok",
        "the allowed outside host is reachable: {mine}"
    );
    for (target, what) in [
        ("203.0.113.1:8081", "the host's own services"),
        ("169.254.1.1:8081", "a host service on the sandbox gateway"),
        ("10.255.255.10:8082", "a private network"),
        ("169.254.169.254:80", "the metadata service"),
        (tenant.as_str(), "another tenant's container"),
    ] {
        let outcome = results[target].as_str().unwrap();
        assert!(
            !outcome.starts_with("connected"),
            "{what} ({target}) must be out of reach: {outcome}"
        );
    }

    // A function without network in the same node still has only loopback.
    stack.register_runtimes();
    stack.create_function(ALICE, "after", "python-hello", "python3", json!({}));
    normal_invocation_works(&stack);
    drop(stack);
    drop(net);
}
