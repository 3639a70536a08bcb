//! `numatrace export`: a capture as a timeline other tools (or a browser)
//! open. One module per format; all draw the same [`timeline::Timeline`].
pub mod folded;
pub mod html;
pub mod perfetto;
pub mod stacks;
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

/// What the folded export's stacks are made of.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FoldedBy {
    /// process;thread;node;cause, counted in milliseconds run.
    #[default]
    Thread,
    /// cause;thread;call stack (`--stacks`), counted in remote pages.
    Stack,
}

/// The export of a capture in `format`.
pub fn render(capture: &crate::capture::CaptureFile, format: Format, by: FoldedBy) -> Result<String> {
    let (report, agg) = capture.replay();
    if by == FoldedBy::Stack {
        anyhow::ensure!(format == Format::Folded, "--by stack is for --format folded only");
        anyhow::ensure!(
            capture.end.stacks.is_some(),
            "the capture has no call stacks: capture with --stacks to export them"
        );
        return Ok(stacks::render(&report, &agg));
    }
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
