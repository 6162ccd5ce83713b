//! Pacing (pure): what a recipient is sent now, given every row of theirs that is due. P1 goes
//! at once, alone; P3/P4 first notices wait out the recipient's quiet hours (estate local
//! time); everything else goes at most once per digest interval — one row as itself, more as
//! one digest.
//!
//! The shell ([`super::apply`]) gathers the rows and applies the [`Plan`] in the writer's
//! transaction, so pacing survives restarts (the wait is the row's `next_attempt_at_ms`, the
//! last send is `notify_pacing`).

use std::collections::HashSet;

use crate::roles::QuietHours;

/// Most notifications one digest carries: the rest wait for the next one.
pub const DIGEST_MAX_ITEMS: usize = 50;

const DAY_MS: i64 = 86_400_000;

/// A due notification, as pacing sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueRow {
    pub id: i64,
    /// P1: never held.
    pub urgent: bool,
    pub priority: Option<String>,
    /// 0 = an escalation's first notice; more = a later step or a repeat (not held by quiet
    /// hours); `None` for other kinds.
    pub escalation_step: Option<i64>,
    pub incident: Option<i64>,
    pub created_ms: i64,
    /// A retry, or a digest whose lease ran out: the recipient is owed this very message, so
    /// it goes as itself.
    pub resend: bool,
}

impl DueRow {
    fn escalated(&self) -> bool {
        self.escalation_step.is_some_and(|s| s > 0)
    }

    /// P3/P4 first notices wait out quiet hours; rows about no incident (no priority) do not.
    fn quiet_holdable(&self) -> bool {
        !self.urgent && !self.escalated() && matches!(self.priority.as_deref(), Some("P3" | "P4"))
    }
}

/// A recipient's pacing preferences, resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pacing {
    pub quiet_hours: Option<QuietHours>,
    /// 0: no digests, every row goes as itself.
    pub interval_ms: i64,
    /// The estate's offset from UTC: quiet hours are its local time.
    pub utc_offset_s: i32,
}

impl Pacing {
    /// No pacing at all (a `log` channel: a log line is not a person's phone).
    pub const NONE: Pacing = Pacing {
        quiet_hours: None,
        interval_ms: 0,
        utc_offset_s: 0,
    };
}

/// Why a row waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Held {
    /// The recipient was sent a message less than an interval ago.
    Digest,
    QuietHours,
}

impl Held {
    pub fn as_str(self) -> &'static str {
        match self {
            Held::Digest => "digest",
            Held::QuietHours => "quiet_hours",
        }
    }
}

/// What to do with a recipient's due rows: every input row is in exactly one of `alone`,
/// `digest` and `wait`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Sent as themselves, each its own message.
    pub alone: Vec<i64>,
    /// Carried by one new digest message, oldest first (never exactly one row).
    pub digest: Vec<i64>,
    /// (row, why, until when).
    pub wait: Vec<(i64, Held, i64)>,
    /// Whether a new message goes (the digest interval restarts): a resend does not count,
    /// as the recipient's interval ran from its first attempt.
    pub fresh: bool,
}

/// Minutes after local midnight at `now`.
fn local_minute(now: i64, utc_offset_s: i32) -> u16 {
    let local = now + i64::from(utc_offset_s) * 1000;
    // rem_euclid of a day is below 1440 minutes.
    u16::try_from(local.rem_euclid(DAY_MS) / 60_000).unwrap_or(0)
}

/// When quiet hours `q` end, if `now` is inside them (UTC ms).
pub fn quiet_until(q: &QuietHours, utc_offset_s: i32, now: i64) -> Option<i64> {
    if !q.contains(local_minute(now, utc_offset_s)) {
        return None;
    }
    let offset_ms = i64::from(utc_offset_s) * 1000;
    let local = now + offset_ms;
    let midnight = local - local.rem_euclid(DAY_MS);
    let mut end = midnight + i64::from(q.end_min) * 60_000;
    if end <= local {
        end += DAY_MS;
    }
    Some(end - offset_ms)
}

/// `HH:MM`, local time at `utc_offset_s`, of `at` (UTC ms).
pub fn local_hhmm(at: i64, utc_offset_s: i32) -> String {
    let m = local_minute(at, utc_offset_s);
    format!("{:02}:{:02}", m / 60, m % 60)
}

/// Decides a recipient's due rows at `now`, given when they were last sent a message.
pub fn plan(rows: &[DueRow], p: &Pacing, last_sent_ms: Option<i64>, now: i64) -> Plan {
    let mut rows: Vec<&DueRow> = rows.iter().collect();
    rows.sort_by_key(|r| (r.created_ms, r.id));
    // A later escalation of an incident releases its notices held for quiet hours.
    let escalated: HashSet<i64> = rows
        .iter()
        .filter(|r| r.escalated())
        .filter_map(|r| r.incident)
        .collect();
    let quiet = p.quiet_hours.and_then(|q| quiet_until(&q, p.utc_offset_s, now));
    let mut out = Plan::default();
    let mut paced = Vec::new();
    for r in rows {
        if r.urgent || r.resend {
            out.fresh |= !r.resend;
            out.alone.push(r.id);
        } else if let Some(until) =
            quiet.filter(|_| r.quiet_holdable() && !r.incident.is_some_and(|i| escalated.contains(&i)))
        {
            out.wait.push((r.id, Held::QuietHours, until));
        } else {
            paced.push(r.id);
        }
    }
    if p.interval_ms <= 0 {
        out.fresh |= !paced.is_empty();
        out.alone.extend(paced);
        return out;
    }
    if let Some(next) = last_sent_ms
        .map(|t| t.saturating_add(p.interval_ms))
        .filter(|n| *n > now)
    {
        out.wait.extend(paced.into_iter().map(|id| (id, Held::Digest, next)));
        return out;
    }
    out.fresh |= !paced.is_empty();
    match paced.len() {
        0 => {}
        1 => out.alone.extend(paced),
        _ => {
            let rest = paced.split_off(paced.len().min(DIGEST_MAX_ITEMS));
            out.digest = paced;
            let next = now.saturating_add(p.interval_ms);
            out.wait.extend(rest.into_iter().map(|id| (id, Held::Digest, next)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MIN: i64 = 60_000;
    /// 2025-11-24 00:00 UTC.
    const MIDNIGHT: i64 = 1_763_942_400_000;
    const CST: i32 = 8 * 3600;

    fn row(id: i64, prio: &str) -> DueRow {
        DueRow {
            id,
            urgent: prio == "P1",
            priority: Some(prio.into()),
            escalation_step: Some(0),
            incident: Some(id),
            created_ms: id,
            resend: false,
        }
    }

    fn pacing(q: Option<&str>, interval_s: i64) -> Pacing {
        Pacing {
            quiet_hours: q.map(|q| QuietHours::try_from(q.to_owned()).unwrap()),
            interval_ms: interval_s * 1000,
            utc_offset_s: CST,
        }
    }

    /// `hh:mm` estate local time (UTC+8) on the day after `MIDNIGHT`.
    fn local(hh: i64, mm: i64) -> i64 {
        MIDNIGHT + 24 * 60 * MIN + (hh * 60 + mm) * MIN - i64::from(CST) * 1000
    }

    #[test]
    fn one_row_goes_alone_and_several_become_one_digest_oldest_first() {
        let p = pacing(None, 60);
        assert_eq!(plan(&[row(1, "P3")], &p, None, 0).alone, [1]);
        let out = plan(&[row(3, "P3"), row(1, "P2"), row(2, "P4")], &p, Some(0), 60_000);
        assert_eq!(out.digest, [1, 2, 3]);
        assert!(out.alone.is_empty() && out.wait.is_empty());
    }

    #[test]
    fn within_the_interval_rows_wait_until_it_ends_but_p1_goes_at_once() {
        let p = pacing(None, 60);
        let out = plan(&[row(1, "P3"), row(2, "P1"), row(3, "P2")], &p, Some(10_000), 30_000);
        assert_eq!(out.alone, [2]);
        assert_eq!(out.wait, [(1, Held::Digest, 70_000), (3, Held::Digest, 70_000)]);
    }

    #[test]
    fn interval_zero_sends_every_row_alone() {
        let out = plan(&[row(1, "P3"), row(2, "P3")], &pacing(None, 0), Some(0), 1);
        assert_eq!(out.alone, [1, 2]);
    }

    #[test]
    fn a_digest_carries_at_most_fifty_and_the_rest_wait_an_interval() {
        let rows: Vec<DueRow> = (1..=60).map(|i| row(i, "P3")).collect();
        let out = plan(&rows, &pacing(None, 60), None, 1_000);
        assert_eq!(out.digest, (1..=50).collect::<Vec<_>>());
        assert_eq!(out.wait.len(), 10);
        assert!(out.wait.iter().all(|w| w.1 == Held::Digest && w.2 == 61_000));
    }

    #[test]
    fn retries_go_as_themselves() {
        let mut r = row(1, "P3");
        r.resend = true;
        let out = plan(&[r, row(2, "P3")], &pacing(None, 60), Some(0), 1_000);
        assert_eq!(out.alone, [1]);
        assert_eq!(out.wait, [(2, Held::Digest, 60_000)]);
        assert!(!out.fresh, "a retry does not restart the interval");
    }

    #[test]
    fn quiet_hours_hold_p3_and_p4_first_notices_until_the_window_ends_local_time() {
        let p = pacing(Some("22:00-07:00"), 60);
        let seven = local(7, 0) + 24 * 60 * MIN;
        let out = plan(&[row(1, "P3"), row(2, "P4"), row(3, "P2")], &p, None, local(23, 0));
        assert_eq!(out.alone, [3]);
        assert_eq!(out.wait, [(1, Held::QuietHours, seven), (2, Held::QuietHours, seven)]);
        // After midnight, the same morning.
        let out = plan(&[row(1, "P3")], &p, None, local(23, 0) + 3 * 60 * MIN);
        assert_eq!(out.wait, [(1, Held::QuietHours, seven)]);
        // At 07:00 the window is over.
        assert_eq!(plan(&[row(1, "P3")], &p, None, seven).alone, [1]);
        assert_eq!(plan(&[row(1, "P3")], &p, None, local(21, 59)).alone, [1]);
    }

    #[test]
    fn quiet_hours_do_not_hold_p1_escalations_or_rows_about_no_incident() {
        let p = pacing(Some("22:00-07:00"), 0);
        let mut esc = row(2, "P3");
        esc.escalation_step = Some(1);
        let mut none = row(3, "P3");
        none.priority = None;
        none.incident = None;
        let out = plan(&[row(1, "P1"), esc, none], &p, None, local(23, 0));
        assert_eq!(out.alone, [1, 2, 3]);
    }

    #[test]
    fn an_escalation_releases_its_incidents_held_notice_into_one_digest() {
        let p = pacing(Some("22:00-07:00"), 60);
        let held = row(1, "P3");
        let mut esc = row(2, "P3");
        esc.incident = Some(1);
        esc.escalation_step = Some(1);
        let other = row(3, "P3");
        let out = plan(&[held, esc, other], &p, None, local(23, 10));
        assert_eq!(out.digest, [1, 2]);
        assert_eq!(out.wait.len(), 1);
        assert_eq!(out.wait[0].0, 3);
        assert_eq!(out.wait[0].1, Held::QuietHours);
    }

    #[test]
    fn quiet_until_handles_windows_within_a_day_and_negative_offsets() {
        let q = QuietHours::try_from("12:00-13:30".to_owned()).unwrap();
        let noon_utc = MIDNIGHT + 12 * 60 * MIN;
        assert_eq!(quiet_until(&q, 0, noon_utc + MIN), Some(noon_utc + 90 * MIN));
        assert_eq!(quiet_until(&q, 0, noon_utc + 90 * MIN), None);
        // 12:10 at UTC-5 is 17:10 UTC.
        let t = noon_utc + 5 * 60 * MIN + 10 * MIN;
        assert_eq!(quiet_until(&q, -5 * 3600, t), Some(noon_utc + 5 * 60 * MIN + 90 * MIN));
    }

    fn arb_row() -> impl Strategy<Value = (bool, u8, u8, u8, bool)> {
        (any::<bool>(), 1u8..=5, 0u8..3, 0u8..4, prop::bool::weighted(0.1))
    }

    proptest! {
        /// Fed the rows it held back, time after time, pacing never holds P1, never sends a
        /// recipient two paced messages within an interval, sends every row exactly once, and
        /// sends everything eventually.
        #[test]
        fn pacing_never_holds_p1_never_storms_and_never_loses_a_row(
            arrivals in prop::collection::vec((0i64..600_000, arb_row()), 1..120),
            interval_s in 0i64..300,
            quiet in prop::option::of((0u16..1440, 1u16..1439)),
            offset_h in -12i32..=14,
            start in 0i64..(2 * DAY_MS),
        ) {
            let quiet_hours = quiet.map(|(s, len)| QuietHours { start_min: s, end_min: (s + len) % 1440 });
            let p = Pacing { quiet_hours, interval_ms: interval_s * 1000, utc_offset_s: offset_h * 3600 };
            let mut queued: Vec<(i64, DueRow)> = arrivals
                .iter()
                .enumerate()
                .map(|(i, (at, (urgent, prio, step, inc, resend)))| {
                    let id = i as i64 + 1;
                    let created = start + at;
                    (created, DueRow {
                        id,
                        urgent: *urgent && *prio == 1,
                        priority: (*prio <= 4).then(|| format!("P{prio}")),
                        escalation_step: Some(i64::from(*step)),
                        incident: (*prio <= 4).then_some(i64::from(*inc)),
                        created_ms: created,
                        resend: *resend,
                    })
                })
                .collect();
            let total = queued.len();
            let mut sent = HashSet::new();
            let mut last_sent = None;
            let mut last_paced: Option<i64> = None;
            let mut now = start;
            let mut steps = 0;
            while !queued.is_empty() {
                steps += 1;
                prop_assert!(steps < 10_000, "pacing never finishes");
                let due: Vec<DueRow> = queued.iter().filter(|(at, _)| *at <= now).map(|(_, r)| r.clone()).collect();
                if !due.is_empty() {
                    let out = plan(&due, &p, last_sent, now);
                    let mut seen: Vec<i64> = out.alone.iter().chain(&out.digest).copied()
                        .chain(out.wait.iter().map(|w| w.0)).collect();
                    seen.sort_unstable();
                    let mut ids: Vec<i64> = due.iter().map(|r| r.id).collect();
                    ids.sort_unstable();
                    prop_assert_eq!(seen, ids, "every due row is decided once");
                    prop_assert!(out.digest.len() != 1);
                    for (id, _, until) in &out.wait {
                        prop_assert!(*until > now);
                        let r = due.iter().find(|r| r.id == *id).unwrap();
                        prop_assert!(!r.urgent, "P1 held");
                    }
                    let paced = !out.digest.is_empty()
                        || out.alone.iter().any(|id| due.iter().any(|r| r.id == *id && !r.urgent && !r.resend));
                    if paced && p.interval_ms > 0 {
                        if let Some(t) = last_paced {
                            prop_assert!(now - t >= p.interval_ms, "two messages within an interval");
                        }
                        last_paced = Some(now);
                    }
                    if out.fresh {
                        last_sent = Some(now);
                    }
                    for id in out.alone.iter().chain(&out.digest) {
                        prop_assert!(sent.insert(*id), "row sent twice");
                    }
                    queued.retain(|(_, r)| !out.alone.contains(&r.id) && !out.digest.contains(&r.id));
                    for (id, _, until) in out.wait {
                        if let Some(q) = queued.iter_mut().find(|(_, r)| r.id == id) {
                            q.0 = until;
                        }
                    }
                }
                match queued.iter().map(|(at, _)| *at).min() {
                    Some(next) => now = next.max(now + 1),
                    None => break,
                }
            }
            prop_assert_eq!(sent.len(), total);
        }
    }
}
