//! Who a client is, decided at CONNECT: a device's password (username = device id,
//! password checked against the argon2 PHC string `[[devices]] mqtt_password_hash`), or its
//! TLS client certificate (identity = the certificate's subject CN, checked by `tls.rs`),
//! or nobody (only with `mqtt.allow_anonymous`, loopback only).
//!
//! Argon2 is deliberately slow, so: verification runs on the blocking pool, at most
//! [`MAX_CONCURRENT_VERIFIES`] at a time (a flood of wrong passwords costs the gateway at
//! most that many cores' worth); a password once verified for a device is remembered as a
//! SHA-256 of (PHC string, password), so a reconnect storm of the estate's own devices costs
//! one hash each, not one argon2 each; and a source address with
//! `mqtt.auth_max_failures` failed logins within `mqtt.auth_failure_window_s` is refused,
//! unchecked, for `mqtt.auth_backoff_s` ([`FailureLimiter`]).

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use argon2::{Algorithm, Argon2, Params, PasswordHash, PasswordHasher, PasswordVerifier, Version};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

/// Argon2 verifications running at once (the machine is a small plant-room box).
pub const MAX_CONCURRENT_VERIFIES: usize = 2;

/// The parameters `hash-password` writes: argon2id, 19 MiB, 2 passes, 1 lane (OWASP's
/// first recommendation). One verification takes ~25 ms on one core of the development
/// machine; the verified-secret cache makes reconnects cheap.
pub fn params() -> Params {
    Params::new(19 * 1024, 2, 1, None).unwrap_or(Params::DEFAULT)
}

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("hashing the password: {0}")]
    Hash(String),
    #[error("an empty password")]
    Empty,
}

/// An argon2id PHC string of `password` with a random salt and [`params`].
pub fn hash_password(password: &[u8]) -> Result<String, HashError> {
    if password.is_empty() {
        return Err(HashError::Empty);
    }
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params());
    argon
        .hash_password(password)
        .map(|h| h.to_string())
        .map_err(|e| HashError::Hash(e.to_string()))
}

/// Load-time check of a configured hash: a PHC string of an argon2 variant.
pub fn check_phc(phc: &str) -> Result<(), String> {
    let h = PasswordHash::new(phc).map_err(|e| format!("not a PHC string: {e}"))?;
    if !h.algorithm.as_str().starts_with("argon2") {
        return Err(format!("algorithm {} is not argon2", h.algorithm));
    }
    Ok(())
}

/// Why a login failed (each counted on `/metrics`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// No username (and no client certificate), anonymous access off.
    NoCredentials,
    /// A username that is no device with a password, or a wrong password.
    BadPassword,
    /// A username that differs from the client certificate's device.
    CertMismatch,
    /// The source address failed too often; not checked.
    RateLimited,
}

/// The configured devices' password hashes and the cache of verified secrets.
pub struct Credentials {
    hashes: HashMap<String, String>,
    verified: Mutex<HashMap<String, [u8; 32]>>,
    verifying: Arc<Semaphore>,
}

impl Credentials {
    /// `hashes`: device id → PHC string.
    pub fn new(hashes: HashMap<String, String>) -> Self {
        Self {
            hashes,
            verified: Mutex::default(),
            verifying: Arc::new(Semaphore::new(MAX_CONCURRENT_VERIFIES)),
        }
    }

    fn digest(phc: &str, password: &[u8]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update((phc.len() as u64).to_be_bytes());
        h.update(phc.as_bytes());
        h.update(password);
        h.finalize().into()
    }

    /// Whether `password` is `device`'s.
    pub async fn verify(&self, device: &str, password: &[u8]) -> bool {
        let Some(phc) = self.hashes.get(device) else {
            return false;
        };
        let digest = Self::digest(phc, password);
        if let Some(known) = self.verified.lock().unwrap_or_else(|p| p.into_inner()).get(device)
            && constant_time_eq(known, &digest)
        {
            return true;
        }
        let Ok(_permit) = self.verifying.clone().acquire_owned().await else {
            return false;
        };
        let (phc_owned, pw) = (phc.clone(), password.to_vec());
        let ok = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&phc_owned).is_ok_and(|h| Argon2::default().verify_password(&pw, &h).is_ok())
        })
        .await
        .unwrap_or(false);
        if ok {
            self.verified
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(device.to_string(), digest);
        }
        ok
    }
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Failed logins per source address: after `max` within `window`, the source is refused
/// for `backoff` without its credentials being checked. A success does not wipe the count
/// (a guesser holding one valid login could otherwise interleave it to guess without end);
/// failures age out with the window. Pure: the time is an argument.
pub struct FailureLimiter {
    max: u32,
    window: Duration,
    backoff: Duration,
    sources: HashMap<IpAddr, Source>,
}

struct Source {
    since: Instant,
    failures: u32,
    blocked_until: Option<Instant>,
}

impl FailureLimiter {
    /// Sources remembered at most; a flood of addresses forgets the oldest quiet ones.
    const MAX_SOURCES: usize = 10_000;

    pub fn new(max: u32, window: Duration, backoff: Duration) -> Self {
        Self {
            max: max.max(1),
            window,
            backoff,
            sources: HashMap::new(),
        }
    }

    /// Whether `ip` is in its backoff.
    pub fn blocked(&mut self, ip: IpAddr, now: Instant) -> bool {
        match self.sources.get(&ip).and_then(|s| s.blocked_until) {
            Some(until) if now < until => true,
            Some(_) => {
                self.sources.remove(&ip);
                false
            }
            None => false,
        }
    }

    /// Records a failed login from `ip`; true when it starts the source's backoff.
    pub fn failed(&mut self, ip: IpAddr, now: Instant) -> bool {
        if self.sources.len() >= Self::MAX_SOURCES && !self.sources.contains_key(&ip) {
            let (window, backoff) = (self.window, self.backoff);
            self.sources.retain(|_, s| match s.blocked_until {
                Some(until) => now < until,
                None => now.duration_since(s.since) < window.max(backoff),
            });
        }
        let s = self.sources.entry(ip).or_insert(Source {
            since: now,
            failures: 0,
            blocked_until: None,
        });
        if now.duration_since(s.since) >= self.window {
            s.since = now;
            s.failures = 0;
        }
        s.failures += 1;
        if s.failures >= self.max && s.blocked_until.is_none() {
            s.blocked_until = Some(now + self.backoff);
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_is_refused_after_repeated_failures_and_let_in_after_its_backoff() {
        let mut l = FailureLimiter::new(3, Duration::from_secs(60), Duration::from_secs(300));
        let ip: IpAddr = "10.0.0.7".parse().expect("ip");
        let other: IpAddr = "10.0.0.8".parse().expect("ip");
        let t0 = Instant::now();
        assert!(!l.failed(ip, t0));
        assert!(!l.failed(ip, t0 + Duration::from_secs(1)));
        assert!(!l.blocked(ip, t0 + Duration::from_secs(2)));
        assert!(
            l.failed(ip, t0 + Duration::from_secs(2)),
            "the third failure starts the backoff"
        );
        assert!(l.blocked(ip, t0 + Duration::from_secs(3)));
        assert!(!l.blocked(other, t0 + Duration::from_secs(3)), "per source");
        assert!(l.blocked(ip, t0 + Duration::from_secs(4)));
        assert!(!l.blocked(ip, t0 + Duration::from_secs(303)));
        assert!(!l.failed(ip, t0 + Duration::from_secs(304)), "counting starts again");
    }

    #[test]
    fn failures_outside_the_window_do_not_add_up() {
        let mut l = FailureLimiter::new(2, Duration::from_secs(60), Duration::from_secs(300));
        let ip: IpAddr = "10.0.0.7".parse().expect("ip");
        let t0 = Instant::now();
        assert!(!l.failed(ip, t0));
        assert!(!l.failed(ip, t0 + Duration::from_secs(61)));
        assert!(l.failed(ip, t0 + Duration::from_secs(62)));
    }

    #[tokio::test]
    async fn the_right_password_is_accepted_and_a_wrong_one_refused() {
        let t = Instant::now();
        let phc = hash_password(b"s3cret").expect("hash");
        let hashed = t.elapsed();
        check_phc(&phc).expect("valid");
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        let c = Credentials::new(HashMap::from([("door-1".to_string(), phc)]));
        assert!(!c.verify("door-1", b"wrong").await);
        assert!(!c.verify("door-2", b"s3cret").await, "no such device");
        assert!(c.verify("door-1", b"s3cret").await);
        let t = Instant::now();
        assert!(c.verify("door-1", b"s3cret").await, "cached");
        let cached = t.elapsed();
        assert!(
            !c.verify("door-1", b"s3cret ").await,
            "the cache holds only the verified secret"
        );
        eprintln!("argon2id hash: {hashed:?}; cached verify: {cached:?}");
        assert!(check_phc("plain").is_err());
        assert!(hash_password(b"").is_err());
    }
}
