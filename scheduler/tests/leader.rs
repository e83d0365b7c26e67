//! Leadership and fencing against the real PostgreSQL: the leader lease, its takeover, the
//! refusal of a former leader's writes, and a paused (`kill -STOP`) active scheduler replaced
//! by its standby, with the real binaries.

mod support;

use std::collections::HashSet;
use std::process::Command;
use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Nullable, Text};
use fresco_common::scheduler_client::SchedulerClient;
use fresco_common::ticket::sha256_hex;
use fresco_common::tls::InternalTls;
use fresco_common::wire::{PlacementRequest, Release};
use fresco_scheduler::leader::{Fence, LeaseConfig, LeaseConnection};
use fresco_store::queue::{Finish, Limits, StorageError, Store, Verdict};
use support::*;
use uuid::Uuid;

const SETTLE: Duration = Duration::from_secs(30);

#[derive(Debug, QueryableByName)]
struct Lease {
    #[diesel(sql_type = Text)]
    holder: String,
    #[diesel(sql_type = BigInt)]
    epoch: i64,
}

fn lease_row(conn: &mut PgConnection) -> Option<Lease> {
    diesel::sql_query("SELECT holder, epoch FROM scheduler_leader WHERE id = 1")
        .get_result(conn)
        .optional()
        .expect("read the lease")
}

#[derive(Debug, QueryableByName)]
struct Written {
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Nullable<BigInt>)]
    leader_epoch: Option<i64>,
    #[diesel(sql_type = Bool)]
    after: bool,
}

/// Every execution: its status, the epoch that wrote it last, and whether that write (start
/// or finish) happened after `since` (a database timestamp).
fn written_since(conn: &mut PgConnection, since: &str) -> Vec<Written> {
    diesel::sql_query(
        "SELECT status, leader_epoch, \
         (COALESCE(finished_at, started_at, created_at) > $1::timestamptz) AS after \
         FROM executions",
    )
    .bind::<Text, _>(since)
    .load(conn)
    .expect("read executions")
}

#[derive(QueryableByName)]
struct Now {
    #[diesel(sql_type = Text)]
    now: String,
}

fn db_now(conn: &mut PgConnection) -> String {
    diesel::sql_query("SELECT now()::text AS now")
        .get_result::<Now>(conn)
        .expect("now")
        .now
}

fn signal(child: &std::process::Child, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.id().to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{name} failed");
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking task")
}

/// The lease moves to a standby only once it expired or its holder's session is gone, with a
/// new epoch each time; and every write of a former leader (claims, results, requeues, agents
/// marked down) is refused in the database, whatever that leader believes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_former_leader_can_write_nothing() {
    let db = TestDb::create();
    let config = LeaseConfig {
        database_url: db.url.clone(),
        lease: Duration::from_secs(1),
        interval: Duration::from_millis(100),
    };
    let a = LeaseConnection::open(&config).await.expect("connect a");
    let b = LeaseConnection::open(&config).await.expect("connect b");
    let first = a
        .try_acquire("a", &config)
        .await
        .expect("acquire")
        .expect("the lease is free");
    assert_eq!(
        b.try_acquire("b", &config).await.expect("try"),
        None,
        "a live, unexpired lease is not taken"
    );
    assert!(a.renew("a", first, &config).await.expect("renew"));

    let store =
        Store::connect(&db.url, 4, Duration::from_secs(5), Duration::from_secs(5)).expect("store");
    let fence_a = Fence {
        holder: "a".into(),
        epoch: first,
    };
    let mut conn = db.conn();
    let ids = enqueue(
        &mut conn,
        &spec("p1", Uuid::new_v4(), 128),
        &["1".into(), "2".into(), "3".into()],
    );
    let no_limits = Limits {
        concurrent: -1,
        per_minute: -1,
    };
    let claim = {
        let (store, fence) = (store.clone(), fence_a.clone());
        blocking(move || {
            store.claim(
                &fence,
                1,
                &mut HashSet::new(),
                &mut String::new(),
                no_limits,
                |_, _| Verdict::Run {
                    agent_id: "agent-a".into(),
                },
            )
        })
        .await
        .expect("the leader claims")
    };
    assert_eq!(claim.run.len(), 1);
    let claimed = claim.run[0].0.id;

    // a stops renewing (paused): after the lease time b takes over with the next epoch.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let second = b
        .try_acquire("b", &config)
        .await
        .expect("acquire")
        .expect("an expired lease is taken over");
    assert_eq!(second, first + 1);
    assert!(
        !a.renew("a", first, &config).await.expect("renew"),
        "a former leader cannot renew"
    );
    let lease = lease_row(&mut conn).expect("lease row");
    assert_eq!((lease.holder.as_str(), lease.epoch), ("b", second));

    // a wakes up and tries every leader-only write: all refused, nothing changes.
    let before = rows(&mut conn);
    let (store2, fence) = (store.clone(), fence_a.clone());
    let refused = blocking(move || {
        let claim = store2
            .claim(
                &fence,
                10,
                &mut HashSet::new(),
                &mut String::new(),
                no_limits,
                |_, _| Verdict::Run {
                    agent_id: "agent-a".into(),
                },
            )
            .map(|_| ());
        let finish = store2
            .finish(
                &fence,
                &[(
                    claimed,
                    1,
                    &Finish::Completed {
                        status: fresco_store::ExecutionStatus::Succeeded,
                        result: Some("late".into()),
                        error: None,
                        duration_ms: 1.0,
                        max_memory_mb: None,
                        cpu_ms: None,
                        cold: false,
                        logs: String::new(),
                        init_duration_ms: None,
                    },
                )],
            )
            .map(|_| ());
        let requeue = store2
            .finish(&fence, &[(claimed, 1, &Finish::Requeue { refund: false })])
            .map(|_| ());
        let down = store2.mark_agents_down(&fence, &["agent-a".to_owned()]);
        let silent = store2
            .mark_silent_agents_down(&fence, Duration::from_secs(0))
            .map(|_| ());
        vec![claim, finish, requeue, down, silent]
    })
    .await;
    for (i, result) in refused.into_iter().enumerate() {
        assert!(
            matches!(result, Err(StorageError::Fenced { epoch }) if epoch == first),
            "write {i} of the former leader: {result:?}"
        );
    }
    let after = rows(&mut conn);
    assert_eq!(
        before
            .iter()
            .map(|r| (r.id, r.status.clone(), r.attempts))
            .collect::<Vec<_>>(),
        after
            .iter()
            .map(|r| (r.id, r.status.clone(), r.attempts))
            .collect::<Vec<_>>(),
        "nothing written"
    );

    // The new leader writes: the late result of a's attempt lands under its own epoch.
    let fence_b = Fence {
        holder: "b".into(),
        epoch: second,
    };
    let changed = {
        let store = store.clone();
        blocking(move || {
            store.finish(
                &fence_b,
                &[(claimed, 1, &Finish::Requeue { refund: false })],
            )
        })
        .await
        .expect("the leader writes")
    };
    assert_eq!(changed, 1);
    let written = written_since(&mut conn, "-infinity");
    assert_eq!(written.len(), ids.len());
    assert!(written
        .iter()
        .all(|w| w.status == "queued" && w.leader_epoch.is_none_or(|e| e == second)));

    // A crashed leader's session closes: a standby takes over at once, without waiting for
    // the lease to expire.
    assert!(b.renew("b", second, &config).await.expect("renew"));
    let c = LeaseConnection::open(&config).await.expect("connect c");
    assert_eq!(c.try_acquire("c", &config).await.expect("try"), None);
    drop(b);
    let started = Instant::now();
    let third = loop {
        if let Some(epoch) = c.try_acquire("c", &config).await.expect("try") {
            break epoch;
        }
        assert!(
            started.elapsed() < Duration::from_millis(800),
            "the dead holder's lease should be taken before it expires"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(third, second + 1);
}

/// `kill -STOP` of the active scheduler: the standby serves placements and runs the queue
/// within 10 s, and the paused one, once continued, knows it lost the lease and writes
/// nothing (no execution row changes under its epoch after the takeover).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paused_leader_is_replaced_and_fenced() {
    let db = TestDb::create();
    let dir = TestDir::new();
    // Default lease (5 s); an agent heartbeating a paused scheduler is slowed by its request
    // timeout, hence the longer agent_down_time; short tickets bound the reconciliation.
    let extra = "leader_check_interval_ms = 1000\nagent_down_time = 6\n\
                 [internal_auth]\nticket_ttl = 5\n";
    let mut first = SchedulerProc::spawn(&dir, &db, extra);
    first.wait_role("active", SETTLE).await;
    let mut second = SchedulerProc::spawn(&dir, &db, extra);
    second.wait_role("standby", SETTLE).await;
    let urls = vec![first.url.clone(), second.url.clone()];
    let agent = TestAgent::start(
        "agent-a",
        65536,
        Behavior::Delay(Duration::from_millis(1500)),
        &urls,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut conn = db.conn();
    let old_epoch = lease_row(&mut conn).expect("a lease").epoch;
    let inputs: Vec<String> = (0..40).map(|i| format!("{{\"n\": {i}}}")).collect();
    let ids = enqueue(&mut conn, &spec("p1", Uuid::new_v4(), 128), &inputs);
    wait_until(SETTLE, "work in flight on the agent", || {
        agent.seen.count() >= 10
    })
    .await;

    signal(&first.child, "STOP");
    let paused = Instant::now();
    second.wait_role("active", Duration::from_secs(10)).await;
    let client =
        SchedulerClient::for_control_plane(&urls, control_plane(), InternalTls::disabled())
            .expect("client");
    let granted = loop {
        let request = PlacementRequest {
            execution_id: Uuid::new_v4(),
            payload_sha256: sha256_hex(b"{}"),
            spec: spec("p2", Uuid::new_v4(), 128),
            concurrent_limit: -1,
            per_minute_limit: -1,
        };
        match client.place(&request).await {
            Ok(granted) => break granted,
            Err(e) => {
                assert!(
                    paused.elapsed() < Duration::from_secs(10),
                    "no placement 10 s after the leader was paused: {e}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let takeover = paused.elapsed();
    eprintln!("placements served {takeover:?} after kill -STOP of the leader");
    assert_eq!(granted.agent_id, "agent-a");
    assert_eq!(client.active_url(), second.url);
    client
        .release(granted.lease_id, &Release { warm: true })
        .await
        .expect("release");
    let lease = lease_row(&mut conn).expect("lease");
    assert!(lease.epoch > old_epoch, "a new epoch: {lease:?}");
    let new_epoch = lease.epoch;
    let takeover_at = db_now(&mut conn);

    // The paused leader's attempts are reconciled by the new one (their results never come).
    wait_until(Duration::from_secs(60), "the queue to drain", || {
        unfinished(&mut conn) == 0
    })
    .await;

    // Continued, the former leader notices at once and stands by; its late results (the agent
    // answered while it was paused) are refused.
    signal(&first.child, "CONT");
    first.wait_role("standby", Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(first.role().await.as_deref(), Some("standby"));
    assert_eq!(second.role().await.as_deref(), Some("active"));
    let log = first.log_text();
    assert!(log.contains("lost the leader lease"), "{log}");

    let written = written_since(&mut conn, &takeover_at);
    assert_eq!(written.len(), ids.len());
    let late: Vec<&Written> = written
        .iter()
        .filter(|w| w.after && w.leader_epoch != Some(new_epoch))
        .collect();
    assert!(
        late.is_empty(),
        "rows written after the takeover by another epoch than {new_epoch}: {late:?}"
    );
    let all = rows(&mut conn);
    assert!(
        all.iter()
            .all(|r| r.status == "succeeded" && (1..=3).contains(&r.attempts)),
        "{all:?}"
    );
    let lease = lease_row(&mut conn).expect("lease");
    assert_eq!(lease.epoch, new_epoch, "no later takeover");
    let runs = tally(agent.seen.ids());
    for r in &all {
        let n = runs.get(&r.id).copied().unwrap_or(0);
        assert!(
            n >= 1 && n <= r.attempts as usize,
            "execution {} ran {n} times in {} attempts",
            r.id,
            r.attempts
        );
    }
    assert_eq!(runs.len(), ids.len());
}
