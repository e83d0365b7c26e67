//! Compute agents as the scheduler last recorded them (it owns the writes).

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use super::schema::agents;
use super::DbResult;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = agents)]
pub struct Agent {
    pub id: String,
    pub host: String,
    pub url: String,
    pub state: String,
    pub memory_mb_total: i64,
    pub memory_mb_reserved: i64,
    pub cpus: i32,
    pub running: i32,
    pub warm: serde_json::Value,
    pub images: serde_json::Value,
    pub version: String,
    pub last_heartbeat: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

pub fn list(conn: &mut PgConnection) -> DbResult<Vec<Agent>> {
    Ok(agents::table
        .order(agents::id)
        .select(Agent::as_select())
        .load(conn)?)
}
