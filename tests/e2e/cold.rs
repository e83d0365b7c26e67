//! Cold starts (issue 12) through the whole stack: a new function's first invocation is
//! placed on the agent holding a pre-warmed sandbox of its runtime and size, served from it
//! (`x-execution-cold: prewarmed`), and every first invocation, pre-warmed or cold, reports
//! its initialisation apart from its duration, with a Lambda-style `REPORT` line.

use std::time::Duration;

use fresco_e2e::{python_image, wait_until, Stack, StackOptions};
use serde_json::{json, Value};

use crate::ALICE;

/// Ready pre-warmed sandboxes an agent reports, per (image, memory size).
fn ready(stack: &Stack, agent: usize) -> Vec<(String, u64, u64)> {
    let health: Value = stack
        .client()
        .get(format!("{}/healthcheck", stack.agents[agent].url()))
        .send()
        .and_then(|r| r.json())
        .unwrap_or(Value::Null);
    health["prewarmed"]
        .as_array()
        .map(|pools| {
            pools
                .iter()
                .map(|p| {
                    (
                        p["image"].as_str().unwrap_or_default().to_owned(),
                        p["memory_mb"].as_u64().unwrap_or(0),
                        p["ready"].as_u64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Invokes `name` with `{}`: (x-execution-cold, execution id).
fn first_call(stack: &Stack, name: &str) -> (String, String) {
    let response = stack.invoke(ALICE, name, &json!({"name": name}));
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().unwrap();
    assert_eq!(status, 200, "{name}: {text}");
    (
        headers["x-execution-cold"].to_str().unwrap().to_owned(),
        headers["x-execution-id"].to_str().unwrap().to_owned(),
    )
}

/// Asserts the execution's record and log report its initialisation.
fn assert_init_reported(stack: &Stack, id: &str, memory_mb: u64) {
    let execution = stack.wait_execution(ALICE, id, Duration::from_secs(10));
    let init = execution["init_duration_ms"].as_f64();
    assert!(init.is_some_and(|i| i > 0.0), "{execution}");
    let log = stack
        .request(
            reqwest::Method::GET,
            ALICE,
            &format!("/v1/executions/{id}/log"),
        )
        .send()
        .unwrap()
        .text()
        .unwrap();
    let report = log.lines().last().unwrap_or_default();
    assert!(
        report.starts_with(&format!("REPORT RequestId: {id}\tDuration: "))
            && report.contains(&format!("\tMemory Size: {memory_mb} MB\tMax Memory Used: "))
            && report.contains("\tInit Duration: "),
        "{log:?}"
    );
}

#[test]
fn first_invocations_go_to_a_prewarmed_sandbox_and_report_their_init() {
    let image = python_image();
    // Agent 1 holds more memory in its pools (4 × 256 MB), so bin-packing alone would pick it;
    // only agent 0 has pre-warmed sandboxes of 128 MB.
    let stack = Stack::start(StackOptions {
        agents: 2,
        agent_configs: vec![
            format!("prewarm_runtimes = python={image}\nprewarm_size = 2\nprewarm_max = 2\nprewarm_memory_mb = 128\n"),
            format!("prewarm_runtimes = python={image}\nprewarm_size = 4\nprewarm_max = 4\nprewarm_memory_mb = 256\n"),
        ],
        ..StackOptions::default()
    });
    stack.register_runtimes();
    wait_until(Duration::from_secs(60), "the pools to fill", || {
        ready(&stack, 0) == vec![(image.clone(), 128, 2)]
            && ready(&stack, 1) == vec![(image.clone(), 256, 4)]
    });
    // The schedulers hear of the pools with the next heartbeats (every second).
    std::thread::sleep(Duration::from_millis(2500));

    for name in ["first", "second"] {
        stack.create_function(
            ALICE,
            name,
            "python-hello",
            "python3",
            json!({"memory_mb": 128}),
        );
        let (start, id) = first_call(&stack, name);
        assert_eq!(
            start, "prewarmed",
            "{name} was placed where a sandbox waited"
        );
        assert_init_reported(&stack, &id, 128);
        let again = stack.invoke(ALICE, name, &json!({}));
        assert_eq!(again.headers()["x-execution-cold"], "false");
    }
    // No pool of its size anywhere: a cold start, reported the same way.
    stack.create_function(
        ALICE,
        "big",
        "python-hello",
        "python3",
        json!({"memory_mb": 512}),
    );
    let (start, id) = first_call(&stack, "big");
    assert_eq!(start, "cold");
    assert_init_reported(&stack, &id, 512);
}
