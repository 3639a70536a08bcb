//! Keys to actions. While the filter is typed, keys edit it; otherwise each
//! key is a command (the footer lists them).
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::state::{Column, State};

/// What a key asks for beyond changing the state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Nothing more: redraw.
    None,
    Quit,
    /// Trace the selected process live, then come back.
    Trace(u32),
}

/// Applies a key to the state.
pub fn handle(state: &mut State, key: KeyEvent) -> Action {
    if key.kind == KeyEventKind::Release {
        return Action::None;
    }
    if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
        return Action::Quit;
    }
    if state.filter.editing {
        match key.code {
            KeyCode::Enter => state.filter.editing = false,
            KeyCode::Esc => {
                state.filter.editing = false;
                state.filter.text.clear();
            }
            KeyCode::Backspace => {
                state.filter.text.pop();
            }
            KeyCode::Char(c) => state.filter.text.push(c),
            _ => {}
        }
        state.selected = 0;
        return Action::None;
    }
    match key.code {
        KeyCode::Char('q') => return Action::Quit,
        KeyCode::Char('/') => {
            state.filter.editing = true;
            state.filter.text.clear();
        }
        KeyCode::Esc => state.filter.text.clear(),
        KeyCode::Char('p') => state.sort_by(Column::Pid),
        KeyCode::Char('n') => state.sort_by(Column::Name),
        KeyCode::Char('c') => state.sort_by(Column::Cgroup),
        KeyCode::Char('m') => state.sort_by(Column::Memory),
        KeyCode::Char('r') => state.sort_by(Column::Remote),
        KeyCode::Char('x') => state.sort_by(Column::Migrations),
        KeyCode::Char('f') => state.sort_by(Column::RemoteFirstTouches),
        KeyCode::Char('h') => state.sort_by(Column::RemoteHintingFaults),
        KeyCode::Char('t') => state.sort_by(Column::Tag),
        KeyCode::Char('g') => state.toggle_by(),
        KeyCode::Up | KeyCode::Char('k') => state.move_selection(-1),
        KeyCode::Down | KeyCode::Char('j') => state.move_selection(1),
        KeyCode::PageUp => state.move_selection(-20),
        KeyCode::PageDown => state.move_selection(20),
        KeyCode::Home => state.selected = 0,
        KeyCode::Enter => {
            if let Some(pid) = state.selected_pid() {
                return Action::Trace(pid);
            }
            state.status = "Enter traces a process: show processes (g) and select one".into();
        }
        _ => {}
    }
    Action::None
}

/// The key line the footer shows.
pub const HELP: &str = "q quit  / filter (node:N cgroup:X name)  sort: r remote m memory x moves f remote first touches h remote hinting faults p pid n name c cgroup t tag  g by cgroup  Enter trace";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::top::state::By;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    #[test]
    fn keys_edit_the_filter_then_command_again() {
        let mut s = State::new(By::Process);
        assert_eq!(handle(&mut s, key(KeyCode::Char('/'))), Action::None);
        for c in "q/x".chars() {
            assert_eq!(handle(&mut s, key(KeyCode::Char(c))), Action::None, "typed, not a command");
        }
        handle(&mut s, key(KeyCode::Backspace));
        handle(&mut s, key(KeyCode::Enter));
        assert_eq!((s.filter.text.as_str(), s.filter.editing), ("q/", false));
        handle(&mut s, key(KeyCode::Char('m')));
        assert_eq!((s.sort, s.descending), (Column::Memory, true));
        assert_eq!(handle(&mut s, key(KeyCode::Char('q'))), Action::Quit);
        assert_eq!(handle(&mut s, KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)), Action::Quit);
    }
}
