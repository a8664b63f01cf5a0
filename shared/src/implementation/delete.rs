//! The one delete path. An implementation plans (what removes each target, from its own listing) and
//! removes; [`run`] does what every implementation needs the same way: each target once, a failed plan
//! failing every target, a dry run reporting the plan as `planned` entries, progress, and the entries in
//! request order.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};

use futures_util::stream::{self, StreamExt};

use super::{DeleteRequest, Journaling};
use crate::journal::{Change, ChangeKind};
use crate::reference::{Repository, Target};
use crate::registry::RegistryError;
use crate::registry::failure_kind;
use crate::registry::throttle::Stop;
use crate::report::{Entry, FailureKind, Method, Outcome};

/// How one target would go, as a dry run reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Planned {
    /// The target.
    pub target: Target,
    /// The digest a tag points at, when known.
    pub digest: Option<String>,
    /// How it goes.
    pub method: Method,
}

impl Planned {
    /// `target` (pointing at `digest`) goes by `method`.
    pub fn new(target: Target, digest: Option<String>, method: Method) -> Planned {
        Planned {
            target,
            digest,
            method,
        }
    }
}

/// One change to the registry: the targets it removes, and what the implementation needs to do it.
pub(super) struct Removal<A> {
    /// The targets it removes, each once.
    pub planned: Vec<Planned>,
    /// The implementation's own description of the change.
    pub action: A,
}

/// What a plan decides for one or more targets.
pub(super) enum Step<A> {
    /// Settled without changing anything (absent, refused): reported as it is, in a dry run too.
    Settled(Entry),
    /// A change: reported `planned` in a dry run, else carried out by [`Deletion::remove`].
    Remove(Removal<A>),
}

impl<A> Step<A> {
    /// A removal of one target.
    pub fn removal(target: Target, digest: Option<String>, method: Method, action: A) -> Step<A> {
        Step::Remove(Removal {
            planned: vec![Planned::new(target, digest, method)],
            action,
        })
    }
}

/// An implementation's delete, in the two halves [`run`] drives.
pub(super) trait Deletion {
    /// What one [`Removal`] does.
    type Action;

    /// Whether [`remove`](Deletion::remove) records each change in the request's journal itself, from
    /// the bodies its re-check reads anyway; else [`run`] reads each body over v2 and records it first.
    const JOURNALS_ITSELF: bool = false;

    /// How many removals may run at once.
    fn parallel(&self) -> usize;

    /// Decides every target of `request` (distinct, in request order), each in exactly one step, without
    /// changing anything; an error fails every target. `dry_run` only lets a plan skip a read that a real
    /// run alone needs, or a read that only tells a dry run's `planned` from `absent`.
    async fn plan(
        &self,
        request: &DeleteRequest<'_>,
    ) -> Result<Vec<Step<Self::Action>>, RegistryError>;

    /// Carries out one removal: one entry per planned target. A removal of many targets may report
    /// some as finished through `progress` before it returns.
    async fn remove(
        &self,
        repository: &Repository,
        removal: Removal<Self::Action>,
        progress: &dyn Fn(u64),
    ) -> Vec<Entry>;
}

/// Runs `request` through `deletion`: one entry per distinct target, in the order of its first request.
pub(super) async fn run<D: Deletion>(deletion: &D, request: DeleteRequest<'_>) -> Vec<Entry> {
    let repository = request.repository;
    let progress = request.progress;
    let mut seen = HashSet::new();
    let targets: Vec<Target> = request
        .targets
        .iter()
        .filter(|target| seen.insert(*target))
        .cloned()
        .collect();
    let request = DeleteRequest {
        targets: &targets,
        ..request
    };
    let throttle = crate::registry::throttle::global();
    if let Some(stop) = throttle.stop_reason() {
        progress(targets.len() as u64);
        return targets
            .iter()
            .map(|target| not_attempted(repository, target, &stop))
            .collect();
    }
    let steps = match deletion.plan(&request).await {
        Ok(steps) => steps,
        Err(error) => {
            if failure_kind(&error) == FailureKind::Auth {
                throttle.note_auth_refusal();
            }
            progress(targets.len() as u64);
            return targets
                .iter()
                .map(|target| failed(repository, target, None, &error))
                .collect();
        }
    };
    let mut entries = Vec::with_capacity(targets.len());
    let mut removals = Vec::new();
    for step in steps {
        match step {
            Step::Settled(entry) => entries.push(entry),
            Step::Remove(removal) if request.dry_run => {
                entries.extend(removal.planned.into_iter().map(|planned| {
                    Entry::new(
                        repository,
                        &planned.target,
                        planned.digest,
                        Outcome::Planned(planned.method),
                    )
                }))
            }
            Step::Remove(removal) => removals.push(removal),
        }
    }
    progress(entries.len() as u64);
    let journal = request.journal.filter(|_| !D::JOURNALS_ITSELF);
    let removed: Vec<Vec<Entry>> = stream::iter(removals)
        .map(|removal| async move {
            if let Some(stop) = throttle.stop_reason() {
                progress(removal.planned.len() as u64);
                return removal
                    .planned
                    .iter()
                    .map(|planned| not_attempted(repository, &planned.target, &stop))
                    .collect();
            }
            if let Some(journaling) = journal
                && let Err(refused) =
                    journal_removal(journaling, repository, &removal.planned).await
            {
                progress(refused.len() as u64);
                return refused;
            }
            let reported = Cell::new(0);
            let early = |finished: u64| {
                reported.set(reported.get() + finished);
                progress(finished);
            };
            let entries = deletion.remove(repository, removal, &early).await;
            // Each refused removal counts once towards stopping the run.
            if entries
                .iter()
                .any(|entry| entry.failure == Some(FailureKind::Auth))
            {
                throttle.note_auth_refusal();
            }
            progress((entries.len() as u64).saturating_sub(reported.get()));
            entries
        })
        .buffer_unordered(deletion.parallel().max(1))
        .collect()
        .await;
    entries.extend(removed.into_iter().flatten());
    let order: HashMap<&Target, usize> = targets
        .iter()
        .enumerate()
        .map(|(index, target)| (target, index))
        .collect();
    entries.sort_by_cached_key(|entry| order.get(&entry.target()).copied().unwrap_or(usize::MAX));
    entries
}

/// Records each target of a removal in the journal, its manifest read over v2 (once per digest), before
/// the removal is sent; when the journal cannot be written, the entries of targets left untouched. A
/// manifest the registry will not serve over v2 (a vendor token is for its API only) is sent unrecorded
/// and counted in the journal, which the run reports.
async fn journal_removal(
    journaling: Journaling<'_>,
    repository: &Repository,
    planned: &[Planned],
) -> Result<(), Vec<Entry>> {
    let mut read: HashMap<String, Result<Option<crate::registry::Manifest>, String>> =
        HashMap::new();
    for each in planned {
        let reference = match (&each.digest, &each.target) {
            (Some(digest), _) | (None, Target::Digest(digest)) => digest.clone(),
            (None, Target::Tag(tag)) => tag.clone(),
        };
        if !read.contains_key(&reference) {
            let manifest = journaling
                .client
                .get_manifest(&repository.path, &reference)
                .await
                .map_err(|error| error.to_string());
            read.insert(reference.clone(), manifest);
        }
        let manifest = match read.get(&reference) {
            Some(Ok(Some(manifest))) => manifest,
            unread => {
                // Not found over v2 although the vendor lists it: a registry whose v2 API is elsewhere.
                let why = match unread {
                    Some(Err(error)) => error.as_str(),
                    _ => "not found",
                };
                journaling.journal.unrecorded(format!(
                    "{}/{}: its manifest cannot be read over v2 ({why}); docker credentials for {} make such deletes undoable",
                    repository.registry, repository.path, repository.registry
                ));
                continue;
            }
        };
        let (tag, kind) = match (&each.target, each.method) {
            (Target::Digest(_), _) => (None, ChangeKind::ManifestDelete),
            (Target::Tag(tag), Method::Digest) => (Some(tag.as_str()), ChangeKind::ManifestDelete),
            (Target::Tag(tag), Method::Tombstone) => {
                (Some(tag.as_str()), ChangeKind::TombstoneUntag)
            }
            (Target::Tag(tag), Method::Native) => (Some(tag.as_str()), ChangeKind::VendorUntag),
        };
        let change = Change::new(&repository.registry, &repository.path, tag, manifest, kind);
        journaling.journal.record(&change).map_err(|error| {
            planned
                .iter()
                .map(|each| {
                    let mut entry = not_journaled(
                        repository,
                        &each.target,
                        each.digest.clone(),
                        &error.to_string(),
                    );
                    entry.failure = Some(FailureKind::Other);
                    entry
                })
                .collect::<Vec<_>>()
        })?;
    }
    Ok(())
}

/// The entry for `target`, left untouched because its change could not be journaled first (`why`).
pub(super) fn not_journaled(
    repository: &Repository,
    target: &Target,
    digest: Option<String>,
    why: &str,
) -> Entry {
    let error = format!("not removed: cannot record it in the undo journal first: {why}");
    refused(repository, target, digest, error)
}

/// A listing a delete plan reads: a repository that does not exist has nothing to delete.
pub(super) fn missing_is_empty<T: Default>(
    listed: Result<T, RegistryError>,
) -> Result<T, RegistryError> {
    match listed {
        Err(RegistryError::RepositoryNotFound { .. }) => Ok(T::default()),
        listed => listed,
    }
}

/// The entry for `target`, which the registry will not let go (`reason`, one line): a refusal, not a
/// failure of access or transport.
pub(super) fn refused(
    repository: &Repository,
    target: &Target,
    digest: Option<String>,
    reason: String,
) -> Entry {
    let outcome = Outcome::Failed {
        error: reason,
        kind: FailureKind::Other,
    };
    Entry::new(repository, target, digest, outcome)
}

/// The entry for `target`, which the run no longer tries (`--timeout` passed, credentials refused again
/// and again): a rerun takes it up.
fn not_attempted(repository: &Repository, target: &Target, stop: &Stop) -> Entry {
    let (error, kind) = match stop {
        Stop::Timeout => (
            "not attempted: the --timeout passed; run again to continue".to_string(),
            FailureKind::Other,
        ),
        Stop::Refused(times) => (
            format!(
                "not attempted: the credentials were refused {times} times in this run (see the first failures)"
            ),
            FailureKind::Auth,
        ),
    };
    Entry::new(repository, target, None, Outcome::Failed { error, kind })
}

/// The entry for `target`, which `error` kept from going.
pub(super) fn failed(
    repository: &Repository,
    target: &Target,
    digest: Option<String>,
    error: &RegistryError,
) -> Entry {
    Entry::new(
        repository,
        target,
        digest,
        Outcome::Failed {
            error: error.to_string(),
            kind: failure_kind(error),
        },
    )
}

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};

    use futures_util::FutureExt;

    use super::*;
    use crate::report::{FailureKind, Status};

    /// Plans in reverse order; `gone` is absent; tags `pair-a` and `pair-b` go in one removal, which
    /// reports one of them early.
    #[derive(Default)]
    struct Fake {
        fail_plan: bool,
        removed: RefCell<Vec<Vec<Target>>>,
    }

    impl Deletion for Fake {
        type Action = ();

        fn parallel(&self) -> usize {
            2
        }

        async fn plan(&self, request: &DeleteRequest<'_>) -> Result<Vec<Step<()>>, RegistryError> {
            if self.fail_plan {
                return Err(RegistryError::Config("no listing".into()));
            }
            let tag = |name: &str| Target::Tag(name.into());
            let mut steps = Vec::new();
            let mut pair = Vec::new();
            for target in request.targets.iter().rev() {
                match target {
                    Target::Tag(name) if name == "gone" => {
                        steps.push(Step::Settled(Entry::absent(request.repository, target)))
                    }
                    Target::Tag(name) if name.starts_with("pair-") => pair.push(Planned::new(
                        tag(name),
                        Some("sha256:p".into()),
                        Method::Digest,
                    )),
                    _ => steps.push(Step::removal(target.clone(), None, Method::Native, ())),
                }
            }
            if !pair.is_empty() {
                steps.push(Step::Remove(Removal {
                    planned: pair,
                    action: (),
                }));
            }
            Ok(steps)
        }

        async fn remove(
            &self,
            repository: &Repository,
            removal: Removal<()>,
            progress: &dyn Fn(u64),
        ) -> Vec<Entry> {
            progress(1);
            let targets = removal.planned.iter().map(|p| p.target.clone()).collect();
            self.removed.borrow_mut().push(targets);
            removal
                .planned
                .into_iter()
                .map(|planned| {
                    Entry::new(
                        repository,
                        &planned.target,
                        planned.digest,
                        Outcome::Deleted(planned.method),
                    )
                })
                .collect()
        }
    }

    fn run_fake(fake: &Fake, targets: &[&str], dry_run: bool) -> (Vec<Entry>, u64) {
        let repository = Repository {
            registry: "r.io".into(),
            path: "app".into(),
        };
        let targets: Vec<Target> = targets
            .iter()
            .map(|name| match name.strip_prefix('@') {
                Some(digest) => Target::Digest(digest.into()),
                None => Target::Tag((*name).into()),
            })
            .collect();
        let progress = Cell::new(0);
        let count = |n: u64| progress.set(progress.get() + n);
        let request = DeleteRequest {
            repository: &repository,
            targets: &targets,
            dry_run,
            progress: &count,
            kept_index_children: None,
            journal: None,
        };
        let entries = run(fake, request)
            .now_or_never()
            .expect("the fake never waits");
        (entries, progress.get())
    }

    fn summary(entries: &[Entry]) -> Vec<(&str, Status, Option<Method>)> {
        entries
            .iter()
            .map(|entry| (entry.reference.as_str(), entry.status, entry.method))
            .collect()
    }

    #[test]
    fn each_target_goes_once_and_entries_keep_the_request_order() {
        let fake = Fake::default();
        let (entries, progress) = run_fake(
            &fake,
            &["b", "pair-a", "gone", "@sha256:d", "b", "pair-b", "pair-a"],
            false,
        );
        assert_eq!(
            summary(&entries),
            [
                ("r.io/app:b", Status::Deleted, Some(Method::Native)),
                ("r.io/app:pair-a", Status::Deleted, Some(Method::Digest)),
                ("r.io/app:gone", Status::Absent, None),
                ("r.io/app@sha256:d", Status::Deleted, Some(Method::Native)),
                ("r.io/app:pair-b", Status::Deleted, Some(Method::Digest)),
            ]
        );
        assert_eq!(progress, 5, "one tick per entry, early ones included");
        let removed = fake.removed.into_inner();
        assert_eq!(removed.len(), 3, "b, the digest, and the pair together");
        assert!(removed.contains(&vec![
            Target::Tag("pair-b".into()),
            Target::Tag("pair-a".into())
        ]));
    }

    #[test]
    fn a_dry_run_reports_the_plan_and_removes_nothing() {
        let fake = Fake::default();
        let (entries, progress) = run_fake(&fake, &["pair-a", "gone", "x"], true);
        assert_eq!(
            summary(&entries),
            [
                ("r.io/app:pair-a", Status::Planned, Some(Method::Digest)),
                ("r.io/app:gone", Status::Absent, None),
                ("r.io/app:x", Status::Planned, Some(Method::Native)),
            ]
        );
        assert_eq!(entries[0].digest.as_deref(), Some("sha256:p"));
        assert_eq!(progress, 3);
        assert!(fake.removed.borrow().is_empty());
    }

    #[test]
    fn a_failed_plan_fails_every_target_once() {
        let fake = Fake {
            fail_plan: true,
            ..Fake::default()
        };
        let (entries, progress) = run_fake(&fake, &["a", "@sha256:d", "a"], false);
        assert_eq!(
            summary(&entries),
            [
                ("r.io/app:a", Status::Failed, None),
                ("r.io/app@sha256:d", Status::Failed, None),
            ]
        );
        assert!(entries.iter().all(|entry| {
            entry.error.as_deref() == Some("no listing")
                && entry.failure == Some(FailureKind::Other)
        }));
        assert_eq!(progress, 2);
    }
}
