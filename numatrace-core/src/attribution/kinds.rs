//! The closed set of causes numatrace attributes remote memory to.
use serde::{Deserialize, Serialize};

/// Why a page ended up on a node other than the one its user runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CauseKind {
    /// Pages first touched by thread X on node A, used by thread Y running on node B (the init-thread pattern).
    FirstTouchByOtherThread,
    /// A thread first touched its memory locally and was later moved (by the scheduler's load balancer) to another node.
    ThreadMigrated,
    /// Pages allocated on a node other than the faulting CPU's with no policy asking for it: the local node was full.
    AllocationSpill,
    /// Remote placement imposed by the process's memory policy (bind, preferred, interleave) or its cpuset.
    MemoryPolicy,
    /// What the automatic NUMA balancer itself made remote: a task moved away
    /// from its memory, pages migrated toward a thread that then left. Its
    /// migrations that bring memory to its users are repairs, not a cause.
    NumaBalancer,
    /// Memory used from several nodes by different threads (shared data, a
    /// database buffer pool): no placement makes it local to all of them.
    SharedAcrossNodes,
    /// Pages moved by migrate_pages(2), move_pages(2), mbind(2) or cpuset changes.
    ExplicitMigration,
    /// Memory that was already placed when numatrace attached to a running process.
    PlacedBeforeCapture,
}

impl CauseKind {
    pub const ALL: [CauseKind; 8] = [
        CauseKind::FirstTouchByOtherThread,
        CauseKind::ThreadMigrated,
        CauseKind::AllocationSpill,
        CauseKind::MemoryPolicy,
        CauseKind::NumaBalancer,
        CauseKind::SharedAcrossNodes,
        CauseKind::ExplicitMigration,
        CauseKind::PlacedBeforeCapture,
    ];

    /// The JSON name (`first_touch_by_other_thread`, ...).
    pub fn name(self) -> &'static str {
        match self {
            CauseKind::FirstTouchByOtherThread => "first_touch_by_other_thread",
            CauseKind::ThreadMigrated => "thread_migrated",
            CauseKind::AllocationSpill => "allocation_spill",
            CauseKind::MemoryPolicy => "memory_policy",
            CauseKind::NumaBalancer => "numa_balancer",
            CauseKind::SharedAcrossNodes => "shared_across_nodes",
            CauseKind::ExplicitMigration => "explicit_migration",
            CauseKind::PlacedBeforeCapture => "placed_before_capture",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_names_are_the_documented_ones() {
        for kind in CauseKind::ALL {
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.name());
        }
    }
}
