//! Control-plane trust end to end: the whole stack with TLS on every internal hop, and what a
//! tenant sees of the platform.

use std::time::Duration;

use fresco_e2e::{Stack, StackOptions, ADMIN};
use serde_json::{json, Value};

const ALICE: &str = "alice:e2e-project-a:member";

/// With `[internal_tls]` set, the API, the scheduler and the agent serve HTTPS only, and every
/// internal call — placements, runs, heartbeats, the agent's code download, the dispatcher's
/// runs — goes over TLS to peers verified against the stack's own CA.
#[test]
fn the_stack_runs_with_tls_on_every_internal_hop() {
    let stack = Stack::start(StackOptions {
        tls: true,
        ..StackOptions::default()
    });
    // The agent's heartbeats reached the scheduler over TLS (the stack waited for them).
    let agents = stack.get(ADMIN, "/v1/agents");
    let url = agents["agents"][0]["url"].as_str().unwrap();
    assert!(url.starts_with("https://127.0.0.1:"), "{agents}");

    stack.register_runtimes();
    stack.create_function(ALICE, "hello", "python-hello", "python3", json!({}));
    // Sync: API → scheduler → agent (which downloads the code from the API) → API.
    let response = stack.invoke(ALICE, "hello", &json!({"name": "tls"}));
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["x-execution-status"], "succeeded");
    assert_eq!(
        response.json::<Value>().unwrap(),
        json!({"greeting": "hello tls"})
    );
    // Async: the scheduler's dispatcher → agent.
    let queued = stack.post(
        ALICE,
        "/v1/functions/hello/invoke?async=true",
        &json!({"name": "queued"}),
    );
    assert_eq!(queued.status().as_u16(), 202);
    let id = queued.json::<Value>().unwrap()["execution"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let done = stack.wait_execution(ALICE, &id, Duration::from_secs(60));
    assert_eq!(done["status"], "succeeded", "{done}");

    // Every listener speaks TLS only: plain HTTP gets no answer.
    let plain = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    for service in [&stack.api, &stack.schedulers[0], &stack.agents[0]] {
        let url = format!("http://127.0.0.1:{}/healthcheck", service.port);
        assert!(
            plain.get(&url).send().is_err(),
            "{} answered plain HTTP",
            service.name
        );
        // And a client that does not trust the stack's CA refuses the certificate.
        let https = format!("https://127.0.0.1:{}/healthcheck", service.port);
        let refused = plain.get(&https).send();
        assert!(
            refused.is_err(),
            "{} passed an untrusted certificate",
            service.name
        );
        // The stack's own client (the CA, nothing else) gets through.
        assert!(
            stack.client().get(&https).send().unwrap().status().as_u16() < 500
                || service.name.starts_with("fresco-scheduler"),
            "{}",
            service.name
        );
    }
    for service in [&stack.api, &stack.schedulers[0], &stack.agents[0]] {
        assert!(
            !service.log().contains("panicked"),
            "{}:\n{}",
            service.name,
            service.log()
        );
    }
}

/// Tenants do not see platform internals: which agent ran their execution, or the platform's
/// own error text (which names agents and their URLs); administrators do.
#[test]
fn members_see_no_agent_ids_nor_platform_error_text() {
    let stack = Stack::start(StackOptions::default());
    stack.register_runtimes();
    stack.create_function(ALICE, "hello", "python-hello", "python3", json!({}));
    let ok = stack.invoke(ALICE, "hello", &json!({"name": "x"}));
    assert_eq!(ok.status().as_u16(), 200);
    let id = ok.headers()["x-execution-id"].to_str().unwrap().to_owned();
    let agent_id = stack.agent_ids[0].clone();
    stack.wait_execution(ALICE, &id, Duration::from_secs(30));
    let mine = stack.get(ALICE, &format!("/v1/executions/{id}"));
    assert!(mine["execution"].get("agent_id").is_none(), "{mine}");
    assert!(!mine.to_string().contains(&agent_id), "{mine}");
    let listed = stack.get(ALICE, "/v1/executions");
    assert!(!listed.to_string().contains(&agent_id), "{listed}");
    let admin = stack.get(ADMIN, &format!("/v1/executions/{id}?all_projects=true"));
    assert_eq!(admin["execution"]["agent_id"], agent_id.as_str(), "{admin}");

    // A platform failure: the runtime's image is missing on the node, so the agent refuses
    // the run (503, nothing ran) in its own words. The tenant gets a generic message;
    // the record keeps the detail (and the agent) for administrators.
    let runtime = stack.post(
        ADMIN,
        "/v1/runtimes",
        &json!({"name": "broken", "image": "fresco/no-such-image:e2e", "kind": "python"}),
    );
    assert_eq!(runtime.status().as_u16(), 201);
    stack.create_function(ALICE, "doomed", "python-hello", "broken", json!({}));
    // A platform failure is a 503 naming the execution, never the function's result.
    let failed = stack.invoke(ALICE, "doomed", &json!({}));
    assert_eq!(failed.status().as_u16(), 503);
    let body: Value = failed.json().unwrap();
    let said = body["error"]["message"].as_str().unwrap();
    let failed_id = said
        .strip_prefix("execution ")
        .and_then(|rest| rest.get(..36))
        .unwrap_or_else(|| panic!("no execution id in {body}"))
        .to_owned();
    assert_eq!(said, format!("execution {failed_id}: {GENERIC}"), "{body}");
    let record = stack.wait_execution(ALICE, &failed_id, Duration::from_secs(30));
    assert_eq!(record["status"], "error", "{record}");
    assert_eq!(
        record["error"]["errorType"], "Platform.ImageUnavailable",
        "{record}"
    );
    assert_eq!(record["error"]["errorMessage"], GENERIC, "{record}");
    assert!(record.get("agent_id").is_none(), "{record}");
    let detail = stack.get(
        ADMIN,
        &format!("/v1/executions/{failed_id}?all_projects=true"),
    );
    let message = detail["execution"]["error"]["errorMessage"]
        .as_str()
        .unwrap();
    assert_ne!(message, GENERIC, "{detail}");
    assert!(message.contains("no-such-image"), "{detail}");
    assert_eq!(
        detail["execution"]["agent_id"],
        agent_id.as_str(),
        "{detail}"
    );
}

const GENERIC: &str = "the platform could not run the execution; an administrator can see why";
