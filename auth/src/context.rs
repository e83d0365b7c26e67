//! Who is calling: the identity and scope a validated token carries.

use chrono::{DateTime, Utc};

/// The caller, as Keystone (or `noauth`) vouches for it. Plain data: built by a
/// [`TokenValidator`](crate::TokenValidator), read by the policy engine and the API handlers.
///
/// A token is scoped either to a project (the `project_*` fields are set) or to the system
/// (`system_scope` is set, usually `"all"`); tokens scoped to neither are refused with
/// [`AuthError::Unscoped`](crate::AuthError::Unscoped) before a `Context` exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    pub user_id: String,
    pub user_name: String,
    pub user_domain_id: String,
    /// The project the token is scoped to; `None` for a system-scoped token.
    pub project_id: Option<String>,
    pub project_name: Option<String>,
    pub project_domain_id: Option<String>,
    /// Role names, lowercase, with Keystone's implied roles already expanded
    /// (an admin's token lists member and reader too).
    pub roles: Vec<String>,
    /// The system scope (`"all"`) of a system-scoped token.
    pub system_scope: Option<String>,
    /// The token is scoped to the cloud's admin project (Keystone's `is_admin_project`, set
    /// when Keystone's `[resource] admin_project_name` and `admin_project_domain_name` are
    /// configured; absent means false). The admin role counts cloud-wide only here or with a
    /// system scope.
    pub is_admin_project: bool,
    /// When the token stops being valid.
    pub expires_at: DateTime<Utc>,
    /// The token carries one of `[keystone_authtoken] service_token_roles`.
    pub is_service: bool,
}

impl Context {
    /// Whether the token carries `role` (case-insensitive, as oslo.policy compares roles).
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r.eq_ignore_ascii_case(role))
    }

    /// Whether the token carries the admin role (in its scope: see [`Context::is_cloud_admin`]).
    pub fn is_admin(&self) -> bool {
        self.has_role("admin")
    }

    /// Whether the caller administers the whole cloud: the admin role with a system scope or
    /// on the cloud admin project. A project's own admin is not one.
    pub fn is_cloud_admin(&self) -> bool {
        self.is_admin() && (self.system_scope.as_deref() == Some("all") || self.is_admin_project)
    }

    /// The project id of a project-scoped token.
    pub fn project(&self) -> Option<&str> {
        self.project_id.as_deref()
    }
}

/// Lowercases role names, drops duplicates (keeping the first) and adds the roles Keystone's
/// default implied-role chain adds: admin → member → reader.
pub(crate) fn normalize_roles<I, S>(roles: I) -> Vec<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut out: Vec<String> = Vec::new();
    let mut push = |role: &str| {
        if !out.iter().any(|r| r == role) {
            out.push(role.to_owned());
        }
    };
    for role in roles {
        let role = role.as_ref().to_ascii_lowercase();
        push(&role);
        if role == "admin" {
            push("member");
            push("reader");
        } else if role == "member" {
            push("reader");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &[&str], expected: &[&str]) {
        assert_eq!(normalize_roles(input), expected, "roles {input:?}");
    }

    #[test]
    fn implied_roles_are_expanded_once_and_lowercased() {
        check(&["reader"], &["reader"]);
        check(&["member"], &["member", "reader"]);
        check(&["admin"], &["admin", "member", "reader"]);
        check(&["Admin", "reader"], &["admin", "member", "reader"]);
        check(&["reader", "member"], &["reader", "member"]);
        check(&["service"], &["service"]);
        check(&[], &[]);
    }

    #[test]
    fn has_role_ignores_case() {
        let ctx = Context {
            user_id: "u".into(),
            user_name: "u".into(),
            user_domain_id: "default".into(),
            project_id: Some("p".into()),
            project_name: Some("p".into()),
            project_domain_id: Some("default".into()),
            roles: normalize_roles(["Member"]),
            system_scope: None,
            is_admin_project: false,
            expires_at: Utc::now(),
            is_service: false,
        };
        assert!(ctx.has_role("MEMBER"));
        assert!(ctx.has_role("reader"));
        assert!(!ctx.has_role("admin"));
        assert!(!ctx.is_admin());
        assert_eq!(ctx.project(), Some("p"));
    }
}
