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

/// `[rules]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesConfig {
    #[serde(default)]
    pub points: Vec<PointRuleConfig>,
}

#[cfg(test)]
mod tests;
