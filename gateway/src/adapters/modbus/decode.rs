//! Pure conversion between Modbus registers and engineering values.
//!
//! A multi-register value is assembled in two steps, mirroring the two knobs of a point:
//! `byte_order = little` swaps the two bytes inside each register, then `word_order`
//! says whether the most significant register comes first (`big`) or last (`little`).
//! The engineering value is `raw * scale + offset`. A bool is always 0.0 or 1.0: scale and
//! offset do not apply to it (a rule "pump1_fault when true" must not depend on them).

use super::config::{Order, PointConfig, Table, ValueType};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    #[error("point {point:?} (register {address}): needs {needed} word(s), the reply held {got}")]
    Short {
        point: String,
        address: u16,
        needed: usize,
        got: usize,
    },
    #[error("point {point:?} (register {address}): a bool in a register needs `bit`")]
    MissingBit { point: String, address: u16 },
    #[error("point {point:?} (register {address}): value is not a finite number")]
    NotFinite { point: String, address: u16 },
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EncodeError {
    #[error("point {point:?} (register {address}): value {value} is not a finite number")]
    NotFinite { point: String, address: u16, value: f64 },
    #[error(
        "point {point:?} (register {address}): value {value} gives raw {raw}, which is not a whole number as {ty:?} requires"
    )]
    NonIntegral {
        point: String,
        address: u16,
        value: f64,
        raw: f64,
        ty: ValueType,
    },
    #[error("point {point:?} (register {address}): value {value} gives raw {raw}, out of range for {ty:?}")]
    OutOfRange {
        point: String,
        address: u16,
        value: f64,
        raw: f64,
        ty: ValueType,
    },
    #[error(
        "point {point:?} (register {address}): writing bit {bit} inside a register is not supported (it would need a read-modify-write)"
    )]
    BitInRegister { point: String, address: u16, bit: u8 },
    #[error("point {point:?} (address {address}): a {table:?} point is a bit, not registers")]
    BitTable { point: String, address: u16, table: Table },
}

/// Decodes the point whose first register is `words[0]`.
pub fn decode(words: &[u16], point: &PointConfig) -> Result<f64, DecodeError> {
    let width = usize::from(point.value_type.width());
    let Some(words) = words.get(..width) else {
        return Err(DecodeError::Short {
            point: point.name.clone(),
            address: point.address,
            needed: width,
            got: words.len(),
        });
    };
    let raw = assemble(words, point.word_order, point.byte_order);
    let value = match point.value_type {
        ValueType::Bool => {
            let Some(bit) = point.bit else {
                return Err(DecodeError::MissingBit {
                    point: point.name.clone(),
                    address: point.address,
                });
            };
            // `checked_shr` keeps a bit past 63 (refused by config anyway) from panicking.
            let set = raw.checked_shr(u32::from(bit)).unwrap_or(0) & 1 == 1;
            return Ok(if set { 1.0 } else { 0.0 });
        }
        ValueType::U16 => f64::from(raw as u16),
        ValueType::I16 => f64::from(raw as u16 as i16),
        ValueType::U32 => f64::from(raw as u32),
        ValueType::I32 => f64::from(raw as u32 as i32),
        ValueType::F32 => f64::from(f32::from_bits(raw as u32)),
        // Above 2^53 an f64 rounds; the wire format of a reading is a double anyway.
        ValueType::U64 => raw as f64,
        ValueType::I64 => raw as i64 as f64,
        ValueType::F64 => f64::from_bits(raw),
    };
    let value = value * point.scale + point.offset;
    if !value.is_finite() {
        return Err(DecodeError::NotFinite {
            point: point.name.clone(),
            address: point.address,
        });
    }
    Ok(value)
}

/// Decodes a coil or discrete input whose bit is `bits[0]`.
pub fn decode_bit(bits: &[bool], point: &PointConfig) -> Result<f64, DecodeError> {
    match bits.first() {
        Some(true) => Ok(1.0),
        Some(false) => Ok(0.0),
        None => Err(DecodeError::Short {
            point: point.name.clone(),
            address: point.address,
            needed: 1,
            got: 0,
        }),
    }
}

/// Encodes `value` into the registers of a holding point, reversing scale and offset.
/// Integer types refuse values that are out of range or not whole after scaling, rather
/// than silently rounding or wrapping a setpoint.
pub fn encode(value: f64, point: &PointConfig) -> Result<Vec<u16>, EncodeError> {
    let address = point.address;
    let name = || point.name.clone();
    if point.table.is_bit() {
        return Err(EncodeError::BitTable {
            point: name(),
            address,
            table: point.table,
        });
    }
    if !value.is_finite() {
        return Err(EncodeError::NotFinite {
            point: name(),
            address,
            value,
        });
    }
    let ty = point.value_type;
    let raw = (value - point.offset) / point.scale;
    let out_of_range = || EncodeError::OutOfRange {
        point: name(),
        address,
        value,
        raw,
        ty,
    };
    let bits: u64 = match ty {
        ValueType::Bool => {
            return Err(EncodeError::BitInRegister {
                point: name(),
                address,
                bit: point.bit.unwrap_or(0),
            });
        }
        ValueType::F32 => {
            let f = raw as f32;
            if !f.is_finite() {
                return Err(out_of_range());
            }
            u64::from(f.to_bits())
        }
        ValueType::F64 => {
            if !raw.is_finite() {
                return Err(out_of_range());
            }
            raw.to_bits()
        }
        _ => {
            let whole = integral(raw).ok_or_else(|| EncodeError::NonIntegral {
                point: name(),
                address,
                value,
                raw,
                ty,
            })?;
            // Bounds as f64: 2^64 and 2^63 are exact, so `<` excludes exactly the overflow.
            let (min, max_excl) = match ty {
                ValueType::U16 => (0.0, 65_536.0),
                ValueType::I16 => (-32_768.0, 32_768.0),
                ValueType::U32 => (0.0, 4_294_967_296.0),
                ValueType::I32 => (-2_147_483_648.0, 2_147_483_648.0),
                ValueType::U64 => (0.0, 18_446_744_073_709_551_616.0),
                _ => (-9_223_372_036_854_775_808.0, 9_223_372_036_854_775_808.0),
            };
            if whole < min || whole >= max_excl {
                return Err(out_of_range());
            }
            if whole < 0.0 {
                // Two's complement within the type's width; the mask below trims it.
                whole as i64 as u64
            } else {
                whole as u64
            }
        }
    };
    Ok(split(bits, usize::from(ty.width()), point.word_order, point.byte_order))
}

/// `raw` rounded when it is whole up to floating-point noise from the scale division
/// (0.45 / 0.001 is 450.00000000000006), else `None`.
fn integral(raw: f64) -> Option<f64> {
    if !raw.is_finite() {
        return None;
    }
    let rounded = raw.round();
    let tolerance = 1e-9 * rounded.abs().max(1.0);
    ((raw - rounded).abs() <= tolerance).then_some(rounded)
}

fn assemble(words: &[u16], word_order: Order, byte_order: Order) -> u64 {
    let fix = |w: u16| match byte_order {
        Order::Big => w,
        Order::Little => w.swap_bytes(),
    };
    let fold = |acc: u64, w: &u16| (acc << 16) | u64::from(fix(*w));
    match word_order {
        Order::Big => words.iter().fold(0, fold),
        Order::Little => words.iter().rev().fold(0, fold),
    }
}

fn split(bits: u64, width: usize, word_order: Order, byte_order: Order) -> Vec<u16> {
    // Most significant word first, then reorder as the device expects.
    let mut words: Vec<u16> = (0..width)
        .rev()
        .map(|i| (bits >> (16 * i)) as u16)
        .map(|w| match byte_order {
            Order::Big => w,
            Order::Little => w.swap_bytes(),
        })
        .collect();
    if word_order == Order::Little {
        words.reverse();
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn point(ty: ValueType, word_order: Order, byte_order: Order) -> PointConfig {
        PointConfig {
            name: "p".into(),
            table: Table::Holding,
            address: 7,
            value_type: ty,
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

    const ORDERS: [(Order, Order); 4] = [
        (Order::Big, Order::Big),
        (Order::Big, Order::Little),
        (Order::Little, Order::Big),
        (Order::Little, Order::Little),
    ];

    /// Words as a device would send them for big/big, reordered by hand for the others,
    /// so the test does not reuse the code under test to build its expectations.
    fn arrange(be_words: &[u16], word_order: Order, byte_order: Order) -> Vec<u16> {
        let mut w: Vec<u16> = be_words
            .iter()
            .map(|w| {
                if byte_order == Order::Little {
                    w.swap_bytes()
                } else {
                    *w
                }
            })
            .collect();
        if word_order == Order::Little {
            w.reverse();
        }
        w
    }

    #[test]
    fn every_type_decodes_in_every_word_and_byte_order() {
        let f32_words = {
            let b = 123.456f32.to_bits();
            vec![(b >> 16) as u16, b as u16]
        };
        let f64_words = {
            let b = (-98_765.25f64).to_bits();
            (0..4).rev().map(|i| (b >> (16 * i)) as u16).collect::<Vec<_>>()
        };
        let i32_words = {
            let b = -123_456i32 as u32;
            vec![(b >> 16) as u16, b as u16]
        };
        let u64_v: u64 = 0x0123_4567_89AB_CDEF;
        let u64_words: Vec<u16> = (0..4).rev().map(|i| (u64_v >> (16 * i)) as u16).collect();
        let i64_v: i64 = -5_000_000_000;
        let i64_words: Vec<u16> = (0..4).rev().map(|i| ((i64_v as u64) >> (16 * i)) as u16).collect();
        let cases: Vec<(ValueType, Vec<u16>, f64)> = vec![
            (ValueType::U16, vec![0xFFFE], 65_534.0),
            (ValueType::I16, vec![0xFFFE], -2.0),
            (ValueType::U32, vec![0x0001, 0x0002], 65_538.0),
            (ValueType::I32, i32_words, -123_456.0),
            (ValueType::F32, f32_words, f64::from(123.456f32)),
            (ValueType::U64, u64_words, u64_v as f64),
            (ValueType::I64, i64_words, -5_000_000_000.0),
            (ValueType::F64, f64_words, -98_765.25),
        ];
        for (ty, be, expected) in &cases {
            for (wo, bo) in ORDERS {
                let words = arrange(be, wo, bo);
                let got = decode(&words, &point(*ty, wo, bo)).unwrap();
                assert_eq!(got, *expected, "{ty:?} word_order={wo:?} byte_order={bo:?}");
            }
        }
    }

    #[test]
    fn byte_order_little_swaps_inside_each_register() {
        let p = point(ValueType::U16, Order::Big, Order::Little);
        assert_eq!(decode(&[0x3412], &p).unwrap(), f64::from(0x1234u16));
    }

    #[test]
    fn scale_and_offset_apply_to_numbers_not_to_bools() {
        let mut p = point(ValueType::U16, Order::Big, Order::Big);
        p.scale = 0.001;
        p.offset = -1.0;
        assert!((decode(&[450], &p).unwrap() - (-0.55)).abs() < 1e-12);
        let mut b = point(ValueType::Bool, Order::Big, Order::Big);
        b.bit = Some(3);
        b.scale = 10.0;
        assert_eq!(decode(&[0b1000], &b).unwrap(), 1.0);
        assert_eq!(decode(&[0b0111], &b).unwrap(), 0.0);
        b.bit = Some(15);
        assert_eq!(decode(&[0x8000], &b).unwrap(), 1.0);
    }

    #[test]
    fn short_reply_and_nan_are_errors_not_panics() {
        let p = point(ValueType::F64, Order::Big, Order::Big);
        assert!(matches!(
            decode(&[1, 2], &p),
            Err(DecodeError::Short { needed: 4, got: 2, .. })
        ));
        let nan = point(ValueType::F32, Order::Big, Order::Big);
        let b = f32::NAN.to_bits();
        assert!(matches!(
            decode(&[(b >> 16) as u16, b as u16], &nan),
            Err(DecodeError::NotFinite { .. })
        ));
        let mut coil = point(ValueType::Bool, Order::Big, Order::Big);
        coil.table = Table::Coil;
        assert!(decode_bit(&[], &coil).is_err());
        assert_eq!(decode_bit(&[true], &coil).unwrap(), 1.0);
    }

    #[test]
    fn encode_refuses_out_of_range_and_fractions_for_integers() {
        let mut p = point(ValueType::U16, Order::Big, Order::Big);
        assert!(matches!(encode(65_536.0, &p), Err(EncodeError::OutOfRange { .. })));
        assert!(matches!(encode(-1.0, &p), Err(EncodeError::OutOfRange { .. })));
        assert!(matches!(encode(1.5, &p), Err(EncodeError::NonIntegral { .. })));
        assert!(matches!(encode(f64::NAN, &p), Err(EncodeError::NotFinite { .. })));
        p.scale = 0.001;
        assert_eq!(encode(0.45, &p).unwrap(), vec![450]);
        let i = point(ValueType::I16, Order::Big, Order::Big);
        assert_eq!(encode(-2.0, &i).unwrap(), vec![0xFFFE]);
        assert!(matches!(encode(32_768.0, &i), Err(EncodeError::OutOfRange { .. })));
        let f = point(ValueType::F32, Order::Big, Order::Big);
        assert!(matches!(encode(1e300, &f), Err(EncodeError::OutOfRange { .. })));
        let mut b = point(ValueType::Bool, Order::Big, Order::Big);
        b.bit = Some(2);
        assert!(matches!(
            encode(1.0, &b),
            Err(EncodeError::BitInRegister { bit: 2, .. })
        ));
    }

    fn any_order() -> impl Strategy<Value = Order> {
        prop_oneof![Just(Order::Big), Just(Order::Little)]
    }

    proptest! {
        #[test]
        fn integer_encode_then_decode_round_trips(
            raw in any::<i32>(), wo in any_order(), bo in any_order(), scale_exp in -3i32..3,
        ) {
            let mut p = point(ValueType::I32, wo, bo);
            p.scale = 10f64.powi(scale_exp);
            p.offset = 5.0;
            let value = f64::from(raw) * p.scale + p.offset;
            let words = encode(value, &p).unwrap();
            let back = decode(&words, &p).unwrap();
            prop_assert!((back - value).abs() <= 1e-9 * value.abs().max(1.0));
        }

        #[test]
        fn u64_and_f64_round_trip_bit_exact(
            raw in any::<u32>(), f in -1e12f64..1e12, wo in any_order(), bo in any_order(),
        ) {
            let p = point(ValueType::U64, wo, bo);
            let v = f64::from(raw) * 4096.0;
            prop_assert_eq!(decode(&encode(v, &p).unwrap(), &p).unwrap(), v);
            let p = point(ValueType::F64, wo, bo);
            prop_assert_eq!(decode(&encode(f, &p).unwrap(), &p).unwrap(), f);
        }

        #[test]
        fn decode_never_panics_on_any_reply(words in proptest::collection::vec(any::<u16>(), 0..6)) {
            for ty in [ValueType::U16, ValueType::I16, ValueType::U32, ValueType::I32,
                       ValueType::F32, ValueType::U64, ValueType::I64, ValueType::F64] {
                for (wo, bo) in ORDERS {
                    let _ = decode(&words, &point(ty, wo, bo));
                }
            }
        }
    }
}
