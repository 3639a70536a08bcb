//! The exposition: a refresh's readings as OpenMetrics text, written with
//! prometheus-client. Counters the kernel keeps are encoded as they are read
//! (the kernel's totals since boot), not counted again here.
use std::{collections::BTreeMap, fmt, sync::Arc};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, NoLabelSet},
    metrics::MetricType,
    registry::{Registry, Unit},
};

use super::{processes::ProcessSeries, readings::Readings};
use crate::kernel::machine_counters::BalancerDecisions;

/// The content type of the exposition.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

static BYTES: Unit = Unit::Bytes;
static SECONDS: Unit = Unit::Seconds;

/// The exporter's own cost at the moment of a scrape.
#[derive(Clone, Copy, Debug, Default)]
pub struct OwnCost {
    /// CPU time of the exporter process since it started (all threads).
    pub cpu_seconds: f64,
    /// Refreshes that failed (the previous readings stayed served).
    pub refresh_failures: u64,
}

/// The exporter's kernel side at the moment of a scrape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelCounters {
    /// The exporter's programs are attached: the balancer's decisions since
    /// then (`None`: this kernel has no balancer tracepoints).
    Attached(Option<BalancerDecisions>),
    /// Asked for, but BPF was not allowed or the tracepoints are missing.
    Unavailable,
    /// Turned off (`--no-kernel-counters`).
    Off,
}

impl KernelCounters {
    const STATES: [&'static str; 3] = ["attached", "unavailable", "off"];

    fn state(self) -> &'static str {
        match self {
            KernelCounters::Attached(_) => "attached",
            KernelCounters::Unavailable => "unavailable",
            KernelCounters::Off => "off",
        }
    }
}

/// Renders one scrape: the readings of the last refresh, the kernel's
/// balancer counters and the exporter's cost.
pub fn render(readings: Arc<Readings>, own: OwnCost, kernel: KernelCounters) -> Result<String, fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Exposition { readings, own, kernel }));
    let mut out = String::with_capacity(16 << 10);
    prometheus_client::encoding::text::encode(&mut out, &registry)?;
    Ok(out)
}

/// The allocator's per-node counters, by their names in `nodeN/numastat`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NumaEvent {
    Hit,
    Miss,
    Foreign,
    InterleaveHit,
    LocalNode,
    OtherNode,
}

impl NumaEvent {
    const ALL: [NumaEvent; 6] = [
        NumaEvent::Hit,
        NumaEvent::Miss,
        NumaEvent::Foreign,
        NumaEvent::InterleaveHit,
        NumaEvent::LocalNode,
        NumaEvent::OtherNode,
    ];

    fn label(self) -> &'static str {
        match self {
            NumaEvent::Hit => "numa_hit",
            NumaEvent::Miss => "numa_miss",
            NumaEvent::Foreign => "numa_foreign",
            NumaEvent::InterleaveHit => "interleave_hit",
            NumaEvent::LocalNode => "local_node",
            NumaEvent::OtherNode => "other_node",
        }
    }
}

/// Why pages were migrated, as far as /proc/vmstat tells. The reasons
/// partition `pgmigrate_success`: their sum is every migrated page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MigrationReason {
    /// `numa_pages_migrated`: the NUMA balancer moved pages toward the
    /// node of the task that faulted on them (memory-tiering promotions too).
    NumaBalancer,
    /// `pgdemote_*`: memory tiering moved cold pages to a slower node.
    Demotion,
    /// The rest of `pgmigrate_success`: compaction, migrate_pages(2),
    /// move_pages(2), mbind(2), cpuset changes, memory hot-remove.
    Other,
}

impl MigrationReason {
    fn label(self) -> &'static str {
        match self {
            MigrationReason::NumaBalancer => "numa_balancer",
            MigrationReason::Demotion => "demotion",
            MigrationReason::Other => "other",
        }
    }
}

/// The NUMA balancer's /proc/vmstat counters (CONFIG_NUMA_BALANCING).
/// Its task moves and swaps are not among them: the kernel counts those
/// only in the sched_move_numa / sched_swap_numa tracepoints (see
/// `KernelCounters`).
const BALANCER_EVENTS: [&str; 4] =
    ["numa_pte_updates", "numa_huge_pte_updates", "numa_hint_faults", "numa_hint_faults_local"];

#[derive(Debug)]
struct Exposition {
    readings: Arc<Readings>,
    own: OwnCost,
    kernel: KernelCounters,
}

type Labels = Vec<(&'static str, String)>;

impl Collector for Exposition {
    fn encode(&self, mut out: DescriptorEncoder) -> Result<(), fmt::Error> {
        self.encode_nodes(&mut out)?;
        self.encode_vmstat(&mut out)?;
        self.encode_balancer_decisions(&mut out)?;
        self.encode_processes(&mut out)?;
        self.encode_own_cost(&mut out)
    }
}

impl Exposition {
    fn encode_nodes(&self, out: &mut DescriptorEncoder) -> fmt::Result {
        let system = &self.readings.system;
        let mut memory = Vec::new();
        for (node, meminfo) in &system.meminfo {
            for (state, field) in [("total", "MemTotal"), ("free", "MemFree"), ("used", "MemUsed")] {
                if let Some(bytes) = meminfo.get(field) {
                    memory.push((vec![("node", node.to_string()), ("state", state.to_string())], bytes));
                }
            }
        }
        gauges(out, "numatrace_node_memory", "Memory of a NUMA node (nodeN/meminfo).", Some(&BYTES), &memory)?;

        let mut events = Vec::new();
        for (node, counters) in &system.counters {
            for event in NumaEvent::ALL {
                let pages = match event {
                    NumaEvent::Hit => counters.numa_hit,
                    NumaEvent::Miss => counters.numa_miss,
                    NumaEvent::Foreign => counters.numa_foreign,
                    NumaEvent::InterleaveHit => counters.interleave_hit,
                    NumaEvent::LocalNode => counters.local_node,
                    NumaEvent::OtherNode => counters.other_node,
                };
                events.push((vec![("node", node.to_string()), ("event", event.label().to_string())], pages));
            }
        }
        counters(
            out,
            "numatrace_node_numa_events",
            "Page allocations on a NUMA node by outcome, since boot (nodeN/numastat; numa_miss: meant for another node, numa_foreign: meant for this node, landed elsewhere).",
            None,
            &events,
        )
    }

    fn encode_vmstat(&self, out: &mut DescriptorEncoder) -> fmt::Result {
        let system = &self.readings.system;
        let vmstat = &system.vmstat;
        if let Some(by_reason) = migrations_by_reason(vmstat) {
            let series: Vec<(Labels, u64)> = by_reason
                .into_iter()
                .map(|(reason, pages)| (vec![("reason", reason.label().to_string())], pages))
                .collect();
            counters(
                out,
                "numatrace_page_migrations",
                "Pages migrated since boot, by reason (/proc/vmstat: numa_pages_migrated, pgdemote_*, the rest of pgmigrate_success).",
                None,
                &series,
            )?;
        }
        if let Some(&failed) = vmstat.get("pgmigrate_fail") {
            counters(
                out,
                "numatrace_page_migration_failures",
                "Pages that failed to migrate since boot (/proc/vmstat pgmigrate_fail).",
                None,
                &[(Labels::new(), failed)],
            )?;
        }
        let balancer: Vec<(Labels, u64)> = BALANCER_EVENTS
            .iter()
            .filter_map(|&event| vmstat.get(event).map(|&n| (vec![("event", event.to_string())], n)))
            .collect();
        if !balancer.is_empty() {
            counters(
                out,
                "numatrace_numa_balancer_events",
                "The NUMA balancer's work since boot (/proc/vmstat): PTEs it made fault (numa_pte_updates, numa_huge_pte_updates) and the hinting faults they caused (numa_hint_faults; numa_hint_faults_local: on the faulting task's node).",
                None,
                &balancer,
            )?;
        }
        if let Some(mode) = system.sysctl.numa_balancing {
            gauges(
                out,
                "numatrace_numa_balancing_mode",
                "kernel.numa_balancing: 0 off, 1 on, 2 memory tiering, 3 both.",
                None,
                &[(Labels::new(), u64::from(mode))],
            )?;
        }
        Ok(())
    }

    fn encode_balancer_decisions(&self, out: &mut DescriptorEncoder) -> fmt::Result {
        if let KernelCounters::Attached(Some(d)) = self.kernel {
            let series: Vec<(Labels, u64)> = [("move", d.moves), ("swap", d.swaps), ("stick", d.sticks)]
                .into_iter()
                .map(|(decision, n)| (vec![("decision", decision.to_string())], n))
                .collect();
            counters(
                out,
                "numatrace_numa_balancer_task_decisions",
                "The NUMA balancer's task placement decisions on the whole machine since the exporter started, from the sched_move_numa, sched_swap_numa and sched_stick_numa tracepoints (move: a task moved to its preferred node; swap: two tasks swapped nodes; stick: no better CPU found, the task stayed).",
                None,
                &series,
            )?;
        }
        let state = self.kernel.state();
        let states: Vec<(Labels, u64)> = KernelCounters::STATES
            .into_iter()
            .map(|s| (vec![("state", s.to_string())], u64::from(s == state)))
            .collect();
        gauges(
            out,
            "numatrace_exporter_kernel_counters",
            "1 for the state of the exporter's kernel counters (the balancer's task decisions, each process's cross-node migrations and remote first touches): attached (a counter this kernel cannot keep has no series; the exporter said which at start); unavailable (no root or CAP_BPF+CAP_PERFMON, no tracefs, or no such tracepoints); off (--no-kernel-counters).",
            None,
            &states,
        )
    }

    fn encode_processes(&self, out: &mut DescriptorEncoder) -> fmt::Result {
        let table = &self.readings.processes;
        let series: Vec<&ProcessSeries> = table.top.iter().chain(std::iter::once(&table.other)).collect();
        // A cgroup's series has no pid or comm: the labels are left out, not empty.
        let labels = |s: &ProcessSeries| -> Labels {
            [("pid", &s.pid), ("comm", &s.comm), ("cgroup", &s.cgroup)]
                .into_iter()
                .filter(|(_, value)| !value.is_empty())
                .map(|(name, value)| (name, value.clone()))
                .collect()
        };
        let memory: Vec<(Labels, u64)> = series
            .iter()
            .flat_map(|s| {
                s.memory_by_node.iter().map(|(node, bytes)| {
                    let mut l = labels(s);
                    l.push(("node", node.to_string()));
                    (l, *bytes)
                })
            })
            .collect();
        gauges(
            out,
            "numatrace_memory",
            "Resident memory of a process (or, with --by cgroup, a cgroup's processes) per NUMA node (numa_maps, as numastat -p), for the --top largest by resident memory; pid=\"other\" (cgroup=\"other\") sums the rest.",
            Some(&BYTES),
            &memory,
        )?;
        let remote: Vec<(Labels, u64)> =
            series.iter().filter_map(|s| s.remote_memory_bytes.map(|bytes| (labels(s), bytes))).collect();
        gauges(
            out,
            "numatrace_remote_memory",
            "A process's own memory (not file cache) on nodes where its threads did not run, weighted by their run time over the last interval.",
            Some(&BYTES),
            &remote,
        )?;
        let moves: Vec<(Labels, u64)> = series.iter().map(|s| (labels(s), s.cross_node_migrations)).collect();
        counters(
            out,
            "numatrace_cross_node_migrations",
            if table.counted_in_kernel {
                "Moves of a process's threads between CPUs of different nodes since the exporter started, every one, counted in the kernel (sched_migrate_task)."
            } else {
                "Threads of a process seen on another node than at the previous refresh, since the exporter started (a lower bound: a thread that left and came back in between is not seen; the kernel counts every move when the exporter may load BPF programs)."
            },
            None,
            &moves,
        )?;
        let remote_pages: Vec<(Labels, u64)> =
            series.iter().filter_map(|s| s.remote_first_touch_pages.map(|pages| (labels(s), pages))).collect();
        // Only where counted (`--remote-first-touches`): no family of zeros.
        if !remote_pages.is_empty() {
            counters(
                out,
                "numatrace_remote_first_touch_pages",
                "Pages a process first touched (movable pages allocated in its context) on another node than the CPU it ran on, since the exporter started, counted in the kernel (mm_page_alloc) only while the counter is attached: under --overhead-budget it is detached part of the time when it costs more (numatrace_remote_first_touch_counted_ratio), and the counts are not scaled.",
                None,
                &remote_pages,
            )?;
            let mut counted = out.encode_descriptor(
                "numatrace_remote_first_touch_counted_ratio",
                "Share of the last refresh interval the remote first-touch counter was attached (1: all of it; under --overhead-budget it is detached part of the time when it costs more).",
                None,
                MetricType::Gauge,
            )?;
            counted.encode_family(&Labels::new())?.encode_gauge(&self.readings.first_touch_counted_ratio)?;
        }
        let remote_faults: Vec<(Labels, u64)> =
            series.iter().filter_map(|s| s.remote_hinting_faults.map(|faults| (labels(s), faults))).collect();
        // Only where counted (fentry or kprobes on task_numa_fault): no family of zeros.
        if !remote_faults.is_empty() {
            counters(
                out,
                "numatrace_remote_hinting_faults",
                "NUMA hinting faults of a process's threads (the balancer's sampled accesses, only with balancing on) that found the page on another node than the faulting CPU's, since the exporter started, counted in the kernel (task_numa_fault).",
                None,
                &remote_faults,
            )?;
        }
        gauges(
            out,
            "numatrace_exporter_processes",
            "Processes at the last refresh: in series of their own or their cgroup's (top) and summed into \"other\".",
            None,
            &[
                (vec![("in", "top".to_string())], table.processes - table.in_other),
                (vec![("in", "other".to_string())], table.in_other),
            ],
        )?;
        gauges(
            out,
            "numatrace_exporter_processes_memory_unknown",
            "Processes whose numa_maps is not known: not read yet (reads are spread over refreshes), or not readable (another user's, without CAP_SYS_PTRACE).",
            None,
            &[(Labels::new(), table.memory_unknown)],
        )
    }

    fn encode_own_cost(&self, out: &mut DescriptorEncoder) -> fmt::Result {
        let no_labels = Labels::new();
        let mut cpu = out.encode_descriptor(
            "numatrace_exporter_cpu",
            "CPU time the exporter used since it started (user and system, all threads).",
            Some(&SECONDS),
            MetricType::Counter,
        )?;
        cpu.encode_family(&no_labels)?.encode_counter::<NoLabelSet, _, f64>(&self.own.cpu_seconds, None)?;
        let mut took = out.encode_descriptor(
            "numatrace_exporter_scrape_duration",
            "How long the last refresh took to read /proc and /sys, numa_maps included (scrapes serve its result; they only encode it).",
            Some(&SECONDS),
            MetricType::Gauge,
        )?;
        took.encode_family(&no_labels)?.encode_gauge(&self.readings.took.as_secs_f64())?;
        let numa_maps = &self.readings.numa_maps;
        let mut read_took = out.encode_descriptor(
            "numatrace_exporter_numa_maps_read",
            "How long the last refresh spent reading numa_maps (it walks page tables; bounded per refresh, largest processes first).",
            Some(&SECONDS),
            MetricType::Gauge,
        )?;
        read_took.encode_family(&no_labels)?.encode_gauge(&numa_maps.spent.as_secs_f64())?;
        gauges(
            out,
            "numatrace_exporter_numa_maps_processes",
            "Processes whose numa_maps the last refresh read, and those due that it left for a later one.",
            None,
            &[
                (vec![("state", "read".to_string())], u64::from(numa_maps.processes_read)),
                (vec![("state", "left_for_later".to_string())], u64::from(numa_maps.left_for_later)),
            ],
        )?;
        let mut at = out.encode_descriptor(
            "numatrace_exporter_last_refresh_timestamp",
            "When the readings served were taken (Unix time).",
            Some(&SECONDS),
            MetricType::Gauge,
        )?;
        at.encode_family(&no_labels)?.encode_gauge(&(self.readings.system.taken_at_unix_ms as f64 / 1000.0))?;
        counters(
            out,
            "numatrace_exporter_refresh_failures",
            "Refreshes that failed; the readings before them stayed served.",
            None,
            &[(no_labels, self.own.refresh_failures)],
        )
    }
}

/// `pgmigrate_success` split by reason; `None` without it (a kernel without CONFIG_MIGRATION).
fn migrations_by_reason(vmstat: &BTreeMap<String, u64>) -> Option<Vec<(MigrationReason, u64)>> {
    let all = *vmstat.get("pgmigrate_success")?;
    let balancer = vmstat.get("numa_pages_migrated").copied().unwrap_or(0);
    let demoted =
        vmstat.iter().filter(|(k, _)| k.starts_with("pgdemote_")).map(|(_, &v)| v).fold(0, u64::saturating_add);
    let other = all.saturating_sub(balancer).saturating_sub(demoted);
    Some(vec![
        (MigrationReason::NumaBalancer, balancer),
        (MigrationReason::Demotion, demoted),
        (MigrationReason::Other, other),
    ])
}

fn counters<L: EncodeLabelSet>(
    out: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    series: &[(L, u64)],
) -> fmt::Result {
    let mut family = out.encode_descriptor(name, help, unit, MetricType::Counter)?;
    for (labels, value) in series {
        family.encode_family(labels)?.encode_counter::<NoLabelSet, _, u64>(value, None)?;
    }
    Ok(())
}

fn gauges<L: EncodeLabelSet>(
    out: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    series: &[(L, u64)],
) -> fmt::Result {
    let mut family = out.encode_descriptor(name, help, unit, MetricType::Gauge)?;
    for (labels, value) in series {
        family.encode_family(labels)?.encode_gauge(value)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vmstat(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn migration_reasons_add_up_to_every_migrated_page() {
        let v = vmstat(&[
            ("pgmigrate_success", 1000),
            ("numa_pages_migrated", 600),
            ("pgdemote_kswapd", 100),
            ("pgdemote_direct", 50),
        ]);
        let by_reason = migrations_by_reason(&v).expect("pgmigrate_success is there");
        assert_eq!(
            by_reason,
            vec![(MigrationReason::NumaBalancer, 600), (MigrationReason::Demotion, 150), (MigrationReason::Other, 250)]
        );
        assert_eq!(by_reason.iter().map(|(_, n)| n).sum::<u64>(), 1000);
        assert_eq!(migrations_by_reason(&vmstat(&[("numa_pages_migrated", 5)])), None);
    }

    #[test]
    fn renders_this_machine_as_openmetrics() {
        use std::time::Duration;

        use crate::exporter::readings::Refresher;

        let readings = Arc::new(
            Refresher::new(Duration::from_secs(1), 3, crate::system::By::Process).refresh().expect("this machine"),
        );
        let nodes = readings.system.topology.node_ids();
        let decisions = BalancerDecisions { moves: 3, swaps: 2, sticks: 7 };
        let text = render(
            readings,
            OwnCost { cpu_seconds: 0.25, refresh_failures: 1 },
            KernelCounters::Attached(Some(decisions)),
        )
        .expect("renders");
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert!(text.contains("# TYPE numatrace_node_memory_bytes gauge"), "{text}");
        assert!(text.contains("# UNIT numatrace_node_memory_bytes bytes"), "{text}");
        for node in nodes {
            assert!(
                text.contains(&format!("numatrace_node_memory_bytes{{node=\"{node}\",state=\"total\"}} ")),
                "{text}"
            );
            assert!(
                text.contains(&format!("numatrace_node_numa_events_total{{node=\"{node}\",event=\"numa_hit\"}} ")),
                "{text}"
            );
        }
        assert!(text.contains("numatrace_exporter_cpu_seconds_total 0.25\n"), "{text}");
        assert!(text.contains("numatrace_exporter_refresh_failures_total 1\n"), "{text}");
        assert!(text.contains("# TYPE numatrace_numa_balancer_task_decisions counter"), "{text}");
        for (decision, n) in [("move", 3), ("swap", 2), ("stick", 7)] {
            assert!(
                text.contains(&format!(
                    "numatrace_numa_balancer_task_decisions_total{{decision=\"{decision}\"}} {n}\n"
                )),
                "{text}"
            );
        }
        assert!(text.contains("numatrace_exporter_kernel_counters{state=\"attached\"} 1\n"), "{text}");
        assert!(text.contains("numatrace_exporter_kernel_counters{state=\"unavailable\"} 0\n"), "{text}");
    }

    #[test]
    fn without_kernel_counters_says_why_and_serves_no_decisions() {
        use std::time::Duration;

        use crate::exporter::readings::Refresher;

        let readings = Arc::new(
            Refresher::new(Duration::from_secs(1), 3, crate::system::By::Process).refresh().expect("this machine"),
        );
        for (kernel, state) in [(KernelCounters::Unavailable, "unavailable"), (KernelCounters::Off, "off")] {
            let text = render(Arc::clone(&readings), OwnCost::default(), kernel).expect("renders");
            assert!(!text.contains("numatrace_numa_balancer_task_decisions"), "{text}");
            assert!(text.contains(&format!("numatrace_exporter_kernel_counters{{state=\"{state}\"}} 1\n")), "{text}");
            assert!(text.contains("numatrace_exporter_kernel_counters{state=\"attached\"} 0\n"), "{text}");
        }
    }
}
