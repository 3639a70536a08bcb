//! `numatrace diff`: before and after a fix.
use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;

/// `numatrace diff` options.
#[derive(Debug, Clone, Args)]
pub struct DiffArgs {
    /// The capture before the fix.
    pub before: PathBuf,
    /// The capture after the fix.
    pub after: PathBuf,
}

/// Runs `numatrace diff`.
pub fn run(_args: &DiffArgs) -> Result<i32> {
    bail!("not yet")
}
