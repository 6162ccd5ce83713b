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
//! - **Who** (`auth.rs`, `tls.rs`): every CONNECT logs in — username = device id with the
//!   password of its `mqtt_password_hash` (argon2), or a TLS client certificate whose CN is
//!   the device id — unless `mqtt.allow_anonymous` (loopback only). Refusals: wrong or
//!   unknown credentials → 0x04; none, or a source in its failed-login backoff, or a will
//!   outside the device's topics → 0x05. Counted per reason, logged once a minute per source.
//! - **What** (`acl.rs`): a device publishes only on its own topics and subscribes only to
//!   its own command topic; a publish outside them is acknowledged and dropped (counted), a
//!   subscription outside them gets SUBACK 0x80. Nobody publishes on a command topic.
//! - **A client id in use is taken over**, within one device: a session's key is the client
//!   id scoped to the device that logged in, so no device can take another's session over.
//!   Besides: the older connection is closed (its will is
//!   discarded: its client id is connected again) and nothing else is affected. No client id
//!   is special: the gateway has no in-process link to collide with.
//! - **Last will**: after an abnormal close (no DISCONNECT: reset, keep-alive, malformed
//!   packet) the will is handled as if the device had published it, through the same intake.
//! - **Limits** (`limits.rs`): pending connections, connections per source address, and
//!   strangers (every connection but a device's own session, whose client id is the device
//!   id it logged in as — or, anonymous, a configured device's id); devices always have
//!   room. Every refusal and every close by the gateway is counted by reason.
//! - **Health**: `mqtt.listener` fails while accepting fails; `mqtt.intake` fails while a
//!   publish has waited longer than `mqtt.commit_wait_alarm_ms` for its commit.

use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::{FutureExt, future::BoxFuture};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use tokio_rustls::TlsAcceptor;

use super::{
    auth::{Credentials, FailureLimiter},
    config::MqttSection,
    connection,
    intake::Intake,
    limits::{Admission, Caps},
    sessions::Sessions,
    shared::{Shared, Waits},
};
use crate::health::{Check, Severity};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("binding the MQTT listener on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error(transparent)]
    Tls(#[from] super::tls::TlsError),
}

/// Binds `section.listen`; returns the bound address and the server's tasks (the accept
/// loop and the commit watch), which serve until `shutdown`.
pub(super) async fn start(
    intake: Arc<Intake>,
    section: MqttSection,
    sessions: Sessions,
    devices: HashSet<String>,
    passwords: HashMap<String, String>,
    shutdown: CancellationToken,
) -> Result<(SocketAddr, Vec<BoxFuture<'static, ()>>), ServerError> {
    let tls = section.tls.as_ref().map(super::tls::acceptor).transpose()?;
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
        sessions,
        devices,
        waits: Waits::default(),
        log_limit: Default::default(),
        credentials: Credentials::new(passwords),
        failures: Mutex::new(FailureLimiter::new(
            section.auth_max_failures,
            Duration::from_secs(section.auth_failure_window_s),
            Duration::from_secs(section.auth_backoff_s),
        )),
        section,
    });
    let tasks = vec![
        watch_commits(shared.clone(), intake_check, shutdown.clone()).boxed(),
        accept_loop(listener, tls, admission, shared, listener_check, shutdown).boxed(),
    ];
    Ok((addr, tasks))
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
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
            tls.clone(),
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
