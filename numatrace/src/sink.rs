//! Where events go besides the aggregator (capture files, spike rings).
use crate::{
    event::Event,
    facts::{EndFacts, StartFacts},
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
    /// Called once, after the last event.
    fn end(&mut self, _facts: &EndFacts) -> anyhow::Result<()> {
        Ok(())
    }
}
