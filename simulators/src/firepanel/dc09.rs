//! A DC-09 dialler: sends Contact ID or SIA DCS events and NULL polls to a receiver.

use std::{net::SocketAddr, time::Duration};

use gatehouse_gateway::adapters::dc09::{
    crypto::Key,
    frame::{self, Message, Payload, Token},
};
use gatehouse_proto as pb;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpStream, UdpSocket},
    time::timeout,
};
use tokio_util::sync::CancellationToken;

/// How the dialler reaches the receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Udp,
}

/// Which event format it speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    ContactId,
    SiaDcs,
}

/// The receiver's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Ack,
    /// Refused with the receiver's time (the dialler has already taken it).
    Nak,
    Duh,
}

#[derive(Debug, thiserror::Error)]
pub enum PanelError {
    #[error("DC-09 account {account} seq {seq}: no answer from {addr} after {tries} tries")]
    NoAnswer {
        account: String,
        seq: String,
        addr: SocketAddr,
        tries: u32,
    },
    #[error("DC-09 account {account} seq {seq}: the receiver answered DUH (it will not take this message)")]
    Refused { account: String, seq: String },
    #[error("DC-09 account {account}: {source}")]
    Io { account: String, source: std::io::Error },
}

/// Per-try wait for an answer.
const ANSWER_WAIT: Duration = Duration::from_secs(3);
/// Tries per message (the first send and the retries).
const TRIES: u32 = 3;

pub struct Dc09Panel {
    addr: SocketAddr,
    account: String,
    key: Option<Key>,
    transport: Transport,
    format: Format,
    seq: u16,
    /// Receiver clock minus ours, learnt from NAKs.
    clock_offset_ms: i64,
    tcp: Option<TcpStream>,
    udp: Option<UdpSocket>,
}

impl Dc09Panel {
    /// A dialler for `account` (3–16 hex digits), encrypting when `key` is given.
    pub fn new(addr: SocketAddr, account: &str, key: Option<Key>, transport: Transport, format: Format) -> Self {
        Self {
            addr,
            account: account.to_string(),
            key,
            transport,
            format,
            seq: 0,
            clock_offset_ms: 0,
            tcp: None,
            udp: None,
        }
    }

    /// Shifts the dialler's clock (to play a panel whose clock is wrong).
    pub fn set_clock_offset_ms(&mut self, offset: i64) {
        self.clock_offset_ms = offset;
    }

    pub fn account(&self) -> &str {
        &self.account
    }

    /// A fire alarm in `zone` (Contact ID 1110, SIA `FA`).
    pub async fn fire_alarm(&mut self, zone: u16) -> Result<Answer, PanelError> {
        self.event(1, 110, "FA", zone).await
    }

    /// The zone's fire alarm restored (Contact ID 3110, SIA `FH`).
    pub async fn fire_restore(&mut self, zone: u16) -> Result<Answer, PanelError> {
        self.event(3, 110, "FH", zone).await
    }

    /// A pre-alarm (Contact ID 1118; SIA has none: sent as `FG`, unverified fire event).
    pub async fn pre_alarm(&mut self, zone: u16) -> Result<Answer, PanelError> {
        self.event(1, 118, "FG", zone).await
    }

    /// Fire-loop trouble (Contact ID 1373, SIA `FT`).
    pub async fn trouble(&mut self, zone: u16) -> Result<Answer, PanelError> {
        self.event(1, 373, "FT", zone).await
    }

    /// Trouble restored (Contact ID 3373, SIA `FJ`).
    pub async fn trouble_restore(&mut self, zone: u16) -> Result<Answer, PanelError> {
        self.event(3, 373, "FJ", zone).await
    }

    /// Sprinkler pump failure (Contact ID 1206, SIA `FS`).
    pub async fn pump_failure(&mut self, zone: u16) -> Result<Answer, PanelError> {
        self.event(1, 206, "FS", zone).await
    }

    /// Zone bypassed / re-enabled (Contact ID 1571/3571, SIA `FB`/`FU`).
    pub async fn bypass(&mut self, zone: u16, on: bool) -> Result<Answer, PanelError> {
        if on {
            self.event(1, 571, "FB", zone).await
        } else {
            self.event(3, 571, "FU", zone).await
        }
    }

    /// Panel reset (Contact ID 1305 system reset, SIA `OR`).
    pub async fn reset(&mut self) -> Result<Answer, PanelError> {
        self.event(1, 305, "OR", 0).await
    }

    /// A NULL line poll (the heartbeat the receiver supervises).
    pub async fn poll(&mut self) -> Result<Answer, PanelError> {
        self.send(Token::Null, String::new()).await
    }

    /// Any Contact ID event: qualifier (1 new, 3 restore, 6 status), code, group, zone.
    pub async fn contact_id(&mut self, qualifier: u8, code: u16, group: u8, zone: u16) -> Result<Answer, PanelError> {
        let data = format!("#{}|{qualifier}{code:03} {group:02} {zone:03}", self.account);
        self.send(Token::AdmCid, data).await
    }

    /// Any SIA DCS event data after `#acct|`, e.g. `Nri1/FA17`.
    pub async fn sia(&mut self, data: &str) -> Result<Answer, PanelError> {
        let data = format!("#{}|{data}", self.account);
        self.send(Token::SiaDcs, data).await
    }

    async fn event(&mut self, qualifier: u8, cid: u16, sia: &str, zone: u16) -> Result<Answer, PanelError> {
        match self.format {
            Format::ContactId => self.contact_id(qualifier, cid, 1, zone).await,
            Format::SiaDcs => self.sia(&format!("Nri1/{sia}{zone}")).await,
        }
    }

    /// Sends one message with the next sequence number; retries it (same number) when
    /// unanswered, once more after a NAK with the receiver's clock.
    pub async fn send(&mut self, token: Token, data: String) -> Result<Answer, PanelError> {
        self.seq = self.seq % 9999 + 1;
        let seq = self.seq;
        let mut nak_retried = false;
        let mut tries = 0;
        loop {
            tries += 1;
            let now = pb::now_ms() + self.clock_offset_ms;
            let msg = Message::new(token, seq, &self.account, &data).with_timestamp(now);
            let bytes = match &self.key {
                Some(key) => frame::encode_encrypted(&msg, key, now, &mut || fastrand::u8(0x21..0x7F)),
                None => frame::encode(&msg),
            };
            match self.exchange(&bytes).await {
                Ok(Some(answer)) => match self.read_answer(&answer) {
                    Answer::Nak if !nak_retried => nak_retried = true,
                    Answer::Duh => {
                        return Err(PanelError::Refused {
                            account: self.account.clone(),
                            seq: msg.seq,
                        });
                    }
                    other => return Ok(other),
                },
                Ok(None) | Err(_) if tries < TRIES => {
                    self.tcp = None;
                }
                Ok(None) => {
                    return Err(PanelError::NoAnswer {
                        account: self.account.clone(),
                        seq: msg.seq,
                        addr: self.addr,
                        tries,
                    });
                }
                Err(source) => {
                    return Err(PanelError::Io {
                        account: self.account.clone(),
                        source,
                    });
                }
            }
        }
    }

    /// Reads an answer; a NAK's timestamp sets the dialler's clock to the receiver's.
    fn read_answer(&mut self, bytes: &[u8]) -> Answer {
        let Ok(f) = frame::parse(bytes) else {
            return Answer::Nak;
        };
        match f.token {
            Token::Nak => {
                if let Payload::Plain(c) = &f.payload
                    && let Some(ts) = c.timestamp_ms
                {
                    self.clock_offset_ms = ts - pb::now_ms();
                }
                Answer::Nak
            }
            Token::Duh => Answer::Duh,
            _ => Answer::Ack,
        }
    }

    /// One frame out, one answer in (`None`: no answer in time).
    async fn exchange(&mut self, bytes: &[u8]) -> Result<Option<Vec<u8>>, std::io::Error> {
        match self.transport {
            Transport::Udp => {
                if self.udp.is_none() {
                    let socket = UdpSocket::bind(if self.addr.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }).await?;
                    socket.connect(self.addr).await?;
                    self.udp = Some(socket);
                }
                let Some(socket) = self.udp.as_ref() else {
                    return Ok(None);
                };
                socket.send(bytes).await?;
                let mut buf = vec![0u8; 4096];
                match timeout(ANSWER_WAIT, socket.recv(&mut buf)).await {
                    Ok(Ok(n)) => {
                        buf.truncate(n);
                        Ok(Some(buf))
                    }
                    Ok(Err(e)) => Err(e),
                    Err(_) => Ok(None),
                }
            }
            Transport::Tcp => {
                if self.tcp.is_none() {
                    let stream = TcpStream::connect(self.addr).await?;
                    let _ = stream.set_nodelay(true);
                    self.tcp = Some(stream);
                }
                let Some(stream) = self.tcp.as_mut() else {
                    return Ok(None);
                };
                stream.write_all(bytes).await?;
                let mut answer = Vec::new();
                let mut byte = [0u8; 1];
                let read = timeout(ANSWER_WAIT, async {
                    loop {
                        if stream.read(&mut byte).await? == 0 {
                            return Ok::<bool, std::io::Error>(false);
                        }
                        if answer.is_empty() && byte[0] != b'\n' {
                            continue;
                        }
                        answer.push(byte[0]);
                        if byte[0] == b'\r' && answer.len() > 9 {
                            return Ok(true);
                        }
                    }
                })
                .await;
                match read {
                    Ok(Ok(true)) => Ok(Some(answer)),
                    Ok(Ok(false)) | Err(_) => {
                        self.tcp = None;
                        Ok(None)
                    }
                    Ok(Err(e)) => {
                        self.tcp = None;
                        Err(e)
                    }
                }
            }
        }
    }
}

/// Sends a NULL poll every `interval` until `shutdown` (the dialler's line supervision).
/// Failures are logged and the next poll tried.
pub async fn poll_loop(
    panel: std::sync::Arc<tokio::sync::Mutex<Dc09Panel>>,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(interval);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        let mut p = panel.lock().await;
        if let Err(e) = p.poll().await {
            tracing::warn!(error = %e, "DC-09 poll failed");
        }
    }
}
