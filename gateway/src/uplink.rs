//! The gateway's link to the hub (docs/design.md, gRPC): one gRPC bidirectional stream at
//! a time, to the first configured hub that answers. Sends the outbox in batches from the
//! hub's last acknowledged sequence number, deletes what the hub acknowledges, runs
//! commands.
//!
//! Delivery is at-least-once on the wire (a reconnect resends everything not yet acked);
//! the hub drops duplicates by (gateway, seq), so the effect is exactly once.
//!
//! The uplink never sticks on a batch: batches are bounded in bytes under the limit the hub
//! announces in Welcome; a refused batch (a `Rejection`, or an OUT_OF_RANGE status from a
//! hub that could not decode it) is logged, counted and shown on health, the byte bound is
//! halved, and an event that alone is too large is set aside in the outbox's dead-letter
//! table. Health: `uplink.connected` (ready) and `uplink.progress` (live: connected, events
//! pending, acks not advancing; or batches refused).

use std::{
    collections::VecDeque,
    sync::{Arc, atomic::Ordering::Relaxed},
    time::{Duration, Instant},
};

use gatehouse_proto::{self as pb, downlink, gateway_link_client::GatewayLinkClient, uplink};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use crate::{
    adapters::CommandRouter,
    config::UplinkSection,
    health::{Check, Health, Severity},
    metrics::{Metrics, UplinkRejection},
    outbox::{Outbox, OutboxError},
    registry::Registry,
    telemetry,
};

/// Most events sent but not yet acknowledged; the hub's acks pace the sender beyond this.
const MAX_IN_FLIGHT_BATCHES: u64 = 8;
/// What a hub that announces no limit (older than the field) accepts: gRPC's default.
const DEFAULT_HUB_MAX_MESSAGE: u64 = 4 * 1024 * 1024;
/// Room left under the hub's limit for the Uplink/EventBatch wrapping and the trace
/// context the send replaces.
const FRAMING_HEADROOM: usize = 4 * 1024;
/// The smallest byte bound halving goes down to; below it a batch is one event.
const MIN_BATCH_BYTES: usize = 8 * 1024;

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
    #[error("hub {endpoint} refused a batch: {detail}")]
    Rejected {
        endpoint: String,
        detail: String,
        /// The batch was refused for its size (halve the bound, set a lone event aside).
        too_large: bool,
    },
    #[error(transparent)]
    Outbox(#[from] OutboxError),
}

/// What a standby hub answers (several hubs on one PostgreSQL): the active is elsewhere, or
/// about to be (a standby takes the writer lease within `[cluster] lease_s` of the active's end).
const STANDBY_REFUSAL: &str = "standby hub";
/// While some hub says it is a standby, the hubs are alive and a takeover is due within
/// seconds: every endpoint is tried again at least this often, instead of backing off further.
const STANDBY_RETRY: Duration = Duration::from_secs(1);

impl SessionError {
    /// A standby hub refused the stream, or a hub that lost the writer lease ended it.
    pub fn is_standby(&self) -> bool {
        match self {
            SessionError::Refused { status, .. } => {
                status.code() == tonic::Code::Unavailable && status.message().contains(STANDBY_REFUSAL)
            }
            SessionError::Ended { detail, .. } => detail.contains(STANDBY_REFUSAL),
            _ => false,
        }
    }
}

pub struct Uplink {
    pub registry: Registry,
    pub hubs: Vec<String>,
    pub settings: UplinkSection,
    pub outbox: Outbox,
    pub commands: CommandRouter,
    pub metrics: Arc<Metrics>,
    pub health: Health,
}

/// The uplink's health checks and what they judge by; kept across sessions, so a gateway
/// that reconnects in a loop without delivering still fails.
struct Watch {
    connected: Check,
    progress: Check,
    timeout: Duration,
    /// Since when events have been pending with a hub connected and no ack advancing.
    /// Cleared by an ack, by an empty outbox, and by a hub that cannot be reached at all
    /// (that is `uplink.connected`'s business, not a stall).
    stuck_since: Option<Instant>,
    /// A refusal by the hub (or of the hub's Welcome), until an ack advances.
    refused: Option<String>,
    /// The byte bound of a batch: starts at `uplink.max_batch_bytes`, halved on refusal.
    batch_bytes: usize,
    /// The message bound of the last session (the lower of `batch_bytes` and the hub's).
    in_force: usize,
}

impl Watch {
    fn judge(&mut self, metrics: &Metrics) {
        if metrics.outbox_depth.load(Relaxed) == 0 {
            self.stuck_since = None;
            self.refused = None;
        }
        if let Some(r) = &self.refused {
            self.progress.fail(r.clone());
        } else if let Some(since) = self.stuck_since
            && since.elapsed() >= self.timeout
        {
            self.progress.fail(format!(
                "{} events pending and no ack from the hub for {} s",
                metrics.outbox_depth.load(Relaxed),
                since.elapsed().as_secs()
            ));
        } else {
            self.progress.ok();
        }
    }

    fn acked(&mut self) {
        self.stuck_since = None;
        self.refused = None;
        self.progress.ok();
    }
}

impl Uplink {
    /// Runs until `shutdown`: connects, streams, and on any failure moves to the next hub
    /// endpoint, backing off with full jitter once every endpoint has failed in a row.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut backoff = Duration::from_millis(self.settings.backoff_min_ms);
        let max = Duration::from_millis(self.settings.backoff_max_ms);
        let connected = self.health.register("uplink.connected", Severity::Ready);
        connected.fail("not yet connected to a hub (events are kept in the outbox)");
        let mut watch = Watch {
            connected,
            progress: self.health.register("uplink.progress", Severity::Live),
            timeout: Duration::from_secs(self.settings.progress_timeout_s.max(1)),
            stuck_since: None,
            refused: None,
            batch_bytes: self.settings.max_batch_bytes.max(MIN_BATCH_BYTES),
            in_force: self.settings.max_batch_bytes.max(MIN_BATCH_BYTES),
        };
        loop {
            let mut standby = false;
            for endpoint in &self.hubs {
                let outcome = tokio::select! {
                    r = self.session(endpoint, &shutdown, &mut watch) => r,
                    _ = shutdown.cancelled() => return,
                };
                self.metrics.uplink_connected.store(0, Relaxed);
                match outcome {
                    Ok(()) => return,
                    Err(SessionOutcome {
                        error,
                        progressed,
                        refused_batch,
                    }) => {
                        if progressed {
                            backoff = Duration::from_millis(self.settings.backoff_min_ms);
                        }
                        standby |= error.is_standby();
                        self.after_session(&error, &mut watch).await;
                        if let Some((seq, 1)) = refused_batch {
                            self.set_aside_seq(seq, "the hub refused it alone as too large").await;
                        }
                        watch.connected.fail(format!("no hub stream: {error}"));
                        watch.judge(&self.metrics);
                        tracing::warn!(hub = %endpoint, error = %error, "hub link down");
                    }
                }
            }
            if standby {
                // A takeover is under way: keep trying every hub about once a second.
                backoff = backoff.min(STANDBY_RETRY);
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
            backoff = if standby {
                backoff.max(Duration::from_millis(self.settings.backoff_min_ms))
            } else {
                (backoff * 2).min(max)
            };
        }
    }

    async fn session(
        &self,
        endpoint: &str,
        shutdown: &CancellationToken,
        watch: &mut Watch,
    ) -> Result<(), SessionOutcome> {
        let mut progressed = false;
        let mut unacked_first = None;
        let r = self
            .stream(endpoint, shutdown, &mut progressed, watch, &mut unacked_first)
            .await;
        r.map_err(|error| {
            let error = match error {
                // A hub that could not decode a batch closes with OUT_OF_RANGE.
                SessionError::Ended { endpoint, detail } if detail.contains("too_large") => SessionError::Rejected {
                    endpoint,
                    detail,
                    too_large: true,
                },
                e => e,
            };
            let refused_batch = match &error {
                SessionError::Rejected { too_large: true, .. } => unacked_first,
                _ => None,
            };
            SessionOutcome {
                error,
                progressed,
                refused_batch,
            }
        })
    }

    /// What a failed session teaches: a hub that was never reached is not a stall; a batch
    /// refused for its size halves the bound, and a lone event that is still too large is
    /// set aside so that everything behind it flows.
    async fn after_session(&self, error: &SessionError, watch: &mut Watch) {
        match error {
            SessionError::Endpoint { .. }
            | SessionError::Connect { .. }
            | SessionError::Refused { .. }
            | SessionError::NoWelcome { .. } => watch.stuck_since = None,
            SessionError::Rejected { detail, too_large, .. } => {
                watch.refused = Some(format!("the hub refused a batch: {detail}"));
                if *too_large {
                    watch.batch_bytes = (watch.in_force / 2).max(MIN_BATCH_BYTES);
                    self.metrics.uplink_batch_bytes.store(watch.batch_bytes as u64, Relaxed);
                    tracing::warn!(
                        batch_bytes = watch.batch_bytes,
                        "the hub refused a batch as too large; halving the batch byte bound"
                    );
                }
            }
            SessionError::Ended { .. } | SessionError::Outbox(_) => {}
        }
    }

    /// Mutual TLS to the hub: the hub's CA, this gateway's certificate and key (`[uplink]`).
    fn tls_config(&self) -> Result<ClientTlsConfig, String> {
        let read = |key: &str, path: &Option<std::path::PathBuf>| {
            let path = path.as_ref().ok_or_else(|| format!("{key} is not set"))?;
            std::fs::read(path).map_err(|e| format!("{key}: {}: {e}", path.display()))
        };
        let ca = read("uplink.ca", &self.settings.ca)?;
        let cert = read("uplink.cert", &self.settings.cert)?;
        let key = read("uplink.key", &self.settings.key)?;
        Ok(ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca))
            .identity(Identity::from_pem(cert, key)))
    }

    async fn stream(
        &self,
        endpoint: &str,
        shutdown: &CancellationToken,
        progressed: &mut bool,
        watch: &mut Watch,
        unacked_first: &mut Option<(u64, usize)>,
    ) -> Result<(), SessionError> {
        let mut channel = Endpoint::from_shared(endpoint.to_string())
            .map_err(|e| SessionError::Endpoint {
                endpoint: endpoint.into(),
                detail: e.to_string(),
            })?
            .connect_timeout(Duration::from_secs(3))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(10));
        if endpoint.trim().to_ascii_lowercase().starts_with("https://") {
            // Read at each connect, so renewed certificates apply without a restart.
            let tls = self.tls_config().map_err(|detail| SessionError::Endpoint {
                endpoint: endpoint.into(),
                detail,
            })?;
            channel = channel.tls_config(tls).map_err(|e| SessionError::Endpoint {
                endpoint: endpoint.into(),
                detail: format!("TLS settings: {e}"),
            })?;
        }
        let channel = channel.connect().await.map_err(|source| SessionError::Connect {
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
            last_seq: *self.outbox.subscribe().borrow(),
            outbox_depth: self.metrics.outbox_depth.load(Relaxed),
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
        if let Err(e) = self.outbox.reconcile(welcome.last_seq).await {
            if matches!(e, OutboxError::SeqOutOfRange { .. }) {
                self.metrics.uplink_seq_refused.fetch_add(1, Relaxed);
                watch.refused = Some(format!("hub {endpoint}: {e}"));
                watch.judge(&self.metrics);
            }
            return Err(e.into());
        }
        self.metrics.uplink_connects.fetch_add(1, Relaxed);
        self.metrics.uplink_connected.store(1, Relaxed);
        watch.connected.ok();
        let hub_max = match welcome.max_message_bytes {
            0 => DEFAULT_HUB_MAX_MESSAGE,
            n => n,
        };
        let in_force = watch.batch_bytes.min(usize::try_from(hub_max).unwrap_or(usize::MAX));
        watch.in_force = in_force;
        let max_bytes = in_force.saturating_sub(FRAMING_HEADROOM).max(MIN_BATCH_BYTES);
        self.metrics.uplink_batch_bytes.store(max_bytes as u64, Relaxed);
        tracing::info!(hub = endpoint, hub_id = %welcome.hub_id, last_seq = welcome.last_seq, hub_max_message_bytes = hub_max, batch_bytes = max_bytes, "connected to hub; resending from its last stored event");

        let batch_max = self.settings.batch_max.max(1);
        let window = batch_max as u64 * MAX_IN_FLIGHT_BATCHES;
        let linger = Duration::from_millis(self.settings.batch_linger_ms);
        let mut committed = self.outbox.subscribe();
        let mut sent_through = welcome.last_seq.max(self.outbox.acked().await?);
        let mut acked = sent_through;
        // Batches sent and not yet acknowledged: (last seq, sent at, their trace spans —
        // only when OpenTelemetry export is on), for the ack latency and the spans' ends.
        let mut unacked: VecDeque<InFlight> = VecDeque::new();
        let mut heartbeat = tokio::time::interval(Duration::from_millis(self.settings.heartbeat_ms.max(100)));
        let mut judge = tokio::time::interval(Duration::from_secs(1));
        if watch.stuck_since.is_none() && self.metrics.outbox_depth.load(Relaxed) > 0 {
            watch.stuck_since = Some(Instant::now());
        }
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
                                watch.acked();
                                if self.metrics.outbox_depth.load(Relaxed) > 0 {
                                    watch.stuck_since = Some(Instant::now());
                                }
                            }
                            while unacked.front().is_some_and(|b| b.0 <= a.through_seq) {
                                if let Some((_, _, sent_at, spans)) = unacked.pop_front()
                                    && telemetry::enabled()
                                {
                                    telemetry::record_ack_latency(sent_at.elapsed());
                                    drop(spans);
                                }
                            }
                            *unacked_first = unacked.front().map(|b| b.1);
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
                        downlink::Msg::Rejection(r) => {
                            let reason = r.reason();
                            let kind = match reason {
                                pb::RejectionReason::SeqGap => UplinkRejection::SeqGap,
                                pb::RejectionReason::SeqCeiling => UplinkRejection::SeqCeiling,
                                pb::RejectionReason::TooLarge => UplinkRejection::TooLarge,
                                pb::RejectionReason::FieldTooLong | pb::RejectionReason::Unspecified => UplinkRejection::Other,
                            };
                            self.metrics.uplink_rejected(kind);
                            tracing::error!(hub = endpoint, first_seq = r.first_seq, last_seq = r.last_seq, reason = kind.as_str(), detail = %r.detail,
                                "the hub refused a batch; nothing of it was stored");
                            return Err(SessionError::Rejected {
                                endpoint: endpoint.into(),
                                detail: format!("seq {}..={} ({}): {}", r.first_seq, r.last_seq, kind.as_str(), r.detail),
                                too_large: kind == UplinkRejection::TooLarge,
                            });
                        }
                    },
                    Ok(Some(pb::Downlink { msg: None })) => {}
                    Ok(None) => return Err(ended("the hub closed the stream".into())),
                    Err(status) if status.code() == tonic::Code::OutOfRange => {
                        self.metrics.uplink_rejected(UplinkRejection::TooLarge);
                        tracing::error!(hub = endpoint, detail = %status.message(), "the hub refused a batch as too large");
                        return Err(SessionError::Rejected {
                            endpoint: endpoint.into(),
                            detail: format!("too_large: {}", status.message()),
                            too_large: true,
                        });
                    }
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
                    let mut events = self.outbox.read_batch(sent_through, batch_max, max_bytes).await?;
                    let Some(last) = events.last().map(|e| e.seq) else {
                        // Everything after the cursor was shed meanwhile.
                        sent_through = *committed.borrow();
                        continue;
                    };
                    if let [lone] = events.as_slice()
                        && crate::outbox::batch_bytes(lone) > max_bytes
                    {
                        self.set_aside(lone, max_bytes).await?;
                        continue;
                    }
                    let n = events.len() as u64;
                    let first = (events.first().map_or(last, |e| e.seq), events.len());
                    let spans = if telemetry::enabled() { trace_batch(&mut events) } else { Vec::new() };
                    unacked.push_back((last, first, Instant::now(), spans));
                    *unacked_first = unacked.front().map(|b| b.1);
                    tx.send(up(uplink::Msg::Events(pb::EventBatch { events }))).await.map_err(|_| ended("send side closed".into()))?;
                    self.metrics.uplink_sent.fetch_add(n, Relaxed);
                    sent_through = last;
                }
                r = committed.changed(), if !can_send => {
                    if r.is_err() {
                        return Ok(());
                    }
                }
                _ = judge.tick() => {
                    if self.metrics.outbox_depth.load(Relaxed) > 0 && watch.stuck_since.is_none() {
                        watch.stuck_since = Some(Instant::now());
                    }
                    watch.judge(&self.metrics);
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

/// A batch sent and not yet acknowledged: its last seq, (first seq, events), when it was
/// sent, and its trace spans (only when OpenTelemetry export is on).
type InFlight = (u64, (u64, usize), Instant, Vec<tracing::Span>);

struct SessionOutcome {
    error: SessionError,
    /// The hub acknowledged something in this session: the next backoff starts small.
    progressed: bool,
    /// The first unacknowledged batch of a session the hub ended for size: (first seq, events).
    refused_batch: Option<(u64, usize)>,
}

impl Uplink {
    async fn set_aside_seq(&self, seq: u64, reason: &str) {
        match self.outbox.dead_letter(seq, reason).await {
            Ok(true) => {
                self.metrics.uplink_dead_lettered.fetch_add(1, Relaxed);
                tracing::error!(
                    seq,
                    reason,
                    "an event the hub cannot take was set aside in the outbox's dead_letter table"
                );
            }
            Ok(false) => {}
            Err(e) => tracing::error!(seq, error = %e, "cannot set an undeliverable event aside"),
        }
    }

    /// An event that alone exceeds the batch bound can never be delivered: set it aside in
    /// the dead-letter table (counted, logged) so that the events behind it flow.
    async fn set_aside(&self, event: &pb::Event, max_bytes: usize) -> Result<(), SessionError> {
        let bytes = crate::outbox::batch_bytes(event);
        let reason = format!("{bytes} bytes; the hub accepts batches of at most {max_bytes}");
        if self.outbox.dead_letter(event.seq, &reason).await? {
            self.metrics.uplink_dead_lettered.fetch_add(1, Relaxed);
            tracing::error!(seq = event.seq, device = %event.device_id, event_id = %event.event_id, bytes, max_bytes,
                "an event too large for any batch the hub accepts was set aside in the outbox's dead_letter table");
        }
        Ok(())
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_standby_refusal_is_told_apart_from_other_failures() {
        let refused = |status: tonic::Status| SessionError::Refused {
            endpoint: "http://hub-b:7443".into(),
            status,
        };
        assert!(refused(tonic::Status::unavailable("standby hub; try another")).is_standby());
        assert!(!refused(tonic::Status::unavailable("hub shutting down")).is_standby());
        assert!(!refused(tonic::Status::permission_denied("standby hub; try another")).is_standby());
        let ended = |detail: &str| SessionError::Ended {
            endpoint: "http://hub-a:7443".into(),
            detail: detail.into(),
        };
        assert!(ended("status: Unavailable, message: \"standby hub; try another\"").is_standby());
        assert!(!ended("stream closed").is_standby());
    }
}
