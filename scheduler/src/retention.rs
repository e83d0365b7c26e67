//! The periodic purge, run by the active scheduler only (one runner, no coordination): deletes
//! finished execution records older than `[retention] execution_days`, empties the results,
//! logs and inputs of those older than `body_days`, and deletes code packages that nothing
//! needs any more (no function, version, queued or running execution). Works in bounded
//! batches with a pause between them, so the queue never waits on it.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use fresco_common::conf::RetentionSection;
use tokio::sync::watch;

use crate::leader::{Fence, Leadership};
use fresco_store::queue::{StorageError, Store};

/// Pause between two batches of one purge.
const BATCH_PAUSE: Duration = Duration::from_millis(50);
/// Most batches of one kind per purge: a huge backlog is worked off over several purges.
const MAX_BATCHES: usize = 1000;

/// What one purge did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Purged {
    pub executions: usize,
    pub bodies: usize,
    pub code_packages: usize,
}

/// Runs purges every `purge_interval` until `stop` turns true (leadership lost). Every
/// statement is fenced with the current term, so a leader that lost its lease mid-purge
/// deletes nothing more.
pub async fn run(
    store: Store,
    config: RetentionSection,
    leadership: Arc<Leadership>,
    mut stop: watch::Receiver<bool>,
) {
    let interval = Duration::from_secs(config.purge_interval.max(1));
    // Bodies of rows older than the record retention go with their rows: start there.
    let mut bodies_from = start_of_bodies(&config);
    log::info!("retention purge every {interval:?}");
    while !*stop.borrow() {
        match purge(&store, &config, &leadership, &mut bodies_from, &stop).await {
            Ok(purged) if purged != Purged::default() => log::info!(
                "purged {} execution records, the bodies of {} more, {} unused code packages",
                purged.executions,
                purged.bodies,
                purged.code_packages
            ),
            Ok(_) => {}
            Err(e) => log::warn!("retention purge failed, trying again later: {e}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => {}
        }
    }
}

fn start_of_bodies(config: &RetentionSection) -> DateTime<Utc> {
    let days = i64::try_from(config.execution_days).unwrap_or(i64::MAX / 86_400);
    if days == 0 {
        return DateTime::<Utc>::MIN_UTC;
    }
    chrono::Duration::try_days(days)
        .and_then(|d| Utc::now().checked_sub_signed(d))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// One purge: records, then bodies, then code packages, each in batches.
pub async fn purge(
    store: &Store,
    config: &RetentionSection,
    leadership: &Leadership,
    bodies_from: &mut DateTime<Utc>,
    stop: &watch::Receiver<bool>,
) -> Result<Purged, StorageError> {
    let mut purged = Purged::default();
    let batch = config.purge_batch.max(1);
    if config.execution_days > 0 {
        purged.executions = batches(stop, batch, || {
            let (store, days, fence) = (
                store.clone(),
                config.execution_days,
                current_fence(leadership),
            );
            async move { blocking(move || store.purge_executions(&fence?, days, batch)).await }
        })
        .await?;
    }
    if config.body_days > 0 {
        for _ in 0..MAX_BATCHES {
            if *stop.borrow() {
                break;
            }
            let (store, days, from) = (store.clone(), config.body_days, *bodies_from);
            let fence = current_fence(leadership)?;
            let (n, reached) =
                blocking(move || store.purge_bodies(&fence, days, batch, from)).await?;
            purged.bodies += n;
            *bodies_from = reached;
            if n < batch as usize {
                break;
            }
            tokio::time::sleep(BATCH_PAUSE).await;
        }
    }
    purged.code_packages = batches(stop, batch, || {
        let (store, fence) = (store.clone(), current_fence(leadership));
        async move { blocking(move || store.collect_code(&fence?, batch)).await }
    })
    .await?;
    Ok(purged)
}

/// Runs `step` until it does less than a full batch (or `MAX_BATCHES`, or leadership is lost);
/// returns the total.
async fn batches<F, Fut>(
    stop: &watch::Receiver<bool>,
    batch: u32,
    mut step: F,
) -> Result<usize, StorageError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<usize, StorageError>>,
{
    let mut total = 0;
    for _ in 0..MAX_BATCHES {
        if *stop.borrow() {
            break;
        }
        let n = step().await?;
        total += n;
        if n < batch as usize {
            break;
        }
        tokio::time::sleep(BATCH_PAUSE).await;
    }
    Ok(total)
}

/// The current term's fence, or a fenced error once this scheduler no longer leads.
fn current_fence(leadership: &Leadership) -> Result<Fence, StorageError> {
    leadership.fence().ok_or(StorageError::Fenced {
        epoch: leadership.epoch().unwrap_or(0),
    })
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(StorageError::Task(e.to_string())))
}
