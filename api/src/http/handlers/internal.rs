//! Endpoints for Fresco's own services, never for tenants.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use super::{state, State};
use crate::domain::functions;
use crate::http::error::{ApiError, ApiResult};

/// Header carrying the execution ticket on a code download.
const TICKET_HEADER: &str = "x-fresco-ticket";

/// `GET /internal/v1/code/{sha256}`: an agent fetches the package a ticket (or a grant) names.
/// Two proofs:
/// the execution ticket (`X-Fresco-Ticket`, signed by the scheduler) must name this very
/// package, and the bearer token must be a code-download token signed with the enrolled key of
/// the agent the ticket is for, for this package and this ticket. So only the agent a ticket
/// names can read the code that ticket runs, and nothing else.
pub async fn code(
    data: State,
    path: web::Path<String>,
    req: HttpRequest,
) -> ApiResult<HttpResponse> {
    let unauthorized = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "an execution ticket and the named agent's code-download token are required",
        )
    };
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let verifier = data.tickets.as_ref().ok_or_else(unauthorized)?;
    let token = header("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(unauthorized)?;
    let ticket = header(TICKET_HEADER).ok_or_else(unauthorized)?;
    // An execution ticket, or a grant (a cold start under a grant): the agent it names, what
    // it runs, and the id the code-download token is bound to.
    let (aud, spec, id) = match verifier.verify(ticket, None) {
        Ok(claims) => (claims.aud, claims.spec, claims.jti),
        Err(ticket_error) => match verifier.verify_grant_for(ticket, None) {
            Ok(grant) => (grant.aud, grant.spec, grant.sub),
            Err(e) => {
                log::warn!("code download refused: {ticket_error}; as a grant: {e}");
                return Err(unauthorized());
            }
        },
    };
    let sha = path.into_inner();
    if spec.code_sha256.as_deref() != Some(sha.as_str()) {
        return Err(ApiError::forbidden("the ticket does not name this package"));
    }
    let enrolment = data.agents.get(&aud).map_err(|e| {
        log::warn!("code download for agent {aud} refused: {e}");
        unauthorized()
    })?;
    enrolment
        .key
        .verify_code_download(&aud, token, &sha, id)
        .map_err(|e| {
            log::warn!("code download for agent {aud} refused: {e}");
            unauthorized()
        })?;
    let project = spec.project_id;
    let (format, bytes) = state(&data)
        .db(move |conn| functions::code_package(conn, &project, &sha))
        .await?;
    Ok(HttpResponse::Ok()
        .content_type(format.content_type())
        .insert_header(("x-fresco-code-format", format.as_str()))
        .body(bytes))
}
