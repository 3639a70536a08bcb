//! PostgreSQL, recognised among the traced processes: a postmaster and its
//! backends sharing `shared_buffers`. PostgreSQL is not NUMA-aware: the
//! usual advice is to interleave its shared memory over all nodes when it
//! is bigger than a node, else to run the whole instance on one node.
use super::{
    FIXED_BELOW, Fix, FixKind, RESTART_COST, Workload, interleave_goal,
    launcher::{Binding, CpuBinding, MemPolicy},
    scope::{UnitNumaPolicy, UnitPlacement},
    verify_by_diff,
};
use crate::machine::{Node, ProcessSnapshot, cpulist};

/// A PostgreSQL instance among the traced processes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Postgres {
    /// The postmaster: the postgres process whose command line is its own
    /// (backends rewrite theirs to `postgres: ...`), else the lowest pid.
    pub postmaster_pid: u32,
    /// How the postmaster was started.
    pub postmaster: Workload,
    /// The systemd unit it runs in (`postgresql@15-main.service`).
    pub unit: Option<String>,
    /// Its largest shared mapping's resident size (shared_buffers and the
    /// rest of its main shared memory; numa_maps gives no mapping size).
    pub shared_memory_bytes: u64,
}

/// A postgres process: its executable is `postgres` (or `postmaster`).
fn is_postgres(s: &ProcessSnapshot) -> bool {
    let exe_name = s.identity.as_ref().and_then(|i| i.exe.as_deref()).map(|e| e.rsplit('/').next().unwrap_or(e));
    match exe_name {
        Some(name) => name == "postgres" || name == "postmaster",
        None => matches!(s.name(), "postgres" | "postmaster"),
    }
}

/// The largest mapping of shared memory a snapshot shows, in bytes.
fn largest_shared_mapping(s: &ProcessSnapshot) -> u64 {
    s.numa_maps
        .iter()
        .flat_map(|m| &m.mappings)
        .filter(|m| m.anon_pages == 0 && m.is_shared_memory())
        .map(|m| m.resident_bytes())
        .max()
        .unwrap_or(0)
}

impl Postgres {
    /// The instance among these snapshots, if a postgres process is there.
    pub fn recognise<'a>(snapshots: impl IntoIterator<Item = &'a ProcessSnapshot>) -> Option<Postgres> {
        let pg: Vec<&ProcessSnapshot> = snapshots.into_iter().filter(|s| is_postgres(s)).collect();
        let own_command = |s: &&&ProcessSnapshot| s.identity.as_ref().is_some_and(|i| !i.title_rewritten);
        let postmaster =
            pg.iter().filter(own_command).min_by_key(|s| s.pid).or_else(|| pg.iter().min_by_key(|s| s.pid))?;
        Some(Postgres {
            postmaster_pid: postmaster.pid,
            postmaster: Workload::of_snapshot(postmaster),
            unit: postmaster.identity.as_ref().and_then(|i| i.systemd_unit.clone()),
            shared_memory_bytes: pg.iter().map(|s| largest_shared_mapping(s)).max().unwrap_or(0),
        })
    }
}

/// The account PostgreSQL runs as on Debian, Ubuntu and RHEL: the server
/// refuses to start as root, so its restart runs as this user.
const POSTGRES_USER: &str = "postgres";

/// The data directory of a postmaster's command line (`-D DIR`, `-DDIR`,
/// `--pgdata=DIR`), and the rest of its arguments.
fn data_directory(argv: &[String]) -> Option<(String, Vec<String>)> {
    let mut rest = Vec::new();
    let mut dir = None;
    let mut words = argv.iter().skip(1);
    while let Some(w) = words.next() {
        if w == "-D" {
            dir = words.next().cloned();
        } else if let Some(d) = w.strip_prefix("--pgdata=").or_else(|| w.strip_prefix("-D")) {
            dir = Some(d.to_string());
        } else {
            rest.push(w.clone());
        }
    }
    Some((dir.filter(|d| !d.is_empty())?, rest))
}

/// The commands that restart the instance under `binding`: pg_ctl beside
/// the postgres executable stops it and starts it again with the same
/// arguments under numactl, as PostgreSQL's own user. Where the command line
/// does not tell the data directory, the steps are described instead.
fn restart_commands(pg: &Postgres, binding: &Binding) -> Vec<String> {
    let w = &pg.postmaster;
    let exe = w.exe.clone().or_else(|| w.argv.first().cloned()).filter(|e| e.starts_with('/'));
    let (Some(exe), Some((dir, rest)), false) = (exe, data_directory(&w.argv), w.title_rewritten) else {
        return vec![
            "# DESTRUCTIVE: stop PostgreSQL (pg_ctl stop -D <data directory>), then start the postmaster under numactl:"
                .to_string(),
            w.command_with(binding),
        ];
    };
    let pg_ctl = format!("{}/pg_ctl", exe.rsplit_once('/').map_or("", |(bin, _)| bin));
    let mut start = vec![pg_ctl.clone(), "start".into(), "-w".into(), "-D".into(), dir.clone()];
    if !rest.is_empty() {
        start.extend(["-o".to_string(), rest.join(" ")]);
    }
    let start = super::Workload::command_line(start).command_with(binding);
    let user = POSTGRES_USER;
    vec![
        "# DESTRUCTIVE: stops PostgreSQL (every session ends) and starts it again under numactl".to_string(),
        format!("runuser -u {user} -- {} stop -m fast -D {}", shell_word(&pg_ctl), shell_word(&dir)),
        format!("runuser -u {user} -- {start}"),
    ]
}

/// One word for the shell.
fn shell_word(word: &str) -> String {
    super::launcher::shell_words(&[word.to_string()])
}

impl Fix {
    /// Interleave the instance's memory over all nodes: its shared memory
    /// is bigger than a node. The postmaster's policy is inherited by every
    /// backend and by the shared memory it creates.
    pub fn postgres_interleave(pg: &Postgres, nodes: &[Node]) -> Fix {
        let mems: Vec<u32> = nodes.iter().filter(|n| !n.is_memoryless()).map(|n| n.id).collect();
        let goal = interleave_goal(mems.len());
        let size = pg.shared_memory_bytes >> 20;
        let title = format!(
            "Interleave PostgreSQL's memory over all nodes: its shared memory ({size} MiB) is bigger than a node"
        );
        let fix = match &pg.unit {
            Some(unit) => {
                let p = UnitPlacement {
                    cpus: None,
                    policy: UnitNumaPolicy::Interleave,
                    mems: mems.clone(),
                    cgroup_cpuset: false,
                };
                let mut f = Fix::unit_dropin(unit, &p);
                f.kind = FixKind::PostgresInterleave;
                f.title = format!("{title} (drop-in for {unit})");
                f.goal_remote_share = Some(goal);
                f
            }
            None => {
                let binding = Binding { cpu: None, mem: Some(MemPolicy::Interleave("all".into())) };
                Fix::new(
                    FixKind::PostgresInterleave,
                    title,
                    restart_commands(pg, &binding),
                    true,
                    verify_by_diff(None, goal),
                )
                .with_notes(pg.postmaster.start_notes())
                .with_cost(RESTART_COST, goal)
            }
        };
        fix.with_note(format!(
            "By design {:.0} % of its pages stay remote, spread evenly so that no node's memory bandwidth saturates.",
            (goal - FIXED_BELOW) * 100.0
        ))
    }

    /// Run the whole instance on one node: its shared memory fits there.
    pub fn postgres_bind(pg: &Postgres, node: &Node) -> Fix {
        let size = pg.shared_memory_bytes >> 20;
        let title = format!(
            "Run PostgreSQL on node {} only (CPUs {}), memory from node {}: its shared memory ({size} MiB) fits there",
            node.id,
            cpulist::format(&node.cpus),
            node.id
        );
        let mut fix = match &pg.unit {
            Some(unit) => {
                let p = UnitPlacement {
                    cpus: Some(node.cpus.clone()),
                    policy: UnitNumaPolicy::Bind,
                    mems: vec![node.id],
                    cgroup_cpuset: false,
                };
                let mut f = Fix::unit_dropin(unit, &p);
                f.kind = FixKind::PostgresBind;
                f.title = format!("{title} (drop-in for {unit})");
                f
            }
            None => {
                let binding = Binding {
                    cpu: Some(CpuBinding::Nodes(node.id.to_string())),
                    mem: Some(MemPolicy::Bind(node.id.to_string())),
                };
                Fix::new(
                    FixKind::PostgresBind,
                    title,
                    restart_commands(pg, &binding),
                    true,
                    verify_by_diff(None, FIXED_BELOW),
                )
                .with_notes(pg.postmaster.start_notes())
                .with_cost(RESTART_COST, FIXED_BELOW)
            }
        };
        fix.placement = Some(super::Placement { cpus: node.cpus.clone(), mems: vec![node.id], strict: true });
        fix.with_note(format!(
            "Node {} had {} MiB free when the capture started; the rest of the node's CPUs stay free for other work.",
            node.id,
            node.mem_free_bytes >> 20
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::machine::{Mapping, MappingKind, NumaMaps, ProcessIdentity, Topology};

    fn pg_snapshot(pid: u32, cmdline: &[&str], rewritten: bool, shared_pages: u64) -> ProcessSnapshot {
        ProcessSnapshot {
            pid,
            taken_at_unix_ms: 0,
            status: None,
            numa_maps: Some(NumaMaps {
                mappings: vec![Mapping {
                    start: 0x7f00_0000_0000,
                    policy: "default".into(),
                    kind: MappingKind::File,
                    file: Some("/dev/zero\\040(deleted)".into()),
                    pages_by_node: BTreeMap::from([(0, shared_pages)]),
                    page_size_bytes: 4096,
                    anon_pages: 0,
                    dirty_pages: 0,
                }],
                skipped_lines: 0,
            }),
            memory_by_node: BTreeMap::new(),
            threads: Vec::new(),
            threads_by_node: BTreeMap::new(),
            cpuset: None,
            identity: Some(ProcessIdentity {
                exe: Some("/usr/lib/postgresql/15/bin/postgres".into()),
                cmdline: cmdline.iter().map(|w| w.to_string()).collect(),
                title_rewritten: rewritten,
                systemd_unit: Some("postgresql@15-main.service".into()),
                container: None,
            }),
            unreadable: Vec::new(),
        }
    }

    fn instance(unit: bool, shared_pages: u64) -> Postgres {
        let mut post = pg_snapshot(
            812,
            &["/usr/lib/postgresql/15/bin/postgres", "-D", "/var/lib/postgresql/15/main"],
            false,
            shared_pages,
        );
        if !unit && let Some(i) = post.identity.as_mut() {
            i.systemd_unit = None;
        }
        let backend = pg_snapshot(640, &["postgres: 15/main: checkpointer"], true, 10);
        let pg = Postgres::recognise([&backend, &post]).expect("postgres recognised");
        assert_eq!(pg.postmaster_pid, 812, "the postmaster, not the lower-pid backend");
        pg
    }

    #[test]
    fn a_postmaster_is_told_from_its_backends_and_an_unrelated_process_is_not_postgres() {
        let mut other = pg_snapshot(1, &["/usr/bin/redis-server"], false, 1);
        if let Some(i) = other.identity.as_mut() {
            i.exe = Some("/usr/bin/redis-server".into());
        }
        assert_eq!(Postgres::recognise([&other]), None);
        let pg = instance(true, 65536);
        assert_eq!(pg.shared_memory_bytes, 256 << 20);
        assert_eq!(pg.unit.as_deref(), Some("postgresql@15-main.service"));
    }

    #[test]
    fn a_restart_keeps_the_postmasters_arguments_and_finds_its_data_directory() {
        let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            data_directory(&words(&["postgres", "-D", "/d", "-c", "shared_buffers=1GB"])),
            Some(("/d".to_string(), words(&["-c", "shared_buffers=1GB"])))
        );
        assert_eq!(data_directory(&words(&["postgres", "--pgdata=/d"])), Some(("/d".to_string(), vec![])));
        assert_eq!(data_directory(&words(&["postgres", "-D/d"])), Some(("/d".to_string(), vec![])));
        assert_eq!(data_directory(&words(&["postgres", "-c", "x=1"])), None);
        let mut pg = instance(false, 10);
        pg.postmaster.argv =
            words(&["/usr/lib/postgresql/15/bin/postgres", "-D", "/srv/pg data", "-c", "shared_buffers=128MB"]);
        let binding = Binding { cpu: Some(CpuBinding::Nodes("1".into())), mem: Some(MemPolicy::Bind("1".into())) };
        assert_eq!(
            restart_commands(&pg, &binding)[1..],
            [
                "runuser -u postgres -- /usr/lib/postgresql/15/bin/pg_ctl stop -m fast -D '/srv/pg data'",
                "runuser -u postgres -- numactl --cpunodebind=1 --membind=1 /usr/lib/postgresql/15/bin/pg_ctl start -w -D '/srv/pg data' -o '-c shared_buffers=128MB'",
            ]
        );
    }

    #[test]
    fn shared_buffers_bigger_than_a_node_interleave_else_bind() {
        let topo = Topology::synthetic(&[vec![0, 1, 2, 3], vec![4, 5, 6, 7]]);
        // 2 GiB of shared memory on 1 GiB nodes, no unit: numactl for the postmaster.
        let pg = instance(false, 512 * 1024);
        let f = Fix::postgres_interleave(&pg, &topo.nodes);
        assert_eq!(f.kind, FixKind::PostgresInterleave);
        assert!(f.destructive);
        assert_eq!(
            f.commands,
            vec![
                "# DESTRUCTIVE: stops PostgreSQL (every session ends) and starts it again under numactl",
                "runuser -u postgres -- /usr/lib/postgresql/15/bin/pg_ctl stop -m fast -D /var/lib/postgresql/15/main",
                "runuser -u postgres -- numactl --interleave=all /usr/lib/postgresql/15/bin/pg_ctl start -w -D /var/lib/postgresql/15/main",
            ]
        );
        // In its unit: the drop-in.
        let pg = instance(true, 512 * 1024);
        let f = Fix::postgres_interleave(&pg, &topo.nodes);
        assert_eq!(
            f.commands[1],
            "cat > /etc/systemd/system/postgresql@15-main.service.d/numatrace.conf <<'EOF'\n[Service]\nNUMAPolicy=interleave\nNUMAMask=0-1\nEOF"
        );
        assert_eq!(f.commands[4], "systemctl restart postgresql@15-main.service");
        // 256 MiB fits on node 1.
        let pg = instance(true, 65536);
        let f = Fix::postgres_bind(&pg, &topo.nodes[1]);
        assert_eq!(f.kind, FixKind::PostgresBind);
        assert_eq!(
            f.commands[1],
            "cat > /etc/systemd/system/postgresql@15-main.service.d/numatrace.conf <<'EOF'\n[Service]\nCPUAffinity=4-7\nNUMAPolicy=bind\nNUMAMask=1\nEOF"
        );
        let pg = instance(false, 65536);
        let f = Fix::postgres_bind(&pg, &topo.nodes[1]);
        assert_eq!(
            f.commands[2],
            "runuser -u postgres -- numactl --cpunodebind=1 --membind=1 /usr/lib/postgresql/15/bin/pg_ctl start -w -D /var/lib/postgresql/15/main"
        );
    }
}
