//! What freezing an idle sandbox and thawing it for the next invocation costs, with the
//! agent's own code (`LinuxHost::set_frozen`, `container::wait_frozen` / `thaw_cgroup`) on real
//! containers of the Docker engine (harness = false; prints numbers). On the invocation path
//! are the freeze request (write FROZEN: from then on no task runs user code) and the thaw;
//! the wait until the freezer reports FROZEN is confirmed off the path.
//!
//!   runtimes/build.sh                        # engine + images
//!   cargo bench -p fresco-agent --bench freezer
//!
//! Environment: BENCH_FREEZE_ROUNDS (default 1000).
//! Two containers of `fresco/provided:dev`: an idle one (its only process sleeps, as a warm
//! runtime blocked on `/next` does) and a busy one (a shell loop spinning, the stray process
//! of issue 8), each frozen and thawed in a loop.

use std::process::Command;
use std::time::{Duration, Instant};

use fresco_agent::container::{thaw_cgroup, wait_frozen};
use fresco_agent::engine::host::{HostControl, LinuxHost};
use fresco_agent::engine::net::NetworkPolicy;

const DOCKER: &str = "/usr/bin/docker";

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn summary(label: &str, mut samples: Vec<f64>) {
    samples.sort_by(|a, b| a.total_cmp(b));
    println!(
        "{label:<44} n={:<5} p50={:>7.3} ms  p90={:>7.3} ms  p99={:>7.3} ms  max={:>7.3} ms",
        samples.len(),
        percentile(&samples, 50.0),
        percentile(&samples, 90.0),
        percentile(&samples, 99.0),
        samples.last().copied().unwrap_or(f64::NAN),
    );
}

/// Starts a container running `script` (busybox sh) with the sandbox's own hardening basics.
fn start(script: &str) -> String {
    let out = Command::new(DOCKER)
        .args([
            "run",
            "-d",
            "--rm",
            "--network",
            "none",
            "--user",
            "299999:299999",
            "--cpu-quota",
            "25000",
            "--entrypoint",
            "/bin/sh",
            "fresco/provided:dev",
            "-c",
            script,
        ])
        .output()
        .expect("docker run");
    assert!(
        out.status.success(),
        "docker run failed (run runtimes/build.sh first): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn pid(id: &str) -> u32 {
    let out = Command::new(DOCKER)
        .args(["inspect", "--format", "{{.State.Pid}}", id])
        .output()
        .expect("docker inspect");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("pid")
}

fn main() {
    let rounds: usize = std::env::var("BENCH_FREEZE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let host = LinuxHost::new("bench0", NetworkPolicy::default());
    println!("fresco-agent freezer benchmark ({rounds} rounds per container)");
    for (label, script) in [
        ("idle sandbox", "sleep 3600"),
        ("busy sandbox (spinning stray loop)", "while :; do :; done"),
    ] {
        let id = start(script);
        std::thread::sleep(Duration::from_millis(300));
        let cgroups = host.cgroups(pid(&id)).expect("cgroups");
        let (mut request, mut confirmed, mut thaw, mut path) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        runtime.block_on(async {
            for _ in 0..rounds {
                let t0 = Instant::now();
                host.set_frozen(&cgroups, true).expect("freeze");
                let cpu = host.cpu_time_ns(&cgroups).expect("cpu");
                let t1 = Instant::now();
                wait_frozen(&host, &cgroups, Duration::from_secs(1), || false)
                    .await
                    .expect("frozen");
                let t2 = Instant::now();
                thaw_cgroup(&host, &cgroups).expect("thaw");
                let t3 = Instant::now();
                std::hint::black_box(cpu);
                request.push(ms(t1 - t0));
                confirmed.push(ms(t2 - t0));
                thaw.push(ms(t3 - t2));
                path.push(ms(t1 - t0) + ms(t3 - t2));
                // An invocation's worth of running between two freezes.
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        });
        summary(&format!("{label}: freeze request + cpu read"), request);
        summary(&format!("{label}: freeze until FROZEN"), confirmed);
        summary(&format!("{label}: thaw (cpu read + THAWED)"), thaw);
        summary(&format!("{label}: on the invocation path"), path);
        let _ = Command::new(DOCKER).args(["rm", "-f", &id]).output();
    }
}
