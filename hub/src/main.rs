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
    /// Mints a development PKI into --out: a CA (kept if present), the hub's certificate,
    /// one client certificate per --gateway, an empty CRL; `certs revoke` revokes one.
    #[command(subcommand_negates_reqs = true)]
    Certs {
        #[command(subcommand)]
        action: Option<CertsCommand>,
        /// Directory to write into (created if missing).
        #[arg(long, value_name = "DIR", required = true)]
        out: Option<PathBuf>,
        /// Extra DNS names or IP addresses of the hub's certificate (beyond localhost and 127.0.0.1).
        #[arg(long = "hub-name", value_name = "NAME")]
        hub_names: Vec<String>,
        /// A gateway's certificate, as `ID:ESTATE` (repeatable).
        #[arg(long = "gateway", value_name = "ID:ESTATE")]
        gateways: Vec<String>,
        /// Validity of the new certificates, in days.
        #[arg(long, default_value_t = 825)]
        days: u64,
    },
    /// The audit log.
    Audit {
        #[command(subcommand)]
        action: AuditCommand,
    },
}

#[derive(Debug, clap::Subcommand)]
enum CertsCommand {
    /// Adds a gateway's certificate to the CRL in --out (the hub reloads it within seconds).
    Revoke {
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// The gateway whose certificate (`gateway-ID.pem` in --out) is revoked.
        #[arg(long, value_name = "ID", conflicts_with = "cert", required_unless_present = "cert")]
        gateway: Option<String>,
        /// Or the certificate file to revoke.
        #[arg(long, value_name = "FILE")]
        cert: Option<PathBuf>,
    },
}

/// `gatehouse-hub certs`: development certificates, minted with rcgen.
fn certs_command(
    action: Option<CertsCommand>,
    out: Option<PathBuf>,
    hub_names: Vec<String>,
    gateways: Vec<String>,
    days: u64,
) -> anyhow::Result<()> {
    use gatehouse_hub::tls::{GatewayIdentity, mint};
    if let Some(CertsCommand::Revoke { out, gateway, cert }) = action {
        let layout = mint::Layout::new(out);
        let cert = match (cert, gateway) {
            (Some(c), _) => c,
            (None, Some(g)) => layout.gateway_cert(&g),
            (None, None) => anyhow::bail!("say --gateway ID or --cert FILE"),
        };
        let serial = mint::revoke(&layout, &cert).with_context(|| format!("revoking {}", cert.display()))?;
        println!(
            "revoked serial {} ({}); CRL: {}",
            hex_string(&serial),
            cert.display(),
            layout.crl().display()
        );
        return Ok(());
    }
    let out = out.context("--out DIR is required")?;
    let gateways = gateways
        .iter()
        .map(|g| {
            let (id, estate) = g
                .split_once(':')
                .with_context(|| format!("--gateway {g:?}: expected ID:ESTATE"))?;
            anyhow::ensure!(
                !id.is_empty() && !estate.is_empty() && !estate.contains(':') && !id.contains(['/', '\\']),
                "--gateway {g:?}: expected ID:ESTATE (neither empty; the estate without ':', the id without '/')"
            );
            Ok(GatewayIdentity::new(estate, id))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let layout = mint::Layout::new(&out);
    mint::mint_all(
        &layout,
        &mint::MintPlan {
            hub_names,
            gateways: gateways.clone(),
            validity: std::time::Duration::from_secs(days.saturating_mul(24 * 3600)),
        },
    )
    .with_context(|| format!("minting into {}", out.display()))?;
    println!(
        "CA:  {} (key {}, keep it secret)",
        layout.ca_cert().display(),
        layout.ca_key().display()
    );
    println!("hub: {} / {}", layout.hub_cert().display(), layout.hub_key().display());
    println!("CRL: {}", layout.crl().display());
    for g in &gateways {
        println!(
            "gateway {} of {}: {} / {}",
            g.gateway,
            g.estate,
            layout.gateway_cert(&g.gateway).display(),
            layout.gateway_key(&g.gateway).display()
        );
    }
    Ok(())
}

fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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
        Some(Command::Rota { action, token }) => {
            let token = token.or_else(|| std::env::var("GATEHOUSE_TOKEN").ok());
            return rota_command(action, token).await;
        }
        Some(Command::HashPassword) => return hash_password(),
        Some(Command::Certs {
            action,
            out,
            hub_names,
            gateways,
            days,
        }) => return certs_command(action, out, hub_names, gateways, days),
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
