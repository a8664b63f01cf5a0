//! The library behind every regkit program. Each binary in `helpers/` is a thin `main` over this crate;
//! `ARCHITECTURE.md` draws the whole map.
//!
//! **Credentials** (the `docker-credential-*` helpers):
//! - [`protocol`]: the docker credential-helper protocol (the `Helper` trait and the loop that owns stdin,
//!   stdout and exit codes); [`secret`]: `Secret<T>`, which never prints.
//! - [`dockerconfig`]: docker's and the containers' auth files, external helpers, atomic writes, and
//!   what `regkit configure` and `regkit ci-env` write.
//! - `keyring`: the OS keyring store; [`envhelper`]: credentials from the environment.
//! - `ecr`, [`ecr_host`], `acr`, `gcr`, `cloudauth`, `tokencache`: the cloud providers, their host patterns,
//!   the shared cached-token `get` flow and its cache file.
//! - `router`, [`kubelet`]: routing hosts to providers; the kubelet credential-provider protocol.
//!
//! **Registries** (`regkit`):
//! - [`reference`]: image references and repositories; `registry`: the v2/OCI client and the vendor-API
//!   client over the same transport.
//! - `implementation`: one file per registry implementation (plain distribution, ECR, ACR, Docker Hub,
//!   Artifact Registry, GitHub, GitLab, Harbor, Quay, Artifactory, Nexus), each with the spec detection,
//!   the flags, the settings and the help texts are derived from.
//! - `session`: credentials, client and implementation for a registry, once per run; `doctor`: the
//!   checks behind `regkit doctor`.
//! - `cleanup`: the cleanup engine (expand, list, date, decide, delete, report); `policy`, `dates`: what
//!   a cleanup keeps, and image dates from configs; `referrers`: signatures, attestations and SBOMs
//!   that follow their subject; [`report`]: per-tag results, output and exit codes.
//! - `journal`: the undo journal every `delete` and `cleanup` writes before each change (the manifest
//!   bodies it removes), and `undo`: putting them back.
//!
//! `percent` (private) decodes `%xx` for both halves: D-Bus addresses and Google's resource names.

// Only the Windows and macOS keyring backends call C APIs (keyring/wincred.rs, keyring/osxkeychain.rs).
#![deny(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "acr")]
pub mod acr;
#[cfg(feature = "registry")]
pub mod cleanup;
#[cfg(any(feature = "acr", feature = "gcr"))]
pub mod cloudauth;
#[cfg(feature = "registry")]
pub mod dates;
pub mod dockerconfig;
#[cfg(feature = "registry")]
pub mod doctor;
#[cfg(feature = "ecr")]
pub mod ecr;
pub mod ecr_host;
pub mod envhelper;
#[cfg(any(feature = "ecr", feature = "acr", feature = "gcr"))]
pub mod envvars;
#[cfg(test)]
mod fuzz_tests;
#[cfg(feature = "gcr")]
pub mod gcr;
#[cfg(feature = "registry")]
pub mod implementation;
#[cfg(feature = "registry")]
pub mod inuse;
#[cfg(feature = "registry")]
pub mod journal;
#[cfg(feature = "keyring")]
pub mod keyring;
pub mod kubelet;
#[cfg(any(all(feature = "keyring", target_os = "linux"), feature = "gcr"))]
mod percent;
#[cfg(feature = "registry")]
pub mod policy;
pub mod protocol;
pub mod reference;
#[cfg(feature = "registry")]
pub mod referrers;
#[cfg(feature = "registry")]
pub mod registry;
pub mod report;
#[cfg(feature = "router")]
pub mod router;
pub mod secret;
#[cfg(feature = "registry")]
pub mod session;
#[cfg(any(feature = "ecr", feature = "acr", feature = "gcr"))]
pub mod tokencache;
#[cfg(feature = "registry")]
pub mod undo;
