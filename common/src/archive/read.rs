//! Reading zip and tar.gz into format-independent entries for the model.

use std::io::{self, Read};

use super::tree::{Budget, Kind, Meter, Metered, Sink, Tree};
use super::{ArchiveError, ArchiveFormat, Limits, Manifest, MAX_LINK_BYTES};

/// Replays the package through the model into `sink`.
pub(super) fn walk(
    bytes: &[u8],
    limits: Limits,
    sink: &mut dyn Sink,
) -> Result<Manifest, ArchiveError> {
    let format = ArchiveFormat::detect(bytes).ok_or(ArchiveError::UnknownFormat)?;
    let tree = match format {
        ArchiveFormat::Zip => walk_zip(bytes, limits, sink)?,
        ArchiveFormat::TarGz => walk_tar_gz(bytes, limits, sink)?,
    };
    Ok(Manifest {
        format,
        entries: tree.budget.entries,
        unpacked_bytes: tree.budget.bytes,
    })
}

fn corrupt(error: impl std::fmt::Display) -> ArchiveError {
    ArchiveError::Corrupt(error.to_string())
}

fn walk_zip(bytes: &[u8], limits: Limits, sink: &mut dyn Sink) -> Result<Tree, ArchiveError> {
    let mut archive = zip::ZipArchive::new(io::Cursor::new(bytes)).map_err(corrupt)?;
    if archive.len() > limits.max_entries {
        return Err(ArchiveError::TooManyEntries(limits.max_entries));
    }
    let mut tree = Tree::new(Budget::new(limits, None));
    for index in 0..archive.len() {
        let mut file = archive.by_index(index).map_err(corrupt)?;
        let name = file.name_raw().to_vec();
        let mode = file.unix_mode().unwrap_or(0);
        let kind = match mode & 0o170000 {
            0o120000 => {
                let mut target = Vec::new();
                file.by_ref()
                    .take(MAX_LINK_BYTES as u64 + 1)
                    .read_to_end(&mut target)
                    .map_err(corrupt)?;
                Kind::Symlink(target)
            }
            0o040000 => Kind::Dir,
            0o100000 | 0 if name.ends_with(b"/") => Kind::Dir,
            0o100000 | 0 => Kind::File {
                executable: mode & 0o111 != 0,
            },
            _ => Kind::Special,
        };
        tree.place(&name, kind, &mut file, sink)?;
    }
    Ok(tree)
}

fn walk_tar_gz(bytes: &[u8], limits: Limits, sink: &mut dyn Sink) -> Result<Tree, ArchiveError> {
    let meter = Meter::new();
    let stream = Metered {
        inner: flate2::read::GzDecoder::new(bytes),
        meter: std::rc::Rc::clone(&meter),
    };
    let mut archive = tar::Archive::new(stream);
    let mut tree = Tree::new(Budget::new(limits, Some(meter)));
    let entries = archive.entries().map_err(|e| tree.budget.read_error(e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| tree.budget.read_error(e))?;
        // Long names (GNU `L`/`K` records, pax `path`/`linkpath`) are applied by the tar crate.
        let name = entry.path_bytes().into_owned();
        let link = || {
            entry
                .link_name_bytes()
                .map(|b| b.into_owned())
                .unwrap_or_default()
        };
        let header = entry.header();
        let kind = match header.entry_type() {
            tar::EntryType::Directory => Kind::Dir,
            tar::EntryType::Regular | tar::EntryType::Continuous => Kind::File {
                executable: header.mode().unwrap_or(0) & 0o111 != 0,
            },
            tar::EntryType::Symlink => Kind::Symlink(link()),
            tar::EntryType::Link => Kind::HardLink(link()),
            // Global pax records are metadata for the whole archive: counted, nothing created.
            tar::EntryType::XGlobalHeader => {
                tree.budget.count_entry()?;
                continue;
            }
            _ => Kind::Special,
        };
        tree.place(&name, kind, &mut entry, sink)?;
    }
    Ok(tree)
}
