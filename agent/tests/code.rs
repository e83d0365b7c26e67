//! Code packages on a compute node, end to end: the real fresco-agent binary (running as root,
//! as on a compute node), its unpacking helper, the real file system and Docker engine. The
//! packages are served directly as the agent's code download, bypassing the API's checks, as a
//! malicious or buggy API would.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use fresco_common::archive::hostile::{self, file_mode, symlink, tar_gz, zip, Item};
use fresco_common::archive::Limits;
use serde_json::json;

const BOOTSTRAP: &[u8] = include_bytes!("../../tests/functions/provided-echo/bootstrap");

fn require_root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "these tests check that an agent running as root unpacks as another user: run them as root"
    );
}

/// Every path under `dir` (links not followed), `dir` included.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut all = vec![dir.to_path_buf()];
    let mut index = 0;
    while index < all.len() {
        let path = all[index].clone();
        index += 1;
        if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
            for entry in std::fs::read_dir(&path).expect("read dir").flatten() {
                all.push(entry.path());
            }
        }
    }
    all
}

fn code_dir(agent: &AgentProcess) -> PathBuf {
    agent.dir.0.join("state/code/p-test")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crafted_packages_are_refused_by_the_agent_and_write_nothing_outside_its_code_dir() {
    require_root();
    let api = FakeApi::start();
    let limits = Limits {
        max_entries: 100,
        max_unpacked_bytes: 1 << 20,
    };
    let outside = TempDir::new("fa-outside");
    let mut options = AgentOptions::new(&api);
    options.extra = format!(
        "code_max_entries = {}\ncode_max_unpacked_bytes = {}\n",
        limits.max_entries, limits.max_unpacked_bytes
    );
    let agent = AgentProcess::start(options);
    let samples = hostile::samples(limits, &outside.0.display().to_string());
    assert!(samples.len() >= 40);
    for sample in &samples {
        let sha = api.add_bytes(sample.bytes.clone());
        let spec = spec("hostile", "provided", "unused", Some(sha.clone()));
        let (result, _) = agent.run(&spec, json!({})).await;
        let label = &sample.label;
        assert_eq!(result["status"], "error", "{label}: {result}");
        assert_eq!(
            result["error"]["errorType"], "Platform.CodeUnavailable",
            "{label}: {result}"
        );
        let message = result["error"]["errorMessage"].as_str().unwrap_or("");
        assert!(
            message.contains(&sample.refusal),
            "{label}: {message:?} should contain {:?}",
            sample.refusal
        );
        assert!(!code_dir(&agent).join(&sha).exists(), "{label}: cached");
    }
    assert!(
        agent.containers().is_empty(),
        "no container ran hostile code"
    );
    // Nothing escaped: not into the directory the absolute chain aimed at, not beside the code
    // cache (where the chain pointed), not anywhere in the agent's state.
    assert_eq!(std::fs::read_dir(&outside.0).expect("outside").count(), 0);
    let written: Vec<PathBuf> = walk(&agent.dir.0)
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n == "pwned-by-tenant"))
        .collect();
    assert!(written.is_empty(), "{written:?}");
    assert!(!Path::new("/pwned-by-tenant").exists());
    // No staging directory is left behind either.
    let left: Vec<PathBuf> = std::fs::read_dir(code_dir(&agent))
        .expect("code dir")
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "{left:?}");
    // The agent still serves a normal function.
    let sha = api.add("provided-echo");
    let (ok, _) = agent
        .run(&spec("echo", "provided", "unused", Some(sha)), json!(1))
        .await;
    assert_eq!(ok["status"], "succeeded", "{ok}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packages_are_unpacked_by_the_unprivileged_user_with_normalised_modes() {
    require_root();
    let api = FakeApi::start();
    let mut options = AgentOptions::new(&api);
    options.extra = "unpack_uid = 199998\nunpack_gid = 199997\n".to_owned();
    let agent = AgentProcess::start(options);
    let items = vec![
        // A setuid bootstrap: it still runs, without its setuid bit.
        file_mode("bootstrap", BOOTSTRAP, 0o4755),
        file_mode("bin/tool", b"#!/bin/sh\n", 0o6755),
        file_mode("data/private", b"secret", 0o600),
        file_mode("data/open", b"x", 0o666),
        Item::Dir {
            name: b"scratch".to_vec(),
            mode: 0o1777,
        },
        symlink("scratch/data", "../data"),
    ];
    for (format, bytes) in [
        ("tar.gz", tar_gz(&items)),
        ("zip", zip(&items).expect("zip")),
    ] {
        let sha = api.add_bytes(bytes);
        let spec = spec("modes", "provided", "unused", Some(sha.clone()));
        let (result, _) = agent.run(&spec, json!({"format": format})).await;
        assert_eq!(result["status"], "succeeded", "{format}: {result}");
        let package = code_dir(&agent).join(&sha);
        let paths = walk(&package);
        assert_eq!(paths.len(), 9, "{format}: {paths:?}");
        for path in paths {
            let meta = std::fs::symlink_metadata(&path).expect("metadata");
            assert_eq!(
                (meta.uid(), meta.gid()),
                (199_998, 199_997),
                "{format}: {} is owned by the unpacking user",
                path.display()
            );
            if meta.file_type().is_symlink() {
                continue;
            }
            let mode = meta.mode() & 0o7777;
            let expected =
                if meta.is_dir() || path.ends_with("bootstrap") || path.ends_with("bin/tool") {
                    0o755
                } else {
                    0o644
                };
            assert_eq!(mode, expected, "{format}: {}", path.display());
        }
        assert_eq!(
            std::fs::read_link(package.join("scratch/data")).expect("link"),
            Path::new("../data")
        );
    }
}

/// Disk usage of `dir` in bytes, as `du` counts it.
fn du(dir: &Path) -> u64 {
    let out = Command::new("du")
        .args(["-s", "-B1"])
        .arg(dir)
        .output()
        .expect("du");
    assert!(out.status.success(), "du {}", dir.display());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("du prints a number")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_code_cache_stays_under_its_bound_and_never_evicts_live_code() {
    require_root();
    const BOUND: u64 = 1 << 20;
    const UPLOADS: usize = 200;
    let api = FakeApi::start();
    let mut options = AgentOptions::new(&api);
    // Room for four 128 MB containers: the live one and three others.
    options.memory_mb = 512;
    options.extra = format!("code_cache_max_bytes = {BOUND}\n");
    let agent = AgentProcess::start(options);
    // Each package takes about 70 KiB of disk: about 14 fit.
    let package = |n: usize| {
        let pad: Vec<u8> = (0..64 * 1024)
            .map(|i: usize| i.wrapping_mul(31).wrapping_add(n.wrapping_mul(7)) as u8)
            .collect();
        api.add_bytes(tar_gz(&[
            file_mode("bootstrap", BOOTSTRAP, 0o755),
            file_mode("pad", &pad, 0o644),
            file_mode("version", n.to_string().as_bytes(), 0o644),
        ]))
    };
    let live_sha = package(usize::MAX);
    let live = spec("live", "provided", "unused", Some(live_sha.clone()));
    let (first, _) = agent.run(&live, json!("live")).await;
    assert_eq!(first["status"], "succeeded", "{first}");
    let live_dir = code_dir(&agent).join(&live_sha);
    let started = std::time::Instant::now();
    let mut most = 0;
    for n in 0..UPLOADS {
        // A re-upload: the function's code changes, so a new package and a new container.
        let sha = package(n);
        let reupload = spec("reuploaded", "provided", "unused", Some(sha));
        let (result, _) = agent.run(&reupload, json!(n)).await;
        assert_eq!(result["status"], "succeeded", "upload {n}: {result}");
        // The live function stays warm, on its pinned code.
        let (warm, _) = agent.run(&live, json!(n)).await;
        assert_eq!(warm["status"], "succeeded", "live after {n}: {warm}");
        assert_eq!(warm["cold"], false, "live after {n}: {warm}");
        assert!(
            live_dir.join("bootstrap").is_file(),
            "live code evicted at {n}"
        );
        let used = du(&code_dir(&agent));
        most = most.max(used);
        // The project directory itself takes one block beside the packages.
        assert!(used <= BOUND + 4096, "upload {n}: {used} bytes on disk");
    }
    let packages = std::fs::read_dir(code_dir(&agent)).expect("dir").count();
    println!(
        "{UPLOADS} re-uploads in {:.1} s: at most {most} bytes of code on disk (bound {BOUND}), {packages} packages left",
        started.elapsed().as_secs_f64()
    );
    assert!(packages < 20, "{packages} packages on disk");
    assert!(most > BOUND / 2, "the bound was reached ({most})");
}
