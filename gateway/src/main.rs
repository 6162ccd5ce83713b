//! `gatehouse-gateway --config FILE`: runs one site gateway until Ctrl-C or SIGTERM.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

#[derive(Parser)]
#[command(name = "gatehouse-gateway", version, about = "Gatehouse site gateway")]
struct Args {
    /// The gateway's TOML configuration file.
    #[arg(long, short)]
    config: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,rumqttd=warn".into()),
        )
        .init();
    let args = Args::parse();
    let config = gatehouse_gateway::config::Config::load(&args.config)
        .with_context(|| format!("loading configuration {}", args.config.display()))?;
    let mut gateway = gatehouse_gateway::start(config).await.context("starting the gateway")?;
    tokio::select! {
        _ = gateway.wait() => anyhow::bail!("a gateway task stopped unexpectedly"),
        _ = shutdown_signal() => {}
    }
    tracing::info!("shutting down");
    gateway.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
