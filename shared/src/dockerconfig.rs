//! Docker's client configuration, read the way the docker CLI and containers/image read it.
//!
//! [`DockerConfig::credentials_for`] asks, in this order, and stops at the first source with credentials:
//! 1. `DOCKER_AUTH_CONFIG` (`{"auths":{…}}`, docker CLI ≥ 28.3);
//! 2. `credHelpers[key]` of `config.json` (exact key), else its `credsStore`: the helper's `get`;
//! 3. `auths` of `config.json` (exact key, then legacy keys naming the same host);
//! 4. the containers auth file (`REGISTRY_AUTH_FILE` if set, else `$XDG_RUNTIME_DIR/containers/auth.json`):
//!    its `credHelpers[key]`, then its `auths`. Its `credsStore` is ignored, as podman and skopeo do.
//!
//! The key is docker's: `https://index.docker.io/v1/` for Docker Hub's names, else `host[:port]` (for the
//! containers file's helpers, `docker.io` as podman sends). A helper's not-found answer and docker's empty
//! `auths` markers mean "nothing here": the next source is asked. Any other helper failure, a missing
//! helper binary, or a malformed file is an error, as it is for docker. Docker's automatic default store
//! (`pass`/`secretservice` when config.json names none) is not emulated: a cleanup tool must not prompt a
//! keyring nobody configured.

mod file;
pub(crate) mod helper;
mod keys;
pub mod private;
// A host's default helper follows the registry implementation regkit detects for it.
#[cfg(feature = "registry")]
pub mod routes;
mod write;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::secret::Secret;

pub use file::AuthMap;
pub use helper::DEFAULT_HELPER_TIMEOUT;
pub use keys::{
    CONTAINERS_HUB_KEY, INDEX_SERVER, containers_key, hostname, is_docker_hub, registry_key,
};
pub use write::{ConfigDocument, NewFileMode, write_atomically};

use file::ConfigFile;

/// The file name inside the docker config directory.
pub const CONFIG_FILE: &str = "config.json";

/// Credentials for one registry host, as resolved from docker config, a helper, or the environment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum RegistryAuth {
    /// No credentials: anonymous access.
    #[default]
    Anonymous,
    /// A username and password (or personal access token).
    Basic {
        /// The username.
        username: String,
        /// The password or token.
        password: Secret<String>,
    },
    /// An OAuth2 refresh token for the registry's token service (`identitytoken`, or a helper's `<token>`).
    IdentityToken(Secret<String>),
    /// A bearer token to send as is (`registrytoken`).
    RegistryToken(Secret<String>),
}

/// Where a [`RegistryAuth`] came from, for `regkit detect`/`doctor` output (never holds a secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthSource {
    /// No source had an entry.
    None,
    /// `credHelpers[host]` or `credsStore`: the helper binary's name (`docker-credential-<name>`).
    Helper(String),
    /// An `auths` entry in the named file.
    File(PathBuf),
    /// The `DOCKER_AUTH_CONFIG` environment variable.
    Environment,
}

impl RegistryAuth {
    /// The kind of credentials (`basic`, `identity-token`, …) and the username: never the secret.
    pub fn kind(&self) -> (&'static str, Option<&str>) {
        match self {
            RegistryAuth::Anonymous => ("anonymous", None),
            RegistryAuth::Basic { username, .. } => ("basic", Some(username)),
            RegistryAuth::IdentityToken(_) => ("identity-token", None),
            RegistryAuth::RegistryToken(_) => ("registry-token", None),
        }
    }

    /// One line for people: the kind, the user and where the credentials came from, secrets redacted.
    pub fn describe(&self, source: &AuthSource) -> String {
        match self.kind() {
            ("anonymous", _) => "anonymous (no credentials found)".into(),
            (kind, Some(user)) => format!("{kind} as {user:?} from {source}, password redacted"),
            (kind, None) => format!("{kind} from {source}, token redacted"),
        }
    }
}

impl std::fmt::Display for AuthSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthSource::None => f.write_str("none"),
            AuthSource::Helper(name) => write!(f, "credential helper docker-credential-{name}"),
            AuthSource::File(path) => write!(f, "auths entry in {}", path.display()),
            AuthSource::Environment => f.write_str("DOCKER_AUTH_CONFIG"),
        }
    }
}

/// A failure to read configuration or run a helper. Every message is one line and never holds a secret.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Any other failure.
    #[error("{0}")]
    Other(String),
    /// A config file exists but cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A config file (or `DOCKER_AUTH_CONFIG`) is not what docker would accept.
    #[error("malformed docker config in {origin}: {detail}; fix or remove it")]
    Malformed {
        /// `the file <path>` or `the DOCKER_AUTH_CONFIG environment variable`.
        origin: String,
        /// What is wrong and where, without any value from the document.
        detail: String,
    },
    /// `config.json` cannot be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The configured helper binary is not on `PATH`.
    #[error(
        "credential helper docker-credential-{helper} is not on PATH: install it or change credHelpers/credsStore in the docker config"
    )]
    HelperNotFound {
        /// The helper's name (`docker-credential-<name>`).
        helper: String,
    },
    /// The helper answered with an error other than not-found, or with something unreadable.
    #[error("credential helper docker-credential-{helper} failed for {registry}: {detail}")]
    Helper {
        /// The helper's name.
        helper: String,
        /// The key it was asked for.
        registry: String,
        /// Its error text (one line, bounded) or what was wrong with its answer.
        detail: String,
    },
    /// The helper did not answer in time and was killed.
    #[error(
        "credential helper docker-credential-{helper} did not answer for {registry} within {seconds} s (a locked keyring waiting for a prompt?); it was stopped"
    )]
    HelperTimeout {
        /// The helper's name.
        helper: String,
        /// The key it was asked for.
        registry: String,
        /// The timeout.
        seconds: f64,
    },
    /// No config directory could be derived.
    #[error("cannot find the docker config directory: set DOCKER_CONFIG or HOME")]
    NoConfigDir,
}

/// Reads an environment variable; [`DockerConfig::load_with_env`] takes one so tests need not touch the
/// process environment.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<OsString>;

/// The docker config directory and its parsed `config.json`, plus the containers auth files.
///
/// `Default` is an empty configuration: every registry resolves to anonymous.
#[derive(Debug, Clone)]
pub struct DockerConfig {
    dir: PathBuf,
    config: ConfigFile,
    env_auths: Option<AuthMap>,
    containers: Vec<(PathBuf, ConfigFile)>,
    helper_path: Option<OsString>,
    helper_timeout: Duration,
}

/// The docker config directory: `explicit_dir`, else `WERF_DOCKER_CONFIG`, else `DOCKER_CONFIG`, else
/// `$HOME/.docker`. Empty variables count as unset.
pub fn config_dir(explicit_dir: Option<&Path>, env: EnvLookup<'_>) -> Result<PathBuf, ConfigError> {
    if let Some(dir) = explicit_dir {
        return Ok(dir.to_owned());
    }
    let var = |name: &str| env(name).filter(|value| !value.is_empty());
    if let Some(dir) = var("WERF_DOCKER_CONFIG").or_else(|| var("DOCKER_CONFIG")) {
        return Ok(PathBuf::from(dir));
    }
    var("HOME")
        .map(|home| PathBuf::from(home).join(".docker"))
        .ok_or(ConfigError::NoConfigDir)
}

impl Default for DockerConfig {
    fn default() -> Self {
        DockerConfig {
            dir: PathBuf::new(),
            config: ConfigFile::default(),
            env_auths: None,
            containers: Vec::new(),
            helper_path: None,
            helper_timeout: DEFAULT_HELPER_TIMEOUT,
        }
    }
}

impl DockerConfig {
    /// Loads from `explicit_dir`, else `WERF_DOCKER_CONFIG`, else `DOCKER_CONFIG`, else `~/.docker`.
    pub fn load(explicit_dir: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_with_env(explicit_dir, &|name| std::env::var_os(name))
    }

    /// [`DockerConfig::load`] reading variables through `env` (also `PATH`, used to find helpers, and
    /// `DOCKER_AUTH_CONFIG`, `REGISTRY_AUTH_FILE`, `XDG_RUNTIME_DIR`, `HOME`).
    pub fn load_with_env(
        explicit_dir: Option<&Path>,
        env: EnvLookup<'_>,
    ) -> Result<Self, ConfigError> {
        let dir = config_dir(explicit_dir, env)?;
        let config = read_file(&dir.join(CONFIG_FILE))?.unwrap_or_default();
        let env_auths = match env("DOCKER_AUTH_CONFIG").filter(|v| !v.is_empty()) {
            Some(text) => {
                let text = text.into_string().map_err(|_| ConfigError::Malformed {
                    origin: "the DOCKER_AUTH_CONFIG environment variable".into(),
                    detail: "it is not valid UTF-8".into(),
                })?;
                Some(AuthMap::parse_env(&text)?)
            }
            None => None,
        };
        let mut containers = Vec::new();
        if let Some(path) = containers_auth_file(env)
            && let Some(parsed) = read_file(&path)?
        {
            containers.push((path, parsed));
        }
        Ok(DockerConfig {
            dir,
            config,
            env_auths,
            containers,
            helper_path: env("PATH"),
            helper_timeout: DEFAULT_HELPER_TIMEOUT,
        })
    }

    /// The same configuration with another limit on how long a helper may take.
    pub fn with_helper_timeout(mut self, timeout: Duration) -> Self {
        self.helper_timeout = timeout;
        self
    }

    /// The config directory in use (where `config.json` is, or would be).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The credentials docker would use for `registry` (a host with optional port, or `docker.io`).
    ///
    /// A scheme or path on `registry` is ignored. See the module docs for the order of sources.
    pub fn credentials_for(
        &self,
        registry: &str,
    ) -> Result<(RegistryAuth, AuthSource), ConfigError> {
        let key = registry_key(registry);
        if key.is_empty() {
            return Err(ConfigError::Other(
                "no registry given: name a host such as ghcr.io or localhost:5000".into(),
            ));
        }
        if let Some(auth) = self.env_auths.as_ref().and_then(|auths| auths.get(&key)) {
            return Ok((auth, AuthSource::Environment));
        }
        let helper = self
            .config
            .cred_helpers
            .get(&key)
            .or(self.config.creds_store.as_ref());
        if let Some(name) = helper
            && let Some(auth) = self.run_helper(name, &key)?
        {
            return Ok((auth, AuthSource::Helper(name.clone())));
        }
        if let Some(auth) = self.config.auths.get(&key) {
            return Ok((auth, AuthSource::File(self.dir.join(CONFIG_FILE))));
        }
        let podman_key = containers_key(registry);
        for (path, file) in &self.containers {
            if let Some(name) = file.cred_helpers.get(&podman_key)
                && let Some(auth) = self.run_helper(name, &podman_key)?
            {
                return Ok((auth, AuthSource::Helper(name.clone())));
            }
            if let Some(auth) = file.auths.get(&key) {
                return Ok((auth, AuthSource::File(path.clone())));
            }
        }
        Ok((RegistryAuth::Anonymous, AuthSource::None))
    }

    fn run_helper(&self, name: &str, key: &str) -> Result<Option<RegistryAuth>, ConfigError> {
        let binary = helper::find_helper(name, self.helper_path.clone())?;
        helper::get(name, &binary, key, self.helper_timeout)
    }
}

/// The containers auth file podman and skopeo read first: `REGISTRY_AUTH_FILE`, else
/// `$XDG_RUNTIME_DIR/containers/auth.json`. Empty variables count as unset.
fn containers_auth_file(env: EnvLookup<'_>) -> Option<PathBuf> {
    let var = |name: &str| env(name).filter(|value| !value.is_empty());
    var("REGISTRY_AUTH_FILE").map(PathBuf::from).or_else(|| {
        var("XDG_RUNTIME_DIR").map(|dir| PathBuf::from(dir).join("containers").join("auth.json"))
    })
}

/// Reads and parses a config file; `None` when it does not exist.
fn read_file(path: &Path) -> Result<Option<ConfigFile>, ConfigError> {
    match std::fs::read_to_string(path) {
        Ok(text) => ConfigFile::parse(&text, &format!("the file {}", path.display())).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => Err(ConfigError::Malformed {
            origin: format!("the file {}", path.display()),
            detail: "it is not valid UTF-8".into(),
        }),
        Err(source) => Err(ConfigError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    use base64::Engine;

    fn b64(text: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(text)
    }

    fn basic(username: &str, password: &str) -> RegistryAuth {
        RegistryAuth::Basic {
            username: username.into(),
            password: Secret::new(password.into()),
        }
    }

    /// A docker config dir, a bin dir for fake helpers, and the variables a load sees.
    struct Fixture {
        temp: tempfile::TempDir,
        vars: HashMap<String, OsString>,
    }

    impl Fixture {
        fn new() -> Self {
            let temp = tempfile::tempdir().unwrap();
            fs::create_dir(temp.path().join("docker")).unwrap();
            fs::create_dir(temp.path().join("bin")).unwrap();
            let mut vars = HashMap::new();
            vars.insert("DOCKER_CONFIG".into(), temp.path().join("docker").into());
            vars.insert("PATH".into(), temp.path().join("bin").into());
            Fixture { temp, vars }
        }

        fn config(&self, json: &str) {
            fs::write(self.temp.path().join("docker/config.json"), json).unwrap();
        }

        /// A helper whose `get` runs `body` (a shell snippet) after saving its stdin to `<name>.in`.
        fn helper(&self, name: &str, body: &str) {
            let path = self
                .temp
                .path()
                .join(format!("bin/docker-credential-{name}"));
            let log = self.temp.path().join(format!("{name}.in"));
            fs::write(
                &path,
                format!("#!/bin/sh\ncat > '{}'\n{body}\n", log.display()),
            )
            .unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        }

        fn helper_input(&self, name: &str) -> String {
            fs::read_to_string(self.temp.path().join(format!("{name}.in"))).unwrap()
        }

        fn load(&self) -> Result<DockerConfig, ConfigError> {
            DockerConfig::load_with_env(None, &|name| self.vars.get(name).cloned())
        }

        fn resolve(&self, registry: &str) -> (RegistryAuth, AuthSource) {
            self.load().unwrap().credentials_for(registry).unwrap()
        }
    }

    const NOT_FOUND_BODY: &str = "echo 'credentials not found in native keychain'; exit 1";

    #[test]
    fn config_dir_order() {
        let vars = HashMap::from([
            ("WERF_DOCKER_CONFIG", "/werf"),
            ("DOCKER_CONFIG", "/docker"),
            ("HOME", "/home/u"),
        ]);
        let env = |keep: &[&str]| {
            let vars: HashMap<String, OsString> = vars
                .iter()
                .filter(|(k, _)| keep.contains(k))
                .map(|(k, v)| (k.to_string(), OsString::from(v)))
                .collect();
            move |name: &str| vars.get(name).cloned()
        };
        let all = env(&["WERF_DOCKER_CONFIG", "DOCKER_CONFIG", "HOME"]);
        assert_eq!(
            config_dir(Some(Path::new("/x")), &all).unwrap(),
            Path::new("/x")
        );
        assert_eq!(config_dir(None, &all).unwrap(), Path::new("/werf"));
        assert_eq!(
            config_dir(None, &env(&["DOCKER_CONFIG", "HOME"])).unwrap(),
            Path::new("/docker")
        );
        assert_eq!(
            config_dir(None, &env(&["HOME"])).unwrap(),
            Path::new("/home/u/.docker")
        );
        assert!(matches!(
            config_dir(None, &env(&[])),
            Err(ConfigError::NoConfigDir)
        ));
        let empty = |name: &str| (name == "DOCKER_CONFIG").then(OsString::new);
        assert!(matches!(
            config_dir(None, &empty),
            Err(ConfigError::NoConfigDir)
        ));
    }

    #[test]
    fn missing_config_is_anonymous() {
        let fixture = Fixture::new();
        assert_eq!(
            fixture.resolve("ghcr.io"),
            (RegistryAuth::Anonymous, AuthSource::None)
        );
        assert_eq!(
            DockerConfig::default().credentials_for("ghcr.io").unwrap(),
            (RegistryAuth::Anonymous, AuthSource::None)
        );
        assert!(
            fixture
                .load()
                .unwrap()
                .credentials_for("https:///")
                .is_err()
        );
    }

    #[test]
    fn precedence_env_then_helper_then_store_then_auths_then_containers() {
        let mut fixture = Fixture::new();
        fixture.helper(
            "one",
            r#"echo '{"ServerURL":"x","Username":"h1","Secret":"p1"}'"#,
        );
        fixture.helper(
            "store",
            r#"echo '{"ServerURL":"x","Username":"st","Secret":"ps"}'"#,
        );
        fixture.helper("none", NOT_FOUND_BODY);
        fixture.config(&format!(
            r#"{{"credHelpers":{{"env.test":"one","helper.test":"one","miss.test":"none"}},
                "credsStore":"store",
                "auths":{{"miss.test":{{"auth":"{}"}}}}}}"#,
            b64("file:pf")
        ));
        let containers = fixture.temp.path().join("auth.json");
        fs::write(
            &containers,
            format!(
                r#"{{"auths":{{"podman.test":{{"auth":"{}"}}}}}}"#,
                b64("pod:pp")
            ),
        )
        .unwrap();
        fixture
            .vars
            .insert("REGISTRY_AUTH_FILE".into(), containers.clone().into());
        fixture.vars.insert(
            "DOCKER_AUTH_CONFIG".into(),
            format!(
                r#"{{"auths":{{"env.test":{{"auth":"{}"}}}}}}"#,
                b64("env:pe")
            )
            .into(),
        );
        assert_eq!(
            fixture.resolve("env.test"),
            (basic("env", "pe"), AuthSource::Environment)
        );
        assert_eq!(
            fixture.resolve("helper.test"),
            (basic("h1", "p1"), AuthSource::Helper("one".into()))
        );
        assert_eq!(fixture.helper_input("one"), "helper.test");
        assert_eq!(
            fixture.resolve("other.test"),
            (basic("st", "ps"), AuthSource::Helper("store".into()))
        );
        let config_json = fixture.temp.path().join("docker/config.json");
        assert_eq!(
            fixture.resolve("miss.test"),
            (basic("file", "pf"), AuthSource::File(config_json))
        );

        // Without a credsStore, hosts config.json has nothing for fall through to the containers file.
        fixture.config(r#"{"credHelpers":{"podman.test":"none"}}"#);
        assert_eq!(
            fixture.resolve("podman.test"),
            (basic("pod", "pp"), AuthSource::File(containers))
        );
        assert_eq!(
            fixture.resolve("nothing.test"),
            (RegistryAuth::Anonymous, AuthSource::None)
        );
    }

    #[test]
    fn hub_key_is_sent_to_helpers() {
        let fixture = Fixture::new();
        fixture.helper(
            "hub",
            r#"echo '{"ServerURL":"x","Username":"h","Secret":"p"}'"#,
        );
        fixture.config(r#"{"credHelpers":{"https://index.docker.io/v1/":"hub"}}"#);
        for name in ["docker.io", "index.docker.io", "registry-1.docker.io"] {
            assert_eq!(fixture.resolve(name).1, AuthSource::Helper("hub".into()));
            assert_eq!(fixture.helper_input("hub"), INDEX_SERVER);
        }
    }

    #[test]
    fn containers_file_helpers_get_podman_keys() {
        let mut fixture = Fixture::new();
        fixture.helper(
            "pod",
            r#"echo '{"ServerURL":"x","Username":"h","Secret":"p"}'"#,
        );
        let runtime = fixture.temp.path().join("run");
        fs::create_dir_all(runtime.join("containers")).unwrap();
        fs::write(
            runtime.join("containers/auth.json"),
            r#"{"credHelpers":{"docker.io":"pod"},"credsStore":"ignored-by-podman"}"#,
        )
        .unwrap();
        fixture
            .vars
            .insert("XDG_RUNTIME_DIR".into(), runtime.into());
        assert_eq!(
            fixture.resolve("index.docker.io").1,
            AuthSource::Helper("pod".into())
        );
        assert_eq!(fixture.helper_input("pod"), "docker.io");
        assert_eq!(fixture.resolve("quay.io").1, AuthSource::None);
    }

    #[test]
    fn token_username_becomes_identity_token() {
        let fixture = Fixture::new();
        fixture.helper(
            "tok",
            r#"echo '{"ServerURL":"x","Username":"\u003ctoken\u003e","Secret":"refresh"}'"#,
        );
        fixture.config(r#"{"credsStore":"tok"}"#);
        assert_eq!(
            fixture.resolve("acr.test").0,
            RegistryAuth::IdentityToken(Secret::new("refresh".into()))
        );
    }

    #[test]
    fn helper_errors_are_errors() {
        let fixture = Fixture::new();
        fixture.helper("broken", "echo 'keyring is locked'; exit 1");
        fixture.config(r#"{"credHelpers":{"a.test":"broken","b.test":"absent"}}"#);
        let config = fixture.load().unwrap();
        let error = config.credentials_for("a.test").unwrap_err().to_string();
        assert_eq!(
            error,
            "credential helper docker-credential-broken failed for a.test: keyring is locked"
        );
        let error = config.credentials_for("b.test").unwrap_err();
        assert!(
            matches!(error, ConfigError::HelperNotFound { .. }),
            "{error}"
        );
    }

    #[test]
    fn helper_timeout_kills_a_hung_helper() {
        let fixture = Fixture::new();
        fixture.helper("slow", "exec sleep 30");
        fixture.config(r#"{"credsStore":"slow"}"#);
        let config = fixture
            .load()
            .unwrap()
            .with_helper_timeout(Duration::from_millis(300));
        let started = std::time::Instant::now();
        let error = config.credentials_for("a.test").unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        assert!(
            matches!(error, ConfigError::HelperTimeout { .. }),
            "{error}"
        );
        assert!(error.to_string().contains("within 0.3 s"), "{error}");
    }

    #[test]
    fn malformed_files_name_the_file() {
        let mut fixture = Fixture::new();
        fixture.config(r#"{"auths":{"a.test":{"auth":"canary-secret"}}"#);
        let error = fixture.load().unwrap_err().to_string();
        assert!(error.contains("docker/config.json"), "{error}");
        assert!(!error.contains("canary"), "{error}");

        fixture.config("{}");
        let containers = fixture.temp.path().join("auth.json");
        fs::write(&containers, b"\xff\xfe canary").unwrap();
        fixture
            .vars
            .insert("REGISTRY_AUTH_FILE".into(), containers.into());
        let error = fixture.load().unwrap_err().to_string();
        assert!(
            error.contains("auth.json") && error.contains("UTF-8"),
            "{error}"
        );

        fixture.vars.remove("REGISTRY_AUTH_FILE");
        fixture
            .vars
            .insert("DOCKER_AUTH_CONFIG".into(), "{\"auths\":canary".into());
        let error = fixture.load().unwrap_err().to_string();
        assert!(
            error.contains("DOCKER_AUTH_CONFIG") && !error.contains("canary"),
            "{error}"
        );
    }

    #[test]
    fn unreadable_config_is_an_error() {
        let fixture = Fixture::new();
        fs::create_dir(fixture.temp.path().join("docker/config.json")).unwrap();
        let error = fixture.load().unwrap_err();
        assert!(matches!(error, ConfigError::Read { .. }), "{error}");
    }

    #[test]
    fn secrets_never_reach_debug() {
        let fixture = Fixture::new();
        fixture.config(&format!(
            r#"{{"auths":{{"a.test":{{"auth":"{}"}}}}}}"#,
            b64("u:canary-pw")
        ));
        let config = fixture.load().unwrap();
        let resolved = config.credentials_for("a.test").unwrap();
        assert!(!format!("{config:?}{resolved:?}").contains("canary"));
    }
}
