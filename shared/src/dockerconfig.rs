//! Docker's client configuration, read the way the docker CLI and containers/image read it.
//!
//! INTERFACE STUB: the owner of this module replaces the bodies; the public types and signatures below are
//! what the rest of the library codes against.

use std::path::{Path, PathBuf};

use crate::secret::Secret;

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

/// A failure to read configuration or run a helper.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Any failure, one line, no secret.
    #[error("{0}")]
    Other(String),
}

/// The docker config directory and its parsed `config.json`, plus the containers auth files.
#[derive(Debug, Clone, Default)]
pub struct DockerConfig {
    _private: (),
}

impl DockerConfig {
    /// Loads from `explicit_dir`, else `WERF_DOCKER_CONFIG`, else `DOCKER_CONFIG`, else `~/.docker`.
    pub fn load(explicit_dir: Option<&Path>) -> Result<Self, ConfigError> {
        let _ = explicit_dir;
        Ok(Self::default())
    }

    /// The credentials docker would use for `registry` (a host with optional port, or `docker.io`).
    pub fn credentials_for(&self, registry: &str) -> Result<(RegistryAuth, AuthSource), ConfigError> {
        let _ = registry;
        Ok((RegistryAuth::Anonymous, AuthSource::None))
    }
}
