//! What `-V` and `--version` say: the release, the commit and the kernel
//! programs built in (numatrace/build.rs finds them out), so that a binary
//! copied to a server can be traced back to its source.

/// `-V`: one line.
pub const SHORT: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("NUMATRACE_COMMIT"),
    ", kernel programs ",
    env!("NUMATRACE_BPF_SHA256"),
    ")"
);

/// `--version`: one fact a line.
pub const LONG: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    "\ncommit:          ",
    env!("NUMATRACE_COMMIT"),
    "\nkernel programs: sha256 ",
    env!("NUMATRACE_BPF_SHA256"),
    ", linked by ",
    env!("NUMATRACE_BPF_LINKER"),
    "\ntarget:          ",
    env!("NUMATRACE_TARGET"),
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_is_one_line_and_long_says_commit_and_kernel_programs() {
        assert!(!SHORT.contains('\n'), "{SHORT}");
        assert!(SHORT.starts_with(env!("CARGO_PKG_VERSION")), "{SHORT}");
        let lines: Vec<&str> = LONG.lines().collect();
        assert_eq!(lines.len(), 4, "{LONG}");
        assert!(lines[1].starts_with("commit:") && lines[2].starts_with("kernel programs: sha256 "), "{LONG}");
        // 12 hex digits of the embedded object's digest.
        let digest = env!("NUMATRACE_BPF_SHA256");
        assert!(digest.len() == 12 && digest.chars().all(|c| c.is_ascii_hexdigit()), "{digest}");
    }
}
