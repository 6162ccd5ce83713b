//! What each role may do (issue 12 §3): the permission table, as data.
//!
//! Pure: no I/O. The HTTP route table (`api::routes`) names one [`Permission`] per route and
//! the gRPC `CommandCentre` one per RPC; [`allows`] answers from [`TABLE`]. Scope (which
//! estates) is checked separately, by `auth::enforce`; the bounds of an action (how long a
//! role may shelve an alarm of a priority) are here too, so that both front doors apply the
//! same numbers through `crate::actions`.
//!
//! The table follows the course:
//! - a guard checks in and out, records patrols, acknowledges their OWN handover, writes
//!   handover notes and reads their estates' coverage;
//! - an operator reads everything in scope, acknowledges, shelves (bounded per priority),
//!   works incidents (transitions, steps) and sends ordinary device commands;
//! - a supervisor adds closing with an override, accepting a cover proposal, rota changes
//!   (assign, absences, import, plan), maintenance and out-of-service;
//! - a duty manager is a supervisor across their region(s) (the scope says which);
//! - facility: devices, readings, maintenance and commands of plant-room devices only;
//! - admin: users, tokens, gateways, the audit log, and reads — no operational actions
//!   (separation of duties: whoever manages accounts does not silence alarms).

use super::Role;

/// One thing a principal may do. Reads are split by what they show; writes by who may do them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
    /// `GET /estates` (the list is cut to the scope).
    ReadEstates,
    ReadAlarms,
    AckAlarm,
    ShelveAlarm,
    /// Taking an alarm point out of service (and back).
    OutOfService,
    /// The device registry and point trends.
    ReadDevices,
    /// Starting or ending a device's maintenance (its alarms are suppressed meanwhile).
    Maintenance,
    SendCommand,
    ReadCommands,
    ReadIncidents,
    OpenIncident,
    /// Transitions and procedure steps.
    WorkIncident,
    /// Closing an incident over open mandatory steps (`override`).
    CloseWithOverride,
    ReadNotifications,
    /// The live stream (filtered to the scope event by event).
    ReadStream,
    /// The command centre's alarm KPI.
    ReadAlarmKpi,
    /// Coverage now, and the coverage KPI.
    ReadCoverage,
    /// Gaps, proposals, assignments, export, patrols, handovers, attendance, guards.
    ReadRota,
    AcceptProposal,
    /// Assign, unassign, absences, CSV import.
    ChangeRota,
    PlanRota,
    /// Checking in and out (a guard: only themselves).
    CheckInOut,
    RecordPatrol,
    /// Acknowledging a handover sheet (a guard: only as themselves).
    AckHandover,
    WriteNote,
    ManageUsers,
    ManageTokens,
    ManageGateways,
    ReadAudit,
    /// Seeing oneself (`/me`) and signing out: every role.
    Session,
}

use Permission as P;

const GUARD: &[Permission] = &[
    P::ReadEstates,
    P::ReadCoverage,
    P::CheckInOut,
    P::RecordPatrol,
    P::AckHandover,
    P::WriteNote,
];

/// Everything an operator reads.
const OPERATOR_READS: &[Permission] = &[
    P::ReadEstates,
    P::ReadAlarms,
    P::ReadDevices,
    P::ReadCommands,
    P::ReadIncidents,
    P::ReadNotifications,
    P::ReadStream,
    P::ReadAlarmKpi,
    P::ReadCoverage,
    P::ReadRota,
];

const OPERATOR_ACTIONS: &[Permission] = &[
    P::AckAlarm,
    P::ShelveAlarm,
    P::OpenIncident,
    P::WorkIncident,
    P::SendCommand,
    P::CheckInOut,
    P::RecordPatrol,
    P::WriteNote,
];

const SUPERVISOR_ACTIONS: &[Permission] = &[
    P::CloseWithOverride,
    P::AcceptProposal,
    P::ChangeRota,
    P::PlanRota,
    P::Maintenance,
    P::OutOfService,
    P::AckHandover,
];

const FACILITY: &[Permission] = &[
    P::ReadEstates,
    P::ReadDevices,
    P::ReadCommands,
    P::Maintenance,
    P::SendCommand,
];

const ADMIN_ACTIONS: &[Permission] = &[P::ManageUsers, P::ManageTokens, P::ManageGateways, P::ReadAudit];

/// What every signed-in principal may do.
const SIGNED_IN: &[Permission] = &[P::Session];

/// The table: each role with the groups of permissions it has.
pub const TABLE: &[(Role, &[&[Permission]])] = &[
    (Role::Guard, &[SIGNED_IN, GUARD]),
    (Role::Operator, &[SIGNED_IN, OPERATOR_READS, OPERATOR_ACTIONS]),
    (
        Role::Supervisor,
        &[SIGNED_IN, OPERATOR_READS, OPERATOR_ACTIONS, SUPERVISOR_ACTIONS],
    ),
    (
        Role::DutyManager,
        &[SIGNED_IN, OPERATOR_READS, OPERATOR_ACTIONS, SUPERVISOR_ACTIONS],
    ),
    (Role::Facility, &[SIGNED_IN, FACILITY]),
    // An admin may do everything: accounts, tokens, gateways and the audit log, and every
    // operational action (a small centre's administrator is also its senior supervisor).
    (
        Role::Admin,
        &[
            SIGNED_IN,
            OPERATOR_READS,
            OPERATOR_ACTIONS,
            SUPERVISOR_ACTIONS,
            ADMIN_ACTIONS,
        ],
    ),
];

/// Whether `role` has `permission`.
pub fn allows(role: Role, permission: Permission) -> bool {
    TABLE
        .iter()
        .filter(|(r, _)| *r == role)
        .flat_map(|(_, groups)| groups.iter())
        .any(|g| g.contains(&permission))
}

/// Supervisor or above (supervisor, duty manager, admin): the roles that may override and accept.
pub fn is_supervisor(role: Role) -> bool {
    matches!(role, Role::Supervisor | Role::DutyManager | Role::Admin)
}

/// The longest a role may shelve an alarm of `priority` (`P1`..`P4`), in minutes; None: it
/// may not shelve at all. The writer's `alarms.shelve_max_minutes` still caps every value.
/// A P1 (life safety) hidden for hours is how a fire goes unseen: an operator gets half an
/// hour, a supervisor two.
pub fn max_shelve_minutes(role: Role, priority: &str) -> Option<i64> {
    let by_priority: [i64; 4] = match role {
        Role::Operator => [30, 60, 240, 480],
        Role::Supervisor | Role::DutyManager | Role::Admin => [120, 240, 480, 480],
        _ => return None,
    };
    let i = match priority.trim().to_ascii_uppercase().as_str() {
        "P1" => 0,
        "P2" => 1,
        "P3" => 2,
        _ => 3,
    };
    Some(by_priority[i])
}

/// Device kinds a facility technician may see and command: the plant room's.
pub fn is_plant_kind(kind: &str) -> bool {
    matches!(kind.to_ascii_lowercase().as_str(), "modbus" | "pump" | "plant")
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLES: [Role; 6] = [
        Role::Guard,
        Role::Operator,
        Role::Supervisor,
        Role::DutyManager,
        Role::Facility,
        Role::Admin,
    ];

    #[test]
    fn every_role_has_a_row() {
        for role in ROLES {
            assert!(TABLE.iter().any(|(r, _)| *r == role), "{role:?} has no row");
        }
    }

    #[test]
    fn a_guard_checks_in_and_acknowledges_but_does_not_work_alarms() {
        assert!(allows(Role::Guard, P::CheckInOut));
        assert!(allows(Role::Guard, P::AckHandover));
        assert!(allows(Role::Guard, P::RecordPatrol));
        assert!(allows(Role::Guard, P::ReadCoverage));
        for p in [
            P::ReadAlarms,
            P::AckAlarm,
            P::ShelveAlarm,
            P::SendCommand,
            P::ReadStream,
            P::ChangeRota,
        ] {
            assert!(!allows(Role::Guard, p), "guard must not have {p:?}");
        }
    }

    #[test]
    fn overrides_proposals_rota_changes_and_maintenance_need_a_supervisor() {
        for p in [
            P::CloseWithOverride,
            P::AcceptProposal,
            P::ChangeRota,
            P::PlanRota,
            P::Maintenance,
            P::OutOfService,
        ] {
            assert!(!allows(Role::Operator, p), "operator must not have {p:?}");
            assert!(allows(Role::Supervisor, p));
            assert!(allows(Role::DutyManager, p));
        }
        assert!(allows(Role::Operator, P::AckAlarm));
        assert!(allows(Role::Operator, P::WorkIncident));
        assert!(allows(Role::Operator, P::SendCommand));
    }

    #[test]
    fn only_the_admin_manages_accounts_and_reads_the_audit_log() {
        assert!(allows(Role::Admin, P::ReadAlarms));
        assert!(allows(Role::Admin, P::ReadAudit));
        assert!(allows(Role::Admin, P::ManageUsers));
        for p in [
            P::AckAlarm,
            P::ShelveAlarm,
            P::SendCommand,
            P::Maintenance,
            P::CloseWithOverride,
        ] {
            assert!(allows(Role::Admin, p), "admin must have {p:?}");
        }
        for role in ROLES.into_iter().filter(|r| *r != Role::Admin) {
            assert!(!allows(role, P::ManageUsers), "{role:?}");
            assert!(!allows(role, P::ReadAudit), "{role:?}");
        }
    }

    #[test]
    fn facility_works_devices_only() {
        assert!(allows(Role::Facility, P::Maintenance));
        assert!(allows(Role::Facility, P::SendCommand));
        assert!(!allows(Role::Facility, P::AckAlarm));
        assert!(!allows(Role::Facility, P::ReadIncidents));
        assert!(is_plant_kind("modbus"));
        assert!(!is_plant_kind("door"));
    }

    #[test]
    fn shelving_is_bounded_per_role_and_priority() {
        assert_eq!(max_shelve_minutes(Role::Operator, "P1"), Some(30));
        assert_eq!(max_shelve_minutes(Role::Operator, "p4"), Some(480));
        assert_eq!(max_shelve_minutes(Role::Supervisor, "P1"), Some(120));
        assert_eq!(max_shelve_minutes(Role::Guard, "P4"), None);
        assert_eq!(max_shelve_minutes(Role::Admin, "P1"), Some(120));
        for role in ROLES {
            if let (Some(a), Some(b)) = (max_shelve_minutes(role, "P1"), max_shelve_minutes(role, "P4")) {
                assert!(a <= b, "{role:?}: a P1 may never be shelved longer than a P4");
            }
        }
    }
}
