//! Tenancy: another project's function, version, alias or execution is not found, exactly
//! like one that does not exist, and nothing happens to it.

use serde_json::{json, Value};

use crate::common::*;

#[actix_web::test]
async fn another_projects_objects_are_404_exactly_like_missing_ones() {
    let api = TestApi::start().await;
    api.runtime("py", json!({})).await;
    let f = api.function(ALICE, "hello", "py", json!({})).await;
    let fid = f["id"].as_str().expect("id").to_owned();
    api.send(post("/v1/functions/hello/versions").by(ALICE))
        .await
        .ok(201);
    api.send(
        post("/v1/functions/hello/aliases")
            .by(ALICE)
            .json(json!({"name": "live", "version": 1})),
    )
    .await
    .ok(201);
    let f = api.send(get("/v1/functions/hello").by(ALICE)).await.ok(200)["function"].clone();
    let record = execution("proj-a", &fid);
    let eid = record.id.to_string();
    api.db.record(&[record]);
    // Bob has a function of his own, so "not found" is not "nothing at all".
    api.function(BOB, "bobs", "py", json!({})).await;

    let missing = uuid::Uuid::new_v4().to_string();
    let zip = zip_of(&[("main.py", b"evil = 1\n")]);
    type Build = Box<dyn Fn(&str) -> Call>;
    let cases: Vec<(&str, &str, Build)> = vec![
        (
            fid.as_str(),
            missing.as_str(),
            Box::new(|id| get(&format!("/v1/functions/{id}"))),
        ),
        (
            "hello",
            "absent",
            Box::new(|id| get(&format!("/v1/functions/{id}"))),
        ),
        (
            fid.as_str(),
            missing.as_str(),
            Box::new(|id| patch(&format!("/v1/functions/{id}")).json(json!({"memory_mb": 256}))),
        ),
        (
            "hello",
            "absent",
            Box::new(|id| patch(&format!("/v1/functions/{id}")).json(json!({"name": "stolen"}))),
        ),
        (
            fid.as_str(),
            missing.as_str(),
            Box::new(|id| delete(&format!("/v1/functions/{id}"))),
        ),
        (
            fid.as_str(),
            missing.as_str(),
            Box::new(|id| get(&format!("/v1/functions/{id}/code"))),
        ),
        (fid.as_str(), missing.as_str(), {
            let zip = zip.clone();
            Box::new(move |id| {
                put(&format!("/v1/functions/{id}/code")).raw("application/zip", zip.clone())
            })
        }),
        (
            fid.as_str(),
            missing.as_str(),
            Box::new(move |id| {
                patch(&format!("/v1/functions/{id}")).upload(&json!({}), Some(&zip))
            }),
        ),
        (
            fid.as_str(),
            missing.as_str(),
            Box::new(|id| post(&format!("/v1/functions/{id}/versions"))),
        ),
        (
            fid.as_str(),
            missing.as_str(),
            Box::new(|id| get(&format!("/v1/functions/{id}/versions"))),
        ),
        (
            fid.as_str(),
            missing.as_str(),
            Box::new(|id| get(&format!("/v1/functions/{id}/versions/1"))),
        ),
        (
            fid.as_str(),
            missing.as_str(),
            Box::new(|id| delete(&format!("/v1/functions/{id}/versions/1"))),
        ),
        (
            fid.as_str(),
            missing.as_str(),
            Box::new(|id| {
                post(&format!("/v1/functions/{id}/aliases"))
                    .json(json!({"name": "x", "version": 1}))
            }),
        ),
        (
            fid.as_str(),
            missing.as_str(),
            Box::new(|id| get(&format!("/v1/functions/{id}/aliases"))),
        ),
        (
            fid.as_str(),
            missing.as_str(),
            Box::new(|id| get(&format!("/v1/functions/{id}/aliases/live"))),
        ),
        (
            fid.as_str(),
            missing.as_str(),
            Box::new(|id| {
                patch(&format!("/v1/functions/{id}/aliases/live")).json(json!({"description": "x"}))
            }),
        ),
        (
            fid.as_str(),
            missing.as_str(),
            Box::new(|id| delete(&format!("/v1/functions/{id}/aliases/live"))),
        ),
        (
            eid.as_str(),
            missing.as_str(),
            Box::new(|id| get(&format!("/v1/executions/{id}"))),
        ),
        (
            eid.as_str(),
            missing.as_str(),
            Box::new(|id| get(&format!("/v1/executions/{id}/log"))),
        ),
        (
            eid.as_str(),
            missing.as_str(),
            Box::new(|id| delete(&format!("/v1/executions/{id}"))),
        ),
    ];
    for (theirs, absent, build) in &cases {
        let foreign = api.send(build(theirs).by(BOB)).await;
        let foreign_body = foreign.json();
        let label = foreign.label.clone();
        foreign.error(404, &format!("{theirs} could not be found"));
        let missing_reply = api.send(build(absent).by(BOB)).await;
        let missing_body = missing_reply.json();
        missing_reply.error(404, &format!("{absent} could not be found"));
        assert_eq!(
            without_ids(&foreign_body, &[theirs]),
            without_ids(&missing_body, &[absent]),
            "{label}"
        );
    }

    // Alice's objects are untouched, and hers to see.
    assert_eq!(
        api.send(get("/v1/functions/hello").by(RITA)).await.ok(200)["function"],
        f
    );
    api.send(get("/v1/functions/hello/versions/1").by(RITA))
        .await
        .ok(200);
    assert_eq!(
        api.send(get("/v1/functions/hello/aliases/live").by(RITA))
            .await
            .ok(200)["alias"]["version"],
        1
    );
    assert_eq!(
        api.send(get(&format!("/v1/executions/{eid}")).by(RITA))
            .await
            .ok(200)["execution"]["id"],
        eid
    );
    let download = api.send(get("/v1/functions/hello/code").by(RITA)).await;
    assert_eq!(download.status.as_u16(), 200);
    for (table, expected) in [
        ("functions", 2),
        ("function_versions", 1),
        ("function_aliases", 1),
        ("executions", 1),
    ] {
        assert_eq!(
            api.db.scalar(&format!("SELECT count(*) FROM {table}")),
            expected,
            "{table}"
        );
    }
    assert_eq!(
        api.db
            .scalar("SELECT count(*) FROM code_packages WHERE project_id = 'proj-b'"),
        1
    );

    // Lists do not leak either.
    let executions = api
        .send(get(&format!("/v1/executions?function_id={fid}")).by(BOB))
        .await
        .ok(200);
    assert_eq!(executions["executions"], json!([]));
    let functions = api
        .send(get("/v1/functions?name=hello").by(BOB))
        .await
        .ok(200);
    assert_eq!(functions["functions"], json!([]));
    // Admins reach every project, when they ask for it: without all_projects=true another
    // project's object is a 404 for them too.
    api.send(get(&format!("/v1/functions/{fid}")).by(ADMIN))
        .await
        .error(404, "could not be found");
    assert_eq!(
        api.send(get(&format!("/v1/functions/{fid}?all_projects=true")).by(ADMIN))
            .await
            .ok(200)["function"],
        f
    );
    assert_eq!(
        api.send(get(&format!("/v1/executions/{eid}?all_projects=true")).by(ADMIN))
            .await
            .ok(200)["execution"]["project_id"],
        "proj-a"
    );
    let _: Value = api
        .send(get(&format!("/v1/functions/{fid}/versions/1?all_projects=true")).by(ADMIN))
        .await
        .ok(200);
}

/// BUG (store/src/functions.rs, `get_by_ref`, with the `Scope::All` that
/// api/src/http/auth.rs `object_scope` gives admins): an admin's name lookup searches every
/// project, so as soon as any tenant has a function of the same name, the admin cannot show,
/// update, publish or delete its OWN function by name (409 "ambiguous function name across
/// projects"), and the openstack CLI, which addresses functions by name, fails for admins.
/// Names are unique per project: a name should resolve in the caller's project (ids keep
/// reaching every project for admins). Fix: resolve names with `Scope::Project(caller's
/// project)` (e.g. `object_scope` returning the caller's project alongside `All`, and
/// `get_by_ref` using it for non-UUID keys).
#[actix_web::test]
async fn bug_an_admin_reaches_its_own_function_by_name() {
    let api = TestApi::start().await;
    api.runtime("py", json!({})).await;
    let own = api.function(ADMIN, "hello", "py", json!({})).await;
    api.function(ALICE, "hello", "py", json!({})).await;
    let shown = api.send(get("/v1/functions/hello").by(ADMIN)).await.ok(200);
    assert_eq!(shown["function"]["id"], own["id"]);
    let patched = api
        .send(
            patch("/v1/functions/hello")
                .by(ADMIN)
                .json(json!({"memory_mb": 256})),
        )
        .await
        .ok(200);
    assert_eq!(patched["function"]["project_id"], "admin");
    api.send(post("/v1/functions/hello/versions").by(ADMIN))
        .await
        .ok(201);
    // Alice's function of the same name is untouched.
    let alices = api.send(get("/v1/functions/hello").by(ALICE)).await.ok(200);
    assert_eq!(
        (
            &alices["function"]["memory_mb"],
            &alices["function"]["latest_version"]
        ),
        (&json!(128), &json!(0))
    );
}
