//! Hooks end to end (real binaries, PostgreSQL, Docker): a project admin's pre hook rejects and
//! rewrites events (sync and async), a post hook sees every result, a redacting post hook
//! replaces one, a failing hook fails closed or open as configured, members can neither
//! detach nor look inside a hook, another project's hook is not found, and the cloud's hook
//! of a project is beyond its admin's reach.

use std::collections::BTreeSet;
use std::time::Duration;

use fresco_e2e::{wait_until, Stack, StackOptions, ADMIN};
use reqwest::Method;
use serde_json::{json, Value};

const ALICE: &str = "alice:e2e-project-a:member";
const ALICE_ADMIN: &str = "anna:e2e-project-a:admin";
const BOB_ADMIN: &str = "bert:e2e-project-b:admin";

fn attach(stack: &Stack, token: &str, body: Value) -> Value {
    let response = stack.post(token, "/v1/hooks", &body);
    let status = response.status().as_u16();
    let answer: Value = response.json().unwrap_or(Value::Null);
    assert_eq!(status, 201, "attaching {body}: {answer}");
    answer["hook"].clone()
}

fn detach(stack: &Stack, token: &str, id: &str) -> u16 {
    stack
        .request(Method::DELETE, token, &format!("/v1/hooks/{id}"))
        .send()
        .unwrap()
        .status()
        .as_u16()
}

fn error_message(response: reqwest::blocking::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().unwrap_or(Value::Null);
    (
        status,
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

/// The results recorded for `function_id`'s executions (the post hook's own records).
fn results_of(stack: &Stack, token: &str, function_id: &str) -> Vec<Value> {
    stack.get(
        token,
        &format!("/v1/executions?function_id={function_id}&limit=1000"),
    )["executions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["result"].as_str())
        .map(|r| serde_json::from_str(r).unwrap())
        .collect()
}

#[test]
fn pre_and_post_hooks_guard_rewrite_and_audit_every_invocation() {
    let stack = Stack::start(StackOptions::default());
    stack.register_runtimes();
    stack.create_function(ALICE, "hello", "python-hello", "python3", json!({}));
    stack.create_function(ALICE, "guard", "python-hook", "python3", json!({}));
    let audit = stack.create_function(ALICE, "audit", "python-hook", "python3", json!({}));
    let audit_id = audit["id"].as_str().unwrap().to_owned();

    // A member may not attach a hook; the project's admin may.
    let refused = stack.post(
        ALICE,
        "/v1/hooks",
        &json!({"kind": "pre", "function": "guard"}),
    );
    assert_eq!(refused.status().as_u16(), 403);
    let pre = attach(
        &stack,
        ALICE_ADMIN,
        json!({"kind": "pre", "function": "guard"}),
    );
    let pre_id = pre["id"].as_str().unwrap().to_owned();
    assert_eq!(pre["owner"], "project");
    assert_eq!(pre["fail_mode"], "closed", "the default: {pre}");

    // Allowed, rejected (a 4xx naming the hook, with its reason), rewritten.
    let response = stack.invoke(ALICE, "hello", &json!({"name": "x"}));
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response.json::<Value>().unwrap(),
        json!({"greeting": "hello x"})
    );
    let (status, message) =
        error_message(stack.invoke(ALICE, "hello", &json!({"name": "x", "forbidden": true})));
    assert_eq!(status, 403, "{message}");
    assert_eq!(
        message,
        format!("rejected by pre hook {pre_id}: forbidden events are not allowed here")
    );
    let response = stack.invoke(ALICE, "hello", &json!({"name": "x", "rewrite": true}));
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response.json::<Value>().unwrap(),
        json!({"greeting": "hello rewritten-x"}),
        "the function sees the rewritten event"
    );
    // Async: the hooks run at accept; a rejection is the answer, a rewrite is what is queued.
    let (status, message) = error_message(stack.post(
        ALICE,
        "/v1/functions/hello/invoke?async=true",
        &json!({"forbidden": true}),
    ));
    assert_eq!(status, 403, "{message}");
    assert!(message.contains(&pre_id), "{message}");
    let accepted = stack.post(
        ALICE,
        "/v1/functions/hello/invoke?async=true",
        &json!({"name": "y", "rewrite": true}),
    );
    assert_eq!(accepted.status().as_u16(), 202);
    let queued = accepted.json::<Value>().unwrap()["execution"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let done = stack.wait_execution(ALICE, &queued, Duration::from_secs(60));
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["result"], r#"{"greeting": "hello rewritten-y"}"#);

    // A hook's own function is never hooked: invoked directly, the guard answers for itself.
    let response = stack.invoke(
        ALICE,
        "guard",
        &json!({"hook": {"kind": "pre"}, "event": {"forbidden": true}}),
    );
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.json::<Value>().unwrap()["action"], "reject");

    // A post hook sees every result, with the event the function saw and its metadata.
    attach(
        &stack,
        ALICE_ADMIN,
        json!({"kind": "post", "function": "audit", "fail_mode": "open"}),
    );
    let mut ran = BTreeSet::new();
    for i in 0..4 {
        let response = stack.invoke(ALICE, "hello", &json!({"name": format!("p{i}")}));
        assert_eq!(response.status().as_u16(), 200);
        ran.insert(
            response.headers()["x-execution-id"]
                .to_str()
                .unwrap()
                .to_owned(),
        );
    }
    let mut seen = Vec::new();
    wait_until(
        Duration::from_secs(30),
        "the post hook to see 4 results",
        || {
            seen = results_of(&stack, ALICE, &audit_id);
            seen.len() >= ran.len()
        },
    );
    let mut audited = BTreeSet::new();
    for record in &seen {
        let saw = &record["saw"];
        let name = saw["event"]["name"].as_str().unwrap();
        assert_eq!(saw["result"], json!({"greeting": format!("hello {name}")}));
        assert_eq!(saw["execution"]["function_name"], "hello");
        assert_eq!(saw["execution"]["status"], "succeeded");
        assert!(saw["execution"]["duration_ms"].as_f64().unwrap() > 0.0);
        assert_eq!(saw["invocation"]["user_id"], "alice");
        audited.insert(saw["execution"]["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(audited, ran, "every result, once");

    // Members: no detaching, no internals. Another project's admin: not found.
    assert_eq!(detach(&stack, ALICE, &pre_id), 403);
    let shown = stack.get(ALICE, &format!("/v1/hooks/{pre_id}"))["hook"].clone();
    assert_eq!(shown["kind"], "pre");
    assert_eq!(shown["internals_hidden"], true);
    assert!(shown.get("function_id").is_none(), "{shown}");
    let admin_view = stack.get(ALICE_ADMIN, &format!("/v1/hooks/{pre_id}"))["hook"].clone();
    assert!(admin_view["function_id"].is_string(), "{admin_view}");
    let other = stack
        .request(Method::GET, BOB_ADMIN, &format!("/v1/hooks/{pre_id}"))
        .send()
        .unwrap();
    assert_eq!(other.status().as_u16(), 404);
    assert_eq!(detach(&stack, BOB_ADMIN, &pre_id), 404);
    // The rejections still hold.
    assert_eq!(
        stack
            .invoke(ALICE, "hello", &json!({"forbidden": true}))
            .status()
            .as_u16(),
        403
    );
}

#[test]
fn failing_hooks_fail_closed_or_open_and_the_clouds_hooks_are_its_own() {
    let stack = Stack::start(StackOptions::default());
    stack.register_runtimes();
    stack.create_function(ALICE, "hello", "python-hello", "python3", json!({}));
    stack.create_function(ALICE, "broken", "python-error", "python3", json!({}));
    stack.create_function(ALICE, "redactor", "python-hook", "python3", json!({}));

    // Fail-closed (the default): the function does not run; the answer names the hook.
    let closed = attach(
        &stack,
        ALICE_ADMIN,
        json!({"kind": "pre", "function": "broken"}),
    );
    let closed_id = closed["id"].as_str().unwrap();
    let (status, message) = error_message(stack.invoke(ALICE, "hello", &json!({"name": "c"})));
    assert_eq!(status, 502, "{message}");
    assert_eq!(
        message,
        format!("pre hook {closed_id} failed (its function failed or timed out) and fails closed: the function did not run")
    );
    assert_eq!(detach(&stack, ALICE_ADMIN, closed_id), 204);

    // Fail-open: the function runs, and the answer says which hook failed.
    let open = attach(
        &stack,
        ALICE_ADMIN,
        json!({"kind": "pre", "function": "broken", "fail_mode": "open"}),
    );
    let response = stack.invoke(ALICE, "hello", &json!({"name": "o"}));
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response.headers()["x-hook-failed-open"],
        open["id"].as_str().unwrap()
    );
    assert_eq!(
        response.json::<Value>().unwrap(),
        json!({"greeting": "hello o"})
    );
    assert_eq!(
        detach(&stack, ALICE_ADMIN, open["id"].as_str().unwrap()),
        204
    );

    // A redacting post hook replaces the result before the answer.
    let redact = attach(
        &stack,
        ALICE_ADMIN,
        json!({"kind": "post", "function": "redactor", "redact": true}),
    );
    let response = stack.invoke(ALICE, "hello", &json!({"name": "r"}));
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response.json::<Value>().unwrap(),
        json!({"redacted": true, "was": {"greeting": "hello r"}})
    );
    assert_eq!(
        detach(&stack, ALICE_ADMIN, redact["id"].as_str().unwrap()),
        204
    );

    // The cloud's hook of project A: a function of the cloud's own project, attached by a
    // cloud admin. A's admin sees that it exists but neither removes it nor looks inside, and
    // A's members cannot read its executions (they are the cloud project's).
    let guard = stack.create_function(ADMIN, "cloud-guard", "python-hook", "python3", json!({}));
    let cloud = attach(
        &stack,
        ADMIN,
        json!({"kind": "pre", "function": "cloud-guard", "project_id": "e2e-project-a"}),
    );
    let cloud_id = cloud["id"].as_str().unwrap();
    assert_eq!(cloud["owner"], "cloud");
    let (status, message) =
        error_message(stack.invoke(ALICE, "hello", &json!({"forbidden": true})));
    assert_eq!(status, 403);
    assert!(
        message.starts_with(&format!("rejected by pre hook {cloud_id}: ")),
        "{message}"
    );
    assert_eq!(detach(&stack, ALICE_ADMIN, cloud_id), 403);
    let listed = stack.get(ALICE_ADMIN, "/v1/hooks")["hooks"].clone();
    let shown = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["id"] == cloud_id)
        .unwrap_or_else(|| panic!("the cloud's hook is listed: {listed}"));
    assert_eq!(shown["internals_hidden"], true, "{shown}");
    let guard_id = guard["id"].as_str().unwrap();
    assert!(
        results_of(&stack, ALICE, guard_id).is_empty(),
        "A sees none of the cloud hook's executions"
    );
    wait_until(Duration::from_secs(10), "the cloud hook's records", || {
        !results_of(&stack, ADMIN, guard_id).is_empty()
    });
    // The cloud admin's token is scoped to its own project: it names A's hook across projects.
    assert_eq!(
        detach(&stack, ADMIN, &format!("{cloud_id}?all_projects=true")),
        204
    );
    assert_eq!(
        stack
            .invoke(ALICE, "hello", &json!({"forbidden": true}))
            .status()
            .as_u16(),
        200,
        "detached: the event runs"
    );
}
