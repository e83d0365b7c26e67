//! The one place errors become HTTP responses: `{"error": {"code", "title", "message"}}`,
//! the body keystoneauth (and so the openstack CLI) reads.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::domain::DomainError;

/// An error on its way out as a response.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// `WWW-Authenticate` for 401s.
    pub www_authenticate: Option<String>,
    /// `Retry-After` seconds for 429s and some 503s.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            www_authenticate: None,
            retry_after: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.status.as_u16(), self.message)
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: Fault<'a>,
}

#[derive(Serialize)]
struct Fault<'a> {
    code: u16,
    title: &'a str,
    message: &'a str,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        if self.status.is_server_error() {
            log::warn!("answering {}: {}", self.status.as_u16(), self.message);
        }
        let mut response = HttpResponse::build(self.status);
        if let Some(value) = self
            .www_authenticate
            .as_deref()
            .and_then(|v| HeaderValue::from_str(v).ok())
        {
            response.insert_header((header::WWW_AUTHENTICATE, value));
        }
        if let Some(seconds) = self.retry_after {
            response.insert_header((header::RETRY_AFTER, seconds.to_string()));
        }
        response.json(Body {
            error: Fault {
                code: self.status.as_u16(),
                title: self.status.canonical_reason().unwrap_or("Error"),
                message: &self.message,
            },
        })
    }
}

/// `Retry-After` of a refusal by a quota on waiting work: the queue drains at the platform's
/// pace, so ask for a short wait rather than promise a time.
const THROTTLED_RETRY_AFTER_S: u64 = 1;

impl From<DomainError> for ApiError {
    fn from(error: DomainError) -> Self {
        let status = match &error {
            DomainError::Invalid(_) => StatusCode::BAD_REQUEST,
            DomainError::NotFound { .. } => StatusCode::NOT_FOUND,
            DomainError::Conflict(_) => StatusCode::CONFLICT,
            DomainError::QuotaExceeded(_) => StatusCode::FORBIDDEN,
            DomainError::Throttled(_) | DomainError::RateLimited { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            DomainError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            DomainError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            DomainError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let retry_after = match &error {
            DomainError::RateLimited { retry_after, .. } => *retry_after,
            _ => THROTTLED_RETRY_AFTER_S,
        };
        let message = match error {
            // Internal details go to the log, not to the caller.
            DomainError::Internal(detail) => {
                log::error!("internal error: {detail}");
                "internal error".to_owned()
            }
            DomainError::Unavailable(detail) => {
                log::warn!("{detail}");
                "service temporarily unavailable: database unreachable".to_owned()
            }
            other => other.to_string(),
        };
        let mut error = ApiError::new(status, message);
        if status == StatusCode::TOO_MANY_REQUESTS {
            error.retry_after = Some(retry_after);
        }
        error
    }
}

impl From<crate::hooks::HookError> for ApiError {
    /// A rejection is the status the hook chose (403 by default) with its reason; a fail-closed
    /// hook is a 502 (a function the platform chained in failed, not the caller's request).
    fn from(error: crate::hooks::HookError) -> Self {
        use crate::hooks::HookError;
        let status = match &error {
            HookError::Rejected { status, .. } => {
                StatusCode::from_u16(*status).unwrap_or(StatusCode::FORBIDDEN)
            }
            HookError::FailedClosed { .. } => StatusCode::BAD_GATEWAY,
        };
        ApiError::new(status, error.to_string())
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
