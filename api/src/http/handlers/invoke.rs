//! `POST /v1/functions/{function}/invoke[?version=N|?alias=NAME][&async=true]`

use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use fresco_common::wire::RunStatus;
use fresco_store::ExecutionStatus;
use serde_json::json;
use serde_json::value::RawValue;

use super::{state, State};
use crate::command::Invocations;
use crate::domain::invoke::Selector;
use crate::http::auth::Caller;
use crate::http::body;
use crate::http::error::{ApiError, ApiResult};
use crate::http::paging::Query;
use crate::http::views::{self, ExecutionView};
use crate::invoke::{InvokeError, TargetKey};
use crate::shadow::Pending;
use bytes::Bytes;

/// Largest event accepted, as Lambda's synchronous limit.
const MAX_PAYLOAD_BYTES: usize = 6 * 1024 * 1024;

/// The HTTP error of a failed invocation; `details`: the caller may see the platform's side.
fn invoke_error(error: InvokeError, details: bool) -> ApiError {
    match error {
        InvokeError::Domain(e) => e.into(),
        InvokeError::RateLimited {
            retry_after,
            message,
        } => {
            let mut e = ApiError::new(StatusCode::TOO_MANY_REQUESTS, message);
            e.retry_after = Some(retry_after.as_secs().max(1));
            e
        }
        InvokeError::NoCapacity(m) => {
            let mut e = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("no capacity to run the function now: {m}"),
            );
            e.retry_after = Some(1);
            e
        }
        InvokeError::SchedulerUnavailable(m) => {
            log::warn!("scheduler unavailable: {m}");
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "scheduler unavailable")
        }
        // A platform failure, never the function's: a clear 503 the caller may retry, naming
        // the execution; the platform's own text (agents, their URLs, the engine's words) only
        // for who may see platform details.
        InvokeError::AgentFailed {
            execution_id,
            message,
        } => {
            let text = if details {
                format!(
                    "the platform could not run the function: execution {execution_id}: {message}"
                )
            } else {
                log::warn!(
                    "execution {execution_id}: the platform could not run the function: {message}"
                );
                format!(
                    "execution {execution_id}: {}",
                    views::PLATFORM_ERROR_MESSAGE
                )
            };
            let mut e = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, text);
            e.retry_after = Some(1);
            e
        }
        InvokeError::RecordsBehind(behind) => {
            let mut e = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, behind.to_string());
            e.retry_after = Some(1);
            e
        }
    }
}

fn header(name: &'static str, value: &str) -> (HeaderName, HeaderValue) {
    (
        HeaderName::from_static(name),
        HeaderValue::from_str(value).unwrap_or_else(|_| HeaderValue::from_static("invalid")),
    )
}

pub async fn invoke(
    data: State,
    caller: Caller,
    path: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    caller.authorize(&data, "function:invoke")?;
    let app = state(&data);
    let invoker = app.invoker.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "invocations are not configured",
        )
    })?;
    let query = Query::parse(&req, &["version", "alias", "async"])?;
    let selector = match (query.typed::<i32>("version")?, query.get("alias")) {
        (Some(_), Some(_)) => return Err(ApiError::bad_request("give version or alias, not both")),
        (Some(n), None) if n >= 1 => Selector::Version(n),
        (Some(n), None) => {
            return Err(ApiError::bad_request(format!(
                "version must be 1 or more, got {n}"
            )))
        }
        (None, Some(alias)) => Selector::Alias(alias.to_owned()),
        (None, None) => Selector::Latest,
    };
    let is_async = match (query.get("async"), req.headers().get("x-invocation-type")) {
        (Some("true" | "1"), _) => true,
        (Some("false" | "0") | None, Some(v)) => {
            v.as_bytes().eq_ignore_ascii_case(b"async")
                || v.as_bytes().eq_ignore_ascii_case(b"event")
        }
        (Some("false" | "0") | None, None) => false,
        (Some(other), _) => {
            return Err(ApiError::bad_request(format!(
                "async must be true or false, got {other:?}"
            )))
        }
    };
    let bytes = body::read(&req, payload, MAX_PAYLOAD_BYTES).await?;
    let event: Box<RawValue> = if bytes.iter().all(u8::is_ascii_whitespace) {
        RawValue::from_string("{}".to_owned()).map_err(|e| ApiError::bad_request(e.to_string()))?
    } else {
        serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::bad_request(format!("the event must be JSON: {e}")))?
    };

    let key: TargetKey = (caller.object_scope(&data)?, path.into_inner(), selector);
    // Picks between an alias's two versions; drawn per invocation, applied after the cache.
    let roll = rand::random_range(0..100);
    let invocations = Invocations {
        pool: &app.pool,
        invoker,
        quota: &app.quota,
        allowed_image_prefixes: &app.api.allowed_image_prefixes,
    };

    if is_async {
        let queued = invocations.enqueue(&key, roll, &event).await?;
        app.metrics.accepted("invoke");
        let view = ExecutionView::from(queued).shown(caller.sees_platform_details(&data));
        return Ok(HttpResponse::Accepted().json(json!({ "execution": view })));
    }
    let (target, shadow) = invocations
        .target_and_shadow(&key, roll, rand::random_range(0..100))
        .await?;
    // A copy for the alias's shadow version, offered once the primary answered.
    let copy = match (shadow, &app.shadows) {
        (Some(shadow), Some(queue)) => Some(Pending {
            queue,
            shadow,
            event: event.clone(),
        }),
        _ => None,
    };
    let details = caller.sees_platform_details(&data);
    run_sync(&app.metrics, invoker, &target, event, details, copy).await
}

/// Runs a sync invocation of `target` and renders its answer: the function's response (or
/// its error) with the execution's headers. `details`: the caller may see the platform's side.
pub(super) async fn run_sync(
    metrics: &crate::metrics::Metrics,
    invoker: &crate::invoke::Invoker,
    target: &crate::domain::invoke::Target,
    event: Box<RawValue>,
    details: bool,
    shadow: Option<Pending<'_>>,
) -> ApiResult<HttpResponse> {
    invoker
        .recorder
        .admit()
        .map_err(|behind| invoke_error(behind.into(), details))?;

    let started = std::time::Instant::now();
    let outcome = match invoker.invoke_sync(target, event).await {
        Ok(outcome) => outcome,
        Err(e) => {
            if let InvokeError::AgentFailed { execution_id, .. } = &e {
                metrics.invoked(ExecutionStatus::Error.as_str(), false, started.elapsed());
                if let Some(copy) = shadow {
                    copy.answered(*execution_id, ExecutionStatus::Error, None);
                }
            }
            return Err(invoke_error(e, details));
        }
    };
    metrics.invoked(
        ExecutionStatus::from(outcome.result.status).as_str(),
        outcome.result.cold,
        started.elapsed(),
    );
    let mut result = outcome.result;
    let body = match result.status {
        RunStatus::Succeeded => Some(Bytes::from(
            result.response.take().unwrap_or_else(|| "null".to_owned()),
        )),
        _ => None,
    };
    if let Some(copy) = shadow {
        let status = ExecutionStatus::from(result.status);
        let answer = match result.status {
            RunStatus::Succeeded => body.clone(),
            _ => result.response.clone().map(Bytes::from),
        };
        copy.answered(outcome.execution_id, status, answer);
    }
    let mut response = HttpResponse::Ok();
    response
        .content_type("application/json")
        .insert_header(header("x-execution-id", &outcome.execution_id.to_string()))
        .insert_header(header(
            "x-execution-status",
            ExecutionStatus::from(result.status).as_str(),
        ))
        .insert_header(header(
            "x-execution-duration-ms",
            &format!("{:.3}", result.duration_ms),
        ))
        .insert_header(header(
            "x-execution-cold",
            match (result.cold, result.prewarmed) {
                (false, _) => "false",
                (true, true) => "prewarmed",
                (true, false) => "cold",
            },
        ));
    Ok(match body {
        Some(body) => response.body(body),
        None => {
            let mut error = result.error.map(|e| serde_json::to_value(e).unwrap_or_default()).unwrap_or_else(|| {
                let status = ExecutionStatus::from(result.status);
                json!({"errorType": format!("Runtime.{status}"), "errorMessage": format!("execution ended with status {status}")})
            });
            if !details {
                views::redact_platform_error(&mut error);
            }
            response.json(error)
        }
    })
}
