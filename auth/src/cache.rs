//! An in-memory token cache in front of any validator: positive and negative entries,
//! single-flight misses, a bound, and stale answers while the identity service is down.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::Utc;
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

use crate::{AuthError, Context, TokenValidator};

/// How long answers are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig {
    /// A validated token is trusted this long (never past its own expiry).
    pub token_cache_time: Duration,
    /// An invalid (or unscoped) token is remembered as such this long.
    pub negative_cache_time: Duration,
    /// Most entries kept; beyond it expired entries go first, then the oldest.
    pub max_entries: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            token_cache_time: Duration::from_secs(300),
            negative_cache_time: Duration::from_secs(10),
            max_entries: 10_000,
        }
    }
}

/// Counters of one cache, as a snapshot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Answers given from a valid entry (positive or negative).
    pub hits: u64,
    /// Answers that needed the validator (counted once per caller, joined or not).
    pub misses: u64,
    /// Answers given from an outdated positive entry because the validator was unavailable.
    pub stale_served: u64,
    /// Entries removed to stay within `max_entries`.
    pub evictions: u64,
    /// Entries held now (pending validations included).
    pub entries: usize,
}

type Key = [u8; 32];
type Answer = Result<Arc<Context>, AuthError>;

enum Slot {
    Ready {
        answer: Answer,
        until: Instant,
        /// Insertion order, for evicting the oldest.
        seq: u64,
    },
    /// A validation in flight; every caller of the same token awaits the same cell.
    Pending {
        cell: Arc<OnceCell<Answer>>,
        /// The outdated positive answer this validation replaces, served if the validator is
        /// unavailable and the token itself has not expired.
        stale: Option<Arc<Context>>,
    },
}

enum Lookup {
    Hit(Answer),
    Flight(Arc<OnceCell<Answer>>),
}

/// Caches the answers of `V` by the SHA-256 of the token (raw tokens are never stored).
pub struct CachingValidator<V> {
    inner: V,
    config: CacheConfig,
    slots: Mutex<HashMap<Key, Slot>>,
    seq: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    stale_served: AtomicU64,
    evictions: AtomicU64,
}

impl<V: TokenValidator> CachingValidator<V> {
    pub fn new(inner: V, config: CacheConfig) -> Self {
        Self {
            inner,
            config,
            slots: Mutex::new(HashMap::new()),
            seq: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            stale_served: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
        }
    }

    /// The validator behind the cache.
    pub fn inner(&self) -> &V {
        &self.inner
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            stale_served: self.stale_served.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            entries: self.lock().len(),
        }
    }

    /// Validates `token`, from the cache when possible. Returns a shared context: cloning it
    /// is a reference-count increment.
    pub async fn validate_shared(&self, token: &str) -> Answer {
        let key: Key = Sha256::digest(token.as_bytes()).into();
        match self.lookup(key) {
            Lookup::Hit(answer) => answer,
            Lookup::Flight(cell) => self.await_flight(key, token, &cell).await,
        }
    }

    /// A valid entry's answer, or the flight to join (started here if there is none).
    fn lookup(&self, key: Key) -> Lookup {
        let mut slots = self.lock();
        let now = Instant::now();
        let stale = match slots.get(&key) {
            Some(Slot::Ready { answer, until, .. }) if *until > now => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                return Lookup::Hit(answer.clone());
            }
            Some(Slot::Ready { answer, .. }) => answer.as_ref().ok().cloned(),
            Some(Slot::Pending { cell, .. }) => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                return Lookup::Flight(cell.clone());
            }
            None => None,
        };
        self.misses.fetch_add(1, Ordering::Relaxed);
        if slots.len() >= self.config.max_entries && !slots.contains_key(&key) {
            self.make_room(&mut slots, now);
        }
        let cell = Arc::new(OnceCell::new());
        slots.insert(
            key,
            Slot::Pending {
                cell: cell.clone(),
                stale,
            },
        );
        Lookup::Flight(cell)
    }

    /// Runs the validation of the flight `cell` (or joins the caller already running it; if
    /// that caller goes away, one of the waiters takes over), then records the answer.
    async fn await_flight(&self, key: Key, token: &str, cell: &Arc<OnceCell<Answer>>) -> Answer {
        let answer = cell
            .get_or_init(|| async { self.inner.validate(token).await.map(Arc::new) })
            .await
            .clone();
        let mut slots = self.lock();
        let now = Instant::now();
        let stale = match slots.get(&key) {
            Some(Slot::Pending {
                cell: current,
                stale,
            }) if Arc::ptr_eq(current, cell) => stale.clone(),
            // Another caller of the same flight recorded the answer already: answer as it did.
            Some(Slot::Ready { answer, until, .. }) if *until > now => return answer.clone(),
            _ => return answer,
        };
        let (answer, is_stale) = self.settle(answer, stale);
        let until = match &answer {
            Ok(ctx) => {
                let left = (ctx.expires_at - Utc::now())
                    .to_std()
                    .unwrap_or(Duration::ZERO);
                // A stale answer served during an outage is kept briefly, so the identity
                // service is asked again soon.
                let keep = if is_stale {
                    self.config.negative_cache_time
                } else {
                    self.config.token_cache_time
                };
                now + left.min(keep)
            }
            Err(err) if err.is_about_token() => now + self.config.negative_cache_time,
            Err(_) => {
                // Not an answer about the token: the next caller asks again.
                slots.remove(&key);
                return answer;
            }
        };
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        slots.insert(
            key,
            Slot::Ready {
                answer: answer.clone(),
                until,
                seq,
            },
        );
        answer
    }

    /// Turns "unavailable" into the outdated context when there is one whose token has not
    /// expired; says whether it did.
    fn settle(&self, answer: Answer, stale: Option<Arc<Context>>) -> (Answer, bool) {
        match (answer, stale) {
            (Err(AuthError::KeystoneUnavailable(reason)), Some(ctx))
                if ctx.expires_at > Utc::now() =>
            {
                self.stale_served.fetch_add(1, Ordering::Relaxed);
                log::warn!("serving a cached token past its cache time: {reason}");
                (Ok(ctx), true)
            }
            (answer, _) => (answer, false),
        }
    }

    /// Removes expired entries and abandoned flights (every caller went away before an
    /// answer: only the map holds the cell); if that is not enough, the oldest tenth of the
    /// answers (at least one). Flights in progress stay.
    fn make_room(&self, slots: &mut HashMap<Key, Slot>, now: Instant) {
        let before = slots.len();
        slots.retain(|_, slot| match slot {
            Slot::Ready { until, .. } => *until > now,
            Slot::Pending { cell, .. } => Arc::strong_count(cell) > 1,
        });
        let max = self.config.max_entries;
        if slots.len() >= max {
            let mut seqs: Vec<u64> = slots
                .values()
                .filter_map(|slot| match slot {
                    Slot::Ready { seq, .. } => Some(*seq),
                    Slot::Pending { .. } => None,
                })
                .collect();
            let excess = slots.len() + 1 - max;
            let count = excess.max(max / 10).min(seqs.len());
            if count > 0 {
                let (_, cutoff, _) = seqs.select_nth_unstable(count - 1);
                let cutoff = *cutoff;
                slots.retain(|_, slot| !matches!(slot, Slot::Ready { seq, .. } if *seq <= cutoff));
            }
        }
        let removed = before - slots.len();
        self.evictions.fetch_add(removed as u64, Ordering::Relaxed);
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Key, Slot>> {
        // A panic while holding the lock cannot leave the map inconsistent (every update is a
        // single insert or remove), so a poisoned lock is still usable.
        self.slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl<V: TokenValidator> TokenValidator for CachingValidator<V> {
    async fn validate(&self, token: &str) -> Result<Context, AuthError> {
        self.validate_shared(token).await.map(|ctx| (*ctx).clone())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use chrono::DateTime;

    use super::*;
    use crate::NoAuth;

    /// A validator that counts its calls, answers like `NoAuth` (tokens starting with `bad`
    /// are invalid, `unscoped` is unscoped) and can be made slow or unavailable.
    struct Fake {
        calls: AtomicU64,
        down: AtomicBool,
        delay: Duration,
        expires_at: Option<DateTime<Utc>>,
    }

    impl Fake {
        fn new() -> Self {
            Self {
                calls: AtomicU64::new(0),
                down: AtomicBool::new(false),
                delay: Duration::ZERO,
                expires_at: None,
            }
        }
        fn calls(&self) -> u64 {
            self.calls.load(Ordering::SeqCst)
        }
    }

    impl TokenValidator for Fake {
        async fn validate(&self, token: &str) -> Result<Context, AuthError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if !self.delay.is_zero() {
                tokio::time::sleep(self.delay).await;
            }
            if self.down.load(Ordering::SeqCst) {
                return Err(AuthError::KeystoneUnavailable("fake is down".into()));
            }
            if token.starts_with("bad") {
                return Err(AuthError::InvalidToken);
            }
            if token == "unscoped" {
                return Err(AuthError::Unscoped);
            }
            let mut ctx = NoAuth::default().parse(token)?;
            if let Some(at) = self.expires_at {
                ctx.expires_at = at;
            }
            Ok(ctx)
        }
    }

    fn cache(fake: Fake, ttl_ms: u64, negative_ms: u64, max: usize) -> CachingValidator<Fake> {
        CachingValidator::new(
            fake,
            CacheConfig {
                token_cache_time: Duration::from_millis(ttl_ms),
                negative_cache_time: Duration::from_millis(negative_ms),
                max_entries: max,
            },
        )
    }

    #[tokio::test]
    async fn valid_tokens_are_cached_until_the_cache_time() {
        let c = cache(Fake::new(), 150, 50, 100);
        for _ in 0..5 {
            let ctx = c.validate_shared("alice:p1").await.expect("valid");
            assert_eq!(ctx.project(), Some("p1"));
        }
        assert_eq!(c.inner().calls(), 1);
        assert_eq!(c.stats().hits, 4);
        tokio::time::sleep(Duration::from_millis(200)).await;
        c.validate_shared("alice:p1").await.expect("valid");
        assert_eq!(
            c.inner().calls(),
            2,
            "expired entry must be validated again"
        );
    }

    #[tokio::test]
    async fn entries_never_outlive_the_token() {
        let mut fake = Fake::new();
        fake.expires_at = Some(Utc::now() + chrono::Duration::milliseconds(150));
        let c = cache(fake, 60_000, 50, 100);
        c.validate_shared("alice:p1").await.expect("valid");
        c.validate_shared("alice:p1").await.expect("valid");
        assert_eq!(c.inner().calls(), 1);
        tokio::time::sleep(Duration::from_millis(200)).await;
        c.validate_shared("alice:p1")
            .await
            .expect("still valid for the fake");
        assert_eq!(c.inner().calls(), 2);
    }

    #[tokio::test]
    async fn invalid_and_unscoped_tokens_are_cached_for_the_negative_time() {
        let c = cache(Fake::new(), 60_000, 100, 100);
        for _ in 0..3 {
            assert_eq!(
                c.validate_shared("bad1").await,
                Err(AuthError::InvalidToken)
            );
            assert_eq!(
                c.validate_shared("unscoped").await,
                Err(AuthError::Unscoped)
            );
        }
        assert_eq!(c.inner().calls(), 2);
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(
            c.validate_shared("bad1").await,
            Err(AuthError::InvalidToken)
        );
        assert_eq!(c.inner().calls(), 3);
    }

    #[tokio::test]
    async fn unavailability_is_not_cached_and_cached_tokens_keep_working() {
        let c = cache(Fake::new(), 60_000, 60_000, 100);
        c.validate_shared("alice:p1").await.expect("valid");
        c.inner().down.store(true, Ordering::SeqCst);
        assert!(
            c.validate_shared("alice:p1").await.is_ok(),
            "cached token works"
        );
        for _ in 0..2 {
            assert!(matches!(
                c.validate_shared("bob:p2").await,
                Err(AuthError::KeystoneUnavailable(_))
            ));
        }
        assert_eq!(c.inner().calls(), 3, "each new token asks again while down");
        c.inner().down.store(false, Ordering::SeqCst);
        assert!(c.validate_shared("bob:p2").await.is_ok(), "recovers");
    }

    #[tokio::test]
    async fn outdated_entries_are_served_while_down_if_the_token_has_not_expired() {
        let c = cache(Fake::new(), 50, 100, 100);
        c.validate_shared("alice:p1").await.expect("valid");
        tokio::time::sleep(Duration::from_millis(80)).await;
        c.inner().down.store(true, Ordering::SeqCst);
        let ctx = c.validate_shared("alice:p1").await.expect("stale answer");
        assert_eq!(ctx.user_id, "alice");
        assert_eq!(c.stats().stale_served, 1);
        assert_eq!(c.inner().calls(), 2);
        // Kept only for the negative cache time, then asked again.
        c.validate_shared("alice:p1")
            .await
            .expect("stale answer, cached");
        assert_eq!(c.inner().calls(), 2);
        tokio::time::sleep(Duration::from_millis(120)).await;
        c.validate_shared("alice:p1").await.expect("stale answer");
        assert_eq!(c.inner().calls(), 3);
    }

    #[tokio::test]
    async fn expired_tokens_are_not_served_stale() {
        let mut fake = Fake::new();
        fake.expires_at = Some(Utc::now() + chrono::Duration::milliseconds(60));
        let c = cache(fake, 60_000, 100, 100);
        c.validate_shared("alice:p1").await.expect("valid");
        tokio::time::sleep(Duration::from_millis(100)).await;
        c.inner().down.store(true, Ordering::SeqCst);
        assert!(matches!(
            c.validate_shared("alice:p1").await,
            Err(AuthError::KeystoneUnavailable(_))
        ));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_misses_for_one_token_make_one_call() {
        let mut fake = Fake::new();
        fake.delay = Duration::from_millis(100);
        let c = Arc::new(cache(fake, 60_000, 60_000, 100));
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let c = c.clone();
                tokio::spawn(async move { c.validate_shared("alice:p1").await })
            })
            .collect();
        for task in tasks {
            let answer = task.await.expect("task");
            assert_eq!(answer.expect("valid").user_id, "alice");
        }
        assert_eq!(c.inner().calls(), 1);
        assert_eq!(c.stats().misses, 50);
        // Distinct tokens are not serialised behind each other.
        let started = Instant::now();
        let a = c.validate_shared("a:p");
        let b = c.validate_shared("b:p");
        let (a, b) = tokio::join!(a, b);
        assert!(a.is_ok() && b.is_ok());
        assert!(
            started.elapsed() < Duration::from_millis(190),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(c.inner().calls(), 3);
    }

    #[tokio::test]
    async fn a_cancelled_leader_hands_over_to_a_waiter() {
        let mut fake = Fake::new();
        fake.delay = Duration::from_millis(100);
        let c = Arc::new(cache(fake, 60_000, 60_000, 100));
        let leader = {
            let c = c.clone();
            tokio::spawn(async move { c.validate_shared("alice:p1").await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        let waiter = {
            let c = c.clone();
            tokio::spawn(async move { c.validate_shared("alice:p1").await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        leader.abort();
        let answer = waiter.await.expect("waiter task");
        assert_eq!(answer.expect("valid").user_id, "alice");
        assert_eq!(c.inner().calls(), 2, "the waiter ran the validation itself");
        c.validate_shared("alice:p1").await.expect("cached");
        assert_eq!(c.inner().calls(), 2);
    }

    #[tokio::test]
    async fn the_cache_is_bounded_and_evicts_expired_entries_first_then_the_oldest() {
        let c = cache(Fake::new(), 60_000, 50, 10);
        for i in 0..5 {
            let _ = c.validate_shared(&format!("bad{i}")).await;
        }
        for i in 0..5 {
            c.validate_shared(&format!("u{i}:p")).await.expect("valid");
        }
        assert_eq!(c.stats().entries, 10);
        tokio::time::sleep(Duration::from_millis(80)).await;
        // The negative entries have expired: they make room, the valid ones stay.
        c.validate_shared("u5:p").await.expect("valid");
        assert_eq!(c.stats().entries, 6);
        assert_eq!(c.stats().evictions, 5);
        for i in 0..=5 {
            c.validate_shared(&format!("u{i}:p")).await.expect("valid");
        }
        assert_eq!(c.inner().calls(), 11, "valid entries survived");
        // Now fill beyond the bound with valid entries: the oldest go.
        for i in 6..30 {
            c.validate_shared(&format!("u{i}:p")).await.expect("valid");
            assert!(c.stats().entries <= 10);
        }
        let calls = c.inner().calls();
        c.validate_shared("u29:p").await.expect("newest is cached");
        assert_eq!(c.inner().calls(), calls);
        c.validate_shared("u0:p").await.expect("oldest was evicted");
        assert_eq!(c.inner().calls(), calls + 1);
    }

    #[tokio::test]
    async fn abandoned_flights_do_not_hold_room() {
        let mut fake = Fake::new();
        fake.delay = Duration::from_millis(200);
        let c = Arc::new(cache(fake, 60_000, 60_000, 3));
        for i in 0..3 {
            let c = c.clone();
            let task = tokio::spawn(async move { c.validate_shared(&format!("u{i}:p")).await });
            tokio::time::sleep(Duration::from_millis(10)).await;
            task.abort();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(c.stats().entries, 3, "three abandoned flights");
        c.validate_shared("bad").await.expect_err("invalid");
        assert_eq!(c.stats().entries, 1, "the abandoned flights made room");
        assert_eq!(c.stats().evictions, 3);
    }

    #[tokio::test]
    async fn tokens_are_stored_hashed() {
        let c = cache(Fake::new(), 60_000, 50, 10);
        c.validate_shared("alice:p1").await.expect("valid");
        let slots = c.lock();
        let key: Key = Sha256::digest(b"alice:p1").into();
        assert!(slots.contains_key(&key));
        assert_eq!(slots.len(), 1);
    }
}
