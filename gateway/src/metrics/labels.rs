//! The label sets the gateway counts by: one enum per labelled counter, each with its
//! label values, and the DC-09 connection counters ([`Dc09Conns`]). A leaf: adapters import
//! these to count, never the other way round.

use std::{
    fmt::Write,
    sync::atomic::{AtomicU64, Ordering::Relaxed},
};

/// Why an MQTT publish was rejected. Each reason has its own counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    MalformedJson,
    UnknownDevice,
    UnknownType,
    WrongFieldType,
    Oversized,
    BadTopic,
}

impl RejectReason {
    pub const ALL: [RejectReason; 6] = [
        RejectReason::MalformedJson,
        RejectReason::UnknownDevice,
        RejectReason::UnknownType,
        RejectReason::WrongFieldType,
        RejectReason::Oversized,
        RejectReason::BadTopic,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::MalformedJson => "malformed_json",
            RejectReason::UnknownDevice => "unknown_device",
            RejectReason::UnknownType => "unknown_type",
            RejectReason::WrongFieldType => "wrong_field_type",
            RejectReason::Oversized => "oversized",
            RejectReason::BadTopic => "bad_topic",
        }
    }
}

/// Why the hub refused a batch, as the gateway counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UplinkRejection {
    SeqGap,
    SeqCeiling,
    TooLarge,
    Other,
}

impl UplinkRejection {
    pub const ALL: [UplinkRejection; 4] = [
        UplinkRejection::SeqGap,
        UplinkRejection::SeqCeiling,
        UplinkRejection::TooLarge,
        UplinkRejection::Other,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            UplinkRejection::SeqGap => "seq_gap",
            UplinkRejection::SeqCeiling => "seq_ceiling",
            UplinkRejection::TooLarge => "too_large",
            UplinkRejection::Other => "other",
        }
    }
}

/// Why the MQTT server refused a connection (the CONNACK code, or a close before it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MqttRefusal {
    /// `mqtt.max_pending_connections` TCP connections were already waiting for CONNECT.
    PendingCap,
    /// `mqtt.max_connections_per_ip` reached for the source address.
    PerIpCap,
    /// `mqtt.max_connections` clients that are not configured devices already connected
    /// (CONNACK 0x03, server unavailable).
    ConnectionCap,
    /// Not MQTT 3.1.1 (CONNACK 0x01).
    BadProtocol,
    /// An empty client id without clean session, or one that is not UTF-8 (CONNACK 0x02).
    IdentifierRejected,
    /// No username and no client certificate, anonymous access off (CONNACK 0x05).
    NoCredentials,
    /// An unknown username or a wrong password (CONNACK 0x04).
    BadCredentials,
    /// A username other than the device its client certificate names (CONNACK 0x04).
    CertMismatch,
    /// The source failed `mqtt.auth_max_failures` logins lately; not checked (CONNACK 0x05).
    AuthRateLimited,
    /// A last will on a topic the device may not publish on (CONNACK 0x05).
    WillNotAuthorized,
    /// The TLS handshake failed (no CONNACK: closed).
    TlsHandshake,
}

impl MqttRefusal {
    pub const ALL: [MqttRefusal; 11] = [
        MqttRefusal::PendingCap,
        MqttRefusal::PerIpCap,
        MqttRefusal::ConnectionCap,
        MqttRefusal::BadProtocol,
        MqttRefusal::IdentifierRejected,
        MqttRefusal::NoCredentials,
        MqttRefusal::BadCredentials,
        MqttRefusal::CertMismatch,
        MqttRefusal::AuthRateLimited,
        MqttRefusal::WillNotAuthorized,
        MqttRefusal::TlsHandshake,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            MqttRefusal::PendingCap => "pending_cap",
            MqttRefusal::PerIpCap => "per_ip_cap",
            MqttRefusal::ConnectionCap => "connection_cap",
            MqttRefusal::BadProtocol => "bad_protocol",
            MqttRefusal::IdentifierRejected => "identifier_rejected",
            MqttRefusal::NoCredentials => "no_credentials",
            MqttRefusal::BadCredentials => "bad_credentials",
            MqttRefusal::CertMismatch => "cert_mismatch",
            MqttRefusal::AuthRateLimited => "auth_rate_limited",
            MqttRefusal::WillNotAuthorized => "will_not_authorized",
            MqttRefusal::TlsHandshake => "tls_handshake",
        }
    }
}

/// Why a publish or subscription of a connected client was refused by its topic rights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MqttDenial {
    /// A publish on a command topic: only the gateway sends there (dropped).
    PublishCommandTopic,
    /// A publish outside the device's own topics (dropped).
    PublishNotOwn,
    /// A subscription outside the device's own command topic (SUBACK 0x80).
    SubscribeNotOwn,
}

impl MqttDenial {
    pub const ALL: [MqttDenial; 3] = [
        MqttDenial::PublishCommandTopic,
        MqttDenial::PublishNotOwn,
        MqttDenial::SubscribeNotOwn,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            MqttDenial::PublishCommandTopic => "publish_command_topic",
            MqttDenial::PublishNotOwn => "publish_not_own",
            MqttDenial::SubscribeNotOwn => "subscribe_not_own",
        }
    }
}

/// Why the MQTT server closed a connection it had accepted (closes by the client are not
/// counted here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MqttClose {
    /// No CONNECT within `mqtt.connect_timeout_ms`.
    ConnectTimeout,
    /// Nothing received for 1.5 × the client's keep-alive (or `mqtt.idle_timeout_s`).
    KeepAlive,
    /// A packet over `mqtt.max_packet_bytes`.
    PacketTooLarge,
    /// Bytes that are not an MQTT 3.1.1 packet, or a packet out of place.
    Malformed,
    /// Another connection took the client id over (MQTT session takeover).
    TakenOver,
    /// The outbox writer stopped (shutdown).
    IntakeStopped,
}

impl MqttClose {
    pub const ALL: [MqttClose; 6] = [
        MqttClose::ConnectTimeout,
        MqttClose::KeepAlive,
        MqttClose::PacketTooLarge,
        MqttClose::Malformed,
        MqttClose::TakenOver,
        MqttClose::IntakeStopped,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            MqttClose::ConnectTimeout => "connect_timeout",
            MqttClose::KeepAlive => "keep_alive",
            MqttClose::PacketTooLarge => "packet_too_large",
            MqttClose::Malformed => "malformed",
            MqttClose::TakenOver => "taken_over",
            MqttClose::IntakeStopped => "intake_stopped",
        }
    }
}

/// Kinds of Modbus failure, counted apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModbusFailure {
    Timeout,
    Transport,
    Exception,
    Connect,
}

impl ModbusFailure {
    pub const ALL: [ModbusFailure; 4] = [
        ModbusFailure::Timeout,
        ModbusFailure::Transport,
        ModbusFailure::Exception,
        ModbusFailure::Connect,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            ModbusFailure::Timeout => "timeout",
            ModbusFailure::Transport => "transport",
            ModbusFailure::Exception => "exception",
            ModbusFailure::Connect => "connect",
        }
    }
}

/// What became of a frame, for the metrics (one counter each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dc09Verdict {
    /// ACKed, events stored.
    Accepted,
    /// A `NULL` poll, ACKed.
    Poll,
    /// A repeat of an accepted frame, ACKed again, nothing stored.
    Duplicate,
    BadCrc,
    BadLength,
    Malformed,
    StaleTimestamp,
    UnknownAccount,
    KeyMissing,
    PlaintextRefused,
    DecryptFailed,
    AccountMismatch,
    Unsupported,
}

impl Dc09Verdict {
    pub const ALL: [Dc09Verdict; 13] = [
        Dc09Verdict::Accepted,
        Dc09Verdict::Poll,
        Dc09Verdict::Duplicate,
        Dc09Verdict::BadCrc,
        Dc09Verdict::BadLength,
        Dc09Verdict::Malformed,
        Dc09Verdict::StaleTimestamp,
        Dc09Verdict::UnknownAccount,
        Dc09Verdict::KeyMissing,
        Dc09Verdict::PlaintextRefused,
        Dc09Verdict::DecryptFailed,
        Dc09Verdict::AccountMismatch,
        Dc09Verdict::Unsupported,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Dc09Verdict::Accepted => "accepted",
            Dc09Verdict::Poll => "poll",
            Dc09Verdict::Duplicate => "duplicate",
            Dc09Verdict::BadCrc => "bad_crc",
            Dc09Verdict::BadLength => "bad_length",
            Dc09Verdict::Malformed => "malformed",
            Dc09Verdict::StaleTimestamp => "stale_timestamp",
            Dc09Verdict::UnknownAccount => "unknown_account",
            Dc09Verdict::KeyMissing => "key_missing",
            Dc09Verdict::PlaintextRefused => "plaintext_refused",
            Dc09Verdict::DecryptFailed => "decrypt_failed",
            Dc09Verdict::AccountMismatch => "account_mismatch",
            Dc09Verdict::Unsupported => "unsupported",
        }
    }
}

/// What happened to a connection, as counted on `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dc09Closed {
    /// Refused at accept: its source already held `max_connections_per_source`.
    PerSourceCap = 0,
    /// Dc09Closed to make room for a new connection at `max_connections`.
    Evicted = 1,
    /// No complete frame within `idle_timeout_s`.
    Idle = 2,
}

impl Dc09Closed {
    pub const ALL: [Dc09Closed; 3] = [Dc09Closed::PerSourceCap, Dc09Closed::Evicted, Dc09Closed::Idle];

    pub fn as_str(self) -> &'static str {
        match self {
            Dc09Closed::PerSourceCap => "max_connections_per_source",
            Dc09Closed::Evicted => "evicted_at_max_connections",
            Dc09Closed::Idle => "idle_timeout",
        }
    }
}

/// `gatehouse_gateway_dc09_connections_open` and `…_closed_total{reason}`.
#[derive(Debug, Default)]
pub struct Dc09Conns {
    open: AtomicU64,
    closed: [AtomicU64; 3],
}

impl Dc09Conns {
    pub fn open(&self) -> u64 {
        self.open.load(Relaxed)
    }

    pub fn closed(&self, why: Dc09Closed) -> u64 {
        self.closed[why as usize].load(Relaxed)
    }

    /// The table's size after an admit or a remove.
    pub fn set_open(&self, n: usize) {
        self.open.store(n as u64, Relaxed);
    }

    pub fn count(&self, why: Dc09Closed) {
        self.closed[why as usize].fetch_add(1, Relaxed);
    }

    pub fn render(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP gatehouse_gateway_dc09_connections_open DC-09 TCP connections open.\n\
             # TYPE gatehouse_gateway_dc09_connections_open gauge\n\
             gatehouse_gateway_dc09_connections_open {}\n\
             # HELP gatehouse_gateway_dc09_connections_closed_total DC-09 TCP connections refused or closed by a limit.\n\
             # TYPE gatehouse_gateway_dc09_connections_closed_total counter",
            self.open()
        );
        for why in Dc09Closed::ALL {
            let _ = writeln!(
                out,
                "gatehouse_gateway_dc09_connections_closed_total{{reason=\"{}\"}} {}",
                why.as_str(),
                self.closed(why)
            );
        }
    }
}
