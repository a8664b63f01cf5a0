//! ECR cleanup: list a repository's images with `DescribeImages`, remove tags with `BatchDeleteImage`.
//!
//! Deleting by `imageTag` removes only that tag: ECR keeps the image for its other tags and deletes it
//! with its last tag. Deleting by `imageDigest` removes the image and every tag on it, so callers do that
//! only for digests the user named. A batch carries at most [`MAX_BATCH`] ids (the API's limit), and a
//! batch that partly fails still succeeds as a call: every entry of `failures[]` becomes that id's outcome.
//!
//! Untagged images are found in the same `DescribeImages` listing (it returns tagged and untagged images
//! alike), minus every image an index in the repository references: those index manifests are read with
//! `BatchGetImage`. `cleanup --untagged` reads the untagged images' manifests with it too, for their OCI 1.1
//! `subject`: a referrer is never swept on its own.
//!
//! ECR has no v2 `_catalog`: `REGISTRY/PREFIX/*` is expanded from `DescribeRepositories`.

use std::collections::{BTreeMap, BTreeSet};

use super::aws::{classify, ecr_cleanup_client, sdk_config};
use super::host::EcrRegistry;
use super::identity::{Identity, IdentityMap};
use super::{EcrError, Env};
use crate::dates::Timestamp;
use crate::referrers::manifest_subject;
use crate::registry::pager::{self, Pager};

/// The most image ids one `BatchDeleteImage` accepts.
pub const MAX_BATCH: usize = 100;
/// The page size asked of `DescribeImages` and `DescribeRepositories` (both APIs' maximum).
const PAGE_SIZE: i32 = 1000;
/// The most image ids one `BatchGetImage` accepts.
const MAX_GET: usize = 100;
/// The manifest types that list other manifests (`manifests[]`).
const INDEX_MEDIA_TYPES: [&str; 2] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];
/// Every manifest type, accepted by `BatchGetImage` so ECR hands each manifest back as stored instead of
/// converting or refusing it.
const ACCEPTED_MEDIA_TYPES: [&str; 5] = [
    INDEX_MEDIA_TYPES[0],
    INDEX_MEDIA_TYPES[1],
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.v1+json",
];

/// One image as `DescribeImages` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// `sha256:…`.
    pub digest: String,
    /// Its tags (empty when untagged).
    pub tags: Vec<String>,
    /// When it was pushed.
    pub pushed_at: Option<Timestamp>,
    /// `lastRecordedPullTime`: ECR leaves it out for an image never pulled, and refreshes it at least once a
    /// day, so a pull within the last day may not show yet.
    pub last_pulled: Option<Timestamp>,
    /// `imageManifestMediaType`, when ECR reports it.
    pub media_type: Option<String>,
}

impl Image {
    /// Whether its manifest may list other manifests: an index or manifest list, or a type ECR did not
    /// report (read to find out rather than assume it references nothing).
    fn may_be_index(&self) -> bool {
        self.media_type
            .as_deref()
            .is_none_or(|media_type| INDEX_MEDIA_TYPES.contains(&media_type))
    }
}

/// What to delete.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ImageId {
    /// A tag: only the tag goes (the image too when it was its last tag).
    Tag(String),
    /// A digest: the image and all its tags go.
    Digest(String),
}

/// What happened to one id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// ECR removed it; the digest it pointed at, when ECR said.
    Removed {
        /// The image digest.
        digest: Option<String>,
    },
    /// It did not exist (`ImageNotFound`, or the repository is gone).
    Absent,
    /// ECR refused it (a `failures[]` entry) or the call failed.
    Failed {
        /// The failure code (`ImageReferencedByManifestList`…), or the call's error class.
        code: String,
        /// What ECR said.
        reason: String,
    },
}

/// One page of `DescribeImages`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Page {
    /// The images of the page.
    pub images: Vec<Image>,
    /// The token of the next page.
    pub next_token: Option<String>,
}

/// One `failures[]` entry of `BatchDeleteImage`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The id it is about.
    pub id: Option<ImageId>,
    /// `failureCode`.
    pub code: String,
    /// `failureReason`.
    pub reason: String,
}

/// The answer of one `BatchDeleteImage`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BatchResult {
    /// `imageIds`: (tag, digest) of every id removed.
    pub removed: Vec<(Option<String>, Option<String>)>,
    /// `failures`.
    pub failures: Vec<Failure>,
}

/// The answer of one `BatchGetImage`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Manifests {
    /// (digest, manifest body) of every image returned.
    pub found: Vec<(String, String)>,
    /// `failures`.
    pub failures: Vec<Failure>,
}

/// The calls the cleanup needs; the SDK implements them, unit tests fake them.
pub(crate) trait Api {
    async fn describe_page(
        &self,
        repository: &str,
        token: Option<String>,
    ) -> Result<Page, EcrError>;
    async fn batch_delete(
        &self,
        repository: &str,
        ids: &[ImageId],
    ) -> Result<BatchResult, EcrError>;
    async fn batch_get(&self, repository: &str, digests: &[String]) -> Result<Manifests, EcrError>;
}

/// The one call that lists repositories; the SDK implements it, unit tests fake it.
pub(crate) trait RepositoryApi {
    /// One page of `DescribeRepositories`: the repository names and the next page's token.
    async fn repositories_page(
        &self,
        token: Option<String>,
    ) -> Result<(Vec<String>, Option<String>), EcrError>;
}

/// A private ECR registry reached through the SDK.
#[derive(Debug, Clone)]
pub struct EcrRepositories {
    client: aws_sdk_ecr::Client,
    registry_id: String,
    host: String,
}

impl EcrRepositories {
    /// Connects to `registry` (a private registry host) with the identity regkit's config file maps it to,
    /// else the SDK's default chain. Nothing is sent yet.
    pub async fn connect(registry: &EcrRegistry, env: &Env) -> Result<EcrRepositories, EcrError> {
        let EcrRegistry::Private { account, .. } = registry else {
            return Err(EcrError::Config(format!(
                "{registry}: cleaning ECR Public repositories is not supported; use a private ECR registry host"
            )));
        };
        let map = IdentityMap::load(env)?;
        let identity = Identity::for_host(&map, registry.host(), env);
        let config = sdk_config(registry.region(), &identity).await;
        Ok(EcrRepositories {
            client: ecr_cleanup_client(&config, registry, env),
            registry_id: account.clone(),
            host: registry.host().to_owned(),
        })
    }

    /// The registry host.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Every image of `repository`, following `nextToken`.
    pub async fn images(&self, repository: &str) -> Result<Vec<Image>, EcrError> {
        list_images(self, repository).await
    }

    /// The names of the registry's repositories that start with `prefix` (as `_catalog` is filtered),
    /// sorted.
    pub async fn repositories(&self, prefix: &str) -> Result<Vec<String>, EcrError> {
        list_repositories(self, prefix).await
    }

    /// The images of `listing` (a [`EcrRepositories::images`] answer for `repository`) that have no tag
    /// and that no index in the repository references, tagged or not: ECR refuses to delete those
    /// (`ImageReferencedByManifestList`), and they go in a later run once their index is gone.
    pub async fn untagged(
        &self,
        repository: &str,
        listing: &[Image],
    ) -> Result<Vec<Image>, EcrError> {
        untagged(self, repository, listing).await
    }

    /// The `subject` of each manifest among `digests` that has one (digest → subject), read with
    /// `BatchGetImage`; one that no longer exists has none, one that cannot be read fails the answer.
    pub async fn subjects(
        &self,
        repository: &str,
        digests: &[String],
    ) -> Result<BTreeMap<String, String>, EcrError> {
        subjects(self, repository, digests).await
    }

    /// Deletes `ids` in batches of [`MAX_BATCH`]; one outcome per distinct id, in request order.
    pub async fn delete(&self, repository: &str, ids: &[ImageId]) -> Vec<(ImageId, Outcome)> {
        delete_ids(self, repository, ids, &|_| {}).await
    }

    /// [`EcrRepositories::delete`], calling `progress` with the number of ids finished after each batch.
    pub async fn delete_with_progress(
        &self,
        repository: &str,
        ids: &[ImageId],
        progress: &dyn Fn(u64),
    ) -> Vec<(ImageId, Outcome)> {
        delete_ids(self, repository, ids, progress).await
    }

    fn fix_repository(&self, error: EcrError, repository: &str) -> EcrError {
        match error {
            EcrError::RepositoryNotFound { registry, .. } => EcrError::RepositoryNotFound {
                registry,
                repository: repository.to_owned(),
            },
            other => other,
        }
    }
}

/// One `imageDetails` entry of `DescribeImages`; none without a digest.
fn image(detail: &aws_sdk_ecr::types::ImageDetail) -> Option<Image> {
    let time = |time: &aws_sdk_ecr::primitives::DateTime| Timestamp::from_unix_seconds(time.secs());
    Some(Image {
        digest: detail.image_digest()?.to_owned(),
        tags: detail.image_tags().to_vec(),
        pushed_at: detail.image_pushed_at().map(time),
        last_pulled: detail.last_recorded_pull_time().map(time),
        media_type: detail.image_manifest_media_type().map(str::to_owned),
    })
}

impl Api for EcrRepositories {
    async fn describe_page(
        &self,
        repository: &str,
        token: Option<String>,
    ) -> Result<Page, EcrError> {
        let output = self
            .client
            .describe_images()
            .registry_id(&self.registry_id)
            .repository_name(repository)
            .max_results(PAGE_SIZE)
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| {
                self.fix_repository(classify(e, &self.host, "DescribeImages"), repository)
            })?;
        let images = output.image_details().iter().filter_map(image).collect();
        Ok(Page {
            images,
            next_token: output.next_token().map(str::to_owned),
        })
    }

    async fn batch_delete(
        &self,
        repository: &str,
        ids: &[ImageId],
    ) -> Result<BatchResult, EcrError> {
        use aws_sdk_ecr::types::ImageIdentifier;
        let identifiers = ids
            .iter()
            .map(|id| match id {
                ImageId::Tag(tag) => ImageIdentifier::builder().image_tag(tag).build(),
                ImageId::Digest(digest) => ImageIdentifier::builder().image_digest(digest).build(),
            })
            .collect();
        let output = self
            .client
            .batch_delete_image()
            .registry_id(&self.registry_id)
            .repository_name(repository)
            .set_image_ids(Some(identifiers))
            .send()
            .await
            .map_err(|e| {
                self.fix_repository(classify(e, &self.host, "BatchDeleteImage"), repository)
            })?;
        Ok(BatchResult {
            removed: output
                .image_ids()
                .iter()
                .map(|id| {
                    (
                        id.image_tag().map(str::to_owned),
                        id.image_digest().map(str::to_owned),
                    )
                })
                .collect(),
            failures: output.failures().iter().map(failure).collect(),
        })
    }

    async fn batch_get(&self, repository: &str, digests: &[String]) -> Result<Manifests, EcrError> {
        use aws_sdk_ecr::types::ImageIdentifier;
        let output = self
            .client
            .batch_get_image()
            .registry_id(&self.registry_id)
            .repository_name(repository)
            .set_image_ids(Some(
                digests
                    .iter()
                    .map(|digest| ImageIdentifier::builder().image_digest(digest).build())
                    .collect(),
            ))
            .set_accepted_media_types(Some(
                ACCEPTED_MEDIA_TYPES.iter().map(|t| t.to_string()).collect(),
            ))
            .send()
            .await
            .map_err(|e| {
                self.fix_repository(classify(e, &self.host, "BatchGetImage"), repository)
            })?;
        Ok(Manifests {
            found: output
                .images()
                .iter()
                .filter_map(|image| {
                    Some((
                        image.image_id()?.image_digest()?.to_owned(),
                        image.image_manifest()?.to_owned(),
                    ))
                })
                .collect(),
            failures: output.failures().iter().map(failure).collect(),
        })
    }
}

impl RepositoryApi for EcrRepositories {
    async fn repositories_page(
        &self,
        token: Option<String>,
    ) -> Result<(Vec<String>, Option<String>), EcrError> {
        let output = self
            .client
            .describe_repositories()
            .registry_id(&self.registry_id)
            .max_results(PAGE_SIZE)
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| classify(e, &self.host, "DescribeRepositories"))?;
        let names = output
            .repositories()
            .iter()
            .filter_map(|repository| repository.repository_name().map(str::to_owned))
            .collect();
        Ok((names, output.next_token().map(str::to_owned)))
    }
}

fn failure(failure: &aws_sdk_ecr::types::ImageFailure) -> Failure {
    let id = failure
        .image_id()
        .and_then(|id| match (id.image_tag(), id.image_digest()) {
            (Some(tag), _) => Some(ImageId::Tag(tag.to_owned())),
            (None, Some(digest)) => Some(ImageId::Digest(digest.to_owned())),
            (None, None) => None,
        });
    Failure {
        id,
        code: failure
            .failure_code()
            .map_or_else(|| "Unknown".to_owned(), |code| code.as_str().to_owned()),
        reason: failure.failure_reason().unwrap_or_default().to_owned(),
    }
}

/// Every image of `repository`, following `nextToken` to the end.
pub(crate) async fn list_images(api: &impl Api, repository: &str) -> Result<Vec<Image>, EcrError> {
    let operation = format!("DescribeImages of {repository}");
    Pager::new("", &operation, "nextToken")
        .empty_pages_continue()
        .collect(|token| async move {
            let page = api.describe_page(repository, token).await?;
            let digests: Vec<String> = page.images.iter().map(|i| i.digest.clone()).collect();
            Ok::<_, EcrError>(pager::Page::new(page.images, page.next_token, digests))
        })
        .await
}

/// See [`EcrRepositories::repositories`]. `DescribeRepositories` has no name filter, so every page is
/// read and filtered here.
pub(crate) async fn list_repositories(
    api: &impl RepositoryApi,
    prefix: &str,
) -> Result<Vec<String>, EcrError> {
    let mut names = Pager::new("", "DescribeRepositories", "nextToken")
        .empty_pages_continue()
        .collect(|token| async move {
            let (names, next) = api.repositories_page(token).await?;
            let content = names.clone();
            Ok::<_, EcrError>(pager::Page::new(names, next, content))
        })
        .await?;
    names.retain(|name| name.starts_with(prefix));
    names.sort();
    names.dedup();
    Ok(names)
}

/// See [`EcrRepositories::untagged`]. Every image that may be an index is read, [`MAX_GET`] per call, so
/// nested indexes need no second round. Any index that cannot be read fails the whole answer, since a
/// missed reference would let the cleanup delete a manifest an index still needs; one that is gone since
/// the listing references nothing any more.
pub(crate) async fn untagged(
    api: &impl Api,
    repository: &str,
    listing: &[Image],
) -> Result<Vec<Image>, EcrError> {
    let indexes: Vec<String> = listing
        .iter()
        .filter(|image| image.may_be_index())
        .map(|image| image.digest.clone())
        .collect();
    let why = "to spare the images it references";
    let mut referenced: BTreeSet<String> = BTreeSet::new();
    for (digest, body) in manifests(api, repository, &indexes, why).await? {
        let children = crate::dates::manifest_children(body.as_bytes()).ok_or_else(|| {
            unreadable(repository, &digest, why, "not a manifest document".into())
        })?;
        referenced.extend(children);
    }
    Ok(listing
        .iter()
        .filter(|image| image.tags.is_empty() && !referenced.contains(&image.digest))
        .cloned()
        .collect())
}

/// See [`EcrRepositories::subjects`]: the manifests are read [`MAX_GET`] per call.
pub(crate) async fn subjects(
    api: &impl Api,
    repository: &str,
    digests: &[String],
) -> Result<BTreeMap<String, String>, EcrError> {
    let why = "for its subject (a signature or attestation is never swept on its own)";
    Ok(manifests(api, repository, digests, why)
        .await?
        .into_iter()
        .filter_map(|(digest, body)| Some((digest, manifest_subject(body.as_bytes())?)))
        .collect())
}

/// The failure to read `digest` of `repository` `why`.
fn unreadable(repository: &str, digest: &str, why: &str, reason: String) -> EcrError {
    EcrError::Api {
        registry: String::new(),
        operation: "BatchGetImage".into(),
        status: None,
        message: format!("cannot read manifest {digest} of {repository} {why}: {reason}"),
    }
}

/// (digest, body) of each distinct manifest among `digests` that still exists, [`MAX_GET`] per
/// `BatchGetImage`. Any other failure, or a digest ECR answers neither way, fails the answer, naming
/// `why` it was read.
async fn manifests(
    api: &impl Api,
    repository: &str,
    digests: &[String],
    why: &str,
) -> Result<Vec<(String, String)>, EcrError> {
    let distinct: Vec<String> = digests
        .iter()
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut found = Vec::new();
    for chunk in distinct.chunks(MAX_GET) {
        let answer = api.batch_get(repository, chunk).await?;
        if let Some(failure) = answer.failures.iter().find(|f| f.code != "ImageNotFound") {
            let digest = match &failure.id {
                Some(ImageId::Digest(digest)) => digest.as_str(),
                _ => "(unnamed)",
            };
            return Err(unreadable(
                repository,
                digest,
                why,
                format!("{}: {}", failure.code, failure.reason),
            ));
        }
        // moto names no digest in its `ImageNotFound` entries, so they are counted rather than matched.
        let missing: Vec<&String> = chunk
            .iter()
            .filter(|digest| !answer.found.iter().any(|(found, _)| found == *digest))
            .collect();
        if let Some(digest) = missing.get(answer.failures.len()) {
            return Err(unreadable(
                repository,
                digest,
                why,
                "ECR returned neither it nor a failure".into(),
            ));
        }
        found.extend(answer.found);
    }
    Ok(found)
}

/// Deletes distinct `ids` in order, [`MAX_BATCH`] per call, and maps every answer back to its id.
pub(crate) async fn delete_ids(
    api: &impl Api,
    repository: &str,
    ids: &[ImageId],
    progress: &dyn Fn(u64),
) -> Vec<(ImageId, Outcome)> {
    let mut distinct: Vec<ImageId> = Vec::with_capacity(ids.len());
    for id in ids {
        if !distinct.contains(id) {
            distinct.push(id.clone());
        }
    }
    let mut outcomes = Vec::with_capacity(distinct.len());
    for chunk in distinct.chunks(MAX_BATCH) {
        let answers = match api.batch_delete(repository, chunk).await {
            Ok(result) => map_batch(chunk, result),
            Err(EcrError::RepositoryNotFound { .. }) => chunk
                .iter()
                .map(|id| (id.clone(), Outcome::Absent))
                .collect(),
            Err(error) => {
                let code = match &error {
                    EcrError::Credentials { .. } => "Credentials",
                    EcrError::Denied { .. } => "AccessDenied",
                    EcrError::Transport { .. } => "Transport",
                    _ => "Error",
                };
                chunk
                    .iter()
                    .map(|id| {
                        (
                            id.clone(),
                            Outcome::Failed {
                                code: code.to_owned(),
                                reason: error.to_string(),
                            },
                        )
                    })
                    .collect()
            }
        };
        progress(chunk.len() as u64);
        outcomes.extend(answers);
    }
    outcomes
}

fn map_batch(chunk: &[ImageId], result: BatchResult) -> Vec<(ImageId, Outcome)> {
    chunk
        .iter()
        .map(|id| {
            if let Some(failure) = result.failures.iter().find(|f| f.id.as_ref() == Some(id)) {
                let outcome = if failure.code == "ImageNotFound" {
                    Outcome::Absent
                } else {
                    Outcome::Failed {
                        code: failure.code.clone(),
                        reason: failure.reason.clone(),
                    }
                };
                return (id.clone(), outcome);
            }
            let removed = result.removed.iter().find(|(tag, digest)| match id {
                ImageId::Tag(wanted) => tag.as_ref() == Some(wanted),
                ImageId::Digest(wanted) => tag.is_none() && digest.as_ref() == Some(wanted),
            });
            let removed = removed.or_else(|| match id {
                // ECR lists a digest deletion once per tag it removed.
                ImageId::Digest(wanted) => result
                    .removed
                    .iter()
                    .find(|(_, digest)| digest.as_ref() == Some(wanted)),
                ImageId::Tag(_) => None,
            });
            let outcome = match (removed, id) {
                (Some((_, digest)), _) => Outcome::Removed {
                    digest: digest.clone(),
                },
                // moto deletes an untagged image by digest without listing it in `imageIds`. The call
                // succeeded and `failures[]` does not name the digest, so the image is gone.
                (None, ImageId::Digest(wanted)) => Outcome::Removed {
                    digest: Some(wanted.clone()),
                },
                (None, ImageId::Tag(_)) => Outcome::Failed {
                    code: "Unreported".into(),
                    reason: "ECR reported neither a deletion nor a failure for it".into(),
                },
            };
            (id.clone(), outcome)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::BTreeMap;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    use super::*;

    /// ECR's semantics in memory, with real pagination and the 100-id limit enforced.
    #[derive(Default)]
    struct Fake {
        /// tag → digest.
        tags: RefCell<BTreeMap<String, String>>,
        /// digests of tag-less images kept alive, and digests referenced by an index.
        referenced: Vec<String>,
        page_size: usize,
        calls: RefCell<Vec<usize>>,
        pages: RefCell<usize>,
        loop_tokens: bool,
    }

    impl Api for Fake {
        async fn describe_page(&self, _: &str, token: Option<String>) -> Result<Page, EcrError> {
            *self.pages.borrow_mut() += 1;
            let mut by_digest: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for (tag, digest) in self.tags.borrow().iter() {
                by_digest
                    .entry(digest.clone())
                    .or_default()
                    .push(tag.clone());
            }
            let all: Vec<Image> = by_digest
                .into_iter()
                .map(|(digest, tags)| Image {
                    digest,
                    tags,
                    pushed_at: None,
                    last_pulled: None,
                    media_type: Some(ACCEPTED_MEDIA_TYPES[3].into()),
                })
                .collect();
            let start: usize = token.map_or(0, |t| t.parse().unwrap_or(0));
            let end = (start + self.page_size).min(all.len());
            let next_token = if self.loop_tokens {
                Some("same".into())
            } else {
                (end < all.len()).then(|| end.to_string())
            };
            Ok(Page {
                images: all[start..end].to_vec(),
                next_token,
            })
        }

        async fn batch_delete(&self, _: &str, ids: &[ImageId]) -> Result<BatchResult, EcrError> {
            assert!(ids.len() <= MAX_BATCH, "{} ids in one call", ids.len());
            self.calls.borrow_mut().push(ids.len());
            let mut result = BatchResult::default();
            let mut tags = self.tags.borrow_mut();
            for id in ids {
                match id {
                    ImageId::Tag(tag) => match tags.get(tag).cloned() {
                        Some(digest)
                            if self.referenced.contains(&digest)
                                && tags.values().filter(|d| **d == digest).count() == 1 =>
                        {
                            result.failures.push(Failure {
                                id: Some(id.clone()),
                                code: "ImageReferencedByManifestList".into(),
                                reason: "Requested image referenced by manifest list".into(),
                            });
                        }
                        Some(digest) => {
                            tags.remove(tag);
                            result.removed.push((Some(tag.clone()), Some(digest)));
                        }
                        None => result.failures.push(Failure {
                            id: Some(id.clone()),
                            code: "ImageNotFound".into(),
                            reason: "Requested image not found".into(),
                        }),
                    },
                    ImageId::Digest(digest) => {
                        let removed: Vec<String> = tags
                            .iter()
                            .filter(|(_, d)| *d == digest)
                            .map(|(t, _)| t.clone())
                            .collect();
                        if removed.is_empty() {
                            result.failures.push(Failure {
                                id: Some(id.clone()),
                                code: "ImageNotFound".into(),
                                reason: "Requested image not found".into(),
                            });
                        }
                        for tag in removed {
                            tags.remove(&tag);
                            result.removed.push((Some(tag), Some(digest.clone())));
                        }
                    }
                }
            }
            Ok(result)
        }

        async fn batch_get(&self, _: &str, _: &[String]) -> Result<Manifests, EcrError> {
            unreachable!("the delete tests read no manifests")
        }
    }

    /// The fake never waits, so one poll finishes every future.
    fn ready<T>(future: impl Future<Output = T>) -> T {
        match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(value) => value,
            Poll::Pending => panic!("the fake never waits"),
        }
    }

    fn fake(images: usize, tags_per_image: usize, page_size: usize) -> Fake {
        let fake = Fake {
            page_size,
            ..Fake::default()
        };
        for image in 0..images {
            for tag in 0..tags_per_image {
                fake.tags
                    .borrow_mut()
                    .insert(format!("i{image}-t{tag}"), format!("sha256:{image:064}"));
            }
        }
        fake
    }

    /// `DescribeRepositories` in pages of fixed names; the token is the next page's index.
    struct Catalog {
        pages: Vec<Vec<&'static str>>,
        calls: RefCell<Vec<Option<String>>>,
    }

    impl RepositoryApi for Catalog {
        async fn repositories_page(
            &self,
            token: Option<String>,
        ) -> Result<(Vec<String>, Option<String>), EcrError> {
            self.calls.borrow_mut().push(token.clone());
            let index: usize = token.map_or(0, |t| t.parse().unwrap());
            let names = self.pages[index].iter().map(|n| n.to_string()).collect();
            let next = (index + 1 < self.pages.len()).then(|| (index + 1).to_string());
            Ok((names, next))
        }
    }

    #[test]
    fn repositories_are_read_from_every_page_and_filtered_by_prefix() {
        let catalog = Catalog {
            pages: vec![
                vec!["team/b", "other/c", "teams/x"],
                vec!["team/a", "team"],
                vec!["team/a/deep"],
            ],
            calls: RefCell::new(Vec::new()),
        };
        assert_eq!(
            ready(list_repositories(&catalog, "team/")).unwrap(),
            ["team/a", "team/a/deep", "team/b"]
        );
        assert_eq!(
            *catalog.calls.borrow(),
            [None, Some("1".to_string()), Some("2".to_string())]
        );
        assert_eq!(ready(list_repositories(&catalog, "")).unwrap().len(), 6);
        assert!(
            ready(list_repositories(&catalog, "none/"))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn listing_follows_every_page() {
        let api = fake(2500, 1, 1000);
        let images = ready(list_images(&api, "r")).unwrap();
        assert_eq!(images.len(), 2500);
        assert_eq!(*api.pages.borrow(), 3);
        let one_page = fake(3, 2, 1000);
        assert_eq!(ready(list_images(&one_page, "r")).unwrap().len(), 3);
        assert_eq!(*one_page.pages.borrow(), 1);
    }

    #[test]
    fn a_repeated_token_ends_the_listing() {
        let api = Fake {
            page_size: 1,
            loop_tokens: true,
            ..fake(3, 1, 1)
        };
        let error = ready(list_images(&api, "r")).unwrap_err();
        assert!(error.to_string().contains("repeats nextToken"), "{error}");
        assert_eq!(*api.pages.borrow(), 2);
        assert!(matches!(error, EcrError::Unbounded(_)), "{error:?}");
    }

    #[test]
    fn deletes_are_chunked_by_100_and_keep_siblings() {
        // 250 images with 2 tags each; delete the first tag of each: every image stays with its sibling.
        let api = fake(250, 2, 1000);
        let ids: Vec<ImageId> = (0..250).map(|i| ImageId::Tag(format!("i{i}-t0"))).collect();
        let progress = RefCell::new(Vec::new());
        let outcomes = ready(delete_ids(&api, "r", &ids, &|n| {
            progress.borrow_mut().push(n)
        }));
        assert_eq!(*api.calls.borrow(), vec![100, 100, 50]);
        assert_eq!(*progress.borrow(), vec![100, 100, 50]);
        assert_eq!(outcomes.len(), 250);
        for (i, (id, outcome)) in outcomes.iter().enumerate() {
            assert_eq!(id, &ids[i]);
            assert_eq!(
                outcome,
                &Outcome::Removed {
                    digest: Some(format!("sha256:{i:064}"))
                }
            );
        }
        assert_eq!(api.tags.borrow().len(), 250);
        assert!(api.tags.borrow().keys().all(|tag| tag.ends_with("-t1")));
    }

    #[test]
    fn failures_map_to_their_ids() {
        let mut api = fake(3, 1, 1000);
        api.referenced.push(format!("sha256:{:064}", 1));
        let ids = vec![
            ImageId::Tag("i0-t0".into()),
            ImageId::Tag("i1-t0".into()),
            ImageId::Tag("missing".into()),
            ImageId::Tag("i0-t0".into()),
            ImageId::Digest(format!("sha256:{:064}", 2)),
            ImageId::Digest(format!("sha256:{:064}", 9)),
        ];
        let outcomes = ready(delete_ids(&api, "r", &ids, &|_| {}));
        assert_eq!(
            outcomes,
            vec![
                (
                    ids[0].clone(),
                    Outcome::Removed {
                        digest: Some(format!("sha256:{:064}", 0))
                    }
                ),
                (
                    ids[1].clone(),
                    Outcome::Failed {
                        code: "ImageReferencedByManifestList".into(),
                        reason: "Requested image referenced by manifest list".into()
                    }
                ),
                (ids[2].clone(), Outcome::Absent),
                (
                    ids[4].clone(),
                    Outcome::Removed {
                        digest: Some(format!("sha256:{:064}", 2))
                    }
                ),
                (ids[5].clone(), Outcome::Absent),
            ]
        );
    }

    #[test]
    fn an_unlisted_digest_without_a_failure_is_removed_but_a_tag_is_not() {
        let ids = [
            ImageId::Digest("sha256:untagged".into()),
            ImageId::Tag("quiet".into()),
        ];
        assert_eq!(
            map_batch(&ids, BatchResult::default()),
            vec![
                (
                    ids[0].clone(),
                    Outcome::Removed {
                        digest: Some("sha256:untagged".into())
                    }
                ),
                (
                    ids[1].clone(),
                    Outcome::Failed {
                        code: "Unreported".into(),
                        reason: "ECR reported neither a deletion nor a failure for it".into()
                    }
                ),
            ]
        );
    }

    #[test]
    fn a_failed_call_fails_its_chunk_only_and_a_missing_repository_is_absent() {
        struct Broken(RefCell<usize>);
        impl Api for Broken {
            async fn describe_page(&self, _: &str, _: Option<String>) -> Result<Page, EcrError> {
                Ok(Page::default())
            }
            async fn batch_get(&self, _: &str, _: &[String]) -> Result<Manifests, EcrError> {
                Ok(Manifests::default())
            }
            async fn batch_delete(&self, _: &str, _: &[ImageId]) -> Result<BatchResult, EcrError> {
                *self.0.borrow_mut() += 1;
                if *self.0.borrow() == 1 {
                    Err(EcrError::Denied {
                        registry: "h".into(),
                        operation: "BatchDeleteImage".into(),
                        message: "AccessDeniedException: no".into(),
                    })
                } else {
                    Err(EcrError::RepositoryNotFound {
                        registry: "h".into(),
                        repository: "r".into(),
                    })
                }
            }
        }
        let ids: Vec<ImageId> = (0..150).map(|i| ImageId::Tag(format!("t{i}"))).collect();
        let outcomes = ready(delete_ids(&Broken(RefCell::new(0)), "r", &ids, &|_| {}));
        assert!(
            outcomes[..100]
                .iter()
                .all(|(_, o)| matches!(o, Outcome::Failed { code, .. } if code == "AccessDenied"))
        );
        assert!(outcomes[100..].iter().all(|(_, o)| *o == Outcome::Absent));
    }

    /// Manifest bodies by digest for `BatchGetImage`; digests in `broken` answer `KmsError`.
    #[derive(Default)]
    struct Manifesto {
        bodies: BTreeMap<String, String>,
        broken: Vec<String>,
        calls: RefCell<Vec<Vec<String>>>,
    }

    impl Api for Manifesto {
        async fn describe_page(&self, _: &str, _: Option<String>) -> Result<Page, EcrError> {
            unreachable!("the listing is given")
        }
        async fn batch_delete(&self, _: &str, _: &[ImageId]) -> Result<BatchResult, EcrError> {
            unreachable!("nothing is deleted")
        }
        async fn batch_get(&self, _: &str, digests: &[String]) -> Result<Manifests, EcrError> {
            assert!(
                digests.len() <= MAX_GET,
                "{} ids in one call",
                digests.len()
            );
            self.calls.borrow_mut().push(digests.to_vec());
            let mut answer = Manifests::default();
            for digest in digests {
                if self.broken.contains(digest) {
                    answer.failures.push(Failure {
                        id: Some(ImageId::Digest(digest.clone())),
                        code: "KmsError".into(),
                        reason: "key disabled".into(),
                    });
                } else if let Some(body) = self.bodies.get(digest) {
                    answer.found.push((digest.clone(), body.clone()));
                } else {
                    // As moto does: the failure names no digest.
                    answer.failures.push(Failure {
                        id: Some(ImageId::Tag("null".into())),
                        code: "ImageNotFound".into(),
                        reason: "Requested image not found".into(),
                    });
                }
            }
            Ok(answer)
        }
    }

    fn listed(digest: &str, tags: &[&str], media_type: Option<&str>) -> Image {
        Image {
            digest: digest.into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            pushed_at: None,
            last_pulled: None,
            media_type: media_type.map(str::to_owned),
        }
    }

    /// An `imageDetails` entry shaped as the botocore model has it (moto records no pulls, so the e2e
    /// suite cannot show `lastRecordedPullTime`).
    #[test]
    fn image_details_carry_the_last_recorded_pull() {
        use aws_sdk_ecr::primitives::DateTime;
        use aws_sdk_ecr::types::ImageDetail;
        let pulled = ImageDetail::builder()
            .image_digest("sha256:a")
            .image_tags("v1")
            .image_pushed_at(DateTime::from_secs(1_700_000_000))
            .last_recorded_pull_time(DateTime::from_secs(1_767_312_000))
            .build();
        let listed = image(&pulled).unwrap();
        assert_eq!(
            listed.pushed_at,
            Some(Timestamp::from_unix_seconds(1_700_000_000))
        );
        assert_eq!(
            listed.last_pulled,
            Some(Timestamp::from_unix_seconds(1_767_312_000))
        );
        let never = ImageDetail::builder().image_digest("sha256:b").build();
        assert_eq!(image(&never).unwrap().last_pulled, None);
        assert!(image(&ImageDetail::builder().build()).is_none());
    }

    fn index_of(children: &[&str]) -> String {
        let manifests: Vec<serde_json::Value> = children
            .iter()
            .map(|digest| serde_json::json!({"mediaType": ACCEPTED_MEDIA_TYPES[2], "digest": digest, "size": 1}))
            .collect();
        serde_json::json!({"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPES[0], "manifests": manifests})
            .to_string()
    }

    fn digests(images: &[Image]) -> Vec<&str> {
        images.iter().map(|image| image.digest.as_str()).collect()
    }

    #[test]
    fn untagged_images_spare_what_any_index_references() {
        let (index, list, manifest) = (
            Some(INDEX_MEDIA_TYPES[0]),
            Some(INDEX_MEDIA_TYPES[1]),
            Some(ACCEPTED_MEDIA_TYPES[2]),
        );
        let listing = vec![
            listed("sha256:tagged-index", &["v1"], index),
            listed("sha256:amd64", &[], manifest),
            listed("sha256:arm64", &[], manifest),
            // An untagged index goes; its child waits for a later run, as ECR would refuse it now.
            listed("sha256:old-index", &[], list),
            listed("sha256:old-child", &[], manifest),
            // A nested index: its child is spared too.
            listed("sha256:nested", &[], index),
            listed("sha256:nested-child", &[], manifest),
            listed("sha256:orphan", &[], manifest),
            listed("sha256:plain", &["v0"], manifest),
            // ECR did not say what it is: read, references nothing.
            listed("sha256:untyped", &[], None),
        ];
        let api = Manifesto {
            bodies: [
                (
                    "sha256:tagged-index",
                    index_of(&[
                        "sha256:amd64",
                        "sha256:arm64",
                        "sha256:nested",
                        "sha256:elsewhere",
                    ]),
                ),
                ("sha256:old-index", index_of(&["sha256:old-child"])),
                ("sha256:nested", index_of(&["sha256:nested-child"])),
                (
                    "sha256:untyped",
                    r#"{"schemaVersion":2,"config":{"digest":"sha256:c"}}"#.into(),
                ),
            ]
            .into_iter()
            .map(|(digest, body)| (digest.to_owned(), body))
            .collect(),
            ..Manifesto::default()
        };
        let found = ready(untagged(&api, "r", &listing)).unwrap();
        assert_eq!(
            digests(&found),
            ["sha256:old-index", "sha256:orphan", "sha256:untyped"]
        );
        // One call: the nested index was in the listing, so it was read with the others.
        let calls = api.calls.borrow();
        assert_eq!(calls.len(), 1);
        assert_eq!(
            calls[0],
            [
                "sha256:nested",
                "sha256:old-index",
                "sha256:tagged-index",
                "sha256:untyped"
            ]
        );
    }

    #[test]
    fn indexes_are_read_100_per_call_and_failures_fail_the_answer() {
        let mut listing: Vec<Image> = (0..250)
            .map(|i| {
                listed(
                    &format!("sha256:index{i}"),
                    &[&format!("t{i}")],
                    Some(INDEX_MEDIA_TYPES[0]),
                )
            })
            .collect();
        listing.push(listed("sha256:loose", &[], Some(ACCEPTED_MEDIA_TYPES[3])));
        // Every index is gone since the listing (ImageNotFound): nothing is referenced any more.
        let api = Manifesto::default();
        let found = ready(untagged(&api, "r", &listing)).unwrap();
        assert_eq!(digests(&found), ["sha256:loose"]);
        let sizes: Vec<usize> = api.calls.borrow().iter().map(Vec::len).collect();
        assert_eq!(sizes, [100, 100, 50]);

        let broken = Manifesto {
            broken: vec!["sha256:index7".into()],
            ..Manifesto::default()
        };
        let error = ready(untagged(&broken, "r", &listing)).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("cannot read manifest sha256:index7 of r")
                && error.to_string().contains("KmsError: key disabled"),
            "{error}"
        );

        let garbled = Manifesto {
            bodies: [("sha256:index0".to_owned(), "not json".to_owned())].into(),
            ..Manifesto::default()
        };
        let error = ready(untagged(&garbled, "r", &listing)).unwrap_err();
        assert!(
            error.to_string().contains("not a manifest document"),
            "{error}"
        );
    }

    /// `--untagged` reads untagged manifests for their `subject` a hundred per call; one gone since the
    /// listing has none, one that cannot be read fails the answer naming why it was read.
    #[test]
    fn subjects_are_read_100_per_call() {
        let signed = |i: usize| {
            serde_json::json!({
                "schemaVersion": 2,
                "mediaType": ACCEPTED_MEDIA_TYPES[2],
                "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": "sha256:e", "size": 2},
                "layers": [],
                "subject": {"mediaType": ACCEPTED_MEDIA_TYPES[2], "digest": format!("sha256:image{i}"), "size": 1},
            })
            .to_string()
        };
        let digests: Vec<String> = (0..150).map(|i| format!("sha256:m{i:03}")).collect();
        let mut bodies: BTreeMap<String, String> = digests
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 2 == 0)
            .map(|(i, digest)| (digest.clone(), signed(i)))
            .collect();
        // An image (no subject); sha256:m149 is gone since the listing.
        bodies.insert(
            "sha256:m001".into(),
            r#"{"schemaVersion":2,"config":{"digest":"sha256:c"}}"#.into(),
        );
        let api = Manifesto {
            bodies,
            ..Manifesto::default()
        };
        let found = ready(subjects(&api, "r", &digests)).unwrap();
        assert_eq!(found.len(), 75);
        assert_eq!(found["sha256:m000"], "sha256:image0");
        assert_eq!(found["sha256:m148"], "sha256:image148");
        assert!(!found.contains_key("sha256:m001"));
        let sizes: Vec<usize> = api.calls.borrow().iter().map(Vec::len).collect();
        assert_eq!(sizes, [100, 50]);

        let broken = Manifesto {
            broken: vec!["sha256:m003".into()],
            ..Manifesto::default()
        };
        let error = ready(subjects(&broken, "r", &digests)).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("cannot read manifest sha256:m003 of r for its subject"),
            "{error}"
        );
    }
}
