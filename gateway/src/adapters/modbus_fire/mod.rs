//! Fire panels over Modbus: a panel (or its Modbus gateway module) exposes one status word
//! per zone; each change of a zone's bits becomes a canonical fire event, restores
//! included. `reset` and `silence` are commands where the map has command registers.
//!
//! - [`config`]: `[devices.modbus_fire]`, the zone map.
//! - [`zones`]: the pure zone logic (status word → conditions → events).
//! - `shell.rs`: the per-panel poller, on the Modbus adapter's pieces.

pub mod config;
mod shell;
pub mod zones;

use futures::{FutureExt, future::BoxFuture};
use tokio_util::sync::CancellationToken;

use self::config::ModbusFireConfig;
pub use self::shell::{run_device, zone_points};
use super::{Adapter, AdapterContext, AdapterError, AdapterKind, RunningAdapter, modbus::config::ModbusSection};

/// The Modbus fire-panel adapter: one poller per panel, each with its command channel.
pub struct ModbusFireAdapter {
    pub section: ModbusSection,
    /// Device id and zone map of each panel.
    pub panels: Vec<(String, ModbusFireConfig)>,
}

impl Adapter for ModbusFireAdapter {
    fn start(
        self: Box<Self>,
        ctx: AdapterContext,
        shutdown: CancellationToken,
    ) -> BoxFuture<'static, Result<RunningAdapter, AdapterError>> {
        let section = self.section;
        let running = RunningAdapter::per_device(AdapterKind::ModbusFire, &ctx, self.panels, |device, cfg, rx| {
            run_device(ctx.clone(), device, cfg, section.clone(), rx, shutdown.clone())
        });
        async move { Ok(running) }.boxed()
    }
}
