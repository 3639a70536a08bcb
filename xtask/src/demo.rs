//! `cargo xtask demo`: the README's first command.
use anyhow::Result;
use clap::Args;

#[derive(Debug, Args)]
pub struct DemoArgs {}

pub fn run(_args: &DemoArgs) -> Result<i32> {
    anyhow::bail!("not yet implemented")
}
