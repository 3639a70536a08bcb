//! The report: a plain data model built from the aggregator, and its two
//! renderings (terminal text and `--json`). Renderers never compute facts.
pub mod model;
pub mod text;

pub use model::*;
