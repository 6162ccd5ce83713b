//! The rota's model: posts, guards, shift templates, patrol routes and settings as the
//! configuration file states them, their validation, the estate's UTC offset, and shift
//! instances (a template on a local date → an interval in UTC milliseconds). Pure.

use std::collections::{HashMap, HashSet};

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// `[rota]`: settings of the rota.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RotaSettings {
    /// An empty or under-staffed post becomes a P2 alarm after this long.
    pub grace_s: u32,
    /// Clocking in this much after the shift's start is recorded as late; clocking out this
    /// much before its end as early.
    pub late_after_s: u32,
    /// Hard rule: rest between two assignments of a guard (travel counts against it).
    pub min_rest_h: u32,
    /// Hard rule: a guard's weekly hours may exceed the contract by at most this much.
    pub max_overtime_h: u32,
    /// Travel time between two estates not listed in `travel`.
    pub default_travel_min: u32,
    /// Travel times between estates (both directions).
    pub travel: Vec<TravelConfig>,
    /// Shift templates; default day 08:00–20:00 and night 20:00–08:00.
    pub shifts: Vec<ShiftTemplate>,
    /// Integer costs of the soft rules.
    pub weights: Weights,
    /// A bulk action (CSV import, published plan) works at most this long in one writer
    /// turn before the turn commits and other work (alarms) goes next.
    pub bulk_slice_ms: u32,
    /// At most this many slots are sent to the writer in one slice of a bulk action.
    pub bulk_slice_slots: u32,
}

impl Default for RotaSettings {
    fn default() -> Self {
        RotaSettings {
            grace_s: 300,
            late_after_s: 300,
            min_rest_h: 12,
            max_overtime_h: 12,
            default_travel_min: 45,
            travel: Vec::new(),
            shifts: vec![
                ShiftTemplate {
                    name: "day".into(),
                    start: "08:00".into(),
                    hours: 12,
                },
                ShiftTemplate {
                    name: "night".into(),
                    start: "20:00".into(),
                    hours: 12,
                },
            ],
            weights: Weights::default(),
            bulk_slice_ms: 20,
            bulk_slice_slots: 1_000,
        }
    }
}

/// `[[rota.travel]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TravelConfig {
    pub from: String,
    pub to: String,
    pub minutes: u32,
}

/// `[[rota.shifts]]`: a shift template in the estate's local time.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ShiftTemplate {
    pub name: String,
    /// `HH:MM`, local time of the estate.
    pub start: String,
    pub hours: u32,
}

impl ShiftTemplate {
    /// Minutes after local midnight.
    pub fn start_minute(&self) -> Option<i64> {
        let (h, m) = self.start.split_once(':')?;
        let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
        ((0..24).contains(&h) && (0..60).contains(&m)).then_some(h * 60 + m)
    }

    /// A night shift: it runs past local midnight (counts for `max_consecutive_nights`).
    pub fn is_night(&self) -> bool {
        self.start_minute()
            .is_some_and(|m| m + i64::from(self.hours) * 60 > 24 * 60)
    }
}

/// `[rota.weights]`: integer costs of the soft rules.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Weights {
    /// Per minute of travel.
    pub travel_per_min: i64,
    /// Per hour beyond the weekly contract.
    pub overtime_per_h: i64,
    /// Per hour a guard's rolling four-week hours are above the average.
    pub fairness_hours_per_h: i64,
    /// Per night a guard's rolling four-week nights are above the average (night slots).
    pub fairness_nights_per_night: i64,
    /// A guard who has not worked at the estate in four weeks and is not based there.
    pub unfamiliar: i64,
    /// Per change to the published rota (an assignment moved or replaced).
    pub change: i64,
    /// A slot left unfilled (reported and escalated).
    pub unfilled: i64,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            travel_per_min: 2,
            overtime_per_h: 30,
            fairness_hours_per_h: 3,
            fairness_nights_per_night: 15,
            unfamiliar: 60,
            change: 200,
            unfilled: 100_000,
        }
    }
}

/// The kind of a post.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PostKind {
    Gate,
    VehicleGate,
    Patrol,
    MonitoringRoom,
}

impl PostKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PostKind::Gate => "gate",
            PostKind::VehicleGate => "vehicle_gate",
            PostKind::Patrol => "patrol",
            PostKind::MonitoringRoom => "monitoring_room",
        }
    }

    /// The escalation role the post holds.
    pub fn role(self) -> crate::roles::Role {
        use crate::roles::Role;
        match self {
            PostKind::Gate | PostKind::VehicleGate => Role::GatePost,
            PostKind::Patrol => Role::PatrolPost,
            PostKind::MonitoringRoom => Role::MonitoringRoom,
        }
    }
}

/// `[[posts]]`: a post of an estate, staffed on every shift it lists.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PostConfig {
    pub estate: String,
    pub id: String,
    pub kind: PostKind,
    /// Area of the estate (alarms of the post are raised there). Default: the post id.
    pub area: Option<String>,
    /// Guards required per shift (the minimum). Default 1; the monitoring room 2.
    pub headcount: Option<u32>,
    /// Qualifications every guard on the post needs (e.g. `fire_safety`).
    #[serde(default)]
    pub qualifications: Vec<String>,
    /// Readers (device ids, or `device:door`) where a guard clocks on and off the post.
    #[serde(default)]
    pub readers: Vec<String>,
    /// Shift templates the post is staffed on (default: every template).
    #[serde(default)]
    pub shifts: Vec<String>,
}

impl PostConfig {
    pub fn required(&self) -> u32 {
        self.headcount.unwrap_or(match self.kind {
            PostKind::MonitoringRoom => 2,
            _ => 1,
        })
    }

    pub fn area(&self) -> &str {
        self.area.as_deref().unwrap_or(&self.id)
    }
}

/// A period of leave, local dates inclusive.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LeaveConfig {
    pub from: NaiveDate,
    pub to: NaiveDate,
}

/// `[[guards]]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GuardConfig {
    pub id: String,
    pub name: String,
    /// The estate the guard is based at; none for a floating guard.
    pub home_estate: Option<String>,
    /// A floating guard covers any estate of the region.
    #[serde(default)]
    pub floating: bool,
    #[serde(default)]
    pub qualifications: Vec<String>,
    /// Badge credentials (card numbers) of the guard: a badge at a post's reader clocks on.
    #[serde(default)]
    pub credentials: Vec<String>,
    #[serde(default = "default_contract_hours")]
    pub contract_hours: u32,
    #[serde(default = "default_max_nights")]
    pub max_consecutive_nights: u32,
    #[serde(default)]
    pub leave: Vec<LeaveConfig>,
    /// Where the guard's notifications go: `log`, an `http://` / `https://` webhook (signed
    /// with `notify.webhook_secret`, trusting `notify.ca_file`), `robot:<name>`,
    /// `mailto:<address>` or `sms:<number>`.
    #[serde(default = "default_channel")]
    pub channel: String,
    /// The language of the guard's notifications, `zh-CN` or `en` (default
    /// `notify.language`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<crate::roles::Lang>,
}

impl GuardConfig {
    /// The guard as a notification recipient.
    pub fn recipient(&self) -> crate::roles::Recipient {
        let mut r = crate::roles::Recipient::new(self.name.clone(), self.channel.clone());
        r.prefs.language = self.language;
        r
    }
}

fn default_contract_hours() -> u32 {
    48
}
fn default_max_nights() -> u32 {
    4
}
fn default_channel() -> String {
    "log".into()
}

/// `[[patrol_routes]]`: a patrol tour over checkpoints, started every `period_min`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PatrolRouteConfig {
    pub estate: String,
    pub id: String,
    /// The patrol post that walks it; a tour starts only while someone is on that post.
    pub post: Option<String>,
    /// Checkpoints: reader device ids, or `device:tag` for a tag scanned at a reader.
    pub checkpoints: Vec<String>,
    #[serde(default = "default_period")]
    pub period_min: u32,
    /// Time allowed to walk the whole tour.
    #[serde(default = "default_tour")]
    pub tour_min: u32,
    /// A checkpoint scanned later than its expected time plus this is late.
    #[serde(default = "default_tolerance")]
    pub tolerance_min: u32,
    /// Shuffle the checkpoint order per tour (the practice: no fixed pattern).
    #[serde(default = "default_true")]
    pub shuffle: bool,
}

fn default_period() -> u32 {
    120
}
fn default_tour() -> u32 {
    30
}
fn default_tolerance() -> u32 {
    5
}
fn default_true() -> bool {
    true
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

fn slug(key: &str, v: &str) -> Result<(), ConfigError> {
    if v.is_empty()
        || v.len() > 64
        || !v
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(invalid(
            key,
            format!("{v:?}: a slug of letters, digits, -, _ and . (at most 64)"),
        ));
    }
    Ok(())
}

/// The fixed UTC offset (seconds) of a time zone. Zones with daylight-saving time are not
/// known (no tz database is built in): they return `None`, and an estate with posts in such a
/// zone is refused at load. `+08:00` / `UTC+8` forms are accepted as they are.
pub fn utc_offset_s(tz: &str) -> Option<i32> {
    let fixed: &[(&str, i32)] = &[
        ("UTC", 0),
        ("Etc/UTC", 0),
        ("GMT", 0),
        ("Asia/Shanghai", 8 * 3600),
        ("Asia/Chongqing", 8 * 3600),
        ("Asia/Harbin", 8 * 3600),
        ("PRC", 8 * 3600),
        ("Asia/Hong_Kong", 8 * 3600),
        ("Asia/Macau", 8 * 3600),
        ("Asia/Taipei", 8 * 3600),
        ("Asia/Singapore", 8 * 3600),
        ("Asia/Kuala_Lumpur", 8 * 3600),
        ("Asia/Manila", 8 * 3600),
        ("Australia/Perth", 8 * 3600),
        ("Asia/Tokyo", 9 * 3600),
        ("Asia/Seoul", 9 * 3600),
        ("Asia/Bangkok", 7 * 3600),
        ("Asia/Ho_Chi_Minh", 7 * 3600),
        ("Asia/Jakarta", 7 * 3600),
        ("Asia/Kolkata", 5 * 3600 + 1800),
        ("Asia/Dubai", 4 * 3600),
    ];
    if let Some((_, o)) = fixed.iter().find(|(n, _)| *n == tz) {
        return Some(*o);
    }
    let rest = tz.strip_prefix("UTC").unwrap_or(tz);
    let (sign, rest) = match rest.chars().next()? {
        '+' => (1, &rest[1..]),
        '-' => (-1, &rest[1..]),
        _ => return None,
    };
    let (h, m) = rest.split_once(':').unwrap_or((rest, "0"));
    let (h, m): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
    ((0..=14).contains(&h) && (0..60).contains(&m)).then_some(sign * (h * 3600 + m * 60))
}

/// One shift of one post on one local date.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Slot {
    pub estate: String,
    pub post: String,
    pub shift: String,
    pub date: NaiveDate,
    pub start_ms: i64,
    pub end_ms: i64,
    pub night: bool,
}

impl Slot {
    /// The gap / slot key: `post@start_ms`.
    pub fn key(&self) -> String {
        format!("{}@{}", self.post, self.start_ms)
    }
}

/// An estate as the rota needs it (from `[[estates]]`): its id and its time zone. The rota
/// owns this type so that it does not depend on the configuration file's shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EstateZone {
    pub id: String,
    /// IANA name or fixed offset (see [`utc_offset_s`]).
    pub timezone: String,
}

/// The validated rota model, with indexes.
#[derive(Debug, Clone, Default)]
pub struct RotaModel {
    pub settings: RotaSettings,
    pub posts: Vec<PostConfig>,
    pub guards: Vec<GuardConfig>,
    pub routes: Vec<PatrolRouteConfig>,
    /// Estate id → UTC offset in ms.
    pub offsets: HashMap<String, i64>,
    pub post_index: HashMap<String, usize>,
    pub guard_index: HashMap<String, usize>,
    /// Credential → guard index.
    pub credentials: HashMap<String, usize>,
    /// Reader (`device` or `device:door`) → post index.
    pub readers: HashMap<String, usize>,
    /// Reader → (route index, checkpoint).
    pub checkpoints: HashMap<String, Vec<usize>>,
    travel: HashMap<String, HashMap<String, u32>>,
}

impl RotaModel {
    /// Validates the rota sections against the estates and builds the indexes.
    pub fn build(
        estates: &[EstateZone],
        settings: &RotaSettings,
        posts: &[PostConfig],
        guards: &[GuardConfig],
        routes: &[PatrolRouteConfig],
    ) -> Result<RotaModel, ConfigError> {
        let estate_ids: HashSet<&str> = estates.iter().map(|e| e.id.as_str()).collect();
        let known = |key: &str, e: &str| {
            if estate_ids.contains(e) {
                Ok(())
            } else {
                Err(invalid(key, format!("unknown estate {e:?} (not in [[estates]])")))
            }
        };
        let mut m = RotaModel {
            settings: settings.clone(),
            posts: posts.to_vec(),
            guards: guards.to_vec(),
            routes: routes.to_vec(),
            ..Default::default()
        };
        let s = &settings;
        if s.grace_s == 0 {
            return Err(invalid("rota.grace_s", "must be at least 1"));
        }
        if s.bulk_slice_ms == 0 {
            return Err(invalid("rota.bulk_slice_ms", "must be at least 1"));
        }
        if s.bulk_slice_slots == 0 {
            return Err(invalid("rota.bulk_slice_slots", "must be at least 1"));
        }
        if s.shifts.is_empty() {
            return Err(invalid("rota.shifts", "must list at least one shift template"));
        }
        let mut names = HashSet::new();
        for (i, t) in s.shifts.iter().enumerate() {
            slug(&format!("rota.shifts[{i}].name"), &t.name)?;
            if !names.insert(t.name.as_str()) {
                return Err(invalid(format!("rota.shifts[{i}].name"), "defined twice"));
            }
            if t.start_minute().is_none() {
                return Err(invalid(format!("rota.shifts[{i}].start"), "expected HH:MM"));
            }
            if !(1..=24).contains(&t.hours) {
                return Err(invalid(format!("rota.shifts[{i}].hours"), "between 1 and 24"));
            }
        }
        for (i, t) in s.travel.iter().enumerate() {
            known(&format!("rota.travel[{i}].from"), &t.from)?;
            known(&format!("rota.travel[{i}].to"), &t.to)?;
            m.travel
                .entry(t.from.clone())
                .or_default()
                .insert(t.to.clone(), t.minutes);
            m.travel
                .entry(t.to.clone())
                .or_default()
                .insert(t.from.clone(), t.minutes);
        }
        for (i, p) in posts.iter().enumerate() {
            let key = |f: &str| format!("posts[{i}].{f}");
            known(&key("estate"), &p.estate)?;
            slug(&key("id"), &p.id)?;
            if m.post_index.insert(p.id.clone(), i).is_some() {
                return Err(invalid(key("id"), format!("post {:?} is defined twice", p.id)));
            }
            if p.required() == 0 {
                return Err(invalid(
                    key("headcount"),
                    "must be at least 1 (no post may stand empty)",
                ));
            }
            if p.kind == PostKind::MonitoringRoom && p.required() < 2 {
                return Err(invalid(
                    key("headcount"),
                    "the monitoring room needs at least two per shift (GB 25506 practice)",
                ));
            }
            for sh in &p.shifts {
                if !names.contains(sh.as_str()) {
                    return Err(invalid(key("shifts"), format!("unknown shift template {sh:?}")));
                }
            }
            for r in &p.readers {
                if m.readers.insert(r.clone(), i).is_some() {
                    return Err(invalid(key("readers"), format!("reader {r:?} belongs to two posts")));
                }
            }
            if !m.offsets.contains_key(&p.estate) {
                let e = estates.iter().find(|e| e.id == p.estate).expect("checked");
                let Some(o) = utc_offset_s(e.timezone.trim()) else {
                    return Err(invalid(
                        format!("estates[{}].timezone", p.estate),
                        format!(
                            "{:?}: the rota knows fixed-offset zones only (e.g. Asia/Shanghai, UTC, +08:00); zones with daylight-saving time are not supported",
                            e.timezone
                        ),
                    ));
                };
                m.offsets.insert(p.estate.clone(), i64::from(o) * 1000);
            }
        }
        for (i, g) in guards.iter().enumerate() {
            let key = |f: &str| format!("guards[{i}].{f}");
            slug(&key("id"), &g.id)?;
            if g.name.trim().is_empty() {
                return Err(invalid(key("name"), "must not be empty"));
            }
            if m.guard_index.insert(g.id.clone(), i).is_some() {
                return Err(invalid(key("id"), format!("guard {:?} is defined twice", g.id)));
            }
            match (&g.home_estate, g.floating) {
                (Some(e), _) => known(&key("home_estate"), e)?,
                (None, false) => return Err(invalid(key("home_estate"), "required unless the guard is floating")),
                (None, true) => {}
            }
            for c in &g.credentials {
                if c.trim().is_empty() {
                    return Err(invalid(key("credentials"), "must not be empty"));
                }
                if m.credentials.insert(c.clone(), i).is_some() {
                    // The credential is not named: it is personal data.
                    return Err(invalid(key("credentials"), "a credential belongs to two guards"));
                }
            }
            if g.contract_hours == 0 || g.contract_hours > 84 {
                return Err(invalid(key("contract_hours"), "between 1 and 84"));
            }
            for (j, l) in g.leave.iter().enumerate() {
                if l.to < l.from {
                    return Err(invalid(format!("guards[{i}].leave[{j}]"), "`to` is before `from`"));
                }
            }
            if let Err(e) = crate::notify::address::Address::parse(&g.channel) {
                return Err(invalid(key("channel"), e));
            }
        }
        let mut route_ids = HashSet::new();
        for (i, r) in routes.iter().enumerate() {
            let key = |f: &str| format!("patrol_routes[{i}].{f}");
            known(&key("estate"), &r.estate)?;
            slug(&key("id"), &r.id)?;
            if !route_ids.insert(r.id.as_str()) {
                return Err(invalid(key("id"), "defined twice"));
            }
            if let Some(p) = &r.post {
                match m.post_index.get(p) {
                    Some(&pi) if posts[pi].estate == r.estate => {}
                    _ => {
                        return Err(invalid(
                            key("post"),
                            format!("unknown post {p:?} of estate {:?}", r.estate),
                        ));
                    }
                }
            }
            if r.checkpoints.is_empty() {
                return Err(invalid(key("checkpoints"), "at least one"));
            }
            if r.period_min == 0 || r.tour_min == 0 || r.tour_min > r.period_min {
                return Err(invalid(
                    key("tour_min"),
                    "period_min and tour_min at least 1, tour_min ≤ period_min",
                ));
            }
            for c in &r.checkpoints {
                if m.readers.contains_key(c) {
                    return Err(invalid(
                        key("checkpoints"),
                        format!("{c:?} is also a post's clock reader"),
                    ));
                }
                m.checkpoints.entry(c.clone()).or_default().push(i);
            }
            if !m.offsets.contains_key(&r.estate) {
                let e = estates.iter().find(|e| e.id == r.estate).expect("checked");
                let o = utc_offset_s(e.timezone.trim())
                    .ok_or_else(|| invalid(format!("estates[{}].timezone", r.estate), "not a fixed-offset zone"))?;
                m.offsets.insert(r.estate.clone(), i64::from(o) * 1000);
            }
        }
        Ok(m)
    }

    pub fn enabled(&self) -> bool {
        !self.posts.is_empty() || !self.routes.is_empty()
    }

    pub fn post(&self, id: &str) -> Option<&PostConfig> {
        self.post_index.get(id).map(|&i| &self.posts[i])
    }

    pub fn guard(&self, id: &str) -> Option<&GuardConfig> {
        self.guard_index.get(id).map(|&i| &self.guards[i])
    }

    pub fn template(&self, name: &str) -> Option<&ShiftTemplate> {
        self.settings.shifts.iter().find(|t| t.name == name)
    }

    pub fn offset_ms(&self, estate: &str) -> i64 {
        self.offsets.get(estate).copied().unwrap_or(0)
    }

    /// Travel minutes between two estates (0 within one estate).
    pub fn travel_min(&self, a: &str, b: &str) -> u32 {
        if a == b {
            return 0;
        }
        self.travel
            .get(a)
            .and_then(|t| t.get(b))
            .copied()
            .unwrap_or(self.settings.default_travel_min)
    }

    /// The local date at `ms` in the estate.
    pub fn local_date(&self, estate: &str, ms: i64) -> NaiveDate {
        date_of(ms + self.offset_ms(estate))
    }

    /// The templates a post is staffed on.
    pub fn post_templates<'a>(&'a self, post: &'a PostConfig) -> impl Iterator<Item = &'a ShiftTemplate> + 'a {
        self.settings
            .shifts
            .iter()
            .filter(move |t| post.shifts.is_empty() || post.shifts.contains(&t.name))
    }

    /// The slot of a post for a template on a local date.
    pub fn slot(&self, post: &PostConfig, t: &ShiftTemplate, date: NaiveDate) -> Slot {
        let start =
            days_from_epoch(date) * DAY_MS + t.start_minute().unwrap_or(0) * 60_000 - self.offset_ms(&post.estate);
        Slot {
            estate: post.estate.clone(),
            post: post.id.clone(),
            shift: t.name.clone(),
            date,
            start_ms: start,
            end_ms: start + i64::from(t.hours) * HOUR_MS,
            night: t.is_night(),
        }
    }

    /// The slot of a post running at `ms`, if it is staffed then.
    pub fn slot_at(&self, post: &PostConfig, ms: i64) -> Option<Slot> {
        let d = self.local_date(&post.estate, ms);
        for date in [d, d.pred_opt()?] {
            for t in self.post_templates(post) {
                let s = self.slot(post, t, date);
                if s.start_ms <= ms && ms < s.end_ms {
                    return Some(s);
                }
            }
        }
        None
    }

    /// The next slot of a post starting after `ms`.
    pub fn next_slot(&self, post: &PostConfig, ms: i64) -> Option<Slot> {
        let d = self.local_date(&post.estate, ms);
        let mut best: Option<Slot> = None;
        for k in 0..3 {
            let date = d.checked_add_days(chrono::Days::new(k))?;
            for t in self.post_templates(post) {
                let s = self.slot(post, t, date);
                if s.start_ms > ms && best.as_ref().is_none_or(|b| s.start_ms < b.start_ms) {
                    best = Some(s);
                }
            }
        }
        best
    }

    /// The slot named by a key `post@start_ms`.
    pub fn slot_by_key(&self, key: &str) -> Option<Slot> {
        let (post, start) = key.rsplit_once('@')?;
        let start: i64 = start.parse().ok()?;
        let post = self.post(post)?;
        self.slot_at(post, start).filter(|s| s.start_ms == start)
    }

    /// Is the guard on leave on the local date of `ms` (at `estate`)?
    pub fn on_leave(&self, guard: &GuardConfig, estate: &str, ms: i64) -> bool {
        let d = self.local_date(estate, ms);
        guard.leave.iter().any(|l| l.from <= d && d <= l.to)
    }
}

/// Days since 1970-01-01 of a date.
pub fn days_from_epoch(d: NaiveDate) -> i64 {
    i64::from(d.num_days_from_ce()) - 719_163
}

/// The UTC date of milliseconds since the epoch (of local milliseconds, the local date).
pub fn date_of(ms: i64) -> NaiveDate {
    NaiveDate::from_num_days_from_ce_opt((ms.div_euclid(DAY_MS) + 719_163) as i32).unwrap_or_default()
}

/// The Monday starting the ISO week of a date.
pub fn monday_of(d: NaiveDate) -> NaiveDate {
    d - chrono::Days::new(u64::from(d.weekday().num_days_from_monday()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn estate(tz: &str) -> EstateZone {
        EstateZone {
            id: "a".into(),
            timezone: tz.into(),
        }
    }

    fn post(id: &str) -> PostConfig {
        PostConfig {
            estate: "a".into(),
            id: id.into(),
            kind: PostKind::Gate,
            area: None,
            headcount: None,
            qualifications: vec![],
            readers: vec![format!("{id}-reader")],
            shifts: vec![],
        }
    }

    #[test]
    fn fixed_offsets_are_known_and_daylight_saving_zones_are_refused() {
        assert_eq!(utc_offset_s("Asia/Shanghai"), Some(28_800));
        assert_eq!(utc_offset_s("+05:30"), Some(19_800));
        assert_eq!(utc_offset_s("UTC-3"), Some(-10_800));
        assert_eq!(utc_offset_s("Europe/London"), None);
        let err = RotaModel::build(
            &[estate("Europe/London")],
            &RotaSettings::default(),
            &[post("g")],
            &[],
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("daylight-saving"), "{err}");
    }

    #[test]
    fn night_shift_in_shanghai_runs_from_twelve_to_midnight_utc() {
        let m = RotaModel::build(
            &[estate("Asia/Shanghai")],
            &RotaSettings::default(),
            &[post("g")],
            &[],
            &[],
        )
        .unwrap();
        let p = m.post("g").unwrap();
        // 2026-11-26 02:47 +08:00 = 2026-11-25 18:47Z: the night shift that began on the 25th.
        let t = chrono::DateTime::parse_from_rfc3339("2026-11-26T02:47:00+08:00")
            .unwrap()
            .timestamp_millis();
        let s = m.slot_at(p, t).unwrap();
        assert_eq!(s.shift, "night");
        assert_eq!(s.date, NaiveDate::from_ymd_opt(2026, 11, 25).unwrap());
        assert_eq!(crate::alarms::rfc3339(s.start_ms), "2026-11-25T12:00:00.000Z");
        assert!(s.night);
        let n = m.next_slot(p, t).unwrap();
        assert_eq!((n.shift.as_str(), n.start_ms), ("day", s.end_ms));
        assert_eq!(m.slot_by_key(&s.key()), Some(s));
    }

    #[test]
    fn monitoring_room_needs_two() {
        let mut p = post("m");
        p.kind = PostKind::MonitoringRoom;
        assert_eq!(p.required(), 2);
        p.headcount = Some(1);
        assert!(RotaModel::build(&[estate("UTC")], &RotaSettings::default(), &[p], &[], &[]).is_err());
    }
}
