//! Tickets are single-use and bound to their payload, against the real fresco-agent binary,
//! the real Docker engine and a runtime image.
//!
//! The hole: a ticket named an agent and an execution but not the event, and nothing stopped
//! a second use, so whoever saw one ticket (a proxy, a log, a compromised API replica) could
//! run the function again, or with an event of its choosing, for as long as the ticket lived.

mod common;

use std::sync::atomic::Ordering;

use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_runs_once_and_only_with_its_own_event() {
    let api = FakeApi::start();
    let sha = api.add("python-hello");
    let agent = AgentProcess::start(AgentOptions::new(&api));
    let spec = spec("hello", "python", "main.handler", Some(sha));
    let event = json!({"name": "fresco"});
    let ticket = ticket_with_payload(&agent.agent_id, &spec, &event);

    // Swapped for another event before its owner uses it: refused, and the ticket is not spent.
    let (status, body) = agent.run_raw(&ticket, json!({"name": "mallory"})).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("another payload")),
        "{body}"
    );
    assert!(agent.containers().is_empty(), "nothing ran");
    assert_eq!(api.downloads.load(Ordering::SeqCst), 0, "no code read");

    let (status, body) = agent.run_raw(&ticket, event.clone()).await;
    assert_eq!(status, 200, "{body}\n{}", agent.log());
    assert_eq!(body["status"], "succeeded", "{body}");

    // Replayed with a different event: refused.
    let (status, body) = agent.run_raw(&ticket, json!({"name": "again"})).await;
    assert_eq!(status, 401, "{body}");
    // Replayed exactly: refused too, as already used.
    let (status, body) = agent.run_raw(&ticket, event.clone()).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("already used")),
        "{body}"
    );

    // A fresh ticket for the same execution settings runs (warm now).
    let (result, _) = agent.run(&spec, event).await;
    assert_eq!(result["status"], "succeeded", "{result}");
    assert_eq!(result["cold"], false, "{result}");
}
