//! The rectangular assignment problem (rows ≤ columns), minimum total cost: the Hungarian
//! method with potentials and shortest augmenting paths (Kuhn–Munkres as refined by Jonker
//! and Volgenant's successive shortest paths), O(rows² · cols). Pure, no dependencies.

/// Assigns every row to a distinct column minimising the summed cost. `cost[r][c]`;
/// requires `rows ≤ cols`. Returns the column of each row.
pub fn solve(cost: &[Vec<i64>]) -> Vec<usize> {
    let n = cost.len();
    if n == 0 {
        return Vec::new();
    }
    let m = cost[0].len();
    assert!(n <= m, "assignment needs rows ≤ columns");
    const INF: i64 = i64::MAX / 4;
    // 1-based arrays as in the classic formulation; column 0 is the virtual start.
    let mut u = vec![0i64; n + 1];
    let mut v = vec![0i64; m + 1];
    let mut p = vec![0usize; m + 1]; // p[j]: row assigned to column j
    let mut way = vec![0usize; m + 1];
    let mut minv = vec![INF; m + 1];
    let mut used = vec![false; m + 1];
    for i in 1..=n {
        p[0] = i;
        let mut j0 = 0usize;
        minv.fill(INF);
        used.fill(false);
        loop {
            used[j0] = true;
            let i0 = p[j0];
            let row = &cost[i0 - 1];
            let ui0 = u[i0];
            let mut delta = INF;
            let mut j1 = 0usize;
            for j in 1..=m {
                if !used[j] {
                    let cur = row[j - 1] - ui0 - v[j];
                    if cur < minv[j] {
                        minv[j] = cur;
                        way[j] = j0;
                    }
                    if minv[j] < delta {
                        delta = minv[j];
                        j1 = j;
                    }
                }
            }
            for j in 0..=m {
                if used[j] {
                    u[p[j]] += delta;
                    v[j] -= delta;
                } else {
                    minv[j] -= delta;
                }
            }
            j0 = j1;
            if p[j0] == 0 {
                break;
            }
        }
        loop {
            let j1 = way[j0];
            p[j0] = p[j1];
            j0 = j1;
            if j0 == 0 {
                break;
            }
        }
    }
    let mut out = vec![0usize; n];
    for j in 1..=m {
        if p[j] != 0 {
            out[p[j] - 1] = j - 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn brute(cost: &[Vec<i64>]) -> i64 {
        fn go(cost: &[Vec<i64>], r: usize, used: &mut Vec<bool>) -> i64 {
            if r == cost.len() {
                return 0;
            }
            let mut best = i64::MAX;
            for c in 0..cost[0].len() {
                if !used[c] {
                    used[c] = true;
                    best = best.min(cost[r][c] + go(cost, r + 1, used));
                    used[c] = false;
                }
            }
            best
        }
        go(cost, 0, &mut vec![false; cost[0].len()])
    }

    #[test]
    fn small_square_instance() {
        let c = vec![vec![4, 1, 3], vec![2, 0, 5], vec![3, 2, 2]];
        let a = solve(&c);
        assert_eq!(a.iter().enumerate().map(|(r, &k)| c[r][k]).sum::<i64>(), 5);
    }

    proptest! {
        /// Optimal (equal to exhaustive search) and a proper assignment, on rectangular instances.
        #[test]
        fn matches_brute_force(rows in 1usize..5, extra in 0usize..3, seed in proptest::collection::vec(0i64..1000, 64)) {
            let cols = rows + extra;
            let cost: Vec<Vec<i64>> = (0..rows).map(|r| (0..cols).map(|c| seed[(r * 7 + c * 3) % 64] - 300).collect()).collect();
            let a = solve(&cost);
            let mut seen = std::collections::HashSet::new();
            prop_assert!(a.iter().all(|c| seen.insert(*c) && *c < cols));
            prop_assert_eq!(a.iter().enumerate().map(|(r, &k)| cost[r][k]).sum::<i64>(), brute(&cost));
        }
    }
}
