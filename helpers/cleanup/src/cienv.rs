//! `regkit ci-env`: a private docker config directory for one CI job ([`private`] makes it), and the shell
//! lines that select it.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use regkit::dockerconfig::private;

use super::Fatal;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Shell {
    /// POSIX sh, bash, zsh: `eval "$(regkit ci-env)"`.
    Sh,
    /// fish: `regkit ci-env --shell fish | source`.
    Fish,
    /// PowerShell: `regkit ci-env --shell powershell | Invoke-Expression`.
    Powershell,
}

#[derive(Args)]
pub(crate) struct CiEnvArgs {
    /// Docker config directory to copy credHelpers, credsStore, auths and proxies from [default: the one
    /// regkit reads: --docker-config, DOCKER_CONFIG, ~/.docker].
    #[arg(long, value_name = "DIR", conflicts_with = "cleanup")]
    docker_config_from: Option<PathBuf>,
    /// Syntax of the printed lines.
    #[arg(long, value_enum, default_value = "sh")]
    shell: Shell,
    /// Remove a directory an earlier `regkit ci-env` made, and print lines that unset its variables.
    #[arg(long, value_name = "DIR")]
    cleanup: Option<PathBuf>,
}

/// Runs `regkit ci-env`; `default_source` is the docker config directory regkit itself would read.
pub(crate) fn run(args: &CiEnvArgs, default_source: &Path) -> Result<u8, Fatal> {
    let lines = match &args.cleanup {
        Some(dir) => {
            private::remove(dir)?;
            unset_lines(args.shell)
        }
        None => {
            let source = args.docker_config_from.as_deref().unwrap_or(default_source);
            let dir = private::create(source, &|name| std::env::var_os(name))?;
            export_lines(args.shell, &dir)?
        }
    };
    super::print_with(|out| out.write_all(lines.as_bytes()))?;
    Ok(regkit::report::EXIT_OK)
}

fn export_lines(shell: Shell, dir: &Path) -> Result<String, Fatal> {
    let text = |path: &Path| {
        path.to_str().map(str::to_owned).ok_or_else(|| {
            Fatal::Usage(format!(
                "{} is not valid UTF-8 and cannot be exported; set TMPDIR to another directory",
                path.display()
            ))
        })
    };
    private::variables(dir)
        .iter()
        .map(|(name, path)| {
            let value = text(path)?;
            Ok(match shell {
                Shell::Sh => format!("export {name}={}\n", sh_quote(&value)),
                Shell::Fish => format!("set -gx {name} {}\n", fish_quote(&value)),
                Shell::Powershell => format!("$env:{name} = {}\n", powershell_quote(&value)),
            })
        })
        .collect()
}

fn unset_lines(shell: Shell) -> String {
    match shell {
        Shell::Sh => "unset DOCKER_CONFIG REGISTRY_AUTH_FILE\n".into(),
        Shell::Fish => "set -e DOCKER_CONFIG\nset -e REGISTRY_AUTH_FILE\n".into(),
        Shell::Powershell => {
            "Remove-Item Env:DOCKER_CONFIG, Env:REGISTRY_AUTH_FILE -ErrorAction SilentlyContinue\n"
                .into()
        }
    }
}

fn sh_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

fn fish_quote(value: &str) -> String {
    format!("'{}'", value.replace('\\', r"\\").replace('\'', r"\'"))
}

fn powershell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_hostile_paths() {
        let path = "/tmp/it's a $dir\\x";
        assert_eq!(sh_quote(path), r"'/tmp/it'\''s a $dir\x'");
        assert_eq!(fish_quote(path), r"'/tmp/it\'s a $dir\\x'");
        assert_eq!(powershell_quote(path), r"'/tmp/it''s a $dir\x'");
    }

    #[test]
    fn export_lines_per_shell() {
        let dir = Path::new("/tmp/regkit-ci-1");
        assert_eq!(
            export_lines(Shell::Sh, dir).ok().unwrap(),
            "export DOCKER_CONFIG='/tmp/regkit-ci-1'\nexport REGISTRY_AUTH_FILE='/tmp/regkit-ci-1/auth.json'\n"
        );
        assert_eq!(
            export_lines(Shell::Fish, dir).ok().unwrap(),
            "set -gx DOCKER_CONFIG '/tmp/regkit-ci-1'\nset -gx REGISTRY_AUTH_FILE '/tmp/regkit-ci-1/auth.json'\n"
        );
        assert_eq!(
            export_lines(Shell::Powershell, dir).ok().unwrap(),
            "$env:DOCKER_CONFIG = '/tmp/regkit-ci-1'\n$env:REGISTRY_AUTH_FILE = '/tmp/regkit-ci-1/auth.json'\n"
        );
    }
}
