//! The `bench` subcommand: its flags (beside the phases they drive) and the command — run,
//! print the report, write it as JSON.

use std::{path::PathBuf, time::Duration};

use super::{BenchOptions, run};
use crate::{cli::parse_duration, harness::report::print_and_save};

// Flag help is the CLI's contract: the text below is what `gatehouse-sim bench --help` prints.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub what: Option<BenchWhat>,
    /// Synthetic gateway streams.
    #[arg(long, default_value_t = 1000)]
    pub streams: usize,
    /// Events per second offered in total (above what the hub can take, to find it).
    #[arg(long, default_value_t = 150000.0)]
    pub rate: f64,
    /// Length of each phase.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub duration: Duration,
    #[arg(long, default_value = "50ms", value_parser = parse_duration)]
    pub grpc_batch: Duration,
    /// Rows per transaction in the storage phase.
    #[arg(long, default_value_t = 5000)]
    pub rows_per_commit: usize,
    #[arg(long, default_value_t = 20)]
    pub mqtt_clients: usize,
    #[arg(long, default_value_t = 2000)]
    pub mqtt_messages: usize,
    /// The gatehouse-hub binary; default: the one next to this executable.
    #[arg(long)]
    pub hub_bin: Option<PathBuf>,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// A bench other than the default run.
#[derive(Debug, clap::Subcommand)]
pub enum BenchWhat {
    /// The hub's ingest rate and a device's last-24 h read with 0, 1, 5, 10 million events
    /// already stored (SQLite, or PostgreSQL with `--database`), beside an append-only
    /// table's rate, and one retention purge (a partition drop) timed.
    History(super::history::HistoryArgs),
}

/// Runs `gatehouse-sim bench`: prints the report and writes it with `--json`.
pub async fn command(args: BenchArgs) -> anyhow::Result<()> {
    let BenchArgs {
        what,
        streams,
        rate,
        duration,
        grpc_batch,
        rows_per_commit,
        mqtt_clients,
        mqtt_messages,
        hub_bin,
        json,
    } = args;
    if let Some(BenchWhat::History(args)) = what {
        return super::history::command(args).await;
    }
    let report = run(BenchOptions {
        streams,
        rate,
        duration,
        grpc_batch,
        rows_per_commit,
        mqtt_clients,
        mqtt_messages,
        hub_bin,
        data_dir: None,
    })
    .await?;
    print_and_save(&report.render(), &report, json.as_deref())
}
