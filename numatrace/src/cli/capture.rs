//! The recording options of a live run: `-o`, `--ring` and its triggers.
use std::{path::PathBuf, time::Duration};

use anyhow::Result;
use clap::Args;
use numatrace_core::capture::sink::EventSink;

use crate::live::{
    record::FileSink,
    spike::{SpikeOptions, SpikeRing, TriggerRule},
};

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
            Some(path) => Ok(Some(Box::new(FileSink::create(path)?))),
            None => Ok(None),
        }
    }
}
