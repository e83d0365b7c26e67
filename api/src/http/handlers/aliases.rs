//! `/v1/functions/{function}/aliases`

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Deserializer};
use serde_json::json;

use super::{state, State};
use crate::domain::aliases::{self, AliasInput};
use crate::http::auth::Caller;
use crate::http::body;
use crate::http::error::ApiResult;
use crate::http::paging::{list_body, Query};
use crate::http::views::{AliasView, ComparisonView};

/// Tells an absent field (`None`) from an explicit `null` (`Some(None)`).
fn explicit<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<i32>>, D::Error> {
    Option::<i32>::deserialize(d).map(Some)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AliasBody {
    name: Option<String>,
    version: Option<i32>,
    #[serde(default, deserialize_with = "explicit")]
    second_version: Option<Option<i32>>,
    second_weight: Option<i32>,
    description: Option<String>,
    #[serde(default, deserialize_with = "explicit")]
    shadow_version: Option<Option<i32>>,
    shadow_percent: Option<i32>,
}

impl From<AliasBody> for AliasInput {
    fn from(b: AliasBody) -> Self {
        AliasInput {
            name: b.name,
            version: b.version,
            second_version: b.second_version,
            second_weight: b.second_weight,
            description: b.description,
            shadow_version: b.shadow_version,
            shadow_percent: b.shadow_percent,
        }
    }
}

pub async fn create(
    data: State,
    caller: Caller,
    path: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    caller.authorize(&data, "function_alias:create")?;
    let scope = caller.object_scope(&data)?;
    let b: AliasBody = body::json(&req, payload, data.api.max_json_body_bytes).await?;
    let key = path.into_inner();
    let alias = state(&data)
        .db(move |conn| aliases::create(conn, &scope, &key, b.into()))
        .await?;
    Ok(HttpResponse::Created().json(json!({ "alias": AliasView::from(alias) })))
}

pub async fn list(
    data: State,
    caller: Caller,
    path: web::Path<String>,
    req: HttpRequest,
) -> ApiResult<HttpResponse> {
    caller.authorize(&data, "function_alias:list")?;
    let scope = caller.object_scope(&data)?;
    let query = Query::parse(&req, &[])?;
    let page = query.page::<String>(
        &["name"],
        data.api.default_page_limit,
        data.api.max_page_limit,
    )?;
    let key = path.into_inner();
    let found = state(&data)
        .db(move |conn| aliases::list(conn, &scope, &key, &page))
        .await?;
    let body = list_body(
        &data.base_url,
        &req,
        "aliases",
        found,
        |a| a.name.clone(),
        AliasView::from,
    );
    Ok(HttpResponse::Ok().json(body))
}

pub async fn show(
    data: State,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    caller.authorize(&data, "function_alias:show")?;
    let scope = caller.object_scope(&data)?;
    let (key, name) = path.into_inner();
    let alias = state(&data)
        .db(move |conn| aliases::get(conn, &scope, &key, &name))
        .await?;
    Ok(HttpResponse::Ok().json(json!({ "alias": AliasView::from(alias) })))
}

pub async fn update(
    data: State,
    caller: Caller,
    path: web::Path<(String, String)>,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    caller.authorize(&data, "function_alias:update")?;
    let scope = caller.object_scope(&data)?;
    let b: AliasBody = body::json(&req, payload, data.api.max_json_body_bytes).await?;
    if b.name.is_some() {
        return Err(crate::http::error::ApiError::bad_request(
            "an alias cannot be renamed",
        ));
    }
    let (key, name) = path.into_inner();
    let alias = state(&data)
        .db(move |conn| aliases::update(conn, &scope, &key, &name, b.into()))
        .await?;
    state(&data).forget_targets(alias.function_id);
    Ok(HttpResponse::Ok().json(json!({ "alias": AliasView::from(alias) })))
}

pub async fn delete(
    data: State,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    caller.authorize(&data, "function_alias:delete")?;
    let scope = caller.object_scope(&data)?;
    let (key, name) = path.into_inner();
    state(&data)
        .db(move |conn| aliases::delete(conn, &scope, &key, &name))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

pub async fn comparison(
    data: State,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    caller.authorize(&data, "function_alias:comparison")?;
    let scope = caller.object_scope(&data)?;
    let (key, name) = path.into_inner();
    let (alias, current, sample) = state(&data)
        .db(move |conn| aliases::comparison(conn, &scope, &key, &name))
        .await?;
    Ok(HttpResponse::Ok().json(json!({
        "comparison": ComparisonView::new(alias, current, sample)
    })))
}
