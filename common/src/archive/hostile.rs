//! Hostile code packages: every known attack on unpacking, as real zip and tar.gz bytes.
//!
//! One catalogue shared by the unit tests here, the API's upload tests, the agent's unpacking
//! tests and the fuzz target's seed corpus, so an attack added here is tried everywhere. The
//! builders write names, link targets and modes byte for byte (no sanitising), as an attacker's
//! own tools would.

use std::io::Write;

use super::{Limits, MAX_DEPTH, MAX_PATH_BYTES};

/// One entry of a package to build.
#[derive(Debug, Clone)]
pub enum Item {
    File {
        name: Vec<u8>,
        data: Vec<u8>,
        mode: u32,
    },
    Dir {
        name: Vec<u8>,
        mode: u32,
    },
    Symlink {
        name: Vec<u8>,
        target: Vec<u8>,
    },
    /// tar only.
    HardLink {
        name: Vec<u8>,
        target: Vec<u8>,
    },
    Fifo {
        name: Vec<u8>,
    },
    /// tar only.
    CharDevice {
        name: Vec<u8>,
    },
    /// A pax record `path=<path>` for the entry that follows (tar only).
    PaxPath {
        path: Vec<u8>,
    },
    /// A file whose data is declared and present but never used: a symlink with content
    /// (tar only), which readers skip.
    SkippedData {
        name: Vec<u8>,
        size: usize,
    },
    /// A GNU long-name record of `size` bytes for the entry that follows (tar only).
    LongNameRecord {
        size: usize,
    },
}

pub fn file(name: &str, data: &[u8]) -> Item {
    Item::File {
        name: name.into(),
        data: data.to_vec(),
        mode: 0o644,
    }
}

pub fn file_mode(name: &str, data: &[u8], mode: u32) -> Item {
    Item::File {
        name: name.into(),
        data: data.to_vec(),
        mode,
    }
}

pub fn dir(name: &str) -> Item {
    Item::Dir {
        name: name.into(),
        mode: 0o755,
    }
}

pub fn symlink(name: &str, target: &str) -> Item {
    Item::Symlink {
        name: name.into(),
        target: target.into(),
    }
}

pub fn hardlink(name: &str, target: &str) -> Item {
    Item::HardLink {
        name: name.into(),
        target: target.into(),
    }
}

/// A tar.gz of `items`, written header by header.
pub fn tar_gz(items: &[Item]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut builder = tar::Builder::new(gz);
    for item in items {
        let (name, kind, mode, link, data): (&[u8], tar::EntryType, u32, &[u8], Vec<u8>) =
            match item {
                Item::File { name, data, mode } => {
                    (name, tar::EntryType::Regular, *mode, b"", data.clone())
                }
                Item::Dir { name, mode } => (name, tar::EntryType::Directory, *mode, b"", vec![]),
                Item::Symlink { name, target } => {
                    (name, tar::EntryType::Symlink, 0o777, target, vec![])
                }
                Item::HardLink { name, target } => {
                    (name, tar::EntryType::Link, 0o644, target, vec![])
                }
                Item::Fifo { name } => (name, tar::EntryType::Fifo, 0o644, b"", vec![]),
                Item::CharDevice { name } => (name, tar::EntryType::Char, 0o644, b"", vec![]),
                Item::PaxPath { path } => {
                    let mut record = Vec::new();
                    let body = [b"path=".as_slice(), path, b"\n"].concat();
                    // "<len> path=...\n", where len counts itself.
                    let mut len = body.len() + 2;
                    while format!("{len} ").len() + body.len() != len {
                        len = format!("{len} ").len() + body.len();
                    }
                    record.extend_from_slice(format!("{len} ").as_bytes());
                    record.extend_from_slice(&body);
                    (b"PaxHeaders/x", tar::EntryType::XHeader, 0o644, b"", record)
                }
                Item::SkippedData { name, size } => (
                    name,
                    tar::EntryType::Symlink,
                    0o777,
                    b"target",
                    vec![0; *size],
                ),
                Item::LongNameRecord { size } => (
                    b"././@LongLink",
                    tar::EntryType::GNULongName,
                    0o644,
                    b"",
                    vec![b'a'; *size],
                ),
            };
        if name.len() > 100 {
            append_raw(
                &mut builder,
                b"././@LongLink",
                tar::EntryType::GNULongName,
                0o644,
                b"",
                &[name, b"\0"].concat(),
            );
        }
        if link.len() > 100 {
            append_raw(
                &mut builder,
                b"././@LongLink",
                tar::EntryType::GNULongLink,
                0o644,
                b"",
                &[link, b"\0"].concat(),
            );
        }
        append_raw(&mut builder, name, kind, mode, link, &data);
    }
    builder
        .into_inner()
        .and_then(|gz| gz.finish())
        .expect("writing to memory cannot fail")
}

fn append_raw<W: Write>(
    builder: &mut tar::Builder<W>,
    name: &[u8],
    kind: tar::EntryType,
    mode: u32,
    link: &[u8],
    data: &[u8],
) {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(data.len() as u64);
    header.set_mtime(1_700_000_000);
    let old = header.as_old_mut();
    let n = name.len().min(old.name.len());
    old.name[..n].copy_from_slice(&name[..n]);
    let n = link.len().min(old.linkname.len());
    old.linkname[..n].copy_from_slice(&link[..n]);
    header.set_cksum();
    builder
        .append(&header, data)
        .expect("writing to memory cannot fail");
}

/// A zip of `items`; `None` when one has no zip form (hard links, devices, pax records).
/// Modes the zip writer would mask (setuid, file types) are patched into the central directory.
pub fn zip(items: &[Item]) -> Option<Vec<u8>> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let mut modes = Vec::new();
    for (index, item) in items.iter().enumerate() {
        // Unique placeholder names, replaced by the real (possibly duplicate) bytes below.
        let placeholder = format!("{index:08}");
        let options = zip::write::SimpleFileOptions::default();
        match item {
            Item::File { data, mode, .. } => {
                writer.start_file(&placeholder, options).ok()?;
                writer.write_all(data).ok()?;
                modes.push(0o100000 | mode);
            }
            Item::Dir { mode, .. } => {
                writer.add_directory(&placeholder, options).ok()?;
                modes.push(0o040000 | mode);
            }
            Item::Symlink { target, .. } => {
                writer
                    .add_symlink(&placeholder, String::from_utf8_lossy(target), options)
                    .ok()?;
                modes.push(0o120777);
            }
            Item::Fifo { .. } => {
                writer.start_file(&placeholder, options).ok()?;
                modes.push(0o010644);
            }
            _ => return None,
        }
    }
    let mut bytes = writer.finish().ok()?.into_inner();
    let names: Vec<Vec<u8>> = items
        .iter()
        .map(|item| match item {
            Item::File { name, .. } | Item::Fifo { name } | Item::Symlink { name, .. } => {
                name.clone()
            }
            Item::Dir { name, .. } => {
                let mut name = name.clone();
                if !name.ends_with(b"/") {
                    name.push(b'/');
                }
                name
            }
            _ => Vec::new(),
        })
        .collect();
    Some(rewrite_zip(&mut bytes, &names, &modes))
}

fn u16_at(bytes: &[u8], at: usize) -> usize {
    usize::from(u16::from_le_bytes([bytes[at], bytes[at + 1]]))
}

fn u32_at(bytes: &[u8], at: usize) -> usize {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]) as usize
}

/// Rebuilds a zip written with placeholder names: real names in local and central headers,
/// real modes in the external attributes, offsets fixed up.
fn rewrite_zip(bytes: &mut [u8], names: &[Vec<u8>], modes: &[u32]) -> Vec<u8> {
    let eocd = bytes.len() - 22;
    let central = u32_at(bytes, eocd + 16);
    let count = u16_at(bytes, eocd + 10);
    let mut out = Vec::new();
    let mut new_offsets = Vec::new();
    // Local records, in central-directory order.
    let mut at = central;
    let mut records = Vec::new();
    for _ in 0..count {
        let name_len = u16_at(bytes, at + 28);
        let extra_len = u16_at(bytes, at + 30);
        let comment_len = u16_at(bytes, at + 32);
        records.push((at, 46 + name_len + extra_len + comment_len));
        at += 46 + name_len + extra_len + comment_len;
    }
    for (index, (record, _)) in records.iter().enumerate() {
        let local = u32_at(bytes, record + 42);
        let compressed = u32_at(bytes, record + 20);
        let name_len = u16_at(bytes, local + 26);
        let extra_len = u16_at(bytes, local + 28);
        new_offsets.push(out.len());
        let mut head = bytes[local..local + 30].to_vec();
        head[26..28].copy_from_slice(&(names[index].len() as u16).to_le_bytes());
        out.extend_from_slice(&head);
        out.extend_from_slice(&names[index]);
        let rest = local + 30 + name_len;
        out.extend_from_slice(&bytes[rest..rest + extra_len + compressed]);
    }
    let central_start = out.len();
    for (index, (record, _)) in records.iter().enumerate() {
        let name_len = u16_at(bytes, record + 28);
        let extra_len = u16_at(bytes, record + 30);
        let comment_len = u16_at(bytes, record + 32);
        let mut head = bytes[*record..record + 46].to_vec();
        head[28..30].copy_from_slice(&(names[index].len() as u16).to_le_bytes());
        // Made by Unix, so readers take the mode from the high 16 bits.
        head[5] = 3;
        head[38..42].copy_from_slice(&(modes[index] << 16).to_le_bytes());
        head[42..46].copy_from_slice(&(new_offsets[index] as u32).to_le_bytes());
        out.extend_from_slice(&head);
        out.extend_from_slice(&names[index]);
        let rest = record + 46 + name_len;
        out.extend_from_slice(&bytes[rest..rest + extra_len + comment_len]);
    }
    let central_len = out.len() - central_start;
    let mut end = bytes[eocd..].to_vec();
    end[12..16].copy_from_slice(&(central_len as u32).to_le_bytes());
    end[16..20].copy_from_slice(&(central_start as u32).to_le_bytes());
    out.extend_from_slice(&end);
    out
}

/// A hostile package and how it must be refused.
#[derive(Debug, Clone)]
pub struct Sample {
    /// `<format>: <attack>`.
    pub label: String,
    pub bytes: Vec<u8>,
    /// A fragment of the error message every check must give.
    pub refusal: String,
}

/// An attack: its entries, the refusal, and whether it has a zip form worth trying.
struct Attack {
    name: &'static str,
    items: Vec<Item>,
    refusal: String,
}

impl Attack {
    /// Whether two entries have byte-identical names: the zip reader keeps only one of them
    /// (its index is by name), so such an attack has no zip form.
    fn has_duplicate_names(&self) -> bool {
        let mut names: Vec<&[u8]> = self
            .items
            .iter()
            .filter_map(|item| match item {
                Item::File { name, .. } | Item::Symlink { name, .. } | Item::Fifo { name } => {
                    Some(name.as_slice())
                }
                _ => None,
            })
            .collect();
        let all = names.len();
        names.sort();
        names.dedup();
        names.len() != all
    }
}

fn through_link(entry: &str, link: &str) -> String {
    format!("package entry {entry:?} lies under {link:?}, which is a symbolic link")
}

/// Every attack, in each format that can express it. `outside` is an absolute directory an
/// escape would write into (tests check that nothing appears there); `limits` sizes the bombs.
pub fn samples(limits: Limits, outside: &str) -> Vec<Sample> {
    let too_large = format!(
        "package unpacks to more than {} bytes",
        limits.max_unpacked_bytes
    );
    let too_many = format!("package has more than {} entries", limits.max_entries);
    let outside = outside.trim_start_matches('/');
    // The chain of the issue: x/up -> .., then x/up/esc -> ../.. (created through x/up).
    let chain = Attack {
        name: "symlink chain through a linked directory",
        items: vec![
            file("main.py", b"def handler(e, c):\n    return 1\n"),
            symlink("x/up", ".."),
            symlink("x/up/esc", "../.."),
            file("x/up/esc/pwned-by-tenant", b"escaped"),
        ],
        refusal: through_link("x/up/esc", "x/up"),
    };
    // A longer chain reaching the file system root, then `outside`: before the fix, an agent
    // running as root created `/<outside>/pwned-by-tenant`.
    let hop = "a/b/c/d/e/f/g/h";
    let up = format!("{hop}/up");
    let esc = format!("{up}/{hop}/up/{hop}/esc");
    let deep_chain = Attack {
        name: "symlink chain to an absolute path",
        items: vec![
            symlink(&up, &[".."; 8].join("/")),
            symlink(&esc, &[".."; 26].join("/")),
            file(&format!("{esc}/{outside}/pwned-by-tenant"), b"escaped"),
        ],
        refusal: through_link(&esc, &up),
    };
    let half = usize::try_from(limits.max_unpacked_bytes / 4 + 1).unwrap_or(usize::MAX);
    let deep_name = vec!["d"; MAX_DEPTH + 1].join("/");
    let long_name = format!(
        "{}/x.py",
        vec!["p".repeat(200); MAX_PATH_BYTES / 200 + 1].join("/")
    );
    let implied_files = limits.max_entries / MAX_DEPTH + 1;
    let attacks = vec![
        chain,
        deep_chain,
        Attack {
            name: "file through a link to the root",
            items: vec![symlink("l", "."), file("l/main.py", b"x")],
            refusal: through_link("l/main.py", "l"),
        },
        Attack {
            name: "directory through a link",
            items: vec![dir("sub"), symlink("l", "sub"), dir("l/d")],
            refusal: through_link("l/d", "l"),
        },
        Attack {
            name: "hard link through a linked directory",
            items: vec![
                file("lib/real.py", b"x"),
                symlink("lnk", "lib"),
                hardlink("h", "lnk/real.py"),
            ],
            refusal: r#"package entry "h" is a hard link to "lnk/real.py""#.to_owned(),
        },
        Attack {
            name: "hard link to a host file",
            items: vec![hardlink("passwd", "../../../../../../etc/passwd")],
            refusal: r#"package entry "passwd" is a hard link to "../../../../../../etc/passwd", which is not an earlier regular file"#.to_owned(),
        },
        Attack {
            name: "hard link to an absolute path",
            items: vec![hardlink("shadow", "/etc/shadow")],
            refusal: r#"package entry "shadow" is a hard link to "/etc/shadow""#.to_owned(),
        },
        Attack {
            name: "hard link to a symlink",
            items: vec![file("a", b"x"), symlink("s", "a"), hardlink("h", "s")],
            refusal: r#"package entry "h" is a hard link to "s""#.to_owned(),
        },
        Attack {
            name: "hard link to a directory",
            items: vec![dir("d"), hardlink("h", "d")],
            refusal: r#"package entry "h" is a hard link to "d""#.to_owned(),
        },
        Attack {
            name: "hard link before its target",
            items: vec![hardlink("h", "later"), file("later", b"x")],
            refusal: r#"package entry "h" is a hard link to "later""#.to_owned(),
        },
        Attack {
            name: "hard link budget bomb",
            items: {
                let mut items = vec![file("zeros", &vec![0; half])];
                items.extend((0..4).map(|i| hardlink(&format!("copy{i}"), "zeros")));
                items
            },
            refusal: too_large.clone(),
        },
        Attack {
            name: "symlink replaced by a directory",
            items: vec![
                dir("sub"),
                symlink("d", "sub"),
                dir("d"),
                file("d/f", b"x"),
            ],
            refusal: r#"package entry "d" appears twice or replaces an earlier entry"#.to_owned(),
        },
        Attack {
            name: "directory replaced by a symlink",
            items: vec![dir("d"), symlink("d", "sub")],
            refusal: r#"package entry "d" appears twice"#.to_owned(),
        },
        Attack {
            name: "file written over a symlink",
            items: vec![file("main.py", b"x"), symlink("s", "main.py"), file("s", b"y")],
            refusal: r#"package entry "s" appears twice"#.to_owned(),
        },
        Attack {
            name: "duplicate file",
            items: vec![file("main.py", b"x"), file("./main.py", b"y")],
            refusal: r#"package entry "main.py" appears twice"#.to_owned(),
        },
        Attack {
            name: "file under a file",
            items: vec![file("f", b"x"), file("f/g", b"y")],
            refusal: r#"package entry "f/g" lies under "f", which is a file"#.to_owned(),
        },
        Attack {
            name: "deep nesting",
            items: vec![file(&deep_name, b"x")],
            refusal: format!("is nested more than {MAX_DEPTH} levels deep"),
        },
        Attack {
            name: "long path",
            items: vec![file(&long_name, b"x")],
            refusal: format!("has a path longer than {MAX_PATH_BYTES} bytes"),
        },
        Attack {
            name: "long name",
            items: vec![file(&"n".repeat(300), b"x")],
            refusal: "or a name longer than 255 bytes".to_owned(),
        },
        Attack {
            name: "many implied directories",
            items: (0..implied_files)
                .map(|i| file(&format!("t{i}/{}", vec!["d"; MAX_DEPTH - 1].join("/")), b""))
                .collect(),
            refusal: too_many,
        },
        Attack {
            name: "link climbing back after a link",
            items: vec![symlink("a/b/l", "../.."), symlink("m", "a/b/l/../..")],
            refusal: r#"package entry "m" is a link whose target is not a plain relative path"#
                .to_owned(),
        },
        Attack {
            name: "link climbing out",
            items: vec![symlink("a/l", "../../x")],
            refusal: r#"package entry "a/l" is a link pointing outside the package"#.to_owned(),
        },
        Attack {
            name: "absolute link",
            items: vec![symlink("l", "/etc/shadow")],
            refusal: r#"package entry "l" is a link pointing outside the package"#.to_owned(),
        },
        Attack {
            name: "long escaping link target",
            items: vec![symlink(
                "l",
                &format!("{}{}etc", "a/".repeat(60), "../".repeat(61)),
            )],
            refusal: r#"package entry "l" is a link whose target is not a plain relative path"#
                .to_owned(),
        },
        Attack {
            name: "parent directory in a name",
            items: vec![file("a/../../evil.py", b"x")],
            refusal: r#"package entry "a/../../evil.py" has an absolute path or a '..' component"#
                .to_owned(),
        },
        Attack {
            name: "absolute name",
            items: vec![file("/etc/cron.d/evil", b"x")],
            refusal: r#"package entry "/etc/cron.d/evil" has an absolute path"#.to_owned(),
        },
        Attack {
            name: "name that is not UTF-8",
            items: vec![Item::File {
                name: b"bad\xff.py".to_vec(),
                data: b"x".to_vec(),
                mode: 0o644,
            }],
            refusal: "has a name that is not UTF-8".to_owned(),
        },
        Attack {
            name: "fifo",
            items: vec![Item::Fifo {
                name: b"pipe".to_vec(),
            }],
            refusal: r#"package entry "pipe" is a device, fifo or other special file"#.to_owned(),
        },
        Attack {
            name: "character device",
            items: vec![Item::CharDevice {
                name: b"null".to_vec(),
            }],
            refusal: r#"package entry "null" is a device, fifo or other special file"#.to_owned(),
        },
        Attack {
            name: "pax path escaping",
            items: vec![
                Item::PaxPath {
                    path: b"../../evil.py".to_vec(),
                },
                file("harmless.py", b"x"),
            ],
            refusal: r#"package entry "../../evil.py" has an absolute path"#.to_owned(),
        },
        Attack {
            name: "long-name record bomb",
            items: vec![Item::LongNameRecord { size: 4 << 20 }, file("x", b"x")],
            refusal: too_large.clone(),
        },
        Attack {
            name: "skipped data bomb",
            items: vec![Item::SkippedData {
                name: b"l".to_vec(),
                size: 4 << 20,
            }],
            refusal: too_large,
        },
    ];
    let mut samples = Vec::new();
    for attack in attacks {
        samples.push(Sample {
            label: format!("tar.gz: {}", attack.name),
            bytes: tar_gz(&attack.items),
            refusal: attack.refusal.clone(),
        });
        if attack.has_duplicate_names() {
            continue;
        }
        if let Some(bytes) = zip(&attack.items) {
            samples.push(Sample {
                label: format!("zip: {}", attack.name),
                bytes,
                refusal: attack.refusal,
            });
        }
    }
    samples
}

/// Packages that are accepted, and how they must come out: setuid, setgid and sticky bits and
/// odd modes normalised, links that stay inside kept. (label, bytes)
pub fn accepted_samples() -> Vec<(String, Vec<u8>)> {
    let items = vec![
        file_mode("bin/tool", b"#!/bin/sh\necho hi\n", 0o4755),
        file_mode("bin/group", b"x", 0o2711),
        file_mode("data/secret", b"x", 0o600),
        file_mode("data/open", b"x", 0o666),
        Item::Dir {
            name: b"shared".to_vec(),
            mode: 0o1777,
        },
        file("shared/main.py", b"def handler(e, c):\n    return 1\n"),
        symlink("shared/alias.py", "main.py"),
        symlink("shared/up", "../data"),
        hardlink("copy", "bin/tool"),
    ];
    let mut out = vec![("tar.gz: odd modes".to_owned(), tar_gz(&items))];
    let without_hardlink: Vec<Item> = items
        .into_iter()
        .filter(|i| !matches!(i, Item::HardLink { .. }))
        .collect();
    if let Some(bytes) = zip(&without_hardlink) {
        out.push(("zip: odd modes".to_owned(), bytes));
    }
    out
}
