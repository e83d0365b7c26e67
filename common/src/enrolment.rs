//! Enrolled agents: the control plane's registry of each agent's public key and URL, one file
//! per agent in `[internal_auth] agent_keys_dir`, named `<agent_id>.pem`:
//!
//! ```text
//! # comments and blank lines are ignored
//! url = https://10.0.0.5:8902
//! -----BEGIN PUBLIC KEY-----
//! MCowBQYDK2VwAyEA...
//! -----END PUBLIC KEY-----
//! ```
//!
//! The deployment writes the file when it provisions the agent (the agent's private key stays
//! on its node). The scheduler accepts a heartbeat only when it is signed with the enrolled
//! key of the agent it names and reports the enrolled URL; the API accepts a code download only
//! when it is signed with the enrolled key of the agent the ticket names. Re-enrolment
//! (moving an agent, rotating its key) is rewriting its file; removing the file de-enrols the
//! agent. Files are read again when they change, so neither needs a restart.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::ticket::{check_agent_id, AgentVerifier, TicketError};

/// Why an agent is not (validly) enrolled.
#[derive(Debug, thiserror::Error)]
pub enum EnrolmentError {
    #[error("agent {0:?} is not enrolled")]
    NotEnrolled(String),
    #[error(transparent)]
    Id(#[from] TicketError),
    #[error("enrolment {path}: {message}")]
    Invalid { path: String, message: String },
    #[error("cannot read enrolment {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
}

/// One enrolled agent.
pub struct Enrolment {
    pub agent_id: String,
    /// The URL the agent must report (and is called at), without a trailing '/'.
    pub url: String,
    /// Checks the tokens the agent signs.
    pub key: AgentVerifier,
}

/// A URL as enrolments and heartbeats compare them: trimmed, without a trailing '/'.
pub fn normalize_url(url: &str) -> &str {
    url.trim().trim_end_matches('/')
}

/// Parses the text of an enrolment file for `agent_id`; `origin` names it in errors.
pub fn parse(agent_id: &str, text: &str, origin: &str) -> Result<Enrolment, EnrolmentError> {
    let invalid = |message: String| EnrolmentError::Invalid {
        path: origin.to_owned(),
        message,
    };
    let begin = text
        .find("-----BEGIN PUBLIC KEY-----")
        .ok_or_else(|| invalid("no -----BEGIN PUBLIC KEY----- block".into()))?;
    let mut url = None;
    for line in text[..begin].lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once('=').map(|(k, v)| (k.trim(), v.trim())) {
            Some(("url", value)) if url.is_none() => url = Some(normalize_url(value).to_owned()),
            Some(("url", _)) => return Err(invalid("url is given twice".into())),
            _ => return Err(invalid(format!("unexpected line {line:?}"))),
        }
    }
    let url = url
        .filter(|u| u.starts_with("http://") || u.starts_with("https://"))
        .ok_or_else(|| invalid("needs a line url = http(s)://host:port".into()))?;
    let key = AgentVerifier::from_pem(&text.as_bytes()[begin..])
        .map_err(|e| invalid(format!("not an Ed25519 public key: {e}")))?;
    Ok(Enrolment {
        agent_id: agent_id.to_owned(),
        url,
        key,
    })
}

/// The text of an enrolment file (what deployment tools write).
pub fn render(url: &str, public_key_pem: &str) -> String {
    format!(
        "# fresco agent enrolment\nurl = {}\n{}",
        normalize_url(url),
        public_key_pem.trim_start()
    )
}

/// What identifies a version of a file: re-read when it changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    ino: u64,
}

fn stamp(meta: &std::fs::Metadata) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    Stamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        ino: meta.ino(),
    }
}

/// The enrolled agents of a directory, each file read when first asked for and again when it
/// changes (one `stat` per lookup). Holds no secret: public keys and URLs only.
pub struct AgentRegistry {
    dir: PathBuf,
    cache: Mutex<HashMap<String, (Stamp, Arc<Enrolment>)>>,
}

impl AgentRegistry {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where `agent_id`'s enrolment lives.
    pub fn path_of(&self, agent_id: &str) -> PathBuf {
        self.dir.join(format!("{agent_id}.pem"))
    }

    /// The enrolment of `agent_id`, as its file says now.
    pub fn get(&self, agent_id: &str) -> Result<Arc<Enrolment>, EnrolmentError> {
        check_agent_id(agent_id)?;
        let path = self.path_of(agent_id);
        let shown = || path.display().to_string();
        let meta = match std::fs::metadata(&path) {
            Ok(meta) if meta.is_file() => meta,
            Ok(_) => return Err(EnrolmentError::NotEnrolled(agent_id.to_owned())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.forget(agent_id);
                return Err(EnrolmentError::NotEnrolled(agent_id.to_owned()));
            }
            Err(source) => {
                return Err(EnrolmentError::Read {
                    path: shown(),
                    source,
                })
            }
        };
        let current = stamp(&meta);
        if let Some((seen, enrolment)) = self.lock().get(agent_id) {
            if *seen == current {
                return Ok(Arc::clone(enrolment));
            }
        }
        let text = std::fs::read_to_string(&path).map_err(|source| EnrolmentError::Read {
            path: shown(),
            source,
        })?;
        let enrolment = Arc::new(parse(agent_id, &text, &shown())?);
        self.lock()
            .insert(agent_id.to_owned(), (current, Arc::clone(&enrolment)));
        Ok(enrolment)
    }

    fn forget(&self, agent_id: &str) {
        self.lock().remove(agent_id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Stamp, Arc<Enrolment>)>> {
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ticket::test_keys::*;
    use crate::ticket::AgentSigner;

    fn temp_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("fresco-enrol-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("dir");
        dir
    }

    #[test]
    fn enrolments_parse_and_refuse_what_is_wrong() {
        let good = render("http://127.0.0.1:8902/", AGENT_PUBLIC);
        let enrolment = parse("a", &good, "t").expect("valid");
        assert_eq!(enrolment.url, "http://127.0.0.1:8902");
        for (text, fragment) in [
            (AGENT_PUBLIC.to_owned(), "needs a line url"),
            (
                format!("url = ftp://x\n{AGENT_PUBLIC}"),
                "needs a line url",
            ),
            (format!("url = http://a\nurl = http://b\n{AGENT_PUBLIC}"), "twice"),
            (format!("colour = blue\n{AGENT_PUBLIC}"), "unexpected line"),
            ("url = http://a\n".to_owned(), "no -----BEGIN PUBLIC KEY"),
            (
                "url = http://a\n-----BEGIN PUBLIC KEY-----\nnot base64!\n-----END PUBLIC KEY-----\n"
                    .to_owned(),
                "not an Ed25519 public key",
            ),
        ] {
            let err = parse("a", &text, "t").err().expect("refused").to_string();
            assert!(err.contains(fragment), "{text:?}: {err}");
        }
    }

    #[test]
    fn the_registry_follows_its_files() {
        let dir = temp_dir();
        let registry = AgentRegistry::new(&dir);
        assert!(matches!(
            registry.get("node-1"),
            Err(EnrolmentError::NotEnrolled(_))
        ));
        assert!(matches!(
            registry.get("fresco-api"),
            Err(EnrolmentError::Id(TicketError::ReservedName(_)))
        ));
        assert!(registry.get("../etc/passwd").is_err());
        let path = registry.path_of("node-1");
        std::fs::write(&path, render("http://127.0.0.1:1", AGENT_PUBLIC)).expect("write");
        let first = registry.get("node-1").expect("enrolled");
        assert_eq!(first.url, "http://127.0.0.1:1");
        let token = AgentSigner::from_pem(AGENT_PRIVATE.as_bytes(), "node-1")
            .expect("signer")
            .heartbeat_token(b"x", 10)
            .expect("sign");
        assert!(first.key.verify_heartbeat("node-1", &token, b"x").is_ok());
        // Re-enrolment: another key and URL, seen at the next lookup.
        std::fs::write(&path, render("http://127.0.0.1:22", OTHER_AGENT_PUBLIC)).expect("write");
        let second = registry.get("node-1").expect("enrolled");
        assert_eq!(second.url, "http://127.0.0.1:22");
        assert!(second.key.verify_heartbeat("node-1", &token, b"x").is_err());
        std::fs::remove_file(&path).expect("remove");
        assert!(matches!(
            registry.get("node-1"),
            Err(EnrolmentError::NotEnrolled(_))
        ));
        std::fs::remove_dir_all(&dir).ok();
    }
}
