//! Fixes that work as printed: in a 2-node guest, numatrace captures a
//! workload with a known pathology, the fix command is taken from the text
//! report exactly as printed (as a user would copy it), run under numatrace
//! again, and `numatrace diff` must say "fixed" at the level the fix states
//! (below 5 % for a binding, below (n-1)/n + 5 % for interleave).
//!
//! Cases: the demo's init-thread (its bind fix and its interleave fix), and
//! a command already started under `numactl --cpunodebind=1 --membind=0`
//! (the fix must rewrite that numactl, not wrap it). They boot QEMU, so they are
//! `#[ignore]`d: `cargo xtask test` runs them, or `cargo test -p numatrace-tests
//! --test lab_fixes -- --include-ignored` (see tests/README.md).
use std::{sync::OnceLock, time::Duration};

use numatrace_tests::guest;
use xtask::lab::{Balancing, GuestCommand};

/// Prints, for each case: `CASE <name>`, `PRINTED <the command>`, then the
/// first line of `numatrace diff` at 5 % (`DIFF5 ...`) and at 55 % (`DIFF55 ...`).
const SCRIPT: &str = r#"
prove() {
    name=$1; pattern=$2; shift 2
    numatrace -o /tmp/$name-before.ntrace -- "$@" >/tmp/$name-before.txt 2>/tmp/$name-before.err || { cat /tmp/$name-before.err; exit 1; }
    cmd=$(grep -m1 "^          $pattern" /tmp/$name-before.txt | sed 's/^ *//')
    echo "CASE $name"
    echo "PRINTED $cmd"
    [ -n "$cmd" ] || { cat /tmp/$name-before.txt; exit 1; }
    numatrace -o /tmp/$name-after.ntrace -- $cmd >/dev/null 2>/tmp/$name-after.err || { cat /tmp/$name-after.err; exit 1; }
    echo "DIFF5 $(numatrace diff /tmp/$name-before.ntrace /tmp/$name-after.ntrace | head -1)"
    echo "DIFF55 $(numatrace diff --fixed-below 55 /tmp/$name-before.ntrace /tmp/$name-after.ntrace | head -1)"
    echo "SAME $(numatrace diff /tmp/$name-before.ntrace /tmp/$name-before.ntrace | head -1)"
}
prove init-bind 'numactl --cpunodebind' numatrace example init-thread --mib 32 --seconds 2
prove init-interleave 'numactl --interleave' numatrace example init-thread --mib 32 --seconds 2
prove nested-numactl 'numactl --cpunodebind' numactl --cpunodebind=1 --membind=0 numatrace example resident --mib 32 --seconds 2
"#;

#[derive(Debug)]
struct Case {
    printed: String,
    diff5: String,
    diff55: String,
    same: String,
}

fn run() -> &'static Result<Vec<(String, Case)>, String> {
    static CELL: OnceLock<Result<Vec<(String, Case)>, String>> = OnceLock::new();
    CELL.get_or_init(|| {
        let opts = guest::options(2, 512, Duration::from_secs(600));
        // Words after the script name the host programs the guest needs.
        let argv = ["sh", "-c", SCRIPT, "lab-fixes", "numactl"].iter().map(|s| s.to_string()).collect();
        let run = guest::run("lab fixes", &opts, &[GuestCommand { argv, balancing: Balancing::Off }])?;
        let r = run.results.first().ok_or("no result")?;
        let out = String::from_utf8_lossy(&r.stdout).into_owned();
        eprintln!("lab fixes: boot {:.1} s, total {:.1} s\n{out}", run.boot_s, run.total_s);
        if r.exit_code != 0 {
            return Err(format!("the script exited with {}:\n{out}", r.exit_code));
        }
        let mut cases = Vec::new();
        let mut lines = out.lines();
        while let Some(line) = lines.next() {
            let Some(name) = line.strip_prefix("CASE ") else { continue };
            let mut field = |prefix: &str| {
                lines
                    .next()
                    .and_then(|l| l.strip_prefix(prefix))
                    .map(str::to_string)
                    .ok_or(format!("{name}: no {prefix}line in\n{out}"))
            };
            let case = Case {
                printed: field("PRINTED ")?,
                diff5: field("DIFF5 ")?,
                diff55: field("DIFF55 ")?,
                same: field("SAME ")?,
            };
            cases.push((name.to_string(), case));
        }
        Ok(cases)
    })
}

fn case(name: &str) -> &'static Case {
    match run() {
        Ok(cases) => cases
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, c)| c)
            .unwrap_or_else(|| panic!("no case {name} in {cases:?}")),
        Err(e) => panic!("{e}"),
    }
}

/// The remote share after, from a diff line `... remote share A % -> B % (...`.
fn share_after(line: &str) -> f64 {
    let after = line.split(" -> ").nth(1).and_then(|s| s.split(" %").next()).and_then(|s| s.trim().parse().ok());
    after.unwrap_or_else(|| panic!("no share in {line:?}"))
}

fn one_launcher_each(cmd: &str) {
    let words: Vec<&str> = cmd.split_whitespace().collect();
    assert!(words.iter().filter(|w| w.ends_with("numactl")).count() <= 1, "{cmd}");
    assert!(words.iter().filter(|w| w.ends_with("taskset")).count() <= 1, "{cmd}");
}

#[test]
#[ignore = "boots QEMU"]
fn the_demos_bind_fix_run_as_printed_fixes_it() {
    let c = case("init-bind");
    one_launcher_each(&c.printed);
    assert!(c.printed.starts_with("numactl --cpunodebind=1 --membind=1 "), "{c:?}");
    assert!(c.diff5.starts_with("fixed: "), "{c:?}");
    assert!(share_after(&c.diff5) < 5.0, "{c:?}");
    assert!(c.same.starts_with("not fixed: "), "the capture before is not fixed: {c:?}");
}

#[test]
#[ignore = "boots QEMU"]
fn the_demos_interleave_fix_reaches_its_own_level() {
    let c = case("init-interleave");
    one_launcher_each(&c.printed);
    let after = share_after(&c.diff55);
    assert!(c.diff55.starts_with("fixed: "), "{c:?}");
    assert!((35.0..55.0).contains(&after), "about half the pages remote on 2 nodes: {c:?}");
    assert!(c.diff5.starts_with("not fixed: "), "interleave is no fix at the 5 % level: {c:?}");
}

#[test]
#[ignore = "boots QEMU"]
fn a_command_under_numactl_gets_its_numactl_rewritten() {
    let c = case("nested-numactl");
    one_launcher_each(&c.printed);
    assert!(c.printed.starts_with("numactl --cpunodebind=1 --membind=1 numatrace example resident"), "{c:?}");
    assert!(c.diff5.starts_with("fixed: "), "{c:?}");
    assert!(c.same.starts_with("not fixed: "), "{c:?}");
}
