//! Per-project quotas: defaults from `[quota]`, overrides in the database.

use fresco_common::conf::QuotaSection;
use fresco_store::PgConnection;

use super::{DomainError, DomainResult};
use fresco_store::{executions, functions, pipelines, quotas, triggers};

/// The resources a quota can bound, in display order.
pub const RESOURCES: &[&str] = &[
    "functions",
    "code_bytes",
    "memory_mb_max",
    "timeout_s_max",
    "concurrent_executions",
    "executions_per_minute",
    "queued_executions",
    "triggers",
    "pipelines",
];

/// A project's effective limits; -1 means unlimited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub functions: i64,
    pub code_bytes: i64,
    pub memory_mb_max: i64,
    pub timeout_s_max: i64,
    pub concurrent_executions: i64,
    pub executions_per_minute: i64,
    pub queued_executions: i64,
    pub triggers: i64,
    pub pipelines: i64,
}

impl Limits {
    pub fn defaults(config: &QuotaSection) -> Self {
        Limits {
            functions: config.functions,
            code_bytes: config.code_bytes,
            memory_mb_max: config.memory_mb_max,
            timeout_s_max: config.timeout_s_max,
            concurrent_executions: config.concurrent_executions,
            executions_per_minute: config.executions_per_minute,
            queued_executions: config.queued_executions,
            triggers: config.triggers,
            pipelines: config.pipelines,
        }
    }

    pub fn get(&self, resource: &str) -> Option<i64> {
        Some(match resource {
            "functions" => self.functions,
            "code_bytes" => self.code_bytes,
            "memory_mb_max" => self.memory_mb_max,
            "timeout_s_max" => self.timeout_s_max,
            "concurrent_executions" => self.concurrent_executions,
            "executions_per_minute" => self.executions_per_minute,
            "queued_executions" => self.queued_executions,
            "triggers" => self.triggers,
            "pipelines" => self.pipelines,
            _ => return None,
        })
    }

    fn set(&mut self, resource: &str, limit: i64) {
        match resource {
            "functions" => self.functions = limit,
            "code_bytes" => self.code_bytes = limit,
            "memory_mb_max" => self.memory_mb_max = limit,
            "timeout_s_max" => self.timeout_s_max = limit,
            "concurrent_executions" => self.concurrent_executions = limit,
            "executions_per_minute" => self.executions_per_minute = limit,
            "queued_executions" => self.queued_executions = limit,
            "triggers" => self.triggers = limit,
            "pipelines" => self.pipelines = limit,
            _ => {}
        }
    }
}

/// Whether `used + adding` stays within `limit` (-1 = unlimited).
pub fn allows(limit: i64, used: i64, adding: i64) -> bool {
    limit < 0 || used.saturating_add(adding) <= limit
}

/// The project's effective limits.
pub fn limits(
    conn: &mut PgConnection,
    defaults: &QuotaSection,
    project_id: &str,
) -> DomainResult<Limits> {
    let mut limits = Limits::defaults(defaults);
    for (resource, limit) in quotas::overrides(conn, project_id)? {
        limits.set(&resource, limit);
    }
    Ok(limits)
}

/// A project's limits with current use where it is counted.
#[derive(Debug, Clone, PartialEq)]
pub struct QuotaReport {
    pub project_id: String,
    pub limits: Limits,
    pub functions_in_use: i64,
    pub code_bytes_in_use: i64,
    pub executions_in_flight: i64,
    /// Async executions waiting in the queue.
    pub executions_queued: i64,
    pub triggers_in_use: i64,
    pub pipelines_in_use: i64,
}

pub fn report(
    conn: &mut PgConnection,
    defaults: &QuotaSection,
    project_id: &str,
) -> DomainResult<QuotaReport> {
    Ok(QuotaReport {
        project_id: project_id.to_owned(),
        limits: limits(conn, defaults, project_id)?,
        functions_in_use: functions::count(conn, project_id)?,
        code_bytes_in_use: functions::code_bytes(conn, project_id)?,
        executions_in_flight: executions::in_flight(conn, project_id)?,
        executions_queued: executions::queued(conn, project_id, None)?,
        triggers_in_use: triggers::count(conn, project_id)?,
        pipelines_in_use: pipelines::count(conn, project_id)?,
    })
}

/// Sets some of a project's limits; each must be -1 or more.
pub fn update(
    conn: &mut PgConnection,
    defaults: &QuotaSection,
    project_id: &str,
    changes: &[(String, i64)],
) -> DomainResult<QuotaReport> {
    for (resource, limit) in changes {
        if !RESOURCES.contains(&resource.as_str()) {
            return Err(DomainError::invalid(format!("unknown quota {resource}")));
        }
        if *limit < -1 {
            return Err(DomainError::invalid(format!(
                "{resource} must be -1 (unlimited) or more, got {limit}"
            )));
        }
    }
    super::transaction(conn, |conn| {
        for (resource, limit) in changes {
            quotas::set(conn, project_id, resource, *limit)?;
        }
        Ok(())
    })?;
    report(conn, defaults, project_id)
}

pub fn reset(conn: &mut PgConnection, project_id: &str) -> DomainResult<()> {
    Ok(quotas::clear(conn, project_id)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_respects_unlimited_and_bounds() {
        assert!(allows(-1, i64::MAX, 1));
        assert!(allows(5, 4, 1));
        assert!(!allows(5, 5, 1));
        assert!(allows(0, 0, 0));
        assert!(!allows(0, 0, 1));
    }

    #[test]
    fn every_resource_round_trips() {
        let mut limits = Limits::defaults(&QuotaSection::default());
        for (i, resource) in RESOURCES.iter().enumerate() {
            limits.set(resource, i as i64 + 7);
            assert_eq!(limits.get(resource), Some(i as i64 + 7));
        }
        assert_eq!(limits.get("nope"), None);
    }
}
