//! `GatewayLink.Connect`: one bidirectional stream per gateway (docs/design.md, gRPC).
//!
//! Hello → Welcome{last_seq}; then each EventBatch is checked, queued to the writer, and
//! acknowledged (in order) once the writer has committed it. Several batches may be in
//! flight at once, so a gateway can keep sending while earlier batches commit. Nothing that
//! arrives on the network may panic the hub: everything is checked and refused with a
//! status instead.

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::stream::{FuturesOrdered, StreamExt as _};
use gatehouse_proto::gateway_link_server::GatewayLink;
use gatehouse_proto::{
    Ack, Downlink, Event, Hello, Rejection, RejectionReason, Uplink, Welcome, downlink, now_ms, uplink,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, info, warn};

use crate::metrics::{Metrics, RejectKind};
use crate::net::limits::LogGate;
use crate::tls::{GatewayIdentity, TlsState};
use crate::writer::{HelloRecord, Holds, IngestOutcome, Rejected, WriterError, WriterHandle};

/// How often the hub asks gateways to send a heartbeat when idle.
pub const HEARTBEAT_INTERVAL_MS: u32 = 5_000;
/// How long a new stream may take to say Hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Batches of one stream waiting for their commit at the same time.
const MAX_IN_FLIGHT: usize = 16;
/// Downlink messages buffered per stream.
const DOWNLINK_BUFFER: usize = 64;
/// Longest identifier accepted from a gateway.
const MAX_ID_LEN: usize = 128;
/// Most devices a Hello may announce.
const MAX_DEVICES: usize = 100_000;

type DownlinkSender = mpsc::Sender<Result<Downlink, Status>>;

pub mod bounds;
mod registry;

pub use registry::{LinkError, LinkRegistry};

/// The `GatewayLink` service.
#[derive(Clone)]
pub struct LinkService {
    pub(crate) writer: WriterHandle,
    pub(crate) registry: LinkRegistry,
    pub(crate) estates: Arc<HashSet<String>>,
    /// `[[gateways]]`: gateway id → its estate. Any other gateway is refused.
    pub(crate) gateways: Arc<HashMap<String, String>>,
    /// The TLS settings when the port speaks TLS: a stream must then present a client
    /// certificate naming the gateway it says Hello as, not revoked.
    pub(crate) tls: Option<Arc<TlsState>>,
    /// At most one identity refusal logged every 10 s (each costs a stranger one stream).
    pub(crate) denied_log: Arc<LogGate>,
    pub(crate) hub_id: String,
    pub(crate) metrics: Arc<Metrics>,
    /// The largest Uplink message decoded (`ingest.max_message_bytes`), announced in Welcome.
    pub(crate) max_message_bytes: u64,
    /// Cancelled when the hub shuts down: every stream ends.
    pub(crate) shutdown: CancellationToken,
    /// Active or standby (several hubs on one PostgreSQL): a standby refuses every stream.
    pub(crate) role: Arc<crate::cluster::Role>,
}

/// What a standby answers a gateway (several hubs on one PostgreSQL, `cluster`).
const STANDBY: &str = "standby hub; try another";

type ConnectStream = Pin<Box<dyn futures::Stream<Item = Result<Downlink, Status>> + Send>>;

#[tonic::async_trait]
impl GatewayLink for LinkService {
    type ConnectStream = ConnectStream;

    async fn connect(&self, request: Request<Streaming<Uplink>>) -> Result<Response<Self::ConnectStream>, Status> {
        if self.role.is_standby() {
            // Before anything is read: the gateway moves on to its next hub at once. The
            // active's name helps whoever reads the gateway's log.
            return Err(Status::unavailable(match self.role.writer_at() {
                Some(active) => format!("{STANDBY} (the active hub is {})", active.holder),
                None => STANDBY.to_owned(),
            }));
        }
        let peer = request.remote_addr();
        let certificate = self.peer_identity(&request)?;
        let mut uplink = request.into_inner();
        let first = tokio::time::timeout(HELLO_TIMEOUT, uplink.message())
            .await
            .map_err(|_| self.refuse(Status::deadline_exceeded("no Hello within 10 s")))??;
        let hello = match first {
            Some(Uplink {
                msg: Some(uplink::Msg::Hello(hello)),
            }) => hello,
            Some(_) => {
                return Err(self.refuse(Status::invalid_argument(
                    "the first message of GatewayLink.Connect must be Hello",
                )));
            }
            None => {
                return Err(self.refuse(Status::invalid_argument("the stream ended before Hello")));
            }
        };
        self.check_hello(&hello).map_err(|s| self.refuse(s))?;
        self.check_identity(&hello, certificate.as_ref())?;
        let revoked = Arc::new(AtomicBool::new(false));

        let (tx, rx) = mpsc::channel(DOWNLINK_BUFFER);
        let cancel = self.shutdown.child_token();
        let conn_id = self.registry.next_conn_id();
        let record = HelloRecord {
            gateway_id: hello.gateway_id.clone(),
            estate_id: hello.estate_id.clone(),
            software_version: hello.software_version.clone(),
            devices: hello.devices.clone(),
            conn_id,
            holds: Holds {
                last_seq: hello.last_seq,
                pending: hello.outbox_depth,
            },
        };
        let last_seq = match self.writer.hello(record).await {
            Ok(s) => s,
            Err(e) => {
                warn!(gateway = %hello.gateway_id, error = %e, "cannot record Hello");
                return Err(Status::unavailable(format!("cannot record Hello: {e}")));
            }
        };
        info!(
            gateway = %hello.gateway_id,
            estate = %hello.estate_id,
            version = %hello.software_version,
            devices = hello.devices.len(),
            last_seq,
            peer = ?peer,
            "gateway connected"
        );
        let welcome = Downlink {
            msg: Some(downlink::Msg::Welcome(Welcome {
                last_seq,
                hub_id: self.hub_id.clone(),
                heartbeat_interval_ms: HEARTBEAT_INTERVAL_MS,
                max_message_bytes: self.max_message_bytes,
            })),
        };
        // The channel is new and not yet registered, so empty: this cannot be full.
        let _ = tx.try_send(Ok(welcome));
        self.registry.register(
            &hello.gateway_id,
            registry::Registration {
                conn_id,
                tx: tx.clone(),
                cancel: cancel.clone(),
                serial: certificate.map(|c| c.serial),
                revoked: revoked.clone(),
            },
        );

        let link = StreamTask {
            service: self.clone(),
            gateway_id: hello.gateway_id,
            estate_id: hello.estate_id,
            conn_id,
            tx,
            cancel,
            revoked,
        };
        tokio::spawn(link.run(uplink));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// The verified client certificate of a stream.
struct PeerCertificate {
    identity: GatewayIdentity,
    serial: Vec<u8>,
}

impl LinkService {
    /// With TLS: the stream's client certificate (verified against the client CA and the CRL
    /// at the handshake), its identity, and that the CRL has not revoked it since.
    fn peer_identity<T>(&self, request: &Request<T>) -> Result<Option<PeerCertificate>, Status> {
        let Some(tls) = &self.tls else {
            return Ok(None);
        };
        let certs = request.peer_certs();
        let Some(leaf) = certs.as_ref().and_then(|c| c.first()) else {
            return Err(self.deny(Status::unauthenticated(
                "GatewayLink requires a client certificate issued to this gateway",
            )));
        };
        let identity = GatewayIdentity::from_der(leaf).map_err(|e| {
            self.deny(Status::permission_denied(format!(
                "the client certificate names no gateway: {e}"
            )))
        })?;
        let serial = crate::tls::identity::serial_of_der(leaf)
            .map_err(|e| self.deny(Status::permission_denied(format!("unreadable client certificate: {e}"))))?;
        if tls.is_revoked(&serial) {
            return Err(self.deny(Status::permission_denied(format!(
                "the certificate of {identity} is revoked"
            ))));
        }
        Ok(Some(PeerCertificate { identity, serial }))
    }

    /// The gateway must be in `[[gateways]]` for the estate it names, and say Hello as the
    /// gateway and estate of its certificate. Checked before anything is recorded and before
    /// a stream of the same id is replaced.
    fn check_identity(&self, hello: &Hello, certificate: Option<&PeerCertificate>) -> Result<(), Status> {
        match self.gateways.get(&hello.gateway_id) {
            None => {
                return Err(self.deny(Status::permission_denied(format!(
                    "gateway {:?} is not configured on hub {} ([[gateways]])",
                    hello.gateway_id, self.hub_id
                ))));
            }
            Some(estate) if *estate != hello.estate_id => {
                return Err(self.deny(Status::permission_denied(format!(
                    "gateway {:?} belongs to estate {estate:?}, not {:?}",
                    hello.gateway_id, hello.estate_id
                ))));
            }
            Some(_) => {}
        }
        if let Some(cert) = certificate
            && (cert.identity.gateway != hello.gateway_id || cert.identity.estate != hello.estate_id)
        {
            return Err(self.deny(Status::permission_denied(format!(
                "Hello as gateway {:?} of estate {:?}, but the certificate is {}",
                hello.gateway_id, hello.estate_id, cert.identity
            ))));
        }
        Ok(())
    }

    /// Counts and logs (rate-limited) a stream refused for who it is.
    fn deny(&self, status: Status) -> Status {
        self.metrics.streams_denied.fetch_add(1, Ordering::Relaxed);
        if let Some(suppressed) = self.denied_log.allow() {
            warn!(code = ?status.code(), reason = status.message(), suppressed,
                "GatewayLink stream refused for its identity (counted in gatehouse_hub_streams_denied_total; logged at most every 10 s)");
        }
        status
    }

    fn refuse(&self, status: Status) -> Status {
        self.metrics.streams_refused.fetch_add(1, Ordering::Relaxed);
        debug!(code = ?status.code(), message = status.message(), "GatewayLink stream refused");
        status
    }

    fn check_hello(&self, hello: &Hello) -> Result<(), Status> {
        check_id("gateway_id", &hello.gateway_id)?;
        check_id("estate_id", &hello.estate_id)?;
        // A NUL is refused in every stored text: PostgreSQL stores none.
        if hello.software_version.len() > MAX_ID_LEN || hello.software_version.contains('\0') {
            return Err(Status::invalid_argument(
                "software_version is too long or holds a NUL character",
            ));
        }
        if !self.estates.contains(&hello.estate_id) {
            return Err(Status::failed_precondition(format!(
                "unknown estate {:?}: hub {} does not serve it (not in its [[estates]])",
                hello.estate_id, self.hub_id
            )));
        }
        if hello.devices.len() > MAX_DEVICES {
            return Err(Status::invalid_argument(format!(
                "Hello announces {} devices; at most {MAX_DEVICES}",
                hello.devices.len()
            )));
        }
        for d in &hello.devices {
            check_id("devices.device_id", &d.device_id)?;
            if d.area.len() > 256 || d.area.contains('\0') {
                return Err(Status::invalid_argument(format!(
                    "device {:?}: area is too long or holds a NUL character",
                    d.device_id
                )));
            }
        }
        Ok(())
    }
}

fn check_id(field: &str, value: &str) -> Result<(), Status> {
    if value.is_empty() {
        return Err(Status::invalid_argument(format!("{field} is empty")));
    }
    if value.len() > MAX_ID_LEN || value.chars().any(char::is_control) {
        return Err(Status::invalid_argument(format!(
            "{field} is not a valid id (at most {MAX_ID_LEN} bytes, no control characters)"
        )));
    }
    Ok(())
}

/// Checks that every event of a batch belongs to this stream. Returns the highest seq.
pub(crate) fn check_batch(gateway_id: &str, estate_id: &str, events: &[Event]) -> Result<u64, Status> {
    let mut max = 0;
    for e in events {
        if e.gateway_id != gateway_id {
            return Err(Status::invalid_argument(format!(
                "event seq {} names gateway {:?}, but this stream is gateway {gateway_id:?}",
                e.seq, e.gateway_id
            )));
        }
        if e.estate_id != estate_id {
            return Err(Status::invalid_argument(format!(
                "event seq {} names estate {:?}, but gateway {gateway_id:?} said Hello for estate {estate_id:?}",
                e.seq, e.estate_id
            )));
        }
        if e.seq == 0 || e.seq > i64::MAX as u64 {
            return Err(Status::invalid_argument(format!(
                "event seq {} is out of range (1..=2^63-1)",
                e.seq
            )));
        }
        max = max.max(e.seq);
    }
    Ok(max)
}

/// One gateway's open stream.
struct StreamTask {
    service: LinkService,
    gateway_id: String,
    estate_id: String,
    conn_id: u64,
    tx: DownlinkSender,
    cancel: CancellationToken,
    /// Set before `cancel` when a CRL reload revoked this stream's certificate.
    revoked: Arc<AtomicBool>,
}

type Pending = Pin<Box<dyn Future<Output = (u64, Result<IngestOutcome, WriterError>)> + Send>>;

impl StreamTask {
    async fn run(self, mut uplink: Streaming<Uplink>) {
        let end = self.serve(&mut uplink).await;
        let gateway = &self.gateway_id;
        match &end {
            Ok(()) => info!(gateway = %gateway, "gateway stream ended"),
            Err(status) => {
                info!(gateway = %gateway, code = ?status.code(), reason = status.message(), "gateway stream closed");
                let _ = self.tx.send(Err(status.clone())).await;
            }
        }
        if self.service.registry.unregister(&self.gateway_id, self.conn_id) {
            let _ = self
                .service
                .writer
                .disconnected(self.gateway_id.clone(), self.conn_id)
                .await;
        }
    }

    /// Serves the stream until it ends; `Err` is the status to close it with.
    async fn serve(&self, uplink: &mut Streaming<Uplink>) -> Result<(), Status> {
        let mut in_flight: FuturesOrdered<Pending> = FuturesOrdered::new();
        loop {
            tokio::select! {
                biased;
                _ = self.cancel.cancelled() => {
                    // Shutting down or replaced: acknowledge what is committed, then close.
                    while let Some((through, result)) = in_flight.next().await {
                        self.ack(through, result).await?;
                    }
                    return Err(if self.revoked.load(Ordering::Relaxed) {
                        Status::permission_denied("the gateway's certificate was revoked")
                    } else if self.service.shutdown.is_cancelled() {
                        Status::unavailable("hub shutting down")
                    } else if self.service.role.is_standby() {
                        Status::unavailable(STANDBY)
                    } else {
                        Status::aborted("replaced by a newer stream of the same gateway")
                    });
                }
                Some((through, result)) = in_flight.next(), if !in_flight.is_empty() => {
                    self.ack(through, result).await?;
                }
                message = uplink.message(), if in_flight.len() < MAX_IN_FLIGHT => {
                    match message {
                        Ok(Some(up)) => {
                            if let Some(pending) = self.handle(up).await? {
                                in_flight.push_back(pending);
                            }
                        }
                        Ok(None) => {
                            while let Some((through, result)) = in_flight.next().await {
                                self.ack(through, result).await?;
                            }
                            return Ok(());
                        }
                        Err(status) => {
                            // A message over the limit is refused out loud: the gateway must
                            // learn why, never see a silent close and resend the same batch.
                            if status.code() == tonic::Code::OutOfRange {
                                self.service.metrics.batch_rejected(RejectKind::TooLarge);
                                if too_large_log_allowed() {
                                    warn!(gateway = %self.gateway_id, error = %status.message(), limit = self.service.max_message_bytes,
                                        "gateway batch too large; refused (counted in gatehouse_hub_batches_rejected_total; logged at most once a minute)");
                                }
                                return Err(Status::out_of_range(format!(
                                    "batch refused (too_large): {}; this hub accepts at most {} bytes per message",
                                    status.message(),
                                    self.service.max_message_bytes
                                )));
                            }
                            debug!(gateway = %self.gateway_id, error = %status, "uplink read failed");
                            return Err(status);
                        }
                    }
                }
            }
        }
    }

    async fn handle(&self, up: Uplink) -> Result<Option<Pending>, Status> {
        match up.msg {
            Some(uplink::Msg::Events(batch)) => {
                if batch.events.is_empty() {
                    return Ok(None);
                }
                let through = check_batch(&self.gateway_id, &self.estate_id, &batch.events)
                    .map_err(|s| self.service.refuse(s))?;
                self.check_fields(&batch.events).await?;
                let rx = self
                    .service
                    .writer
                    .ingest(self.gateway_id.clone(), batch.events)
                    .await
                    .map_err(writer_status)?;
                Ok(Some(Box::pin(async move {
                    let result = rx.await.unwrap_or(Err(WriterError::Stopped));
                    (through, result)
                })))
            }
            Some(uplink::Msg::Heartbeat(hb)) => {
                debug!(gateway = %self.gateway_id, outbox_depth = hb.outbox_depth, last_seq = hb.last_seq, "heartbeat");
                let holds = Holds {
                    last_seq: hb.last_seq,
                    pending: hb.outbox_depth,
                };
                self.service
                    .writer
                    .seen(self.gateway_id.clone(), now_ms(), holds)
                    .await
                    .map_err(writer_status)?;
                Ok(None)
            }
            Some(uplink::Msg::CommandResult(result)) => {
                info!(gateway = %self.gateway_id, command = %result.command_id, device = %result.device_id, ok = result.ok, "command result");
                self.service
                    .writer
                    .command_result(self.gateway_id.clone(), result)
                    .await
                    .map_err(writer_status)?;
                Ok(None)
            }
            Some(uplink::Msg::Hello(_)) => Err(self
                .service
                .refuse(Status::invalid_argument("Hello may only be the first message"))),
            None => Err(self.service.refuse(Status::invalid_argument("empty Uplink message"))),
        }
    }

    /// Every text field within its bound, or the whole batch rejected out loud.
    async fn check_fields(&self, events: &[Event]) -> Result<(), Status> {
        let Some((event, too_long)) = events.iter().find_map(|e| bounds::check_event(e).err().map(|t| (e, t))) else {
            return Ok(());
        };
        self.service.metrics.batch_rejected(RejectKind::FieldTooLong);
        let detail = format!(
            "event seq {} (device {:?}): {too_long}",
            event.seq,
            truncated(&event.device_id)
        );
        if too_large_log_allowed() {
            warn!(gateway = %self.gateway_id, %detail, "gateway batch refused: a field is too long (counted in gatehouse_hub_batches_rejected_total; logged at most once a minute)");
        }
        let first = events.iter().map(|e| e.seq).min().unwrap_or(0);
        let last = events.iter().map(|e| e.seq).max().unwrap_or(0);
        let _ = self
            .tx
            .send(Ok(Downlink {
                msg: Some(downlink::Msg::Rejection(Rejection {
                    first_seq: first,
                    last_seq: last,
                    reason: RejectionReason::FieldTooLong as i32,
                    detail: detail.clone(),
                })),
            }))
            .await;
        Err(self.service.refuse(Status::invalid_argument(format!(
            "batch refused (field_too_long): {detail}"
        ))))
    }

    async fn ack(&self, through: u64, result: Result<IngestOutcome, WriterError>) -> Result<(), Status> {
        if let Err(WriterError::Rejected(r)) = &result {
            // The explicit answer first, then the close; nothing of the batch was stored.
            let _ = self
                .tx
                .send(Ok(Downlink {
                    msg: Some(downlink::Msg::Rejection(rejection(r))),
                }))
                .await;
        }
        let outcome = result.map_err(writer_status)?;
        debug!(gateway = %self.gateway_id, through, stored = outcome.stored, duplicates = outcome.duplicates, "batch committed");
        self.tx
            .send(Ok(Downlink {
                msg: Some(downlink::Msg::Ack(Ack { through_seq: through })),
            }))
            .await
            // The gateway went away; what was committed stays committed.
            .map_err(|_| Status::cancelled("downlink closed"))
    }
}

/// At most one too-large log line a minute, whoever sends them: each costs the sender only a
/// new stream, so an unbounded log would be a cheap flood.
fn too_large_log_allowed() -> bool {
    static LAST: Mutex<Option<std::time::Instant>> = Mutex::new(None);
    let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
    if last.is_some_and(|t| t.elapsed() < Duration::from_secs(60)) {
        return false;
    }
    *last = Some(std::time::Instant::now());
    true
}

fn rejection(r: &Rejected) -> Rejection {
    let reason = match r.kind {
        RejectKind::SeqGap => RejectionReason::SeqGap,
        RejectKind::SeqCeiling => RejectionReason::SeqCeiling,
        RejectKind::TooLarge => RejectionReason::TooLarge,
        RejectKind::FieldTooLong => RejectionReason::FieldTooLong,
    };
    Rejection {
        first_seq: r.first_seq,
        last_seq: r.last_seq,
        reason: reason as i32,
        detail: r.detail.clone(),
    }
}

/// At most 64 characters of an untrusted id, for a message.
fn truncated(s: &str) -> String {
    s.chars().take(64).collect()
}

fn writer_status(e: WriterError) -> Status {
    match e {
        WriterError::Rejected(r) => Status::failed_precondition(r.to_string()),
        WriterError::Stopped => Status::unavailable("hub shutting down"),
        WriterError::Standby => Status::unavailable(STANDBY),
        WriterError::Commit(m) => Status::unavailable(format!("storage failure, retry: {m}")),
        WriterError::MustReconnect(g) => Status::unavailable(format!(
            "gateway {g}: an earlier batch failed to commit; reconnect and resend from Welcome.last_seq"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(gw: &str, estate: &str, seq: u64) -> Event {
        Event {
            gateway_id: gw.into(),
            estate_id: estate.into(),
            seq,
            ..Default::default()
        }
    }

    #[test]
    fn batch_check_returns_max_seq_and_refuses_foreign_or_invalid_events() {
        let ok = [event("g", "e", 3), event("g", "e", 7), event("g", "e", 5)];
        assert_eq!(check_batch("g", "e", &ok).unwrap(), 7);
        for bad in [
            event("other", "e", 1),
            event("g", "other", 1),
            event("g", "e", 0),
            event("g", "e", u64::MAX),
        ] {
            let status = check_batch("g", "e", &[bad]).unwrap_err();
            assert_eq!(status.code(), tonic::Code::InvalidArgument);
        }
    }
}
