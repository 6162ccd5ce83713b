//! SMS through an HTTP gateway described by a template (`[notify.sms]`): the URL, headers and
//! body with `{to}`, `{text}` and `{env:NAME}` filled in, each escaped for where it goes.

use std::time::Duration;

use super::{ChannelSetupError, SendError, Sent};
use crate::notify::config::SmsConfig;
use crate::notify::message::Message;
use crate::notify::outbox::WebhookResult;

/// The SMS gateway of `[notify.sms]`.
#[derive(Debug)]
pub struct SmsGateway {}

impl SmsGateway {
    pub fn build(config: &SmsConfig, timeout: Duration) -> Result<SmsGateway, ChannelSetupError> {
        let _ = (config, timeout);
        Ok(SmsGateway {})
    }

    pub async fn send(&self, to: &str, msg: &Message) -> Result<Sent, SendError> {
        let _ = (to, msg);
        Err(SendError::new(WebhookResult::Other, "SMS is not implemented yet"))
    }
}
