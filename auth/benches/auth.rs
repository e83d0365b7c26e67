//! Micro-benchmark of the per-request auth work: a cache-hit token validation and a policy
//! check, in ns/op. With the dev Keystone seeded (`tools/lib/keystone.sh start && seed`) it
//! also measures uncached validation against the real Keystone for comparison.
//!
//! `CARGO_TARGET_DIR=/work/target-auth cargo bench -p fresco-auth` (uncached Keystone calls:
//! `FRESCO_BENCH_KEYSTONE_ITERATIONS`, default 50)

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use fresco_auth::policy::{Enforcer, Target};
use fresco_auth::{
    AuthError, CacheConfig, CachingValidator, Context, KeystoneConfig, KeystoneValidator, NoAuth,
    TokenValidator,
};

/// A fernet-sized token, so hashing costs what it costs in production.
const TOKEN: &str = "gAAAAABrCTeJBrnUItuQD6wogvzuHWCbTKOiEHhBexampleexampleexampleexampleexampleexampleexampleexampleexampleexampleexampleexampleexampleexampleexampleexampleexampleexampleexampleexampleexample";

struct Instant0;

impl TokenValidator for Instant0 {
    async fn validate(&self, _token: &str) -> Result<Context, AuthError> {
        NoAuth::default().parse("alice:p1:member")
    }
}

fn report(name: &str, iterations: u32, elapsed: Duration) {
    println!(
        "{name:<52} {:>10.0} ns/op   ({iterations} iterations)",
        elapsed.as_nanos() as f64 / f64::from(iterations)
    );
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

fn read_env() -> Option<std::collections::HashMap<String, String>> {
    let text = std::fs::read_to_string(env_file()).ok()?;
    Some(
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
    )
}

async fn issue(env: &std::collections::HashMap<String, String>, who: &str) -> Option<String> {
    let body = serde_json::json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": env.get(&format!("FRESCO_TEST_A_{who}_USER"))?, "domain": {"id": "default"},
            "password": env.get(&format!("FRESCO_TEST_A_{who}_PASSWORD"))?}}},
        "scope": {"project": {"id": env.get("FRESCO_TEST_PROJECT_A_ID")?}},
    }});
    let response = reqwest::Client::new()
        .post(format!(
            "{}/auth/tokens?nocatalog",
            env.get("KEYSTONE_URL")?
        ))
        .json(&body)
        .send()
        .await
        .ok()?;
    Some(
        response
            .headers()
            .get("x-subject-token")?
            .to_str()
            .ok()?
            .to_owned(),
    )
}

async fn keystone(iterations: u32) {
    let Some(env) = read_env() else {
        println!(
            "(no {}: skipping the real Keystone numbers)",
            env_file().display()
        );
        return;
    };
    let Some(token) = issue(&env, "MEMBER").await else {
        println!("(keystone does not answer: skipping the real Keystone numbers)");
        return;
    };
    let config = KeystoneConfig {
        auth_url: env.get("KEYSTONE_URL").cloned().unwrap_or_default(),
        username: env.get("FRESCO_SERVICE_USER").cloned().unwrap_or_default(),
        password: env
            .get("FRESCO_SERVICE_PASSWORD")
            .cloned()
            .unwrap_or_default(),
        user_domain_name: "Default".into(),
        project_name: "service".into(),
        project_domain_name: "Default".into(),
        timeout: Duration::from_secs(10),
        service_token_roles: vec!["service".into()],
        cafile: None,
    };
    let Ok(uncached) = KeystoneValidator::new(config.clone()) else {
        println!("(bad keystone config)");
        return;
    };
    if uncached.validate(&token).await.is_err() {
        println!("(keystone refuses the token: skipping)");
        return;
    }
    let mut samples = Vec::new();
    for _ in 0..iterations {
        let start = Instant::now();
        let answer = uncached.validate(black_box(&token)).await;
        samples.push(start.elapsed());
        assert!(answer.is_ok());
    }
    samples.sort_unstable();
    let total: Duration = samples.iter().sum();
    report("keystone validation, uncached (mean)", iterations, total);
    println!(
        "{:<52} {:>10} ns/op",
        "keystone validation, uncached (median)",
        samples[samples.len() / 2].as_nanos()
    );
    let Ok(inner) = KeystoneValidator::new(config) else {
        return;
    };
    let cached = CachingValidator::new(inner, CacheConfig::default());
    assert!(cached.validate_shared(&token).await.is_ok());
    let n = 1_000_000;
    let start = Instant::now();
    for _ in 0..n {
        black_box(cached.validate_shared(black_box(&token)).await.is_ok());
    }
    report("keystone validation, cached (hit)", n, start.elapsed());
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let n = 1_000_000;
    let cache = CachingValidator::new(Instant0, CacheConfig::default());
    let ctx = cache.validate_shared(TOKEN).await.expect("valid");

    let start = Instant::now();
    for _ in 0..n {
        black_box(cache.validate_shared(black_box(TOKEN)).await.is_ok());
    }
    report(
        "cache hit: validate_shared (sha256 + lookup + Arc)",
        n,
        start.elapsed(),
    );

    let start = Instant::now();
    for _ in 0..n {
        black_box(cache.validate(black_box(TOKEN)).await.is_ok());
    }
    report(
        "cache hit: validate (owned Context clone)",
        n,
        start.elapsed(),
    );

    let enforcer = Enforcer::defaults();
    let target = Target::project("p1");
    let start = Instant::now();
    for _ in 0..n {
        black_box(
            enforcer
                .enforce(black_box("function:invoke"), &ctx, black_box(&target))
                .is_ok(),
        );
    }
    report(
        "policy: enforce function:invoke (allowed)",
        n,
        start.elapsed(),
    );

    let other = Target::project("p2");
    let start = Instant::now();
    for _ in 0..n {
        black_box(
            enforcer
                .check(black_box("function:invoke"), &ctx, black_box(&other))
                .is_ok(),
        );
    }
    report(
        "policy: check function:invoke (denied, no error)",
        n,
        start.elapsed(),
    );

    let start = Instant::now();
    for _ in 0..n {
        let ctx = cache
            .validate_shared(black_box(TOKEN))
            .await
            .expect("valid");
        black_box(
            enforcer
                .enforce("function:invoke", &ctx, &Target::project("p1"))
                .is_ok(),
        );
    }
    report(
        "cache hit + enforce (the per-request auth work)",
        n,
        start.elapsed(),
    );

    let iterations = std::env::var("FRESCO_BENCH_KEYSTONE_ITERATIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(50);
    keystone(iterations).await;
}
