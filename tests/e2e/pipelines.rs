//! Pipelines end to end (real binaries, PostgreSQL, Docker): a three-step pipeline with a
//! parallel step and a map step returns the joined result; a failing step is retried (with
//! its backoff) then caught by its handler; a run survives an agent killed under it with no
//! step run more often than its policy allows; another project's function is refused at
//! creation exactly as an unknown one.

use std::collections::BTreeMap;
use std::time::Duration;

use fresco_e2e::{wait_until, Stack, StackOptions, ADMIN};
use serde_json::{json, Value};

const ALICE: &str = "alice:e2e-project-a:member";
const BOB: &str = "bob:e2e-project-b:member";

fn step_function(stack: &Stack, token: &str, name: &str, handler: &str) -> Value {
    stack.create_function(
        token,
        name,
        "python-pipe",
        "python3",
        json!({"handler": handler, "timeout_s": 30}),
    )
}

fn create_pipeline(stack: &Stack, body: Value) -> Value {
    let response = stack.post(ALICE, "/v1/pipelines", &body);
    let status = response.status().as_u16();
    let body: Value = response.json().unwrap_or(Value::Null);
    assert_eq!(status, 201, "creating a pipeline: {body}");
    body["pipeline"].clone()
}

fn wait_run(stack: &Stack, id: &str, limit: Duration) -> Value {
    let mut last = Value::Null;
    wait_until(limit, &format!("pipeline run {id} to end"), || {
        last = stack.get(ALICE, &format!("/v1/pipeline-runs/{id}"))["pipeline_run"].clone();
        last["status"] != "running"
    });
    last
}

#[test]
fn a_pipeline_with_a_parallel_and_a_map_step_returns_the_joined_result() {
    let stack = Stack::start(StackOptions::default());
    stack.register_runtimes();
    step_function(&stack, ALICE, "items", "main.items");
    step_function(&stack, ALICE, "total", "main.total");
    step_function(&stack, ALICE, "echo", "main.echo");
    step_function(&stack, ALICE, "square", "main.square");
    create_pipeline(
        &stack,
        json!({"name": "numbers", "steps": [
            {"name": "start", "function": "items"},
            {"name": "fan", "type": "parallel", "branches": [
                [{"name": "sum", "function": "total"}],
                [{"name": "same", "function": "echo"}]]},
            {"name": "each", "type": "map", "items_path": "/1/items", "max_concurrency": 2,
             "steps": [{"name": "sq", "function": "square"}]}]}),
    );
    let response = stack.post(
        ALICE,
        "/v1/pipelines/numbers/invoke?timeout_ms=120000",
        &json!({"n": 4}),
    );
    assert_eq!(response.status().as_u16(), 200);
    let run = response.json::<Value>().unwrap()["pipeline_run"].clone();
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["result"], json!([1, 4, 9, 16]));
    // Every step, with its execution: 1 + 2 branches + 4 items.
    let steps = run["steps"].as_array().unwrap();
    let mut places: Vec<&str> = steps.iter().map(|s| s["step"].as_str().unwrap()).collect();
    places.sort_unstable();
    assert_eq!(
        places,
        ["0", "1.b0.0", "1.b1.0", "2.i0.0", "2.i1.0", "2.i2.0", "2.i3.0"]
    );
    for step in steps {
        assert_eq!(step["status"], "succeeded", "{step}");
        let execution = stack.get(
            ALICE,
            &format!("/v1/executions/{}", step["execution_id"].as_str().unwrap()),
        )["execution"]
            .clone();
        assert_eq!(execution["status"], "succeeded");
        assert!(step["duration_ms"].as_f64().is_some());
    }
    assert_eq!(
        steps[1]["name"].as_str().map(|n| n == "sum" || n == "same"),
        Some(true)
    );

    // The same asynchronously: 202 with the run, which ends the same way.
    let response = stack.post(
        ALICE,
        "/v1/pipelines/numbers/invoke?async=true",
        &json!({"n": 2}),
    );
    assert_eq!(response.status().as_u16(), 202);
    let id = response.json::<Value>().unwrap()["pipeline_run"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let run = wait_run(&stack, &id, Duration::from_secs(120));
    assert_eq!(run["result"], json!([1, 4]));
    let listed = stack.get(ALICE, "/v1/pipeline-runs?pipeline=numbers&status=succeeded");
    assert_eq!(listed["pipeline_runs"].as_array().unwrap().len(), 2);
}

#[test]
fn a_failing_step_is_retried_with_its_backoff_then_caught() {
    let stack = Stack::start(StackOptions::default());
    stack.register_runtimes();
    stack.create_function(ALICE, "boom", "python-error", "python3", json!({}));
    step_function(&stack, ALICE, "echo", "main.echo");
    create_pipeline(
        &stack,
        json!({"name": "careful", "steps": [
            {"name": "risky", "function": "boom",
             "retry": {"max_attempts": 3, "backoff_ms": 300, "backoff_rate": 1},
             "catch": "rescue"}],
         "handlers": [{"name": "rescue", "function": "echo"}]}),
    );
    let response = stack.post(
        ALICE,
        "/v1/pipelines/careful/invoke?timeout_ms=120000",
        &json!({"order": 7}),
    );
    assert_eq!(response.status().as_u16(), 200);
    let run = response.json::<Value>().unwrap()["pipeline_run"].clone();
    assert_eq!(run["status"], "succeeded", "{run}");
    // The handler got the last error and the step's input; its result is the run's.
    assert_eq!(run["result"]["input"], json!({"order": 7}));
    assert_eq!(run["result"]["error"]["errorType"], "ValueError");
    assert_eq!(run["result"]["error"]["attempts"], 3);
    assert_eq!(run["result"]["error"]["step"], "risky");
    let steps = run["steps"].as_array().unwrap();
    let attempts: Vec<(String, i64, String)> = steps
        .iter()
        .map(|s| {
            (
                s["step"].as_str().unwrap().to_owned(),
                s["attempt"].as_i64().unwrap(),
                s["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        attempts,
        [
            ("0".to_owned(), 1, "failed".to_owned()),
            ("0".to_owned(), 2, "failed".to_owned()),
            ("0".to_owned(), 3, "failed".to_owned()),
            ("0!rescue".to_owned(), 1, "succeeded".to_owned()),
        ]
    );
    // Each retry started at least its backoff after the previous attempt ended.
    let time =
        |s: &Value, f: &str| chrono::DateTime::parse_from_rfc3339(s[f].as_str().unwrap()).unwrap();
    for pair in steps[..3].windows(2) {
        let pause = time(&pair[1], "started_at") - time(&pair[0], "finished_at");
        assert!(
            pause >= chrono::Duration::milliseconds(300),
            "retry after {pause}: {pair:?}"
        );
    }
    // Without a catch, the failure is the run's.
    create_pipeline(
        &stack,
        json!({"name": "reckless", "steps": [{"name": "risky", "function": "boom"}]}),
    );
    let response = stack.post(ALICE, "/v1/pipelines/reckless/invoke", &json!({}));
    let run = response.json::<Value>().unwrap()["pipeline_run"].clone();
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(run["error"]["errorType"], "ValueError");
    assert_eq!(
        run["error"]["execution_id"],
        run["steps"][0]["execution_id"]
    );
}

#[test]
fn a_run_survives_an_agent_killed_under_it() {
    let stack = Stack::start(StackOptions {
        agents: 2,
        ..Default::default()
    });
    stack.register_runtimes();
    stack.wait_for_agents(2);
    step_function(&stack, ALICE, "nap", "main.nap");
    create_pipeline(
        &stack,
        json!({"name": "sleepy", "steps": [
            {"name": "naps", "type": "map", "items_path": "/xs", "max_concurrency": 4,
             "steps": [{"name": "nap", "function": "nap"}]},
            {"name": "last", "function": "nap", "retry": {"max_attempts": 2, "backoff_ms": 0}}]}),
    );
    let response = stack.post(
        ALICE,
        "/v1/pipelines/sleepy/invoke?async=true",
        &json!({"xs": [3, 3, 3, 3]}),
    );
    assert_eq!(response.status().as_u16(), 202);
    let id = response.json::<Value>().unwrap()["pipeline_run"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Wait until a map step runs on an agent (the cloud admin sees which), then crash that
    // agent under it.
    let mut victim: Option<(usize, String)> = None;
    wait_until(
        Duration::from_secs(60),
        "a map step running on an agent",
        || {
            let run = stack.get(ALICE, &format!("/v1/pipeline-runs/{id}"))["pipeline_run"].clone();
            let running: Vec<String> = run["steps"]
                .as_array()
                .map(|steps| {
                    steps
                        .iter()
                        .filter(|s| s["status"] == "running")
                        .filter_map(|s| s["execution_id"].as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            // Newest first: the steps are the newest executions of the cloud.
            let seen = stack.get(ADMIN, "/v1/executions?all_projects=true&limit=100")["executions"]
                .clone();
            victim = running.into_iter().find_map(|execution| {
                let seen = seen
                    .as_array()?
                    .iter()
                    .find(|e| e["id"] == execution.as_str())?;
                let agent = seen["agent_id"].as_str()?;
                let index = stack.agent_ids.iter().position(|a| a == agent)?;
                Some((index, execution))
            });
            victim.is_some()
        },
    );
    let (victim_agent, victim_execution) = victim.expect("a step on an agent");
    let mut stack = stack;
    stack.agents[victim_agent].kill();
    let run = wait_run(&stack, &id, Duration::from_secs(180));
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["result"], json!([3, 3, 3, 3]));
    // One execution per step (the map's steps have no retry; the last one's retry was not
    // needed), each run at most as often as the dispatcher's policy allows on agent loss.
    let mut per_step: BTreeMap<String, usize> = BTreeMap::new();
    for step in run["steps"].as_array().unwrap() {
        *per_step
            .entry(step["step"].as_str().unwrap().to_owned())
            .or_default() += 1;
        let execution = stack.get(
            ALICE,
            &format!("/v1/executions/{}", step["execution_id"].as_str().unwrap()),
        )["execution"]
            .clone();
        assert_eq!(execution["status"], "succeeded", "{execution}");
        let attempts = execution["attempts"].as_i64().unwrap();
        assert!((1..=3).contains(&attempts), "{execution}");
    }
    // The step that ran on the killed agent ran again elsewhere.
    let rerun =
        stack.get(ALICE, &format!("/v1/executions/{victim_execution}"))["execution"].clone();
    assert!(
        rerun["attempts"].as_i64().unwrap() >= 2,
        "the step on the killed agent was run again: {rerun}"
    );
    assert_eq!(
        per_step,
        ["0.i0.0", "0.i1.0", "0.i2.0", "0.i3.0", "1"]
            .into_iter()
            .map(|p| (p.to_owned(), 1))
            .collect()
    );
}

#[test]
fn another_projects_function_is_refused_as_an_unknown_one() {
    let stack = Stack::start(StackOptions::default());
    stack.register_runtimes();
    let theirs = step_function(&stack, BOB, "secret", "main.echo");
    let their_id = theirs["id"].as_str().unwrap().to_owned();
    let attempt = |key: &str| -> (u16, String) {
        let response = stack.post(
            ALICE,
            "/v1/pipelines",
            &json!({"name": "steal", "steps": [
                {"name": "ok", "type": "parallel", "branches": [[{"name": "x", "function": key}]]}]}),
        );
        let status = response.status().as_u16();
        let body: Value = response.json().unwrap();
        // The body without the key named, nor the request id.
        let message = body.to_string().replace(key, "KEY");
        (status, message)
    };
    let by_id = attempt(&their_id);
    let unknown_id = attempt("6c1e0ab3-0000-4000-8000-000000000000");
    assert_eq!(by_id.0, 400);
    assert_eq!(by_id, unknown_id);
    assert!(
        by_id
            .1
            .contains("steps[0].branches[0][0].function: function KEY not found"),
        "{}",
        by_id.1
    );
    let by_name = attempt("secret");
    let unknown_name = attempt("nosuch");
    assert_eq!(by_name.0, 400);
    assert_eq!(by_name, unknown_name);
    // Nothing was stored, and Bob's function never ran.
    let listed = stack.get(ALICE, "/v1/pipelines");
    assert_eq!(listed["pipelines"], json!([]));
    let executions = stack.get(BOB, "/v1/executions");
    assert_eq!(executions["executions"], json!([]));
}
