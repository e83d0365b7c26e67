//! Grants (issue 11): warm sync invocations call their agent directly, without the scheduler,
//! and an idle grant goes back to the scheduler.

use std::time::Duration;

use fresco_e2e::{wait_until, Stack, StackOptions};
use serde_json::{json, Value};

use crate::ALICE;

/// The active scheduler's request counters and lease count.
fn scheduler_requests(stack: &Stack) -> (Value, u64) {
    let health: Value = stack
        .client()
        .get(format!("{}/healthcheck", stack.schedulers[0].url()))
        .send()
        .unwrap()
        .json()
        .unwrap();
    (
        health["requests"].clone(),
        health["leases"].as_u64().unwrap(),
    )
}

#[test]
fn warm_invocations_make_no_scheduler_call_and_idle_grants_go_back() {
    let stack = Stack::start(StackOptions::default());
    stack.register_runtimes();
    stack.create_function(ALICE, "hello", "python-hello", "python3", json!({}));
    let (status, _) = crate::invoke_json(&stack, ALICE, "hello", &json!({"name": "cold"}));
    assert_eq!(status, "succeeded");
    let (before, leases) = scheduler_requests(&stack);
    assert_eq!(before["grants"], 1, "{before}");
    assert_eq!(leases, 1, "the grant is held");
    for n in 0..30 {
        let name = format!("n{n}");
        let (status, body) = crate::invoke_json(&stack, ALICE, "hello", &json!({"name": name}));
        assert_eq!(status, "succeeded", "{body}");
        assert_eq!(body["greeting"], format!("hello {name}"));
    }
    let (after, _) = scheduler_requests(&stack);
    assert_eq!(
        after, before,
        "warm invocations asked the scheduler nothing"
    );
    assert_eq!(after["placements"], 0, "{after}");
    // Idle past [api] grant_idle_ms, the grant is returned: nothing counts against the project.
    wait_until(
        Duration::from_secs(10),
        "the idle grant to be returned",
        || {
            let (requests, leases) = scheduler_requests(&stack);
            requests["grant_returns"] == 1 && leases == 0
        },
    );
    // The executions are recorded as before.
    wait_until(
        Duration::from_secs(10),
        "the executions to be recorded",
        || {
            stack.get(ALICE, "/v1/executions?limit=100")["executions"]
                .as_array()
                .is_some_and(|e| e.len() == 31)
        },
    );
}

#[test]
fn invocations_go_on_after_an_agent_restart() {
    // The grant stays held (not returned for idleness) while the agent restarts.
    let mut stack = Stack::start(StackOptions {
        extra_config: "\n[api]\ngrant_idle_ms = 60000\n".into(),
        ..StackOptions::default()
    });
    stack.register_runtimes();
    stack.create_function(ALICE, "hello", "python-hello", "python3", json!({}));
    let (status, _) = crate::invoke_json(&stack, ALICE, "hello", &json!({"name": "before"}));
    assert_eq!(status, "succeeded");
    // The agent restarts while this API holds a grant for it (signed before it started, so
    // it refuses the grant: 401, nothing runs).
    // Down for longer than the tokens' clock-skew leeway (5 s), so the grant is older than
    // the new agent process by more than the leeway and is refused.
    stack.agents[0].kill();
    std::thread::sleep(Duration::from_secs(7));
    stack.agents[0].start();
    stack.wait_for_agents(1);
    let (status, body) = crate::invoke_json(&stack, ALICE, "hello", &json!({"name": "after"}));
    assert_eq!(status, "succeeded", "{body}");
    assert_eq!(body["greeting"], "hello after");
    let (requests, _) = scheduler_requests(&stack);
    assert_eq!(
        requests["grants"], 2,
        "a new grant replaced the refused one: {requests}"
    );
}
