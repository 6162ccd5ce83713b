//! Frames per source address (pure, the time passed in): a token bucket per source IP —
//! `max_frames_per_s` sustained, `frame_burst` at once — over TCP and UDP together.
//!
//! Why: every frame is decrypted and answered under the one receiver lock, so a source that
//! floods frames would slow every panel's ACK. A frame over the rate is dropped unanswered
//! (counted): a real panel retries after its ACK timeout, which spaces its retries, whereas a
//! NAK would ask it to send again at once. A burst of a fire panel's zone alarms (tens of
//! frames) fits in the default burst.
//!
//! The table is bounded: buckets that have refilled (idle sources) are dropped when it grows
//! past `MAX_SOURCES`; a source that finds the table full of busy ones is let through
//! uncounted — no newcomer is refused for room, as with connections (`conns.rs`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

/// Sources tracked at once.
pub const MAX_SOURCES: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The buckets of every source.
#[derive(Debug)]
pub struct FrameRate {
    per_s: f64,
    burst: f64,
    buckets: HashMap<IpAddr, Bucket>,
}

impl FrameRate {
    pub fn new(per_s: u32, burst: u32) -> FrameRate {
        FrameRate {
            per_s: f64::from(per_s.max(1)),
            burst: f64::from(burst.max(1)),
            buckets: HashMap::new(),
        }
    }

    /// Whether a frame from `source` at `now` is within its rate (and takes its token).
    pub fn allow(&mut self, source: IpAddr, now: Instant) -> bool {
        if !self.buckets.contains_key(&source) && self.buckets.len() >= MAX_SOURCES {
            self.prune(now);
            if self.buckets.len() >= MAX_SOURCES {
                return true;
            }
        }
        let (per_s, burst) = (self.per_s, self.burst);
        let b = self.buckets.entry(source).or_insert(Bucket { tokens: burst, at: now });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * per_s).min(burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Drops the buckets that are full again: their sources have been quiet.
    fn prune(&mut self, now: Instant) {
        let (per_s, burst) = (self.per_s, self.burst);
        self.buckets
            .retain(|_, b| b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * per_s < burst);
    }

    /// Sources tracked now.
    pub fn sources(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_burst_passes_then_the_sustained_rate_and_other_sources_are_untouched() {
        let mut r = FrameRate::new(2, 5);
        let t0 = Instant::now();
        let a = ip("10.0.0.1");
        assert_eq!((0..8).filter(|_| r.allow(a, t0)).count(), 5, "the burst");
        assert!(r.allow(ip("10.0.0.2"), t0), "another source has its own bucket");
        // Two tokens a second come back.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!((0..5).filter(|_| r.allow(a, t1)).count(), 2);
        // Never more than the burst, however long the quiet.
        let t2 = t1 + Duration::from_secs(3600);
        assert_eq!((0..10).filter(|_| r.allow(a, t2)).count(), 5);
    }

    #[test]
    fn the_table_stays_bounded_and_a_newcomer_is_never_refused_for_room() {
        let mut r = FrameRate::new(1, 2);
        let t0 = Instant::now();
        for i in 0..MAX_SOURCES {
            let [a, b] = u16::try_from(i).unwrap().to_be_bytes();
            // Each spends one of its two tokens: busy, not prunable yet.
            assert!(r.allow(IpAddr::from([10, 1, a, b]), t0));
        }
        assert_eq!(r.sources(), MAX_SOURCES);
        assert!(r.allow(ip("192.168.0.1"), t0), "let through, untracked");
        assert_eq!(r.sources(), MAX_SOURCES);
        // Once the others have refilled they are dropped and the newcomer is tracked.
        let later = t0 + Duration::from_secs(5);
        assert!(r.allow(ip("192.168.0.1"), later));
        assert_eq!(r.sources(), 1);
    }
}
