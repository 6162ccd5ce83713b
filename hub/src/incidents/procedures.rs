//! Procedures (SOPs), pure: the built-in gate-house standard operating procedures, one list
//! of steps per incident category, unless `[[procedures]]` replaces them.

use serde::{Deserialize, Serialize};

use super::IncidentCategory;

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

/// The built-in gate-house SOPs: the steps a guard works through for each incident category.
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

#[cfg(test)]
mod tests {
    use super::*;

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
