//! ECR cleanup: list a repository's images with `DescribeImages`, remove tags with `BatchDeleteImage`.
//!
//! Deleting by `imageTag` removes only that tag: ECR keeps the image for its other tags and deletes it
//! with its last tag. Deleting by `imageDigest` removes the image and every tag on it, so callers do that
//! only for digests the user named. A batch carries at most [`MAX_BATCH`] ids (the API's limit), and a
//! batch that partly fails still succeeds as a call: every entry of `failures[]` becomes that id's outcome.

use super::aws::{classify, ecr_client, sdk_config};
use super::host::EcrRegistry;
use super::identity::{Identity, IdentityMap};
use super::{EcrError, Env};

/// The most image ids one `BatchDeleteImage` accepts.
pub const MAX_BATCH: usize = 100;
/// The page size asked of `DescribeImages` (the API's maximum).
const PAGE_SIZE: i32 = 1000;

/// One image as `DescribeImages` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// `sha256:…`.
    pub digest: String,
    /// Its tags (empty when untagged).
    pub tags: Vec<String>,
    /// When it was pushed, RFC 3339.
    pub pushed_at: Option<String>,
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

/// The two calls the cleanup needs; the SDK implements them, unit tests fake them.
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
            client: ecr_client(&config, registry, env),
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
        let images = output
            .image_details()
            .iter()
            .filter_map(|detail| {
                Some(Image {
                    digest: detail.image_digest()?.to_owned(),
                    tags: detail.image_tags().to_vec(),
                    pushed_at: detail.image_pushed_at().and_then(|t| {
                        t.fmt(aws_sdk_ecr::primitives::DateTimeFormat::DateTime)
                            .ok()
                    }),
                })
            })
            .collect();
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
        let id_of = |id: Option<&ImageIdentifier>| {
            let id = id?;
            match (id.image_tag(), id.image_digest()) {
                (Some(tag), _) => Some(ImageId::Tag(tag.to_owned())),
                (None, Some(digest)) => Some(ImageId::Digest(digest.to_owned())),
                (None, None) => None,
            }
        };
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
            failures: output
                .failures()
                .iter()
                .map(|failure| Failure {
                    id: id_of(failure.image_id()),
                    code: failure
                        .failure_code()
                        .map_or_else(|| "Unknown".to_owned(), |code| code.as_str().to_owned()),
                    reason: failure.failure_reason().unwrap_or_default().to_owned(),
                })
                .collect(),
        })
    }
}

/// Follows `nextToken` to the end. A token seen twice ends the listing with an error instead of looping.
pub(crate) async fn list_images(api: &impl Api, repository: &str) -> Result<Vec<Image>, EcrError> {
    let mut images = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut token = None;
    loop {
        let page = api.describe_page(repository, token).await?;
        images.extend(page.images);
        match page.next_token {
            Some(next) if !seen.insert(next.clone()) => {
                return Err(EcrError::Api {
                    registry: String::new(),
                    operation: "DescribeImages".into(),
                    status: None,
                    message: format!("pagination repeats nextToken for {repository}"),
                });
            }
            Some(next) => token = Some(next),
            None => return Ok(images),
        }
    }
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
            let outcome = match removed {
                Some((_, digest)) => Outcome::Removed {
                    digest: digest.clone(),
                },
                None => Outcome::Failed {
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
    fn a_failed_call_fails_its_chunk_only_and_a_missing_repository_is_absent() {
        struct Broken(RefCell<usize>);
        impl Api for Broken {
            async fn describe_page(&self, _: &str, _: Option<String>) -> Result<Page, EcrError> {
                Ok(Page::default())
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
}
