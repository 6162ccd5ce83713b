//! The outbox's write transaction: `BEGIN IMMEDIATE` … `COMMIT`, and a connection whose
//! transaction did not commit never goes back to the pool.

use sqlx::SqlitePool;

use super::{OutboxError, db};

/// A write transaction whose failure cannot leave the file locked. After a failed COMMIT
/// (disk full) SQLite keeps the transaction open; sqlx would pool the connection with it
/// and its write lock, and every later write would fail with "database is locked" long
/// after space returned. So a transaction that does not commit closes its connection
/// (which rolls it back) instead of going back to the pool. `BEGIN IMMEDIATE` takes the
/// write lock up front, so no read transaction has to upgrade (and fail) half-way.
pub(super) struct WriteTx {
    conn: sqlx::pool::PoolConnection<sqlx::Sqlite>,
    committed: bool,
}

impl WriteTx {
    pub(super) async fn begin(pool: &SqlitePool, op: &'static str) -> Result<Self, OutboxError> {
        let mut conn = pool.acquire().await.map_err(db(op))?;
        if let Err(e) = sqlx::raw_sql("BEGIN IMMEDIATE").execute(&mut *conn).await {
            conn.close_on_drop();
            return Err(db(op)(e));
        }
        Ok(Self { conn, committed: false })
    }

    pub(super) async fn commit(mut self, op: &'static str) -> Result<(), OutboxError> {
        match sqlx::raw_sql("COMMIT").execute(&mut *self.conn).await {
            Ok(_) => {
                self.committed = true;
                Ok(())
            }
            Err(e) => {
                // Roll back here, so that the connection is clean when it goes back to the
                // pool; if even that fails, Drop closes it.
                if sqlx::raw_sql("ROLLBACK").execute(&mut *self.conn).await.is_ok() {
                    self.committed = true;
                }
                Err(db(op)(e))
            }
        }
    }
}

impl std::ops::Deref for WriteTx {
    type Target = sqlx::SqliteConnection;
    fn deref(&self) -> &Self::Target {
        &self.conn
    }
}

impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.conn
    }
}

impl Drop for WriteTx {
    fn drop(&mut self) {
        if !self.committed {
            self.conn.close_on_drop();
        }
    }
}
