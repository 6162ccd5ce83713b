//! Vendor JSON over MQTT, mapped by configuration (docs/design.md, MQTT device profile:
//! "mapped by configuration, not by code"). Pure: a mapping turns a vendor payload into a device-profile-v1 object
//! (`{"type": …, fields…}`), which [`super::translate::translate_value`] then checks and
//! translates like any profile publish — so a vendor event is held to the same field rules,
//! and its rejections are counted under the same reasons.
//!
//! ```toml
//! [[vendor_mappings]]
//! name = "uhppoted-mqtt"
//! device_field = "message.event.device-id"     # tells apart devices sharing a topic
//! time_field = "…"                             # optional, RFC 3339; else receive time
//! [[vendor_mappings.rules]]                    # first rule whose `when` holds wins
//! when = { "message.event.event-type" = 1 }
//! type = "access"                              # or { path = "…", map = { "38" = "door_forced" } }
//! [vendor_mappings.rules.fields]               # canonical field = where it comes from
//! door = "message.event.door-id"               # a path (numbers become text where
//! credential = "message.event.card-number"     #   the profile wants text)
//! result = { path = "message.event.access-granted", map = { "true" = "granted", "false" = "denied" } }
//! seconds = { value = 0 }                      # a constant
//! ```
//! A path is dot-separated object keys (keys may hold `-`), with numbers indexing arrays.

use std::collections::{BTreeMap, HashSet};

use serde::Deserialize;
use serde_json::{Map, Value};

use super::config::DeviceVendorConfig;
use super::translate::{self, Reject};
use crate::{
    metrics::RejectReason,
    registry::{DeviceInfo, DeviceKind},
};

/// One vendor format.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VendorMapping {
    pub name: String,
    /// Path of the field that names the device (compared with a device's `device_key`).
    #[serde(default)]
    pub device_field: Option<String>,
    /// Path of the event time (RFC 3339); absent or missing: the receive time.
    #[serde(default)]
    pub time_field: Option<String>,
    pub rules: Vec<Rule>,
}

/// When the payload looks like this, it is this canonical event.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Path → the value the field must have (number, text or bool; numbers compare by
    /// value, and a text value also matches a number that prints as it).
    #[serde(default)]
    pub when: BTreeMap<String, Value>,
    /// The profile type: a constant, or a value map.
    #[serde(rename = "type")]
    pub event_type: TypeSource,
    #[serde(default)]
    pub fields: BTreeMap<String, FieldSource>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum TypeSource {
    Const(String),
    Mapped(Mapped),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum FieldSource {
    Path(String),
    Const { value: Value },
    Mapped(Mapped),
}

/// A field read at `path` and looked up in `map` (keys are the value as text); `default`
/// when the field is missing or not in the map (else the payload is refused). With no
/// `map`, the value is taken as it is.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapped {
    pub path: String,
    #[serde(default)]
    pub map: BTreeMap<String, Value>,
    #[serde(default)]
    pub default: Option<Value>,
}

/// The value at `path` in `v`.
pub fn lookup<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, key| match v {
        Value::Object(m) => m.get(key),
        Value::Array(a) => key.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    })
}

/// A scalar as the text a map key or a `device_key` is written in.
pub fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn matches(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (Value::String(a), other) => as_text(other).as_deref() == Some(a.as_str()),
        (a, b) => a == b,
    }
}

/// Profile fields that are text, and the one that is a number: vendor numbers and text
/// are coerced to them (a door "1" is the door 1).
fn coerce(field: &str, v: Value) -> Value {
    match field {
        "seconds" => match &v {
            Value::String(s) => s.trim().parse::<u64>().map(Value::from).unwrap_or(v),
            _ => v,
        },
        "resident" => v,
        _ => match &v {
            Value::Number(_) | Value::Bool(_) => Value::String(as_text(&v).unwrap_or_default()),
            _ => v,
        },
    }
}

fn resolve_mapped(m: &Mapped, payload: &Value, what: &str) -> Result<Option<Value>, Reject> {
    let Some(found) = lookup(payload, &m.path).filter(|v| !v.is_null()) else {
        return Ok(m.default.clone());
    };
    if m.map.is_empty() {
        return Ok(Some(found.clone()));
    }
    let key = as_text(found).unwrap_or_default();
    match m.map.get(&key).or(m.default.as_ref()) {
        Some(v) => Ok(Some(v.clone())),
        None => Err(Reject {
            reason: RejectReason::UnknownType,
            detail: format!("{what}: value {key:?} at {:?} is not in the mapping's map", m.path),
        }),
    }
}

impl VendorMapping {
    /// The device key of a payload (the `device_field`'s value as text).
    pub fn device_key(&self, payload: &Value) -> Option<String> {
        lookup(payload, self.device_field.as_deref()?).and_then(as_text)
    }

    /// Turns a vendor payload into a profile-v1 object.
    pub fn to_profile(&self, payload: &Value) -> Result<Value, Reject> {
        let rule = self
            .rules
            .iter()
            .find(|r| {
                r.when
                    .iter()
                    .all(|(path, want)| lookup(payload, path).is_some_and(|got| matches(want, got)))
            })
            .ok_or_else(|| Reject {
                reason: RejectReason::UnknownType,
                detail: format!("no rule of vendor mapping {:?} matches the payload", self.name),
            })?;
        let ty = match &rule.event_type {
            TypeSource::Const(t) => Value::String(t.clone()),
            TypeSource::Mapped(m) => resolve_mapped(m, payload, "type")?.ok_or_else(|| Reject {
                reason: RejectReason::UnknownType,
                detail: format!("vendor mapping {:?}: no type at {:?}", self.name, m.path),
            })?,
        };
        let mut out = Map::new();
        out.insert("type".into(), ty);
        for (field, source) in &rule.fields {
            let value = match source {
                FieldSource::Path(p) => lookup(payload, p).cloned(),
                FieldSource::Const { value } => Some(value.clone()),
                FieldSource::Mapped(m) => resolve_mapped(m, payload, field)?,
            };
            if let Some(v) = value.filter(|v| !v.is_null()) {
                out.insert(field.clone(), coerce(field, v));
            }
        }
        if let Some(ts) = self.time_field.as_deref().and_then(|p| lookup(payload, p)) {
            out.insert("ts".into(), ts.clone());
        }
        Ok(Value::Object(out))
    }
}

/// Translates a vendor payload from `device` with `mapping`: the occurred-at time and the
/// body, exactly as a profile publish would give them.
pub fn translate(
    mapping: &VendorMapping,
    device: &DeviceInfo,
    payload: &Value,
    received_ms: i64,
) -> Result<(i64, gatehouse_proto::event::Body), Reject> {
    let profile = mapping.to_profile(payload)?;
    translate::translate_value(device, &profile, received_ms)
}

/// Whether MQTT topic `topic` matches subscription filter `filter` (`+` one level, `#` the
/// rest).
pub fn topic_matches(filter: &str, topic: &str) -> bool {
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// One device bound to a vendor topic.
#[derive(Debug, Clone)]
pub struct Binding {
    pub device_id: String,
    pub mapping: usize,
    pub device_key: Option<String>,
}

/// The vendor side of the MQTT adapter: topic filters, and the devices behind each.
#[derive(Debug, Clone, Default)]
pub struct VendorRouter {
    pub mappings: Vec<VendorMapping>,
    /// Topic filter → devices publishing there.
    pub topics: Vec<(String, Vec<Binding>)>,
}

impl VendorRouter {
    /// The router of `mappings` and the devices bound to them (device id, its
    /// `[devices.vendor]` table).
    pub fn new<'a>(
        mappings: Vec<VendorMapping>,
        devices: impl IntoIterator<Item = (&'a str, &'a DeviceVendorConfig)>,
    ) -> Self {
        let mut router = VendorRouter {
            mappings,
            topics: Vec::new(),
        };
        for (id, v) in devices {
            let Some(mapping) = router.mappings.iter().position(|m| m.name == v.mapping) else {
                continue;
            };
            let binding = Binding {
                device_id: id.to_string(),
                mapping,
                device_key: v.device_key.clone(),
            };
            match router.topics.iter_mut().find(|(f, _)| *f == v.topic) {
                Some((_, list)) => list.push(binding),
                None => router.topics.push((v.topic.clone(), vec![binding])),
            }
        }
        router
    }

    pub fn is_empty(&self) -> bool {
        self.topics.is_empty()
    }

    /// The device a vendor publish on `topic` comes from, and its mapping. `Err` names
    /// why none does (a topic nobody is bound to, or a device key nobody has).
    pub fn route(&self, topic: &str, payload: &Value) -> Result<(&Binding, &VendorMapping), Reject> {
        let unknown = |detail: String| Reject {
            reason: RejectReason::UnknownDevice,
            detail,
        };
        let (_, bindings) = self
            .topics
            .iter()
            .find(|(f, _)| topic_matches(f, topic))
            .ok_or_else(|| unknown(format!("no vendor device publishes on {topic:?}")))?;
        for b in bindings {
            let Some(mapping) = self.mappings.get(b.mapping) else {
                continue;
            };
            match &b.device_key {
                None => return Ok((b, mapping)),
                Some(key) if mapping.device_key(payload).as_deref() == Some(key.as_str()) => return Ok((b, mapping)),
                Some(_) => {}
            }
        }
        let key = bindings
            .first()
            .and_then(|b| self.mappings.get(b.mapping))
            .and_then(|m| m.device_key(payload));
        Err(unknown(format!(
            "no device on {topic:?} has device key {}",
            key.map_or_else(|| "(none in the payload)".to_string(), |k| format!("{k:?}"))
        )))
    }
}

/// Load-time checks of the vendor mappings and the devices bound to them (id, kind,
/// `[devices.vendor]` table); `mqtt` is whether the file has an `[mqtt]` section.
pub fn validate(
    mappings: &[VendorMapping],
    devices: &[(&str, DeviceKind, &DeviceVendorConfig)],
    mqtt: bool,
) -> Result<(), String> {
    let mut names = HashSet::new();
    for m in mappings {
        if !names.insert(m.name.as_str()) {
            return Err(format!("vendor mapping {:?} appears twice", m.name));
        }
        if m.rules.is_empty() {
            return Err(format!("vendor mapping {:?} has no rules", m.name));
        }
        for (i, r) in m.rules.iter().enumerate() {
            if let TypeSource::Const(t) = &r.event_type
                && !PROFILE_TYPES.contains(&t.as_str())
            {
                return Err(format!(
                    "vendor mapping {:?} rule {}: type {t:?} is not a profile type",
                    m.name,
                    i + 1
                ));
            }
            if let TypeSource::Mapped(map) = &r.event_type {
                for t in map.map.values().chain(map.default.iter()) {
                    if !t.as_str().is_some_and(|t| PROFILE_TYPES.contains(&t)) {
                        return Err(format!(
                            "vendor mapping {:?} rule {}: type {t} is not a profile type",
                            m.name,
                            i + 1
                        ));
                    }
                }
            }
        }
    }
    let mut per_topic: BTreeMap<&str, Vec<&DeviceVendorConfig>> = BTreeMap::new();
    for &(id, kind, v) in devices {
        let bad = |m: String| Err(format!("device {id:?}: {m}"));
        if !mqtt {
            return bad("publishes vendor JSON but there is no [mqtt] section".into());
        }
        let Some(mapping) = mappings.iter().find(|m| m.name == v.mapping) else {
            return bad(format!(
                "vendor.mapping {:?} is not a [[vendor_mappings]] name",
                v.mapping
            ));
        };
        if v.topic.is_empty() || v.topic.starts_with('$') {
            return bad(format!("vendor.topic {:?} is not a topic filter", v.topic));
        }
        for own in [
            "gatehouse/v1/d/event",
            "gatehouse/v1/d/status",
            "gatehouse/v1/d/command/result",
        ] {
            if topic_matches(&v.topic, own) {
                return bad(format!(
                    "vendor.topic {:?} overlaps the device profile's topics",
                    v.topic
                ));
            }
        }
        if v.device_key.is_some() && mapping.device_field.is_none() {
            return bad(format!(
                "vendor.device_key needs mapping {:?} to have a device_field",
                mapping.name
            ));
        }
        if matches!(kind, DeviceKind::Modbus) {
            return bad("a Modbus device does not publish JSON".into());
        }
        per_topic.entry(v.topic.as_str()).or_default().push(v);
    }
    for (topic, devices) in &per_topic {
        if devices.len() > 1 && devices.iter().any(|v| v.device_key.is_none()) {
            return Err(format!(
                "devices sharing vendor topic {topic:?} each need a vendor.device_key"
            ));
        }
        let mut keys = HashSet::new();
        for d in devices {
            if let Some(k) = d.device_key.as_deref()
                && !keys.insert(k)
            {
                return Err(format!("device key {k:?} is given twice on vendor topic {topic:?}"));
            }
        }
    }
    let filters: Vec<&str> = per_topic.keys().copied().collect();
    for a in &filters {
        for b in &filters {
            if a != b && topic_matches(a, b) {
                return Err(format!(
                    "vendor topics {a:?} and {b:?} overlap (a publish would be read twice): bind the devices to one filter"
                ));
            }
        }
    }
    Ok(())
}

const PROFILE_TYPES: &[&str] = &[
    "access",
    "door_forced",
    "door_held_open",
    "tamper",
    "vehicle",
    "call_started",
    "call_answered",
    "call_ended",
    "door_release",
    "emergency_call",
    "fire_alarm",
    "pre_alarm",
    "fault",
    "supervisory",
    "disablement",
    "enablement",
    "reset",
    "evacuate",
    "silence",
];

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_reach_nested_keys_and_array_items() {
        let v = json!({"message": {"event": {"door-id": 3, "list": [{"a": true}]}}});
        assert_eq!(lookup(&v, "message.event.door-id"), Some(&json!(3)));
        assert_eq!(lookup(&v, "message.event.list.0.a"), Some(&json!(true)));
        assert_eq!(lookup(&v, "message.nope"), None);
        assert_eq!(lookup(&v, "message.event.door-id.x"), None);
    }

    #[test]
    fn topic_filters_match_as_mqtt_does() {
        assert!(topic_matches("uhppoted/gateway/events", "uhppoted/gateway/events"));
        assert!(topic_matches("a/+/c", "a/b/c"));
        assert!(!topic_matches("a/+/c", "a/b/d"));
        assert!(topic_matches("a/#", "a/b/c"));
        assert!(topic_matches("#", "gatehouse/v1/d/event"));
        assert!(!topic_matches("a/b", "a/b/c"));
    }

    #[test]
    fn values_match_by_value_and_text() {
        assert!(matches(&json!(38), &json!(38)));
        assert!(matches(&json!(38), &json!(38.0)));
        assert!(matches(&json!("38"), &json!(38)));
        assert!(matches(&json!(true), &json!(true)));
        assert!(!matches(&json!(true), &json!("true")));
        assert_eq!(coerce("door", json!(4)), json!("4"));
        assert_eq!(coerce("seconds", json!("30")), json!(30));
    }
}
