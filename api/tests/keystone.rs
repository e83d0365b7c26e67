//! fresco-api in `auth_strategy = keystone` mode against the REAL Keystone and the REAL
//! PostgreSQL: authentication (401, revocation, expiry, Keystone outages), the policy of every
//! route for every persona, tenancy between two projects, policy overrides, quotas and the
//! cost of authentication.
//!
//! Needs (nothing is skipped; a missing piece fails with how to provide it):
//! - Keystone started and seeded: `bash tools/lib/keystone.sh start && bash tools/lib/keystone.sh seed`
//!   (credentials from `$FRESCO_KEYSTONE_ENV`, default `.state/keystone/credentials.env`);
//! - PostgreSQL: `FRESCO_TEST_DATABASE_URL=postgresql://fresco:fresco-dev@127.0.0.1:5439/fresco`;
//! - `openssl` (a throwaway ticket signing key, so invocations are configured).

mod keystone_support;

use std::time::{Duration, Instant};

use fresco_auth::policy::DEFAULT_RULES;
use futures_util::future::join_all;
use keystone_support::{
    delete_application_credential, env, fresh_token, function_upload, keystone_verdict, revoke,
    short_lived_token, token, unscoped_token, zip_package, Api, Options, Persona, Project, Reply,
    Req, SecondKeystone, WWW_AUTHENTICATE_URI,
};
use serde_json::{json, Value};
use uuid::Uuid;

use Persona::{
    AdminA, AdminB, CloudAdmin, MemberA, MemberB, ReaderA, ReaderB, SystemAdmin, SystemReader,
};

// --- Fixture ------------------------------------------------------------------------------------

/// Objects of project A (and a few of B) created through the API with real tokens.
struct Fixture {
    a: String,
    b: String,
    /// A public runtime (id and name).
    rt_public: String,
    /// A's private runtime (id and name).
    rt_private: String,
    rt_private_name: String,
    /// A runtime nothing uses, to delete.
    rt_spare: String,
    /// A's function: code, version 1, alias `live`, one queued execution.
    fn_a: String,
    fn_a_name: String,
    code_sha: String,
    /// A's function to delete.
    fn_spare: String,
    exec_a: String,
    fn_b: String,
    exec_b: String,
    /// A's post hook attached by A's admin, and one attached to A by the cloud admin.
    hook_a: String,
    hook_cloud: String,
}

fn id_of(value: &Value, kind: &str) -> String {
    value[kind]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no {kind}.id in {value}"))
        .to_owned()
}

impl Fixture {
    async fn create(api: &Api) -> Fixture {
        let a = env().project_id(Project::A).to_owned();
        let b = env().project_id(Project::B).to_owned();
        let runtime = |body: Value| async move {
            id_of(
                &api.call(CloudAdmin, Req::post("/v1/runtimes").json(&body))
                    .await
                    .ok(201),
                "runtime",
            )
        };
        let rt_public = runtime(
            json!({"name": "python-public", "image": "fresco/python3:test", "kind": "python"}),
        )
        .await;
        let rt_private_name = "python-private-a".to_owned();
        let rt_private = runtime(
            json!({"name": rt_private_name, "image": "fresco/python3:test",
            "kind": "python", "is_public": false, "project_id": a}),
        )
        .await;
        let rt_spare =
            runtime(json!({"name": "spare", "image": "fresco/python3:test", "kind": "python"}))
                .await;

        let fn_a_name = "only-in-a".to_owned();
        let created = Self::function(api, MemberA, &fn_a_name, &rt_public).await;
        let fn_a = id_of(&created, "function");
        let code_sha = created["function"]["code"]["sha256"]
            .as_str()
            .expect("code sha256")
            .to_owned();
        let fn_spare = id_of(
            &api.call(
                MemberA,
                Req::post("/v1/functions").json(&json!({"name": "spare-a", "runtime": rt_public})),
            )
            .await
            .ok(201),
            "function",
        );
        api.call(
            MemberA,
            Req::post(&format!("/v1/functions/{fn_a}/versions")),
        )
        .await
        .ok(201);
        api.call(
            MemberA,
            Req::post(&format!("/v1/functions/{fn_a}/aliases"))
                .json(&json!({"name": "live", "version": 1})),
        )
        .await
        .ok(201);
        let exec_a = Self::async_invoke(api, MemberA, &fn_a).await;

        let fn_b = id_of(
            &Self::function(api, MemberB, "only-in-b", &rt_public).await,
            "function",
        );
        api.call(
            MemberB,
            Req::post(&format!("/v1/functions/{fn_b}/versions")),
        )
        .await
        .ok(201);
        let exec_b = Self::async_invoke(api, MemberB, &fn_b).await;
        // Post hooks: they run after a sync invocation's answer only, so the invocation rows
        // (no scheduler) answer as without them.
        let hook = |who: Persona, body: Value| async move {
            id_of(
                &api.call(who, Req::post("/v1/hooks").json(&body))
                    .await
                    .ok(201),
                "hook",
            )
        };
        let hook_a = hook(AdminA, json!({"kind": "post", "function": fn_a})).await;
        let hook_cloud = hook(
            CloudAdmin,
            json!({"kind": "post", "function": fn_a, "project_id": a}),
        )
        .await;
        Fixture {
            a,
            b,
            rt_public,
            rt_private,
            rt_private_name,
            rt_spare,
            fn_a,
            fn_a_name,
            code_sha,
            fn_spare,
            exec_a,
            fn_b,
            exec_b,
            hook_a,
            hook_cloud,
        }
    }

    async fn function(api: &Api, who: Persona, name: &str, runtime: &str) -> Value {
        let (content_type, body) = function_upload(
            &json!({"name": name, "runtime": runtime}),
            &zip_package(name),
        );
        api.call(who, Req::post("/v1/functions").body(&content_type, body))
            .await
            .ok(201)
    }

    /// Queues an execution (no scheduler needed): its id.
    async fn async_invoke(api: &Api, who: Persona, function: &str) -> String {
        id_of(
            &api.call(
                who,
                Req::post(&format!("/v1/functions/{function}/invoke?async=true"))
                    .json(&json!({"hello": "world"})),
            )
            .await
            .ok(202),
            "execution",
        )
    }

    /// `text` with the fixture's placeholders replaced; `{persona}` is `who`'s slug.
    fn fill(&self, text: &str, who: Persona) -> String {
        let pairs: [(&str, &str); 13] = [
            ("{hook_cloud}", &self.hook_cloud),
            ("{hook}", &self.hook_a),
            ("{A}", &self.a),
            ("{B}", &self.b),
            ("{rt_public}", &self.rt_public),
            ("{rt_private}", &self.rt_private),
            ("{rt_spare}", &self.rt_spare),
            ("{fn_spare}", &self.fn_spare),
            ("{fn}", &self.fn_a),
            ("{exec}", &self.exec_a),
            ("{sha}", &self.code_sha),
            ("{persona}", who.slug()),
            ("{missing}", "00000000-0000-4000-8000-000000000000"),
        ];
        let mut out = text.to_owned();
        for (from, to) in pairs {
            out = out.replace(from, to);
        }
        out
    }
}

/// The ids in a list answer.
fn ids(list: &Value, plural: &str) -> Vec<String> {
    list[plural]
        .as_array()
        .unwrap_or_else(|| panic!("no {plural} array in {list}"))
        .iter()
        .map(|item| item["id"].as_str().expect("item id").to_owned())
        .collect()
}

// --- 1. Every route × persona ------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq)]
enum Expect {
    /// 403, the message naming the row's rule.
    Deny,
    /// 403 by a rule checked before the row's (the message names it).
    DenyBy(&'static str),
    /// Policy passed; the call then answers exactly this.
    Is(u16),
}
use Expect::{Deny, DenyBy, Is};

#[derive(Clone, Copy)]
enum Body {
    Empty,
    Json(&'static str),
    Zip,
}

/// No Keystone policy guards the route (discovery; the agents' internal route).
const NO_RULE: &str = "-";

struct Row {
    method: &'static str,
    /// With fixture placeholders (`{fn}`, `{A}`, ...; see `Fixture::fill`).
    path: &'static str,
    body: Body,
    rule: &'static str,
    /// For `PERSONAS`, in order.
    expect: [Expect; 7],
}

/// Reader, member and admin of project A (A's own administrator, not the cloud's), member of
/// project B, the cloud admin (admin role on the cloud admin project), and the system-scoped
/// admin and reader.
const PERSONAS: [Persona; 7] = [
    ReaderA,
    MemberA,
    AdminA,
    MemberB,
    CloudAdmin,
    SystemAdmin,
    SystemReader,
];

const fn row(
    method: &'static str,
    path: &'static str,
    body: Body,
    rule: &'static str,
    expect: [Expect; 7],
) -> Row {
    Row {
        method,
        path,
        body,
        rule,
        expect,
    }
}

/// Every route of `api/src/http/handlers/mod.rs` for every persona of `PERSONAS`. Rows run in
/// order (a later row sees the earlier rows' changes); `{fn}`, `{exec}`, `{rt_private}` belong
/// to project A, so B's member — and the cloud admin, scoped to its own project without
/// `all_projects=true` — get 404 there; the system-scoped personas have no project of their
/// own and reach every project's objects their rules allow.
///
/// Secure RBAC (issue 9): A's admin administers A only — 403 on every cloud-wide route
/// (runtime management, `all_projects`, other projects' quotas and usage, quota changes,
/// agents) and 200 in its own project; on main it was a cloud admin.
#[rustfmt::skip]
const ROWS: &[Row] = &[
    // Discovery, no token needed (sent with one anyway).
    row("GET", "/", Body::Empty, NO_RULE, [Is(200), Is(200), Is(200), Is(200), Is(200), Is(200), Is(200)]),
    row("GET", "/v1", Body::Empty, NO_RULE, [Is(200), Is(200), Is(200), Is(200), Is(200), Is(200), Is(200)]),
    row("GET", "/v1/", Body::Empty, NO_RULE, [Is(200), Is(200), Is(200), Is(200), Is(200), Is(200), Is(200)]),
    row("GET", "/healthcheck", Body::Empty, NO_RULE, [Is(200), Is(200), Is(200), Is(200), Is(200), Is(200), Is(200)]),
    // Prometheus metrics: aggregate figures, no token needed.
    row("GET", "/metrics", Body::Empty, NO_RULE, [Is(200), Is(200), Is(200), Is(200), Is(200), Is(200), Is(200)]),
    // Agents' code downloads need an execution ticket and the agent's own token: a Keystone
    // token opens nothing.
    row("GET", "/internal/v1/code/{sha}", Body::Empty, NO_RULE, [Is(401), Is(401), Is(401), Is(401), Is(401), Is(401), Is(401)]),
    // Runtimes.
    row("GET", "/v1/runtimes", Body::Empty, "runtime:list", [Is(200), Is(200), Is(200), Is(200), Is(200), Is(200), Is(200)]),
    row("GET", "/v1/runtimes?all_projects=true", Body::Empty, "all_projects", [Deny, Deny, Deny, Deny, Is(200), Is(200), Is(200)]),
    row("POST", "/v1/runtimes", Body::Json(r#"{"name": "rt-{persona}", "image": "fresco/python3:test", "kind": "python"}"#),
        "runtime:create", [Deny, Deny, Deny, Deny, Is(201), Is(201), Deny]),
    row("GET", "/v1/runtimes/{rt_public}", Body::Empty, "runtime:show", [Is(200), Is(200), Is(200), Is(200), Is(200), Is(200), Is(200)]),
    row("GET", "/v1/runtimes/{rt_private}", Body::Empty, "runtime:show", [Is(200), Is(200), Is(200), Is(404), Is(404), Is(200), Is(200)]),
    row("PATCH", "/v1/runtimes/{rt_public}", Body::Json(r#"{"description": "patched by {persona}"}"#),
        "runtime:update", [Deny, Deny, Deny, Deny, Is(200), Is(200), Deny]),
    row("DELETE", "/v1/runtimes/{rt_spare}", Body::Empty, "runtime:delete", [Deny, Deny, Deny, Deny, Is(204), Is(404), Deny]),
    // Functions.
    row("GET", "/v1/functions", Body::Empty, "function:list", [Is(200), Is(200), Is(200), Is(200), Is(200), Is(200), Is(200)]),
    row("GET", "/v1/functions?all_projects=true", Body::Empty, "all_projects", [Deny, Deny, Deny, Deny, Is(200), Is(200), Is(200)]),
    // A system-scoped token has no project to create a function in.
    row("POST", "/v1/functions", Body::Json(r#"{"name": "fn-{persona}", "runtime": "{rt_public}"}"#),
        "function:create", [Deny, Is(201), Is(201), Is(201), Is(201), Is(403), Deny]),
    // A function's own image, within [api] allowed_image_prefixes: the admin of the project it
    // is created in, or a cloud admin (a system-scoped admin has no project to create it in).
    row("POST", "/v1/functions", Body::Json(r#"{"name": "img-{persona}", "image": "registry.example/fn/tool:1"}"#),
        "function:create:custom_image", [DenyBy("function:create"), Deny, Is(201), Deny, Is(201), Is(403), DenyBy("function:create")]),
    row("GET", "/v1/functions/{fn}", Body::Empty, "function:show", [Is(200), Is(200), Is(200), Is(404), Is(404), Is(200), Is(200)]),
    row("PATCH", "/v1/functions/{fn}", Body::Json(r#"{"description": "patched by {persona}"}"#),
        "function:update", [Deny, Is(200), Is(200), Is(404), Is(404), Is(200), Deny]),
    row("PUT", "/v1/functions/{fn}/code", Body::Zip, "function:update", [Deny, Is(200), Is(200), Is(404), Is(404), Is(200), Deny]),
    row("GET", "/v1/functions/{fn}/code", Body::Empty, "function:download", [Is(200), Is(200), Is(200), Is(404), Is(404), Is(200), Is(200)]),
    // No scheduler runs: 503 once authorized and resolved.
    row("POST", "/v1/functions/{fn}/invoke", Body::Json(r#"{"n": 1}"#), "function:invoke",
        [Deny, Is(503), Is(503), Is(404), Is(404), Is(503), Deny]),
    row("POST", "/v1/functions/{fn}/invoke?async=true", Body::Json(r#"{"n": 2}"#), "function:invoke",
        [Deny, Is(202), Is(202), Is(404), Is(404), Is(202), Deny]),
    row("DELETE", "/v1/functions/{fn_spare}", Body::Empty, "function:delete", [Deny, Is(204), Is(404), Is(404), Is(404), Is(404), Deny]),
    // Versions (the fixture published version 1; MemberA, AdminA and SystemAdmin publish 2, 3, 4).
    row("GET", "/v1/functions/{fn}/versions", Body::Empty, "function_version:list", [Is(200), Is(200), Is(200), Is(404), Is(404), Is(200), Is(200)]),
    row("POST", "/v1/functions/{fn}/versions", Body::Empty, "function_version:create", [Deny, Is(201), Is(201), Is(404), Is(404), Is(201), Deny]),
    row("GET", "/v1/functions/{fn}/versions/1", Body::Empty, "function_version:show", [Is(200), Is(200), Is(200), Is(404), Is(404), Is(200), Is(200)]),
    row("DELETE", "/v1/functions/{fn}/versions/2", Body::Empty, "function_version:delete", [Deny, Is(204), Is(404), Is(404), Is(404), Is(404), Deny]),
    // Aliases (the fixture made `live`).
    row("GET", "/v1/functions/{fn}/aliases", Body::Empty, "function_alias:list", [Is(200), Is(200), Is(200), Is(404), Is(404), Is(200), Is(200)]),
    row("POST", "/v1/functions/{fn}/aliases", Body::Json(r#"{"name": "al-{persona}", "version": 1}"#),
        "function_alias:create", [Deny, Is(201), Is(201), Is(404), Is(404), Is(201), Deny]),
    row("GET", "/v1/functions/{fn}/aliases/live", Body::Empty, "function_alias:show", [Is(200), Is(200), Is(200), Is(404), Is(404), Is(200), Is(200)]),
    row("PATCH", "/v1/functions/{fn}/aliases/live", Body::Json(r#"{"description": "patched by {persona}"}"#),
        "function_alias:update", [Deny, Is(200), Is(200), Is(404), Is(404), Is(200), Deny]),
    row("DELETE", "/v1/functions/{fn}/aliases/al-{persona}", Body::Empty, "function_alias:delete",
        [Deny, Is(204), Is(204), Is(404), Is(404), Is(204), Deny]),
    row("GET", "/v1/functions/{fn}/aliases/live/comparison", Body::Empty, "function_alias:comparison",
        [Is(200), Is(200), Is(200), Is(404), Is(404), Is(200), Is(200)]),
    // Async invocation config and dead letters (none yet: a replay finds no letter).
    row("PUT", "/v1/functions/{fn}/event-config", Body::Json(r#"{"max_attempts": 2, "dead_letter": true}"#),
        "function_event_config:update", [Deny, Is(200), Is(200), Is(404), Is(404), Is(200), Deny]),
    row("GET", "/v1/functions/{fn}/event-config", Body::Empty, "function_event_config:show", [Is(200), Is(200), Is(200), Is(404), Is(404), Is(200), Is(200)]),
    row("DELETE", "/v1/functions/{fn}/event-config", Body::Empty, "function_event_config:delete",
        [Deny, Is(204), Is(404), Is(404), Is(404), Is(404), Deny]),
    row("GET", "/v1/functions/{fn}/dead-letters", Body::Empty, "function_dead_letter:list", [Is(200), Is(200), Is(200), Is(404), Is(404), Is(200), Is(200)]),
    row("POST", "/v1/functions/{fn}/dead-letters/{missing}/replay", Body::Empty, "function_dead_letter:replay",
        [Deny, Is(404), Is(404), Is(404), Is(404), Is(404), Deny]),
    // Triggers, on A's function; B's member and the cloud admin (in its own project) find it not.
    row("POST", "/v1/triggers", Body::Json(r#"{"name": "tr-{persona}", "type": "webhook", "function": "{fn}"}"#),
        "trigger:create", [Deny, Is(201), Is(201), Is(404), Is(404), Is(201), Deny]),
    row("GET", "/v1/triggers", Body::Empty, "trigger:list", [Is(200), Is(200), Is(200), Is(200), Is(200), Is(200), Is(200)]),
    row("GET", "/v1/triggers/tr-a-member", Body::Empty, "trigger:show", [Is(200), Is(200), Is(200), Is(404), Is(404), Is(200), Is(200)]),
    row("PATCH", "/v1/triggers/tr-a-member", Body::Json(r#"{"description": "patched by {persona}"}"#),
        "trigger:update", [Deny, Is(200), Is(200), Is(404), Is(404), Is(200), Deny]),
    row("DELETE", "/v1/triggers/tr-{persona}", Body::Empty, "trigger:delete", [Deny, Is(204), Is(204), Is(404), Is(404), Is(204), Deny]),
    // Hooks. A project's admin attaches hooks to its own project; attaching one to another
    // project is the cloud's (hook:manage_cloud), and so is removing a hook of the cloud. The
    // cloud admin names A's function by id; in its own project it finds no hook of A's.
    row("POST", "/v1/hooks", Body::Json(r#"{"kind": "post", "function": "{fn}", "project_id": "{A}", "description": "by {persona}"}"#),
        "hook:create", [Deny, Deny, Is(201), Deny, Is(201), Is(201), Deny]),
    row("POST", "/v1/hooks", Body::Json(r#"{"kind": "post", "function": "{fn}", "project_id": "{B}"}"#),
        "hook:manage_cloud", [DenyBy("hook:create"), DenyBy("hook:create"), Deny, DenyBy("hook:create"), Is(201), Is(201), DenyBy("hook:create")]),
    row("GET", "/v1/hooks", Body::Empty, "hook:list", [Is(200), Is(200), Is(200), Is(200), Is(200), Is(200), Is(200)]),
    row("GET", "/v1/hooks/{hook}", Body::Empty, "hook:show", [Is(200), Is(200), Is(200), Is(404), Is(404), Is(200), Is(200)]),
    // Which fields the answer holds is `hooks_show_their_internals_to_who_manages_them`'s part.
    row("GET", "/v1/hooks/{hook}", Body::Empty, "hook:show_internals", [Is(200), Is(200), Is(200), Is(404), Is(404), Is(200), Is(200)]),
    // A's admin may not remove the cloud's hook of A (403, not a policy refusal).
    row("DELETE", "/v1/hooks/{hook_cloud}", Body::Empty, "hook:delete", [Deny, Deny, Is(403), Deny, Is(404), Is(204), Deny]),
    row("DELETE", "/v1/hooks/{hook}", Body::Empty, "hook:delete", [Deny, Deny, Is(204), Deny, Is(404), Is(404), Deny]),
    // Pipelines: a definition names functions of the caller's own project only, so another
    // project's member (and a token with no project) gets a 400 naming the step.
    row("POST", "/v1/pipelines", Body::Json(r#"{"name": "pl-{persona}", "steps": [{"name": "s", "function": "{fn}"}]}"#),
        "pipeline:create", [Deny, Is(201), Is(201), Is(400), Is(400), Is(400), Deny]),
    row("GET", "/v1/pipelines", Body::Empty, "pipeline:list", [Is(200), Is(200), Is(200), Is(200), Is(200), Is(200), Is(200)]),
    row("GET", "/v1/pipelines/pl-a-member", Body::Empty, "pipeline:show", [Is(200), Is(200), Is(200), Is(404), Is(404), Is(200), Is(200)]),
    row("PUT", "/v1/pipelines/pl-a-member", Body::Json(r#"{"steps": [{"name": "s", "function": "{fn}"}]}"#),
        "pipeline:update", [Deny, Is(200), Is(200), Is(404), Is(404), Is(200), Deny]),
    row("POST", "/v1/pipelines/pl-a-member/invoke?async=true", Body::Json("{}"), "pipeline:invoke",
        [Deny, Is(202), Is(202), Is(404), Is(404), Is(202), Deny]),
    row("DELETE", "/v1/pipelines/pl-{persona}", Body::Empty, "pipeline:delete", [Deny, Is(204), Is(204), Is(404), Is(404), Is(404), Deny]),
    row("GET", "/v1/pipeline-runs", Body::Empty, "pipeline_run:list", [Is(200), Is(200), Is(200), Is(200), Is(200), Is(200), Is(200)]),
    row("GET", "/v1/pipeline-runs/{missing}", Body::Empty, "pipeline_run:show", [Is(404), Is(404), Is(404), Is(404), Is(404), Is(404), Is(404)]),
    // A webhook call carries no token: its URL is the credential (an unknown one is not found).
    row("POST", "/v1/webhooks/{missing}", Body::Json("{}"), NO_RULE, [Is(404), Is(404), Is(404), Is(404), Is(404), Is(404), Is(404)]),
    // Executions (the fixture's is queued: deleting it is a conflict).
    row("GET", "/v1/executions", Body::Empty, "execution:list", [Is(200), Is(200), Is(200), Is(200), Is(200), Is(200), Is(200)]),
    row("GET", "/v1/executions?all_projects=true", Body::Empty, "all_projects", [Deny, Deny, Deny, Deny, Is(200), Is(200), Is(200)]),
    row("GET", "/v1/executions/{exec}", Body::Empty, "execution:show", [Is(200), Is(200), Is(200), Is(404), Is(404), Is(200), Is(200)]),
    // Which fields the answer holds is `platform_internals_are_for_cloud_readers_only`'s part.
    row("GET", "/v1/executions/{exec}", Body::Empty, "execution:show_platform_details", [Is(200), Is(200), Is(200), Is(404), Is(404), Is(200), Is(200)]),
    row("GET", "/v1/executions/{exec}/log", Body::Empty, "execution:log", [Is(200), Is(200), Is(200), Is(404), Is(404), Is(200), Is(200)]),
    row("DELETE", "/v1/executions/{exec}", Body::Empty, "execution:delete", [Deny, Is(409), Is(409), Is(404), Is(404), Is(409), Deny]),
    // Usage and quotas. A system-scoped token has no usage of its own: it names a project.
    row("GET", "/v1/usage", Body::Empty, "usage:show", [Is(200), Is(200), Is(200), Is(200), Is(200), Is(403), Is(403)]),
    row("GET", "/v1/usage?project_id={B}", Body::Empty, "usage:show", [Deny, Deny, Deny, Is(200), Is(200), Is(200), Is(200)]),
    row("GET", "/v1/quotas/{A}", Body::Empty, "quota:show", [Is(200), Is(200), Is(200), Deny, Is(200), Is(200), Is(200)]),
    row("GET", "/v1/quotas/{B}", Body::Empty, "quota:show", [Deny, Deny, Deny, Is(200), Is(200), Is(200), Is(200)]),
    // A project's admin may not raise its own project's quotas.
    row("PUT", "/v1/quotas/{A}", Body::Json(r#"{"functions": 50}"#), "quota:update", [Deny, Deny, Deny, Deny, Is(200), Is(200), Deny]),
    row("DELETE", "/v1/quotas/{A}", Body::Empty, "quota:delete", [Deny, Deny, Deny, Deny, Is(204), Is(204), Deny]),
    // Agents.
    row("GET", "/v1/agents", Body::Empty, "agent:list", [Deny, Deny, Deny, Deny, Is(200), Is(200), Is(200)]),
];

/// Sends one row's request as `persona`; `None` when the answer is what `expected` says,
/// else what went wrong.
async fn check(
    api: &Api,
    fixture: &Fixture,
    row: &Row,
    persona: Persona,
    expected: Expect,
) -> Option<String> {
    let path = fixture.fill(row.path, persona);
    let mut req = Req::new(row.method, &path);
    req = match row.body {
        Body::Empty => req,
        Body::Json(template) => req.body("application/json", fixture.fill(template, persona)),
        Body::Zip => req.body("application/zip", zip_package(persona.slug())),
    };
    let reply = api.call(persona, req).await;
    let got = reply.status.as_u16();
    let what = format!("{} {} as {}", row.method, row.path, persona.slug());
    match expected {
        Deny | DenyBy(_) if got != 403 => Some(format!(
            "{what}: expected 403 ({}), got {got}: {}",
            row.rule,
            reply.text()
        )),
        Deny | DenyBy(_) => {
            let rule = match expected {
                DenyBy(first) => first,
                _ => row.rule,
            };
            let message = reply.error_message();
            let named = format!("policy does not allow {rule} to be performed");
            (message != named).then(|| format!("{what}: 403 says {message:?}, not {named:?}"))
        }
        Is(status) if got != status => Some(format!(
            "{what}: expected {status}, got {got}: {}",
            reply.text()
        )),
        Is(status) if status >= 400 => {
            // Well-formed error bodies, and never a policy refusal in disguise.
            let message = reply.error_message();
            message
                .contains("policy does not allow")
                .then(|| format!("{what}: {status} names a policy: {message:?}"))
        }
        Is(_) => None,
    }
}

#[actix_web::test]
async fn every_route_answers_each_persona_as_its_policy_rule_says() {
    let api = Api::start().await;
    let fixture = Fixture::create(&api).await;
    let mut failures = Vec::new();
    for row in ROWS {
        for (persona, expected) in PERSONAS.iter().zip(row.expect) {
            if let Some(failure) = check(&api, &fixture, row, *persona, expected).await {
                failures.push(failure);
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} checks failed:\n{}",
        failures.len(),
        ROWS.len() * PERSONAS.len(),
        failures.join("\n")
    );
}

/// `(METHOD, path template)` of every route the app serves: `http::ROUTES`, the table the
/// app is built from.
fn routes_in_source() -> Vec<(String, String)> {
    fresco_api::http::ROUTES
        .iter()
        .flat_map(|r| {
            r.methods
                .iter()
                .map(|m| ((*m).to_owned(), r.path.to_owned()))
        })
        .collect()
}

/// Whether a path (placeholders allowed) fits a route template; queries are ignored.
fn fits(template: &str, path: &str) -> bool {
    let template: Vec<&str> = template
        .split('?')
        .next()
        .unwrap_or("")
        .split('/')
        .collect();
    let path: Vec<&str> = path.split('?').next().unwrap_or("").split('/').collect();
    template.len() == path.len()
        && template
            .iter()
            .zip(&path)
            .all(|(t, p)| t == p || (t.starts_with('{') && t.ends_with('}')))
}

/// The table above is complete and consistent: every route of the route table has a row,
/// every row's rule is a default rule guarding that very route, and every action rule is
/// exercised. Fails when a route or rule is added without a row.
#[test]
fn the_policy_table_covers_every_route_and_every_rule() {
    let routes = routes_in_source();
    assert!(routes.len() >= 35, "route table parsed badly: {routes:?}");
    for (method, template) in &routes {
        assert!(
            ROWS.iter()
                .any(|r| r.method == method && fits(template, r.path)),
            "no row checks {method} {template}"
        );
    }
    for r in ROWS {
        assert!(
            routes.iter().any(|(m, t)| m == r.method && fits(t, r.path)),
            "row {} {} is no route",
            r.method,
            r.path
        );
        if r.rule == NO_RULE {
            assert!(
                r.expect.iter().all(|e| matches!(e, Is(_))),
                "{} has no rule to deny",
                r.path
            );
            continue;
        }
        let rule = DEFAULT_RULES
            .iter()
            .find(|d| d.name == r.rule)
            .unwrap_or_else(|| panic!("{} is no default rule", r.rule));
        let query = r.path.split_once('?').map(|(_, q)| q);
        assert!(
            rule.operations.iter().any(|op| op.method == r.method
                && fits(op.path, r.path)
                && op
                    .path
                    .split_once('?')
                    .is_none_or(|(_, q)| Some(q) == query)),
            "rule {} does not guard {} {}",
            r.rule,
            r.method,
            r.path
        );
    }
    for rule in DEFAULT_RULES.iter().filter(|d| !d.operations.is_empty()) {
        assert!(
            ROWS.iter().any(|r| r.rule == rule.name),
            "no row exercises {}",
            rule.name
        );
    }
}

// --- 2. Tenancy ---------------------------------------------------------------------------------

/// The method, path (`{key}` = the object's id or name) and body of a probe, and whether it
/// changes something (a reader is refused those by policy, for any key).
struct Probe {
    method: &'static str,
    path: &'static str,
    body: Body,
    writes: bool,
}

const fn probe(method: &'static str, path: &'static str, body: Body, writes: bool) -> Probe {
    Probe {
        method,
        path,
        body,
        writes,
    }
}

#[rustfmt::skip]
const FUNCTION_PROBES: &[Probe] = &[
    probe("GET", "/v1/functions/{key}", Body::Empty, false),
    probe("PATCH", "/v1/functions/{key}", Body::Json(r#"{"description": "taken over"}"#), true),
    probe("PUT", "/v1/functions/{key}/code", Body::Zip, true),
    probe("GET", "/v1/functions/{key}/code", Body::Empty, false),
    probe("POST", "/v1/functions/{key}/invoke", Body::Json("{}"), true),
    probe("POST", "/v1/functions/{key}/invoke?async=true", Body::Json("{}"), true),
    probe("POST", "/v1/functions/{key}/invoke?alias=live", Body::Json("{}"), true),
    probe("POST", "/v1/functions/{key}/invoke?version=1", Body::Json("{}"), true),
    probe("GET", "/v1/functions/{key}/versions", Body::Empty, false),
    probe("POST", "/v1/functions/{key}/versions", Body::Empty, true),
    probe("GET", "/v1/functions/{key}/versions/1", Body::Empty, false),
    probe("DELETE", "/v1/functions/{key}/versions/1", Body::Empty, true),
    probe("GET", "/v1/functions/{key}/aliases", Body::Empty, false),
    probe("POST", "/v1/functions/{key}/aliases", Body::Json(r#"{"name": "mine", "version": 1}"#), true),
    probe("GET", "/v1/functions/{key}/aliases/live", Body::Empty, false),
    probe("PATCH", "/v1/functions/{key}/aliases/live", Body::Json(r#"{"version": 1}"#), true),
    probe("DELETE", "/v1/functions/{key}/aliases/live", Body::Empty, true),
    probe("DELETE", "/v1/functions/{key}", Body::Empty, true),
];

#[rustfmt::skip]
const EXECUTION_PROBES: &[Probe] = &[
    probe("GET", "/v1/executions/{key}", Body::Empty, false),
    probe("GET", "/v1/executions/{key}/log", Body::Empty, false),
    probe("DELETE", "/v1/executions/{key}", Body::Empty, true),
];

#[rustfmt::skip]
const RUNTIME_PROBES: &[Probe] = &[
    probe("GET", "/v1/runtimes/{key}", Body::Empty, false),
    // Naming A's private runtime for a new function: "does not exist", as a missing one.
    probe("POST", "/v1/functions", Body::Json(r#"{"name": "squatter", "runtime": "{key}"}"#), true),
];

/// What a client sees of an answer, with `key` blanked out of the body.
fn seen(reply: &Reply, key: &str) -> (u16, Option<String>, String) {
    (
        reply.status.as_u16(),
        reply.header("content-type").map(str::to_owned),
        reply.text().replace(key, "<key>"),
    )
}

/// Every probe by `persona` on A's object (`key`) answers exactly as on a missing one
/// (`missing`): 404 (400 for naming a runtime), or the policy's 403 for a reader's changes.
async fn probe_all(
    api: &Api,
    persona: Persona,
    probes: &[Probe],
    key: &str,
    missing: &str,
    failures: &mut Vec<String>,
) {
    let reader = persona == ReaderB;
    for p in probes {
        let mut replies = Vec::new();
        for k in [key, missing] {
            let path = p.path.replace("{key}", k);
            let mut req = Req::new(p.method, &path);
            req = match p.body {
                Body::Empty => req,
                Body::Json(t) => req.body("application/json", t.replace("{key}", k)),
                Body::Zip => req.body("application/zip", zip_package("probe")),
            };
            replies.push(api.call(persona, req).await);
        }
        let what = format!("{} {} as {}", p.method, p.path, persona.slug());
        let (on_a, on_missing) = (seen(&replies[0], key), seen(&replies[1], missing));
        if on_a != on_missing {
            failures.push(format!(
                "{what}: A's object answers {on_a:?}, a missing one {on_missing:?}"
            ));
            continue;
        }
        let expected = match (reader && p.writes, p.path) {
            (true, _) => 403,
            (false, "/v1/functions") => 400,
            (false, _) => 404,
        };
        if on_a.0 != expected {
            failures.push(format!("{what}: expected {expected}, got {on_a:?}"));
        } else {
            replies[0].error_message();
        }
    }
}

/// B's lists hold none of A's objects.
async fn b_lists_hide_a(api: &Api, fx: &Fixture, persona: Persona) {
    let functions = api
        .call(persona, Req::get("/v1/functions?limit=1000"))
        .await
        .ok(200);
    assert_eq!(
        ids(&functions, "functions"),
        [fx.fn_b.as_str()],
        "{persona:?}"
    );
    let by_name = api
        .call(
            persona,
            Req::get(&format!("/v1/functions?name={}", fx.fn_a_name)),
        )
        .await
        .ok(200);
    assert!(ids(&by_name, "functions").is_empty(), "{persona:?}");
    let executions = api.call(persona, Req::get("/v1/executions")).await.ok(200);
    assert_eq!(
        ids(&executions, "executions"),
        [fx.exec_b.as_str()],
        "{persona:?}"
    );
    let of_a = api
        .call(
            persona,
            Req::get(&format!("/v1/executions?function_id={}", fx.fn_a)),
        )
        .await
        .ok(200);
    assert!(ids(&of_a, "executions").is_empty(), "{persona:?}");
    let runtimes = ids(
        &api.call(persona, Req::get("/v1/runtimes")).await.ok(200),
        "runtimes",
    );
    assert!(
        runtimes.contains(&fx.rt_public),
        "{persona:?}: {runtimes:?}"
    );
    assert!(
        !runtimes.contains(&fx.rt_private),
        "{persona:?} lists A's private runtime"
    );
}

/// Probes every single-object route with A's ids and names as `persona` of project B.
async fn b_cannot_reach_a(api: &Api, fx: &Fixture, persona: Persona) -> Vec<String> {
    let mut failures = Vec::new();
    let missing_id = Uuid::new_v4().to_string();
    probe_all(
        api,
        persona,
        FUNCTION_PROBES,
        &fx.fn_a,
        &missing_id,
        &mut failures,
    )
    .await;
    probe_all(
        api,
        persona,
        FUNCTION_PROBES,
        &fx.fn_a_name,
        "never-existed-fn",
        &mut failures,
    )
    .await;
    probe_all(
        api,
        persona,
        EXECUTION_PROBES,
        &fx.exec_a,
        &missing_id,
        &mut failures,
    )
    .await;
    probe_all(
        api,
        persona,
        RUNTIME_PROBES,
        &fx.rt_private,
        &missing_id,
        &mut failures,
    )
    .await;
    probe_all(
        api,
        persona,
        RUNTIME_PROBES,
        &fx.rt_private_name,
        "never-existed-rt",
        &mut failures,
    )
    .await;
    failures
}

/// A's objects are as the fixture left them: nothing B did reached them.
async fn a_untouched(api: &Api, fx: &Fixture) {
    let function = api
        .call(MemberA, Req::get(&format!("/v1/functions/{}", fx.fn_a)))
        .await
        .ok(200);
    assert_eq!(function["function"]["description"], "");
    assert_eq!(function["function"]["code"]["sha256"], fx.code_sha.as_str());
    assert_eq!(function["function"]["latest_version"], 1);
    let versions = api
        .call(
            MemberA,
            Req::get(&format!("/v1/functions/{}/versions", fx.fn_a)),
        )
        .await
        .ok(200);
    assert_eq!(versions["versions"].as_array().map(Vec::len), Some(1));
    let alias = api
        .call(
            MemberA,
            Req::get(&format!("/v1/functions/{}/aliases/live", fx.fn_a)),
        )
        .await
        .ok(200);
    assert_eq!(alias["alias"]["version"], 1);
    let aliases = api
        .call(
            MemberA,
            Req::get(&format!("/v1/functions/{}/aliases", fx.fn_a)),
        )
        .await
        .ok(200);
    assert_eq!(aliases["aliases"].as_array().map(Vec::len), Some(1));
    let executions = api.call(MemberA, Req::get("/v1/executions")).await.ok(200);
    assert_eq!(ids(&executions, "executions"), [fx.exec_a.as_str()]);
    let functions = api.call(MemberA, Req::get("/v1/functions")).await.ok(200);
    let mut names: Vec<&str> = functions["functions"]
        .as_array()
        .expect("functions")
        .iter()
        .filter_map(|f| f["name"].as_str())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["only-in-a", "spare-a"], "B created something in A");
    api.call(
        MemberA,
        Req::get(&format!("/v1/runtimes/{}", fx.rt_private)),
    )
    .await
    .ok(200);
}

#[actix_web::test]
async fn project_b_reader_and_member_cannot_see_change_invoke_or_infer_project_a_objects() {
    let api = Api::start().await;
    let fx = Fixture::create(&api).await;
    let mut failures = Vec::new();
    for persona in [ReaderB, MemberB] {
        failures.extend(b_cannot_reach_a(&api, &fx, persona).await);
        b_lists_hide_a(&api, &fx, persona).await;
        api.call(persona, Req::get("/v1/functions?all_projects=true"))
            .await
            .error(403, "policy does not allow all_projects to be performed");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    a_untouched(&api, &fx).await;
    // Another project's quota is refused exactly as a project that does not exist.
    let mut answers = Vec::new();
    for project in [fx.a.clone(), Uuid::new_v4().simple().to_string()] {
        let reply = api
            .call(MemberB, Req::get(&format!("/v1/quotas/{project}")))
            .await;
        answers.push(seen(&reply, &project));
    }
    let (of_a, of_nobody) = (&answers[0], &answers[1]);
    assert_eq!(of_a, of_nobody);
    assert_eq!(of_a.0, 403);
    // Names are per project: B may take the name of A's function (no 409 betrays it), and
    // each project then resolves the name to its own.
    let squat = api
        .call(
            MemberB,
            Req::post("/v1/functions")
                .json(&json!({"name": fx.fn_a_name, "runtime": fx.rt_public})),
        )
        .await
        .ok(201);
    for (persona, id) in [
        (MemberB, id_of(&squat, "function")),
        (MemberA, fx.fn_a.clone()),
    ] {
        let shown = api
            .call(
                persona,
                Req::get(&format!("/v1/functions/{}", fx.fn_a_name)),
            )
            .await
            .ok(200);
        assert_eq!(shown["function"]["id"], id.as_str(), "{persona:?}");
    }
}

/// An admin of project B holds the admin role, but without `all_projects=true` it acts in
/// its own project like anyone else: A's objects are as missing to it.
///
/// Fails today: `Caller::object_scope` (api/src/http/auth.rs) gives every caller the
/// `all_projects` rule admits `Scope::All` on every single-object route, asked or not, so B's
/// admin reads, changes, invokes and deletes A's functions, versions, aliases, executions and
/// private runtime by id or name (and, as a side effect, a name shared by two projects is a 409
/// "ambiguous" for admins). The fix: `Scope::All` only when the request says
/// `all_projects=true` (or for a system-scoped admin), as `db::Scope` documents.
#[actix_web::test]
async fn project_b_admin_without_all_projects_cannot_reach_project_a_objects() {
    let api = Api::start().await;
    let fx = Fixture::create(&api).await;
    b_lists_hide_a(&api, &fx, AdminB).await;
    let failures = b_cannot_reach_a(&api, &fx, AdminB).await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    a_untouched(&api, &fx).await;
}

#[actix_web::test]
async fn admins_with_all_projects_see_both_projects() {
    let api = Api::start().await;
    let fx = Fixture::create(&api).await;
    // A project's admin is not a cloud admin: all_projects is not for it.
    for project_admin in [AdminA, AdminB] {
        api.call(project_admin, Req::get("/v1/functions?all_projects=true"))
            .await
            .error(403, "policy does not allow all_projects to be performed");
    }
    for admin in [CloudAdmin, SystemAdmin] {
        let functions = ids(
            &api.call(admin, Req::get("/v1/functions?all_projects=true"))
                .await
                .ok(200),
            "functions",
        );
        for id in [&fx.fn_a, &fx.fn_spare, &fx.fn_b] {
            assert!(
                functions.contains(id),
                "{admin:?}: {functions:?} lacks {id}"
            );
        }
        let executions = ids(
            &api.call(admin, Req::get("/v1/executions?all_projects=true"))
                .await
                .ok(200),
            "executions",
        );
        assert!(executions.contains(&fx.exec_a) && executions.contains(&fx.exec_b));
        let runtimes = ids(
            &api.call(admin, Req::get("/v1/runtimes?all_projects=true"))
                .await
                .ok(200),
            "runtimes",
        );
        assert!(runtimes.contains(&fx.rt_private), "{admin:?}: {runtimes:?}");
        // Narrowed to one project.
        let only_a = ids(
            &api.call(
                admin,
                Req::get(&format!(
                    "/v1/functions?all_projects=true&project_id={}",
                    fx.a
                )),
            )
            .await
            .ok(200),
            "functions",
        );
        assert!(only_a.contains(&fx.fn_a) && !only_a.contains(&fx.fn_b));
        let only_b = ids(
            &api.call(
                admin,
                Req::get(&format!(
                    "/v1/executions?all_projects=true&project_id={}",
                    fx.b
                )),
            )
            .await
            .ok(200),
            "executions",
        );
        assert_eq!(only_b, [fx.exec_b.as_str()]);
        // all_projects=true also reaches one object of the other project.
        let shown = api
            .call(
                admin,
                Req::get(&format!("/v1/functions/{}?all_projects=true", fx.fn_b)),
            )
            .await
            .ok(200);
        assert_eq!(shown["function"]["project_id"], fx.b.as_str());
        let narrowed = api
            .call(
                admin,
                Req::get(&format!("/v1/functions?project_id={}", fx.a)),
            )
            .await;
        if admin == SystemAdmin {
            // A system-scoped token has no project: its lists are cloud-wide already.
            let only_a = ids(&narrowed.ok(200), "functions");
            assert!(only_a.contains(&fx.fn_a) && !only_a.contains(&fx.fn_b));
        } else {
            // project_id without all_projects is refused rather than ignored.
            narrowed.error(400, "project_id needs all_projects=true");
        }
    }
}

/// A hook's internals (its function, version, alias, description, author) are for who
/// manages it: a project hook's for its project's admin and cloud admins, a cloud hook's for
/// cloud admins only. Everyone who may list hooks sees that they exist, their kind, owner and
/// fail mode.
#[actix_web::test]
async fn hooks_show_their_internals_to_who_manages_them() {
    let api = Api::start().await;
    let fx = Fixture::create(&api).await;
    let show = |who: Persona, id: String| {
        let api = &api;
        async move {
            api.call(who, Req::get(&format!("/v1/hooks/{id}")))
                .await
                .ok(200)["hook"]
                .clone()
        }
    };
    for (who, hook, internals) in [
        (ReaderA, &fx.hook_a, false),
        (MemberA, &fx.hook_a, false),
        (AdminA, &fx.hook_a, true),
        (SystemAdmin, &fx.hook_a, true),
        (SystemReader, &fx.hook_a, false),
        (ReaderA, &fx.hook_cloud, false),
        (MemberA, &fx.hook_cloud, false),
        (AdminA, &fx.hook_cloud, false),
        (SystemAdmin, &fx.hook_cloud, true),
        (SystemReader, &fx.hook_cloud, false),
    ] {
        let shown = show(who, hook.clone()).await;
        assert_eq!(shown["kind"], "post", "{who:?}: {shown}");
        assert_eq!(shown["fail_mode"], "closed", "{who:?}: {shown}");
        assert_eq!(shown["internals_hidden"], !internals, "{who:?}: {shown}");
        if internals {
            assert_eq!(shown["function_id"], fx.fn_a.as_str(), "{who:?}: {shown}");
        } else {
            for field in [
                "function_id",
                "description",
                "created_by",
                "version",
                "alias",
            ] {
                assert!(shown.get(field).is_none(), "{who:?} sees {field}: {shown}");
            }
        }
    }
    let owners: Vec<(String, String)> = api.call(MemberA, Req::get("/v1/hooks")).await.ok(200)
        ["hooks"]
        .as_array()
        .expect("hooks")
        .iter()
        .map(|h| {
            assert_eq!(h["internals_hidden"], true, "{h}");
            (
                h["id"].as_str().unwrap_or_default().to_owned(),
                h["owner"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert!(
        owners.contains(&(fx.hook_a.clone(), "project".to_owned())),
        "{owners:?}"
    );
    assert!(
        owners.contains(&(fx.hook_cloud.clone(), "cloud".to_owned())),
        "{owners:?}"
    );
}

/// Hole 4 of issue 9: execution views showed members which agent ran their execution and the
/// platform's own error text, which names agents and their URLs. Now only callers the
/// `execution:show_platform_details` rule admits (cloud admins, system readers) see them;
/// everyone else gets no agent id and a generic message for platform errors.
#[actix_web::test]
async fn platform_internals_are_for_cloud_readers_only() {
    use diesel::{Connection, RunQueryDsl};
    const GENERIC: &str = "the platform could not run the execution; an administrator can see why";
    let api = Api::start().await;
    let fx = Fixture::create(&api).await;
    // What the scheduler records when it gives up on an execution (storage::platform_error).
    let detail =
        "agent node-7 failed: error sending request for url (http://10.0.0.7:8902/v1/run) (gave up after 3 attempts)";
    let mut conn = diesel::PgConnection::establish(api.database_url()).expect("database");
    let updated = diesel::sql_query(
        "UPDATE executions SET status = 'error', agent_id = 'node-7', error = $1, \
         started_at = now(), finished_at = now() WHERE id = $2",
    )
    .bind::<diesel::sql_types::Jsonb, _>(
        json!({"errorType": "PlatformError", "errorMessage": detail}),
    )
    .bind::<diesel::sql_types::Uuid, _>(Uuid::parse_str(&fx.exec_a).expect("uuid"))
    .execute(&mut conn)
    .expect("update");
    assert_eq!(updated, 1);
    let one = format!("/v1/executions/{}", fx.exec_a);
    for who in [ReaderA, MemberA, AdminA] {
        let shown = api.call(who, Req::get(&one)).await.ok(200)["execution"].clone();
        assert!(shown.get("agent_id").is_none(), "{who:?}: {shown}");
        assert_eq!(
            shown["error"]["errorType"], "PlatformError",
            "{who:?}: {shown}"
        );
        assert_eq!(shown["error"]["errorMessage"], GENERIC, "{who:?}: {shown}");
        let listed = api.call(who, Req::get("/v1/executions")).await.ok(200);
        let text = listed.to_string();
        assert!(
            !text.contains("node-7") && !text.contains("10.0.0.7"),
            "{who:?}: {text}"
        );
    }
    for (who, path) in [
        (SystemAdmin, one.clone()),
        (SystemReader, one.clone()),
        (CloudAdmin, format!("{one}?all_projects=true")),
    ] {
        let shown = api.call(who, Req::get(&path)).await.ok(200)["execution"].clone();
        assert_eq!(shown["agent_id"], "node-7", "{who:?}: {shown}");
        assert_eq!(shown["error"]["errorMessage"], detail, "{who:?}: {shown}");
    }
    // A queued execution shows no agent to the admins either, as null.
    let queued = api
        .call(
            SystemReader,
            Req::get(&format!("/v1/executions/{}", fx.exec_b)),
        )
        .await
        .ok(200);
    assert_eq!(queued["execution"]["agent_id"], Value::Null, "{queued}");
    assert!(queued["execution"]
        .as_object()
        .expect("object")
        .contains_key("agent_id"));
}

// --- 3. Tokens ----------------------------------------------------------------------------------

/// `path` with every `{placeholder}` replaced by `x`.
fn dummy_ids(path: &str) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        out.push('x');
        rest = rest[open..].split_once('}').map_or("", |(_, after)| after);
    }
    out.push_str(rest);
    out
}

fn assert_401(reply: &Reply, fragment: &str) {
    reply.error(401, fragment);
    assert_eq!(
        reply.header("www-authenticate"),
        Some(format!("Keystone uri=\"{WWW_AUTHENTICATE_URI}\"").as_str()),
        "{}",
        reply.label
    );
}

#[actix_web::test]
async fn missing_garbage_unknown_and_unscoped_tokens_are_refused() {
    let api = Api::start().await;
    let path = "/v1/functions";
    assert_401(
        &api.send(Req::get(path)).await,
        "authentication required: no x-auth-token given",
    );
    assert_401(
        &api.send(Req::get(path).token("   ")).await,
        "authentication required",
    );
    let valid = token(MemberA).await;
    // A token of the right shape that Keystone never issued: one character changed.
    let mut unknown: Vec<char> = valid.chars().collect();
    let middle = unknown.len() / 2;
    unknown[middle] = if unknown[middle] == 'A' { 'B' } else { 'A' };
    let unknown: String = unknown.into_iter().collect();
    let overlong = "x".repeat(9000);
    for bad in ["garbage", unknown.as_str(), overlong.as_str()] {
        let reply = api.send(Req::get(path).token(bad)).await;
        assert_401(&reply, "the token is invalid or has expired");
    }
    assert_eq!(keystone_verdict(&unknown).await, 404);
    // Every route that needs a token refuses the unknown one, with no side effect.
    for r in ROWS.iter().filter(|r| r.rule != NO_RULE) {
        let reply = api
            .send(Req::new(r.method, &dummy_ids(r.path)).token(&unknown))
            .await;
        assert_401(&reply, "the token is invalid or has expired");
    }
    // Discovery needs none.
    api.send(Req::get("/")).await.ok(200);
    // An unscoped token (the seeded users have no default project) is no project's caller.
    let unscoped = unscoped_token(ReaderB).await;
    api.send(Req::get(path).token(&unscoped))
        .await
        .error(403, "not scoped to a project");
    // A valid one passes.
    api.send(Req::get(path).token(&valid)).await.ok(200);
}

#[actix_web::test]
async fn a_revoked_token_is_refused_once_out_of_the_cache() {
    const CACHE_S: u64 = 2;
    let api =
        Api::start_with(Options::default().set("keystone_authtoken", "token_cache_time", CACHE_S))
            .await;
    let token = fresh_token(MemberA).await;
    let get = || Req::get("/v1/functions").token(&token.value);
    api.send(get()).await.ok(200);
    assert_eq!(api.state.auth.stats().keystone.validations, 1);
    revoke(&token.value).await;
    let revoked = Instant::now();
    assert_eq!(keystone_verdict(&token.value).await, 404, "not revoked");
    // Served from the cache until its time is up, then asked again and refused.
    let refused = loop {
        let reply = api.send(get()).await;
        if reply.status.as_u16() == 401 {
            break reply;
        }
        reply.ok(200);
        assert!(
            revoked.elapsed() < Duration::from_secs(CACHE_S + 10),
            "the revoked token still works {:?} after revocation",
            revoked.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_401(&refused, "the token is invalid or has expired");
    // Refused from then on (negative cache), without asking Keystone again.
    assert_401(
        &api.send(get()).await,
        "the token is invalid or has expired",
    );
    let stats = api.state.auth.stats();
    assert_eq!(
        stats.keystone.validations, 2,
        "one validation before, one after the cache time: {stats:?}"
    );
}

/// Keystone caps a token issued with an application credential at the credential's expiry:
/// a real token that expires seconds from now. The cache never trusts it past that, however
/// long `token_cache_time` is.
#[actix_web::test]
async fn an_expired_token_is_refused_even_while_cached() {
    let api = Api::start().await; // token_cache_time = 300
    let owner = fresh_token(MemberA).await;
    let (short, token_expiry, credential) =
        short_lived_token(&owner, Duration::from_secs(12)).await;
    assert_eq!(short.project_id, env().project_id(Project::A));
    let get = || Req::get("/v1/functions").token(&short.value);
    api.send(get()).await.ok(200);
    let wait = (token_expiry - chrono::Utc::now())
        .to_std()
        .unwrap_or_default()
        + Duration::from_millis(1500);
    tokio::time::sleep(wait).await;
    assert_401(
        &api.send(get()).await,
        "the token is invalid or has expired",
    );
    assert_eq!(keystone_verdict(&short.value).await, 404);
    assert_eq!(api.state.auth.stats().keystone.validations, 2);
    delete_application_credential(&owner, &credential).await;
}

// --- 4. Keystone down ---------------------------------------------------------------------------

#[actix_web::test]
async fn while_keystone_is_down_cached_tokens_work_new_ones_get_503_and_it_recovers() {
    let second = SecondKeystone::start();
    let api = Api::start_with(
        Options::default()
            .set("keystone_authtoken", "auth_url", second.url())
            .set("keystone_authtoken", "token_cache_time", 2),
    )
    .await;
    let cached = fresh_token(MemberA).await.value;
    let new = fresh_token(MemberA).await.value;
    let get = |t: &str| Req::get("/v1/functions").token(t);
    api.send(get(&cached)).await.ok(200);

    second.run("stop");
    assert!(!second.listening(), "the second keystone still listens");
    // Past token_cache_time the cache asks Keystone again, finds it down and keeps serving
    // the token it knows (until the token's own expiry).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    api.send(get(&cached)).await.ok(200);
    assert!(api.state.auth.stats().cache.stale_served >= 1);
    // A token it never saw cannot be checked: 503, not 401.
    let reply = api.send(get(&new)).await;
    reply.error(503, "identity service unavailable");
    assert_eq!(reply.header("www-authenticate"), None);
    assert!(reply.header("retry-after").is_some(), "no Retry-After");

    second.run("start");
    api.send(get(&new)).await.ok(200);
    api.send(get(&cached)).await.ok(200);
}

// --- 5. Policy override -------------------------------------------------------------------------

#[actix_web::test]
async fn a_policy_file_makes_function_list_admin_only() {
    let dir = std::env::temp_dir().join(format!("fresco-kstest-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("policy.yaml");
    std::fs::write(&file, "\"function:list\": \"rule:admin_required\"\n").expect("policy file");

    // The defaults first: the member lists.
    let defaults = Api::start().await;
    defaults
        .call(MemberA, Req::get("/v1/functions"))
        .await
        .ok(200);

    let api =
        Api::start_with(Options::default().set("oslo_policy", "policy_file", file.display())).await;
    // A project's own admin is no administrator of the cloud.
    for persona in [ReaderA, MemberA, MemberB, AdminA] {
        api.call(persona, Req::get("/v1/functions"))
            .await
            .error(403, "policy does not allow function:list to be performed");
    }
    api.call(CloudAdmin, Req::get("/v1/functions"))
        .await
        .ok(200);
    // The other rules keep their defaults.
    api.call(MemberA, Req::get("/v1/runtimes")).await.ok(200);
    api.call(MemberA, Req::get("/v1/executions")).await.ok(200);
    api.call(
        MemberA,
        Req::get(&format!("/v1/functions/{}", Uuid::new_v4())),
    )
    .await
    .error(404, "could not be found");
    let _ = std::fs::remove_dir_all(&dir);
}

// --- 6. Quotas ----------------------------------------------------------------------------------

async fn create_function(api: &Api, who: Persona, name: &str) -> Reply {
    let runtime = "python-quota";
    api.call(
        who,
        Req::post("/v1/functions").json(&json!({"name": name, "runtime": runtime})),
    )
    .await
}

async fn functions_quota(api: &Api, who: Persona, project: &str) -> (i64, i64) {
    let quota = api
        .call(who, Req::get(&format!("/v1/quotas/{project}")))
        .await
        .ok(200);
    assert_eq!(quota["quota"]["project_id"], project);
    (
        quota["quota"]["functions"]["limit"]
            .as_i64()
            .expect("limit"),
        quota["quota"]["functions"]["in_use"]
            .as_i64()
            .expect("in_use"),
    )
}

#[actix_web::test]
async fn quotas_are_read_per_project_and_updates_take_effect_at_once() {
    let api = Api::start().await;
    let (a, b) = (
        env().project_id(Project::A).to_owned(),
        env().project_id(Project::B).to_owned(),
    );
    api.call(
        CloudAdmin,
        Req::post("/v1/runtimes").json(
            &json!({"name": "python-quota", "image": "fresco/python3:test", "kind": "python"}),
        ),
    )
    .await
    .ok(201);
    create_function(&api, MemberA, "first").await.ok(201);

    // Reading: own project yes, the other no; changing: admins only.
    assert_eq!(functions_quota(&api, MemberA, &a).await, (100, 1));
    assert_eq!(functions_quota(&api, ReaderA, &a).await, (100, 1));
    api.call(MemberA, Req::get(&format!("/v1/quotas/{b}")))
        .await
        .error(403, "policy does not allow quota:show to be performed");
    api.call(
        MemberA,
        Req::put(&format!("/v1/quotas/{a}")).json(&json!({"functions": 1000})),
    )
    .await
    .error(403, "policy does not allow quota:update to be performed");
    // Nor may A's own admin raise A's quota: quotas are the cloud's to set.
    api.call(
        AdminA,
        Req::put(&format!("/v1/quotas/{a}")).json(&json!({"functions": 1000})),
    )
    .await
    .error(403, "policy does not allow quota:update to be performed");

    // current + 2: two more fit, the third is refused naming the quota.
    let (_, in_use) = functions_quota(&api, CloudAdmin, &a).await;
    let set = api
        .call(
            CloudAdmin,
            Req::put(&format!("/v1/quotas/{a}")).json(&json!({"functions": in_use + 2})),
        )
        .await
        .ok(200);
    assert_eq!(set["quota"]["functions"]["limit"], in_use + 2);
    create_function(&api, MemberA, "second").await.ok(201);
    create_function(&api, MemberA, "third").await.ok(201);
    create_function(&api, MemberA, "fourth")
        .await
        .error(403, "quota functions exceeded");
    // B's quota is its own.
    create_function(&api, MemberB, "fourth").await.ok(201);

    // 20 concurrent creates against 5 remaining: exactly 5 created.
    let (_, in_use) = functions_quota(&api, CloudAdmin, &a).await;
    assert_eq!(in_use, 3);
    api.call(
        CloudAdmin,
        Req::put(&format!("/v1/quotas/{a}")).json(&json!({"functions": in_use + 5})),
    )
    .await
    .ok(200);
    let names: Vec<String> = (0..20).map(|i| format!("race-{i}")).collect();
    let replies = join_all(
        names
            .iter()
            .map(|name| create_function(&api, MemberA, name)),
    )
    .await;
    let mut created = 0;
    for reply in &replies {
        match reply.status.as_u16() {
            201 => created += 1,
            _ => {
                reply.error(403, "quota functions exceeded");
            }
        }
    }
    assert_eq!(
        created, 5,
        "20 concurrent creates against a quota of 5 left"
    );
    assert_eq!(functions_quota(&api, MemberA, &a).await, (8, 8));
    let listed = api
        .call(MemberA, Req::get("/v1/functions?limit=1000"))
        .await
        .ok(200);
    assert_eq!(ids(&listed, "functions").len(), 8);

    // Back to the defaults.
    api.call(MemberA, Req::new("DELETE", &format!("/v1/quotas/{a}")))
        .await
        .error(403, "policy does not allow quota:delete to be performed");
    api.call(CloudAdmin, Req::new("DELETE", &format!("/v1/quotas/{a}")))
        .await
        .ok(204);
    assert_eq!(functions_quota(&api, MemberA, &a).await, (100, 8));
    create_function(&api, MemberA, "after-reset").await.ok(201);
}

// --- 7. Authentication overhead -----------------------------------------------------------------

#[actix_web::test]
async fn two_hundred_requests_with_one_token_cost_one_keystone_validation() {
    let api = Api::start().await;
    let token = fresh_token(MemberA).await.value;
    assert_eq!(api.state.auth.stats().keystone.calls(), 0);
    let get = || api.send(Req::get("/v1/functions").token(&token));
    // 100 at once (they share one validation in flight), then 100 one by one.
    for reply in join_all((0..100).map(|_| get())).await {
        reply.ok(200);
    }
    for _ in 0..100 {
        get().await.ok(200);
    }
    let stats = api.state.auth.stats();
    assert_eq!(stats.keystone.validations, 1, "{stats:?}");
    assert_eq!(stats.keystone.service_auths, 1, "{stats:?}");
    assert_eq!(stats.cache.hits + stats.cache.misses, 200, "{stats:?}");
    assert_eq!(stats.cache.entries, 1, "{stats:?}");
}
