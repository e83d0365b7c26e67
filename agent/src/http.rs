//! The agent's HTTP interface (actix-web), a thin adapter over `service::Agent`:
//! `POST /v1/run` (bearer ticket, body `wire::RunRequest`) → `wire::RunResult`, and
//! `GET /healthcheck`. The run itself executes on the agent's core runtime, so a caller that
//! goes away does not leave a container half-used.

use std::sync::Arc;

use actix_web::http::header::AUTHORIZATION;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use fresco_common::wire::RunRequest;

use crate::engine::ContainerEngine;
use crate::runtime_api::MAX_RESPONSE_BYTES;
use crate::service::{Agent, RunError};

/// Largest run request accepted (a Lambda-sized event plus the envelope).
pub const MAX_RUN_BODY: usize = MAX_RESPONSE_BYTES + 64 * 1024;

pub struct AppState<E: ContainerEngine> {
    pub agent: Arc<Agent<E>>,
    /// The runtime the agent's containers, sockets and engine client live on.
    pub core: tokio::runtime::Handle,
}

/// Registers the agent's routes.
pub fn configure<E: ContainerEngine>(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::PayloadConfig::new(MAX_RUN_BODY))
        .route("/v1/run", web::post().to(run::<E>))
        .route("/healthcheck", web::get().to(healthcheck));
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

fn bearer(req: &HttpRequest) -> Option<&str> {
    let value = req.headers().get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

async fn run<E: ContainerEngine>(
    state: web::Data<AppState<E>>,
    req: HttpRequest,
    body: Bytes,
) -> HttpResponse {
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

/// The status code of each refusal.
pub fn run_error(error: &RunError) -> HttpResponse {
    let status = match error {
        RunError::Ticket(_) => StatusCode::UNAUTHORIZED,
        RunError::Spec(_) => StatusCode::BAD_REQUEST,
        RunError::NoCapacity(_) | RunError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
    };
    error_response(status, &error.to_string())
}

async fn healthcheck() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}
