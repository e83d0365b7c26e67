//! `/v1/executions` and `/v1/usage`

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;
use uuid::Uuid;

use super::{state, State};
use crate::domain::executions;
use crate::http::auth::Caller;
use crate::http::error::{ApiError, ApiResult};
use crate::http::paging::{list_body, Query};
use crate::http::views::{self, ExecutionView};
use fresco_store::executions::ExecutionFilter;
use fresco_store::paging::SortDir;

/// Execution ids are UUIDs; anything else names no execution.
fn execution_id(text: &str) -> ApiResult<Uuid> {
    Uuid::parse_str(text)
        .map_err(|_| ApiError::not_found(format!("execution {text} could not be found")))
}

pub async fn list(data: State, caller: Caller, req: HttpRequest) -> ApiResult<HttpResponse> {
    caller.authorize(&data, "execution:list")?;
    let query = Query::parse(&req, &["function_id", "status"])?;
    let scope = caller.list_scope(&data, &query)?;
    // Newest first unless asked otherwise: a user's latest invocation is on the first page.
    let page = query.page_sorted::<Uuid>(
        &["created_at"],
        SortDir::Desc,
        data.api.default_page_limit,
        data.api.max_page_limit,
    )?;
    let filter = ExecutionFilter {
        function_id: query.typed("function_id")?,
        status: query
            .get("status")
            .map(executions::status_filter)
            .transpose()?,
    };
    let details = caller.sees_platform_details(&data);
    let found = state(&data)
        .db(move |conn| executions::list(conn, &scope, &filter, &page))
        .await?;
    let body = list_body(
        &data.base_url,
        &req,
        "executions",
        found,
        |e| e.id.to_string(),
        |e| ExecutionView::from(e).shown(details),
    );
    Ok(HttpResponse::Ok().json(body))
}

pub async fn show(data: State, caller: Caller, path: web::Path<String>) -> ApiResult<HttpResponse> {
    caller.authorize(&data, "execution:show")?;
    let scope = caller.object_scope(&data)?;
    let id = execution_id(&path)?;
    let execution = state(&data)
        .db(move |conn| executions::get(conn, &scope, id))
        .await?;
    let view = ExecutionView::from(execution).shown(caller.sees_platform_details(&data));
    Ok(HttpResponse::Ok().json(json!({ "execution": view })))
}

pub async fn log(data: State, caller: Caller, path: web::Path<String>) -> ApiResult<HttpResponse> {
    caller.authorize(&data, "execution:log")?;
    let scope = caller.object_scope(&data)?;
    let id = execution_id(&path)?;
    let logs = state(&data)
        .db(move |conn| executions::logs(conn, &scope, id))
        .await?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body(logs))
}

pub async fn delete(
    data: State,
    caller: Caller,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    caller.authorize(&data, "execution:delete")?;
    let scope = caller.object_scope(&data)?;
    let id = execution_id(&path)?;
    state(&data)
        .db(move |conn| executions::delete(conn, &scope, id))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `GET /v1/usage[?project_id=]`: the caller's project, or any for those allowed.
pub async fn usage(data: State, caller: Caller, req: HttpRequest) -> ApiResult<HttpResponse> {
    let query = Query::parse(&req, &[])?;
    let project = match query.get("project_id") {
        Some(p) => p.to_owned(),
        None => caller.project()?.to_owned(),
    };
    caller.authorize_on(&data, "usage:show", &project)?;
    let for_project = project.clone();
    let usage = state(&data)
        .db(move |conn| executions::usage(conn, &for_project))
        .await?;
    Ok(HttpResponse::Ok().json(json!({ "usage": views::usage(&project, &usage) })))
}
