//! `POST /v1/webhooks/{token}`: a webhook trigger called from outside, without a Keystone
//! token. The unguessable token names the trigger; when the trigger has a secret, the call
//! must carry `X-Fresco-Signature: sha256=<hex HMAC-SHA256 of the body under the secret>`,
//! compared in constant time: a missing or wrong one is a 401 and nothing runs. The trigger's
//! rate limit (calls per minute, shared by the API replicas) answers 429 beyond it. The
//! function gets the request's method, headers, query and body in its event, merged over the
//! trigger's fixed input; a sync trigger answers with the function's result, else 202 with the
//! queued execution.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use hmac::{Hmac, Mac};
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use sha2::Sha256;

use super::invoke::{failed_open_header, pre_hooks, run_sync};
use super::{state, State};
use crate::command::Invocations;
use crate::domain::invoke::Selector;
use crate::domain::triggers;
use crate::http::body;
use crate::http::error::{ApiError, ApiResult};
use crate::http::views::ExecutionView;
use crate::invoke::TargetKey;
use fresco_store::queue::merge_event;
use fresco_store::triggers::Trigger;
use fresco_store::Scope;

/// The header that carries a signed call's signature.
pub const SIGNATURE_HEADER: &str = "x-fresco-signature";
/// Largest webhook body.
const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Whether `signature` (`sha256=<hex>`) is the HMAC-SHA256 of `body` under `secret`. The
/// comparison is constant-time (`Mac::verify_slice`).
pub fn signature_matches(secret: &str, body: &[u8], signature: Option<&[u8]>) -> bool {
    let Some(hex_digest) = signature.and_then(|s| s.strip_prefix(b"sha256=")) else {
        return false;
    };
    let Ok(expected) = hex::decode(hex_digest) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

/// The function's event: the request's method, headers (lower-case names; the signature's
/// too), query and body (JSON when it parses as JSON, else text), with the trigger.
fn event(trigger: &Trigger, req: &HttpRequest, bytes: &[u8]) -> Value {
    let mut headers = Map::new();
    for (name, value) in req.headers() {
        if let Ok(text) = value.to_str() {
            headers.insert(name.as_str().to_owned(), Value::String(text.to_owned()));
        }
    }
    let query: Map<String, Value> =
        serde_urlencoded::from_str::<Vec<(String, String)>>(req.query_string())
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
    };
    let own: Map<String, Value> = [
        (
            "trigger".to_owned(),
            json!({"id": trigger.id, "name": trigger.name, "type": "webhook"}),
        ),
        ("method".to_owned(), Value::String(req.method().to_string())),
        ("headers".to_owned(), Value::Object(headers)),
        ("query".to_owned(), Value::Object(query)),
        ("body".to_owned(), body),
    ]
    .into_iter()
    .collect();
    merge_event(&trigger.input, own)
}

fn unauthorized() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        format!("the call must be signed: {SIGNATURE_HEADER}: sha256=<HMAC-SHA256 of the body>"),
    )
}

pub async fn call(
    data: State,
    path: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    let app = state(&data);
    let bytes = body::read(&req, payload, MAX_BODY_BYTES).await?;
    let token = path.into_inner();
    let trigger = app
        .db(move |conn| triggers::by_webhook(conn, &token))
        .await
        .inspect_err(|e| {
            if e.status == StatusCode::NOT_FOUND {
                app.metrics.webhook("not_found");
            }
        })?;
    if let Some(secret) = &trigger.secret {
        let signature = req.headers().get(SIGNATURE_HEADER).map(|v| v.as_bytes());
        if !signature_matches(secret, &bytes, signature) {
            app.metrics.webhook("unauthorized");
            return Err(unauthorized());
        }
    }
    let invoker = app.invoker.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "invocations are not configured",
        )
    })?;
    let counted = trigger.clone();
    app.db(move |conn| triggers::take_webhook_call(conn, &counted))
        .await
        .inspect_err(|e| {
            if e.status == StatusCode::TOO_MANY_REQUESTS {
                app.metrics.webhook("rate_limited");
            }
        })?;
    let event = event(&trigger, &req, &bytes);
    let event = RawValue::from_string(event.to_string())
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let selector = match (trigger.function_version, &trigger.alias) {
        (Some(n), _) => Selector::Version(n),
        (None, Some(alias)) => Selector::Alias(alias.clone()),
        (None, None) => Selector::Latest,
    };
    let key: TargetKey = (
        Scope::Project(trigger.project_id.clone()),
        trigger.function_id.to_string(),
        selector,
    );
    let roll = rand::random_range(0..100);
    let invocations = Invocations {
        pool: &app.pool,
        invoker,
        quota: &app.quota,
        allowed_image_prefixes: &app.api.allowed_image_prefixes,
    };
    if !trigger.sync {
        let target = invocations.target(&key, roll).await?;
        let (event, failed_open) = pre_hooks(&app, invoker, &target, event, true, "").await?;
        let queued = invocations.enqueue(&key, roll, &event).await?;
        app.metrics.accepted("webhook");
        app.metrics.webhook("accepted");
        let view = ExecutionView::from(queued).shown(false);
        let mut response = HttpResponse::Accepted();
        if !failed_open.is_empty() {
            response.insert_header(failed_open_header(&failed_open));
        }
        return Ok(response.json(json!({ "execution": view })));
    }
    let target = invocations.target(&key, roll).await?;
    app.metrics.webhook("ran");
    run_sync(&app, invoker, &target, event, false, "", None).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &str, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key");
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }

    #[test]
    fn only_the_body_signed_with_the_secret_passes() {
        let secret = "a-secret-of-sixteen";
        let body = br#"{"order": 42}"#;
        let good = sign(secret, body);
        assert!(signature_matches(secret, body, Some(good.as_bytes())));
        let wrong_secret = sign("another-secret-16", body);
        let other_body = sign(secret, b"{}");
        let upper = good.to_uppercase();
        for bad in [
            None,
            Some(""),
            Some("sha256="),
            Some(good.trim_start_matches("sha256=")),
            Some(wrong_secret.as_str()),
            Some(other_body.as_str()),
            Some(&good[..good.len() - 2]),
            Some("sha256=zz"),
            Some(upper.as_str()),
        ] {
            assert!(
                !signature_matches(secret, body, bad.map(str::as_bytes)),
                "{bad:?}"
            );
        }
    }
}
