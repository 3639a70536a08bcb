//! `numatrace check`: can numatrace trace on this machine, through which
//! hooks, and what is missing and why. The sources are loaded and attached
//! by the very code a capture starts with (`kernel::trial`), then detached.
use std::{io::Write, path::Path};

use anyhow::Result;
use clap::Args;
use numatrace_core::{
    check::{
        Availability, BalancingCheck, BtfAccess, BtfCheck, CheckReport, FeatureCheck, KernelInfo, Lockdown,
        LockdownCheck, NodeCheck, PrivilegeCheck, SCHEMA, SourceCheck, SourceState, TracefsCheck, TracefsState,
        Verdict, text,
    },
    kernel_status::{HookKind, SourceStatus},
    machine::{Sysctls, Topology},
};

use crate::{
    kernel::{
        self, btf_fields,
        machine_counters::{self, FirstTouchCounting, MachineCounters},
        privileges::{self, Privileges},
        sources::{self, Source},
        support,
        tracefs::{self, Tracefs},
    },
    live::cgroup::Hierarchy,
};

pub const AFTER_HELP: &str = "\
Run it first on a new server, and paste its output into any bug report.

What it checks:
  - whether this user may load BPF programs (root, or CAP_BPF and CAP_PERFMON);
  - every source numatrace traces (thread creation and migrations, first
    touches, page migrations, hinting faults, ...): as root it loads and
    attaches each one exactly as a capture would, then detaches it, and says
    through which hook it attached (raw_tracepoint, btf_tracepoint, classic
    tracepoint, fentry, kprobe), or why it cannot and what the report loses;
  - the always-on counters of `numatrace top` and the exporter (the
    balancer's task decisions, each process's cross-node moves and remote
    first touches), attached as they attach them, then dropped; they are not
    part of the verdict;
  - the kernel: release, BTF (mapped or read), tracefs, kprobes and fentry,
    lockdown, kernel.unprivileged_bpf_disabled, kernel.perf_event_paranoid;
  - NUMA balancing (kernel.numa_balancing and what it means for a capture),
    and the nodes with their CPUs and memory.

The last line is the verdict: \"numatrace can trace here\", \"will work with
reduced detail\" (some sources missing, the core ones attached), or \"cannot
trace here\". Exit status 0 when a capture works (reduced detail included),
1 when it cannot. Without the privileges it reports what files tell and exits 1.

Examples:
  sudo numatrace check              the full check, as text
  sudo numatrace check --json       one JSON object (schema numatrace.check/1)
  numatrace check                   as an ordinary user: what can be known without loading programs";

/// Options of `numatrace check`.
#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    /// Print one JSON object (schema numatrace.check/1; enums as snake_case strings) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs `numatrace check`; returns the exit code (1 when numatrace cannot trace here).
pub fn run(args: &CheckArgs) -> Result<i32> {
    let report = check();
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
        if report.verdict.exit_code() != 0 {
            // Scripts reading the JSON still get the one line on stderr.
            eprintln!("numatrace: {}", report.verdict.line);
        }
    } else {
        write!(out, "{}", text::render(&report))?;
    }
    Ok(report.verdict.exit_code())
}

/// Everything the check finds: never fails, what it cannot find is said.
fn check() -> CheckReport {
    let privileges = Privileges::current();
    let structs = btf_fields::read(Path::new(btf_fields::VMLINUX_BTF));
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mounted = tracefs::mount_point(&mountinfo);
    let lockdown = support::lockdown();
    let topology = Topology::read();
    let mut blockers = Vec::new();
    let mut tracefs_check = TracefsCheck {
        state: if mounted.is_some() { TracefsState::Mounted } else { TracefsState::NotMounted },
        path: mounted.as_ref().map(|p| p.display().to_string()),
        note: None,
    };
    let mut trial: Option<Vec<SourceStatus>> = None;
    let mut cgroup_not_tried = None;
    if !privileges.can_load_programs() {
        blockers.push(format!(
            "cannot load programs as this user: {}; run `sudo numatrace check` to see which sources attach",
            privileges::NEEDED
        ));
    } else {
        // As a capture starts: tracefs (mounted when it is not), the topology, then load and attach.
        match Tracefs::open() {
            Err(e) => {
                tracefs_check.note = Some(e.to_string());
                blockers.push(e.to_string());
            }
            Ok(tracefs) => {
                if mounted.is_none() {
                    tracefs_check.state = TracefsState::MountedByCheck;
                    tracefs_check.path = Some("/sys/kernel/tracing".into());
                }
                match &topology {
                    Err(e) => blockers.push(chain(e)),
                    Ok(topology) => {
                        let cgroup_id = own_cgroup_id().unwrap_or_else(|e| {
                            cgroup_not_tried = Some(chain(&e));
                            0
                        });
                        match kernel::trial(topology, &tracefs, cgroup_id) {
                            Ok(statuses) => trial = Some(statuses),
                            Err(e) => blockers.push(chain(&e)),
                        }
                    }
                }
            }
        }
    }
    if let Err(e) = &topology
        && !privileges.can_load_programs()
    {
        blockers.push(chain(e));
    }
    let sources = source_checks(trial.as_deref(), cgroup_not_tried);
    let machine_counters = machine_counter_checks(privileges.can_load_programs() && trial.is_some());
    let verdict = Verdict::judge(&blockers, &sources);
    let btf_readable = matches!(structs.access, BtfAccess::Mmap | BtfAccess::File);
    CheckReport {
        schema: SCHEMA.to_string(),
        kernel: KernelInfo { release: support::kernel_release(), arch: std::env::consts::ARCH.to_string() },
        privileges: PrivilegeCheck {
            can_load_programs: privileges.can_load_programs(),
            // SAFETY: geteuid(2) has no preconditions.
            euid: unsafe { libc::geteuid() },
            capabilities: privileges.held().into_iter().map(String::from).collect(),
        },
        btf: BtfCheck {
            path: btf_fields::VMLINUX_BTF.to_string(),
            access: structs.access,
            note: structs.access_note.clone(),
            task_struct_found: structs.task.complete(),
        },
        tracefs: tracefs_check,
        kprobes: kprobes(trial.as_deref(), lockdown),
        fentry: fentry(trial.as_deref(), btf_readable),
        lockdown: LockdownCheck { mode: lockdown },
        sysctl: support::bpf_sysctls(),
        numa_balancing: BalancingCheck::from_value(Sysctls::read().numa_balancing),
        nodes: topology
            .map(|t| {
                t.nodes
                    .iter()
                    .map(|n| NodeCheck {
                        id: n.id,
                        cpus: n.cpus.clone(),
                        mem_total_bytes: n.mem_total_bytes,
                        mem_free_bytes: n.mem_free_bytes,
                    })
                    .collect()
            })
            .unwrap_or_default(),
        sources_checked: trial.is_some(),
        sources,
        machine_counters,
        blockers,
        verdict,
    }
}

/// An error and its causes on one line.
fn chain(e: &anyhow::Error) -> String {
    e.chain().map(ToString::to_string).collect::<Vec<_>>().join(": ")
}

/// The id of this process's cgroup v2 (the cgroup-join programs are tried on it).
fn own_cgroup_id() -> Result<u64> {
    let text = std::fs::read_to_string("/proc/self/cgroup")?;
    let Some(path) = text.lines().find_map(|l| l.strip_prefix("0::")) else {
        anyhow::bail!("this process is in no cgroup v2 (cgroup v1 only): the cgroup joins were not tried");
    };
    Ok(Hierarchy::find()?.cgroup(path)?.cgroup.id)
}

/// Every source a capture may attach: [`sources::SOURCES`] and the cgroup joins.
fn every_source() -> impl Iterator<Item = &'static Source> {
    sources::SOURCES.iter().chain([&sources::CGROUP_JOINS])
}

fn source_checks(trial: Option<&[SourceStatus]>, cgroup_not_tried: Option<String>) -> Vec<SourceCheck> {
    every_source()
        .map(|source| match trial.and_then(|t| t.iter().find(|s| s.name == source.name)) {
            Some(status) => SourceCheck::tried(status, source.tells, source.role, source.without),
            None => SourceCheck {
                reason: (trial.is_some() && source.name == sources::CGROUP_JOINS.name)
                    .then(|| cgroup_not_tried.clone())
                    .flatten(),
                ..SourceCheck::not_checked(source.name, source.tells, source.role)
            },
        })
        .collect()
}

/// top's and the exporter's always-on counters, attached as they attach them
/// (every one asked for) and dropped; not tried where the capture's could not be.
fn machine_counter_checks(try_them: bool) -> Vec<SourceCheck> {
    let wanted = machine_counters::sources();
    let attached = try_them.then(|| MachineCounters::attach(FirstTouchCounting::Counted));
    wanted
        .iter()
        .enumerate()
        .map(|(i, source)| match &attached {
            Some(Ok(counters)) => match counters.sources.get(i) {
                Some(status) => SourceCheck::tried(status, source.tells, source.role, source.without),
                // Not tried: an earlier one it needs did not attach.
                None => SourceCheck {
                    reason: Some("not tried: the per-process migration counter did not attach".into()),
                    ..SourceCheck::not_checked(source.name, source.tells, source.role)
                },
            },
            Some(Err(e)) => SourceCheck {
                reason: Some(chain(e)),
                loses: Some(source.without.to_string()),
                state: SourceState::Unavailable,
                ..SourceCheck::not_checked(source.name, source.tells, source.role)
            },
            None => SourceCheck::not_checked(source.name, source.tells, source.role),
        })
        .collect()
}

/// Whether some variant of `source` attaches through `kind`.
fn offers(source: &Source, kind: HookKind) -> bool {
    source.variants.iter().any(|v| v.first().is_some_and(|a| a.hook.kind() == kind))
}

/// The sources that attached through `kind`, and the tried ones that offer it but did not.
fn by_kind(trial: &[SourceStatus], kind: HookKind) -> (Vec<&str>, Vec<&SourceStatus>) {
    let attached = trial.iter().filter(|s| s.kind == Some(kind)).map(|s| s.name.as_str()).collect();
    let refused = trial
        .iter()
        .filter(|s| s.kind != Some(kind))
        .filter(|s| every_source().any(|src| src.name == s.name && offers(src, kind)))
        .collect();
    (attached, refused)
}

fn kprobes(trial: Option<&[SourceStatus]>, lockdown: Lockdown) -> FeatureCheck {
    let (attached, refused) = trial.map(|t| by_kind(t, HookKind::Kprobe)).unwrap_or_default();
    if !attached.is_empty() {
        return FeatureCheck { available: Availability::Yes, detail: format!("attached for {}", attached.join(", ")) };
    }
    if !support::has_kprobe_pmu() {
        return FeatureCheck {
            available: Availability::No,
            detail: format!("no kprobe PMU ({}): kernel built without CONFIG_KPROBE_EVENTS", support::KPROBE_PMU),
        };
    }
    if lockdown == Lockdown::Confidentiality {
        return FeatureCheck { available: Availability::No, detail: "refused by lockdown (confidentiality)".into() };
    }
    // Kprobes are the last variant: a source that offers them and did not attach at all tried them.
    if let Some(s) = refused.iter().find(|s| !s.attached) {
        return FeatureCheck {
            available: Availability::No,
            detail: format!("{}: {}", s.name, s.reason.as_deref().unwrap_or("refused")),
        };
    }
    let tried = if trial.is_some() { "not needed: fentry was used" } else { "not tried" };
    FeatureCheck { available: Availability::Yes, detail: format!("the kernel has the kprobe PMU ({tried})") }
}

fn fentry(trial: Option<&[SourceStatus]>, btf_readable: bool) -> FeatureCheck {
    let Some(trial) = trial else {
        return match btf_readable {
            true => FeatureCheck {
                available: Availability::Unknown,
                detail: "the kernel has BTF; only loading a program tells (run as root)".into(),
            },
            false => FeatureCheck { available: Availability::No, detail: "needs the kernel's BTF".into() },
        };
    };
    let (attached, refused) = by_kind(trial, HookKind::Fentry);
    if !attached.is_empty() {
        return FeatureCheck { available: Availability::Yes, detail: format!("attached for {}", attached.join(", ")) };
    }
    match refused.first() {
        // fentry is the first variant where it is offered: the first reason given is its own.
        Some(s) => FeatureCheck {
            available: Availability::No,
            detail: format!(
                "{}: {}",
                s.name,
                s.fallback_reason
                    .as_deref()
                    .or(s.reason.as_deref())
                    .and_then(|r| r.split(sources::REASON_SEPARATOR).next())
                    .unwrap_or("refused")
            ),
        },
        None => FeatureCheck { available: Availability::Unknown, detail: "no source offers it".into() },
    }
}
