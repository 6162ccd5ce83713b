//! The alarm book's decisions (ISA-18.2 / IEC 62682), pure: the two state bits, chattering,
//! flood, shelving limits. The writer owns one [`BookState`] and persists what it decides.

use std::collections::{HashMap, VecDeque};

use serde::Deserialize;

use crate::alarms::{AlarmKey, HistoryChange};

/// The two independent bits of an alarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Bits {
    pub active: bool,
    pub acknowledged: bool,
}

/// An input to an alarm's lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    Activate,
    Clear,
    Acknowledge { latched: bool },
}

/// Why an input was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    AlreadyAcknowledged,
}

/// The lifecycle: activation re-arms (unacknowledged again) an alarm that had cleared; an
/// acknowledgement lasts until the alarm clears; acknowledging a latched alarm clears it.
/// `first` tells a first raise from a re-raise.
pub fn lifecycle(bits: Bits, input: Input, first: bool) -> Result<(Bits, Vec<HistoryChange>), Refused> {
    Ok(match input {
        Input::Activate if bits.active => (bits, vec![HistoryChange::Updated]),
        Input::Activate => (
            Bits {
                active: true,
                acknowledged: false,
            },
            vec![if first {
                HistoryChange::Raised
            } else {
                HistoryChange::Reraised
            }],
        ),
        Input::Clear if bits.active => (Bits { active: false, ..bits }, vec![HistoryChange::Cleared]),
        Input::Clear => (bits, vec![]),
        Input::Acknowledge { .. } if bits.acknowledged => return Err(Refused::AlreadyAcknowledged),
        Input::Acknowledge { latched } => {
            let mut changes = vec![HistoryChange::Acknowledged];
            let active = if latched && bits.active {
                changes.push(HistoryChange::Cleared);
                false
            } else {
                bits.active
            };
            (
                Bits {
                    active,
                    acknowledged: true,
                },
                changes,
            )
        }
    })
}

/// Thresholds of the alarm book (`[alarms]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    pub chatter_activations: usize,
    pub chatter_window_ms: i64,
    pub flood_start_above: usize,
    pub flood_end_below: usize,
    pub flood_window_ms: i64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            chatter_activations: 3,
            chatter_window_ms: 60_000,
            flood_start_above: 10,
            flood_end_below: 5,
            flood_window_ms: 600_000,
        }
    }
}

/// A change of flood mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flood {
    Started { alarms_in_window: usize },
    Ended,
}

/// What an activation means for chattering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chatter {
    /// The alarm is chattering now (this activation included).
    pub chattering: bool,
    /// It just became chattering.
    pub started: bool,
    /// An earlier activation lies within the window (a quick re-trigger).
    pub quick_repeat: bool,
}

/// Recent activations per alarm and of the whole centre.
#[derive(Debug, Clone, Default)]
pub struct BookState {
    pub t: Thresholds,
    activations: HashMap<AlarmKey, VecDeque<i64>>,
    chattering: HashMap<AlarmKey, i64>,
    raises: VecDeque<i64>,
    flood: bool,
}

impl BookState {
    pub fn new(t: Thresholds) -> Self {
        BookState {
            t,
            ..Default::default()
        }
    }

    pub fn in_flood(&self) -> bool {
        self.flood
    }

    pub fn raises_in_window(&self) -> usize {
        self.raises.len()
    }

    /// A raise or re-raise of `key` at `now`: its chattering, and any flood change.
    pub fn activation(&mut self, key: &AlarmKey, now: i64) -> (Chatter, Option<Flood>) {
        let q = self.activations.entry(key.clone()).or_default();
        while q.front().is_some_and(|&t| t <= now - self.t.chatter_window_ms) {
            q.pop_front();
        }
        let quick_repeat = !q.is_empty();
        q.push_back(now);
        let chattering = q.len() >= self.t.chatter_activations;
        let started = chattering && !self.chattering.contains_key(key);
        if chattering {
            self.chattering.insert(key.clone(), now);
        } else if let Some(t) = self.chattering.get_mut(key) {
            *t = now;
        }
        let chatter = Chatter {
            chattering: self.chattering.contains_key(key),
            started,
            quick_repeat,
        };
        self.raises.push_back(now);
        self.expire_raises(now);
        let flood = if !self.flood && self.raises.len() > self.t.flood_start_above {
            self.flood = true;
            Some(Flood::Started {
                alarms_in_window: self.raises.len(),
            })
        } else {
            None
        };
        (chatter, flood)
    }

    fn expire_raises(&mut self, now: i64) {
        while self.raises.front().is_some_and(|&t| t <= now - self.t.flood_window_ms) {
            self.raises.pop_front();
        }
    }

    /// Time passes: floods that have calmed end; alarms quiet for a window stop chattering.
    pub fn tick(&mut self, now: i64) -> (Option<Flood>, Vec<AlarmKey>) {
        self.expire_raises(now);
        let flood = if self.flood && self.raises.len() < self.t.flood_end_below {
            self.flood = false;
            Some(Flood::Ended)
        } else {
            None
        };
        let window = self.t.chatter_window_ms;
        let mut calm: Vec<AlarmKey> = self
            .chattering
            .iter()
            .filter(|(_, last)| **last <= now - window)
            .map(|(k, _)| k.clone())
            .collect();
        calm.sort();
        for k in &calm {
            self.chattering.remove(k);
        }
        self.activations
            .retain(|_, q| q.back().is_some_and(|&t| t > now - window));
        (flood, calm)
    }

    /// Restores state at start: raise times of the recent window, and whether a flood was open.
    pub fn restore(&mut self, raises: impl IntoIterator<Item = (AlarmKey, i64)>, flood_open: bool) {
        for (key, at) in raises {
            self.raises.push_back(at);
            self.activations.entry(key).or_default().push_back(at);
        }
        self.raises.make_contiguous().sort();
        for q in self.activations.values_mut() {
            q.make_contiguous().sort();
        }
        self.flood = flood_open;
    }
}

/// Checks a shelve request; returns when it expires.
pub fn shelve_until(minutes: i64, max_minutes: i64, reason: &str, now: i64) -> Result<i64, String> {
    if reason.trim().is_empty() {
        return Err("a reason is required to shelve an alarm".into());
    }
    if !(1..=max_minutes).contains(&minutes) {
        return Err(format!("minutes must be between 1 and {max_minutes}"));
    }
    Ok(now + minutes * 60_000)
}

/// `[alarms]`: ISA-18.2 alarm-management thresholds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlarmsConfig {
    /// An alarm activating this many times within `chatter_window_s` is chattering.
    pub chatter_activations: u32,
    pub chatter_window_s: u32,
    /// More than this many new alarms within `flood_window_s` start flood mode …
    pub flood_start_above: u32,
    /// … which ends when fewer than this many remain in the window.
    pub flood_end_below: u32,
    pub flood_window_s: u32,
    /// Longest shelving an operator may ask for.
    pub shelve_max_minutes: u32,
    /// A gateway not heard from for this long raises one P4 alarm (its devices: unknown).
    pub gateway_silent_after_s: u32,
}

impl Default for AlarmsConfig {
    fn default() -> Self {
        AlarmsConfig {
            chatter_activations: 3,
            chatter_window_s: 60,
            flood_start_above: 10,
            flood_end_below: 5,
            flood_window_s: 600,
            shelve_max_minutes: 480,
            gateway_silent_after_s: 30,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use HistoryChange::*;
    use proptest::prelude::*;

    fn key(d: &str) -> AlarmKey {
        AlarmKey::new("e", d, "c")
    }

    #[test]
    fn lifecycle_table() {
        let b = |active, acknowledged| Bits { active, acknowledged };
        type Outcome = Result<(Bits, Vec<HistoryChange>), Refused>;
        let table: &[(Bits, Input, bool, Outcome)] = &[
            (
                b(false, false),
                Input::Activate,
                true,
                Ok((b(true, false), vec![Raised])),
            ),
            (
                b(false, true),
                Input::Activate,
                false,
                Ok((b(true, false), vec![Reraised])),
            ),
            (
                b(true, true),
                Input::Activate,
                false,
                Ok((b(true, true), vec![Updated])),
            ),
            (
                b(true, false),
                Input::Clear,
                false,
                Ok((b(false, false), vec![Cleared])),
            ),
            (b(false, false), Input::Clear, false, Ok((b(false, false), vec![]))),
            (
                b(true, false),
                Input::Acknowledge { latched: false },
                false,
                Ok((b(true, true), vec![Acknowledged])),
            ),
            (
                b(true, false),
                Input::Acknowledge { latched: true },
                false,
                Ok((b(false, true), vec![Acknowledged, Cleared])),
            ),
            (
                b(true, true),
                Input::Acknowledge { latched: false },
                false,
                Err(Refused::AlreadyAcknowledged),
            ),
        ];
        for (i, (bits, input, first, expected)) in table.iter().enumerate() {
            assert_eq!(&lifecycle(*bits, *input, *first), expected, "row {i}");
        }
    }

    #[test]
    fn third_activation_within_a_minute_marks_chattering_once_and_a_quiet_minute_ends_it() {
        let mut s = BookState::new(Thresholds::default());
        let k = key("d");
        let c1 = s.activation(&k, 0).0;
        assert!(!c1.chattering && !c1.quick_repeat);
        let c2 = s.activation(&k, 10_000).0;
        assert!(!c2.chattering && c2.quick_repeat);
        let c3 = s.activation(&k, 20_000).0;
        assert!(c3.chattering && c3.started);
        let c4 = s.activation(&k, 30_000).0;
        assert!(c4.chattering && !c4.started);
        assert_eq!(s.tick(60_000).1, Vec::<AlarmKey>::new());
        assert_eq!(s.tick(90_000).1, vec![k.clone()]);
        assert!(!s.activation(&k, 200_000).0.chattering);
    }

    #[test]
    fn more_than_ten_raises_in_ten_minutes_start_a_flood_that_ends_below_five() {
        let mut s = BookState::new(Thresholds::default());
        for i in 0..10 {
            assert_eq!(s.activation(&key(&format!("d{i}")), i * 1000).1, None);
        }
        assert_eq!(
            s.activation(&key("d10"), 10_000).1,
            Some(Flood::Started { alarms_in_window: 11 })
        );
        assert_eq!(s.activation(&key("d11"), 11_000).1, None, "starts once");
        assert_eq!(s.tick(300_000).0, None);
        // At 607 s the raises at 0..=7 s have left the window: 4 remain.
        assert_eq!(s.tick(607_000).0, Some(Flood::Ended));
        assert!(!s.in_flood());
    }

    #[test]
    fn shelving_needs_a_reason_and_respects_the_maximum() {
        assert_eq!(shelve_until(30, 480, "maintenance", 0), Ok(1_800_000));
        assert!(shelve_until(30, 480, " ", 0).is_err());
        assert!(shelve_until(0, 480, "x", 0).is_err());
        assert!(shelve_until(481, 480, "x", 0).is_err());
    }

    proptest! {
        /// Any interleaving of activations, clears and acknowledgements leaves both bits
        /// consistent: an alarm raised after its last acknowledgement is unacknowledged; one
        /// acknowledged after its last raise is acknowledged; a latched one acknowledged is
        /// not active; the bits change only with a history row.
        #[test]
        fn any_interleaving_of_ack_and_clear_leaves_both_bits_consistent(
            inputs in proptest::collection::vec(0u8..3, 0..60),
            latched in any::<bool>(),
        ) {
            let mut bits = Bits::default();
            let mut last_raise: Option<usize> = None;
            let mut last_ack: Option<usize> = None;
            for (i, x) in inputs.iter().enumerate() {
                let input = match x { 0 => Input::Activate, 1 => Input::Clear, _ => Input::Acknowledge { latched } };
                match lifecycle(bits, input, last_raise.is_none()) {
                    Ok((next, changes)) => {
                        prop_assert_eq!(next != bits, !changes.is_empty() && changes != vec![Updated]);
                        if changes.contains(&Raised) || changes.contains(&Reraised) { last_raise = Some(i); }
                        if changes.contains(&Acknowledged) {
                            last_ack = Some(i);
                            if latched { prop_assert!(!next.active); }
                        }
                        bits = next;
                    }
                    Err(Refused::AlreadyAcknowledged) => prop_assert!(bits.acknowledged),
                }
                match (last_raise, last_ack) {
                    (Some(r), Some(a)) if r > a => prop_assert!(!bits.acknowledged),
                    (_, Some(_)) => prop_assert!(bits.acknowledged),
                    _ => prop_assert!(!bits.acknowledged),
                }
            }
        }
    }
}
