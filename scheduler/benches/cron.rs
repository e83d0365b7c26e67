//! The cron pass's cost against the number of triggers, on the real PostgreSQL: with 100,
//! 10,000 and 100,000 enabled cron triggers of which 10 are due, the time of one pass that
//! queues those 10 ticks (median and p90 over repeated passes). The pass reads the due
//! triggers through the partial index on `next_run_at`, so its cost should not grow with the
//! triggers that are not due.
//!
//! Needs PostgreSQL (`FRESCO_TEST_DATABASE_URL`): `cargo bench -p fresco-scheduler --bench cron`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use fresco_common::schedule::Schedule;
use fresco_scheduler::leader::{Fence, LeaseConfig, LeaseConnection};
use fresco_store::queue::Store;
use support::*;
use uuid::Uuid;

const DUE: usize = 10;
const PASSES: usize = 50;

fn next(
    cron: &str,
    timezone: &str,
    after: chrono::DateTime<chrono::Utc>,
) -> Option<chrono::DateTime<chrono::Utc>> {
    Schedule::parse(cron, timezone).ok()?.next_after(after)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("cron benchmark: run it with `cargo bench -p fresco-scheduler --bench cron`");
        return;
    }
    for triggers in [100usize, 10_000, 100_000] {
        let db = TestDb::create();
        let mut conn = db.conn();
        let function = Uuid::new_v4();
        conn.batch_execute(&format!(
            "INSERT INTO runtimes (id, name, image, kind, project_id) \
             VALUES ('{}', 'py', 'fresco/python3:test', 'python', 'admin'); \
             INSERT INTO code_packages (project_id, sha256, format, size, content) \
             VALUES ('p1', 'abc', 'zip', 1, '\\x00'); \
             INSERT INTO functions (id, project_id, name, runtime_id, handler, memory_mb, timeout_s, code_sha256) \
             SELECT '{function}', 'p1', 'f', id, 'main.handler', 128, 3, 'abc' FROM runtimes; \
             INSERT INTO triggers (id, project_id, name, kind, function_id, cron, timezone, next_run_at) \
             SELECT gen_random_uuid(), 'p1', 't' || i, 'cron', '{function}', \
                    '0 0 1 1 *', 'UTC', now() + interval '1 day' + i * interval '1 second' \
             FROM generate_series(1, {triggers}) AS i; \
             ANALYZE triggers;",
            Uuid::new_v4()
        ))
        .expect("setup");
        let config = LeaseConfig {
            database_url: db.url.clone(),
            lease: Duration::from_secs(30),
            interval: Duration::from_millis(100),
        };
        let lease = LeaseConnection::open(&config).await.expect("lease");
        let epoch = lease
            .try_acquire("bench", &config)
            .await
            .expect("try")
            .expect("free");
        let fence = Fence {
            holder: "bench".into(),
            epoch,
        };
        let store = Store::connect(&db.url, 2, Duration::from_secs(5), Duration::from_secs(30))
            .expect("store");
        let mut times = Vec::new();
        for _ in 0..PASSES {
            // Make DUE triggers due again.
            conn.batch_execute(&format!(
                "UPDATE triggers SET next_run_at = now() - interval '1 second' \
                 WHERE id IN (SELECT id FROM triggers WHERE project_id = 'p1' LIMIT {DUE})"
            ))
            .expect("due");
            let (store, fence) = (store.clone(), fence.clone());
            let started = Instant::now();
            let fired = tokio::task::spawn_blocking(move || store.fire_cron(&fence, 500, next))
                .await
                .expect("task")
                .expect("pass");
            times.push(started.elapsed());
            assert_eq!(fired.queued, DUE);
        }
        times.sort();
        println!(
            "cron pass, {triggers:>7} triggers, {DUE} due: p50 {:.2} ms, p90 {:.2} ms ({PASSES} passes)",
            ms(times[PASSES / 2]),
            ms(times[PASSES * 9 / 10])
        );
    }
}
