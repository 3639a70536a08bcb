//! tracefs: where it is, mounting it, and reading tracepoint format files
//! (field offsets and the symbolic names of enum values) at load time, so
//! that no offset is hard-coded for one kernel.
use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum TracefsError {
    #[error(
        "tracefs is not mounted and could not be mounted at /sys/kernel/tracing ({0}); mount it with: mount -t tracefs nodev /sys/kernel/tracing"
    )]
    NotMounted(String),
    #[error("this kernel has no tracepoint {0}")]
    NoTracepoint(String),
    #[error("tracepoint {event} has no field {field}")]
    NoField { event: String, field: String },
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
}

/// Where tracefs is mounted now, from a mountinfo table (readable by any
/// user, unlike the tracefs folder itself): a tracefs mount, else debugfs's
/// `tracing` folder.
pub fn mount_point(mountinfo: &str) -> Option<PathBuf> {
    let mut debugfs = None;
    for line in mountinfo.lines() {
        // "36 25 0:12 / /sys/kernel/tracing rw,relatime shared:14 - tracefs tracefs rw"
        let Some((left, right)) = line.split_once(" - ") else { continue };
        let (Some(point), Some(fstype)) = (left.split_whitespace().nth(4), right.split_whitespace().next()) else {
            continue;
        };
        match fstype {
            "tracefs" => return Some(PathBuf::from(point)),
            "debugfs" => debugfs = Some(Path::new(point).join("tracing")),
            _ => {}
        }
    }
    debugfs
}

/// The tracefs mount.
#[derive(Clone, Debug)]
pub struct Tracefs {
    root: PathBuf,
}

impl Tracefs {
    /// Finds tracefs, mounting it at /sys/kernel/tracing when nothing is mounted.
    pub fn open() -> Result<Tracefs, TracefsError> {
        for root in ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"] {
            if Path::new(root).join("events").is_dir() {
                return Ok(Tracefs { root: root.into() });
            }
        }
        let target = c"/sys/kernel/tracing";
        // SAFETY: constant C strings; mount(2) has no memory-safety preconditions beyond that.
        let rc = unsafe { libc::mount(c"nodev".as_ptr(), target.as_ptr(), c"tracefs".as_ptr(), 0, std::ptr::null()) };
        if rc == 0 && Path::new("/sys/kernel/tracing/events").is_dir() {
            return Ok(Tracefs { root: "/sys/kernel/tracing".into() });
        }
        Err(TracefsError::NotMounted(std::io::Error::last_os_error().to_string()))
    }

    /// A tracefs tree somewhere else (tests).
    pub fn at(root: impl Into<PathBuf>) -> Tracefs {
        Tracefs { root: root.into() }
    }

    pub fn has_event(&self, group: &str, name: &str) -> bool {
        self.root.join("events").join(group).join(name).join("format").is_file()
    }

    /// Reads and parses `events/<group>/<name>/format`.
    pub fn format(&self, group: &str, name: &str) -> Result<EventFormat, TracefsError> {
        let path = self.root.join("events").join(group).join(name).join("format");
        if !path.is_file() {
            return Err(TracefsError::NoTracepoint(format!("{group}:{name}")));
        }
        let text = fs::read_to_string(&path).map_err(|source| TracefsError::Read { path, source })?;
        Ok(EventFormat::parse(&format!("{group}:{name}"), &text))
    }
}

/// One field of a tracepoint record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub offset: u32,
    pub size: u32,
}

/// A parsed format file.
#[derive(Clone, Debug, Default)]
pub struct EventFormat {
    pub event: String,
    pub fields: Vec<Field>,
    pub print_fmt: String,
}

impl EventFormat {
    /// Parses a format file's text. Lines that do not describe a field are ignored.
    pub fn parse(event: &str, text: &str) -> EventFormat {
        let mut fields = Vec::new();
        let mut print_fmt = String::new();
        for line in text.lines() {
            let line = line.trim();
            if let Some(rest) = line.strip_prefix("print fmt:") {
                print_fmt = rest.trim().to_string();
                continue;
            }
            if !line.starts_with("field:") {
                continue;
            }
            let mut decl = None;
            let mut offset = None;
            let mut size = None;
            for part in line.split(';').map(str::trim) {
                if let Some(d) = part.strip_prefix("field:") {
                    decl = Some(d.trim());
                } else if let Some(o) = part.strip_prefix("offset:") {
                    offset = o.trim().parse().ok();
                } else if let Some(s) = part.strip_prefix("size:") {
                    size = s.trim().parse().ok();
                }
            }
            let (Some(decl), Some(offset), Some(size)) = (decl, offset, size) else { continue };
            // "unsigned long pfn", "char comm[16]", "__data_loc char[] comm": the name is the last word without [..].
            let last = decl.split_whitespace().last().unwrap_or("");
            let name = last.split('[').next().unwrap_or("").to_string();
            if !name.is_empty() {
                fields.push(Field { name, offset, size });
            }
        }
        EventFormat { event: event.to_string(), fields, print_fmt }
    }

    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// The offset of a field that must exist.
    pub fn offset(&self, name: &str) -> Result<u32, TracefsError> {
        self.field(name)
            .map(|f| f.offset)
            .ok_or_else(|| TracefsError::NoField { event: self.event.clone(), field: name.to_string() })
    }

    /// The value -> name table of `__print_symbolic(REC-><field>, {0, "a"}, ...)`
    /// in the print format, e.g. `mm_migrate_pages.reason`.
    pub fn symbols(&self, field: &str) -> BTreeMap<i64, String> {
        let needle = format!("__print_symbolic(REC->{field},");
        let mut table = BTreeMap::new();
        let Some(start) = self.print_fmt.find(&needle) else { return table };
        let mut rest = &self.print_fmt[start + needle.len()..];
        // Pairs look like {5, "numa_misplaced"}; stop at the closing paren of the call.
        loop {
            rest = rest.trim_start_matches([' ', ',']);
            if !rest.starts_with('{') {
                break;
            }
            let Some(end) = rest.find('}') else { break };
            let pair = &rest[1..end];
            if let Some((value, name)) = pair.split_once(',') {
                let value = value.trim();
                let parsed = value
                    .strip_prefix("0x")
                    .map(|h| i64::from_str_radix(h, 16).ok())
                    .unwrap_or_else(|| value.parse().ok());
                if let Some(v) = parsed {
                    table.insert(v, name.trim().trim_matches('"').to_string());
                }
            }
            rest = &rest[end + 1..];
        }
        table
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIGRATE_TASK_618: &str = "name: sched_migrate_task\nID: 300\nformat:\n\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\n\tfield:__data_loc char[] comm;\toffset:8;\tsize:4;\tsigned:0;\n\tfield:pid_t pid;\toffset:12;\tsize:4;\tsigned:1;\n\tfield:int prio;\toffset:16;\tsize:4;\tsigned:1;\n\tfield:int orig_cpu;\toffset:20;\tsize:4;\tsigned:1;\n\tfield:int dest_cpu;\toffset:24;\tsize:4;\tsigned:1;\n\nprint fmt: \"comm=%s pid=%d\", __get_str(comm), REC->pid\n";
    const MIGRATE_TASK_61: &str = "format:\n\tfield:char comm[16];\toffset:8;\tsize:16;\tsigned:0;\n\tfield:pid_t pid;\toffset:24;\tsize:4;\tsigned:1;\n\tfield:int prio;\toffset:28;\tsize:4;\tsigned:1;\n\tfield:int orig_cpu;\toffset:32;\tsize:4;\tsigned:1;\n\tfield:int dest_cpu;\toffset:36;\tsize:4;\tsigned:1;\n";

    #[test]
    fn reads_offsets_on_both_kernel_layouts() {
        let new = EventFormat::parse("sched:sched_migrate_task", MIGRATE_TASK_618);
        assert_eq!(new.offset("pid").unwrap(), 12);
        assert_eq!(new.offset("dest_cpu").unwrap(), 24);
        assert_eq!(new.field("comm").unwrap().size, 4);
        let old = EventFormat::parse("sched:sched_migrate_task", MIGRATE_TASK_61);
        assert_eq!(old.offset("pid").unwrap(), 24);
        assert_eq!(old.field("comm").unwrap().size, 16);
        assert!(matches!(old.offset("nope"), Err(TracefsError::NoField { .. })));
    }

    #[test]
    fn finds_the_mount_point_in_mountinfo() {
        let tracefs = "22 1 0:5 / /sys rw - sysfs sysfs rw\n36 22 0:12 / /sys/kernel/tracing rw,relatime shared:14 - tracefs tracefs rw\n";
        assert_eq!(mount_point(tracefs), Some(PathBuf::from("/sys/kernel/tracing")));
        let debugfs = "22 1 0:5 / /sys rw - sysfs sysfs rw\n30 22 0:7 / /sys/kernel/debug rw - debugfs debugfs rw\n";
        assert_eq!(mount_point(debugfs), Some(PathBuf::from("/sys/kernel/debug/tracing")));
        assert_eq!(mount_point("22 1 0:5 / /sys rw - sysfs sysfs rw\n"), None);
        assert_eq!(mount_point("garbage\n"), None);
    }

    #[test]
    fn reads_symbolic_reasons() {
        let f = EventFormat {
            print_fmt: r#""reason=%s", __print_symbolic(REC->mode, {0, "MIGRATE_ASYNC"}), __print_symbolic(REC->reason, {0, "compaction"}, {3, "syscall_or_cpuset"}, {5, "numa_misplaced"})"#.into(),
            ..Default::default()
        };
        let reasons = f.symbols("reason");
        assert_eq!(reasons.get(&5).map(String::as_str), Some("numa_misplaced"));
        assert_eq!(reasons.get(&3).map(String::as_str), Some("syscall_or_cpuset"));
        assert_eq!(reasons.len(), 3);
        assert_eq!(f.symbols("mode").len(), 1);
    }

    #[test]
    fn reads_this_kernels_formats() {
        let Ok(tracefs) = Tracefs::open() else { return };
        let f = tracefs.format("sched", "sched_migrate_task").unwrap();
        assert!(f.offset("pid").unwrap() >= 8);
        let m = tracefs.format("migrate", "mm_migrate_pages").unwrap();
        assert!(m.symbols("reason").values().any(|n| n == "numa_misplaced"));
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_odd_text(text in ".{0,400}") {
            let f = EventFormat::parse("x:y", &text);
            let _ = f.symbols("reason");
        }
    }
}
