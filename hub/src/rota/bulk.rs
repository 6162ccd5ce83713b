//! Bulk rota actions — a CSV import, publishing a weekly plan — as slot changes the writer
//! applies a slice per turn, so an operator's bulk action never holds the hub's only writer
//! for longer than one slice's time budget (`[rota] bulk_slice_ms`) and alarms queued
//! behind it are committed between slices.
//!
//! What a sliced action means: every row is validated against the model first, off the
//! writer; nothing is applied if any row is wrong. Then each slice, in its own transaction,
//! gives its slots exactly the guards the action lists, against the state at that moment
//! (rows already there are kept). Between slices, readers may see some slots replaced and
//! others not yet; a change made meanwhile to a slot the action has not reached is replaced
//! when it gets there, one made to a slot it has passed is kept. Bulk actions run one at a
//! time. Applying is idempotent: if a slice fails, the slices before it stay, and running
//! the same action again completes it.
//!
//! [`plan_import`] and [`plan_publish`] are pure; [`BulkMetrics`] are the counters.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::csv::Row;
use super::model::{RotaModel, Slot};

/// One slot and exactly the guards it must have after the action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotChange {
    pub slot: Slot,
    pub guards: Vec<String>,
}

/// Groups `(slot, guard)` pairs by slot; a guard listed twice for one slot is one
/// assignment.
fn group(pairs: impl IntoIterator<Item = (Slot, String)>) -> Vec<SlotChange> {
    let mut index: HashMap<(String, i64), usize> = HashMap::new();
    let mut out: Vec<SlotChange> = Vec::new();
    for (slot, guard) in pairs {
        let i = *index.entry((slot.post.clone(), slot.start_ms)).or_insert_with(|| {
            out.push(SlotChange {
                slot,
                guards: Vec::new(),
            });
            out.len() - 1
        });
        let guards = &mut out[i].guards;
        if !guards.contains(&guard) {
            guards.push(guard);
        }
    }
    out
}

/// The slot changes of a CSV import; an error names the first wrong row. Linear in the rows.
pub fn plan_import(m: &RotaModel, rows: &[Row]) -> Result<Vec<SlotChange>, String> {
    let mut pairs = Vec::with_capacity(rows.len());
    for (i, r) in rows.iter().enumerate() {
        let Some(post) = m.post(&r.post).filter(|p| p.estate == r.estate) else {
            return Err(format!("row {}: unknown post {} of estate {}", i + 1, r.post, r.estate));
        };
        let Some(t) = m.template(&r.shift) else {
            return Err(format!("row {}: unknown shift {}", i + 1, r.shift));
        };
        if m.guard(&r.guard).is_none() {
            return Err(format!("row {}: unknown guard {}", i + 1, r.guard));
        }
        pairs.push((m.slot(post, t, r.date), r.guard.clone()));
    }
    Ok(by_post(group(pairs)))
}

/// The slot changes of publishing a plan: `slots` (keys `post@start_ms`) get exactly the
/// guards `assignments` (slot key, guard) give them, none if it gives none.
pub fn plan_publish(
    m: &RotaModel,
    slots: &[String],
    assignments: &[(String, String)],
) -> Result<Vec<SlotChange>, String> {
    // Keyed by the slot's own key, so two spellings of one slot are one change.
    let mut index: HashMap<String, usize> = HashMap::with_capacity(slots.len());
    let mut changes: Vec<SlotChange> = Vec::with_capacity(slots.len());
    for key in slots {
        let Some(slot) = m.slot_by_key(key) else {
            return Err(format!("unknown slot {key}"));
        };
        index.entry(slot.key()).or_insert_with(|| {
            changes.push(SlotChange {
                slot,
                guards: Vec::new(),
            });
            changes.len() - 1
        });
    }
    for (key, guard) in assignments {
        let Some(&i) = m.slot_by_key(key).and_then(|s| index.get(&s.key())) else {
            return Err(format!("assignment to slot {key}, which the plan does not cover"));
        };
        if m.guard(guard).is_none() {
            return Err(format!("unknown guard {guard}"));
        }
        let g = &mut changes[i].guards;
        if !g.contains(guard) {
            g.push(guard.clone());
        }
    }
    Ok(by_post(changes))
}

/// In the order they are applied: post by post, in time, so that a slice spans few posts
/// and each post's current assignments are read with one range of the slot index.
fn by_post(mut changes: Vec<SlotChange>) -> Vec<SlotChange> {
    changes.sort_by(|a, b| (&a.slot.post, a.slot.start_ms).cmp(&(&b.slot.post, b.slot.start_ms)));
    changes
}

/// What one slice did, handed back by the writer: the slot changes it did not reach (its
/// time budget ran out) go into the next slice.
#[derive(Debug, Default)]
pub struct SliceOutcome {
    pub applied: usize,
    pub added: i64,
    pub removed: i64,
    pub rest: Vec<SlotChange>,
}

/// Where the writer leaves a slice's outcome for the action that sent it (read after the
/// commit; a failed transaction's outcome is never read).
pub type SliceCell = Arc<Mutex<Option<SliceOutcome>>>;

/// `/metrics` of bulk rota actions.
#[derive(Debug, Default)]
pub struct BulkMetrics {
    pub actions: AtomicU64,
    pub failed: AtomicU64,
    pub rows: AtomicU64,
    pub slots: AtomicU64,
    slices: AtomicU64,
    budget_cut: AtomicU64,
    longest_slice_us: AtomicU64,
}

impl BulkMetrics {
    /// A slice's work in the writer's transaction; `cut` = it stopped at its time budget.
    pub fn observe_slice(&self, work: Duration, cut: bool) {
        self.slices.fetch_add(1, Relaxed);
        if cut {
            self.budget_cut.fetch_add(1, Relaxed);
        }
        self.longest_slice_us
            .fetch_max(u64::try_from(work.as_micros()).unwrap_or(u64::MAX), Relaxed);
    }

    pub fn render(&self, out: &mut String) {
        let counter = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        };
        counter(
            out,
            "gatehouse_hub_rota_bulk_actions_total",
            "Bulk rota actions (CSV imports, published plans) applied in full.",
            self.actions.load(Relaxed),
        );
        counter(
            out,
            "gatehouse_hub_rota_bulk_failed_total",
            "Bulk rota actions stopped by a failed slice (the slices before it stay).",
            self.failed.load(Relaxed),
        );
        counter(
            out,
            "gatehouse_hub_rota_bulk_rows_total",
            "CSV rows imported.",
            self.rows.load(Relaxed),
        );
        counter(
            out,
            "gatehouse_hub_rota_bulk_slots_total",
            "Slots given their guards by bulk rota actions.",
            self.slots.load(Relaxed),
        );
        counter(
            out,
            "gatehouse_hub_rota_bulk_slices_total",
            "Writer turns (one transaction each) spent on bulk rota actions.",
            self.slices.load(Relaxed),
        );
        counter(
            out,
            "gatehouse_hub_rota_bulk_budget_cut_total",
            "Slices that stopped at their time budget ([rota] bulk_slice_ms).",
            self.budget_cut.load(Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP gatehouse_hub_rota_bulk_longest_turn_seconds Longest work of one bulk slice in a writer turn.\n\
             # TYPE gatehouse_hub_rota_bulk_longest_turn_seconds gauge\n\
             gatehouse_hub_rota_bulk_longest_turn_seconds {:.6}",
            self.longest_slice_us.load(Relaxed) as f64 / 1e6
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rota::synth;
    use chrono::NaiveDate;

    fn row(date: &str, estate: &str, post: &str, shift: &str, guard: &str) -> Row {
        Row {
            date: NaiveDate::parse_from_str(date, "%Y-%m-%d").unwrap(),
            estate: estate.into(),
            post: post.into(),
            shift: shift.into(),
            guard: guard.into(),
        }
    }

    #[test]
    fn an_import_groups_rows_by_slot_once_each_and_names_the_first_wrong_row() {
        let m = synth::model(2, 10, 1);
        let rows = vec![
            row("2026-12-01", "e0", "e0-gate", "day", "g0"),
            row("2026-12-01", "e0", "e0-gate", "night", "g2"),
            row("2026-12-01", "e0", "e0-gate", "day", "g4"),
            row("2026-12-01", "e0", "e0-gate", "day", "g0"),
        ];
        let changes = plan_import(&m, &rows).unwrap();
        assert_eq!(changes.len(), 2);
        assert_eq!(changes[0].guards, ["g0", "g4"]);
        assert_eq!(changes[1].guards, ["g2"]);
        let mut bad = rows.clone();
        bad.push(row("2026-12-01", "e1", "e0-gate", "day", "g0"));
        assert!(plan_import(&m, &bad).unwrap_err().starts_with("row 5: unknown post"));
        bad[4] = row("2026-12-01", "e0", "e0-gate", "dusk", "g0");
        assert!(plan_import(&m, &bad).unwrap_err().contains("unknown shift dusk"));
        bad[4] = row("2026-12-01", "e0", "e0-gate", "day", "nobody");
        assert!(plan_import(&m, &bad).unwrap_err().contains("unknown guard nobody"));
    }

    #[test]
    fn publishing_empties_the_plans_slots_it_leaves_unfilled() {
        let m = synth::model(1, 10, 1);
        let post = m.post("e0-gate").unwrap();
        let t = m.template("day").unwrap();
        let a = m.slot(post, t, NaiveDate::from_ymd_opt(2026, 12, 1).unwrap());
        let b = m.slot(post, t, NaiveDate::from_ymd_opt(2026, 12, 2).unwrap());
        let changes = plan_publish(&m, &[a.key(), b.key()], &[(a.key(), "g1".into())]).unwrap();
        assert_eq!(changes.len(), 2);
        assert_eq!(
            (changes[0].slot.key(), changes[0].guards.clone()),
            (a.key(), vec!["g1".to_owned()])
        );
        assert!(changes[1].guards.is_empty());
        assert!(plan_publish(&m, &["e0-gate@1".into()], &[]).is_err());
        assert!(plan_publish(&m, &[a.key()], &[(b.key(), "g1".into())]).is_err());
    }
}
