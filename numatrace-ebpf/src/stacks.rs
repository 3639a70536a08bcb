//! `--stacks`: the user call stack of the thread that starts a run, kept
//! once per distinct stack in the `STACKS` stack-trace map (the kernel walks
//! the frame pointers and hashes the addresses); the run carries its id.
//! Runs are per thread and 2 MiB region, so a stack is taken once per 512
//! sequential first touches, not per page.
use aya_ebpf::{bindings::BPF_F_USER_STACK, macros::map, maps::StackTrace, programs::tracing::StackIdContext};
use numatrace_common::{Counter, stack_field};

use crate::{config::config, tracking};

/// One entry unless `--stacks` (userspace sizes it to `MAX_STACKS` then).
#[map]
pub static STACKS: StackTrace = StackTrace::with_max_entries(1, 0);

/// The current thread's user stack as a run's stack field (id + 1), or 0
/// when `--stacks` is off or the stack could not be kept (counted). With
/// `--stacks` off this is one read of `.rodata`, which the verifier folds.
#[inline(always)]
pub fn user_stack<C: StackIdContext>(ctx: &C) -> u32 {
    if config!(stacks) == 0 {
        return 0;
    }
    match ctx.get_stackid(&STACKS, u64::from(BPF_F_USER_STACK)) {
        Ok(id) => {
            tracking::count(Counter::Stacks, 1);
            stack_field(Some(id as u32))
        }
        Err(_) => {
            tracking::count(Counter::LostStacks, 1);
            0
        }
    }
}
