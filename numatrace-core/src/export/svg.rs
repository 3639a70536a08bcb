//! The project's own migration timeline as a self-contained SVG: per thread
//! a lane coloured by the node it was on, cross-node migrations, balancer
//! moves/swaps and page-migration batches marked, per-second rates below,
//! the top cause in the title. Hovering any mark shows what it is.
use std::fmt::Write as _;

use super::{
    escape,
    timeline::{MarkKind, Timeline},
};

/// Colour of each node id (cycled), chosen to stay apart for colour-blind readers.
pub const NODE_COLOURS: [&str; 8] =
    ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7"];
/// Colour of time where the capture does not say where a thread was.
pub const UNKNOWN_COLOUR: &str = "#d0d0d0";
/// Most lanes drawn; the rest are counted under the last one.
pub const MAX_LANES: usize = 200;

const WIDTH: f64 = 1200.0;
const LEFT: f64 = 190.0;
const RIGHT: f64 = 30.0;
const LANE: f64 = 18.0;
const GAP: f64 = 8.0;
const CHART: f64 = 46.0;

/// The colour of a node.
pub fn node_colour(node: Option<u32>) -> &'static str {
    node.map_or(UNKNOWN_COLOUR, |n| NODE_COLOURS[n as usize % NODE_COLOURS.len()])
}

fn tick_step(seconds: f64) -> f64 {
    let raw = (seconds / 10.0).max(0.001);
    let pow = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * pow).find(|s| *s >= raw).unwrap_or(10.0 * pow)
}

fn short(s: &str, max: usize) -> String {
    if s.chars().count() <= max { s.to_string() } else { format!("{}…", s.chars().take(max - 1).collect::<String>()) }
}

/// The SVG document.
pub fn render(t: &Timeline) -> String {
    let plot = WIDTH - LEFT - RIGHT;
    let secs = (t.duration_ns as f64 / 1e9).max(1e-3);
    let x = |ns: u64| LEFT + plot * (ns as f64 / 1e9 / secs).min(1.0);
    let lanes = &t.lanes[..t.lanes.len().min(MAX_LANES)];
    let lanes_top = 112.0;
    let lanes_h = lanes.len() as f64 * (LANE + GAP);
    let charts_top = lanes_top + lanes_h + 24.0;
    let height = charts_top + t.rates.len() as f64 * (CHART + 22.0) + 30.0;
    let mut o = String::new();
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="12">"#
    );
    let _ = writeln!(o, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        o,
        r#"<text x="12" y="24" font-size="17" font-weight="bold">{} (pid {}): top cause {}</text>"#,
        escape(&t.process),
        t.pid,
        escape(&t.top_cause)
    );
    let _ = writeln!(o, r##"<text x="12" y="44" fill="#333">{}</text>"##, escape(&short(&t.title, 170)));
    // Legend: nodes, then marks.
    let mut lx = 12.0;
    for n in &t.nodes {
        let _ = writeln!(
            o,
            r#"<rect x="{lx}" y="56" width="14" height="12" fill="{}"/><text x="{}" y="66">node {n}</text>"#,
            node_colour(Some(*n)),
            lx + 18.0
        );
        lx += 70.0;
    }
    let _ = writeln!(
        o,
        r#"<rect x="{lx}" y="56" width="14" height="12" fill="{UNKNOWN_COLOUR}"/><text x="{}" y="66">not known</text>"#,
        lx + 18.0
    );
    lx += 100.0;
    let legend = [
        (r##"<path d="M{x},56 l4,6 l-4,6 l-4,-6 z" fill="#111"/>"##, "cross-node migration"),
        (r##"<path d="M{x},56 l5,6 l-5,6 l-5,-6 z" fill="#ff7f0e" stroke="#7a3d00"/>"##, "balancer move/swap"),
        (r##"<circle cx="{x}" cy="62" r="4" fill="#9467bd"/>"##, "page migration batch"),
    ];
    for (glyph, label) in legend {
        let _ = writeln!(
            o,
            "{}<text x=\"{}\" y=\"66\">{label}</text>",
            glyph.replace("{x}", &format!("{}", lx + 5.0)),
            lx + 14.0
        );
        lx += 170.0;
    }
    // Time axis.
    let step = tick_step(secs);
    let axis_y = lanes_top - 10.0;
    let _ = writeln!(o, r##"<line x1="{LEFT}" y1="{axis_y}" x2="{}" y2="{axis_y}" stroke="#888"/>"##, LEFT + plot);
    let mut tick = 0.0;
    while tick <= secs + 1e-9 {
        let tx = LEFT + plot * tick / secs;
        let _ = writeln!(
            o,
            r##"<line x1="{tx:.1}" y1="{}" x2="{tx:.1}" y2="{}" stroke="#eee"/><text x="{tx:.1}" y="{}" text-anchor="middle" fill="#555">{}s</text>"##,
            lanes_top - 4.0,
            lanes_top + lanes_h,
            axis_y - 4.0,
            format_secs(tick, step)
        );
        tick += step;
    }
    // Lanes.
    for (i, lane) in lanes.iter().enumerate() {
        let y = lanes_top + i as f64 * (LANE + GAP);
        let cause = lane.cause.as_deref().map(|c| format!(" — {c}")).unwrap_or_default();
        let _ = writeln!(
            o,
            r#"<text x="{}" y="{}" text-anchor="end">{}<title>{} (tid {}){}</title></text>"#,
            LEFT - 8.0,
            y + LANE - 5.0,
            escape(&short(&format!("{} {}", lane.comm, lane.tid), 26)),
            escape(&lane.comm),
            lane.tid,
            escape(&cause)
        );
        for s in &lane.segments {
            let (x0, x1) = (x(s.from_ns), x(s.to_ns));
            let what = match (s.node, s.cpu) {
                (Some(n), Some(c)) => format!("node {n}, cpu {c}"),
                (None, Some(c)) => format!("cpu {c}"),
                (Some(n), None) => format!("node {n}"),
                _ => "where: not known".to_string(),
            };
            let _ = writeln!(
                o,
                r#"<rect x="{x0:.2}" y="{y}" width="{:.2}" height="{LANE}" fill="{}"><title>{} {}: {what}, {:.3}–{:.3} s</title></rect>"#,
                (x1 - x0).max(0.5),
                node_colour(s.node),
                escape(&lane.comm),
                lane.tid,
                s.from_ns as f64 / 1e9,
                s.to_ns as f64 / 1e9
            );
        }
    }
    if t.lanes.len() > lanes.len() {
        let _ = writeln!(
            o,
            r##"<text x="{LEFT}" y="{}" fill="#555">{} more threads not drawn</text>"##,
            lanes_top + lanes_h + 12.0,
            t.lanes.len() - lanes.len()
        );
    }
    // Page-migration dots first, so migration and balancer marks stay on top.
    let mut marks: Vec<_> = t.marks.iter().collect();
    marks.sort_by_key(|m| !matches!(m.kind, MarkKind::PageMigrationBatch { .. }));
    for m in marks {
        let Some(i) = lanes.iter().position(|l| l.tid == m.tid) else { continue };
        let y = lanes_top + i as f64 * (LANE + GAP);
        let mx = x(m.at_ns);
        let title = format!("<title>{} at {:.3} s</title>", escape(&m.kind.label()), m.at_ns as f64 / 1e9);
        let _ = match m.kind {
            MarkKind::CrossNodeMigration { .. } => writeln!(
                o,
                r##"<g><line x1="{mx:.2}" y1="{}" x2="{mx:.2}" y2="{}" stroke="#111" stroke-width="1.5"/><path d="M{mx:.2},{} l4,-6 h-8 z" fill="#111"/>{title}</g>"##,
                y - 1.0,
                y + LANE + 1.0,
                y - 1.0
            ),
            MarkKind::BalancerMove { .. } | MarkKind::BalancerSwap { .. } => writeln!(
                o,
                r##"<path d="M{mx:.2},{} l6,7 l-6,7 l-6,-7 z" fill="#ff7f0e" stroke="#7a3d00">{title}</path>"##,
                y + LANE / 2.0 - 7.0
            ),
            MarkKind::PageMigrationBatch { .. } => {
                writeln!(
                    o,
                    r##"<circle cx="{mx:.2}" cy="{}" r="4" fill="#9467bd" stroke="white">{title}</circle>"##,
                    y + LANE / 2.0
                )
            }
        };
    }
    // Per-second rate charts.
    for (k, rate) in t.rates.iter().enumerate() {
        let top = charts_top + k as f64 * (CHART + 22.0);
        let max = rate.per_second.iter().copied().max().unwrap_or(0);
        let _ = writeln!(
            o,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
            LEFT - 8.0,
            top + CHART / 2.0,
            escape(rate.name)
        );
        let _ = writeln!(
            o,
            r##"<text x="{}" y="{}" text-anchor="end" fill="#777" font-size="10">max {max}</text>"##,
            LEFT - 8.0,
            top + CHART / 2.0 + 14.0
        );
        let _ = writeln!(
            o,
            r##"<line x1="{LEFT}" y1="{}" x2="{}" y2="{}" stroke="#888"/>"##,
            top + CHART,
            LEFT + plot,
            top + CHART
        );
        if max == 0 {
            continue;
        }
        for (sec, v) in rate.per_second.iter().enumerate() {
            let x0 = x(sec as u64 * 1_000_000_000);
            let x1 = x((sec as u64 + 1) * 1_000_000_000);
            let h = CHART * *v as f64 / max as f64;
            let _ = writeln!(
                o,
                r##"<rect x="{x0:.2}" y="{:.2}" width="{:.2}" height="{h:.2}" fill="{}" fill-opacity="0.75"><title>{} s: {v}</title></rect>"##,
                top + CHART - h,
                (x1 - x0 - 1.0).max(0.5),
                if rate.name.starts_with("remote") { "#e15759" } else { "#9c9c9c" },
                sec
            );
        }
    }
    let _ = writeln!(o, "</svg>");
    o
}

fn format_secs(tick: f64, step: f64) -> String {
    if step >= 1.0 {
        format!("{tick:.0}")
    } else if step >= 0.1 {
        format!("{tick:.1}")
    } else {
        format!("{tick:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::timeline::tests::sample;

    #[test]
    fn draws_a_lane_per_thread_in_node_colours() {
        let (capture, report) = sample();
        let t = Timeline::build(&capture, &report);
        let svg = render(&t);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        let segments: usize = t.lanes.iter().map(|l| l.segments.len()).sum();
        assert_eq!(svg.matches(&format!(r#"height="{LANE}" fill=""#)).count(), segments);
        assert!(svg.contains(node_colour(Some(0))) && svg.contains(node_colour(Some(1))));
        assert_eq!(svg.matches("cross-node migration ").count(), report.totals.cross_node_migrations as usize);
        assert!(svg.contains(&format!("top cause {}", t.top_cause)));
    }

    #[test]
    fn ticks_are_round() {
        assert_eq!(tick_step(10.0), 1.0);
        assert_eq!(tick_step(30.0), 5.0);
        assert_eq!(tick_step(0.5), 0.05);
    }
}
