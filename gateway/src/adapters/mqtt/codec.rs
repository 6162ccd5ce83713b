//! The wire boundary: bytes from a socket in, at most one MQTT 3.1.1 packet out, never a
//! panic.
//!
//! The packets are rumqttc's `mqttbytes::v4` codecs (the client side of the same protocol,
//! already in the build, with no broker attached). They check every length against the
//! bytes at hand before reading; the proptests below feed arbitrary and mutated packets
//! through [`read_packet`] to hold them to that. What the codec accepts but a server must
//! not is refused here: MQTT 5 CONNECTs, wildcards in a publish topic, an invalid
//! subscription filter. rumqttc's `matches` indexes the topic's first byte as a `str`, which
//! panics on a multi-byte first character, so topic matching is our own ([`matches`]).

use bytes::BytesMut;
use rumqttc::mqttbytes::{self, Protocol, v4::Packet};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("packet of {0} bytes is over the limit")]
    TooLarge(usize),
    /// A CONNECT of another protocol or version (answered with CONNACK 0x01).
    #[error("not MQTT 3.1.1: {0}")]
    BadProtocol(String),
    #[error("malformed packet: {0}")]
    Malformed(String),
}

/// Takes one whole packet off the front of `buf`; `Ok(None)` when more bytes are needed.
/// Any error means the connection must be closed (the bytes of a bad frame may already be
/// consumed).
pub fn read_packet(buf: &mut BytesMut, max_packet: usize) -> Result<Option<Packet>, DecodeError> {
    if buf.is_empty() {
        return Ok(None);
    }
    match Packet::read(buf, max_packet) {
        Ok(Packet::Connect(c)) if c.protocol != Protocol::V4 => {
            Err(DecodeError::BadProtocol("protocol level 5".into()))
        }
        Ok(Packet::Publish(p)) if p.topic.is_empty() || p.topic.contains(['+', '#']) => Err(DecodeError::Malformed(
            format!("publish topic {:?} is empty or has a wildcard", p.topic),
        )),
        Ok(Packet::Subscribe(s)) if s.filters.iter().any(|f| !mqttbytes::valid_filter(&f.path)) => {
            Err(DecodeError::Malformed("invalid subscription filter".into()))
        }
        Ok(p) => Ok(Some(p)),
        Err(mqttbytes::Error::InsufficientBytes(_)) => Ok(None),
        Err(mqttbytes::Error::PayloadSizeLimitExceeded(n)) => Err(DecodeError::TooLarge(n)),
        Err(e @ (mqttbytes::Error::InvalidProtocol | mqttbytes::Error::InvalidProtocolLevel(_))) => {
            Err(DecodeError::BadProtocol(e.to_string()))
        }
        Err(e) => Err(DecodeError::Malformed(e.to_string())),
    }
}

/// Whether `topic` matches the subscription `filter` (`+` one level, `#` the rest; a topic
/// starting with `$` matches no wildcard at its first level).
pub fn matches(topic: &str, filter: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut topics = topic.split('/');
    for f in filter.split('/') {
        if f == "#" {
            return true;
        }
        match topics.next() {
            Some(t) if f == "+" || f == t => {}
            _ => return false,
        }
    }
    topics.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rumqttc::mqttbytes::{
        QoS,
        v4::{Connect, LastWill, PubAck, Publish, Subscribe, Unsubscribe},
    };

    fn encoded(p: &Packet) -> Vec<u8> {
        let mut b = BytesMut::new();
        p.write(&mut b, 1 << 20).expect("encode");
        b.to_vec()
    }

    fn samples() -> Vec<Vec<u8>> {
        let mut connect = Connect::new("door-1");
        connect.last_will = Some(LastWill::new(
            "gatehouse/v1/door-1/status",
            "offline",
            QoS::AtLeastOnce,
            true,
        ));
        connect.set_login("user", "pass");
        let mut publish = Publish::new("gatehouse/v1/door-1/event", QoS::AtLeastOnce, r#"{"type":"forced"}"#);
        publish.pkid = 7;
        [
            Packet::Connect(connect),
            Packet::Publish(publish),
            Packet::Subscribe(Subscribe::new("gatehouse/v1/+/command", QoS::AtLeastOnce)),
            Packet::Unsubscribe(Unsubscribe::new("a/#")),
            Packet::PubAck(PubAck::new(3)),
            Packet::PingReq,
            Packet::Disconnect,
        ]
        .iter()
        .map(encoded)
        .collect()
    }

    /// Feeds `bytes` in `chunk`-sized reads, as a socket would, until an error or the end.
    fn decode_all(bytes: &[u8], chunk: usize) {
        let mut buf = BytesMut::new();
        for part in bytes.chunks(chunk.max(1)) {
            buf.extend_from_slice(part);
            loop {
                match read_packet(&mut buf, 4096) {
                    Ok(Some(_)) => continue,
                    Ok(None) => break,
                    Err(_) => return,
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_bytes_never_panic_the_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..512), chunk in 1usize..64) {
            decode_all(&bytes, chunk);
        }

        #[test]
        fn mutated_valid_packets_never_panic_the_decoder(
            which in 0usize..7,
            edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
            cut in any::<usize>(),
            chunk in 1usize..32,
        ) {
            let mut bytes = samples()[which].clone();
            for (at, byte) in edits {
                let i = at % bytes.len();
                bytes[i] = byte;
            }
            bytes.truncate(1 + cut % bytes.len());
            decode_all(&bytes, chunk);
        }

        #[test]
        fn topic_matching_never_panics(topic in "\\PC{0,12}", filter in "[a-z/+#é$]{0,12}") {
            let _ = matches(&topic, &filter);
        }
    }

    #[test]
    fn valid_packets_decode_one_at_a_time_from_a_stream() {
        let all: Vec<u8> = samples().concat();
        let mut buf = BytesMut::from(&all[..]);
        let mut n = 0;
        while let Some(_p) = read_packet(&mut buf, 4096).expect("valid") {
            n += 1;
        }
        assert_eq!(n, 7);
        assert!(buf.is_empty());
    }

    #[test]
    fn what_a_server_must_refuse_is_refused() {
        let mut big =
            BytesMut::from(&encoded(&Packet::Publish(Publish::new("a/b", QoS::AtMostOnce, vec![0u8; 5000])))[..]);
        assert!(matches!(read_packet(&mut big, 4096), Err(DecodeError::TooLarge(_))));
        let mut wild = BytesMut::from(&encoded(&Packet::Publish(Publish::new("a/+", QoS::AtMostOnce, "x")))[..]);
        assert!(matches!(read_packet(&mut wild, 4096), Err(DecodeError::Malformed(_))));
        let mut v5 = Connect::new("x");
        v5.protocol = Protocol::V5;
        let mut v5 = BytesMut::from(&encoded(&Packet::Connect(v5))[..]);
        assert!(matches!(read_packet(&mut v5, 4096), Err(DecodeError::BadProtocol(_))));
        // MQTT 3.1 ("MQIsdp", level 3).
        let mut v3 = BytesMut::from(&b"\x10\x12\x00\x06MQIsdp\x03\x02\x00\x3c\x00\x04abcd"[..]);
        assert!(matches!(read_packet(&mut v3, 4096), Err(DecodeError::BadProtocol(_))));
    }

    #[test]
    fn filters_match_like_mqtt_3_1_1_says() {
        assert!(matches("gatehouse/v1/door-1/command", "gatehouse/v1/+/command"));
        assert!(matches("gatehouse/v1/door-1/command", "gatehouse/#"));
        assert!(matches("gatehouse/v1/door-1/command", "#"));
        assert!(matches("a", "a/#"));
        assert!(!matches("gatehouse/v1/door-1/command/result", "gatehouse/v1/+/command"));
        assert!(!matches("gatehouse/v1/door-1", "gatehouse/v1/+/command"));
        assert!(!matches("$SYS/x", "#"));
        assert!(
            matches("é/x", "+/x"),
            "a multi-byte first character is an ordinary level"
        );
    }
}
