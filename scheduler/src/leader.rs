//! The two dedicated PostgreSQL connections that are not diesel's: the advisory lock that
//! makes one scheduler active, and the LISTEN connection that wakes the dispatcher. Both use
//! tokio-postgres, whose connection object delivers notifications as they arrive.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, NoTls};

use crate::storage::QUEUE_CHANNEL;

/// The advisory lock key of the active scheduler ("frescosc" in ASCII).
pub const LEADER_LOCK_KEY: i64 = 0x6672_6573_636f_7363;

/// Longest a check of the lock may take before the lock counts as lost.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("cannot connect to the database: {0}")]
    Connect(tokio_postgres::Error),
    #[error("database error: {0}")]
    Query(#[from] tokio_postgres::Error),
    #[error("database did not answer within {0:?}")]
    Timeout(Duration),
}

/// The advisory lock, held for as long as this value and its connection live.
pub struct LeaderLock {
    client: tokio_postgres::Client,
    connection: JoinHandle<()>,
}

impl LeaderLock {
    /// Tries to take the lock on a new connection; `None` when another scheduler holds it.
    pub async fn try_acquire(url: &str) -> Result<Option<Self>, LeaderError> {
        let (client, connection) = tokio_postgres::connect(url, NoTls)
            .await
            .map_err(LeaderError::Connect)?;
        let connection = tokio::spawn(async move {
            if let Err(e) = connection.await {
                log::warn!("leader lock connection ended: {e}");
            }
        });
        let row = tokio::time::timeout(
            CHECK_TIMEOUT,
            client.query_one("SELECT pg_try_advisory_lock($1)", &[&LEADER_LOCK_KEY]),
        )
        .await
        .map_err(|_| LeaderError::Timeout(CHECK_TIMEOUT))??;
        let locked: bool = row.try_get(0)?;
        if locked {
            Ok(Some(Self { client, connection }))
        } else {
            connection.abort();
            Ok(None)
        }
    }

    /// Whether the lock is still held: the connection answers and PostgreSQL still lists the
    /// lock as granted to it.
    pub async fn still_held(&self) -> bool {
        if self.connection.is_finished() || self.client.is_closed() {
            return false;
        }
        let check = self.client.query_one(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' \
             AND pid = pg_backend_pid() AND granted",
            &[],
        );
        match tokio::time::timeout(CHECK_TIMEOUT, check).await {
            Ok(Ok(row)) => row.try_get::<_, i64>(0).is_ok_and(|n| n > 0),
            Ok(Err(e)) => {
                log::warn!("cannot check the leader lock: {e}");
                false
            }
            Err(_) => {
                log::warn!("leader lock check timed out");
                false
            }
        }
    }
}

impl Drop for LeaderLock {
    fn drop(&mut self) {
        // Closing the connection releases the lock.
        self.connection.abort();
    }
}

/// A LISTEN connection on the queue channel: every notification wakes `wake`.
pub struct Listener {
    _client: tokio_postgres::Client,
    task: JoinHandle<()>,
}

impl Listener {
    pub async fn start(url: &str, wake: Arc<Notify>) -> Result<Self, LeaderError> {
        let (client, mut connection) = tokio_postgres::connect(url, NoTls)
            .await
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
        tokio::time::timeout(
            CHECK_TIMEOUT,
            client.batch_execute(&format!("LISTEN {QUEUE_CHANNEL}")),
        )
        .await
        .map_err(|_| LeaderError::Timeout(CHECK_TIMEOUT))??;
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
