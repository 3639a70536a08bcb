//! What attribution needs to know about the process besides the events:
//! its memory policy per mapping, its cpuset, and where its memory sat
//! before the capture. Filled from the start-of-capture snapshot.
use serde::{Deserialize, Serialize};

/// A memory policy mode, as numa_maps shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyMode {
    Default,
    Bind,
    Preferred,
    Interleave,
    Local,
    WeightedInterleave,
}

/// A mapping whose policy is not `default`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRange {
    pub start: u64,
    pub end: u64,
    pub mode: PolicyMode,
    pub nodes: Vec<u32>,
    /// What the mapping is (heap, stack, a file path, anon).
    pub what: String,
}

/// Facts about the traced process that attribution and fixes use.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcessContext {
    /// The process-wide policy (from `set_mempolicy`, e.g. `numactl --membind`), if not default.
    pub process_policy: Option<(PolicyMode, Vec<u32>)>,
    /// Mappings with their own policy (`mbind`).
    pub policy_ranges: Vec<PolicyRange>,
    /// CPUs and nodes the process may use (`Cpus_allowed_list`, `Mems_allowed_list`).
    pub cpus_allowed: Vec<u32>,
    pub mems_allowed: Vec<u32>,
    /// The cgroup's effective cpuset, when one restricts the process.
    pub cpuset_cpus: Option<Vec<u32>>,
    pub cpuset_mems: Option<Vec<u32>>,
    /// The cgroup path (for fix commands), if known.
    pub cgroup: Option<String>,
    /// Resident pages per node when the capture started (attach to a running pid).
    pub pages_by_node_at_start: Vec<(u32, u64)>,
    /// The mappings (with per-node pages) that hold most of that memory.
    pub biggest_mappings_at_start: Vec<(String, Vec<(u32, u64)>)>,
    /// True when a JVM (libjvm) is mapped.
    pub is_jvm: bool,
    /// The executable's name.
    pub program: String,
    /// numatrace started the process (`--`), so nothing predates the capture.
    pub started_by_numatrace: bool,
    /// The other traced processes' contexts, by pid (a multi-process
    /// capture): each process's own policy and cpuset explain its pages.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub others: std::collections::BTreeMap<u32, ProcessContext>,
    /// Memory that several traced processes map (their regions merged).
    #[serde(skip)]
    pub shared: super::shared::SharedMappings,
}

impl ProcessContext {
    /// The context of process `pid`: its own when its snapshot was taken, else this one.
    pub fn for_process(&self, pid: u32) -> &ProcessContext {
        self.others.get(&pid).unwrap_or(self)
    }

    /// Whether its cpuset keeps memory off `cpu_node` and allows `page_node`
    /// (`docker run --cpuset-cpus` on one node, `--cpuset-mems` on another).
    pub fn cpuset_explains(&self, cpu_node: u32, page_node: u32) -> Option<String> {
        let mems = self.cpuset_mems.as_ref()?;
        (!mems.contains(&cpu_node) && mems.contains(&page_node))
            .then(|| format!("cpuset.mems {} excludes node {cpu_node}", crate::machine::cpulist::format(mems)))
    }

    /// [`ProcessContext::cpuset_explains`] for this process or any other traced one.
    pub fn any_cpuset_explains(&self, cpu_node: u32, page_node: u32) -> Option<String> {
        self.cpuset_explains(cpu_node, page_node)
            .or_else(|| self.others.values().find_map(|o| o.cpuset_explains(cpu_node, page_node)))
    }

    /// The policy that governs an address, if any (mapping first, then process).
    pub fn policy_at(&self, address: u64) -> Option<(PolicyMode, &[u32])> {
        if let Some(r) = self.policy_ranges.iter().find(|r| r.start <= address && address < r.end) {
            return Some((r.mode, &r.nodes));
        }
        self.process_policy.as_ref().map(|(m, n)| (*m, n.as_slice()))
    }

    /// Whether a policy or cpuset explains pages of `address` landing on `page_node`
    /// while the thread ran on `cpu_node`.
    pub fn explains_remote(&self, address: Option<u64>, cpu_node: u32, page_node: u32) -> Option<String> {
        if let Some(why) = self.cpuset_explains(cpu_node, page_node) {
            return Some(why);
        }
        let policy = match address {
            Some(a) => self.policy_at(a),
            None => self.process_policy.as_ref().map(|(m, n)| (*m, n.as_slice())),
        };
        match policy {
            Some((PolicyMode::Bind, nodes)) if nodes.contains(&page_node) && !nodes.contains(&cpu_node) => {
                Some(format!("memory policy bind to node(s) {}", crate::machine::cpulist::format(nodes)))
            }
            Some((PolicyMode::Preferred, nodes)) if nodes.contains(&page_node) => {
                Some(format!("memory policy preferred node {}", crate::machine::cpulist::format(nodes)))
            }
            Some((PolicyMode::Interleave | PolicyMode::WeightedInterleave, nodes)) if nodes.contains(&page_node) => {
                Some(format!("memory policy interleave over node(s) {}", crate::machine::cpulist::format(nodes)))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_and_cpuset_explain_remote_pages_default_does_not() {
        let mut ctx = ProcessContext::default();
        assert_eq!(ctx.explains_remote(None, 1, 0), None);
        ctx.process_policy = Some((PolicyMode::Bind, vec![0]));
        assert!(ctx.explains_remote(None, 1, 0).unwrap().contains("bind"));
        assert_eq!(ctx.explains_remote(None, 0, 0), None);
        let ctx = ProcessContext { cpuset_mems: Some(vec![1]), ..Default::default() };
        assert!(ctx.explains_remote(Some(0x1000), 0, 1).unwrap().contains("cpuset.mems"));
    }

    #[test]
    fn a_mapping_policy_overrides_the_process_policy() {
        let ctx = ProcessContext {
            process_policy: Some((PolicyMode::Bind, vec![0])),
            policy_ranges: vec![PolicyRange {
                start: 0x1000,
                end: 0x2000,
                mode: PolicyMode::Interleave,
                nodes: vec![0, 1],
                what: "heap".into(),
            }],
            ..Default::default()
        };
        assert_eq!(ctx.policy_at(0x1800).map(|p| p.0), Some(PolicyMode::Interleave));
        assert_eq!(ctx.policy_at(0x3000).map(|p| p.0), Some(PolicyMode::Bind));
    }
}

/// Parses a numa_maps policy (`bind:0-1`, `interleave=static:0-3`, `prefer:1`, `default`).
pub fn parse_policy(text: &str) -> Option<(PolicyMode, Vec<u32>)> {
    let (mode, nodes) = match text.split_once(':') {
        Some((m, n)) => (m, crate::machine::cpulist::parse(n).ok()?),
        None => (text, Vec::new()),
    };
    let mode = mode.split('=').next().unwrap_or("").trim();
    let mode = match mode {
        "default" => PolicyMode::Default,
        "bind" => PolicyMode::Bind,
        "prefer" | "prefer (many)" | "preferred" => PolicyMode::Preferred,
        "interleave" => PolicyMode::Interleave,
        "weighted interleave" => PolicyMode::WeightedInterleave,
        "local" => PolicyMode::Local,
        _ => return None,
    };
    Some((mode, nodes))
}

impl ProcessContext {
    /// Builds the context from a process snapshot (numa_maps, status, cgroup).
    pub fn from_snapshot(snap: &crate::machine::ProcessSnapshot, started_by_numatrace: bool) -> ProcessContext {
        let mut ctx = ProcessContext { started_by_numatrace, program: snap.name().to_string(), ..Default::default() };
        if let Some(status) = &snap.status {
            ctx.cpus_allowed = status.cpus_allowed.clone();
            ctx.mems_allowed = status.mems_allowed.clone();
        }
        if let Some(cs) = &snap.cpuset {
            ctx.cgroup = Some(cs.cgroup.clone());
            if cs.cpus_set_by.is_some() {
                ctx.cpuset_cpus = Some(cs.effective_cpus.clone());
            }
            if cs.mems_set_by.is_some() {
                ctx.cpuset_mems = Some(cs.effective_mems.clone());
            }
        }
        if let Some(maps) = &snap.numa_maps {
            let mut mappings: Vec<_> = maps.mappings.iter().collect();
            mappings.sort_by_key(|m| m.start);
            let policies: Vec<Option<(PolicyMode, Vec<u32>)>> =
                mappings.iter().map(|m| parse_policy(&m.policy)).collect();
            // The task policy shows on every mapping without its own: one shared non-default policy is the process's.
            let non_default: Vec<&(PolicyMode, Vec<u32>)> =
                policies.iter().flatten().filter(|p| p.0 != PolicyMode::Default).collect();
            if !mappings.is_empty()
                && non_default.len() == mappings.len()
                && non_default.windows(2).all(|w| w[0] == w[1])
            {
                ctx.process_policy = non_default.first().map(|p| (*p).clone());
            } else {
                for (i, (m, p)) in mappings.iter().zip(&policies).enumerate() {
                    if let Some((mode, nodes)) = p
                        && *mode != PolicyMode::Default
                    {
                        let end = mappings.get(i + 1).map(|n| n.start).unwrap_or(u64::MAX);
                        let what = m.file.clone().unwrap_or_else(|| format!("{:?}", m.kind).to_lowercase());
                        ctx.policy_ranges.push(PolicyRange {
                            start: m.start,
                            end,
                            mode: *mode,
                            nodes: nodes.clone(),
                            what,
                        });
                    }
                }
            }
            ctx.is_jvm = mappings.iter().any(|m| m.file.as_deref().is_some_and(|f| f.ends_with("libjvm.so")));
            let mut biggest: Vec<_> = mappings
                .iter()
                .map(|m| {
                    let what = m.file.clone().unwrap_or_else(|| format!("{:?}@{:#x}", m.kind, m.start).to_lowercase());
                    let pages: Vec<(u32, u64)> =
                        m.bytes_by_node().into_iter().map(|(n, b)| (n, b / 4096)).filter(|(_, p)| *p > 0).collect();
                    (what, pages)
                })
                .filter(|(_, p)| !p.is_empty())
                .collect();
            biggest.sort_by_key(|(_, p)| std::cmp::Reverse(p.iter().map(|(_, n)| n).sum::<u64>()));
            biggest.truncate(5);
            ctx.biggest_mappings_at_start = biggest;
        }
        // The process's own memory (heap, stacks, anonymous, huge pages and
        // shared memory): the page cache of its files is shared, and placed
        // by whoever read them first.
        ctx.pages_by_node_at_start = match &snap.numa_maps {
            Some(maps) => {
                let mut own: std::collections::BTreeMap<u32, u64> = std::collections::BTreeMap::new();
                for m in maps.mappings.iter().filter(|m| m.is_own_memory()) {
                    for (node, pages) in &m.pages_by_node {
                        *own.entry(*node).or_default() += pages * m.page_size_bytes / 4096;
                    }
                }
                own.into_iter().collect()
            }
            None => snap.memory_by_node.iter().map(|(n, c)| (*n, c.total / 4096)).collect(),
        };
        ctx
    }
}

#[cfg(test)]
mod policy_tests {
    use super::*;

    #[test]
    fn parses_numa_maps_policies() {
        assert_eq!(parse_policy("default"), Some((PolicyMode::Default, vec![])));
        assert_eq!(parse_policy("bind:0"), Some((PolicyMode::Bind, vec![0])));
        assert_eq!(parse_policy("interleave=static:0-3"), Some((PolicyMode::Interleave, vec![0, 1, 2, 3])));
        assert_eq!(parse_policy("prefer:1"), Some((PolicyMode::Preferred, vec![1])));
        assert_eq!(parse_policy("weighted interleave:0-1"), Some((PolicyMode::WeightedInterleave, vec![0, 1])));
        assert_eq!(parse_policy("bogus:x"), None);
    }
}
