//! Incidents: the gate house's workflow, procedures (SOPs), and where an alarm goes. Pure.
//!
//! Workflow (docs/design.md, Domain): discovered → assessed → reported → on_site → recorded → closed, with
//! false_alarm from assessed (a reason required). Closing needs every mandatory procedure
//! step done and every alarm of the incident cleared, or a supervisor's override with a
//! reason (the open mandatory steps are then marked skipped and the supervisor notified).

use std::fmt;

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

/// The workflow's states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentState {
    Discovered,
    Assessed,
    Reported,
    OnSite,
    Recorded,
    Closed,
    FalseAlarm,
}

impl IncidentState {
    pub const ALL: [IncidentState; 7] = [
        IncidentState::Discovered,
        IncidentState::Assessed,
        IncidentState::Reported,
        IncidentState::OnSite,
        IncidentState::Recorded,
        IncidentState::Closed,
        IncidentState::FalseAlarm,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            IncidentState::Discovered => "discovered",
            IncidentState::Assessed => "assessed",
            IncidentState::Reported => "reported",
            IncidentState::OnSite => "on_site",
            IncidentState::Recorded => "recorded",
            IncidentState::Closed => "closed",
            IncidentState::FalseAlarm => "false_alarm",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, IncidentState::Closed | IncidentState::FalseAlarm)
    }

    pub fn is_on_site_or_later(self) -> bool {
        matches!(
            self,
            IncidentState::OnSite | IncidentState::Recorded | IncidentState::Closed | IncidentState::FalseAlarm
        )
    }

    /// The states this one may move to.
    pub fn next(self) -> &'static [IncidentState] {
        use IncidentState::*;
        match self {
            Discovered => &[Assessed],
            Assessed => &[Reported, FalseAlarm],
            Reported => &[OnSite],
            OnSite => &[Recorded],
            Recorded => &[Closed],
            Closed | FalseAlarm => &[],
        }
    }
}

impl fmt::Display for IncidentState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One step of a procedure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcedureStep {
    /// Short id used in `POST /incidents/{id}/steps/{step}/done` (a slug).
    pub id: String,
    pub text: String,
    #[serde(default)]
    pub mandatory: bool,
}

/// `[[procedures]]`: the steps for one category (replaces the built-in one).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcedureConfig {
    pub category: IncidentCategory,
    pub steps: Vec<ProcedureStep>,
}

fn s(id: &str, text: &str, mandatory: bool) -> ProcedureStep {
    ProcedureStep {
        id: id.into(),
        text: text.into(),
        mandatory,
    }
}

/// The built-in procedures, worded from the gate-house course (seed/).
pub fn default_procedure(category: IncidentCategory) -> Vec<ProcedureStep> {
    match category {
        IncidentCategory::Fire => vec![
            s(
                "confirm_location",
                "Confirm the location and extent of the fire (确认火灾位置和火势大小)",
                true,
            ),
            s(
                "call_119",
                "Call 119: estate name, exact location, extent, anyone trapped (拨打119报警)",
                true,
            ),
            s(
                "notify_centre",
                "Notify the management centre and the other guards (通知物业管理中心)",
                true,
            ),
            s(
                "evacuation_broadcast",
                "Start the evacuation broadcast; no lifts, use the stairs (广播通知业主疏散)",
                true,
            ),
            s(
                "meet_brigade",
                "Send a guard to meet the fire brigade and lead it to the fire (引导消防车)",
                true,
            ),
            s(
                "account_residents",
                "Account for residents at the assembly point (集合清点人数)",
                true,
            ),
        ],
        IncidentCategory::Intrusion => vec![
            s(
                "assess",
                "Assess the alarm on camera: real or false, how serious (初步评估)",
                true,
            ),
            s(
                "report_supervisor",
                "Report to the supervisor by radio (报告上级)",
                true,
            ),
            s(
                "send_patrol",
                "Send the patrol post; keep a safe distance, never alone (通知巡逻岗协助)",
                true,
            ),
            s("call_110", "Call 110 if the intruder is confirmed (必要时报警)", false),
            s("record", "Record what happened and follow up (详细记录并跟进)", true),
        ],
        IncidentCategory::EmergencyCall => vec![
            s("answer", "Answer the call and find out what is wrong (询问情况)", true),
            s(
                "send_guard",
                "Send a guard to stay with the caller (安排人员陪伴)",
                true,
            ),
            s("call_120", "Call 120 if it is a medical emergency (拨打120)", false),
            s("notify_family", "Notify the family (通知家属)", false),
            s(
                "guide_ambulance",
                "Open the gate and guide the ambulance in (开放大门引导救护车)",
                false,
            ),
            s("record", "Record the call and its outcome (记录跟进)", true),
        ],
        IncidentCategory::EquipmentFault => vec![
            s("record_fault", "Record the fault (记录故障)", true),
            s("reset_once", "Reset or restart the device once (重启一次)", false),
            s(
                "repair_ticket",
                "If it persists, open a repair ticket (填写故障报修单)",
                true,
            ),
            s("technician", "Technician on site (技术人员维修)", false),
            s(
                "step_up_patrols",
                "While cameras are down, step up patrols (加强人防)",
                false,
            ),
            s("follow_up", "Follow up and record the repair (做好维修记录)", true),
        ],
        IncidentCategory::PumpFlooding => vec![
            s(
                "check_pump_room",
                "Check the water-pump room: pumps, level, leaks, smell, noise (检查水泵房)",
                true,
            ),
            s(
                "start_plan",
                "Start the flooding plan; notify the facility team (启动应急预案)",
                true,
            ),
            s(
                "repair_ticket",
                "Open a repair ticket for the pump (填写故障报修单)",
                true,
            ),
            s(
                "warn_residents",
                "Warn residents of water outage or standing water (提醒业主注意安全)",
                false,
            ),
            s("follow_up", "Follow up and record the repair (做好维修记录)", true),
        ],
        IncidentCategory::Other => vec![
            s("assess", "Assess what happened and how serious it is (初步评估)", true),
            s("report_supervisor", "Report to the supervisor (报告上级)", true),
            s("record", "Record and follow up (记录跟进)", true),
        ],
    }
}

/// The procedure for a category: configured, else built in.
pub fn select_procedure(configured: &[ProcedureConfig], category: IncidentCategory) -> Vec<ProcedureStep> {
    configured
        .iter()
        .find(|p| p.category == category)
        .map(|p| p.steps.clone())
        .unwrap_or_else(|| default_procedure(category))
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

/// What the workflow needs to know to decide a transition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransitionContext {
    pub open_mandatory_steps: Vec<String>,
    pub active_alarms: Vec<i64>,
}

/// A transition request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransitionRequest {
    pub to: IncidentState,
    /// Required for false_alarm and for an override.
    pub reason: Option<String>,
    /// A supervisor closing despite open mandatory steps or active alarms.
    pub override_by: Option<String>,
}

/// Why a transition was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    #[error("illegal transition {from} → {to} (from {from} the incident may go to: {allowed})")]
    Illegal {
        from: IncidentState,
        to: IncidentState,
        allowed: String,
    },
    #[error("{to} needs a reason")]
    ReasonRequired { to: IncidentState },
    #[error(
        "cannot close: mandatory steps open: [{}]; alarms still active: {:?} (a supervisor may override with a reason)",
        steps.join(", "), alarms
    )]
    CloseBlocked { steps: Vec<String>, alarms: Vec<i64> },
}

/// What a legal transition does besides changing the state.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TransitionEffects {
    /// Leaving `discovered` acknowledges the incident.
    pub acknowledges: bool,
    pub on_site: bool,
    pub terminal: bool,
    /// Mandatory steps marked skipped by a supervisor's override (the supervisor is notified).
    pub skipped_steps: Vec<String>,
    pub overridden: bool,
}

/// The workflow: `(state, request, context) -> effects | error`.
pub fn transition(
    from: IncidentState,
    req: &TransitionRequest,
    ctx: &TransitionContext,
) -> Result<TransitionEffects, TransitionError> {
    if !from.next().contains(&req.to) {
        let allowed = from.next().iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ");
        return Err(TransitionError::Illegal {
            from,
            to: req.to,
            allowed: if allowed.is_empty() {
                "nothing (closed)".into()
            } else {
                allowed
            },
        });
    }
    let has_reason = req.reason.as_deref().is_some_and(|r| !r.trim().is_empty());
    let mut fx = TransitionEffects {
        acknowledges: from == IncidentState::Discovered,
        on_site: req.to == IncidentState::OnSite,
        terminal: req.to.is_terminal(),
        ..Default::default()
    };
    match req.to {
        IncidentState::FalseAlarm if !has_reason => return Err(TransitionError::ReasonRequired { to: req.to }),
        IncidentState::Closed if !ctx.open_mandatory_steps.is_empty() || !ctx.active_alarms.is_empty() => {
            if req.override_by.is_none() {
                return Err(TransitionError::CloseBlocked {
                    steps: ctx.open_mandatory_steps.clone(),
                    alarms: ctx.active_alarms.clone(),
                });
            }
            if !has_reason {
                return Err(TransitionError::ReasonRequired { to: req.to });
            }
            fx.overridden = true;
            fx.skipped_steps = ctx.open_mandatory_steps.clone();
        }
        _ => {}
    }
    Ok(fx)
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
    use IncidentState::*;

    fn req(to: IncidentState) -> TransitionRequest {
        TransitionRequest {
            to,
            reason: None,
            override_by: None,
        }
    }

    fn clear_ctx() -> TransitionContext {
        TransitionContext {
            open_mandatory_steps: vec![],
            active_alarms: vec![],
        }
    }

    #[test]
    fn only_the_practice_order_is_legal() {
        let mut legal = Vec::new();
        for from in IncidentState::ALL {
            for to in IncidentState::ALL {
                let r = TransitionRequest {
                    reason: Some("r".into()),
                    ..req(to)
                };
                if transition(from, &r, &clear_ctx()).is_ok() {
                    legal.push((from.as_str(), to.as_str()));
                }
            }
        }
        assert_eq!(
            legal,
            [
                ("discovered", "assessed"),
                ("assessed", "reported"),
                ("assessed", "false_alarm"),
                ("reported", "on_site"),
                ("on_site", "recorded"),
                ("recorded", "closed"),
            ]
        );
    }

    #[test]
    fn illegal_transition_names_from_and_to() {
        let e = transition(Discovered, &req(Closed), &clear_ctx())
            .unwrap_err()
            .to_string();
        assert!(e.contains("discovered → closed"), "{e}");
        assert!(e.contains("assessed"), "{e}");
    }

    #[test]
    fn false_alarm_needs_a_reason() {
        assert_eq!(
            transition(Assessed, &req(FalseAlarm), &clear_ctx()),
            Err(TransitionError::ReasonRequired { to: FalseAlarm })
        );
    }

    #[test]
    fn close_is_blocked_by_open_mandatory_steps_unless_a_supervisor_overrides_with_a_reason() {
        let ctx = TransitionContext {
            open_mandatory_steps: vec!["call_119".into()],
            active_alarms: vec![7],
        };
        assert!(matches!(
            transition(Recorded, &req(Closed), &ctx),
            Err(TransitionError::CloseBlocked { .. })
        ));
        let no_reason = TransitionRequest {
            override_by: Some("sup".into()),
            ..req(Closed)
        };
        assert!(transition(Recorded, &no_reason, &ctx).is_err());
        let ok = TransitionRequest {
            reason: Some("brigade confirmed".into()),
            ..no_reason
        };
        let fx = transition(Recorded, &ok, &ctx).unwrap();
        assert!(fx.overridden && fx.terminal);
        assert_eq!(fx.skipped_steps, ["call_119"]);
    }

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

    #[test]
    fn every_built_in_procedure_has_mandatory_steps_and_unique_ids() {
        for c in IncidentCategory::ALL {
            let p = default_procedure(c);
            assert!(p.iter().any(|s| s.mandatory), "{c:?}");
            let ids: std::collections::HashSet<_> = p.iter().map(|s| &s.id).collect();
            assert_eq!(ids.len(), p.len(), "{c:?}");
        }
        assert_eq!(default_procedure(IncidentCategory::Fire).len(), 6);
    }
}
