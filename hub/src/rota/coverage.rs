//! The coverage ledger: per post, required against present, and what a shortfall does over
//! time. Pure: the shell feeds it the post's current shift, headcounts and the time, and
//! persists and raises what it answers.
//!
//! A post short of its headcount during one of its shifts has an open *gap*; a gap older
//! than the grace period raises the P2 `post_unattended:<post>` alarm, which clears when the
//! post is covered again (or is no longer staffed). A gap that runs into the next shift is
//! closed and a new one opened for that shift, carrying its alarm (no clear and re-raise).

use serde::Serialize;

/// An open gap of one post.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct GapState {
    /// Start of the shift instance the gap belongs to.
    pub shift_start: i64,
    pub opened_at: i64,
    /// The post-unattended alarm is raised.
    pub alarmed: bool,
}

/// What the shell must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GapEffect {
    /// A gap opened (record it).
    Opened,
    /// The grace period ran out: raise the alarm.
    Alarm,
    /// The gap closed; `clear_alarm` when its alarm must clear (not carried to the next shift).
    Closed { clear_alarm: bool },
}

/// One step of a post's ledger: `shift` is the start of the shift running now (None when the
/// post is not staffed now), `present` the guards on post.
pub fn step(
    prev: Option<GapState>,
    shift: Option<i64>,
    required: u32,
    present: u32,
    now: i64,
    grace_ms: i64,
) -> (Option<GapState>, Vec<GapEffect>) {
    let short = shift.filter(|_| present < required);
    let mut fx = Vec::new();
    let next = match (prev, short) {
        (None, None) => None,
        (Some(g), None) => {
            fx.push(GapEffect::Closed { clear_alarm: g.alarmed });
            None
        }
        (None, Some(s)) => {
            fx.push(GapEffect::Opened);
            Some(GapState {
                shift_start: s,
                opened_at: now,
                alarmed: false,
            })
        }
        (Some(g), Some(s)) if g.shift_start == s => Some(g),
        (Some(g), Some(s)) => {
            fx.push(GapEffect::Closed { clear_alarm: false });
            fx.push(GapEffect::Opened);
            Some(GapState {
                shift_start: s,
                opened_at: now,
                alarmed: g.alarmed,
            })
        }
    };
    let next = next.map(|mut g| {
        if !g.alarmed && now >= g.opened_at + grace_ms {
            g.alarmed = true;
            fx.push(GapEffect::Alarm);
        }
        g
    });
    (next, fx)
}

/// Late clock-in / early clock-out, in whole minutes beyond the tolerance's threshold.
pub fn lateness_min(shift_start: i64, clocked_in: i64, tolerance_ms: i64) -> Option<i64> {
    (clocked_in > shift_start + tolerance_ms).then(|| (clocked_in - shift_start) / 60_000)
}

pub fn early_min(shift_end: i64, clocked_out: i64, tolerance_ms: i64) -> Option<i64> {
    (clocked_out < shift_end - tolerance_ms).then(|| (shift_end - clocked_out) / 60_000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use GapEffect::*;

    const G: i64 = 300_000;

    #[test]
    fn a_shortfall_opens_a_gap_that_alarms_only_after_the_grace_period_and_clears_when_covered() {
        let (g, fx) = step(None, Some(0), 1, 0, 10, G);
        assert_eq!(fx, [Opened]);
        let (g, fx) = step(g, Some(0), 1, 0, 10 + G - 1, G);
        assert!(fx.is_empty());
        let (g, fx) = step(g, Some(0), 1, 0, 10 + G, G);
        assert_eq!(fx, [Alarm]);
        let (g, fx) = step(g, Some(0), 1, 0, 10 + 2 * G, G);
        assert!(fx.is_empty() && g.unwrap().alarmed);
        let (g, fx) = step(g, Some(0), 1, 1, 10 + 3 * G, G);
        assert_eq!(fx, [Closed { clear_alarm: true }]);
        assert!(g.is_none());
    }

    #[test]
    fn covered_within_grace_raises_nothing() {
        let (g, _) = step(None, Some(0), 2, 1, 0, G);
        let (g, fx) = step(g, Some(0), 2, 2, G - 1, G);
        assert_eq!(fx, [Closed { clear_alarm: false }]);
        assert!(g.is_none());
    }

    #[test]
    fn a_gap_running_into_the_next_shift_carries_its_alarm() {
        let (g, _) = step(None, Some(0), 1, 0, 0, G);
        let (g, _) = step(g, Some(0), 1, 0, G, G);
        let (g, fx) = step(g, Some(1_000_000), 1, 0, 1_000_000, G);
        assert_eq!(fx, [Closed { clear_alarm: false }, Opened]);
        assert!(g.unwrap().alarmed);
        let (_, fx) = step(g, None, 1, 0, 2_000_000, G);
        assert_eq!(fx, [Closed { clear_alarm: true }]);
    }

    #[test]
    fn late_and_early_by_tolerance() {
        assert_eq!(lateness_min(0, 299_999, 300_000), None);
        assert_eq!(lateness_min(0, 600_000, 300_000), Some(10));
        assert_eq!(early_min(3_600_000, 0, 300_000), Some(60));
        assert_eq!(early_min(3_600_000, 3_500_000, 300_000), None);
    }
}
