//! The retirement log (`function_retirements`): warm containers that must stop serving,
//! written in the transaction of the change that makes them stale (see the migration).
//! Schedulers read it and hand it to agents; only the API writes it.

use diesel::prelude::*;
use diesel::sql_types::BigInt;
use fresco_common::wire::RETIREMENT_LOG_LOCK;
use uuid::Uuid;

use super::schema::function_retirements;
use super::DbResult;

/// Which revisions of the retired version stop serving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revisions {
    /// All of them (a deleted function or version).
    All,
    /// Those older than this retirement, whose `seq` becomes the function's new revision.
    OlderThanThis,
}

/// Appends a retirement; returns its `seq`. Call last in the transaction: the log's lock is
/// held until commit, so that rows become visible in `seq` order.
pub fn record(
    conn: &mut PgConnection,
    project_id: &str,
    function_id: Uuid,
    version: Option<i32>,
    revisions: Revisions,
) -> DbResult<i64> {
    diesel::sql_query("SELECT pg_advisory_xact_lock($1)")
        .bind::<BigInt, _>(RETIREMENT_LOG_LOCK)
        .execute(conn)?;
    let seq: i64 = diesel::select(diesel::dsl::sql::<BigInt>(
        "nextval('function_retirements_seq_seq')",
    ))
    .get_result(conn)?;
    diesel::insert_into(function_retirements::table)
        .values((
            function_retirements::seq.eq(seq),
            function_retirements::project_id.eq(project_id),
            function_retirements::function_id.eq(function_id),
            function_retirements::version.eq(version),
            function_retirements::below_revision
                .eq((revisions == Revisions::OlderThanThis).then_some(seq)),
        ))
        .execute(conn)?;
    Ok(seq)
}
