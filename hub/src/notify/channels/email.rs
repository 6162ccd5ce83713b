//! E-mail over SMTP (lettre): STARTTLS or TLS on rustls (the system's roots plus a CA file),
//! a plain-text and an HTML part.

use std::time::Duration;

use super::{ChannelSetupError, SendError, Sent};
use crate::notify::config::EmailConfig;
use crate::notify::message::Message;
use crate::notify::outbox::WebhookResult;

/// The SMTP transport of `[notify.email]`.
#[derive(Debug)]
pub struct Mailer {}

impl Mailer {
    pub fn build(config: &EmailConfig, timeout: Duration) -> Result<Mailer, ChannelSetupError> {
        let _ = (config, timeout);
        Ok(Mailer {})
    }

    pub async fn send(&self, to: &str, msg: &Message) -> Result<Sent, SendError> {
        let _ = (to, msg);
        Err(SendError::new(WebhookResult::Other, "e-mail is not implemented yet"))
    }
}
