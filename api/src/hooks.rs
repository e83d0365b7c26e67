//! Running a project's hooks on the invocation path (what they are and who may attach them:
//! `domain::hooks`).
//!
//! A **pre** hook's function receives `{"hook", "invocation", "event"}` before the invoked
//! function and answers `{"action": "allow"}`, `{"action": "reject", "reason": ..., "status":
//! 4xx}` or `{"action": "rewrite", "event": ...}`. A **post** hook's function receives
//! `{"hook", "invocation", "event", "execution", "result", "error"}` after the answer (in the
//! background); a post hook marked `redact` runs before the answer instead and may answer
//! `{"action": "replace", "result": ...}` (or `{"action": "keep"}`). Each hook is one warm
//! invocation through `Invoker::invoke_sync` (the same grant path as any function), recorded
//! as an execution of the hook's function, in that function's project. A hook that fails
//! (its function errors, times out, cannot run, or answers anything else) fails open or
//! closed as it is configured (see docs/api.md, Hooks).
//!
//! A project's hooks are cached per replica for `[api] function_cache_ttl` seconds, as the
//! invocation targets are: a hook attached or removed through another replica applies there
//! within that time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fresco_common::conf::QuotaSection;
use fresco_common::wire::RunStatus;
use fresco_store::hooks::{Hook, FAIL_OPEN, POST, PRE};
use fresco_store::{ExecutionStatus, PgConnection, Scope};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::domain::invoke::{self as resolving, Resolved, Selector, Target};
#[cfg(test)]
use crate::domain::DomainError;
use crate::domain::DomainResult;
use crate::invoke::Invoker;

/// Why hooks stopped an invocation (mapped to HTTP in `http::error`).
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// A pre hook rejected the event; `status` is the 4xx the hook chose (403 by default).
    #[error("rejected by pre hook {hook}: {reason}")]
    Rejected {
        hook: Uuid,
        status: u16,
        reason: String,
    },
    /// A fail-closed hook failed: the function did not run (pre) or its result is withheld
    /// (redacting post).
    #[error("{kind} hook {hook} failed ({why}) and fails closed: {consequence}")]
    FailedClosed {
        hook: Uuid,
        kind: &'static str,
        why: &'static str,
        consequence: &'static str,
    },
}

/// One hook, ready to run.
#[derive(Debug)]
pub struct ActiveHook {
    pub id: Uuid,
    pub fail_open: bool,
    pub redact: bool,
    pub function_id: Uuid,
    /// The hook's function resolved as an invocation target; a refusal (the function cannot
    /// run) is kept and makes the hook fail when it runs.
    pub resolved: DomainResult<Resolved>,
}

/// Every hook of one project, in the order they run.
#[derive(Debug, Default)]
pub struct ProjectHooks {
    pub pre: Vec<ActiveHook>,
    /// Post hooks that run before the answer and may replace the result.
    pub redacting: Vec<ActiveHook>,
    /// Post hooks that run after the answer.
    pub post: Vec<ActiveHook>,
}

impl ProjectHooks {
    /// Whether `function_id` runs none of these hooks: no hooks, or it is a hook's own
    /// function (a hook's function is never itself hooked).
    pub fn skip(&self, function_id: Uuid) -> bool {
        let all = || self.pre.iter().chain(&self.redacting).chain(&self.post);
        all().next().is_none() || all().any(|h| h.function_id == function_id)
    }

    fn cacheable(&self) -> bool {
        let all = self.pre.iter().chain(&self.redacting).chain(&self.post);
        all.into_iter()
            .all(|h| h.resolved.as_ref().is_ok_and(Resolved::cacheable))
    }
}

/// Loads and resolves the hooks of `project_id` (the invocation path's database read, done
/// once per project and TTL).
pub fn load(
    conn: &mut PgConnection,
    quota_defaults: &QuotaSection,
    allowed_image_prefixes: &[String],
    project_id: &str,
) -> DomainResult<ProjectHooks> {
    let hooks = fresco_store::hooks::of_project(conn, project_id)?;
    let mut loaded = ProjectHooks::default();
    for hook in hooks {
        let active = activate(conn, quota_defaults, allowed_image_prefixes, &hook);
        match (hook.kind.as_str(), hook.redact) {
            (PRE, _) => loaded.pre.push(active),
            (POST, true) => loaded.redacting.push(active),
            _ => loaded.post.push(active),
        }
    }
    Ok(loaded)
}

fn activate(
    conn: &mut PgConnection,
    quota_defaults: &QuotaSection,
    allowed_image_prefixes: &[String],
    hook: &Hook,
) -> ActiveHook {
    let selector = match (hook.function_version, &hook.alias) {
        (Some(n), _) => Selector::Version(n),
        (None, Some(alias)) => Selector::Alias(alias.clone()),
        (None, None) => Selector::Latest,
    };
    let resolved = resolving::resolve(
        conn,
        quota_defaults,
        allowed_image_prefixes,
        &Scope::All { project_id: None },
        &hook.function_id.to_string(),
        &selector,
    );
    ActiveHook {
        id: hook.id,
        fail_open: hook.fail_mode == FAIL_OPEN,
        redact: hook.redact,
        function_id: hook.function_id,
        resolved,
    }
}

/// Projects' hooks kept for a TTL per replica (see the module's documentation).
pub struct HookCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, (Instant, Arc<ProjectHooks>)>>,
}

const CACHE_MAX_PROJECTS: usize = 50_000;

impl HookCache {
    pub fn new(ttl: Duration) -> Self {
        HookCache {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub fn get(&self, project_id: &str) -> Option<Arc<ProjectHooks>> {
        if self.ttl.is_zero() {
            return None;
        }
        let entries = self.entries.lock().ok()?;
        entries
            .get(project_id)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, hooks)| Arc::clone(hooks))
    }

    /// Keeps `hooks` unless one of them failed to resolve (that may be the database's doing).
    pub fn put(&self, project_id: &str, hooks: Arc<ProjectHooks>) {
        if self.ttl.is_zero() || !hooks.cacheable() {
            return;
        }
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= CACHE_MAX_PROJECTS {
                let ttl = self.ttl;
                entries.retain(|_, (at, _)| at.elapsed() < ttl);
                if entries.len() >= CACHE_MAX_PROJECTS {
                    entries.clear();
                }
            }
            entries.insert(project_id.to_owned(), (Instant::now(), hooks));
        }
    }

    /// Drops a project's hooks (one was attached or removed through this replica).
    pub fn forget(&self, project_id: &str) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(project_id);
        }
    }

    /// Drops every project's hooks that run `function_id` (it changed or went away).
    pub fn forget_function(&self, function_id: Uuid) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.retain(|_, (_, hooks)| {
                let mut all = hooks.pre.iter().chain(&hooks.redacting).chain(&hooks.post);
                !all.any(|h| h.function_id == function_id)
            });
        }
    }

    /// Drops every project's hooks (a runtime changed: a hook may run it).
    pub fn clear(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.clear();
        }
    }
}

/// What a hook's function is told about the invocation it runs for.
#[derive(Debug, Clone, Serialize)]
pub struct Invocation {
    pub project_id: String,
    pub function_id: Uuid,
    pub function_name: String,
    pub version: i32,
    pub alias: Option<String>,
    #[serde(rename = "async")]
    pub is_async: bool,
    /// The caller's user id (empty for a webhook call).
    pub user_id: String,
}

impl Invocation {
    pub fn of(target: &Target, is_async: bool, user_id: &str) -> Self {
        Invocation {
            project_id: target.spec.project_id.clone(),
            function_id: target.spec.function_id,
            function_name: target.spec.function_name.clone(),
            version: target.spec.version,
            alias: target.alias.clone(),
            is_async,
            user_id: user_id.to_owned(),
        }
    }
}

#[derive(Serialize)]
struct HookInfo {
    id: Uuid,
    kind: &'static str,
    /// A post hook that runs before the answer and may replace the result.
    redact: bool,
}

#[derive(Serialize)]
struct PreEvent<'a> {
    hook: HookInfo,
    invocation: &'a Invocation,
    event: &'a RawValue,
}

/// The execution a post hook is told about.
#[derive(Debug, Clone, Serialize)]
pub struct Finished {
    pub id: Uuid,
    pub function_id: Uuid,
    pub function_name: String,
    pub version: i32,
    pub alias: Option<String>,
    pub status: &'static str,
    pub duration_ms: f64,
    pub cold: bool,
}

#[derive(Serialize)]
struct PostEvent<'a> {
    hook: HookInfo,
    invocation: &'a Invocation,
    event: &'a RawValue,
    execution: &'a Finished,
    /// The function's response (JSON; a response that is not JSON as a string), when it
    /// succeeded.
    result: Option<&'a RawValue>,
    error: Option<&'a serde_json::Value>,
}

/// A hook's answer as sent: `action` and the members that action uses (`reason`, `status`,
/// `event`, `result`); any other member is ignored.
#[derive(Deserialize)]
struct Wire {
    action: String,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    status: Option<u16>,
    #[serde(default)]
    event: Option<Box<RawValue>>,
    #[serde(default)]
    result: Option<Box<RawValue>>,
}

enum PreAnswer {
    Allow,
    Reject { reason: String, status: Option<u16> },
    Rewrite { event: Box<RawValue> },
}

impl PreAnswer {
    fn parse(text: &str) -> Option<Self> {
        let wire: Wire = serde_json::from_str(text).ok()?;
        match wire.action.as_str() {
            "allow" => Some(PreAnswer::Allow),
            "reject" => Some(PreAnswer::Reject {
                reason: wire.reason.unwrap_or_default(),
                status: wire.status,
            }),
            "rewrite" => wire.event.map(|event| PreAnswer::Rewrite { event }),
            _ => None,
        }
    }
}

enum RedactAnswer {
    Keep,
    Replace { result: Box<RawValue> },
}

impl RedactAnswer {
    fn parse(text: &str) -> Option<Self> {
        let wire: Wire = serde_json::from_str(text).ok()?;
        match wire.action.as_str() {
            "keep" => Some(RedactAnswer::Keep),
            "replace" => wire.result.map(|result| RedactAnswer::Replace { result }),
            _ => None,
        }
    }
}

/// Why a hook failed (what the caller is told; the details are in the hook's execution).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// Its function could not run or be resolved.
    Unavailable,
    /// Its function failed or timed out.
    Failed,
    /// Its answer is not the protocol's.
    BadAnswer,
}

impl Failure {
    fn why(self) -> &'static str {
        match self {
            Failure::Unavailable => "its function could not run",
            Failure::Failed => "its function failed or timed out",
            Failure::BadAnswer => "its answer is not a valid hook answer",
        }
    }
}

/// Longest reason of a rejection passed on to the caller.
const MAX_REASON_BYTES: usize = 1024;

/// Runs one hook's function on `payload`: its response, or why it failed.
async fn call(
    invoker: &Invoker,
    hook: &ActiveHook,
    payload: Box<RawValue>,
) -> Result<String, Failure> {
    let target = match &hook.resolved {
        Ok(resolved) => resolved
            .pick(rand::random_range(0..100))
            .map_err(|_| Failure::Unavailable)?,
        Err(_) => return Err(Failure::Unavailable),
    };
    let outcome = invoker.invoke_sync(&target, payload).await.map_err(|e| {
        log::warn!("hook {}: its function could not run: {e}", hook.id);
        Failure::Unavailable
    })?;
    if outcome.result.status != RunStatus::Succeeded {
        log::info!(
            "hook {}: execution {} of its function ended {}",
            hook.id,
            outcome.execution_id,
            ExecutionStatus::from(outcome.result.status)
        );
        return Err(Failure::Failed);
    }
    outcome.result.response.ok_or(Failure::BadAnswer)
}

/// What the pre hooks decided for an event.
pub struct Allowed {
    /// The event to run (rewritten by the hooks that rewrote it).
    pub event: Box<RawValue>,
    /// Hooks that failed and let the invocation through (fail-open).
    pub failed_open: Vec<Uuid>,
}

/// Runs the pre hooks in order on `event`: each sees the event as the ones before it left it.
pub async fn run_pre(
    invoker: &Invoker,
    hooks: &ProjectHooks,
    invocation: &Invocation,
    mut event: Box<RawValue>,
) -> Result<Allowed, HookError> {
    let mut failed_open = Vec::new();
    for hook in &hooks.pre {
        let payload = serde_json::value::to_raw_value(&PreEvent {
            hook: HookInfo {
                id: hook.id,
                kind: PRE,
                redact: false,
            },
            invocation,
            event: &event,
        });
        let answer = match payload {
            Ok(payload) => call(invoker, hook, payload)
                .await
                .and_then(|text| PreAnswer::parse(&text).ok_or(Failure::BadAnswer)),
            Err(_) => Err(Failure::BadAnswer),
        };
        match answer {
            Ok(PreAnswer::Allow) => {}
            Ok(PreAnswer::Rewrite { event: rewritten }) => event = rewritten,
            Ok(PreAnswer::Reject { reason, status }) => {
                let status = status.filter(|s| (400..500).contains(s) && *s != 401);
                let mut reason = reason;
                if reason.len() > MAX_REASON_BYTES {
                    let mut end = MAX_REASON_BYTES;
                    while !reason.is_char_boundary(end) {
                        end -= 1;
                    }
                    reason.truncate(end);
                }
                if reason.is_empty() {
                    reason = "the event is not allowed".to_owned();
                }
                return Err(HookError::Rejected {
                    hook: hook.id,
                    status: status.unwrap_or(403),
                    reason,
                });
            }
            Err(failure) if hook.fail_open => {
                log::warn!(
                    "pre hook {} failed ({}): failing open",
                    hook.id,
                    failure.why()
                );
                failed_open.push(hook.id);
            }
            Err(failure) => {
                return Err(HookError::FailedClosed {
                    hook: hook.id,
                    kind: PRE,
                    why: failure.why(),
                    consequence: "the function did not run",
                })
            }
        }
    }
    Ok(Allowed { event, failed_open })
}

/// What the function answered, as post hooks see it.
pub struct Answer<'a> {
    pub execution: &'a Finished,
    pub response: Option<&'a str>,
    pub error: Option<&'a serde_json::Value>,
}

fn post_payload(
    hook: &ActiveHook,
    invocation: &Invocation,
    event: &RawValue,
    answer: &Answer<'_>,
) -> Option<Box<RawValue>> {
    let quoted;
    let result = match answer.response {
        Some(text) => match serde_json::from_str::<&RawValue>(text) {
            Ok(raw) => Some(raw),
            Err(_) => {
                quoted = serde_json::value::to_raw_value(text).ok()?;
                Some(&*quoted)
            }
        },
        None => None,
    };
    serde_json::value::to_raw_value(&PostEvent {
        hook: HookInfo {
            id: hook.id,
            kind: POST,
            redact: hook.redact,
        },
        invocation,
        event,
        execution: answer.execution,
        result,
        error: answer.error,
    })
    .ok()
}

/// Runs the redacting post hooks in order on a succeeded result: each may replace it. Returns
/// the result to answer with and the hooks that failed open.
pub async fn run_redacting(
    invoker: &Invoker,
    hooks: &ProjectHooks,
    invocation: &Invocation,
    event: &RawValue,
    execution: &Finished,
    mut response: String,
) -> Result<(String, Vec<Uuid>), HookError> {
    let mut failed_open = Vec::new();
    for hook in &hooks.redacting {
        let answer = Answer {
            execution,
            response: Some(&response),
            error: None,
        };
        let decided = match post_payload(hook, invocation, event, &answer) {
            Some(payload) => call(invoker, hook, payload)
                .await
                .and_then(|text| RedactAnswer::parse(&text).ok_or(Failure::BadAnswer)),
            None => Err(Failure::BadAnswer),
        };
        match decided {
            Ok(RedactAnswer::Keep) => {}
            Ok(RedactAnswer::Replace { result }) => response = result.get().to_owned(),
            Err(failure) if hook.fail_open => {
                log::warn!(
                    "post hook {} failed ({}): failing open",
                    hook.id,
                    failure.why()
                );
                failed_open.push(hook.id);
            }
            Err(failure) => {
                return Err(HookError::FailedClosed {
                    hook: hook.id,
                    kind: POST,
                    why: failure.why(),
                    consequence: "the function ran but its result is withheld",
                })
            }
        }
    }
    Ok((response, failed_open))
}

/// Runs the (non-redacting) post hooks, one after the other; meant to run after the answer.
/// A failure is logged (the caller has its answer already; the hook's own execution records
/// what happened).
pub async fn run_post(
    invoker: &Invoker,
    hooks: &ProjectHooks,
    invocation: &Invocation,
    event: &RawValue,
    answer: &Answer<'_>,
) {
    for hook in &hooks.post {
        let Some(payload) = post_payload(hook, invocation, event, answer) else {
            log::warn!("post hook {}: the event could not be built", hook.id);
            continue;
        };
        if let Err(failure) = call(invoker, hook, payload).await {
            log::warn!(
                "post hook {} failed ({}) after execution {}",
                hook.id,
                failure.why(),
                answer.execution.id
            );
        }
    }
}

/// The hooks of `project_id` as the invocation path reads them: this replica's cache, else
/// the database (then cached).
pub async fn of_project(
    invoker: &Invoker,
    pool: &fresco_store::PgPool,
    quota: &QuotaSection,
    allowed_image_prefixes: &[String],
    project_id: &str,
) -> DomainResult<Arc<ProjectHooks>> {
    if let Some(hooks) = invoker.hooks.get(project_id) {
        return Ok(hooks);
    }
    let defaults = quota.clone();
    let images = allowed_image_prefixes.to_vec();
    let project = project_id.to_owned();
    let hooks = crate::command::db(pool, move |conn| load(conn, &defaults, &images, &project))
        .await
        .map(Arc::new)?;
    invoker.hooks.put(project_id, Arc::clone(&hooks));
    Ok(hooks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pre_answers_follow_the_protocol() {
        assert!(matches!(
            PreAnswer::parse(r#"{"action":"allow"}"#),
            Some(PreAnswer::Allow)
        ));
        let reject = PreAnswer::parse(r#"{"action":"reject","reason":"no","status":422}"#);
        assert!(
            matches!(reject, Some(PreAnswer::Reject { reason, status: Some(422) }) if reason == "no")
        );
        let rewrite = PreAnswer::parse(r#"{"action": "rewrite", "event": {"a": 1}}"#);
        assert!(
            matches!(rewrite, Some(PreAnswer::Rewrite { event }) if event.get() == r#"{"a": 1}"#)
        );
        for bad in [
            r#"{"action":"maybe"}"#,
            r#"{}"#,
            r#""allow""#,
            r#"{"action":"rewrite"}"#,
        ] {
            assert!(PreAnswer::parse(bad).is_none(), "{bad}");
        }
        assert!(matches!(
            RedactAnswer::parse(r#"{"action":"replace","result":[1]}"#),
            Some(RedactAnswer::Replace { result }) if result.get() == "[1]"
        ));
        assert!(matches!(
            RedactAnswer::parse(r#"{"action":"keep"}"#),
            Some(RedactAnswer::Keep)
        ));
        assert!(RedactAnswer::parse(r#"{"action":"replace"}"#).is_none());
    }

    #[test]
    fn a_hooks_own_function_is_never_hooked() {
        let hook = |function_id| ActiveHook {
            id: Uuid::new_v4(),
            fail_open: false,
            redact: false,
            function_id,
            resolved: Err(DomainError::Internal("unused".into())),
        };
        let (f, h) = (Uuid::new_v4(), Uuid::new_v4());
        let hooks = ProjectHooks {
            pre: vec![hook(h)],
            ..ProjectHooks::default()
        };
        assert!(!hooks.skip(f));
        assert!(hooks.skip(h));
        assert!(ProjectHooks::default().skip(f), "no hooks: nothing to run");
    }
}
