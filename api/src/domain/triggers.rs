//! Triggers: cron schedules, webhooks and OpenStack notifications that invoke a function of the same project, with an
//! optional fixed input merged into each event. Validation and the `triggers` quota here; the
//! ticks are fired by the scheduler, the webhook calls by the HTTP layer.

use chrono::Utc;
use fresco_common::conf::QuotaSection;
use fresco_common::schedule::Schedule;
use fresco_store::paging::{Page, PageRequest};
use fresco_store::triggers::{self as store, Trigger, TriggerFilter, CRON, NOTIFICATION, WEBHOOK};
use fresco_store::{aliases, functions, quotas as quota_store, versions, PgConnection, Scope};
use serde_json::Value;
use uuid::Uuid;

use super::quotas::{self, allows};
use super::runtimes::marker_error;
use super::{db_error, validate, DomainError, DomainResult};

/// Largest fixed input, serialized.
pub const MAX_INPUT_BYTES: usize = 64 * 1024;
/// Shortest and longest webhook secret.
const SECRET_LEN: (usize, usize) = (16, 512);
/// Largest webhook rate limit (calls per minute).
const MAX_RATE_LIMIT: i32 = 1_000_000;
/// Most event types of one notification trigger, and the longest.
const MAX_EVENT_TYPES: usize = 32;
const MAX_EVENT_TYPE_LEN: usize = 255;

/// What a create or update asks for; `None`: not given.
#[derive(Debug, Clone, Default)]
pub struct TriggerInput {
    pub name: Option<String>,
    pub kind: Option<String>,
    pub function: Option<String>,
    /// `Some(None)` clears.
    pub version: Option<Option<i32>>,
    /// `Some(None)` clears.
    pub alias: Option<Option<String>>,
    pub input: Option<Value>,
    pub enabled: Option<bool>,
    pub description: Option<String>,
    pub cron: Option<String>,
    pub timezone: Option<String>,
    /// `Some(None)` removes the secret.
    pub secret: Option<Option<String>>,
    pub rate_limit: Option<i32>,
    pub sync: Option<bool>,
    pub event_types: Option<Vec<String>>,
}

fn check_input(input: &Value) -> DomainResult<()> {
    if !input.is_object() {
        return Err(DomainError::invalid("input must be a JSON object"));
    }
    let size = input.to_string().len();
    if size > MAX_INPUT_BYTES {
        return Err(DomainError::invalid(format!(
            "input must be at most {MAX_INPUT_BYTES} bytes as JSON, got {size}"
        )));
    }
    Ok(())
}

fn check_secret(secret: &str) -> DomainResult<()> {
    validate::no_nul("secret", secret)?;
    let (min, max) = SECRET_LEN;
    if !(min..=max).contains(&secret.len()) {
        return Err(DomainError::invalid(format!(
            "secret must be {min} to {max} bytes long, got {}",
            secret.len()
        )));
    }
    Ok(())
}

/// Event types of a notification trigger: 1 to 32 names of dotted words, `*` standing for
/// any run of characters (`compute.instance.create.end`, `volume.*`).
fn check_event_types(types: &[String]) -> DomainResult<()> {
    if types.is_empty() || types.len() > MAX_EVENT_TYPES {
        return Err(DomainError::invalid(format!(
            "event_types must list 1 to {MAX_EVENT_TYPES} event types, got {}",
            types.len()
        )));
    }
    for t in types {
        let allowed = |c: char| c.is_ascii_alphanumeric() || "._-*:".contains(c);
        if t.is_empty() || t.len() > MAX_EVENT_TYPE_LEN || !t.chars().all(allowed) {
            return Err(DomainError::invalid(format!(
                "event type {t:?} must be 1 to {MAX_EVENT_TYPE_LEN} characters of letters, digits, '.', '_', '-', ':' and '*'"
            )));
        }
    }
    Ok(())
}

/// Checks the trigger's target (its version or alias exists) and its kind's settings, and
/// computes the next tick of a cron trigger.
fn check(conn: &mut PgConnection, t: &mut Trigger) -> DomainResult<()> {
    if t.function_version.is_some() && t.alias.is_some() {
        return Err(DomainError::invalid("give version or alias, not both"));
    }
    if let Some(number) = t.function_version {
        if number < 1 {
            return Err(DomainError::invalid(format!(
                "version must be 1 or more, got {number}"
            )));
        }
        versions::get(conn, &t.project_id, t.function_id, number).map_err(|_| {
            DomainError::invalid(format!("version {number} of the function does not exist"))
        })?;
    }
    if let Some(alias) = &t.alias {
        aliases::get(conn, &t.project_id, t.function_id, alias).map_err(|_| {
            DomainError::invalid(format!("alias {alias} of the function does not exist"))
        })?;
    }
    check_input(&t.input)?;
    validate::description(&t.description)?;
    validate::range("rate_limit", t.rate_limit, -1, MAX_RATE_LIMIT.into())?;
    if let Some(secret) = &t.secret {
        check_secret(secret)?;
    }
    if t.kind != NOTIFICATION && t.event_types.is_some() {
        return Err(DomainError::invalid(
            "event_types are for notification triggers",
        ));
    }
    match t.kind.as_str() {
        CRON => {
            if t.secret.is_some() || t.rate_limit != -1 || t.sync {
                return Err(DomainError::invalid(
                    "secret, rate_limit and sync are for webhook triggers",
                ));
            }
            let (Some(cron), Some(timezone)) = (&t.cron, &t.timezone) else {
                return Err(DomainError::invalid("a cron trigger needs cron"));
            };
            validate::no_nul("cron", cron)?;
            validate::no_nul("timezone", timezone)?;
            let schedule =
                Schedule::parse(cron, timezone).map_err(|e| DomainError::invalid(e.to_string()))?;
            t.next_run_at = if t.enabled {
                schedule.next_after(Utc::now())
            } else {
                None
            };
        }
        WEBHOOK => {
            if t.cron.is_some() || t.timezone.is_some() {
                return Err(DomainError::invalid(
                    "cron and timezone are for cron triggers",
                ));
            }
        }
        NOTIFICATION => {
            if t.cron.is_some() || t.timezone.is_some() {
                return Err(DomainError::invalid(
                    "cron and timezone are for cron triggers",
                ));
            }
            if t.secret.is_some() || t.rate_limit != -1 || t.sync {
                return Err(DomainError::invalid(
                    "secret, rate_limit and sync are for webhook triggers",
                ));
            }
            let Some(types) = &t.event_types else {
                return Err(DomainError::invalid(
                    "a notification trigger needs event_types",
                ));
            };
            check_event_types(types)?;
        }
        other => {
            return Err(DomainError::invalid(format!(
                "type must be cron, webhook or notification, got {other:?}"
            )))
        }
    }
    Ok(())
}

/// A new webhook token: 32 bytes from the operating system's generator (through rand's
/// thread generator, a CSPRNG), hex: 256 bits nobody can guess.
fn webhook_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

pub fn create(
    conn: &mut PgConnection,
    quota_defaults: &QuotaSection,
    scope: &Scope,
    input: TriggerInput,
) -> DomainResult<Trigger> {
    let name = input
        .name
        .ok_or_else(|| DomainError::invalid("name is required"))?;
    validate::name("name", &name)?;
    let kind = input
        .kind
        .ok_or_else(|| DomainError::invalid("type is required (cron, webhook or notification)"))?;
    let key = input
        .function
        .ok_or_else(|| DomainError::invalid("function is required"))?;
    let function = functions::get_by_ref(conn, scope, &key).map_err(db_error("function", &key))?;
    let now = Utc::now();
    let is_cron = kind == CRON;
    let mut trigger = Trigger {
        id: Uuid::new_v4(),
        project_id: function.project_id.clone(),
        name: name.clone(),
        function_id: function.id,
        function_version: input.version.flatten(),
        alias: input.alias.flatten(),
        input: input
            .input
            .unwrap_or_else(|| Value::Object(Default::default())),
        enabled: input.enabled.unwrap_or(true),
        description: input.description.unwrap_or_default(),
        timezone: match (is_cron, input.timezone) {
            (true, None) => Some("UTC".to_owned()),
            (_, timezone) => timezone,
        },
        cron: input.cron,
        next_run_at: None,
        last_run_at: None,
        last_error: None,
        webhook_token: (kind == WEBHOOK).then(webhook_token),
        secret: input.secret.flatten(),
        rate_limit: input.rate_limit.unwrap_or(-1),
        sync: input.sync.unwrap_or(false),
        event_types: input.event_types,
        kind,
        created_at: now,
        updated_at: now,
    };
    check(conn, &mut trigger)?;
    let project_id = trigger.project_id.clone();
    super::transaction(conn, |conn| {
        quota_store::lock_project(conn, &project_id)?;
        let limits = quotas::limits(conn, quota_defaults, &project_id)?;
        let count = store::count(conn, &project_id)?;
        if !allows(limits.triggers, count, 1) {
            return Err(DomainError::QuotaExceeded(format!(
                "quota triggers exceeded: the project has {count} of {} triggers",
                limits.triggers
            )));
        }
        store::insert(conn, &trigger).map_err(db_error("trigger", &name))?;
        Ok(())
    })?;
    Ok(trigger)
}

pub fn get(conn: &mut PgConnection, scope: &Scope, key: &str) -> DomainResult<Trigger> {
    store::get_by_ref(conn, scope, key, false).map_err(db_error("trigger", key))
}

pub fn list(
    conn: &mut PgConnection,
    scope: &Scope,
    function: Option<&str>,
    kind: Option<&str>,
    page: &PageRequest<Uuid>,
) -> DomainResult<Page<Trigger>> {
    let function_id = match function {
        Some(key) => Some(
            functions::get_by_ref(conn, scope, key)
                .map_err(db_error("function", key))?
                .id,
        ),
        None => None,
    };
    if let Some(kind) = kind {
        if kind != CRON && kind != WEBHOOK && kind != NOTIFICATION {
            return Err(DomainError::invalid(format!(
                "type must be cron, webhook or notification, got {kind:?}"
            )));
        }
    }
    let filter = TriggerFilter {
        function_id,
        kind: kind.map(str::to_owned),
    };
    store::list(conn, scope, &filter, page).map_err(marker_error)
}

pub fn update(
    conn: &mut PgConnection,
    scope: &Scope,
    key: &str,
    input: TriggerInput,
) -> DomainResult<Trigger> {
    if input.name.is_some() || input.kind.is_some() || input.function.is_some() {
        return Err(DomainError::invalid(
            "name, type and function of a trigger cannot change",
        ));
    }
    super::transaction(conn, |conn| {
        let mut t = store::get_by_ref(conn, scope, key, true).map_err(db_error("trigger", key))?;
        let schedule_changed = input.cron.is_some()
            || input.timezone.is_some()
            || input.enabled.is_some_and(|e| e != t.enabled);
        if let Some(version) = input.version {
            t.function_version = version;
            if version.is_some() {
                t.alias = None;
            }
        }
        if let Some(alias) = input.alias {
            t.alias = alias;
            if t.alias.is_some() && input.version.is_none() {
                t.function_version = None;
            }
        }
        if let Some(value) = input.input {
            t.input = value;
        }
        if let Some(enabled) = input.enabled {
            t.enabled = enabled;
        }
        if let Some(description) = input.description {
            t.description = description;
        }
        if input.cron.is_some() {
            t.cron = input.cron;
        }
        if input.timezone.is_some() {
            t.timezone = input.timezone;
        }
        if let Some(secret) = input.secret {
            t.secret = secret;
        }
        if let Some(rate_limit) = input.rate_limit {
            t.rate_limit = rate_limit;
        }
        if let Some(sync) = input.sync {
            t.sync = sync;
        }
        if input.event_types.is_some() {
            t.event_types = input.event_types;
        }
        let before = t.next_run_at;
        check(conn, &mut t)?;
        if !schedule_changed && t.kind == CRON && t.enabled {
            // The schedule is the same: the pending tick stays (it may be due already).
            t.next_run_at = before;
        }
        t.updated_at = Utc::now();
        store::save(conn, &t).map_err(db_error("trigger", key))?;
        Ok(t)
    })
}

pub fn delete(conn: &mut PgConnection, scope: &Scope, key: &str) -> DomainResult<()> {
    let t = store::get_by_ref(conn, scope, key, false).map_err(db_error("trigger", key))?;
    store::delete(conn, &Scope::Project(t.project_id), t.id).map_err(db_error("trigger", key))
}

/// The enabled webhook trigger of `token`.
pub fn by_webhook(conn: &mut PgConnection, token: &str) -> DomainResult<Trigger> {
    store::by_webhook(conn, token).map_err(|e| match e {
        fresco_store::DbError::NotFound => DomainError::NotFound {
            kind: "webhook",
            id: String::new(),
        },
        other => other.into(),
    })
}

/// Counts a webhook call against its trigger's rate limit: `Throttled` beyond it, with the
/// seconds until the window ends.
pub fn take_webhook_call(conn: &mut PgConnection, trigger: &Trigger) -> DomainResult<()> {
    match store::take_webhook_call(conn, trigger.id)? {
        Ok(()) => Ok(()),
        Err(retry_after) => Err(DomainError::RateLimited {
            message: format!(
                "rate limit of trigger {} exceeded: {} calls per minute",
                trigger.name, trigger.rate_limit
            ),
            retry_after,
        }),
    }
}
