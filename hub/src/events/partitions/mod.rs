//! The event store's time partitions (by `ingested_at_ms`, the hub's clock): an append-only
//! log cut into spans of `retention.partition_hours`, each with its own small indexes, so an
//! insert's index pages stay in memory however long the history grows, and retention drops
//! whole partitions instead of deleting rows. [`Partitions`] is the writer's copy of the
//! catalogue (`event_partitions`) and the pure rule of which partitions to create and drop;
//! [`queries`] is the SQL (SQLite: a table per partition and the `events` view over them;
//! PostgreSQL: native range partitions of `events`).

pub mod queries;

use crate::store::{Conn, Pool, StoreError};

/// One partition: events ingested in `start_ms..end_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    pub name: String,
    pub start_ms: i64,
    pub end_ms: i64,
}

impl Partition {
    /// The partition of `start_ms..end_ms`, named `events_p<start_ms>` (`m` for a minus sign).
    pub fn new(start_ms: i64, end_ms: i64) -> Self {
        let name = if start_ms < 0 {
            format!("events_pm{}", start_ms.unsigned_abs())
        } else {
            format!("events_p{start_ms}")
        };
        Partition { name, start_ms, end_ms }
    }

    pub fn contains(&self, t: i64) -> bool {
        self.start_ms <= t && t < self.end_ms
    }
}

/// The writer's list of partitions (sorted by start) and the span of new ones.
#[derive(Debug, Clone)]
pub struct Partitions {
    list: Vec<Partition>,
    span_ms: i64,
}

impl Partitions {
    pub fn new(mut list: Vec<Partition>, span_ms: i64) -> Self {
        list.sort_by_key(|p| (p.start_ms, p.end_ms));
        Partitions {
            list,
            span_ms: span_ms.max(1),
        }
    }

    /// Reads the catalogue.
    pub async fn load(pool: &Pool, span_ms: i64) -> Result<Self, StoreError> {
        Ok(Self::new(queries::list(pool).await?, span_ms))
    }

    pub fn list(&self) -> &[Partition] {
        &self.list
    }

    /// The partition an event ingested at `t` goes to (the newest that covers it).
    pub fn covering(&self, t: i64) -> Option<&Partition> {
        self.list.iter().rev().find(|p| p.contains(t))
    }

    /// The partitions to create so that `now` and one span ahead are covered: aligned on
    /// the span (multiples of it since the epoch), starting no earlier than the end of an
    /// older partition and ending no later than the start of a newer one (a changed span, or
    /// the pre-partition table, never makes two overlap). Pure.
    pub fn missing(&self, now: i64) -> Vec<Partition> {
        let mut list = self.list.clone();
        let mut out = Vec::new();
        for t in [now, now.saturating_add(self.span_ms)] {
            if list.iter().any(|p| p.contains(t)) {
                continue;
            }
            let aligned = t.div_euclid(self.span_ms).saturating_mul(self.span_ms);
            let start = list
                .iter()
                .map(|p| p.end_ms)
                .filter(|&e| e <= t)
                .fold(aligned, i64::max);
            let end = list
                .iter()
                .map(|p| p.start_ms)
                .filter(|&s| s > t)
                .fold(aligned.saturating_add(self.span_ms), i64::min);
            let p = Partition::new(start, end);
            list.push(p.clone());
            out.push(p);
        }
        out
    }

    /// The partitions wholly before `cutoff_ms` (every event in them is past retention),
    /// oldest first. Pure.
    pub fn expired(&self, cutoff_ms: i64) -> Vec<Partition> {
        self.list.iter().filter(|p| p.end_ms <= cutoff_ms).cloned().collect()
    }

    /// Creates the partitions `missing(t)` names inside the writer's transaction, and keeps
    /// them in the list (the writer reloads the list if the transaction fails).
    pub async fn ensure(&mut self, conn: &mut Conn, t: i64) -> Result<usize, StoreError> {
        let missing = self.missing(t);
        if missing.is_empty() {
            return Ok(0);
        }
        for p in &missing {
            queries::create(conn, p).await?;
        }
        self.list.extend(missing.iter().cloned());
        self.list.sort_by_key(|p| (p.start_ms, p.end_ms));
        queries::rewrite_view(conn, &self.list).await?;
        Ok(missing.len())
    }

    /// The partition an event ingested at `t` goes to, created (with the next one ahead)
    /// if missing.
    pub async fn partition_for(&mut self, conn: &mut Conn, t: i64) -> Result<String, StoreError> {
        self.ensure(conn, t).await?;
        self.covering(t)
            .map(|p| p.name.clone())
            .ok_or_else(|| StoreError::Query {
                what: format!("finding the event partition of {t}"),
                source: sqlx::Error::Protocol("no partition covers it".into()),
            })
    }

    /// Drops the partitions wholly before `cutoff_ms`, at most `limit` of them; returns the
    /// events they held (None: nothing was due).
    pub async fn drop_expired(
        &mut self,
        conn: &mut Conn,
        cutoff_ms: i64,
        limit: usize,
    ) -> Result<Option<u64>, StoreError> {
        let expired: Vec<Partition> = self.expired(cutoff_ms).into_iter().take(limit).collect();
        if expired.is_empty() {
            return Ok(None);
        }
        self.list.retain(|p| !expired.contains(p));
        queries::rewrite_view(conn, &self.list).await?;
        let mut purged = 0;
        for p in &expired {
            purged += queries::drop_partition(conn, p).await?;
        }
        Ok(Some(purged))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    #[test]
    fn creates_the_current_and_next_span_aligned() {
        let p = Partitions::new(Vec::new(), 24 * H);
        let now = 100 * 24 * H + 5 * H;
        assert_eq!(
            p.missing(now),
            vec![
                Partition::new(100 * 24 * H, 101 * 24 * H),
                Partition::new(101 * 24 * H, 102 * 24 * H)
            ]
        );
        assert_eq!(p.missing(now)[0].name, format!("events_p{}", 100 * 24 * H));
    }

    #[test]
    fn at_a_boundary_the_next_one_is_ahead() {
        let p = Partitions::new(vec![Partition::new(0, 24 * H), Partition::new(24 * H, 48 * H)], 24 * H);
        assert!(p.missing(24 * H - 1).is_empty(), "now and a span ahead are covered");
        assert_eq!(p.missing(24 * H), vec![Partition::new(48 * H, 72 * H)]);
        assert_eq!(p.covering(24 * H).map(|p| p.start_ms), Some(24 * H));
        assert_eq!(p.covering(24 * H - 1).map(|p| p.start_ms), Some(0));
    }

    #[test]
    fn never_overlaps_an_older_or_newer_partition() {
        // The pre-partition table ends mid-span; a span changed from 24 h to 1 h.
        let p = Partitions::new(vec![Partition::new(0, 10 * H + 7)], H);
        assert_eq!(
            p.missing(10 * H + 30),
            vec![Partition::new(10 * H + 7, 11 * H), Partition::new(11 * H, 12 * H)]
        );
        let newer = Partitions::new(vec![Partition::new(24 * H + 5, 48 * H)], 24 * H);
        assert_eq!(newer.missing(H), vec![Partition::new(0, 24 * H)]);
    }

    #[test]
    fn only_wholly_expired_partitions_are_dropped() {
        let p = Partitions::new(
            vec![
                Partition::new(0, 24 * H),
                Partition::new(24 * H, 48 * H),
                Partition::new(48 * H, 72 * H),
            ],
            24 * H,
        );
        assert_eq!(p.expired(48 * H - 1).len(), 1);
        assert_eq!(p.expired(48 * H).len(), 2);
        assert!(p.expired(24 * H - 1).is_empty());
    }
}
