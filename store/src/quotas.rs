//! Per-project quota overrides; absent rows mean the configured defaults.

use diesel::prelude::*;

use super::schema::quotas;
use super::DbResult;

/// The project's overrides as `(resource, limit)` pairs.
pub fn overrides(conn: &mut PgConnection, project_id: &str) -> DbResult<Vec<(String, i64)>> {
    Ok(quotas::table
        .filter(quotas::project_id.eq(project_id))
        .select((quotas::resource, quotas::hard_limit))
        .load(conn)?)
}

pub fn set(conn: &mut PgConnection, project_id: &str, resource: &str, limit: i64) -> DbResult<()> {
    diesel::insert_into(quotas::table)
        .values((
            quotas::project_id.eq(project_id),
            quotas::resource.eq(resource),
            quotas::hard_limit.eq(limit),
        ))
        .on_conflict((quotas::project_id, quotas::resource))
        .do_update()
        .set((
            quotas::hard_limit.eq(limit),
            quotas::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn clear(conn: &mut PgConnection, project_id: &str) -> DbResult<()> {
    diesel::delete(quotas::table.filter(quotas::project_id.eq(project_id))).execute(conn)?;
    Ok(())
}

/// Serialises quota-checked changes of one project until the transaction ends, so that
/// concurrent creates cannot both pass the same check.
pub fn lock_project(conn: &mut PgConnection, project_id: &str) -> DbResult<()> {
    diesel::sql_query("SELECT pg_advisory_xact_lock(hashtextextended('fresco-quota:' || $1, 0))")
        .bind::<diesel::sql_types::Text, _>(project_id)
        .execute(conn)?;
    Ok(())
}
