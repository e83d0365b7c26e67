//! Where a run stands, computed from its definition, its input and the records of its steps'
//! executions: done (with the result), failed (with the error), or waiting, with the step
//! executions to queue now. Pure: the same records give the same answer, and every execution
//! it asks for has an id derived from (run, step path, attempt), so evaluating again after a
//! replay queues nothing twice.
//!
//! Paths: top-level step `i` is `i`; step `j` of branch `b` of parallel step `i` is `i.bb.j`;
//! step `j` for item `k` of map step `i` is `i.ik.j`; handler `h` catching step `p` is `p!h`.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};
use uuid::Uuid;

use super::definition::{Definition, Kind, Step};
use crate::ExecutionStatus;

/// Most items a map step takes from its list.
pub const MAX_MAP_ITEMS: usize = 1000;

/// One step execution of the run, as recorded.
#[derive(Debug, Clone)]
pub struct Record {
    pub id: Uuid,
    pub status: ExecutionStatus,
    /// The function's result (its JSON, or a string when it is not JSON).
    pub result: Value,
    pub error: Option<Value>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// A step execution the run needs now.
#[derive(Debug, Clone, PartialEq)]
pub struct Wanted {
    pub id: Uuid,
    pub path: String,
    pub attempt: i32,
    pub function_id: Uuid,
    pub version: Option<i32>,
    pub alias: Option<String>,
    pub input: Value,
    pub not_before: Option<DateTime<Utc>>,
}

/// Where a run (or a part of it) stands.
#[derive(Debug, Clone, PartialEq)]
pub enum State {
    Done(Value),
    Failed(Value),
    Waiting,
}

/// The id of the execution of attempt `attempt` of the step at `path` of run `run`.
pub fn step_execution_id(run: Uuid, path: &str, attempt: i32) -> Uuid {
    Uuid::new_v5(&run, format!("{path}#{attempt}").as_bytes())
}

/// Evaluates run `run` of `definition` on `input`, with the records of its step executions by
/// (path, attempt). Returns its state and the executions to queue (none unless waiting).
pub fn evaluate(
    run: Uuid,
    definition: &Definition,
    input: &Value,
    records: &HashMap<(String, i32), Record>,
) -> (State, Vec<Wanted>) {
    let mut started = HashSet::new();
    for (path, _) in records.keys() {
        for (at, c) in path.char_indices() {
            if c == '.' || c == '!' {
                started.insert(&path[..=at]);
            }
        }
    }
    let mut ctx = Ctx {
        run,
        handlers: &definition.handlers,
        records,
        started,
        wanted: Vec::new(),
    };
    let state = ctx.sequence(&definition.steps, input.clone(), "");
    let wanted = if state == State::Waiting {
        ctx.wanted
    } else {
        Vec::new()
    };
    (state, wanted)
}

struct Ctx<'a> {
    run: Uuid,
    handlers: &'a [Step],
    records: &'a HashMap<(String, i32), Record>,
    /// Prefixes (ending in `.` or `!`) under which some execution exists.
    started: HashSet<&'a str>,
    wanted: Vec<Wanted>,
}

impl Ctx<'_> {
    fn sequence(&mut self, steps: &[Step], input: Value, prefix: &str) -> State {
        let mut value = input;
        for (i, step) in steps.iter().enumerate() {
            match self.step(step, value, &format!("{prefix}{i}")) {
                State::Done(v) => value = v,
                other => return other,
            }
        }
        State::Done(value)
    }

    fn step(&mut self, step: &Step, input: Value, path: &str) -> State {
        let state = match &step.kind {
            Kind::Task { .. } => self.task(step, &input, path),
            Kind::Parallel { branches } => {
                let mut results = Vec::with_capacity(branches.len());
                let mut waiting = false;
                for (b, branch) in branches.iter().enumerate() {
                    match self.sequence(branch, input.clone(), &format!("{path}.b{b}.")) {
                        State::Done(v) => results.push(v),
                        State::Failed(e) => return self.caught(step, e, input, path),
                        State::Waiting => waiting = true,
                    }
                }
                if waiting {
                    State::Waiting
                } else {
                    State::Done(Value::Array(results))
                }
            }
            Kind::Map {
                items_path,
                max_concurrency,
                steps,
            } => self.map(step, &input, path, items_path, *max_concurrency, steps),
        };
        match state {
            State::Failed(error) => self.caught(step, error, input, path),
            other => other,
        }
    }

    fn map(
        &mut self,
        step: &Step,
        input: &Value,
        path: &str,
        items_path: &str,
        max_concurrency: u32,
        steps: &[Step],
    ) -> State {
        let items = match input.pointer(items_path) {
            Some(Value::Array(items)) if items.len() <= MAX_MAP_ITEMS => items,
            Some(Value::Array(items)) => {
                return State::Failed(pipeline_error(
                    "Pipeline.TooManyItems",
                    &format!(
                        "step {}: {} items at {items_path}, at most {MAX_MAP_ITEMS}",
                        step.name,
                        items.len()
                    ),
                ))
            }
            _ => {
                return State::Failed(pipeline_error(
                    "Pipeline.NotAList",
                    &format!("step {}: the event has no list at {items_path}", step.name),
                ))
            }
        };
        let cap = usize::try_from(max_concurrency.max(1)).unwrap_or(usize::MAX);
        let mut results = Vec::with_capacity(items.len());
        let mut busy = 0;
        let mut waiting = false;
        for (k, item) in items.iter().enumerate() {
            let prefix = format!("{path}.i{k}.");
            if !self.started.contains(prefix.as_str()) && busy >= cap {
                waiting = true;
                continue;
            }
            match self.sequence(steps, item.clone(), &prefix) {
                State::Done(v) => results.push(v),
                State::Failed(e) => return State::Failed(e),
                State::Waiting => {
                    busy += 1;
                    waiting = true;
                }
            }
        }
        if waiting {
            State::Waiting
        } else {
            State::Done(Value::Array(results))
        }
    }

    fn task(&mut self, step: &Step, input: &Value, path: &str) -> State {
        let Kind::Task {
            function_id,
            version,
            alias,
            ..
        } = &step.kind
        else {
            return State::Waiting;
        };
        let max = step.retry.map_or(1, |r| r.max_attempts.max(1));
        let mut previous_end: Option<DateTime<Utc>> = None;
        for attempt in 1..=max {
            match self.records.get(&(path.to_owned(), attempt)) {
                None => {
                    let not_before = match (attempt, step.retry, previous_end) {
                        (2.., Some(retry), Some(end)) => {
                            Some(end + Duration::milliseconds(retry.backoff_before(attempt)))
                        }
                        _ => None,
                    };
                    self.wanted.push(Wanted {
                        id: step_execution_id(self.run, path, attempt),
                        path: path.to_owned(),
                        attempt,
                        function_id: *function_id,
                        version: *version,
                        alias: alias.clone(),
                        input: input.clone(),
                        not_before,
                    });
                    return State::Waiting;
                }
                Some(record) if !record.status.is_terminal() => return State::Waiting,
                Some(record) if record.status == ExecutionStatus::Succeeded => {
                    return State::Done(record.result.clone())
                }
                Some(record) => {
                    if attempt == max {
                        return State::Failed(step_error(step, path, attempt, record));
                    }
                    previous_end = record.finished_at;
                }
            }
        }
        State::Waiting
    }

    /// A failed step: its `catch` handler runs on `{"error", "input"}` and its result stands
    /// for the step's; without one the failure goes on up.
    fn caught(&mut self, step: &Step, error: Value, input: Value, path: &str) -> State {
        let Some(handler) = step
            .catch
            .as_deref()
            .and_then(|name| self.handlers.iter().find(|h| h.name == name))
        else {
            return State::Failed(error);
        };
        let event = json!({"error": error, "input": input});
        self.step(handler, event, &format!("{path}!{}", handler.name))
    }
}

fn pipeline_error(kind: &str, message: &str) -> Value {
    json!({"errorType": kind, "errorMessage": message})
}

/// The error a failed step hands on: the function's own (Lambda's shape) with where it came
/// from.
fn step_error(step: &Step, path: &str, attempt: i32, record: &Record) -> Value {
    let mut error = match &record.error {
        Some(Value::Object(members)) => members.clone(),
        Some(other) => [("errorMessage".to_owned(), other.clone())]
            .into_iter()
            .collect(),
        None => Default::default(),
    };
    error
        .entry("errorType")
        .or_insert_with(|| Value::String(format!("Execution.{}", record.status)));
    // The platform's own text (agents, engine messages) never reaches the run's error, nor a
    // handler function: the step's execution keeps it for those who may see it.
    let platform = error
        .get("errorType")
        .and_then(Value::as_str)
        .is_some_and(|t| t.starts_with("Platform"));
    if platform {
        error.insert(
            "errorMessage".into(),
            json!("the platform could not run the step; an administrator can see why in its execution"),
        );
        error.remove("stackTrace");
    }
    error.insert("step".into(), json!(step.name));
    error.insert("step_path".into(), json!(path));
    error.insert("attempts".into(), json!(attempt));
    error.insert("execution_id".into(), json!(record.id));
    error.insert("status".into(), json!(record.status.as_str()));
    Value::Object(error)
}

#[cfg(test)]
mod tests {
    use super::super::definition::Retry;
    use super::*;

    fn task(name: &str) -> Step {
        Step {
            name: name.to_owned(),
            kind: Kind::Task {
                function_id: Uuid::from_u128(name.len() as u128),
                function: name.to_owned(),
                version: None,
                alias: None,
            },
            retry: None,
            catch: None,
        }
    }

    fn done(id: Uuid, result: Value) -> Record {
        Record {
            id,
            status: ExecutionStatus::Succeeded,
            result,
            error: None,
            finished_at: Some(Utc::now()),
        }
    }

    fn failed(id: Uuid) -> Record {
        Record {
            id,
            status: ExecutionStatus::Failed,
            result: Value::Null,
            error: Some(json!({"errorType": "Boom", "errorMessage": "no"})),
            finished_at: Some(Utc::now()),
        }
    }

    /// Runs `definition` to its end, answering each wanted execution with `answer`; returns
    /// the final state and every execution asked for, in order.
    fn drive(
        definition: &Definition,
        input: Value,
        answer: impl Fn(&Wanted) -> Record,
    ) -> (State, Vec<Wanted>) {
        let run = Uuid::from_u128(7);
        let mut records = HashMap::new();
        let mut asked = Vec::new();
        for _ in 0..1000 {
            let (state, wanted) = evaluate(run, definition, &input, &records);
            if state != State::Waiting {
                return (state, asked);
            }
            assert!(!wanted.is_empty(), "waiting with nothing to queue");
            // Only the first wanted ends in this round: the others are asked again (and
            // must be the same, so their ids are stable).
            let w = wanted[0].clone();
            records.insert((w.path.clone(), w.attempt), answer(&w));
            asked.push(w);
        }
        panic!("no end");
    }

    #[test]
    fn a_sequence_hands_each_result_on() {
        let def = Definition {
            steps: vec![task("a"), task("bb")],
            handlers: vec![],
        };
        let (state, asked) = drive(&def, json!(1), |w| {
            done(w.id, json!(w.input.as_i64().unwrap_or(0) * 10))
        });
        assert_eq!(state, State::Done(json!(100)));
        assert_eq!(
            asked.iter().map(|w| w.path.as_str()).collect::<Vec<_>>(),
            ["0", "1"]
        );
    }

    #[test]
    fn parallel_joins_in_branch_order_and_map_in_item_order_within_the_cap() {
        let def = Definition {
            steps: vec![
                Step {
                    name: "fan".into(),
                    kind: Kind::Parallel {
                        branches: vec![vec![task("a")], vec![task("b"), task("c")]],
                    },
                    retry: None,
                    catch: None,
                },
                Step {
                    name: "each".into(),
                    kind: Kind::Map {
                        items_path: "".into(),
                        max_concurrency: 2,
                        steps: vec![task("m")],
                    },
                    retry: None,
                    catch: None,
                },
            ],
            handlers: vec![],
        };
        let run = Uuid::from_u128(7);
        let mut records = HashMap::new();
        let (_, wanted) = evaluate(run, &def, &json!(5), &records);
        // Both branches start at once.
        assert_eq!(
            wanted.iter().map(|w| w.path.as_str()).collect::<Vec<_>>(),
            ["0.b0.0", "0.b1.0"]
        );
        for w in &wanted {
            records.insert((w.path.clone(), 1), done(w.id, json!(w.path)));
        }
        let (_, wanted) = evaluate(run, &def, &json!(5), &records);
        assert_eq!(wanted.len(), 1);
        assert_eq!(wanted[0].path, "0.b1.1");
        assert_eq!(wanted[0].input, json!("0.b1.0"));
        records.insert(("0.b1.1".into(), 1), done(wanted[0].id, json!("c")));
        // The map over the joined list [a's, c's]: two items, cap 2: both at once.
        let (_, wanted) = evaluate(run, &def, &json!(5), &records);
        assert_eq!(
            wanted.iter().map(|w| w.path.as_str()).collect::<Vec<_>>(),
            ["1.i0.0", "1.i1.0"]
        );
        // The second item ends first: the result keeps item order.
        records.insert(("1.i1.0".into(), 1), done(wanted[1].id, json!("second")));
        let (state, again) = evaluate(run, &def, &json!(5), &records);
        assert_eq!(state, State::Waiting);
        assert_eq!(again, vec![wanted[0].clone()]);
        records.insert(("1.i0.0".into(), 1), done(wanted[0].id, json!("first")));
        let (state, _) = evaluate(run, &def, &json!(5), &records);
        assert_eq!(state, State::Done(json!(["first", "second"])));
    }

    #[test]
    fn a_map_never_has_more_items_in_flight_than_its_cap() {
        let def = Definition {
            steps: vec![Step {
                name: "each".into(),
                kind: Kind::Map {
                    items_path: "/xs".into(),
                    max_concurrency: 3,
                    steps: vec![task("m"), task("n")],
                },
                retry: None,
                catch: None,
            }],
            handlers: vec![],
        };
        let input = json!({"xs": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]});
        let run = Uuid::from_u128(9);
        let mut records: HashMap<(String, i32), Record> = HashMap::new();
        loop {
            let (state, wanted) = evaluate(run, &def, &input, &records);
            // Items with an execution not ended, plus the ones asked for now.
            let mut busy: HashSet<String> = records
                .iter()
                .filter(|(_, r)| !r.status.is_terminal())
                .map(|((p, _), _)| p.split('.').take(2).collect::<Vec<_>>().join("."))
                .collect();
            busy.extend(
                wanted
                    .iter()
                    .map(|w| w.path.split('.').take(2).collect::<Vec<_>>().join(".")),
            );
            assert!(busy.len() <= 3, "{busy:?}");
            match state {
                State::Done(v) => {
                    let expected: Vec<String> = (0..10).map(|k| format!("0.i{k}.1")).collect();
                    assert_eq!(v, json!(expected));
                    break;
                }
                State::Failed(e) => panic!("{e}"),
                State::Waiting => {}
            }
            // Queue everything wanted, then end the oldest running one.
            for w in wanted {
                records.insert(
                    (w.path.clone(), w.attempt),
                    Record {
                        id: w.id,
                        status: ExecutionStatus::Queued,
                        result: Value::Null,
                        error: None,
                        finished_at: None,
                    },
                );
            }
            let mut running: Vec<_> = records
                .iter_mut()
                .filter(|(_, r)| !r.status.is_terminal())
                .collect();
            running.sort_by(|a, b| a.0.cmp(b.0));
            let ((path, _), record) = running.remove(0);
            record.status = ExecutionStatus::Succeeded;
            record.finished_at = Some(Utc::now());
            record.result = json!(path);
        }
    }

    #[test]
    fn a_failure_is_retried_with_backoff_then_caught() {
        let mut step = task("a");
        step.retry = Some(Retry {
            max_attempts: 3,
            backoff_ms: 100,
            backoff_rate: 2.0,
        });
        step.catch = Some("h".into());
        let def = Definition {
            steps: vec![step, task("next")],
            handlers: vec![task("h")],
        };
        let (state, asked) = drive(&def, json!({"x": 1}), |w| {
            if w.path == "0" {
                failed(w.id)
            } else {
                done(w.id, json!({"from": w.path, "got": w.input}))
            }
        });
        let paths: Vec<_> = asked.iter().map(|w| (w.path.as_str(), w.attempt)).collect();
        assert_eq!(paths, [("0", 1), ("0", 2), ("0", 3), ("0!h", 1), ("1", 1)]);
        assert_eq!(asked[0].not_before, None);
        let gap = |i: usize| asked[i].not_before.map(|t| t - Utc::now());
        assert!(gap(1).is_some_and(|d| d <= Duration::milliseconds(100)));
        assert!(gap(2).is_some_and(|d| d > Duration::milliseconds(100)));
        // The handler got the error and the input; the next step the handler's result.
        let handler_input = &asked[3].input;
        assert_eq!(handler_input["input"], json!({"x": 1}));
        assert_eq!(handler_input["error"]["errorType"], json!("Boom"));
        assert_eq!(handler_input["error"]["attempts"], json!(3));
        let State::Done(result) = state else {
            panic!("{state:?}")
        };
        assert_eq!(result["from"], json!("1"));
        assert_eq!(result["got"]["from"], json!("0!h"));
    }

    #[test]
    fn an_uncaught_failure_fails_the_run_and_queues_nothing_more() {
        let def = Definition {
            steps: vec![task("a"), task("b")],
            handlers: vec![],
        };
        let (state, asked) = drive(&def, json!(null), |w| failed(w.id));
        assert_eq!(asked.len(), 1);
        let State::Failed(error) = state else {
            panic!("{state:?}")
        };
        assert_eq!(error["step"], json!("a"));
        assert_eq!(error["execution_id"], json!(asked[0].id));
    }

    #[test]
    fn a_map_over_something_not_a_list_fails() {
        let def = Definition {
            steps: vec![Step {
                name: "each".into(),
                kind: Kind::Map {
                    items_path: "/xs".into(),
                    max_concurrency: 3,
                    steps: vec![task("m")],
                },
                retry: None,
                catch: None,
            }],
            handlers: vec![],
        };
        let (state, _) = evaluate(Uuid::nil(), &def, &json!({"xs": 3}), &HashMap::new());
        let State::Failed(error) = state else {
            panic!("{state:?}")
        };
        assert_eq!(error["errorType"], json!("Pipeline.NotAList"));
    }

    #[test]
    fn ids_are_stable_and_distinct() {
        let run = Uuid::from_u128(1);
        assert_eq!(
            step_execution_id(run, "0", 1),
            step_execution_id(run, "0", 1)
        );
        assert_ne!(
            step_execution_id(run, "0", 1),
            step_execution_id(run, "0", 2)
        );
        assert_ne!(
            step_execution_id(run, "0", 1),
            step_execution_id(Uuid::from_u128(2), "0", 1)
        );
    }
}
