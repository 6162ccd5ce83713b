//! A run's data directory: where the hub database, the gateways' outboxes, their
//! configuration files and logs go.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use gatehouse_proto as pb;

/// The given directory (refused if it already holds a hub database), else a fresh one under
/// the system temporary directory. Returns whether it is temporary.
pub(crate) fn prepare_data_dir(given: Option<&Path>) -> anyhow::Result<(PathBuf, bool)> {
    let (dir, temporary) = match given {
        Some(d) => (d.to_path_buf(), false),
        None => (
            std::env::temp_dir().join(format!("gatehouse-load-{}-{}", std::process::id(), pb::now_ms())),
            true,
        ),
    };
    if dir.join("hub").join("hub.db").exists() {
        bail!(
            "{} already holds a load run's hub database; give an empty --data-dir",
            dir.display()
        );
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok((dir, temporary))
}
