//! `gatehouse-hub --config FILE`: runs the hub until Ctrl-C or SIGTERM, then stops gracefully.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use gatehouse_hub::HubConfig;
use tracing_subscriber::EnvFilter;

/// Gatehouse regional hub.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Path of the hub's TOML configuration.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .init();
    let args = Args::parse();
    let config =
        HubConfig::load(&args.config).with_context(|| format!("loading configuration {}", args.config.display()))?;
    let hub = gatehouse_hub::start(config).await.context("starting the hub")?;
    let stop = hub.shutdown_handle();
    tokio::spawn(async move {
        shutdown_signal().await;
        stop.shutdown();
    });
    hub.wait().await.context("hub stopped with an error")
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("Ctrl-C received"),
        _ = term => tracing::info!("SIGTERM received"),
    }
}
