//! Finding the `gatehouse-hub` and `gatehouse-gateway` binaries a run starts as children:
//! the one named by its `--*-bin` flag, else the one built beside this executable.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// The gateway binary's file name.
const GATEWAY_BIN: &str = "gatehouse-gateway";
/// The hub binary's file name.
const HUB_BIN: &str = "gatehouse-hub";

/// The `gatehouse-gateway` binary: `explicit`, else next to this executable.
pub(crate) fn locate_gateway_binary(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    locate_binary(GATEWAY_BIN, explicit)
}

/// The `gatehouse-hub` binary: `explicit`, else next to this executable.
pub(crate) fn locate_hub_binary(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    locate_binary(HUB_BIN, explicit)
}

/// A binary next to this executable (or one level up, from `target/<profile>/deps`), or
/// the one given.
fn locate_binary(name: &str, explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(p) = explicit {
        if p.is_file() {
            return Ok(p.to_path_buf());
        }
        bail!("the binary {} does not exist", p.display());
    }
    let exe = std::env::current_exe().context("finding this executable's path")?;
    let file = format!("{name}{}", std::env::consts::EXE_SUFFIX);
    let dir = exe.parent().context("this executable has no parent directory")?;
    let candidates = [Some(dir.join(&file)), dir.parent().map(|d| d.join(&file))];
    if let Some(found) = candidates.iter().flatten().find(|p| p.is_file()) {
        return Ok(found.clone());
    }
    let profile = if cfg!(debug_assertions) { "" } else { " --release" };
    bail!(
        "{file} not found next to {} — build it first with `cargo build{profile} --bins` \
         (the same profile as gatehouse-sim), or name it with its --*-bin flag",
        exe.display()
    )
}
