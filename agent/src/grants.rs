//! Admission of grants: a grant (see `fresco_common::ticket::GrantClaims`) lets its holder run
//! its function on this agent with any event, at most `slots` at once, each execution id once,
//! until it expires. Plain logic, no I/O.
//!
//! A grant's signature is checked once: the verified grant is kept by the sha256 of its token
//! until it expires, in a cache bounded in entries. When the cache is full of live grants, new
//! grants are refused (back-pressure) rather than one dropped: a dropped grant verified again
//! would start with a fresh count of running invocations, beyond its slots.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use fresco_common::ticket::{GrantClaims, LEEWAY_S};
use sha2::{Digest, Sha256};

/// A verified grant and the invocations running under it.
#[derive(Debug)]
pub struct GrantEntry {
    pub claims: GrantClaims,
    running: AtomicU32,
}

impl GrantEntry {
    pub fn new(claims: GrantClaims) -> Self {
        Self {
            claims,
            running: AtomicU32::new(0),
        }
    }

    /// Last unix second the grant may start an invocation.
    pub fn until(&self) -> i64 {
        self.claims.exp.saturating_add(LEEWAY_S as i64)
    }

    /// One of its slots, or `None` when all are taken.
    pub fn take_slot(self: &Arc<Self>) -> Option<Slot> {
        let before = self.running.fetch_add(1, Ordering::AcqRel);
        if before >= self.claims.slots {
            self.running.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Slot {
            entry: Arc::clone(self),
        })
    }

    /// Invocations running under it now.
    pub fn running(&self) -> u32 {
        self.running.load(Ordering::Acquire)
    }
}

/// A slot of a grant, held while one invocation runs; given back when dropped.
#[derive(Debug)]
pub struct Slot {
    entry: Arc<GrantEntry>,
}

impl Slot {
    pub fn grant(&self) -> &Arc<GrantEntry> {
        &self.entry
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.entry.running.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The key of a token in the cache.
pub type TokenHash = [u8; 32];

pub fn token_hash(token: &str) -> TokenHash {
    Sha256::digest(token.as_bytes()).into()
}

/// Verified grants by the hash of their token.
pub struct GrantCache {
    capacity: usize,
    entries: Mutex<HashMap<TokenHash, Arc<GrantEntry>>>,
}

/// The cache holds `capacity` live grants.
#[derive(Debug, thiserror::Error)]
#[error("{0} grants are live: try again when some expire")]
pub struct CacheFull(pub usize);

impl GrantCache {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TokenHash, Arc<GrantEntry>>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The live grant of this token, if it was verified before.
    pub fn get(&self, hash: &TokenHash, now: i64) -> Option<Arc<GrantEntry>> {
        self.lock()
            .get(hash)
            .filter(|entry| entry.until() >= now)
            .cloned()
    }

    /// Keeps a verified grant; when another request verified the same token meanwhile, that
    /// one's entry is kept (and returned), so every request shares one count of slots.
    pub fn insert(
        &self,
        hash: TokenHash,
        entry: GrantEntry,
        now: i64,
    ) -> Result<Arc<GrantEntry>, CacheFull> {
        let mut entries = self.lock();
        if let Some(existing) = entries.get(&hash).filter(|e| e.until() >= now) {
            return Ok(Arc::clone(existing));
        }
        if entries.len() >= self.capacity {
            entries.retain(|_, e| e.until() >= now || e.running() > 0);
            if entries.len() >= self.capacity {
                return Err(CacheFull(entries.len()));
            }
        }
        let entry = Arc::new(entry);
        entries.insert(hash, Arc::clone(&entry));
        Ok(entry)
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fresco_common::ticket::TokenType;
    use fresco_common::wire::FunctionSpec;
    use uuid::Uuid;

    fn claims(slots: u32, exp: i64) -> GrantClaims {
        GrantClaims {
            typ: TokenType::Grant,
            iss: "fresco-scheduler".into(),
            aud: "a1".into(),
            sub: Uuid::new_v4(),
            iat: exp - 10,
            exp,
            slots,
            spec: FunctionSpec {
                project_id: "p".into(),
                function_id: Uuid::new_v4(),
                function_name: "f".into(),
                version: 0,
                image: "fresco/python3:dev".into(),
                runtime_kind: "python".into(),
                handler: "main.handler".into(),
                memory_mb: 128,
                timeout_s: 3,
                environment: Default::default(),
                code_sha256: None,
                network: false,
                revision: 0,
            },
        }
    }

    #[test]
    fn slots_are_bounded_and_come_back_when_runs_end() {
        let entry = Arc::new(GrantEntry::new(claims(2, 100)));
        let first = entry.take_slot().expect("slot");
        let second = entry.take_slot().expect("slot");
        assert!(entry.take_slot().is_none(), "two slots only");
        assert_eq!(entry.running(), 2);
        drop(first);
        let third = entry.take_slot().expect("a slot is free again");
        assert!(entry.take_slot().is_none());
        drop((second, third));
        assert_eq!(entry.running(), 0);
    }

    #[test]
    fn the_cache_shares_one_entry_per_token_and_is_bounded() {
        let cache = GrantCache::new(2);
        let now = 1000;
        let a = token_hash("a");
        let first = cache
            .insert(a, GrantEntry::new(claims(1, now + 10)), now)
            .expect("kept");
        let _slot = first.take_slot().expect("slot");
        // Verified again meanwhile: the same entry, with its slot still taken.
        let again = cache
            .insert(a, GrantEntry::new(claims(1, now + 10)), now)
            .expect("kept");
        assert!(again.take_slot().is_none());
        assert!(cache.get(&a, now).is_some());
        assert!(cache.get(&token_hash("b"), now).is_none());
        cache
            .insert(token_hash("b"), GrantEntry::new(claims(1, now + 10)), now)
            .expect("kept");
        // Full of live grants: a third is refused rather than one dropped.
        assert!(cache
            .insert(token_hash("c"), GrantEntry::new(claims(1, now + 10)), now)
            .is_err());
        // Once they expire (and nothing runs under them), room comes back.
        let later = now + 10 + LEEWAY_S as i64 + 1;
        assert!(cache.get(&a, later).is_none(), "expired");
        drop(_slot);
        cache
            .insert(
                token_hash("c"),
                GrantEntry::new(claims(1, later + 10)),
                later,
            )
            .expect("room after expiry");
        assert_eq!(cache.len(), 1);
    }
}
