//! `doppel completions <shell>`: the shell's completion script for every subcommand and option,
//! generated from the same clap definition that parses them, so it never falls behind.

use super::target::print;
use clap_complete::Shell;

pub fn run(shell: Shell, mut command: clap::Command) -> anyhow::Result<()> {
    // Into memory first: clap_complete panics on a failed write, and a closed pipe is no error.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "doppel", &mut script);
    print(&script).map(drop)
}
