//! `regkit generate` (hidden): man pages and shell completions from the very command definition the binary
//! parses with, vendor flags included, for `make install`, the .deb and the Homebrew formula.

use std::fs;
use std::path::{Path, PathBuf};

use clap::Subcommand;
use clap_complete::{Generator, Shell};

use super::Fatal;

#[derive(Subcommand)]
pub(crate) enum Generate {
    /// Write regkit.1 and one page per subcommand (regkit-tags.1, …) into DIR.
    Man {
        /// Output directory (created if missing).
        dir: PathBuf,
    },
    /// Write SHELL's completion script into DIR under the name that shell loads it by.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: Shell,
        /// Output directory (created if missing).
        dir: PathBuf,
    },
}

/// Writes the files for `what`, generated from `command`.
pub(crate) fn run(what: &Generate, command: clap::Command) -> Result<u8, Fatal> {
    let failed = |dir: &Path, error: std::io::Error| {
        Fatal::Io(format!("cannot write into {}: {error}", dir.display()))
    };
    match what {
        Generate::Man { dir } => {
            fs::create_dir_all(dir).map_err(|error| failed(dir, error))?;
            clap_mangen::generate_to(command, dir).map_err(|error| failed(dir, error))?;
        }
        Generate::Completions { shell, dir } => {
            fs::create_dir_all(dir).map_err(|error| failed(dir, error))?;
            let name = command.get_name().to_string();
            // bash-completion loads completions/<command> on first use; the others have their own names.
            let file = match shell {
                Shell::Bash => name.clone(),
                other => other.file_name(&name),
            };
            let path = dir.join(file);
            let mut command = command;
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut command, &name, &mut script);
            fs::write(&path, script).map_err(|error| failed(dir, error))?;
        }
    }
    Ok(regkit::report::EXIT_OK)
}
