//! How much of the process's memory, and of the accesses the kernel
//! sampled, is remote, and what it costs: the size the headline gives, and
//! the floor below which the causes are details rather than a diagnosis.
use serde::{Deserialize, Serialize};

use super::{Cause, ProcessContext};
use crate::aggregate::Aggregator;

/// Below this share of the process's memory and of its sampled accesses,
/// remote memory is not drift of consequence (the runtime's own pages, a
/// page touched before a move).
pub const FLOOR: f64 = 0.02;

/// Remote memory below this many pages (1 MiB) is noise whatever its share.
pub const SIGNIFICANT_PAGES: u64 = 256;

/// What the causes' shares are shares of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShareBasis {
    /// Remote NUMA hinting faults (pages): the kernel's own sample of which
    /// thread reached which memory from where (NUMA balancing on).
    RemoteHintingFaults,
    /// Pages remote at first touch, and pages remote to where their users
    /// ran, weighed by the users' run time (no hinting faults).
    RemotePagesByRunTime,
}

/// What the remote memory costs, as the kernel counted it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Cost {
    /// Remote hinting faults per second of capture.
    pub remote_hinting_faults_per_s: f64,
    /// Pages the NUMA balancer migrated (numa_misplaced): its repairs and its churn.
    pub balancer_pages_migrated: u64,
    /// Pages migrate_pages/move_pages/mbind moved.
    pub explicit_pages_migrated: u64,
    /// Time the kernel spent in misplaced-page migration, where measured.
    pub misplaced_migration_ms: f64,
    /// Task moves and swaps by the NUMA balancer.
    pub balancer_task_moves: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Magnitude {
    /// Pages of the process seen: first touched during the capture, plus
    /// what was resident at the start of an attach.
    pub memory_pages: u64,
    /// Remote pages over every cause (at most `memory_pages`).
    pub remote_pages: u64,
    pub remote_memory_share: f64,
    /// Hinting faults, all and remote (0 without NUMA balancing).
    pub hinting_faults: u64,
    pub remote_hinting_faults: u64,
    /// Remote share of the hinting faults, when there were any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_access_share: Option<f64>,
    pub share_basis: ShareBasis,
    /// At or above [`FLOOR`] of memory or accesses, and at least [`SIGNIFICANT_PAGES`].
    pub of_consequence: bool,
    pub cost: Cost,
}

/// Measures a finished capture's remote memory against the process's.
pub fn measure(agg: &Aggregator, ctx: &ProcessContext, causes: &[Cause], duration_s: f64) -> Magnitude {
    // Under an overhead budget's sampling, pages from first touches are of
    // the traced regions: scaled to the whole process here, so that the
    // floor (and the share against memory resident before) judge it whole.
    let scale = agg.first_touch_scale();
    let scaled = |pages: u64| (pages as f64 * scale).round() as u64;
    let touched: u64 = scaled(agg.all_threads().map(|t| t.first_touch_total()).sum());
    let resident_before: u64 =
        if ctx.started_by_numatrace { 0 } else { ctx.pages_by_node_at_start.iter().map(|(_, p)| p).sum() };
    let memory_pages = touched + resident_before;
    let remote_pages = causes
        .iter()
        .map(|c| if c.kind == super::CauseKind::PlacedBeforeCapture { c.pages } else { scaled(c.pages) })
        .sum::<u64>()
        .min(memory_pages.max(1));
    let (local, remote) =
        agg.all_threads().fold((0, 0), |(l, r), t| (l + t.hinting_faults_local, r + t.hinting_faults_remote));
    let hinting_faults = local + remote;
    let remote_access_share = (hinting_faults > 0).then(|| remote as f64 / hinting_faults as f64);
    let remote_memory_share = if memory_pages > 0 { remote_pages as f64 / memory_pages as f64 } else { 0.0 };
    let of_consequence = remote_pages >= SIGNIFICANT_PAGES
        && (remote_memory_share >= FLOOR || remote_access_share.is_some_and(|s| s >= FLOOR));
    let migrated = |reasons: &[&str]| -> u64 {
        agg.page_migrations.iter().filter(|(r, _)| reasons.contains(&r.as_str())).map(|(_, m)| m.succeeded).sum()
    };
    let cost = Cost {
        remote_hinting_faults_per_s: if duration_s > 0.0 { remote as f64 / duration_s } else { 0.0 },
        balancer_pages_migrated: migrated(&["numa_misplaced"]),
        explicit_pages_migrated: migrated(&["syscall_or_cpuset", "mempolicy_mbind"]),
        misplaced_migration_ms: agg.all_threads().map(|t| t.misplaced_migration_ns).sum::<u64>() as f64 / 1e6,
        balancer_task_moves: agg.all_threads().map(|t| t.numa_task_moves + t.numa_task_swaps).sum(),
    };
    Magnitude {
        memory_pages,
        remote_pages,
        remote_memory_share,
        hinting_faults,
        remote_hinting_faults: remote,
        remote_access_share,
        share_basis: if hinting_faults > 0 {
            ShareBasis::RemoteHintingFaults
        } else {
            ShareBasis::RemotePagesByRunTime
        },
        of_consequence,
        cost,
    }
}

fn mib(pages: u64) -> String {
    let mib = pages as f64 * 4096.0 / (1u64 << 20) as f64;
    if mib < 10.0 { format!("{mib:.1} MiB") } else { format!("{mib:.0} MiB") }
}

impl Magnitude {
    /// "12% of its memory (64 MiB of 530 MiB) is remote to the threads using
    /// it, and 48% of the accesses the kernel sampled".
    pub fn sentence(&self) -> String {
        let mut s = format!(
            "{:.0}% of its memory ({} of {}) is remote to the threads using it",
            self.remote_memory_share * 100.0,
            mib(self.remote_pages),
            mib(self.memory_pages)
        );
        if let Some(a) = self.remote_access_share {
            s.push_str(&format!(", and {:.0}% of the accesses the kernel sampled (hinting faults)", a * 100.0));
        }
        s
    }

    /// What it cost, as one line (empty when nothing was paid).
    pub fn cost_line(&self) -> Option<String> {
        let c = &self.cost;
        let mut parts = Vec::new();
        if self.remote_hinting_faults > 0 {
            parts.push(format!("{:.0} remote hinting faults/s", c.remote_hinting_faults_per_s));
        }
        if c.balancer_pages_migrated > 0 {
            parts.push(format!("{} migrated by the balancer", mib(c.balancer_pages_migrated)));
        }
        if c.misplaced_migration_ms > 0.0 {
            parts.push(format!("{:.0} ms of kernel time migrating", c.misplaced_migration_ms));
        }
        if c.explicit_pages_migrated > 0 {
            parts.push(format!("{} moved by explicit calls", mib(c.explicit_pages_migrated)));
        }
        if c.balancer_task_moves > 0 {
            parts.push(format!("{} balancer task moves", c.balancer_task_moves));
        }
        (!parts.is_empty()).then(|| parts.join(", "))
    }
}
