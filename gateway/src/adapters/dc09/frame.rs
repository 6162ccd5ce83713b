//! SIA DC-09 frames, parsed and built. Pure: bytes in, values out, no I/O, no clock.
//!
//! ```text
//! <LF> crc 0LLL "id" seq Rrcvr Lpref #acct [data] [xdata]… _HH:MM:SS,MM-DD-YYYY <CR>
//! ```
//! - `crc`: CRC-16/ARC of everything from the opening `"` to the byte before `<CR>`, as four
//!   upper-case hex digits (a few panels send it as two binary bytes; both are read).
//! - `0LLL`: the length of that same span, `0` and three hex digits.
//! - `"id"`: `SIA-DCS`, `ADM-CID`, `NULL` (a line poll), `ACK`, `NAK`, `DUH`; a `*` before it
//!   (`"*SIA-DCS"`) marks an encrypted frame.
//! - `seq` four digits, `R` receiver and `L` line prefix (1–6 hex digits each; `R` optional,
//!   `L` required by the standard but tolerated missing), `#acct` 3–16 characters.
//! - Plain: `[data]`, optional `[xdata]` blocks, optional `_timestamp` (UTC).
//! - Encrypted: after `[` the rest is hex ciphertext of `pad|data]` + xdata + `_timestamp`,
//!   AES-CBC with a zero IV; the pad (any length, any characters but `|`, `[`, `]`) makes the
//!   plaintext a whole number of blocks. The timestamp is mandatory inside.
//!
//! Field quirks tolerated: trailing NUL bytes (after the `<CR>` or inside the plaintext),
//! a trailing `<LF>` after the `<CR>`, binary CRCs, padding of any length with or without
//! the `|` separator, a sequence number in hex (one popular sender formats it so), and both
//! NAK layouts (`…0000R0L0A0[]_ts`, and `…#acct[]_ts`).

use chrono::{NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};

use super::{
    crc::crc16_arc,
    crypto::{self, Key},
};

/// Longest frame accepted: the length field holds at most 0xFFF, plus the header around it.
pub const MAX_FRAME: usize = 0xFFF + 12;

const LF: u8 = 0x0A;
const CR: u8 = 0x0D;

/// The frame's ID token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Token {
    SiaDcs,
    AdmCid,
    Null,
    Ack,
    Nak,
    Duh,
}

impl Token {
    pub fn as_str(self) -> &'static str {
        match self {
            Token::SiaDcs => "SIA-DCS",
            Token::AdmCid => "ADM-CID",
            Token::Null => "NULL",
            Token::Ack => "ACK",
            Token::Nak => "NAK",
            Token::Duh => "DUH",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "SIA-DCS" => Token::SiaDcs,
            "ADM-CID" => Token::AdmCid,
            "NULL" => Token::Null,
            "ACK" => Token::Ack,
            "NAK" => Token::Nak,
            "DUH" => Token::Duh,
            _ => return None,
        })
    }
}

/// Why bytes are not a usable frame. Each names what it saw.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("not a DC-09 frame: {0}")]
    Framing(&'static str),
    #[error("length field says {stated} bytes, the frame holds {actual}")]
    Length { stated: usize, actual: usize },
    #[error("CRC mismatch: frame says {stated:04X}, content gives {computed:04X}")]
    Crc { stated: u16, computed: u16 },
    #[error("bad header: {0}")]
    Header(String),
    #[error("unsupported ID token {0:?}")]
    UnsupportedToken(String),
    #[error("account {account} seq {seq}: bad content: {detail}")]
    Content {
        account: String,
        seq: String,
        detail: String,
    },
    #[error("account {account} seq {seq}: bad timestamp {text:?}")]
    Timestamp { account: String, seq: String, text: String },
    #[error("account {account} seq {seq}: encrypted content does not decrypt with the account's key ({detail})")]
    Decrypt {
        account: String,
        seq: String,
        detail: String,
    },
}

/// The fields after `[` once readable: the data, the extended-data blocks, the timestamp.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Content {
    /// Inside the first brackets, e.g. `#1234|1110 01 017` (for encrypted frames the pad
    /// and its `|` are already removed).
    pub data: String,
    /// Extended data blocks, without their brackets (e.g. `X030E0236`, `Afree text`).
    pub extended: Vec<String>,
    /// The sender's clock (UTC), in ms since the epoch.
    pub timestamp_ms: Option<i64>,
}

/// What follows the header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    Plain(Content),
    /// The ciphertext, hex-decoded; [`open`] turns it into [`Content`].
    Encrypted(Vec<u8>),
}

/// A checked frame: CRC and length are right and the header parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub token: Token,
    pub encrypted: bool,
    /// As sent (four characters), echoed in the answer.
    pub seq: String,
    /// Receiver number, without its `R`.
    pub receiver: Option<String>,
    /// Line prefix, without its `L`.
    pub line: Option<String>,
    /// Account, without its `#` (a NAK's `A0` is kept as `A0`).
    pub account: String,
    pub payload: Payload,
}

/// Parses one frame (`<LF>` … `<CR>`, trailing NULs allowed). Never panics.
pub fn parse(bytes: &[u8]) -> Result<Frame, FrameError> {
    let mut end = bytes.len();
    while end > 0 && matches!(bytes[end - 1], 0 | LF) {
        end -= 1;
    }
    let bytes = &bytes[..end];
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    let bytes = &bytes[start..];
    if bytes.len() < 12 || bytes[0] != LF || bytes[bytes.len() - 1] != CR {
        return Err(FrameError::Framing("a frame runs from <LF> to <CR>"));
    }
    let (stated_crc, len_at) = match header_layout(bytes) {
        Some(CrcLayout::Hex) => {
            let crc = std::str::from_utf8(&bytes[1..5])
                .ok()
                .and_then(|s| u16::from_str_radix(s, 16).ok())
                .ok_or(FrameError::Framing("CRC is not four hex digits"))?;
            (crc, 5)
        }
        Some(CrcLayout::Binary) => (u16::from_be_bytes([bytes[1], bytes[2]]), 3),
        None => return Err(FrameError::Framing("no CRC and 0LLL length before the ID token")),
    };
    let stated_len = std::str::from_utf8(&bytes[len_at..len_at + 4])
        .ok()
        .and_then(|s| usize::from_str_radix(s, 16).ok())
        .ok_or(FrameError::Framing("length is not 0LLL in hex"))?;
    let body = &bytes[len_at + 4..bytes.len() - 1];
    if stated_len != body.len() {
        return Err(FrameError::Length {
            stated: stated_len,
            actual: body.len(),
        });
    }
    let computed = crc16_arc(body);
    if computed != stated_crc {
        return Err(FrameError::Crc {
            stated: stated_crc,
            computed,
        });
    }
    let body = std::str::from_utf8(body).map_err(|_| FrameError::Header("frame is not ASCII".into()))?;
    parse_body(body)
}

enum CrcLayout {
    Hex,
    Binary,
}

fn header_layout(bytes: &[u8]) -> Option<CrcLayout> {
    if bytes.len() > 9 && bytes[5] == b'0' && bytes[9] == b'"' {
        Some(CrcLayout::Hex)
    } else if bytes.len() > 7 && bytes[3] == b'0' && bytes[7] == b'"' {
        Some(CrcLayout::Binary)
    } else {
        None
    }
}

/// How a receive buffer (a TCP stream) starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Split {
    /// Not enough bytes yet to find the end of the frame.
    NeedMore,
    /// Bytes before a frame: NULs, line ends, or garbage (`garbage` counts the last).
    Skip { len: usize, garbage: usize },
    /// A candidate frame of this many bytes (from `<LF>` through `<CR>`), for [`parse`].
    Frame(usize),
}

/// Finds the next frame in `buf`. Frames end at the first `<CR>` after the CRC (hex
/// frames are ASCII; a binary CRC may itself hold a `<CR>`, so the search starts after it).
pub fn split(buf: &[u8]) -> Split {
    let Some(lf) = buf.iter().position(|&b| b == LF) else {
        return if buf.is_empty() {
            Split::NeedMore
        } else {
            Split::Skip {
                len: buf.len(),
                garbage: buf.iter().filter(|&&b| !matches!(b, 0 | CR | b' ')).count(),
            }
        };
    };
    if lf > 0 {
        let garbage = buf[..lf].iter().filter(|&&b| !matches!(b, 0 | CR | b' ')).count();
        return Split::Skip { len: lf, garbage };
    }
    if buf.len() < 10 {
        return Split::NeedMore;
    }
    let from = match header_layout(buf) {
        Some(CrcLayout::Hex) => 9,
        Some(CrcLayout::Binary) => 7,
        // A stray <LF> (e.g. after a <CR>) or noise: drop it and look again.
        None => return Split::Skip { len: 1, garbage: 0 },
    };
    match buf[from..].iter().position(|&b| b == CR) {
        Some(i) => Split::Frame(from + i + 1),
        None if buf.len() > MAX_FRAME => Split::Skip { len: 1, garbage: 1 },
        None => Split::NeedMore,
    }
}

/// `"id"seqRrcvrLpref#acct[rest` → a frame.
fn parse_body(body: &str) -> Result<Frame, FrameError> {
    let header = |m: &str| FrameError::Header(m.to_string());
    let rest = body.strip_prefix('"').ok_or_else(|| header("no opening quote"))?;
    let close = rest.find('"').ok_or_else(|| header("ID token is not closed"))?;
    let (id, rest) = (&rest[..close], &rest[close + 1..]);
    let (encrypted, id) = match id.strip_prefix('*') {
        Some(id) => (true, id),
        None => (false, id),
    };
    let token = Token::parse(id).ok_or_else(|| FrameError::UnsupportedToken(id.to_string()))?;
    let seq = rest.get(..4).ok_or_else(|| header("no sequence number"))?;
    if !seq.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(header(&format!("sequence number {seq:?} is not four digits")));
    }
    let rest = &rest[4..];
    let bracket = rest
        .find('[')
        .ok_or_else(|| FrameError::Header(format!("seq {seq}: no '[' after the account")))?;
    let (head, after) = (&rest[..bracket], &rest[bracket + 1..]);
    // `Rrcvr Lpref #acct`, or the standard NAK's `R0 L0 A0` (whose `A0` would otherwise
    // read as more hex digits of the line prefix).
    let (mut prefixes, account) = match head.find('#') {
        Some(i) => (&head[..i], &head[i + 1..]),
        None => match head.rfind('A') {
            Some(i) if head[i + 1..].bytes().all(|b| b.is_ascii_digit()) => (&head[..i], &head[i..]),
            _ => return Err(header("no #account")),
        },
    };
    let mut take = |prefix: char| -> Option<String> {
        let tail = prefixes.strip_prefix(prefix)?;
        let n = tail.bytes().take_while(u8::is_ascii_hexdigit).count().min(6);
        let value = tail[..n].to_string();
        prefixes = &tail[n..];
        Some(value)
    };
    let receiver = take('R');
    let line = take('L');
    if !prefixes.is_empty() {
        return Err(header(&format!("unexpected {prefixes:?} before the account")));
    }
    if account.is_empty() || account.len() > 16 || !account.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(header(&format!("account {account:?} is not 1–16 letters and digits")));
    }
    let account = account.to_string();
    let payload = if encrypted {
        let cipher = crypto::decode_hex(after).ok_or_else(|| FrameError::Content {
            account: account.clone(),
            seq: seq.to_string(),
            detail: "encrypted part is not hexadecimal".into(),
        })?;
        Payload::Encrypted(cipher)
    } else {
        Payload::Plain(parse_content(after, &account, seq)?)
    };
    Ok(Frame {
        token,
        encrypted,
        seq: seq.to_string(),
        receiver,
        line,
        account,
        payload,
    })
}

/// `data][x1][x2]_timestamp` (the opening `[` already taken).
fn parse_content(text: &str, account: &str, seq: &str) -> Result<Content, FrameError> {
    let bad = |detail: String| FrameError::Content {
        account: account.to_string(),
        seq: seq.to_string(),
        detail,
    };
    let close = text.find(']').ok_or_else(|| bad("data is not closed by ']'".into()))?;
    let data = &text[..close];
    if data.contains('[') {
        return Err(bad("'[' inside the data".into()));
    }
    let mut rest = &text[close + 1..];
    let mut extended = Vec::new();
    while let Some(tail) = rest.strip_prefix('[') {
        let end = tail
            .find(']')
            .ok_or_else(|| bad("extended data is not closed by ']'".into()))?;
        extended.push(tail[..end].to_string());
        rest = &tail[end + 1..];
    }
    let timestamp_ms = if rest.is_empty() {
        None
    } else if let Some(ts) = rest.strip_prefix('_') {
        Some(parse_timestamp(ts).ok_or_else(|| FrameError::Timestamp {
            account: account.to_string(),
            seq: seq.to_string(),
            text: ts.to_string(),
        })?)
    } else {
        return Err(bad(format!("unexpected {rest:?} after the data")));
    };
    Ok(Content {
        data: data.to_string(),
        extended,
        timestamp_ms,
    })
}

/// `HH:MM:SS,MM-DD-YYYY` (UTC) → ms since the epoch.
pub fn parse_timestamp(text: &str) -> Option<i64> {
    let (time, date) = text.split_once(',')?;
    let num = |s: &str| -> Option<u32> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    let mut t = time.split(':');
    let (h, m, s) = (num(t.next()?)?, num(t.next()?)?, num(t.next()?)?);
    let mut d = date.split('-');
    let (mo, day, y) = (num(d.next()?)?, num(d.next()?)?, num(d.next()?)?);
    if t.next().is_some() || d.next().is_some() {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(i32::try_from(y).ok()?, mo, day)?;
    let time = NaiveTime::from_hms_opt(h, m, s)?;
    Some(
        Utc.from_utc_datetime(&NaiveDateTime::new(date, time))
            .timestamp_millis(),
    )
}

/// `_HH:MM:SS,MM-DD-YYYY` for a UTC instant in ms.
pub fn format_timestamp(ms: i64) -> String {
    let t = Utc.timestamp_millis_opt(ms).single().unwrap_or_default();
    t.format("_%H:%M:%S,%m-%d-%Y").to_string()
}

/// Decrypts an encrypted payload with the account's key and reads it. Any failure — a
/// wrong key gives garbage — is [`FrameError::Decrypt`]: no bracket structure, non-ASCII
/// data or no valid timestamp.
pub fn open(frame: &Frame, cipher: &[u8], key: &Key) -> Result<Content, FrameError> {
    let fail = |detail: &str| FrameError::Decrypt {
        account: frame.account.clone(),
        seq: frame.seq.clone(),
        detail: detail.to_string(),
    };
    let plain = crypto::decrypt(key, cipher).map_err(|e| fail(&e.to_string()))?;
    let mut end = plain.len();
    while end > 0 && plain[end - 1] == 0 {
        end -= 1;
    }
    let plain = &plain[..end];
    let close = plain
        .iter()
        .position(|&b| b == b']')
        .ok_or_else(|| fail("no ']' in the plaintext"))?;
    // The pad ends at the first '|' before the data's ']', if there is one.
    let data_from = plain[..close].iter().position(|&b| b == b'|').map_or(close, |i| i + 1);
    let readable = &plain[data_from..];
    if !readable.iter().all(|b| (0x20..0x7F).contains(b)) {
        return Err(fail("plaintext is not ASCII"));
    }
    let text = std::str::from_utf8(readable).map_err(|_| fail("plaintext is not ASCII"))?;
    let content = parse_content(text, &frame.account, &frame.seq).map_err(|e| fail(&e.to_string()))?;
    if content.timestamp_ms.is_none() {
        return Err(fail("no timestamp (mandatory in an encrypted frame)"));
    }
    Ok(content)
}

/// A frame to build (a sender's message or a receiver's answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub token: Token,
    pub seq: String,
    pub receiver: Option<String>,
    pub line: Option<String>,
    /// Without `#`; `A0`-style values are written as they are (the standard NAK).
    pub account: String,
    /// Inside the first brackets, e.g. `#1234|1110 01 017` or `#1234|Nri1/FA17`.
    pub data: String,
    pub extended: Vec<String>,
    pub timestamp_ms: Option<i64>,
}

impl Message {
    /// A sender's message: `"ADM-CID"` or `"SIA-DCS"` with data, or a `NULL` poll.
    pub fn new(token: Token, seq: u16, account: &str, data: &str) -> Self {
        Self {
            token,
            seq: format!("{:04}", seq % 10_000),
            receiver: None,
            line: Some("0".into()),
            account: account.to_string(),
            data: data.to_string(),
            extended: Vec::new(),
            timestamp_ms: None,
        }
    }

    pub fn with_timestamp(mut self, ms: i64) -> Self {
        self.timestamp_ms = Some(ms);
        self
    }

    pub fn with_receiver(mut self, receiver: &str) -> Self {
        self.receiver = Some(receiver.to_string());
        self
    }
}

/// Builds a plain frame.
pub fn encode(msg: &Message) -> Vec<u8> {
    let mut body = header_text(msg, false);
    body.push('[');
    body.push_str(&msg.data);
    body.push(']');
    for x in &msg.extended {
        body.push('[');
        body.push_str(x);
        body.push(']');
    }
    if let Some(ms) = msg.timestamp_ms {
        body.push_str(&format_timestamp(ms));
    }
    wrap(&body)
}

/// Builds an encrypted frame: `pad` yields pad characters (those the format forbids are
/// replaced). An encrypted frame always carries a timestamp: `now_ms` stands in when the
/// message has none.
pub fn encode_encrypted(msg: &Message, key: &Key, now_ms: i64, pad: &mut dyn FnMut() -> u8) -> Vec<u8> {
    let mut inner = String::from("|");
    inner.push_str(&msg.data);
    inner.push(']');
    for x in &msg.extended {
        inner.push('[');
        inner.push_str(x);
        inner.push(']');
    }
    inner.push_str(&format_timestamp(msg.timestamp_ms.unwrap_or(now_ms)));
    let pad_len = 16 - inner.len() % 16;
    let mut plain: Vec<u8> = (0..pad_len)
        .map(|_| match pad() {
            b'|' | b'[' | b']' => b'0',
            b if (0x20..0x7F).contains(&b) => b,
            _ => b'0',
        })
        .collect();
    plain.extend_from_slice(inner.as_bytes());
    // `plain` is a whole number of blocks by construction.
    let cipher = crypto::encrypt(key, &plain).unwrap_or_default();
    let mut body = header_text(msg, true);
    body.push('[');
    body.push_str(&crypto::encode_hex(&cipher));
    wrap(&body)
}

fn header_text(msg: &Message, encrypted: bool) -> String {
    let mut s = String::with_capacity(64);
    s.push('"');
    if encrypted {
        s.push('*');
    }
    s.push_str(msg.token.as_str());
    s.push('"');
    s.push_str(&msg.seq);
    if let Some(r) = &msg.receiver {
        s.push('R');
        s.push_str(r);
    }
    if let Some(l) = &msg.line {
        s.push('L');
        s.push_str(l);
    }
    // Only the standard NAK writes its account as `A0`; every other account gets `#`.
    let nak_layout = msg.token == Token::Nak
        && msg.account.len() > 1
        && msg.account.starts_with('A')
        && msg.account[1..].bytes().all(|b| b.is_ascii_digit());
    if !nak_layout {
        s.push('#');
    }
    s.push_str(&msg.account);
    s
}

fn wrap(body: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 10);
    out.push(LF);
    out.extend_from_slice(format!("{:04X}{:04X}", crc16_arc(body.as_bytes()), body.len() & 0xFFFF).as_bytes());
    out.extend_from_slice(body.as_bytes());
    out.push(CR);
    out
}

/// The answer's header, echoing the frame's sequence, receiver, line and account.
fn answer(frame: &Frame, token: Token) -> Message {
    Message {
        token,
        seq: frame.seq.clone(),
        receiver: frame.receiver.clone(),
        line: Some(frame.line.clone().unwrap_or_else(|| "0".into())),
        account: frame.account.clone(),
        data: String::new(),
        extended: Vec::new(),
        timestamp_ms: None,
    }
}

/// `ACK` to `frame`: plain, or encrypted (with the receiver's time) when the frame was.
pub fn ack(frame: &Frame, key: Option<&Key>, now_ms: i64, pad: &mut dyn FnMut() -> u8) -> Vec<u8> {
    let msg = answer(frame, Token::Ack);
    match (frame.encrypted, key) {
        (true, Some(key)) => encode_encrypted(&msg.with_timestamp(now_ms), key, now_ms, pad),
        _ => encode(&msg),
    }
}

/// `DUH` to `frame` (never encrypted: the receiver may not have been able to decrypt it).
pub fn duh(frame: &Frame) -> Vec<u8> {
    encode(&answer(frame, Token::Duh))
}

/// The standard `NAK`: `"NAK"0000R0L0A0[]_HH:MM:SS,MM-DD-YYYY` with the receiver's time,
/// so the sender can correct its clock.
pub fn nak(now_ms: i64) -> Vec<u8> {
    encode(&Message {
        token: Token::Nak,
        seq: "0000".into(),
        receiver: Some("0".into()),
        line: Some("0".into()),
        account: "A0".into(),
        data: String::new(),
        extended: Vec::new(),
        timestamp_ms: Some(now_ms),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_764_115_620_000; // 2025-11-26T00:07:00Z

    #[test]
    fn published_frames_parse() {
        // From fioletoven/dc09 (common/src/dc09/message.tests.rs), computed by an
        // independent implementation.
        let f = parse(b"\n96ED0016\"SIA-DCS\"0001L0#1234[]\r").expect("valid");
        assert_eq!(
            (f.token, f.seq.as_str(), f.line.as_deref(), f.account.as_str()),
            (Token::SiaDcs, "0001", Some("0"), "1234")
        );
        let f = parse(b"\nF4D20029\"SIA-DCS\"0001RF3L77#1234[#1234|NRR|Atest]\r").expect("valid");
        assert_eq!((f.receiver.as_deref(), f.line.as_deref()), (Some("F3"), Some("77")));
        assert_eq!(
            f.payload,
            Payload::Plain(Content {
                data: "#1234|NRR|Atest".into(),
                ..Default::default()
            })
        );
        let nak = parse(b"\nE4410025\"NAK\"0000R0L0A0[]_16:20:01,09-24-2025\r").expect("valid NAK");
        assert_eq!((nak.token, nak.account.as_str()), (Token::Nak, "A0"));
        let Payload::Plain(c) = nak.payload else {
            panic!("plain")
        };
        assert_eq!(c.timestamp_ms, parse_timestamp("16:20:01,09-24-2025"));
    }

    #[test]
    fn built_frames_parse_back_plain_and_encrypted() {
        let msg = Message::new(Token::AdmCid, 17, "1234", "#1234|1110 01 017")
            .with_receiver("12")
            .with_timestamp(T0);
        let f = parse(&encode(&msg)).expect("plain round trip");
        assert_eq!(f.seq, "0017");
        assert_eq!(
            f.payload,
            Payload::Plain(Content {
                data: "#1234|1110 01 017".into(),
                extended: vec![],
                timestamp_ms: Some(T0),
            })
        );
        for key in [
            "estate-a-panel01",
            "estate-a-panel01-24bytes",
            "estate-a-panel01-thirty-two-byte",
        ] {
            let key = Key::from_text(key).expect("key");
            let mut n = 0u8;
            let mut pad = || {
                n = n.wrapping_add(37);
                n
            };
            let bytes = encode_encrypted(&msg, &key, T0, &mut pad);
            let f = parse(&bytes).expect("encrypted frame parses");
            assert!(f.encrypted);
            let Payload::Encrypted(c) = &f.payload else {
                panic!("encrypted")
            };
            let content = open(&f, c, &key).expect("opens");
            assert_eq!(content.data, "#1234|1110 01 017");
            assert_eq!(content.timestamp_ms, Some(T0));
            let wrong = Key::from_text("another-key-0001").expect("key");
            assert!(matches!(open(&f, c, &wrong), Err(FrameError::Decrypt { .. })));
        }
    }

    #[test]
    fn field_quirks_are_tolerated() {
        let msg = Message::new(Token::Null, 3, "1234", "");
        let mut bytes = encode(&msg);
        bytes.extend_from_slice(&[0, 0, 0]);
        assert!(parse(&bytes).is_ok(), "trailing NULs");
        let mut bytes = encode(&msg);
        bytes.push(b'\n');
        assert!(parse(&bytes).is_ok(), "CR LF");
        // Binary CRC: two raw bytes instead of four hex digits.
        let body = br#""NULL"0003L0#1234[]"#;
        let crc = crc16_arc(body).to_be_bytes();
        let mut bin = vec![b'\n', crc[0], crc[1]];
        bin.extend_from_slice(format!("{:04X}", body.len()).as_bytes());
        bin.extend_from_slice(body);
        bin.push(b'\r');
        assert_eq!(parse(&bin).expect("binary CRC").token, Token::Null);
        // Padding with no '|' (zeros, as some receivers pad their encrypted ACKs) and
        // trailing NULs inside the plaintext.
        let key = Key::from_text("estate-a-panel01").expect("key");
        let inner = format!("]{}", format_timestamp(T0));
        let mut plain = vec![b'0'; 16 - inner.len() % 16];
        plain.extend_from_slice(inner.as_bytes());
        plain.extend_from_slice(&[0; 16]);
        let cipher = crypto::encrypt(&key, &plain).expect("blocks");
        let body = format!("\"*ACK\"0003L0#1234[{}", crypto::encode_hex(&cipher));
        let f = parse(&wrap(&body)).expect("encrypted ACK");
        let Payload::Encrypted(c) = &f.payload else {
            panic!("encrypted")
        };
        let content = open(&f, c, &key).expect("zero pad without '|' opens");
        assert_eq!((content.data.as_str(), content.timestamp_ms), ("", Some(T0)));
        // The other NAK layout, with the account.
        let f = parse(&encode(&Message {
            token: Token::Nak,
            seq: "0000".into(),
            receiver: Some("0".into()),
            line: Some("0".into()),
            account: "1234".into(),
            data: String::new(),
            extended: vec![],
            timestamp_ms: Some(T0),
        }))
        .expect("NAK with #account");
        assert_eq!((f.token, f.account.as_str()), (Token::Nak, "1234"));
        let f = parse(&nak(T0)).expect("standard NAK");
        assert_eq!(f.account, "A0");
        // A hex account that starts with A is an account, not the NAK layout.
        let key = Key::from_hex("000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F").expect("key");
        let msg = Message::new(Token::SiaDcs, 1, "ABCD", "#ABCD|Nri1/FT3").with_timestamp(T0);
        for bytes in [encode(&msg), encode_encrypted(&msg, &key, T0, &mut || b'x')] {
            assert_eq!(parse(&bytes).expect("account ABCD").account, "ABCD");
        }
    }

    #[test]
    fn broken_frames_are_refused_naming_the_fault() {
        let good = encode(&Message::new(Token::AdmCid, 5, "1234", "#1234|1110 01 017"));
        let mut bad_crc = good.clone();
        bad_crc[1] = if bad_crc[1] == b'0' { b'1' } else { b'0' };
        assert!(matches!(parse(&bad_crc), Err(FrameError::Crc { .. })));
        let mut bad_len = good.clone();
        bad_len[8] = if bad_len[8] == b'0' { b'1' } else { b'0' };
        assert!(matches!(parse(&bad_len), Err(FrameError::Length { .. })));
        let mut flipped = good.clone();
        let n = flipped.len();
        flipped[n - 3] ^= 0x01;
        assert!(
            matches!(parse(&flipped), Err(FrameError::Crc { .. })),
            "a changed zone digit"
        );
        assert!(matches!(parse(b"hello\r"), Err(FrameError::Framing(_))));
        assert!(matches!(
            parse(&wrap(r#""XYZ"0001L0#1234[]"#)),
            Err(FrameError::UnsupportedToken(t)) if t == "XYZ"
        ));
        assert!(matches!(
            parse(&wrap(r#""SIA-DCS"0001L0#1234[NFA17"#)),
            Err(FrameError::Content { .. })
        ));
        assert!(matches!(
            parse(&wrap(r#""SIA-DCS"0001L0#1234[NFA17]_25:00:00,01-01-2025"#)),
            Err(FrameError::Timestamp { .. })
        ));
        assert!(matches!(
            parse(&wrap(r#""SIA-DCS"0001L0[NFA17]"#)),
            Err(FrameError::Header(_))
        ));
    }

    #[test]
    fn a_stream_splits_into_frames() {
        let a = encode(&Message::new(Token::Null, 1, "1234", ""));
        let b = encode(&Message::new(Token::AdmCid, 2, "1234", "#1234|1110 01 017"));
        let mut stream = vec![0, 0];
        stream.extend_from_slice(&a);
        stream.extend_from_slice(&b);
        assert_eq!(split(&stream), Split::Skip { len: 2, garbage: 0 });
        let stream = &stream[2..];
        assert_eq!(split(stream), Split::Frame(a.len()));
        assert_eq!(split(&stream[a.len()..]), Split::Frame(b.len()));
        assert_eq!(split(&b[..b.len() - 1]), Split::NeedMore);
        assert_eq!(split(b"xy\n"), Split::Skip { len: 2, garbage: 2 });
    }

    #[test]
    fn timestamps_read_and_write_in_utc() {
        assert_eq!(format_timestamp(T0), "_00:07:00,11-26-2025");
        assert_eq!(parse_timestamp("00:07:00,11-26-2025"), Some(T0));
        for bad in [
            "",
            "00:07:00",
            "0:07:00,11-26-2025x",
            "24:00:00,11-26-2025",
            "00:07:00,13-01-2025",
            "+1:07:00,11-26-2025",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad:?}");
        }
    }
}
