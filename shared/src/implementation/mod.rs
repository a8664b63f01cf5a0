//! The implementation seam: one [`Implementation`] per registry implementation, chosen by host or by flag.
//!
//! Detection only yields an implementation *name*; [`IMPLEMENTATIONS`] maps the names that have a module to
//! their constructor. Adding a vendor is one new file here plus one line in that table, and `default.rs`
//! never changes. A known name without a module is a clear "not supported yet" error, never a silent fallback
//! to plain v2 deletes whose semantics differ per vendor.

#[cfg(feature = "acr")]
mod acr;
mod artifactory;
mod delete;
mod distribution;
mod dockerhub;
#[cfg(feature = "ecr")]
mod ecr;
#[cfg(feature = "gcr")]
mod gcr;
mod github;
mod gitlab;
mod harbor;
mod nexus;
mod probe;
mod quay;
mod rest;
mod settings;

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use crate::dates::Timestamp;
use crate::dockerconfig::RegistryAuth;
use crate::reference::{Repository, Target};
use crate::registry::{Client, RegistryError};
use crate::report::Entry;

pub use probe::probe;
pub use settings::Settings;

/// A boxed future, so [`Implementation`] stays object-safe. Not `Send`: the cleanup tool drives every vendor on one
/// thread, and vendors need not make their HTTP futures `Send`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// One tag as a vendor lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagInfo {
    /// The tag.
    pub tag: String,
    /// Its manifest digest, when the vendor reports it (or it was asked for).
    pub digest: Option<String>,
    /// When it was pushed, when the vendor reports it.
    pub created: Option<Timestamp>,
}

/// What a vendor can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// What deleting a tag removes.
    pub delete_removes: DeleteRemoves,
}

/// What deleting a tag removes, which decides whether a cleanup must itself spare the manifests a kept
/// index references.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteRemoves {
    /// The tag alone: its manifest stays for its other tags and for any index that lists it.
    Tag,
    /// The tag, and its manifest with its last tag; the registry refuses to remove a manifest an index
    /// references, so a kept index never loses a child.
    UnreferencedManifest,
    /// The tag with its manifest, even one a kept index lists.
    Manifest,
}

/// One batch delete for a repository.
pub struct DeleteRequest<'a> {
    /// The repository.
    pub repository: &'a Repository,
    /// Tags and digests to remove, all of them at once so the vendor can plan across them and use batch
    /// APIs (splitting to its own size limits). Removing a tag never removes another tag; a digest removes
    /// its manifest and every tag on it.
    pub targets: &'a [Target],
    /// Plan only: report `planned` entries and change nothing.
    pub dry_run: bool,
    /// Called with the number of entries finished, for progress display.
    pub progress: &'a dyn Fn(u64),
}

/// A registry implementation.
pub trait Implementation {
    /// The implementation name (`default`, `ecr`, …).
    fn name(&self) -> &'static str;

    /// What it can do.
    fn capabilities(&self) -> Capabilities;

    /// Every tag of `repository`, sorted; with digests when `with_digests` or when the vendor gets them free.
    fn list_tags<'a>(
        &'a self,
        repository: &'a Repository,
        with_digests: bool,
    ) -> BoxFuture<'a, Result<Vec<TagInfo>, RegistryError>>;

    /// Removes the request's targets; one entry per distinct target, in the order they were first
    /// requested. Never fails as a whole: failures are `failed` entries.
    fn delete<'a>(&'a self, request: DeleteRequest<'a>) -> BoxFuture<'a, Vec<Entry>>;

    /// The manifests of `repository` that no tag points at, for `regkit cleanup --untagged`; `None` when the
    /// vendor cannot list them (plain v2 cannot). An implementation must leave out every manifest a tagged
    /// index references: those are deleted with their index, never on their own.
    fn list_untagged<'a>(
        &'a self,
        _repository: &'a Repository,
    ) -> BoxFuture<'a, Result<Option<Vec<UntaggedManifest>>, RegistryError>> {
        Box::pin(async { Ok(None) })
    }

    /// The repositories whose path starts with `prefix`, for `regkit cleanup REPO/*`; `None` (the default)
    /// means the registry's v2 `_catalog` lists them.
    fn list_repositories<'a>(
        &'a self,
        _prefix: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<String>>, RegistryError>> {
        Box::pin(async { Ok(None) })
    }
}

/// A manifest no tag points at, as [`Implementation::list_untagged`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UntaggedManifest {
    /// Its digest.
    pub digest: String,
    /// When it was pushed, when the vendor reports it.
    pub created: Option<Timestamp>,
}

/// What every vendor constructor receives.
#[derive(Debug, Clone)]
pub struct Context {
    /// A v2 client for the registry, with the resolved credentials.
    pub client: Client,
    /// The credentials the client uses (docker config or flags), for vendor APIs that accept the same ones.
    pub auth: RegistryAuth,
    /// Bound on concurrent registry requests (`--parallel`).
    pub parallel: usize,
    /// Vendor-specific settings: API URLs and tokens from flags or the environment.
    pub settings: Settings,
}

type Constructor = fn(Context) -> Box<dyn Implementation>;

/// A command-line flag a vendor module reads through [`Settings`] (also `REGKIT_<NAME>`, `WERF_<NAME>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flag {
    /// The long flag name without dashes, also the [`Settings`] name (`repo-docker-hub-token`).
    pub name: &'static str,
    /// The placeholder in `--help` (`TOKEN`, `URL`).
    pub value_name: &'static str,
    /// One line of help.
    pub help: &'static str,
}

/// The implementations that have a module: name, constructor, and the flags it reads. One line per vendor.
const IMPLEMENTATIONS: &[(&str, Constructor, &[Flag])] = &[
    ("default", distribution::build, &[]),
    ("dockerhub", dockerhub::build, dockerhub::FLAGS),
    ("github", github::build, github::FLAGS),
    ("gitlab", gitlab::build, gitlab::FLAGS),
    #[cfg(feature = "ecr")]
    ("ecr", ecr::build, &[]),
    #[cfg(feature = "acr")]
    ("acr", acr::build, acr::FLAGS),
    #[cfg(feature = "gcr")]
    ("gcr", gcr::build, gcr::FLAGS),
    ("harbor", harbor::build, harbor::FLAGS),
    ("quay", quay::build, quay::FLAGS),
    ("artifactory", artifactory::build, artifactory::FLAGS),
    ("nexus", nexus::build, nexus::FLAGS),
];

/// Every vendor flag, for the command line.
pub fn flags() -> impl Iterator<Item = &'static Flag> {
    IMPLEMENTATIONS
        .iter()
        .flat_map(|(_, _, flags)| flags.iter())
}

/// Every implementation name `--repo-implementation` accepts (werf's set plus artifactory and nexus).
pub const NAMES: [&str; 11] = [
    "default",
    "ecr",
    "acr",
    "dockerhub",
    "gcr",
    "github",
    "gitlab",
    "harbor",
    "quay",
    "artifactory",
    "nexus",
];

/// An anchored rule on the registry host (with port, if any: a port never matches a vendor's host).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostRule {
    /// The host equals this.
    Exact(&'static str),
    /// The host is a non-empty name followed by this suffix (`.azurecr.io`).
    Suffix(&'static str),
    /// An ECR host, as [`crate::ecr_host::EcrRegistry::parse`] recognises it (every partition, ECR Public).
    Ecr,
}

impl HostRule {
    fn matches(self, host: &str) -> bool {
        match self {
            HostRule::Exact(name) => host == name,
            HostRule::Suffix(suffix) => host.len() > suffix.len() && host.ends_with(suffix),
            // The parser also accepts helper keys with a port or path; a registry host with a port is not
            // a vendor's.
            HostRule::Ecr => {
                !host.contains(['/', ':']) && crate::ecr_host::EcrRegistry::parse(host).is_some()
            }
        }
    }
}

impl fmt::Display for HostRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostRule::Exact(name) => f.write_str(name),
            HostRule::Suffix(suffix) => write!(f, "*{suffix}"),
            HostRule::Ecr => {
                f.write_str("an ECR registry host (private, any partition, or ECR Public)")
            }
        }
    }
}

/// Host rules in match order. Harbor and Nexus hosts are arbitrary, so those are chosen by flag only.
const DETECTION: &[(&str, &[HostRule])] = &[
    ("ecr", &[HostRule::Ecr]),
    ("acr", &[HostRule::Suffix(".azurecr.io")]),
    (
        "dockerhub",
        &[
            HostRule::Exact("docker.io"),
            HostRule::Exact("index.docker.io"),
            HostRule::Exact("registry-1.docker.io"),
        ],
    ),
    (
        "gcr",
        &[
            HostRule::Exact("gcr.io"),
            HostRule::Suffix(".gcr.io"),
            HostRule::Suffix("-docker.pkg.dev"),
            HostRule::Suffix(".rep.pkg.dev"),
        ],
    ),
    (
        "github",
        &[
            HostRule::Exact("ghcr.io"),
            HostRule::Exact("docker.pkg.github.com"),
        ],
    ),
    ("gitlab", &[HostRule::Exact("registry.gitlab.com")]),
    ("quay", &[HostRule::Exact("quay.io")]),
    ("artifactory", &[HostRule::Suffix(".jfrog.io")]),
];

/// How an implementation was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DetectedBy {
    /// `--repo-implementation` (or its environment variables).
    Flag,
    /// The host matched this rule.
    Host(HostRule),
    /// No rule matched.
    Fallback,
    /// No rule matched, and the registry host answered this product's status endpoint ([`probe`]).
    Probed(&'static str),
}

impl fmt::Display for DetectedBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DetectedBy::Flag => f.write_str("forced by --repo-implementation"),
            DetectedBy::Host(rule) => write!(f, "host matches {rule}"),
            DetectedBy::Fallback => f.write_str("no vendor host pattern matched"),
            DetectedBy::Probed(path) => write!(f, "the registry host answered GET {path}"),
        }
    }
}

/// The outcome of detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Detection {
    /// One of [`NAMES`].
    pub name: &'static str,
    /// Why.
    pub by: DetectedBy,
}

/// Why no vendor could be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImplementationError {
    /// `--repo-implementation` named no known implementation.
    #[error("unknown registry implementation {name:?}; use one of: {}", NAMES.join(", "))]
    Unknown {
        /// The name given.
        name: String,
    },
    /// A known implementation whose module is not written yet.
    #[error(
        "implementation {name} is not supported yet; use --repo-implementation default to delete through the plain v2 API"
    )]
    NotSupportedYet {
        /// The implementation name.
        name: &'static str,
    },
}

/// Picks the implementation for `registry` (a normalised host, e.g. from [`Repository`]). `forced` is the
/// `--repo-implementation` value; empty and `auto` mean detect, as in werf.
pub fn detect(registry: &str, forced: Option<&str>) -> Result<Detection, ImplementationError> {
    match forced.map(str::trim) {
        Some(name) if !name.is_empty() && name != "auto" => {
            let lower = name.to_ascii_lowercase();
            let known = NAMES.iter().find(|known| **known == lower).ok_or_else(|| {
                ImplementationError::Unknown {
                    name: name.to_string(),
                }
            })?;
            Ok(Detection {
                name: known,
                by: DetectedBy::Flag,
            })
        }
        _ => {
            let host = registry.to_ascii_lowercase();
            for (name, rules) in DETECTION {
                if let Some(rule) = rules.iter().find(|rule| rule.matches(&host)) {
                    return Ok(Detection {
                        name,
                        by: DetectedBy::Host(*rule),
                    });
                }
            }
            Ok(Detection {
                name: "default",
                by: DetectedBy::Fallback,
            })
        }
    }
}

/// Constructs the detected implementation.
pub fn build(
    name: &'static str,
    context: Context,
) -> Result<Box<dyn Implementation>, ImplementationError> {
    IMPLEMENTATIONS
        .iter()
        .find(|(known, _, _)| *known == name)
        .map(|(_, constructor, _)| constructor(context))
        .ok_or(ImplementationError::NotSupportedYet { name })
}

/// Whether `name` has a module (otherwise [`build`] answers [`ImplementationError::NotSupportedYet`]).
pub fn implemented(name: &str) -> bool {
    IMPLEMENTATIONS.iter().any(|(known, _, _)| *known == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detected(host: &str) -> &'static str {
        detect(host, None).unwrap().name
    }

    #[test]
    fn hosts_pick_their_vendor() {
        for (host, name) in [
            ("123456789012.dkr.ecr.us-east-1.amazonaws.com", "ecr"),
            (
                "123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com",
                "ecr",
            ),
            ("123456789012.dkr-ecr.eu-west-1.amazonaws.com", "ecr"),
            ("123456789012.dkr-ecr.eu-west-1.on.aws", "ecr"),
            ("123456789012.dkr.ecr.eu-central-1.amazonaws.eu", "ecr"),
            ("public.ecr.aws", "ecr"),
            ("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn", "ecr"),
            ("myreg.azurecr.io", "acr"),
            ("docker.europe-west1.rep.pkg.dev", "gcr"),
            ("docker.io", "dockerhub"),
            ("index.docker.io", "dockerhub"),
            ("registry-1.docker.io", "dockerhub"),
            ("gcr.io", "gcr"),
            ("eu.gcr.io", "gcr"),
            ("europe-west1-docker.pkg.dev", "gcr"),
            ("ghcr.io", "github"),
            ("docker.pkg.github.com", "github"),
            ("registry.gitlab.com", "gitlab"),
            ("quay.io", "quay"),
            ("acme.jfrog.io", "artifactory"),
            ("GHCR.IO", "github"),
        ] {
            assert_eq!(detected(host), name, "{host}");
        }
    }

    #[test]
    fn anchored_patterns_do_not_match_lookalikes() {
        for host in [
            "12345678901.dkr.ecr.us-east-1.amazonaws.com",
            "1234567890123.dkr.ecr.us-east-1.amazonaws.com",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com:443",
            "123456789012.dkr.ecr..amazonaws.com",
            "x123456789012.dkr.ecr.us-east-1.amazonaws.com",
            "azurecr.io",
            "myreg.azurecr.io.evil.com",
            "ghcr.io.evil.com",
            "notghcr.io",
            "gitlab.com",
            "quay.io:8443",
            "jfrog.io",
            "harbor.example.com",
            "nexus.example.com",
            "127.0.0.1:5000",
        ] {
            let detection = detect(host, None).unwrap();
            assert_eq!(
                detection,
                Detection {
                    name: "default",
                    by: DetectedBy::Fallback
                },
                "{host}"
            );
        }
    }

    #[test]
    fn the_flag_wins_and_is_validated() {
        assert_eq!(
            detect("ghcr.io", Some("harbor")).unwrap(),
            Detection {
                name: "harbor",
                by: DetectedBy::Flag
            }
        );
        assert_eq!(detect("ghcr.io", Some("Nexus")).unwrap().name, "nexus");
        assert_eq!(detect("ghcr.io", Some("auto")).unwrap().name, "github");
        assert_eq!(detect("ghcr.io", Some("")).unwrap().name, "github");
        let error = detect("ghcr.io", Some("ecs")).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("unknown registry implementation \"ecs\"; use one of: default, ecr")
        );
        assert_eq!(
            detect("quay.io", None).unwrap().by.to_string(),
            "host matches quay.io"
        );
    }

    #[test]
    fn every_table_entry_is_a_known_name() {
        for (name, _, _) in IMPLEMENTATIONS {
            assert!(NAMES.contains(name), "{name}");
        }
        assert!(implemented("default"));
        assert!(implemented("quay"));
        assert!(!implemented("nope"));
        for (name, _) in DETECTION {
            assert!(NAMES.contains(name), "{name}");
        }
        assert_eq!(
            ImplementationError::NotSupportedYet { name: "quay" }.to_string(),
            "implementation quay is not supported yet; use --repo-implementation default to delete through the plain v2 API"
        );
    }
}
