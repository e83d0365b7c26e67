//! Code packages: fetched from the API once per node, verified by sha256, unpacked safely,
//! cached by (project, sha256). Concurrent first uses of one package share one download.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fresco_common::archive::{self, ArchiveError, ArchiveFormat, Limits};
use fresco_common::ticket::AgentSigner;
use fresco_common::tls::InternalTls;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Header naming the package format on the API's code endpoint.
pub const FORMAT_HEADER: &str = "x-fresco-code-format";
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(60);
/// Header carrying the execution ticket that names the package (the agent's own code-download
/// token goes in `Authorization`).
pub const TICKET_HEADER: &str = "x-fresco-ticket";
/// Seconds a code-download token lives.
const DOWNLOAD_TOKEN_TTL_S: i64 = 60;

#[derive(Debug, thiserror::Error)]
pub enum CodeError {
    #[error("invalid code reference: {0}")]
    BadReference(String),
    #[error("code download failed: {0}")]
    Download(String),
    #[error("code package is larger than {0} bytes")]
    TooLarge(usize),
    #[error("code package checksum mismatch: expected {expected}, got {actual}")]
    Checksum { expected: String, actual: String },
    #[error("code package format {header:?} does not match its content")]
    Format { header: String },
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error("code cache: {0}")]
    Io(#[from] std::io::Error),
}

pub struct CodeCache {
    root: PathBuf,
    api_url: String,
    client: reqwest::Client,
    /// Signs code-download tokens; without it downloads are refused here.
    signer: Option<Arc<AgentSigner>>,
    max_bytes: usize,
    limits: Limits,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// Project ids and hashes become path components: only plain names are accepted.
fn check_reference(project: &str, sha256: &str) -> Result<(), CodeError> {
    let plain = |s: &str| {
        !s.is_empty()
            && s.len() <= 64
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    if !plain(project) {
        return Err(CodeError::BadReference(format!("project id {project:?}")));
    }
    if sha256.len() != 64 || !sha256.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')) {
        return Err(CodeError::BadReference(format!("sha256 {sha256:?}")));
    }
    Ok(())
}

impl CodeCache {
    pub fn new(
        root: PathBuf,
        api_url: &str,
        max_bytes: usize,
        limits: Limits,
        signer: Option<Arc<AgentSigner>>,
        tls: &InternalTls,
    ) -> Result<Self, CodeError> {
        let client = tls
            .client_builder()
            .timeout(DOWNLOAD_TIMEOUT)
            .build()
            .map_err(|e| CodeError::Download(e.to_string()))?;
        Ok(Self {
            root,
            api_url: api_url.trim_end_matches('/').to_owned(),
            client,
            signer,
            max_bytes,
            limits,
            locks: Mutex::new(HashMap::new()),
        })
    }

    /// The directory of `sha256` unpacked, downloading it if this node lacks it: with the
    /// execution ticket that names it (`ticket`, whose id is `ticket_id`) and a code-download
    /// token this agent signs for that package and ticket.
    pub async fn get(
        &self,
        project: &str,
        sha256: &str,
        ticket: &str,
        ticket_id: Uuid,
    ) -> Result<PathBuf, CodeError> {
        check_reference(project, sha256)?;
        let dir = self.root.join(project).join(sha256);
        if dir.is_dir() {
            return Ok(dir);
        }
        let key = format!("{project}/{sha256}");
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
            Arc::clone(locks.entry(key.clone()).or_default())
        };
        let result = {
            let _guard = lock.lock().await;
            if dir.is_dir() {
                Ok(dir.clone())
            } else {
                self.fetch(project, sha256, ticket, ticket_id, &dir)
                    .await
                    .map(|()| dir.clone())
            }
        };
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        if locks.get(&key).is_some_and(|l| Arc::strong_count(l) <= 2) {
            locks.remove(&key);
        }
        result
    }

    /// Removes unpacking directories an interrupted run left behind (`<project>/.tmp-*`).
    pub fn remove_partial_downloads(&self) {
        let Ok(projects) = std::fs::read_dir(&self.root) else {
            return;
        };
        for project in projects.flatten() {
            let Ok(entries) = std::fs::read_dir(project.path()) else {
                continue;
            };
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().starts_with(".tmp-") {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
    }

    async fn fetch(
        &self,
        project: &str,
        sha256: &str,
        ticket: &str,
        ticket_id: Uuid,
        dir: &Path,
    ) -> Result<(), CodeError> {
        let url = format!("{}/internal/v1/code/{sha256}", self.api_url);
        let signer = self.signer.as_ref().ok_or_else(|| {
            CodeError::Download("no agent key ([internal_auth] agent_key_file)".into())
        })?;
        let token = signer
            .code_download_token(sha256, ticket_id, DOWNLOAD_TOKEN_TTL_S)
            .map_err(|e| CodeError::Download(format!("cannot sign the download: {e}")))?;
        let started = std::time::Instant::now();
        let mut response = self
            .client
            .get(&url)
            .bearer_auth(token)
            .header(TICKET_HEADER, ticket)
            .send()
            .await
            .map_err(|e| CodeError::Download(e.to_string()))?;
        if !response.status().is_success() {
            return Err(CodeError::Download(format!(
                "{url} answered {}",
                response.status()
            )));
        }
        let header = response
            .headers()
            .get(FORMAT_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if response
            .content_length()
            .is_some_and(|len| len > self.max_bytes as u64)
        {
            return Err(CodeError::TooLarge(self.max_bytes));
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| CodeError::Download(e.to_string()))?
        {
            if bytes.len() + chunk.len() > self.max_bytes {
                return Err(CodeError::TooLarge(self.max_bytes));
            }
            bytes.extend_from_slice(&chunk);
        }
        let actual = hex::encode(Sha256::digest(&bytes));
        if actual != sha256 {
            return Err(CodeError::Checksum {
                expected: sha256.to_owned(),
                actual,
            });
        }
        if let Some(header) = header {
            if ArchiveFormat::parse(&header) != ArchiveFormat::detect(&bytes) {
                return Err(CodeError::Format { header });
            }
        }
        let project_dir = self.root.join(project);
        std::fs::create_dir_all(&project_dir)?;
        let limits = self.limits;
        let staging = project_dir.join(format!(".tmp-{sha256}-{}", uuid::Uuid::new_v4().simple()));
        let target = dir.to_path_buf();
        let staging_for_task = staging.clone();
        let unpacked = tokio::task::spawn_blocking(move || -> Result<(), CodeError> {
            std::fs::create_dir(&staging_for_task)?;
            archive::unpack(&bytes, limits, &staging_for_task)?;
            make_readable(&staging_for_task)?;
            std::fs::rename(&staging_for_task, &target)?;
            Ok(())
        })
        .await
        .map_err(|e| CodeError::Io(std::io::Error::other(e.to_string())))?;
        if unpacked.is_err() {
            let _ = std::fs::remove_dir_all(&staging);
        }
        unpacked?;
        log::info!(
            "code {project}/{sha256} fetched and unpacked in {:.0} ms",
            started.elapsed().as_secs_f64() * 1000.0
        );
        Ok(())
    }
}

/// Directories 0755 so the (non-root) container user can read the package.
fn make_readable(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            make_readable(&entry.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn tar_gz() -> Vec<u8> {
        let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::fast(),
        ));
        let body = b"def handler(e, c):\n    return 1\n";
        let mut header = tar::Header::new_gnu();
        header.set_size(body.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder
            .append_data(&mut header, "main.py", &body[..])
            .expect("append");
        builder.into_inner().expect("tar").finish().expect("gzip")
    }

    /// Serves `bytes` to every request after a short pause; counts requests.
    async fn serve(bytes: Vec<u8>) -> (String, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let count = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&count);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                let bytes = bytes.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = stream.read(&mut buf).await;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nX-Fresco-Code-Format: tar.gz\r\nConnection: close\r\n\r\n",
                        bytes.len()
                    );
                    let _ = stream.write_all(head.as_bytes()).await;
                    let _ = stream.write_all(&bytes).await;
                });
            }
        });
        (url, count)
    }

    fn cache(root: &Path, url: &str) -> CodeCache {
        let limits = Limits {
            max_entries: 10,
            max_unpacked_bytes: 1 << 20,
        };
        let signer = AgentSigner::from_pem(
            fresco_common::ticket::test_keys::AGENT_PRIVATE.as_bytes(),
            "agent-1",
        )
        .expect("signer");
        CodeCache::new(
            root.to_path_buf(),
            url,
            1 << 20,
            limits,
            Some(Arc::new(signer)),
            &InternalTls::disabled(),
        )
        .expect("cache")
    }

    #[tokio::test]
    async fn concurrent_first_uses_download_once_and_checksums_are_verified() {
        let root = std::env::temp_dir().join(format!("fc-{}", uuid::Uuid::new_v4().simple()));
        let package = tar_gz();
        let sha = hex::encode(Sha256::digest(&package));
        let (url, count) = serve(package).await;
        let code = cache(&root, &url);
        let (a, b, c) = tokio::join!(
            code.get("p1", &sha, "t", Uuid::nil()),
            code.get("p1", &sha, "t", Uuid::nil()),
            code.get("p1", &sha, "t", Uuid::nil())
        );
        let dir = a.expect("a");
        assert_eq!(b.expect("b"), dir);
        assert_eq!(c.expect("c"), dir);
        assert_eq!(count.load(Ordering::SeqCst), 1, "one download");
        assert!(dir.join("main.py").is_file());

        let partial = root.join("p1").join(".tmp-interrupted");
        std::fs::create_dir_all(&partial).expect("partial dir");
        code.remove_partial_downloads();
        assert!(!partial.exists(), "partial unpacking removed");
        assert!(dir.is_dir(), "complete packages stay");

        let wrong = "0".repeat(64);
        let err = code
            .get("p1", &wrong, "t", Uuid::nil())
            .await
            .expect_err("mismatch");
        assert!(matches!(err, CodeError::Checksum { .. }), "{err}");
        assert!(!root.join("p1").join(&wrong).exists(), "nothing cached");
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn references_must_be_plain_names() {
        let sha = "a".repeat(64);
        assert!(check_reference("p1", &sha).is_ok());
        assert!(check_reference("../etc", &sha).is_err());
        assert!(check_reference("", &sha).is_err());
        assert!(check_reference("p1", "abc").is_err());
        assert!(
            check_reference("p1", &"A".repeat(64)).is_err(),
            "lowercase hex only"
        );
        assert!(check_reference("p1", &format!("../{}", "a".repeat(61))).is_err());
    }
}
