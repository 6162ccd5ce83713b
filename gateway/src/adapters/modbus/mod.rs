//! Modbus TCP adapter: polls plant devices (pumps, tanks, meters) by a configured point map
//! and reports their values by exception (docs/design.md, Modbus point maps).
//!
//! - [`config`]: `[modbus]` and a device's `[devices.modbus]` point map.
//! - [`decode`]: registers ⇄ engineering values (pure).
//! - [`plan`]: which read requests cover a device's points (pure).
//! - [`report`]: report-by-exception and online/offline decisions (pure).
//! - [`link`]: one connection with timeouts and reconnects (I/O).
//! - `shell.rs`: the per-device poller that does the I/O around them.

pub mod config;
pub mod decode;
pub mod link;
pub mod plan;
pub mod report;
pub(crate) mod shell;

use futures::{FutureExt, future::BoxFuture};
use tokio_util::sync::CancellationToken;

use self::config::{ModbusDeviceConfig, ModbusSection};
pub use self::shell::run_device;
use super::{Adapter, AdapterContext, AdapterError, AdapterKind, RunningAdapter};

/// The Modbus adapter: one poller per device, each with its command channel.
pub struct ModbusAdapter {
    pub section: ModbusSection,
    /// Device id and point map of each device.
    pub devices: Vec<(String, ModbusDeviceConfig)>,
}

impl Adapter for ModbusAdapter {
    fn start(
        self: Box<Self>,
        ctx: AdapterContext,
        shutdown: CancellationToken,
    ) -> BoxFuture<'static, Result<RunningAdapter, AdapterError>> {
        let section = self.section;
        let running = RunningAdapter::per_device(AdapterKind::Modbus, &ctx, self.devices, |device, cfg, rx| {
            run_device(ctx.clone(), device, cfg, section.clone(), rx, shutdown.clone())
        });
        async move { Ok(running) }.boxed()
    }
}
