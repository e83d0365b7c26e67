//! Bad input, one case at a time: each refused with the right status and a message naming
//! the problem, and nothing stored.

use serde_json::json;

use crate::common::*;

/// A runtime `py` (memory 128-512 MB, timeout at most 60 s) and one function `f` of proj-a.
async fn setup() -> TestApi {
    let api = TestApi::start().await;
    api.runtime(
        "py",
        json!({"memory_min_mb": 128, "memory_max_mb": 512, "timeout_max_s": 60}),
    )
    .await;
    api.function(ALICE, "f", "py", json!({})).await;
    api
}

fn create(body: &str) -> Call {
    post("/v1/functions")
        .by(ALICE)
        .raw("application/json", body.to_owned())
}

#[actix_web::test]
async fn malformed_and_mistyped_bodies_are_400_naming_the_field() {
    let api = setup().await;
    let before = api.stored("proj-a").await;
    api.expect_errors(vec![
        (
            create(r#"{"name": "g", "runtime": "py""#),
            400,
            "EOF while parsing an object at line 1 column 29",
        ),
        (
            create("{name: g}"),
            400,
            "key must be a string at line 1 column 2",
        ),
        (
            create(""),
            400,
            "EOF while parsing a value at line 1 column 0",
        ),
        (
            create("42"),
            400,
            "invalid request body: invalid type: integer `42`",
        ),
        (
            create(r#"{"name": "g", "runtime": "py", "colour": "red"}"#),
            400,
            "unknown field `colour`",
        ),
        (
            create(r#"{"name": "g", "runtime": "py", "memory_mb": "lots"}"#),
            400,
            "memory_mb: invalid type: string \"lots\"",
        ),
        (
            create(r#"{"name": "g", "runtime": "py", "memory_mb": 1.5}"#),
            400,
            "memory_mb: invalid type: floating point",
        ),
        (
            create(r#"{"name": "g", "runtime": "py", "timeout_s": 99999999999}"#),
            400,
            "timeout_s: invalid value",
        ),
        (
            create(r#"{"name": "g", "runtime": "py", "environment": ["A=1"]}"#),
            400,
            "environment: invalid type: sequence",
        ),
        (
            create(r#"{"name": "g", "runtime": "py", "environment": {"A": 1}}"#),
            400,
            "environment.A: invalid type: integer",
        ),
        (
            create(r#"{"name": 7, "runtime": "py"}"#),
            400,
            "name: invalid type: integer",
        ),
        (create(r#"{"runtime": "py"}"#), 400, "missing field `name`"),
        (
            post("/v1/functions").by(ALICE).upload(
                &json!({"name": "g", "runtime": "py", "memory_mb": "lots"}),
                None,
            ),
            400,
            "memory_mb: invalid type",
        ),
        (
            post("/v1/functions").by(ALICE).multipart(&[Part {
                name: "metadata".into(),
                filename: None,
                content_type: "application/json".into(),
                data: b"{oops".to_vec(),
            }]),
            400,
            "invalid request body",
        ),
        (
            patch("/v1/functions/f")
                .by(ALICE)
                .json(json!({"memory_mb": "lots"})),
            400,
            "memory_mb: invalid type",
        ),
        (
            patch("/v1/functions/f")
                .by(ALICE)
                .json(json!({"image": "x:1"})),
            400,
            "unknown field `image`",
        ),
        (
            post("/v1/runtimes")
                .by(ADMIN)
                .json(json!({"name": "r", "image": "i:1", "kind": "python", "is_public": "yes"})),
            400,
            "is_public: invalid type",
        ),
        (
            post("/v1/functions/f/versions")
                .by(ALICE)
                .json(json!({"description": 5})),
            400,
            "description: invalid type",
        ),
        (
            post("/v1/functions/f/versions")
                .by(ALICE)
                .json(json!({"notes": "x"})),
            400,
            "unknown field `notes`",
        ),
        (
            post("/v1/functions/f/aliases")
                .by(ALICE)
                .json(json!({"name": "a", "version": "one"})),
            400,
            "version: invalid type",
        ),
        (
            put("/v1/quotas/proj-a")
                .by(ADMIN)
                .json(json!({"functions": "ten"})),
            400,
            "functions must be an integer",
        ),
        (
            put("/v1/quotas/proj-a")
                .by(ADMIN)
                .raw("application/json", "{"),
            400,
            "invalid request body",
        ),
    ])
    .await;
    assert_eq!(api.stored("proj-a").await, before);
    assert_eq!(api.db.scalar("SELECT count(*) FROM runtimes"), 1);
    assert_eq!(api.db.scalar("SELECT count(*) FROM function_versions"), 0);
    assert_eq!(api.db.scalar("SELECT count(*) FROM quotas"), 0);
    let f = api.send(get("/v1/functions/f").by(ALICE)).await.ok(200);
    assert_eq!(f["function"]["memory_mb"], 128);
}

#[actix_web::test]
async fn invalid_names_are_400() {
    let api = setup().await;
    let too_long = "n".repeat(65);
    let uuid = uuid::Uuid::new_v4().to_string();
    let bad_names = [
        "has space",
        too_long.as_str(),
        "-dash",
        ".dot",
        "",
        "slash/y",
        "ümlaut",
    ];
    let mut cases = Vec::new();
    for name in bad_names {
        cases.push((
            post("/v1/functions").by(ALICE).json(json!({"name": name, "runtime": "py"})),
            400,
            "name must be 1 to 64 characters of letters, digits, '_', '-' and '.', starting with a letter or digit",
        ));
        cases.push((
            patch("/v1/functions/f")
                .by(ALICE)
                .json(json!({"name": name})),
            400,
            "name must be 1 to 64",
        ));
        cases.push((
            post("/v1/runtimes")
                .by(ADMIN)
                .json(json!({"name": name, "image": "i:1", "kind": "python"})),
            400,
            "name must be 1 to 64",
        ));
    }
    cases.push((
        post("/v1/functions")
            .by(ALICE)
            .json(json!({"name": uuid, "runtime": "py"})),
        400,
        "name must not be a UUID",
    ));
    cases.push((
        patch("/v1/functions/f")
            .by(ALICE)
            .json(json!({"name": uuid})),
        400,
        "name must not be a UUID",
    ));
    cases.push((
        post("/v1/runtimes")
            .by(ADMIN)
            .json(json!({"name": uuid, "image": "i:1", "kind": "python"})),
        400,
        "name must not be a UUID",
    ));
    api.send(post("/v1/functions/f/versions").by(ALICE))
        .await
        .ok(201);
    cases.push((
        post("/v1/functions/f/aliases")
            .by(ALICE)
            .json(json!({"name": "a b", "version": 1})),
        400,
        "name must be 1 to 64",
    ));
    cases.push((
        post("/v1/functions/f/aliases")
            .by(ALICE)
            .json(json!({"name": uuid, "version": 1})),
        400,
        "name must not be a UUID",
    ));
    api.expect_errors(cases).await;
    // The longest valid name is fine.
    let longest = "n".repeat(64);
    api.send(
        post("/v1/functions")
            .by(ALICE)
            .json(json!({"name": longest, "runtime": "py"})),
    )
    .await
    .ok(201);
    assert_eq!(api.stored("proj-a").await.0, 2);
    assert_eq!(api.db.scalar("SELECT count(*) FROM runtimes"), 1);
    assert_eq!(api.db.scalar("SELECT count(*) FROM function_aliases"), 0);
    assert_eq!(
        api.send(get("/v1/functions/f").by(ALICE)).await.ok(200)["function"]["name"],
        "f"
    );
}

#[actix_web::test]
async fn memory_and_timeout_must_fit_the_runtime() {
    let api = setup().await;
    let before = api.stored("proj-a").await;
    let create = |extra: serde_json::Value| {
        let mut body = json!({"name": "g", "runtime": "py"});
        merge(&mut body, extra);
        post("/v1/functions").by(ALICE).json(body)
    };
    api.expect_errors(vec![
        (
            create(json!({"memory_mb": 64})),
            400,
            "memory_mb must be between 128 and 512, got 64",
        ),
        (
            create(json!({"memory_mb": 513})),
            400,
            "memory_mb must be between 128 and 512, got 513",
        ),
        (
            create(json!({"timeout_s": 61})),
            400,
            "timeout_s must be between 1 and 60, got 61",
        ),
        (
            create(json!({"timeout_s": 0})),
            400,
            "timeout_s must be between 1 and 60, got 0",
        ),
        (
            create(json!({"timeout_s": -5})),
            400,
            "timeout_s must be between 1 and 60, got -5",
        ),
        (
            patch("/v1/functions/f")
                .by(ALICE)
                .json(json!({"memory_mb": 1024})),
            400,
            "memory_mb must be between 128 and 512, got 1024",
        ),
        (
            patch("/v1/functions/f")
                .by(ALICE)
                .json(json!({"timeout_s": 600})),
            400,
            "timeout_s must be between 1 and 60, got 600",
        ),
    ])
    .await;
    assert_eq!(api.stored("proj-a").await, before);
    let f = api.send(get("/v1/functions/f").by(ALICE)).await.ok(200)["function"].clone();
    assert_eq!((&f["memory_mb"], &f["timeout_s"]), (&json!(128), &json!(3)));
    // The bounds themselves are allowed.
    api.send(create(json!({"memory_mb": 512, "timeout_s": 60})))
        .await
        .ok(201);
}

#[actix_web::test]
async fn oversized_packages_are_413_and_nothing_is_stored() {
    let api = setup().await;
    let original =
        api.send(get("/v1/functions/f").by(ALICE)).await.ok(200)["function"]["code"].clone();
    let before = api.stored("proj-a").await;
    let small = zip_of(&[("main.py", b"x = 1\n")]);
    let big = noise(MAX_PACKAGE_BYTES + 1, 7);
    let limit_message = format!("larger than {MAX_PACKAGE_BYTES} bytes");
    let multipart_limit = MAX_JSON_BODY_BYTES + MAX_PACKAGE_BYTES + 64 * 1024;
    api.expect_errors(vec![
        // Refused on the declared length alone: the (small, valid) body is never read.
        (
            put("/v1/functions/f/code").by(ALICE).raw("application/zip", small.clone()).header("content-length", &(MAX_PACKAGE_BYTES + 1).to_string()),
            413,
            &limit_message,
        ),
        (
            post("/v1/functions")
                .by(ALICE)
                .upload(&json!({"name": "g", "runtime": "py"}), Some(&small))
                .header("content-length", &(multipart_limit + 1).to_string()),
            413,
            &limit_message,
        ),
        // Refused while reading, when the declared length understates the body.
        (put("/v1/functions/f/code").by(ALICE).raw("application/zip", big.clone()).header("content-length", "100"), 413, &limit_message),
        (put("/v1/functions/f/code").by(ALICE).raw("application/zip", big.clone()), 413, &limit_message),
        (post("/v1/functions").by(ALICE).upload(&json!({"name": "g", "runtime": "py"}), Some(&big)), 413, "package is larger than"),
        (patch("/v1/functions/f").by(ALICE).multipart(&[Part::file("package", &big)]), 413, "package is larger than"),
        (
            post("/v1/functions").by(ALICE).multipart(&[Part::json("metadata", &json!({"name": "g", "runtime": "py", "description": "d".repeat(MAX_JSON_BODY_BYTES)}))]),
            413,
            "metadata is larger than",
        ),
    ])
    .await;
    assert_eq!(api.stored("proj-a").await, before);
    assert_eq!(
        api.send(get("/v1/functions/f").by(ALICE)).await.ok(200)["function"]["code"],
        original
    );
    // A package exactly at the limit is accepted (the limit is inclusive).
    let at_limit = noise(MAX_PACKAGE_BYTES - 200, 9);
    let package = zip_of(&[("blob", &at_limit)]);
    assert!(package.len() <= MAX_PACKAGE_BYTES, "{}", package.len());
    api.send(
        put("/v1/functions/f/code")
            .by(ALICE)
            .raw("application/zip", package),
    )
    .await
    .ok(200);
}

#[actix_web::test]
async fn hostile_or_broken_archives_are_400_and_nothing_is_stored() {
    let api = setup().await;
    let original =
        api.send(get("/v1/functions/f").by(ALICE)).await.ok(200)["function"]["code"].clone();
    let before = api.stored("proj-a").await;
    let zeros = vec![0u8; MAX_UNPACKED_BYTES + 1];
    let zip_bomb = zip_of(&[("zeros", &zeros)]);
    let tar_bomb = tar_gz_of(&[("zeros", &zeros)]);
    assert!(zip_bomb.len() < MAX_PACKAGE_BYTES / 8 && tar_bomb.len() < MAX_PACKAGE_BYTES / 8);
    // Many small files, each under the size limit, summing over it.
    let chunk = vec![b'a'; MAX_UNPACKED_BYTES / 4 + 1];
    let spread_bomb = zip_of(&[("a", &chunk), ("b", &chunk), ("c", &chunk), ("d", &chunk)]);
    let names: Vec<String> = (0..=MAX_ARCHIVE_ENTRIES)
        .map(|i| format!("f{i}.py"))
        .collect();
    let many: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b"x"[..])).collect();
    let unpacked = format!("package unpacks to more than {MAX_UNPACKED_BYTES} bytes");
    let entries = format!("package has more than {MAX_ARCHIVE_ENTRIES} entries");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "zip with ../x",
            zip_of(&[("main.py", b"x"), ("../x", b"evil")]),
            r#"package entry "../x" has an absolute path or a '..' component"#,
        ),
        (
            "zip with a/../../x",
            zip_of(&[("a/../../x", b"evil")]),
            r#"package entry "a/../../x" has an absolute path"#,
        ),
        (
            "tar.gz with ../x",
            tar_gz_of(&[("../x", b"evil")]),
            r#"package entry "../x" has an absolute path"#,
        ),
        (
            "zip with /etc/cron.d/x",
            zip_of(&[("/etc/cron.d/x", b"evil")]),
            r#"package entry "/etc/cron.d/x" has an absolute path"#,
        ),
        (
            "tar.gz with /abs",
            tar_gz_of(&[("/abs", b"evil")]),
            r#"package entry "/abs" has an absolute path"#,
        ),
        (
            "zip symlink out",
            zip_with_symlink("link", "../../etc/passwd"),
            r#"package entry "link" is a link pointing outside the package"#,
        ),
        (
            "zip absolute symlink",
            zip_with_symlink("lib/link", "/etc/shadow"),
            r#"package entry "lib/link" is a link pointing outside"#,
        ),
        ("zip bomb", zip_bomb, &unpacked),
        ("tar.gz bomb", tar_bomb, &unpacked),
        ("zip spread over files", spread_bomb, &unpacked),
        ("zip with too many entries", zip_of(&many), &entries),
        ("tar.gz with too many entries", tar_gz_of(&many), &entries),
        (
            "plain text",
            b"def handler(e, c): pass\n".to_vec(),
            "package is neither a zip nor a tar.gz archive",
        ),
        (
            "empty",
            Vec::new(),
            "package is neither a zip nor a tar.gz archive",
        ),
        (
            "truncated zip",
            b"PK\x03\x04garbage".to_vec(),
            "package is not a valid archive",
        ),
        (
            "truncated gzip",
            vec![0x1f, 0x8b, 0, 1, 2],
            "package is not a valid archive",
        ),
    ];
    for (label, package, fragment) in cases {
        for call in [
            post("/v1/functions")
                .by(ALICE)
                .upload(&json!({"name": "g", "runtime": "py"}), Some(&package)),
            put("/v1/functions/f/code")
                .by(ALICE)
                .raw("application/zip", package.clone()),
            patch("/v1/functions/f")
                .by(ALICE)
                .upload(&json!({"description": "changed"}), Some(&package)),
        ] {
            let reply = api.send(call).await;
            let context = format!("{label}: {}", reply.label);
            let reply = Reply {
                label: context,
                ..reply
            };
            reply.error(400, fragment);
        }
        assert_eq!(
            api.stored("proj-a").await,
            before,
            "{label}: something was stored"
        );
    }
    let f = api.send(get("/v1/functions/f").by(ALICE)).await.ok(200)["function"].clone();
    assert_eq!((&f["code"], &f["description"]), (&original, &json!("")));
    api.send(get("/v1/functions/g").by(ALICE))
        .await
        .error(404, "function g could not be found");
    // A symlink that stays inside is fine.
    api.send(put("/v1/functions/f/code").by(ALICE).raw(
        "application/zip",
        zip_with_symlink("lib/link", "../main.py"),
    ))
    .await
    .ok(200);
}

#[actix_web::test]
async fn unknown_ids_and_names_are_404() {
    let api = setup().await;
    api.send(post("/v1/functions/f/versions").by(ALICE))
        .await
        .ok(201);
    let missing = uuid::Uuid::new_v4();
    api.expect_errors(vec![
        (
            get(&format!("/v1/functions/{missing}")).by(ALICE),
            404,
            &format!("function {missing} could not be found"),
        ),
        (
            get("/v1/functions/nope").by(ALICE),
            404,
            "function nope could not be found",
        ),
        (
            patch("/v1/functions/nope")
                .by(ALICE)
                .json(json!({"memory_mb": 256})),
            404,
            "function nope could not be found",
        ),
        (
            delete("/v1/functions/nope").by(ALICE),
            404,
            "function nope could not be found",
        ),
        (
            get("/v1/functions/nope/code").by(ALICE),
            404,
            "function nope could not be found",
        ),
        (
            put("/v1/functions/nope/code")
                .by(ALICE)
                .raw("application/zip", zip_of(&[("a", b"b")])),
            404,
            "function nope could not be found",
        ),
        (
            post("/v1/functions/nope/versions").by(ALICE),
            404,
            "function nope could not be found",
        ),
        (
            get("/v1/functions/f/versions/9").by(ALICE),
            404,
            "version 9 of function f could not be found",
        ),
        (
            delete("/v1/functions/f/versions/9").by(ALICE),
            404,
            "version 9 of function f could not be found",
        ),
        (
            get("/v1/functions/f/versions/0").by(ALICE),
            404,
            "version 0 could not be found",
        ),
        (
            get("/v1/functions/f/versions/one").by(ALICE),
            404,
            "version one could not be found",
        ),
        (
            get("/v1/functions/f/aliases/nope").by(ALICE),
            404,
            "alias nope could not be found",
        ),
        (
            patch("/v1/functions/f/aliases/nope")
                .by(ALICE)
                .json(json!({"version": 1})),
            404,
            "alias nope could not be found",
        ),
        (
            delete("/v1/functions/f/aliases/nope").by(ALICE),
            404,
            "alias nope could not be found",
        ),
        (
            get(&format!("/v1/executions/{missing}")).by(ALICE),
            404,
            &format!("execution {missing} could not be found"),
        ),
        (
            get(&format!("/v1/executions/{missing}/log")).by(ALICE),
            404,
            &format!("execution {missing} could not be found"),
        ),
        (
            delete(&format!("/v1/executions/{missing}")).by(ALICE),
            404,
            &format!("execution {missing} could not be found"),
        ),
        (
            get("/v1/executions/not-a-uuid").by(ALICE),
            404,
            "execution not-a-uuid could not be found",
        ),
        (
            get(&format!("/v1/runtimes/{missing}")).by(ALICE),
            404,
            &format!("runtime {missing} could not be found"),
        ),
        (
            get("/v1/runtimes/nope").by(ALICE),
            404,
            "runtime nope could not be found",
        ),
        (
            delete("/v1/runtimes/nope").by(ADMIN),
            404,
            "runtime nope could not be found",
        ),
    ])
    .await;
}

#[actix_web::test]
async fn duplicate_names_conflict_within_a_project_only() {
    let api = setup().await;
    api.function(ALICE, "g", "py", json!({})).await;
    let before = api.stored("proj-a").await;
    api.expect_errors(vec![
        (
            post("/v1/functions")
                .by(ALICE)
                .json(json!({"name": "f", "runtime": "py"})),
            409,
            "a function named f already exists",
        ),
        (
            post("/v1/functions").by(ALICE).upload(
                &json!({"name": "f", "runtime": "py"}),
                Some(&zip_of(&[("new.py", b"new")])),
            ),
            409,
            "a function named f already exists",
        ),
        (
            patch("/v1/functions/g")
                .by(ALICE)
                .json(json!({"name": "f"})),
            409,
            "a function named f already exists",
        ),
    ])
    .await;
    assert_eq!(api.stored("proj-a").await, before);
    assert_eq!(
        api.send(get("/v1/functions/g").by(ALICE)).await.ok(200)["function"]["name"],
        "g"
    );
    // The same name in another project is another function.
    let bobs = api
        .send(
            post("/v1/functions")
                .by(BOB)
                .json(json!({"name": "f", "runtime": "py"})),
        )
        .await
        .ok(201);
    assert_eq!(bobs["function"]["project_id"], "proj-b");
    let alices = api.send(get("/v1/functions/f").by(ALICE)).await.ok(200);
    assert_ne!(alices["function"]["id"], bobs["function"]["id"]);
    assert_eq!(alices["function"]["project_id"], "proj-a");
}

#[actix_web::test]
async fn query_strings_are_checked() {
    let api = setup().await;
    api.send(post("/v1/functions/f/versions").by(ALICE))
        .await
        .ok(201);
    let bobs = api.function(BOB, "bobs", "py", json!({})).await;
    let bobs_id = bobs["id"].as_str().expect("id");
    let unknown = uuid::Uuid::new_v4();
    let marker_not_found = "marker does not name an item of this list";
    api.expect_errors(vec![
        (
            get("/v1/functions?colour=red").by(ALICE),
            400,
            "unknown query parameter colour",
        ),
        (
            get("/v1/runtimes?name=py").by(ALICE),
            400,
            "unknown query parameter name",
        ),
        (
            get("/v1/executions?function=f").by(ALICE),
            400,
            "unknown query parameter function",
        ),
        (
            get("/v1/functions/f/versions?status=x").by(ALICE),
            400,
            "unknown query parameter status",
        ),
        (
            get("/v1/functions/f/aliases?version=1").by(ALICE),
            400,
            "unknown query parameter version",
        ),
        (
            get("/v1/usage?colour=red").by(ALICE),
            400,
            "unknown query parameter colour",
        ),
        (
            get("/v1/functions?name=a&name=b").by(ALICE),
            400,
            "query parameter name given twice",
        ),
        (
            get("/v1/functions?marker=xyz").by(ALICE),
            400,
            "query parameter marker has an invalid value \"xyz\"",
        ),
        (
            get(&format!("/v1/functions?marker={unknown}")).by(ALICE),
            400,
            marker_not_found,
        ),
        (
            get(&format!("/v1/functions?marker={bobs_id}")).by(ALICE),
            400,
            marker_not_found,
        ),
        (
            get(&format!("/v1/runtimes?marker={unknown}")).by(ALICE),
            400,
            marker_not_found,
        ),
        (
            get(&format!("/v1/executions?marker={unknown}")).by(ALICE),
            400,
            marker_not_found,
        ),
        (
            get("/v1/functions/f/versions?marker=7").by(ALICE),
            400,
            marker_not_found,
        ),
        (
            get("/v1/functions/f/versions?marker=x").by(ALICE),
            400,
            "query parameter marker has an invalid value",
        ),
        (
            get("/v1/functions/f/aliases?marker=nope").by(ALICE),
            400,
            marker_not_found,
        ),
        (
            get("/v1/functions?limit=0").by(ALICE),
            400,
            "limit must be between 1 and 1000",
        ),
        (
            get("/v1/functions?limit=1001").by(ALICE),
            400,
            "limit must be between 1 and 1000",
        ),
        (
            get("/v1/functions?limit=-1").by(ALICE),
            400,
            "limit must be between 1 and 1000",
        ),
        (
            get("/v1/functions?limit=ten").by(ALICE),
            400,
            "query parameter limit has an invalid value \"ten\"",
        ),
        (
            get("/v1/executions?limit=0").by(ALICE),
            400,
            "limit must be between 1 and 1000",
        ),
        (
            get("/v1/functions/f/versions?limit=0").by(ALICE),
            400,
            "limit must be between 1 and 1000",
        ),
        (
            get("/v1/functions?sort_key=memory_mb").by(ALICE),
            400,
            "sort_key must be one of created_at, name",
        ),
        (
            get("/v1/executions?sort_key=name").by(ALICE),
            400,
            "sort_key must be one of created_at",
        ),
        (
            get("/v1/functions?sort_dir=up").by(ALICE),
            400,
            "sort_dir must be asc or desc",
        ),
        (
            get("/v1/functions?runtime_id=py").by(ALICE),
            400,
            "query parameter runtime_id has an invalid value",
        ),
        (
            get("/v1/executions?function_id=f").by(ALICE),
            400,
            "query parameter function_id has an invalid value",
        ),
        (
            get("/v1/executions?status=done").by(ALICE),
            400,
            "status must be one of queued, running, succeeded",
        ),
    ])
    .await;
    // The bounds are fine.
    for path in [
        "/v1/functions?limit=1",
        "/v1/functions?limit=1000",
        "/v1/functions?sort_dir=asc&sort_key=created_at",
    ] {
        api.send(get(path).by(ALICE)).await.ok(200);
    }
}

#[actix_web::test]
async fn wrong_content_types_are_415() {
    let api = setup().await;
    api.send(post("/v1/functions/f/versions").by(ALICE))
        .await
        .ok(201);
    let before = api.stored("proj-a").await;
    api.expect_errors(vec![
        (
            post("/v1/functions")
                .by(ALICE)
                .raw("text/plain", r#"{"name": "g", "runtime": "py"}"#),
            415,
            "expected application/json, got text/plain",
        ),
        (
            post("/v1/functions")
                .by(ALICE)
                .raw("application/zip", zip_of(&[("a", b"b")])),
            415,
            "expected application/json, got application/zip",
        ),
        (
            patch("/v1/functions/f")
                .by(ALICE)
                .raw("application/xml", "<f/>"),
            415,
            "expected application/json, got application/xml",
        ),
        (
            post("/v1/runtimes").by(ADMIN).raw(
                "application/x-www-form-urlencoded",
                "name=r&image=i&kind=python",
            ),
            415,
            "expected application/json",
        ),
        (
            post("/v1/functions/f/aliases")
                .by(ALICE)
                .raw("text/plain", r#"{"name": "a", "version": 1}"#),
            415,
            "expected application/json",
        ),
        (
            patch("/v1/functions/f/aliases/a")
                .by(ALICE)
                .raw("text/plain", "{}"),
            415,
            "expected application/json",
        ),
        (
            post("/v1/functions/f/versions")
                .by(ALICE)
                .raw("text/plain", r#"{"description": "x"}"#),
            415,
            "expected application/json",
        ),
        (
            put("/v1/quotas/proj-a")
                .by(ADMIN)
                .raw("text/plain", r#"{"functions": 1}"#),
            415,
            "expected application/json",
        ),
    ])
    .await;
    assert_eq!(api.stored("proj-a").await, before);
    assert_eq!(api.db.scalar("SELECT count(*) FROM function_versions"), 1);
    assert_eq!(api.db.scalar("SELECT count(*) FROM quotas"), 0);
}

/// BUG (api/src/http/body.rs, `parse_json`): a syntax error has no field path, which
/// serde_path_to_error renders as `?`; only `.` and an empty path are left out of the message,
/// so the client reads "invalid request body: ?: EOF while parsing ...".
#[actix_web::test]
async fn bug_syntax_errors_name_no_bogus_field() {
    let api = TestApi::start().await;
    for (body, expected) in [
        (
            r#"{"name": "g""#,
            "invalid request body: EOF while parsing an object at line 1 column 12",
        ),
        (
            "{name: g}",
            "invalid request body: key must be a string at line 1 column 2",
        ),
        (
            r#"{"name": "g",}"#,
            "invalid request body: trailing comma at line 1 column 14",
        ),
    ] {
        let message = api
            .send(create(body))
            .await
            .error(400, "invalid request body");
        assert_eq!(message, expected, "{body}");
    }
}

/// BUG (api/src/http/handlers/functions.rs, `upload`): `PUT .../code` takes the archive as
/// `application/zip` or `application/gzip` (docs/api.md) but never looks at the Content-Type,
/// so a body sent as JSON or text is stored as code instead of being refused with 415.
#[actix_web::test]
async fn bug_put_code_refuses_a_body_that_is_not_an_archive_type() {
    let api = setup().await;
    let before = api.stored("proj-a").await;
    let zip = zip_of(&[("main.py", b"v = 2\n")]);
    api.expect_errors(vec![
        (
            put("/v1/functions/f/code")
                .by(ALICE)
                .raw("application/json", zip.clone()),
            415,
            "application/json",
        ),
        (
            put("/v1/functions/f/code")
                .by(ALICE)
                .raw("text/plain", zip.clone()),
            415,
            "text/plain",
        ),
    ])
    .await;
    assert_eq!(api.stored("proj-a").await, before);
}

/// PostgreSQL text cannot hold U+0000: a NUL character anywhere in a request used to reach the
/// database and come back as a 500 (found by the schemathesis contract run). It is refused at
/// the edge now: 404 in a path (it names nothing), 400 in a query or a JSON string, naming it.
#[actix_web::test]
async fn nul_characters_are_refused_at_the_edge_not_as_500() {
    let api = setup().await;
    let before = api.stored("proj-a").await;
    let runtimes = api.db.scalar("SELECT count(*) FROM runtimes");
    api.expect_errors(vec![
        (
            get("/v1/functions/f%00").by(ALICE),
            404,
            "the path contains a NUL character",
        ),
        (get("/v1/runtimes/py%00").by(ALICE), 404, "NUL"),
        (get("/v1/quotas/proj-a%00").by(ADMIN), 404, "NUL"),
        (delete("/v1/functions/f%00x").by(ALICE), 404, "NUL"),
        (get("/internal/v1/code/ab%00").by(ALICE), 404, "NUL"),
        (
            get("/v1/functions?name=f%00").by(ALICE),
            400,
            "query parameter name must not contain a NUL character",
        ),
        (
            get("/v1/functions?all_projects=true&project_id=%00").by(ADMIN),
            400,
            "query parameter project_id must not contain a NUL character",
        ),
        (get("/v1/usage?project_id=p%00").by(ADMIN), 400, "NUL"),
        (
            post("/v1/runtimes").by(ADMIN).json(
                json!({"name": "r", "image": "i:1", "kind": "python", "project_id": "p\u{0}"}),
            ),
            400,
            "invalid request body: project_id: strings must not contain a NUL character",
        ),
        (
            create(r#"{"name": "g", "runtime": "py", "description": "a\u0000b"}"#),
            400,
            "description: strings must not contain a NUL character",
        ),
        (
            post("/v1/functions").by(ALICE).upload(
                &json!({"name": "g", "runtime": "py", "environment": {"A": "\u{0}"}}),
                None,
            ),
            400,
            "environment.A: strings must not contain a NUL character",
        ),
        (
            patch("/v1/functions/f")
                .by(ALICE)
                .json(json!({"description": "\u{0}"})),
            400,
            "NUL",
        ),
        (
            put("/v1/quotas/proj-a")
                .by(ADMIN)
                .json(json!({"functions\u{0}": 1})),
            400,
            "functions\\0: strings must not contain a NUL character",
        ),
        (
            post("/v1/functions/f/aliases")
                .by(ALICE)
                .json(json!({"name": "live", "version": 1, "description": "\u{0}"})),
            400,
            "NUL",
        ),
    ])
    .await;
    assert_eq!(api.stored("proj-a").await, before);
    assert_eq!(api.db.scalar("SELECT count(*) FROM runtimes"), runtimes);
    // A backslash followed by u0000 is text, not a NUL: still accepted.
    api.send(create(
        r#"{"name": "g", "runtime": "py", "description": "C:\\u0000"}"#,
    ))
    .await
    .ok(201);
}
