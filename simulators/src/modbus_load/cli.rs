//! The `modbus-load` subcommand: its flags (beside the mode they drive) and the command —
//! run, print the report, write it as JSON, fail unless clean.

use std::{path::PathBuf, time::Duration};

use tokio_util::sync::CancellationToken;

use super::{ModbusLoadOptions, run};
use crate::{cli::parse_duration, harness::report::print_and_save};

// Flag help is the CLI's contract: the text below is what `gatehouse-sim modbus-load --help`
// prints.
#[derive(Debug, clap::Args)]
pub struct ModbusLoadArgs {
    /// Simulated Modbus servers (one listener and one gateway device each).
    #[arg(long, default_value_t = 500)]
    pub devices: usize,
    /// Points per device: half holding registers, a quarter input registers, the rest
    /// discrete inputs; every third register point an f32.
    #[arg(long, default_value_t = 30)]
    pub points: usize,
    /// The gateway's poll interval per device, in ms.
    #[arg(long, default_value_t = 1000)]
    pub poll_ms: u64,
    /// The gateway's Modbus request timeout, in ms.
    #[arg(long, default_value_t = 1000)]
    pub timeout_ms: u64,
    /// The measured steady-state window.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Wait after every device answered once, before the window opens.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Share of the points that change beyond their deadband each second (0–1).
    #[arg(long, default_value_t = 0.05)]
    pub change: f64,
    /// The gateway's full refresh interval (`[modbus] refresh_s`).
    #[arg(long, default_value_t = 60)]
    pub refresh_s: u64,
    /// Where the hub database and the gateway outbox go; default: a temporary directory.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The gatehouse-gateway binary; default: the one next to this executable.
    #[arg(long)]
    pub gateway_bin: Option<PathBuf>,
    /// The gatehouse-hub binary; default: the one next to this executable.
    #[arg(long)]
    pub hub_bin: Option<PathBuf>,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// Runs `gatehouse-sim modbus-load`: prints the report, writes it with `--json`, and fails
/// on a Modbus failure, a device offline or an event the hub did not acknowledge.
pub async fn command(args: ModbusLoadArgs, stop: CancellationToken) -> anyhow::Result<()> {
    let ModbusLoadArgs {
        devices,
        points,
        poll_ms,
        timeout_ms,
        duration,
        warmup,
        change,
        refresh_s,
        data_dir,
        gateway_bin,
        hub_bin,
        json,
    } = args;
    let report = run(
        ModbusLoadOptions {
            devices,
            points,
            poll: Duration::from_millis(poll_ms),
            timeout: Duration::from_millis(timeout_ms),
            duration,
            warmup,
            change,
            refresh_s,
            data_dir,
            gateway_bin,
            hub_bin,
        },
        stop,
    )
    .await?;
    print_and_save(&report.render(), &report, json.as_deref())?;
    if !report.clean() {
        anyhow::bail!(
            "{} Modbus failures, {} devices offline, {} of {} events acknowledged",
            report.failures,
            report.devices_offline,
            report.uplink_acked,
            report.outbox_appended
        );
    }
    Ok(())
}
