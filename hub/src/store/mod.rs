//! Storage plumbing: opening the database (SQLite or PostgreSQL), migrations, the pool,
//! [`StoreError`] and its `Context`, [`Flag`] and the statement builder [`Sql`]. No domain
//! SQL lives here: each domain keeps its statements in its own `queries.rs`.
//!
//! Both backends go through sqlx's `Any` driver, so every statement is written once. What
//! keeps one text valid on both: `$n` placeholders (never `?`, so no sqlx `QueryBuilder`:
//! build with [`Sql`]), BIGINT millisecond timestamps, `ON CONFLICT`, `RETURNING`,
//! `TRUE`/`FALSE` literals, booleans read through [`Flag`], aggregates cast to BIGINT or
//! DOUBLE PRECISION (PostgreSQL's SUM and AVG are NUMERIC, which `Any` cannot carry), and
//! [`Backend`] consulted where the dialects truly differ (a JSON array parameter). The schema
//! is kept twice, `migrations/sqlite/` and `migrations/postgres/`, numbered alike.
//!
//! Every write goes through the single writer; readers use the same pool.

mod flag;
mod sql;

use std::path::PathBuf;
use std::time::Duration;

use sqlx::any::AnyPoolOptions;

pub use flag::Flag;
pub use sql::Sql;

/// The storage backend named by `hub.database`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    Sqlite(String),
    Postgres(String),
}

impl DatabaseUrl {
    pub fn backend(&self) -> Backend {
        match self {
            DatabaseUrl::Sqlite(_) => Backend::Sqlite,
            DatabaseUrl::Postgres(_) => Backend::Postgres,
        }
    }
}

/// Which SQL dialect a pool speaks, for the few statements that differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The database the hub runs on.
pub type Pool = sqlx::AnyPool;
/// One connection (inside a transaction, for the writer).
pub type Conn = sqlx::AnyConnection;

/// The dialect of a pool.
pub fn backend_of(pool: &Pool) -> Backend {
    match pool.connect_options().database_url.scheme() {
        "sqlite" => Backend::Sqlite,
        _ => Backend::Postgres,
    }
}

/// The dialect of a connection.
pub fn backend_of_conn(conn: &Conn) -> Backend {
    if conn.backend_name().eq_ignore_ascii_case("sqlite") {
        Backend::Sqlite
    } else {
        Backend::Postgres
    }
}

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
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
    /// Another hub took the writer lease over: this hub must not write again.
    #[error("the writer lease (epoch {epoch}) was taken over by another hub; nothing of this transaction was stored")]
    Fenced { epoch: i64 },
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

/// Connections per pool on PostgreSQL: the writer's one, readers, the deliverer.
const PG_MAX_CONNECTIONS: u32 = 8;

/// Opens (creating if missing) and migrates the database.
pub async fn open(url: &DatabaseUrl) -> Result<Pool, StoreError> {
    sqlx::any::install_default_drivers();
    let pool = match url {
        DatabaseUrl::Sqlite(url) => {
            create_parent_dir(url)?;
            sqlite_pool(&with_mode(url, "rwc"), 4, false).await?
        }
        DatabaseUrl::Postgres(url) => AnyPoolOptions::new()
            .max_connections(PG_MAX_CONNECTIONS)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await
            .map_err(|source| StoreError::Open {
                path: redact_url(url),
                source,
            })?,
    };
    match url.backend() {
        Backend::Sqlite => sqlx::migrate!("./migrations/sqlite").run(&pool).await?,
        Backend::Postgres => sqlx::migrate!("./migrations/postgres").run(&pool).await?,
    }
    Ok(pool)
}

/// Opens an existing database without migrating it, read-only where the backend allows: for
/// checks that must not write (`gatehouse-hub audit verify`), whether the hub runs or not.
pub async fn open_read_only(url: &DatabaseUrl) -> Result<Pool, StoreError> {
    sqlx::any::install_default_drivers();
    match url {
        DatabaseUrl::Sqlite(url) => sqlite_pool(&with_mode(url, "ro"), 1, true).await,
        DatabaseUrl::Postgres(url) => AnyPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(5))
            .after_connect(|conn, _| {
                Box::pin(async move {
                    sqlx::query("SET default_transaction_read_only = on")
                        .execute(conn)
                        .await?;
                    Ok(())
                })
            })
            .connect(url)
            .await
            .map_err(|source| StoreError::Open {
                path: redact_url(url),
                source,
            }),
    }
}

async fn sqlite_pool(url: &str, max: u32, read_only: bool) -> Result<Pool, StoreError> {
    AnyPoolOptions::new()
        .max_connections(max)
        .min_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .after_connect(move |conn, _| {
            Box::pin(async move {
                // WAL: readers never block the writer. FULL: an Ack promises the batch survives
                // a power cut, not only a crash.
                let pragmas = if read_only {
                    "PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON"
                } else {
                    "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000; \
                     PRAGMA foreign_keys = ON"
                };
                sqlx::raw_sql(pragmas).execute(conn).await?;
                Ok(())
            })
        })
        .connect(url)
        .await
        .map_err(|source| StoreError::Open {
            path: url.to_owned(),
            source,
        })
}

/// `sqlite://path` with `mode=` set (unless the URL already says), so that the `Any` driver
/// creates the file or opens it read-only as asked.
fn with_mode(url: &str, mode: &str) -> String {
    if url.contains("mode=") || url.contains(":memory:") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&mode={mode}")
    } else {
        format!("{url}?mode={mode}")
    }
}

/// The file a `sqlite:` URL names, without its query.
fn sqlite_path(url: &str) -> PathBuf {
    let rest = url.trim_start_matches("sqlite:").trim_start_matches("//");
    PathBuf::from(rest.split('?').next().unwrap_or(rest))
}

fn create_parent_dir(url: &str) -> Result<(), StoreError> {
    if url.contains(":memory:") {
        return Ok(());
    }
    let path = sqlite_path(url);
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent).map_err(|source| StoreError::CreateDir {
            path: parent.to_owned(),
            source,
        })?;
    }
    Ok(())
}

/// A PostgreSQL URL without its password, for error messages and logs.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(parsed) => parsed.to_string(),
        Err(_) => "(unparsable database URL)".to_owned(),
    }
}

/// `SELECT 1`, for readiness.
pub async fn ping(pool: &Pool) -> Result<(), StoreError> {
    sqlx::query("SELECT 1")
        .execute(pool)
        .await
        .context(|| "database ping".into())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_get_a_mode_and_a_path() {
        assert_eq!(
            with_mode("sqlite://data/hub.db", "rwc"),
            "sqlite://data/hub.db?mode=rwc"
        );
        assert_eq!(with_mode("sqlite://a.db?mode=ro", "rwc"), "sqlite://a.db?mode=ro");
        assert_eq!(
            sqlite_path("sqlite://data/hub.db?mode=rwc"),
            PathBuf::from("data/hub.db")
        );
        assert_eq!(sqlite_path("sqlite:///tmp/x/hub.db"), PathBuf::from("/tmp/x/hub.db"));
    }

    #[test]
    fn passwords_never_reach_a_message() {
        let shown = redact_url("postgres://hub:s3cret@db:5432/gatehouse");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("db:5432/gatehouse"), "{shown}");
    }
}
