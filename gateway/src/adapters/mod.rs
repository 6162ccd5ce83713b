//! Device adapters: one folder per protocol, each turning what its devices say into
//! canonical [`gatehouse_proto::Event`]s and carrying commands down to them.
//!
//! The seam every adapter shares:
//! - it is an [`Adapter`], started by `gateway.rs` from one list with an [`AdapterContext`];
//!   starting binds what it listens on and returns a [`RunningAdapter`]: its tasks, and the
//!   command channel of each of its devices;
//! - it receives commands as [`CommandRequest`]s on those channels, routed by device id
//!   ([`CommandRouter`]);
//! - it emits through [`EventSink`] (size bound included); an adapter that acknowledges
//!   to its device waits for the commit first ([`EventSink::commit`]).
//!
//! Every adapter folder has the same layout: `mod.rs` (its [`Adapter`]), `config.rs` (its
//! configuration section), `shell.rs` (the I/O: sockets, connections, polling), and its
//! pure parts beside them. Adding a protocol means one new folder here and one entry in
//! the list `gateway.rs` builds.

pub mod commands;
pub mod dc09;
pub mod fire;
pub mod log_limit;
pub mod modbus;
pub mod modbus_fire;
pub mod mqtt;
pub mod redact;
pub mod sink;

use std::{net::SocketAddr, sync::Arc};

use futures::{FutureExt, future::BoxFuture};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use self::{
    commands::{CommandRequest, CommandRouter, CommandTx, command_result},
    sink::{Commit, EventSink, Oversized, SinkClosed, check_event_size},
};
use crate::{
    health::Health,
    metrics::Metrics,
    registry::{DeviceInfo, Registry},
};

/// What every adapter is given.
#[derive(Clone)]
pub struct AdapterContext {
    pub registry: Registry,
    pub sink: EventSink,
    pub metrics: Arc<Metrics>,
    /// Where an adapter registers the health checks of its listeners and links.
    pub health: Health,
}

/// Which adapter a [`RunningAdapter`] is (the gateway reports the listeners' addresses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdapterKind {
    Mqtt,
    Dc09,
    Modbus,
    ModbusFire,
}

/// A device protocol, configured and ready to start.
pub trait Adapter: Send {
    /// Binds what the adapter listens on (an error here stops the gateway's start) and
    /// returns its tasks, which run until `shutdown`, and its devices' command channels.
    fn start(
        self: Box<Self>,
        ctx: AdapterContext,
        shutdown: CancellationToken,
    ) -> BoxFuture<'static, Result<RunningAdapter, AdapterError>>;
}

/// A started adapter.
pub struct RunningAdapter {
    pub kind: AdapterKind,
    /// The bound address of its listener, if it listens.
    pub listen_addr: Option<SocketAddr>,
    /// Device id → the channel its commands go to.
    pub commands: Vec<(String, CommandTx)>,
    /// Its long-running tasks, for the gateway to spawn and await at shutdown.
    pub tasks: Vec<BoxFuture<'static, ()>>,
}

impl RunningAdapter {
    /// An adapter of pollers: one task and one command channel per configured device (the
    /// Modbus point poller, the Modbus fire-panel zone poller). A device the registry does
    /// not know is skipped; the configuration check already refuses one.
    pub fn per_device<C, Fut>(
        kind: AdapterKind,
        ctx: &AdapterContext,
        devices: Vec<(String, C)>,
        mut poll: impl FnMut(DeviceInfo, C, mpsc::Receiver<CommandRequest>) -> Fut,
    ) -> Self
    where
        Fut: Future<Output = ()> + Send + 'static,
    {
        let mut running = RunningAdapter {
            kind,
            listen_addr: None,
            commands: Vec::new(),
            tasks: Vec::new(),
        };
        for (id, cfg) in devices {
            let Some(device) = ctx.registry.get(&id).cloned() else {
                continue;
            };
            let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
            running.commands.push((id, tx));
            running.tasks.push(poll(device, cfg, rx).boxed());
        }
        running
    }
}

/// Commands that may wait for one polled device before the sender is held back.
const COMMAND_QUEUE: usize = 16;

/// An adapter that could not start.
#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    #[error("starting MQTT: {0}")]
    Mqtt(#[from] mqtt::MqttError),
    #[error("starting DC-09: {0}")]
    Dc09(#[from] dc09::Dc09Error),
}
