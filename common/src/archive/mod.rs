//! Code packages (zip or tar.gz): validation at upload and safe unpacking on agents.
//!
//! Packages come from tenants and are hostile until proven otherwise. There is one
//! implementation of the rules, used by both operations: [`inspect`] (the API, which cannot
//! write) replays the package into an in-memory model of the tree it would create, and
//! [`unpack`] (the agent) replays it through the very same model and then performs each step on
//! disk with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS |
//! RESOLVE_NO_XDEV)`, `O_NOFOLLOW` and `O_EXCL`. So `inspect` refuses everything `unpack`
//! refuses, and the kernel enforces the model a second time.
//!
//! The model refuses, for any entry:
//! - a name that is not UTF-8, has a NUL byte, is absolute or has a `..` component;
//! - a path deeper than [`MAX_DEPTH`] components, longer than [`MAX_PATH_BYTES`] bytes, or with
//!   a component longer than [`MAX_NAME_BYTES`];
//! - a path whose parent passes through a symbolic link or a file of the package;
//! - a second entry at a path already taken (only a directory may be declared twice);
//! - devices, FIFOs, sockets, sparse files and other special entries;
//! - a symbolic link whose target is absolute, climbs above the package root, or uses `..`
//!   after a name (so a link can only resolve inside the package, whatever the other links);
//! - a hard link whose target is not an earlier regular file of the package. Hard links are
//!   unpacked as copies, and every copied byte counts against the budget.
//!
//! Budgets: at most `max_entries` archive entries and at most `max_entries` created paths
//! (directories a path implies count too); at most `max_unpacked_bytes` of content (file bytes,
//! hard-link copies and link targets), counted from the bytes actually decompressed, never from
//! headers, so zip and gzip bombs stop at the limit. A tar stream's metadata (headers, long
//! names, pax records) is bounded too. Modes are normalised: directories 0755, files 0644 or
//! 0755 when any execute bit was set; setuid, setgid and sticky bits never reach the disk.

mod disk;
#[cfg(any(test, feature = "hostile-archives"))]
pub mod hostile;
mod path;
mod read;
mod tree;

#[cfg(test)]
mod tests;

use std::io;
use std::os::fd::AsFd;
use std::path::Path;

/// Most components (directories plus the name) of an entry's path.
pub const MAX_DEPTH: usize = 32;
/// Longest path of an entry, in bytes, once normalised (`a//./b` is `a/b`).
pub const MAX_PATH_BYTES: usize = 1024;
/// Longest single path component, in bytes (the kernel's NAME_MAX).
pub const MAX_NAME_BYTES: usize = 255;
/// Longest symbolic link target, in bytes.
pub const MAX_LINK_BYTES: usize = 1024;

/// Container formats accepted for code packages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveFormat {
    Zip,
    TarGz,
}

impl ArchiveFormat {
    /// Recognises a package by its magic bytes.
    pub fn detect(bytes: &[u8]) -> Option<Self> {
        if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
            Some(Self::Zip)
        } else if bytes.starts_with(&[0x1f, 0x8b]) {
            Some(Self::TarGz)
        } else {
            None
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Zip => "zip",
            Self::TarGz => "tar.gz",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "zip" => Some(Self::Zip),
            "tar.gz" => Some(Self::TarGz),
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Zip => "application/zip",
            Self::TarGz => "application/gzip",
        }
    }
}

/// Bounds on what a package may contain.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_entries: usize,
    pub max_unpacked_bytes: u64,
}

/// What a valid package holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub format: ArchiveFormat,
    /// Entries of the archive (the root entry `./` of `tar -C dir .` included).
    pub entries: usize,
    /// Bytes of content: files, hard-link copies and link targets.
    pub unpacked_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("package is neither a zip nor a tar.gz archive")]
    UnknownFormat,
    #[error("package is not a valid archive: {0}")]
    Corrupt(String),
    #[error("package entry {0:?} has an absolute path or a '..' component")]
    UnsafePath(String),
    #[error("package entry {0:?} has a name that is not UTF-8 or holds a NUL byte")]
    BadName(String),
    #[error("package entry {0:?} is nested more than {MAX_DEPTH} levels deep")]
    TooDeep(String),
    #[error("package entry {0:?} has a path longer than {MAX_PATH_BYTES} bytes or a name longer than {MAX_NAME_BYTES} bytes")]
    PathTooLong(String),
    #[error("package entry {0:?} is a link pointing outside the package")]
    EscapingLink(String),
    #[error("package entry {0:?} is a link whose target is not a plain relative path (empty, over {MAX_LINK_BYTES} bytes, or with '..' after a name)")]
    BadLinkTarget(String),
    #[error("package entry {entry:?} lies under {link:?}, which is a symbolic link")]
    ThroughLink { entry: String, link: String },
    #[error("package entry {entry:?} lies under {file:?}, which is a file")]
    UnderFile { entry: String, file: String },
    #[error("package entry {0:?} appears twice or replaces an earlier entry")]
    Duplicate(String),
    #[error("package entry {entry:?} is a hard link to {target:?}, which is not an earlier regular file of the package")]
    BadHardLink { entry: String, target: String },
    #[error("package entry {0:?} is a device, fifo or other special file")]
    SpecialFile(String),
    #[error("package has more than {0} entries")]
    TooManyEntries(usize),
    #[error("package unpacks to more than {0} bytes")]
    TooLarge(u64),
    #[error("cannot write unpacked package: {0}")]
    Io(#[source] io::Error),
}

/// Checks a package without writing anything: refuses exactly what [`unpack`] refuses.
pub fn inspect(bytes: &[u8], limits: Limits) -> Result<Manifest, ArchiveError> {
    read::walk(bytes, limits, &mut tree::Model)
}

/// Validates and unpacks a package into `dest`, which must exist and be empty. Nothing is
/// created outside `dest`, whatever the package holds (the kernel checks every path).
pub fn unpack(bytes: &[u8], limits: Limits, dest: &Path) -> Result<Manifest, ArchiveError> {
    let dir = rustix::fs::open(
        dest,
        rustix::fs::OFlags::RDONLY
            | rustix::fs::OFlags::DIRECTORY
            | rustix::fs::OFlags::NOFOLLOW
            | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| ArchiveError::Io(e.into()))?;
    unpack_at(bytes, limits, dir.as_fd())
}

/// [`unpack`] into an open directory (which must be empty): a caller that drops privileges
/// opens the directory first. The directory's mode becomes 0755.
pub fn unpack_at(
    bytes: &[u8],
    limits: Limits,
    dest: std::os::fd::BorrowedFd<'_>,
) -> Result<Manifest, ArchiveError> {
    let mut disk = disk::Disk::new(dest)?;
    read::walk(bytes, limits, &mut disk)
}
