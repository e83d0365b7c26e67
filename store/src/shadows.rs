//! Parallel testing through aliases: an alias's shadow version gets a copy of a sampled share
//! of the alias's invocations as async executions; when a copy ends (in the scheduler's
//! transaction that writes its end, `queue::events::after_end`) its result is compared with
//! what the primary answered, and the alias's counts and bounded sample of differing pairs
//! are updated.
//!
//! A comparison period (`alias_comparisons`, one row per alias with a shadow) has its own id:
//! it restarts, with a new id and zero counts, whenever the alias's version or shadow version
//! changes, and copies taken under an earlier period are not counted.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::aliases::Alias;
use super::executions::{Execution, ExecutionSummary};
use super::schema::{alias_comparison_samples, alias_comparisons, executions, shadow_executions};
use super::{DbResult, ExecutionStatus};

/// The counts of an alias's current comparison period.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = alias_comparisons)]
pub struct Comparison {
    pub id: Uuid,
    pub version: i32,
    pub shadow_version: i32,
    pub same: i64,
    pub different: i64,
    pub shadow_error: i64,
    pub primary_error: i64,
    pub skipped: i64,
    pub since: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A differing pair kept in the sample (each text cut to the period's byte bound).
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = alias_comparison_samples)]
pub struct Sample {
    pub execution_id: Uuid,
    pub primary_execution_id: Uuid,
    pub kind: String,
    pub input: String,
    pub primary_status: String,
    pub primary_result: String,
    pub shadow_status: String,
    pub shadow_result: String,
    pub truncated: bool,
    pub created_at: DateTime<Utc>,
}

/// How a shadow copy compared with its primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Both succeeded with byte-identical results.
    Same,
    /// Both succeeded, with different results.
    Different,
    /// The primary succeeded, the shadow did not.
    ShadowError,
    /// The primary did not succeed (whatever the shadow did).
    PrimaryError,
}

impl Verdict {
    /// Compares a copy's end with the primary's status and result digest.
    pub fn of(
        primary_status: ExecutionStatus,
        primary_digest: &str,
        shadow_status: ExecutionStatus,
        shadow_result: Option<&str>,
    ) -> Verdict {
        if primary_status != ExecutionStatus::Succeeded {
            Verdict::PrimaryError
        } else if shadow_status != ExecutionStatus::Succeeded {
            Verdict::ShadowError
        } else if digest(shadow_result) == primary_digest {
            Verdict::Same
        } else {
            Verdict::Different
        }
    }
}

/// The digest results are compared by: sha256 (hex) of the result's text as stored, `null`
/// when there is none (a sync answer without a body is `null` too).
pub fn digest(result: Option<&str>) -> String {
    hex::encode(Sha256::digest(result.unwrap_or("null").as_bytes()))
}

/// `text` cut to at most `bytes` bytes at a character boundary, and whether it was cut.
pub fn cut(text: &str, bytes: usize) -> (String, bool) {
    if text.len() <= bytes {
        return (text.to_owned(), false);
    }
    let mut end = bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    (text[..end].to_owned(), true)
}

/// The alias's current comparison period, if it has a shadow.
pub fn current(
    conn: &mut PgConnection,
    project_id: &str,
    function_id: Uuid,
    alias: &str,
) -> DbResult<Option<Comparison>> {
    Ok(alias_comparisons::table
        .filter(alias_comparisons::project_id.eq(project_id))
        .filter(alias_comparisons::function_id.eq(function_id))
        .filter(alias_comparisons::alias.eq(alias))
        .select(Comparison::as_select())
        .first(conn)
        .optional()?)
}

/// The sample of a comparison period, newest first.
pub fn samples(conn: &mut PgConnection, comparison_id: Uuid) -> DbResult<Vec<Sample>> {
    Ok(alias_comparison_samples::table
        .filter(alias_comparison_samples::comparison_id.eq(comparison_id))
        .order(alias_comparison_samples::seq.desc())
        .select(Sample::as_select())
        .load(conn)?)
}

/// Restarts the alias's comparison period after a change (call it in the transaction that
/// saves the alias): the previous counts and sample go; an alias with a shadow starts a new
/// period with zero counts.
pub fn restart(conn: &mut PgConnection, alias: &Alias) -> DbResult<()> {
    diesel::delete(
        alias_comparisons::table
            .filter(alias_comparisons::project_id.eq(&alias.project_id))
            .filter(alias_comparisons::function_id.eq(alias.function_id))
            .filter(alias_comparisons::alias.eq(&alias.name)),
    )
    .execute(conn)?;
    if let Some(shadow) = alias.shadow_version {
        diesel::insert_into(alias_comparisons::table)
            .values((
                alias_comparisons::function_id.eq(alias.function_id),
                alias_comparisons::alias.eq(&alias.name),
                alias_comparisons::project_id.eq(&alias.project_id),
                alias_comparisons::id.eq(Uuid::new_v4()),
                alias_comparisons::version.eq(alias.version),
                alias_comparisons::shadow_version.eq(shadow),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// A shadow copy to queue: its async execution and what the primary answered.
#[derive(Debug, Clone)]
pub struct Copy {
    pub execution: Execution,
    pub comparison_id: Uuid,
    pub primary_execution_id: Uuid,
    pub primary_status: ExecutionStatus,
    /// `digest` of the primary's result as stored.
    pub primary_digest: String,
    /// The primary's result, cut to `sample_bytes`, and whether it was cut.
    pub primary_result: String,
    pub primary_truncated: bool,
    /// Differing pairs the period keeps.
    pub sample_limit: i32,
    /// Bytes of each text a kept pair holds.
    pub sample_bytes: i32,
}

/// Commits a shadow copy (its execution and what the primary answered) and wakes the
/// dispatcher, in one transaction.
pub fn enqueue(conn: &mut PgConnection, copy: &Copy) -> DbResult<ExecutionSummary> {
    Ok(conn.transaction::<_, diesel::result::Error, _>(|conn| {
        let queued = diesel::insert_into(executions::table)
            .values(&copy.execution)
            .returning(ExecutionSummary::as_returning())
            .get_result(conn)?;
        diesel::insert_into(shadow_executions::table)
            .values((
                shadow_executions::execution_id.eq(copy.execution.id),
                shadow_executions::comparison_id.eq(copy.comparison_id),
                shadow_executions::primary_execution_id.eq(copy.primary_execution_id),
                shadow_executions::primary_status.eq(copy.primary_status.as_str()),
                shadow_executions::primary_digest.eq(&copy.primary_digest),
                shadow_executions::primary_result.eq(&copy.primary_result),
                shadow_executions::primary_truncated.eq(copy.primary_truncated),
                shadow_executions::sample_limit.eq(copy.sample_limit),
                shadow_executions::sample_bytes.eq(copy.sample_bytes),
            ))
            .execute(conn)?;
        diesel::sql_query(format!("NOTIFY {}", super::queue::QUEUE_CHANNEL)).execute(conn)?;
        Ok(queued)
    })?)
}

/// Counts `n` copies of period `comparison_id` that were not queued (the project's
/// `queued_executions` quota refused them, or the API's shadow queue was full).
pub fn skipped(conn: &mut PgConnection, comparison_id: Uuid, n: i64) -> DbResult<()> {
    diesel::update(alias_comparisons::table.filter(alias_comparisons::id.eq(comparison_id)))
        .set((
            alias_comparisons::skipped.eq(alias_comparisons::skipped + n),
            alias_comparisons::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)?;
    Ok(())
}

/// What a shadow copy carries about its primary.
#[derive(Queryable)]
struct Pending {
    comparison_id: Uuid,
    primary_execution_id: Uuid,
    primary_status: ExecutionStatus,
    primary_digest: String,
    primary_result: String,
    primary_truncated: bool,
    sample_limit: i32,
    sample_bytes: i32,
}

/// How a copy ended, as its execution row says.
pub(crate) struct Ended<'a> {
    pub status: ExecutionStatus,
    pub result: Option<&'a str>,
    pub error: Option<&'a serde_json::Value>,
    pub input: Option<&'a [u8]>,
}

/// When execution `id`, which has just ended, is a shadow copy: compares it with its primary,
/// counts the verdict in its comparison period (when that period is still the alias's
/// current one) and keeps a differing pair in the sample, bounded by the period's limits.
/// Returns the verdict, `None` when `id` is no shadow copy. Runs inside the transaction that
/// writes the end, so each copy is counted once.
pub(crate) fn compare_ended(
    conn: &mut PgConnection,
    id: Uuid,
    ended: &Ended<'_>,
) -> QueryResult<Option<Verdict>> {
    let Some(pending) = diesel::delete(shadow_executions::table.find(id))
        .returning((
            shadow_executions::comparison_id,
            shadow_executions::primary_execution_id,
            shadow_executions::primary_status,
            shadow_executions::primary_digest,
            shadow_executions::primary_result,
            shadow_executions::primary_truncated,
            shadow_executions::sample_limit,
            shadow_executions::sample_bytes,
        ))
        .get_result::<Pending>(conn)
        .optional()?
    else {
        return Ok(None);
    };
    let verdict = Verdict::of(
        pending.primary_status,
        &pending.primary_digest,
        ended.status,
        ended.result,
    );
    let period = alias_comparisons::table.filter(alias_comparisons::id.eq(pending.comparison_id));
    let now = diesel::dsl::now;
    let counted = match verdict {
        Verdict::Same => diesel::update(period)
            .set((
                alias_comparisons::same.eq(alias_comparisons::same + 1),
                alias_comparisons::updated_at.eq(now),
            ))
            .execute(conn)?,
        Verdict::Different => diesel::update(period)
            .set((
                alias_comparisons::different.eq(alias_comparisons::different + 1),
                alias_comparisons::updated_at.eq(now),
            ))
            .execute(conn)?,
        Verdict::ShadowError => diesel::update(period)
            .set((
                alias_comparisons::shadow_error.eq(alias_comparisons::shadow_error + 1),
                alias_comparisons::updated_at.eq(now),
            ))
            .execute(conn)?,
        Verdict::PrimaryError => diesel::update(period)
            .set((
                alias_comparisons::primary_error.eq(alias_comparisons::primary_error + 1),
                alias_comparisons::updated_at.eq(now),
            ))
            .execute(conn)?,
    };
    let kind = match verdict {
        Verdict::Different => "different",
        Verdict::ShadowError => "shadow_error",
        Verdict::Same | Verdict::PrimaryError => return Ok(Some(verdict)),
    };
    if counted == 0 || pending.sample_limit <= 0 {
        return Ok(Some(verdict));
    }
    let bytes = usize::try_from(pending.sample_bytes).unwrap_or(0);
    let input = ended
        .input
        .map_or_else(String::new, |b| String::from_utf8_lossy(b).into_owned());
    let (input, input_cut) = cut(&input, bytes);
    let shadow_text = match (ended.result, ended.error) {
        (Some(result), _) if ended.status == ExecutionStatus::Succeeded => result.to_owned(),
        (_, Some(error)) => error.to_string(),
        (result, None) => result.unwrap_or("null").to_owned(),
    };
    let (shadow_result, shadow_cut) = cut(&shadow_text, bytes);
    diesel::insert_into(alias_comparison_samples::table)
        .values((
            alias_comparison_samples::comparison_id.eq(pending.comparison_id),
            alias_comparison_samples::execution_id.eq(id),
            alias_comparison_samples::primary_execution_id.eq(pending.primary_execution_id),
            alias_comparison_samples::kind.eq(kind),
            alias_comparison_samples::input.eq(input),
            alias_comparison_samples::primary_status.eq(pending.primary_status.as_str()),
            alias_comparison_samples::primary_result.eq(&pending.primary_result),
            alias_comparison_samples::shadow_status.eq(ended.status.as_str()),
            alias_comparison_samples::shadow_result.eq(shadow_result),
            alias_comparison_samples::truncated
                .eq(input_cut || shadow_cut || pending.primary_truncated),
        ))
        .execute(conn)?;
    // Keep the newest `sample_limit` pairs of the period.
    diesel::sql_query(
        "DELETE FROM alias_comparison_samples WHERE comparison_id = $1 AND seq <= \
         (SELECT seq FROM alias_comparison_samples WHERE comparison_id = $1 \
          ORDER BY seq DESC OFFSET $2 LIMIT 1)",
    )
    .bind::<diesel::sql_types::Uuid, _>(pending.comparison_id)
    .bind::<diesel::sql_types::BigInt, _>(i64::from(pending.sample_limit))
    .execute(conn)?;
    Ok(Some(verdict))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts() {
        let one = digest(Some("1"));
        let ok = ExecutionStatus::Succeeded;
        let failed = ExecutionStatus::Failed;
        // (primary status, shadow status, shadow result, verdict)
        for (primary, shadow, result, verdict) in [
            (ok, ok, Some("1"), Verdict::Same),
            (ok, ok, Some("2"), Verdict::Different),
            (ok, ok, None, Verdict::Different),
            (ok, failed, Some("1"), Verdict::ShadowError),
            (ok, ExecutionStatus::Timeout, None, Verdict::ShadowError),
            (failed, ok, Some("1"), Verdict::PrimaryError),
            (ExecutionStatus::Error, failed, None, Verdict::PrimaryError),
        ] {
            assert_eq!(
                Verdict::of(primary, &one, shadow, result),
                verdict,
                "{primary} {shadow} {result:?}"
            );
        }
        assert_eq!(digest(None), digest(Some("null")));
    }

    #[test]
    fn cuts_at_a_character_boundary() {
        assert_eq!(cut("abc", 3), ("abc".to_owned(), false));
        assert_eq!(cut("abcd", 3), ("abc".to_owned(), true));
        assert_eq!(cut("aé", 2), ("a".to_owned(), true));
        assert_eq!(cut("", 0), (String::new(), false));
    }
}
