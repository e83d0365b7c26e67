//! Which images functions run (docs/security.md, "Images and function lifecycle").
//!
//! The attack: a member names any image on the node as its function's `image` (another
//! project's private runtime image, a disabled runtime's image, an operator's tooling image),
//! or keeps running on a runtime that has since been disabled or made private. A function's
//! own image is a capability (`function:create:custom_image`: by default the admin of the
//! function's own project, or a cloud admin) within
//! `[api] allowed_image_prefixes`; runtimes are checked again at every invocation.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use uuid::Uuid;

use crate::common::*;

const CUSTOM_IMAGE_RULE: &str =
    "policy does not allow function:create:custom_image to be performed";

/// A control-plane key (the API's own, for its calls to the scheduler), so that invocations
/// are configured; the scheduler URL answers nothing, so an invocation that passes every check
/// ends in 503 "scheduler unavailable".
fn control_plane_key() -> &'static Path {
    static KEY: OnceLock<PathBuf> = OnceLock::new();
    KEY.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("rest-images");
        std::fs::create_dir_all(&dir).expect("test tmp dir");
        let key = dir.join("control-plane.pem");
        if !key.exists() {
            let partial = dir.join(format!("control-plane.{}.pem", Uuid::new_v4().simple()));
            let output = std::process::Command::new("openssl")
                .args(["genpkey", "-algorithm", "ed25519", "-out"])
                .arg(&partial)
                .output()
                .expect("openssl runs (needed to make a control-plane key)");
            assert!(output.status.success(), "openssl genpkey failed");
            std::fs::rename(&partial, &key).expect("rename the key");
        }
        key
    })
    .as_path()
}

/// Options with invocations configured and a target cache of `ttl` seconds.
fn invocable(ttl: u64) -> Options {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    Options::default()
        .set(
            "internal_auth",
            "control_plane_key_file",
            control_plane_key().display(),
        )
        .set("scheduler", "urls", format!("http://127.0.0.1:{port}"))
        .set("api", "function_cache_ttl", ttl)
}

/// The runtimes of the attack: a public one, project B's private one, a disabled one.
async fn runtimes(api: &TestApi) {
    api.runtime("python3", json!({})).await;
    api.runtime(
        "secret-b",
        json!({"image": "fresco/secret-b:1", "is_public": false, "project_id": "proj-b"}),
    )
    .await;
    let old = api.runtime("old", json!({"image": "fresco/old:1"})).await;
    api.send(
        patch(&format!("/v1/runtimes/{}", old["id"].as_str().expect("id")))
            .by(ADMIN)
            .json(json!({"status": "disabled"})),
    )
    .await
    .ok(200);
}

fn with_image(name: &str, image: &str) -> Value {
    json!({"name": name, "image": image})
}

#[actix_web::test]
async fn custom_images_are_admin_only_and_within_the_operators_prefixes() {
    let api = TestApi::start_with(Options::default().set(
        "api",
        "allowed_image_prefixes",
        "registry.example/fn/",
    ))
    .await;
    runtimes(&api).await;
    let zip = zip_of(&[("main.py", b"x = 1\n")]);
    let mut cases = Vec::new();
    // Members: refused by the capability's rule, whatever the image (even an allowed one),
    // as JSON or as the metadata of a multipart upload.
    for image in [
        "fresco/secret-b:1",
        "fresco/old:1",
        "fresco/tools:latest",
        "registry.example/fn/hello:1",
    ] {
        cases.push((
            post("/v1/functions")
                .by(ALICE)
                .json(with_image("attack", image)),
            403,
            CUSTOM_IMAGE_RULE,
        ));
        cases.push((
            post("/v1/functions")
                .by(BOB)
                .upload(&with_image("attack", image), Some(&zip)),
            403,
            CUSTOM_IMAGE_RULE,
        ));
    }
    // A reader may not create at all.
    cases.push((
        post("/v1/functions")
            .by(RITA)
            .json(with_image("attack", "fresco/tools:latest")),
        403,
        "policy does not allow function:create to be performed",
    ));
    // Admins: only within the prefixes, matched at a reference boundary.
    for image in [
        "fresco/secret-b:1",
        "fresco/old:1",
        "fresco/tools:latest",
        "registry.example/fnord:1",
        "docker.io/registry.example/fn/hello:1",
    ] {
        cases.push((
            post("/v1/functions")
                .by(ADA)
                .json(with_image("attack", image)),
            400,
            "is not allowed: custom images must start with one of registry.example/fn/",
        ));
    }
    api.expect_errors(cases).await;
    assert_eq!(
        api.db.scalar("SELECT count(*) FROM functions"),
        0,
        "nothing stored"
    );

    let created = api
        .send(
            post("/v1/functions")
                .by(ADA)
                .json(with_image("tool", "registry.example/fn/hello:1")),
        )
        .await
        .ok(201)["function"]
        .clone();
    assert_eq!(created["image"], "registry.example/fn/hello:1");
    assert_eq!(created["project_id"], "proj-a");
    // Its members use it like any function of their project.
    api.send(
        patch("/v1/functions/tool")
            .by(ALICE)
            .json(json!({"memory_mb": 256})),
    )
    .await
    .ok(200);
    api.send(post("/v1/functions/tool/versions").by(ALICE))
        .await
        .ok(201);
}

#[actix_web::test]
async fn without_prefixes_no_custom_image_is_accepted() {
    let api = TestApi::start().await;
    api.send(
        post("/v1/functions")
            .by(ADA)
            .json(with_image("tool", "fresco/python3:test")),
    )
    .await
    .error(
        400,
        "image fresco/python3:test is not allowed: this cloud runs no custom images",
    );
    assert_eq!(api.db.scalar("SELECT count(*) FROM functions"), 0);
}

#[actix_web::test]
async fn updates_cannot_switch_to_another_image_or_an_unusable_runtime() {
    let api = TestApi::start().await;
    runtimes(&api).await;
    let f = api.function(ALICE, "f", "python3", json!({})).await;
    let secret = api
        .send(get("/v1/runtimes/secret-b?all_projects=true").by(ADMIN))
        .await
        .ok(200)["runtime"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    api.expect_errors(vec![
        (
            patch("/v1/functions/f")
                .by(ALICE)
                .json(json!({"image": "fresco/tools:latest"})),
            400,
            "unknown field `image`",
        ),
        (
            patch("/v1/functions/f")
                .by(ALICE)
                .json(json!({"runtime": "secret-b"})),
            400,
            "runtime secret-b does not exist",
        ),
        (
            patch("/v1/functions/f")
                .by(ALICE)
                .json(json!({"runtime": secret})),
            400,
            "does not exist",
        ),
        (
            patch("/v1/functions/f")
                .by(ALICE)
                .json(json!({"runtime": "old"})),
            400,
            "runtime old is disabled",
        ),
        (
            post("/v1/functions")
                .by(ALICE)
                .json(json!({"name": "g", "runtime": "old"})),
            400,
            "runtime old is disabled",
        ),
    ])
    .await;
    let shown = api.send(get("/v1/functions/f").by(ALICE)).await.ok(200)["function"].clone();
    assert_eq!(shown["runtime_id"], f["runtime_id"]);
    assert_eq!(shown["image"], Value::Null);
}

/// The invocation answers of `f` by every selector, sync and async.
async fn invocation_statuses(api: &TestApi, function: &str) -> Vec<(String, u16, String)> {
    let mut out = Vec::new();
    for query in ["", "?version=1", "?alias=live", "?async=true"] {
        let reply = api
            .send(
                post(&format!("/v1/functions/{function}/invoke{query}"))
                    .by(ALICE)
                    .json(json!({})),
            )
            .await;
        let status = reply.status.as_u16();
        let message = if status >= 400 {
            reply.error(status, "")
        } else {
            String::new()
        };
        out.push((query.to_owned(), status, message));
    }
    out
}

fn assert_all(got: &[(String, u16, String)], status: u16, fragment: &str) {
    for (query, code, message) in got {
        assert_eq!(*code, status, "invoke{query}: {message}");
        assert!(
            message.contains(fragment),
            "invoke{query}: {message:?} lacks {fragment:?}"
        );
    }
}

#[actix_web::test]
async fn invocations_refuse_runtimes_disabled_or_made_private_since() {
    let api = TestApi::start_with(invocable(0)).await;
    let shared = api.runtime("shared", json!({})).await;
    let shared_path = format!("/v1/runtimes/{}", shared["id"].as_str().expect("id"));
    api.function(ALICE, "f", "shared", json!({})).await;
    api.send(post("/v1/functions/f/versions").by(ALICE))
        .await
        .ok(201);
    api.send(
        post("/v1/functions/f/aliases")
            .by(ALICE)
            .json(json!({"name": "live", "version": 1})),
    )
    .await
    .ok(201);
    // Every check passes: the call reaches for the scheduler (which does not run), or queues.
    let allowed = invocation_statuses(&api, "f").await;
    assert_all(&allowed[..3], 503, "scheduler unavailable");
    assert_eq!(allowed[3].1, 202);
    let queued = api.db.scalar("SELECT count(*) FROM executions");
    assert_eq!(queued, 1);

    // Disabled since: refused, sync and async, every version.
    api.send(
        patch(&shared_path)
            .by(ADMIN)
            .json(json!({"status": "disabled"})),
    )
    .await
    .ok(200);
    assert_all(
        &invocation_statuses(&api, "f").await,
        409,
        "function f cannot run: runtime shared is disabled",
    );
    assert_eq!(
        api.db.scalar("SELECT count(*) FROM executions"),
        queued,
        "nothing queued"
    );

    // Enabled again, then made private to its owner (the admin's project): refused too.
    api.send(
        patch(&shared_path)
            .by(ADMIN)
            .json(json!({"status": "available"})),
    )
    .await
    .ok(200);
    assert_all(&invocation_statuses(&api, "f").await[..3], 503, "");
    api.send(
        patch(&shared_path)
            .by(ADMIN)
            .json(json!({"is_public": false})),
    )
    .await
    .ok(200);
    assert_all(
        &invocation_statuses(&api, "f").await,
        409,
        "is no longer available to its project",
    );

    // A runtime private to the function's own project stays usable.
    api.runtime("mine", json!({"is_public": false, "project_id": "proj-a"}))
        .await;
    api.function(ALICE, "g", "mine", json!({})).await;
    api.send(post("/v1/functions/g/invoke").by(ALICE).json(json!({})))
        .await
        .error(503, "scheduler unavailable");
}

#[actix_web::test]
async fn invocations_refuse_own_images_outside_the_prefixes() {
    let api = TestApi::start_with(invocable(0).set(
        "api",
        "allowed_image_prefixes",
        "registry.example/fn/",
    ))
    .await;
    api.send(
        post("/v1/functions")
            .by(ADA)
            .json(with_image("tool", "registry.example/fn/hello:1")),
    )
    .await
    .ok(201);
    api.send(post("/v1/functions/tool/invoke").by(ALICE).json(json!({})))
        .await
        .error(503, "scheduler unavailable");
    // A function created through the hole before this fix (or before the operator narrowed
    // the prefixes) no longer runs.
    api.db.execute(
        "INSERT INTO functions (id, project_id, name, image, handler, memory_mb, timeout_s) \
         VALUES (gen_random_uuid(), 'proj-a', 'legacy', 'fresco/tools:latest', 'main.handler', 128, 3)",
    );
    for query in ["", "?async=true"] {
        api.send(
            post(&format!("/v1/functions/legacy/invoke{query}"))
                .by(ALICE)
                .json(json!({})),
        )
        .await
        .error(
            409,
            "function legacy cannot run: its image fresco/tools:latest is not among the images this cloud allows",
        );
    }
    assert_eq!(api.db.scalar("SELECT count(*) FROM executions"), 0);
}

#[actix_web::test]
async fn a_cached_target_outlives_a_runtime_change_by_at_most_the_ttl() {
    const TTL: Duration = Duration::from_secs(2);
    let api = TestApi::start_with(invocable(TTL.as_secs())).await;
    let shared = api.runtime("shared", json!({})).await;
    api.function(ALICE, "f", "shared", json!({})).await;
    // Resolved and cached.
    api.send(post("/v1/functions/f/invoke").by(ALICE).json(json!({})))
        .await
        .error(503, "scheduler unavailable");
    // Disabled through another replica: this one's cache is not told, its TTL bounds it.
    api.db.execute(&format!(
        "UPDATE runtimes SET status = 'disabled' WHERE id = '{}'",
        shared["id"].as_str().expect("id")
    ));
    let changed = Instant::now();
    let mut cached = false;
    loop {
        let reply = api
            .send(post("/v1/functions/f/invoke").by(ALICE).json(json!({})))
            .await;
        if reply.status.as_u16() == 409 {
            reply.error(409, "runtime shared is disabled");
            break;
        }
        assert_eq!(reply.status.as_u16(), 503, "{}", reply.text());
        cached = true;
        assert!(
            changed.elapsed() <= TTL + Duration::from_millis(500),
            "still invocable {:?} after the runtime was disabled (ttl {TTL:?})",
            changed.elapsed()
        );
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        cached,
        "the first call after the change came from the cache"
    );
    // A change through this replica is seen at once.
    let api = TestApi::start_with(invocable(3600)).await;
    let shared = api.runtime("shared", json!({})).await;
    api.function(ALICE, "f", "shared", json!({})).await;
    api.send(post("/v1/functions/f/invoke").by(ALICE).json(json!({})))
        .await
        .error(503, "scheduler unavailable");
    api.send(
        patch(&format!(
            "/v1/runtimes/{}",
            shared["id"].as_str().expect("id")
        ))
        .by(ADMIN)
        .json(json!({"status": "disabled"})),
    )
    .await
    .ok(200);
    api.send(post("/v1/functions/f/invoke").by(ALICE).json(json!({})))
        .await
        .error(409, "runtime shared is disabled");
}
