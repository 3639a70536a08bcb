//! `cargo xtask bench`: overhead measurements.
use anyhow::Result;
use clap::Args;

#[derive(Debug, Args)]
pub struct BenchArgs {}

pub fn run(_args: &BenchArgs) -> Result<()> {
    anyhow::bail!("not yet implemented")
}
