//! What the screen shows, apart from drawing it: the latest view, the sort
//! column, the filter, per process or per cgroup, the selected row.
use numatrace_core::system::{CgroupRow, ProcessRow, SystemView, Tag};

pub use crate::system::By;

/// A column the rows can be sorted by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Column {
    Pid,
    Name,
    Cgroup,
    Memory,
    Remote,
    Migrations,
    RemoteFirstTouches,
    RemoteHintingFaults,
    Tag,
}

impl Column {
    /// The order a first press sorts in: figures largest first, names A to Z.
    fn descending_first(self) -> bool {
        matches!(
            self,
            Column::Memory
                | Column::Remote
                | Column::Migrations
                | Column::RemoteFirstTouches
                | Column::RemoteHintingFaults
        )
    }
}

/// What the filter keeps: `node:N` (memory or threads on node N),
/// `cgroup:TEXT` (its cgroup contains TEXT), else a name containing the text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Filter {
    Node(u32),
    Cgroup(String),
    Name(String),
}

impl Filter {
    /// `None` for an empty text.
    pub fn parse(text: &str) -> Option<Filter> {
        let text = text.trim();
        if text.is_empty() {
            return None;
        }
        if let Some(n) = text.strip_prefix("node:").and_then(|n| n.trim().parse().ok()) {
            return Some(Filter::Node(n));
        }
        if let Some(c) = text.strip_prefix("cgroup:") {
            return Some(Filter::Cgroup(c.trim().to_string()));
        }
        Some(Filter::Name(text.strip_prefix("name:").unwrap_or(text).trim().to_string()))
    }

    fn keeps(&self, row: &Row) -> bool {
        match self {
            Filter::Node(n) => {
                row.memory_by_node.iter().any(|(id, b)| id == n && *b > 0)
                    || row.threads_by_node.iter().any(|(id, _)| id == n)
            }
            Filter::Cgroup(c) => row.cgroup.contains(c.as_str()),
            Filter::Name(s) => row.name.contains(s.as_str()),
        }
    }
}

/// One line of the table, per process or per cgroup.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// The process (`None` for a cgroup's row).
    pub pid: Option<u32>,
    /// Its comm, or for a cgroup how many processes.
    pub name: String,
    pub cgroup: String,
    pub rss_bytes: u64,
    pub memory_by_node: Vec<(u32, u64)>,
    pub memory_known: bool,
    pub threads_by_node: Vec<(u32, u32)>,
    pub remote_memory_share: Option<f64>,
    pub cross_node_migrations_per_s: f64,
    /// `None` when the kernel does not count them.
    pub remote_first_touch_pages_per_s: Option<f64>,
    /// `None` when the kernel does not count them.
    pub remote_hinting_faults_per_s: Option<f64>,
    pub tag: Tag,
}

impl Row {
    fn of_process(p: &ProcessRow) -> Row {
        Row {
            pid: Some(p.pid),
            name: p.comm.clone(),
            cgroup: p.cgroup.clone(),
            rss_bytes: p.rss_bytes,
            memory_known: p.memory_by_node.is_some(),
            memory_by_node: p.memory_by_node.iter().flatten().map(|(n, b)| (*n, *b)).collect(),
            threads_by_node: p.threads_by_node.iter().map(|(n, c)| (*n, *c)).collect(),
            remote_memory_share: p.remote_memory_share,
            cross_node_migrations_per_s: p.cross_node_migrations_per_s,
            remote_first_touch_pages_per_s: p.remote_first_touch_pages_per_s,
            remote_hinting_faults_per_s: p.remote_hinting_faults_per_s,
            tag: p.tag,
        }
    }

    fn of_cgroup(c: &CgroupRow) -> Row {
        Row {
            pid: None,
            name: format!("{} proc", c.processes),
            cgroup: c.cgroup.clone(),
            rss_bytes: c.rss_bytes,
            memory_known: c.remote_memory_share.is_some(),
            memory_by_node: c.memory_by_node.iter().map(|(n, b)| (*n, *b)).collect(),
            threads_by_node: c.threads_by_node.iter().map(|(n, c)| (*n, *c)).collect(),
            remote_memory_share: c.remote_memory_share,
            cross_node_migrations_per_s: c.cross_node_migrations_per_s,
            remote_first_touch_pages_per_s: c.remote_first_touch_pages_per_s,
            remote_hinting_faults_per_s: c.remote_hinting_faults_per_s,
            tag: c.tag,
        }
    }
}

/// The filter line while it is typed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FilterInput {
    pub text: String,
    pub editing: bool,
}

/// Everything the screen depends on.
pub struct State {
    pub view: Option<SystemView>,
    pub by: By,
    pub sort: Column,
    pub descending: bool,
    pub filter: FilterInput,
    /// The selected row, as an index into [`State::rows`].
    pub selected: usize,
    /// The first row shown (the table scrolls to keep the selection visible).
    pub offset: usize,
    /// A line for the footer (what numa_maps cost, an error).
    pub status: String,
}

impl State {
    pub fn new(by: By) -> State {
        State {
            view: None,
            by,
            sort: Column::Remote,
            descending: true,
            filter: FilterInput::default(),
            selected: 0,
            offset: 0,
            status: String::new(),
        }
    }

    /// The rows to show: grouped, filtered, sorted.
    pub fn rows(&self) -> Vec<Row> {
        let Some(view) = &self.view else { return Vec::new() };
        let mut rows: Vec<Row> = match self.by {
            By::Process => view.processes.iter().map(Row::of_process).collect(),
            By::Cgroup => view.by_cgroup().iter().map(Row::of_cgroup).collect(),
        };
        if let Some(filter) = Filter::parse(&self.filter.text) {
            rows.retain(|r| filter.keeps(r));
        }
        let key = |r: &Row| -> (f64, String) {
            match self.sort {
                Column::Pid => (f64::from(r.pid.unwrap_or(0)), String::new()),
                Column::Name => (0.0, r.name.clone()),
                Column::Cgroup => (0.0, r.cgroup.clone()),
                Column::Memory => (r.rss_bytes as f64, String::new()),
                Column::Remote => (r.remote_memory_share.unwrap_or(-1.0), String::new()),
                Column::Migrations => (r.cross_node_migrations_per_s, String::new()),
                Column::RemoteFirstTouches => (r.remote_first_touch_pages_per_s.unwrap_or(-1.0), String::new()),
                Column::RemoteHintingFaults => (r.remote_hinting_faults_per_s.unwrap_or(-1.0), String::new()),
                Column::Tag => (0.0, r.tag.name().to_string()),
            }
        };
        // Stable: ties keep the view's order (remote share, then memory).
        rows.sort_by(|a, b| {
            let (ka, kb) = (key(a), key(b));
            let order = ka.0.total_cmp(&kb.0).then_with(|| ka.1.cmp(&kb.1));
            if self.descending { order.reverse() } else { order }
        });
        rows
    }

    /// A new view; the selection stays on its row index, within bounds.
    pub fn set_view(&mut self, view: SystemView) {
        self.view = Some(view);
        self.clamp_selection();
    }

    /// Sort by `column`; the same column again reverses the order.
    pub fn sort_by(&mut self, column: Column) {
        if self.sort == column {
            self.descending = !self.descending;
        } else {
            self.sort = column;
            self.descending = column.descending_first();
        }
    }

    pub fn move_selection(&mut self, by: isize) {
        self.selected = self.selected.saturating_add_signed(by);
        self.clamp_selection();
    }

    pub fn toggle_by(&mut self) {
        self.by = match self.by {
            By::Process => By::Cgroup,
            By::Cgroup => By::Process,
        };
        self.selected = 0;
        self.offset = 0;
    }

    fn clamp_selection(&mut self) {
        let n = self.rows().len();
        self.selected = self.selected.min(n.saturating_sub(1));
    }

    /// The process of the selected row (none for a cgroup row).
    pub fn selected_pid(&self) -> Option<u32> {
        self.rows().get(self.selected).and_then(|r| r.pid)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn process(pid: u32, comm: &str, cgroup: &str, share: Option<f64>, rss: u64, node: u32) -> ProcessRow {
        ProcessRow {
            pid,
            comm: comm.into(),
            cgroup: cgroup.into(),
            rss_bytes: rss,
            memory_by_node: share.map(|_| BTreeMap::from([(node, rss)])),
            memory_age_seconds: None,
            threads_by_node: BTreeMap::from([(0, 1)]),
            remote_memory_share: share,
            own_memory_bytes: share.map(|_| rss),
            remote_memory_bytes: share.map(|s| (s * rss as f64) as u64),
            cross_node_migrations_per_s: f64::from(pid),
            remote_first_touch_pages_per_s: None,
            remote_hinting_faults_per_s: None,
            tag: Tag::Local,
        }
    }

    fn state() -> State {
        let mut s = State::new(By::Process);
        s.set_view(SystemView::of_rows(
            vec![
                process(1, "db", "/sys/db", Some(0.9), 100, 1),
                process(2, "web", "/sys/web", Some(0.1), 300, 0),
                process(3, "dbsync", "/sys/db", None, 200, 0),
            ],
            1.0,
        ));
        s
    }

    fn pids(s: &State) -> Vec<Option<u32>> {
        s.rows().iter().map(|r| r.pid).collect()
    }

    #[test]
    fn sorts_by_a_column_and_reverses_on_a_second_press() {
        let mut s = state();
        assert_eq!(pids(&s), vec![Some(1), Some(2), Some(3)]);
        s.sort_by(Column::Memory);
        assert_eq!(pids(&s), vec![Some(2), Some(3), Some(1)]);
        s.sort_by(Column::Memory);
        assert_eq!(pids(&s), vec![Some(1), Some(3), Some(2)]);
        s.sort_by(Column::Name);
        assert_eq!(pids(&s), vec![Some(1), Some(3), Some(2)]);
        s.sort_by(Column::Pid);
        assert_eq!(pids(&s), vec![Some(1), Some(2), Some(3)]);
    }

    #[test]
    fn filters_by_name_cgroup_and_node() {
        let mut s = state();
        s.filter.text = "db".into();
        assert_eq!(pids(&s), vec![Some(1), Some(3)]);
        s.filter.text = "cgroup:web".into();
        assert_eq!(pids(&s), vec![Some(2)]);
        s.filter.text = "node:1".into();
        assert_eq!(pids(&s), vec![Some(1)]);
        s.filter.text = "nothing-matches".into();
        s.move_selection(5);
        assert_eq!((s.rows().len(), s.selected_pid()), (0, None));
    }

    #[test]
    fn groups_by_cgroup() {
        let mut s = state();
        s.toggle_by();
        let rows = s.rows();
        assert_eq!(rows.iter().map(|r| r.cgroup.as_str()).collect::<Vec<_>>(), vec!["/sys/db", "/sys/web"]);
        assert_eq!(rows[0].name, "2 proc");
        assert_eq!(s.selected_pid(), None);
    }
}
