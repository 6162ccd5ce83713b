//! Open gaps and cover proposals. Pure: a snapshot of the model and the live state in, the
//! gaps and the jointly solved proposals out.
//!
//! Every open gap is solved together as one assignment problem (rows = people missing,
//! columns = guards, plus one dummy "escalate" column per row that costs
//! `weights.unfilled`), with the Hungarian method of [`super::hungarian`]. Candidates are
//! floating guards, off-duty guards, and guards assigned where their slot has more than its
//! headcount (never taking it below). Rows the solve leaves on the dummy get a second look
//! for a one-step back-fill chain: a guard moved from another post, whose place an
//! off-duty or floating guard takes. Each proposal shows its score rule by rule and the
//! values of the hard rules it keeps.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use super::fit::{self, Averages, Busy, HardFacts, Recent, Soft, Want};
use super::hungarian;
use super::model::{GuardConfig, RotaModel, Slot};
use super::state::{Assignment, Live};

/// A post short of guards now, or a coming shift short of assignments.
#[derive(Debug, Clone, Serialize)]
pub struct Gap {
    /// `post@shift_start_ms`.
    pub id: String,
    pub estate: String,
    pub post: String,
    pub kind: &'static str,
    pub shift: String,
    pub shift_start: String,
    pub shift_end: String,
    #[serde(skip)]
    pub slot: Slot,
    /// The slot runs now.
    pub current: bool,
    pub required: u32,
    pub present: Vec<String>,
    pub assigned: Vec<String>,
    /// Covers accepted and not yet badged in.
    pub en_route: Vec<String>,
    /// Guards still to find.
    pub need: u32,
    /// When the ledger opened it (current slots), and whether its alarm is up.
    pub since: Option<String>,
    pub alarmed: bool,
}

/// The open gaps at `now`: for each post, its current shift (present against required) and
/// its next shift (assigned against required).
pub fn gaps(m: &RotaModel, live: &Live, now: i64) -> Vec<Gap> {
    let mut out = Vec::new();
    for post in &m.posts {
        let r = post.required();
        let slots = [m.slot_at(post, now), m.next_slot(post, now)];
        for (i, slot) in slots.into_iter().enumerate() {
            let Some(slot) = slot else { continue };
            let current = i == 0;
            let assigned: Vec<&Assignment> = live.assigned(&post.id, slot.start_ms);
            let present: Vec<String> = if current {
                live.present_at(&post.id)
                    .into_iter()
                    .map(|(g, _)| g.to_owned())
                    .collect()
            } else {
                Vec::new()
            };
            let en_route: Vec<String> = if current {
                assigned
                    .iter()
                    .filter(|a| a.source == "proposal" && !present.contains(&a.guard) && a.end > now)
                    .map(|a| a.guard.clone())
                    .collect()
            } else {
                Vec::new()
            };
            let assigned_ids: Vec<String> = assigned.iter().map(|a| a.guard.clone()).collect();
            let (need, short) = if current {
                let covered = present.len() + en_route.len();
                let need = r.saturating_sub(covered as u32);
                (need, (present.len() as u32) < r)
            } else {
                let need = r.saturating_sub(assigned.len() as u32);
                (need, need > 0)
            };
            if !short && need == 0 {
                continue;
            }
            let ledger = live
                .gaps
                .get(&post.id)
                .filter(|g| current && g.shift_start == slot.start_ms);
            out.push(Gap {
                id: slot.key(),
                estate: post.estate.clone(),
                post: post.id.clone(),
                kind: if current { "unattended" } else { "unassigned" },
                shift: slot.shift.clone(),
                shift_start: crate::alarms::rfc3339(slot.start_ms),
                shift_end: crate::alarms::rfc3339(slot.end_ms),
                current,
                required: r,
                present,
                assigned: assigned_ids,
                en_route,
                need,
                since: ledger.map(|g| crate::alarms::rfc3339(g.opened_at)),
                alarmed: ledger.is_some_and(|g| g.alarmed),
                slot,
            });
        }
    }
    out
}

/// One way to fill one missing guard of a gap.
#[derive(Debug, Clone, Serialize)]
pub struct Proposal {
    /// `gap~guard` or `gap~guard~backfill`; accepted by `POST /rota/proposals/{id}/accept`.
    pub id: String,
    pub gap: String,
    /// `floating`, `off_duty`, `surplus_move` (from an over-staffed slot), `backfill_chain`.
    pub kind: &'static str,
    pub guard: String,
    pub guard_name: String,
    /// Where the guard comes from: their assignment moved (if any).
    pub from_post: Option<String>,
    pub from_estate: Option<String>,
    /// A back-fill chain: who takes the moved guard's place.
    pub backfill: Option<String>,
    pub score: i64,
    pub rules: Soft,
    pub hard: HardFacts,
    /// Part of the jointly optimal solution.
    pub recommended: bool,
    pub rank: usize,
}

/// The answer of one solve.
#[derive(Debug, Clone, Serialize)]
pub struct Solution {
    pub gaps: Vec<Gap>,
    pub proposals: Vec<Proposal>,
    /// Gaps (one entry per missing guard) nobody can fill: escalate to the duty manager.
    pub escalate: Vec<String>,
    pub total_score: i64,
    pub solve_ms: f64,
}

/// Everything the rules need about guards, computed once per solve.
pub struct Pool<'a> {
    pub m: &'a RotaModel,
    pub live: &'a Live,
    pub busy: HashMap<String, Vec<Busy>>,
    pub recent: HashMap<String, Recent>,
    pub avg: Averages,
    pub absent: HashMap<String, Vec<(i64, i64)>>,
    /// Guard → their assignments; slot key → how many are assigned. Borrowed: a pool is
    /// built in the writer for one operator action, and a rota of tens of thousands of
    /// assignments must not be copied for it.
    assign_of: HashMap<&'a str, Vec<&'a Assignment>>,
    slot_count: HashMap<(&'a str, i64), usize>,
    empty_busy: Vec<Busy>,
    empty_recent: Recent,
}

impl<'a> Pool<'a> {
    pub fn new(m: &'a RotaModel, live: &'a Live, now: i64) -> Self {
        Self::build(m, live, now, None)
    }

    /// A pool that can judge only `guards` (averages still over everyone): what one
    /// operator action in the writer needs, at the cost of one pass over the assignments
    /// instead of indexing all of them.
    pub fn for_guards(m: &'a RotaModel, live: &'a Live, now: i64, guards: &[&str]) -> Self {
        Self::build(m, live, now, Some(guards))
    }

    fn build(m: &'a RotaModel, live: &'a Live, now: i64, only: Option<&[&str]>) -> Self {
        let kept = |g: &str| only.is_none_or(|o| o.contains(&g));
        let busy = match only {
            None => live.busy_by_guard(m),
            Some(_) => {
                let mut out: HashMap<String, Vec<Busy>> = HashMap::new();
                for a in live.assignments.values().filter(|a| kept(&a.guard)) {
                    out.entry(a.guard.clone())
                        .or_default()
                        .push(super::state::busy_of(m, a));
                }
                for v in out.values_mut() {
                    v.sort_by_key(|b| b.start);
                }
                out
            }
        };
        let recent = live.recent(m, now);
        let n = m.guards.len().max(1) as f64;
        let avg = Averages {
            hours: recent.values().map(|r| r.hours).sum::<f64>() / n,
            nights: recent.values().map(|r| f64::from(r.nights)).sum::<f64>() / n,
        };
        let mut absent: HashMap<String, Vec<(i64, i64)>> = HashMap::new();
        for a in &live.absences {
            absent.entry(a.guard.clone()).or_default().push((a.start, a.end));
        }
        let mut assign_of: HashMap<&'a str, Vec<&'a Assignment>> = HashMap::new();
        let mut slot_count: HashMap<(&'a str, i64), usize> = HashMap::new();
        match only {
            None => {
                for a in live.assignments.values() {
                    assign_of.entry(a.guard.as_str()).or_default().push(a);
                    *slot_count.entry((a.post.as_str(), a.shift_start)).or_default() += 1;
                }
            }
            Some(_) => {
                for a in live.assignments.values().filter(|a| kept(&a.guard)) {
                    assign_of.entry(a.guard.as_str()).or_default().push(a);
                    slot_count
                        .entry((a.post.as_str(), a.shift_start))
                        .or_insert_with(|| live.assigned(&a.post, a.shift_start).len());
                }
            }
        }
        Pool {
            m,
            live,
            assign_of,
            slot_count,
            busy,
            recent,
            avg,
            absent,
            empty_busy: Vec::new(),
            empty_recent: Recent::default(),
        }
    }

    fn busy_of(&self, g: &str) -> &[Busy] {
        self.busy.get(g).map_or(&self.empty_busy, Vec::as_slice)
    }

    /// Where guard `g` is during `w` (as [`source`], from the index).
    pub fn source(&self, g: &str, w: &Want<'_>, gap_post: &str) -> Source<'_> {
        let Some(a) = self
            .assign_of
            .get(g)
            .and_then(|v| v.iter().find(|a| a.start < w.end && w.start < a.end))
            .copied()
        else {
            return Source::Free;
        };
        if a.post == gap_post {
            return Source::Needed(a);
        }
        let required = self.m.post(&a.post).map_or(1, |p| p.required()) as usize;
        if self
            .slot_count
            .get(&(a.post.as_str(), a.shift_start))
            .copied()
            .unwrap_or(0)
            > required
        {
            Source::Surplus(a)
        } else {
            Source::Needed(a)
        }
    }

    /// The guard's busy intervals with `moved` taken off.
    fn busy_without(&self, g: &str, moved: Option<&Assignment>) -> std::borrow::Cow<'_, [Busy]> {
        let busy = self.busy_of(g);
        match moved {
            Some(a) => std::borrow::Cow::Owned(
                busy.iter()
                    .filter(|b| !(b.start == a.start && b.end == a.end && b.estate == a.estate))
                    .cloned()
                    .collect(),
            ),
            None => std::borrow::Cow::Borrowed(busy),
        }
    }

    /// Evaluates guard `g` for `w`, with the assignment `moved` (if any) taken off their
    /// schedule.
    pub fn fit(
        &self,
        g: &GuardConfig,
        w: &Want<'_>,
        moved: Option<&Assignment>,
        from_estate: Option<&str>,
        changes: i64,
    ) -> Result<(Soft, HardFacts), fit::Violation> {
        let busy = self.busy_without(&g.id, moved);
        let busy: &[Busy] = &busy;
        let absent = self.absent.get(&g.id).map_or(&[][..], Vec::as_slice);
        // Moved mid-shift: the worked part and the cover are one continuous duty, checked
        // as one (rest, hours and nights around it; no longer than a shift).
        let rules_w = duty_window(self.m, moved, w)?;
        let facts = fit::hard(self.m, g, busy, absent, &rules_w)?;
        let recent = self.recent.get(&g.id).unwrap_or(&self.empty_recent);
        let soft = fit::soft(self.m, g, from_estate, recent, self.avg, &facts, w, changes);
        Ok((soft, facts))
    }
}

/// The window the rules check: `w`, or for a guard moved mid-shift the continuous duty of
/// the part worked and the cover (no longer than the longest shift).
fn duty_window<'w>(m: &RotaModel, moved: Option<&Assignment>, w: &Want<'w>) -> Result<Want<'w>, fit::Violation> {
    match moved {
        Some(a) if a.start < w.start => {
            let duty = Want {
                start: a.start,
                end: a.end.max(w.end),
                ..*w
            };
            let max = fit::max_duty_h(m);
            if duty.end - duty.start > i64::from(max) * 3_600_000 {
                return Err(fit::Violation::DutyLength {
                    hours: (duty.end - duty.start) as f64 / 3_600_000.0,
                    max,
                });
            }
            Ok(duty)
        }
        _ => Ok(*w),
    }
}

/// A guard who keeps the rules in a window before travel and qualifications (shared by
/// every gap of that window).
struct Base {
    gi: usize,
    facts: HardFacts,
    moved: Option<Assignment>,
    prev: Option<String>,
    next: Option<String>,
}

fn bases(pool: &Pool<'_>, w: &Want<'_>) -> Vec<Base> {
    let m = pool.m;
    let mut out = Vec::new();
    let open = Want { quals: &[], ..*w };
    for (gi, g) in m.guards.iter().enumerate() {
        let moved = match pool.source(&g.id, w, "") {
            // Standing a post without an assignment: on duty there, not free.
            Source::Free if pool.live.presence.contains_key(&g.id) => continue,
            Source::Free => None,
            Source::Surplus(a) => Some(a.clone()),
            Source::Needed(_) => continue,
        };
        let busy = pool.busy_without(&g.id, moved.as_ref());
        let Ok(rw) = duty_window(m, moved.as_ref(), &open) else {
            continue;
        };
        let absent = pool.absent.get(&g.id).map_or(&[][..], Vec::as_slice);
        let Ok(facts) = fit::hard_travel(m, g, &busy, absent, &rw, false) else {
            continue;
        };
        let idx = busy.partition_point(|b| b.start < rw.start);
        out.push(Base {
            gi,
            prev: facts
                .rest_before_h
                .and(idx.checked_sub(1))
                .map(|i| busy[i].estate.clone()),
            next: facts.rest_after_h.and(busy.get(idx)).map(|b| b.estate.clone()),
            facts,
            moved,
        });
    }
    out
}

/// How a guard would come to a gap, as the live state stands.
pub enum Source<'a> {
    /// Free at that time (floating or off duty).
    Free,
    /// Assigned at that time in a slot above its headcount: moved.
    Surplus(&'a Assignment),
    /// Assigned at that time where they are needed: only through a back-fill chain.
    Needed(&'a Assignment),
}

/// Where guard `g` is at the time of `w`, and whether moving them keeps their slot staffed.
pub fn source<'a>(m: &RotaModel, live: &'a Live, g: &str, w: &Want<'_>, gap_post: &str) -> Source<'a> {
    let Some(a) = live
        .assignments
        .values()
        .find(|a| a.guard == g && a.start < w.end && w.start < a.end)
    else {
        return Source::Free;
    };
    if a.post == gap_post {
        return Source::Needed(a);
    }
    let required = m.post(&a.post).map_or(1, |p| p.required()) as usize;
    if live.assigned(&a.post, a.shift_start).len() > required {
        Source::Surplus(a)
    } else {
        Source::Needed(a)
    }
}

pub fn want<'a>(m: &'a RotaModel, gap: &'a Gap, now: i64) -> Want<'a> {
    let post = m.post(&gap.post).expect("gap of a known post");
    Want {
        estate: &gap.estate,
        start: if gap.current {
            now.max(gap.slot.start_ms)
        } else {
            gap.slot.start_ms
        },
        end: gap.slot.end_ms,
        night: gap.slot.night,
        quals: &post.qualifications,
    }
}

const FORBIDDEN: i64 = 1_000_000_000_000;
/// Candidates kept per gap in the listing.
const SHOWN: usize = 5;

/// Solves every open gap together.
pub fn solve(m: &RotaModel, live: &Live, now: i64) -> Solution {
    let started = std::time::Instant::now();
    let gaps = gaps(m, live, now);
    let pool = Pool::new(m, live, now);
    // Guards by index; who is already counted on a gap is not a candidate for it.
    struct Row {
        gap: usize,
    }
    let mut rows = Vec::new();
    for (gi, g) in gaps.iter().enumerate() {
        for _ in 0..g.need {
            rows.push(Row { gap: gi });
        }
    }
    // Candidates per gap. Gaps of one window (times, time zone) share an optimistic check
    // of every guard (no travel, no qualification); each gap then deducts its travel from
    // the rest margins and checks its qualifications.
    type Cand = (usize, i64, Soft, HardFacts, Option<Assignment>);
    let mut windows: HashMap<(i64, i64, bool, i64), Vec<Base>> = HashMap::new();
    let min_rest = f64::from(m.settings.min_rest_h);
    let mut cands: Vec<Vec<Cand>> = Vec::with_capacity(gaps.len());
    for gap in &gaps {
        let w = want(m, gap, now);
        let key = (w.start, w.end, w.night, m.offset_ms(&gap.estate));
        let base = windows.entry(key).or_insert_with(|| bases(&pool, &w));
        let mut v: Vec<Cand> = Vec::new();
        for b in base.iter() {
            let g = &m.guards[b.gi];
            if gap.present.contains(&g.id) || gap.assigned.contains(&g.id) {
                continue;
            }
            if w.quals.iter().any(|q| !g.qualifications.contains(q)) {
                continue;
            }
            let mut facts = b.facts.clone();
            // A guard moved mid-shift started their duty where they were.
            let arrive = match &b.moved {
                Some(a) if a.start < w.start => a.estate.as_str(),
                _ => gap.estate.as_str(),
            };
            if let (Some(r), Some(e)) = (facts.rest_before_h, &b.prev) {
                let r = r - f64::from(m.travel_min(e, arrive)) / 60.0;
                if r < min_rest {
                    continue;
                }
                facts.rest_before_h = Some(r);
            }
            if let (Some(r), Some(e)) = (facts.rest_after_h, &b.next) {
                let r = r - f64::from(m.travel_min(&gap.estate, e)) / 60.0;
                if r < min_rest {
                    continue;
                }
                facts.rest_after_h = Some(r);
            }
            let recent = pool.recent.get(&g.id).unwrap_or(&pool.empty_recent);
            let from = b.moved.as_ref().map(|a| a.estate.as_str());
            let soft = fit::soft(m, g, from, recent, pool.avg, &facts, &w, i64::from(b.moved.is_some()));
            v.push((b.gi, soft.total(), soft, facts, b.moved.clone()));
        }
        v.sort_by_key(|c| (c.1, c.0));
        cands.push(v);
    }
    // Exact pruning: a row never needs more than `rows` candidates (any optimal column
    // outside its cheapest `rows` can be swapped for an unused one among them).
    let keep = rows.len().max(1);
    let mut columns: Vec<usize> = Vec::new();
    let mut col_of: HashMap<usize, usize> = HashMap::new();
    for v in &cands {
        for c in v.iter().take(keep) {
            col_of.entry(c.0).or_insert_with(|| {
                columns.push(c.0);
                columns.len() - 1
            });
        }
    }
    let dummy = m.settings.weights.unfilled;
    let width = columns.len() + rows.len();
    let mut forbid_surplus: HashSet<(usize, usize)> = HashSet::new();
    let mut chosen: Vec<Option<usize>> = vec![None; rows.len()];
    for _round in 0..4 {
        let matrix: Vec<Vec<i64>> = rows
            .iter()
            .map(|r| {
                let mut line = vec![FORBIDDEN; width];
                for c in cands[r.gap].iter().take(keep) {
                    if !forbid_surplus.contains(&(r.gap, c.0)) {
                        line[col_of[&c.0]] = c.1;
                    }
                }
                line[columns.len()..].fill(dummy);
                line
            })
            .collect();
        let a = hungarian::solve(&matrix);
        chosen = a
            .iter()
            .enumerate()
            .map(|(ri, &c)| (c < columns.len() && matrix[ri][c] < FORBIDDEN).then(|| columns[c]))
            .collect();
        // A source slot above its headcount gives at most its surplus.
        let mut drawn: HashMap<(String, i64), Vec<usize>> = HashMap::new();
        for (ri, c) in chosen.iter().enumerate() {
            if let Some(gi) = c
                && let Some(cand) = cands[rows[ri].gap].iter().find(|x| x.0 == *gi)
                && let Some(a) = &cand.4
            {
                drawn.entry((a.post.clone(), a.shift_start)).or_default().push(ri);
            }
        }
        let mut over = false;
        for ((post, start), rs) in drawn {
            let required = m.post(&post).map_or(1, |p| p.required()) as usize;
            let surplus = live.assigned(&post, start).len().saturating_sub(required);
            for &ri in rs.iter().skip(surplus) {
                forbid_surplus.insert((rows[ri].gap, chosen[ri].expect("drawn")));
                over = true;
            }
        }
        if !over {
            break;
        }
    }
    let mut used: HashSet<usize> = chosen.iter().flatten().copied().collect();
    let mut proposals = Vec::new();
    let mut escalate = Vec::new();
    let mut total = 0;
    for (ri, r) in rows.iter().enumerate() {
        let gap = &gaps[r.gap];
        match chosen[ri] {
            Some(gi) => {
                let c = cands[r.gap]
                    .iter()
                    .find(|x| x.0 == gi)
                    .expect("chosen among candidates");
                total += c.1;
                proposals.push(make(m, gap, c.0, &c.2, &c.3, c.4.as_ref(), None, true));
            }
            None => match chain(m, live, &pool, gap, now, &used) {
                Some((x, y, soft, facts, moved)) => {
                    used.insert(x);
                    used.insert(y);
                    total += soft.total();
                    proposals.push(make(m, gap, x, &soft, &facts, Some(&moved), Some(y), true));
                }
                None => {
                    total += dummy;
                    escalate.push(gap.id.clone());
                }
            },
        }
    }
    // Ranked alternatives per gap (not already recommended for it).
    for (gi, gap) in gaps.iter().enumerate() {
        let mut rank = 1;
        for p in proposals.iter_mut().filter(|p| p.gap == gap.id) {
            p.rank = rank;
            rank += 1;
        }
        let taken: HashSet<String> = proposals
            .iter()
            .filter(|p| p.gap == gap.id)
            .map(|p| p.guard.clone())
            .collect();
        let mut alts = Vec::new();
        for c in cands[gi]
            .iter()
            .filter(|c| !taken.contains(&m.guards[c.0].id))
            .take(SHOWN)
        {
            let mut p = make(m, gap, c.0, &c.2, &c.3, c.4.as_ref(), None, false);
            p.rank = rank;
            rank += 1;
            alts.push(p);
        }
        proposals.extend(alts);
    }
    Solution {
        gaps,
        proposals,
        escalate,
        total_score: total,
        solve_ms: started.elapsed().as_secs_f64() * 1000.0,
    }
}

#[allow(clippy::too_many_arguments)]
fn make(
    m: &RotaModel,
    gap: &Gap,
    gi: usize,
    soft: &Soft,
    facts: &HardFacts,
    moved: Option<&Assignment>,
    backfill: Option<usize>,
    recommended: bool,
) -> Proposal {
    let g = &m.guards[gi];
    let kind = match (moved, backfill) {
        (_, Some(_)) => "backfill_chain",
        (Some(_), None) => "surplus_move",
        (None, None) if g.floating => "floating",
        (None, None) => "off_duty",
    };
    let mut id = format!("{}~{}", gap.id, g.id);
    if let Some(b) = backfill {
        id.push('~');
        id.push_str(&m.guards[b].id);
    }
    Proposal {
        id,
        gap: gap.id.clone(),
        kind,
        guard: g.id.clone(),
        guard_name: g.name.clone(),
        from_post: moved.map(|a| a.post.clone()),
        from_estate: moved.map(|a| a.estate.clone()),
        backfill: backfill.map(|b| m.guards[b].id.clone()),
        score: soft.total(),
        rules: *soft,
        hard: facts.clone(),
        recommended,
        rank: 0,
    }
}

/// The cheapest one-step chain for a gap: guard X leaves a post where they are needed, an
/// unused free guard Y takes X's place for the rest of X's assignment.
fn chain(
    m: &RotaModel,
    live: &Live,
    pool: &Pool<'_>,
    gap: &Gap,
    now: i64,
    used: &HashSet<usize>,
) -> Option<(usize, usize, Soft, HardFacts, Assignment)> {
    let w = want(m, gap, now);
    let mut movers: Vec<(usize, Soft, HardFacts, &Assignment)> = Vec::new();
    for (xi, x) in m.guards.iter().enumerate() {
        if used.contains(&xi) || gap.present.contains(&x.id) || gap.assigned.contains(&x.id) {
            continue;
        }
        if let Source::Needed(a) = pool.source(&x.id, &w, &gap.post)
            && a.post != gap.post
            && let Ok((s, f)) = pool.fit(x, &w, Some(a), Some(&a.estate), 1)
        {
            movers.push((xi, s, f, a));
        }
    }
    movers.sort_by_key(|c| (c.1.total(), c.0));
    let mut best: Option<(usize, usize, Soft, HardFacts, Assignment)> = None;
    for (xi, xs, xf, a) in movers.into_iter().take(20) {
        let Some(post) = m.post(&a.post) else { continue };
        let wq = Want {
            estate: &a.estate,
            start: a.start.max(now),
            end: a.end,
            night: m.template(&a.shift).is_some_and(|t| t.is_night()),
            quals: &post.qualifications,
        };
        for (yi, y) in m.guards.iter().enumerate() {
            if yi == xi || used.contains(&yi) || gap.present.contains(&y.id) || gap.assigned.contains(&y.id) {
                continue;
            }
            if !matches!(pool.source(&y.id, &wq, &a.post), Source::Free) || live.presence.contains_key(&y.id) {
                continue;
            }
            if let Ok((ys, _)) = pool.fit(y, &wq, None, None, 0) {
                let total = xs.add(&ys);
                if best.as_ref().is_none_or(|b| total.total() < b.2.total()) {
                    best = Some((xi, yi, total, xf.clone(), a.clone()));
                }
            }
        }
        if best.is_some() {
            break;
        }
    }
    best
}
