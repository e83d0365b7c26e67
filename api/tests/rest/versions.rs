//! `/v1/functions/{f}/versions`: immutable, numbered snapshots.

use futures_util::future::join_all;
use serde_json::{json, Value};

use crate::common::*;

fn numbers(list: &Value) -> Vec<i64> {
    list["versions"]
        .as_array()
        .unwrap_or_else(|| panic!("no versions in {list}"))
        .iter()
        .map(|v| v["version"].as_i64().expect("version"))
        .collect()
}

#[actix_web::test]
async fn publishing_snapshots_the_function_with_increasing_numbers() {
    let api = TestApi::start().await;
    let runtime = api.runtime("py", json!({})).await;
    let f = api
        .function(
            ALICE,
            "f",
            "py",
            json!({"memory_mb": 256, "environment": {"A": "1"}}),
        )
        .await;
    let fid = f["id"].as_str().expect("id");

    let v1 = api
        .send(post("/v1/functions/f/versions").by(ALICE))
        .await
        .ok(201)["version"]
        .clone();
    let mut expected = json!({
        "function_id": fid, "version": 1, "description": "", "runtime_id": runtime["id"], "image": null,
        "handler": "main.handler", "memory_mb": 256, "timeout_s": 3, "environment": {"A": "1"}, "code": f["code"],
    });
    merge(&mut expected, json!({"created_at": v1["created_at"]}));
    assert_eq!(v1, expected);

    // Later changes do not touch a published version.
    let zip2 = zip_of(&[("main.py", b"v = 2\n")]);
    api.send(
        patch("/v1/functions/f")
            .by(ALICE)
            .upload(&json!({"memory_mb": 512}), Some(&zip2)),
    )
    .await
    .ok(200);
    let v2 = api
        .send(
            post(&format!("/v1/functions/{fid}/versions"))
                .by(ALICE)
                .json(json!({"description": "second"})),
        )
        .await
        .ok(201)["version"]
        .clone();
    assert_eq!(
        (&v2["version"], &v2["description"], &v2["memory_mb"]),
        (&json!(2), &json!("second"), &json!(512))
    );
    assert_ne!(v2["code"], v1["code"]);
    assert_eq!(
        api.send(get("/v1/functions/f/versions/1").by(RITA))
            .await
            .ok(200)["version"],
        v1
    );
    assert_eq!(
        api.send(get(&format!("/v1/functions/{fid}/versions/2")).by(RITA))
            .await
            .ok(200)["version"],
        v2
    );
    assert_eq!(
        api.send(get("/v1/functions/f").by(ALICE)).await.ok(200)["function"]["latest_version"],
        2
    );

    let list = api
        .send(get("/v1/functions/f/versions").by(RITA))
        .await
        .ok(200);
    assert_eq!(list["versions"], json!([v1, v2]));
    assert!(list.get("next").is_none());
    let first = api
        .send(get("/v1/functions/f/versions?limit=1").by(RITA))
        .await
        .ok(200);
    assert_eq!(numbers(&first), [1]);
    assert_eq!(
        first["next"],
        json!(format!(
            "{PUBLIC_URL}/v1/functions/f/versions?limit=1&marker=1"
        ))
    );
    let second = api
        .send(get("/v1/functions/f/versions?limit=1&marker=1").by(RITA))
        .await
        .ok(200);
    assert_eq!(numbers(&second), [2]);
    assert!(second.get("next").is_none(), "{second}");
    let desc = api
        .send(get("/v1/functions/f/versions?sort_dir=desc").by(RITA))
        .await
        .ok(200);
    assert_eq!(numbers(&desc), [2, 1]);

    // Deleting one never frees its number.
    api.send(delete("/v1/functions/f/versions/2").by(RITA))
        .await
        .error(
            403,
            "policy does not allow function_version:delete to be performed",
        );
    assert_eq!(
        api.send(delete("/v1/functions/f/versions/2").by(ALICE))
            .await
            .ok(204),
        Value::Null
    );
    api.send(get("/v1/functions/f/versions/2").by(ALICE))
        .await
        .error(404, "version 2 of function f could not be found");
    api.send(delete("/v1/functions/f/versions/2").by(ALICE))
        .await
        .error(404, "version 2 of function f could not be found");
    let v3 = api
        .send(post("/v1/functions/f/versions").by(ALICE))
        .await
        .ok(201);
    assert_eq!(v3["version"]["version"], 3);
    assert_eq!(
        numbers(
            &api.send(get("/v1/functions/f/versions").by(ALICE))
                .await
                .ok(200)
        ),
        [1, 3]
    );
    api.send(post("/v1/functions/f/versions").by(RITA))
        .await
        .error(
            403,
            "policy does not allow function_version:create to be performed",
        );
    assert_eq!(api.db.scalar("SELECT count(*) FROM function_versions"), 2);
}

#[actix_web::test]
async fn a_function_without_code_cannot_be_published() {
    let api =
        TestApi::start_with(Options::default().set("api", "allowed_image_prefixes", "team/")).await;
    api.runtime("py", json!({})).await;
    api.send(
        post("/v1/functions")
            .by(ALICE)
            .json(json!({"name": "empty", "runtime": "py"})),
    )
    .await
    .ok(201);
    api.send(post("/v1/functions/empty/versions").by(ALICE))
        .await
        .error(409, "function empty has no code to publish");
    assert_eq!(api.db.scalar("SELECT count(*) FROM function_versions"), 0);
    assert_eq!(
        api.send(get("/v1/functions/empty").by(ALICE)).await.ok(200)["function"]["latest_version"],
        0
    );

    // Once it has code, it can; an image function needs none.
    api.send(
        put("/v1/functions/empty/code")
            .by(ALICE)
            .raw("application/zip", zip_of(&[("main.py", b"x")])),
    )
    .await
    .ok(200);
    assert_eq!(
        api.send(post("/v1/functions/empty/versions").by(ALICE))
            .await
            .ok(201)["version"]["version"],
        1
    );
    api.send(
        post("/v1/functions")
            .by(ADA)
            .json(json!({"name": "img", "image": "team/fn:1"})),
    )
    .await
    .ok(201);
    let v = api
        .send(post("/v1/functions/img/versions").by(ALICE))
        .await
        .ok(201)["version"]
        .clone();
    assert_eq!(
        (&v["version"], &v["image"], &v["code"]),
        (&json!(1), &json!("team/fn:1"), &Value::Null)
    );
}

#[actix_web::test]
async fn concurrent_publishes_get_distinct_numbers() {
    let api = TestApi::start().await;
    api.runtime("py", json!({})).await;
    api.function(ALICE, "f", "py", json!({})).await;
    let replies = join_all((0..12).map(|i| {
        api.send(
            post("/v1/functions/f/versions")
                .by(ALICE)
                .json(json!({"description": format!("p{i}")})),
        )
    }))
    .await;
    let mut numbers: Vec<i64> = replies
        .into_iter()
        .map(|r| r.ok(201)["version"]["version"].as_i64().expect("number"))
        .collect();
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=12).collect::<Vec<i64>>());
    assert_eq!(
        api.db
            .scalar("SELECT count(DISTINCT version) FROM function_versions"),
        12
    );
    assert_eq!(
        api.send(get("/v1/functions/f").by(ALICE)).await.ok(200)["function"]["latest_version"],
        12
    );
}

#[actix_web::test]
async fn a_version_an_alias_points_to_cannot_be_deleted() {
    let api = TestApi::start().await;
    api.runtime("py", json!({})).await;
    api.function(ALICE, "f", "py", json!({})).await;
    for _ in 0..3 {
        api.send(post("/v1/functions/f/versions").by(ALICE))
            .await
            .ok(201);
    }
    api.send(
        post("/v1/functions/f/aliases")
            .by(ALICE)
            .json(json!({"name": "live", "version": 1, "second_version": 2, "second_weight": 10})),
    )
    .await
    .ok(201);
    api.expect_errors(vec![
        (
            delete("/v1/functions/f/versions/1").by(ALICE),
            409,
            "version is used by an alias",
        ),
        (
            delete("/v1/functions/f/versions/2").by(ALICE),
            409,
            "version is used by an alias",
        ),
    ])
    .await;
    assert_eq!(api.db.scalar("SELECT count(*) FROM function_versions"), 3);
    api.send(delete("/v1/functions/f/versions/3").by(ALICE))
        .await
        .ok(204);
    // Once the alias moves away, the version can go.
    api.send(
        patch("/v1/functions/f/aliases/live")
            .by(ALICE)
            .json(json!({"second_version": null})),
    )
    .await
    .ok(200);
    api.send(delete("/v1/functions/f/versions/2").by(ALICE))
        .await
        .ok(204);
    api.send(delete("/v1/functions/f/aliases/live").by(ALICE))
        .await
        .ok(204);
    api.send(delete("/v1/functions/f/versions/1").by(ALICE))
        .await
        .ok(204);
    assert_eq!(api.db.scalar("SELECT count(*) FROM function_versions"), 0);
}
