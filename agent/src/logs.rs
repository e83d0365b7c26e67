//! A container's output, kept per invocation and capped.
//!
//! Output reaches the agent through the engine (container stdout/stderr → Docker → attach
//! stream), a path with its own latency: when a function answers, the last lines it printed
//! may still be on their way. To know when they have all arrived without guessing, the agent
//! asks the shim for a sync (`GET /2018-06-01/runtime/fresco/sync` answers a fresh token); the
//! shim writes the marker `RS token RS` to its stdout and stderr, the very pipes the function
//! wrote to before it answered, so once both markers came through, everything before them has
//! too. Markers are removed from the output.
//!
//! Output is bounded three ways: the first `keep` bytes of an invocation are kept (the rest
//! counted and noted); an invocation that writes more than `invocation_max` bytes, or a
//! container that writes more than `lifetime_max` over its life, has passed its output limit:
//! `push` says so once, and the container pays for it (it is killed, see `container`).

use std::sync::Mutex;

use tokio::sync::Notify;

/// Marker delimiter (ASCII record separator), around the sync token.
pub const MARKER_DELIMITER: u8 = 0x1e;
/// One marker per stream: stdout and stderr.
const MARKERS_PER_SYNC: u32 = 2;

/// Which output limit was passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputLimit {
    Invocation(u64),
    Lifetime(u64),
}

/// Collects the output of the invocation in progress, up to `cap` bytes.
pub struct LogBuffer {
    cap: usize,
    invocation_max: u64,
    lifetime_max: u64,
    inner: Mutex<Inner>,
    synced: Notify,
}

#[derive(Default)]
struct Inner {
    data: Vec<u8>,
    dropped: u64,
    /// Bytes written during the invocation in progress, and since the container started.
    invocation_bytes: u64,
    lifetime_bytes: u64,
    /// The limit passed, once.
    exceeded: Option<OutputLimit>,
    /// The marker being waited for, and how many times it was seen.
    marker: Option<Vec<u8>>,
    seen: u32,
    /// The engine's output stream ended (the container stopped).
    closed: bool,
}

/// `RS token RS`.
pub fn marker(token: &str) -> Vec<u8> {
    let mut m = vec![MARKER_DELIMITER];
    m.extend_from_slice(token.as_bytes());
    m.push(MARKER_DELIMITER);
    m
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

impl LogBuffer {
    /// Keeps `cap` bytes per invocation; no output limit.
    pub fn new(cap: usize) -> Self {
        Self::with_limits(cap, u64::MAX, u64::MAX)
    }

    pub fn with_limits(cap: usize, invocation_max: u64, lifetime_max: u64) -> Self {
        Self {
            cap,
            invocation_max,
            lifetime_max,
            inner: Mutex::new(Inner::default()),
            synced: Notify::new(),
        }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a new invocation: output produced while the container sat idle is dropped.
    pub fn begin(&self) {
        let mut inner = self.inner();
        inner.data.clear();
        inner.dropped = 0;
        inner.invocation_bytes = 0;
    }

    /// Adds a chunk of output, removing (and counting) the awaited marker. Returns the output
    /// limit this chunk passed, the first time one is passed.
    pub fn push(&self, chunk: &[u8]) -> Option<OutputLimit> {
        let mut inner = self.inner();
        let len = chunk.len() as u64;
        inner.invocation_bytes = inner.invocation_bytes.saturating_add(len);
        inner.lifetime_bytes = inner.lifetime_bytes.saturating_add(len);
        let passed = if inner.exceeded.is_some() {
            None
        } else if inner.invocation_bytes > self.invocation_max {
            Some(OutputLimit::Invocation(self.invocation_max))
        } else if inner.lifetime_bytes > self.lifetime_max {
            Some(OutputLimit::Lifetime(self.lifetime_max))
        } else {
            None
        };
        if passed.is_some() {
            inner.exceeded = passed;
        }
        let mut rest = chunk;
        let mut synced = false;
        if let Some(marker) = inner.marker.clone() {
            while let Some(at) = find(rest, &marker) {
                self.keep(&mut inner, &rest[..at]);
                rest = &rest[at + marker.len()..];
                inner.seen += 1;
                synced = inner.seen >= MARKERS_PER_SYNC;
            }
        }
        self.keep(&mut inner, rest);
        drop(inner);
        if synced {
            self.synced.notify_one();
        }
        passed
    }

    /// The output limit passed, if any.
    pub fn exceeded(&self) -> Option<OutputLimit> {
        self.inner().exceeded
    }

    fn keep(&self, inner: &mut Inner, bytes: &[u8]) {
        let room = self.cap.saturating_sub(inner.data.len());
        let kept = room.min(bytes.len());
        inner.data.extend_from_slice(&bytes[..kept]);
        inner.dropped += (bytes.len() - kept) as u64;
    }

    /// Arms the buffer for a sync with `token`; call before asking the shim for it.
    pub fn expect_marker(&self, token: &str) {
        let mut inner = self.inner();
        inner.marker = Some(marker(token));
        inner.seen = 0;
    }

    /// The engine's output stream ended: nothing more will arrive.
    pub fn close(&self) {
        self.inner().closed = true;
        self.synced.notify_one();
    }

    async fn wait_until(&self, max: std::time::Duration, done: impl Fn(&Inner) -> bool) -> bool {
        tokio::time::timeout(max, async {
            loop {
                let notified = self.synced.notified();
                if done(&self.inner()) {
                    return;
                }
                notified.await;
            }
        })
        .await
        .is_ok()
    }

    /// Waits until both markers of the armed sync have arrived (or the stream ended), at most
    /// `max`; false on timeout.
    pub async fn wait_synced(&self, max: std::time::Duration) -> bool {
        let done = self
            .wait_until(max, |i| i.seen >= MARKERS_PER_SYNC || i.closed)
            .await;
        let mut inner = self.inner();
        inner.marker = None;
        inner.seen = 0;
        done
    }

    /// Waits until the output stream has ended, at most `max` (a stopped container).
    pub async fn wait_closed(&self, max: std::time::Duration) -> bool {
        self.wait_until(max, |i| i.closed).await
    }

    /// The output so far (lossy UTF-8), with a note when some was dropped or the output limit
    /// stopped the function, and whether either happened; empties the buffer.
    pub fn take(&self) -> (String, bool) {
        let mut inner = self.inner();
        let mut text = String::from_utf8_lossy(&inner.data).into_owned();
        if inner.dropped > 0 {
            text.push_str(&format!(
                "\n[fresco: {} more bytes of output dropped]\n",
                inner.dropped
            ));
        }
        match inner.exceeded {
            Some(OutputLimit::Invocation(max)) => text.push_str(&format!(
                "[fresco: output limit of {max} bytes per invocation passed; the function was stopped]\n"
            )),
            Some(OutputLimit::Lifetime(max)) => text.push_str(&format!(
                "[fresco: output limit of {max} bytes per container passed; the function was stopped]\n"
            )),
            None => {}
        }
        let truncated = inner.dropped > 0 || inner.exceeded.is_some();
        inner.data.clear();
        inner.dropped = 0;
        (text, truncated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn output_is_capped_and_the_rest_counted() {
        let logs = LogBuffer::new(8);
        logs.push(b"hello ");
        logs.push(b"world");
        assert_eq!(
            logs.take(),
            (
                "hello wo\n[fresco: 3 more bytes of output dropped]\n".to_owned(),
                true
            )
        );
        assert_eq!(logs.take(), (String::new(), false), "take empties");
    }

    #[test]
    fn output_limits_are_reported_once_per_container() {
        let logs = LogBuffer::with_limits(4, 10, 25);
        assert_eq!(logs.push(b"0123456789"), None, "at the limit is fine");
        assert_eq!(logs.push(b"x"), Some(OutputLimit::Invocation(10)));
        assert_eq!(logs.push(b"more"), None, "said once");
        let (text, truncated) = logs.take();
        assert!(truncated);
        assert!(text.starts_with("0123\n[fresco: 11 more bytes of output dropped]\n"));
        assert!(
            text.contains("output limit of 10 bytes per invocation"),
            "{text}"
        );

        let lifetime = LogBuffer::with_limits(100, 10, 25);
        for _ in 0..2 {
            lifetime.begin();
            assert_eq!(lifetime.push(b"0123456789"), None);
            assert_eq!(lifetime.take(), ("0123456789".to_owned(), false));
        }
        lifetime.begin();
        assert_eq!(lifetime.push(b"012345"), Some(OutputLimit::Lifetime(25)));
        assert_eq!(lifetime.exceeded(), Some(OutputLimit::Lifetime(25)));
    }

    #[test]
    fn begin_drops_idle_output() {
        let logs = LogBuffer::new(100);
        logs.push(b"between invocations");
        logs.begin();
        logs.push(b"mine");
        assert_eq!(logs.take().0, "mine");
    }

    #[tokio::test]
    async fn markers_are_stripped_and_complete_the_sync() {
        let logs = LogBuffer::new(1000);
        logs.expect_marker("t1");
        logs.push(b"out line\n\x1et1\x1e");
        assert!(
            !logs.wait_synced(Duration::from_millis(10)).await,
            "one marker is not enough"
        );
        logs.expect_marker("t2");
        logs.push(b"no newline\x1et2\x1e");
        logs.push(b"\x1eother\x1e");
        logs.push(b"err\n\x1et2\x1e");
        assert!(logs.wait_synced(Duration::from_secs(1)).await);
        assert_eq!(
            logs.take().0,
            "out line\nno newline\x1eother\x1eerr\n",
            "only the armed markers are removed"
        );
    }

    #[tokio::test]
    async fn a_sync_waits_for_markers_still_on_their_way() {
        let logs = std::sync::Arc::new(LogBuffer::new(100));
        logs.expect_marker("abc");
        let later = std::sync::Arc::clone(&logs);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            later.push(b"late\n\x1eabc\x1e\x1eabc\x1e");
        });
        assert!(logs.wait_synced(Duration::from_secs(2)).await);
        assert_eq!(logs.take().0, "late\n");
    }
}
