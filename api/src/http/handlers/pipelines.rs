//! `/v1/pipelines` (definitions of steps over the project's functions) and
//! `/v1/pipeline-runs` (their runs, each step an async execution).

use std::time::{Duration, Instant};

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::{state, State};
use crate::domain::pipelines::{self, PipelineInput, MAX_INPUT_BYTES};
use crate::http::auth::Caller;
use crate::http::body;
use crate::http::error::{ApiError, ApiResult};
use crate::http::paging::{list_body, Query};
use crate::http::views::{PipelineRunView, PipelineView};

/// A sync invoke's default wait for the run's end, and the longest a caller may ask for.
const DEFAULT_WAIT_MS: u64 = 30_000;
const MAX_WAIT_MS: u64 = 900_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PipelineBody {
    name: Option<String>,
    description: Option<String>,
    steps: Option<Value>,
    handlers: Option<Value>,
}

impl From<PipelineBody> for PipelineInput {
    fn from(b: PipelineBody) -> Self {
        PipelineInput {
            name: b.name,
            description: b.description,
            steps: b.steps,
            handlers: b.handlers,
        }
    }
}

fn pipeline_body(p: fresco_store::pipelines::Pipeline) -> Value {
    json!({ "pipeline": PipelineView::from(p) })
}

pub async fn create(
    data: State,
    caller: Caller,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    caller.authorize(&data, "pipeline:create")?;
    let scope = caller.object_scope(&data)?;
    let b: PipelineBody = body::json(&req, payload, data.api.max_json_body_bytes).await?;
    let app = state(&data);
    let quota = app.quota.clone();
    let pipeline = app
        .db(move |conn| pipelines::create(conn, &quota, &scope, b.into()))
        .await?;
    Ok(HttpResponse::Created().json(pipeline_body(pipeline)))
}

pub async fn list(data: State, caller: Caller, req: HttpRequest) -> ApiResult<HttpResponse> {
    caller.authorize(&data, "pipeline:list")?;
    let query = Query::parse(&req, &[])?;
    let scope = caller.list_scope(&data, &query)?;
    let page = query.page::<Uuid>(
        &["created_at", "name"],
        data.api.default_page_limit,
        data.api.max_page_limit,
    )?;
    let found = state(&data)
        .db(move |conn| pipelines::list(conn, &scope, &page))
        .await?;
    let body = list_body(
        &data.base_url,
        &req,
        "pipelines",
        found,
        |p| p.id.to_string(),
        PipelineView::from,
    );
    Ok(HttpResponse::Ok().json(body))
}

pub async fn show(data: State, caller: Caller, path: web::Path<String>) -> ApiResult<HttpResponse> {
    caller.authorize(&data, "pipeline:show")?;
    let scope = caller.object_scope(&data)?;
    let key = path.into_inner();
    let pipeline = state(&data)
        .db(move |conn| pipelines::get(conn, &scope, &key))
        .await?;
    Ok(HttpResponse::Ok().json(pipeline_body(pipeline)))
}

/// Stores a new version of the pipeline.
pub async fn update(
    data: State,
    caller: Caller,
    path: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    caller.authorize(&data, "pipeline:update")?;
    let scope = caller.object_scope(&data)?;
    let b: PipelineBody = body::json(&req, payload, data.api.max_json_body_bytes).await?;
    let key = path.into_inner();
    let pipeline = state(&data)
        .db(move |conn| pipelines::update(conn, &scope, &key, b.into()))
        .await?;
    Ok(HttpResponse::Ok().json(pipeline_body(pipeline)))
}

pub async fn delete(
    data: State,
    caller: Caller,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    caller.authorize(&data, "pipeline:delete")?;
    let scope = caller.object_scope(&data)?;
    let key = path.into_inner();
    state(&data)
        .db(move |conn| pipelines::delete(conn, &scope, &key))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /v1/pipelines/{p}/invoke[?async=true][&timeout_ms=N]`: starts a run. Async: 202 with
/// the run. Sync: waits for the run's end up to `timeout_ms` (default 30 s): 200 with the
/// ended run (`succeeded` or `failed`), or 202 with the run still `running` when the wait is
/// over (the run goes on; `GET /v1/pipeline-runs/{id}` follows it).
pub async fn invoke(
    data: State,
    caller: Caller,
    path: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    caller.authorize(&data, "pipeline:invoke")?;
    let scope = caller.object_scope(&data)?;
    let query = Query::parse(&req, &["async", "timeout_ms"])?;
    let is_async = match query.get("async") {
        None | Some("false" | "0") => false,
        Some("true" | "1") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "async must be true or false, got {other:?}"
            )))
        }
    };
    let wait_ms = match query.typed::<u64>("timeout_ms")? {
        None => DEFAULT_WAIT_MS,
        Some(ms) if (1..=MAX_WAIT_MS).contains(&ms) => ms,
        Some(ms) => {
            return Err(ApiError::bad_request(format!(
                "timeout_ms must be from 1 to {MAX_WAIT_MS}, got {ms}"
            )))
        }
    };
    let bytes = body::read(&req, payload, MAX_INPUT_BYTES).await?;
    let event: Value = if bytes.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        body::parse_json(&bytes)
            .map_err(|e| ApiError::bad_request(format!("the event must be JSON: {e}")))?
    };
    let app = state(&data);
    let quota = app.quota.clone();
    let images = app.api.allowed_image_prefixes.clone();
    let key = path.into_inner();
    let run_scope = scope.clone();
    let run = app
        .db(move |conn| pipelines::start(conn, &quota, &run_scope, &key, event, &images))
        .await?;
    let id = run.id;
    let location = format!(
        "{}/v1/pipeline-runs/{id}",
        data.base_url.trim_end_matches('/')
    );
    if !is_async && run.status == fresco_store::pipelines::RUNNING {
        // Poll the run's row: every 2 ms at first, backing off to 50 ms.
        let deadline = Instant::now() + Duration::from_millis(wait_ms);
        let mut pause = Duration::from_millis(2);
        loop {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            actix_web::rt::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 3 / 2).min(Duration::from_millis(50));
            let scope = scope.clone();
            let status = app
                .db(move |conn| pipelines::run_status(conn, &scope, id))
                .await?;
            if status != fresco_store::pipelines::RUNNING {
                break;
            }
        }
    }
    let (run, steps) = app
        .db(move |conn| pipelines::get_run(conn, &scope, id))
        .await?;
    let running = run.status == fresco_store::pipelines::RUNNING;
    let body = json!({ "pipeline_run": PipelineRunView::detail(run, steps) });
    let mut response = if is_async || running {
        HttpResponse::Accepted()
    } else {
        HttpResponse::Ok()
    };
    Ok(response
        .insert_header((actix_web::http::header::LOCATION, location))
        .json(body))
}

pub async fn list_runs(data: State, caller: Caller, req: HttpRequest) -> ApiResult<HttpResponse> {
    caller.authorize(&data, "pipeline_run:list")?;
    let query = Query::parse(&req, &["pipeline", "status"])?;
    let scope = caller.list_scope(&data, &query)?;
    let page = query.page::<Uuid>(
        &["created_at"],
        data.api.default_page_limit,
        data.api.max_page_limit,
    )?;
    let pipeline = query.get("pipeline").map(str::to_owned);
    let status = query.get("status").map(str::to_owned);
    let found = state(&data)
        .db(move |conn| {
            pipelines::list_runs(conn, &scope, pipeline.as_deref(), status.as_deref(), &page)
        })
        .await?;
    let body = list_body(
        &data.base_url,
        &req,
        "pipeline_runs",
        found,
        |r| r.id.to_string(),
        PipelineRunView::summary,
    );
    Ok(HttpResponse::Ok().json(body))
}

pub async fn show_run(
    data: State,
    caller: Caller,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    caller.authorize(&data, "pipeline_run:show")?;
    let scope = caller.object_scope(&data)?;
    let key = path.into_inner();
    let id = Uuid::parse_str(&key).map_err(|_| {
        ApiError::from(crate::domain::DomainError::NotFound {
            kind: "pipeline run",
            id: key.clone(),
        })
    })?;
    let (run, steps) = state(&data)
        .db(move |conn| pipelines::get_run(conn, &scope, id))
        .await?;
    Ok(HttpResponse::Ok().json(json!({ "pipeline_run": PipelineRunView::detail(run, steps) })))
}
