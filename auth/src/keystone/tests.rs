//! The validator against a small fake Keystone on loopback (the real one is exercised by the
//! crate's integration tests): protocol, error mapping, service token renewal.

use std::sync::atomic::{AtomicU16, AtomicU64};
use std::sync::Mutex;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;

struct FakeState {
    auths: AtomicU64,
    /// The service token Keystone currently accepts.
    valid_service: Mutex<Option<String>>,
    /// Lifetime of issued service tokens, seconds.
    service_lifetime: AtomicU64,
    /// Status answered to the service's authentication.
    auth_status: AtomicU16,
}

struct Fake {
    url: String,
    state: Arc<FakeState>,
}

impl Fake {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let state = Arc::new(FakeState {
            auths: AtomicU64::new(0),
            valid_service: Mutex::new(None),
            service_lifetime: AtomicU64::new(3600),
            auth_status: AtomicU16::new(201),
        });
        let shared = state.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, shared.clone()));
            }
        });
        Self {
            url: format!("http://127.0.0.1:{port}/v3"),
            state,
        }
    }

    fn validator(&self) -> KeystoneValidator {
        KeystoneValidator::new(config(&self.url)).expect("validator")
    }

    fn revoke_service_token(&self) {
        *self.state.valid_service.lock().expect("lock") = None;
    }
}

fn config(url: &str) -> KeystoneConfig {
    KeystoneConfig {
        auth_url: url.to_owned(),
        username: "fresco".into(),
        password: "secret".into(),
        user_domain_name: "Default".into(),
        project_name: "service".into(),
        project_domain_name: "Default".into(),
        timeout: Duration::from_millis(500),
        service_token_roles: vec!["service".into()],
        cafile: None,
    }
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

fn token_document(project: bool, system: bool, roles: &[&str]) -> serde_json::Value {
    let mut token = json!({
        "methods": ["password"],
        "user": {"id": "u1", "name": "alice", "domain": {"id": "default", "name": "Default"}},
        "expires_at": rfc3339(Utc::now() + chrono::Duration::hours(1)),
        "issued_at": rfc3339(Utc::now()),
        "roles": roles.iter().map(|r| json!({"id": format!("id-{r}"), "name": r})).collect::<Vec<_>>(),
    });
    if project {
        token["project"] =
            json!({"id": "p1", "name": "proj", "domain": {"id": "default", "name": "Default"}});
    }
    if system {
        token["system"] = json!({"all": true});
    }
    json!({ "token": token })
}

/// Answers one request per connection.
async fn serve(mut stream: TcpStream, state: Arc<FakeState>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let Ok(n) = stream.read(&mut chunk).await else {
            return;
        };
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let header = |name: &str| {
        head.lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
            })
            .unwrap_or_default()
    };
    let length: usize = header("content-length").parse().unwrap_or(0);
    while buf.len() < head_end + length {
        match stream.read(&mut chunk).await {
            Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return,
        }
    }
    let method = head.split(' ').next().unwrap_or_default().to_owned();
    let (status, extra, body) = if method == "POST" {
        let n = state.auths.fetch_add(1, Ordering::SeqCst) + 1;
        let status = state.auth_status.load(Ordering::SeqCst);
        let token = format!("svc-{n}");
        if status == 201 {
            *state.valid_service.lock().expect("lock") = Some(token.clone());
        }
        let lifetime = state.service_lifetime.load(Ordering::SeqCst) as i64;
        let now = Utc::now();
        let body = json!({"token": {
            "issued_at": rfc3339(now),
            "expires_at": rfc3339(now + chrono::Duration::seconds(lifetime)),
        }});
        (status, format!("X-Subject-Token: {token}\r\n"), body)
    } else {
        let valid = state.valid_service.lock().expect("lock").clone();
        let subject = header("x-subject-token");
        if valid.is_none() || valid != Some(header("x-auth-token")) {
            (401, String::new(), json!({"error": {"code": 401}}))
        } else {
            match subject.as_str() {
                "good" => (200, String::new(), token_document(true, false, &["member"])),
                "service" => (
                    200,
                    String::new(),
                    token_document(true, false, &["service"]),
                ),
                "unscoped" => (200, String::new(), token_document(false, false, &[])),
                "system" => (200, String::new(), token_document(false, true, &["admin"])),
                "boom" => (500, String::new(), json!({})),
                "deny" => (403, String::new(), json!({})),
                "slow" => {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    (200, String::new(), token_document(true, false, &[]))
                }
                _ => (404, String::new(), json!({"error": {"code": 404}})),
            }
        }
    };
    let body = body.to_string();
    let response = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n{extra}\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

#[tokio::test]
async fn valid_tokens_give_their_context() {
    let fake = Fake::start().await;
    let v = fake.validator();
    let ctx = v.validate("good").await.expect("valid");
    assert_eq!(ctx.user_id, "u1");
    assert_eq!(ctx.user_name, "alice");
    assert_eq!(ctx.user_domain_id, "default");
    assert_eq!(ctx.project_id.as_deref(), Some("p1"));
    assert_eq!(ctx.project_name.as_deref(), Some("proj"));
    assert_eq!(ctx.project_domain_id.as_deref(), Some("default"));
    assert_eq!(ctx.roles, ["member", "reader"]);
    assert!(!ctx.is_service);
    assert!(ctx.expires_at > Utc::now());
    assert!(v.validate("service").await.expect("valid").is_service);
    assert_eq!(v.stats().service_auths, 1, "the service token is reused");
    assert_eq!(v.stats().validations, 2);
}

#[tokio::test]
async fn keystone_answers_map_to_errors() {
    let fake = Fake::start().await;
    let v = fake.validator();
    let check = |answer: Result<Context, AuthError>, expected: &str| {
        let got = match answer {
            Ok(_) => "ok".to_owned(),
            Err(AuthError::KeystoneUnavailable(m)) => format!("unavailable: {m}"),
            Err(e) => format!("{e:?}"),
        };
        assert!(got.starts_with(expected), "expected {expected}, got {got}");
    };
    check(v.validate("nope").await, "InvalidToken");
    check(v.validate("unscoped").await, "Unscoped");
    check(
        v.validate("boom").await,
        "unavailable: keystone answered 500",
    );
    check(
        v.validate("deny").await,
        "unavailable: keystone does not let",
    );
    check(
        v.validate("slow").await,
        "unavailable: cannot reach keystone",
    );
    let system = v.validate("system").await.expect("system scope");
    assert_eq!(system.system_scope.as_deref(), Some("all"));
    assert_eq!(system.project_id, None);
    assert_eq!(system.roles, ["admin", "member", "reader"]);
}

#[tokio::test]
async fn malformed_tokens_are_refused_without_asking() {
    let fake = Fake::start().await;
    let v = fake.validator();
    for token in ["", "a\nb", "tab\u{7f}", &"x".repeat(MAX_TOKEN_LEN + 1)] {
        assert_eq!(v.validate(token).await, Err(AuthError::InvalidToken));
    }
    assert_eq!(v.stats().calls(), 0);
}

#[tokio::test]
async fn a_refused_service_token_is_replaced_once() {
    let fake = Fake::start().await;
    let v = fake.validator();
    v.validate("good").await.expect("valid");
    fake.revoke_service_token();
    v.validate("good")
        .await
        .expect("valid after re-authentication");
    assert_eq!(
        v.stats(),
        KeystoneStats {
            validations: 3,
            service_auths: 2
        }
    );
    v.validate("good").await.expect("valid");
    assert_eq!(v.stats().service_auths, 2, "the new service token is kept");
}

#[tokio::test]
async fn the_service_token_is_renewed_before_it_expires() {
    let fake = Fake::start().await;
    fake.state.service_lifetime.store(2, Ordering::SeqCst);
    let v = fake.validator();
    v.validate("good").await.expect("valid");
    v.validate("good").await.expect("valid");
    assert_eq!(v.stats().service_auths, 1);
    // Renewed at half its life (1 s) since that is shorter than the margin.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    v.validate("good").await.expect("valid");
    assert_eq!(v.stats().service_auths, 2);
    assert_eq!(v.stats().validations, 3, "no refused call was needed");
}

#[tokio::test]
async fn refused_service_credentials_make_keystone_unavailable() {
    let fake = Fake::start().await;
    fake.state.auth_status.store(401, Ordering::SeqCst);
    let v = fake.validator();
    match v.validate("good").await {
        Err(AuthError::KeystoneUnavailable(m)) => {
            assert!(m.contains("\"fresco\"") && m.contains("401"), "{m}")
        }
        other => panic!("expected unavailable, got {other:?}"),
    }
    assert_eq!(v.stats().validations, 0);
}

#[tokio::test]
async fn after_a_failed_service_authentication_callers_fail_fast_for_a_moment() {
    let fake = Fake::start().await;
    fake.state.auth_status.store(500, Ordering::SeqCst);
    let v = fake.validator();
    for _ in 0..3 {
        assert!(matches!(
            v.validate("good").await,
            Err(AuthError::KeystoneUnavailable(_))
        ));
    }
    assert_eq!(v.stats().service_auths, 1, "one attempt, then fail fast");
    fake.state.auth_status.store(201, Ordering::SeqCst);
    tokio::time::sleep(AUTH_RETRY_AFTER + Duration::from_millis(100)).await;
    v.validate("good").await.expect("recovered");
    assert_eq!(v.stats().service_auths, 2);
}

#[tokio::test]
async fn an_unreachable_keystone_is_unavailable() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let v = KeystoneValidator::new(config(&format!("http://127.0.0.1:{port}/v3"))).expect("v");
    match v.validate("good").await {
        Err(AuthError::KeystoneUnavailable(m)) => assert!(m.contains("cannot reach"), "{m}"),
        other => panic!("expected unavailable, got {other:?}"),
    }
}

#[test]
fn bad_configuration_is_refused() {
    let mut c = config("ftp://example");
    assert!(
        matches!(KeystoneValidator::new(c.clone()), Err(AuthError::Config(m)) if m.contains("auth_url"))
    );
    c.auth_url = "http://127.0.0.1:5000/v3".into();
    c.password.clear();
    assert!(
        matches!(KeystoneValidator::new(c.clone()), Err(AuthError::Config(m)) if m.contains("password"))
    );
    c.password = "x".into();
    c.cafile = Some("/nonexistent/ca.pem".into());
    assert!(matches!(KeystoneValidator::new(c), Err(AuthError::Config(m)) if m.contains("cafile")));
    assert!(!format!("{:?}", config("http://x")).contains("secret"));
}

#[test]
fn token_documents_parse() {
    let roles = vec!["service".to_owned()];
    let doc = |v: serde_json::Value| v.to_string().into_bytes();
    let ctx = parse_token(&doc(token_document(true, false, &["Admin"])), &roles).expect("ok");
    assert_eq!(ctx.roles, ["admin", "member", "reader"]);
    assert_eq!(
        parse_token(&doc(token_document(false, false, &["reader"])), &roles),
        Err(AuthError::Unscoped)
    );
    let mut expired = token_document(true, false, &["reader"]);
    expired["token"]["expires_at"] = json!("2001-01-01T00:00:00.000000Z");
    assert_eq!(
        parse_token(&doc(expired), &roles),
        Err(AuthError::InvalidToken)
    );
    for bad in [
        &b"not json"[..],
        br#"{"token": {}}"#,
        br#"{"token": {"expires_at": "soon", "user": {"id": "u"}, "project": {"id": "p"}}}"#,
    ] {
        assert!(matches!(
            parse_token(bad, &roles),
            Err(AuthError::KeystoneUnavailable(_))
        ));
    }
}
