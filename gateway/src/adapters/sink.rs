//! [`EventSink`]: where every adapter puts the events it translated — the queue in front of
//! the outbox writer. Every event passes the intake's size bound here, whatever adapter it
//! comes from, and whoever acknowledges an event to a device waits for its commit here
//! ([`EventSink::commit`], or [`EventSink::enqueue`] then [`Commit::wait`]).

use std::sync::Arc;

use gatehouse_proto as pb;
use tokio::sync::{mpsc, oneshot};

use crate::{metrics::Metrics, outbox};

/// Where adapters put translated events: the queue in front of the outbox writer.
#[derive(Clone)]
pub struct EventSink {
    tx: SinkTx,
    size: Option<SizeLimit>,
}

/// The intake's size bound (`uplink.max_event_bytes`): an event larger than any batch the
/// hub can take must never reach the outbox, where it would wedge the uplink.
#[derive(Clone)]
struct SizeLimit {
    max_bytes: usize,
    metrics: Arc<Metrics>,
    last_log: Arc<std::sync::Mutex<Option<std::time::Instant>>>,
}

/// An event refused at intake for its size.
#[derive(Debug, thiserror::Error)]
#[error("event {event_id} from {device_id} is {bytes} bytes encoded; uplink.max_event_bytes is {limit}")]
pub struct Oversized {
    pub event_id: String,
    pub device_id: String,
    pub bytes: usize,
    pub limit: usize,
}

/// The size check every event passes before the outbox. Pure.
pub fn check_event_size(event: &pb::Event, limit: usize) -> Result<(), Oversized> {
    use prost::Message as _;
    let bytes = event.encoded_len();
    if bytes > limit {
        return Err(Oversized {
            event_id: event.event_id.clone(),
            device_id: event.device_id.clone(),
            bytes,
            limit,
        });
    }
    Ok(())
}

#[derive(Clone)]
enum SinkTx {
    /// The outbox writer: [`EventSink::commit`] waits for the transaction.
    Writer(mpsc::Sender<outbox::Append>),
    /// A bare queue (tests, tools): nothing commits, so `commit` returns once queued.
    Queue(mpsc::Sender<pb::Event>),
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("the outbox writer has stopped; event {event_id} from {device_id} was not stored")]
pub struct SinkClosed {
    pub event_id: String,
    pub device_id: String,
}

impl SinkClosed {
    fn of(event: &pb::Event) -> Self {
        Self {
            event_id: event.event_id.clone(),
            device_id: event.device_id.clone(),
        }
    }
}

impl EventSink {
    /// A sink that only queues (for tests and tools that read the events themselves).
    pub fn new(tx: mpsc::Sender<pb::Event>) -> Self {
        Self {
            tx: SinkTx::Queue(tx),
            size: None,
        }
    }

    /// The sink in front of [`outbox::run_writer`].
    pub fn to_writer(tx: mpsc::Sender<outbox::Append>) -> Self {
        Self {
            tx: SinkTx::Writer(tx),
            size: None,
        }
    }

    /// Refuses events larger than `max_bytes` (counted in `events_oversized`).
    pub fn with_max_event_bytes(mut self, max_bytes: usize, metrics: Arc<Metrics>) -> Self {
        self.size = Some(SizeLimit {
            max_bytes,
            metrics,
            last_log: Arc::default(),
        });
        self
    }

    /// Whether `event` may enter the outbox. An adapter that can answer its device (a
    /// refusal instead of an acknowledgement) checks here first; [`EventSink::emit`] checks
    /// again, so no path can store an event the uplink could not carry.
    pub fn admit(&self, event: &pb::Event) -> Result<(), Oversized> {
        let Some(limit) = &self.size else {
            return Ok(());
        };
        let checked = check_event_size(event, limit.max_bytes);
        if let Err(e) = &checked {
            limit
                .metrics
                .events_oversized
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut last = limit.last_log.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(60)) {
                *last = Some(std::time::Instant::now());
                tracing::error!(error = %e, "event refused at intake: too large for the uplink (counted in gatehouse_gateway_events_oversized_total; logged at most once a minute)");
            }
        }
        checked
    }

    /// Queues `event` for the outbox; waits while the queue is full (backpressure). An
    /// oversized event is refused by [`EventSink::admit`] (counted, logged) and not queued.
    pub async fn emit(&self, event: pb::Event) -> Result<(), SinkClosed> {
        if self.admit(&event).is_err() {
            return Ok(());
        }
        match &self.tx {
            SinkTx::Writer(tx) => tx.send(event.into()).await.map_err(|e| SinkClosed::of(&e.0.event)),
            SinkTx::Queue(tx) => tx.send(event).await.map_err(|e| SinkClosed::of(&e.0)),
        }
    }

    /// Hands `event` to the outbox and returns once the transaction holding it has
    /// committed: whoever acknowledges the event to a device (a PUBACK) does so after this.
    /// Waits while the queue is full, and for as long as the outbox cannot write.
    pub async fn commit(&self, event: pb::Event) -> Result<(), SinkClosed> {
        self.enqueue(event).await?.wait().await
    }

    /// The first half of [`commit`](Self::commit): queues `event` (waiting while the queue
    /// is full) and returns what to wait on for its commit. Events enqueued one after the
    /// other are committed in that order, whenever their waits are polled.
    /// An oversized event is refused by [`EventSink::admit`] (counted, logged) and its
    /// `Commit` is complete at once: MQTT 3.1.1 has no negative acknowledgement.
    pub async fn enqueue(&self, event: pb::Event) -> Result<Commit, SinkClosed> {
        let closed = SinkClosed::of(&event);
        if self.admit(&event).is_err() {
            return Ok(Commit {
                committed: None,
                closed,
            });
        }
        match &self.tx {
            SinkTx::Writer(tx) => {
                let (done, committed) = oneshot::channel();
                tx.send(outbox::Append {
                    event,
                    committed: Some(done),
                })
                .await
                .map_err(|_| closed.clone())?;
                Ok(Commit {
                    committed: Some(committed),
                    closed,
                })
            }
            SinkTx::Queue(tx) => {
                tx.send(event).await.map_err(|_| closed.clone())?;
                Ok(Commit {
                    committed: None,
                    closed,
                })
            }
        }
    }
}

/// An enqueued event's commit, to wait on.
pub struct Commit {
    committed: Option<oneshot::Receiver<()>>,
    closed: SinkClosed,
}

impl Commit {
    /// Returns once the event's transaction committed; an error when the writer stopped
    /// before it could.
    pub async fn wait(self) -> Result<(), SinkClosed> {
        match self.committed {
            Some(rx) => rx.await.map_err(|_| self.closed),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod size_tests {
    use super::*;

    fn fire_text(len: usize) -> pb::Event {
        pb::Event {
            event_id: "e-1".into(),
            device_id: "panel-1".into(),
            body: Some(pb::event::Body::Fire(pb::FireEvent {
                text: "x".repeat(len),
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn an_event_larger_than_max_event_bytes_is_refused_at_intake_counted_and_never_queued() {
        let (tx, mut rx) = mpsc::channel(4);
        let metrics = Arc::new(Metrics::default());
        let sink = EventSink::new(tx).with_max_event_bytes(4096, metrics.clone());
        let refused = sink.admit(&fire_text(5000)).expect_err("too large");
        assert_eq!((refused.limit, refused.device_id.as_str()), (4096, "panel-1"));
        sink.emit(fire_text(5000)).await.expect("the sink is open");
        sink.emit(fire_text(100)).await.expect("the sink is open");
        assert_eq!(metrics.events_oversized.load(std::sync::atomic::Ordering::Relaxed), 2);
        let queued = rx.recv().await.expect("the small one");
        assert!(matches!(queued.body, Some(pb::event::Body::Fire(f)) if f.text.len() == 100));
        assert!(rx.try_recv().is_err(), "the large one never reached the outbox queue");
    }
}
