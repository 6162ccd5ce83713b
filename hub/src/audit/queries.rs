//! Every SQL statement on `audit`. The one write, [`append`], runs only inside the single
//! writer's transaction; nothing updates or deletes a row.

use serde_json::{Value, json};

use super::chain::{self, ChainRow, GENESIS};
use super::{Actor, AuditEntry};
use crate::alarms::rfc3339;
use crate::store::{Conn, Context, Pool, Sql, StoreError};

type Tuple = (
    i64,
    i64,
    String,
    String,
    Option<String>,
    String,
    String,
    String,
    String,
    String,
);

const COLUMNS: &str = "seq, at_ms, actor, role, source, action, target, detail, prev_hash, hash";

fn row(t: Tuple) -> ChainRow {
    let (seq, at_ms, actor, role, source, action, target, detail, prev_hash, hash) = t;
    ChainRow {
        seq,
        at_ms,
        actor,
        role,
        source,
        action,
        target,
        detail,
        prev_hash,
        hash,
    }
}

/// Appends one row after the newest (read in the same transaction, so the chain stays
/// linear with one writer); answers its `seq`.
pub async fn append(conn: &mut Conn, actor: &Actor, entry: &AuditEntry, at_ms: i64) -> Result<i64, StoreError> {
    let last: Option<(i64, String)> = sqlx::query_as("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
        .fetch_optional(&mut *conn)
        .await
        .context(|| "reading the audit log's head".into())?;
    let (prev_seq, prev_hash) = last.unwrap_or((0, GENESIS.to_owned()));
    let mut r = ChainRow {
        seq: prev_seq + 1,
        at_ms,
        actor: actor.user.clone(),
        role: actor.role.clone(),
        source: actor.source.map(|ip| ip.to_string()),
        action: entry.action.clone(),
        target: entry.target.clone(),
        detail: entry.detail.to_string(),
        prev_hash,
        hash: String::new(),
    };
    r.hash = chain::hash(&r);
    sqlx::query(
        "INSERT INTO audit (seq, at_ms, actor, role, source, action, target, detail, prev_hash, hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(r.seq)
    .bind(r.at_ms)
    .bind(&r.actor)
    .bind(&r.role)
    .bind(&r.source)
    .bind(&r.action)
    .bind(&r.target)
    .bind(&r.detail)
    .bind(&r.prev_hash)
    .bind(&r.hash)
    .execute(&mut *conn)
    .await
    .context(|| format!("writing audit row {} ({})", r.seq, r.action))?;
    Ok(r.seq)
}

/// `GET /audit`'s filter.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Rows after this `seq`.
    pub after: i64,
    pub limit: i64,
    pub actor: Option<String>,
    pub action: Option<String>,
}

/// Rows in `seq` order.
pub async fn list(pool: &Pool, f: &AuditFilter) -> Result<Vec<ChainRow>, StoreError> {
    let mut q = Sql::new(format!("SELECT {COLUMNS} FROM audit WHERE seq > "));
    q.push_bind(f.after);
    if let Some(a) = &f.actor {
        q.push(" AND actor = ").push_bind(a.clone());
    }
    if let Some(a) = &f.action {
        q.push(" AND action = ").push_bind(a.clone());
    }
    q.push(" ORDER BY seq LIMIT ").push_bind(f.limit);
    let rows: Vec<Tuple> = q
        .build_query_as()
        .fetch_all(pool)
        .await
        .context(|| "listing the audit log".into())?;
    Ok(rows.into_iter().map(row).collect())
}

/// Up to `limit` rows after `after`, in `seq` order (the verification walk reads the log
/// in pages, so a long log is never held whole in memory).
pub async fn page(pool: &Pool, after: i64, limit: i64) -> Result<Vec<ChainRow>, StoreError> {
    let rows: Vec<Tuple> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM audit WHERE seq > $1 ORDER BY seq LIMIT $2"
    )))
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await
    .context(|| "reading the audit log".into())?;
    Ok(rows.into_iter().map(row).collect())
}

/// The row carrying `hash`, if any (only when the walk found a bad row).
pub async fn find_by_hash(pool: &Pool, hash: &str) -> Result<Option<ChainRow>, StoreError> {
    let r: Option<Tuple> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM audit WHERE hash = $1 LIMIT 1"
    )))
    .bind(hash)
    .fetch_optional(pool)
    .await
    .context(|| "looking up an audit row by hash".into())?;
    Ok(r.map(row))
}

/// A row as `GET /audit` answers it.
pub fn to_json(r: &ChainRow) -> Value {
    json!({
        "seq": r.seq,
        "at": rfc3339(r.at_ms),
        "actor": r.actor,
        "role": r.role,
        "source": r.source,
        "action": r.action,
        "target": r.target,
        "detail": serde_json::from_str::<Value>(&r.detail).unwrap_or(Value::String(r.detail.clone())),
        "prev_hash": r.prev_hash,
        "hash": r.hash,
    })
}
