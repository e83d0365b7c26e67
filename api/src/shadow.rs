//! Shadow copies: an invocation through an alias with a shadow version, once answered, hands
//! a copy of its event and the primary's outcome to this queue (a bounded channel: the caller
//! pays a `try_send` and nothing else), and a thread of its own commits each copy as an async
//! execution of the shadow version, with what the primary answered, within the project's
//! `queued_executions` quota. A copy the quota refuses, or that finds the queue full, is
//! skipped and counted as skipped in its comparison; the caller is never affected. The
//! scheduler compares each copy when it ends (`fresco_store::shadows`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use fresco_common::conf::ShadowSection;
use fresco_common::storable;
use fresco_store::shadows::{self, Copy};
use fresco_store::{ExecutionStatus, PgConnection, PgPool};
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::domain::executions::{self, Enqueued, QueueGauge};
use crate::domain::invoke::Shadow;
use crate::domain::DomainError;
use crate::invoke::queued_execution;

/// A copy waiting to be queued.
struct Job {
    shadow: Shadow,
    event: Box<RawValue>,
    primary_execution_id: Uuid,
    primary_status: ExecutionStatus,
    /// The primary's result (a sync answer's body; `None`: it gave none).
    primary_result: Option<Bytes>,
    size: usize,
}

/// Most copies waiting in the channel (the byte bound usually binds first).
const QUEUE_RECORDS: usize = 100_000;
/// Bytes a copy costs beyond its event and result.
const JOB_OVERHEAD: usize = 1024;

/// The API's queue of shadow copies. Cheap to clone.
#[derive(Clone)]
pub struct ShadowQueue {
    sender: SyncSender<Job>,
    held: Arc<AtomicUsize>,
    max_bytes: usize,
    /// Copies dropped at the door (queue full), per comparison, to count as skipped.
    dropped: Arc<Mutex<HashMap<Uuid, i64>>>,
}

impl ShadowQueue {
    /// Starts the thread that queues the copies.
    pub fn start(pool: PgPool, gauge: Arc<QueueGauge>, conf: &ShadowSection) -> Self {
        let (sender, receiver) = mpsc::sync_channel(QUEUE_RECORDS);
        let queue = ShadowQueue {
            sender,
            held: Arc::new(AtomicUsize::new(0)),
            max_bytes: conf.queue_max_bytes.max(1),
            dropped: Arc::new(Mutex::new(HashMap::new())),
        };
        let worker = Worker {
            pool,
            gauge,
            held: Arc::clone(&queue.held),
            dropped: Arc::clone(&queue.dropped),
            sample_limit: i32::try_from(conf.sample_size).unwrap_or(i32::MAX),
            sample_bytes: i32::try_from(conf.sample_max_bytes).unwrap_or(i32::MAX),
        };
        std::thread::Builder::new()
            .name("shadow-copies".into())
            .spawn(move || worker.run(&receiver))
            .map_err(|e| log::error!("cannot start the shadow copy queue: {e}"))
            .ok();
        queue
    }

    /// Hands a copy of an answered invocation to the queue; never waits.
    pub fn offer(
        &self,
        shadow: &Shadow,
        event: Box<RawValue>,
        primary_execution_id: Uuid,
        primary_status: ExecutionStatus,
        primary_result: Option<Bytes>,
    ) {
        let size = JOB_OVERHEAD + event.get().len() + primary_result.as_ref().map_or(0, Bytes::len);
        let held = self.held.fetch_add(size, Ordering::Relaxed);
        let job = Job {
            shadow: shadow.clone(),
            event,
            primary_execution_id,
            primary_status,
            primary_result,
            size,
        };
        if held.saturating_add(size) > self.max_bytes || self.sender.try_send(job).is_err() {
            self.held.fetch_sub(size, Ordering::Relaxed);
            if let Ok(mut dropped) = self.dropped.lock() {
                *dropped.entry(shadow.comparison_id).or_default() += 1;
            }
        }
    }
}

/// A copy to offer once the primary answered.
pub struct Pending<'a> {
    pub queue: &'a ShadowQueue,
    pub shadow: Shadow,
    pub event: Box<RawValue>,
}

impl Pending<'_> {
    /// Offers the copy with the primary's outcome.
    pub fn answered(
        self,
        primary_execution_id: Uuid,
        primary_status: ExecutionStatus,
        primary_result: Option<Bytes>,
    ) {
        self.queue.offer(
            &self.shadow,
            self.event,
            primary_execution_id,
            primary_status,
            primary_result,
        );
    }
}

struct Worker {
    pool: PgPool,
    gauge: Arc<QueueGauge>,
    held: Arc<AtomicUsize>,
    dropped: Arc<Mutex<HashMap<Uuid, i64>>>,
    sample_limit: i32,
    sample_bytes: i32,
}

impl Worker {
    fn run(&self, receiver: &Receiver<Job>) {
        loop {
            match receiver.recv_timeout(Duration::from_secs(1)) {
                Ok(job) => {
                    let size = job.size;
                    self.queue(job);
                    self.held.fetch_sub(size, Ordering::Relaxed);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            self.count_dropped();
        }
    }

    fn conn(&self) -> Option<fresco_store::Conn> {
        self.pool
            .get()
            .map_err(|e| log::warn!("shadow copies: no database connection: {e}"))
            .ok()
    }

    /// Counts the copies dropped at the door as skipped.
    fn count_dropped(&self) {
        let dropped = match self.dropped.lock() {
            Ok(mut dropped) if !dropped.is_empty() => std::mem::take(&mut *dropped),
            _ => return,
        };
        let Some(mut conn) = self.conn() else { return };
        for (comparison, n) in dropped {
            if let Err(e) = shadows::skipped(&mut conn, comparison, n) {
                log::warn!(
                    "shadow copies: {n} skipped copies of comparison {comparison} not counted: {e}"
                );
            }
        }
    }

    /// Commits one copy, or counts it as skipped.
    fn queue(&self, job: Job) {
        let comparison = job.shadow.comparison_id;
        let Some(mut conn) = self.conn() else {
            self.skip(None, comparison);
            return;
        };
        match self.commit(&mut conn, job) {
            Ok(true) => {}
            Ok(false) => self.skip(Some(&mut *conn), comparison),
            Err(e) => {
                log::warn!("shadow copy of comparison {comparison} not queued: {e}");
                self.skip(Some(&mut *conn), comparison);
            }
        }
    }

    /// Whether the copy was queued (`false`: the quota refused it, or its code is gone).
    fn commit(&self, conn: &mut PgConnection, job: Job) -> Result<bool, DomainError> {
        let target = &job.shadow.target;
        let execution = queued_execution(target, &job.event)?;
        let result = job
            .primary_result
            .as_ref()
            .map(|bytes| storable::text(&String::from_utf8_lossy(bytes)).into_owned());
        let bytes = usize::try_from(self.sample_bytes).unwrap_or(0);
        let (primary_result, primary_truncated) =
            shadows::cut(result.as_deref().unwrap_or("null"), bytes);
        let copy = Copy {
            execution,
            comparison_id: job.shadow.comparison_id,
            primary_execution_id: job.primary_execution_id,
            primary_status: job.primary_status,
            primary_digest: shadows::digest(result.as_deref()),
            primary_result,
            primary_truncated,
            sample_limit: self.sample_limit,
            sample_bytes: self.sample_bytes,
        };
        let limit = target.limits.queued_executions;
        match executions::enqueue_with(conn, &copy.execution, limit, &self.gauge, |conn| {
            shadows::enqueue(conn, &copy)
        }) {
            Ok(Enqueued::Accepted(_)) => Ok(true),
            Ok(Enqueued::StaleCode) | Err(DomainError::Throttled(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn skip(&self, conn: Option<&mut PgConnection>, comparison: Uuid) {
        let counted = match conn {
            Some(conn) => shadows::skipped(conn, comparison, 1).map_err(|e| e.to_string()),
            None => Err("no database connection".to_owned()),
        };
        if let Err(e) = counted {
            log::warn!("shadow copies: a skipped copy of comparison {comparison} not counted ({e}): counted later");
            if let Ok(mut dropped) = self.dropped.lock() {
                *dropped.entry(comparison).or_default() += 1;
            }
        }
    }
}
