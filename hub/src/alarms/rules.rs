//! The rule engine: canonical events in, alarm changes out. Pure: no I/O, time passed in.
//!
//! The ingest writer owns one [`RuleState`], feeds it every newly stored event
//! ([`RuleState::evaluate`]), every second's tick ([`RuleState::tick`]) and every operator
//! acknowledgement ([`RuleState::acknowledge`]), and persists the [`AlarmChange`]s it returns
//! in the same transaction as the events.
//!
//! Choices made here:
//! - *Latched event alarms* (door forced, door held open, tamper, intercom emergency call)
//!   have no "back to normal" event, so they stay active until an operator acknowledges them;
//!   acknowledging a latched alarm also clears it.
//! - Fire alarms stay active until the panel reports `reset` (the panel latches); an
//!   acknowledgement does not clear them.
//! - A repeat of an event alarm while it is active updates it (activation count, value);
//!   a repeat of a state condition (offline, zone disabled) while active changes nothing.
//! - While a limit alarm is active, a new reading that does not clear it only updates the
//!   stored value (no history row, so a chatty point does not flood the history).
//! - On-delays run on the hub's clock (`now_ms` given by the caller), not the gateway's, so a
//!   skewed gateway clock cannot make an alarm fire early or late. Pending on-delays are
//!   memory only: after a restart a condition has to hold for the delay again.
//! - Readings with quality BAD or UNCERTAIN, or a non-finite value, change nothing.

use std::collections::HashMap;

use gatehouse_proto::{DoorEventType, Event, FireEventType, IntercomEventType, Quality, event::Body};
use serde::Deserialize;

use super::{AlarmKey, Category, Priority};

/// `[[rules.points]]`: a limit rule (`low` and/or `high`) or a state rule (`when`) on a point.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PointRuleConfig {
    pub point: String,
    /// Only readings from this device (default: any device).
    pub device: Option<String>,
    /// Only readings from this estate (default: any estate).
    pub estate: Option<String>,
    pub low: Option<f64>,
    pub high: Option<f64>,
    /// A limit alarm clears only once the value is back past the limit by this much.
    #[serde(default)]
    pub deadband: f64,
    /// On-delay: the condition must hold this long before the alarm activates.
    #[serde(default)]
    pub delay_s: u32,
    /// State rule: alarm while the boolean point equals this (value 1.0 = true).
    pub when: Option<bool>,
    pub priority: Priority,
    /// Text shown with the alarm (default: generated from the rule).
    pub message: Option<String>,
}

/// What the alarm book must do. The caller supplies the time and the causing event.
#[derive(Debug, Clone, PartialEq)]
pub enum AlarmChange {
    /// The condition is (again) active: raise, re-raise or update the alarm.
    Activate(Activation),
    /// An active limit alarm's latest value, with no change of state.
    Value { key: AlarmKey, value: f64 },
    /// The condition is no longer active.
    Clear { key: AlarmKey, note: String },
    /// An operator acknowledged the alarm.
    Acknowledge {
        key: AlarmKey,
        operator: String,
        note: Option<String>,
    },
}

impl AlarmChange {
    pub fn key(&self) -> &AlarmKey {
        match self {
            AlarmChange::Activate(a) => &a.key,
            AlarmChange::Value { key, .. } | AlarmChange::Clear { key, .. } | AlarmChange::Acknowledge { key, .. } => {
                key
            }
        }
    }
}

/// Everything needed to write an active alarm.
#[derive(Debug, Clone, PartialEq)]
pub struct Activation {
    pub key: AlarmKey,
    pub gateway: String,
    pub area: String,
    pub priority: Priority,
    pub category: Category,
    pub message: String,
    /// Cleared by acknowledgement rather than by a return-to-normal event.
    pub latched: bool,
    pub value: Option<f64>,
    /// The alarm was already active (a repeat), so this is an update, not a (re-)raise.
    pub repeat: bool,
}

/// What the engine remembers about an active alarm.
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveAlarm {
    pub latched: bool,
    pub value: Option<f64>,
}

#[derive(Debug, Clone)]
struct Pending {
    due_ms: i64,
    activation: Activation,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Limit {
    Low,
    High,
    State,
}

impl Limit {
    fn as_str(self) -> &'static str {
        match self {
            Limit::Low => "low",
            Limit::High => "high",
            Limit::State => "state",
        }
    }
}

/// The engine's memory: the configured point rules, the active alarms, pending on-delays.
#[derive(Debug, Clone, Default)]
pub struct RuleState {
    rules: Vec<PointRuleConfig>,
    /// Rule indexes by point name.
    by_point: HashMap<String, Vec<usize>>,
    active: HashMap<AlarmKey, ActiveAlarm>,
    pending: HashMap<AlarmKey, Pending>,
}

impl RuleState {
    pub fn new(rules: Vec<PointRuleConfig>) -> Self {
        let mut by_point: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, r) in rules.iter().enumerate() {
            by_point.entry(r.point.clone()).or_default().push(i);
        }
        RuleState {
            rules,
            by_point,
            active: HashMap::new(),
            pending: HashMap::new(),
        }
    }

    /// Tells the engine about an alarm that is active in the alarm book (used at start).
    pub fn restore_active(&mut self, key: AlarmKey, alarm: ActiveAlarm) {
        self.active.insert(key, alarm);
    }

    /// Forgets all alarm state (before restoring it from the database again).
    pub fn forget_alarms(&mut self) {
        self.active.clear();
        self.pending.clear();
    }

    pub fn is_active(&self, key: &AlarmKey) -> bool {
        self.active.contains_key(key)
    }

    pub fn active_count(&self) -> usize {
        self.active.len()
    }

    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }

    /// The alarm changes one newly stored event causes.
    pub fn evaluate(&mut self, event: &Event, now_ms: i64) -> Vec<AlarmChange> {
        let mut out = Vec::new();
        let Some(body) = &event.body else {
            return out;
        };
        let base = Base { event };
        match body {
            Body::Fire(f) => {
                let zone = f.zone.as_str();
                let text = if f.text.is_empty() {
                    String::new()
                } else {
                    format!(": {}", f.text)
                };
                let fire = |cond: String, priority, what: &str| {
                    base.activation(
                        cond,
                        priority,
                        Category::Fire,
                        format!("{what}, zone {zone}{text}"),
                        false,
                    )
                };
                match f.r#type() {
                    FireEventType::FireAlarm => self.activate(
                        fire(format!("fire_alarm:{zone}"), Priority::P1, "Fire alarm"),
                        true,
                        &mut out,
                    ),
                    FireEventType::PreAlarm => self.activate(
                        fire(format!("pre_alarm:{zone}"), Priority::P1, "Fire pre-alarm"),
                        true,
                        &mut out,
                    ),
                    FireEventType::Evacuate => self.activate(
                        base.activation(
                            "evacuate".into(),
                            Priority::P1,
                            Category::Fire,
                            format!("Evacuation started{text}"),
                            false,
                        ),
                        true,
                        &mut out,
                    ),
                    FireEventType::Fault => self.activate(
                        fire(format!("fire_fault:{zone}"), Priority::P3, "Fire system fault"),
                        true,
                        &mut out,
                    ),
                    FireEventType::Supervisory => self.activate(
                        fire(format!("supervisory:{zone}"), Priority::P3, "Fire supervisory signal"),
                        true,
                        &mut out,
                    ),
                    FireEventType::Disablement => self.activate(
                        base.activation(
                            format!("zone_disabled:{zone}"),
                            Priority::P4,
                            Category::Device,
                            format!("Fire zone {zone} disabled{text}"),
                            false,
                        ),
                        false,
                        &mut out,
                    ),
                    FireEventType::Enablement => self.clear(
                        base.key(format!("zone_disabled:{zone}")),
                        format!("zone {zone} enabled"),
                        &mut out,
                    ),
                    FireEventType::Reset => {
                        let mut keys: Vec<AlarmKey> = self
                            .active
                            .keys()
                            .filter(|k| {
                                k.estate == event.estate_id
                                    && k.device == event.device_id
                                    && is_panel_latched(&k.condition)
                            })
                            .cloned()
                            .collect();
                        keys.sort();
                        for key in keys {
                            self.clear(key, "fire panel reset".into(), &mut out);
                        }
                    }
                    FireEventType::FireAlarmRestore
                    | FireEventType::PreAlarmRestore
                    | FireEventType::FaultRestore
                    | FireEventType::SupervisoryRestore => {
                        // A zone restore clears that zone's alarm of that condition only: never
                        // another zone's, never the panel-wide evacuation.
                        let condition = match f.r#type() {
                            FireEventType::FireAlarmRestore => "fire_alarm",
                            FireEventType::PreAlarmRestore => "pre_alarm",
                            FireEventType::FaultRestore => "fire_fault",
                            _ => "supervisory",
                        };
                        let raw = if f.raw_code.is_empty() {
                            String::new()
                        } else {
                            format!(" ({})", f.raw_code)
                        };
                        self.clear(
                            base.key(format!("{condition}:{zone}")),
                            format!("zone {zone} restored at the panel{raw}"),
                            &mut out,
                        );
                    }
                    FireEventType::Silence | FireEventType::Unspecified => {}
                }
            }
            Body::Door(d) => {
                let door = d.door.as_str();
                let (cond, message) = match d.r#type() {
                    DoorEventType::Forced => (format!("door_forced:{door}"), format!("Door {door} forced open")),
                    DoorEventType::HeldOpen => (
                        format!("door_held_open:{door}"),
                        format!("Door {door} held open ({} s)", d.seconds),
                    ),
                    DoorEventType::Tamper => ("tamper".into(), "Controller tamper".into()),
                    DoorEventType::Unspecified => return out,
                };
                self.activate(
                    base.activation(cond, Priority::P2, Category::Security, message, true),
                    true,
                    &mut out,
                );
            }
            Body::Intercom(i) => {
                if i.r#type() == IntercomEventType::EmergencyCall {
                    // `from` may name a flat: it is part of the alarm's identity, as the
                    // design asks, but is kept out of the message and of the logs.
                    self.activate(
                        base.activation(
                            format!("emergency_call:{}", i.from),
                            Priority::P2,
                            Category::Security,
                            "Intercom emergency call".into(),
                            true,
                        ),
                        true,
                        &mut out,
                    );
                }
            }
            Body::Status(s) => {
                if s.online {
                    self.clear(base.key("offline".into()), "device online".into(), &mut out);
                } else {
                    let reason = if s.reason.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", s.reason)
                    };
                    self.activate(
                        base.activation(
                            "offline".into(),
                            Priority::P4,
                            Category::Device,
                            format!("Device offline{reason}"),
                            false,
                        ),
                        false,
                        &mut out,
                    );
                }
            }
            Body::Point(p) => self.evaluate_point(event, p, now_ms, &mut out),
            Body::Vehicle(v) => {
                // The gate house's rule: every vehicle entering is a resident's or carries a
                // visitor pass. The plate is personal data: not in the alarm, only the event.
                if v.direction() == gatehouse_proto::Direction::In && !v.resident && v.pass.trim().is_empty() {
                    let lane = if v.lane.is_empty() { "-" } else { v.lane.as_str() };
                    self.activate(
                        base.activation(
                            format!("vehicle_unregistered:{lane}"),
                            Priority::P4,
                            Category::Security,
                            format!(
                                "Unregistered vehicle entered at lane {lane} (neither a resident's nor a visitor pass)"
                            ),
                            true,
                        ),
                        true,
                        &mut out,
                    );
                }
            }
            Body::Access(_) => {}
        }
        out
    }

    /// Pending on-delays that have run out by `now_ms` become active alarms.
    pub fn tick(&mut self, now_ms: i64) -> Vec<AlarmChange> {
        let mut due: Vec<AlarmKey> = self
            .pending
            .iter()
            .filter(|(_, p)| p.due_ms <= now_ms)
            .map(|(k, _)| k.clone())
            .collect();
        due.sort();
        let mut out = Vec::new();
        for key in due {
            if let Some(p) = self.pending.remove(&key) {
                self.activate(p.activation, true, &mut out);
            }
        }
        out
    }

    /// An operator acknowledges the alarm `key` (the caller has checked that it exists and
    /// is unacknowledged). A latched alarm is cleared by its acknowledgement.
    pub fn acknowledge(
        &mut self,
        key: &AlarmKey,
        latched: bool,
        operator: &str,
        note: Option<String>,
    ) -> Vec<AlarmChange> {
        let mut out = vec![AlarmChange::Acknowledge {
            key: key.clone(),
            operator: operator.to_owned(),
            note,
        }];
        if latched {
            self.clear(key.clone(), "latched alarm cleared by acknowledgement".into(), &mut out);
        }
        out
    }

    fn activate(&mut self, mut a: Activation, repeat_updates: bool, out: &mut Vec<AlarmChange>) {
        self.pending.remove(&a.key);
        if let Some(existing) = self.active.get_mut(&a.key) {
            if !repeat_updates {
                return;
            }
            existing.value = a.value;
            a.repeat = true;
        } else {
            self.active.insert(
                a.key.clone(),
                ActiveAlarm {
                    latched: a.latched,
                    value: a.value,
                },
            );
            a.repeat = false;
        }
        out.push(AlarmChange::Activate(a));
    }

    fn clear(&mut self, key: AlarmKey, note: String, out: &mut Vec<AlarmChange>) {
        self.pending.remove(&key);
        if self.active.remove(&key).is_some() {
            out.push(AlarmChange::Clear { key, note });
        }
    }

    fn evaluate_point(
        &mut self,
        event: &Event,
        p: &gatehouse_proto::PointReading,
        now_ms: i64,
        out: &mut Vec<AlarmChange>,
    ) {
        if matches!(p.quality(), Quality::Bad | Quality::Uncertain) || !p.value.is_finite() {
            return;
        }
        let Some(candidates) = self.by_point.get(&p.point).cloned() else {
            return;
        };
        let v = p.value;
        for limit in [Limit::Low, Limit::High, Limit::State] {
            // The most specific matching rule defining this condition wins.
            let best = candidates
                .iter()
                .map(|&i| &self.rules[i])
                .filter(|r| rule_matches(r, event) && defines(r, limit))
                .max_by_key(|r| specificity(r));
            let Some(rule) = best.cloned() else {
                continue;
            };
            let (in_alarm, clears) = match limit {
                Limit::Low => {
                    let low = rule.low.unwrap_or(f64::NEG_INFINITY);
                    (v < low, v >= low + rule.deadband)
                }
                Limit::High => {
                    let high = rule.high.unwrap_or(f64::INFINITY);
                    (v > high, v <= high - rule.deadband)
                }
                Limit::State => {
                    let on = (v >= 0.5) == rule.when.unwrap_or(true);
                    (on, !on)
                }
            };
            let key = AlarmKey::new(
                &event.estate_id,
                &event.device_id,
                format!("point:{}:{}", p.point, limit.as_str()),
            );
            if let Some(active) = self.active.get_mut(&key) {
                if clears {
                    self.clear(key, format!("{} back to normal ({v})", p.point), out);
                } else if active.value != Some(v) {
                    active.value = Some(v);
                    out.push(AlarmChange::Value { key, value: v });
                }
                continue;
            }
            if !in_alarm {
                // The on-delay needs the condition to hold throughout.
                self.pending.remove(&key);
                continue;
            }
            let message = rule.message.clone().unwrap_or_else(|| match limit {
                Limit::Low => format!("{} low: {v} < {}", p.point, rule.low.unwrap_or_default()),
                Limit::High => {
                    format!("{} high: {v} > {}", p.point, rule.high.unwrap_or_default())
                }
                Limit::State => format!("{} is {}", p.point, rule.when.unwrap_or(true)),
            });
            let category = if rule.priority == Priority::P1 {
                Category::Fire
            } else {
                Category::Plant
            };
            let activation = Activation {
                key: key.clone(),
                gateway: event.gateway_id.clone(),
                area: event.area.clone(),
                priority: rule.priority,
                category,
                message,
                latched: false,
                value: Some(v),
                repeat: false,
            };
            let delay_ms = i64::from(rule.delay_s) * 1000;
            if delay_ms == 0 {
                self.activate(activation, true, out);
                continue;
            }
            match self.pending.get_mut(&key) {
                Some(pending) if now_ms >= pending.due_ms => {
                    self.activate(activation, true, out);
                }
                Some(pending) => {
                    // Keep the original deadline; remember the latest value and text.
                    pending.activation = activation;
                }
                None => {
                    self.pending.insert(
                        key,
                        Pending {
                            due_ms: now_ms.saturating_add(delay_ms),
                            activation,
                        },
                    );
                }
            }
        }
    }
}

/// Conditions a fire panel holds until it is reset.
fn is_panel_latched(condition: &str) -> bool {
    condition.starts_with("fire_alarm:")
        || condition.starts_with("pre_alarm:")
        || condition == "evacuate"
        || condition.starts_with("fire_fault:")
        || condition.starts_with("supervisory:")
}

fn rule_matches(rule: &PointRuleConfig, event: &Event) -> bool {
    rule.device.as_deref().is_none_or(|d| d == event.device_id)
        && rule.estate.as_deref().is_none_or(|e| e == event.estate_id)
}

fn defines(rule: &PointRuleConfig, limit: Limit) -> bool {
    match limit {
        Limit::Low => rule.low.is_some(),
        Limit::High => rule.high.is_some(),
        Limit::State => rule.when.is_some(),
    }
}

fn specificity(rule: &PointRuleConfig) -> u8 {
    2 * u8::from(rule.device.is_some()) + u8::from(rule.estate.is_some())
}

struct Base<'a> {
    event: &'a Event,
}

impl Base<'_> {
    fn key(&self, condition: String) -> AlarmKey {
        AlarmKey::new(&self.event.estate_id, &self.event.device_id, condition)
    }

    fn activation(
        &self,
        condition: String,
        priority: Priority,
        category: Category,
        message: String,
        latched: bool,
    ) -> Activation {
        Activation {
            key: self.key(condition),
            gateway: self.event.gateway_id.clone(),
            area: self.event.area.clone(),
            priority,
            category,
            message,
            latched,
            value: None,
            repeat: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_proto::{DeviceStatus, DoorEvent, FireEvent, IntercomEvent, PointReading, VehicleEvent};

    fn ev(device: &str, body: Body) -> Event {
        Event {
            seq: 1,
            gateway_id: "gw-1".into(),
            estate_id: "estate-a".into(),
            device_id: device.into(),
            area: "pump room".into(),
            body: Some(body),
            ..Default::default()
        }
    }

    fn point(name: &str, value: f64) -> Event {
        point_q(name, value, Quality::Good)
    }

    fn point_q(name: &str, value: f64, quality: Quality) -> Event {
        ev(
            "plc-1",
            Body::Point(PointReading {
                point: name.into(),
                value,
                quality: quality as i32,
                ..Default::default()
            }),
        )
    }

    fn fire(t: FireEventType, zone: &str) -> Event {
        ev(
            "panel-1",
            Body::Fire(FireEvent {
                r#type: t as i32,
                zone: zone.into(),
                ..Default::default()
            }),
        )
    }

    fn door(t: DoorEventType, door: &str) -> Event {
        ev(
            "door-1",
            Body::Door(DoorEvent {
                r#type: t as i32,
                door: door.into(),
                seconds: 0,
            }),
        )
    }

    fn status(device: &str, online: bool) -> Event {
        ev(
            device,
            Body::Status(DeviceStatus {
                online,
                reason: String::new(),
            }),
        )
    }

    fn limit_rule(low: Option<f64>, high: Option<f64>, deadband: f64, delay_s: u32) -> PointRuleConfig {
        PointRuleConfig {
            point: "pressure".into(),
            device: None,
            estate: None,
            low,
            high,
            deadband,
            delay_s,
            when: None,
            priority: Priority::P3,
            message: None,
        }
    }

    fn state_rule(when: bool, priority: Priority) -> PointRuleConfig {
        PointRuleConfig {
            point: "pump1_fault".into(),
            when: Some(when),
            priority,
            ..limit_rule(None, None, 0.0, 0)
        }
    }

    /// What a change does, in words, for compact tables: "+cond", "~cond" (repeat),
    /// "=cond" (value), "-cond", "ack cond".
    fn summary(changes: &[AlarmChange]) -> Vec<String> {
        changes
            .iter()
            .map(|c| match c {
                AlarmChange::Activate(a) if a.repeat => format!("~{}", a.key.condition),
                AlarmChange::Activate(a) => format!("+{}", a.key.condition),
                AlarmChange::Value { key, value } => format!("={}={value}", key.condition),
                AlarmChange::Clear { key, .. } => format!("-{}", key.condition),
                AlarmChange::Acknowledge { key, .. } => format!("ack {}", key.condition),
            })
            .collect()
    }

    /// Runs (time_ms, event or tick) steps and checks the summary of each step.
    fn run(state: &mut RuleState, steps: &[(i64, Option<Event>, &[&str])]) {
        for (i, (t, event, expected)) in steps.iter().enumerate() {
            let changes = match event {
                Some(e) => state.evaluate(e, *t),
                None => state.tick(*t),
            };
            assert_eq!(summary(&changes), *expected, "step {i} at t={t}");
        }
    }

    #[test]
    fn low_limit_with_deadband_raises_below_and_clears_only_past_the_deadband() {
        let mut s = RuleState::new(vec![limit_rule(Some(0.25), None, 0.02, 0)]);
        run(
            &mut s,
            &[
                (0, Some(point("pressure", 0.30)), &[]),
                (1, Some(point("pressure", 0.20)), &["+point:pressure:low"]),
                (2, Some(point("pressure", 0.26)), &["=point:pressure:low=0.26"]),
                (3, Some(point("pressure", 0.26)), &[]),
                (4, Some(point("pressure", 0.27)), &["-point:pressure:low"]),
                (5, Some(point("pressure", 0.20)), &["+point:pressure:low"]),
            ],
        );
    }

    #[test]
    fn high_limit_with_deadband_raises_above_and_clears_below_high_minus_deadband() {
        let mut s = RuleState::new(vec![limit_rule(None, Some(10.0), 1.0, 0)]);
        run(
            &mut s,
            &[
                (0, Some(point("pressure", 10.0)), &[]),
                (1, Some(point("pressure", 10.5)), &["+point:pressure:high"]),
                (2, Some(point("pressure", 9.5)), &["=point:pressure:high=9.5"]),
                (3, Some(point("pressure", 9.0)), &["-point:pressure:high"]),
            ],
        );
    }

    #[test]
    fn on_delay_activates_only_after_the_condition_held_for_the_delay() {
        let mut s = RuleState::new(vec![limit_rule(Some(0.25), None, 0.0, 5)]);
        run(
            &mut s,
            &[
                (0, Some(point("pressure", 0.2)), &[]),
                (1_000, None, &[]),
                (3_000, Some(point("pressure", 0.1)), &[]),
                (4_999, None, &[]),
                (5_000, None, &["+point:pressure:low"]),
                (6_000, None, &[]),
            ],
        );
        assert_eq!(s.pending_count(), 0);
    }

    #[test]
    fn on_delay_is_cancelled_when_the_condition_goes_away_before_the_delay() {
        let mut s = RuleState::new(vec![limit_rule(Some(0.25), None, 0.0, 5)]);
        run(
            &mut s,
            &[
                (0, Some(point("pressure", 0.2)), &[]),
                (2_000, Some(point("pressure", 0.3)), &[]),
                (6_000, None, &[]),
                (7_000, Some(point("pressure", 0.2)), &[]),
                (11_000, None, &[]),
                (12_000, Some(point("pressure", 0.2)), &["+point:pressure:low"]),
            ],
        );
    }

    #[test]
    fn state_rule_raises_while_true_and_clears_when_false() {
        let mut s = RuleState::new(vec![state_rule(true, Priority::P3)]);
        let e = point("pump1_fault", 1.0);
        let changes = s.evaluate(&e, 0);
        assert_eq!(summary(&changes), ["+point:pump1_fault:state"]);
        let AlarmChange::Activate(a) = &changes[0] else {
            panic!("expected an activation")
        };
        assert_eq!(
            (a.priority, a.category, a.latched),
            (Priority::P3, Category::Plant, false)
        );
        run(
            &mut s,
            &[
                (1, Some(point("pump1_fault", 1.0)), &[]),
                (2, Some(point("pump1_fault", 0.0)), &["-point:pump1_fault:state"]),
                (3, Some(point("pump1_fault", 0.0)), &[]),
            ],
        );
    }

    #[test]
    fn p1_point_rule_is_category_fire() {
        let mut s = RuleState::new(vec![state_rule(false, Priority::P1)]);
        let changes = s.evaluate(&point("pump1_fault", 0.0), 0);
        let [AlarmChange::Activate(a)] = changes.as_slice() else {
            panic!("expected one activation, got {changes:?}")
        };
        assert_eq!(a.category, Category::Fire);
    }

    #[test]
    fn bad_or_uncertain_quality_readings_change_nothing() {
        let mut s = RuleState::new(vec![limit_rule(Some(0.25), None, 0.0, 0)]);
        run(
            &mut s,
            &[
                (0, Some(point_q("pressure", 0.1, Quality::Bad)), &[]),
                (1, Some(point_q("pressure", 0.1, Quality::Uncertain)), &[]),
                (2, Some(point("pressure", f64::NAN)), &[]),
                (3, Some(point("pressure", 0.1)), &["+point:pressure:low"]),
                (4, Some(point_q("pressure", 0.9, Quality::Bad)), &[]),
                (
                    5,
                    Some(point_q("pressure", 0.9, Quality::Unspecified)),
                    &["-point:pressure:low"],
                ),
            ],
        );
    }

    #[test]
    fn device_specific_rule_overrides_the_general_one_for_that_device() {
        let general = limit_rule(Some(0.25), None, 0.0, 0);
        let specific = PointRuleConfig {
            device: Some("plc-1".into()),
            low: Some(0.1),
            ..limit_rule(None, None, 0.0, 0)
        };
        let mut s = RuleState::new(vec![general, specific]);
        run(
            &mut s,
            &[
                (0, Some(point("pressure", 0.2)), &[]),
                (1, Some(point("pressure", 0.05)), &["+point:pressure:low"]),
            ],
        );
        let mut other = point("pressure", 0.2);
        other.device_id = "plc-2".into();
        assert_eq!(summary(&s.evaluate(&other, 2)), ["+point:pressure:low"]);
    }

    #[test]
    fn latched_door_alarm_repeats_as_update_and_clears_on_acknowledgement() {
        let mut s = RuleState::default();
        let changes = s.evaluate(&door(DoorEventType::Forced, "D1"), 0);
        let [AlarmChange::Activate(a)] = changes.as_slice() else {
            panic!("expected one activation, got {changes:?}")
        };
        assert_eq!(
            (a.priority, a.category, a.latched),
            (Priority::P2, Category::Security, true)
        );
        run(
            &mut s,
            &[
                (1, Some(door(DoorEventType::Forced, "D1")), &["~door_forced:D1"]),
                (2, Some(door(DoorEventType::HeldOpen, "D1")), &["+door_held_open:D1"]),
                (3, Some(door(DoorEventType::Tamper, "")), &["+tamper"]),
            ],
        );
        let key = AlarmKey::new("estate-a", "door-1", "door_forced:D1");
        let changes = s.acknowledge(&key, true, "alice", None);
        assert_eq!(summary(&changes), ["ack door_forced:D1", "-door_forced:D1"]);
        assert!(!s.is_active(&key));
        // Re-activation after the clear is a new raise (the writer re-arms acknowledged).
        run(
            &mut s,
            &[(4, Some(door(DoorEventType::Forced, "D1")), &["+door_forced:D1"])],
        );
    }

    #[test]
    fn acknowledging_a_non_latched_alarm_leaves_it_active() {
        let mut s = RuleState::default();
        s.evaluate(&fire(FireEventType::FireAlarm, "3"), 0);
        let key = AlarmKey::new("estate-a", "panel-1", "fire_alarm:3");
        assert_eq!(summary(&s.acknowledge(&key, false, "bob", None)), ["ack fire_alarm:3"]);
        assert!(s.is_active(&key));
    }

    #[test]
    fn a_zone_restore_clears_that_zone_and_condition_only() {
        let mut s = RuleState::default();
        run(
            &mut s,
            &[
                (0, Some(fire(FireEventType::FireAlarm, "17")), &["+fire_alarm:17"]),
                (1, Some(fire(FireEventType::FireAlarm, "3")), &["+fire_alarm:3"]),
                (2, Some(fire(FireEventType::Fault, "17")), &["+fire_fault:17"]),
                (3, Some(fire(FireEventType::Evacuate, "")), &["+evacuate"]),
                (
                    4,
                    Some(fire(FireEventType::FireAlarmRestore, "17")),
                    &["-fire_alarm:17"],
                ),
                // Restoring what is not active changes nothing.
                (5, Some(fire(FireEventType::FireAlarmRestore, "17")), &[]),
                (6, Some(fire(FireEventType::PreAlarmRestore, "3")), &[]),
                (7, Some(fire(FireEventType::FaultRestore, "17")), &["-fire_fault:17"]),
            ],
        );
        assert!(s.is_active(&AlarmKey::new("estate-a", "panel-1", "fire_alarm:3")));
        assert!(s.is_active(&AlarmKey::new("estate-a", "panel-1", "evacuate")));
    }

    #[test]
    fn fire_events_map_to_priorities_and_reset_clears_the_panel_latched_ones() {
        let mut s = RuleState::default();
        run(
            &mut s,
            &[
                (0, Some(fire(FireEventType::FireAlarm, "3")), &["+fire_alarm:3"]),
                (1, Some(fire(FireEventType::PreAlarm, "4")), &["+pre_alarm:4"]),
                (2, Some(fire(FireEventType::Evacuate, "")), &["+evacuate"]),
                (3, Some(fire(FireEventType::Fault, "5")), &["+fire_fault:5"]),
                (4, Some(fire(FireEventType::Supervisory, "6")), &["+supervisory:6"]),
                (5, Some(fire(FireEventType::Disablement, "7")), &["+zone_disabled:7"]),
                (6, Some(fire(FireEventType::Silence, "3")), &[]),
                (
                    7,
                    Some(fire(FireEventType::Reset, "")),
                    &[
                        "-evacuate",
                        "-fire_alarm:3",
                        "-fire_fault:5",
                        "-pre_alarm:4",
                        "-supervisory:6",
                    ],
                ),
                (8, Some(fire(FireEventType::Enablement, "7")), &["-zone_disabled:7"]),
                (9, Some(fire(FireEventType::Enablement, "7")), &[]),
            ],
        );
        let changes = s.evaluate(&fire(FireEventType::Fault, "1"), 10);
        let [AlarmChange::Activate(a)] = changes.as_slice() else {
            panic!("expected one activation, got {changes:?}")
        };
        assert_eq!((a.priority, a.category), (Priority::P3, Category::Fire));
    }

    #[test]
    fn reset_of_one_panel_leaves_another_panels_alarms_active() {
        let mut s = RuleState::default();
        s.evaluate(&fire(FireEventType::FireAlarm, "1"), 0);
        let mut other = fire(FireEventType::FireAlarm, "1");
        other.device_id = "panel-2".into();
        s.evaluate(&other, 0);
        assert_eq!(
            summary(&s.evaluate(&fire(FireEventType::Reset, ""), 1)),
            ["-fire_alarm:1"]
        );
        assert_eq!(s.active_count(), 1);
    }

    #[test]
    fn offline_raises_p4_once_and_online_clears_it() {
        let mut s = RuleState::default();
        run(
            &mut s,
            &[
                (0, Some(status("cam-1", true)), &[]),
                (1, Some(status("cam-1", false)), &["+offline"]),
                (2, Some(status("cam-1", false)), &[]),
                (3, Some(status("cam-1", true)), &["-offline"]),
                (4, Some(status("cam-1", false)), &["+offline"]),
            ],
        );
    }

    #[test]
    fn emergency_call_is_a_latched_p2_alarm_and_other_events_raise_nothing() {
        let mut s = RuleState::default();
        let call = ev(
            "intercom-1",
            Body::Intercom(IntercomEvent {
                r#type: IntercomEventType::EmergencyCall as i32,
                from: "3-1201".into(),
                ..Default::default()
            }),
        );
        assert_eq!(summary(&s.evaluate(&call, 0)), ["+emergency_call:3-1201"]);
        let plain = ev(
            "intercom-1",
            Body::Intercom(IntercomEvent {
                r#type: IntercomEventType::CallStarted as i32,
                ..Default::default()
            }),
        );
        let vehicle = ev("barrier-1", Body::Vehicle(VehicleEvent::default()));
        let mut nobody = point("pressure", 0.0);
        nobody.body = None;
        for e in [plain, vehicle, nobody] {
            assert!(s.evaluate(&e, 1).is_empty());
        }
    }

    #[test]
    fn unregistered_vehicle_entering_raises_latched_p4_without_the_plate() {
        use gatehouse_proto::Direction;
        let mut s = RuleState::default();
        let v = |direction: Direction, resident: bool, pass: &str| {
            ev(
                "barrier-1",
                Body::Vehicle(VehicleEvent {
                    lane: "L1".into(),
                    plate: "沪A12345".into(),
                    direction: direction as i32,
                    resident,
                    pass: pass.into(),
                }),
            )
        };
        assert!(s.evaluate(&v(Direction::In, true, ""), 0).is_empty());
        assert!(s.evaluate(&v(Direction::In, false, "V-17"), 0).is_empty());
        assert!(s.evaluate(&v(Direction::Out, false, ""), 0).is_empty());
        let changes = s.evaluate(&v(Direction::In, false, ""), 0);
        let [AlarmChange::Activate(a)] = changes.as_slice() else {
            panic!("expected one activation, got {changes:?}")
        };
        assert_eq!((a.priority, a.latched), (Priority::P4, true));
        assert_eq!(a.key.condition, "vehicle_unregistered:L1");
        assert!(!a.message.contains("12345"));
    }

    #[test]
    fn restored_active_alarm_is_cleared_by_its_normal_event_after_restart() {
        let mut s = RuleState::default();
        s.restore_active(
            AlarmKey::new("estate-a", "cam-1", "offline"),
            ActiveAlarm {
                latched: false,
                value: None,
            },
        );
        assert_eq!(summary(&s.evaluate(&status("cam-1", true), 0)), ["-offline"]);
    }
}
