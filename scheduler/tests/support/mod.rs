//! Test support: a fresh PostgreSQL database per test, scheduler processes (the real binary),
//! and in-test agents that verify their tickets and answer runs.
//!
//! PostgreSQL comes from `tools/lib/postgres.sh` (`pg_start`), whose URL is in
//! `FRESCO_DB_URL` (or `FRESCO_TEST_DATABASE_URL`, as `tools/test` sets it); without either
//! the default development URL is tried. An unreachable server
//! fails the test with instructions, never skips it.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use diesel::prelude::*;
use diesel::sql_types::{Bytea, Integer, Jsonb, Text, Uuid as SqlUuid};
use fresco_common::enrolment;
use fresco_common::scheduler_client::SchedulerClient;
use fresco_common::ticket::test_keys::{AGENT_PRIVATE, AGENT_PUBLIC, CONTROL_PLANE_PRIVATE};
use fresco_common::ticket::{
    sha256_hex, AgentSigner, ControlPlaneSigner, TicketSigner, TicketVerifier,
};
use fresco_common::tls::InternalTls;
use fresco_common::wire::{FunctionSpec, Heartbeat, RunRequest, RunResult, RunStatus};
use uuid::Uuid;

/// The development database URL of `tools/lib/postgres.sh`.
const DEFAULT_DB_URL: &str = "postgresql://fresco:fresco-dev@127.0.0.1:5439/fresco";

// Throwaway Ed25519 key pairs for tests only (`openssl genpkey -algorithm ed25519`).
pub const TICKET_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIPDphl9SqanFK+zTSluaX26jfvxzKtsDBf4ntwe+UDy7\n-----END PRIVATE KEY-----\n";
pub const TICKET_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEALN3/XuOh0wrB4/jbsZwWdiMRVZL2PUepzf18DzEv6D4=\n-----END PUBLIC KEY-----\n";
pub const OTHER_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIE+YD51OEa/oTZQobwczY3jYf5TnJNpexaMUYG5ZDUlQ\n-----END PRIVATE KEY-----\n";

/// The scheduler's ticket signer (tests sign tickets the way the scheduler does).
pub fn signer() -> Arc<TicketSigner> {
    Arc::new(TicketSigner::from_pem(TICKET_PRIVATE.as_bytes(), 30).expect("test signing key"))
}

/// The API's control-plane signer.
pub fn control_plane() -> Arc<ControlPlaneSigner> {
    Arc::new(
        ControlPlaneSigner::from_pem(CONTROL_PLANE_PRIVATE.as_bytes(), "fresco-api")
            .expect("control-plane key"),
    )
}

/// Agent `id`'s credential: the test agents share one key pair, each enrolled under its own id
/// and URL (a test of impersonation enrols another key).
pub fn agent_signer(id: &str) -> Arc<AgentSigner> {
    Arc::new(AgentSigner::from_pem(AGENT_PRIVATE.as_bytes(), id).expect("agent key"))
}

/// The agents directory of each scheduler process by its URL, so that a test agent enrols
/// itself with the schedulers it reports to.
fn enrolment_dirs() -> &'static Mutex<HashMap<String, PathBuf>> {
    static DIRS: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    DIRS.get_or_init(Mutex::default)
}

/// Enrols agent `id` at `url` with `public_key` (PEM) in a scheduler's agents directory.
pub fn enrol(agents_dir: &std::path::Path, id: &str, url: &str, public_key: &str) {
    let path = agents_dir.join(format!("{id}.pem"));
    let partial = agents_dir.join(format!(".{id}.{}", Uuid::new_v4().simple()));
    std::fs::write(&partial, enrolment::render(url, public_key)).expect("write enrolment");
    std::fs::rename(&partial, &path).expect("enrol");
}

/// A fresh database with the migrations applied, dropped at the end.
pub struct TestDb {
    pub url: String,
    name: String,
    admin_url: String,
}

impl TestDb {
    pub fn create() -> Self {
        let admin_url = std::env::var("FRESCO_TEST_DATABASE_URL")
            .or_else(|_| std::env::var("FRESCO_DB_URL"))
            .unwrap_or_else(|_| DEFAULT_DB_URL.into());
        let mut admin = PgConnection::establish(&admin_url).unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is unreachable at {}: {e}\n\
                 start it with: source tools/lib/common.sh && source tools/lib/postgres.sh && pg_start \
                 (and export FRESCO_DB_URL)",
                redact(&admin_url)
            )
        });
        let name = format!("fresco_sched_{}", Uuid::new_v4().simple());
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .expect("create the test database");
        let (base, _) = admin_url.rsplit_once('/').expect("database url has a path");
        let url = format!("{base}/{name}");
        let mut conn = PgConnection::establish(&url).expect("connect to the test database");
        fresco_store::migrate(&mut conn).expect("apply the migrations");
        Self {
            url,
            name,
            admin_url,
        }
    }

    pub fn conn(&self) -> PgConnection {
        PgConnection::establish(&self.url).expect("connect to the test database")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Ok(mut admin) = PgConnection::establish(&self.admin_url) {
            let _ = diesel::sql_query(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .execute(&mut admin);
        }
    }
}

/// The URL without its password.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// A spec for test executions of one function.
pub fn spec(project: &str, function_id: Uuid, memory_mb: i32) -> FunctionSpec {
    FunctionSpec {
        project_id: project.into(),
        function_id,
        function_name: "echo".into(),
        version: 0,
        image: "fresco/python3:test".into(),
        runtime_kind: "python".into(),
        handler: "main.handler".into(),
        memory_mb,
        timeout_s: 5,
        environment: Default::default(),
        code_sha256: None,
        network: false,
        revision: 0,
    }
}

/// Inserts queued async executions the way the API does (with NOTIFY in the same
/// transaction); returns their ids.
pub fn enqueue(conn: &mut PgConnection, spec: &FunctionSpec, inputs: &[String]) -> Vec<Uuid> {
    let spec_json = serde_json::to_value(spec).expect("spec json");
    conn.transaction(|conn| {
        let mut ids = Vec::new();
        for input in inputs {
            let id = Uuid::new_v4();
            diesel::sql_query(
                "INSERT INTO executions (id, project_id, function_id, status, is_async, input, \
                 input_size, spec, memory_mb) VALUES ($1, $2, $3, 'queued', true, $4, $5, $6, $7)",
            )
            .bind::<SqlUuid, _>(id)
            .bind::<Text, _>(&spec.project_id)
            .bind::<SqlUuid, _>(spec.function_id)
            .bind::<Bytea, _>(input.as_bytes())
            .bind::<Integer, _>(input.len() as i32)
            .bind::<Jsonb, _>(&spec_json)
            .bind::<Integer, _>(spec.memory_mb)
            .execute(conn)?;
            ids.push(id);
        }
        diesel::sql_query("NOTIFY fresco_executions").execute(conn)?;
        Ok::<_, diesel::result::Error>(ids)
    })
    .expect("enqueue executions")
}

/// Inserts `n` queued executions in one statement (for benchmarks).
pub fn enqueue_bulk(conn: &mut PgConnection, spec: &FunctionSpec, n: i32) {
    let spec_json = serde_json::to_value(spec).expect("spec json");
    conn.transaction(|conn| {
        diesel::sql_query(
            "INSERT INTO executions (id, project_id, function_id, status, is_async, input, \
             input_size, spec, memory_mb) SELECT gen_random_uuid(), $1, $2, 'queued', true, \
             convert_to('{\"n\": ' || i || '}', 'UTF8'), 10, $3, $4 FROM generate_series(1, $5) AS i",
        )
        .bind::<Text, _>(&spec.project_id)
        .bind::<SqlUuid, _>(spec.function_id)
        .bind::<Jsonb, _>(&spec_json)
        .bind::<Integer, _>(spec.memory_mb)
        .bind::<Integer, _>(n)
        .execute(conn)?;
        diesel::sql_query("NOTIFY fresco_executions").execute(conn)?;
        Ok::<_, diesel::result::Error>(())
    })
    .expect("enqueue executions");
}

/// One execution row as the tests read it.
#[derive(Debug, Clone, QueryableByName)]
pub struct Row {
    #[diesel(sql_type = SqlUuid)]
    pub id: Uuid,
    #[diesel(sql_type = Text)]
    pub status: String,
    #[diesel(sql_type = Integer)]
    pub attempts: i32,
    #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
    pub agent_id: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
    pub result: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
    pub error: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
    pub logs: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    pub timestamps_set: bool,
}

pub fn rows(conn: &mut PgConnection) -> Vec<Row> {
    diesel::sql_query(
        "SELECT id, status, attempts, agent_id, result, error::text AS error, logs, \
         (started_at IS NOT NULL AND finished_at IS NOT NULL) AS timestamps_set \
         FROM executions ORDER BY created_at",
    )
    .load(conn)
    .expect("read executions")
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// Executions not yet in a terminal state.
pub fn unfinished(conn: &mut PgConnection) -> i64 {
    diesel::sql_query("SELECT count(*) AS n FROM executions WHERE status IN ('queued', 'running')")
        .get_result::<Count>(conn)
        .map(|c| c.n)
        .expect("count executions")
}

/// Polls `check` every 20 ms until it holds or `timeout` passes.
pub async fn wait_until(timeout: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Files shared by the processes of one test: keys and configs.
pub struct TestDir {
    pub path: PathBuf,
}

impl TestDir {
    pub fn new() -> Self {
        let path = std::env::temp_dir().join(format!("fresco-sched-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&path).expect("temp dir");
        std::fs::write(path.join("signing.pem"), TICKET_PRIVATE).expect("key");
        std::fs::write(path.join("verify.pem"), TICKET_PUBLIC).expect("key");
        std::fs::write(
            path.join("control-plane-verify.pem"),
            fresco_common::ticket::test_keys::CONTROL_PLANE_PUBLIC,
        )
        .expect("key");
        std::fs::create_dir_all(path.join("agents")).expect("agents dir");
        Self { path }
    }

    /// The enrolled agents of the schedulers of this test.
    pub fn agents(&self) -> PathBuf {
        self.path.join("agents")
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A scheduler process (the real binary).
pub struct SchedulerProc {
    pub url: String,
    pub child: Child,
    pub log: PathBuf,
}

impl SchedulerProc {
    /// Starts a scheduler on a free port; `extra` lines go into its `[scheduler]` section.
    pub fn spawn(dir: &TestDir, db: &TestDb, extra: &str) -> Self {
        let port = free_port();
        let name = format!("scheduler-{port}");
        let config = dir.path.join(format!("{name}.conf"));
        let text = format!(
            "[DEFAULT]\ndebug = false\n\
             [database]\nconnection = {db}\nmax_pool_size = 8\n\
             [internal_auth]\nticket_signing_key_file = {d}/signing.pem\n\
             control_plane_verify_key_file = {d}/control-plane-verify.pem\nticket_ttl = 30\n\
             agent_keys_dir = {d}/agents\n\
             [scheduler]\nbind_host = 127.0.0.1\nbind_port = {port}\nagent_down_time = 2\n\
             leader_check_interval_ms = 200\nasync_poll_interval_ms = 500\nlease_grace = 5\n\
             workers = 2\nagent_persist_interval_ms = 200\n{extra}\n",
            db = db.url,
            d = dir.path.display(),
        );
        std::fs::write(&config, text).expect("write config");
        let log = dir.path.join(format!("{name}.log"));
        let log_file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_fresco-scheduler"))
            .arg("--config-file")
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log file"))
            .stderr(log_file)
            .spawn()
            .expect("start fresco-scheduler");
        let url = format!("http://127.0.0.1:{port}");
        enrolment_dirs()
            .lock()
            .expect("enrolment dirs")
            .insert(url.clone(), dir.agents());
        Self { url, child, log }
    }

    pub fn log_text(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut text);
        }
        text
    }

    /// The role from /healthcheck, or `None` while it does not answer.
    pub async fn role(&mut self) -> Option<String> {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("scheduler exited with {status}:\n{}", self.log_text());
        }
        let body: serde_json::Value = reqwest::get(format!("{}/healthcheck", self.url))
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        body["role"].as_str().map(str::to_owned)
    }

    pub async fn wait_role(&mut self, role: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if self.role().await.as_deref() == Some(role) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "scheduler {} did not become {role} within {timeout:?}:\n{}",
                self.url,
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Kills the process (SIGKILL, by its pid) as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for SchedulerProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// How a test agent answers runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behavior {
    /// Echo the payload at once. Two payloads are special: `{"sleep_ms": N}` answers after N
    /// ms, and `"emit-nul"` answers as a function whose output holds NUL characters would.
    Echo,
    /// Echo after a delay.
    Delay(Duration),
    /// Never answer.
    Hang,
    /// Answer 503.
    Fail,
}

/// What a test agent saw.
#[derive(Default)]
pub struct Seen {
    /// Executions received, in order, with the time they arrived.
    pub runs: Mutex<Vec<(Uuid, Instant)>>,
    pub rejected_tickets: AtomicU64,
    pub running: AtomicI64,
    pub max_running: AtomicI64,
}

impl Seen {
    pub fn count(&self) -> usize {
        self.runs.lock().expect("runs").len()
    }
    pub fn ids(&self) -> Vec<Uuid> {
        self.runs
            .lock()
            .expect("runs")
            .iter()
            .map(|r| r.0)
            .collect()
    }
}

struct AgentState {
    id: String,
    verifier: TicketVerifier,
    behavior: Behavior,
    seen: Arc<Seen>,
}

/// An in-test agent: POST /v1/run with ticket verification, and heartbeats to the schedulers.
pub struct TestAgent {
    pub id: String,
    pub url: String,
    pub seen: Arc<Seen>,
    server: actix_web::dev::ServerHandle,
    heartbeats: tokio::task::JoinHandle<()>,
}

impl TestAgent {
    pub async fn start(
        id: &str,
        memory_mb: i64,
        behavior: Behavior,
        schedulers: &[String],
    ) -> Self {
        let seen = Arc::new(Seen::default());
        let state = web::Data::new(AgentState {
            id: id.to_owned(),
            verifier: TicketVerifier::from_pem(TICKET_PUBLIC.as_bytes()).expect("verify key"),
            behavior,
            seen: seen.clone(),
        });
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .route("/v1/run", web::post().to(run))
        })
        .workers(2)
        .disable_signals()
        .shutdown_timeout(0)
        .bind(("127.0.0.1", 0))
        .expect("bind test agent");
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        let url = format!("http://{addr}");
        for scheduler in schedulers {
            let dir = enrolment_dirs()
                .lock()
                .expect("enrolment dirs")
                .get(scheduler)
                .cloned();
            if let Some(dir) = dir {
                enrol(&dir, id, &url, AGENT_PUBLIC);
            }
        }
        let client =
            SchedulerClient::for_agent(schedulers, agent_signer(id), InternalTls::disabled())
                .expect("client");
        let heartbeat = Heartbeat {
            agent_id: id.to_owned(),
            host: "localhost".into(),
            url: url.clone(),
            memory_mb_total: memory_mb,
            memory_mb_reserved: 0,
            cpus: 2,
            running: 0,
            warm: vec![],
            images: vec![],
            version: "test".into(),
            engine_down: false,
            retired_seq: None,
            prewarmed: Vec::new(),
        };
        let heartbeats = tokio::spawn(async move {
            loop {
                if let Err(e) = client.heartbeat(&heartbeat).await {
                    eprintln!("test agent heartbeat failed: {e}");
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        Self {
            id: id.to_owned(),
            url,
            seen,
            server: handle,
            heartbeats,
        }
    }

    /// Goes silent: stops heartbeats but keeps its connections (a hung node).
    pub fn silence(&self) {
        self.heartbeats.abort();
    }

    /// Dies: stops heartbeats and drops every connection, answering nothing more.
    /// Its port closes but it keeps heartbeating (a broken listener, a firewall): placement
    /// still sees it up, and every call to it fails to connect.
    pub async fn stop_serving(&self) {
        self.server.stop(false).await;
    }

    pub async fn kill(&self) {
        self.heartbeats.abort();
        self.server.stop(false).await;
    }
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        self.heartbeats.abort();
        let server = self.server.clone();
        tokio::spawn(async move { server.stop(false).await });
    }
}

async fn run(state: web::Data<AgentState>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let token = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let claims = match state.verifier.verify(token, Some(&state.id)) {
        Ok(claims) => claims,
        Err(e) => {
            state.seen.rejected_tickets.fetch_add(1, Ordering::SeqCst);
            return HttpResponse::Unauthorized().body(format!("invalid ticket: {e}"));
        }
    };
    let request: RunRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return HttpResponse::BadRequest().body(format!("invalid body: {e}")),
    };
    // As a real agent does: the ticket is for this payload only.
    if claims.payload_sha256 != sha256_hex(request.payload.get().as_bytes()) {
        state.seen.rejected_tickets.fetch_add(1, Ordering::SeqCst);
        return HttpResponse::Unauthorized().body("ticket issued for another payload");
    }
    state
        .seen
        .runs
        .lock()
        .expect("runs")
        .push((claims.sub, Instant::now()));
    let running = state.seen.running.fetch_add(1, Ordering::SeqCst) + 1;
    state.seen.max_running.fetch_max(running, Ordering::SeqCst);
    let sleep_ms = serde_json::from_str::<serde_json::Value>(request.payload.get())
        .ok()
        .and_then(|v| v.get("sleep_ms").and_then(serde_json::Value::as_u64));
    let answer = match state.behavior {
        Behavior::Echo => {
            if let Some(ms) = sleep_ms {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            None
        }
        Behavior::Delay(d) => {
            tokio::time::sleep(d).await;
            None
        }
        Behavior::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            None
        }
        Behavior::Fail => Some(HttpResponse::ServiceUnavailable().body("agent is broken")),
    };
    state.seen.running.fetch_sub(1, Ordering::SeqCst);
    if let Some(answer) = answer {
        return answer;
    }
    if request.payload.get() == "\"emit-nul\"" {
        return HttpResponse::Ok().json(RunResult {
            execution_id: claims.sub,
            status: RunStatus::Failed,
            response: Some("raw\0result".into()),
            error: Some(fresco_common::wire::FunctionError {
                error_type: "Nul\0Error".into(),
                error_message: "bad\0message".into(),
                stack_trace: vec!["frame\0one".into()],
            }),
            duration_ms: 1.0,
            init_ms: None,
            max_memory_mb: Some(10.0),
            cold: false,
            logs: "before\0after".into(),
            cpu_ms: None,
            output_truncated: false,
            retry_safe: false,
            prewarmed: false,
        });
    }
    HttpResponse::Ok().json(RunResult {
        execution_id: claims.sub,
        status: RunStatus::Succeeded,
        response: Some(request.payload.get().to_owned()),
        error: None,
        duration_ms: 1.0,
        init_ms: None,
        max_memory_mb: Some(10.0),
        cold: false,
        logs: format!("ran on {}", state.id),
        cpu_ms: Some(0.5),
        output_truncated: false,
        retry_safe: false,
        prewarmed: false,
    })
}

/// Counts of each value.
pub fn tally<T: std::hash::Hash + Eq>(items: impl IntoIterator<Item = T>) -> HashMap<T, usize> {
    let mut counts = HashMap::new();
    for item in items {
        *counts.entry(item).or_insert(0) += 1;
    }
    counts
}
