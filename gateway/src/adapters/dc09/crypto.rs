//! DC-09 encryption: AES-128/192/256 in CBC mode with an all-zero IV and no padding (the
//! sender pads the plaintext itself with characters the parser skips). Pure.

use aes::{Aes128, Aes192, Aes256};
use cbc::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit, block_padding::NoPadding};

const IV: [u8; 16] = [0; 16];

/// An account's AES key: 16, 24 or 32 bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Key(Vec<u8>);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        write!(f, "Key(AES-{})", self.0.len() * 8)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("an AES key is 16, 24 or 32 bytes ({0} given)")]
    Length(usize),
    #[error("key_hex is not hexadecimal")]
    NotHex,
}

impl Key {
    pub fn new(bytes: Vec<u8>) -> Result<Self, KeyError> {
        match bytes.len() {
            16 | 24 | 32 => Ok(Self(bytes)),
            n => Err(KeyError::Length(n)),
        }
    }

    /// A key written as 16, 24 or 32 characters of text (its bytes are the key).
    pub fn from_text(text: &str) -> Result<Self, KeyError> {
        Self::new(text.as_bytes().to_vec())
    }

    /// A key written as 32, 48 or 64 hexadecimal digits.
    pub fn from_hex(hex: &str) -> Result<Self, KeyError> {
        Self::new(decode_hex(hex.trim()).ok_or(KeyError::NotHex)?)
    }

    pub fn bits(&self) -> usize {
        self.0.len() * 8
    }
}

/// Decodes hexadecimal digits (either case); `None` on an odd length or a non-digit.
pub fn decode_hex(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    bytes
        .chunks_exact(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

/// Upper-case hexadecimal, as DC-09 carries ciphertext.
pub fn encode_hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02X}");
    }
    out
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ciphertext of {0} bytes is not a whole number of 16-byte blocks")]
pub struct BlockError(pub usize);

/// Encrypts `plain`, whose length must be a multiple of 16.
pub fn encrypt(key: &Key, plain: &[u8]) -> Result<Vec<u8>, BlockError> {
    if !plain.len().is_multiple_of(16) {
        return Err(BlockError(plain.len()));
    }
    let mut buf = plain.to_vec();
    let n = buf.len();
    let done = match key.0.len() {
        16 => cbc::Encryptor::<Aes128>::new_from_slices(&key.0, &IV)
            .map(|c| c.encrypt_padded::<NoPadding>(&mut buf, n).is_ok()),
        24 => cbc::Encryptor::<Aes192>::new_from_slices(&key.0, &IV)
            .map(|c| c.encrypt_padded::<NoPadding>(&mut buf, n).is_ok()),
        _ => cbc::Encryptor::<Aes256>::new_from_slices(&key.0, &IV)
            .map(|c| c.encrypt_padded::<NoPadding>(&mut buf, n).is_ok()),
    };
    match done {
        Ok(true) => Ok(buf),
        _ => Err(BlockError(plain.len())),
    }
}

/// Decrypts `cipher`, whose length must be a non-zero multiple of 16. A wrong key does not
/// fail here: it yields garbage, which the frame parser refuses.
pub fn decrypt(key: &Key, cipher: &[u8]) -> Result<Vec<u8>, BlockError> {
    if cipher.is_empty() || !cipher.len().is_multiple_of(16) {
        return Err(BlockError(cipher.len()));
    }
    let mut buf = cipher.to_vec();
    let done = match key.0.len() {
        16 => cbc::Decryptor::<Aes128>::new_from_slices(&key.0, &IV)
            .map(|c| c.decrypt_padded::<NoPadding>(&mut buf).is_ok()),
        24 => cbc::Decryptor::<Aes192>::new_from_slices(&key.0, &IV)
            .map(|c| c.decrypt_padded::<NoPadding>(&mut buf).is_ok()),
        _ => cbc::Decryptor::<Aes256>::new_from_slices(&key.0, &IV)
            .map(|c| c.decrypt_padded::<NoPadding>(&mut buf).is_ok()),
    };
    match done {
        Ok(true) => Ok(buf),
        _ => Err(BlockError(cipher.len())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aes_128_cbc_matches_the_nist_vector() {
        // NIST SP 800-38A F.2.1, first block, with a zero IV equivalent: CBC with IV 0
        // on one block is ECB, whose FIPS-197 C.1 vector is known.
        let key = Key::from_hex("000102030405060708090A0B0C0D0E0F").expect("key");
        let plain = decode_hex("00112233445566778899aabbccddeeff").expect("hex");
        let c = encrypt(&key, &plain).expect("encrypt");
        assert_eq!(encode_hex(&c), "69C4E0D86A7B0430D8CDB78070B4C55A");
        assert_eq!(decrypt(&key, &c).expect("decrypt"), plain);
    }

    #[test]
    fn every_key_size_round_trips_and_keys_are_checked() {
        for key in [
            "estate-a-panel01",
            "estate-a-panel01-24bytes",
            "estate-a-panel01-thirty-two-byte",
        ] {
            let key = Key::from_text(key).expect("valid length");
            let plain = b"0123456789abcdef0123456789abcdef";
            let c = encrypt(&key, plain).expect("encrypt");
            assert_ne!(&c[..], &plain[..]);
            assert_eq!(decrypt(&key, &c).expect("decrypt"), plain, "{key:?}");
        }
        assert_eq!(Key::from_text("short"), Err(KeyError::Length(5)));
        assert_eq!(Key::from_hex("00112233445566778899AABBCCDDEEFG"), Err(KeyError::NotHex));
        assert_eq!(
            format!("{:?}", Key::from_text("estate-a-panel01").expect("key")),
            "Key(AES-128)"
        );
        assert!(decrypt(&Key::from_text("estate-a-panel01").expect("key"), &[0; 15]).is_err());
    }
}
