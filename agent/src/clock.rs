//! Wall-clock time as the Runtime API and the tickets speak it: milliseconds since the epoch.
//! Its own module so that the runtime channel and the service share it without importing each
//! other.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (0 before it).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
