//! The channels a notification is sent on, other than the log and generic webhooks: chat
//! robots ([`robots`]), e-mail ([`email`]) and SMS ([`sms`]). [`Channels`] is built once at
//! start from `[notify]` (secrets resolved, CA files read: a wrong one stops the start) and
//! sends one rendered [`Message`] to one [`Address`].

pub mod email;
pub mod robots;
pub mod sms;

use std::collections::HashMap;

use super::address::Address;
use super::config::NotifyConfig;
use super::message::Message;
use super::outbox::WebhookResult;

/// How a send went when it went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// The receiver confirmed it (a robot's answer with no error code): `delivered`.
    Delivered,
    /// Accepted for sending by a relay (SMTP, an SMS gateway): `sent`.
    Accepted,
}

/// Why a send failed: a reason for the row and the timeline (never a secret or a token-bearing
/// URL), and the attempt's counted result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendError {
    pub reason: String,
    pub result: WebhookResult,
}

impl SendError {
    pub fn new(result: WebhookResult, reason: impl Into<String>) -> Self {
        SendError {
            reason: reason.into(),
            result,
        }
    }
}

/// Why a channel could not be set up at start.
#[derive(Debug, thiserror::Error)]
pub enum ChannelSetupError {
    #[error("{key}: {detail}")]
    Invalid { key: String, detail: String },
    #[error(transparent)]
    Tls(#[from] super::tls::TlsSetupError),
}

/// Robots, the mailer and the SMS gateway, built at start.
#[derive(Debug, Default)]
pub struct Channels {
    robots: HashMap<String, robots::Robot>,
    email: Option<email::Mailer>,
    sms: Option<sms::SmsGateway>,
}

impl Channels {
    /// Builds every configured channel: secrets resolved from the file or the environment,
    /// CA files read, an HTTP client per trust set (`timeout` per request).
    pub fn build(config: &NotifyConfig, timeout: std::time::Duration) -> Result<Channels, ChannelSetupError> {
        let mut robots = HashMap::new();
        for (i, r) in config.robots.iter().enumerate() {
            robots.insert(
                r.name.clone(),
                robots::Robot::build(i, r, config.ca_file.as_deref(), timeout)?,
            );
        }
        let email = config
            .email
            .as_ref()
            .map(|e| email::Mailer::build(e, config.ca_file.as_deref(), timeout))
            .transpose()?;
        let sms = config
            .sms
            .as_ref()
            .map(|s| sms::SmsGateway::build(s, config.ca_file.as_deref(), timeout))
            .transpose()?;
        Ok(Channels { robots, email, sms })
    }

    /// Sends `msg` to a robot, an e-mail address or a phone number (`log` and generic
    /// webhooks are the deliverer's own).
    pub async fn send(&self, to: &Address, msg: &Message) -> Result<Sent, SendError> {
        match to {
            Address::Robot(name) => match self.robots.get(name) {
                Some(r) => r.send(msg).await,
                None => Err(SendError::new(
                    WebhookResult::Other,
                    format!("no robot {name:?} in [[notify.robots]]"),
                )),
            },
            Address::Email(addr) => match &self.email {
                Some(m) => m.send(addr, msg).await,
                None => Err(SendError::new(WebhookResult::Other, "[notify.email] is not configured")),
            },
            Address::Sms(number) => match &self.sms {
                Some(s) => s.send(number, msg).await,
                None => Err(SendError::new(WebhookResult::Other, "[notify.sms] is not configured")),
            },
            Address::Log | Address::Webhook(_) => Err(SendError::new(
                WebhookResult::Other,
                "log and webhook channels are sent by the deliverer",
            )),
        }
    }

    /// The platform of a `robot:<name>` channel (`dingtalk`, …), for the API and the board.
    pub fn robot_kind(&self, name: &str) -> Option<&'static str> {
        self.robots.get(name).map(|r| r.kind().as_str())
    }
}
