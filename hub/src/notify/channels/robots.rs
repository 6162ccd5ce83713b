//! Chat-group robots: WeCom, DingTalk, Feishu/Lark, Slack, Teams — each platform's message
//! format and signing scheme, and reading its answer (a platform that says HTTP 200 with an
//! error code refused the message).

use std::time::Duration;

use super::{ChannelSetupError, SendError, Sent};
use crate::notify::config::{RobotConfig, RobotKind};
use crate::notify::message::Message;
use crate::notify::outbox::WebhookResult;

/// One configured robot.
#[derive(Debug)]
pub struct Robot {
    kind: RobotKind,
}

impl Robot {
    /// `index` is its place in `[[notify.robots]]`, for error messages.
    pub fn build(index: usize, config: &RobotConfig, timeout: Duration) -> Result<Robot, ChannelSetupError> {
        let _ = (index, timeout);
        Ok(Robot { kind: config.kind })
    }

    pub fn kind(&self) -> RobotKind {
        self.kind
    }

    pub async fn send(&self, msg: &Message) -> Result<Sent, SendError> {
        let _ = msg;
        Err(SendError::new(WebhookResult::Other, "robots are not implemented yet"))
    }
}
