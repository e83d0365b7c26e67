//! A pipeline's definition as stored (JSONB): its steps with their functions resolved to ids.
//! The API builds it from what a caller sent (and checks it); the advance walks it.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The steps, run in order, each one's result the next one's event; and the handler steps a
/// failed step's `catch` names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Definition {
    pub steps: Vec<Step>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub handlers: Vec<Step>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub name: String,
    #[serde(flatten)]
    pub kind: Kind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<Retry>,
    /// The handler step (by name, in `Definition::handlers`) a failure of this step goes to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catch: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Kind {
    /// One function of the pipeline's project: its latest state, a version or an alias.
    Task {
        function_id: Uuid,
        /// The function's name, as shown.
        function: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        version: Option<i32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        alias: Option<String>,
    },
    /// Branches run at once on the same event; the result is the list of their results, in
    /// branch order.
    Parallel { branches: Vec<Vec<Step>> },
    /// The list at `items_path` (a JSON pointer into the event) item by item through `steps`,
    /// at most `max_concurrency` items at once; the result is the list of their results, in
    /// item order.
    Map {
        items_path: String,
        max_concurrency: u32,
        steps: Vec<Step>,
    },
}

/// A task step's attempts (1 to 10, the first included) and the pause before each new one:
/// `backoff_ms × backoff_rate^(attempt − 2)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Retry {
    pub max_attempts: i32,
    pub backoff_ms: i64,
    pub backoff_rate: f64,
}

impl Retry {
    /// The pause before attempt `attempt` (2 or more), in milliseconds.
    pub fn backoff_before(&self, attempt: i32) -> i64 {
        let exponent = attempt.saturating_sub(2).clamp(0, 30);
        let ms = self.backoff_ms as f64 * self.backoff_rate.powi(exponent);
        // At most an hour.
        ms.clamp(0.0, 3_600_000.0) as i64
    }
}

impl Definition {
    /// The functions the definition names (with duplicates).
    pub fn functions(&self) -> Vec<Uuid> {
        fn walk(steps: &[Step], out: &mut Vec<Uuid>) {
            for step in steps {
                match &step.kind {
                    Kind::Task { function_id, .. } => out.push(*function_id),
                    Kind::Parallel { branches } => branches.iter().for_each(|b| walk(b, out)),
                    Kind::Map { steps, .. } => walk(steps, out),
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.steps, &mut out);
        walk(&self.handlers, &mut out);
        out
    }

    /// The name of the step at `path` (as the advance spells it: `1.b0.2`, `2.i3.0`, `0!h`).
    pub fn step_name(&self, path: &str) -> Option<String> {
        // The last handler named wins: `0!h` is handler `h` of step 0.
        if let Some((_, handler)) = path.rsplit_once('!') {
            return self
                .handlers
                .iter()
                .find(|h| h.name == handler)
                .map(|h| h.name.clone());
        }
        let mut steps = &self.steps;
        let mut found: Option<&Step> = None;
        let mut parts = path.split('.');
        while let Some(part) = parts.next() {
            let step = steps.get(part.parse::<usize>().ok()?)?;
            found = Some(step);
            match (&step.kind, parts.next()) {
                (_, None) => break,
                (Kind::Parallel { branches }, Some(b)) => {
                    steps = branches.get(b.strip_prefix('b')?.parse::<usize>().ok()?)?;
                }
                (Kind::Map { steps: inner, .. }, Some(i)) => {
                    i.strip_prefix('i')?.parse::<usize>().ok()?;
                    steps = inner;
                }
                (Kind::Task { .. }, Some(_)) => return None,
            }
        }
        found.map(|s| s.name.clone())
    }
}
