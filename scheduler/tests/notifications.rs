//! Notification triggers against the real PostgreSQL: a notification queues one execution per
//! matching enabled trigger of its own project only; delivered again it queues nothing new; a
//! former leader's enqueue is refused (the consumer then leaves it unacknowledged).

mod support;

use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use fresco_scheduler::leader::{Fence, LeaseConfig, LeaseConnection};
use fresco_store::queue::{Notification, Store};
use serde_json::{json, Map, Value};
use support::*;
use uuid::Uuid;

/// A runtime, function `f` with code in projects p1 and p2, and notification triggers:
/// p1 `compute` (compute.instance.create.end), p1 `volumes` (volume.*), p1 `off` (disabled,
/// compute.*), p2 `compute` (compute.*).
fn setup(conn: &mut PgConnection) {
    conn.batch_execute(&format!(
        "INSERT INTO runtimes (id, name, image, kind, project_id) \
         VALUES ('{}', 'py', 'fresco/python3:test', 'python', 'admin'); \
         INSERT INTO code_packages (project_id, sha256, format, size, content) \
         VALUES ('p1', 'abc', 'zip', 1, '\\x00'), ('p2', 'abc', 'zip', 1, '\\x00'); \
         INSERT INTO functions (id, project_id, name, runtime_id, handler, memory_mb, timeout_s, code_sha256) \
         SELECT gen_random_uuid(), p, 'f', r.id, 'main.handler', 128, 3, 'abc' \
         FROM runtimes r, (VALUES ('p1'), ('p2')) AS projects (p); \
         INSERT INTO triggers (id, project_id, name, kind, function_id, event_types, enabled, input) \
         SELECT gen_random_uuid(), f.project_id, t.name, 'notification', f.id, t.types, t.enabled, \
                '{{\"fixed\": 1}}' \
         FROM functions f JOIN (VALUES \
             ('p1', 'compute', ARRAY['compute.instance.create.end'], true), \
             ('p1', 'volumes', ARRAY['volume.*'], true), \
             ('p1', 'off', ARRAY['compute.*'], false), \
             ('p2', 'compute', ARRAY['compute.*'], true)) \
           AS t (project, name, types, enabled) ON t.project = f.project_id;",
        Uuid::new_v4()
    ))
    .expect("setup");
}

fn scalar(conn: &mut PgConnection, sql: &str) -> i64 {
    #[derive(QueryableByName)]
    struct N {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    diesel::sql_query(sql)
        .get_result::<N>(conn)
        .expect("count")
        .n
}

fn notification(project: &str, event_type: &str, message_id: &str) -> Notification {
    let mut event = Map::new();
    event.insert("event_type".into(), json!(event_type));
    event.insert("payload".into(), json!({"tenant_id": project}));
    event.insert("fixed".into(), json!(2));
    Notification {
        project_id: project.into(),
        event_type: event_type.into(),
        message_id: message_id.into(),
        event,
    }
}

async fn lead(db: &TestDb, holder: &str) -> (LeaseConnection, Fence, LeaseConfig) {
    let config = LeaseConfig {
        database_url: db.url.clone(),
        lease: Duration::from_secs(30),
        interval: Duration::from_millis(100),
    };
    let connection = LeaseConnection::open(&config).await.expect("connect");
    let epoch = loop {
        if let Some(epoch) = connection.try_acquire(holder, &config).await.expect("try") {
            break epoch;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    (
        connection,
        Fence {
            holder: holder.into(),
            epoch,
        },
        config,
    )
}

async fn fire(store: &Store, fence: &Fence, n: Notification) -> Result<usize, String> {
    let (store, fence) = (store.clone(), fence.clone());
    tokio::task::spawn_blocking(move || store.fire_notification(&fence, &n))
        .await
        .expect("task")
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_fire_their_projects_matching_triggers_once() {
    let db = TestDb::create();
    let mut conn = db.conn();
    setup(&mut conn);
    let (_lease, fence, _) = lead(&db, "a").await;
    let store =
        Store::connect(&db.url, 4, Duration::from_secs(5), Duration::from_secs(5)).expect("store");

    // p1's create.end: p1's `compute` only (not the disabled one, not p2's).
    let create = notification("p1", "compute.instance.create.end", "m-1");
    assert_eq!(fire(&store, &fence, create.clone()).await, Ok(1));
    // Delivered again (the ack was lost): nothing new.
    assert_eq!(fire(&store, &fence, create).await, Ok(0));
    // A volume event of p1: `volumes`; an event nothing matches: nothing.
    assert_eq!(
        fire(
            &store,
            &fence,
            notification("p1", "volume.create.end", "m-2")
        )
        .await,
        Ok(1)
    );
    assert_eq!(
        fire(
            &store,
            &fence,
            notification("p1", "image.upload.end", "m-3")
        )
        .await,
        Ok(0)
    );
    // p2's create.end: p2's trigger only; a project without triggers: nothing.
    assert_eq!(
        fire(
            &store,
            &fence,
            notification("p2", "compute.instance.create.end", "m-4")
        )
        .await,
        Ok(1)
    );
    assert_eq!(
        fire(
            &store,
            &fence,
            notification("p3", "compute.instance.create.end", "m-5")
        )
        .await,
        Ok(0)
    );
    #[derive(QueryableByName, Debug)]
    struct Row {
        #[diesel(sql_type = Text)]
        project_id: String,
        #[diesel(sql_type = Text)]
        name: String,
        #[diesel(sql_type = Text)]
        event: String,
    }
    let rows: Vec<Row> = diesel::sql_query(
        "SELECT e.project_id, t.name, convert_from(e.input, 'UTF8') AS event \
         FROM executions e JOIN triggers t ON t.id = e.trigger_id \
         WHERE e.is_async AND e.status = 'queued' ORDER BY e.created_at",
    )
    .load(&mut conn)
    .expect("rows");
    let seen: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r.project_id.as_str(), r.name.as_str()))
        .collect();
    assert_eq!(
        seen,
        vec![("p1", "compute"), ("p1", "volumes"), ("p2", "compute")]
    );
    for row in &rows {
        let event: Value = serde_json::from_str(&row.event).expect("json");
        assert_eq!(event["payload"]["tenant_id"], row.project_id.as_str());
        assert_eq!(
            event["fixed"], 2,
            "the notification wins over the fixed input"
        );
        assert_eq!(event["trigger"]["type"], "notification");
    }
}

/// A batch is one transaction: every notification of it queued (each project's triggers, a
/// duplicate inside the batch once), and a batch delivered again queues nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_queues_each_notification_once() {
    let db = TestDb::create();
    let mut conn = db.conn();
    setup(&mut conn);
    let (_lease, fence, _) = lead(&db, "a").await;
    let store =
        Store::connect(&db.url, 4, Duration::from_secs(5), Duration::from_secs(5)).expect("store");
    let batch = vec![
        notification("p1", "compute.instance.create.end", "b-1"),
        notification("p2", "compute.instance.create.end", "b-2"),
        notification("p1", "volume.create.end", "b-3"),
        notification("p1", "compute.instance.create.end", "b-1"),
        notification("p3", "compute.instance.create.end", "b-4"),
        notification("p1", "image.upload.end", "b-5"),
    ];
    let fire_all = |batch: Vec<Notification>| {
        let (store, fence) = (store.clone(), fence.clone());
        tokio::task::spawn_blocking(move || store.fire_notifications(&fence, &batch))
    };
    assert_eq!(
        fire_all(batch.clone()).await.expect("task").expect("fired"),
        3
    );
    assert_eq!(fire_all(batch).await.expect("task").expect("fired"), 0);
    assert_eq!(
        scalar(
            &mut conn,
            "SELECT count(*) AS n FROM executions WHERE is_async AND status = 'queued'"
        ),
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_former_leader_queues_nothing() {
    let db = TestDb::create();
    let mut conn = db.conn();
    setup(&mut conn);
    let (lease, old, _) = lead(&db, "a").await;
    let store =
        Store::connect(&db.url, 4, Duration::from_secs(5), Duration::from_secs(5)).expect("store");
    // "a" resigns; "b" leads a new term.
    assert!(lease.resign("a", old.epoch).await.expect("resign"));
    drop(lease);
    let (_new_lease, new, _) = lead(&db, "b").await;
    let refused = fire(
        &store,
        &old,
        notification("p1", "compute.instance.create.end", "m-1"),
    )
    .await;
    assert!(refused.is_err_and(|e| e.contains("not the leader")));
    assert_eq!(scalar(&mut conn, "SELECT count(*) AS n FROM executions"), 0);
    // The new leader's delivery of the same notification queues it.
    assert_eq!(
        fire(
            &store,
            &new,
            notification("p1", "compute.instance.create.end", "m-1")
        )
        .await,
        Ok(1)
    );
}
