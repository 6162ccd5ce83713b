//! The deliverer: the one task that sends the notification outbox (I/O: HTTP and the log).
//!
//! The writer inserts notification rows in the same transaction as the decision that caused
//! them (an escalation step, a supervisor alert, a flood). The deliverer asks the writer to
//! *claim* due rows (a lease, taken by a conditional UPDATE), sends each one on its channel
//! (`log`, or a webhook: JSON POST signed `X-Gatehouse-Signature: sha256=<hex HMAC-SHA256 of
//! the body>`), and reports the outcome back through the writer, which records it on the row
//! and on the incident's timeline and schedules a retry with exponential backoff. Delivery is
//! at least once: a hub that dies mid-send resends after the lease runs out.
//!
//! Webhooks are `http://` or `https://` (rustls on ring; the system's roots plus a CA file,
//! see [`super::tls`]). Every attempt is counted by result
//! (`gatehouse_hub_webhook_attempts_total{result}`); a failure's text names its cause (an
//! untrusted certificate, a refused connection, the status answered).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use hmac::{KeyInit, Mac};
use sha2::Sha256;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::address::Address;
use super::body::NotificationBody;
use super::channels::Sent;
use super::message::render;
use super::outbox::{Delivery, DeliveryDesk, DeliveryOutcome, WebhookAttempts, WebhookResult};
use super::tls::{WebhookClients, error_chain, is_tls_failure};

/// `sha256=<hex>` of the body under `secret`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac =
        <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// How the deliverer runs.
#[derive(Debug, Clone)]
pub struct DelivererConfig {
    /// Webhook URL → secret.
    pub secrets: HashMap<String, String>,
    /// The secret of a webhook not in `secrets` (a guard's channel): `notify.webhook_secret`.
    pub default_secret: Option<String>,
    /// The clients, with each channel's trusted roots (built at start: see [`super::tls`]).
    pub clients: WebhookClients,
    /// Chat robots, e-mail and SMS (built at start).
    pub channels: Arc<super::channels::Channels>,
    /// How often due retries are looked for when nothing wakes the deliverer.
    pub poll: Duration,
    /// Where attempts are counted (rendered on `/metrics` by the metrics leaf).
    pub attempts: Arc<WebhookAttempts>,
    /// Attempts by channel and result (`/metrics` too).
    pub channel_attempts: Arc<ChannelAttempts>,
}

/// The channels attempts are counted by: the platform of a robot, not its name (names are
/// configuration; a label per name would grow with it).
pub const CHANNELS: [&str; 9] = [
    "log", "webhook", "wecom", "dingtalk", "feishu", "slack", "teams", "email", "sms",
];

/// `gatehouse_hub_notification_attempts_total{channel,result}`.
#[derive(Debug, Default)]
pub struct ChannelAttempts([[AtomicU64; WebhookResult::ALL.len()]; CHANNELS.len()]);

impl ChannelAttempts {
    /// Counts one attempt on `channel` (one of [`CHANNELS`]; anything else is not counted).
    pub fn count(&self, channel: &str, result: WebhookResult) {
        if let Some(i) = CHANNELS.iter().position(|c| *c == channel) {
            self.0[i][result as usize].fetch_add(1, Relaxed);
        }
    }

    pub fn get(&self, channel: &str, result: WebhookResult) -> u64 {
        CHANNELS
            .iter()
            .position(|c| *c == channel)
            .map_or(0, |i| self.0[i][result as usize].load(Relaxed))
    }

    pub fn render(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP gatehouse_hub_notification_attempts_total Notification delivery attempts, by channel and result.\n\
             # TYPE gatehouse_hub_notification_attempts_total counter"
        );
        for (i, channel) in CHANNELS.iter().enumerate() {
            for r in WebhookResult::ALL {
                let _ = writeln!(
                    out,
                    "gatehouse_hub_notification_attempts_total{{channel=\"{channel}\",result=\"{}\"}} {}",
                    r.as_str(),
                    self.0[i][r as usize].load(Relaxed)
                );
            }
        }
    }
}

/// Runs until `stop`: claims due notifications, sends them, reports the outcomes.
pub async fn run_deliverer<D: DeliveryDesk>(
    writer: D,
    wake: Arc<Notify>,
    config: DelivererConfig,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(config.poll) => {}
        }
        loop {
            let batch = match writer.claim_deliveries(32).await {
                Ok(b) => b,
                Err(e) => {
                    debug!(error = %e, "cannot claim notifications now");
                    break;
                }
            };
            if batch.is_empty() {
                break;
            }
            let sends = batch.into_iter().map(|d| send(&config, d));
            for outcome in futures::future::join_all(sends).await {
                if let Err(e) = writer.delivery_result(outcome).await {
                    debug!(error = %e, "cannot record a delivery outcome; the lease will expire and it is resent");
                }
            }
            if stop.is_cancelled() {
                break;
            }
        }
    }
    debug!("notification deliverer stopped");
}

async fn send(config: &DelivererConfig, d: Delivery) -> DeliveryOutcome {
    let address = match Address::parse(&d.channel) {
        Ok(a) => a,
        Err(e) => {
            return DeliveryOutcome {
                id: d.id,
                ok: false,
                delivered: false,
                error: Some(format!("not a channel: {e}")),
            };
        }
    };
    if matches!(address, Address::Robot(_) | Address::Email(_) | Address::Sms(_)) {
        let msg = match NotificationBody::parse(&d.body) {
            Some(body) => render(&body),
            None => {
                return DeliveryOutcome {
                    id: d.id,
                    ok: false,
                    delivered: false,
                    error: Some("the notification's body cannot be read".into()),
                };
            }
        };
        let sent = config.channels.send(&address, &msg).await;
        let (counted, error) = match &sent {
            Ok(_) => (WebhookResult::Delivered, None),
            Err(e) => (e.result, Some(e.reason.clone())),
        };
        config.attempts.count(counted);
        let channel = match &address {
            Address::Robot(name) => config.channels.robot_kind(name).unwrap_or("robot"),
            other => other.kind(),
        };
        config.channel_attempts.count(channel, counted);
        if let Some(e) = &error {
            warn!(notification = d.id, attempt = d.attempts + 1, channel = address.kind(), error = %e, "notification delivery failed; retried with backoff");
        }
        return DeliveryOutcome {
            id: d.id,
            ok: sent.is_ok(),
            delivered: matches!(sent, Ok(Sent::Delivered)),
            error,
        };
    }
    let channel = if d.channel == "log" { "log" } else { "webhook" };
    let result = if d.channel == "log" {
        // The body names no card, plate or flat; the recipient's name (a guard's, say) is
        // written as initials: a log is not a place for names.
        info!(notification = d.id, recipient = %crate::privacy::mask::initials(&d.recipient),
            body = %crate::privacy::log_notification_body(&d.body), "notification");
        config.channel_attempts.count(channel, WebhookResult::Delivered);
        Ok(())
    } else {
        let secret = config.secrets.get(&d.channel).or(config.default_secret.as_ref());
        let (result, counted) = match secret {
            None => (
                Err("no signing secret for this webhook".to_owned()),
                WebhookResult::Other,
            ),
            Some(secret) => post(config.clients.for_channel(&d.channel), &d, secret).await,
        };
        config.attempts.count(counted);
        config.channel_attempts.count(channel, counted);
        if let Err(e) = &result {
            warn!(notification = d.id, attempt = d.attempts + 1, error = %e, "webhook delivery failed; retried with backoff");
        }
        result
    };
    DeliveryOutcome {
        id: d.id,
        ok: result.is_ok(),
        delivered: result.is_ok(),
        error: result.err(),
    }
}

async fn post(client: &reqwest::Client, d: &Delivery, secret: &str) -> (Result<(), String>, WebhookResult) {
    let sent = client
        .post(&d.channel)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("X-Gatehouse-Signature", signature(secret, d.body.as_bytes()))
        .header("X-Gatehouse-Notification", d.id.to_string())
        .header("X-Gatehouse-Attempt", (d.attempts + 1).to_string())
        .body(d.body.clone())
        .send()
        .await;
    let response = match sent {
        Ok(r) => r,
        Err(e) if e.is_timeout() => return (Err("request failed: timed out".into()), WebhookResult::Unreachable),
        Err(e) if is_tls_failure(&e) => {
            let why = format!(
                "TLS handshake failed: {}; the webhook's certificate must chain to the system's roots or to the channel's ca_file",
                without_url(&e)
            );
            return (Err(why), WebhookResult::Tls);
        }
        Err(e) => {
            return (
                Err(format!("request failed: {}", without_url(&e))),
                WebhookResult::Unreachable,
            );
        }
    };
    let status = response.status();
    if status.is_success() {
        (Ok(()), WebhookResult::Delivered)
    } else {
        (
            Err(format!("webhook answered HTTP {}", status.as_u16())),
            WebhookResult::Refused,
        )
    }
}

/// The error and its causes. reqwest errors carry the URL, which may hold a token: keep it
/// out of logs and the API.
fn without_url(e: &reqwest::Error) -> String {
    let mut msg = error_chain(e);
    if let Some(url) = e.url() {
        msg = msg.replace(url.as_str(), "<webhook>");
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_the_hex_hmac_sha256_of_the_body() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
