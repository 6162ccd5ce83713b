//! The gateway's own MQTT 3.1.1 server: the estate's devices connect here. It replaces the
//! embedded rumqttd, which PUBACKed a publish when it reached an in-memory log the gateway
//! had not read yet (an outbox stall longer than the log lost acknowledged events), panicked
//! on two CONNECTs reset before their CONNACK, and closed the gateway's own link when a
//! client reused its id.
//!
//! The contract:
//! - **A PUBACK follows the outbox commit**, like DC-09's ACK. A QoS 1 publish is translated,
//!   handed to the outbox writer (which commits many events to a transaction) and PUBACKed
//!   once its transaction has committed. QoS 2 likewise: PUBREC after the commit, PUBCOMP on
//!   PUBREL (a repeated publish with a packet id awaiting its PUBREL is not stored again).
//!   QoS 0 is committed the same way and needs no ack. A publish that is rejected
//!   (malformed, unknown device: counted per reason) or shed as a reading counts as taken
//!   and is acknowledged at once: MQTT 3.1.1 has no negative PUBACK.
//! - **Back pressure, never loss**: a connection has at most `mqtt.max_inflight` publishes
//!   awaiting their commit; at that point it stops reading its socket, so its device waits
//!   for PUBACKs. Memory is bounded by connections × (inflight + 1) × `mqtt.max_packet_bytes`
//!   plus the writer's queue; nothing is ever evicted. Acks leave in publish order.
//! - **This is the gateway's intake, not a general broker**: a device's publish goes to the
//!   outbox and to no other client. Clients subscribe to command topics only for what the
//!   gateway sends them (commands, at the QoS granted, at most 1). Retained publishes are
//!   handled as any publish and never stored (`mqtt_retained_ignored_total` counts them), so
//!   retained memory is zero. Sessions are clean: nothing is kept for a client id between
//!   connections (CONNACK says no session is present).
//! - **CONNECT** (protocol level 4) must arrive within `mqtt.connect_timeout_ms` of the
//!   accept. Refusals: another protocol or version → 0x01; an empty client id without clean
//!   session → 0x02; `mqtt.max_connections` strangers connected → 0x03. Keep-alive is
//!   enforced at 1.5 × the client's value (0: `mqtt.idle_timeout_s`).
//! - **A client id in use is taken over**: the older connection is closed (its will is
//!   discarded: its client id is connected again) and nothing else is affected. No client id
//!   is special: the gateway has no in-process link to collide with.
//! - **Last will**: after an abnormal close (no DISCONNECT: reset, keep-alive, malformed
//!   packet) the will is handled as if the device had published it, through the same intake.
//! - **Limits** (`limits.rs`): pending connections, connections per source address, and
//!   strangers (client ids that are not configured MQTT devices); configured devices always
//!   have room. Every refusal and every close by the gateway is counted by reason.
//! - **Health**: `mqtt.listener` fails while accepting fails; `mqtt.intake` fails while a
//!   publish has waited longer than `mqtt.commit_wait_alarm_ms` for its commit.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use rumqttc::mqttbytes::QoS;
use tokio::{net::TcpListener, sync::mpsc};
use tokio_util::sync::CancellationToken;

use super::{
    Intake, LogLimiter, codec,
    config::MqttSection,
    connection::{self, Outgoing},
    limits::{Admission, Caps},
};
use crate::{
    health::{Check, Severity},
    metrics::{Metrics, MqttRefusal},
};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("binding the MQTT listener on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
}

/// What every connection of the server shares.
pub(super) struct Shared {
    pub intake: Arc<Intake>,
    pub section: MqttSection,
    pub metrics: Arc<Metrics>,
    pub sessions: Sessions,
    /// Client ids of the configured MQTT devices (they have room of their own).
    pub devices: HashSet<String>,
    pub waits: Waits,
    log_limit: Mutex<LogLimiter>,
}

impl Shared {
    /// Logs a refusal or close at most once a minute per `key`.
    pub fn log_allowed(&self, key: &str) -> bool {
        self.log_limit
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .allow(key, Instant::now())
    }

    pub fn refused(&self, why: MqttRefusal, peer: SocketAddr, detail: &str) {
        self.metrics.mqtt_refused(why);
        if self.log_allowed(why.as_str()) {
            tracing::warn!(peer = %peer, reason = why.as_str(), detail,
                "MQTT connection refused (counted on /metrics; logged at most once a minute per reason)");
        }
    }
}

/// Binds `section.listen` and serves until `shutdown`; returns the bound address.
pub(super) async fn start(
    intake: Arc<Intake>,
    section: MqttSection,
    sessions: Sessions,
    devices: HashSet<String>,
    shutdown: CancellationToken,
) -> Result<SocketAddr, ServerError> {
    let listener = TcpListener::bind(section.listen)
        .await
        .map_err(|source| ServerError::Bind {
            addr: section.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ServerError::Bind {
        addr: section.listen,
        source,
    })?;
    let health = intake.ctx.health.clone();
    let listener_check = health.register("mqtt.listener", Severity::Live);
    let intake_check = health.register("mqtt.intake", Severity::Live);
    let admission = Admission::new(Caps {
        pending: section.max_pending_connections,
        per_ip: section.max_connections_per_ip,
        strangers: section.max_connections,
    });
    let shared = Arc::new(Shared {
        metrics: intake.ctx.metrics.clone(),
        intake,
        section,
        sessions,
        devices,
        waits: Waits::default(),
        log_limit: Mutex::default(),
    });
    tokio::spawn(watch_commits(shared.clone(), intake_check, shutdown.clone()));
    tokio::spawn(accept_loop(listener, admission, shared, listener_check, shutdown));
    Ok(addr)
}

async fn accept_loop(
    listener: TcpListener,
    admission: Admission,
    shared: Arc<Shared>,
    check: Check,
    shutdown: CancellationToken,
) {
    let mut next_conn = 0u64;
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => {
                check.ok();
                a
            }
            Err(e) => {
                // Out of descriptors, mostly: keep accepting once they come back.
                check.fail(format!("accepting MQTT connections fails: {e}"));
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let ticket = match admission.accept(peer.ip()) {
            Ok(t) => t,
            Err(why) => {
                shared.refused(why, peer, "closed at accept");
                drop(stream);
                continue;
            }
        };
        next_conn += 1;
        tokio::spawn(connection::serve(
            stream,
            peer,
            ticket,
            shared.clone(),
            next_conn,
            shutdown.child_token(),
        ));
    }
    // Only a shutdown ends the loop; a stopping gateway is not a failing one.
    if !shutdown.is_cancelled() {
        check.fail("the MQTT server stopped");
    }
}

/// Keeps `mqtt.intake` true: failing while the oldest publish awaiting its commit has waited
/// longer than `mqtt.commit_wait_alarm_ms` (a stalled or failing outbox).
async fn watch_commits(shared: Arc<Shared>, check: Check, shutdown: CancellationToken) {
    let limit = Duration::from_millis(shared.section.commit_wait_alarm_ms);
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        match shared.waits.oldest() {
            // A fixed reason: a changing one would be logged on every tick.
            Some(waited) if waited > limit => check.fail(format!(
                "an MQTT publish has waited over {} ms for its outbox commit (outbox stalled or failing; devices get no PUBACK meanwhile)",
                limit.as_millis()
            )),
            _ => check.ok(),
        }
    }
}

/// Publishes awaiting their outbox commit, oldest first.
#[derive(Default)]
pub(super) struct Waits {
    next: AtomicU64,
    open: Mutex<BTreeMap<u64, Instant>>,
}

/// One publish's wait; ends (and is measured) when dropped.
pub(super) struct Wait {
    shared: Arc<Shared>,
    id: u64,
    since: Instant,
}

impl Waits {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Instant>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn begin(shared: &Arc<Shared>) -> Wait {
        let id = shared.waits.next.fetch_add(1, Relaxed);
        let since = Instant::now();
        shared.waits.lock().insert(id, since);
        shared.metrics.mqtt_awaiting_commit.fetch_add(1, Relaxed);
        Wait {
            shared: shared.clone(),
            id,
            since,
        }
    }

    fn oldest(&self) -> Option<Duration> {
        self.lock().first_key_value().map(|(_, t)| t.elapsed())
    }
}

impl Drop for Wait {
    fn drop(&mut self) {
        self.shared.waits.lock().remove(&self.id);
        let m = &self.shared.metrics;
        let _ = m
            .mqtt_awaiting_commit
            .fetch_update(Relaxed, Relaxed, |n| Some(n.saturating_sub(1)));
        m.mqtt_commit_wait_max_ms
            .fetch_max(self.since.elapsed().as_millis() as u64, Relaxed);
    }
}

/// The connected clients by client id, with what each subscribed to.
#[derive(Clone, Default)]
pub(crate) struct Sessions {
    inner: Arc<Mutex<HashMap<String, Session>>>,
}

struct Session {
    conn: u64,
    tx: mpsc::Sender<Outgoing>,
    close: CancellationToken,
    filters: Vec<(String, QoS)>,
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers connection `conn` as `client_id`, closing any older connection of that id.
    pub(super) fn open(&self, client_id: &str, conn: u64, tx: mpsc::Sender<Outgoing>, close: CancellationToken) {
        let old = self.lock().insert(
            client_id.to_string(),
            Session {
                conn,
                tx,
                close,
                filters: Vec::new(),
            },
        );
        if let Some(old) = old {
            old.close.cancel();
        }
    }

    /// Forgets `client_id` if `conn` still holds it (a takeover may have replaced it).
    pub(super) fn close(&self, client_id: &str, conn: u64) {
        let mut s = self.lock();
        if s.get(client_id).is_some_and(|x| x.conn == conn) {
            s.remove(client_id);
        }
    }

    /// Whether `conn` still holds `client_id` (false once another connection took it over).
    pub(super) fn holds(&self, client_id: &str, conn: u64) -> bool {
        self.lock().get(client_id).is_some_and(|s| s.conn == conn)
    }

    pub(super) fn subscribe(&self, client_id: &str, conn: u64, filters: impl IntoIterator<Item = (String, QoS)>) {
        if let Some(s) = self.lock().get_mut(client_id).filter(|s| s.conn == conn) {
            for (f, q) in filters {
                s.filters.retain(|(g, _)| *g != f);
                s.filters.push((f, q));
            }
        }
    }

    pub(super) fn unsubscribe(&self, client_id: &str, conn: u64, filters: &[String]) {
        if let Some(s) = self.lock().get_mut(client_id).filter(|s| s.conn == conn) {
            s.filters.retain(|(g, _)| !filters.contains(g));
        }
    }

    /// Queues `payload` on `topic` to every session with a matching filter, at the highest
    /// QoS granted among its matching filters; returns how many sessions took it.
    pub(crate) fn deliver(&self, topic: &str, payload: Bytes) -> usize {
        let mut n = 0;
        for s in self.lock().values() {
            let qos = s
                .filters
                .iter()
                .filter(|(f, _)| codec::matches(topic, f))
                .map(|(_, q)| *q)
                .fold(None, |best: Option<QoS>, q| match best {
                    Some(b) if b >= q => Some(b),
                    _ => Some(q),
                });
            if let Some(qos) = qos {
                let out = Outgoing {
                    topic: topic.to_string(),
                    payload: payload.clone(),
                    qos,
                };
                if s.tx.try_send(out).is_ok() {
                    n += 1;
                }
            }
        }
        n
    }
}
