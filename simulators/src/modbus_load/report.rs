//! The figures of one Modbus load run: the report printed and written as JSON. Field names
//! are the JSON contract of `--json`.

use std::fmt::Write as _;

use serde::Serialize;

use crate::harness::{logs::LogProblem, report::mib};

/// The figures of one run.
#[derive(Debug, Clone, Serialize)]
pub struct ModbusLoadReport {
    pub devices: usize,
    pub points_per_device: usize,
    pub poll_ms: u64,
    /// Read requests one poll of one device takes (after merging adjacent points).
    pub requests_per_poll: usize,
    pub change_per_s: f64,
    pub refresh_s: u64,
    pub window_s: f64,
    /// Gateway CPU (user + system) over the window, in % of one core.
    pub gateway_cpu_percent: f64,
    pub gateway_cpu_s: f64,
    pub gateway_rss_kib: u64,
    pub gateway_rss_max_kib: u64,
    pub gateway_hwm_kib: u64,
    pub gateway_threads: Option<u64>,
    /// Over the window, from the gateway's `/metrics`.
    pub modbus_requests_per_s: f64,
    pub events_per_s: f64,
    /// Modbus failures (timeouts, transport, connect, exceptions) and reconnects in the
    /// window, and devices offline at its end.
    pub failures: u64,
    pub reconnects: u64,
    pub devices_offline: u64,
    /// Events appended to the outbox and acknowledged by the hub over the whole run.
    pub outbox_appended: u64,
    pub uplink_acked: u64,
    /// This process (the simulated servers and the driver), CPU over the window.
    pub servers_cpu_percent: f64,
    /// The hub child, CPU over the window.
    pub hub_cpu_percent: Option<f64>,
    pub hub_rss_kib: Option<u64>,
    pub log_problems: Vec<LogProblem>,
}

impl ModbusLoadReport {
    /// No failure, nothing offline, everything appended acknowledged.
    pub fn clean(&self) -> bool {
        self.failures == 0 && self.devices_offline == 0 && self.uplink_acked >= self.outbox_appended
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "== gatehouse modbus load report ==");
        let _ = writeln!(
            s,
            "setup        {} devices x {} points ({} reads per poll), poll every {} ms; {:.1}% of points change per second; refresh every {} s",
            self.devices,
            self.points_per_device,
            self.requests_per_poll,
            self.poll_ms,
            self.change_per_s * 100.0,
            self.refresh_s
        );
        let _ = writeln!(s, "window       {:.1} s of steady state", self.window_s);
        let _ = writeln!(
            s,
            "gateway CPU  {:.1}% of one core ({:.2} s user+system in the window)",
            self.gateway_cpu_percent, self.gateway_cpu_s
        );
        let _ = writeln!(
            s,
            "gateway mem  VmRSS {} (sampled max {}) VmHWM {}; {} threads",
            mib(self.gateway_rss_kib),
            mib(self.gateway_rss_max_kib),
            mib(self.gateway_hwm_kib),
            self.gateway_threads.map_or_else(|| "?".into(), |t| t.to_string())
        );
        let _ = writeln!(
            s,
            "modbus       {:.0} requests/s; {} failures, {} reconnects in the window; {} devices offline  {}",
            self.modbus_requests_per_s,
            self.failures,
            self.reconnects,
            self.devices_offline,
            if self.failures == 0 && self.devices_offline == 0 {
                "OK"
            } else {
                "FAIL"
            }
        );
        let _ = writeln!(
            s,
            "events       {:.0}/s into the outbox in the window; whole run: {} appended, {} acknowledged by the hub  {}",
            self.events_per_s,
            self.outbox_appended,
            self.uplink_acked,
            if self.uplink_acked >= self.outbox_appended {
                "OK"
            } else {
                "FAIL"
            }
        );
        let _ = writeln!(
            s,
            "others       simulated servers + driver {:.1}% of one core; hub {} ({})",
            self.servers_cpu_percent,
            self.hub_cpu_percent
                .map_or_else(|| "?".into(), |c| format!("{c:.1}% of one core")),
            self.hub_rss_kib.map_or_else(|| "?".into(), mib)
        );
        for p in self.log_problems.iter().take(5) {
            let _ = writeln!(s, "gateway log  {} x{}: {}", p.level, p.count, p.message);
        }
        s
    }
}
