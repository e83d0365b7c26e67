//! Compute agents as the scheduler reports them (admin view).

use chrono::{Duration, Utc};
use fresco_store::PgConnection;

use super::DomainResult;
use fresco_store::agents::{self as store, Agent};

/// Agents, with those whose heartbeat is older than `down_after` shown as down even if the
/// scheduler has not said so yet (it may be down itself).
pub fn list(conn: &mut PgConnection, down_after: Duration) -> DomainResult<Vec<Agent>> {
    let now = Utc::now();
    let mut agents = store::list(conn)?;
    for agent in &mut agents {
        if now - agent.last_heartbeat > down_after {
            agent.state = "down".into();
        }
    }
    Ok(agents)
}
