//! Where events go besides the aggregator (capture files, spike rings).
use crate::{
    event::Event,
    facts::{EndFacts, StartFacts},
    kernel_status::KernelTotals,
};

/// Receives a live capture as it happens: the start facts, every event in
/// arrival order, then the end facts.
pub trait EventSink {
    /// Called once, after the probes are attached and before any event.
    fn start(&mut self, _facts: &StartFacts) -> anyhow::Result<()> {
        Ok(())
    }
    /// One event, as the kernel wrote it.
    fn record(&mut self, event: &Event) -> anyhow::Result<()>;
    /// A ring record that did not decode (counted as lost in the report);
    /// kept so that a replay counts it too.
    fn undecodable(&mut self, _bytes: &[u8]) -> anyhow::Result<()> {
        Ok(())
    }
    /// Called on every drain tick (about every 100 ms), events or not: time
    /// for periodic work such as flushing a file or closing a time window.
    fn tick(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
    /// The kernel's counters as read at `at_ns` (monotonic), on every drain
    /// tick: for sinks that cut a time window out of the run and need the
    /// kernel's counts over just that window (what it only counted, such as
    /// migrations within a node, and what did not fit the ring).
    fn kernel_totals(&mut self, _at_ns: u64, _totals: &KernelTotals) -> anyhow::Result<()> {
        Ok(())
    }
    /// The overhead budget's sampling so far, on every drain tick of a
    /// capture under `--overhead-budget`: for sinks that write captures of
    /// their own before the end (a spike window must say it was sampled).
    fn sampling(&mut self, _facts: &crate::sampling::SamplingFacts) -> anyhow::Result<()> {
        Ok(())
    }
    /// Called once, after the last event.
    fn end(&mut self, _facts: &EndFacts) -> anyhow::Result<()> {
        Ok(())
    }
}
