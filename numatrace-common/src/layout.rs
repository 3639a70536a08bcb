//! Tracepoint field offsets and run-time configuration, written by userspace
//! into the programs' read-only globals before load.
//!
//! Offsets differ between kernels (e.g. `sched_migrate_task.pid` is at 12 on
//! 6.18 and 24 on 6.1), so userspace reads them from tracefs format files.

/// Name of the global that holds [`Layouts`].
pub const LAYOUTS_GLOBAL: &str = "LAYOUTS";
/// Name of the global that holds [`Config`].
pub const CONFIG_GLOBAL: &str = "CONFIG";

/// Byte offsets of the tracepoint fields the programs read.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Layouts {
    pub migrate_task_pid: u32,
    pub migrate_task_orig_cpu: u32,
    pub migrate_task_dest_cpu: u32,

    pub fault_address: u32,

    pub page_alloc_pfn: u32,
    pub page_alloc_order: u32,
    pub page_alloc_gfp_flags: u32,

    /// `sched_move_numa`: pid, tgid, src_cpu, src_nid, dst_cpu, dst_nid.
    pub move_numa: PlacementFields,
    /// `sched_swap_numa`.
    pub swap_numa: PlacementFields,
    /// `sched_stick_numa`.
    pub stick_numa: PlacementFields,

    pub migrate_pages_succeeded: u32,
    pub migrate_pages_failed: u32,
    pub migrate_pages_thp_succeeded: u32,
    pub migrate_pages_reason: u32,

    pub newtask_pid: u32,
    pub newtask_comm: u32,
    pub newtask_clone_flags: u32,

    pub process_exit_pid: u32,
    pub process_exit_group_dead: u32,

    /// `sys_enter_migrate_pages` / `sys_enter_move_pages`: the target pid argument.
    pub sys_migrate_pages_pid: u32,
    pub sys_move_pages_pid: u32,
    /// `sys_enter_sched_setaffinity`: the target pid argument (0 = the caller).
    pub sys_sched_setaffinity_pid: u32,

    /// `struct task_struct` members (from the kernel's BTF, for the
    /// BTF-typed programs; [`FIELD_ABSENT`] without BTF).
    pub task: TaskFields,

    /// What the raw tracepoint programs read instead of the fields above.
    pub raw: RawArgs,
    /// The cgroup structs `cgroup_attach_task` walks (from BTF).
    pub cgroup: CgroupFields,
}

/// Where the raw tracepoint programs find what the classic records carry:
/// argument positions (the tracepoint's `TP_PROTO`, which changes between
/// kernels) and, for the raw `sys_enter`, the system calls and their first
/// argument. [`FIELD_ABSENT`] where this kernel does not tell; the program
/// that needs it then uses its classic tracepoint.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RawArgs {
    /// `mm_migrate_pages`: argument index of each value.
    pub migrate_pages_succeeded: u32,
    pub migrate_pages_failed: u32,
    pub migrate_pages_thp_succeeded: u32,
    pub migrate_pages_reason: u32,
    /// `sched_process_exit`: argument index of `group_dead` (newer kernels only).
    pub process_exit_group_dead: u32,
    /// Byte offset of a system call's first argument in `struct pt_regs`.
    pub syscall_arg0: u32,
    /// System call numbers, as the raw `sys_enter` gets them.
    pub sys_migrate_pages: u32,
    pub sys_move_pages: u32,
    pub sys_mbind: u32,
    pub sys_sched_setaffinity: u32,
}

/// Byte offsets (from the kernel's BTF) of what the BTF-typed cgroup join
/// programs read to tell whether a task moved (or was created) into the
/// traced cgroup or below it: the destination's ancestors are
/// walked through `self.parent`, each compared by `kn->id`, on the v2
/// hierarchy only (`root->hierarchy_id` 0). [`FIELD_ABSENT`] without BTF.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CgroupFields {
    /// `task_struct.comm` (char[16]).
    pub task_comm: u32,
    /// `cgroup.self` (the embedded `cgroup_subsys_state`).
    pub cgroup_self: u32,
    /// `cgroup.kn` (`struct kernfs_node *`).
    pub cgroup_kn: u32,
    /// `cgroup.root` (`struct cgroup_root *`).
    pub cgroup_root: u32,
    /// `cgroup_root.hierarchy_id` (int): 0 is cgroup v2.
    pub root_hierarchy_id: u32,
    /// `cgroup_subsys_state.cgroup` (`struct cgroup *`).
    pub css_cgroup: u32,
    /// `cgroup_subsys_state.parent` (`struct cgroup_subsys_state *`).
    pub css_parent: u32,
    /// `kernfs_node.id` (u64): the cgroup id, the inode number of its directory.
    pub kn_id: u32,
    /// `task_struct.cgroups` (`struct css_set *`): a new task's cgroups.
    pub task_cgroups: u32,
    /// `css_set.dfl_cgrp` (`struct cgroup *`): its cgroup v2.
    pub css_set_dfl_cgrp: u32,
}

impl CgroupFields {
    /// All members found, so the program can walk a cgroup's ancestors.
    pub fn complete(&self) -> bool {
        [
            self.task_comm,
            self.cgroup_self,
            self.cgroup_kn,
            self.cgroup_root,
            self.root_hierarchy_id,
            self.css_cgroup,
            self.css_parent,
            self.kn_id,
            self.task_cgroups,
            self.css_set_dfl_cgrp,
        ]
        .iter()
        .all(|&f| f != FIELD_ABSENT)
    }
}

/// Byte offsets of the `struct task_struct` members the BTF-typed programs
/// read. Userspace finds them in /sys/kernel/btf/vmlinux; the verifier checks
/// every read against the same BTF, so a wrong offset is refused at load,
/// never read.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskFields {
    pub pid: u32,
    pub tgid: u32,
    /// `thread_info.cpu` (x86, arm64 since 5.16) or `cpu`: the CPU it is on.
    pub cpu: u32,
    /// `se.sum_exec_runtime` (u64): nanoseconds the task has run, as of the
    /// scheduler's last update (at most a tick old).
    pub sum_exec_runtime: u32,
    /// `se.nr_migrations` (u64): how often the task has changed CPU.
    pub nr_migrations: u32,
    pub _pad: u32,
}

impl TaskFields {
    /// Whether all members were found.
    pub fn complete(&self) -> bool {
        self.pid != FIELD_ABSENT && self.tgid != FIELD_ABSENT && self.cpu != FIELD_ABSENT
    }
}

/// Offsets of the fields of the three NUMA-balancer placement tracepoints.
/// A field a tracepoint lacks (dst_* of `sched_move_numa`) is [`FIELD_ABSENT`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PlacementFields {
    pub src_pid: u32,
    pub src_tgid: u32,
    pub src_cpu: u32,
    pub src_nid: u32,
    pub dst_pid: u32,
    pub dst_tgid: u32,
    pub dst_cpu: u32,
    pub dst_nid: u32,
}

/// Offset value of a field the running kernel's tracepoint does not have.
pub const FIELD_ABSENT: u32 = u32::MAX;

/// What to trace, set by userspace at load time.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// The traced process.
    pub target_tgid: u32,
    /// 1: processes the target creates are traced too (`TRACKED_TGIDS`).
    pub follow_children: u32,
    /// pfn >> this = index into `PFN_BLOCK_NODE`.
    pub pfn_block_shift: u32,
    /// Number of valid entries in `PFN_BLOCK_NODE`.
    pub pfn_blocks: u32,
    /// Wake the reader only when the ring holds more than this many bytes;
    /// below it the reader drains on its own timer (no wakeup per event).
    pub wakeup_threshold_bytes: u64,
    /// The system call (number) on which the load generator, when attached,
    /// writes [`crate::LOAD_GENERATOR_EVENTS_PER_CALL`] synthetic events.
    pub load_generator_syscall: u64,
    /// 1: every migration of a traced thread is an event (`--all-migrations`);
    /// 0: one between two CPUs of the same node is only counted
    /// (`Counter::WithinNodeMigrations`): it cannot move a thread away from
    /// its memory, and it is most of the migrations on a busy machine.
    pub ship_within_node_migrations: u32,
    /// Entries of `CPU_NODE` that userspace filled; a CPU at or past this
    /// (one brought online after the start) has no known node. Without it the
    /// array's zeroes would put such a CPU on node 0.
    pub cpu_node_entries: u32,
    /// 1: `TRACKED_TGIDS` holds traced processes besides `target_tgid`
    /// (several `--pid`s, `--tree`, a cgroup), so every filter looks there
    /// too; `follow_children` alone also turns the lookup on.
    pub tgid_set: u32,
    /// 1: the user call stack is taken as each first-touch and hinting-fault
    /// run starts (`--stacks`). 0: the programs never reach that code (the
    /// verifier drops it, `.rodata` being constant).
    pub stacks: u32,
    /// The cgroup v2 id traced with everything below it (`--cgroup`,
    /// `--unit`, `--container`): tasks moved into it join `TRACKED_TGIDS`.
    /// 0: no cgroup target.
    pub cgroup_id: u64,
}

/// The `__GFP_MOVABLE` bit (bit 3 on every kernel since 2.6): user pages.
pub const GFP_MOVABLE: u64 = 0x08;
/// `CLONE_THREAD`.
pub const CLONE_THREAD: u64 = 0x0001_0000;
/// `TNF_MIGRATED` flag of `task_numa_fault`.
pub const TNF_MIGRATED: u32 = 0x01;
/// `TNF_FAULT_LOCAL` flag of `task_numa_fault`.
pub const TNF_FAULT_LOCAL: u32 = 0x08;

// The globals userspace writes before load: sizes fixed, so that a layout
// change fails the build on both sides rather than misreading offsets.
const _: () = assert!(size_of::<Layouts>() == 276);
const _: () = assert!(size_of::<RawArgs>() == 40);
const _: () = assert!(size_of::<TaskFields>() == 24);
const _: () = assert!(size_of::<CgroupFields>() == 40);
const _: () = assert!(size_of::<PlacementFields>() == 32);
const _: () = assert!(size_of::<Config>() == 56);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain #[repr(C)] structs of integers without padding holes that matter.
    unsafe impl aya::Pod for super::Layouts {}
    unsafe impl aya::Pod for super::PlacementFields {}
    unsafe impl aya::Pod for super::Config {}
    unsafe impl aya::Pod for super::TaskFields {}
    unsafe impl aya::Pod for super::RawArgs {}
    unsafe impl aya::Pod for super::CgroupFields {}
}
