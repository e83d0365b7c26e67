//! Micro-benchmark of placement: ns per placement (and per release) with 10, 100 and 1000
//! agents, cold (bin-packing scan) and warm (affinity hit).
//!
//! `cargo bench -p fresco-scheduler --bench placement`

use std::hint::black_box;
use std::time::{Duration, Instant};

use fresco_common::wire::{Heartbeat, WarmPool};
use fresco_scheduler::placement::{Demand, Placer, PlacerConfig};
use uuid::Uuid;

const BATCH: usize = 1000;
const ROUNDS: usize = 200;

fn main() {
    println!(
        "placement micro-benchmark ({ROUNDS} rounds of {BATCH} placements, then as many releases)"
    );
    for agents in [10, 100, 1000] {
        for warm in [false, true] {
            let (place_ns, release_ns) = run(agents, warm);
            println!(
                "{agents:>5} agents, {:<4}: {place_ns:>7.0} ns/placement, {release_ns:>5.0} ns/release",
                if warm { "warm" } else { "cold" },
            );
        }
    }
}

fn run(agents: usize, warm: bool) -> (f64, f64) {
    let placer = Placer::new(PlacerConfig {
        agent_down_after: Duration::from_secs(3600),
        persist_interval: Duration::from_secs(1),
        lease_extra: Duration::from_secs(60),
    });
    let warm_function = Uuid::new_v4();
    let now = Instant::now();
    for i in 0..agents {
        // Every agent holds some warm pools; a tenth of them hold the benchmarked function.
        let mut pools: Vec<WarmPool> = (0..5)
            .map(|_| WarmPool {
                key: format!("{}:0", Uuid::new_v4()),
                idle: 2,
                busy: 1,
                memory_mb: 128,
            })
            .collect();
        if i % 10 == 0 {
            pools.push(WarmPool {
                key: format!("{warm_function}:0"),
                idle: BATCH as u32,
                busy: 0,
                memory_mb: 128,
            });
        }
        placer.heartbeat(
            &Heartbeat {
                agent_id: format!("agent-{i}"),
                host: format!("host-{i}"),
                url: format!("http://127.0.0.1:{}", 10000 + i),
                memory_mb_total: 1 << 40,
                memory_mb_reserved: (i as i64 % 7) * 1024,
                cpus: 16,
                running: 0,
                warm: pools,
                images: vec![],
                version: "bench".into(),
                engine_down: false,
                retired_seq: None,
                prewarmed: Vec::new(),
            },
            now,
        );
    }
    let function_id = if warm { warm_function } else { Uuid::new_v4() };
    let demand = Demand {
        project_id: "bench-project",
        image: "",
        function_id,
        version: 0,
        memory_mb: 128,
        timeout_s: 30,
        concurrent_limit: -1,
        per_minute_limit: -1,
    };
    let mut leases = Vec::with_capacity(BATCH);
    let mut place_time = Duration::ZERO;
    let mut release_time = Duration::ZERO;
    for _ in 0..ROUNDS {
        let started = Instant::now();
        for _ in 0..BATCH {
            let lease = placer.place(black_box(&demand), now).expect("room");
            leases.push(lease.lease_id);
        }
        place_time += started.elapsed();
        let started = Instant::now();
        for lease in leases.drain(..) {
            black_box(placer.release(lease, true));
        }
        release_time += started.elapsed();
    }
    let n = (ROUNDS * BATCH) as f64;
    (
        place_time.as_nanos() as f64 / n,
        release_time.as_nanos() as f64 / n,
    )
}
