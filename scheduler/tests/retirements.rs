//! The retirement log through the real fresco-scheduler binary and a real PostgreSQL: rows
//! the API wrote reach agents in heartbeat replies, against each agent's acknowledgement;
//! rows past the retention are purged and an agent that missed them is told to reset.

mod support;

use std::time::{Duration, Instant};

use diesel::prelude::*;
use fresco_common::ticket::test_keys::AGENT_PUBLIC;
use fresco_common::wire::{Heartbeat, HeartbeatReply};
use support::*;
use uuid::Uuid;

const SETTLE: Duration = Duration::from_secs(30);

fn heartbeat(acked: Option<i64>) -> Heartbeat {
    Heartbeat {
        agent_id: "agent-r".into(),
        host: "h".into(),
        url: "http://127.0.0.1:1".into(),
        memory_mb_total: 1024,
        memory_mb_reserved: 0,
        cpus: 1,
        running: 0,
        warm: vec![],
        images: vec![],
        version: "t".into(),
        retired_seq: acked,
        prewarmed: Vec::new(),
        engine_down: false,
    }
}

/// Sends a heartbeat signed with agent-r's own key for its body (enrolled by the test); the reply
/// once the scheduler has loaded the log (it answers 204 before).
async fn beat(url: &str, acked: Option<i64>) -> HeartbeatReply {
    let body = serde_json::to_vec(&heartbeat(acked)).expect("encode");
    let token = agent_signer("agent-r")
        .heartbeat_token(&body, 60)
        .expect("token");
    let deadline = Instant::now() + SETTLE;
    loop {
        let response = reqwest::Client::new()
            .post(format!("{url}/v1/agents/heartbeat"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .expect("send");
        match response.status().as_u16() {
            200 => return response.json().await.expect("a heartbeat reply"),
            204 => {}
            other => panic!("heartbeat answered {other}"),
        }
        assert!(Instant::now() < deadline, "the log was never loaded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Appends a retirement as the API does (under the log's lock); returns its seq.
fn retire(conn: &mut PgConnection, function: Uuid, version: Option<i32>, age_s: i64) -> i64 {
    #[derive(QueryableByName)]
    struct Seq {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        seq: i64,
    }
    conn.transaction(|conn| {
        diesel::sql_query("SELECT pg_advisory_xact_lock($1)")
            .bind::<diesel::sql_types::BigInt, _>(fresco_common::wire::RETIREMENT_LOG_LOCK)
            .execute(conn)?;
        diesel::sql_query(
            "INSERT INTO function_retirements (project_id, function_id, version, created_at) \
             VALUES ('p', $1, $2, now() - make_interval(secs => $3::double precision)) RETURNING seq",
        )
        .bind::<diesel::sql_types::Uuid, _>(function)
        .bind::<diesel::sql_types::Nullable<diesel::sql_types::Integer>, _>(version)
        .bind::<diesel::sql_types::BigInt, _>(age_s)
        .get_result::<Seq>(conn)
        .map(|s| s.seq)
    })
    .expect("insert a retirement")
}

fn seqs(reply: &HeartbeatReply) -> Vec<i64> {
    reply.retire.iter().map(|k| k.seq).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn heartbeat_replies_deliver_the_retirement_log() {
    let db = TestDb::create();
    let dir = TestDir::new();
    let mut conn = db.conn();
    let (f1, f2, f3) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let first = retire(&mut conn, f1, None, 0);
    let second = retire(&mut conn, f2, Some(3), 0);
    let mut scheduler = SchedulerProc::spawn(
        &dir,
        &db,
        "retirement_poll_interval_ms = 100\nretirement_retention = 60\n",
    );
    scheduler.wait_role("active", SETTLE).await;
    enrol(&dir.agents(), "agent-r", "http://127.0.0.1:1", AGENT_PUBLIC);

    // A fresh agent gets the whole log; one that applied it, nothing.
    let fresh = beat(&scheduler.url, None).await;
    assert_eq!(seqs(&fresh), vec![first, second]);
    assert_eq!(fresh.retired_seq, second);
    assert!(!fresh.reset);
    assert_eq!(
        (fresh.retire[1].function_id, fresh.retire[1].version),
        (f2, Some(3))
    );
    let caught_up = beat(&scheduler.url, Some(second)).await;
    assert!(caught_up.retire.is_empty());
    assert_eq!(caught_up.retired_seq, second);

    // A new row reaches the next heartbeat within the poll interval.
    let third = retire(&mut conn, f3, Some(0), 0);
    let started = Instant::now();
    loop {
        let reply = beat(&scheduler.url, Some(second)).await;
        if !reply.retire.is_empty() {
            assert_eq!(seqs(&reply), vec![third]);
            assert_eq!(reply.retired_seq, third);
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "never delivered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("delivered {:?} after the commit", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rows_past_the_retention_are_purged_and_agents_behind_them_reset() {
    let db = TestDb::create();
    let dir = TestDir::new();
    let mut conn = db.conn();
    let old = retire(&mut conn, Uuid::new_v4(), None, 7200);
    let older_still = retire(&mut conn, Uuid::new_v4(), None, 7200);
    let recent = retire(&mut conn, Uuid::new_v4(), None, 0);
    assert!(old < older_still && older_still < recent);
    let mut scheduler = SchedulerProc::spawn(
        &dir,
        &db,
        "retirement_poll_interval_ms = 100\nretirement_retention = 60\n",
    );
    scheduler.wait_role("active", SETTLE).await;
    enrol(&dir.agents(), "agent-r", "http://127.0.0.1:1", AGENT_PUBLIC);
    let count = |conn: &mut PgConnection| -> i64 {
        use diesel::dsl::sql;
        diesel::select(sql::<diesel::sql_types::BigInt>(
            "(SELECT count(*) FROM function_retirements)",
        ))
        .get_result(conn)
        .expect("count")
    };
    let started = Instant::now();
    while count(&mut conn) != 1 {
        assert!(
            started.elapsed() < SETTLE,
            "the active scheduler never purged the old rows"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // An agent that acknowledged the first row missed the second: reset, then the rest.
    let behind = beat(&scheduler.url, Some(old)).await;
    assert!(behind.reset);
    assert_eq!(seqs(&behind), vec![recent]);
    assert_eq!(behind.retired_seq, recent);
    let current = beat(&scheduler.url, Some(older_still)).await;
    assert!(!current.reset);
    assert_eq!(seqs(&current), vec![recent]);
}
