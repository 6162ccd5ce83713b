//! The command centre's reads (it writes nothing: its actions go through the writer).

use sqlx::{QueryBuilder, Sqlite};

use crate::alarms::queries::{ALARM_COLUMNS, AlarmRow};
use crate::store::{Context, Pool, StoreError};

/// Whether an alarm belongs to the watched set: active, or unacknowledged, or shelved
/// (the same rule as [`standing_alarms`]' WHERE clause).
pub fn stands(row: &AlarmRow) -> bool {
    row.active || !row.acknowledged || row.shelved_until_ms.is_some()
}

/// Every standing alarm (see [`stands`]), of one estate or all, oldest first.
pub async fn standing_alarms(pool: &Pool, estate: Option<&str>) -> Result<Vec<AlarmRow>, StoreError> {
    let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(format!("SELECT {ALARM_COLUMNS} FROM alarms WHERE (active = "));
    q.push_bind(true)
        .push(" OR acknowledged = ")
        .push_bind(false)
        .push(" OR shelved_until_ms IS NOT NULL)");
    if let Some(estate) = estate {
        q.push(" AND estate_id = ").push_bind(estate.to_owned());
    }
    q.push(" ORDER BY id");
    q.build_query_as::<AlarmRow>()
        .fetch_all(pool)
        .await
        .context(|| "listing standing alarms".into())
}
