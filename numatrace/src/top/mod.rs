//! `numatrace top`: the whole machine, refreshed, in the terminal. The
//! state (`state`) is apart from drawing it (`draw`) and from the keys
//! (`input`); `screen` owns the terminal and gives it back on every exit.
pub mod draw;
pub mod input;
pub mod screen;
pub mod state;
pub mod text;

use std::{
    io::{IsTerminal, Write},
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use ratatui::crossterm::event::{self, Event};

use self::{
    input::Action,
    screen::Screen,
    state::{By, State},
};
use crate::{
    kernel::machine_counters::{FirstTouchCounting, MachineCounters, ProcessCounters},
    system::{SystemReader, placements::PlacementOptions},
};

/// Longest wait for a key, so SIGTERM is noticed soon.
const POLL: Duration = Duration::from_millis(200);

/// How `numatrace top` runs.
#[derive(Clone, Debug)]
pub struct TopOptions {
    pub interval: Duration,
    pub by: By,
    pub placements: PlacementOptions,
    /// How long `Enter` traces the selected process.
    pub trace_duration: Duration,
    /// Count cross-node moves and remote first touches in the kernel (when allowed).
    pub kernel_counters: bool,
}

/// top's kernel side, attached when wanted and allowed.
pub struct KernelSide {
    /// The programs stay attached while this is kept.
    pub attached: Option<MachineCounters>,
    /// For the reader.
    pub counters: Option<ProcessCounters>,
    /// One line: what is counted in the kernel.
    pub line: String,
    /// What is not counted though wanted, and why (for `cannot_see`).
    pub not_counted: Vec<String>,
}

/// The kernel's per-process counters, attached when wanted and allowed;
/// else the rows come from /proc alone, and `not_counted` says why.
pub fn kernel_counters(wanted: bool) -> KernelSide {
    let from_proc = |why: String| KernelSide {
        attached: None,
        counters: None,
        line: "moves estimated from /proc".into(),
        not_counted: vec![format!(
            "moves estimated from /proc, remote first touches and remote hinting faults not counted: {why}"
        )],
    };
    if !wanted {
        let mut side = from_proc("kernel counters off (--no-kernel-counters)".into());
        side.not_counted.clear();
        side.line = "kernel counters off (--no-kernel-counters): moves estimated from /proc".into();
        return side;
    }
    // top runs during an incident, minutes at a time: first touches too.
    let mut machine = match MachineCounters::attach(FirstTouchCounting::Counted) {
        Ok(machine) => machine,
        Err(err) => return from_proc(format!("{err:#}")),
    };
    let Some(counters) = machine.take_process_counters() else {
        return from_proc(machine.process_counters_missing().unwrap_or_default());
    };
    let mut counted = vec!["moves"];
    let mut not_counted = Vec::new();
    match machine.first_touches_missing() {
        None => counted.push("remote first touches"),
        Some(why) => not_counted.push(format!("not counted: {why}")),
    }
    match machine.hinting_faults_missing() {
        None => counted.push("remote hinting faults"),
        Some(why) => not_counted.push(format!("not counted: {why}")),
    }
    let mut line = format!("counted in the kernel: {}", counted.join(", "));
    for why in &not_counted {
        line.push_str("; ");
        line.push_str(why);
    }
    KernelSide { attached: Some(machine), counters: Some(counters), line, not_counted }
}

/// Runs the TUI until `q`, Ctrl-C or SIGTERM/SIGHUP; returns the exit code.
pub fn run(options: &TopOptions) -> Result<i32> {
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        bail!("numatrace top needs a terminal; for scripts use `numatrace top --once --json`");
    }
    let stop = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGTERM, stop.clone())
        .context("installing the signal handlers")?;
    // While a trace runs (the terminal cooked), Ctrl-C is for the trace, not for top.
    signal_hook::flag::register(signal_hook::consts::SIGINT, Arc::new(AtomicBool::new(false)))
        .context("installing the signal handlers")?;
    // A hung-up terminal has nothing to restore, and crossterm's read of it
    // would spin on end-of-file for ever: end at once.
    signal_hook::flag::register_conditional_shutdown(signal_hook::consts::SIGHUP, 129, Arc::new(AtomicBool::new(true)))
        .context("installing the signal handlers")?;
    let mut reader = SystemReader::new(options.placements);
    // Attached before the first sample, so that its counts cover every interval.
    let KernelSide { attached: _attached, counters, line: kernel_line, .. } = kernel_counters(options.kernel_counters);
    if let Some(counters) = counters {
        reader.count_in_kernel(counters);
    }
    let mut state = State::new(options.by);
    let mut earlier = reader.sample()?;
    // Rates need an interval: the first screen has the rows, its rates come a refresh later.
    state.set_view(reader.view(&earlier, &earlier));
    state.status = format!("{}\n{kernel_line}", cost_line(&reader, options));
    let mut screen = Screen::enter()?;
    let mut next = Instant::now() + options.interval;
    // Drawn when something changed: a refresh, a key, a resize (a thousand rows cost).
    let mut changed = true;
    while !stop.load(Ordering::Relaxed) {
        if changed {
            screen.terminal.draw(|f| draw::draw(f, &mut state)).context("drawing the screen")?;
            changed = false;
        }
        if event::poll(next.saturating_duration_since(Instant::now()).min(POLL)).context("reading the keyboard")? {
            changed = true;
            if let Event::Key(key) = event::read().context("reading the keyboard")? {
                match input::handle(&mut state, key) {
                    Action::None => {}
                    Action::Quit => break,
                    Action::Trace(pid) => {
                        drop(screen);
                        trace(pid, options.trace_duration);
                        screen = Screen::enter()?;
                        screen.terminal.clear().context("clearing the screen")?;
                    }
                }
            }
        }
        if Instant::now() >= next {
            let now = reader.sample()?;
            state.set_view(reader.view(&earlier, &now));
            state.status = format!("{}\n{kernel_line}", cost_line(&reader, options));
            earlier = now;
            next = Instant::now() + options.interval;
            changed = true;
        }
    }
    Ok(0)
}

/// What the last refresh spent on numa_maps, and the bound.
fn cost_line(reader: &SystemReader, options: &TopOptions) -> String {
    let c = reader.placement_cost();
    format!(
        "numa_maps: {} process(es), {} resident, read in {} ms this refresh (each process at most every {} s, at most {} ms per refresh)",
        c.processes_read,
        draw::short_bytes(c.resident_bytes),
        c.spent.as_millis(),
        options.placements.period.as_secs(),
        options.placements.budget.unwrap_or_default().as_millis()
    )
}

/// Runs `numatrace --pid PID --duration D` on the plain terminal, then waits for a key.
fn trace(pid: u32, duration: Duration) {
    let mut out = std::io::stdout();
    let _ = writeln!(
        out,
        "numatrace top: tracing process {pid} for {} (Ctrl-C stops it early) ...",
        humantime::format_duration(duration)
    );
    let status = std::env::current_exe().context("finding numatrace's own executable").and_then(|exe| {
        Command::new(exe)
            .args(["--pid", &pid.to_string(), "--duration", &humantime::format_duration(duration).to_string()])
            .status()
            .context("starting the trace")
    });
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => {
            let _ = writeln!(out, "numatrace top: the trace ended with {s}");
        }
        Err(e) => {
            let _ = writeln!(out, "numatrace top: {e:#}");
        }
    }
    let _ = write!(out, "\nPress any key to return to numatrace top.");
    let _ = out.flush();
    wait_for_key();
}

fn wait_for_key() {
    if ratatui::crossterm::terminal::enable_raw_mode().is_err() {
        return;
    }
    while let Ok(e) = event::read() {
        if matches!(e, Event::Key(k) if k.kind != event::KeyEventKind::Release) {
            break;
        }
    }
    let _ = ratatui::crossterm::terminal::disable_raw_mode();
}
