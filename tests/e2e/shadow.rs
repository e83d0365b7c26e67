//! Parallel testing through aliases, end to end (real binaries, PostgreSQL, Docker): a shadow
//! version that differs from the primary on some inputs gets a copy of every invocation
//! through the alias, the callers get the primary's answers only, and the comparison reports
//! the exact counts; another project cannot read it; copies the `queued_executions` quota
//! refuses are skipped and counted, the callers unaffected.

use std::time::Duration;

use fresco_e2e::{wait_until, Stack, StackOptions, ADMIN};
use serde_json::{json, Value};

const ALICE: &str = "alice:e2e-project-a:member";
const BOB: &str = "bob:e2e-project-b:member";

fn send(stack: &Stack, method: reqwest::Method, token: &str, path: &str, body: &Value) -> Value {
    let response = stack
        .request(method, token, path)
        .json(body)
        .send()
        .unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().unwrap_or(Value::Null);
    assert!(status < 300, "{path}: {status} {body}");
    body
}

fn comparison(stack: &Stack, token: &str) -> reqwest::blocking::Response {
    stack
        .request(
            reqwest::Method::GET,
            token,
            "/v1/functions/calc/aliases/live/comparison",
        )
        .send()
        .unwrap()
}

fn counts(stack: &Stack) -> Value {
    let response = comparison(stack, ALICE);
    assert_eq!(response.status().as_u16(), 200);
    response.json::<Value>().unwrap()["comparison"].clone()
}

#[test]
fn a_shadow_alias_reports_exact_counts_and_skips_what_the_quota_refuses() {
    let stack = Stack::start(StackOptions::default());
    stack.register_runtimes();
    // Version 1: the primary; version 2: the candidate (MODE=shadow).
    stack.create_function(ALICE, "calc", "python-shadow", "python3", json!({}));
    send(
        &stack,
        reqwest::Method::POST,
        ALICE,
        "/v1/functions/calc/versions",
        &json!({}),
    );
    send(
        &stack,
        reqwest::Method::PATCH,
        ALICE,
        "/v1/functions/calc",
        &json!({"environment": {"MODE": "shadow"}}),
    );
    send(
        &stack,
        reqwest::Method::POST,
        ALICE,
        "/v1/functions/calc/versions",
        &json!({}),
    );
    let alias = send(
        &stack,
        reqwest::Method::POST,
        ALICE,
        "/v1/functions/calc/aliases",
        &json!({"name": "live", "version": 1, "shadow_version": 2}),
    );
    assert_eq!(alias["alias"]["shadow_percent"], 100, "{alias}");

    // n = -1 fails on the primary; 1..=15: multiples of 5 fail on the shadow (3), other
    // multiples of 3 differ (4), the rest agree (8).
    for n in -1..=15_i64 {
        if n == 0 {
            continue;
        }
        let response = stack.post(
            ALICE,
            "/v1/functions/calc/invoke?alias=live",
            &json!({"n": n}),
        );
        assert_eq!(response.status().as_u16(), 200);
        let status = response.headers()["x-execution-status"]
            .to_str()
            .unwrap()
            .to_owned();
        let body: Value = response.json().unwrap();
        if n < 0 {
            assert_eq!(status, "failed");
        } else {
            // Always the primary's answer.
            assert_eq!(
                (status.as_str(), &body),
                ("succeeded", &json!({"n": n, "double": n * 2}))
            );
        }
    }
    let mut last = Value::Null;
    wait_until(Duration::from_secs(90), "16 shadow copies compared", || {
        last = counts(&stack);
        let total: i64 = ["same", "different", "shadow_error", "primary_error"]
            .iter()
            .map(|k| last[k].as_i64().unwrap())
            .sum();
        total >= 16
    });
    assert_eq!(
        (
            &last["same"],
            &last["different"],
            &last["shadow_error"],
            &last["primary_error"],
            &last["skipped"]
        ),
        (&json!(8), &json!(4), &json!(3), &json!(1), &json!(0)),
        "{last}"
    );
    assert_eq!(
        (&last["version"], &last["shadow_version"]),
        (&json!(1), &json!(2))
    );
    // The sample keeps the newest 10 differing pairs (7 here), each with both answers.
    let sample = last["sample"].as_array().unwrap();
    assert_eq!(sample.len(), 7, "{last}");
    let different: Vec<&Value> = sample.iter().filter(|s| s["kind"] == "different").collect();
    assert_eq!(different.len(), 4);
    for pair in &different {
        let input: Value = serde_json::from_str(pair["input"].as_str().unwrap()).unwrap();
        let n = input["n"].as_i64().unwrap();
        assert_eq!(n % 3, 0);
        let primary: Value =
            serde_json::from_str(pair["primary_result"].as_str().unwrap()).unwrap();
        let shadow: Value = serde_json::from_str(pair["shadow_result"].as_str().unwrap()).unwrap();
        assert_eq!(
            (&primary["double"], &shadow["double"]),
            (&json!(n * 2), &json!(n * 2 + 1))
        );
    }
    let refused: Vec<&Value> = sample
        .iter()
        .filter(|s| s["kind"] == "shadow_error")
        .collect();
    assert_eq!(refused.len(), 3);
    assert!(refused.iter().all(|s| s["shadow_status"] == "failed"
        && s["shadow_result"]
            .as_str()
            .unwrap()
            .contains("refuses multiples of 5")));

    // Another project finds no such alias, hence no comparison.
    let foreign = comparison(&stack, BOB);
    assert_eq!(foreign.status().as_u16(), 404);

    // The quota refuses every queued execution: copies are skipped and counted, callers unaffected.
    let response = stack
        .request(reqwest::Method::PUT, ADMIN, "/v1/quotas/e2e-project-a")
        .json(&json!({"queued_executions": 0}))
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    // Resolved targets (with their limits) are cached for [api] function_cache_ttl (2 s).
    std::thread::sleep(Duration::from_secs(3));
    for n in [1, 2, 3] {
        let response = stack.post(
            ALICE,
            "/v1/functions/calc/invoke?alias=live",
            &json!({"n": n}),
        );
        assert_eq!(response.status().as_u16(), 200);
        assert_eq!(
            response.json::<Value>().unwrap(),
            json!({"n": n, "double": n * 2})
        );
    }
    wait_until(Duration::from_secs(30), "3 skipped copies counted", || {
        last = counts(&stack);
        last["skipped"] == 3
    });
    assert_eq!(
        (&last["same"], &last["different"]),
        (&json!(8), &json!(4)),
        "{last}"
    );
    let shadow_rows = stack.get(ALICE, "/v1/executions?limit=1000")["executions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["function_version"] == 2 && e["is_async"] == true)
        .count();
    assert_eq!(shadow_rows, 16, "the skipped copies queued nothing");

    // A new shadow version restarts the counts.
    send(
        &stack,
        reqwest::Method::PATCH,
        ALICE,
        "/v1/functions/calc/aliases/live",
        &json!({"shadow_version": null}),
    );
    let cleared = counts(&stack);
    assert_eq!(
        (&cleared["same"], &cleared["shadow_version"]),
        (&json!(0), &Value::Null)
    );
}
