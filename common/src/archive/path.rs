//! Entry names and link targets: what a package may name, as plain data.

use super::{ArchiveError, MAX_DEPTH, MAX_LINK_BYTES, MAX_NAME_BYTES, MAX_PATH_BYTES};

/// How much of a hostile name an error message repeats.
const SHOWN_BYTES: usize = 200;

/// A name as error messages show it: lossy UTF-8, cut after `SHOWN_BYTES` bytes.
pub(super) fn shown(name: &[u8]) -> String {
    let text = String::from_utf8_lossy(name);
    if text.len() <= SHOWN_BYTES {
        return text.into_owned();
    }
    let mut end = SHOWN_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// A validated, normalised entry path relative to the package root: one or more components
/// joined by `/`, each a UTF-8 name without NUL or `/`, never `.` or `..`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct EntryPath(String);

impl EntryPath {
    /// Parses an archive name. `Ok(None)` is the package root itself (`./`, `.`, empty), which
    /// only a directory entry may name.
    pub(super) fn parse(name: &[u8]) -> Result<Option<Self>, ArchiveError> {
        let text = std::str::from_utf8(name).map_err(|_| ArchiveError::BadName(shown(name)))?;
        if text.contains('\0') {
            return Err(ArchiveError::BadName(shown(name)));
        }
        if text.starts_with('/') {
            return Err(ArchiveError::UnsafePath(shown(name)));
        }
        let mut parts: Vec<&str> = Vec::new();
        for part in text.split('/') {
            match part {
                "" | "." => {}
                ".." => return Err(ArchiveError::UnsafePath(shown(name))),
                part => parts.push(part),
            }
        }
        if parts.is_empty() {
            return Ok(None);
        }
        if parts.len() > MAX_DEPTH {
            return Err(ArchiveError::TooDeep(shown(name)));
        }
        let joined = parts.join("/");
        if joined.len() > MAX_PATH_BYTES || parts.iter().any(|p| p.len() > MAX_NAME_BYTES) {
            return Err(ArchiveError::PathTooLong(shown(name)));
        }
        Ok(Some(Self(joined)))
    }

    pub(super) fn as_str(&self) -> &str {
        &self.0
    }

    /// Number of components.
    pub(super) fn depth(&self) -> usize {
        self.0.split('/').count()
    }

    /// The parent path; `None` for an entry directly under the root.
    pub(super) fn parent(&self) -> Option<&str> {
        self.0.rsplit_once('/').map(|(parent, _)| parent)
    }

    /// The last component.
    pub(super) fn file_name(&self) -> &str {
        self.0.rsplit_once('/').map_or(&self.0, |(_, name)| name)
    }

    /// Every proper ancestor, shortest first (`a`, `a/b` for `a/b/c`).
    pub(super) fn ancestors(&self) -> impl Iterator<Item = EntryPath> + '_ {
        self.0
            .match_indices('/')
            .map(move |(index, _)| Self(self.0[..index].to_owned()))
    }
}

/// Checks the target of a symbolic link at `entry`. Accepted targets are relative paths made of
/// leading `..` components (no more than the link's parent is deep) followed by names: such a
/// link resolves inside the package root whatever the other links of the package are, because
/// every `..` is applied to a real directory of the package and everything after only descends.
pub(super) fn check_link_target(entry: &EntryPath, target: &[u8]) -> Result<(), ArchiveError> {
    let name = || shown(entry.as_str().as_bytes());
    let text = match std::str::from_utf8(target) {
        Ok(text) if !text.is_empty() && !text.contains('\0') && text.len() <= MAX_LINK_BYTES => {
            text
        }
        _ => return Err(ArchiveError::BadLinkTarget(name())),
    };
    if text.starts_with('/') {
        return Err(ArchiveError::EscapingLink(name()));
    }
    let mut ups = 0;
    let mut descended = false;
    for part in text.split('/') {
        match part {
            "" | "." => {}
            ".." if descended => return Err(ArchiveError::BadLinkTarget(name())),
            ".." => ups += 1,
            _ => descended = true,
        }
    }
    if ups > entry.depth() - 1 {
        return Err(ArchiveError::EscapingLink(name()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(name: &str) -> EntryPath {
        EntryPath::parse(name.as_bytes())
            .expect("valid")
            .expect("not the root")
    }

    #[test]
    fn names_are_normalised_or_refused() {
        assert_eq!(path("./a//b/./c/").as_str(), "a/b/c");
        assert_eq!(path("a/b/c").parent(), Some("a/b"));
        assert_eq!(path("a").parent(), None);
        assert_eq!(path("a/b/c").file_name(), "c");
        assert_eq!(
            path("a/b/c").ancestors().collect::<Vec<_>>(),
            vec![path("a"), path("a/b")]
        );
        for root in ["./", ".", "", ".//."] {
            assert!(EntryPath::parse(root.as_bytes()).expect("ok").is_none());
        }
        for (name, refused) in [
            ("../x", "UnsafePath"),
            ("a/../b", "UnsafePath"),
            ("/etc/passwd", "UnsafePath"),
            ("a\0b", "BadName"),
        ] {
            let error = EntryPath::parse(name.as_bytes()).expect_err(name);
            assert!(
                format!("{error:?}").starts_with(refused),
                "{name}: {error:?}"
            );
        }
        assert!(matches!(
            EntryPath::parse(b"a/\xff"),
            Err(ArchiveError::BadName(_))
        ));
        let deep = vec!["d"; MAX_DEPTH + 1].join("/");
        assert!(matches!(
            EntryPath::parse(deep.as_bytes()),
            Err(ArchiveError::TooDeep(_))
        ));
        assert!(EntryPath::parse(vec!["d"; MAX_DEPTH].join("/").as_bytes()).is_ok());
        let long = vec!["x".repeat(100); 11].join("/");
        assert!(matches!(
            EntryPath::parse(long.as_bytes()),
            Err(ArchiveError::PathTooLong(_))
        ));
        assert!(matches!(
            EntryPath::parse("n".repeat(256).as_bytes()),
            Err(ArchiveError::PathTooLong(_))
        ));
    }

    #[test]
    fn link_targets_only_climb_then_descend() {
        let ok = |entry: &str, target: &str| check_link_target(&path(entry), target.as_bytes());
        assert!(ok("lib/alias.py", "util.py").is_ok());
        assert!(ok("a/link", "../x").is_ok());
        assert!(ok("a/b/link", "../../x/./y/").is_ok());
        assert!(ok("x/up", "..").is_ok());
        assert!(matches!(
            ok("a/link", "../../x"),
            Err(ArchiveError::EscapingLink(_))
        ));
        assert!(matches!(
            ok("link", ".."),
            Err(ArchiveError::EscapingLink(_))
        ));
        assert!(matches!(
            ok("link", "/etc/shadow"),
            Err(ArchiveError::EscapingLink(_))
        ));
        // Lexically inside, but `l` may be a link to a shallower place: refused.
        assert!(matches!(
            ok("m", "a/b/l/../.."),
            Err(ArchiveError::BadLinkTarget(_))
        ));
        assert!(matches!(ok("m", ""), Err(ArchiveError::BadLinkTarget(_))));
        assert!(matches!(
            ok("m", &"x".repeat(MAX_LINK_BYTES + 1)),
            Err(ArchiveError::BadLinkTarget(_))
        ));
    }

    #[test]
    fn shown_names_are_cut() {
        assert_eq!(shown(b"abc"), "abc");
        let long = "é".repeat(300);
        let cut = shown(long.as_bytes());
        assert!(
            cut.len() <= SHOWN_BYTES + 3 && cut.ends_with("..."),
            "{cut}"
        );
    }
}
