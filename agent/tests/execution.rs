//! End-to-end tests of the execution path against the real Docker engine: the real
//! fresco-agent binary, the static shim, the runtime images from runtimes/build.sh and the
//! sample functions in tests/functions/. They fail (never skip) when Docker or an image is
//! missing.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_function_runs_synchronously_with_its_logs() {
    let api = FakeApi::start();
    let sha = api.add("python-hello");
    let agent = AgentProcess::start(AgentOptions::new(&api));
    let spec = spec("hello", "python", "main.handler", Some(sha));
    let (result, _) = agent.run(&spec, json!({"name": "fresco"})).await;
    assert_eq!(result["status"], "succeeded", "{result}");
    let response: serde_json::Value =
        serde_json::from_str(result["response"].as_str().expect("response text")).expect("json");
    assert_eq!(response, json!({"greeting": "hello fresco"}));
    assert_eq!(result["cold"], true);
    assert!(result["init_ms"].as_f64().expect("init_ms") > 0.0);
    assert!(
        result["logs"]
            .as_str()
            .expect("logs")
            .contains("hello log line for fresco"),
        "logs: {result}"
    );
    let containers = agent.containers();
    assert_eq!(containers.len(), 1, "one warm container stays");
    let inspect = Command::new(DOCKER)
        .args([
            "inspect",
            "--format",
            "{{.HostConfig.ReadonlyRootfs}} {{.HostConfig.NetworkMode}} {{.HostConfig.CapDrop}} {{.HostConfig.SecurityOpt}} {{.HostConfig.Memory}} {{.HostConfig.MemorySwap}} {{.HostConfig.CpuQuota}} {{.HostConfig.CpuPeriod}} {{.HostConfig.Ulimits}} {{index .Config.Labels \"fresco.project\"}} {{.Config.User}}",
            &containers[0],
        ])
        .output()
        .expect("inspect");
    let text = String::from_utf8_lossy(&inspect.stdout).trim().to_owned();
    let (settings, user) = text.rsplit_once(' ').expect("user");
    assert_eq!(
        settings,
        "true none [ALL] [no-new-privileges] 134217728 134217728 25000 100000 [map[Hard:1024 Name:nofile Soft:1024] map[Hard:64 Name:nproc Soft:64]] p-test"
    );
    // Its own uid and gid from the sandbox range, not a host user.
    let uid: u32 = user
        .split(':')
        .next()
        .expect("uid")
        .parse()
        .expect("numeric uid");
    assert_eq!(user, format!("{uid}:{uid}"));
    assert!(
        (agent.uid_base..agent.uid_base + AGENT_UIDS).contains(&uid),
        "{user}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmodified_lambda_handler_gets_a_lambda_context() {
    let api = FakeApi::start();
    let sha = api.add("python-lambda");
    let agent = AgentProcess::start(AgentOptions::new(&api));
    let mut spec = spec(
        "lambda-style",
        "python",
        "lambda_function.lambda_handler",
        Some(sha),
    );
    spec.environment.insert("GREETING".into(), "hi".into());
    spec.environment
        .insert("AWS_LAMBDA_RUNTIME_API".into(), "127.0.0.2:1".into());
    let (result, _) = agent.run(&spec, json!({"k": [1, 2]})).await;
    assert_eq!(result["status"], "succeeded", "{result}");
    let response: serde_json::Value =
        serde_json::from_str(result["response"].as_str().expect("response")).expect("json");
    assert_eq!(response["statusCode"], 200);
    let body: serde_json::Value =
        serde_json::from_str(response["body"].as_str().expect("body")).expect("body json");
    assert_eq!(body["request_id"], result["execution_id"]);
    assert_eq!(body["function_name"], "lambda-style");
    assert_eq!(body["function_version"], "1");
    assert_eq!(body["memory_limit_in_mb"], 128);
    assert_eq!(body["arn"], "arn:fresco:function:p-test:lambda-style:1");
    assert_eq!(body["env_greeting"], "hi");
    assert_eq!(
        body["runtime_api"], "127.0.0.1:9001",
        "tenant cannot move the runtime api"
    );
    assert_eq!(body["event"], json!({"k": [1, 2]}));
    let remaining = body["remaining_ms"].as_i64().expect("remaining");
    assert!(
        remaining > 5_000 && remaining <= 10_000,
        "remaining {remaining}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provided_runtime_runs_the_package_bootstrap() {
    let api = FakeApi::start();
    let sha = api.add("provided-echo");
    let agent = AgentProcess::start(AgentOptions::new(&api));
    let spec = spec("echo", "provided", "unused", Some(sha));
    for n in 0..2 {
        let (result, _) = agent.run(&spec, json!({"n": n})).await;
        assert_eq!(result["status"], "succeeded", "{result}");
        let response: serde_json::Value =
            serde_json::from_str(result["response"].as_str().expect("response")).expect("json");
        assert_eq!(response, json!({"echo": {"n": n}}));
        assert_eq!(result["cold"], n == 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_call_is_warm_and_faster() {
    let api = FakeApi::start();
    let sha = api.add("python-hello");
    let agent = AgentProcess::start(AgentOptions::new(&api));
    let spec = spec("warm", "python", "main.handler", Some(sha));
    let (first, cold_time) = agent.run(&spec, json!({})).await;
    let (second, warm_time) = agent.run(&spec, json!({})).await;
    assert_eq!(first["cold"], true);
    assert_eq!(second["cold"], false);
    assert_eq!(second["status"], "succeeded");
    assert!(second["init_ms"].is_null());
    assert!(
        warm_time < cold_time,
        "warm {warm_time:?} should beat cold {cold_time:?}"
    );
    assert_eq!(
        agent.containers().len(),
        1,
        "the same container served both"
    );
    let logs = second["logs"].as_str().expect("logs");
    assert!(logs.contains("hello log line"), "{second}");
    assert_eq!(
        api.downloads.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "code fetched once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_exception_is_a_structured_error() {
    let api = FakeApi::start();
    let sha = api.add("python-error");
    let agent = AgentProcess::start(AgentOptions::new(&api));
    let spec = spec("error", "python", "main.handler", Some(sha));
    let (result, _) = agent.run(&spec, json!({})).await;
    assert_eq!(result["status"], "failed", "{result}");
    assert_eq!(result["error"]["errorType"], "ValueError");
    assert_eq!(result["error"]["errorMessage"], "boom");
    let trace = result["error"]["stackTrace"]
        .as_array()
        .expect("stack trace");
    assert!(
        trace
            .iter()
            .any(|f| f.as_str().unwrap_or("").contains("main.py")),
        "{trace:?}"
    );
    assert!(result["logs"].as_str().unwrap_or("").contains("ValueError"));
    // The container survives a function error and serves the next call warm.
    let (again, _) = agent.run(&spec, json!({})).await;
    assert_eq!(again["cold"], false);

    // A handler that cannot be imported is an init error.
    let missing = common::spec(
        "missing",
        "python",
        "nope.handler",
        spec.code_sha256.clone(),
    );
    let (result, _) = agent.run(&missing, json!({})).await;
    assert_eq!(result["status"], "failed", "{result}");
    assert_eq!(result["error"]["errorType"], "Runtime.ImportModuleError");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_kills_the_container() {
    let api = FakeApi::start();
    let sha = api.add("python-sleep");
    let agent = AgentProcess::start(AgentOptions::new(&api));
    let mut spec = spec("sleepy", "python", "main.handler", Some(sha));
    spec.timeout_s = 1;
    let (result, elapsed) = agent.run(&spec, json!({"seconds": 30})).await;
    assert_eq!(result["status"], "timeout", "{result}");
    assert_eq!(result["error"]["errorType"], "Function.Timeout");
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
    assert!(agent.containers().is_empty(), "the container is gone");
    // A quick call of the same function gets a fresh container.
    let (ok, _) = agent.run(&spec, json!({"seconds": 0})).await;
    assert_eq!(ok["status"], "succeeded", "{ok}");
    assert_eq!(ok["cold"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_hog_is_killed_as_oom() {
    let api = FakeApi::start();
    let sha = api.add("python-memhog");
    let agent = AgentProcess::start(AgentOptions::new(&api));
    let mut spec = spec("hog", "python", "main.handler", Some(sha));
    spec.memory_mb = 64;
    let (result, _) = agent.run(&spec, json!({"mb": 512})).await;
    assert_eq!(result["status"], "oom", "{result}");
    assert_eq!(result["error"]["errorType"], "Runtime.OutOfMemory");
    assert!(
        agent.containers().is_empty(),
        "the killed container is removed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_tmp_is_writable() {
    let api = FakeApi::start();
    let sha = api.add("python-write");
    let agent = AgentProcess::start(AgentOptions::new(&api));
    let spec = spec("write", "python", "main.handler", Some(sha));
    let (result, _) = agent.run(&spec, json!({})).await;
    assert_eq!(result["status"], "succeeded", "{result}");
    let r: serde_json::Value =
        serde_json::from_str(result["response"].as_str().expect("response")).expect("json");
    assert_eq!(r["/tmp"], "ok");
    for path in ["/var/task", "/", "/etc"] {
        let outcome = r[path].as_str().expect("outcome");
        assert!(
            outcome.contains("Read-only") || outcome.contains("Permission"),
            "{path}: {outcome}"
        );
    }
    let uid = r["uid"].as_u64().expect("uid");
    let range = u64::from(agent.uid_base)..u64::from(agent.uid_base + AGENT_UIDS);
    assert!(range.contains(&uid), "sandbox uid {uid}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_connections_fail() {
    let api = FakeApi::start();
    let sha = api.add("python-net");
    let agent = AgentProcess::start(AgentOptions::new(&api));
    let spec = spec("net", "python", "main.handler", Some(sha));
    let (result, _) = agent.run(&spec, json!({})).await;
    assert_eq!(result["status"], "succeeded", "{result}");
    let r: serde_json::Value =
        serde_json::from_str(result["response"].as_str().expect("response")).expect("json");
    assert_eq!(r["interfaces"], json!(["lo"]), "only loopback: {r}");
    assert_eq!(r["routes"], json!([]), "no route: {r}");
    let outcome = r["host"].as_str().expect("outcome");
    assert_ne!(
        outcome, "connected",
        "the host's services on 127.0.0.1 must not be reachable"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tickets_are_refused() {
    let api = FakeApi::start();
    let sha = api.add("python-hello");
    let agent = AgentProcess::start(AgentOptions::new(&api));
    let spec = spec("hello", "python", "main.handler", Some(sha));
    let cases = [
        ("forged", forged_ticket(&agent.agent_id, &spec)),
        ("expired", expired_ticket(&agent.agent_id, &spec)),
        ("other agent", ticket_for("someone-else", &spec)),
        ("garbage", "not-a-ticket".to_owned()),
    ];
    for (what, ticket) in cases {
        let (status, body) = agent.run_raw(&ticket, json!({})).await;
        assert_eq!(status, 401, "{what}: {body}");
        assert_eq!(body["error"]["code"], 401, "{what}: {body}");
    }
    let response = agent
        .client
        .post(format!("{}/v1/run", agent.url))
        .json(&json!({"payload": {}}))
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status().as_u16(), 401, "no ticket at all");
    assert!(agent.containers().is_empty(), "nothing ran");
    assert_eq!(api.downloads.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_removes_leftover_containers() {
    let api = FakeApi::start();
    let options = AgentOptions::new(&api);
    let agent_id = options.agent_id.clone();
    let created = Command::new(DOCKER)
        .args([
            "create",
            "--label",
            &format!("fresco.agent={agent_id}"),
            "--network",
            "none",
            PROVIDED_IMAGE,
            "/bin/true",
        ])
        .output()
        .expect("docker create");
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let leftover = String::from_utf8_lossy(&created.stdout).trim().to_owned();
    assert!(container_exists(&leftover));
    let agent = AgentProcess::start(options);
    assert!(!container_exists(&leftover), "reconcile removed {leftover}");
    assert!(agent.containers().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_heartbeats_and_shutdown() {
    let api = FakeApi::start();
    let sha = api.add("python-hello");
    let scheduler = FakeScheduler::start();
    let mut options = AgentOptions::new(&api);
    options.memory_mb = 300;
    options.scheduler_url = scheduler.url.clone();
    let mut agent = AgentProcess::start(options);
    let mut big = spec("big", "python", "main.handler", Some(sha.clone()));
    big.memory_mb = 512;
    let (status, body) = agent
        .run_raw(&ticket_for(&agent.agent_id, &big), json!({}))
        .await;
    assert_eq!(status, 503, "{body}");

    // Two concurrent first calls of one package: one download, two containers.
    let small = spec("small", "python", "main.handler", Some(sha));
    let (a, b) = tokio::join!(agent.run(&small, json!({})), agent.run(&small, json!({})));
    assert_eq!(
        (a.0["status"].as_str(), b.0["status"].as_str()),
        (Some("succeeded"), Some("succeeded"))
    );
    assert_eq!(api.downloads.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(agent.containers().len(), 2);

    // The scheduler hears about the warm pool.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let warm_key = small.warm_key();
    loop {
        let seen = scheduler.heartbeats.lock().expect("lock").iter().any(|h| {
            h["memory_mb_total"] == 300
                && h["warm"].as_array().is_some_and(|w| {
                    w.iter()
                        .any(|p| p["key"] == warm_key.as_str() && p["idle"] == 2)
                })
                && h["images"]
                    .as_array()
                    .is_some_and(|i| i.iter().any(|x| x == PYTHON_IMAGE))
        });
        if seen {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no heartbeat with the warm pool"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // SIGTERM: the agent removes its containers before it exits.
    agent.stop();
    assert!(
        agent.containers().is_empty(),
        "containers removed at shutdown"
    );
}

/// The inode of the socket listening on 127.0.0.1:9001 (`0100007F:2329`, state `0A`) in the
/// network namespace whose `/proc/<pid>/net/tcp` this is.
fn runtime_api_listener(net_tcp: &str) -> Option<String> {
    net_tcp.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields.get(1) == Some(&"0100007F:2329") && fields.get(3) == Some(&"0A"))
            .then(|| fields.get(9).map(|inode| (*inode).to_owned()))
            .flatten()
    })
}

/// Whether process `pid` holds the socket with inode `inode`.
fn holds_socket(pid: u32, inode: &str) -> bool {
    let wanted = format!("socket:[{inode}]");
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fd dir")
        .filter_map(Result::ok)
        .any(|fd| {
            std::fs::read_link(fd.path())
                .map(|target| target.to_string_lossy() == wanted)
                .unwrap_or(false)
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runtime_api_listens_only_inside_its_sandbox() {
    let api = FakeApi::start();
    let sha = api.add("python-netprobe");
    let agent = AgentProcess::start(AgentOptions::new(&api));
    let probe = spec("probe", "python", "main.handler", Some(sha));
    // From inside, the runtime API answers on the container's own loopback (the runtime
    // itself just fetched this event from it).
    let (result, _) = agent
        .run(&probe, json!({"targets": [["127.0.0.1", 9001]]}))
        .await;
    assert_eq!(result["status"], "succeeded", "{result}");
    assert!(
        result["response"]
            .as_str()
            .expect("response")
            .contains("connected"),
        "{result}"
    );
    let containers = agent.containers();
    assert_eq!(containers.len(), 1);
    let pid = Command::new(DOCKER)
        .args(["inspect", "--format", "{{.State.Pid}}", &containers[0]])
        .output()
        .expect("inspect");
    let pid = String::from_utf8_lossy(&pid.stdout).trim().to_owned();
    // The listener is the agent's own socket (no relay in the container), in the container's
    // network namespace only.
    let inside = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).expect("net/tcp");
    let inode = runtime_api_listener(&inside).expect("a listener on 127.0.0.1:9001 inside");
    assert!(
        holds_socket(agent.pid(), &inode),
        "the agent holds the sandbox's listener"
    );
    let shim_pid: u32 = pid.parse().expect("pid");
    assert!(!holds_socket(shim_pid, &inode), "the shim does not");
    let host = std::fs::read_to_string("/proc/self/net/tcp").expect("net/tcp");
    assert_eq!(
        runtime_api_listener(&host),
        None,
        "nothing listens on the host's loopback port"
    );
    assert!(
        std::net::TcpStream::connect_timeout(
            &"127.0.0.1:9001".parse().expect("addr"),
            Duration::from_secs(1)
        )
        .is_err(),
        "the host cannot reach a sandbox's runtime api"
    );
    // Another sandbox has its own loopback: its 127.0.0.1:9001 is its own runtime api, and
    // the first sandbox's listener is not in its namespace.
    let other = spec(
        "probe-2",
        "python",
        "main.handler",
        Some(api.add("python-netprobe")),
    );
    let (second, _) = agent.run(&other, json!({})).await;
    assert_eq!(second["status"], "succeeded", "{second}");
    let pids: Vec<String> = agent
        .containers()
        .iter()
        .map(|id| {
            let out = Command::new(DOCKER)
                .args(["inspect", "--format", "{{.State.Pid}}", id])
                .output()
                .expect("inspect");
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        })
        .collect();
    assert_eq!(pids.len(), 2);
    let namespaces: Vec<std::path::PathBuf> = pids
        .iter()
        .map(|pid| std::fs::read_link(format!("/proc/{pid}/ns/net")).expect("netns"))
        .collect();
    assert_ne!(namespaces[0], namespaces[1], "one network namespace each");
}
