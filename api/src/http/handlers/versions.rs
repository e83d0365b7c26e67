//! `/v1/functions/{function}/versions`

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::{state, State};
use crate::domain::versions;
use crate::http::auth::Caller;
use crate::http::body;
use crate::http::error::{ApiError, ApiResult};
use crate::http::paging::{list_body, Query};
use crate::http::views::VersionView;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PublishBody {
    #[serde(default)]
    description: String,
}

fn number(text: &str) -> ApiResult<i32> {
    text.parse::<i32>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| ApiError::not_found(format!("version {text} could not be found")))
}

pub async fn publish(
    data: State,
    caller: Caller,
    path: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    caller.authorize(&data, "function_version:create")?;
    let scope = caller.object_scope(&data)?;
    let bytes = body::read(&req, payload, data.api.max_json_body_bytes).await?;
    let b: PublishBody = if bytes.is_empty() {
        PublishBody::default()
    } else {
        body::require_json(&req)?;
        body::parse_json(&bytes)?
    };
    let key = path.into_inner();
    let detail = state(&data)
        .db(move |conn| versions::publish(conn, &scope, &key, b.description))
        .await?;
    Ok(HttpResponse::Created().json(json!({ "version": VersionView::from(detail) })))
}

pub async fn list(
    data: State,
    caller: Caller,
    path: web::Path<String>,
    req: HttpRequest,
) -> ApiResult<HttpResponse> {
    caller.authorize(&data, "function_version:list")?;
    let scope = caller.object_scope(&data)?;
    let query = Query::parse(&req, &[])?;
    let page = query.page::<i32>(
        &["version"],
        data.api.default_page_limit,
        data.api.max_page_limit,
    )?;
    let key = path.into_inner();
    let found = state(&data)
        .db(move |conn| versions::list(conn, &scope, &key, &page))
        .await?;
    let body = list_body(
        &data.base_url,
        &req,
        "versions",
        found,
        |v| v.version.version.to_string(),
        VersionView::from,
    );
    Ok(HttpResponse::Ok().json(body))
}

pub async fn show(
    data: State,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    caller.authorize(&data, "function_version:show")?;
    let scope = caller.object_scope(&data)?;
    let (key, version) = path.into_inner();
    let n = number(&version)?;
    let detail = state(&data)
        .db(move |conn| versions::get(conn, &scope, &key, n))
        .await?;
    Ok(HttpResponse::Ok().json(json!({ "version": VersionView::from(detail) })))
}

pub async fn delete(
    data: State,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    caller.authorize(&data, "function_version:delete")?;
    let scope = caller.object_scope(&data)?;
    let (key, version) = path.into_inner();
    let n = number(&version)?;
    let app = state(&data);
    let function_id = app
        .db(move |conn| versions::delete(conn, &scope, &key, n))
        .await?;
    app.forget_targets(function_id);
    Ok(HttpResponse::NoContent().finish())
}
