//! The kernel sources numatrace attaches to, each optional: a source this
//! kernel lacks is reported once and skipped, the rest still run.
use aya::{
    Ebpf,
    programs::{KProbe, TracePoint},
};
use serde::Serialize;

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
}

/// A program in the object and where it attaches.
#[derive(Clone, Copy, Debug)]
pub struct Attach {
    pub program: &'static str,
    pub hook: Hook,
}

/// A user-facing source: what it tells and the programs that make it.
#[derive(Clone, Copy, Debug)]
pub struct Source {
    pub name: &'static str,
    pub tells: &'static str,
    pub attaches: &'static [Attach],
}

const MISPLACED: &[&str] = &["migrate_misplaced_folio", "migrate_misplaced_page"];

/// Every source, in attach order: lifecycle first so that no thread born
/// during attach is missed.
pub const SOURCES: &[Source] = &[
    Source {
        name: "thread lifecycle",
        tells: "threads created and exited during the capture",
        attaches: &[
            Attach { program: "task_newtask", hook: Hook::Tracepoint("task", "task_newtask") },
            Attach { program: "sched_process_exit", hook: Hook::Tracepoint("sched", "sched_process_exit") },
        ],
    },
    Source {
        name: "thread migrations",
        tells: "every CPU (and node) change of a traced thread",
        attaches: &[Attach { program: "sched_migrate_task", hook: Hook::Tracepoint("sched", "sched_migrate_task") }],
    },
    Source {
        name: "run time per node",
        tells: "how long each thread ran on each node",
        attaches: &[Attach { program: "sched_switch", hook: Hook::Tracepoint("sched", "sched_switch") }],
    },
    Source {
        name: "first touches",
        tells: "which thread first touched which pages, and on which node they landed",
        attaches: &[Attach { program: "mm_page_alloc", hook: Hook::Tracepoint("kmem", "mm_page_alloc") }],
    },
    Source {
        name: "fault addresses",
        tells: "the 2 MiB region of each first touch and hinting fault",
        attaches: &[Attach { program: "page_fault_user", hook: Hook::Tracepoint("exceptions", "page_fault_user") }],
    },
    Source {
        name: "balancer task placement",
        tells: "NUMA balancer task moves, swaps and sticks",
        attaches: &[
            Attach { program: "sched_move_numa", hook: Hook::Tracepoint("sched", "sched_move_numa") },
            Attach { program: "sched_swap_numa", hook: Hook::Tracepoint("sched", "sched_swap_numa") },
            Attach { program: "sched_stick_numa", hook: Hook::Tracepoint("sched", "sched_stick_numa") },
        ],
    },
    Source {
        name: "page migrations",
        tells: "pages migrated, by reason",
        attaches: &[Attach { program: "mm_migrate_pages", hook: Hook::Tracepoint("migrate", "mm_migrate_pages") }],
    },
    Source {
        name: "explicit migration calls",
        tells: "migrate_pages/move_pages/mbind calls that move a traced process's pages",
        attaches: &[
            Attach { program: "sys_enter_migrate_pages", hook: Hook::Tracepoint("syscalls", "sys_enter_migrate_pages") },
            Attach { program: "sys_exit_migrate_pages", hook: Hook::Tracepoint("syscalls", "sys_exit_migrate_pages") },
            Attach { program: "sys_enter_move_pages", hook: Hook::Tracepoint("syscalls", "sys_enter_move_pages") },
            Attach { program: "sys_exit_move_pages", hook: Hook::Tracepoint("syscalls", "sys_exit_move_pages") },
            Attach { program: "sys_enter_mbind", hook: Hook::Tracepoint("syscalls", "sys_enter_mbind") },
            Attach { program: "sys_exit_mbind", hook: Hook::Tracepoint("syscalls", "sys_exit_mbind") },
        ],
    },
    Source {
        name: "hinting faults",
        tells: "NUMA hinting faults: on which node the memory a thread touches lives",
        attaches: &[Attach { program: "task_numa_fault", hook: Hook::Kprobe(&["task_numa_fault"]) }],
    },
    Source {
        name: "misplaced-page migration",
        tells: "time the balancer spends migrating misplaced pages",
        attaches: &[
            Attach { program: "migrate_misplaced_enter", hook: Hook::Kprobe(MISPLACED) },
            Attach { program: "migrate_misplaced_exit", hook: Hook::Kretprobe(MISPLACED) },
        ],
    },
];

/// What became of one source on this kernel.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
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

/// Attaches every program of a source; on the first failure the whole source
/// is skipped (a half-attached source would give misleading counts).
pub fn attach(ebpf: &mut Ebpf, tracefs: &Tracefs, source: &Source) -> SourceStatus {
    let mut hooks = Vec::new();
    let mut attached_programs = Vec::new();
    let mut failure = None;
    for attach in source.attaches {
        match attach_one(ebpf, tracefs, attach) {
            Ok(hook) => {
                hooks.push(hook);
                attached_programs.push(attach.program);
            }
            Err(reason) => {
                failure = Some(reason);
                break;
            }
        }
    }
    if failure.is_some() {
        for program in attached_programs {
            if let Some(p) = ebpf.program_mut(program) {
                let _ = unload(p);
            }
        }
    }
    SourceStatus { name: source.name.to_string(), attached: failure.is_none(), hooks, reason: failure }
}

fn unload(program: &mut aya::programs::Program) -> Result<(), aya::programs::ProgramError> {
    match program {
        aya::programs::Program::TracePoint(p) => p.unload(),
        aya::programs::Program::KProbe(p) => p.unload(),
        _ => Ok(()),
    }
}

fn attach_one(ebpf: &mut Ebpf, tracefs: &Tracefs, attach: &Attach) -> Result<String, String> {
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
            let function = functions
                .iter()
                .find(|f| kernel_function_exists(f))
                .ok_or_else(|| format!("this kernel has none of {}", functions.join(", ")))?;
            let kp: &mut KProbe = program.try_into().map_err(|e| format!("{e}"))?;
            kp.load().map_err(|e| verifier_error(attach.program, &e))?;
            kp.attach(function, 0).map_err(|e| format!("attaching to {function}: {e}"))?;
            let kind = if matches!(attach.hook, Hook::Kprobe(_)) { "kprobe" } else { "kretprobe" };
            Ok(format!("{kind}:{function}"))
        }
    }
}

fn verifier_error(program: &str, err: &aya::programs::ProgramError) -> String {
    // The verifier log can be thousands of lines; keep its last lines, which say why.
    let text = format!("{err:#}");
    let tail: Vec<&str> = text.lines().rev().take(3).collect();
    format!("the kernel refused program {program}: {}", tail.into_iter().rev().collect::<Vec<_>>().join(" | "))
}
