//! The library behind every regkit program: the docker credential-helper protocol, secrets that never
//! print, docker config resolution, and the credential stores.
//!
//! Each binary in `helpers/` is a thin `main` over this crate; see `ARCHITECTURE.md` for the map.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "acr")]
pub mod acr;
#[cfg(any(feature = "acr", feature = "gcr"))]
pub mod cloudauth;
#[cfg(feature = "registry")]
pub mod dates;
pub mod dockerconfig;
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
#[cfg(feature = "keyring")]
pub mod keyring;
pub mod kubelet;
#[cfg(feature = "registry")]
pub mod policy;
pub mod protocol;
pub mod reference;
#[cfg(feature = "registry")]
pub mod registry;
pub mod report;
#[cfg(feature = "router")]
pub mod router;
pub mod secret;
// Cross-process locking uses `File::lock` (std, Rust 1.89): the features that cache tokens need 1.89 while
// the rest of the crate keeps the workspace MSRV.
#[cfg(any(feature = "ecr", feature = "acr", feature = "gcr"))]
#[clippy::msrv = "1.89"]
pub mod tokencache;
#[cfg(feature = "registry")]
pub mod vendor;
