//! Functions and their code packages.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

use super::paging::{after, order, Page, PageRequest, SortValue};
use super::schema::{code_packages, executions, function_versions, functions};
use super::{scoped, DbError, DbResult, Scope};

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = functions)]
pub struct Function {
    pub id: Uuid,
    pub project_id: String,
    pub name: String,
    pub runtime_id: Option<Uuid>,
    pub image: Option<String>,
    pub handler: String,
    pub memory_mb: i32,
    pub timeout_s: i32,
    pub environment: serde_json::Value,
    pub description: String,
    pub code_sha256: Option<String>,
    pub latest_version: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Revision of the current settings and code (see `db::retirements`).
    pub revision: i64,
}

/// A code package's metadata (its bytes are only read for downloads).
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = code_packages)]
pub struct CodeInfo {
    pub sha256: String,
    pub format: String,
    pub size: i64,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = code_packages)]
pub struct NewCode<'a> {
    pub project_id: &'a str,
    pub sha256: &'a str,
    pub format: &'a str,
    pub size: i64,
    pub content: &'a [u8],
}

/// Filters of the function list.
#[derive(Debug, Default)]
pub struct FunctionFilter {
    pub name: Option<String>,
    pub runtime_id: Option<Uuid>,
}

type Boxed<'a> = functions::BoxedQuery<'a, diesel::pg::Pg>;

fn in_scope(scope: &Scope) -> Boxed<'static> {
    scoped!(functions::table.into_boxed(), functions::project_id, scope)
}

pub fn insert(conn: &mut PgConnection, function: &Function) -> DbResult<()> {
    diesel::insert_into(functions::table)
        .values(function)
        .execute(conn)?;
    Ok(())
}

pub fn get(conn: &mut PgConnection, scope: &Scope, id: Uuid) -> DbResult<Function> {
    Ok(in_scope(scope)
        .filter(functions::id.eq(id))
        .select(Function::as_select())
        .first(conn)?)
}

/// Looks a function up by id or, failing that, by name within the scope's project.
pub fn get_by_ref(conn: &mut PgConnection, scope: &Scope, key: &str) -> DbResult<Function> {
    match Uuid::parse_str(key) {
        Ok(id) => get(conn, scope, id),
        Err(_) => {
            // Names are unique per project only: across projects a name is ambiguous.
            let mut rows = in_scope(scope)
                .filter(functions::name.eq(key.to_owned()))
                .select(Function::as_select())
                .limit(2)
                .load(conn)?;
            match rows.len() {
                1 => Ok(rows.remove(0)),
                0 => Err(DbError::NotFound),
                _ => Err(DbError::Conflict(
                    "ambiguous function name across projects".into(),
                )),
            }
        }
    }
}

/// Locks the function row for the rest of the transaction (version numbering, updates).
pub fn lock(conn: &mut PgConnection, project_id: &str, id: Uuid) -> DbResult<Function> {
    Ok(functions::table
        .filter(functions::id.eq(id))
        .filter(functions::project_id.eq(project_id))
        .for_update()
        .select(Function::as_select())
        .first(conn)?)
}

pub fn list(
    conn: &mut PgConnection,
    scope: &Scope,
    filter: &FunctionFilter,
    page: &PageRequest<Uuid>,
) -> DbResult<Page<Function>> {
    let mut query = in_scope(scope);
    if let Some(name) = &filter.name {
        query = query.filter(functions::name.eq(name.clone()));
    }
    if let Some(runtime) = filter.runtime_id {
        query = query.filter(functions::runtime_id.eq(runtime));
    }
    if let Some(marker) = page.marker {
        let row = get(conn, scope, marker)?;
        let value = match page.sort_key {
            "name" => SortValue::Text(row.name),
            _ => SortValue::Time(row.created_at),
        };
        query = query.filter(after(page.sort_key, value, Some(("id", row.id)), page.dir));
    }
    let items = query
        .order(diesel::dsl::sql::<diesel::sql_types::Bool>(&order(
            page.sort_key,
            Some("id"),
            page.dir,
        )))
        .limit(page.limit + 1)
        .select(Function::as_select())
        .load(conn)?;
    Ok(Page::from_overfetch(items, page.limit))
}

pub fn count(conn: &mut PgConnection, project_id: &str) -> DbResult<i64> {
    Ok(functions::table
        .filter(functions::project_id.eq(project_id))
        .count()
        .get_result(conn)?)
}

/// Replaces every mutable column of the function (the caller locked and modified it).
pub fn save(conn: &mut PgConnection, function: &Function) -> DbResult<()> {
    diesel::update(
        functions::table
            .filter(functions::id.eq(function.id))
            .filter(functions::project_id.eq(&function.project_id)),
    )
    .set((
        functions::name.eq(&function.name),
        functions::runtime_id.eq(function.runtime_id),
        functions::image.eq(&function.image),
        functions::handler.eq(&function.handler),
        functions::memory_mb.eq(function.memory_mb),
        functions::timeout_s.eq(function.timeout_s),
        functions::environment.eq(&function.environment),
        functions::description.eq(&function.description),
        functions::code_sha256.eq(&function.code_sha256),
        functions::latest_version.eq(function.latest_version),
        functions::updated_at.eq(function.updated_at),
        functions::revision.eq(function.revision),
    ))
    .execute(conn)?;
    Ok(())
}

pub fn delete(conn: &mut PgConnection, scope: &Scope, id: Uuid) -> DbResult<()> {
    let project = scope.project().map(str::to_owned);
    let mut query = diesel::delete(functions::table.filter(functions::id.eq(id))).into_boxed();
    if let Some(project) = project {
        query = query.filter(functions::project_id.eq(project));
    }
    if query.execute(conn)? == 0 {
        return Err(DbError::NotFound);
    }
    Ok(())
}

/// Whether any function uses the runtime.
pub fn runtime_in_use(conn: &mut PgConnection, runtime_id: Uuid) -> DbResult<bool> {
    Ok(diesel::select(diesel::dsl::exists(
        functions::table.filter(functions::runtime_id.eq(runtime_id)),
    ))
    .get_result(conn)?)
}

/// Stores a package (once per project and digest).
pub fn store_code(conn: &mut PgConnection, code: &NewCode) -> DbResult<()> {
    diesel::insert_into(code_packages::table)
        .values(code)
        .on_conflict_do_nothing()
        .execute(conn)?;
    Ok(())
}

/// Whether the project holds the package, locking it against deletion (`FOR KEY SHARE`) until
/// the transaction ends, so a package reused by a new function cannot be collected meanwhile.
pub fn hold_code(conn: &mut PgConnection, project_id: &str, sha256: &str) -> DbResult<bool> {
    Ok(code_packages::table
        .filter(code_packages::project_id.eq(project_id))
        .filter(code_packages::sha256.eq(sha256))
        .select(code_packages::sha256)
        .for_key_share()
        .first::<String>(conn)
        .optional()?
        .is_some())
}

pub fn code_info(conn: &mut PgConnection, project_id: &str, sha256: &str) -> DbResult<CodeInfo> {
    Ok(code_packages::table
        .filter(code_packages::project_id.eq(project_id))
        .filter(code_packages::sha256.eq(sha256))
        .select(CodeInfo::as_select())
        .first(conn)?)
}

/// Metadata of several packages at once, keyed by (project, digest): one query for a page.
pub fn code_infos(
    conn: &mut PgConnection,
    keys: &[(String, String)],
) -> DbResult<std::collections::HashMap<(String, String), CodeInfo>> {
    if keys.is_empty() {
        return Ok(Default::default());
    }
    let projects: Vec<&str> = keys.iter().map(|(p, _)| p.as_str()).collect();
    let digests: Vec<&str> = keys.iter().map(|(_, d)| d.as_str()).collect();
    let rows: Vec<(String, CodeInfo)> = code_packages::table
        .filter(code_packages::project_id.eq_any(projects))
        .filter(code_packages::sha256.eq_any(digests))
        .select((code_packages::project_id, CodeInfo::as_select()))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(project, info)| ((project, info.sha256.clone()), info))
        .collect())
}

/// The package bytes with their format.
pub fn code_content(
    conn: &mut PgConnection,
    project_id: &str,
    sha256: &str,
) -> DbResult<(String, Vec<u8>)> {
    Ok(code_packages::table
        .filter(code_packages::project_id.eq(project_id))
        .filter(code_packages::sha256.eq(sha256))
        .select((code_packages::format, code_packages::content))
        .first(conn)?)
}

/// Total bytes of the project's stored packages.
pub fn code_bytes(conn: &mut PgConnection, project_id: &str) -> DbResult<i64> {
    // sum(bigint) is numeric in PostgreSQL; cast it back rather than pull in a decimal crate.
    Ok(code_packages::table
        .filter(code_packages::project_id.eq(project_id))
        .select(diesel::dsl::sql::<diesel::sql_types::BigInt>(
            "COALESCE(SUM(size), 0)::bigint",
        ))
        .first(conn)?)
}

/// Deletes a package no function, version, queued or running execution refers to any more.
/// A package an execution still needs stays, and the scheduler's periodic collection deletes it
/// once that execution has finished.
pub fn drop_code_if_unused(
    conn: &mut PgConnection,
    project_id: &str,
    sha256: &str,
) -> DbResult<()> {
    let used_by_function = functions::table
        .filter(functions::project_id.eq(project_id))
        .filter(functions::code_sha256.eq(sha256));
    let used_by_version = function_versions::table
        .filter(function_versions::project_id.eq(project_id))
        .filter(function_versions::code_sha256.eq(sha256));
    let used_by_execution = executions::table
        .filter(executions::project_id.eq(project_id))
        .filter(executions::code_sha256.eq(sha256));
    // In a savepoint: an execution queued concurrently (after this statement's snapshot) makes
    // the foreign key refuse the delete, which only means the package is still needed.
    let deleted = conn.transaction(|conn| {
        diesel::delete(
            code_packages::table
                .filter(code_packages::project_id.eq(project_id))
                .filter(code_packages::sha256.eq(sha256))
                .filter(diesel::dsl::not(diesel::dsl::exists(used_by_function)))
                .filter(diesel::dsl::not(diesel::dsl::exists(used_by_version)))
                .filter(diesel::dsl::not(diesel::dsl::exists(used_by_execution))),
        )
        .execute(conn)
    });
    match deleted.map_err(DbError::from) {
        Ok(_) => Ok(()),
        Err(DbError::Conflict(constraint)) if constraint == super::executions::CODE_FOREIGN_KEY => {
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Code digests referenced by a function's versions (to clean up after deleting it).
pub fn version_digests(conn: &mut PgConnection, function_id: Uuid) -> DbResult<Vec<String>> {
    Ok(function_versions::table
        .filter(function_versions::function_id.eq(function_id))
        .filter(function_versions::code_sha256.is_not_null())
        .select(function_versions::code_sha256.assume_not_null())
        .distinct()
        .load(conn)?)
}
