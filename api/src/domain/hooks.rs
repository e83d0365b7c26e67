//! Hooks: functions the platform chains around every invocation of a project. A `pre` hook
//! runs on the event before the function and allows, rejects or rewrites it; a `post` hook
//! receives the event, the result and the execution's metadata after the answer. Who may
//! attach, see and remove which hook is decided here from what the HTTP layer's policy checks
//! found (`Authority`); running them is `crate::hooks`.

use chrono::Utc;
use fresco_store::hooks::{
    self as store, Hook, HookFilter, FAIL_CLOSED, FAIL_OPEN, OWNER_CLOUD, OWNER_PROJECT, POST, PRE,
};
use fresco_store::paging::{Page, PageRequest};
use fresco_store::{aliases, functions, quotas as quota_store, versions, PgConnection, Scope};
use uuid::Uuid;

use super::runtimes::marker_error;
use super::{db_error, validate, DomainError, DomainResult};

/// Most hooks of one project (each adds a warm invocation to every invocation).
pub const MAX_HOOKS_PER_PROJECT: i64 = 10;

/// What a create asks for; `None`: not given.
#[derive(Debug, Clone, Default)]
pub struct HookInput {
    pub kind: Option<String>,
    pub function: Option<String>,
    pub version: Option<i32>,
    pub alias: Option<String>,
    /// `open` or `closed` (the default).
    pub fail_mode: Option<String>,
    pub redact: Option<bool>,
    pub description: Option<String>,
}

/// What the caller may do with hooks, as the HTTP layer's policy checks decided.
#[derive(Debug, Clone, Copy)]
pub struct Authority {
    /// A cloud administrator (`hook:manage_cloud`): its hooks are the cloud's, and it may see
    /// and remove every hook.
    pub cloud: bool,
    /// May see the internals (function, version, alias, description, author) of the project's
    /// own hooks (`hook:show_internals`: the project's admin).
    pub project_internals: bool,
}

impl Authority {
    /// Whether the caller may see the internals of `hook`.
    pub fn sees_internals(&self, hook: &Hook) -> bool {
        self.cloud || (hook.owner == OWNER_PROJECT && self.project_internals)
    }
}

/// Attaches a hook to `project_id`. A cloud administrator's hook is owned by the cloud and
/// its function is looked up in `function_scope` (the administrator's own project, or any
/// for a system-scoped one); a project admin's hook runs one of the project's own functions.
pub fn create(
    conn: &mut PgConnection,
    project_id: &str,
    function_scope: &Scope,
    authority: Authority,
    created_by: &str,
    input: HookInput,
) -> DomainResult<Hook> {
    let kind = input
        .kind
        .ok_or_else(|| DomainError::invalid("kind is required (pre or post)"))?;
    if kind != PRE && kind != POST {
        return Err(DomainError::invalid(format!(
            "kind must be pre or post, got {kind:?}"
        )));
    }
    let fail_mode = input.fail_mode.unwrap_or_else(|| FAIL_CLOSED.to_owned());
    if fail_mode != FAIL_OPEN && fail_mode != FAIL_CLOSED {
        return Err(DomainError::invalid(format!(
            "fail_mode must be open or closed, got {fail_mode:?}"
        )));
    }
    let redact = input.redact.unwrap_or(false);
    if redact && kind != POST {
        return Err(DomainError::invalid("only a post hook may redact"));
    }
    let description = input.description.unwrap_or_default();
    validate::description(&description)?;
    if input.version.is_some() && input.alias.is_some() {
        return Err(DomainError::invalid("give version or alias, not both"));
    }
    let key = input
        .function
        .ok_or_else(|| DomainError::invalid("function is required"))?;
    validate::no_nul("function", &key)?;
    // A cloud administrator names its hook's function by id (any project's) or by name (in
    // its own project); a project's admin, one of the hooked project's functions.
    let function_scope = if authority.cloud && Uuid::parse_str(&key).is_ok() {
        Scope::All { project_id: None }
    } else if authority.cloud {
        function_scope.clone()
    } else {
        Scope::Project(project_id.to_owned())
    };
    let function = functions::get_by_ref(conn, &function_scope, &key).map_err(|e| match e {
        fresco_store::DbError::NotFound => DomainError::invalid(format!(
            "function {key} does not exist in the hook's project"
        )),
        other => db_error("function", &key)(other),
    })?;
    if let Some(number) = input.version {
        if number < 1 {
            return Err(DomainError::invalid(format!(
                "version must be 1 or more, got {number}"
            )));
        }
        versions::get(conn, &function.project_id, function.id, number).map_err(|_| {
            DomainError::invalid(format!("version {number} of function {key} does not exist"))
        })?;
    }
    if let Some(alias) = &input.alias {
        aliases::get(conn, &function.project_id, function.id, alias).map_err(|_| {
            DomainError::invalid(format!("alias {alias} of function {key} does not exist"))
        })?;
    }
    let hook = Hook {
        id: Uuid::new_v4(),
        project_id: project_id.to_owned(),
        kind,
        owner: if authority.cloud {
            OWNER_CLOUD
        } else {
            OWNER_PROJECT
        }
        .to_owned(),
        function_id: function.id,
        function_version: input.version,
        alias: input.alias,
        fail_mode,
        redact,
        description,
        created_by: created_by.to_owned(),
        created_at: Utc::now(),
    };
    super::transaction(conn, |conn| {
        // Serializes creations in one project so the count holds.
        quota_store::lock_project(conn, project_id)?;
        let count = store::count(conn, project_id)?;
        if count >= MAX_HOOKS_PER_PROJECT {
            return Err(DomainError::QuotaExceeded(format!(
                "project {project_id} has {count} hooks, the most it may have"
            )));
        }
        store::insert(conn, &hook).map_err(db_error("hook", hook.id))?;
        Ok(())
    })?;
    Ok(hook)
}

pub fn list(
    conn: &mut PgConnection,
    scope: &Scope,
    kind: Option<&str>,
    page: &PageRequest<Uuid>,
) -> DomainResult<Page<Hook>> {
    if let Some(kind) = kind {
        if kind != PRE && kind != POST {
            return Err(DomainError::invalid(format!(
                "kind must be pre or post, got {kind:?}"
            )));
        }
    }
    let filter = HookFilter {
        kind: kind.map(str::to_owned),
    };
    store::list(conn, scope, &filter, page).map_err(marker_error)
}

fn parse_id(key: &str) -> DomainResult<Uuid> {
    Uuid::parse_str(key).map_err(|_| DomainError::NotFound {
        kind: "hook",
        id: key.to_owned(),
    })
}

pub fn get(conn: &mut PgConnection, scope: &Scope, key: &str) -> DomainResult<Hook> {
    let id = parse_id(key)?;
    store::get(conn, scope, id).map_err(db_error("hook", key))
}

/// How a removal ended.
#[derive(Debug)]
pub enum Removal {
    Removed(Box<Hook>),
    /// The hook is the cloud's and the caller is not a cloud administrator: nothing removed.
    CloudOwned(Uuid),
}

/// Detaches a hook of the scope; a hook of the cloud only for a cloud administrator.
pub fn delete(
    conn: &mut PgConnection,
    scope: &Scope,
    key: &str,
    authority: Authority,
) -> DomainResult<Removal> {
    let hook = get(conn, scope, key)?;
    if hook.owner == OWNER_CLOUD && !authority.cloud {
        return Ok(Removal::CloudOwned(hook.id));
    }
    store::delete(conn, hook.id).map_err(db_error("hook", key))?;
    Ok(Removal::Removed(Box::new(hook)))
}
