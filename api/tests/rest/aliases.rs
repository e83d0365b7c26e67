//! `/v1/functions/{f}/aliases`: names for versions, with weighted traffic splits.

use serde_json::{json, Value};

use crate::common::*;

/// Function `f` of proj-a with versions 1, 2 and 3.
async fn setup() -> (TestApi, String) {
    let api = TestApi::start().await;
    api.runtime("py", json!({})).await;
    let f = api.function(ALICE, "f", "py", json!({})).await;
    for _ in 0..3 {
        api.send(post("/v1/functions/f/versions").by(ALICE))
            .await
            .ok(201);
    }
    (api, f["id"].as_str().expect("id").to_owned())
}

#[actix_web::test]
async fn aliases_are_created_listed_patched_and_deleted() {
    let (api, fid) = setup().await;
    let live = api
        .send(
            post("/v1/functions/f/aliases")
                .by(ALICE)
                .json(json!({"name": "live", "version": 1, "description": "production"})),
        )
        .await
        .ok(201)["alias"]
        .clone();
    let mut expected = json!({
        "function_id": fid, "name": "live", "version": 1, "second_version": null, "second_weight": 0,
        "shadow_version": null, "shadow_percent": 0, "description": "production",
    });
    merge(
        &mut expected,
        json!({"created_at": live["created_at"], "updated_at": live["updated_at"]}),
    );
    assert_eq!(live, expected);

    let canary = api
        .send(
            post(&format!("/v1/functions/{fid}/aliases"))
                .by(ALICE)
                .json(json!({
                    "name": "canary", "version": 2, "second_version": 3, "second_weight": 10
                })),
        )
        .await
        .ok(201)["alias"]
        .clone();
    assert_eq!(
        (
            &canary["version"],
            &canary["second_version"],
            &canary["second_weight"],
            &canary["description"]
        ),
        (&json!(2), &json!(3), &json!(10), &json!(""))
    );
    assert_eq!(
        api.send(get("/v1/functions/f/aliases/live").by(RITA))
            .await
            .ok(200)["alias"],
        live
    );
    assert_eq!(
        api.send(get(&format!("/v1/functions/{fid}/aliases/canary")).by(RITA))
            .await
            .ok(200)["alias"],
        canary
    );

    // Lists go by name, with paging by name.
    let list = api
        .send(get("/v1/functions/f/aliases").by(RITA))
        .await
        .ok(200);
    assert_eq!(list["aliases"], json!([canary, live]));
    assert!(list.get("next").is_none());
    let first = api
        .send(get("/v1/functions/f/aliases?limit=1").by(RITA))
        .await
        .ok(200);
    assert_eq!(first["aliases"], json!([canary]));
    assert_eq!(
        first["next"],
        json!(format!(
            "{PUBLIC_URL}/v1/functions/f/aliases?limit=1&marker=canary"
        ))
    );
    let path = first["next"]
        .as_str()
        .and_then(|n| n.strip_prefix(PUBLIC_URL))
        .expect("next");
    let second = api.send(get(path).by(RITA)).await.ok(200);
    assert_eq!(second["aliases"], json!([live]));
    assert!(second.get("next").is_none());

    // PATCH moves the alias and its split; an explicit null clears the second version.
    let moved = api
        .send(
            patch("/v1/functions/f/aliases/live")
                .by(ALICE)
                .json(json!({"version": 2, "second_version": 1, "second_weight": 50})),
        )
        .await
        .ok(200)["alias"]
        .clone();
    assert_eq!(
        (
            &moved["version"],
            &moved["second_version"],
            &moved["second_weight"],
            &moved["description"]
        ),
        (&json!(2), &json!(1), &json!(50), &json!("production"))
    );
    assert!(moved["updated_at"].as_str() >= live["updated_at"].as_str());
    assert_eq!(moved["created_at"], live["created_at"]);
    let weighted = api
        .send(
            patch("/v1/functions/f/aliases/live")
                .by(ALICE)
                .json(json!({"second_weight": 100})),
        )
        .await
        .ok(200);
    assert_eq!(
        (
            &weighted["alias"]["second_version"],
            &weighted["alias"]["second_weight"]
        ),
        (&json!(1), &json!(100))
    );
    let cleared = api
        .send(
            patch("/v1/functions/f/aliases/live")
                .by(ALICE)
                .json(json!({"second_version": null})),
        )
        .await
        .ok(200);
    assert_eq!(
        (
            &cleared["alias"]["second_version"],
            &cleared["alias"]["second_weight"]
        ),
        (&Value::Null, &json!(0))
    );
    let described = api
        .send(
            patch("/v1/functions/f/aliases/live")
                .by(ALICE)
                .json(json!({"description": "moved"})),
        )
        .await
        .ok(200);
    assert_eq!(
        (
            &described["alias"]["version"],
            &described["alias"]["description"]
        ),
        (&json!(2), &json!("moved"))
    );
    assert_eq!(
        api.send(get("/v1/functions/f/aliases/live").by(ALICE))
            .await
            .ok(200),
        described
    );

    api.send(delete("/v1/functions/f/aliases/live").by(RITA))
        .await
        .error(
            403,
            "policy does not allow function_alias:delete to be performed",
        );
    assert_eq!(
        api.send(delete("/v1/functions/f/aliases/live").by(ALICE))
            .await
            .ok(204),
        Value::Null
    );
    api.send(get("/v1/functions/f/aliases/live").by(ALICE))
        .await
        .error(404, "alias live could not be found");
    api.send(delete("/v1/functions/f/aliases/live").by(ALICE))
        .await
        .error(404, "alias live could not be found");
    assert_eq!(
        api.send(get("/v1/functions/f/aliases").by(ALICE))
            .await
            .ok(200)["aliases"],
        json!([canary])
    );
}

#[actix_web::test]
async fn alias_validation() {
    let (api, _) = setup().await;
    api.send(
        post("/v1/functions/f/aliases")
            .by(ALICE)
            .json(json!({"name": "live", "version": 1})),
    )
    .await
    .ok(201);
    let create = |body: Value| post("/v1/functions/f/aliases").by(ALICE).json(body);
    let update = |body: Value| patch("/v1/functions/f/aliases/live").by(ALICE).json(body);
    api.expect_errors(vec![
        (
            create(json!({"name": "a", "version": 1, "second_version": 2, "second_weight": 101})),
            400,
            "second_weight must be between 0 and 100, got 101",
        ),
        (
            create(json!({"name": "a", "version": 1, "second_version": 2, "second_weight": -1})),
            400,
            "second_weight must be between 0 and 100, got -1",
        ),
        (
            create(json!({"name": "a", "version": 1, "second_weight": 10})),
            400,
            "second_weight needs a second_version",
        ),
        (
            create(json!({"name": "a", "version": 9})),
            400,
            "version 9 of function f does not exist",
        ),
        (
            create(json!({"name": "a", "version": 1, "second_version": 8, "second_weight": 5})),
            400,
            "version 8 of function f does not exist",
        ),
        (
            create(json!({"name": "a", "version": 1, "second_version": 1, "second_weight": 5})),
            400,
            "second_version must differ from version",
        ),
        (create(json!({"name": "a"})), 400, "version is required"),
        (create(json!({"version": 1})), 400, "name is required"),
        (
            create(json!({"name": "a", "version": 1, "weight": 5})),
            400,
            "unknown field `weight`",
        ),
        (
            create(json!({"name": "live", "version": 2})),
            409,
            "already exists",
        ),
        (
            post("/v1/functions/f/aliases")
                .by(RITA)
                .json(json!({"name": "a", "version": 1})),
            403,
            "policy does not allow function_alias:create to be performed",
        ),
        (
            update(json!({"second_weight": 200})),
            400,
            "second_weight must be between 0 and 100, got 200",
        ),
        (
            update(json!({"second_weight": 20})),
            400,
            "second_weight needs a second_version",
        ),
        (
            update(json!({"version": 7})),
            400,
            "version 7 of function f does not exist",
        ),
        (
            update(json!({"name": "renamed"})),
            400,
            "an alias cannot be renamed",
        ),
        (
            update(json!({"second_version": 1})),
            400,
            "second_version must differ from version",
        ),
        (
            patch("/v1/functions/f/aliases/live")
                .by(RITA)
                .json(json!({"version": 2})),
            403,
            "policy does not allow function_alias:update to be performed",
        ),
    ])
    .await;
    // Nothing was stored or changed.
    assert_eq!(api.db.scalar("SELECT count(*) FROM function_aliases"), 1);
    let live = api
        .send(get("/v1/functions/f/aliases/live").by(ALICE))
        .await
        .ok(200)["alias"]
        .clone();
    assert_eq!(
        (
            &live["version"],
            &live["second_version"],
            &live["second_weight"]
        ),
        (&json!(1), &Value::Null, &json!(0))
    );
    // The bounds are fine.
    api.send(create(
        json!({"name": "edge", "version": 3, "second_version": 2, "second_weight": 100}),
    ))
    .await
    .ok(201);
    api.send(create(
        json!({"name": "zero", "version": 3, "second_version": 2, "second_weight": 0}),
    ))
    .await
    .ok(201);
}

/// Invocations through an alias split by weight: the resolution is cached, the roll is drawn
/// per invocation after the cache, so one replica with a warm cache still sends invocations to
/// both versions; an alias without a second version sends every one to its version.
#[actix_web::test]
async fn invocations_through_a_split_alias_reach_both_versions() {
    let key = std::env::temp_dir().join(format!("fresco-api-test-{}.pem", uuid::Uuid::new_v4()));
    std::fs::write(
        &key,
        fresco_common::ticket::test_keys::CONTROL_PLANE_PRIVATE,
    )
    .expect("write the test key");
    let api = TestApi::start_with(Options::default().set(
        "internal_auth",
        "control_plane_key_file",
        key.display(),
    ))
    .await;
    std::fs::remove_file(&key).ok();
    api.runtime("py", json!({})).await;
    api.function(ALICE, "f", "py", json!({})).await;
    for _ in 0..2 {
        api.send(post("/v1/functions/f/versions").by(ALICE))
            .await
            .ok(201);
    }
    for alias in [
        json!({"name": "split", "version": 1, "second_version": 2, "second_weight": 50}),
        json!({"name": "live", "version": 1}),
    ] {
        api.send(post("/v1/functions/f/aliases").by(ALICE).json(alias))
            .await
            .ok(201);
    }
    let versions = |alias: &'static str| {
        let api = &api;
        async move {
            let mut seen = Vec::new();
            for _ in 0..40 {
                let queued = api
                    .send(
                        post(&format!("/v1/functions/f/invoke?alias={alias}&async=true"))
                            .by(ALICE)
                            .json(json!({})),
                    )
                    .await
                    .ok(202);
                assert_eq!(queued["execution"]["alias"], alias);
                seen.push(
                    queued["execution"]["function_version"]
                        .as_i64()
                        .expect("version"),
                );
            }
            seen
        }
    };
    let split = versions("split").await;
    // Each of 40 rolls takes version 2 with probability 1/2: both show up (all 40 alike has a
    // probability of 2^-39).
    assert!(split.contains(&1) && split.contains(&2), "{split:?}");
    let live = versions("live").await;
    assert!(live.iter().all(|v| *v == 1), "{live:?}");
}

/// A shadow version: validated like the alias's other versions, a percentage of 100 by
/// default, cleared by null; the comparison restarts when the shadow or the version changes,
/// is readable by readers of the project and by no other project.
#[actix_web::test]
async fn shadow_versions_are_validated_and_their_comparison_restarts_on_change() {
    let (api, _) = setup().await;
    let create = |body: Value| post("/v1/functions/f/aliases").by(ALICE).json(body);
    let update = |body: Value| patch("/v1/functions/f/aliases/live").by(ALICE).json(body);
    api.send(create(json!({"name": "live", "version": 1})))
        .await
        .ok(201);
    api.expect_errors(vec![
        (
            create(json!({"name": "a", "version": 1, "shadow_version": 9})),
            400,
            "version 9 of function f does not exist",
        ),
        (
            create(json!({"name": "a", "version": 1, "shadow_version": 1})),
            400,
            "shadow_version must differ from version",
        ),
        (
            create(json!({"name": "a", "version": 1, "shadow_version": 2, "shadow_percent": 101})),
            400,
            "shadow_percent must be between 0 and 100, got 101",
        ),
        (
            update(json!({"shadow_percent": 10})),
            400,
            "shadow_percent needs a shadow_version",
        ),
        (
            update(json!({"shadow_version": 8})),
            400,
            "version 8 of function f does not exist",
        ),
    ])
    .await;
    let comparisons = |api: &TestApi| api.db.scalar("SELECT count(*) FROM alias_comparisons");
    assert_eq!(comparisons(&api), 0, "nothing stored by a refusal");

    let alias = api.send(update(json!({"shadow_version": 2}))).await.ok(200)["alias"].clone();
    assert_eq!(
        (&alias["shadow_version"], &alias["shadow_percent"]),
        (&json!(2), &json!(100))
    );
    let show = |by: &'static str| get("/v1/functions/f/aliases/live/comparison").by(by);
    let cmp = api.send(show(RITA)).await.ok(200)["comparison"].clone();
    assert_eq!(
        (
            &cmp["version"],
            &cmp["shadow_version"],
            &cmp["same"],
            &cmp["sample"]
        ),
        (&json!(1), &json!(2), &json!(0), &json!([]))
    );
    // Counts restart when the shadow version changes, not when only the percentage does.
    api.db
        .execute("UPDATE alias_comparisons SET same = 5, skipped = 2");
    api.send(update(json!({"shadow_percent": 30})))
        .await
        .ok(200);
    let kept = api.send(show(ALICE)).await.ok(200)["comparison"].clone();
    assert_eq!((&kept["same"], &kept["skipped"]), (&json!(5), &json!(2)));
    api.send(update(json!({"shadow_version": 3}))).await.ok(200);
    let fresh = api.send(show(ALICE)).await.ok(200)["comparison"].clone();
    assert_eq!(
        (
            &fresh["shadow_version"],
            &fresh["same"],
            &fresh["skipped"],
            &fresh["shadow_percent"]
        ),
        (&json!(3), &json!(0), &json!(0), &json!(30))
    );
    assert_ne!(fresh["since"], kept["since"]);
    // Another project sees no such alias.
    api.expect_errors(vec![(show(BOB), 404, "could not be found")])
        .await;
    // Cleared: no shadow, no counts.
    let cleared = api
        .send(update(json!({"shadow_version": null})))
        .await
        .ok(200)["alias"]
        .clone();
    assert_eq!(
        (&cleared["shadow_version"], &cleared["shadow_percent"]),
        (&Value::Null, &json!(0))
    );
    let none = api.send(show(ALICE)).await.ok(200)["comparison"].clone();
    assert_eq!(
        (&none["shadow_version"], &none["since"]),
        (&Value::Null, &Value::Null)
    );
    assert_eq!(comparisons(&api), 0);
}
