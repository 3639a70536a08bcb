//! `cargo xtask lab`: a multi-node NUMA kernel under QEMU.
use anyhow::Result;
use clap::Args;

#[derive(Debug, Args)]
pub struct LabArgs {}

pub fn run(_args: &LabArgs) -> Result<i32> {
    anyhow::bail!("not yet implemented")
}
