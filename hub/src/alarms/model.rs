//! The alarm book's model: priorities, categories, the alarm as stored and as shown in JSON.
//!
//! An alarm is one per (estate, device, condition). It carries two independent ISA-18.2
//! bits, `active` (the condition holds) and `acknowledged` (an operator has seen it).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Alarm priority: P1 fire and life safety, P2 security, P3 plant, P4 device health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Priority {
    P1,
    P2,
    P3,
    P4,
}

impl Priority {
    pub const ALL: [Priority; 4] = [Priority::P1, Priority::P2, Priority::P3, Priority::P4];

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::P1 => "P1",
            Priority::P2 => "P2",
            Priority::P3 => "P3",
            Priority::P4 => "P4",
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Priority {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Priority::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| format!("unknown priority {s:?} (expected P1, P2, P3 or P4)"))
    }
}

/// What kind of thing the alarm is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    Fire,
    Security,
    Plant,
    Device,
}

impl Category {
    pub const ALL: [Category; 4] = [Category::Fire, Category::Security, Category::Plant, Category::Device];

    pub fn as_str(self) -> &'static str {
        match self {
            Category::Fire => "fire",
            Category::Security => "security",
            Category::Plant => "plant",
            Category::Device => "device",
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Category {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Category::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| format!("unknown category {s:?} (expected fire, security, plant or device)"))
    }
}

/// The `state` filter of `GET /alarms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateFilter {
    Active,
    Cleared,
    Unacknowledged,
    Acknowledged,
    /// Active, unacknowledged or shelved (`AlarmRow::stands`).
    Standing,
}

impl FromStr for StateFilter {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "active" => StateFilter::Active,
            "cleared" => StateFilter::Cleared,
            "unacknowledged" => StateFilter::Unacknowledged,
            "acknowledged" => StateFilter::Acknowledged,
            "standing" => StateFilter::Standing,
            _ => {
                return Err(format!(
                    "unknown state {s:?} (expected active, cleared, unacknowledged, acknowledged or standing)"
                ));
            }
        })
    }
}

/// The identity of an alarm: one per (estate, device, condition).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AlarmKey {
    pub estate: String,
    pub device: String,
    pub condition: String,
}

impl AlarmKey {
    pub fn new(estate: impl Into<String>, device: impl Into<String>, condition: impl Into<String>) -> Self {
        AlarmKey {
            estate: estate.into(),
            device: device.into(),
            condition: condition.into(),
        }
    }
}

/// One kind of alarm-history row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryChange {
    Raised,
    Reraised,
    Updated,
    Cleared,
    Acknowledged,
    Shelved,
    Unshelved,
    Suppressed,
    OutOfService,
    ReturnedToService,
    Chattering,
    ChatteringEnded,
}

impl HistoryChange {
    pub fn as_str(self) -> &'static str {
        match self {
            HistoryChange::Raised => "raised",
            HistoryChange::Reraised => "reraised",
            HistoryChange::Updated => "updated",
            HistoryChange::Cleared => "cleared",
            HistoryChange::Acknowledged => "acknowledged",
            HistoryChange::Shelved => "shelved",
            HistoryChange::Unshelved => "unshelved",
            HistoryChange::Suppressed => "suppressed",
            HistoryChange::OutOfService => "out_of_service",
            HistoryChange::ReturnedToService => "returned_to_service",
            HistoryChange::Chattering => "chattering",
            HistoryChange::ChatteringEnded => "chattering_ended",
        }
    }
}

/// An alarm as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlarmJson {
    pub id: i64,
    pub estate: String,
    pub device: String,
    pub area: String,
    pub gateway: String,
    pub condition: String,
    pub priority: String,
    pub category: String,
    pub message: String,
    pub active: bool,
    pub acknowledged: bool,
    /// Latched event alarms (door forced, tamper, ...) clear when acknowledged.
    pub latched: bool,
    pub activations: i64,
    pub value: Option<f64>,
    pub raised_at: String,
    pub changed_at: String,
    pub acked_at: Option<String>,
    pub acked_by: Option<String>,
    /// Shelved by an operator until `shelved_until` (ISA-18.2 overlay).
    pub shelved: bool,
    pub shelved_until: Option<String>,
    pub shelved_by: Option<String>,
    pub shelve_reason: Option<String>,
    /// Suppressed by design (a fire zone disabled at its panel).
    pub suppressed: bool,
    pub out_of_service: bool,
    /// Activated 3 or more times within a minute (thresholds in `[alarms]`).
    pub chattering: bool,
    /// The incident this alarm belongs to.
    pub incident_id: Option<i64>,
}

/// One row of an alarm's history as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryJson {
    pub id: i64,
    pub alarm_id: i64,
    pub at: String,
    pub change: String,
    pub actor: Option<String>,
    /// The event that caused the change, if one did.
    pub event: Option<EventRef>,
    pub note: Option<String>,
}

/// A reference to a stored event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventRef {
    pub gateway: String,
    pub seq: i64,
}

/// Milliseconds since the epoch as RFC 3339 UTC with milliseconds.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_categories_and_states_parse_from_their_names() {
        assert_eq!("P2".parse::<Priority>(), Ok(Priority::P2));
        assert!("p2".parse::<Priority>().is_err());
        assert_eq!("plant".parse::<Category>(), Ok(Category::Plant));
        assert_eq!("standing".parse::<StateFilter>(), Ok(StateFilter::Standing));
        assert!("open".parse::<StateFilter>().is_err());
    }

    #[test]
    fn timestamps_render_as_rfc3339_utc_millis() {
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }
}
