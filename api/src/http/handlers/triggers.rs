//! `/v1/triggers`: cron, webhook and notification triggers of the caller's project.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Deserializer};
use serde_json::json;
use uuid::Uuid;

use super::{state, State};
use crate::domain::triggers::{self, TriggerInput};
use crate::http::auth::Caller;
use crate::http::body;
use crate::http::error::ApiResult;
use crate::http::paging::{list_body, Query};
use crate::http::views::TriggerView;

/// Tells an absent field (`None`) from an explicit `null` (`Some(None)`).
fn explicit<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TriggerBody {
    name: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    function: Option<String>,
    #[serde(default, deserialize_with = "explicit")]
    version: Option<Option<i32>>,
    #[serde(default, deserialize_with = "explicit")]
    alias: Option<Option<String>>,
    input: Option<serde_json::Value>,
    enabled: Option<bool>,
    description: Option<String>,
    cron: Option<String>,
    timezone: Option<String>,
    #[serde(default, deserialize_with = "explicit")]
    secret: Option<Option<String>>,
    rate_limit: Option<i32>,
    sync: Option<bool>,
    event_types: Option<Vec<String>>,
}

impl From<TriggerBody> for TriggerInput {
    fn from(b: TriggerBody) -> Self {
        TriggerInput {
            name: b.name,
            kind: b.kind,
            function: b.function,
            version: b.version,
            alias: b.alias,
            input: b.input,
            enabled: b.enabled,
            description: b.description,
            cron: b.cron,
            timezone: b.timezone,
            secret: b.secret,
            rate_limit: b.rate_limit,
            sync: b.sync,
            event_types: b.event_types,
        }
    }
}

pub async fn create(
    data: State,
    caller: Caller,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    caller.authorize(&data, "trigger:create")?;
    let scope = caller.object_scope(&data)?;
    let b: TriggerBody = body::json(&req, payload, data.api.max_json_body_bytes).await?;
    let app = state(&data);
    let quota = app.quota.clone();
    let trigger = app
        .db(move |conn| triggers::create(conn, &quota, &scope, b.into()))
        .await?;
    Ok(HttpResponse::Created()
        .json(json!({ "trigger": TriggerView::new(trigger, &data.base_url) })))
}

pub async fn list(data: State, caller: Caller, req: HttpRequest) -> ApiResult<HttpResponse> {
    caller.authorize(&data, "trigger:list")?;
    let query = Query::parse(&req, &["function", "type"])?;
    let scope = caller.list_scope(&data, &query)?;
    let page = query.page::<Uuid>(
        &["created_at", "name"],
        data.api.default_page_limit,
        data.api.max_page_limit,
    )?;
    let function = query.get("function").map(str::to_owned);
    let kind = query.get("type").map(str::to_owned);
    let found = state(&data)
        .db(move |conn| triggers::list(conn, &scope, function.as_deref(), kind.as_deref(), &page))
        .await?;
    let base = data.base_url.clone();
    let body = list_body(
        &data.base_url,
        &req,
        "triggers",
        found,
        |t| t.id.to_string(),
        |t| TriggerView::new(t, &base),
    );
    Ok(HttpResponse::Ok().json(body))
}

pub async fn show(data: State, caller: Caller, path: web::Path<String>) -> ApiResult<HttpResponse> {
    caller.authorize(&data, "trigger:show")?;
    let scope = caller.object_scope(&data)?;
    let key = path.into_inner();
    let trigger = state(&data)
        .db(move |conn| triggers::get(conn, &scope, &key))
        .await?;
    Ok(HttpResponse::Ok().json(json!({ "trigger": TriggerView::new(trigger, &data.base_url) })))
}

pub async fn update(
    data: State,
    caller: Caller,
    path: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    caller.authorize(&data, "trigger:update")?;
    let scope = caller.object_scope(&data)?;
    let b: TriggerBody = body::json(&req, payload, data.api.max_json_body_bytes).await?;
    let key = path.into_inner();
    let trigger = state(&data)
        .db(move |conn| triggers::update(conn, &scope, &key, b.into()))
        .await?;
    Ok(HttpResponse::Ok().json(json!({ "trigger": TriggerView::new(trigger, &data.base_url) })))
}

pub async fn delete(
    data: State,
    caller: Caller,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    caller.authorize(&data, "trigger:delete")?;
    let scope = caller.object_scope(&data)?;
    let key = path.into_inner();
    state(&data)
        .db(move |conn| triggers::delete(conn, &scope, &key))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
