//! `/v1/hooks`: the pre and post hooks attached to a project (docs/api.md, Hooks).

use actix_web::{web, HttpRequest, HttpResponse};
use fresco_auth::policy::Target;
use fresco_store::Scope;
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use super::{state, State};
use crate::domain::hooks::{self, Authority, HookInput, Removal};
use crate::http::auth::Caller;
use crate::http::body;
use crate::http::error::{ApiError, ApiResult};
use crate::http::paging::{list_body, Query};
use crate::http::views::HookView;
use crate::http::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HookBody {
    kind: Option<String>,
    function: Option<String>,
    version: Option<i32>,
    alias: Option<String>,
    fail_mode: Option<String>,
    redact: Option<bool>,
    description: Option<String>,
    /// The project to attach the hook to (another than the caller's: a cloud administrator).
    project_id: Option<String>,
}

fn allows(data: &AppState, caller: &Caller, rule: &str, project_id: &str) -> bool {
    data.policy
        .check(rule, &caller.context, &Target::project(project_id))
        .unwrap_or(false)
}

/// What the caller may do with the hooks of `project_id`.
fn authority(data: &AppState, caller: &Caller, project_id: &str) -> Authority {
    Authority {
        cloud: allows(data, caller, "hook:manage_cloud", project_id),
        project_internals: allows(data, caller, "hook:show_internals", project_id),
    }
}

pub async fn create(
    data: State,
    caller: Caller,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    caller.authorize(&data, "hook:create")?;
    let b: HookBody = body::json(&req, payload, data.api.max_json_body_bytes).await?;
    let own = caller.context.project().map(str::to_owned);
    let project_id = match (&b.project_id, &own) {
        (Some(p), _) => p.clone(),
        (None, Some(own)) => own.clone(),
        (None, None) => {
            return Err(ApiError::bad_request(
                "project_id is required with a system-scoped token",
            ))
        }
    };
    // Another project's hooks are the cloud administrator's.
    if own.as_deref() != Some(project_id.as_str()) {
        caller.authorize_on(&data, "hook:manage_cloud", &project_id)?;
    }
    caller.authorize_on(&data, "hook:create", &project_id)?;
    let authority = authority(&data, &caller, &project_id);
    crate::domain::validate::no_nul("project_id", &project_id)?;
    let function_scope = match &own {
        Some(own) => Scope::Project(own.clone()),
        None => Scope::All { project_id: None },
    };
    let created_by = caller.context.user_id.clone();
    let input = HookInput {
        kind: b.kind,
        function: b.function,
        version: b.version,
        alias: b.alias,
        fail_mode: b.fail_mode,
        redact: b.redact,
        description: b.description,
    };
    let app = state(&data);
    let project = project_id.clone();
    let hook = app
        .db(move |conn| {
            hooks::create(
                conn,
                &project,
                &function_scope,
                authority,
                &created_by,
                input,
            )
        })
        .await?;
    if let Some(invoker) = &app.invoker {
        invoker.hooks.forget(&project_id);
    }
    let internals = authority.sees_internals(&hook);
    Ok(HttpResponse::Created().json(json!({ "hook": HookView::new(hook, internals) })))
}

pub async fn list(data: State, caller: Caller, req: HttpRequest) -> ApiResult<HttpResponse> {
    caller.authorize(&data, "hook:list")?;
    let query = Query::parse(&req, &["kind"])?;
    let scope = caller.list_scope(&data, &query)?;
    let page = query.page::<Uuid>(
        &["created_at"],
        data.api.default_page_limit,
        data.api.max_page_limit,
    )?;
    let kind = query.get("kind").map(str::to_owned);
    let found = state(&data)
        .db(move |conn| hooks::list(conn, &scope, kind.as_deref(), &page))
        .await?;
    let body = list_body(
        &data.base_url,
        &req,
        "hooks",
        found,
        |h| h.id.to_string(),
        |h| {
            let internals = authority(&data, &caller, &h.project_id).sees_internals(&h);
            HookView::new(h, internals)
        },
    );
    Ok(HttpResponse::Ok().json(body))
}

pub async fn show(data: State, caller: Caller, path: web::Path<String>) -> ApiResult<HttpResponse> {
    caller.authorize(&data, "hook:show")?;
    let scope = caller.object_scope(&data)?;
    let key = path.into_inner();
    let hook = state(&data)
        .db(move |conn| hooks::get(conn, &scope, &key))
        .await?;
    let internals = authority(&data, &caller, &hook.project_id).sees_internals(&hook);
    Ok(HttpResponse::Ok().json(json!({ "hook": HookView::new(hook, internals) })))
}

pub async fn delete(
    data: State,
    caller: Caller,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    caller.authorize(&data, "hook:delete")?;
    let scope = caller.object_scope(&data)?;
    let key = path.into_inner();
    // The hook's project decides the caller's authority over it; the scope, that another
    // project's hook is not found.
    let lookup = (scope.clone(), key.clone());
    let app = state(&data);
    let hook = app
        .db(move |conn| hooks::get(conn, &lookup.0, &lookup.1))
        .await?;
    caller.authorize_on(&data, "hook:delete", &hook.project_id)?;
    let authority = authority(&data, &caller, &hook.project_id);
    let removal = app
        .db(move |conn| hooks::delete(conn, &scope, &key, authority))
        .await?;
    match removal {
        Removal::Removed(hook) => {
            if let Some(invoker) = &app.invoker {
                invoker.hooks.forget(&hook.project_id);
            }
            Ok(HttpResponse::NoContent().finish())
        }
        Removal::CloudOwned(id) => Err(ApiError::forbidden(format!(
            "hook {id} is the cloud's: only a cloud administrator may remove it (hook:manage_cloud)"
        ))),
    }
}
