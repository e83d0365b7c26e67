//! Function versions: immutable snapshots, numbered per function.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

use super::paging::{after, order, Page, PageRequest, SortValue};
use super::schema::{function_aliases, function_versions};
use super::{DbError, DbResult};

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = function_versions)]
pub struct Version {
    pub function_id: Uuid,
    pub version: i32,
    pub project_id: String,
    pub description: String,
    pub runtime_id: Option<Uuid>,
    pub image: Option<String>,
    pub handler: String,
    pub memory_mb: i32,
    pub timeout_s: i32,
    pub environment: serde_json::Value,
    pub code_sha256: Option<String>,
    pub created_at: DateTime<Utc>,
}

// Versions are reached through their function, which the caller has already found within the
// tenant's scope; the project filter is repeated here as a second line of defence.

pub fn insert(conn: &mut PgConnection, version: &Version) -> DbResult<()> {
    diesel::insert_into(function_versions::table)
        .values(version)
        .execute(conn)?;
    Ok(())
}

pub fn get(
    conn: &mut PgConnection,
    project_id: &str,
    function_id: Uuid,
    number: i32,
) -> DbResult<Version> {
    Ok(function_versions::table
        .filter(function_versions::project_id.eq(project_id))
        .filter(function_versions::function_id.eq(function_id))
        .filter(function_versions::version.eq(number))
        .select(Version::as_select())
        .first(conn)?)
}

pub fn list(
    conn: &mut PgConnection,
    project_id: &str,
    function_id: Uuid,
    page: &PageRequest<i32>,
) -> DbResult<Page<Version>> {
    let mut query = function_versions::table
        .filter(function_versions::project_id.eq(project_id.to_owned()))
        .filter(function_versions::function_id.eq(function_id))
        .into_boxed();
    if let Some(marker) = page.marker {
        let row = get(conn, project_id, function_id, marker)?;
        query = query.filter(after(
            "version",
            SortValue::Int(row.version),
            None,
            page.dir,
        ));
    }
    let items = query
        .order(diesel::dsl::sql::<diesel::sql_types::Bool>(&order(
            "version", None, page.dir,
        )))
        .limit(page.limit + 1)
        .select(Version::as_select())
        .load(conn)?;
    Ok(Page::from_overfetch(items, page.limit))
}

/// Deletes a version; one that an alias points to is a `Conflict`.
pub fn delete(
    conn: &mut PgConnection,
    project_id: &str,
    function_id: Uuid,
    number: i32,
) -> DbResult<Version> {
    let in_use: bool = diesel::select(diesel::dsl::exists(
        function_aliases::table
            .filter(function_aliases::function_id.eq(function_id))
            .filter(
                function_aliases::version
                    .eq(number)
                    .or(function_aliases::second_version.eq(number)),
            ),
    ))
    .get_result(conn)?;
    if in_use {
        return Err(DbError::Conflict("version is used by an alias".into()));
    }
    Ok(diesel::delete(
        function_versions::table
            .filter(function_versions::project_id.eq(project_id))
            .filter(function_versions::function_id.eq(function_id))
            .filter(function_versions::version.eq(number)),
    )
    .returning(Version::as_returning())
    .get_result(conn)?)
}

/// Whether any version uses the runtime.
pub fn runtime_in_use(conn: &mut PgConnection, runtime_id: Uuid) -> DbResult<bool> {
    Ok(diesel::select(diesel::dsl::exists(
        function_versions::table.filter(function_versions::runtime_id.eq(runtime_id)),
    ))
    .get_result(conn)?)
}
