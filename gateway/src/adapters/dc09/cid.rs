//! Ademco Contact ID (SIA DC-05) as carried by DC-09 `ADM-CID`: `#acct|QEEE GG CCC`, and
//! its mapping onto canonical fire events. Pure, table-tested.
//!
//! - `Q` qualifier: 1 new event / opening, 3 restore / closing, 6 previously reported
//!   condition still present (status).
//! - `EEE` event code, `GG` group (partition), `CCC` zone (or user) number.
//!
//! Only fire-system codes are mapped; any other code is kept (raw code, type
//! `UNSPECIFIED`) and raises nothing. A code is never mapped by guess.

use crate::adapters::fire::{FireKind, FireSignal, number_label};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CidEvent {
    pub qualifier: u8,
    pub code: u16,
    pub group: String,
    pub zone: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Contact ID {data:?}: {why}")]
pub struct CidError {
    pub data: String,
    pub why: &'static str,
}

/// Parses `[#acct|]QEEE GG CCC` (the spaces may be missing: `QEEEGGCCC`).
pub fn parse(data: &str) -> Result<CidEvent, CidError> {
    let err = |why| CidError {
        data: data.to_string(),
        why,
    };
    let body = match data.strip_prefix('#') {
        Some(rest) => rest
            .split_once('|')
            .map(|(_, b)| b)
            .ok_or_else(|| err("no '|' after the account"))?,
        None => data,
    };
    let digits: String = body.chars().filter(|c| *c != ' ').collect();
    if digits.len() != 9 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err("expected QEEE GG CCC (nine digits)"));
    }
    let qualifier = digits.as_bytes()[0] - b'0';
    if !matches!(qualifier, 1 | 3 | 6) {
        return Err(err("qualifier is not 1, 3 or 6"));
    }
    let code = digits[1..4].parse().map_err(|_| err("event code"))?;
    Ok(CidEvent {
        qualifier,
        code,
        group: digits[4..6].to_string(),
        zone: digits[6..9].to_string(),
    })
}

/// The account in `#acct|…`, if the data carries one.
pub fn data_account(data: &str) -> Option<&str> {
    data.strip_prefix('#')?.split_once('|').map(|(a, _)| a)
}

/// What a Contact ID event code is, for a fire panel: its kind when new, and its name.
pub fn describe(code: u16) -> Option<(FireKind, &'static str)> {
    use FireKind::*;
    Some(match code {
        110 => (FireAlarm, "Fire"),
        111 => (FireAlarm, "Smoke"),
        112 => (FireAlarm, "Combustion"),
        113 => (FireAlarm, "Water flow"),
        114 => (FireAlarm, "Heat"),
        115 => (FireAlarm, "Pull station"),
        116 => (FireAlarm, "Duct"),
        117 => (FireAlarm, "Flame"),
        118 => (PreAlarm, "Near alarm"),
        200 => (Supervisory, "Fire supervisory"),
        201 => (Supervisory, "Low water pressure"),
        202 => (Supervisory, "Low CO2"),
        203 => (Supervisory, "Gate valve sensor"),
        204 => (Supervisory, "Low water level"),
        205 => (Supervisory, "Pump activated"),
        206 => (Supervisory, "Pump failure"),
        300 => (Fault, "System trouble"),
        301 => (Fault, "AC loss"),
        302 => (Fault, "Low system battery"),
        303 => (Fault, "RAM checksum bad"),
        304 => (Fault, "ROM checksum bad"),
        305 => (Reset, "System reset"),
        306 => (Fault, "Panel programming changed"),
        307 => (Fault, "Self-test failure"),
        308 => (Fault, "System shutdown"),
        309 => (Fault, "Battery test failure"),
        310 => (Fault, "Ground fault"),
        311 => (Fault, "Battery missing/dead"),
        312 => (Fault, "Power supply overcurrent"),
        313 => (Reset, "Engineer reset"),
        320 => (Fault, "Sounder/relay"),
        321 => (Fault, "Bell 1"),
        322 => (Fault, "Bell 2"),
        323 => (Fault, "Alarm relay"),
        324 => (Fault, "Trouble relay"),
        325 => (Fault, "Reversing relay"),
        326 => (Fault, "Notification appliance circuit 3"),
        327 => (Fault, "Notification appliance circuit 4"),
        330 => (Fault, "System peripheral trouble"),
        331 => (Fault, "Polling loop open"),
        332 => (Fault, "Polling loop short"),
        333 => (Fault, "Expansion module failure"),
        334 => (Fault, "Repeater failure"),
        335 => (Fault, "Local printer out of paper"),
        336 => (Fault, "Local printer failure"),
        337 => (Fault, "Expansion module DC loss"),
        338 => (Fault, "Expansion module low battery"),
        339 => (Fault, "Expansion module reset"),
        341 => (Fault, "Expansion module tamper"),
        342 => (Fault, "Expansion module AC loss"),
        343 => (Fault, "Expansion module self-test failure"),
        350 => (Fault, "Communication trouble"),
        351 => (Fault, "Telco 1 fault"),
        352 => (Fault, "Telco 2 fault"),
        353 => (Fault, "Long range radio transmitter fault"),
        354 => (Fault, "Failure to communicate event"),
        355 => (Fault, "Loss of radio supervision"),
        356 => (Fault, "Loss of central polling"),
        370 => (Fault, "Protection loop"),
        371 => (Fault, "Protection loop open"),
        372 => (Fault, "Protection loop short"),
        373 => (Fault, "Fire trouble"),
        380 => (Fault, "Sensor trouble"),
        381 => (Fault, "Loss of supervision - RF"),
        382 => (Fault, "Loss of supervision - RPM"),
        383 => (Fault, "Sensor tamper"),
        384 => (Fault, "RF low battery"),
        385 => (Fault, "Smoke detector high sensitivity"),
        386 => (Fault, "Smoke detector low sensitivity"),
        389 => (Fault, "Sensor self-test failure"),
        391 => (Fault, "Sensor watch trouble"),
        392 => (Fault, "Drift compensation error"),
        393 => (Fault, "Maintenance alert"),
        570 => (Disablement, "Zone/sensor bypass"),
        571 => (Disablement, "Fire bypass"),
        _ => return None,
    })
}

/// The kind of a restore (qualifier 3) of a condition of kind `kind`.
pub fn restore_of(kind: FireKind) -> Option<FireKind> {
    use FireKind::*;
    match kind {
        FireAlarm => Some(FireAlarmRestore),
        PreAlarm => Some(PreAlarmRestore),
        Fault => Some(FaultRestore),
        Supervisory => Some(SupervisoryRestore),
        Disablement => Some(Enablement),
        // A "restore" of a reset, silence or evacuation means nothing to the hub.
        _ => None,
    }
}

/// Maps a Contact ID event onto a canonical fire event, keeping the raw code (`1110`).
pub fn map(ev: &CidEvent) -> FireSignal {
    let raw_code = format!("{}{:03}", ev.qualifier, ev.code);
    let zone = number_label(&ev.zone);
    let described = describe(ev.code);
    let kind = described.and_then(|(kind, _)| match ev.qualifier {
        1 | 6 => Some(kind),
        3 => restore_of(kind),
        _ => None,
    });
    let name = described.map_or("Unmapped Contact ID code", |(_, name)| name);
    let state = match ev.qualifier {
        3 => " restored",
        6 => " (status: still present)",
        _ => "",
    };
    FireSignal {
        kind,
        zone,
        point: String::new(),
        text: format!("{name}{state}, group {}", ev.group),
        raw_code,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use FireKind::*;

    fn kind(data: &str) -> Option<FireKind> {
        map(&parse(data).unwrap_or_else(|e| panic!("{e}"))).kind
    }

    #[test]
    fn contact_id_table() {
        let cases: &[(&str, Option<FireKind>)] = &[
            ("1110 01 017", Some(FireAlarm)),
            ("3110 01 017", Some(FireAlarmRestore)),
            ("6110 01 017", Some(FireAlarm)),
            ("1111 01 003", Some(FireAlarm)),
            ("1113 01 004", Some(FireAlarm)),
            ("1114 01 005", Some(FireAlarm)),
            ("1117 01 006", Some(FireAlarm)),
            ("1118 01 007", Some(PreAlarm)),
            ("3118 01 007", Some(PreAlarmRestore)),
            ("1200 01 010", Some(Supervisory)),
            ("1201 01 010", Some(Supervisory)),
            ("1206 01 011", Some(Supervisory)),
            ("3206 01 011", Some(SupervisoryRestore)),
            ("1301 00 000", Some(Fault)),
            ("1373 01 002", Some(Fault)),
            ("3373 01 002", Some(FaultRestore)),
            ("1305 00 000", Some(Reset)),
            ("3305 00 000", None),
            ("1570 01 012", Some(Disablement)),
            ("1571 01 012", Some(Disablement)),
            ("3571 01 012", Some(Enablement)),
            // Not fire-system codes: kept, never guessed.
            ("1130 01 001", None),
            ("1401 01 001", None),
            ("1602 00 000", None),
        ];
        for (data, want) in cases {
            assert_eq!(kind(data), *want, "{data}");
        }
    }

    #[test]
    fn zone_group_raw_code_and_text_are_kept() {
        let s = map(&parse("#1234|1110 01 017").expect("valid"));
        assert_eq!((s.zone.as_str(), s.raw_code.as_str()), ("17", "1110"));
        assert_eq!(s.text, "Fire, group 01");
        let s = map(&parse("3206 02 000").expect("valid"));
        assert_eq!((s.zone.as_str(), s.raw_code.as_str()), ("0", "3206"));
        assert_eq!(s.text, "Pump failure restored, group 02");
        assert_eq!(map(&parse("111001017").expect("no spaces")).zone, "17");
        assert_eq!(data_account("#1234|1110 01 017"), Some("1234"));
    }

    #[test]
    fn malformed_contact_id_is_refused() {
        for bad in [
            "",
            "1110 01",
            "2110 01 017",
            "1110 01 01x",
            "#1234 1110 01 017",
            "11100 01 017",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
