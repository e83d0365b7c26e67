//! CPU per warm invocation, per process on the execution path below the API (harness = false;
//! prints numbers): the agent, the container's shim (its PID 1), the function's runtime (the
//! shim's descendants), its containerd-shim, dockerd and containerd, as `/proc/<pid>/stat`
//! utime+stime deltas over a fixed number of sequential warm invocations through
//! `POST /v1/run` on the real fresco-agent binary and Docker engine.
//!
//!   cargo bench -p fresco-agent --bench warmcpu [--profile dev]
//!
//! Environment: BENCH_WARM_CALLS (default 2000), BENCH_FUNCTION (default python-hello).
//! dockerd and containerd are shared by everything on the node: their figures include
//! whatever else used the engine meanwhile (the output says the load average).

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Instant;

use common::*;
use serde_json::json;

/// utime + stime of a process, in clock ticks.
fn ticks(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // The command name may hold spaces: fields count from after its closing parenthesis.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state(0) ppid(1) ... utime(11) stime(12).
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(11) + field(12)
}

fn parent(pid: u32) -> u32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    rest.split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in tasks.filter_map(Result::ok) {
        let text = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        out.extend(
            text.split_whitespace()
                .filter_map(|v| v.parse::<u32>().ok()),
        );
    }
    out
}

fn descendants(pid: u32) -> Vec<u32> {
    let mut all = Vec::new();
    let mut stack = children(pid);
    while let Some(p) = stack.pop() {
        all.push(p);
        stack.extend(children(p));
    }
    all
}

fn by_name(name: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|dir| {
            dir.filter_map(Result::ok)
                .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                .filter(|pid| {
                    std::fs::read_to_string(format!("/proc/{pid}/comm"))
                        .map(|c| c.trim() == name)
                        .unwrap_or(false)
                })
                .collect()
        })
        .unwrap_or_default()
}

fn main() {
    let calls: usize = std::env::var("BENCH_WARM_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let function = std::env::var("BENCH_FUNCTION").unwrap_or_else(|_| "python-hello".to_owned());
    let hz = 100.0; // USER_HZ on Linux
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let api = FakeApi::start();
        let sha = api.add(&function);
        let agent = AgentProcess::start(AgentOptions::new(&api));
        let (kind, handler) = if function.starts_with("provided") {
            ("provided", "unused")
        } else {
            ("python", "main.handler")
        };
        let spec = spec("warmcpu", kind, handler, Some(sha));
        // Cold start, then a few warm calls before measuring.
        for _ in 0..20 {
            let (result, _) = agent.run(&spec, json!({"name": "bench"})).await;
            assert!(
                result["status"] == "succeeded",
                "warm-up failed: {result}"
            );
        }
        let container = agent.containers().into_iter().next().expect("a container");
        let out = Command::new(DOCKER)
            .args(["inspect", "--format", "{{.State.Pid}}", &container])
            .output()
            .expect("inspect");
        let shim: u32 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("pid");
        let function_pids = descendants(shim);
        let mut groups: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
        groups.insert("fresco-agent", vec![agent.pid()]);
        groups.insert("shim (container PID 1)", vec![shim]);
        groups.insert("function runtime", function_pids);
        groups.insert("containerd-shim", vec![parent(shim)]);
        groups.insert("dockerd (shared)", by_name("dockerd"));
        groups.insert("containerd (shared)", by_name("containerd"));
        let sample = |groups: &BTreeMap<&str, Vec<u32>>| -> BTreeMap<String, u64> {
            groups
                .iter()
                .map(|(k, pids)| ((*k).to_owned(), pids.iter().map(|p| ticks(*p)).sum()))
                .collect()
        };
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        let before = sample(&groups);
        let started = Instant::now();
        for _ in 0..calls {
            let (result, _) = agent.run(&spec, json!({"name": "bench"})).await;
            assert!(result["status"] == "succeeded", "{result}");
            assert!(result["cold"] == false, "stayed warm: {result}");
        }
        let elapsed = started.elapsed();
        let after = sample(&groups);
        println!(
            "warm CPU per invocation, {function}, {calls} sequential calls in {:.2} s ({:.0}/s); load before: {}",
            elapsed.as_secs_f64(),
            calls as f64 / elapsed.as_secs_f64(),
            load.trim()
        );
        let mut total = 0.0;
        for (name, t0) in &before {
            let t1 = after.get(name).copied().unwrap_or(0);
            let us = (t1.saturating_sub(*t0)) as f64 / hz * 1e6 / calls as f64;
            total += us;
            println!("  {name:<28} {us:>8.1} µs");
        }
        println!("  {:<28} {total:>8.1} µs", "total");
    });
}
