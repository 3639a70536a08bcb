//! `numatrace report <file>`: a saved capture's report, exactly as the live run printed it.
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use numatrace_core::capture::{CaptureFile, read_path};

/// `numatrace report`: the report of a saved capture.
#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// A capture file written with -o or --ring.
    #[arg(value_name = "CAPTURE")]
    pub capture: PathBuf,
    /// Print the report as one JSON object (byte for byte what the live run printed with --json).
    #[arg(long)]
    pub json: bool,
    /// Symbolize the capture's call stacks (--stacks) again with the binaries
    /// in DIR, found by build id (DIR/.build-id/ab/cdef...) or by name: for a
    /// capture made where the binaries had no symbols, or brought from another
    /// machine. Repeat it for several directories.
    #[arg(long, value_name = "DIR")]
    pub symbols: Vec<PathBuf>,
    #[command(flatten)]
    pub text: super::output::TextArgs,
}

/// Reads a capture and prints each warning about it on stderr.
pub fn open(path: &Path) -> Result<CaptureFile> {
    let capture = read_path(path).with_context(|| format!("reading capture {}", path.display()))?;
    for warning in &capture.warnings {
        eprintln!("numatrace: warning: {}: {warning}", path.display());
    }
    Ok(capture)
}

/// Runs `numatrace report`.
pub fn run_report(args: &ReportArgs) -> Result<i32> {
    let mut capture = open(&args.capture)?;
    if !args.symbols.is_empty() {
        for dir in &args.symbols {
            if !dir.is_dir() {
                anyhow::bail!("--symbols {}: not a directory", dir.display());
            }
        }
        match capture.end.stacks.as_mut() {
            Some(table) => crate::symbolize::symbolize(table, &args.symbols),
            None => {
                anyhow::bail!("{} has no call stacks to symbolize (captured without --stacks)", args.capture.display())
            }
        }
    }
    super::output::print_report(&capture.report(), args.json, &args.text)?;
    Ok(0)
}
