//! Cron schedules of triggers: an expression and an IANA time zone, parsed once and asked for
//! the next tick after an instant. The API validates a trigger's schedule with it and shows the
//! next tick; the scheduler's leader fires the ticks.
//!
//! Expressions have five fields (minute hour day-of-month month day-of-week, as crontab) or
//! six with seconds first (`*/1 * * * * *`: every second); names (`MON`, `JAN`), ranges,
//! lists and steps as the `cron` crate reads them.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

/// Why a schedule was refused.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error(
        "cron must have 5 fields (minute hour day month weekday) or 6 (seconds first), got {0}"
    )]
    Fields(usize),
    #[error("cron expression is not valid: {0}")]
    Expression(#[source] cron::error::Error),
    #[error("timezone {0:?} is not a known IANA time zone")]
    TimeZone(String),
    #[error("cron expression never fires")]
    Never,
}

/// A parsed schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    schedule: cron::Schedule,
    zone: Tz,
}

impl Schedule {
    /// Parses `expression` in `timezone` (e.g. `Europe/Paris`, `UTC`).
    pub fn parse(expression: &str, timezone: &str) -> Result<Self, ScheduleError> {
        let fields = expression.split_whitespace().count();
        let full = match fields {
            5 => format!("0 {}", expression.trim()),
            6 => expression.trim().to_owned(),
            n => return Err(ScheduleError::Fields(n)),
        };
        let schedule = cron::Schedule::from_str(&full).map_err(ScheduleError::Expression)?;
        let zone =
            Tz::from_str(timezone).map_err(|_| ScheduleError::TimeZone(timezone.to_owned()))?;
        let parsed = Self { schedule, zone };
        if parsed.next_after(Utc::now()).is_none() {
            return Err(ScheduleError::Never);
        }
        Ok(parsed)
    }

    /// The first tick strictly after `instant`, in UTC; `None` when the schedule has no more.
    pub fn next_after(&self, instant: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.schedule
            .after(&instant.with_timezone(&self.zone))
            .next()
            .map(|t| t.with_timezone(&Utc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("a time")
            .with_timezone(&Utc)
    }

    #[test]
    fn five_fields_are_crontab_and_six_start_with_seconds() {
        let every_minute = Schedule::parse("* * * * *", "UTC").expect("valid");
        assert_eq!(
            every_minute.next_after(at("2026-01-01T10:00:30Z")),
            Some(at("2026-01-01T10:01:00Z"))
        );
        let every_second = Schedule::parse("* * * * * *", "UTC").expect("valid");
        assert_eq!(
            every_second.next_after(at("2026-01-01T10:00:30.5Z")),
            Some(at("2026-01-01T10:00:31Z"))
        );
    }

    #[test]
    fn ticks_follow_the_time_zone() {
        // 09:00 in Paris is 08:00 UTC in winter and 07:00 UTC in summer.
        let nine = Schedule::parse("0 9 * * *", "Europe/Paris").expect("valid");
        assert_eq!(
            nine.next_after(at("2026-01-15T00:00:00Z")),
            Some(Utc.with_ymd_and_hms(2026, 1, 15, 8, 0, 0).unwrap())
        );
        assert_eq!(
            nine.next_after(at("2026-07-15T00:00:00Z")),
            Some(Utc.with_ymd_and_hms(2026, 7, 15, 7, 0, 0).unwrap())
        );
    }

    #[test]
    fn bad_schedules_are_refused_with_a_reason() {
        for (expression, zone, needle) in [
            ("* * *", "UTC", "5 fields"),
            ("61 * * * *", "UTC", "not valid"),
            ("* * * * *", "Mars/Olympus", "time zone"),
            ("0 0 30 2 *", "UTC", "never"),
            ("*/0 * * * *", "UTC", "not valid"),
            ("1-0 * * * *", "UTC", ""),
            ("99999999999 * * * *", "UTC", "not valid"),
            ("* * * * * * *", "UTC", "5 fields"),
            ("L W # ? * *", "UTC", "not valid"),
        ] {
            let error = Schedule::parse(expression, zone).expect_err(expression);
            assert!(error.to_string().contains(needle), "{expression}: {error}");
        }
    }
}
