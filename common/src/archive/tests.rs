use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::hostile::{self, dir, file, file_mode, hardlink, symlink, tar_gz, zip, Item};
use super::path::EntryPath;
use super::tree::{Budget, Sink};
use super::*;

const LIMITS: Limits = Limits {
    max_entries: 100,
    max_unpacked_bytes: 1 << 20,
};

/// A scratch directory `base` holding `dest` (where packages are unpacked) and `outside`
/// (which must stay empty); removed on drop.
struct Scratch {
    base: PathBuf,
}

impl Scratch {
    fn new() -> Self {
        let base = std::env::temp_dir().join(format!("fresco-archive-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(base.join("dest")).expect("dest");
        std::fs::create_dir_all(base.join("outside")).expect("outside");
        Self { base }
    }

    fn dest(&self) -> PathBuf {
        self.base.join("dest")
    }

    fn outside(&self) -> PathBuf {
        self.base.join("outside")
    }

    /// Fails when anything but `dest` and an empty `outside` exists in `base`.
    fn assert_nothing_outside(&self, label: &str) {
        let mut names: Vec<String> = std::fs::read_dir(&self.base)
            .expect("base")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["dest", "outside"], "{label}: written beside dest");
        assert_eq!(
            std::fs::read_dir(self.outside()).expect("outside").count(),
            0,
            "{label}: written outside"
        );
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o7777
}

#[test]
fn every_hostile_package_is_refused_by_inspect_and_unpack_alike() {
    let scratch_for_outside = Scratch::new();
    let outside = scratch_for_outside.outside();
    let samples = hostile::samples(LIMITS, &outside.display().to_string());
    assert!(samples.len() >= 40, "{} samples", samples.len());
    for sample in samples {
        let label = &sample.label;
        let inspected = inspect(&sample.bytes, LIMITS).expect_err(label);
        assert!(
            inspected.to_string().contains(&sample.refusal),
            "{label}: inspect said {inspected}, expected {:?}",
            sample.refusal
        );
        let scratch = Scratch::new();
        let unpacked = unpack(&sample.bytes, LIMITS, &scratch.dest()).expect_err(label);
        assert_eq!(
            unpacked.to_string(),
            inspected.to_string(),
            "{label}: unpack and inspect disagree"
        );
        scratch.assert_nothing_outside(label);
        // Nothing named by the attacks appears anywhere under the dest either.
        assert!(!find(&scratch.dest(), "pwned-by-tenant"), "{label}");
    }
    scratch_for_outside.assert_nothing_outside("absolute escape");
}

/// Whether a file called `name` exists under `dir` (links not followed).
fn find(dir: &Path, name: &str) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        e.file_name() == name || (e.file_type().is_ok_and(|t| t.is_dir()) && find(&e.path(), name))
    })
}

#[test]
fn the_issue_chain_is_refused_at_its_second_link() {
    // x/up -> .. is harmless on its own; x/up/esc would be created through it.
    let items = [
        symlink("x/up", ".."),
        symlink("x/up/esc", "../.."),
        file("x/up/esc/anything", b"escaped"),
    ];
    for bytes in [tar_gz(&items), zip(&items).expect("zip")] {
        let error = inspect(&bytes, LIMITS).expect_err("refused");
        assert!(
            matches!(&error, ArchiveError::ThroughLink { entry, link } if entry == "x/up/esc" && link == "x/up"),
            "{error:?}"
        );
    }
}

#[test]
fn modes_are_normalised_and_special_bits_stripped() {
    for (label, bytes) in hostile::accepted_samples() {
        let scratch = Scratch::new();
        let dest = scratch.dest();
        let manifest = unpack(&bytes, LIMITS, &dest).expect(&label);
        assert_eq!(inspect(&bytes, LIMITS).expect(&label), manifest, "{label}");
        assert_eq!(mode(&dest), 0o755, "{label}: root");
        assert_eq!(mode(&dest.join("bin")), 0o755, "{label}");
        assert_eq!(
            mode(&dest.join("bin/tool")),
            0o755,
            "{label}: setuid stripped"
        );
        assert_eq!(
            mode(&dest.join("bin/group")),
            0o755,
            "{label}: setgid stripped"
        );
        assert_eq!(mode(&dest.join("data/secret")), 0o644, "{label}");
        assert_eq!(mode(&dest.join("data/open")), 0o644, "{label}");
        assert_eq!(
            mode(&dest.join("shared")),
            0o755,
            "{label}: sticky stripped"
        );
        assert_eq!(
            std::fs::read_link(dest.join("shared/up")).expect("link"),
            Path::new("../data")
        );
        assert_eq!(
            std::fs::read_to_string(dest.join("shared/alias.py")).expect("read"),
            "def handler(e, c):\n    return 1\n"
        );
        if label.starts_with("tar.gz") {
            // Hard links become copies: separate files, counted in full.
            let copy = std::fs::symlink_metadata(dest.join("copy")).expect("copy");
            assert!(copy.is_file() && copy.nlink() == 1, "{label}");
            assert_eq!(mode(&dest.join("copy")), 0o755);
            assert_eq!(
                std::fs::read(dest.join("copy")).expect("copy"),
                b"#!/bin/sh\necho hi\n"
            );
            // tool and its copy, three 1-byte files, the handler, two link targets.
            let content = 2 * 18 + 3 + 32 + 7 + 7;
            assert_eq!(manifest.unpacked_bytes, content, "{label}");
        }
        scratch.assert_nothing_outside(&label);
    }
}

#[test]
fn good_packages_unpack_with_modes() {
    let items = [
        file_mode("main.py", b"def handler(e, c):\n    return 1\n", 0o755),
        file("lib/util.py", b"x = 1\n"),
        symlink("lib/alias.py", "util.py"),
    ];
    for bytes in [zip(&items).expect("zip"), tar_gz(&items)] {
        let scratch = Scratch::new();
        let manifest = unpack(&bytes, LIMITS, &scratch.dest()).expect("unpack");
        assert_eq!(manifest.entries, 3);
        assert_eq!(
            std::fs::read_to_string(scratch.dest().join("lib/alias.py")).expect("read"),
            "x = 1\n"
        );
        assert_eq!(mode(&scratch.dest().join("main.py")), 0o755);
        assert_eq!(
            mode(&scratch.dest().join("lib")),
            0o755,
            "implied directory"
        );
    }
}

#[test]
fn the_root_entry_of_tar_c_dot_and_redeclared_directories_are_accepted() {
    let items = [
        dir("./"),
        file("./lib/a.py", b"x"),
        dir("lib"),
        dir("lib/"),
        dir("."),
    ];
    let manifest = inspect(&tar_gz(&items), LIMITS).expect("valid");
    assert_eq!((manifest.entries, manifest.unpacked_bytes), (5, 1));
    let scratch = Scratch::new();
    unpack(&tar_gz(&items), LIMITS, &scratch.dest()).expect("unpack");
    assert!(scratch.dest().join("lib/a.py").is_file());
}

#[test]
fn bombs_stop_at_the_limit() {
    let big = vec![0u8; (LIMITS.max_unpacked_bytes + 1) as usize];
    for bytes in [
        tar_gz(&[file("zeros", &big)]),
        zip(&[file("zeros", &big)]).expect("zip"),
    ] {
        assert!(matches!(
            inspect(&bytes, LIMITS),
            Err(ArchiveError::TooLarge(_))
        ));
        let scratch = Scratch::new();
        assert!(matches!(
            unpack(&bytes, LIMITS, &scratch.dest()),
            Err(ArchiveError::TooLarge(_))
        ));
        // The partial file never exceeds the budget by more than one byte.
        let written = std::fs::metadata(scratch.dest().join("zeros")).map_or(0, |m| m.len());
        assert!(written <= LIMITS.max_unpacked_bytes + 1, "{written}");
    }
    let names: Vec<String> = (0..=LIMITS.max_entries).map(|i| format!("f{i}")).collect();
    let items: Vec<Item> = names.iter().map(|n| file(n, b"")).collect();
    for bytes in [tar_gz(&items), zip(&items).expect("zip")] {
        assert!(matches!(
            inspect(&bytes, LIMITS),
            Err(ArchiveError::TooManyEntries(_))
        ));
    }
    // A compressed bomb: 1 MiB + 1 of zeros compresses to about a kilobyte.
    assert!(tar_gz(&[file("zeros", &big)]).len() < 8 * 1024);
    // Hard links: a 1.5 KB archive asked for 51 MiB before; every copied byte counts now.
    let quarter = vec![0u8; (LIMITS.max_unpacked_bytes / 4) as usize];
    let mut items = vec![file("zeros", &quarter)];
    items.extend((0..3).map(|i| hardlink(&format!("c{i}"), "zeros")));
    let manifest = inspect(&tar_gz(&items), LIMITS).expect("exactly at the limit");
    assert_eq!(manifest.unpacked_bytes, LIMITS.max_unpacked_bytes);
    items.push(hardlink("one-too-many", "zeros"));
    let bytes = tar_gz(&items);
    assert!(bytes.len() < 4096, "{}", bytes.len());
    assert!(matches!(
        inspect(&bytes, LIMITS),
        Err(ArchiveError::TooLarge(_))
    ));
    let scratch = Scratch::new();
    assert!(matches!(
        unpack(&bytes, LIMITS, &scratch.dest()),
        Err(ArchiveError::TooLarge(_))
    ));
    assert!(!scratch.dest().join("one-too-many").exists());
}

#[test]
fn legitimate_long_names_and_pax_paths_are_read_whole() {
    let long = format!("{}/main.py", vec!["pkg"; 40].join("_"));
    assert!(long.len() > 100);
    let items = [
        file(&long, b"x"),
        Item::PaxPath {
            path: b"from/pax.py".to_vec(),
        },
        file("short.py", b"y"),
        symlink("link", &format!("{}/main.py", vec!["pkg"; 40].join("_"))),
    ];
    let scratch = Scratch::new();
    unpack(&tar_gz(&items), LIMITS, &scratch.dest()).expect("unpack");
    assert!(scratch.dest().join(&long).is_file());
    assert!(scratch.dest().join("from/pax.py").is_file());
    assert!(!scratch.dest().join("short.py").exists());
    assert_eq!(
        std::fs::read_to_string(scratch.dest().join("link")).expect("through the link"),
        "x"
    );
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

/// The kernel enforces the model a second time: even a step the model accepted is refused
/// when the disk holds a link where a directory should be (a race, or a model bug).
#[test]
fn the_disk_sink_never_follows_links_on_disk() {
    let scratch = Scratch::new();
    let dest = scratch.dest();
    std::os::unix::fs::symlink(scratch.outside(), dest.join("evil")).expect("link");
    std::fs::write(scratch.outside().join("..").join("secret"), b"host").expect("secret");
    std::os::unix::fs::symlink("../secret", dest.join("leak")).expect("link");
    let root = rustix::fs::open(
        &dest,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY,
        rustix::fs::Mode::empty(),
    )
    .expect("open");
    let mut disk = disk::Disk::new(root.as_fd()).expect("disk");
    let path = |p: &str| EntryPath::parse(p.as_bytes()).expect("ok").expect("path");
    let mut budget = Budget::new(LIMITS, None);
    // ELOOP from RESOLVE_NO_SYMLINKS, or ENOTDIR when the link is the last component opened
    // with O_NOFOLLOW | O_DIRECTORY.
    let loops = |r: Result<(), ArchiveError>| {
        assert!(
            matches!(&r, Err(ArchiveError::Io(e)) if matches!(e.raw_os_error(), Some(40 | 20))),
            "{r:?}"
        )
    };
    loops(disk.dir(&path("evil/d")));
    loops(
        disk.file(&path("evil/f"), false, &mut io::empty(), &mut budget)
            .map(|_| ()),
    );
    loops(disk.symlink(&path("evil/s"), "x"));
    loops(disk.copy(&path("copy"), &path("leak"), 4, false));
    assert!(!dest.join("copy").exists(), "no copy of a host file");
    // Nothing existing is overwritten or followed at the last component either.
    let exists = |r: Result<(), ArchiveError>| {
        assert!(
            matches!(&r, Err(ArchiveError::Io(e)) if e.kind() == io::ErrorKind::AlreadyExists),
            "{r:?}"
        )
    };
    exists(
        disk.file(&path("evil"), false, &mut io::empty(), &mut budget)
            .map(|_| ()),
    );
    exists(disk.dir(&path("evil")));
    assert_eq!(
        std::fs::read_dir(scratch.outside()).expect("dir").count(),
        0
    );
    std::fs::remove_file(scratch.base.join("secret")).expect("cleanup");
    scratch.assert_nothing_outside("disk sink");
}

/// Found by the fuzz target (fuzz/regressions/crash-f93e818b...): an unpack that failed
/// half-way left a file with the 0600 it was created with. Modes are now final from creation.
#[test]
fn what_a_failed_unpack_leaves_is_normalised_too() {
    let big = vec![b'x'; (LIMITS.max_unpacked_bytes + 1) as usize];
    let items = [
        file_mode("bin/first", b"#!/bin/sh\n", 0o4700),
        file("deep/second", &big),
    ];
    for bytes in [tar_gz(&items), zip(&items).expect("zip")] {
        let scratch = Scratch::new();
        let dest = scratch.dest();
        assert!(matches!(
            unpack(&bytes, LIMITS, &dest),
            Err(ArchiveError::TooLarge(_))
        ));
        assert_eq!(mode(&dest.join("bin/first")), 0o755);
        assert_eq!(mode(&dest.join("deep")), 0o755);
        assert_eq!(mode(&dest.join("deep/second")), 0o644, "partial file");
    }
}
