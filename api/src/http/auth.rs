//! The HTTP face of authentication and policy: the `Caller` extractor and the helpers that
//! turn policy decisions into scopes. The decisions themselves live in `fresco_auth`.

use std::sync::Arc;

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::{web, FromRequest, HttpRequest};
use fresco_auth::policy::{PolicyError, Target};
use fresco_auth::{AuthError, Context};
use futures_util::future::LocalBoxFuture;

use super::error::{ApiError, ApiResult};
use super::paging::Query;
use super::AppState;
use fresco_store::Scope;

/// The authenticated caller of a request.
pub struct Caller {
    pub context: Arc<Context>,
    /// The request asked for `all_projects=true`.
    all_projects: bool,
}

/// Whether the query string asks for `all_projects=true` (checked against policy later).
fn asks_all_projects(req: &HttpRequest) -> bool {
    serde_urlencoded::from_str::<Vec<(String, String)>>(req.query_string())
        .map(|pairs| {
            pairs.iter().any(|(k, v)| {
                k == "all_projects" && matches!(v.as_str(), "true" | "True" | "1" | "yes")
            })
        })
        .unwrap_or(false)
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let token = req
            .headers()
            .get("x-auth-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let all_projects = asks_all_projects(req);
        Box::pin(async move {
            let state = state.ok_or_else(|| {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "no application state")
            })?;
            state
                .auth
                .authenticate(token.as_deref())
                .await
                .map(|context| Caller {
                    context,
                    all_projects,
                })
                .map_err(|e| auth_error(&state, e))
        })
    }
}

fn auth_error(state: &AppState, error: AuthError) -> ApiError {
    match error {
        AuthError::MissingToken | AuthError::InvalidToken => {
            let mut e = ApiError::new(StatusCode::UNAUTHORIZED, error.to_string());
            e.www_authenticate = Some(state.auth.www_authenticate_header().to_owned());
            e
        }
        AuthError::Unscoped => ApiError::forbidden(error.to_string()),
        AuthError::KeystoneUnavailable(_) => {
            log::warn!("{error}");
            let mut e = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "identity service unavailable",
            );
            e.retry_after = Some(5);
            e
        }
        AuthError::Config(_) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "authentication misconfigured",
        ),
    }
}

fn policy_error(error: PolicyError) -> ApiError {
    match error {
        PolicyError::Forbidden { .. } => ApiError::forbidden(error.to_string()),
        other => {
            log::error!("policy error: {other}");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
}

impl Caller {
    /// The project of a project-scoped token; a system-scoped token has none.
    pub fn project(&self) -> ApiResult<&str> {
        self.context
            .project()
            .ok_or_else(|| ApiError::forbidden("this request needs a project-scoped token"))
    }

    /// Checks `rule` for an action on the caller's own project (or on nothing in particular,
    /// for a system-scoped caller).
    pub fn authorize(&self, state: &AppState, rule: &str) -> ApiResult<()> {
        state
            .policy
            .enforce(rule, &self.context, &Target::own(&self.context))
            .map_err(policy_error)
    }

    /// Checks `rule` for an action on an object of `project_id`.
    pub fn authorize_on(&self, state: &AppState, rule: &str, project_id: &str) -> ApiResult<()> {
        state
            .policy
            .enforce(rule, &self.context, &Target::project(project_id))
            .map_err(policy_error)
    }

    /// Whether the caller may see the platform's side of executions (which agent ran them, the
    /// platform's own error text): the `execution:show_platform_details` rule.
    pub fn sees_platform_details(&self, state: &AppState) -> bool {
        state
            .policy
            .check(
                "execution:show_platform_details",
                &self.context,
                &Target::own(&self.context),
            )
            .unwrap_or(false)
    }

    /// Whether the caller may reach other projects' objects (the `all_projects` rule).
    pub fn cross_project(&self, state: &AppState) -> bool {
        state
            .policy
            .check("all_projects", &self.context, &Target::own(&self.context))
            .unwrap_or(false)
    }

    /// The scope for reaching one object by id or name: the caller's own project, so another
    /// project's object is simply not found (404, the same as a missing one). Only a request
    /// that asks for `all_projects=true`, from a caller the `all_projects` rule admits, reaches
    /// every project; a system-scoped admin (no project) does too.
    pub fn object_scope(&self, state: &AppState) -> ApiResult<Scope> {
        if self.all_projects {
            if !self.cross_project(state) {
                return Err(ApiError::forbidden(
                    "policy does not allow all_projects to be performed",
                ));
            }
            return Ok(Scope::All { project_id: None });
        }
        if self.context.project().is_none() && self.cross_project(state) {
            return Ok(Scope::All { project_id: None });
        }
        Ok(Scope::Project(self.project()?.to_owned()))
    }

    /// The scope of a list: the caller's project unless `all_projects=true` (which needs the
    /// `all_projects` rule), optionally narrowed with `project_id=`. A system-scoped caller has
    /// no project: the rule admitting it, its lists cover every project.
    pub fn list_scope(&self, state: &AppState, query: &Query) -> ApiResult<Scope> {
        let system_wide = self.context.project().is_none() && self.cross_project(state);
        if query.all_projects()? || system_wide {
            if !self.cross_project(state) {
                return Err(ApiError::forbidden(
                    "policy does not allow all_projects to be performed",
                ));
            }
            return Ok(Scope::All {
                project_id: query.get("project_id").map(str::to_owned),
            });
        }
        if query.get("project_id").is_some() {
            return Err(ApiError::bad_request("project_id needs all_projects=true"));
        }
        Ok(Scope::Project(self.project()?.to_owned()))
    }
}
