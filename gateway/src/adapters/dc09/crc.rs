//! CRC-16/ARC (polynomial 0x8005 reflected as 0xA001, initial value 0, no final XOR), the
//! checksum SIA DC-09 puts in front of every frame. Pure.

/// CRC-16/ARC of `bytes`.
pub fn crc16_arc(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in bytes {
        crc ^= u16::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xA001 } else { crc >> 1 };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_catalogue_check_value_and_published_frames() {
        // The CRC catalogue's check value for CRC-16/ARC.
        assert_eq!(crc16_arc(b"123456789"), 0xBB3D);
        assert_eq!(crc16_arc(b""), 0);
        // Frames published with their CRC by an independent DC-09 implementation
        // (fioletoven/dc09, common/src/dc09/message.tests.rs).
        assert_eq!(crc16_arc(br#""SIA-DCS"0001L0#1234[]"#), 0x96ED);
        assert_eq!(crc16_arc(br#""NAK"0000R0L0A0[]_16:20:01,09-24-2025"#), 0xE441);
        assert_eq!(crc16_arc(br#""SIA-DCS"0001RF3L77#1234[#1234|NRR|Atest]"#), 0xF4D2);
    }
}
