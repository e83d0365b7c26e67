//! A function's output, end to end against the real Docker engine: it reaches the agent over
//! the container's output pipe (not the engine's attach stream), exactly per invocation.

mod common;

use std::process::Command;

use common::*;
use serde_json::json;

/// The function's own output: what comes before the `REPORT` line that ends every log (and
/// the newline put before it when the output did not end with one).
fn logs(result: &serde_json::Value) -> &str {
    let text = result["logs"].as_str().expect("logs");
    let (output, report) = text
        .rsplit_once("REPORT RequestId: ")
        .unwrap_or_else(|| panic!("no REPORT line ends {text:?}"));
    assert!(
        report.ends_with('\n')
            && report.contains("\tBilled Duration: ")
            && report.contains("\tMemory Size: 128 MB\tMax Memory Used: "),
        "{report:?}"
    );
    output.strip_suffix('\n').unwrap_or(output)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_invocation_gets_exactly_its_own_output_back_to_back() {
    let api = FakeApi::start();
    let sha = api.add("python-logs");
    let agent = AgentProcess::start(AgentOptions::new(&api));
    let spec = spec("logs", "python", "main.handler", Some(sha));
    for n in 0..20 {
        let (result, _) = agent.run(&spec, json!({"n": n, "lines": 3})).await;
        assert_eq!(result["status"], "succeeded", "{result}");
        // The last words are written without a newline just before the answer.
        assert_eq!(
            logs(&result),
            format!("inv {n} line 0\ninv {n} line 1\ninv {n} line 2\nlast words {n}"),
            "invocation {n}: {result}"
        );
        assert_eq!(result["output_truncated"], false);
    }
    assert_eq!(agent.containers().len(), 1, "one warm container served all");
    // Nothing went through the engine: the container has no log driver and no attach.
    let inspect = Command::new(DOCKER)
        .args([
            "inspect",
            "--format",
            "{{.HostConfig.LogConfig.Type}} {{.Config.AttachStdout}} {{.Config.AttachStderr}}",
            &agent.containers()[0],
        ])
        .output()
        .expect("inspect");
    assert_eq!(
        String::from_utf8_lossy(&inspect.stdout).trim(),
        "none false false"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_background_writer_is_not_the_earlier_invocations_output() {
    let api = FakeApi::start();
    let sha = api.add("python-logs");
    let agent = AgentProcess::start(AgentOptions::new(&api));
    let spec = spec("late", "python", "main.handler", Some(sha));
    let (first, _) = agent
        .run(&spec, json!({"n": 1, "lines": 1, "background": true}))
        .await;
    assert_eq!(first["status"], "succeeded", "{first}");
    assert_eq!(logs(&first), "inv 1 line 0\nlast words 1", "{first}");
    // The writer left behind prints `late 1` after the answer, whenever it gets to run
    // (frozen while the sandbox is idle). Wherever that goes, it is never the first
    // invocation's, and the next invocation's own output is complete.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let (second, _) = agent.run(&spec, json!({"n": 2, "lines": 2})).await;
    assert_eq!(second["status"], "succeeded", "{second}");
    let text = logs(&second);
    // (At the very end, the late line lost its newline to the one before the REPORT line.)
    assert_eq!(
        text.replacen("late 1\n", "", 1).replacen("late 1", "", 1),
        "inv 2 line 0\ninv 2 line 1\nlast words 2",
        "only its own output (and perhaps the late writer's line): {text:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bootstrap_that_floods_its_output_is_cut_off() {
    let api = FakeApi::start();
    let sha = api.add("provided-flood");
    let mut options = AgentOptions::new(&api);
    options.extra = "output_max_bytes = 1048576\nlog_max_bytes = 1000\n".to_owned();
    let agent = AgentProcess::start(options);
    let spec = spec("flood", "provided", "unused", Some(sha));
    let (result, elapsed) = agent.run(&spec, json!({})).await;
    assert_eq!(result["status"], "failed", "{result}");
    assert_eq!(result["error"]["errorType"], "Function.OutputLimitExceeded");
    assert_eq!(result["output_truncated"], true);
    assert!(
        logs(&result).starts_with("flooding the log"),
        "{:?}",
        &logs(&result)[..100.min(logs(&result).len())]
    );
    assert!(
        elapsed < std::time::Duration::from_secs(30),
        "cut off, not run to its end: {elapsed:?}"
    );
    assert!(agent.containers().is_empty(), "the flooder is removed");
}
