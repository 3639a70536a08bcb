//! The launchers a command line goes through before its program
//! (`numactl`, `taskset`, `env`, `nice`, `sudo`, `sh -c 'exec …'`, …), so
//! that a fix which binds, interleaves or pins rewrites their options
//! instead of wrapping them: a printed command has at most one `numactl`
//! and one `taskset`, and nothing between them and the program undoes the
//! fix (an inner `numactl --membind=0` would set the old policy again).
//!
//! Options are parsed the way each tool's getopt does: `-m0`, `-m 0`,
//! `--membind=0`, `--membind 0` and unique prefixes of long options
//! (`--memb=0`) are the same option.

/// How a fix places the threads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CpuBinding {
    /// `numactl --cpunodebind=<nodes>`.
    Nodes(String),
    /// `taskset -c <cpus>`.
    Cpus(String),
}

/// How a fix places the memory (`numactl`'s memory policies).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemPolicy {
    Bind(String),
    Interleave(String),
    Preferred(String),
}

/// What a fix asks of the launchers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Binding {
    pub cpu: Option<CpuBinding>,
    pub mem: Option<MemPolicy>,
}

/// What a `numactl` option does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NumactlKind {
    /// `-N`/`--cpunodebind` (and the old `-c`/`--cpubind`), `-C`/`--physcpubind`.
    Cpu,
    /// `-m`, `-i`, `-p`, `-P`, `-w`, `-l` and `-b` (balancing goes with membind).
    Mem,
    /// Anything else (`-a`, shm options): kept as written.
    Other,
}

/// One option of a `numactl` launcher, with the words it was written as.
#[derive(Clone, Debug, PartialEq, Eq)]
struct NumactlOpt {
    kind: NumactlKind,
    words: Vec<String>,
}

/// `numactl`'s options: (long name, short letter, takes a value, kind).
const NUMACTL_OPTS: &[(&str, char, bool, NumactlKind)] = &[
    ("cpunodebind", 'N', true, NumactlKind::Cpu),
    ("cpubind", 'c', true, NumactlKind::Cpu),
    ("physcpubind", 'C', true, NumactlKind::Cpu),
    ("membind", 'm', true, NumactlKind::Mem),
    ("interleave", 'i', true, NumactlKind::Mem),
    ("weighted-interleave", 'w', true, NumactlKind::Mem),
    ("preferred", 'p', true, NumactlKind::Mem),
    ("preferred-many", 'P', true, NumactlKind::Mem),
    ("localalloc", 'l', false, NumactlKind::Mem),
    ("balancing", 'b', false, NumactlKind::Mem),
    ("all", 'a', false, NumactlKind::Other),
    ("huge", 'u', false, NumactlKind::Other),
    ("touch", 'T', false, NumactlKind::Other),
    ("strict", 't', false, NumactlKind::Other),
    ("length", 'L', true, NumactlKind::Other),
    ("offset", 'o', true, NumactlKind::Other),
    ("shmmode", 'M', true, NumactlKind::Other),
    ("shmid", 'I', true, NumactlKind::Other),
    ("shm", 'S', true, NumactlKind::Other),
    ("file", 'f', true, NumactlKind::Other),
    ("show", 's', false, NumactlKind::Other),
    ("hardware", 'H', false, NumactlKind::Other),
    ("version", 'V', false, NumactlKind::Other),
];

/// A launcher in front of the program.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Launcher {
    Numactl {
        name: String,
        opts: Vec<NumactlOpt>,
    },
    /// `taskset [-a] [-c] <mask|list>`: `flags` are the words before the mask.
    Taskset {
        name: String,
        all: bool,
        list: bool,
        mask: String,
    },
    /// A launcher that neither pins nor sets a memory policy (`env`, `nice`,
    /// `sudo`, `systemd-run`, …), kept word for word.
    Kept(Vec<String>),
    /// `sh -c '<script>' [args…]`: what follows it is the script's one command.
    Shell {
        words: Vec<String>,
        exec: bool,
        trailing: Vec<String>,
    },
}

impl Launcher {
    fn is_numactl(&self) -> bool {
        matches!(self, Launcher::Numactl { .. })
    }
}

/// A command line split into its launchers and the program with its arguments.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommandLine {
    launchers: Vec<Launcher>,
    /// The program and its arguments, untouched.
    pub program: Vec<String>,
    /// A `sh -c` script that is more than one simple command (pipes,
    /// expansions, several commands): kept as it is, so a `numactl` or
    /// `taskset` inside it cannot be rewritten.
    pub opaque_script: Option<String>,
}

fn basename(word: &str) -> &str {
    word.rsplit('/').next().unwrap_or(word)
}

/// Options found by [`scan`], and where its operands begin.
struct Scan {
    /// (index into `spec`, the words it was written as)
    opts: Vec<(usize, Vec<String>)>,
    next: usize,
}

/// getopt-style option scanning shared by the launchers: `spec` lists
/// (long name, short letter or '\0', takes a value). Returns the words the
/// options took, and the index of the first operand, or `None` when an
/// option is unknown or misses its value (then the word is not treated as
/// a launcher at all).
fn scan(argv: &[String], start: usize, spec: &[(&str, char, bool)], stop_at_assignment: bool) -> Option<Scan> {
    let mut i = start;
    let mut opts = Vec::new();
    while i < argv.len() {
        let w = &argv[i];
        if w == "--" {
            return Some(Scan { opts, next: i + 1 });
        }
        if stop_at_assignment && is_assignment(w) {
            break;
        }
        if let Some(long) = w.strip_prefix("--") {
            let (name, value) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (long, None),
            };
            let exact = spec.iter().position(|s| s.0 == name);
            let idx = match exact {
                Some(idx) => idx,
                None => {
                    let matches: Vec<usize> = spec
                        .iter()
                        .enumerate()
                        .filter(|(_, s)| !s.0.is_empty() && s.0.starts_with(name))
                        .map(|(k, _)| k)
                        .collect();
                    if matches.len() != 1 {
                        return None;
                    }
                    matches[0]
                }
            };
            let takes = spec[idx].2;
            match (takes, value) {
                (true, Some(_)) | (false, None) => {
                    opts.push((idx, vec![w.clone()]));
                    i += 1;
                }
                (true, None) => {
                    let v = argv.get(i + 1)?;
                    opts.push((idx, vec![w.clone(), v.clone()]));
                    i += 2;
                }
                (false, Some(_)) => return None,
            }
            continue;
        }
        if w.len() > 1 && w.starts_with('-') {
            // A cluster of short options: `-la`, `-m0`, `-c`.
            let chars: Vec<char> = w[1..].chars().collect();
            let mut k = 0;
            let mut consumed_next = false;
            let mut first = true;
            while k < chars.len() {
                let idx = spec.iter().position(|s| s.1 == chars[k] && s.1 != '\0')?;
                if spec[idx].2 {
                    let rest: String = chars[k + 1..].iter().collect();
                    let written = if first { w.clone() } else { format!("-{}", chars[k..].iter().collect::<String>()) };
                    if rest.is_empty() {
                        let v = argv.get(i + 1)?;
                        opts.push((idx, vec![written, v.clone()]));
                        consumed_next = true;
                    } else {
                        opts.push((idx, vec![written]));
                    }
                    break;
                }
                opts.push((idx, vec![format!("-{}", chars[k])]));
                first = false;
                k += 1;
            }
            i += if consumed_next { 2 } else { 1 };
            continue;
        }
        break;
    }
    Some(Scan { opts, next: i })
}

fn is_assignment(w: &str) -> bool {
    match w.split_once('=') {
        Some((name, _)) => {
            !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit())
        }
        None => false,
    }
}

/// The option tables of the launchers that are kept word for word.
fn kept_spec(name: &str) -> Option<&'static [(&'static str, char, bool)]> {
    Some(match name {
        "env" => &[
            ("ignore-environment", 'i', false),
            ("null", '0', false),
            ("unset", 'u', true),
            ("chdir", 'C', true),
            ("debug", 'v', false),
            ("block-signal", '\0', false),
            ("default-signal", '\0', false),
            ("ignore-signal", '\0', false),
            ("list-signal-handling", '\0', false),
        ],
        "nice" => &[("adjustment", 'n', true)],
        "ionice" => &[("class", 'c', true), ("classdata", 'n', true), ("ignore", 't', false)],
        "stdbuf" => &[("input", 'i', true), ("output", 'o', true), ("error", 'e', true)],
        "setpriv" => &[
            ("ruid", '\0', true),
            ("euid", '\0', true),
            ("rgid", '\0', true),
            ("egid", '\0', true),
            ("reuid", '\0', true),
            ("regid", '\0', true),
            ("clear-groups", '\0', false),
            ("keep-groups", '\0', false),
            ("init-groups", '\0', false),
            ("groups", '\0', true),
            ("inh-caps", '\0', true),
            ("ambient-caps", '\0', true),
            ("bounding-set", '\0', true),
            ("securebits", '\0', true),
            ("pdeathsig", '\0', true),
            ("selinux-label", '\0', true),
            ("apparmor-profile", '\0', true),
            ("landlock-access", '\0', true),
            ("landlock-rule", '\0', true),
            ("no-new-privs", '\0', false),
            ("reset-env", '\0', false),
        ],
        "systemd-run" => &[
            ("unit", 'u', true),
            ("property", 'p', true),
            ("description", '\0', true),
            ("slice", '\0', true),
            ("slice-inherit", '\0', false),
            ("scope", '\0', false),
            ("user", '\0', false),
            ("system", '\0', false),
            ("pty", 't', false),
            ("pipe", 'P', false),
            ("quiet", 'q', false),
            ("collect", 'G', false),
            ("wait", '\0', false),
            ("same-dir", 'd', false),
            ("remain-after-exit", 'r', false),
            ("service-type", '\0', true),
            ("uid", '\0', true),
            ("gid", '\0', true),
            ("nice", '\0', true),
            ("working-directory", '\0', true),
            ("setenv", 'E', true),
            ("host", 'H', true),
            ("machine", 'M', true),
            ("no-block", '\0', false),
            ("no-ask-password", '\0', false),
            ("send-sighup", '\0', false),
            ("expand-environment", '\0', true),
        ],
        "sudo" => &[
            ("user", 'u', true),
            ("group", 'g', true),
            ("close-from", 'C', true),
            ("chdir", 'D', true),
            ("host", 'h', true),
            ("prompt", 'p', true),
            ("role", 'r', true),
            ("type", 't', true),
            ("command-timeout", 'T', true),
            ("other-user", 'U', true),
            ("askpass", 'A', false),
            ("background", 'b', false),
            ("preserve-env", 'E', false),
            ("set-home", 'H', false),
            ("login", 'i', false),
            ("non-interactive", 'n', false),
            ("preserve-groups", 'P', false),
            ("stdin", 'S', false),
            ("shell", 's', false),
        ],
        "runuser" => &[
            ("user", 'u', true),
            ("group", 'g', true),
            ("supp-group", 'G', true),
            ("login", 'l', false),
            ("preserve-environment", 'm', false),
            ("preserve-environment", 'p', false),
            ("shell", 's', true),
            ("whitelist-environment", 'w', true),
            ("pty", 'P', false),
        ],
        "chrt" => &[
            ("all-tasks", 'a', false),
            ("batch", 'b', false),
            ("deadline", 'd', false),
            ("fifo", 'f', false),
            ("idle", 'i', false),
            ("other", 'o', false),
            ("rr", 'r', false),
            ("reset-on-fork", 'R', false),
            ("sched-runtime", 'T', true),
            ("sched-period", 'P', true),
            ("sched-deadline", 'D', true),
            ("verbose", 'v', false),
        ],
        _ => return None,
    })
}

const SHELLS: &[&str] = &["sh", "bash", "dash", "zsh", "ksh", "ash"];

/// One launcher at `argv[i..]`, and where the rest begins; `None` when
/// `argv[i]` is not a launcher (it is the program).
fn parse_one(argv: &[String], i: usize) -> Option<(Launcher, usize)> {
    let word = argv.get(i)?;
    let name = basename(word);
    match name {
        "numactl" => {
            let spec: Vec<(&str, char, bool)> = NUMACTL_OPTS.iter().map(|o| (o.0, o.1, o.2)).collect();
            let s = scan(argv, i + 1, &spec, false)?;
            let opts = s.opts.into_iter().map(|(idx, words)| NumactlOpt { kind: NUMACTL_OPTS[idx].3, words }).collect();
            (s.next < argv.len()).then(|| (Launcher::Numactl { name: word.clone(), opts }, s.next))
        }
        "taskset" => {
            let spec = [("all-tasks", 'a', false), ("cpu-list", 'c', false), ("pid", 'p', false)];
            let s = scan(argv, i + 1, &spec, false)?;
            if s.opts.iter().any(|(idx, _)| *idx == 2) {
                return None;
            }
            let mask = argv.get(s.next)?.clone();
            let all = s.opts.iter().any(|(idx, _)| *idx == 0);
            let list = s.opts.iter().any(|(idx, _)| *idx == 1);
            (s.next + 1 < argv.len()).then(|| (Launcher::Taskset { name: word.clone(), all, list, mask }, s.next + 1))
        }
        "nice" => {
            // `nice -10 cmd` (the old form) besides `-n 10` and `--adjustment=10`.
            if let Some(next) = argv.get(i + 1)
                && next.len() > 1
                && next.starts_with('-')
                && next[1..].chars().all(|c| c.is_ascii_digit())
            {
                return (i + 2 < argv.len()).then(|| (Launcher::Kept(argv[i..i + 2].to_vec()), i + 2));
            }
            kept(argv, i, name)
        }
        "chrt" => {
            let spec = kept_spec("chrt")?;
            let s = scan(argv, i + 1, spec, false)?;
            let mut next = s.next;
            // The priority, when given.
            if argv.get(next).is_some_and(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit())) {
                next += 1;
            }
            (next < argv.len()).then(|| (Launcher::Kept(argv[i..next].to_vec()), next))
        }
        "runuser" if argv[i + 1..].iter().any(|w| w == "-c" || w.starts_with("--command")) => None,
        "env" => {
            let spec = kept_spec("env")?;
            let s = scan(argv, i + 1, spec, true)?;
            let mut next = s.next;
            if argv.get(next).is_some_and(|w| w == "-") {
                next += 1;
            }
            while argv.get(next).is_some_and(|w| is_assignment(w)) {
                next += 1;
            }
            (next < argv.len()).then(|| (Launcher::Kept(argv[i..next].to_vec()), next))
        }
        "sudo" => {
            let spec = kept_spec("sudo")?;
            let s = scan(argv, i + 1, spec, true)?;
            let mut next = s.next;
            while argv.get(next).is_some_and(|w| is_assignment(w)) {
                next += 1;
            }
            (next < argv.len()).then(|| (Launcher::Kept(argv[i..next].to_vec()), next))
        }
        "ionice" | "stdbuf" | "setpriv" | "systemd-run" | "runuser" => kept(argv, i, name),
        _ if SHELLS.contains(&name) => {
            if argv.get(i + 1).map(String::as_str) != Some("-c") {
                return None;
            }
            let script = argv.get(i + 2)?;
            let mut words = split_simple_script(script)?;
            let exec = words.first().is_some_and(|w| w == "exec");
            if exec {
                words.remove(0);
            }
            if words.is_empty() {
                return None;
            }
            Some((Launcher::Shell { words: argv[i..i + 2].to_vec(), exec, trailing: argv[i + 3..].to_vec() }, i + 3))
        }
        _ => None,
    }
}

/// A launcher kept word for word, by its option table.
fn kept(argv: &[String], i: usize, name: &str) -> Option<(Launcher, usize)> {
    let spec = kept_spec(name)?;
    let s = scan(argv, i + 1, spec, false)?;
    (s.next < argv.len()).then(|| (Launcher::Kept(argv[i..s.next].to_vec()), s.next))
}

/// The words of a `sh -c` script that is one simple command (`exec` allowed):
/// plain words, single and double quotes and backslashes, nothing the shell
/// would expand or connect. `None` for anything else.
pub fn split_simple_script(script: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = script.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '\'' => break,
                        ch => cur.push(ch),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '"' => break,
                        '$' | '`' => return None,
                        '\\' => {
                            let ch = chars.next()?;
                            if !matches!(ch, '"' | '\\' | '$' | '`') {
                                cur.push('\\');
                            }
                            cur.push(ch);
                        }
                        ch => cur.push(ch),
                    }
                }
            }
            '\\' => {
                in_word = true;
                cur.push(chars.next()?);
            }
            ';' | '&' | '|' | '<' | '>' | '(' | ')' | '$' | '`' | '\n' | '*' | '?' | '[' | '~' | '#' | '{' | '}' => {
                return None;
            }
            ch => {
                in_word = true;
                cur.push(ch);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Some(words)
}

impl CommandLine {
    /// Splits a command line into its launchers and the program.
    pub fn parse(argv: &[String]) -> CommandLine {
        let mut launchers = Vec::new();
        let mut words: Vec<String> = argv.to_vec();
        let mut i = 0;
        let mut opaque_script = None;
        loop {
            let Some((launcher, next)) = parse_one(&words, i) else {
                if let Some(name) = words.get(i).map(|w| basename(w))
                    && SHELLS.contains(&name)
                    && words.get(i + 1).is_some_and(|w| w == "-c")
                {
                    opaque_script = words.get(i + 2).cloned();
                }
                break;
            };
            if let Launcher::Shell { .. } = launcher {
                // Continue inside the script: its words replace the rest.
                let script = words.get(i + 2).cloned().unwrap_or_default();
                let mut inner = split_simple_script(&script).unwrap_or_default();
                if inner.first().is_some_and(|w| w == "exec") {
                    inner.remove(0);
                }
                launchers.push(launcher);
                words = inner;
                i = 0;
                continue;
            }
            launchers.push(launcher);
            i = next;
        }
        CommandLine { launchers, program: words[i.min(words.len())..].to_vec(), opaque_script }
    }

    /// The program's own name (basename of its first word).
    pub fn program_name(&self) -> Option<&str> {
        self.program.first().map(|w| basename(w))
    }

    /// The command line with the fix's binding applied: the launchers'
    /// pinning and memory options rewritten (one `numactl`, at most one
    /// `taskset`), everything else as it was.
    pub fn with_binding(&self, b: &Binding) -> CommandLine {
        let sets_cpu = b.cpu.is_some();
        let sets_mem = b.mem.is_some();
        let mut kept_numactl_opts: Vec<NumactlOpt> = Vec::new();
        let mut numactl_name: Option<String> = None;
        let mut numactl_at: Option<usize> = None;
        let mut taskset_at: Option<usize> = None;
        let mut taskset_launcher: Option<Launcher> = None;
        let mut out: Vec<Launcher> = Vec::new();
        for l in &self.launchers {
            match l {
                Launcher::Numactl { name, opts } => {
                    numactl_name.get_or_insert_with(|| name.clone());
                    for o in opts {
                        let drop = (sets_cpu && o.kind == NumactlKind::Cpu) || (sets_mem && o.kind == NumactlKind::Mem);
                        // Later options of the same kind win in numactl, so keep the last ones.
                        if !drop {
                            kept_numactl_opts.retain(|k| !(k.kind != NumactlKind::Other && same_option(k, o)));
                            kept_numactl_opts.push(o.clone());
                        }
                    }
                    numactl_at = Some(out.len());
                }
                Launcher::Taskset { .. } => {
                    // A fix that places threads replaces every taskset; one that
                    // sets memory only keeps the innermost (it is the one that counts).
                    if !sets_cpu {
                        taskset_launcher = Some(l.clone());
                    }
                    taskset_at = Some(out.len());
                }
                _ => out.push(l.clone()),
            }
        }
        // Does a launcher that starts the program elsewhere (systemd-run)
        // or a shell boundary sit after a position? Then the position is not
        // the program's: put the binding just before the program instead.
        let innermost = out.len();
        let inner_ok = |at: usize| {
            !out[at..].iter().any(|l| {
                matches!(l, Launcher::Shell { .. })
                    || matches!(l, Launcher::Kept(w) if w.first().is_some_and(|w| basename(w) == "systemd-run"))
            })
        };
        let mut numactl_opts = kept_numactl_opts;
        match &b.cpu {
            Some(CpuBinding::Nodes(n)) => {
                numactl_opts.push(NumactlOpt { kind: NumactlKind::Cpu, words: vec![format!("--cpunodebind={n}")] })
            }
            Some(CpuBinding::Cpus(c)) => {
                let (name, all) = match self.launchers.iter().rev().find(|l| matches!(l, Launcher::Taskset { .. })) {
                    Some(Launcher::Taskset { name, all, .. }) => (name.clone(), *all),
                    _ => ("taskset".to_string(), false),
                };
                taskset_launcher = Some(Launcher::Taskset { name, all, list: true, mask: c.clone() });
            }
            None => {}
        }
        match &b.mem {
            Some(MemPolicy::Bind(n)) => {
                numactl_opts.push(NumactlOpt { kind: NumactlKind::Mem, words: vec![format!("--membind={n}")] })
            }
            Some(MemPolicy::Interleave(n)) => {
                numactl_opts.push(NumactlOpt { kind: NumactlKind::Mem, words: vec![format!("--interleave={n}")] })
            }
            Some(MemPolicy::Preferred(n)) => {
                numactl_opts.push(NumactlOpt { kind: NumactlKind::Mem, words: vec![format!("--preferred={n}")] })
            }
            None => {}
        }
        let mut inserts: Vec<(usize, Launcher)> = Vec::new();
        if let Some(t) = taskset_launcher {
            let at = taskset_at.filter(|&a| inner_ok(a)).unwrap_or(innermost);
            inserts.push((at, t));
        }
        if !numactl_opts.is_empty() {
            let at = numactl_at.filter(|&a| inner_ok(a)).unwrap_or(innermost);
            inserts.push((
                at,
                Launcher::Numactl { name: numactl_name.unwrap_or_else(|| "numactl".into()), opts: numactl_opts },
            ));
        }
        // Insert from the back so that earlier positions stay valid; at one
        // position the taskset goes first (it was listed first).
        inserts.sort_by_key(|(at, l)| (*at, l.is_numactl()));
        for (at, l) in inserts.into_iter().rev() {
            out.insert(at, l);
        }
        CommandLine { launchers: out, program: self.program.clone(), opaque_script: self.opaque_script.clone() }
    }

    /// The command line as words (a `sh -c` script as one word).
    pub fn argv(&self) -> Vec<String> {
        render_from(&self.launchers, &self.program)
    }

    /// The command line as a shell would take it.
    pub fn shell(&self) -> String {
        shell_words(&self.argv())
    }

    /// Words of the command at every level (inside a `sh -c` script too).
    pub fn all_words(&self) -> Vec<String> {
        let mut words = Vec::new();
        for l in &self.launchers {
            match l {
                Launcher::Numactl { name, opts } => {
                    words.push(name.clone());
                    words.extend(opts.iter().flat_map(|o| o.words.clone()));
                }
                Launcher::Taskset { name, .. } => words.push(name.clone()),
                Launcher::Kept(w) => words.extend(w.iter().cloned()),
                Launcher::Shell { words: w, .. } => words.extend(w.iter().cloned()),
            }
        }
        words.extend(self.program.iter().cloned());
        words
    }
}

/// Two options set the same thing (cpu binding, or the memory policy, or the same other option).
fn same_option(a: &NumactlOpt, b: &NumactlOpt) -> bool {
    a.kind == b.kind && (a.kind != NumactlKind::Mem || (!is_balancing(a) && !is_balancing(b)))
}

fn is_balancing(o: &NumactlOpt) -> bool {
    o.words.first().is_some_and(|w| w == "-b" || w.starts_with("--bal"))
}

fn render_from(launchers: &[Launcher], program: &[String]) -> Vec<String> {
    let mut words = Vec::new();
    for (k, l) in launchers.iter().enumerate() {
        match l {
            Launcher::Numactl { name, opts } => {
                words.push(name.clone());
                words.extend(opts.iter().flat_map(|o| o.words.clone()));
                if program.first().is_some_and(|p| p.starts_with('-')) && k + 1 == launchers.len() {
                    words.push("--".into());
                }
            }
            Launcher::Taskset { name, all, list, mask } => {
                words.push(name.clone());
                if *all {
                    words.push("-a".into());
                }
                if *list {
                    words.push("-c".into());
                }
                words.push(mask.clone());
            }
            Launcher::Kept(w) => words.extend(w.iter().cloned()),
            Launcher::Shell { words: w, exec, trailing } => {
                words.extend(w.iter().cloned());
                let inner = shell_words(&render_from(&launchers[k + 1..], program));
                words.push(if *exec { format!("exec {inner}") } else { inner });
                words.extend(trailing.iter().cloned());
                return words;
            }
        }
    }
    words.extend(program.iter().cloned());
    words
}

/// Words quoted for a POSIX shell where they need it.
pub fn shell_words(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c)) {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    fn bind(node: u32) -> Binding {
        Binding { cpu: Some(CpuBinding::Nodes(node.to_string())), mem: Some(MemPolicy::Bind(node.to_string())) }
    }

    fn interleave() -> Binding {
        Binding { cpu: None, mem: Some(MemPolicy::Interleave("all".into())) }
    }

    fn rewrite(cmd: &str, b: &Binding) -> String {
        CommandLine::parse(&words(cmd)).with_binding(b).shell()
    }

    #[test]
    fn the_issues_command_lines_are_rewritten_not_wrapped() {
        assert_eq!(
            rewrite("numactl --cpunodebind=1 --membind=0 sysbench memory run", &bind(1)),
            "numactl --cpunodebind=1 --membind=1 sysbench memory run"
        );
        assert_eq!(
            rewrite("/usr/bin/numactl --interleave=all /usr/bin/memhog 64m", &bind(0)),
            "/usr/bin/numactl --cpunodebind=0 --membind=0 /usr/bin/memhog 64m"
        );
        assert_eq!(
            rewrite("numactl --cpunodebind=0 memhog 64m", &interleave()),
            "numactl --cpunodebind=0 --interleave=all memhog 64m"
        );
        assert_eq!(
            rewrite("taskset -c 0 redis-server /etc/redis.conf", &bind(1)),
            "numactl --cpunodebind=1 --membind=1 redis-server /etc/redis.conf"
        );
        assert_eq!(
            rewrite("redis-server --port 6380", &bind(1)),
            "numactl --cpunodebind=1 --membind=1 redis-server --port 6380"
        );
    }

    #[test]
    fn every_spelling_of_numactl_options_is_one_option() {
        for cmd in [
            "numactl -N 0 -m 0 prog a",
            "numactl -N0 -m0 prog a",
            "numactl --cpunodebind 0 --membind 0 prog a",
            "numactl --cpunode=0 --memb=0 prog a",
            "numactl --cpubind=0 --localalloc prog a",
            "numactl -c 0 -l prog a",
            "numactl -C 0-3 -p 0 prog a",
            "numactl --physcpubind=0-3 --preferred=0 prog a",
            "numactl -i all prog a",
            "numactl -la prog a",
            "numactl -N 0 -m 0 -- prog a",
            "numactl --weighted-interleave=0,1 -N 0 prog a",
            "numactl -P 0,1 prog a",
            "numactl -m 0 -b prog a",
        ] {
            let out = rewrite(cmd, &bind(1));
            assert!(out.contains("--cpunodebind=1 --membind=1 prog a"), "{cmd} -> {out}");
            let kept_all = cmd.contains("-la");
            assert_eq!(out.contains("-a"), kept_all, "{cmd} -> {out}: --all is kept, nothing else");
            for gone in [
                " -m",
                " -N",
                "-p ",
                "-C ",
                "-i ",
                " -l",
                "--preferred",
                "--localalloc",
                "--phys",
                "-P ",
                "--weighted",
                " -b",
                " -c ",
            ] {
                assert!(!out.contains(gone), "{cmd} -> {out}: {gone} survived");
            }
        }
    }

    #[test]
    fn kept_launchers_stay_where_they_were() {
        assert_eq!(
            rewrite("env -u LANG FOO=1 nice -n 5 ionice -c2 -n7 chrt -b 0 stdbuf -oL numactl -m 0 prog x y", &bind(1)),
            "env -u LANG FOO=1 nice -n 5 ionice -c2 -n7 chrt -b 0 stdbuf -oL numactl --cpunodebind=1 --membind=1 prog x y"
        );
        assert_eq!(
            rewrite("sudo -u redis HOME=/x taskset -a -c 0-3 redis-server", &bind(1)),
            "sudo -u redis HOME=/x numactl --cpunodebind=1 --membind=1 redis-server"
        );
        assert_eq!(rewrite("nice -10 numactl -N 0 prog", &interleave()), "nice -10 numactl -N 0 --interleave=all prog");
        assert_eq!(
            rewrite("setpriv --reuid=1000 --regid 1000 --clear-groups prog", &bind(0)),
            "setpriv --reuid=1000 --regid 1000 --clear-groups numactl --cpunodebind=0 --membind=0 prog"
        );
        assert_eq!(
            rewrite("runuser -u pg -- postgres -D /d", &bind(0)),
            "runuser -u pg -- numactl --cpunodebind=0 --membind=0 postgres -D /d"
        );
    }

    #[test]
    fn systemd_run_gets_the_binding_inside_the_unit() {
        // A numactl in front of systemd-run would bind systemd-run, not the service it starts.
        assert_eq!(
            rewrite("numactl -m 0 systemd-run --scope -p CPUQuota=50% --unit=x prog", &bind(1)),
            "systemd-run --scope -p CPUQuota=50% --unit=x numactl --cpunodebind=1 --membind=1 prog"
        );
    }

    #[test]
    fn a_shell_that_execs_one_command_is_rewritten_inside() {
        let argv = vec![
            "sh".to_string(),
            "-c".into(),
            "exec numactl --membind=0 /usr/bin/redis-server '/etc/my redis.conf'".into(),
        ];
        let out = CommandLine::parse(&argv).with_binding(&bind(1));
        assert_eq!(
            out.argv(),
            vec!["sh", "-c", "exec numactl --cpunodebind=1 --membind=1 /usr/bin/redis-server '/etc/my redis.conf'"]
        );
        assert_eq!(out.program, vec!["/usr/bin/redis-server", "/etc/my redis.conf"]);
        let plain = vec!["bash".to_string(), "-c".into(), "taskset -c 1 prog --x".into()];
        assert_eq!(
            CommandLine::parse(&plain).with_binding(&bind(0)).argv(),
            vec!["bash", "-c", "numactl --cpunodebind=0 --membind=0 prog --x"]
        );
        // A script the shell must interpret is kept; the binding wraps the shell.
        let complex = vec!["sh".to_string(), "-c".into(), "prog $ARGS | tee log".into()];
        let c = CommandLine::parse(&complex);
        assert_eq!(c.opaque_script.as_deref(), Some("prog $ARGS | tee log"));
        assert_eq!(
            c.with_binding(&bind(0)).shell(),
            "numactl --cpunodebind=0 --membind=0 sh -c 'prog $ARGS | tee log'"
        );
    }

    #[test]
    fn a_cpu_list_fix_rewrites_the_taskset() {
        let b = Binding { cpu: Some(CpuBinding::Cpus("4-7".into())), mem: None };
        assert_eq!(rewrite("taskset -a -c 0 prog", &b), "taskset -a -c 4-7 prog");
        assert_eq!(rewrite("taskset 0x1 numactl -N 0 -m 1 prog", &b), "taskset -c 4-7 numactl -m 1 prog");
        assert_eq!(rewrite("numactl -N 0 prog", &b), "taskset -c 4-7 prog");
        assert_eq!(rewrite("prog", &b), "taskset -c 4-7 prog");
    }

    #[test]
    fn words_that_are_not_launchers_are_the_program() {
        // taskset -p is not a launcher; numactl --hardware runs nothing.
        for cmd in ["taskset -p 1234", "numactl --hardware", "numactl --bogus prog", "nice", "env"] {
            let c = CommandLine::parse(&words(cmd));
            assert!(c.launchers.is_empty(), "{cmd}: {c:?}");
            assert_eq!(c.program, words(cmd));
        }
        // A program whose name starts with '-' gets the end of numactl's options.
        assert_eq!(
            CommandLine::parse(&words("-weird")).with_binding(&bind(0)).shell(),
            "numactl --cpunodebind=0 --membind=0 -- -weird"
        );
    }

    /// Property: whatever launchers a command line has, the rewritten one has
    /// at most one numactl and one taskset (at every level), keeps the other
    /// launchers in order, and the program's words exactly.
    #[test]
    fn rewritten_commands_never_nest_numactl_or_taskset() {
        let prefixes: &[&[&str]] = &[
            &[],
            &["numactl", "--cpunodebind=1", "--membind=0"],
            &["numactl", "-i", "all"],
            &["/usr/bin/numactl", "-N0", "-l"],
            &["taskset", "-c", "0"],
            &["taskset", "-a", "0x3"],
            &["env", "-i", "A=1"],
            &["nice", "-n", "3"],
            &["ionice", "-c", "3"],
            &["chrt", "--fifo", "10"],
            &["stdbuf", "-o", "0"],
            &["sudo", "-E", "-u", "db"],
            &["systemd-run", "--user", "--scope"],
        ];
        let programs: &[&[&str]] =
            &[&["prog"], &["/opt/db/bin/db", "--numa", "-m", "0", "taskset"], &["memhog", "-r2", "1g"]];
        let bindings = [
            bind(1),
            interleave(),
            Binding { cpu: Some(CpuBinding::Cpus("2,3".into())), mem: None },
            Binding { cpu: Some(CpuBinding::Nodes("0".into())), mem: Some(MemPolicy::Preferred("0".into())) },
        ];
        let mut checked = 0;
        for a in prefixes {
            for b in prefixes {
                for c in prefixes {
                    for p in programs {
                        let argv: Vec<String> =
                            a.iter().chain(b.iter()).chain(c.iter()).chain(p.iter()).map(|s| s.to_string()).collect();
                        let parsed = CommandLine::parse(&argv);
                        assert_eq!(parsed.program, p.iter().map(|s| s.to_string()).collect::<Vec<_>>(), "{argv:?}");
                        for binding in &bindings {
                            let out = parsed.with_binding(binding);
                            let launcher_words: Vec<&str> = out
                                .launchers
                                .iter()
                                .map(|l| match l {
                                    Launcher::Numactl { .. } => "numactl",
                                    Launcher::Taskset { .. } => "taskset",
                                    Launcher::Kept(w) | Launcher::Shell { words: w, .. } => basename(&w[0]),
                                })
                                .collect();
                            assert!(
                                launcher_words.iter().filter(|w| **w == "numactl").count() <= 1,
                                "{argv:?} -> {}",
                                out.shell()
                            );
                            assert!(
                                launcher_words.iter().filter(|w| **w == "taskset").count() <= 1,
                                "{argv:?} -> {}",
                                out.shell()
                            );
                            let others: Vec<&str> =
                                launcher_words.iter().copied().filter(|w| *w != "numactl" && *w != "taskset").collect();
                            let before: Vec<&str> = parsed
                                .launchers
                                .iter()
                                .filter_map(|l| match l {
                                    Launcher::Kept(w) => Some(basename(&w[0])),
                                    _ => None,
                                })
                                .collect();
                            assert_eq!(others, before, "{argv:?} -> {}", out.shell());
                            assert_eq!(out.program, parsed.program);
                            // The rendered words parse back to the same program and one binding.
                            let again = CommandLine::parse(&out.argv());
                            assert_eq!(again.program, parsed.program, "{}", out.shell());
                            if binding.cpu.is_some() && matches!(binding.cpu, Some(CpuBinding::Nodes(_))) {
                                assert!(
                                    !again.launchers.iter().any(|l| matches!(l, Launcher::Taskset { .. })),
                                    "{}",
                                    out.shell()
                                );
                            }
                            checked += 1;
                        }
                    }
                }
            }
        }
        assert!(checked > 8000, "{checked}");
    }
}
