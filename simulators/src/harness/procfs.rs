//! CPU and memory of a process, read from Linux's `/proc/<pid>/{status,stat}`: the figures
//! of the children and of this process. Reads only; `None` where `/proc` has no answer.

use serde::Serialize;

/// Linux reports CPU time in clock ticks; 100 a second on every mainstream kernel config.
const CLOCK_TICKS_PER_S: f64 = 100.0;

#[derive(Debug, Clone, Default, Serialize)]
pub struct ProcessFigures {
    pub pid: u32,
    /// Resident memory at the end of the run (VmRSS).
    pub vm_rss_kib: u64,
    /// Peak resident memory (VmHWM).
    pub vm_hwm_kib: u64,
    /// User + system CPU time over the whole life of the process.
    pub cpu_s: f64,
}

/// (VmRSS, VmHWM) in KiB from `/proc/<pid>/status`.
pub(crate) fn proc_status(pid: u32) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// User + system CPU seconds from `/proc/<pid>/stat`.
pub(crate) fn proc_cpu_s(pid: u32) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, utime 14, stime 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / CLOCK_TICKS_PER_S)
}

/// The threads of a process (`Threads:` in `/proc/<pid>/status`).
pub(crate) fn threads(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
}

pub(crate) fn process_figures(pid: u32) -> ProcessFigures {
    let (vm_rss_kib, vm_hwm_kib) = proc_status(pid).unwrap_or((0, 0));
    ProcessFigures {
        pid,
        vm_rss_kib,
        vm_hwm_kib,
        cpu_s: proc_cpu_s(pid).unwrap_or(0.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_figures_of_this_process() {
        let (rss, hwm) = proc_status(std::process::id()).expect("/proc is readable");
        assert!(rss > 0 && hwm >= rss);
        assert!(proc_cpu_s(std::process::id()).is_some());
    }
}
