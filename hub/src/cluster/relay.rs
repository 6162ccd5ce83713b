//! The live stream on every hub: the active hub writes each commit's stream events to
//! `stream_outbox` in the same fenced transaction and notifies `gatehouse_stream`; every hub
//! runs this relay, which reads the rows past the last it saw and publishes on its own
//! [`Feed`] those written by another hub (its own commits it published directly). An operator
//! watching any hub (SSE, the board, gRPC watches) therefore sees every change, whichever hub
//! it was made through.
//!
//! The notification only says "look now"; the rows are the truth. A relay that misses one (its
//! listening connection dropped and came back) finds the rows at its next look, at most
//! [`POLL`] later, in commit order: one writer at a time, each commit before the next begins.
//!
//! Each hub numbers its own stream (`<boot>-<seq>`), so a client that moves to another hub
//! resumes with a reset and re-reads its lists, as after a restart.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::Value;
use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::queries::{self, STREAM_CHANNEL};
use crate::store::Pool;
use crate::stream::{Feed, StreamEvent};

/// The longest a relay waits between looks when no notification comes.
const POLL: Duration = Duration::from_secs(1);
/// Rows read per look.
const BATCH: i64 = 500;
/// A relay that has not looked for this long is behind: the hub is not ready.
pub const STALE: Duration = Duration::from_secs(5);

/// How the relay is doing, for `/readyz` and `/metrics`.
#[derive(Debug)]
pub struct RelayHealth {
    started: Instant,
    /// ms after `started` of the last look that succeeded (-1: none yet).
    last_ok_ms: AtomicI64,
    relayed: AtomicU64,
}

impl Default for RelayHealth {
    fn default() -> Self {
        RelayHealth {
            started: Instant::now(),
            last_ok_ms: AtomicI64::new(-1),
            relayed: AtomicU64::new(0),
        }
    }
}

impl RelayHealth {
    fn looked(&self) {
        let ms = i64::try_from(self.started.elapsed().as_millis()).unwrap_or(i64::MAX);
        self.last_ok_ms.store(ms, Relaxed);
    }

    /// How long since the relay last read the outbox (None: it never has).
    pub fn since_last_look(&self) -> Option<Duration> {
        let ms = self.last_ok_ms.load(Relaxed);
        (ms >= 0).then(|| {
            self.started
                .elapsed()
                .saturating_sub(Duration::from_millis(ms.unsigned_abs()))
        })
    }

    /// `gatehouse_hub_stream_relayed_total`.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write as _;
        let _ = writeln!(
            out,
            "# HELP gatehouse_hub_stream_relayed_total Live-stream events this hub published from another hub's commits.\n\
             # TYPE gatehouse_hub_stream_relayed_total counter\ngatehouse_hub_stream_relayed_total {}",
            self.relayed.load(Relaxed)
        );
    }
}

/// A stream event as the outbox holds it (`StreamEvent`'s JSON).
#[derive(Deserialize)]
struct Stored {
    #[serde(rename = "type")]
    kind: String,
    id: i64,
    change: String,
    data: Value,
}

/// The events of one outbox row; an unknown kind is skipped (a newer hub's), never guessed.
pub fn decode(events: &str) -> Result<Vec<StreamEvent>, serde_json::Error> {
    let stored: Vec<Stored> = serde_json::from_str(events)?;
    Ok(stored
        .into_iter()
        .filter_map(|s| {
            let kind = StreamEvent::kind_named(&s.kind);
            if kind.is_none() {
                warn!(kind = %s.kind, "relay: a stream event of an unknown kind was skipped");
            }
            Some(StreamEvent {
                kind: kind?,
                id: s.id,
                change: s.change,
                data: s.data,
            })
        })
        .collect())
}

/// What a relay needs.
pub struct Relay {
    /// The PostgreSQL URL, for the listening connection (outside the pool: it stays open).
    pub url: String,
    pub pool: Pool,
    /// This hub's lease holder name: rows it wrote itself were published directly.
    pub holder: String,
    pub feed: Arc<Feed>,
    pub health: Arc<RelayHealth>,
}

impl Relay {
    /// Runs until `stop`.
    pub async fn run(self, stop: CancellationToken) {
        let mut last = loop {
            match queries::outbox_last(&self.pool).await {
                Ok(id) => break id,
                Err(e) => {
                    warn!(error = %e, "relay: cannot read where the stream outbox ends");
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(POLL) => {}
                    }
                }
            }
        };
        let mut listener = self.listen().await;
        info!(
            from = last,
            listening = listener.is_some(),
            "relaying the live stream of the other hubs"
        );
        loop {
            match self.look(last).await {
                Ok(id) => {
                    last = id;
                    self.health.looked();
                }
                Err(e) => warn!(error = %e, "relay: cannot read the stream outbox"),
            }
            // Until another hub's commit is announced, or the next look is due.
            let due = tokio::time::sleep(POLL);
            tokio::pin!(due);
            loop {
                let announced = async {
                    match listener.as_mut() {
                        Some(l) => l.recv().await.map(|n| n.payload() != self.holder),
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = &mut due => break,
                    r = announced => match r {
                        Ok(true) => break,
                        // This hub's own commit: it published it already.
                        Ok(false) => {}
                        Err(e) => {
                            // sqlx reconnects at the next recv; the look covers the gap.
                            warn!(error = %e, "relay: the listening connection failed");
                            tokio::time::sleep(POLL).await;
                            break;
                        }
                    },
                }
            }
            if listener.is_none() {
                listener = self.listen().await;
            }
        }
    }

    async fn listen(&self) -> Option<PgListener> {
        let attempt = async {
            let mut l = PgListener::connect(&self.url).await?;
            l.listen(STREAM_CHANNEL).await?;
            Ok::<_, sqlx::Error>(l)
        };
        match attempt.await {
            Ok(l) => Some(l),
            Err(e) => {
                warn!(error = %e, "relay: cannot LISTEN; polling the stream outbox every second instead");
                None
            }
        }
    }

    /// Publishes the rows after `last` written by other hubs; the new last id.
    async fn look(&self, mut last: i64) -> Result<i64, crate::store::StoreError> {
        loop {
            let rows = queries::outbox_after(&self.pool, last, BATCH).await?;
            let full = rows.len() as i64 == BATCH;
            for row in rows {
                last = row.id;
                if row.holder == self.holder {
                    continue;
                }
                match decode(&row.events) {
                    Ok(events) => {
                        self.health.relayed.fetch_add(events.len() as u64, Relaxed);
                        self.feed.publish(events);
                    }
                    Err(e) => {
                        warn!(id = row.id, error = %e, "relay: an outbox row that is not stream events was skipped")
                    }
                }
            }
            if !full {
                return Ok(last);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbox_rows_decode_to_the_events_written() {
        let written = vec![
            StreamEvent {
                kind: "alarm",
                id: 7,
                change: "raised".into(),
                data: serde_json::json!({"estate": "e1"}),
            },
            StreamEvent {
                kind: "coverage",
                id: 0,
                change: "gap_opened".into(),
                data: Value::Null,
            },
        ];
        let text = serde_json::to_string(&written).expect("json");
        let read = decode(&text).expect("decodes");
        assert_eq!(read.len(), 2);
        assert_eq!(
            (read[0].kind, read[0].id, read[0].change.as_str()),
            ("alarm", 7, "raised")
        );
        assert_eq!(read[0].data, written[0].data);
        assert_eq!(read[1].kind, "coverage");
    }

    #[test]
    fn unknown_kinds_are_skipped_and_garbage_refused() {
        let read = decode(r#"[{"type":"hologram","id":1,"change":"x","data":null},{"type":"incident","id":2,"change":"opened","data":{}}]"#)
            .expect("decodes");
        assert_eq!(read.len(), 1);
        assert_eq!(read[0].kind, "incident");
        assert!(decode("not json").is_err());
        assert!(decode(r#"{"type":"alarm"}"#).is_err());
    }
}
