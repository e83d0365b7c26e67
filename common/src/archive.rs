//! Code packages (zip or tar.gz): validation at upload and safe unpacking on agents.
//!
//! Packages come from tenants and are hostile until proven otherwise. Both operations walk
//! every entry and refuse: absolute paths, `..` components, links that point outside the
//! package root, device files and FIFOs, more than `max_entries` entries, and more than
//! `max_unpacked_bytes` of content. Sizes are counted from the bytes actually decompressed,
//! never from headers, so a zip or gzip bomb stops at the limit.

use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

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
    pub entries: usize,
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
    #[error("package entry {0:?} is a link pointing outside the package")]
    EscapingLink(String),
    #[error("package entry {0:?} is a device, fifo or other special file")]
    SpecialFile(String),
    #[error("package has more than {0} entries")]
    TooManyEntries(usize),
    #[error("package unpacks to more than {0} bytes")]
    TooLarge(u64),
    #[error("cannot write unpacked package: {0}")]
    Io(io::Error),
}

/// Checks a package without writing anything.
pub fn inspect(bytes: &[u8], limits: Limits) -> Result<Manifest, ArchiveError> {
    walk(bytes, limits, None)
}

/// Validates and unpacks a package into `dest` (which must exist and be empty).
pub fn unpack(bytes: &[u8], limits: Limits, dest: &Path) -> Result<Manifest, ArchiveError> {
    walk(bytes, limits, Some(dest))
}

/// One entry of either format, normalised.
enum EntryKind {
    Dir,
    File { executable: bool },
    Symlink(String),
    HardLink(String),
    Special,
}

struct Budget {
    limits: Limits,
    entries: usize,
    bytes: u64,
}

impl Budget {
    fn new(limits: Limits) -> Self {
        Self {
            limits,
            entries: 0,
            bytes: 0,
        }
    }

    fn count_entry(&mut self) -> Result<(), ArchiveError> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(ArchiveError::TooManyEntries(self.limits.max_entries));
        }
        Ok(())
    }

    /// Copies (or drains) `reader` into `sink`, stopping at the byte budget.
    fn consume(
        &mut self,
        reader: &mut dyn Read,
        sink: &mut dyn io::Write,
    ) -> Result<(), ArchiveError> {
        let remaining = self.limits.max_unpacked_bytes - self.bytes;
        let copied = io::copy(&mut reader.take(remaining + 1), sink)
            .map_err(|e| ArchiveError::Corrupt(e.to_string()))?;
        if copied > remaining {
            return Err(ArchiveError::TooLarge(self.limits.max_unpacked_bytes));
        }
        self.bytes += copied;
        Ok(())
    }
}

fn walk(bytes: &[u8], limits: Limits, dest: Option<&Path>) -> Result<Manifest, ArchiveError> {
    let format = ArchiveFormat::detect(bytes).ok_or(ArchiveError::UnknownFormat)?;
    let mut budget = Budget::new(limits);
    match format {
        ArchiveFormat::Zip => walk_zip(bytes, &mut budget, dest)?,
        ArchiveFormat::TarGz => walk_tar_gz(bytes, &mut budget, dest)?,
    }
    Ok(Manifest {
        format,
        entries: budget.entries,
        unpacked_bytes: budget.bytes,
    })
}

fn walk_zip(bytes: &[u8], budget: &mut Budget, dest: Option<&Path>) -> Result<(), ArchiveError> {
    let mut archive = zip::ZipArchive::new(io::Cursor::new(bytes))
        .map_err(|e| ArchiveError::Corrupt(e.to_string()))?;
    if archive.len() > budget.limits.max_entries {
        return Err(ArchiveError::TooManyEntries(budget.limits.max_entries));
    }
    for index in 0..archive.len() {
        let mut file = archive
            .by_index(index)
            .map_err(|e| ArchiveError::Corrupt(e.to_string()))?;
        let name = file.name().to_owned();
        let mode = file.unix_mode().unwrap_or(0);
        let kind = match mode & 0o170000 {
            0o120000 => {
                let mut target = String::new();
                file.by_ref()
                    .take(4096)
                    .read_to_string(&mut target)
                    .map_err(|e| ArchiveError::Corrupt(e.to_string()))?;
                EntryKind::Symlink(target)
            }
            0o020000 | 0o060000 | 0o010000 | 0o140000 => EntryKind::Special,
            _ if file.is_dir() => EntryKind::Dir,
            _ => EntryKind::File {
                executable: mode & 0o111 != 0,
            },
        };
        place(&name, kind, &mut file, budget, dest)?;
    }
    Ok(())
}

fn walk_tar_gz(bytes: &[u8], budget: &mut Budget, dest: Option<&Path>) -> Result<(), ArchiveError> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    let entries = archive
        .entries()
        .map_err(|e| ArchiveError::Corrupt(e.to_string()))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| ArchiveError::Corrupt(e.to_string()))?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let header = entry.header();
        let link = || {
            header
                .link_name_bytes()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default()
        };
        let kind = match header.entry_type() {
            tar::EntryType::Directory => EntryKind::Dir,
            tar::EntryType::Regular | tar::EntryType::Continuous => EntryKind::File {
                executable: header.mode().unwrap_or(0) & 0o111 != 0,
            },
            tar::EntryType::Symlink => EntryKind::Symlink(link()),
            tar::EntryType::Link => EntryKind::HardLink(link()),
            // pax/GNU extension headers are metadata consumed by the tar crate itself.
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader => continue,
            _ => EntryKind::Special,
        };
        place(&name, kind, &mut entry, budget, dest)?;
    }
    Ok(())
}

/// Validates one entry and, when unpacking, writes it.
fn place(
    name: &str,
    kind: EntryKind,
    content: &mut dyn Read,
    budget: &mut Budget,
    dest: Option<&Path>,
) -> Result<(), ArchiveError> {
    budget.count_entry()?;
    // `tar -C dir .` writes the root itself as `./`: nothing to create, nothing unsafe.
    if matches!(kind, EntryKind::Dir)
        && Path::new(name).components().all(|c| c == Component::CurDir)
    {
        return Ok(());
    }
    let relative = entry_path(name).ok_or_else(|| ArchiveError::UnsafePath(name.to_owned()))?;
    let target = dest.map(|d| d.join(&relative));
    match kind {
        EntryKind::Special => return Err(ArchiveError::SpecialFile(name.to_owned())),
        EntryKind::Dir => {
            if let Some(path) = target {
                std::fs::create_dir_all(path).map_err(ArchiveError::Io)?;
            }
        }
        EntryKind::File { executable } => match target {
            Some(path) => {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(ArchiveError::Io)?;
                }
                let mut file = std::fs::File::create(&path).map_err(ArchiveError::Io)?;
                budget.consume(content, &mut file)?;
                set_mode(&path, if executable { 0o755 } else { 0o644 })?;
            }
            None => budget.consume(content, &mut io::sink())?,
        },
        EntryKind::Symlink(link) => {
            if !link_stays_inside(&relative, &link) {
                return Err(ArchiveError::EscapingLink(name.to_owned()));
            }
            if let Some(path) = target {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(ArchiveError::Io)?;
                }
                std::os::unix::fs::symlink(&link, &path).map_err(ArchiveError::Io)?;
            }
        }
        EntryKind::HardLink(link) => {
            // Hard links name a path relative to the archive root.
            let source =
                entry_path(&link).ok_or_else(|| ArchiveError::EscapingLink(name.to_owned()))?;
            if let (Some(path), Some(root)) = (target, dest) {
                std::fs::copy(root.join(source), &path).map_err(ArchiveError::Io)?;
            }
        }
    }
    Ok(())
}

/// An entry's name as a clean relative path; `None` when it is absolute, empty, or has a
/// `..` component anywhere (no legitimate package needs one).
fn entry_path(name: &str) -> Option<PathBuf> {
    let mut clean = PathBuf::new();
    for component in Path::new(name).components() {
        match component {
            Component::Normal(part) => clean.push(part),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    (!clean.as_os_str().is_empty()).then_some(clean)
}

/// Whether a link at `entry` (relative to the root) pointing to `link` resolves inside the
/// root. Links may use `..` as long as they never climb above the root.
fn link_stays_inside(entry: &Path, link: &str) -> bool {
    if link.is_empty() {
        return false;
    }
    let mut depth: Vec<&std::ffi::OsStr> = Vec::new();
    let parent = entry.parent().unwrap_or(Path::new(""));
    for component in parent.components().chain(Path::new(link).components()) {
        match component {
            Component::Normal(part) => depth.push(part),
            Component::CurDir => {}
            Component::ParentDir => {
                if depth.pop().is_none() {
                    return false;
                }
            }
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

fn set_mode(path: &Path, mode: u32) -> Result<(), ArchiveError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(ArchiveError::Io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const LIMITS: Limits = Limits {
        max_entries: 100,
        max_unpacked_bytes: 1 << 20,
    };

    enum Item<'a> {
        File(&'a str, &'a [u8]),
        Symlink(&'a str, &'a str),
    }

    fn zip_of(items: &[Item]) -> Vec<u8> {
        let mut writer = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
        for item in items {
            match item {
                Item::File(name, data) => {
                    let options = zip::write::SimpleFileOptions::default().unix_permissions(0o755);
                    writer.start_file(*name, options).expect("start");
                    writer.write_all(data).expect("write");
                }
                Item::Symlink(name, target) => {
                    writer
                        .add_symlink(*name, *target, zip::write::SimpleFileOptions::default())
                        .expect("symlink");
                }
            }
        }
        writer.finish().expect("finish").into_inner()
    }

    fn tar_gz_of(items: &[Item]) -> Vec<u8> {
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut builder = tar::Builder::new(gz);
        for item in items {
            let mut header = tar::Header::new_gnu();
            match item {
                Item::File(name, data) => {
                    header.set_size(data.len() as u64);
                    header.set_mode(0o644);
                    header.set_entry_type(tar::EntryType::Regular);
                    // set_path refuses `..`; write the raw name to build hostile archives.
                    raw_name(&mut header, name);
                    header.set_cksum();
                    builder.append(&header, *data).expect("append");
                }
                Item::Symlink(name, target) => {
                    header.set_size(0);
                    header.set_entry_type(tar::EntryType::Symlink);
                    raw_name(&mut header, name);
                    header.set_link_name(target).expect("link");
                    header.set_cksum();
                    builder.append(&header, io::empty()).expect("append");
                }
            }
        }
        builder.into_inner().expect("tar").finish().expect("gz")
    }

    fn raw_name(header: &mut tar::Header, name: &str) {
        let field = &mut header.as_old_mut().name;
        field.fill(0);
        field[..name.len()].copy_from_slice(name.as_bytes());
    }

    /// Runs `check` on the same items packed both ways.
    fn both(items: &[Item], check: impl Fn(Result<Manifest, ArchiveError>)) {
        check(inspect(&zip_of(items), LIMITS));
        check(inspect(&tar_gz_of(items), LIMITS));
    }

    #[test]
    fn good_packages_unpack_with_modes() {
        let items = [
            Item::File("main.py", b"def handler(e, c):\n    return 1\n"),
            Item::File("lib/util.py", b"x = 1\n"),
            Item::Symlink("lib/alias.py", "util.py"),
        ];
        for bytes in [zip_of(&items), tar_gz_of(&items)] {
            let dir = std::env::temp_dir().join(format!("fresco-archive-{}", uuid::Uuid::new_v4()));
            std::fs::create_dir(&dir).expect("dir");
            let manifest = unpack(&bytes, LIMITS, &dir).expect("unpack");
            assert_eq!(manifest.entries, 3);
            assert_eq!(
                std::fs::read_to_string(dir.join("lib/util.py")).expect("read"),
                "x = 1\n"
            );
            assert_eq!(
                std::fs::read_to_string(dir.join("lib/alias.py")).expect("read"),
                "x = 1\n"
            );
            std::fs::remove_dir_all(&dir).expect("cleanup");
        }
    }

    #[test]
    fn the_root_entry_of_tar_c_dot_is_accepted() {
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut builder = tar::Builder::new(gz);
        let mut root = tar::Header::new_gnu();
        root.set_entry_type(tar::EntryType::Directory);
        root.set_size(0);
        raw_name(&mut root, "./");
        root.set_cksum();
        builder.append(&root, io::empty()).expect("root");
        let mut file = tar::Header::new_gnu();
        file.set_entry_type(tar::EntryType::Regular);
        file.set_size(1);
        file.set_mode(0o644);
        raw_name(&mut file, "./main.py");
        file.set_cksum();
        builder.append(&file, &b"x"[..]).expect("file");
        let bytes = builder.into_inner().expect("tar").finish().expect("gz");
        let manifest = inspect(&bytes, LIMITS).expect("valid");
        assert_eq!((manifest.entries, manifest.unpacked_bytes), (2, 1));
    }

    #[test]
    fn hostile_paths_are_refused() {
        both(&[Item::File("../evil.py", b"x")], |r| {
            assert!(matches!(r, Err(ArchiveError::UnsafePath(_))), "{r:?}")
        });
        both(&[Item::File("/etc/passwd", b"x")], |r| {
            assert!(matches!(r, Err(ArchiveError::UnsafePath(_))), "{r:?}")
        });
        both(&[Item::File("a/../../b", b"x")], |r| {
            assert!(matches!(r, Err(ArchiveError::UnsafePath(_))), "{r:?}")
        });
        both(&[Item::Symlink("link", "/etc/shadow")], |r| {
            assert!(matches!(r, Err(ArchiveError::EscapingLink(_))), "{r:?}")
        });
        both(&[Item::Symlink("a/link", "../../x")], |r| {
            assert!(matches!(r, Err(ArchiveError::EscapingLink(_))), "{r:?}")
        });
        both(&[Item::Symlink("a/link", "../x")], |r| {
            assert!(r.is_ok(), "{r:?}")
        });
    }

    #[test]
    fn bombs_stop_at_the_limit() {
        let big = vec![0u8; (LIMITS.max_unpacked_bytes + 1) as usize];
        both(&[Item::File("zeros", &big)], |r| {
            assert!(matches!(r, Err(ArchiveError::TooLarge(_))), "{r:?}")
        });
        let names: Vec<String> = (0..=LIMITS.max_entries).map(|i| format!("f{i}")).collect();
        let items: Vec<Item> = names.iter().map(|n| Item::File(n, b"")).collect();
        both(&items, |r| {
            assert!(matches!(r, Err(ArchiveError::TooManyEntries(_))), "{r:?}")
        });
        // A compressed bomb: 1 MiB + 1 of zeros compresses to about a kilobyte.
        assert!(tar_gz_of(&[Item::File("zeros", &big)]).len() < 8 * 1024);
    }

    #[test]
    fn garbage_is_refused() {
        assert!(matches!(
            inspect(b"hello", LIMITS),
            Err(ArchiveError::UnknownFormat)
        ));
        assert!(matches!(
            inspect(b"PK\x03\x04garbage", LIMITS),
            Err(ArchiveError::Corrupt(_))
        ));
        assert!(matches!(
            inspect(&[0x1f, 0x8b, 0, 1, 2], LIMITS),
            Err(ArchiveError::Corrupt(_))
        ));
    }
}
