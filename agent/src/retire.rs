//! Retired function versions, as this agent heard of them in heartbeat replies: a container
//! whose spec a retirement covers never serves again (idle ones are destroyed when the
//! retirement arrives, busy ones when their invocation ends), and a container started later
//! for a stale spec (a control plane's cached target, an execution queued before the change)
//! runs that one invocation and is destroyed. Plain data; the agent holds the lock.
//!
//! Pools find their function version and revision in their pool key,
//! `<function>:<version>@<revision>#<settings hash>` (see `service::pool_key`).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use fresco_common::wire::{FunctionSpec, RetiredKey};
use uuid::Uuid;

/// How long a retirement is remembered for stale specs that may still arrive (the control
/// plane's target cache and tickets live seconds; a queued execution may wait longer).
pub const MEMORY: Duration = Duration::from_secs(3600);
/// Most retirements remembered; the oldest go first.
pub const MAX_REMEMBERED: usize = 100_000;

/// The function version and revision a pool key names.
pub fn pool_identity(pool_key: &str) -> Option<(Uuid, i32, i64)> {
    let (warm, rest) = pool_key.split_once('@')?;
    let (revision, _) = rest.split_once('#')?;
    let (function, version) = warm.rsplit_once(':')?;
    Some((
        Uuid::parse_str(function).ok()?,
        version.parse().ok()?,
        revision.parse().ok()?,
    ))
}

#[derive(Debug, Default)]
pub struct Retired {
    by_function: HashMap<Uuid, Vec<RetiredKey>>,
    /// When each remembered key arrived, oldest first.
    arrivals: VecDeque<(Instant, Uuid, i64)>,
    /// The highest `seq` applied.
    acked: Option<i64>,
}

impl Retired {
    /// Whether a container running `spec` must not serve again.
    pub fn covers(&self, spec: &FunctionSpec) -> bool {
        self.by_function
            .get(&spec.function_id)
            .is_some_and(|keys| keys.iter().any(|k| k.covers(spec)))
    }

    /// Whether the pool with this key holds retired containers.
    pub fn covers_pool(&self, pool_key: &str) -> bool {
        pool_identity(pool_key).is_some_and(|(function, version, revision)| {
            self.by_function.get(&function).is_some_and(|keys| {
                keys.iter()
                    .any(|k| k.covers_revision(function, version, revision))
            })
        })
    }

    /// Remembers `keys` (and forgets those past `MEMORY` or beyond `MAX_REMEMBERED`).
    pub fn add(&mut self, keys: &[RetiredKey], now: Instant) {
        for key in keys {
            let known = self.by_function.entry(key.function_id).or_default();
            if !known.iter().any(|k| k.seq == key.seq) {
                known.push(key.clone());
                self.arrivals.push_back((now, key.function_id, key.seq));
            }
        }
        while self.arrivals.front().is_some_and(|(at, _, _)| {
            now.saturating_duration_since(*at) >= MEMORY || self.arrivals.len() > MAX_REMEMBERED
        }) {
            if let Some((_, function, seq)) = self.arrivals.pop_front() {
                if let Some(known) = self.by_function.get_mut(&function) {
                    known.retain(|k| k.seq != seq);
                    if known.is_empty() {
                        self.by_function.remove(&function);
                    }
                }
            }
        }
    }

    /// The highest `seq` applied, for the next heartbeat.
    pub fn acked(&self) -> Option<i64> {
        self.acked
    }

    /// Everything up to `seq` has been applied.
    pub fn acknowledge(&mut self, seq: i64) {
        self.acked = Some(self.acked.map_or(seq, |a| a.max(seq)));
    }

    /// Retirements remembered.
    pub fn len(&self) -> usize {
        self.arrivals.len()
    }

    pub fn is_empty(&self) -> bool {
        self.arrivals.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seq: i64, function: u128, version: Option<i32>, below: Option<i64>) -> RetiredKey {
        RetiredKey {
            seq,
            function_id: Uuid::from_u128(function),
            version,
            below_revision: below,
        }
    }

    fn pool(function: u128, version: i32, revision: i64) -> String {
        format!("{}:{version}@{revision}#00ff", Uuid::from_u128(function))
    }

    #[test]
    fn keys_cover_versions_and_older_revisions() {
        let mut retired = Retired::default();
        let now = Instant::now();
        retired.add(
            &[
                key(5, 1, None, None),
                key(7, 2, Some(0), Some(7)),
                key(8, 3, Some(2), None),
            ],
            now,
        );
        // (pool, retired?)
        let cases = [
            (pool(1, 0, 0), true),
            (pool(1, 4, 0), true),
            (pool(2, 0, 3), true),
            (pool(2, 0, 7), false),
            (pool(2, 1, 0), false),
            (pool(3, 2, 0), true),
            (pool(3, 1, 0), false),
            (pool(4, 0, 0), false),
            ("garbage".to_owned(), false),
        ];
        for (pool, expected) in cases {
            assert_eq!(retired.covers_pool(&pool), expected, "{pool}");
        }
        assert_eq!(retired.len(), 3);
        retired.add(&[key(5, 1, None, None)], now);
        assert_eq!(retired.len(), 3, "a key heard twice is kept once");
    }

    #[test]
    fn old_keys_are_forgotten_and_acknowledgements_only_grow() {
        let mut retired = Retired::default();
        let start = Instant::now();
        retired.add(&[key(1, 1, None, None)], start);
        retired.add(&[key(2, 2, None, None)], start + MEMORY);
        assert!(
            !retired.covers_pool(&pool(1, 0, 0)),
            "forgotten after MEMORY"
        );
        assert!(retired.covers_pool(&pool(2, 0, 0)));
        assert_eq!(retired.acked(), None);
        retired.acknowledge(9);
        retired.acknowledge(4);
        assert_eq!(retired.acked(), Some(9));
    }
}
