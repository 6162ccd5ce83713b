//! Storage: opening the database, migrations, and the queries the API reads with.
//!
//! Writes live in [`write`] and are performed only by the ingest writer (one writer, as
//! SQLite wants). SQL is kept portable to PostgreSQL: `$n` placeholders, BIGINT millisecond
//! timestamps, `ON CONFLICT`, `RETURNING`; SQLite-only syntax appears only in the
//! migrations under `migrations/sqlite/`.

pub mod incidents;
pub mod write;

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Sqlite};

use crate::alarms::{AlarmJson, AlarmKey, Category, EventRef, HistoryJson, Priority, StateFilter, rfc3339};
use crate::config::DatabaseUrl;

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

/// An alarm row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AlarmRow {
    pub id: i64,
    pub estate_id: String,
    pub device_id: String,
    pub gateway_id: String,
    pub area: String,
    pub condition: String,
    pub priority: String,
    pub category: String,
    pub message: String,
    pub active: bool,
    pub acknowledged: bool,
    pub latched: bool,
    pub activations: i64,
    pub value: Option<f64>,
    pub raised_at_ms: i64,
    pub changed_at_ms: i64,
    pub acked_at_ms: Option<i64>,
    pub acked_by: Option<String>,
    pub shelved_until_ms: Option<i64>,
    pub shelved_by: Option<String>,
    pub shelve_reason: Option<String>,
    pub suppressed: bool,
    pub out_of_service: bool,
    pub chattering: bool,
    pub incident_id: Option<i64>,
}

pub(crate) const ALARM_COLUMNS: &str = "id, estate_id, device_id, gateway_id, area, condition, priority, \
     category, message, active, acknowledged, latched, activations, value, raised_at_ms, \
     changed_at_ms, acked_at_ms, acked_by, shelved_until_ms, shelved_by, shelve_reason, \
     suppressed, out_of_service, chattering, incident_id";

impl AlarmRow {
    pub fn key(&self) -> AlarmKey {
        AlarmKey::new(&self.estate_id, &self.device_id, &self.condition)
    }

    pub fn to_json(&self) -> AlarmJson {
        AlarmJson {
            id: self.id,
            estate: self.estate_id.clone(),
            device: self.device_id.clone(),
            area: self.area.clone(),
            gateway: self.gateway_id.clone(),
            condition: self.condition.clone(),
            priority: self.priority.clone(),
            category: self.category.clone(),
            message: self.message.clone(),
            active: self.active,
            acknowledged: self.acknowledged,
            latched: self.latched,
            activations: self.activations,
            value: self.value,
            raised_at: rfc3339(self.raised_at_ms),
            changed_at: rfc3339(self.changed_at_ms),
            acked_at: self.acked_at_ms.map(rfc3339),
            acked_by: self.acked_by.clone(),
            shelved: self.shelved_until_ms.is_some(),
            shelved_until: self.shelved_until_ms.map(rfc3339),
            shelved_by: self.shelved_by.clone(),
            shelve_reason: self.shelve_reason.clone(),
            suppressed: self.suppressed,
            out_of_service: self.out_of_service,
            chattering: self.chattering,
            incident_id: self.incident_id,
        }
    }
}

/// Filters of `GET /alarms`.
#[derive(Debug, Clone, Default)]
pub struct AlarmFilter {
    pub estate: Option<String>,
    pub state: Option<StateFilter>,
    pub priority: Option<Priority>,
    pub category: Option<Category>,
    pub limit: i64,
}

/// Alarms matching `filter`, newest change first.
pub async fn list_alarms(pool: &Pool, filter: &AlarmFilter) -> Result<Vec<AlarmRow>, StoreError> {
    let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(format!("SELECT {ALARM_COLUMNS} FROM alarms WHERE 1 = 1"));
    if let Some(estate) = &filter.estate {
        q.push(" AND estate_id = ").push_bind(estate.clone());
    }
    if let Some(priority) = filter.priority {
        q.push(" AND priority = ").push_bind(priority.as_str());
    }
    if let Some(category) = filter.category {
        q.push(" AND category = ").push_bind(category.as_str());
    }
    match filter.state {
        None => {}
        Some(StateFilter::Active) => {
            q.push(" AND active = ").push_bind(true);
        }
        Some(StateFilter::Cleared) => {
            q.push(" AND active = ").push_bind(false);
        }
        Some(StateFilter::Acknowledged) => {
            q.push(" AND acknowledged = ").push_bind(true);
        }
        Some(StateFilter::Unacknowledged) => {
            q.push(" AND acknowledged = ").push_bind(false);
        }
        Some(StateFilter::Standing) => {
            q.push(" AND (active = ")
                .push_bind(true)
                .push(" OR acknowledged = ")
                .push_bind(false)
                .push(")");
        }
    }
    q.push(" ORDER BY changed_at_ms DESC, id DESC LIMIT ")
        .push_bind(filter.limit);
    q.build_query_as::<AlarmRow>()
        .fetch_all(pool)
        .await
        .context(|| "listing alarms".into())
}

/// One alarm by id.
pub async fn get_alarm(conn: &mut Conn, id: i64) -> Result<Option<AlarmRow>, StoreError> {
    sqlx::query_as::<_, AlarmRow>(sqlx::AssertSqlSafe(format!(
        "SELECT {ALARM_COLUMNS} FROM alarms WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(conn)
    .await
    .context(|| format!("reading alarm {id}"))
}

/// One alarm by id, from the pool.
pub async fn find_alarm(pool: &Pool, id: i64) -> Result<Option<AlarmRow>, StoreError> {
    let mut conn = pool.acquire().await.context(|| format!("reading alarm {id}"))?;
    get_alarm(&mut conn, id).await
}

#[derive(Debug, sqlx::FromRow)]
struct HistoryRow {
    id: i64,
    alarm_id: i64,
    at_ms: i64,
    change: String,
    actor: Option<String>,
    event_gateway_id: Option<String>,
    event_seq: Option<i64>,
    note: Option<String>,
}

/// The history of one alarm, oldest first.
pub async fn alarm_history(pool: &Pool, alarm_id: i64) -> Result<Vec<HistoryJson>, StoreError> {
    let rows = sqlx::query_as::<_, HistoryRow>(
        "SELECT id, alarm_id, at_ms, change, actor, event_gateway_id, event_seq, note \
         FROM alarm_history WHERE alarm_id = $1 ORDER BY id",
    )
    .bind(alarm_id)
    .fetch_all(pool)
    .await
    .context(|| format!("reading the history of alarm {alarm_id}"))?;
    Ok(rows
        .into_iter()
        .map(|r| HistoryJson {
            id: r.id,
            alarm_id: r.alarm_id,
            at: rfc3339(r.at_ms),
            change: r.change,
            actor: r.actor,
            event: match (r.event_gateway_id, r.event_seq) {
                (Some(gateway), Some(seq)) => Some(EventRef { gateway, seq }),
                _ => None,
            },
            note: r.note,
        })
        .collect())
}

/// A gateway row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct GatewayRow {
    pub id: String,
    pub estate_id: String,
    pub software_version: String,
    pub connected: bool,
    pub last_seen_ms: Option<i64>,
    pub last_seq: i64,
}

pub async fn gateways(pool: &Pool) -> Result<Vec<GatewayRow>, StoreError> {
    sqlx::query_as::<_, GatewayRow>(
        "SELECT id, estate_id, software_version, connected, last_seen_ms, last_seq \
         FROM gateways ORDER BY estate_id, id",
    )
    .fetch_all(pool)
    .await
    .context(|| "listing gateways".into())
}

/// Active alarms per estate.
pub async fn active_alarms_by_estate(pool: &Pool) -> Result<Vec<(String, i64)>, StoreError> {
    sqlx::query_as::<_, (String, i64)>("SELECT estate_id, COUNT(*) FROM alarms WHERE active = $1 GROUP BY estate_id")
        .bind(true)
        .fetch_all(pool)
        .await
        .context(|| "counting active alarms".into())
}

/// Alarm counts by (priority, active, acknowledged), for metrics.
pub async fn alarm_counts(pool: &Pool) -> Result<Vec<(String, bool, bool, i64)>, StoreError> {
    sqlx::query_as::<_, (String, bool, bool, i64)>(
        "SELECT priority, active, acknowledged, COUNT(*) FROM alarms \
         GROUP BY priority, active, acknowledged",
    )
    .fetch_all(pool)
    .await
    .context(|| "counting alarms".into())
}

/// Every gateway's stored last sequence number (writer start).
pub async fn gateway_seqs(pool: &Pool) -> Result<Vec<(String, i64)>, StoreError> {
    sqlx::query_as::<_, (String, i64)>("SELECT id, last_seq FROM gateways")
        .fetch_all(pool)
        .await
        .context(|| "reading gateway sequence numbers".into())
}

/// The active alarms (writer start: the rule engine continues from them).
pub async fn active_alarms(pool: &Pool) -> Result<Vec<AlarmRow>, StoreError> {
    sqlx::query_as::<_, AlarmRow>(sqlx::AssertSqlSafe(format!(
        "SELECT {ALARM_COLUMNS} FROM alarms WHERE active = $1"
    )))
    .bind(true)
    .fetch_all(pool)
    .await
    .context(|| "reading active alarms".into())
}

/// Marks every gateway disconnected (start: no stream survives a restart).
pub async fn mark_all_disconnected(pool: &Pool) -> Result<(), StoreError> {
    sqlx::query("UPDATE gateways SET connected = $1 WHERE connected = $2")
        .bind(false)
        .bind(true)
        .execute(pool)
        .await
        .context(|| "marking gateways disconnected".into())?;
    Ok(())
}

/// `SELECT 1`, for readiness.
pub async fn ping(pool: &Pool) -> Result<(), StoreError> {
    sqlx::query("SELECT 1")
        .execute(pool)
        .await
        .context(|| "database ping".into())?;
    Ok(())
}
