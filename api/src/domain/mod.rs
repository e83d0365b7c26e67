//! The API's rules: validation, quotas, versioning, aliases. Plain Rust over the storage
//! modules; no HTTP here. Every operation takes the `Scope` it acts in, decided by the caller
//! (the HTTP layer, after policy), and never widens it.

pub mod agents;
pub mod aliases;
pub mod event_configs;
pub mod executions;
pub mod functions;
pub mod hooks;
pub mod invoke;
pub mod pipelines;
pub mod quotas;
pub mod runtimes;
pub mod triggers;
pub mod validate;
pub mod versions;

use fresco_store::{DbError, PgConnection};

/// Why a domain operation failed. Mapped to HTTP in exactly one place (`http::error`).
#[derive(Debug, Clone, thiserror::Error)]
pub enum DomainError {
    /// The request is malformed or breaks a rule; the message names the field.
    #[error("{0}")]
    Invalid(String),
    #[error("{kind} {id} could not be found")]
    NotFound { kind: &'static str, id: String },
    #[error("{0}")]
    Conflict(String),
    /// A count or size quota would be exceeded.
    #[error("{0}")]
    QuotaExceeded(String),
    /// A quota on work waiting to run (queued executions): try again later.
    #[error("{0}")]
    Throttled(String),
    /// A rate limit was reached: try again after `retry_after` seconds.
    #[error("{message}")]
    RateLimited { message: String, retry_after: u64 },
    /// The code-bytes quota, or a package over the size limit.
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

pub type DomainResult<T> = Result<T, DomainError>;

impl DomainError {
    pub fn invalid(message: impl Into<String>) -> Self {
        DomainError::Invalid(message.into())
    }
}

/// Maps a storage error, naming the object for a not-found and a duplicate.
pub(crate) fn db_error(
    kind: &'static str,
    id: impl ToString,
) -> impl FnOnce(DbError) -> DomainError {
    move |error| match error {
        DbError::NotFound => DomainError::NotFound {
            kind,
            id: id.to_string(),
        },
        DbError::Duplicate => {
            let article = if kind.starts_with(['a', 'e', 'i', 'o', 'u']) {
                "an"
            } else {
                "a"
            };
            DomainError::Conflict(format!(
                "{article} {kind} named {} already exists",
                id.to_string()
            ))
        }
        DbError::Conflict(what) => {
            DomainError::Conflict(format!("{kind} {}: {what}", id.to_string()))
        }
        DbError::Unavailable(why) => {
            DomainError::Unavailable(format!("database unavailable: {why}"))
        }
        DbError::InvalidText(_) => DomainError::Invalid(UNSTORABLE_TEXT.into()),
        DbError::Other(why) => DomainError::Internal(why),
    }
}

const UNSTORABLE_TEXT: &str =
    "the request contains a NUL character (U+0000), which cannot be stored";

/// Maps a storage error where no object is named (lists, counts).
impl From<DbError> for DomainError {
    fn from(error: DbError) -> Self {
        match error {
            DbError::NotFound => DomainError::NotFound {
                kind: "object",
                id: String::new(),
            },
            DbError::Duplicate => DomainError::Conflict("already exists".into()),
            DbError::Conflict(what) => DomainError::Conflict(what),
            DbError::Unavailable(why) => {
                DomainError::Unavailable(format!("database unavailable: {why}"))
            }
            DbError::InvalidText(_) => DomainError::Invalid(UNSTORABLE_TEXT.into()),
            DbError::Other(why) => DomainError::Internal(why),
        }
    }
}

/// Runs `f` in a transaction; storage errors inside become domain errors via `f` itself.
pub(crate) fn transaction<T>(
    conn: &mut PgConnection,
    f: impl FnOnce(&mut PgConnection) -> DomainResult<T>,
) -> DomainResult<T> {
    fresco_store::transaction(conn, f)
}
