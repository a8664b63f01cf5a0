//! The Docker Registry HTTP API v2 / OCI distribution client.
//!
//! INTERFACE STUB: the owner of this module replaces the bodies; the public types and signatures below are
//! what the rest of the library (vendors, the cleanup CLI) codes against. Bodies are `todo!()` until then.

use std::time::Duration;

use crate::dockerconfig::RegistryAuth;

/// The four manifest media types, in the `Accept` order every request sends.
pub const MANIFEST_MEDIA_TYPES: [&str; 4] = [
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// How to reach a registry.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Allow plain HTTP (and Basic credentials over it) to a non-loopback host.
    pub insecure: bool,
    /// Accept any TLS certificate.
    pub skip_tls_verify: bool,
    /// Extra PEM CA bundle to trust.
    pub ca_file: Option<std::path::PathBuf>,
    /// Bound on one request (connect + response).
    pub request_timeout: Duration,
    /// Bound on all retries of one logical operation.
    pub retry_budget: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            insecure: false,
            skip_tls_verify: false,
            ca_file: None,
            request_timeout: Duration::from_secs(30),
            retry_budget: Duration::from_secs(120),
        }
    }
}

/// A manifest's identity as the registry reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestInfo {
    /// `sha256:…`, from `Docker-Content-Digest` (verified against the body on GET).
    pub digest: String,
    /// The `Content-Type`.
    pub media_type: String,
    /// Body length in bytes.
    pub size: u64,
}

/// A manifest with its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Digest, media type and size.
    pub info: ManifestInfo,
    /// The exact bytes the registry returned.
    pub body: Vec<u8>,
}

/// What a delete found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    /// The registry removed it.
    Removed,
    /// It was already gone (404).
    Absent,
}

/// Why a registry call failed. `Display` is one line naming the registry and what to do.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// 401 after trying the available credentials, or a token service refusal.
    #[error("authentication to {registry} failed: {message}")]
    Unauthorized {
        /// Registry host.
        registry: String,
        /// What the registry said and what to do.
        message: String,
    },
    /// 403 / `DENIED` / insufficient scope after retrying with the challenged scope.
    #[error("permission denied by {registry}: {message}")]
    Denied {
        /// Registry host.
        registry: String,
        /// What the registry said and what to do.
        message: String,
    },
    /// 404 `NAME_UNKNOWN`.
    #[error("repository {repository} not found on {registry}")]
    RepositoryNotFound {
        /// Registry host.
        registry: String,
        /// Repository path.
        repository: String,
    },
    /// 405 `UNSUPPORTED` on a delete: the registry cannot delete.
    #[error("{registry} refuses deletes ({message}); enable them (distribution: storage.delete.enabled: true)")]
    DeleteUnsupported {
        /// Registry host.
        registry: String,
        /// What the registry said.
        message: String,
    },
    /// Any other HTTP error status.
    #[error("{registry} answered {status} to {operation}: {message}")]
    Status {
        /// Registry host.
        registry: String,
        /// What was attempted (`DELETE manifest sha256:…`).
        operation: String,
        /// HTTP status code.
        status: u16,
        /// The registry's error code and message.
        message: String,
    },
    /// A response that breaks the protocol (digest mismatch, bad JSON, oversized body, foreign Link host).
    #[error("{registry} sent an invalid response to {operation}: {message}")]
    InvalidResponse {
        /// Registry host.
        registry: String,
        /// What was attempted.
        operation: String,
        /// What was wrong.
        message: String,
    },
    /// Connection, TLS or timeout failure after the retry budget.
    #[error("cannot reach {registry}: {message}")]
    Transport {
        /// Registry host.
        registry: String,
        /// The cause.
        message: String,
    },
    /// Refused before sending (Basic credentials over plain HTTP to a non-loopback host, bad options).
    #[error("{0}")]
    Config(String),
}

/// A client for one registry host. Cheap to clone; clones share connections and the token cache.
#[derive(Debug, Clone)]
pub struct Client {
    _private: (),
}

impl Client {
    /// A client for `registry` (`host[:port]`; `docker.io` means Docker Hub) with these credentials.
    /// Loopback hosts default to plain HTTP; others to HTTPS (plain HTTP only with `insecure`).
    pub fn new(registry: &str, auth: RegistryAuth, options: &ClientOptions) -> Result<Self, RegistryError> {
        let _ = (registry, auth, options);
        todo!()
    }

    /// The registry host this client talks to.
    pub fn registry(&self) -> &str {
        todo!()
    }

    /// Every tag of `repository`, following pagination. `"tags": null` is an empty list.
    pub async fn list_tags(&self, repository: &str) -> Result<Vec<String>, RegistryError> {
        let _ = repository;
        todo!()
    }

    /// Repositories from `_catalog` whose names start with `prefix`, following pagination.
    pub async fn catalog(&self, prefix: &str) -> Result<Vec<String>, RegistryError> {
        let _ = prefix;
        todo!()
    }

    /// HEAD a manifest by tag or digest; `None` when it does not exist.
    pub async fn head_manifest(&self, repository: &str, reference: &str) -> Result<Option<ManifestInfo>, RegistryError> {
        let _ = (repository, reference);
        todo!()
    }

    /// GET a manifest by tag or digest; `None` when it does not exist.
    pub async fn get_manifest(&self, repository: &str, reference: &str) -> Result<Option<Manifest>, RegistryError> {
        let _ = (repository, reference);
        todo!()
    }

    /// PUT a manifest under a tag or digest; returns the digest the registry assigned.
    pub async fn put_manifest(
        &self,
        repository: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> Result<String, RegistryError> {
        let _ = (repository, reference, media_type, body);
        todo!()
    }

    /// DELETE a manifest by digest (removes every tag on it).
    pub async fn delete_manifest(&self, repository: &str, digest: &str) -> Result<Deleted, RegistryError> {
        let _ = (repository, digest);
        todo!()
    }

    /// GET a blob (an image config), bounded in size; `None` when absent.
    pub async fn get_blob(&self, repository: &str, digest: &str, max_bytes: usize) -> Result<Option<Vec<u8>>, RegistryError> {
        let _ = (repository, digest, max_bytes);
        todo!()
    }
}
