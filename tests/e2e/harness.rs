//! A whole Fresco stack for end-to-end tests: a fresh database on the real PostgreSQL, fresh
//! keys as a deployment makes them (the scheduler's ticket key, the API's control-plane key,
//! one key per agent, each agent enrolled with its URL), optionally TLS on every internal hop
//! (a CA and a certificate made with openssl), the real fresco-api, fresco-scheduler(s) and
//! fresco-agent(s) binaries as child processes on free loopback ports, and the real Docker
//! engine.
//!
//! Needs (set by tools/test): `FRESCO_BIN_DIR` (the built binaries), `FRESCO_SHIM_PATH` (the
//! static shim), `FRESCO_TEST_DATABASE_URL` (a PostgreSQL URL whose role may create
//! databases), and the runtime images `fresco/python3:dev` and `fresco/provided:dev`.

#![allow(clippy::unwrap_used)] // a test harness: a failed set-up step should panic loudly

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use diesel::{Connection, PgConnection, RunQueryDsl};
use reqwest::blocking::{multipart, Client, Response};
use serde_json::{json, Value};

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the end-to-end tests through tools/test, which builds and starts what they need")
    })
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One running service.
pub struct Service {
    pub name: String,
    pub port: u16,
    child: Option<Child>,
    config: PathBuf,
    log: PathBuf,
    binary: PathBuf,
    /// `http` or `https`.
    scheme: &'static str,
    client: Client,
}

impl Service {
    fn spawn(
        name: &str,
        binary: PathBuf,
        config: PathBuf,
        log: PathBuf,
        port: u16,
        tls: &Option<Tls>,
    ) -> Service {
        let mut service = Service {
            name: name.to_owned(),
            port,
            child: None,
            config,
            log,
            binary,
            scheme: if tls.is_some() { "https" } else { "http" },
            client: client(tls, Duration::from_secs(1)),
        };
        service.start();
        service
    }

    /// Starts (or restarts) the process.
    pub fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(&self.binary)
            .arg("--config-file")
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.binary.display()));
        self.child = Some(child);
        let log = self.log.clone();
        let name = self.name.clone();
        let child = &mut self.child;
        wait_until(
            Duration::from_secs(30),
            &format!("{} to answer", self.name),
            || {
                if let Some(Ok(Some(status))) = child.as_mut().map(Child::try_wait) {
                    let log = std::fs::read_to_string(&log).unwrap_or_default();
                    let tail: Vec<&str> = log.lines().take(5).collect();
                    panic!("{name} exited with {status}: {}", tail.join("\n"));
                }
                self.client
                    .get(format!(
                        "{}://127.0.0.1:{}/healthcheck",
                        self.scheme, self.port
                    ))
                    .send()
                    .map(|r| r.status().is_success() || r.status().as_u16() == 503)
                    .unwrap_or(false)
            },
        );
    }

    /// Kills the process (SIGKILL: a crash, not a shutdown) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().ok();
            child.wait().ok();
        }
    }

    pub fn url(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme, self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Retries `check` every 50 ms until it holds or `limit` passes (then panics naming `what`).
pub fn wait_until(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The tag of the runtime images the tests use: `$FRESCO_RUNTIME_TAG` (as `runtimes/build.sh`
/// takes it), else `dev`.
pub fn runtime_tag() -> String {
    std::env::var("FRESCO_RUNTIME_TAG")
        .ok()
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "dev".to_owned())
}

/// `fresco/python3:<runtime_tag()>`.
pub fn python_image() -> String {
    format!("fresco/python3:{}", runtime_tag())
}

/// `fresco/provided:<runtime_tag()>`.
pub fn provided_image() -> String {
    format!("fresco/provided:{}", runtime_tag())
}

/// Uids each test agent's sandboxes run as (`[agent] sandbox_uid_count`).
pub const AGENT_UIDS: u32 = 256;

/// A sandbox uid range of its own for each agent this process starts: agents of concurrent
/// stacks (and processes) on one machine must not share uids, or one sandbox's processes would
/// count against another's RLIMIT_NPROC. Its range holds `AGENT_UIDS` uids.
pub fn agent_uid_base() -> u32 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let seq = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst) % 16;
    1_000_000 + (std::process::id() % 50_000) * 16 * AGENT_UIDS + seq * AGENT_UIDS
}

/// Options of a stack.
pub struct StackOptions {
    pub agents: usize,
    pub schedulers: usize,
    /// Extra lines appended to the control plane's config.
    pub extra_config: String,
    /// TLS on every internal hop ([internal_tls]): the API, the schedulers and the agents serve
    /// HTTPS with a certificate of a CA made for this stack, and every caller trusts only it.
    pub tls: bool,
    /// Extra lines appended to each agent's `[agent]` section.
    pub agent_config: String,
    /// Extra lines appended to the `[agent]` section of the agent of the same index, after
    /// `agent_config`.
    pub agent_configs: Vec<String>,
}

impl Default for StackOptions {
    fn default() -> Self {
        StackOptions {
            agents: 1,
            schedulers: 1,
            extra_config: String::new(),
            tls: false,
            agent_config: String::new(),
            agent_configs: Vec::new(),
        }
    }
}

/// The TLS files of a stack: a CA and one certificate for 127.0.0.1 signed by it.
#[derive(Clone)]
pub struct Tls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Tls {
    /// Makes a CA and a server certificate (SAN IP:127.0.0.1, DNS:localhost) with openssl.
    fn make(dir: &Path) -> Tls {
        let tls = Tls {
            ca: dir.join("ca.pem"),
            cert: dir.join("cert.pem"),
            key: dir.join("cert.key"),
        };
        let ca_key = dir.join("ca.key");
        run(Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ])
            .args(["-nodes", "-days", "2", "-subj", "/CN=fresco e2e CA"])
            .args(["-addext", "basicConstraints=critical,CA:TRUE"])
            .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"])
            .arg("-keyout")
            .arg(&ca_key)
            .arg("-out")
            .arg(&tls.ca));
        let csr = dir.join("cert.csr");
        run(Command::new("openssl")
            .args([
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
            ])
            .args(["-subj", "/CN=127.0.0.1"])
            .arg("-keyout")
            .arg(&tls.key)
            .arg("-out")
            .arg(&csr));
        let ext = dir.join("cert.ext");
        write(
            &ext,
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\n\
             keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
        );
        run(Command::new("openssl")
            .args(["x509", "-req", "-days", "2", "-in"])
            .arg(&csr)
            .arg("-CA")
            .arg(&tls.ca)
            .arg("-CAkey")
            .arg(&ca_key)
            .arg("-CAcreateserial")
            .arg("-extfile")
            .arg(&ext)
            .arg("-out")
            .arg(&tls.cert));
        tls
    }

    /// The `[internal_tls]` section.
    fn section(&self) -> String {
        format!(
            "\n[internal_tls]\ncert_file = {}\nkey_file = {}\nca_file = {}\n",
            self.cert.display(),
            self.key.display(),
            self.ca.display()
        )
    }
}

/// A blocking client that trusts the stack's CA (and nothing else) when it has one.
pub fn client(tls: &Option<Tls>, timeout: Duration) -> Client {
    let mut builder = Client::builder().timeout(timeout);
    if let Some(tls) = tls {
        let ca = reqwest::Certificate::from_pem(&std::fs::read(&tls.ca).unwrap()).unwrap();
        builder = builder
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .https_only(true);
    }
    builder.build().unwrap()
}

/// An Ed25519 key pair made with openssl: (private, public) paths.
pub fn key_pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let private = dir.join(format!("{name}.pem"));
    let public = dir.join(format!("{name}.pub.pem"));
    run(Command::new("openssl")
        .args(["genpkey", "-algorithm", "ed25519", "-out"])
        .arg(&private));
    run(Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&private)
        .arg("-out")
        .arg(&public));
    (private, public)
}

/// A running stack; everything stops and the database is dropped when it goes away.
pub struct Stack {
    pub dir: PathBuf,
    pub api: Service,
    pub schedulers: Vec<Service>,
    pub agents: Vec<Service>,
    /// First sandbox uid of each agent (its range holds `AGENT_UIDS` uids).
    pub agent_uid_bases: Vec<u32>,
    pub database_url: String,
    /// The TLS files, when the stack runs with TLS.
    pub tls: Option<Tls>,
    /// The directory of enrolled agents (as the scheduler and the API read it).
    pub agents_dir: PathBuf,
    /// The ids of the agents, in the order of `agents`.
    pub agent_ids: Vec<String>,
    database: String,
    admin_url: String,
    http: Client,
}

impl Stack {
    pub fn start(options: StackOptions) -> Stack {
        let bin = PathBuf::from(env("FRESCO_BIN_DIR"));
        let shim = env("FRESCO_SHIM_PATH");
        let admin_url = env("FRESCO_TEST_DATABASE_URL");
        let database = format!("fresco_e2e_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::establish(&admin_url)
            .unwrap_or_else(|e| panic!("cannot reach PostgreSQL at FRESCO_TEST_DATABASE_URL: {e}"));
        diesel::sql_query(format!("CREATE DATABASE {database}"))
            .execute(&mut admin)
            .unwrap();
        let database_url = match admin_url.rsplit_once('/') {
            Some((base, _)) => format!("{base}/{database}"),
            None => panic!("FRESCO_TEST_DATABASE_URL has no database name"),
        };

        // Short: agents put unix sockets below it, and those paths are limited to 107 bytes.
        let dir = std::env::temp_dir().join(format!(
            "fe-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        ));
        std::fs::create_dir_all(&dir).unwrap();
        // What a deployment provisions: the scheduler's ticket key, the API's control-plane
        // key, and below one key per agent, enrolled with its URL. No shared secret.
        let (signing, verify) = key_pair(&dir, "ticket-signing");
        let (control_plane, control_plane_verify) = key_pair(&dir, "control-plane");
        let agents_dir = dir.join("agents");
        std::fs::create_dir_all(&agents_dir).unwrap();
        let tls = options.tls.then(|| Tls::make(&dir));
        let scheme = if tls.is_some() { "https" } else { "http" };
        let tls_section = tls.as_ref().map(Tls::section).unwrap_or_default();

        let api_port = free_port();
        let scheduler_ports: Vec<u16> = (0..options.schedulers).map(|_| free_port()).collect();
        let scheduler_urls: Vec<String> = scheduler_ports
            .iter()
            .map(|p| format!("{scheme}://127.0.0.1:{p}"))
            .collect();
        let common = format!(
            "[DEFAULT]\nauth_strategy = noauth\nstate_path = {state}\n\n[database]\nconnection = {database_url}\nmax_pool_size = 16\n\n\
             [oslo_policy]\npolicy_file = {dir}/policy.yaml\n\n\
             [internal_auth]\nticket_verify_key_file = {verify}\nagent_keys_dir = {agents}\n",
            state = dir.display(),
            dir = dir.display(),
            verify = verify.display(),
            agents = agents_dir.display(),
        );
        let api_config = dir.join("api.conf");
        // The API holds the control-plane key, never the ticket key.
        write(
            &api_config,
            &format!(
                "{common}control_plane_key_file = {}\n{tls_section}\n[api]\nbind_port = {api_port}\n\n[scheduler]\nurls = {}\n{}\n",
                control_plane.display(),
                scheduler_urls.join(", "),
                options.extra_config
            ),
        );
        run(Command::new(bin.join("fresco-api"))
            .arg("--config-file")
            .arg(&api_config)
            .arg("--db-sync"));
        let api = Service::spawn(
            "fresco-api",
            bin.join("fresco-api"),
            api_config,
            dir.join("api.log"),
            api_port,
            &tls,
        );
        let schedulers = scheduler_ports
            .iter()
            .enumerate()
            .map(|(i, port)| {
                let config = dir.join(format!("scheduler-{i}.conf"));
                // The scheduler holds the ticket key and the control-plane key's public half.
                write(
                    &config,
                    &format!(
                        "{common}ticket_signing_key_file = {}\ncontrol_plane_verify_key_file = {}\n{tls_section}\n\
                         [scheduler]\nbind_port = {port}\nurls = {}\nagent_down_time = 4\n{}\n",
                        signing.display(),
                        control_plane_verify.display(),
                        scheduler_urls.join(", "),
                        options.extra_config
                    ),
                );
                Service::spawn(&format!("fresco-scheduler-{i}"), bin.join("fresco-scheduler"), config, dir.join(format!("scheduler-{i}.log")), *port, &tls)
            })
            .collect();
        let agent_uid_bases: Vec<u32> = (0..options.agents).map(|_| agent_uid_base()).collect();
        let agent_ids: Vec<String> = (0..options.agents)
            .map(|i| format!("e2e-{}-{i}", &database[11..19]))
            .collect();
        let agents = agent_ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let uid_base = agent_uid_bases[i];
                let port = free_port();
                let state = dir.join(format!("a{i}"));
                std::fs::create_dir_all(&state).unwrap();
                // The agent's own key stays with it; its public half and URL are enrolled.
                let (key, public) = key_pair(&dir, &format!("agent-{i}"));
                write(
                    &agents_dir.join(format!("{id}.pem")),
                    &fresco_common::enrolment::render(
                        &format!("{scheme}://127.0.0.1:{port}"),
                        &std::fs::read_to_string(&public).unwrap(),
                    ),
                );
                let config = dir.join(format!("agent-{i}.conf"));
                write(
                    &config,
                    &format!(
                        "[DEFAULT]\nstate_path = {state}\n\n[internal_auth]\nticket_verify_key_file = {verify}\nagent_key_file = {key}\n{tls_section}\n\
                         [scheduler]\nurls = {urls}\n\n[agent]\nagent_id = {id}\nbind_port = {port}\napi_url = {scheme}://127.0.0.1:{api_port}\n\
                         shim_path = {shim}\nheartbeat_interval = 1\nmemory_mb = 4096\nidle_timeout = 120\nlog_sync_timeout_ms = 1000\n\
                         sandbox_uid_base = {uid_base}\nsandbox_uid_count = {AGENT_UIDS}\n{agent_config}\n{own_config}\n",
                        agent_config = options.agent_config,
                        own_config = options.agent_configs.get(i).map_or("", String::as_str),
                        state = state.display(),
                        verify = verify.display(),
                        key = key.display(),
                        urls = scheduler_urls.join(", "),
                    ),
                );
                Service::spawn(&format!("fresco-agent-{i}"), bin.join("fresco-agent"), config, dir.join(format!("agent-{i}.log")), port, &tls)
            })
            .collect();
        let stack = Stack {
            dir,
            api,
            schedulers,
            agents,
            agent_uid_bases,
            database_url,
            http: client(&tls, Duration::from_secs(60)),
            tls,
            agents_dir,
            agent_ids,
            database,
            admin_url,
        };
        stack.wait_for_agents(options.agents);
        stack.wait_for_active_scheduler();
        stack
    }

    /// Waits until one scheduler holds the leader lock (a fresh one starts as a standby).
    pub fn wait_for_active_scheduler(&self) {
        wait_until(Duration::from_secs(30), "an active scheduler", || {
            self.schedulers.iter().any(|s| {
                self.http
                    .get(format!("{}/healthcheck", s.url()))
                    .send()
                    .ok()
                    .and_then(|r| r.json::<Value>().ok())
                    .is_some_and(|body| body["role"] == "active")
            })
        });
    }

    /// Starts one more fresco-api process on the same database, schedulers and keys (another
    /// replica behind the same load balancer): the same configuration on a port of its own.
    pub fn start_api_replica(&self) -> Service {
        let port = free_port();
        let config = std::fs::read_to_string(&self.api.config).unwrap();
        let ours = format!("\n[api]\nbind_port = {}\n", self.api.port);
        assert!(config.contains(&ours), "the API's config names its port");
        let replica_config = self.dir.join(format!("api-{port}.conf"));
        write(
            &replica_config,
            &config.replace(&ours, &format!("\n[api]\nbind_port = {port}\n")),
        );
        Service::spawn(
            &format!("fresco-api-{port}"),
            self.api.binary.clone(),
            replica_config,
            self.dir.join(format!("api-{port}.log")),
            port,
            &self.tls,
        )
    }

    /// Waits until the scheduler has placed `n` agents up (as the admin API shows them).
    pub fn wait_for_agents(&self, n: usize) {
        wait_until(Duration::from_secs(30), &format!("{n} agents up"), || {
            let agents = self.get(ADMIN, "/v1/agents");
            agents["agents"]
                .as_array()
                .is_some_and(|a| a.iter().filter(|x| x["state"] == "up").count() >= n)
        });
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.api.url())
    }

    /// A client of this stack (trusting its CA when it runs with TLS).
    pub fn client(&self) -> Client {
        self.http.clone()
    }

    pub fn request(
        &self,
        method: reqwest::Method,
        token: &str,
        path: &str,
    ) -> reqwest::blocking::RequestBuilder {
        self.http
            .request(method, self.url(path))
            .header("x-auth-token", token)
    }

    /// GET returning JSON, asserting success.
    pub fn get(&self, token: &str, path: &str) -> Value {
        let response = self
            .request(reqwest::Method::GET, token, path)
            .send()
            .unwrap();
        let status = response.status();
        let body: Value = response.json().unwrap_or(Value::Null);
        assert!(status.is_success(), "GET {path} answered {status}: {body}");
        body
    }

    /// POST JSON, returning the response.
    pub fn post(&self, token: &str, path: &str, body: &Value) -> Response {
        self.request(reqwest::Method::POST, token, path)
            .json(body)
            .send()
            .unwrap()
    }

    /// Registers the default runtimes (python3, provided) as admin.
    pub fn register_runtimes(&self) {
        for (name, image, kind) in [
            ("python3", python_image().as_str(), "python"),
            ("provided", provided_image().as_str(), "provided"),
        ] {
            let response = self.post(
                ADMIN,
                "/v1/runtimes",
                &json!({"name": name, "image": image, "kind": kind}),
            );
            assert!(
                response.status().as_u16() == 201 || response.status().as_u16() == 409,
                "runtime {name}: {}",
                response.status()
            );
        }
    }

    /// Creates a function from a directory of tests/functions, returning its JSON.
    pub fn create_function(
        &self,
        token: &str,
        name: &str,
        sample: &str,
        runtime: &str,
        settings: Value,
    ) -> Value {
        let package = zip_dir(&functions_dir().join(sample));
        let mut metadata = json!({"name": name, "runtime": runtime});
        if let (Some(m), Some(s)) = (metadata.as_object_mut(), settings.as_object()) {
            m.extend(s.clone());
        }
        let form = function_form(&metadata, package);
        let response = self
            .request(reqwest::Method::POST, token, "/v1/functions")
            .multipart(form)
            .send()
            .unwrap();
        let status = response.status();
        let body: Value = response.json().unwrap_or(Value::Null);
        assert_eq!(status.as_u16(), 201, "creating {name}: {body}");
        body["function"].clone()
    }

    /// Invokes a function synchronously.
    pub fn invoke(&self, token: &str, function: &str, event: &Value) -> Response {
        self.post(token, &format!("/v1/functions/{function}/invoke"), event)
    }

    /// Polls an execution until it is in a terminal state; returns it.
    pub fn wait_execution(&self, token: &str, id: &str, limit: Duration) -> Value {
        let mut last = Value::Null;
        wait_until(limit, &format!("execution {id} to finish"), || {
            let response = self
                .request(reqwest::Method::GET, token, &format!("/v1/executions/{id}"))
                .send()
                .unwrap();
            if !response.status().is_success() {
                return false;
            }
            last = response.json::<Value>().unwrap()["execution"].clone();
            !matches!(last["status"].as_str(), Some("queued" | "running"))
        });
        last
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        for agent in &mut self.agents {
            agent.kill();
        }
        for scheduler in &mut self.schedulers {
            scheduler.kill();
        }
        self.api.kill();
        // The agents' containers carry the agent's label; a restarted agent reconciles them,
        // a test stack removes them itself.
        for id in &self.agent_ids {
            let label = format!("label=fresco.agent={id}");
            if let Ok(out) = Command::new("/usr/bin/docker")
                .args(["ps", "-aq", "--filter", &label])
                .output()
            {
                let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
                    .split_whitespace()
                    .map(str::to_owned)
                    .collect();
                if !ids.is_empty() {
                    Command::new("/usr/bin/docker")
                        .args(["rm", "-f"])
                        .args(&ids)
                        .output()
                        .ok();
                }
            }
        }
        if let Ok(mut admin) = PgConnection::establish(&self.admin_url) {
            diesel::sql_query(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.database
            ))
            .execute(&mut admin)
            .ok();
        }
        if !std::thread::panicking() {
            std::fs::remove_dir_all(&self.dir).ok();
        } else {
            eprintln!("stack state kept for inspection in {}", self.dir.display());
        }
    }
}

pub const ADMIN: &str = "admin:admin:admin";

/// The repository's sample functions.
pub fn functions_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("functions")
}

/// The multipart body of `POST /v1/functions`: `metadata` (JSON) and a zip `package`.
pub fn function_form(metadata: &Value, package: Vec<u8>) -> multipart::Form {
    multipart::Form::new()
        .part(
            "metadata",
            multipart::Part::text(metadata.to_string())
                .mime_str("application/json")
                .expect("application/json is a valid mime type"),
        )
        .part(
            "package",
            multipart::Part::bytes(package).file_name("code.zip"),
        )
}

/// A zip of every file under `dir` (executable bits kept).
pub fn zip_dir(dir: &Path) -> Vec<u8> {
    use std::os::unix::fs::PermissionsExt;
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&current)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let name = path
                .strip_prefix(dir)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            let options = zip::write::SimpleFileOptions::default().unix_permissions(mode & 0o777);
            writer.start_file(name, options).unwrap();
            writer.write_all(&std::fs::read(&path).unwrap()).unwrap();
        }
    }
    writer.finish().unwrap().into_inner()
}

fn run(command: &mut Command) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}
