//! The OS keyring store behind `docker-credential-keyring`, one backend per platform, each writing entries
//! exactly the way Docker's own helper for that platform does, so either helper reads, lists and erases
//! what the other stored:
//!
//! - Linux: the freedesktop Secret Service (gnome-keyring, KeePassXC, KWallet…) over the D-Bus session bus,
//!   in pure Rust, as Debian's `docker-credential-secretservice` (0.6.x) writes: schema
//!   `io.docker.Credentials`, attributes `label`, `server`, `username`, `docker_cli`, item label = the
//!   server key, content type `text/plain`, default collection. Secrets cross the bus inside an encrypted
//!   (DH) session unless the user opts in to a plain session with [`PLAIN_SESSION_ENV`]`=1`.
//! - Windows: the Credential Manager, as `docker-credential-wincred` writes (`keyring/wincred.rs`).
//! - macOS: the login Keychain, as `docker-credential-osxkeychain` writes (`keyring/osxkeychain.rs`).
//!
//! Every backend provides the same four operations (`get` over [`lookup_keys`], `store`, `erase`, `list`);
//! [`KeyringStore`] is the protocol [`Helper`] over whichever one the target has. Other platforms fail every
//! operation with a clear message instead of pretending to work.

use std::collections::BTreeMap;

use crate::protocol::{Credentials, Error, Helper};

#[cfg(target_os = "linux")]
#[path = "keyring/secret_service.rs"]
mod backend;
#[cfg(windows)]
#[path = "keyring/wincred.rs"]
#[allow(unsafe_code)]
mod backend;
#[cfg(target_os = "macos")]
#[path = "keyring/osxkeychain.rs"]
#[allow(unsafe_code)]
mod backend;
#[cfg(target_os = "linux")]
#[path = "keyring/dbus.rs"]
mod dbus;
#[cfg(target_os = "linux")]
#[path = "keyring/dh.rs"]
mod dh;
#[cfg(any(windows, target_os = "macos", test))]
#[path = "keyring/docker_entry.rs"]
mod docker_entry;

/// The label Docker's helpers put on every entry they write, on every platform.
const LABEL: &str = "Docker Credentials";

/// Set to `1` to allow a plain (unencrypted) Secret Service session: it saves the Diffie-Hellman
/// exchange (mostly the service's own, about 2 ms for gnome-keyring), but the secret crosses the session bus
/// in clear. When the service refuses a plain session, the store still falls back to an encrypted one.
pub const PLAIN_SESSION_ENV: &str = "REGKIT_KEYRING_PLAIN_SESSION";

/// The keys under which docker, BuildKit and containers/image store Docker Hub credentials: one registry.
const DOCKER_HUB_KEYS: [&str; 4] = [
    "https://index.docker.io/v1/",
    "docker.io",
    "index.docker.io",
    "registry-1.docker.io",
];

/// Why a keyring operation failed. Each text is one line that says what to do, never a secret.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    /// No session bus address and the default socket is absent (SSH, CI, containers).
    #[error(
        "docker-credential-keyring: no D-Bus session bus (DBUS_SESSION_BUS_ADDRESS is unset): run inside a desktop session or `dbus-run-session`, and unlock the keyring with `gnome-keyring-daemon --unlock`"
    )]
    NoSessionBus,
    /// A bus address is set but nothing answers there.
    #[error(
        "docker-credential-keyring: cannot connect to the D-Bus session bus ({0}): check DBUS_SESSION_BUS_ADDRESS, or run inside a desktop session or `dbus-run-session`"
    )]
    BusUnreachable(String),
    /// The bus works but no Secret Service provider owns or can activate `org.freedesktop.secrets`.
    #[error(
        "docker-credential-keyring: no Secret Service provider on the D-Bus session bus (org.freedesktop.secrets): start one, e.g. `gnome-keyring-daemon --start --components=secrets`, or enable KeePassXC's Secret Service integration"
    )]
    NoProvider,
    /// The collection is locked and the unlock prompt was dismissed (always, when headless).
    #[error(
        "docker-credential-keyring: the keyring is locked and was not unlocked: unlock it (log in to the desktop session, or `printf '%s' PASSWORD | gnome-keyring-daemon --unlock`)"
    )]
    Locked,
    /// The service has no collection behind the `default` alias, so there is nowhere to store.
    #[error(
        "docker-credential-keyring: the Secret Service has no default keyring: create and unlock one (log in to the desktop session, or `printf '%s' PASSWORD | gnome-keyring-daemon --unlock`)"
    )]
    NoDefaultCollection,
    /// The service refused the encrypted session and the user did not allow a plain one.
    #[error(
        "docker-credential-keyring: the Secret Service refused an encrypted session: set REGKIT_KEYRING_PLAIN_SESSION=1 to allow secrets to cross the session bus unencrypted"
    )]
    EncryptionRefused,
    /// A stored secret is not UTF-8, so the protocol cannot carry it.
    #[error(
        "docker-credential-keyring: the secret stored for {0} is not valid UTF-8: store it again with `docker login`"
    )]
    NotUtf8(String),
    /// Any other Secret Service failure.
    #[error("docker-credential-keyring: cannot {action}: {reason}")]
    Service {
        /// What the store was doing (`search the keyring`, `create the item for h`…).
        action: String,
        /// The service's or bus's own message.
        reason: String,
    },
    /// A server key from which no registry host can be read (Keychain entries are stored by host).
    #[error(
        "docker-credential-keyring: cannot store or look up {0:?}: it names no registry host (expected host[:port] or https://host[:port][/path])"
    )]
    InvalidServerUrl(String),
    /// This platform has no keyring backend.
    #[error(
        "docker-credential-keyring: not supported on this platform (only Linux's Secret Service, the Windows Credential Manager and the macOS Keychain are): store credentials with another docker credential helper"
    )]
    Unsupported,
}

impl From<KeyringError> for Error {
    fn from(error: KeyringError) -> Self {
        Error::other(error)
    }
}

/// Which Secret Service session `get` and `store` open. `erase` and `list` move no secret and open none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionMode {
    /// DH-encrypted only; an error when the service refuses it.
    Encrypted,
    /// Plain first (cheaper), encrypted when plain is refused. Secrets cross the bus in clear.
    PlainAllowed,
}

/// The docker credential store in the OS keyring. Construction does no I/O: the bus is reached only when an
/// operation runs, once per operation.
#[derive(Debug, Clone)]
pub struct KeyringStore {
    mode: SessionMode,
}

impl KeyringStore {
    /// A store whose session mode comes from the environment: [`SessionMode::PlainAllowed`] when
    /// [`PLAIN_SESSION_ENV`] is `1`, otherwise [`SessionMode::Encrypted`].
    pub fn new() -> Self {
        let plain = std::env::var_os(PLAIN_SESSION_ENV).is_some_and(|value| value == "1");
        KeyringStore::with_mode(if plain {
            SessionMode::PlainAllowed
        } else {
            SessionMode::Encrypted
        })
    }

    /// A store with an explicit session mode.
    pub fn with_mode(mode: SessionMode) -> Self {
        KeyringStore { mode }
    }
}

impl Default for KeyringStore {
    fn default() -> Self {
        KeyringStore::new()
    }
}

impl Helper for KeyringStore {
    fn get(&self, server_url: &str) -> Result<Credentials, Error> {
        let (username, secret) =
            backend::get(self.mode, &lookup_keys(server_url))?.ok_or(Error::NotFound)?;
        Ok(Credentials {
            server_url: server_url.to_owned(),
            username,
            secret,
        })
    }

    fn store(&self, credentials: Credentials) -> Result<(), Error> {
        Ok(backend::store(self.mode, &credentials)?)
    }

    fn erase(&self, server_url: &str) -> Result<(), Error> {
        Ok(backend::erase(server_url)?)
    }

    fn list(&self) -> Result<BTreeMap<String, String>, Error> {
        Ok(backend::list()?)
    }
}

/// The keys `get` tries, in order: the exact key, then the bare host, `https://host`, and for Docker Hub
/// every alias of it. Only a registry root (no path, `/`, `/v1/`, `/v2/`) falls back: a longer path names a
/// different secret (docker's `https://index.docker.io/v1/access-token` must never answer with the password).
pub fn lookup_keys(key: &str) -> Vec<String> {
    let mut keys = vec![key.to_owned()];
    let without_scheme = key.split_once("://").map_or(key, |(_, rest)| rest);
    let (host, path) = without_scheme
        .find('/')
        .map_or((without_scheme, ""), |slash| without_scheme.split_at(slash));
    if host.is_empty() || !matches!(path.trim_end_matches('/'), "" | "/v1" | "/v2") {
        return keys;
    }
    let mut push = |candidate: String| {
        if !keys.contains(&candidate) {
            keys.push(candidate);
        }
    };
    push(host.to_owned());
    push(format!("https://{host}"));
    if DOCKER_HUB_KEYS[1..]
        .iter()
        .any(|alias| alias.eq_ignore_ascii_case(host))
    {
        for alias in DOCKER_HUB_KEYS {
            push(alias.to_owned());
        }
    }
    keys
}

#[cfg(not(any(target_os = "linux", windows, target_os = "macos")))]
mod backend {
    //! No keyring backend on this platform: every operation says so.

    use std::collections::BTreeMap;

    use super::{KeyringError, SessionMode};
    use crate::protocol::Credentials;
    use crate::secret::Secret;

    pub(super) fn get(
        _: SessionMode,
        _: &[String],
    ) -> Result<Option<(String, Secret<String>)>, KeyringError> {
        Err(KeyringError::Unsupported)
    }

    pub(super) fn store(_: SessionMode, _: &Credentials) -> Result<(), KeyringError> {
        Err(KeyringError::Unsupported)
    }

    pub(super) fn erase(_: &str) -> Result<(), KeyringError> {
        Err(KeyringError::Unsupported)
    }

    pub(super) fn list() -> Result<BTreeMap<String, String>, KeyringError> {
        Err(KeyringError::Unsupported)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_key_comes_first_then_host_forms() {
        assert_eq!(
            lookup_keys("http://reg.test:5000/"),
            [
                "http://reg.test:5000/",
                "reg.test:5000",
                "https://reg.test:5000"
            ]
        );
        assert_eq!(lookup_keys("reg.test"), ["reg.test", "https://reg.test"]);
        assert_eq!(lookup_keys("https://h"), ["https://h", "h"]);
        assert_eq!(
            lookup_keys("[::1]:5000"),
            ["[::1]:5000", "https://[::1]:5000"]
        );
    }

    #[test]
    fn docker_hub_aliases_are_one_registry() {
        let expected_tail = DOCKER_HUB_KEYS.map(String::from);
        for key in [
            "docker.io",
            "index.docker.io",
            "registry-1.docker.io",
            "https://index.docker.io/v1/",
            "https://registry-1.docker.io/v2/",
        ] {
            let keys = lookup_keys(key);
            assert_eq!(keys[0], key);
            for alias in &expected_tail {
                assert!(keys.contains(alias), "{key}: {keys:?}");
            }
            let mut unique = keys.clone();
            unique.dedup();
            assert_eq!(unique.len(), keys.len());
        }
    }

    #[test]
    fn paths_other_than_a_registry_root_never_fall_back() {
        for key in [
            "https://index.docker.io/v1/access-token",
            "https://index.docker.io/v1/refresh-token",
            "reg.test/team/app",
            "://",
            "/v1/",
        ] {
            assert_eq!(lookup_keys(key), [key]);
        }
    }

    #[test]
    fn errors_are_one_line() {
        let errors = [
            KeyringError::NoSessionBus,
            KeyringError::BusUnreachable("x".into()),
            KeyringError::NoProvider,
            KeyringError::Locked,
            KeyringError::NoDefaultCollection,
            KeyringError::EncryptionRefused,
            KeyringError::NotUtf8("h".into()),
            KeyringError::InvalidServerUrl("a\nb".into()),
            KeyringError::Unsupported,
        ];
        for error in errors {
            let text = Error::from(error).to_string();
            assert_eq!(text.lines().count(), 1, "{text}");
            assert!(text.starts_with("docker-credential-keyring: "), "{text}");
        }
    }
}
