//! `serve-local`'s HTTP interface (actix-web), a thin adapter over `local::Emulator`:
//! `POST /v1/functions/{name}/invoke` answered as the platform's sync invoke (`local::answer`:
//! status 200 with `x-execution-id`, `x-execution-status`, `x-execution-duration-ms`,
//! `x-execution-cold` and the response or the error JSON; 400 for an event that is not JSON
//! or a query the emulator does not serve, 404 for an unknown function, 413 for an event over
//! 6 MB, 503 with `Retry-After` when nothing could run), and `GET /v1/functions` (the loaded
//! names). Each invocation's log goes to the server's stderr. The run executes on the
//! emulator's core runtime, as the agent's runs do.

use std::sync::Arc;

use actix_web::http::header::{HeaderName, HeaderValue, RETRY_AFTER};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;

use super::{answer, parse_event, Emulator, LocalError, MAX_EVENT_BYTES};
use crate::http::error_response;
use crate::service::RunError;

pub struct LocalState {
    pub emulator: Arc<Emulator>,
    /// The runtime the emulator's containers, sockets and engine client live on.
    pub core: tokio::runtime::Handle,
}

/// Registers the emulator's routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    // One byte more than an event may have: a larger one is refused by `parse_event`.
    cfg.app_data(web::PayloadConfig::new(MAX_EVENT_BYTES + 1))
        .route("/v1/functions", web::get().to(list))
        .route("/v1/functions/{name}/invoke", web::post().to(invoke));
}

async fn list(state: web::Data<LocalState>) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "functions": state.emulator.names() }))
}

fn header(name: &'static str, value: &str) -> (HeaderName, HeaderValue) {
    (
        HeaderName::from_static(name),
        HeaderValue::from_str(value).unwrap_or_else(|_| HeaderValue::from_static("invalid")),
    )
}

fn local_error(error: &LocalError) -> HttpResponse {
    let (status, retry) = match error {
        LocalError::NoSuchFunction(_) => (StatusCode::NOT_FOUND, false),
        LocalError::EventTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, false),
        LocalError::Invalid(_) | LocalError::Run(RunError::Spec(_)) => {
            (StatusCode::BAD_REQUEST, false)
        }
        _ => (StatusCode::SERVICE_UNAVAILABLE, true),
    };
    let mut response = error_response(status, &error.to_string());
    if retry {
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

async fn invoke(
    state: web::Data<LocalState>,
    req: HttpRequest,
    path: web::Path<String>,
    body: Bytes,
) -> HttpResponse {
    let query = req.query_string();
    if !query.is_empty() {
        return error_response(
            StatusCode::BAD_REQUEST,
            &format!(
                "serve-local runs each function's own definition synchronously: no version, alias or async ({query:?})"
            ),
        );
    }
    let event = match parse_event(&body) {
        Ok(event) => event,
        Err(e) => return local_error(&e),
    };
    let name = path.into_inner();
    let emulator = Arc::clone(&state.emulator);
    let handle = state.core.spawn(async move {
        let result = emulator.invoke(&name, event).await;
        (name, result)
    });
    let result = match handle.await {
        Ok((name, Ok(result))) => {
            let log: String = result
                .logs
                .lines()
                .map(|line| format!("{name}: {line}\n"))
                .collect();
            eprint!("{log}");
            result
        }
        Ok((_, Err(error))) => return local_error(&error),
        Err(e) => {
            return error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("run failed: {e}"),
            )
        }
    };
    let answer = answer(&result);
    HttpResponse::Ok()
        .content_type("application/json")
        .insert_header(header("x-execution-id", &answer.execution_id.to_string()))
        .insert_header(header("x-execution-status", &answer.status))
        .insert_header(header(
            "x-execution-duration-ms",
            &format!("{:.3}", answer.duration_ms),
        ))
        .insert_header(header("x-execution-cold", answer.cold))
        .body(answer.body)
}
