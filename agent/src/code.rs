//! Code packages: fetched from the API once per node, verified by sha256, unpacked safely and
//! never as root, cached by (project, sha256) within a byte bound.
//!
//! - Unpacking uses `fresco_common::archive::unpack` (the same rules as the API's check, each
//!   step enforced by the kernel with `openat2`). An agent running as root does it in a child
//!   process (this binary, run with [`UNPACK_HELPER_ARG`]) that opens the staging directory,
//!   drops to `[agent] unpack_uid`/`unpack_gid` for good (no supplementary groups, no new
//!   privileges, bounded file size, CPU and open files) and only then reads the package. The
//!   files end up owned by that uid, directories 0755 and files 0644/0755: readable, not
//!   writable, by the containers' user, and bind-mounted read-only anyway.
//! - The cache holds at most `[agent] code_cache_max_bytes` of disk (counted in blocks, like
//!   `du`). [`CodeCache::get`] returns a [`CodePin`]; a container holds it for its whole life,
//!   and a pinned package is never evicted. Least recently used unpinned packages are removed
//!   to make room; when pinned packages leave no room, the new package is refused.
//!   Concurrent first uses of one package share one download.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fresco_common::archive::{self, ArchiveError, ArchiveFormat, Limits, Manifest};
use fresco_common::ticket::AgentSigner;
use fresco_common::tls::InternalTls;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::config::Settings;

/// Header naming the package format on the API's code endpoint.
pub const FORMAT_HEADER: &str = "x-fresco-code-format";
/// First argument that makes the agent binary run as the unpacking helper.
pub const UNPACK_HELPER_ARG: &str = "--unpack-code-package";
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(60);
/// Header carrying the execution ticket that names the package (the agent's own code-download
/// token goes in `Authorization`).
pub const TICKET_HEADER: &str = "x-fresco-ticket";
/// Seconds a code-download token lives.
const DOWNLOAD_TOKEN_TTL_S: i64 = 60;
/// Longest an unpacking helper may run (it is killed after).
const UNPACK_TIMEOUT: Duration = Duration::from_secs(120);
/// CPU seconds an unpacking helper may use.
const UNPACK_CPU_SECONDS: u64 = 60;
/// Exit status of a helper that refused the package (its message on stdout).
const HELPER_REFUSED: i32 = 2;

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
    /// The unpacking helper refused the package (an `ArchiveError`'s message).
    #[error("{0}")]
    Refused(String),
    #[error("unpacking helper failed: {0}")]
    Helper(String),
    #[error("code cache is full: the package needs {needed} bytes and running or warm containers hold {pinned} of the {limit} bytes of [agent] code_cache_max_bytes")]
    CacheFull {
        needed: u64,
        pinned: u64,
        limit: u64,
    },
    #[error("code cache: {0}")]
    Io(#[from] io::Error),
}

/// How packages are unpacked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unpacker {
    /// In a child process, `program UNPACK_HELPER_ARG ...`, that drops to `uid:gid` before
    /// reading the package: what an agent running as root does.
    Child {
        program: PathBuf,
        uid: u32,
        gid: u32,
    },
    /// In this process: only for an agent that is not root itself (development, tests).
    InProcess,
}

impl Unpacker {
    /// A child running this very binary as `[agent] unpack_uid:unpack_gid` when this process
    /// is root (it must never unpack as root); in process otherwise.
    pub fn for_settings(settings: &Settings) -> Self {
        if rustix::process::geteuid().is_root() {
            Self::Child {
                program: PathBuf::from("/proc/self/exe"),
                uid: settings.unpack_uid,
                gid: settings.unpack_gid,
            }
        } else {
            Self::InProcess
        }
    }
}

/// What a `CodeCache` is built from.
#[derive(Debug, Clone)]
pub struct CodeOptions {
    pub root: PathBuf,
    pub api_url: String,
    pub max_download_bytes: usize,
    pub limits: Limits,
    pub cache_max_bytes: u64,
    pub unpacker: Unpacker,
}

impl CodeOptions {
    pub fn from_settings(settings: &Settings) -> Self {
        Self {
            root: settings.code_dir(),
            api_url: settings.api_url.clone(),
            max_download_bytes: settings.code_max_bytes,
            limits: settings.code_limits,
            cache_max_bytes: settings.code_cache_max_bytes,
            unpacker: Unpacker::for_settings(settings),
        }
    }
}

/// One cached package.
struct Cached {
    dir: PathBuf,
    bytes: u64,
    last_used: u64,
    pins: usize,
}

/// The cache's bookkeeping: packages by `project/sha256`, their disk usage, a use clock.
#[derive(Default)]
struct Index {
    packages: HashMap<String, Cached>,
    bytes: u64,
    clock: u64,
}

impl Index {
    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    fn pinned_bytes(&self) -> u64 {
        self.packages
            .values()
            .filter(|p| p.pins > 0)
            .map(|p| p.bytes)
            .sum()
    }

    /// Removes least recently used unpinned packages from the index until `needed` more bytes
    /// fit in `limit` (or nothing unpinned is left); returns their directories.
    fn make_room(&mut self, needed: u64, limit: u64) -> Vec<PathBuf> {
        let mut victims = Vec::new();
        while self.bytes.saturating_add(needed) > limit {
            let Some(key) = self
                .packages
                .iter()
                .filter(|(_, p)| p.pins == 0)
                .min_by_key(|(_, p)| p.last_used)
                .map(|(key, _)| key.clone())
            else {
                break;
            };
            if let Some(package) = self.packages.remove(&key) {
                self.bytes -= package.bytes;
                victims.push(package.dir);
            }
        }
        victims
    }
}

/// Disk usage of the cache, for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeUsage {
    pub packages: usize,
    pub bytes: u64,
    pub pinned_bytes: u64,
}

/// How code lookups went since start (`/metrics`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeLookups {
    /// The package was on this node already.
    pub hits: u64,
    /// The package was downloaded (attempts, failed ones included).
    pub downloads: u64,
}

/// A package held in the cache: never evicted while this lives. Containers keep theirs for
/// their whole life.
pub struct CodePin {
    key: String,
    dir: PathBuf,
    index: Arc<Mutex<Index>>,
}

impl CodePin {
    /// The unpacked package.
    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl std::fmt::Debug for CodePin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("CodePin").field(&self.dir).finish()
    }
}

impl Drop for CodePin {
    fn drop(&mut self) {
        let mut index = self.index.lock().unwrap_or_else(|e| e.into_inner());
        let now = index.tick();
        if let Some(package) = index.packages.get_mut(&self.key) {
            package.pins = package.pins.saturating_sub(1);
            package.last_used = now;
        }
    }
}

pub struct CodeCache {
    options: CodeOptions,
    /// Invocations whose package was on this node already (`/metrics`).
    hits: AtomicU64,
    /// Packages downloaded (`/metrics`).
    downloads: AtomicU64,
    api_url: String,
    client: reqwest::Client,
    /// Signs code-download tokens; without it downloads are refused here.
    signer: Option<Arc<AgentSigner>>,
    in_flight: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    index: Arc<Mutex<Index>>,
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

/// Bytes of disk `dir` takes (allocated blocks of every entry, like `du`), links not followed.
pub fn disk_usage(dir: &Path) -> io::Result<u64> {
    let mut total = std::fs::symlink_metadata(dir)?.blocks() * 512;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next)? {
            let entry = entry?;
            // DirEntry::metadata does not follow links.
            let metadata = entry.metadata()?;
            total += metadata.blocks() * 512;
            if metadata.is_dir() {
                pending.push(entry.path());
            }
        }
    }
    Ok(total)
}

impl CodeCache {
    /// `signer` is the agent's own key (downloads are signed with it); `tls` says which CA the
    /// API is verified with.
    pub fn new(
        options: CodeOptions,
        signer: Option<Arc<AgentSigner>>,
        tls: &InternalTls,
    ) -> Result<Self, CodeError> {
        let client = tls
            .client_builder()
            .timeout(DOWNLOAD_TIMEOUT)
            .build()
            .map_err(|e| CodeError::Download(e.to_string()))?;
        Ok(Self {
            api_url: options.api_url.trim_end_matches('/').to_owned(),
            options,
            hits: AtomicU64::new(0),
            downloads: AtomicU64::new(0),
            client,
            signer,
            in_flight: Mutex::new(HashMap::new()),
            index: Arc::new(Mutex::new(Index::default())),
        })
    }

    fn index(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Packages found on this node and packages downloaded, since start.
    pub fn lookups(&self) -> CodeLookups {
        CodeLookups {
            hits: self.hits.load(Ordering::Relaxed),
            downloads: self.downloads.load(Ordering::Relaxed),
        }
    }

    pub fn usage(&self) -> CodeUsage {
        let index = self.index();
        CodeUsage {
            packages: index.packages.len(),
            bytes: index.bytes,
            pinned_bytes: index.pinned_bytes(),
        }
    }

    /// Pins `sha256` unpacked, downloading it if this node lacks it: with the execution ticket
    /// that names it (`ticket`, whose id is `ticket_id`) and a code-download token this agent
    /// signs for that package and ticket.
    pub async fn get(
        &self,
        project: &str,
        sha256: &str,
        ticket: &str,
        ticket_id: Uuid,
    ) -> Result<CodePin, CodeError> {
        check_reference(project, sha256)?;
        let key = format!("{project}/{sha256}");
        if let Some(pin) = self.pin_cached(&key) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(pin);
        }
        let lock = {
            let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
            Arc::clone(in_flight.entry(key.clone()).or_default())
        };
        let result = {
            let _guard = lock.lock().await;
            match self.pin_cached(&key) {
                Some(pin) => {
                    self.hits.fetch_add(1, Ordering::Relaxed);
                    Ok(pin)
                }
                None => {
                    self.downloads.fetch_add(1, Ordering::Relaxed);
                    self.fetch(project, sha256, ticket, ticket_id, &key).await
                }
            }
        };
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        if in_flight
            .get(&key)
            .is_some_and(|l| Arc::strong_count(l) <= 2)
        {
            in_flight.remove(&key);
        }
        result
    }

    fn pin_cached(&self, key: &str) -> Option<CodePin> {
        let mut index = self.index();
        let now = index.tick();
        let package = index.packages.get_mut(key)?;
        if !package.dir.is_dir() {
            // Removed behind our back: forget it and fetch again.
            let bytes = package.bytes;
            if package.pins == 0 {
                index.packages.remove(key);
                index.bytes -= bytes;
            }
            return None;
        }
        package.pins += 1;
        package.last_used = now;
        Some(CodePin {
            key: key.to_owned(),
            dir: package.dir.clone(),
            index: Arc::clone(&self.index),
        })
    }

    /// Removes what an interrupted run left behind (`<project>/.tmp-*`, `<project>/.evict-*`),
    /// indexes the packages already on disk (oldest first), and evicts down to the bound.
    pub fn reconcile(&self) -> Result<CodeUsage, CodeError> {
        std::fs::create_dir_all(&self.options.root)?;
        let mut found = Vec::new();
        for project in std::fs::read_dir(&self.options.root)?.flatten() {
            if !project.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let project_name = project.file_name().to_string_lossy().into_owned();
            for entry in std::fs::read_dir(project.path())?.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let path = entry.path();
                if name.starts_with(".tmp-") || name.starts_with(".evict-") {
                    let _ = std::fs::remove_dir_all(&path);
                } else if entry.file_type().is_ok_and(|t| t.is_dir())
                    && check_reference(&project_name, &name).is_ok()
                {
                    let modified = entry.metadata().and_then(|m| m.modified()).ok();
                    found.push((modified, format!("{project_name}/{name}"), path));
                }
            }
        }
        found.sort();
        let mut victims = {
            let mut index = self.index();
            for (_, key, dir) in found {
                let bytes = disk_usage(&dir)?;
                let now = index.tick();
                index.bytes += bytes;
                let package = Cached {
                    dir,
                    bytes,
                    last_used: now,
                    pins: 0,
                };
                if let Some(old) = index.packages.insert(key, package) {
                    index.bytes -= old.bytes;
                }
            }
            index.make_room(0, self.options.cache_max_bytes)
        };
        for dir in victims.drain(..) {
            std::fs::remove_dir_all(&dir)?;
        }
        Ok(self.usage())
    }

    async fn fetch(
        &self,
        project: &str,
        sha256: &str,
        ticket: &str,
        ticket_id: Uuid,
        key: &str,
    ) -> Result<CodePin, CodeError> {
        let started = std::time::Instant::now();
        let bytes = self.download(sha256, ticket, ticket_id).await?;
        let pin = self.store(project, sha256, key, bytes).await?;
        log::info!(
            "code {key} fetched and unpacked in {:.0} ms",
            started.elapsed().as_secs_f64() * 1000.0
        );
        Ok(pin)
    }

    /// Adds a package this process was given rather than downloaded (a local agent's, see
    /// `crate::local`): the same bound, unpacking and cache as a download; returns its sha256
    /// and a pin. A package already cached is pinned again, not unpacked twice.
    pub async fn add(&self, project: &str, bytes: Vec<u8>) -> Result<(String, CodePin), CodeError> {
        let max = self.options.max_download_bytes;
        if bytes.len() > max {
            return Err(CodeError::TooLarge(max));
        }
        let sha256 = hex::encode(Sha256::digest(&bytes));
        check_reference(project, &sha256)?;
        let key = format!("{project}/{sha256}");
        if let Some(pin) = self.pin_cached(&key) {
            return Ok((sha256, pin));
        }
        let pin = self.store(project, &sha256, &key, bytes).await?;
        Ok((sha256, pin))
    }

    /// Unpacks verified `bytes` (package `sha256` of `project`) into the cache and pins it.
    async fn store(
        &self,
        project: &str,
        sha256: &str,
        key: &str,
        bytes: Vec<u8>,
    ) -> Result<CodePin, CodeError> {
        let project_dir = self.options.root.join(project);
        std::fs::create_dir_all(&project_dir)?;
        let staging = project_dir.join(format!(".tmp-{sha256}-{}", uuid::Uuid::new_v4().simple()));
        let unpacked = self.unpack(bytes, &staging).await;
        let measured = match unpacked {
            Ok(_) => {
                let staging = staging.clone();
                tokio::task::spawn_blocking(move || disk_usage(&staging))
                    .await
                    .map_err(|e| CodeError::Io(io::Error::other(e.to_string())))
                    .and_then(|r| r.map_err(CodeError::Io))
            }
            Err(e) => Err(e),
        };
        let admitted = match measured {
            Ok(size) => {
                self.admit(key, &staging, &project_dir.join(sha256), size)
                    .await
            }
            Err(e) => Err(e),
        };
        if admitted.is_err() {
            let _ = std::fs::remove_dir_all(&staging);
        }
        admitted
    }

    async fn download(
        &self,
        sha256: &str,
        ticket: &str,
        ticket_id: Uuid,
    ) -> Result<Vec<u8>, CodeError> {
        let max = self.options.max_download_bytes;
        let url = format!("{}/internal/v1/code/{sha256}", self.api_url);
        let signer = self.signer.as_ref().ok_or_else(|| {
            CodeError::Download("no agent key ([internal_auth] agent_key_file)".into())
        })?;
        let token = signer
            .code_download_token(sha256, ticket_id, DOWNLOAD_TOKEN_TTL_S)
            .map_err(|e| CodeError::Download(format!("cannot sign the download: {e}")))?;
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
            .is_some_and(|len| len > max as u64)
        {
            return Err(CodeError::TooLarge(max));
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| CodeError::Download(e.to_string()))?
        {
            if bytes.len() + chunk.len() > max {
                return Err(CodeError::TooLarge(max));
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
        Ok(bytes)
    }

    /// Unpacks `bytes` into the new directory `staging`.
    async fn unpack(&self, bytes: Vec<u8>, staging: &Path) -> Result<(), CodeError> {
        std::fs::create_dir(staging)?;
        let limits = self.options.limits;
        match &self.options.unpacker {
            Unpacker::InProcess => {
                let staging = staging.to_path_buf();
                tokio::task::spawn_blocking(move || archive::unpack(&bytes, limits, &staging))
                    .await
                    .map_err(|e| CodeError::Io(io::Error::other(e.to_string())))??;
                Ok(())
            }
            Unpacker::Child { program, uid, gid } => {
                std::os::unix::fs::chown(staging, Some(*uid), Some(*gid))?;
                let max_package = self.options.max_download_bytes;
                unpack_in_child(program, *uid, *gid, staging, bytes, limits, max_package).await
            }
        }
    }

    /// Makes room for `bytes` more (evicting least recently used unpinned packages), moves
    /// `staging` to `dir` and pins it.
    async fn admit(
        &self,
        key: &str,
        staging: &Path,
        dir: &Path,
        bytes: u64,
    ) -> Result<CodePin, CodeError> {
        let limit = self.options.cache_max_bytes;
        let (admitted, trash) = {
            let mut index = self.index();
            let pinned = index.pinned_bytes();
            if pinned.saturating_add(bytes) > limit {
                (
                    Err(CodeError::CacheFull {
                        needed: bytes,
                        pinned,
                        limit,
                    }),
                    Vec::new(),
                )
            } else {
                // Evicted directories leave their place at once (rename), and are removed
                // below, outside the lock.
                let trash: Vec<PathBuf> = index
                    .make_room(bytes, limit)
                    .into_iter()
                    .map(|victim| {
                        let grave = victim
                            .with_file_name(format!(".evict-{}", uuid::Uuid::new_v4().simple()));
                        match std::fs::rename(&victim, &grave) {
                            Ok(()) => grave,
                            Err(_) => victim,
                        }
                    })
                    .collect();
                let admitted = std::fs::rename(staging, dir).map(|()| {
                    let now = index.tick();
                    index.bytes += bytes;
                    index.packages.insert(
                        key.to_owned(),
                        Cached {
                            dir: dir.to_path_buf(),
                            bytes,
                            last_used: now,
                            pins: 1,
                        },
                    );
                    CodePin {
                        key: key.to_owned(),
                        dir: dir.to_path_buf(),
                        index: Arc::clone(&self.index),
                    }
                });
                (admitted.map_err(CodeError::Io), trash)
            }
        };
        if !trash.is_empty() {
            let count = trash.len();
            let removed = tokio::task::spawn_blocking(move || {
                for dir in trash {
                    if let Err(e) = std::fs::remove_dir_all(&dir) {
                        log::warn!("cannot remove evicted code {}: {e}", dir.display());
                    }
                }
            })
            .await;
            if removed.is_ok() {
                log::info!("code cache: evicted {count} package(s) to make room for {key}");
            }
        }
        admitted
    }
}

/// Runs the unpacking helper on `staging` (owned by `uid:gid`), feeding it the package.
async fn unpack_in_child(
    program: &Path,
    uid: u32,
    gid: u32,
    staging: &Path,
    bytes: Vec<u8>,
    limits: Limits,
    max_package: usize,
) -> Result<(), CodeError> {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(program)
        .arg(UNPACK_HELPER_ARG)
        .arg(staging)
        .args([
            uid.to_string(),
            gid.to_string(),
            limits.max_entries.to_string(),
            limits.max_unpacked_bytes.to_string(),
            max_package.to_string(),
        ])
        .env_clear()
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| CodeError::Helper(format!("cannot start {}: {e}", program.display())))?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| CodeError::Helper("no stdin".to_owned()))?;
    let feed = async move {
        // A helper that refuses early stops reading: its answer says why.
        let _ = stdin.write_all(&bytes).await;
    };
    let run = async {
        let ((), output) = tokio::join!(feed, child.wait_with_output());
        output
    };
    let output = tokio::time::timeout(UNPACK_TIMEOUT, run)
        .await
        .map_err(|_| CodeError::Helper(format!("timed out after {} s", UNPACK_TIMEOUT.as_secs())))?
        .map_err(|e| CodeError::Helper(e.to_string()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    match output.status.code() {
        Some(0) => Ok(()),
        Some(HELPER_REFUSED) => Err(CodeError::Refused(stdout.trim().to_owned())),
        _ => Err(CodeError::Helper(format!(
            "{}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))),
    }
}

/// Why the helper stopped.
#[derive(Debug, thiserror::Error)]
enum HelperError {
    #[error("{0}")]
    Refused(#[from] ArchiveError),
    #[error("usage: fresco-agent {UNPACK_HELPER_ARG} DIR UID GID MAX_ENTRIES MAX_UNPACKED_BYTES MAX_PACKAGE_BYTES < package")]
    Usage,
    #[error("{what}: {source}")]
    Setup {
        what: &'static str,
        source: io::Error,
    },
    #[error("package is larger than {0} bytes")]
    TooLarge(usize),
}

fn setup(what: &'static str) -> impl FnOnce(rustix::io::Errno) -> HelperError {
    move |errno| HelperError::Setup {
        what,
        source: errno.into(),
    }
}

/// When this process was started as the unpacking helper (`fresco-agent
/// --unpack-code-package ...`), does that and exits; otherwise returns at once. Call it first
/// thing in `main`, while the process has a single thread.
pub fn run_unpack_helper_if_asked() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) != Some(UNPACK_HELPER_ARG) {
        return;
    }
    let code = match unpack_helper(&args[2..]) {
        Ok(manifest) => {
            println!("{} {}", manifest.entries, manifest.unpacked_bytes);
            0
        }
        Err(HelperError::Refused(error)) => {
            println!("{error}");
            HELPER_REFUSED
        }
        Err(error) => {
            eprintln!("{error}");
            1
        }
    };
    let _ = io::stdout().flush();
    std::process::exit(code);
}

fn unpack_helper(args: &[String]) -> Result<Manifest, HelperError> {
    let [dir, uid, gid, max_entries, max_unpacked_bytes, max_package] = args else {
        return Err(HelperError::Usage);
    };
    let number = |text: &String| text.parse::<u64>().map_err(|_| HelperError::Usage);
    let uid = u32::try_from(number(uid)?).map_err(|_| HelperError::Usage)?;
    let gid = u32::try_from(number(gid)?).map_err(|_| HelperError::Usage)?;
    let limits = Limits {
        max_entries: usize::try_from(number(max_entries)?).map_err(|_| HelperError::Usage)?,
        max_unpacked_bytes: number(max_unpacked_bytes)?,
    };
    let max_package = usize::try_from(number(max_package)?).map_err(|_| HelperError::Usage)?;
    if uid == 0 || gid == 0 {
        return Err(HelperError::Usage);
    }
    // Opened while still privileged (its parents may not be searchable by `uid`), then never
    // again by path.
    let root = rustix::fs::open(
        dir.as_str(),
        rustix::fs::OFlags::RDONLY
            | rustix::fs::OFlags::DIRECTORY
            | rustix::fs::OFlags::NOFOLLOW
            | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(setup("cannot open the unpacking directory"))?;
    drop_privileges(uid, gid, limits)?;
    let mut bytes = Vec::new();
    io::stdin()
        .lock()
        .take(max_package as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| HelperError::Setup {
            what: "cannot read the package",
            source,
        })?;
    if bytes.len() > max_package {
        return Err(HelperError::TooLarge(max_package));
    }
    Ok(archive::unpack_at(&bytes, limits, root.as_fd())?)
}

/// Becomes `uid:gid` for good, with no supplementary groups, no way to regain privileges, and
/// resource limits. The process has one thread, so the per-thread calls cover all of it.
fn drop_privileges(uid: u32, gid: u32, limits: Limits) -> Result<(), HelperError> {
    use rustix::process::{Gid, Resource, Rlimit, Uid};
    use rustix::thread::{set_thread_groups, set_thread_res_gid, set_thread_res_uid};
    let (uid, gid) = (Uid::from_raw(uid), Gid::from_raw(gid));
    set_thread_groups(&[]).map_err(setup("setgroups"))?;
    set_thread_res_gid(gid, gid, gid).map_err(setup("setresgid"))?;
    set_thread_res_uid(uid, uid, uid).map_err(setup("setresuid"))?;
    rustix::thread::set_no_new_privs(true).map_err(setup("no_new_privs"))?;
    if set_thread_res_uid(Uid::ROOT, Uid::ROOT, Uid::ROOT).is_ok()
        || rustix::process::geteuid() != uid
        || rustix::process::getegid() != gid
    {
        return Err(HelperError::Setup {
            what: "dropping privileges",
            source: io::Error::other("root could be regained"),
        });
    }
    let limit = |resource, value: u64| {
        rustix::process::setrlimit(
            resource,
            Rlimit {
                current: Some(value),
                maximum: Some(value),
            },
        )
        .map_err(setup("setrlimit"))
    };
    // A file can never exceed the budget (one byte over is what proves it is over).
    limit(
        Resource::Fsize,
        limits.max_unpacked_bytes.saturating_add(4096),
    )?;
    limit(Resource::Cpu, UNPACK_CPU_SECONDS)?;
    limit(Resource::Nofile, 64)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn tar_gz(body: &[u8]) -> Vec<u8> {
        let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::fast(),
        ));
        let mut header = tar::Header::new_gnu();
        header.set_size(body.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder
            .append_data(&mut header, "main.py", body)
            .expect("append");
        builder.into_inner().expect("tar").finish().expect("gzip")
    }

    /// Serves `/internal/v1/code/<sha>` from `packages` after a short pause; counts requests.
    async fn serve(packages: Vec<Vec<u8>>) -> (String, Arc<AtomicUsize>) {
        let by_sha: HashMap<String, Vec<u8>> = packages
            .into_iter()
            .map(|p| (hex::encode(Sha256::digest(&p)), p))
            .collect();
        let by_sha = Arc::new(by_sha);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let count = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&count);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                let by_sha = Arc::clone(&by_sha);
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let n = stream.read(&mut buf).await.unwrap_or(0);
                    let request = String::from_utf8_lossy(&buf[..n]).into_owned();
                    let sha = request
                        .split_whitespace()
                        .nth(1)
                        .and_then(|p| p.strip_prefix("/internal/v1/code/"))
                        .unwrap_or("");
                    let bytes = by_sha.get(sha).cloned().unwrap_or_default();
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

    fn cache(root: &Path, url: &str, cache_max_bytes: u64) -> CodeCache {
        CodeCache::new(
            CodeOptions {
                root: root.to_path_buf(),
                api_url: url.to_owned(),
                max_download_bytes: 1 << 20,
                limits: Limits {
                    max_entries: 10,
                    max_unpacked_bytes: 1 << 20,
                },
                cache_max_bytes,
                unpacker: Unpacker::InProcess,
            },
            Some(Arc::new(
                AgentSigner::from_pem(
                    fresco_common::ticket::test_keys::AGENT_PRIVATE.as_bytes(),
                    "agent-1",
                )
                .expect("signer"),
            )),
            &InternalTls::disabled(),
        )
        .expect("cache")
    }

    struct Root(PathBuf);

    impl Root {
        fn new() -> Self {
            Self(std::env::temp_dir().join(format!("fc-{}", uuid::Uuid::new_v4().simple())))
        }
    }

    impl Drop for Root {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[tokio::test]
    async fn concurrent_first_uses_download_once_and_checksums_are_verified() {
        let root = Root::new();
        let package = tar_gz(b"def handler(e, c):\n    return 1\n");
        let sha = hex::encode(Sha256::digest(&package));
        let (url, count) = serve(vec![package]).await;
        let code = cache(&root.0, &url, 1 << 30);
        let (a, b, c) = tokio::join!(
            code.get("p1", &sha, "t", Uuid::nil()),
            code.get("p1", &sha, "t", Uuid::nil()),
            code.get("p1", &sha, "t", Uuid::nil())
        );
        let dir = a.expect("a").path().to_path_buf();
        assert_eq!(b.expect("b").path(), dir);
        assert_eq!(c.expect("c").path(), dir);
        assert_eq!(count.load(Ordering::SeqCst), 1, "one download");
        assert!(dir.join("main.py").is_file());

        let partial = root.0.join("p1").join(".tmp-interrupted");
        std::fs::create_dir_all(&partial).expect("partial dir");
        let usage = code.reconcile().expect("reconcile");
        assert!(!partial.exists(), "partial unpacking removed");
        assert!(dir.is_dir(), "complete packages stay");
        assert_eq!(usage.packages, 1);
        assert_eq!(usage.pinned_bytes, 0, "the pins above are gone");

        let wrong = "0".repeat(64);
        let err = code
            .get("p1", &wrong, "t", Uuid::nil())
            .await
            .expect_err("mismatch");
        assert!(matches!(err, CodeError::Checksum { .. }), "{err}");
        assert!(!root.0.join("p1").join(&wrong).exists(), "nothing cached");
    }

    #[tokio::test]
    async fn least_recently_used_unpinned_packages_are_evicted_and_pinned_ones_never() {
        let root = Root::new();
        let packages: Vec<Vec<u8>> = (0..6)
            .map(|i| tar_gz(format!("# {i}\n{}", "x".repeat(20_000)).as_bytes()))
            .collect();
        let shas: Vec<String> = packages
            .iter()
            .map(|p| hex::encode(Sha256::digest(p)))
            .collect();
        let (url, _) = serve(packages).await;
        // Room for about three packages (each takes 24 KiB or so of disk).
        let code = cache(&root.0, &url, 80 * 1024);
        let held = code
            .get("p1", &shas[0], "t", Uuid::nil())
            .await
            .expect("held");
        for sha in &shas[1..] {
            drop(code.get("p1", sha, "t", Uuid::nil()).await.expect("get"));
            let usage = code.usage();
            assert!(usage.bytes <= 80 * 1024, "{usage:?}");
            assert_eq!(
                usage.bytes,
                disk_usage(&root.0.join("p1")).expect("du") - disk_usage_of_dir_itself(&root.0),
                "the index counts what is on disk"
            );
            assert!(held.path().join("main.py").is_file(), "pinned package kept");
        }
        assert!(!root.0.join("p1").join(&shas[1]).exists(), "oldest evicted");
        assert!(root.0.join("p1").join(&shas[5]).exists(), "newest kept");
        // Nothing but the pinned package is left when it alone fills the cache.
        let tiny = cache(&root.0, &url, 30 * 1024);
        tiny.reconcile().expect("reconcile");
        let pinned = tiny
            .get("p1", &shas[5], "t", Uuid::nil())
            .await
            .expect("kept");
        let err = tiny
            .get("p1", &shas[1], "t", Uuid::nil())
            .await
            .expect_err("full");
        assert!(matches!(err, CodeError::CacheFull { .. }), "{err}");
        assert!(pinned.path().is_dir());
        assert!(
            std::fs::read_dir(root.0.join("p1"))
                .expect("dir")
                .flatten()
                .all(|e| !e.file_name().to_string_lossy().starts_with('.')),
            "no staging or evicted directories left"
        );
    }

    /// The project directory's own blocks (not part of any package).
    fn disk_usage_of_dir_itself(root: &Path) -> u64 {
        std::fs::symlink_metadata(root.join("p1"))
            .expect("p1")
            .blocks()
            * 512
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
