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
    /// Where their notifications go: `log`, an `http(s)://` webhook, `robot:<name>` (a chat
    /// robot of `[[notify.robots]]`), `mailto:<address>` or `sms:<number>` (see
    /// `notify::address`).
    pub channel: String,
    /// How they want to be reached: language, quiet hours, digest interval.
    #[serde(default)]
    pub prefs: ContactPrefs,
}

impl Recipient {
    /// A recipient with the default preferences (`[notify]`'s language and digest interval,
    /// no quiet hours).
    pub fn new(name: impl Into<String>, channel: impl Into<String>) -> Self {
        Recipient {
            name: name.into(),
            channel: channel.into(),
            prefs: ContactPrefs::default(),
        }
    }
}

/// The language a person reads their notifications in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum Lang {
    #[default]
    #[serde(rename = "zh-CN")]
    ZhCn,
    #[serde(rename = "en")]
    En,
}

impl Lang {
    pub fn as_str(self) -> &'static str {
        match self {
            Lang::ZhCn => "zh-CN",
            Lang::En => "en",
        }
    }

    pub fn parse(s: &str) -> Option<Lang> {
        match s {
            "zh-CN" | "zh" => Some(Lang::ZhCn),
            "en" | "EN" => Some(Lang::En),
            _ => None,
        }
    }
}

/// A daily window, local time of the estate the notification concerns, in which P3/P4
/// notifications wait for its end (`"22:00-07:00"`; it may cross midnight).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct QuietHours {
    /// Minutes after local midnight: the window is `[start, end)`.
    pub start_min: u16,
    pub end_min: u16,
}

impl QuietHours {
    /// Whether `minute` (after local midnight, 0..1440) is inside the window.
    pub fn contains(&self, minute: u16) -> bool {
        if self.start_min <= self.end_min {
            (self.start_min..self.end_min).contains(&minute)
        } else {
            minute >= self.start_min || minute < self.end_min
        }
    }
}

impl TryFrom<String> for QuietHours {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let hm = |t: &str| -> Option<u16> {
            let (h, m) = t.trim().split_once(':')?;
            let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
            (h < 24 && m < 60).then_some(h * 60 + m)
        };
        let bad = || format!("expected \"HH:MM-HH:MM\" (local time, may cross midnight), got {s:?}");
        let (a, b) = s.split_once('-').ok_or_else(bad)?;
        let (start_min, end_min) = (hm(a).ok_or_else(bad)?, hm(b).ok_or_else(bad)?);
        if start_min == end_min {
            return Err(format!("{s:?} is an empty window"));
        }
        Ok(QuietHours { start_min, end_min })
    }
}

impl From<QuietHours> for String {
    fn from(q: QuietHours) -> String {
        format!(
            "{:02}:{:02}-{:02}:{:02}",
            q.start_min / 60,
            q.start_min % 60,
            q.end_min / 60,
            q.end_min % 60
        )
    }
}

/// A person's preferences for being reached; unset ones take `[notify]`'s defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ContactPrefs {
    /// Default `notify.language`.
    pub language: Option<Lang>,
    /// None: no quiet hours.
    pub quiet_hours: Option<QuietHours>,
    /// At most one message per this many seconds (a digest of what changed); default
    /// `notify.digest_interval_s`. P1 is never held.
    pub digest_interval_s: Option<u32>,
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
    /// Or the environment variable holding it.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// https webhooks: a PEM file of CA certificates trusted besides the system's roots
    /// (instead of `notify.ca_file`).
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
    /// `zh-CN` or `en` (default `notify.language`).
    #[serde(default)]
    pub language: Option<Lang>,
    /// `"22:00-07:00"`: P3/P4 notifications wait until the window ends (estate local time).
    #[serde(default)]
    pub quiet_hours: Option<QuietHours>,
    /// At most one message per this many seconds (default `notify.digest_interval_s`).
    #[serde(default)]
    pub digest_interval_s: Option<u32>,
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
                prefs: ContactPrefs {
                    language: e.language,
                    quiet_hours: e.quiet_hours,
                    digest_interval_s: e.digest_interval_s,
                },
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
                secret_env: None,
                ca_file: None,
                language: None,
                quiet_hours: None,
                digest_interval_s: None,
            },
            RosterEntry {
                estate: None,
                role: Role::DutyManager,
                name: "dm".into(),
                channel: "log".into(),
                secret: None,
                secret_env: None,
                ca_file: None,
                language: None,
                quiet_hours: None,
                digest_interval_s: None,
            },
        ]);
        assert_eq!(r.resolve("a", Role::Supervisor, 0).len(), 1);
        assert!(r.resolve("b", Role::Supervisor, 0).is_empty());
        assert_eq!(r.resolve("b", Role::DutyManager, 0)[0].name, "dm");
    }

    #[test]
    fn quiet_hours_parse_and_may_cross_midnight() {
        let q = QuietHours::try_from("22:00-07:00".to_owned()).unwrap();
        assert!(q.contains(23 * 60) && q.contains(0) && q.contains(6 * 60 + 59));
        assert!(!q.contains(7 * 60) && !q.contains(12 * 60) && !q.contains(21 * 60 + 59));
        let day = QuietHours::try_from("12:30-13:00".to_owned()).unwrap();
        assert!(day.contains(12 * 60 + 30) && !day.contains(13 * 60));
        assert_eq!(String::from(q), "22:00-07:00");
        for bad in ["22:00", "25:00-07:00", "22:00-22:00", "x-y", "22:60-07:00"] {
            assert!(QuietHours::try_from(bad.to_owned()).is_err(), "{bad}");
        }
    }
}
