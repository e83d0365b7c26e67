//! Code packages: fetched from the API once per node, verified by sha256, unpacked safely,
//! cached by (project, sha256). Concurrent first uses of one package share one download.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fresco_common::archive::{self, ArchiveError, ArchiveFormat, Limits};
use sha2::{Digest, Sha256};

/// Header naming the package format on the API's code endpoint.
pub const FORMAT_HEADER: &str = "x-fresco-code-format";
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(60);

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
    ) -> Result<Self, CodeError> {
        let client = reqwest::Client::builder()
            .timeout(DOWNLOAD_TIMEOUT)
            .build()
            .map_err(|e| CodeError::Download(e.to_string()))?;
        Ok(Self {
            root,
            api_url: api_url.trim_end_matches('/').to_owned(),
            client,
            max_bytes,
            limits,
            locks: Mutex::new(HashMap::new()),
        })
    }

    /// The directory of `sha256` unpacked, downloading it with `ticket` if this node lacks it.
    pub async fn get(
        &self,
        project: &str,
        sha256: &str,
        ticket: &str,
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
                self.fetch(project, sha256, ticket, &dir)
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

    async fn fetch(
        &self,
        project: &str,
        sha256: &str,
        ticket: &str,
        dir: &Path,
    ) -> Result<(), CodeError> {
        let url = format!("{}/internal/v1/code/{sha256}", self.api_url);
        let started = std::time::Instant::now();
        let mut response = self
            .client
            .get(&url)
            .bearer_auth(ticket)
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
