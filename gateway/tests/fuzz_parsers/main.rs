//! Property ("fuzz-style") tests of every parser of the gateway that takes bytes from the
//! network or a file (issue 12 §6): DC-09 frames, Contact ID and SIA DCS, the DC-09
//! receiver, MQTT device-profile payloads and topics, the vendor JSON mappings shipped in
//! `deploy/vendor/`, Modbus register decoding, the hub's `Downlink` messages, and the
//! gateway's configuration file.
//!
//! Each property asserts more than "no panic" where it can: what was built parses back to
//! what it was built from, a damaged frame is refused, what decodes re-encodes to the same.
//! Case counts keep the whole file to a few seconds on two cores; the `fuzz/` crate runs
//! the same parsers for as long as one likes under cargo-fuzz (nightly).
//!
//! Inputs that once broke a parser are kept as named `#[test]`s in the module of that
//! parser (and proptest keeps the seeds of failures in `*.proptest-regressions` files beside
//! the module that found them, committed).

mod config;
mod dc09;
mod modbus;
mod mqtt;
mod proto;

use proptest::test_runner::Config;

/// The case count of a property: cheap enough for CI, overridable with `PROPTEST_CASES`
/// for a longer local run.
pub fn cases(n: u32) -> Config {
    let n = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(n);
    Config {
        cases: n,
        ..Config::default()
    }
}
