//! Aliases: names pointing at a version, optionally splitting traffic with a second one.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

use super::paging::{after, order, Page, PageRequest, SortValue};
use super::schema::function_aliases;
use super::{DbError, DbResult};

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = function_aliases)]
pub struct Alias {
    pub function_id: Uuid,
    pub name: String,
    pub project_id: String,
    pub version: i32,
    pub second_version: Option<i32>,
    pub second_weight: i32,
    pub description: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// A version that gets a copy of `shadow_percent`% of the invocations (see `shadows`).
    pub shadow_version: Option<i32>,
    pub shadow_percent: i32,
}

pub fn insert(conn: &mut PgConnection, alias: &Alias) -> DbResult<()> {
    diesel::insert_into(function_aliases::table)
        .values(alias)
        .execute(conn)?;
    Ok(())
}

pub fn get(
    conn: &mut PgConnection,
    project_id: &str,
    function_id: Uuid,
    name: &str,
) -> DbResult<Alias> {
    Ok(function_aliases::table
        .filter(function_aliases::project_id.eq(project_id))
        .filter(function_aliases::function_id.eq(function_id))
        .filter(function_aliases::name.eq(name))
        .select(Alias::as_select())
        .first(conn)?)
}

pub fn list(
    conn: &mut PgConnection,
    project_id: &str,
    function_id: Uuid,
    page: &PageRequest<String>,
) -> DbResult<Page<Alias>> {
    let mut query = function_aliases::table
        .filter(function_aliases::project_id.eq(project_id.to_owned()))
        .filter(function_aliases::function_id.eq(function_id))
        .into_boxed();
    if let Some(marker) = &page.marker {
        let row = get(conn, project_id, function_id, marker)?;
        query = query.filter(after("name", SortValue::Text(row.name), None, page.dir));
    }
    let items = query
        .order(diesel::dsl::sql::<diesel::sql_types::Bool>(&order(
            "name", None, page.dir,
        )))
        .limit(page.limit + 1)
        .select(Alias::as_select())
        .load(conn)?;
    Ok(Page::from_overfetch(items, page.limit))
}

/// Writes the alias's targets (its shadow too) and description.
pub fn save(conn: &mut PgConnection, alias: &Alias) -> DbResult<()> {
    let updated = diesel::update(
        function_aliases::table
            .filter(function_aliases::project_id.eq(&alias.project_id))
            .filter(function_aliases::function_id.eq(alias.function_id))
            .filter(function_aliases::name.eq(&alias.name)),
    )
    .set((
        function_aliases::version.eq(alias.version),
        function_aliases::second_version.eq(alias.second_version),
        function_aliases::second_weight.eq(alias.second_weight),
        function_aliases::description.eq(&alias.description),
        function_aliases::updated_at.eq(alias.updated_at),
        function_aliases::shadow_version.eq(alias.shadow_version),
        function_aliases::shadow_percent.eq(alias.shadow_percent),
    ))
    .execute(conn)?;
    if updated == 0 {
        return Err(DbError::NotFound);
    }
    Ok(())
}

pub fn delete(
    conn: &mut PgConnection,
    project_id: &str,
    function_id: Uuid,
    name: &str,
) -> DbResult<()> {
    let deleted = diesel::delete(
        function_aliases::table
            .filter(function_aliases::project_id.eq(project_id))
            .filter(function_aliases::function_id.eq(function_id))
            .filter(function_aliases::name.eq(name)),
    )
    .execute(conn)?;
    if deleted == 0 {
        return Err(DbError::NotFound);
    }
    Ok(())
}
