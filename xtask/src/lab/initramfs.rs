//! The guest's initramfs: busybox, a static numatrace, every host program a
//! command names (by path or by name on PATH, anywhere in its arguments, and
//! inside shell scripts given as arguments, `sh -c '...'`) with the shared
//! libraries and loader `ldd` lists, the few /etc files programs look up at
//! run time, and an /init script that mounts the kernel filesystems, brings
//! up the loopback interface, runs the commands and powers off.
//!
//! Words of a script (an argument holding whitespace or shell punctuation)
//! are split at shell punctuation; a bare word that is a busybox applet stays
//! busybox's (`awk`, `taskset`, `pidof`, `sleep`: the guest has them, and
//! copying the host's coreutils for every `echo` would only grow the image),
//! any other bare word that names an executable on the host's PATH is copied,
//! and so is an absolute path to a host file (outside /proc, /sys and /dev):
//! write `/usr/bin/taskset` to get the host's own version of an applet.
//! Programs a script reaches only through a variable are not seen: name them
//! with `cargo xtask lab --with PROG` (or pass them as arguments after the
//! script, `sh -c '"$1" ...' sh PROG`).
//! Written as an uncompressed newc cpio archive (no compression: decompressing
//! under emulation would cost more than reading the bytes).
use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    io::{BufWriter, Write},
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

use super::{Balancing, GuestCommand};

/// Where numatrace lives in the guest (on PATH).
pub const GUEST_NUMATRACE: &str = "/usr/local/bin/numatrace";
/// Host busybox (package busybox-static).
const BUSYBOX: &str = "/bin/busybox";
/// Console markers the host parses.
pub const MARK_READY: &str = "@@numatrace-lab ready";
pub const MARK_BEGIN: &str = "@@numatrace-lab begin";
pub const MARK_EXIT: &str = "@@numatrace-lab exit";
/// Separates the stdout of batched commands on ttyS1 (followed by the index and a newline).
pub const MARK_STDOUT_END: &str = "\n@@numatrace-lab end ";
/// Files larger than this named in a command are not copied into the guest's RAM.
const MAX_FILE: u64 = 512 << 20;

/// Files of the image: guest path -> (mode, content source).
#[derive(Default)]
struct Tree {
    files: BTreeMap<String, (u32, Source)>,
    dirs: BTreeSet<String>,
}

enum Source {
    Host(PathBuf),
    Bytes(Vec<u8>),
    Symlink(String),
}

impl Tree {
    fn add_dirs_of(&mut self, guest: &str) {
        let mut p = Path::new(guest).parent();
        while let Some(dir) = p {
            let s = dir.to_string_lossy().trim_start_matches('/').to_string();
            if s.is_empty() {
                break;
            }
            self.dirs.insert(s);
            p = dir.parent();
        }
    }
    fn add(&mut self, guest: &str, mode: u32, source: Source) {
        self.add_dirs_of(guest);
        self.files.insert(guest.trim_start_matches('/').to_string(), (mode, source));
    }
    fn add_dir(&mut self, guest: &str) {
        self.add_dirs_of(&format!("{guest}/x"));
    }
}

/// Files programs read at run time that an initramfs lacks: users and groups
/// (getpwuid, `id`), host names (`localhost` for a client of a local server),
/// and the name service order.
const ETC_FILES: &[(&str, &str)] = &[
    ("/etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"),
    ("/etc/group", "root:x:0:\nnogroup:x:65534:\n"),
    ("/etc/hosts", "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n"),
    ("/etc/nsswitch.conf", "passwd: files\ngroup: files\nhosts: files\n"),
];

/// Builds the image for `commands` at `path`; `extra` names more host
/// programs to carry (names on PATH or paths), for programs no argument names.
pub fn build(
    path: &Path,
    numatrace: &Path,
    commands: &[GuestCommand],
    extra: &[String],
    packages: &[String],
    stream: bool,
) -> Result<()> {
    let mut tree = Tree::default();
    if !Path::new(BUSYBOX).is_file() {
        bail!("{BUSYBOX} is missing (install busybox-static: cargo xtask setup)");
    }
    tree.add("/bin/busybox", 0o755, Source::Host(BUSYBOX.into()));
    tree.add("/bin/sh", 0o777, Source::Symlink("busybox".into()));
    tree.add(GUEST_NUMATRACE, 0o755, Source::Host(numatrace.into()));
    let mut seen = BTreeSet::new();
    if fs::read(numatrace).map(|b| is_dynamic_elf(&b)).unwrap_or(false) {
        for lib in ldd(numatrace)? {
            add_program(&mut tree, &lib, &mut seen)?;
        }
    }
    for d in [
        "/proc",
        "/sys",
        "/dev",
        "/tmp",
        "/run",
        "/root",
        "/etc",
        "/sbin",
        "/usr/sbin",
        "/var/tmp",
        "/var/run",
        "/var/lib",
    ] {
        tree.add_dir(d);
    }
    for (guest, text) in ETC_FILES {
        tree.add(guest, 0o644, Source::Bytes(text.as_bytes().to_vec()));
    }
    let cwd = std::env::current_dir().context("reading the current directory")?;
    tree.add_dir(&cwd.to_string_lossy());
    let applets = busybox_applets();
    for command in commands {
        for (i, arg) in command.argv.iter().enumerate() {
            for host in host_files_named(arg, i == 0, &cwd) {
                add_program(&mut tree, &host, &mut seen)?;
            }
            if i > 0 && looks_like_script(arg) {
                for word in script_words(arg) {
                    for host in script_word_files(&word, &applets) {
                        add_program(&mut tree, &host, &mut seen)?;
                    }
                }
            }
        }
    }
    for name in extra {
        let found = host_files_named(name, true, &cwd);
        if found.is_empty() {
            bail!("--with {name}: no such program on PATH (or file)");
        }
        for host in found {
            add_program(&mut tree, &host, &mut seen)?;
        }
    }
    for package in packages {
        add_package(&mut tree, package, &mut seen)?;
    }
    tree.add("/init", 0o755, Source::Bytes(init_script(commands, &cwd, stream).into_bytes()));
    write_newc(path, &tree)
}

/// Host files an argument names: a path to an existing file, or a bare word
/// that is an executable on PATH (`numatrace` is the guest's own build).
fn host_files_named(arg: &str, first: bool, cwd: &Path) -> Vec<PathBuf> {
    if arg.is_empty() || arg.starts_with('-') || arg.contains('=') && !first {
        return Vec::new();
    }
    if arg.contains('/') {
        let p = cwd.join(arg);
        return match fs::metadata(&p) {
            Ok(m) if m.is_file() && m.len() <= MAX_FILE => vec![p],
            _ => Vec::new(),
        };
    }
    if arg == "numatrace" {
        return Vec::new();
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(arg))
        .find(|p| fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
        .into_iter()
        .collect()
}

/// True for an argument that is a shell script rather than a single word:
/// it holds whitespace or shell punctuation.
fn looks_like_script(arg: &str) -> bool {
    arg.chars().any(|c| c.is_whitespace() || matches!(c, ';' | '|' | '&' | '$' | '`' | '(' | ')' | '<' | '>'))
}

/// The words of a shell script, split at whitespace, quotes and shell
/// punctuation (`a;b`, `$(pidof x)`, `"$p"`, `x>/dev/null` give their names).
fn script_words(script: &str) -> Vec<String> {
    script
        .split(|c: char| {
            c.is_whitespace()
                || matches!(c, ';' | '|' | '&' | '$' | '`' | '(' | ')' | '<' | '>' | '\'' | '"' | '{' | '}' | '!')
        })
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// The host files a word of a script names: an absolute path to a host file
/// outside the kernel's filesystems, or a bare name on PATH that is not a busybox applet.
fn script_word_files(word: &str, applets: &BTreeSet<String>) -> Vec<PathBuf> {
    if word.starts_with('-') || word.contains('=') || word.contains('*') {
        return Vec::new();
    }
    if word.contains('/') {
        let kernel_fs = ["/proc/", "/sys/", "/dev/"].iter().any(|p| word.starts_with(p));
        if !word.starts_with('/') || kernel_fs {
            return Vec::new();
        }
        return host_files_named(word, true, Path::new("/"));
    }
    if applets.contains(word) {
        return Vec::new();
    }
    host_files_named(word, true, Path::new("/"))
}

/// The applets of the host's busybox (the guest's /bin), as `busybox --list` names them.
fn busybox_applets() -> BTreeSet<String> {
    Command::new(BUSYBOX)
        .arg("--list")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Adds a host file at its own path, and what it needs to run: the
/// libraries and loader of an ELF, the interpreter of a script.
fn add_program(tree: &mut Tree, host: &Path, seen: &mut BTreeSet<PathBuf>) -> Result<()> {
    if !seen.insert(host.to_path_buf()) {
        return Ok(());
    }
    let meta = fs::metadata(host).with_context(|| format!("reading {}", host.display()))?;
    tree.add(&host.to_string_lossy(), meta.permissions().mode() & 0o7777, Source::Host(host.to_path_buf()));
    let mut head = [0u8; 256];
    let n = {
        use std::io::Read;
        let mut f = fs::File::open(host).with_context(|| format!("opening {}", host.display()))?;
        f.read(&mut head).unwrap_or(0)
    };
    let head = &head[..n];
    if head.starts_with(b"\x7fELF") {
        for lib in ldd(host)? {
            if seen.insert(lib.clone()) {
                let mode = fs::metadata(&lib).map(|m| m.permissions().mode() & 0o7777).unwrap_or(0o755);
                tree.add(&lib.to_string_lossy(), mode, Source::Host(lib.clone()));
            }
        }
    } else if let Some(rest) = head.strip_prefix(b"#!") {
        let line = String::from_utf8_lossy(rest.split(|&b| b == b'\n').next().unwrap_or_default()).into_owned();
        if let Some(interp) = line.split_whitespace().next()
            && !interp.is_empty()
            && Path::new(interp).is_file()
        {
            add_program(tree, Path::new(interp), seen)?;
            // `#!/usr/bin/env prog`: the program env starts must be there too.
            if interp.ends_with("/env")
                && let Some(prog) = line.split_whitespace().nth(1)
            {
                for p in host_files_named(prog, true, Path::new("/")) {
                    add_program(tree, &p, seen)?;
                }
            }
        }
    }
    Ok(())
}

/// Paths of an installed package that a guest never reads.
const PACKAGE_SKIP: &[&str] = &["/usr/share/doc/", "/usr/share/man/", "/usr/share/locale/", "/usr/share/lintian/"];

/// Adds an installed package's files (symlinks kept as links) and, for each
/// ELF among them, the libraries it needs.
fn add_package(tree: &mut Tree, package: &str, seen: &mut BTreeSet<PathBuf>) -> Result<()> {
    let out = Command::new("dpkg").args(["-L", package]).output().context("running dpkg -L")?;
    if !out.status.success() {
        bail!("--package {package}: not an installed package (dpkg -L failed; apt-get install {package} first)");
    }
    let mut files = 0;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let path = Path::new(line.trim());
        if line.is_empty() || PACKAGE_SKIP.iter().any(|skip| line.starts_with(skip)) {
            continue;
        }
        let Ok(meta) = fs::symlink_metadata(path) else { continue };
        if meta.file_type().is_symlink() {
            let to = fs::read_link(path).with_context(|| format!("reading the link {}", path.display()))?;
            tree.add(line, 0o777, Source::Symlink(to.to_string_lossy().into_owned()));
        } else if meta.is_dir() {
            tree.add_dir(line);
        } else if meta.is_file() {
            add_program(tree, path, seen)?;
            files += 1;
        }
    }
    if files == 0 {
        bail!("--package {package}: dpkg -L lists no file to carry");
    }
    Ok(())
}

/// True for an ELF file with a program interpreter (PT_INTERP), i.e. one that needs the dynamic loader.
fn is_dynamic_elf(bytes: &[u8]) -> bool {
    let u16_at = |o: usize| bytes.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]) as usize);
    let u64_at = |o: usize| bytes.get(o..o + 8).and_then(|b| b.try_into().ok()).map(|b| u64::from_le_bytes(b) as usize);
    if !bytes.starts_with(b"\x7fELF") || bytes.get(4) != Some(&2) {
        return false;
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38)) else { return false };
    (0..phnum).any(|i| bytes.get(phoff + i * phentsize..phoff + i * phentsize + 4) == Some(&3u32.to_le_bytes()[..]))
}

/// The shared libraries and the dynamic loader of an ELF file, as `ldd` lists them.
fn ldd(exe: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd").arg(exe).output().context("running ldd")?;
    // ldd exits non-zero for static executables ("not a dynamic executable").
    Ok(parse_ldd(&String::from_utf8_lossy(&out.stdout)))
}

fn parse_ldd(text: &str) -> Vec<PathBuf> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            let path = match line.split_once("=>") {
                Some((_, rest)) => rest.split_whitespace().next()?,
                None => line.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

/// Quotes a word for the guest's sh.
fn sh_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', "'\\''"))
}

/// The guest's /init.
fn init_script(commands: &[GuestCommand], cwd: &Path, stream: bool) -> String {
    let mut s = String::from(
        r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tracefs tracefs /sys/kernel/tracing
mount -t debugfs debugfs /sys/kernel/debug
mount -t bpf bpf /sys/fs/bpf 2>/dev/null
# cgroup v2, as systemd mounts it: `numatrace --cgroup`, cpuset cgroups.
mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null
# POSIX shared memory (shm_open, sem_open) lives on a tmpfs at /dev/shm.
mkdir -p /dev/shm && mount -t tmpfs -o mode=1777 tmpfs /dev/shm
# The loopback interface starts down: a local client and server (redis-cli and
# redis-server) would get "Network is unreachable".
ifconfig lo 127.0.0.1 up
# The initramfs root is writable already; a tmpfs over /tmp would hide a host
# working directory under /tmp that was copied in (a CI clone, say).
mkdir -p /tmp && chmod 1777 /tmp
ulimit -l unlimited 2>/dev/null
# Arm the tracepoints numatrace attaches to now, while nothing else runs, with
# the trace buffer off (nothing is written). Attaching flips a tracepoint's
# static branch on first use, and under QEMU's multi-threaded TCG a vCPU
# running that branch while another patches it has stayed stuck for over a
# minute (soft lockups at __alloc_pages and copy_process); armed already,
# attaching patches no kernel text. raw_syscalls/sys_enter too (numatrace's
# raw sys_enter program): its first probe sets every task's syscall-trace
# flag before the branch in syscall_trace_enter is patched, so that site is
# hot while it changes (lockups there, in sh and numatrace, in CI).
echo 0 > /sys/kernel/tracing/tracing_on
for e in task/task_newtask sched/sched_process_exit kmem/mm_page_alloc exceptions/page_fault_user sched/sched_move_numa sched/sched_swap_numa sched/sched_stick_numa migrate/mm_migrate_pages sched/sched_migrate_task cgroup/cgroup_attach_task raw_syscalls/sys_enter; do echo 1 > /sys/kernel/tracing/events/$e/enable 2>/dev/null; done
# ttyS1 carries the commands' stdout only, byte for byte.
exec 3>/dev/ttyS1
stty raw -echo </dev/ttyS1
"#,
    );
    s.push_str(&format!("printf '\\n{MARK_READY}\\n'\n"));
    let numa = "/sys/kernel/debug/sched/numa_balancing";
    for (i, c) in commands.iter().enumerate() {
        let (on, delay, period) = match c.balancing {
            Balancing::Off => (0, 1000, 1000),
            Balancing::On => (1, 1000, 1000),
            Balancing::Fast => (1, 100, 100),
        };
        s.push_str(&format!(
            "echo {on} > /proc/sys/kernel/numa_balancing\n\
             [ -d {numa} ] && {{ echo {delay} > {numa}/scan_delay_ms; echo {period} > {numa}/scan_period_min_ms; }}\n\
             printf '\\n{MARK_BEGIN} {i}\\n'\n\
             (cd {} && exec {}) </dev/null >&3\n\
             printf '\\n{MARK_EXIT} {i} %s\\n' $?\n",
            sh_quote(&cwd.to_string_lossy()),
            c.argv.iter().map(|a| sh_quote(a)).collect::<Vec<_>>().join(" ")
        ));
        if !stream {
            s.push_str(&format!("printf '{}{i}\\n' >&3\n", MARK_STDOUT_END.replace('\n', "\\n")));
        }
    }
    // Closing the last ttyS1 descriptor waits until its output has drained.
    s.push_str("exec 3>&-\nsync\npoweroff -f\n");
    s
}

/// Writes the tree as a newc cpio archive.
fn write_newc(path: &Path, tree: &Tree) -> Result<()> {
    let file = fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = BufWriter::new(file);
    let mut ino = 1u32;
    let mut entry = |out: &mut BufWriter<fs::File>, name: &str, mode: u32, data: &[u8]| -> Result<()> {
        let name_z = name.len() + 1;
        write!(
            out,
            "070701{ino:08x}{mode:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{name_z:08x}{:08x}",
            0,
            0,
            1,
            0,
            data.len(),
            0,
            0,
            0,
            0,
            0
        )?;
        out.write_all(name.as_bytes())?;
        out.write_all(&[0])?;
        out.write_all(&vec![0; (4 - (110 + name_z) % 4) % 4])?;
        out.write_all(data)?;
        out.write_all(&vec![0; (4 - data.len() % 4) % 4])?;
        ino += 1;
        Ok(())
    };
    for dir in &tree.dirs {
        entry(&mut out, dir, 0o040755, &[])?;
    }
    for (name, (mode, source)) in &tree.files {
        match source {
            Source::Host(host) => {
                let data = fs::read(host).with_context(|| format!("reading {}", host.display()))?;
                entry(&mut out, name, 0o100000 | mode, &data)?;
            }
            Source::Bytes(data) => entry(&mut out, name, 0o100000 | mode, data)?,
            Source::Symlink(target) => entry(&mut out, name, 0o120777, target.as_bytes())?,
        }
    }
    entry(&mut out, "TRAILER!!!", 0, &[])?;
    out.flush().with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_libraries_and_loader_from_ldd() {
        let text = "\tlinux-vdso.so.1 (0x00007f55613f7000)\n\tlibnuma.so.1 => /lib/x86_64-linux-gnu/libnuma.so.1 (0x1)\n\t/lib64/ld-linux-x86-64.so.2 (0x2)\n";
        assert_eq!(
            parse_ldd(text),
            vec![PathBuf::from("/lib/x86_64-linux-gnu/libnuma.so.1"), PathBuf::from("/lib64/ld-linux-x86-64.so.2")]
        );
        assert!(parse_ldd("\tnot a dynamic executable\n").is_empty());
    }

    #[test]
    fn carries_an_installed_package_and_refuses_an_unknown_one() {
        let mut tree = Tree::default();
        let mut seen = BTreeSet::new();
        let err = add_package(&mut tree, "no-such-package-numatrace", &mut seen).unwrap_err();
        assert!(format!("{err:#}").contains("not an installed package"), "{err:#}");
        // busybox-static is what every guest runs on, so it is installed wherever the lab works.
        if Path::new(BUSYBOX).is_file() {
            add_package(&mut tree, "busybox-static", &mut seen).unwrap();
            assert!(tree.files.contains_key("bin/busybox"));
            assert!(!tree.files.keys().any(|f| f.starts_with("usr/share/doc/")));
        }
    }

    #[test]
    fn quotes_words_for_sh() {
        assert_eq!(sh_quote("it's"), "'it'\\''s'");
    }

    #[test]
    fn splits_scripts_into_words() {
        assert!(looks_like_script("redis-cli ping"));
        assert!(looks_like_script("a;b"));
        assert!(!looks_like_script("--membind=0"));
        assert!(!looks_like_script("redis-server"));
        assert_eq!(
            script_words("p=$(pidof redis-server); taskset -a -p -c 1 \"$p\" && redis-cli ping>/dev/null"),
            ["p=", "pidof", "redis-server", "taskset", "-a", "-p", "-c", "1", "p", "redis-cli", "ping", "/dev/null"]
        );
    }

    #[test]
    fn carries_programs_a_script_names_but_not_applets_or_kernel_files() {
        // The host's own programs stand in for packages: `ls` is an applet, `ldd` is not.
        let applets: BTreeSet<String> = ["ls", "sh"].iter().map(|s| s.to_string()).collect();
        assert!(script_word_files("ls", &applets).is_empty());
        assert_eq!(script_word_files("ldd", &applets).len(), 1, "ldd is on PATH and not an applet");
        assert!(script_word_files("/proc/self/status", &applets).is_empty());
        assert!(script_word_files("/sys/kernel/mm/transparent_hugepage/enabled", &applets).is_empty());
        assert!(script_word_files("--with=x", &applets).is_empty());
        assert!(script_word_files("relative/path", &applets).is_empty());
        assert!(script_word_files("no-such-program-here", &applets).is_empty());
        // An absolute path to an applet's host version is carried (the way to get it).
        let ls = host_files_named("ls", true, Path::new("/"));
        assert_eq!(script_word_files(&ls[0].to_string_lossy(), &applets), ls);
    }

    #[test]
    fn finds_programs_named_on_path_but_not_options() {
        let cwd = Path::new("/");
        assert_eq!(host_files_named("sh", false, cwd).len(), 1);
        assert!(host_files_named("--membind=0", false, cwd).is_empty());
        assert!(host_files_named("numatrace", true, cwd).is_empty());
        assert!(host_files_named("no-such-program-here", true, cwd).is_empty());
    }
}
