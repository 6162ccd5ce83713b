//! SIA DCS (SIA DC-03 event data) as carried by DC-09 `SIA-DCS`, and its mapping onto
//! canonical fire events. Pure, table-tested.
//!
//! Data: `[#acct|]Nri1/FA17/FT3|Atext`: blocks separated by `|`; an event block starts
//! with `N` (new) or `O` (old) and holds `/`-separated fields — modifiers (`ri` area,
//! `ti` time, `id` user, `pi` point) and events (two letters and an address, the zone or
//! point number). An `A` block is free text.

use crate::adapters::fire::{FireKind, FireSignal, number_label};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiaEvent {
    pub code: String,
    pub address: String,
    pub area: String,
    pub point: String,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("SIA DCS {data:?}: {why}")]
pub struct SiaError {
    pub data: String,
    pub why: String,
}

/// Parses the data into its events (at least one).
pub fn parse(data: &str) -> Result<Vec<SiaEvent>, SiaError> {
    let err = |why: String| SiaError {
        data: data.to_string(),
        why,
    };
    let body = match data.strip_prefix('#') {
        Some(rest) => rest.split_once('|').map(|(_, b)| b).unwrap_or(""),
        None => data,
    };
    let mut events = Vec::new();
    let mut text = String::new();
    for block in body.split('|') {
        if let Some(t) = block.strip_prefix('A') {
            text = t.trim().to_string();
            continue;
        }
        let fields = block.strip_prefix(['N', 'O']).unwrap_or(block);
        let (mut area, mut point) = (String::new(), String::new());
        for field in fields.split('/').filter(|f| !f.is_empty()) {
            let b = field.as_bytes();
            if b.len() >= 2 && b[0].is_ascii_lowercase() && b[1].is_ascii_lowercase() {
                match &field[..2] {
                    "ri" => area = number_label(&field[2..]),
                    "pi" => point = number_label(&field[2..]),
                    _ => {} // ti, id, da, …: not needed for the canonical event
                }
                continue;
            }
            if b.len() < 2 || !b[0].is_ascii_uppercase() || !b[1].is_ascii_uppercase() {
                return Err(err(format!("field {field:?} is neither a modifier nor an event code")));
            }
            let rest = &field[2..];
            let (address, inline_text) = match rest.split_once('^') {
                Some((a, t)) => (a, t.trim_end_matches('^')),
                None => (rest, ""),
            };
            if !address.bytes().all(|c| c.is_ascii_alphanumeric()) {
                return Err(err(format!("address {address:?} of {} is not a number", &field[..2])));
            }
            events.push(SiaEvent {
                code: field[..2].to_string(),
                address: number_label(address),
                area: area.clone(),
                point: point.clone(),
                text: inline_text.to_string(),
            });
        }
    }
    if events.is_empty() {
        return Err(err("no event code".into()));
    }
    if !text.is_empty() {
        for e in &mut events {
            if e.text.is_empty() {
                e.text = text.clone();
            }
        }
    }
    Ok(events)
}

/// The canonical kinds an SIA code maps to (a code may name two: `FR` clears an alarm or
/// a trouble), and its name. `None`: not a fire-system code.
pub fn describe(code: &str) -> Option<(&'static [FireKind], &'static str)> {
    use FireKind::*;
    Some(match code {
        "FA" => (&[FireAlarm], "Fire alarm"),
        "FM" => (&[FireAlarm], "Fire alarm, cross point"),
        "FG" => (&[PreAlarm], "Unverified fire event"),
        "FH" => (&[FireAlarmRestore], "Fire alarm restore"),
        "FR" => (&[FireAlarmRestore, FaultRestore], "Fire restoral"),
        "FT" => (&[Fault], "Fire trouble"),
        "FY" => (&[Fault], "Missing fire trouble"),
        "FW" => (&[Fault], "Fire supervisory trouble"),
        "FZ" => (&[Fault], "Missing fire supervision"),
        "FJ" => (&[FaultRestore], "Fire trouble restore"),
        "FQ" => (&[FaultRestore], "Fire supervisory trouble restore"),
        "FS" => (&[Supervisory], "Fire supervisory"),
        "FV" => (&[SupervisoryRestore], "Fire supervision restore"),
        "FB" => (&[Disablement], "Fire bypass"),
        "FU" => (&[Enablement], "Fire unbypass"),
        "FL" => (&[Silence], "Fire alarm silenced"),
        "FI" => (&[Disablement], "Fire test begun"),
        "FK" => (&[Enablement], "Fire test ended"),
        "SA" => (&[FireAlarm], "Sprinkler alarm"),
        "SH" => (&[FireAlarmRestore], "Sprinkler alarm restore"),
        "SS" => (&[Supervisory], "Sprinkler supervisory"),
        "ST" => (&[Fault], "Sprinkler trouble"),
        "SJ" => (&[FaultRestore], "Sprinkler trouble restore"),
        "KA" => (&[FireAlarm], "Heat alarm"),
        "KH" => (&[FireAlarmRestore], "Heat alarm restore"),
        "OR" => (&[Reset], "Reset from alarm"),
        "RN" => (&[Reset], "Remote reset"),
        _ => return None,
    })
}

/// Maps one SIA event onto canonical fire events (one, two for `FR`, or one unmapped).
pub fn map(ev: &SiaEvent) -> Vec<FireSignal> {
    // FI/FK concern an area, not a zone: their "zone" is the test of that area, so the
    // end of a test never clears a zone's bypass.
    let zone = match ev.code.as_str() {
        "FI" | "FK" => format!(
            "test-area-{}",
            if ev.address.is_empty() { &ev.area } else { &ev.address }
        ),
        _ => ev.address.clone(),
    };
    let signal = |kind: Option<FireKind>, name: &str| FireSignal {
        kind,
        zone: zone.clone(),
        point: ev.point.clone(),
        text: match (ev.text.is_empty(), ev.area.is_empty()) {
            (true, true) => name.to_string(),
            (true, false) => format!("{name}, area {}", ev.area),
            (false, true) => format!("{name}: {}", ev.text),
            (false, false) => format!("{name}, area {}: {}", ev.area, ev.text),
        },
        raw_code: ev.code.clone(),
    };
    match describe(&ev.code) {
        Some((kinds, name)) => kinds.iter().map(|k| signal(Some(*k), name)).collect(),
        None => vec![signal(None, "Unmapped SIA code")],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use FireKind::*;

    #[test]
    fn sia_dcs_table() {
        let cases: &[(&str, &[Option<FireKind>])] = &[
            ("Nri1/FA17", &[Some(FireAlarm)]),
            ("NFH17", &[Some(FireAlarmRestore)]),
            ("NFT3", &[Some(Fault)]),
            ("NFJ3", &[Some(FaultRestore)]),
            ("NFS4", &[Some(Supervisory)]),
            ("NFV4", &[Some(SupervisoryRestore)]),
            ("NFB5", &[Some(Disablement)]),
            ("NFU5", &[Some(Enablement)]),
            ("NFL0", &[Some(Silence)]),
            ("NFI1", &[Some(Disablement)]),
            ("NFK1", &[Some(Enablement)]),
            ("NOR1", &[Some(Reset)]),
            ("NRN", &[Some(Reset)]),
            ("NFR9", &[Some(FireAlarmRestore), Some(FaultRestore)]),
            ("NBA2", &[None]),
            ("NRP", &[None]),
        ];
        for (data, want) in cases {
            let got: Vec<_> = parse(data)
                .unwrap_or_else(|e| panic!("{e}"))
                .iter()
                .flat_map(map)
                .map(|s| s.kind)
                .collect();
            assert_eq!(&got, want, "{data}");
        }
    }

    #[test]
    fn zone_area_point_text_and_several_events_per_frame() {
        let evs = parse("#1234|Nri01/pi05/FA0017/FT3^Loop 2 open^|ABlock 3 lobby").expect("valid");
        assert_eq!(evs.len(), 2);
        let a = &map(&evs[0])[0];
        assert_eq!(
            (a.zone.as_str(), a.point.as_str(), a.raw_code.as_str(), a.text.as_str()),
            ("17", "5", "FA", "Fire alarm, area 1: Block 3 lobby")
        );
        let t = &map(&evs[1])[0];
        assert_eq!(t.text, "Fire trouble, area 1: Loop 2 open");
        let fi = &map(&parse("Nri2/FI").expect("valid")[0])[0];
        assert_eq!(fi.zone, "test-area-2");
    }

    #[test]
    fn malformed_sia_is_refused() {
        for bad in ["", "N", "#1234|", "Nri1/F", "Nri1/fa17", "NFA1.7"] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
