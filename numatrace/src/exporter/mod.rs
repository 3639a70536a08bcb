//! `numatrace exporter`: a long-running OpenMetrics endpoint for Prometheus.
//!
//! A background task reads the machine every interval (`readings`, through
//! the system view `numatrace top` also shows; `processes` bounds the
//! per-process series); a scrape encodes the last complete reading
//! (`openmetrics`) and never reads /proc itself, so scrapes are cheap and
//! each is one consistent moment. `http` serves it. Everything comes from
//! /proc and /sys but what the kernel counts only in tracepoints: where BPF
//! is allowed, small programs count the NUMA balancer's task decisions (read
//! at each scrape) and every process's cross-node migrations and remote
//! first touches (read with the processes at each refresh), see
//! `kernel::machine_counters`. Under `--overhead-budget`, the first-touch
//! counter is detached part of the time when it costs more (`first_touch_budget`).
pub mod first_touch_budget;
pub mod http;
pub mod openmetrics;
pub mod processes;
pub mod readings;

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::{Context, Result};
use tokio::{net::TcpListener, sync::watch};

use crate::{
    kernel::machine_counters::{FirstTouchCounting, MachineCounters, ProcessCounters},
    system::By,
};

use self::{
    first_touch_budget::FirstTouchBudget,
    openmetrics::{KernelCounters, OwnCost},
    readings::{Readings, Refresher},
};

/// What `numatrace exporter` was asked to do.
#[derive(Clone, Debug)]
pub struct Options {
    pub listen: SocketAddr,
    /// How often the machine is read again.
    pub interval: Duration,
    /// How many of the largest processes (or cgroups) get series of their own.
    pub top: usize,
    /// Series per process or per cgroup.
    pub by: By,
    /// Count the balancer's task decisions and each process's cross-node
    /// migrations in the kernel (when allowed).
    pub kernel_counters: bool,
    /// Also count each process's remote first touches there: a program on
    /// every page allocation of the machine, so only when asked for.
    pub remote_first_touches: bool,
    /// With remote first touches: the exporter's CPU budget in percent of
    /// one core, kept by detaching their counter part of the time.
    pub overhead_budget: Option<f64>,
}

/// How often the overhead budget measures and decides (the capture's tick).
const BUDGET_TICK: Duration = Duration::from_millis(100);

/// What the server's tasks share: the last complete readings and the refresher's failures.
#[derive(Debug)]
pub struct Shared {
    readings: watch::Receiver<Arc<Readings>>,
    refresh_failures: AtomicU64,
    /// The kernel's counters, or why there are none.
    kernel: Kernel,
    /// The first-touch counter's duty cycle, under `--overhead-budget`.
    first_touch_budget: Option<Mutex<FirstTouchBudget>>,
}

/// Whether the kernel counts anything for the exporter.
enum Kernel {
    Attached(Box<Mutex<MachineCounters>>),
    Unavailable,
    Off,
}

impl std::fmt::Debug for Kernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kernel::Attached(_) => "attached",
            Kernel::Unavailable => "unavailable",
            Kernel::Off => "off",
        })
    }
}

impl Shared {
    fn readings(&self) -> Arc<Readings> {
        Arc::clone(&self.readings.borrow())
    }

    fn own_cost(&self) -> OwnCost {
        OwnCost { cpu_seconds: own_cpu_seconds(), refresh_failures: self.refresh_failures.load(Ordering::Relaxed) }
    }

    /// The balancer's decisions now (a few per-CPU map reads).
    fn kernel_counters(&self) -> KernelCounters {
        match &self.kernel {
            Kernel::Attached(counters) => {
                match counters.lock().unwrap_or_else(PoisonError::into_inner).balancer_decisions().transpose() {
                    Ok(decisions) => KernelCounters::Attached(decisions),
                    Err(_) => KernelCounters::Unavailable,
                }
            }
            Kernel::Unavailable => KernelCounters::Unavailable,
            Kernel::Off => KernelCounters::Off,
        }
    }

    /// The share of the last refresh interval the first-touch counter was
    /// attached (1 without a budget).
    fn first_touch_counted_ratio(&self) -> f64 {
        self.first_touch_budget
            .as_ref()
            .map_or(1.0, |b| b.lock().unwrap_or_else(PoisonError::into_inner).counted_ratio())
    }
}

/// Attaches the kernel's counters, or says once why not (or which are
/// missing); the per-process ones go to the refresher.
fn kernel(opts: &Options) -> (Kernel, Option<ProcessCounters>) {
    if !opts.kernel_counters {
        return (Kernel::Off, None);
    }
    let first_touches =
        if opts.remote_first_touches { FirstTouchCounting::Counted } else { FirstTouchCounting::NotCounted };
    match MachineCounters::attach(first_touches) {
        Ok(mut counters) => {
            let processes = counters.take_process_counters();
            let mut missing = Vec::new();
            if let Some(why) = counters.process_counters_missing() {
                missing.push(format!("cross-node migrations are estimated from /proc ({why})"));
            } else {
                if let Some(why) = counters.first_touches_missing() {
                    missing.push(format!("remote first touches are not counted ({why})"));
                }
                if let Some(why) = counters.hinting_faults_missing() {
                    missing.push(format!("remote hinting faults per process are not counted ({why})"));
                }
            }
            if let Some(status) = counters.sources.first().filter(|s| !s.attached) {
                missing.push(format!(
                    "the balancer's task moves, swaps and sticks are not counted ({})",
                    status.reason.as_deref().unwrap_or("not attached")
                ));
            }
            if !missing.is_empty() {
                eprintln!("numatrace exporter: {}", missing.join("; "));
            }
            (Kernel::Attached(Box::new(Mutex::new(counters))), processes)
        }
        Err(err) => {
            eprintln!(
                "numatrace exporter: the balancer's task moves, swaps and sticks are not counted and cross-node migrations are estimated from /proc (the rest is served): {err:#}"
            );
            (Kernel::Unavailable, None)
        }
    }
}

/// Runs the exporter until SIGINT or SIGTERM. Fails at start when the
/// address cannot be listened on or the machine's nodes cannot be read.
pub fn run(opts: &Options) -> Result<()> {
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the event loop")?;
    runtime.block_on(serve(opts))
}

async fn serve(opts: &Options) -> Result<()> {
    let listener = TcpListener::bind(opts.listen).await.with_context(|| format!("cannot listen on {}", opts.listen))?;
    let bound = listener.local_addr().context("reading the address listened on")?;
    // Attached before the first reading, so that the per-process counts cover every interval.
    let (kernel, processes) = kernel(opts);
    let mut refresher = Refresher::new(opts.interval, opts.top, opts.by);
    if let Some(processes) = processes {
        refresher.count_in_kernel(processes);
    }
    let refresher = Arc::new(Mutex::new(refresher));
    // The first readings before the first scrape: a scrape never sees nothing.
    let first_touch_budget = match (&kernel, opts.overhead_budget) {
        (Kernel::Attached(counters), Some(percent))
            if counters.lock().unwrap_or_else(PoisonError::into_inner).counts_first_touches() =>
        {
            Some(Mutex::new(FirstTouchBudget::new(percent).context("starting the overhead budget")?))
        }
        _ => None,
    };
    let first = read(&refresher).await.context("reading the machine")?;
    let (publish, readings) = watch::channel(Arc::new(first));
    let budgeted = first_touch_budget.is_some();
    let shared = Arc::new(Shared { readings, refresh_failures: AtomicU64::new(0), kernel, first_touch_budget });
    tokio::spawn(refresh(refresher, publish, Arc::clone(&shared), opts.interval));
    if budgeted {
        tokio::spawn(keep_budget(Arc::clone(&shared)));
    }
    // The address actually bound (port 0 picks one), for whoever started us.
    println!(
        "numatrace exporter: serving http://{bound}/metrics, read every {}",
        humantime::format_duration(opts.interval)
    );
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    let shutdown = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
    };
    http::serve(listener, shared, shutdown).await;
    Ok(())
}

/// One refresh, on the blocking pool (it reads files).
async fn read(refresher: &Arc<Mutex<Refresher>>) -> Result<Readings> {
    let refresher = Arc::clone(refresher);
    tokio::task::spawn_blocking(move || {
        // A refresh that panicked left nothing half-written that matters: carry on.
        refresher.lock().unwrap_or_else(PoisonError::into_inner).refresh()
    })
    .await
    .context("the refresh stopped")?
}

/// Reads the machine every `interval` and publishes each complete reading.
async fn refresh(
    refresher: Arc<Mutex<Refresher>>,
    publish: watch::Sender<Arc<Readings>>,
    shared: Arc<Shared>,
    interval: Duration,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is now: the first reading is already there
    loop {
        tick.tick().await;
        match read(&refresher).await {
            Ok(mut readings) => {
                // Right after the counts were read: the interval they cover.
                readings.first_touch_counted_ratio = shared.first_touch_counted_ratio();
                publish.send_replace(Arc::new(readings));
            }
            Err(err) => {
                shared.refresh_failures.fetch_add(1, Ordering::Relaxed);
                eprintln!("numatrace exporter: refresh failed, serving the previous readings: {err:#}");
            }
        }
    }
}

/// Ticks the overhead budget: measures the exporter's CPU and attaches or
/// detaches the first-touch counter as its duty cycle asks.
async fn keep_budget(shared: Arc<Shared>) {
    let (Some(budget), Kernel::Attached(counters)) = (&shared.first_touch_budget, &shared.kernel) else { return };
    let mut tick = tokio::time::interval(BUDGET_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // A few microseconds (a /proc/vmstat read), a raw tracepoint's
        // attach or detach now and then: done in place.
        let mut budget = budget.lock().unwrap_or_else(PoisonError::into_inner);
        budget.tick(&mut counters.lock().unwrap_or_else(PoisonError::into_inner));
    }
}

/// CPU time of this process so far (all threads), in seconds.
fn own_cpu_seconds() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid pointer to a timespec; the clock id is a constant.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0.0;
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}
