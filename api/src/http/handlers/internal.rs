//! Endpoints for Fresco's own services, never for tenants.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use super::{state, State};
use crate::domain::functions;
use crate::http::error::{ApiError, ApiResult};

/// `GET /internal/v1/code/{sha256}`: an agent fetches the package a ticket names. The ticket
/// (signed by the control plane) must name this very package, so an agent can only read code
/// it was asked to run.
pub async fn code(
    data: State,
    path: web::Path<String>,
    req: HttpRequest,
) -> ApiResult<HttpResponse> {
    let unauthorized = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "a valid execution ticket is required",
        )
    };
    let verifier = data.tickets.as_ref().ok_or_else(unauthorized)?;
    let token = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(unauthorized)?;
    let claims = verifier.verify(token, None).map_err(|_| unauthorized())?;
    let sha = path.into_inner();
    if claims.spec.code_sha256.as_deref() != Some(sha.as_str()) {
        return Err(ApiError::forbidden("the ticket does not name this package"));
    }
    let project = claims.spec.project_id;
    let (format, bytes) = state(&data)
        .db(move |conn| functions::code_package(conn, &project, &sha))
        .await?;
    Ok(HttpResponse::Ok()
        .content_type(format.content_type())
        .insert_header(("x-fresco-code-format", format.as_str()))
        .body(bytes))
}
