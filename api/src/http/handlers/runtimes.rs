//! `/v1/runtimes`

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use super::{state, State};
use crate::domain::runtimes::{self, NewRuntime, RuntimeUpdate};
use crate::http::auth::Caller;
use crate::http::body;
use crate::http::error::ApiResult;
use crate::http::paging::{list_body, Query};
use crate::http::views::RuntimeView;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    name: String,
    image: String,
    kind: String,
    #[serde(default)]
    description: String,
    #[serde(default = "yes")]
    is_public: bool,
    project_id: Option<String>,
    #[serde(default)]
    network: bool,
    #[serde(default = "memory_min")]
    memory_min_mb: i32,
    #[serde(default = "memory_max")]
    memory_max_mb: i32,
    #[serde(default = "timeout_max")]
    timeout_max_s: i32,
}

fn yes() -> bool {
    true
}
fn memory_min() -> i32 {
    64
}
fn memory_max() -> i32 {
    2048
}
fn timeout_max() -> i32 {
    900
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    name: Option<String>,
    image: Option<String>,
    description: Option<String>,
    is_public: Option<bool>,
    status: Option<String>,
    network: Option<bool>,
    memory_min_mb: Option<i32>,
    memory_max_mb: Option<i32>,
    timeout_max_s: Option<i32>,
}

pub async fn create(
    data: State,
    caller: Caller,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    caller.authorize(&data, "runtime:create")?;
    let b: CreateBody = body::json(&req, payload, data.api.max_json_body_bytes).await?;
    let owner = match (b.project_id, caller.context.project()) {
        (Some(p), _) => p,
        (None, Some(p)) => p.to_owned(),
        // A system-scoped administrator has no project: a public runtime then belongs to none.
        (None, None) if b.is_public => String::new(),
        (None, None) => caller.project()?.to_owned(),
    };
    let new = NewRuntime {
        name: b.name,
        image: b.image,
        kind: b.kind,
        description: b.description,
        is_public: b.is_public,
        project_id: owner,
        network: b.network,
        memory_min_mb: b.memory_min_mb,
        memory_max_mb: b.memory_max_mb,
        timeout_max_s: b.timeout_max_s,
    };
    let runtime = state(&data)
        .db(move |conn| runtimes::create(conn, new))
        .await?;
    Ok(HttpResponse::Created().json(json!({ "runtime": RuntimeView::from(runtime) })))
}

pub async fn list(data: State, caller: Caller, req: HttpRequest) -> ApiResult<HttpResponse> {
    caller.authorize(&data, "runtime:list")?;
    let query = Query::parse(&req, &[])?;
    let scope = caller.list_scope(&data, &query)?;
    let page = query.page::<Uuid>(
        &["created_at", "name"],
        data.api.default_page_limit,
        data.api.max_page_limit,
    )?;
    let found = state(&data)
        .db(move |conn| runtimes::list(conn, &scope, &page))
        .await?;
    let body = list_body(
        &data.base_url,
        &req,
        "runtimes",
        found,
        |r| r.id.to_string(),
        RuntimeView::from,
    );
    Ok(HttpResponse::Ok().json(body))
}

pub async fn show(data: State, caller: Caller, path: web::Path<String>) -> ApiResult<HttpResponse> {
    caller.authorize(&data, "runtime:show")?;
    let scope = caller.object_scope(&data)?;
    let key = path.into_inner();
    let runtime = state(&data)
        .db(move |conn| runtimes::get(conn, &scope, &key))
        .await?;
    Ok(HttpResponse::Ok().json(json!({ "runtime": RuntimeView::from(runtime) })))
}

pub async fn update(
    data: State,
    caller: Caller,
    path: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    caller.authorize(&data, "runtime:update")?;
    let b: UpdateBody = body::json(&req, payload, data.api.max_json_body_bytes).await?;
    let key = path.into_inner();
    let update = RuntimeUpdate {
        name: b.name,
        image: b.image,
        description: b.description,
        is_public: b.is_public,
        status: b.status,
        network: b.network,
        memory_min_mb: b.memory_min_mb,
        memory_max_mb: b.memory_max_mb,
        timeout_max_s: b.timeout_max_s,
    };
    let app = state(&data);
    let runtime = app
        .db(move |conn| runtimes::update(conn, &key, update))
        .await?;
    app.forget_all_targets();
    Ok(HttpResponse::Ok().json(json!({ "runtime": RuntimeView::from(runtime) })))
}

pub async fn delete(
    data: State,
    caller: Caller,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    caller.authorize(&data, "runtime:delete")?;
    let key = path.into_inner();
    state(&data)
        .db(move |conn| runtimes::delete(conn, &key))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
