//! The notification outbox as the deliverer sees it: a claimed row ([`Delivery`]), how its
//! send went ([`DeliveryOutcome`]), the retry backoff (pure), and [`DeliveryDesk`], the seam
//! through which the deliverer claims rows and records outcomes. The single writer implements
//! it, so the deliverer never writes to the database itself and `notify` does not depend on
//! the writer.

use std::fmt::Display;
use std::fmt::Write as _;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A claimed notification to send.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: i64,
    pub channel: String,
    pub recipient: String,
    /// The JSON of a [`super::body::NotificationBody`].
    pub body: String,
    /// Attempts made before this one.
    pub attempts: i64,
}

/// How a send went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryOutcome {
    pub id: i64,
    pub ok: bool,
    /// When `ok`: whether the channel confirmed delivery (a webhook's or robot's 2xx with no
    /// error code) or only accepted it for sending (an SMTP relay, an SMS gateway): status
    /// `delivered` or `sent`.
    pub delivered: bool,
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

/// How one webhook attempt went; each result has its own counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookResult {
    Delivered,
    /// The webhook answered, but not 2xx.
    Refused,
    /// The TLS handshake failed (a certificate not trusted, a wrong name).
    Tls,
    /// No answer: connection refused, DNS, timeout.
    Unreachable,
    /// Not sent (no signing secret).
    Other,
}

impl WebhookResult {
    pub const ALL: [WebhookResult; 5] = [
        WebhookResult::Delivered,
        WebhookResult::Refused,
        WebhookResult::Tls,
        WebhookResult::Unreachable,
        WebhookResult::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            WebhookResult::Delivered => "delivered",
            WebhookResult::Refused => "refused",
            WebhookResult::Tls => "tls_error",
            WebhookResult::Unreachable => "unreachable",
            WebhookResult::Other => "other",
        }
    }
}

/// `gatehouse_hub_webhook_attempts_total{result}`.
#[derive(Debug, Default)]
pub struct WebhookAttempts([AtomicU64; WebhookResult::ALL.len()]);

impl WebhookAttempts {
    pub fn count(&self, result: WebhookResult) {
        self.0[result as usize].fetch_add(1, Relaxed);
    }

    pub fn get(&self, result: WebhookResult) -> u64 {
        self.0[result as usize].load(Relaxed)
    }

    pub fn render(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP gatehouse_hub_webhook_attempts_total Webhook delivery attempts, by result.\n\
             # TYPE gatehouse_hub_webhook_attempts_total counter"
        );
        for r in WebhookResult::ALL {
            let _ = writeln!(
                out,
                "gatehouse_hub_webhook_attempts_total{{result=\"{}\"}} {}",
                r.as_str(),
                self.get(r)
            );
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
