//! Device adapters: one folder per protocol, each turning what its devices say into
//! canonical [`pb::Event`]s and carrying commands down to them.
//!
//! Adding a protocol (a native fire-panel protocol, say) means one new folder here and one
//! line in [`crate::gateway::start`] that spawns it with an [`AdapterContext`] and registers
//! its devices' command channels with the [`CommandRouter`].

pub mod dc09;
pub mod fire;
pub mod modbus;
pub mod modbus_fire;
pub mod mqtt;

use std::{collections::HashMap, sync::Arc};

use gatehouse_proto as pb;
use tokio::sync::{mpsc, oneshot};

use crate::{health::Health, metrics::Metrics, outbox, registry::Registry};

/// Where adapters put translated events: the queue in front of the outbox writer.
#[derive(Clone)]
pub struct EventSink {
    tx: SinkTx,
}

#[derive(Clone)]
enum SinkTx {
    /// The outbox writer: [`EventSink::commit`] waits for the transaction.
    Writer(mpsc::Sender<outbox::Append>),
    /// A bare queue (tests, tools): nothing commits, so `commit` returns once queued.
    Queue(mpsc::Sender<pb::Event>),
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("the outbox writer has stopped; event {event_id} from {device_id} was not stored")]
pub struct SinkClosed {
    pub event_id: String,
    pub device_id: String,
}

impl SinkClosed {
    fn of(event: &pb::Event) -> Self {
        Self {
            event_id: event.event_id.clone(),
            device_id: event.device_id.clone(),
        }
    }
}

impl EventSink {
    /// A sink that only queues (for tests and tools that read the events themselves).
    pub fn new(tx: mpsc::Sender<pb::Event>) -> Self {
        Self { tx: SinkTx::Queue(tx) }
    }

    /// The sink in front of [`outbox::run_writer`].
    pub fn to_writer(tx: mpsc::Sender<outbox::Append>) -> Self {
        Self { tx: SinkTx::Writer(tx) }
    }

    /// Queues `event` for the outbox; waits while the queue is full (backpressure).
    pub async fn emit(&self, event: pb::Event) -> Result<(), SinkClosed> {
        match &self.tx {
            SinkTx::Writer(tx) => tx.send(event.into()).await.map_err(|e| SinkClosed::of(&e.0.event)),
            SinkTx::Queue(tx) => tx.send(event).await.map_err(|e| SinkClosed::of(&e.0)),
        }
    }

    /// Hands `event` to the outbox and returns once the transaction holding it has
    /// committed: whoever acknowledges the event to a device (a PUBACK) does so after this.
    /// Waits while the queue is full, and for as long as the outbox cannot write.
    pub async fn commit(&self, event: pb::Event) -> Result<(), SinkClosed> {
        self.enqueue(event).await?.wait().await
    }

    /// The first half of [`commit`](Self::commit): queues `event` (waiting while the queue
    /// is full) and returns what to wait on for its commit. Events enqueued one after the
    /// other are committed in that order, whenever their waits are polled.
    pub async fn enqueue(&self, event: pb::Event) -> Result<Commit, SinkClosed> {
        let closed = SinkClosed::of(&event);
        match &self.tx {
            SinkTx::Writer(tx) => {
                let (done, committed) = oneshot::channel();
                tx.send(outbox::Append {
                    event,
                    committed: Some(done),
                })
                .await
                .map_err(|_| closed.clone())?;
                Ok(Commit {
                    committed: Some(committed),
                    closed,
                })
            }
            SinkTx::Queue(tx) => {
                tx.send(event).await.map_err(|_| closed.clone())?;
                Ok(Commit {
                    committed: None,
                    closed,
                })
            }
        }
    }
}

/// An enqueued event's commit, to wait on.
pub struct Commit {
    committed: Option<oneshot::Receiver<()>>,
    closed: SinkClosed,
}

impl Commit {
    /// Returns once the event's transaction committed; an error when the writer stopped
    /// before it could.
    pub async fn wait(self) -> Result<(), SinkClosed> {
        match self.committed {
            Some(rx) => rx.await.map_err(|_| self.closed),
            None => Ok(()),
        }
    }
}

/// What every adapter is given.
#[derive(Clone)]
pub struct AdapterContext {
    pub registry: Registry,
    pub sink: EventSink,
    pub metrics: Arc<Metrics>,
    /// Where an adapter registers the health checks of its listeners and links.
    pub health: Health,
}

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
