//! One client connection: CONNECT, then publishes in (each acknowledged after its outbox
//! commit, in order, at most `mqtt.max_inflight` awaiting), commands out. The contract is
//! in `shell.rs`.

use std::{collections::HashSet, net::SocketAddr, sync::Arc, time::Duration};

use bytes::BytesMut;
use futures::{FutureExt, StreamExt, future::BoxFuture, stream::FuturesOrdered};
use rumqttc::mqttbytes::{
    QoS,
    v4::{
        ConnAck, ConnectReturnCode, LastWill, Packet, PubAck, PubComp, PubRec, Publish, SubAck, SubscribeReasonCode,
        UnsubAck,
    },
};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpStream,
    sync::mpsc,
    time::{Instant, sleep_until, timeout},
};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::{
    acl::{self, Identity},
    auth::Denied,
    codec::{self, DecodeError},
    limits::Ticket,
    sessions::Outgoing,
    shared::{Shared, Waits},
    tls,
};
use crate::metrics::{MqttClose, MqttDenial, MqttRefusal};

/// The reading and writing halves of a connection, plain TCP or TLS.
type Rd = Box<dyn AsyncRead + Unpin + Send>;
type Wr = Box<dyn AsyncWrite + Unpin + Send>;

/// Commands queued for one client before further ones fail.
const OUTGOING_QUEUE: usize = 64;

/// What a publish's wait resolves to: the ack to send, if any.
enum Done {
    Ack(QoS, u16),
    /// The outbox writer stopped: the publish was not stored and must not be acknowledged.
    Stopped,
}

/// How a connection ended.
enum End {
    /// DISCONNECT: the will is discarded.
    Clean,
    /// The client went away (EOF, reset, write failure): the will is published.
    Gone,
    /// The gateway closed it.
    Closed(MqttClose),
    /// The gateway is stopping: the will is discarded (nothing could store it).
    Shutdown,
}

struct OpenGauge(Arc<Shared>);

impl OpenGauge {
    fn new(shared: &Arc<Shared>) -> Self {
        shared
            .metrics
            .mqtt_connections
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Self(shared.clone())
    }
}

impl Drop for OpenGauge {
    fn drop(&mut self) {
        let _ = self.0.metrics.mqtt_connections.fetch_update(
            std::sync::atomic::Ordering::Relaxed,
            std::sync::atomic::Ordering::Relaxed,
            |n| Some(n.saturating_sub(1)),
        );
    }
}

/// The TLS handshake (within the CONNECT wait), or the plain socket: the halves, and the
/// device a verified client certificate names.
async fn open(
    stream: TcpStream,
    tls_acceptor: Option<TlsAcceptor>,
    within: Duration,
) -> Result<(Rd, Wr, Option<String>), String> {
    let _ = stream.set_nodelay(true);
    let Some(acceptor) = tls_acceptor else {
        let (rd, wr) = stream.into_split();
        return Ok((Box::new(rd), Box::new(wr), None));
    };
    let tls = match timeout(within, acceptor.accept(stream)).await {
        Err(_) => return Err("no TLS handshake in time".into()),
        Ok(Err(e)) => return Err(e.to_string()),
        Ok(Ok(t)) => t,
    };
    let device = tls::peer_device(tls.get_ref().1);
    let (rd, wr) = tokio::io::split(tls);
    Ok((Box::new(rd), Box::new(wr), device))
}

pub(super) async fn serve(
    stream: TcpStream,
    tls_acceptor: Option<TlsAcceptor>,
    peer: SocketAddr,
    mut ticket: Ticket,
    shared: Arc<Shared>,
    conn: u64,
    close: CancellationToken,
) {
    let _open = OpenGauge::new(&shared);
    let section = &shared.section;
    let max_packet = section.max_packet_bytes;
    let mut buf = BytesMut::with_capacity(4096);

    let connect_wait = Duration::from_millis(section.connect_timeout_ms);
    let opened = tokio::select! {
        _ = close.cancelled() => return,
        o = open(stream, tls_acceptor, connect_wait) => o,
    };
    let (mut rd, mut wr, cert_device) = match opened {
        Ok(o) => o,
        Err(detail) => return shared.refused(MqttRefusal::TlsHandshake, peer, &detail),
    };
    let first = tokio::select! {
        _ = close.cancelled() => return,
        r = timeout(connect_wait, read_packet(&mut rd, &mut buf, max_packet)) => r,
    };
    let connect = match first {
        Err(_) => return closed(&shared, MqttClose::ConnectTimeout, peer, "no CONNECT in time"),
        Ok(Ok(Some(Packet::Connect(c)))) => c,
        Ok(Ok(None)) | Ok(Err(ReadError::Io)) => return,
        Ok(Ok(Some(_))) => return closed(&shared, MqttClose::Malformed, peer, "first packet is not CONNECT"),
        Ok(Err(ReadError::Decode(DecodeError::BadProtocol(detail)))) => {
            shared.refused(MqttRefusal::BadProtocol, peer, &detail);
            let _ = write(
                &mut wr,
                &connack(ConnectReturnCode::RefusedProtocolVersion),
                connect_wait,
            )
            .await;
            return;
        }
        Ok(Err(ReadError::Decode(DecodeError::TooLarge(_)))) => {
            return closed(
                &shared,
                MqttClose::PacketTooLarge,
                peer,
                "CONNECT over the packet limit",
            );
        }
        Ok(Err(ReadError::Decode(DecodeError::Malformed(detail)))) => {
            return closed(&shared, MqttClose::Malformed, peer, &detail);
        }
    };

    let client_id = if connect.client_id.is_empty() {
        if !connect.clean_session {
            shared.refused(
                MqttRefusal::IdentifierRejected,
                peer,
                "empty client id without clean session",
            );
            let _ = write(&mut wr, &connack(ConnectReturnCode::BadClientId), connect_wait).await;
            return;
        }
        format!("(anonymous #{conn})")
    } else {
        connect.client_id.clone()
    };
    // Verifications queue behind a small pool (auth.rs); a login still waiting after the
    // CONNECT wait is closed like a CONNECT that never came.
    let verdict = tokio::select! {
        _ = close.cancelled() => return,
        v = timeout(connect_wait, shared.authenticate(connect.login.as_ref(), cert_device, peer)) => v,
    };
    let Ok(verdict) = verdict else {
        return closed(
            &shared,
            MqttClose::ConnectTimeout,
            peer,
            "login not checked in time (verifications queued)",
        );
    };
    let identity = match verdict {
        Ok(i) => i,
        Err(denied) => {
            let (why, code) = match denied {
                Denied::NoCredentials => (MqttRefusal::NoCredentials, ConnectReturnCode::NotAuthorized),
                Denied::BadPassword => (MqttRefusal::BadCredentials, ConnectReturnCode::BadUserNamePassword),
                Denied::CertMismatch => (MqttRefusal::CertMismatch, ConnectReturnCode::BadUserNamePassword),
                Denied::RateLimited => (MqttRefusal::AuthRateLimited, ConnectReturnCode::NotAuthorized),
            };
            shared.refused_login(why, peer, &client_id);
            let _ = write(&mut wr, &connack(code), connect_wait).await;
            return;
        }
    };
    if let Some(will) = &connect.last_will
        && acl::may_publish(&identity, &will.topic, shared.intake.vendors()).is_err()
    {
        shared.refused(
            MqttRefusal::WillNotAuthorized,
            peer,
            &format!("client id {client_id:?}: last will on {:?}", will.topic),
        );
        let _ = write(&mut wr, &connack(ConnectReturnCode::NotAuthorized), connect_wait).await;
        return;
    }
    // A device's own session (client id = device id) has room of its own; anything else
    // shares the strangers' pool.
    let own_session = match &identity {
        Identity::Device(d) => *d == client_id,
        Identity::Anonymous => shared.devices.contains(&client_id),
    };
    // Client ids are scoped to the device that logged in: one device cannot take another's
    // session over by using its client id.
    let session_key = match &identity {
        Identity::Device(d) => format!("{}:{d}:{client_id}", d.len()),
        Identity::Anonymous => client_id.clone(),
    };
    if let Err(why) = ticket.connected(own_session) {
        shared.refused(why, peer, &format!("client id {client_id:?}"));
        let _ = write(&mut wr, &connack(ConnectReturnCode::ServiceUnavailable), connect_wait).await;
        return;
    }
    let window = if connect.keep_alive == 0 {
        Duration::from_secs(section.idle_timeout_s.max(1))
    } else {
        Duration::from_millis(u64::from(connect.keep_alive) * 1500)
    };
    let (out_tx, out_rx) = mpsc::channel(OUTGOING_QUEUE);
    shared
        .sessions
        .open(&session_key, identity.clone(), conn, out_tx, close.clone());
    let mut session = Session {
        shared: shared.clone(),
        client_id,
        session_key,
        identity,
        conn,
        peer,
        window,
        inflight: FuturesOrdered::new(),
        awaiting_release: HashSet::new(),
        next_pkid: 0,
        unacked_out: HashSet::new(),
    };
    let end = if write(&mut wr, &connack(ConnectReturnCode::Success), window)
        .await
        .is_err()
    {
        End::Gone
    } else {
        session.run(&mut rd, &mut wr, &mut buf, out_rx, &close).await
    };
    shared.sessions.close(&session.session_key, conn);
    drop(ticket);
    match end {
        End::Clean | End::Shutdown => {}
        End::Closed(MqttClose::TakenOver | MqttClose::IntakeStopped) => {}
        End::Gone | End::Closed(_) => {
            if let Some(will) = connect.last_will {
                session.publish_will(will).await;
            }
        }
    }
}

fn closed(shared: &Shared, why: MqttClose, peer: SocketAddr, detail: &str) {
    shared.metrics.mqtt_closed(why);
    if shared.log_allowed(why.as_str()) {
        tracing::warn!(peer = %peer, reason = why.as_str(), detail,
            "MQTT connection closed by the gateway (counted on /metrics; logged at most once a minute per reason)");
    }
}

fn connack(code: ConnectReturnCode) -> Packet {
    Packet::ConnAck(ConnAck::new(code, false))
}

enum ReadError {
    Io,
    Decode(DecodeError),
}

/// Reads until one whole packet is buffered; `None` at a clean EOF.
async fn read_packet(rd: &mut Rd, buf: &mut BytesMut, max: usize) -> Result<Option<Packet>, ReadError> {
    loop {
        if let Some(p) = codec::read_packet(buf, max).map_err(ReadError::Decode)? {
            return Ok(Some(p));
        }
        match rd.read_buf(buf).await {
            Ok(0) => return Ok(None),
            Ok(_) => {}
            Err(_) => return Err(ReadError::Io),
        }
    }
}

/// Writes one packet; a client that does not read within `within` is as gone as one that
/// does not send.
async fn write(wr: &mut Wr, packet: &Packet, within: Duration) -> Result<(), ()> {
    let mut out = BytesMut::with_capacity(packet.size());
    packet.write(&mut out, usize::MAX).map_err(|_| ())?;
    match timeout(within, wr.write_all(&out)).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}

struct Session {
    shared: Arc<Shared>,
    client_id: String,
    /// The key of this session in [`Sessions`](super::sessions::Sessions): the client id,
    /// scoped to the device that logged in.
    session_key: String,
    identity: Identity,
    conn: u64,
    peer: SocketAddr,
    window: Duration,
    inflight: FuturesOrdered<BoxFuture<'static, Done>>,
    /// QoS 2 packet ids PUBRECed and not yet released.
    awaiting_release: HashSet<u16>,
    next_pkid: u16,
    unacked_out: HashSet<u16>,
}

impl Session {
    async fn run(
        &mut self,
        rd: &mut Rd,
        wr: &mut Wr,
        buf: &mut BytesMut,
        mut out_rx: mpsc::Receiver<Outgoing>,
        close: &CancellationToken,
    ) -> End {
        let max_inflight = self.shared.section.max_inflight.max(1);
        let max_packet = self.shared.section.max_packet_bytes;
        let mut deadline = Instant::now() + self.window;
        loop {
            // Handle what is buffered, as far as the inflight bound allows.
            while self.inflight.len() < max_inflight {
                match codec::read_packet(buf, max_packet) {
                    Ok(Some(p)) => {
                        deadline = Instant::now() + self.window;
                        match self.on_packet(p, wr).await {
                            Ok(true) => {}
                            Ok(false) => return End::Clean,
                            Err(end) => return end,
                        }
                    }
                    Ok(None) => break,
                    Err(e) => return self.decode_failed(e),
                }
            }
            let reading = self.inflight.len() < max_inflight;
            if !reading {
                // Back pressure: the client cannot be blamed for silence we impose.
                deadline = Instant::now() + self.window;
            }
            tokio::select! {
                biased;
                _ = close.cancelled() => {
                    if self.shared.sessions.holds(&self.session_key, self.conn) {
                        return End::Shutdown;
                    }
                    closed(&self.shared, MqttClose::TakenOver, self.peer, &format!("client id {:?} connected again", self.client_id));
                    return End::Closed(MqttClose::TakenOver);
                }
                Some(done) = self.inflight.next(), if !self.inflight.is_empty() => {
                    let ack = match done {
                        Done::Ack(QoS::AtMostOnce, _) => None,
                        Done::Ack(QoS::AtLeastOnce, pkid) => Some(Packet::PubAck(PubAck::new(pkid))),
                        Done::Ack(QoS::ExactlyOnce, pkid) => {
                            self.awaiting_release.insert(pkid);
                            Some(Packet::PubRec(PubRec::new(pkid)))
                        }
                        Done::Stopped => {
                            closed(&self.shared, MqttClose::IntakeStopped, self.peer, "the outbox writer stopped");
                            return End::Closed(MqttClose::IntakeStopped);
                        }
                    };
                    if let Some(ack) = ack
                        && write(wr, &ack, self.window).await.is_err()
                    {
                        return End::Gone;
                    }
                }
                Some(out) = out_rx.recv() => {
                    if let Err(end) = self.send(out, wr).await {
                        return end;
                    }
                }
                r = rd.read_buf(buf), if reading => match r {
                    Ok(0) | Err(_) => return End::Gone,
                    Ok(_) => {}
                },
                _ = sleep_until(deadline), if reading => {
                    closed(&self.shared, MqttClose::KeepAlive, self.peer,
                        &format!("client id {:?} silent past its keep-alive", self.client_id));
                    return End::Closed(MqttClose::KeepAlive);
                }
            }
        }
    }

    fn decode_failed(&self, e: DecodeError) -> End {
        let why = match e {
            DecodeError::TooLarge(_) => MqttClose::PacketTooLarge,
            _ => MqttClose::Malformed,
        };
        closed(
            &self.shared,
            why,
            self.peer,
            &format!("client id {:?}: {e}", self.client_id),
        );
        End::Closed(why)
    }

    /// Handles one packet after CONNECT; `Ok(false)` on DISCONNECT.
    async fn on_packet(&mut self, p: Packet, wr: &mut Wr) -> Result<bool, End> {
        let reply = match p {
            Packet::Publish(p) => {
                self.on_publish(p).await?;
                None
            }
            Packet::PubRel(r) => {
                self.awaiting_release.remove(&r.pkid);
                Some(Packet::PubComp(PubComp::new(r.pkid)))
            }
            Packet::PubAck(a) => {
                self.unacked_out.remove(&a.pkid);
                None
            }
            Packet::Subscribe(s) => {
                let mut granted: Vec<(String, QoS)> = Vec::new();
                let mut codes = Vec::with_capacity(s.filters.len());
                for f in s.filters {
                    if !acl::may_subscribe(&self.identity, &f.path) {
                        self.denied(MqttDenial::SubscribeNotOwn, &f.path);
                        codes.push(SubscribeReasonCode::Failure);
                        continue;
                    }
                    // Commands go out at QoS 1 at most.
                    let qos = if f.qos == QoS::AtMostOnce {
                        QoS::AtMostOnce
                    } else {
                        QoS::AtLeastOnce
                    };
                    codes.push(SubscribeReasonCode::Success(qos));
                    granted.push((f.path, qos));
                }
                self.shared.sessions.subscribe(&self.session_key, self.conn, granted);
                Some(Packet::SubAck(SubAck::new(s.pkid, codes)))
            }
            Packet::Unsubscribe(u) => {
                self.shared
                    .sessions
                    .unsubscribe(&self.session_key, self.conn, &u.topics);
                Some(Packet::UnsubAck(UnsubAck::new(u.pkid)))
            }
            Packet::PingReq => Some(Packet::PingResp),
            Packet::Disconnect => return Ok(false),
            Packet::PubRec(r) => {
                // We never send QoS 2; answer so that a confused client is not stuck.
                Some(Packet::PubRel(rumqttc::mqttbytes::v4::PubRel::new(r.pkid)))
            }
            Packet::PubComp(_) => None,
            Packet::Connect(_) | Packet::ConnAck(_) | Packet::SubAck(_) | Packet::UnsubAck(_) | Packet::PingResp => {
                return Err(self.decode_failed(DecodeError::Malformed(
                    "a packet only a server sends, or a second CONNECT".into(),
                )));
            }
        };
        if let Some(reply) = reply
            && write(wr, &reply, self.window).await.is_err()
        {
            return Err(End::Gone);
        }
        Ok(true)
    }

    /// Translates, enqueues for the outbox (in order) and queues the ack behind the commit.
    async fn on_publish(&mut self, p: Publish) -> Result<(), End> {
        if let Err(refusal) = acl::may_publish(&self.identity, &p.topic, self.shared.intake.vendors()) {
            // MQTT 3.1.1 (3.3.5) lets a server either acknowledge an unauthorised publish
            // as usual or close the connection. We drop it and acknowledge: closing would
            // publish the device's will (a false "offline") and, with a reconnecting
            // client, cut off its own events in a loop; the refusal is counted instead.
            let why = match refusal {
                acl::Refusal::CommandTopic => MqttDenial::PublishCommandTopic,
                acl::Refusal::NotOwnTopic => MqttDenial::PublishNotOwn,
            };
            self.denied(why, &p.topic);
            self.inflight
                .push_back(futures::future::ready(Done::Ack(p.qos, p.pkid)).boxed());
            return Ok(());
        }
        if p.retain {
            self.shared
                .metrics
                .mqtt_retained_ignored
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let (qos, pkid) = (p.qos, p.pkid);
        if qos == QoS::ExactlyOnce && self.awaiting_release.contains(&pkid) {
            // A resend of a publish already stored and PUBRECed.
            self.inflight
                .push_back(futures::future::ready(Done::Ack(qos, pkid)).boxed());
            return Ok(());
        }
        let Some(event) = self.shared.intake.take(&p.topic, &p.payload) else {
            self.inflight
                .push_back(futures::future::ready(Done::Ack(qos, pkid)).boxed());
            return Ok(());
        };
        let wait = Waits::begin(&self.shared);
        match self.shared.intake.ctx.sink.enqueue(event).await {
            Ok(commit) => {
                self.inflight.push_back(
                    async move {
                        let _wait = wait;
                        match commit.wait().await {
                            Ok(()) => Done::Ack(qos, pkid),
                            Err(_) => Done::Stopped,
                        }
                    }
                    .boxed(),
                );
                Ok(())
            }
            Err(_) => {
                closed(
                    &self.shared,
                    MqttClose::IntakeStopped,
                    self.peer,
                    "the outbox writer stopped",
                );
                Err(End::Closed(MqttClose::IntakeStopped))
            }
        }
    }

    /// Counts a refusal by topic rights; logged at most once a minute per device.
    fn denied(&self, why: MqttDenial, topic: &str) {
        self.shared.metrics.mqtt_denied(why);
        let who = self.identity.device().unwrap_or("(anonymous)");
        if self.shared.log_allowed(&format!("denied:{who}")) {
            tracing::warn!(peer = %self.peer, device = who, client = %self.client_id, topic, reason = why.as_str(),
                "MQTT publish or subscription outside the device's topics refused (counted on /metrics; logged at most once a minute per device)");
        }
    }

    async fn send(&mut self, out: Outgoing, wr: &mut Wr) -> Result<(), End> {
        let mut publish = Publish::from_bytes(out.topic, out.qos, out.payload);
        if out.qos != QoS::AtMostOnce {
            if self.unacked_out.len() >= OUTGOING_QUEUE {
                tracing::warn!(client = %self.client_id, "client acknowledges no commands; command dropped");
                return Ok(());
            }
            loop {
                self.next_pkid = self.next_pkid.wrapping_add(1).max(1);
                if !self.unacked_out.contains(&self.next_pkid) {
                    break;
                }
            }
            publish.pkid = self.next_pkid;
            self.unacked_out.insert(publish.pkid);
        }
        write(wr, &Packet::Publish(publish), self.window)
            .await
            .map_err(|_| End::Gone)
    }

    /// The will of a connection that ended abnormally, handled as the device's publish.
    async fn publish_will(self, will: LastWill) {
        self.shared
            .metrics
            .mqtt_wills
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Some(event) = self.shared.intake.take(&will.topic, &will.message)
            && let Err(e) = self.shared.intake.ctx.sink.commit(event).await
        {
            tracing::error!(client = %self.client_id, error = %e, "the last will was not stored");
        }
    }
}
