//! Property tests over random regions: no hard rule (qualification, overlap, 12 h rest with
//! travel, weekly hours, leave and absences, consecutive nights) is ever broken by the
//! proposals the solver recommends, once accepted together, nor by a weekly plan.

use gatehouse_hub::rota::model::monday_of;
use gatehouse_hub::rota::state::{Assignment, Live};
use gatehouse_hub::rota::{plan, proposals, synth};
use proptest::prelude::*;

/// 2026-11-25 22:10 in Shanghai (night shift).
const NOW: i64 = 1_764_079_800_000;

/// Applies every recommended proposal as accepting it does.
fn accept_all(m: &gatehouse_hub::rota::model::RotaModel, live: &Live, sol: &proposals::Solution, now: i64) -> Live {
    let mut out = live.clone();
    let mut next = 1_000_000;
    for p in sol.proposals.iter().filter(|p| p.recommended) {
        let gap = sol.gaps.iter().find(|g| g.id == p.gap).unwrap();
        let w = proposals::want(m, gap, now);
        if let Some(from) = &p.from_post {
            let a = out
                .assignments
                .values()
                .find(|a| a.guard == p.guard && &a.post == from && a.start < w.end && w.start < a.end)
                .map(|a| (**a).clone())
                .expect("moved assignment");
            let moved = out.assignments.get_mut(&a.id).unwrap();
            if a.start < now {
                std::sync::Arc::make_mut(moved).end = now;
            } else {
                out.remove_assignment(a.id);
            }
            if let Some(y) = &p.backfill {
                next += 1;
                out.add(Assignment {
                    id: next,
                    guard: y.clone(),
                    start: a.start.max(now),
                    source: "proposal".into(),
                    ..a.clone()
                });
            }
        }
        next += 1;
        out.add(Assignment {
            id: next,
            estate: gap.estate.clone(),
            post: gap.post.clone(),
            shift: gap.shift.clone(),
            shift_start: gap.slot.start_ms,
            start: w.start,
            end: w.end,
            guard: p.guard.clone(),
            source: "proposal".into(),
        });
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn accepted_proposals_never_break_a_hard_rule(estates in 1usize..5, guards in 4usize..40, gaps in 0usize..8, seed in 0u64..1_000_000, hours in 0i64..24) {
        let now = NOW + hours * 3_600_000;
        let m = synth::model(estates, guards, seed);
        let live = synth::on_duty(&m, now, gaps, seed);
        prop_assert!(synth::violations(&m, &live).is_empty(), "the instance itself breaks a rule");
        let sol = proposals::solve(&m, &live, now);
        // Every missing guard is either proposed or escalated, never dropped.
        let rows: u32 = sol.gaps.iter().map(|g| g.need).sum();
        let recommended = sol.proposals.iter().filter(|p| p.recommended).count();
        prop_assert_eq!(rows as usize, recommended + sol.escalate.len());
        // No guard twice.
        let mut used = std::collections::HashSet::new();
        for p in sol.proposals.iter().filter(|p| p.recommended) {
            prop_assert!(used.insert(p.guard.clone()));
            if let Some(b) = &p.backfill { prop_assert!(used.insert(b.clone())); }
        }
        let after = accept_all(&m, &live, &sol, now);
        let v = synth::violations(&m, &after);
        prop_assert!(v.is_empty(), "{:?}", v);
        // A source slot is never taken below its headcount.
        for p in m.posts.iter() {
            if let Some(s) = m.slot_at(p, now) {
                let before = live.assigned(&p.id, s.start_ms).len();
                let now_n = after.assigned(&p.id, s.start_ms).iter().filter(|a| a.end > now).count();
                prop_assert!(now_n >= before.min(p.required() as usize), "{} dropped below its minimum", p.id);
            }
        }
    }

    #[test]
    fn a_weekly_plan_never_breaks_a_hard_rule(estates in 1usize..4, guards in 3usize..30, seed in 0u64..1_000_000, keep in any::<bool>()) {
        let m = synth::model(estates, guards, seed);
        let live = synth::on_duty(&m, NOW, 0, seed);
        let week = monday_of(m.local_date("e0", NOW));
        let req = plan::Request { estates: vec![], week_start: week, moves: Some(20_000), time_budget_ms: 30, seed, keep_published: keep };
        let p = plan::plan(&m, &live, &req, NOW);
        let v = plan::violations(&m, &live, &p);
        prop_assert!(v.is_empty(), "{:?}", v);
        prop_assert!(p.last.score <= p.first.score);
        prop_assert_eq!(p.assignments.len() + p.unfilled.len(), p.seats);
    }
}
