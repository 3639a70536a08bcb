//! The report: a plain data model built from the aggregator, and its two
//! renderings (terminal text and `--json`). Renderers never compute facts.
pub mod model;
pub mod text;

pub use model::*;

use crate::{aggregate::Aggregator, event::Event, facts::SessionFacts};

// Here rather than in facts: a report is built from facts, facts know
// nothing of reports.
impl SessionFacts {
    /// The report, from an aggregator that has seen every event.
    pub fn report(&self, agg: &mut Aggregator) -> Report {
        agg.finish(self.end.kernel.clone());
        Report::build(agg, self)
    }

    /// Folds `events` and builds the report: what `numatrace report <capture>` does.
    pub fn replay<'a>(&self, events: impl IntoIterator<Item = &'a Event>) -> (Report, Aggregator) {
        let mut agg = self.new_aggregator();
        for event in events {
            agg.ingest(event);
        }
        let report = self.report(&mut agg);
        (report, agg)
    }
}
