//! The library behind every regkit program: the docker credential-helper protocol, secrets that never
//! print, docker config resolution, and the credential stores.
//!
//! Each binary in `helpers/` is a thin `main` over this crate; see `ARCHITECTURE.md` for the map.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod dockerconfig;
#[cfg(feature = "ecr")]
pub mod ecr;
pub mod envhelper;
#[cfg(feature = "keyring")]
pub mod keyring;
pub mod protocol;
pub mod reference;
#[cfg(feature = "registry")]
pub mod registry;
pub mod report;
pub mod secret;
#[cfg(feature = "registry")]
pub mod vendor;
