//! Which database a test hub runs on. The suite runs twice in CI: on SQLite (the default) and
//! with `GATEHOUSE_TEST_BACKEND=postgres` on PostgreSQL, where each hub a test starts gets a
//! database of its own, created on the server `GATEHOUSE_TEST_PG_URL` names. `.ci/run` drops
//! the `gh_test_%` databases a previous run left.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// `sqlite` (default) or `postgres`: the backend every test hub uses.
pub const BACKEND_VAR: &str = "GATEHOUSE_TEST_BACKEND";
/// A URL of the PostgreSQL server with the right to create databases, e.g.
/// `postgres://postgres@127.0.0.1:5432/postgres`.
pub const PG_URL_VAR: &str = "GATEHOUSE_TEST_PG_URL";

/// True when the suite runs on PostgreSQL.
pub fn on_postgres() -> bool {
    std::env::var(BACKEND_VAR).is_ok_and(|b| b == "postgres")
}

/// The `hub.database` URL of a test hub: SQLite at `sqlite_path`, or, when the suite runs on
/// PostgreSQL, a database of its own created on the first call for that path: a hub restarted
/// on the same path (or a test that inspects its database) gets the same database back.
pub fn database_url(sqlite_path: &Path) -> String {
    if on_postgres() {
        by_path()
            .entry(sqlite_path.to_path_buf())
            .or_insert_with(|| {
                let admin = std::env::var(PG_URL_VAR)
                    .unwrap_or_else(|_| panic!("{BACKEND_VAR}=postgres needs {PG_URL_VAR} (a server URL)"));
                fresh_database(&admin)
            })
            .clone()
    } else {
        format!("sqlite://{}", sqlite_path.display())
    }
}

/// The PostgreSQL database made for each SQLite path, in this test process.
fn by_path() -> std::sync::MutexGuard<'static, BTreeMap<PathBuf, String>> {
    static BY_PATH: Mutex<BTreeMap<PathBuf, String>> = Mutex::new(BTreeMap::new());
    BY_PATH.lock().unwrap_or_else(|e| e.into_inner())
}

/// Copies the database of the stopped hub at `from` to `to`, the path a second hub (or the
/// `audit verify` command) then opens: the file with its WAL on SQLite; on PostgreSQL a new
/// database made from the first as template (no session may be open on it).
pub async fn copy(from: &Path, to: &Path) {
    if !on_postgres() {
        std::fs::copy(from, to).expect("copying the database file");
        for ext in ["-wal", "-shm"] {
            let side = format!("{}{ext}", from.display());
            if Path::new(&side).exists() {
                std::fs::copy(&side, format!("{}{ext}", to.display())).expect("copying the WAL");
            }
        }
        return;
    }
    let source = database_url(from);
    let admin = std::env::var(PG_URL_VAR).expect("GATEHOUSE_TEST_PG_URL is set");
    let template = database_name(&source);
    let name = fresh_name();
    let pool = inspect(&admin).await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE DATABASE {name} TEMPLATE {template}"
    )))
    .execute(&pool)
    .await
    .unwrap_or_else(|e| panic!("copying database {template}: {e}"));
    pool.close().await;
    by_path().insert(to.to_path_buf(), with_database(&admin, &name));
}

/// Everything the database of the stopped hub at `sqlite_path` keeps, as text: the bytes of
/// every file in its directory on SQLite; every row of every table on PostgreSQL.
pub async fn stored_text(sqlite_path: &Path) -> String {
    if !on_postgres() {
        let dir = sqlite_path.parent().expect("the database file is in a directory");
        let mut stored = Vec::new();
        for entry in std::fs::read_dir(dir).expect("the test directory") {
            stored.extend(std::fs::read(entry.expect("a directory entry").path()).expect("a stored file"));
        }
        return String::from_utf8_lossy(&stored).into_owned();
    }
    let pool = inspect_at(sqlite_path).await;
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::TEXT FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
    )
    .fetch_all(&pool)
    .await
    .expect("the table list");
    let mut text = String::new();
    for table in tables {
        let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT CAST(t AS TEXT) FROM \"{table}\" AS t"
        )))
        .fetch_all(&pool)
        .await
        .unwrap_or_else(|e| panic!("reading {table}: {e}"));
        for row in rows {
            text.push_str(&row);
            text.push('\n');
        }
    }
    pool.close().await;
    text
}

/// A pool on the database at `url` (from [`database_url`]) for a test that reads or tampers
/// with it directly, on either backend. SQLite: the existing file, one connection.
pub async fn inspect(url: &str) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .unwrap_or_else(|e| panic!("opening {url} to inspect it: {e}"))
}

/// [`inspect`] on the database of the test hub whose SQLite path is `sqlite_path`.
pub async fn inspect_at(sqlite_path: &Path) -> sqlx::AnyPool {
    inspect(&database_url(sqlite_path)).await
}

/// The server URL for a test that needs PostgreSQL whatever the suite's backend, or `None`
/// after saying by name that the test was skipped.
pub fn pg_server_or_skip(test: &str) -> Option<String> {
    match std::env::var(PG_URL_VAR) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            eprintln!("skipped: {test} needs PostgreSQL; set {PG_URL_VAR} (.ci/run sets it)");
            None
        }
    }
}

/// A database name no other test (of this run or a parallel one) uses: `gh_test_…`.
fn fresh_name() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "gh_test_{}_{}_{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The database a PostgreSQL URL names.
fn database_name(url: &str) -> String {
    let url = url::Url::parse(url).expect("a database URL");
    url.path().trim_start_matches('/').to_owned()
}

/// The server URL `admin` with its database replaced by `name`.
fn with_database(admin: &str, name: &str) -> String {
    let mut url = url::Url::parse(admin).expect("GATEHOUSE_TEST_PG_URL is a URL");
    url.set_path(name);
    url.to_string()
}

/// Creates an empty database on the server `admin` names and returns its URL.
pub fn fresh_database(admin: &str) -> String {
    let name = fresh_name();
    let admin_url = admin.to_owned();
    let create = name.clone();
    // Its own thread and runtime: test configurations are built in sync code, often inside
    // a Tokio runtime that must not be blocked from within.
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        rt.block_on(async {
            use sqlx::Connection as _;
            let mut conn = sqlx::PgConnection::connect(&admin_url)
                .await
                .unwrap_or_else(|e| panic!("connecting to {admin_url}: {e}"));
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {create}")))
                .execute(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("creating database {create}: {e}"));
        })
    })
    .join()
    .expect("database creation thread");
    with_database(admin, &name)
}
