//! `numatrace manpages DIR`: one man page per command (numatrace.1,
//! numatrace-inspect.1, ...), generated from the clap definitions, so a flag
//! is described once. `cargo xtask dist` packs them; whoever copies the
//! static binary alone writes them where man looks.
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, CommandFactory};

use super::Cli;

#[derive(Debug, Clone, Args)]
pub struct ManpagesArgs {
    /// The directory to write the pages into (created if missing).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

pub fn run(args: &ManpagesArgs) -> Result<i32> {
    std::fs::create_dir_all(&args.dir).with_context(|| format!("creating {}", args.dir.display()))?;
    clap_mangen::generate_to(Cli::command(), &args.dir)
        .with_context(|| format!("writing man pages into {}", args.dir.display()))?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_page_per_visible_command() {
        let dir = std::env::temp_dir().join(format!("numatrace-manpages-{}", std::process::id()));
        run(&ManpagesArgs { dir: dir.clone() }).unwrap();
        let mut pages: Vec<String> =
            std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        pages.sort();
        std::fs::remove_dir_all(&dir).unwrap();
        let visible = Cli::command().get_subcommands().filter(|c| !c.is_hide_set()).count();
        assert_eq!(pages.len(), visible + 1, "{pages:?}");
        for page in ["numatrace.1", "numatrace-inspect.1", "numatrace-report.1", "numatrace-manpages.1"] {
            assert!(pages.iter().any(|p| p == page), "no {page} in {pages:?}");
        }
    }
}
