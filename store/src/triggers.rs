//! Triggers: what invokes a function besides a caller (cron ticks, webhook calls). The API's
//! calls; the cron ticks are fired by the scheduler's leader (`queue::Store::fire_cron`).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

use super::paging::{after, order, Page, PageRequest, SortValue};
use super::schema::triggers;
use super::{scoped, DbError, DbResult, Scope};

/// Trigger kinds, as stored.
pub const CRON: &str = "cron";
pub const WEBHOOK: &str = "webhook";
pub const NOTIFICATION: &str = "notification";

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = triggers)]
pub struct Trigger {
    pub id: Uuid,
    pub project_id: String,
    pub name: String,
    pub kind: String,
    pub function_id: Uuid,
    pub function_version: Option<i32>,
    pub alias: Option<String>,
    pub input: serde_json::Value,
    pub enabled: bool,
    pub description: String,
    pub cron: Option<String>,
    pub timezone: Option<String>,
    pub next_run_at: Option<DateTime<Utc>>,
    pub last_run_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub webhook_token: Option<String>,
    pub secret: Option<String>,
    pub rate_limit: i32,
    pub sync: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// notification: the event types (patterns with `*`) it fires on.
    pub event_types: Option<Vec<String>>,
}

type Boxed<'a> = triggers::BoxedQuery<'a, diesel::pg::Pg>;

fn in_scope(scope: &Scope) -> Boxed<'static> {
    scoped!(triggers::table.into_boxed(), triggers::project_id, scope)
}

pub fn insert(conn: &mut PgConnection, trigger: &Trigger) -> DbResult<()> {
    diesel::insert_into(triggers::table)
        .values(trigger)
        .execute(conn)?;
    Ok(())
}

pub fn get(conn: &mut PgConnection, scope: &Scope, id: Uuid) -> DbResult<Trigger> {
    Ok(in_scope(scope)
        .filter(triggers::id.eq(id))
        .select(Trigger::as_select())
        .first(conn)?)
}

/// A trigger by id or, failing that, by name within the scope's project; with `lock`, its row
/// is locked for the rest of the transaction.
pub fn get_by_ref(
    conn: &mut PgConnection,
    scope: &Scope,
    key: &str,
    lock: bool,
) -> DbResult<Trigger> {
    let mut query = in_scope(scope);
    query = match Uuid::parse_str(key) {
        Ok(id) => query.filter(triggers::id.eq(id)),
        Err(_) => query.filter(triggers::name.eq(key.to_owned())),
    };
    let mut rows = query.select(Trigger::as_select()).limit(2).load(conn)?;
    let found = match rows.len() {
        1 => rows.remove(0),
        0 => return Err(DbError::NotFound),
        _ => {
            return Err(DbError::Conflict(
                "ambiguous trigger name across projects".into(),
            ))
        }
    };
    if !lock {
        return Ok(found);
    }
    Ok(triggers::table
        .filter(triggers::id.eq(found.id))
        .filter(triggers::project_id.eq(&found.project_id))
        .for_update()
        .select(Trigger::as_select())
        .first(conn)?)
}

/// Filters of the trigger list.
#[derive(Debug, Default)]
pub struct TriggerFilter {
    pub function_id: Option<Uuid>,
    pub kind: Option<String>,
}

pub fn list(
    conn: &mut PgConnection,
    scope: &Scope,
    filter: &TriggerFilter,
    page: &PageRequest<Uuid>,
) -> DbResult<Page<Trigger>> {
    let mut query = in_scope(scope);
    if let Some(function) = filter.function_id {
        query = query.filter(triggers::function_id.eq(function));
    }
    if let Some(kind) = &filter.kind {
        query = query.filter(triggers::kind.eq(kind.clone()));
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
        .select(Trigger::as_select())
        .load(conn)?;
    Ok(Page::from_overfetch(items, page.limit))
}

pub fn count(conn: &mut PgConnection, project_id: &str) -> DbResult<i64> {
    Ok(triggers::table
        .filter(triggers::project_id.eq(project_id))
        .count()
        .get_result(conn)?)
}

/// Replaces every mutable column of the trigger (the caller locked and modified it).
pub fn save(conn: &mut PgConnection, t: &Trigger) -> DbResult<()> {
    diesel::update(
        triggers::table
            .filter(triggers::id.eq(t.id))
            .filter(triggers::project_id.eq(&t.project_id)),
    )
    .set((
        triggers::function_version.eq(t.function_version),
        triggers::alias.eq(&t.alias),
        triggers::input.eq(&t.input),
        triggers::enabled.eq(t.enabled),
        triggers::description.eq(&t.description),
        triggers::cron.eq(&t.cron),
        triggers::timezone.eq(&t.timezone),
        triggers::next_run_at.eq(t.next_run_at),
        triggers::secret.eq(&t.secret),
        triggers::rate_limit.eq(t.rate_limit),
        triggers::sync.eq(t.sync),
        triggers::updated_at.eq(t.updated_at),
        triggers::event_types.eq(&t.event_types),
    ))
    .execute(conn)?;
    Ok(())
}

pub fn delete(conn: &mut PgConnection, scope: &Scope, id: Uuid) -> DbResult<()> {
    let project = scope.project().map(str::to_owned);
    let mut query = diesel::delete(triggers::table.filter(triggers::id.eq(id))).into_boxed();
    if let Some(project) = project {
        query = query.filter(triggers::project_id.eq(project));
    }
    if query.execute(conn)? == 0 {
        return Err(DbError::NotFound);
    }
    Ok(())
}

/// The enabled webhook trigger of `token` (the token is the caller's only credential besides
/// an optional signature: no project scope applies).
pub fn by_webhook(conn: &mut PgConnection, token: &str) -> DbResult<Trigger> {
    Ok(triggers::table
        .filter(triggers::webhook_token.eq(token))
        .filter(triggers::kind.eq(WEBHOOK))
        .filter(triggers::enabled.eq(true))
        .select(Trigger::as_select())
        .first(conn)?)
}

/// Counts one call against the webhook trigger's rate limit (fixed one-minute windows, shared
/// by every API replica: one row update); returns whether it is within the limit and, when it
/// is not, the seconds until the window ends.
pub fn take_webhook_call(conn: &mut PgConnection, id: Uuid) -> DbResult<Result<(), u64>> {
    #[derive(QueryableByName)]
    struct Window {
        #[diesel(sql_type = diesel::sql_types::Int4)]
        rate_count: i32,
        #[diesel(sql_type = diesel::sql_types::Int4)]
        rate_limit: i32,
        #[diesel(sql_type = diesel::sql_types::Float8)]
        left_s: f64,
    }
    let window: Window = diesel::sql_query(
        "UPDATE triggers SET \
           rate_count = CASE WHEN rate_window IS NULL OR rate_window <= now() - interval '1 minute' \
                        THEN 1 ELSE rate_count + 1 END, \
           rate_window = CASE WHEN rate_window IS NULL OR rate_window <= now() - interval '1 minute' \
                         THEN now() ELSE rate_window END \
         WHERE id = $1 \
         RETURNING rate_count, rate_limit, \
           extract(epoch FROM rate_window + interval '1 minute' - now())::float8 AS left_s",
    )
    .bind::<diesel::sql_types::Uuid, _>(id)
    .get_result(conn)?;
    if window.rate_limit < 0 || window.rate_count <= window.rate_limit {
        Ok(Ok(()))
    } else {
        Ok(Err(window.left_s.ceil().max(1.0) as u64))
    }
}

/// Whether `event_type` matches a notification trigger's `pattern`: `*` stands for any run of
/// characters (dots included: `volume.*` matches `volume.create.end`), anything else for
/// itself.
pub fn event_type_matches(pattern: &str, event_type: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = event_type.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        // No `*`: an exact match.
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::event_type_matches;

    #[test]
    fn event_type_patterns() {
        assert!(event_type_matches(
            "compute.instance.create.end",
            "compute.instance.create.end"
        ));
        assert!(!event_type_matches(
            "compute.instance.create.end",
            "compute.instance.create.start"
        ));
        assert!(!event_type_matches(
            "compute.instance",
            "compute.instance.create.end"
        ));
        assert!(event_type_matches("volume.*", "volume.create.end"));
        assert!(!event_type_matches("volume.*", "volume"));
        assert!(!event_type_matches("volume.*", "snapshot.create.end"));
        assert!(event_type_matches("*", "anything.at.all"));
        assert!(event_type_matches(
            "compute.*.end",
            "compute.instance.delete.end"
        ));
        assert!(!event_type_matches(
            "compute.*.end",
            "compute.instance.delete.start"
        ));
        assert!(event_type_matches("*.end", "image.upload.end"));
        assert!(!event_type_matches("a*a", "a"));
        assert!(event_type_matches("a*a", "aa"));
    }
}
