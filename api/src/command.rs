//! The API's command layer: what a request asks for, done through the domain, with the
//! database on the blocking pool. Knows no HTTP: a handler parses and authorizes, calls a
//! command, and renders what it returns.

use std::sync::Arc;

use fresco_common::conf::QuotaSection;
use fresco_store::executions::ExecutionSummary;
use fresco_store::{DbError, PgConnection, PgPool};
use serde_json::value::RawValue;

use crate::domain::event_configs;
use crate::domain::executions::{self, Enqueued};
use crate::domain::invoke::{self, Resolved, Shadow, Target};
use crate::domain::{DomainError, DomainResult};
use crate::invoke::{queued_execution, Invoker, TargetKey};

/// Runs a domain operation with a pooled connection on the blocking thread pool (diesel is
/// synchronous).
pub async fn db<T, F>(pool: &PgPool, op: F) -> DomainResult<T>
where
    T: Send + 'static,
    F: FnOnce(&mut PgConnection) -> DomainResult<T> + Send + 'static,
{
    let pool = pool.clone();
    tokio::task::spawn_blocking(move || {
        let mut conn = pool
            .get()
            .map_err(|e| DomainError::from(DbError::from(e)))?;
        op(&mut conn)
    })
    .await
    .map_err(|e| DomainError::Internal(e.to_string()))?
}

/// Invocations: resolving what runs (through this replica's target cache) and enqueueing the
/// async ones. Running a sync invocation is `Invoker::invoke_sync`.
pub struct Invocations<'a> {
    pub pool: &'a PgPool,
    pub invoker: &'a Invoker,
    pub quota: &'a QuotaSection,
    pub allowed_image_prefixes: &'a [String],
}

impl Invocations<'_> {
    /// What `key` resolves to, from the database (not the cache).
    async fn resolve(&self, key: &TargetKey) -> DomainResult<Arc<Resolved>> {
        let defaults = self.quota.clone();
        let images = self.allowed_image_prefixes.to_vec();
        let (scope, function, selector) = key.clone();
        let resolved = db(self.pool, move |conn| {
            invoke::resolve(conn, &defaults, &images, &scope, &function, &selector)
        })
        .await?;
        Ok(Arc::new(resolved))
    }

    /// What `key` resolves to: cached for `[api] function_cache_ttl`, else from the database
    /// (and cached).
    async fn resolved(&self, key: &TargetKey) -> DomainResult<Arc<Resolved>> {
        if let Some(resolved) = self.invoker.cache.get(key) {
            return Ok(resolved);
        }
        let resolved = self.resolve(key).await?;
        if resolved.cacheable() {
            self.invoker.cache.put(key.clone(), Arc::clone(&resolved));
        }
        Ok(resolved)
    }

    /// The target one invocation runs. `roll`, uniform in 0..100, picks between an alias's two
    /// versions by weight; it applies after the cache, so every invocation rolls afresh while
    /// the resolution is shared.
    pub async fn target(&self, key: &TargetKey, roll: u32) -> DomainResult<Arc<Target>> {
        self.resolved(key).await?.pick(roll)
    }

    /// The target one invocation runs and, when it names an alias with a shadow version and
    /// `shadow_roll` (uniform in 0..100) falls within the shadow's percentage, that shadow.
    pub async fn target_and_shadow(
        &self,
        key: &TargetKey,
        roll: u32,
        shadow_roll: u32,
    ) -> DomainResult<(Arc<Target>, Option<Shadow>)> {
        let resolved = self.resolved(key).await?;
        let target = resolved.pick(roll)?;
        let shadow = resolved.shadow(shadow_roll, &target).cloned();
        Ok((target, shadow))
    }

    /// Commits an async invocation (the `queued_executions` quota checked): once this returns,
    /// the execution will run. A cached target may name code that an update has just released:
    /// then the target is resolved again (once) rather than an execution queued that cannot run.
    pub async fn enqueue(
        &self,
        key: &TargetKey,
        roll: u32,
        event: &RawValue,
    ) -> DomainResult<ExecutionSummary> {
        let mut resolved = self.resolved(key).await?;
        for fresh in [false, true] {
            if fresh {
                self.invoker.cache.remove(key);
                resolved = self.resolve(key).await?;
            }
            let target = resolved.pick(roll)?;
            let execution = queued_execution(&target, event)?;
            let limit = target.limits.queued_executions;
            let gauge = Arc::clone(&self.invoker.queue_gauge);
            let enqueued = db(self.pool, move |conn| {
                executions::enqueue(conn, &execution, limit, &gauge)
            })
            .await?;
            if let Enqueued::Accepted(queued) = enqueued {
                return Ok(*queued);
            }
        }
        Err(DomainError::Conflict(
            "the function's code changed while the invocation was accepted: invoke again".into(),
        ))
    }

    /// Replays dead letter `letter` of the function `key` names (its latest state): the letter
    /// leaves the list and its event is queued, in one transaction.
    pub async fn replay(
        &self,
        key: &TargetKey,
        letter: uuid::Uuid,
    ) -> DomainResult<ExecutionSummary> {
        for fresh in [false, true] {
            let target = if fresh {
                self.invoker.cache.remove(key);
                self.resolve(key).await?.pick(0)?
            } else {
                self.target(key, 0).await?
            };
            let (scope, function, _) = key.clone();
            let gauge = Arc::clone(&self.invoker.queue_gauge);
            let enqueued = db(self.pool, move |conn| {
                event_configs::replay(conn, &scope, &function, letter, &target, &gauge)
            })
            .await?;
            if let Enqueued::Accepted(queued) = enqueued {
                return Ok(*queued);
            }
        }
        Err(DomainError::Conflict(
            "the function's code changed while the event was replayed: replay again".into(),
        ))
    }
}
