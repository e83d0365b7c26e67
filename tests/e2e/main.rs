//! End-to-end: client → fresco-api → fresco-scheduler → fresco-agent → Docker container → back,
//! with the real binaries, PostgreSQL and Docker engine (see harness.rs).

#![allow(clippy::unwrap_used)]

mod cold;
mod events;
mod faults;
mod grants;
mod hooks;
mod lifecycle;
mod notifications;
mod pipelines;
mod shadow;
mod trust;

use std::time::{Duration, Instant};

use fresco_e2e::{wait_until, Stack, StackOptions, ADMIN};
use serde_json::{json, Value};

const ALICE: &str = "alice:e2e-project-a:member";
const BOB: &str = "bob:e2e-project-b:member";

/// Invokes synchronously; returns the execution status header and the JSON body.
fn invoke_json(stack: &Stack, token: &str, function: &str, event: &Value) -> (String, Value) {
    let response = stack.invoke(token, function, event);
    assert_eq!(response.status().as_u16(), 200, "invoking {function}");
    let status = response.headers()["x-execution-status"]
        .to_str()
        .unwrap()
        .to_owned();
    let text = response.text().unwrap();
    let body: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{function} answered non-JSON {text:?}: {e}"));
    (status, body)
}

#[test]
fn sync_invocations_run_isolated_and_report_every_outcome() {
    let stack = Stack::start(StackOptions::default());
    stack.register_runtimes();
    stack.create_function(
        ALICE,
        "hello",
        "python-hello",
        "python3",
        json!({"memory_mb": 128}),
    );

    // Cold, then warm: the second call reuses the container and is faster.
    let started = Instant::now();
    let first = stack.invoke(ALICE, "hello", &json!({"name": "e2e"}));
    let cold_time = started.elapsed();
    assert_eq!(first.status().as_u16(), 200);
    let first_start = first.headers()["x-execution-cold"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        first_start == "cold" || first_start == "prewarmed",
        "a first invocation is cold or pre-warmed, not {first_start}"
    );
    let execution_id = first.headers()["x-execution-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        first.json::<Value>().unwrap(),
        json!({"greeting": "hello e2e"})
    );
    let started = Instant::now();
    let second = stack.invoke(ALICE, "hello", &json!({"name": "again"}));
    let warm_time = started.elapsed();
    assert_eq!(second.headers()["x-execution-cold"], "false");
    assert!(
        warm_time < cold_time,
        "warm {warm_time:?} should beat cold {cold_time:?}"
    );

    // The execution is recorded with its log (written off the hot path, so wait for it).
    let execution = stack.wait_execution(ALICE, &execution_id, Duration::from_secs(10));
    assert_eq!(execution["status"], "succeeded");
    assert_eq!(execution["cold"], true);
    let log = stack
        .request(
            reqwest::Method::GET,
            ALICE,
            &format!("/v1/executions/{execution_id}/log"),
        )
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(log.contains("hello log line for e2e"), "log: {log:?}");
    // Its initialisation is reported apart from its duration, and its log ends like Lambda's.
    let init = execution["init_duration_ms"]
        .as_f64()
        .expect("init_duration_ms");
    assert!(init > 0.0, "{execution}");
    let report = log.lines().last().unwrap_or_default();
    assert!(
        report.starts_with(&format!("REPORT RequestId: {execution_id}\tDuration: "))
            && report.contains("\tMemory Size: 128 MB\tMax Memory Used: ")
            && report.contains("\tInit Duration: "),
        "{log}"
    );

    // Another project sees neither the function nor the execution.
    assert_eq!(
        stack.invoke(BOB, "hello", &json!({})).status().as_u16(),
        404
    );
    let other = stack
        .request(
            reqwest::Method::GET,
            BOB,
            &format!("/v1/executions/{execution_id}"),
        )
        .send()
        .unwrap();
    assert_eq!(other.status().as_u16(), 404);

    // An unmodified Lambda handler, with the context object and environment.
    stack.create_function(
        ALICE,
        "lambda",
        "python-lambda",
        "python3",
        json!({"handler": "lambda_function.lambda_handler", "environment": {"GREETING": "hi"}, "memory_mb": 256}),
    );
    let (status, body) = invoke_json(&stack, ALICE, "lambda", &json!({"k": 1}));
    assert_eq!(status, "succeeded");
    assert_eq!(
        stack
            .invoke(ALICE, "does-not-exist", &json!({}))
            .status()
            .as_u16(),
        404
    );
    let inner: Value = serde_json::from_str(body["body"].as_str().unwrap()).unwrap();
    assert_eq!(inner["function_name"], "lambda");
    assert_eq!(inner["memory_limit_in_mb"], 256);
    assert_eq!(inner["env_greeting"], "hi");
    assert_eq!(inner["runtime_api"], "127.0.0.1:9001");
    assert_eq!(inner["event"], json!({"k": 1}));
    assert!(inner["remaining_ms"].as_i64().unwrap() > 0);

    // The provided runtime: the package's own bootstrap.
    stack.create_function(
        ALICE,
        "echo",
        "provided-echo",
        "provided",
        json!({"handler": "bootstrap"}),
    );
    let (status, body) = invoke_json(&stack, ALICE, "echo", &json!({"x": [1, 2]}));
    assert_eq!(status, "succeeded");
    assert_eq!(body, json!({"echo": {"x": [1, 2]}}));

    // A handler exception is a structured error.
    stack.create_function(ALICE, "error", "python-error", "python3", json!({}));
    let (status, body) = invoke_json(&stack, ALICE, "error", &json!({}));
    assert_eq!(status, "failed");
    assert_eq!(body["errorType"], "ValueError");
    assert_eq!(body["errorMessage"], "boom");

    // The wall-clock timeout kills it.
    stack.create_function(
        ALICE,
        "sleep",
        "python-sleep",
        "python3",
        json!({"timeout_s": 1}),
    );
    let (status, _) = invoke_json(&stack, ALICE, "sleep", &json!({"seconds": 5}));
    assert_eq!(status, "timeout");

    // A memory hog is killed by the kernel and reported as such.
    stack.create_function(
        ALICE,
        "memhog",
        "python-memhog",
        "python3",
        json!({"memory_mb": 64, "timeout_s": 20}),
    );
    let (status, _) = invoke_json(&stack, ALICE, "memhog", &json!({"mb": 512}));
    assert_eq!(status, "oom");

    // Read-only root: only /tmp is writable, and the function is not root.
    stack.create_function(ALICE, "write", "python-write", "python3", json!({}));
    let (status, body) = invoke_json(&stack, ALICE, "write", &json!({}));
    assert_eq!(status, "succeeded");
    assert_eq!(body["/tmp"], "ok");
    for path in ["/var/task", "/", "/etc"] {
        assert_ne!(body[path], "ok", "{path} must not be writable: {body}");
    }
    assert_ne!(body["uid"], 0);

    // No network: only the loopback interface, nothing reachable.
    stack.create_function(
        ALICE,
        "net",
        "python-net",
        "python3",
        json!({"timeout_s": 10}),
    );
    let (status, body) = invoke_json(&stack, ALICE, "net", &json!({"port": stack.api.port}));
    assert_eq!(status, "succeeded");
    assert_eq!(body["interfaces"], json!(["lo"]), "{body}");
    assert_eq!(body["routes"], json!([]), "{body}");
    assert_ne!(
        body["host"], "connected",
        "the host's API must be out of reach: {body}"
    );
}

#[test]
fn async_invocations_are_durable_and_complete() {
    let stack = Stack::start(StackOptions::default());
    stack.register_runtimes();
    // A generous timeout: 20 cold starts at once on a small, busy machine are slow, and the
    // timeout is not what this test is about.
    stack.create_function(
        ALICE,
        "hello",
        "python-hello",
        "python3",
        json!({"timeout_s": 60}),
    );
    let mut ids = Vec::new();
    for i in 0..20 {
        let response = stack.post(
            ALICE,
            "/v1/functions/hello/invoke?async=true",
            &json!({"name": format!("n{i}")}),
        );
        assert_eq!(response.status().as_u16(), 202);
        let body: Value = response.json().unwrap();
        assert_eq!(body["execution"]["status"], "queued");
        ids.push(body["execution"]["id"].as_str().unwrap().to_owned());
    }
    // The header form of async works too.
    let response = stack
        .request(reqwest::Method::POST, ALICE, "/v1/functions/hello/invoke")
        .header("x-invocation-type", "async")
        .json(&json!({"name": "header"}))
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    ids.push(
        response.json::<Value>().unwrap()["execution"]["id"]
            .as_str()
            .unwrap()
            .to_owned(),
    );
    for id in &ids {
        let execution = stack.wait_execution(ALICE, id, Duration::from_secs(60));
        assert_eq!(execution["status"], "succeeded", "{execution}");
        assert_eq!(execution["attempts"], 1);
        assert!(
            execution["result"].as_str().unwrap().contains("hello n")
                || execution["result"]
                    .as_str()
                    .unwrap()
                    .contains("hello header")
        );
    }
    let listed = stack.get(ALICE, "/v1/executions?status=succeeded&limit=1000");
    assert_eq!(listed["executions"].as_array().unwrap().len(), ids.len());
}

#[test]
fn losing_an_agent_loses_no_async_execution() {
    let stack = Stack::start(StackOptions {
        agents: 2,
        ..Default::default()
    });
    stack.register_runtimes();
    stack.create_function(
        ALICE,
        "sleep",
        "python-sleep",
        "python3",
        json!({"timeout_s": 30}),
    );
    let mut ids = Vec::new();
    for _ in 0..6 {
        let response = stack.post(
            ALICE,
            "/v1/functions/sleep/invoke?async=true",
            &json!({"seconds": 2}),
        );
        assert_eq!(response.status().as_u16(), 202);
        ids.push(
            response.json::<Value>().unwrap()["execution"]["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    // Wait until work is running on the agents, then crash the first one.
    wait_until(Duration::from_secs(30), "executions running", || {
        let running = stack.get(ALICE, "/v1/executions?status=running");
        !running["executions"].as_array().unwrap().is_empty()
    });
    let mut stack = stack;
    stack.agents[0].kill();
    for id in &ids {
        let execution = stack.wait_execution(ALICE, id, Duration::from_secs(90));
        let status = execution["status"].as_str().unwrap();
        assert!(matches!(status, "succeeded" | "error"), "{execution}");
        let attempts = execution["attempts"].as_i64().unwrap();
        assert!(
            (1..=3).contains(&attempts),
            "attempts within the retry policy: {execution}"
        );
        if status == "succeeded" {
            assert_eq!(execution["result"], "\"woke up\"");
        }
    }
}

#[test]
fn the_standby_scheduler_takes_over() {
    let mut stack = Stack::start(StackOptions {
        schedulers: 2,
        ..Default::default()
    });
    stack.register_runtimes();
    stack.create_function(ALICE, "hello", "python-hello", "python3", json!({}));
    assert_eq!(
        stack.invoke(ALICE, "hello", &json!({})).status().as_u16(),
        200
    );
    let roles: Vec<String> = stack
        .schedulers
        .iter()
        .map(|s| {
            let body: Value = reqwest::blocking::get(format!("{}/healthcheck", s.url()))
                .unwrap()
                .json()
                .unwrap_or(Value::Null);
            body["role"].as_str().unwrap_or("standby").to_owned()
        })
        .collect();
    let active = roles
        .iter()
        .position(|r| r == "active")
        .unwrap_or_else(|| panic!("no active scheduler: {roles:?}"));
    stack.schedulers[active].kill();
    let started = Instant::now();
    wait_until(
        Duration::from_secs(20),
        "the standby to serve invocations",
        || stack.invoke(ALICE, "hello", &json!({})).status().as_u16() == 200,
    );
    eprintln!("standby took over in {:?}", started.elapsed());
    // Async work is dispatched by the new active scheduler too.
    let response = stack.post(ALICE, "/v1/functions/hello/invoke?async=true", &json!({}));
    let id = response.json::<Value>().unwrap()["execution"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        stack.wait_execution(ALICE, &id, Duration::from_secs(30))["status"],
        "succeeded"
    );
}

#[test]
fn the_concurrency_quota_answers_429() {
    let stack = Stack::start(StackOptions::default());
    stack.register_runtimes();
    stack.create_function(
        ALICE,
        "sleep",
        "python-sleep",
        "python3",
        json!({"timeout_s": 10}),
    );
    let response = stack
        .request(reqwest::Method::PUT, ADMIN, "/v1/quotas/e2e-project-a")
        .json(&json!({"concurrent_executions": 1}))
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let url = stack.url("/v1/functions/sleep/invoke");
    let slow = std::thread::spawn(move || {
        reqwest::blocking::Client::new()
            .post(url)
            .header("x-auth-token", ALICE)
            .json(&json!({"seconds": 3}))
            .timeout(Duration::from_secs(30))
            .send()
            .unwrap()
            .status()
            .as_u16()
    });
    std::thread::sleep(Duration::from_millis(1500));
    let refused = stack.invoke(ALICE, "sleep", &json!({"seconds": 0}));
    assert_eq!(refused.status().as_u16(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    assert_eq!(slow.join().unwrap(), 200);
    // Once the slot is free, invocations go through again.
    assert_eq!(
        stack
            .invoke(ALICE, "sleep", &json!({"seconds": 0}))
            .status()
            .as_u16(),
        200
    );
}

#[test]
fn agents_refuse_forged_tickets() {
    let stack = Stack::start(StackOptions::default());
    let agent = stack.agents[0].url();
    let client = reqwest::blocking::Client::new();
    let body = json!({"payload": {}});
    let none = client
        .post(format!("{agent}/v1/run"))
        .json(&body)
        .send()
        .unwrap();
    assert_eq!(none.status().as_u16(), 401);
    let forged = client
        .post(format!("{agent}/v1/run"))
        .bearer_auth("eyJhbGciOiJFZERTQSJ9.e30.c2ln")
        .json(&body)
        .send()
        .unwrap();
    assert_eq!(forged.status().as_u16(), 401);
    // A ticket signed with another key (a different control plane).
    let other_key = stack.dir.join("other.pem");
    std::process::Command::new("openssl")
        .args(["genpkey", "-algorithm", "ed25519", "-out"])
        .arg(&other_key)
        .output()
        .unwrap();
    let signer =
        fresco_common::ticket::TicketSigner::from_file(other_key.to_str().unwrap(), 30).unwrap();
    let spec = fresco_common::wire::FunctionSpec {
        project_id: "p".into(),
        function_id: uuid::Uuid::new_v4(),
        function_name: "x".into(),
        version: 0,
        image: "fresco/python3:dev".into(),
        runtime_kind: "python".into(),
        handler: "main.handler".into(),
        memory_mb: 128,
        timeout_s: 3,
        environment: Default::default(),
        code_sha256: None,
        network: false,
        revision: 0,
    };
    let agent_id = stack.get(ADMIN, "/v1/agents")["agents"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let ticket = signer
        .sign(
            &agent_id,
            uuid::Uuid::new_v4(),
            uuid::Uuid::new_v4(),
            &fresco_common::ticket::sha256_hex(b"{}"),
            spec,
        )
        .unwrap();
    let wrong_key = client
        .post(format!("{agent}/v1/run"))
        .bearer_auth(ticket)
        .json(&body)
        .send()
        .unwrap();
    assert_eq!(wrong_key.status().as_u16(), 401);
}
