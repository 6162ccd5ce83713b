//! SIA DC-09 receiver: fire panels (and their IP diallers) report to the gateway as to a
//! monitoring centre, over TCP and UDP on one port, plain or AES-encrypted, in Ademco
//! Contact ID (`ADM-CID`) or SIA DCS (`SIA-DCS`).
//!
//! - [`crc`], [`crypto`], [`frame`]: the wire format — pure parse and build (the simulator
//!   builds its frames with [`frame`] too).
//! - [`cid`], [`sia`]: the event tables onto canonical fire events (pure).
//! - [`receiver`]: the decisions — answer, events, duplicates, supervision (pure, clock in).
//! - [`config`]: `[dc09]` and a panel's `[devices.dc09]`.
//! - [`conns`]: the TCP connection table; [`rate`]: frames per source address (pure).
//! - `shell.rs`: the I/O: sockets, the outbox commit before the ACK, the supervision tick.

pub mod cid;
pub mod config;
pub mod conns;
pub mod crc;
pub mod crypto;
pub mod frame;
pub mod rate;
pub mod receiver;
mod shell;
pub mod sia;

use futures::{FutureExt, future::BoxFuture};
use tokio_util::sync::CancellationToken;

use self::config::{Dc09DeviceConfig, Dc09Section};
pub use self::shell::Dc09Error;
use super::{Adapter, AdapterContext, AdapterError, AdapterKind, RunningAdapter};

/// The DC-09 adapter: one receiver (TCP and UDP on one port) for every panel.
pub struct Dc09Adapter {
    pub section: Dc09Section,
    /// Device id and `[devices.dc09]` of each panel.
    pub panels: Vec<(String, Dc09DeviceConfig)>,
}

impl Adapter for Dc09Adapter {
    fn start(
        self: Box<Self>,
        ctx: AdapterContext,
        shutdown: CancellationToken,
    ) -> BoxFuture<'static, Result<RunningAdapter, AdapterError>> {
        async move {
            let (addr, tx, tasks) = shell::start(ctx, &self.section, &self.panels, shutdown).await?;
            Ok(RunningAdapter {
                kind: AdapterKind::Dc09,
                listen_addr: Some(addr),
                commands: self.panels.into_iter().map(|(id, _)| (id, tx.clone())).collect(),
                tasks,
            })
        }
        .boxed()
    }
}
