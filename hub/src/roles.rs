//! Roles and who holds them: the [`RoleResolver`] seam (the rota answers from live
//! coverage), and [`StaticRoster`], the `[[roster]]` of the configuration file. A leaf
//! (nothing else of the crate imported): escalation, the notifications and the rota share it.

use serde::{Deserialize, Serialize};

/// Who a step reaches; resolved to people when the step fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The posts on duty at the estate.
    GatePost,
    PatrolPost,
    MonitoringRoom,
    /// The estate supervisor.
    Supervisor,
    /// The command centre's duty manager.
    DutyManager,
    /// The facility (plant) team.
    FacilityTeam,
}

impl Role {
    pub const ALL: [Role; 6] = [
        Role::GatePost,
        Role::PatrolPost,
        Role::MonitoringRoom,
        Role::Supervisor,
        Role::DutyManager,
        Role::FacilityTeam,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::GatePost => "gate_post",
            Role::PatrolPost => "patrol_post",
            Role::MonitoringRoom => "monitoring_room",
            Role::Supervisor => "supervisor",
            Role::DutyManager => "duty_manager",
            Role::FacilityTeam => "facility_team",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// A person (or team) a notification goes to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    pub name: String,
    /// A webhook URL or `log`.
    pub channel: String,
}

/// Resolves a role at an estate to the people holding it now: the rota's `RotaResolver`
/// from who is on post (falling back to the roster), or [`StaticRoster`] alone.
pub trait RoleResolver: Send + Sync + std::fmt::Debug {
    fn resolve(&self, estate: &str, role: Role, now_ms: i64) -> Vec<Recipient>;
}

/// `[[roster]]`: one person in a role, at an estate or (no estate) across the centre.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RosterEntry {
    pub estate: Option<String>,
    pub role: Role,
    pub name: String,
    /// `log`, or an `http://` or `https://` webhook URL.
    pub channel: String,
    /// HMAC secret for this webhook (default: `notify.webhook_secret`).
    pub secret: Option<String>,
    /// https webhooks: a PEM file of CA certificates trusted besides the system's roots
    /// (instead of `notify.ca_file`).
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
}

/// The roster from the configuration file.
#[derive(Debug, Clone, Default)]
pub struct StaticRoster {
    entries: Vec<RosterEntry>,
}

impl StaticRoster {
    pub fn new(entries: Vec<RosterEntry>) -> Self {
        StaticRoster { entries }
    }
}

impl RoleResolver for StaticRoster {
    fn resolve(&self, estate: &str, role: Role, _now_ms: i64) -> Vec<Recipient> {
        self.entries
            .iter()
            .filter(|e| e.role == role && e.estate.as_deref().is_none_or(|x| x == estate))
            .map(|e| Recipient {
                name: e.name.clone(),
                channel: e.channel.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_roster_resolves_estate_entries_and_centre_wide_entries() {
        let r = StaticRoster::new(vec![
            RosterEntry {
                estate: Some("a".into()),
                role: Role::Supervisor,
                name: "sup-a".into(),
                channel: "log".into(),
                secret: None,
                ca_file: None,
            },
            RosterEntry {
                estate: None,
                role: Role::DutyManager,
                name: "dm".into(),
                channel: "log".into(),
                secret: None,
                ca_file: None,
            },
        ]);
        assert_eq!(r.resolve("a", Role::Supervisor, 0).len(), 1);
        assert!(r.resolve("b", Role::Supervisor, 0).is_empty());
        assert_eq!(r.resolve("b", Role::DutyManager, 0)[0].name, "dm");
    }
}
