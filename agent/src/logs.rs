//! A container's output, kept per invocation and capped.
//!
//! Output reaches the agent over a pipe, not through the engine: the agent creates a FIFO
//! (`output`) in the container's own run directory and holds it open (read and write, so it
//! never reads end-of-file); the shim opens it for writing and makes it the stdout and stderr
//! of everything in the container. A function's `write` has put its bytes in the pipe before
//! the function can post its response, so reading the pipe until it is empty (`EAGAIN`) when
//! the agent handles that response yields exactly the output written before it: no sync
//! markers, and no engine (dockerd, containerd) on the path. A reader task (`pump`) empties
//! the pipe as output arrives, so a chatty function never blocks on a full pipe; reads are
//! serialised, so bytes keep their order.
//!
//! Output is bounded three ways: the first `keep` bytes of an invocation are kept (the rest
//! counted and noted); an invocation that writes more than `invocation_max` bytes, or a
//! container that writes more than `lifetime_max` over its life, has passed its output limit:
//! `push` says so once, and the container pays for it (it is killed, see `container`).

use std::path::Path;
use std::sync::Mutex;

use tokio::sync::Notify;

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
    ended: Notify,
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
    /// The container stopped and its output was read to the end.
    closed: bool,
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
            ended: Notify::new(),
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

    /// Adds a chunk of output. Returns the output limit this chunk passed, the first time one
    /// is passed.
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
        self.keep(&mut inner, chunk);
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

    /// The container stopped and its output was read: nothing more will arrive.
    pub fn close(&self) {
        self.inner().closed = true;
        self.ended.notify_waiters();
    }

    /// Waits until the container has stopped and its output was read, at most `max`.
    pub async fn wait_closed(&self, max: std::time::Duration) -> bool {
        tokio::time::timeout(max, async {
            loop {
                let notified = self.ended.notified();
                if self.inner().closed {
                    return;
                }
                notified.await;
            }
        })
        .await
        .is_ok()
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

/// Bytes read from the pipe at a time (a pipe's default capacity).
const READ_CHUNK: usize = 64 * 1024;

/// The agent's end of a container's output FIFO (see the module documentation).
pub struct OutputPipe {
    pipe: tokio::net::unix::pipe::Receiver,
    /// Serialises reads with what they push, so output keeps its order.
    reading: Mutex<()>,
    ended: std::sync::atomic::AtomicBool,
}

impl OutputPipe {
    /// Creates the FIFO at `path` (mode 0600, owned by `owner` when given) and opens it, read
    /// and write (so it never reads end-of-file), non-blocking.
    pub fn create(path: &Path, owner: Option<u32>) -> std::io::Result<Self> {
        let _ = std::fs::remove_file(path);
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            path,
            rustix::fs::Mode::from_raw_mode(0o600),
        )?;
        if let Some(uid) = owner {
            std::os::unix::fs::chown(path, Some(uid), Some(uid))?;
        }
        let pipe = tokio::net::unix::pipe::OpenOptions::new()
            .read_write(true)
            .open_receiver(path)?;
        Ok(Self {
            pipe,
            reading: Mutex::new(()),
            ended: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Reads what the pipe holds now into `logs`, until it is empty or an output limit is
    /// passed; returns the limit passed, the first time. Reads the pipe itself (a `read`
    /// system call), never a cached readiness: what was written before this call is read.
    pub fn read_available(&self, logs: &LogBuffer) -> Option<OutputLimit> {
        self.read_to_empty(logs).0
    }

    /// `read_available`, and whether the pipe was found empty (`EAGAIN`).
    fn read_to_empty(&self, logs: &LogBuffer) -> (Option<OutputLimit>, bool) {
        let _reading = self.reading.lock().unwrap_or_else(|e| e.into_inner());
        let mut buf = vec![0u8; READ_CHUNK];
        let mut passed = None;
        loop {
            match rustix::io::read(&self.pipe, &mut buf[..]) {
                Ok(0) => return (passed, true),
                Ok(n) => {
                    if let Some(limit) = logs.push(&buf[..n]) {
                        passed = Some(limit);
                    }
                    // A function still writing after its limit is being killed: reading on
                    // would only race it.
                    if logs.exceeded().is_some() {
                        return (passed, false);
                    }
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(rustix::io::Errno::AGAIN) => return (passed, true),
                Err(e) => {
                    log::warn!("cannot read container output: {e}");
                    self.ended.store(true, std::sync::atomic::Ordering::SeqCst);
                    return (passed, true);
                }
            }
        }
    }

    /// Waits until the pipe has something to read, then reads it (see `read_available`).
    pub async fn read_when_readable(&self, logs: &LogBuffer) -> Option<OutputLimit> {
        if let Err(e) = self.pipe.readable().await {
            log::warn!("cannot wait for container output: {e}");
            self.ended.store(true, std::sync::atomic::Ordering::SeqCst);
            return None;
        }
        let mut passed = None;
        // Readiness is cleared only when the read found the pipe empty.
        let _ = self.pipe.try_io(|| {
            let (limit, empty) = self.read_to_empty(logs);
            passed = limit;
            if empty {
                Err(std::io::ErrorKind::WouldBlock.into())
            } else {
                Ok(())
            }
        });
        passed
    }

    /// Whether reading failed for good.
    pub fn ended(&self) -> bool {
        self.ended.load(std::sync::atomic::Ordering::SeqCst)
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

    fn fifo(name: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("fresco-logs-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("dir");
        dir.join(name)
    }

    #[tokio::test]
    async fn the_pipe_yields_exactly_what_was_written_before_the_read() {
        let path = fifo("output");
        let pipe = OutputPipe::create(&path, None).expect("fifo");
        let logs = LogBuffer::new(1000);
        let mut writer = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("writer");
        use std::io::Write;
        writer.write_all(b"first\n").expect("write");
        writer.write_all(b"second").expect("write");
        assert_eq!(pipe.read_available(&logs), None);
        assert_eq!(logs.take().0, "first\nsecond");
        assert_eq!(
            pipe.read_available(&logs),
            None,
            "an empty pipe is not an end"
        );
        assert_eq!(logs.take().0, "");
        drop(writer);
        assert_eq!(
            pipe.read_available(&logs),
            None,
            "no writer left is not an end either"
        );
        assert!(!pipe.ended());
        let _ = std::fs::remove_dir_all(path.parent().expect("dir"));
    }

    use std::os::unix::fs::OpenOptionsExt;

    #[tokio::test]
    async fn a_writer_that_never_stops_is_cut_off_at_its_limit() {
        let path = fifo("output");
        let pipe = std::sync::Arc::new(OutputPipe::create(&path, None).expect("fifo"));
        let logs = LogBuffer::with_limits(100, 200_000, u64::MAX);
        let writer_path = path.clone();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop_writer = std::sync::Arc::clone(&stop);
        let flood = std::thread::spawn(move || {
            use std::io::Write;
            let mut writer = std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
                .open(&writer_path)
                .expect("writer");
            while !stop_writer.load(std::sync::atomic::Ordering::SeqCst) {
                let _ = writer.write(&[b'x'; 4096]);
            }
        });
        let mut limit = None;
        for _ in 0..10_000 {
            limit = pipe.read_available(&logs);
            if limit.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        flood.join().expect("writer");
        assert_eq!(limit, Some(OutputLimit::Invocation(200_000)));
        let _ = std::fs::remove_dir_all(path.parent().expect("dir"));
    }

    #[tokio::test]
    async fn closing_wakes_every_waiter() {
        let logs = std::sync::Arc::new(LogBuffer::new(100));
        let waiter = {
            let logs = std::sync::Arc::clone(&logs);
            tokio::spawn(async move { logs.wait_closed(Duration::from_secs(5)).await })
        };
        assert!(!logs.wait_closed(Duration::from_millis(20)).await);
        logs.close();
        assert!(waiter.await.expect("join"));
        assert!(logs.wait_closed(Duration::from_millis(1)).await);
    }
}
