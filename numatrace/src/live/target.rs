//! The traced process: an existing pid, or a command numatrace starts held
//! at a gate until the probes are attached, so it is traced from its first
//! instruction. Several processes (`--pid` repeated, `--tree`, a cgroup)
//! are traced as a first one and others (see `session`).
use std::{
    ffi::CString,
    fs,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};
use numatrace_core::machine::per_thread;

/// What to trace.
#[derive(Clone, Debug)]
pub enum TargetSpec {
    /// Running processes (`--pid`, repeatable), the first one first; with
    /// `tree`, every descendant of each too (`--tree`).
    Pids {
        pids: Vec<u32>,
        tree: bool,
    },
    Command(Vec<String>),
    /// Every process in a cgroup v2 and below it (`--cgroup`, `--unit`, `--container`).
    Cgroup(super::cgroup::CgroupTarget),
}

/// A thread of the target at attach time.
#[derive(Clone, Debug)]
pub struct ThreadInfo {
    pub tid: u32,
    pub comm: String,
    pub cpu: Option<u32>,
}

/// A process being traced.
pub struct Target {
    pub pid: u32,
    /// Readable when the process has exited.
    pub pidfd: OwnedFd,
    gate: Option<Gate>,
    pub command: Option<Vec<String>>,
}

/// The pipes holding a started command before `exec`.
struct Gate {
    release: OwnedFd,
    exec_error: OwnedFd,
}

pub fn pidfd_open(pid: u32) -> std::io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds has room for two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both are fresh descriptors we own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Finds a program the way a shell would.
pub fn resolve_program(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        let p = PathBuf::from(name);
        return p.is_file().then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file())
}

impl Target {
    /// A running process.
    pub fn attach(pid: u32) -> Result<Target> {
        if pid == 0 || !Path::new(&format!("/proc/{pid}")).exists() {
            bail!("no process with pid {pid}");
        }
        let pidfd = pidfd_open(pid).with_context(|| format!("cannot watch pid {pid}"))?;
        Ok(Target { pid, pidfd, gate: None, command: None })
    }

    /// Starts `argv` held before `exec` until [`Target::release`].
    pub fn spawn(argv: &[String]) -> Result<Target> {
        let Some(first) = argv.first() else { bail!("no command given after --") };
        let program = resolve_program(first).with_context(|| format!("command not found: {first}"))?;
        let c_program = CString::new(program.as_os_str().as_encoded_bytes()).context("command contains a NUL byte")?;
        let c_args: Vec<CString> = argv
            .iter()
            .map(|a| CString::new(a.as_bytes()))
            .collect::<Result<_, _>>()
            .context("argument contains a NUL byte")?;
        let mut c_argv: Vec<*const libc::c_char> = c_args.iter().map(|a| a.as_ptr()).collect();
        c_argv.push(std::ptr::null());
        let (gate_read, gate_write) = pipe()?;
        let (err_read, err_write) = pipe()?;
        // SAFETY: the child only calls async-signal-safe functions (read, write, execv, _exit)
        // on memory prepared before the fork.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            bail!("fork failed: {}", std::io::Error::last_os_error());
        }
        if pid == 0 {
            unsafe {
                // The parent's ends: holding the gate's write end here would keep the
                // read below from ever seeing EOF if numatrace died before releasing us.
                libc::close(gate_write.as_raw_fd());
                libc::close(err_read.as_raw_fd());
                // A numatrace killed before the release takes the held command with it.
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                let mut byte = 0u8;
                let n = libc::read(gate_read.as_raw_fd(), (&mut byte as *mut u8).cast(), 1);
                if n != 1 {
                    libc::_exit(127);
                }
                libc::execv(c_program.as_ptr(), c_argv.as_ptr());
                let errno = *libc::__errno_location();
                libc::write(err_write.as_raw_fd(), (&errno as *const i32).cast(), 4);
                libc::_exit(127);
            }
        }
        drop(gate_read);
        drop(err_write);
        let pidfd = pidfd_open(pid as u32).context("cannot watch the started command")?;
        Ok(Target {
            pid: pid as u32,
            pidfd,
            gate: Some(Gate { release: gate_write, exec_error: err_read }),
            command: Some(argv.to_vec()),
        })
    }

    /// Lets a started command run (`exec`); reports an exec failure.
    pub fn release(&mut self) -> Result<()> {
        let Some(gate) = self.gate.take() else { return Ok(()) };
        let byte = 1u8;
        // SAFETY: writing one byte from a valid buffer to our pipe.
        unsafe { libc::write(gate.release.as_raw_fd(), (&byte as *const u8).cast(), 1) };
        drop(gate.release);
        let mut errno = 0i32;
        // SAFETY: reading up to 4 bytes into errno; the pipe closes on a successful exec.
        let n = unsafe { libc::read(gate.exec_error.as_raw_fd(), (&mut errno as *mut i32).cast(), 4) };
        if n == 4 {
            let cmd = self.command.as_ref().and_then(|c| c.first()).cloned().unwrap_or_default();
            self.reap();
            bail!("cannot run {cmd}: {}", std::io::Error::from_raw_os_error(errno));
        }
        Ok(())
    }

    pub fn comm(&self) -> String {
        fs::read_to_string(format!("/proc/{}/comm", self.pid)).map(|s| s.trim().to_string()).unwrap_or_default()
    }

    /// Collects a started command's exit code (non-blocking); None if still running or not ours.
    pub fn reap(&self) -> Option<i32> {
        self.command.as_ref()?;
        let mut status = 0;
        // SAFETY: waitpid on our own child with a valid status pointer.
        let rc = unsafe { libc::waitpid(self.pid as i32, &mut status, libc::WNOHANG) };
        if rc != self.pid as i32 {
            return None;
        }
        if libc::WIFEXITED(status) {
            Some(libc::WEXITSTATUS(status))
        } else if libc::WIFSIGNALED(status) {
            Some(128 + libc::WTERMSIG(status))
        } else {
            None
        }
    }

    /// Asks a started command to stop (at the end of `--duration`).
    pub fn terminate(&self) {
        if self.command.is_some() {
            // SAFETY: sending a signal to our own child.
            unsafe { libc::kill(self.pid as i32, libc::SIGTERM) };
        }
    }
}

/// The ids of a process's threads now, in order.
pub fn thread_ids(pid: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    let mut tids: Vec<u32> =
        entries.flatten().filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok())).collect();
    tids.sort_unstable();
    tids
}

/// Name and CPU of these threads of `pid` (one stat file each, read in
/// parallel); a thread gone meanwhile keeps its tid with no name or CPU.
pub fn threads(pid: u32, tids: &[u32]) -> Vec<ThreadInfo> {
    per_thread::map(tids, |&tid| thread(pid, tid))
}

/// Name and CPU of one thread (none when it is gone).
pub fn thread(pid: u32, tid: u32) -> ThreadInfo {
    let (comm, cpu) = fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat"))
        .ok()
        .and_then(|text| parse_stat(&text))
        .map_or((String::new(), None), |(comm, cpu)| (comm, Some(cpu)));
    ThreadInfo { tid, comm, cpu }
}

/// A thread's name (field 2) and the CPU it last ran on (field 39) from its
/// /proc/<pid>/task/<tid>/stat: one read instead of comm and stat.
fn parse_stat(text: &str) -> Option<(String, u32)> {
    // The name may hold spaces and parentheses; the fields restart after the last ')'.
    let (open, close) = (text.find('(')?, text.rfind(')')?);
    let comm = text.get(open + 1..close)?.to_string();
    let cpu = text[close + 1..].split_whitespace().nth(36)?.parse().ok()?;
    Some((comm, cpu))
}

#[cfg(test)]
mod tests {
    use super::parse_stat;

    #[test]
    fn reads_name_and_cpu_from_a_stat_line_whose_name_has_spaces_and_parentheses() {
        let line = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 3 0 12345 \
                    1000000 200 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 3 0 0 0 0 0";
        assert_eq!(parse_stat(line), Some(("my (odd) name".to_string(), 3)));
        assert_eq!(parse_stat("4242 (cut"), None);
    }
}
