//! The gateway's link to the hub (DESIGN §4.4): one gRPC bidirectional stream at a time,
//! to the first configured hub that answers. Sends the outbox in batches from the hub's
//! last acknowledged sequence number, deletes what the hub acknowledges, runs commands.
//!
//! Delivery is at-least-once on the wire (a reconnect resends everything not yet acked);
//! the hub drops duplicates by (gateway, seq), so the effect is exactly once.

use std::{
    collections::VecDeque,
    sync::{Arc, atomic::Ordering::Relaxed},
    time::{Duration, Instant},
};

use gatehouse_proto::{self as pb, downlink, gateway_link_client::GatewayLinkClient, uplink};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Endpoint;

use crate::{
    adapters::CommandRouter,
    config::UplinkSection,
    metrics::Metrics,
    outbox::{Outbox, OutboxError},
    registry::Registry,
    telemetry,
};

/// Most events sent but not yet acknowledged; the hub's acks pace the sender beyond this.
const MAX_IN_FLIGHT_BATCHES: u64 = 8;

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("invalid hub endpoint {endpoint:?}: {detail}")]
    Endpoint { endpoint: String, detail: String },
    #[error("connecting to {endpoint}: {source}")]
    Connect {
        endpoint: String,
        source: tonic::transport::Error,
    },
    #[error("hub {endpoint} refused the stream: {status}")]
    Refused { endpoint: String, status: tonic::Status },
    #[error("hub {endpoint} did not answer Hello with Welcome: {detail}")]
    NoWelcome { endpoint: String, detail: String },
    #[error("stream to {endpoint} ended: {detail}")]
    Ended { endpoint: String, detail: String },
    #[error(transparent)]
    Outbox(#[from] OutboxError),
}

pub struct Uplink {
    pub registry: Registry,
    pub hubs: Vec<String>,
    pub settings: UplinkSection,
    pub outbox: Outbox,
    pub commands: CommandRouter,
    pub metrics: Arc<Metrics>,
}

impl Uplink {
    /// Runs until `shutdown`: connects, streams, and on any failure moves to the next hub
    /// endpoint, backing off with full jitter once every endpoint has failed in a row.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut backoff = Duration::from_millis(self.settings.backoff_min_ms);
        let max = Duration::from_millis(self.settings.backoff_max_ms);
        loop {
            for endpoint in &self.hubs {
                let outcome = tokio::select! {
                    r = self.session(endpoint, &shutdown) => r,
                    _ = shutdown.cancelled() => return,
                };
                self.metrics.uplink_connected.store(0, Relaxed);
                match outcome {
                    Ok(()) => return,
                    Err(SessionOutcome { error, progressed }) => {
                        if progressed {
                            backoff = Duration::from_millis(self.settings.backoff_min_ms);
                        }
                        tracing::warn!(hub = %endpoint, error = %error, "hub link down");
                    }
                }
            }
            let wait = backoff.mul_f64(fastrand::f64());
            tracing::info!(
                wait_ms = wait.as_millis() as u64,
                "every hub endpoint failed; backing off"
            );
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.cancelled() => return,
            }
            backoff = (backoff * 2).min(max);
        }
    }

    async fn session(&self, endpoint: &str, shutdown: &CancellationToken) -> Result<(), SessionOutcome> {
        let mut progressed = false;
        let r = self.stream(endpoint, shutdown, &mut progressed).await;
        r.map_err(|error| SessionOutcome { error, progressed })
    }

    async fn stream(
        &self,
        endpoint: &str,
        shutdown: &CancellationToken,
        progressed: &mut bool,
    ) -> Result<(), SessionError> {
        let channel = Endpoint::from_shared(endpoint.to_string())
            .map_err(|e| SessionError::Endpoint {
                endpoint: endpoint.into(),
                detail: e.to_string(),
            })?
            .connect_timeout(Duration::from_secs(3))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(10))
            // Seam for TLS: `.tls_config(...)` goes here when an `https://` hub is configured.
            .connect()
            .await
            .map_err(|source| SessionError::Connect {
                endpoint: endpoint.into(),
                source,
            })?;
        let mut client = GatewayLinkClient::new(channel);
        let (tx, rx) = mpsc::channel::<pb::Uplink>(MAX_IN_FLIGHT_BATCHES as usize * 2);
        let hello = pb::Hello {
            gateway_id: self.registry.gateway_id.to_string(),
            estate_id: self.registry.estate_id.to_string(),
            software_version: env!("CARGO_PKG_VERSION").into(),
            devices: self.registry.hello_devices(),
        };
        let _ = tx.send(up(uplink::Msg::Hello(hello))).await;
        let mut downlink = client
            .connect(ReceiverStream::new(rx))
            .await
            .map_err(|status| SessionError::Refused {
                endpoint: endpoint.into(),
                status,
            })?
            .into_inner();
        let welcome = match tokio::time::timeout(Duration::from_secs(10), downlink.message()).await {
            Ok(Ok(Some(pb::Downlink {
                msg: Some(downlink::Msg::Welcome(w)),
            }))) => w,
            other => {
                return Err(SessionError::NoWelcome {
                    endpoint: endpoint.into(),
                    detail: format!("{other:?}"),
                });
            }
        };
        self.outbox.reconcile(welcome.last_seq).await?;
        self.metrics.uplink_connects.fetch_add(1, Relaxed);
        self.metrics.uplink_connected.store(1, Relaxed);
        tracing::info!(hub = endpoint, hub_id = %welcome.hub_id, last_seq = welcome.last_seq, "connected to hub; resending from its last stored event");

        let batch_max = self.settings.batch_max.max(1);
        let window = batch_max as u64 * MAX_IN_FLIGHT_BATCHES;
        let linger = Duration::from_millis(self.settings.batch_linger_ms);
        let mut committed = self.outbox.subscribe();
        let mut sent_through = welcome.last_seq.max(self.outbox.acked().await?);
        let mut acked = sent_through;
        // Batches sent and not yet acknowledged: (last seq, sent at, their trace spans —
        // only when OpenTelemetry export is on), for the ack latency and the spans' ends.
        let mut unacked: VecDeque<(u64, Instant, Vec<tracing::Span>)> = VecDeque::new();
        let mut heartbeat = tokio::time::interval(Duration::from_millis(self.settings.heartbeat_ms.max(100)));
        let (results_tx, mut results_rx) = mpsc::channel::<pb::CommandResult>(64);
        let ended = |detail: String| SessionError::Ended {
            endpoint: endpoint.into(),
            detail,
        };

        loop {
            let can_send = *committed.borrow() > sent_through && sent_through - acked < window;
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Ok(()),
                msg = downlink.message() => match msg {
                    Ok(Some(pb::Downlink { msg: Some(m) })) => match m {
                        downlink::Msg::Ack(a) => {
                            if a.through_seq > acked {
                                self.outbox.ack_through(a.through_seq).await?;
                                acked = a.through_seq;
                                *progressed = true;
                            }
                            while unacked.front().is_some_and(|b| b.0 <= a.through_seq) {
                                if let Some((_, sent_at, spans)) = unacked.pop_front()
                                    && telemetry::enabled()
                                {
                                    telemetry::record_ack_latency(sent_at.elapsed());
                                    drop(spans);
                                }
                            }
                        }
                        downlink::Msg::Command(c) => {
                            self.metrics.commands.fetch_add(1, Relaxed);
                            let router = self.commands.clone();
                            let results = results_tx.clone();
                            tokio::spawn(async move {
                                let result = router.dispatch(c).await;
                                let _ = results.send(result).await;
                            });
                        }
                        downlink::Msg::Config(c) => {
                            tracing::warn!(version = c.version, "the hub pushed configuration; this gateway version keeps its file configuration");
                        }
                        downlink::Msg::Welcome(_) => tracing::warn!("a second Welcome on one stream; ignored"),
                    },
                    Ok(Some(pb::Downlink { msg: None })) => {}
                    Ok(None) => return Err(ended("the hub closed the stream".into())),
                    Err(status) => return Err(ended(status.to_string())),
                },
                Some(result) = results_rx.recv() => {
                    tx.send(up(uplink::Msg::CommandResult(result))).await.map_err(|_| ended("send side closed".into()))?;
                }
                _ = async {}, if can_send => {
                    // Let a small batch fill before sending it.
                    if *committed.borrow() - sent_through < batch_max as u64 && !linger.is_zero() {
                        tokio::time::sleep(linger).await;
                    }
                    let mut events = self.outbox.read_after(sent_through, batch_max).await?;
                    let Some(last) = events.last().map(|e| e.seq) else {
                        // Everything after the cursor was shed meanwhile.
                        sent_through = *committed.borrow();
                        continue;
                    };
                    let n = events.len() as u64;
                    let spans = if telemetry::enabled() { trace_batch(&mut events) } else { Vec::new() };
                    unacked.push_back((last, Instant::now(), spans));
                    tx.send(up(uplink::Msg::Events(pb::EventBatch { events }))).await.map_err(|_| ended("send side closed".into()))?;
                    self.metrics.uplink_sent.fetch_add(n, Relaxed);
                    sent_through = last;
                }
                r = committed.changed(), if !can_send => {
                    if r.is_err() {
                        return Ok(());
                    }
                }
                _ = heartbeat.tick() => {
                    let hb = pb::Heartbeat {
                        sent_at_ms: pb::now_ms(),
                        outbox_depth: self.metrics.outbox_depth.load(Relaxed),
                        last_seq: *committed.borrow(),
                    };
                    tx.send(up(uplink::Msg::Heartbeat(hb))).await.map_err(|_| ended("send side closed".into()))?;
                }
            }
        }
    }
}

struct SessionOutcome {
    error: SessionError,
    /// The hub acknowledged something in this session: the next backoff starts small.
    progressed: bool,
}

/// One `gateway.uplink.send` span per traced event of a batch, a child of the event's own
/// context and carried on in its place, so the hub's spans hang under it. The spans end
/// when the hub acknowledges the batch.
fn trace_batch(events: &mut [pb::Event]) -> Vec<tracing::Span> {
    let mut spans = Vec::new();
    for e in events.iter_mut().filter(|e| !e.trace_context.is_empty()) {
        let span = tracing::info_span!(target: "gatehouse_gateway::uplink", "gateway.uplink.send", seq = e.seq, event_id = %e.event_id);
        if telemetry::set_parent(&span, &e.trace_context) {
            telemetry::inject(&span, &mut e.trace_context);
            spans.push(span);
        }
    }
    spans
}

fn up(msg: uplink::Msg) -> pb::Uplink {
    pb::Uplink { msg: Some(msg) }
}
