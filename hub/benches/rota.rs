//! Rota figures (issue 4 §7), printed: cover proposals for 200 open gaps × 2,000 guards, and
//! a weekly plan for 50 estates (800 guards) — time to the first feasible plan and the final
//! score — against the greedy baseline in the same run.
//!
//! `cargo bench -p gatehouse-hub --bench rota` (release). `ROTA_PLAN_MOVES` sets the local
//! search's budget in moves (default: the planner's, by the week's size), which with the
//! seed decides the plan; `ROTA_PLAN_BUDGET_MS` caps its time (default 60000: no cap in
//! practice, so the figures are reproducible).

use std::time::Instant;

use gatehouse_hub::rota::model::monday_of;
use gatehouse_hub::rota::{plan, proposals, synth};

/// 2026-11-25 22:10 in Shanghai (night shift).
const NOW: i64 = 1_764_079_800_000;

fn main() {
    // ---- proposals ------------------------------------------------------------------------
    let m = synth::model(100, 2_000, 7);
    let live = synth::on_duty(&m, NOW, 200, 7);
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..7 {
        let t = Instant::now();
        let sol = proposals::solve(&m, &live, NOW);
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        last = Some(sol);
    }
    times.sort_by(f64::total_cmp);
    let sol = last.expect("ran");
    let rows: u32 = sol.gaps.iter().map(|g| g.need).sum();
    let recommended = sol.proposals.iter().filter(|p| p.recommended).count();
    let chains = sol
        .proposals
        .iter()
        .filter(|p| p.recommended && p.backfill.is_some())
        .count();
    println!(
        "proposals: {} gaps ({} guards missing) x {} guards: median {:.1} ms, min {:.1} ms, max {:.1} ms; {} recommended ({} back-fill chains), {} escalated, total score {}",
        sol.gaps.len(),
        rows,
        m.guards.len(),
        times[times.len() / 2],
        times[0],
        times[times.len() - 1],
        recommended,
        chains,
        sol.escalate.len(),
        sol.total_score
    );
    let after = synth::violations(&m, &live);
    assert!(after.is_empty(), "the synthetic instance breaks a rule: {after:?}");

    // ---- weekly plan ------------------------------------------------------------------------
    let budget: u64 = std::env::var("ROTA_PLAN_BUDGET_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60_000);
    let moves: Option<u64> = std::env::var("ROTA_PLAN_MOVES").ok().and_then(|v| v.parse().ok());
    let m = synth::model(50, 800, 11);
    let live = gatehouse_hub::rota::state::Live::default();
    let week = monday_of(m.local_date("e0", NOW)) + chrono::Days::new(7);
    let req = plan::Request {
        estates: vec![],
        week_start: week,
        moves,
        time_budget_ms: budget,
        seed: 11,
        keep_published: false,
    };
    let t = Instant::now();
    let p = plan::plan(&m, &live, &req, NOW);
    let total = t.elapsed().as_secs_f64() * 1000.0;
    let v = plan::violations(&m, &live, &p);
    println!(
        "weekly plan: {} estates, {} shifts, {} seats, {} guards",
        p.estates.len(),
        p.slots,
        p.seats,
        p.guards
    );
    println!(
        "  greedy baseline (first feasible plan): score {} ({} unfilled) in {:.0} ms",
        p.first.score, p.first.unfilled, p.first.ms
    );
    println!(
        "  local search ({} moves, {budget} ms cap{}): score {} ({} unfilled) after {:.0} ms total; {} iterations, accepted {:?}; improvement {:.1} %",
        p.moves_budget,
        if p.cut_short { ", CUT SHORT by the cap" } else { "" },
        p.last.score,
        p.last.unfilled,
        total,
        p.iterations,
        p.accepted,
        100.0 * (p.first.score - p.last.score) as f64 / p.first.score.max(1) as f64
    );
    println!("  greedy breakdown {:?}", p.first.breakdown);
    println!("  final  breakdown {:?}", p.last.breakdown);
    println!("  hard-rule violations in the final plan: {}", v.len());
    assert!(v.is_empty(), "{v:?}");
}
