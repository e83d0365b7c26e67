//! Faults and bounds end to end (real binaries, PostgreSQL, Docker): a function's NUL
//! characters never stop execution records, and a code update never breaks queued work.

use std::time::Duration;

use diesel::{Connection, PgConnection, RunQueryDsl};
use fresco_e2e::{functions_dir, wait_until, zip_dir, Stack, StackOptions, ADMIN};
use serde_json::{json, Value};

const ALICE: &str = "alice:e2e-project-a:member";
const BOB: &str = "bob:e2e-project-b:member";

fn execution_id(response: &reqwest::blocking::Response) -> String {
    response.headers()["x-execution-id"]
        .to_str()
        .unwrap()
        .to_owned()
}

fn invoke_async(stack: &Stack, token: &str, function: &str, event: &Value) -> String {
    let response = stack.post(
        token,
        &format!("/v1/functions/{function}/invoke?async=true"),
        event,
    );
    assert_eq!(response.status().as_u16(), 202);
    response.json::<Value>().unwrap()["execution"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn log_of(stack: &Stack, token: &str, id: &str) -> String {
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

/// A handler that prints "\x00", returns a string holding U+0000 and raises an error holding
/// one, synchronously and asynchronously: the caller gets exactly what the function said, the
/// records are stored with U+FFFD in place of each NUL, and another project's later executions
/// are recorded as usual. Before: PostgreSQL refused the batch holding the NUL, the recorder
/// retried it forever, and no later execution of any project was recorded.
#[test]
fn a_nul_in_a_function_output_stops_no_records() {
    let stack = Stack::start(StackOptions::default());
    stack.register_runtimes();
    stack.create_function(
        ALICE,
        "nul",
        "python-nul",
        "python3",
        json!({"timeout_s": 30}),
    );
    stack.create_function(
        BOB,
        "hello",
        "python-hello",
        "python3",
        json!({"timeout_s": 30}),
    );

    let ok = stack.invoke(ALICE, "nul", &json!({}));
    assert_eq!(ok.status().as_u16(), 200);
    assert_eq!(ok.headers()["x-execution-status"], "succeeded");
    let sync_ok = execution_id(&ok);
    assert_eq!(ok.json::<Value>().unwrap(), json!("nul\u{0}here"));
    let failed = stack.invoke(ALICE, "nul", &json!({"fail": true}));
    assert_eq!(failed.headers()["x-execution-status"], "failed");
    let sync_failed = execution_id(&failed);
    assert_eq!(
        failed.json::<Value>().unwrap()["errorMessage"],
        "bad\u{0}error"
    );
    let async_ok = invoke_async(&stack, ALICE, "nul", &json!({}));
    let async_failed = invoke_async(&stack, ALICE, "nul", &json!({"fail": true}));

    // Another project, afterwards: every one of its executions is recorded.
    let mut bobs = Vec::new();
    for i in 0..3 {
        let response = stack.invoke(BOB, "hello", &json!({"name": format!("b{i}")}));
        assert_eq!(response.status().as_u16(), 200);
        bobs.push(execution_id(&response));
    }
    bobs.push(invoke_async(
        &stack,
        BOB,
        "hello",
        &json!({"name": "async"}),
    ));
    for id in &bobs {
        let execution = stack.wait_execution(BOB, id, Duration::from_secs(30));
        assert_eq!(execution["status"], "succeeded", "{execution}");
    }

    for id in [&sync_ok, &async_ok] {
        let execution = stack.wait_execution(ALICE, id, Duration::from_secs(60));
        assert_eq!(execution["status"], "succeeded", "{execution}");
        // The result is JSON text: its escape \u0000 is plain characters and kept as it is.
        assert_eq!(execution["result"], "\"nul\\u0000here\"", "{execution}");
        let log = log_of(&stack, ALICE, id);
        assert!(log.contains("before\u{FFFD}after"), "{log:?}");
        assert!(!log.contains('\0'), "{log:?}");
    }
    for id in [&sync_failed, &async_failed] {
        let execution = stack.wait_execution(ALICE, id, Duration::from_secs(60));
        assert_eq!(execution["status"], "failed", "{execution}");
        assert_eq!(execution["error"]["errorType"], "ValueError");
        assert_eq!(execution["error"]["errorMessage"], "bad\u{FFFD}error");
    }
    // And the platform goes on recording.
    let response = stack.invoke(BOB, "hello", &json!({"name": "last"}));
    let last = execution_id(&response);
    let execution = stack.wait_execution(BOB, &last, Duration::from_secs(30));
    assert_eq!(execution["status"], "succeeded");
}

fn packages(stack: &Stack) -> i64 {
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut conn = PgConnection::establish(&stack.database_url).unwrap();
    diesel::sql_query("SELECT count(*) AS n FROM code_packages WHERE project_id = 'e2e-project-a'")
        .get_result::<Count>(&mut conn)
        .unwrap()
        .n
}

/// An async execution accepted before a code update runs the code it was accepted with, even
/// though it starts after the update; the old package is collected once it has run. Before:
/// the update deleted the package and the execution failed with `Platform.CodeUnavailable`.
#[test]
fn a_code_update_keeps_the_code_of_queued_executions() {
    let stack = Stack::start(StackOptions {
        extra_config: "\n[retention]\npurge_interval = 1\n".into(),
        ..Default::default()
    });
    stack.register_runtimes();
    stack.create_function(
        ALICE,
        "hello",
        "python-hello",
        "python3",
        json!({"timeout_s": 30}),
    );
    // Hold the project's queue: nothing of it may run for now.
    let held = stack
        .request(reqwest::Method::PUT, ADMIN, "/v1/quotas/e2e-project-a")
        .json(&json!({"concurrent_executions": 0}))
        .send()
        .unwrap();
    assert_eq!(held.status().as_u16(), 200);
    let queued = invoke_async(&stack, ALICE, "hello", &json!({"name": "queued"}));

    let updated = stack
        .request(reqwest::Method::PUT, ALICE, "/v1/functions/hello/code")
        .header("content-type", "application/zip")
        .body(zip_dir(&functions_dir().join("python-sleep")))
        .send()
        .unwrap();
    assert_eq!(updated.status().as_u16(), 200);
    std::thread::sleep(Duration::from_secs(2));
    let execution = stack.get(ALICE, &format!("/v1/executions/{queued}"))["execution"].clone();
    assert_eq!(execution["status"], "queued", "{execution}");
    assert_eq!(packages(&stack), 2, "the queued execution's code is kept");

    let released = stack
        .request(reqwest::Method::DELETE, ADMIN, "/v1/quotas/e2e-project-a")
        .send()
        .unwrap();
    assert_eq!(released.status().as_u16(), 204);
    let execution = stack.wait_execution(ALICE, &queued, Duration::from_secs(60));
    assert_eq!(execution["status"], "succeeded", "{execution}");
    assert_eq!(
        serde_json::from_str::<Value>(execution["result"].as_str().unwrap()).unwrap(),
        json!({"greeting": "hello queued"}),
        "it ran the code it was accepted with"
    );
    wait_until(
        Duration::from_secs(30),
        "the old package to be collected",
        || packages(&stack) == 1,
    );
    // New invocations run the new code.
    let response = stack.invoke(ALICE, "hello", &json!({"seconds": 0}));
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.json::<Value>().unwrap(), json!("woke up"));
}
