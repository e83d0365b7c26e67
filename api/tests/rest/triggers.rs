//! `/v1/triggers` and `/v1/webhooks/{token}`: cron and webhook triggers of a project, their
//! validation, quota and tenancy; webhook signatures and rate limits against the real database.

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::common::*;

use fresco_common::ticket::test_keys::CONTROL_PLANE_PRIVATE;

/// The app with invocations configured (async ones are queued; no scheduler runs), runtime
/// `py` and function `f` of proj-a with version 1.
async fn setup() -> (TestApi, Value, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("fresco-triggers-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("key dir");
    std::fs::write(dir.join("control-plane.pem"), CONTROL_PLANE_PRIVATE).expect("key");
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let api = TestApi::start_with(
        Options::default()
            .set(
                "internal_auth",
                "control_plane_key_file",
                dir.join("control-plane.pem").display(),
            )
            .set("scheduler", "urls", format!("http://127.0.0.1:{closed}")),
    )
    .await;
    api.runtime("py", json!({})).await;
    let f = api.function(ALICE, "f", "py", json!({})).await;
    api.send(post("/v1/functions/f/versions").by(ALICE))
        .await
        .ok(201);
    (api, f, dir)
}

fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[actix_web::test]
async fn triggers_are_created_shown_listed_changed_and_deleted_within_their_project() {
    let (api, f, dir) = setup().await;
    let cron = api
        .send(post("/v1/triggers").by(ALICE).json(json!({
            "name": "nightly", "type": "cron", "function": "f", "alias": null,
            "cron": "30 2 * * *", "timezone": "Asia/Tokyo", "input": {"job": "report"},
        })))
        .await
        .ok(201)["trigger"]
        .clone();
    assert_eq!(cron["function_id"], f["id"]);
    assert_eq!(
        (
            &cron["type"],
            &cron["cron"],
            &cron["timezone"],
            &cron["input"]
        ),
        (
            &json!("cron"),
            &json!("30 2 * * *"),
            &json!("Asia/Tokyo"),
            &json!({"job": "report"})
        )
    );
    // 02:30 in Tokyo is 17:30 UTC.
    let next = cron["next_run_at"].as_str().expect("next tick");
    assert!(next.ends_with("T17:30:00.000Z"), "{next}");
    assert!(cron["webhook_url"].is_null() && cron["has_secret"] == json!(false));

    let hook = api
        .send(post("/v1/triggers").by(ALICE).json(json!({
            "name": "hook", "type": "webhook", "function": f["id"], "version": 1,
            "secret": "0123456789abcdef", "sync": true,
        })))
        .await
        .ok(201)["trigger"]
        .clone();
    let url = hook["webhook_url"].as_str().expect("url");
    let token = url
        .strip_prefix(&format!("{PUBLIC_URL}/v1/webhooks/"))
        .expect("under the public url");
    assert_eq!(token.len(), 64, "256 random bits, hex");
    assert!(
        !hook.to_string().contains("0123456789abcdef"),
        "the secret is never shown"
    );
    assert_eq!(
        (&hook["has_secret"], &hook["version"]),
        (&json!(true), &json!(1))
    );

    // Shown by id or name; listed with filters.
    let by_id = format!("/v1/triggers/{}", cron["id"].as_str().expect("id"));
    assert_eq!(
        api.send(get(&by_id).by(RITA)).await.ok(200)["trigger"],
        cron
    );
    assert_eq!(
        api.send(get("/v1/triggers/hook").by(RITA)).await.ok(200)["trigger"],
        hook
    );
    let all = api
        .send(get("/v1/triggers?sort_key=name").by(RITA))
        .await
        .ok(200);
    assert_eq!(all["triggers"], json!([hook, cron]));
    let webhooks = api
        .send(get("/v1/triggers?type=webhook&function=f").by(RITA))
        .await
        .ok(200);
    assert_eq!(webhooks["triggers"], json!([hook]));

    // Another project sees none of them: its lists are empty, ids are not found, and it cannot
    // aim a trigger at A's function.
    assert_eq!(
        api.send(get("/v1/triggers").by(BOB)).await.ok(200)["triggers"],
        json!([])
    );
    api.send(get(&by_id).by(BOB))
        .await
        .error(404, "could not be found");
    api.send(patch(&by_id).by(BOB).json(json!({"enabled": false})))
        .await
        .error(404, "could not be found");
    api.send(delete(&by_id).by(BOB))
        .await
        .error(404, "could not be found");
    api.send(post("/v1/triggers").by(BOB).json(json!({
        "name": "steal", "type": "webhook", "function": f["id"],
    })))
    .await
    .error(404, "could not be found");
    api.send(post("/v1/triggers").by(RITA).json(json!({"name": "x"})))
        .await
        .error(403, "trigger:create");

    // Changes: a new schedule moves the next tick; disabling clears it.
    let changed = api
        .send(
            patch(&by_id)
                .by(ALICE)
                .json(json!({"cron": "0 12 * * *", "timezone": "UTC"})),
        )
        .await
        .ok(200)["trigger"]
        .clone();
    assert!(changed["next_run_at"]
        .as_str()
        .expect("next")
        .ends_with("T12:00:00.000Z"));
    let off = api
        .send(patch(&by_id).by(ALICE).json(json!({"enabled": false})))
        .await
        .ok(200)["trigger"]
        .clone();
    assert!(off["next_run_at"].is_null() && off["enabled"] == json!(false));
    api.send(
        patch("/v1/triggers/hook")
            .by(ALICE)
            .json(json!({"name": "renamed"})),
    )
    .await
    .error(400, "cannot change");

    api.send(delete(&by_id).by(ALICE)).await.ok(204);
    api.send(get(&by_id).by(ALICE))
        .await
        .error(404, "could not be found");
    // Deleting the function deletes its triggers.
    api.send(delete("/v1/functions/f").by(ALICE)).await.ok(204);
    api.send(get("/v1/triggers/hook").by(ALICE))
        .await
        .error(404, "could not be found");
    let _ = std::fs::remove_dir_all(dir);
}

#[actix_web::test]
async fn bad_triggers_are_refused_naming_what_is_wrong() {
    let (api, _, dir) = setup().await;
    let create = |body: Value| post("/v1/triggers").by(ALICE).json(body);
    api.expect_errors(vec![
        (create(json!({"type": "cron", "function": "f", "cron": "* * * * *"})), 400, "name is required"),
        (create(json!({"name": "t", "function": "f"})), 400, "type is required"),
        (create(json!({"name": "t", "type": "sms", "function": "f"})), 400, "type must be cron, webhook or notification"),
        (create(json!({"name": "t", "type": "cron", "function": "f"})), 400, "needs cron"),
        (create(json!({"name": "t", "type": "cron", "function": "f", "cron": "* * *"})), 400, "5 fields"),
        (create(json!({"name": "t", "type": "cron", "function": "f", "cron": "61 * * * *"})), 400, "not valid"),
        (create(json!({"name": "t", "type": "cron", "function": "f", "cron": "* * * * *", "timezone": "Mars/Base"})), 400, "time zone"),
        (create(json!({"name": "t", "type": "cron", "function": "f", "cron": "* * * * *", "sync": true})), 400, "for webhook triggers"),
        (create(json!({"name": "t", "type": "webhook", "function": "f", "cron": "* * * * *"})), 400, "for cron triggers"),
        (create(json!({"name": "t", "type": "webhook", "function": "f", "secret": "short"})), 400, "secret must be 16 to 512 bytes"),
        (create(json!({"name": "t", "type": "webhook", "function": "f", "rate_limit": -2})), 400, "rate_limit"),
        (create(json!({"name": "t", "type": "webhook", "function": "f", "input": [1]})), 400, "input must be a JSON object"),
        (create(json!({"name": "t", "type": "notification", "function": "f"})), 400, "needs event_types"),
        (create(json!({"name": "t", "type": "notification", "function": "f", "event_types": []})), 400, "1 to 32 event types"),
        (create(json!({"name": "t", "type": "notification", "function": "f", "event_types": ["volume create"]})), 400, "event type \"volume create\""),
        (create(json!({"name": "t", "type": "notification", "function": "f", "event_types": ["x"], "cron": "* * * * *"})), 400, "for cron triggers"),
        (create(json!({"name": "t", "type": "notification", "function": "f", "event_types": ["x"], "sync": true})), 400, "for webhook triggers"),
        (create(json!({"name": "t", "type": "webhook", "function": "f", "event_types": ["x"]})), 400, "for notification triggers"),
        (create(json!({"name": "t", "type": "webhook", "function": "f", "version": 9})), 400, "version 9 of the function does not exist"),
        (create(json!({"name": "t", "type": "webhook", "function": "f", "alias": "live"})), 400, "alias live of the function does not exist"),
        (create(json!({"name": "t", "type": "webhook", "function": "f", "version": 1, "alias": "live"})), 400, "version or alias"),
        (create(json!({"name": "t", "type": "webhook", "function": "nope"})), 404, "function nope could not be found"),
        (create(json!({"name": "t", "type": "webhook", "function": "f", "colour": 1})), 400, "colour"),
    ])
    .await;
    assert_eq!(
        api.db.scalar("SELECT count(*) FROM triggers"),
        0,
        "nothing was stored"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[actix_web::test]
async fn the_triggers_quota_bounds_how_many_a_project_has() {
    let (api, _, dir) = setup().await;
    api.send(
        put("/v1/quotas/proj-a")
            .by(ADMIN)
            .json(json!({"triggers": 2})),
    )
    .await
    .ok(200);
    for name in ["one", "two"] {
        api.send(post("/v1/triggers").by(ALICE).json(json!({
            "name": name, "type": "webhook", "function": "f",
        })))
        .await
        .ok(201);
    }
    api.send(post("/v1/triggers").by(ALICE).json(json!({
        "name": "three", "type": "webhook", "function": "f",
    })))
    .await
    .error(
        403,
        "quota triggers exceeded: the project has 2 of 2 triggers",
    );
    assert_eq!(
        api.quota("proj-a").await["triggers"],
        json!({"limit": 2, "in_use": 2})
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[actix_web::test]
async fn a_webhook_runs_only_when_signed_and_within_its_rate() {
    let (api, f, dir) = setup().await;
    let secret = "s3cret-s3cret-s3cret";
    let hook = api
        .send(post("/v1/triggers").by(ALICE).json(json!({
            "name": "hook", "type": "webhook", "function": "f", "secret": secret,
            "rate_limit": 3, "input": {"source": "shop", "body": "overridden"},
        })))
        .await
        .ok(201)["trigger"]
        .clone();
    let url = hook["webhook_url"].as_str().expect("url");
    let path = url.strip_prefix(PUBLIC_URL).expect("path");
    let body = br#"{"order": 42}"#;
    let queued = || api.db.scalar("SELECT count(*) FROM executions");

    // Missing, wrong, or for another body: 401, nothing queued, no rate spent.
    for signature in [
        None,
        Some("sha256=00".to_owned()),
        Some(sign(secret, b"{}")),
        Some(sign("another-secret-16", body)),
    ] {
        let mut call = post(&format!("{path}?a=1")).raw("application/json", body.to_vec());
        if let Some(signature) = &signature {
            call = call.header("x-fresco-signature", signature);
        }
        api.send(call).await.error(401, "must be signed");
    }
    assert_eq!(queued(), 0, "no unsigned call queued anything");

    // Signed: queued, with the request in the event over the trigger's input.
    let signed = || {
        post(&format!("{path}?a=1&b=two"))
            .raw("application/json", body.to_vec())
            .header("x-fresco-signature", &sign(secret, body))
    };
    let execution = api.send(signed()).await.ok(202)["execution"].clone();
    assert_eq!(execution["function_id"], f["id"]);
    assert_eq!(execution["status"], json!("queued"));
    let input = api.db.string(&format!(
        "SELECT convert_from(input, 'UTF8') FROM executions WHERE id = '{}'",
        execution["id"].as_str().expect("id")
    ));
    let event: Value = serde_json::from_str(&input).expect("json event");
    assert_eq!(
        event["body"],
        json!({"order": 42}),
        "the request's body wins over the input's"
    );
    assert_eq!(event["source"], json!("shop"));
    assert_eq!(event["query"], json!({"a": "1", "b": "two"}));
    assert_eq!(event["method"], json!("POST"));
    assert_eq!(event["headers"]["content-type"], json!("application/json"));
    assert_eq!(
        event["trigger"],
        json!({"id": hook["id"], "name": "hook", "type": "webhook"})
    );

    // The rate limit: 3 a minute.
    api.send(signed()).await.ok(202);
    api.send(signed()).await.ok(202);
    let refused = api.send(signed()).await;
    let retry_after: u64 = refused
        .header("retry-after")
        .expect("retry-after")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    refused.error(429, "rate limit of trigger hook exceeded");
    assert_eq!(queued(), 3);

    // A disabled trigger, and an unknown token, are not found.
    api.send(
        patch("/v1/triggers/hook")
            .by(ALICE)
            .json(json!({"enabled": false})),
    )
    .await
    .ok(200);
    api.send(signed()).await.error(404, "could not be found");
    api.send(post("/v1/webhooks/0000").json(json!({})))
        .await
        .error(404, "could not be found");
    let _ = std::fs::remove_dir_all(dir);
}

/// The value of sample `name` whose labels include `labels`, in a Prometheus text exposition.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("the Prometheus text format");
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

#[actix_web::test]
async fn metrics_count_webhook_calls_and_async_invocations_without_tenant_labels() {
    let (api, _, dir) = setup().await;
    let hook = api
        .send(post("/v1/triggers").by(ALICE).json(json!({
            "name": "hook", "type": "webhook", "function": "f", "secret": "0123456789abcdef",
        })))
        .await
        .ok(201)["trigger"]
        .clone();
    let path = hook["webhook_url"]
        .as_str()
        .expect("url")
        .strip_prefix(PUBLIC_URL)
        .expect("path")
        .to_owned();
    let before = api.send(get("/metrics")).await;
    assert_eq!(before.status.as_u16(), 200);
    assert!(before
        .header("content-type")
        .expect("type")
        .starts_with("text/plain"));
    let before = before.text();
    api.send(post(&path).json(json!({})))
        .await
        .error(401, "must be signed");
    api.send(post(&path).json(json!({})))
        .await
        .error(401, "must be signed");
    api.send(
        post("/v1/functions/f/invoke?async=true")
            .by(ALICE)
            .json(json!({})),
    )
    .await
    .ok(202);
    let body = b"{}";
    api.send(
        post(&path)
            .raw("application/json", body.to_vec())
            .header("x-fresco-signature", &sign("0123456789abcdef", body)),
    )
    .await
    .ok(202);
    let after = api.send(get("/metrics")).await.text();
    let moved = |name: &str, labels: &[(&str, &str)]| {
        sample(&after, name, labels) - sample(&before, name, labels)
    };
    assert_eq!(
        moved(
            "fresco_api_webhook_calls_total",
            &[("outcome", "unauthorized")]
        ),
        2.0
    );
    assert_eq!(
        moved("fresco_api_webhook_calls_total", &[("outcome", "accepted")]),
        1.0
    );
    assert_eq!(
        moved("fresco_api_async_accepted_total", &[("source", "invoke")]),
        1.0
    );
    assert_eq!(
        moved("fresco_api_async_accepted_total", &[("source", "webhook")]),
        1.0
    );
    for secret in [
        "proj-a",
        "0123456789abcdef",
        hook["id"].as_str().expect("id"),
        &path,
    ] {
        assert!(!after.contains(secret), "{secret} in the metrics");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[actix_web::test]
async fn event_configs_name_only_functions_of_their_project() {
    let (api, _, dir) = setup().await;
    api.function(ALICE, "archive", "py", json!({})).await;
    let theirs = api.function(BOB, "g", "py", json!({})).await;
    let theirs = theirs["id"].as_str().expect("id");
    let put_config = |body: Value| put("/v1/functions/f/event-config").by(ALICE).json(body);
    api.expect_errors(vec![
        (
            put_config(json!({"on_success": theirs})),
            400,
            "on_success: function",
        ),
        (
            put_config(json!({"on_failure": theirs})),
            400,
            "on_failure: function",
        ),
        (put_config(json!({"max_attempts": 0})), 400, "max_attempts"),
        (put_config(json!({"max_attempts": 11})), 400, "max_attempts"),
        (
            put_config(json!({"max_event_age_s": 0})),
            400,
            "max_event_age_s",
        ),
        (
            put_config(json!({"on_failure": "archive", "dead_letter": true})),
            400,
            "not both",
        ),
        (put_config(json!({"colour": 1})), 400, "colour"),
    ])
    .await;
    api.send(get("/v1/functions/f/event-config").by(ALICE))
        .await
        .error(404, "event config of function f could not be found");
    let config = api
        .send(put_config(
            json!({"max_attempts": 3, "on_success": "archive", "dead_letter": true}),
        ))
        .await
        .ok(200)["event_config"]
        .clone();
    let archive = api
        .send(get("/v1/functions/archive").by(ALICE))
        .await
        .ok(200);
    assert_eq!(config["on_success"], archive["function"]["id"]);
    assert_eq!(
        (&config["max_attempts"], &config["dead_letter"]),
        (&json!(3), &json!(true))
    );
    assert_eq!(
        api.send(get("/v1/functions/f/event-config").by(RITA))
            .await
            .ok(200)["event_config"],
        config
    );
    // Another project reaches none of it.
    let f = api.send(get("/v1/functions/f").by(ALICE)).await.ok(200);
    let f = f["function"]["id"].as_str().expect("id");
    for call in [
        get(&format!("/v1/functions/{f}/event-config")),
        put(&format!("/v1/functions/{f}/event-config")).json(json!({})),
        delete(&format!("/v1/functions/{f}/event-config")),
        get(&format!("/v1/functions/{f}/dead-letters")),
        post(&format!(
            "/v1/functions/{f}/dead-letters/{}/replay",
            uuid::Uuid::new_v4()
        )),
    ] {
        api.send(call.by(BOB))
            .await
            .error(404, "could not be found");
    }
    api.send(post("/v1/functions/f/dead-letters/not-a-uuid/replay").by(ALICE))
        .await
        .error(404, "");
    // Deleting a destination clears it; deleting the function deletes its config.
    api.send(delete("/v1/functions/archive").by(ALICE))
        .await
        .ok(204);
    let config = api
        .send(get("/v1/functions/f/event-config").by(ALICE))
        .await
        .ok(200);
    assert_eq!(config["event_config"]["on_success"], json!(null));
    api.send(delete("/v1/functions/f").by(ALICE)).await.ok(204);
    assert_eq!(
        api.db.scalar("SELECT count(*) FROM function_event_configs"),
        0
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[actix_web::test]
async fn notification_triggers_keep_their_event_types_and_can_change_them() {
    let (api, f, dir) = setup().await;
    let t = api
        .send(post("/v1/triggers").by(ALICE).json(json!({
            "name": "on-boot", "type": "notification", "function": "f",
            "event_types": ["compute.instance.create.end", "volume.*"],
        })))
        .await
        .ok(201)["trigger"]
        .clone();
    assert_eq!(t["type"], "notification");
    assert_eq!(t["function_id"], f["id"]);
    assert_eq!(
        t["event_types"],
        json!(["compute.instance.create.end", "volume.*"])
    );
    assert_eq!(t["webhook_url"], Value::Null);
    assert_eq!(t["cron"], Value::Null);
    let changed = api
        .send(
            patch("/v1/triggers/on-boot")
                .by(ALICE)
                .json(json!({"event_types": ["image.*"]})),
        )
        .await
        .ok(200)["trigger"]
        .clone();
    assert_eq!(changed["event_types"], json!(["image.*"]));
    api.send(
        patch("/v1/triggers/on-boot")
            .by(ALICE)
            .json(json!({"event_types": []})),
    )
    .await
    .error(400, "1 to 32 event types");
    let listed = api
        .send(get("/v1/triggers?type=notification").by(ALICE))
        .await
        .ok(200);
    assert_eq!(listed["triggers"].as_array().map(Vec::len), Some(1));
    // Another project sees none of it.
    api.send(get("/v1/triggers/on-boot").by(BOB))
        .await
        .error(404, "could not be found");
    let _ = std::fs::remove_dir_all(dir);
}
