//! The implementation seam: one [`Implementation`] per registry implementation, chosen by host or by flag.
//!
//! Each implementation file declares one `Spec`: its name, constructor, flags, environment fallbacks, host
//! rules, status probe, what its delete removes and whether it lists untagged manifests. Detection, name
//! validation, the vendor flags, the settings allow-list, the probes and the help texts are all read from
//! `SPECS`, so adding a vendor is one new file here plus its `mod` line and its entry in that list. A name
//! without a spec (a vendor whose feature is compiled out) is unknown, never a silent fallback to plain v2
//! deletes whose semantics differ per vendor.

#[cfg(feature = "acr")]
mod acr;
mod artifactory;
mod delete;
mod distribution;
mod dockerhub;
#[cfg(feature = "ecr")]
mod ecr;
#[cfg(test)]
mod example;
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

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::future::Future;
use std::pin::Pin;

use crate::dates::Timestamp;
use crate::dockerconfig::RegistryAuth;
use crate::journal::Journal;
use crate::reference::{Repository, Target};
use crate::registry::{Client, RegistryError};
use crate::report::Entry;

use probe::Probe;
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
    /// Pulls, where the vendor records them: `None` when the listing carries no pull record at all,
    /// `Some(None)` for a tag the registry says was never pulled.
    pub last_pulled: Option<Option<Timestamp>>,
}

impl TagInfo {
    /// `tag` alone, for a listing asked for no digests that brings none.
    fn name_only(tag: String) -> TagInfo {
        TagInfo {
            tag,
            digest: None,
            created: None,
            last_pulled: None,
        }
    }
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
    /// The manifests that indexes of the repository's other tags reference, when the caller has read
    /// them (the cleanup engine does, to keep those tags): an implementation whose delete would remove
    /// them then spares them without reading the indexes again. `None`: it reads them itself.
    pub kept_index_children: Option<&'a BTreeSet<String>>,
    /// Where each change is recorded before it is sent (`None`: `--no-journal`, or a dry run).
    pub journal: Option<Journaling<'a>>,
}

/// The undo journal of a delete, and the v2 client that reads the manifest bodies an implementation whose
/// delete does not read them already (the vendor APIs) records: one GET per digest removed.
#[derive(Clone, Copy)]
pub struct Journaling<'a> {
    /// The run's journal.
    pub journal: &'a Journal,
    /// The registry's v2 client.
    pub client: &'a Client,
}

/// A registry implementation.
pub trait Implementation {
    /// The spec it was built from, which its name and capabilities come from.
    fn spec(&self) -> &'static Spec;

    /// The implementation name (`default`, `ecr`, …).
    fn name(&self) -> &'static str {
        self.spec().name
    }

    /// What it can do.
    fn capabilities(&self) -> Capabilities {
        self.spec().capabilities()
    }

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

    /// The `subject` of each manifest among `digests` (untagged ones `cleanup --untagged` may take) that
    /// has one: such a referrer is never swept on its own. `None` (the default): each is read over v2.
    /// A manifest that no longer exists has none; one that cannot be read fails the answer.
    fn untagged_subjects<'a>(
        &'a self,
        _repository: &'a Repository,
        _digests: &'a [String],
    ) -> BoxFuture<'a, Result<Option<BTreeMap<String, String>>, RegistryError>> {
        Box::pin(async { Ok(None) })
    }

    /// The referrers of each manifest among `digests` (subject → referrers) through the OCI 1.1 referrers
    /// API. By default it is not asked: the vendors' stand-ins, against which an implementation's v2
    /// calls are checked, do not serve it, and their referrers come from their own APIs. Plain v2 asks
    /// it over v2 ([`ApiReferrers::OverV2`](crate::referrers::ApiReferrers)); ACR, whose v2 calls need
    /// its own tokens, asks it itself.
    fn api_referrers<'a>(
        &'a self,
        _repository: &'a Repository,
        _digests: &'a [String],
    ) -> BoxFuture<'a, Result<crate::referrers::ApiReferrers, RegistryError>> {
        Box::pin(async { Ok(crate::referrers::ApiReferrers::Unused) })
    }

    /// The digests among `digests` that `repository` no longer holds (the subjects of orphans), where the
    /// vendor's listing tells without a request; `None` (the default): one v2 HEAD each.
    fn missing_manifests<'a>(
        &'a self,
        _repository: &'a Repository,
        _digests: &'a [String],
    ) -> BoxFuture<'a, Result<Option<BTreeSet<String>>, RegistryError>> {
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

/// The `paths` under `prefix`, sorted and without repeats: what [`Implementation::list_repositories`]
/// answers from a vendor's own repository listing.
fn paths_under(paths: impl IntoIterator<Item = String>, prefix: &str) -> Vec<String> {
    let mut paths: Vec<String> = paths
        .into_iter()
        .filter(|path| path.starts_with(prefix))
        .collect();
    paths.sort();
    paths.dedup();
    paths
}

/// A manifest no tag points at, as [`Implementation::list_untagged`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UntaggedManifest {
    /// Its digest.
    pub digest: String,
    /// When it was pushed, when the vendor reports it.
    pub created: Option<Timestamp>,
    /// The digest its `subject` names, where the listing says (Harbor's accessories): a referrer.
    pub subject: Option<String>,
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

/// What the tables, the detection and the help texts need to know about one implementation; each
/// implementation file declares one.
pub struct Spec {
    /// The `--repo-implementation` name, also [`Implementation::name`].
    name: &'static str,
    /// How the product is written in help texts (`GitHub`).
    title: &'static str,
    /// Makes the implementation for one registry.
    build: Constructor,
    /// The flags it reads through [`Settings`].
    flags: &'static [Flag],
    /// The variables outside the `REGKIT_`/`WERF_` families it reads as a last source ([`Settings::environment`]).
    environment: &'static [&'static str],
    /// The host rules that pick it, in match order; none when its hosts have arbitrary names.
    hosts: &'static [HostRule],
    /// The status endpoint that identifies it on a host no rule matched.
    probe: Option<Probe>,
    /// What deleting a tag removes.
    delete_removes: DeleteRemoves,
    /// Whether [`Implementation::list_untagged`] lists untagged manifests (named in `--untagged`'s help).
    lists_untagged: bool,
}

impl Spec {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            delete_removes: self.delete_removes,
        }
    }
}

/// Every implementation, in the order `--repo-implementation`'s help and errors list them (werf's set, then
/// artifactory and nexus); host rules are tried, and vendor flags shown in `--help`, in this order too.
const SPECS: &[Spec] = &[
    distribution::SPEC,
    #[cfg(feature = "ecr")]
    ecr::SPEC,
    #[cfg(feature = "acr")]
    acr::SPEC,
    dockerhub::SPEC,
    #[cfg(feature = "gcr")]
    gcr::SPEC,
    github::SPEC,
    gitlab::SPEC,
    harbor::SPEC,
    quay::SPEC,
    artifactory::SPEC,
    nexus::SPEC,
    #[cfg(test)]
    example::SPEC,
];

fn spec(name: &str) -> Option<&'static Spec> {
    SPECS.iter().find(|spec| spec.name == name)
}

/// Every vendor flag, for the command line.
pub fn flags() -> impl Iterator<Item = &'static Flag> {
    SPECS.iter().flat_map(|spec| spec.flags.iter())
}

/// Every name `--repo-implementation` accepts, comma-separated, for help texts and errors.
pub fn name_list() -> String {
    let names: Vec<&str> = SPECS.iter().map(|spec| spec.name).collect();
    names.join(", ")
}

/// The products whose untagged manifests `--untagged` can find (`ECR, ACR, …`), comma-separated.
pub fn untagged_listers() -> String {
    let titles: Vec<&str> = SPECS
        .iter()
        .filter(|spec| spec.lists_untagged)
        .map(|spec| spec.title)
        .collect();
    titles.join(", ")
}

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
    /// The implementation's name, one of [`name_list`].
    pub name: &'static str,
    /// Why.
    pub by: DetectedBy,
}

/// Why no vendor could be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImplementationError {
    /// `--repo-implementation` named no known implementation.
    #[error(
        "unknown registry implementation {name:?}; use one of: {}",
        name_list()
    )]
    Unknown {
        /// The name given.
        name: String,
    },
}

/// Picks the implementation for `registry` (a normalised host, e.g. from [`Repository`]). `forced` is the
/// `--repo-implementation` value; empty and `auto` mean detect, as in werf.
pub fn detect(registry: &str, forced: Option<&str>) -> Result<Detection, ImplementationError> {
    match forced.map(str::trim) {
        Some(name) if !name.is_empty() && name != "auto" => {
            let known =
                spec(&name.to_ascii_lowercase()).ok_or_else(|| ImplementationError::Unknown {
                    name: name.to_string(),
                })?;
            Ok(Detection {
                name: known.name,
                by: DetectedBy::Flag,
            })
        }
        _ => {
            let host = registry.to_ascii_lowercase();
            for spec in SPECS {
                if let Some(rule) = spec.hosts.iter().find(|rule| rule.matches(&host)) {
                    return Ok(Detection {
                        name: spec.name,
                        by: DetectedBy::Host(*rule),
                    });
                }
            }
            Ok(Detection {
                name: distribution::SPEC.name,
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
    let spec = spec(name).ok_or_else(|| ImplementationError::Unknown {
        name: name.to_string(),
    })?;
    Ok((spec.build)(context))
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
    fn every_spec_has_its_own_name() {
        for (index, spec) in SPECS.iter().enumerate() {
            assert!(
                SPECS[..index].iter().all(|other| other.name != spec.name),
                "{}",
                spec.name
            );
        }
        assert!(spec("default").is_some());
        assert!(spec("quay").is_some());
        assert!(spec("nope").is_none());
    }

    /// `example.rs` is added as a new vendor would be (the file, its `mod` line, its entry in `SPECS`);
    /// every table and help text has to pick it up from there.
    #[test]
    fn a_new_implementation_needs_only_its_spec() {
        assert_eq!(
            detect("registry.example.test", None).unwrap(),
            Detection {
                name: "example",
                by: DetectedBy::Host(HostRule::Exact("registry.example.test"))
            }
        );
        assert_eq!(detect("ghcr.io", Some("Example")).unwrap().name, "example");
        assert!(name_list().ends_with(", nexus, example"), "{}", name_list());
        assert!(
            detect("ghcr.io", Some("examples"))
                .unwrap_err()
                .to_string()
                .ends_with(", nexus, example")
        );
        assert!(untagged_listers().ends_with(", Harbor, Example"));
        assert!(flags().any(|flag| flag.name == "example-api-url"));
        let settings = Settings::with_environment(
            [],
            [
                ("REGKIT_EXAMPLE_API_URL", "https://api.example.test"),
                ("EXAMPLE_TOKEN", "from-ci"),
            ]
            .map(|(name, value)| (name.to_string(), value.to_string())),
        );
        assert_eq!(
            settings.text("example-api-url"),
            Some("https://api.example.test")
        );
        assert!(settings.environment("EXAMPLE_TOKEN").is_some());
        let probes: Vec<&str> = probe::probes().iter().map(|(name, _)| *name).collect();
        assert_eq!(probes, ["harbor", "nexus", "artifactory", "example"]);
        let client = Client::new(
            "registry.example.test",
            RegistryAuth::Anonymous,
            &crate::registry::ClientOptions::default(),
        )
        .unwrap();
        let vendor = build(
            "example",
            Context {
                client,
                auth: RegistryAuth::Anonymous,
                parallel: 1,
                settings,
            },
        )
        .unwrap();
        assert_eq!(vendor.name(), "example");
        assert_eq!(vendor.capabilities().delete_removes, DeleteRemoves::Tag);
    }
}
