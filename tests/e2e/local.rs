//! The local emulator against the platform: `fresco-agent run-local` and `fresco-agent
//! serve-local` (the real binary, the real Docker engine, the real runtime images and shim)
//! run the repository's test functions and answer exactly what the real stack (api,
//! scheduler, agent, PostgreSQL) answers: the same results, the same error JSON, the same
//! timeout and memory limit; serve-local reuses warm containers, freezes them when idle and
//! listens on loopback only; a hostile package is refused locally too.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fresco_e2e::{
    agent_uid_base, functions_dir, provided_image, python_image, wait_until, Stack, StackOptions,
    AGENT_UIDS,
};
use serde_json::{json, Value};

const ALICE: &str = "alice:local-project-a:member";
const DOCKER: &str = "/usr/bin/docker";

/// A test function: its sample directory, runtime, settings and the event it is given.
struct Case {
    name: &'static str,
    sample: &'static str,
    provided: bool,
    memory_mb: i32,
    timeout_s: i32,
    event: Value,
    /// The execution status both must report.
    status: &'static str,
}

fn cases() -> Vec<Case> {
    let case = |name, sample, provided, event, status| Case {
        name,
        sample,
        provided,
        memory_mb: 128,
        timeout_s: 3,
        event,
        status,
    };
    vec![
        case(
            "hello",
            "python-hello",
            false,
            json!({"name": "local"}),
            "succeeded",
        ),
        case(
            "echo",
            "python-echo",
            false,
            json!({"a": [1, 2.5, {"b": null}], "s": "ü\"x", "t": true}),
            "succeeded",
        ),
        case(
            "provided-echo",
            "provided-echo",
            true,
            json!({"x": [1, "two"]}),
            "succeeded",
        ),
        case("error", "python-error", false, json!({}), "failed"),
        Case {
            timeout_s: 1,
            ..case(
                "sleep",
                "python-sleep",
                false,
                json!({"seconds": 5}),
                "timeout",
            )
        },
        Case {
            memory_mb: 64,
            ..case("memhog", "python-memhog", false, json!({"mb": 512}), "oom")
        },
    ]
}

fn image(provided: bool) -> String {
    if provided {
        provided_image()
    } else {
        python_image()
    }
}

fn agent_bin() -> PathBuf {
    PathBuf::from(std::env::var("FRESCO_BIN_DIR").expect("FRESCO_BIN_DIR")).join("fresco-agent")
}

/// A scratch directory with the emulator's configuration: a sandbox uid range of its own (so
/// it never shares uids with a test stack's agents running at the same time).
struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    fn new() -> Self {
        // Short: the emulator's runtime sockets go below it.
        let dir = PathBuf::from(format!(
            "/tmp/fle-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("local.conf"),
            format!(
                "[agent]\nsandbox_uid_base = {}\nsandbox_uid_count = {AGENT_UIDS}\n",
                agent_uid_base()
            ),
        )
        .unwrap();
        Self { dir }
    }

    /// `fresco-agent --config-file <ours> <command> ...`, with the shim of the build.
    fn command(&self, command: &str) -> Command {
        let mut cmd = Command::new(agent_bin());
        cmd.arg("--config-file")
            .arg(self.dir.join("local.conf"))
            .arg(command)
            .arg("--state-dir")
            .arg(&self.dir)
            .env(
                "FRESCO_SHIM_PATH",
                std::env::var("FRESCO_SHIM_PATH").expect("FRESCO_SHIM_PATH"),
            );
        cmd
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            std::fs::remove_dir_all(&self.dir).ok();
        }
    }
}

/// What one run-local printed: exit status, stdout, stderr.
struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn run_local(scratch: &Scratch, args: &[&str]) -> Ran {
    let out = scratch.command("run-local").args(args).output().unwrap();
    Ran {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn run_case(scratch: &Scratch, case: &Case) -> Ran {
    let dir = functions_dir().join(case.sample);
    let image = image(case.provided);
    run_local(
        scratch,
        &[
            "--runtime-image",
            &image,
            "--handler",
            "main.handler",
            "--code-dir",
            dir.to_str().unwrap(),
            "--name",
            case.name,
            "--memory-mb",
            &case.memory_mb.to_string(),
            "--timeout-s",
            &case.timeout_s.to_string(),
            "--event",
            &case.event.to_string(),
        ],
    )
}

/// A running serve-local: its process, address and agent id.
struct Served {
    child: Child,
    url: String,
    agent_id: String,
}

impl Served {
    /// Stops it as a developer would (SIGTERM) and waits for it to end.
    fn stop(&mut self) -> std::process::ExitStatus {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        self.child.wait().unwrap()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.stop();
        }
    }
}

/// Starts serve-local on `dir`; returns once it listens.
fn serve_local(scratch: &Scratch, dir: &Path) -> Served {
    let mut child = scratch
        .command("serve-local")
        .arg("--dir")
        .arg(dir)
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    // "fresco-agent serve-local <agent id> listening on http://<addr> (<names>)"
    let words: Vec<&str> = line.split_whitespace().collect();
    assert!(
        words.len() >= 6 && words[3] == "listening",
        "serve-local said {line:?}"
    );
    Served {
        child,
        url: words[5].to_owned(),
        agent_id: words[2].to_owned(),
    }
}

/// A directory of functions for serve-local: one subdirectory per case, its manifest naming
/// the sample's code directory.
fn functions_for(scratch: &Scratch, cases: &[Case]) -> PathBuf {
    let root = scratch.dir.join("functions");
    for case in cases {
        let dir = root.join(case.name);
        std::fs::create_dir_all(&dir).unwrap();
        let manifest = json!({
            "runtime_image": image(case.provided),
            "handler": "main.handler",
            "memory_mb": case.memory_mb,
            "timeout_s": case.timeout_s,
            "code_dir": functions_dir().join(case.sample),
        });
        std::fs::write(dir.join("fresco-function.json"), manifest.to_string()).unwrap();
    }
    root
}

/// An invocation's answer: HTTP status, `x-execution-status`, `x-execution-cold`, the body.
#[derive(Debug)]
struct Answer {
    http: u16,
    status: String,
    cold: String,
    body: Value,
}

fn answer_of(response: reqwest::blocking::Response) -> Answer {
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    let (status, cold) = (header("x-execution-status"), header("x-execution-cold"));
    let http = response.status().as_u16();
    let text = response.text().unwrap();
    Answer {
        http,
        status,
        cold,
        body: serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON {text:?}: {e}")),
    }
}

fn post(url: &str, body: &str) -> reqwest::blocking::Response {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .unwrap()
}

fn labelled(agent_id: &str) -> Vec<String> {
    let out = Command::new(DOCKER)
        .args([
            "ps",
            "-aq",
            "--no-trunc",
            "--filter",
            &format!("label=fresco.agent={agent_id}"),
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

fn freezer_state(id: &str) -> String {
    std::fs::read_to_string(format!("/sys/fs/cgroup/freezer/docker/{id}/freezer.state"))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

#[test]
fn the_local_emulator_runs_the_test_functions_as_the_platform_does() {
    let cases = cases();
    // The platform's answers.
    let stack = Stack::start(StackOptions::default());
    stack.register_runtimes();
    let mut platform = Vec::new();
    for case in &cases {
        stack.create_function(
            ALICE,
            case.name,
            case.sample,
            if case.provided { "provided" } else { "python3" },
            json!({"memory_mb": case.memory_mb, "timeout_s": case.timeout_s}),
        );
        let answer = answer_of(stack.invoke(ALICE, case.name, &case.event));
        assert_eq!(answer.http, 200, "{}: {answer:?}", case.name);
        assert_eq!(answer.status, case.status, "{}: {answer:?}", case.name);
        platform.push(answer);
    }
    drop(stack);

    let scratch = Scratch::new();
    // run-local: the same result on stdout, the log on stderr, status 1 unless it succeeded.
    for (case, expected) in cases.iter().zip(&platform) {
        let ran = run_case(&scratch, case);
        let body: Value = serde_json::from_str(ran.stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "{}: run-local printed {:?} ({e}); stderr {}",
                case.name, ran.stdout, ran.stderr
            )
        });
        assert_eq!(body, expected.body, "{}: stderr {}", case.name, ran.stderr);
        let succeeded = case.status == "succeeded";
        assert_eq!(
            ran.code,
            Some(if succeeded { 0 } else { 1 }),
            "{}: {}",
            case.name,
            ran.stderr
        );
        assert!(
            ran.stderr.contains("REPORT RequestId: "),
            "{}: the log ends with the report line: {}",
            case.name,
            ran.stderr
        );
        if !succeeded {
            assert!(
                ran.stderr
                    .contains(&format!("the function ended with status {}", case.status)),
                "{}: {}",
                case.name,
                ran.stderr
            );
        }
    }
    let hello = run_case(&scratch, &cases[0]);
    assert!(
        hello.stderr.contains("hello log line for local"),
        "the function's own log reaches stderr: {}",
        hello.stderr
    );

    // serve-local: the platform's answers, through the same endpoint.
    let dir = functions_for(&scratch, &cases);
    let mut served = serve_local(&scratch, &dir);
    for (case, expected) in cases.iter().zip(&platform) {
        let answer = answer_of(post(
            &format!("{}/v1/functions/{}/invoke", served.url, case.name),
            &case.event.to_string(),
        ));
        assert_eq!(
            (answer.http, &answer.status, &answer.body),
            (200, &expected.status, &expected.body),
            "{}",
            case.name
        );
        assert_eq!(answer.cold, "cold", "{}: a first invocation", case.name);
    }
    // Warm: the same container answers again, and it is frozen while idle.
    let before = labelled(&served.agent_id);
    let warm = answer_of(post(
        &format!("{}/v1/functions/hello/invoke", served.url),
        r#"{"name": "again"}"#,
    ));
    assert_eq!(
        (warm.status.as_str(), warm.cold.as_str()),
        ("succeeded", "false")
    );
    assert_eq!(warm.body, json!({"greeting": "hello again"}));
    assert_eq!(labelled(&served.agent_id), before, "no new container");
    // The sandboxes still alive (the timed-out and the killed ones are gone) wait frozen.
    let live: Vec<String> = before
        .iter()
        .filter(|id| !freezer_state(id).is_empty())
        .cloned()
        .collect();
    assert!(live.len() >= 3, "live containers: {live:?} of {before:?}");
    wait_until(
        Duration::from_secs(3),
        "the idle sandboxes to be frozen",
        || live.iter().all(|id| freezer_state(id) == "FROZEN"),
    );
    // The platform's refusals: an unknown function, an event that is not JSON.
    let missing = post(&format!("{}/v1/functions/nope/invoke", served.url), "{}");
    assert_eq!(missing.status().as_u16(), 404);
    let bad = post(&format!("{}/v1/functions/echo/invoke", served.url), "{nope");
    assert_eq!(bad.status().as_u16(), 400);
    let text = bad.text().unwrap();
    assert!(text.contains("the event must be JSON"), "{text}");
    // Stopped, it leaves no container behind.
    let agent_id = served.agent_id.clone();
    assert!(served.stop().success());
    assert!(
        labelled(&agent_id).is_empty(),
        "containers left: {:?}",
        labelled(&agent_id)
    );
}

#[test]
fn serve_local_listens_on_loopback_only() {
    let scratch = Scratch::new();
    let dir = functions_for(&scratch, &cases()[..1]);
    for address in ["0.0.0.0:0", "[::]:0", "10.1.2.3:8080", "localhost:8080"] {
        let out = scratch
            .command("serve-local")
            .arg("--dir")
            .arg(&dir)
            .args(["--listen", address])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{address}: {stderr}");
        assert!(out.stdout.is_empty(), "{address}: it never listened");
        assert!(
            stderr.contains("loopback only") || stderr.contains("is not IP:PORT"),
            "{address}: {stderr}"
        );
    }
}

#[test]
fn a_hostile_package_is_refused_locally_as_on_the_platform() {
    let scratch = Scratch::new();
    let outside = scratch.dir.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let limits = fresco_common::archive::Limits {
        max_entries: 10_000,
        max_unpacked_bytes: 262_144_000,
    };
    let samples = fresco_common::archive::hostile::samples(limits, outside.to_str().unwrap());
    let attacks: Vec<_> = samples
        .iter()
        .filter(|s| {
            [
                "symlink chain",
                "hard link to a host file",
                "parent directory in a name",
                "absolute name",
                "link climbing out",
            ]
            .iter()
            .any(|attack| s.label.contains(attack))
        })
        .collect();
    assert!(!attacks.is_empty(), "the catalogue has escape attempts");
    for attack in attacks {
        let package = scratch.dir.join("attack.pkg");
        std::fs::write(&package, &attack.bytes).unwrap();
        let ran = run_local(
            &scratch,
            &[
                "--runtime-image",
                &python_image(),
                "--handler",
                "main.handler",
                "--package",
                package.to_str().unwrap(),
            ],
        );
        assert_eq!(ran.code, Some(1), "{}: {}", attack.label, ran.stderr);
        assert!(ran.stdout.is_empty(), "{}: nothing ran", attack.label);
        assert!(
            ran.stderr.contains("refused") && ran.stderr.contains(&attack.refusal),
            "{}: expected {:?} in {}",
            attack.label,
            attack.refusal,
            ran.stderr
        );
        assert_eq!(
            std::fs::read_dir(&outside).unwrap().count(),
            0,
            "{}: nothing was written outside",
            attack.label
        );
    }
    // Not a package at all: a clear error too.
    let junk = scratch.dir.join("junk.zip");
    std::fs::write(&junk, b"not an archive").unwrap();
    let ran = run_local(
        &scratch,
        &[
            "--runtime-image",
            &python_image(),
            "--handler",
            "main.handler",
            "--package",
            junk.to_str().unwrap(),
        ],
    );
    assert_eq!(ran.code, Some(1));
    assert!(
        ran.stderr.contains("fresco-agent: error: code package") && ran.stderr.contains("refused"),
        "{}",
        ran.stderr
    );
}
