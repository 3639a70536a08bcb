//! The kernel sources numatrace attaches to, each optional: a source this
//! kernel lacks is reported once and skipped, the rest still run.
use aya::{
    Btf, Ebpf,
    programs::{FEntry, FExit, KProbe, TracePoint},
};
use serde::{Deserialize, Serialize};

use crate::tracefs::Tracefs;

/// How one attach point is reached.
#[derive(Clone, Copy, Debug)]
pub enum Hook {
    /// A classic tracepoint (group, event).
    Tracepoint(&'static str, &'static str),
    /// A kprobe on the first of these kernel functions that exists.
    Kprobe(&'static [&'static str]),
    /// A kretprobe on the first of these kernel functions that exists.
    Kretprobe(&'static [&'static str]),
    /// An fentry program on the first of these kernel functions in the kernel's BTF.
    Fentry(&'static [&'static str]),
    /// An fexit program on the first of these kernel functions in the kernel's BTF.
    Fexit(&'static [&'static str]),
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
    pub variants: &'static [&'static [Attach]],
}

const MISPLACED: &[&str] = &["migrate_misplaced_folio", "migrate_misplaced_page"];

const fn tp(program: &'static str, group: &'static str, event: &'static str) -> Attach {
    Attach { program, hook: Hook::Tracepoint(group, event) }
}

/// Every source, in attach order: lifecycle first so that no thread born
/// during attach is missed.
pub const SOURCES: &[Source] = &[
    // Creation and exit are separate sources: without creation, new threads
    // are not traced at all; without exit, only their end time is missing.
    Source {
        name: "thread creation",
        tells: "threads (and, when followed, processes) created during the capture",
        variants: &[&[tp("task_newtask", "task", "task_newtask")]],
    },
    Source {
        name: "thread exit",
        tells: "when traced threads exit",
        variants: &[&[tp("sched_process_exit", "sched", "sched_process_exit")]],
    },
    Source {
        name: "thread migrations",
        tells: "every CPU (and node) change of a traced thread",
        variants: &[&[tp("sched_migrate_task", "sched", "sched_migrate_task")]],
    },
    Source {
        name: "first touches",
        tells: "which thread first touched which pages, and on which node they landed",
        variants: &[&[tp("mm_page_alloc", "kmem", "mm_page_alloc")]],
    },
    Source {
        name: "fault addresses",
        tells: "the 2 MiB region of each first touch and hinting fault",
        variants: &[&[tp("page_fault_user", "exceptions", "page_fault_user")]],
    },
    Source {
        name: "balancer task placement",
        tells: "NUMA balancer task moves, swaps and sticks",
        variants: &[&[
            tp("sched_move_numa", "sched", "sched_move_numa"),
            tp("sched_swap_numa", "sched", "sched_swap_numa"),
            tp("sched_stick_numa", "sched", "sched_stick_numa"),
        ]],
    },
    Source {
        name: "page migrations",
        tells: "pages migrated, by reason",
        variants: &[&[tp("mm_migrate_pages", "migrate", "mm_migrate_pages")]],
    },
    Source {
        name: "explicit migration calls",
        tells: "migrate_pages/move_pages/mbind calls that move a traced process's pages",
        variants: &[&[
            tp("sys_enter_migrate_pages", "syscalls", "sys_enter_migrate_pages"),
            tp("sys_exit_migrate_pages", "syscalls", "sys_exit_migrate_pages"),
            tp("sys_enter_move_pages", "syscalls", "sys_enter_move_pages"),
            tp("sys_exit_move_pages", "syscalls", "sys_exit_move_pages"),
            tp("sys_enter_mbind", "syscalls", "sys_enter_mbind"),
            tp("sys_exit_mbind", "syscalls", "sys_exit_mbind"),
        ]],
    },
    Source {
        name: "hinting faults",
        tells: "NUMA hinting faults: on which node the memory a thread touches lives",
        variants: &[
            &[Attach { program: "task_numa_fault_fentry", hook: Hook::Fentry(&["task_numa_fault"]) }],
            &[Attach { program: "task_numa_fault", hook: Hook::Kprobe(&["task_numa_fault"]) }],
        ],
    },
    Source {
        name: "misplaced-page migration",
        tells: "time the balancer spends migrating misplaced pages",
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
];

/// What became of one source on this kernel.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SourceStatus {
    pub name: String,
    pub attached: bool,
    /// The kernel hooks used (e.g. `kprobe:migrate_misplaced_folio`).
    pub hooks: Vec<String>,
    /// Why it is not attached, when it is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Whether a kernel function can be probed (listed in kallsyms as text).
pub fn kernel_function_exists(name: &str) -> bool {
    let Ok(text) = std::fs::read_to_string("/proc/kallsyms") else { return false };
    text.lines().any(|line| {
        let mut parts = line.split_whitespace();
        let (_, kind, sym) = (parts.next(), parts.next(), parts.next());
        matches!(kind, Some("T" | "t")) && sym == Some(name)
    })
}

/// Attaches the first variant of a source whose programs all attach; a
/// half-attached variant is unloaded (it would give misleading counts).
pub fn attach(ebpf: &mut Ebpf, tracefs: &Tracefs, btf: Option<&Btf>, source: &Source) -> SourceStatus {
    let mut reasons = Vec::new();
    for variant in source.variants {
        let mut hooks = Vec::new();
        let mut failure = None;
        for attach in *variant {
            match attach_one(ebpf, tracefs, btf, attach) {
                Ok(hook) => hooks.push(hook),
                Err(reason) => {
                    failure = Some(reason);
                    break;
                }
            }
        }
        match failure {
            None => return SourceStatus { name: source.name.to_string(), attached: true, hooks, reason: None },
            Some(reason) => {
                unload_variant(ebpf, variant);
                reasons.push(reason);
            }
        }
    }
    SourceStatus { name: source.name.to_string(), attached: false, hooks: Vec::new(), reason: Some(reasons.join("; ")) }
}

/// Unloads (and so detaches) every program of a variant.
pub fn unload_variant(ebpf: &mut Ebpf, variant: &[Attach]) {
    for attach in variant {
        if let Some(program) = ebpf.program_mut(attach.program) {
            let _ = match program {
                aya::programs::Program::TracePoint(p) => p.unload(),
                aya::programs::Program::KProbe(p) => p.unload(),
                aya::programs::Program::FEntry(p) => p.unload(),
                aya::programs::Program::FExit(p) => p.unload(),
                _ => Ok(()),
            };
        }
    }
}

fn first_existing(functions: &[&'static str]) -> Result<&'static str, String> {
    functions
        .iter()
        .copied()
        .find(|f| kernel_function_exists(f))
        .ok_or_else(|| format!("this kernel has none of {}", functions.join(", ")))
}

fn attach_one(ebpf: &mut Ebpf, tracefs: &Tracefs, btf: Option<&Btf>, attach: &Attach) -> Result<String, String> {
    let program = ebpf
        .program_mut(attach.program)
        .ok_or_else(|| format!("program {} is missing from the object", attach.program))?;
    match attach.hook {
        Hook::Tracepoint(group, name) => {
            if !tracefs.has_event(group, name) {
                return Err(format!("this kernel has no tracepoint {group}:{name}"));
            }
            let tp: &mut TracePoint = program.try_into().map_err(|e| format!("{e}"))?;
            tp.load().map_err(|e| verifier_error(attach.program, &e))?;
            tp.attach(group, name).map_err(|e| format!("attaching to {group}:{name}: {e}"))?;
            Ok(format!("tracepoint:{group}:{name}"))
        }
        Hook::Kprobe(functions) | Hook::Kretprobe(functions) => {
            let function = first_existing(functions)?;
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
            Ok(format!("{kind}:{function}"))
        }
        Hook::Fentry(functions) | Hook::Fexit(functions) => {
            let btf = btf.ok_or_else(|| "the kernel has no BTF (/sys/kernel/btf/vmlinux)".to_string())?;
            let function = first_existing(functions)?;
            if matches!(attach.hook, Hook::Fentry(_)) {
                let p: &mut FEntry = program.try_into().map_err(|e| format!("{e}"))?;
                p.load(function, btf).map_err(|e| verifier_error(attach.program, &e))?;
                p.attach().map_err(|e| format!("fentry on {function}: {e}"))?;
                Ok(format!("fentry:{function}"))
            } else {
                let p: &mut FExit = program.try_into().map_err(|e| format!("{e}"))?;
                p.load(function, btf).map_err(|e| verifier_error(attach.program, &e))?;
                p.attach().map_err(|e| format!("fexit on {function}: {e}"))?;
                Ok(format!("fexit:{function}"))
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
