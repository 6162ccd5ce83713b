//! The harness the load modes (`load`, `bench`, `modbus-load`) share: the hub and gateways
//! as child processes of their binaries (so their CPU and memory are their own), the run's
//! data directory, `/proc` sampling, log scanning, `/metrics` scrapes, synthetic gateway
//! streams, the live-stream alarm clock, latency summaries and report helpers.
//!
//! Invariant: nothing here knows a mode. The modes import from here and never from each
//! other; every child process lives in a value whose `Drop` kills and reaps it, so a run
//! that ends, fails or is interrupted leaves no process behind.

use std::time::Duration;

pub mod alarms;
pub mod binaries;
pub mod data_dir;
pub mod gateway_process;
pub mod gateway_stream;
pub mod hub;
pub mod latency;
pub mod logs;
pub mod metrics;
pub mod procfs;
pub mod progress;
pub mod report;
pub mod signals;
pub mod tally;
pub mod toml;

/// How long a child (hub or gateway) may take to start serving, and a synthetic gateway
/// stream to be welcomed.
pub(crate) const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
