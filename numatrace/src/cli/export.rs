//! `numatrace export`: a capture file as a timeline for the viewers people use.
use std::{io::Write, path::PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use numatrace_core::export::{FoldedBy, Format, render};

use super::values::closed_set;

/// Examples shown under `numatrace export --help`.
pub const AFTER_HELP: &str = "\
Examples:
  numatrace export run.ntrace --format perfetto   run.json: open in ui.perfetto.dev or chrome://tracing
  numatrace export run.ntrace --format folded -o - | flamegraph.pl > run-flame.svg
  numatrace export run.ntrace --format html       run.html: a timeline any browser shows, nothing else needed
  numatrace export run.ntrace --format folded --by stack -o - | flamegraph.pl > where-from.svg

perfetto: one track per thread (which node and CPU it was on), instants for
cross-node migrations, balancer moves/swaps and page-migration batches,
counters for remote first touches and hinting faults per second.
folded: process;thread;node;cause and the milliseconds the thread ran there
(for flamegraph.pl, inferno, speedscope); with --by stack (a capture made with
--stacks): cause;thread;call stack and the remote pages placed from there.
svg/html: per thread a lane coloured by node over time, migrations and
balancer events marked, the top cause in the title.";

/// `numatrace export` options.
#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// A capture file written with -o or --ring.
    #[arg(value_name = "CAPTURE")]
    pub capture: PathBuf,
    /// What to write.
    #[arg(short, long, value_parser = closed_set::<Format>(), default_value = "perfetto")]
    pub format: Format,
    /// Where to write it (`-` for stdout). Default: the capture's name with the format's extension.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// With --format folded: what the stacks are made of.
    #[arg(long, value_parser = closed_set::<FoldedBy>(), default_value = "thread")]
    pub by: FoldedBy,
}

/// Runs `numatrace export`.
pub fn run(args: &ExportArgs) -> Result<i32> {
    let capture = super::report::open(&args.capture)?;
    let text = render(&capture, args.format, args.by)?;
    let path = args.output.clone().unwrap_or_else(|| args.capture.with_extension(args.format.extension()));
    if path.as_os_str() == "-" {
        std::io::stdout().lock().write_all(text.as_bytes()).context("writing to stdout")?;
    } else {
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("numatrace: wrote {}", path.display());
    }
    Ok(0)
}
