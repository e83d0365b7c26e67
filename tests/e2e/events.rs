//! Events end to end (real binaries, PostgreSQL, Docker): cron ticks across a scheduler
//! failover, webhooks (signatures, rate limits, sync and async), retries into the dead-letter
//! list and its replay, and an on-success destination.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use diesel::sql_types::{Text, Timestamptz};
use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl};
use fresco_e2e::{functions_dir, wait_until, zip_dir, Stack, StackOptions};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

const ALICE: &str = "alice:e2e-project-a:member";

fn healthy_role(url: &str) -> String {
    reqwest::blocking::get(format!("{url}/healthcheck"))
        .ok()
        .and_then(|r| r.json::<Value>().ok())
        .and_then(|b| b["role"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "standby".to_owned())
}

/// The executions of `function`, with the event each got (as stored) and its status.
#[derive(QueryableByName, Debug)]
struct Row {
    #[diesel(sql_type = Text)]
    event: String,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Timestamptz)]
    created_at: chrono::DateTime<chrono::Utc>,
}

fn executions_of(stack: &Stack, function_id: &str) -> Vec<Row> {
    let mut conn = PgConnection::establish(&stack.database_url).unwrap();
    diesel::sql_query(format!(
        "SELECT COALESCE(convert_from(input, 'UTF8'), '') AS event, status, created_at \
         FROM executions \
         WHERE function_id = '{function_id}' ORDER BY created_at"
    ))
    .load(&mut conn)
    .unwrap()
}

fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn create_trigger(stack: &Stack, body: Value) -> Value {
    let response = stack.post(ALICE, "/v1/triggers", &body);
    assert_eq!(response.status().as_u16(), 201, "creating a trigger");
    response.json::<Value>().unwrap()["trigger"].clone()
}

/// A cron trigger firing every second runs once per tick while the active scheduler is killed
/// and the standby takes over: no tick runs twice (each tick's event names it), ticks go on
/// after the takeover, and the ticks missed while no scheduler led run once at most.
#[test]
fn cron_ticks_run_once_each_across_a_scheduler_failover() {
    let mut stack = Stack::start(StackOptions {
        schedulers: 2,
        extra_config: "cron_interval_ms = 100\n".into(),
        ..Default::default()
    });
    stack.register_runtimes();
    let f = stack.create_function(ALICE, "echo", "python-echo", "python3", json!({}));
    let function_id = f["id"].as_str().unwrap().to_owned();
    stack.wait_for_active_scheduler();
    let trigger = create_trigger(
        &stack,
        json!({"name": "every-second", "type": "cron", "function": "echo",
               "cron": "* * * * * *", "timezone": "Europe/Paris", "input": {"job": "tick"}}),
    );
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(6));
    let active = stack
        .schedulers
        .iter()
        .position(|s| healthy_role(&s.url()) == "active")
        .expect("an active scheduler");
    let killed_at = chrono::Utc::now();
    stack.schedulers[active].kill();
    let standby = 1 - active;
    wait_until(Duration::from_secs(20), "the standby to lead", || {
        healthy_role(&stack.schedulers[standby].url()) == "active"
    });
    let took_over_at = chrono::Utc::now();
    std::thread::sleep(Duration::from_secs(6));
    let off = stack
        .request(
            reqwest::Method::PATCH,
            ALICE,
            &format!("/v1/triggers/{}", trigger["id"].as_str().unwrap()),
        )
        .json(&json!({"enabled": false}))
        .send()
        .unwrap();
    assert_eq!(off.status().as_u16(), 200);
    let stopped = Instant::now();
    let elapsed = stopped - started;
    wait_until(Duration::from_secs(60), "every tick to run", || {
        executions_of(&stack, &function_id)
            .iter()
            .all(|r| r.status == "succeeded")
    });

    let rows = executions_of(&stack, &function_id);
    let mut ticks = BTreeSet::new();
    for row in &rows {
        let event: Value = serde_json::from_str(&row.event).unwrap();
        assert_eq!(event["job"], "tick", "the fixed input is in the event");
        assert_eq!(event["trigger"]["type"], "cron");
        let tick = event["trigger"]["time"].as_str().unwrap().to_owned();
        assert!(tick.ends_with(".000Z"), "ticks are whole seconds: {tick}");
        assert!(ticks.insert(tick.clone()), "tick {tick} ran twice");
    }
    let before = rows.iter().filter(|r| r.created_at < killed_at).count();
    let after = rows.iter().filter(|r| r.created_at > took_over_at).count();
    let seconds = elapsed.as_secs();
    eprintln!(
        "{} runs in {elapsed:?} ({before} before the kill, {after} after the takeover, takeover took {:?})",
        rows.len(),
        (took_over_at - killed_at).to_std().unwrap_or_default()
    );
    assert!(before >= 4, "{before} runs before the kill");
    assert!(after >= 4, "{after} runs after the takeover");
    // At most one run per second elapsed; the seconds without a leader are the only ones lost.
    let gap = (took_over_at - killed_at).num_seconds().max(0) as u64;
    assert!(
        rows.len() as u64 <= seconds + 1,
        "{} runs in {seconds} s",
        rows.len()
    );
    assert!(
        rows.len() as u64 + gap + 3 >= seconds,
        "{} runs in {seconds} s with {gap} s without a leader",
        rows.len()
    );
    // A disabled trigger fires no more.
    let count = rows.len();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(executions_of(&stack, &function_id).len(), count);
}

/// A webhook with a secret runs only for calls signed with it (401 otherwise, and nothing
/// runs), hands the request to the function, answers with its result when sync, and refuses
/// calls beyond its rate limit with 429.
#[test]
fn webhooks_run_when_signed_refuse_others_and_keep_their_rate() {
    let stack = Stack::start(StackOptions::default());
    stack.register_runtimes();
    let f = stack.create_function(ALICE, "echo", "python-echo", "python3", json!({}));
    let function_id = f["id"].as_str().unwrap().to_owned();
    let secret = "webhook-secret-0123";
    let sync = create_trigger(
        &stack,
        json!({"name": "github", "type": "webhook", "function": "echo", "secret": secret,
               "sync": true, "rate_limit": 3, "input": {"repo": "fresco"}}),
    );
    let url = sync["webhook_url"].as_str().unwrap();
    let path = &url[url.find("/v1/webhooks/").unwrap()..];
    let body = br#"{"action": "push", "commits": 2}"#;
    let client = stack.client();
    let call = |signature: Option<String>| {
        let mut request = client
            .post(stack.url(&format!("{path}?delivery=7")))
            .header("content-type", "application/json")
            .header("x-github-event", "push")
            .body(body.to_vec());
        if let Some(signature) = signature {
            request = request.header("x-fresco-signature", signature);
        }
        request.send().unwrap()
    };
    for bad in [
        None,
        Some(sign("wrong-secret-0123", body)),
        Some("sha256=".into()),
    ] {
        let response = call(bad.clone());
        assert_eq!(response.status().as_u16(), 401, "{bad:?}");
    }
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        executions_of(&stack, &function_id).is_empty(),
        "nothing ran for an unsigned call"
    );

    let response = call(Some(sign(secret, body)));
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["x-execution-status"], "succeeded");
    let event: Value = response.json().unwrap();
    assert_eq!(event["body"], json!({"action": "push", "commits": 2}));
    assert_eq!(event["query"], json!({"delivery": "7"}));
    assert_eq!(event["headers"]["x-github-event"], "push");
    assert_eq!(event["repo"], "fresco");
    assert_eq!(event["trigger"]["name"], "github");
    for _ in 0..2 {
        assert_eq!(call(Some(sign(secret, body))).status().as_u16(), 200);
    }
    let refused = call(Some(sign(secret, body)));
    assert_eq!(refused.status().as_u16(), 429);
    assert!(refused.headers().contains_key("retry-after"));

    // An async webhook without a secret: 202 and the execution runs.
    let open = create_trigger(
        &stack,
        json!({"name": "open", "type": "webhook", "function": "echo"}),
    );
    let url = open["webhook_url"].as_str().unwrap();
    let response = client
        .post(stack.url(&url[url.find("/v1/webhooks/").unwrap()..]))
        .body("plain text")
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    let id = response.json::<Value>().unwrap()["execution"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let execution = stack.wait_execution(ALICE, &id, Duration::from_secs(60));
    assert_eq!(execution["status"], "succeeded");
    let result: Value = serde_json::from_str(execution["result"].as_str().unwrap()).unwrap();
    assert_eq!(result["body"], "plain text");
    // Sync executions are recorded off the hot path.
    wait_until(Duration::from_secs(10), "four executions recorded", || {
        executions_of(&stack, &function_id).len() == 4
    });
}

/// A failing function's event is run `max_attempts` times, then kept in the dead-letter list;
/// once the function is fixed, the replay runs it successfully and the list is empty. A
/// succeeding function's result goes to its on-success function.
#[test]
fn failed_events_land_in_dead_letters_and_replay_and_successes_reach_their_destination() {
    let stack = Stack::start(StackOptions::default());
    stack.register_runtimes();
    stack.create_function(ALICE, "flaky", "python-error", "python3", json!({}));
    stack.create_function(ALICE, "hello", "python-hello", "python3", json!({}));
    let echo = stack.create_function(ALICE, "echo", "python-echo", "python3", json!({}));
    let put = |function: &str, config: Value| {
        let response = stack
            .request(
                reqwest::Method::PUT,
                ALICE,
                &format!("/v1/functions/{function}/event-config"),
            )
            .json(&config)
            .send()
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        response.json::<Value>().unwrap()["event_config"].clone()
    };
    put("flaky", json!({"max_attempts": 3, "dead_letter": true}));
    let config = put("hello", json!({"on_success": "echo"}));
    assert_eq!(config["on_success"], echo["id"]);

    let queued = stack.post(
        ALICE,
        "/v1/functions/flaky/invoke?async=true",
        &json!({"order": 1}),
    );
    assert_eq!(queued.status().as_u16(), 202);
    let failed_id = queued.json::<Value>().unwrap()["execution"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut letters = Value::Null;
    wait_until(
        Duration::from_secs(90),
        "the event to become a dead letter",
        || {
            letters = stack.get(ALICE, "/v1/functions/flaky/dead-letters");
            letters["dead_letters"]
                .as_array()
                .is_some_and(|l| !l.is_empty())
        },
    );
    let letter = letters["dead_letters"][0].clone();
    assert_eq!(letter["execution_id"], failed_id.as_str());
    assert_eq!(letter["event"], json!({"order": 1}));
    assert_eq!(letter["attempts"], 3, "{letter}");
    assert_eq!(letter["status"], "failed");
    assert_eq!(letter["error"]["errorType"], "ValueError");
    let execution = stack.get(ALICE, &format!("/v1/executions/{failed_id}"))["execution"].clone();
    assert_eq!(
        (&execution["status"], &execution["attempts"]),
        (&json!("failed"), &json!(3))
    );

    // Fix the function, replay the letter: it runs and succeeds; the list is empty.
    let fixed = stack
        .request(reqwest::Method::PUT, ALICE, "/v1/functions/flaky/code")
        .header("content-type", "application/zip")
        .body(zip_dir(&functions_dir().join("python-echo")))
        .send()
        .unwrap();
    assert_eq!(fixed.status().as_u16(), 200);
    let replayed = stack.post(
        ALICE,
        &format!(
            "/v1/functions/flaky/dead-letters/{}/replay",
            letter["id"].as_str().unwrap()
        ),
        &json!({}),
    );
    assert_eq!(replayed.status().as_u16(), 202);
    let id = replayed.json::<Value>().unwrap()["execution"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let execution = stack.wait_execution(ALICE, &id, Duration::from_secs(60));
    assert_eq!(execution["status"], "succeeded", "{execution}");
    assert_eq!(
        serde_json::from_str::<Value>(execution["result"].as_str().unwrap()).unwrap(),
        json!({"order": 1})
    );
    assert_eq!(
        stack.get(ALICE, "/v1/functions/flaky/dead-letters")["dead_letters"],
        json!([])
    );

    // On success: echo gets hello's result.
    let queued = stack.post(
        ALICE,
        "/v1/functions/hello/invoke?async=true",
        &json!({"name": "destination"}),
    );
    assert_eq!(queued.status().as_u16(), 202);
    let source = queued.json::<Value>().unwrap()["execution"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let echo_id = echo["id"].as_str().unwrap().to_owned();
    let mut record = Value::Null;
    wait_until(Duration::from_secs(60), "the destination to run", || {
        let rows = executions_of(&stack, &echo_id);
        match rows.iter().find(|r| r.status == "succeeded") {
            Some(row) => {
                record = serde_json::from_str(&row.event).unwrap();
                true
            }
            None => false,
        }
    });
    assert_eq!(record["execution_id"], source.as_str());
    assert_eq!(record["condition"], "success");
    assert_eq!(record["request"], json!({"name": "destination"}));
    assert_eq!(record["response"], json!({"greeting": "hello destination"}));
    assert_eq!(
        executions_of(&stack, &echo_id).len(),
        1,
        "one destination run"
    );
}

/// The value of sample `name` whose labels include `labels`, summed, in a text exposition
/// parsed as Prometheus parses it.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .expect("the Prometheus text format");
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            // Histograms: their `_count` and `_sum` lines are samples of their own.
            _ => 0.0,
        })
        .sum()
}

fn scrape(url: &str) -> String {
    let response = reqwest::blocking::get(format!("{url}/metrics")).unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    response.text().unwrap()
}

/// `/metrics` of the API, of the scheduler and of the agent parse as Prometheus text, and their
/// counters move with invocations: sync ones by status and start (cold, then warm), async ones
/// through the dispatcher; the scheduler reports its leadership, its agent's capacity and the
/// queue; the agent its runs by outcome, its starts, its sandboxes, memory and code cache.
#[test]
fn metrics_parse_and_move_with_invocations() {
    let stack = Stack::start(StackOptions::default());
    stack.register_runtimes();
    stack.create_function(ALICE, "echo", "python-echo", "python3", json!({}));
    stack.wait_for_active_scheduler();
    let api = stack.api.url();
    let scheduler = stack.schedulers[0].url();
    let agent_url = stack.agents[0].url();
    let (api_before, scheduler_before, agent_before) =
        (scrape(&api), scrape(&scheduler), scrape(&agent_url));
    for n in 0..3 {
        let response = stack.invoke(ALICE, "echo", &json!({"n": n}));
        assert_eq!(response.status().as_u16(), 200);
    }
    let queued = stack.post(ALICE, "/v1/functions/echo/invoke?async=true", &json!({}));
    let id = queued.json::<Value>().unwrap()["execution"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        stack.wait_execution(ALICE, &id, Duration::from_secs(60))["status"],
        "succeeded"
    );
    let (api_after, scheduler_after, agent_after) =
        (scrape(&api), scrape(&scheduler), scrape(&agent_url));
    let api_moved = |name: &str, labels: &[(&str, &str)]| {
        sample(&api_after, name, labels) - sample(&api_before, name, labels)
    };
    assert_eq!(
        api_moved("fresco_api_invocations_total", &[("status", "succeeded")]),
        3.0
    );
    assert_eq!(
        api_moved(
            "fresco_api_invocation_duration_seconds_count",
            &[("start", "cold")]
        ) + api_moved(
            "fresco_api_invocation_duration_seconds",
            &[("start", "cold")]
        ),
        1.0,
        "the first invocation started a container"
    );
    assert_eq!(
        api_moved(
            "fresco_api_invocation_duration_seconds_count",
            &[("start", "warm")]
        ) + api_moved(
            "fresco_api_invocation_duration_seconds",
            &[("start", "warm")]
        ),
        2.0
    );
    assert_eq!(
        api_moved("fresco_api_async_accepted_total", &[("source", "invoke")]),
        1.0
    );
    let scheduler_moved = |name: &str, labels: &[(&str, &str)]| {
        sample(&scheduler_after, name, labels) - sample(&scheduler_before, name, labels)
    };
    assert_eq!(
        scheduler_moved(
            "fresco_scheduler_async_executions_total",
            &[("outcome", "completed")]
        ),
        1.0
    );
    assert!(
        scheduler_moved("fresco_scheduler_placements_total", &[])
            + scheduler_moved("fresco_scheduler_grants_total", &[])
            >= 1.0,
        "the sync invocations were placed or granted"
    );
    assert_eq!(
        sample(&scheduler_after, "fresco_scheduler_leader", &[]),
        1.0
    );
    assert_eq!(
        sample(&scheduler_after, "fresco_scheduler_agents_up", &[]),
        1.0
    );
    let agent = stack.agent_ids[0].as_str();
    assert!(
        sample(
            &scheduler_after,
            "fresco_scheduler_agent_free_memory_mb",
            &[("agent", agent)]
        ) > 0.0
    );
    assert_eq!(
        sample(&scheduler_after, "fresco_scheduler_queue_depth", &[]),
        0.0
    );
    let agent_moved = |name: &str, labels: &[(&str, &str)]| {
        sample(&agent_after, name, labels) - sample(&agent_before, name, labels)
    };
    assert_eq!(
        agent_moved("fresco_agent_runs_total", &[("outcome", "succeeded")]),
        4.0,
        "three sync runs and one async"
    );
    assert_eq!(
        agent_moved("fresco_agent_runs_total", &[("outcome", "refused")]),
        0.0
    );
    assert_eq!(
        agent_moved("fresco_agent_starts_total", &[("start", "cold")])
            + agent_moved("fresco_agent_starts_total", &[("start", "prewarmed")]),
        1.0,
        "the first run started a sandbox"
    );
    assert_eq!(
        agent_moved("fresco_agent_starts_total", &[("start", "warm")]),
        3.0
    );
    assert_eq!(
        agent_moved(
            "fresco_agent_code_cache_lookups_total",
            &[("result", "download")]
        ),
        1.0,
        "the package was fetched once"
    );
    assert!(sample(&agent_after, "fresco_agent_code_cache_bytes", &[]) > 0.0);
    assert_eq!(
        sample(&agent_after, "fresco_agent_sandboxes", &[("state", "busy")]),
        0.0
    );
    assert!(
        sample(&agent_after, "fresco_agent_sandboxes", &[("state", "idle")])
            + sample(
                &agent_after,
                "fresco_agent_sandboxes",
                &[("state", "frozen")]
            )
            >= 1.0,
        "the function's sandbox stays warm"
    );
    let capacity = sample(&agent_after, "fresco_agent_memory_capacity_mb", &[]);
    assert!(capacity > 0.0);
    assert!(
        (sample(&agent_after, "fresco_agent_memory_free_mb", &[])
            + sample(&agent_after, "fresco_agent_memory_reserved_mb", &[])
            - capacity)
            .abs()
            < 0.5
    );
    assert!(sample(&agent_after, "fresco_agent_memory_reserved_mb", &[]) >= 128.0);
    for text in [&api_after, &scheduler_after, &agent_after] {
        assert!(!text.contains("e2e-project-a"), "a project in the metrics");
        assert!(!text.contains(ALICE), "a token in the metrics");
    }
}
