//! `regkit ci-env`: a private docker config directory for one CI job.
//!
//! Parallel jobs of one user share `~/.docker/config.json`, so their `docker login`s race: one job's
//! credentials (or its rewrite of the file) replace another's. Each job gets its own directory instead, seeded
//! with the credential routing of the shared config, and says so through `DOCKER_CONFIG` (docker) and
//! `REGISTRY_AUTH_FILE` (podman, skopeo, buildah: they would otherwise read and write the shared
//! `$XDG_RUNTIME_DIR/containers/auth.json` first).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use regkit::dockerconfig::{CONTAINERS_HUB_KEY, ConfigDocument, INDEX_SERVER};
use serde_json::{Map, Value};

use super::Fatal;

/// Marks a directory as made by `ci-env`; `--cleanup` removes nothing without it.
const MARKER: &str = ".regkit-ci-env";

/// The containers auth file inside the directory.
const CONTAINERS_FILE: &str = "auth.json";

/// The keys copied from the source config: the credential routing, stored logins and proxies.
/// `currentContext` is left out: the context store it names is not copied.
const COPIED: [&str; 4] = ["auths", "credHelpers", "credsStore", "proxies"];

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
            cleanup(dir)?;
            unset_lines(args.shell)
        }
        None => {
            let source = args.docker_config_from.as_deref().unwrap_or(default_source);
            let dir = create(source)?;
            export_lines(args.shell, &dir)?
        }
    };
    super::print_with(|out| out.write_all(lines.as_bytes()))?;
    Ok(regkit::report::EXIT_OK)
}

/// Makes and seeds the private directory; on any failure it is removed again.
fn create(source: &Path) -> Result<PathBuf, Fatal> {
    let document = ConfigDocument::load(source).map_err(|error| Fatal::Usage(error.to_string()))?;
    let dir = private_dir()?;
    let seeded = seed(&document, source, &dir);
    if let Err(error) = seeded {
        let _ = fs::remove_dir_all(&dir);
        return Err(error);
    }
    Ok(dir)
}

fn seed(document: &ConfigDocument, source: &Path, dir: &Path) -> Result<(), Fatal> {
    let write_error = |path: &Path, error: std::io::Error| {
        Fatal::Io(format!("cannot write {}: {error}", path.display()))
    };
    let marker = dir.join(MARKER);
    fs::write(
        &marker,
        b"made by regkit ci-env; remove with regkit ci-env --cleanup DIR\n",
    )
    .map_err(|error| write_error(&marker, error))?;
    let mut private = ConfigDocument::load(dir).map_err(|error| Fatal::Usage(error.to_string()))?;
    for key in COPIED {
        if let Some(value) = document.root().get(key) {
            private.root_mut().insert(key.into(), value.clone());
        }
    }
    // docker looks for CLI plugins (buildx, compose) under $DOCKER_CONFIG; keep the user's.
    let plugins = source.join("cli-plugins");
    if plugins.is_dir() {
        let mut dirs = match document.root().get("cliPluginsExtraDirs") {
            Some(Value::Array(dirs)) => dirs.clone(),
            _ => Vec::new(),
        };
        dirs.push(Value::String(plugins.display().to_string()));
        private
            .root_mut()
            .insert("cliPluginsExtraDirs".into(), Value::Array(dirs));
    }
    private
        .save()
        .map_err(|error| Fatal::Io(error.to_string()))?;
    let containers = dir.join(CONTAINERS_FILE);
    let text = containers_document(document.root()).to_string();
    write_private(&containers, text.as_bytes()).map_err(|error| write_error(&containers, error))
}

/// The containers auth file: the same logins and helpers, with Docker Hub's helper also under the key
/// podman asks for. `credsStore` has no meaning there (podman ignores it).
fn containers_document(root: &Map<String, Value>) -> Value {
    let mut helpers = match root.get("credHelpers") {
        Some(Value::Object(helpers)) => helpers.clone(),
        _ => Map::new(),
    };
    if let Some(hub) = helpers.get(INDEX_SERVER).cloned() {
        helpers.entry(CONTAINERS_HUB_KEY).or_insert(hub);
    }
    let auths = match root.get("auths") {
        Some(Value::Object(auths)) => auths.clone(),
        _ => Map::new(),
    };
    serde_json::json!({"auths": auths, "credHelpers": helpers})
}

/// A new 0700 directory under the CI runner's per-job temp dir when there is one, else the system's.
fn private_dir() -> Result<PathBuf, Fatal> {
    let parent = std::env::var_os("RUNNER_TEMP")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let stamp = clock_nanos();
    for attempt in 0..100u32 {
        let dir = parent.join(format!(
            "regkit-ci-{}-{}",
            std::process::id(),
            stamp.wrapping_add(attempt)
        ));
        match make_private_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(error) => {
                return Err(Fatal::Usage(format!(
                    "cannot create a directory in {}: {error}",
                    parent.display()
                )));
            }
        }
    }
    Err(Fatal::Usage(format!(
        "cannot create a directory in {}: every name tried exists",
        parent.display()
    )))
}

/// Nanoseconds of the clock, to vary directory names between runs with the same process id.
fn clock_nanos() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.subsec_nanos())
}

#[cfg(unix)]
fn make_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new().mode(0o700).create(dir)
}

#[cfg(not(unix))]
fn make_private_dir(dir: &Path) -> std::io::Result<()> {
    fs::create_dir(dir)
}

fn write_private(path: &Path, content: &[u8]) -> std::io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(content)?;
    file.sync_all()
}

/// Removes `dir` only if `ci-env` made it: a mistyped path must never lose a real directory.
fn cleanup(dir: &Path) -> Result<(), Fatal> {
    let is_real_dir = fs::symlink_metadata(dir).is_ok_and(|meta| meta.is_dir());
    if !is_real_dir || !dir.join(MARKER).is_file() {
        return Err(Fatal::Usage(format!(
            "{} was not made by regkit ci-env (no {MARKER} in it); nothing removed",
            dir.display()
        )));
    }
    fs::remove_dir_all(dir)
        .map_err(|error| Fatal::Io(format!("cannot remove {}: {error}", dir.display())))
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
    let vars = [
        ("DOCKER_CONFIG", text(dir)?),
        ("REGISTRY_AUTH_FILE", text(&dir.join(CONTAINERS_FILE))?),
    ];
    Ok(vars
        .iter()
        .map(|(name, value)| match shell {
            Shell::Sh => format!("export {name}={}\n", sh_quote(value)),
            Shell::Fish => format!("set -gx {name} {}\n", fish_quote(value)),
            Shell::Powershell => format!("$env:{name} = {}\n", powershell_quote(value)),
        })
        .collect())
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

    #[test]
    fn hub_helper_is_also_under_podmans_key() {
        let root: Map<String, Value> = serde_json::from_str(
            r#"{"credHelpers":{"https://index.docker.io/v1/":"keyring","ghcr.io":"env"},"credsStore":"x","psFormat":"y"}"#,
        )
        .unwrap();
        let document = containers_document(&root);
        assert_eq!(document["credHelpers"]["docker.io"], "keyring");
        assert_eq!(document["credHelpers"]["ghcr.io"], "env");
        assert!(document.get("credsStore").is_none());
    }

    #[test]
    fn cleanup_refuses_foreign_directories() {
        let temp = tempfile_dir();
        let error = cleanup(&temp).err().map(|error| error.to_string());
        assert!(error.is_some_and(|text| text.contains("not made by regkit ci-env")));
        assert!(temp.is_dir());
        fs::write(temp.join(MARKER), "").unwrap();
        assert!(cleanup(&temp).is_ok());
        assert!(!temp.exists());
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "regkit-cienv-test-{}-{}",
            std::process::id(),
            clock_nanos()
        ));
        fs::create_dir(&dir).unwrap();
        dir
    }
}
