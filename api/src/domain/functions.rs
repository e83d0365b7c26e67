//! Functions: creation with code, settings and code updates, deletion, code download.

use std::collections::BTreeMap;

use chrono::Utc;
use fresco_common::archive::{self, ArchiveError, ArchiveFormat};
use fresco_common::conf::QuotaSection;
use fresco_store::PgConnection;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::quotas::{self, allows, Limits};
use super::runtimes::marker_error;
use super::{db_error, validate, DomainError, DomainResult};
use fresco_store::functions::{self as store, CodeInfo, Function, FunctionFilter, NewCode};
use fresco_store::paging::{Page, PageRequest};
use fresco_store::retirements::{self, Revisions};
use fresco_store::runtimes::Runtime;
use fresco_store::{quotas as quota_store, Scope};

pub const DEFAULT_MEMORY_MB: i32 = 128;
pub const DEFAULT_TIMEOUT_S: i32 = 3;
pub const DEFAULT_HANDLER: &str = "main.handler";

/// Bounds on uploaded packages (from `[api]`).
#[derive(Debug, Clone, Copy)]
pub struct PackageLimits {
    pub max_package_bytes: usize,
    pub max_unpacked_bytes: u64,
    pub max_entries: usize,
}

/// A package that passed every check, ready to store.
#[derive(Debug, Clone)]
pub struct Package {
    pub bytes: Vec<u8>,
    pub format: ArchiveFormat,
    pub sha256: String,
}

/// Validates an uploaded archive completely before anything is stored.
pub fn inspect_package(bytes: Vec<u8>, limits: PackageLimits) -> DomainResult<Package> {
    if bytes.len() > limits.max_package_bytes {
        return Err(DomainError::TooLarge(format!(
            "package is larger than {} bytes",
            limits.max_package_bytes
        )));
    }
    let manifest = archive::inspect(
        &bytes,
        archive::Limits {
            max_entries: limits.max_entries,
            max_unpacked_bytes: limits.max_unpacked_bytes,
        },
    )
    .map_err(|e| match e {
        ArchiveError::Io(e) => DomainError::Internal(e.to_string()),
        other => DomainError::invalid(other.to_string()),
    })?;
    let sha256 = hex::encode(Sha256::digest(&bytes));
    Ok(Package {
        bytes,
        format: manifest.format,
        sha256,
    })
}

/// A function with its code's metadata, as shown to users.
#[derive(Debug, Clone)]
pub struct FunctionDetail {
    pub function: Function,
    pub code: Option<CodeInfo>,
}

/// Settings of a new function, as requested. Absent fields take their defaults.
#[derive(Debug, Clone, Default)]
pub struct NewFunction {
    pub name: String,
    pub runtime: Option<String>,
    pub image: Option<String>,
    pub handler: Option<String>,
    pub memory_mb: Option<i32>,
    pub timeout_s: Option<i32>,
    pub environment: Option<BTreeMap<String, String>>,
    pub description: Option<String>,
}

/// Changes to a function, as requested.
#[derive(Debug, Clone, Default)]
pub struct FunctionUpdate {
    pub name: Option<String>,
    pub runtime: Option<String>,
    pub handler: Option<String>,
    pub memory_mb: Option<i32>,
    pub timeout_s: Option<i32>,
    pub environment: Option<BTreeMap<String, String>>,
    pub description: Option<String>,
}

/// Checks a function's own image (a custom image) against the operator's allowlist
/// (`[api] allowed_image_prefixes`).
pub fn check_custom_image(image: &str, allowed_prefixes: &[String]) -> DomainResult<()> {
    if fresco_common::images::allowed(image, allowed_prefixes) {
        return Ok(());
    }
    Err(DomainError::invalid(if allowed_prefixes.is_empty() {
        format!("image {image} is not allowed: this cloud runs no custom images")
    } else {
        format!(
            "image {image} is not allowed: custom images must start with one of {}",
            allowed_prefixes.join(", ")
        )
    }))
}

/// Whether the function would run differently: its warm containers must then be retired.
/// (Its description, for one, changes nothing that runs.)
fn runs_differently(before: &Function, after: &Function) -> bool {
    before.name != after.name
        || before.runtime_id != after.runtime_id
        || before.image != after.image
        || before.handler != after.handler
        || before.memory_mb != after.memory_mb
        || before.timeout_s != after.timeout_s
        || before.environment != after.environment
        || before.code_sha256 != after.code_sha256
}

/// Checks memory and timeout against the runtime's range and the project's quota.
fn check_resources(
    function: &Function,
    runtime: Option<&Runtime>,
    limits: &Limits,
) -> DomainResult<()> {
    let (mut memory_min, mut memory_max, mut timeout_max) = (16_i64, 1 << 20, 86_400_i64);
    if let Some(runtime) = runtime {
        memory_min = runtime.memory_min_mb.into();
        memory_max = runtime.memory_max_mb.into();
        timeout_max = runtime.timeout_max_s.into();
    }
    validate::range("memory_mb", function.memory_mb, memory_min, memory_max)?;
    validate::range("timeout_s", function.timeout_s, 1, timeout_max)?;
    if !allows(limits.memory_mb_max, 0, function.memory_mb.into()) {
        return Err(DomainError::QuotaExceeded(format!(
            "quota memory_mb_max exceeded: memory_mb {} is over the project's limit of {}",
            function.memory_mb, limits.memory_mb_max
        )));
    }
    if !allows(limits.timeout_s_max, 0, function.timeout_s.into()) {
        return Err(DomainError::QuotaExceeded(format!(
            "quota timeout_s_max exceeded: timeout_s {} is over the project's limit of {}",
            function.timeout_s, limits.timeout_s_max
        )));
    }
    Ok(())
}

fn resolve_runtime(conn: &mut PgConnection, project_id: &str, key: &str) -> DomainResult<Runtime> {
    let runtime = super::runtimes::get(conn, &Scope::Project(project_id.to_owned()), key).map_err(
        |e| match e {
            DomainError::NotFound { .. } => {
                DomainError::invalid(format!("runtime {key} does not exist"))
            }
            other => other,
        },
    )?;
    if runtime.status != "available" {
        return Err(DomainError::invalid(format!(
            "runtime {key} is {}",
            runtime.status
        )));
    }
    Ok(runtime)
}

/// Stores a package for the project within its code-bytes quota. Call inside the project lock.
fn store_package(
    conn: &mut PgConnection,
    project_id: &str,
    limits: &Limits,
    package: &Package,
) -> DomainResult<()> {
    if store::hold_code(conn, project_id, &package.sha256)? {
        return Ok(());
    }
    let size = i64::try_from(package.bytes.len()).unwrap_or(i64::MAX);
    let used = store::code_bytes(conn, project_id)?;
    if !allows(limits.code_bytes, used, size) {
        return Err(DomainError::TooLarge(format!(
            "quota code_bytes exceeded: {used} bytes in use, package of {size} bytes, limit {}",
            limits.code_bytes
        )));
    }
    store::store_code(
        conn,
        &NewCode {
            project_id,
            sha256: &package.sha256,
            format: package.format.as_str(),
            size,
            content: &package.bytes,
        },
    )?;
    Ok(())
}

fn detail(conn: &mut PgConnection, function: Function) -> DomainResult<FunctionDetail> {
    let code = match &function.code_sha256 {
        Some(sha) => Some(store::code_info(conn, &function.project_id, sha)?),
        None => None,
    };
    Ok(FunctionDetail { function, code })
}

/// Creates a function. A function with its own image needs the caller to have passed the
/// `function:create:custom_image` policy (the HTTP layer checks it) and an image within
/// `allowed_image_prefixes`.
pub fn create(
    conn: &mut PgConnection,
    quota_defaults: &QuotaSection,
    allowed_image_prefixes: &[String],
    project_id: &str,
    new: NewFunction,
    package: Option<Package>,
) -> DomainResult<FunctionDetail> {
    validate::name("name", &new.name)?;
    let handler = new.handler.unwrap_or_else(|| DEFAULT_HANDLER.to_owned());
    validate::handler(&handler)?;
    let environment = new.environment.unwrap_or_default();
    validate::environment(&environment)?;
    let description = new.description.unwrap_or_default();
    validate::description(&description)?;
    match (&new.runtime, &new.image) {
        (Some(_), Some(_)) | (None, None) => {
            return Err(DomainError::invalid(
                "exactly one of runtime and image is required",
            ))
        }
        (None, Some(image)) => {
            validate::image("image", image)?;
            check_custom_image(image, allowed_image_prefixes)?;
            if package.is_some() {
                return Err(DomainError::invalid(
                    "a function with its own image takes no code package",
                ));
            }
        }
        (Some(_), None) => {}
    }
    let now = Utc::now();
    let mut function = Function {
        id: Uuid::new_v4(),
        project_id: project_id.to_owned(),
        name: new.name,
        runtime_id: None,
        image: new.image,
        handler,
        memory_mb: new.memory_mb.unwrap_or(DEFAULT_MEMORY_MB),
        timeout_s: new.timeout_s.unwrap_or(DEFAULT_TIMEOUT_S),
        environment: serde_json::to_value(&environment)
            .map_err(|e| DomainError::Internal(e.to_string()))?,
        description,
        code_sha256: package.as_ref().map(|p| p.sha256.clone()),
        latest_version: 0,
        created_at: now,
        updated_at: now,
        revision: 0,
    };
    super::transaction(conn, |conn| {
        quota_store::lock_project(conn, project_id)?;
        let limits = quotas::limits(conn, quota_defaults, project_id)?;
        let runtime = match &new.runtime {
            Some(key) => Some(resolve_runtime(conn, project_id, key)?),
            None => None,
        };
        function.runtime_id = runtime.as_ref().map(|r| r.id);
        check_resources(&function, runtime.as_ref(), &limits)?;
        let count = store::count(conn, project_id)?;
        if !allows(limits.functions, count, 1) {
            return Err(DomainError::QuotaExceeded(format!(
                "quota functions exceeded: the project has {count} of {} functions",
                limits.functions
            )));
        }
        if let Some(package) = &package {
            store_package(conn, project_id, &limits, package)?;
        }
        store::insert(conn, &function).map_err(db_error("function", &function.name))?;
        detail(conn, function)
    })
}

pub fn get(conn: &mut PgConnection, scope: &Scope, key: &str) -> DomainResult<FunctionDetail> {
    let function = store::get_by_ref(conn, scope, key).map_err(db_error("function", key))?;
    detail(conn, function)
}

/// Finds a function without its code metadata (the invocation path).
pub fn find(conn: &mut PgConnection, scope: &Scope, key: &str) -> DomainResult<Function> {
    store::get_by_ref(conn, scope, key).map_err(db_error("function", key))
}

pub fn list(
    conn: &mut PgConnection,
    scope: &Scope,
    filter: &FunctionFilter,
    page: &PageRequest<Uuid>,
) -> DomainResult<Page<FunctionDetail>> {
    let page = store::list(conn, scope, filter, page).map_err(marker_error)?;
    // One query for the whole page's code metadata, not one per function.
    let keys: Vec<(String, String)> = page
        .items
        .iter()
        .filter_map(|f| f.code_sha256.clone().map(|sha| (f.project_id.clone(), sha)))
        .collect();
    let codes = store::code_infos(conn, &keys)?;
    let items = page
        .items
        .into_iter()
        .map(|function| {
            let code = function
                .code_sha256
                .clone()
                // Functions of one project may share a package: look up, do not take.
                .and_then(|sha| codes.get(&(function.project_id.clone(), sha)).cloned());
            FunctionDetail { function, code }
        })
        .collect();
    Ok(Page {
        items,
        more: page.more,
    })
}

pub fn update(
    conn: &mut PgConnection,
    quota_defaults: &QuotaSection,
    scope: &Scope,
    key: &str,
    update: FunctionUpdate,
    package: Option<Package>,
) -> DomainResult<FunctionDetail> {
    if let Some(name) = &update.name {
        validate::name("name", name)?;
    }
    if let Some(handler) = &update.handler {
        validate::handler(handler)?;
    }
    if let Some(environment) = &update.environment {
        validate::environment(environment)?;
    }
    if let Some(description) = &update.description {
        validate::description(description)?;
    }
    let found = store::get_by_ref(conn, scope, key).map_err(db_error("function", key))?;
    let project_id = found.project_id.clone();
    super::transaction(conn, |conn| {
        quota_store::lock_project(conn, &project_id)?;
        let mut function =
            store::lock(conn, &project_id, found.id).map_err(db_error("function", key))?;
        let before = function.clone();
        let limits = quotas::limits(conn, quota_defaults, &project_id)?;
        if let Some(name) = update.name {
            function.name = name;
        }
        if let Some(handler) = update.handler {
            function.handler = handler;
        }
        if let Some(memory) = update.memory_mb {
            function.memory_mb = memory;
        }
        if let Some(timeout) = update.timeout_s {
            function.timeout_s = timeout;
        }
        if let Some(environment) = update.environment {
            function.environment = serde_json::to_value(&environment)
                .map_err(|e| DomainError::Internal(e.to_string()))?;
        }
        if let Some(description) = update.description {
            function.description = description;
        }
        if let Some(runtime_key) = &update.runtime {
            if function.image.is_some() {
                return Err(DomainError::invalid(
                    "a function with its own image has no runtime",
                ));
            }
            function.runtime_id = Some(resolve_runtime(conn, &project_id, runtime_key)?.id);
        }
        let runtime = match function.runtime_id {
            Some(id) => Some(
                fresco_store::runtimes::get(conn, &Scope::All { project_id: None }, id)
                    .map_err(db_error("runtime", id))?,
            ),
            None => None,
        };
        check_resources(&function, runtime.as_ref(), &limits)?;
        let old_code = function.code_sha256.clone();
        if let Some(package) = &package {
            if function.image.is_some() {
                return Err(DomainError::invalid(
                    "a function with its own image takes no code package",
                ));
            }
            store_package(conn, &project_id, &limits, package)?;
            function.code_sha256 = Some(package.sha256.clone());
        }
        function.updated_at = Utc::now();
        if runs_differently(&before, &function) {
            // Containers of the old state stop serving; the new state gets a new revision.
            function.revision = retirements::record(
                conn,
                &project_id,
                function.id,
                Some(0),
                Revisions::OlderThanThis,
            )?;
        }
        store::save(conn, &function).map_err(db_error("function", &function.name))?;
        if let Some(old) = old_code.filter(|old| Some(old) != function.code_sha256.as_ref()) {
            store::drop_code_if_unused(conn, &project_id, &old)?;
        }
        detail(conn, function)
    })
}

/// Deletes a function with its versions and aliases; returns its id.
pub fn delete(conn: &mut PgConnection, scope: &Scope, key: &str) -> DomainResult<Uuid> {
    let function = store::get_by_ref(conn, scope, key).map_err(db_error("function", key))?;
    super::transaction(conn, |conn| {
        let mut digests = store::version_digests(conn, function.id)?;
        digests.extend(function.code_sha256.clone());
        store::delete(
            conn,
            &Scope::Project(function.project_id.clone()),
            function.id,
        )
        .map_err(db_error("function", key))?;
        for sha in digests {
            store::drop_code_if_unused(conn, &function.project_id, &sha)?;
        }
        retirements::record(
            conn,
            &function.project_id,
            function.id,
            None,
            Revisions::All,
        )?;
        Ok(function.id)
    })
}

/// The function's current package: (format, bytes).
pub fn download(
    conn: &mut PgConnection,
    scope: &Scope,
    key: &str,
) -> DomainResult<(ArchiveFormat, Vec<u8>)> {
    let function = store::get_by_ref(conn, scope, key).map_err(db_error("function", key))?;
    let sha = function.code_sha256.ok_or_else(|| DomainError::NotFound {
        kind: "code of function",
        id: key.to_owned(),
    })?;
    code_package(conn, &function.project_id, &sha)
}

/// A package by digest within a project (agents' code downloads).
pub fn code_package(
    conn: &mut PgConnection,
    project_id: &str,
    sha256: &str,
) -> DomainResult<(ArchiveFormat, Vec<u8>)> {
    let (format, bytes) =
        store::code_content(conn, project_id, sha256).map_err(db_error("code package", sha256))?;
    let format = ArchiveFormat::parse(&format).ok_or_else(|| {
        DomainError::Internal(format!("stored package has unknown format {format}"))
    })?;
    Ok((format, bytes))
}
