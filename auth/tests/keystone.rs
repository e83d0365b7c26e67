//! Token validation against the REAL Keystone that `tools/lib/keystone.sh` runs.
//!
//! Needs `tools/lib/keystone.sh start && tools/lib/keystone.sh seed` first: the tests read the
//! credentials file the seed writes (`$FRESCO_STATE/keystone/credentials.env`, or the file
//! named by `FRESCO_KEYSTONE_ENV`) and fail, not skip, without it. The outage test starts and
//! stops a second Keystone of its own (same database and keys, another port) so the shared
//! one is never disturbed.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use fresco_auth::{
    AuthError, Authenticator, CacheConfig, CachingValidator, KeystoneConfig, KeystoneValidator,
    TokenValidator,
};
use fresco_common::conf::RawConfig;
use serde_json::json;

struct Env {
    vars: HashMap<String, String>,
    http: reqwest::Client,
}

fn env_file() -> PathBuf {
    if let Ok(path) = std::env::var("FRESCO_KEYSTONE_ENV") {
        return path.into();
    }
    let state = std::env::var("FRESCO_STATE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.state"));
    state.join("keystone/credentials.env")
}

impl Env {
    async fn load() -> Self {
        let path = env_file();
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "the Keystone test environment {} cannot be read ({e}): run \
                 `tools/lib/keystone.sh start && tools/lib/keystone.sh seed` first",
                path.display()
            )
        });
        let vars = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let env = Self {
            vars,
            http: reqwest::Client::new(),
        };
        let url = env.get("KEYSTONE_URL");
        let answer = env.http.get(&url).send().await;
        assert!(
            answer.as_ref().is_ok_and(|r| r.status().is_success()),
            "Keystone does not answer at {url} ({answer:?}): run `tools/lib/keystone.sh start` first"
        );
        env
    }

    fn get(&self, key: &str) -> String {
        self.vars.get(key).cloned().unwrap_or_else(|| {
            panic!(
                "{} lacks {key}: run `tools/lib/keystone.sh seed`",
                env_file().display()
            )
        })
    }

    fn url(&self) -> String {
        self.get("KEYSTONE_URL")
    }

    /// A token for `user`, scoped by `scope` (a Keystone `scope` object, or null for none).
    async fn issue(&self, user: &str, password: &str, scope: serde_json::Value) -> String {
        let mut auth = json!({"identity": {"methods": ["password"], "password": {"user": {
            "name": user, "domain": {"id": "default"}, "password": password}}}});
        if !scope.is_null() {
            auth["scope"] = scope;
        }
        let response = self
            .http
            .post(format!("{}/auth/tokens?nocatalog", self.url()))
            .json(&json!({ "auth": auth }))
            .send()
            .await
            .expect("keystone answers");
        assert_eq!(response.status(), 201, "authenticating {user}");
        response
            .headers()
            .get("x-subject-token")
            .and_then(|v| v.to_str().ok())
            .expect("x-subject-token")
            .to_owned()
    }

    /// A token of the seeded test user of `project` ("A" or "B") with `role`, scoped to it.
    async fn project_token(&self, project: &str, role: &str) -> String {
        let id = self.get(&format!("FRESCO_TEST_PROJECT_{project}_ID"));
        self.issue(
            &self.get(&format!("FRESCO_TEST_{project}_{role}_USER")),
            &self.get(&format!("FRESCO_TEST_{project}_{role}_PASSWORD")),
            json!({"project": {"id": id}}),
        )
        .await
    }

    async fn admin_token(&self) -> String {
        self.issue(
            &self.get("KEYSTONE_ADMIN_USER"),
            &self.get("KEYSTONE_ADMIN_PASSWORD"),
            json!({"project": {"name": self.get("KEYSTONE_ADMIN_PROJECT"), "domain": {"id": "default"}}}),
        )
        .await
    }

    async fn admin_call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> u16 {
        let admin = self.admin_token().await;
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.url()))
            .header("x-auth-token", admin);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request
            .send()
            .await
            .expect("keystone answers")
            .status()
            .as_u16()
    }

    async fn revoke_with(&self, admin: &str, token: &str) {
        let status = self
            .http
            .delete(format!("{}/auth/tokens", self.url()))
            .header("x-auth-token", admin)
            .header("x-subject-token", token)
            .send()
            .await
            .expect("keystone answers")
            .status();
        assert_eq!(status, 204, "revoking a token");
    }

    fn keystone_config(&self, url: &str, user: &str, password: &str) -> KeystoneConfig {
        KeystoneConfig {
            auth_url: url.to_owned(),
            username: self.get(user),
            password: self.get(password),
            user_domain_name: "Default".into(),
            project_name: self.get("FRESCO_SERVICE_PROJECT"),
            project_domain_name: "Default".into(),
            timeout: Duration::from_secs(5),
            service_token_roles: vec!["service".into()],
            cafile: None,
        }
    }

    fn validator(&self) -> KeystoneValidator {
        KeystoneValidator::new(self.keystone_config(
            &self.url(),
            "FRESCO_SERVICE_USER",
            "FRESCO_SERVICE_PASSWORD",
        ))
        .expect("validator")
    }

    fn cached(&self, url: &str, token_cache_time: Duration) -> CachingValidator<KeystoneValidator> {
        let config = self.keystone_config(url, "FRESCO_SERVICE_USER", "FRESCO_SERVICE_PASSWORD");
        CachingValidator::new(
            KeystoneValidator::new(config).expect("validator"),
            CacheConfig {
                token_cache_time,
                negative_cache_time: Duration::from_secs(10),
                max_entries: 1000,
            },
        )
    }
}

#[tokio::test]
async fn project_tokens_give_the_caller_with_implied_roles() {
    let env = Env::load().await;
    let v = env.validator();
    let cases = [
        ("A", "READER", vec!["reader"]),
        ("A", "MEMBER", vec!["member", "reader"]),
        ("A", "ADMIN", vec!["admin", "member", "reader"]),
        ("B", "MEMBER", vec!["member", "reader"]),
    ];
    for (project, role, expected) in cases {
        let token = env.project_token(project, role).await;
        let ctx = v
            .validate(&token)
            .await
            .unwrap_or_else(|e| panic!("{project} {role}: {e}"));
        let project_id = env.get(&format!("FRESCO_TEST_PROJECT_{project}_ID"));
        assert_eq!(ctx.project_id.as_deref(), Some(project_id.as_str()));
        assert_eq!(
            ctx.project_name,
            Some(env.get(&format!("FRESCO_TEST_PROJECT_{project}")))
        );
        assert_eq!(ctx.project_domain_id.as_deref(), Some("default"));
        assert_eq!(
            ctx.user_name,
            env.get(&format!("FRESCO_TEST_{project}_{role}_USER"))
        );
        assert_eq!(ctx.user_domain_id, "default");
        assert_eq!(ctx.user_id.len(), 32, "a keystone user id");
        assert_eq!(ctx.system_scope, None);
        // A test project's admin administers that project, not the cloud.
        assert!(!ctx.is_admin_project, "{project} {role}");
        assert!(!ctx.is_cloud_admin(), "{project} {role}");
        assert!(!ctx.is_service);
        assert!(ctx.expires_at > chrono::Utc::now() + chrono::Duration::minutes(30));
        for r in &expected {
            assert!(
                ctx.has_role(r),
                "{project} {role} lacks {r}: {:?}",
                ctx.roles
            );
        }
        let others = ["reader", "member", "admin"]
            .into_iter()
            .filter(|r| !expected.contains(r));
        for r in others {
            assert!(
                !ctx.has_role(r),
                "{project} {role} has {r}: {:?}",
                ctx.roles
            );
        }
    }
    assert_eq!(v.stats().service_auths, 1);
    assert_eq!(v.stats().validations, 4);
}

#[tokio::test]
async fn service_tokens_are_marked_as_such() {
    let env = Env::load().await;
    let token = env
        .issue(
            &env.get("FRESCO_SERVICE_USER"),
            &env.get("FRESCO_SERVICE_PASSWORD"),
            json!({"project": {"name": "service", "domain": {"id": "default"}}}),
        )
        .await;
    let ctx = env.validator().validate(&token).await.expect("valid");
    assert!(ctx.is_service);
    assert!(ctx.has_role("service"));
    assert_eq!(ctx.project_name.as_deref(), Some("service"));
}

#[tokio::test]
async fn invalid_tokens_are_refused() {
    let env = Env::load().await;
    let v = env.validator();
    let real = env.project_token("A", "READER").await;
    let mut tampered = real.clone().into_bytes();
    let last = tampered.len() - 5;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).expect("ascii");
    for token in ["garbage", "gAAAAABnotafernettoken", tampered.as_str()] {
        assert_eq!(
            v.validate(token).await,
            Err(AuthError::InvalidToken),
            "{token}"
        );
    }
    assert!(v.validate(&real).await.is_ok());
}

#[tokio::test]
async fn unscoped_tokens_are_refused_and_system_scope_is_read() {
    let env = Env::load().await;
    let v = env.validator();
    let unscoped = env
        .issue(
            &env.get("FRESCO_TEST_A_MEMBER_USER"),
            &env.get("FRESCO_TEST_A_MEMBER_PASSWORD"),
            serde_json::Value::Null,
        )
        .await;
    assert_eq!(v.validate(&unscoped).await, Err(AuthError::Unscoped));
    let system = env
        .issue(
            &env.get("KEYSTONE_ADMIN_USER"),
            &env.get("KEYSTONE_ADMIN_PASSWORD"),
            json!({"system": {"all": true}}),
        )
        .await;
    let ctx = v.validate(&system).await.expect("system-scoped token");
    assert_eq!(ctx.system_scope.as_deref(), Some("all"));
    assert_eq!(ctx.project_id, None);
    assert!(ctx.is_admin() && ctx.has_role("reader"));
    assert!(ctx.is_cloud_admin() && !ctx.is_admin_project);
}

/// Keystone marks tokens scoped to its admin project (`[resource] admin_project_name`, set by
/// `tools/lib/keystone.sh`) with `is_admin_project`; the admin role there is the cloud's admin.
#[tokio::test]
async fn the_cloud_admin_project_is_read_from_keystone() {
    let env = Env::load().await;
    let v = env.validator();
    let ctx = v
        .validate(&env.admin_token().await)
        .await
        .expect("admin token");
    assert!(
        ctx.is_admin_project,
        "no is_admin_project: is [resource] admin_project_name set in keystone.conf? \
         (`bash tools/lib/keystone.sh seed` sets it)"
    );
    assert!(ctx.is_cloud_admin());
    let member = v
        .validate(&env.project_token("A", "ADMIN").await)
        .await
        .expect("project admin token");
    assert!(!member.is_admin_project && !member.is_cloud_admin());
}

#[tokio::test]
async fn revoked_tokens_are_refused_once_out_of_the_cache() {
    const CACHE_TIME: Duration = Duration::from_secs(6);
    let env = Env::load().await;
    let v = env.cached(&env.url(), CACHE_TIME);
    let token = env.project_token("A", "MEMBER").await;
    let admin = env.admin_token().await;
    v.validate(&token).await.expect("valid");
    let validated = std::time::Instant::now();
    env.revoke_with(&admin, &token).await;
    assert!(
        validated.elapsed() < CACHE_TIME,
        "revoking took {:?}: the machine is too slow for this test",
        validated.elapsed()
    );
    assert!(v.validate(&token).await.is_ok(), "still cached");
    assert_eq!(v.inner().stats().validations, 1);
    tokio::time::sleep(
        (CACHE_TIME + Duration::from_millis(100)).saturating_sub(validated.elapsed()),
    )
    .await;
    assert_eq!(v.validate(&token).await, Err(AuthError::InvalidToken));
    assert_eq!(v.inner().stats().validations, 2);
    // The refusal is cached too.
    assert_eq!(v.validate(&token).await, Err(AuthError::InvalidToken));
    assert_eq!(v.inner().stats().validations, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_validations_of_one_fresh_token_make_one_keystone_call() {
    let env = Env::load().await;
    let v = Arc::new(env.cached(&env.url(), Duration::from_secs(300)));
    let token = env.project_token("B", "READER").await;
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let v = v.clone();
            let token = token.clone();
            tokio::spawn(async move { v.validate(&token).await })
        })
        .collect();
    for task in tasks {
        let ctx = task.await.expect("task").expect("valid");
        assert_eq!(ctx.project_id, Some(env.get("FRESCO_TEST_PROJECT_B_ID")));
    }
    assert_eq!(v.inner().stats().validations, 1);
    assert_eq!(v.inner().stats().service_auths, 1);
    assert_eq!(v.stats().misses, 32);
}

#[tokio::test]
async fn a_revoked_service_token_is_replaced_without_a_restart() {
    let env = Env::load().await;
    let v = KeystoneValidator::new(env.keystone_config(
        &env.url(),
        "FRESCO_REAUTH_USER",
        "FRESCO_REAUTH_PASSWORD",
    ))
    .expect("validator");
    let token = env.project_token("A", "READER").await;
    v.validate(&token).await.expect("valid");
    assert_eq!(v.stats().service_auths, 1);
    // Disabling a user revokes its tokens: the validator's service token dies.
    let user = format!("/users/{}", env.get("FRESCO_REAUTH_USER_ID"));
    let patch = |enabled: bool| Some(json!({"user": {"enabled": enabled}}));
    assert_eq!(
        env.admin_call(reqwest::Method::PATCH, &user, patch(false))
            .await,
        200
    );
    assert_eq!(
        env.admin_call(reqwest::Method::PATCH, &user, patch(true))
            .await,
        200
    );
    // Fernet tokens carry whole seconds: a token of the same second as the revocation is
    // revoked too.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let ctx = v
        .validate(&token)
        .await
        .expect("valid after re-authentication");
    assert_eq!(ctx.user_name, env.get("FRESCO_TEST_A_READER_USER"));
    assert_eq!(v.stats().service_auths, 2, "authenticated again");
    assert_eq!(v.stats().validations, 3, "refused once, then retried");
    v.validate(&token).await.expect("valid");
    assert_eq!(v.stats().service_auths, 2);
}

/// A second Keystone on a free port, sharing the first one's database and keys, started and
/// stopped through `keystone.sh` with its own pid file. Stopped on drop.
struct ExtraKeystone {
    port: u16,
    script: String,
    state: String,
}

impl ExtraKeystone {
    fn new(env: &Env) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        Self {
            port,
            script: env.get("KEYSTONE_SCRIPT"),
            state: env.get("FRESCO_STATE"),
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/v3", self.port)
    }

    fn run(&self, command: &str) {
        let output = Command::new("bash")
            .arg(&self.script)
            .arg(command)
            .env("KEYSTONE_PORT", self.port.to_string())
            .env("FRESCO_STATE", &self.state)
            .output()
            .expect("run keystone.sh");
        assert!(
            output.status.success(),
            "keystone.sh {command} on port {}: {}",
            self.port,
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Drop for ExtraKeystone {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(&self.script)
            .arg("stop")
            .env("KEYSTONE_PORT", self.port.to_string())
            .env("FRESCO_STATE", &self.state)
            .output();
    }
}

#[tokio::test]
async fn an_outage_keeps_cached_tokens_working_and_recovers_without_a_restart() {
    let env = Env::load().await;
    let extra = ExtraKeystone::new(&env);
    extra.run("start");
    let v = env.cached(&extra.url(), Duration::from_secs(300));
    let cached = env.project_token("A", "MEMBER").await;
    let fresh = env.project_token("A", "READER").await;
    v.validate(&cached).await.expect("valid");
    let calls = v.inner().stats().calls();

    extra.run("stop");
    let ctx = v
        .validate(&cached)
        .await
        .expect("a cached token keeps working");
    assert!(ctx.has_role("member"));
    assert_eq!(v.inner().stats().calls(), calls, "answered from the cache");
    match v.validate(&fresh).await {
        Err(AuthError::KeystoneUnavailable(reason)) => {
            assert!(reason.contains("cannot reach keystone"), "{reason}")
        }
        other => panic!("expected unavailable, got {other:?}"),
    }
    // Not cached: the next call asks again (and fails again).
    assert!(matches!(
        v.validate(&fresh).await,
        Err(AuthError::KeystoneUnavailable(_))
    ));

    extra.run("start");
    let ctx = v
        .validate(&fresh)
        .await
        .expect("recovered without a restart");
    assert!(ctx.has_role("reader") && !ctx.has_role("member"));
    assert!(v.validate(&cached).await.is_ok());
}

#[tokio::test]
async fn the_authenticator_from_config_validates_with_keystone() {
    let env = Env::load().await;
    let mut raw = RawConfig::default();
    raw.set("DEFAULT", "auth_strategy", "keystone");
    raw.set("keystone_authtoken", "auth_url", &env.url());
    raw.set(
        "keystone_authtoken",
        "username",
        &env.get("FRESCO_SERVICE_USER"),
    );
    raw.set(
        "keystone_authtoken",
        "password",
        &env.get("FRESCO_SERVICE_PASSWORD"),
    );
    let auth = Authenticator::from_config(&raw).expect("configured");
    assert_eq!(
        auth.www_authenticate_header(),
        format!("Keystone uri=\"{}\"", env.url())
    );
    let token = env.project_token("A", "ADMIN").await;
    for _ in 0..3 {
        let ctx = auth.authenticate(Some(&token)).await.expect("valid");
        assert!(ctx.is_admin());
    }
    assert_eq!(auth.authenticate(None).await, Err(AuthError::MissingToken));
    assert_eq!(
        auth.authenticate(Some("nope")).await,
        Err(AuthError::InvalidToken)
    );
    let stats = auth.stats();
    assert_eq!(stats.keystone.validations, 2, "one per distinct token");
    assert_eq!(stats.cache.hits, 2);
}
