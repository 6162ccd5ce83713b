//! `gatehouse-gateway --config FILE`: runs one site gateway until Ctrl-C or SIGTERM.
//! `gatehouse-gateway hash-password`: reads a device's MQTT password from stdin and prints
//! its argon2id PHC string for `[[devices]] mqtt_password_hash`.

use std::{io::Read, path::PathBuf};

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "gatehouse-gateway",
    version,
    about = "Gatehouse site gateway",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Args {
    /// The gateway's TOML configuration file.
    #[arg(long, short, required = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Reads a password from stdin (one line; the trailing newline is not part of it) and
    /// prints its argon2id PHC string for `[[devices]] mqtt_password_hash`.
    HashPassword,
}

fn hash_password() -> anyhow::Result<()> {
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .context("reading the password from stdin")?;
    let password = input.strip_suffix('\n').unwrap_or(&input);
    let password = password.strip_suffix('\r').unwrap_or(password);
    let phc = gatehouse_gateway::adapters::mqtt::auth::hash_password(password.as_bytes())?;
    println!("{phc}");
    Ok(())
}

/// Two workers whatever the core count: a gateway's work is I/O and a few thousand events a
/// second (SQLite and the broker have threads of their own), and on a bigger machine every
/// further worker would add a thread stack and a malloc arena to the resident memory (the
/// ≤ 30 MB target with 200 devices, docs/PERFORMANCE.md).
#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    // Logs by RUST_LOG; OpenTelemetry export only when OTEL_EXPORTER_OTLP_ENDPOINT is set.
    let args = Args::parse();
    let (Some(path), None) = (args.config, args.command) else {
        return hash_password();
    };
    let telemetry = gatehouse_gateway::telemetry::init("gatehouse-gateway", "info");
    raise_descriptor_limit();
    let config = gatehouse_gateway::config::Config::load(&path)
        .with_context(|| format!("loading configuration {}", path.display()))?;
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

/// Raises the soft `RLIMIT_NOFILE` to the hard limit: with the usual soft limit of 1,024, a
/// thousand idle connections would leave no descriptor for the outbox or the hub stream; the
/// listeners' caps, which keep room per source, should decide instead.
#[cfg(unix)]
#[allow(clippy::unnecessary_cast)] // rlim_t is u64 on Linux but not on every unix.
fn raise_descriptor_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` through a valid pointer to a local.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "cannot read the descriptor limit (RLIMIT_NOFILE)");
        return;
    }
    let before = lim.rlim_cur as u64;
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: setrlimit reads one `rlimit` through a valid pointer to a local.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            tracing::warn!(error = %std::io::Error::last_os_error(), before, "cannot raise the descriptor limit (RLIMIT_NOFILE)");
            return;
        }
    }
    tracing::info!(
        before,
        after = lim.rlim_cur as u64,
        "descriptor limit (RLIMIT_NOFILE) raised to the hard limit"
    );
}

#[cfg(not(unix))]
fn raise_descriptor_limit() {}

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
