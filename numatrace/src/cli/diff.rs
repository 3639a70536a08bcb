//! `numatrace diff`: two captures, before and after a fix, and a verdict.
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use numatrace_core::{
    diff::{compare_with, render, resident},
    fixes::FIXED_BELOW,
};

/// `numatrace diff` options.
#[derive(Debug, Clone, Args)]
pub struct DiffArgs {
    /// The capture before the fix.
    #[arg(value_name = "BEFORE")]
    pub before: PathBuf,
    /// The capture after the fix.
    #[arg(value_name = "AFTER")]
    pub after: PathBuf,
    /// Print the comparison as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Call it fixed when the remote share after falls below this percentage
    /// (a fix states its own level: interleaving over n nodes leaves (n-1)/n remote).
    #[arg(long, value_name = "PERCENT", default_value_t = FIXED_BELOW * 100.0, value_parser = percent)]
    pub fixed_below: f64,
}

fn percent(text: &str) -> Result<f64, String> {
    let v: f64 =
        text.trim_end_matches('%').parse().map_err(|_| format!("{text:?} is not a percentage (e.g. 5 or 55)"))?;
    if (0.0..=100.0).contains(&v) { Ok(v) } else { Err(format!("{v} is not between 0 and 100")) }
}

/// Runs `numatrace diff`.
pub fn run(args: &DiffArgs) -> Result<i32> {
    let before = super::report::open(&args.before)?;
    let after = super::report::open(&args.after)?;
    let (before_pages, after_pages) = (resident(&before.start, &before.end), resident(&after.start, &after.end));
    let diff = compare_with(
        &before.report(),
        before_pages.as_ref(),
        &after.report(),
        after_pages.as_ref(),
        args.fixed_below / 100.0,
    );
    if args.json {
        println!("{}", serde_json::to_string_pretty(&diff)?);
    } else {
        print!("{}", render(&diff));
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::percent;

    #[test]
    fn percent_takes_a_number_or_a_percentage_in_range() {
        assert_eq!(percent("55"), Ok(55.0));
        assert_eq!(percent("5%"), Ok(5.0));
        assert!(percent("x").is_err() && percent("120").is_err());
    }
}
