//! Where events go besides the aggregator (capture files, spike rings).
use crate::event::Event;

/// Receives every event of a live capture, in arrival order.
pub trait EventSink {
    /// One event, with the kernel's raw bytes.
    fn record(&mut self, event: &Event) -> anyhow::Result<()>;
}
