//! `docs/openapi.yaml` against the app, so the document cannot drift:
//! - the routes the app serves (`http::ROUTES`, the table the app is built from, probed on the
//!   real router) are exactly the documented paths and methods;
//! - a scripted walk over every route, as several callers, gets only responses the document
//!   lists, each with its documented headers, content type and body schema (closed objects:
//!   a field added to a view and not to the document fails here, naming it).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use actix_web::http::StatusCode;
use fresco_api::http::ROUTES;
use serde_json::{json, Value};
use yaml_rust2::{Yaml, YamlLoader};

use fresco_store::ExecutionStatus;

use crate::common::*;

const DOCUMENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.yaml");
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "patch", "head", "options", "trace",
];

fn to_json(yaml: &Yaml) -> Value {
    match yaml {
        Yaml::Real(text) => text
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or(Value::Null, Value::Number),
        Yaml::Integer(n) => json!(n),
        Yaml::String(s) => json!(s),
        Yaml::Boolean(b) => json!(b),
        Yaml::Array(items) => Value::Array(items.iter().map(to_json).collect()),
        Yaml::Hash(map) => Value::Object(
            map.iter()
                .map(|(key, value)| {
                    let key = match key {
                        Yaml::String(s) | Yaml::Real(s) => s.clone(),
                        Yaml::Integer(n) => n.to_string(),
                        Yaml::Boolean(b) => b.to_string(),
                        other => panic!("docs/openapi.yaml: unsupported key {other:?}"),
                    };
                    (key, to_json(value))
                })
                .collect(),
        ),
        Yaml::Null => Value::Null,
        other => panic!("docs/openapi.yaml: unsupported node {other:?}"),
    }
}

fn document() -> Value {
    let text =
        std::fs::read_to_string(DOCUMENT).unwrap_or_else(|e| panic!("cannot read {DOCUMENT}: {e}"));
    let docs = YamlLoader::load_from_str(&text)
        .unwrap_or_else(|e| panic!("docs/openapi.yaml is not YAML: {e}"));
    assert_eq!(docs.len(), 1, "docs/openapi.yaml holds one document");
    to_json(&docs[0])
}

/// `(path, METHOD)` of every documented operation.
fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let paths = doc["paths"].as_object().expect("paths");
    paths
        .iter()
        .flat_map(|(path, item)| {
            METHODS
                .iter()
                .filter(|m| item.get(**m).is_some())
                .map(|m| (path.clone(), m.to_uppercase()))
        })
        .collect()
}

fn served() -> BTreeSet<(String, String)> {
    ROUTES
        .iter()
        .flat_map(|r| {
            r.methods
                .iter()
                .map(|m| (r.path.to_owned(), (*m).to_owned()))
        })
        .collect()
}

#[test]
fn every_served_route_is_documented_and_every_documented_route_is_served() {
    let doc = document();
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "docs/openapi.yaml is OpenAPI 3.1"
    );
    let documented = documented(&doc);
    let served = served();
    let undocumented: Vec<String> = served
        .difference(&documented)
        .map(|(p, m)| format!("{m} {p}"))
        .collect();
    let unserved: Vec<String> = documented
        .difference(&served)
        .map(|(p, m)| format!("{m} {p}"))
        .collect();
    assert!(
        undocumented.is_empty() && unserved.is_empty(),
        "docs/openapi.yaml and the route table (api/src/http/handlers/mod.rs) differ:\n  \
         served but not documented (add them to docs/openapi.yaml): {undocumented:?}\n  \
         documented but not served (remove them from docs/openapi.yaml): {unserved:?}"
    );
    // Every operation names an id, and every id is unique (schemathesis reports by them).
    let mut ids = BTreeSet::new();
    for (path, method) in &documented {
        let id = doc["paths"][path][method.to_lowercase()]["operationId"]
            .as_str()
            .unwrap_or_else(|| panic!("{method} {path} has no operationId"));
        assert!(ids.insert(id.to_owned()), "operationId {id} is used twice");
    }
}

/// `template` with every `{name}` replaced by `value`.
fn fill(template: &str, value: &str) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find('}')
            .map_or(rest.len(), |i| start + i + 1);
        out.push_str(value);
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

#[actix_web::test]
async fn the_router_serves_exactly_the_route_table() {
    let api = TestApi::start().await;
    let contract = Contract::new();
    for route in ROUTES {
        let path = fill(route.path, "nothing-here");
        for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
            let call = method_call(method, &path).by(ADMIN).json(json!({}));
            let reply = api.send(call).await;
            if route.methods.contains(&method) {
                assert_ne!(
                    reply.status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{}: the route table serves it but the router does not",
                    reply.label
                );
                if reply.status == StatusCode::NOT_FOUND {
                    assert!(
                        !reply.text().contains("no such resource"),
                        "{}: the route table serves it but the router has no such route",
                        reply.label
                    );
                }
            } else {
                // Undocumented methods of a documented path: 405, Allow, the error body.
                assert_eq!(
                    reply.status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{}: not in the route table, yet answered {}",
                    reply.label,
                    reply.status
                );
                let allow: BTreeSet<String> = reply
                    .header("allow")
                    .unwrap_or_default()
                    .split(',')
                    .map(|m| m.trim().to_owned())
                    .filter(|m| !m.is_empty())
                    .collect();
                let expected: BTreeSet<String> =
                    route.methods.iter().map(|m| (*m).to_owned()).collect();
                assert_eq!(allow, expected, "{}: Allow header", reply.label);
                contract.check_response(&reply, "#/components/responses/MethodNotAllowed");
            }
        }
    }
    api.send(get("/v1/no-such-thing").by(ADMIN))
        .await
        .error(404, "no such resource");
}

fn method_call(method: &str, path: &str) -> Call {
    crate::common::method(method, path)
}

/// The document, with validators built on demand, and what the walk has exercised.
struct Contract {
    doc: Value,
    validators: RefCell<HashMap<String, jsonschema::Validator>>,
    /// `(path, METHOD)` -> statuses seen.
    seen: RefCell<BTreeMap<(String, String), BTreeSet<u16>>>,
}

/// `a/b` as a JSON pointer token.
fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

impl Contract {
    fn new() -> Contract {
        Contract {
            doc: document(),
            validators: RefCell::new(HashMap::new()),
            seen: RefCell::new(BTreeMap::new()),
        }
    }

    /// The node at `pointer` (`#/a/b`), following `$ref`s; returns it and its own pointer.
    fn resolve(&self, pointer: &str) -> (Value, String) {
        let mut pointer = pointer.to_owned();
        loop {
            let node = self
                .doc
                .pointer(pointer.trim_start_matches('#'))
                .unwrap_or_else(|| panic!("docs/openapi.yaml has nothing at {pointer}"))
                .clone();
            match node.get("$ref").and_then(Value::as_str) {
                Some(target) => pointer = target.to_owned(),
                None => return (node, pointer),
            }
        }
    }

    /// Validates `instance` against the schema at `pointer`; panics naming every violation.
    fn validate(&self, pointer: &str, instance: &Value, label: &str) {
        let mut validators = self.validators.borrow_mut();
        let validator = validators.entry(pointer.to_owned()).or_insert_with(|| {
            // The whole document is the root, so every `#/components/...` reference resolves.
            let mut root = self.doc.clone();
            // A URI fragment: the braces of path templates are percent-encoded.
            root["$ref"] = json!(pointer.replace('{', "%7B").replace('}', "%7D"));
            jsonschema::draft202012::options()
                .should_validate_formats(true)
                .build(&root)
                .unwrap_or_else(|e| panic!("the schema at {pointer} does not compile: {e}"))
        });
        let errors: Vec<String> = validator
            .iter_errors(instance)
            .map(|e| format!("at {:?}: {e}", e.instance_path().as_str()))
            .collect();
        assert!(
            errors.is_empty(),
            "{label}: the response does not match docs/openapi.yaml ({pointer}):\n  {}\nbody: {instance}",
            errors.join("\n  ")
        );
    }

    /// Checks a reply against the response object at `pointer`: headers, content type, body.
    fn check_response(&self, reply: &Reply, pointer: &str) {
        let (response, pointer) = self.resolve(pointer);
        let label = &reply.label;
        if let Some(headers) = response.get("headers").and_then(Value::as_object) {
            for (name, _) in headers {
                let header_pointer = format!("{pointer}/headers/{}", escape(name));
                let (header, header_pointer) = self.resolve(&header_pointer);
                match reply.header(name) {
                    Some(value) => {
                        if header.get("schema").is_some() {
                            self.validate(
                                &format!("{header_pointer}/schema"),
                                &json!(value),
                                &format!("{label}: header {name}"),
                            );
                        }
                    }
                    None => assert!(
                        !header["required"].as_bool().unwrap_or(false),
                        "{label}: the documented header {name} is missing ({pointer})"
                    ),
                }
            }
        }
        match response.get("content").and_then(Value::as_object) {
            None => assert!(
                reply.body.is_empty(),
                "{label}: documented without a body ({pointer}), got {}",
                reply.text()
            ),
            Some(content) => {
                let content_type = reply
                    .header("content-type")
                    .unwrap_or_default()
                    .split(';')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_owned();
                assert!(
                    content.contains_key(&content_type),
                    "{label}: content type {content_type:?} is not documented ({pointer} lists {:?})",
                    content.keys().collect::<Vec<_>>()
                );
                if content_type == "application/json" {
                    self.validate(
                        &format!("{pointer}/content/application~1json/schema"),
                        &reply.json(),
                        label,
                    );
                }
            }
        }
    }

    /// Checks a reply to `METHOD template` against the document and records what it covered.
    fn check(&self, template: &str, reply: &Reply) -> Value {
        let method = reply
            .label
            .split_whitespace()
            .next()
            .expect("label")
            .to_lowercase();
        let operation = format!("#/paths/{}/{method}", escape(template));
        assert!(
            self.doc
                .pointer(operation.trim_start_matches('#'))
                .is_some(),
            "{}: {} {template} is not in docs/openapi.yaml",
            reply.label,
            method.to_uppercase()
        );
        let status = reply.status.as_u16().to_string();
        let responses = &self.doc.pointer(&format!("{}/responses", &operation[1..]));
        let listed: Vec<String> = responses
            .and_then(Value::as_object)
            .map(|r| r.keys().cloned().collect())
            .unwrap_or_default();
        assert!(
            listed.contains(&status),
            "{}: answered {status}, which docs/openapi.yaml does not list for {} {template} \
             (it lists {listed:?}); body: {}",
            reply.label,
            method.to_uppercase(),
            reply.text()
        );
        self.check_response(reply, &format!("{operation}/responses/{status}"));
        self.seen
            .borrow_mut()
            .entry((template.to_owned(), method.to_uppercase()))
            .or_default()
            .insert(reply.status.as_u16());
        if reply.body.is_empty()
            || !reply
                .header("content-type")
                .unwrap_or_default()
                .contains("json")
        {
            Value::Null
        } else {
            reply.json()
        }
    }
}

use fresco_common::ticket::test_keys::{
    AGENT_PRIVATE, AGENT_PUBLIC, CONTROL_PLANE_PRIVATE, TICKET_PRIVATE, TICKET_PUBLIC,
};

/// The app with invocations configured: its control-plane key, the scheduler at a closed port
/// (so a sync invocation is a documented 503, an async one a 202), the ticket verify key and
/// agent-1 enrolled (code downloads).
async fn start_invocable() -> (TestApi, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("fresco-openapi-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(dir.join("agents")).expect("key dir");
    std::fs::write(dir.join("control-plane.pem"), CONTROL_PLANE_PRIVATE).expect("key");
    std::fs::write(dir.join("verify.pem"), TICKET_PUBLIC).expect("verify key");
    std::fs::write(
        dir.join("agents").join("agent-1.pem"),
        fresco_common::enrolment::render("http://127.0.0.1:8902", AGENT_PUBLIC),
    )
    .expect("enrolment");
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let api = TestApi::start_with(
        Options::default()
            .set(
                "internal_auth",
                "control_plane_key_file",
                dir.join("control-plane.pem").display(),
            )
            .set(
                "internal_auth",
                "agent_keys_dir",
                dir.join("agents").display(),
            )
            .set(
                "internal_auth",
                "ticket_verify_key_file",
                dir.join("verify.pem").display(),
            )
            .set("scheduler", "urls", format!("http://127.0.0.1:{closed}")),
    )
    .await;
    (api, dir)
}

/// A ticket for agent-1 naming the package, and agent-1's code-download token for it.
fn ticket_for(function: &Value, sha256: &str) -> (String, String) {
    let signer = fresco_common::ticket::TicketSigner::from_pem(TICKET_PRIVATE.as_bytes(), 30)
        .expect("signer");
    let spec = fresco_common::wire::FunctionSpec {
        project_id: function["project_id"].as_str().expect("project").to_owned(),
        function_id: uuid::Uuid::parse_str(function["id"].as_str().expect("id")).expect("uuid"),
        function_name: function["name"].as_str().expect("name").to_owned(),
        version: 0,
        image: "fresco/python3:test".into(),
        runtime_kind: "python".into(),
        handler: "main.handler".into(),
        memory_mb: 128,
        timeout_s: 3,
        environment: BTreeMap::new(),
        code_sha256: Some(sha256.to_owned()),
        network: false,
        revision: 0,
    };
    let ticket = signer
        .sign(
            "agent-1",
            uuid::Uuid::new_v4(),
            uuid::Uuid::new_v4(),
            &fresco_common::ticket::sha256_hex(b"{}"),
            spec,
        )
        .expect("ticket");
    let jti = fresco_common::ticket::TicketVerifier::from_pem(TICKET_PUBLIC.as_bytes())
        .expect("verifier")
        .verify(&ticket, None)
        .expect("valid")
        .jti;
    let token = fresco_common::ticket::AgentSigner::from_pem(AGENT_PRIVATE.as_bytes(), "agent-1")
        .expect("agent key")
        .code_download_token(sha256, jti, 60)
        .expect("token");
    (ticket, token)
}

#[actix_web::test]
async fn a_walk_over_every_route_gets_only_documented_responses() {
    let (api, key_dir) = start_invocable().await;
    let c = Contract::new();
    let zip = zip_of(&[("main.py", b"def handler(e, c):\n    return e\n")]);
    let zip2 = zip_of(&[("main.py", b"def handler(e, c):\n    return 2\n")]);

    // Discovery and health, without a token.
    for path in ["/", "/v1", "/v1/", "/healthcheck", "/metrics"] {
        c.check(path, &api.send(get(path)).await);
    }

    // Runtimes.
    let rt = "/v1/runtimes";
    let rts = "/v1/runtimes/{id}";
    let body = json!({"name": "py", "image": "fresco/python3:test", "kind": "python"});
    c.check(rt, &api.send(post(rt).by(ADMIN).json(body.clone())).await);
    c.check(rt, &api.send(post(rt).by(ADMIN).json(body)).await); // 409
    let spare = json!({"name": "spare", "image": "x:1", "kind": "provided", "is_public": false,
        "project_id": "proj-a", "network": false, "memory_min_mb": 64, "memory_max_mb": 512,
        "timeout_max_s": 60, "description": "a private one"});
    c.check(rt, &api.send(post(rt).by(ADMIN).json(spare)).await);
    c.check(
        rt,
        &api.send(post(rt).by(ADMIN).json(json!({"name": "x", "colour": 1})))
            .await,
    ); // 400
    c.check(
        rt,
        &api.send(post(rt).by(ALICE).json(json!({"name": "x"})))
            .await,
    ); // 403
    c.check(
        rt,
        &api.send(post(rt).by(ADMIN).raw("text/plain", "name=x"))
            .await,
    ); // 415
    let huge = json!({"name": "x", "description": "d".repeat(MAX_JSON_BODY_BYTES)});
    c.check(rt, &api.send(post(rt).by(ADMIN).json(huge)).await); // 413
    let page = c.check(rt, &api.send(get("/v1/runtimes?limit=1").by(ALICE)).await);
    assert!(
        page["next"].is_string(),
        "a first page of one runtime links the next"
    );
    c.check(
        rt,
        &api.send(get("/v1/runtimes?sort_key=name&sort_dir=desc").by(ADMIN))
            .await,
    );
    c.check(
        rt,
        &api.send(get("/v1/runtimes?all_projects=true&project_id=proj-a").by(ADMIN))
            .await,
    );
    c.check(
        rt,
        &api.send(get("/v1/runtimes?colour=red").by(ALICE)).await,
    ); // 400
    c.check(rt, &api.send(get("/v1/runtimes")).await); // 401
    c.check(
        rt,
        &api.send(get("/v1/runtimes?all_projects=true").by(ALICE))
            .await,
    ); // 403
    c.check(rts, &api.send(get("/v1/runtimes/py").by(ALICE)).await);
    c.check(rts, &api.send(get("/v1/runtimes/nope").by(ALICE)).await); // 404
    let change = json!({"description": "CPython 3", "memory_max_mb": 1024, "status": "available"});
    c.check(
        rts,
        &api.send(patch("/v1/runtimes/py").by(ADMIN).json(change))
            .await,
    );
    c.check(
        rts,
        &api.send(
            patch("/v1/runtimes/py")
                .by(ADMIN)
                .json(json!({"kind": "x"})),
        )
        .await,
    ); // 400
    c.check(
        rts,
        &api.send(
            patch("/v1/runtimes/spare")
                .by(ADMIN)
                .json(json!({"name": "py"})),
        )
        .await,
    ); // 409
    c.check(rts, &api.send(delete("/v1/runtimes/spare").by(ADMIN)).await);

    // Functions.
    let fns = "/v1/functions";
    let f = "/v1/functions/{function}";
    let json_fn = json!({"name": "f", "runtime": "py", "handler": "main.handler", "memory_mb": 256,
        "timeout_s": 10, "environment": {"GREETING": "hi"}, "description": "json only"});
    let created = c.check(fns, &api.send(post(fns).by(ALICE).json(json_fn)).await);
    assert!(created["function"]["code"].is_null());
    let g = c.check(
        fns,
        &api.send(
            post(fns)
                .by(ALICE)
                .upload(&json!({"name": "g", "runtime": "py"}), Some(&zip)),
        )
        .await,
    )["function"]
        .clone();
    c.check(
        fns,
        &api.send(
            post(fns)
                .by(ALICE)
                .json(json!({"name": "img", "image": "acme/fn:1"})),
        )
        .await,
    );
    c.check(
        fns,
        &api.send(
            post(fns)
                .by(ALICE)
                .json(json!({"name": "g", "runtime": "py"})),
        )
        .await,
    ); // 409
    c.check(
        fns,
        &api.send(post(fns).by(ALICE).json(json!({"name": "h"})))
            .await,
    ); // 400
    c.check(
        fns,
        &api.send(post(fns).by(ALICE).raw("application/xml", "<f/>"))
            .await,
    ); // 415
    api.send(
        put("/v1/quotas/proj-b")
            .by(ADMIN)
            .json(json!({"functions": 0})),
    )
    .await
    .ok(200);
    c.check(
        fns,
        &api.send(
            post(fns)
                .by(BOB)
                .json(json!({"name": "b", "runtime": "py"})),
        )
        .await,
    ); // 403: quota
    let page = c.check(
        fns,
        &api.send(get("/v1/functions?limit=1&sort_key=name").by(ALICE))
            .await,
    );
    assert!(
        page["next"].is_string(),
        "a first page of one function links the next"
    );
    c.check(fns, &api.send(get("/v1/functions?name=g").by(ALICE)).await);
    c.check(
        fns,
        &api.send(get("/v1/functions?all_projects=true").by(ADMIN))
            .await,
    );
    c.check(fns, &api.send(get("/v1/functions?limit=0").by(ALICE)).await); // 400
    c.check(f, &api.send(get("/v1/functions/g").by(ALICE)).await);
    c.check(f, &api.send(get("/v1/functions/g").by(BOB)).await); // 404: another project's
    c.check(
        f,
        &api.send(get("/v1/functions/g?all_projects=true").by(ALICE))
            .await,
    ); // 403
    c.check(
        f,
        &api.send(
            patch("/v1/functions/f")
                .by(ALICE)
                .json(json!({"memory_mb": 512})),
        )
        .await,
    );
    c.check(
        f,
        &api.send(
            patch("/v1/functions/f")
                .by(ALICE)
                .upload(&json!({"description": "now with code"}), Some(&zip)),
        )
        .await,
    );
    c.check(
        f,
        &api.send(
            patch("/v1/functions/f")
                .by(ALICE)
                .json(json!({"memory_mb": "lots"})),
        )
        .await,
    ); // 400
    c.check(
        f,
        &api.send(
            patch("/v1/functions/f")
                .by(ALICE)
                .json(json!({"name": "g"})),
        )
        .await,
    ); // 409
    c.check(
        f,
        &api.send(
            patch("/v1/functions/f")
                .by(RITA)
                .json(json!({"memory_mb": 128})),
        )
        .await,
    ); // 403
    let code = "/v1/functions/{function}/code";
    c.check(
        code,
        &api.send(
            put("/v1/functions/g/code")
                .by(ALICE)
                .raw("application/zip", zip2.clone()),
        )
        .await,
    );
    c.check(
        code,
        &api.send(
            put("/v1/functions/g/code")
                .by(ALICE)
                .raw("application/zip", b"not a zip".to_vec()),
        )
        .await,
    ); // 400
    c.check(
        code,
        &api.send(
            put("/v1/functions/g/code")
                .by(ALICE)
                .raw("text/plain", zip2.clone()),
        )
        .await,
    ); // 415
    c.check(
        code,
        &api.send(
            put("/v1/functions/g/code")
                .by(ALICE)
                .raw("application/zip", vec![0_u8; MAX_PACKAGE_BYTES + 1]),
        )
        .await,
    ); // 413
    c.check(code, &api.send(get("/v1/functions/g/code").by(ALICE)).await);
    c.check(
        code,
        &api.send(get("/v1/functions/img/code").by(ALICE)).await,
    ); // 404: no code
    c.check(f, &api.send(delete("/v1/functions/img").by(ALICE)).await);
    c.check(f, &api.send(delete("/v1/functions/img").by(ALICE)).await); // 404
    c.check(rts, &api.send(delete("/v1/runtimes/py").by(ADMIN)).await); // 409: in use

    // Versions and aliases.
    let vs = "/v1/functions/{function}/versions";
    let v = "/v1/functions/{function}/versions/{version}";
    c.check(
        vs,
        &api.send(
            post("/v1/functions/g/versions")
                .by(ALICE)
                .json(json!({"description": "one"})),
        )
        .await,
    );
    c.check(
        vs,
        &api.send(post("/v1/functions/g/versions").by(ALICE)).await,
    );
    c.check(
        vs,
        &api.send(
            post("/v1/functions/g/versions")
                .by(ALICE)
                .json(json!({"colour": 1})),
        )
        .await,
    ); // 400
    c.check(
        vs,
        &api.send(post("/v1/functions/nope/versions").by(ALICE))
            .await,
    ); // 404
    let page = c.check(
        vs,
        &api.send(get("/v1/functions/g/versions?limit=1").by(ALICE))
            .await,
    );
    assert!(
        page["next"].is_string(),
        "a first page of one version links the next"
    );
    c.check(
        vs,
        &api.send(get("/v1/functions/g/versions?marker=x").by(ALICE))
            .await,
    ); // 400
    c.check(
        v,
        &api.send(get("/v1/functions/g/versions/1").by(ALICE)).await,
    );
    c.check(
        v,
        &api.send(get("/v1/functions/g/versions/one").by(ALICE))
            .await,
    ); // 404
    c.check(
        v,
        &api.send(delete("/v1/functions/g/versions/2").by(ALICE))
            .await,
    );
    let als = "/v1/functions/{function}/aliases";
    let al = "/v1/functions/{function}/aliases/{alias}";
    c.check(
        als,
        &api.send(
            post("/v1/functions/g/aliases")
                .by(ALICE)
                .json(json!({"name": "live", "version": 1})),
        )
        .await,
    );
    c.check(
        als,
        &api.send(
            post("/v1/functions/g/aliases")
                .by(ALICE)
                .json(json!({"name": "live", "version": 1})),
        )
        .await,
    ); // 409
    c.check(
        als,
        &api.send(
            post("/v1/functions/g/aliases")
                .by(ALICE)
                .json(json!({"name": "next", "version": 9})),
        )
        .await,
    ); // 400
    c.check(als, &api.send(post("/v1/functions/g/aliases").by(ALICE).json(json!({"name": "b", "version": 1, "second_version": 2, "second_weight": 10, "description": "canary"}))).await); // 400: version 2 is gone
    c.check(
        als,
        &api.send(get("/v1/functions/g/aliases").by(ALICE)).await,
    );
    c.check(
        als,
        &api.send(get("/v1/functions/nope/aliases").by(ALICE)).await,
    ); // 404
    c.check(
        al,
        &api.send(get("/v1/functions/g/aliases/live").by(ALICE))
            .await,
    );
    let cmp = "/v1/functions/{function}/aliases/{alias}/comparison";
    c.check(
        cmp,
        &api.send(get("/v1/functions/g/aliases/live/comparison").by(ALICE))
            .await,
    );
    c.check(
        cmp,
        &api.send(get("/v1/functions/g/aliases/nope/comparison").by(ALICE))
            .await,
    ); // 404
    c.check(
        al,
        &api.send(
            patch("/v1/functions/g/aliases/live")
                .by(ALICE)
                .json(json!({"description": "prod", "second_version": null})),
        )
        .await,
    );
    c.check(
        al,
        &api.send(
            patch("/v1/functions/g/aliases/live")
                .by(ALICE)
                .json(json!({"name": "other"})),
        )
        .await,
    ); // 400
    c.check(
        v,
        &api.send(delete("/v1/functions/g/versions/1").by(ALICE))
            .await,
    ); // 409: the alias points to it
    c.check(
        als,
        &api.send(
            post("/v1/functions/g/aliases")
                .by(ALICE)
                .json(json!({"name": "old", "version": 1})),
        )
        .await,
    );
    c.check(
        al,
        &api.send(delete("/v1/functions/g/aliases/old").by(ALICE))
            .await,
    );
    c.check(
        al,
        &api.send(delete("/v1/functions/g/aliases/old").by(ALICE))
            .await,
    ); // 404

    // Invocations: async ones are committed (202); sync ones need the scheduler (503 here).
    let inv = "/v1/functions/{function}/invoke";
    let queued = c.check(
        inv,
        &api.send(
            post("/v1/functions/g/invoke?async=true")
                .by(ALICE)
                .json(json!({"x": 1})),
        )
        .await,
    );
    c.check(
        inv,
        &api.send(
            post("/v1/functions/g/invoke?alias=live")
                .by(ALICE)
                .header("x-invocation-type", "event")
                .json(json!({})),
        )
        .await,
    );
    c.check(
        inv,
        &api.send(
            post("/v1/functions/g/invoke")
                .by(ALICE)
                .json(json!({"x": 1})),
        )
        .await,
    ); // 503
    c.check(
        inv,
        &api.send(post("/v1/functions/g/invoke?version=1&alias=live").by(ALICE))
            .await,
    ); // 400
    c.check(
        inv,
        &api.send(
            post("/v1/functions/g/invoke")
                .by(ALICE)
                .raw("application/json", "{"),
        )
        .await,
    ); // 400
    c.check(
        inv,
        &api.send(post("/v1/functions/nope/invoke").by(ALICE)).await,
    ); // 404
    c.check(
        inv,
        &api.send(post("/v1/functions/g/invoke?version=7&async=true").by(ALICE))
            .await,
    ); // 404
    c.check(
        inv,
        &api.send(post("/v1/functions/g/invoke").by(RITA)).await,
    ); // 403
    c.check(
        inv,
        &api.send(
            post("/v1/functions/g/invoke")
                .by(ALICE)
                .raw("application/json", vec![b' '; 6 * 1024 * 1024 + 1]),
        )
        .await,
    ); // 413

    // Async invocation config, dead letters, triggers and webhooks.
    let ec = "/v1/functions/{function}/event-config";
    c.check(
        ec,
        &api.send(get("/v1/functions/g/event-config").by(ALICE))
            .await,
    ); // 404
    c.check(
        ec,
        &api.send(
            put("/v1/functions/g/event-config")
                .by(ALICE)
                .json(json!({"max_attempts": 2, "max_event_age_s": 60, "on_success": "g", "dead_letter": true})),
        )
        .await,
    );
    c.check(
        ec,
        &api.send(
            put("/v1/functions/g/event-config")
                .by(ALICE)
                .json(json!({"max_attempts": 11})),
        )
        .await,
    ); // 400
    c.check(
        ec,
        &api.send(
            put("/v1/functions/g/event-config")
                .by(ALICE)
                .raw("text/plain", "max_attempts=1"),
        )
        .await,
    ); // 415
    c.check(
        ec,
        &api.send(get("/v1/functions/g/event-config").by(ALICE))
            .await,
    );
    c.check(
        ec,
        &api.send(get("/v1/functions/g/event-config").by(RITA)).await,
    );
    c.check(
        ec,
        &api.send(delete("/v1/functions/g/event-config").by(ALICE))
            .await,
    );
    c.check(
        ec,
        &api.send(delete("/v1/functions/g/event-config").by(ALICE))
            .await,
    ); // 404
    let dls = "/v1/functions/{function}/dead-letters";
    let replay = "/v1/functions/{function}/dead-letters/{id}/replay";
    let letter = uuid::Uuid::new_v4();
    api.db.execute(&format!(
        "INSERT INTO dead_letters (id, project_id, function_id, execution_id, input, status, error, attempts)
         VALUES ('{letter}', 'proj-a', '{}', '{}', convert_to('{{\"n\": 1}}', 'UTF8'), 'failed',
                 '{{\"errorType\": \"ValueError\", \"errorMessage\": \"no\"}}', 2)",
        g["id"].as_str().expect("id"),
        uuid::Uuid::new_v4()
    ));
    let letters = c.check(
        dls,
        &api.send(get("/v1/functions/g/dead-letters").by(ALICE))
            .await,
    );
    assert_eq!(letters["dead_letters"][0]["event"], json!({"n": 1}));
    c.check(
        dls,
        &api.send(get("/v1/functions/g/dead-letters?sort_key=id").by(ALICE))
            .await,
    ); // 400
    c.check(
        dls,
        &api.send(get("/v1/functions/nope/dead-letters").by(ALICE))
            .await,
    ); // 404
    c.check(
        replay,
        &api.send(post(&format!("/v1/functions/g/dead-letters/{letter}/replay")).by(ALICE))
            .await,
    );
    c.check(
        replay,
        &api.send(post(&format!("/v1/functions/g/dead-letters/{letter}/replay")).by(ALICE))
            .await,
    ); // 404: replayed once
    c.check(
        replay,
        &api.send(post("/v1/functions/g/dead-letters/x/replay").by(RITA))
            .await,
    ); // 403
       // Pipelines and their runs (no scheduler here: runs stay `running`).
    let pls = "/v1/pipelines";
    let pl = "/v1/pipelines/{pipeline}";
    let pli = "/v1/pipelines/{pipeline}/invoke";
    let created = c.check(
        pls,
        &api.send(post(pls).by(ALICE).json(json!({
            "name": "flow", "description": "three steps",
            "steps": [
                {"name": "first", "function": "g", "version": 1,
                 "retry": {"max_attempts": 3, "backoff_ms": 10}, "catch": "rescue"},
                {"name": "fan", "type": "parallel", "branches": [
                    [{"name": "left", "function": "g"}], [{"name": "right", "function": "g"}]]},
                {"name": "each", "type": "map", "items_path": "", "max_concurrency": 2,
                 "steps": [{"name": "item", "function": "g"}]}],
            "handlers": [{"name": "rescue", "function": "g"}]})))
            .await,
    );
    assert_eq!(created["pipeline"]["version"], json!(1));
    c.check(
        pls,
        &api.send(post(pls).by(ALICE).json(json!({"name": "flow",
            "steps": [{"name": "a", "function": "g"}]})))
            .await,
    ); // 409
    c.check(
        pls,
        &api.send(post(pls).by(ALICE).json(json!({"name": "bad",
            "steps": [{"name": "a", "function": "nope"}]})))
            .await,
    ); // 400
    c.check(
        pls,
        &api.send(post(pls).by(RITA).json(json!({"name": "x"})))
            .await,
    ); // 403
    c.check(
        pls,
        &api.send(post(pls).by(ALICE).raw("text/plain", "x")).await,
    ); // 415
    c.check(
        pls,
        &api.send(post(pls).by(ALICE).json(json!({"name": "p2",
            "steps": [{"name": "a", "function": "g"}]})))
            .await,
    );
    let page = c.check(pls, &api.send(get("/v1/pipelines?limit=1").by(ALICE)).await);
    assert!(
        page["next"].is_string(),
        "a first page of one pipeline links the next"
    );
    c.check(
        pls,
        &api.send(get("/v1/pipelines?sort_key=nope").by(ALICE)).await,
    ); // 400
    c.check(pl, &api.send(get("/v1/pipelines/flow").by(RITA)).await);
    c.check(pl, &api.send(get("/v1/pipelines/nope").by(ALICE)).await); // 404
    let updated = c.check(
        pl,
        &api.send(put("/v1/pipelines/flow").by(ALICE).json(json!({
            "steps": [{"name": "only", "function": "g"}]})))
            .await,
    );
    assert_eq!(updated["pipeline"]["version"], json!(2));
    c.check(
        pl,
        &api.send(
            put("/v1/pipelines/flow")
                .by(ALICE)
                .json(json!({"steps": []})),
        )
        .await,
    ); // 400
    c.check(pl, &api.send(delete("/v1/pipelines/p2").by(ALICE)).await);
    c.check(pl, &api.send(delete("/v1/pipelines/p2").by(ALICE)).await); // 404
    let run = c.check(
        pli,
        &api.send(
            post("/v1/pipelines/flow/invoke?async=true")
                .by(ALICE)
                .json(json!({"n": 1})),
        )
        .await,
    ); // 202
    assert_eq!(run["pipeline_run"]["status"], json!("running"));
    c.check(
        pli,
        &api.send(
            post("/v1/pipelines/flow/invoke?timeout_ms=5")
                .by(ALICE)
                .json(json!({})),
        )
        .await,
    ); // 202: the wait is over
    c.check(
        pli,
        &api.send(
            post("/v1/pipelines/flow/invoke?timeout_ms=0")
                .by(ALICE)
                .json(json!({})),
        )
        .await,
    ); // 400
    c.check(
        pli,
        &api.send(post("/v1/pipelines/nope/invoke").by(ALICE).json(json!({})))
            .await,
    ); // 404
    let prs = "/v1/pipeline-runs";
    let pr = "/v1/pipeline-runs/{id}";
    let runs = c.check(
        prs,
        &api.send(get("/v1/pipeline-runs?pipeline=flow&status=running").by(ALICE))
            .await,
    );
    assert_eq!(runs["pipeline_runs"].as_array().map(Vec::len), Some(2));
    c.check(
        prs,
        &api.send(get("/v1/pipeline-runs?status=nope").by(ALICE))
            .await,
    ); // 400
    c.check(
        prs,
        &api.send(get("/v1/pipeline-runs?pipeline=nope").by(ALICE))
            .await,
    ); // 404
    let run_id = run["pipeline_run"]["id"].as_str().expect("run id");
    let shown = c.check(
        pr,
        &api.send(get(&format!("/v1/pipeline-runs/{run_id}")).by(RITA))
            .await,
    );
    assert_eq!(shown["pipeline_run"]["steps"][0]["step"], json!("0"));
    c.check(pr, &api.send(get("/v1/pipeline-runs/nope").by(ALICE)).await); // 404
    let trs = "/v1/triggers";
    let tr = "/v1/triggers/{trigger}";
    let cron = c.check(
        trs,
        &api.send(
            post(trs)
                .by(ALICE)
                .json(json!({"name": "nightly", "type": "cron",
            "function": "g", "cron": "0 3 * * *", "timezone": "Europe/Paris",
            "input": {"job": "report"}, "description": "every night"})),
        )
        .await,
    );
    assert!(cron["trigger"]["next_run_at"].is_string());
    let hook = c.check(
        trs,
        &api.send(
            post(trs)
                .by(ALICE)
                .json(json!({"name": "hook", "type": "webhook",
            "function": "g", "version": 1, "secret": "0123456789abcdef", "rate_limit": 10})),
        )
        .await,
    );
    assert_eq!(hook["trigger"]["has_secret"], json!(true));
    c.check(
        trs,
        &api.send(
            post(trs)
                .by(ALICE)
                .json(json!({"name": "hook", "type": "webhook", "function": "g"})),
        )
        .await,
    ); // 409
    c.check(
        trs,
        &api.send(
            post(trs)
                .by(ALICE)
                .json(json!({"name": "bad", "type": "cron", "function": "g", "cron": "* *"})),
        )
        .await,
    ); // 400
    c.check(
        trs,
        &api.send(
            post(trs)
                .by(ALICE)
                .json(json!({"name": "x", "type": "webhook", "function": "nope"})),
        )
        .await,
    ); // 404
    c.check(
        trs,
        &api.send(post(trs).by(RITA).json(json!({"name": "x"})))
            .await,
    ); // 403
    c.check(
        trs,
        &api.send(post(trs).by(ALICE).raw("text/plain", "x")).await,
    ); // 415
    let page = c.check(trs, &api.send(get("/v1/triggers?limit=1").by(ALICE)).await);
    assert!(
        page["next"].is_string(),
        "a first page of one trigger links the next"
    );
    c.check(
        trs,
        &api.send(get("/v1/triggers?type=cron&function=g&sort_key=name").by(ALICE))
            .await,
    );
    c.check(trs, &api.send(get("/v1/triggers?type=ftp").by(ALICE)).await); // 400
    c.check(
        trs,
        &api.send(get("/v1/triggers?function=nope").by(ALICE)).await,
    ); // 404
    c.check(tr, &api.send(get("/v1/triggers/nightly").by(RITA)).await);
    c.check(tr, &api.send(get("/v1/triggers/nope").by(ALICE)).await); // 404
    c.check(
        tr,
        &api.send(
            patch("/v1/triggers/nightly")
                .by(ALICE)
                .json(json!({"cron": "*/5 * * * *", "enabled": false})),
        )
        .await,
    );
    c.check(
        tr,
        &api.send(
            patch("/v1/triggers/nightly")
                .by(ALICE)
                .json(json!({"secret": "0123456789abcdef"})),
        )
        .await,
    ); // 400
    let webhook_url = hook["trigger"]["webhook_url"].as_str().expect("url");
    let token = webhook_url.rsplit('/').next().expect("token");
    let wh = "/v1/webhooks/{token}";
    c.check(
        wh,
        &api.send(post(&format!("/v1/webhooks/{token}")).json(json!({"a": 1})))
            .await,
    ); // 401
    c.check(
        wh,
        &api.send(post("/v1/webhooks/nope").json(json!({}))).await,
    ); // 404
    c.check(
        tr,
        &api.send(
            patch("/v1/triggers/hook")
                .by(ALICE)
                .json(json!({"secret": null, "rate_limit": 1})),
        )
        .await,
    );
    c.check(
        wh,
        &api.send(post(&format!("/v1/webhooks/{token}?x=1")).json(json!({"a": 1})))
            .await,
    ); // 202
    c.check(
        wh,
        &api.send(post(&format!("/v1/webhooks/{token}")).json(json!({"a": 2})))
            .await,
    ); // 429
    c.check(tr, &api.send(delete("/v1/triggers/hook").by(ALICE)).await);
    c.check(tr, &api.send(delete("/v1/triggers/hook").by(ALICE)).await); // 404

    // Hooks (post hooks: nothing here invokes synchronously, which needs an agent).
    let hks = "/v1/hooks";
    let hk = "/v1/hooks/{hook}";
    const ANNA: &str = "anna:proj-a:admin";
    let attached = c.check(
        hks,
        &api.send(post(hks).by(ANNA).json(
            json!({"kind": "post", "function": "g", "version": 1, "fail_mode": "open",
                "description": "audit"}),
        ))
        .await,
    );
    let hook_id = attached["hook"]["id"].as_str().expect("hook id").to_owned();
    assert_eq!(attached["hook"]["internals_hidden"], json!(false));
    let cloud = c.check(
        hks,
        &api.send(post(hks).by(ADMIN).json(
            json!({"kind": "post", "function": g["id"], "project_id": "proj-a", "redact": true}),
        ))
        .await,
    );
    let cloud_id = cloud["hook"]["id"].as_str().expect("hook id").to_owned();
    c.check(
        hks,
        &api.send(
            post(hks)
                .by(ANNA)
                .json(json!({"kind": "pre", "function": "g", "redact": true})),
        )
        .await,
    ); // 400
    c.check(
        hks,
        &api.send(
            post(hks)
                .by(ALICE)
                .json(json!({"kind": "pre", "function": "g"})),
        )
        .await,
    ); // 403
    c.check(
        hks,
        &api.send(post(hks).by(ANNA).raw("text/plain", "x")).await,
    ); // 415
    let page = c.check(hks, &api.send(get("/v1/hooks?limit=1").by(RITA)).await);
    assert!(page["next"].is_string(), "{page}");
    assert_eq!(page["hooks"][0]["internals_hidden"], json!(true));
    c.check(hks, &api.send(get("/v1/hooks?kind=middle").by(RITA)).await); // 400
    c.check(
        hk,
        &api.send(get(&format!("/v1/hooks/{hook_id}")).by(RITA))
            .await,
    );
    c.check(hk, &api.send(get("/v1/hooks/nope").by(RITA)).await); // 404
    c.check(
        hk,
        &api.send(delete(&format!("/v1/hooks/{cloud_id}")).by(ANNA))
            .await,
    ); // 403: the cloud's
    c.check(
        hk,
        &api.send(delete(&format!("/v1/hooks/{cloud_id}?all_projects=true")).by(ADMIN))
            .await,
    );
    c.check(
        hk,
        &api.send(delete(&format!("/v1/hooks/{hook_id}")).by(ANNA))
            .await,
    );
    c.check(
        hk,
        &api.send(delete(&format!("/v1/hooks/{hook_id}")).by(ANNA))
            .await,
    ); // 404

    // Executions and usage.
    let mut done = execution("proj-a", g["id"].as_str().expect("id"));
    done.error =
        Some(json!({"errorType": "ValueError", "errorMessage": "no", "stackTrace": ["at main"]}));
    done.status = ExecutionStatus::Failed;
    api.db.record(&[done.clone()]);
    let exs = "/v1/executions";
    let ex = "/v1/executions/{id}";
    let page = c.check(
        exs,
        &api.send(get("/v1/executions?limit=1").by(ALICE)).await,
    );
    assert!(
        page["next"].is_string(),
        "a first page of one execution links the next"
    );
    c.check(
        exs,
        &api.send(
            get(&format!(
                "/v1/executions?status=failed&function_id={}",
                g["id"].as_str().expect("id")
            ))
            .by(ALICE),
        )
        .await,
    );
    c.check(
        exs,
        &api.send(get("/v1/executions?status=lost").by(ALICE)).await,
    ); // 400
    c.check(
        ex,
        &api.send(get(&format!("/v1/executions/{}", done.id)).by(ALICE))
            .await,
    );
    c.check(
        ex,
        &api.send(get("/v1/executions/not-a-uuid").by(ALICE)).await,
    ); // 404
    c.check(
        "/v1/executions/{id}/log",
        &api.send(get(&format!("/v1/executions/{}/log", done.id)).by(ALICE))
            .await,
    );
    c.check(
        "/v1/executions/{id}/log",
        &api.send(get("/v1/executions/x/log").by(ALICE)).await,
    ); // 404
    let queued_id = queued["execution"]["id"]
        .as_str()
        .expect("queued id")
        .to_owned();
    c.check(
        ex,
        &api.send(delete(&format!("/v1/executions/{queued_id}")).by(ALICE))
            .await,
    ); // 409
    c.check(
        ex,
        &api.send(delete(&format!("/v1/executions/{}", done.id)).by(ALICE))
            .await,
    );
    c.check("/v1/usage", &api.send(get("/v1/usage").by(ALICE)).await);
    c.check(
        "/v1/usage",
        &api.send(get("/v1/usage?project_id=proj-b").by(ALICE)).await,
    ); // 403
    c.check(
        "/v1/usage",
        &api.send(get("/v1/usage?limit=x").by(ALICE)).await,
    ); // 400

    // Quotas.
    let q = "/v1/quotas/{project_id}";
    c.check(q, &api.send(get("/v1/quotas/proj-a").by(ALICE)).await);
    c.check(q, &api.send(get("/v1/quotas/proj-b").by(ALICE)).await); // 403
    c.check(
        q,
        &api.send(
            put("/v1/quotas/proj-a")
                .by(ADMIN)
                .json(json!({"functions": 50, "code_bytes": -1})),
        )
        .await,
    );
    c.check(
        q,
        &api.send(
            put("/v1/quotas/proj-a")
                .by(ADMIN)
                .json(json!({"lambdas": 1})),
        )
        .await,
    ); // 400
    c.check(
        q,
        &api.send(
            put("/v1/quotas/proj-a")
                .by(ADMIN)
                .raw("text/plain", "functions=1"),
        )
        .await,
    ); // 415
    c.check(q, &api.send(delete("/v1/quotas/proj-a").by(ADMIN)).await);
    c.check(q, &api.send(delete("/v1/quotas/proj-b").by(ALICE)).await); // 403
    c.check(q, &api.send(get("/v1/quotas/a%00b").by(ADMIN)).await); // 404: NUL

    // Agents.
    api.db.execute(
        "INSERT INTO agents (id, host, url, state, memory_mb_total, memory_mb_reserved, cpus, running, warm, images, version, last_heartbeat)
         VALUES ('agent-1', 'compute-1', 'http://127.0.0.1:8902', 'up', 8192, 256, 4, 1,
                 '[{\"function_id\": \"f\", \"count\": 2}]', '[\"fresco/python3:test\"]', '0.1.0', now())",
    );
    c.check("/v1/agents", &api.send(get("/v1/agents").by(ADMIN)).await);
    c.check("/v1/agents", &api.send(get("/v1/agents").by(ALICE)).await); // 403

    // The agents' code endpoint: a ticket naming the package, or nothing.
    let internal = "/internal/v1/code/{sha256}";
    let sha = api.send(get("/v1/functions/g").by(ALICE)).await.ok(200)["function"]["code"]
        ["sha256"]
        .as_str()
        .expect("sha256")
        .to_owned();
    let (ticket, token) = ticket_for(&g, &sha);
    c.check(
        internal,
        &api.send(
            get(&format!("/internal/v1/code/{sha}"))
                .header("x-fresco-ticket", &ticket)
                .header("authorization", &format!("Bearer {token}")),
        )
        .await,
    );
    c.check(
        internal,
        &api.send(
            get(&format!("/internal/v1/code/{}", "0".repeat(64)))
                .header("x-fresco-ticket", &ticket)
                .header("authorization", &format!("Bearer {token}")),
        )
        .await,
    ); // 403
    c.check(
        internal,
        &api.send(get(&format!("/internal/v1/code/{sha}"))).await,
    ); // 401
    c.check(f, &api.send(delete("/v1/functions/f").by(ALICE)).await);

    // Every operation was walked and answered its documented success at least once (but a
    // sync invocation, which needs a compute agent: the schemathesis run covers it).
    let seen = c.seen.borrow();
    let doc = &c.doc;
    for (path, method) in documented(doc) {
        let statuses = seen
            .get(&(path.clone(), method.clone()))
            .unwrap_or_else(|| panic!("the walk never called {method} {path}: add it"));
        let successes: Vec<u16> = doc["paths"][&path][method.to_lowercase()]["responses"]
            .as_object()
            .expect("responses")
            .keys()
            .filter_map(|s| s.parse::<u16>().ok())
            .filter(|s| (200..300).contains(s))
            .collect();
        for success in successes {
            if [
                ("/v1/functions/{function}/invoke", "POST", 200),
                ("/v1/webhooks/{token}", "POST", 200),
                // No scheduler in this walk: a run never ends (the e2e tests get the 200).
                ("/v1/pipelines/{pipeline}/invoke", "POST", 200),
            ]
            .contains(&(path.as_str(), method.as_str(), success))
            {
                continue;
            }
            assert!(
                statuses.contains(&success),
                "the walk never got {success} from {method} {path} (got {statuses:?})"
            );
        }
    }
    let all: BTreeSet<u16> = seen.values().flatten().copied().collect();
    for status in [200, 201, 202, 204, 400, 401, 403, 404, 409, 413, 415, 503] {
        assert!(all.contains(&status), "the walk never got a {status}");
    }
    drop(seen);
    let _ = std::fs::remove_dir_all(key_dir);
}

/// The checker itself fails on drift: a field the document does not know, a missing one, a
/// status it does not list, each named in the message.
#[actix_web::test]
async fn the_checker_names_what_drifted() {
    let api = TestApi::start().await;
    let c = Contract::new();
    api.runtime("py", json!({})).await;
    let reply = api.send(get("/v1/runtimes/py").by(ADMIN)).await;
    c.check("/v1/runtimes/{id}", &reply);
    let pointer = "#/paths/~1v1~1runtimes~1{id}/get/responses/200/content/application~1json/schema";
    let message = |instance: Value| {
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            c.validate(pointer, &instance, "drift")
        }))
        .expect_err("the checker must refuse it");
        caught.downcast_ref::<String>().cloned().unwrap_or_default()
    };
    let mut added = reply.json();
    added["runtime"]["cpu_ms"] = json!(12);
    assert!(
        message(added).contains("cpu_ms"),
        "an undocumented field is named"
    );
    let mut removed = reply.json();
    removed["runtime"]
        .as_object_mut()
        .expect("object")
        .remove("kind");
    assert!(
        message(removed).contains("kind"),
        "a missing field is named"
    );
    let mut retyped = reply.json();
    retyped["runtime"]["created_at"] = json!("yesterday");
    assert!(
        message(retyped).contains("created_at"),
        "a wrong format is named"
    );
    // A status the operation does not list.
    let teapot = api.send(get("/v1/runtimes/py").by(ADMIN)).await;
    let teapot = Reply {
        status: StatusCode::IM_A_TEAPOT,
        ..teapot
    };
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        c.check("/v1/runtimes/{id}", &teapot);
    }))
    .expect_err("an undocumented status must be refused");
    let text = caught.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(text.contains("answered 418"), "{text}");
}
