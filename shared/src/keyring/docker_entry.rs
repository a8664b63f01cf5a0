//! How Docker's own helpers shape their entries in the Windows Credential Manager and the macOS Keychain, as
//! plain functions. The platform backends only carry these values through the OS API, so everything that
//! decides interoperability (which entries `list` keeps, which attributes a URL maps to, which key `list`
//! rebuilds) is tested on Linux too, where neither API exists.

// Each platform's backend uses its half; the tests use both.
#![cfg_attr(not(test), allow(dead_code))]

use std::collections::BTreeMap;

use super::{KeyringError, LABEL};

/// The attribute keyword `docker-credential-wincred` marks its credentials with; the value is [`LABEL`]
/// as UTF-8 bytes.
pub(super) const WINCRED_LABEL_KEYWORD: &str = "label";

/// One Windows generic credential as `CredEnumerateW` returns it, reduced to what `list` needs.
pub(super) struct GenericCredential {
    pub target: String,
    pub username: String,
    /// Whether one of its attributes is Docker's label ([`is_docker_label`]).
    pub labelled: bool,
}

/// True for the attribute `docker-credential-wincred` writes: keyword `label`, value `Docker Credentials`.
pub(super) fn is_docker_label(keyword: &str, value: &[u8]) -> bool {
    keyword == WINCRED_LABEL_KEYWORD && value == LABEL.as_bytes()
}

/// `list` on Windows: target → username of the labelled credentials only. The Credential Manager also
/// holds Git's, Office's and Windows' own generic credentials, which are not docker's to list.
pub(super) fn labelled(
    credentials: impl IntoIterator<Item = GenericCredential>,
) -> BTreeMap<String, String> {
    credentials
        .into_iter()
        .filter(|credential| credential.labelled)
        .map(|credential| (credential.target, credential.username))
        .collect()
}

/// The macOS Keychain protocol codes (`kSecAttrProtocol`) `docker-credential-osxkeychain` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Protocol {
    /// `htps`: every scheme but `http`, and no scheme.
    Https,
    /// `http`.
    Http,
}

impl Protocol {
    /// The four-letter code stored in the item (the value of `kSecAttrProtocolHTTPS`/`…HTTP`).
    pub(super) fn code(self) -> &'static str {
        match self {
            Protocol::Https => "htps",
            Protocol::Http => "http",
        }
    }

    /// The protocol a stored code stands for, as `docker-credential-osxkeychain`'s `list` reads it: only
    /// `htps` is HTTPS.
    pub(super) fn from_code(code: &str) -> Self {
        if code == "htps" {
            Protocol::Https
        } else {
            Protocol::Http
        }
    }
}

/// The Keychain attributes one server URL maps to, as `docker-credential-osxkeychain` splits it: an
/// Internet password is found by server + protocol + port + path, never by the URL as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct InternetServer {
    /// The host only (no brackets around an IPv6 address).
    pub server: String,
    pub protocol: Protocol,
    /// Present only when the URL names one.
    pub port: Option<u16>,
    /// The URL path; empty means the attribute is left out.
    pub path: String,
}

impl InternetServer {
    /// Splits a server key (`host`, `host:port`, `https://host/path`…) the way Docker's helper does: a
    /// missing scheme is HTTPS, query and fragment are dropped, user info is ignored.
    pub(super) fn parse(server_url: &str) -> Result<Self, KeyringError> {
        let (scheme, rest) = server_url
            .split_once("://")
            .unwrap_or(("https", server_url));
        let protocol = if scheme.eq_ignore_ascii_case("http") {
            Protocol::Http
        } else {
            Protocol::Https
        };
        let rest = rest.split(['?', '#']).next().unwrap_or_default();
        let (authority, path) = rest.find('/').map_or((rest, ""), |at| rest.split_at(at));
        let host_port = authority
            .rsplit_once('@')
            .map_or(authority, |(_, host)| host);
        let invalid = || KeyringError::InvalidServerUrl(server_url.to_owned());
        let (server, port) = match host_port.strip_prefix('[') {
            Some(bracketed) => {
                let (host, after) = bracketed.split_once(']').ok_or_else(invalid)?;
                match after {
                    "" => (host, None),
                    _ => (host, Some(after.strip_prefix(':').ok_or_else(invalid)?)),
                }
            }
            None => match host_port.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (host_port, None),
            },
        };
        if server.is_empty() {
            return Err(invalid());
        }
        let port = match port {
            None | Some("") => None,
            Some(port) => Some(port.parse::<u16>().map_err(|_| invalid())?),
        };
        Ok(InternetServer {
            server: server.to_owned(),
            protocol,
            port,
            path: path.to_owned(),
        })
    }

    /// The key `list` reports for a stored item: `scheme://server[:port]path`, as Docker's helper rebuilds
    /// it (so `reg.test` stored comes back as `https://reg.test`).
    pub(super) fn url(&self) -> String {
        let scheme = match self.protocol {
            Protocol::Https => "https",
            Protocol::Http => "http",
        };
        let host = if self.server.contains(':') {
            format!("[{}]", self.server)
        } else {
            self.server.clone()
        };
        match self.port {
            Some(port) => format!("{scheme}://{host}:{port}{}", self.path),
            None => format!("{scheme}://{host}{}", self.path),
        }
    }
}

/// The distinct Keychain queries for `get`'s lookup keys, in order: `reg.test` and `https://reg.test` are
/// one item there. Keys that are not URLs are skipped: nothing can be stored under them.
pub(super) fn internet_lookups(keys: &[String]) -> Vec<InternetServer> {
    let mut lookups: Vec<InternetServer> = Vec::new();
    for server in keys
        .iter()
        .filter_map(|key| InternetServer::parse(key).ok())
    {
        if !lookups.contains(&server) {
            lookups.push(server);
        }
    }
    lookups
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyring::lookup_keys;

    fn credential(target: &str, labelled: bool) -> GenericCredential {
        GenericCredential {
            target: target.to_owned(),
            username: format!("user-of-{target}"),
            labelled,
        }
    }

    #[test]
    fn list_keeps_only_dockers_labelled_credentials() {
        let listed = labelled([
            credential("https://index.docker.io/v1/", true),
            credential("git:https://github.com", false),
            credential("reg.test:5000", true),
            credential("MicrosoftAccount:user=x", false),
        ]);
        assert_eq!(
            listed,
            BTreeMap::from([
                (
                    "https://index.docker.io/v1/".to_owned(),
                    "user-of-https://index.docker.io/v1/".to_owned()
                ),
                (
                    "reg.test:5000".to_owned(),
                    "user-of-reg.test:5000".to_owned()
                ),
            ])
        );
    }

    #[test]
    fn only_the_exact_label_attribute_counts() {
        assert!(is_docker_label("label", b"Docker Credentials"));
        for (keyword, value) in [
            ("label", &b"docker credentials"[..]),
            ("Label", b"Docker Credentials"),
            ("label", b"Docker Credentials\0"),
            ("comment", b"Docker Credentials"),
            ("label", b""),
        ] {
            assert!(!is_docker_label(keyword, value), "{keyword} {value:?}");
        }
    }

    #[test]
    fn urls_split_into_keychain_attributes_like_osxkeychain() {
        let cases = [
            ("reg.test", "reg.test", Protocol::Https, None, ""),
            (
                "https://index.docker.io/v1/",
                "index.docker.io",
                Protocol::Https,
                None,
                "/v1/",
            ),
            (
                "http://reg.test:5000/",
                "reg.test",
                Protocol::Http,
                Some(5000),
                "/",
            ),
            ("HTTP://reg.test", "reg.test", Protocol::Http, None, ""),
            (
                "reg.test:443/team?x=1#f",
                "reg.test",
                Protocol::Https,
                Some(443),
                "/team",
            ),
            ("[::1]:5000", "::1", Protocol::Https, Some(5000), ""),
            (
                "https://u:p@reg.test/",
                "reg.test",
                Protocol::Https,
                None,
                "/",
            ),
            ("oci://reg.test", "reg.test", Protocol::Https, None, ""),
        ];
        for (url, server, protocol, port, path) in cases {
            let parsed = InternetServer::parse(url).unwrap();
            assert_eq!(
                parsed,
                InternetServer {
                    server: server.to_owned(),
                    protocol,
                    port,
                    path: path.to_owned()
                },
                "{url}"
            );
        }
    }

    #[test]
    fn urls_without_a_host_or_with_a_bad_port_are_refused_in_one_line() {
        for url in [
            "",
            "https://",
            "https:///v2/",
            ":5000",
            "reg.test:99999",
            "reg.test:x",
            "[::1",
            "[::1]x",
        ] {
            let error = InternetServer::parse(url).unwrap_err();
            let text = error.to_string();
            assert!(matches!(error, KeyringError::InvalidServerUrl(_)), "{url}");
            assert_eq!(text.lines().count(), 1, "{text}");
        }
    }

    #[test]
    fn list_rebuilds_the_url_osxkeychain_reports() {
        for (stored, listed) in [
            ("reg.test", "https://reg.test"),
            ("http://reg.test:5000/", "http://reg.test:5000/"),
            ("https://index.docker.io/v1/", "https://index.docker.io/v1/"),
            ("[::1]:5000", "https://[::1]:5000"),
        ] {
            assert_eq!(InternetServer::parse(stored).unwrap().url(), listed);
        }
        assert_eq!(Protocol::from_code("htps"), Protocol::Https);
        assert_eq!(Protocol::from_code("http"), Protocol::Http);
        for protocol in [Protocol::Https, Protocol::Http] {
            assert_eq!(Protocol::from_code(protocol.code()), protocol);
        }
    }

    #[test]
    fn get_queries_each_keychain_item_once_in_lookup_order() {
        let lookups = internet_lookups(&lookup_keys("https://registry-1.docker.io/v2/"));
        let servers: Vec<(&str, &str)> = lookups
            .iter()
            .map(|lookup| (lookup.server.as_str(), lookup.path.as_str()))
            .collect();
        assert_eq!(
            servers,
            [
                ("registry-1.docker.io", "/v2/"),
                ("registry-1.docker.io", ""),
                ("index.docker.io", "/v1/"),
                ("docker.io", ""),
                ("index.docker.io", ""),
            ]
        );
        assert_eq!(internet_lookups(&lookup_keys("reg.test")).len(), 1);
    }
}
