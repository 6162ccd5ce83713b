//! The I/O shell around [`Receiver`]: a TCP listener and a UDP socket on one address, one
//! task per TCP connection, and a supervision tick. Events of a frame go through the
//! [`EventSink`] and are committed to the outbox *before* its ACK is sent. While outbox
//! writes fail the answer waits (the writer retries; a panel that gives up sends again and
//! is ACKed as a duplicate once the first copy is in); if the writer has stopped the frame
//! gets a NAK, so the panel sends it again.
//!
//! No connection can lock panels out: one without a complete frame for `idle_timeout_s` is
//! closed, one source holds at most `max_connections_per_source`, and at `max_connections` a
//! newcomer takes the place of the longest idle (see [`super::conns`]). The accept and
//! receive loops keep the `dc09.tcp` and `dc09.udp` health checks: failing while accepts or
//! receives fail, and for good if a loop stops.

use std::{
    net::SocketAddr,
    sync::{Arc, atomic::Ordering::Relaxed},
    time::{Duration, Instant},
};

use futures::{FutureExt, future::BoxFuture};
use gatehouse_proto::{self as pb, DeviceStatus, event::Body};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream, UdpSocket},
    sync::{Mutex, mpsc},
    task::JoinSet,
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{
    config::{Dc09DeviceConfig, Dc09Section},
    conns::{Closed, Conns},
    frame::{self, Split},
    rate::FrameRate,
    receiver::{AccountConfig, Outcome, Receiver, Verdict},
};
use crate::{
    adapters::{
        AdapterContext, CommandRequest, CommandTx, EventSink, SinkClosed, command_result, log_limit::LogLimiter,
    },
    health::{Check, Severity},
};

#[derive(Debug, thiserror::Error)]
pub enum Dc09Error {
    #[error("binding the DC-09 {transport} port {addr}: {source}")]
    Bind {
        transport: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("device {device:?}: {detail}")]
    Key { device: String, detail: String },
}

/// The accounts of the DC-09 fire panels (device id, `[devices.dc09]` table).
pub fn accounts<'a>(
    panels: impl IntoIterator<Item = (&'a str, &'a Dc09DeviceConfig)>,
) -> Result<Vec<AccountConfig>, Dc09Error> {
    let mut out = Vec::new();
    for (id, dc09) in panels {
        let key = dc09.key().map_err(|detail| Dc09Error::Key {
            device: id.to_string(),
            detail,
        })?;
        out.push(AccountConfig {
            account: dc09.account.clone(),
            device_id: id.to_string(),
            key,
            supervision_ms: i64::try_from(dc09.supervision_s.saturating_mul(1000)).unwrap_or(i64::MAX),
        });
    }
    Ok(out)
}

struct Shell {
    ctx: AdapterContext,
    receiver: Mutex<Receiver>,
    log_limit: std::sync::Mutex<LogLimiter>,
    conns: Conns,
    rate: std::sync::Mutex<FrameRate>,
    max_frame_bytes: usize,
    idle: Duration,
}

/// Binds TCP and UDP on `section.listen` (port 0: any free port, the same for both), and
/// returns the bound address, the channel that answers commands for DC-09 panels (which
/// cannot take any: DC-09 only reports), and the receiver's tasks.
pub(super) async fn start(
    ctx: AdapterContext,
    section: &Dc09Section,
    panels: &[(String, Dc09DeviceConfig)],
    shutdown: CancellationToken,
) -> Result<(SocketAddr, CommandTx, Vec<BoxFuture<'static, ()>>), Dc09Error> {
    let accounts = accounts(panels.iter().map(|(id, c)| (id.as_str(), c)))?;
    let (tcp, udp) = bind(section.listen).await?;
    let addr = tcp.local_addr().unwrap_or(section.listen);
    info!(%addr, accounts = accounts.len(), "DC-09 receiver listening (TCP and UDP)");
    let tcp_check = ctx.health.register("dc09.tcp", Severity::Live);
    let udp_check = ctx.health.register("dc09.udp", Severity::Live);
    let shell = Arc::new(Shell {
        receiver: Mutex::new(Receiver::new(accounts, pb::now_ms())),
        ctx,
        log_limit: std::sync::Mutex::new(LogLimiter::default()),
        conns: Conns::new(section.max_connections, section.max_connections_per_source),
        rate: std::sync::Mutex::new(FrameRate::new(section.max_frames_per_s, section.frame_burst)),
        max_frame_bytes: section.max_frame_bytes,
        idle: Duration::from_secs(section.idle_timeout_s),
    });
    let (tx, rx) = mpsc::channel(16);
    let tasks = vec![
        serve_tcp(shell.clone(), tcp, tcp_check, shutdown.clone()).boxed(),
        serve_udp(shell.clone(), udp, udp_check, shutdown.clone()).boxed(),
        supervise(shell, shutdown.clone()).boxed(),
        refuse_commands(rx, shutdown).boxed(),
    ];
    Ok((addr, tx, tasks))
}

async fn bind(listen: SocketAddr) -> Result<(TcpListener, UdpSocket), Dc09Error> {
    let mut attempts = 0;
    loop {
        let tcp = TcpListener::bind(listen).await.map_err(|source| Dc09Error::Bind {
            transport: "TCP",
            addr: listen,
            source,
        })?;
        let at = tcp.local_addr().unwrap_or(listen);
        match UdpSocket::bind(at).await {
            Ok(udp) => return Ok((tcp, udp)),
            // Port 0 picked a TCP port whose UDP twin is taken: pick again.
            Err(_) if listen.port() == 0 && attempts < 10 => attempts += 1,
            Err(source) => {
                return Err(Dc09Error::Bind {
                    transport: "UDP",
                    addr: at,
                    source,
                });
            }
        }
    }
}

impl Shell {
    /// One frame in, its answer out (after committing its events); nothing when it is longer
    /// than `max_frame_bytes` or its source is over its frame rate (dropped before it takes
    /// the receiver's lock).
    async fn process(&self, bytes: &[u8], transport: &'static str, peer: SocketAddr) -> Option<Vec<u8>> {
        let metrics = &self.ctx.metrics;
        if bytes.len() > self.max_frame_bytes {
            metrics.dc09_oversized.fetch_add(1, Relaxed);
            self.log_limited(&format!("size:{}", peer.ip()), || warn!(%peer, %transport, bytes = bytes.len(), limit = self.max_frame_bytes,
                "DC-09 frame dropped unanswered: longer than dc09.max_frame_bytes (counted; logged at most once a minute per address)"));
            return None;
        }
        let within = self
            .rate
            .lock()
            .map(|mut r| r.allow(peer.ip(), Instant::now()))
            .unwrap_or(true);
        if !within {
            metrics.dc09_rate_limited.fetch_add(1, Relaxed);
            self.log_limited(&format!("rate:{}", peer.ip()), || warn!(%peer, %transport,
                "DC-09 frame dropped unanswered: its address is over dc09.max_frames_per_s (counted; logged at most once a minute per address)"));
            return None;
        }
        let mut receiver = self.receiver.lock().await;
        let now = pb::now_ms();
        let mut pad = || fastrand::u8(0x21..0x7F);
        let outcome = receiver.handle(bytes, now, &mut pad);
        metrics.dc09_frame(outcome.verdict);
        let Outcome {
            verdict,
            reply,
            accepted,
            detail,
            account,
        } = outcome;
        let Some(accepted) = accepted else {
            self.log_refusal(verdict, detail.as_deref(), account.as_deref(), transport, peer);
            return reply;
        };
        let mut events = Vec::with_capacity(accepted.signals.len() + 1);
        let device = self.ctx.registry.get(&accepted.device_id);
        if let Some(device) = device {
            if accepted.came_online {
                events.push(self.ctx.registry.event(
                    device,
                    now,
                    now,
                    Body::Status(DeviceStatus {
                        online: true,
                        reason: format!("DC-09 account {} reporting", accepted.account),
                    }),
                ));
            }
            for s in &accepted.signals {
                if s.kind.is_none() {
                    metrics.dc09_unmapped.fetch_add(1, Relaxed);
                }
                info!(device = %device.id, account = %accepted.account, seq = %accepted.seq, zone = %s.zone,
                    raw_code = %s.raw_code, kind = s.kind.map_or("unmapped", |k| k.as_str()), %transport, "DC-09 event");
                events.push(self.ctx.registry.event(device, accepted.occurred_ms, now, s.body()));
            }
        }
        if !events.is_empty() {
            if let Err(e) = commit_all(&self.ctx.sink, events).await {
                // Not stored: do not ACK. The NAK makes the panel send it again.
                metrics.dc09_store_failures.fetch_add(1, Relaxed);
                warn!(account = %accepted.account, seq = %accepted.seq, error = %e, "DC-09 frame not stored; answered NAK so the panel retries");
                return Some(frame::nak(now));
            }
            metrics.dc09_events.fetch_add(accepted.signals.len() as u64, Relaxed);
        }
        if verdict == Verdict::Duplicate {
            debug!(account = %accepted.account, seq = %accepted.seq, "DC-09 repeat of an accepted frame; ACKed again, not stored twice");
        }
        receiver.commit(&accepted, now);
        metrics
            .dc09_panels_offline
            .store(receiver.offline_count() as u64, Relaxed);
        reply
    }

    /// Runs `log` at most once a minute per `key`.
    fn log_limited(&self, key: &str, log: impl FnOnce()) {
        let allowed = self
            .log_limit
            .lock()
            .map(|mut l| l.allow(key, Instant::now()))
            .unwrap_or(false);
        if allowed {
            log();
        }
    }

    fn log_refusal(
        &self,
        verdict: Verdict,
        detail: Option<&str>,
        account: Option<&str>,
        transport: &str,
        peer: SocketAddr,
    ) {
        let key = account.map_or_else(|| peer.ip().to_string(), str::to_string);
        let allowed = self
            .log_limit
            .lock()
            .map(|mut l| l.allow(&key, Instant::now()))
            .unwrap_or(false);
        if allowed {
            warn!(%peer, %transport, verdict = verdict.as_str(), answer = verdict.answer().map_or("none", |t| t.as_str()),
                detail = detail.unwrap_or(""), "DC-09 frame refused (further refusals from this sender are counted, and logged at most once a minute)");
        }
    }
}

/// Fails its check when dropped before shutdown: the loop holding it has stopped (returned
/// or panicked), so the listener is dead though the process lives on.
struct LoopAlive {
    check: Check,
    shutdown: CancellationToken,
}

impl Drop for LoopAlive {
    fn drop(&mut self) {
        if !self.shutdown.is_cancelled() {
            self.check.fail("the listener's loop has stopped");
        }
    }
}

async fn serve_tcp(shell: Arc<Shell>, listener: TcpListener, check: Check, shutdown: CancellationToken) {
    let _alive = LoopAlive {
        check: check.clone(),
        shutdown: shutdown.clone(),
    };
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    check.ok();
                    let metrics = &shell.ctx.metrics.dc09_conns;
                    let Some(admitted) = shell.conns.admit(peer.ip(), Instant::now(), metrics) else {
                        shell.log_limited(&format!("conn:{}", peer.ip()), || warn!(%peer, reason = Closed::PerSourceCap.as_str(),
                            "DC-09 TCP connection refused: its address holds the most allowed (counted; logged at most once a minute per address)"));
                        continue;
                    };
                    if let Some(evicted) = admitted.evicted {
                        shell.log_limited("conn:evicted", || warn!(%peer, %evicted, reason = Closed::Evicted.as_str(),
                            "DC-09 TCP connections at their cap: closed the one idle longest to make room (counted; logged at most once a minute)"));
                    }
                    let _ = stream.set_nodelay(true);
                    let shell = shell.clone();
                    let shutdown = shutdown.clone();
                    connections.spawn(async move {
                        let id = admitted.id;
                        serve_connection(&shell, stream, peer, id, admitted.close, shutdown).await;
                        shell.conns.remove(id, &shell.ctx.metrics.dc09_conns);
                    });
                }
                Err(e) => {
                    // Out of descriptors, typically: intake is broken while this lasts.
                    check.fail(format!("accepting TCP connections fails: {e}"));
                    shell.log_limited("accept", || warn!(error = %e, "DC-09 accept failed"));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    connections.shutdown().await;
}

async fn serve_connection(
    shell: &Shell,
    mut stream: TcpStream,
    peer: SocketAddr,
    id: u64,
    evicted: CancellationToken,
    shutdown: CancellationToken,
) {
    debug!(%peer, "DC-09 TCP connection");
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    // Idle means no complete frame: a peer trickling bytes that never make a frame is idle.
    let mut idle_until = tokio::time::Instant::now() + shell.idle;
    loop {
        // Answer every complete frame already buffered.
        loop {
            match frame::split(&buf) {
                Split::NeedMore => break,
                Split::Skip { len, garbage } => {
                    if garbage > 0 {
                        shell.ctx.metrics.dc09_frame(Verdict::Malformed);
                    }
                    buf.drain(..len);
                }
                Split::Frame(len) => {
                    let reply = shell.process(&buf[..len], "tcp", peer).await;
                    buf.drain(..len);
                    idle_until = tokio::time::Instant::now() + shell.idle;
                    shell.conns.frame(id, Instant::now());
                    if let Some(reply) = reply
                        && let Err(e) = stream.write_all(&reply).await
                    {
                        debug!(%peer, error = %e, "DC-09 answer not delivered");
                        return;
                    }
                }
            }
        }
        let read = tokio::select! {
            () = shutdown.cancelled() => return,
            () = evicted.cancelled() => {
                debug!(%peer, "DC-09 TCP connection closed to make room for a new one");
                return;
            }
            () = tokio::time::sleep_until(idle_until) => {
                shell.ctx.metrics.dc09_conns.count(Closed::Idle);
                debug!(%peer, idle_s = shell.idle.as_secs(), "DC-09 TCP connection closed: no frame within the idle timeout");
                return;
            }
            r = stream.read(&mut chunk) => r,
        };
        match read {
            Ok(0) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => {
                debug!(%peer, error = %e, "DC-09 TCP read failed");
                return;
            }
        }
    }
}

async fn serve_udp(shell: Arc<Shell>, socket: UdpSocket, check: Check, shutdown: CancellationToken) {
    let _alive = LoopAlive {
        check: check.clone(),
        shutdown: shutdown.clone(),
    };
    let mut datagram = vec![0u8; 65_536];
    loop {
        let received = tokio::select! {
            () = shutdown.cancelled() => break,
            r = socket.recv_from(&mut datagram) => r,
        };
        match received {
            Ok((n, peer)) => {
                check.ok();
                if let Some(reply) = shell.process(&datagram[..n], "udp", peer).await
                    && let Err(e) = socket.send_to(&reply, peer).await
                {
                    debug!(%peer, error = %e, "DC-09 UDP answer not sent");
                }
            }
            Err(e) => {
                check.fail(format!("receiving UDP datagrams fails: {e}"));
                shell.log_limited("udp", || warn!(error = %e, "DC-09 UDP receive failed"));
                // Whatever broke the socket, do not spin on it.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Every second: panels silent past their supervision interval are reported offline.
async fn supervise(shell: Arc<Shell>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        let mut receiver = shell.receiver.lock().await;
        let now = pb::now_ms();
        let silent = receiver.supervise(now);
        if silent.is_empty() {
            continue;
        }
        let events: Vec<pb::Event> = silent
            .iter()
            .filter_map(|(device_id, reason)| {
                warn!(device = %device_id, %reason, "DC-09 panel offline");
                let device = shell.ctx.registry.get(device_id)?;
                Some(shell.ctx.registry.event(
                    device,
                    now,
                    now,
                    Body::Status(DeviceStatus {
                        online: false,
                        reason: reason.clone(),
                    }),
                ))
            })
            .collect();
        let lost = events.len();
        if let Err(e) = commit_all(&shell.ctx.sink, events).await {
            // The panels stay marked offline here; the events are retried by nobody,
            // so say so loudly.
            shell.ctx.metrics.dc09_store_failures.fetch_add(1, Relaxed);
            warn!(error = %e, lost, "DC-09 offline status not stored");
        }
        shell
            .ctx
            .metrics
            .dc09_panels_offline
            .store(receiver.offline_count() as u64, Relaxed);
    }
}

/// Hands `events` to the outbox in order and returns once all are committed: the ACK (or
/// the offline report) follows this. An event over `uplink.max_event_bytes` is refused by
/// the sink (counted, logged) like any adapter's.
async fn commit_all(sink: &EventSink, events: Vec<pb::Event>) -> Result<(), SinkClosed> {
    let mut commits = Vec::with_capacity(events.len());
    for event in events {
        commits.push(sink.enqueue(event).await?);
    }
    for commit in commits {
        commit.wait().await?;
    }
    Ok(())
}

async fn refuse_commands(mut rx: mpsc::Receiver<CommandRequest>, shutdown: CancellationToken) {
    loop {
        let request = tokio::select! {
            () = shutdown.cancelled() => break,
            r = rx.recv() => r,
        };
        let Some(CommandRequest { command, reply }) = request else {
            break;
        };
        let _ = reply.send(command_result(
            &command,
            false,
            format!(
                "device {:?} reports over SIA DC-09, which carries no commands: {:?} must be done at the panel",
                command.device_id, command.action
            ),
        ));
    }
}
