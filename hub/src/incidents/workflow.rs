//! The incident workflow, pure: `transition(state, request, context) -> effects | error`.
//!
//! (docs/design.md, Domain): discovered → assessed → reported → on_site → recorded → closed,
//! with false_alarm from assessed (a reason required). Closing needs every mandatory
//! procedure step done and every alarm of the incident cleared, or a supervisor's override
//! with a reason (the open mandatory steps are then marked skipped and the supervisor
//! notified).

use std::fmt;

use serde::{Deserialize, Serialize};

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
}
