//! Rate-limited logging shared by the adapters: what the network sends wrongly is counted
//! every time and logged at most once a minute per sender.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

/// At most one log line per device per minute, with a bounded memory of devices (a flood
/// of made-up device ids must not grow it without end).
#[derive(Default)]
pub(crate) struct LogLimiter {
    last: HashMap<String, Instant>,
}

impl LogLimiter {
    const WINDOW: Duration = Duration::from_secs(60);
    const MAX_KEYS: usize = 10_000;

    pub(crate) fn allow(&mut self, key: &str, now: Instant) -> bool {
        if let Some(t) = self.last.get(key)
            && now.duration_since(*t) < Self::WINDOW
        {
            return false;
        }
        if self.last.len() >= Self::MAX_KEYS {
            self.last.retain(|_, t| now.duration_since(*t) < Self::WINDOW);
            if self.last.len() >= Self::MAX_KEYS {
                return false;
            }
        }
        self.last.insert(key.to_string(), now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejections_are_logged_once_per_device_per_minute() {
        let mut l = LogLimiter::default();
        let t0 = Instant::now();
        assert!(l.allow("a", t0));
        assert!(!l.allow("a", t0 + Duration::from_secs(59)));
        assert!(l.allow("b", t0 + Duration::from_secs(1)));
        assert!(l.allow("a", t0 + Duration::from_secs(61)));
    }
}
