//! The harness of the Keystone-mode API tests: the REAL Keystone seeded by
//! `tools/lib/keystone.sh seed` (credentials from its env file), a fresh database per test on
//! the REAL PostgreSQL (`FRESCO_TEST_DATABASE_URL`), and the real application
//! (`service::build_state` + `http::app`) driven in-process with `auth_strategy = keystone`.
//!
//! Nothing here skips: a missing Keystone, env file or database fails the test with a message
//! saying how to provide it.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::rc::Rc;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use actix_web::http::header::HeaderMap;
use actix_web::http::{Method, StatusCode};
use actix_web::test::{self, TestRequest};
use actix_web::web;
use bytes::Bytes;
use diesel::{Connection, PgConnection, RunQueryDsl};
use fresco_api::http::AppState;
use fresco_common::conf::RawConfig;
use futures_util::future::LocalBoxFuture;
use serde_json::{json, Value};
use uuid::Uuid;

/// `[keystone_authtoken] www_authenticate_uri` of every test configuration: deliberately not
/// the `auth_url`, so a 401's `WWW-Authenticate` is seen to come from this option.
pub const WWW_AUTHENTICATE_URI: &str = "https://identity.fresco.test:5000/v3";

const DB_ENV: &str = "FRESCO_TEST_DATABASE_URL";
const KEYSTONE_ENV: &str = "FRESCO_KEYSTONE_ENV";

// --- The seeded Keystone ----------------------------------------------------------------------

/// What `tools/lib/keystone.sh seed` wrote to its env file.
pub struct Env {
    vars: BTreeMap<String, String>,
    pub path: PathBuf,
}

impl Env {
    fn var(&self, name: &str) -> &str {
        self.vars.get(name).map(String::as_str).unwrap_or_else(|| {
            panic!(
                "{} has no {name}: re-seed with `bash tools/lib/keystone.sh seed`",
                self.path.display()
            )
        })
    }

    /// `http://127.0.0.1:5000/v3`
    pub fn keystone_url(&self) -> &str {
        self.var("KEYSTONE_URL")
    }
    pub fn script(&self) -> &str {
        self.var("KEYSTONE_SCRIPT")
    }
    pub fn state_dir(&self) -> &str {
        self.var("FRESCO_STATE")
    }
    pub fn project_id(&self, project: Project) -> &str {
        self.var(match project {
            Project::A => "FRESCO_TEST_PROJECT_A_ID",
            Project::B => "FRESCO_TEST_PROJECT_B_ID",
        })
    }
    pub fn service_user(&self) -> (&str, &str, &str) {
        (
            self.var("FRESCO_SERVICE_USER"),
            self.var("FRESCO_SERVICE_PASSWORD"),
            self.var("FRESCO_SERVICE_PROJECT"),
        )
    }
}

fn env_file_path() -> PathBuf {
    if let Ok(path) = std::env::var(KEYSTONE_ENV) {
        if !path.trim().is_empty() {
            return PathBuf::from(path);
        }
    }
    let state = std::env::var("FRESCO_STATE")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.state"));
    state.join("keystone/credentials.env")
}

/// The env file, read once. Its absence fails the test, saying how to create it.
pub fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        let path = env_file_path();
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "cannot read the Keystone credentials {} ({e}): these tests need the real Keystone; \
                 start and seed it with `bash tools/lib/keystone.sh start && bash tools/lib/keystone.sh seed` \
                 (or set {KEYSTONE_ENV} to its env file)",
                path.display()
            )
        });
        let vars = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        Env { vars, path }
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Project {
    A,
    B,
}

/// A seeded test user with the scope its tokens get.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Persona {
    ReaderA,
    MemberA,
    /// The admin role on project A: A's own administrator, not the cloud's.
    AdminA,
    ReaderB,
    MemberB,
    AdminB,
    /// The admin role on the cloud admin project (`admin`; Keystone marks its tokens
    /// `is_admin_project`).
    CloudAdmin,
    /// The admin role, system-scoped.
    SystemAdmin,
    /// The reader role, system-scoped.
    SystemReader,
}

/// What a persona's token is scoped to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scoped {
    Project(Project),
    /// The cloud admin project.
    AdminProject,
    System,
}

impl Persona {
    pub fn scope(self) -> Scoped {
        match self {
            Persona::ReaderA | Persona::MemberA | Persona::AdminA => Scoped::Project(Project::A),
            Persona::ReaderB | Persona::MemberB | Persona::AdminB => Scoped::Project(Project::B),
            Persona::CloudAdmin => Scoped::AdminProject,
            Persona::SystemAdmin | Persona::SystemReader => Scoped::System,
        }
    }

    /// `a-reader`, `b-admin`, ...: for names of objects a persona creates.
    pub fn slug(self) -> &'static str {
        match self {
            Persona::ReaderA => "a-reader",
            Persona::MemberA => "a-member",
            Persona::AdminA => "a-admin",
            Persona::ReaderB => "b-reader",
            Persona::MemberB => "b-member",
            Persona::AdminB => "b-admin",
            Persona::CloudAdmin => "cloud-admin",
            Persona::SystemAdmin => "system-admin",
            Persona::SystemReader => "system-reader",
        }
    }

    /// (user, password, project name or "" for a system scope).
    fn credentials(self) -> (&'static str, &'static str, &'static str) {
        let env = env();
        match self.scope() {
            Scoped::Project(project) => {
                let (p, role) = self.slug().split_once('-').expect("slug is project-role");
                let prefix = format!(
                    "FRESCO_TEST_{}_{}",
                    p.to_ascii_uppercase(),
                    role.to_ascii_uppercase()
                );
                let name = match project {
                    Project::A => env.var("FRESCO_TEST_PROJECT_A"),
                    Project::B => env.var("FRESCO_TEST_PROJECT_B"),
                };
                (
                    env.var(&format!("{prefix}_USER")),
                    env.var(&format!("{prefix}_PASSWORD")),
                    name,
                )
            }
            Scoped::AdminProject => (
                env.var("KEYSTONE_ADMIN_USER"),
                env.var("KEYSTONE_ADMIN_PASSWORD"),
                env.var("KEYSTONE_ADMIN_PROJECT"),
            ),
            Scoped::System => match self {
                Persona::SystemReader => (
                    env.var("FRESCO_SYSTEM_READER_USER"),
                    env.var("FRESCO_SYSTEM_READER_PASSWORD"),
                    "",
                ),
                _ => (
                    env.var("KEYSTONE_ADMIN_USER"),
                    env.var("KEYSTONE_ADMIN_PASSWORD"),
                    "",
                ),
            },
        }
    }
}

/// A token Keystone issued.
#[derive(Debug, Clone)]
pub struct Token {
    pub value: String,
    pub user_id: String,
    pub project_id: String,
    pub expires_at: String,
}

/// A client for Keystone; build one per test (reqwest clients belong to one runtime).
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(180))
        .build()
        .expect("reqwest client")
}

/// `POST /v3/auth/tokens` with `body`: the token, or Keystone's refusal (status and body).
/// A dropped connection or a 5xx (Keystone under heavy load) is tried again, a few times.
async fn try_issue(url: &str, body: &Value) -> Result<Token, (u16, String)> {
    let client = http();
    let mut last = (0, String::new());
    for _ in 0..3 {
        match client
            .post(format!("{url}/auth/tokens?nocatalog"))
            .json(body)
            .send()
            .await
        {
            Ok(response) if response.status() == reqwest::StatusCode::CREATED => {
                let value = response
                    .headers()
                    .get("x-subject-token")
                    .and_then(|v| v.to_str().ok())
                    .expect("x-subject-token")
                    .to_owned();
                let doc: Value = response.json().await.expect("token document");
                let text = |pointer: &str| doc.pointer(pointer).and_then(Value::as_str);
                return Ok(Token {
                    value,
                    user_id: text("/token/user/id").expect("user id").to_owned(),
                    project_id: text("/token/project/id").unwrap_or_default().to_owned(),
                    expires_at: text("/token/expires_at").expect("expires_at").to_owned(),
                });
            }
            Ok(response) if !response.status().is_server_error() => {
                let status = response.status().as_u16();
                return Err((status, response.text().await.unwrap_or_default()));
            }
            Ok(response) => last = (response.status().as_u16(), String::new()),
            Err(e) => last = (0, e.to_string()),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(last)
}

/// A token, or a failed test saying how to get Keystone running.
async fn issue(url: &str, body: &Value, who: &str) -> Token {
    try_issue(url, body).await.unwrap_or_else(|(status, text)| {
        panic!(
            "cannot get a token for {who} from keystone {url} ({status} {text}): is it running \
             and seeded? `bash tools/lib/keystone.sh start && bash tools/lib/keystone.sh seed`"
        )
    })
}

fn password_body(user: &str, password: &str, project: &str) -> Value {
    json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": user, "domain": {"id": "default"}, "password": password}}},
        "scope": {"project": {"name": project, "domain": {"id": "default"}}}
    }})
}

/// A new token for `persona` (project- or system-scoped, as its persona says), from the
/// seeded Keystone.
pub async fn fresh_token(persona: Persona) -> Token {
    let (user, password, project) = persona.credentials();
    let body = match persona.scope() {
        Scoped::System => json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": user, "domain": {"id": "default"}, "password": password}}},
            "scope": {"system": {"all": true}}
        }}),
        _ => password_body(user, password, project),
    };
    let token = issue(env().keystone_url(), &body, user).await;
    match persona.scope() {
        Scoped::Project(p) => assert_eq!(
            token.project_id,
            env().project_id(p),
            "{user}'s token is scoped to another project"
        ),
        Scoped::AdminProject => assert!(!token.project_id.is_empty(), "{user}: no project"),
        Scoped::System => assert!(token.project_id.is_empty(), "{user}: not system-scoped"),
    }
    token
}

/// An unscoped token of `persona`'s user (the seeded users have no default project).
pub async fn unscoped_token(persona: Persona) -> String {
    let (user, password, _) = persona.credentials();
    let body = json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": user, "domain": {"id": "default"}, "password": password}}}}});
    let token = issue(env().keystone_url(), &body, user).await;
    assert!(
        token.project_id.is_empty(),
        "{user}'s token got scoped to a default project"
    );
    token.value
}

/// A token for `persona` shared by the tests of this binary (issued once).
pub async fn token(persona: Persona) -> String {
    static TOKENS: Mutex<BTreeMap<Persona, String>> = Mutex::new(BTreeMap::new());
    if let Some(token) = TOKENS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&persona)
    {
        return token.clone();
    }
    let value = fresh_token(persona).await.value;
    TOKENS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(persona)
        .or_insert(value)
        .clone()
}

/// The service user's token, to ask Keystone directly (issued once per test binary).
pub async fn service_token() -> String {
    static TOKEN: Mutex<Option<String>> = Mutex::new(None);
    if let Some(token) = TOKEN.lock().unwrap_or_else(|e| e.into_inner()).clone() {
        return token;
    }
    let (user, password, project) = env().service_user();
    let value = issue(
        env().keystone_url(),
        &password_body(user, password, project),
        user,
    )
    .await
    .value;
    TOKEN
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert(value)
        .clone()
}

/// Keystone's own verdict on `token` (`GET /v3/auth/tokens`): 200 valid, 404 not.
pub async fn keystone_verdict(token: &str) -> u16 {
    let service = service_token().await;
    http()
        .get(format!("{}/auth/tokens?nocatalog", env().keystone_url()))
        .header("x-auth-token", service)
        .header("x-subject-token", token)
        .send()
        .await
        .expect("keystone answers")
        .status()
        .as_u16()
}

/// Revokes `token` (`DELETE /v3/auth/tokens`, the token revoking itself).
pub async fn revoke(token: &str) {
    let response = http()
        .delete(format!("{}/auth/tokens", env().keystone_url()))
        .header("x-auth-token", token)
        .header("x-subject-token", token)
        .send()
        .await
        .expect("keystone answers");
    assert_eq!(
        response.status().as_u16(),
        204,
        "revocation refused: {}",
        response.text().await.unwrap_or_default()
    );
}

/// A token of `owner`'s user and project that Keystone issued to expire about `lifetime`
/// from now: issued with an application credential expiring then (Keystone caps the token's
/// expiry at the credential's). Returns the token, its expiry and the credential's id (to
/// delete it). A Keystone too slow to issue it with half its life left is asked again with
/// a longer lifetime.
pub async fn short_lived_token(
    owner: &Token,
    lifetime: Duration,
) -> (Token, chrono::DateTime<chrono::Utc>, String) {
    let url = env().keystone_url();
    let mut lifetime = lifetime;
    for _ in 0..4 {
        let expires = chrono::Utc::now() + chrono::Duration::from_std(lifetime).expect("lifetime");
        let name = format!("fresco-kstest-{}", Uuid::new_v4().simple());
        let response = http()
            .post(format!(
                "{url}/users/{}/application_credentials",
                owner.user_id
            ))
            .header("x-auth-token", &owner.value)
            .json(&json!({"application_credential": {
                "name": name, "expires_at": expires.format("%Y-%m-%dT%H:%M:%SZ").to_string()}}))
            .send()
            .await
            .expect("keystone answers");
        let status = response.status().as_u16();
        let doc: Value = response.json().await.unwrap_or_default();
        if status != 201 {
            // 400 when Keystone got to it after the expiry: too slow for this lifetime.
            assert_eq!(status, 400, "application credential refused: {doc}");
            lifetime *= 2;
            continue;
        }
        let credential = |field: &str| {
            doc["application_credential"][field]
                .as_str()
                .expect("credential field")
                .to_owned()
        };
        let (id, secret) = (credential("id"), credential("secret"));
        let body = json!({"auth": {"identity": {
            "methods": ["application_credential"],
            "application_credential": {"id": id, "secret": secret}
        }}});
        if let Ok(token) = try_issue(url, &body).await {
            let expiry = chrono::DateTime::parse_from_rfc3339(&token.expires_at)
                .expect("expires_at")
                .with_timezone(&chrono::Utc);
            assert!(
                expiry <= expires,
                "token expires at {expiry}, after its credential ({expires})"
            );
            let left = (expiry - chrono::Utc::now()).to_std().unwrap_or_default();
            if left >= lifetime / 2 {
                return (token, expiry, id);
            }
        }
        delete_application_credential(owner, &id).await;
        lifetime *= 2;
    }
    panic!("keystone is too slow to issue a short-lived token")
}

pub async fn delete_application_credential(owner: &Token, id: &str) {
    let status = http()
        .delete(format!(
            "{}/users/{}/application_credentials/{id}",
            env().keystone_url(),
            owner.user_id
        ))
        .header("x-auth-token", &owner.value)
        .send()
        .await
        .expect("keystone answers")
        .status();
    assert_eq!(status.as_u16(), 204, "cannot delete application credential");
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A second Keystone on its own port, sharing the seeded one's database and keys (so it
/// accepts the same tokens), started and stopped with `tools/lib/keystone.sh`, which ends
/// only the uwsgi it started for this port. Stopped on drop, also when the test fails.
pub struct SecondKeystone {
    pub port: u16,
}

impl SecondKeystone {
    pub fn start() -> SecondKeystone {
        let keystone = SecondKeystone { port: free_port() };
        keystone.run("start");
        keystone
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/v3", self.port)
    }

    /// Runs `keystone.sh COMMAND` for this port; panics with its output on failure.
    pub fn run(&self, command: &str) {
        let env = env();
        let output = Command::new("bash")
            .arg(env.script())
            .arg(command)
            .env("KEYSTONE_PORT", self.port.to_string())
            .env("FRESCO_STATE", env.state_dir())
            .output()
            .expect("bash runs");
        assert!(
            output.status.success(),
            "keystone.sh {command} on port {} failed: {}{}",
            self.port,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Whether anything accepts connections on the port.
    pub fn listening(&self) -> bool {
        std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
    }
}

impl Drop for SecondKeystone {
    fn drop(&mut self) {
        let env = env();
        let _ = Command::new("bash")
            .arg(env.script())
            .arg("stop")
            .env("KEYSTONE_PORT", self.port.to_string())
            .env("FRESCO_STATE", env.state_dir())
            .output();
    }
}

// --- The database -----------------------------------------------------------------------------

fn database_url() -> String {
    match std::env::var(DB_ENV) {
        Ok(url) if !url.trim().is_empty() => url,
        _ => panic!(
            "{DB_ENV} is not set: these tests need the real PostgreSQL with a role that may CREATE \
             DATABASE, e.g. {DB_ENV}=postgresql://fresco:fresco-dev@127.0.0.1:5439/fresco (start it with \
             `bash -c 'source tools/lib/common.sh; source tools/lib/postgres.sh; pg_start'`)"
        ),
    }
}

fn with_database(url: &str, database: &str) -> String {
    let (main, query) = url
        .split_once('?')
        .map_or((url, None), |(m, q)| (m, Some(q)));
    let scheme_end = main.find("://").map_or(0, |i| i + 3);
    let authority_end = main[scheme_end..]
        .find('/')
        .map_or(main.len(), |i| scheme_end + i);
    let mut out = format!("{}/{database}", &main[..authority_end]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

fn connect(url: &str) -> PgConnection {
    PgConnection::establish(url)
        .unwrap_or_else(|e| panic!("cannot connect to the test PostgreSQL ({DB_ENV}): {e}"))
}

/// A database of its own with the migrations applied; dropped (FORCE) with this.
pub struct TestDb {
    pub url: String,
    name: String,
    base: String,
}

impl TestDb {
    pub fn create() -> TestDb {
        let base = database_url();
        let name = format!("fresco_kstest_{}", Uuid::new_v4().simple());
        diesel::sql_query(format!("CREATE DATABASE \"{name}\""))
            .execute(&mut connect(&base))
            .unwrap_or_else(|e| {
                panic!("cannot create database {name} ({DB_ENV} needs CREATEDB): {e}")
            });
        let url = with_database(&base, &name);
        fresco_store::migrate(&mut connect(&url))
            .unwrap_or_else(|e| panic!("migrations failed on {name}: {e}"));
        TestDb { url, name, base }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Ok(mut admin) = PgConnection::establish(&self.base) {
            let _ = diesel::sql_query(format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.name
            ))
            .execute(&mut admin);
        }
    }
}

// --- The application --------------------------------------------------------------------------

/// A control-plane key, so that invocations are configured (and reach the scheduler, which
/// does not run: sync invocations answer 503 after authorization).
fn signing_key() -> &'static Path {
    static KEY: OnceLock<PathBuf> = OnceLock::new();
    KEY.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("keystone-tests");
        std::fs::create_dir_all(&dir).expect("test tmp dir");
        let key = dir.join("ticket-signing.pem");
        if !key.exists() {
            // Made aside and renamed: concurrent test binaries never see half a key.
            let partial = dir.join(format!("ticket-signing.{}.pem", Uuid::new_v4().simple()));
            let output = Command::new("openssl")
                .args(["genpkey", "-algorithm", "ed25519", "-out"])
                .arg(&partial)
                .output()
                .expect("openssl runs (needed to make a ticket signing key)");
            assert!(output.status.success(), "openssl genpkey failed");
            std::fs::rename(&partial, &key).expect("rename the key");
        }
        key
    })
    .as_path()
}

/// Settings on top of the Keystone-mode test configuration.
#[derive(Default, Clone)]
pub struct Options {
    settings: Vec<(String, String, String)>,
}

impl Options {
    pub fn set(mut self, section: &str, option: &str, value: impl ToString) -> Self {
        self.settings
            .push((section.to_owned(), option.to_owned(), value.to_string()));
        self
    }
}

/// The configuration fresco-api would read: keystone auth with the seeded service user.
pub fn config(database_url: &str, options: &Options) -> RawConfig {
    let env = env();
    let (user, password, project) = env.service_user();
    let text = format!(
        "[DEFAULT]\n\
         auth_strategy = keystone\n\
         [api]\n\
         public_url = http://fresco.test:8900\n\
         allowed_image_prefixes = registry.example/fn/\n\
         [database]\n\
         max_pool_size = 8\n\
         connection_timeout = 10\n\
         [keystone_authtoken]\n\
         auth_url = {auth_url}\n\
         www_authenticate_uri = {WWW_AUTHENTICATE_URI}\n\
         username = {user}\n\
         user_domain_name = Default\n\
         project_name = {project}\n\
         project_domain_name = Default\n\
         token_cache_time = 300\n\
         http_request_timeout = 60\n\
         [oslo_policy]\n\
         policy_file = /nonexistent/fresco-kstests/policy.yaml\n\
         [internal_auth]\n\
         control_plane_key_file = {key}\n\
         ticket_verify_key_file = /nonexistent/fresco-kstests/verify.pem\n\
         [scheduler]\n\
         urls = http://127.0.0.1:{scheduler}\n",
        auth_url = env.keystone_url(),
        key = signing_key().display(),
        scheduler = free_port(),
    );
    let mut raw = RawConfig::parse(&text, "keystone test configuration").expect("config parses");
    raw.set("keystone_authtoken", "password", password);
    raw.set("database", "connection", database_url);
    for (section, option, value) in &options.settings {
        raw.set(section, option, value);
    }
    raw
}

type Sender = Rc<dyn Fn(TestRequest) -> LocalBoxFuture<'static, Reply>>;

/// The real application over its own database, in Keystone mode.
pub struct Api {
    send: Sender,
    /// The state the application runs with: its `auth.stats()` count Keystone calls.
    pub state: web::Data<AppState>,
    /// Declared last: dropped after the service and its pool.
    _db: TestDb,
}

impl Api {
    pub async fn start() -> Api {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(options: Options) -> Api {
        let db = TestDb::create();
        let raw = config(&db.url, &options);
        let state = web::Data::new(
            fresco_api::service::build_state(&raw).unwrap_or_else(|e| panic!("build_state: {e}")),
        );
        assert_eq!(state.auth.strategy(), "keystone");
        let service = Rc::new(test::init_service(fresco_api::http::app(state.clone())).await);
        let send: Sender = Rc::new(move |request: TestRequest| {
            let service = Rc::clone(&service);
            Box::pin(async move {
                let response = test::call_service(&*service, request.to_request()).await;
                let status = response.status();
                let headers = response.headers().clone();
                let body = test::read_body(response).await;
                Reply {
                    label: String::new(),
                    status,
                    headers,
                    body,
                }
            })
        });
        Api {
            send,
            state,
            _db: db,
        }
    }

    /// The URL of this application's own database.
    pub fn database_url(&self) -> &str {
        &self._db.url
    }

    pub async fn send(&self, req: Req) -> Reply {
        let mut reply = (self.send)(req.request).await;
        reply.label = req.label;
        assert!(
            reply
                .header("x-openstack-request-id")
                .is_some_and(|id| id.starts_with("req-")),
            "{}: no request id",
            reply.label
        );
        reply
    }

    /// Sends `req` as `persona` (with its shared token).
    pub async fn call(&self, persona: Persona, req: Req) -> Reply {
        let token = token(persona).await;
        self.send(req.label(persona.slug()).token(&token)).await
    }
}

/// A request under construction.
pub struct Req {
    request: TestRequest,
    label: String,
}

impl Req {
    pub fn new(method: &str, path: &str) -> Req {
        Req {
            label: format!("{method} {path}"),
            request: TestRequest::default()
                .method(Method::from_bytes(method.as_bytes()).expect("method"))
                .uri(path),
        }
    }
    pub fn get(path: &str) -> Req {
        Req::new("GET", path)
    }
    pub fn post(path: &str) -> Req {
        Req::new("POST", path)
    }
    pub fn put(path: &str) -> Req {
        Req::new("PUT", path)
    }

    pub fn label(mut self, who: &str) -> Req {
        self.label = format!("{} as {who}", self.label);
        self
    }

    pub fn token(self, token: &str) -> Req {
        self.header("x-auth-token", token)
    }

    pub fn header(mut self, name: &str, value: &str) -> Req {
        self.request = self
            .request
            .insert_header((name.to_owned(), value.to_owned()));
        self
    }

    pub fn json(self, body: &Value) -> Req {
        self.body("application/json", body.to_string().into_bytes())
    }

    pub fn body(mut self, content_type: &str, body: impl Into<Bytes>) -> Req {
        self = self.header("content-type", content_type);
        self.request = self.request.set_payload(body);
        self
    }
}

/// A response, read completely.
pub struct Reply {
    pub label: String,
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{}: body is not JSON ({e}): {}", self.label, self.text()))
    }

    /// Asserts the status; returns the JSON body (`Null` when empty or not JSON).
    pub fn ok(self, status: u16) -> Value {
        assert_eq!(
            self.status.as_u16(),
            status,
            "{}: unexpected status, body: {}",
            self.label,
            self.text()
        );
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The message of an error body, asserting its shape: `{"error": {"code", "title",
    /// "message"}}` and nothing else, the code equal to the status.
    pub fn error_message(&self) -> String {
        let body = self.json();
        let fault = body
            .as_object()
            .filter(|o| o.len() == 1)
            .and_then(|o| o.get("error"))
            .and_then(Value::as_object)
            .filter(|f| f.len() == 3)
            .unwrap_or_else(|| panic!("{}: not an error body: {body}", self.label));
        assert_eq!(
            fault.get("code").and_then(Value::as_u64),
            Some(u64::from(self.status.as_u16())),
            "{}: error code differs from the status: {body}",
            self.label
        );
        assert!(
            fault.get("title").and_then(Value::as_str).is_some(),
            "{}: no title: {body}",
            self.label
        );
        fault
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("{}: no message: {body}", self.label))
            .to_owned()
    }

    /// Asserts an error with `status` whose message contains `fragment`; returns the message.
    pub fn error(&self, status: u16, fragment: &str) -> String {
        assert_eq!(
            self.status.as_u16(),
            status,
            "{}: unexpected status, body: {}",
            self.label,
            self.text()
        );
        let message = self.error_message();
        assert!(
            message.contains(fragment),
            "{}: message {message:?} lacks {fragment:?}",
            self.label
        );
        message
    }
}

/// A zip package with one Python handler.
pub fn zip_package(tag: &str) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    writer
        .start_file(
            "main.py",
            zip::write::SimpleFileOptions::default().unix_permissions(0o644),
        )
        .expect("start file");
    writer
        .write_all(format!("# {tag}\ndef handler(event, context):\n    return event\n").as_bytes())
        .expect("write");
    writer.finish().expect("finish zip").into_inner()
}

/// A multipart body with the function metadata and a zip package.
pub fn function_upload(metadata: &Value, package: &[u8]) -> (String, Vec<u8>) {
    const BOUNDARY: &str = "fresco-kstest-boundary-51c0";
    let mut body = Vec::new();
    write!(
        body,
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"metadata\"\r\n\
         Content-Type: application/json\r\n\r\n{metadata}\r\n\
         --{BOUNDARY}\r\nContent-Disposition: form-data; name=\"package\"; filename=\"package.zip\"\r\n\
         Content-Type: application/zip\r\n\r\n"
    )
    .expect("write");
    body.extend_from_slice(package);
    write!(body, "\r\n--{BOUNDARY}--\r\n").expect("write");
    (format!("multipart/form-data; boundary={BOUNDARY}"), body)
}
