//! The plain Docker Registry v2 implementation, with tag-safe deletion.
//!
//! v2 can only delete a manifest by digest, which removes every tag on it. So a tag whose digest other,
//! unrequested tags share is removed by pushing a unique *tombstone* manifest under it (same content plus a
//! unique annotation, hence a digest nobody else has) and deleting the tombstone. A digest is deleted
//! directly only when every tag on it was requested and no kept index lists it (deleting a platform
//! image would break the index), or when the user named the digest.
//!
//! Requests per requested tag: the listing HEAD, a GET by tag right before acting (the re-check, which
//! also holds the body a link repair needs) and the DELETE; kept indexes are read once each, only when
//! something would be deleted by digest.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use futures_util::stream::{self, StreamExt};
use tokio::sync::RwLock;

use super::delete::{self, Deletion, Planned, Removal, Step};
use super::{BoxFuture, Context, DeleteRemoves, DeleteRequest, Implementation, Spec, TagInfo};
use crate::dates::manifest_children;
use crate::journal::{Change, ChangeKind, Journal};
use crate::reference::{Repository, Target};
use crate::referrers::ApiReferrers;
use crate::registry::{
    Client, Deleted, MANIFEST_MEDIA_TYPES, Manifest, ManifestInfo, RegistryError,
};
use crate::report::{Entry, Method, Outcome};

/// The annotation that makes a tombstone's digest unique.
pub const TOMBSTONE_ANNOTATION: &str = "io.regkit.tombstone";

/// A digest no manifest has: deleting it probes, without side effects, whether the registry deletes at all,
/// before any tombstone is pushed.
const PROBE_DIGEST: &str =
    "sha256:0000000000000000000000000000000000000000000000000000000000000000";

/// How often a manifest whose tags outlived its deletion is re-linked and deleted again.
const REPAIR_ATTEMPTS: usize = 3;

pub(super) const SPEC: Spec = Spec {
    name: "default",
    title: "plain v2",
    build,
    flags: &[],
    environment: &[],
    // The fallback when no host rule or probe picks another implementation.
    hosts: &[],
    probe: None,
    delete_removes: DeleteRemoves::Manifest,
    lists_untagged: false,
};

pub(super) fn build(context: Context) -> Box<dyn Implementation> {
    Box::new(Distribution {
        store: context.client,
        parallel: context.parallel.max(1),
        writes: RwLock::new(()),
    })
}

/// The registry operations the algorithm needs; a seam so the planning can be tested against a fake.
trait Store {
    fn registry(&self) -> &str;
    async fn list_tags(&self, repository: &str) -> Result<Vec<String>, RegistryError>;
    async fn head(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<Option<ManifestInfo>, RegistryError>;
    async fn get(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<Option<Manifest>, RegistryError>;
    async fn put(
        &self,
        repository: &str,
        tag: &str,
        media_type: &str,
        body: &[u8],
    ) -> Result<String, RegistryError>;
    async fn delete(&self, repository: &str, digest: &str) -> Result<Deleted, RegistryError>;
}

impl Store for Client {
    fn registry(&self) -> &str {
        Client::registry(self)
    }
    async fn list_tags(&self, repository: &str) -> Result<Vec<String>, RegistryError> {
        Client::list_tags(self, repository).await
    }
    async fn head(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<Option<ManifestInfo>, RegistryError> {
        self.head_manifest(repository, reference).await
    }
    async fn get(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<Option<Manifest>, RegistryError> {
        self.get_manifest(repository, reference).await
    }
    async fn put(
        &self,
        repository: &str,
        tag: &str,
        media_type: &str,
        body: &[u8],
    ) -> Result<String, RegistryError> {
        self.put_manifest(repository, tag, media_type, body).await
    }
    async fn delete(&self, repository: &str, digest: &str) -> Result<Deleted, RegistryError> {
        self.delete_manifest(repository, digest).await
    }
}

struct Distribution<S> {
    store: S,
    parallel: usize,
    /// Shared by manifest DELETEs, exclusive for manifest PUTs. Distribution answers a manifest DELETE by
    /// reading every tag link of the repository; a link being rewritten at that moment fails the DELETE
    /// after the manifest is gone, and the retry then finds nothing to delete and leaves the tag listed
    /// without a manifest. A link another DELETE removes meanwhile is skipped as not found, so DELETEs
    /// run in parallel with each other, and reads with everything.
    writes: RwLock<()>,
}

impl<S: Store> Implementation for Distribution<S> {
    fn spec(&self) -> &'static Spec {
        &SPEC
    }

    fn api_referrers<'a>(
        &'a self,
        _repository: &'a Repository,
        _digests: &'a [String],
    ) -> BoxFuture<'a, Result<ApiReferrers, RegistryError>> {
        Box::pin(async { Ok(ApiReferrers::OverV2) })
    }

    fn list_tags<'a>(
        &'a self,
        repository: &'a Repository,
        with_digests: bool,
    ) -> BoxFuture<'a, Result<Vec<TagInfo>, RegistryError>> {
        Box::pin(async move {
            let mut tags = self.store.list_tags(&repository.path).await?;
            tags.sort();
            tags.dedup();
            if !with_digests {
                return Ok(tags.into_iter().map(TagInfo::name_only).collect());
            }
            let digests = self.resolve(&repository.path, &tags).await?;
            // A tag deleted between listing and HEAD is simply no longer there.
            Ok(tags
                .into_iter()
                .filter_map(|tag| {
                    let digest = digests.get(&tag)?.digest.clone();
                    Some(TagInfo {
                        tag,
                        digest: Some(digest),
                        created: None,
                        last_pulled: None,
                    })
                })
                .collect())
        })
    }

    fn delete<'a>(&'a self, request: DeleteRequest<'a>) -> BoxFuture<'a, Vec<Entry>> {
        Box::pin(delete::run(self, request))
    }
}

/// What to do, decided from one consistent listing.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Action {
    /// The tag does not exist.
    Absent { tag: String },
    /// Delete the manifest: every tag on it is requested, or the digest itself was named.
    DeleteDigest {
        digest: String,
        tags: Vec<String>,
        explicit: bool,
    },
    /// Remove only this tag; other tags share its digest.
    Untag { tag: String, digest: String },
}

/// The plan for `tags` and `digests` given `listing` (every tag of the repository → its digest).
fn plan(tags: &[String], digests: &[String], listing: &BTreeMap<String, String>) -> Vec<Action> {
    let requested: BTreeSet<&str> = tags.iter().map(String::as_str).collect();
    let explicit: BTreeSet<&str> = digests.iter().map(String::as_str).collect();
    let mut by_digest: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut actions = Vec::new();
    for tag in &requested {
        match listing.get(*tag) {
            Some(digest) => by_digest.entry(digest).or_default().push(tag.to_string()),
            None => actions.push(Action::Absent {
                tag: tag.to_string(),
            }),
        }
    }
    for digest in &explicit {
        actions.push(Action::DeleteDigest {
            digest: digest.to_string(),
            tags: by_digest.remove(digest).unwrap_or_default(),
            explicit: true,
        });
    }
    for (digest, group) in by_digest {
        let all_requested = listing
            .iter()
            .filter(|(_, other)| other.as_str() == digest)
            .all(|(sibling, _)| requested.contains(sibling.as_str()));
        if all_requested {
            actions.push(Action::DeleteDigest {
                digest: digest.to_string(),
                tags: group,
                explicit: false,
            });
        } else {
            actions.extend(group.into_iter().map(|tag| Action::Untag {
                tag,
                digest: digest.to_string(),
            }));
        }
    }
    actions
}

/// Whether a manifest of this type may list other manifests: anything but a known image manifest, so an
/// unusual or missing `Content-Type` errs on the side of reading it.
fn may_be_index(info: &ManifestInfo) -> bool {
    const IMAGE_TYPES: [&str; 4] = [
        MANIFEST_MEDIA_TYPES[0],
        MANIFEST_MEDIA_TYPES[1],
        "application/vnd.docker.distribution.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
    ];
    !IMAGE_TYPES.contains(&info.media_type.as_str())
}

/// `body` with a unique tombstone annotation: OCI manifests and indexes define `annotations`, and
/// distribution keeps unknown fields of docker v2 schema 2 manifests and lists, so all four get a new
/// digest the registry accepts.
fn tombstone(body: &[u8], marker: &str) -> Result<Vec<u8>, String> {
    let mut manifest: serde_json::Value = serde_json::from_slice(body)
        .map_err(|error| format!("the manifest is not JSON ({error})"))?;
    let object = manifest
        .as_object_mut()
        .ok_or("the manifest is not a JSON object")?;
    if object
        .get("schemaVersion")
        .and_then(serde_json::Value::as_u64)
        != Some(2)
    {
        return Err(
            "only schema version 2 manifests can be untagged safely; delete it by digest instead"
                .into(),
        );
    }
    let annotations = object
        .entry("annotations")
        .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
    let annotations = annotations
        .as_object_mut()
        .ok_or("the manifest's annotations are not an object")?;
    annotations.insert(
        TOMBSTONE_ANNOTATION.to_string(),
        serde_json::Value::String(marker.to_string()),
    );
    serde_json::to_vec(&manifest).map_err(|error| error.to_string())
}

/// `body` with a fresh tombstone marker: a manifest whose digest no other manifest has (GitHub's vendor
/// moves a tag onto one too, to delete it as a version of its own).
pub(super) fn unique_tombstone(body: &[u8]) -> Result<Vec<u8>, String> {
    tombstone(body, &tombstone_marker())
}

/// Unique per process run and call: two tombstones never share a digest, even across concurrent runs.
fn tombstone_marker() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or_default();
    format!(
        "{nanos}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// An action and the journal it records its changes in first.
struct Journaled {
    action: Action,
    journal: Option<Journal>,
}

impl<S: Store> Deletion for Distribution<S> {
    type Action = Journaled;
    // The re-check's GET brings each body; journaling adds no request per tag.
    const JOURNALS_ITSELF: bool = true;

    fn parallel(&self) -> usize {
        self.parallel
    }

    async fn plan(
        &self,
        request: &DeleteRequest<'_>,
    ) -> Result<Vec<Step<Journaled>>, RegistryError> {
        let (repository, targets) = (request.repository, request.targets);
        let mut tags = Vec::new();
        let mut digests = Vec::new();
        for target in targets {
            match target {
                Target::Tag(tag) => tags.push(tag.clone()),
                Target::Digest(digest) => digests.push(digest.clone()),
            }
        }
        let path = repository.path.as_str();
        // A dry run probes too: it must fail where the real run would (no rights, deletes disabled).
        match self.store.delete(path, PROBE_DIGEST).await {
            Ok(_) | Err(RegistryError::RepositoryNotFound { .. }) => {}
            Err(error) => {
                let asked = match targets {
                    [one] => format!("DELETE {repository}{one}"),
                    [first, rest @ ..] => {
                        format!("DELETE {repository}{first} and {} more", rest.len())
                    }
                    [] => format!("DELETE in {repository}"),
                };
                return Err(
                    error.told_as(&format!("DELETE manifest {path}@{PROBE_DIGEST}"), &asked)
                );
            }
        }
        let listing = if tags.is_empty() {
            BTreeMap::new()
        } else {
            match self.store.list_tags(path).await {
                Ok(mut listed) => {
                    // A requested tag pushed after the listing must count too.
                    listed.extend(tags.iter().cloned());
                    listed.sort();
                    listed.dedup();
                    self.resolve(path, &listed).await?
                }
                Err(RegistryError::RepositoryNotFound { .. }) => BTreeMap::new(),
                Err(error) => return Err(error),
            }
        };
        let digest_of: BTreeMap<String, String> = listing
            .iter()
            .map(|(tag, info)| (tag.clone(), info.digest.clone()))
            .collect();
        let actions = plan(&tags, &digests, &digest_of);
        let actions = self
            .protect_index_children(path, actions, &tags, &listing, request.kept_index_children)
            .await?;
        let mut steps = Vec::with_capacity(actions.len());
        for action in actions {
            // A real run learns that a digest no tag names is gone from its DELETE; a dry run asks.
            if let Action::DeleteDigest {
                digest,
                tags,
                explicit: true,
            } = &action
                && request.dry_run
                && tags.is_empty()
                && self.store.head(path, digest).await?.is_none()
            {
                let target = Target::Digest(digest.clone());
                steps.push(Step::Settled(Entry::absent(repository, &target)));
                continue;
            }
            let journal = request.journal.map(|journaling| journaling.journal.clone());
            steps.push(step(repository, action, journal));
        }
        Ok(steps)
    }

    async fn remove(
        &self,
        repository: &Repository,
        removal: Removal<Journaled>,
        _progress: &dyn Fn(u64),
    ) -> Vec<Entry> {
        let Journaled { action, journal } = removal.action;
        self.execute(repository, action, journal.as_ref()).await
    }
}

/// The step that carries out `action`, with what a dry run reports for it.
fn step(repository: &Repository, action: Action, journal: Option<Journal>) -> Step<Journaled> {
    let planned = match &action {
        Action::Absent { tag } => {
            return Step::Settled(Entry::absent(repository, &Target::Tag(tag.clone())));
        }
        Action::Untag { tag, digest } => vec![Planned::new(
            Target::Tag(tag.clone()),
            Some(digest.clone()),
            Method::Tombstone,
        )],
        Action::DeleteDigest {
            digest,
            tags,
            explicit,
        } => tags
            .iter()
            .cloned()
            .map(Target::Tag)
            .chain(explicit.then(|| Target::Digest(digest.clone())))
            .map(|target| Planned::new(target, Some(digest.clone()), Method::Digest))
            .collect(),
    };
    Step::Remove(Removal {
        planned,
        action: Journaled { action, journal },
    })
}

impl<S: Store> Distribution<S> {
    /// HEADs `tags` with bounded concurrency; tags that no longer exist are left out.
    async fn resolve(
        &self,
        repository: &str,
        tags: &[String],
    ) -> Result<BTreeMap<String, ManifestInfo>, RegistryError> {
        let results: Vec<_> = stream::iter(tags)
            .map(|tag| async move { (tag, self.store.head(repository, tag).await) })
            .buffer_unordered(self.parallel)
            .collect()
            .await;
        let mut digests = BTreeMap::new();
        for (tag, result) in results {
            if let Some(info) = result? {
                digests.insert(tag.clone(), info);
            }
        }
        Ok(digests)
    }

    /// `actions` with every delete of a manifest that a kept index references turned into untags: the
    /// manifest must stay for the index (a multi-arch image missing a platform), only the requested tags
    /// go. Indexes are read only when some manifest would go by digest, each once, and not at all when
    /// the caller has read them (`known`: the cleanup engine, which keeps those tags).
    async fn protect_index_children(
        &self,
        repository: &str,
        actions: Vec<Action>,
        requested: &[String],
        listing: &BTreeMap<String, ManifestInfo>,
        known: Option<&BTreeSet<String>>,
    ) -> Result<Vec<Action>, RegistryError> {
        let deletes_by_digest = actions.iter().any(|action| {
            matches!(
                action,
                Action::DeleteDigest {
                    explicit: false,
                    ..
                }
            )
        });
        if !deletes_by_digest {
            return Ok(actions);
        }
        let read;
        let children = match known {
            Some(known) => known,
            None => {
                read = self
                    .kept_index_children(repository, requested, listing)
                    .await?;
                &read
            }
        };
        Ok(actions
            .into_iter()
            .flat_map(|action| match action {
                Action::DeleteDigest {
                    digest,
                    tags,
                    explicit: false,
                } if children.contains(&digest) => tags
                    .into_iter()
                    .map(|tag| Action::Untag {
                        tag,
                        digest: digest.clone(),
                    })
                    .collect(),
                action => vec![action],
            })
            .collect())
    }

    /// The manifests that the indexes among the tags not `requested` reference.
    async fn kept_index_children(
        &self,
        repository: &str,
        requested: &[String],
        listing: &BTreeMap<String, ManifestInfo>,
    ) -> Result<BTreeSet<String>, RegistryError> {
        let requested: HashSet<&str> = requested.iter().map(String::as_str).collect();
        let kept_indexes: BTreeSet<&str> = listing
            .iter()
            .filter(|(tag, info)| !requested.contains(tag.as_str()) && may_be_index(info))
            .map(|(_, info)| info.digest.as_str())
            .collect();
        if kept_indexes.is_empty() {
            return Ok(BTreeSet::new());
        }
        let read: Vec<_> = stream::iter(kept_indexes)
            .map(|digest| self.store.get(repository, digest))
            .buffer_unordered(self.parallel)
            .collect()
            .await;
        let mut children = BTreeSet::new();
        for index in read {
            // An index deleted since the listing references nothing any more.
            if let Some(index) = index? {
                children.extend(manifest_children(&index.body).unwrap_or_default());
            }
        }
        Ok(children)
    }

    async fn execute(
        &self,
        repository: &Repository,
        action: Action,
        journal: Option<&Journal>,
    ) -> Vec<Entry> {
        let path = repository.path.as_str();
        match action {
            Action::Absent { tag } => vec![Entry::absent(repository, &Target::Tag(tag))],
            Action::Untag { tag, .. } => vec![self.untag(repository, tag, None, journal).await],
            Action::DeleteDigest {
                digest,
                tags,
                explicit,
            } => {
                let mut done = Vec::new();
                let mut still_there = Vec::new();
                let mut manifest = None;
                // Re-check just before acting: a tag moved by a concurrent push must not go with this
                // digest. A GET rather than a HEAD also brings the body a link repair needs.
                let rechecked: Vec<_> = stream::iter(tags)
                    .map(|tag| async move {
                        let current = self.store.get(path, &tag).await;
                        (tag, current)
                    })
                    .buffer_unordered(self.parallel)
                    .collect()
                    .await;
                for (tag, current) in rechecked {
                    match current {
                        Ok(Some(current)) if current.info.digest == digest => {
                            still_there.push(tag);
                            manifest.get_or_insert(current);
                        }
                        Ok(Some(current)) => {
                            done.push(self.untag(repository, tag, Some(current), journal).await)
                        }
                        Ok(None) => done.push(Entry::absent(repository, &Target::Tag(tag))),
                        Err(error) => {
                            done.push(delete::failed(repository, &Target::Tag(tag), None, &error))
                        }
                    }
                }
                if still_there.is_empty() && !explicit {
                    return done;
                }
                let mut targets: Vec<Target> = still_there.into_iter().map(Target::Tag).collect();
                if explicit {
                    targets.push(Target::Digest(digest.clone()));
                }
                let tags: Vec<String> = targets
                    .iter()
                    .filter_map(|target| match target {
                        Target::Tag(tag) => Some(tag.clone()),
                        Target::Digest(_) => None,
                    })
                    .collect();
                if let Some(journal) = journal
                    && let Err(why) = self
                        .journal_delete(repository, &digest, manifest.as_ref(), &targets, journal)
                        .await
                {
                    done.extend(targets.iter().map(|target| {
                        delete::not_journaled(repository, target, Some(digest.clone()), &why)
                    }));
                    return done;
                }
                // Only a tag re-checked onto this digest can be left listed without it.
                let deleted = match &manifest {
                    Some(manifest) => self.delete_with_tags(path, &digest, manifest, &tags).await,
                    None => self.delete_shared(path, &digest).await,
                };
                let outcome = match deleted {
                    Ok(Deleted::Removed) => Outcome::Deleted(Method::Digest),
                    Ok(Deleted::Absent) => Outcome::Absent,
                    Err(error) => {
                        done.extend(
                            targets
                                .iter()
                                .map(|target| delete::failed(repository, target, None, &error)),
                        );
                        return done;
                    }
                };
                done.extend(targets.iter().map(|target| {
                    Entry::new(repository, target, Some(digest.clone()), outcome.clone())
                }));
                done
            }
        }
    }

    /// Journals the deletion of `digest` for each of `targets`, with the body the re-check read
    /// (`manifest`), or, for a digest named alone, read now: the one request journaling adds.
    async fn journal_delete(
        &self,
        repository: &Repository,
        digest: &str,
        manifest: Option<&Manifest>,
        targets: &[Target],
        journal: &Journal,
    ) -> Result<(), String> {
        let read;
        let manifest = match manifest {
            Some(manifest) => manifest,
            None => match self.store.get(&repository.path, digest).await {
                Ok(Some(manifest)) => {
                    read = manifest;
                    &read
                }
                // Gone already: nothing to put back; the DELETE reports it absent.
                Ok(None) => return Ok(()),
                Err(error) => return Err(format!("cannot read its manifest: {error}")),
            },
        };
        for target in targets {
            let tag = match target {
                Target::Tag(tag) => Some(tag.as_str()),
                Target::Digest(_) => None,
            };
            let change = Change::new(
                &repository.registry,
                &repository.path,
                tag,
                manifest,
                ChangeKind::ManifestDelete,
            );
            journal.record(&change).map_err(|error| error.to_string())?;
        }
        Ok(())
    }

    /// Removes `tag` alone, wherever it points now (`current`: its manifest, read a moment ago).
    async fn untag(
        &self,
        repository: &Repository,
        tag: String,
        current: Option<Manifest>,
        journal: Option<&Journal>,
    ) -> Entry {
        let result = self.tombstone(repository, &tag, current, journal).await;
        let target = Target::Tag(tag);
        match result {
            Ok(Some(digest)) => Entry::new(
                repository,
                &target,
                Some(digest),
                Outcome::Untagged(Method::Tombstone),
            ),
            Ok(None) => Entry::absent(repository, &target),
            Err(Failure::Registry(error)) => delete::failed(repository, &target, None, &error),
            Err(Failure::Journal { digest, why }) => {
                delete::not_journaled(repository, &target, Some(digest), &why)
            }
            Err(Failure::Manifest { digest, message }) => {
                let error = format!(
                    "cannot untag {}{target} on {} without touching other tags: manifest {digest}: {message}",
                    repository.path,
                    self.store.registry()
                );
                delete::refused(repository, &target, Some(digest), error)
            }
        }
    }

    /// Pushes a tombstone under `tag` and deletes it; the digest `tag` had, or `None` if it was gone.
    /// `current` is the manifest `tag` had a moment ago; without it, it is read now.
    async fn tombstone(
        &self,
        repository: &Repository,
        tag: &str,
        current: Option<Manifest>,
        journal: Option<&Journal>,
    ) -> Result<Option<String>, Failure> {
        let path = repository.path.as_str();
        let current = match current {
            Some(current) => current,
            None => match self.store.get(path, tag).await? {
                Some(current) => current,
                None => return Ok(None),
            },
        };
        if let Some(journal) = journal {
            let change = Change::new(
                &repository.registry,
                path,
                Some(tag),
                &current,
                ChangeKind::TombstoneUntag,
            );
            journal.record(&change).map_err(|error| Failure::Journal {
                digest: current.info.digest.clone(),
                why: error.to_string(),
            })?;
        }
        let Manifest { info, body } = current;
        let digest = info.digest;
        let manifest_error = |message: String| Failure::Manifest {
            digest: digest.clone(),
            message,
        };
        let grave = tombstone(&body, &tombstone_marker()).map_err(manifest_error)?;
        let grave_digest = {
            let _exclusive = self.writes.write().await;
            self.store.put(path, tag, &info.media_type, &grave).await?
        };
        // Deleting the original digest would take the sibling tags with it; never let a registry that
        // ignored the change lead there.
        if grave_digest == digest {
            return Err(manifest_error(
                "the registry gave the tombstone the original digest".into(),
            ));
        }
        let grave = Manifest {
            info: ManifestInfo {
                digest: grave_digest.clone(),
                size: grave.len() as u64,
                media_type: info.media_type,
            },
            body: grave,
        };
        self.delete_with_tags(path, &grave_digest, &grave, &[tag.to_string()])
            .await?;
        Ok(Some(digest))
    }

    /// One manifest DELETE, alongside other DELETEs but never beside a link being written.
    async fn delete_shared(&self, path: &str, digest: &str) -> Result<Deleted, RegistryError> {
        let _shared = self.writes.read().await;
        self.store.delete(path, digest).await
    }

    /// Deletes `digest`, which `tags` pointed at a moment ago, and makes sure they went with it.
    ///
    /// A 404 here means an earlier attempt (a retried request) removed the manifest, possibly leaving the
    /// tags listed without one. Such a tag HEADs as absent; it is linked to the same manifest again and the
    /// delete repeated, until the registry confirms a delete that removed the tags.
    async fn delete_with_tags(
        &self,
        path: &str,
        digest: &str,
        manifest: &Manifest,
        tags: &[String],
    ) -> Result<Deleted, RegistryError> {
        let mut result = self.delete_shared(path, digest).await?;
        for _ in 0..REPAIR_ATTEMPTS {
            if result == Deleted::Removed {
                return Ok(result);
            }
            // Repairs write links, so they run alone.
            let _exclusive = self.writes.write().await;
            let mut relinked = false;
            for tag in tags {
                if self.store.head(path, tag).await?.is_none() {
                    self.store
                        .put(path, tag, &manifest.info.media_type, &manifest.body)
                        .await?;
                    relinked = true;
                }
            }
            if !relinked {
                return Ok(result);
            }
            result = self.store.delete(path, digest).await?;
        }
        if result == Deleted::Removed {
            return Ok(result);
        }
        Err(RegistryError::InvalidResponse {
            registry: self.store.registry().to_string(),
            operation: format!("DELETE manifest {digest}"),
            message: format!(
                "tags {} stay listed after their manifest was deleted {REPAIR_ATTEMPTS} times; run the delete again",
                tags.join(", ")
            ),
        })
    }
}

enum Failure {
    Registry(RegistryError),
    Manifest { digest: String, message: String },
    Journal { digest: String, why: String },
}

impl From<RegistryError> for Failure {
    fn from(error: RegistryError) -> Self {
        Failure::Registry(error)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};
    use std::collections::hash_map::DefaultHasher;
    use std::hash::{Hash, Hasher};
    use std::pin::pin;
    use std::task::{Context as TaskContext, Poll, Waker};

    use super::*;
    use crate::report::{FailureKind, Status};

    const OCI: &str = "application/vnd.oci.image.manifest.v1+json";
    const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

    /// Distribution's semantics in memory: tags point at digests, deleting a digest drops its tags.
    #[derive(Default)]
    struct Fake {
        tags: RefCell<BTreeMap<String, String>>,
        manifests: RefCell<BTreeMap<String, (String, Vec<u8>)>>,
        delete_disabled: bool,
        /// Manifest reads (HEAD or GET) so far.
        reads: Cell<usize>,
        /// On this read, move the tag to the digest before answering.
        move_on_read: Option<(usize, String, String)>,
        /// The references read by GET, in order.
        gets: RefCell<Vec<String>>,
        /// Manifest DELETEs so far, the registry probe included.
        deletes: Cell<usize>,
        /// Deletes that behave like a retried DELETE whose first attempt failed half-way: the manifest goes,
        /// its tags stay listed, and the answer is 404.
        half_deletes: Cell<usize>,
    }

    fn digest_of(body: &[u8]) -> String {
        let mut hasher = DefaultHasher::new();
        body.hash(&mut hasher);
        format!("sha256:{:064x}", hasher.finish())
    }

    impl Fake {
        fn push(&self, tag: &str, image: &str) -> String {
            let body = format!(
                r#"{{"schemaVersion":2,"mediaType":"{OCI}","config":{{"digest":"{image}"}}}}"#
            );
            let digest = digest_of(body.as_bytes());
            self.manifests
                .borrow_mut()
                .insert(digest.clone(), (OCI.into(), body.into_bytes()));
            self.tags.borrow_mut().insert(tag.into(), digest.clone());
            digest
        }
        /// An OCI index of `children` under `tag`.
        fn push_index(&self, tag: &str, children: &[&str]) -> String {
            let manifests: Vec<String> = children
                .iter()
                .map(|child| format!(r#"{{"mediaType":"{OCI}","digest":"{child}","size":1}}"#))
                .collect();
            let body = format!(
                r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{}]}}"#,
                manifests.join(",")
            );
            let digest = digest_of(body.as_bytes());
            self.manifests
                .borrow_mut()
                .insert(digest.clone(), (OCI_INDEX.into(), body.into_bytes()));
            self.tags.borrow_mut().insert(tag.into(), digest.clone());
            digest
        }
        /// What `reference` resolves to now, after the scheduled move if this read is the one.
        fn read(&self, reference: &str) -> Option<(String, String, Vec<u8>)> {
            self.reads.set(self.reads.get() + 1);
            if let Some((call, tag, digest)) = &self.move_on_read
                && *call == self.reads.get()
            {
                self.tags.borrow_mut().insert(tag.clone(), digest.clone());
            }
            let digest = if reference.starts_with("sha256:") {
                reference.to_string()
            } else {
                self.tags.borrow().get(reference).cloned()?
            };
            let (media_type, body) = self.manifests.borrow().get(&digest).cloned()?;
            Some((digest, media_type, body))
        }
        fn snapshot(&self) -> BTreeMap<String, String> {
            self.tags.borrow().clone()
        }
        fn unsupported(&self) -> RegistryError {
            RegistryError::DeleteUnsupported {
                registry: "fake".into(),
                message: "UNSUPPORTED".into(),
            }
        }
    }

    impl Store for Fake {
        fn registry(&self) -> &str {
            "fake"
        }
        async fn list_tags(&self, _: &str) -> Result<Vec<String>, RegistryError> {
            Ok(self.tags.borrow().keys().rev().cloned().collect())
        }
        async fn head(
            &self,
            _: &str,
            reference: &str,
        ) -> Result<Option<ManifestInfo>, RegistryError> {
            Ok(self
                .read(reference)
                .map(|(digest, media_type, body)| ManifestInfo {
                    digest,
                    media_type,
                    size: body.len() as u64,
                }))
        }
        async fn get(&self, _: &str, reference: &str) -> Result<Option<Manifest>, RegistryError> {
            self.gets.borrow_mut().push(reference.to_string());
            Ok(self
                .read(reference)
                .map(|(digest, media_type, body)| Manifest {
                    info: ManifestInfo {
                        digest,
                        media_type,
                        size: body.len() as u64,
                    },
                    body,
                }))
        }
        async fn put(
            &self,
            _: &str,
            tag: &str,
            media_type: &str,
            body: &[u8],
        ) -> Result<String, RegistryError> {
            let digest = digest_of(body);
            self.manifests
                .borrow_mut()
                .insert(digest.clone(), (media_type.into(), body.to_vec()));
            self.tags.borrow_mut().insert(tag.into(), digest.clone());
            Ok(digest)
        }
        async fn delete(&self, _: &str, digest: &str) -> Result<Deleted, RegistryError> {
            self.deletes.set(self.deletes.get() + 1);
            if self.delete_disabled {
                return Err(self.unsupported());
            }
            if self.manifests.borrow_mut().remove(digest).is_none() {
                return Ok(Deleted::Absent);
            }
            if self.half_deletes.get() > 0 {
                self.half_deletes.set(self.half_deletes.get() - 1);
                return Ok(Deleted::Absent);
            }
            self.tags.borrow_mut().retain(|_, target| target != digest);
            Ok(Deleted::Removed)
        }
    }

    fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
        let mut future = pin!(future);
        let mut context = TaskContext::from_waker(Waker::noop());
        loop {
            if let Poll::Ready(value) = future.as_mut().poll(&mut context) {
                return value;
            }
        }
    }

    fn run(fake: Fake, targets: &[Target], dry_run: bool) -> (Vec<Entry>, Fake, u64) {
        run_knowing(fake, targets, dry_run, None, None)
    }

    /// [`run`] with the kept indexes' children the caller has read.
    fn run_knowing(
        fake: Fake,
        targets: &[Target],
        dry_run: bool,
        known: Option<&BTreeSet<String>>,
        journal: Option<&Journal>,
    ) -> (Vec<Entry>, Fake, u64) {
        let client = Client::new("fake.invalid", Default::default(), &Default::default())
            .expect("a client for a name");
        let repository = Repository {
            registry: "fake".into(),
            path: "a/b".into(),
        };
        let vendor = Distribution {
            store: fake,
            parallel: 3,
            writes: RwLock::new(()),
        };
        let progress = Cell::new(0);
        let on_progress = |n: u64| progress.set(progress.get() + n);
        let entries = block_on(vendor.delete(DeleteRequest {
            repository: &repository,
            targets,
            dry_run,
            progress: &on_progress,
            kept_index_children: known,
            journal: journal.map(|journal| super::super::Journaling {
                journal,
                client: &client,
            }),
        }));
        (entries, vendor.store, progress.get())
    }

    fn tag(name: &str) -> Target {
        Target::Tag(name.into())
    }

    fn statuses(entries: &[Entry]) -> Vec<(String, Status, Option<Method>)> {
        entries
            .iter()
            .map(|e| (e.reference.clone(), e.status, e.method))
            .collect()
    }

    #[test]
    fn plan_untags_shared_digests_and_deletes_whole_groups() {
        let listing: BTreeMap<String, String> = [
            ("a", "d1"),
            ("b", "d1"),
            ("c", "d2"),
            ("d", "d2"),
            ("e", "d3"),
        ]
        .map(|(t, d)| (t.to_string(), d.to_string()))
        .into();
        let tags = ["a", "c", "d", "zz"].map(String::from);
        let actions = plan(&tags, &["d3".to_string()], &listing);
        assert_eq!(
            actions,
            vec![
                Action::Absent { tag: "zz".into() },
                Action::DeleteDigest {
                    digest: "d3".into(),
                    tags: vec![],
                    explicit: true
                },
                Action::Untag {
                    tag: "a".into(),
                    digest: "d1".into()
                },
                Action::DeleteDigest {
                    digest: "d2".into(),
                    tags: vec!["c".into(), "d".into()],
                    explicit: false
                },
            ]
        );
    }

    #[test]
    fn siblings_survive_and_whole_groups_go() {
        let fake = Fake::default();
        let shared = fake.push("v1", "one");
        fake.push("v1-alias", "one");
        fake.push("v1-other", "one");
        let alone = fake.push("v2", "two");
        fake.push("v2-alias", "two");
        let before = fake.snapshot();
        let (entries, fake, progress) = run(
            fake,
            &[tag("v2-alias"), tag("v1"), tag("v2"), tag("gone")],
            false,
        );
        assert_eq!(
            statuses(&entries),
            vec![
                (
                    "fake/a/b:v2-alias".into(),
                    Status::Deleted,
                    Some(Method::Digest)
                ),
                (
                    "fake/a/b:v1".into(),
                    Status::Untagged,
                    Some(Method::Tombstone)
                ),
                ("fake/a/b:v2".into(), Status::Deleted, Some(Method::Digest)),
                ("fake/a/b:gone".into(), Status::Absent, None),
            ]
        );
        assert_eq!(progress, 4);
        assert_eq!(entries[1].digest.as_deref(), Some(shared.as_str()));
        let mut expected = before;
        for removed in ["v1", "v2", "v2-alias"] {
            expected.remove(removed);
        }
        assert_eq!(fake.snapshot(), expected);
        assert!(fake.manifests.borrow().contains_key(&shared));
        assert!(!fake.manifests.borrow().contains_key(&alone));
        // Only the original manifests remain: every tombstone was deleted.
        assert_eq!(fake.manifests.borrow().len(), 1);

        let (again, _, _) = run(fake, &[tag("v1"), tag("v2")], false);
        assert!(again.iter().all(|e| e.status == Status::Absent));
    }

    #[test]
    fn a_digest_removes_its_manifest_and_tags() {
        let fake = Fake::default();
        let digest = fake.push("a", "one");
        fake.push("b", "one");
        fake.push("c", "two");
        let (entries, fake, _) = run(fake, &[Target::Digest(digest.clone()), tag("a")], false);
        assert_eq!(
            statuses(&entries),
            vec![
                (
                    format!("fake/a/b@{digest}"),
                    Status::Deleted,
                    Some(Method::Digest)
                ),
                ("fake/a/b:a".into(), Status::Deleted, Some(Method::Digest)),
            ]
        );
        assert_eq!(fake.snapshot().keys().collect::<Vec<_>>(), ["c"]);
    }

    #[test]
    fn dry_run_changes_nothing_and_reports_what_the_real_run_would() {
        let fake = Fake::default();
        fake.push("a", "one");
        fake.push("b", "one");
        let two = fake.push("c", "two");
        let before = fake.snapshot();
        let missing = digest_of(b"never pushed");
        let targets = [
            tag("a"),
            tag("c"),
            tag("x"),
            Target::Digest(missing.clone()),
            Target::Digest(two.clone()),
        ];
        let (entries, fake, _) = run(fake, &targets, true);
        let seen: BTreeMap<String, (Status, Option<Method>)> = statuses(&entries)
            .into_iter()
            .map(|(reference, status, method)| (reference, (status, method)))
            .collect();
        let expected: BTreeMap<String, (Status, Option<Method>)> = [
            (
                "fake/a/b:a".to_string(),
                (Status::Planned, Some(Method::Tombstone)),
            ),
            ("fake/a/b:c".into(), (Status::Planned, Some(Method::Digest))),
            ("fake/a/b:x".into(), (Status::Absent, None)),
            (format!("fake/a/b@{missing}"), (Status::Absent, None)),
            (
                format!("fake/a/b@{two}"),
                (Status::Planned, Some(Method::Digest)),
            ),
        ]
        .into_iter()
        .collect();
        assert_eq!(seen, expected);
        assert_eq!(fake.snapshot(), before);

        // Deletes disabled: the dry run fails as the real run does, and pushes no tombstone.
        let fake = Fake {
            delete_disabled: true,
            ..Fake::default()
        };
        fake.push("a", "one");
        fake.push("b", "one");
        let manifests = fake.manifests.borrow().len();
        let (entries, fake, _) = run(fake, &[tag("a")], true);
        assert_eq!(entries[0].failure, Some(FailureKind::DeleteUnsupported));
        assert_eq!(fake.manifests.borrow().len(), manifests);
    }

    #[test]
    fn a_registry_that_cannot_delete_is_left_untouched() {
        let fake = Fake {
            delete_disabled: true,
            ..Fake::default()
        };
        fake.push("a", "one");
        fake.push("b", "one");
        let before = fake.snapshot();
        let manifests = fake.manifests.borrow().len();
        let (entries, fake, _) = run(fake, &[tag("a")], false);
        assert_eq!(entries[0].failure, Some(FailureKind::DeleteUnsupported));
        assert_eq!(fake.snapshot(), before);
        assert_eq!(
            fake.manifests.borrow().len(),
            manifests,
            "no tombstone was pushed"
        );
    }

    #[test]
    fn a_tag_moved_onto_a_shared_digest_after_listing_keeps_its_new_siblings() {
        let fake = Fake::default();
        let old = fake.push("a", "one");
        fake.push("b", "one");
        let new = fake.push("c", "two");
        // Listing HEADs a, b, c (reads 1-3); the re-check of `a` is read 4.
        let fake = Fake {
            move_on_read: Some((4, "a".into(), new.clone())),
            ..fake
        };
        let (entries, fake, _) = run(fake, &[tag("a"), tag("b")], false);
        assert_eq!(entries[0].status, Status::Untagged);
        assert_eq!(entries[0].digest.as_deref(), Some(new.as_str()));
        assert_eq!(entries[1].status, Status::Deleted);
        assert_eq!(fake.snapshot(), BTreeMap::from([("c".to_string(), new)]));
        assert!(!fake.manifests.borrow().contains_key(&old));
    }

    #[test]
    fn tags_left_behind_by_a_half_done_delete_are_relinked_and_deleted() {
        let fake = Fake {
            half_deletes: Cell::new(3),
            ..Fake::default()
        };
        fake.push("a", "one");
        fake.push("b", "one");
        let shared = fake.push("c", "two");
        fake.push("d", "two");
        let (entries, fake, _) = run(fake, &[tag("a"), tag("b"), tag("c")], false);
        assert_eq!(
            statuses(&entries),
            vec![
                ("fake/a/b:a".into(), Status::Deleted, Some(Method::Digest)),
                ("fake/a/b:b".into(), Status::Deleted, Some(Method::Digest)),
                (
                    "fake/a/b:c".into(),
                    Status::Untagged,
                    Some(Method::Tombstone)
                ),
            ]
        );
        assert_eq!(fake.snapshot(), BTreeMap::from([("d".to_string(), shared)]));
        assert_eq!(fake.manifests.borrow().len(), 1);

        let stubborn = Fake {
            half_deletes: Cell::new(usize::MAX),
            ..Fake::default()
        };
        stubborn.push("a", "one");
        stubborn.push("b", "one");
        let (entries, _, _) = run(stubborn, &[tag("a")], false);
        assert_eq!(entries[0].status, Status::Failed);
        assert!(
            entries[0].error.as_deref().unwrap().contains("stay listed"),
            "{entries:?}"
        );
    }

    #[test]
    fn distinct_digests_cost_one_listing_read_one_recheck_and_one_delete_each() {
        let fake = Fake::default();
        let names: Vec<String> = (0..20).map(|n| format!("t{n}")).collect();
        for name in &names {
            fake.push(name, name);
        }
        let targets: Vec<Target> = names.iter().map(|name| tag(name)).collect();
        let (entries, fake, _) = run(fake, &targets, false);
        assert!(entries.iter().all(|e| e.status == Status::Deleted));
        assert!(fake.snapshot().is_empty());
        assert_eq!(
            fake.reads.get(),
            2 * names.len(),
            "a HEAD and a GET per tag"
        );
        assert_eq!(
            fake.gets.borrow().iter().collect::<BTreeSet<_>>(),
            names.iter().collect(),
            "only the re-checks GET, by tag"
        );
        assert_eq!(fake.deletes.get(), names.len() + 1, "one DELETE per tag");
    }

    #[test]
    fn children_the_caller_has_read_are_spared_without_reading_the_index_again() {
        let fake = Fake::default();
        let amd64 = fake.push("amd64", "amd64");
        let index = fake.push_index("multi", &[&amd64]);
        fake.push("lonely", "lonely");
        let known = BTreeSet::from([amd64.clone()]);
        let (entries, fake, _) = run_knowing(
            fake,
            &[tag("amd64"), tag("lonely")],
            false,
            Some(&known),
            None,
        );
        assert_eq!(entries[0].status, Status::Untagged, "{entries:?}");
        assert_eq!(entries[1].status, Status::Deleted, "{entries:?}");
        assert!(fake.manifests.borrow().contains_key(&amd64));
        assert!(
            !fake.gets.borrow().contains(&index),
            "the index is not read twice"
        );
    }

    #[test]
    fn a_manifest_a_kept_index_references_is_untagged_not_deleted() {
        let fake = Fake::default();
        let amd64 = fake.push("amd64", "amd64");
        let arm64 = fake.push("arm64-build", "arm64");
        let lonely = fake.push("lonely", "lonely");
        let index = fake.push_index("multi", &[&amd64, &arm64]);
        fake.tags
            .borrow_mut()
            .insert("multi-alias".into(), index.clone());
        let (entries, fake, _) = run(fake, &[tag("amd64"), tag("lonely")], false);
        assert_eq!(
            statuses(&entries),
            vec![
                (
                    "fake/a/b:amd64".into(),
                    Status::Untagged,
                    Some(Method::Tombstone)
                ),
                (
                    "fake/a/b:lonely".into(),
                    Status::Deleted,
                    Some(Method::Digest)
                ),
            ]
        );
        assert!(
            fake.manifests.borrow().contains_key(&amd64),
            "the kept index needs it"
        );
        assert!(!fake.manifests.borrow().contains_key(&lonely));
        assert_eq!(
            fake.snapshot().keys().collect::<Vec<_>>(),
            ["arm64-build", "multi", "multi-alias"]
        );
        let index_reads = fake.gets.borrow().iter().filter(|r| **r == index).count();
        assert_eq!(index_reads, 1, "two kept tags, one index, one read");

        // Nothing deleted by digest (the only requested tag has a kept sibling): no index is read.
        fake.tags
            .borrow_mut()
            .insert("lonely-2".into(), arm64.clone());
        fake.gets.borrow_mut().clear();
        let (entries, fake, _) = run(fake, &[tag("arm64-build")], false);
        assert_eq!(entries[0].status, Status::Untagged);
        assert!(!fake.gets.borrow().contains(&index));
        // The dry run shows the untag too.
        let amd64_again = fake.push("amd64", "amd64");
        assert_eq!(amd64_again, amd64);
        let (entries, _, _) = run(fake, &[tag("amd64")], true);
        assert_eq!(
            statuses(&entries),
            vec![(
                "fake/a/b:amd64".into(),
                Status::Planned,
                Some(Method::Tombstone)
            )]
        );
    }

    #[test]
    fn journaling_records_each_body_before_the_change_and_adds_no_request_per_tag() {
        let scenario = || {
            let fake = Fake::default();
            fake.push("untag", "shared");
            fake.push("sibling", "shared");
            fake.push("alone", "alone");
            let named = fake.push("named", "named");
            fake.tags.borrow_mut().remove("named");
            (fake, named)
        };
        let targets = |named: &str| {
            vec![
                tag("untag"),
                tag("alone"),
                Target::Digest(named.to_string()),
            ]
        };
        let (plain, named) = scenario();
        let (_, plain, _) = run_knowing(plain, &targets(&named), false, None, None);
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::new(
            crate::journal::Location::File(dir.path().join("j.jsonl")),
            "delete",
            vec!["fake".into()],
        );
        let (fake, named) = scenario();
        let bodies: BTreeMap<String, Vec<u8>> = ["untag", "alone"]
            .into_iter()
            .map(|tag| (tag.to_string(), fake.read(tag).unwrap().2))
            .collect();
        let (entries, fake, _) = run_knowing(fake, &targets(&named), false, None, Some(&journal));
        assert!(
            entries.iter().all(|entry| entry.error.is_none()),
            "{entries:?}"
        );
        let text = std::fs::read_to_string(journal.path()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .skip(1)
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        let find = |tag: Option<&str>| {
            lines
                .iter()
                .find(|line| line["tag"].as_str() == tag)
                .unwrap_or_else(|| panic!("no line for {tag:?}: {text}"))
        };
        use base64::Engine;
        let body = |line: &serde_json::Value| {
            base64::engine::general_purpose::STANDARD
                .decode(line["body"].as_str().unwrap())
                .unwrap()
        };
        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!(find(Some("untag"))["change"], "tombstone-untag");
        assert_eq!(
            body(find(Some("untag"))),
            bodies["untag"],
            "the original, not the tombstone"
        );
        assert_eq!(find(Some("alone"))["change"], "manifest-delete");
        assert_eq!(body(find(Some("alone"))), bodies["alone"]);
        assert_eq!(find(None)["digest"], named.as_str());
        let extra = fake.gets.borrow().len() - plain.gets.borrow().len();
        assert_eq!(
            extra, 1,
            "only the manifest named by digest alone is read for the journal"
        );
    }

    #[test]
    fn tombstones_keep_the_manifest_and_add_a_unique_annotation() {
        let body = br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"digest":"x"},"layers":[]}"#;
        let first = tombstone(body, &tombstone_marker()).unwrap();
        let second = tombstone(body, &tombstone_marker()).unwrap();
        assert_ne!(first, second);
        let value: serde_json::Value = serde_json::from_slice(&first).unwrap();
        assert_eq!(value["config"]["digest"], "x");
        assert!(value["annotations"][TOMBSTONE_ANNOTATION].is_string());
        let annotated = br#"{"schemaVersion":2,"manifests":[],"annotations":{"keep":"me"}}"#;
        let value: serde_json::Value =
            serde_json::from_slice(&tombstone(annotated, "m").unwrap()).unwrap();
        assert_eq!(
            value["annotations"],
            serde_json::json!({"keep":"me", TOMBSTONE_ANNOTATION: "m"})
        );
        assert!(tombstone(br#"{"schemaVersion":1}"#, "m").is_err());
        assert!(tombstone(b"[]", "m").is_err());
        assert!(tombstone(b"not json", "m").is_err());
    }
}
