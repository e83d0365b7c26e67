//! Service-level benchmark against a real PostgreSQL and the real scheduler binary, with two
//! fast in-process test agents:
//! - the scheduler client's `place()` + `release()` round trip on loopback,
//! - enqueue-to-start latency of async executions (insert + NOTIFY committed → the agent
//!   receives the run), p50/p99,
//! - the time to drain 10,000 queued executions.
//!
//! Needs PostgreSQL: `source tools/lib/common.sh && source tools/lib/postgres.sh && pg_start`,
//! then `FRESCO_DB_URL=... cargo bench -p fresco-scheduler --bench queue`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use fresco_common::scheduler_client::SchedulerClient;
use fresco_common::wire::{PlacementRequest, Release};
use support::*;
use uuid::Uuid;

const LATENCY_SAMPLES: usize = 300;
const DRAIN: i32 = 10_000;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` does not: only build then.
    if !std::env::args().any(|a| a == "--bench") {
        println!("queue benchmark: run it with `cargo bench -p fresco-scheduler --bench queue`");
        return;
    }
    let db = TestDb::create();
    let dir = TestDir::new();
    let mut scheduler =
        SchedulerProc::spawn(&dir, &db, "async_max_in_flight = 64\nasync_batch_size = 64");
    scheduler.wait_role("active", Duration::from_secs(30)).await;
    let urls = vec![scheduler.url.clone()];
    let a = TestAgent::start("bench-a", 1 << 30, Behavior::Echo, &urls).await;
    let b = TestAgent::start("bench-b", 1 << 30, Behavior::Echo, &urls).await;
    tokio::time::sleep(Duration::from_millis(600)).await;

    // 1. place() + release() round trips through the client.
    let client = SchedulerClient::for_control_plane(
        &urls,
        control_plane(),
        fresco_common::tls::InternalTls::disabled(),
    )
    .expect("client");
    let request = PlacementRequest {
        execution_id: Uuid::new_v4(),
        payload_sha256: fresco_common::ticket::sha256_hex(b"{}"),
        spec: spec("bench-sync", Uuid::new_v4(), 128),
        concurrent_limit: -1,
        per_minute_limit: -1,
    };
    for _ in 0..200 {
        let p = client.place(&request).await.expect("placement");
        client
            .release(p.lease_id, &Release { warm: true })
            .await
            .expect("release");
    }
    let mut place_times = Vec::new();
    for _ in 0..2000 {
        let started = Instant::now();
        let p = client.place(&request).await.expect("placement");
        place_times.push(started.elapsed());
        client
            .release(p.lease_id, &Release { warm: true })
            .await
            .expect("release");
    }
    place_times.sort();
    println!(
        "client place() on loopback: p50 {:.3} ms, p99 {:.3} ms (n={})",
        ms(percentile(&place_times, 0.5)),
        ms(percentile(&place_times, 0.99)),
        place_times.len()
    );

    // 2. Enqueue-to-start latency, one execution at a time.
    let mut conn = db.conn();
    let latency_spec = spec("bench-latency", Uuid::new_v4(), 128);
    let mut latencies = Vec::with_capacity(LATENCY_SAMPLES);
    let mut from_commit = Vec::with_capacity(LATENCY_SAMPLES);
    for i in 0..LATENCY_SAMPLES {
        let before = a.seen.count() + b.seen.count();
        let started = Instant::now();
        let ids = enqueue(&mut conn, &latency_spec, &[format!("{{\"i\": {i}}}")]);
        let committed = Instant::now();
        let deadline = started + Duration::from_secs(10);
        let arrived = loop {
            let found = [&a, &b].iter().find_map(|agent| {
                agent
                    .seen
                    .runs
                    .lock()
                    .expect("runs")
                    .iter()
                    .find(|(id, _)| *id == ids[0])
                    .map(|(_, at)| *at)
            });
            if let Some(at) = found {
                break at;
            }
            assert!(
                Instant::now() < deadline,
                "execution {} never started",
                ids[0]
            );
            tokio::time::sleep(Duration::from_micros(200)).await;
        };
        assert!(a.seen.count() + b.seen.count() > before);
        latencies.push(arrived.saturating_duration_since(started));
        from_commit.push(arrived.saturating_duration_since(committed));
    }
    latencies.sort();
    from_commit.sort();
    println!(
        "enqueue-to-start (BEGIN; INSERT; NOTIFY; COMMIT issued → agent receives the run): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (n={})",
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
        ms(latencies[latencies.len() - 1]),
        latencies.len()
    );
    println!(
        "  of which after the enqueue's commit returned: p50 {:.2} ms, p99 {:.2} ms",
        ms(percentile(&from_commit, 0.5)),
        ms(percentile(&from_commit, 0.99)),
    );
    wait_until(Duration::from_secs(30), "latency runs to finish", || {
        unfinished(&mut conn) == 0
    })
    .await;

    // 3. Drain 10,000 queued executions.
    let drain_spec = spec("bench-drain", Uuid::new_v4(), 128);
    let started = Instant::now();
    enqueue_bulk(&mut conn, &drain_spec, DRAIN);
    let enqueued = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut next_report = 2_000;
    loop {
        let left = unfinished(&mut conn);
        if left == 0 {
            break;
        }
        let done = i64::from(DRAIN) - left;
        if done >= next_report {
            println!(
                "  {done} done after {:.2} s",
                started.elapsed().as_secs_f64()
            );
            next_report += 2_000;
        }
        assert!(
            Instant::now() < deadline,
            "the queue did not drain:\n{}",
            scheduler.log_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drained = started.elapsed();
    let ok = rows(&mut conn)
        .iter()
        .filter(|r| r.status == "succeeded")
        .count();
    println!(
        "drained {DRAIN} queued executions in {:.2} s ({:.0}/s; bulk insert took {:.0} ms); {ok} succeeded in total",
        drained.as_secs_f64(),
        f64::from(DRAIN) / drained.as_secs_f64(),
        ms(enqueued),
    );
    assert_eq!(
        ok,
        LATENCY_SAMPLES + DRAIN as usize,
        "every execution succeeded"
    );
}
