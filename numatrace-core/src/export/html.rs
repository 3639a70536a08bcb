//! A self-contained HTML page: the SVG timeline, the causes the report
//! ranks, and a per-thread table. No scripts, no external files.
use std::fmt::Write as _;

use super::{escape, svg, timeline::Timeline};
use crate::report::Report;

/// The HTML document.
pub fn render(t: &Timeline, report: &Report) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>numatrace: {} ({})</title>\n<style>body{{font-family:DejaVu Sans,Helvetica,Arial,sans-serif;margin:20px;color:#222}}table{{border-collapse:collapse}}td,th{{padding:2px 10px;text-align:right;border-bottom:1px solid #eee}}td:nth-child(2),th:nth-child(2){{text-align:left}}.cause{{margin:6px 0}}</style></head><body>",
        escape(&t.process),
        t.pid
    );
    let _ = writeln!(o, "<h1>{} (pid {})</h1>\n<p>{}</p>", escape(&t.process), t.pid, escape(&report.headline));
    let _ = writeln!(
        o,
        "<p>{:.1} s on Linux {}, {} thread(s), {} node(s); stopped by {}. Hover the timeline for details.</p>",
        report.duration_s,
        escape(&report.tool.kernel),
        report.threads.len(),
        t.nodes.len(),
        escape(&report.stopped_by.to_string())
    );
    o.push_str(&svg::render(t));
    let _ = writeln!(o, "<h2>Causes</h2>");
    if report.causes.is_empty() {
        let _ = writeln!(o, "<p>None attributed.</p>");
    }
    for c in &report.causes {
        let _ = writeln!(
            o,
            "<div class=\"cause\"><b>{}</b> ({:.0}% of remote pages, {} pages): {}<br>→ {}</div>",
            c.kind.name(),
            c.share * 100.0,
            c.pages,
            escape(&c.summary),
            escape(&c.recommendation)
        );
    }
    let _ = writeln!(
        o,
        "<h2>Threads</h2>\n<table><tr><th>tid</th><th>comm</th><th>migrations</th><th>cross-node</th><th>first-touch pages</th><th>remote</th><th>hinting faults local/remote</th></tr>"
    );
    for th in &report.threads {
        let pages: u64 = th.first_touch_pages.values().sum();
        let _ = writeln!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}/{}</td></tr>",
            th.tid,
            escape(&th.comm),
            th.migrations.map_or("-".to_string(), |m| m.to_string()),
            th.cross_node_migrations,
            pages,
            th.remote_first_touch_pages,
            th.hinting_faults_local,
            th.hinting_faults_remote
        );
    }
    let _ =
        writeln!(o, "</table>\n<p style=\"color:#777\">numatrace {}</p></body></html>", escape(&report.tool.version));
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::timeline::tests::sample;

    #[test]
    fn embeds_the_timeline_and_every_thread() {
        let (capture, report) = sample();
        let t = Timeline::build(&capture, &report);
        let html = render(&t, &report);
        assert!(html.contains("<svg") && html.ends_with("</html>\n"));
        assert!(!html.contains("<script") && !html.contains("src=\"http"));
        for th in &report.threads {
            assert!(html.contains(&format!("<tr><td>{}</td>", th.tid)));
        }
    }
}
