//! Pure reporting decisions: report by exception per point, and the device's online state
//! with its backoff. The poller feeds observations in and sends what comes out.

use std::time::Duration;

use gatehouse_proto::Quality;

/// What was last sent for one point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sent {
    pub value: f64,
    pub quality: Quality,
}

/// Report-by-exception state of one point.
#[derive(Debug, Clone, Default)]
pub struct PointState {
    sent: Option<Sent>,
    /// Latest observation, sent as is by the full refresh.
    latest: Option<Sent>,
}

impl PointState {
    /// Records an observation; returns what to send now, if anything. A BAD or UNCERTAIN
    /// observation keeps the last good value (the number is meaningless without quality,
    /// and the last value is the least surprising one to carry).
    pub fn observe(&mut self, value: Option<f64>, quality: Quality, deadband: f64) -> Option<Sent> {
        let value = value.or(self.latest.map(|l| l.value)).unwrap_or(0.0);
        let now = Sent { value, quality };
        self.latest = Some(now);
        let send = match self.sent {
            None => true,
            Some(last) if last.quality != quality => true,
            // Values of a bad point are not news; only its quality is.
            Some(_) if quality != Quality::Good => false,
            Some(last) if deadband == 0.0 => last.value != value,
            Some(last) => (value - last.value).abs() > deadband,
        };
        if send {
            self.sent = Some(now);
            Some(now)
        } else {
            None
        }
    }

    /// The full refresh: the latest observation, if there ever was one.
    pub fn refresh(&mut self) -> Option<Sent> {
        let latest = self.latest?;
        self.sent = Some(latest);
        Some(latest)
    }

    pub fn last_sent(&self) -> Option<Sent> {
        self.sent
    }
}

/// A change of the device's reported state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusChange {
    Online,
    Offline,
}

/// Consecutive failures, the reported online state and the backoff that follows from them.
#[derive(Debug, Clone)]
pub struct Health {
    failures: u32,
    /// `None` until the first report.
    reported_online: Option<bool>,
    offline_after: u32,
}

impl Health {
    pub fn new(offline_after: u32) -> Self {
        Self {
            failures: 0,
            reported_online: None,
            // 0 would report offline before the first poll ever failed.
            offline_after: offline_after.max(1),
        }
    }

    /// A poll the device answered (exceptions included: it is alive).
    pub fn success(&mut self) -> Option<StatusChange> {
        self.failures = 0;
        if self.reported_online == Some(true) {
            return None;
        }
        self.reported_online = Some(true);
        Some(StatusChange::Online)
    }

    /// A poll that got no answer (connect failure, transport error, timeout).
    pub fn failure(&mut self) -> Option<StatusChange> {
        self.failures = self.failures.saturating_add(1);
        if self.failures < self.offline_after || self.reported_online == Some(false) {
            return None;
        }
        self.reported_online = Some(false);
        Some(StatusChange::Offline)
    }

    pub fn is_offline(&self) -> bool {
        self.reported_online == Some(false)
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Delay before the next attempt once the device is offline: `poll` doubled for each
    /// failure past the threshold, capped at `max`, with "equal jitter" (a random point in
    /// the upper half) so many gateways behind one dead switch do not retry in step.
    /// `None` while the device is not offline: poll at the normal rate.
    pub fn backoff(&self, poll: Duration, max: Duration, jitter: impl FnOnce(u64) -> u64) -> Option<Duration> {
        if !self.is_offline() {
            return None;
        }
        let doublings = (self.failures - self.offline_after.min(self.failures)).min(20);
        let base = poll.saturating_mul(1u32 << doublings).min(max).max(poll.min(max));
        let ms = u64::try_from(base.as_millis()).unwrap_or(u64::MAX);
        let half = ms / 2;
        Some(Duration::from_millis(half + jitter(ms - half)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_reading_is_always_sent_then_only_beyond_deadband() {
        let mut p = PointState::default();
        assert_eq!(p.observe(Some(10.0), Quality::Good, 0.5).map(|s| s.value), Some(10.0));
        assert_eq!(p.observe(Some(10.4), Quality::Good, 0.5), None);
        assert_eq!(
            p.observe(Some(10.5), Quality::Good, 0.5),
            None,
            "exactly the deadband is not beyond it"
        );
        assert_eq!(p.observe(Some(10.6), Quality::Good, 0.5).map(|s| s.value), Some(10.6));
        assert_eq!(p.refresh().map(|s| s.value), Some(10.6));
    }

    #[test]
    fn zero_deadband_sends_any_change_and_quality_changes_always_go() {
        let mut p = PointState::default();
        p.observe(Some(1.0), Quality::Good, 0.0);
        assert_eq!(p.observe(Some(1.0), Quality::Good, 0.0), None);
        assert!(p.observe(Some(1.000001), Quality::Good, 0.0).is_some());
        let bad = p.observe(None, Quality::Bad, 0.0).unwrap();
        assert_eq!((bad.value, bad.quality), (1.000001, Quality::Bad));
        assert_eq!(p.observe(None, Quality::Bad, 0.0), None, "BAD is reported once");
        assert!(p.observe(Some(1.000001), Quality::Good, 5.0).is_some());
    }

    #[test]
    fn refresh_sends_the_change_held_back_by_the_deadband() {
        let mut p = PointState::default();
        assert!(PointState::default().refresh().is_none());
        p.observe(Some(10.0), Quality::Good, 1.0);
        p.observe(Some(10.3), Quality::Good, 1.0);
        assert_eq!(p.refresh().map(|s| s.value), Some(10.3));
        // The refresh counts as sent: the deadband is measured from 10.3 now.
        assert!(p.observe(Some(11.2), Quality::Good, 1.0).is_none());
    }

    #[test]
    fn offline_is_reported_once_and_online_once() {
        let mut h = Health::new(3);
        assert_eq!(h.success(), Some(StatusChange::Online));
        assert_eq!(h.success(), None);
        assert_eq!(h.failure(), None);
        assert_eq!(h.failure(), None);
        assert_eq!(h.failure(), Some(StatusChange::Offline));
        for _ in 0..10 {
            assert_eq!(h.failure(), None);
        }
        assert_eq!(h.success(), Some(StatusChange::Online));
        assert_eq!(h.success(), None);
    }

    #[test]
    fn a_device_dead_from_the_start_is_reported_offline_without_an_online_first() {
        let mut h = Health::new(2);
        assert_eq!(h.failure(), None);
        assert_eq!(h.failure(), Some(StatusChange::Offline));
    }

    #[test]
    fn backoff_doubles_up_to_the_ceiling_with_jitter_in_the_upper_half() {
        let poll = Duration::from_millis(100);
        let max = Duration::from_millis(1000);
        let mut h = Health::new(1);
        assert_eq!(h.backoff(poll, max, |_| 0), None);
        h.failure();
        assert_eq!(h.backoff(poll, max, |r| r), Some(Duration::from_millis(100)));
        h.failure();
        assert_eq!(h.backoff(poll, max, |r| r), Some(Duration::from_millis(200)));
        assert_eq!(h.backoff(poll, max, |_| 0), Some(Duration::from_millis(100)));
        for _ in 0..100 {
            h.failure();
        }
        assert_eq!(h.backoff(poll, max, |r| r), Some(max));
    }
}
