//! The hub a run loads: a `gatehouse-hub` child process started here (its configuration
//! written for the run's estates, ready once `/readyz` answers), or one already running.
//! Its database is opened read-only: what a run checks for loss and duplicates.
//!
//! Invariant: a child hub is killed and reaped when its `HubUnderTest` is dropped.

use std::{
    fs::File,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};

use super::{
    STARTUP_TIMEOUT,
    binaries::locate_hub_binary,
    logs::log_tail,
    procfs::{ProcessFigures, proc_cpu_s, proc_status, process_figures},
};
use crate::{
    net::free_local_addr,
    scenario::{self, EstateSpec},
};

/// The estates `load-0 … load-(n-1)` a run's hub is configured with; synthetic gateways
/// and load gateways report for them.
pub(crate) fn load_estates(n: usize) -> Vec<EstateSpec> {
    (0..n)
        .map(|i| EstateSpec::new(&format!("load-{i}"), &format!("Load estate {i}")))
        .collect()
}

/// The hub a run loads: a `gatehouse-hub` child process of this run (its CPU and memory
/// are read from /proc), or one already running (`--hub`).
pub(crate) struct HubUnderTest {
    /// gRPC URL the gateways (or synthetic streams) connect to.
    pub(crate) grpc_url: String,
    /// HTTP base URL (`http://host:port`) for `/api/v1/stream`, `/metrics`.
    pub(crate) http_base: Option<String>,
    /// The hub database, read-only: what is checked for loss and duplicates.
    pub(crate) db: Option<SqlitePool>,
    pub(crate) process: Option<HubProcess>,
}

impl HubUnderTest {
    /// A hub already running at `grpc_url`; its database, when given, opened read-only.
    pub(crate) async fn running(grpc_url: &str, http_base: Option<&str>, db: Option<&Path>) -> anyhow::Result<Self> {
        let db = match db {
            Some(p) => Some(open_read_only(p).await?),
            None => None,
        };
        Ok(Self {
            grpc_url: grpc_url.to_string(),
            http_base: http_base.map(str::to_string),
            db,
            process: None,
        })
    }

    /// Starts `gatehouse-hub` as a child process with its database under `data_dir`.
    pub(crate) async fn child(hub_bin: Option<&Path>, data_dir: &Path, estates: &[EstateSpec]) -> anyhow::Result<Self> {
        let bin = locate_hub_binary(hub_bin)?;
        let hub_dir = data_dir.join("hub");
        std::fs::create_dir_all(&hub_dir).with_context(|| format!("creating {}", hub_dir.display()))?;
        let grpc = free_local_addr().context("choosing the hub's gRPC port")?;
        let http = free_local_addr().context("choosing the hub's HTTP port")?;
        let db_path = hub_dir.join("hub.db");
        let toml = scenario::hub_toml(grpc, http, &format!("sqlite://{}", db_path.display()), estates)?;
        let config = data_dir.join("hub.toml");
        std::fs::write(&config, toml).with_context(|| format!("writing {}", config.display()))?;
        let log = data_dir.join("hub.log");
        let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone().context("duplicating the log file handle")?;
        let child = Command::new(&bin)
            .arg("--config")
            .arg(&config)
            .env("NO_COLOR", "1")
            .env(
                "RUST_LOG",
                std::env::var("GATEHOUSE_LOAD_HUB_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut process = HubProcess {
            child,
            log,
            rss_max_kib: 0,
        };
        // Ready when /readyz answers 200.
        let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            process.check_alive()?;
            if let Ok(r) = client.get(format!("http://{http}/readyz")).send().await
                && r.status().is_success()
            {
                break;
            }
            if Instant::now() >= deadline {
                bail!(
                    "the hub did not become ready within {STARTUP_TIMEOUT:?}; end of {}:\n{}",
                    process.log.display(),
                    log_tail(&process.log, 15)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let db = open_read_only(&db_path).await?;
        Ok(Self {
            grpc_url: format!("http://{grpc}"),
            http_base: Some(format!("http://{http}")),
            db: Some(db),
            process: Some(process),
        })
    }

    pub(crate) fn sample(&mut self) -> anyhow::Result<()> {
        if let Some(p) = &mut self.process {
            p.check_alive()?;
            if let Some((rss, _)) = proc_status(p.child.id()) {
                p.rss_max_kib = p.rss_max_kib.max(rss);
            }
        }
        Ok(())
    }

    pub(crate) fn cpu_s(&self) -> Option<f64> {
        self.process.as_ref().and_then(|p| proc_cpu_s(p.child.id()))
    }

    pub(crate) fn figures(&self) -> Option<(ProcessFigures, u64)> {
        self.process
            .as_ref()
            .map(|p| (process_figures(p.child.id()), p.rss_max_kib))
    }
}

/// The `gatehouse-hub` child; killed and reaped when dropped.
pub(crate) struct HubProcess {
    child: Child,
    log: PathBuf,
    /// Largest VmRSS seen by [`HubUnderTest::sample`].
    pub(crate) rss_max_kib: u64,
}

impl HubProcess {
    fn check_alive(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => bail!(
                "the hub exited ({status}); end of {}:\n{}",
                self.log.display(),
                log_tail(&self.log, 15)
            ),
            Err(e) => bail!("checking on the hub: {e}"),
        }
    }
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// A SQLite database opened read-only (the hub's, while the hub writes it).
pub(crate) async fn open_read_only(path: &Path) -> anyhow::Result<SqlitePool> {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .busy_timeout(Duration::from_secs(5));
    SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .with_context(|| format!("opening the hub database {} read-only", path.display()))
}
