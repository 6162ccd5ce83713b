//! The notification outbox as the deliverer sees it: a claimed row ([`Delivery`]), how its
//! send went ([`DeliveryOutcome`]), the retry backoff (pure), and [`DeliveryDesk`], the seam
//! through which the deliverer claims rows and records outcomes. The single writer implements
//! it, so the deliverer never writes to the database itself and `notify` does not depend on
//! the writer.

use std::fmt::Display;
use std::future::Future;

use serde::Deserialize;

/// A claimed notification to send.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: i64,
    pub channel: String,
    pub recipient: String,
    pub body: String,
    /// Attempts made before this one.
    pub attempts: i64,
}

/// How a send went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryOutcome {
    pub id: i64,
    pub ok: bool,
    pub error: Option<String>,
}

/// Delay before the next attempt after `attempts` failed ones: initial × 2^(attempts−1), capped.
pub fn backoff_ms(attempts: i64, initial_s: u32, max_s: u32) -> i64 {
    let exp = attempts.clamp(1, 30) - 1;
    (i64::from(initial_s) * 1000)
        .saturating_mul(1i64 << exp)
        .min(i64::from(max_s) * 1000)
}

/// Where the deliverer claims due notifications (a lease) and reports how each send went.
/// Both go through the single writer, which records outcomes on the row and the timeline.
pub trait DeliveryDesk: Clone + Send + Sync + 'static {
    type Error: Display + Send;
    /// Leases up to `limit` due notifications.
    fn claim_deliveries(&self, limit: i64) -> impl Future<Output = Result<Vec<Delivery>, Self::Error>> + Send;
    /// Records how a delivery went.
    fn delivery_result(&self, outcome: DeliveryOutcome) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// `[notify]`: delivery of notifications.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// HMAC-SHA256 key for webhook signatures (a roster entry's `secret` overrides it).
    pub webhook_secret: Option<String>,
    /// First retry after this long; doubled each attempt up to `retry_max_s`.
    pub retry_initial_s: u32,
    pub retry_max_s: u32,
    /// Attempts before a notification is marked failed.
    pub max_attempts: u32,
    /// Timeout of one webhook request.
    pub timeout_s: u32,
    /// https webhooks: a PEM file of CA certificates trusted besides the system's roots, for
    /// every channel without its own `ca_file`. Read at start.
    pub ca_file: Option<std::path::PathBuf>,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            webhook_secret: None,
            retry_initial_s: 5,
            retry_max_s: 300,
            max_attempts: 8,
            timeout_s: 10,
            ca_file: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_initial_delay_up_to_the_cap() {
        let b: Vec<_> = (1..=8).map(|a| backoff_ms(a, 5, 60)).collect();
        assert_eq!(b, [5_000, 10_000, 20_000, 40_000, 60_000, 60_000, 60_000, 60_000]);
        assert_eq!(backoff_ms(0, 5, 60), 5_000);
        assert_eq!(backoff_ms(1_000, 5, 300), 300_000);
    }
}
