//! `/v1/functions/{function}/event-config` (the async invocation config) and
//! `/v1/functions/{function}/dead-letters` (failed async events, replayable).

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use super::{state, State};
use crate::command::Invocations;
use crate::domain::event_configs::{self, EventConfigInput};
use crate::domain::invoke::Selector;
use crate::http::auth::Caller;
use crate::http::body;
use crate::http::error::{ApiError, ApiResult};
use crate::http::paging::{list_body, Query};
use crate::http::views::{DeadLetterView, EventConfigView, ExecutionView};
use crate::invoke::TargetKey;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventConfigBody {
    max_attempts: Option<i32>,
    max_event_age_s: Option<i32>,
    on_success: Option<String>,
    on_failure: Option<String>,
    dead_letter: Option<bool>,
}

pub async fn show(data: State, caller: Caller, path: web::Path<String>) -> ApiResult<HttpResponse> {
    caller.authorize(&data, "function_event_config:show")?;
    let scope = caller.object_scope(&data)?;
    let key = path.into_inner();
    let config = state(&data)
        .db(move |conn| event_configs::get(conn, &scope, &key))
        .await?;
    Ok(HttpResponse::Ok().json(json!({ "event_config": EventConfigView::from(config) })))
}

pub async fn put(
    data: State,
    caller: Caller,
    path: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    caller.authorize(&data, "function_event_config:update")?;
    let scope = caller.object_scope(&data)?;
    let b: EventConfigBody = body::json(&req, payload, data.api.max_json_body_bytes).await?;
    let key = path.into_inner();
    let input = EventConfigInput {
        max_attempts: b.max_attempts,
        max_event_age_s: b.max_event_age_s,
        on_success: b.on_success,
        on_failure: b.on_failure,
        dead_letter: b.dead_letter,
    };
    let config = state(&data)
        .db(move |conn| event_configs::put(conn, &scope, &key, input))
        .await?;
    Ok(HttpResponse::Ok().json(json!({ "event_config": EventConfigView::from(config) })))
}

pub async fn delete(
    data: State,
    caller: Caller,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    caller.authorize(&data, "function_event_config:delete")?;
    let scope = caller.object_scope(&data)?;
    let key = path.into_inner();
    state(&data)
        .db(move |conn| event_configs::delete(conn, &scope, &key))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

pub async fn dead_letters(
    data: State,
    caller: Caller,
    path: web::Path<String>,
    req: HttpRequest,
) -> ApiResult<HttpResponse> {
    caller.authorize(&data, "function_dead_letter:list")?;
    let scope = caller.object_scope(&data)?;
    let query = Query::parse(&req, &[])?;
    let page = query.page::<Uuid>(
        &["created_at"],
        data.api.default_page_limit,
        data.api.max_page_limit,
    )?;
    let key = path.into_inner();
    let found = state(&data)
        .db(move |conn| event_configs::dead_letters(conn, &scope, &key, &page))
        .await?;
    let body = list_body(
        &data.base_url,
        &req,
        "dead_letters",
        found,
        |d| d.id.to_string(),
        DeadLetterView::from,
    );
    Ok(HttpResponse::Ok().json(body))
}

pub async fn replay(
    data: State,
    caller: Caller,
    path: web::Path<(String, Uuid)>,
) -> ApiResult<HttpResponse> {
    caller.authorize(&data, "function_dead_letter:replay")?;
    let scope = caller.object_scope(&data)?;
    let app = state(&data);
    let invoker = app.invoker.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "invocations are not configured",
        )
    })?;
    let (key, letter) = path.into_inner();
    let invocations = Invocations {
        pool: &app.pool,
        invoker,
        quota: &app.quota,
        allowed_image_prefixes: &app.api.allowed_image_prefixes,
    };
    let target: TargetKey = (scope, key, Selector::Latest);
    let queued = invocations.replay(&target, letter).await?;
    app.metrics.accepted("replay");
    let view = ExecutionView::from(queued).shown(caller.sees_platform_details(&data));
    Ok(HttpResponse::Accepted().json(json!({ "execution": view })))
}
