//! Pre-warmed sandboxes (issue 12), against the real Docker engine and the real agent binary:
//! a claimed sandbox runs its function's code with its environment and limits, a sandbox that
//! served one project never serves another, the pools refill after claims, a burst larger than
//! the pools is served (pool first, then cold), and a restarted agent removes the pools it left.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use fresco_common::wire::FunctionSpec;
use serde_json::{json, Value};

/// The runtime images' tag: `$FRESCO_RUNTIME_TAG` (as `runtimes/build.sh` takes it), else dev.
fn tag() -> String {
    std::env::var("FRESCO_RUNTIME_TAG")
        .ok()
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "dev".to_owned())
}

fn python_image() -> String {
    format!("fresco/python3:{}", tag())
}

fn provided_image() -> String {
    format!("fresco/provided:{}", tag())
}

/// `[agent]` lines keeping `size` sandboxes (at most `max`) per runtime, 128 MB each.
fn prewarm_config(size: u32, max: u32) -> String {
    format!(
        "prewarm_runtimes = python={}, provided={}\nprewarm_size = {size}\nprewarm_max = {max}\n\
         prewarm_memory_mb = 128\nprewarm_window = 30\n",
        python_image(),
        provided_image()
    )
}

fn start_agent(api: &FakeApi, size: u32, max: u32, memory_mb: u64) -> AgentProcess {
    let mut options = AgentOptions::new(api);
    options.extra = prewarm_config(size, max);
    options.memory_mb = memory_mb;
    AgentProcess::start(options)
}

/// Ready pre-warmed sandboxes per image, from the agent's health check.
async fn ready(agent: &AgentProcess) -> BTreeMap<String, u64> {
    let health: Value = agent
        .client
        .get(format!("{}/healthcheck", agent.url))
        .send()
        .await
        .expect("healthcheck")
        .json()
        .await
        .expect("json");
    health["prewarmed"]
        .as_array()
        .expect("prewarmed")
        .iter()
        .map(|p| {
            (
                p["image"].as_str().unwrap_or_default().to_owned(),
                p["ready"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

/// Waits until every pool has at least `at_least` ready sandboxes.
async fn wait_ready(agent: &AgentProcess, at_least: u64, limit: Duration) {
    wait_pools(agent, None, at_least, limit).await;
}

/// Waits until the pool of `image` (every pool: `None`) has at least `at_least` ready.
async fn wait_pools(agent: &AgentProcess, image: Option<&str>, at_least: u64, limit: Duration) {
    let started = Instant::now();
    loop {
        let now = ready(agent).await;
        let enough = match image {
            Some(image) => now.get(image).is_some_and(|&n| n >= at_least),
            None => now.len() == 2 && now.values().all(|&n| n >= at_least),
        };
        if enough {
            return;
        }
        assert!(
            started.elapsed() < limit,
            "pools not at {at_least} within {limit:?}: {now:?}\n{}",
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The agent's pre-warmed containers of `kind` (full ids), claimed or not.
fn pool_containers(agent: &AgentProcess, kind: &str) -> Vec<String> {
    let out = Command::new(DOCKER)
        .args([
            "ps",
            "-q",
            "--no-trunc",
            "--filter",
            &format!("label=fresco.agent={}", agent.agent_id),
            "--filter",
            &format!("label=fresco.prewarm={kind}"),
        ])
        .output()
        .expect("docker ps");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The container whose hostname (its short id) a function reported.
fn container_of(host: &str, ids: &[String]) -> Option<String> {
    ids.iter().find(|id| id.starts_with(host)).cloned()
}

fn freezer_state(id: &str) -> String {
    std::fs::read_to_string(format!("/sys/fs/cgroup/freezer/docker/{id}/freezer.state"))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

fn python_spec(sha: &str, project: &str, name: &str) -> FunctionSpec {
    let mut spec = spec(name, "python", "main.handler", Some(sha.to_owned()));
    spec.image = python_image();
    spec.project_id = project.to_owned();
    spec.environment = BTreeMap::from([("GREETING".to_owned(), format!("hi {project}"))]);
    spec
}

fn provided_spec(sha: &str, project: &str, name: &str) -> FunctionSpec {
    let mut spec = spec(name, "provided", "unused", Some(sha.to_owned()));
    spec.image = provided_image();
    spec.project_id = project.to_owned();
    spec.environment = BTreeMap::from([("GREETING".to_owned(), format!("hi {project}"))]);
    spec
}

fn response(result: &Value) -> Value {
    serde_json::from_str(result["response"].as_str().expect("response text")).expect("json")
}

/// Asserts the log ends with a Lambda-style REPORT line for this run.
fn assert_report(result: &Value, init: bool) {
    let logs = result["logs"].as_str().expect("logs");
    let last = logs.lines().last().unwrap_or_default();
    let id = result["execution_id"].as_str().expect("id");
    assert!(
        last.starts_with(&format!("REPORT RequestId: {id}\tDuration: "))
            && last.contains("\tBilled Duration: ")
            && last.contains("\tMemory Size: 128 MB\tMax Memory Used: "),
        "{logs:?}"
    );
    assert_eq!(last.contains("\tInit Duration: "), init, "{logs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claimed_sandbox_runs_its_function_with_its_code_environment_and_limits() {
    let api = FakeApi::start();
    let py_sha = api.add("python-sandbox");
    let pr_sha = api.add("provided-sandbox");
    let agent = start_agent(&api, 2, 4, 4096);
    wait_ready(&agent, 2, Duration::from_secs(30)).await;
    let python_pool = pool_containers(&agent, "python");
    let provided_pool = pool_containers(&agent, "provided");
    assert_eq!((python_pool.len(), provided_pool.len()), (2, 2));
    // Waiting sandboxes are frozen and keep every security default.
    for id in python_pool.iter().chain(&provided_pool) {
        wait_until_frozen(id);
        let inspect = Command::new(DOCKER)
            .args([
                "inspect",
                "--format",
                "{{.HostConfig.ReadonlyRootfs}} {{.HostConfig.NetworkMode}} {{.HostConfig.CapDrop}} {{.HostConfig.SecurityOpt}} {{.HostConfig.Memory}} {{.HostConfig.PidsLimit}} {{.Config.User}}",
                id,
            ])
            .output()
            .expect("inspect");
        let text = String::from_utf8_lossy(&inspect.stdout);
        assert!(
            text.starts_with("true none [ALL] [no-new-privileges] 134217728 64 "),
            "{text}"
        );
    }

    // Python: the handler is imported at claim, from the code put in the sandbox's /var/task.
    let spec = python_spec(&py_sha, "p-a", "sandbox");
    let (first, _) = agent.run(&spec, json!({})).await;
    assert_eq!(first["status"], "succeeded", "{first}");
    assert_eq!(
        (&first["cold"], &first["prewarmed"]),
        (&json!(true), &json!(true))
    );
    assert!(first["init_ms"].as_f64().expect("init_ms") > 0.0, "{first}");
    assert_report(&first, true);
    let body = response(&first);
    let claimed = container_of(body["host"].as_str().expect("host"), &python_pool)
        .unwrap_or_else(|| panic!("{body} ran in no pre-warmed python sandbox"));
    assert_eq!(body["marker"], "python-sandbox-code");
    assert_eq!(body["greeting"], "hi p-a");
    assert_eq!(body["function_name"], "sandbox");
    assert_eq!(body["memory_size"], "128");
    assert_eq!(body["memory_limit"], "134217728");
    assert_eq!(body["cpu_quota"], "25000");
    assert_eq!(body["pids_max"], "64");
    assert_eq!(body["task_files"], json!(["main.py", "marker.py"]));
    assert_eq!(
        body["fresco_vars"],
        json!([]),
        "the platform's variables stay out"
    );
    // Then it is that function's warm sandbox.
    let (second, _) = agent.run(&spec, json!({})).await;
    assert_eq!(
        (&second["cold"], &second["prewarmed"]),
        (&json!(false), &json!(null))
    );
    assert_eq!(response(&second)["host"], body["host"]);
    assert_report(&second, false);

    // Provided: the shim starts the package's bootstrap at claim, with the function's env.
    let spec = provided_spec(&pr_sha, "p-a", "sandbox-sh");
    let (first, _) = agent.run(&spec, json!({})).await;
    assert_eq!(first["status"], "succeeded", "{first}");
    assert_eq!(first["prewarmed"], true);
    let body = response(&first);
    assert!(
        container_of(body["host"].as_str().expect("host"), &provided_pool).is_some(),
        "{body} ran in no pre-warmed provided sandbox"
    );
    assert_eq!(body["greeting"], "hi p-a");
    assert_eq!(body["function_name"], "sandbox-sh");
    assert_eq!(body["memory_limit"], "134217728");
    assert_report(&first, true);

    // The pools refill with new sandboxes (and grow with the claims, within prewarm_max).
    wait_ready(&agent, 2, Duration::from_secs(30)).await;
    let refilled: HashSet<String> = pool_containers(&agent, "python").into_iter().collect();
    assert!(
        refilled.contains(&claimed),
        "the claimed one lives on, as the function's"
    );
    assert!(refilled.len() >= 3, "{refilled:?}");
}

fn wait_until_frozen(id: &str) {
    let started = Instant::now();
    while freezer_state(id) != "FROZEN" {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{id} is {} while it waits",
            freezer_state(id)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sandbox_that_served_one_project_never_serves_another() {
    let api = FakeApi::start();
    let sha = api.add("python-sandbox");
    let agent = start_agent(&api, 2, 2, 4096);
    wait_ready(&agent, 2, Duration::from_secs(30)).await;
    let alice = python_spec(&sha, "p-alice", "a");
    let (first, _) = agent.run(&alice, json!({})).await;
    assert_eq!(first["prewarmed"], true, "{first}");
    let alice_host = response(&first)["host"].as_str().expect("host").to_owned();
    // Bob's new functions take the other pre-warmed sandboxes, then new ones, never Alice's.
    let mut bob_hosts = HashSet::new();
    for n in 0..5 {
        let bob = python_spec(&sha, "p-bob", &format!("b{n}"));
        let (result, _) = agent.run(&bob, json!({})).await;
        assert_eq!(result["status"], "succeeded", "{result}");
        let body = response(&result);
        assert_eq!(body["greeting"], "hi p-bob");
        bob_hosts.insert(body["host"].as_str().expect("host").to_owned());
    }
    assert_eq!(
        bob_hosts.len(),
        5,
        "one sandbox per function: {bob_hosts:?}"
    );
    assert!(
        !bob_hosts.contains(&alice_host),
        "{alice_host} served project p-alice and then p-bob"
    );
    // Alice's own function still has its sandbox.
    let (again, _) = agent.run(&alice, json!({})).await;
    assert_eq!(again["cold"], false);
    assert_eq!(response(&again)["host"], alice_host.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_new_functions_is_served_from_the_pool_then_cold() {
    let api = FakeApi::start();
    let sha = api.add("provided-sandbox");
    // 50 functions of 128 MB and the pools fit; nothing is evicted.
    let agent = start_agent(&api, 2, 4, 8192);
    wait_ready(&agent, 2, Duration::from_secs(30)).await;
    let specs: Vec<FunctionSpec> = (0..50)
        .map(|n| provided_spec(&sha, "p-burst", &format!("f{n}")))
        .collect();
    let results =
        futures_util::future::join_all(specs.iter().map(|spec| agent.run(spec, json!({})))).await;
    let mut hosts = HashSet::new();
    let mut prewarmed = 0;
    for (result, _) in &results {
        assert_eq!(result["status"], "succeeded", "{result}");
        assert_eq!(result["cold"], true);
        if result["prewarmed"] == true {
            prewarmed += 1;
        }
        hosts.insert(response(result)["host"].as_str().expect("host").to_owned());
    }
    assert_eq!(hosts.len(), 50, "a sandbox of its own for each function");
    assert!(prewarmed >= 2, "the ready pool served first: {prewarmed}");
    assert!(prewarmed < 50, "then cold starts: {prewarmed}");
    // The pool refills, grown by the demand (up to prewarm_max); the other keeps its size.
    wait_pools(&agent, Some(&provided_image()), 4, Duration::from_secs(60)).await;
    assert_eq!(ready(&agent).await.get(&python_image()), Some(&2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_agent_removes_the_pools_it_left() {
    let api = FakeApi::start();
    let mut options = AgentOptions::new(&api);
    options.extra = prewarm_config(1, 1);
    let agent_id = options.agent_id.clone();
    let mut agent = AgentProcess::start(options);
    wait_ready(&agent, 1, Duration::from_secs(30)).await;
    let left: Vec<String> = ["python", "provided"]
        .iter()
        .flat_map(|kind| pool_containers(&agent, kind))
        .collect();
    assert_eq!(left.len(), 2);
    agent.crash();
    assert!(
        left.iter().all(|id| container_exists(id)),
        "a crash leaves them"
    );

    let mut options = AgentOptions::new(&api);
    options.agent_id = agent_id;
    options.extra = prewarm_config(1, 1);
    let agent = AgentProcess::start(options);
    for id in &left {
        assert!(
            !container_exists(id),
            "{id} outlived the agent that made it"
        );
    }
    wait_ready(&agent, 1, Duration::from_secs(30)).await;
    let fresh: Vec<String> = ["python", "provided"]
        .iter()
        .flat_map(|kind| pool_containers(&agent, kind))
        .collect();
    assert_eq!(fresh.len(), 2, "new pools: {fresh:?}");
    assert!(fresh.iter().all(|id| !left.contains(id)));
}
