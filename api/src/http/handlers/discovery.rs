//! Version discovery and health: the only unauthenticated endpoints.

use actix_web::HttpResponse;
use serde_json::json;

use super::{state, State};

fn version(base: &str) -> serde_json::Value {
    json!({
        "id": "v1.0",
        "status": "CURRENT",
        "min_version": "",
        "version": "",
        "updated": "2026-11-27T00:00:00Z",
        "links": [{"rel": "self", "href": format!("{base}/v1/")}],
        "media-types": [{"base": "application/json", "type": "application/vnd.openstack.function-v1+json"}],
    })
}

pub async fn versions(data: State) -> HttpResponse {
    HttpResponse::Ok().json(json!({ "versions": [version(&data.base_url)] }))
}

pub async fn v1(data: State) -> HttpResponse {
    HttpResponse::Ok().json(json!({ "version": version(&data.base_url) }))
}

/// 200 when the database answers, 503 otherwise (load balancers take the replica out).
pub async fn healthcheck(data: State) -> HttpResponse {
    let app = state(&data);
    let checked = app
        .db(|conn| fresco_store::ping(conn).map_err(crate::domain::DomainError::from))
        .await;
    match checked {
        Ok(_) => HttpResponse::Ok().json(json!({"status": "ok"})),
        Err(e) => HttpResponse::ServiceUnavailable()
            .json(json!({"status": "unavailable", "reason": e.message})),
    }
}

/// `GET /metrics`: Prometheus metrics (text format), without a token: aggregate figures only.
pub async fn metrics(data: State) -> HttpResponse {
    let app = state(&data);
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(app.metrics.render(app.auth.stats()))
}
