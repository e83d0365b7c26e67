//! The cron pass, run by the active scheduler only: every `[scheduler] cron_interval_ms` it
//! fires the due ticks of cron triggers (`fresco_store::queue::Store::fire_cron`: one fenced
//! transaction per batch, each tick queued once) and goes on at once while batches come back
//! full.
//!
//! Missed ticks: a trigger whose ticks passed while no scheduler led (or the platform was
//! down) runs once, for the oldest of them, and then resumes at its first tick after now. It
//! never runs twice for one tick (the tick's execution has an id derived from the trigger and
//! the tick, and `next_run_at` moves in the same transaction, conditional on the tick).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use fresco_common::schedule::Schedule;
use tokio::sync::watch;

use crate::leader::Leadership;
use fresco_store::queue::Store;

/// Settings of the cron pass.
#[derive(Debug, Clone, Copy)]
pub struct CronConfig {
    pub interval: Duration,
    /// Most triggers fired in one transaction.
    pub batch_size: i64,
}

/// Counters of the cron pass since start.
#[derive(Debug, Default)]
pub struct CronStats {
    pub queued: AtomicU64,
    pub failed: AtomicU64,
    /// Passes (batches) run, and the time they took in all, in microseconds: what a tick
    /// costs the leader (`bench/notifications.sh` reads them).
    pub passes: AtomicU64,
    pub pass_micros: AtomicU64,
}

/// Parsed schedules, by their text: a trigger's expression is parsed once per process.
#[derive(Default)]
struct Schedules {
    parsed: HashMap<(String, String), Option<Schedule>>,
}

impl Schedules {
    const MAX: usize = 100_000;

    fn next(&mut self, cron: &str, timezone: &str, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.parsed.len() >= Self::MAX {
            self.parsed.clear();
        }
        self.parsed
            .entry((cron.to_owned(), timezone.to_owned()))
            .or_insert_with(|| match Schedule::parse(cron, timezone) {
                Ok(schedule) => Some(schedule),
                Err(e) => {
                    log::warn!("cron {cron:?} in {timezone}: {e}: the trigger stops");
                    None
                }
            })
            .as_ref()
            .and_then(|schedule| schedule.next_after(after))
    }
}

/// Fires due ticks until `stop` turns true (leadership lost).
pub async fn run(
    store: Store,
    config: CronConfig,
    leadership: Arc<Leadership>,
    stats: Arc<CronStats>,
    mut stop: watch::Receiver<bool>,
) {
    let schedules = Arc::new(std::sync::Mutex::new(Schedules::default()));
    log::info!("cron pass every {:?}", config.interval);
    while !*stop.borrow() {
        let Some(fence) = leadership.fence() else {
            break;
        };
        let store = store.clone();
        let schedules = schedules.clone();
        let batch = config.batch_size.max(1);
        let started = std::time::Instant::now();
        let fired = tokio::task::spawn_blocking(move || {
            store.fire_cron(&fence, batch, |cron, timezone, after| {
                schedules
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .next(cron, timezone, after)
            })
        })
        .await;
        stats.passes.fetch_add(1, Ordering::Relaxed);
        stats.pass_micros.fetch_add(
            u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        let more = match fired {
            Ok(Ok(fired)) => {
                stats
                    .queued
                    .fetch_add(fired.queued as u64, Ordering::Relaxed);
                stats
                    .failed
                    .fetch_add(fired.failed as u64, Ordering::Relaxed);
                fired.more
            }
            Ok(Err(e)) if e.is_fenced() => {
                log::warn!("cron pass refused, the leader lease is lost: {e}");
                false
            }
            Ok(Err(e)) => {
                log::warn!("cron pass failed, trying again: {e}");
                false
            }
            Err(e) => {
                log::error!("cron task failed: {e}");
                false
            }
        };
        if more {
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(config.interval) => {}
            _ = stop.changed() => {}
        }
    }
}
