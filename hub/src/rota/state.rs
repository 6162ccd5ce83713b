//! The rota's live state, as committed: assignments (active ones, back four weeks for
//! fairness), who is on which post, absences, open gaps, the running patrol tours and the
//! shift each post's last handover was for. The writer changes a working copy inside its
//! transaction and publishes it after the commit; readers (the role resolver, the API) see
//! only committed state.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;

use super::coverage::GapState;
use super::fit::{Busy, Recent};
use super::model::{RotaModel, date_of, days_from_epoch};
use super::patrol::Tour;

const DAY_MS: i64 = 86_400_000;

/// One guard on one post for (part of) one shift.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Assignment {
    pub id: i64,
    pub estate: String,
    pub post: String,
    pub shift: String,
    /// The shift instance (slot key = `post@shift_start`).
    pub shift_start: i64,
    /// When the guard works: the shift, or its remainder for a cover accepted mid-shift.
    pub start: i64,
    pub end: i64,
    pub guard: String,
    /// `import`, `api`, `plan` or `proposal`.
    pub source: String,
}

/// A guard on post.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Presence {
    pub post: String,
    pub since: i64,
}

/// A reported absence (a sick call): the guard is unavailable in `[start, end)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Absence {
    pub id: i64,
    pub guard: String,
    pub start: i64,
    pub end: i64,
    pub reason: String,
}

#[derive(Debug, Clone, Default)]
pub struct Live {
    /// A persistent map of shared values: the writer copies `Live` for a rollback and again
    /// to publish it after each commit, and a large rota (an import of tens of thousands of
    /// rows) must not make every writer turn that touches the rota copy all of it.
    /// Change it only through [`Live::add`] and [`Live::remove_assignment`], which keep the
    /// slot index in step (changing an assignment's times in place is fine).
    pub assignments: imbl::OrdMap<i64, Arc<Assignment>>,
    /// (post, shift start) → its assignments' ids: "who is on this slot" without reading
    /// every assignment, which the tick asks for every post at each shift change. Ordered
    /// (not hashed) so a bulk action, applied post by post in time, copies few nodes of it
    /// per writer turn.
    slots: imbl::OrdMap<(String, i64), Vec<i64>>,
    pub presence: HashMap<String, Presence>,
    pub absences: Vec<Absence>,
    /// Post → its open gap.
    pub gaps: HashMap<String, GapState>,
    /// Route → the running tour.
    pub tours: HashMap<String, Tour>,
    /// Route → when its last tour started.
    pub last_tour: HashMap<String, i64>,
    /// Post → shift start of its latest handover sheet.
    pub handed_over: HashMap<String, i64>,
}

impl Live {
    /// Guards on a post now, in the order they came.
    pub fn present_at(&self, post: &str) -> Vec<(&str, i64)> {
        let mut v: Vec<(&str, i64)> = self
            .presence
            .iter()
            .filter(|(_, p)| p.post == post)
            .map(|(g, p)| (g.as_str(), p.since))
            .collect();
        v.sort_by(|a, b| (a.1, a.0).cmp(&(b.1, b.0)));
        v
    }

    /// Assignments of a slot, in the order they were made.
    pub fn assigned(&self, post: &str, shift_start: i64) -> Vec<&Assignment> {
        let mut v: Vec<&Assignment> = self
            .slots
            .get(&(post.to_owned(), shift_start))
            .into_iter()
            .flatten()
            .filter_map(|id| self.assignments.get(id))
            .map(|a| &**a)
            .collect();
        v.sort_by_key(|a| a.id);
        v
    }

    /// Adds (or replaces) an assignment.
    pub fn add(&mut self, a: Assignment) {
        let id = a.id;
        if self.assignments.contains_key(&id) {
            self.remove_assignment(id);
        }
        self.slots.entry((a.post.clone(), a.shift_start)).or_default().push(id);
        self.assignments.insert(id, Arc::new(a));
    }

    /// Removes an assignment; returns it if it was there.
    pub fn remove_assignment(&mut self, id: i64) -> Option<Arc<Assignment>> {
        let a = self.assignments.remove(&id)?;
        let key = (a.post.clone(), a.shift_start);
        if let Some(ids) = self.slots.get_mut(&key) {
            ids.retain(|x| *x != id);
            if ids.is_empty() {
                self.slots.remove(&key);
            }
        }
        Some(a)
    }

    /// A guard's assignments, sorted by start.
    pub fn of_guard(&self, guard: &str) -> Vec<&Assignment> {
        let mut v: Vec<&Assignment> = self
            .assignments
            .values()
            .filter(|a| a.guard == guard)
            .map(|a| &**a)
            .collect();
        v.sort_by_key(|a| a.start);
        v
    }

    /// The assignment a guard works at `ms`, if any.
    pub fn working_at(&self, guard: &str, ms: i64) -> Option<&Assignment> {
        self.assignments
            .values()
            .find(|a| a.guard == guard && a.start <= ms && ms < a.end)
            .map(|a| &**a)
    }

    pub fn absent_of(&self, guard: &str) -> Vec<(i64, i64)> {
        self.absences
            .iter()
            .filter(|a| a.guard == guard)
            .map(|a| (a.start, a.end))
            .collect()
    }

    /// Every guard's busy intervals (sorted), for the rules.
    pub fn busy_by_guard(&self, m: &RotaModel) -> HashMap<String, Vec<Busy>> {
        let mut out: HashMap<String, Vec<Busy>> = HashMap::new();
        for a in self.assignments.values() {
            out.entry(a.guard.clone()).or_default().push(busy_of(m, a));
        }
        for v in out.values_mut() {
            v.sort_by_key(|b| b.start);
        }
        out
    }

    /// Rolling four weeks before `now`, per guard.
    pub fn recent(&self, m: &RotaModel, now: i64) -> HashMap<String, Recent> {
        let from = now - 28 * DAY_MS;
        let mut out: HashMap<String, Recent> = HashMap::new();
        for a in self.assignments.values().filter(|a| a.end > from && a.start < now) {
            let r = out.entry(a.guard.clone()).or_default();
            r.hours += (a.end.min(now) - a.start.max(from)) as f64 / 3_600_000.0;
            if m.template(&a.shift).is_some_and(|t| t.is_night()) {
                r.nights += 1;
            }
            if !r.estates.contains(&a.estate) {
                r.estates.push(a.estate.clone());
            }
        }
        out
    }

    /// Forgets assignments and absences that ended more than four weeks before `now`.
    pub fn prune(&mut self, now: i64) {
        let horizon = now - 29 * DAY_MS;
        let old: Vec<i64> = self
            .assignments
            .values()
            .filter(|a| a.end <= horizon)
            .map(|a| a.id)
            .collect();
        for id in old {
            self.remove_assignment(id);
        }
        self.absences.retain(|a| a.end > horizon);
    }
}

/// A busy interval of an assignment.
pub fn busy_of(m: &RotaModel, a: &Assignment) -> Busy {
    let night = m.template(&a.shift).is_some_and(|t| t.is_night());
    Busy {
        start: a.start,
        end: a.end,
        estate: a.estate.clone(),
        night_day: night.then(|| days_from_epoch(date_of(a.shift_start + m.offset_ms(&a.estate)))),
    }
}
