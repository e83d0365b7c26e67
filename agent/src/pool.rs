//! Warm pools and memory accounting (plain data; the caller holds the lock and does the I/O).
//!
//! Every live container holds its memory reservation, idle or busy. A run that finds an idle
//! container of its pool reuses it; otherwise it reserves memory for a new one, evicting the
//! least recently used idle containers of other pools when that makes it fit, or is refused.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use fresco_common::wire::WarmPool;

/// The result of asking for a container.
#[derive(Debug, PartialEq)]
pub enum Acquired<T> {
    /// An idle container of the same pool, now busy.
    Warm(T),
    /// Memory is reserved for a new container; `evicted` idle containers must be removed.
    Cold { evicted: Vec<T> },
    /// Not enough memory even after evicting every idle container.
    Full { free_mb: u64 },
}

struct Idle<T> {
    item: T,
    since: Instant,
}

#[derive(Default)]
struct PoolState<T> {
    /// The public warm key reported to the schedulers (`FunctionSpec::warm_key`).
    public_key: String,
    memory_mb: u64,
    idle: Vec<Idle<T>>,
    busy: u32,
}

/// All pools of one agent.
pub struct Pools<T> {
    capacity_mb: u64,
    reserved_mb: u64,
    pools: HashMap<String, PoolState<T>>,
}

impl<T> Pools<T> {
    pub fn new(capacity_mb: u64) -> Self {
        Self {
            capacity_mb,
            reserved_mb: 0,
            pools: HashMap::new(),
        }
    }

    pub fn capacity_mb(&self) -> u64 {
        self.capacity_mb
    }

    pub fn reserved_mb(&self) -> u64 {
        self.reserved_mb
    }

    /// Reserves `memory_mb` for a pre-warmed sandbox (see `prewarm`) if it fits without
    /// evicting anything; false when it does not.
    pub fn hold(&mut self, memory_mb: u64) -> bool {
        if self.reserved_mb + memory_mb > self.capacity_mb {
            return false;
        }
        self.reserved_mb += memory_mb;
        true
    }

    /// Frees what `hold` reserved (the pre-warmed sandbox is gone, or was claimed by a
    /// function, whose own reservation counts from then on).
    pub fn unhold(&mut self, memory_mb: u64) {
        self.reserved_mb = self.reserved_mb.saturating_sub(memory_mb);
    }

    /// Invocations running now.
    pub fn running(&self) -> u32 {
        self.pools.values().map(|p| p.busy).sum()
    }

    /// An idle container of pool `key`, or memory for a new one (see `Acquired`).
    pub fn acquire(&mut self, key: &str, public_key: &str, memory_mb: u64) -> Acquired<T> {
        if let Some(pool) = self.pools.get_mut(key) {
            // Most recently used first: it is the warmest.
            if let Some(idle) = pool.idle.pop() {
                pool.busy += 1;
                return Acquired::Warm(idle.item);
            }
        }
        let free = self.capacity_mb.saturating_sub(self.reserved_mb);
        let mut evicted = Vec::new();
        if memory_mb > free {
            let idle_mb: u64 = self
                .pools
                .values()
                .map(|p| p.memory_mb * p.idle.len() as u64)
                .sum();
            if memory_mb > free + idle_mb {
                return Acquired::Full { free_mb: free };
            }
            while memory_mb > self.capacity_mb.saturating_sub(self.reserved_mb) {
                let Some(item) = self.evict_oldest() else {
                    break;
                };
                evicted.push(item);
            }
        }
        self.reserved_mb += memory_mb;
        let pool = self
            .pools
            .entry(key.to_owned())
            .or_insert_with(|| PoolState {
                public_key: public_key.to_owned(),
                memory_mb,
                idle: Vec::new(),
                busy: 0,
            });
        pool.busy += 1;
        Acquired::Cold { evicted }
    }

    fn evict_oldest(&mut self) -> Option<T> {
        let key = self
            .pools
            .iter()
            .filter_map(|(k, p)| p.idle.first().map(|i| (i.since, k)))
            .min()
            .map(|(_, k)| k.clone())?;
        let pool = self.pools.get_mut(&key)?;
        let idle = pool.idle.remove(0);
        self.reserved_mb = self.reserved_mb.saturating_sub(pool.memory_mb);
        self.forget_if_empty(&key);
        Some(idle.item)
    }

    /// A busy container finished its invocation and may be reused.
    pub fn release(&mut self, key: &str, item: T, now: Instant) {
        if let Some(pool) = self.pools.get_mut(key) {
            pool.busy = pool.busy.saturating_sub(1);
            pool.idle.push(Idle { item, since: now });
        }
    }

    /// A busy container (or the reservation for one) is gone: its memory is free again.
    pub fn retire(&mut self, key: &str) {
        if let Some(pool) = self.pools.get_mut(key) {
            pool.busy = pool.busy.saturating_sub(1);
            self.reserved_mb = self.reserved_mb.saturating_sub(pool.memory_mb);
            self.forget_if_empty(key);
        }
    }

    fn forget_if_empty(&mut self, key: &str) {
        if self
            .pools
            .get(key)
            .is_some_and(|p| p.busy == 0 && p.idle.is_empty())
        {
            self.pools.remove(key);
        }
    }

    /// Removes the containers idle for at least `idle_timeout`; the caller destroys them.
    pub fn expire(&mut self, now: Instant, idle_timeout: Duration) -> Vec<T> {
        let mut expired = Vec::new();
        let keys: Vec<String> = self.pools.keys().cloned().collect();
        for key in keys {
            let Some(pool) = self.pools.get_mut(&key) else {
                continue;
            };
            let (old, young): (Vec<_>, Vec<_>) = std::mem::take(&mut pool.idle)
                .into_iter()
                .partition(|i| now.saturating_duration_since(i.since) >= idle_timeout);
            pool.idle = young;
            self.reserved_mb = self
                .reserved_mb
                .saturating_sub(pool.memory_mb * old.len() as u64);
            expired.extend(old.into_iter().map(|i| i.item));
            self.forget_if_empty(&key);
        }
        expired
    }

    /// Removes the idle containers of the pools whose key `retired` says; the caller destroys
    /// them. (Busy ones are the caller's to check when they come back.)
    pub fn take_idle_where(&mut self, retired: impl Fn(&str) -> bool) -> Vec<T> {
        let keys: Vec<String> = self
            .pools
            .iter()
            .filter(|(key, pool)| !pool.idle.is_empty() && retired(key))
            .map(|(key, _)| key.clone())
            .collect();
        let mut taken = Vec::new();
        for key in keys {
            let Some(pool) = self.pools.get_mut(&key) else {
                continue;
            };
            let idle = std::mem::take(&mut pool.idle);
            self.reserved_mb = self
                .reserved_mb
                .saturating_sub(pool.memory_mb * idle.len() as u64);
            taken.extend(idle.into_iter().map(|i| i.item));
            self.forget_if_empty(&key);
        }
        taken
    }

    /// Every idle container (at shutdown).
    pub fn drain_idle(&mut self) -> Vec<T> {
        self.expire(Instant::now() + Duration::from_secs(1), Duration::ZERO)
    }

    /// Every idle item (for `/metrics`).
    pub fn idle_items(&self) -> impl Iterator<Item = &T> {
        self.pools
            .values()
            .flat_map(|pool| pool.idle.iter().map(|idle| &idle.item))
    }

    /// Idle and busy counts per public warm key, for heartbeats.
    pub fn snapshot(&self) -> Vec<WarmPool> {
        let mut by_key: HashMap<&str, WarmPool> = HashMap::new();
        for pool in self.pools.values() {
            let entry = by_key.entry(&pool.public_key).or_insert_with(|| WarmPool {
                key: pool.public_key.clone(),
                idle: 0,
                busy: 0,
                memory_mb: i32::try_from(pool.memory_mb).unwrap_or(i32::MAX),
            });
            entry.idle += u32::try_from(pool.idle.len()).unwrap_or(u32::MAX);
            entry.busy += pool.busy;
        }
        let mut pools: Vec<WarmPool> = by_key.into_values().collect();
        pools.sort_by(|a, b| a.key.cmp(&b.key));
        pools
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One data-driven check: run `steps` against a pool of `capacity` MB.
    fn check(capacity: u64, steps: &[(&str, &str, u64, Acquired<u32>)]) -> Pools<u32> {
        let mut pools = Pools::new(capacity);
        let now = Instant::now();
        for (i, (action, key, mem, expected)) in steps.iter().enumerate() {
            match *action {
                "acquire" => {
                    let got = pools.acquire(key, key, *mem);
                    assert_eq!(&got, expected, "step {i}");
                }
                "release" => pools.release(key, *mem as u32, now + Duration::from_millis(i as u64)),
                "retire" => pools.retire(key),
                other => panic!("unknown action {other}"),
            }
        }
        pools
    }

    #[test]
    fn idle_containers_are_reused_per_key() {
        let pools = check(
            512,
            &[
                ("acquire", "a", 128, Acquired::Cold { evicted: vec![] }),
                ("release", "a", 7, Acquired::Full { free_mb: 0 }),
                ("acquire", "a", 128, Acquired::Warm(7)),
                ("acquire", "b", 128, Acquired::Cold { evicted: vec![] }),
            ],
        );
        assert_eq!(pools.reserved_mb(), 256);
        assert_eq!(pools.running(), 2);
    }

    #[test]
    fn runs_that_do_not_fit_are_refused_or_evict_idle_ones() {
        let pools = check(
            300,
            &[
                ("acquire", "a", 128, Acquired::Cold { evicted: vec![] }),
                ("acquire", "b", 128, Acquired::Cold { evicted: vec![] }),
                // 44 MB free, nothing idle: refused.
                ("acquire", "c", 128, Acquired::Full { free_mb: 44 }),
                ("release", "a", 1, Acquired::Full { free_mb: 0 }),
                ("release", "b", 2, Acquired::Full { free_mb: 0 }),
                // Needs one eviction: the least recently used idle container goes.
                ("acquire", "c", 128, Acquired::Cold { evicted: vec![1] }),
                ("acquire", "d", 256, Acquired::Full { free_mb: 44 }),
            ],
        );
        assert_eq!(pools.reserved_mb(), 256);
        let snapshot = pools.snapshot();
        assert_eq!(snapshot.len(), 2);
        assert_eq!((snapshot[0].key.as_str(), snapshot[0].idle), ("b", 1));
        assert_eq!((snapshot[1].key.as_str(), snapshot[1].busy), ("c", 1));
    }

    #[test]
    fn prewarmed_sandboxes_hold_memory_only_where_it_is_free() {
        let mut pools: Pools<u32> = Pools::new(300);
        assert!(pools.hold(128));
        assert!(pools.hold(128));
        assert!(!pools.hold(128), "never beyond the capacity");
        assert_eq!(pools.reserved_mb(), 256);
        assert_eq!(
            pools.acquire("a", "a", 128),
            Acquired::Full { free_mb: 44 },
            "held memory is not a function's until it is given back"
        );
        pools.unhold(128);
        assert_eq!(
            pools.acquire("a", "a", 128),
            Acquired::Cold { evicted: vec![] }
        );
        assert_eq!(pools.reserved_mb(), 256);
    }

    #[test]
    fn retired_containers_free_their_memory() {
        let pools = check(
            128,
            &[
                ("acquire", "a", 128, Acquired::Cold { evicted: vec![] }),
                ("acquire", "a", 128, Acquired::Full { free_mb: 0 }),
                ("retire", "a", 0, Acquired::Full { free_mb: 0 }),
                ("acquire", "a", 128, Acquired::Cold { evicted: vec![] }),
            ],
        );
        assert_eq!(pools.reserved_mb(), 128);
    }

    #[test]
    fn retired_pools_give_up_their_idle_containers_only() {
        let mut pools = check(
            1024,
            &[
                ("acquire", "a", 100, Acquired::Cold { evicted: vec![] }),
                ("acquire", "a", 100, Acquired::Cold { evicted: vec![] }),
                ("acquire", "b", 100, Acquired::Cold { evicted: vec![] }),
                ("release", "a", 1, Acquired::Full { free_mb: 0 }),
                ("release", "b", 2, Acquired::Full { free_mb: 0 }),
            ],
        );
        assert_eq!(pools.take_idle_where(|key| key == "a"), vec![1]);
        assert_eq!(pools.reserved_mb(), 200, "a's busy one and b's idle one");
        assert_eq!(pools.running(), 1);
        assert!(pools.take_idle_where(|key| key == "a").is_empty());
        assert_eq!(pools.take_idle_where(|_| true), vec![2]);
        assert_eq!(pools.reserved_mb(), 100);
    }

    #[test]
    fn idle_timeout_expires_only_old_containers() {
        let mut pools: Pools<u32> = Pools::new(1024);
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(
                pools.acquire("a", "pub-a", 100),
                Acquired::Cold { evicted: vec![] }
            );
        }
        for item in 0..3 {
            pools.release("a", item, start + Duration::from_secs(u64::from(item) * 10));
        }
        let expired = pools.expire(start + Duration::from_secs(25), Duration::from_secs(10));
        assert_eq!(expired, vec![0, 1]);
        assert_eq!(pools.reserved_mb(), 100);
        assert_eq!(pools.snapshot()[0].key, "pub-a");
        assert_eq!(pools.drain_idle(), vec![2]);
        assert_eq!(pools.reserved_mb(), 0);
        assert!(pools.snapshot().is_empty());
    }
}
