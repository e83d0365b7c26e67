//! Function lifecycle against the real stack (docs/security.md, "Images and function
//! lifecycle"): deleting a function or a version, replacing its code or changing its settings
//! retires its warm containers on the agent within the stated bound, even when the function
//! left a busy loop running in its container; the next invocation runs the new state in a new
//! container. And an agent refuses an image its own allowlist does not name, whatever the
//! control plane signed.
//!
//! The bound: a retirement is committed with the change; a scheduler reads it within
//! `[scheduler] retirement_poll_interval_ms` (here 250 ms); the agent's next heartbeat, within
//! `[agent] heartbeat_interval` (here 1 s), gets it in the reply; the agent destroys the idle
//! container at once (a forced removal). So: poll + heartbeat interval + one heartbeat round
//! trip + one container removal.

use std::process::Command;
use std::time::{Duration, Instant};

use fresco_e2e::{function_form, wait_until, Stack, StackOptions, ADMIN};
use serde_json::{json, Value};

const ALICE: &str = "alice:e2e-project-a:member";

const POLL: Duration = Duration::from_millis(250);
const HEARTBEAT: Duration = Duration::from_secs(1);
/// Room for one heartbeat round trip and one forced removal on a busy two-core machine.
const SLACK: Duration = Duration::from_secs(3);

fn bound() -> Duration {
    POLL + HEARTBEAT + SLACK
}

fn options() -> StackOptions {
    StackOptions {
        extra_config: format!(
            "[scheduler]\nretirement_poll_interval_ms = {}\n",
            POLL.as_millis()
        ),
        ..StackOptions::default()
    }
}

/// A handler that leaves a busy loop running in a new session, then answers with its code's
/// mark, its container's hostname (the container id's prefix) and its memory setting.
fn spinner(mark: &str) -> Vec<u8> {
    let code = format!(
        r#"import os, socket, subprocess, sys, time

MARK = "{mark}"


def handler(event, context):
    time.sleep((event or {{}}).get("sleep", 0))
    subprocess.Popen(
        [sys.executable, "-c", "while True: pass"],
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return {{
        "mark": MARK,
        "host": socket.gethostname(),
        "memory": os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE"),
    }}
"#
    );
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    writer
        .start_file(
            "main.py",
            zip::write::SimpleFileOptions::default().unix_permissions(0o644),
        )
        .unwrap();
    std::io::Write::write_all(&mut writer, code.as_bytes()).unwrap();
    writer.finish().unwrap().into_inner()
}

/// Creates a python3 function from `package`; returns its id.
fn create(stack: &Stack, name: &str, package: Vec<u8>) -> String {
    let metadata = json!({"name": name, "runtime": "python3", "timeout_s": 30});
    let form = function_form(&metadata, package);
    let response = stack
        .request(reqwest::Method::POST, ALICE, "/v1/functions")
        .multipart(form)
        .send()
        .unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().unwrap_or(Value::Null);
    assert_eq!(status, 201, "creating {name}: {body}");
    body["function"]["id"].as_str().unwrap().to_owned()
}

/// Invokes synchronously; returns (cold, body).
fn invoke(stack: &Stack, path: &str, event: &Value) -> (bool, Value) {
    let response = stack.post(ALICE, &format!("/v1/functions/{path}"), event);
    let status = response.status().as_u16();
    let cold = response
        .headers()
        .get("x-execution-cold")
        .is_some_and(|v| v == "cold" || v == "prewarmed");
    let text = response.text().unwrap();
    assert_eq!(status, 200, "invoking {path}: {text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert!(body["host"].is_string(), "invoking {path}: {body}");
    (cold, body)
}

fn docker(args: &[&str]) -> String {
    let output = Command::new("/usr/bin/docker").args(args).output().unwrap();
    assert!(
        output.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Full ids of the containers (any state) carrying every label filter in `labels`.
fn containers(labels: &[String]) -> Vec<String> {
    let mut args = vec!["ps", "-aq", "--no-trunc"];
    for label in labels {
        args.push("--filter");
        args.push(label);
    }
    docker(&args)
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

fn of_function(function_id: &str) -> Vec<String> {
    vec![format!("label=fresco.function={function_id}")]
}

fn of_version(function_id: &str, version: i32) -> Vec<String> {
    vec![
        format!("label=fresco.function={function_id}"),
        format!("label=fresco.version={version}"),
    ]
}

/// The container whose hostname an invocation reported; asserts the loop it left is running.
fn container_of(function_id: &str, host: &str) -> String {
    let id = containers(&of_function(function_id))
        .into_iter()
        .find(|id| id.starts_with(host))
        .unwrap_or_else(|| panic!("no container of {function_id} is {host}"));
    let processes = docker(&["top", &id]);
    assert!(
        processes.contains("while True: pass"),
        "the stray busy loop runs in {id}: {processes}"
    );
    id
}

/// Waits until none of `labels`' containers exist; returns how long it took. Panics past
/// `limit`, naming what is left.
fn wait_gone(labels: &[String], limit: Duration, what: &str) -> Duration {
    let started = Instant::now();
    loop {
        let left = containers(labels);
        if left.is_empty() {
            return started.elapsed();
        }
        assert!(
            started.elapsed() <= limit,
            "{what}: containers {left:?} still exist after {:?} (bound {limit:?})",
            started.elapsed()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn exists(id: &str) -> bool {
    !containers(&[format!("id={id}")]).is_empty()
}

#[test]
fn deleting_or_changing_a_function_retires_its_warm_containers() {
    let stack = Stack::start(options());
    stack.register_runtimes();
    let mut measured = Vec::new();

    // Delete: the warm container, with its stray busy loop, is gone within the bound.
    let gone = create(&stack, "gone", spinner("v1"));
    let (_, body) = invoke(&stack, "gone/invoke", &json!({}));
    container_of(&gone, body["host"].as_str().unwrap());
    let response = stack
        .request(reqwest::Method::DELETE, ALICE, "/v1/functions/gone")
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 204);
    measured.push((
        "delete",
        wait_gone(&of_function(&gone), bound(), "deleted function"),
    ));

    // New code: the old container goes; the next invocation runs the new code, cold.
    let code = create(&stack, "code", spinner("v1"));
    let (_, first) = invoke(&stack, "code/invoke", &json!({}));
    assert_eq!(first["mark"], "v1");
    let old = container_of(&code, first["host"].as_str().unwrap());
    let response = stack
        .request(reqwest::Method::PUT, ALICE, "/v1/functions/code/code")
        .header("content-type", "application/zip")
        .body(spinner("v2"))
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let changed = Instant::now();
    let (cold, second) = invoke(&stack, "code/invoke", &json!({}));
    assert_eq!(
        second["mark"], "v2",
        "the next invocation runs the new code"
    );
    assert!(cold, "in a new container");
    assert_ne!(second["host"], first["host"]);
    wait_until(bound(), "the container of the old code to go", || {
        !exists(&old)
    });
    measured.push(("new code", changed.elapsed()));
    let new = container_of(&code, second["host"].as_str().unwrap());

    // New settings: the same.
    let (_, again) = invoke(&stack, "code/invoke", &json!({}));
    assert_eq!(again["host"], second["host"], "warm while nothing changed");
    assert_eq!(again["memory"], "128");
    let response = stack
        .request(reqwest::Method::PATCH, ALICE, "/v1/functions/code")
        .json(&json!({"memory_mb": 256}))
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let changed = Instant::now();
    let (cold, third) = invoke(&stack, "code/invoke", &json!({}));
    assert_eq!(third["memory"], "256");
    assert!(cold);
    assert_ne!(third["host"], second["host"]);
    wait_until(bound(), "the container of the old settings to go", || {
        !exists(&new)
    });
    measured.push(("new settings", changed.elapsed()));
    // The current state's container stays warm.
    let (cold, fourth) = invoke(&stack, "code/invoke", &json!({}));
    assert!(!cold);
    assert_eq!(fourth["host"], third["host"]);

    // A deleted version: its containers go, the latest state's stay.
    let response = stack.post(ALICE, "/v1/functions/code/versions", &json!({}));
    assert_eq!(response.status().as_u16(), 201);
    let (_, v1) = invoke(&stack, "code/invoke?version=1", &json!({}));
    let v1_container = container_of(&code, v1["host"].as_str().unwrap());
    let latest = containers(&of_version(&code, 0));
    assert_eq!(latest.len(), 1, "{latest:?}");
    let response = stack
        .request(
            reqwest::Method::DELETE,
            ALICE,
            "/v1/functions/code/versions/1",
        )
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 204);
    measured.push((
        "delete version",
        wait_gone(&of_version(&code, 1), bound(), "deleted version"),
    ));
    assert!(!exists(&v1_container));
    std::thread::sleep(HEARTBEAT * 2);
    assert_eq!(
        containers(&of_version(&code, 0)),
        latest,
        "version 0 untouched"
    );

    // Busy during the delete: its invocation finishes, then the container goes.
    let busy = create(&stack, "busy", spinner("v1"));
    let url = stack.url("/v1/functions/busy/invoke");
    let running = std::thread::spawn(move || {
        reqwest::blocking::Client::new()
            .post(url)
            .header("x-auth-token", ALICE)
            .json(&json!({"sleep": 4}))
            .timeout(Duration::from_secs(60))
            .send()
            .unwrap()
            .status()
            .as_u16()
    });
    wait_until(Duration::from_secs(30), "the busy container", || {
        !containers(&of_function(&busy)).is_empty()
    });
    std::thread::sleep(Duration::from_secs(1));
    let response = stack
        .request(reqwest::Method::DELETE, ALICE, "/v1/functions/busy")
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 204);
    assert_eq!(
        running.join().unwrap(),
        200,
        "the running invocation ends normally"
    );
    let ended = Instant::now();
    wait_gone(
        &of_function(&busy),
        bound(),
        "a retired container after its invocation",
    );
    measured.push(("busy, after its invocation", ended.elapsed()));

    for (what, took) in &measured {
        eprintln!("retired ({what}) in {took:?}; bound {:?}", bound());
    }
}

#[test]
fn retirements_wait_out_a_scheduler_outage() {
    let mut stack = Stack::start(options());
    stack.register_runtimes();
    let id = create(&stack, "outage", spinner("v1"));
    let (_, body) = invoke(&stack, "outage/invoke", &json!({}));
    let container = container_of(&id, body["host"].as_str().unwrap());
    stack.schedulers[0].kill();
    let response = stack
        .request(reqwest::Method::DELETE, ALICE, "/v1/functions/outage")
        .send()
        .unwrap();
    assert_eq!(
        response.status().as_u16(),
        204,
        "no scheduler is needed to delete"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(exists(&container), "nobody told the agent yet");
    stack.schedulers[0].start();
    let back = Instant::now();
    // The agent retries a silent scheduler with a growing pause (here at most 4 s).
    wait_gone(
        &of_function(&id),
        Duration::from_secs(4) + bound(),
        "a retirement recorded while no scheduler ran",
    );
    eprintln!("retired {:?} after the scheduler came back", back.elapsed());
}

#[test]
fn agents_refuse_own_images_their_allowlist_does_not_name() {
    // The control plane allows the image; the agent's own allowlist does not.
    let stack = Stack::start(StackOptions {
        extra_config: "[api]\nallowed_image_prefixes = fresco/provided\n".to_owned(),
        agent_config: "allowed_image_prefixes = registry.example/fn/\n".to_owned(),
        ..StackOptions::default()
    });
    let refused = stack.post(
        ALICE,
        "/v1/functions",
        &json!({"name": "mine", "image": "fresco/provided:dev"}),
    );
    assert_eq!(
        refused.status().as_u16(),
        403,
        "members may not name images"
    );
    let created = stack.post(
        ADMIN,
        "/v1/functions",
        &json!({"name": "tool", "image": "fresco/provided:dev"}),
    );
    assert_eq!(created.status().as_u16(), 201);
    let id = created.json::<Value>().unwrap()["function"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let response = stack.invoke(ADMIN, "tool", &json!({}));
    let status = response.status().as_u16();
    let text = response.text().unwrap();
    // A refusal by the node is a platform failure, never the function's: 503.
    assert_eq!(status, 503, "{text}");
    assert!(
        text.contains("image fresco/provided:dev is not allowed on this node"),
        "{text}"
    );
    assert!(containers(&of_function(&id)).is_empty(), "nothing ran");
}
