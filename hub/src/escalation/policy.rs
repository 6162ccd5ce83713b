//! Escalation policies (ordered steps), the pure planner and the per-timer decision.
//!
//! A policy is snapshotted into the incident when it opens. Starting a *run* of it plans one
//! durable timer per (step, attempt) ([`plan_run`]); the writer's tick claims due timers in
//! the database and asks [`decide`] what each one does now. Each step therefore fires at most
//! once per run: the timer row is claimed by a conditional UPDATE. A re-triggered alarm starts
//! a new run (the old run's pending timers are superseded).
//!
//! Waits are relative to the previous step (`wait_s` = 0: together with it); a repeat fires
//! again every `repeat_every_s` while the step's condition still holds.

use serde::{Deserialize, Serialize};

use crate::alarms::Priority;
use crate::incidents::{IncidentCategory, IncidentState};
use crate::roles::{Recipient, Role};

/// While what does a step still fire?
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    NotAcknowledged,
    NotOnSite,
    NotClosed,
}

impl Condition {
    pub fn as_str(self) -> &'static str {
        match self {
            Condition::NotAcknowledged => "not_acknowledged",
            Condition::NotOnSite => "not_on_site",
            Condition::NotClosed => "not_closed",
        }
    }

    pub fn parse(s: &str) -> Option<Condition> {
        [Condition::NotAcknowledged, Condition::NotOnSite, Condition::NotClosed]
            .into_iter()
            .find(|c| c.as_str() == s)
    }

    /// Does the condition still hold for an incident in this situation?
    pub fn holds(self, s: &IncidentStatus) -> bool {
        if s.state.is_terminal() {
            return false;
        }
        match self {
            Condition::NotAcknowledged => !s.acknowledged,
            Condition::NotOnSite => !s.state.is_on_site_or_later(),
            Condition::NotClosed => true,
        }
    }
}

/// One step of a policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    pub role: Role,
    /// Seconds after the previous step (the first: after the incident opened).
    #[serde(default)]
    pub wait_s: u32,
    #[serde(default = "default_condition")]
    pub condition: Condition,
    /// How many more times the step fires while its condition holds.
    #[serde(default)]
    pub repeat: u32,
    /// Seconds between repeats.
    #[serde(default = "default_repeat_every")]
    pub repeat_every_s: u32,
}

fn default_condition() -> Condition {
    Condition::NotAcknowledged
}

fn default_repeat_every() -> u32 {
    300
}

/// `[[escalation.policies]]`: the steps for incidents of a category (and priority).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    pub category: IncidentCategory,
    /// Only incidents of this priority (default: any).
    pub priority: Option<Priority>,
    pub steps: Vec<StepSpec>,
}

fn step(role: Role, wait_s: u32, condition: Condition) -> StepSpec {
    StepSpec {
        role,
        wait_s,
        condition,
        repeat: 0,
        repeat_every_s: default_repeat_every(),
    }
}

/// The built-in policy of a category, used when the configuration names none.
pub fn default_policy(category: IncidentCategory) -> Vec<StepSpec> {
    use Condition::*;
    use Role::*;
    match category {
        // The default: monitoring room and supervisor at once, duty manager after 60 s
        // unacknowledged.
        IncidentCategory::Fire => vec![
            step(MonitoringRoom, 0, NotAcknowledged),
            step(Supervisor, 0, NotAcknowledged),
            step(DutyManager, 60, NotAcknowledged),
        ],
        IncidentCategory::Intrusion => vec![
            step(PatrolPost, 0, NotAcknowledged),
            step(Supervisor, 120, NotAcknowledged),
            step(DutyManager, 780, NotOnSite),
        ],
        IncidentCategory::EmergencyCall => vec![
            step(GatePost, 0, NotAcknowledged),
            step(Supervisor, 60, NotAcknowledged),
            step(DutyManager, 240, NotOnSite),
        ],
        IncidentCategory::EquipmentFault | IncidentCategory::PumpFlooding => vec![
            StepSpec {
                repeat: 2,
                repeat_every_s: 600,
                ..step(FacilityTeam, 0, NotAcknowledged)
            },
            step(Supervisor, 900, NotAcknowledged),
            step(DutyManager, 2700, NotClosed),
        ],
        IncidentCategory::Other => vec![
            step(MonitoringRoom, 0, NotAcknowledged),
            step(Supervisor, 300, NotAcknowledged),
        ],
    }
}

/// The policy for an incident: the configured one for (category, priority), else the
/// configured one for the category, else the built-in default.
pub fn select_policy(policies: &[PolicyConfig], category: IncidentCategory, priority: Priority) -> Vec<StepSpec> {
    policies
        .iter()
        .find(|p| p.category == category && p.priority == Some(priority))
        .or_else(|| policies.iter().find(|p| p.category == category && p.priority.is_none()))
        .map(|p| p.steps.clone())
        .unwrap_or_else(|| default_policy(category))
}

/// One durable timer a run needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedTimer {
    pub step: u32,
    pub attempt: u32,
    pub role: Role,
    pub condition: Condition,
    pub due_ms: i64,
}

/// The timers of one run of `steps` starting at `start_ms`.
pub fn plan_run(steps: &[StepSpec], start_ms: i64) -> Vec<PlannedTimer> {
    let mut out = Vec::new();
    let mut at = start_ms;
    for (i, s) in steps.iter().enumerate() {
        at += i64::from(s.wait_s) * 1000;
        for attempt in 0..=s.repeat {
            out.push(PlannedTimer {
                step: i as u32,
                attempt,
                role: s.role,
                condition: s.condition,
                due_ms: at + i64::from(attempt) * i64::from(s.repeat_every_s.max(1)) * 1000,
            });
        }
    }
    out
}

/// What an incident looks like to the escalation planner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentStatus {
    pub state: IncidentState,
    pub acknowledged: bool,
    pub run: i64,
}

/// What a claimed escalation timer does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Notify these recipients.
    Fire(Vec<Recipient>),
    /// The role resolves to nobody: skip now, log it, and bring the next step forward.
    SkipNobody,
    /// The condition no longer holds (acknowledged, on site, closed).
    Stop(&'static str),
    /// A newer run replaced this one.
    Superseded,
}

/// The decision for one claimed timer. Pure: the recipients were resolved by the caller.
pub fn decide(timer_run: i64, condition: Condition, incident: &IncidentStatus, recipients: Vec<Recipient>) -> Decision {
    if timer_run != incident.run {
        return Decision::Superseded;
    }
    if !condition.holds(incident) {
        return Decision::Stop(match condition {
            _ if incident.state.is_terminal() => "incident closed",
            Condition::NotAcknowledged => "acknowledged",
            Condition::NotOnSite => "on site",
            Condition::NotClosed => "closed",
        });
    }
    if recipients.is_empty() {
        Decision::SkipNobody
    } else {
        Decision::Fire(recipients)
    }
}

/// `[escalation]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalationConfig {
    /// Policies per incident category (and optionally priority); others use the built-in ones.
    #[serde(default)]
    pub policies: Vec<PolicyConfig>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn status(state: IncidentState, acknowledged: bool) -> IncidentStatus {
        IncidentStatus {
            state,
            acknowledged,
            run: 1,
        }
    }

    fn bob() -> Vec<Recipient> {
        vec![Recipient::new("bob", "log")]
    }

    #[test]
    fn default_fire_policy_is_monitoring_room_and_supervisor_at_once_then_duty_manager_after_60_s() {
        let plan = plan_run(&default_policy(IncidentCategory::Fire), 1_000);
        let summary: Vec<_> = plan.iter().map(|t| (t.role, t.due_ms, t.condition)).collect();
        assert_eq!(
            summary,
            [
                (Role::MonitoringRoom, 1_000, Condition::NotAcknowledged),
                (Role::Supervisor, 1_000, Condition::NotAcknowledged),
                (Role::DutyManager, 61_000, Condition::NotAcknowledged),
            ]
        );
    }

    #[test]
    fn repeats_are_planned_after_the_step_at_their_interval() {
        let steps = [StepSpec {
            repeat: 2,
            repeat_every_s: 30,
            ..step(Role::FacilityTeam, 10, Condition::NotClosed)
        }];
        let due: Vec<_> = plan_run(&steps, 0).iter().map(|t| (t.attempt, t.due_ms)).collect();
        assert_eq!(due, [(0, 10_000), (1, 40_000), (2, 70_000)]);
    }

    #[test]
    fn decisions_follow_condition_run_and_recipients() {
        use IncidentState::*;
        let table: &[(Condition, IncidentStatus, bool, Decision)] = &[
            (
                Condition::NotAcknowledged,
                status(Discovered, false),
                true,
                Decision::Fire(bob()),
            ),
            (
                Condition::NotAcknowledged,
                status(Discovered, true),
                true,
                Decision::Stop("acknowledged"),
            ),
            (
                Condition::NotAcknowledged,
                status(Discovered, false),
                false,
                Decision::SkipNobody,
            ),
            (
                Condition::NotOnSite,
                status(Reported, true),
                true,
                Decision::Fire(bob()),
            ),
            (
                Condition::NotOnSite,
                status(OnSite, true),
                true,
                Decision::Stop("on site"),
            ),
            (
                Condition::NotClosed,
                status(Recorded, true),
                true,
                Decision::Fire(bob()),
            ),
            (
                Condition::NotClosed,
                status(Closed, true),
                true,
                Decision::Stop("incident closed"),
            ),
            (
                Condition::NotAcknowledged,
                status(FalseAlarm, false),
                true,
                Decision::Stop("incident closed"),
            ),
        ];
        for (i, (c, s, who, expected)) in table.iter().enumerate() {
            let r = if *who { bob() } else { vec![] };
            assert_eq!(&decide(1, *c, s, r), expected, "row {i}");
        }
        assert_eq!(
            decide(
                1,
                Condition::NotClosed,
                &IncidentStatus {
                    run: 2,
                    ..status(Discovered, false)
                },
                bob()
            ),
            Decision::Superseded
        );
    }

    #[test]
    fn configured_policy_for_category_and_priority_wins_over_category_and_default() {
        let general = PolicyConfig {
            category: IncidentCategory::Intrusion,
            priority: None,
            steps: vec![step(Role::GatePost, 0, Condition::NotAcknowledged)],
        };
        let p2 = PolicyConfig {
            priority: Some(Priority::P2),
            steps: vec![step(Role::Supervisor, 0, Condition::NotAcknowledged)],
            ..general.clone()
        };
        let both = [general, p2];
        assert_eq!(
            select_policy(&both, IncidentCategory::Intrusion, Priority::P2)[0].role,
            Role::Supervisor
        );
        assert_eq!(
            select_policy(&both, IncidentCategory::Intrusion, Priority::P1)[0].role,
            Role::GatePost
        );
        assert_eq!(
            select_policy(&both, IncidentCategory::Fire, Priority::P1),
            default_policy(IncidentCategory::Fire)
        );
    }

    proptest! {
        /// Claiming due timers in any order of ticks fires every planned (step, attempt) at
        /// most once, and all of them once time has passed the last due time.
        #[test]
        fn an_escalation_step_never_fires_twice(
            waits in proptest::collection::vec((0u32..120, 0u32..3), 1..5),
            ticks in proptest::collection::vec(0i64..1_000_000, 0..30),
        ) {
            let steps: Vec<StepSpec> = waits.iter().map(|(w, r)| StepSpec {
                repeat: *r, repeat_every_s: 45, ..step(Role::Supervisor, *w, Condition::NotClosed)
            }).collect();
            let plan = plan_run(&steps, 0);
            let mut fired = std::collections::HashSet::new();
            let mut claimed = vec![false; plan.len()];
            let mut ticks = ticks;
            ticks.sort();
            ticks.push(i64::MAX / 2);
            for now in ticks {
                for (i, t) in plan.iter().enumerate() {
                    // The conditional UPDATE: only unclaimed, due rows.
                    if !claimed[i] && t.due_ms <= now {
                        claimed[i] = true;
                        prop_assert!(fired.insert((t.step, t.attempt)), "fired twice");
                    }
                }
            }
            prop_assert_eq!(fired.len(), plan.len());
        }
    }
}
