//! Retention: the statements of the periodic purge (old execution records, old bodies, code
//! packages nothing needs any more). Each touches at most `batch` rows, so no purge holds
//! locks for long or competes with the queue for more than a moment.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Integer, Text, Timestamptz};

use super::{fenced, Fence, StorageError, Store};
use crate::ExecutionStatus;

/// The statuses after which an execution never changes (only these are ever purged), as SQL.
fn terminal() -> String {
    ExecutionStatus::sql_list(&ExecutionStatus::TERMINAL)
}

#[derive(QueryableByName)]
struct Stamp {
    #[diesel(sql_type = Timestamptz)]
    created_at: DateTime<Utc>,
}

#[derive(QueryableByName)]
struct Package {
    #[diesel(sql_type = Text)]
    project_id: String,
    #[diesel(sql_type = Text)]
    sha256: String,
}

fn days(n: u64) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

impl Store {
    /// Deletes up to `batch` finished executions created more than `days` days ago; returns how
    /// many. Queued and running ones are never deleted, however old.
    /// Fenced, like every purge statement: a former leader deletes nothing.
    pub fn purge_executions(
        &self,
        fence: &Fence,
        days_kept: u64,
        batch: u32,
    ) -> Result<usize, StorageError> {
        let mut conn = self.conn()?;
        let terminal = terminal();
        fenced(&mut conn, fence, |conn| {
            Ok(diesel::sql_query(format!(
                "DELETE FROM executions WHERE id IN ( \
               SELECT id FROM executions \
               WHERE created_at < now() - make_interval(days => $1) AND status IN {terminal} \
               ORDER BY created_at LIMIT $2)"
            ))
            .bind::<Integer, _>(days(days_kept))
            .bind::<BigInt, _>(i64::from(batch))
            .execute(conn)?)
        })
    }

    /// Drops the result, logs, input and spec of up to `batch` finished executions created
    /// between `from` and `days` days ago (the record itself stays). Returns how many, and the
    /// creation time up to which every finished execution has lost its bodies (the next call's
    /// `from`), so that repeated calls never rescan what they already emptied.
    pub fn purge_bodies(
        &self,
        fence: &Fence,
        days_kept: u64,
        batch: u32,
        from: DateTime<Utc>,
    ) -> Result<(usize, DateTime<Utc>), StorageError> {
        let mut conn = self.conn()?;
        let terminal = terminal();
        let cutoff: Stamp =
            diesel::sql_query("SELECT now() - make_interval(days => $1) AS created_at")
                .bind::<Integer, _>(days(days_kept))
                .get_result(&mut conn)?;
        let emptied = diesel::sql_query(format!(
            "UPDATE executions SET result = NULL, logs = '', input = NULL, spec = NULL \
             WHERE id IN ( \
               SELECT id FROM executions \
               WHERE created_at >= $1 AND created_at < $2 AND status IN {terminal} \
                 AND (result IS NOT NULL OR logs <> '' OR input IS NOT NULL OR spec IS NOT NULL) \
               ORDER BY created_at LIMIT $3) \
             RETURNING created_at"
        ))
        .bind::<Timestamptz, _>(from)
        .bind::<Timestamptz, _>(cutoff.created_at)
        .bind::<BigInt, _>(i64::from(batch));
        let emptied: Vec<Stamp> = fenced(&mut conn, fence, |conn| Ok(emptied.load(conn)?))?;
        let reached = if emptied.len() < batch as usize {
            cutoff.created_at
        } else {
            emptied.iter().map(|s| s.created_at).max().unwrap_or(from)
        };
        Ok((emptied.len(), reached))
    }

    /// Deletes up to `batch` code packages that no function, version, queued or running
    /// execution refers to; returns how many. Each delete re-checks in its own statement, and
    /// the foreign keys refuse a package that became used meanwhile (that refusal only means
    /// it is needed, and it is skipped).
    pub fn collect_code(&self, fence: &Fence, batch: u32) -> Result<usize, StorageError> {
        const UNUSED: &str = "NOT EXISTS (SELECT 1 FROM functions f \
                  WHERE f.project_id = c.project_id AND f.code_sha256 = c.sha256) \
             AND NOT EXISTS (SELECT 1 FROM function_versions v \
                  WHERE v.project_id = c.project_id AND v.code_sha256 = c.sha256) \
             AND NOT EXISTS (SELECT 1 FROM executions e \
                  WHERE e.project_id = c.project_id AND e.code_sha256 = c.sha256)";
        let mut conn = self.conn()?;
        let candidates: Vec<Package> = diesel::sql_query(format!(
            "SELECT c.project_id, c.sha256 FROM code_packages c WHERE {UNUSED} LIMIT $1"
        ))
        .bind::<BigInt, _>(i64::from(batch))
        .load(&mut conn)?;
        let mut deleted = 0;
        for package in candidates {
            let delete = diesel::sql_query(format!(
                "DELETE FROM code_packages c WHERE c.project_id = $1 AND c.sha256 = $2 AND {UNUSED}"
            ))
            .bind::<Text, _>(&package.project_id)
            .bind::<Text, _>(&package.sha256);
            match fenced(&mut conn, fence, |conn| Ok(delete.execute(conn)?)) {
                Ok(n) => deleted += n,
                Err(e) if e.is_unavailable() || e.is_fenced() => return Err(e),
                Err(e) => log::info!(
                    "code package {} of project {} is in use again, kept: {e}",
                    package.sha256,
                    package.project_id
                ),
            }
        }
        Ok(deleted)
    }
}
