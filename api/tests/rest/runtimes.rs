//! `/v1/runtimes`: admin-managed, public or private to one project.

use serde_json::{json, Value};

use crate::common::*;

fn names(list: &Value, key: &str) -> Vec<String> {
    let mut names: Vec<String> = list[key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key} in {list}"))
        .iter()
        .map(|item| item["name"].as_str().expect("name").to_owned())
        .collect();
    names.sort();
    names
}

#[actix_web::test]
async fn admins_create_runtimes_and_members_may_not() {
    let api = TestApi::start().await;
    let created = api
        .send(post("/v1/runtimes").by(ADMIN).json(json!({
            "name": "python3.12", "image": "fresco/python3:1", "kind": "python", "description": "CPython 3.12"
        })))
        .await
        .ok(201)["runtime"]
        .clone();
    let id = created["id"].as_str().expect("id");
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{created}");
    for time in ["created_at", "updated_at"] {
        let text = created[time].as_str().expect("time");
        assert!(
            text.ends_with('Z') && chrono::DateTime::parse_from_rfc3339(text).is_ok(),
            "{time}: {text}"
        );
    }
    let mut expected = json!({
        "id": id, "name": "python3.12", "image": "fresco/python3:1", "kind": "python",
        "description": "CPython 3.12", "is_public": true, "project_id": "admin", "status": "available",
        "network": false, "memory_min_mb": 64, "memory_max_mb": 2048, "timeout_max_s": 900,
    });
    merge(
        &mut expected,
        json!({"created_at": created["created_at"], "updated_at": created["updated_at"]}),
    );
    assert_eq!(created, expected);
    let shown = api
        .send(get(&format!("/v1/runtimes/{id}")).by(RITA))
        .await
        .ok(200);
    assert_eq!(shown["runtime"], created);
    let by_name = api
        .send(get("/v1/runtimes/python3.12").by(BOB))
        .await
        .ok(200);
    assert_eq!(by_name["runtime"], created);

    let body = json!({"name": "other", "image": "fresco/other:1", "kind": "provided"});
    api.expect_errors(vec![
        (post("/v1/runtimes").by(ALICE).json(body.clone()), 403, "policy does not allow runtime:create to be performed"),
        (post("/v1/runtimes").by(RITA).json(body.clone()), 403, "policy does not allow runtime:create to be performed"),
        (
            post("/v1/runtimes").by(ADMIN).json(json!({"name": "python3.12", "image": "x:1", "kind": "python"})),
            409,
            "a runtime named python3.12 already exists",
        ),
        (
            post("/v1/runtimes").by(ADMIN).json(json!({"name": "r", "image": "x:1", "kind": "cobol"})),
            400,
            "kind must be one of python, provided",
        ),
        (
            post("/v1/runtimes").by(ADMIN).json(json!({"name": "r", "image": "bad image", "kind": "python"})),
            400,
            "image is not a valid image reference",
        ),
        (
            post("/v1/runtimes")
                .by(ADMIN)
                .json(json!({"name": "r", "image": "x:1", "kind": "python", "memory_min_mb": 512, "memory_max_mb": 256})),
            400,
            "memory_max_mb must be between 512 and",
        ),
        (
            post("/v1/runtimes").by(ADMIN).json(json!({"name": "r", "image": "x:1"})),
            400,
            "missing field `kind`",
        ),
    ])
    .await;
    assert_eq!(api.db.scalar("SELECT count(*) FROM runtimes"), 1);
}

#[actix_web::test]
async fn private_runtimes_are_seen_by_their_project_and_admins_only() {
    let api = TestApi::start().await;
    api.runtime("public", json!({})).await;
    let private_a = api
        .runtime(
            "private-a",
            json!({"is_public": false, "project_id": "proj-a"}),
        )
        .await;
    let private_b = api
        .runtime(
            "private-b",
            json!({"is_public": false, "project_id": "proj-b"}),
        )
        .await;
    assert_eq!(private_b["project_id"], "proj-b");
    assert_eq!(private_b["is_public"], false);

    for (call, expected) in [
        (get("/v1/runtimes").by(ALICE), vec!["private-a", "public"]),
        (get("/v1/runtimes").by(RITA), vec!["private-a", "public"]),
        (get("/v1/runtimes").by(BOB), vec!["private-b", "public"]),
        (get("/v1/runtimes").by(ADMIN), vec!["public"]),
        (
            get("/v1/runtimes?all_projects=true").by(ADMIN),
            vec!["private-a", "private-b", "public"],
        ),
        (
            get("/v1/runtimes?all_projects=true&project_id=proj-b").by(ADMIN),
            vec!["private-b"],
        ),
    ] {
        let label = format!("{:?}", expected);
        let list = api.send(call).await.ok(200);
        assert_eq!(names(&list, "runtimes"), expected, "{label}: {list}");
    }

    // proj-b's private runtime is as unknown to proj-a as a runtime that does not exist.
    let b_id = private_b["id"].as_str().expect("id");
    let missing = uuid::Uuid::new_v4().to_string();
    let hidden = api
        .send(get(&format!("/v1/runtimes/{b_id}")).by(ALICE))
        .await;
    let hidden_body = hidden.json();
    hidden.error(404, &format!("runtime {b_id} could not be found"));
    let absent = api
        .send(get(&format!("/v1/runtimes/{missing}")).by(ALICE))
        .await;
    assert_eq!(
        without_ids(&hidden_body, &[b_id]),
        without_ids(&absent.json(), &[&missing])
    );
    absent.error(404, "could not be found");
    api.send(get("/v1/runtimes/private-b").by(ALICE))
        .await
        .error(404, "runtime private-b could not be found");
    assert_eq!(
        api.send(get(&format!("/v1/runtimes/{b_id}")).by(BOB))
            .await
            .ok(200)["runtime"],
        private_b
    );
    assert_eq!(
        api.send(get(&format!("/v1/runtimes/{b_id}?all_projects=true")).by(ADMIN))
            .await
            .ok(200)["runtime"],
        private_b
    );
    let a_id = private_a["id"].as_str().expect("id");
    api.send(get(&format!("/v1/runtimes/{a_id}")).by(BOB))
        .await
        .error(404, "could not be found");

    // Nor can proj-a build on it.
    api.send(
        post("/v1/functions")
            .by(ALICE)
            .json(json!({"name": "f", "runtime": "private-b"})),
    )
    .await
    .error(400, "runtime private-b does not exist");
    api.send(
        post("/v1/functions")
            .by(ALICE)
            .json(json!({"name": "f", "runtime": b_id})),
    )
    .await
    .error(400, &format!("runtime {b_id} does not exist"));
    api.send(
        post("/v1/functions")
            .by(BOB)
            .json(json!({"name": "f", "runtime": "private-b"})),
    )
    .await
    .ok(201);
    api.expect_errors(vec![
        (
            get("/v1/runtimes?all_projects=true").by(ALICE),
            403,
            "policy does not allow all_projects to be performed",
        ),
        (
            get("/v1/runtimes?project_id=proj-b").by(ADMIN),
            400,
            "project_id needs all_projects=true",
        ),
        (
            get("/v1/runtimes?all_projects=maybe").by(ADMIN),
            400,
            "all_projects must be true or false",
        ),
    ])
    .await;
}

#[actix_web::test]
async fn runtime_lists_page_with_working_next_links() {
    let api = TestApi::start().await;
    for name in ["r1", "r2", "r3"] {
        api.runtime(name, json!({})).await;
    }
    let mut seen = Vec::new();
    let mut path = "/v1/runtimes?limit=2".to_owned();
    let mut pages = 0;
    loop {
        let page = api.send(get(&path).by(ALICE)).await.ok(200);
        pages += 1;
        seen.extend(names(&page, "runtimes"));
        match page["next"].as_str() {
            Some(next) => {
                path = next
                    .strip_prefix(PUBLIC_URL)
                    .expect("next starts with the public url")
                    .to_owned();
                assert!(
                    path.starts_with("/v1/runtimes?") && path.contains("limit=2"),
                    "{path}"
                );
            }
            None => break,
        }
    }
    assert_eq!(
        (pages, seen),
        (2, vec!["r1".into(), "r2".into(), "r3".into()])
    );
    let by_name = api
        .send(get("/v1/runtimes?sort_key=name&sort_dir=desc").by(ALICE))
        .await
        .ok(200);
    let ordered: Vec<&str> = by_name["runtimes"]
        .as_array()
        .expect("list")
        .iter()
        .map(|r| r["name"].as_str().expect("name"))
        .collect();
    assert_eq!(ordered, ["r3", "r2", "r1"]);
}

#[actix_web::test]
async fn runtimes_are_patched_by_admins_and_deleted_once_unused() {
    let api = TestApi::start().await;
    let runtime = api.runtime("py", json!({})).await;
    let id = runtime["id"].as_str().expect("id").to_owned();
    let path = format!("/v1/runtimes/{id}");

    let patched = api
        .send(patch(&path).by(ADMIN).json(json!({
            "description": "new", "memory_min_mb": 128, "memory_max_mb": 1024, "timeout_max_s": 60,
            "image": "fresco/python3:2", "network": true, "status": "disabled"
        })))
        .await
        .ok(200)["runtime"]
        .clone();
    let mut expected = runtime.clone();
    merge(
        &mut expected,
        json!({"description": "new", "memory_min_mb": 128, "memory_max_mb": 1024, "timeout_max_s": 60,
               "image": "fresco/python3:2", "network": true, "status": "disabled",
               "updated_at": patched["updated_at"]}),
    );
    assert_eq!(patched, expected);
    assert!(
        patched["updated_at"].as_str() >= runtime["updated_at"].as_str(),
        "{patched}"
    );
    assert_eq!(
        api.send(get(&path).by(ALICE)).await.ok(200)["runtime"],
        patched
    );

    api.expect_errors(vec![
        (
            patch(&path).by(ALICE).json(json!({"description": "x"})),
            403,
            "policy does not allow runtime:update to be performed",
        ),
        (
            patch(&path).by(ADMIN).json(json!({"memory_max_mb": 64})),
            400,
            "memory_max_mb must be between 128 and",
        ),
        (
            patch(&path).by(ADMIN).json(json!({"status": "broken"})),
            400,
            "status must be one of available, disabled",
        ),
        (
            patch(&path).by(ADMIN).json(json!({"kind": "provided"})),
            400,
            "unknown field `kind`",
        ),
        (
            patch(&format!("/v1/runtimes/{}", uuid::Uuid::new_v4()))
                .by(ADMIN)
                .json(json!({"description": "x"})),
            404,
            "could not be found",
        ),
        // A disabled runtime takes no new functions.
        (
            post("/v1/functions")
                .by(ALICE)
                .json(json!({"name": "f", "runtime": "py"})),
            400,
            "runtime py is disabled",
        ),
    ])
    .await;
    assert_eq!(
        api.send(get(&path).by(ADMIN)).await.ok(200)["runtime"],
        patched
    );

    api.send(patch(&path).by(ADMIN).json(json!({"status": "available"})))
        .await
        .ok(200);
    let function = api.function(ALICE, "f", "py", json!({})).await;
    api.send(delete(&path).by(ALICE))
        .await
        .error(403, "policy does not allow runtime:delete to be performed");
    api.send(delete(&path).by(ADMIN))
        .await
        .error(409, "is used by functions or versions");
    api.send(delete("/v1/runtimes/py").by(ADMIN))
        .await
        .error(409, "runtime py is used by functions or versions");
    assert_eq!(api.db.scalar("SELECT count(*) FROM runtimes"), 1);

    // A published version keeps using it after the function moved to another runtime.
    api.send(post("/v1/functions/f/versions").by(ALICE))
        .await
        .ok(201);
    api.runtime("py-next", json!({})).await;
    api.send(
        patch("/v1/functions/f")
            .by(ALICE)
            .json(json!({"runtime": "py-next"})),
    )
    .await
    .ok(200);
    api.send(delete(&path).by(ADMIN))
        .await
        .error(409, "is used by functions or versions");
    api.send(delete("/v1/functions/f/versions/1").by(ALICE))
        .await
        .ok(204);
    assert_eq!(api.db.scalar("SELECT count(*) FROM runtimes"), 2);
    let fid = function["id"].as_str().expect("id");
    api.send(delete(&format!("/v1/functions/{fid}")).by(ALICE))
        .await
        .ok(204);
    api.send(delete("/v1/runtimes/py-next").by(ADMIN))
        .await
        .ok(204);
    assert_eq!(api.send(delete(&path).by(ADMIN)).await.ok(204), Value::Null);
    api.send(get(&path).by(ADMIN))
        .await
        .error(404, &format!("runtime {id} could not be found"));
    api.send(delete(&path).by(ADMIN))
        .await
        .error(404, "could not be found");
    assert_eq!(api.db.scalar("SELECT count(*) FROM runtimes"), 0);
}
