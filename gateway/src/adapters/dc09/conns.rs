//! The DC-09 receiver's open TCP connections: at most `max_connections_per_source` from one
//! address, and at most `max_connections` in all, where a new connection takes the place of
//! the one that has gone longest without a frame instead of being refused.
//!
//! Why evict rather than refuse at the total cap: a DC-09 connection carries no state between
//! frames (a panel connects, sends, gets its answer, and closes or waits for its next
//! supervision frame), so closing an idle one costs its panel at most a reconnect, while
//! refusing the newcomer could turn away a fire alarm. A panel sending a frame is never the
//! one that has been idle longest for long: it is answered within milliseconds.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

/// What happened to a connection and the connection counters: metric labels and counters,
/// defined in the metrics leaf.
pub use crate::metrics::{Dc09Closed as Closed, Dc09Conns as ConnMetrics};

struct Entry {
    source: IpAddr,
    last_frame: Instant,
    close: CancellationToken,
}

/// The open connections.
pub struct Conns {
    max_total: usize,
    max_per_source: usize,
    table: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    next_id: u64,
    entries: HashMap<u64, Entry>,
}

/// An admitted connection: its id in the table and the token that closes it when evicted.
pub struct Admitted {
    pub id: u64,
    pub close: CancellationToken,
    /// The source of the connection closed to make room, if one was.
    pub evicted: Option<IpAddr>,
}

impl Conns {
    pub fn new(max_total: usize, max_per_source: usize) -> Conns {
        Conns {
            max_total: max_total.max(1),
            max_per_source: max_per_source.max(1),
            table: Mutex::new(Table::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        // Every update is an insert, a remove or a field store: the table stays whole.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A place for a connection from `source`, or `None` when that source is at its cap.
    pub fn admit(&self, source: IpAddr, now: Instant, metrics: &ConnMetrics) -> Option<Admitted> {
        let mut t = self.lock();
        if t.entries.values().filter(|e| e.source == source).count() >= self.max_per_source {
            metrics.count(Closed::PerSourceCap);
            return None;
        }
        let mut evicted = None;
        if t.entries.len() >= self.max_total {
            let oldest = t.entries.iter().min_by_key(|(_, e)| e.last_frame).map(|(id, _)| *id);
            if let Some(e) = oldest.and_then(|id| t.entries.remove(&id)) {
                e.close.cancel();
                metrics.count(Closed::Evicted);
                evicted = Some(e.source);
            }
        }
        let id = t.next_id;
        t.next_id += 1;
        let close = CancellationToken::new();
        t.entries.insert(
            id,
            Entry {
                source,
                last_frame: now,
                close: close.clone(),
            },
        );
        metrics.set_open(t.entries.len());
        Some(Admitted { id, close, evicted })
    }

    /// The connection delivered a complete frame.
    pub fn frame(&self, id: u64, now: Instant) {
        if let Some(e) = self.lock().entries.get_mut(&id) {
            e.last_frame = now;
        }
    }

    /// The connection ended (whatever the reason).
    pub fn remove(&self, id: u64, metrics: &ConnMetrics) {
        let mut t = self.lock();
        t.entries.remove(&id);
        metrics.set_open(t.entries.len());
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn one_source_is_capped_and_a_full_table_evicts_the_longest_idle() {
        let m = ConnMetrics::default();
        let conns = Conns::new(3, 2);
        let t0 = Instant::now();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let c: IpAddr = "10.0.0.3".parse().unwrap();
        let a1 = conns.admit(a, t0, &m).unwrap();
        let a2 = conns.admit(a, t0 + Duration::from_secs(1), &m).unwrap();
        assert!(conns.admit(a, t0, &m).is_none(), "a third from one source is refused");
        let b1 = conns.admit(b, t0 + Duration::from_secs(2), &m).unwrap();
        // a1 sends a frame: now a2 has been idle longest.
        conns.frame(a1.id, t0 + Duration::from_secs(3));
        let c1 = conns.admit(c, t0 + Duration::from_secs(4), &m).unwrap();
        assert_eq!(c1.evicted, Some(a));
        assert!(a2.close.is_cancelled());
        assert!(!a1.close.is_cancelled() && !b1.close.is_cancelled());
        assert_eq!(
            (m.open(), m.closed(Closed::Evicted), m.closed(Closed::PerSourceCap)),
            (3, 1, 1)
        );
        conns.remove(a2.id, &m);
        conns.remove(b1.id, &m);
        assert_eq!(m.open(), 2);
    }
}
