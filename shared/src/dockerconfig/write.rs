//! Editing `config.json` without losing what other tools wrote into it.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::ConfigError;
use super::file::ConfigFile;

/// `config.json` as a JSON object, for edits such as `regkit configure`. Keys this crate does not know
/// survive a load/save round trip; [`ConfigDocument::save`] replaces the file atomically.
#[derive(Clone)]
pub struct ConfigDocument {
    path: PathBuf,
    root: Map<String, Value>,
}

/// The file and its top-level keys only: `auths` holds stored passwords.
impl std::fmt::Debug for ConfigDocument {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigDocument")
            .field("path", &self.path)
            .field("keys", &self.root.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl ConfigDocument {
    /// Loads `<dir>/config.json`; a missing file is an empty document. A malformed one is an error (it is
    /// never overwritten). Use [`super::DockerConfig::dir`] or [`super::config_dir`] to find `dir`.
    pub fn load(dir: &Path) -> Result<Self, ConfigError> {
        let path = dir.join(super::CONFIG_FILE);
        let root = match fs::read_to_string(&path) {
            Ok(text) => {
                let origin = format!("the file {}", path.display());
                // Validates the parts we understand, so a save cannot bless a file docker would reject.
                ConfigFile::parse(&text, &origin)?;
                match serde_json::from_str(&text) {
                    Ok(Value::Object(root)) => root,
                    _ => {
                        return Err(ConfigError::Malformed {
                            origin,
                            detail: "the top level must be a JSON object".into(),
                        });
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Map::new(),
            Err(source) => return Err(ConfigError::Read { path, source }),
        };
        Ok(ConfigDocument { path, root })
    }

    /// The file this document is saved to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The whole document, unknown keys included.
    pub fn root(&self) -> &Map<String, Value> {
        &self.root
    }

    /// The whole document, for edits this type has no method for.
    pub fn root_mut(&mut self) -> &mut Map<String, Value> {
        &mut self.root
    }

    /// Routes `registry` (a `credHelpers` key, used as given) to `docker-credential-<helper>`.
    pub fn set_cred_helper(&mut self, registry: &str, helper: &str) {
        let helpers = self
            .root
            .entry("credHelpers")
            .or_insert_with(|| Value::Object(Map::new()));
        if !helpers.is_object() {
            *helpers = Value::Object(Map::new());
        }
        if let Value::Object(helpers) = helpers {
            helpers.insert(registry.to_owned(), Value::String(helper.to_owned()));
        }
    }

    /// Sets (`Some`) or removes (`None`) `credsStore`.
    pub fn set_creds_store(&mut self, helper: Option<&str>) {
        match helper {
            Some(helper) => {
                self.root
                    .insert("credsStore".into(), Value::String(helper.to_owned()));
            }
            None => {
                self.root.remove("credsStore");
            }
        }
    }

    /// Writes the document atomically ([`write_atomically`]); a new file gets 0600 because it may hold
    /// passwords.
    pub fn save(&self) -> Result<(), ConfigError> {
        let mut text = serde_json::to_string_pretty(&self.root).map_err(|e| {
            ConfigError::Other(format!("cannot encode {}: {e}", self.path.display()))
        })?;
        text.push('\n');
        write_atomically(&self.path, text.as_bytes(), NewFileMode::Private)
    }
}

/// Who may read a file [`write_atomically`] creates; an existing file keeps its own mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NewFileMode {
    /// 0600, in directories created 0700: the file may hold credentials.
    Private,
    /// 0644, in directories created 0755 (less the umask): configuration that other users' tools read.
    Shared,
}

/// Replaces `path` with `content` atomically: a temp file in the target's directory, flushed, then renamed
/// over it, so no reader ever sees half a file. A symlinked `path` keeps its link (the target is replaced);
/// the file's mode is kept, and a new file gets `mode`'s.
pub fn write_atomically(path: &Path, content: &[u8], mode: NewFileMode) -> Result<(), ConfigError> {
    let write_error = |path: &Path, source| ConfigError::Write {
        path: path.to_owned(),
        source,
    };
    let target = match fs::canonicalize(path) {
        Ok(target) => target,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // A dangling symlink names the file to create; docker's EvalSymlinks would fail here,
            // but writing through the link is what its owner meant.
            match fs::read_link(path) {
                Ok(link) => path.parent().map(|dir| dir.join(&link)).unwrap_or(link),
                Err(_) => path.to_owned(),
            }
        }
        Err(source) => return Err(write_error(path, source)),
    };
    let dir = target
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    // A shared file is created 0644 and left to the umask; a private one, or the mode an existing file
    // had, is set exactly.
    let (dir_mode, created_mode, exact_mode) = match (mode, existing_mode(&target)) {
        (NewFileMode::Private, existing) => (0o700, 0o600, Some(existing.unwrap_or(0o600))),
        (NewFileMode::Shared, Some(existing)) => (0o755, 0o600, Some(existing)),
        (NewFileMode::Shared, None) => (0o755, 0o644, None),
    };
    create_dir(dir, dir_mode).map_err(|e| write_error(dir, e))?;
    let name = target.file_name().unwrap_or_default().to_string_lossy();
    let (temp_path, mut temp) =
        create_temp(dir, &name, created_mode).map_err(|e| write_error(dir, e))?;
    let written = exact_mode
        .map_or(Ok(()), |mode| set_mode(&temp_path, mode))
        .and_then(|()| temp.write_all(content))
        .and_then(|()| temp.sync_all())
        .and_then(|()| fs::rename(&temp_path, &target));
    if let Err(source) = written {
        let _ = fs::remove_file(&temp_path);
        return Err(write_error(&target, source));
    }
    Ok(())
}

/// A new file next to the target (so the rename stays on one file system), created with `mode`.
fn create_temp(dir: &Path, name: &str, mode: u32) -> std::io::Result<(PathBuf, fs::File)> {
    let stamp = clock_nanos();
    let mut attempt = 0u32;
    loop {
        let path = dir.join(format!(
            ".{name}.{}.{}.tmp",
            std::process::id(),
            stamp.wrapping_add(attempt)
        ));
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
        // Elsewhere the file inherits its directory's access rules.
        #[cfg(not(unix))]
        let _ = mode;
        match options.open(&path) {
            Ok(file) => return Ok((path, file)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 100 => {
                attempt += 1
            }
            Err(e) => return Err(e),
        }
    }
}

/// Nanoseconds of the clock, to vary new file names between runs with the same process id.
pub(super) fn clock_nanos() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.subsec_nanos())
}

#[cfg(unix)]
fn create_dir(dir: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new().recursive(true).mode(mode).create(dir)
}

#[cfg(not(unix))]
fn create_dir(dir: &Path, _mode: u32) -> std::io::Result<()> {
    fs::create_dir_all(dir)
}

#[cfg(unix)]
fn existing_mode(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path)
        .ok()
        .map(|m| m.permissions().mode() & 0o7777)
}

#[cfg(not(unix))]
fn existing_mode(_path: &Path) -> Option<u32> {
    None
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> std::io::Result<()> {
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn new_file_is_0600_in_a_new_dir() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("docker");
        let mut doc = ConfigDocument::load(&dir).unwrap();
        doc.set_cred_helper("ghcr.io", "env");
        doc.save().unwrap();
        let path = dir.join("config.json");
        assert_eq!(mode(&path), 0o600);
        let saved: Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(saved["credHelpers"]["ghcr.io"], "env");
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1, "no temp file left");
    }

    #[test]
    fn unknown_keys_and_mode_survive() {
        let temp = tempfile::tempdir().unwrap();
        let path = temp.path().join("config.json");
        fs::write(
            &path,
            r#"{"auths":{"a.test":{"auth":"dTpw","email":"x@y"}},"psFormat":"table","proxies":{"default":{"httpProxy":"h"}},"credHelpers":{"b.test":"pass"}}"#,
        )
        .unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        let mut doc = ConfigDocument::load(temp.path()).unwrap();
        doc.set_cred_helper("c.test", "env");
        doc.set_creds_store(Some("keyring"));
        doc.save().unwrap();
        assert_eq!(mode(&path), 0o640);
        let saved: Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(saved["psFormat"], "table");
        assert_eq!(saved["proxies"]["default"]["httpProxy"], "h");
        assert_eq!(saved["auths"]["a.test"]["email"], "x@y");
        assert_eq!(saved["credHelpers"]["b.test"], "pass");
        assert_eq!(saved["credHelpers"]["c.test"], "env");
        assert_eq!(saved["credsStore"], "keyring");
        let mut doc = ConfigDocument::load(temp.path()).unwrap();
        doc.set_creds_store(None);
        doc.save().unwrap();
        let saved: Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        assert!(saved.get("credsStore").is_none());
    }

    #[test]
    fn symlinked_config_keeps_its_link() {
        let temp = tempfile::tempdir().unwrap();
        let real_dir = temp.path().join("dotfiles");
        fs::create_dir(&real_dir).unwrap();
        let real = real_dir.join("docker.json");
        fs::write(&real, r#"{"keep":1}"#).unwrap();
        fs::set_permissions(&real, fs::Permissions::from_mode(0o600)).unwrap();
        let dir = temp.path().join("docker");
        fs::create_dir(&dir).unwrap();
        let link = dir.join("config.json");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let mut doc = ConfigDocument::load(&dir).unwrap();
        doc.set_cred_helper("a.test", "env");
        doc.save().unwrap();
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        let saved: Value = serde_json::from_str(&fs::read_to_string(&real).unwrap()).unwrap();
        assert_eq!(saved["keep"], 1);
        assert_eq!(saved["credHelpers"]["a.test"], "env");
        assert_eq!(mode(&real), 0o600);
    }

    #[test]
    fn malformed_file_is_not_overwritten() {
        let temp = tempfile::tempdir().unwrap();
        let path = temp.path().join("config.json");
        fs::write(&path, "{\"auths\": canary").unwrap();
        let error = ConfigDocument::load(temp.path()).unwrap_err().to_string();
        assert!(error.contains(&path.display().to_string()), "{error}");
        assert!(!error.contains("canary"), "{error}");
        assert_eq!(fs::read_to_string(&path).unwrap(), "{\"auths\": canary");
    }

    #[test]
    fn debug_output_holds_no_stored_secret() {
        let temp = tempfile::tempdir().unwrap();
        fs::write(
            temp.path().join("config.json"),
            r#"{"auths":{"a.test":{"auth":"Y2FuYXJ5OmNhbmFyeQ=="}}}"#,
        )
        .unwrap();
        let shown = format!("{:?}", ConfigDocument::load(temp.path()).unwrap());
        assert!(shown.contains("auths"), "{shown}");
        assert!(!shown.contains("Y2FuYXJ5"), "{shown}");
    }

    #[test]
    fn non_object_cred_helpers_is_replaced() {
        let temp = tempfile::tempdir().unwrap();
        let mut doc = ConfigDocument::load(temp.path()).unwrap();
        doc.root_mut().insert("credHelpers".into(), Value::Null);
        doc.set_cred_helper("a.test", "env");
        assert_eq!(doc.root()["credHelpers"]["a.test"], "env");
        assert_eq!(doc.path(), temp.path().join("config.json"));
    }

    #[test]
    fn shared_files_keep_an_existing_mode_and_leave_no_temp_file() {
        let temp = tempfile::tempdir().unwrap();
        let path = temp.path().join("conf.d").join("50-x.conf");
        write_atomically(&path, b"one\n", NewFileMode::Shared).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "one\n");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        write_atomically(&path, b"two\n", NewFileMode::Shared).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "two\n");
        assert_eq!(mode(&path), 0o640);
        assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
    }
}
