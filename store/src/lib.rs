//! fresco-store: Fresco's data contract. The only crate that knows diesel and the database's
//! shape: the migrations (`migrations/`, embedded), the one diesel schema, and the storage of
//! each aggregate, used by both the API and the scheduler.
//!
//! Modules: one per aggregate for the API's calls on a connection (`functions`, `versions`,
//! `aliases`, `runtimes`, `executions`, `quotas`, `agents`, `retirements`; `paging` is their
//! keyset pagination), and `queue`, the scheduler's pool with its queue operations (claim,
//! finish, requeue, retention) and every leader-only write fenced by the leader lease.
//!
//! Invariant: every function here that reads or writes tenant data takes the project it acts
//! for (`Scope`) and filters on it in SQL. Nothing above this layer filters by project.

pub mod agents;
pub mod aliases;
pub mod event_configs;
pub mod executions;
pub mod functions;
pub mod hooks;
pub mod paging;
pub mod pipelines;
pub mod queue;
pub mod quotas;
pub mod retirements;
pub mod runtimes;
pub mod schema;
pub mod shadows;
pub mod status;
pub mod targets;
pub mod triggers;
pub mod versions;

pub use status::ExecutionStatus;

use std::time::Duration;

pub use diesel::pg::PgConnection;
use diesel::r2d2::{ConnectionManager, Pool, PooledConnection};
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::{Connection, RunQueryDsl};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

pub type PgPool = Pool<ConnectionManager<PgConnection>>;
pub type Conn = PooledConnection<ConnectionManager<PgConnection>>;

/// The SQL migrations of `migrations/`, compiled into the binary.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations");

/// Storage errors, as the domain layer needs to tell them apart.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("not found")]
    NotFound,
    /// A unique constraint was violated (a duplicate name, most often).
    #[error("already exists")]
    Duplicate,
    /// A foreign key or check constraint refused the change: the object is in use or refers to
    /// something missing.
    #[error("conflict: {0}")]
    Conflict(String),
    /// No connection could be had, or the connection broke: the database is down or overloaded.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// PostgreSQL refused a value's text (a NUL character, which `text` and `jsonb` cannot
    /// hold). Validation refuses such input first; this is the safety net.
    #[error("text not storable: {0}")]
    InvalidText(String),
    #[error("database error: {0}")]
    Other(String),
}

impl From<DieselError> for DbError {
    fn from(error: DieselError) -> Self {
        match error {
            DieselError::NotFound => DbError::NotFound,
            DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => DbError::Duplicate,
            DieselError::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, info)
            | DieselError::DatabaseError(DatabaseErrorKind::CheckViolation, info) => {
                DbError::Conflict(info.constraint_name().unwrap_or("constraint").to_owned())
            }
            DieselError::DatabaseError(DatabaseErrorKind::UnableToSendCommand, info) => {
                DbError::Unavailable(info.message().to_owned())
            }
            DieselError::DatabaseError(DatabaseErrorKind::ClosedConnection, info) => {
                DbError::Unavailable(info.message().to_owned())
            }
            DieselError::DatabaseError(DatabaseErrorKind::Unknown, info)
                if is_connection_failure(info.message()) =>
            {
                DbError::Unavailable(info.message().to_owned())
            }
            DieselError::DatabaseError(_, info) if is_unstorable_text(info.message()) => {
                DbError::InvalidText(info.message().to_owned())
            }
            other => DbError::Other(other.to_string()),
        }
    }
}

impl From<r2d2::Error> for DbError {
    fn from(error: r2d2::Error) -> Self {
        DbError::Unavailable(error.to_string())
    }
}

fn is_connection_failure(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    [
        "server closed the connection",
        "connection refused",
        "terminating connection",
        "no connection to the server",
        "could not connect",
    ]
    .iter()
    .any(|needle| message.contains(needle))
}

/// PostgreSQL's refusals of a NUL: `invalid byte sequence for encoding "UTF8": 0x00` in text,
/// `unsupported Unicode escape sequence` (`\u0000`) in jsonb.
fn is_unstorable_text(message: &str) -> bool {
    message.contains("invalid byte sequence for encoding")
        || message.contains("unsupported Unicode escape sequence")
}

pub type DbResult<T> = Result<T, DbError>;

/// Builds the connection pool without connecting, so the API starts (and answers 503) while
/// the database is down, and recovers on its own when it comes back.
pub fn pool(url: &str, max_size: u32, timeout: Duration) -> PgPool {
    Pool::builder()
        .max_size(max_size)
        .min_idle(Some(max_size.min(4)))
        .connection_timeout(timeout)
        // A connection that died under a simple query is not always marked broken by diesel,
        // and r2d2 hands out the most recently returned one first: without a check on
        // checkout, one dead connection would answer every request after an outage. The
        // check costs one round trip per checkout.
        .test_on_check_out(true)
        .build_unchecked(ConnectionManager::new(url))
}

/// One connection of its own (not pooled), for a one-off job such as `--db-sync`.
pub fn connect(url: &str) -> DbResult<PgConnection> {
    PgConnection::establish(url).map_err(|e| DbError::Unavailable(e.to_string()))
}

/// Checks that the database answers on `conn`.
pub fn ping(conn: &mut PgConnection) -> DbResult<()> {
    diesel::sql_query("SELECT 1").execute(conn)?;
    Ok(())
}

/// Runs `f` in a transaction: committed when it returns `Ok`, rolled back otherwise. The
/// caller's error type holds the storage errors (`From<DbError>`), so `f` may fail with its
/// own errors as well as with the store's.
pub fn transaction<T, E: From<DbError>>(
    conn: &mut PgConnection,
    f: impl FnOnce(&mut PgConnection) -> Result<T, E>,
) -> Result<T, E> {
    // diesel needs an error type that can hold its own errors; wrap the caller's.
    enum TxError<E> {
        Caller(E),
        Diesel(DieselError),
    }
    impl<E> From<DieselError> for TxError<E> {
        fn from(e: DieselError) -> Self {
            TxError::Diesel(e)
        }
    }
    conn.transaction::<T, TxError<E>, _>(|conn| f(conn).map_err(TxError::Caller))
        .map_err(|e| match e {
            TxError::Caller(e) => e,
            TxError::Diesel(e) => E::from(DbError::from(e)),
        })
}

/// Applies pending migrations; returns the versions applied.
pub fn migrate(conn: &mut PgConnection) -> Result<Vec<String>, String> {
    conn.run_pending_migrations(MIGRATIONS)
        .map(|versions| versions.iter().map(ToString::to_string).collect())
        .map_err(|e| e.to_string())
}

/// The project a storage call acts for. `All` is only built for admins who asked for
/// `all_projects=true` (optionally narrowed to one project).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    Project(String),
    All { project_id: Option<String> },
}

impl Scope {
    /// The single project this scope names, if any.
    pub fn project(&self) -> Option<&str> {
        match self {
            Scope::Project(p) => Some(p),
            Scope::All { project_id } => project_id.as_deref(),
        }
    }
}

/// Applies a `Scope` to a boxed query on a table with a `project_id` column.
macro_rules! scoped {
    ($query:expr, $column:expr, $scope:expr) => {{
        let query = $query;
        match $scope.project() {
            Some(project) => query.filter($column.eq(project.to_owned())),
            None => query,
        }
    }};
}
pub(crate) use scoped;
