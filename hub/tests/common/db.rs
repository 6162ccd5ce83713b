//! Which database a test hub runs on. The suite runs twice in CI: on SQLite (the default) and
//! with `GATEHOUSE_TEST_BACKEND=postgres` on PostgreSQL, where each hub a test starts gets a
//! database of its own, created on the server `GATEHOUSE_TEST_PG_URL` names. `.ci/run` drops
//! the `gh_test_%` databases a previous run left.

use std::path::Path;
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

/// The `hub.database` URL of a test hub: SQLite at `sqlite_path`, or a fresh PostgreSQL
/// database when the suite runs on PostgreSQL.
pub fn database_url(sqlite_path: &Path) -> String {
    if on_postgres() {
        let admin = std::env::var(PG_URL_VAR)
            .unwrap_or_else(|_| panic!("{BACKEND_VAR}=postgres needs {PG_URL_VAR} (a server URL)"));
        fresh_database(&admin)
    } else {
        format!("sqlite://{}", sqlite_path.display())
    }
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

/// Creates an empty database on the server `admin` names and returns its URL.
pub fn fresh_database(admin: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let name = format!(
        "gh_test_{}_{}_{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
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
    let mut url = url::Url::parse(admin).expect("GATEHOUSE_TEST_PG_URL is a URL");
    url.set_path(&name);
    url.to_string()
}
