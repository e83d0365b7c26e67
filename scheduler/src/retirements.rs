//! The retirement log as one scheduler holds it: the recent rows of `function_retirements`,
//! in `seq` order, and what each agent still has to apply. Pure domain code (no database, no
//! HTTP, no clock of its own), fed by `service` and read by the heartbeat handler.
//!
//! Delivery. An agent reports the highest `seq` it applied (`Heartbeat::retired_seq`); the
//! reply carries the entries after it, oldest first, and the `seq` it may acknowledge once it
//! applied them. The API writes rows in `seq` order of visibility (a global advisory lock), and
//! the log appends what it reads after its latest entry, so no entry below a delivered one is
//! ever seen later. Entries older than the retention are pruned; `floor` is the highest `seq`
//! this log no longer holds (pruned, or purged before it loaded). An agent whose
//! acknowledgement is below the floor may have missed entries: it is told to `reset` (retire
//! every warm container) and continues from the floor.

use std::collections::VecDeque;

use chrono::{DateTime, Utc};
use fresco_common::wire::{HeartbeatReply, RetiredKey};

/// Most entries in one heartbeat reply; an agent further behind catches up over several.
pub const REPLY_PAGE: usize = 5000;

/// One row of the log.
pub use fresco_store::queue::Entry;

#[derive(Debug, Default)]
pub struct RetirementLog {
    /// `None` until the first load: the log knows nothing and answers nothing.
    state: Option<Loaded>,
}

#[derive(Debug)]
struct Loaded {
    entries: VecDeque<Entry>,
    floor: i64,
}

impl Loaded {
    fn latest(&self) -> i64 {
        self.entries
            .back()
            .map_or(self.floor, |e| e.key.seq.max(self.floor))
    }
}

impl RetirementLog {
    /// An empty, unloaded log.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the first load happened.
    pub fn is_loaded(&self) -> bool {
        self.state.is_some()
    }

    /// (Re)loads the whole log: `entries` in `seq` order. Rows below the first may have been
    /// purged, so the floor is just below it; with no rows, it is `empty_floor` (the last
    /// `seq` ever given out: all of them are gone).
    pub fn load(&mut self, entries: Vec<Entry>, empty_floor: i64) {
        let floor = entries.first().map_or(empty_floor, |e| e.key.seq - 1);
        self.state = Some(Loaded {
            entries: entries.into(),
            floor,
        });
    }

    /// The highest `seq` no longer held; `None` before the first load.
    pub fn floor(&self) -> Option<i64> {
        self.state.as_ref().map(|s| s.floor)
    }

    /// The highest `seq` known; `None` before the first load.
    pub fn latest(&self) -> Option<i64> {
        self.state.as_ref().map(Loaded::latest)
    }

    /// Appends entries read after `latest()`, in `seq` order; returns those that were new.
    pub fn append(&mut self, entries: Vec<Entry>) -> Vec<RetiredKey> {
        let Some(state) = &mut self.state else {
            return Vec::new();
        };
        let mut added = Vec::new();
        for entry in entries {
            if entry.key.seq > state.latest() {
                added.push(entry.key.clone());
                state.entries.push_back(entry);
            }
        }
        added
    }

    /// Drops the entries created before `before`; the floor rises to the last one dropped.
    pub fn prune(&mut self, before: DateTime<Utc>) -> usize {
        let Some(state) = &mut self.state else {
            return 0;
        };
        let mut pruned = 0;
        while state.entries.front().is_some_and(|e| e.created_at < before) {
            if let Some(entry) = state.entries.pop_front() {
                state.floor = state.floor.max(entry.key.seq);
                pruned += 1;
            }
        }
        pruned
    }

    /// What to answer an agent that applied everything up to `acked`; `None` before the first
    /// load (the agent then keeps its acknowledgement).
    pub fn reply(&self, acked: Option<i64>) -> Option<HeartbeatReply> {
        let state = self.state.as_ref()?;
        let (from, reset) = match acked {
            // An agent that just started holds no container from before: it gets the whole
            // log (for containers of stale specs that still reach it), with no reset.
            None => (state.floor, false),
            Some(seq) if seq < state.floor => (state.floor, true),
            Some(seq) => (seq, false),
        };
        let start = state.entries.partition_point(|e| e.key.seq <= from);
        let retire: Vec<RetiredKey> = state
            .entries
            .range(start..)
            .take(REPLY_PAGE)
            .map(|e| e.key.clone())
            .collect();
        let retired_seq = if start + retire.len() == state.entries.len() {
            from.max(state.latest())
        } else {
            retire.last().map_or(from, |k| k.seq)
        };
        Some(HeartbeatReply {
            retired_seq,
            retire,
            reset,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn entry(seq: i64, minute: u32) -> Entry {
        Entry {
            key: RetiredKey {
                seq,
                function_id: Uuid::from_u128(seq as u128),
                version: None,
                below_revision: None,
            },
            created_at: DateTime::from_timestamp(i64::from(minute) * 60, 0).expect("time"),
        }
    }

    fn seqs(reply: &HeartbeatReply) -> Vec<i64> {
        reply.retire.iter().map(|k| k.seq).collect()
    }

    #[test]
    fn nothing_is_answered_before_the_first_load() {
        let log = RetirementLog::new();
        assert_eq!(log.reply(Some(3)), None);
        assert_eq!(log.latest(), None);
    }

    #[test]
    fn agents_get_what_follows_their_acknowledgement() {
        let mut log = RetirementLog::new();
        log.load(vec![entry(4, 1), entry(6, 2)], 0);
        // A fresh agent gets everything, then nothing more.
        let fresh = log.reply(None).expect("loaded");
        assert_eq!(
            (seqs(&fresh), fresh.retired_seq, fresh.reset),
            (vec![4, 6], 6, false)
        );
        assert_eq!(seqs(&log.reply(Some(4)).expect("reply")), vec![6]);
        let done = log.reply(Some(6)).expect("reply");
        assert!(done.retire.is_empty());
        assert_eq!(done.retired_seq, 6);
        // New rows are appended once; an agent ahead of this scheduler keeps its position.
        assert_eq!(
            log.append(vec![entry(6, 2), entry(9, 3)])
                .iter()
                .map(|k| k.seq)
                .collect::<Vec<_>>(),
            vec![9]
        );
        assert_eq!(seqs(&log.reply(Some(6)).expect("reply")), vec![9]);
        assert_eq!(log.reply(Some(12)).expect("reply").retired_seq, 12);
    }

    #[test]
    fn agents_behind_the_floor_are_reset() {
        let mut log = RetirementLog::new();
        log.load(vec![entry(4, 1), entry(6, 2), entry(9, 5)], 0);
        assert_eq!(
            log.floor(),
            Some(3),
            "rows below the first may have been purged"
        );
        assert_eq!(
            log.prune(DateTime::from_timestamp(3 * 60, 0).expect("time")),
            2
        );
        let behind = log.reply(Some(5)).expect("reply");
        assert!(behind.reset);
        assert_eq!((seqs(&behind), behind.retired_seq), (vec![9], 9));
        let current = log.reply(Some(6)).expect("reply");
        assert!(!current.reset);
        // An empty log keeps its floor: everything up to it is gone.
        log.prune(DateTime::from_timestamp(3600, 0).expect("time"));
        assert_eq!(log.latest(), Some(9));
        assert!(log.reply(Some(8)).expect("reply").reset);
        assert!(!log.reply(Some(9)).expect("reply").reset);
    }

    #[test]
    fn replies_are_paged() {
        let mut log = RetirementLog::new();
        log.load(
            (1..=(REPLY_PAGE as i64 + 10))
                .map(|s| entry(s, 1))
                .collect(),
            0,
        );
        let first = log.reply(Some(0)).expect("reply");
        assert_eq!(first.retire.len(), REPLY_PAGE);
        assert_eq!(first.retired_seq, REPLY_PAGE as i64);
        let second = log.reply(Some(first.retired_seq)).expect("reply");
        assert_eq!(second.retire.len(), 10);
        assert_eq!(second.retired_seq, REPLY_PAGE as i64 + 10);
    }
}
