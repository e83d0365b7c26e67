//! The grant pool: the grants this API replica holds, per function state, so that a warm
//! invocation calls its agent directly, without asking the scheduler.
//!
//! An invocation takes a slot and a unit of budget from a live grant of its target (atomics; the
//! pool's mutex is held only while a grant is picked, never across an await), runs, and gives
//! the slot back. Only when no grant has a free slot and budget left (or all are near expiry)
//! is the scheduler asked for another: the cold and scale-up path. A grant idle for
//! `[api] grant_idle_ms`, spent, or near expiry is returned in the background with the count of
//! invocations it started, so its unused budget and its slots count against the project no
//! longer. A grant this replica never returns (it died) expires at the scheduler.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use fresco_common::wire::{FunctionSpec, GrantAnswer, GrantReturn};
use uuid::Uuid;

/// A grant is not used for new invocations this close to its expiry.
const EXPIRY_MARGIN: Duration = Duration::from_millis(1500);
/// Invocations of budget asked for per slot.
const BUDGET_PER_SLOT: u32 = 256;

/// What grants are held for: one state of one function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PoolKey {
    function_id: Uuid,
    version: i32,
    revision: i64,
}

impl PoolKey {
    pub fn of(spec: &FunctionSpec) -> Self {
        Self {
            function_id: spec.function_id,
            version: spec.version,
            revision: spec.revision,
        }
    }
}

/// A grant held by this replica.
#[derive(Debug)]
pub struct Held {
    pub answer: GrantAnswer,
    free: AtomicU32,
    budget: AtomicU32,
    used: AtomicU32,
    /// Milliseconds after `born` of the last time a slot was given back.
    last_used_ms: AtomicU64,
    born: Instant,
    usable_until: Instant,
    /// Taken out of the pool (returned, or its agent failed): no new invocations.
    retired: AtomicBool,
}

impl Held {
    fn new(answer: GrantAnswer, now: Instant) -> Self {
        let ttl = Duration::from_millis(answer.ttl_ms);
        Self {
            free: AtomicU32::new(answer.slots),
            budget: AtomicU32::new(answer.invocations),
            used: AtomicU32::new(0),
            last_used_ms: AtomicU64::new(0),
            born: now,
            usable_until: now + ttl.saturating_sub(EXPIRY_MARGIN),
            retired: AtomicBool::new(false),
            answer,
        }
    }

    /// Takes a slot and a unit of budget, if both are left and the grant is usable.
    fn take(self: &Arc<Self>, now: Instant) -> Option<GrantSlot> {
        if self.retired.load(Ordering::Acquire) || now >= self.usable_until {
            return None;
        }
        decrement(&self.free)?;
        if decrement(&self.budget).is_none() {
            self.free.fetch_add(1, Ordering::AcqRel);
            return None;
        }
        self.used.fetch_add(1, Ordering::AcqRel);
        Some(GrantSlot {
            held: Arc::clone(self),
        })
    }

    fn busy(&self) -> u32 {
        self.answer
            .slots
            .saturating_sub(self.free.load(Ordering::Acquire))
    }

    /// Whether it should go back to the scheduler now.
    fn returnable(&self, now: Instant, idle: Duration) -> bool {
        if self.busy() > 0 {
            return false;
        }
        let last = self.born + Duration::from_millis(self.last_used_ms.load(Ordering::Acquire));
        self.retired.load(Ordering::Acquire)
            || now >= self.usable_until
            || self.budget.load(Ordering::Acquire) == 0
            || now.saturating_duration_since(last) >= idle
    }
}

/// Takes one from a counter that is above zero.
fn decrement(counter: &AtomicU32) -> Option<u32> {
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
        .ok()
}

/// A slot of a held grant, for one invocation; given back when dropped.
#[derive(Debug)]
pub struct GrantSlot {
    held: Arc<Held>,
}

impl GrantSlot {
    pub fn grant(&self) -> &GrantAnswer {
        &self.held.answer
    }

    /// Takes the grant out of the pool (its agent cannot run anything now): it is returned
    /// once its running invocations end.
    pub fn retire(&self) {
        self.held.retired.store(true, Ordering::Release);
    }
}

impl Drop for GrantSlot {
    fn drop(&mut self) {
        let ms = u64::try_from(self.held.born.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.held.last_used_ms.fetch_max(ms, Ordering::AcqRel);
        self.held.free.fetch_add(1, Ordering::AcqRel);
    }
}

/// The grants this replica holds.
pub struct GrantPool {
    idle: Duration,
    max_slots: u32,
    grants: Mutex<HashMap<PoolKey, Vec<Arc<Held>>>>,
}

impl GrantPool {
    /// A pool returning grants idle for `idle`; it asks for at most `max_slots` at once.
    pub fn new(idle: Duration, max_slots: u32) -> Self {
        Self {
            idle,
            max_slots: max_slots.max(1),
            grants: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<PoolKey, Vec<Arc<Held>>>> {
        self.grants
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A slot of a live grant of `key`, if one has room.
    pub fn take(&self, key: &PoolKey, now: Instant) -> Option<GrantSlot> {
        let grants = self.lock();
        grants.get(key)?.iter().find_map(|held| held.take(now))
    }

    /// How many slots and invocations to ask for when `key` needs a new grant: twice what
    /// its grants run now (at least one slot), so a growing load needs few grants.
    pub fn wanted(&self, key: &PoolKey) -> (u32, u32) {
        let busy: u32 = self
            .lock()
            .get(key)
            .map_or(0, |held| held.iter().map(|h| h.busy()).sum());
        let slots = busy.max(1).min(self.max_slots);
        (slots, slots.saturating_mul(BUDGET_PER_SLOT))
    }

    /// Keeps a new grant and takes its first slot.
    pub fn add(&self, key: PoolKey, answer: GrantAnswer, now: Instant) -> Option<GrantSlot> {
        let held = Arc::new(Held::new(answer, now));
        let slot = held.take(now);
        self.lock().entry(key).or_default().push(held);
        slot
    }

    /// Takes out the grants to return now (idle, spent, near expiry or retired, with nothing
    /// running): their ids and how many invocations each started.
    pub fn due(&self, now: Instant) -> Vec<(Uuid, GrantReturn)> {
        let mut due = Vec::new();
        let mut grants = self.lock();
        grants.retain(|_, held| {
            held.retain(|h| {
                if h.returnable(now, self.idle) {
                    h.retired.store(true, Ordering::Release);
                    due.push((
                        h.answer.grant_id,
                        GrantReturn {
                            used: Some(h.used.load(Ordering::Acquire)),
                        },
                    ));
                    false
                } else {
                    true
                }
            });
            !held.is_empty()
        });
        due
    }

    /// Grants held now.
    pub fn len(&self) -> usize {
        self.lock().values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(slots: u32, invocations: u32, ttl_ms: u64) -> GrantAnswer {
        GrantAnswer {
            grant_id: Uuid::new_v4(),
            agent_id: "a1".into(),
            agent_url: "http://a1".into(),
            token: "t".into(),
            slots,
            invocations,
            ttl_ms,
            warm: true,
        }
    }

    fn key() -> PoolKey {
        PoolKey {
            function_id: Uuid::from_bytes([1; 16]),
            version: 0,
            revision: 1,
        }
    }

    #[test]
    fn slots_and_budget_bound_what_a_grant_runs() {
        let t0 = Instant::now();
        let pool = GrantPool::new(Duration::from_secs(1), 16);
        assert!(pool.take(&key(), t0).is_none(), "no grant yet");
        let first = pool.add(key(), answer(2, 3, 10_000), t0).expect("slot");
        let second = pool.take(&key(), t0).expect("second slot");
        assert!(pool.take(&key(), t0).is_none(), "two slots");
        assert_eq!(pool.wanted(&key()), (2, 2 * BUDGET_PER_SLOT));
        drop(first);
        let third = pool.take(&key(), t0).expect("slot back");
        drop((second, third));
        // Three invocations of budget are spent: nothing more, though slots are free.
        assert!(pool.take(&key(), t0).is_none(), "budget spent");
        let due = pool.due(t0);
        assert_eq!(due.len(), 1, "a spent grant goes back at once");
        assert_eq!(due[0].1.used, Some(3));
        assert!(pool.is_empty());
    }

    #[test]
    fn idle_and_expiring_grants_go_back_busy_ones_stay() {
        let t0 = Instant::now();
        let pool = GrantPool::new(Duration::from_millis(500), 16);
        let slot = pool.add(key(), answer(1, 100, 10_000), t0).expect("slot");
        assert!(pool.due(t0 + Duration::from_secs(5)).is_empty(), "busy");
        drop(slot);
        let returned_at = Instant::now();
        assert!(pool.due(returned_at).is_empty(), "just used");
        let due = pool.due(returned_at + Duration::from_millis(600));
        assert_eq!(due.len(), 1, "idle past grant_idle_ms");
        assert_eq!(due[0].1.used, Some(1));

        // Near its expiry a grant takes no new invocation and goes back.
        let _ = pool.add(key(), answer(4, 100, 2_000), t0);
        let near = t0 + Duration::from_millis(600);
        assert!(pool.take(&key(), near).is_none(), "within the margin");
        let late = t0 + Duration::from_secs(3);
        assert_eq!(pool.due(late).len(), 1);
    }

    #[test]
    fn a_retired_grant_takes_nothing_more_and_goes_back_when_its_runs_end() {
        let t0 = Instant::now();
        let pool = GrantPool::new(Duration::from_secs(60), 16);
        let slot = pool.add(key(), answer(4, 100, 10_000), t0).expect("slot");
        slot.retire();
        assert!(pool.take(&key(), t0).is_none());
        assert!(pool.due(t0).is_empty(), "its run goes on");
        drop(slot);
        assert_eq!(pool.due(t0).len(), 1);
    }
}
