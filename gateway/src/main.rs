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
    // Logs by RUST_LOG; OpenTelemetry export only when OTEL_EXPORTER_OTLP_ENDPOINT is set.
    let telemetry = gatehouse_gateway::telemetry::init("gatehouse-gateway", "info,rumqttd=warn");
    let args = Args::parse();
    let config = gatehouse_gateway::config::Config::load(&args.config)
        .with_context(|| format!("loading configuration {}", args.config.display()))?;
    let mut gateway = gatehouse_gateway::start(config).await.context("starting the gateway")?;
    gatehouse_gateway::telemetry::register(&gateway.metrics);
    tokio::select! {
        _ = gateway.wait() => anyhow::bail!("a gateway task stopped unexpectedly"),
        _ = shutdown_signal() => {}
    }
    tracing::info!("shutting down");
    gateway.shutdown().await;
    // Flushing the exporters blocks until the last spans are sent.
    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
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
