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
        /// An API token (`Authorization: Bearer`) of a user who may change the rota
        /// (default: the GATEHOUSE_TOKEN environment variable).
        #[arg(long, global = true)]
        token: Option<String>,
    },
    /// Reads a password from stdin (one line) and prints its argon2id PHC hash, for
    /// `[[users]] password_hash` in the hub config.
    HashPassword,
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
async fn rota_command(action: RotaCommand, token: Option<String>) -> anyhow::Result<()> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(token) = token {
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.trim()))
            .context("the token is not a valid header value")?;
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    let client = reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .context("building the HTTP client")?;
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

/// `gatehouse-hub hash-password`: stdin → PHC string. The password is never echoed or logged.
fn hash_password() -> anyhow::Result<()> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("reading the password from stdin")?;
    let password = line.trim_end_matches(['\r', '\n']);
    gatehouse_hub::auth::users::check_password(password).map_err(|e| anyhow::anyhow!("{e}"))?;
    let hash = gatehouse_hub::auth::users::hash_password(password).map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("{hash}");
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Logs by RUST_LOG; OpenTelemetry export only when OTEL_EXPORTER_OTLP_ENDPOINT is set.
    let telemetry = gatehouse_hub::telemetry::init("gatehouse-hub", "info");
    let args = Args::parse();
    match args.command {
        Some(Command::Rota { action, token }) => {
            let token = token.or_else(|| std::env::var("GATEHOUSE_TOKEN").ok());
            return rota_command(action, token).await;
        }
        Some(Command::HashPassword) => return hash_password(),
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
