//! AWS ECR: tags listed with `DescribeImages`, removed with `BatchDeleteImage` by `imageTag`, which untags
//! and keeps sibling tags (the image goes with its last tag). Digests are deleted only when named.
//!
//! The region and registry id come from the host; credentials from the AWS chain and regkit's identity map
//! (see [`crate::ecr`]), not from the docker config: the v2 client in the [`Context`] only names the host.
//! Batches run one after another: ECR throttles `BatchDeleteImage`, and 100 tags per call is already few
//! calls.
//!
//! One `DescribeImages` listing per repository serves a whole cleanup: [`Implementation::list_tags`] keeps it,
//! and [`Implementation::list_untagged`] and the next [`Implementation::delete`] use it instead of listing again.
//!
//! ECR has no v2 `_catalog`, so [`Implementation::list_repositories`] answers `REGISTRY/PREFIX/*` from
//! `DescribeRepositories`.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use tokio::sync::OnceCell;

use super::delete::{self, Deletion, Planned, Removal, Step};
use super::{
    BoxFuture, Context, DeleteRemoves, DeleteRequest, HostRule, Implementation, Spec, TagInfo,
    UntaggedManifest,
};
use crate::ecr::images::{EcrRepositories, Image, ImageId, Outcome};
use crate::ecr::{EcrError, EcrRegistry, Env};
use crate::reference::{Repository, Target};
use crate::registry::RegistryError;
use crate::registry::pager::Unbounded;
use crate::report::{Entry, FailureKind, Method, Outcome as EntryOutcome};

pub(super) const SPEC: Spec = Spec {
    name: "ecr",
    title: "ECR",
    build,
    flags: &[],
    environment: &[],
    hosts: &[HostRule::Ecr],
    probe: None,
    delete_removes: DeleteRemoves::UnreferencedManifest,
    lists_untagged: true,
};

pub(super) fn build(context: Context) -> Box<dyn Implementation> {
    Box::new(Ecr {
        host: context.client.registry().to_owned(),
        api: OnceCell::new(),
        listings: RefCell::new(HashMap::new()),
    })
}

struct Ecr {
    host: String,
    api: OnceCell<EcrRepositories>,
    /// The last listing of each repository (by path) that no delete has used yet.
    listings: RefCell<HashMap<String, Vec<Image>>>,
}

impl Ecr {
    /// The SDK client, made on first use (building it is async and needs the runtime).
    async fn api(&self) -> Result<&EcrRepositories, RegistryError> {
        self.api
            .get_or_try_init(|| async {
                let registry = EcrRegistry::parse(&self.host).ok_or_else(|| {
                    RegistryError::Config(format!(
                        "{} is not an ECR registry host (<account>.dkr.ecr.<region>.amazonaws.com); \
                         use --repo-implementation default for other registries",
                        self.host
                    ))
                })?;
                EcrRepositories::connect(&registry, &Env::from_process())
                    .await
                    .map_err(|error| registry_error(error, &self.host))
            })
            .await
    }

    async fn images(&self, repository: &Repository) -> Result<Vec<Image>, RegistryError> {
        self.api()
            .await?
            .images(&repository.path)
            .await
            .map_err(|error| registry_error(error, &self.host))
    }

    /// Lists `repository` and keeps the listing for the calls that follow.
    async fn list_and_keep(&self, repository: &Repository) -> Result<Vec<Image>, RegistryError> {
        let images = self.images(repository).await?;
        self.listings
            .borrow_mut()
            .insert(repository.path.clone(), images.clone());
        Ok(images)
    }

    /// The kept listing of `repository`, else a new one (kept too).
    async fn listing(&self, repository: &Repository) -> Result<Vec<Image>, RegistryError> {
        let kept = self.listings.borrow().get(&repository.path).cloned();
        match kept {
            Some(images) => Ok(images),
            None => self.list_and_keep(repository).await,
        }
    }
}

/// Maps an ECR error onto the registry error classes the exit codes are built from.
fn registry_error(error: EcrError, host: &str) -> RegistryError {
    let registry = host.to_owned();
    match error {
        EcrError::Config(message) => RegistryError::Config(message),
        EcrError::Credentials { message, .. } => RegistryError::Unauthorized { registry, message },
        EcrError::Denied {
            operation, message, ..
        } => RegistryError::Denied {
            registry,
            message: format!("{operation}: {message}"),
        },
        EcrError::RepositoryNotFound { repository, .. } => RegistryError::RepositoryNotFound {
            registry,
            repository,
        },
        EcrError::Transport { message, .. } | EcrError::Fetch(message) => {
            RegistryError::Transport { registry, message }
        }
        EcrError::Api {
            operation,
            status: Some(status),
            message,
            ..
        } => RegistryError::Status {
            registry,
            operation,
            status,
            message,
        },
        EcrError::Api {
            operation, message, ..
        } => RegistryError::InvalidResponse {
            registry,
            operation,
            message,
        },
        EcrError::Unbounded(unbounded) => RegistryError::Unbounded(Unbounded {
            registry,
            ..unbounded
        }),
    }
}

impl Implementation for Ecr {
    fn spec(&self) -> &'static Spec {
        &SPEC
    }

    fn list_tags<'a>(
        &'a self,
        repository: &'a Repository,
        _with_digests: bool,
    ) -> BoxFuture<'a, Result<Vec<TagInfo>, RegistryError>> {
        // DescribeImages gives digests and push times with the tags, so they always come along. Always a
        // new listing: a cleanup plan starts here.
        Box::pin(async move { Ok(tag_infos(self.list_and_keep(repository).await?)) })
    }

    // ECR's v2 endpoint would serve the manifests one GET each; BatchGetImage reads a hundred a call.
    // ListImageReferrers answers per subject, the wrong way round for "is this manifest a referrer", and
    // moto (the tests' ECR) does not serve it.
    fn untagged_subjects<'a>(
        &'a self,
        repository: &'a Repository,
        digests: &'a [String],
    ) -> BoxFuture<'a, Result<Option<BTreeMap<String, String>>, RegistryError>> {
        Box::pin(async move {
            let subjects = self
                .api()
                .await?
                .subjects(&repository.path, digests)
                .await
                .map_err(|error| registry_error(error, &self.host))?;
            Ok(Some(subjects))
        })
    }

    // DescribeImages lists every image, tagged or not: a digest it left out is gone.
    fn missing_manifests<'a>(
        &'a self,
        repository: &'a Repository,
        digests: &'a [String],
    ) -> BoxFuture<'a, Result<Option<BTreeSet<String>>, RegistryError>> {
        Box::pin(async move {
            let listing = self.listing(repository).await?;
            Ok(Some(
                digests
                    .iter()
                    .filter(|digest| !listing.iter().any(|image| &image.digest == *digest))
                    .cloned()
                    .collect(),
            ))
        })
    }

    fn list_untagged<'a>(
        &'a self,
        repository: &'a Repository,
    ) -> BoxFuture<'a, Result<Option<Vec<UntaggedManifest>>, RegistryError>> {
        // The unfiltered listing holds the untagged images and the indexes that reference them, so the
        // one `list_tags` made serves here (a `tagStatus=UNTAGGED` listing would miss the indexes).
        Box::pin(async move {
            let listing = self.listing(repository).await?;
            let untagged = self
                .api()
                .await?
                .untagged(&repository.path, &listing)
                .await
                .map_err(|error| registry_error(error, &self.host))?;
            Ok(Some(
                untagged
                    .into_iter()
                    .map(|image| UntaggedManifest {
                        digest: image.digest,
                        created: image.pushed_at,
                        subject: None,
                    })
                    .collect(),
            ))
        })
    }

    fn list_repositories<'a>(
        &'a self,
        prefix: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<String>>, RegistryError>> {
        Box::pin(async move {
            let names = self
                .api()
                .await?
                .repositories(prefix)
                .await
                .map_err(|error| registry_error(error, &self.host))?;
            Ok(Some(names))
        })
    }

    fn delete<'a>(&'a self, request: DeleteRequest<'a>) -> BoxFuture<'a, Vec<Entry>> {
        Box::pin(delete::run(self, request))
    }
}

/// One `BatchDeleteImage` run for every target the listing knows, and that listing, which decides the
/// report.
struct Batch {
    ids: Vec<ImageId>,
    listing: Vec<Image>,
}

impl Deletion for Ecr {
    type Action = Batch;

    /// Batches run one after another (see the module documentation); the plan makes one removal.
    fn parallel(&self) -> usize {
        1
    }

    async fn plan(&self, request: &DeleteRequest<'_>) -> Result<Vec<Step<Batch>>, RegistryError> {
        let (repository, targets) = (request.repository, request.targets);
        // The listing `list_tags` kept for the cleanup's plan serves once, instead of a second
        // DescribeImages. Its age (the plan, perhaps a confirmation prompt) cannot make this delete
        // remove more than asked: a tag is removed by name and only that tag goes (ECR keeps the image
        // for any other tag, even one added since), and a digest goes only when named. The listing
        // decides the report alone: a tag whose image got a new tag since is reported `deleted` though
        // ECR kept the image, the window a fresh listing also has before BatchDeleteImage runs.
        let kept = self.listings.borrow_mut().remove(&repository.path);
        let listed = match kept {
            Some(images) => Ok(images),
            None => self.images(repository).await,
        };
        let listing = delete::missing_is_empty(listed)?;
        let digest_of_tag: BTreeMap<&str, &str> = listing
            .iter()
            .flat_map(|image| {
                image
                    .tags
                    .iter()
                    .map(|tag| (tag.as_str(), image.digest.as_str()))
            })
            .collect();
        let known_digests: BTreeSet<&str> =
            listing.iter().map(|image| image.digest.as_str()).collect();
        let mut steps = Vec::new();
        let mut planned = Vec::new();
        for target in targets {
            match target {
                Target::Tag(tag) => match digest_of_tag.get(tag.as_str()) {
                    Some(digest) => planned.push(Planned::new(
                        target.clone(),
                        Some(digest.to_string()),
                        Method::Native,
                    )),
                    None => steps.push(Step::Settled(Entry::absent(repository, target))),
                },
                Target::Digest(digest) if known_digests.contains(digest.as_str()) => {
                    planned.push(Planned::new(target.clone(), None, Method::Digest))
                }
                Target::Digest(_) => steps.push(Step::Settled(Entry::absent(repository, target))),
            }
        }
        if !planned.is_empty() {
            let ids = planned
                .iter()
                .map(|planned| match &planned.target {
                    Target::Tag(tag) => ImageId::Tag(tag.clone()),
                    Target::Digest(digest) => ImageId::Digest(digest.clone()),
                })
                .collect();
            steps.push(Step::Remove(Removal {
                planned,
                action: Batch { ids, listing },
            }));
        }
        Ok(steps)
    }

    async fn remove(
        &self,
        repository: &Repository,
        removal: Removal<Batch>,
        progress: &dyn Fn(u64),
    ) -> Vec<Entry> {
        let Batch { ids, listing } = removal.action;
        let api = match self.api().await {
            Ok(api) => api,
            Err(error) => {
                return removal
                    .planned
                    .iter()
                    .map(|planned| delete::failed(repository, &planned.target, None, &error))
                    .collect();
            }
        };
        let outcomes = api
            .delete_with_progress(&repository.path, &ids, progress)
            .await;
        report(repository, &listing, outcomes)
    }
}

/// Tags sorted by name, each with its digest and push time.
fn tag_infos(images: Vec<Image>) -> Vec<TagInfo> {
    let mut tags: Vec<TagInfo> = images
        .into_iter()
        .flat_map(|image| {
            let Image {
                digest,
                tags,
                pushed_at,
                last_pulled,
                ..
            } = image;
            // Every image carries a pull record: no lastRecordedPullTime is never pulled.
            tags.into_iter().map(move |tag| TagInfo {
                tag,
                digest: Some(digest.clone()),
                created: pushed_at,
                last_pulled: Some(last_pulled),
            })
        })
        .collect();
    tags.sort_by(|a, b| a.tag.cmp(&b.tag));
    tags.dedup_by(|a, b| a.tag == b.tag);
    tags
}

/// Entries in request order. A removed tag is `deleted` when no tag of its image is left (ECR deleted the
/// image with its last tag), else `untagged`.
fn report(
    repository: &Repository,
    listing: &[Image],
    outcomes: Vec<(ImageId, Outcome)>,
) -> Vec<Entry> {
    let removed_tags: BTreeSet<&str> = outcomes
        .iter()
        .filter_map(|(id, outcome)| match (id, outcome) {
            (ImageId::Tag(tag), Outcome::Removed { .. }) => Some(tag.as_str()),
            _ => None,
        })
        .collect();
    let removed_digests: BTreeSet<&str> = outcomes
        .iter()
        .filter_map(|(id, outcome)| match (id, outcome) {
            (ImageId::Digest(digest), Outcome::Removed { .. }) => Some(digest.as_str()),
            _ => None,
        })
        .collect();
    let image_gone = |digest: &str| {
        removed_digests.contains(digest)
            || listing
                .iter()
                .find(|image| image.digest == digest)
                .is_none_or(|image| {
                    image
                        .tags
                        .iter()
                        .all(|tag| removed_tags.contains(tag.as_str()))
                })
    };
    outcomes
        .iter()
        .map(|(id, outcome)| {
            let target = match id {
                ImageId::Tag(tag) => Target::Tag(tag.clone()),
                ImageId::Digest(digest) => Target::Digest(digest.clone()),
            };
            match outcome {
                Outcome::Removed { digest } => {
                    let digest = digest.clone().or_else(|| match id {
                        ImageId::Tag(tag) => listing
                            .iter()
                            .find(|image| image.tags.contains(tag))
                            .map(|image| image.digest.clone()),
                        ImageId::Digest(digest) => Some(digest.clone()),
                    });
                    let (removed, method): (fn(Method) -> EntryOutcome, _) = match id {
                        ImageId::Digest(_) => (EntryOutcome::Deleted, Method::Digest),
                        ImageId::Tag(_) if digest.as_deref().is_some_and(image_gone) => {
                            (EntryOutcome::Deleted, Method::Native)
                        }
                        ImageId::Tag(_) => (EntryOutcome::Untagged, Method::Native),
                    };
                    Entry::new(repository, &target, digest, removed(method))
                }
                Outcome::Absent => Entry::absent(repository, &target),
                Outcome::Failed { code, reason } => {
                    // Call-level failures (see `delete_ids`) carry the whole error as their reason.
                    let (error, kind) = match code.as_str() {
                        "Credentials" | "AccessDenied" => (reason.clone(), FailureKind::Auth),
                        "Transport" | "Error" => (reason.clone(), FailureKind::Other),
                        _ => (
                            format!("ECR BatchDeleteImage: {code}: {reason}"),
                            FailureKind::Other,
                        ),
                    };
                    Entry::new(
                        repository,
                        &target,
                        None,
                        EntryOutcome::Failed { error, kind },
                    )
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dates::Timestamp;
    use crate::registry::failure_kind;
    use crate::report::Status;

    fn repository() -> Repository {
        Repository {
            registry: "123456789012.dkr.ecr.us-east-1.amazonaws.com".into(),
            path: "team/app".into(),
        }
    }

    fn image(digest: &str, tags: &[&str]) -> Image {
        Image {
            digest: digest.into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            pushed_at: Timestamp::parse_rfc3339("2024-01-01T00:00:00Z"),
            last_pulled: None,
            media_type: None,
        }
    }

    #[test]
    fn tags_are_sorted_with_digest_and_push_time() {
        let infos = tag_infos(vec![image("sha256:b", &["z", "a"]), image("sha256:c", &[])]);
        assert_eq!(
            infos.iter().map(|i| i.tag.as_str()).collect::<Vec<_>>(),
            ["a", "z"]
        );
        assert_eq!(infos[0].digest.as_deref(), Some("sha256:b"));
        // An image ECR never saw pulled is recorded as never pulled.
        assert_eq!(infos[0].last_pulled, Some(None));
        assert_eq!(
            infos[0]
                .created
                .map(|created| created.to_string())
                .as_deref(),
            Some("2024-01-01T00:00:00Z")
        );
    }

    #[test]
    fn outcomes_become_entries() {
        let repository = repository();
        let listing = vec![
            image("sha256:a", &["a1", "a2"]),
            image("sha256:b", &["b1", "b2"]),
            image("sha256:c", &["c1"]),
        ];
        let removed = |d: &str| Outcome::Removed {
            digest: Some(d.into()),
        };
        let outcomes = vec![
            (ImageId::Tag("a1".into()), removed("sha256:a")),
            (ImageId::Tag("b1".into()), removed("sha256:b")),
            (ImageId::Tag("b2".into()), removed("sha256:b")),
            (ImageId::Tag("gone".into()), Outcome::Absent),
            (
                ImageId::Tag("c1".into()),
                Outcome::Failed {
                    code: "ImageReferencedByManifestList".into(),
                    reason: "Requested image referenced by manifest list".into(),
                },
            ),
            (ImageId::Digest("sha256:x".into()), removed("sha256:x")),
        ];
        let report = report(&repository, &listing, outcomes);
        let summary: Vec<(String, Status, Option<Method>)> = report
            .iter()
            .map(|e| (e.reference.clone(), e.status, e.method))
            .collect();
        let r = "123456789012.dkr.ecr.us-east-1.amazonaws.com/team/app";
        let expected = [
            (":a1", Status::Untagged, Some(Method::Native)),
            (":b1", Status::Deleted, Some(Method::Native)),
            (":b2", Status::Deleted, Some(Method::Native)),
            (":gone", Status::Absent, None),
            (":c1", Status::Failed, None),
            ("@sha256:x", Status::Deleted, Some(Method::Digest)),
        ]
        .map(|(suffix, status, method)| (format!("{r}{suffix}"), status, method));
        assert_eq!(summary, expected);
        assert_eq!(
            report[4].error.as_deref(),
            Some(
                "ECR BatchDeleteImage: ImageReferencedByManifestList: Requested image referenced by manifest list"
            )
        );
        assert_eq!(report[4].failure, Some(FailureKind::Other));
        assert_eq!(report[0].digest.as_deref(), Some("sha256:a"));
    }

    #[test]
    fn errors_keep_their_exit_classes() {
        let host = "h";
        let auth = registry_error(
            EcrError::Credentials {
                registry: host.into(),
                message: "m".into(),
            },
            host,
        );
        assert_eq!(failure_kind(&auth), FailureKind::Auth);
        let denied = registry_error(
            EcrError::Denied {
                registry: host.into(),
                operation: "DescribeImages".into(),
                message: "AccessDeniedException: no".into(),
            },
            host,
        );
        assert_eq!(failure_kind(&denied), FailureKind::Auth);
        assert!(matches!(
            registry_error(
                EcrError::RepositoryNotFound {
                    registry: host.into(),
                    repository: "r".into()
                },
                host
            ),
            RegistryError::RepositoryNotFound { .. }
        ));
        // The ECR listing knows no host; the error gets it here, and stays a listing failure (exit 1).
        let unbounded = registry_error(
            EcrError::Unbounded(Unbounded {
                registry: String::new(),
                operation: "DescribeImages of r".into(),
                problem: crate::registry::pager::Runaway::TooManyPages(10_000),
            }),
            host,
        );
        assert_eq!(failure_kind(&unbounded), FailureKind::Other);
        assert_eq!(
            unbounded.to_string(),
            "h: DescribeImages of r does not end (more than 10000 pages); refusing a partial listing"
        );
    }
}
