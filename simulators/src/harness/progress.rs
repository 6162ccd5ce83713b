//! The status line a run prints once a second while it measures.

use std::time::Duration;

/// One status line, rewritten in place on a terminal (`\r`), one line a second otherwise.
pub(crate) struct Progress {
    tty: bool,
}

impl Progress {
    pub(crate) fn new() -> Self {
        use std::io::IsTerminal as _;
        Self {
            tty: std::io::stdout().is_terminal(),
        }
    }

    pub(crate) fn show(&self, elapsed: Duration, total: Duration, line: &str) {
        use std::io::Write as _;
        let frac = (elapsed.as_secs_f64() / total.as_secs_f64().max(0.001)).min(1.0);
        let width = 20;
        let filled = (frac * width as f64).round() as usize;
        let bar: String = "#".repeat(filled) + &"-".repeat(width - filled);
        if self.tty {
            print!("\r[{bar}] {:>4.0}s {line}\x1b[K", elapsed.as_secs_f64());
            let _ = std::io::stdout().flush();
        } else {
            println!("[{bar}] {:>4.0}s {line}", elapsed.as_secs_f64());
        }
    }

    pub(crate) fn done(&self) {
        if self.tty {
            println!();
        }
    }
}
