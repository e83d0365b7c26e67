//! `/v1/executions` and `/v1/usage`, over records written as the invocation path writes them.

use chrono::{Duration, Utc};
use fresco_store::executions::Execution;
use fresco_store::ExecutionStatus;
use serde_json::{json, Value};

use crate::common::*;

struct Fixture {
    api: TestApi,
    /// proj-a's records, oldest first.
    rows: Vec<Execution>,
    f1: String,
    f2: String,
    bobs: Execution,
}

fn row(
    project: &str,
    function: &str,
    status: &str,
    memory_mb: i32,
    duration_ms: Option<f64>,
    age_s: i64,
) -> Execution {
    let mut e = execution(project, function);
    e.status = ExecutionStatus::parse(status).expect("a status");
    e.memory_mb = memory_mb;
    e.duration_ms = duration_ms;
    e.created_at = Utc::now() - Duration::seconds(age_s);
    if matches!(status, "queued" | "running") {
        e.finished_at = None;
        e.result = None;
        e.is_async = status == "queued";
        e.attempts = 0;
    }
    if status == "queued" {
        e.started_at = None;
        e.agent_id = None;
    }
    e
}

async fn setup() -> Fixture {
    let api = TestApi::start().await;
    api.runtime("py", json!({})).await;
    let f1 = api.function(ALICE, "f1", "py", json!({})).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let f2 = api.function(ALICE, "f2", "py", json!({})).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let bf = api.function(BOB, "bf", "py", json!({})).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let mut failed = row("proj-a", &f1, "failed", 512, Some(500.0), 90);
    failed.result = None;
    failed.error = Some(
        json!({"errorType": "ValueError", "errorMessage": "bad input", "stackTrace": ["main.py:2"]}),
    );
    failed.logs = "Traceback (most recent call last):\nValueError: bad input\n".into();
    failed.alias = Some("live".into());
    failed.function_version = 2;
    let rows = vec![
        row("proj-a", &f1, "succeeded", 1024, Some(1000.0), 100),
        failed,
        row("proj-a", &f1, "timeout", 128, Some(3000.0), 80),
        row("proj-a", &f1, "queued", 128, None, 70),
        row("proj-a", &f1, "running", 256, None, 60),
        row("proj-a", &f2, "succeeded", 2048, Some(250.0), 50),
        row("proj-a", &f2, "succeeded", 128, Some(8.0), 40),
    ];
    let bobs = row("proj-b", &bf, "succeeded", 1024, Some(4000.0), 30);
    let mut all = rows.clone();
    all.push(bobs.clone());
    api.db.record(&all);
    Fixture {
        api,
        rows,
        f1,
        f2,
        bobs,
    }
}

fn ids(list: &Value) -> Vec<String> {
    list["executions"]
        .as_array()
        .unwrap_or_else(|| panic!("no executions in {list}"))
        .iter()
        .map(|e| e["id"].as_str().expect("id").to_owned())
        .collect()
}

fn ids_of<'a>(rows: impl IntoIterator<Item = &'a Execution>) -> Vec<String> {
    rows.into_iter().map(|e| e.id.to_string()).collect()
}

#[actix_web::test]
async fn executions_are_listed_filtered_and_paged() {
    let Fixture {
        api,
        rows,
        f1,
        f2,
        bobs,
    } = setup().await;
    // Newest first by default.
    let all = api.send(get("/v1/executions").by(RITA)).await.ok(200);
    assert_eq!(ids(&all), ids_of(rows.iter().rev()));
    assert!(all.get("next").is_none());

    let by_status =
        |status: &str| ids_of(rows.iter().rev().filter(|e| e.status.as_str() == status));
    for (query, expected) in [
        (format!("function_id={f1}"), ids_of(rows[..5].iter().rev())),
        (format!("function_id={f2}"), ids_of(rows[5..].iter().rev())),
        ("status=succeeded".to_owned(), by_status("succeeded")),
        ("status=queued".to_owned(), by_status("queued")),
        ("status=oom".to_owned(), vec![]),
        (
            format!("function_id={f1}&status=succeeded"),
            ids_of(&rows[..1]),
        ),
        (format!("function_id={f2}&status=failed"), vec![]),
        ("sort_dir=desc".to_owned(), ids_of(rows.iter().rev())),
        ("sort_dir=asc".to_owned(), ids_of(&rows)),
        (format!("function_id={}", bobs.function_id), vec![]),
    ] {
        let list = api
            .send(get(&format!("/v1/executions?{query}")).by(ALICE))
            .await
            .ok(200);
        assert_eq!(ids(&list), expected, "{query}");
    }

    // Two at a time, following the links, the filter kept.
    let mut seen = Vec::new();
    let mut path = Some(format!("/v1/executions?limit=2&function_id={f1}"));
    let mut pages = 0;
    while let Some(p) = path {
        let page = api.send(get(&p).by(ALICE)).await.ok(200);
        pages += 1;
        seen.extend(ids(&page));
        path = page["next"]
            .as_str()
            .map(|n| n.strip_prefix(PUBLIC_URL).expect("public url").to_owned());
    }
    assert_eq!((pages, seen), (3, ids_of(rows[..5].iter().rev())));

    // Admins see every project with all_projects, and one with project_id.
    let everything = api
        .send(get("/v1/executions?all_projects=true").by(ADMIN))
        .await
        .ok(200);
    let mut expected = vec![bobs.id.to_string()];
    expected.extend(ids_of(rows.iter().rev()));
    assert_eq!(ids(&everything), expected);
    let only_b = api
        .send(get("/v1/executions?all_projects=true&project_id=proj-b").by(ADMIN))
        .await
        .ok(200);
    assert_eq!(ids(&only_b), [bobs.id.to_string()]);
    assert_eq!(
        ids(&api.send(get("/v1/executions").by(BOB)).await.ok(200)),
        [bobs.id.to_string()]
    );
}

#[actix_web::test]
async fn executions_are_newest_first_and_pages_stay_stable() {
    let api = TestApi::start().await;
    api.runtime("py", json!({})).await;
    let f = api.function(ALICE, "f", "py", json!({})).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    // Nine records, three of them sharing one created_at: the id breaks the tie (their ids
    // are chosen so that neither insertion order nor its reverse is the id order).
    let base = Utc::now() - Duration::seconds(600);
    let mut rows: Vec<Execution> = (0..9)
        .map(|i| {
            let mut e = execution("proj-a", &f);
            e.created_at = base + Duration::seconds(if (3..6).contains(&i) { 3 } else { i });
            match i {
                3 => e.id = uuid::Uuid::from_u128(0xb0),
                4 => e.id = uuid::Uuid::from_u128(0xa0),
                5 => e.id = uuid::Uuid::from_u128(0xc0),
                _ => {}
            }
            e
        })
        .collect();
    api.db.record(&rows);
    let mut newest_first = rows.clone();
    newest_first.sort_by_key(|e| std::cmp::Reverse((e.created_at, e.id)));
    let tie: Vec<usize> = newest_first[3..6]
        .iter()
        .map(|e| rows.iter().position(|r| r.id == e.id).expect("row"))
        .collect();
    assert_eq!(tie, [5, 3, 4]);

    let follow = |first: String| {
        let api = &api;
        async move {
            let mut seen = Vec::new();
            let mut path = Some(first);
            while let Some(p) = path {
                let page = api.send(get(&p).by(ALICE)).await.ok(200);
                seen.extend(ids(&page));
                path = page["next"]
                    .as_str()
                    .map(|n| n.strip_prefix(PUBLIC_URL).expect("public url").to_owned());
            }
            seen
        }
    };
    let whole = ids(&api.send(get("/v1/executions").by(ALICE)).await.ok(200));
    assert_eq!(whole, ids_of(&newest_first));
    assert_eq!(follow("/v1/executions?limit=2".into()).await, whole);
    let mut oldest_first = whole.clone();
    oldest_first.reverse();
    assert_eq!(
        follow("/v1/executions?limit=2&sort_dir=asc".into()).await,
        oldest_first
    );

    // Executions recorded while a user pages do not shift the pages still to come: they
    // are newer than the marker, so they sort before it.
    let first = api
        .send(get("/v1/executions?limit=4").by(ALICE))
        .await
        .ok(200);
    assert_eq!(ids(&first), whole[..4]);
    let mut late = execution("proj-a", &f);
    late.created_at = Utc::now();
    api.db.record(std::slice::from_ref(&late));
    let next = first["next"].as_str().expect("next");
    let rest = follow(
        next.strip_prefix(PUBLIC_URL)
            .expect("public url")
            .to_owned(),
    )
    .await;
    assert_eq!(rest, whole[4..]);
    rows.push(late.clone());
    let now_whole = ids(&api.send(get("/v1/executions").by(ALICE)).await.ok(200));
    assert_eq!(now_whole[0], late.id.to_string());
    assert_eq!(now_whole[1..], whole[..]);
    assert_eq!(rows.len(), 10);

    // A marker is an execution id in the caller's scope; one of another project names
    // nothing in this list (400, as a missing one).
    let bf = api.function(BOB, "bf", "py", json!({})).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let bobs = execution("proj-b", &bf);
    api.db.record(std::slice::from_ref(&bobs));
    for marker in [bobs.id, uuid::Uuid::new_v4()] {
        api.send(get(&format!("/v1/executions?marker={marker}")).by(ALICE))
            .await
            .error(400, "marker does not name an item of this list");
    }
}

#[actix_web::test]
async fn an_execution_shows_its_record_and_log() {
    let Fixture { api, rows, f1, .. } = setup().await;
    let failed = &rows[1];
    let shown = api
        .send(get(&format!("/v1/executions/{}", failed.id)).by(RITA))
        .await
        .ok(200)["execution"]
        .clone();
    let mut expected = json!({
        "id": failed.id, "project_id": "proj-a", "function_id": f1, "function_version": 2, "alias": "live",
        "status": "failed", "is_async": false, "input_size": 8, "result": null,
        "error": {"errorType": "ValueError", "errorMessage": "bad input", "stackTrace": ["main.py:2"]},
        "duration_ms": 500.0, "max_memory_mb": 30.0, "cpu_ms": 4.5, "init_duration_ms": 3.25, "memory_mb": 512, "cold": false,
        "attempts": 1,
    });
    merge(
        &mut expected,
        json!({"created_at": shown["created_at"], "started_at": shown["started_at"], "finished_at": shown["finished_at"]}),
    );
    assert_eq!(shown, expected);
    let created =
        chrono::DateTime::parse_from_rfc3339(shown["created_at"].as_str().expect("created_at"))
            .expect("rfc 3339");
    assert!(
        (created.with_timezone(&Utc) - failed.created_at)
            .num_milliseconds()
            .abs()
            <= 1,
        "{shown}"
    );
    // Neither the input, the spec nor the logs are part of the record.
    for hidden in ["input", "spec", "logs"] {
        assert!(shown.get(hidden).is_none(), "{hidden} shown: {shown}");
    }
    let queued = api
        .send(get(&format!("/v1/executions/{}", rows[3].id)).by(RITA))
        .await
        .ok(200)["execution"]
        .clone();
    assert_eq!(
        (
            &queued["status"],
            &queued["is_async"],
            &queued["started_at"],
            &queued["finished_at"],
            &queued["duration_ms"]
        ),
        (
            &json!("queued"),
            &json!(true),
            &Value::Null,
            &Value::Null,
            &Value::Null
        )
    );

    let log = api
        .send(get(&format!("/v1/executions/{}/log", failed.id)).by(RITA))
        .await;
    assert_eq!(log.status.as_u16(), 200);
    assert_eq!(
        log.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(
        log.text(),
        "Traceback (most recent call last):\nValueError: bad input\n"
    );
}

#[actix_web::test]
async fn only_finished_executions_are_deleted() {
    let Fixture {
        api, rows, bobs, ..
    } = setup().await;
    let path = |e: &Execution| format!("/v1/executions/{}", e.id);
    api.expect_errors(vec![
        (
            delete(&path(&rows[3])).by(ALICE),
            409,
            "execution is queued",
        ),
        (
            delete(&path(&rows[4])).by(ALICE),
            409,
            "execution is running",
        ),
        (
            delete(&path(&rows[0])).by(RITA),
            403,
            "policy does not allow execution:delete to be performed",
        ),
    ])
    .await;
    assert_eq!(api.db.scalar("SELECT count(*) FROM executions"), 8);
    for finished in [&rows[0], &rows[1], &rows[2]] {
        assert_eq!(
            api.send(delete(&path(finished)).by(ALICE)).await.ok(204),
            Value::Null
        );
        api.send(get(&path(finished)).by(ALICE)).await.error(
            404,
            &format!("execution {} could not be found", finished.id),
        );
    }
    api.send(delete(&path(&rows[0])).by(ALICE))
        .await
        .error(404, "could not be found");
    assert_eq!(api.db.scalar("SELECT count(*) FROM executions"), 5);
    api.send(get(&path(&rows[3])).by(ALICE)).await.ok(200);
    api.send(get(&path(&bobs)).by(BOB)).await.ok(200);
}

#[actix_web::test]
async fn usage_counts_by_status_and_gb_seconds() {
    let Fixture { api, .. } = setup().await;
    let usage = api.send(get("/v1/usage").by(RITA)).await.ok(200)["usage"].clone();
    assert_eq!(usage["project_id"], "proj-a");
    assert_eq!(usage["executions"], 7);
    assert_eq!(
        usage["by_status"],
        json!({"succeeded": 3, "failed": 1, "timeout": 1, "queued": 1, "running": 1})
    );
    // 1 GB x 1 s + 0.5 GB x 0.5 s + 0.125 GB x 3 s + 2 GB x 0.25 s + 0.125 GB x 0.008 s
    let expected = 1.0 + 0.25 + 0.375 + 0.5 + 0.001;
    let gb_seconds = usage["gb_seconds"].as_f64().expect("gb_seconds");
    assert!(
        (gb_seconds - expected).abs() < 1e-9,
        "{gb_seconds} != {expected}"
    );

    let admin_view = api
        .send(get("/v1/usage?project_id=proj-b").by(ADMIN))
        .await
        .ok(200)["usage"]
        .clone();
    assert_eq!(
        admin_view,
        json!({"project_id": "proj-b", "executions": 1, "gb_seconds": 4.0, "by_status": {"succeeded": 1}})
    );
    let own = api
        .send(get("/v1/usage?project_id=proj-a").by(ALICE))
        .await
        .ok(200)["usage"]
        .clone();
    assert_eq!(own, usage);
    let empty = api.send(get("/v1/usage").by(ADMIN)).await.ok(200)["usage"].clone();
    assert_eq!(
        empty,
        json!({"project_id": "admin", "executions": 0, "gb_seconds": 0.0, "by_status": {}})
    );
    api.send(get("/v1/usage?project_id=proj-b").by(ALICE))
        .await
        .error(403, "policy does not allow usage:show to be performed");

    // Queued and running executions are the project's executions in flight.
    let quota = api.quota("proj-a").await;
    assert_eq!(
        quota["concurrent_executions"],
        json!({"limit": 100, "in_use": 2})
    );
}
