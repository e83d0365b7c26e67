//! `/v1/agents` (admin)

use actix_web::HttpResponse;
use serde_json::json;

use super::{state, State};
use crate::domain::agents;
use crate::http::auth::Caller;
use crate::http::error::ApiResult;
use crate::http::views;

pub async fn list(data: State, caller: Caller) -> ApiResult<HttpResponse> {
    caller.authorize(&data, "agent:list")?;
    let down_after = data.agent_down_after;
    let found = state(&data)
        .db(move |conn| agents::list(conn, down_after))
        .await?;
    let items: Vec<serde_json::Value> = found.into_iter().map(views::agent).collect();
    Ok(HttpResponse::Ok().json(json!({ "agents": items })))
}
