//! Patrol tours (巡逻): a route's checkpoints in an order shuffled per tour (the practice
//! warns against patrols that follow a fixed pattern), each expected at an even share of the
//! tour's time; a checkpoint scanned after its expected time plus the tolerance is late, one
//! not scanned by then is missed. Pure: the shell starts tours, feeds scans and the time.

use serde::Serialize;

use super::model::PatrolRouteConfig;

/// SplitMix64: a small, seedable generator (tour order, local search).
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() >> 11) % n as u64) as usize
    }

    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i + 1);
            v.swap(i, j);
        }
    }
}

/// A seed from a route and a start time (stable: a restarted hub plans the same tour).
pub fn seed(route: &str, start: i64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in route.bytes().chain(start.to_le_bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A running tour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tour {
    pub id: i64,
    pub route: String,
    pub estate: String,
    pub start: i64,
    pub order: Vec<String>,
    pub expected: Vec<i64>,
    pub scanned: Vec<Option<i64>>,
    pub guard: Option<String>,
    /// Already alarmed for a late / missed checkpoint in this tour.
    pub late_alarmed: bool,
    pub missed_alarmed: bool,
}

impl Tour {
    /// Plans the tour of `route` starting at `start`.
    pub fn plan(route: &PatrolRouteConfig, id: i64, start: i64) -> Tour {
        let mut order = route.checkpoints.clone();
        if route.shuffle {
            Rng(seed(&route.id, start)).shuffle(&mut order);
        }
        let n = order.len() as i64;
        let span = i64::from(route.tour_min) * 60_000;
        let expected = (1..=n).map(|i| start + span * i / n).collect();
        Tour {
            id,
            route: route.id.clone(),
            estate: route.estate.clone(),
            start,
            scanned: vec![None; order.len()],
            order,
            expected,
            guard: None,
            late_alarmed: false,
            missed_alarmed: false,
        }
    }

    /// When the tour is over: the last checkpoint's expected time plus the tolerance.
    pub fn ends_at(&self, route: &PatrolRouteConfig) -> i64 {
        self.expected.last().copied().unwrap_or(self.start) + i64::from(route.tolerance_min) * 60_000
    }
}

/// What a scan at a checkpoint did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    OnTime {
        index: usize,
    },
    Late {
        index: usize,
        minutes: i64,
    },
    /// Scanned already in this tour, or not a checkpoint of it.
    Ignored,
}

/// Records a scan of `checkpoint` at `at`.
pub fn scan(tour: &mut Tour, route: &PatrolRouteConfig, checkpoint: &str, at: i64) -> Scan {
    let Some(i) = tour
        .order
        .iter()
        .enumerate()
        .position(|(i, c)| c == checkpoint && tour.scanned[i].is_none())
    else {
        return Scan::Ignored;
    };
    tour.scanned[i] = Some(at);
    let due = tour.expected[i] + i64::from(route.tolerance_min) * 60_000;
    if at > due {
        Scan::Late {
            index: i,
            minutes: (at - tour.expected[i]) / 60_000,
        }
    } else {
        Scan::OnTime { index: i }
    }
}

/// Checkpoints past their expected time plus the tolerance and not scanned.
pub fn overdue(tour: &Tour, route: &PatrolRouteConfig, now: i64) -> Vec<usize> {
    let tol = i64::from(route.tolerance_min) * 60_000;
    (0..tour.order.len())
        .filter(|&i| tour.scanned[i].is_none() && now > tour.expected[i] + tol)
        .collect()
}

/// A finished tour's outcome: `on_time`, `late` (every checkpoint, some late) or `missed`.
pub fn outcome(tour: &Tour, route: &PatrolRouteConfig) -> &'static str {
    let tol = i64::from(route.tolerance_min) * 60_000;
    if tour.scanned.iter().any(Option::is_none) {
        "missed"
    } else if tour
        .scanned
        .iter()
        .zip(&tour.expected)
        .any(|(s, e)| s.is_some_and(|s| s > e + tol))
    {
        "late"
    } else {
        "on_time"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route() -> PatrolRouteConfig {
        PatrolRouteConfig {
            estate: "a".into(),
            id: "night-round".into(),
            post: None,
            checkpoints: (1..=6).map(|i| format!("cp{i}")).collect(),
            period_min: 120,
            tour_min: 30,
            tolerance_min: 5,
            shuffle: true,
        }
    }

    #[test]
    fn orders_are_shuffled_per_tour_but_stable_for_a_start_time() {
        let r = route();
        let a = Tour::plan(&r, 1, 0);
        let b = Tour::plan(&r, 2, 7_200_000);
        assert_eq!(a.order, Tour::plan(&r, 1, 0).order);
        assert_ne!(a.order, b.order, "two tours in a row follow different orders");
        let mut sorted = a.order.clone();
        sorted.sort();
        assert_eq!(sorted, r.checkpoints);
        assert_eq!(a.expected.last(), Some(&1_800_000));
    }

    #[test]
    fn a_skipped_checkpoint_is_overdue_and_the_tour_missed() {
        let r = route();
        let mut t = Tour::plan(&r, 1, 0);
        let order = t.order.clone();
        let expected = t.expected.clone();
        for (i, c) in order.iter().enumerate().skip(1) {
            assert!(matches!(scan(&mut t, &r, c, expected[i]), Scan::OnTime { .. }));
        }
        assert_eq!(overdue(&t, &r, expected[0] + 300_001), vec![0]);
        assert_eq!(outcome(&t, &r), "missed");
        assert_eq!(scan(&mut t, &r, &order[1], 0), Scan::Ignored);
        assert!(matches!(
            scan(&mut t, &r, &order[0], expected[0] + 600_000),
            Scan::Late { minutes: 10, .. }
        ));
        assert_eq!(outcome(&t, &r), "late");
    }
}
