//! The one-line progress shown on a terminal while a capture runs: elapsed
//! time, events, lost events and threads, redrawn in place four times a
//! second and erased before the report.
use std::{
    io::{IsTerminal, Write},
    time::{Duration, Instant},
};

use numatrace_core::aggregate::Aggregator;

const EVERY: Duration = Duration::from_millis(250);

pub struct Progress {
    shown: bool,
    pid: u32,
    started: Instant,
    duration: Option<Duration>,
    last: Instant,
}

impl Progress {
    /// Shown only when `wanted` and stderr is a terminal (never in a pipe or a log).
    pub fn new(wanted: bool, pid: u32, started: Instant, duration: Option<Duration>) -> Progress {
        Progress { shown: wanted && std::io::stderr().is_terminal(), pid, started, duration, last: Instant::now() }
    }

    /// Whether a redraw is due now.
    pub fn due(&self) -> bool {
        self.shown && self.last.elapsed() >= EVERY
    }

    /// Redraws the line.
    pub fn draw(&mut self, agg: &Aggregator, lost: u64) {
        self.last = Instant::now();
        let elapsed = self.started.elapsed().as_secs_f64();
        let of = self.duration.map(|d| format!(" / {:.0} s", d.as_secs_f64())).unwrap_or_default();
        let lost = if lost > 0 { format!(", {lost} lost (raise --ring-size)") } else { String::new() };
        // \r and erase-line: the line is redrawn in place.
        eprint!(
            "\r\x1b[2Knumatrace: pid {} {elapsed:.1} s{of}, {} events{lost}, {} threads (Ctrl-C stops and reports)",
            self.pid,
            agg.events,
            agg.threads.len()
        );
        let _ = std::io::stderr().flush();
    }

    /// Erases the line before anything else is printed.
    pub fn clear(&self) {
        if self.shown {
            eprint!("\r\x1b[2K");
        }
    }
}
