//! AWS ECR: the provider behind `docker-credential-ecr-login` and the ECR cleanup implementation.
//!
//! - [`host`]: which keys are ECR (anchored patterns of every partition, ECR Public);
//! - [`identity`]: which AWS identity asks for a registry (regkit's config file maps registry patterns to a
//!   profile, a role to assume and a region), and the cache key derived from it;
//! - [`cache`]: the per-user token cache file (atomic replace under a lock, refresh at half-life);
//! - [`aws`]: the AWS SDK side (credential chain with short IMDS timeouts, endpoint overrides, tokens);
//! - [`helper`]: the credential helper; its cache-hit path reads one file and never starts the SDK;
//! - [`token`]: fresh tokens on a miss, from the small `regkit-ecr-token` program (or in process);
//! - [`cleanup`]: `DescribeImages` listing and tag deletion with `BatchDeleteImage`.
//!
//! Every AWS variable is read through [`Env`], which treats an empty value as unset: the SDK panics on
//! `AWS_ENDPOINT_URL_ECR=""` and builds `Region("")` from `AWS_REGION=""`.

pub mod aws;
pub mod cache;
pub mod helper;
pub mod images;
pub use crate::ecr_host as host;
pub mod identity;
pub mod token;

use std::time::Duration;

pub use host::EcrRegistry;

use crate::secret::Secret;

/// Test hook: the current time as Unix seconds, for the token cache only (moto's tokens all expire in
/// 2015, so tests move the clock instead). Not for production use.
pub const CLOCK_VAR: &str = "REGKIT_ECR_NOW";
/// Bound, in seconds, on one whole token request of `get` (credentials, role assumption, API call).
pub const TIMEOUT_VAR: &str = "REGKIT_ECR_TIMEOUT";
/// The default of [`TIMEOUT_VAR`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// A registry token as the API returned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// The registry username (`AWS`).
    pub username: String,
    /// The registry password.
    pub password: Secret<String>,
    /// The registry endpoint it is for (`https://<host>`).
    pub endpoint: String,
    /// Expiry in Unix seconds.
    pub expires_at: i64,
}

/// The variables of the ECR helper's test clock and request bound.
#[derive(Debug, Clone, Copy, Default)]
pub struct EcrKnobs;

impl crate::envvars::Knobs for EcrKnobs {
    const CLOCK_VAR: &'static str = CLOCK_VAR;
    const TIMEOUT_VAR: &'static str = TIMEOUT_VAR;
    const DEFAULT_TIMEOUT: Duration = DEFAULT_TIMEOUT;
}

/// The process environment as the ECR code sees it: empty values are unset.
pub type Env = crate::envvars::Env<EcrKnobs>;

impl Env {
    /// True when `name` is set to exactly `true` (case-insensitive), as the AWS tools read booleans.
    pub fn flag(&self, name: &str) -> bool {
        self.var(name)
            .is_some_and(|value| value.trim().eq_ignore_ascii_case("true"))
    }
}

/// Why an ECR operation failed. `Display` is one line naming the registry and what to do; never a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EcrError {
    /// regkit's config file could not be read or parsed.
    #[error("{0}")]
    Config(String),
    /// The token program failed; its own one-line explanation.
    #[error("{0}")]
    Fetch(String),
    /// No AWS credentials could be resolved, or AWS refused them.
    #[error("no usable AWS credentials for {registry}: {message}")]
    Credentials {
        /// Registry host.
        registry: String,
        /// The cause and what to do.
        message: String,
    },
    /// The identity may not perform the operation.
    #[error("AWS denied {operation} on {registry}: {message}")]
    Denied {
        /// Registry host.
        registry: String,
        /// The API operation.
        operation: String,
        /// What AWS said.
        message: String,
    },
    /// The repository does not exist.
    #[error("repository {repository} not found on {registry}")]
    RepositoryNotFound {
        /// Registry host.
        registry: String,
        /// Repository name.
        repository: String,
    },
    /// Network, TLS or timeout failure.
    #[error("cannot reach the ECR API for {registry}: {message}")]
    Transport {
        /// Registry host.
        registry: String,
        /// The cause.
        message: String,
    },
    /// Any other API error or malformed answer.
    #[error("ECR {operation} failed for {registry}: {message}")]
    Api {
        /// Registry host.
        registry: String,
        /// The API operation.
        operation: String,
        /// The HTTP status, when AWS answered.
        status: Option<u16>,
        /// The error code and message.
        message: String,
    },
    /// A listing that never ends (its registry is filled in by the cleanup implementation).
    #[cfg(feature = "registry")]
    #[error(transparent)]
    Unbounded(#[from] crate::registry::pager::Unbounded),
}
