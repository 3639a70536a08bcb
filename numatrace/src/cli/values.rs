//! Closed sets the core crate defines as plain enums, offered to clap with
//! their names and help (the core crate has no clap).
use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use numatrace_core::{
    export::{FoldedBy, Format},
    report::text::ThreadsShown,
};

/// An enum a flag takes one value of.
pub trait ClosedSet: Copy + Send + Sync + 'static {
    const ALL: &'static [Self];
    fn name(self) -> &'static str;
    fn help(self) -> &'static str;
}

/// A value parser that lists `T`'s names in --help and errors.
pub fn closed_set<T: ClosedSet>() -> impl TypedValueParser<Value = T> {
    PossibleValuesParser::new(T::ALL.iter().map(|v| PossibleValue::new(v.name()).help(v.help())))
        .try_map(|name: String| T::ALL.iter().copied().find(|v| v.name() == name).ok_or("not one of the listed values"))
}

impl ClosedSet for Format {
    const ALL: &'static [Self] = &[Format::Perfetto, Format::Folded, Format::Svg, Format::Html];
    fn name(self) -> &'static str {
        match self {
            Format::Perfetto => "perfetto",
            Format::Folded => "folded",
            Format::Svg => "svg",
            Format::Html => "html",
        }
    }
    fn help(self) -> &'static str {
        match self {
            Format::Perfetto => "Chrome/Perfetto trace JSON (ui.perfetto.dev, chrome://tracing)",
            Format::Folded => "Collapsed stacks for flamegraph.pl, inferno, speedscope",
            Format::Svg => "A self-contained SVG timeline",
            Format::Html => "A self-contained HTML page: the SVG timeline and the causes",
        }
    }
}

impl ClosedSet for FoldedBy {
    const ALL: &'static [Self] = &[FoldedBy::Thread, FoldedBy::Stack];
    fn name(self) -> &'static str {
        match self {
            FoldedBy::Thread => "thread",
            FoldedBy::Stack => "stack",
        }
    }
    fn help(self) -> &'static str {
        match self {
            FoldedBy::Thread => "process;thread;node;cause, counted in milliseconds run",
            FoldedBy::Stack => "cause;thread;call stack (a capture made with --stacks), counted in remote pages",
        }
    }
}

impl ClosedSet for ThreadsShown {
    const ALL: &'static [Self] = &[ThreadsShown::Top, ThreadsShown::All];
    fn name(self) -> &'static str {
        match self {
            ThreadsShown::Top => "top",
            ThreadsShown::All => "all",
        }
    }
    fn help(self) -> &'static str {
        match self {
            ThreadsShown::Top => "at most 20 lines: threads grouped by name pattern and lifetime when there are more",
            ThreadsShown::All => "every thread, one line each",
        }
    }
}

/// `--overhead-budget`: a percent of one core, above 0 and at most 100 (a `%` may follow).
pub fn parse_budget_percent(text: &str) -> Result<f64, String> {
    let number = text.trim().trim_end_matches('%');
    match number.parse::<f64>() {
        Ok(p) if p > 0.0 && p <= 100.0 => Ok(p),
        Ok(_) => Err("a percent of one core, above 0 and at most 100 (e.g. 1 or 0.5)".to_string()),
        Err(_) => Err(format!("{text:?} is not a number (a percent of one core, e.g. 1 or 0.5)")),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_budget_percent;

    #[test]
    fn a_budget_is_a_percent_above_zero_and_at_most_one_core() {
        assert_eq!(parse_budget_percent("1"), Ok(1.0));
        assert_eq!(parse_budget_percent("0.5%"), Ok(0.5));
        assert_eq!(parse_budget_percent("100"), Ok(100.0));
        for bad in ["0", "-1", "101", "NaN", "one", ""] {
            assert!(parse_budget_percent(bad).is_err(), "{bad} accepted");
        }
    }
}
