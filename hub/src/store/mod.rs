//! Storage plumbing: opening the database, migrations, the pool, [`StoreError`] and its
//! `Context`. No domain SQL lives here: each domain keeps its statements in its own
//! `queries.rs` (`alarms`, `events`, `incidents`, `escalation`, `notify`, `rota`).
//!
//! Every write goes through the single writer (one writer, as SQLite wants). SQL is kept
//! portable to PostgreSQL: `$n` placeholders, BIGINT millisecond
//! timestamps, `ON CONFLICT`, `RETURNING`; SQLite-only syntax appears only in the
//! migrations under `migrations/sqlite/`.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

/// The storage backend named by `hub.database`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    Sqlite(String),
    Postgres(String),
}

/// The database the hub runs on.
pub type Pool = sqlx::SqlitePool;
/// One connection (inside a transaction, for the writer).
pub type Conn = sqlx::SqliteConnection;

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("PostgreSQL backend not yet available (hub.database names postgres://); use sqlite://")]
    PostgresNotYetAvailable,
    #[error("cannot create the database directory {path}: {source}")]
    CreateDir { path: PathBuf, source: std::io::Error },
    #[error("cannot open the database {path}: {source}")]
    Open { path: String, source: sqlx::Error },
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{what}: {source}")]
    Query {
        what: String,
        #[source]
        source: sqlx::Error,
    },
}

/// Adds what was being done to a sqlx error.
pub(crate) trait Context<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T, StoreError>;
}

impl<T> Context<T> for Result<T, sqlx::Error> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T, StoreError> {
        self.map_err(|source| StoreError::Query { what: what(), source })
    }
}

/// Opens (creating if missing) and migrates the database.
pub async fn open(url: &DatabaseUrl) -> Result<Pool, StoreError> {
    let url = match url {
        DatabaseUrl::Sqlite(url) => url,
        DatabaseUrl::Postgres(_) => return Err(StoreError::PostgresNotYetAvailable),
    };
    let options = SqliteConnectOptions::from_str(url)
        .map_err(|source| StoreError::Open {
            path: url.clone(),
            source,
        })?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        // FULL: an Ack promises the batch survives a power cut, not only a crash.
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(5))
        .foreign_keys(true);
    let path = options.get_filename().to_owned();
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent).map_err(|source| StoreError::CreateDir {
            path: parent.to_owned(),
            source,
        })?;
    }
    let pool = SqlitePoolOptions::new()
        .max_connections(4)
        .min_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await
        .map_err(|source| StoreError::Open {
            path: path.display().to_string(),
            source,
        })?;
    sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
    Ok(pool)
}

/// Opens an existing SQLite database read-only, without migrating it: for checks that must
/// not write (`gatehouse-hub audit verify`), whether the hub is running or stopped.
pub async fn open_read_only(url: &DatabaseUrl) -> Result<Pool, StoreError> {
    let url = match url {
        DatabaseUrl::Sqlite(url) => url,
        DatabaseUrl::Postgres(_) => return Err(StoreError::PostgresNotYetAvailable),
    };
    let open_error = |source| StoreError::Open {
        path: url.clone(),
        source,
    };
    let options = SqliteConnectOptions::from_str(url)
        .map_err(open_error)?
        .read_only(true)
        .create_if_missing(false)
        .busy_timeout(Duration::from_secs(5));
    SqlitePoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await
        .map_err(open_error)
}

/// `SELECT 1`, for readiness.
pub async fn ping(pool: &Pool) -> Result<(), StoreError> {
    sqlx::query("SELECT 1")
        .execute(pool)
        .await
        .context(|| "database ping".into())?;
    Ok(())
}
