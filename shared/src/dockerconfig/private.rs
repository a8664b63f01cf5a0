//! A private docker config directory for one CI job (`regkit ci-env`).
//!
//! Parallel jobs of one user share `~/.docker/config.json`, so their `docker login`s race: one job's
//! credentials (or its rewrite of the file) replace another's. Each job gets its own directory instead, seeded
//! with the credential routing of the shared config, and says so through `DOCKER_CONFIG` (docker) and
//! `REGISTRY_AUTH_FILE` (podman, skopeo, buildah: they would otherwise read and write the shared
//! `$XDG_RUNTIME_DIR/containers/auth.json` first).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::write::clock_nanos;
use super::{CONTAINERS_HUB_KEY, ConfigDocument, ConfigError, EnvLookup, INDEX_SERVER};

/// Marks a directory as made by [`create`]; [`remove`] removes nothing without it.
const MARKER: &str = ".regkit-ci-env";

/// The containers auth file inside the directory.
const CONTAINERS_FILE: &str = "auth.json";

/// The keys copied from the source config: the credential routing, stored logins and proxies.
/// `currentContext` is left out: the context store it names is not copied.
const COPIED: [&str; 4] = ["auths", "credHelpers", "credsStore", "proxies"];

/// A failure to make, seed or remove a private directory. One line, never a value from a document.
#[derive(Debug, thiserror::Error)]
pub enum PrivateDirError {
    /// A `config.json` to copy from (or to seed) cannot be read or is malformed.
    #[error(transparent)]
    Config(ConfigError),
    /// The directory cannot be created.
    #[error("cannot create a directory in {}: {source}", parent.display())]
    Create {
        /// Where it was to be created.
        parent: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Every name tried for the directory already exists.
    #[error("cannot create a directory in {}: every name tried exists", parent.display())]
    NoFreeName {
        /// Where it was to be created.
        parent: PathBuf,
    },
    /// A file of the directory cannot be written.
    #[error(transparent)]
    Write(ConfigError),
    /// [`remove`] was given a directory [`create`] did not make.
    #[error("{} was not made by regkit ci-env (no {MARKER} in it); nothing removed", dir.display())]
    NotMade {
        /// The directory, left as it was.
        dir: PathBuf,
    },
    /// The directory cannot be removed.
    #[error("cannot remove {}: {source}", dir.display())]
    Remove {
        /// The directory.
        dir: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// Makes a private directory seeded from the docker config directory `source`, under `RUNNER_TEMP` (the CI
/// runner's per-job temp dir, read through `env`) when set, else the system's temp dir. On any failure it
/// is removed again.
pub fn create(source: &Path, env: EnvLookup<'_>) -> Result<PathBuf, PrivateDirError> {
    let document = ConfigDocument::load(source).map_err(PrivateDirError::Config)?;
    let parent = env("RUNNER_TEMP")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = new_private_dir(parent)?;
    if let Err(error) = seed(&document, source, &dir) {
        let _ = fs::remove_dir_all(&dir);
        return Err(error);
    }
    Ok(dir)
}

/// The variables that select the private directory `dir`, with their values.
pub fn variables(dir: &Path) -> [(&'static str, PathBuf); 2] {
    [
        ("DOCKER_CONFIG", dir.to_owned()),
        ("REGISTRY_AUTH_FILE", dir.join(CONTAINERS_FILE)),
    ]
}

/// Removes `dir` only if [`create`] made it: a mistyped path must never lose a real directory.
pub fn remove(dir: &Path) -> Result<(), PrivateDirError> {
    let is_real_dir = fs::symlink_metadata(dir).is_ok_and(|meta| meta.is_dir());
    if !is_real_dir || !dir.join(MARKER).is_file() {
        return Err(PrivateDirError::NotMade {
            dir: dir.to_owned(),
        });
    }
    fs::remove_dir_all(dir).map_err(|source| PrivateDirError::Remove {
        dir: dir.to_owned(),
        source,
    })
}

fn seed(document: &ConfigDocument, source: &Path, dir: &Path) -> Result<(), PrivateDirError> {
    let write_error = |path: &Path, source| {
        PrivateDirError::Write(ConfigError::Write {
            path: path.to_owned(),
            source,
        })
    };
    let marker = dir.join(MARKER);
    fs::write(
        &marker,
        b"made by regkit ci-env; remove with regkit ci-env --cleanup DIR\n",
    )
    .map_err(|error| write_error(&marker, error))?;
    let mut private = ConfigDocument::load(dir).map_err(PrivateDirError::Config)?;
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
    private.save().map_err(PrivateDirError::Write)?;
    let containers = dir.join(CONTAINERS_FILE);
    let text = containers_document(document.root()).to_string();
    write_new_private_file(&containers, text.as_bytes())
        .map_err(|error| write_error(&containers, error))
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

/// A new 0700 directory in `parent` with a name no other run uses.
fn new_private_dir(parent: PathBuf) -> Result<PathBuf, PrivateDirError> {
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
            Err(source) => return Err(PrivateDirError::Create { parent, source }),
        }
    }
    Err(PrivateDirError::NoFreeName { parent })
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

fn write_new_private_file(path: &Path, content: &[u8]) -> std::io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(content)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[cfg(unix)]
    #[test]
    fn create_seeds_private_files_that_remove_takes_away() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o777;
        let temp = tempfile::tempdir().unwrap();
        let source = temp.path().join("docker");
        fs::create_dir_all(source.join("cli-plugins")).unwrap();
        fs::write(
            source.join("config.json"),
            r#"{"credsStore":"pass","currentContext":"remote","psFormat":"table"}"#,
        )
        .unwrap();
        let runner_temp = temp.path().join("runner");
        fs::create_dir(&runner_temp).unwrap();
        let env = |name: &str| (name == "RUNNER_TEMP").then(|| runner_temp.clone().into());
        let dir = create(&source, &env).unwrap();
        assert_eq!(dir.parent(), Some(runner_temp.as_path()));
        assert_eq!(mode(&dir), 0o700);
        let config: Value =
            serde_json::from_str(&fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
        assert_eq!(config["credsStore"], "pass");
        assert!(config.get("currentContext").is_none() && config.get("psFormat").is_none());
        assert_eq!(
            config["cliPluginsExtraDirs"][0],
            source.join("cli-plugins").display().to_string()
        );
        let [(_, docker_config), (_, auth_file)] = variables(&dir);
        assert_eq!(docker_config, dir);
        assert_eq!(mode(&auth_file), 0o600);
        assert_eq!(mode(&dir.join("config.json")), 0o600);
        remove(&dir).unwrap();
        assert!(!dir.exists());
    }

    #[test]
    fn cleanup_refuses_foreign_directories() {
        let parent = tempfile::tempdir().unwrap();
        let temp = parent.path().join("job");
        fs::create_dir(&temp).unwrap();
        let error = remove(&temp).err().map(|error| error.to_string());
        assert!(error.is_some_and(|text| text.contains("not made by regkit ci-env")));
        assert!(temp.is_dir());
        fs::write(temp.join(MARKER), "").unwrap();
        assert!(remove(&temp).is_ok());
        assert!(!temp.exists());
    }
}
