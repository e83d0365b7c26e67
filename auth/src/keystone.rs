//! Validating tokens with Keystone, the keystonemiddleware way: the service authenticates as
//! its own user, then asks `GET /v3/auth/tokens` about each user token.
//!
//! The service's own password authentication is a plain `POST /v3/auth/tokens` with reqwest
//! (rustls) rather than the `openstack` crate: the validator needs the raw service token (for
//! `X-Auth-Token`), its issue and expiry times (to renew it ahead of expiry with Keystone's
//! clock, not ours), and the power to drop it the moment Keystone answers 401 — the crate's
//! session hides all three, and it cannot validate another user's token anyway.

use std::collections::HashMap;
use std::error::Error as _;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use fresco_common::conf::KeystoneAuthtokenSection;
use reqwest::header::HeaderValue;
use reqwest::StatusCode;
use serde::Deserialize;

use crate::context::normalize_roles;
use crate::{AuthError, Context, TokenValidator};

/// Longest token sent to Keystone; longer ones are invalid without asking.
const MAX_TOKEN_LEN: usize = 8192;

/// The service token is renewed this long before it expires (or at half its life if shorter).
const RENEW_MARGIN: Duration = Duration::from_secs(60);

/// Where and as whom the service authenticates (the `[keystone_authtoken]` options).
#[derive(Clone)]
pub struct KeystoneConfig {
    /// Keystone v3 endpoint, e.g. `http://127.0.0.1:5000/v3`.
    pub auth_url: String,
    pub username: String,
    pub password: String,
    pub user_domain_name: String,
    pub project_name: String,
    pub project_domain_name: String,
    /// Limit for each request to Keystone, connecting included.
    pub timeout: Duration,
    /// Roles that mark a validated token as a service's.
    pub service_token_roles: Vec<String>,
    /// PEM bundle of extra CAs trusted for Keystone's TLS certificate.
    pub cafile: Option<String>,
}

impl KeystoneConfig {
    pub fn from_section(section: &KeystoneAuthtokenSection) -> Self {
        Self {
            auth_url: section.auth_url.clone(),
            username: section.username.clone(),
            password: section.password.clone(),
            user_domain_name: section.user_domain_name.clone(),
            project_name: section.project_name.clone(),
            project_domain_name: section.project_domain_name.clone(),
            timeout: Duration::from_secs(section.http_request_timeout.max(1)),
            service_token_roles: section.service_token_roles.clone(),
            cafile: Some(section.cafile.clone()).filter(|f| !f.is_empty()),
        }
    }
}

impl fmt::Debug for KeystoneConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeystoneConfig")
            .field("auth_url", &self.auth_url)
            .field("username", &self.username)
            .field("password", &"***")
            .field("user_domain_name", &self.user_domain_name)
            .field("project_name", &self.project_name)
            .field("project_domain_name", &self.project_domain_name)
            .field("timeout", &self.timeout)
            .field("service_token_roles", &self.service_token_roles)
            .field("cafile", &self.cafile)
            .finish()
    }
}

/// Calls made to Keystone, as a snapshot. A request resent once after a connection failure
/// counts once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeystoneStats {
    /// `GET /v3/auth/tokens` requests sent (retries after a service re-authentication included).
    pub validations: u64,
    /// `POST /v3/auth/tokens` requests sent for the service's own token.
    pub service_auths: u64,
}

impl KeystoneStats {
    /// Every request sent to Keystone.
    pub fn calls(&self) -> u64 {
        self.validations + self.service_auths
    }
}

/// After a failed service authentication, callers fail at once for this long instead of
/// queueing behind one more attempt each (a black-holed Keystone would stack timeouts).
const AUTH_RETRY_AFTER: Duration = Duration::from_secs(1);

struct ServiceToken {
    token: Arc<str>,
    renew_at: Instant,
}

#[derive(Default)]
struct ServiceState {
    token: Option<ServiceToken>,
    /// When the last authentication failed, and why.
    failed: Option<(Instant, AuthError)>,
}

/// Validates every token with Keystone, uncached: put it behind a
/// [`CachingValidator`](crate::CachingValidator).
pub struct KeystoneValidator {
    http: reqwest::Client,
    config: KeystoneConfig,
    auth_tokens_url: String,
    validate_url: String,
    service_roles: Vec<String>,
    service: tokio::sync::Mutex<ServiceState>,
    validations: AtomicU64,
    service_auths: AtomicU64,
}

impl KeystoneValidator {
    pub fn new(config: KeystoneConfig) -> Result<Self, AuthError> {
        let base = config.auth_url.trim_end_matches('/');
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(AuthError::Config(format!(
                "[keystone_authtoken] auth_url must be an http or https url, got {:?}",
                config.auth_url
            )));
        }
        if config.password.is_empty() {
            return Err(AuthError::Config(
                "[keystone_authtoken] password is empty: the service cannot authenticate".into(),
            ));
        }
        let mut builder = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .pool_idle_timeout(Duration::from_secs(30));
        if let Some(path) = &config.cafile {
            let pem = std::fs::read(path).map_err(|e| {
                AuthError::Config(format!("[keystone_authtoken] cafile {path}: {e}"))
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                AuthError::Config(format!("[keystone_authtoken] cafile {path}: {e}"))
            })?;
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .build()
            .map_err(|e| AuthError::Config(format!("cannot build the http client: {e}")))?;
        Ok(Self {
            http,
            auth_tokens_url: format!("{base}/auth/tokens?nocatalog"),
            validate_url: format!("{base}/auth/tokens?allow_expired=false&nocatalog"),
            service_roles: config
                .service_token_roles
                .iter()
                .map(|r| r.to_ascii_lowercase())
                .collect(),
            config,
            service: tokio::sync::Mutex::new(ServiceState::default()),
            validations: AtomicU64::new(0),
            service_auths: AtomicU64::new(0),
        })
    }

    pub fn stats(&self) -> KeystoneStats {
        KeystoneStats {
            validations: self.validations.load(Ordering::Relaxed),
            service_auths: self.service_auths.load(Ordering::Relaxed),
        }
    }

    /// The service's own token, authenticating first if there is none or it is about to expire.
    /// Concurrent callers wait for one authentication.
    async fn service_token(&self) -> Result<Arc<str>, AuthError> {
        let mut state = self.service.lock().await;
        let now = Instant::now();
        if let Some(service) = &state.token {
            if now < service.renew_at {
                return Ok(service.token.clone());
            }
        }
        if let Some((at, error)) = &state.failed {
            if now < *at + AUTH_RETRY_AFTER {
                return Err(error.clone());
            }
        }
        match self.authenticate_service().await {
            Ok(fresh) => {
                let token = fresh.token.clone();
                state.token = Some(fresh);
                state.failed = None;
                Ok(token)
            }
            Err(error) => {
                state.failed = Some((Instant::now(), error.clone()));
                Err(error)
            }
        }
    }

    /// Drops the service token `used` (unless another caller replaced it already).
    async fn forget_service_token(&self, used: &Arc<str>) {
        let mut state = self.service.lock().await;
        if state
            .token
            .as_ref()
            .is_some_and(|s| Arc::ptr_eq(&s.token, used))
        {
            state.token = None;
        }
    }

    async fn authenticate_service(&self) -> Result<ServiceToken, AuthError> {
        let c = &self.config;
        let body = serde_json::json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": c.username, "domain": {"name": c.user_domain_name}, "password": c.password,
            }}},
            "scope": {"project": {"name": c.project_name, "domain": {"name": c.project_domain_name}}},
        }});
        self.service_auths.fetch_add(1, Ordering::Relaxed);
        let response = self
            .send(self.http.post(&self.auth_tokens_url).json(&body))
            .await?;
        let status = response.status();
        if status != StatusCode::CREATED && status != StatusCode::OK {
            return Err(AuthError::KeystoneUnavailable(format!(
                "keystone refused to authenticate the service user {:?} ({status})",
                c.username
            )));
        }
        let token = response
            .headers()
            .get("x-subject-token")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .map(Arc::<str>::from)
            .ok_or_else(|| {
                AuthError::KeystoneUnavailable(
                    "keystone issued the service token without x-subject-token".into(),
                )
            })?;
        let body = response
            .bytes()
            .await
            .map_err(|e| unreachable(&self.config.auth_url, &e))?;
        let doc: ServiceTokenDocument = serde_json::from_slice(&body).map_err(|e| {
            AuthError::KeystoneUnavailable(format!("unexpected service token document: {e}"))
        })?;
        let expires_at = parse_time(&doc.token.expires_at)?;
        let issued_at = match &doc.token.issued_at {
            Some(at) => parse_time(at)?,
            None => Utc::now(),
        };
        // Keystone's clock for the lifetime, ours for the deadline: skew does not matter.
        let lifetime = (expires_at - issued_at).to_std().unwrap_or(Duration::ZERO);
        let renew_at = Instant::now() + lifetime.saturating_sub(RENEW_MARGIN.min(lifetime / 2));
        log::info!(
            "authenticated to keystone as {:?}; service token valid for {}s",
            c.username,
            lifetime.as_secs()
        );
        Ok(ServiceToken { token, renew_at })
    }

    /// Sends a request, once more if the connection failed before an answer came (a pooled
    /// connection the server had closed, a restart): not after a timeout.
    async fn send(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response, AuthError> {
        let again = request.try_clone();
        let result = match (request.send().await, again) {
            (Err(e), Some(again)) if !e.is_timeout() && (e.is_connect() || e.is_request()) => {
                log::debug!("keystone request failed ({e}); trying once more");
                again.send().await
            }
            (result, _) => result,
        };
        result.map_err(|e| unreachable(&self.config.auth_url, &e))
    }

    /// One validation call with the service token `service`.
    async fn check(&self, service: &str, token: &str) -> Result<Checked, AuthError> {
        self.validations.fetch_add(1, Ordering::Relaxed);
        let request = self
            .http
            .get(&self.validate_url)
            .header("x-auth-token", service)
            .header("x-subject-token", token);
        let response = self.send(request).await?;
        let status = response.status();
        match status {
            StatusCode::OK => {
                let body = response
                    .bytes()
                    .await
                    .map_err(|e| unreachable(&self.config.auth_url, &e))?;
                Ok(Checked::Answer(Box::new(parse_token(
                    &body,
                    &self.service_roles,
                ))))
            }
            StatusCode::UNAUTHORIZED => Ok(Checked::ServiceRejected),
            StatusCode::NOT_FOUND => Ok(Checked::Answer(Box::new(Err(AuthError::InvalidToken)))),
            StatusCode::FORBIDDEN => Err(AuthError::KeystoneUnavailable(format!(
                "keystone does not let the service user {:?} validate tokens (403): \
                 give it the service role",
                self.config.username
            ))),
            s if s.is_server_error() => Err(AuthError::KeystoneUnavailable(format!(
                "keystone answered {s} to a token validation"
            ))),
            _ => Ok(Checked::Answer(Box::new(Err(AuthError::InvalidToken)))),
        }
    }
}

enum Checked {
    /// Keystone's answer about the subject token.
    Answer(Box<Result<Context, AuthError>>),
    /// Keystone refused the service token (401).
    ServiceRejected,
}

impl TokenValidator for KeystoneValidator {
    async fn validate(&self, token: &str) -> Result<Context, AuthError> {
        if token.is_empty() || token.len() > MAX_TOKEN_LEN || HeaderValue::from_str(token).is_err()
        {
            return Err(AuthError::InvalidToken);
        }
        let service = self.service_token().await?;
        match self.check(&service, token).await? {
            Checked::Answer(answer) => *answer,
            Checked::ServiceRejected => {
                log::info!("keystone refused the service token; authenticating again");
                self.forget_service_token(&service).await;
                let service = self.service_token().await?;
                match self.check(&service, token).await? {
                    Checked::Answer(answer) => *answer,
                    // A fresh service token refused too: the subject token is what Keystone
                    // objects to.
                    Checked::ServiceRejected => Err(AuthError::InvalidToken),
                }
            }
        }
    }
}

fn unreachable(url: &str, err: &reqwest::Error) -> AuthError {
    let mut message = format!("cannot reach keystone at {url}");
    if err.is_timeout() {
        message.push_str(": timed out");
    }
    let mut source = err.source();
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    AuthError::KeystoneUnavailable(message)
}

fn parse_time(text: &str) -> Result<DateTime<Utc>, AuthError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            AuthError::KeystoneUnavailable(format!("unexpected time {text:?} from keystone: {e}"))
        })
}

#[derive(Deserialize)]
struct ServiceTokenDocument {
    token: ServiceTokenBody,
}

#[derive(Deserialize)]
struct ServiceTokenBody {
    expires_at: String,
    issued_at: Option<String>,
}

#[derive(Deserialize)]
struct TokenDocument {
    token: TokenBody,
}

#[derive(Deserialize)]
struct TokenBody {
    expires_at: String,
    user: Named,
    project: Option<Named>,
    #[serde(default)]
    roles: Vec<Role>,
    system: Option<HashMap<String, serde_json::Value>>,
    /// Set by Keystone when its admin project is configured.
    is_admin_project: Option<bool>,
}

#[derive(Deserialize)]
struct Named {
    id: String,
    #[serde(default)]
    name: String,
    domain: Option<Domain>,
}

#[derive(Deserialize)]
struct Domain {
    id: String,
}

#[derive(Deserialize)]
struct Role {
    name: String,
}

/// Builds the context from Keystone's token document (the body of `GET /v3/auth/tokens`).
pub(crate) fn parse_token(body: &[u8], service_roles: &[String]) -> Result<Context, AuthError> {
    let doc: TokenDocument = serde_json::from_slice(body).map_err(|e| {
        AuthError::KeystoneUnavailable(format!("unexpected token document from keystone: {e}"))
    })?;
    let token = doc.token;
    let expires_at = parse_time(&token.expires_at)?;
    if expires_at <= Utc::now() {
        return Err(AuthError::InvalidToken);
    }
    let system_scope = token.system.and_then(|scopes| {
        scopes
            .into_iter()
            .find(|(_, on)| on.as_bool() == Some(true))
            .map(|(scope, _)| scope)
    });
    if token.project.is_none() && system_scope.is_none() {
        return Err(AuthError::Unscoped);
    }
    let roles = normalize_roles(token.roles.iter().map(|r| r.name.as_str()));
    let is_service = roles.iter().any(|r| service_roles.contains(r));
    let is_admin_project = token.project.is_some() && token.is_admin_project == Some(true);
    let (project_id, project_name, project_domain_id) = match token.project {
        Some(p) => (Some(p.id), Some(p.name), p.domain.map(|d| d.id)),
        None => (None, None, None),
    };
    Ok(Context {
        user_id: token.user.id,
        user_name: token.user.name,
        user_domain_id: token.user.domain.map(|d| d.id).unwrap_or_default(),
        project_id,
        project_name,
        project_domain_id,
        roles,
        system_scope,
        is_admin_project,
        expires_at,
        is_service,
    })
}

#[cfg(test)]
mod tests;
