//! Draws the state: the machine's header, the table, the footer. Nothing
//! here changes the state.
use numatrace_core::{machine::cpulist, system::SystemView};
use ratatui::{
    Frame,
    layout::{Constraint, Layout},
    style::{Modifier, Style, Stylize},
    text::Line,
    widgets::{Cell, Paragraph, Row as TableRow, Table, TableState},
};

use super::{
    input::HELP,
    state::{By, Column, Row, State},
};

pub fn draw(frame: &mut Frame, state: &mut State) {
    let header =
        state.view.as_ref().map(header_lines).unwrap_or_else(|| vec![Line::from("numatrace top: reading /proc ...")]);
    let footer = footer_lines(state);
    let [top, table, bottom] = Layout::vertical([
        Constraint::Length(header.len() as u16),
        Constraint::Min(3),
        Constraint::Length(footer.len() as u16),
    ])
    .areas(frame.area());
    frame.render_widget(Paragraph::new(header), top);
    draw_table(frame, state, table);
    frame.render_widget(Paragraph::new(footer), bottom);
}

fn gib(bytes: u64) -> String {
    format!("{:.1}G", bytes as f64 / (1u64 << 30) as f64)
}

/// Bytes with a unit that keeps it short: 900K, 12M, 3.4G.
pub fn short_bytes(bytes: u64) -> String {
    const K: f64 = 1024.0;
    let b = bytes as f64;
    if b < K * K {
        format!("{:.0}K", b / K)
    } else if b < K * K * K {
        format!("{:.0}M", b / K / K)
    } else {
        format!("{:.1}G", b / K / K / K)
    }
}

fn balancing(view: &SystemView) -> &'static str {
    match view.numa_balancing {
        None => "balancing unknown",
        Some(0) => "balancing off",
        Some(1) => "balancing on",
        Some(2) => "balancing: tiering",
        Some(_) => "balancing on + tiering",
    }
}

/// The machine: one line overall, one per node, one per host finding.
pub fn header_lines(view: &SystemView) -> Vec<Line<'static>> {
    let mut lines = vec![Line::from(format!(
        "numatrace top  {} node(s)  {}  pages migrated {:.0}/s  hinting faults {:.0}/s ({:.0}/s local)  over {:.1} s  {}",
        view.nodes.len(),
        balancing(view),
        view.numa_pages_migrated_per_s,
        view.numa_hint_faults_per_s,
        view.numa_hint_faults_local_per_s,
        view.interval_seconds,
        if view.counted_in_kernel { "moves: counted in the kernel" } else { "moves: estimated from /proc" }
    ))
    .bold()];
    for n in &view.nodes {
        lines.push(Line::from(format!(
            "node {}  cpus {:<12} mem used {} free {} of {}  numa_miss {:.0}/s  numa_foreign {:.0}/s  numa_hit {:.0}/s",
            n.id,
            cpulist::format(&n.cpus),
            gib(n.mem_used_bytes),
            gib(n.mem_free_bytes),
            gib(n.mem_total_bytes),
            n.rates.numa_miss,
            n.rates.numa_foreign,
            n.rates.numa_hit
        )));
    }
    for f in &view.findings {
        lines.push(Line::from(format!("{}: {}", f.kind, f.evidence)).style(Style::new().yellow()));
    }
    lines
}

fn footer_lines(state: &State) -> Vec<Line<'static>> {
    let mut lines = Vec::new();
    if state.filter.editing {
        lines.push(Line::from(format!("filter: {}_", state.filter.text)).reversed());
    } else if !state.filter.text.is_empty() {
        lines.push(Line::from(format!("filter: {} (Esc clears)", state.filter.text)));
    }
    for s in state.view.iter().flat_map(|v| v.cannot_see.iter()) {
        lines.push(Line::from(format!("cannot see: {s}")).dim());
    }
    for line in state.status.lines().filter(|l| !l.is_empty()) {
        lines.push(Line::from(line.to_string()).dim());
    }
    lines.push(Line::from(HELP).reversed());
    lines
}

/// A row's cells, the same on screen and in `--once` text.
pub fn cells(row: &Row) -> [String; COLUMNS] {
    let pairs = |v: Vec<String>| if v.is_empty() { "-".to_string() } else { v.join(" ") };
    [
        row.pid.map(|p| p.to_string()).unwrap_or_default(),
        row.name.clone(),
        row.cgroup.clone(),
        short_bytes(row.rss_bytes),
        if row.memory_known {
            pairs(row.memory_by_node.iter().map(|(n, b)| format!("{n}:{}", short_bytes(*b))).collect())
        } else {
            "?".into()
        },
        pairs(row.threads_by_node.iter().map(|(n, c)| format!("{n}:{c}")).collect()),
        row.remote_memory_share.map(|s| format!("{:.0}%", s * 100.0)).unwrap_or_else(|| "?".into()),
        format!("{:.1}", row.cross_node_migrations_per_s),
        // Not counted (no kernel side): no figure rather than a 0.
        row.remote_first_touch_pages_per_s.map(|r| format!("{r:.0}")).unwrap_or_else(|| "-".into()),
        row.remote_hinting_faults_per_s.map(|r| format!("{r:.0}")).unwrap_or_else(|| "-".into()),
        row.tag.name().to_string(),
    ]
}

/// Columns of the table.
pub const COLUMNS: usize = 11;

/// Column titles, and which sort key each shows.
pub fn titles(by: By) -> [(&'static str, Option<Column>); COLUMNS] {
    [
        (if by == By::Process { "PID" } else { "" }, Some(Column::Pid)),
        (if by == By::Process { "NAME" } else { "PROCS" }, Some(Column::Name)),
        ("CGROUP", Some(Column::Cgroup)),
        ("RSS", Some(Column::Memory)),
        ("MEM/NODE", None),
        ("THREADS/NODE", None),
        ("REMOTE", Some(Column::Remote)),
        ("MOVES/s", Some(Column::Migrations)),
        ("RFT/s", Some(Column::RemoteFirstTouches)),
        ("RHF/s", Some(Column::RemoteHintingFaults)),
        ("TAG", Some(Column::Tag)),
    ]
}

const WIDTHS: [Constraint; COLUMNS] = [
    Constraint::Length(8),
    Constraint::Length(16),
    Constraint::Fill(1),
    Constraint::Length(7),
    Constraint::Length(20),
    Constraint::Length(13),
    Constraint::Length(7),
    Constraint::Length(8),
    Constraint::Length(7),
    Constraint::Length(7),
    Constraint::Length(10),
];

fn draw_table(frame: &mut Frame, state: &mut State, area: ratatui::layout::Rect) {
    let rows = state.rows();
    let titles = titles(state.by).map(|(title, column)| {
        let mark = match column {
            Some(c) if c == state.sort => {
                if state.descending {
                    "▼"
                } else {
                    "▲"
                }
            }
            _ => "",
        };
        Cell::from(format!("{title}{mark}"))
    });
    // Only the rows on screen become cells: a thousand rows' cells cost a
    // third of top's CPU, and all but a screenful were thrown away.
    let shown = window(rows.len(), state.selected, state.offset, usize::from(area.height.saturating_sub(1)));
    let table = Table::new(rows[shown.clone()].iter().map(|r| TableRow::new(cells(r))), WIDTHS)
        .header(TableRow::new(titles).style(Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED)))
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED));
    let selected = (!rows.is_empty()).then(|| state.selected - shown.start);
    let mut table_state = TableState::new().with_selected(selected);
    frame.render_stateful_widget(table, area, &mut table_state);
    state.offset = shown.start;
}

/// The rows a table `height` rows high shows: from `offset`, moved the
/// least that keeps `selected` in sight (as ratatui's table scrolls), and
/// never past the last screenful.
fn window(len: usize, selected: usize, offset: usize, height: usize) -> std::ops::Range<usize> {
    let height = height.max(1);
    let selected = selected.min(len.saturating_sub(1));
    let start = offset.min(selected).max((selected + 1).saturating_sub(height)).min(len.saturating_sub(height));
    start..(start + height).min(len)
}

#[cfg(test)]
mod tests {
    use super::window;

    #[test]
    fn the_window_keeps_the_selection_in_sight() {
        // Nothing to show.
        assert_eq!(window(0, 0, 0, 10), 0..0);
        // Fewer rows than lines.
        assert_eq!(window(3, 2, 0, 10), 0..3);
        // The selection below the screen scrolls down just enough.
        assert_eq!(window(1000, 25, 0, 10), 16..26);
        // Above it, up to the selection.
        assert_eq!(window(1000, 5, 16, 10), 5..15);
        // Within it, the offset stays.
        assert_eq!(window(1000, 20, 16, 10), 16..26);
        // Rows gone since (a smaller view): the last screenful, not past the end.
        assert_eq!(window(12, 11, 40, 10), 2..12);
        // A terminal with no room for rows still shows the selected one.
        assert_eq!(window(1000, 7, 0, 0), 7..8);
    }
}
