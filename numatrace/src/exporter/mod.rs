//! `numatrace exporter`: a long-running OpenMetrics endpoint for Prometheus.
//!
//! A background task reads the machine every interval (`readings`, through
//! the system view `numatrace top` also shows; `processes` bounds the
//! per-process series); a scrape encodes the last complete reading
//! (`openmetrics`) and never reads /proc itself, so scrapes are cheap and
//! each is one consistent moment. `http` serves it. Everything comes from
//! /proc and /sys but the NUMA balancer's task decisions, which the kernel
//! counts only in tracepoints: where BPF is allowed, three small programs
//! count them (`kernel::balancer_decisions`), read at each scrape.
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

use crate::{kernel::balancer_decisions::BalancerCounters, system::By};

use self::{
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
    /// Count the balancer's task decisions in the kernel (when allowed).
    pub kernel_counters: bool,
}

/// What the server's tasks share: the last complete readings and the refresher's failures.
#[derive(Debug)]
pub struct Shared {
    readings: watch::Receiver<Arc<Readings>>,
    refresh_failures: AtomicU64,
    /// The balancer's decision counters, or why there are none.
    balancer: Balancer,
}

/// Whether the balancer's task decisions are counted.
enum Balancer {
    Attached(Box<Mutex<BalancerCounters>>),
    Unavailable,
    Off,
}

impl std::fmt::Debug for Balancer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Balancer::Attached(_) => "attached",
            Balancer::Unavailable => "unavailable",
            Balancer::Off => "off",
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
        match &self.balancer {
            Balancer::Attached(counters) => match counters.lock().unwrap_or_else(PoisonError::into_inner).read() {
                Ok(decisions) => KernelCounters::Attached(decisions),
                Err(_) => KernelCounters::Unavailable,
            },
            Balancer::Unavailable => KernelCounters::Unavailable,
            Balancer::Off => KernelCounters::Off,
        }
    }
}

/// Attaches the balancer's decision counters, or says once why not.
fn balancer(wanted: bool) -> Balancer {
    if !wanted {
        return Balancer::Off;
    }
    match BalancerCounters::attach() {
        Ok(counters) => Balancer::Attached(Box::new(Mutex::new(counters))),
        Err(err) => {
            eprintln!(
                "numatrace exporter: the balancer's task moves, swaps and sticks are not counted (the rest is served): {err:#}"
            );
            Balancer::Unavailable
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
    let refresher = Arc::new(Mutex::new(Refresher::new(opts.interval, opts.top, opts.by)));
    // The first readings before the first scrape: a scrape never sees nothing.
    let first = read(&refresher).await.context("reading the machine")?;
    let (publish, readings) = watch::channel(Arc::new(first));
    let balancer = balancer(opts.kernel_counters);
    let shared = Arc::new(Shared { readings, refresh_failures: AtomicU64::new(0), balancer });
    tokio::spawn(refresh(refresher, publish, Arc::clone(&shared), opts.interval));
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
            Ok(readings) => {
                publish.send_replace(Arc::new(readings));
            }
            Err(err) => {
                shared.refresh_failures.fetch_add(1, Ordering::Relaxed);
                eprintln!("numatrace exporter: refresh failed, serving the previous readings: {err:#}");
            }
        }
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
