//! `runplane generate`: completions and man pages from the clap definition, so that they are
//! never out of date and never committed as build output.

use std::path::Path;

use clap::CommandFactory;
use clap_complete::Shell as CShell;

use crate::Failure;
use crate::args::{Cli, Generate, Shell};

fn write_page(cmd: &clap::Command, name: &str, dir: &Path) -> Result<(), Failure> {
    let mut buf = Vec::new();
    // Sub-pages are named runplane-VERB, as git's are.
    let cmd = cmd.clone().bin_name(name.replace('-', " "));
    clap_mangen::Man::new(cmd.clone())
        .title(name.to_uppercase())
        .render(&mut buf)
        .map_err(|e| Failure::system(format!("unable to render the man page {name}.1: {e}")))?;
    let path = dir.join(format!("{name}.1"));
    std::fs::write(&path, buf)
        .map_err(|e| Failure::system(format!("unable to write {}: {e}", path.display())))
}

pub fn run(what: &Generate) -> Result<(), Failure> {
    match what {
        Generate::Completions { shell } => {
            let sh = match shell {
                Shell::Bash => CShell::Bash,
                Shell::Zsh => CShell::Zsh,
                Shell::Fish => CShell::Fish,
                Shell::Elvish => CShell::Elvish,
                Shell::Powershell => CShell::PowerShell,
            };
            clap_complete::generate(sh, &mut Cli::command(), "runplane", &mut std::io::stdout());
            Ok(())
        }
        Generate::Man { dir } => {
            std::fs::create_dir_all(dir)
                .map_err(|e| Failure::system(format!("unable to create {}: {e}", dir.display())))?;
            let mut cmd = Cli::command();
            cmd.build();
            write_page(&cmd, "runplane", dir)?;
            for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
                write_page(sub, &format!("runplane-{}", sub.get_name()), dir)?;
            }
            Ok(())
        }
    }
}
