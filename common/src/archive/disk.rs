//! The sink of `unpack`: performs the model's steps beneath one directory file descriptor.
//!
//! Every path is resolved by `openat2` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
//! RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV`, so the kernel refuses any path that would leave the
//! directory or pass through a link, even if the model were wrong; names are then created in an
//! opened parent (`mkdirat`, `symlinkat`) or with `O_CREAT | O_EXCL | O_NOFOLLOW`, so nothing
//! existing is ever followed or overwritten. Modes are set with `fchmod` right after creation
//! (before any content), so the process umask does not matter and even what a failed unpack
//! leaves behind is normalised.

use std::io::{self, Read, Write};
use std::os::fd::{BorrowedFd, OwnedFd};

use rustix::fs::{Mode, OFlags, ResolveFlags};

use super::path::EntryPath;
use super::tree::{Budget, Sink};
use super::ArchiveError;

const RESOLVE: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS)
    .union(ResolveFlags::NO_XDEV);

const DIR_MODE: u32 = 0o755;

fn file_mode(executable: bool) -> Mode {
    Mode::from_raw_mode(if executable { 0o755 } else { 0o644 })
}

fn io_error(errno: rustix::io::Errno) -> ArchiveError {
    ArchiveError::Io(errno.into())
}

pub(super) struct Disk<'a> {
    root: BorrowedFd<'a>,
}

impl<'a> Disk<'a> {
    /// Unpacks beneath `root` (an open directory); its mode becomes 0755.
    pub(super) fn new(root: BorrowedFd<'a>) -> Result<Self, ArchiveError> {
        rustix::fs::fchmod(root, Mode::from_raw_mode(DIR_MODE)).map_err(io_error)?;
        Ok(Self { root })
    }

    fn open(&self, path: &str, flags: OFlags, mode: Mode) -> Result<OwnedFd, ArchiveError> {
        rustix::fs::openat2(self.root, path, flags | OFlags::CLOEXEC, mode, RESOLVE)
            .map_err(io_error)
    }

    /// The directory `path` will be created in.
    fn parent(&self, path: &EntryPath) -> Result<OwnedFd, ArchiveError> {
        self.open(
            path.parent().unwrap_or("."),
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW,
            Mode::empty(),
        )
    }

    /// Creates the regular file `path` (never an existing one) with its final mode, for
    /// writing. The mode is set before any byte is written, so even the partial file an
    /// interrupted unpack leaves is normalised.
    fn create(&self, path: &EntryPath, executable: bool) -> Result<std::fs::File, ArchiveError> {
        let fd = self.open(
            path.as_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW,
            file_mode(executable),
        )?;
        rustix::fs::fchmod(&fd, file_mode(executable)).map_err(io_error)?;
        Ok(std::fs::File::from(fd))
    }
}

impl Sink for Disk<'_> {
    fn dir(&mut self, path: &EntryPath) -> Result<(), ArchiveError> {
        let parent = self.parent(path)?;
        rustix::fs::mkdirat(&parent, path.file_name(), Mode::from_raw_mode(DIR_MODE))
            .map_err(io_error)?;
        let dir = self.open(
            path.as_str(),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW,
            Mode::empty(),
        )?;
        rustix::fs::fchmod(&dir, Mode::from_raw_mode(DIR_MODE)).map_err(io_error)
    }

    fn file(
        &mut self,
        path: &EntryPath,
        executable: bool,
        content: &mut dyn Read,
        budget: &mut Budget,
    ) -> Result<u64, ArchiveError> {
        let mut file = self.create(path, executable)?;
        let written = budget.consume(content, &mut file)?;
        file.flush().map_err(ArchiveError::Io)?;
        Ok(written)
    }

    fn symlink(&mut self, path: &EntryPath, target: &str) -> Result<(), ArchiveError> {
        let parent = self.parent(path)?;
        rustix::fs::symlinkat(target, &parent, path.file_name()).map_err(io_error)
    }

    fn copy(
        &mut self,
        path: &EntryPath,
        source: &EntryPath,
        size: u64,
        executable: bool,
    ) -> Result<(), ArchiveError> {
        let from = self.open(
            source.as_str(),
            OFlags::RDONLY | OFlags::NOFOLLOW,
            Mode::empty(),
        )?;
        let stat = rustix::fs::fstat(&from).map_err(io_error)?;
        if rustix::fs::FileType::from_raw_mode(stat.st_mode) != rustix::fs::FileType::RegularFile {
            return Err(ArchiveError::Io(io::Error::other(format!(
                "{} is not a regular file",
                source.as_str()
            ))));
        }
        let mut to = self.create(path, executable)?;
        let copied = io::copy(&mut std::fs::File::from(from).take(size), &mut to)
            .map_err(ArchiveError::Io)?;
        if copied != size {
            return Err(ArchiveError::Io(io::Error::other(format!(
                "{} changed while it was copied",
                source.as_str()
            ))));
        }
        Ok(())
    }
}
