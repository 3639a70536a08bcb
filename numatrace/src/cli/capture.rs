//! The command-line side of capture files: the recording options of a live
//! run (`-o`, `--ring` and its triggers) and `numatrace report <file>`.
use std::{fs::File, path::PathBuf, time::Duration};

use anyhow::{Context, Result};
use clap::Args;

use numatrace_core::{
    capture::{CaptureFile, CaptureWriter, read_path, sink::EventSink},
    event::Event,
    facts::{EndFacts, StartFacts},
};

use crate::live::spike::{SpikeOptions, SpikeRing, TriggerRule};

/// Where a live run saves its events besides the report.
#[derive(Debug, Clone, Default, Args)]
pub struct RecordArgs {
    /// Also save everything the report is computed from to this capture file, written as it goes (a kill loses at most the last half second). `numatrace report FILE` prints the same report later. With --ring: the prefix of the spike captures (FILE-1.ntrace, FILE-2.ntrace, ...).
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Keep only the last TIME of events in memory (e.g. 30s) and save a capture of it when a trigger fires: SIGUSR1 (`kill -USR1 <numatrace pid>`), --trigger or --trigger-cmd.
    #[arg(long, value_name = "TIME", value_parser = humantime::parse_duration)]
    pub ring: Option<Duration>,
    /// With --ring: fire when a per-second rate crosses a threshold, e.g. 'cross_node_migrations>100/s'. Rates: cross_node_migrations, remote_first_touch (pages), hinting_faults_remote, page_migrations (pages). Repeatable.
    #[arg(long, value_name = "RULE", requires = "ring")]
    pub trigger: Vec<TriggerRule>,
    /// With --ring: run this shell command once a second and fire when it exits non-zero (e.g. a latency probe).
    #[arg(long, value_name = "COMMAND", requires = "ring")]
    pub trigger_cmd: Option<String>,
    /// With --ring: after a trigger, keep recording this long before saving.
    #[arg(long, value_name = "TIME", default_value = "5s", value_parser = humantime::parse_duration)]
    pub after: Duration,
    /// With --ring: after a trigger, ignore further triggers for this long.
    #[arg(long, value_name = "TIME", default_value = "60s", value_parser = humantime::parse_duration)]
    pub cooldown: Duration,
}

impl RecordArgs {
    /// The sink a live run feeds, if any: a capture file, or a spike ring.
    pub fn live_sink(&self) -> Result<Option<Box<dyn EventSink>>> {
        if let Some(ring) = self.ring {
            let prefix = self.output.clone().unwrap_or_else(|| PathBuf::from("numatrace-spike"));
            let opts = SpikeOptions {
                window: ring,
                after: self.after,
                cooldown: self.cooldown,
                rules: self.trigger.clone(),
                command: self.trigger_cmd.clone(),
                prefix,
                max_bytes: crate::live::spike::DEFAULT_MAX_BYTES,
            };
            return Ok(Some(Box::new(SpikeRing::new(opts)?)));
        }
        match &self.output {
            Some(path) => Ok(Some(Box::new(FileSink { writer: CaptureWriter::create(path)?, path: path.clone() }))),
            None => Ok(None),
        }
    }
}

/// A capture file of a whole live run, announced on stderr when done.
struct FileSink {
    writer: CaptureWriter<File>,
    path: PathBuf,
}

impl EventSink for FileSink {
    fn start(&mut self, facts: &StartFacts) -> Result<()> {
        self.writer.start(facts)
    }
    fn record(&mut self, event: &Event) -> Result<()> {
        self.writer.record(event)
    }
    fn undecodable(&mut self, bytes: &[u8]) -> Result<()> {
        self.writer.undecodable(bytes)
    }
    fn tick(&mut self) -> Result<()> {
        self.writer.tick()
    }
    fn end(&mut self, facts: &EndFacts) -> Result<()> {
        self.writer.end(facts)?;
        eprintln!(
            "numatrace: saved {} events to {} ({} bytes); `numatrace report {}` shows this report again",
            self.writer.events,
            self.path.display(),
            self.writer.bytes,
            self.path.display()
        );
        Ok(())
    }
}

/// `numatrace report`: the report of a saved capture.
#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// A capture file written with -o or --ring.
    #[arg(value_name = "CAPTURE")]
    pub capture: PathBuf,
    /// Print the report as one JSON object (byte for byte what the live run printed with --json).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub text: super::output::TextArgs,
}

/// Reads a capture and prints each warning about it on stderr.
pub fn open(path: &std::path::Path) -> Result<CaptureFile> {
    let capture = read_path(path).with_context(|| format!("reading capture {}", path.display()))?;
    for warning in &capture.warnings {
        eprintln!("numatrace: warning: {}: {warning}", path.display());
    }
    Ok(capture)
}

/// Runs `numatrace report`.
pub fn run_report(args: &ReportArgs) -> Result<i32> {
    let capture = open(&args.capture)?;
    super::output::print_report(&capture.report(), args.json, &args.text)?;
    Ok(0)
}
