//! The reference for a cold start's engine cost (bench/cold.sh): a bare container created,
//! started, waited for and removed through bollard (the agent's own `DockerEngine`), with the
//! settings of a 128 MB function (read-only root, no network, every limit) and `/bin/true` as
//! its only process, so nearly all of the time is the engine's.
//!
//! Usage: bare_container IMAGE N [DOCKER_HOST]; prints one line:
//! `bare-container n=N p50_ms=... p90_ms=... min_ms=... max_ms=...`.

use std::collections::BTreeMap;
use std::time::Instant;

use fresco_agent::engine::docker::DockerEngine;
use fresco_agent::engine::{ContainerEngine, ContainerSpec};

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let image = args
        .next()
        .ok_or("usage: bare_container IMAGE N [DOCKER_HOST]")?;
    let n: usize = args
        .next()
        .ok_or("usage: bare_container IMAGE N")?
        .parse()?;
    let host = args
        .next()
        .unwrap_or_else(|| "unix:///var/run/docker.sock".to_owned());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let engine = DockerEngine::connect(&host).await?;
        let mut times = Vec::with_capacity(n);
        for i in 0..n {
            let spec = ContainerSpec {
                name: format!("fresco-bench-bare-{}-{i}", std::process::id()),
                image: image.clone(),
                entrypoint: vec!["/bin/true".to_owned()],
                env: Vec::new(),
                user: "65534:65534".to_owned(),
                labels: BTreeMap::from([("fresco.bench".to_owned(), "bare".to_owned())]),
                network: false,
                memory_bytes: 128 * 1024 * 1024,
                cpu_shares: 74,
                cpu_quota_us: 25_000,
                cpu_period_us: 100_000,
                pids_limit: 64,
                nofile_limit: 1024,
                nproc_limit: 64,
                tmpfs_mb: 64,
                mounts: Vec::new(),
            };
            let started = Instant::now();
            let id = engine.create(&spec).await?;
            engine.start(&id).await?;
            let exit = engine.wait(&id).await?;
            engine.remove(&id).await?;
            times.push(started.elapsed().as_secs_f64() * 1000.0);
            if exit.exit_code != 0 {
                return Err(format!("the bare container exited with {}", exit.exit_code).into());
            }
        }
        times.sort_by(f64::total_cmp);
        println!(
            "bare-container n={n} p50_ms={:.1} p90_ms={:.1} min_ms={:.1} max_ms={:.1}",
            percentile(&times, 50.0),
            percentile(&times, 90.0),
            times.first().copied().unwrap_or(f64::NAN),
            times.last().copied().unwrap_or(f64::NAN),
        );
        Ok::<(), Box<dyn std::error::Error>>(())
    })
}
