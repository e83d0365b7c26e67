//! Development mode: the token names the caller and is trusted as it is.

use chrono::{Duration, Utc};

use crate::context::normalize_roles;
use crate::{AuthError, Context, TokenValidator};

/// Roles a `noauth` token gets when it names none.
const DEFAULT_ROLES: [&str; 2] = ["member", "reader"];

/// The project a `noauth` token names to act as the cloud admin project.
pub const ADMIN_PROJECT: &str = "admin";

/// Longest `noauth` token accepted; anything longer is a mistake, not a name.
const MAX_TOKEN_LEN: usize = 1024;

/// Trusts tokens of the form `user:project[:role,role,...]` — for development and tests only
/// (`[DEFAULT] auth_strategy = noauth`). Roles default to `member,reader`; implied roles are
/// expanded as Keystone does (`admin` gives `member` and `reader` too). The project named
/// [`ADMIN_PROJECT`] is the cloud admin project (`is_admin_project`), as DevStack configures
/// Keystone: `admin:admin:admin` is a cloud admin, `alice:p1:admin` administers p1 only.
#[derive(Debug, Clone)]
pub struct NoAuth {
    service_roles: Vec<String>,
}

impl NoAuth {
    /// `service_roles`: roles that mark a token as a service's (`is_service`).
    pub fn new(service_roles: Vec<String>) -> Self {
        Self {
            service_roles: service_roles
                .into_iter()
                .map(|r| r.to_ascii_lowercase())
                .collect(),
        }
    }

    /// Parses a `noauth` token into the caller it names.
    pub fn parse(&self, token: &str) -> Result<Context, AuthError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(AuthError::InvalidToken);
        }
        let mut parts = token.split(':');
        let user = parts.next().filter(|s| is_name(s));
        let project = parts.next().filter(|s| is_name(s));
        let roles = parts.next();
        let (Some(user), Some(project), None) = (user, project, parts.next()) else {
            return Err(AuthError::InvalidToken);
        };
        let roles = match roles {
            None => normalize_roles(DEFAULT_ROLES),
            Some(list) => {
                let names: Vec<&str> = list.split(',').collect();
                if !names.iter().all(|r| is_name(r)) {
                    return Err(AuthError::InvalidToken);
                }
                normalize_roles(names)
            }
        };
        let is_service = roles.iter().any(|r| self.service_roles.contains(r));
        Ok(Context {
            user_id: user.to_owned(),
            user_name: user.to_owned(),
            user_domain_id: "default".to_owned(),
            project_id: Some(project.to_owned()),
            project_name: Some(project.to_owned()),
            project_domain_id: Some("default".to_owned()),
            roles,
            system_scope: None,
            is_admin_project: project == ADMIN_PROJECT,
            expires_at: Utc::now() + Duration::hours(1),
            is_service,
        })
    }
}

impl Default for NoAuth {
    fn default() -> Self {
        Self::new(vec!["service".to_owned()])
    }
}

/// A non-empty name of printable ASCII without separators or spaces.
fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && b != b':' && b != b',')
}

impl TokenValidator for NoAuth {
    async fn validate(&self, token: &str) -> Result<Context, AuthError> {
        self.parse(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `expected`: `Some((user, project, roles))` or `None` for an invalid token.
    fn check(token: &str, expected: Option<(&str, &str, &[&str])>) {
        let got = NoAuth::default().parse(token);
        match expected {
            None => assert_eq!(got, Err(AuthError::InvalidToken), "token {token:?}"),
            Some((user, project, roles)) => {
                let ctx = got.unwrap_or_else(|e| panic!("token {token:?}: {e}"));
                assert_eq!(ctx.user_id, user, "token {token:?}");
                assert_eq!(ctx.user_name, user);
                assert_eq!(ctx.project_id.as_deref(), Some(project), "token {token:?}");
                assert_eq!(ctx.roles, roles, "token {token:?}");
                assert!(ctx.expires_at > Utc::now());
            }
        }
    }

    #[test]
    fn parses_tokens() {
        check("alice:p1", Some(("alice", "p1", &["member", "reader"])));
        check("alice:p1:reader", Some(("alice", "p1", &["reader"])));
        check(
            "bob:p2:admin",
            Some(("bob", "p2", &["admin", "member", "reader"])),
        );
        check(
            "bob:p2:reader,Member",
            Some(("bob", "p2", &["reader", "member"])),
        );
        check(
            "svc:service:service",
            Some(("svc", "service", &["service"])),
        );
        check("", None);
        check("alice", None);
        check("alice:", None);
        check(":p1", None);
        check("alice:p1:", None);
        check("alice:p1:reader,", None);
        check("alice:p1:reader:extra", None);
        check("al ice:p1", None);
        check("alice:p1\n", None);
        check(&format!("a:{}", "p".repeat(2000)), None);
    }

    #[test]
    fn service_roles_mark_service_tokens() {
        let noauth = NoAuth::new(vec!["Service".into()]);
        assert!(noauth
            .parse("nova:service:service")
            .is_ok_and(|c| c.is_service));
        assert!(noauth.parse("alice:p1:admin").is_ok_and(|c| !c.is_service));
    }
}
