//! JSON renderings of domain objects. Only this module decides what the API shows; storage
//! rows are not `Serialize`.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::domain::functions::FunctionDetail;
use crate::domain::quotas::{QuotaReport, RESOURCES};
use crate::domain::versions::VersionDetail;
use fresco_store::agents::Agent;
use fresco_store::aliases::Alias;
use fresco_store::event_configs::{DeadLetter, EventConfig};
use fresco_store::executions::{ExecutionSummary, Usage};
use fresco_store::functions::CodeInfo;
use fresco_store::pipelines::definition::Definition;
use fresco_store::pipelines::{Pipeline, Run, StepExecution};
use fresco_store::runtimes::Runtime;
use fresco_store::shadows::{Comparison, Sample};
use fresco_store::triggers::Trigger;

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn opt_time(t: Option<DateTime<Utc>>) -> Option<String> {
    t.map(time)
}

#[derive(Serialize)]
pub struct RuntimeView {
    id: Uuid,
    name: String,
    image: String,
    kind: String,
    description: String,
    is_public: bool,
    project_id: String,
    status: String,
    network: bool,
    memory_min_mb: i32,
    memory_max_mb: i32,
    timeout_max_s: i32,
    created_at: String,
    updated_at: String,
}

impl From<Runtime> for RuntimeView {
    fn from(r: Runtime) -> Self {
        RuntimeView {
            id: r.id,
            name: r.name,
            image: r.image,
            kind: r.kind,
            description: r.description,
            is_public: r.is_public,
            project_id: r.project_id,
            status: r.status,
            network: r.network,
            memory_min_mb: r.memory_min_mb,
            memory_max_mb: r.memory_max_mb,
            timeout_max_s: r.timeout_max_s,
            created_at: time(r.created_at),
            updated_at: time(r.updated_at),
        }
    }
}

#[derive(Serialize)]
pub struct CodeView {
    sha256: String,
    size: i64,
    format: String,
}

impl From<CodeInfo> for CodeView {
    fn from(c: CodeInfo) -> Self {
        CodeView {
            sha256: c.sha256,
            size: c.size,
            format: c.format,
        }
    }
}

#[derive(Serialize)]
pub struct FunctionView {
    id: Uuid,
    name: String,
    project_id: String,
    runtime_id: Option<Uuid>,
    image: Option<String>,
    handler: String,
    memory_mb: i32,
    timeout_s: i32,
    environment: Value,
    description: String,
    code: Option<CodeView>,
    latest_version: i32,
    created_at: String,
    updated_at: String,
}

impl From<FunctionDetail> for FunctionView {
    fn from(d: FunctionDetail) -> Self {
        let f = d.function;
        FunctionView {
            id: f.id,
            name: f.name,
            project_id: f.project_id,
            runtime_id: f.runtime_id,
            image: f.image,
            handler: f.handler,
            memory_mb: f.memory_mb,
            timeout_s: f.timeout_s,
            environment: f.environment,
            description: f.description,
            code: d.code.map(CodeView::from),
            latest_version: f.latest_version,
            created_at: time(f.created_at),
            updated_at: time(f.updated_at),
        }
    }
}

#[derive(Serialize)]
pub struct VersionView {
    function_id: Uuid,
    version: i32,
    description: String,
    runtime_id: Option<Uuid>,
    image: Option<String>,
    handler: String,
    memory_mb: i32,
    timeout_s: i32,
    environment: Value,
    code: Option<CodeView>,
    created_at: String,
}

impl From<VersionDetail> for VersionView {
    fn from(d: VersionDetail) -> Self {
        let v = d.version;
        VersionView {
            function_id: v.function_id,
            version: v.version,
            description: v.description,
            runtime_id: v.runtime_id,
            image: v.image,
            handler: v.handler,
            memory_mb: v.memory_mb,
            timeout_s: v.timeout_s,
            environment: v.environment,
            code: d.code.map(CodeView::from),
            created_at: time(v.created_at),
        }
    }
}

#[derive(Serialize)]
pub struct AliasView {
    function_id: Uuid,
    name: String,
    version: i32,
    second_version: Option<i32>,
    second_weight: i32,
    shadow_version: Option<i32>,
    shadow_percent: i32,
    description: String,
    created_at: String,
    updated_at: String,
}

impl From<Alias> for AliasView {
    fn from(a: Alias) -> Self {
        AliasView {
            function_id: a.function_id,
            name: a.name,
            version: a.version,
            second_version: a.second_version,
            second_weight: a.second_weight,
            shadow_version: a.shadow_version,
            shadow_percent: a.shadow_percent,
            description: a.description,
            created_at: time(a.created_at),
            updated_at: time(a.updated_at),
        }
    }
}

/// An alias's comparison of its shadow version with its primary.
#[derive(Serialize)]
pub struct ComparisonView {
    function_id: Uuid,
    alias: String,
    /// The versions compared in the current period (`null` without a shadow).
    version: Option<i32>,
    shadow_version: Option<i32>,
    shadow_percent: i32,
    same: i64,
    different: i64,
    shadow_error: i64,
    primary_error: i64,
    skipped: i64,
    /// When the counts started (`null` without a shadow).
    since: Option<String>,
    updated_at: Option<String>,
    sample: Vec<ComparisonSampleView>,
}

#[derive(Serialize)]
pub struct ComparisonSampleView {
    execution_id: Uuid,
    primary_execution_id: Uuid,
    kind: String,
    input: String,
    primary_status: String,
    primary_result: String,
    shadow_status: String,
    shadow_result: String,
    truncated: bool,
    created_at: String,
}

impl ComparisonView {
    pub fn new(alias: Alias, current: Option<Comparison>, sample: Vec<Sample>) -> Self {
        let counts = current.as_ref();
        let count = |f: fn(&Comparison) -> i64| counts.map_or(0, f);
        ComparisonView {
            function_id: alias.function_id,
            alias: alias.name,
            version: counts.map(|c| c.version),
            shadow_version: counts.map(|c| c.shadow_version),
            shadow_percent: alias.shadow_percent,
            same: count(|c| c.same),
            different: count(|c| c.different),
            shadow_error: count(|c| c.shadow_error),
            primary_error: count(|c| c.primary_error),
            skipped: count(|c| c.skipped),
            since: counts.map(|c| time(c.since)),
            updated_at: counts.map(|c| time(c.updated_at)),
            sample: sample
                .into_iter()
                .map(|s| ComparisonSampleView {
                    execution_id: s.execution_id,
                    primary_execution_id: s.primary_execution_id,
                    kind: s.kind,
                    input: s.input,
                    primary_status: s.primary_status,
                    primary_result: s.primary_result,
                    shadow_status: s.shadow_status,
                    shadow_result: s.shadow_result,
                    truncated: s.truncated,
                    created_at: time(s.created_at),
                })
                .collect(),
        }
    }
}

#[derive(Serialize)]
pub struct ExecutionView {
    id: Uuid,
    project_id: String,
    function_id: Uuid,
    function_version: i32,
    alias: Option<String>,
    status: &'static str,
    is_async: bool,
    input_size: i32,
    result: Option<String>,
    error: Option<Value>,
    duration_ms: Option<f64>,
    max_memory_mb: Option<f64>,
    cpu_ms: Option<f64>,
    init_duration_ms: Option<f64>,
    memory_mb: i32,
    cold: Option<bool>,
    /// The agent that ran it (`null` when none did yet); left out for callers who may not
    /// see platform details.
    #[serde(skip_serializing_if = "Option::is_none")]
    agent_id: Option<Option<String>>,
    attempts: i32,
    created_at: String,
    started_at: Option<String>,
    finished_at: Option<String>,
}

impl From<ExecutionSummary> for ExecutionView {
    fn from(e: ExecutionSummary) -> Self {
        ExecutionView {
            id: e.id,
            project_id: e.project_id,
            function_id: e.function_id,
            function_version: e.function_version,
            alias: e.alias,
            status: e.status.as_str(),
            is_async: e.is_async,
            input_size: e.input_size,
            result: e.result,
            error: e.error,
            duration_ms: e.duration_ms,
            max_memory_mb: e.max_memory_mb,
            cpu_ms: e.cpu_ms,
            init_duration_ms: e.init_duration_ms,
            memory_mb: e.memory_mb,
            cold: e.cold,
            agent_id: Some(e.agent_id),
            attempts: e.attempts,
            created_at: time(e.created_at),
            started_at: opt_time(e.started_at),
            finished_at: opt_time(e.finished_at),
        }
    }
}

/// What a caller who may not see platform details reads instead of the platform's own error
/// text (which names agents, their URLs and the engine's messages).
pub const PLATFORM_ERROR_MESSAGE: &str =
    "the platform could not run the execution; an administrator can see why";

/// Whether an error body (`{"errorType", "errorMessage"}`) is the platform's own, not the
/// function's: `Platform.*` from the API and the agents, `PlatformError` from the scheduler.
pub fn is_platform_error(error: &Value) -> bool {
    error
        .get("errorType")
        .and_then(Value::as_str)
        .is_some_and(|t| t.starts_with("Platform"))
}

/// Replaces a platform error's text with [`PLATFORM_ERROR_MESSAGE`]; other errors (the
/// function's own) are left as they are.
pub fn redact_platform_error(error: &mut Value) {
    if is_platform_error(error) {
        if let Some(fields) = error.as_object_mut() {
            fields.insert("errorMessage".into(), Value::from(PLATFORM_ERROR_MESSAGE));
            fields.remove("stackTrace");
        }
    }
}

impl ExecutionView {
    /// The view as `details` allows (the `execution:show_platform_details` rule): without it,
    /// no agent id and no platform error text.
    pub fn shown(mut self, details: bool) -> Self {
        if !details {
            self.agent_id = None;
            if let Some(error) = self.error.as_mut() {
                redact_platform_error(error);
            }
        }
        self
    }
}

/// `{"project_id", "<resource>": {"limit", "in_use"?}, ...}`
pub fn quota(report: &QuotaReport) -> Value {
    let mut out = serde_json::Map::new();
    out.insert(
        "project_id".into(),
        Value::String(report.project_id.clone()),
    );
    for resource in RESOURCES {
        let mut entry = serde_json::Map::new();
        entry.insert(
            "limit".into(),
            report.limits.get(resource).unwrap_or(-1).into(),
        );
        let in_use = match *resource {
            "functions" => Some(report.functions_in_use),
            "code_bytes" => Some(report.code_bytes_in_use),
            "concurrent_executions" => Some(report.executions_in_flight),
            "queued_executions" => Some(report.executions_queued),
            "triggers" => Some(report.triggers_in_use),
            "pipelines" => Some(report.pipelines_in_use),
            _ => None,
        };
        if let Some(in_use) = in_use {
            entry.insert("in_use".into(), in_use.into());
        }
        out.insert((*resource).into(), Value::Object(entry));
    }
    Value::Object(out)
}

pub fn usage(project_id: &str, usage: &Usage) -> Value {
    let total: i64 = usage.by_status.iter().map(|(_, n)| n).sum();
    let by_status: serde_json::Map<String, Value> = usage
        .by_status
        .iter()
        .map(|(s, n)| (s.as_str().to_owned(), (*n).into()))
        .collect();
    serde_json::json!({
        "project_id": project_id,
        "executions": total,
        "gb_seconds": usage.gb_seconds,
        "by_status": by_status,
    })
}

pub fn agent(a: Agent) -> Value {
    serde_json::json!({
        "id": a.id,
        "host": a.host,
        "url": a.url,
        "state": a.state,
        "memory_mb_total": a.memory_mb_total,
        "memory_mb_reserved": a.memory_mb_reserved,
        "cpus": a.cpus,
        "running": a.running,
        "warm": a.warm,
        "images": a.images,
        "version": a.version,
        "last_heartbeat": time(a.last_heartbeat),
    })
}

#[derive(Serialize)]
pub struct TriggerView {
    id: Uuid,
    name: String,
    project_id: String,
    #[serde(rename = "type")]
    kind: String,
    function_id: Uuid,
    version: Option<i32>,
    alias: Option<String>,
    input: Value,
    enabled: bool,
    description: String,
    cron: Option<String>,
    timezone: Option<String>,
    next_run_at: Option<String>,
    last_run_at: Option<String>,
    last_error: Option<String>,
    webhook_url: Option<String>,
    /// Whether calls must be signed; the secret itself is never shown.
    has_secret: bool,
    rate_limit: i32,
    sync: bool,
    /// notification: the event types (patterns with `*`) it fires on.
    event_types: Option<Vec<String>>,
    created_at: String,
    updated_at: String,
}

impl TriggerView {
    /// The view of `t`, its webhook URL under `base_url`.
    pub fn new(t: Trigger, base_url: &str) -> Self {
        TriggerView {
            webhook_url: t
                .webhook_token
                .map(|token| format!("{}/v1/webhooks/{token}", base_url.trim_end_matches('/'))),
            has_secret: t.secret.is_some(),
            id: t.id,
            name: t.name,
            project_id: t.project_id,
            kind: t.kind,
            function_id: t.function_id,
            version: t.function_version,
            alias: t.alias,
            input: t.input,
            enabled: t.enabled,
            description: t.description,
            cron: t.cron,
            timezone: t.timezone,
            next_run_at: opt_time(t.next_run_at),
            last_run_at: opt_time(t.last_run_at),
            last_error: t.last_error,
            rate_limit: t.rate_limit,
            sync: t.sync,
            event_types: t.event_types,
            created_at: time(t.created_at),
            updated_at: time(t.updated_at),
        }
    }
}

#[derive(Serialize)]
pub struct EventConfigView {
    function_id: Uuid,
    max_attempts: i32,
    max_event_age_s: Option<i32>,
    on_success: Option<Uuid>,
    on_failure: Option<Uuid>,
    dead_letter: bool,
    updated_at: String,
}

impl From<EventConfig> for EventConfigView {
    fn from(c: EventConfig) -> Self {
        EventConfigView {
            function_id: c.function_id,
            max_attempts: c.max_attempts,
            max_event_age_s: c.max_event_age_s,
            on_success: c.on_success,
            on_failure: c.on_failure,
            dead_letter: c.dead_letter,
            updated_at: time(c.updated_at),
        }
    }
}

#[derive(Serialize)]
pub struct DeadLetterView {
    id: Uuid,
    function_id: Uuid,
    execution_id: Uuid,
    /// The event, as JSON when it is JSON, else as text.
    event: Value,
    status: String,
    error: Option<Value>,
    attempts: i32,
    created_at: String,
}

impl From<DeadLetter> for DeadLetterView {
    fn from(d: DeadLetter) -> Self {
        let event = d.input.as_deref().map_or(Value::Null, |bytes| {
            serde_json::from_slice(bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
        });
        let mut error = d.error;
        if let Some(error) = &mut error {
            redact_platform_error(error);
        }
        DeadLetterView {
            id: d.id,
            function_id: d.function_id,
            execution_id: d.execution_id,
            event,
            status: d.status,
            error,
            attempts: d.attempts,
            created_at: time(d.created_at),
        }
    }
}

/// A hook as the caller may see it: its kind, owner and fail mode always; its internals
/// (function, version, alias, description, author) only for who may manage it (see
/// `domain::hooks::Authority`).
#[derive(Serialize)]
pub struct HookView {
    id: Uuid,
    project_id: String,
    kind: String,
    owner: String,
    fail_mode: String,
    redact: bool,
    created_at: String,
    /// The internals are withheld from this caller.
    internals_hidden: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    function_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    alias: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    created_by: Option<String>,
}

impl HookView {
    pub fn new(h: fresco_store::hooks::Hook, internals: bool) -> Self {
        HookView {
            id: h.id,
            project_id: h.project_id,
            kind: h.kind,
            owner: h.owner,
            fail_mode: h.fail_mode,
            redact: h.redact,
            created_at: time(h.created_at),
            internals_hidden: !internals,
            function_id: internals.then_some(h.function_id),
            version: h.function_version.filter(|_| internals),
            alias: h.alias.filter(|_| internals),
            description: internals.then_some(h.description),
            created_by: internals.then_some(h.created_by),
        }
    }
}
#[derive(Serialize)]
pub struct PipelineView {
    id: Uuid,
    name: String,
    project_id: String,
    version: i32,
    description: String,
    /// The steps and handlers, each task with its function's name and id.
    steps: Value,
    handlers: Value,
    created_at: String,
    updated_at: String,
}

impl From<Pipeline> for PipelineView {
    fn from(p: Pipeline) -> Self {
        let mut definition = p.definition;
        let steps = definition
            .get_mut("steps")
            .map(Value::take)
            .unwrap_or_else(|| Value::Array(Vec::new()));
        let handlers = definition
            .get_mut("handlers")
            .map(Value::take)
            .unwrap_or_else(|| Value::Array(Vec::new()));
        PipelineView {
            id: p.id,
            name: p.name,
            project_id: p.project_id,
            version: p.version,
            description: p.description,
            steps,
            handlers,
            created_at: time(p.created_at),
            updated_at: time(p.updated_at),
        }
    }
}

#[derive(Serialize)]
pub struct PipelineStepView {
    /// Where the step is in the definition (`1`, `0.b1.0`, `2.i3.0`, `0!handler`).
    step: String,
    name: Option<String>,
    attempt: i32,
    execution_id: Uuid,
    status: String,
    function_id: Uuid,
    function_version: i32,
    created_at: String,
    started_at: Option<String>,
    finished_at: Option<String>,
    duration_ms: Option<f64>,
}

#[derive(Serialize)]
pub struct PipelineRunView {
    id: Uuid,
    project_id: String,
    pipeline_id: Uuid,
    pipeline_name: String,
    pipeline_version: i32,
    status: String,
    result: Option<Value>,
    error: Option<Value>,
    created_at: String,
    finished_at: Option<String>,
    duration_ms: Option<f64>,
    /// Only when one run is shown.
    #[serde(skip_serializing_if = "Option::is_none")]
    input: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    steps: Option<Vec<PipelineStepView>>,
}

impl PipelineRunView {
    /// A run as listed: no input, no steps.
    pub fn summary(r: Run) -> Self {
        PipelineRunView {
            duration_ms: r
                .finished_at
                .map(|end| (end - r.created_at).num_microseconds().unwrap_or(0) as f64 / 1000.0),
            id: r.id,
            project_id: r.project_id,
            pipeline_id: r.pipeline_id,
            pipeline_name: r.pipeline_name,
            pipeline_version: r.pipeline_version,
            status: r.status,
            result: r.result,
            error: r.error,
            created_at: time(r.created_at),
            finished_at: opt_time(r.finished_at),
            input: None,
            steps: None,
        }
    }

    /// A run with its input and each step execution.
    pub fn detail(r: Run, steps: Vec<StepExecution>) -> Self {
        let definition: Option<Definition> = serde_json::from_value(r.definition.clone()).ok();
        let input = r.input.clone();
        let steps = steps
            .into_iter()
            .map(|s| {
                let path = s.path.unwrap_or_default();
                PipelineStepView {
                    name: definition.as_ref().and_then(|d| d.step_name(&path)),
                    step: path,
                    attempt: s.attempt.unwrap_or(1),
                    execution_id: s.id,
                    status: s.status.to_string(),
                    function_id: s.function_id,
                    function_version: s.function_version,
                    created_at: time(s.created_at),
                    started_at: opt_time(s.started_at),
                    finished_at: opt_time(s.finished_at),
                    duration_ms: s.duration_ms,
                }
            })
            .collect();
        let mut view = Self::summary(r);
        view.input = Some(input);
        view.steps = Some(steps);
        view
    }
}
