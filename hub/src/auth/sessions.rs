//! Session and API-token secrets, and the failed-login throttle.
//!
//! A secret is 256 random bits from the OS (getrandom), hex, behind a prefix that says what
//! it is (`ghs_` a session, `ght_` an admin-made API token), so the hub looks it up in one
//! place. Only its SHA-256 is stored ([`super::token_sha256`]).

use std::collections::HashMap;
use std::sync::Mutex;

/// The prefix of a session token.
pub const SESSION_PREFIX: &str = "ghs_";
/// The prefix of an API token an admin made through `POST /api/v1/tokens`.
pub const API_TOKEN_PREFIX: &str = "ght_";

/// The session cookie's name.
pub const COOKIE: &str = "gatehouse_session";

/// Why no secret could be made.
#[derive(Debug, thiserror::Error)]
#[error("the operating system's random source failed: {0}")]
pub struct NoRandomness(String);

/// A new secret: `prefix` + 64 hex digits of OS randomness.
pub fn new_secret(prefix: &str) -> Result<String, NoRandomness> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| NoRandomness(e.to_string()))?;
    Ok(format!("{prefix}{}", hex::encode(bytes)))
}

/// `[auth]` settings of the failed-login throttle.
#[derive(Debug, Clone, Copy)]
pub struct ThrottleRules {
    /// Failures (per source, and per user name) before refusals start.
    pub max_failures: u32,
    /// The window the failures are counted in, and how long refusals last, in ms.
    pub lockout_ms: i64,
}

#[derive(Debug, Clone, Copy)]
struct Strikes {
    failures: u32,
    first_ms: i64,
    locked_until_ms: i64,
}

/// Counts failed logins per key (a source address or a user name) and refuses a key with
/// too many recent failures. In memory: a restart forgets, which costs an attacker a restart
/// of the hub per few guesses. Bounded: past [`MAX_KEYS`] keys the stale ones are dropped,
/// and if all are live the oldest window goes, so a flood of names cannot grow it.
#[derive(Debug)]
pub struct Throttle {
    rules: ThrottleRules,
    keys: Mutex<HashMap<String, Strikes>>,
}

const MAX_KEYS: usize = 10_000;

impl Throttle {
    pub fn new(rules: ThrottleRules) -> Self {
        Throttle {
            rules,
            keys: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `key` is refused at `now_ms`.
    pub fn locked(&self, key: &str, now_ms: i64) -> bool {
        let keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        keys.get(key).is_some_and(|s| s.locked_until_ms > now_ms)
    }

    /// Records a failure of `key`; true if it is now locked.
    pub fn fail(&self, key: &str, now_ms: i64) -> bool {
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        if keys.len() >= MAX_KEYS && !keys.contains_key(key) {
            let window = self.rules.lockout_ms;
            keys.retain(|_, s| s.locked_until_ms > now_ms || now_ms - s.first_ms < window);
            if keys.len() >= MAX_KEYS
                && let Some(oldest) = keys.iter().min_by_key(|(_, s)| s.first_ms).map(|(k, _)| k.clone())
            {
                keys.remove(&oldest);
            }
        }
        let s = keys.entry(key.to_owned()).or_insert(Strikes {
            failures: 0,
            first_ms: now_ms,
            locked_until_ms: 0,
        });
        if now_ms - s.first_ms >= self.rules.lockout_ms {
            s.failures = 0;
            s.first_ms = now_ms;
        }
        s.failures += 1;
        if s.failures >= self.rules.max_failures {
            s.locked_until_ms = now_ms + self.rules.lockout_ms;
            s.failures = 0;
            s.first_ms = now_ms;
            return true;
        }
        false
    }

    /// A successful login clears the user name's failures (not the source's).
    pub fn clear(&self, key: &str) {
        self.keys.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_random_and_prefixed() {
        let a = new_secret(SESSION_PREFIX).unwrap();
        let b = new_secret(SESSION_PREFIX).unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with("ghs_") && a.len() == 4 + 64);
    }

    #[test]
    fn five_failures_lock_for_the_window() {
        let t = Throttle::new(ThrottleRules {
            max_failures: 5,
            lockout_ms: 60_000,
        });
        for i in 0..4 {
            assert!(!t.fail("u", i));
        }
        assert!(!t.locked("u", 10));
        assert!(t.fail("u", 10));
        assert!(t.locked("u", 20));
        assert!(!t.locked("u", 60_011));
        assert!(!t.locked("v", 20));
    }
}
