//! Runtimes: admin-registered images functions run on. Public ones are visible to every
//! project; private ones only to their owner (and admins).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

use super::paging::{after, order, Page, PageRequest, SortValue};
use super::schema::runtimes;
use super::{DbResult, Scope};

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = runtimes)]
pub struct Runtime {
    pub id: Uuid,
    pub name: String,
    pub image: String,
    pub kind: String,
    pub description: String,
    pub is_public: bool,
    pub project_id: String,
    pub status: String,
    pub network: bool,
    pub memory_min_mb: i32,
    pub memory_max_mb: i32,
    pub timeout_max_s: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Default, AsChangeset)]
#[diesel(table_name = runtimes)]
pub struct RuntimeChanges {
    pub name: Option<String>,
    pub image: Option<String>,
    pub description: Option<String>,
    pub is_public: Option<bool>,
    pub status: Option<String>,
    pub network: Option<bool>,
    pub memory_min_mb: Option<i32>,
    pub memory_max_mb: Option<i32>,
    pub timeout_max_s: Option<i32>,
    pub updated_at: Option<DateTime<Utc>>,
}

type Boxed<'a> = runtimes::BoxedQuery<'a, diesel::pg::Pg>;

/// Runtimes the scope may see: public ones and its own private ones; everything for `All`.
fn visible(scope: &Scope) -> Boxed<'static> {
    let query = runtimes::table.into_boxed();
    match scope {
        Scope::Project(project) => query.filter(
            runtimes::is_public
                .eq(true)
                .or(runtimes::project_id.eq(project.clone())),
        ),
        Scope::All {
            project_id: Some(project),
        } => query.filter(runtimes::project_id.eq(project.clone())),
        Scope::All { project_id: None } => query,
    }
}

pub fn insert(conn: &mut PgConnection, runtime: &Runtime) -> DbResult<()> {
    diesel::insert_into(runtimes::table)
        .values(runtime)
        .execute(conn)?;
    Ok(())
}

pub fn get(conn: &mut PgConnection, scope: &Scope, id: Uuid) -> DbResult<Runtime> {
    Ok(visible(scope)
        .filter(runtimes::id.eq(id))
        .select(Runtime::as_select())
        .first(conn)?)
}

pub fn get_by_name(conn: &mut PgConnection, scope: &Scope, name: &str) -> DbResult<Runtime> {
    Ok(visible(scope)
        .filter(runtimes::name.eq(name.to_owned()))
        .select(Runtime::as_select())
        .first(conn)?)
}

pub fn list(
    conn: &mut PgConnection,
    scope: &Scope,
    page: &PageRequest<Uuid>,
) -> DbResult<Page<Runtime>> {
    let mut query = visible(scope);
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
        .select(Runtime::as_select())
        .load(conn)?;
    Ok(Page::from_overfetch(items, page.limit))
}

pub fn update(conn: &mut PgConnection, id: Uuid, changes: &RuntimeChanges) -> DbResult<Runtime> {
    Ok(diesel::update(runtimes::table.filter(runtimes::id.eq(id)))
        .set(changes)
        .returning(Runtime::as_returning())
        .get_result(conn)?)
}

/// Deletes a runtime; a runtime still used by functions or versions is a `Conflict`.
pub fn delete(conn: &mut PgConnection, id: Uuid) -> DbResult<()> {
    let deleted = diesel::delete(runtimes::table.filter(runtimes::id.eq(id))).execute(conn)?;
    if deleted == 0 {
        return Err(super::DbError::NotFound);
    }
    Ok(())
}
