//! Loading the kernel programs, attaching them source by source, and reading
//! back what they counted. Nothing here interprets events.
pub mod btf_fields;
pub mod first_touch_programs;
pub mod layouts;
pub mod machine_counters;
pub mod page_map;
pub mod privileges;
pub mod requirements;
pub mod sources;
pub mod support;
pub mod tgid_bits;
pub mod tracefs;

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, MapData, PerCpuArray, RingBuf},
};
use numatrace_common::{
    CONFIG_GLOBAL, COUNTER_SLOTS, CPU_NODE_MAP, Config, EVENTS_MAP, EventKind, FIRST_TOUCH_RUN_MAP, HINTING_RUN_MAP,
    LAYOUTS_GLOBAL, LOSS_MAP, Loss, MAX_CPUS, MAX_PFN_BLOCKS, MAX_STACKS, NODE_UNKNOWN, PFN_BLOCK_NODE_MAP,
    PROCESS_COUNTS_MAP, PendingRun, SAMPLING_MAP, SENT_MAP, STACKS_MAP, Sampling, TRACKED_TGIDS_MAP, TRACKED_TIDS_MAP,
};

use numatrace_core::{
    event::Event,
    kernel_status::{KernelTotals, LostCount, SourceStatus},
    machine::Topology,
};

use self::tracefs::Tracefs;

/// The compiled kernel programs, embedded at build time (see build.rs).
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/numatrace.bpf.o"));

/// How to load the programs for one capture (the target is apart: the
/// same options serve any target).
#[derive(Clone, Debug)]
pub struct ProbeOptions {
    /// Also trace processes the target creates.
    pub follow_children: bool,
    /// Bytes of the kernel-to-user event ring (rounded up to a power of two).
    pub ring_bytes: u32,
    /// Never use raw or BTF-typed tracepoints (their classic forms instead).
    pub classic_tracepoints: bool,
    /// Also attach the benchmark load generator (synthetic events on the
    /// target's `getppid` calls; see numatrace-ebpf's load_generator.rs).
    #[cfg(feature = "bench-hooks")]
    pub load_generator: bool,
    /// Send every thread migration as an event, also those within a node
    /// (by default the kernel only counts those).
    pub all_migrations: bool,
    /// Take the user call stack as each first-touch and hinting-fault run
    /// starts (`--stacks`).
    pub stacks: bool,
}

/// Which processes the programs let through, fixed at load.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TracedSet {
    /// The first traced process (one compare in every program).
    pub tgid: u32,
    /// Other processes are added with [`Probes::track_processes`] (several
    /// pids, a tree, a cgroup).
    pub more: bool,
    /// The cgroup v2 id whose joiners are added by the kernel (0: none).
    pub cgroup_id: u64,
}

/// Loaded and attached programs.
pub struct Probes {
    ebpf: Ebpf,
    /// What the kernel's BTF says about `task_struct` and `struct page`.
    structs: btf_fields::KernelStructs,
    /// Programs that cannot work on this kernel, and why (see `requirements`).
    unmet: BTreeMap<&'static str, String>,
    /// The traced cgroup's id (0: none): its joiners need [`sources::CGROUP_JOINS`].
    cgroup_id: u64,
    /// The traced processes besides the first, shared with the kernel
    /// (`None` when only one process can be traced).
    tgid_bits: Option<tgid_bits::TgidBits>,
    classic_tracepoints: bool,
    #[cfg(feature = "bench-hooks")]
    load_generator: bool,
    pub sources: Vec<SourceStatus>,
    /// Tracepoint links of the attached programs (to pause the first-touch ones).
    links: Vec<(&'static sources::Attach, sources::TracepointLink)>,
    /// First-touch programs detached by [`Probes::pause_first_touch`], in detach order.
    paused: Vec<&'static sources::Attach>,
}

impl Probes {
    /// Checks privileges, loads the object with this kernel's layouts and
    /// this machine's topology, and attaches every source it can.
    pub fn load(traced: TracedSet, opts: &ProbeOptions, topology: &Topology, tracefs: &Tracefs) -> Result<Probes> {
        crate::kernel::privileges::require_bpf()?;
        let structs = btf_fields::read(std::path::Path::new(btf_fields::VMLINUX_BTF));
        let layouts = layouts::read(tracefs, &structs);
        let cpu_nodes = topology.cpu_node_table();
        if cpu_nodes.len() as u32 > MAX_CPUS {
            bail!("this machine has {} CPUs; numatrace supports up to {MAX_CPUS}", cpu_nodes.len());
        }
        let config = Config {
            target_tgid: traced.tgid,
            tgid_set: u32::from(traced.more || traced.cgroup_id != 0),
            stacks: u32::from(opts.stacks),
            cgroup_id: traced.cgroup_id,
            follow_children: u32::from(opts.follow_children),
            pfn_block_shift: topology.pfn_block_shift(),
            pfn_blocks: topology
                .memory_blocks
                .keys()
                .next_back()
                .map(|b| *b as u32 + 1)
                .unwrap_or(0)
                .min(MAX_PFN_BLOCKS),
            wakeup_threshold_bytes: u64::from(opts.ring_bytes / 4),
            load_generator_syscall: libc::SYS_getppid as u64,
            ship_within_node_migrations: u32::from(opts.all_migrations),
            cpu_node_entries: cpu_nodes.len() as u32,
        };
        let ring_bytes = opts.ring_bytes.next_power_of_two().max(4096 * 16);
        // One bit per possible tgid when processes besides the first can be
        // traced (512 KiB at most); one word, never read, otherwise.
        let several = config.follow_children != 0 || config.tgid_set != 0;
        let tgid_words = if several { tgid_bits::words_for_pid_max() } else { 1 };
        let mut ebpf = EbpfLoader::new()
            .override_global(LAYOUTS_GLOBAL, &layouts, true)
            .override_global(CONFIG_GLOBAL, &config, true)
            .map_max_entries(EVENTS_MAP, ring_bytes)
            .map_max_entries(TRACKED_TGIDS_MAP, tgid_words)
            // Without --stacks the map is never written: one entry, not 8 MiB.
            .map_max_entries(STACKS_MAP, if opts.stacks { MAX_STACKS } else { 1 })
            // Only the always-on counters of top and the exporter write it.
            .map_max_entries(PROCESS_COUNTS_MAP, 1)
            .load(OBJECT)
            .context("loading numatrace's kernel programs")?;
        fill_tables(&mut ebpf, &cpu_nodes, topology)?;
        let unmet = requirements::unmet(&layouts.task, &layouts.raw);
        let tgid_bits = if several {
            let map = match ebpf.map(TRACKED_TGIDS_MAP).context("map TRACKED_TGIDS missing")? {
                aya::maps::Map::Array(data) => data,
                _ => bail!("map TRACKED_TGIDS is not an array"),
            };
            Some(tgid_bits::TgidBits::map(map, tgid_words)?)
        } else {
            None
        };
        Ok(Probes {
            ebpf,
            structs,
            tgid_bits,
            cgroup_id: traced.cgroup_id,
            unmet,
            classic_tracepoints: opts.classic_tracepoints,
            #[cfg(feature = "bench-hooks")]
            load_generator: opts.load_generator,
            sources: Vec::new(),
            links: Vec::new(),
            paused: Vec::new(),
        })
    }

    /// Adds threads to trace (tid -> tgid). Call before [`Probes::attach`] for
    /// a running process; threads born later are added by the kernel.
    pub fn track_threads(&mut self, threads: &[(u32, u32)]) -> Result<()> {
        let mut map: HashMap<&mut MapData, u32, u32> =
            HashMap::try_from(self.ebpf.map_mut(TRACKED_TIDS_MAP).context("map TRACKED_TIDS missing")?)?;
        for &(tid, tgid) in threads {
            map.insert(tid, tgid, 0).with_context(|| format!("tracking thread {tid}"))?;
        }
        Ok(())
    }

    /// Adds processes to trace besides the first (`TRACKED_TGIDS`); their
    /// threads go through [`Probes::track_threads`]. Call before [`Probes::attach`].
    pub fn track_processes(&mut self, tgids: &[u32]) -> Result<()> {
        if tgids.is_empty() {
            return Ok(());
        }
        let Some(bits) = &self.tgid_bits else {
            bail!("this capture was loaded for one process: others cannot be added");
        };
        for &tgid in tgids {
            bits.set(tgid).with_context(|| format!("tracking process {tgid}"))?;
        }
        Ok(())
    }

    /// Stops tracing processes that have exited (their ids may be reused).
    /// The kernel adds a process again if a traced one forks it later.
    pub fn untrack_processes(&self, tgids: &[u32]) {
        if let Some(bits) = &self.tgid_bits {
            for &tgid in tgids {
                bits.clear(tgid);
            }
        }
    }

    /// Attaches every source this kernel supports; returns their statuses.
    pub fn attach(&mut self, tracefs: &Tracefs) -> &[SourceStatus] {
        // Only fentry/fexit and BTF-typed tracepoints need the kernel's BTF;
        // without it they fall back to kprobes and classic tracepoints.
        let btf = aya::Btf::from_sys_fs().ok();
        let mut unmet = BTreeMap::new();
        if self.classic_tracepoints {
            for program in sources::cheaper_tracepoint_programs() {
                unmet.insert(program, "classic tracepoints were asked for (--classic-tracepoints)".to_string());
            }
        } else {
            unmet.extend(self.unmet.iter().map(|(p, why)| (*p, why.clone())));
            if let Err(why) = page_map::calibrate(&mut self.ebpf, tracefs, self.structs.page_size) {
                unmet.insert("mm_page_alloc_raw", format!("page pointers cannot be turned into pfns: {why}"));
            }
        }
        if !self.structs.cgroup.complete() || !self.structs.task.complete() {
            for program in ["cgroup_attach_task_btf", "cgroup_clone_into_btf"] {
                unmet.insert(program, "the kernel's BTF lacks the cgroup or task_struct members it reads".to_string());
            }
        }
        let functions = sources::existing_functions(btf.as_ref());
        let env = sources::AttachEnv { tracefs, btf: btf.as_ref(), functions, unmet };
        let links = &mut self.links;
        self.sources = sources::SOURCES.iter().map(|s| sources::attach(&mut self.ebpf, &env, s, links)).collect();
        if self.cgroup_id != 0 {
            self.sources.push(sources::attach(&mut self.ebpf, &env, &sources::CGROUP_JOINS, links));
        }
        #[cfg(feature = "bench-hooks")]
        if self.load_generator {
            self.sources.push(sources::attach(&mut self.ebpf, &env, &sources::LOAD_GENERATOR, links));
        }
        &self.sources
    }

    /// Traces first touches in 1 of 2^`shift` regions from now on (0: all).
    pub fn set_sampling(&mut self, shift: u32) -> Result<()> {
        let mut map: Array<&mut MapData, Sampling> =
            Array::try_from(self.ebpf.map_mut(SAMPLING_MAP).context("map SAMPLING missing")?)?;
        map.set(0, Sampling { shift, _pad: 0 }, 0).context("setting the first-touch sampling")?;
        Ok(())
    }

    /// The attached programs of the first-touch sources (fault addresses first).
    fn first_touch_attaches(&self) -> impl Iterator<Item = &'static sources::Attach> + '_ {
        sources::FIRST_TOUCH_SOURCES
            .iter()
            .flat_map(|name| self.links.iter().filter(move |(a, _)| source_of(a.program) == Some(*name)))
            .map(|(a, _)| *a)
    }

    /// Run time and run count of the first-touch programs so far, as the
    /// kernel accounts them: they grow only while BPF run-time stats are on.
    pub fn first_touch_run_time(&self) -> (u64, u64) {
        first_touch_programs::run_time_of(&self.ebpf, &self.first_touch_programs())
    }

    /// Total run time of every loaded program but the first-touch ones
    /// (while BPF run-time stats are on): what the budget cannot pause.
    pub fn other_run_time(&self) -> u64 {
        first_touch_programs::run_time_of_others(&self.ebpf, &self.first_touch_programs())
    }

    /// The first-touch programs, attached or paused.
    fn first_touch_programs(&self) -> Vec<&'static str> {
        self.first_touch_attaches().chain(self.paused.iter().copied()).map(|a| a.program).collect()
    }

    /// Detaches the first-touch programs (they stay loaded); nothing they
    /// would see is counted until [`Probes::resume_first_touch`].
    pub fn pause_first_touch(&mut self) -> Result<()> {
        let attaches: Vec<_> = self.first_touch_attaches().collect();
        for attach in attaches.into_iter().rev() {
            let Some(at) = self.links.iter().position(|(a, _)| std::ptr::eq(*a, attach)) else { continue };
            let (_, link) = self.links.remove(at);
            sources::detach_link(&mut self.ebpf, attach, link).map_err(anyhow::Error::msg)?;
            self.paused.push(attach);
        }
        Ok(())
    }

    /// Attaches again what [`Probes::pause_first_touch`] detached.
    pub fn resume_first_touch(&mut self) -> Result<()> {
        while let Some(attach) = self.paused.pop() {
            let link = sources::reattach_link(&mut self.ebpf, attach).map_err(anyhow::Error::msg)?;
            self.links.push((attach, link));
        }
        Ok(())
    }

    /// The event ring; can be taken once.
    pub fn take_ring(&mut self) -> Result<RingBuf<aya::maps::MapData>> {
        let map = self.ebpf.take_map(EVENTS_MAP).context("the EVENTS ring was already taken")?;
        Ok(RingBuf::try_from(map)?)
    }

    /// The user stacks the runs name (`--stacks`); can be taken once.
    pub fn take_stacks(&mut self) -> Result<aya::maps::StackTraceMap<MapData>> {
        let map = self.ebpf.take_map(STACKS_MAP).context("the STACKS map was already taken")?;
        Ok(aya::maps::StackTraceMap::try_from(map)?)
    }

    /// Detaches the thread-migration programs alone, so that the threads'
    /// migration counts read right after end where the capture's count ends
    /// (detaching everything takes a while on a busy machine, and a thread
    /// that hops all the time adds thousands of migrations meanwhile).
    pub fn detach_thread_migrations(&mut self) -> Result<()> {
        while let Some(at) =
            self.links.iter().position(|(a, _)| source_of(a.program) == Some(sources::THREAD_MIGRATIONS))
        {
            let (attach, link) = self.links.remove(at);
            sources::detach_link(&mut self.ebpf, attach, link).map_err(anyhow::Error::msg)?;
        }
        Ok(())
    }

    /// Detaches every program: after this no new event is produced.
    pub fn detach(&mut self) {
        sources::unload_all(&mut self.ebpf);
    }

    /// Runs still accumulating in the per-CPU slots, as events. Read after
    /// [`Probes::detach`], so that nothing is lost at the end.
    pub fn pending_runs(&self) -> Result<Vec<Event>> {
        let mut events = Vec::new();
        for (name, kind) in [(FIRST_TOUCH_RUN_MAP, EventKind::FirstTouch), (HINTING_RUN_MAP, EventKind::HintingFault)] {
            let array: PerCpuArray<&MapData, PendingRun> =
                PerCpuArray::try_from(self.ebpf.map(name).with_context(|| format!("map {name} missing"))?)?;
            let per_cpu = array.get(&0, 0).with_context(|| format!("reading {name}"))?;
            for (cpu, run) in per_cpu.iter().enumerate() {
                if run.pages == 0 {
                    continue;
                }
                events.push(match kind {
                    EventKind::FirstTouch => Event::FirstTouch(run.first_touch_event(cpu as u32)),
                    _ => Event::HintingFault(run.hinting_fault_event(cpu as u32)),
                });
            }
        }
        Ok(events)
    }

    /// Loss and counters, read after [`Probes::detach`].
    pub fn totals(&self) -> Result<KernelTotals> {
        let mut totals = KernelTotals::default();
        let loss: PerCpuArray<&MapData, Loss> =
            PerCpuArray::try_from(self.ebpf.map(LOSS_MAP).context("map LOSS missing")?)?;
        for kind in EventKind::ALL {
            let per_cpu = loss.get(&(kind as u32), 0)?;
            let sum = per_cpu
                .iter()
                .fold(Loss::default(), |a, l| Loss { events: a.events + l.events, units: a.units + l.units });
            if sum.events > 0 {
                totals.loss.insert(kind.name().to_string(), LostCount { events: sum.events, units: sum.units });
            }
        }
        let sent: PerCpuArray<&MapData, u64> =
            PerCpuArray::try_from(self.ebpf.map(SENT_MAP).context("map SENT missing")?)?;
        for kind in EventKind::ALL {
            let n: u64 = sent.get(&(kind as u32), 0)?.iter().sum();
            if n > 0 {
                totals.sent.insert(kind.name().to_string(), n);
            }
        }
        totals.counters = counter_sums(&self.ebpf)?;
        Ok(totals)
    }
}

/// Every `COUNTERS` slot, summed over CPUs (indexed by `Counter`).
fn counter_sums(ebpf: &Ebpf) -> Result<Vec<u64>> {
    let counters: PerCpuArray<&MapData, u64> =
        PerCpuArray::try_from(ebpf.map(numatrace_common::COUNTERS_MAP).context("map COUNTERS missing")?)?;
    (0..COUNTER_SLOTS).map(|slot| Ok(counters.get(&slot, 0)?.iter().sum())).collect()
}

/// Loads and attaches every source exactly as a capture's start-up does
/// (this process as the target; with `cgroup_id`, also the cgroup joins),
/// then detaches them: what `numatrace check` reports.
pub fn trial(topology: &Topology, tracefs: &Tracefs, cgroup_id: u64) -> Result<Vec<SourceStatus>> {
    let traced = TracedSet { tgid: std::process::id(), more: false, cgroup_id };
    let opts = ProbeOptions {
        follow_children: false,
        // The smallest ring: nothing reads it.
        ring_bytes: 0,
        classic_tracepoints: false,
        #[cfg(feature = "bench-hooks")]
        load_generator: false,
        all_migrations: false,
        stacks: false,
    };
    let mut probes = Probes::load(traced, &opts, topology, tracefs)?;
    probes.attach(tracefs);
    probes.detach();
    Ok(std::mem::take(&mut probes.sources))
}

/// The name of the source a program belongs to.
fn source_of(program: &str) -> Option<&'static str> {
    sources::SOURCES.iter().find(|s| s.variants.iter().any(|v| v.iter().any(|a| a.program == program))).map(|s| s.name)
}

/// Writes the cpu -> node table (`cpu_nodes`, at most `MAX_CPUS` long) and
/// the memory block -> node table.
pub(super) fn fill_tables(ebpf: &mut Ebpf, cpu_nodes: &[u32], topology: &Topology) -> Result<()> {
    let mut cpu_node: Array<&mut MapData, u32> =
        Array::try_from(ebpf.map_mut(CPU_NODE_MAP).context("map CPU_NODE missing")?)?;
    for (cpu, node) in cpu_nodes.iter().enumerate() {
        cpu_node.set(cpu as u32, node, 0)?;
    }
    let mut blocks: Array<&mut MapData, u32> =
        Array::try_from(ebpf.map_mut(PFN_BLOCK_NODE_MAP).context("map PFN_BLOCK_NODE missing")?)?;
    // Blocks with no node (holes) stay unknown rather than node 0.
    let max_block = topology.memory_blocks.keys().next_back().copied().unwrap_or(0).min(u64::from(MAX_PFN_BLOCKS) - 1);
    for block in 0..=max_block {
        let node = topology.memory_blocks.get(&block).copied().unwrap_or(u32::from(NODE_UNKNOWN));
        blocks.set(block as u32, node, 0)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unread_is_what_was_sent_and_not_received() {
        let totals = KernelTotals {
            sent: BTreeMap::from([("first_touch".into(), 10), ("task_migration".into(), 4)]),
            received: BTreeMap::from([("first_touch".into(), 7), ("task_migration".into(), 4)]),
            ..Default::default()
        };
        assert_eq!(totals.unread(), 3);
        assert_eq!(KernelTotals { received: BTreeMap::new(), ..totals }.unread(), 14);
    }
}
