use super::*;

fn source(name: &str, role: SourceRole, attached: bool, fallback: bool) -> SourceCheck {
    let status = SourceStatus {
        name: name.to_string(),
        attached,
        hooks: if attached { vec![format!("raw_tracepoint:{name}")] } else { Vec::new() },
        kind: attached.then_some(HookKind::RawTracepoint),
        reason: (!attached).then(|| "this kernel has no kprobe support".to_string()),
        fallback_reason: fallback.then(|| "no BTF".to_string()),
    };
    SourceCheck::tried(&status, "something", role, "some detail")
}

fn all_attached() -> Vec<SourceCheck> {
    vec![
        source("first touches", SourceRole::Core, true, false),
        source("thread migrations", SourceRole::Core, true, false),
        source("hinting faults", SourceRole::Detail, true, false),
    ]
}

#[test]
fn every_source_attached_is_full() {
    let v = Verdict::judge(&[], &all_attached());
    assert_eq!(v.level, VerdictLevel::Full);
    assert_eq!(v.line, "numatrace can trace here: all 3 sources attach");
    assert_eq!(v.exit_code(), 0);
}

#[test]
fn a_fallback_is_still_full_and_says_so() {
    let mut sources = all_attached();
    sources[1] = source("thread migrations", SourceRole::Core, true, true);
    let v = Verdict::judge(&[], &sources);
    assert_eq!(v.level, VerdictLevel::Full);
    assert!(v.line.ends_with("all 3 sources attach (1 through costlier fallbacks, see above)"), "{}", v.line);
}

#[test]
fn a_missing_detail_source_is_reduced_and_still_exits_0() {
    let mut sources = all_attached();
    sources[2] = source("hinting faults", SourceRole::Detail, false, false);
    let v = Verdict::judge(&[], &sources);
    assert_eq!(v.level, VerdictLevel::Reduced);
    assert!(
        v.line.starts_with("numatrace will work with reduced detail: 2 of 3 sources attach; without hinting faults")
    );
    assert_eq!(v.exit_code(), 0);
    assert_eq!(sources[2].loses.as_deref(), Some("some detail"));
    assert_eq!(sources[0].loses, None, "an attached source loses nothing");
}

#[test]
fn a_missing_core_source_cannot_trace() {
    let mut sources = all_attached();
    sources[0] = source("first touches", SourceRole::Core, false, false);
    sources[2] = source("hinting faults", SourceRole::Detail, false, false);
    let v = Verdict::judge(&[], &sources);
    assert_eq!(v.level, VerdictLevel::CannotTrace);
    assert!(v.line.starts_with("cannot trace here: first touches cannot attach"), "{}", v.line);
    assert_ne!(v.exit_code(), 0);
}

#[test]
fn a_blocker_cannot_trace_whatever_the_sources() {
    let sources: Vec<SourceCheck> =
        all_attached().iter().map(|s| SourceCheck::not_checked(&s.name, &s.observes, s.role)).collect();
    let v = Verdict::judge(&["cannot load programs as this user".to_string()], &sources);
    assert_eq!(v.level, VerdictLevel::CannotTrace);
    assert_eq!(v.line, "cannot trace here: cannot load programs as this user");
    assert_ne!(v.exit_code(), 0);
}

#[test]
fn sources_not_tried_are_no_verdict() {
    let sources = vec![SourceCheck::not_checked("first touches", "x", SourceRole::Core)];
    assert_eq!(Verdict::judge(&[], &sources).level, VerdictLevel::CannotTrace);
    // Untried sources are left out of the count of one that was tried.
    let mut sources = all_attached();
    sources.push(SourceCheck::not_checked("cgroup joins", "x", SourceRole::Detail));
    let v = Verdict::judge(&[], &sources);
    assert_eq!(v.line, "numatrace can trace here: all 3 sources attach");
}

#[test]
fn lockdown_and_balancing_read_their_files() {
    assert_eq!(Lockdown::parse("[none] integrity confidentiality\n"), Lockdown::None);
    assert_eq!(Lockdown::parse("none integrity [confidentiality]\n"), Lockdown::Confidentiality);
    assert_eq!(Lockdown::parse("none [integrity] confidentiality"), Lockdown::Integrity);
    assert_eq!(Lockdown::parse(""), Lockdown::Unknown);
    assert_eq!(BalancingMode::from_value(Some(0)), BalancingMode::Off);
    assert_eq!(BalancingMode::from_value(Some(1)), BalancingMode::Normal);
    assert_eq!(BalancingMode::from_value(Some(3)), BalancingMode::NormalAndMemoryTiering);
    assert_eq!(BalancingMode::from_value(Some(7)), BalancingMode::Unknown);
    assert_eq!(BalancingMode::from_value(None), BalancingMode::Unknown);
}

#[test]
fn enums_are_snake_case_strings_in_json() {
    let s = serde_json::to_value(source("x", SourceRole::Core, true, false)).unwrap();
    assert_eq!(s["kind"], "raw_tracepoint");
    assert_eq!(s["role"], "core");
    assert_eq!(s["state"], "attached");
    assert_eq!(serde_json::to_value(BalancingMode::NormalAndMemoryTiering).unwrap(), "normal_and_memory_tiering");
    assert_eq!(serde_json::to_value(TracefsState::MountedByCheck).unwrap(), "mounted_by_check");
    assert_eq!(serde_json::to_value(VerdictLevel::CannotTrace).unwrap(), "cannot_trace");
    assert_eq!(serde_json::to_value(BtfAccess::Mmap).unwrap(), "mmap");
}
