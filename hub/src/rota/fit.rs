//! The rules a guard's schedule must keep (hard) and what it costs (soft), shared by cover
//! proposals and the weekly plan. Pure.
//!
//! Hard: qualification, no overlap, at least `min_rest_h` of rest between assignments (travel
//! between the estates counts against the rest), weekly hours within contract plus
//! `max_overtime_h`, leave and absences, at most `max_consecutive_nights` nights in a row.

use serde::Serialize;

use super::model::{GuardConfig, RotaModel, date_of, days_from_epoch, monday_of};

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// One interval a guard is busy (an assignment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Busy {
    pub start: i64,
    pub end: i64,
    pub estate: String,
    /// Local day number (days since the epoch) of a night shift's start, else `None`.
    pub night_day: Option<i64>,
}

/// What a slot asks of a guard.
#[derive(Debug, Clone, Copy)]
pub struct Want<'a> {
    pub estate: &'a str,
    pub start: i64,
    pub end: i64,
    pub night: bool,
    pub quals: &'a [String],
}

/// A broken hard rule.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum Violation {
    Qualification {
        missing: String,
    },
    Leave,
    Absent,
    Overlap,
    Rest {
        hours: f64,
        min: u32,
    },
    WeeklyHours {
        hours: f64,
        max: u32,
    },
    ConsecutiveNights {
        nights: u32,
        max: u32,
    },
    /// A guard moved mid-shift works one continuous duty: no longer than the longest shift.
    DutyLength {
        hours: f64,
        max: u32,
    },
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Violation::Qualification { missing } => write!(f, "lacks qualification {missing}"),
            Violation::Leave => f.write_str("on leave"),
            Violation::Absent => f.write_str("reported absent"),
            Violation::Overlap => f.write_str("already assigned at that time"),
            Violation::Rest { hours, min } => write!(f, "only {hours:.1} h of rest (at least {min} h)"),
            Violation::WeeklyHours { hours, max } => write!(f, "{hours:.1} h in the week (at most {max} h)"),
            Violation::ConsecutiveNights { nights, max } => write!(f, "{nights} nights in a row (at most {max})"),
            Violation::DutyLength { hours, max } => write!(f, "a continuous duty of {hours:.1} h (at most {max} h)"),
        }
    }
}

/// The hard rules' values for a fit that keeps them (shown with a proposal).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HardFacts {
    /// Rest before the slot (hours, travel deducted); `null` when nothing comes before.
    pub rest_before_h: Option<f64>,
    pub rest_after_h: Option<f64>,
    /// Hours in the slot's week including the slot.
    pub week_hours: f64,
    pub nights_in_row: u32,
}

/// The longest shift template: a duty (a shift, or a shift continued at another post after a
/// mid-shift move) is never longer.
pub fn max_duty_h(m: &RotaModel) -> u32 {
    m.settings.shifts.iter().map(|t| t.hours).max().unwrap_or(12)
}

/// The ISO week (local) window of a slot, in UTC ms.
pub fn week_window(m: &RotaModel, estate: &str, ms: i64) -> (i64, i64) {
    let monday = monday_of(m.local_date(estate, ms));
    let start = days_from_epoch(monday) * DAY_MS - m.offset_ms(estate);
    (start, start + 7 * DAY_MS)
}

/// Checks every hard rule for guard `g`, busy with `busy` (sorted by start; the assignment
/// being replaced already removed), absent during `absent`, taking `w`.
pub fn hard(
    m: &RotaModel,
    g: &GuardConfig,
    busy: &[Busy],
    absent: &[(i64, i64)],
    w: &Want<'_>,
) -> Result<HardFacts, Violation> {
    hard_travel(m, g, busy, absent, w, true)
}

/// [`hard`], optionally without travel (an optimistic check shared by every estate of a
/// window: the proposals solver then deducts each estate's travel from the rest margins).
pub fn hard_travel(
    m: &RotaModel,
    g: &GuardConfig,
    busy: &[Busy],
    absent: &[(i64, i64)],
    w: &Want<'_>,
    travel: bool,
) -> Result<HardFacts, Violation> {
    let travel_ms = |a: &str, b: &str| {
        if travel {
            i64::from(m.travel_min(a, b)) * 60_000
        } else {
            0
        }
    };
    if let Some(q) = w.quals.iter().find(|q| !g.qualifications.contains(q)) {
        return Err(Violation::Qualification { missing: q.clone() });
    }
    if m.on_leave(g, w.estate, w.start) || m.on_leave(g, w.estate, w.end - 1) {
        return Err(Violation::Leave);
    }
    if absent.iter().any(|&(a, b)| a < w.end && w.start < b) {
        return Err(Violation::Absent);
    }
    let min_rest = i64::from(m.settings.min_rest_h) * HOUR_MS;
    let mut facts = HardFacts {
        rest_before_h: None,
        rest_after_h: None,
        week_hours: 0.0,
        nights_in_row: 0,
    };
    // Neighbours: the last before and the first after (busy is sorted and non-overlapping).
    let idx = busy.partition_point(|b| b.start < w.start);
    for b in busy[idx.saturating_sub(1)..].iter().take(2) {
        if b.start < w.end && w.start < b.end {
            return Err(Violation::Overlap);
        }
    }
    if idx > 0 {
        let b = &busy[idx - 1];
        let rest = w.start - b.end - travel_ms(&b.estate, w.estate);
        facts.rest_before_h = Some(rest as f64 / HOUR_MS as f64);
        if rest < min_rest {
            return Err(Violation::Rest {
                hours: rest as f64 / HOUR_MS as f64,
                min: m.settings.min_rest_h,
            });
        }
    }
    if let Some(b) = busy.get(idx) {
        let rest = b.start - w.end - travel_ms(w.estate, &b.estate);
        facts.rest_after_h = Some(rest as f64 / HOUR_MS as f64);
        if rest < min_rest {
            return Err(Violation::Rest {
                hours: rest as f64 / HOUR_MS as f64,
                min: m.settings.min_rest_h,
            });
        }
    }
    let (ws, we) = week_window(m, w.estate, w.start);
    let worked: i64 = busy
        .iter()
        .filter(|b| b.start >= ws && b.start < we)
        .map(|b| b.end - b.start)
        .sum();
    let hours = (worked + w.end - w.start) as f64 / HOUR_MS as f64;
    facts.week_hours = hours;
    let max = g.contract_hours + m.settings.max_overtime_h;
    if hours > f64::from(max) + 1e-9 {
        return Err(Violation::WeeklyHours { hours, max });
    }
    if w.night {
        let day = days_from_epoch(date_of(w.start + m.offset_ms(w.estate)));
        let has = |d: i64| busy.iter().any(|b| b.night_day == Some(d));
        let mut n = 1;
        let mut d = day - 1;
        while has(d) {
            n += 1;
            d -= 1;
        }
        d = day + 1;
        while has(d) {
            n += 1;
            d += 1;
        }
        facts.nights_in_row = n;
        if n > g.max_consecutive_nights {
            return Err(Violation::ConsecutiveNights {
                nights: n,
                max: g.max_consecutive_nights,
            });
        }
    }
    Ok(facts)
}

/// The soft rules' integer costs, rule by rule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Soft {
    pub travel: i64,
    pub overtime: i64,
    pub fairness_hours: i64,
    pub fairness_nights: i64,
    pub familiarity: i64,
    pub changes: i64,
}

impl Soft {
    pub fn total(&self) -> i64 {
        self.travel + self.overtime + self.fairness_hours + self.fairness_nights + self.familiarity + self.changes
    }

    pub fn add(&self, o: &Soft) -> Soft {
        Soft {
            travel: self.travel + o.travel,
            overtime: self.overtime + o.overtime,
            fairness_hours: self.fairness_hours + o.fairness_hours,
            fairness_nights: self.fairness_nights + o.fairness_nights,
            familiarity: self.familiarity + o.familiarity,
            changes: self.changes + o.changes,
        }
    }
}

/// What the rolling four weeks say about a guard.
#[derive(Debug, Clone, Default)]
pub struct Recent {
    pub hours: f64,
    pub nights: u32,
    pub estates: Vec<String>,
}

/// Averages over the guards, for fairness.
#[derive(Debug, Clone, Copy, Default)]
pub struct Averages {
    pub hours: f64,
    pub nights: f64,
}

/// The soft cost of guard `g`, coming from `from_estate`, taking `w`.
#[allow(clippy::too_many_arguments)]
pub fn soft(
    m: &RotaModel,
    g: &GuardConfig,
    from_estate: Option<&str>,
    recent: &Recent,
    avg: Averages,
    facts: &HardFacts,
    w: &Want<'_>,
    changes: i64,
) -> Soft {
    let k = &m.settings.weights;
    let from = from_estate.or(g.home_estate.as_deref());
    let travel = from.map_or(m.settings.default_travel_min, |f| m.travel_min(f, w.estate));
    let slot_h = (w.end - w.start) as f64 / HOUR_MS as f64;
    let over = (facts.week_hours - f64::from(g.contract_hours)).max(0.0).min(slot_h);
    let unfamiliar = g.home_estate.as_deref() != Some(w.estate) && !recent.estates.iter().any(|e| e == w.estate);
    Soft {
        travel: i64::from(travel) * k.travel_per_min,
        overtime: (over * k.overtime_per_h as f64).round() as i64,
        fairness_hours: ((recent.hours - avg.hours).max(0.0) * k.fairness_hours_per_h as f64).round() as i64,
        fairness_nights: if w.night {
            ((f64::from(recent.nights) - avg.nights).max(0.0) * k.fairness_nights_per_night as f64).round() as i64
        } else {
            0
        },
        familiarity: if unfamiliar { k.unfamiliar } else { 0 },
        changes: changes * k.change,
    }
}
