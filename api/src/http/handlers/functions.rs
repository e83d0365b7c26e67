//! `/v1/functions`

use std::collections::BTreeMap;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use super::{state, State};
use crate::domain::functions::{self, FunctionUpdate, NewFunction, Package};
use crate::http::auth::Caller;
use crate::http::body;
use crate::http::error::{ApiError, ApiResult};
use crate::http::paging::{list_body, Query};
use crate::http::views::FunctionView;
use crate::http::AppState;
use fresco_store::functions::FunctionFilter;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    name: String,
    runtime: Option<String>,
    image: Option<String>,
    handler: Option<String>,
    memory_mb: Option<i32>,
    timeout_s: Option<i32>,
    environment: Option<BTreeMap<String, String>>,
    description: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    name: Option<String>,
    runtime: Option<String>,
    handler: Option<String>,
    memory_mb: Option<i32>,
    timeout_s: Option<i32>,
    environment: Option<BTreeMap<String, String>>,
    description: Option<String>,
}

/// Validates an uploaded package off the async workers (unpacking is CPU work).
async fn inspect(data: &AppState, bytes: Option<Vec<u8>>) -> ApiResult<Option<Package>> {
    let Some(bytes) = bytes else { return Ok(None) };
    let limits = data.package_limits();
    let package = web::block(move || functions::inspect_package(bytes, limits))
        .await
        .map_err(|e| {
            ApiError::new(
                actix_web::http::StatusCode::INTERNAL_SERVER_ERROR,
                e.to_string(),
            )
        })??;
    Ok(Some(package))
}

/// Reads metadata and an optional package from JSON or multipart bodies.
async fn metadata_and_package<T: serde::de::DeserializeOwned>(
    data: &AppState,
    req: &HttpRequest,
    payload: web::Payload,
) -> ApiResult<(Option<T>, Option<Package>)> {
    if body::is_multipart(req) {
        let upload = body::multipart(
            req,
            payload,
            data.api.max_json_body_bytes,
            data.api.max_package_bytes,
        )
        .await?;
        let metadata = upload.metadata.map(|m| body::parse_json(&m)).transpose()?;
        let package = inspect(data, upload.package).await?;
        Ok((metadata, package))
    } else {
        let metadata = body::json(req, payload, data.api.max_json_body_bytes).await?;
        Ok((Some(metadata), None))
    }
}

fn render(detail: functions::FunctionDetail) -> serde_json::Value {
    json!({ "function": FunctionView::from(detail) })
}

pub async fn create(
    data: State,
    caller: Caller,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    caller.authorize(&data, "function:create")?;
    let project = caller.project()?.to_owned();
    let (metadata, package) = metadata_and_package::<CreateBody>(&data, &req, payload).await?;
    let b = metadata.ok_or_else(|| ApiError::bad_request("the metadata part is required"))?;
    if b.image.is_some() {
        // Naming an image of one's own is a capability beyond creating functions.
        caller.authorize(&data, "function:create:custom_image")?;
    }
    let new = NewFunction {
        name: b.name,
        runtime: b.runtime,
        image: b.image,
        handler: b.handler,
        memory_mb: b.memory_mb,
        timeout_s: b.timeout_s,
        environment: b.environment,
        description: b.description,
    };
    let app = state(&data);
    let quota = app.quota.clone();
    let allowed_images = app.api.allowed_image_prefixes.clone();
    let detail = app
        .db(move |conn| functions::create(conn, &quota, &allowed_images, &project, new, package))
        .await?;
    Ok(HttpResponse::Created().json(render(detail)))
}

pub async fn list(data: State, caller: Caller, req: HttpRequest) -> ApiResult<HttpResponse> {
    caller.authorize(&data, "function:list")?;
    let query = Query::parse(&req, &["name", "runtime_id"])?;
    let scope = caller.list_scope(&data, &query)?;
    let page = query.page::<Uuid>(
        &["created_at", "name"],
        data.api.default_page_limit,
        data.api.max_page_limit,
    )?;
    let filter = FunctionFilter {
        name: query.get("name").map(str::to_owned),
        runtime_id: query.typed("runtime_id")?,
    };
    let found = state(&data)
        .db(move |conn| functions::list(conn, &scope, &filter, &page))
        .await?;
    let body = list_body(
        &data.base_url,
        &req,
        "functions",
        found,
        |f| f.function.id.to_string(),
        FunctionView::from,
    );
    Ok(HttpResponse::Ok().json(body))
}

pub async fn show(data: State, caller: Caller, path: web::Path<String>) -> ApiResult<HttpResponse> {
    caller.authorize(&data, "function:show")?;
    let scope = caller.object_scope(&data)?;
    let key = path.into_inner();
    let detail = state(&data)
        .db(move |conn| functions::get(conn, &scope, &key))
        .await?;
    Ok(HttpResponse::Ok().json(render(detail)))
}

pub async fn update(
    data: State,
    caller: Caller,
    path: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    caller.authorize(&data, "function:update")?;
    let scope = caller.object_scope(&data)?;
    let (metadata, package) = metadata_and_package::<UpdateBody>(&data, &req, payload).await?;
    let update = metadata
        .map(|b| FunctionUpdate {
            name: b.name,
            runtime: b.runtime,
            handler: b.handler,
            memory_mb: b.memory_mb,
            timeout_s: b.timeout_s,
            environment: b.environment,
            description: b.description,
        })
        .unwrap_or_default();
    let key = path.into_inner();
    let app = state(&data);
    let quota = app.quota.clone();
    let detail = app
        .db(move |conn| functions::update(conn, &quota, &scope, &key, update, package))
        .await?;
    app.forget_targets(detail.function.id);
    Ok(HttpResponse::Ok().json(render(detail)))
}

/// `PUT .../code`: the body is the archive itself.
pub async fn upload(
    data: State,
    caller: Caller,
    path: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    caller.authorize(&data, "function:update")?;
    let scope = caller.object_scope(&data)?;
    match req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        None => {}
        Some(ct)
            if [
                "application/zip",
                "application/gzip",
                "application/x-gzip",
                "application/octet-stream",
            ]
            .iter()
            .any(|t| ct.starts_with(t)) => {}
        Some(ct) => {
            return Err(ApiError::new(
                actix_web::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("expected application/zip or application/gzip, got {ct}"),
            ))
        }
    }
    let bytes = body::read(&req, payload, data.api.max_package_bytes).await?;
    let package = inspect(&data, Some(bytes.to_vec())).await?;
    let key = path.into_inner();
    let app = state(&data);
    let quota = app.quota.clone();
    let detail = app
        .db(move |conn| {
            functions::update(
                conn,
                &quota,
                &scope,
                &key,
                FunctionUpdate::default(),
                package,
            )
        })
        .await?;
    app.forget_targets(detail.function.id);
    Ok(HttpResponse::Ok().json(render(detail)))
}

pub async fn download(
    data: State,
    caller: Caller,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    caller.authorize(&data, "function:download")?;
    let scope = caller.object_scope(&data)?;
    let key = path.into_inner();
    let name = key.clone();
    let (format, bytes) = state(&data)
        .db(move |conn| functions::download(conn, &scope, &key))
        .await?;
    let extension = format.as_str();
    Ok(HttpResponse::Ok()
        .content_type(format.content_type())
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{name}.{extension}\""),
        ))
        .body(bytes))
}

pub async fn delete(
    data: State,
    caller: Caller,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    caller.authorize(&data, "function:delete")?;
    let scope = caller.object_scope(&data)?;
    let key = path.into_inner();
    let app = state(&data);
    let function_id = app
        .db(move |conn| functions::delete(conn, &scope, &key))
        .await?;
    app.forget_targets(function_id);
    Ok(HttpResponse::NoContent().finish())
}
