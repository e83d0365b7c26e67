//! The harness of fresco-api's integration tests: a fresh PostgreSQL database per test binary
//! (from `FRESCO_TEST_DATABASE_URL`) with a fresh schema per test, migrated by
//! `db::migrate`, the real application state built by `service::build_state`
//! from a `noauth` configuration, the real `http::app` driven in-process, and small helpers
//! that keep the tests data-driven.
//!
//! Every response that goes through [`TestApi::send`] is checked for a well-formed
//! `x-openstack-request-id`, and every error through [`Reply::error`] for the error body
//! shape, so these two conventions are asserted by the whole suite, not by one test.

#![allow(dead_code)] // each test binary uses its own subset

use std::io::Write;
use std::rc::Rc;
use std::sync::{Condvar, Mutex};

use actix_web::http::header::HeaderMap;
use actix_web::http::{Method, StatusCode};
use actix_web::test::{self, TestRequest};
use actix_web::web;
use bytes::Bytes;
use diesel::{Connection, PgConnection, RunQueryDsl};
use fresco_common::conf::RawConfig;
use futures_util::future::LocalBoxFuture;
use serde_json::{json, Value};
use uuid::Uuid;

/// Callers, as `noauth` tokens `user:project[:roles]`.
pub const ADMIN: &str = "admin:admin:admin";
pub const ALICE: &str = "alice:proj-a:member";
pub const RITA: &str = "rita:proj-a:reader";
pub const BOB: &str = "bob:proj-b:member";
/// An administrator of proj-a (its own, not the cloud's; custom images need one by default).
pub const ADA: &str = "ada:proj-a:admin";

/// `[api] public_url` of the test configuration: every link starts with it.
pub const PUBLIC_URL: &str = "http://fresco.test:8900";
/// `[keystone_authtoken] www_authenticate_uri` of the test configuration.
pub const KEYSTONE_URI: &str = "http://keystone.test:5000/v3";

/// Limits of the test configuration, small so that the refusals are cheap to provoke.
pub const MAX_PACKAGE_BYTES: usize = 64 * 1024;
pub const MAX_UNPACKED_BYTES: usize = 256 * 1024;
pub const MAX_ARCHIVE_ENTRIES: usize = 20;
pub const MAX_JSON_BODY_BYTES: usize = 16 * 1024;

const ENV: &str = "FRESCO_TEST_DATABASE_URL";

/// The base database URL. The suite never skips: without a database it fails, saying why.
pub fn base_url() -> String {
    match std::env::var(ENV) {
        Ok(url) if !url.trim().is_empty() => url,
        _ => panic!(
            "{ENV} is not set: these tests need a PostgreSQL server whose role may CREATE DATABASE, e.g. \
             {ENV}=postgresql://fresco:fresco-dev@127.0.0.1:5439/fresco (start the project-local one with \
             `bash -c 'source tools/lib/common.sh; source tools/lib/postgres.sh; pg_start'`)"
        ),
    }
}

/// `url` with its database name replaced by `database`.
pub fn with_database(url: &str, database: &str) -> String {
    let (main, query) = match url.split_once('?') {
        Some((main, query)) => (main, Some(query)),
        None => (url, None),
    };
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

/// `url` pointing at `127.0.0.1:port` instead of its own host and port.
pub fn with_port(url: &str, port: u16) -> String {
    let scheme_end = url.find("://").map_or(0, |i| i + 3);
    let authority_end = url[scheme_end..]
        .find(['/', '?'])
        .map_or(url.len(), |i| scheme_end + i);
    let host_start = url[scheme_end..authority_end]
        .rfind('@')
        .map_or(scheme_end, |i| scheme_end + i + 1);
    format!(
        "{}127.0.0.1:{port}{}",
        &url[..host_start],
        &url[authority_end..]
    )
}

fn connect(url: &str) -> PgConnection {
    PgConnection::establish(url).unwrap_or_else(|e| {
        panic!(
            "cannot connect to the test PostgreSQL ({ENV}, database {}): {e}",
            url.rsplit('/').next().unwrap_or(url)
        )
    })
}

/// At most this many tests of one binary hold a schema (and a connection pool) at once,
/// whatever `--test-threads` is, so the suite stays within the server's `max_connections`.
const MAX_CONCURRENT_TESTS: usize = 6;
static SLOTS: (Mutex<usize>, Condvar) = (Mutex::new(0), Condvar::new());

struct Slot;

impl Slot {
    fn take() -> Slot {
        let (count, freed) = &SLOTS;
        let mut held = count.lock().unwrap_or_else(|e| e.into_inner());
        while *held >= MAX_CONCURRENT_TESTS {
            held = freed.wait(held).unwrap_or_else(|e| e.into_inner());
        }
        *held += 1;
        Slot
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let (count, freed) = &SLOTS;
        let mut held = count.lock().unwrap_or_else(|e| e.into_inner());
        *held -= 1;
        freed.notify_one();
    }
}

/// The database of this test binary: created fresh when the first test needs it, dropped
/// when the last test alive is done with it.
struct Database {
    name: String,
    url: String,
    users: usize,
}

static DATABASE: Mutex<Option<Database>> = Mutex::new(None);

/// Databases this suite leaves behind are named `fresco_test_<unix seconds>_<uuid>`; those
/// older than this (a crashed run's) are dropped when a new one is created.
const STALE_AFTER_S: u64 = 3600;

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn drop_stale_databases(admin: &mut PgConnection) {
    #[derive(diesel::QueryableByName)]
    struct Name {
        #[diesel(sql_type = diesel::sql_types::Text)]
        datname: String,
    }
    let names: Vec<Name> =
        diesel::sql_query("SELECT datname FROM pg_database WHERE datname LIKE 'fresco\\_test\\_%'")
            .load(admin)
            .unwrap_or_default();
    for Name { datname } in names {
        let created = datname
            .split('_')
            .nth(2)
            .and_then(|t| t.parse::<u64>().ok());
        if created.is_some_and(|t| t + STALE_AFTER_S < unix_now()) {
            let _ = diesel::sql_query(format!(
                "DROP DATABASE IF EXISTS \"{datname}\" WITH (FORCE)"
            ))
            .execute(admin);
        }
    }
}

/// Joins (creating it if needed) this binary's database; returns its URL.
fn join_database(base: &str) -> String {
    let mut database = DATABASE.lock().unwrap_or_else(|e| e.into_inner());
    if database.is_none() {
        let mut admin = connect(base);
        drop_stale_databases(&mut admin);
        let name = format!("fresco_test_{}_{}", unix_now(), Uuid::new_v4().simple());
        diesel::sql_query(format!("CREATE DATABASE \"{name}\""))
            .execute(&mut admin)
            .unwrap_or_else(|e| {
                panic!("cannot create database {name} ({ENV} needs CREATEDB): {e}")
            });
        *database = Some(Database {
            url: with_database(base, &name),
            name,
            users: 0,
        });
    }
    let database = database.as_mut().expect("database");
    database.users += 1;
    database.url.clone()
}

fn leave_database(base: &str) {
    let mut database = DATABASE.lock().unwrap_or_else(|e| e.into_inner());
    let last = database.as_mut().is_some_and(|d| {
        d.users -= 1;
        d.users == 0
    });
    if last {
        if let Some(Database { name, .. }) = database.take() {
            if let Ok(mut admin) = PgConnection::establish(base) {
                if let Err(e) =
                    diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                        .execute(&mut admin)
                {
                    eprintln!("warning: cannot drop test database {name}: {e}");
                }
            }
        }
    }
}

/// `url` with `schema` as the only schema of its search path.
fn with_search_path(url: &str, schema: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}options=-csearch_path%3D{schema}")
}

/// A fresh schema with the migrations applied, in this binary's fresh database: what the test
/// sees as its own empty database (every connection made with `url` lives in it). Dropped
/// when this is dropped; the database goes with the last test.
pub struct TestDb {
    pub schema: String,
    pub url: String,
    database_url: String,
    base: String,
    _slot: Slot,
}

impl TestDb {
    pub fn create() -> TestDb {
        let base = base_url();
        let slot = Slot::take();
        let database_url = join_database(&base);
        let schema = format!("t_{}", Uuid::new_v4().simple());
        let db = TestDb {
            url: with_search_path(&database_url, &schema),
            schema,
            database_url,
            base,
            _slot: slot,
        };
        diesel::sql_query(format!("CREATE SCHEMA {}", db.schema))
            .execute(&mut connect(&db.database_url))
            .unwrap_or_else(|e| panic!("cannot create schema {}: {e}", db.schema));
        fresco_store::migrate(&mut db.conn())
            .unwrap_or_else(|e| panic!("migrations failed in {}: {e}", db.schema));
        db
    }

    pub fn conn(&self) -> PgConnection {
        connect(&self.url)
    }

    /// A single `bigint` computed by `sql` (e.g. `SELECT count(*) FROM functions`).
    pub fn scalar(&self, sql: &str) -> i64 {
        use diesel::sql_types::BigInt;
        diesel::select(diesel::dsl::sql::<BigInt>(&format!("({sql})")))
            .get_result(&mut self.conn())
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// The text a query returns (one row, one column).
    pub fn string(&self, sql: &str) -> String {
        use diesel::sql_types::Text;
        diesel::select(diesel::dsl::sql::<Text>(&format!("({sql})")))
            .get_result(&mut self.conn())
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Runs a statement; returns the rows it touched.
    pub fn execute(&self, sql: &str) -> usize {
        diesel::sql_query(sql)
            .execute(&mut self.conn())
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Ok(mut conn) = PgConnection::establish(&self.database_url) {
            if let Err(e) =
                diesel::sql_query(format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema))
                    .execute(&mut conn)
            {
                eprintln!("warning: cannot drop test schema {}: {e}", self.schema);
            }
        }
        leave_database(&self.base);
    }
}

/// Overrides of the test configuration.
#[derive(Default, Clone)]
pub struct Options {
    settings: Vec<(String, String, String)>,
    db_port: Option<u16>,
}

impl Options {
    /// Reach PostgreSQL through `127.0.0.1:<port>` (a proxy) instead of the base URL's address.
    pub fn through_port(mut self, port: u16) -> Self {
        self.db_port = Some(port);
        self
    }

    pub fn set(mut self, section: &str, option: &str, value: impl ToString) -> Self {
        self.settings
            .push((section.to_owned(), option.to_owned(), value.to_string()));
        self
    }
}

type Sender = Rc<dyn Fn(TestRequest) -> LocalBoxFuture<'static, Reply>>;

/// The application under test, over its own database.
pub struct TestApi {
    send: Sender,
    /// Declared last so it is dropped after the service and its connection pool.
    pub db: TestDb,
}

impl TestApi {
    pub async fn start() -> TestApi {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(options: Options) -> TestApi {
        let db = TestDb::create();
        let state_url = match options.db_port {
            Some(port) => with_port(&db.url, port),
            None => db.url.clone(),
        };
        let mut raw = RawConfig::parse(
            &format!(
                "[DEFAULT]\n\
                 auth_strategy = noauth\n\
                 [api]\n\
                 public_url = {PUBLIC_URL}\n\
                 max_package_bytes = {MAX_PACKAGE_BYTES}\n\
                 max_unpacked_bytes = {MAX_UNPACKED_BYTES}\n\
                 max_archive_entries = {MAX_ARCHIVE_ENTRIES}\n\
                 max_json_body_bytes = {MAX_JSON_BODY_BYTES}\n\
                 [database]\n\
                 max_pool_size = 6\n\
                 connection_timeout = 5\n\
                 [keystone_authtoken]\n\
                 www_authenticate_uri = {KEYSTONE_URI}\n\
                 [oslo_policy]\n\
                 policy_file = /nonexistent/fresco-tests/policy.yaml\n\
                 [internal_auth]\n\
                 control_plane_key_file = /nonexistent/fresco-tests/signing.pem\n\
                 ticket_verify_key_file = /nonexistent/fresco-tests/verify.pem\n"
            ),
            "test configuration",
        )
        .expect("test configuration parses");
        raw.set("database", "connection", &state_url);
        for (section, option, value) in &options.settings {
            raw.set(section, option, value);
        }
        let state =
            fresco_api::service::build_state(&raw).unwrap_or_else(|e| panic!("build_state: {e}"));
        let service =
            Rc::new(test::init_service(fresco_api::http::app(web::Data::new(state))).await);
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
        TestApi { send, db }
    }

    /// Sends a request; asserts the request id every response must carry.
    pub async fn send(&self, call: Call) -> Reply {
        let mut reply = (self.send)(call.request).await;
        reply.label = call.label;
        let id = reply.header("x-openstack-request-id").unwrap_or_else(|| {
            panic!(
                "{}: no x-openstack-request-id on a {}",
                reply.label, reply.status
            )
        });
        let uuid = id.strip_prefix("req-").unwrap_or_else(|| {
            panic!(
                "{}: request id {id:?} does not start with req-",
                reply.label
            )
        });
        assert!(
            Uuid::parse_str(uuid).is_ok(),
            "{}: request id {id:?} is not req-<uuid>",
            reply.label
        );
        reply
    }

    /// Data-driven error checks: each call must fail with the status and a message containing
    /// the fragment.
    pub async fn expect_errors(&self, cases: Vec<(Call, u16, &str)>) {
        for (call, status, fragment) in cases {
            self.send(call).await.error(status, fragment);
        }
    }

    // Fixtures.

    /// Creates a runtime as admin; `extra` fields override the defaults.
    pub async fn runtime(&self, name: &str, extra: Value) -> Value {
        let mut body = json!({"name": name, "image": "fresco/python3:test", "kind": "python"});
        merge(&mut body, extra);
        self.send(post("/v1/runtimes").by(ADMIN).json(body))
            .await
            .ok(201)["runtime"]
            .clone()
    }

    /// Creates a function with a zip package through multipart; `extra` metadata fields
    /// override the defaults.
    pub async fn function(&self, token: &str, name: &str, runtime: &str, extra: Value) -> Value {
        let mut metadata = json!({"name": name, "runtime": runtime});
        merge(&mut metadata, extra);
        let package = zip_of(&[(
            "main.py",
            format!("# {name}\ndef handler(event, context):\n    return event\n").as_bytes(),
        )]);
        self.send(
            post("/v1/functions")
                .by(token)
                .upload(&metadata, Some(&package)),
        )
        .await
        .ok(201)["function"]
            .clone()
    }

    /// The quota report of `project`, as admin.
    pub async fn quota(&self, project: &str) -> Value {
        self.send(get(&format!("/v1/quotas/{project}")).by(ADMIN))
            .await
            .ok(200)["quota"]
            .clone()
    }

    /// `(functions in use, code bytes in use)` of a project, from the quota report, checked
    /// against the tables themselves.
    pub async fn stored(&self, project: &str) -> (i64, i64) {
        let quota = self.quota(project).await;
        let functions = quota["functions"]["in_use"]
            .as_i64()
            .expect("functions.in_use");
        let code_bytes = quota["code_bytes"]["in_use"]
            .as_i64()
            .expect("code_bytes.in_use");
        assert_eq!(
            functions,
            self.db.scalar(&format!(
                "SELECT count(*) FROM functions WHERE project_id = '{project}'"
            ))
        );
        assert_eq!(
            code_bytes,
            self.db.scalar(&format!(
                "SELECT COALESCE(SUM(size), 0)::bigint FROM code_packages WHERE project_id = '{project}'"
            ))
        );
        (functions, code_bytes)
    }
}

/// Shallow-merges the fields of `extra` (an object) into `base`.
pub fn merge(base: &mut Value, extra: Value) {
    if let (Some(base), Value::Object(extra)) = (base.as_object_mut(), extra) {
        base.extend(extra);
    }
}

/// A request under construction.
pub struct Call {
    request: TestRequest,
    label: String,
}

fn call(method: Method, path: &str) -> Call {
    Call {
        label: format!("{method} {path}"),
        request: TestRequest::default().method(method).uri(path),
    }
}

pub fn get(path: &str) -> Call {
    call(Method::GET, path)
}
pub fn post(path: &str) -> Call {
    call(Method::POST, path)
}
pub fn put(path: &str) -> Call {
    call(Method::PUT, path)
}
pub fn patch(path: &str) -> Call {
    call(Method::PATCH, path)
}
pub fn delete(path: &str) -> Call {
    call(Method::DELETE, path)
}
pub fn method(method: &str, path: &str) -> Call {
    call(Method::from_bytes(method.as_bytes()).expect("method"), path)
}

const BOUNDARY: &str = "fresco-test-boundary-7d1c4b";

impl Call {
    /// Authenticates as the `noauth` token.
    pub fn by(mut self, token: &str) -> Self {
        self.label = format!("{} as {token}", self.label);
        self.header("x-auth-token", token)
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.request = self
            .request
            .insert_header((name.to_owned(), value.to_owned()));
        self
    }

    pub fn json(self, body: Value) -> Self {
        self.raw("application/json", body.to_string().into_bytes())
    }

    /// A body with a content type.
    pub fn raw(self, content_type: &str, body: impl Into<Bytes>) -> Self {
        self.header("content-type", content_type).bytes(body)
    }

    /// A body without a content type.
    pub fn bytes(mut self, body: impl Into<Bytes>) -> Self {
        self.request = self.request.set_payload(body);
        self
    }

    /// A multipart upload with a `metadata` part and optionally a `package` part.
    pub fn upload(self, metadata: &Value, package: Option<&[u8]>) -> Self {
        let mut parts = vec![Part::json("metadata", metadata)];
        if let Some(package) = package {
            parts.push(Part::file("package", package));
        }
        self.multipart(&parts)
    }

    pub fn multipart(self, parts: &[Part]) -> Self {
        let mut body = Vec::new();
        for part in parts {
            write!(
                body,
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{}\"",
                part.name
            )
            .expect("write");
            if let Some(filename) = &part.filename {
                write!(body, "; filename=\"{filename}\"").expect("write");
            }
            write!(body, "\r\nContent-Type: {}\r\n\r\n", part.content_type).expect("write");
            body.extend_from_slice(&part.data);
            body.extend_from_slice(b"\r\n");
        }
        write!(body, "--{BOUNDARY}--\r\n").expect("write");
        self.raw(&format!("multipart/form-data; boundary={BOUNDARY}"), body)
    }
}

/// One part of a multipart body.
pub struct Part {
    pub name: String,
    pub filename: Option<String>,
    pub content_type: String,
    pub data: Vec<u8>,
}

impl Part {
    pub fn json(name: &str, value: &Value) -> Part {
        Part {
            name: name.to_owned(),
            filename: None,
            content_type: "application/json".into(),
            data: value.to_string().into_bytes(),
        }
    }

    pub fn file(name: &str, data: &[u8]) -> Part {
        let content_type = if data.starts_with(&[0x1f, 0x8b]) {
            "application/gzip"
        } else {
            "application/zip"
        };
        Part {
            name: name.to_owned(),
            filename: Some("package".into()),
            content_type: content_type.into(),
            data: data.to_vec(),
        }
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

    /// Asserts the status; returns the JSON body (`Null` when empty).
    pub fn ok(self, status: u16) -> Value {
        assert_eq!(
            self.status.as_u16(),
            status,
            "{}: unexpected status, body: {}",
            self.label,
            self.text()
        );
        if self.body.is_empty() {
            Value::Null
        } else {
            self.json()
        }
    }

    /// Asserts an error response: the status, `{"error": {"code", "title", "message"}}` and
    /// nothing else, a lowercase message without a trailing period containing `fragment`.
    /// Returns the message.
    pub fn error(self, status: u16, fragment: &str) -> String {
        assert_eq!(
            self.status.as_u16(),
            status,
            "{}: unexpected status, body: {}",
            self.label,
            self.text()
        );
        let body = self.json();
        let fault = body
            .as_object()
            .filter(|o| o.len() == 1)
            .and_then(|o| o.get("error"))
            .and_then(Value::as_object)
            .unwrap_or_else(|| panic!("{}: not an error body: {body}", self.label));
        let mut keys: Vec<&str> = fault.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["code", "message", "title"], "{}: {body}", self.label);
        assert_eq!(fault["code"], json!(status), "{}: {body}", self.label);
        assert_eq!(
            fault["title"],
            json!(self.status.canonical_reason().expect("reason")),
            "{}: {body}",
            self.label
        );
        let message = fault["message"]
            .as_str()
            .expect("message is a string")
            .to_owned();
        assert!(
            message.contains(fragment),
            "{}: message {message:?} does not contain {fragment:?}",
            self.label
        );
        assert!(
            !message.ends_with('.') && !message.starts_with(|c: char| c.is_uppercase()),
            "{}: message {message:?} is not lowercase without a trailing period",
            self.label
        );
        message
    }
}

// Packages.

/// A zip of regular files.
pub fn zip_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, data) in files {
        writer
            .start_file(
                *name,
                zip::write::SimpleFileOptions::default().unix_permissions(0o644),
            )
            .expect("start file");
        writer.write_all(data).expect("write");
    }
    writer.finish().expect("finish zip").into_inner()
}

/// A zip holding one file and one symlink.
pub fn zip_with_symlink(link: &str, target: &str) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    writer
        .start_file("main.py", zip::write::SimpleFileOptions::default())
        .expect("start file");
    writer
        .write_all(b"def handler(e, c):\n    return 1\n")
        .expect("write");
    writer
        .add_symlink(link, target, zip::write::SimpleFileOptions::default())
        .expect("symlink");
    writer.finish().expect("finish zip").into_inner()
}

/// A tar.gz of regular files. Names are written raw, so hostile ones (`../x`) can be built.
pub fn tar_gz_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut builder = tar::Builder::new(gz);
    for (name, data) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        let field = &mut header.as_old_mut().name;
        field.fill(0);
        field[..name.len()].copy_from_slice(name.as_bytes());
        header.set_cksum();
        builder.append(&header, *data).expect("append");
    }
    builder.into_inner().expect("tar").finish().expect("gzip")
}

/// `len` bytes that do not compress (xorshift), to make packages of a given stored size.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect()
}

/// `body` with every occurrence of each of `ids` replaced by `<id>`, to compare two error
/// bodies that differ only in the id they name.
pub fn without_ids(body: &Value, ids: &[&str]) -> String {
    ids.iter()
        .fold(body.to_string(), |text, id| text.replace(id, "<id>"))
}

// Execution records, written the way the invocation path records them.

/// A finished, successful sync execution of `function_id` in `project`; adjust fields as needed.
pub fn execution(project: &str, function_id: &str) -> fresco_store::executions::Execution {
    let now = chrono::Utc::now();
    fresco_store::executions::Execution {
        id: Uuid::new_v4(),
        project_id: project.to_owned(),
        function_id: Uuid::parse_str(function_id).expect("function id"),
        function_version: 0,
        alias: None,
        status: fresco_store::ExecutionStatus::Succeeded,
        is_async: false,
        input: Some(b"{\"x\": 1}".to_vec()),
        input_size: 8,
        spec: None,
        result: Some("{\"ok\": true}".into()),
        error: None,
        duration_ms: Some(12.5),
        max_memory_mb: Some(30.0),
        memory_mb: 128,
        cold: Some(false),
        agent_id: Some("agent-1".into()),
        attempts: 1,
        logs: "hello from the function\n".into(),
        created_at: now,
        started_at: Some(now),
        finished_at: Some(now),
        cpu_ms: Some(4.5),
        init_duration_ms: Some(3.25),
    }
}

impl TestDb {
    /// Records executions through `db::executions::insert_many`, as the recorder does.
    pub fn record(&self, rows: &[fresco_store::executions::Execution]) {
        fresco_store::executions::insert_many(&mut self.conn(), rows).expect("insert executions");
    }
}
