//! Residents' personal data (issue 12 §4; docs/design.md "Personal data"): the one place
//! that says what is personal, which role sees which class of it in clear, and how it is
//! masked otherwise. Pure: no I/O; the HTTP API (a layer over every JSON answer, and the
//! SSE stream) and the CommandCentre service apply it to what they send.
//!
//! Where personal data can appear (the classification):
//! - `Card` — a badge's card number: `AccessEvent.credential` (stored in `events.payload`,
//!   never in an alarm, a timeline or a notification, so no answer carries one today); a
//!   guard's `[[guards]] credentials` (configuration only).
//! - `Plate` — `VehicleEvent.plate` (stored in the event only; the alarm names its lane).
//! - `Flat` — `IntercomEvent.from` / `to`; an emergency call's alarm carries it in its
//!   condition (`emergency_call:<from>`, docs/design.md §2.1), so it reaches `GET /alarms`,
//!   an incident's alarms, `GET /kpi/alarms` and CommandCentre's `Alarm` (the SSE stream's
//!   alarm data names no condition; it is masked all the same).
//! - `Name` — a cardholder's name: a guard's `name` in the rota's answers, a notification's
//!   `recipient`.
//!
//! Command records, incident titles, alarm messages and notification bodies carry none of
//! them by construction (docs/design.md "Personal data"). Operators' own user names
//! (`acked_by`, `done_by`, …) are staff accountability, not residents' data: never masked.
//!
//! Logs carry none of them in clear ([`mask::redacted`] when a line must mention one).

pub mod mask;

use serde_json::Value;

/// A class of residents' personal data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Card,
    Plate,
    Flat,
    Name,
}

/// What one caller may see in clear: made from its role by [`View::for_role`].
///
/// The role comes as its name (`auth::Role::as_str`) so that this module stays a leaf that
/// every front door and shell may use; a name it does not know sees everything masked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct View {
    cards: bool,
    plates: bool,
    flats: bool,
    names: bool,
}

impl View {
    /// The policy table (README "Residents' privacy"):
    ///
    /// | role         | card, plate    | flat  | name     |
    /// |--------------|----------------|-------|----------|
    /// | supervisor   | clear          | clear | clear    |
    /// | duty_manager | clear          | clear | clear    |
    /// | admin        | clear          | clear | clear    |
    /// | operator     | last 3–4 chars | clear | initials |
    /// | guard        | last 3–4 chars | `***` | initials |
    /// | facility     | last 3–4 chars | `***` | initials |
    ///
    /// An operator answers intercom calls, so it needs the flat; nobody on the floor needs a
    /// full card number or plate to act, and a supervisor (who handles complaints and the
    /// police) does.
    pub fn for_role(role: &str) -> View {
        match role {
            "supervisor" | "duty_manager" | "admin" => View::CLEAR,
            "operator" => View {
                flats: true,
                ..View::MASKED
            },
            _ => View::MASKED,
        }
    }

    /// Everything in clear.
    pub const CLEAR: View = View {
        cards: true,
        plates: true,
        flats: true,
        names: true,
    };

    /// Everything masked: what a caller nobody vouched for sees.
    pub const MASKED: View = View {
        cards: false,
        plates: false,
        flats: false,
        names: false,
    };

    /// Whether this view shows everything in clear (nothing to mask).
    pub fn is_clear(&self) -> bool {
        *self == View::CLEAR
    }

    pub fn sees(&self, class: Class) -> bool {
        match class {
            Class::Card => self.cards,
            Class::Plate => self.plates,
            Class::Flat => self.flats,
            Class::Name => self.names,
        }
    }

    /// `value` of `class` as this view shows it.
    pub fn show(&self, class: Class, value: &str) -> String {
        if self.sees(class) {
            return value.to_owned();
        }
        match class {
            Class::Card | Class::Plate => mask::tail(value),
            Class::Flat => mask::flat(value),
            Class::Name => mask::initials(value),
        }
    }

    /// An alarm condition as this view shows it: only `emergency_call:<flat>` carries
    /// personal data.
    pub fn condition(&self, condition: &str) -> String {
        match condition.split_once(':') {
            Some((EMERGENCY_CALL, from)) => format!("{EMERGENCY_CALL}:{}", self.show(Class::Flat, from)),
            _ => condition.to_owned(),
        }
    }

    /// Masks every personal field of a JSON answer in place, at any depth: `condition`,
    /// `credential`, `plate`, `flat`, a notification's `recipient`, and the `name` of a
    /// cardholder — an object that also has a `guard` or `home_estate` key (the rota's
    /// guards); `name` alone is also an estate's or a shift's, which are not personal.
    pub fn json(&self, v: &mut Value) {
        if self.is_clear() {
            return;
        }
        match v {
            Value::Array(items) => items.iter_mut().for_each(|i| self.json(i)),
            Value::Object(map) => {
                let cardholder = map.contains_key("guard") || map.contains_key("home_estate");
                for (k, item) in map.iter_mut() {
                    match (k.as_str(), &*item) {
                        ("condition", Value::String(s)) => *item = Value::String(self.condition(s)),
                        ("credential", Value::String(s)) => *item = Value::String(self.show(Class::Card, s)),
                        ("plate", Value::String(s)) => *item = Value::String(self.show(Class::Plate, s)),
                        ("flat", Value::String(s)) => *item = Value::String(self.show(Class::Flat, s)),
                        ("name", Value::String(s)) if cardholder => *item = Value::String(self.show(Class::Name, s)),
                        // A notification's recipient: a guard or another roster name.
                        ("recipient", Value::String(s)) => *item = Value::String(self.show(Class::Name, s)),
                        _ => self.json(item),
                    }
                }
            }
            _ => {}
        }
    }
}

const EMERGENCY_CALL: &str = "emergency_call";

/// An alarm condition for a log line: an emergency call's flat never in clear.
pub fn log_condition(condition: &str) -> String {
    View::MASKED.condition(condition)
}

/// A notification's body (JSON) for the `log` channel: its `recipient` as initials.
pub fn log_notification_body(body: &str) -> String {
    match serde_json::from_str::<Value>(body) {
        Ok(mut v) => {
            if let Some(Value::String(r)) = v.get_mut("recipient") {
                *r = mask::initials(r);
            }
            v.to_string()
        }
        Err(_) => mask::redacted(body),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_table() {
        let op = View::for_role("operator");
        assert_eq!(op.show(Class::Card, "12345678"), "****5678");
        assert_eq!(op.show(Class::Flat, "B3-1201"), "B3-1201");
        assert_eq!(op.show(Class::Name, "Zhang Wei"), "Z. W.");
        for r in ["guard", "facility", "someone"] {
            let v = View::for_role(r);
            assert_eq!(v.show(Class::Flat, "B3-1201"), "***");
            assert_eq!(v.show(Class::Plate, "沪A12345"), "****345");
        }
        for r in ["supervisor", "duty_manager", "admin"] {
            assert!(View::for_role(r).is_clear());
        }
    }

    #[test]
    fn conditions_mask_only_the_flat_of_an_emergency_call() {
        let g = View::for_role("guard");
        assert_eq!(g.condition("emergency_call:B3-1201"), "emergency_call:***");
        assert_eq!(g.condition("door_forced:D1"), "door_forced:D1");
        assert_eq!(g.condition("tamper"), "tamper");
        assert_eq!(log_condition("emergency_call:B3-1201"), "emergency_call:***");
        assert_eq!(
            log_notification_body(r#"{"recipient":"Zhang Wei","text":"t"}"#),
            r#"{"recipient":"Z. W.","text":"t"}"#
        );
    }

    #[test]
    fn json_answers_are_masked_at_any_depth() {
        let mut v = json!({"alarms": [{"condition": "emergency_call:B3-1201", "message": "m"}],
                           "event": {"credential": "12345678", "plate": "沪A12345"}, "condition": 3});
        View::MASKED.json(&mut v);
        assert_eq!(v["alarms"][0]["condition"], "emergency_call:***");
        assert_eq!(v["event"]["credential"], "****5678");
        assert_eq!(v["event"]["plate"], "****345");
        assert_eq!(v["condition"], 3);
        let mut rota = json!([{"guard": "g1", "name": "Zhang Wei"}, {"id": "e1", "name": "East Park"}]);
        View::MASKED.json(&mut rota);
        assert_eq!(rota[0]["name"], "Z. W.");
        assert_eq!(rota[1]["name"], "East Park");
        let mut n = json!([{"recipient": "Zhao Lei", "role": "gate_guard"}]);
        View::for_role("operator").json(&mut n);
        assert_eq!(n[0]["recipient"], "Z. L.");
        let mut clear = json!({"condition": "emergency_call:B3-1201"});
        View::CLEAR.json(&mut clear);
        assert_eq!(clear["condition"], "emergency_call:B3-1201");
    }
}
