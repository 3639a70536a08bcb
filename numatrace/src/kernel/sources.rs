//! The kernel sources numatrace attaches to, each optional: a source this
//! kernel lacks is reported once and skipped, the rest still run.
use aya::{
    Btf, Ebpf,
    programs::{
        BtfTracePoint, FEntry, FExit, KProbe, RawTracePoint, TracePoint, raw_trace_point::RawTracePointLinkId,
        trace_point::TracePointLinkId,
    },
};
use aya_obj::btf::BtfKind;
use std::collections::{BTreeMap, BTreeSet};

use numatrace_core::kernel_status::{HookKind, SourceRole, SourceStatus};

use super::tracefs::Tracefs;

/// How one attach point is reached.
#[derive(Clone, Copy, Debug)]
pub enum Hook {
    /// A classic tracepoint (group, event).
    Tracepoint(&'static str, &'static str),
    /// The same tracepoint (group, event) as a raw tracepoint: the program
    /// gets the tracepoint's arguments, the kernel builds no event record.
    RawTracepoint(&'static str, &'static str),
    /// The same tracepoint (group, event), BTF-typed: raw, and the program
    /// may read the kernel structs it is given (offsets from BTF).
    BtfTracepoint(&'static str, &'static str),
    /// A kprobe on the first of these kernel functions that exists.
    Kprobe(&'static [&'static str]),
    /// A kretprobe on the first of these kernel functions that exists.
    Kretprobe(&'static [&'static str]),
    /// An fentry program on the first of these kernel functions in the kernel's BTF.
    Fentry(&'static [&'static str]),
    /// An fexit program on the first of these kernel functions in the kernel's BTF.
    Fexit(&'static [&'static str]),
}

impl Hook {
    /// The family this hook belongs to.
    pub fn kind(&self) -> HookKind {
        match self {
            Hook::Tracepoint(..) => HookKind::Tracepoint,
            Hook::RawTracepoint(..) => HookKind::RawTracepoint,
            Hook::BtfTracepoint(..) => HookKind::BtfTracepoint,
            Hook::Kprobe(_) | Hook::Kretprobe(_) => HookKind::Kprobe,
            Hook::Fentry(_) | Hook::Fexit(_) => HookKind::Fentry,
        }
    }
}

/// A program in the object and where it attaches.
#[derive(Clone, Copy, Debug)]
pub struct Attach {
    pub program: &'static str,
    pub hook: Hook,
}

/// A user-facing source: what it tells and the programs that make it. Some
/// sources have several ways in (fentry, else kprobe): the first variant
/// that attaches completely is used.
#[derive(Clone, Copy, Debug)]
pub struct Source {
    pub name: &'static str,
    pub tells: &'static str,
    /// Whether numatrace can do its job without it.
    pub role: SourceRole,
    /// What the report lacks when it cannot attach (`numatrace check`).
    pub without: &'static str,
    pub variants: &'static [&'static [Attach]],
}

const MISPLACED: &[&str] = &["migrate_misplaced_folio", "migrate_misplaced_page"];

/// The raw `sys_enter` program: it serves two sources ("explicit migration
/// calls", "affinity changes") and is attached once, by the first of them.
const SYS_ENTER_WATCH: &str = "sys_enter_watch";

pub(super) const fn tp(program: &'static str, group: &'static str, event: &'static str) -> Attach {
    Attach { program, hook: Hook::Tracepoint(group, event) }
}

pub(super) const fn raw_tp(program: &'static str, group: &'static str, event: &'static str) -> Attach {
    Attach { program, hook: Hook::RawTracepoint(group, event) }
}

const fn btf_tp(program: &'static str, group: &'static str, event: &'static str) -> Attach {
    Attach { program, hook: Hook::BtfTracepoint(group, event) }
}

/// The source whose programs count every migration of a traced thread.
pub const THREAD_MIGRATIONS: &str = "thread migrations";

/// Every source, in attach order: lifecycle first so that no thread born
/// during attach is missed; thread migrations last, so that the per-thread
/// migration counts read right after the attach start where the kernel's
/// count starts (loading the others takes 100 ms and more on a busy machine).
pub const SOURCES: &[Source] = &[
    // Creation and exit are separate sources: without creation, new threads
    // are not traced at all; without exit, only their end time is missing.
    // Every source's first variant is a raw or BTF-typed tracepoint where
    // the kernel has one: those detach in milliseconds, while the last
    // program on a classic tracepoint waits for an RCU grace period under a
    // kernel-wide lock, one source after another (~40 ms each).
    Source {
        name: "thread creation",
        tells: "threads (and, when followed, processes) created during the capture",
        role: SourceRole::Core,
        without: "threads created during the capture are not traced at all",
        variants: &[
            &[btf_tp("task_newtask_btf", "task", "task_newtask")],
            &[tp("task_newtask", "task", "task_newtask")],
        ],
    },
    Source {
        name: "thread exit",
        tells: "when traced threads exit",
        role: SourceRole::Detail,
        without: "when a thread ended: threads look alive to the end of the capture",
        variants: &[
            &[btf_tp("sched_process_exit_btf", "sched", "sched_process_exit")],
            &[tp("sched_process_exit", "sched", "sched_process_exit")],
        ],
    },
    Source {
        name: "first touches",
        tells: "which thread first touched which pages, and on which node they landed",
        role: SourceRole::Core,
        without: "which thread placed which memory on which node: no cause can be named",
        // Every page allocation of the machine: the raw form saves building
        // the record, once the page array is calibrated (kernel::page_map).
        variants: &[
            &[raw_tp("mm_page_alloc_raw", "kmem", "mm_page_alloc")],
            &[tp("mm_page_alloc", "kmem", "mm_page_alloc")],
        ],
    },
    Source {
        name: "fault addresses",
        tells: "the 2 MiB region of each first touch and hinting fault",
        role: SourceRole::Detail,
        without: "the region of each first touch: causes are found per thread and node, not per 2 MiB region",
        // Every user page fault of the machine: the raw form saves building the record.
        variants: &[
            &[raw_tp("page_fault_user_raw", "exceptions", "page_fault_user")],
            &[tp("page_fault_user", "exceptions", "page_fault_user")],
        ],
    },
    Source {
        name: "balancer task placement",
        tells: "NUMA balancer task moves, swaps and sticks",
        role: SourceRole::Detail,
        without: "the NUMA balancer's task moves and swaps: a balancer move is told from a load-balancer one less surely",
        variants: &[
            &[
                btf_tp("sched_move_numa_btf", "sched", "sched_move_numa"),
                btf_tp("sched_swap_numa_btf", "sched", "sched_swap_numa"),
                btf_tp("sched_stick_numa_btf", "sched", "sched_stick_numa"),
            ],
            &[
                tp("sched_move_numa", "sched", "sched_move_numa"),
                tp("sched_swap_numa", "sched", "sched_swap_numa"),
                tp("sched_stick_numa", "sched", "sched_stick_numa"),
            ],
        ],
    },
    Source {
        name: "page migrations",
        tells: "pages migrated, by reason",
        role: SourceRole::Detail,
        without: "pages migrated, by reason: repairs and explicit moves are not counted",
        variants: &[
            &[raw_tp("mm_migrate_pages_raw", "migrate", "mm_migrate_pages")],
            &[tp("mm_migrate_pages", "migrate", "mm_migrate_pages")],
        ],
    },
    Source {
        name: "explicit migration calls",
        tells: "migrate_pages/move_pages/mbind calls that move a traced process's pages",
        role: SourceRole::Detail,
        without: "who called migrate_pages/move_pages/mbind: explicit moves are not named",
        // The raw form sees every system call and picks these by number; it
        // is one program with "affinity changes" (one run per system call).
        variants: &[
            &[raw_tp(SYS_ENTER_WATCH, "raw_syscalls", "sys_enter")],
            &[
                tp("sys_enter_migrate_pages", "syscalls", "sys_enter_migrate_pages"),
                tp("sys_exit_migrate_pages", "syscalls", "sys_exit_migrate_pages"),
                tp("sys_enter_move_pages", "syscalls", "sys_enter_move_pages"),
                tp("sys_exit_move_pages", "syscalls", "sys_exit_move_pages"),
                tp("sys_enter_mbind", "syscalls", "sys_enter_mbind"),
                tp("sys_exit_mbind", "syscalls", "sys_exit_mbind"),
            ],
        ],
    },
    Source {
        name: "affinity changes",
        tells: "sched_setaffinity calls on traced threads (taskset -p): who moved a thread",
        role: SourceRole::Detail,
        without: "who moved a thread with sched_setaffinity (taskset -p): such moves are not named",
        variants: &[
            &[raw_tp(SYS_ENTER_WATCH, "raw_syscalls", "sys_enter")],
            &[tp("sys_enter_sched_setaffinity", "syscalls", "sys_enter_sched_setaffinity")],
        ],
    },
    Source {
        name: "hinting faults",
        tells: "NUMA hinting faults: on which node the memory a thread touches lives",
        role: SourceRole::Detail,
        without: "NUMA hinting faults: no sampled accesses, remote shares come from pages alone",
        variants: &[
            &[Attach { program: "task_numa_fault_fentry", hook: Hook::Fentry(&["task_numa_fault"]) }],
            &[Attach { program: "task_numa_fault", hook: Hook::Kprobe(&["task_numa_fault"]) }],
        ],
    },
    Source {
        name: "misplaced-page migration",
        tells: "time the balancer spends migrating misplaced pages",
        role: SourceRole::Detail,
        without: "the time the balancer spends migrating pages: its cost is not shown",
        variants: &[
            &[
                Attach { program: "migrate_misplaced_fentry", hook: Hook::Fentry(MISPLACED) },
                Attach { program: "migrate_misplaced_fexit", hook: Hook::Fexit(MISPLACED) },
            ],
            &[
                Attach { program: "migrate_misplaced_enter", hook: Hook::Kprobe(MISPLACED) },
                Attach { program: "migrate_misplaced_exit", hook: Hook::Kretprobe(MISPLACED) },
            ],
        ],
    },
    Source {
        name: THREAD_MIGRATIONS,
        tells: "every CPU (and node) change of a traced thread",
        role: SourceRole::Core,
        without: "CPU and node changes of threads: no thread can be shown moved away from its memory",
        // It fires for every migration on the machine: the BTF-typed form
        // filters on the task's own tgid without a map lookup.
        variants: &[
            &[btf_tp("sched_migrate_task_btf", "sched", "sched_migrate_task")],
            &[tp("sched_migrate_task", "sched", "sched_migrate_task")],
        ],
    },
];

/// The sources an overhead budget may pause (unless `--no-budget-pauses`), in attach
/// order: the fault address first, so that an allocation never finds a
/// stale one; detached in the reverse order.
pub const FIRST_TOUCH_SOURCES: [&str; 2] = ["fault addresses", "first touches"];

/// The benchmark load generator (`--load-generator`): not a source of
/// facts, so not in [`SOURCES`]; attached only when asked for.
#[cfg(feature = "bench-hooks")]
pub const LOAD_GENERATOR: Source = Source {
    name: "load generator (benchmark)",
    tells: "synthetic first touches on the target's getppid calls, to load the ring and the aggregator",
    role: SourceRole::Detail,
    without: "the benchmark load generator (--load-generator)",
    variants: &[&[raw_tp("load_generator", "raw_syscalls", "sys_enter")]],
};

/// Processes that join the traced cgroup (`--cgroup`, `--unit`,
/// `--container`), moved there or created there by an untraced parent
/// (`CLONE_INTO_CGROUP`): not in [`SOURCES`], attached only for a cgroup
/// target. BTF-typed only (they walk a cgroup's ancestors by BTF offsets).
pub const CGROUP_JOINS: Source = Source {
    name: "cgroup joins",
    tells: "processes moved into the traced cgroup or below it, or created there, during the capture (by cgroup id, in the kernel)",
    role: SourceRole::Detail,
    without: "processes that join a traced cgroup later (--cgroup, --unit, --container): only those in it at the start are traced",
    variants: &[&[
        btf_tp("cgroup_attach_task_btf", "cgroup", "cgroup_attach_task"),
        btf_tp("cgroup_clone_into_btf", "task", "task_newtask"),
    ]],
};

/// The always-on per-process counters of `numatrace top` and the exporter
/// (`kernel::machine_counters`): not in [`SOURCES`], a capture never
/// attaches them. Every thread migration of the machine; the BTF-typed
/// form only, as the classic record has no tgid to count by.
pub const PROCESS_MIGRATION_COUNTS: Source = Source {
    name: "cross-node migrations per process",
    tells: "every process's thread migrations between CPUs of different nodes, counted in the kernel",
    role: SourceRole::Detail,
    without: "cross-node migrations per process are estimated from /proc (where each thread last ran, a lower bound)",
    variants: &[&[btf_tp("sched_migrate_task_count_btf", "sched", "sched_migrate_task")]],
};

/// Every movable page allocation of the machine, counted by process when it
/// lands off the allocating CPU's node; as [`PROCESS_MIGRATION_COUNTS`].
pub const PROCESS_FIRST_TOUCH_COUNTS: Source = Source {
    name: "remote first touches per process",
    tells: "every process's movable pages allocated on another node than its CPU's, counted in the kernel",
    role: SourceRole::Detail,
    without: "remote first touches per process are not known",
    variants: &[
        &[raw_tp("mm_page_alloc_count_raw", "kmem", "mm_page_alloc")],
        &[tp("mm_page_alloc_count", "kmem", "mm_page_alloc")],
    ],
};

/// Every NUMA hinting fault of the machine, counted by process when the
/// page was on another node than the faulting CPU's; as
/// [`PROCESS_MIGRATION_COUNTS`]. The kernel has no tracepoint for them:
/// fentry, else a kprobe, as the capture's own hinting-fault source.
pub const PROCESS_HINTING_FAULT_COUNTS: Source = Source {
    name: "remote hinting faults per process",
    tells: "every process's NUMA hinting faults that found the page on another node, counted in the kernel",
    role: SourceRole::Detail,
    without: "remote hinting faults per process are not known (the machine's total is in /proc/vmstat)",
    variants: &[
        &[Attach { program: "task_numa_fault_count_fentry", hook: Hook::Fentry(&["task_numa_fault"]) }],
        &[Attach { program: "task_numa_fault_count", hook: Hook::Kprobe(&["task_numa_fault"]) }],
    ],
};

/// The per-process counters, in the order `kernel::machine_counters` attaches them.
pub const PROCESS_COUNT_SOURCES: [&Source; 3] =
    [&PROCESS_MIGRATION_COUNTS, &PROCESS_FIRST_TOUCH_COUNTS, &PROCESS_HINTING_FAULT_COUNTS];

/// The kernel functions that kprobe/fentry hooks of [`SOURCES`] name and
/// that this kernel has. From its BTF where there is one (its function
/// records); else one pass over kallsyms, which costs ~40 ms of system time
/// (120k lines formatted by the kernel): a third of start-up's CPU.
pub fn existing_functions(btf: Option<&Btf>) -> BTreeSet<&'static str> {
    let wanted = every_attach().flat_map(|a| match a.hook {
        Hook::Kprobe(f) | Hook::Kretprobe(f) | Hook::Fentry(f) | Hook::Fexit(f) => f,
        _ => &[],
    });
    if let Some(btf) = btf {
        return wanted.copied().filter(|f| btf.id_by_type_name_kind(f, BtfKind::Func).is_ok()).collect();
    }
    let wanted: BTreeSet<&'static str> = wanted.copied().collect();
    let Ok(text) = std::fs::read_to_string("/proc/kallsyms") else { return BTreeSet::new() };
    text.lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            let (_, kind, sym) = (parts.next(), parts.next()?, parts.next()?);
            matches!(kind, "T" | "t").then_some(sym)
        })
        .filter_map(|sym| wanted.get(sym).copied())
        .collect()
}

/// Every program and hook of every variant of every source.
fn every_attach() -> impl Iterator<Item = &'static Attach> {
    SOURCES.iter().flat_map(|s| s.variants.iter().flat_map(|v| v.iter()))
}

/// The programs attached through raw or BTF-typed tracepoints.
pub fn cheaper_tracepoint_programs() -> impl Iterator<Item = &'static str> {
    every_attach().filter(|a| matches!(a.hook, Hook::RawTracepoint(..) | Hook::BtfTracepoint(..))).map(|a| a.program)
}

/// What the attach decisions depend on besides the object.
pub struct AttachEnv<'a> {
    pub tracefs: &'a Tracefs,
    /// The kernel's BTF, for fentry/fexit and BTF-typed tracepoints.
    pub btf: Option<&'a Btf>,
    /// Functions of the kprobe/fentry hooks that exist ([`existing_functions`]).
    pub functions: BTreeSet<&'static str>,
    /// Programs that cannot work on this kernel, and why (e.g. the BTF
    /// offsets they read were not found): their variant is skipped.
    pub unmet: BTreeMap<&'static str, String>,
}

/// The link of a program attached to a tracepoint (raw or classic), kept
/// so that it alone can be detached and attached again (the overhead
/// budget's pauses) while the program stays loaded.
#[derive(Debug)]
pub enum TracepointLink {
    Raw(RawTracePointLinkId),
    Classic(TracePointLinkId),
}

/// Between the reasons of the variants that did not attach, in variant
/// order, in `reason` and `fallback_reason`.
pub const REASON_SEPARATOR: &str = "; ";

/// Attaches the first variant of a source whose programs all attach; a
/// half-attached variant is unloaded (it would give misleading counts).
/// The tracepoint links of the variant attached are added to `links`.
pub fn attach(
    ebpf: &mut Ebpf,
    env: &AttachEnv,
    source: &'static Source,
    links: &mut Vec<(&'static Attach, TracepointLink)>,
) -> SourceStatus {
    let mut reasons = Vec::new();
    for variant in source.variants {
        let mut hooks = Vec::new();
        let mut failure = None;
        let mut variant_links = Vec::new();
        for attach in *variant {
            match attach_one(ebpf, env, attach) {
                Ok((hook, link)) => {
                    hooks.push(hook);
                    variant_links.extend(link.map(|l| (attach, l)));
                }
                Err(reason) => {
                    failure = Some(reason);
                    break;
                }
            }
        }
        match failure {
            None => {
                links.extend(variant_links);
                let fallback_reason = (!reasons.is_empty()).then(|| reasons.join(REASON_SEPARATOR));
                return SourceStatus {
                    name: source.name.to_string(),
                    attached: true,
                    hooks,
                    kind: variant.first().map(|a| a.hook.kind()),
                    reason: None,
                    fallback_reason,
                };
            }
            Some(reason) => {
                unload_variant(ebpf, variant);
                reasons.push(reason);
            }
        }
    }
    SourceStatus {
        name: source.name.to_string(),
        attached: false,
        hooks: Vec::new(),
        kind: None,
        reason: Some(reasons.join(REASON_SEPARATOR)),
        fallback_reason: None,
    }
}

/// Unloads (and so detaches) every program of a variant.
pub fn unload_variant(ebpf: &mut Ebpf, variant: &[Attach]) {
    for attach in variant {
        if let Some(program) = ebpf.program_mut(attach.program) {
            unload(program);
        }
    }
}

/// Unloads every program at once. Each tracepoint detach waits for an RCU
/// grace period (~70 ms on the 2-vCPU test VM), and the kernel serialises
/// most of that: in parallel, numatrace's exit after its target's went from
/// 1.15 s to 0.9 s there (`numatrace --json -- /bin/true`).
pub fn unload_all(ebpf: &mut Ebpf) {
    std::thread::scope(|scope| {
        for (_, program) in ebpf.programs_mut() {
            scope.spawn(move || unload(program));
        }
    });
}

fn unload(program: &mut aya::programs::Program) {
    use aya::programs::Program;
    let _ = match program {
        Program::TracePoint(p) => p.unload(),
        Program::KProbe(p) => p.unload(),
        Program::FEntry(p) => p.unload(),
        Program::FExit(p) => p.unload(),
        Program::RawTracePoint(p) => p.unload(),
        Program::BtfTracePoint(p) => p.unload(),
        _ => Ok(()),
    };
}

fn first_existing(env: &AttachEnv, functions: &[&'static str]) -> Result<&'static str, String> {
    functions
        .iter()
        .copied()
        .find(|f| env.functions.contains(f))
        .ok_or_else(|| format!("this kernel has none of {}", functions.join(", ")))
}

/// Detaches one tracepoint link of a program that stays loaded.
pub fn detach_link(ebpf: &mut Ebpf, attach: &Attach, link: TracepointLink) -> Result<(), String> {
    let program = ebpf.program_mut(attach.program).ok_or_else(|| format!("program {} is missing", attach.program))?;
    match link {
        TracepointLink::Raw(id) => {
            let tp: &mut RawTracePoint = program.try_into().map_err(|e| format!("{e}"))?;
            tp.detach(id).map_err(|e| format!("detaching {}: {e}", attach.program))
        }
        TracepointLink::Classic(id) => {
            let tp: &mut TracePoint = program.try_into().map_err(|e| format!("{e}"))?;
            tp.detach(id).map_err(|e| format!("detaching {}: {e}", attach.program))
        }
    }
}

/// Attaches again a loaded tracepoint program that [`detach_link`] detached.
pub fn reattach_link(ebpf: &mut Ebpf, attach: &Attach) -> Result<TracepointLink, String> {
    let program = ebpf.program_mut(attach.program).ok_or_else(|| format!("program {} is missing", attach.program))?;
    match attach.hook {
        Hook::RawTracepoint(_, name) => {
            let tp: &mut RawTracePoint = program.try_into().map_err(|e| format!("{e}"))?;
            tp.attach(name).map(TracepointLink::Raw).map_err(|e| format!("raw tracepoint {name}: {e}"))
        }
        Hook::Tracepoint(group, name) => {
            let tp: &mut TracePoint = program.try_into().map_err(|e| format!("{e}"))?;
            tp.attach(group, name).map(TracepointLink::Classic).map_err(|e| format!("attaching to {group}:{name}: {e}"))
        }
        _ => Err(format!("{} is not attached through a tracepoint", attach.program)),
    }
}

/// Attaches one program; returns the hook's name, and its link when it is a
/// raw or classic tracepoint (see [`TracepointLink`]).
pub(super) fn attach_one(
    ebpf: &mut Ebpf,
    env: &AttachEnv,
    attach: &Attach,
) -> Result<(String, Option<TracepointLink>), String> {
    let program = ebpf
        .program_mut(attach.program)
        .ok_or_else(|| format!("program {} is missing from the object", attach.program))?;
    let btf = env.btf;
    if let Some(why) = env.unmet.get(attach.program) {
        return Err(why.clone());
    }
    match attach.hook {
        Hook::Tracepoint(group, name) | Hook::RawTracepoint(group, name) | Hook::BtfTracepoint(group, name)
            if !env.tracefs.has_event(group, name) =>
        {
            Err(format!("this kernel has no tracepoint {group}:{name}"))
        }
        Hook::Tracepoint(group, name) => {
            let tp: &mut TracePoint = program.try_into().map_err(|e| format!("{e}"))?;
            tp.load().map_err(|e| verifier_error(attach.program, &e))?;
            let link = tp.attach(group, name).map_err(|e| format!("attaching to {group}:{name}: {e}"))?;
            Ok((format!("tracepoint:{group}:{name}"), Some(TracepointLink::Classic(link))))
        }
        Hook::RawTracepoint(_, name) => {
            let tp: &mut RawTracePoint = program.try_into().map_err(|e| format!("{e}"))?;
            // A program that two sources share is loaded and attached by the
            // first (a variant that fails is unloaded, so loaded is attached).
            if tp.fd().is_ok() {
                return Ok((format!("raw_tracepoint:{name}"), None));
            }
            tp.load().map_err(|e| verifier_error(attach.program, &e))?;
            let link = tp.attach(name).map_err(|e| format!("raw tracepoint {name}: {e}"))?;
            Ok((format!("raw_tracepoint:{name}"), Some(TracepointLink::Raw(link))))
        }
        Hook::BtfTracepoint(_, name) => {
            let btf = btf.ok_or_else(|| "the kernel has no BTF (/sys/kernel/btf/vmlinux)".to_string())?;
            let tp: &mut BtfTracePoint = program.try_into().map_err(|e| format!("{e}"))?;
            tp.load(name, btf).map_err(|e| verifier_error(attach.program, &e))?;
            tp.attach().map_err(|e| format!("BTF tracepoint {name}: {e}"))?;
            Ok((format!("tp_btf:{name}"), None))
        }
        Hook::Kprobe(functions) | Hook::Kretprobe(functions) => {
            let function = first_existing(env, functions)?;
            let kp: &mut KProbe = program.try_into().map_err(|e| format!("{e}"))?;
            kp.load().map_err(|e| verifier_error(attach.program, &e))?;
            kp.attach(function, 0).map_err(|e| {
                let e = e.to_string();
                if e.contains("kprobe/type") {
                    "this kernel has no kprobe support (CONFIG_KPROBE_EVENTS)".to_string()
                } else {
                    format!("kprobe on {function}: {e}")
                }
            })?;
            let kind = if matches!(attach.hook, Hook::Kprobe(_)) { "kprobe" } else { "kretprobe" };
            Ok((format!("{kind}:{function}"), None))
        }
        Hook::Fentry(functions) | Hook::Fexit(functions) => {
            let btf = btf.ok_or_else(|| "the kernel has no BTF (/sys/kernel/btf/vmlinux)".to_string())?;
            let function = first_existing(env, functions)?;
            if matches!(attach.hook, Hook::Fentry(_)) {
                let p: &mut FEntry = program.try_into().map_err(|e| format!("{e}"))?;
                p.load(function, btf).map_err(|e| verifier_error(attach.program, &e))?;
                p.attach().map_err(|e| format!("fentry on {function}: {e}"))?;
                Ok((format!("fentry:{function}"), None))
            } else {
                let p: &mut FExit = program.try_into().map_err(|e| format!("{e}"))?;
                p.load(function, btf).map_err(|e| verifier_error(attach.program, &e))?;
                p.attach().map_err(|e| format!("fexit on {function}: {e}"))?;
                Ok((format!("fexit:{function}"), None))
            }
        }
    }
}

fn verifier_error(program: &str, err: &aya::programs::ProgramError) -> String {
    use aya::programs::ProgramError;
    match err {
        ProgramError::LoadError { io_error, verifier_log } => {
            // The verifier log can be thousands of lines; its last lines say why.
            let log = verifier_log.to_string();
            // Its last lines are statistics; the reason comes just before them.
            let stats = ["processed ", "stack depth", "verification time", "max_states_per_insn", "mark_read"];
            let tail: Vec<&str> = log
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && *l != ";" && !stats.iter().any(|s| l.contains(s)))
                .collect();
            let tail = tail[tail.len().saturating_sub(2)..].join(" | ");
            if tail.is_empty() {
                format!("the kernel refused program {program}: {io_error}")
            } else {
                format!("the kernel refused program {program}: {io_error}: {tail}")
            }
        }
        other => format!("loading program {program}: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use aya_obj::{Object, ProgramSection};

    use super::*;

    /// The embedded object's programs by name, with their kinds: parsed, not
    /// loaded, so no root is needed.
    fn object_programs() -> BTreeMap<String, ProgramSection> {
        let object = Object::parse(crate::kernel::OBJECT).expect("the embedded eBPF object parses");
        object.programs.into_iter().map(|(name, program)| (name, program.section)).collect()
    }

    /// Whether a program of this kind can be attached the way `hook` says.
    fn fits(hook: &Hook, section: &ProgramSection) -> bool {
        matches!(
            (hook, section),
            (Hook::Tracepoint(..), ProgramSection::TracePoint)
                | (Hook::RawTracepoint(..), ProgramSection::RawTracePoint)
                | (Hook::BtfTracepoint(..), ProgramSection::BtfTracePoint)
                | (Hook::Kprobe(_), ProgramSection::KProbe)
                | (Hook::Kretprobe(_), ProgramSection::KRetProbe)
                | (Hook::Fentry(_), ProgramSection::FEntry { .. })
                | (Hook::Fexit(_), ProgramSection::FExit { .. })
        )
    }

    /// Every attach of the sources, the load generator and the page map calibration.
    fn all_attaches() -> Vec<&'static Attach> {
        let attaches = every_attach()
            .chain(super::super::page_map::PAIR.iter())
            .chain(CGROUP_JOINS.variants.iter().flat_map(|v| v.iter()))
            .chain(PROCESS_COUNT_SOURCES.into_iter().flat_map(|s| s.variants.iter().flat_map(|v| v.iter())));
        #[cfg(feature = "bench-hooks")]
        let attaches = attaches.chain(LOAD_GENERATOR.variants.iter().flat_map(|v| v.iter()));
        attaches.collect()
    }

    #[test]
    fn every_program_the_attach_table_names_is_in_the_object_with_its_kind() {
        let programs = object_programs();
        let mut wrong = Vec::new();
        for attach in all_attaches() {
            match programs.get(attach.program) {
                None => wrong.push(format!("{} is not in the object", attach.program)),
                Some(section) if !fits(&attach.hook, section) => {
                    wrong.push(format!("{} is a {section:?} program, attached as {:?}", attach.program, attach.hook))
                }
                Some(_) => {}
            }
        }
        assert!(wrong.is_empty(), "{wrong:#?}\nthe object has: {:?}", programs.keys().collect::<Vec<_>>());
    }

    /// A source reports one hook kind: the first hook's, so every hook of a
    /// variant must be of that family.
    #[test]
    fn every_variant_attaches_through_one_kind_of_hook() {
        let sources = SOURCES.iter().chain([&CGROUP_JOINS]).chain(PROCESS_COUNT_SOURCES);
        for source in sources {
            for variant in source.variants {
                let kinds: BTreeSet<HookKind> = variant.iter().map(|a| a.hook.kind()).collect();
                assert_eq!(kinds.len(), 1, "{}: {variant:?}", source.name);
            }
        }
    }

    #[test]
    fn every_program_in_the_object_is_attached_by_something() {
        let named: BTreeSet<&str> = all_attaches().iter().map(|a| a.program).collect();
        let unused: Vec<String> = object_programs().into_keys().filter(|p| !named.contains(p.as_str())).collect();
        assert!(unused.is_empty(), "programs no source attaches: {unused:?}");
    }
}
