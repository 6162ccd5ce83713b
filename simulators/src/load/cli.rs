//! The `load` subcommand: its flags (beside the mode they drive) and the command — run,
//! print the report, write it as JSON, fail unless nothing was lost.

use std::{path::PathBuf, time::Duration};

use tokio_util::sync::CancellationToken;

use super::{LoadOptions, Via, run};
use crate::{cli::parse_duration, harness::report::print_and_save};

// Flag help is the CLI's contract: the text below is what `gatehouse-sim load --help` prints
// (hence `<data-dir>` as written, not as HTML).
#[allow(rustdoc::invalid_html_tags)]
#[derive(Debug, clap::Args)]
pub struct LoadArgs {
    /// What carries the events: mqtt (devices → gateways → hub) or grpc (synthetic
    /// gateway streams → hub alone).
    #[arg(long, value_enum, default_value = "mqtt")]
    pub via: Via,
    /// Estates: one gateway process (mqtt) or one gateway stream (grpc) each.
    #[arg(long, default_value_t = 3)]
    pub estates: usize,
    /// Simulated devices per estate (intercoms and door controllers, alternately).
    #[arg(long, default_value_t = 20)]
    pub devices_per_estate: usize,
    /// Events per second in total, spread over every device.
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// How long to publish (e.g. 20s, 2m).
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Where the hub database and gateway outboxes go (must not hold an earlier run);
    /// default: a fresh temporary directory, removed after a clean run.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The gatehouse-gateway binary; default: the one next to this executable.
    #[arg(long)]
    pub gateway_bin: Option<PathBuf>,
    /// After publishing, stop waiting for the hub once nothing new was stored for this long.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub drain_stall: Duration,
    /// The gateways' outbox bound (`outbox.max_events`); default: the gateway's own.
    #[arg(long)]
    pub outbox_max_events: Option<u64>,
    /// Load an already running hub at this gRPC URL (e.g. http://10.0.0.5:50051) instead
    /// of starting one; its configuration must list the estates load-0 … load-(N-1)
    /// (a run without --hub writes such a file as <data-dir>/hub.toml).
    #[arg(long)]
    pub hub: Option<String>,
    /// That hub's HTTP base URL (e.g. http://10.0.0.5:8080): alarm visibility and /metrics.
    #[arg(long, requires = "hub")]
    pub hub_api: Option<String>,
    /// That hub's SQLite database, read-only: the loss and duplicate check (without
    /// it, --via grpc checks by the hub's acks; --via mqtt needs it).
    #[arg(long, requires = "hub")]
    pub hub_db: Option<PathBuf>,
    /// The gatehouse-hub binary; default: the one next to this executable.
    #[arg(long)]
    pub hub_bin: Option<PathBuf>,
    /// One event in this many is a forced door (a new P2 alarm), timed until the hub's
    /// live stream shows the alarm; 0: none.
    #[arg(long, default_value_t = 1000)]
    pub alarm_every: u64,
    /// --via grpc: each stream sends what fell due this often (a real gateway: 5 ms linger).
    #[arg(long, default_value = "50ms", value_parser = parse_duration)]
    pub grpc_batch: Duration,
}

/// Runs `gatehouse-sim load`: prints the report, writes it with `--json`, and fails when an
/// event was lost or duplicated or an alarm never shown.
pub async fn command(args: LoadArgs, stop: CancellationToken) -> anyhow::Result<()> {
    let LoadArgs {
        estates,
        devices_per_estate,
        rate,
        duration,
        json,
        data_dir,
        gateway_bin,
        drain_stall,
        outbox_max_events,
        via,
        hub,
        hub_api,
        hub_db,
        hub_bin,
        alarm_every,
        grpc_batch,
    } = args;
    let options = LoadOptions {
        via,
        hub,
        hub_api,
        hub_db,
        hub_bin,
        alarm_every,
        grpc_batch,
        estates,
        devices_per_estate,
        rate,
        duration,
        data_dir,
        gateway_bin,
        drain_stall,
        outbox_max_events,
    };
    let report = run(options, stop).await?;
    print_and_save(&report.render(), &report, json.as_deref())?;
    if !report.clean() {
        anyhow::bail!(
            "{} events lost, {} duplicated, {} alarms never shown",
            report.lost,
            report.duplicated,
            report.alarms_missing
        );
    }
    Ok(())
}
