//! Synthetic regions for property tests and the benchmark: estates with a gate, a patrol
//! post, a monitoring room (two, fire-safety certificate) and on some a vehicle gate; guards
//! based at them (a tenth floating, four in ten certified); the shift before, the shift
//! running now and the next one staffed; gaps made by sick calls. Deterministic for a seed.

use std::collections::HashMap;

use super::fit::{self, Busy};
use super::model::{EstateZone, GuardConfig, LeaveConfig, PostConfig, PostKind, RotaModel, RotaSettings, TravelConfig};
use super::patrol::Rng;
use super::state::{Absence, Assignment, Live, Presence, busy_of};

/// A region: estates `e0…`, guards `g0…`.
pub fn model(estates: usize, guards: usize, seed: u64) -> RotaModel {
    let mut rng = Rng(seed);
    let es: Vec<EstateZone> = (0..estates)
        .map(|i| EstateZone {
            id: format!("e{i}"),
            timezone: "Asia/Shanghai".into(),
        })
        .collect();
    let mut posts = Vec::new();
    for e in &es {
        let mut add = |kind: PostKind, quals: Vec<String>| {
            posts.push(PostConfig {
                estate: e.id.clone(),
                id: format!("{}-{}", e.id, kind.as_str()),
                kind,
                area: None,
                headcount: None,
                qualifications: quals,
                readers: vec![],
                shifts: vec![],
            })
        };
        add(PostKind::Gate, vec![]);
        add(PostKind::Patrol, vec![]);
        add(PostKind::MonitoringRoom, vec!["fire_safety".into()]);
        if rng.below(4) == 0 {
            add(PostKind::VehicleGate, vec![]);
        }
    }
    let gs: Vec<GuardConfig> = (0..guards)
        .map(|i| {
            let floating = i % 10 == 9;
            GuardConfig {
                id: format!("g{i}"),
                name: format!("Guard {i}"),
                home_estate: (!floating).then(|| format!("e{}", i % estates.max(1))),
                floating,
                qualifications: if rng.below(10) < 4 {
                    vec!["fire_safety".into()]
                } else {
                    vec![]
                },
                credentials: vec![],
                contract_hours: if rng.below(5) == 0 { 40 } else { 48 },
                max_consecutive_nights: 3 + rng.below(2) as u32,
                leave: if rng.below(20) == 0 {
                    let d = chrono::NaiveDate::from_ymd_opt(2026, 11, 20).unwrap()
                        + chrono::Days::new(rng.below(20) as u64);
                    vec![LeaveConfig {
                        from: d,
                        to: d + chrono::Days::new(2),
                    }]
                } else {
                    vec![]
                },
                channel: "log".into(),
                language: None,
            }
        })
        .collect();
    let settings = RotaSettings {
        travel: (1..estates)
            .map(|i| TravelConfig {
                from: format!("e{}", i - 1),
                to: format!("e{i}"),
                minutes: 15,
            })
            .collect(),
        ..RotaSettings::default()
    };
    RotaModel::build(&es, &settings, &posts, &gs, &[]).expect("synthetic region is valid")
}

/// The previous and the current shift of every post staffed (greedily, rules kept), the
/// current shift's guards on post; then `gaps` of them reported sick.
pub fn on_duty(m: &RotaModel, now: i64, gaps: usize, seed: u64) -> Live {
    let mut rng = Rng(seed ^ 0xabcdef);
    let mut live = Live::default();
    let mut busy: HashMap<String, Vec<Busy>> = HashMap::new();
    let mut next_id = 1;
    for pass in 0..3 {
        for p in &m.posts {
            let Some(cur) = m.slot_at(p, now) else { continue };
            let slot = match pass {
                0 => m.slot_at(p, cur.start_ms - 1).expect("a shift before"),
                1 => cur,
                _ => m.next_slot(p, now).expect("a shift after"),
            };
            let mut need = p.required();
            let start = rng.below(m.guards.len().max(1));
            for k in 0..m.guards.len() {
                if need == 0 {
                    break;
                }
                let g = &m.guards[(start + k) % m.guards.len()];
                if g.home_estate.as_deref() != Some(&p.estate) && !g.floating {
                    continue;
                }
                let w = fit::Want {
                    estate: &p.estate,
                    start: slot.start_ms,
                    end: slot.end_ms,
                    night: slot.night,
                    quals: &p.qualifications,
                };
                let b = busy.entry(g.id.clone()).or_default();
                if fit::hard(m, g, b, &[], &w).is_err() {
                    continue;
                }
                let a = Assignment {
                    id: next_id,
                    estate: p.estate.clone(),
                    post: p.id.clone(),
                    shift: slot.shift.clone(),
                    shift_start: slot.start_ms,
                    start: slot.start_ms,
                    end: slot.end_ms,
                    guard: g.id.clone(),
                    source: "plan".into(),
                };
                next_id += 1;
                b.push(busy_of(m, &a));
                b.sort_by_key(|x| x.start);
                if pass == 1 {
                    live.presence.insert(
                        g.id.clone(),
                        Presence {
                            post: p.id.clone(),
                            since: slot.start_ms,
                        },
                    );
                }
                live.add(a);
                need -= 1;
            }
        }
    }
    // Sick calls: guards of the current shift leave; their assignment goes.
    let current: Vec<Assignment> = live
        .assignments
        .values()
        .filter(|a| a.start <= now && now < a.end)
        .map(|a| (**a).clone())
        .collect();
    let mut order: Vec<usize> = (0..current.len()).collect();
    rng.shuffle(&mut order);
    for (k, &i) in order.iter().take(gaps).enumerate() {
        let a = &current[i];
        live.remove_assignment(a.id);
        live.presence.remove(&a.guard);
        live.absences.push(Absence {
            id: k as i64 + 1,
            guard: a.guard.clone(),
            start: now,
            end: a.end,
            reason: "sick".into(),
        });
    }
    live
}

/// Every hard rule over the whole live state: each guard's assignments replayed one at a
/// time onto the earlier ones. Returns what breaks.
pub fn violations(m: &RotaModel, live: &Live) -> Vec<String> {
    let mut out = Vec::new();
    let mut by: HashMap<&str, Vec<&Assignment>> = HashMap::new();
    for a in live.assignments.values() {
        by.entry(a.guard.as_str()).or_default().push(a);
    }
    for (g, list) in by {
        let Some(gc) = m.guard(g) else {
            out.push(format!("unknown guard {g}"));
            continue;
        };
        let absent = live.absent_of(g);
        let mut list = list;
        list.sort_by_key(|a| a.start);
        // A guard moved mid-shift: the part worked and the cover touch (one ends when the
        // other starts) and are one continuous duty.
        let mut duties: Vec<Assignment> = Vec::new();
        for a in list {
            match duties.last_mut() {
                Some(d) if d.end == a.start => {
                    d.end = a.end;
                    d.post = a.post.clone();
                    d.estate = a.estate.clone();
                    let max = i64::from(fit::max_duty_h(m)) * 3_600_000;
                    if d.end - d.start > max {
                        out.push(format!("{g}: continuous duty longer than a shift"));
                    }
                }
                _ => duties.push(a.clone()),
            }
        }
        let mut busy: Vec<Busy> = Vec::new();
        for a in &duties {
            let post = m.post(&a.post).expect("known post");
            let w = fit::Want {
                estate: &a.estate,
                start: a.start,
                end: a.end,
                night: m.template(&a.shift).is_some_and(|t| t.is_night()),
                quals: &post.qualifications,
            };
            if let Err(v) = fit::hard(m, gc, &busy, &absent, &w) {
                out.push(format!("{g} on {}@{}: {v}", a.post, a.shift_start));
            }
            let b = busy_of(m, a);
            let i = busy.partition_point(|x| x.start < b.start);
            busy.insert(i, b);
        }
    }
    out
}
