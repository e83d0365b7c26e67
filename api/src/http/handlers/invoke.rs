//! `POST /v1/functions/{function}/invoke[?version=N|?alias=NAME][&async=true]`

use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use fresco_common::wire::RunStatus;
use fresco_store::ExecutionStatus;
use serde_json::json;
use serde_json::value::RawValue;

use std::sync::Arc;

use super::{state, State};
use crate::command::Invocations;
use crate::domain::invoke::{Selector, Target};
use crate::hooks::{self, Answer, Finished, Invocation, ProjectHooks};
use crate::http::auth::Caller;
use crate::http::body;
use crate::http::error::{ApiError, ApiResult};
use crate::http::paging::Query;
use crate::http::views::{self, ExecutionView};
use crate::http::AppState;
use crate::invoke::Invoker;
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

    let user_id = caller.context.user_id.as_str();
    if is_async {
        // Pre hooks run at accept: a rejection is the caller's answer, and what is queued is
        // the event as the hooks left it (docs/api.md, Hooks).
        let target = invocations.target(&key, roll).await?;
        let (event, failed_open) = pre_hooks(&app, invoker, &target, event, true, user_id).await?;
        let queued = invocations.enqueue(&key, roll, &event).await?;
        app.metrics.accepted("invoke");
        let view = ExecutionView::from(queued).shown(caller.sees_platform_details(&data));
        let mut response = HttpResponse::Accepted();
        if !failed_open.is_empty() {
            response.insert_header(failed_open_header(&failed_open));
        }
        return Ok(response.json(json!({ "execution": view })));
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
    run_sync(&app, invoker, &target, event, details, user_id, copy).await
}

/// `x-hook-failed-open`: the hooks that failed and let the invocation through.
pub(super) fn failed_open_header(hooks: &[uuid::Uuid]) -> (HeaderName, HeaderValue) {
    let ids: Vec<String> = hooks.iter().map(uuid::Uuid::to_string).collect();
    header("x-hook-failed-open", &ids.join(","))
}

/// The hooks of the target's project that apply to it (none for a hook's own function).
async fn hooks_of(
    app: &Arc<AppState>,
    invoker: &Invoker,
    target: &Target,
) -> ApiResult<Option<Arc<ProjectHooks>>> {
    let hooks = hooks::of_project(
        invoker,
        &app.pool,
        &app.quota,
        &app.api.allowed_image_prefixes,
        &target.spec.project_id,
    )
    .await?;
    Ok((!hooks.skip(target.spec.function_id)).then_some(hooks))
}

/// Runs the pre hooks that apply to `target` on `event`: the event to run and the hooks that
/// failed open.
pub(super) async fn pre_hooks(
    app: &Arc<AppState>,
    invoker: &Invoker,
    target: &Target,
    event: Box<RawValue>,
    is_async: bool,
    user_id: &str,
) -> ApiResult<(Box<RawValue>, Vec<uuid::Uuid>)> {
    let Some(hooks) = hooks_of(app, invoker, target).await? else {
        return Ok((event, Vec::new()));
    };
    if hooks.pre.is_empty() {
        return Ok((event, Vec::new()));
    }
    let invocation = Invocation::of(target, is_async, user_id);
    let allowed = hooks::run_pre(invoker, &hooks, &invocation, event).await?;
    Ok((allowed.event, allowed.failed_open))
}

/// Runs a sync invocation of `target` and renders its answer: the function's response (or
/// its error) with the execution's headers. `details`: the caller may see the platform's side.
/// The project's hooks run around it (`crate::hooks`): the pre hooks first, the redacting
/// post hooks before the answer, the other post hooks after it.
pub(super) async fn run_sync(
    app: &Arc<AppState>,
    invoker: &Invoker,
    target: &Target,
    event: Box<RawValue>,
    details: bool,
    user_id: &str,
    mut shadow: Option<Pending<'_>>,
) -> ApiResult<HttpResponse> {
    let metrics = &app.metrics;
    invoker
        .recorder
        .admit()
        .map_err(|behind| invoke_error(behind.into(), details))?;

    let hooks = hooks_of(app, invoker, target).await?;
    let invocation = hooks
        .as_ref()
        .map(|_| Invocation::of(target, false, user_id));
    let mut failed_open = Vec::new();
    let event = match (&hooks, &invocation) {
        (Some(hooks), Some(invocation)) if !hooks.pre.is_empty() => {
            let allowed = hooks::run_pre(invoker, hooks, invocation, event).await?;
            failed_open = allowed.failed_open;
            if let Some(copy) = shadow.as_mut() {
                // The shadow runs on the event the function runs on.
                copy.event = allowed.event.clone();
            }
            allowed.event
        }
        _ => event,
    };
    // The event the function saw, for the post hooks.
    let seen = hooks
        .as_ref()
        .filter(|h| !h.post.is_empty() || !h.redacting.is_empty())
        .map(|_| event.clone());

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
    // The function's own answer, shared (not copied) by the shadow copy and the caller's body.
    let mut body: Option<Bytes> = result.response.take().map(Bytes::from);
    if let Some(copy) = shadow {
        // Compared before any redacting hook: the shadow runs the function, not the hooks.
        copy.answered(
            outcome.execution_id,
            ExecutionStatus::from(result.status),
            body.clone(),
        );
    }
    let mut error = (result.status != RunStatus::Succeeded).then(|| {
        let mut error = result.error.take().map(|e| serde_json::to_value(e).unwrap_or_default()).unwrap_or_else(|| {
            let status = ExecutionStatus::from(result.status);
            json!({"errorType": format!("Runtime.{status}"), "errorMessage": format!("execution ended with status {status}")})
        });
        if !details {
            views::redact_platform_error(&mut error);
        }
        error
    });
    if let (Some(hooks), Some(invocation), Some(seen)) = (hooks, invocation, seen) {
        let finished = Finished {
            id: outcome.execution_id,
            function_id: target.spec.function_id,
            function_name: target.spec.function_name.clone(),
            version: target.spec.version,
            alias: target.alias.clone(),
            status: ExecutionStatus::from(result.status).as_str(),
            duration_ms: result.duration_ms,
            cold: result.cold,
        };
        if result.status == RunStatus::Succeeded && !hooks.redacting.is_empty() {
            let response = body
                .take()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_else(|| "null".to_owned());
            let (response, open) =
                hooks::run_redacting(invoker, &hooks, &invocation, &seen, &finished, response)
                    .await?;
            body = Some(Bytes::from(response));
            failed_open.extend(open);
        }
        if !hooks.post.is_empty() {
            // After the answer, on this worker: never delays the caller.
            let app = Arc::clone(app);
            let response = body
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned());
            let error = error.clone();
            actix_web::rt::spawn(async move {
                if let Some(invoker) = app.invoker.as_ref() {
                    let answer = Answer {
                        execution: &finished,
                        response: response.as_deref(),
                        error: error.as_ref(),
                    };
                    hooks::run_post(invoker, &hooks, &invocation, &seen, &answer).await;
                }
            });
        }
    }
    let mut response = HttpResponse::Ok();
    if !failed_open.is_empty() {
        response.insert_header(failed_open_header(&failed_open));
    }
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
    Ok(match error.take() {
        None => response.body(body.unwrap_or_else(|| Bytes::from_static(b"null"))),
        Some(error) => response.json(error),
    })
}
