//! Pipelines: named, versioned definitions of steps over functions of the same project, and
//! their runs. A definition is checked whole at creation (every function, version and alias
//! exists in the project, handler routes have no cycle, every field in range) and stored with
//! its functions resolved; the runs advance in the store (`fresco_store::pipelines`).

use std::collections::{HashMap, HashSet};

use chrono::Utc;
use fresco_common::conf::QuotaSection;
use fresco_store::paging::{Page, PageRequest};
use fresco_store::pipelines::definition::{Definition, Kind, Retry, Step};
use fresco_store::pipelines::{self as store, Pipeline, Run, RunFilter, StepExecution};
use fresco_store::{aliases, executions, functions, quotas as quota_store, versions};
use fresco_store::{PgConnection, Scope};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::quotas::{self, allows};
use super::runtimes::marker_error;
use super::{db_error, validate, DomainError, DomainResult};

/// Most steps in one definition (every level and the handlers counted).
pub const MAX_STEPS: usize = 100;
/// Most branches of a parallel step.
pub const MAX_BRANCHES: usize = 16;
/// Deepest nesting of parallel and map steps.
pub const MAX_DEPTH: usize = 4;
/// Largest `max_concurrency` of a map step.
pub const MAX_CONCURRENCY: u64 = 100;
/// Largest event of a run, serialized.
pub const MAX_INPUT_BYTES: usize = 256 * 1024;

/// What a create or update asks for: the definition as sent.
#[derive(Debug, Clone, Default)]
pub struct PipelineInput {
    pub name: Option<String>,
    pub description: Option<String>,
    pub steps: Option<Value>,
    pub handlers: Option<Value>,
}

/// Reads one definition, resolving its functions in `project_id`; every error names its field.
struct Reader<'a> {
    conn: &'a mut PgConnection,
    project_id: String,
    names: HashSet<String>,
    count: usize,
    functions: HashMap<String, (Uuid, String)>,
}

fn invalid(field: &str, message: impl std::fmt::Display) -> DomainError {
    DomainError::invalid(format!("{field}: {message}"))
}

fn object<'v>(value: &'v Value, field: &str) -> DomainResult<&'v Map<String, Value>> {
    value
        .as_object()
        .ok_or_else(|| invalid(field, "must be a JSON object"))
}

fn array<'v>(value: &'v Value, field: &str) -> DomainResult<&'v Vec<Value>> {
    value
        .as_array()
        .ok_or_else(|| invalid(field, "must be a list"))
}

fn text(value: &Value, field: &str) -> DomainResult<String> {
    let s = value
        .as_str()
        .ok_or_else(|| invalid(field, "must be a string"))?;
    validate::no_nul(field, s)?;
    Ok(s.to_owned())
}

fn integer(value: &Value, field: &str, min: i64, max: i64) -> DomainResult<i64> {
    match value.as_i64() {
        Some(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(invalid(
            field,
            format!("must be an integer from {min} to {max}"),
        )),
    }
}

impl Reader<'_> {
    fn steps(&mut self, value: &Value, field: &str, depth: usize) -> DomainResult<Vec<Step>> {
        let items = array(value, field)?;
        if items.is_empty() {
            return Err(invalid(field, "must list at least one step"));
        }
        items
            .iter()
            .enumerate()
            .map(|(i, item)| self.step(item, &format!("{field}[{i}]"), depth))
            .collect()
    }

    fn step(&mut self, value: &Value, field: &str, depth: usize) -> DomainResult<Step> {
        self.count += 1;
        if self.count > MAX_STEPS {
            return Err(invalid(
                field,
                format!("a pipeline has at most {MAX_STEPS} steps"),
            ));
        }
        let members = object(value, field)?;
        let kind = match members.get("type") {
            None => "task".to_owned(),
            Some(v) => text(v, &format!("{field}.type"))?,
        };
        let allowed: &[&str] = match kind.as_str() {
            "task" => &[
                "name", "type", "function", "version", "alias", "retry", "catch",
            ],
            "parallel" => &["name", "type", "branches", "catch"],
            "map" => &[
                "name",
                "type",
                "items_path",
                "max_concurrency",
                "steps",
                "catch",
            ],
            other => {
                return Err(invalid(
                    &format!("{field}.type"),
                    format!("must be task, parallel or map, got {other:?}"),
                ))
            }
        };
        if let Some(unknown) = members.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(invalid(
                &format!("{field}.{unknown}"),
                format!("unknown field for a {kind} step"),
            ));
        }
        let name_field = format!("{field}.name");
        let name = text(
            members
                .get("name")
                .ok_or_else(|| invalid(&name_field, "is required"))?,
            &name_field,
        )?;
        validate::name(&name_field, &name)?;
        if !self.names.insert(name.clone()) {
            return Err(invalid(
                &name_field,
                format!("another step is named {name}"),
            ));
        }
        let catch = match members.get("catch") {
            None | Some(Value::Null) => None,
            Some(v) => Some(text(v, &format!("{field}.catch"))?),
        };
        if (kind == "parallel" || kind == "map") && depth >= MAX_DEPTH {
            return Err(invalid(
                field,
                format!("parallel and map steps nest at most {MAX_DEPTH} deep"),
            ));
        }
        let kind = match kind.as_str() {
            "parallel" => {
                let branches_field = format!("{field}.branches");
                let branches = array(
                    members
                        .get("branches")
                        .ok_or_else(|| invalid(&branches_field, "is required"))?,
                    &branches_field,
                )?;
                if branches.is_empty() || branches.len() > MAX_BRANCHES {
                    return Err(invalid(
                        &branches_field,
                        format!("must list 1 to {MAX_BRANCHES} branches"),
                    ));
                }
                let branches = branches
                    .iter()
                    .enumerate()
                    .map(|(b, branch)| {
                        self.steps(branch, &format!("{branches_field}[{b}]"), depth + 1)
                    })
                    .collect::<DomainResult<Vec<_>>>()?;
                Kind::Parallel { branches }
            }
            "map" => {
                let path_field = format!("{field}.items_path");
                let items_path = match members.get("items_path") {
                    None => String::new(),
                    Some(v) => text(v, &path_field)?,
                };
                if !items_path.is_empty() && !items_path.starts_with('/') {
                    return Err(invalid(
                        &path_field,
                        "must be a JSON pointer (\"\" for the event itself, or /a/0/b)",
                    ));
                }
                let max_concurrency = match members.get("max_concurrency") {
                    None => 10,
                    Some(v) => integer(
                        v,
                        &format!("{field}.max_concurrency"),
                        1,
                        MAX_CONCURRENCY as i64,
                    )?,
                };
                let steps_field = format!("{field}.steps");
                let steps = self.steps(
                    members
                        .get("steps")
                        .ok_or_else(|| invalid(&steps_field, "is required"))?,
                    &steps_field,
                    depth + 1,
                )?;
                Kind::Map {
                    items_path,
                    max_concurrency: u32::try_from(max_concurrency).unwrap_or(1),
                    steps,
                }
            }
            _ => self.task(members, field)?,
        };
        let retry = match members.get("retry") {
            None | Some(Value::Null) => None,
            Some(v) => Some(retry(v, &format!("{field}.retry"))?),
        };
        Ok(Step {
            name,
            kind,
            retry,
            catch,
        })
    }

    fn task(&mut self, members: &Map<String, Value>, field: &str) -> DomainResult<Kind> {
        let function_field = format!("{field}.function");
        let key = text(
            members
                .get("function")
                .ok_or_else(|| invalid(&function_field, "is required"))?,
            &function_field,
        )?;
        // Only the pipeline's project is searched: another project's function is not found,
        // exactly as a function that does not exist.
        let (function_id, function_name) = match self.functions.get(&key) {
            Some(found) => found.clone(),
            None => {
                let scope = Scope::Project(self.project_id.clone());
                let function =
                    functions::get_by_ref(self.conn, &scope, &key).map_err(|e| match e {
                        fresco_store::DbError::NotFound | fresco_store::DbError::Conflict(_) => {
                            invalid(&function_field, format!("function {key} not found"))
                        }
                        other => db_error("function", &key)(other),
                    })?;
                let found = (function.id, function.name);
                self.functions.insert(key.clone(), found.clone());
                found
            }
        };
        let version = match members.get("version") {
            None | Some(Value::Null) => None,
            Some(v) => Some(integer(v, &format!("{field}.version"), 1, i32::MAX.into())? as i32),
        };
        let alias = match members.get("alias") {
            None | Some(Value::Null) => None,
            Some(v) => Some(text(v, &format!("{field}.alias"))?),
        };
        if version.is_some() && alias.is_some() {
            return Err(invalid(field, "give version or alias, not both"));
        }
        if let Some(n) = version {
            versions::get(self.conn, &self.project_id, function_id, n).map_err(|_| {
                invalid(
                    &format!("{field}.version"),
                    format!("version {n} of function {key} not found"),
                )
            })?;
        }
        if let Some(a) = &alias {
            aliases::get(self.conn, &self.project_id, function_id, a).map_err(|_| {
                invalid(
                    &format!("{field}.alias"),
                    format!("alias {a} of function {key} not found"),
                )
            })?;
        }
        Ok(Kind::Task {
            function_id,
            function: function_name,
            version,
            alias,
        })
    }
}

fn retry(value: &Value, field: &str) -> DomainResult<Retry> {
    let members = object(value, field)?;
    if let Some(unknown) = members
        .keys()
        .find(|k| !["max_attempts", "backoff_ms", "backoff_rate"].contains(&k.as_str()))
    {
        return Err(invalid(&format!("{field}.{unknown}"), "unknown field"));
    }
    let max_attempts = match members.get("max_attempts") {
        None => 2,
        Some(v) => integer(v, &format!("{field}.max_attempts"), 1, 10)? as i32,
    };
    let backoff_ms = match members.get("backoff_ms") {
        None => 1000,
        Some(v) => integer(v, &format!("{field}.backoff_ms"), 0, 3_600_000)?,
    };
    let backoff_rate = match members.get("backoff_rate") {
        None => 2.0,
        Some(v) => match v.as_f64() {
            Some(r) if (1.0..=10.0).contains(&r) => r,
            _ => {
                return Err(invalid(
                    &format!("{field}.backoff_rate"),
                    "must be a number from 1 to 10",
                ))
            }
        },
    };
    Ok(Retry {
        max_attempts,
        backoff_ms,
        backoff_rate,
    })
}

/// Checks that every `catch` names a handler, that retries are on task steps only, and that
/// the routes between handlers have no cycle.
fn check_routes(definition: &Definition) -> DomainResult<()> {
    let handlers: HashMap<&str, (usize, &Step)> = definition
        .handlers
        .iter()
        .enumerate()
        .map(|(i, h)| (h.name.as_str(), (i, h)))
        .collect();
    fn walk(
        steps: &[Step],
        field: &str,
        handlers: &HashMap<&str, (usize, &Step)>,
    ) -> DomainResult<()> {
        for (i, step) in steps.iter().enumerate() {
            let at = format!("{field}[{i}]");
            if let Some(name) = &step.catch {
                if !handlers.contains_key(name.as_str()) {
                    return Err(invalid(
                        &format!("{at}.catch"),
                        format!("no handler named {name}"),
                    ));
                }
            }
            if step.retry.is_some() && !matches!(step.kind, Kind::Task { .. }) {
                return Err(invalid(&format!("{at}.retry"), "only task steps retry"));
            }
            match &step.kind {
                Kind::Task { .. } => {}
                Kind::Parallel { branches } => {
                    for (b, branch) in branches.iter().enumerate() {
                        walk(branch, &format!("{at}.branches[{b}]"), handlers)?;
                    }
                }
                Kind::Map { steps, .. } => walk(steps, &format!("{at}.steps"), handlers)?,
            }
        }
        Ok(())
    }
    walk(&definition.steps, "steps", &handlers)?;
    walk(&definition.handlers, "handlers", &handlers)?;
    // Handler routes: each handler catches into at most one other; follow each chain.
    for (i, start) in definition.handlers.iter().enumerate() {
        let mut seen = vec![start.name.as_str()];
        let mut at = start;
        while let Some(next) = &at.catch {
            if seen.contains(&next.as_str()) {
                seen.push(next);
                return Err(invalid(
                    &format!("handlers[{i}].catch"),
                    format!("catch routes form a cycle: {}", seen.join(" -> ")),
                ));
            }
            seen.push(next);
            match handlers.get(next.as_str()) {
                Some((_, h)) => at = h,
                None => break,
            }
        }
    }
    Ok(())
}

/// Reads and checks a definition for `project_id`.
fn read_definition(
    conn: &mut PgConnection,
    project_id: &str,
    steps: &Value,
    handlers: Option<&Value>,
) -> DomainResult<Definition> {
    let mut reader = Reader {
        conn,
        project_id: project_id.to_owned(),
        names: HashSet::new(),
        count: 0,
        functions: HashMap::new(),
    };
    let steps = reader.steps(steps, "steps", 0)?;
    let handlers = match handlers {
        None | Some(Value::Null) => Vec::new(),
        Some(v) => {
            let items = array(v, "handlers")?;
            items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    let field = format!("handlers[{i}]");
                    let step = reader.step(item, &field, 0)?;
                    if !matches!(step.kind, Kind::Task { .. }) {
                        return Err(invalid(
                            &format!("{field}.type"),
                            "a handler is a task step",
                        ));
                    }
                    Ok(step)
                })
                .collect::<DomainResult<Vec<_>>>()?
        }
    };
    let definition = Definition { steps, handlers };
    check_routes(&definition)?;
    Ok(definition)
}

fn to_json(definition: &Definition) -> DomainResult<Value> {
    serde_json::to_value(definition)
        .map_err(|e| DomainError::Internal(format!("pipeline definition not serializable: {e}")))
}

fn project_of(scope: &Scope) -> DomainResult<String> {
    scope.project().map(str::to_owned).ok_or_else(|| {
        DomainError::invalid("a pipeline belongs to a project: use a project-scoped token")
    })
}

pub fn create(
    conn: &mut PgConnection,
    quota_defaults: &QuotaSection,
    scope: &Scope,
    input: PipelineInput,
) -> DomainResult<Pipeline> {
    let name = input
        .name
        .ok_or_else(|| DomainError::invalid("name is required"))?;
    validate::name("name", &name)?;
    let description = input.description.unwrap_or_default();
    validate::description(&description)?;
    let project_id = project_of(scope)?;
    let steps = input
        .steps
        .ok_or_else(|| DomainError::invalid("steps is required"))?;
    let definition = read_definition(conn, &project_id, &steps, input.handlers.as_ref())?;
    let now = Utc::now();
    let pipeline = Pipeline {
        id: Uuid::new_v4(),
        project_id: project_id.clone(),
        name: name.clone(),
        version: 1,
        definition: to_json(&definition)?,
        description,
        created_at: now,
        updated_at: now,
    };
    super::transaction(conn, |conn| {
        quota_store::lock_project(conn, &project_id)?;
        let limits = quotas::limits(conn, quota_defaults, &project_id)?;
        let count = store::count(conn, &project_id)?;
        if !allows(limits.pipelines, count, 1) {
            return Err(DomainError::QuotaExceeded(format!(
                "quota pipelines exceeded: the project has {count} of {} pipelines",
                limits.pipelines
            )));
        }
        store::insert(conn, &pipeline).map_err(db_error("pipeline", &name))?;
        Ok(())
    })?;
    Ok(pipeline)
}

pub fn get(conn: &mut PgConnection, scope: &Scope, key: &str) -> DomainResult<Pipeline> {
    store::get_by_ref(conn, scope, key, false).map_err(db_error("pipeline", key))
}

pub fn list(
    conn: &mut PgConnection,
    scope: &Scope,
    page: &PageRequest<Uuid>,
) -> DomainResult<Page<Pipeline>> {
    store::list(conn, scope, page).map_err(marker_error)
}

/// Stores a new version of the pipeline: the definition given whole (`steps`, `handlers`),
/// the description kept unless given.
pub fn update(
    conn: &mut PgConnection,
    scope: &Scope,
    key: &str,
    input: PipelineInput,
) -> DomainResult<Pipeline> {
    if input.name.is_some() {
        return Err(DomainError::invalid("the name of a pipeline cannot change"));
    }
    let steps = input.steps.ok_or_else(|| {
        DomainError::invalid("steps is required (an update stores a whole new version)")
    })?;
    if let Some(description) = &input.description {
        validate::description(description)?;
    }
    super::transaction(conn, |conn| {
        let pipeline =
            store::get_by_ref(conn, scope, key, true).map_err(db_error("pipeline", key))?;
        let definition =
            read_definition(conn, &pipeline.project_id, &steps, input.handlers.as_ref())?;
        let description = input
            .description
            .clone()
            .unwrap_or_else(|| pipeline.description.clone());
        store::new_version(conn, &pipeline, &to_json(&definition)?, &description)
            .map_err(db_error("pipeline", key))
    })
}

pub fn delete(conn: &mut PgConnection, scope: &Scope, key: &str) -> DomainResult<()> {
    super::transaction(conn, |conn| {
        store::delete(conn, scope, key).map_err(db_error("pipeline", key))
    })
}

/// Starts a run of the pipeline's current version on `input`, within the project's
/// `queued_executions` quota: the run and its first step executions are committed together.
pub fn start(
    conn: &mut PgConnection,
    quota_defaults: &QuotaSection,
    scope: &Scope,
    key: &str,
    input: Value,
    allowed_image_prefixes: &[String],
) -> DomainResult<Run> {
    let size = input.to_string().len();
    if size > MAX_INPUT_BYTES {
        return Err(DomainError::TooLarge(format!(
            "the event must be at most {MAX_INPUT_BYTES} bytes as JSON, got {size}"
        )));
    }
    super::transaction(conn, |conn| {
        let pipeline =
            store::get_by_ref(conn, scope, key, false).map_err(db_error("pipeline", key))?;
        let limits = quotas::limits(conn, quota_defaults, &pipeline.project_id)?;
        if limits.queued_executions >= 0 {
            let queued =
                executions::queued(conn, &pipeline.project_id, Some(limits.queued_executions))?;
            if queued >= limits.queued_executions {
                return Err(DomainError::Throttled(format!(
                    "quota queued_executions exceeded: the project has {queued} of {} async executions waiting; retry once some have started",
                    limits.queued_executions
                )));
            }
        }
        let run = Run {
            id: Uuid::new_v4(),
            project_id: pipeline.project_id.clone(),
            pipeline_id: pipeline.id,
            pipeline_name: pipeline.name.clone(),
            pipeline_version: pipeline.version,
            definition: pipeline.definition.clone(),
            status: store::RUNNING.to_owned(),
            input,
            result: None,
            error: None,
            created_at: Utc::now(),
            finished_at: None,
        };
        store::start_run(conn, &run, allowed_image_prefixes).map_err(db_error("pipeline", key))
    })
}

/// A run with its step executions.
pub fn get_run(
    conn: &mut PgConnection,
    scope: &Scope,
    id: Uuid,
) -> DomainResult<(Run, Vec<StepExecution>)> {
    let run = store::get_run(conn, scope, id).map_err(db_error("pipeline run", id))?;
    let steps = store::run_steps(conn, &run)?;
    Ok((run, steps))
}

/// A run's status only (the sync invoke's poll).
pub fn run_status(conn: &mut PgConnection, scope: &Scope, id: Uuid) -> DomainResult<String> {
    Ok(store::get_run(conn, scope, id)
        .map_err(db_error("pipeline run", id))?
        .status)
}

pub fn list_runs(
    conn: &mut PgConnection,
    scope: &Scope,
    pipeline: Option<&str>,
    status: Option<&str>,
    page: &PageRequest<Uuid>,
) -> DomainResult<Page<Run>> {
    let pipeline_id = match pipeline {
        Some(key) => Some(get(conn, scope, key)?.id),
        None => None,
    };
    if let Some(status) = status {
        if ![store::RUNNING, store::SUCCEEDED, store::FAILED].contains(&status) {
            return Err(DomainError::invalid(format!(
                "status must be running, succeeded or failed, got {status:?}"
            )));
        }
    }
    let filter = RunFilter {
        pipeline_id,
        status: status.map(str::to_owned),
    };
    store::list_runs(conn, scope, &filter, page).map_err(marker_error)
}
