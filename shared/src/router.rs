//! `docker-credential-regkit`: one helper for every registry, usable as docker's `credsStore`, in
//! `credHelpers` and in podman's `registries.conf` `credential-helpers`.
//!
//! Each key goes to one provider, inside this process:
//! 1. the first rule of regkit's config file whose anchored host pattern matches the key's host;
//! 2. else the built-in anchored patterns: ECR (every partition, ECR Public), ACR login servers, Google
//!    (`gcr.io`, `*.gcr.io`, `*-docker.pkg.dev`, `docker.*.rep.pkg.dev`);
//! 3. else the keyring, which is also the store.
//!
//! Rules live in regkit's config file (`$XDG_CONFIG_HOME/regkit/config.toml`, see
//! [`crate::ecr::identity`]); in a pattern `*` stands for any run of characters inside one DNS label, and a
//! port is part of the host:
//!
//! ```toml
//! [[router.rule]]
//! registry = "*.ci.example"   # docker-credential-env's variables
//! provider = "env"
//!
//! [[router.rule]]
//! registry = "registry.corp.example:5000"
//! helper = "pass"             # docker-credential-pass on PATH
//! ```
//!
//! `provider` is one of `keyring`, `env`, `ecr`, `acr`, `gcr`; the cloud providers still serve only their
//! own anchored hosts (a token never goes to a look-alike), so a rule can send a cloud host elsewhere but
//! never make a foreign host a cloud one. `store`, `erase` go to the provider that owns the key: the cloud
//! providers accept and ignore them with a note, the environment refuses them, an external helper is run
//! with the same action and input. `list` is the keyring's.
//!
//! A key no rule matches and the keyring does not hold costs one small file read and one keyring lookup,
//! never a network call: the cloud providers are asked only for their own hosts.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde::Deserialize;

use crate::cloudauth::CachedHelper;
use crate::dockerconfig::{DEFAULT_HELPER_TIMEOUT, RegistryAuth, hostname};
use crate::ecr::identity::{IdentityMap, glob_labels, parse_toml};
use crate::kubelet::{Expiring, Lease};
use crate::protocol::{Credentials, Error, Helper, IDENTITY_TOKEN_USERNAME};
use crate::secret::Secret;

/// The binary name (`credsStore: regkit`).
pub const BINARY: &str = "docker-credential-regkit";

/// Where a key goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// The OS keyring store.
    Keyring,
    /// `docker-credential-env`'s variables.
    Env,
    /// AWS ECR.
    Ecr,
    /// Azure Container Registry.
    Acr,
    /// Google Container Registry and Artifact Registry.
    Gcr,
    /// An external `docker-credential-<name>` on `PATH`.
    Helper(String),
}

/// One `[[router.rule]]`: a lower-case host pattern and its route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The anchored host pattern (`*` inside one label).
    pub pattern: String,
    /// Where matching keys go.
    pub route: Route,
}

/// The rules of regkit's config file, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    rules: Vec<Rule>,
}

#[derive(Deserialize, Default)]
struct ConfigFile {
    #[serde(default)]
    router: RouterSection,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RouterSection {
    #[serde(default)]
    rule: Vec<RuleFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    registry: String,
    provider: Option<String>,
    helper: Option<String>,
}

impl Rules {
    /// Loads the rules from regkit's config file; a missing file has none.
    pub fn load(env: &crate::ecr::Env) -> Result<Rules, Error> {
        Ok(IdentityMap::load_with(env, Rules::parse)
            .map_err(Error::other)?
            .unwrap_or_default())
    }

    /// Parses the text of a config file (other tables are ignored).
    pub fn parse(text: &str) -> Result<Rules, String> {
        let file: ConfigFile = parse_toml(text)?;
        let mut rules = Vec::new();
        for (index, entry) in file.router.rule.into_iter().enumerate() {
            let number = index + 1;
            let pattern = normalize(&entry.registry);
            if pattern.is_empty() || pattern.contains('/') {
                return Err(format!(
                    "router.rule {number}: registry must be a host pattern such as \"*.corp.example\" or \"host:5000\""
                ));
            }
            let route = match (entry.provider.as_deref().map(str::trim), entry.helper) {
                (Some("keyring"), None) => Route::Keyring,
                (Some("env"), None) => Route::Env,
                (Some("ecr"), None) => Route::Ecr,
                (Some("acr"), None) => Route::Acr,
                (Some("gcr"), None) => Route::Gcr,
                (None, Some(name)) if !name.trim().is_empty() && !name.contains(['/', '\\']) => {
                    Route::Helper(name.trim().to_owned())
                }
                (Some(other), None) => {
                    return Err(format!(
                        "router.rule {number} ({pattern}): unknown provider {other:?}; use keyring, env, ecr, acr or gcr, or helper = \"<name>\" for docker-credential-<name>"
                    ));
                }
                (None, Some(_)) => {
                    return Err(format!(
                        "router.rule {number} ({pattern}): helper must be the part after docker-credential-, without a path"
                    ));
                }
                _ => {
                    return Err(format!(
                        "router.rule {number} ({pattern}): set exactly one of provider or helper"
                    ));
                }
            };
            rules.push(Rule { pattern, route });
        }
        Ok(Rules { rules })
    }

    /// Where `key` goes: the first matching rule, else the built-in cloud patterns, else the keyring.
    pub fn route(&self, key: &str) -> Route {
        let host = normalize(hostname(key));
        if let Some(rule) = self
            .rules
            .iter()
            .find(|rule| glob_labels(&rule.pattern, &host))
        {
            return rule.route.clone();
        }
        if crate::ecr::EcrRegistry::parse(key).is_some() {
            Route::Ecr
        } else if crate::acr::registry_host(key).is_some() {
            Route::Acr
        } else if crate::gcr::registry_host(key).is_some() {
            Route::Gcr
        } else {
            Route::Keyring
        }
    }
}

/// A host or pattern as matched: lower-case, without scheme, trailing `/` or trailing dot.
fn normalize(text: &str) -> String {
    let text = text.trim().to_ascii_lowercase();
    let text = text
        .split_once("://")
        .map_or(text.as_str(), |(_, rest)| rest);
    let text = text.trim_end_matches('/');
    text.strip_suffix('.').unwrap_or(text).to_owned()
}

/// The providers a router sends keys to.
pub struct Providers {
    /// The store: keys no rule or cloud pattern claims, and `list`.
    pub keyring: Box<dyn Expiring>,
    /// The environment provider.
    pub env: Box<dyn Expiring>,
    /// AWS ECR.
    pub ecr: Box<dyn Expiring>,
    /// Azure Container Registry.
    pub acr: Box<dyn Expiring>,
    /// Google registries.
    pub gcr: Box<dyn Expiring>,
}

impl Providers {
    /// The real providers over the process environment. Construction does no I/O.
    pub fn from_process() -> Providers {
        let cloud = crate::cloudauth::Env::from_process;
        Providers {
            keyring: Box::new(crate::keyring::KeyringStore::new()),
            env: Box::new(crate::envhelper::EnvHelper::from_process()),
            ecr: Box::new(crate::ecr::helper::EcrHelper::new(
                crate::ecr::Env::from_process(),
            )),
            acr: Box::new(CachedHelper::new(crate::acr::helper::AcrProvider::new(
                cloud(),
            ))),
            gcr: Box::new(CachedHelper::new(crate::gcr::helper::GcrProvider::new(
                cloud(),
            ))),
        }
    }
}

/// The routing helper.
pub struct Router {
    rules: Result<Rules, String>,
    providers: Providers,
    path: Option<OsString>,
}

impl Router {
    /// The router of this process: rules from regkit's config file, the real providers, `PATH` for
    /// external helpers. A broken config file fails every operation with its one-line explanation.
    pub fn from_process() -> Router {
        Router {
            rules: Rules::load(&crate::ecr::Env::from_process()).map_err(|e| e.to_string()),
            providers: Providers::from_process(),
            path: std::env::var_os("PATH"),
        }
    }

    /// A router over given rules and providers; external helpers are looked up on `path`.
    pub fn new(rules: Rules, providers: Providers, path: Option<OsString>) -> Router {
        Router {
            rules: Ok(rules),
            providers,
            path,
        }
    }

    /// Where `key` goes.
    pub fn route(&self, key: &str) -> Result<Route, Error> {
        self.rules
            .as_ref()
            .map(|rules| rules.route(key))
            .map_err(Error::other)
    }

    fn provider(&self, route: &Route) -> Option<&dyn Expiring> {
        let providers = &self.providers;
        Some(match route {
            Route::Keyring => providers.keyring.as_ref(),
            Route::Env => providers.env.as_ref(),
            Route::Ecr => providers.ecr.as_ref(),
            Route::Acr => providers.acr.as_ref(),
            Route::Gcr => providers.gcr.as_ref(),
            Route::Helper(_) => return None,
        })
    }

    fn external(&self, name: &str) -> Result<PathBuf, Error> {
        crate::dockerconfig::helper::find_helper(name, self.path.clone()).map_err(|_| {
            Error::other(format!(
                "regkit's router sends this registry to docker-credential-{name}, which is not on PATH; install it or change the router.rule in regkit's config file"
            ))
        })
    }

    fn external_get(&self, name: &str, key: &str) -> Result<Credentials, Error> {
        let binary = self.external(name)?;
        let auth = crate::dockerconfig::helper::get(name, &binary, key, DEFAULT_HELPER_TIMEOUT)
            .map_err(Error::other)?;
        let (username, secret) = match auth {
            Some(RegistryAuth::Basic { username, password }) => (username, password),
            Some(RegistryAuth::IdentityToken(token)) => (IDENTITY_TOKEN_USERNAME.to_owned(), token),
            Some(RegistryAuth::RegistryToken(_) | RegistryAuth::Anonymous) | None => {
                return Err(Error::NotFound);
            }
        };
        Ok(Credentials {
            server_url: key.to_owned(),
            username,
            secret,
        })
    }

    /// Runs `docker-credential-<name> <action>` with `input` on stdin and relays its answer. Docker runs
    /// `store` and `erase` without a time limit too: a helper may ask for a passphrase.
    fn external_write(
        &self,
        name: &str,
        action: &str,
        input: &Secret<String>,
    ) -> Result<(), Error> {
        let binary = self.external(name)?;
        let failed = |detail: String| {
            Error::other(format!(
                "docker-credential-{name} {action} failed: {detail}"
            ))
        };
        let mut child = Command::new(&binary)
            .arg(action)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| failed(format!("cannot start it: {e}")))?;
        if let Some(mut stdin) = child.stdin.take() {
            // A helper that exits without reading closes the pipe; its exit status tells the rest.
            let _ = stdin.write_all(input.expose().as_bytes());
        }
        let output = child
            .wait_with_output()
            .map_err(|e| failed(format!("cannot wait for it: {e}")))?;
        if output.status.success() {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&output.stdout);
        let line = text.lines().next().unwrap_or("").trim();
        Err(failed(if line.is_empty() {
            output.status.to_string()
        } else {
            line.chars().take(200).collect()
        }))
    }
}

impl Expiring for Router {
    fn lease(&self, server_url: &str) -> Result<Lease, Error> {
        match self.route(server_url)? {
            Route::Helper(name) => self
                .external_get(&name, server_url)
                .map(|credentials| Lease {
                    credentials,
                    remaining_secs: None,
                }),
            route => match self.provider(&route) {
                Some(provider) => provider.lease(server_url),
                None => Err(Error::NotFound),
            },
        }
    }
}

impl Helper for Router {
    fn get(&self, server_url: &str) -> Result<Credentials, Error> {
        match self.route(server_url)? {
            Route::Helper(name) => self.external_get(&name, server_url),
            route => match self.provider(&route) {
                Some(provider) => provider.get(server_url),
                None => Err(Error::NotFound),
            },
        }
    }

    fn store(&self, credentials: Credentials) -> Result<(), Error> {
        match self.route(&credentials.server_url)? {
            Route::Helper(name) => {
                let input = Secret::new(credentials.to_json()?);
                self.external_write(&name, "store", &input)
            }
            route => match self.provider(&route) {
                Some(provider) => provider.store(credentials),
                None => Err(Error::NotFound),
            },
        }
    }

    fn erase(&self, server_url: &str) -> Result<(), Error> {
        match self.route(server_url)? {
            Route::Helper(name) => {
                self.external_write(&name, "erase", &Secret::new(server_url.to_owned()))
            }
            route => match self.provider(&route) {
                Some(provider) => provider.erase(server_url),
                None => Err(Error::NotFound),
            },
        }
    }

    fn list(&self) -> Result<BTreeMap<String, String>, Error> {
        self.providers.keyring.list()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;

    /// Records the keys it was asked for and answers with its own name as the username.
    struct Named(&'static str, Rc<RefCell<Vec<String>>>);

    impl Helper for Named {
        fn get(&self, server_url: &str) -> Result<Credentials, Error> {
            self.1
                .borrow_mut()
                .push(format!("{} get {server_url}", self.0));
            Ok(Credentials {
                server_url: server_url.into(),
                username: self.0.into(),
                secret: Secret::new("s".into()),
            })
        }
        fn store(&self, credentials: Credentials) -> Result<(), Error> {
            self.1
                .borrow_mut()
                .push(format!("{} store {}", self.0, credentials.server_url));
            Ok(())
        }
        fn erase(&self, server_url: &str) -> Result<(), Error> {
            self.1
                .borrow_mut()
                .push(format!("{} erase {server_url}", self.0));
            Ok(())
        }
        fn list(&self) -> Result<BTreeMap<String, String>, Error> {
            Ok(BTreeMap::from([(self.0.into(), "u".into())]))
        }
    }

    impl Expiring for Named {}

    fn router(config: &str) -> (Router, Rc<RefCell<Vec<String>>>) {
        let log = Rc::default();
        let named = |name| Box::new(Named(name, Rc::clone(&log))) as Box<dyn Expiring>;
        let providers = Providers {
            keyring: named("keyring"),
            env: named("env"),
            ecr: named("ecr"),
            acr: named("acr"),
            gcr: named("gcr"),
        };
        (
            Router::new(Rules::parse(config).unwrap(), providers, None),
            log,
        )
    }

    #[test]
    fn keys_go_to_their_provider() {
        let (router, log) = router(
            r#"
[[ecr.identity]]
registry = "x"
profile = "p"

[[router.rule]]
registry = "*.ci.example"
provider = "env"

[[router.rule]]
registry = "https://111111111111.dkr.ecr.us-east-1.amazonaws.com/"
provider = "keyring"
"#,
        );
        for (key, provider) in [
            ("127.0.0.1:5000", "keyring"),
            ("https://index.docker.io/v1/", "keyring"),
            ("build.ci.example", "env"),
            ("https://BUILD.CI.EXAMPLE/v2/", "env"),
            ("a.build.ci.example", "keyring"),
            ("ci.example.evil", "keyring"),
            ("222222222222.dkr.ecr.eu-west-1.amazonaws.com", "ecr"),
            ("111111111111.dkr.ecr.us-east-1.amazonaws.com", "keyring"),
            ("public.ecr.aws", "ecr"),
            ("myreg.azurecr.io", "acr"),
            ("myreg.azurecr.io.evil.example", "keyring"),
            ("europe-west1-docker.pkg.dev", "gcr"),
            ("gcr.io", "gcr"),
        ] {
            assert_eq!(router.get(key).unwrap().username, provider, "{key}");
        }
        router
            .store(Credentials {
                server_url: "myreg.azurecr.io".into(),
                username: "u".into(),
                secret: Secret::new("s".into()),
            })
            .unwrap();
        router.erase("127.0.0.1:5000").unwrap();
        assert_eq!(
            router.list().unwrap(),
            BTreeMap::from([("keyring".into(), "u".into())])
        );
        let log = log.borrow();
        assert_eq!(
            log[log.len() - 2..],
            ["acr store myreg.azurecr.io", "keyring erase 127.0.0.1:5000"]
        );
    }

    #[test]
    fn bad_rules_say_what_is_wrong() {
        for (text, expected) in [
            ("[[router.rule]]\nregistry = \"a\"\n", "exactly one of"),
            (
                "[[router.rule]]\nregistry = \"a\"\nprovider = \"env\"\nhelper = \"x\"\n",
                "exactly one of",
            ),
            (
                "[[router.rule]]\nregistry = \"a\"\nprovider = \"vault\"\n",
                "unknown provider \"vault\"",
            ),
            (
                "[[router.rule]]\nregistry = \"a\"\nhelper = \"../x\"\n",
                "without a path",
            ),
            (
                "[[router.rule]]\nregistry = \"a/b\"\nprovider = \"env\"\n",
                "host pattern",
            ),
            (
                "[[router.rule]]\nregistry = \"a\"\nprovder = \"env\"\n",
                "provder",
            ),
            ("[router]\nrules = 1\n", "rules"),
        ] {
            let error = Rules::parse(text).unwrap_err();
            assert!(error.contains(expected), "{text}: {error}");
        }
        assert_eq!(Rules::parse("").unwrap(), Rules::default());
    }

    #[test]
    fn a_missing_external_helper_is_explained() {
        let (router, _) =
            router("[[router.rule]]\nregistry = \"h.example\"\nhelper = \"nosuch-regkit\"\n");
        let error = router.get("h.example").unwrap_err().to_string();
        assert!(error.contains("docker-credential-nosuch-regkit"), "{error}");
        assert!(error.contains("not on PATH"), "{error}");
    }
}
