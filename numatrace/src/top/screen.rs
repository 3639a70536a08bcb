//! The terminal while the TUI runs: raw mode and the alternate screen,
//! restored on every way out: `q`, Ctrl-C (a key in raw mode), an error
//! (the guard's drop), SIGTERM (a flag the loop checks), a panic (a hook
//! that restores before the message is printed). SIGHUP ends top at once:
//! the terminal is gone.
use std::{
    io::{self, Stdout, stdout},
    sync::Once,
};

use anyhow::{Context, Result};
use ratatui::{
    Terminal,
    backend::CrosstermBackend,
    crossterm::{
        cursor::{Hide, Show},
        execute,
        terminal::{EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode},
    },
};

/// The TUI's terminal; dropping it gives the terminal back as it was.
pub struct Screen {
    pub terminal: Terminal<CrosstermBackend<Stdout>>,
}

impl Screen {
    pub fn enter() -> Result<Screen> {
        static HOOK: Once = Once::new();
        HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                restore();
                previous(info);
            }));
        });
        let open = || -> Result<Screen> {
            enable_raw_mode().context("switching the terminal to raw mode")?;
            execute!(stdout(), EnterAlternateScreen, Hide).context("entering the alternate screen")?;
            let terminal = Terminal::new(CrosstermBackend::new(stdout())).context("opening the terminal")?;
            Ok(Screen { terminal })
        };
        // A failure half way still gives the terminal back.
        open().inspect_err(|_| restore())
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        restore();
    }
}

/// Leaves raw mode and the alternate screen, shows the cursor. Safe to call twice.
pub fn restore() {
    let _ = disable_raw_mode();
    let _ = execute!(io::stdout(), LeaveAlternateScreen, Show);
}
