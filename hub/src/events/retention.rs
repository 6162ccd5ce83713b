//! `[retention]`: how long stored events — which carry residents' card numbers, plates and
//! flats (docs/design.md "Personal data") — and the other histories are kept. Pure. Events
//! live in time partitions of `partition_hours` (`partitions`); the writer's one-second tick
//! drops the partitions wholly past `events_days` (a table drop, never a long delete) and
//! deletes the other histories past their days a small batch (`purge_batch`) per tick, so
//! no purge ever holds the write lock for long.

use serde::Deserialize;

const DAY_MS: i64 = 86_400_000;
const HOUR_MS: i64 = 3_600_000;
/// Most event partitions kept at once: SQLite's `events` view is one compound SELECT of
/// them (SQLite takes at most 500 arms), and PostgreSQL plans slower with thousands.
pub const MAX_PARTITIONS: u32 = 400;

/// `[retention]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionSettings {
    /// Events stored longer than this many days (by `ingested_at_ms`, the hub's clock: a
    /// device's wrong clock neither keeps an event forever nor purges it at once) are
    /// dropped, a whole partition at a time (so an event is kept up to one partition longer).
    pub events_days: u32,
    /// The span of one event partition, in hours.
    pub partition_hours: u32,
    /// At most this many rows of each other history deleted per tick (once a second).
    pub purge_batch: u32,
    /// Alarm history rows older than this many days (cleared, acknowledged alarms' past)
    /// are deleted; 0 keeps them forever.
    pub alarms_days: u32,
    /// Closed incidents (with their alarms, steps and timeline) closed longer ago than
    /// this are deleted; 0 keeps them forever.
    pub incidents_days: u32,
    /// Rota history (presence log, attendance, patrol scans, handovers, notes) older than
    /// this is deleted; 0 keeps it forever.
    pub rota_days: u32,
    /// The audit log: 0 (the default) keeps it forever; it is never purged by this hub
    /// version (its hash chain starts at the first row).
    pub audit_days: u32,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        RetentionSettings {
            events_days: 90,
            partition_hours: 24,
            purge_batch: 500,
            alarms_days: 365,
            incidents_days: 365,
            rota_days: 365,
            audit_days: 0,
        }
    }
}

/// `now - days`, or None when `days` is 0 (kept forever).
fn cutoff(now_ms: i64, days: u32) -> Option<i64> {
    (days > 0).then(|| now_ms.saturating_sub(i64::from(days).saturating_mul(DAY_MS)))
}

impl RetentionSettings {
    /// Events ingested before this instant are past their retention at `now_ms`.
    pub fn events_cutoff(&self, now_ms: i64) -> i64 {
        now_ms.saturating_sub(i64::from(self.events_days).saturating_mul(DAY_MS))
    }

    /// One event partition's span in milliseconds.
    pub fn partition_ms(&self) -> i64 {
        i64::from(self.partition_hours.max(1)).saturating_mul(HOUR_MS)
    }

    pub fn alarms_cutoff(&self, now_ms: i64) -> Option<i64> {
        cutoff(now_ms, self.alarms_days)
    }

    pub fn incidents_cutoff(&self, now_ms: i64) -> Option<i64> {
        cutoff(now_ms, self.incidents_days)
    }

    pub fn rota_cutoff(&self, now_ms: i64) -> Option<i64> {
        cutoff(now_ms, self.rota_days)
    }

    /// The checks of `config::validate`: a key and what is wrong.
    pub fn invalid(&self) -> Option<(&'static str, &'static str)> {
        if !(1..=36_500).contains(&self.events_days) {
            return Some(("retention.events_days", "must be between 1 and 36500"));
        }
        if !(1..=24 * 31).contains(&self.partition_hours) {
            return Some(("retention.partition_hours", "must be between 1 and 744"));
        }
        // Kept: `events_days` of spans, the one being written, one ahead, one draining.
        let kept = u64::from(self.events_days) * 24 / u64::from(self.partition_hours.max(1)) + 3;
        if kept > u64::from(MAX_PARTITIONS) {
            return Some((
                "retention.partition_hours",
                "too short for retention.events_days: at most 400 event partitions are kept (events_days * 24 / partition_hours)",
            ));
        }
        if !(1..=10_000).contains(&self.purge_batch) {
            return Some(("retention.purge_batch", "must be between 1 and 10000"));
        }
        for (key, days) in [
            ("retention.alarms_days", self.alarms_days),
            ("retention.incidents_days", self.incidents_days),
            ("retention.rota_days", self.rota_days),
        ] {
            if days > 36_500 {
                return Some((key, "must be between 0 (forever) and 36500"));
            }
        }
        if self.audit_days != 0 {
            return Some((
                "retention.audit_days",
                "must be 0: the audit log is kept forever (its hash chain starts at the first row)",
            ));
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
        assert_eq!(r.partition_ms(), DAY_MS);
        assert!(r.invalid().is_none());
        let zero = RetentionSettings {
            events_days: 0,
            ..r.clone()
        };
        assert_eq!(zero.invalid().map(|e| e.0), Some("retention.events_days"));
        let forever = RetentionSettings {
            alarms_days: 0,
            ..r.clone()
        };
        assert_eq!(forever.alarms_cutoff(400 * DAY_MS), None);
        assert_eq!(r.alarms_cutoff(400 * DAY_MS), Some(35 * DAY_MS));
        let many = RetentionSettings {
            partition_hours: 1,
            ..r.clone()
        };
        assert_eq!(
            many.invalid().map(|e| e.0),
            Some("retention.partition_hours"),
            "90 days of hours"
        );
        let audit = RetentionSettings { audit_days: 30, ..r };
        assert_eq!(audit.invalid().map(|e| e.0), Some("retention.audit_days"));
    }
}
