//! The logic of the `archive` fuzz target, as a library so it can be replayed and reviewed:
//! turn fuzz input into a code package and check the invariants of
//! `fresco_common::archive`. See `fuzz/README.md`.
#![forbid(unsafe_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use arbitrary::{Arbitrary, Unstructured};
use fresco_common::archive::{self, hostile, ArchiveFormat, Limits};

/// Small limits, so budgets and entry counts are reached often.
pub const LIMITS: Limits = Limits {
    max_entries: 64,
    max_unpacked_bytes: 256 * 1024,
};

/// A path component, from a small alphabet so that entries collide, nest and link into each
/// other often.
#[derive(Arbitrary, Debug)]
enum Part {
    A,
    B,
    C,
    Up,
    Dot,
    Empty,
    TooLong,
    Deep,
}

impl Part {
    fn text(&self) -> String {
        match self {
            Part::A => "a".into(),
            Part::B => "b".into(),
            Part::C => "c".into(),
            Part::Up => "..".into(),
            Part::Dot => ".".into(),
            Part::Empty => String::new(),
            Part::TooLong => "n".repeat(256),
            Part::Deep => vec!["d"; 9].join("/"),
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Name {
    absolute: bool,
    parts: Vec<Part>,
}

impl Name {
    fn render(&self) -> Vec<u8> {
        let joined = self
            .parts
            .iter()
            .map(Part::text)
            .collect::<Vec<_>>()
            .join("/");
        if self.absolute {
            format!("/{joined}").into_bytes()
        } else {
            joined.into_bytes()
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Entry {
    File { name: Name, size: u16, mode: u16 },
    Dir { name: Name, mode: u16 },
    Symlink { name: Name, target: Name },
    HardLink { name: Name, target: Name },
    Fifo { name: Name },
    CharDevice { name: Name },
    PaxPath { path: Name },
}

#[derive(Arbitrary, Debug)]
struct Package {
    zip: bool,
    entries: Vec<Entry>,
}

/// The package a fuzz input stands for: the input itself when it is a zip or gzip (the seed
/// corpus, and mutations of it), else entries decoded from it and written as a tar.gz or zip.
pub fn package(data: &[u8]) -> Vec<u8> {
    if ArchiveFormat::detect(data).is_some() {
        return data.to_vec();
    }
    let Ok(package) = Package::arbitrary_take_rest(Unstructured::new(data)) else {
        return data.to_vec();
    };
    let items: Vec<hostile::Item> = package
        .entries
        .iter()
        .map(|entry| match entry {
            Entry::File { name, size, mode } => hostile::Item::File {
                name: name.render(),
                data: vec![b'z'; usize::from(*size) * 4],
                mode: u32::from(*mode),
            },
            Entry::Dir { name, mode } => hostile::Item::Dir {
                name: name.render(),
                mode: u32::from(*mode),
            },
            Entry::Symlink { name, target } => hostile::Item::Symlink {
                name: name.render(),
                target: target.render(),
            },
            Entry::HardLink { name, target } => hostile::Item::HardLink {
                name: name.render(),
                target: target.render(),
            },
            Entry::Fifo { name } => hostile::Item::Fifo {
                name: name.render(),
            },
            Entry::CharDevice { name } => hostile::Item::CharDevice {
                name: name.render(),
            },
            Entry::PaxPath { path } => hostile::Item::PaxPath {
                path: path.render(),
            },
        })
        .collect();
    if package.zip {
        if let Some(bytes) = hostile::zip(&items) {
            return bytes;
        }
    }
    hostile::tar_gz(&items)
}

static RUN: AtomicU64 = AtomicU64::new(0);

/// A fresh `base` with `dest` (empty) and `outside/keep`; removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        let base = std::env::temp_dir().join(format!(
            "fresco-fuzz-{}-{}",
            std::process::id(),
            RUN.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(base.join("dest")).expect("dest");
        std::fs::create_dir_all(base.join("outside")).expect("outside");
        std::fs::write(base.join("outside/keep"), b"original").expect("keep");
        Self(base)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Checks what unpacking left in `dir`: only directories (0755), files (0644 or 0755) and
/// relative links, never a setuid, setgid or sticky bit.
fn check_tree(dir: &Path) {
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let entry = entry.expect("entry");
        let path = entry.path();
        let meta = std::fs::symlink_metadata(&path).expect("metadata");
        let mode = meta.permissions().mode() & 0o7777;
        let kind = meta.file_type();
        if kind.is_symlink() {
            let target = std::fs::read_link(&path).expect("link");
            assert!(target.is_relative(), "{}: absolute link", path.display());
        } else if kind.is_dir() {
            assert_eq!(mode, 0o755, "{}", path.display());
            check_tree(&path);
        } else {
            assert!(kind.is_file(), "{}: special file", path.display());
            assert!(
                mode == 0o644 || mode == 0o755,
                "{}: mode {mode:o}",
                path.display()
            );
        }
    }
}

/// The invariants: inspect and unpack agree (same manifest, or the same refusal); unpack
/// never creates, changes or removes anything outside its directory; what it creates is
/// normalised.
pub fn check(bytes: &[u8]) {
    let inspected = archive::inspect(bytes, LIMITS);
    let scratch = Scratch::new();
    let dest = scratch.0.join("dest");
    let unpacked = archive::unpack(bytes, LIMITS, &dest);
    match (&inspected, &unpacked) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "inspect and unpack disagree"),
        (Err(a), Err(b)) => assert_eq!(
            a.to_string(),
            b.to_string(),
            "inspect and unpack refuse differently"
        ),
        _ => panic!("inspect and unpack disagree: {inspected:?} / {unpacked:?}"),
    }
    assert_eq!(
        names(&scratch.0),
        ["dest", "outside"],
        "written beside dest"
    );
    assert_eq!(
        names(&scratch.0.join("outside")),
        ["keep"],
        "written outside"
    );
    assert_eq!(
        std::fs::read(scratch.0.join("outside/keep")).expect("keep"),
        b"original"
    );
    if unpacked.is_ok() {
        assert_eq!(
            std::fs::symlink_metadata(&dest)
                .expect("dest")
                .permissions()
                .mode()
                & 0o7777,
            0o755
        );
    }
    check_tree(&dest);
}

/// Writes the seed corpus, every attack of the hostile catalogue and the accepted odd-mode
/// packages, into `dir`.
pub fn write_seeds(dir: &Path) -> std::io::Result<usize> {
    std::fs::create_dir_all(dir)?;
    let mut samples: Vec<(String, Vec<u8>)> = hostile::samples(LIMITS, "/tmp/fresco-fuzz-outside")
        .into_iter()
        .map(|s| (s.label, s.bytes))
        .collect();
    samples.extend(hostile::accepted_samples());
    for (label, bytes) in &samples {
        let slug: String = label
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect();
        std::fs::write(dir.join(slug), bytes)?;
    }
    Ok(samples.len())
}
