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

use crate::registry::{Client, ReferrerDescriptor, RegistryError};

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

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    digest: String,
    media_type: Option<String>,
    artifact_type: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Doc {
    subject: Option<Descriptor>,
    artifact_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
}

/// What a manifest says about itself as an artifact.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Artifact {
    /// The digest its `subject` names.
    pub subject: Option<String>,
    /// Its type: `artifactType`, else a config type other than an image's, else its first layer's type
    /// (cosign's signatures say what they are there).
    pub artifact_type: Option<String>,
    /// For an index, the manifests it lists with their artifact types.
    pub children: Vec<(String, Option<String>)>,
}

/// A manifest body as an [`Artifact`]; `None` when it is not a manifest document.
pub fn artifact(body: &[u8]) -> Option<Artifact> {
    const IMAGE_CONFIGS: [&str; 2] = [
        "application/vnd.oci.image.config.v1+json",
        "application/vnd.docker.container.image.v1+json",
    ];
    let doc: Doc = serde_json::from_slice(body).ok()?;
    let config_type = doc
        .config
        .and_then(|config| config.media_type)
        .filter(|media_type| !IMAGE_CONFIGS.contains(&media_type.as_str()));
    let layer_type = || {
        doc.layers
            .as_ref()?
            .first()?
            .media_type
            .clone()
            .filter(|_| doc.manifests.is_none())
    };
    Some(Artifact {
        subject: doc.subject.map(|subject| subject.digest),
        artifact_type: doc.artifact_type.or(config_type).or_else(layer_type),
        children: doc
            .manifests
            .unwrap_or_default()
            .into_iter()
            .map(|child| (child.digest, child.artifact_type))
            .collect(),
    })
}

/// The digest a manifest body's `subject` names, if it has one.
pub fn manifest_subject(body: &[u8]) -> Option<String> {
    artifact(body)?.subject
}

/// The manifests among `digests` as artifacts: digest → artifact, for those that exist and are manifest
/// documents. Each distinct digest is read once, at most `parallel` at a time; a failed read fails the
/// answer, since a referrer taken for an image could be deleted on its own.
pub async fn read_artifacts(
    client: &Client,
    repository: &str,
    digests: impl IntoIterator<Item = &str>,
    parallel: usize,
) -> Result<BTreeMap<String, Artifact>, RegistryError> {
    let distinct: BTreeSet<&str> = digests.into_iter().collect();
    let read: Vec<Result<Option<(String, Artifact)>, RegistryError>> = stream::iter(distinct)
        .map(|digest| async move {
            let manifest = client.get_manifest(repository, digest).await?;
            Ok(manifest
                .and_then(|manifest| artifact(&manifest.body))
                .map(|artifact| (digest.to_string(), artifact)))
        })
        .buffer_unordered(parallel.max(1))
        .collect()
        .await;
    read.into_iter()
        .filter_map(Result::transpose)
        .collect::<Result<_, _>>()
}

/// The subjects of the manifests among `digests` that have one: digest → subject (see
/// [`read_artifacts`]).
pub async fn read_subjects(
    client: &Client,
    repository: &str,
    digests: impl IntoIterator<Item = &str>,
    parallel: usize,
) -> Result<BTreeMap<String, String>, RegistryError> {
    Ok(read_artifacts(client, repository, digests, parallel)
        .await?
        .into_iter()
        .filter_map(|(digest, artifact)| Some((digest, artifact.subject?)))
        .collect())
}

/// Subject → the referrers the OCI 1.1 referrers API lists for it.
pub type Listed = BTreeMap<String, Vec<ReferrerDescriptor>>;

/// How an implementation answers for the OCI 1.1 referrers API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiReferrers {
    /// Asked over v2 with the generic client, where a 404 says the registry does not serve it.
    OverV2,
    /// Asked with the vendor's own credentials.
    Listed(Listed),
    /// Not asked: the implementation finds referrers through the vendor's API instead.
    Unused,
}

/// The referrers of each manifest among `digests` through the OCI 1.1 referrers API: subject →
/// referrers, one GET (per page) each, `parallel` at a time; `None` when the registry does not serve
/// the API. The first digest is asked alone, so a registry without it answers one request per run.
pub async fn api_referrers(
    client: &Client,
    repository: &str,
    digests: impl IntoIterator<Item = &str>,
    parallel: usize,
) -> Result<Option<Listed>, RegistryError> {
    let distinct: BTreeSet<&str> = digests.into_iter().collect();
    let mut rest = distinct.into_iter();
    let Some(first) = rest.next() else {
        return Ok(Some(BTreeMap::new()));
    };
    let Some(listed) = client.referrers(repository, first).await? else {
        return Ok(None);
    };
    let mut found = BTreeMap::from([(first.to_string(), listed)]);
    let read: Vec<Result<_, RegistryError>> = stream::iter(rest)
        .map(|digest| async move {
            let listed = client.referrers(repository, digest).await?;
            Ok((digest.to_string(), listed.unwrap_or_default()))
        })
        .buffer_unordered(parallel.max(1))
        .collect()
        .await;
    for answer in read {
        let (digest, listed) = answer?;
        found.insert(digest, listed);
    }
    Ok(Some(found))
}

/// The referrers of each manifest among `digests` through the OCI 1.1 referrers API, as `implementation`
/// asks it ([`Implementation::api_referrers`](crate::implementation::Implementation::api_referrers));
/// `None` where it is not asked or not served.
pub async fn ask_api(
    (implementation, client): (&dyn crate::implementation::Implementation, &Client),
    repository: &crate::reference::Repository,
    digests: &[String],
    parallel: usize,
) -> Result<Option<Listed>, RegistryError> {
    if digests.is_empty() {
        return Ok(None);
    }
    Ok(
        match implementation.api_referrers(repository, digests).await? {
            ApiReferrers::Listed(found) => Some(found),
            ApiReferrers::Unused => None,
            ApiReferrers::OverV2 => {
                let digests = digests.iter().map(String::as_str);
                api_referrers(client, &repository.path, digests, parallel).await?
            }
        },
    )
}

/// One line of `regkit tags --tree`: an image, or a referrer beneath its subject.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TreeNode {
    /// How deep beneath an image (0: an image, or an orphan).
    pub depth: usize,
    /// Its tags, comma-separated; `None` for a referrer only an index lists.
    pub tag: Option<String>,
    /// Its digest.
    pub digest: String,
    /// What it refers to, for a referrer.
    pub subject: Option<String>,
    /// Its artifact type, when it says.
    pub artifact_type: Option<String>,
    /// A referrer whose subject is not in the repository.
    pub orphan: bool,
}

/// The repository's images with their referrers beneath them, recursively (as `oras discover` shows
/// them), from `tags` (tag → digest), one read of each distinct manifest and, where the registry serves
/// it, what the referrers API listed for them (`api`: untagged referrers too); orphans come last.
pub async fn tree(
    client: &Client,
    repository: &str,
    tags: &[(String, String)],
    api: Option<&Listed>,
    parallel: usize,
) -> Result<Vec<TreeNode>, RegistryError> {
    let mut names: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (tag, digest) in tags {
        names.entry(digest).or_default().push(tag);
    }
    let mut artifacts = read_artifacts(client, repository, names.keys().copied(), parallel).await?;
    // Subjects: by tag name first (cosign's scheme, the tag schema), else the manifest's own.
    let mut subject_of: BTreeMap<String, String> = BTreeMap::new();
    for (tag, digest) in tags {
        if let Some((subject, _)) = tag_subject(tag) {
            subject_of.insert(digest.clone(), subject);
        }
    }
    let mut listed: Vec<(String, Option<String>, String)> = Vec::new();
    for (digest, artifact) in &artifacts {
        if let Some(subject) = &artifact.subject {
            subject_of
                .entry(digest.clone())
                .or_insert_with(|| subject.clone());
        }
        let schema = names
            .get(digest.as_str())
            .into_iter()
            .flatten()
            .find_map(|tag| tag_subject(tag).filter(|(_, kind)| *kind == TagKind::SchemaIndex));
        if let Some((subject, _)) = schema {
            for (child, artifact_type) in &artifact.children {
                listed.push((child.clone(), artifact_type.clone(), subject.clone()));
            }
        }
    }
    for (subject, referrers) in api.into_iter().flatten() {
        for referrer in referrers {
            let artifact_type = referrer.artifact_type.clone();
            listed.push((referrer.digest.clone(), artifact_type, subject.clone()));
        }
    }
    for (child, artifact_type, subject) in listed {
        subject_of.entry(child.clone()).or_insert(subject);
        artifacts.entry(child).or_insert_with(|| Artifact {
            artifact_type,
            ..Artifact::default()
        });
    }
    check_chains(subject_of.iter().map(|(a, b)| (a.as_str(), b.as_str())))?;
    let mut referrers: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (referrer, subject) in &subject_of {
        referrers.entry(subject).or_default().push(referrer);
    }
    let node = |digest: &str, depth: usize, orphan: bool| TreeNode {
        depth,
        tag: names.get(digest).map(|tags| tags.join(",")),
        digest: digest.to_string(),
        subject: subject_of.get(digest).cloned(),
        artifact_type: artifacts.get(digest).and_then(|a| a.artifact_type.clone()),
        orphan,
    };
    let mut nodes = Vec::new();
    let mut stack: Vec<(&str, usize, bool)> = Vec::new();
    // An index's untagged children exist too: a signed platform manifest heads a tree of its own.
    let children: BTreeSet<&str> = artifacts
        .values()
        .flat_map(|artifact| &artifact.children)
        .map(|(child, _)| child.as_str())
        .collect();
    let known = |digest: &str| {
        names.contains_key(digest) || artifacts.contains_key(digest) || children.contains(digest)
    };
    let untagged_subjects: BTreeSet<&str> = subject_of
        .values()
        .map(String::as_str)
        .filter(|subject| !names.contains_key(subject) && children.contains(subject))
        .collect();
    let roots = names
        .keys()
        .copied()
        .chain(untagged_subjects)
        .filter(|digest| !subject_of.contains_key(*digest))
        .map(|digest| (digest, false));
    let orphans = subject_of
        .iter()
        .filter(|(_, subject)| !known(subject))
        .map(|(digest, _)| (digest.as_str(), true));
    for (root, orphan) in roots.chain(orphans) {
        stack.push((root, 0, orphan));
        while let Some((digest, depth, orphan)) = stack.pop() {
            nodes.push(node(digest, depth, orphan));
            for child in referrers.get(digest).into_iter().flatten().rev() {
                stack.push((child, depth + 1, false));
            }
        }
    }
    Ok(nodes)
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
    fn artifact_types_come_from_the_manifest() {
        let typed = br#"{"artifactType":"application/spdx+json","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:e"}}"#;
        assert_eq!(
            artifact(typed).unwrap().artifact_type.as_deref(),
            Some("application/spdx+json")
        );
        let cosign = br#"{"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:c"},"layers":[{"mediaType":"application/vnd.dev.cosign.simplesigning.v1+json","digest":"sha256:l"}]}"#;
        assert_eq!(
            artifact(cosign).unwrap().artifact_type.as_deref(),
            Some("application/vnd.dev.cosign.simplesigning.v1+json")
        );
        let index =
            br#"{"manifests":[{"digest":"sha256:a","artifactType":"application/vnd.example"}]}"#;
        let index = artifact(index).unwrap();
        assert_eq!(index.artifact_type, None);
        assert_eq!(
            index.children,
            [(
                "sha256:a".to_string(),
                Some("application/vnd.example".to_string())
            )]
        );
        assert_eq!(artifact(b"[1]"), None);
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
