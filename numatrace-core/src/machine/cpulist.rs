//! The kernel's CPU and node list format (`0-3,8,10-11`), both ways.
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
#[error("not a CPU/node list: {0:?}")]
pub struct ListError(pub String);

/// Parses a list such as `0-3,8,10-11` (whitespace and a trailing newline allowed; empty = none).
pub fn parse(text: &str) -> Result<Vec<u32>, ListError> {
    let mut out = Vec::new();
    for part in text.trim().split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || ListError(text.trim().to_string());
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
                if b < a || b - a > 1 << 20 {
                    return Err(bad());
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().map_err(|_| bad())?),
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// Formats ids as a compact list (`0-3,8`), as `taskset -c` and `numactl` take it.
pub fn format(ids: &[u32]) -> String {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let mut out = String::new();
    let mut i = 0;
    while i < ids.len() {
        let start = ids[i];
        let mut end = start;
        while i + 1 < ids.len() && ids[i + 1] == end + 1 {
            i += 1;
            end = ids[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}-{end}"));
        }
        i += 1;
    }
    out
}

/// Parses a hex mask as in /proc/<pid>/status `Cpus_allowed` (`ff,ffffffff`).
pub fn parse_mask(text: &str) -> Result<Vec<u32>, ListError> {
    let hex: String = text.trim().chars().filter(|c| *c != ',').collect();
    let mut out = Vec::new();
    for (i, c) in hex.chars().rev().enumerate() {
        let v = c.to_digit(16).ok_or_else(|| ListError(text.trim().to_string()))?;
        for bit in 0..4 {
            if v & (1 << bit) != 0 {
                out.push((i * 4 + bit) as u32);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ranges_and_singles() {
        assert_eq!(parse("0-3,8,10-11\n").unwrap(), vec![0, 1, 2, 3, 8, 10, 11]);
        assert_eq!(parse("").unwrap(), Vec::<u32>::new());
        assert!(parse("3-1").is_err());
        assert!(parse("a").is_err());
    }

    #[test]
    fn formats_compactly() {
        assert_eq!(format(&[0, 1, 2, 3, 8, 10, 11]), "0-3,8,10-11");
        assert_eq!(format(&[5]), "5");
    }

    #[test]
    fn parses_masks() {
        assert_eq!(parse_mask("00000003").unwrap(), vec![0, 1]);
        assert_eq!(parse_mask("1,00000000").unwrap(), vec![32]);
    }

    proptest::proptest! {
        #[test]
        fn format_then_parse_round_trips(ids in proptest::collection::vec(0u32..512, 0..64)) {
            let mut want = ids.clone();
            want.sort_unstable();
            want.dedup();
            proptest::prop_assert_eq!(parse(&format(&ids)).unwrap(), want);
        }
    }
}
