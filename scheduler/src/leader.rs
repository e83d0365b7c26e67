//! Leadership and the LISTEN connection: the two PostgreSQL connections that are not diesel's.
//! Both use tokio-postgres, whose connection object delivers notifications as they arrive.
//!
//! # The leader lease
//! One row of `scheduler_leader` names the active scheduler (`holder`), its term (`epoch`,
//! one more at every change of leader) and when its lease ends (`expires_at`, in the
//! database's clock). The leader renews it every `[scheduler] leader_check_interval_ms`; a
//! standby takes it over, with the next epoch, once it has expired or once the holder's
//! session is gone and it missed two renewals (a crashed leader's connection closes at once,
//! so a standby need not wait for the expiry; after a database restart every session is
//! gone, and the leader, which retries its renewal at once, keeps the lease). A leader that stops answering without dying (`kill -STOP`, a hung host)
//! keeps its session but not its lease: a standby leads within one lease time plus one check.
//!
//! # Fencing
//! This process considers itself leader ([`Leadership::fence`]) only until `lease` after the
//! last renewal it *sent* (the database cannot have expired the row before that), so a leader
//! that wakes up after a pause knows at once that it may have lost. And every leader-only write
//! (claims, results, requeues, agents marked down) runs in a transaction that first locks the
//! lease row `FOR SHARE` and checks that this holder's epoch is current and unexpired
//! ([`fresco_store::queue::Store`]): a takeover (an UPDATE of that row) waits for such transactions,
//! and every later write of the old term is refused. `idle_in_transaction_session_timeout`
//! (the lease time) ends the transaction of a leader frozen in the middle of one, so its row
//! locks cannot stall the takeover.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, NoTls};

use fresco_store::queue::QUEUE_CHANNEL;

/// Longest a statement on a dedicated connection may take before it counts as failed.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// Renewals this much before the lease's end count as too late: room for clock-rate drift
/// between this host and the database's.
const LEASE_MARGIN: Duration = Duration::from_millis(250);

#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("invalid database url: {0}")]
    Url(#[source] tokio_postgres::Error),
    #[error("cannot connect to the database: {0}")]
    Connect(#[source] tokio_postgres::Error),
    #[error("database error: {0}")]
    Query(#[from] tokio_postgres::Error),
    #[error("database did not answer within {0:?}")]
    Timeout(Duration),
}

/// Proof of leadership handed to fenced writes: this holder, in this term.
pub use fresco_store::queue::Fence;

#[derive(Debug, Clone, Copy)]
struct Term {
    epoch: i64,
    /// This process leads until then (its own clock), unless a renewal extends it.
    valid_until: Instant,
}

/// This scheduler's view of its own leadership, shared by the HTTP layer (placements), the
/// dispatcher and the sweeper.
pub struct Leadership {
    holder: Arc<str>,
    term: Mutex<Option<Term>>,
}

impl Leadership {
    /// `holder` names this process uniquely (it is written to the lease row).
    pub fn new(holder: &str) -> Self {
        Self {
            holder: Arc::from(holder),
            term: Mutex::new(None),
        }
    }

    pub fn holder(&self) -> &str {
        &self.holder
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Term>> {
        self.term
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The fence of the current term, if this process still leads by its own clock.
    pub fn fence(&self) -> Option<Fence> {
        let term = (*self.lock())?;
        (Instant::now() < term.valid_until).then(|| Fence {
            holder: self.holder.clone(),
            epoch: term.epoch,
        })
    }

    /// Whether this scheduler is the active one (by its own clock).
    pub fn is_active(&self) -> bool {
        self.fence().is_some()
    }

    /// The epoch this process holds or held last, even if its lease lapsed.
    pub fn epoch(&self) -> Option<i64> {
        self.lock().map(|t| t.epoch)
    }

    /// Records a term that lasts until `valid_until`.
    pub fn lead(&self, epoch: i64, valid_until: Instant) {
        *self.lock() = Some(Term { epoch, valid_until });
    }

    /// Forgets the term: this process stands by.
    pub fn stand_by(&self) {
        *self.lock() = None;
    }
}

/// How the leader lease is held.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub database_url: String,
    /// How long a lease lasts without renewal.
    pub lease: Duration,
    /// Between renewals, and between a standby's attempts to take over.
    pub interval: Duration,
}

impl LeaseConfig {
    /// Milliseconds of the lease, for SQL.
    fn lease_ms(&self) -> i64 {
        i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX)
    }

    /// Milliseconds without renewal after which a holder whose session is gone loses the
    /// lease before it expires.
    fn dead_holder_ms(&self) -> i64 {
        i64::try_from(2 * self.interval.as_millis()).unwrap_or(i64::MAX)
    }

    /// Until when a lease renewed (or taken) by a statement sent at `sent` is surely ours.
    pub fn valid_until(&self, sent: Instant) -> Instant {
        sent + self.lease.saturating_sub(LEASE_MARGIN)
    }
}

/// A tokio-postgres connection set up for the control plane: TCP keepalives and a user
/// timeout (a hung database host is noticed within `timeout`), and a server-side idle-in-
/// transaction limit of `timeout` so that a frozen client cannot hold row locks.
async fn connect(
    url: &str,
    timeout: Duration,
) -> Result<(tokio_postgres::Client, JoinHandle<()>), LeaderError> {
    let mut config: tokio_postgres::Config = url.parse().map_err(LeaderError::Url)?;
    config
        .connect_timeout(timeout)
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(2))
        .keepalives_interval(Duration::from_secs(1))
        .keepalives_retries(3)
        .tcp_user_timeout(timeout);
    let (client, connection) = tokio::time::timeout(timeout, config.connect(NoTls))
        .await
        .map_err(|_| LeaderError::Timeout(timeout))?
        .map_err(LeaderError::Connect)?;
    let task = tokio::spawn(async move {
        if let Err(e) = connection.await {
            log::warn!("leader lease connection ended: {e}");
        }
    });
    let setup = format!(
        "SET idle_in_transaction_session_timeout = {}; SET lock_timeout = {}; \
         SET statement_timeout = {}",
        timeout.as_millis(),
        CHECK_TIMEOUT.as_millis(),
        CHECK_TIMEOUT.as_millis()
    );
    bounded(client.batch_execute(&setup))
        .await
        .inspect_err(|_| task.abort())?;
    Ok((client, task))
}

async fn bounded<T>(
    future: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, LeaderError> {
    tokio::time::timeout(CHECK_TIMEOUT, future)
        .await
        .map_err(|_| LeaderError::Timeout(CHECK_TIMEOUT))?
        .map_err(LeaderError::Query)
}

/// The dedicated connection that takes and renews the leader lease.
pub struct LeaseConnection {
    client: tokio_postgres::Client,
    task: JoinHandle<()>,
}

impl LeaseConnection {
    pub async fn open(config: &LeaseConfig) -> Result<Self, LeaderError> {
        let (client, task) = connect(&config.database_url, config.lease).await?;
        Ok(Self { client, task })
    }

    /// Whether the connection still works (a failed one is replaced).
    pub fn is_alive(&self) -> bool {
        !self.task.is_finished() && !self.client.is_closed()
    }

    /// Takes the lease if it is free, expired, or its holder's session is gone: the new
    /// epoch, or `None` while another scheduler holds it.
    pub async fn try_acquire(
        &self,
        holder: &str,
        config: &LeaseConfig,
    ) -> Result<Option<i64>, LeaderError> {
        let row = bounded(self.client.query_opt(
            "INSERT INTO scheduler_leader AS l \
                 (id, holder, epoch, session_pid, acquired_at, renewed_at, expires_at) \
             VALUES (1, $1, 1, pg_backend_pid(), now(), now(), \
                     now() + $2::bigint * interval '1 millisecond') \
             ON CONFLICT (id) DO UPDATE SET \
                 holder = EXCLUDED.holder, epoch = l.epoch + 1, \
                 session_pid = EXCLUDED.session_pid, acquired_at = now(), renewed_at = now(), \
                 expires_at = EXCLUDED.expires_at \
             WHERE l.expires_at < now() \
                OR (l.renewed_at < now() - $3::bigint * interval '1 millisecond' \
                    AND NOT EXISTS \
                        (SELECT 1 FROM pg_stat_activity a WHERE a.pid = l.session_pid)) \
             RETURNING epoch",
            &[&holder, &config.lease_ms(), &config.dead_holder_ms()],
        ))
        .await?;
        Ok(match row {
            Some(row) => Some(row.try_get::<_, i64>(0)?),
            None => None,
        })
    }

    /// Extends the lease of `epoch`; false when it is no longer this holder's (taken over,
    /// or expired: an expired term is never renewed, the next one has a new epoch).
    pub async fn renew(
        &self,
        holder: &str,
        epoch: i64,
        config: &LeaseConfig,
    ) -> Result<bool, LeaderError> {
        let changed = bounded(self.client.execute(
            "UPDATE scheduler_leader SET renewed_at = now(), session_pid = pg_backend_pid(), \
                 expires_at = now() + $3::bigint * interval '1 millisecond' \
             WHERE id = 1 AND holder = $1 AND epoch = $2 AND expires_at >= now()",
            &[&holder, &epoch, &config.lease_ms()],
        ))
        .await?;
        Ok(changed == 1)
    }

    /// Gives the lease up (at shutdown) so that a standby takes over at once.
    pub async fn resign(&self, holder: &str, epoch: i64) -> Result<bool, LeaderError> {
        let changed = bounded(self.client.execute(
            "UPDATE scheduler_leader SET expires_at = now() - interval '1 second' \
             WHERE id = 1 AND holder = $1 AND epoch = $2",
            &[&holder, &epoch],
        ))
        .await?;
        Ok(changed == 1)
    }
}

impl Drop for LeaseConnection {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A LISTEN connection on the queue channel: every notification wakes `wake`.
pub struct Listener {
    _client: tokio_postgres::Client,
    task: JoinHandle<()>,
}

impl Listener {
    pub async fn start(url: &str, wake: Arc<Notify>) -> Result<Self, LeaderError> {
        let mut config: tokio_postgres::Config = url.parse().map_err(LeaderError::Url)?;
        config
            .connect_timeout(CHECK_TIMEOUT)
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(5))
            .keepalives_interval(Duration::from_secs(2))
            .keepalives_retries(3);
        let (client, mut connection) = tokio::time::timeout(CHECK_TIMEOUT, config.connect(NoTls))
            .await
            .map_err(|_| LeaderError::Timeout(CHECK_TIMEOUT))?
            .map_err(LeaderError::Connect)?;
        let task = tokio::spawn(async move {
            let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(message) = messages.next().await {
                match message {
                    Ok(AsyncMessage::Notification(_)) => wake.notify_one(),
                    Ok(_) => {}
                    Err(e) => {
                        log::warn!("listen connection failed: {e}");
                        break;
                    }
                }
            }
        });
        bounded(client.batch_execute(&format!("LISTEN {QUEUE_CHANNEL}"))).await?;
        Ok(Self {
            _client: client,
            task,
        })
    }

    /// Whether the connection is still listening.
    pub fn is_alive(&self) -> bool {
        !self.task.is_finished()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_term_is_valid_only_until_its_deadline() {
        let leadership = Leadership::new("s1");
        assert!(!leadership.is_active());
        assert_eq!(leadership.epoch(), None);
        leadership.lead(7, Instant::now() + Duration::from_secs(60));
        assert_eq!(
            leadership.fence(),
            Some(Fence {
                holder: Arc::from("s1"),
                epoch: 7
            })
        );
        // A pause longer than the lease (kill -STOP) ends the term by the local clock alone.
        leadership.lead(8, Instant::now() - Duration::from_millis(1));
        assert!(leadership.fence().is_none());
        assert!(!leadership.is_active());
        assert_eq!(leadership.epoch(), Some(8), "the last term is remembered");
        leadership.stand_by();
        assert_eq!(leadership.epoch(), None);
    }

    #[test]
    fn a_lease_is_trusted_for_less_than_its_length() {
        let config = LeaseConfig {
            database_url: String::new(),
            lease: Duration::from_secs(5),
            interval: Duration::from_secs(1),
        };
        let sent = Instant::now();
        let until = config.valid_until(sent);
        assert!(until < sent + config.lease);
        assert!(until > sent + Duration::from_secs(4));
        assert_eq!(config.lease_ms(), 5000);
    }
}
