//! Faults and bounds at the API: NUL characters never reach PostgreSQL (refused at validation,
//! made storable in execution records), a record PostgreSQL refuses fails alone, the recorder
//! is bounded in bytes, queued work is bounded by a quota, and code stays while queued work
//! needs it.

use std::time::{Duration, Instant};

use diesel::{Connection, RunQueryDsl};
use fresco_api::invoke::Recorder;
use serde_json::{json, Value};
use uuid::Uuid;

use fresco_store::ExecutionStatus;

use crate::common::*;

// A throwaway Ed25519 key (`openssl genpkey -algorithm ed25519`), for tests only: the API's
// control-plane key, with which it has an invocation path (async invocations need no scheduler).
const CONTROL_PLANE_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIPDphl9SqanFK+zTSluaX26jfvxzKtsDBf4ntwe+UDy7\n-----END PRIVATE KEY-----\n";

/// An API that accepts invocations.
async fn invoking_api() -> TestApi {
    invoking_api_with(Options::default()).await
}

async fn invoking_api_with(options: Options) -> TestApi {
    let key = std::env::temp_dir().join(format!("fresco-api-test-{}.pem", Uuid::new_v4()));
    std::fs::write(&key, CONTROL_PLANE_PRIVATE).expect("write the test key");
    let api =
        TestApi::start_with(options.set("internal_auth", "control_plane_key_file", key.display()))
            .await;
    std::fs::remove_file(&key).ok();
    api.runtime("py", json!({})).await;
    api
}

fn invoke_async(function: &str) -> Call {
    post(&format!("/v1/functions/{function}/invoke?async=true"))
        .by(ALICE)
        .json(json!({"k": 1}))
}

/// Tenant text holding U+0000 never reaches PostgreSQL (which cannot store it): JSON bodies,
/// multipart metadata, query parameters and paths are refused at the edge, and nothing is
/// stored. (The edge checks came with the OpenAPI work; the domain's validation behind them
/// is unit-tested in `domain::validate`.)
#[actix_web::test]
async fn nul_characters_are_refused_before_postgresql() {
    let api = invoking_api().await;
    api.function(ALICE, "f", "py", json!({})).await;
    api.send(post("/v1/functions/f/versions").by(ALICE).json(json!({})))
        .await
        .ok(201);
    let before = api.stored("proj-a").await;
    let nul = "must not contain a NUL character";
    api.expect_errors(vec![
        (
            post("/v1/functions")
                .by(ALICE)
                .json(json!({"name": "g", "runtime": "py", "description": "a\u{0}b"})),
            400,
            nul,
        ),
        (
            post("/v1/functions").by(ALICE).upload(
                &json!({"name": "g", "runtime": "py", "description": "a\u{0}b"}),
                Some(&zip_of(&[("main.py", b"x = 1\n")])),
            ),
            400,
            nul,
        ),
        (
            patch("/v1/functions/f")
                .by(ALICE)
                .json(json!({"description": "\u{0}"})),
            400,
            nul,
        ),
        (
            post("/v1/functions")
                .by(ALICE)
                .json(json!({"name": "g", "runtime": "py", "environment": {"K": "v\u{0}"}})),
            400,
            nul,
        ),
        (
            post("/v1/functions")
                .by(ALICE)
                .json(json!({"name": "g", "runtime": "p\u{0}y"})),
            400,
            nul,
        ),
        (
            post("/v1/functions/f/versions")
                .by(ALICE)
                .json(json!({"description": "v\u{0}2"})),
            400,
            nul,
        ),
        (
            post("/v1/functions/f/aliases")
                .by(ALICE)
                .json(json!({"name": "live", "version": 1, "description": "\u{0}"})),
            400,
            nul,
        ),
        (
            post("/v1/runtimes").by(ADMIN).json(
                json!({"name": "r", "image": "i", "kind": "python", "description": "x\u{0}"}),
            ),
            400,
            nul,
        ),
        (
            post("/v1/runtimes")
                .by(ADMIN)
                .json(json!({"name": "r", "image": "i", "kind": "python", "project_id": "p\u{0}"})),
            400,
            nul,
        ),
        (
            get("/v1/functions?name=f%00").by(ALICE),
            400,
            "query parameter name must not contain a NUL character",
        ),
        (
            post("/v1/functions/f/invoke?alias=l%00ive")
                .by(ALICE)
                .json(json!({})),
            400,
            "query parameter alias must not contain a NUL character",
        ),
        // A path holding one names nothing that can exist.
        (
            get("/v1/functions/f%00").by(ALICE),
            404,
            "the path contains a NUL character",
        ),
        (
            get("/v1/quotas/proj-a%00").by(ADMIN),
            404,
            "the path contains a NUL character",
        ),
    ])
    .await;
    assert_eq!(api.stored("proj-a").await, before);
    assert_eq!(api.db.scalar("SELECT count(*) FROM runtimes"), 1);
    assert_eq!(api.db.scalar("SELECT count(*) FROM function_aliases"), 0);
    assert_eq!(api.db.scalar("SELECT count(*) FROM function_versions"), 1);
}

#[actix_web::test]
async fn queued_executions_are_bounded_by_a_quota() {
    // Invocations see quota changes once their cached target expires: no cache here.
    let api = invoking_api_with(Options::default().set("api", "function_cache_ttl", 0)).await;
    api.function(ALICE, "f", "py", json!({})).await;
    assert_eq!(
        api.quota("proj-a").await["queued_executions"],
        json!({"limit": 10000, "in_use": 0})
    );
    let changed = api
        .send(
            put("/v1/quotas/proj-a")
                .by(ADMIN)
                .json(json!({"queued_executions": 3})),
        )
        .await
        .ok(200);
    assert_eq!(
        changed["quota"]["queued_executions"],
        json!({"limit": 3, "in_use": 0})
    );
    let mut ids = Vec::new();
    for _ in 0..3 {
        let accepted = api.send(invoke_async("f")).await.ok(202);
        ids.push(accepted["execution"]["id"].as_str().expect("id").to_owned());
    }
    let refused = api.send(invoke_async("f")).await;
    assert_eq!(refused.header("retry-after"), Some("1"));
    refused.error(
        429,
        "quota queued_executions exceeded: the project has 3 of 3 async executions waiting",
    );
    assert_eq!(
        api.quota("proj-a").await["queued_executions"],
        json!({"limit": 3, "in_use": 3})
    );
    assert_eq!(
        api.db
            .scalar("SELECT count(*) FROM executions WHERE project_id = 'proj-a'"),
        3
    );
    // Another project is not affected.
    api.function(BOB, "g", "py", json!({})).await;
    api.send(
        post("/v1/functions/g/invoke?async=true")
            .by(BOB)
            .json(json!({})),
    )
    .await
    .ok(202);
    // Once one has started, there is room for one more.
    api.db.execute(&format!(
        "UPDATE executions SET status = 'running' WHERE id = '{}'",
        ids[0]
    ));
    api.send(invoke_async("f")).await.ok(202);
    api.send(invoke_async("f")).await.error(429, "3 of 3");
    // 0 stops async invocations; -1 is unlimited.
    api.send(
        put("/v1/quotas/proj-a")
            .by(ADMIN)
            .json(json!({"queued_executions": -1})),
    )
    .await
    .ok(200);
    for _ in 0..5 {
        api.send(invoke_async("f")).await.ok(202);
    }
}

fn package_count(api: &TestApi) -> i64 {
    api.db
        .scalar("SELECT count(*) FROM code_packages WHERE project_id = 'proj-a'")
}

/// A code update keeps the package that queued executions were accepted with (they run the
/// code they were accepted with); once they have finished, nothing holds it.
#[actix_web::test]
async fn code_stays_while_a_queued_execution_needs_it() {
    let api = invoking_api().await;
    let first = api.function(ALICE, "f", "py", json!({})).await;
    let first_sha = first["code"]["sha256"].as_str().expect("sha").to_owned();
    let queued = api.send(invoke_async("f")).await.ok(202)["execution"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let second = zip_of(&[("main.py", b"def handler(e, c):\n    return 2\n")]);
    api.send(
        put("/v1/functions/f/code")
            .by(ALICE)
            .raw("application/zip", second),
    )
    .await
    .ok(200);
    assert_eq!(
        package_count(&api),
        2,
        "the queued execution's code is kept"
    );
    assert_eq!(
        api.db.scalar(&format!(
            "SELECT count(*) FROM code_packages WHERE sha256 = '{first_sha}'"
        )),
        1
    );
    // Deleting it by hand is refused while the execution is queued.
    let mut conn = api.db.conn();
    let refused = diesel::sql_query(format!(
        "DELETE FROM code_packages WHERE sha256 = '{first_sha}'"
    ))
    .execute(&mut conn);
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.to_string().contains("executions_code_fkey")),
        "{refused:?}"
    );
    // Deleting the function keeps it too.
    api.send(delete("/v1/functions/f").by(ALICE)).await.ok(204);
    assert_eq!(package_count(&api), 1);
    // Finished: nothing holds it any more (the scheduler's periodic purge deletes it).
    api.db.execute(&format!(
        "UPDATE executions SET status = 'succeeded', finished_at = now() WHERE id = '{queued}'"
    ));
    assert_eq!(
        api.db.execute(&format!(
            "DELETE FROM code_packages WHERE sha256 = '{first_sha}'"
        )),
        1
    );
}

/// An async invocation right after a code update, through the API's short-lived target cache
/// that still names the old package, is queued with the new code (never with code that is
/// gone, which could not run).
#[actix_web::test]
async fn an_async_invocation_after_a_code_update_runs_the_new_code() {
    let api = invoking_api().await;
    api.function(ALICE, "f", "py", json!({})).await;
    // Caches the target (with the first package).
    let first = api.send(invoke_async("f")).await.ok(202)["execution"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    api.db.execute(&format!(
        "UPDATE executions SET status = 'succeeded', finished_at = now() WHERE id = '{first}'"
    ));
    let second = zip_of(&[("main.py", b"def handler(e, c):\n    return 2\n")]);
    let updated = api
        .send(
            put("/v1/functions/f/code")
                .by(ALICE)
                .raw("application/zip", second),
        )
        .await
        .ok(200);
    let second_sha = updated["function"]["code"]["sha256"]
        .as_str()
        .expect("sha")
        .to_owned();
    assert_eq!(package_count(&api), 1, "the unused first package is gone");
    let started = Instant::now();
    let again = api.send(invoke_async("f")).await.ok(202)["execution"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "within the cache's lifetime, or this proves nothing"
    );
    assert_eq!(
        api.db.scalar(&format!(
            "SELECT count(*) FROM executions WHERE id = '{again}' \
             AND spec->>'code_sha256' = '{second_sha}'"
        )),
        1
    );
}

fn recorded(db: &TestDb) -> i64 {
    db.scalar("SELECT count(*) FROM executions")
}

fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[derive(diesel::QueryableByName, Debug)]
struct Stored {
    #[diesel(sql_type = diesel::sql_types::Text)]
    status: String,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    result: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    error: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Text)]
    logs: String,
}

fn stored(db: &TestDb, id: Uuid) -> Stored {
    diesel::sql_query(format!(
        "SELECT status, result, error::text AS error, logs FROM executions WHERE id = '{id}'"
    ))
    .get_result(&mut db.conn())
    .unwrap_or_else(|e| panic!("execution {id}: {e}"))
}

/// One batch holding a record with NUL characters and a record PostgreSQL refuses for another
/// reason (a check constraint this test adds: a status outside the constraint can no longer be
/// written, `ExecutionStatus` has none): the first is stored with U+FFFD for each
/// NUL, the second as a platform error that says how the function ended, the others as they
/// are; later records go on being written.
#[test]
fn the_recorder_writes_a_refused_record_alone() {
    let db = TestDb::create();
    let recorder = Recorder::start(
        fresco_store::pool(&db.url, 2, Duration::from_secs(5)),
        1 << 20,
    );
    let function = Uuid::new_v4().to_string();
    let good = execution("proj-a", &function);
    let mut nul = execution("proj-a", &function);
    nul.result = Some("\"a\u{0}b\"".into());
    nul.logs = "before\u{0}after".into();
    nul.status = ExecutionStatus::Failed;
    nul.error =
        Some(json!({"errorType": "E\u{0}", "errorMessage": "m\u{0}", "stackTrace": ["\u{0}"]}));
    diesel::sql_query(
        "ALTER TABLE executions ADD CONSTRAINT test_refused_result \
         CHECK (result IS DISTINCT FROM '\"refuse me\"')",
    )
    .execute(&mut db.conn())
    .expect("add the constraint");
    let mut refused = execution("proj-b", &function);
    refused.result = Some("\"refuse me\"".into());
    let last = execution("proj-b", &function);
    for row in [&good, &nul, &refused, &last] {
        recorder.record(row.clone());
    }
    wait_for("four records", || recorded(&db) == 4);

    for row in [&good, &last] {
        let s = stored(&db, row.id);
        assert_eq!(
            (s.status.as_str(), s.result.as_deref(), s.logs.as_str()),
            (
                "succeeded",
                row.result.as_deref(),
                "hello from the function\n"
            )
        );
    }
    let s = stored(&db, nul.id);
    assert_eq!(s.status, "failed");
    assert_eq!(s.result.as_deref(), Some("\"a\u{FFFD}b\""));
    assert_eq!(s.logs, "before\u{FFFD}after");
    let error: Value = serde_json::from_str(s.error.as_deref().expect("error")).expect("json");
    assert_eq!(
        error,
        json!({"errorType": "E\u{FFFD}", "errorMessage": "m\u{FFFD}", "stackTrace": ["\u{FFFD}"]})
    );
    let s = stored(&db, refused.id);
    assert_eq!(
        (s.status.as_str(), s.result, s.logs.as_str()),
        ("error", None, "")
    );
    let error: Value = serde_json::from_str(s.error.as_deref().expect("error")).expect("json");
    assert_eq!(error["errorType"], "Platform.RecordRejected");
    let message = error["errorMessage"].as_str().expect("message");
    assert!(
        message.contains("test_refused_result")
            && message.ends_with("the function ended with status succeeded"),
        "{message}"
    );

    let later = execution("proj-a", &function);
    recorder.record(later.clone());
    wait_for("the later record", || recorded(&db) == 5);
    assert_eq!(stored(&db, later.id).status, "succeeded");
}

/// While the database does not take records, the recorder holds at most its byte bound: past
/// it new invocations are refused (503 at the HTTP layer) and a record that would double it is
/// kept without its output; all of them are written once the database takes them again.
#[test]
fn the_recorder_is_bounded_in_bytes() {
    let db = TestDb::create();
    let max = 20_000;
    let recorder = Recorder::start(fresco_store::pool(&db.url, 2, Duration::from_secs(5)), max);
    assert!(recorder.admit().is_ok());
    // Stall every insert: the recorder's writes wait behind this lock.
    let mut blocker = db.conn();
    blocker
        .transaction::<_, diesel::result::Error, _>(|blocker| {
            diesel::sql_query("LOCK TABLE executions IN ACCESS EXCLUSIVE MODE").execute(blocker)?;
            let function = Uuid::new_v4().to_string();
            for _ in 0..3 {
                let mut row = execution("proj-a", &function);
                row.logs = "x".repeat(8_000);
                recorder.record(row);
            }
            let behind = recorder.admit().expect_err("over the bound");
            let message = behind.to_string();
            assert!(
                message
                    .starts_with("execution records are not being written fast enough (3 records"),
                "{message}"
            );
            let mut huge = execution("proj-a", &function);
            huge.logs = "y".repeat(30_000);
            huge.result = Some("\"big\"".into());
            recorder.record(huge.clone());
            Ok(huge.id)
        })
        .map(|huge| {
            wait_for("every record", || recorded(&db) == 4);
            let s = stored(&db, huge);
            assert_eq!(s.status, "succeeded");
            assert_eq!(s.result, None);
            assert!(
                s.logs
                    .starts_with("[fresco: this execution's output was not kept"),
                "{}",
                s.logs
            );
        })
        .expect("blocking transaction");
    wait_for("the recorder to catch up", || recorder.admit().is_ok());
    assert_eq!(
        db.scalar("SELECT count(*) FROM executions WHERE length(logs) = 8000"),
        3
    );
}
