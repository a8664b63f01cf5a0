//! The images a cleanup must keep because something runs them: the workloads of every Kubernetes context
//! ([`kubernetes`]) and the `--keep-images` lines of other deployers ([`keepfile`]), gathered into one
//! [`InUse`] set before a cleanup plans anything. The cleanup engine asks the set about each tag and
//! untagged manifest; a match keeps it with [`crate::policy::Rule::InUse`].
//!
//! References are normalised the way the container runtime pulls them: `nginx` is
//! `docker.io/library/nginx:latest`, a digest pins the manifest whatever the tag says. A tag in use is
//! kept (a restart pulls it again); a digest in use keeps every tag on it, because on several registries
//! deleting the last tag of a manifest deletes the manifest.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Serialize;

use crate::reference::{self, ReferenceError, Repository};

pub mod keepfile;
#[cfg(feature = "kube")]
pub mod kubernetes;

/// An image as a runtime pulls it: the repository, and a tag, a digest or both (`repo:tag@sha256:…` pulls
/// the digest; the tag is kept too, since the workload names it).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Image {
    /// Where it lives, normalised (`docker.io/library/nginx`).
    pub repository: Repository,
    /// The tag; `latest` when neither a tag nor a digest is written.
    pub tag: Option<String>,
    /// The manifest digest.
    pub digest: Option<String>,
}

impl Image {
    /// Parses an image string as Kubernetes passes it to the runtime (`nginx`, `host:5000/a/b:t`,
    /// `repo:t@sha256:…`), or a runtime's `imageID` (`docker-pullable://repo@sha256:…`).
    pub fn parse(input: &str) -> Result<Image, ReferenceError> {
        let error = |reason: String| ReferenceError {
            input: input.to_string(),
            reason,
        };
        let text = input
            .strip_prefix("docker-pullable://")
            .or_else(|| input.strip_prefix("docker://"))
            .unwrap_or(input);
        let (name, digest) = match text.split_once('@') {
            Some((name, digest)) => {
                reference::validate_digest(digest).map_err(error)?;
                (name, Some(digest.to_string()))
            }
            None => (text, None),
        };
        let (name, tag) = match reference::last_component(name).rsplit_once(':') {
            Some((_, tag)) => {
                reference::validate_tag(tag).map_err(error)?;
                (&name[..name.len() - tag.len() - 1], Some(tag.to_string()))
            }
            None if digest.is_none() => (name, Some("latest".to_string())),
            None => (name, None),
        };
        let repository = Repository::parse(name).map_err(|inner| error(inner.reason))?;
        Ok(Image {
            repository,
            tag,
            digest,
        })
    }
}

impl fmt::Display for Image {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// Where a use comes from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    /// A workload: `context/namespace/Kind/name`.
    Workload {
        /// The kubeconfig context.
        context: String,
        /// The namespace.
        namespace: String,
        /// `Pod`, `Deployment`, …
        kind: &'static str,
        /// The object's name.
        name: String,
    },
    /// A `--keep-images` line.
    KeepFile {
        /// The file (`-` for standard input).
        file: String,
        /// The line number, from 1.
        line: usize,
    },
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Workload {
                context,
                namespace,
                kind,
                name,
            } => write!(f, "{context}/{namespace}/{kind}/{name}"),
            Source::KeepFile { file, line } => write!(f, "{file}:{line}"),
        }
    }
}

impl Serialize for Source {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// One image in use and where from, as `regkit in-use` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Use {
    /// The normalised reference (`docker.io/library/nginx:latest`, `host/a@sha256:…`).
    pub reference: String,
    /// The digest, when one is written or the runtime reported it.
    pub digest: Option<String>,
    /// Who uses it.
    pub from: Source,
}

/// Why a tag or manifest is kept: the first user found, and how many others use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keep<'a> {
    /// One workload or keep-file line that uses it.
    pub by: &'a Source,
    /// How many other sources use it.
    pub others: usize,
}

impl fmt::Display for Keep<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "in use by {}", self.by)?;
        match self.others {
            0 => Ok(()),
            1 => write!(f, " and 1 other"),
            others => write!(f, " and {others} others"),
        }
    }
}

/// Every image in use, indexed by repository and tag and by repository and digest.
#[derive(Debug, Default)]
pub struct InUse {
    sources: Vec<Source>,
    source_index: BTreeMap<Source, usize>,
    uses: Vec<(Image, usize)>,
    by_tag: BTreeMap<(String, String), BTreeSet<usize>>,
    by_digest: BTreeMap<(String, String), BTreeSet<usize>>,
    /// What was scanned, in words (`kubernetes: no kubeconfig…`, `kubernetes context prod: 41 objects`).
    pub scanned: Vec<String>,
    /// Objects or lines skipped, and why (an image string that is not a reference).
    pub skipped: Vec<String>,
}

impl InUse {
    /// Records that `from` uses `image`.
    pub fn add(&mut self, image: Image, from: Source) {
        let next = self.sources.len();
        let source = *self.source_index.entry(from.clone()).or_insert(next);
        if source == next {
            self.sources.push(from);
        }
        let repository = image.repository.to_string();
        if let Some(tag) = &image.tag {
            self.by_tag
                .entry((repository.clone(), tag.clone()))
                .or_default()
                .insert(source);
        }
        if let Some(digest) = &image.digest {
            self.by_digest
                .entry((repository, digest.clone()))
                .or_default()
                .insert(source);
        }
        self.uses.push((image, source));
    }

    /// Whether a tag (with its digest, when known) or an untagged manifest of `repository` is in use.
    pub fn keeps(
        &self,
        repository: &str,
        tag: Option<&str>,
        digest: Option<&str>,
    ) -> Option<Keep<'_>> {
        let key = |value: &str| (repository.to_string(), value.to_string());
        let mut users: BTreeSet<usize> = BTreeSet::new();
        if let Some(found) = tag.and_then(|tag| self.by_tag.get(&key(tag))) {
            users.extend(found);
        }
        if let Some(found) = digest.and_then(|digest| self.by_digest.get(&key(digest))) {
            users.extend(found);
        }
        let first = *users.first()?;
        Some(Keep {
            by: &self.sources[first],
            others: users.len() - 1,
        })
    }

    /// Every use, in the order found.
    pub fn uses(&self) -> impl Iterator<Item = Use> + '_ {
        self.uses.iter().map(|(image, source)| Use {
            reference: image.to_string(),
            digest: image.digest.clone(),
            from: self.sources[*source].clone(),
        })
    }

    /// How many distinct images (repository with tag or digest) are in use.
    pub fn len(&self) -> usize {
        self.by_tag.len() + self.by_digest.len()
    }

    /// Whether nothing is in use.
    pub fn is_empty(&self) -> bool {
        self.uses.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn image(input: &str) -> String {
        Image::parse(input).unwrap().to_string()
    }

    #[test]
    fn images_are_normalised_as_the_runtime_pulls_them() {
        assert_eq!(image("nginx"), "docker.io/library/nginx:latest");
        assert_eq!(image("team/app:v1"), "docker.io/team/app:v1");
        assert_eq!(
            image("127.0.0.1:5000/team/app"),
            "127.0.0.1:5000/team/app:latest"
        );
        assert_eq!(
            image(&format!("localhost:5000/app:v2@{D}")),
            format!("localhost:5000/app:v2@{D}")
        );
        assert_eq!(
            image(&format!("docker-pullable://nginx@{D}")),
            format!("docker.io/library/nginx@{D}")
        );
        assert_eq!(
            image("index.docker.io/library/nginx:1"),
            "docker.io/library/nginx:1"
        );
        for bad in ["", "Nginx", "nginx:", "a@sha256:12", "-a", "a b"] {
            let error = Image::parse(bad).unwrap_err();
            assert_eq!(error.input, bad);
        }
    }

    fn workload(name: &str) -> Source {
        Source::Workload {
            context: "prod".into(),
            namespace: "web".into(),
            kind: "Pod",
            name: name.into(),
        }
    }

    #[test]
    fn a_tag_or_a_digest_in_use_keeps_and_names_one_user_and_counts_the_others() {
        let mut set = InUse::default();
        set.add(Image::parse("r.io/app:v1").unwrap(), workload("a"));
        set.add(Image::parse("r.io/app:v1").unwrap(), workload("b"));
        set.add(
            Image::parse(&format!("r.io/app@{D}")).unwrap(),
            workload("c"),
        );
        // The same source twice counts once.
        set.add(
            Image::parse(&format!("r.io/app@{D}")).unwrap(),
            workload("c"),
        );
        let keep = set.keeps("r.io/app", Some("v1"), Some(D)).unwrap();
        assert_eq!(keep.to_string(), "in use by prod/web/Pod/a and 2 others");
        let keep = set.keeps("r.io/app", Some("v9"), Some(D)).unwrap();
        assert_eq!(keep.to_string(), "in use by prod/web/Pod/c");
        assert_eq!(
            set.keeps("r.io/app", None, Some(D)).unwrap().by,
            &workload("c")
        );
        assert!(set.keeps("r.io/app", Some("v2"), None).is_none());
        assert!(set.keeps("r.io/other", Some("v1"), Some(D)).is_none());
        assert_eq!(set.len(), 2);
        assert_eq!(set.uses().count(), 4);
    }
}
