//! `/v1/agents`: the compute agents as the scheduler recorded them (admin only).

use serde_json::json;

use crate::common::*;

#[actix_web::test]
async fn admins_list_agents_with_stale_ones_shown_down() {
    let api = TestApi::start().await;
    assert_eq!(
        api.send(get("/v1/agents").by(ADMIN)).await.ok(200),
        json!({"agents": []})
    );
    api.db.execute(
        "INSERT INTO agents (id, host, url, state, memory_mb_total, memory_mb_reserved, cpus, running, warm, images, version, last_heartbeat)
         VALUES ('agent-b', 'compute-2', 'https://compute-2:8902', 'up', 16384, 2048, 8, 3,
                 '[{\"function_id\": \"f\", \"count\": 2}]', '[\"fresco/python3:1\"]', '0.1.0', now()),
                ('agent-a', 'compute-1', 'https://compute-1:8902', 'up', 8192, 0, 4, 0, '[]', '[]', '0.1.0',
                 now() - interval '1 hour'),
                ('agent-c', 'compute-3', 'https://compute-3:8902', 'down', 4096, 0, 2, 0, '[]', '[]', '0.0.9', now())",
    );
    let list = api.send(get("/v1/agents").by(ADMIN)).await.ok(200);
    let agents = list["agents"].as_array().expect("agents");
    let ids: Vec<&str> = agents
        .iter()
        .map(|a| a["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, ["agent-a", "agent-b", "agent-c"]);
    let b = &agents[1];
    let mut expected = json!({
        "id": "agent-b", "host": "compute-2", "url": "https://compute-2:8902", "state": "up",
        "memory_mb_total": 16384, "memory_mb_reserved": 2048, "cpus": 8, "running": 3,
        "warm": [{"function_id": "f", "count": 2}], "images": ["fresco/python3:1"], "version": "0.1.0",
    });
    merge(
        &mut expected,
        json!({"last_heartbeat": b["last_heartbeat"]}),
    );
    assert_eq!(b, &expected);
    let heartbeat = b["last_heartbeat"].as_str().expect("last_heartbeat");
    assert!(
        chrono::DateTime::parse_from_rfc3339(heartbeat).is_ok(),
        "{heartbeat}"
    );
    // An agent whose heartbeat is older than [scheduler] agent_down_time shows as down even
    // while its row still says up; a down one stays down.
    assert_eq!(
        (&agents[0]["state"], &agents[2]["state"]),
        (&json!("down"), &json!("down"))
    );

    api.expect_errors(vec![
        (
            get("/v1/agents").by(ALICE),
            403,
            "policy does not allow agent:list to be performed",
        ),
        (
            get("/v1/agents").by(RITA),
            403,
            "policy does not allow agent:list to be performed",
        ),
        (get("/v1/agents"), 401, "authentication required"),
    ])
    .await;
}
