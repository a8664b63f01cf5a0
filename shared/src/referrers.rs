//! Referrers: signatures, attestations, SBOMs and other artifacts that refer to a manifest of their
//! repository, their subject. A cleanup never selects a referrer on its own (it is not an image, and its
//! own date says nothing about the image it vouches for); it goes when its subject's manifest goes.
//!
//! Three ways to refer, all recognised:
//! - cosign's tag scheme: a tag `sha256-<64 hex>.<suffix>` (`.sig`, `.att`, `.sbom`, any other) names the
//!   manifest `sha256:<hex>`; the tag listing carries it, so recognising it costs no request;
//! - the OCI 1.1 referrers tag schema: the tag `sha256-<64 hex>` is an index listing the referrers of that
//!   digest, for registries without the referrers API;
//! - OCI 1.1 `subject`: any manifest with a `subject` descriptor, read from the manifest itself.
//!
//! Referrers may have referrers (a signature of an attestation), so chains are followed to
//! [`MAX_DEPTH`] levels; a chain that comes back on itself, or goes deeper, is an error and nothing of
//! that repository is deleted.

use std::collections::{BTreeMap, BTreeSet};

use futures_util::stream::{self, StreamExt};
use serde::Deserialize;

use crate::registry::{Client, RegistryError};

/// How many levels of referrers of referrers, or of indexes in indexes, a cleanup follows. Real chains
/// are two or three deep (an image, its attestation, the attestation's signature).
pub const MAX_DEPTH: usize = 16;

/// How a tag names its subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagKind {
    /// cosign's scheme: `sha256-<hex>.<suffix>`.
    Suffixed,
    /// The OCI 1.1 referrers tag schema: `sha256-<hex>`, an index of the subject's referrers.
    SchemaIndex,
}

/// The subject digest a tag names by cosign's scheme or the OCI 1.1 tag schema, and which of the two;
/// `None` for any other tag (a hex part that is not 64 lowercase hex digits makes an ordinary tag).
pub fn tag_subject(tag: &str) -> Option<(String, TagKind)> {
    let rest = tag.strip_prefix("sha256-")?;
    let (hex, kind) = match rest.split_once('.') {
        Some((_, "")) => return None,
        Some((hex, _)) => (hex, TagKind::Suffixed),
        None => (rest, TagKind::SchemaIndex),
    };
    let lower_hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
    (hex.len() == 64 && hex.bytes().all(lower_hex)).then(|| (format!("sha256:{hex}"), kind))
}

/// The digest a manifest body's `subject` names, if it has one.
pub fn manifest_subject(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Doc {
        subject: Option<Descriptor>,
    }
    #[derive(Deserialize)]
    struct Descriptor {
        digest: String,
    }
    serde_json::from_slice::<Doc>(body)
        .ok()?
        .subject
        .map(|subject| subject.digest)
}

/// The subjects of the manifests among `digests` that have one: digest → subject. Each distinct digest
/// is read once, at most `parallel` at a time; a failed read fails the answer, since a referrer taken for
/// an image could be deleted on its own.
pub async fn read_subjects(
    client: &Client,
    repository: &str,
    digests: impl IntoIterator<Item = &str>,
    parallel: usize,
) -> Result<BTreeMap<String, String>, RegistryError> {
    let distinct: BTreeSet<&str> = digests.into_iter().collect();
    let read: Vec<Result<Option<(String, String)>, RegistryError>> = stream::iter(distinct)
        .map(|digest| async move {
            let manifest = client.get_manifest(repository, digest).await?;
            Ok(manifest
                .and_then(|manifest| manifest_subject(&manifest.body))
                .map(|subject| (digest.to_string(), subject)))
        })
        .buffer_unordered(parallel.max(1))
        .collect()
        .await;
    read.into_iter()
        .filter_map(Result::transpose)
        .collect::<Result<_, _>>()
}

/// The digests among `digests` that the registry does not have (one HEAD each, `parallel` at a time):
/// the subjects of orphans.
pub async fn missing(
    client: &Client,
    repository: &str,
    digests: impl IntoIterator<Item = &str>,
    parallel: usize,
) -> Result<BTreeSet<String>, RegistryError> {
    let distinct: BTreeSet<&str> = digests.into_iter().collect();
    let read: Vec<Result<Option<String>, RegistryError>> = stream::iter(distinct)
        .map(|digest| async move {
            let found = client.head_manifest(repository, digest).await?;
            Ok(found.is_none().then(|| digest.to_string()))
        })
        .buffer_unordered(parallel.max(1))
        .collect()
        .await;
    read.into_iter()
        .filter_map(Result::transpose)
        .collect::<Result<_, _>>()
}

/// Why the referrers of a repository cannot be followed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferrerError {
    /// A chain of referrers comes back to where it started.
    #[error(
        "referrer cycle: {0} (a referrer cannot refer to itself, even through others); nothing of this repository is deleted, fix or delete these manifests by digest"
    )]
    Cycle(String),
    /// A chain of referrers, or of indexes in indexes, is deeper than [`MAX_DEPTH`].
    #[error(
        "{what} nested deeper than {MAX_DEPTH} levels (from {start}); nothing of this repository is deleted"
    )]
    TooDeep {
        /// `referrers` or `indexes`.
        what: &'static str,
        /// Where the chain starts.
        start: String,
    },
}

impl From<ReferrerError> for RegistryError {
    fn from(error: ReferrerError) -> RegistryError {
        RegistryError::Config(error.to_string())
    }
}

/// Counts the rounds of a fixed point that follows one more level each round, and fails past
/// [`MAX_DEPTH`]: the one bound on nested indexes and on referrers of referrers.
pub struct Depth {
    what: &'static str,
    start: String,
    level: usize,
}

impl Depth {
    /// A bound on following `what` (`indexes`, `referrers`) from `start` (for the error).
    pub fn new(what: &'static str, start: impl Into<String>) -> Depth {
        Depth {
            what,
            start: start.into(),
            level: 0,
        }
    }

    /// One level deeper.
    pub fn descend(&mut self) -> Result<(), ReferrerError> {
        self.level += 1;
        if self.level > MAX_DEPTH {
            return Err(ReferrerError::TooDeep {
                what: self.what,
                start: self.start.clone(),
            });
        }
        Ok(())
    }
}

/// Checks that the `(referrer digest, subject digest)` edges have no cycle and no chain deeper than
/// [`MAX_DEPTH`].
pub fn check_chains<'a>(
    edges: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<(), ReferrerError> {
    let mut subjects: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (referrer, subject) in edges {
        subjects.entry(referrer).or_default().insert(subject);
    }
    for start in subjects.keys() {
        let mut depth = Depth::new("referrers", *start);
        let mut path: Vec<&str> = vec![start];
        let mut layer: BTreeSet<&str> = BTreeSet::from([*start]);
        // A cycle that does not pass through `start` is reported from one of its own members.
        let mut seen = layer.clone();
        while !layer.is_empty() {
            let next: BTreeSet<&str> = layer
                .iter()
                .filter_map(|digest| subjects.get(digest))
                .flatten()
                .copied()
                .filter(|digest| digest == start || !seen.contains(digest))
                .collect();
            seen.extend(&next);
            if next.contains(start) {
                path.push(start);
                return Err(ReferrerError::Cycle(path.join(" refers to ")));
            }
            if let Some(first) = next.first() {
                path.push(first);
                depth.descend()?;
            }
            layer = next;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn tag_scheme_names_the_subject() {
        let subject = format!("sha256:{HEX}");
        for suffix in ["sig", "att", "sbom", "intoto", "anything"] {
            assert_eq!(
                tag_subject(&format!("sha256-{HEX}.{suffix}")),
                Some((subject.clone(), TagKind::Suffixed))
            );
        }
        assert_eq!(
            tag_subject(&format!("sha256-{HEX}")),
            Some((subject, TagKind::SchemaIndex))
        );
    }

    #[test]
    fn other_tags_are_ordinary() {
        for tag in [
            "latest".to_string(),
            "sha256-abc.sig".into(),
            format!("sha256-{}.sig", &HEX[1..]),
            format!("sha256-{HEX}0.sig"),
            format!("sha256-{}.sig", HEX.to_uppercase()),
            format!("sha256-{}g.sig", &HEX[1..]),
            format!("sha256-{HEX}."),
            format!("sha512-{HEX}.sig"),
            format!("v1-sha256-{HEX}.sig"),
        ] {
            assert_eq!(tag_subject(&tag), None, "{tag}");
        }
    }

    #[test]
    fn subjects_come_from_the_subject_descriptor() {
        let body = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","subject":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:aa","size":3}}"#;
        assert_eq!(manifest_subject(body), Some("sha256:aa".into()));
        assert_eq!(manifest_subject(br#"{"schemaVersion":2}"#), None);
        assert_eq!(manifest_subject(b"not json"), None);
        assert_eq!(manifest_subject(br#"{"subject":{"size":3}}"#), None);
    }

    #[test]
    fn chains_end_and_cycles_do_not() {
        // A signature of an attestation of an image.
        assert_eq!(check_chains([("sig", "att"), ("att", "image")]), Ok(()));
        let error = check_chains([("a", "b"), ("b", "a")]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "referrer cycle: a refers to b refers to a (a referrer cannot refer to itself, even through others); nothing of this repository is deleted, fix or delete these manifests by digest"
        );
        assert!(matches!(
            check_chains([("self", "self")]),
            Err(ReferrerError::Cycle(_))
        ));
        // A cycle that does not pass through the first referrer is found from inside it.
        assert!(matches!(
            check_chains([("a", "b"), ("b", "c"), ("c", "b")]),
            Err(ReferrerError::Cycle(_))
        ));
    }

    #[test]
    fn chains_deeper_than_the_bound_fail() {
        let names: Vec<String> = (0..=MAX_DEPTH + 1).map(|n| format!("m{n}")).collect();
        let edges = |count: usize| -> Vec<(&str, &str)> {
            names[..=count]
                .windows(2)
                .map(|pair| (pair[0].as_str(), pair[1].as_str()))
                .collect()
        };
        assert_eq!(check_chains(edges(MAX_DEPTH)), Ok(()));
        assert_eq!(
            check_chains(edges(MAX_DEPTH + 1)),
            Err(ReferrerError::TooDeep {
                what: "referrers",
                start: "m0".into()
            })
        );
    }
}
