//! OpenStack notification triggers end to end: the real binaries, PostgreSQL, Docker, a real
//! RabbitMQ (tools/lib/rabbitmq.sh, `FRESCO_TEST_AMQP_URL`) and notifications published by the
//! real oslo.messaging Notifier (`FRESCO_OSLO_PYTHON`, the venv the tooling installs) in the
//! shapes Nova and Cinder send.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use diesel::sql_types::Text;
use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl};
use fresco_e2e::{wait_until, Stack, StackOptions};
use serde_json::{json, Value};

const ALICE: &str = "alice:e2e-project-a:member";
const BOB: &str = "bob:e2e-project-b:member";

fn amqp_url() -> String {
    std::env::var("FRESCO_TEST_AMQP_URL").expect(
        "FRESCO_TEST_AMQP_URL: the RabbitMQ tools/lib/rabbitmq.sh starts (tools/test exports it)",
    )
}

/// oslo's transport URL of the same server.
fn transport_url() -> String {
    let url = amqp_url();
    let url = url.strip_suffix("%2f").unwrap_or(&url);
    url.replacen("amqp://", "rabbit://", 1)
}

/// Publishes each spec (one line of tests/e2e/support/oslo_notify.py's input).
fn publish(specs: &[Value]) {
    let python = std::env::var("FRESCO_OSLO_PYTHON")
        .unwrap_or_else(|_| "/opt/fresco-dev/oslo-venv/bin/python".to_owned());
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("e2e/support/oslo_notify.py");
    let mut child = Command::new(python)
        .arg(script)
        .arg(transport_url())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the oslo.messaging venv (tools/lib/rabbitmq.sh start installs it)");
    let mut input = String::new();
    for spec in specs {
        input.push_str(&spec.to_string());
        input.push('\n');
    }
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "publishing failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What Nova's legacy notifier sends for a server of `project`.
fn nova(exchange: &str, event_type: &str, project: &str, instance: &str) -> Value {
    json!({
        "exchange": exchange,
        "publisher_id": "compute.e2e-host",
        "event_type": event_type,
        "ctxt": {"project_id": project, "user_id": "u-1", "auth_token": "a-secret-token",
                 "request_id": "req-1", "is_admin": false},
        "payload": {"tenant_id": project, "user_id": "u-1", "instance_id": instance,
                    "display_name": instance, "state": "active", "memory_mb": 512},
    })
}

/// What Cinder sends for a volume of `project`.
fn cinder(exchange: &str, event_type: &str, project: &str, volume: &str) -> Value {
    json!({
        "exchange": exchange,
        "publisher_id": "volume.e2e-host",
        "event_type": event_type,
        "ctxt": {"project_id": project, "user_id": "u-1"},
        "payload": {"tenant_id": project, "volume_id": volume, "size": 1, "status": "available"},
    })
}

#[derive(QueryableByName, Debug)]
struct Row {
    #[diesel(sql_type = Text)]
    event: String,
}

/// The events of the executions `trigger` queued.
fn events_of(stack: &Stack, trigger: &Value) -> Vec<Value> {
    let mut conn = PgConnection::establish(&stack.database_url).unwrap();
    let rows: Vec<Row> = diesel::sql_query(format!(
        "SELECT convert_from(input, 'UTF8') AS event FROM executions \
         WHERE trigger_id = '{}' ORDER BY created_at",
        trigger["id"].as_str().unwrap()
    ))
    .load(&mut conn)
    .unwrap();
    rows.iter()
        .map(|r| serde_json::from_str(&r.event).unwrap())
        .collect()
}

fn consuming(stack: &Stack) -> usize {
    stack.schedulers[0]
        .log()
        .matches("consuming notifications from queue")
        .count()
}

/// A stack whose scheduler consumes from a queue and exchanges of this test only.
fn stack_with_consumer(tag: &str) -> (Stack, String, String) {
    let nova_exchange = format!("nova-{tag}");
    let cinder_exchange = format!("cinder-{tag}");
    let stack = Stack::start(StackOptions {
        extra_config: format!(
            "\n[notifications]\ntransport_url = {}\nexchanges = {nova_exchange},{cinder_exchange}\n\
             topics = notifications\nqueue = fresco-e2e-{tag}\nreconnect_interval = 1\n",
            transport_url()
        ),
        ..Default::default()
    });
    stack.register_runtimes();
    stack.wait_for_active_scheduler();
    wait_until(Duration::from_secs(30), "the notification consumer", || {
        consuming(&stack) >= 1
    });
    (stack, nova_exchange, cinder_exchange)
}

fn create_trigger(stack: &Stack, token: &str, body: Value) -> Value {
    let response = stack.post(token, "/v1/triggers", &body);
    assert_eq!(response.status().as_u16(), 201, "creating a trigger");
    response.json::<Value>().unwrap()["trigger"].clone()
}

/// A trigger of project A fires on A's compute.instance.create.end (and A's volume.*) and never
/// on B's, and B's the other way round; other event types, notifications without a project and
/// malformed messages fire nothing and stop nothing; the event carries the notification, never
/// the request context (its token).
#[test]
fn notification_triggers_fire_only_on_their_own_projects_notifications() {
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let (stack, nova_x, cinder_x) = stack_with_consumer(&tag);
    stack.create_function(ALICE, "echo", "python-echo", "python3", json!({}));
    stack.create_function(BOB, "echo", "python-echo", "python3", json!({}));
    let types = json!(["compute.instance.create.end", "volume.*"]);
    let a = create_trigger(
        &stack,
        ALICE,
        json!({"name": "on-create", "type": "notification", "function": "echo",
               "event_types": types, "input": {"from": "trigger"}}),
    );
    let b = create_trigger(
        &stack,
        BOB,
        json!({"name": "on-create", "type": "notification", "function": "echo",
               "event_types": types}),
    );
    let project_a = "e2e-project-a";
    let project_b = "e2e-project-b";
    publish(&[
        nova(&nova_x, "compute.instance.create.end", project_a, "vm-a1"),
        nova(&nova_x, "compute.instance.create.end", project_b, "vm-b1"),
        json!({"exchange": nova_x, "raw": "{this is not json"}),
        json!({"exchange": nova_x, "raw": "{\"oslo.version\": \"2.0\", \"oslo.message\": \"[1, 2]\"}"}),
        nova(&nova_x, "compute.instance.create.start", project_a, "vm-a1"),
        nova(&nova_x, "compute.instance.create.end", "", "vm-nobody"),
        cinder(&cinder_x, "volume.create.end", project_a, "vol-a1"),
        nova(&nova_x, "compute.instance.create.end", project_a, "vm-a2"),
    ]);
    wait_until(Duration::from_secs(30), "A's three notifications", || {
        events_of(&stack, &a).len() >= 3
    });
    // The consumer has read everything that was published before the last of A's.
    std::thread::sleep(Duration::from_millis(500));
    let of_a = events_of(&stack, &a);
    let of_b = events_of(&stack, &b);
    let seen = |events: &[Value]| -> Vec<(String, String)> {
        events
            .iter()
            .map(|e| {
                let subject = e["payload"]["instance_id"]
                    .as_str()
                    .or(e["payload"]["volume_id"].as_str())
                    .unwrap_or_default();
                (
                    e["event_type"].as_str().unwrap().to_owned(),
                    subject.to_owned(),
                )
            })
            .collect()
    };
    assert_eq!(
        seen(&of_a),
        vec![
            ("compute.instance.create.end".to_owned(), "vm-a1".to_owned()),
            ("volume.create.end".to_owned(), "vol-a1".to_owned()),
            ("compute.instance.create.end".to_owned(), "vm-a2".to_owned()),
        ]
    );
    assert_eq!(
        seen(&of_b),
        vec![("compute.instance.create.end".to_owned(), "vm-b1".to_owned())]
    );
    for event in &of_a {
        assert_eq!(event["project_id"], project_a);
        assert_eq!(event["payload"]["tenant_id"], project_a);
        assert_eq!(
            event["from"], "trigger",
            "the trigger's fixed input: {event}"
        );
        assert_eq!(event["trigger"]["id"], a["id"]);
        assert_eq!(event["trigger"]["type"], "notification");
        assert!(event["publisher_id"]
            .as_str()
            .unwrap()
            .ends_with(".e2e-host"));
        assert!(
            !event.to_string().contains("a-secret-token"),
            "the request context stays out of the event: {event}"
        );
    }
    // The executions run: the echo function returns the notification it got.
    let listed = stack.get(ALICE, "/v1/executions?limit=100");
    let ids: Vec<String> = listed["executions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 3, "{listed}");
    for id in &ids {
        let execution = stack.wait_execution(ALICE, id, Duration::from_secs(60));
        assert_eq!(execution["status"], "succeeded", "{execution}");
        let result: Value = serde_json::from_str(execution["result"].as_str().unwrap()).unwrap();
        assert_eq!(result["project_id"], project_a);
    }
    let log = stack.schedulers[0].log();
    assert!(
        log.matches("malformed notification").count() >= 2,
        "malformed messages are logged: {log}"
    );
    // The scheduler's /metrics count what the consumer saw.
    let metrics = reqwest::blocking::get(format!("{}/metrics", stack.schedulers[0].url()))
        .unwrap()
        .text()
        .unwrap();
    let value = |line: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(line))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{line} in {metrics}"))
    };
    assert_eq!(
        value("fresco_scheduler_notifications_total{outcome=\"malformed\"}"),
        2.0
    );
    assert_eq!(
        value("fresco_scheduler_notifications_total{outcome=\"received\"}"),
        8.0
    );
    assert_eq!(value("fresco_scheduler_notification_executions_total"), 4.0);
    // Nothing is left unacknowledged, and the consumer still consumes (never restarted).
    assert_eq!(consuming(&stack), 1, "the consumer never stopped: {log}");
    publish(&[cinder(&cinder_x, "volume.delete.end", project_a, "vol-a1")]);
    wait_until(Duration::from_secs(30), "A's next notification", || {
        events_of(&stack, &a).len() == 4
    });
}

/// Notifications published while the consumer (the scheduler) is killed mid-stream are all
/// consumed once it is back: every one queues its execution, none twice.
#[test]
fn stopping_the_consumer_mid_stream_loses_nothing() {
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let (mut stack, nova_x, _) = stack_with_consumer(&tag);
    stack.create_function(ALICE, "echo", "python-echo", "python3", json!({}));
    let a = create_trigger(
        &stack,
        ALICE,
        json!({"name": "on-any", "type": "notification", "function": "echo",
               "event_types": ["compute.*"]}),
    );
    let batch = |from: usize, to: usize| -> Vec<Value> {
        (from..to)
            .map(|i| {
                nova(
                    &nova_x,
                    "compute.instance.create.end",
                    "e2e-project-a",
                    &format!("vm-{i:03}"),
                )
            })
            .collect()
    };
    let publisher = {
        let specs = batch(0, 40);
        std::thread::spawn(move || {
            for chunk in specs.chunks(4) {
                publish(chunk);
            }
        })
    };
    wait_until(
        Duration::from_secs(60),
        "some of the stream consumed",
        || !events_of(&stack, &a).is_empty(),
    );
    // A crash of the consumer while the stream goes on.
    stack.schedulers[0].kill();
    publisher.join().unwrap();
    publish(&batch(40, 50));
    stack.schedulers[0].start();
    stack.wait_for_active_scheduler();
    wait_until(Duration::from_secs(60), "every notification", || {
        events_of(&stack, &a).len() >= 50
    });
    std::thread::sleep(Duration::from_millis(500));
    let events = events_of(&stack, &a);
    let instances: BTreeSet<String> = events
        .iter()
        .map(|e| e["payload"]["instance_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(events.len(), 50, "each notification queued once");
    assert_eq!(instances.len(), 50, "none lost: {instances:?}");
}
