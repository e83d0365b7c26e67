//! Hooks: functions the platform chains around every invocation of a project (`pre` before
//! the function, `post` after it). The API's calls; the invocation path reads a project's
//! hooks through its per-replica cache (`fresco_api::hooks`).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

use super::paging::{after, order, Page, PageRequest, SortValue};
use super::schema::hooks;
use super::{scoped, DbError, DbResult, Scope};

/// Hook kinds, as stored.
pub const PRE: &str = "pre";
pub const POST: &str = "post";
/// Owners, as stored.
pub const OWNER_PROJECT: &str = "project";
pub const OWNER_CLOUD: &str = "cloud";
/// Fail modes, as stored.
pub const FAIL_OPEN: &str = "open";
pub const FAIL_CLOSED: &str = "closed";

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = hooks)]
pub struct Hook {
    pub id: Uuid,
    pub project_id: String,
    pub kind: String,
    pub owner: String,
    pub function_id: Uuid,
    pub function_version: Option<i32>,
    pub alias: Option<String>,
    pub fail_mode: String,
    pub redact: bool,
    pub description: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

type Boxed<'a> = hooks::BoxedQuery<'a, diesel::pg::Pg>;

fn in_scope(scope: &Scope) -> Boxed<'static> {
    scoped!(hooks::table.into_boxed(), hooks::project_id, scope)
}

pub fn insert(conn: &mut PgConnection, hook: &Hook) -> DbResult<()> {
    diesel::insert_into(hooks::table)
        .values(hook)
        .execute(conn)?;
    Ok(())
}

pub fn get(conn: &mut PgConnection, scope: &Scope, id: Uuid) -> DbResult<Hook> {
    Ok(in_scope(scope)
        .filter(hooks::id.eq(id))
        .select(Hook::as_select())
        .first(conn)?)
}

/// Filters of the hook list.
#[derive(Debug, Default)]
pub struct HookFilter {
    pub kind: Option<String>,
}

pub fn list(
    conn: &mut PgConnection,
    scope: &Scope,
    filter: &HookFilter,
    page: &PageRequest<Uuid>,
) -> DbResult<Page<Hook>> {
    let mut query = in_scope(scope);
    if let Some(kind) = &filter.kind {
        query = query.filter(hooks::kind.eq(kind.clone()));
    }
    if let Some(marker) = page.marker {
        let row = get(conn, scope, marker)?;
        query = query.filter(after(
            page.sort_key,
            SortValue::Time(row.created_at),
            Some(("id", row.id)),
            page.dir,
        ));
    }
    let items = query
        .order(diesel::dsl::sql::<diesel::sql_types::Bool>(&order(
            page.sort_key,
            Some("id"),
            page.dir,
        )))
        .limit(page.limit + 1)
        .select(Hook::as_select())
        .load(conn)?;
    Ok(Page::from_overfetch(items, page.limit))
}

/// Every hook of a project, in the order they run (oldest first).
pub fn of_project(conn: &mut PgConnection, project_id: &str) -> DbResult<Vec<Hook>> {
    Ok(hooks::table
        .filter(hooks::project_id.eq(project_id))
        .order((hooks::created_at.asc(), hooks::id.asc()))
        .select(Hook::as_select())
        .load(conn)?)
}

pub fn count(conn: &mut PgConnection, project_id: &str) -> DbResult<i64> {
    Ok(hooks::table
        .filter(hooks::project_id.eq(project_id))
        .count()
        .get_result(conn)?)
}

pub fn delete(conn: &mut PgConnection, id: Uuid) -> DbResult<()> {
    if diesel::delete(hooks::table.filter(hooks::id.eq(id))).execute(conn)? == 0 {
        return Err(DbError::NotFound);
    }
    Ok(())
}
