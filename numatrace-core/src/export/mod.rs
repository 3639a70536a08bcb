//! `numatrace export`: a capture as a timeline other tools (or a browser)
//! open. One module per format; all draw the same [`timeline::Timeline`].
pub mod folded;
pub mod html;
pub mod perfetto;
pub mod svg;
pub mod timeline;

use anyhow::Result;

pub use timeline::Timeline;

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Chrome/Perfetto trace JSON (ui.perfetto.dev, chrome://tracing).
    Perfetto,
    /// Collapsed stacks for flamegraph.pl, inferno, speedscope.
    Folded,
    /// A self-contained SVG timeline.
    Svg,
    /// A self-contained HTML page: the SVG timeline and the causes.
    Html,
}

impl Format {
    pub fn extension(self) -> &'static str {
        match self {
            Format::Perfetto => "json",
            Format::Folded => "folded",
            Format::Svg => "svg",
            Format::Html => "html",
        }
    }
}

/// The export of a capture in `format`.
pub fn render(capture: &crate::capture::CaptureFile, format: Format) -> Result<String> {
    let report = capture.report();
    let timeline = Timeline::build(capture, &report);
    Ok(match format {
        Format::Perfetto => perfetto::render(&timeline)?,
        Format::Folded => folded::render(&timeline, &report),
        Format::Svg => svg::render(&timeline),
        Format::Html => html::render(&timeline, &report),
    })
}

/// XML/HTML text escaping.
pub(crate) fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}
