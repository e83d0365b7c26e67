//! Shadow copies' comparison against the real PostgreSQL, through the queue's own claim and
//! finish (`fresco_store::queue`), as the dispatcher drives them: each copy's end is compared
//! with what its primary answered, in the transaction that writes the end; the counts, the
//! bounded sample, a copy of an earlier comparison period, and no retry of a failed copy under
//! the function's event config.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use chrono::Utc;
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use fresco_scheduler::leader::{Fence, LeaseConfig, LeaseConnection};
use fresco_store::aliases::Alias;
use fresco_store::executions::Execution;
use fresco_store::queue::{Finish, Limits, Store, Verdict};
use fresco_store::shadows::{self, Copy};
use fresco_store::ExecutionStatus;
use support::*;
use uuid::Uuid;

/// Function `f` of `p1` with versions 1 and 2, alias `live` (1, shadow 2) and an event
/// config that would retry failures three times.
fn setup(conn: &mut PgConnection) -> (Uuid, Alias) {
    let function = Uuid::new_v4();
    conn.batch_execute(&format!(
        "INSERT INTO runtimes (id, name, image, kind, project_id) \
         VALUES ('{}', 'py', 'fresco/python3:test', 'python', 'admin'); \
         INSERT INTO functions (id, project_id, name, runtime_id, handler, memory_mb, timeout_s) \
         SELECT '{function}', 'p1', 'f', id, 'main.handler', 128, 3 FROM runtimes; \
         INSERT INTO function_versions (function_id, version, project_id, runtime_id, handler, memory_mb, timeout_s) \
         SELECT '{function}', v, 'p1', id, 'main.handler', 128, 3 FROM runtimes, generate_series(1, 2) AS v; \
         INSERT INTO function_event_configs (function_id, project_id, max_attempts, dead_letter) \
         VALUES ('{function}', 'p1', 3, true);",
        Uuid::new_v4()
    ))
    .expect("function");
    let now = Utc::now();
    let alias = Alias {
        function_id: function,
        name: "live".into(),
        project_id: "p1".into(),
        version: 1,
        second_version: None,
        second_weight: 0,
        description: String::new(),
        created_at: now,
        updated_at: now,
        shadow_version: Some(2),
        shadow_percent: 100,
    };
    fresco_store::aliases::insert(conn, &alias).expect("alias");
    shadows::restart(conn, &alias).expect("period");
    (function, alias)
}

/// A copy of an invocation whose primary ended with `status` and `result`.
fn copy(function: Uuid, period: Uuid, input: &str, status: ExecutionStatus, result: &str) -> Copy {
    let mut spec = spec("p1", function, 128);
    spec.version = 2;
    Copy {
        execution: Execution {
            id: Uuid::new_v4(),
            project_id: "p1".into(),
            function_id: function,
            function_version: 2,
            alias: Some("live".into()),
            status: ExecutionStatus::Queued,
            is_async: true,
            input: Some(input.as_bytes().to_vec()),
            input_size: input.len() as i32,
            spec: Some(serde_json::to_value(&spec).expect("spec json")),
            result: None,
            error: None,
            duration_ms: None,
            max_memory_mb: None,
            memory_mb: 128,
            cold: None,
            agent_id: None,
            attempts: 0,
            logs: String::new(),
            created_at: Utc::now(),
            started_at: None,
            finished_at: None,
            cpu_ms: None,
            init_duration_ms: None,
        },
        comparison_id: period,
        primary_execution_id: Uuid::new_v4(),
        primary_status: status,
        primary_digest: shadows::digest(Some(result)),
        primary_result: shadows::cut(result, 8).0,
        primary_truncated: result.len() > 8,
        sample_limit: 2,
        sample_bytes: 8,
    }
}

async fn lead(db: &TestDb) -> (LeaseConnection, Fence) {
    let config = LeaseConfig {
        database_url: db.url.clone(),
        lease: Duration::from_secs(30),
        interval: Duration::from_millis(100),
    };
    let connection = LeaseConnection::open(&config).await.expect("connect");
    let epoch = loop {
        if let Some(epoch) = connection.try_acquire("a", &config).await.expect("try") {
            break epoch;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    (
        connection,
        Fence {
            holder: "a".into(),
            epoch,
        },
    )
}

fn ended(status: ExecutionStatus, result: Option<&str>, error: Option<&str>) -> Finish {
    Finish::completed(
        status,
        result.map(str::to_owned),
        error.map(|e| serde_json::json!({"errorType": "ValueError", "errorMessage": e})),
        1.0,
        None,
        None,
        false,
        String::new(),
        None,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_copy_is_compared_once_with_its_primary() {
    let db = TestDb::create();
    let mut conn = db.conn();
    let (function, alias) = setup(&mut conn);
    let period = shadows::current(&mut conn, "p1", function, "live")
        .expect("read")
        .expect("a period")
        .id;
    let ok = ExecutionStatus::Succeeded;
    let long = "{\"double\": 123456789}";
    // (primary status, primary result, input, how the copy ends)
    let cases = [
        (
            ok,
            "{\"a\": 1}",
            "{\"n\": 1}",
            ended(ok, Some("{\"a\": 1}"), None),
        ),
        (
            ok,
            "{\"a\": 2}",
            "{\"n\": 2}",
            ended(ok, Some("{\"a\": 2}"), None),
        ),
        (
            ok,
            long,
            "{\"n\": 3}",
            ended(ok, Some("{\"double\": 7}"), None),
        ),
        (
            ok,
            "{\"a\": 4}",
            "{\"n\": 4}",
            ended(ExecutionStatus::Failed, None, Some("refused")),
        ),
        (
            ExecutionStatus::Failed,
            "null",
            "{\"n\": 5}",
            ended(ok, Some("1"), None),
        ),
        (
            ok,
            "{\"a\": 6}",
            "{\"n\": 6}",
            ended(ok, Some("{\"a\": 7}"), None),
        ),
    ];
    let mut ids = Vec::new();
    for (status, result, input, _) in &cases {
        let queued = shadows::enqueue(&mut conn, &copy(function, period, input, *status, result))
            .expect("enqueue");
        ids.push(queued.id);
    }
    // A copy taken in an earlier period: compared, but counted nowhere.
    let stale = shadows::enqueue(&mut conn, &copy(function, Uuid::new_v4(), "{}", ok, "1"))
        .expect("enqueue");
    let (_lease, fence) = lead(&db).await;
    let store =
        Store::connect(&db.url, 4, Duration::from_secs(5), Duration::from_secs(5)).expect("store");
    let finishes: Vec<(Uuid, Finish)> = ids
        .iter()
        .copied()
        .zip(cases.into_iter().map(|(_, _, _, f)| f))
        .chain([(stale.id, ended(ok, Some("2"), None))])
        .collect();
    let changed = tokio::task::spawn_blocking(move || {
        let claim = store
            .claim(
                &fence,
                100,
                &mut HashSet::new(),
                &mut String::new(),
                Limits {
                    concurrent: -1,
                    per_minute: -1,
                },
                |_, _| Verdict::Run {
                    agent_id: "agent-a".into(),
                },
            )
            .expect("claim");
        assert_eq!(claim.run.len(), 7);
        let items: Vec<(Uuid, i32, &Finish)> = finishes.iter().map(|(id, f)| (*id, 1, f)).collect();
        let changed = store.finish(&fence, &items).expect("finish");
        // The same ends again (a duplicate answer): nothing more is counted.
        store.finish(&fence, &items).expect("finish again");
        changed
    })
    .await
    .expect("task");
    assert_eq!(changed, 7);

    let counts = shadows::current(&mut conn, "p1", function, "live")
        .expect("read")
        .expect("the period");
    assert_eq!(
        (
            counts.same,
            counts.different,
            counts.shadow_error,
            counts.primary_error,
            counts.skipped
        ),
        (2, 2, 1, 1, 0)
    );
    // No copy waits any more, none was retried or dead-lettered.
    let n = |conn: &mut PgConnection, sql: &str| -> i64 {
        diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(sql))
            .get_result(conn)
            .expect(sql)
    };
    assert_eq!(n(&mut conn, "(SELECT count(*) FROM shadow_executions)"), 0);
    assert_eq!(n(&mut conn, "(SELECT count(*) FROM dead_letters)"), 0);
    assert_eq!(
        n(
            &mut conn,
            "(SELECT count(*) FROM executions WHERE status = 'queued')"
        ),
        0
    );
    // The sample: the newest two differing pairs, cut to 8 bytes.
    let sample = shadows::samples(&mut conn, counts.id).expect("sample");
    let seen: Vec<(&str, &str, &str, bool)> = sample
        .iter()
        .map(|s| {
            (
                s.kind.as_str(),
                s.input.as_str(),
                s.shadow_result.get(..7).unwrap_or(""),
                s.truncated,
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            ("different", "{\"n\": 6}", "{\"a\": 7", false),
            ("shadow_error", "{\"n\": 4}", "{\"error", true),
        ]
    );
    // A restart (the shadow version changes) clears counts and sample.
    let mut moved = alias.clone();
    moved.shadow_version = None;
    shadows::restart(&mut conn, &moved).expect("restart");
    assert!(shadows::current(&mut conn, "p1", function, "live")
        .expect("read")
        .is_none());
    assert_eq!(
        n(&mut conn, "(SELECT count(*) FROM alias_comparison_samples)"),
        0
    );
}
