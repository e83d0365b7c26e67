//! A function's async invocation config (attempts, event age, destinations) and its
//! dead-letter list. The API's calls; the scheduler applies the config when an async
//! execution ends (`queue::Store::finish`).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

use super::paging::{after, order, Page, PageRequest, SortValue};
use super::schema::{dead_letters, function_event_configs};
use super::{DbError, DbResult};

#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = function_event_configs)]
#[diesel(treat_none_as_null = true)]
pub struct EventConfig {
    pub function_id: Uuid,
    pub project_id: String,
    pub max_attempts: i32,
    pub max_event_age_s: Option<i32>,
    pub on_success: Option<Uuid>,
    pub on_failure: Option<Uuid>,
    pub dead_letter: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub fn get(conn: &mut PgConnection, project_id: &str, function_id: Uuid) -> DbResult<EventConfig> {
    Ok(function_event_configs::table
        .filter(function_event_configs::project_id.eq(project_id))
        .filter(function_event_configs::function_id.eq(function_id))
        .select(EventConfig::as_select())
        .first(conn)?)
}

/// Creates or replaces the function's config.
pub fn put(conn: &mut PgConnection, config: &EventConfig) -> DbResult<EventConfig> {
    Ok(diesel::insert_into(function_event_configs::table)
        .values(config)
        .on_conflict(function_event_configs::function_id)
        .do_update()
        .set((
            function_event_configs::max_attempts.eq(config.max_attempts),
            function_event_configs::max_event_age_s.eq(config.max_event_age_s),
            function_event_configs::on_success.eq(config.on_success),
            function_event_configs::on_failure.eq(config.on_failure),
            function_event_configs::dead_letter.eq(config.dead_letter),
            function_event_configs::updated_at.eq(config.updated_at),
        ))
        .returning(EventConfig::as_returning())
        .get_result(conn)?)
}

pub fn delete(conn: &mut PgConnection, project_id: &str, function_id: Uuid) -> DbResult<()> {
    let n = diesel::delete(
        function_event_configs::table
            .filter(function_event_configs::project_id.eq(project_id))
            .filter(function_event_configs::function_id.eq(function_id)),
    )
    .execute(conn)?;
    if n == 0 {
        return Err(DbError::NotFound);
    }
    Ok(())
}

/// A failed async event, kept for its project.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = dead_letters)]
pub struct DeadLetter {
    pub id: Uuid,
    pub project_id: String,
    pub function_id: Uuid,
    pub execution_id: Uuid,
    pub input: Option<Vec<u8>>,
    pub status: String,
    pub error: Option<serde_json::Value>,
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
}

pub fn dead_letter(
    conn: &mut PgConnection,
    project_id: &str,
    function_id: Uuid,
    id: Uuid,
) -> DbResult<DeadLetter> {
    Ok(dead_letters::table
        .filter(dead_letters::project_id.eq(project_id))
        .filter(dead_letters::function_id.eq(function_id))
        .filter(dead_letters::id.eq(id))
        .select(DeadLetter::as_select())
        .first(conn)?)
}

/// The function's dead letters, oldest first by default.
pub fn dead_letters(
    conn: &mut PgConnection,
    project_id: &str,
    function_id: Uuid,
    page: &PageRequest<Uuid>,
) -> DbResult<Page<DeadLetter>> {
    let mut query = dead_letters::table
        .filter(dead_letters::project_id.eq(project_id.to_owned()))
        .filter(dead_letters::function_id.eq(function_id))
        .into_boxed();
    if let Some(marker) = page.marker {
        let row = dead_letter(conn, project_id, function_id, marker)?;
        query = query.filter(after(
            "created_at",
            SortValue::Time(row.created_at),
            Some(("id", row.id)),
            page.dir,
        ));
    }
    let items = query
        .order(diesel::dsl::sql::<diesel::sql_types::Bool>(&order(
            "created_at",
            Some("id"),
            page.dir,
        )))
        .limit(page.limit + 1)
        .select(DeadLetter::as_select())
        .load(conn)?;
    Ok(Page::from_overfetch(items, page.limit))
}

/// Removes a dead letter (it was replayed, in the same transaction).
pub fn remove_dead_letter(
    conn: &mut PgConnection,
    project_id: &str,
    function_id: Uuid,
    id: Uuid,
) -> DbResult<DeadLetter> {
    Ok(diesel::delete(
        dead_letters::table
            .filter(dead_letters::project_id.eq(project_id))
            .filter(dead_letters::function_id.eq(function_id))
            .filter(dead_letters::id.eq(id)),
    )
    .returning(DeadLetter::as_returning())
    .get_result(conn)?)
}
