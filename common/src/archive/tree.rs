//! The model of the tree a package creates, and the budget: the single place where entries are
//! accepted or refused. A `Sink` then performs the accepted steps (nothing for `inspect`, the
//! file system for `unpack`), always in the same order with the same byte counts.

use std::cell::Cell;
use std::collections::HashMap;
use std::io::{self, Read};
use std::rc::Rc;

use super::path::{check_link_target, shown, EntryPath};
use super::{ArchiveError, Limits};

/// One archive entry, format-independent.
pub(super) enum Kind {
    Dir,
    File {
        executable: bool,
    },
    Symlink(Vec<u8>),
    /// A hard link names its target relative to the package root.
    HardLink(Vec<u8>),
    /// Devices, FIFOs, sparse files and anything unknown.
    Special,
}

/// Performs the steps the model accepted.
pub(super) trait Sink {
    /// Creates directory `path`; its parent exists.
    fn dir(&mut self, path: &EntryPath) -> Result<(), ArchiveError>;
    /// Creates file `path` with `content`, through `budget`; returns the bytes written.
    fn file(
        &mut self,
        path: &EntryPath,
        executable: bool,
        content: &mut dyn Read,
        budget: &mut Budget,
    ) -> Result<u64, ArchiveError>;
    /// Creates the symbolic link `path` → `target` (already checked).
    fn symlink(&mut self, path: &EntryPath, target: &str) -> Result<(), ArchiveError>;
    /// Creates `path` as a copy of the earlier file `source` of `size` bytes (already charged).
    fn copy(
        &mut self,
        path: &EntryPath,
        source: &EntryPath,
        size: u64,
        executable: bool,
    ) -> Result<(), ArchiveError>;
}

/// The sink of `inspect`: content is read (and counted) and dropped.
pub(super) struct Model;

impl Sink for Model {
    fn dir(&mut self, _: &EntryPath) -> Result<(), ArchiveError> {
        Ok(())
    }

    fn file(
        &mut self,
        _: &EntryPath,
        _: bool,
        content: &mut dyn Read,
        budget: &mut Budget,
    ) -> Result<u64, ArchiveError> {
        budget.consume(content, &mut io::sink())
    }

    fn symlink(&mut self, _: &EntryPath, _: &str) -> Result<(), ArchiveError> {
        Ok(())
    }

    fn copy(&mut self, _: &EntryPath, _: &EntryPath, _: u64, _: bool) -> Result<(), ArchiveError> {
        Ok(())
    }
}

/// Metadata a tar stream may spend per entry (header, padding, long names, pax records): the
/// allowance accumulates, so legitimate archives never come near it.
pub(super) const META_BYTES_PER_ENTRY: u64 = 8 * 1024;
/// Allowance for the end of a tar stream (zero blocks, record padding).
const META_SLACK: u64 = 64 * 1024;

/// Bounds the decompressed bytes a tar stream may use: the content the budget accepted, plus
/// `META_BYTES_PER_ENTRY` per entry. Without it a single GNU long-name or pax record (read
/// whole into memory by the tar crate), or the data of an entry whose content is skipped,
/// could decompress gigabytes.
#[derive(Debug)]
pub(super) struct Meter {
    read: Cell<u64>,
    allowed: Cell<u64>,
    tripped: Cell<bool>,
}

impl Meter {
    pub(super) fn new() -> Rc<Self> {
        Rc::new(Self {
            read: Cell::new(0),
            allowed: Cell::new(META_SLACK),
            tripped: Cell::new(false),
        })
    }

    fn grant(&self, bytes: u64) {
        self.allowed.set(self.allowed.get().saturating_add(bytes));
    }

    fn revoke(&self, bytes: u64) {
        self.allowed.set(self.allowed.get().saturating_sub(bytes));
    }

    pub(super) fn tripped(&self) -> bool {
        self.tripped.get()
    }
}

/// A reader that stops (with an error) when its `Meter` runs out.
pub(super) struct Metered<R> {
    pub(super) inner: R,
    pub(super) meter: Rc<Meter>,
}

impl<R: Read> Read for Metered<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self
            .meter
            .allowed
            .get()
            .saturating_sub(self.meter.read.get());
        if left == 0 {
            self.meter.tripped.set(true);
            return Err(io::Error::other(
                "decompressed stream exceeds its allowance",
            ));
        }
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        self.meter.read.set(self.meter.read.get() + n as u64);
        Ok(n)
    }
}

/// Counts entries, created paths and content bytes against the limits.
pub(super) struct Budget {
    limits: Limits,
    pub(super) entries: usize,
    nodes: usize,
    pub(super) bytes: u64,
    meter: Option<Rc<Meter>>,
}

impl Budget {
    pub(super) fn new(limits: Limits, meter: Option<Rc<Meter>>) -> Self {
        Self {
            limits,
            entries: 0,
            nodes: 0,
            bytes: 0,
            meter,
        }
    }

    /// One more archive entry (or tar extension header).
    pub(super) fn count_entry(&mut self) -> Result<(), ArchiveError> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(ArchiveError::TooManyEntries(self.limits.max_entries));
        }
        if let Some(meter) = &self.meter {
            meter.grant(META_BYTES_PER_ENTRY);
        }
        Ok(())
    }

    /// One more path created on disk (explicit or implied directory, file, link).
    fn count_node(&mut self) -> Result<(), ArchiveError> {
        self.nodes += 1;
        if self.nodes > self.limits.max_entries {
            return Err(ArchiveError::TooManyEntries(self.limits.max_entries));
        }
        Ok(())
    }

    fn remaining(&self) -> u64 {
        self.limits.max_unpacked_bytes.saturating_sub(self.bytes)
    }

    /// Charges `bytes` that are written without being read from the archive.
    fn charge(&mut self, bytes: u64) -> Result<(), ArchiveError> {
        if bytes > self.remaining() {
            return Err(ArchiveError::TooLarge(self.limits.max_unpacked_bytes));
        }
        self.bytes += bytes;
        Ok(())
    }

    /// Copies (or drains) `reader` into `sink`, stopping at the byte budget; returns the bytes.
    /// Read errors are the archive's fault (`Corrupt`, or `TooLarge` when the meter stopped
    /// the stream); write errors are the disk's (`Io`).
    pub(super) fn consume(
        &mut self,
        reader: &mut dyn Read,
        sink: &mut dyn io::Write,
    ) -> Result<u64, ArchiveError> {
        let remaining = self.remaining();
        let window = remaining.saturating_add(1);
        if let Some(meter) = &self.meter {
            meter.grant(window);
        }
        let mut reader = reader.take(window);
        let mut buf = [0u8; 16 * 1024];
        let mut copied = 0u64;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.read_error(e)),
            };
            copied += n as u64;
            if copied > remaining {
                return Err(ArchiveError::TooLarge(self.limits.max_unpacked_bytes));
            }
            sink.write_all(&buf[..n]).map_err(ArchiveError::Io)?;
        }
        if let Some(meter) = &self.meter {
            meter.revoke(window - copied);
        }
        self.bytes += copied;
        Ok(copied)
    }

    /// An error reading the archive: `TooLarge` when the meter stopped it, else `Corrupt`.
    pub(super) fn read_error(&self, error: io::Error) -> ArchiveError {
        if self.meter.as_ref().is_some_and(|m| m.tripped()) {
            ArchiveError::TooLarge(self.limits.max_unpacked_bytes)
        } else {
            ArchiveError::Corrupt(error.to_string())
        }
    }
}

/// What the model knows about a path it created.
#[derive(Debug, Clone, Copy)]
enum Node {
    Dir,
    File { size: u64, executable: bool },
    Symlink,
}

/// An accepted entry, ready for the sink.
enum Step {
    Dir,
    File {
        executable: bool,
    },
    Symlink(String),
    Copy {
        source: EntryPath,
        size: u64,
        executable: bool,
    },
}

/// The tree a package creates, replayed entry by entry.
pub(super) struct Tree {
    nodes: HashMap<String, Node>,
    pub(super) budget: Budget,
}

impl Tree {
    pub(super) fn new(budget: Budget) -> Self {
        Self {
            nodes: HashMap::new(),
            budget,
        }
    }

    /// Validates one entry against everything before it and, if it is accepted, has `sink`
    /// perform it (creating the directories its path implies first).
    pub(super) fn place(
        &mut self,
        name: &[u8],
        kind: Kind,
        content: &mut dyn Read,
        sink: &mut dyn Sink,
    ) -> Result<(), ArchiveError> {
        self.budget.count_entry()?;
        let Some(path) = EntryPath::parse(name)? else {
            // `tar -C dir .` writes the root itself as `./`: nothing to create.
            return match kind {
                Kind::Dir => Ok(()),
                Kind::Special => Err(ArchiveError::SpecialFile(shown(name))),
                _ => Err(ArchiveError::UnsafePath(shown(name))),
            };
        };
        if matches!(kind, Kind::Special) {
            return Err(ArchiveError::SpecialFile(shown(name)));
        }
        let entry = || path.as_str().to_owned();
        // Every ancestor must be a directory of the package, or not exist yet.
        let mut missing = Vec::new();
        for ancestor in path.ancestors() {
            match self.nodes.get(ancestor.as_str()) {
                Some(Node::Dir) => {}
                Some(Node::Symlink) => {
                    return Err(ArchiveError::ThroughLink {
                        entry: entry(),
                        link: ancestor.as_str().to_owned(),
                    })
                }
                Some(Node::File { .. }) => {
                    return Err(ArchiveError::UnderFile {
                        entry: entry(),
                        file: ancestor.as_str().to_owned(),
                    })
                }
                None => missing.push(ancestor),
            }
        }
        // Only a directory may be declared again, and only over a directory.
        match (self.nodes.get(path.as_str()), &kind) {
            (None, _) => {}
            (Some(Node::Dir), Kind::Dir) => return Ok(()),
            (Some(_), _) => return Err(ArchiveError::Duplicate(entry())),
        }
        // Check the entry itself before creating anything for it.
        let step = match kind {
            Kind::Dir => Step::Dir,
            Kind::File { executable } => Step::File { executable },
            Kind::Symlink(target) => {
                check_link_target(&path, &target)?;
                self.budget.charge(target.len() as u64)?;
                // Checked: UTF-8.
                Step::Symlink(String::from_utf8_lossy(&target).into_owned())
            }
            Kind::HardLink(target) => {
                let refused = || ArchiveError::BadHardLink {
                    entry: entry(),
                    target: shown(&target),
                };
                let source = EntryPath::parse(&target)
                    .map_err(|_| refused())?
                    .ok_or_else(refused)?;
                let Some(Node::File { size, executable }) = self.nodes.get(source.as_str()) else {
                    return Err(refused());
                };
                let (size, executable) = (*size, *executable);
                self.budget.charge(size)?;
                Step::Copy {
                    source,
                    size,
                    executable,
                }
            }
            Kind::Special => return Err(ArchiveError::SpecialFile(entry())),
        };
        for dir in missing {
            self.budget.count_node()?;
            sink.dir(&dir)?;
            self.nodes.insert(dir.as_str().to_owned(), Node::Dir);
        }
        self.budget.count_node()?;
        let node = match step {
            Step::Dir => {
                sink.dir(&path)?;
                Node::Dir
            }
            Step::File { executable } => {
                let size = sink.file(&path, executable, content, &mut self.budget)?;
                Node::File { size, executable }
            }
            Step::Symlink(target) => {
                sink.symlink(&path, &target)?;
                Node::Symlink
            }
            Step::Copy {
                source,
                size,
                executable,
            } => {
                sink.copy(&path, &source, size, executable)?;
                Node::File { size, executable }
            }
        };
        self.nodes.insert(path.as_str().to_owned(), node);
        Ok(())
    }
}
