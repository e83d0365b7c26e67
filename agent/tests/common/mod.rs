//! Shared harness of the agent's integration tests and benchmark: the real Docker engine, the
//! runtime images from runtimes/build.sh, the static shim, the real fresco-agent binary, and a
//! fake API (code downloads) and scheduler (heartbeats) on loopback.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use fresco_common::ticket::test_keys::{AGENT_PRIVATE, AGENT_PUBLIC};
use fresco_common::ticket::{
    sha256_hex, AgentVerifier, TicketClaims, TicketSigner, TicketVerifier, TokenType,
};
use fresco_common::wire::FunctionSpec;
use uuid::Uuid;

pub const DOCKER: &str = "/usr/bin/docker";
pub const PYTHON_IMAGE: &str = "fresco/python3:dev";
pub const PROVIDED_IMAGE: &str = "fresco/provided:dev";

// A throwaway Ed25519 key pair for tests only (`openssl genpkey -algorithm ed25519`).
pub const TEST_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIPDphl9SqanFK+zTSluaX26jfvxzKtsDBf4ntwe+UDy7\n-----END PRIVATE KEY-----\n";
pub const TEST_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEALN3/XuOh0wrB4/jbsZwWdiMRVZL2PUepzf18DzEv6D4=\n-----END PUBLIC KEY-----\n";
// Another pair, for forged tickets.
pub const OTHER_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIBDZreGq6jI/TQJ2OayLZBOClICsyJeLMB8MNK6B959x\n-----END PRIVATE KEY-----\n";

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("agent/ has a parent")
        .to_path_buf()
}

/// Fails (never skips) when the engine or the images are missing.
pub fn require_docker_and_images() {
    static CHECKED: OnceLock<()> = OnceLock::new();
    CHECKED.get_or_init(|| {
        let info = Command::new(DOCKER).arg("info").output();
        assert!(
            matches!(&info, Ok(o) if o.status.success()),
            "the Docker engine is not running: start it with \
             `source tools/lib/common.sh; source tools/lib/docker.sh; docker_start` \
             (or run runtimes/build.sh, which also builds the images)"
        );
        for image in [PYTHON_IMAGE, PROVIDED_IMAGE] {
            let found = Command::new(DOCKER)
                .args(["image", "inspect", "--format", "{{.Id}}", image])
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false);
            assert!(
                found,
                "runtime image {image} is missing: run runtimes/build.sh"
            );
        }
    });
}

/// The static shim, built once per test run into its own target directory.
pub fn shim_path() -> PathBuf {
    static SHIM: OnceLock<PathBuf> = OnceLock::new();
    SHIM.get_or_init(|| {
        if let Ok(path) = std::env::var("FRESCO_SHIM_PATH") {
            return PathBuf::from(path);
        }
        // target/<profile>/fresco-agent → target/shim
        let agent = PathBuf::from(env!("CARGO_BIN_EXE_fresco-agent"));
        let target = agent
            .parent()
            .and_then(Path::parent)
            .expect("target dir")
            .join("shim");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let out = Command::new(cargo)
            .current_dir(repo_root())
            .args([
                "build",
                "--release",
                "-q",
                "-p",
                "fresco-shim",
                "--target",
                "x86_64-unknown-linux-gnu",
            ])
            .env("CARGO_TARGET_DIR", &target)
            .env("RUSTFLAGS", "-C target-feature=+crt-static")
            .output()
            .expect("run cargo to build the shim");
        assert!(
            out.status.success(),
            "building the static shim failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        target.join("x86_64-unknown-linux-gnu/release/fresco-shim")
    })
    .clone()
}

/// A code package (tar.gz) of tests/functions/<name>: (sha256, bytes).
pub fn package(name: &str) -> (String, Vec<u8>) {
    use sha2::Digest;
    let dir = repo_root().join("tests/functions").join(name);
    assert!(dir.is_dir(), "no sample function {}", dir.display());
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    builder.mode(tar::HeaderMode::Deterministic);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("read function dir")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    for file in files {
        let name = file.file_name().expect("file name").to_owned();
        builder
            .append_path_with_name(&file, name)
            .expect("pack function");
    }
    let bytes = builder.into_inner().expect("tar").finish().expect("gzip");
    (hex::encode(sha2::Sha256::digest(&bytes)), bytes)
}

/// A scratch directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> Self {
        let id = Uuid::new_v4().simple().to_string();
        let path = std::env::temp_dir().join(format!("{prefix}-{}", &id[..10]));
        std::fs::create_dir_all(&path).expect("temp dir");
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Answers one HTTP/1.1 request on `stream` with `handler(method, path, headers, body)`.
/// (status, extra headers, body) of a fake server's answer.
type Answer = (u16, Vec<(String, String)>, Vec<u8>);
/// A fake server's handler: (method, path, lowercase headers, body) → answer.
type Handler<'a> = &'a dyn Fn(&str, &str, &HashMap<String, String>, &[u8]) -> Answer;

fn serve_one(mut stream: TcpStream, handler: Handler<'_>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_owned();
    let path = parts.next().unwrap_or("").to_owned();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let (status, extra, out) = handler(&method, &path, &headers, &body);
    let mut head = format!(
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        out.len()
    );
    for (k, v) in extra {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&out);
}

/// The API's code endpoint, as the agent uses it: GET /internal/v1/code/{sha256}, bearer ticket.
pub struct FakeApi {
    pub url: String,
    packages: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    pub downloads: Arc<AtomicUsize>,
}

impl FakeApi {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind fake api");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let packages: Arc<Mutex<HashMap<String, Vec<u8>>>> = Arc::default();
        let downloads = Arc::new(AtomicUsize::new(0));
        let (p, d) = (Arc::clone(&packages), Arc::clone(&downloads));
        let verifier = TicketVerifier::from_pem(TEST_PUBLIC.as_bytes()).expect("verifier");
        std::thread::spawn(move || {
            let verifier = Arc::new(verifier);
            for stream in listener.incoming().flatten() {
                let (p, d, verifier) = (Arc::clone(&p), Arc::clone(&d), Arc::clone(&verifier));
                std::thread::spawn(move || {
                    serve_one(stream, &|method, path, headers, _| {
                        let Some(sha) = path.strip_prefix("/internal/v1/code/") else {
                            return (404, vec![], b"{}".to_vec());
                        };
                        // As the API checks: the ticket names the package, and the bearer
                        // token is the named agent's own, for this package and ticket.
                        let ticket = headers.get("x-fresco-ticket").map_or("", String::as_str);
                        let token = headers
                            .get("authorization")
                            .and_then(|v| v.strip_prefix("Bearer "))
                            .unwrap_or("");
                        let Ok(claims) = verifier.verify(ticket, None) else {
                            return (401, vec![], b"{}".to_vec());
                        };
                        let agent_key =
                            AgentVerifier::from_pem(AGENT_PUBLIC.as_bytes()).expect("agent key");
                        if agent_key
                            .verify_code_download(&claims.aud, token, sha, claims.jti)
                            .is_err()
                        {
                            return (401, vec![], b"{}".to_vec());
                        }
                        if method != "GET" || claims.spec.code_sha256.as_deref() != Some(sha) {
                            return (403, vec![], b"{}".to_vec());
                        }
                        let Some(bytes) = p.lock().expect("lock").get(sha).cloned() else {
                            return (404, vec![], b"{}".to_vec());
                        };
                        d.fetch_add(1, Ordering::SeqCst);
                        // Slow enough that concurrent first uses overlap.
                        std::thread::sleep(Duration::from_millis(100));
                        let format = if bytes.starts_with(b"PK") {
                            "zip"
                        } else {
                            "tar.gz"
                        };
                        (
                            200,
                            vec![("X-Fresco-Code-Format".to_owned(), format.to_owned())],
                            bytes,
                        )
                    });
                });
            }
        });
        Self {
            url,
            packages,
            downloads,
        }
    }

    /// Publishes a package as it is (served as-is, as a malicious or buggy API would); returns
    /// its sha256.
    pub fn add_bytes(&self, bytes: Vec<u8>) -> String {
        use sha2::Digest;
        let sha = hex::encode(sha2::Sha256::digest(&bytes));
        self.packages
            .lock()
            .expect("lock")
            .insert(sha.clone(), bytes);
        sha
    }

    /// Publishes tests/functions/<name>; returns its sha256.
    pub fn add(&self, name: &str) -> String {
        let (sha, bytes) = package(name);
        self.packages
            .lock()
            .expect("lock")
            .insert(sha.clone(), bytes);
        sha
    }
}

/// A scheduler that records the heartbeats it receives (those signed with the test agents'
/// enrolled key, for the agent and the body they carry).
pub struct FakeScheduler {
    pub url: String,
    pub heartbeats: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl FakeScheduler {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind fake scheduler");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let heartbeats: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
        let h = Arc::clone(&heartbeats);
        std::thread::spawn(move || {
            let key = AgentVerifier::from_pem(AGENT_PUBLIC.as_bytes()).expect("agent key");
            for stream in listener.incoming().flatten() {
                serve_one(stream, &|method, path, headers, body| {
                    let token = headers
                        .get("authorization")
                        .and_then(|v| v.strip_prefix("Bearer "))
                        .unwrap_or("");
                    if method != "POST" || path != "/v1/agents/heartbeat" {
                        return (404, vec![], b"{}".to_vec());
                    }
                    let Ok(beat) = serde_json::from_slice::<serde_json::Value>(body) else {
                        return (400, vec![], b"{}".to_vec());
                    };
                    let agent = beat["agent_id"].as_str().unwrap_or("");
                    if key.verify_heartbeat(agent, token, body).is_err() {
                        return (401, vec![], b"{}".to_vec());
                    }
                    h.lock().expect("lock").push(beat);
                    (204, vec![], Vec::new())
                });
            }
        });
        Self { url, heartbeats }
    }
}

/// Sandbox uids each test agent gets (`[agent] sandbox_uid_count`).
pub const AGENT_UIDS: u32 = 256;

/// A sandbox uid range of its own for each agent this process starts: concurrent agents on one
/// machine must not share uids (a sandbox's processes count against its uid's RLIMIT_NPROC).
pub fn agent_uid_base() -> u32 {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let seq = (NEXT.fetch_add(1, Ordering::SeqCst) % 16) as u32;
    // Apart from the end-to-end harness's ranges (which start at 1,000,000).
    500_000_000 + (std::process::id() % 50_000) * 16 * AGENT_UIDS + seq * AGENT_UIDS
}

/// Options of one agent process.
pub struct AgentOptions {
    pub agent_id: String,
    pub api_url: String,
    pub scheduler_url: String,
    pub memory_mb: u64,
    pub idle_timeout: u64,
    pub uid_base: u32,
    pub extra: String,
}

impl AgentOptions {
    pub fn new(api: &FakeApi) -> Self {
        Self {
            agent_id: format!("test-{}", &Uuid::new_v4().simple().to_string()[..12]),
            api_url: api.url.clone(),
            // Nothing listens there: heartbeats fail, which must be harmless.
            scheduler_url: "http://127.0.0.1:9".to_owned(),
            memory_mb: 4096,
            idle_timeout: 300,
            uid_base: agent_uid_base(),
            extra: String::new(),
        }
    }
}

/// A running fresco-agent binary; stopped (SIGTERM, then SIGKILL) on drop.
pub struct AgentProcess {
    pub url: String,
    pub agent_id: String,
    /// First uid of its sandboxes (`AGENT_UIDS` of them).
    pub uid_base: u32,
    child: Child,
    pub dir: TempDir,
    pub client: reqwest::Client,
}

impl AgentProcess {
    pub fn start(options: AgentOptions) -> Self {
        require_docker_and_images();
        let shim = shim_path();
        let dir = TempDir::new("fa");
        let key = dir.0.join("ticket-verify.pem");
        std::fs::write(&key, TEST_PUBLIC).expect("write key");
        let agent_key = dir.0.join("agent-key.pem");
        std::fs::write(&agent_key, AGENT_PRIVATE).expect("write key");
        let config = format!(
            "[DEFAULT]\nstate_path = {state}\n\
             [agent]\nagent_id = {id}\nbind_host = 127.0.0.1\nbind_port = 0\napi_url = {api}\n\
             memory_mb = {mem}\nidle_timeout = {idle}\nshim_path = {shim}\nheartbeat_interval = 1\n\
             log_sync_timeout_ms = 2000\nsandbox_uid_base = {uid_base}\nsandbox_uid_count = {uids}\n{extra}\n\
             [internal_auth]\nticket_verify_key_file = {key}\nagent_key_file = {agent_key}\n\
             [scheduler]\nurls = {sched}\n",
            state = dir.0.join("state").display(),
            id = options.agent_id,
            api = options.api_url,
            mem = options.memory_mb,
            idle = options.idle_timeout,
            shim = shim.display(),
            uid_base = options.uid_base,
            uids = AGENT_UIDS,
            extra = options.extra,
            key = key.display(),
            agent_key = agent_key.display(),
            sched = options.scheduler_url,
        );
        let config_path = dir.0.join("fresco.conf");
        std::fs::write(&config_path, config).expect("write config");
        let log = std::fs::File::create(dir.0.join("agent.log")).expect("log file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_fresco-agent"))
            .arg("--config-file")
            .arg(&config_path)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start fresco-agent");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            for _ in lines {}
        });
        let line = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "fresco-agent did not start:\n{}",
                    std::fs::read_to_string(dir.0.join("agent.log")).unwrap_or_default()
                );
            }
        };
        let url = line
            .rsplit(' ')
            .next()
            .expect("listening line names the url")
            .to_owned();
        Self {
            url,
            agent_id: options.agent_id,
            uid_base: options.uid_base,
            child,
            dir,
            client: reqwest::Client::new(),
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("agent.log")).unwrap_or_default()
    }

    /// POST /v1/run with `ticket`: (HTTP status, JSON body).
    pub async fn run_raw(
        &self,
        ticket: &str,
        payload: serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let response = self
            .client
            .post(format!("{}/v1/run", self.url))
            .bearer_auth(ticket)
            .json(&serde_json::json!({ "payload": payload }))
            .send()
            .await
            .expect("agent answers");
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(serde_json::Value::Null);
        (status, body)
    }

    /// Runs `spec` with a valid ticket; returns the RunResult as JSON and the wall time.
    pub async fn run(
        &self,
        spec: &FunctionSpec,
        payload: serde_json::Value,
    ) -> (serde_json::Value, Duration) {
        let ticket = ticket_with_payload(&self.agent_id, spec, &payload);
        let started = Instant::now();
        let (status, body) = self.run_raw(&ticket, payload).await;
        let elapsed = started.elapsed();
        assert_eq!(
            status,
            200,
            "run failed: {body}\nagent log:\n{}",
            self.log()
        );
        (body, elapsed)
    }

    /// The agent process's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Ids of the containers labelled with this agent's id.
    pub fn containers(&self) -> Vec<String> {
        labelled_containers(&self.agent_id)
    }

    /// Stops the agent like an operator would (SIGTERM), waiting for it to exit.
    pub fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Ends the agent abruptly (SIGKILL), leaving its containers behind.
    pub fn crash(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        self.stop();
        let leftovers = self.containers();
        if !leftovers.is_empty() {
            let _ = Command::new(DOCKER)
                .args(["rm", "-f"])
                .args(&leftovers)
                .output();
        }
    }
}

pub fn labelled_containers(agent_id: &str) -> Vec<String> {
    let out = Command::new(DOCKER)
        .args([
            "ps",
            "-aq",
            "--no-trunc",
            "--filter",
            &format!("label=fresco.agent={agent_id}"),
        ])
        .output()
        .expect("docker ps");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

pub fn container_exists(id: &str) -> bool {
    Command::new(DOCKER)
        .args(["inspect", "--format", "{{.Id}}", id])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// A function spec for one of the sample functions.
pub fn spec(name: &str, runtime: &str, handler: &str, sha: Option<String>) -> FunctionSpec {
    FunctionSpec {
        project_id: "p-test".to_owned(),
        function_id: Uuid::new_v4(),
        function_name: name.to_owned(),
        version: 1,
        image: if runtime == "provided" {
            PROVIDED_IMAGE
        } else {
            PYTHON_IMAGE
        }
        .to_owned(),
        runtime_kind: runtime.to_owned(),
        handler: handler.to_owned(),
        memory_mb: 128,
        timeout_s: 10,
        environment: BTreeMap::new(),
        code_sha256: sha,
        network: false,
        revision: 0,
    }
}

/// A ticket for running `spec` on `agent_id` with the payload `{}`.
pub fn ticket_for(agent_id: &str, spec: &FunctionSpec) -> String {
    ticket_with_payload(agent_id, spec, &serde_json::json!({}))
}

/// A ticket for running `spec` on `agent_id` with `payload` (as `run_raw` sends it).
pub fn ticket_with_payload(
    agent_id: &str,
    spec: &FunctionSpec,
    payload: &serde_json::Value,
) -> String {
    let text = serde_json::to_string(payload).expect("payload");
    let signer = TicketSigner::from_pem(TEST_PRIVATE.as_bytes(), 30).expect("signer");
    signer
        .sign(
            agent_id,
            Uuid::new_v4(),
            Uuid::new_v4(),
            &sha256_hex(text.as_bytes()),
            spec.clone(),
        )
        .expect("sign ticket")
}

/// A ticket signed with the right key that expired a minute ago.
pub fn expired_ticket(agent_id: &str, spec: &FunctionSpec) -> String {
    let now = chrono::Utc::now().timestamp();
    let claims = TicketClaims {
        typ: TokenType::Execution,
        iss: "fresco-scheduler".to_owned(),
        aud: agent_id.to_owned(),
        sub: Uuid::new_v4(),
        jti: Uuid::new_v4(),
        iat: now - 120,
        exp: now - 60,
        lease_id: Uuid::new_v4(),
        payload_sha256: sha256_hex(b"{}"),
        spec: spec.clone(),
    };
    let key = jsonwebtoken::EncodingKey::from_ed_pem(TEST_PRIVATE.as_bytes()).expect("key");
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA),
        &claims,
        &key,
    )
    .expect("encode")
}

/// A ticket signed with a key the agent does not trust.
pub fn forged_ticket(agent_id: &str, spec: &FunctionSpec) -> String {
    let signer = TicketSigner::from_pem(OTHER_PRIVATE.as_bytes(), 60).expect("signer");
    signer
        .sign(
            agent_id,
            Uuid::new_v4(),
            Uuid::new_v4(),
            &sha256_hex(b"{}"),
            spec.clone(),
        )
        .expect("sign")
}

pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}
