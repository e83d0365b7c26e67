//! Grants (issue 11): warm sync invocations call their agent directly, without the scheduler,
//! and an idle grant goes back to the scheduler.

use std::time::{Duration, Instant};

use fresco_e2e::{wait_until, Stack, StackOptions, ADMIN};
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

/// Invokes `function` through the API at `base` (a replica); the status and the JSON body.
fn invoke_at(stack: &Stack, base: &str, function: &str, event: &Value) -> (u16, Value) {
    let response = stack
        .client()
        .post(format!("{base}/v1/functions/{function}/invoke"))
        .header("x-auth-token", ALICE)
        .json(event)
        .send()
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(Value::Null))
}

fn set_quota(stack: &Stack, quota: Value) {
    let response = stack
        .request(reqwest::Method::PUT, ADMIN, "/v1/quotas/e2e-project-a")
        .json(&quota)
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200, "setting {quota}");
}

/// The most invocations whose handlers ran at the same time, from their (started, ended)
/// wall-clock spans.
fn most_at_once(spans: &[(f64, f64)]) -> usize {
    let mut edges: Vec<(f64, i32)> = spans
        .iter()
        .flat_map(|&(started, ended)| [(started, 1), (ended, -1)])
        .collect();
    // At equal times an end comes first: back-to-back invocations did not overlap.
    edges.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let (mut now, mut most) = (0i32, 0i32);
    for (_, delta) in edges {
        now += delta;
        most = most.max(now);
    }
    usize::try_from(most).unwrap_or(0)
}

#[test]
fn most_at_once_counts_overlaps_only() {
    assert_eq!(most_at_once(&[(0.0, 1.0), (1.0, 2.0)]), 1);
    assert_eq!(most_at_once(&[(0.0, 2.0), (1.0, 3.0), (2.5, 4.0)]), 2);
}

/// Worst-case overshoot of the concurrency quota with grants held by two API replicas: 0.
/// Bursts through both replicas at once never run more handlers at the same time than the
/// project's `concurrent_executions`, and what is beyond it gets 429.
#[test]
fn two_api_replicas_never_run_more_than_the_project_concurrency() {
    const LIMIT: usize = 2;
    let stack = Stack::start(StackOptions::default());
    let replica = stack.start_api_replica();
    stack.register_runtimes();
    stack.create_function(ALICE, "span", "python-span", "python3", json!({}));
    set_quota(&stack, json!({"concurrent_executions": LIMIT}));
    let apis = [stack.api.url(), replica.url()];

    let mut spans = Vec::new();
    let mut refused = 0;
    for round in 0..3 {
        let answers: Vec<(u16, Value)> = std::thread::scope(|scope| {
            let calls: Vec<_> = (0..8)
                .map(|i| {
                    let (stack, base) = (&stack, apis[i % 2].as_str());
                    scope.spawn(move || invoke_at(stack, base, "span", &json!({"seconds": 1.0})))
                })
                .collect();
            calls.into_iter().map(|c| c.join().unwrap()).collect()
        });
        for (status, body) in answers {
            match status {
                200 => spans.push((
                    body["started"].as_f64().unwrap(),
                    body["ended"].as_f64().unwrap(),
                )),
                429 => refused += 1,
                other => panic!("round {round}: {other} {body}"),
            }
        }
    }
    let most = most_at_once(&spans);
    assert!(
        most <= LIMIT,
        "{most} ran at once under a limit of {LIMIT}: {spans:?}"
    );
    assert_eq!(most, LIMIT, "the bursts reached the limit: {spans:?}");
    assert!(refused > 0, "beyond the limit, callers were refused");
}

/// A replica that dies holding a grant: its slots count against the project until the grant's
/// hold ends at the scheduler (`grant_ttl_ms` + the 5 s verifier leeway + 1 s + the function's
/// timeout, checked every 250 ms), then the other replica serves again.
#[test]
fn a_dead_replicas_grants_come_back_within_their_hold() {
    const TTL_MS: u64 = 2000;
    const TIMEOUT_S: u64 = 3;
    let stack = Stack::start(StackOptions {
        // The replica never gives the grant back for idleness: only its death ends it.
        extra_config: format!(
            "\n[api]\ngrant_idle_ms = 600000\n\n[scheduler]\ngrant_ttl_ms = {TTL_MS}\n"
        ),
        ..StackOptions::default()
    });
    let mut doomed = stack.start_api_replica();
    stack.register_runtimes();
    stack.create_function(
        ALICE,
        "span",
        "python-span",
        "python3",
        json!({"timeout_s": TIMEOUT_S}),
    );
    set_quota(&stack, json!({"concurrent_executions": 1}));
    let (status, body) = invoke_at(&stack, &doomed.url(), "span", &json!({"seconds": 0}));
    assert_eq!(status, 200, "{body}");
    // The doomed replica holds the project's only slot: the other one is refused.
    let (status, body) = invoke_at(&stack, &stack.api.url(), "span", &json!({"seconds": 0}));
    assert_eq!(status, 429, "{body}");

    doomed.kill();
    let died = Instant::now();
    let hold = Duration::from_millis(TTL_MS) + Duration::from_secs(5 + 1 + TIMEOUT_S);
    let bound = hold + Duration::from_millis(250);
    let served = loop {
        let (status, body) = invoke_at(&stack, &stack.api.url(), "span", &json!({"seconds": 0}));
        match status {
            200 => break died.elapsed(),
            429 => {}
            other => panic!("{other} {body}"),
        }
        assert!(
            died.elapsed() < bound + Duration::from_secs(3),
            "the dead replica's grant still counts after {:?}",
            died.elapsed()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        served <= bound + Duration::from_secs(1),
        "served again after {served:?}, the bound is {bound:?}"
    );
    // The hold was what kept it (the grant was given less than 3 s before the kill).
    assert!(
        served >= hold.saturating_sub(Duration::from_secs(3)),
        "served after {served:?}, before the hold of {hold:?} could end"
    );
}
