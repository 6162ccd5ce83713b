//! What every mode's report shares: figures as text, and the report printed and written as
//! JSON (`--json`).

use std::path::Path;

use anyhow::Context as _;
use serde::Serialize;

pub(crate) fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// A figure, or `?` when it is unknown.
pub(crate) fn opt<T: std::fmt::Display>(v: &Option<T>) -> String {
    v.as_ref().map_or_else(|| "?".into(), |v| v.to_string())
}

/// Prints `text` (the rendered report) and, with `json`, writes `report` there as pretty
/// JSON and says so.
pub(crate) fn print_and_save(text: &str, report: &impl Serialize, json: Option<&Path>) -> anyhow::Result<()> {
    print!("{text}");
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(report).context("encoding the report as JSON")?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
        println!("report written to {}", path.display());
    }
    Ok(())
}
