//! Execution statuses: the one place their text (the `executions.status` column, the API's
//! `status` field and filter) is spelled. Everything else names an `ExecutionStatus`.

use std::fmt;
use std::io::Write;

use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::pg::{Pg, PgValue};
use diesel::serialize::{self, IsNull, Output, ToSql};
use diesel::sql_types::Text;
use fresco_common::wire::RunStatus;

/// Where an execution is: `Queued` and `Running` may still change; the others are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, AsExpression, FromSqlRow)]
#[diesel(sql_type = Text)]
pub enum ExecutionStatus {
    /// Accepted (async), waiting for the dispatcher.
    Queued,
    /// Placed on an agent.
    Running,
    Succeeded,
    /// The function raised or reported an error.
    Failed,
    /// The wall-clock timeout killed it.
    Timeout,
    /// The kernel killed it for exceeding its memory.
    Oom,
    /// The platform could not run it.
    Error,
}

impl ExecutionStatus {
    /// Every status, in the order the API documents them.
    pub const ALL: [ExecutionStatus; 7] = [
        ExecutionStatus::Queued,
        ExecutionStatus::Running,
        ExecutionStatus::Succeeded,
        ExecutionStatus::Failed,
        ExecutionStatus::Timeout,
        ExecutionStatus::Oom,
        ExecutionStatus::Error,
    ];

    /// The statuses after which an execution never changes again.
    pub const TERMINAL: [ExecutionStatus; 5] = [
        ExecutionStatus::Succeeded,
        ExecutionStatus::Failed,
        ExecutionStatus::Timeout,
        ExecutionStatus::Oom,
        ExecutionStatus::Error,
    ];

    /// The status's text, as stored and as the API shows it.
    pub const fn as_str(self) -> &'static str {
        match self {
            ExecutionStatus::Queued => "queued",
            ExecutionStatus::Running => "running",
            ExecutionStatus::Succeeded => "succeeded",
            ExecutionStatus::Failed => "failed",
            ExecutionStatus::Timeout => "timeout",
            ExecutionStatus::Oom => "oom",
            ExecutionStatus::Error => "error",
        }
    }

    /// The status this text names, if any.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Whether the execution can no longer change.
    pub fn is_terminal(self) -> bool {
        Self::TERMINAL.contains(&self)
    }

    /// The texts of `statuses` as an SQL list, `('a', 'b')`, for statements written as SQL.
    pub fn sql_list(statuses: &[ExecutionStatus]) -> String {
        let quoted: Vec<String> = statuses
            .iter()
            .map(|s| format!("'{}'", s.as_str()))
            .collect();
        format!("({})", quoted.join(", "))
    }
}

impl From<RunStatus> for ExecutionStatus {
    fn from(status: RunStatus) -> Self {
        match status {
            RunStatus::Succeeded => ExecutionStatus::Succeeded,
            RunStatus::Failed => ExecutionStatus::Failed,
            RunStatus::Timeout => ExecutionStatus::Timeout,
            RunStatus::Oom => ExecutionStatus::Oom,
            RunStatus::Error => ExecutionStatus::Error,
        }
    }
}

impl fmt::Display for ExecutionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ToSql<Text, Pg> for ExecutionStatus {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        out.write_all(self.as_str().as_bytes())?;
        Ok(IsNull::No)
    }
}

impl FromSql<Text, Pg> for ExecutionStatus {
    fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
        let text = std::str::from_utf8(value.as_bytes())?;
        Self::parse(text).ok_or_else(|| format!("unknown execution status {text:?}").into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_reads_back_from_its_text() {
        for status in ExecutionStatus::ALL {
            assert_eq!(ExecutionStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(ExecutionStatus::parse("Queued"), None);
        assert_eq!(ExecutionStatus::parse(""), None);
    }

    #[test]
    fn terminal_statuses_are_those_that_never_change() {
        let open: Vec<_> = ExecutionStatus::ALL
            .into_iter()
            .filter(|s| !s.is_terminal())
            .collect();
        assert_eq!(open, [ExecutionStatus::Queued, ExecutionStatus::Running]);
        assert_eq!(
            ExecutionStatus::sql_list(&ExecutionStatus::TERMINAL),
            "('succeeded', 'failed', 'timeout', 'oom', 'error')"
        );
    }

    #[test]
    fn every_run_status_maps_to_the_status_of_the_same_name() {
        for run in [
            RunStatus::Succeeded,
            RunStatus::Failed,
            RunStatus::Timeout,
            RunStatus::Oom,
            RunStatus::Error,
        ] {
            let wire = serde_json::to_value(run).expect("serialize");
            assert_eq!(wire.as_str(), Some(ExecutionStatus::from(run).as_str()));
        }
    }
}
