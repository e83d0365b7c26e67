//! The scheduler's database: its pool, the queue operations (claim, finish, requeue), agents
//! marked down, the retirement log's reads and the retention purge. Every leader-only write is
//! fenced by the leader lease (`Fence`). Every call blocks; async callers run them on tokio's
//! blocking pool.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use diesel::dsl::{now, sql};
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool, PooledConnection};
use diesel::sql_types::{Array, BigInt, Bool, Integer, Nullable, Text, Timestamptz};
use fresco_common::storable;
use fresco_common::wire::{Heartbeat, RetiredKey, RETIREMENT_LOG_LOCK};
use uuid::Uuid;

use crate::ExecutionStatus;

mod events;
mod retention;

pub use events::{
    merge_event, notification_execution_id, tick_execution_id, Fired, Notification, Outcome,
    MAX_CHAIN_DEPTH,
};

/// The NOTIFY channel the API signals new async executions on.
pub const QUEUE_CHANNEL: &str = "fresco_executions";

use crate::schema::{agents, executions, function_retirements, quotas, scheduler_leader};

/// Quota resource names the scheduler enforces.
pub const CONCURRENT_RESOURCE: &str = "concurrent_executions";
pub const PER_MINUTE_RESOURCE: &str = "executions_per_minute";

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("cannot create the database pool: {0}")]
    Pool(#[from] r2d2::Error),
    #[error("database error: {0}")]
    Query(#[from] diesel::result::Error),
    /// The write needs the leader's lease, and this scheduler no longer holds it.
    #[error("not the leader (epoch {epoch} is over)")]
    Fenced { epoch: i64 },
    #[error("database task failed: {0}")]
    Task(String),
}

impl StorageError {
    /// A fenced write: retrying it can never succeed.
    pub fn is_fenced(&self) -> bool {
        matches!(self, StorageError::Fenced { .. })
    }

    /// Whether the database could not be reached (worth retrying the same write later), as
    /// opposed to a refusal of what was written (retrying it would fail forever).
    pub fn is_unavailable(&self) -> bool {
        use diesel::result::{DatabaseErrorKind, Error};
        match self {
            StorageError::Pool(_) => true,
            StorageError::Query(Error::DatabaseError(
                DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
                _,
            )) => true,
            StorageError::Query(Error::DatabaseError(_, info)) => {
                let message = info.message().to_ascii_lowercase();
                [
                    "server closed the connection",
                    "connection refused",
                    "terminating connection",
                    "no connection to the server",
                    "could not connect",
                    "the database system is",
                ]
                .iter()
                .any(|needle| message.contains(needle))
            }
            StorageError::Query(Error::BrokenTransactionManager) => true,
            StorageError::Query(_) | StorageError::Task(_) | StorageError::Fenced { .. } => false,
        }
    }
}

/// Proof of leadership handed to fenced writes: this holder, in this term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub holder: Arc<str>,
    pub epoch: i64,
}

/// Inside a transaction: locks the lease row (`FOR SHARE`: a takeover waits for this
/// transaction) and fails unless `fence` names the current, unexpired term.
fn check_fence(conn: &mut PgConnection, fence: &Fence) -> Result<(), StorageError> {
    let current: Option<(String, i64, bool)> = scheduler_leader::table
        .filter(scheduler_leader::id.eq(1))
        .select((
            scheduler_leader::holder,
            scheduler_leader::epoch,
            scheduler_leader::expires_at.gt(now),
        ))
        .for_share()
        .first(conn)
        .optional()?;
    match current {
        Some((holder, epoch, true)) if epoch == fence.epoch && *holder == *fence.holder => Ok(()),
        _ => Err(StorageError::Fenced { epoch: fence.epoch }),
    }
}

/// A fenced transaction: `f` runs only while `fence` is the current term.
fn fenced<T>(
    conn: &mut PgConnection,
    fence: &Fence,
    f: impl FnOnce(&mut PgConnection) -> Result<T, StorageError>,
) -> Result<T, StorageError> {
    conn.transaction(|conn| {
        check_fence(conn, fence)?;
        f(conn)
    })
}

/// Session settings of every pooled connection: a transaction left idle (its client frozen or
/// its host hung) ends after `idle_in_transaction`, so it cannot hold row locks for longer.
#[derive(Debug, Clone, Copy)]
struct SessionSettings {
    idle_in_transaction: Duration,
}

impl CustomizeConnection<PgConnection, diesel::r2d2::Error> for SessionSettings {
    fn on_acquire(&self, conn: &mut PgConnection) -> Result<(), diesel::r2d2::Error> {
        let ms = self.idle_in_transaction.as_millis().max(1);
        diesel::sql_query(format!("SET idle_in_transaction_session_timeout = {ms}"))
            .execute(conn)
            .map(|_| ())
            .map_err(diesel::r2d2::Error::QueryError)
    }
}

/// `url` with TCP keepalives and a user timeout (libpq parameters), unless it sets them: a
/// hung database host fails the scheduler's queries within about `timeout` instead of never.
pub fn with_tcp_timeouts(url: &str, timeout: Duration) -> String {
    if !(url.starts_with("postgresql://") || url.starts_with("postgres://")) {
        return url.to_owned();
    }
    let mut out = url.to_owned();
    let ms = timeout.as_millis().max(1).to_string();
    for (key, value) in [
        ("keepalives", "1"),
        ("keepalives_idle", "2"),
        ("keepalives_interval", "1"),
        ("keepalives_count", "3"),
        ("tcp_user_timeout", ms.as_str()),
    ] {
        let query = out.split_once('?').map_or("", |(_, q)| q);
        if query.split('&').any(|p| p.split('=').next() == Some(key)) {
            continue;
        }
        out.push(if out.contains('?') { '&' } else { '?' });
        out.push_str(key);
        out.push('=');
        out.push_str(value);
    }
    out
}

/// A queued async execution, as claimed.
#[derive(Debug, Clone, Queryable)]
pub struct Queued {
    pub id: Uuid,
    pub project_id: String,
    pub spec: Option<serde_json::Value>,
    pub input: Option<Vec<u8>>,
    /// Attempts before this one.
    pub attempts: i32,
    /// The attempts its function's event config allows, if it has one.
    pub max_attempts: Option<i32>,
    /// Older than its function's `max_event_age_s`: it is not run (the claim fails it).
    pub expired: bool,
}

/// A project's execution limits; negative means unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub concurrent: i64,
    pub per_minute: i64,
}

/// What to do with one queued execution, decided by the caller during a claim.
#[derive(Debug, Clone)]
pub enum Verdict {
    /// Run it on this agent: it becomes `running` with one more attempt.
    Run { agent_id: Arc<str> },
    /// Leave it queued, and every later one of the same project in this claim (quota).
    LeaveProject,
    /// Leave this one queued (no agent has room for it now).
    Leave,
    /// It cannot run at all: `error` with this reason.
    Fail(String),
}

/// An execution in `running` state, for reconciliation.
#[derive(Debug, Clone, Queryable)]
pub struct Running {
    pub id: Uuid,
    pub agent_id: Option<String>,
    pub attempts: i32,
    pub started_at: Option<chrono::DateTime<chrono::Utc>>,
    pub timeout_s: Option<i32>,
}

/// How one attempt ended, to be written. A `Completed` carries what the function produced:
/// build it with [`Finish::completed`], which makes that text storable.
#[derive(Debug, Clone)]
pub enum Finish {
    /// The agent answered: the execution's final state.
    Completed {
        status: ExecutionStatus,
        result: Option<String>,
        error: Option<serde_json::Value>,
        duration_ms: f64,
        max_memory_mb: Option<f64>,
        cpu_ms: Option<f64>,
        cold: bool,
        logs: String,
        init_duration_ms: Option<f64>,
    },
    /// The attempt was lost: queue it again. With `refund`, the attempt does not count
    /// (the agent refused it before any of the function ran, e.g. its engine is down).
    Requeue { refund: bool },
    /// The execution failed for good: `error` with this reason.
    Fail(String),
}

impl Finish {
    /// The end of an attempt the agent answered, with every NUL of the function's output
    /// replaced (`fresco_common::storable`): PostgreSQL cannot store them.
    #[allow(clippy::too_many_arguments)]
    pub fn completed(
        status: ExecutionStatus,
        mut result: Option<String>,
        mut error: Option<serde_json::Value>,
        duration_ms: f64,
        max_memory_mb: Option<f64>,
        cpu_ms: Option<f64>,
        cold: bool,
        mut logs: String,
        init_duration_ms: Option<f64>,
    ) -> Self {
        if let Some(result) = &mut result {
            storable::fix_text(result);
        }
        if let Some(error) = &mut error {
            storable::fix_json(error);
        }
        storable::fix_text(&mut logs);
        Finish::Completed {
            status,
            result,
            error,
            duration_ms,
            max_memory_mb,
            cpu_ms,
            cold,
            logs,
            init_duration_ms,
        }
    }

    /// Roughly the memory it holds (for the dispatcher's byte bound).
    pub fn size(&self) -> usize {
        const OVERHEAD: usize = 256;
        match self {
            Finish::Completed {
                result,
                error,
                logs,
                ..
            } => {
                OVERHEAD
                    + result.as_ref().map_or(0, String::len)
                    + error.as_ref().map_or(0, |e| e.to_string().len())
                    + logs.len()
            }
            Finish::Requeue { .. } => OVERHEAD,
            Finish::Fail(reason) => OVERHEAD + reason.len(),
        }
    }

    /// What to write instead when PostgreSQL refused this end: a platform error that says how
    /// the function ended.
    pub fn rejected(&self, reason: &str) -> Finish {
        let ended = match self {
            Finish::Completed { status, .. } => {
                format!("; the function ended with status {status}")
            }
            Finish::Requeue { .. } | Finish::Fail(_) => String::new(),
        };
        Finish::Fail(format!(
            "the database refused this execution's result ({reason}){ended}"
        ))
    }
}

/// The scheduler's database.
#[derive(Clone)]
pub struct Store {
    pool: Pool<ConnectionManager<PgConnection>>,
    /// `[api] allowed_image_prefixes`: what the executions the scheduler queues itself (cron
    /// ticks, destinations) may run, as the API checks its own.
    allowed_image_prefixes: Arc<[String]>,
}

type Conn = PooledConnection<ConnectionManager<PgConnection>>;

/// The `error` column of an execution the platform gave up on (Lambda's error shape).
pub fn platform_error(reason: &str) -> serde_json::Value {
    serde_json::json!({"errorType": "Platform.Error", "errorMessage": storable::text(reason)})
}

impl Store {
    /// Opens a pool; fails when the database cannot be reached. A session idle in a
    /// transaction for `idle_in_transaction` is ended by the server (see `SessionSettings`).
    pub fn connect(
        url: &str,
        max_size: u32,
        timeout: Duration,
        idle_in_transaction: Duration,
    ) -> Result<Self, StorageError> {
        let pool = Pool::builder()
            .max_size(max_size.max(2))
            .connection_timeout(timeout)
            .connection_customizer(Box::new(SessionSettings {
                idle_in_transaction,
            }))
            .build(ConnectionManager::<PgConnection>::new(with_tcp_timeouts(
                url,
                idle_in_transaction.max(Duration::from_secs(1)),
            )))?;
        Ok(Self {
            pool,
            allowed_image_prefixes: Arc::from(Vec::new()),
        })
    }

    /// The images of functions' own that executions the scheduler queues may run.
    pub fn with_allowed_image_prefixes(mut self, prefixes: Vec<String>) -> Self {
        self.allowed_image_prefixes = Arc::from(prefixes);
        self
    }

    fn conn(&self) -> Result<Conn, StorageError> {
        Ok(self.pool.get()?)
    }

    /// Writes an agent's reported state (state `up`).
    pub fn upsert_agent(&self, hb: &Heartbeat) -> Result<(), StorageError> {
        let mut conn = self.conn()?;
        let warm = serde_json::to_value(&hb.warm).unwrap_or_default();
        let images = serde_json::to_value(&hb.images).unwrap_or_default();
        let running = i32::try_from(hb.running).unwrap_or(i32::MAX);
        let values = (
            agents::id.eq(&hb.agent_id),
            agents::host.eq(&hb.host),
            agents::url.eq(&hb.url),
            agents::state.eq("up"),
            agents::memory_mb_total.eq(hb.memory_mb_total),
            agents::memory_mb_reserved.eq(hb.memory_mb_reserved),
            agents::cpus.eq(hb.cpus),
            agents::running.eq(running),
            agents::warm.eq(&warm),
            agents::images.eq(&images),
            agents::version.eq(&hb.version),
            agents::last_heartbeat.eq(now),
        );
        diesel::insert_into(agents::table)
            .values(values)
            .on_conflict(agents::id)
            .do_update()
            .set(values)
            .execute(&mut conn)?;
        Ok(())
    }

    /// Marks agents down (leader only).
    pub fn mark_agents_down(&self, fence: &Fence, ids: &[String]) -> Result<(), StorageError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn()?;
        fenced(&mut conn, fence, |conn| {
            diesel::update(agents::table.filter(agents::id.eq_any(ids)))
                .set(agents::state.eq("down"))
                .execute(conn)?;
            Ok(())
        })
    }

    /// Marks down the agents still `up` in the table whose last heartbeat is older than
    /// `down_time` (leader only); returns their ids.
    pub fn mark_silent_agents_down(
        &self,
        fence: &Fence,
        down_time: Duration,
    ) -> Result<Vec<String>, StorageError> {
        use diesel::dsl::IntervalDsl;
        let mut conn = self.conn()?;
        let seconds = i64::try_from(down_time.as_secs()).unwrap_or(i64::MAX / 1_000_000);
        fenced(&mut conn, fence, |conn| {
            Ok(
                diesel::update(agents::table.filter(agents::state.eq("up")).filter(
                    agents::last_heartbeat.lt(sql::<Timestamptz>("now()") - seconds.seconds()),
                ))
                .set(agents::state.eq("down"))
                .returning(agents::id)
                .get_results(conn)?,
            )
        })
    }

    /// Claims up to `limit` queued async executions, fairly across projects: the projects with
    /// queued work (beyond those in `skip`) are taken in turn from `cursor` on, each offers its
    /// oldest rows (at most `limit / projects`, at least one), and the rows are decided round
    /// by round (every project's oldest first, then every project's second, ...). So one
    /// project's backlog, placeable or not, costs the others at most its share of a claim.
    /// Rows other transactions hold are skipped. `decide` is asked about each row with the
    /// project's limits (from `quotas`, else `defaults`); the rows it runs become `running` in
    /// the same transaction. Projects it leaves are added to `skip`; `cursor` moves past the
    /// projects served. Fenced: nothing is claimed unless `fence` is the current term.
    pub fn claim(
        &self,
        fence: &Fence,
        limit: i64,
        skip: &mut HashSet<String>,
        cursor: &mut String,
        defaults: Limits,
        mut decide: impl FnMut(&Queued, Limits) -> Verdict,
    ) -> Result<Claim, StorageError> {
        let mut conn = self.conn()?;
        fenced(&mut conn, fence, |conn| {
            // The claim commits synchronously (its WAL flushed) although it is on the
            // enqueue-to-start path: a claim lost in a PostgreSQL crash would let the attempt
            // run uncounted, and the row be claimed again under the same attempt number
            // (seen in the fault suite's `pg_ctl restart -m immediate`).
            let limit = limit.max(1);
            let wanted = usize::try_from(limit).unwrap_or(usize::MAX);
            let projects = queued_projects(conn, cursor, skip, wanted)?;
            let mut claim = Claim::default();
            if projects.is_empty() {
                return Ok(claim);
            }
            claim.more = projects.len() == wanted;
            if let Some(last) = projects.last() {
                cursor.clone_from(last);
            }
            let per_project = (limit + projects.len() as i64 - 1) / projects.len() as i64;
            let offered: Vec<Offered> = diesel::sql_query(format!(
                "SELECT e.id, e.project_id, e.spec, e.input, e.attempts, e.created_at, \
                   (SELECT c.max_attempts FROM function_event_configs c \
                    WHERE c.function_id = e.function_id) AS max_attempts, \
                   COALESCE((SELECT e.created_at < now() - make_interval(secs => c.max_event_age_s) \
                    FROM function_event_configs c \
                    WHERE c.function_id = e.function_id AND c.max_event_age_s IS NOT NULL), \
                    false) AS expired \
                 FROM unnest($1::text[]) AS p(project_id) \
                 CROSS JOIN LATERAL ( \
                   SELECT x.id, x.project_id, x.function_id, x.spec, x.input, x.attempts, \
                     x.created_at \
                   FROM executions x \
                   WHERE x.project_id = p.project_id AND x.status = '{}' AND x.is_async \
                     AND (x.not_before IS NULL OR x.not_before <= now()) \
                   ORDER BY x.created_at LIMIT $2 \
                   FOR UPDATE OF x SKIP LOCKED) e",
                ExecutionStatus::Queued
            ))
            .bind::<Array<Text>, _>(&projects)
            .bind::<BigInt, _>(per_project)
            .load(conn)?;
            claim.rows_seen = offered.len();
            let rows = round_robin(&projects, offered, per_project, &mut claim.more, wanted);
            let limits = load_limits(conn, &rows, defaults)?;
            let mut by_agent: HashMap<Arc<str>, Vec<Uuid>> = HashMap::new();
            let mut failed = Vec::new();
            let mut ran: HashSet<String> = HashSet::new();
            let mut left: HashSet<String> = HashSet::new();
            for row in rows {
                if skip.contains(&row.project_id) {
                    continue;
                }
                if row.expired {
                    failed.push((
                        row.id,
                        "the event is older than its function's max_event_age_s: not run"
                            .to_owned(),
                    ));
                    continue;
                }
                let project_limits = limits.get(&row.project_id).copied().unwrap_or(defaults);
                match decide(&row, project_limits) {
                    Verdict::Run { agent_id } => {
                        ran.insert(row.project_id.clone());
                        by_agent.entry(agent_id.clone()).or_default().push(row.id);
                        claim.run.push((row, agent_id));
                    }
                    Verdict::LeaveProject => {
                        left.insert(row.project_id.clone());
                        skip.insert(row.project_id.clone());
                    }
                    Verdict::Leave => {
                        claim.out_of_capacity = true;
                        left.insert(row.project_id.clone());
                    }
                    Verdict::Fail(reason) => failed.push((row.id, reason)),
                }
            }
            claim.refused = left.difference(&ran).cloned().collect();
            for (agent, ids) in &by_agent {
                diesel::update(executions::table.filter(executions::id.eq_any(ids)))
                    .set((
                        executions::status.eq(ExecutionStatus::Running),
                        executions::agent_id.eq(&**agent),
                        executions::attempts.eq(executions::attempts + 1),
                        executions::leader_epoch.eq(fence.epoch),
                        executions::started_at.eq(now),
                        executions::memory_mb.eq(sql::<Integer>(
                            "COALESCE((spec->>'memory_mb')::int, memory_mb)",
                        )),
                    ))
                    .execute(conn)?;
            }
            for (id, reason) in &failed {
                diesel::update(executions::table.filter(executions::id.eq(id)))
                    .set((
                        executions::status.eq(ExecutionStatus::Error),
                        executions::error.eq(Some(platform_error(reason))),
                        executions::leader_epoch.eq(fence.epoch),
                        executions::finished_at.eq(now),
                    ))
                    .execute(conn)?;
                events::after_end(conn, *id, &self.allowed_image_prefixes)?;
            }
            claim.failed = failed.len();
            Ok(claim)
        })
    }

    /// Writes how attempts ended. Each write applies only while the execution is still
    /// `running` in that attempt, so a late or duplicate answer cannot overwrite a newer
    /// state. Fenced: nothing is written unless `fence` is the current term. Returns how many
    /// executions changed.
    pub fn finish(
        &self,
        fence: &Fence,
        items: &[(Uuid, i32, &Finish)],
    ) -> Result<usize, StorageError> {
        if items.is_empty() {
            return Ok(0);
        }
        let mut conn = self.conn()?;
        fenced(&mut conn, fence, |conn| {
            let mut changed = 0;
            let mut requeued = false;
            for (id, attempt, finish) in items {
                let target = executions::table
                    .filter(executions::id.eq(id))
                    .filter(executions::status.eq(ExecutionStatus::Running))
                    .filter(executions::attempts.eq(attempt));
                let written = match finish {
                    Finish::Completed {
                        status,
                        result,
                        error,
                        duration_ms,
                        max_memory_mb,
                        cpu_ms,
                        cold,
                        logs,
                        init_duration_ms,
                    } => diesel::update(target)
                        .set((
                            executions::status.eq(*status),
                            executions::result.eq(result),
                            executions::error.eq(error),
                            executions::duration_ms.eq(Some(duration_ms)),
                            executions::max_memory_mb.eq(max_memory_mb),
                            executions::cpu_ms.eq(cpu_ms),
                            executions::cold.eq(Some(cold)),
                            executions::logs.eq(logs),
                            executions::init_duration_ms.eq(init_duration_ms),
                            executions::leader_epoch.eq(fence.epoch),
                            executions::finished_at.eq(now),
                        ))
                        .execute(conn)?,
                    Finish::Requeue { refund } => {
                        let attempts =
                            sql::<Integer>(if *refund { "attempts - 1" } else { "attempts" });
                        let n = diesel::update(target)
                            .set((
                                executions::status.eq(ExecutionStatus::Queued),
                                executions::attempts.eq(attempts),
                                executions::leader_epoch.eq(fence.epoch),
                                executions::agent_id.eq(None::<String>),
                                executions::started_at.eq(None::<chrono::DateTime<chrono::Utc>>),
                            ))
                            .execute(conn)?;
                        requeued |= n > 0;
                        n
                    }
                    Finish::Fail(reason) => diesel::update(target)
                        .set((
                            executions::status.eq(ExecutionStatus::Error),
                            executions::error.eq(Some(platform_error(reason))),
                            executions::leader_epoch.eq(fence.epoch),
                            executions::finished_at.eq(now),
                        ))
                        .execute(conn)?,
                };
                if written > 0 && !matches!(finish, Finish::Requeue { .. }) {
                    events::after_end(conn, *id, &self.allowed_image_prefixes)?;
                }
                changed += written;
            }
            if requeued {
                diesel::sql_query(format!("NOTIFY {QUEUE_CHANNEL}")).execute(conn)?;
            }
            Ok(changed)
        })
    }

    /// Async executions in `running` state.
    pub fn running(&self) -> Result<Vec<Running>, StorageError> {
        let mut conn = self.conn()?;
        Ok(executions::table
            .filter(executions::status.eq(ExecutionStatus::Running))
            .filter(executions::is_async.eq(true))
            .select((
                executions::id,
                executions::agent_id,
                executions::attempts,
                executions::started_at,
                sql::<Nullable<Integer>>("(spec->>'timeout_s')::int"),
            ))
            .load(&mut conn)?)
    }

    /// The whole retirement log, in `seq` order, and the last `seq` ever given out (the
    /// floor of an empty log). Taken under the log's lock (shared), so no writer is between
    /// drawing a `seq` and committing it: every `seq` up to that last one is visible or gone.
    pub fn load_retirements(&self) -> Result<(Vec<Entry>, i64), StorageError> {
        #[derive(QueryableByName)]
        struct Sequence {
            #[diesel(sql_type = BigInt)]
            last_value: i64,
            #[diesel(sql_type = Bool)]
            is_called: bool,
        }
        let mut conn = self.conn()?;
        conn.transaction(|conn| {
            diesel::sql_query("SELECT pg_advisory_xact_lock_shared($1)")
                .bind::<BigInt, _>(RETIREMENT_LOG_LOCK)
                .execute(conn)?;
            let rows = retirement_rows(conn, 0, i64::MAX)?;
            let sequence: Sequence =
                diesel::sql_query("SELECT last_value, is_called FROM function_retirements_seq_seq")
                    .get_result(conn)?;
            let last = if sequence.is_called {
                sequence.last_value
            } else {
                0
            };
            Ok((rows, last))
        })
    }

    /// Retirements after `seq`, at most `limit`, in `seq` order.
    pub fn retirements_after(&self, seq: i64, limit: i64) -> Result<Vec<Entry>, StorageError> {
        let mut conn = self.conn()?;
        Ok(retirement_rows(&mut conn, seq, limit)?)
    }

    /// Deletes the retirements created more than `retention` ago, as a prefix of the log
    /// (every row up to the newest expired one), so a loaded log's floor stays exact. Leader
    /// only (fenced).
    pub fn purge_retirements(
        &self,
        fence: &Fence,
        retention: Duration,
    ) -> Result<usize, StorageError> {
        let mut conn = self.conn()?;
        let seconds = i64::try_from(retention.as_secs()).unwrap_or(i64::MAX / 1_000_000);
        fenced(&mut conn, fence, |conn| {
            Ok(diesel::sql_query(
                "DELETE FROM function_retirements WHERE seq <= \
                 (SELECT max(seq) FROM function_retirements \
                  WHERE created_at < now() - make_interval(secs => $1::double precision))",
            )
            .bind::<BigInt, _>(seconds)
            .execute(conn)?)
        })
    }

    /// The async queue's depth and the age of its oldest execution, in seconds (0 when empty).
    pub fn queue_depth(&self) -> Result<(i64, i64), StorageError> {
        #[derive(QueryableByName)]
        struct Depth {
            #[diesel(sql_type = BigInt)]
            depth: i64,
            #[diesel(sql_type = BigInt)]
            age: i64,
        }
        let mut conn = self.conn()?;
        let depth: Depth = diesel::sql_query(format!(
            "SELECT count(*) AS depth, \
               COALESCE(extract(epoch FROM now() - min(created_at)), 0)::bigint AS age \
             FROM executions WHERE status = '{}'",
            ExecutionStatus::Queued
        ))
        .get_result(&mut conn)?;
        Ok((depth.depth, depth.age))
    }

    /// Checks that the database answers.
    pub fn ping(&self) -> Result<(), StorageError> {
        let mut conn = self.conn()?;
        diesel::sql_query("SELECT 1").execute(&mut conn)?;
        Ok(())
    }
}

/// The result of one claim.
#[derive(Debug, Default)]
pub struct Claim {
    /// Executions now `running`, with their agent.
    pub run: Vec<(Queued, Arc<str>)>,
    /// Executions that failed for good during the claim.
    pub failed: usize,
    /// Rows the query returned.
    pub rows_seen: usize,
    /// Some execution was left queued because no agent had room for it.
    pub out_of_capacity: bool,
    /// More queued rows may wait than this claim looked at (a project offered its whole share,
    /// or more projects have work than the claim took).
    pub more: bool,
    /// Projects whose every row in this claim was left queued (quota or capacity): worth
    /// leaving alone for a moment.
    pub refused: Vec<String>,
}

/// A queued row as the fair claim reads it.
#[derive(QueryableByName)]
struct Offered {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    id: Uuid,
    #[diesel(sql_type = Text)]
    project_id: String,
    #[diesel(sql_type = Nullable<diesel::sql_types::Jsonb>)]
    spec: Option<serde_json::Value>,
    #[diesel(sql_type = Nullable<diesel::sql_types::Bytea>)]
    input: Option<Vec<u8>>,
    #[diesel(sql_type = Integer)]
    attempts: i32,
    #[diesel(sql_type = Timestamptz)]
    created_at: chrono::DateTime<chrono::Utc>,
    #[diesel(sql_type = Nullable<Integer>)]
    max_attempts: Option<i32>,
    #[diesel(sql_type = Bool)]
    expired: bool,
}

/// Up to `wanted` projects with queued executions, not in `skip`, in project order from just
/// after `cursor`, wrapping around. A skip scan of `executions_queue_project`: one index probe
/// per project, however long each project's queue.
fn queued_projects(
    conn: &mut PgConnection,
    cursor: &str,
    skip: &HashSet<String>,
    wanted: usize,
) -> Result<Vec<String>, diesel::result::Error> {
    #[derive(QueryableByName)]
    struct Project {
        #[diesel(sql_type = Text)]
        project_id: String,
    }
    let fetch = i64::try_from(wanted.saturating_add(skip.len())).unwrap_or(i64::MAX);
    let scan =
        |conn: &mut PgConnection, after: &str| -> Result<Vec<String>, diesel::result::Error> {
            let rows: Vec<Project> = diesel::sql_query(format!(
                "WITH RECURSIVE p(project_id) AS ( \
               SELECT (SELECT project_id FROM executions \
                       WHERE status = '{queued}' AND project_id > $1 \
                       ORDER BY project_id LIMIT 1) \
               UNION ALL \
               SELECT (SELECT project_id FROM executions \
                       WHERE status = '{queued}' AND project_id > p.project_id \
                       ORDER BY project_id LIMIT 1) \
               FROM p WHERE p.project_id IS NOT NULL) \
             SELECT project_id FROM p WHERE project_id IS NOT NULL LIMIT $2",
                queued = ExecutionStatus::Queued
            ))
            .bind::<Text, _>(after)
            .bind::<BigInt, _>(fetch)
            .load(conn)?;
            Ok(rows.into_iter().map(|p| p.project_id).collect())
        };
    let mut projects: Vec<String> = scan(conn, cursor)?
        .into_iter()
        .filter(|p| !skip.contains(p))
        .take(wanted)
        .collect();
    if projects.len() < wanted && !cursor.is_empty() {
        let wrapped: Vec<String> = scan(conn, "")?
            .into_iter()
            .filter(|p| p.as_str() <= cursor && !skip.contains(p))
            .take(wanted - projects.len())
            .collect();
        projects.extend(wrapped);
    }
    Ok(projects)
}

/// Orders offered rows round by round: every project's oldest, then every project's second,
/// and so on, in the order of `projects`; keeps at most `wanted`. Sets `more` when a project
/// offered its whole share (it may hold more) or rows were left out.
fn round_robin(
    projects: &[String],
    offered: Vec<Offered>,
    per_project: i64,
    more: &mut bool,
    wanted: usize,
) -> Vec<Queued> {
    let mut by_project: HashMap<String, Vec<Offered>> = HashMap::new();
    for row in offered {
        by_project
            .entry(row.project_id.clone())
            .or_default()
            .push(row);
    }
    let mut queues: Vec<std::vec::IntoIter<Offered>> = projects
        .iter()
        .filter_map(|p| by_project.remove(p))
        .map(|mut rows| {
            if rows.len() as i64 >= per_project {
                *more = true;
            }
            rows.sort_by_key(|r| r.created_at);
            rows.into_iter()
        })
        .collect();
    let mut ordered = Vec::new();
    loop {
        let mut any = false;
        for queue in &mut queues {
            if let Some(row) = queue.next() {
                any = true;
                if ordered.len() == wanted {
                    *more = true;
                    return ordered;
                }
                ordered.push(Queued {
                    id: row.id,
                    project_id: row.project_id,
                    spec: row.spec,
                    input: row.input,
                    attempts: row.attempts,
                    max_attempts: row.max_attempts,
                    expired: row.expired,
                });
            }
        }
        if !any {
            return ordered;
        }
    }
}

/// One entry of the retirement log, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: RetiredKey,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

fn retirement_rows(
    conn: &mut PgConnection,
    after: i64,
    limit: i64,
) -> Result<Vec<Entry>, diesel::result::Error> {
    type Row = (
        i64,
        Uuid,
        Option<i32>,
        Option<i64>,
        chrono::DateTime<chrono::Utc>,
    );
    let rows: Vec<Row> = function_retirements::table
        .filter(function_retirements::seq.gt(after))
        .order(function_retirements::seq.asc())
        .limit(limit)
        .select((
            function_retirements::seq,
            function_retirements::function_id,
            function_retirements::version,
            function_retirements::below_revision,
            function_retirements::created_at,
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(
            |(seq, function_id, version, below_revision, created_at)| Entry {
                key: RetiredKey {
                    seq,
                    function_id,
                    version,
                    below_revision,
                },
                created_at,
            },
        )
        .collect())
}

fn load_limits(
    conn: &mut PgConnection,
    rows: &[Queued],
    defaults: Limits,
) -> Result<HashMap<String, Limits>, diesel::result::Error> {
    let projects: HashSet<&str> = rows.iter().map(|r| r.project_id.as_str()).collect();
    let found: Vec<(String, String, i64)> = quotas::table
        .filter(quotas::project_id.eq_any(&projects.into_iter().collect::<Vec<_>>()))
        .filter(quotas::resource.eq_any([CONCURRENT_RESOURCE, PER_MINUTE_RESOURCE]))
        .select((quotas::project_id, quotas::resource, quotas::hard_limit))
        .load(conn)?;
    let mut limits: HashMap<String, Limits> = HashMap::new();
    for (project, resource, hard_limit) in found {
        let entry = limits.entry(project).or_insert(defaults);
        if resource == CONCURRENT_RESOURCE {
            entry.concurrent = hard_limit;
        } else {
            entry.per_minute = hard_limit;
        }
    }
    Ok(limits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_get_tcp_timeouts_unless_they_set_their_own() {
        let url = with_tcp_timeouts("postgresql://u:p@db:5432/fresco", Duration::from_secs(5));
        assert_eq!(
            url,
            "postgresql://u:p@db:5432/fresco?keepalives=1&keepalives_idle=2&keepalives_interval=1\
             &keepalives_count=3&tcp_user_timeout=5000"
        );
        let own = with_tcp_timeouts(
            "postgres://db/fresco?sslmode=disable&tcp_user_timeout=900",
            Duration::from_secs(5),
        );
        assert!(own.starts_with("postgres://db/fresco?sslmode=disable&tcp_user_timeout=900&"));
        assert_eq!(own.matches("tcp_user_timeout").count(), 1, "{own}");
        assert_eq!(
            with_tcp_timeouts("host=/run/postgresql dbname=fresco", Duration::from_secs(5)),
            "host=/run/postgresql dbname=fresco",
            "key=value strings are left alone"
        );
    }
}
