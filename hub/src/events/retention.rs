//! `[retention]`: how long stored events — which carry residents' card numbers, plates and
//! flats (docs/design.md "Personal data") — are kept. Pure; the writer's one-second tick
//! deletes what is past it, a small batch per tick (`queries::purge_events_before`), so no
//! purge ever holds the write lock for long.

use serde::Deserialize;

const DAY_MS: i64 = 86_400_000;

/// `[retention]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionSettings {
    /// Events stored longer than this many days (by `ingested_at_ms`, the hub's clock: a
    /// device's wrong clock neither keeps an event forever nor purges it at once) are deleted.
    pub events_days: u32,
    /// At most this many events deleted per tick (once a second).
    pub purge_batch: u32,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        RetentionSettings {
            events_days: 90,
            purge_batch: 500,
        }
    }
}

impl RetentionSettings {
    /// Events ingested before this instant are past their retention at `now_ms`.
    pub fn events_cutoff(&self, now_ms: i64) -> i64 {
        now_ms.saturating_sub(i64::from(self.events_days).saturating_mul(DAY_MS))
    }

    /// The checks of `config::validate`: a key and what is wrong.
    pub fn invalid(&self) -> Option<(&'static str, &'static str)> {
        if !(1..=36_500).contains(&self.events_days) {
            return Some(("retention.events_days", "must be between 1 and 36500"));
        }
        if !(1..=10_000).contains(&self.purge_batch) {
            return Some(("retention.purge_batch", "must be between 1 and 10000"));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cutoff_is_days_before_now() {
        let r = RetentionSettings::default();
        assert_eq!(r.events_cutoff(100 * DAY_MS), 10 * DAY_MS);
        assert!(r.invalid().is_none());
        let zero = RetentionSettings {
            events_days: 0,
            ..r.clone()
        };
        assert_eq!(zero.invalid().map(|e| e.0), Some("retention.events_days"));
    }
}
