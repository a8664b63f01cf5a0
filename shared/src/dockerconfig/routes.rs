//! Routing registries to credential helpers, as `regkit configure` installs it: the `credHelpers` entries
//! for a set of registries, the `config.json` edit, podman's `registries.conf.d` drop-in, and the stored
//! credentials that some client would use instead of the helper.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::{
    AuthMap, CONTAINERS_HUB_KEY, ConfigDocument, ConfigError, EnvLookup, INDEX_SERVER, NewFileMode,
    containers_auth_file, hostname, is_docker_hub, registry_key, write_atomically,
};

/// The drop-in's file name: late enough to override distribution defaults, early enough for local files.
const DROP_IN: &str = "50-regkit.conf";

/// c/image's name for "the auth files", kept in the list so `podman login` entries still resolve.
const AUTH_FILE_HELPER: &str = "containers-auth.json";

/// Keys of an `auths` entry that hold secrets; redacted in the texts shown for a dry run.
const SECRET_FIELDS: [&str; 4] = ["auth", "password", "identitytoken", "registrytoken"];

/// The helper a host gets when none is chosen and it is not an ECR host.
const FALLBACK_HELPER: &str = "keyring";

/// A failure to plan or install routes. One line, naming the file; never a value from a document.
#[derive(Debug, thiserror::Error)]
pub enum RoutesError {
    /// A registry argument has no host part.
    #[error(
        "--registry {registry:?} names no host: give host[:port], e.g. ghcr.io or localhost:5000"
    )]
    NoHost {
        /// The argument as given.
        registry: String,
    },
    /// A helper name that could not be a `docker-credential-<name>` binary on `PATH`.
    #[error(
        "--helper {helper:?} is not a helper name: give the part after docker-credential-, e.g. keyring"
    )]
    HelperName {
        /// The name, without a `docker-credential-` prefix.
        helper: String,
    },
    /// `config.json` or `DOCKER_AUTH_CONFIG` cannot be read or is malformed.
    #[error(transparent)]
    Config(ConfigError),
    /// The `auths` of `config.json` are not docker's.
    #[error("malformed auths in {}; fix or remove it", path.display())]
    MalformedAuths {
        /// The config file.
        path: PathBuf,
    },
    /// The containers auth file is not a docker-style auth file.
    #[error("malformed containers auth file {}; fix or remove it", path.display())]
    MalformedContainersFile {
        /// The file.
        path: PathBuf,
    },
    /// No `registries.conf.d` directory can be derived.
    #[error("cannot find the registries.conf.d directory: set HOME or --podman-dir")]
    NoPodmanDir,
    /// The existing drop-in cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    ReadDropIn {
        /// The drop-in.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file regkit writes cannot be written.
    #[error(transparent)]
    Write(ConfigError),
}

/// One `credHelpers` entry to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The registry host, lower-cased.
    pub host: String,
    /// The `credHelpers` key.
    pub key: String,
    /// The helper's short name (`docker-credential-<helper>`).
    pub helper: String,
}

/// The `credHelpers` entries for `registries`: `chosen` for all of them, else each host's default helper
/// (`ecr-login` for ECR hosts, `keyring` for the rest). A key named twice is routed once, the first time.
pub fn routes(registries: &[String], chosen: Option<&str>) -> Result<Vec<Route>, RoutesError> {
    let mut routes = Vec::new();
    for registry in registries {
        let host = hostname(registry).to_ascii_lowercase();
        if host.is_empty() {
            return Err(RoutesError::NoHost {
                registry: registry.clone(),
            });
        }
        let helper = chosen.unwrap_or_else(|| default_helper(&host)).to_string();
        // docker asks helpers for Hub under its legacy URL; podman and skopeo, reading the same file, under
        // docker.io.
        let keys = if is_docker_hub(&host) {
            vec![INDEX_SERVER.to_string(), CONTAINERS_HUB_KEY.to_string()]
        } else {
            vec![registry_key(&host)]
        };
        for key in keys {
            if !routes.iter().any(|route: &Route| route.key == key) {
                routes.push(Route {
                    host: host.clone(),
                    key,
                    helper: helper.clone(),
                });
            }
        }
    }
    Ok(routes)
}

fn default_helper(host: &str) -> &'static str {
    match crate::implementation::detect(host, None) {
        Ok(detection) if detection.name == "ecr" => "ecr-login",
        _ => FALLBACK_HELPER,
    }
}

/// The helpers `routes` name, each once in order of first use, for podman's list; `chosen` (or
/// `keyring`) when there are none.
pub fn helpers<'a>(routes: &'a [Route], chosen: Option<&'a str>) -> Vec<&'a str> {
    let mut helpers: Vec<&str> = Vec::new();
    for route in routes {
        if !helpers.contains(&route.helper.as_str()) {
            helpers.push(&route.helper);
        }
    }
    if helpers.is_empty() {
        helpers.push(chosen.unwrap_or(FALLBACK_HELPER));
    }
    helpers
}

/// The helper's short name (a `docker-credential-` prefix is accepted and dropped).
pub fn helper_name(helper: &str) -> Result<&str, RoutesError> {
    let helper = helper.strip_prefix("docker-credential-").unwrap_or(helper);
    let valid = !helper.is_empty()
        && helper
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if valid {
        Ok(helper)
    } else {
        Err(RoutesError::HelperName {
            helper: helper.to_owned(),
        })
    }
}

/// `config.json` with routes (and optionally `credsStore`) applied but not yet saved. No `Debug`: the
/// document holds stored passwords.
pub struct ConfigEdit {
    before: Map<String, Value>,
    document: ConfigDocument,
}

impl ConfigEdit {
    /// Loads `config.json` from the docker config directory `dir` and applies `routes` and `creds_store`.
    pub fn new(
        dir: &Path,
        routes: &[Route],
        creds_store: Option<&str>,
    ) -> Result<Self, RoutesError> {
        let mut document = ConfigDocument::load(dir).map_err(RoutesError::Config)?;
        let before = document.root().clone();
        for route in routes {
            document.set_cred_helper(&route.key, &route.helper);
        }
        if creds_store.is_some() {
            document.set_creds_store(creds_store);
        }
        Ok(ConfigEdit { before, document })
    }

    /// The file the edit is saved to.
    pub fn path(&self) -> &Path {
        self.document.path()
    }

    /// Whether saving would change the file.
    pub fn changes(&self) -> bool {
        *self.document.root() != self.before
    }

    /// The document before and after the edit as the file would hold it, with every stored secret
    /// replaced, so the difference can be shown on a terminal.
    pub fn redacted_texts(&self) -> (String, String) {
        (
            pretty(&redacted(&self.before)),
            pretty(&redacted(self.document.root())),
        )
    }

    /// Writes the edited file atomically.
    pub fn save(&self) -> Result<(), RoutesError> {
        self.document.save().map_err(RoutesError::Write)
    }
}

/// The document with every secret-bearing `auths` field replaced.
fn redacted(root: &Map<String, Value>) -> Map<String, Value> {
    let mut root = root.clone();
    if let Some(Value::Object(auths)) = root.get_mut("auths") {
        for entry in auths.values_mut() {
            if let Value::Object(fields) = entry {
                for (name, value) in fields.iter_mut() {
                    if SECRET_FIELDS.contains(&name.as_str()) && value.is_string() {
                        *value = Value::String("<redacted>".into());
                    }
                }
            }
        }
    }
    root
}

/// A missing file and an empty document both show as no lines, so creating a file diffs as all-added.
fn pretty(root: &Map<String, Value>) -> String {
    if root.is_empty() {
        return String::new();
    }
    let mut text = serde_json::to_string_pretty(root).unwrap_or_default();
    text.push('\n');
    text
}

/// Where a stored credential for a routed host sits, which some client reads before the helper.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShadowSource {
    /// An `auths` entry of this `config.json`: tools that read `auths` directly use it, and regkit does
    /// when the helper has no entry.
    ConfigAuths(PathBuf),
    /// `DOCKER_AUTH_CONFIG`: docker (28.3 and later) and regkit read it first.
    Environment,
    /// This containers auth file: podman and skopeo read it before docker's config.
    ContainersFile(PathBuf),
}

/// A routed host whose helper some client would not ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shadow {
    /// The host.
    pub host: String,
    /// The helper it is routed to.
    pub helper: String,
    /// Where the credential that shadows it is stored.
    pub source: ShadowSource,
}

/// The credentials stored elsewhere for the hosts of `routes`, per host in the order clients would see
/// them. `dir` is the docker config directory; `env` supplies `DOCKER_AUTH_CONFIG` and the variables that
/// locate the containers auth file.
pub fn shadows(
    routes: &[Route],
    dir: &Path,
    env: EnvLookup<'_>,
) -> Result<Vec<Shadow>, RoutesError> {
    let document = ConfigDocument::load(dir).map_err(RoutesError::Config)?;
    let config_auths = auths_of(&Value::Object(document.root().clone())).ok_or_else(|| {
        RoutesError::MalformedAuths {
            path: document.path().to_owned(),
        }
    })?;
    let env_auths = match env("DOCKER_AUTH_CONFIG")
        .and_then(|text| text.into_string().ok())
        .filter(|text| !text.trim().is_empty())
    {
        Some(text) => Some(AuthMap::parse_env(&text).map_err(RoutesError::Config)?),
        None => None,
    };
    let containers = match containers_auth_file(env) {
        Some(path) => match fs::read_to_string(&path) {
            Ok(text) => {
                let auths = serde_json::from_str::<Value>(&text)
                    .ok()
                    .and_then(|value| auths_of(&value))
                    .ok_or_else(|| RoutesError::MalformedContainersFile { path: path.clone() })?;
                Some((path, auths))
            }
            Err(_) => None,
        },
        None => None,
    };
    let mut hosts: Vec<(&str, &str)> = routes
        .iter()
        .map(|route| (route.host.as_str(), route.helper.as_str()))
        .collect();
    hosts.dedup();
    let mut shadows = Vec::new();
    for (host, helper) in hosts {
        let mut shadow = |source| {
            shadows.push(Shadow {
                host: host.to_owned(),
                helper: helper.to_owned(),
                source,
            })
        };
        if config_auths.get(host).is_some() {
            shadow(ShadowSource::ConfigAuths(document.path().to_owned()));
        }
        if env_auths
            .as_ref()
            .is_some_and(|auths| auths.get(host).is_some())
        {
            shadow(ShadowSource::Environment);
        }
        if let Some((path, auths)) = &containers
            && auths.get(host).is_some()
        {
            shadow(ShadowSource::ContainersFile(path.clone()));
        }
    }
    Ok(shadows)
}

/// The `auths` of a parsed docker-style document; `None` when it is not one.
fn auths_of(document: &Value) -> Option<AuthMap> {
    let Some(auths) = document.get("auths") else {
        return Some(AuthMap::default());
    };
    let text = serde_json::json!({ "auths": auths }).to_string();
    AuthMap::parse_env(&text).ok()
}

/// c/image reads `~/.config/containers/registries.conf.d` for every user, root included, next to the
/// system directory, and does not consult `XDG_CONFIG_HOME` for it.
pub fn default_podman_dir(env: EnvLookup<'_>) -> Result<PathBuf, RoutesError> {
    env("HOME")
        .filter(|home| !home.is_empty())
        .map(|home| {
            PathBuf::from(home)
                .join(".config")
                .join("containers")
                .join("registries.conf.d")
        })
        .ok_or(RoutesError::NoPodmanDir)
}

/// podman's `registries.conf.d` drop-in naming a list of helpers, next to what the file holds now.
#[derive(Debug, Clone)]
pub struct DropIn {
    path: PathBuf,
    current: String,
    helper_list: String,
    content: String,
}

impl DropIn {
    /// The drop-in in the `registries.conf.d` directory `dir` that makes podman, skopeo and buildah ask
    /// `helpers`, then the auth files.
    pub fn new(dir: &Path, helpers: &[&str]) -> Result<Self, RoutesError> {
        let path = dir.join(DROP_IN);
        let helper_list = helpers
            .iter()
            .copied()
            .chain([AUTH_FILE_HELPER])
            .map(|name| format!("{name:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        let content = format!(
            "# Written by `regkit configure --podman`. podman, skopeo and buildah ask these credential helpers in\n# order; {AUTH_FILE_HELPER} keeps the entries `podman login` stored in auth files.\ncredential-helpers = [{helper_list}]\n"
        );
        let current = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => return Err(RoutesError::ReadDropIn { path, source }),
        };
        Ok(DropIn {
            path,
            current,
            helper_list,
            content,
        })
    }

    /// The drop-in's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What the file holds now (empty when it does not exist).
    pub fn current(&self) -> &str {
        &self.current
    }

    /// What the file will hold.
    pub fn content(&self) -> &str {
        &self.content
    }

    /// The TOML array's items: quoted helper names, comma-separated.
    pub fn helper_list(&self) -> &str {
        &self.helper_list
    }

    /// Whether saving would change the file.
    pub fn changes(&self) -> bool {
        self.current != self.content
    }

    /// Writes the drop-in whole or not at all, so podman never reads half a file; other users' podman
    /// reads it too, so a new file is world-readable.
    pub fn save(&self) -> Result<(), RoutesError> {
        write_atomically(&self.path, self.content.as_bytes(), NewFileMode::Shared)
            .map_err(RoutesError::Write)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_gets_both_keys_and_ecr_hosts_get_ecr_login() {
        let registries = [
            "docker.io",
            "https://index.docker.io/v1/",
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com",
            "Ghcr.io",
        ]
        .map(String::from);
        let routes = routes(&registries, None).unwrap();
        let pairs: Vec<(&str, &str)> = routes
            .iter()
            .map(|route| (route.key.as_str(), route.helper.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                (INDEX_SERVER, "keyring"),
                ("docker.io", "keyring"),
                ("123456789012.dkr.ecr.eu-west-1.amazonaws.com", "ecr-login"),
                ("ghcr.io", "keyring"),
            ]
        );
    }

    #[test]
    fn podmans_list_names_each_helper_once() {
        let registries = [
            "ghcr.io",
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com",
            "quay.io",
        ]
        .map(String::from);
        let routes = routes(&registries, None).unwrap();
        assert_eq!(helpers(&routes, None), ["keyring", "ecr-login"]);
        assert_eq!(helpers(&[], Some("env")), ["env"]);
        assert_eq!(helpers(&[], None), ["keyring"]);
    }

    #[test]
    fn helper_names_are_validated() {
        assert_eq!(helper_name("keyring").ok(), Some("keyring"));
        assert_eq!(
            helper_name("docker-credential-ecr-login").ok(),
            Some("ecr-login")
        );
        for bad in ["", "../x", "a b", "docker-credential-"] {
            assert!(helper_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn shadows_are_found_where_clients_look_first() {
        let temp = tempfile::tempdir().unwrap();
        let entry = r#"{"auths":{"ghcr.io":{"auth":"dTpw"}}}"#;
        std::fs::write(temp.path().join("config.json"), entry).unwrap();
        let containers = temp.path().join("auth.json");
        std::fs::write(&containers, entry).unwrap();
        let env = |name: &str| match name {
            "DOCKER_AUTH_CONFIG" => Some(entry.into()),
            "REGISTRY_AUTH_FILE" => Some(containers.clone().into()),
            _ => None,
        };
        let routes = routes(&["ghcr.io".into(), "quay.io".into()], Some("env")).unwrap();
        let sources: Vec<ShadowSource> = shadows(&routes, temp.path(), &env)
            .unwrap()
            .into_iter()
            .inspect(|shadow| {
                assert_eq!(
                    (shadow.host.as_str(), shadow.helper.as_str()),
                    ("ghcr.io", "env")
                )
            })
            .map(|shadow| shadow.source)
            .collect();
        assert_eq!(
            sources,
            [
                ShadowSource::ConfigAuths(temp.path().join("config.json")),
                ShadowSource::Environment,
                ShadowSource::ContainersFile(containers.clone()),
            ]
        );
        std::fs::write(&containers, "[").unwrap();
        let error = shadows(&routes, temp.path(), &env)
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            error,
            Some(format!(
                "malformed containers auth file {}; fix or remove it",
                containers.display()
            ))
        );
    }

    #[test]
    fn drop_in_lists_the_helpers_then_the_auth_files() {
        let temp = tempfile::tempdir().unwrap();
        let drop_in = DropIn::new(temp.path(), &["keyring", "ecr-login"]).unwrap();
        assert_eq!(drop_in.current(), "");
        assert!(drop_in.changes());
        assert_eq!(
            drop_in.helper_list(),
            r#""keyring", "ecr-login", "containers-auth.json""#
        );
        drop_in.save().unwrap();
        let again = DropIn::new(temp.path(), &["keyring", "ecr-login"]).unwrap();
        assert_eq!(again.current(), drop_in.content());
        assert!(!again.changes());
    }

    #[test]
    fn secrets_are_redacted_from_diffs() {
        let root: Map<String, Value> = serde_json::from_str(
            r#"{"auths":{"a.test":{"auth":"canary","email":"e"}},"psFormat":"canary-kept"}"#,
        )
        .unwrap();
        let text = pretty(&redacted(&root));
        assert!(!text.contains("\"canary\""), "{text}");
        assert!(
            text.contains("<redacted>") && text.contains("canary-kept"),
            "{text}"
        );
    }
}
