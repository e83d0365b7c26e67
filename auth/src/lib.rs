//! Fresco's authentication and authorization, as domain code: no HTTP framework, no database.
//! The API's thin HTTP layer reads `X-Auth-Token`, calls [`Authenticator::authenticate`], and
//! asks the [`policy::Enforcer`] before each action.
//!
//! - **Who is calling**: a [`TokenValidator`] turns a token into a [`Context`] —
//!   [`KeystoneValidator`] asks Keystone (`GET /v3/auth/tokens`, keystonemiddleware style)
//!   behind a [`CachingValidator`] (hashed keys, TTL, negative cache, single-flight, bounded,
//!   stale answers while Keystone is down); [`NoAuth`] trusts `user:project[:roles]` tokens
//!   in development.
//! - **May they**: [`policy`] holds one named rule per API action, defaults in code, operator
//!   overrides in a YAML file.
//!
//! Wiring in the API, once at startup:
//!
//! ```no_run
//! # async fn demo(raw: fresco_common::conf::RawConfig) -> Result<(), Box<dyn std::error::Error>> {
//! use fresco_auth::policy::{Enforcer, Target};
//! use fresco_auth::Authenticator;
//!
//! let auth = Authenticator::from_config(&raw)?; // [DEFAULT] auth_strategy, [keystone_authtoken]
//! let policy = Enforcer::from_config(&raw)?; // [oslo_policy] policy_file
//! // per request:
//! let ctx = auth.authenticate(Some("token from x-auth-token")).await?;
//! policy.enforce("function:list", &ctx, &Target::own(&ctx))?;
//! # Ok(()) }
//! ```

mod cache;
mod context;
mod error;
mod keystone;
mod noauth;
pub mod policy;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

pub use cache::{CacheConfig, CacheStats, CachingValidator};
pub use context::Context;
pub use error::AuthError;
use fresco_common::conf::{DefaultSection, KeystoneAuthtokenSection, RawConfig};
pub use keystone::{KeystoneConfig, KeystoneStats, KeystoneValidator};
pub use noauth::NoAuth;

/// Turns a token into the caller it stands for.
pub trait TokenValidator: Send + Sync {
    fn validate(&self, token: &str) -> impl Future<Output = Result<Context, AuthError>> + Send;
}

/// Counters of an [`Authenticator`], for benchmarks, tests and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuthStats {
    pub cache: CacheStats,
    pub keystone: KeystoneStats,
}

enum Strategy {
    NoAuth(NoAuth),
    Keystone(Box<CachingValidator<KeystoneValidator>>),
}

/// The configured way of authenticating API callers: Keystone with its cache, or `noauth`.
pub struct Authenticator {
    strategy: Strategy,
    www_authenticate_uri: String,
    www_authenticate_header: String,
}

impl Authenticator {
    /// From `[DEFAULT] auth_strategy` (`keystone` or `noauth`) and `[keystone_authtoken]`.
    /// Builds no connection: Keystone is first asked on the first token.
    pub fn from_config(raw: &RawConfig) -> Result<Self, AuthError> {
        let default: DefaultSection = raw
            .section()
            .map_err(|e| AuthError::Config(e.to_string()))?;
        let section: KeystoneAuthtokenSection = raw
            .section()
            .map_err(|e| AuthError::Config(e.to_string()))?;
        match default.auth_strategy.as_str() {
            "keystone" => Self::keystone(
                KeystoneConfig::from_section(&section),
                CacheConfig {
                    token_cache_time: Duration::from_secs(section.token_cache_time),
                    negative_cache_time: Duration::from_secs(section.negative_cache_time),
                    max_entries: section.cache_max_entries.max(1),
                },
                &section.www_authenticate_uri,
            ),
            "noauth" => {
                log::warn!(
                    "auth_strategy = noauth: tokens are trusted as they are (development only)"
                );
                Ok(Self::noauth(
                    NoAuth::new(section.service_token_roles.clone()),
                    &section.www_authenticate_uri,
                    &section.auth_url,
                ))
            }
            other => Err(AuthError::Config(format!(
                "[DEFAULT] auth_strategy must be keystone or noauth, got {other:?}"
            ))),
        }
    }

    /// Keystone validation behind the cache; `www_authenticate_uri` empty means `auth_url`.
    pub fn keystone(
        keystone: KeystoneConfig,
        cache: CacheConfig,
        www_authenticate_uri: &str,
    ) -> Result<Self, AuthError> {
        let uri = if www_authenticate_uri.is_empty() {
            keystone.auth_url.clone()
        } else {
            www_authenticate_uri.to_owned()
        };
        let validator = KeystoneValidator::new(keystone)?;
        Ok(Self::with_strategy(
            Strategy::Keystone(Box::new(CachingValidator::new(validator, cache))),
            uri,
        ))
    }

    /// Development mode; `www_authenticate_uri` empty means `auth_url`.
    pub fn noauth(noauth: NoAuth, www_authenticate_uri: &str, auth_url: &str) -> Self {
        let uri = if www_authenticate_uri.is_empty() {
            auth_url
        } else {
            www_authenticate_uri
        };
        Self::with_strategy(Strategy::NoAuth(noauth), uri.to_owned())
    }

    fn with_strategy(strategy: Strategy, uri: String) -> Self {
        Self {
            strategy,
            www_authenticate_header: format!("Keystone uri=\"{uri}\""),
            www_authenticate_uri: uri,
        }
    }

    /// The caller behind the `X-Auth-Token` value (`None` when the header is absent).
    pub async fn authenticate(&self, token: Option<&str>) -> Result<Arc<Context>, AuthError> {
        let token = token.map(str::trim).filter(|t| !t.is_empty());
        let Some(token) = token else {
            return Err(AuthError::MissingToken);
        };
        match &self.strategy {
            Strategy::NoAuth(noauth) => noauth.parse(token).map(Arc::new),
            Strategy::Keystone(cached) => cached.validate_shared(token).await,
        }
    }

    /// Keystone's URL announced to clients refused with 401.
    pub fn www_authenticate_uri(&self) -> &str {
        &self.www_authenticate_uri
    }

    /// The `WWW-Authenticate` header value for 401 answers: `Keystone uri="…"`.
    pub fn www_authenticate_header(&self) -> &str {
        &self.www_authenticate_header
    }

    /// `"keystone"` or `"noauth"`.
    pub fn strategy(&self) -> &'static str {
        match self.strategy {
            Strategy::NoAuth(_) => "noauth",
            Strategy::Keystone(_) => "keystone",
        }
    }

    pub fn stats(&self) -> AuthStats {
        match &self.strategy {
            Strategy::NoAuth(_) => AuthStats::default(),
            Strategy::Keystone(cached) => AuthStats {
                cache: cached.stats(),
                keystone: cached.inner().stats(),
            },
        }
    }
}

impl TokenValidator for Authenticator {
    async fn validate(&self, token: &str) -> Result<Context, AuthError> {
        self.authenticate(Some(token))
            .await
            .map(|ctx| (*ctx).clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(pairs: &[(&str, &str, &str)]) -> RawConfig {
        let mut raw = RawConfig::default();
        for (section, option, value) in pairs {
            raw.set(section, option, value);
        }
        raw
    }

    #[tokio::test]
    async fn noauth_from_config() {
        let auth = Authenticator::from_config(&raw(&[("DEFAULT", "auth_strategy", "noauth")]))
            .expect("noauth");
        assert_eq!(auth.strategy(), "noauth");
        assert_eq!(
            auth.www_authenticate_header(),
            "Keystone uri=\"http://127.0.0.1:5000/v3\""
        );
        assert_eq!(auth.authenticate(None).await, Err(AuthError::MissingToken));
        assert_eq!(
            auth.authenticate(Some("  ")).await,
            Err(AuthError::MissingToken)
        );
        assert_eq!(
            auth.authenticate(Some("x")).await,
            Err(AuthError::InvalidToken)
        );
        let ctx = auth
            .authenticate(Some("alice:p1:admin"))
            .await
            .expect("valid");
        assert_eq!(ctx.roles, ["admin", "member", "reader"]);
        assert_eq!(
            auth.validate("bob:p2").await.map(|c| c.user_id),
            Ok("bob".into())
        );
        assert_eq!(auth.stats(), AuthStats::default());
    }

    #[test]
    fn keystone_from_config() {
        let config = raw(&[
            ("keystone_authtoken", "password", "secret"),
            (
                "keystone_authtoken",
                "www_authenticate_uri",
                "https://keystone.example/v3",
            ),
        ]);
        let auth = Authenticator::from_config(&config).expect("keystone");
        assert_eq!(auth.strategy(), "keystone");
        assert_eq!(auth.www_authenticate_uri(), "https://keystone.example/v3");
        assert_eq!(
            auth.www_authenticate_header(),
            "Keystone uri=\"https://keystone.example/v3\""
        );
    }

    #[test]
    fn bad_configuration_is_a_config_error() {
        type Case<'a> = (&'a [(&'a str, &'a str, &'a str)], &'a str);
        let cases: &[Case] = &[
            (
                &[("DEFAULT", "auth_strategy", "ldap")],
                "auth_strategy must be keystone or noauth",
            ),
            (&[], "password is empty"),
            (
                &[
                    ("keystone_authtoken", "password", "x"),
                    ("keystone_authtoken", "token_cache_time", "soon"),
                ],
                "[keystone_authtoken] token_cache_time",
            ),
        ];
        for (pairs, expected) in cases {
            match Authenticator::from_config(&raw(pairs)) {
                Err(AuthError::Config(m)) => {
                    assert!(m.contains(expected), "{m:?} lacks {expected:?}")
                }
                Err(e) => panic!("{pairs:?}: unexpected error {e}"),
                Ok(_) => panic!("{pairs:?}: accepted"),
            }
        }
    }
}
