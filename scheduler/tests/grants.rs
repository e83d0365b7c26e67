//! Grants against the real fresco-scheduler binary: slots within the project's concurrency,
//! returned slots usable again, and a grant token that passes as no control-plane token.

mod support;

use std::time::Duration;

use fresco_common::scheduler_client::{SchedulerClient, SchedulerError};
use fresco_common::ticket::test_keys::TICKET_PUBLIC;
use fresco_common::ticket::TicketVerifier;
use fresco_common::tls::InternalTls;
use fresco_common::wire::{FunctionSpec, GrantAnswer, GrantRequest, GrantReturn};
use support::*;
use uuid::Uuid;

const SETTLE: Duration = Duration::from_secs(30);

fn request(spec: &FunctionSpec, concurrent: i64, slots: u32) -> GrantRequest {
    GrantRequest {
        spec: spec.clone(),
        concurrent_limit: concurrent,
        per_minute_limit: -1,
        slots,
        invocations: 100,
    }
}

async fn first_grant(client: &SchedulerClient, request: &GrantRequest) -> GrantAnswer {
    for _ in 0..200 {
        match client.grant(request).await {
            Ok(grant) => return grant,
            // The agent's first heartbeat may not be in yet.
            Err(SchedulerError::NoCapacity(_)) => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("grant refused: {e}"),
        }
    }
    panic!("no grant within 10 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn grants_stay_within_the_concurrency_and_pass_as_no_other_token() {
    let db = TestDb::create();
    let dir = TestDir::new();
    let mut scheduler = SchedulerProc::spawn(&dir, &db, "");
    scheduler.wait_role("active", SETTLE).await;
    let urls = vec![scheduler.url.clone()];
    let _agent = TestAgent::start("agent-a", 4096, Behavior::Echo, &urls).await;
    let client =
        SchedulerClient::for_control_plane(&urls, control_plane(), InternalTls::disabled())
            .expect("client");
    let spec = spec("p1", Uuid::new_v4(), 128);

    // Concurrency 3: two holders asking two slots each get 2 and 1, a third gets 429.
    let first = first_grant(&client, &request(&spec, 3, 2)).await;
    assert_eq!(first.slots, 2);
    assert_eq!(first.agent_id, "agent-a");
    let second = client.grant(&request(&spec, 3, 2)).await.expect("grant");
    assert_eq!(second.slots, 1, "only the headroom");
    match client.grant(&request(&spec, 3, 1)).await {
        Err(SchedulerError::RateLimited { .. }) => {}
        other => panic!("a grant beyond the concurrency: {other:?}"),
    }
    // The token names the agent, the grant, the slots; the agent checks it with the ticket key.
    let verifier = TicketVerifier::from_pem(TICKET_PUBLIC.as_bytes()).expect("verifier");
    let claims = verifier
        .verify_grant(&first.token, "agent-a")
        .expect("a valid grant");
    assert_eq!((claims.sub, claims.slots), (first.grant_id, 2));
    assert!(
        verifier.verify(&first.token, Some("agent-a")).is_err(),
        "not a ticket"
    );

    // Returned, its slots count no longer.
    client
        .return_grant(first.grant_id, &GrantReturn { used: Some(0) })
        .await
        .expect("returned");
    let third = client
        .grant(&request(&spec, 3, 2))
        .await
        .expect("room again");
    assert_eq!(third.slots, 2);

    // A grant token is no control-plane token: it cannot ask for grants or placements.
    let http = reqwest::Client::new();
    for path in ["/v1/grants", "/v1/placements"] {
        let response = http
            .post(format!("{}{path}", scheduler.url))
            .bearer_auth(&second.token)
            .json(&request(&spec, -1, 1))
            .send()
            .await
            .expect("send");
        assert_eq!(
            response.status(),
            401,
            "a grant was taken as a control-plane token on {path}"
        );
    }
    let health: serde_json::Value = http
        .get(format!("{}/healthcheck", scheduler.url))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(health["requests"]["grant_returns"], 1, "{health}");
    assert_eq!(
        health["requests"]["placements"], 1,
        "the refused one: {health}"
    );
    scheduler.kill();
}
