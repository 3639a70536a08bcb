//! `numatrace export`: a capture as a timeline other tools (or a browser) open.
use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;

/// Examples shown under `numatrace export --help`.
pub const AFTER_HELP: &str = "";

/// `numatrace export` options.
#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// A capture file written with -o or --ring.
    #[arg(value_name = "CAPTURE")]
    pub capture: PathBuf,
}

/// Runs `numatrace export`.
pub fn run(_args: &ExportArgs) -> Result<i32> {
    bail!("not yet")
}
