//! Pre-warmed generic sandboxes (plain data; the caller holds the lock and does the I/O).
//!
//! Per runtime image and memory size (`[agent] prewarm_runtimes` × `prewarm_memory_mb`) the
//! agent keeps sandboxes started without any function: the runtime booted as far as it goes
//! (a managed runtime's interpreter started and waiting for its function, a `provided`
//! sandbox's shim waiting), frozen, holding their memory size of the node's capacity. The
//! first invocation of a function on the node claims one of its image and size (see
//! `Container::claim`); from then on the sandbox is that function version's only, like one
//! started for it. A sandbox is never handed out twice: `take` removes it from here.
//!
//! Sizing: each pool keeps `prewarm_size` ready, plus one per claim in the last
//! `prewarm_window` (first invocations are what empties it), never more than `prewarm_max`.
//! Refilling happens off the invocation path, `prewarm_fill_concurrency` sandboxes at a time;
//! a pool whose sandbox failed to start is not refilled for `RETRY_AFTER` (a missing image
//! does not become a loop).

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use fresco_common::wire::PrewarmedPool;

use crate::config::PrewarmSettings;
use crate::container::PrewarmSpec;

/// How long a pool whose sandbox failed to start waits before it tries again.
pub const RETRY_AFTER: Duration = Duration::from_secs(5);

struct Pool<T> {
    spec: PrewarmSpec,
    /// Ready sandboxes, oldest first.
    ready: VecDeque<T>,
    starting: u32,
    /// When sandboxes were claimed (or wanted: the pool was empty), within the window.
    claims: VecDeque<Instant>,
    failed_at: Option<Instant>,
}

/// Every pre-warmed pool of one agent.
pub struct Prewarmed<T> {
    size: u32,
    max: u32,
    window: Duration,
    fill_concurrency: u32,
    pools: BTreeMap<(String, u64), Pool<T>>,
}

impl<T> Prewarmed<T> {
    pub fn new(settings: &PrewarmSettings) -> Self {
        let mut pools = BTreeMap::new();
        for (kind, image) in &settings.runtimes {
            for memory_mb in &settings.memory_mb {
                pools.insert(
                    (image.clone(), *memory_mb),
                    Pool {
                        spec: PrewarmSpec {
                            runtime_kind: kind.clone(),
                            image: image.clone(),
                            memory_mb: *memory_mb,
                        },
                        ready: VecDeque::new(),
                        starting: 0,
                        claims: VecDeque::new(),
                        failed_at: None,
                    },
                );
            }
        }
        Self {
            size: settings.size,
            max: settings.max.max(settings.size),
            window: settings.window,
            fill_concurrency: settings.fill_concurrency.max(1),
            pools,
        }
    }

    /// Whether any pool is configured.
    pub fn is_enabled(&self) -> bool {
        !self.pools.is_empty()
    }

    /// The pool a function of this runtime kind, image and memory size would claim from.
    pub fn pool_for(
        &self,
        runtime_kind: &str,
        image: &str,
        memory_mb: u64,
    ) -> Option<&PrewarmSpec> {
        self.pools
            .get(&(image.to_owned(), memory_mb))
            .map(|p| &p.spec)
            .filter(|spec| spec.runtime_kind == runtime_kind)
    }

    /// Takes a ready sandbox of `spec`'s pool for a function's first invocation (it leaves
    /// the pool for good); counts the demand either way.
    pub fn take(&mut self, spec: &PrewarmSpec, now: Instant) -> Option<T> {
        let window = self.window;
        let pool = self.pools.get_mut(&(spec.image.clone(), spec.memory_mb))?;
        pool.claims.push_back(now);
        forget_old(&mut pool.claims, now, window);
        pool.ready.pop_front()
    }

    /// Sandboxes to start now, one entry each (marked as starting): the pools below their
    /// target, within the fill concurrency, skipping images `present` says are missing and
    /// pools that failed in the last `RETRY_AFTER`. `fits` is asked (and reserves) per
    /// sandbox: false when the node has no room for it.
    pub fn to_start(
        &mut self,
        now: Instant,
        present: impl Fn(&str) -> bool,
        mut fits: impl FnMut(u64) -> bool,
    ) -> Vec<PrewarmSpec> {
        let (size, max, window) = (self.size, self.max, self.window);
        let mut starting: u32 = self.pools.values().map(|p| p.starting).sum();
        let mut wanted = Vec::new();
        // The emptiest pools first.
        let mut order: Vec<(u32, (String, u64))> = self
            .pools
            .iter_mut()
            .map(|(key, pool)| {
                forget_old(&mut pool.claims, now, window);
                (pool.ready.len() as u32 + pool.starting, key.clone())
            })
            .collect();
        order.sort();
        for (_, key) in order {
            let Some(pool) = self.pools.get_mut(&key) else {
                continue;
            };
            if pool
                .failed_at
                .is_some_and(|at| now.saturating_duration_since(at) < RETRY_AFTER)
                || !present(&pool.spec.image)
            {
                continue;
            }
            let target = target(size, max, pool.claims.len());
            while pool.ready.len() as u32 + pool.starting < target
                && starting < self.fill_concurrency
                && fits(pool.spec.memory_mb)
            {
                pool.starting += 1;
                starting += 1;
                wanted.push(pool.spec.clone());
            }
        }
        wanted
    }

    /// A sandbox `to_start` asked for is ready (frozen, waiting for a function).
    pub fn started(&mut self, spec: &PrewarmSpec, item: T) {
        if let Some(pool) = self.pools.get_mut(&(spec.image.clone(), spec.memory_mb)) {
            pool.starting = pool.starting.saturating_sub(1);
            pool.failed_at = None;
            pool.ready.push_back(item);
        }
    }

    /// A sandbox `to_start` asked for could not be started.
    pub fn start_failed(&mut self, spec: &PrewarmSpec, now: Instant) {
        if let Some(pool) = self.pools.get_mut(&(spec.image.clone(), spec.memory_mb)) {
            pool.starting = pool.starting.saturating_sub(1);
            pool.failed_at = Some(now);
        }
    }

    /// Ready sandboxes beyond their pool's target now that demand fell: the caller removes
    /// them (and frees their memory).
    pub fn surplus(&mut self, now: Instant) -> Vec<(u64, T)> {
        let (size, max, window) = (self.size, self.max, self.window);
        let mut surplus = Vec::new();
        for pool in self.pools.values_mut() {
            forget_old(&mut pool.claims, now, window);
            let target = target(size, max, pool.claims.len()) as usize;
            while pool.ready.len() > target {
                if let Some(item) = pool.ready.pop_front() {
                    surplus.push((pool.spec.memory_mb, item));
                }
            }
        }
        surplus
    }

    /// One ready sandbox, from the fullest pool, to make room for a function: the caller
    /// removes it and frees its memory.
    pub fn evict(&mut self) -> Option<(u64, T)> {
        let pool = self
            .pools
            .values_mut()
            .filter(|p| !p.ready.is_empty())
            .max_by_key(|p| p.ready.len())?;
        let item = pool.ready.pop_front()?;
        Some((pool.spec.memory_mb, item))
    }

    /// Every ready sandbox (shutdown), with its memory size.
    pub fn drain(&mut self) -> Vec<(u64, T)> {
        let mut all = Vec::new();
        for pool in self.pools.values_mut() {
            let memory_mb = pool.spec.memory_mb;
            all.extend(pool.ready.drain(..).map(|item| (memory_mb, item)));
        }
        all
    }

    /// Ready sandboxes per pool, for heartbeats.
    pub fn snapshot(&self) -> Vec<PrewarmedPool> {
        self.pools
            .values()
            .map(|pool| PrewarmedPool {
                image: pool.spec.image.clone(),
                memory_mb: i32::try_from(pool.spec.memory_mb).unwrap_or(i32::MAX),
                ready: u32::try_from(pool.ready.len()).unwrap_or(u32::MAX),
            })
            .collect()
    }
}

/// A pool's size: `size`, plus the claims of the window, at most `max`.
fn target(size: u32, max: u32, claims: usize) -> u32 {
    size.saturating_add(u32::try_from(claims).unwrap_or(u32::MAX))
        .min(max)
}

fn forget_old(claims: &mut VecDeque<Instant>, now: Instant, window: Duration) {
    while claims
        .front()
        .is_some_and(|at| now.saturating_duration_since(*at) >= window)
    {
        claims.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(size: u32, max: u32) -> PrewarmSettings {
        PrewarmSettings {
            runtimes: vec![
                ("python".into(), "py:1".into()),
                ("provided".into(), "pr:1".into()),
            ],
            memory_mb: vec![128],
            size,
            max,
            window: Duration::from_secs(10),
            fill_concurrency: 2,
        }
    }

    fn spec(image: &str) -> PrewarmSpec {
        let kind = if image == "py:1" {
            "python"
        } else {
            "provided"
        };
        PrewarmSpec {
            runtime_kind: kind.into(),
            image: image.into(),
            memory_mb: 128,
        }
    }

    #[test]
    fn pools_match_kind_image_and_size() {
        let pools: Prewarmed<u32> = Prewarmed::new(&settings(1, 4));
        assert!(pools.pool_for("python", "py:1", 128).is_some());
        assert!(
            pools.pool_for("python", "py:1", 256).is_none(),
            "other size"
        );
        assert!(
            pools.pool_for("provided", "py:1", 128).is_none(),
            "other kind"
        );
        assert!(pools.pool_for("python", "other:1", 128).is_none());
        assert!(!Prewarmed::<u32>::new(&PrewarmSettings::default()).is_enabled());
    }

    #[test]
    fn refills_within_the_concurrency_and_the_room() {
        let now = Instant::now();
        let mut pools: Prewarmed<u32> = Prewarmed::new(&settings(2, 4));
        let mut room = 3;
        let wanted = pools.to_start(
            now,
            |_| true,
            |_| {
                room -= 1;
                room >= 0
            },
        );
        assert_eq!(wanted.len(), 2, "two at a time");
        assert!(
            pools.to_start(now, |_| true, |_| true).is_empty(),
            "both slots busy"
        );
        for spec in &wanted {
            pools.started(spec, 1);
        }
        let wanted = pools.to_start(now, |_| true, |_| true);
        assert_eq!(wanted.len(), 2);
        for spec in &wanted {
            pools.started(spec, 2);
        }
        assert!(pools.to_start(now, |_| true, |_| true).is_empty(), "full");
        let ready: u32 = pools.snapshot().iter().map(|p| p.ready).sum();
        assert_eq!(ready, 4);
        assert!(
            pools.to_start(now, |_| true, |_| false).is_empty(),
            "no room"
        );
    }

    #[test]
    fn a_sandbox_is_taken_once_and_demand_grows_the_pool_within_bounds() {
        let now = Instant::now();
        let mut pools: Prewarmed<u32> = Prewarmed::new(&settings(1, 3));
        let py = spec("py:1");
        pools.started(&py, 7);
        assert_eq!(pools.take(&py, now), Some(7));
        assert_eq!(pools.take(&py, now), None, "never handed out twice");
        for _ in 0..5 {
            assert_eq!(pools.take(&py, now), None);
        }
        let wanted = pools.to_start(now, |i| i == "py:1", |_| true);
        assert_eq!(wanted, vec![py.clone(), py.clone()], "concurrency 2");
        for spec in &wanted {
            pools.started(spec, 8);
        }
        assert_eq!(pools.to_start(now, |i| i == "py:1", |_| true).len(), 1);
        pools.started(&py, 9);
        assert!(
            pools
                .to_start(now, |_| true, |_| true)
                .iter()
                .all(|s| s.image == "pr:1"),
            "python at its max of 3"
        );
        // Demand gone: back to the floor.
        let later = now + Duration::from_secs(11);
        let surplus = pools.surplus(later);
        assert_eq!(surplus, vec![(128, 8), (128, 8)], "oldest first");
    }

    #[test]
    fn failures_back_off_and_eviction_takes_from_the_fullest() {
        let now = Instant::now();
        let mut pools: Prewarmed<u32> = Prewarmed::new(&settings(2, 2));
        let (py, pr) = (spec("py:1"), spec("pr:1"));
        let wanted = pools.to_start(now, |_| true, |_| true);
        assert_eq!(
            wanted,
            vec![pr.clone(), pr.clone()],
            "the emptiest pools first"
        );
        pools.start_failed(&pr, now);
        pools.start_failed(&pr, now);
        pools.start_failed(&py, now);
        assert!(
            pools.to_start(now, |_| true, |_| true).is_empty(),
            "backing off"
        );
        let later = now + RETRY_AFTER;
        assert_eq!(
            pools.to_start(later, |_| true, |_| true),
            vec![pr.clone(), pr.clone()]
        );
        pools.started(&pr, 3);
        pools.start_failed(&pr, later);
        assert_eq!(
            pools.to_start(later, |_| true, |_| true),
            vec![py.clone(), py.clone()]
        );
        pools.started(&py, 1);
        pools.started(&py, 2);
        assert_eq!(pools.evict(), Some((128, 1)));
        let mut drained: Vec<u32> = pools.drain().into_iter().map(|(_, i)| i).collect();
        drained.sort_unstable();
        assert_eq!(drained, vec![2, 3]);
        assert_eq!(pools.evict(), None);
    }
}
