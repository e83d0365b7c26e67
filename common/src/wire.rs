//! Messages between fresco-api, fresco-scheduler and fresco-agent (JSON over loopback HTTP).
//! These types are a protocol: changing a field is a compatibility decision.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

/// Everything an agent needs to run one version of a function. Travels inside the signed
/// ticket, so an agent runs exactly what the control plane scheduled and nothing else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionSpec {
    pub project_id: String,
    pub function_id: Uuid,
    pub function_name: String,
    /// Published version number; 0 is the function's latest (unpublished) state.
    pub version: i32,
    /// Docker image of the runtime (or the function's own image when it has no runtime).
    pub image: String,
    /// How the image runs code: `python`, `provided` or `image` (see `RuntimeKind`).
    pub runtime_kind: String,
    /// Handler as the runtime understands it, e.g. `main.handler`.
    pub handler: String,
    pub memory_mb: i32,
    pub timeout_s: i32,
    /// Environment variables set for the function.
    pub environment: std::collections::BTreeMap<String, String>,
    /// sha256 of the code package (hex), absent for image functions.
    pub code_sha256: Option<String>,
    /// Whether the runtime's operator allowed network access.
    pub network: bool,
    /// Revision of the function's settings and code this spec was resolved from (version 0
    /// only; published versions are immutable and carry 0). A `RetiredKey` with
    /// `below_revision` retires the containers of older revisions. Absent in specs written
    /// before revisions existed, which count as the oldest.
    #[serde(default)]
    pub revision: i64,
}

impl FunctionSpec {
    /// Key for warm-container affinity: containers are reused only for the same code and settings.
    pub fn warm_key(&self) -> String {
        format!("{}:{}", self.function_id, self.version)
    }
}

/// The API asks the scheduler where to run an execution (POST /v1/placements).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlacementRequest {
    pub execution_id: Uuid,
    /// sha256 (hex) of the event the execution runs with (`ticket::sha256_hex` of the
    /// `RunRequest` payload's text): the ticket is bound to it.
    pub payload_sha256: String,
    pub spec: FunctionSpec,
    /// Per-project limits the scheduler enforces (from the project's quotas).
    pub concurrent_limit: i64,
    pub per_minute_limit: i64,
}

/// The API asks the scheduler for a grant (POST /v1/grants): the right to run one function
/// on one agent, several at once, without asking again until it runs out.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GrantRequest {
    pub spec: FunctionSpec,
    /// Per-project limits the scheduler enforces (from the project's quotas).
    pub concurrent_limit: i64,
    pub per_minute_limit: i64,
    /// Invocations the caller would like to run at once (the scheduler may give fewer).
    pub slots: u32,
    /// Invocations the caller would like to start in all (the scheduler may give fewer).
    pub invocations: u32,
}

/// A grant (see `ticket::GrantClaims`): where, how many at once, how many in all, how long.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GrantAnswer {
    pub grant_id: Uuid,
    pub agent_id: String,
    pub agent_url: String,
    /// The grant token the agent checks (`Authorization: Grant <token>`).
    pub token: String,
    pub slots: u32,
    pub invocations: u32,
    /// Milliseconds the grant may be used for (its token's `exp` is no earlier).
    pub ttl_ms: u64,
    /// The agent reported an idle warm container for this function version.
    pub warm: bool,
}

/// Sent with a grant given back before it expired (POST /v1/grants/{id}/return).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GrantReturn {
    /// Invocations started under it; the rest of its budget counts against the rate no more.
    pub used: Option<u32>,
}

/// Header naming the execution a run under a grant is for (a UUID the caller chooses; an
/// agent accepts each once per grant).
pub const EXECUTION_ID_HEADER: &str = "x-fresco-execution-id";

/// Where to run it, and the ticket that lets the caller ask that agent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Placement {
    pub lease_id: Uuid,
    pub agent_id: String,
    pub agent_url: String,
    pub ticket: String,
    /// The agent reported an idle warm container for this function version.
    pub warm: bool,
}

/// Sent to an agent's POST /v1/run with the ticket as a bearer token.
#[derive(Debug, Serialize, Deserialize)]
pub struct RunRequest {
    /// The event handed to the function, as JSON text.
    pub payload: Box<RawValue>,
}

/// How an execution ended, as the agent reports it. Its text as stored and shown is
/// `fresco_store::ExecutionStatus`'s (`From<RunStatus>`), the one place statuses are spelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Succeeded,
    /// The function raised or reported an error.
    Failed,
    /// The wall-clock timeout killed it.
    Timeout,
    /// The kernel killed it for exceeding its memory.
    Oom,
    /// The platform could not run it (image missing, container failed to start, ...).
    Error,
}

/// A function's structured error, as the Lambda Runtime API reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionError {
    #[serde(rename = "errorType")]
    pub error_type: String,
    #[serde(rename = "errorMessage")]
    pub error_message: String,
    #[serde(rename = "stackTrace", default, skip_serializing_if = "Vec::is_empty")]
    pub stack_trace: Vec<String>,
}

/// Header of an agent's 503 answer to a run request that it refused before any of the
/// function ran: `engine-unavailable` (its container engine does not answer; its heartbeats
/// say `engine_down` until it does), `no-capacity` (it has no room, whatever the scheduler
/// thought), `shutting-down`, `no-image` (the function's image is not on that node). The caller
/// may run the execution elsewhere.
pub const NOT_RUN_HEADER: &str = "x-fresco-not-run";

/// What an agent answers to a run request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResult {
    pub execution_id: Uuid,
    pub status: RunStatus,
    /// The function's response body (JSON text) when it succeeded.
    pub response: Option<String>,
    pub error: Option<FunctionError>,
    /// Wall-clock time of the invocation inside the agent, in milliseconds.
    pub duration_ms: f64,
    /// A cold or pre-warmed start: the time the runtime spent initialising before it took
    /// the event (a cold one: the sandbox's start, the runtime's boot, the handler's import;
    /// a pre-warmed one: its claim and the handler's import). `None` when warm.
    pub init_ms: Option<f64>,
    /// Peak memory of the container in MB, where the engine reports it.
    pub max_memory_mb: Option<f64>,
    pub cold: bool,
    /// The function's stdout/stderr, capped at the agent's `log_max_bytes`.
    pub logs: String,
    /// CPU time the sandbox used from thaw to freeze (a cold one: since it started), in
    /// milliseconds, where the node measures it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_ms: Option<f64>,
    /// Output was cut: beyond `log_max_bytes` it was dropped (a note ends `logs`), or the
    /// function passed its output limit and was stopped.
    #[serde(default)]
    pub output_truncated: bool,
    /// With status `error`: the platform failed before any of the function ran for this
    /// execution (e.g. its container could not be created), so another agent may run it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retry_safe: bool,
    /// A cold start served by a pre-warmed sandbox claimed for the function (`cold` is true).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub prewarmed: bool,
}

/// Warm containers an agent holds for one function version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WarmPool {
    /// `FunctionSpec::warm_key()`.
    pub key: String,
    pub idle: u32,
    pub busy: u32,
    pub memory_mb: i32,
}

/// An agent's periodic report (POST /v1/agents/heartbeat on the scheduler, bearer heartbeat
/// token signed with the agent's own key for these exact bytes).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Heartbeat {
    pub agent_id: String,
    pub host: String,
    pub url: String,
    pub memory_mb_total: i64,
    pub memory_mb_reserved: i64,
    pub cpus: i32,
    pub running: u32,
    pub warm: Vec<WarmPool>,
    /// Runtime images present on the node.
    pub images: Vec<String>,
    pub version: String,
    /// The agent cannot reach its container engine: it takes no work until it can.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub engine_down: bool,
    /// The highest `RetiredKey::seq` the agent has applied; `None` for an agent that has not
    /// heard from a scheduler since it started (and so holds no container from before).
    #[serde(default)]
    pub retired_seq: Option<i64>,
    /// Pre-warmed sandboxes ready to be claimed, per runtime image and memory size.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prewarmed: Vec<PrewarmedPool>,
}

/// Pre-warmed sandboxes an agent holds for one runtime image and memory size: started
/// without a function, claimed by the first invocation of any function of that image and size
/// on the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrewarmedPool {
    pub image: String,
    pub memory_mb: i32,
    pub ready: u32,
}

/// The PostgreSQL advisory lock (transaction-scoped) that orders the retirement log: the API
/// takes it before it inserts a retirement, so rows become visible in `seq` order.
pub const RETIREMENT_LOG_LOCK: i64 = 0x6672_6573_636f_7274; // "frescort"

/// Warm containers that must not serve again: a function deleted, a version deleted, or the
/// function's code or settings changed. Recorded by the API in the same transaction as the
/// change (`function_retirements`), delivered to agents in heartbeat replies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetiredKey {
    /// Position in the retirement log; agents acknowledge the highest they applied.
    pub seq: i64,
    pub function_id: Uuid,
    /// The version retired; `None` means every version (the function was deleted).
    pub version: Option<i32>,
    /// Only specs with `revision` below this are retired (an update of version 0); `None`
    /// means every revision.
    pub below_revision: Option<i64>,
}

impl RetiredKey {
    /// Whether a container running `spec` is retired by this key.
    pub fn covers(&self, spec: &FunctionSpec) -> bool {
        self.covers_revision(spec.function_id, spec.version, spec.revision)
    }

    /// Whether a container of this function version and revision is retired by this key.
    pub fn covers_revision(&self, function_id: Uuid, version: i32, revision: i64) -> bool {
        self.function_id == function_id
            && self.version.is_none_or(|v| v == version)
            && self.below_revision.is_none_or(|r| revision < r)
    }
}

/// The scheduler's answer to a heartbeat (200; an older scheduler answers 204 without it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatReply {
    /// The agent has applied everything up to here once it applied `retire` (and `reset`).
    pub retired_seq: i64,
    /// Retirements after the agent's `retired_seq`, oldest first (at most a page of them).
    #[serde(default)]
    pub retire: Vec<RetiredKey>,
    /// Retirements the agent never received were purged: it must retire every warm container.
    #[serde(default)]
    pub reset: bool,
}

/// The scheduler tells the API an execution's lease is over (POST /v1/placements/{lease}/release).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Release {
    /// The container is warm again for this function version (it ran to completion).
    pub warm: bool,
}
