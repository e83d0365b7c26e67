//! The agent's HTTP interface (actix-web), a thin adapter over `service::Agent`:
//! `POST /v1/run` (bearer ticket, body `wire::RunRequest`) → `wire::RunResult` (401 for a
//! ticket that is invalid, for another agent or for another payload, 409 for one already
//! used); or, under a grant, `Authorization: Grant <token>` with `x-fresco-execution-id` and
//! the raw event as the body (401 for a grant that is invalid, expired or for another agent,
//! 409 for an execution id it already ran, 429 when all its slots are in use), and
//! `GET /healthcheck`. The run itself executes on the agent's core runtime, so a caller that
//! goes away does not leave a container half-used.

use std::sync::Arc;

use actix_web::http::header::AUTHORIZATION;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use fresco_common::ticket::TicketError;
use fresco_common::wire::{RunRequest, EXECUTION_ID_HEADER, NOT_RUN_HEADER};

use crate::engine::ContainerEngine;
use crate::runtime_api::MAX_RESPONSE_BYTES;
use crate::service::{Agent, RunError};

/// Largest run request accepted (a Lambda-sized event plus the envelope).
pub const MAX_RUN_BODY: usize = MAX_RESPONSE_BYTES + 64 * 1024;

pub struct AppState<E: ContainerEngine> {
    pub agent: Arc<Agent<E>>,
    /// `GET /metrics`.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The runtime the agent's containers, sockets and engine client live on.
    pub core: tokio::runtime::Handle,
}

/// Registers the agent's routes.
pub fn configure<E: ContainerEngine>(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::PayloadConfig::new(MAX_RUN_BODY))
        .route("/v1/run", web::post().to(run::<E>))
        .route("/healthcheck", web::get().to(healthcheck::<E>))
        .route("/metrics", web::get().to(metrics::<E>));
}

/// `GET /metrics`: Prometheus metrics (text format), without a credential, like the API's and
/// the scheduler's: aggregate figures of this node only, no tenant data (see `metrics`).
async fn metrics<E: ContainerEngine>(state: web::Data<AppState<E>>) -> HttpResponse {
    let holdings = state.agent.holdings();
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render(&state.agent.metrics, &holdings))
}

/// `{"error": {"code", "title", "message"}}`, the shape the rest of Fresco answers with.
pub fn error_response(status: StatusCode, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(serde_json::json!({
        "error": {
            "code": status.as_u16(),
            "title": status.canonical_reason().unwrap_or("Error"),
            "message": message,
        }
    }))
}

/// The token of the `Authorization` header if its scheme is `scheme`.
fn credential<'a>(req: &'a HttpRequest, scheme: &str) -> Option<&'a str> {
    let value = req.headers().get(AUTHORIZATION)?.to_str().ok()?;
    let (given, token) = value.split_once(' ')?;
    given.eq_ignore_ascii_case(scheme).then_some(token.trim())
}

fn bearer(req: &HttpRequest) -> Option<&str> {
    credential(req, "bearer")
}

async fn run<E: ContainerEngine>(
    state: web::Data<AppState<E>>,
    req: HttpRequest,
    body: Bytes,
) -> HttpResponse {
    if let Some(grant) = credential(&req, "grant").map(str::to_owned) {
        return run_granted(state, &req, grant, body).await;
    }
    let Some(ticket) = bearer(&req).map(str::to_owned) else {
        return error_response(StatusCode::UNAUTHORIZED, "missing bearer ticket");
    };
    let request: RunRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                &format!("invalid run request: {e}"),
            )
        }
    };
    let payload = Bytes::from(request.payload.get().to_owned());
    let agent = Arc::clone(&state.agent);
    let handle = state
        .core
        .spawn(async move { agent.run(&ticket, payload).await });
    match handle.await {
        Ok(Ok(result)) => HttpResponse::Ok().json(result),
        Ok(Err(error)) => run_error(&error),
        Err(e) => error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("run failed: {e}"),
        ),
    }
}

/// A run under a grant: the body is the event itself, the execution id a header.
async fn run_granted<E: ContainerEngine>(
    state: web::Data<AppState<E>>,
    req: &HttpRequest,
    grant: String,
    body: Bytes,
) -> HttpResponse {
    let execution_id = match req
        .headers()
        .get(EXECUTION_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(uuid::Uuid::parse_str)
    {
        Some(Ok(id)) => id,
        Some(Err(_)) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                &format!("{EXECUTION_ID_HEADER} must be a uuid"),
            )
        }
        None => {
            return error_response(
                StatusCode::BAD_REQUEST,
                &format!("a run under a grant needs {EXECUTION_ID_HEADER}"),
            )
        }
    };
    let agent = Arc::clone(&state.agent);
    let handle = state
        .core
        .spawn(async move { agent.run_granted(&grant, execution_id, body).await });
    match handle.await {
        Ok(Ok(result)) => HttpResponse::Ok().json(result),
        Ok(Err(error)) => run_error(&error),
        Err(e) => error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("run failed: {e}"),
        ),
    }
}

/// The status code of each refusal.
pub fn run_error(error: &RunError) -> HttpResponse {
    let status = match error {
        RunError::Ticket(TicketError::Replayed) => StatusCode::CONFLICT,
        RunError::Ticket(_) => StatusCode::UNAUTHORIZED,
        RunError::Spec(_) => StatusCode::BAD_REQUEST,
        RunError::SlotsTaken(_) => StatusCode::TOO_MANY_REQUESTS,
        RunError::NoCapacity(_)
        | RunError::ShuttingDown
        | RunError::EngineUnavailable(_)
        | RunError::NoImage(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    let mut response = error_response(status, &error.to_string());
    let not_run = match error {
        RunError::EngineUnavailable(_) => Some("engine-unavailable"),
        RunError::NoCapacity(_) => Some("no-capacity"),
        RunError::ShuttingDown => Some("shutting-down"),
        RunError::NoImage(_) => Some("no-image"),
        RunError::Ticket(_) | RunError::Spec(_) | RunError::SlotsTaken(_) => None,
    };
    if let Some(reason) = not_run {
        response.headers_mut().insert(
            actix_web::http::header::HeaderName::from_static(NOT_RUN_HEADER),
            actix_web::http::header::HeaderValue::from_static(reason),
        );
    }
    response
}

/// `{"status": "ok", "prewarmed": [{"image", "memory_mb", "ready"}]}`: the pre-warmed
/// sandboxes ready per pool (counts only, as in heartbeats).
async fn healthcheck<E: ContainerEngine>(state: web::Data<AppState<E>>) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({
        "status": "ok",
        "prewarmed": state.agent.prewarmed_snapshot(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;
    use crate::engine::fake::FakeEngine;
    use actix_web::{test, App};
    use fresco_common::conf::RawConfig;
    use fresco_common::ticket::TicketVerifier;

    const PUBLIC: &str = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEALN3/XuOh0wrB4/jbsZwWdiMRVZL2PUepzf18DzEv6D4=\n-----END PUBLIC KEY-----\n";

    fn state() -> web::Data<AppState<FakeEngine>> {
        let raw = RawConfig::parse("[agent]\nagent_id = http-unit\nmemory_mb = 512\n", "test")
            .expect("config");
        let settings = Settings::from_raw(&raw).expect("settings");
        let verifier = TicketVerifier::from_pem(PUBLIC.as_bytes()).expect("verifier");
        let agent = Agent::new(settings, Arc::new(FakeEngine::new()), verifier).expect("agent");
        web::Data::new(AppState {
            agent: Arc::new(agent),
            metrics: Arc::default(),
            core: tokio::runtime::Handle::current(),
        })
    }

    /// (request, expected status, expected fragment of the error message)
    fn check_refusals() -> Vec<(test::TestRequest, u16, &'static str)> {
        vec![
            (
                test::TestRequest::post()
                    .uri("/v1/run")
                    .set_payload(r#"{"payload":{}}"#),
                401,
                "missing bearer ticket",
            ),
            (
                test::TestRequest::post()
                    .uri("/v1/run")
                    .insert_header(("Authorization", "Basic abc"))
                    .set_payload(r#"{"payload":{}}"#),
                401,
                "missing bearer ticket",
            ),
            (
                test::TestRequest::post()
                    .uri("/v1/run")
                    .insert_header(("Authorization", "Bearer x.y.z"))
                    .set_payload("not json"),
                400,
                "invalid run request",
            ),
            (
                test::TestRequest::post()
                    .uri("/v1/run")
                    .insert_header(("Authorization", "Bearer x.y.z"))
                    .set_payload(r#"{"payload":{"a":1}}"#),
                401,
                "invalid ticket",
            ),
        ]
    }

    #[actix_web::test]
    async fn refusals_before_anything_ran_say_so() {
        for (error, reason) in [
            (
                RunError::EngineUnavailable("connection refused".into()),
                "engine-unavailable",
            ),
            (RunError::NoCapacity("full".into()), "no-capacity"),
            (RunError::ShuttingDown, "shutting-down"),
            (
                RunError::NoImage("image x is not present".into()),
                "no-image",
            ),
        ] {
            let response = run_error(&error);
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(
                response.headers().get(NOT_RUN_HEADER).map(|v| v.as_bytes()),
                Some(reason.as_bytes())
            );
        }
        let refused = run_error(&RunError::Spec("bad".into()));
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
        assert!(!refused.headers().contains_key(NOT_RUN_HEADER));
    }

    #[actix_web::test]
    async fn refusals_are_json_errors_with_the_right_status() {
        let app = test::init_service(
            App::new()
                .app_data(state())
                .configure(configure::<FakeEngine>),
        )
        .await;
        for (request, status, message) in check_refusals() {
            let response = test::call_service(&app, request.to_request()).await;
            assert_eq!(response.status().as_u16(), status, "{message}");
            let body: serde_json::Value = test::read_body_json(response).await;
            assert_eq!(body["error"]["code"], status);
            assert!(
                body["error"]["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains(message),
                "{body}"
            );
        }
        let health = test::call_service(
            &app,
            test::TestRequest::get().uri("/healthcheck").to_request(),
        )
        .await;
        assert_eq!(health.status().as_u16(), 200);
    }
}
