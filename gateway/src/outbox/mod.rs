//! The store-and-forward outbox: a SQLite file of its own. An event gets its sequence
//! number when it is committed here, and leaves only when the hub has acknowledged it.
//!
//! Bounded by `max_events`: when full it sheds point readings first, then ordinary
//! information, oldest first; fire and security events are never shed ([`shed`]).
//!
//! - `queries.rs`: every SQL statement, the only place that writes the outbox's tables.
//! - `tx.rs`: the write transaction; `writer.rs`: the group-commit writer task.
//! - this file: [`Outbox`], which holds the write lock around every write and keeps the
//!   depth gauge exact under it.

mod queries;
pub mod shed;
mod tx;
mod writer;

use std::{
    path::Path,
    str::FromStr,
    sync::{Arc, atomic::Ordering::Relaxed},
    time::Duration,
};

use gatehouse_proto as pb;
use prost::Message;
use sqlx::{
    SqlitePool,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};
use tokio::sync::watch;

use self::tx::WriteTx;
pub use self::{
    shed::{ShedClass, shed_class},
    writer::{Append, run_writer},
};
use crate::metrics::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("opening outbox {path}: {source}")]
    Open { path: String, source: sqlx::Error },
    #[error("migrating outbox {path}: {source}")]
    Migrate {
        path: String,
        source: sqlx::migrate::MigrateError,
    },
    #[error("outbox {op}: {source}")]
    Db { op: &'static str, source: sqlx::Error },
    #[error("outbox row {seq} does not decode as an Event: {source}")]
    Decode { seq: i64, source: prost::DecodeError },
    #[error(
        "the hub's last sequence number {hub_last_seq} cannot be honoured: renumbering this outbox's events (up to {ours}) past it would pass the ceiling {MAX_SEQ}; refusing rather than wrapping"
    )]
    SeqOutOfRange { hub_last_seq: u64, ours: u64 },
}

fn db(op: &'static str) -> impl FnOnce(sqlx::Error) -> OutboxError {
    move |source| OutboxError::Db { op, source }
}

/// What only the holder of the write lock may change.
#[derive(Default)]
struct WriteState {
    last_shed_warning: Option<std::time::Instant>,
    shed_since_warning: u64,
}

#[derive(Clone)]
pub struct Outbox {
    pool: SqlitePool,
    /// Serialises every write (append, ack, renumber) in this process: SQLite allows one
    /// writer, and writers queueing here cost nothing, while writers contending for the file
    /// lock sleep and retry (under load an ack delete starved behind appends for seconds).
    /// Holding it also makes the depth gauge exact: it changes only under this lock.
    write: Arc<tokio::sync::Mutex<WriteState>>,
    max_events: u64,
    metrics: Arc<Metrics>,
    /// The highest sequence number committed; the uplink watches it.
    committed: watch::Sender<u64>,
}

impl Outbox {
    pub async fn open(path: &Path, max_events: u64, metrics: Arc<Metrics>) -> Result<Self, OutboxError> {
        let shown = path.display().to_string();
        let options = SqliteConnectOptions::from_str("sqlite://")
            .map_err(|source| OutboxError::Open {
                path: shown.clone(),
                source,
            })?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a commit is on disk before anyone is told the event was taken.
            .synchronous(SqliteSynchronous::Full)
            // The outbox is a queue: appends at the tail, reads and deletes near the head,
            // so its working set is a few pages at each end. 512 KiB of page cache per
            // connection instead of SQLite's 2 MiB default (resident memory: docs/PERFORMANCE.md).
            .pragma("cache_size", "-512")
            .busy_timeout(Duration::from_secs(5));
        // Writes are serialised by `write` below, so one connection writes at a time; a
        // second lets the uplink read a batch meanwhile. Every connection is a thread of
        // its own (sqlx) with its page cache and malloc arena: more buy nothing here.
        let pool = SqlitePoolOptions::new()
            .max_connections(2)
            .connect_with(options)
            .await
            .map_err(|source| OutboxError::Open {
                path: shown.clone(),
                source,
            })?;
        sqlx::migrate!("./migrations")
            .run(&pool)
            .await
            .map_err(|source| OutboxError::Migrate { path: shown, source })?;
        let outbox = Self {
            pool,
            write: Arc::default(),
            max_events: max_events.max(1),
            metrics,
            committed: watch::channel(0).0,
        };
        let last = outbox.last_seq().await?;
        outbox.committed.send_replace(last);
        let depth = outbox.count().await?;
        outbox.metrics.outbox_depth.store(depth, Relaxed);
        Ok(outbox)
    }

    /// Wakes whenever a commit raises the highest sequence number.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.committed.subscribe()
    }

    async fn count(&self) -> Result<u64, OutboxError> {
        let n = queries::count(&self.pool).await?;
        Ok(n as u64)
    }

    /// The highest sequence number ever given (0 before the first event).
    pub async fn last_seq(&self) -> Result<u64, OutboxError> {
        let n = queries::last_seq(&self.pool).await?;
        Ok(n.and_then(|n| u64::try_from(n).ok()).unwrap_or(0))
    }

    /// The highest sequence number the hub has acknowledged.
    pub async fn acked(&self) -> Result<u64, OutboxError> {
        let n = queries::acked(&self.pool).await?;
        Ok(n.unwrap_or(0) as u64)
    }

    /// Commits `events` in one transaction, giving each its sequence number; returns how
    /// many were stored (the rest were shed).
    pub async fn append(&self, events: &[pb::Event]) -> Result<usize, OutboxError> {
        let mut write = self.write.lock().await;
        let depth = self.metrics.outbox_depth.load(Relaxed);
        let mut over = (depth + events.len() as u64).saturating_sub(self.max_events);
        let mut tx = WriteTx::begin(&self.pool, "begin append").await?;
        let mut shed_old = 0u64;
        // Make room by dropping the oldest sheddable rows, readings first.
        for class in [ShedClass::Reading, ShedClass::Information] {
            if over == 0 {
                break;
            }
            let gone = queries::shed_oldest(&mut tx, class as i64, over).await?;
            over -= gone;
            shed_old += gone;
        }
        // Still full of events that are never shed: drop the incoming sheddable ones.
        let mut shed_new = 0u64;
        let mut stored = 0usize;
        let mut last = 0u64;
        for event in events {
            let class = shed_class(event);
            if over > 0 && class != ShedClass::Never {
                over -= 1;
                shed_new += 1;
                continue;
            }
            let seq = queries::insert(&mut tx, class as i64, event.encode_to_vec()).await?;
            last = seq as u64;
            stored += 1;
        }
        tx.commit("commit append").await?;
        let m = &self.metrics;
        m.outbox_appended.fetch_add(stored as u64, Relaxed);
        let shed = shed_old + shed_new;
        m.outbox_shed.fetch_add(shed, Relaxed);
        m.outbox_depth
            .store((depth + stored as u64).saturating_sub(shed_old), Relaxed);
        write.shed_since_warning += shed;
        let quiet = write
            .last_shed_warning
            .is_some_and(|t| t.elapsed() < Duration::from_secs(60));
        if write.shed_since_warning > 0 && !quiet {
            tracing::warn!(
                shed = write.shed_since_warning,
                max_events = self.max_events,
                "outbox full: shed point readings / information (logged at most once a minute)"
            );
            write.shed_since_warning = 0;
            write.last_shed_warning = Some(std::time::Instant::now());
        }
        if stored > 0 {
            self.committed.send_replace(last);
        }
        Ok(stored)
    }

    /// Events after `after`, in sequence order, with their sequence numbers: at most
    /// `limit` of them and, past the first, at most `max_bytes` on the wire
    /// ([`batch_bytes`]). The first is always returned, even alone over the bound: the
    /// caller decides what to do with an event no batch can carry.
    pub async fn read_batch(&self, after: u64, limit: usize, max_bytes: usize) -> Result<Vec<pb::Event>, OutboxError> {
        let mut events = self.read_after(after, limit).await?;
        let mut total = 0usize;
        let keep = events
            .iter()
            .position(|e| {
                total = total.saturating_add(batch_bytes(e));
                total > max_bytes
            })
            .unwrap_or(events.len())
            .max(1);
        events.truncate(keep);
        Ok(events)
    }

    /// Up to `limit` events after `after`, in sequence order, with their sequence numbers.
    pub async fn read_after(&self, after: u64, limit: usize) -> Result<Vec<pb::Event>, OutboxError> {
        let rows = queries::read_after(&self.pool, i64::try_from(after).unwrap_or(i64::MAX), limit as i64).await?;
        rows.into_iter()
            .map(|(seq, bytes)| {
                let mut event =
                    pb::Event::decode(bytes.as_slice()).map_err(|source| OutboxError::Decode { seq, source })?;
                event.seq = seq as u64;
                Ok(event)
            })
            .collect()
    }

    /// The hub has durably stored everything through `seq`: forget it.
    pub async fn ack_through(&self, seq: u64) -> Result<(), OutboxError> {
        let _write = self.write.lock().await;
        self.ack_through_locked(seq).await
    }

    async fn ack_through_locked(&self, seq: u64) -> Result<(), OutboxError> {
        let mut tx = WriteTx::begin(&self.pool, "begin ack").await?;
        let gone = queries::ack_through(&mut tx, seq as i64).await?;
        tx.commit("commit ack").await?;
        self.metrics.uplink_acked.fetch_add(gone, Relaxed);
        let _ = self
            .metrics
            .outbox_depth
            .fetch_update(Relaxed, Relaxed, |d| Some(d.saturating_sub(gone)));
        Ok(())
    }

    /// Reconciles with the hub's `Welcome`. Normally the hub's last sequence number is at or
    /// below ours. If it is above (this outbox file was lost or replaced), the pending rows
    /// are renumbered past it and the sequence moved on, so no new event is mistaken for a
    /// duplicate. A hub number that would carry the sequence past [`MAX_SEQ`] is refused
    /// (nothing changes): the arithmetic is checked, never wrapped.
    pub async fn reconcile(&self, hub_last_seq: u64) -> Result<(), OutboxError> {
        let _write = self.write.lock().await;
        let ours = self.last_seq().await?;
        if hub_last_seq <= ours {
            return self.ack_through_locked(hub_last_seq).await;
        }
        let first = queries::first_pending(&self.pool).await?;
        // Pending rows keep their order and spacing, starting right after the hub's number.
        let first = first.and_then(|f| u64::try_from(f).ok()).unwrap_or(ours + 1).max(1);
        let refuse = || OutboxError::SeqOutOfRange { hub_last_seq, ours };
        let offset = hub_last_seq
            .checked_add(1)
            .and_then(|n| n.checked_sub(first))
            .ok_or_else(refuse)?;
        let moved_to = ours.checked_add(offset).filter(|n| *n <= MAX_SEQ).ok_or_else(refuse)?;
        let (offset, moved_to) = (to_i64(offset)?, to_i64(moved_to)?);
        tracing::warn!(
            hub_last_seq,
            ours,
            "the hub has seen sequence numbers this outbox never gave: renumbering pending events past them"
        );
        let mut tx = WriteTx::begin(&self.pool, "begin renumber").await?;
        queries::renumber(&mut tx, offset, moved_to, to_i64(hub_last_seq)?).await?;
        tx.commit("commit renumber").await?;
        self.committed.send_replace(moved_to as u64);
        Ok(())
    }

    /// Sets an event aside in `dead_letter` (kept for an operator) and out of the queue:
    /// it cannot be delivered in any batch the hub accepts. Its number becomes a gap, which
    /// the hub allows.
    pub async fn dead_letter(&self, seq: u64, reason: &str) -> Result<bool, OutboxError> {
        let _write = self.write.lock().await;
        let seq = to_i64(seq)?;
        let mut tx = WriteTx::begin(&self.pool, "begin dead letter").await?;
        let moved = queries::dead_letter(&mut tx, seq, reason, gatehouse_proto::now_ms()).await?;
        tx.commit("commit dead letter").await?;
        let gone = u64::from(moved);
        let _ = self
            .metrics
            .outbox_depth
            .fetch_update(Relaxed, Relaxed, |d| Some(d.saturating_sub(gone)));
        Ok(moved)
    }

    /// Events set aside in `dead_letter`: (seq, reason).
    pub async fn dead_letters(&self) -> Result<Vec<(u64, String)>, OutboxError> {
        let rows = queries::dead_letters(&self.pool).await?;
        Ok(rows.into_iter().map(|(s, r)| (s.max(0) as u64, r)).collect())
    }
}

/// The highest sequence number the outbox gives (2^53, as the hub's default ceiling): far
/// from i64 overflow, so renumbering can never wrap.
pub const MAX_SEQ: u64 = 1 << 53;

fn to_i64(n: u64) -> Result<i64, OutboxError> {
    i64::try_from(n).map_err(|_| OutboxError::SeqOutOfRange {
        hub_last_seq: n,
        ours: 0,
    })
}

/// Bytes an event adds to an `EventBatch` on the wire: its field tag, its length, itself.
pub fn batch_bytes(event: &pb::Event) -> usize {
    let len = event.encoded_len();
    1 + prost::length_delimiter_len(len) + len
}

#[cfg(test)]
mod tests {
    use super::*;
    use pb::event::Body;

    fn event(body: Body) -> pb::Event {
        pb::Event {
            event_id: uuid::Uuid::now_v7().to_string(),
            body: Some(body),
            ..Default::default()
        }
    }

    fn reading(v: f64) -> pb::Event {
        event(Body::Point(pb::PointReading {
            point: "outlet_pressure".into(),
            value: v,
            ..Default::default()
        }))
    }

    fn fire(zone: &str) -> pb::Event {
        event(Body::Fire(pb::FireEvent {
            r#type: pb::FireEventType::FireAlarm as i32,
            zone: zone.into(),
            ..Default::default()
        }))
    }

    fn status() -> pb::Event {
        event(Body::Status(pb::DeviceStatus {
            online: true,
            reason: String::new(),
        }))
    }

    async fn open(dir: &Path, max: u64) -> Outbox {
        Outbox::open(&dir.join("outbox.db"), max, Arc::new(Metrics::default()))
            .await
            .expect("open outbox")
    }

    fn kinds(events: &[pb::Event]) -> Vec<&'static str> {
        events
            .iter()
            .map(|e| match &e.body {
                Some(Body::Point(_)) => "reading",
                Some(Body::Fire(_)) => "fire",
                Some(Body::Status(_)) => "status",
                _ => "other",
            })
            .collect()
    }

    #[tokio::test]
    async fn a_full_outbox_sheds_readings_first_then_information_and_never_fire_events() {
        let dir = tempfile::tempdir().expect("tempdir");
        let outbox = open(dir.path(), 4).await;
        outbox
            .append(&[reading(1.0), status(), reading(2.0), fire("1")])
            .await
            .expect("append");
        // Two more fire alarms: the two readings make room.
        outbox.append(&[fire("2"), fire("3")]).await.expect("append");
        let held = outbox.read_after(0, 100).await.expect("read");
        assert_eq!(kinds(&held), ["status", "fire", "fire", "fire"]);
        // Another: the status goes.
        outbox.append(&[fire("4")]).await.expect("append");
        // Full of fire events: a new one is still taken, a new reading is not.
        assert_eq!(outbox.append(&[reading(3.0), fire("5")]).await.expect("append"), 1);
        let held = outbox.read_after(0, 100).await.expect("read");
        assert_eq!(kinds(&held), ["fire"; 5]);
        assert_eq!(outbox.metrics.outbox_shed.load(Relaxed), 4);
        assert_eq!(outbox.metrics.outbox_depth.load(Relaxed), 5);
    }

    #[tokio::test]
    async fn sequence_numbers_survive_a_reopen_and_acknowledged_events_leave() {
        let dir = tempfile::tempdir().expect("tempdir");
        let outbox = open(dir.path(), 100).await;
        outbox.append(&[fire("1"), fire("2"), fire("3")]).await.expect("append");
        outbox.ack_through(3).await.expect("ack");
        drop(outbox);
        let outbox = open(dir.path(), 100).await;
        assert_eq!(outbox.acked().await.expect("acked"), 3);
        outbox.append(&[fire("4")]).await.expect("append");
        let held = outbox.read_after(0, 10).await.expect("read");
        assert_eq!(
            held.iter().map(|e| e.seq).collect::<Vec<_>>(),
            [4],
            "numbers are never reused"
        );
        assert_eq!(outbox.metrics.outbox_depth.load(Relaxed), 1);
    }

    #[tokio::test]
    async fn a_hub_that_has_seen_higher_numbers_gets_the_pending_events_renumbered_past_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A fresh outbox (the old file was lost) holding two events numbered 1 and 2 …
        let outbox = open(dir.path(), 100).await;
        outbox.append(&[fire("1"), fire("2")]).await.expect("append");
        // … meets a hub that already stored up to 10 from this gateway.
        outbox.reconcile(10).await.expect("reconcile");
        let held = outbox.read_after(10, 10).await.expect("read");
        assert_eq!(held.iter().map(|e| e.seq).collect::<Vec<_>>(), [11, 12]);
        outbox.append(&[fire("3")]).await.expect("append");
        assert_eq!(
            outbox.last_seq().await.expect("seq"),
            13,
            "new numbers continue past the hub's"
        );
        assert_eq!(*outbox.subscribe().borrow(), 13);
    }

    #[tokio::test]
    async fn a_hub_last_seq_at_the_top_of_the_range_is_refused_without_wrapping_and_a_reopen_does_not_loop() {
        let dir = tempfile::tempdir().expect("tempdir");
        let outbox = open(dir.path(), 100).await;
        outbox.append(&[fire("1"), fire("2")]).await.expect("append");
        for absurd in [i64::MAX as u64, u64::MAX, MAX_SEQ] {
            match outbox.reconcile(absurd).await {
                Err(OutboxError::SeqOutOfRange { hub_last_seq, ours }) => {
                    assert_eq!((hub_last_seq, ours), (absurd, 2));
                }
                other => panic!("hub last seq {absurd}: expected a refusal, got {other:?}"),
            }
            // Nothing moved: the pending events keep their numbers, the sequence its place.
            let held = outbox.read_after(0, 10).await.expect("read");
            assert_eq!(held.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2]);
            assert_eq!(outbox.last_seq().await.expect("seq"), 2);
        }
        drop(outbox);
        // Reopened (the gateway restarted), it takes new events and meets a sane hub.
        let outbox = open(dir.path(), 100).await;
        outbox.append(&[fire("3")]).await.expect("append after reopen");
        outbox.reconcile(10).await.expect("a plausible hub number is honoured");
        let held = outbox.read_after(10, 10).await.expect("read");
        assert_eq!(held.iter().map(|e| e.seq).collect::<Vec<_>>(), [11, 12, 13]);
        // The highest number a hub may hold and still be honoured: the top of the range.
        let dir = tempfile::tempdir().expect("tempdir");
        let outbox = open(dir.path(), 100).await;
        outbox.append(&[fire("1")]).await.expect("append");
        outbox
            .reconcile(MAX_SEQ - 1)
            .await
            .expect("renumbered up to the ceiling");
        assert_eq!(outbox.last_seq().await.expect("seq"), MAX_SEQ);
    }

    #[tokio::test]
    async fn batches_are_bounded_in_bytes_and_a_lone_oversized_event_can_be_set_aside() {
        let dir = tempfile::tempdir().expect("tempdir");
        let outbox = open(dir.path(), 100).await;
        let big = |zone: &str| {
            let mut e = fire(zone);
            if let Some(Body::Fire(f)) = &mut e.body {
                f.text = "x".repeat(15_000);
            }
            e
        };
        outbox
            .append(&[big("1"), big("2"), big("3"), fire("4")])
            .await
            .expect("append");
        let one = batch_bytes(&outbox.read_after(0, 1).await.expect("read")[0]);
        let batch = outbox.read_batch(0, 500, 2 * one + 10).await.expect("read");
        assert_eq!(batch.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2]);
        let total: usize = batch.iter().map(batch_bytes).sum();
        assert!(total <= 2 * one + 10);
        // A bound smaller than one event still yields that event, for the caller to judge.
        let lone = outbox.read_batch(0, 500, 100).await.expect("read");
        assert_eq!(lone.len(), 1);
        assert!(outbox.dead_letter(1, "too large").await.expect("set aside"));
        assert_eq!(
            outbox.dead_letters().await.expect("read"),
            [(1, "too large".to_owned())]
        );
        let next = outbox.read_batch(0, 500, 100).await.expect("read");
        assert_eq!(next[0].seq, 2);
        assert_eq!(outbox.metrics.outbox_depth.load(Relaxed), 3);
    }

    #[tokio::test]
    async fn the_depth_gauge_stays_exact_while_acks_interleave_with_appends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let outbox = open(dir.path(), 1_000).await;
        let writer = {
            let outbox = outbox.clone();
            tokio::spawn(async move {
                for _ in 0..200 {
                    outbox.append(&[status(), status()]).await.expect("append");
                }
            })
        };
        let mut acked = 0;
        while !writer.is_finished() || acked < 400 {
            let last = *outbox.subscribe().borrow();
            if last > acked {
                outbox.ack_through(last).await.expect("ack");
                acked = last;
            }
            tokio::task::yield_now().await;
        }
        writer.await.expect("writer");
        assert_eq!(outbox.read_after(0, 10).await.expect("read").len(), 0);
        assert_eq!(
            outbox.metrics.outbox_depth.load(Relaxed),
            0,
            "the gauge drifted: the outbox would shed events it still had room for"
        );
        assert_eq!(outbox.metrics.outbox_shed.load(Relaxed), 0);
    }
}
