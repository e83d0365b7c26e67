//! The retirement log (`function_retirements`): every change that alters what a function
//! runs records, in its own transaction, which warm containers must stop serving; the
//! function's revision moves to that record's `seq`. Schedulers deliver the log to agents
//! (end-to-end: tests/e2e/lifecycle.rs).

use futures_util::future::join_all;
use serde_json::json;

use crate::common::*;

/// `(function_id, version, below_revision)` of every retirement, in `seq` order, with `seq`
/// replaced by whether `below_revision` equals it.
fn log(api: &TestApi) -> Vec<String> {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        line: String,
    }
    use diesel::RunQueryDsl;
    diesel::sql_query(
        "SELECT project_id || ' ' || function_id || ' ' || COALESCE(version::text, 'all') || ' ' || \
         CASE WHEN below_revision IS NULL THEN 'every-revision' \
              WHEN below_revision = seq THEN 'older-revisions' ELSE 'bad' END AS line \
         FROM function_retirements ORDER BY seq",
    )
    .load::<Row>(&mut api.db.conn())
    .expect("retirements")
    .into_iter()
    .map(|r| r.line)
    .collect()
}

fn revision(api: &TestApi, id: &str) -> i64 {
    api.db
        .scalar(&format!("SELECT revision FROM functions WHERE id = '{id}'"))
}

#[actix_web::test]
async fn changes_that_alter_what_runs_are_recorded_with_a_new_revision() {
    let api = TestApi::start().await;
    api.runtime("py", json!({})).await;
    let f = api.function(ALICE, "f", "py", json!({})).await;
    let id = f["id"].as_str().expect("id").to_owned();
    let latest = format!("proj-a {id} 0 older-revisions");
    assert!(log(&api).is_empty(), "creating retires nothing");
    assert_eq!(revision(&api, &id), 0);

    // What does not change what runs records nothing.
    for body in [
        json!({"description": "words"}),
        json!({"memory_mb": 128}),
        json!({}),
    ] {
        api.send(patch("/v1/functions/f").by(ALICE).json(body))
            .await
            .ok(200);
    }
    let same_code = api.send(get("/v1/functions/f/code").by(ALICE)).await.body;
    api.send(
        put("/v1/functions/f/code")
            .by(ALICE)
            .raw("application/zip", same_code.to_vec()),
    )
    .await
    .ok(200);
    // A refused change records nothing either.
    api.send(
        patch("/v1/functions/f")
            .by(ALICE)
            .json(json!({"memory_mb": 1})),
    )
    .await
    .error(400, "memory_mb");
    assert!(log(&api).is_empty(), "{:?}", log(&api));

    // Settings, code, handler, environment: each retires the older revisions of version 0.
    let mut expected = Vec::new();
    let changes = [
        json!({"memory_mb": 256}),
        json!({"timeout_s": 9}),
        json!({"handler": "main.other"}),
        json!({"environment": {"A": "1"}}),
        json!({"name": "renamed"}),
    ];
    let mut last_revision = 0;
    for body in changes {
        api.send(patch(&format!("/v1/functions/{id}")).by(ALICE).json(body))
            .await
            .ok(200);
        expected.push(latest.clone());
        let now = revision(&api, &id);
        assert!(now > last_revision, "the revision moves forward");
        assert_eq!(
            now,
            api.db.scalar("SELECT max(seq) FROM function_retirements"),
            "the revision is its retirement's seq"
        );
        last_revision = now;
    }
    api.send(
        put(&format!("/v1/functions/{id}/code"))
            .by(ALICE)
            .raw("application/zip", zip_of(&[("main.py", b"x = 2\n")])),
    )
    .await
    .ok(200);
    expected.push(latest.clone());
    assert_eq!(log(&api), expected);

    // Versions: publishing retires nothing, deleting one retires that version.
    for _ in 0..2 {
        api.send(post(&format!("/v1/functions/{id}/versions")).by(ALICE))
            .await
            .ok(201);
    }
    assert_eq!(log(&api), expected);
    api.send(delete(&format!("/v1/functions/{id}/versions/2")).by(ALICE))
        .await
        .ok(204);
    expected.push(format!("proj-a {id} 2 every-revision"));
    // Deleting the function retires all of it.
    api.send(delete(&format!("/v1/functions/{id}")).by(ALICE))
        .await
        .ok(204);
    expected.push(format!("proj-a {id} all every-revision"));
    assert_eq!(log(&api), expected);
    // Another project's attempt changes nothing and records nothing.
    api.function(ALICE, "g", "py", json!({})).await;
    api.send(delete("/v1/functions/g").by(BOB))
        .await
        .error(404, "could not be found");
    assert_eq!(log(&api), expected);
}

#[actix_web::test]
async fn concurrent_changes_each_get_their_own_retirement_and_revision() {
    let api = TestApi::start().await;
    api.runtime("py", json!({})).await;
    let mut ids = Vec::new();
    for i in 0..8 {
        let f = api.function(ALICE, &format!("f{i}"), "py", json!({})).await;
        ids.push(f["id"].as_str().expect("id").to_owned());
    }
    let replies = join_all((0..8).map(|i| {
        api.send(
            patch(&format!("/v1/functions/f{i}"))
                .by(ALICE)
                .json(json!({"memory_mb": 256})),
        )
    }))
    .await;
    for reply in replies {
        reply.ok(200);
    }
    assert_eq!(
        api.db.scalar("SELECT count(*) FROM function_retirements"),
        8
    );
    for id in &ids {
        assert_eq!(
            revision(&api, id),
            api.db.scalar(&format!(
                "SELECT seq FROM function_retirements WHERE function_id = '{id}'"
            )),
        );
    }
}
