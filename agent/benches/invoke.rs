//! Execution-path benchmark against the real Docker engine (harness = false; prints numbers).
//!
//!   runtimes/build.sh                       # engine + images
//!   cargo bench -p fresco-agent --bench invoke
//!
//! Environment: BENCH_WARM_CALLS (default 1000), BENCH_COLD_STARTS (default 10),
//! BENCH_AGENT_OPTIONS (extra `[agent]` lines, e.g. `freeze_delay_ms = 0` to freeze after
//! every invocation).
//! Measures cold starts (create + start + first response, through POST /v1/run) for the python
//! and provided runtimes, and warm invocations through POST /v1/run, sequentially.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use common::*;
use serde_json::json;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn summary(label: &str, mut samples: Vec<f64>) {
    samples.sort_by(|a, b| a.total_cmp(b));
    println!(
        "{label:<48} n={:<5} p50={:>8.2} ms  p90={:>8.2} ms  p99={:>8.2} ms  max={:>8.2} ms",
        samples.len(),
        percentile(&samples, 50.0),
        percentile(&samples, 90.0),
        percentile(&samples, 99.0),
        samples.last().copied().unwrap_or(f64::NAN),
    );
}

fn main() {
    // `cargo bench` passes --bench; nothing to parse.
    let warm_calls = env_usize("BENCH_WARM_CALLS", 1000);
    let cold_starts = env_usize("BENCH_COLD_STARTS", 10);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let api = FakeApi::start();
        let hello = api.add("python-hello");
        let echo = api.add("provided-echo");
        let mut options = AgentOptions::new(&api);
        options.extra = std::env::var("BENCH_AGENT_OPTIONS")
            .unwrap_or_default()
            .replace("\\n", "\n");
        println!(
            "fresco-agent execution path benchmark (extra [agent] options: {:?})",
            options.extra
        );
        let agent = AgentProcess::start(options);

        // The HTTP hop alone (client + actix), as a baseline for the agent's share below.
        let mut health = Vec::new();
        for _ in 0..warm_calls.min(500) {
            let t = Instant::now();
            let response = agent
                .client
                .get(format!("{}/healthcheck", agent.url))
                .send()
                .await
                .expect("healthcheck");
            assert!(response.status().is_success());
            let _ = response.bytes().await;
            health.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        summary("GET /healthcheck round trip (HTTP baseline)", health);

        for (label, runtime_kind, handler, sha) in [
            ("python", "python", "main.handler", &hello),
            ("provided", "provided", "unused", &echo),
        ] {
            let mut total = Vec::new();
            let mut init = Vec::new();
            for _ in 0..cold_starts {
                // A new function id each time: nothing is warm.
                let s = spec("bench", runtime_kind, handler, Some(sha.clone()));
                let (result, elapsed) = agent.run(&s, json!({"name": "bench"})).await;
                assert_eq!(result["status"], "succeeded", "{result}");
                assert_eq!(result["cold"], true);
                total.push(elapsed.as_secs_f64() * 1000.0);
                init.push(result["init_ms"].as_f64().unwrap_or(f64::NAN));
            }
            summary(&format!("cold {label}: create+start+first response"), total);
            summary(&format!("cold {label}: create+start (init_ms)"), init);
        }

        for (label, runtime_kind, handler, sha, calls) in [
            ("python", "python", "main.handler", &hello, warm_calls),
            (
                "provided (busybox sh + wget)",
                "provided",
                "unused",
                &echo,
                warm_calls / 5,
            ),
        ] {
            let s = spec("bench-warm", runtime_kind, handler, Some(sha.clone()));
            let ticket = ticket_for(&agent.agent_id, &s);
            let (status, _) = agent.run_raw(&ticket, json!({})).await; // the cold one
            assert_eq!(status, 200);
            let mut wall = Vec::with_capacity(calls);
            let mut inside = Vec::with_capacity(calls);
            let started = Instant::now();
            for i in 0..calls {
                // A ticket is used once and names its event: one per call (signed off the clock).
                let event = json!({"i": i});
                let ticket = ticket_with_payload(&agent.agent_id, &s, &event);
                let t = Instant::now();
                let (status, result) = agent.run_raw(&ticket, event).await;
                wall.push(t.elapsed().as_secs_f64() * 1000.0);
                assert_eq!(status, 200);
                assert_eq!(result["cold"], false, "{result}");
                inside.push(result["duration_ms"].as_f64().unwrap_or(f64::NAN));
            }
            let secs = started.elapsed().as_secs_f64();
            summary(
                &format!("warm {label}: POST /v1/run round trip"),
                wall.clone(),
            );
            summary(
                &format!("warm {label}: dispatch→response (duration_ms)"),
                inside.clone(),
            );
            let mut overhead: Vec<f64> = wall.iter().zip(&inside).map(|(w, i)| w - i).collect();
            overhead.sort_by(|a, b| a.total_cmp(b));
            summary(
                &format!("warm {label}: agent share (round trip - duration)"),
                overhead,
            );
            println!(
                "warm {label}: {:.0} calls/s sequential",
                calls as f64 / secs
            );
        }

        // With `[DEFAULT] debug = true` the agent logs each run's output-sync time.
        let syncs: Vec<f64> = agent
            .log()
            .lines()
            .filter_map(|l| l.split("output sync ").nth(1))
            .filter_map(|rest| rest.split(' ').next())
            .filter_map(|ms| ms.parse().ok())
            .collect();
        if !syncs.is_empty() {
            summary("output sync (from the agent's debug log)", syncs);
        }
    });
}
