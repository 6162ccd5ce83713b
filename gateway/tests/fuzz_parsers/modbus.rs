//! Modbus decoding, for every value type and all four byte/word orders: any reply decodes
//! to a finite value or a named error (never a panic, a NaN or an infinity); registers that
//! decode re-encode to the same registers; a bool in a register is 0 or 1 whatever its bit,
//! scale and offset; a short reply is refused with what it needed.

use gatehouse_gateway::adapters::modbus::{
    config::{Order, PointConfig, Table, ValueType},
    decode::{DecodeError, decode, decode_bit, encode},
};
use proptest::prelude::*;

use crate::cases;

const TYPES: [ValueType; 9] = [
    ValueType::Bool,
    ValueType::U16,
    ValueType::I16,
    ValueType::U32,
    ValueType::I32,
    ValueType::F32,
    ValueType::U64,
    ValueType::I64,
    ValueType::F64,
];

fn order() -> impl Strategy<Value = Order> {
    prop_oneof![Just(Order::Big), Just(Order::Little)]
}

fn point(value_type: ValueType, word_order: Order, byte_order: Order) -> PointConfig {
    PointConfig {
        name: "p".into(),
        table: Table::Holding,
        address: 40,
        value_type,
        word_order,
        byte_order,
        bit: None,
        scale: 1.0,
        offset: 0.0,
        unit: String::new(),
        deadband: 0.0,
        writable: true,
    }
}

/// Any f64 a configuration could hold, the awkward ones included.
fn any_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        Just(0.0),
        Just(-0.0),
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::MAX),
        Just(f64::MIN_POSITIVE),
        Just(1e-300),
    ]
}

proptest! {
    #![proptest_config(cases(512))]

    #[test]
    fn any_reply_decodes_to_a_finite_value_or_an_error(
        words in proptest::collection::vec(any::<u16>(), 0..6), wo in order(), bo in order(),
        bit in proptest::option::of(any::<u8>()), scale in any_f64(), offset in any_f64(),
        bits in proptest::collection::vec(any::<bool>(), 0..3),
    ) {
        for ty in TYPES {
            let mut p = point(ty, wo, bo);
            (p.bit, p.scale, p.offset) = (bit, scale, offset);
            let width = usize::from(ty.width());
            match decode(&words, &p) {
                Ok(v) => {
                    prop_assert!(v.is_finite());
                    prop_assert!(words.len() >= width);
                    if ty == ValueType::Bool {
                        prop_assert!(v == 0.0 || v == 1.0, "a bool is 0 or 1, got {}", v);
                    }
                }
                Err(DecodeError::Short { needed, got, .. }) => {
                    prop_assert_eq!((needed, got), (width, words.len()));
                    prop_assert!(words.len() < width);
                }
                Err(DecodeError::MissingBit { .. }) => prop_assert!(ty == ValueType::Bool && bit.is_none()),
                Err(DecodeError::NotFinite { .. }) => prop_assert!(ty != ValueType::Bool),
            }
            p.table = Table::Coil;
            match decode_bit(&bits, &p) {
                Ok(v) => prop_assert_eq!(v, if bits[0] { 1.0 } else { 0.0 }),
                Err(_) => prop_assert!(bits.is_empty()),
            }
            // Encoding any value never panics either.
            p.table = Table::Holding;
            let _ = encode(scale, &p);
        }
    }

    #[test]
    fn registers_that_decode_encode_back_to_the_same_registers(
        words in proptest::collection::vec(any::<u16>(), 4), wo in order(), bo in order(),
    ) {
        for ty in TYPES.into_iter().filter(|t| *t != ValueType::Bool) {
            let p = point(ty, wo, bo);
            let width = usize::from(ty.width());
            let value = match decode(&words, &p) {
                Ok(v) => v,
                // Only a NaN or infinite float is refused (as not finite).
                Err(e) => {
                    prop_assert!(matches!(ty, ValueType::F32 | ValueType::F64), "{:?}: {}", ty, e);
                    continue;
                }
            };
            // Above 2^53 a 64-bit integer is rounded on its way through an f64.
            if matches!(ty, ValueType::U64 | ValueType::I64) && value.abs() >= 9_007_199_254_740_992.0 {
                continue;
            }
            let back = encode(value, &p).map_err(|e| TestCaseError::fail(format!("{ty:?} {value}: {e}")))?;
            prop_assert_eq!(&back[..], &words[..width], "{:?} {:?}/{:?} value {}", ty, wo, bo, value);
        }
    }

    #[test]
    fn a_bool_in_a_register_is_its_bit(word in any::<u16>(), bit in 0u8..16, bo in order()) {
        let mut p = point(ValueType::Bool, Order::Big, bo);
        p.bit = Some(bit);
        let w = if bo == Order::Little { word.swap_bytes() } else { word };
        prop_assert_eq!(decode(&[word], &p), Ok(f64::from((w >> bit) & 1)));
    }
}

/// What a fake device answers a read request with.
#[derive(Debug, Clone)]
enum Reply {
    /// A well-framed exception: the request's function code with the high bit, and a code.
    Exception(u8),
    /// A well-framed answer (transaction id and unit echoed) with any PDU.
    Pdu(Vec<u8>),
    /// Any bytes at all.
    Raw(Vec<u8>),
}

fn reply() -> impl Strategy<Value = Reply> {
    prop_oneof![
        any::<u8>().prop_map(Reply::Exception),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(Reply::Pdu),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(Reply::Raw),
    ]
}

/// One request of the gateway's Modbus link against a device on a real socket that answers
/// with `reply`.
async fn ask(reply: Reply) -> Result<Result<tokio_modbus::Response, tokio_modbus::ExceptionCode>, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let device = tokio::spawn(async move {
        let Ok((mut s, _)) = listener.accept().await else {
            return;
        };
        let mut req = [0u8; 12];
        if s.read_exact(&mut req).await.is_err() {
            return;
        }
        let frame = |pdu: &[u8]| {
            // MBAP: transaction id echoed, protocol 0, length (unit + PDU), unit echoed.
            let mut out = vec![req[0], req[1], 0, 0];
            out.extend_from_slice(&(pdu.len() as u16 + 1).to_be_bytes());
            out.push(req[6]);
            out.extend_from_slice(pdu);
            out
        };
        let bytes = match &reply {
            Reply::Exception(code) => frame(&[req[7] | 0x80, *code]),
            Reply::Pdu(pdu) => frame(pdu),
            Reply::Raw(raw) => raw.clone(),
        };
        let _ = s.write_all(&bytes).await;
        // Hold the connection until the link has read (or given up).
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    });
    let mut link = gatehouse_gateway::adapters::modbus::link::Link::new(
        "pump-1",
        &addr.to_string(),
        1,
        std::time::Duration::from_millis(150),
        std::sync::Arc::new(gatehouse_gateway::metrics::Metrics::default()),
    );
    let answer = link.call(tokio_modbus::Request::ReadHoldingRegisters(0, 2)).await;
    device.abort();
    answer
}

proptest! {
    #![proptest_config(cases(24))]

    #[test]
    fn any_device_answer_is_a_response_an_exception_or_an_error(reply in reply()) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let answer = rt.block_on(ask(reply.clone()));
        match (&reply, &answer) {
            // A well-framed exception is the device's exception, with its code.
            (Reply::Exception(code), a) => {
                prop_assert_eq!(a, &Ok(Err(tokio_modbus::ExceptionCode::new(*code))));
            }
            // Registers are only read from a well-framed answer to this request.
            (Reply::Pdu(pdu), Ok(Ok(tokio_modbus::Response::ReadHoldingRegisters(words)))) => {
                prop_assert!(pdu.first() == Some(&0x03) && 2 + 2 * words.len() <= pdu.len(), "{:?} from {:?}", words, pdu);
            }
            (Reply::Pdu(_) | Reply::Raw(_), Ok(Ok(other))) => {
                prop_assert!(matches!(other, tokio_modbus::Response::ReadHoldingRegisters(_)), "{:?}", other);
            }
            _ => {}
        }
    }
}
