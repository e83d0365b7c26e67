//! Events against the real PostgreSQL. The cron pass: each due tick queues one execution,
//! however many passes run at once; a former leader's pass queues nothing; missed ticks run
//! once. The claim: an event older than its function's `max_event_age_s` is not run and goes
//! where its failures go (here the dead-letter list).

mod support;

use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use fresco_common::schedule::Schedule;
use fresco_scheduler::leader::{Fence, LeaseConfig, LeaseConnection};
use std::collections::HashSet;

use fresco_store::queue::{Limits, StorageError, Store, Verdict};
use support::*;
use uuid::Uuid;

/// A runtime, a function with code in project `p1`, and `n` cron triggers of it (every
/// minute, UTC) whose next tick is `due` (SQL).
fn setup(conn: &mut PgConnection, n: usize, due: &str) -> Uuid {
    let function = Uuid::new_v4();
    conn.batch_execute(&format!(
        "INSERT INTO runtimes (id, name, image, kind, project_id) \
         VALUES ('{}', 'py', 'fresco/python3:test', 'python', 'admin'); \
         INSERT INTO code_packages (project_id, sha256, format, size, content) \
         VALUES ('p1', 'abc', 'zip', 1, '\\x00'); \
         INSERT INTO functions (id, project_id, name, runtime_id, handler, memory_mb, timeout_s, code_sha256) \
         SELECT '{function}', 'p1', 'f', id, 'main.handler', 128, 3, 'abc' FROM runtimes;",
        Uuid::new_v4()
    ))
    .expect("function");
    diesel::sql_query(format!(
        "INSERT INTO triggers (id, project_id, name, kind, function_id, cron, timezone, next_run_at) \
         SELECT gen_random_uuid(), 'p1', 't' || i, 'cron', '{function}', '* * * * *', 'UTC', {due} \
         FROM generate_series(1, {n}) AS i"
    ))
    .execute(conn)
    .expect("triggers");
    function
}

fn scalar(conn: &mut PgConnection, sql: &str) -> i64 {
    #[derive(QueryableByName)]
    struct N {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    diesel::sql_query(sql)
        .get_result::<N>(conn)
        .expect("count")
        .n
}

fn next(
    cron: &str,
    timezone: &str,
    after: chrono::DateTime<chrono::Utc>,
) -> Option<chrono::DateTime<chrono::Utc>> {
    Schedule::parse(cron, timezone).ok()?.next_after(after)
}

async fn lead(db: &TestDb, holder: &str) -> (LeaseConnection, Fence) {
    // A long lease (the passes never renew it; its time is also the connect timeout, which a
    // loaded machine can exceed at 1 s); a dropped session is taken over after two missed
    // renewals (200 ms) all the same.
    let config = LeaseConfig {
        database_url: db.url.clone(),
        lease: Duration::from_secs(30),
        interval: Duration::from_millis(100),
    };
    let connection = LeaseConnection::open(&config).await.expect("connect");
    let epoch = loop {
        if let Some(epoch) = connection.try_acquire(holder, &config).await.expect("try") {
            break epoch;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    (
        connection,
        Fence {
            holder: holder.into(),
            epoch,
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_passes_queue_each_tick_once() {
    let db = TestDb::create();
    let mut conn = db.conn();
    setup(&mut conn, 300, "now() - interval '1 second'");
    let (_lease, fence) = lead(&db, "a").await;
    let store =
        Store::connect(&db.url, 8, Duration::from_secs(5), Duration::from_secs(5)).expect("store");
    // Four passes at once, in batches of 50: rows one pass holds are skipped by the others.
    let passes: Vec<_> = (0..4)
        .map(|_| {
            let (store, fence) = (store.clone(), fence.clone());
            tokio::task::spawn_blocking(move || {
                let mut queued = 0;
                loop {
                    let fired = store.fire_cron(&fence, 50, next).expect("pass");
                    queued += fired.queued;
                    if fired.queued == 0 && !fired.more {
                        return queued;
                    }
                }
            })
        })
        .collect();
    let mut total = 0;
    for pass in passes {
        total += pass.await.expect("pass task");
    }
    assert_eq!(total, 300, "every due tick queued once");
    assert_eq!(
        scalar(&mut conn, "SELECT count(*) AS n FROM executions"),
        300
    );
    assert_eq!(
        scalar(
            &mut conn,
            "SELECT count(DISTINCT trigger_id) AS n FROM executions"
        ),
        300
    );
    assert_eq!(
        scalar(
            &mut conn,
            "SELECT count(*) AS n FROM triggers WHERE next_run_at <= now()"
        ),
        0,
        "every trigger moved to its next tick"
    );
    // Another pass finds nothing due.
    let again = {
        let (store, fence) = (store.clone(), fence.clone());
        tokio::task::spawn_blocking(move || store.fire_cron(&fence, 500, next))
            .await
            .expect("task")
            .expect("pass")
    };
    assert_eq!(again.queued, 0);
    // The event names its trigger and tick; the spec is the function's.
    #[derive(QueryableByName)]
    struct Event {
        #[diesel(sql_type = Text)]
        event: String,
        #[diesel(sql_type = Text)]
        handler: String,
    }
    let one: Event = diesel::sql_query(
        "SELECT convert_from(input, 'UTF8') AS event, spec->>'handler' AS handler \
         FROM executions LIMIT 1",
    )
    .get_result(&mut conn)
    .expect("one");
    let event: serde_json::Value = serde_json::from_str(&one.event).expect("json");
    assert_eq!(event["trigger"]["type"], "cron");
    assert_eq!(one.handler, "main.handler");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_former_leader_fires_nothing_and_missed_ticks_run_once() {
    let db = TestDb::create();
    let mut conn = db.conn();
    // Missed for an hour: sixty ticks of an every-minute trigger.
    setup(&mut conn, 1, "now() - interval '1 hour'");
    let (lease_a, fence_a) = lead(&db, "a").await;
    let store =
        Store::connect(&db.url, 4, Duration::from_secs(5), Duration::from_secs(5)).expect("store");
    drop(lease_a);
    let (_lease_b, fence_b) = lead(&db, "b").await;
    assert_eq!(fence_b.epoch, fence_a.epoch + 1);
    let refused = {
        let (store, fence) = (store.clone(), fence_a.clone());
        tokio::task::spawn_blocking(move || store.fire_cron(&fence, 10, next))
            .await
            .expect("task")
    };
    assert!(
        matches!(refused, Err(StorageError::Fenced { .. })),
        "{refused:?}"
    );
    assert_eq!(scalar(&mut conn, "SELECT count(*) AS n FROM executions"), 0);
    for _ in 0..3 {
        let (store, fence) = (store.clone(), fence_b.clone());
        tokio::task::spawn_blocking(move || store.fire_cron(&fence, 10, next))
            .await
            .expect("task")
            .expect("the leader fires");
    }
    assert_eq!(
        scalar(&mut conn, "SELECT count(*) AS n FROM executions"),
        1,
        "sixty missed ticks run once"
    );
    assert_eq!(
        scalar(
            &mut conn,
            "SELECT count(*) AS n FROM triggers WHERE next_run_at > now() \
             AND next_run_at <= now() + interval '1 minute' AND last_run_at < now() - interval '59 minutes'"
        ),
        1,
        "the next tick is the first after now; the one run was the oldest missed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_event_older_than_its_max_age_is_not_run_and_becomes_a_dead_letter() {
    let db = TestDb::create();
    let mut conn = db.conn();
    let function = setup(&mut conn, 0, "now()");
    diesel::sql_query(format!(
        "INSERT INTO function_event_configs (function_id, project_id, max_attempts, max_event_age_s, dead_letter) \
         VALUES ('{function}', 'p1', 3, 60, true)"
    ))
    .execute(&mut conn)
    .expect("config");
    let ids = enqueue(
        &mut conn,
        &spec("p1", function, 128),
        &["{\"old\": true}".into(), "{}".into()],
    );
    diesel::sql_query(format!(
        "UPDATE executions SET created_at = now() - interval '2 minutes' WHERE id = '{}'",
        ids[0]
    ))
    .execute(&mut conn)
    .expect("age");
    let (_lease, fence) = lead(&db, "a").await;
    let store =
        Store::connect(&db.url, 4, Duration::from_secs(5), Duration::from_secs(5)).expect("store");
    let claim = tokio::task::spawn_blocking(move || {
        store.claim(
            &fence,
            10,
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
    })
    .await
    .expect("task")
    .expect("claim");
    let ran: Vec<Uuid> = claim.run.iter().map(|(q, _)| q.id).collect();
    assert_eq!(ran, vec![ids[1]], "only the fresh event runs");
    assert_eq!(claim.failed, 1);
    #[derive(QueryableByName)]
    struct Letter {
        #[diesel(sql_type = Text)]
        event: String,
        #[diesel(sql_type = Text)]
        status: String,
    }
    let letter: Letter = diesel::sql_query(format!(
        "SELECT convert_from(d.input, 'UTF8') AS event, e.status FROM dead_letters d \
         JOIN executions e ON e.id = d.execution_id WHERE d.execution_id = '{}'",
        ids[0]
    ))
    .get_result(&mut conn)
    .expect("a dead letter of the old event");
    assert_eq!(
        (letter.event.as_str(), letter.status.as_str()),
        ("{\"old\": true}", "error")
    );
}
