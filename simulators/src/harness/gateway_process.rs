//! A `gatehouse-gateway` child process: started with its configuration file, its output in
//! a log file, watched for an early exit, its memory sampled.
//!
//! Invariant: the child is killed and reaped when the value is dropped.

use std::{
    fs::File,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

use anyhow::{Context, bail};

use super::{logs::log_tail, procfs::proc_status};

/// One `gatehouse-gateway` child process; killed and reaped when dropped.
pub(crate) struct GatewayProcess {
    pub(crate) id: String,
    pub(crate) child: Child,
    /// Its MQTT listener (the load devices connect there).
    pub(crate) mqtt: SocketAddr,
    /// Its HTTP listener (`/metrics`).
    pub(crate) http: SocketAddr,
    pub(crate) log: PathBuf,
    pub(crate) outbox: PathBuf,
    pub(crate) rss_max_kib: u64,
}

impl GatewayProcess {
    pub(crate) fn spawn(
        bin: &Path,
        config: &Path,
        log: PathBuf,
        outbox: PathBuf,
        id: String,
        mqtt: SocketAddr,
        http: SocketAddr,
    ) -> anyhow::Result<Self> {
        let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone().context("duplicating the log file handle")?;
        let child = Command::new(bin)
            .arg("--config")
            .arg(config)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        Ok(Self {
            id,
            child,
            mqtt,
            http,
            log,
            outbox,
            rss_max_kib: 0,
        })
    }

    /// Fails if the child has exited, with the end of its log.
    pub(crate) fn check_alive(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => bail!(
                "gateway {} exited ({status}); end of {}:\n{}",
                self.id,
                self.log.display(),
                log_tail(&self.log, 15)
            ),
            Err(e) => bail!("checking on gateway {}: {e}", self.id),
        }
    }

    pub(crate) fn sample(&mut self) {
        if let Some(rss) = proc_status(self.child.id()).map(|s| s.0) {
            self.rss_max_kib = self.rss_max_kib.max(rss);
        }
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}
