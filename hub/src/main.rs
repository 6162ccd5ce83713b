//! `gatehouse-hub --config FILE`: runs the hub until Ctrl-C or SIGTERM, then stops gracefully.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use gatehouse_hub::HubConfig;

/// Gatehouse regional hub.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Path of the hub's TOML configuration.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// The rota as CSV (`date,estate,post,shift,guard`), through a running hub's API.
    Rota {
        #[command(subcommand)]
        action: RotaCommand,
    },
    /// The audit log.
    Audit {
        #[command(subcommand)]
        action: AuditCommand,
    },
}

#[derive(Debug, clap::Subcommand)]
enum AuditCommand {
    /// Walks the audit log's hash chain, reading the database directly and read-only:
    /// exit 0 with "N rows, chain intact", or non-zero naming the first bad row (edited,
    /// deleted or reordered).
    Verify {
        /// The hub's database, as `hub.database` names it (sqlite://PATH).
        #[arg(long, value_name = "URL")]
        database: String,
    },
}

#[derive(Debug, clap::Subcommand)]
enum RotaCommand {
    /// Imports a rota: the slots named in the file get exactly the guards it lists.
    Import {
        file: PathBuf,
        /// The hub's HTTP address.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        hub: String,
    },
    /// Exports the assignments (default: the past day and the coming week) to stdout.
    Export {
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        hub: String,
        #[arg(long)]
        estate: Option<String>,
        /// RFC 3339 start of the range.
        #[arg(long)]
        from: Option<String>,
        /// RFC 3339 end of the range.
        #[arg(long)]
        to: Option<String>,
    },
}

/// `gatehouse-hub rota import|export`: goes through the running hub's API, so the hub's
/// single writer stays the only one writing its database.
async fn rota_command(action: RotaCommand) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let response = match action {
        RotaCommand::Import { file, hub } => {
            let csv = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            client
                .post(format!("{}/api/v1/rota/import", hub.trim_end_matches('/')))
                .header("content-type", "text/csv")
                .body(csv)
                .send()
                .await
                .with_context(|| format!("posting the rota to {hub}"))?
        }
        RotaCommand::Export { hub, estate, from, to } => {
            let query: Vec<(&str, String)> = [("estate", estate), ("from", from), ("to", to)]
                .into_iter()
                .filter_map(|(k, v)| v.map(|v| (k, v)))
                .collect();
            client
                .get(format!("{}/api/v1/rota/export", hub.trim_end_matches('/')))
                .query(&query)
                .send()
                .await
                .with_context(|| format!("reading the rota from {hub}"))?
        }
    };
    let status = response.status();
    let body = response.text().await.context("reading the hub's answer")?;
    if !status.is_success() {
        anyhow::bail!("the hub answered {status}: {body}");
    }
    print!("{body}");
    if !body.ends_with('\n') {
        println!();
    }
    Ok(())
}

/// `gatehouse-hub audit verify --database URL`.
async fn audit_command(action: AuditCommand) -> anyhow::Result<()> {
    let AuditCommand::Verify { database } = action;
    let url = gatehouse_hub::HubConfig::parse_database_url(&database)?;
    let pool = gatehouse_hub::store::open_read_only(&url)
        .await
        .with_context(|| format!("opening {database} read-only"))?;
    let verdict = gatehouse_hub::audit::apply::verify(&pool)
        .await
        .context("reading the audit log")?;
    if verdict.intact {
        println!("{verdict}");
        Ok(())
    } else {
        anyhow::bail!("{verdict}")
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Logs by RUST_LOG; OpenTelemetry export only when OTEL_EXPORTER_OTLP_ENDPOINT is set.
    let telemetry = gatehouse_hub::telemetry::init("gatehouse-hub", "info");
    let args = Args::parse();
    match args.command {
        Some(Command::Rota { action }) => return rota_command(action).await,
        Some(Command::Audit { action }) => return audit_command(action).await,
        None => {}
    }
    // The connection caps, not the descriptor table, must decide who is refused.
    match gatehouse_hub::net::rlimit::raise_nofile() {
        Ok((before, after)) => tracing::info!(
            before,
            after,
            "descriptor limit (RLIMIT_NOFILE) raised to the hard limit"
        ),
        Err(e) => tracing::warn!(error = %e, "cannot raise the descriptor limit (RLIMIT_NOFILE)"),
    }
    let path = args.config.context("--config FILE is required")?;
    let config = HubConfig::load(&path).with_context(|| format!("loading configuration {}", path.display()))?;
    let hub = gatehouse_hub::start(config).await.context("starting the hub")?;
    let stop = hub.shutdown_handle();
    tokio::spawn(async move {
        shutdown_signal().await;
        stop.shutdown();
    });
    let result = hub.wait().await.context("hub stopped with an error");
    // Flushing the exporters blocks until the last spans are sent.
    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    result
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
