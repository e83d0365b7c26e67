//! Admission of execution tickets: a ticket runs only on the agent it names, only with the
//! payload whose sha256 it carries, and only once. Plain logic, no I/O.
//!
//! Single use is a replay cache of ticket ids (`jti`) kept until each ticket expires, bounded in
//! entries: when it is full of live tickets, new runs are refused (back-pressure) rather than
//! an entry dropped, which would let that ticket run twice. Tickets signed before this agent
//! process started are refused too: the cache does not survive a restart, so a ticket used
//! before it could otherwise run again after it.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use std::sync::Arc;

use fresco_common::ticket::{sha256_hex, TicketClaims, TicketError, TicketVerifier, LEEWAY_S};
use uuid::Uuid;

use crate::grants::{token_hash, GrantCache, GrantEntry, Slot};

/// Longest lifetime a grant may claim.
pub const MAX_GRANT_TTL_S: i64 = 300;

/// Why a ticket is not admitted.
#[derive(Debug, thiserror::Error)]
pub enum AdmitError {
    #[error(transparent)]
    Ticket(#[from] TicketError),
    #[error("{0} tickets are live: try again when some expire")]
    Full(usize),
    #[error(transparent)]
    GrantsFull(#[from] crate::grants::CacheFull),
    #[error("all {0} slots of the grant are in use")]
    SlotsTaken(u32),
}

/// Ticket ids seen and when each stops mattering (its `exp` plus the leeway).
pub struct ReplayCache {
    capacity: usize,
    seen: HashMap<Uuid, i64>,
    /// Ids in insertion order with their expiry. Tickets of one scheduler share a lifetime, so
    /// this is (nearly) expiry order; an entry is dropped only once it has expired.
    order: VecDeque<(i64, Uuid)>,
}

impl ReplayCache {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            seen: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Records `id` valid until `until` (unix seconds); `Err(Replayed)` if it was seen.
    pub fn insert(&mut self, id: Uuid, until: i64, now: i64) -> Result<(), AdmitError> {
        self.expire(now);
        if self.seen.contains_key(&id) {
            return Err(AdmitError::Ticket(TicketError::Replayed));
        }
        if self.seen.len() >= self.capacity {
            // Entries behind a longer-lived one at the front may have expired already.
            self.seen.retain(|_, until| *until >= now);
            self.order.retain(|(until, _)| *until >= now);
            if self.seen.len() >= self.capacity {
                return Err(AdmitError::Full(self.seen.len()));
            }
        }
        self.seen.insert(id, until);
        self.order.push_back((until, id));
        Ok(())
    }

    fn expire(&mut self, now: i64) {
        while let Some(&(until, id)) = self.order.front() {
            if until >= now {
                break;
            }
            self.order.pop_front();
            self.seen.remove(&id);
        }
    }
}

/// Everything an agent checks before it runs a ticket.
pub struct TicketGate {
    verifier: TicketVerifier,
    agent_id: String,
    /// Longest lifetime a ticket may claim (`[internal_auth] ticket_ttl` plus the leeway): it
    /// bounds how long the cache holds an id.
    max_ttl_s: i64,
    /// Unix second this process started; tickets issued before it are refused.
    started_s: i64,
    replay: Mutex<ReplayCache>,
    grants: GrantCache,
}

impl TicketGate {
    pub fn new(
        verifier: TicketVerifier,
        agent_id: &str,
        ticket_ttl_s: u64,
        capacity: usize,
    ) -> Self {
        Self {
            verifier,
            agent_id: agent_id.to_owned(),
            max_ttl_s: i64::try_from(ticket_ttl_s)
                .unwrap_or(i64::MAX / 4)
                .saturating_add(LEEWAY_S as i64),
            started_s: chrono::Utc::now().timestamp(),
            replay: Mutex::new(ReplayCache::new(capacity)),
            grants: GrantCache::new(capacity),
        }
    }

    /// A slot of the grant `token` to run execution `execution_id` under, if the grant is for
    /// this agent, live, has a free slot, and never ran that execution id. The grant's
    /// signature is checked the first time only (see `grants`).
    pub fn admit_grant(&self, token: &str, execution_id: Uuid) -> Result<Slot, AdmitError> {
        let now = chrono::Utc::now().timestamp();
        let hash = token_hash(token);
        let entry: Arc<GrantEntry> = match self.grants.get(&hash, now) {
            Some(entry) => entry,
            None => {
                let claims = self.verifier.verify_grant(token, &self.agent_id)?;
                if claims.exp - claims.iat > MAX_GRANT_TTL_S {
                    return Err(TicketError::TooLong(claims.exp - claims.iat).into());
                }
                if claims.iat < self.started_s {
                    return Err(TicketError::Mismatch(
                        "was issued before this agent started".into(),
                    )
                    .into());
                }
                self.grants.insert(hash, GrantEntry::new(claims), now)?
            }
        };
        let slot = entry
            .take_slot()
            .ok_or(AdmitError::SlotsTaken(entry.claims.slots))?;
        // Each execution id once per grant (the slot goes back if it was seen).
        let id = {
            use sha2::{Digest, Sha256};
            let digest = Sha256::new()
                .chain_update(entry.claims.sub.as_bytes())
                .chain_update(execution_id.as_bytes())
                .finalize();
            let mut bytes = [0u8; 16];
            bytes.copy_from_slice(&digest[..16]);
            Uuid::from_bytes(bytes)
        };
        self.replay
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id, entry.until(), now)?;
        Ok(slot)
    }

    /// The claims of `ticket` if it may run now with `payload` (the event's exact JSON text),
    /// recording it as used.
    pub fn admit(&self, ticket: &str, payload: &[u8]) -> Result<TicketClaims, AdmitError> {
        let claims = self.verifier.verify(ticket, Some(&self.agent_id))?;
        if claims.payload_sha256 != sha256_hex(payload) {
            return Err(TicketError::Mismatch("was issued for another payload".into()).into());
        }
        if claims.exp - claims.iat > self.max_ttl_s {
            return Err(TicketError::TooLong(claims.exp - claims.iat).into());
        }
        if claims.iat < self.started_s {
            return Err(
                TicketError::Mismatch("was issued before this agent started".into()).into(),
            );
        }
        let now = chrono::Utc::now().timestamp();
        self.replay
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(claims.jti, claims.exp + LEEWAY_S as i64, now)?;
        Ok(claims)
    }

    /// Ticket ids remembered now.
    pub fn remembered(&self) -> usize {
        self.replay
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fresco_common::ticket::test_keys::{TICKET_PRIVATE, TICKET_PUBLIC};
    use fresco_common::ticket::TicketSigner;
    use fresco_common::wire::FunctionSpec;

    fn spec() -> FunctionSpec {
        FunctionSpec {
            project_id: "p".into(),
            function_id: Uuid::new_v4(),
            function_name: "f".into(),
            version: 0,
            image: "i".into(),
            runtime_kind: "image".into(),
            handler: "h".into(),
            memory_mb: 64,
            timeout_s: 1,
            environment: Default::default(),
            code_sha256: None,
            network: false,
            revision: 0,
        }
    }

    fn gate(capacity: usize) -> TicketGate {
        let mut gate = TicketGate::new(
            TicketVerifier::from_pem(TICKET_PUBLIC.as_bytes()).expect("verifier"),
            "agent-1",
            30,
            capacity,
        );
        // Tickets of this test are signed "before" the gate only if we say so.
        gate.started_s -= 10;
        gate
    }

    fn ticket(agent: &str, payload: &[u8]) -> String {
        TicketSigner::from_pem(TICKET_PRIVATE.as_bytes(), 30)
            .expect("signer")
            .sign(
                agent,
                Uuid::new_v4(),
                Uuid::new_v4(),
                &sha256_hex(payload),
                spec(),
            )
            .expect("sign")
    }

    #[test]
    fn a_ticket_runs_once_with_its_own_payload_on_its_own_agent() {
        let gate = gate(16);
        let t = ticket("agent-1", b"{\"a\":1}");
        assert!(matches!(
            gate.admit(&t, b"{\"a\":2}"),
            Err(AdmitError::Ticket(TicketError::Mismatch(_)))
        ));
        gate.admit(&t, b"{\"a\":1}").expect("first use");
        assert!(matches!(
            gate.admit(&t, b"{\"a\":1}"),
            Err(AdmitError::Ticket(TicketError::Replayed))
        ));
        assert!(gate.admit(&ticket("agent-2", b"{}"), b"{}").is_err());
        assert_eq!(gate.remembered(), 1);
    }

    #[test]
    fn tickets_from_before_the_start_are_refused() {
        let mut gate = gate(16);
        gate.started_s = chrono::Utc::now().timestamp() + 5;
        assert!(matches!(
            gate.admit(&ticket("agent-1", b"{}"), b"{}"),
            Err(AdmitError::Ticket(TicketError::Mismatch(m))) if m.contains("before this agent started")
        ));
    }

    #[test]
    fn the_cache_is_bounded_and_forgets_only_expired_tickets() {
        let mut cache = ReplayCache::new(2);
        let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        cache.insert(a, 100, 50).expect("a");
        cache.insert(b, 110, 50).expect("b");
        assert!(matches!(cache.insert(c, 120, 60), Err(AdmitError::Full(2))));
        assert!(matches!(
            cache.insert(a, 100, 60),
            Err(AdmitError::Ticket(TicketError::Replayed))
        ));
        // a expired at 100: room for c, and a is forgotten (it could not pass expiry anyway).
        cache.insert(c, 120, 101).expect("c");
        assert_eq!(cache.len(), 2);
        assert!(matches!(
            cache.insert(b, 110, 105),
            Err(AdmitError::Ticket(TicketError::Replayed))
        ));
        // An entry stuck behind a longer-lived front one is still reclaimed when full.
        let mut cache = ReplayCache::new(2);
        cache.insert(a, 200, 0).expect("a");
        cache.insert(b, 10, 0).expect("b");
        cache.insert(c, 30, 20).expect("c replaces the expired b");
        assert_eq!(cache.len(), 2);
    }
}
