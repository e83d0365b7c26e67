//! Runtimes: created and changed by admins, visible to projects when public or owned.

use chrono::Utc;
use fresco_store::PgConnection;
use uuid::Uuid;

use super::{db_error, validate, DomainError, DomainResult};
use fresco_store::paging::{Page, PageRequest};
use fresco_store::runtimes::{self, Runtime, RuntimeChanges};
use fresco_store::{functions, versions, Scope};

pub const KINDS: &[&str] = &["python", "provided"];
pub const STATUSES: &[&str] = &["available", "disabled"];

/// A new runtime as requested.
#[derive(Debug, Clone)]
pub struct NewRuntime {
    pub name: String,
    pub image: String,
    pub kind: String,
    pub description: String,
    pub is_public: bool,
    pub project_id: String,
    pub network: bool,
    pub memory_min_mb: i32,
    pub memory_max_mb: i32,
    pub timeout_max_s: i32,
}

fn check_limits(min: i32, max: i32, timeout_max: i32) -> DomainResult<()> {
    validate::range("memory_min_mb", min, 16, 1 << 20)?;
    validate::range("memory_max_mb", max, i64::from(min), 1 << 20)?;
    validate::range("timeout_max_s", timeout_max, 1, 86_400)
}

pub fn create(conn: &mut PgConnection, new: NewRuntime) -> DomainResult<Runtime> {
    validate::name("name", &new.name)?;
    validate::image("image", &new.image)?;
    validate::description(&new.description)?;
    validate::no_nul("project_id", &new.project_id)?;
    if !KINDS.contains(&new.kind.as_str()) {
        return Err(DomainError::invalid(format!(
            "kind must be one of {}, got {:?}",
            KINDS.join(", "),
            new.kind
        )));
    }
    check_limits(new.memory_min_mb, new.memory_max_mb, new.timeout_max_s)?;
    let now = Utc::now();
    let runtime = Runtime {
        id: Uuid::new_v4(),
        name: new.name,
        image: new.image,
        kind: new.kind,
        description: new.description,
        is_public: new.is_public,
        project_id: new.project_id,
        status: "available".into(),
        network: new.network,
        memory_min_mb: new.memory_min_mb,
        memory_max_mb: new.memory_max_mb,
        timeout_max_s: new.timeout_max_s,
        created_at: now,
        updated_at: now,
    };
    runtimes::insert(conn, &runtime).map_err(db_error("runtime", &runtime.name))?;
    Ok(runtime)
}

/// Finds a runtime visible in `scope` by id or name.
pub fn get(conn: &mut PgConnection, scope: &Scope, key: &str) -> DomainResult<Runtime> {
    let found = match Uuid::parse_str(key) {
        Ok(id) => runtimes::get(conn, scope, id),
        Err(_) => runtimes::get_by_name(conn, scope, key),
    };
    found.map_err(db_error("runtime", key))
}

pub fn list(
    conn: &mut PgConnection,
    scope: &Scope,
    page: &PageRequest<Uuid>,
) -> DomainResult<Page<Runtime>> {
    runtimes::list(conn, scope, page).map_err(marker_error)
}

/// An unknown marker is the caller's mistake, not a missing object.
pub(crate) fn marker_error(error: fresco_store::DbError) -> DomainError {
    match error {
        fresco_store::DbError::NotFound => {
            DomainError::invalid("marker does not name an item of this list")
        }
        other => other.into(),
    }
}

/// Changes to a runtime as requested.
#[derive(Debug, Default, Clone)]
pub struct RuntimeUpdate {
    pub name: Option<String>,
    pub image: Option<String>,
    pub description: Option<String>,
    pub is_public: Option<bool>,
    pub status: Option<String>,
    pub network: Option<bool>,
    pub memory_min_mb: Option<i32>,
    pub memory_max_mb: Option<i32>,
    pub timeout_max_s: Option<i32>,
}

pub fn update(conn: &mut PgConnection, key: &str, update: RuntimeUpdate) -> DomainResult<Runtime> {
    let all = Scope::All { project_id: None };
    let current = get(conn, &all, key)?;
    if let Some(name) = &update.name {
        validate::name("name", name)?;
    }
    if let Some(image) = &update.image {
        validate::image("image", image)?;
    }
    if let Some(description) = &update.description {
        validate::description(description)?;
    }
    if let Some(status) = &update.status {
        if !STATUSES.contains(&status.as_str()) {
            return Err(DomainError::invalid(format!(
                "status must be one of {}, got {status:?}",
                STATUSES.join(", ")
            )));
        }
    }
    check_limits(
        update.memory_min_mb.unwrap_or(current.memory_min_mb),
        update.memory_max_mb.unwrap_or(current.memory_max_mb),
        update.timeout_max_s.unwrap_or(current.timeout_max_s),
    )?;
    let changes = RuntimeChanges {
        name: update.name,
        image: update.image,
        description: update.description,
        is_public: update.is_public,
        status: update.status,
        network: update.network,
        memory_min_mb: update.memory_min_mb,
        memory_max_mb: update.memory_max_mb,
        timeout_max_s: update.timeout_max_s,
        updated_at: Some(Utc::now()),
    };
    runtimes::update(conn, current.id, &changes).map_err(db_error("runtime", key))
}

pub fn delete(conn: &mut PgConnection, key: &str) -> DomainResult<()> {
    let all = Scope::All { project_id: None };
    let runtime = get(conn, &all, key)?;
    super::transaction(conn, |conn| {
        if functions::runtime_in_use(conn, runtime.id)?
            || versions::runtime_in_use(conn, runtime.id)?
        {
            return Err(DomainError::Conflict(format!(
                "runtime {key} is used by functions or versions"
            )));
        }
        runtimes::delete(conn, runtime.id).map_err(db_error("runtime", key))
    })
}
