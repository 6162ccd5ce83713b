//! Residents' personal data never reaches a log in clear (issue 12 §4): a full demo run —
//! the real `gatehouse-sim demo` binary, its hub and three gateways at `RUST_LOG=debug` —
//! while its simulators record every card number, plate and flat they send
//! (`GATEHOUSE_SIM_SENT_PII`); then every line the run logged is searched for each of them,
//! and for the demo guards' names.

use std::process::{Command, Stdio};

use gatehouse_sim::{net::free_local_addr, scenario::GATE_GUARDS};

/// `needle` in `hay` as a whole token: not inside a longer run of letters and digits (a
/// card number's eight digits inside a millisecond timestamp is not the card number).
fn contains_token(hay: &str, needle: &str) -> bool {
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    hay.match_indices(needle)
        .any(|(i, _)| !alnum(hay[..i].chars().next_back()) && !alnum(hay[i + needle.len()..].chars().next()))
}

/// `text` without ANSI colour sequences (`ESC [ … m`), which would otherwise stand right
/// before a field's value and hide it from [`contains_token`].
fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn a_demo_run_logs_no_card_number_plate_flat_or_name_in_clear() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sent = dir.path().join("sent-pii.tsv");
    let log = dir.path().join("demo.log");
    let http = free_local_addr().expect("a port");
    let status = Command::new(env!("CARGO_BIN_EXE_gatehouse-sim"))
        .args(["demo", "--for", "35s", "--http-addr", &http.to_string(), "--data-dir"])
        .arg(dir.path().join("data"))
        .env("RUST_LOG", "debug")
        .env("NO_COLOR", "1")
        .env("GATEHOUSE_SIM_SENT_PII", &sent)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .status()
        .expect("the demo runs");
    assert!(status.success(), "the demo ended with {status}");

    let sent = std::fs::read_to_string(&sent).expect("the simulators recorded what they sent");
    let values: Vec<(&str, &str)> = sent.lines().filter_map(|l| l.split_once('\t')).collect();
    for class in ["card", "flat"] {
        assert!(
            values.iter().any(|(c, _)| *c == class),
            "the run sent no {class}, so the test could not fail: {sent}"
        );
    }
    let log = plain(&std::fs::read_to_string(&log).expect("the log"));
    assert!(log.lines().count() > 100, "a debug log was written");
    let mut leaks = Vec::new();
    for line in log.lines() {
        for (class, value) in &values {
            if contains_token(line, value) {
                leaks.push(format!("{class} {value}: {line}"));
            }
        }
        for (_, name) in GATE_GUARDS {
            if line.contains(name) {
                leaks.push(format!("name {name}: {line}"));
            }
        }
    }
    assert!(
        leaks.is_empty(),
        "{} log lines carry personal data in clear:\n{}",
        leaks.len(),
        leaks.join("\n")
    );
}

#[test]
fn tokens_are_whole() {
    assert!(contains_token("card=12345678 x", "12345678"));
    assert!(!contains_token("at 1764012345678", "12345678"));
    assert!(contains_token("plate 沪A12345.", "沪A12345"));
    assert!(contains_token(
        &plain("\u{1b}[3mcredential\u{1b}[0m\u{1b}[2m=\u{1b}[0m12345678"),
        "12345678"
    ));
}
