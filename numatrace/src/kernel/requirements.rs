//! What the raw and BTF-typed programs need from this kernel beyond their
//! hook, checked in one place. A program whose needs are not met is not
//! tried: its source falls back to its next variant (the classic tracepoint)
//! and says why (`sources[].fallback_reason`, one startup line).
use std::collections::BTreeMap;

use numatrace_common::{FIELD_ABSENT, RawArgs, TaskFields};

/// The programs that cannot work on this kernel, and why.
pub fn unmet(task: &TaskFields, raw: &RawArgs) -> BTreeMap<&'static str, String> {
    let mut unmet = BTreeMap::new();
    let found = |offset: u32| offset != FIELD_ABSENT;
    let task_ids = found(task.pid) && found(task.tgid);
    let mut need = |programs: &[&'static str], met: bool, why: &str| {
        if !met {
            unmet.extend(programs.iter().map(|p| (*p, why.to_string())));
        }
    };
    need(
        &["sched_migrate_task_btf", "sched_migrate_task_count_btf"],
        task.complete(),
        "task_struct's pid/tgid/cpu are not in the kernel's BTF",
    );
    need(
        &["task_newtask_btf", "sched_move_numa_btf", "sched_swap_numa_btf", "sched_stick_numa_btf"],
        task_ids,
        "task_struct's pid/tgid are not in the kernel's BTF",
    );
    let migrate = [raw.migrate_pages_succeeded, raw.migrate_pages_failed, raw.migrate_pages_thp_succeeded];
    need(
        &["mm_migrate_pages_raw"],
        migrate.into_iter().chain([raw.migrate_pages_reason]).all(found),
        "mm_migrate_pages's arguments do not match its record on this kernel (or there is no BTF to count them)",
    );
    need(
        &["sys_enter_watch"],
        found(raw.syscall_arg0),
        "where pt_regs holds a system call's first argument is not in the kernel's BTF (or not known for this architecture)",
    );
    unmet
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known() -> (TaskFields, RawArgs) {
        let task = TaskFields { pid: 8, tgid: 12, cpu: 16, sum_exec_runtime: 24, nr_migrations: 32, _pad: 0 };
        let raw = RawArgs {
            migrate_pages_succeeded: 0,
            migrate_pages_failed: 1,
            migrate_pages_thp_succeeded: 2,
            migrate_pages_reason: 7,
            process_exit_group_dead: FIELD_ABSENT,
            syscall_arg0: 112,
            sys_migrate_pages: 256,
            sys_move_pages: 279,
            sys_mbind: 237,
            sys_sched_setaffinity: 203,
        };
        (task, raw)
    }

    #[test]
    fn everything_known_means_nothing_unmet() {
        let (task, raw) = known();
        assert_eq!(unmet(&task, &raw), BTreeMap::new());
    }

    #[test]
    fn a_missing_value_unmeets_exactly_the_programs_that_read_it() {
        let (mut task, mut raw) = known();
        task.cpu = FIELD_ABSENT;
        raw.migrate_pages_reason = FIELD_ABSENT;
        raw.syscall_arg0 = FIELD_ABSENT;
        let unmet: Vec<&str> = unmet(&task, &raw).into_keys().collect();
        assert_eq!(
            unmet,
            ["mm_migrate_pages_raw", "sched_migrate_task_btf", "sched_migrate_task_count_btf", "sys_enter_watch"]
        );
    }

    #[test]
    fn no_task_ids_unmeets_every_btf_typed_program_that_reads_a_task() {
        let (mut task, raw) = known();
        task.tgid = FIELD_ABSENT;
        let unmet: Vec<&str> = unmet(&task, &raw).into_keys().collect();
        assert_eq!(
            unmet,
            [
                "sched_migrate_task_btf",
                "sched_migrate_task_count_btf",
                "sched_move_numa_btf",
                "sched_stick_numa_btf",
                "sched_swap_numa_btf",
                "task_newtask_btf"
            ]
        );
    }
}
