//! `numatrace top --once` as text: the header and the table, as the TUI
//! shows them, for a terminal or a log.
use std::fmt::Write;

use numatrace_core::system::SystemView;

use super::{
    draw::{COLUMNS, cells, header_lines, titles},
    state::{By, State},
};

pub fn render(view: &SystemView, by: By) -> String {
    let mut out = String::new();
    for line in header_lines(view) {
        let _ = writeln!(out, "{line}");
    }
    let mut state = State::new(by);
    state.set_view(view.clone());
    let mut table: Vec<[String; COLUMNS]> = vec![titles(by).map(|(t, _)| t.to_string())];
    table.extend(state.rows().iter().map(cells));
    let widths: Vec<usize> =
        (0..COLUMNS).map(|i| table.iter().map(|r| r[i].chars().count()).max().unwrap_or(0)).collect();
    let _ = writeln!(out);
    for row in &table {
        let line: Vec<String> = row.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    for s in &view.cannot_see {
        let _ = writeln!(out, "cannot see: {s}");
    }
    out
}
