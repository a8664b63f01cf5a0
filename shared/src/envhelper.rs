//! `docker-credential-env`: read-only credentials from the environment, for CI.
//!
//! `get <key>` strips the key's scheme and path, then answers from the first of:
//! 1. `DOCKER_AUTH_CONFIG` (`{"auths":{…}}`, parsed and matched exactly as the docker CLI does, see
//!    [`crate::dockerconfig::AuthMap`]); its `registrytoken` entries cannot travel over the helper protocol
//!    and are passed over;
//! 2. the variable pairs `DOCKER_<labels>_USR` and `DOCKER_<labels>_PSW` (the convention of
//!    isometry/docker-credential-env and Jenkins `credentials()` bindings): the host's labels joined by
//!    `_`, with every character a variable name cannot hold (`-`, `:`) as `_`. With a port,
//!    `DOCKER_<labels>_<port>_…` is tried before `DOCKER_<labels>_…`. Then the leftmost label is dropped,
//!    one at a time, down to the catch-all `DOCKER__USR`/`DOCKER__PSW`; an IP address is one label. Each
//!    name is tried as written, then upper-cased. Both variables must be set and the username non-empty.
//!
//! A username of `<token>` makes the password an identity token. A miss is the not-found answer. `store`
//! fails unless `DOCKER_CREDENTIAL_ENV_IGNORE_STORE=1` (or `true`) makes it a no-op: a login that seems to
//! work and is not kept would surprise later. `erase` succeeds with a note on stderr, as the cloud helpers'
//! does: nothing is stored, so there is nothing to remove (and podman 4.3 crashes on `podman logout` when a
//! helper's erase fails). `list` shows the keys of `DOCKER_AUTH_CONFIG` exactly and one key per complete
//! `_USR`/`_PSW` pair, with usernames only. A variable name cannot tell `-` from `.`: the key joins the
//! labels with `.` (`DOCKER_my_reg_example_com` lists as `my.reg.example.com`, which `get` resolves back
//! to the same pair, whether the registry is `my-reg.example.com` or `my.reg.example.com`); a trailing
//! number is a port (`reg.example.com:5000`, `127.0.0.1:5000`), since no host name ends in a numeric label.
//!
//! No file is read: this runs once per registry operation and must cost no more than starting a process.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::dockerconfig::{AuthMap, RegistryAuth, hostname};
use crate::protocol::{Credentials, Error, Helper, IDENTITY_TOKEN_USERNAME};

/// The variable that makes `store` succeed without doing anything.
pub const IGNORE_STORE_VAR: &str = "DOCKER_CREDENTIAL_ENV_IGNORE_STORE";

const READ_ONLY: &str = "docker-credential-env is read-only: it serves DOCKER_AUTH_CONFIG and DOCKER_<host>_USR/_PSW variables; set DOCKER_CREDENTIAL_ENV_IGNORE_STORE=1 to make store do nothing";

/// The environment helper. [`EnvHelper::from_process`] for the binary, [`EnvHelper::from_vars`] for tests.
#[derive(Debug)]
pub struct EnvHelper {
    /// `None` reads the process environment on demand.
    vars: Option<BTreeMap<String, String>>,
}

impl EnvHelper {
    /// Reads the process environment.
    pub fn from_process() -> Self {
        EnvHelper { vars: None }
    }

    /// Reads only the given variables.
    pub fn from_vars<K: Into<String>, V: Into<String>>(
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        EnvHelper {
            vars: Some(
                vars.into_iter()
                    .map(|(k, v)| (k.into(), v.into()))
                    .collect(),
            ),
        }
    }

    fn var(&self, name: &str) -> Option<String> {
        match &self.vars {
            Some(vars) => vars.get(name).cloned(),
            None => std::env::var_os(name)?.into_string().ok(),
        }
    }

    fn names(&self) -> Vec<String> {
        match &self.vars {
            Some(vars) => vars.keys().cloned().collect(),
            None => std::env::vars_os()
                .filter_map(|(name, _)| name.into_string().ok())
                .collect(),
        }
    }

    fn auth_config(&self) -> Result<Option<AuthMap>, Error> {
        match self
            .var("DOCKER_AUTH_CONFIG")
            .filter(|text| !text.trim().is_empty())
        {
            Some(text) => AuthMap::parse_env(&text).map(Some).map_err(Error::other),
            None => Ok(None),
        }
    }

    /// The `(username, password)` of the first complete `_USR`/`_PSW` pair for `host`.
    fn pair(&self, host: &str) -> Option<(String, String)> {
        candidates(host).into_iter().find_map(|stem| {
            let upper = stem.to_ascii_uppercase();
            let names = if upper == stem {
                vec![stem]
            } else {
                vec![stem, upper]
            };
            names.into_iter().find_map(|stem| {
                let username = self.var(&format!("{stem}_USR")).filter(|u| !u.is_empty())?;
                let password = self.var(&format!("{stem}_PSW"))?;
                Some((username, password))
            })
        })
    }
}

/// The variable stems (`DOCKER_…`, without `_USR`/`_PSW`) for `host` (`name[:port]`), in lookup order.
fn candidates(host: &str) -> Vec<String> {
    let (name, port) = split_port(host);
    let name = name.trim_start_matches('[').trim_end_matches(']');
    let labels: Vec<String> = if name.parse::<IpAddr>().is_ok() {
        vec![var_safe(name)]
    } else {
        name.split('.').map(var_safe).collect()
    };
    let mut stems = Vec::with_capacity(2 * labels.len() + 1);
    for start in 0..labels.len() {
        let joined = labels[start..].join("_");
        if let Some(port) = port {
            stems.push(format!("DOCKER_{joined}_{port}"));
        }
        stems.push(format!("DOCKER_{joined}"));
    }
    stems.push("DOCKER_".to_owned());
    stems
}

/// Splits `name:port`, `[v6]:port` and bare names; a bare IPv6 address has no port.
fn split_port(host: &str) -> (&str, Option<&str>) {
    let numeric = |port: &str| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit());
    if let Some(end) = host.rfind(']') {
        let port = host[end + 1..].strip_prefix(':').filter(|p| numeric(p));
        return (&host[..=end], port);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if numeric(port) && !name.contains(':') => (name, Some(port)),
        _ => (host, None),
    }
}

fn var_safe(label: &str) -> String {
    label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The `list` key of a variable stem (`reg_example_com_5000` → `reg.example.com:5000`): the labels joined
/// by `.`, a last numeric label as the port when the labels before it are a host name (not all numeric) or
/// an IPv4 address (four numbers). Host names are case-insensitive: the key is lower-case.
fn listed_key(stem: &str) -> String {
    let stem = stem.to_ascii_lowercase();
    let labels: Vec<&str> = stem.split('_').collect();
    let numeric = |label: &&str| !label.is_empty() && label.bytes().all(|b| b.is_ascii_digit());
    if let Some((port, host)) = labels.split_last()
        && !host.is_empty()
        && numeric(port)
        && (!host.iter().all(numeric) || host.len() == 4)
    {
        return format!("{}:{port}", host.join("."));
    }
    labels.join(".")
}

impl Helper for EnvHelper {
    fn get(&self, server_url: &str) -> Result<Credentials, Error> {
        let host = hostname(server_url);
        if host.is_empty() {
            return Err(Error::NotFound);
        }
        let answer = |username: String, secret: String| Credentials {
            server_url: server_url.to_owned(),
            username,
            secret: secret.into(),
        };
        if let Some(auths) = self.auth_config()? {
            match auths.get(host) {
                Some(RegistryAuth::Basic { username, password }) => {
                    return Ok(answer(username, password.into_inner()));
                }
                Some(RegistryAuth::IdentityToken(token)) => {
                    return Ok(answer(
                        IDENTITY_TOKEN_USERNAME.to_owned(),
                        token.into_inner(),
                    ));
                }
                Some(RegistryAuth::RegistryToken(_) | RegistryAuth::Anonymous) | None => {}
            }
        }
        self.pair(host)
            .map(|(username, password)| answer(username, password))
            .ok_or(Error::NotFound)
    }

    fn store(&self, _credentials: Credentials) -> Result<(), Error> {
        match self.var(IGNORE_STORE_VAR).as_deref() {
            Some("1" | "true") => Ok(()),
            _ => Err(Error::other(READ_ONLY)),
        }
    }

    fn erase(&self, server_url: &str) -> Result<(), Error> {
        eprintln!(
            "docker-credential-env: nothing to erase for {server_url}: credentials come from the environment of each run"
        );
        Ok(())
    }

    fn list(&self) -> Result<BTreeMap<String, String>, Error> {
        let mut keys = self
            .auth_config()?
            .map(|auths| auths.usernames())
            .unwrap_or_default();
        for name in self.names() {
            let Some(stem) = name
                .strip_prefix("DOCKER_")
                .and_then(|rest| rest.strip_suffix("_USR"))
                .filter(|stem| !stem.is_empty())
            else {
                continue;
            };
            let Some(username) = self.var(&name).filter(|u| !u.is_empty()) else {
                continue;
            };
            if self.var(&format!("DOCKER_{stem}_PSW")).is_some() {
                keys.entry(listed_key(stem)).or_insert(username);
            }
        }
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn helper(vars: &[(&str, &str)]) -> EnvHelper {
        EnvHelper::from_vars(vars.iter().copied())
    }

    fn get(helper: &EnvHelper, key: &str) -> Result<(String, String), Error> {
        helper.get(key).map(|c| {
            assert_eq!(c.server_url, key);
            (c.username, c.secret.into_inner())
        })
    }

    fn ok(username: &str, secret: &str) -> Result<(String, String), Error> {
        Ok((username.into(), secret.into()))
    }

    #[test]
    fn candidate_order() {
        assert_eq!(
            candidates("a.example-x.com:5000"),
            [
                "DOCKER_a_example_x_com_5000",
                "DOCKER_a_example_x_com",
                "DOCKER_example_x_com_5000",
                "DOCKER_example_x_com",
                "DOCKER_com_5000",
                "DOCKER_com",
                "DOCKER_",
            ]
        );
        assert_eq!(
            candidates("127.0.0.1:5000"),
            ["DOCKER_127_0_0_1_5000", "DOCKER_127_0_0_1", "DOCKER_"]
        );
        assert_eq!(
            candidates("[::1]:5000"),
            ["DOCKER___1_5000", "DOCKER___1", "DOCKER_"]
        );
        assert_eq!(candidates("::1"), ["DOCKER___1", "DOCKER_"]);
        assert_eq!(
            candidates("ghcr.io"),
            ["DOCKER_ghcr_io", "DOCKER_io", "DOCKER_"]
        );
        assert_eq!(split_port("h:abc"), ("h:abc", None));
    }

    #[test]
    fn usr_psw_lookup() {
        let h = helper(&[
            ("DOCKER_ghcr_io_USR", "octo"),
            ("DOCKER_ghcr_io_PSW", "pat"),
            ("DOCKER_127_0_0_1_5000_USR", "port"),
            ("DOCKER_127_0_0_1_5000_PSW", "pp"),
            ("DOCKER_127_0_0_1_USR", "noport"),
            ("DOCKER_127_0_0_1_PSW", "np"),
            ("DOCKER_example_com_USR", "parent"),
            ("DOCKER_example_com_PSW", "par"),
            ("DOCKER_QUAY_IO_USR", "upper"),
            ("DOCKER_QUAY_IO_PSW", "up"),
            ("DOCKER_half_test_USR", "only-user"),
            ("DOCKER_tok_test_USR", "<token>"),
            ("DOCKER_tok_test_PSW", "refresh"),
        ]);
        assert_eq!(get(&h, "ghcr.io"), ok("octo", "pat"));
        assert_eq!(get(&h, "https://ghcr.io/v2/"), ok("octo", "pat"));
        assert_eq!(get(&h, "127.0.0.1:5000"), ok("port", "pp"));
        assert_eq!(get(&h, "127.0.0.1:6000"), ok("noport", "np"));
        assert_eq!(get(&h, "127.0.0.1"), ok("noport", "np"));
        assert_eq!(get(&h, "reg.example.com"), ok("parent", "par"));
        assert_eq!(get(&h, "a.b.example.com:443"), ok("parent", "par"));
        assert_eq!(get(&h, "quay.io"), ok("upper", "up"));
        assert_eq!(get(&h, "tok.test"), ok("<token>", "refresh"));
        assert_eq!(get(&h, "half.test"), Err(Error::NotFound));
        assert_eq!(get(&h, "127.0.0.2:5000"), Err(Error::NotFound));
        assert_eq!(get(&h, "example.org"), Err(Error::NotFound));
        assert_eq!(get(&h, "https://"), Err(Error::NotFound));
    }

    #[test]
    fn catch_all_pair() {
        let h = helper(&[("DOCKER__USR", "ci"), ("DOCKER__PSW", "all")]);
        assert_eq!(get(&h, "anything.test:1"), ok("ci", "all"));
    }

    #[test]
    fn docker_auth_config_comes_first_and_is_normalised() {
        let h = helper(&[
            (
                "DOCKER_AUTH_CONFIG",
                r#"{"auths":{"https://index.docker.io/v1/":{"auth":"aHViOmh1YnB3"},"ghcr.io":{"auth":"ZW52OmVudnB3"},"t.test":{"identitytoken":"r"},"r.test":{"registrytoken":"bearer"}}}"#,
            ),
            ("DOCKER_ghcr_io_USR", "octo"),
            ("DOCKER_ghcr_io_PSW", "pat"),
            ("DOCKER_r_test_USR", "var"),
            ("DOCKER_r_test_PSW", "vp"),
        ]);
        assert_eq!(get(&h, "ghcr.io"), ok("env", "envpw"));
        for hub in [
            "docker.io",
            "https://index.docker.io/v1/",
            "registry-1.docker.io",
        ] {
            assert_eq!(get(&h, hub), ok("hub", "hubpw"));
        }
        assert_eq!(get(&h, "t.test"), ok("<token>", "r"));
        assert_eq!(get(&h, "r.test"), ok("var", "vp"));
        assert_eq!(get(&h, "none.test"), Err(Error::NotFound));
    }

    #[test]
    fn malformed_docker_auth_config_is_a_clear_error() {
        let h = helper(&[("DOCKER_AUTH_CONFIG", r#"{"auths":{"a":{"auth":"canary"}}}"#)]);
        let Err(Error::Other(message)) = h.get("a") else {
            panic!("expected an error");
        };
        assert!(
            message.contains("DOCKER_AUTH_CONFIG") && !message.contains("canary"),
            "{message}"
        );
        assert!(h.list().is_err());
    }

    #[test]
    fn store_is_refused_unless_ignored_and_erase_has_nothing_to_do() {
        let credentials = Credentials {
            server_url: "h".into(),
            username: "u".into(),
            secret: String::from("s").into(),
        };
        let h = helper(&[]);
        assert_eq!(h.store(credentials.clone()), Err(Error::other(READ_ONLY)));
        assert_eq!(h.erase("h"), Ok(()));
        let h = helper(&[(IGNORE_STORE_VAR, "0")]);
        assert!(h.store(credentials.clone()).is_err());
        for value in ["1", "true"] {
            let h = helper(&[(IGNORE_STORE_VAR, value)]);
            assert_eq!(h.store(credentials.clone()), Ok(()));
            assert_eq!(h.erase("h"), Ok(()));
        }
    }

    #[test]
    fn list_shows_usernames_only() {
        let h = helper(&[
            (
                "DOCKER_AUTH_CONFIG",
                r#"{"auths":{"ghcr.io":{"auth":"ZW52OmVudnB3"},"m.test":{}}}"#,
            ),
            ("DOCKER_ghcr_io_USR", "shadowed"),
            ("DOCKER_ghcr_io_PSW", "x"),
            ("DOCKER_127_0_0_1_5000_USR", "port"),
            ("DOCKER_127_0_0_1_5000_PSW", "secret-pp"),
            ("DOCKER_reg_example_com_5000_USR", "named-port"),
            ("DOCKER_reg_example_com_5000_PSW", "secret-np"),
            ("DOCKER_MY_REG_EXAMPLE_COM_USR", "dashed"),
            ("DOCKER_MY_REG_EXAMPLE_COM_PSW", "secret-d"),
            ("DOCKER_10_0_0_1_USR", "ip"),
            ("DOCKER_10_0_0_1_PSW", "secret-ip"),
            ("DOCKER_half_USR", "half"),
            ("DOCKER__USR", "catch"),
            ("DOCKER__PSW", "all"),
            ("DOCKER_HOST", "unix:///x"),
        ]);
        let list = h.list().unwrap();
        assert_eq!(
            list,
            BTreeMap::from([
                ("ghcr.io".to_owned(), "env".to_owned()),
                ("127.0.0.1:5000".to_owned(), "port".to_owned()),
                ("reg.example.com:5000".to_owned(), "named-port".to_owned()),
                ("my.reg.example.com".to_owned(), "dashed".to_owned()),
                ("10.0.0.1".to_owned(), "ip".to_owned()),
            ])
        );
        // Every listed key resolves back to the pair it came from, and so does the registry it was made
        // for when `-` became `_`.
        assert_eq!(get(&h, "127.0.0.1:5000"), ok("port", "secret-pp"));
        assert_eq!(
            get(&h, "reg.example.com:5000"),
            ok("named-port", "secret-np")
        );
        assert_eq!(get(&h, "my.reg.example.com"), ok("dashed", "secret-d"));
        assert_eq!(get(&h, "my-reg.example.com"), ok("dashed", "secret-d"));
        assert_eq!(get(&h, "10.0.0.1"), ok("ip", "secret-ip"));
        assert_eq!(helper(&[]).list(), Ok(BTreeMap::new()));
    }
}
