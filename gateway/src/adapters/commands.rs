//! Commands on their way to devices: one route per device id to the command channel of the
//! adapter that serves it. Every adapter receives its commands the same way: a
//! [`CommandRequest`] on the channel it returned when it started.

use std::collections::HashMap;

use gatehouse_proto as pb;
use tokio::sync::{mpsc, oneshot};

/// A command for one device, and where its result goes.
pub struct CommandRequest {
    pub command: pb::Command,
    pub reply: oneshot::Sender<pb::CommandResult>,
}

pub type CommandTx = mpsc::Sender<CommandRequest>;

/// Builds the result of a command that did not run or finished.
pub fn command_result(command: &pb::Command, ok: bool, message: impl Into<String>) -> pb::CommandResult {
    pb::CommandResult {
        command_id: command.command_id.clone(),
        device_id: command.device_id.clone(),
        ok,
        message: message.into(),
    }
}

/// Routes a command to the adapter that serves its device.
#[derive(Clone, Default)]
pub struct CommandRouter {
    routes: HashMap<String, CommandTx>,
}

impl CommandRouter {
    pub fn insert(&mut self, device_id: impl Into<String>, tx: CommandTx) {
        self.routes.insert(device_id.into(), tx);
    }

    /// Runs `command` and returns its result; an unknown device, a stopped adapter or a
    /// passed deadline is a failed result, never a panic.
    pub async fn dispatch(&self, command: pb::Command) -> pb::CommandResult {
        if command.deadline_ms > 0 && pb::now_ms() > command.deadline_ms {
            return command_result(
                &command,
                false,
                "deadline passed before the command reached the gateway",
            );
        }
        let Some(tx) = self.routes.get(&command.device_id) else {
            return command_result(&command, false, format!("unknown device {:?}", command.device_id));
        };
        let (reply, rx) = oneshot::channel();
        let fallback = command_result(&command, false, "device adapter stopped");
        if tx.send(CommandRequest { command, reply }).await.is_err() {
            return fallback;
        }
        rx.await.unwrap_or(fallback)
    }
}
