use super::*;
use crate::NoAuth;

fn caller(token: &str) -> Context {
    NoAuth::default()
        .parse(token)
        .unwrap_or_else(|e| panic!("{token}: {e}"))
}

/// The rule names the API uses; the defaults must define exactly these plus the base rules.
const ACTIONS: &[&str] = &[
    "runtime:create",
    "runtime:list",
    "runtime:show",
    "runtime:update",
    "runtime:delete",
    "function:create",
    "function:create:custom_image",
    "function:list",
    "function:show",
    "function:update",
    "function:delete",
    "function:download",
    "function:invoke",
    "function_version:create",
    "function_version:list",
    "function_version:show",
    "function_version:delete",
    "function_alias:create",
    "function_alias:comparison",
    "function_alias:list",
    "function_alias:show",
    "function_alias:update",
    "function_alias:delete",
    "function_event_config:show",
    "function_event_config:update",
    "function_event_config:delete",
    "function_dead_letter:list",
    "function_dead_letter:replay",
    "trigger:create",
    "trigger:list",
    "trigger:show",
    "trigger:update",
    "trigger:delete",
    "hook:create",
    "hook:list",
    "hook:show",
    "hook:delete",
    "hook:show_internals",
    "hook:manage_cloud",
    "pipeline:create",
    "pipeline:list",
    "pipeline:show",
    "pipeline:update",
    "pipeline:delete",
    "pipeline:invoke",
    "pipeline_run:list",
    "pipeline_run:show",
    "execution:list",
    "execution:show",
    "execution:log",
    "execution:delete",
    "quota:show",
    "quota:update",
    "quota:delete",
    "usage:show",
    "agent:list",
    "all_projects",
    "execution:show_platform_details",
];

/// A system-scoped caller with `roles` (noauth tokens are always project-scoped).
fn system(roles: &[&str]) -> Context {
    let mut ctx = caller("s:p0:reader");
    ctx.project_id = None;
    ctx.project_name = None;
    ctx.project_domain_id = None;
    ctx.system_scope = Some("all".into());
    ctx.roles = crate::context::normalize_roles(roles);
    ctx
}

/// Who the defaults let through, on an object of project p1: (reader of p1, member of p1,
/// reader of p2, member of p2, admin of p2 (a project admin), admin of p1 (a project admin, on
/// its own project), cloud admin (admin on the admin project), system admin, system reader).
fn expected(rule: &str) -> [bool; 9] {
    let read = [true, true, false, false, false, true, true, true, true];
    let write = [false, true, false, false, false, true, true, true, false];
    let admin = [false, false, false, false, false, false, true, true, false];
    let cloud_read = [false, false, false, false, false, false, true, true, true];
    let project_admin = [false, false, false, false, false, true, true, true, false];
    match rule {
        "runtime:list" | "runtime:show" => read,
        r if r.starts_with("runtime:") => admin,
        "quota:show" | "usage:show" => read,
        r if r.starts_with("quota:") => admin,
        "agent:list" | "all_projects" | "execution:show_platform_details" => cloud_read,
        "function:create:custom_image" | "hook:create" | "hook:delete" | "hook:show_internals" => {
            project_admin
        }
        "hook:manage_cloud" => admin,
        r if r.ends_with(":list")
            || r.ends_with(":show")
            || r.ends_with(":log")
            || r == "function:download"
            || r == "function_alias:comparison" =>
        {
            read
        }
        _ => write,
    }
}

#[test]
fn defaults_define_every_action_with_its_personas() {
    let enforcer = Enforcer::defaults();
    let callers = [
        caller("r:p1:reader"),
        caller("m:p1:member"),
        caller("r:p2:reader"),
        caller("m:p2:member"),
        caller("a:p2:admin"),
        caller("a:p1:admin"),
        caller("c:admin:admin"),
        system(&["admin"]),
        system(&["reader"]),
    ];
    assert!(callers[6].is_cloud_admin() && !callers[5].is_cloud_admin());
    let target = Target::project("p1");
    for rule in ACTIONS {
        let got: Vec<bool> = callers
            .iter()
            .map(|c| enforcer.check(rule, c, &target).expect("known rule"))
            .collect();
        assert_eq!(got, expected(rule), "rule {rule}");
    }
    let actions: Vec<&str> = DEFAULT_RULES
        .iter()
        .filter(|r| !r.operations.is_empty())
        .map(|r| r.name)
        .collect();
    let mut sorted = ACTIONS.to_vec();
    sorted.sort_unstable();
    let mut defined = actions.clone();
    defined.sort_unstable();
    assert_eq!(
        defined, sorted,
        "every action rule has operations, and only those"
    );
    for rule in DEFAULT_RULES {
        assert!(
            !rule.description.is_empty(),
            "{} has no description",
            rule.name
        );
    }
}

#[test]
fn enforce_names_the_refused_rule_and_unknown_rules_are_errors() {
    let enforcer = Enforcer::defaults();
    let reader = caller("r:p1:reader");
    let err = enforcer
        .enforce("function:create", &reader, &Target::project("p1"))
        .expect_err("reader cannot create");
    assert_eq!(
        err.to_string(),
        "policy does not allow function:create to be performed"
    );
    assert_eq!(
        enforcer.enforce("function:frobnicate", &reader, &Target::project("p1")),
        Err(PolicyError::UnknownRule("function:frobnicate".into()))
    );
    // A target without a project matches no project rule.
    assert!(enforcer
        .enforce("function:list", &reader, &Target::default())
        .is_err());
    assert!(enforcer
        .enforce("function:list", &reader, &Target::own(&reader))
        .is_ok());
}

#[test]
fn overrides_replace_defaults_and_may_add_rules() {
    let yaml = r#"
# Only members may read, and an auditor role may list everything.
"auditor": "role:auditor"
"function:list": "rule:project_member_or_admin or rule:auditor"
"function:show": ""
"agent:list": "@"
"runtime:create": "!"
"#;
    let enforcer = Enforcer::from_yaml(yaml, "test.yaml").expect("valid overrides");
    let target = Target::project("p1");
    let reader = caller("r:p1:reader");
    let auditor = caller("x:p9:auditor");
    let admin = caller("a:p1:admin");
    assert!(enforcer.enforce("function:list", &reader, &target).is_err());
    assert!(enforcer.enforce("function:list", &auditor, &target).is_ok());
    assert!(enforcer.enforce("function:show", &auditor, &target).is_ok());
    assert!(enforcer.enforce("agent:list", &reader, &target).is_ok());
    assert!(enforcer.enforce("runtime:create", &admin, &target).is_err());
    assert!(
        enforcer
            .enforce("function:create", &reader, &target)
            .is_err(),
        "defaults stay"
    );
    assert_eq!(enforcer.rule("function:show"), Some(""));
    let mut overridden: Vec<&str> = enforcer.overridden().collect();
    overridden.sort_unstable();
    assert_eq!(
        overridden,
        [
            "agent:list",
            "auditor",
            "function:list",
            "function:show",
            "runtime:create"
        ]
    );
}

fn load_error(yaml: &str) -> String {
    match Enforcer::from_yaml(yaml, "/etc/fresco/policy.yaml") {
        Ok(_) => panic!("{yaml:?} loaded"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_policy_files_are_refused_naming_the_rule() {
    let cases = [
        (
            r#""function:list": "role:reader and""#,
            "/etc/fresco/policy.yaml: rule \"function:list\": expected a check at offset 15",
        ),
        (
            r#""function:list": "rule:nope""#,
            "rule \"function:list\": unknown rule \"nope\"",
        ),
        (
            "\"a\": \"rule:b\"\n\"b\": \"rule:a\"",
            "the rule refers to itself",
        ),
        (
            "\"admin_required\": \"rule:project_member_or_admin\"",
            "the rule refers to itself",
        ),
        (
            "\"function:list\": 3",
            "rule \"function:list\": the rule must be a string",
        ),
        ("- a\n- b", "expected a mapping of rule names to rules"),
        ("\"a\": [unclosed", "policy file /etc/fresco/policy.yaml"),
        ("1: \"@\"", "rule names must be strings"),
    ];
    for (yaml, expected) in cases {
        let message = load_error(yaml);
        assert!(
            message.contains(expected),
            "{yaml:?}: {message:?} lacks {expected:?}"
        );
    }
    // An empty file, or one with only comments, means no overrides.
    for empty in ["", "# nothing\n"] {
        let enforcer = Enforcer::from_yaml(empty, "empty").expect("empty policy");
        assert_eq!(enforcer.overridden().count(), 0);
    }
}

#[test]
fn the_default_policy_yaml_documents_and_round_trips() {
    let yaml = default_policy_yaml();
    for rule in DEFAULT_RULES {
        assert!(
            yaml.contains(&format!("#\"{}\": ", rule.name)),
            "{}",
            rule.name
        );
        assert!(yaml.contains(rule.description), "{}", rule.name);
    }
    assert!(yaml.contains("# POST /v1/functions/{function_id}/invoke\n"));
    // Uncommented, it is a valid policy file equal to the defaults.
    let uncommented: String = yaml
        .lines()
        .filter_map(|l| l.strip_prefix("#\""))
        .map(|l| format!("\"{l}\n"))
        .collect();
    let enforcer = Enforcer::from_yaml(&uncommented, "round trip").expect("loads");
    assert_eq!(enforcer.overridden().count(), DEFAULT_RULES.len());
    for rule in DEFAULT_RULES {
        assert_eq!(enforcer.rule(rule.name), Some(rule.check), "{}", rule.name);
    }
}

#[test]
fn files_load_and_a_missing_file_means_the_defaults() {
    let dir = std::env::temp_dir().join(format!("fresco-auth-policy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let missing = dir.join("missing.yaml");
    let enforcer = Enforcer::from_file(&missing).expect("defaults");
    assert_eq!(enforcer.overridden().count(), 0);

    let file = dir.join("policy.yaml");
    std::fs::write(&file, "\"agent:list\": \"role:reader\"\n").expect("write");
    let mut raw = RawConfig::default();
    raw.set("oslo_policy", "policy_file", &file.display().to_string());
    let enforcer = Enforcer::from_config(&raw).expect("loads");
    assert!(enforcer
        .enforce("agent:list", &caller("r:p1:reader"), &Target::project("p1"))
        .is_ok());

    std::fs::write(&file, "\"agent:list\": \"role:\"\n").expect("write");
    let err = Enforcer::from_config(&raw)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("policy.yaml: rule \"agent:list\": empty value"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).expect("cleanup");
}
