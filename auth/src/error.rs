//! What can go wrong while authenticating a caller.

/// Why a caller could not be authenticated.
///
/// How the HTTP edge maps them (this crate knows no HTTP):
///
/// | variant | status | note |
/// | --- | --- | --- |
/// | `MissingToken`, `InvalidToken` | 401 | with `WWW-Authenticate: Keystone uri="…"` ([`crate::Authenticator::www_authenticate_header`]) |
/// | `Unscoped` | 403 | the identity is genuine but the token is scoped to no project and not to the system: re-authenticating the same way would not help, a differently scoped token would |
/// | `KeystoneUnavailable` | 503 | Keystone unreachable, timing out, failing, or refusing the service's own credentials |
/// | `Config` | startup error | never returned by `validate` |
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("authentication required: no x-auth-token given")]
    MissingToken,
    #[error("the token is invalid or has expired")]
    InvalidToken,
    #[error("the token is not scoped to a project: ask for a project-scoped token")]
    Unscoped,
    #[error("identity service unavailable: {0}")]
    KeystoneUnavailable(String),
    #[error("authentication configuration: {0}")]
    Config(String),
}

impl AuthError {
    /// Whether the answer says something about the token itself, and may be cached as such.
    pub(crate) fn is_about_token(&self) -> bool {
        matches!(self, Self::InvalidToken | Self::Unscoped)
    }
}
