//! The gateway's configuration file: the shipped `deploy/gateway-a.toml`, mutated line by
//! line and byte by byte, and arbitrary text always load as `Ok` or a clear error (one
//! that says what is wrong), never a panic; the shipped file itself loads.

use std::path::Path;

use gatehouse_gateway::config::{Config, ConfigError};
use proptest::prelude::*;

use crate::cases;

fn shipped() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/gateway-a.toml");
    std::fs::read_to_string(path).expect("deploy/gateway-a.toml")
}

/// Values a mutation puts in place of a value: wrong types, extremes, odd text.
fn odd_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("0".to_string()),
        Just("-1".to_string()),
        Just("18446744073709551615".to_string()),
        Just("9223372036854775807".to_string()),
        Just("1e309".to_string()),
        Just("nan".to_string()),
        Just("inf".to_string()),
        Just("\"\"".to_string()),
        Just("true".to_string()),
        Just("[]".to_string()),
        Just("{}".to_string()),
        Just("\"0.0.0.0:0\"".to_string()),
        Just("\"../../etc/passwd\"".to_string()),
        Just("\"http://[::1\"".to_string()),
        "\"\\PC{0,20}\"".prop_map(|s| format!("{s:?}")),
        any::<i64>().prop_map(|n| n.to_string()),
    ]
}

/// One edit of the file's lines.
#[derive(Debug, Clone)]
enum Edit {
    Delete(prop::sample::Index),
    Duplicate(prop::sample::Index),
    /// Replace the value of a `key = value` line.
    Value(prop::sample::Index, String),
    Flip(prop::sample::Index, u8),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        1 => any::<prop::sample::Index>().prop_map(Edit::Delete),
        1 => any::<prop::sample::Index>().prop_map(Edit::Duplicate),
        3 => (any::<prop::sample::Index>(), odd_value()).prop_map(|(i, v)| Edit::Value(i, v)),
        1 => (any::<prop::sample::Index>(), 1u8..=255).prop_map(|(i, b)| Edit::Flip(i, b)),
    ]
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    for e in edits {
        if lines.is_empty() {
            break;
        }
        match e {
            Edit::Delete(i) => {
                lines.remove(i.index(lines.len()));
            }
            Edit::Duplicate(i) => {
                let n = i.index(lines.len());
                lines.insert(n, lines[n].clone());
            }
            Edit::Value(i, v) => {
                let assignments: Vec<usize> = (0..lines.len()).filter(|&n| lines[n].contains(" = ")).collect();
                if let Some(&n) = assignments.get(i.index(assignments.len().max(1))) {
                    let key = lines[n].split(" = ").next().unwrap_or_default().to_string();
                    lines[n] = format!("{key} = {v}");
                }
            }
            Edit::Flip(i, b) => {
                let mut bytes = lines.join("\n").into_bytes();
                if !bytes.is_empty() {
                    let at = i.index(bytes.len());
                    bytes[at] ^= b;
                }
                lines = String::from_utf8_lossy(&bytes).lines().map(String::from).collect();
            }
        }
    }
    lines.join("\n")
}

fn check(text: &str) -> Result<(), TestCaseError> {
    match Config::from_toml(text) {
        Ok(_) => {}
        Err(e @ (ConfigError::Parse(_) | ConfigError::Invalid(_))) => {
            prop_assert!(
                e.to_string().len() > "invalid configuration: ".len(),
                "an error says what: {}",
                e
            );
        }
        Err(e) => return Err(TestCaseError::fail(format!("from_toml reads no file: {e}"))),
    }
    Ok(())
}

/// The shipped file with a DC-09 receiver added, so mutations reach `[dc09]` too.
fn with_dc09() -> String {
    format!(
        "{}\n[dc09]\nlisten = \"127.0.0.1:0\"\nmax_connections = 64\nmax_connections_per_source = 8\n",
        shipped()
    )
}

#[test]
fn the_shipped_configuration_loads() {
    Config::from_toml(&shipped()).unwrap_or_else(|e| panic!("deploy/gateway-a.toml: {e}"));
    Config::from_toml(&with_dc09()).unwrap_or_else(|e| panic!("with [dc09]: {e}"));
}

/// Found by `a_mutated_shipped_configuration_loads_or_says_why`: `mqtt.max_payload_bytes`
/// of 2^64-1 overflowed `max_payload_bytes + 4096` in the uplink size check (a panic in a
/// debug build; in release the sum wrapped and the check passed).
#[test]
fn regression_huge_mqtt_max_payload_is_refused_not_an_overflow() {
    let text = shipped().replace("max_payload_bytes = 16384", "max_payload_bytes = 18446744073709551615");
    assert_ne!(text, shipped(), "the seed line is still in deploy/gateway-a.toml");
    assert!(matches!(Config::from_toml(&text), Err(ConfigError::Invalid(e)) if e.contains("max_payload_bytes")));
}

/// The same overflow in `[dc09]`: `max_connections_per_source + panels`.
#[test]
fn regression_huge_dc09_per_source_cap_is_refused_not_an_overflow() {
    let text = with_dc09().replace(
        "max_connections_per_source = 8",
        "max_connections_per_source = 18446744073709551615",
    );
    assert!(matches!(Config::from_toml(&text), Err(ConfigError::Invalid(e)) if e.contains("max_connections")));
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn a_mutated_shipped_configuration_loads_or_says_why(dc09 in any::<bool>(), edits in proptest::collection::vec(edit(), 1..4)) {
        let base = if dc09 { with_dc09() } else { shipped() };
        check(&apply(&base, &edits))?;
    }

    #[test]
    fn arbitrary_text_loads_or_says_why(text in "\\PC{0,200}|[\\[\\]a-z_=\" .0-9\n]{0,200}") {
        check(&text)?;
    }
}
