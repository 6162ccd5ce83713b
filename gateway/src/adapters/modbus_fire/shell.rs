//! The I/O shell of a Modbus fire panel: one task per panel that polls its zone words,
//! turns each change of a zone's bits into fire events (through [`super::zones`]) and
//! writes `reset` and `silence` to the command registers between polls.
//!
//! Reuses the Modbus adapter's pieces: [`plan`] merges the zone words into as few reads as
//! the protocol allows, [`decode`] reads them, [`Link`] owns the connection and its
//! timeouts, [`Health`] decides online/offline and the backoff.

use std::{sync::atomic::Ordering::Relaxed, time::Duration};

use gatehouse_proto as pb;
use tokio::{
    sync::mpsc,
    time::{self, MissedTickBehavior},
};
use tokio_modbus::{Request, Response};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{
    config::ModbusFireConfig,
    zones::{self, ZoneState},
};
use crate::adapters::{
    AdapterContext, CommandRequest, SinkClosed, command_result,
    modbus::{
        config::{ModbusSection, Order, PointConfig, Table, ValueType},
        decode::decode,
        link::Link,
        plan::{DEFAULT_MAX_GAP, ReadRequest, plan},
        report::{Health, StatusChange},
        shell::Emitter,
    },
};
use crate::{metrics::ModbusFailure, registry::DeviceInfo};

/// The zone words as points, for [`plan`] and [`decode`]: point `i` is zone
/// `first_zone + i` at `first_register + i`.
pub fn zone_points(cfg: &ModbusFireConfig) -> Vec<PointConfig> {
    (0..cfg.zones)
        .map(|i| PointConfig {
            name: (u32::from(cfg.first_zone) + u32::from(i)).to_string(),
            table: cfg.table,
            address: cfg.first_register.saturating_add(i),
            value_type: ValueType::U16,
            word_order: Order::Big,
            byte_order: Order::Big,
            bit: None,
            scale: 1.0,
            offset: 0.0,
            unit: String::new(),
            deadband: 0.0,
            writable: false,
        })
        .collect()
}

struct Panel {
    out: Emitter,
    cfg: ModbusFireConfig,
    points: Vec<PointConfig>,
    plan: Vec<ReadRequest>,
    states: Vec<Option<ZoneState>>,
    link: Link,
    health: Health,
    counted_offline: bool,
}

/// Polls one Modbus fire panel until `shutdown` or the event sink closes.
pub async fn run_device(
    ctx: AdapterContext,
    device: DeviceInfo,
    cfg: ModbusFireConfig,
    section: ModbusSection,
    mut commands: mpsc::Receiver<CommandRequest>,
    shutdown: CancellationToken,
) {
    let points = zone_points(&cfg);
    let poll = Duration::from_millis(cfg.poll_ms.max(1));
    let backoff_max = Duration::from_millis(section.backoff_max_ms.max(cfg.poll_ms).max(1));
    let mut panel = Panel {
        link: Link::new(
            &device.id,
            &cfg.address,
            cfg.unit,
            Duration::from_millis(cfg.timeout_ms.max(1)),
            ctx.metrics.clone(),
        ),
        plan: plan(&points, DEFAULT_MAX_GAP),
        states: vec![None; points.len()],
        points,
        health: Health::new(section.offline_after_failures),
        counted_offline: false,
        out: Emitter { ctx, device },
        cfg,
    };
    info!(device = %panel.out.device.id, address = %panel.cfg.address, zones = panel.cfg.zones, "modbus fire panel polling starts");
    let mut interval = time::interval(poll);
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut commands_open = true;
    loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            request = commands.recv(), if commands_open => {
                let Some(CommandRequest { command, reply }) = request else {
                    commands_open = false;
                    continue;
                };
                let result = panel.command(&command).await;
                let ok = result.ok;
                let _ = reply.send(result);
                if ok {
                    interval.reset_immediately();
                }
            }
            _ = interval.tick() => {
                if panel.poll_once().await.is_err() {
                    break;
                }
                if let Some(delay) = panel.health.backoff(poll, backoff_max, |r| fastrand::u64(0..=r)) {
                    interval.reset_after(delay);
                }
            }
        }
    }
    if panel.counted_offline {
        panel.out.ctx.metrics.modbus_devices_offline.fetch_sub(1, Relaxed);
    }
    info!(device = %panel.out.device.id, "modbus fire panel polling stopped");
}

impl Panel {
    async fn poll_once(&mut self) -> Result<(), SinkClosed> {
        match self.read_zones().await {
            Ok(words) => {
                if self.health.success() == Some(StatusChange::Online) {
                    if self.counted_offline {
                        self.out.ctx.metrics.modbus_devices_offline.fetch_sub(1, Relaxed);
                        self.counted_offline = false;
                    }
                    info!(device = %self.out.device.id, "modbus fire panel online");
                    self.out.status(true, String::new()).await?;
                }
                for (index, word) in words {
                    let (Some(point), Some(slot)) = (self.points.get(index), self.states.get_mut(index)) else {
                        continue;
                    };
                    let new = zones::decode(word, &self.cfg.bits);
                    let signals = zones::changes(&point.name, *slot, new, word);
                    *slot = Some(new);
                    for s in signals {
                        self.out.ctx.metrics.fire_zone_changes.fetch_add(1, Relaxed);
                        info!(device = %self.out.device.id, zone = %s.zone, kind = s.kind.map_or("", |k| k.as_str()), "modbus fire zone change");
                        self.out.emit(s.body()).await?;
                    }
                }
                Ok(())
            }
            Err(reason) => {
                if self.health.failure() == Some(StatusChange::Offline) {
                    if !self.counted_offline {
                        self.out.ctx.metrics.modbus_devices_offline.fetch_add(1, Relaxed);
                        self.counted_offline = true;
                    }
                    warn!(device = %self.out.device.id, %reason, "modbus fire panel offline; backing off");
                    self.out.status(false, reason).await?;
                }
                Ok(())
            }
        }
    }

    /// Every zone word, as (zone index, word). Any failed read fails the poll: a zone map
    /// read in part would report stale zones as current.
    async fn read_zones(&mut self) -> Result<Vec<(usize, u16)>, String> {
        let mut out = Vec::with_capacity(self.points.len());
        for r in 0..self.plan.len() {
            let (start, count) = (self.plan[r].start, self.plan[r].count);
            let request = match self.cfg.table {
                Table::Holding => Request::ReadHoldingRegisters(start, count),
                _ => Request::ReadInputRegisters(start, count),
            };
            let words = match self.link.call(request).await? {
                Ok(Response::ReadHoldingRegisters(w) | Response::ReadInputRegisters(w)) => w,
                Ok(other) => {
                    self.link.drop_connection();
                    self.out.ctx.metrics.modbus_failure(ModbusFailure::Transport);
                    return Err(format!("zone registers {start}+{count}: unexpected reply {other:?}"));
                }
                Err(exception) => {
                    self.out.ctx.metrics.modbus_failure(ModbusFailure::Exception);
                    return Err(format!("zone registers {start}+{count}: device exception {exception}"));
                }
            };
            let request = &self.plan[r];
            for &index in &request.points {
                let Some(point) = self.points.get(index) else { continue };
                let offset = request.offset_of(point.address);
                let value = decode(words.get(offset..).unwrap_or(&[]), point).map_err(|e| e.to_string())?;
                out.push((index, value as u16));
            }
        }
        Ok(out)
    }

    async fn command(&mut self, command: &pb::Command) -> pb::CommandResult {
        let device = self.out.device.id.clone();
        let target = match command.action.as_str() {
            "reset" => self.cfg.reset_register.map(|r| (r, self.cfg.reset_value)),
            "silence" => self.cfg.silence_register.map(|r| (r, self.cfg.silence_value)),
            other => {
                return command_result(
                    command,
                    false,
                    format!("unsupported action {other:?} for fire panel {device:?} (reset, silence)"),
                );
            }
        };
        let Some((register, value)) = target else {
            return command_result(
                command,
                false,
                format!("fire panel {device:?}: its map has no {} register", command.action),
            );
        };
        if command.deadline_ms > 0 && pb::now_ms() > command.deadline_ms {
            return command_result(command, false, "deadline passed before the command was sent");
        }
        match self.link.call(Request::WriteSingleRegister(register, value)).await {
            Ok(Ok(_)) => {
                info!(device = %device, action = %command.action, register, value, "fire panel command written");
                command_result(
                    command,
                    true,
                    format!("{} written to register {register}", command.action),
                )
            }
            Ok(Err(exception)) => {
                self.out.ctx.metrics.modbus_failure(ModbusFailure::Exception);
                command_result(
                    command,
                    false,
                    format!(
                        "fire panel {device:?} refused {} (register {register}): {exception}",
                        command.action
                    ),
                )
            }
            Err(reason) => command_result(
                command,
                false,
                format!(
                    "fire panel {device:?}: {} (register {register}): {reason}",
                    command.action
                ),
            ),
        }
    }
}
