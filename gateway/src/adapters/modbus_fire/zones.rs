//! Pure zone logic of a Modbus fire panel: a zone's status word → its conditions, and
//! a change of conditions → canonical fire events (with restores).

use super::config::ZoneBits;
use crate::adapters::fire::{FireKind, FireSignal};

/// What a zone's status word says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ZoneState {
    pub fire: bool,
    pub pre_alarm: bool,
    pub fault: bool,
    pub disabled: bool,
    /// The `supervisory` bit, or the `active` bit.
    pub supervisory: bool,
}

fn bit(word: u16, bit: Option<u8>) -> bool {
    bit.is_some_and(|b| word.checked_shr(u32::from(b)).unwrap_or(0) & 1 == 1)
}

pub fn decode(word: u16, bits: &ZoneBits) -> ZoneState {
    ZoneState {
        fire: bit(word, bits.fire),
        pre_alarm: bit(word, bits.pre_alarm),
        fault: bit(word, bits.fault),
        disabled: bit(word, bits.disabled),
        supervisory: bit(word, bits.supervisory) || bit(word, bits.active),
    }
}

/// The events that take a zone from `old` (`None`: never read) to `new`. On the first
/// read only conditions that are present are reported (there is nothing to restore).
/// Order: fire first, then pre-alarm, supervisory, fault, disablement.
pub fn changes(zone: &str, old: Option<ZoneState>, new: ZoneState, word: u16) -> Vec<FireSignal> {
    let was = old.unwrap_or_default();
    let conditions = [
        (
            was.fire,
            new.fire,
            FireKind::FireAlarm,
            FireKind::FireAlarmRestore,
            "Fire",
        ),
        (
            was.pre_alarm,
            new.pre_alarm,
            FireKind::PreAlarm,
            FireKind::PreAlarmRestore,
            "Pre-alarm",
        ),
        (
            was.supervisory,
            new.supervisory,
            FireKind::Supervisory,
            FireKind::SupervisoryRestore,
            "Supervisory",
        ),
        (was.fault, new.fault, FireKind::Fault, FireKind::FaultRestore, "Fault"),
        (
            was.disabled,
            new.disabled,
            FireKind::Disablement,
            FireKind::Enablement,
            "Disabled",
        ),
    ];
    conditions
        .into_iter()
        .filter(|(before, now, ..)| before != now)
        .map(|(_, now, set, clear, name)| FireSignal {
            kind: Some(if now { set } else { clear }),
            zone: zone.to_string(),
            point: String::new(),
            text: if now {
                name.to_string()
            } else {
                format!("{name} cleared")
            },
            raw_code: format!("zone status 0x{word:04X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bits() -> ZoneBits {
        ZoneBits {
            fire: Some(0),
            pre_alarm: Some(1),
            fault: Some(2),
            disabled: Some(3),
            supervisory: None,
            active: Some(4),
        }
    }

    fn kinds(old: Option<u16>, new: u16) -> Vec<FireKind> {
        let b = bits();
        changes("7", old.map(|w| decode(w, &b)), decode(new, &b), new)
            .into_iter()
            .filter_map(|s| s.kind)
            .collect()
    }

    #[test]
    fn zone_words_decode_by_the_configured_bits() {
        let s = decode(0b1_0101, &bits());
        assert!(s.fire && s.fault && s.supervisory && !s.pre_alarm && !s.disabled);
        assert_eq!(decode(0xFFFF, &ZoneBits::default()), ZoneState::default());
    }

    #[test]
    fn changes_become_events_and_restores() {
        use FireKind::*;
        assert_eq!(kinds(None, 0), vec![], "a quiet zone on the first read says nothing");
        assert_eq!(kinds(None, 0b1), vec![FireAlarm]);
        assert_eq!(kinds(Some(0), 0b1), vec![FireAlarm]);
        assert_eq!(kinds(Some(0b1), 0b1), vec![], "no change, no event");
        assert_eq!(kinds(Some(0b1), 0), vec![FireAlarmRestore]);
        assert_eq!(kinds(Some(0b10), 0b1), vec![FireAlarm, PreAlarmRestore]);
        assert_eq!(kinds(Some(0), 0b1100), vec![Fault, Disablement]);
        assert_eq!(kinds(Some(0b1000), 0), vec![Enablement]);
        assert_eq!(kinds(Some(0), 0b1_0000), vec![Supervisory]);
        let s = &changes("7", Some(ZoneState::default()), decode(1, &bits()), 1)[0];
        assert_eq!((s.zone.as_str(), s.raw_code.as_str()), ("7", "zone status 0x0001"));
    }
}
