//! How a report reaches stdout: text (with the --threads choice) or JSON.
use std::io::Write;

use anyhow::Result;
use clap::Args;
use numatrace_core::report::{self, text::ThreadsShown};

use super::values::closed_set;

/// The `--threads` option of the commands that print a report.
#[derive(Clone, Debug, Default, Args)]
pub struct TextArgs {
    /// Threads in the text report: `top` lists at most 20 lines (threads
    /// grouped by name pattern, e.g. worker-%d, and lifetime when there are
    /// more), `all` every thread. --json always has every thread.
    #[arg(long, value_parser = closed_set::<ThreadsShown>(), value_name = "top|all", default_value = "top")]
    pub threads: ThreadsShown,
}

/// Prints a report as the live run does; `numatrace report` prints a replayed one the same way.
pub fn print_report(report: &report::Report, json: bool, text: &TextArgs) -> Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, report)?;
        writeln!(out)?;
    } else {
        write!(out, "{}", report::text::render_with(report, text.threads))?;
    }
    Ok(())
}
