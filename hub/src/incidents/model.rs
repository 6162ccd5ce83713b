//! Incidents' categories, which alarms open one, and where a new alarm goes (open, or join
//! an open incident), pure; and the `[incidents]` settings.

use serde::{Deserialize, Serialize};

use crate::alarms::{Category, Priority};

/// What kind of incident, which picks its procedure and escalation policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentCategory {
    Fire,
    Intrusion,
    EmergencyCall,
    EquipmentFault,
    PumpFlooding,
    Other,
}

impl IncidentCategory {
    pub const ALL: [IncidentCategory; 6] = [
        IncidentCategory::Fire,
        IncidentCategory::Intrusion,
        IncidentCategory::EmergencyCall,
        IncidentCategory::EquipmentFault,
        IncidentCategory::PumpFlooding,
        IncidentCategory::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            IncidentCategory::Fire => "fire",
            IncidentCategory::Intrusion => "intrusion",
            IncidentCategory::EmergencyCall => "emergency_call",
            IncidentCategory::EquipmentFault => "equipment_fault",
            IncidentCategory::PumpFlooding => "pump_flooding",
            IncidentCategory::Other => "other",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// The incident an alarm opens, if any: P1 and P2 alarms, and P3 plant alarms.
pub fn category_for_alarm(priority: Priority, category: Category, condition: &str) -> Option<IncidentCategory> {
    match (priority, category) {
        (Priority::P1, Category::Fire) => Some(IncidentCategory::Fire),
        (Priority::P1, _) => Some(IncidentCategory::Other),
        (Priority::P2, _) if condition.starts_with("emergency_call") => Some(IncidentCategory::EmergencyCall),
        (Priority::P2, Category::Security) => Some(IncidentCategory::Intrusion),
        (Priority::P2, _) => Some(IncidentCategory::Other),
        (Priority::P3, Category::Plant) => {
            let c = condition.to_ascii_lowercase();
            if ["pump", "pressure", "level", "water", "sump", "flood"]
                .iter()
                .any(|w| c.contains(w))
            {
                Some(IncidentCategory::PumpFlooding)
            } else {
                Some(IncidentCategory::EquipmentFault)
            }
        }
        _ => None,
    }
}

/// An open incident as routing sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenIncident {
    pub id: i64,
    pub area: String,
    pub last_alarm_at_ms: i64,
}

/// Where a new alarm goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Join(i64),
    Open,
}

/// Joins the open incident at the same estate and area whose last alarm is within the window
/// (the most recent one); in flood, any open incident of the estate takes every alarm but P1.
/// `open` are the estate's open incidents.
pub fn route(open: &[OpenIncident], area: &str, priority: Priority, flood: bool, window_ms: i64, now_ms: i64) -> Route {
    let newest =
        |it: &mut dyn Iterator<Item = &OpenIncident>| it.max_by_key(|i| (i.last_alarm_at_ms, i.id)).map(|i| i.id);
    if flood
        && priority != Priority::P1
        && let Some(id) = newest(&mut open.iter())
    {
        return Route::Join(id);
    }
    match newest(
        &mut open
            .iter()
            .filter(|i| i.area == area && i.last_alarm_at_ms >= now_ms - window_ms),
    ) {
        Some(id) => Route::Join(id),
        None => Route::Open,
    }
}

/// `[incidents]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IncidentsConfig {
    /// An alarm joins an open incident of the same estate and area whose last alarm is this recent.
    pub group_window_s: u32,
    /// The practice's response target: on site within this long, or a breach alarm is raised.
    pub response_target_s: u32,
    /// An acknowledged incident that does not move on within this long alerts the supervisor.
    pub progress_limit_s: u32,
}

impl Default for IncidentsConfig {
    fn default() -> Self {
        IncidentsConfig {
            group_window_s: 600,
            response_target_s: 900,
            progress_limit_s: 600,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alarms_map_to_incident_categories() {
        use Category as C;
        use Priority as P;
        let table = [
            (P::P1, C::Fire, "fire_alarm:3", Some(IncidentCategory::Fire)),
            (P::P2, C::Security, "door_forced:D1", Some(IncidentCategory::Intrusion)),
            (
                P::P2,
                C::Security,
                "emergency_call:3-1201",
                Some(IncidentCategory::EmergencyCall),
            ),
            (
                P::P3,
                C::Plant,
                "point:pump1_fault:state",
                Some(IncidentCategory::PumpFlooding),
            ),
            (
                P::P3,
                C::Plant,
                "point:fan_current:high",
                Some(IncidentCategory::EquipmentFault),
            ),
            (P::P3, C::Fire, "fire_fault:5", None),
            (P::P4, C::Device, "offline", None),
        ];
        for (p, c, cond, expected) in table {
            assert_eq!(category_for_alarm(p, c, cond), expected, "{cond}");
        }
    }

    #[test]
    fn routing_joins_same_area_within_the_window_and_groups_the_estate_in_flood() {
        let open = [
            OpenIncident {
                id: 1,
                area: "gate".into(),
                last_alarm_at_ms: 1_000,
            },
            OpenIncident {
                id: 2,
                area: "car park".into(),
                last_alarm_at_ms: 5_000,
            },
        ];
        assert_eq!(
            route(&open, "gate", Priority::P2, false, 600_000, 2_000),
            Route::Join(1)
        );
        assert_eq!(route(&open, "gate", Priority::P2, false, 600_000, 700_000), Route::Open);
        assert_eq!(
            route(&open, "block 3", Priority::P2, false, 600_000, 2_000),
            Route::Open
        );
        assert_eq!(
            route(&open, "block 3", Priority::P2, true, 600_000, 2_000),
            Route::Join(2)
        );
        assert_eq!(route(&open, "block 3", Priority::P1, true, 600_000, 2_000), Route::Open);
        assert_eq!(route(&[], "gate", Priority::P3, true, 600_000, 0), Route::Open);
    }
}
