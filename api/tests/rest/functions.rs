//! `/v1/functions`: creation (multipart zip or tar.gz, JSON), show, lists, updates, code.

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::common::*;

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn code(bytes: &[u8], format: &str) -> Value {
    json!({"sha256": sha256(bytes), "size": bytes.len(), "format": format})
}

fn names(list: &Value) -> Vec<&str> {
    list["functions"]
        .as_array()
        .unwrap_or_else(|| panic!("no functions in {list}"))
        .iter()
        .map(|f| f["name"].as_str().expect("name"))
        .collect()
}

/// The path of a `next` link, which must start with the public URL.
fn next_path(page: &Value) -> Option<String> {
    page["next"].as_str().map(|next| {
        next.strip_prefix(PUBLIC_URL)
            .unwrap_or_else(|| panic!("next link {next} does not start with {PUBLIC_URL}"))
            .to_owned()
    })
}

#[actix_web::test]
async fn functions_are_created_from_zip_and_tar_gz_uploads() {
    let api = TestApi::start().await;
    let runtime = api.runtime("python3", json!({})).await;
    let zip = zip_of(&[
        (
            "main.py",
            b"def handler(event, context):\n    return 'hi'\n",
        ),
        ("lib/util.py", b"X = 1\n"),
    ]);
    let metadata = json!({
        "name": "hello", "runtime": "python3", "handler": "main.handler", "memory_mb": 256, "timeout_s": 10,
        "environment": {"GREETING": "hi"}, "description": "says hi"
    });
    let created = api
        .send(
            post("/v1/functions")
                .by(ALICE)
                .upload(&metadata, Some(&zip)),
        )
        .await
        .ok(201)["function"]
        .clone();
    let id = created["id"].as_str().expect("id").to_owned();
    assert!(uuid::Uuid::parse_str(&id).is_ok());
    let mut expected = json!({
        "id": id, "name": "hello", "project_id": "proj-a", "runtime_id": runtime["id"], "image": null,
        "handler": "main.handler", "memory_mb": 256, "timeout_s": 10, "environment": {"GREETING": "hi"},
        "description": "says hi", "code": code(&zip, "zip"), "latest_version": 0,
    });
    merge(
        &mut expected,
        json!({"created_at": created["created_at"], "updated_at": created["updated_at"]}),
    );
    assert_eq!(created, expected);

    // By id and by name, for the project's reader too.
    for path in [
        format!("/v1/functions/{id}"),
        "/v1/functions/hello".to_owned(),
    ] {
        assert_eq!(
            api.send(get(&path).by(RITA)).await.ok(200)["function"],
            created,
            "{path}"
        );
    }

    // The same upload as tar.gz, naming the runtime by id, with the defaults.
    let tgz = tar_gz_of(&[("main.py", b"def handler(e, c):\n    return 2\n")]);
    let runtime_id = runtime["id"].as_str().expect("id");
    let second = api
        .send(post("/v1/functions").by(ALICE).upload(
            &json!({"name": "second", "runtime": runtime_id}),
            Some(&tgz),
        ))
        .await
        .ok(201)["function"]
        .clone();
    assert_eq!(second["code"], code(&tgz, "tar.gz"));
    assert_eq!(
        (
            &second["handler"],
            &second["memory_mb"],
            &second["timeout_s"],
            &second["environment"],
            &second["description"]
        ),
        (
            &json!("main.handler"),
            &json!(128),
            &json!(3),
            &json!({}),
            &json!("")
        )
    );

    // The code comes back byte for byte, with its type.
    for (name, bytes, content_type, extension) in [
        ("hello", &zip, "application/zip", "zip"),
        ("second", &tgz, "application/gzip", "tar.gz"),
    ] {
        let reply = api
            .send(get(&format!("/v1/functions/{name}/code")).by(RITA))
            .await;
        assert_eq!(reply.status.as_u16(), 200, "{}", reply.text());
        assert_eq!(reply.header("content-type"), Some(content_type));
        assert_eq!(
            reply.header("content-disposition"),
            Some(format!("attachment; filename=\"{name}.{extension}\"").as_str())
        );
        assert_eq!(&reply.body[..], &bytes[..], "{name}");
    }
    assert_eq!(
        api.stored("proj-a").await,
        (2, (zip.len() + tgz.len()) as i64)
    );
}

#[actix_web::test]
async fn image_functions_are_created_from_json_alone() {
    // Custom images: admin-only, within the operator's prefixes (tests/rest/images.rs).
    let api = TestApi::start_with(Options::default().set(
        "api",
        "allowed_image_prefixes",
        "registry.example/team/, a",
    ))
    .await;
    api.runtime("python3", json!({})).await;
    let created = api
        .send(
            post("/v1/functions")
                .by(ADA)
                .json(json!({"name": "img", "image": "registry.example/team/fn:1.0"})),
        )
        .await
        .ok(201)["function"]
        .clone();
    assert_eq!(created["image"], "registry.example/team/fn:1.0");
    assert_eq!(created["runtime_id"], Value::Null);
    assert_eq!(created["code"], Value::Null);
    assert_eq!(
        (&created["memory_mb"], &created["timeout_s"]),
        (&json!(128), &json!(3))
    );
    assert_eq!(
        api.send(get("/v1/functions/img").by(ALICE)).await.ok(200)["function"],
        created
    );
    api.send(get("/v1/functions/img/code").by(ALICE))
        .await
        .error(404, "code of function img could not be found");

    // A runtime function without code yet: code comes later with PUT .../code.
    let later = api
        .send(
            post("/v1/functions")
                .by(ALICE)
                .json(json!({"name": "later", "runtime": "python3"})),
        )
        .await
        .ok(201);
    assert_eq!(later["function"]["code"], Value::Null);

    let zip = zip_of(&[("main.py", b"x = 1\n")]);
    api.expect_errors(vec![
        (
            post("/v1/functions")
                .by(ADA)
                .json(json!({"name": "both", "image": "a:1", "runtime": "python3"})),
            400,
            "exactly one of runtime and image is required",
        ),
        (
            post("/v1/functions")
                .by(ALICE)
                .json(json!({"name": "neither"})),
            400,
            "exactly one of runtime and image is required",
        ),
        (
            post("/v1/functions")
                .by(ADA)
                .upload(&json!({"name": "imgzip", "image": "a:1"}), Some(&zip)),
            400,
            "a function with its own image takes no code package",
        ),
        (
            put("/v1/functions/img/code")
                .by(ALICE)
                .raw("application/zip", zip.clone()),
            400,
            "a function with its own image takes no code package",
        ),
        (
            patch("/v1/functions/img")
                .by(ALICE)
                .json(json!({"runtime": "python3"})),
            400,
            "a function with its own image has no runtime",
        ),
        (
            post("/v1/functions")
                .by(ADA)
                .json(json!({"name": "x", "image": "bad image"})),
            400,
            "image is not a valid image reference",
        ),
        (
            post("/v1/functions")
                .by(ALICE)
                .upload(&json!({"name": "nometa"}), None),
            400,
            "exactly one of runtime and image",
        ),
        (
            post("/v1/functions")
                .by(ALICE)
                .multipart(&[Part::file("package", &zip)]),
            400,
            "the metadata part is required",
        ),
        (
            post("/v1/functions").by(ALICE).multipart(&[
                Part::json("metadata", &json!({"name": "x", "runtime": "python3"})),
                Part::json("extra", &json!({})),
            ]),
            400,
            "unexpected multipart part \"extra\"",
        ),
    ])
    .await;
    assert_eq!(api.stored("proj-a").await, (2, 0));
}

#[actix_web::test]
async fn lists_page_sort_and_filter() {
    let api = TestApi::start().await;
    let r1 = api.runtime("r1", json!({})).await;
    let r2 = api.runtime("r2", json!({})).await;
    for (name, runtime) in [
        ("f-c", "r1"),
        ("f-a", "r1"),
        ("f-e", "r2"),
        ("f-b", "r1"),
        ("f-d", "r1"),
    ] {
        api.send(
            post("/v1/functions")
                .by(ALICE)
                .json(json!({"name": name, "runtime": runtime})),
        )
        .await
        .ok(201);
    }
    api.send(
        post("/v1/functions")
            .by(BOB)
            .json(json!({"name": "bobs", "runtime": "r1"})),
    )
    .await
    .ok(201);

    // Creation order, two at a time, following the next links to the end.
    let mut pages = Vec::new();
    let mut path = Some("/v1/functions?limit=2".to_owned());
    while let Some(p) = path {
        let page = api.send(get(&p).by(ALICE)).await.ok(200);
        pages.push(names(&page).join(","));
        path = next_path(&page);
        if let Some(next) = &path {
            assert!(
                next.starts_with("/v1/functions?")
                    && next.contains("limit=2")
                    && next.contains("marker="),
                "{next}"
            );
        }
    }
    assert_eq!(pages, ["f-c,f-a", "f-e,f-b", "f-d"]);

    // The first next link names the last item of the page as the marker.
    let first = api
        .send(get("/v1/functions?limit=2").by(ALICE))
        .await
        .ok(200);
    let marker = first["functions"][1]["id"].as_str().expect("id");
    assert_eq!(
        first["next"],
        json!(format!("{PUBLIC_URL}/v1/functions?limit=2&marker={marker}"))
    );

    // By name, descending, keeping the sort across pages.
    let mut pages = Vec::new();
    let mut path = Some("/v1/functions?sort_key=name&sort_dir=desc&limit=2".to_owned());
    while let Some(p) = path {
        let page = api.send(get(&p).by(ALICE)).await.ok(200);
        pages.push(names(&page).join(","));
        path = next_path(&page);
    }
    assert_eq!(pages, ["f-e,f-d", "f-c,f-b", "f-a"]);

    let all = api.send(get("/v1/functions").by(ALICE)).await.ok(200);
    assert_eq!(names(&all), ["f-c", "f-a", "f-e", "f-b", "f-d"]);
    assert!(all.get("next").is_none(), "{all}");
    let exact = api
        .send(get("/v1/functions?limit=5").by(ALICE))
        .await
        .ok(200);
    assert_eq!(names(&exact).len(), 5);
    assert!(
        exact.get("next").is_none(),
        "a full last page has no next link: {exact}"
    );

    let r1_id = r1["id"].as_str().expect("id");
    let r2_id = r2["id"].as_str().expect("id");
    let by_r2 = format!("runtime_id={r2_id}");
    let by_r1_name = format!("runtime_id={r1_id}&name=f-d");
    let by_r1_sorted = format!("runtime_id={r1_id}&sort_key=name&limit=2");
    for (query, token, expected) in [
        ("name=f-b", ALICE, vec!["f-b"]),
        ("name=nope", ALICE, vec![]),
        (by_r2.as_str(), ALICE, vec!["f-e"]),
        (by_r1_name.as_str(), ALICE, vec!["f-d"]),
        (by_r1_sorted.as_str(), ALICE, vec!["f-a", "f-b"]),
        ("", BOB, vec!["bobs"]),
        ("", RITA, vec!["f-c", "f-a", "f-e", "f-b", "f-d"]),
        ("", ADMIN, vec![]),
        (
            "all_projects=true&sort_key=name",
            ADMIN,
            vec!["bobs", "f-a", "f-b", "f-c", "f-d", "f-e"],
        ),
        ("all_projects=true&project_id=proj-b", ADMIN, vec!["bobs"]),
        ("all_projects=true&name=f-a", ADMIN, vec!["f-a"]),
    ] {
        let list = api
            .send(get(&format!("/v1/functions?{query}")).by(token))
            .await
            .ok(200);
        assert_eq!(names(&list), expected, "{query} as {token}");
    }
}

#[actix_web::test]
async fn settings_are_patched() {
    let api = TestApi::start().await;
    api.runtime("py", json!({})).await;
    let other = api.runtime("py-other", json!({})).await;
    let created = api.function(ALICE, "f", "py", json!({})).await;
    let patched = api
        .send(patch("/v1/functions/f").by(ALICE).json(json!({
            "memory_mb": 512, "timeout_s": 30, "environment": {"A": "1", "B": "two"}, "description": "d",
            "handler": "app.main", "runtime": "py-other"
        })))
        .await
        .ok(200)["function"]
        .clone();
    let mut expected = created.clone();
    merge(
        &mut expected,
        json!({"memory_mb": 512, "timeout_s": 30, "environment": {"A": "1", "B": "two"}, "description": "d",
               "handler": "app.main", "runtime_id": other["id"], "updated_at": patched["updated_at"]}),
    );
    assert_eq!(patched, expected);
    assert!(patched["updated_at"].as_str() >= created["updated_at"].as_str());
    assert_eq!(
        api.send(get("/v1/functions/f").by(ALICE)).await.ok(200)["function"],
        patched
    );

    // A multipart PATCH with metadata only changes settings too.
    let again = api
        .send(
            patch("/v1/functions/f")
                .by(ALICE)
                .upload(&json!({"timeout_s": 31}), None),
        )
        .await
        .ok(200);
    assert_eq!(again["function"]["timeout_s"], 31);
    assert_eq!(again["function"]["code"], created["code"]);

    // Renaming: the old name is gone, the id stays.
    let renamed = api
        .send(
            patch("/v1/functions/f")
                .by(ALICE)
                .json(json!({"name": "g"})),
        )
        .await
        .ok(200);
    assert_eq!(renamed["function"]["id"], created["id"]);
    api.send(get("/v1/functions/f").by(ALICE))
        .await
        .error(404, "function f could not be found");
    assert_eq!(
        api.send(get("/v1/functions/g").by(ALICE)).await.ok(200)["function"]["name"],
        "g"
    );

    api.expect_errors(vec![
        (
            patch("/v1/functions/g")
                .by(RITA)
                .json(json!({"memory_mb": 256})),
            403,
            "policy does not allow function:update to be performed",
        ),
        (
            patch("/v1/functions/g")
                .by(ALICE)
                .json(json!({"environment": {"AWS_REGION": "x"}})),
            400,
            "environment: AWS_REGION is reserved",
        ),
        (
            patch("/v1/functions/g")
                .by(ALICE)
                .json(json!({"handler": "bad handler"})),
            400,
            "handler must be",
        ),
        (
            patch("/v1/functions/g")
                .by(ALICE)
                .json(json!({"runtime": "nope"})),
            400,
            "runtime nope does not exist",
        ),
    ])
    .await;
    assert_eq!(
        api.send(get("/v1/functions/g").by(ALICE)).await.ok(200)["function"]["timeout_s"],
        31
    );
}

#[actix_web::test]
async fn new_code_replaces_the_old_package_which_is_dropped_when_unused() {
    let api = TestApi::start().await;
    api.runtime("py", json!({})).await;
    let zip1 = zip_of(&[("main.py", b"v = 1\n")]);
    api.send(
        post("/v1/functions")
            .by(ALICE)
            .upload(&json!({"name": "f", "runtime": "py"}), Some(&zip1)),
    )
    .await
    .ok(201);
    assert_eq!(api.stored("proj-a").await, (1, zip1.len() as i64));

    // PATCH multipart: settings and package at once.
    let zip2 = zip_of(&[("main.py", b"v = 2\n"), ("data.txt", b"more")]);
    let f = api
        .send(
            patch("/v1/functions/f")
                .by(ALICE)
                .upload(&json!({"description": "v2"}), Some(&zip2)),
        )
        .await
        .ok(200)["function"]
        .clone();
    assert_eq!(
        (&f["description"], &f["code"]),
        (&json!("v2"), &code(&zip2, "zip"))
    );
    assert_eq!(api.stored("proj-a").await, (1, zip2.len() as i64));

    // PATCH multipart with the package alone, as tar.gz.
    let tgz3 = tar_gz_of(&[("main.py", b"v = 3\n")]);
    let f = api
        .send(
            patch("/v1/functions/f")
                .by(ALICE)
                .multipart(&[Part::file("package", &tgz3)]),
        )
        .await
        .ok(200)["function"]
        .clone();
    assert_eq!(
        (&f["description"], &f["code"]),
        (&json!("v2"), &code(&tgz3, "tar.gz"))
    );
    assert_eq!(api.stored("proj-a").await, (1, tgz3.len() as i64));

    // PUT .../code with the raw archive.
    let zip4 = zip_of(&[("main.py", b"v = 4\n")]);
    let f = api
        .send(
            put("/v1/functions/f/code")
                .by(ALICE)
                .raw("application/zip", zip4.clone()),
        )
        .await
        .ok(200)["function"]
        .clone();
    assert_eq!(f["code"], code(&zip4, "zip"));
    assert_eq!(api.stored("proj-a").await, (1, zip4.len() as i64));
    let download = api.send(get("/v1/functions/f/code").by(ALICE)).await;
    assert_eq!(
        (download.header("content-type"), &download.body[..]),
        (Some("application/zip"), &zip4[..])
    );

    // A published version keeps its package alive until the version goes.
    api.send(post("/v1/functions/f/versions").by(ALICE))
        .await
        .ok(201);
    let tgz5 = tar_gz_of(&[("main.py", b"v = 5\n")]);
    api.send(
        put("/v1/functions/f/code")
            .by(ALICE)
            .raw("application/gzip", tgz5.clone()),
    )
    .await
    .ok(200);
    assert_eq!(
        api.stored("proj-a").await,
        (1, (zip4.len() + tgz5.len()) as i64)
    );
    let download = api.send(get("/v1/functions/f/code").by(ALICE)).await;
    assert_eq!(
        (download.header("content-type"), &download.body[..]),
        (Some("application/gzip"), &tgz5[..])
    );
    api.send(delete("/v1/functions/f/versions/1").by(ALICE))
        .await
        .ok(204);
    assert_eq!(api.stored("proj-a").await, (1, tgz5.len() as i64));

    // Identical bytes are stored once per project, and stay while any function uses them.
    api.send(
        post("/v1/functions")
            .by(ALICE)
            .upload(&json!({"name": "twin", "runtime": "py"}), Some(&tgz5)),
    )
    .await
    .ok(201);
    assert_eq!(api.stored("proj-a").await, (2, tgz5.len() as i64));
    api.send(delete("/v1/functions/twin").by(ALICE))
        .await
        .ok(204);
    assert_eq!(api.stored("proj-a").await, (1, tgz5.len() as i64));
    // ... but per project: proj-b's copy is its own.
    api.send(
        post("/v1/functions")
            .by(BOB)
            .upload(&json!({"name": "twin", "runtime": "py"}), Some(&tgz5)),
    )
    .await
    .ok(201);
    assert_eq!(api.stored("proj-b").await, (1, tgz5.len() as i64));
    api.send(delete("/v1/functions/f").by(ALICE)).await.ok(204);
    assert_eq!(api.stored("proj-a").await, (0, 0));
    assert_eq!(api.stored("proj-b").await, (1, tgz5.len() as i64));
}

#[actix_web::test]
async fn deleted_functions_are_gone_with_their_versions_and_aliases() {
    let api = TestApi::start().await;
    api.runtime("py", json!({})).await;
    let f = api.function(ALICE, "f", "py", json!({})).await;
    let id = f["id"].as_str().expect("id").to_owned();
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

    api.send(delete("/v1/functions/f").by(RITA))
        .await
        .error(403, "policy does not allow function:delete to be performed");
    assert_eq!(
        api.send(delete(&format!("/v1/functions/{id}")).by(ALICE))
            .await
            .ok(204),
        Value::Null
    );
    api.expect_errors(vec![
        (
            get(&format!("/v1/functions/{id}")).by(ALICE),
            404,
            &format!("function {id} could not be found"),
        ),
        (
            get("/v1/functions/f").by(ALICE),
            404,
            "function f could not be found",
        ),
        (
            get("/v1/functions/f/versions").by(ALICE),
            404,
            "function f could not be found",
        ),
        (
            get("/v1/functions/f/aliases/live").by(ALICE),
            404,
            "function f could not be found",
        ),
        (
            get("/v1/functions/f/code").by(ALICE),
            404,
            "function f could not be found",
        ),
        (
            delete("/v1/functions/f").by(ALICE),
            404,
            "function f could not be found",
        ),
    ])
    .await;
    for table in [
        "functions",
        "function_versions",
        "function_aliases",
        "code_packages",
    ] {
        assert_eq!(
            api.db.scalar(&format!("SELECT count(*) FROM {table}")),
            0,
            "{table}"
        );
    }
    // The name is free again.
    api.function(ALICE, "f", "py", json!({})).await;
}

/// Lists fetch the page's code metadata in one query; functions sharing one package must each
/// still show it.
#[actix_web::test]
async fn lists_show_the_code_of_functions_sharing_a_package() {
    let api = TestApi::start().await;
    api.runtime("python3", json!({})).await;
    let zip = zip_of(&[("main.py", b"def handler(e, c):\n    return 1\n")]);
    for name in ["twin-a", "twin-b"] {
        api.send(
            post("/v1/functions")
                .by(ALICE)
                .upload(&json!({"name": name, "runtime": "python3"}), Some(&zip)),
        )
        .await
        .ok(201);
    }
    api.send(
        post("/v1/functions")
            .by(ALICE)
            .json(json!({"name": "no-code", "runtime": "python3"})),
    )
    .await
    .ok(201);
    let list = api
        .send(get("/v1/functions?sort_key=name").by(ALICE))
        .await
        .ok(200);
    let codes: Vec<(&str, &Value)> = list["functions"]
        .as_array()
        .expect("functions")
        .iter()
        .map(|f| (f["name"].as_str().expect("name"), &f["code"]))
        .collect();
    let expected = code(&zip, "zip");
    assert_eq!(
        codes,
        vec![
            ("no-code", &Value::Null),
            ("twin-a", &expected),
            ("twin-b", &expected)
        ]
    );
}
