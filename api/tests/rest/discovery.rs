//! Discovery, health, request ids, authentication and the error body shape.

use serde_json::json;

use crate::common::*;

#[actix_web::test]
async fn version_documents_need_no_token() {
    let api = TestApi::start().await;
    let root = api.send(get("/")).await.ok(200);
    let versions = root["versions"].as_array().expect("versions");
    assert_eq!(versions.len(), 1, "{root}");
    assert_eq!(versions[0]["id"], "v1.0");
    assert_eq!(versions[0]["status"], "CURRENT");
    assert_eq!(
        versions[0]["links"],
        json!([{"rel": "self", "href": format!("{PUBLIC_URL}/v1/")}])
    );

    for path in ["/v1/", "/v1"] {
        let v1 = api.send(get(path)).await.ok(200);
        assert_eq!(v1["version"], versions[0], "{path}");
    }
}

#[actix_web::test]
async fn healthcheck_is_ok_while_the_database_answers() {
    let api = TestApi::start().await;
    let health = api.send(get("/healthcheck")).await.ok(200);
    assert_eq!(health, json!({"status": "ok"}));
}

#[actix_web::test]
async fn a_missing_or_invalid_token_is_401_with_www_authenticate() {
    let api = TestApi::start().await;
    let challenge = format!("Keystone uri=\"{KEYSTONE_URI}\"");
    for (call, fragment) in [
        (get("/v1/functions"), "no x-auth-token given"),
        (
            get("/v1/runtimes").header("x-auth-token", "   "),
            "no x-auth-token given",
        ),
        (
            get("/v1/functions").by("not-a-token"),
            "the token is invalid",
        ),
        (
            get("/v1/quotas/proj-a").by("a:b:c:d"),
            "the token is invalid",
        ),
        (
            post("/v1/functions").json(json!({"name": "f", "image": "x"})),
            "no x-auth-token",
        ),
    ] {
        let reply = api.send(call).await;
        assert_eq!(
            reply.header("www-authenticate"),
            Some(challenge.as_str()),
            "{}",
            reply.label
        );
        reply.error(401, fragment);
    }
    // Nothing was created by the unauthenticated POST.
    assert_eq!(api.db.scalar("SELECT count(*) FROM functions"), 0);
}

#[actix_web::test]
async fn every_error_carries_a_request_id_and_the_error_shape() {
    let api = TestApi::start().await;
    let zip = zip_of(&[("main.py", b"x = 1\n")]);
    let too_long = MAX_PACKAGE_BYTES + 1;
    api.expect_errors(vec![
        (get("/v1/functions"), 401, "authentication required"),
        (get("/nowhere").by(ALICE), 404, "no such resource"),
        (get("/v2/functions").by(ALICE), 404, "no such resource"),
        (get("/v1/functions/nope").by(ALICE), 404, "function nope could not be found"),
        (
            post("/v1/runtimes")
                .by(ADMIN)
                .json(json!({"name": "r", "image": "i", "kind": "python", "description": "x".repeat(MAX_JSON_BODY_BYTES)})),
            413,
            &format!("request body is larger than {MAX_JSON_BODY_BYTES} bytes"),
        ),
        (
            put("/v1/functions/nope/code")
                .by(ALICE)
                .raw("application/zip", zip)
                .header("content-length", &too_long.to_string()),
            413,
            &format!("request body is larger than {MAX_PACKAGE_BYTES} bytes"),
        ),
        (
            post("/v1/functions").by(ALICE).raw("text/plain", "hello"),
            415,
            "expected application/json, got text/plain",
        ),
        (get("/v1/agents").by(ALICE), 403, "policy does not allow agent:list to be performed"),
    ])
    .await;
}

#[actix_web::test]
async fn request_ids_are_unique_per_response() {
    let api = TestApi::start().await;
    let mut seen = std::collections::HashSet::new();
    for call in [
        get("/"),
        get("/"),
        get("/healthcheck"),
        get("/v1/functions"),
        get("/v1/functions").by(ALICE),
    ] {
        let reply = api.send(call).await;
        let id = reply
            .header("x-openstack-request-id")
            .expect("request id")
            .to_owned();
        assert!(seen.insert(id.clone()), "request id {id} repeated");
    }
}

/// BUG (api/src/http/handlers/mod.rs, `routes`, and api/src/http/mod.rs, `app`): a method a
/// resource does not serve gets actix's default empty 405, not the `{"error": {...}}` body
/// every error must have; and on the paths registered with `cfg.route(path, web::post()...)`
/// (invoke, log, usage, agents, discovery) the method becomes a guard of the resource itself,
/// so a wrong method falls through to the app's default service: 404 "no such resource".
/// Fix: register every path as `web::resource(path).get(..)/.post(..)`, and turn a 405 into
/// an `ApiError` (keeping `Allow`), e.g. in the `wrap_fn` of `app` or with a
/// `default_service` per resource.
#[actix_web::test]
async fn bug_an_unsupported_method_is_405_with_the_error_body() {
    let api = TestApi::start().await;
    for call in [
        post("/v1/functions/f").by(ALICE),
        get("/v1/functions/f/invoke").by(ALICE),
        method("PUT", "/v1/runtimes").by(ADMIN),
        delete("/v1/executions").by(ALICE),
        post("/v1/agents").by(ADMIN),
        delete("/v1/executions/x/log").by(ALICE),
    ] {
        let reply = api.send(call).await;
        assert!(
            reply.header("allow").is_some(),
            "{}: no Allow header",
            reply.label
        );
        reply.error(405, "not allowed");
    }
}
