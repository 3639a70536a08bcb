//! `numatrace completions SHELL`: the shell completion script, generated
//! from the same clap definitions that parse the command line.
use std::io::Write;

use anyhow::{Context, Result};
use clap::{Args, CommandFactory};
use clap_complete::Shell;

use super::Cli;

#[derive(Debug, Clone, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for. Install e.g. with
    /// `numatrace completions bash > /usr/share/bash-completion/completions/numatrace`
    /// (the .deb installs bash, zsh and fish ones).
    #[arg(value_enum)]
    pub shell: Shell,
}

/// Writes the script to stdout.
pub fn run(args: &CompletionsArgs) -> Result<i32> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "numatrace", &mut script);
    std::io::stdout().lock().write_all(&script).context("writing the completion script to stdout")?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use clap::{Parser, error::ErrorKind};

    use super::*;

    #[test]
    fn every_shell_script_knows_every_visible_command_and_flag() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "numatrace", &mut script);
            let script = String::from_utf8(script).unwrap();
            for word in ["inspect", "report", "export", "diff", "completions", "manpages", "overhead-budget", "unit"] {
                assert!(script.contains(word), "{shell}: no {word}");
            }
        }
    }

    #[test]
    fn an_unknown_shell_is_a_clap_error() {
        let err = Cli::try_parse_from(["numatrace", "completions", "nosuchshell"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidValue);
        assert_ne!(err.exit_code(), 0);
    }
}
