//! `gatehouse-sim load`: a load run that prints figures (it is not a test).
//!
//! Two modes, one file each, sharing this module's options, report and loss check:
//! `mqtt` — each estate's gateway runs as a child process of the `gatehouse-gateway`
//! binary (so its resident memory can be read on its own); simulated intercoms and door
//! controllers publish over real MQTT at a fixed total rate; `grpc` — synthetic gateway
//! streams load the hub alone. Every event carries `<device>/<n>` (intercom `call_id`, door
//! `credential`) and its publish time as `ts`, so the hub's database alone tells what was
//! lost, duplicated, and how long each event took from publish to the hub's commit.
//!
//! Children are killed when the run ends, fails or is interrupted (Ctrl-C, SIGTERM): every
//! child lives in a value of the harness whose `Drop` kills and reaps it.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{anyhow, bail};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::{
    harness::{
        binaries::locate_gateway_binary, data_dir::prepare_data_dir, hub::HubUnderTest, signals::spawn_sigterm_listener,
    },
    scenario::EstateSpec,
};

mod analysis;
pub mod cli;
mod grpc;
mod mqtt;
mod report;

pub use report::{GatewayFigures, LoadReport};

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub estates: usize,
    pub devices_per_estate: usize,
    /// Events per second in total, spread over every device.
    pub rate: f64,
    pub duration: Duration,
    /// Where the hub database and gateway outboxes go; a fresh temporary directory if `None`.
    pub data_dir: Option<PathBuf>,
    /// The `gatehouse-gateway` binary; by default the one next to this executable.
    pub gateway_bin: Option<PathBuf>,
    /// After publishing stops, give up waiting for the hub once nothing new was stored for
    /// this long.
    pub drain_stall: Duration,
    /// The gateways' `outbox.max_events`; the gateway's default if `None`.
    pub outbox_max_events: Option<u64>,
    /// What carries the load: MQTT devices through gateway processes, or synthetic gateway
    /// streams straight to the hub.
    pub via: Via,
    /// An already running hub's gRPC URL; `None`: start `gatehouse-hub` as a child.
    pub hub: Option<String>,
    /// That hub's HTTP base URL (alarm visibility over `/api/v1/stream`, `/metrics`).
    pub hub_api: Option<String>,
    /// That hub's SQLite database (read-only), for the loss and duplicate check.
    pub hub_db: Option<PathBuf>,
    /// The `gatehouse-hub` binary; by default the one next to this executable.
    pub hub_bin: Option<PathBuf>,
    /// One event in this many is a forced door (a new P2 alarm), timed until the hub's
    /// live stream shows it; 0: none.
    pub alarm_every: u64,
    /// `--via grpc`: how often each synthetic gateway sends what fell due.
    pub grpc_batch: Duration,
}

/// What carries a load run's events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    /// Simulated devices → gateway processes (embedded broker, outbox, uplink) → hub.
    Mqtt,
    /// Synthetic gateway streams (`GatewayLink.Connect`) → hub: the hub alone.
    Grpc,
}

impl LoadOptions {
    fn validate(&self) -> anyhow::Result<()> {
        if self.estates == 0 || self.devices_per_estate == 0 {
            bail!("--estates and --devices-per-estate must be at least 1");
        }
        if !(self.rate.is_finite() && self.rate > 0.0) {
            bail!("--rate must be a positive number of events per second");
        }
        if self.duration.is_zero() {
            bail!("--duration must be longer than zero");
        }
        if self.via == Via::Mqtt && self.hub.is_some() && self.hub_db.is_none() {
            bail!("--via mqtt against a running --hub needs --hub-db (the loss check reads the stored events)");
        }
        if self.hub.is_none() && (self.hub_api.is_some() || self.hub_db.is_some()) {
            bail!("--hub-api and --hub-db go with --hub");
        }
        Ok(())
    }
}

/// Runs the load and returns its figures. Stops early (killing the gateways) on `stop`,
/// Ctrl-C or SIGTERM.
pub async fn run(opts: LoadOptions, stop: CancellationToken) -> anyhow::Result<LoadReport> {
    opts.validate()?;
    let gateway_bin = match opts.via {
        Via::Mqtt => Some(locate_gateway_binary(opts.gateway_bin.as_deref())?),
        Via::Grpc => None,
    };
    let (data_dir, temporary) = prepare_data_dir(opts.data_dir.as_deref())?;
    let stop = stop.child_token();
    spawn_sigterm_listener(stop.clone());
    println!("load: data in {}", data_dir.display());
    let result = tokio::select! {
        r = async {
            match &gateway_bin {
                Some(bin) => mqtt::drive(&opts, bin, &data_dir).await,
                None => grpc::drive(&opts, &data_dir).await,
            }
        } => r,
        _ = stop.cancelled() => Err(anyhow!("interrupted; the gateways were stopped")),
    };
    // Everything (children included) is dropped by now.
    match &result {
        Ok(report) if temporary && report.clean() => {
            if let Err(e) = std::fs::remove_dir_all(&data_dir) {
                tracing::warn!(dir = %data_dir.display(), error = %e, "could not remove the temporary data directory");
            }
        }
        _ => println!("load: data kept in {}", data_dir.display()),
    }
    result
}

/// The hub of the run: the one at `--hub`, or a `gatehouse-hub` child configured with the
/// run's estates.
async fn start_hub(opts: &LoadOptions, data_dir: &Path, estates: &[EstateSpec]) -> anyhow::Result<HubUnderTest> {
    match &opts.hub {
        Some(url) => HubUnderTest::running(url, opts.hub_api.as_deref(), opts.hub_db.as_deref()).await,
        None => HubUnderTest::child(opts.hub_bin.as_deref(), data_dir, estates).await,
    }
}
