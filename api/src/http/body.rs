//! Request bodies: size limits enforced before and while reading, JSON errors that name the
//! field, and multipart uploads (metadata + package).

use actix_web::http::header;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

use super::error::{ApiError, ApiResult};

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request body is larger than {limit} bytes"),
    )
}

/// The declared Content-Length, when there is one.
fn content_length(req: &HttpRequest) -> Option<usize> {
    req.headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// Reads the whole body, refusing (413) as soon as it is known to exceed `limit`: before
/// reading anything when Content-Length says so, otherwise at the first byte too many.
pub async fn read(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> ApiResult<web::Bytes> {
    if content_length(req).is_some_and(|n| n > limit) {
        return Err(too_large(limit));
    }
    let mut body = web::BytesMut::with_capacity(content_length(req).unwrap_or(0).min(limit));
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::bad_request(format!("cannot read request body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(too_large(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Whether the request says it carries JSON (a missing Content-Type is taken as JSON).
pub fn require_json(req: &HttpRequest) -> ApiResult<()> {
    match req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        None => Ok(()),
        Some(ct) if ct.starts_with("application/json") => Ok(()),
        Some(ct) => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("expected application/json, got {ct}"),
        )),
    }
}

/// Parses JSON; the error names the field at fault (`memory_mb: invalid type: ...`).
/// Strings (and keys) holding U+0000 are refused: PostgreSQL text cannot store them.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> ApiResult<T> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let parsed = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        if path == "." || path == "?" || path.is_empty() {
            ApiError::bad_request(format!("invalid request body: {inner}"))
        } else {
            ApiError::bad_request(format!("invalid request body: {path}: {inner}"))
        }
    })?;
    // Valid JSON can only carry U+0000 as the escape `\u0000`: a cheap filter before the walk.
    if bytes.windows(5).any(|w| w == b"u0000") {
        if let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes) {
            if let Some(path) = nul_path(&value) {
                let at = if path.is_empty() {
                    String::new()
                } else {
                    format!("{path}: ")
                };
                return Err(ApiError::bad_request(format!(
                    "invalid request body: {at}strings must not contain a NUL character"
                )));
            }
        }
    }
    Ok(parsed)
}

/// Where the first string or key holding U+0000 is (`environment.A`, `""` for the root).
fn nul_path(value: &serde_json::Value) -> Option<String> {
    use serde_json::Value;
    let join = |outer: &str, inner: String| match (outer.is_empty(), inner.is_empty()) {
        (true, _) => inner,
        (false, true) => outer.to_owned(),
        (false, false) => format!("{outer}.{inner}"),
    };
    match value {
        Value::String(s) => s.contains('\0').then(String::new),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| nul_path(item).map(|inner| join(&format!("[{i}]"), inner))),
        Value::Object(fields) => fields.iter().find_map(|(key, item)| {
            if key.contains('\0') {
                return Some(key.replace('\0', "\\0"));
            }
            nul_path(item).map(|inner| join(key, inner))
        }),
        _ => None,
    }
}

/// Reads and parses a JSON body.
pub async fn json<T: DeserializeOwned>(
    req: &HttpRequest,
    payload: web::Payload,
    limit: usize,
) -> ApiResult<T> {
    require_json(req)?;
    let bytes = read(req, payload, limit).await?;
    parse_json(&bytes)
}

/// The parts of a function upload.
#[derive(Default)]
pub struct Upload {
    pub metadata: Option<web::Bytes>,
    pub package: Option<Vec<u8>>,
}

pub fn is_multipart(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("multipart/form-data"))
}

/// Reads a multipart upload with parts `metadata` (JSON) and `package` (archive), each
/// within its own limit; other parts are refused.
pub async fn multipart(
    req: &HttpRequest,
    payload: web::Payload,
    json_limit: usize,
    package_limit: usize,
) -> ApiResult<Upload> {
    let total_limit = json_limit + package_limit + 64 * 1024;
    if content_length(req).is_some_and(|n| n > total_limit) {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("package is larger than {package_limit} bytes"),
        ));
    }
    let mut parts = actix_multipart::Multipart::new(req.headers(), payload);
    let mut upload = Upload::default();
    while let Some(field) = parts.next().await {
        let mut field =
            field.map_err(|e| ApiError::bad_request(format!("invalid multipart body: {e}")))?;
        let name = field.name().unwrap_or_default().to_owned();
        let limit = match name.as_str() {
            "metadata" => json_limit,
            "package" => package_limit,
            other => {
                return Err(ApiError::bad_request(format!(
                    "unexpected multipart part {other:?}"
                )))
            }
        };
        let mut data = Vec::new();
        while let Some(chunk) = field.next().await {
            let chunk =
                chunk.map_err(|e| ApiError::bad_request(format!("invalid multipart body: {e}")))?;
            if data.len() + chunk.len() > limit {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("{name} is larger than {limit} bytes"),
                ));
            }
            data.extend_from_slice(&chunk);
        }
        match name.as_str() {
            "metadata" => upload.metadata = Some(web::Bytes::from(data)),
            _ => upload.package = Some(data),
        }
    }
    Ok(upload)
}
