//! `/v1/quotas/{project}`: defaults, overrides with immediate effect, and enforcement, also
//! under concurrent creates.

use futures_util::future::join_all;
use serde_json::json;

use crate::common::*;

fn defaults(project: &str, functions: i64, code_bytes: i64) -> serde_json::Value {
    json!({
        "project_id": project,
        "functions": {"limit": 100, "in_use": functions},
        "code_bytes": {"limit": 1_073_741_824_i64, "in_use": code_bytes},
        "memory_mb_max": {"limit": 2048},
        "timeout_s_max": {"limit": 900},
        "concurrent_executions": {"limit": 100, "in_use": 0},
        "executions_per_minute": {"limit": 60000},
        "queued_executions": {"limit": 10000, "in_use": 0},
        "triggers": {"limit": 100, "in_use": 0},
        "pipelines": {"limit": 100, "in_use": 0},
    })
}

#[actix_web::test]
async fn quotas_are_shown_to_the_project_and_to_admins() {
    let api = TestApi::start().await;
    api.runtime("py", json!({})).await;
    let f = api.function(ALICE, "f", "py", json!({})).await;
    let size = f["code"]["size"].as_i64().expect("size");
    let own = api.send(get("/v1/quotas/proj-a").by(RITA)).await.ok(200);
    assert_eq!(own, json!({"quota": defaults("proj-a", 1, size)}));
    assert_eq!(
        api.send(get("/v1/quotas/proj-a").by(ALICE)).await.ok(200),
        own
    );
    assert_eq!(
        api.send(get("/v1/quotas/proj-a").by(ADMIN)).await.ok(200),
        own
    );
    assert_eq!(
        api.send(get("/v1/quotas/proj-b").by(ADMIN)).await.ok(200),
        json!({"quota": defaults("proj-b", 0, 0)})
    );
    api.expect_errors(vec![
        (
            get("/v1/quotas/proj-b").by(ALICE),
            403,
            "policy does not allow quota:show to be performed",
        ),
        (
            get("/v1/quotas/proj-a").by(BOB),
            403,
            "policy does not allow quota:show to be performed",
        ),
        (
            put("/v1/quotas/proj-a")
                .by(ALICE)
                .json(json!({"functions": 1000})),
            403,
            "policy does not allow quota:update to be performed",
        ),
        (
            delete("/v1/quotas/proj-a").by(ALICE),
            403,
            "policy does not allow quota:delete to be performed",
        ),
        (
            put("/v1/quotas/proj-a")
                .by(ADMIN)
                .json(json!({"colour": 1})),
            400,
            "unknown quota colour",
        ),
        (
            put("/v1/quotas/proj-a")
                .by(ADMIN)
                .json(json!({"functions": -2})),
            400,
            "functions must be -1 (unlimited) or more, got -2",
        ),
        (
            put("/v1/quotas/proj-a")
                .by(ADMIN)
                .json(json!({"functions": 1.5})),
            400,
            "functions must be an integer",
        ),
        (
            put("/v1/quotas/proj-a").by(ADMIN).json(json!({})),
            400,
            "give at least one quota to change",
        ),
        (
            put("/v1/quotas/proj-a").by(ADMIN).json(json!([1])),
            400,
            "invalid request body",
        ),
    ])
    .await;
    assert_eq!(api.db.scalar("SELECT count(*) FROM quotas"), 0);
}

#[actix_web::test]
async fn quota_changes_apply_at_once_and_reset_to_the_defaults() {
    let api = TestApi::start().await;
    api.runtime("py", json!({})).await;
    let first = zip_of(&[("main.py", b"a = 1\n")]);
    api.send(
        post("/v1/functions")
            .by(ALICE)
            .upload(&json!({"name": "f1", "runtime": "py"}), Some(&first)),
    )
    .await
    .ok(201);
    let used = first.len() as i64;

    let changed = api
        .send(put("/v1/quotas/proj-a").by(ADMIN).json(json!({"functions": 2, "memory_mb_max": 256, "timeout_s_max": 20, "code_bytes": used + 600})))
        .await
        .ok(200)["quota"]
        .clone();
    assert_eq!(changed["functions"], json!({"limit": 2, "in_use": 1}));
    assert_eq!(
        changed["code_bytes"],
        json!({"limit": used + 600, "in_use": used})
    );
    assert_eq!(
        (&changed["memory_mb_max"], &changed["timeout_s_max"]),
        (&json!({"limit": 256}), &json!({"limit": 20}))
    );
    assert_eq!(
        api.send(get("/v1/quotas/proj-a").by(RITA)).await.ok(200)["quota"],
        changed
    );
    // Another project keeps the defaults.
    assert_eq!(api.quota("proj-b").await, defaults("proj-b", 0, 0));

    // memory_mb_max and timeout_s_max: 403 naming the quota, within the runtime's own range.
    let before = api.stored("proj-a").await;
    let over = noise(700, 3);
    api.expect_errors(vec![
        (
            post("/v1/functions")
                .by(ALICE)
                .json(json!({"name": "big", "runtime": "py", "memory_mb": 512})),
            403,
            "quota memory_mb_max exceeded: memory_mb 512 is over the project's limit of 256",
        ),
        (
            patch("/v1/functions/f1")
                .by(ALICE)
                .json(json!({"memory_mb": 257})),
            403,
            "quota memory_mb_max exceeded",
        ),
        (
            post("/v1/functions")
                .by(ALICE)
                .json(json!({"name": "slow", "runtime": "py", "timeout_s": 21})),
            403,
            "quota timeout_s_max exceeded",
        ),
        // code_bytes: 413 naming the quota.
        (
            post("/v1/functions").by(ALICE).upload(
                &json!({"name": "heavy", "runtime": "py"}),
                Some(&zip_of(&[("blob", &over)])),
            ),
            413,
            "quota code_bytes exceeded",
        ),
        (
            put("/v1/functions/f1/code")
                .by(ALICE)
                .raw("application/zip", zip_of(&[("blob", &over)])),
            413,
            "quota code_bytes exceeded",
        ),
    ])
    .await;
    assert_eq!(api.stored("proj-a").await, before);

    // functions: the second fits, the third is refused naming the quota.
    api.send(
        post("/v1/functions")
            .by(ALICE)
            .json(json!({"name": "f2", "runtime": "py", "memory_mb": 256, "timeout_s": 20})),
    )
    .await
    .ok(201);
    api.send(
        post("/v1/functions")
            .by(ALICE)
            .json(json!({"name": "f3", "runtime": "py"})),
    )
    .await
    .error(
        403,
        "quota functions exceeded: the project has 2 of 2 functions",
    );
    assert_eq!(api.stored("proj-a").await.0, 2);
    // Bob is not affected.
    api.send(
        post("/v1/functions")
            .by(BOB)
            .json(json!({"name": "b", "runtime": "py", "memory_mb": 1024})),
    )
    .await
    .ok(201);

    // -1 is unlimited; DELETE goes back to the defaults.
    let unlimited = api
        .send(
            put("/v1/quotas/proj-a")
                .by(ADMIN)
                .json(json!({"functions": -1})),
        )
        .await
        .ok(200);
    assert_eq!(
        unlimited["quota"]["functions"],
        json!({"limit": -1, "in_use": 2})
    );
    api.send(
        post("/v1/functions")
            .by(ALICE)
            .json(json!({"name": "f3", "runtime": "py", "memory_mb": 256, "timeout_s": 20})),
    )
    .await
    .ok(201);
    assert_eq!(
        api.send(delete("/v1/quotas/proj-a").by(ADMIN))
            .await
            .ok(204),
        serde_json::Value::Null
    );
    assert_eq!(
        api.db
            .scalar("SELECT count(*) FROM quotas WHERE project_id = 'proj-a'"),
        0
    );
    assert_eq!(api.quota("proj-a").await, defaults("proj-a", 3, used));
    api.send(
        post("/v1/functions")
            .by(ALICE)
            .json(json!({"name": "f4", "runtime": "py", "memory_mb": 2048})),
    )
    .await
    .ok(201);
    // Resetting a project without overrides is fine too.
    api.send(delete("/v1/quotas/proj-c").by(ADMIN))
        .await
        .ok(204);
}

#[actix_web::test]
async fn concurrent_creates_never_exceed_the_functions_quota() {
    let api = TestApi::start().await;
    api.runtime("py", json!({})).await;
    for name in ["a", "b", "c"] {
        api.send(
            post("/v1/functions")
                .by(ALICE)
                .json(json!({"name": name, "runtime": "py"})),
        )
        .await
        .ok(201);
    }
    let current = api.stored("proj-a").await.0;
    api.send(
        put("/v1/quotas/proj-a")
            .by(ADMIN)
            .json(json!({"functions": current + 5})),
    )
    .await
    .ok(200);

    let replies = join_all((0..20).map(|i| {
        api.send(
            post("/v1/functions")
                .by(ALICE)
                .json(json!({"name": format!("race-{i}"), "runtime": "py"})),
        )
    }))
    .await;
    let mut created = 0;
    let mut refused = 0;
    for reply in replies {
        match reply.status.as_u16() {
            201 => created += 1,
            _ => {
                reply.error(
                    403,
                    &format!(
                        "quota functions exceeded: the project has {} of {} functions",
                        current + 5,
                        current + 5
                    ),
                );
                refused += 1;
            }
        }
    }
    assert_eq!((created, refused), (5, 15));
    assert_eq!(
        api.db.scalar(
            "SELECT count(*) FROM functions WHERE project_id = 'proj-a' AND name LIKE 'race-%'"
        ),
        5
    );
    assert_eq!(api.stored("proj-a").await.0, current + 5);
}
