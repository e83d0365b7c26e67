//! Every policy default, in one place: one named rule per API action (Nova style), with what
//! it guards, plus the base rules they are written in. An operator overrides any of them in
//! `[oslo_policy] policy_file`; `fresco-api --print-default-policy` prints this table as YAML.
//!
//! Personas (OpenStack secure RBAC): a project's **reader** lists and shows in its project, its
//! **member** may also create, update, delete and invoke. A project's **admin** is a member of
//! that project and nothing more. A **cloud admin** — the admin role on a system-scoped token,
//! or on the cloud admin project (Keystone's `is_admin_project`) — manages runtimes, agents
//! and quotas and acts across projects; a **system reader** (the reader role, system scope)
//! reads across projects. Keystone expands implied roles (admin → member → reader), so the
//! rules name only the least role an action needs.
//!
//! The target of each rule is the object acted on: its `project_id` (for lists and creations,
//! the project listed or created in, normally the caller's own) and, where it has one, the
//! owning `user_id`. Runtimes are platform objects: `runtime:list` and `runtime:show` are
//! checked against the caller's own project; which runtimes it sees (public ones and its
//! project's private ones) is the data layer's filter.

/// A method and path template a rule guards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Operation {
    pub method: &'static str,
    pub path: &'static str,
}

/// The default of one rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleDefault {
    pub name: &'static str,
    /// The rule in the oslo.policy language.
    pub check: &'static str,
    pub description: &'static str,
    /// What the rule guards; empty for base rules.
    pub operations: &'static [Operation],
}

const fn op(method: &'static str, path: &'static str) -> Operation {
    Operation { method, path }
}

const fn base(name: &'static str, check: &'static str, description: &'static str) -> RuleDefault {
    RuleDefault {
        name,
        check,
        description,
        operations: &[],
    }
}

const fn action(
    name: &'static str,
    check: &'static str,
    description: &'static str,
    operations: &'static [Operation],
) -> RuleDefault {
    RuleDefault {
        name,
        check,
        description,
        operations,
    }
}

const ADMIN: &str = "rule:admin_required";
const CLOUD_READER: &str = "rule:cloud_reader";
const READER: &str = "rule:project_reader_or_admin";
const MEMBER: &str = "rule:project_member_or_admin";

const FUNCTION: &str = "/v1/functions/{function_id}";
const VERSIONS: &str = "/v1/functions/{function_id}/versions";
const VERSION: &str = "/v1/functions/{function_id}/versions/{version}";
const ALIASES: &str = "/v1/functions/{function_id}/aliases";
const ALIAS: &str = "/v1/functions/{function_id}/aliases/{name}";
const ALIAS_COMPARISON: &str = "/v1/functions/{function_id}/aliases/{name}/comparison";
const TRIGGERS: &str = "/v1/triggers";
const TRIGGER: &str = "/v1/triggers/{trigger_id}";
const PIPELINES: &str = "/v1/pipelines";
const PIPELINE: &str = "/v1/pipelines/{pipeline_id}";
const PIPELINE_INVOKE: &str = "/v1/pipelines/{pipeline_id}/invoke";
const PIPELINE_RUNS: &str = "/v1/pipeline-runs";
const PIPELINE_RUN: &str = "/v1/pipeline-runs/{run_id}";
const EVENT_CONFIG: &str = "/v1/functions/{function_id}/event-config";
const HOOKS: &str = "/v1/hooks";
const HOOK: &str = "/v1/hooks/{hook_id}";
const PROJECT_ADMIN: &str = "rule:project_admin or rule:admin_required";

/// Every default rule: the base rules first, then one per API action.
pub const DEFAULT_RULES: &[RuleDefault] = &[
    base(
        "admin_required",
        "role:admin and (system_scope:all or is_admin_project:True)",
        "Base rule: a cloud administrator: the admin role on a system-scoped token or on the cloud admin project (is_admin_project); a project's own admin is not one",
    ),
    base(
        "cloud_reader",
        "(role:reader and system_scope:all) or rule:admin_required",
        "Base rule: reads across the cloud: a system-scoped reader, or a cloud administrator",
    ),
    base(
        "project_reader",
        "role:reader and project_id:%(project_id)s",
        "Base rule: the caller reads in the target's project",
    ),
    base(
        "project_member",
        "role:member and project_id:%(project_id)s",
        "Base rule: the caller is a member of the target's project",
    ),
    base(
        "project_admin",
        "role:admin and project_id:%(project_id)s",
        "Base rule: the caller is an admin of the target's project (its own, not the cloud's)",
    ),
    base(
        "project_reader_or_admin",
        "rule:project_reader or rule:cloud_reader",
        "Base rule: a reader of the target's project, or a cloud-wide reader or administrator",
    ),
    base(
        "project_member_or_admin",
        "rule:project_member or rule:admin_required",
        "Base rule: a member of the target's project, or a cloud administrator",
    ),
    action(
        "all_projects",
        CLOUD_READER,
        "See every project's objects: pass all_projects=true (and project_id=...) to lists, or name another project",
        &[
            op("GET", "/v1/functions?all_projects=true"),
            op("GET", "/v1/executions?all_projects=true"),
            op("GET", "/v1/runtimes?all_projects=true"),
        ],
    ),
    // Runtimes.
    action("runtime:create", ADMIN, "Create a runtime", &[op("POST", "/v1/runtimes")]),
    action(
        "runtime:list",
        READER,
        "List runtimes (public ones and the caller's project's private ones); target: the caller's project",
        &[op("GET", "/v1/runtimes")],
    ),
    action(
        "runtime:show",
        READER,
        "Show a runtime; target: the caller's project",
        &[op("GET", "/v1/runtimes/{runtime_id}")],
    ),
    action(
        "runtime:update",
        ADMIN,
        "Update a runtime",
        &[op("PATCH", "/v1/runtimes/{runtime_id}")],
    ),
    action(
        "runtime:delete",
        ADMIN,
        "Delete a runtime",
        &[op("DELETE", "/v1/runtimes/{runtime_id}")],
    ),
    // Functions.
    action("function:create", MEMBER, "Create a function", &[op("POST", "/v1/functions")]),
    action(
        "function:create:custom_image",
        "rule:project_admin or rule:admin_required",
        "Create a function that runs its own image (the body names \"image\", not a runtime); the image must also start with one of [api] allowed_image_prefixes",
        &[op("POST", "/v1/functions")],
    ),
    action("function:list", READER, "List functions", &[op("GET", "/v1/functions")]),
    action("function:show", READER, "Show a function", &[op("GET", FUNCTION)]),
    action(
        "function:update",
        MEMBER,
        "Update a function's settings or upload its code",
        &[op("PATCH", FUNCTION), op("PUT", "/v1/functions/{function_id}/code")],
    ),
    action(
        "function:delete",
        MEMBER,
        "Delete a function with its versions and aliases",
        &[op("DELETE", FUNCTION)],
    ),
    action(
        "function:download",
        READER,
        "Download a function's code package",
        &[op("GET", "/v1/functions/{function_id}/code")],
    ),
    action(
        "function:invoke",
        MEMBER,
        "Invoke a function, synchronously or asynchronously",
        &[op("POST", "/v1/functions/{function_id}/invoke")],
    ),
    // Versions.
    action(
        "function_version:create",
        MEMBER,
        "Publish a version of a function",
        &[op("POST", VERSIONS)],
    ),
    action(
        "function_version:list",
        READER,
        "List a function's versions",
        &[op("GET", VERSIONS)],
    ),
    action(
        "function_version:show",
        READER,
        "Show a function version",
        &[op("GET", VERSION)],
    ),
    action(
        "function_version:delete",
        MEMBER,
        "Delete a function version",
        &[op("DELETE", VERSION)],
    ),
    // Aliases.
    action(
        "function_alias:create",
        MEMBER,
        "Create an alias of a function",
        &[op("POST", ALIASES)],
    ),
    action(
        "function_alias:list",
        READER,
        "List a function's aliases",
        &[op("GET", ALIASES)],
    ),
    action("function_alias:show", READER, "Show an alias", &[op("GET", ALIAS)]),
    action(
        "function_alias:update",
        MEMBER,
        "Update an alias (its version and traffic split)",
        &[op("PATCH", ALIAS)],
    ),
    action("function_alias:delete", MEMBER, "Delete an alias", &[op("DELETE", ALIAS)]),
    action(
        "function_alias:comparison",
        READER,
        "Show how an alias's shadow version compares with its primary",
        &[op("GET", ALIAS_COMPARISON)],
    ),
    // Triggers (webhook calls themselves carry no token: their unguessable URL and optional
    // signature are the credential, so no rule guards them).
    action("trigger:create", MEMBER, "Create a trigger (cron, webhook or notification)", &[op("POST", TRIGGERS)]),
    action("trigger:list", READER, "List triggers", &[op("GET", TRIGGERS)]),
    action("trigger:show", READER, "Show a trigger", &[op("GET", TRIGGER)]),
    action("trigger:update", MEMBER, "Update a trigger", &[op("PATCH", TRIGGER)]),
    action("trigger:delete", MEMBER, "Delete a trigger", &[op("DELETE", TRIGGER)]),
    // Hooks: functions the platform chains around every invocation of a project.
    action(
        "hook:create",
        PROJECT_ADMIN,
        "Attach a pre or post hook to the target project (a project's admin: one of its own functions; a cloud administrator's hook is the cloud's, see hook:manage_cloud)",
        &[op("POST", HOOKS)],
    ),
    action(
        "hook:list",
        READER,
        "List the project's hooks (their kind, owner and fail mode; their internals only as hook:show_internals allows)",
        &[op("GET", HOOKS)],
    ),
    action(
        "hook:show",
        READER,
        "Show a hook of the project (its internals only as hook:show_internals allows)",
        &[op("GET", HOOK)],
    ),
    action(
        "hook:delete",
        PROJECT_ADMIN,
        "Detach a hook of the project (a hook of the cloud also needs hook:manage_cloud)",
        &[op("DELETE", HOOK)],
    ),
    action(
        "hook:show_internals",
        PROJECT_ADMIN,
        "See the internals (function, version, alias, description, author) of the project's own hooks",
        &[op("GET", HOOK)],
    ),
    action(
        "hook:manage_cloud",
        ADMIN,
        "Attach hooks owned by the cloud to any project, and see and remove them (a project's admin can do neither)",
        &[op("POST", HOOKS), op("DELETE", HOOK)],
    ),
    // Pipelines and their runs.
    action("pipeline:create", MEMBER, "Create a pipeline", &[op("POST", PIPELINES)]),
    action("pipeline:list", READER, "List pipelines", &[op("GET", PIPELINES)]),
    action("pipeline:show", READER, "Show a pipeline", &[op("GET", PIPELINE)]),
    action("pipeline:update", MEMBER, "Store a new version of a pipeline", &[op("PUT", PIPELINE)]),
    action("pipeline:delete", MEMBER, "Delete a pipeline", &[op("DELETE", PIPELINE)]),
    action("pipeline:invoke", MEMBER, "Run a pipeline (sync or async)", &[op("POST", PIPELINE_INVOKE)]),
    action("pipeline_run:list", READER, "List pipeline runs", &[op("GET", PIPELINE_RUNS)]),
    action("pipeline_run:show", READER, "Show a pipeline run and its steps", &[op("GET", PIPELINE_RUN)]),
    // Async invocation config and dead letters.
    action(
        "function_event_config:show",
        READER,
        "Show a function's async invocation config",
        &[op("GET", EVENT_CONFIG)],
    ),
    action(
        "function_event_config:update",
        MEMBER,
        "Set a function's async invocation config (attempts, event age, destinations)",
        &[op("PUT", EVENT_CONFIG)],
    ),
    action(
        "function_event_config:delete",
        MEMBER,
        "Remove a function's async invocation config",
        &[op("DELETE", EVENT_CONFIG)],
    ),
    action(
        "function_dead_letter:list",
        READER,
        "List a function's dead letters (failed async events)",
        &[op("GET", "/v1/functions/{function_id}/dead-letters")],
    ),
    action(
        "function_dead_letter:replay",
        MEMBER,
        "Replay a dead letter: queue its event again",
        &[op("POST", "/v1/functions/{function_id}/dead-letters/{id}/replay")],
    ),
    // Executions.
    action("execution:list", READER, "List executions", &[op("GET", "/v1/executions")]),
    action(
        "execution:show",
        READER,
        "Show an execution",
        &[op("GET", "/v1/executions/{execution_id}")],
    ),
    action(
        "execution:log",
        READER,
        "Read an execution's captured output",
        &[op("GET", "/v1/executions/{execution_id}/log")],
    ),
    action(
        "execution:delete",
        MEMBER,
        "Delete a finished execution's record",
        &[op("DELETE", "/v1/executions/{execution_id}")],
    ),
    // Quotas and usage.
    action(
        "quota:show",
        READER,
        "Show a project's quotas and usage: a reader of that project, or an administrator for any",
        &[op("GET", "/v1/quotas/{project_id}")],
    ),
    action(
        "quota:update",
        ADMIN,
        "Set a project's quotas",
        &[op("PUT", "/v1/quotas/{project_id}")],
    ),
    action(
        "quota:delete",
        ADMIN,
        "Reset a project's quotas to the defaults",
        &[op("DELETE", "/v1/quotas/{project_id}")],
    ),
    action(
        "usage:show",
        READER,
        "Show a project's usage (target: ?project_id=, default the caller's)",
        &[op("GET", "/v1/usage")],
    ),
    // Agents.
    action("agent:list", CLOUD_READER, "List compute agents", &[op("GET", "/v1/agents")]),
    action(
        "execution:show_platform_details",
        CLOUD_READER,
        "See the platform's side of executions: the agent that ran one and the platform's own error text (others see a generic message)",
        &[
            op("GET", "/v1/executions"),
            op("GET", "/v1/executions/{execution_id}"),
            op("POST", "/v1/functions/{function_id}/invoke"),
        ],
    ),
];

/// The effective default policy as YAML, every rule commented out with its description and
/// the operations it guards: a policy file template.
pub fn default_policy_yaml() -> String {
    let mut out = String::from(
        "# Fresco policy defaults, generated by `fresco-api --print-default-policy`.\n\
         # Uncomment a rule in /etc/fresco/policy.yaml ([oslo_policy] policy_file) to override it.\n\
         # Grammar (oslo.policy): role:NAME, rule:NAME, project_id:%(project_id)s,\n\
         # user_id:%(user_id)s, system_scope:all, and, or, not, (...), @ (always), ! (never);\n\
         # an empty rule \"\" always passes.\n",
    );
    for rule in DEFAULT_RULES {
        out.push_str(&format!("\n# {}\n", rule.description));
        for op in rule.operations {
            out.push_str(&format!("# {} {}\n", op.method, op.path));
        }
        out.push_str(&format!(
            "#{}: {}\n",
            yaml_quote(rule.name),
            yaml_quote(rule.check)
        ));
    }
    out
}

fn yaml_quote(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}
