//! Faults and bounds of the async path, with the real fresco-scheduler binary, a real
//! PostgreSQL and in-test agents: one tenant's bad output fails alone, one project's backlog
//! does not delay another's, old records are purged, and code is kept exactly as long as
//! something needs it.

mod support;

use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel::sql_types::{Bytea, Jsonb, Text, Uuid as SqlUuid};
use support::*;
use uuid::Uuid;

const SETTLE: Duration = Duration::from_secs(30);

fn row(conn: &mut PgConnection, id: Uuid) -> Row {
    rows(conn)
        .into_iter()
        .find(|r| r.id == id)
        .unwrap_or_else(|| panic!("execution {id} is gone"))
}

fn status(conn: &mut PgConnection, id: Uuid) -> String {
    row(conn, id).status
}

/// A function output holding NUL characters (which PostgreSQL's text and jsonb refuse) and a
/// result PostgreSQL refuses for another reason (a constraint) are each recorded on their own,
/// as what they are, and the executions around them and after them are recorded normally.
/// Before: the whole batch of results was retried forever and no later result was recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_poisonous_result_fails_alone() {
    let db = TestDb::create();
    let dir = TestDir::new();
    let mut conn = db.conn();
    // A refusal that is not about NUL: the database says no to this one result.
    diesel::sql_query(
        "ALTER TABLE executions ADD CONSTRAINT test_refuses_a_result \
         CHECK (result IS DISTINCT FROM '\"reject-me\"')",
    )
    .execute(&mut conn)
    .expect("constraint");
    let mut scheduler = SchedulerProc::spawn(&dir, &db, "");
    scheduler.wait_role("active", SETTLE).await;
    let urls = vec![scheduler.url.clone()];
    let _agent = TestAgent::start("agent-a", 4096, Behavior::Echo, &urls).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let spec = spec("tenant", Uuid::new_v4(), 128);
    let inputs: Vec<String> = ["1", "\"emit-nul\"", "\"reject-me\"", "2"]
        .map(str::to_owned)
        .to_vec();
    let ids = enqueue(&mut conn, &spec, &inputs);
    wait_until(SETTLE, "every execution to finish", || {
        unfinished(&mut conn) == 0
    })
    .await;

    for (id, input) in [(ids[0], "1"), (ids[3], "2")] {
        let r = row(&mut conn, id);
        assert_eq!(
            (r.status.as_str(), r.result.as_deref()),
            ("succeeded", Some(input))
        );
    }
    let nul = row(&mut conn, ids[1]);
    assert_eq!(nul.status, "failed", "{nul:?}");
    assert_eq!(nul.result.as_deref(), Some("raw\u{FFFD}result"));
    assert_eq!(nul.logs.as_deref(), Some("before\u{FFFD}after"));
    let error: serde_json::Value =
        serde_json::from_str(nul.error.as_deref().expect("error")).expect("json");
    assert_eq!(
        error,
        serde_json::json!({"errorType": "Nul\u{FFFD}Error", "errorMessage": "bad\u{FFFD}message", "stackTrace": ["frame\u{FFFD}one"]})
    );
    let refused = row(&mut conn, ids[2]);
    assert_eq!(refused.status, "error", "{refused:?}");
    assert_eq!(refused.result, None);
    let error: serde_json::Value =
        serde_json::from_str(refused.error.as_deref().expect("error")).expect("json");
    assert_eq!(error["errorType"], "Platform.Error");
    let message = error["errorMessage"].as_str().expect("message");
    assert!(
        message.starts_with("the database refused this execution's result (")
            && message.contains("test_refuses_a_result")
            && message.ends_with("the function ended with status succeeded"),
        "{message}"
    );

    // Later work of another project is recorded as usual.
    let later = enqueue(
        &mut conn,
        &support::spec("other", Uuid::new_v4(), 128),
        &["3".into()],
    );
    wait_until(SETTLE, "the later execution", || {
        status(&mut conn, later[0]) == "succeeded"
    })
    .await;
}

/// One project with 200 queued executions that cannot be placed now (each needs more memory
/// than is left) and another with 200 held back by its concurrency quota of 1: a third
/// project's execution still starts at once. Before: the claim window held only the oldest
/// rows, all unplaceable, and the third project waited for the whole backlog.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unplaceable_backlog_does_not_delay_other_projects() {
    let db = TestDb::create();
    let dir = TestDir::new();
    let mut conn = db.conn();
    diesel::sql_query(
        "INSERT INTO quotas (project_id, resource, hard_limit) \
         VALUES ('throttled', 'concurrent_executions', 1)",
    )
    .execute(&mut conn)
    .expect("quota");
    let mut scheduler = SchedulerProc::spawn(&dir, &db, "");
    scheduler.wait_role("active", SETTLE).await;
    let urls = vec![scheduler.url.clone()];
    let agent = TestAgent::start("agent-a", 4096, Behavior::Echo, &urls).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let long: Vec<String> = (0..200).map(|_| "{\"sleep_ms\": 60000}".into()).collect();
    // 3000 MB each on a 4096 MB agent: one runs, 199 wait for memory.
    enqueue(&mut conn, &spec("big", Uuid::new_v4(), 3000), &long);
    // One at a time by quota: one runs, 199 wait.
    enqueue(&mut conn, &spec("throttled", Uuid::new_v4(), 128), &long);
    wait_until(SETTLE, "one execution of each backlog to run", || {
        agent.seen.count() >= 2
    })
    .await;

    for round in 0..3 {
        let started = Instant::now();
        let quick = enqueue(
            &mut conn,
            &spec("quick", Uuid::new_v4(), 128),
            &[format!("{{\"round\": {round}}}")],
        );
        wait_until(
            Duration::from_secs(60),
            "the other project's execution",
            || status(&mut conn, quick[0]) == "succeeded",
        )
        .await;
        let waited = started.elapsed();
        eprintln!("round {round}: the other project's execution finished in {waited:?}");
        assert!(
            waited < Duration::from_secs(3),
            "another project's backlog delayed this execution by {waited:?}"
        );
    }
    // The backlogs themselves are still waiting, not failed.
    assert_eq!(unfinished(&mut conn), 400);
    assert_eq!(agent.seen.count(), 5);
}

/// Inserts one execution as it would look `age_days` after creation.
fn insert_aged(conn: &mut PgConnection, project: &str, status: &str, age_days: i32) -> Uuid {
    let id = Uuid::new_v4();
    let terminal = !matches!(status, "queued" | "running");
    diesel::sql_query(
        "INSERT INTO executions (id, project_id, function_id, status, is_async, input, \
         input_size, spec, result, logs, created_at, started_at, finished_at) \
         VALUES ($1, $2, $3, $4, true, $5, 2, $6, $7, 'a log line', \
                 now() - make_interval(days => $8), \
                 CASE WHEN $9 THEN now() - make_interval(days => $8) END, \
                 CASE WHEN $9 THEN now() - make_interval(days => $8) END)",
    )
    .bind::<SqlUuid, _>(id)
    .bind::<Text, _>(project)
    .bind::<SqlUuid, _>(Uuid::new_v4())
    .bind::<Text, _>(status)
    .bind::<Bytea, _>(b"{}".as_slice())
    .bind::<Jsonb, _>(serde_json::to_value(spec(project, Uuid::new_v4(), 128)).expect("spec"))
    .bind::<diesel::sql_types::Nullable<Text>, _>(terminal.then_some("\"out\""))
    .bind::<diesel::sql_types::Integer, _>(age_days)
    .bind::<diesel::sql_types::Bool, _>(terminal)
    .execute(conn)
    .expect("insert execution");
    id
}

#[derive(Debug, PartialEq, QueryableByName)]
struct Kept {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Text)]
    status: String,
    /// Input, spec and logs are all there.
    #[diesel(sql_type = diesel::sql_types::Bool)]
    has_bodies: bool,
    #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
    result: Option<String>,
}

fn kept(conn: &mut PgConnection) -> Vec<Kept> {
    diesel::sql_query(
        "SELECT id, status, (logs <> '' AND input IS NOT NULL AND spec IS NOT NULL) AS has_bodies, \
         result FROM executions ORDER BY created_at, id",
    )
    .load(conn)
    .expect("executions")
}

/// `[retention]`: finished records older than execution_days go, in small batches; those
/// older than body_days lose their result, logs, input and spec but stay; recent ones and
/// unfinished ones (however old) are untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn old_records_and_bodies_are_purged_and_recent_ones_kept() {
    let db = TestDb::create();
    let dir = TestDir::new();
    let mut conn = db.conn();
    let mut old = Vec::new();
    for status in ["succeeded", "failed", "timeout", "oom", "error"] {
        old.push(insert_aged(&mut conn, "p", status, 40));
    }
    let old_queued = insert_aged(&mut conn, "p", "queued", 45);
    let middle: Vec<Uuid> = (0..3)
        .map(|_| insert_aged(&mut conn, "p", "succeeded", 10))
        .collect();
    let recent: Vec<Uuid> = (0..2)
        .map(|_| insert_aged(&mut conn, "p", "succeeded", 1))
        .collect();

    // No agent: the old queued execution cannot run and must simply stay.
    let mut scheduler = SchedulerProc::spawn(
        &dir,
        &db,
        "\n[retention]\nexecution_days = 30\nbody_days = 7\npurge_interval = 1\npurge_batch = 2\n",
    );
    scheduler.wait_role("active", SETTLE).await;
    let mut expected = vec![Kept {
        id: old_queued,
        status: "queued".into(),
        has_bodies: true,
        result: None,
    }];
    expected.extend(middle.iter().map(|id| Kept {
        id: *id,
        status: "succeeded".into(),
        has_bodies: false,
        result: None,
    }));
    expected.extend(recent.iter().map(|id| Kept {
        id: *id,
        status: "succeeded".into(),
        has_bodies: true,
        result: Some("\"out\"".into()),
    }));
    let mut last = Vec::new();
    let waited = tokio::time::timeout(
        SETTLE,
        wait_until(SETTLE, "the purge", || {
            last = kept(&mut conn);
            last == expected
        }),
    )
    .await;
    assert!(
        waited.is_ok(),
        "expected {expected:#?}\ngot {last:#?}\nscheduler log:\n{}",
        scheduler.log_text()
    );
    // Emptied records keep what usage and billing need.
    let durations: i64 = diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(
        "(SELECT count(*) FROM executions WHERE finished_at IS NOT NULL AND input_size = 2)",
    ))
    .get_result(&mut conn)
    .expect("count");
    assert_eq!(durations, 5);
    // The line is written once the whole purge is over (code packages too), a moment after
    // the rows are gone: a loaded machine shows the gap.
    wait_until(SETTLE, "the purge's log line", || {
        scheduler.log_text().contains("purged 5 execution records")
    })
    .await;
    drop(old);
}

#[derive(Debug, PartialEq, QueryableByName)]
struct Package {
    #[diesel(sql_type = Text)]
    sha256: String,
}

fn packages(conn: &mut PgConnection) -> Vec<String> {
    let rows: Vec<Package> = diesel::sql_query("SELECT sha256 FROM code_packages ORDER BY sha256")
        .load(conn)
        .expect("packages");
    rows.into_iter().map(|p| p.sha256).collect()
}

/// A code package stays while a function, a version or a queued execution names it, and is
/// collected by the periodic purge once nothing does.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unused_code_is_collected_and_needed_code_kept() {
    let db = TestDb::create();
    let dir = TestDir::new();
    let mut conn = db.conn();
    for sha in ["a-function", "b-version", "c-queued", "d-unused"] {
        diesel::sql_query(
            "INSERT INTO code_packages (project_id, sha256, format, size, content) \
             VALUES ('p', $1, 'zip', 1, '\\x00')",
        )
        .bind::<Text, _>(sha)
        .execute(&mut conn)
        .expect("package");
    }
    diesel::sql_query(
        "INSERT INTO runtimes (id, name, image, kind, project_id) \
         VALUES ('00000000-0000-0000-0000-000000000001', 'py', 'img', 'python', 'admin')",
    )
    .execute(&mut conn)
    .expect("runtime");
    let function = Uuid::new_v4();
    diesel::sql_query(
        "INSERT INTO functions (id, project_id, name, runtime_id, handler, memory_mb, timeout_s, \
         code_sha256) VALUES ($1, 'p', 'f', '00000000-0000-0000-0000-000000000001', 'main.h', \
         128, 3, 'a-function')",
    )
    .bind::<SqlUuid, _>(function)
    .execute(&mut conn)
    .expect("function");
    diesel::sql_query(
        "INSERT INTO function_versions (function_id, version, project_id, runtime_id, handler, \
         memory_mb, timeout_s, code_sha256) VALUES ($1, 1, 'p', \
         '00000000-0000-0000-0000-000000000001', 'main.h', 128, 3, 'b-version')",
    )
    .bind::<SqlUuid, _>(function)
    .execute(&mut conn)
    .expect("version");
    let mut queued_spec = spec("p", function, 128);
    queued_spec.code_sha256 = Some("c-queued".into());
    let queued = enqueue(&mut conn, &queued_spec, &["{}".into()]);

    // No agent: the queued execution waits, and its code with it.
    let mut scheduler = SchedulerProc::spawn(
        &dir,
        &db,
        "\n[retention]\npurge_interval = 1\npurge_batch = 1\n",
    );
    scheduler.wait_role("active", SETTLE).await;
    wait_until(SETTLE, "the unused package to go", || {
        packages(&mut conn) == ["a-function", "b-version", "c-queued"]
    })
    .await;
    // Several purges later the needed ones are all still there.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(packages(&mut conn), ["a-function", "b-version", "c-queued"]);

    // Once the execution has finished, its package goes too; so does the version's once the
    // version is deleted.
    diesel::sql_query(
        "UPDATE executions SET status = 'succeeded', finished_at = now() WHERE id = $1",
    )
    .bind::<SqlUuid, _>(queued[0])
    .execute(&mut conn)
    .expect("finish");
    diesel::sql_query("DELETE FROM function_versions")
        .execute(&mut conn)
        .expect("delete version");
    wait_until(SETTLE, "the released packages to go", || {
        packages(&mut conn) == ["a-function"]
    })
    .await;
}
