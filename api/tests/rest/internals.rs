//! What tenants see of the platform (issue 9, hole 4): which agent ran an execution and the
//! platform's own error text — naming agents and their URLs — reach only callers of the
//! `execution:show_platform_details` rule (cloud admins, system readers). Everyone else gets
//! no `agent_id` and a generic message for platform errors; the function's own errors stay.
//!
//! On main every member saw both.

use serde_json::{json, Value};

use fresco_store::ExecutionStatus;

use crate::common::*;

const GENERIC: &str = "the platform could not run the execution; an administrator can see why";
/// A project's own admin: no cloud admin, so no platform details either.
const PROJECT_ADMIN: &str = "pat:proj-a:admin";

fn shown(body: &Value) -> &Value {
    &body["execution"]
}

#[actix_web::test]
async fn members_see_no_agent_nor_platform_error_text() {
    let api = TestApi::start().await;
    api.runtime("py", json!({})).await;
    let f = api.function(ALICE, "f", "py", json!({})).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    // Written as the scheduler, the API and the agent record platform failures.
    let scheduler_detail =
        "agent node-7 failed: error sending request for url (http://10.0.0.7:8902/v1/run) (gave up after 3 attempts)";
    let mut by_scheduler = execution("proj-a", &f);
    by_scheduler.status = ExecutionStatus::Error;
    by_scheduler.result = None;
    by_scheduler.agent_id = Some("node-7".into());
    by_scheduler.error =
        Some(json!({"errorType": "PlatformError", "errorMessage": scheduler_detail}));
    let mut by_api = execution("proj-a", &f);
    by_api.status = ExecutionStatus::Error;
    by_api.result = None;
    by_api.agent_id = Some("node-8".into());
    by_api.error = Some(json!({"errorType": "Platform.AgentError",
        "errorMessage": "agent node-8 answered 500 Internal Server Error: docker daemon at unix:///var/run/docker.sock"}));
    let mut by_agent = execution("proj-a", &f);
    by_agent.status = ExecutionStatus::Error;
    by_agent.result = None;
    by_agent.error = Some(json!({"errorType": "Platform.CodeUnavailable",
        "errorMessage": "code download failed: http://api.internal:8900/internal/v1/code/ab answered 401",
        "stackTrace": ["internal frame"]}));
    // The function's own error is the tenant's to read.
    let mut own = execution("proj-a", &f);
    own.status = ExecutionStatus::Failed;
    own.result = None;
    own.error = Some(
        json!({"errorType": "ValueError", "errorMessage": "bad input", "stackTrace": ["main.py:2"]}),
    );
    let rows = [by_scheduler, by_api, by_agent, own];
    api.db.record(&rows);

    for who in [ALICE, RITA, PROJECT_ADMIN] {
        for row in &rows[..3] {
            let body = api
                .send(get(&format!("/v1/executions/{}", row.id)).by(who))
                .await
                .ok(200);
            let e = shown(&body);
            assert!(e.get("agent_id").is_none(), "{who}: {e}");
            assert_eq!(e["error"]["errorMessage"], GENERIC, "{who}: {e}");
            assert_eq!(
                e["error"]["errorType"],
                row.error.as_ref().expect("error")["errorType"],
                "the kind of failure stays visible"
            );
            assert!(e["error"].get("stackTrace").is_none(), "{who}: {e}");
        }
        let listed = api.send(get("/v1/executions").by(who)).await.ok(200);
        let text = listed.to_string();
        for secret in [
            "node-7",
            "node-8",
            "agent-1",
            "10.0.0.7",
            "docker.sock",
            "api.internal",
        ] {
            assert!(!text.contains(secret), "{who} sees {secret}: {text}");
        }
        let own = api
            .send(get(&format!("/v1/executions/{}", rows[3].id)).by(who))
            .await
            .ok(200);
        assert_eq!(shown(&own)["error"]["errorMessage"], "bad input");
        assert_eq!(shown(&own)["error"]["stackTrace"], json!(["main.py:2"]));
    }

    // The cloud admin sees it all.
    for (i, expected_agent) in [
        (0, json!("node-7")),
        (1, json!("node-8")),
        (2, json!("agent-1")),
    ] {
        let body = api
            .send(get(&format!("/v1/executions/{}?all_projects=true", rows[i].id)).by(ADMIN))
            .await
            .ok(200);
        assert_eq!(shown(&body)["agent_id"], expected_agent);
        assert_eq!(
            shown(&body)["error"],
            rows[i].error.clone().expect("error"),
            "the detail, whole"
        );
    }
    let listed = api
        .send(get("/v1/executions?all_projects=true").by(ADMIN))
        .await
        .ok(200);
    assert!(listed.to_string().contains("10.0.0.7"), "{listed}");
}
