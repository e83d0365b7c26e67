//! Integration tests: the real fresco-scheduler binary against a real PostgreSQL, with
//! in-test agents that verify their tickets.

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use diesel::prelude::*;
use fresco_common::scheduler_client::{SchedulerClient, SchedulerError};
use fresco_common::ticket::test_keys::{
    AGENT_PUBLIC, OTHER_AGENT_PRIVATE, OTHER_AGENT_PUBLIC, TICKET_PRIVATE,
};
use fresco_common::ticket::{sha256_hex, AgentSigner, ControlPlaneSigner, TicketClaims, TokenType};
use fresco_common::tls::InternalTls;
use fresco_common::wire::{Heartbeat, PlacementRequest, Release};
use support::*;
use uuid::Uuid;

const SETTLE: Duration = Duration::from_secs(30);

fn control_client(urls: &[String]) -> SchedulerClient {
    SchedulerClient::for_control_plane(urls, control_plane(), InternalTls::disabled())
        .expect("client")
}

fn placement(project: &str, concurrent: i64, per_minute: i64) -> PlacementRequest {
    PlacementRequest {
        execution_id: Uuid::new_v4(),
        payload_sha256: sha256_hex(b"{}"),
        spec: spec(project, Uuid::new_v4(), 128),
        concurrent_limit: concurrent,
        per_minute_limit: per_minute,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn queued_executions_are_dispatched_and_recorded() {
    let db = TestDb::create();
    let dir = TestDir::new();
    let mut scheduler = SchedulerProc::spawn(&dir, &db, "");
    scheduler.wait_role("active", SETTLE).await;
    let urls = vec![scheduler.url.clone()];
    let a = TestAgent::start("agent-a", 4096, Behavior::Echo, &urls).await;
    let b = TestAgent::start(
        "agent-b",
        4096,
        Behavior::Delay(Duration::from_millis(20)),
        &urls,
    )
    .await;

    let mut conn = db.conn();
    let inputs: Vec<String> = (0..40).map(|i| format!("{{\"n\": {i}}}")).collect();
    let ids = enqueue(&mut conn, &spec("p1", Uuid::new_v4(), 2048), &inputs);
    wait_until(SETTLE, "all executions to finish", || {
        unfinished(&mut conn) == 0
    })
    .await;

    let rows = rows(&mut conn);
    assert_eq!(rows.len(), 40);
    let input_of: std::collections::HashMap<Uuid, &String> =
        ids.iter().copied().zip(&inputs).collect();
    for row in &rows {
        let input = input_of[&row.id];
        assert_eq!(row.status, "succeeded", "{row:?}");
        assert_eq!(row.attempts, 1, "{row:?}");
        assert_eq!(row.result.as_deref(), Some(input.as_str()), "{row:?}");
        let agent = row.agent_id.as_deref().expect("agent recorded");
        assert_eq!(
            row.logs.as_deref(),
            Some(format!("ran on {agent}").as_str())
        );
        assert!(row.timestamps_set, "{row:?}");
    }
    // Each agent ran each of its executions once and accepted every ticket.
    let all: Vec<Uuid> = a.seen.ids().into_iter().chain(b.seen.ids()).collect();
    assert_eq!(all.len(), 40);
    assert_eq!(
        all.iter().collect::<HashSet<_>>().len(),
        40,
        "no duplicates"
    );
    assert_eq!(
        a.seen
            .rejected_tickets
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );

    // The agents are listed in the table, up.
    #[derive(QueryableByName)]
    struct AgentRow {
        #[diesel(sql_type = diesel::sql_types::Text)]
        id: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        state: String,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        memory_mb_total: i64,
    }
    let agents: Vec<AgentRow> =
        diesel::sql_query("SELECT id, state, memory_mb_total FROM agents ORDER BY id")
            .load(&mut conn)
            .expect("agents");
    let listed: Vec<(&str, &str, i64)> = agents
        .iter()
        .map(|r| (r.id.as_str(), r.state.as_str(), r.memory_mb_total))
        .collect();
    assert_eq!(listed, [("agent-a", "up", 4096), ("agent-b", "up", 4096)]);

    // A silent agent is marked down in the table after agent_down_time (2 s).
    b.kill().await;
    wait_until(
        Duration::from_secs(10),
        "agent-b to be down in the table",
        || {
            diesel::sql_query("SELECT id, state, memory_mb_total FROM agents WHERE id = 'agent-b'")
                .get_result::<AgentRow>(&mut conn)
                .is_ok_and(|r| r.state == "down")
        },
    )
    .await;
}

/// No connection to the agent was made, so none of the function ran: the attempt is given
/// back, not counted (with one attempt allowed, a counted one would fail the execution).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_agent_that_cannot_be_reached_costs_no_attempt() {
    let db = TestDb::create();
    let dir = TestDir::new();
    let mut scheduler = SchedulerProc::spawn(&dir, &db, "async_max_attempts = 1");
    scheduler.wait_role("active", SETTLE).await;
    let urls = vec![scheduler.url.clone()];
    // Bin-packing prefers the fuller agent: the one whose port is closed.
    let closed = TestAgent::start("closed", 1024, Behavior::Echo, &urls).await;
    let mut conn = db.conn();
    wait_until(SETTLE, "the closed agent to be known", || {
        diesel::sql_query("SELECT 1 FROM agents WHERE id = 'closed'")
            .execute(&mut conn)
            .is_ok_and(|n| n == 1)
    })
    .await;
    let healthy = TestAgent::start("healthy", 8192, Behavior::Echo, &urls).await;
    closed.stop_serving().await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let ids = enqueue(
        &mut conn,
        &spec("p1", Uuid::new_v4(), 256),
        &["{\"x\": 2}".into()],
    );
    wait_until(SETTLE, "the execution to finish", || {
        unfinished(&mut conn) == 0
    })
    .await;
    let rows = rows(&mut conn);
    let row = &rows[0];
    assert_eq!(row.status, "succeeded", "{row:?}");
    assert_eq!(
        row.attempts, 1,
        "the unreachable agent cost no attempt: {row:?}"
    );
    assert_eq!(row.agent_id.as_deref(), Some("healthy"));
    assert_eq!(closed.seen.count(), 0);
    assert_eq!(healthy.seen.ids(), ids);
    scheduler.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_agent_dying_mid_run_hands_the_execution_to_another() {
    let db = TestDb::create();
    let dir = TestDir::new();
    let mut scheduler = SchedulerProc::spawn(&dir, &db, "async_max_attempts = 3");
    scheduler.wait_role("active", SETTLE).await;
    let urls = vec![scheduler.url.clone()];
    // Bin-packing puts the execution on the fuller agent: the one that hangs.
    let doomed = TestAgent::start("doomed", 1024, Behavior::Hang, &urls).await;
    let mut conn = db.conn();
    wait_until(SETTLE, "the doomed agent to be known", || {
        diesel::sql_query("SELECT 1 FROM agents WHERE id = 'doomed'")
            .execute(&mut conn)
            .is_ok_and(|n| n == 1)
    })
    .await;
    let healthy = TestAgent::start("healthy", 8192, Behavior::Echo, &urls).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let ids = enqueue(
        &mut conn,
        &spec("p1", Uuid::new_v4(), 256),
        &["{\"x\": 1}".into()],
    );
    wait_until(SETTLE, "the doomed agent to receive the execution", || {
        doomed.seen.count() == 1
    })
    .await;
    assert_eq!(healthy.seen.count(), 0);
    doomed.kill().await;
    wait_until(SETTLE, "the execution to finish", || {
        unfinished(&mut conn) == 0
    })
    .await;

    let rows = rows(&mut conn);
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(row.id, ids[0]);
    assert_eq!(row.status, "succeeded", "{row:?}");
    assert_eq!(row.attempts, 2, "one lost attempt, one good one: {row:?}");
    assert_eq!(row.agent_id.as_deref(), Some("healthy"));
    assert_eq!(row.result.as_deref(), Some("{\"x\": 1}"));
    assert_eq!(doomed.seen.ids(), ids);
    assert_eq!(healthy.seen.ids(), ids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_execution_fails_after_its_last_attempt() {
    let db = TestDb::create();
    let dir = TestDir::new();
    let mut scheduler = SchedulerProc::spawn(&dir, &db, "async_max_attempts = 2");
    scheduler.wait_role("active", SETTLE).await;
    let urls = vec![scheduler.url.clone()];
    let broken = TestAgent::start("broken", 4096, Behavior::Fail, &urls).await;
    let mut conn = db.conn();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let ids = enqueue(&mut conn, &spec("p1", Uuid::new_v4(), 128), &["{}".into()]);
    wait_until(SETTLE, "the execution to fail", || {
        unfinished(&mut conn) == 0
    })
    .await;
    let rows = rows(&mut conn);
    let row = &rows[0];
    assert_eq!(row.status, "error", "{row:?}");
    assert_eq!(row.attempts, 2, "{row:?}");
    let error = row.error.as_deref().expect("a reason");
    assert!(error.contains("gave up after 2 attempts"), "{error}");
    assert!(error.contains("503"), "{error}");
    // Give a third attempt the chance to happen if the policy were broken.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(broken.seen.ids(), [ids[0], ids[0]], "exactly two attempts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_standby_takes_over_when_the_active_dies() {
    let db = TestDb::create();
    let dir = TestDir::new();
    let mut first = SchedulerProc::spawn(&dir, &db, "");
    first.wait_role("active", SETTLE).await;
    let mut second = SchedulerProc::spawn(&dir, &db, "");
    second.wait_role("standby", SETTLE).await;
    assert_eq!(first.role().await.as_deref(), Some("active"));
    let urls = vec![second.url.clone(), first.url.clone()];
    let agent = TestAgent::start("agent-a", 16384, Behavior::Echo, &urls).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The standby refuses placements with 503; the client fails over to the active one.
    let response = reqwest::Client::new()
        .post(format!("{}/v1/placements", second.url))
        .bearer_auth(control_plane().token(60).expect("token"))
        .json(&placement("p1", -1, -1))
        .send()
        .await
        .expect("standby answers");
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["x-fresco-scheduler-role"], "standby");
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["error"]["message"], "standby scheduler");
    let client = control_client(&urls);
    let granted = client
        .place(&placement("p1", -1, -1))
        .await
        .expect("placement");
    assert_eq!(granted.agent_id, "agent-a");
    assert_eq!(client.active_url(), first.url);
    client
        .release(granted.lease_id, &Release { warm: true })
        .await
        .expect("release");

    // Work queued before the crash is drained by the new active scheduler.
    let mut conn = db.conn();
    let inputs: Vec<String> = (0..50).map(|i| format!("{{\"n\": {i}}}")).collect();
    first.kill();
    let killed = Instant::now();
    enqueue(&mut conn, &spec("p1", Uuid::new_v4(), 128), &inputs);
    second.wait_role("active", Duration::from_secs(10)).await;
    let takeover = killed.elapsed();
    wait_until(SETTLE, "the queue to drain", || unfinished(&mut conn) == 0).await;
    eprintln!("takeover after {takeover:?}");
    assert!(takeover < Duration::from_secs(5), "took {takeover:?}");
    let rows = rows(&mut conn);
    assert_eq!(rows.len(), 50);
    assert!(
        rows.iter()
            .all(|r| r.status == "succeeded" && r.attempts == 1),
        "{rows:?}"
    );
    assert_eq!(agent.seen.count(), 50);

    // The client follows the new active scheduler.
    let granted = client
        .place(&placement("p1", -1, -1))
        .await
        .expect("placement");
    assert_eq!(granted.agent_id, "agent-a");
    assert_eq!(client.active_url(), second.url);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn quotas_give_429_with_retry_after() {
    let db = TestDb::create();
    let dir = TestDir::new();
    let mut scheduler = SchedulerProc::spawn(&dir, &db, "");
    scheduler.wait_role("active", SETTLE).await;
    let urls = vec![scheduler.url.clone()];
    let _agent = TestAgent::start("agent-a", 4096, Behavior::Echo, &urls).await;
    let client = control_client(&urls);
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Concurrency: two in flight, the third is refused until one ends.
    let first = client.place(&placement("p1", 2, -1)).await.expect("first");
    let _second = client.place(&placement("p1", 2, -1)).await.expect("second");
    match client.place(&placement("p1", 2, -1)).await {
        Err(SchedulerError::RateLimited {
            retry_after,
            message,
        }) => {
            assert!(retry_after >= Duration::from_secs(1));
            assert!(message.contains("concurrent"), "{message}");
        }
        other => panic!("expected 429, got {other:?}"),
    }
    // The raw answer: 429, Retry-After, an OpenStack error body.
    let response = reqwest::Client::new()
        .post(format!("{}/v1/placements", scheduler.url))
        .bearer_auth(control_plane().token(60).expect("token"))
        .json(&placement("p1", 2, -1))
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "1");
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], 429);
    // Another project is not affected.
    client
        .place(&placement("p2", 2, -1))
        .await
        .expect("other project");
    client
        .release(first.lease_id, &Release { warm: false })
        .await
        .expect("release");
    client
        .place(&placement("p1", 2, -1))
        .await
        .expect("after a release");

    // Rate: 3 per minute.
    for _ in 0..3 {
        client
            .place(&placement("p3", -1, 3))
            .await
            .expect("within the rate");
    }
    match client.place(&placement("p3", -1, 3)).await {
        Err(SchedulerError::RateLimited { retry_after, .. }) => {
            assert!(retry_after > Duration::from_secs(30), "{retry_after:?}")
        }
        other => panic!("expected 429, got {other:?}"),
    }

    // No room: 503 from the active scheduler.
    let mut big = placement("p4", -1, -1);
    big.spec.memory_mb = 100_000;
    match client.place(&big).await {
        Err(SchedulerError::NoCapacity(message)) => {
            assert!(message.contains("100000"), "{message}")
        }
        other => panic!("expected no capacity, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn async_dispatch_respects_the_project_concurrency_quota() {
    let db = TestDb::create();
    let dir = TestDir::new();
    let mut conn = db.conn();
    diesel::sql_query(
        "INSERT INTO quotas (project_id, resource, hard_limit) VALUES \
         ('limited', 'concurrent_executions', 2)",
    )
    .execute(&mut conn)
    .expect("quota");
    let mut scheduler = SchedulerProc::spawn(&dir, &db, "");
    scheduler.wait_role("active", SETTLE).await;
    let urls = vec![scheduler.url.clone()];
    let agent = TestAgent::start(
        "agent-a",
        65536,
        Behavior::Delay(Duration::from_millis(100)),
        &urls,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let inputs: Vec<String> = (0..10).map(|i| format!("{i}")).collect();
    enqueue(&mut conn, &spec("limited", Uuid::new_v4(), 128), &inputs);
    wait_until(SETTLE, "the queue to drain", || unfinished(&mut conn) == 0).await;
    assert_eq!(agent.seen.count(), 10);
    let max = agent
        .seen
        .max_running
        .load(std::sync::atomic::Ordering::SeqCst);
    assert!(max <= 2, "{max} ran at once with a quota of 2");
    assert!(rows(&mut conn).iter().all(|r| r.status == "succeeded"));
}

/// A heartbeat as an agent sends it: the body and a token signed for those bytes.
fn signed_beat(signer: &AgentSigner, beat: &Heartbeat) -> (Vec<u8>, String) {
    let body = serde_json::to_vec(beat).expect("encode");
    let token = signer.heartbeat_token(&body, 60).expect("sign");
    (body, token)
}

fn beat_of(id: &str, url: &str) -> Heartbeat {
    Heartbeat {
        agent_id: id.into(),
        host: "h".into(),
        url: url.into(),
        memory_mb_total: 1024,
        memory_mb_reserved: 0,
        cpus: 1,
        running: 0,
        warm: vec![],
        images: vec![],
        version: "t".into(),
        engine_down: false,
        retired_seq: None,
        prewarmed: Vec::new(),
    }
}

async fn post_beat(url: &str, body: Vec<u8>, token: Option<&str>) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(format!("{url}/v1/agents/heartbeat"))
        .header("content-type", "application/json")
        .body(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("send")
}

/// The URL the agents table holds for `id`, if any.
fn stored_url(conn: &mut PgConnection, id: &str) -> Option<String> {
    #[derive(QueryableByName)]
    struct Url {
        #[diesel(sql_type = diesel::sql_types::Text)]
        url: String,
    }
    diesel::sql_query("SELECT url FROM agents WHERE id = $1")
        .bind::<diesel::sql_types::Text, _>(id)
        .get_results::<Url>(conn)
        .expect("agents")
        .pop()
        .map(|u| u.url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_tokens_are_refused() {
    let db = TestDb::create();
    let dir = TestDir::new();
    let mut scheduler = SchedulerProc::spawn(&dir, &db, "");
    scheduler.wait_role("active", SETTLE).await;
    enrol(&dir.agents(), "agent-a", "http://127.0.0.1:1", AGENT_PUBLIC);
    let http = reqwest::Client::new();
    let agent_a = agent_signer("agent-a");
    let (body, good) = signed_beat(&agent_a, &beat_of("agent-a", "http://127.0.0.1:1"));
    // 204, or 200 with the retirements once this scheduler has read their log.
    assert!(post_beat(&scheduler.url, body.clone(), Some(&good))
        .await
        .status()
        .is_success());
    // Signed with a key that is not agent-a's enrolled one.
    let stranger = AgentSigner::from_pem(OTHER_AGENT_PRIVATE.as_bytes(), "agent-a").expect("key");
    let (_, forged) = signed_beat(&stranger, &beat_of("agent-a", "http://127.0.0.1:1"));
    assert_eq!(
        post_beat(&scheduler.url, body.clone(), Some(&forged))
            .await
            .status(),
        401
    );
    assert_eq!(
        post_beat(&scheduler.url, body.clone(), None).await.status(),
        401
    );
    // The token is for exactly the body it was signed with.
    let (other_body, _) = signed_beat(&agent_a, &beat_of("agent-a", "http://127.0.0.1:1/"));
    assert_eq!(
        post_beat(&scheduler.url, other_body, Some(&good))
            .await
            .status(),
        401
    );
    // An agent that is not enrolled is nobody.
    let (body_c, token_c) = signed_beat(
        &agent_signer("agent-c"),
        &beat_of("agent-c", "http://127.0.0.1:1"),
    );
    assert_eq!(
        post_beat(&scheduler.url, body_c, Some(&token_c))
            .await
            .status(),
        401
    );

    let place = |token: String| {
        http.post(format!("{}/v1/placements", scheduler.url))
            .bearer_auth(token)
            .json(&placement("p1", -1, -1))
            .send()
    };
    // An agent's own token cannot ask for placements, nor can a token signed with another key.
    assert_eq!(place(good).await.expect("send").status(), 401);
    let other_key =
        ControlPlaneSigner::from_pem(OTHER_PRIVATE.as_bytes(), "fresco-api").expect("key");
    let response = place(other_key.token(60).expect("token"))
        .await
        .expect("send");
    assert_eq!(response.status(), 401);
    let body: serde_json::Value = response.json().await.expect("json");
    assert!(body["error"]["message"]
        .as_str()
        .is_some_and(|m| m.starts_with("invalid control-plane token")));
    let release = http
        .post(format!(
            "{}/v1/placements/{}/release",
            scheduler.url,
            Uuid::new_v4()
        ))
        .json(&Release { warm: true })
        .send()
        .await
        .expect("send");
    assert_eq!(release.status(), 401);
    // The good control-plane token works.
    let ok = place(control_plane().token(60).expect("token"))
        .await
        .expect("send");
    assert_eq!(ok.status(), 200);
}

/// Hole: execution tickets and control-plane tokens shared one key and had no type, so a
/// ticket addressed to an agent named `fresco-scheduler` (an allowed agent name) passed
/// `verify_control_plane` and could mint placements (and so tickets for any project's code).
/// Now tickets are signed with the scheduler's ticket key, control-plane tokens with the API's
/// own key, both carry their type, and no agent may be called `fresco-scheduler`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_ticket_is_never_a_control_plane_token() {
    let db = TestDb::create();
    let dir = TestDir::new();
    let mut scheduler = SchedulerProc::spawn(&dir, &db, "");
    scheduler.wait_role("active", SETTLE).await;
    let urls = vec![scheduler.url.clone()];
    let _agent = TestAgent::start("agent-a", 4096, Behavior::Echo, &urls).await;
    let client = control_client(&urls);
    let mut placement_ok = None;
    for _ in 0..100 {
        match client.place(&placement("p1", -1, -1)).await {
            Ok(p) => {
                placement_ok = Some(p);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let granted = placement_ok.expect("a placement");
    // The attacker holds a real ticket: replay it against the scheduler as a bearer token.
    let place = |token: String| {
        reqwest::Client::new()
            .post(format!("{}/v1/placements", scheduler.url))
            .bearer_auth(token)
            .json(&placement("victim-project", -1, -1))
            .send()
    };
    let response = place(granted.ticket.clone()).await.expect("send");
    assert_eq!(response.status(), 401, "a ticket minted a placement");
    // The very token of the hole: a ticket for an agent named like the scheduler, signed with
    // the ticket key (as an old scheduler would have signed it), shaped as main's tickets were.
    let now = chrono::Utc::now().timestamp();
    let key = jsonwebtoken::EncodingKey::from_ed_pem(TICKET_PRIVATE.as_bytes()).expect("key");
    let old_shape = serde_json::json!({
        "iss": "fresco", "aud": "fresco-scheduler", "sub": "fresco-api",
        "iat": now, "exp": now + 60, "lease_id": Uuid::new_v4(),
        "spec": spec("p1", Uuid::new_v4(), 128),
    });
    let old = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA),
        &old_shape,
        &key,
    )
    .expect("sign");
    assert_eq!(place(old).await.expect("send").status(), 401);
    // Typed as a ticket but addressed to the scheduler: still not a control-plane token.
    let typed = TicketClaims {
        typ: TokenType::Execution,
        iss: "fresco-scheduler".into(),
        aud: "fresco-scheduler".into(),
        sub: Uuid::new_v4(),
        jti: Uuid::new_v4(),
        iat: now,
        exp: now + 60,
        lease_id: Uuid::new_v4(),
        payload_sha256: sha256_hex(b"{}"),
        spec: spec("p1", Uuid::new_v4(), 128),
    };
    let typed = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA),
        &typed,
        &key,
    )
    .expect("sign");
    assert_eq!(place(typed).await.expect("send").status(), 401);
    // And the scheduler will not sign a ticket for an agent carrying a service's name.
    assert!(signer()
        .sign(
            "fresco-scheduler",
            Uuid::new_v4(),
            Uuid::new_v4(),
            "",
            spec("p1", Uuid::new_v4(), 1)
        )
        .is_err());
    client
        .release(granted.lease_id, &Release { warm: false })
        .await
        .expect("release");
}

/// Hole: all agents shared one heartbeat secret, so any agent could heartbeat as any other
/// (and at any URL), drawing that agent's work — tickets carry the function's environment,
/// secrets included. Now each agent signs with its own key, enrolled with its URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_agent_cannot_heartbeat_as_another_or_move_without_re_enrolment() {
    let db = TestDb::create();
    let dir = TestDir::new();
    let mut scheduler = SchedulerProc::spawn(&dir, &db, "");
    scheduler.wait_role("active", SETTLE).await;
    let urls = vec![scheduler.url.clone()];
    // Agent 2 is real: its work goes to its URL. Agent 1 is the attacker, with its own key.
    let victim = TestAgent::start("agent-2", 4096, Behavior::Echo, &urls).await;
    let attacker = AgentSigner::from_pem(OTHER_AGENT_PRIVATE.as_bytes(), "agent-1").expect("key");
    enrol(
        &dir.agents(),
        "agent-1",
        "http://127.0.0.1:2",
        OTHER_AGENT_PUBLIC,
    );
    let mut conn = db.conn();
    wait_until(SETTLE, "agent-2 to be stored", || {
        stored_url(&mut conn, "agent-2").is_some()
    })
    .await;

    // Agent 1 signs a heartbeat claiming to be agent 2, at the attacker's URL.
    let trap = "http://127.0.0.1:3";
    let claim = beat_of("agent-2", trap);
    let body = serde_json::to_vec(&claim).expect("encode");
    let token = attacker.heartbeat_token(&body, 60).expect("sign");
    let refused = post_beat(&scheduler.url, body, Some(&token)).await;
    assert_eq!(refused.status(), 401, "agent 1 reported for agent 2");
    // Agent 1 with agent 2's name in its own token is no better.
    let impostor = AgentSigner::from_pem(OTHER_AGENT_PRIVATE.as_bytes(), "agent-2").expect("key");
    let (body, token) = signed_beat(&impostor, &claim);
    assert_eq!(
        post_beat(&scheduler.url, body, Some(&token)).await.status(),
        401
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        stored_url(&mut conn, "agent-2").as_deref(),
        Some(victim.url.as_str())
    );
    let client = control_client(&urls);
    for _ in 0..20 {
        let p = client
            .place(&placement("p1", -1, -1))
            .await
            .expect("placement");
        assert_eq!(p.agent_id, "agent-2");
        assert_eq!(p.agent_url, victim.url, "work drawn to the attacker's URL");
        client
            .release(p.lease_id, &Release { warm: true })
            .await
            .expect("release");
    }

    // Agent 1, signing for itself, may not move to another URL without re-enrolment...
    let (body, token) = signed_beat(&attacker, &beat_of("agent-1", "http://127.0.0.1:2"));
    assert!(post_beat(&scheduler.url, body, Some(&token))
        .await
        .status()
        .is_success());
    let (body, token) = signed_beat(&attacker, &beat_of("agent-1", trap));
    let moved = post_beat(&scheduler.url, body.clone(), Some(&token)).await;
    assert_eq!(moved.status(), 403);
    let message: serde_json::Value = moved.json().await.expect("json");
    assert!(
        message["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("re-enrol")),
        "{message}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        stored_url(&mut conn, "agent-1").as_deref(),
        Some("http://127.0.0.1:2")
    );
    // ...and once the operator re-enrols it there, it may.
    enrol(&dir.agents(), "agent-1", trap, OTHER_AGENT_PUBLIC);
    let (body, token) = signed_beat(&attacker, &beat_of("agent-1", trap));
    assert!(post_beat(&scheduler.url, body, Some(&token))
        .await
        .status()
        .is_success());
    wait_until(SETTLE, "the new URL to be stored", || {
        stored_url(&mut conn, "agent-1").as_deref() == Some(trap)
    })
    .await;
    // Removing the enrolment de-enrols it.
    std::fs::remove_file(dir.agents().join("agent-1.pem")).expect("remove");
    let (body, token) = signed_beat(&attacker, &beat_of("agent-1", trap));
    assert_eq!(
        post_beat(&scheduler.url, body, Some(&token)).await.status(),
        401
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_silent_agent_is_marked_down_and_its_work_requeued() {
    let db = TestDb::create();
    let dir = TestDir::new();
    let mut scheduler = SchedulerProc::spawn(&dir, &db, "");
    scheduler.wait_role("active", SETTLE).await;
    let urls = vec![scheduler.url.clone()];
    let hung = TestAgent::start("hung", 1024, Behavior::Hang, &urls).await;
    let mut conn = db.conn();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let healthy = TestAgent::start("healthy", 8192, Behavior::Echo, &urls).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let ids = enqueue(&mut conn, &spec("p1", Uuid::new_v4(), 256), &["1".into()]);
    wait_until(SETTLE, "the hung agent to receive it", || {
        hung.seen.count() == 1
    })
    .await;
    // Its connection stays open; only the missing heartbeats (agent_down_time = 2 s) tell.
    hung.silence();
    let silenced = Instant::now();
    wait_until(SETTLE, "the execution to finish", || {
        unfinished(&mut conn) == 0
    })
    .await;
    assert!(
        silenced.elapsed() >= Duration::from_secs(1),
        "{:?}",
        silenced.elapsed()
    );
    let row = &rows(&mut conn)[0];
    assert_eq!(
        (row.status.as_str(), row.attempts),
        ("succeeded", 2),
        "{row:?}"
    );
    assert_eq!(row.agent_id.as_deref(), Some("healthy"));
    assert_eq!(healthy.seen.ids(), ids);
    assert_eq!(hung.seen.ids(), ids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_new_active_requeues_work_held_by_dead_agents() {
    let db = TestDb::create();
    let dir = TestDir::new();
    let mut first = SchedulerProc::spawn(&dir, &db, "");
    first.wait_role("active", SETTLE).await;
    let mut second = SchedulerProc::spawn(&dir, &db, "");
    second.wait_role("standby", SETTLE).await;
    let urls = vec![first.url.clone(), second.url.clone()];
    let hung = TestAgent::start("hung", 1024, Behavior::Hang, &urls).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let healthy = TestAgent::start("healthy", 8192, Behavior::Echo, &urls).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut conn = db.conn();
    let ids = enqueue(&mut conn, &spec("p1", Uuid::new_v4(), 256), &["2".into()]);
    wait_until(SETTLE, "the hung agent to receive it", || {
        hung.seen.count() == 1
    })
    .await;

    // The active scheduler and the agent running the execution die together.
    first.kill();
    hung.silence();
    second.wait_role("active", Duration::from_secs(10)).await;
    wait_until(SETTLE, "the execution to finish", || {
        unfinished(&mut conn) == 0
    })
    .await;
    let row = &rows(&mut conn)[0];
    assert_eq!(
        (row.status.as_str(), row.attempts),
        ("succeeded", 2),
        "{row:?}"
    );
    assert_eq!(row.agent_id.as_deref(), Some("healthy"));
    assert_eq!(healthy.seen.ids(), ids);
    assert!(
        second.log_text().contains("agent hung is down"),
        "{}",
        second.log_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreachable_agent_is_skipped_until_its_next_heartbeat() {
    let db = TestDb::create();
    let dir = TestDir::new();
    let mut scheduler = SchedulerProc::spawn(&dir, &db, "");
    scheduler.wait_role("active", SETTLE).await;
    let urls = vec![scheduler.url.clone()];
    let _small = TestAgent::start("small", 1024, Behavior::Echo, &urls).await;
    let _large = TestAgent::start("large", 8192, Behavior::Echo, &urls).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let client = control_client(&urls);

    // Bin-packing prefers the fuller agent.
    let first = client
        .place(&placement("p1", -1, -1))
        .await
        .expect("placement");
    assert_eq!(first.agent_id, "small");
    client
        .release(first.lease_id, &Release { warm: false })
        .await
        .expect("release");
    client.report_unreachable("small").await.expect("report");
    let second = client
        .place(&placement("p1", -1, -1))
        .await
        .expect("placement");
    assert_eq!(second.agent_id, "large", "the reported agent is skipped");
    client
        .release(second.lease_id, &Release { warm: false })
        .await
        .expect("release");
    // Its next heartbeat (every 200 ms) brings it back.
    let mut back = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let p = client
            .place(&placement("p1", -1, -1))
            .await
            .expect("placement");
        client
            .release(p.lease_id, &Release { warm: false })
            .await
            .expect("release");
        if p.agent_id == "small" {
            back = true;
            break;
        }
    }
    assert!(back, "the agent came back with its heartbeat");
    // Unknown agents are fine to report; agents' own tokens are not.
    client
        .report_unreachable("no/such agent")
        .await
        .expect("report");
    let response = reqwest::Client::new()
        .post(format!("{}/v1/agents/small/unreachable", scheduler.url))
        .bearer_auth(
            agent_signer("large")
                .heartbeat_token(b"", 60)
                .expect("token"),
        )
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 401);
}
