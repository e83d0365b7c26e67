//! `/v1/quotas/{project_id}`

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::{state, State};
use crate::domain::quotas;
use crate::http::auth::Caller;
use crate::http::body;
use crate::http::error::{ApiError, ApiResult};
use crate::http::views;

pub async fn show(data: State, caller: Caller, path: web::Path<String>) -> ApiResult<HttpResponse> {
    let project = path.into_inner();
    caller.authorize_on(&data, "quota:show", &project)?;
    let app = state(&data);
    let defaults = app.quota.clone();
    let report = app
        .db(move |conn| quotas::report(conn, &defaults, &project))
        .await?;
    Ok(HttpResponse::Ok().json(json!({ "quota": views::quota(&report) })))
}

pub async fn update(
    data: State,
    caller: Caller,
    path: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    let project = path.into_inner();
    caller.authorize_on(&data, "quota:update", &project)?;
    let b: serde_json::Map<String, serde_json::Value> =
        body::json(&req, payload, data.api.max_json_body_bytes).await?;
    let mut changes = Vec::with_capacity(b.len());
    for (resource, value) in b {
        let limit = value
            .as_i64()
            .ok_or_else(|| ApiError::bad_request(format!("{resource} must be an integer")))?;
        changes.push((resource, limit));
    }
    if changes.is_empty() {
        return Err(ApiError::bad_request("give at least one quota to change"));
    }
    let app = state(&data);
    let defaults = app.quota.clone();
    let report = app
        .db(move |conn| quotas::update(conn, &defaults, &project, &changes))
        .await?;
    Ok(HttpResponse::Ok().json(json!({ "quota": views::quota(&report) })))
}

pub async fn reset(
    data: State,
    caller: Caller,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let project = path.into_inner();
    caller.authorize_on(&data, "quota:delete", &project)?;
    state(&data)
        .db(move |conn| quotas::reset(conn, &project))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
