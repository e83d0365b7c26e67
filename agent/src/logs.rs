//! A container's output, kept per invocation and capped.

use std::sync::Mutex;

/// Collects the output of the invocation in progress, up to `cap` bytes.
pub struct LogBuffer {
    cap: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    data: Vec<u8>,
    dropped: u64,
}

impl LogBuffer {
    pub fn new(cap: usize) -> Self {
        Self {
            cap,
            inner: Mutex::new(Inner::default()),
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
    }

    pub fn push(&self, chunk: &[u8]) {
        let mut inner = self.inner();
        let room = self.cap.saturating_sub(inner.data.len());
        let kept = room.min(chunk.len());
        inner.data.extend_from_slice(&chunk[..kept]);
        inner.dropped += (chunk.len() - kept) as u64;
    }

    /// The output so far (lossy UTF-8), with a note when some was dropped; empties the buffer.
    pub fn take(&self) -> String {
        let mut inner = self.inner();
        let mut text = String::from_utf8_lossy(&inner.data).into_owned();
        if inner.dropped > 0 {
            text.push_str(&format!(
                "\n[fresco: {} more bytes of output dropped]\n",
                inner.dropped
            ));
        }
        inner.data.clear();
        inner.dropped = 0;
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_capped_and_the_rest_counted() {
        let logs = LogBuffer::new(8);
        logs.push(b"hello ");
        logs.push(b"world");
        assert_eq!(
            logs.take(),
            "hello wo\n[fresco: 3 more bytes of output dropped]\n"
        );
        assert_eq!(logs.take(), "", "take empties");
    }

    #[test]
    fn begin_drops_idle_output() {
        let logs = LogBuffer::new(100);
        logs.push(b"between invocations");
        logs.begin();
        logs.push(b"mine");
        assert_eq!(logs.take(), "mine");
    }
}
