//! The cleanup engine behind `regkit cleanup`: expand the repositories named, list and date their tags,
//! decide with a [`Policy`], delete through each implementation's tag-safe delete, and report one
//! [`Row`] per tag (and per untagged manifest considered).
//!
//! It runs in two halves so that a caller can show the plan and ask before anything changes: [`plan`]
//! reads only, [`Plan::execute`] deletes (or plans, on a dry run) and [`Plan::decline`] records a "no".
//!
//! Every step is implementation-neutral: tags and dates come from [`Implementation::list_tags`], dates
//! missing there are read from image configs over v2, untagged manifests from
//! [`Implementation::list_untagged`], repositories under a prefix from
//! [`Implementation::list_repositories`] or `_catalog`. An implementation that lands later needs nothing
//! here.

use std::collections::btree_map::Entry as Slot;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use futures_util::stream::{self, StreamExt};
use serde::Serialize;

use crate::dates::{self, ImageDate, Timestamp};
use crate::implementation::{DeleteRemoves, DeleteRequest, Implementation, Journaling, TagInfo};
use crate::inuse::InUse;
use crate::journal::Journal;
use crate::policy::{self, Decision, Listing, Policies, Policy, Rule, TagRecord, Verdict};
use crate::reference::{Repository, Target};
use crate::referrers::{self, Depth, TagKind};
use crate::registry::{Client, RegistryError, failure_kind};
use crate::report::{self, Entry, FailureKind, Method, Status, StatusCounts};
use crate::session::{Connection, Observer, Session};

/// What a cleanup is asked to do.
#[derive(Debug, Clone, Copy)]
pub struct CleanupRequest<'a> {
    /// Repositories as typed: `registry/path`, `registry/prefix/*` or `registry/*`.
    pub repositories: &'a [String],
    /// What is kept and what goes: one policy, or named policies each for its repositories.
    pub policies: &'a Policies,
    /// A tag whose every rule's verdict the plan records ([`Plan::explanations`]).
    pub explain: Option<&'a str>,
    /// Also remove manifests no tag points at, where the implementation can list them.
    pub untagged: bool,
    /// Keep the referrers of deleted manifests (they become orphans).
    pub keep_referrers: bool,
    /// Remove orphans: referrers whose subject no longer exists (`--older-than` applies).
    pub orphans: bool,
    /// What workloads and `--keep-images` use (computed before planning): kept whatever the policy says.
    pub in_use: Option<&'a InUse>,
}

/// Keep or delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Left alone.
    Keep,
    /// Selected for deletion.
    Delete,
}

/// Where a row's date comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DateSource {
    /// The implementation's listing (push or creation time).
    Vendor,
    /// The image config's `created`, read over v2.
    ImageConfig,
}

/// What became of a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RowResult {
    /// Kept by the policy.
    Kept,
    /// Selected, but the user answered no at the prompt.
    Declined,
    /// The manifest was deleted, and the tag with it.
    Deleted,
    /// Only the tag was removed.
    Untagged,
    /// It was gone already.
    Absent,
    /// Dry run: it would be removed.
    Planned,
    /// It could not be removed; see `error`.
    Failed,
}

impl RowResult {
    /// The lowercase name used in every output.
    pub fn as_str(self) -> &'static str {
        match self {
            RowResult::Kept => "kept",
            RowResult::Declined => "declined",
            RowResult::Deleted => "deleted",
            RowResult::Untagged => "untagged",
            RowResult::Absent => "absent",
            RowResult::Planned => "planned",
            RowResult::Failed => "failed",
        }
    }

    /// The deletion's status; `None` for a row nothing was sent for.
    fn status(self) -> Option<Status> {
        match self {
            RowResult::Kept | RowResult::Declined => None,
            RowResult::Deleted => Some(Status::Deleted),
            RowResult::Untagged => Some(Status::Untagged),
            RowResult::Absent => Some(Status::Absent),
            RowResult::Planned => Some(Status::Planned),
            RowResult::Failed => Some(Status::Failed),
        }
    }
}

impl From<Status> for RowResult {
    fn from(status: Status) -> RowResult {
        match status {
            Status::Deleted => RowResult::Deleted,
            Status::Untagged => RowResult::Untagged,
            Status::Absent => RowResult::Absent,
            Status::Planned => RowResult::Planned,
            // `undo`'s own statuses never come from a delete.
            Status::Failed | Status::Restored | Status::Conflict | Status::Lost => {
                RowResult::Failed
            }
        }
    }
}

/// One tag or untagged manifest: what was decided, why, and what happened.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// The repository, as `registry/path`.
    pub repository: String,
    /// The tag; `None` for an untagged manifest.
    pub tag: Option<String>,
    /// The manifest digest, when known.
    pub digest: Option<String>,
    /// For a referrer (signature, attestation, SBOM…): the digest of the manifest it refers to.
    pub subject: Option<String>,
    /// When it was pushed, when known.
    pub created: Option<Timestamp>,
    /// Where `created` comes from.
    pub date_source: Option<DateSource>,
    /// Its age at the start of the run (`3d`), when dated.
    pub age: Option<String>,
    /// What the policy decided.
    pub action: Action,
    /// The rule that decided it.
    pub rule: Rule,
    /// Why, in words.
    pub reason: String,
    /// What happened.
    pub result: RowResult,
    /// How it was (or would be) removed.
    pub method: Option<Method>,
    /// Why the removal failed.
    pub error: Option<String>,
    /// The implementation's entry for a deletion, for the shared exit-code rules.
    #[serde(skip)]
    pub entry: Option<Entry>,
}

impl Row {
    /// What a delete request names for this row.
    fn target(&self) -> Target {
        match (&self.tag, &self.digest) {
            (Some(tag), _) => Target::Tag(tag.clone()),
            (None, digest) => Target::Digest(digest.clone().unwrap_or_default()),
        }
    }

    /// `repository:tag` or `repository@digest`.
    fn reference(&self) -> String {
        match (&self.tag, &self.digest) {
            (Some(tag), _) => format!("{}:{tag}", self.repository),
            (None, Some(digest)) => format!("{}@{digest}", self.repository),
            (None, None) => self.repository.clone(),
        }
    }
}

/// A repository-level outcome: a listing that failed, or a note such as "cannot list untagged manifests".
#[derive(Debug, Clone, Serialize)]
pub struct RepositoryNote {
    /// The repository or pattern.
    pub repository: String,
    /// The implementation that served it.
    pub implementation: Option<&'static str>,
    /// What failed; nothing of this repository was deleted.
    pub error: Option<String>,
    /// Information that changes no exit code.
    pub note: Option<String>,
    /// The exit code the failure maps to.
    #[serde(skip)]
    pub exit: u8,
}

impl RepositoryNote {
    fn note(repository: String, implementation: &'static str, note: String) -> RepositoryNote {
        RepositoryNote {
            repository,
            implementation: Some(implementation),
            error: None,
            note: Some(note),
            exit: report::EXIT_OK,
        }
    }

    fn failure(
        repository: String,
        implementation: &'static str,
        error: String,
        exit: u8,
    ) -> RepositoryNote {
        RepositoryNote {
            repository,
            implementation: Some(implementation),
            error: Some(error),
            note: None,
            exit,
        }
    }
}

/// Counts per result.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Repositories named or expanded.
    pub repositories: usize,
    /// Rows.
    pub seen: usize,
    /// Rows kept, or declined at the prompt.
    pub kept: usize,
    /// Referrers whose subject no longer exists (kept, or removed by `--orphans`).
    pub orphans: usize,
    /// Rows whose deletion ran (or was planned), per status.
    #[serde(flatten)]
    pub statuses: StatusCounts,
    /// What the in-use scan read (or that it read nothing), and what it skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_use: Option<InUseSummary>,
}

/// The in-use scan in a cleanup's summary.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct InUseSummary {
    /// Images (repository with a tag or a digest) in use.
    pub images: usize,
    /// What was scanned, or why nothing was.
    pub scanned: Vec<String>,
    /// Objects and lines skipped, and why.
    pub skipped: Vec<String>,
}

impl Summary {
    fn of(rows: &[Row], repositories: usize) -> Summary {
        let mut summary = Summary {
            repositories,
            seen: rows.len(),
            ..Summary::default()
        };
        for row in rows {
            if row.rule == Rule::Orphan {
                summary.orphans += 1;
            }
            match row.result.status() {
                Some(status) => summary.statuses.add(status),
                None => summary.kept += 1,
            }
        }
        summary
    }
}

/// Every rule's verdict on one tag of one repository (`--explain`), per policy that covers it.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    /// The repository.
    pub repository: String,
    /// The tag.
    pub tag: String,
    /// Per policy (named when it comes from the config file), the verdict of each rule it sets.
    pub policies: Vec<(Option<String>, Vec<Verdict>)>,
}

/// The decided rows of one repository.
struct RepositoryPlan {
    repository: Repository,
    rows: Vec<Row>,
    explanation: Option<Explanation>,
    /// The manifests kept indexes reference, where the engine read them (see [`protect_index_children`]).
    kept_index_children: Option<BTreeSet<String>>,
}

/// One repository listed, dated and decided.
struct Decided {
    rows: Vec<Row>,
    explanation: Option<Explanation>,
    /// A note for the report (untagged manifests that cannot be listed).
    note: Option<String>,
    kept_index_children: Option<BTreeSet<String>>,
}

/// What a cleanup would do, before anything changes.
pub struct Plan {
    connections: BTreeMap<String, Connection>,
    repositories: Vec<RepositoryPlan>,
    notes: Vec<RepositoryNote>,
    expanded: usize,
    /// Repositories deleted from at once (`--parallel`).
    parallel: usize,
    in_use: Option<InUseSummary>,
}

/// The outcome of a cleanup: every row, the repository notes, the counts.
#[derive(Debug, Serialize)]
pub struct Report {
    /// One row per tag seen and per untagged manifest considered.
    #[serde(rename = "tags")]
    pub rows: Vec<Row>,
    /// Repository-level failures and notes.
    pub notes: Vec<RepositoryNote>,
    /// The counts.
    pub summary: Summary,
    /// The user answered no: nothing was deleted.
    #[serde(skip)]
    pub declined: bool,
}

impl Report {
    /// The run's exit code: a declined run changed nothing and is a success; otherwise the worst of the
    /// deletions' codes and the repositories' failures ([`report::worst_exit`]).
    pub fn exit_code(&self) -> u8 {
        if self.declined {
            return report::EXIT_OK;
        }
        report::worst_exit(
            self.notes
                .iter()
                .map(|note| note.exit)
                .chain([report::exit_code(&self.entries())]),
        )
    }

    /// Each distinct deletion error once.
    pub fn errors(&self) -> Vec<String> {
        report::distinct_errors(&self.entries())
            .into_iter()
            .map(str::to_string)
            .collect()
    }

    fn entries(&self) -> Vec<Entry> {
        self.rows
            .iter()
            .filter_map(|row| row.entry.clone())
            .collect()
    }
}

/// Expands, lists, dates and decides every repository of `request`, changing nothing. `now` is the
/// reference time for ages (seconds since the epoch). A repository whose listing fails gets a note and
/// no rows, so nothing of it is deleted; a pattern or reference that does not parse, or a registry that
/// cannot be connected, fails the whole run before any request that changes anything.
pub async fn plan(
    session: &Session,
    request: &CleanupRequest<'_>,
    now: i64,
    observer: &dyn Observer,
) -> Result<Plan, RegistryError> {
    let parallel = session.options().parallel;
    let mut connections = BTreeMap::new();
    let mut notes = Vec::new();
    let repositories = expand(
        session,
        &mut connections,
        request.repositories,
        &mut notes,
        observer,
    )
    .await?;
    // Repositories are planned `parallel` at a time (each runs up to `parallel` requests; the host's gate
    // keeps the sum within `--parallel`), so only the listings of the repositories in flight are held;
    // a finished repository keeps its rows alone. The results are put back in expansion order.
    let several = repositories.len() > 1;
    // With several repositories the bar counts repositories; a repository's own steps stay silent.
    let inner: &dyn Observer = if several { &Quiet } else { observer };
    if several {
        observer.begin(repositories.len(), Some("repositories"));
    }
    let connections_ref = &connections;
    let mut outcomes: Vec<_> = stream::iter(repositories.iter().enumerate())
        .filter_map(|(index, repository)| async move {
            let connection = connections_ref.get(&repository.registry)?;
            Some((index, repository, connection))
        })
        .map(|(index, repository, connection)| async move {
            let outcome =
                plan_repository(request, connection, repository, now, parallel, inner).await;
            if several {
                observer.planned(outcome.as_ref().map_or(0, |decided| decided.rows.len()));
            }
            (index, repository, connection.implementation.name(), outcome)
        })
        .buffer_unordered(parallel.max(1))
        .collect()
        .await;
    if several {
        observer.end();
    }
    outcomes.sort_unstable_by_key(|(index, ..)| *index);
    let mut planned = Vec::new();
    for (_, repository, name, outcome) in outcomes {
        match outcome {
            Ok(decided) => {
                if let Some(note) = decided.note {
                    notes.push(RepositoryNote::note(repository.to_string(), name, note));
                }
                planned.push(RepositoryPlan {
                    repository: repository.clone(),
                    rows: decided.rows,
                    explanation: decided.explanation,
                    kept_index_children: decided.kept_index_children,
                });
            }
            Err(error) => notes.push(RepositoryNote::failure(
                repository.to_string(),
                name,
                error.to_string(),
                failure_kind(&error).exit_code(),
            )),
        }
    }
    Ok(Plan {
        connections,
        repositories: planned,
        notes,
        expanded: repositories.len(),
        parallel,
        in_use: request.in_use.map(|set| InUseSummary {
            images: set.len(),
            scanned: set.scanned.clone(),
            skipped: set.skipped.clone(),
        }),
    })
}

/// The observer of one repository among several planned at once: its steps (dating) would replace the
/// bar that counts repositories, and every connection is made before planning starts.
struct Quiet;

impl Observer for Quiet {}

impl Plan {
    /// The rows selected for deletion.
    pub fn deletions(&self) -> impl Iterator<Item = &Row> {
        self.repositories
            .iter()
            .flat_map(|plan| &plan.rows)
            .filter(|row| row.action == Action::Delete)
    }

    /// Every row of the plan, kept or selected.
    pub fn rows(&self) -> impl Iterator<Item = &Row> {
        self.repositories.iter().flat_map(|plan| &plan.rows)
    }

    /// The `--explain` verdicts, one per repository that lists the tag.
    pub fn explanations(&self) -> impl Iterator<Item = &Explanation> {
        self.repositories
            .iter()
            .filter_map(|plan| plan.explanation.as_ref())
    }

    /// Repository-level failures and notes so far.
    pub fn notes(&self) -> &[RepositoryNote] {
        &self.notes
    }

    /// How many repositories were listed and decided.
    pub fn planned_repositories(&self) -> usize {
        self.repositories.len()
    }

    /// Deletes (or plans, on a dry run) every selected row, one request per repository, repositories
    /// running concurrently (the requests to each host stay within `--parallel`: the HTTP layer's gate),
    /// and records each result on its row.
    /// Each change is recorded in `journal` (if any) before it is sent.
    pub async fn execute(
        mut self,
        dry_run: bool,
        journal: Option<&Journal>,
        observer: &dyn Observer,
    ) -> Report {
        let total = self.deletions().count();
        if total > 0 {
            observer.begin(total, None);
            let connections = &self.connections;
            stream::iter(self.repositories.iter_mut())
                .for_each_concurrent(self.parallel.max(1), |plan| async move {
                    if let Some(connection) = connections.get(&plan.repository.registry) {
                        let journal = journal.map(|journal| Journaling {
                            journal,
                            client: &connection.client,
                        });
                        delete_selected(
                            connection.implementation.as_ref(),
                            plan,
                            dry_run,
                            journal,
                            observer,
                        )
                        .await;
                    }
                })
                .await;
            observer.end();
        }
        self.into_report(false)
    }

    /// Records that the user declined: every selected row is `declined`, nothing changes.
    pub fn decline(mut self) -> Report {
        for row in self
            .repositories
            .iter_mut()
            .flat_map(|plan| plan.rows.iter_mut())
            .filter(|row| row.action == Action::Delete)
        {
            row.result = RowResult::Declined;
        }
        self.into_report(true)
    }

    fn into_report(self, declined: bool) -> Report {
        let rows: Vec<Row> = self
            .repositories
            .into_iter()
            .flat_map(|plan| plan.rows)
            .collect();
        Report {
            summary: Summary {
                in_use: self.in_use,
                ..Summary::of(&rows, self.expanded)
            },
            rows,
            notes: self.notes,
            declined,
        }
    }
}

/// The referrers that go with the manifests `digests` of `repository` when `regkit delete` removes them
/// by digest: each as the target that removes it (its tag, or its digest when no tag names it), in the
/// order found, recursively (a signature of an attestation too). The same rule as a cleanup's: referrers
/// are recognised by tag name, by the OCI 1.1 tag-schema index, through the OCI 1.1 referrers API where
/// the registry serves it (one GET per manifest that goes), else where a tag delete takes the manifest
/// by each other tag's `subject` (one GET per tag, `parallel` at a time).
pub async fn referrers_of(
    connection: &Connection,
    repository: &Repository,
    digests: &BTreeSet<String>,
    parallel: usize,
) -> Result<Vec<Target>, RegistryError> {
    let implementation = connection.implementation.as_ref();
    let client = &connection.client;
    let tags = implementation.list_tags(repository, true).await?;
    let removes = implementation.capabilities().delete_removes;
    let name = repository.to_string();
    let named = |info: &TagInfo| referrers::tag_subject(&info.tag).map(|(subject, _)| subject);
    // Where the referrers API is served, it finds the referrers of what goes: no tag needs reading.
    let mut asked: BTreeSet<String> = BTreeSet::new();
    let mut api_rows: Vec<Row> = digests
        .iter()
        .map(|digest| row(&name, None, Some(digest), None, None, 0, selected()))
        .collect();
    let api = Asking {
        implementation,
        client,
        repository,
        parallel,
        now: 0,
    };
    let served =
        add_api_referrers(&api, &mut asked, &mut api_rows).await? || client.referrers_api_served();
    let mut found = BTreeMap::new();
    if removes == DeleteRemoves::Manifest && !served {
        let unnamed = tags
            .iter()
            .filter(|info| named(info).is_none())
            .filter_map(|info| info.digest.as_deref());
        found = referrers::read_subjects(client, &repository.path, unnamed, parallel).await?;
    }
    // A manifest deleted by digest goes with every tag on it, on every implementation: its own untagged
    // row (in `api_rows`) stands for it.
    let mut rows: Vec<Row> = tags
        .iter()
        .filter(|info| !info.digest.as_ref().is_some_and(|d| digests.contains(d)))
        .map(|info| {
            let subject = named(info).or_else(|| {
                info.digest
                    .as_ref()
                    .and_then(|digest| found.get(digest).cloned())
            });
            let decision = subject.as_deref().map_or_else(
                || Decision {
                    delete: false,
                    rule: Rule::NotMatched,
                    reason: "not named".into(),
                },
                referrer_decision,
            );
            row(
                &name,
                Some(&info.tag),
                info.digest.as_deref(),
                None,
                None,
                0,
                decision,
            )
            .following(subject)
        })
        .collect();
    // A referrer the API names goes by digest: on a vendor whose tag delete only untags, deleting its
    // tags would leave its manifest.
    for api_row in api_rows {
        rows.retain(|row| row.digest != api_row.digest);
        rows.push(api_row);
    }
    let policies = Policies::single(Policy::default());
    let request = CleanupRequest {
        repositories: &[],
        policies: &policies,
        explain: None,
        untagged: false,
        keep_referrers: false,
        orphans: false,
        in_use: None,
    };
    follow_subjects(
        &request,
        implementation,
        client,
        repository,
        parallel,
        None,
        0,
        &mut asked,
        &mut rows,
    )
    .await?;
    Ok(rows
        .iter()
        .filter(|row| row.rule == Rule::FollowsSubject)
        .map(Row::target)
        .collect())
}

/// The decision on a manifest `regkit delete` names by digest.
fn selected() -> Decision {
    Decision {
        delete: true,
        rule: Rule::Selected,
        reason: "named by digest".into(),
    }
}

/// The connection for `registry`, made on first use.
async fn connection<'c>(
    session: &Session,
    connections: &'c mut BTreeMap<String, Connection>,
    registry: &str,
    observer: &dyn Observer,
) -> Result<&'c Connection, RegistryError> {
    Ok(match connections.entry(registry.to_string()) {
        Slot::Occupied(known) => known.into_mut(),
        Slot::Vacant(slot) => {
            let connection = session.connect(registry).await?;
            observer.connected(registry, &connection);
            slot.insert(connection)
        }
    })
}

fn parse_repository(input: &str) -> Result<Repository, RegistryError> {
    Repository::parse(input).map_err(|error| RegistryError::Config(error.to_string()))
}

/// The repositories named, `…/*` expanded; all are validated before the first request.
async fn expand(
    session: &Session,
    connections: &mut BTreeMap<String, Connection>,
    inputs: &[String],
    notes: &mut Vec<RepositoryNote>,
    observer: &dyn Observer,
) -> Result<Vec<Repository>, RegistryError> {
    enum Named {
        One(Repository),
        Prefix { registry: String, prefix: String },
    }
    let mut named = Vec::new();
    for input in inputs {
        match input.strip_suffix("/*") {
            Some(base) if base.contains('/') => {
                let repository = parse_repository(base)?;
                // The prefix as typed: normalisation would turn docker.io/team into library/team.
                let typed = match base.split_once('/') {
                    Some((first, rest)) if looks_like_host(first) => rest,
                    _ => base,
                };
                named.push(Named::Prefix {
                    registry: repository.registry,
                    prefix: format!("{typed}/"),
                });
            }
            Some(host) if looks_like_host(host) => {
                // The host alone: every repository. Parsed through a placeholder path for its normalisation.
                let repository = parse_repository(&format!("{host}/x"))?;
                named.push(Named::Prefix {
                    registry: repository.registry,
                    prefix: String::new(),
                });
            }
            Some(_) => {
                return Err(RegistryError::Config(format!(
                    "{input}: a repository pattern is REGISTRY/*, or REGISTRY/PREFIX/* to take every repository under PREFIX"
                )));
            }
            None => named.push(Named::One(parse_repository(input)?)),
        }
    }
    let mut repositories: Vec<Repository> = Vec::new();
    for name in named {
        match name {
            Named::One(repository) => {
                connection(session, connections, &repository.registry, observer).await?;
                repositories.push(repository);
            }
            Named::Prefix { registry, prefix } => {
                let connection = connection(session, connections, &registry, observer).await?;
                let implementation = connection.implementation.name();
                let listed = match connection.implementation.list_repositories(&prefix).await {
                    Ok(Some(paths)) => Ok(paths),
                    Ok(None) => connection.client.catalog(&prefix).await,
                    Err(error) => Err(error),
                };
                let pattern = format!("{registry}/{prefix}*");
                match listed {
                    Ok(paths) => {
                        if paths.is_empty() {
                            notes.push(RepositoryNote::note(
                                pattern,
                                implementation,
                                "no repository matches".into(),
                            ));
                        }
                        repositories.extend(paths.into_iter().map(|path| Repository {
                            registry: registry.clone(),
                            path,
                        }));
                    }
                    Err(error) => notes.push(RepositoryNote::failure(
                        pattern,
                        implementation,
                        format!("cannot list the repositories: {error}"),
                        failure_kind(&error).exit_code(),
                    )),
                }
            }
        }
    }
    let mut seen = BTreeSet::new();
    repositories.retain(|repository| seen.insert(repository.to_string()));
    Ok(repositories)
}

/// Docker's rule for the first component of a reference: a registry host has a dot or a port, or is
/// `localhost`.
fn looks_like_host(component: &str) -> bool {
    component.contains('.') || component.contains(':') || component == "localhost"
}

/// The dates of `tags`: the listing's, else (when a rule needs dates, and `wanted` says the tag's date
/// matters) the image config's; and for each digest whose config could not be read, why.
async fn date_tags(
    tags: &[TagInfo],
    wanted: impl Fn(usize) -> bool,
    needs_dates: bool,
    client: &Client,
    repository: &Repository,
    parallel: usize,
    observer: &dyn Observer,
) -> (
    Vec<(Option<i64>, Option<DateSource>)>,
    HashMap<String, ImageDate>,
) {
    let mut created: Vec<(Option<i64>, Option<DateSource>)> = tags
        .iter()
        .map(|info| {
            let listed = info.created.map(Timestamp::unix_seconds);
            (listed, listed.map(|_| DateSource::Vendor))
        })
        .collect();
    // Dates the listing does not give are read from image configs, and only when a rule needs them.
    if !needs_dates {
        return (created, HashMap::new());
    }
    let undated: BTreeSet<&str> = tags
        .iter()
        .zip(&created)
        .enumerate()
        .filter(|(index, (_, (date, _)))| date.is_none() && wanted(*index))
        .filter_map(|(_, (info, _))| info.digest.as_deref())
        .collect();
    if undated.is_empty() {
        return (created, HashMap::new());
    }
    observer.begin(undated.len(), Some(&format!("dating {repository}")));
    let read = dates::image_dates(client, &repository.path, undated, parallel, &|units| {
        observer.advance(units)
    })
    .await;
    observer.end();
    for (info, slot) in tags.iter().zip(created.iter_mut()) {
        if slot.0.is_none()
            && let Some(Ok(date)) = info
                .digest
                .as_ref()
                .and_then(|digest| read.get(digest))
                .map(|read| &read.date)
        {
            *slot = (Some(*date), Some(DateSource::ImageConfig));
        }
    }
    (created, read)
}

/// Lists, dates and decides one repository.
async fn plan_repository(
    request: &CleanupRequest<'_>,
    connection: &Connection,
    repository: &Repository,
    now: i64,
    parallel: usize,
    observer: &dyn Observer,
) -> Result<Decided, RegistryError> {
    let implementation = connection.implementation.as_ref();
    let client = &connection.client;
    let policies = request.policies.for_repository(repository);
    let tags = implementation.list_tags(repository, true).await?;
    let takes_manifest = implementation.capabilities().delete_removes == DeleteRemoves::Manifest;
    let mut subjects: Vec<Option<String>> = tags
        .iter()
        .map(|info| referrers::tag_subject(&info.tag).map(|(subject, _)| subject))
        .collect();
    // A referrer's own date decides nothing, unless --orphans may judge an orphan's age.
    let (created, unreadable) = date_tags(
        &tags,
        |index| request.orphans || subjects[index].is_none(),
        policies.iter().any(|(_, policy)| policy.needs_dates()),
        client,
        repository,
        parallel,
        observer,
    )
    .await;
    let records: Vec<TagRecord> = tags
        .iter()
        .zip(&created)
        .map(|(info, (date, _))| TagRecord {
            tag: info.tag.clone(),
            created: *date,
            last_pulled: info.last_pulled.flatten().map(Timestamp::unix_seconds),
        })
        .collect();
    // A listing records pulls when its tags carry a pull record (a null one is "never pulled").
    let unrecorded = format!(
        "the {} implementation's listing carries no pull times",
        implementation.name()
    );
    let recorded = tags.iter().all(|info| info.last_pulled.is_some());
    let listing = Listing {
        now,
        pulls_unrecorded: (!recorded).then_some(unrecorded.as_str()),
    };
    let decisions = decide_images(
        &policies,
        &records,
        listing,
        &tags,
        &mut subjects,
        &unreadable,
        (takes_manifest, request.orphans),
        client,
        repository,
        parallel,
    )
    .await?;
    let name = repository.to_string();
    let explanation = request.explain.and_then(|tag| {
        let verdicts: Vec<(Option<String>, Vec<Verdict>)> = policies
            .iter()
            .filter_map(|(policy_name, policy)| {
                let (verdicts, _) = policy.explain(&records, listing, tag)?;
                Some((policy_name.map(str::to_string), verdicts))
            })
            .collect();
        (!verdicts.is_empty()).then(|| Explanation {
            repository: name.clone(),
            tag: tag.to_string(),
            policies: verdicts,
        })
    });
    let mut rows: Vec<Row> = tags
        .iter()
        .zip(&created)
        .zip(decisions)
        .zip(subjects)
        .map(|(((info, (date, source)), mut decision), subject)| {
            if decision.rule == Rule::NoDate {
                let why = match info
                    .digest
                    .as_ref()
                    .and_then(|d| unreadable.get(d))
                    .map(|read| &read.date)
                {
                    Some(Err(error)) => error.clone(),
                    _ if info.digest.is_none() => {
                        "the registry gave no digest to read it from".into()
                    }
                    _ => "the registry lists no push time".into(),
                };
                decision.reason = format!("{} ({why})", decision.reason);
            }
            row(
                &name,
                Some(&info.tag),
                info.digest.as_deref(),
                *date,
                *source,
                now,
                decision,
            )
            .following(subject)
        })
        .collect();
    if let Some(set) = request.in_use {
        keep_in_use(set, &mut rows);
    }
    // An implementation whose tag delete takes the manifest would remove, with a deleted tag, a manifest
    // that a kept index still references; the others leave it to the index (or refuse, as ECR does).
    let kept_index_children = if takes_manifest {
        protect_index_children(client, repository, parallel, &mut rows).await?
    } else {
        None
    };
    let mut note = None;
    if request.untagged {
        match implementation.list_untagged(repository).await? {
            Some(untagged) => {
                let first = rows.len();
                let tagged: BTreeSet<String> =
                    rows.iter().filter_map(|row| row.digest.clone()).collect();
                for manifest in untagged {
                    // A listing racing a push may report a manifest that a tag now points at.
                    if tagged.contains(&manifest.digest) {
                        continue;
                    }
                    let date = manifest.created.map(Timestamp::unix_seconds);
                    let decision = match &manifest.subject {
                        Some(subject) => referrer_decision(subject),
                        None => Policies::decide_untagged(&policies, date, now),
                    };
                    rows.push(
                        row(
                            &name,
                            None,
                            Some(&manifest.digest),
                            date,
                            date.map(|_| DateSource::Vendor),
                            now,
                            decision,
                        )
                        .following(manifest.subject),
                    );
                }
                let all = request.orphans || rows.iter().any(|row| row.action == Action::Delete);
                keep_untagged_referrers(
                    (implementation, client),
                    repository,
                    parallel,
                    all,
                    &mut rows[first..],
                )
                .await?;
            }
            None => {
                note = Some(format!(
                    "--untagged: the {} implementation cannot list untagged manifests; none removed",
                    implementation.name()
                ));
            }
        }
    }
    if let Some(set) = request.in_use {
        keep_in_use(set, &mut rows);
    }
    follow_subjects(
        request,
        implementation,
        client,
        repository,
        parallel,
        kept_index_children.as_ref(),
        now,
        &mut BTreeSet::new(),
        &mut rows,
    )
    .await?;
    Ok(Decided {
        rows,
        explanation,
        note,
        kept_index_children,
    })
}

impl Row {
    /// The row of a referrer of `subject` (none: not a referrer).
    fn following(self, subject: Option<String>) -> Row {
        Row { subject, ..self }
    }
}

/// The decision that keeps a referrer of `subject`, which no rule selects on its own.
fn referrer_decision(subject: &str) -> Decision {
    Decision {
        delete: false,
        rule: Rule::Referrer,
        reason: format!(
            "refers to {subject}: never selected on its own, it stays while its subject does"
        ),
    }
}

/// The policy's decisions for `tags`, in order. Referrers (`subjects`, known from their tag names, or
/// from their manifests' `subject`, read while `dated` or here) are kept and take no image's place. When the policy selects
/// anything, every other tag's manifest is read once (a kept tag may be the referrer of a manifest that
/// goes), and the policy decides again without the referrers found; with `orphans`, they are read even
/// when nothing is selected. Manifests are read only where `read_manifests`: where a tag delete only
/// untags, a referrer's manifest outlives its tag and stays listed by the referrers API.
#[allow(clippy::too_many_arguments)]
async fn decide_images(
    policies: &[(Option<&str>, &Policy)],
    records: &[TagRecord],
    listing: Listing<'_>,
    tags: &[TagInfo],
    subjects: &mut [Option<String>],
    dated: &HashMap<String, ImageDate>,
    (read_manifests, orphans): (bool, bool),
    client: &Client,
    repository: &Repository,
    parallel: usize,
) -> Result<Vec<Decision>, RegistryError> {
    // A tag the listing gave no digest for is read by its name.
    let reference = |info: &'_ TagInfo| info.digest.clone().unwrap_or_else(|| info.tag.clone());
    // Dating read some manifests already; their subjects are known.
    let mut read: BTreeSet<String> = BTreeSet::new();
    for (info, subject) in tags.iter().zip(subjects.iter_mut()) {
        let Some(known) = info.digest.as_ref().and_then(|digest| dated.get(digest)) else {
            continue;
        };
        if let Some(found) = &known.subject {
            read.insert(reference(info));
            if subject.is_none() {
                subject.clone_from(found);
            }
        }
    }
    loop {
        let images: Vec<usize> = (0..tags.len())
            .filter(|index| subjects[*index].is_none())
            .collect();
        let images_records: Vec<TagRecord> =
            images.iter().map(|index| records[*index].clone()).collect();
        let mut decided: Vec<Option<Decision>> = subjects
            .iter()
            .map(|subject| subject.as_deref().map(referrer_decision))
            .collect();
        for (index, decision) in
            images
                .iter()
                .zip(Policies::decide(policies, &images_records, listing))
        {
            decided[*index] = Some(decision);
        }
        let decisions: Vec<Decision> = decided.into_iter().flatten().collect();
        // Nothing selected, nothing removed: no referrer can be taken or follow its subject, and only
        // --orphans needs the orphans no tag name shows.
        if !read_manifests || (!orphans && decisions.iter().all(|decision| !decision.delete)) {
            return Ok(decisions);
        }
        let unread: BTreeSet<String> = tags
            .iter()
            .zip(subjects.iter())
            .filter(|(_, subject)| subject.is_none())
            .map(|(info, _)| reference(info))
            .filter(|reference| !read.contains(reference))
            .collect();
        if unread.is_empty() {
            return Ok(decisions);
        }
        let found = referrers::read_subjects(
            client,
            &repository.path,
            unread.iter().map(String::as_str),
            parallel,
        )
        .await?;
        read.extend(unread);
        if found.is_empty() {
            return Ok(decisions);
        }
        for (info, subject) in tags.iter().zip(subjects.iter_mut()) {
            if subject.is_none()
                && let Some(found) = found.get(&reference(info))
            {
                *subject = Some(found.clone());
            }
        }
    }
}

/// Keeps the untagged manifests among `rows` that have a `subject`: `--untagged` never takes a referrer
/// on its own; they follow their subject or are orphans ([`follow_subjects`]). The selected ones are
/// read (through the vendor where it reads them, else over v2), and with `all` every one (a kept one may
/// follow a subject that goes, or be an orphan); those whose subject the listing gave need no read. A
/// failed read fails the repository before anything of it is deleted; a manifest the registry no longer
/// serves has no subject.
async fn keep_untagged_referrers(
    (implementation, client): (&dyn Implementation, &Client),
    repository: &Repository,
    parallel: usize,
    all: bool,
    rows: &mut [Row],
) -> Result<(), RegistryError> {
    let candidates: Vec<String> = rows
        .iter()
        .filter(|row| row.subject.is_none() && (all || row.action == Action::Delete))
        .filter_map(|row| row.digest.clone())
        .collect();
    if candidates.is_empty() {
        return Ok(());
    }
    let found = match implementation
        .untagged_subjects(repository, &candidates)
        .await?
    {
        Some(found) => found,
        None => {
            let candidates = candidates.iter().map(String::as_str);
            referrers::read_subjects(client, &repository.path, candidates, parallel).await?
        }
    };
    for row in rows.iter_mut() {
        if let Some(subject) = row.digest.as_ref().and_then(|digest| found.get(digest)) {
            let decision = referrer_decision(subject);
            row.action = Action::Keep;
            row.rule = decision.rule;
            row.reason = decision.reason;
            row.subject = Some(subject.clone());
        }
    }
    Ok(())
}

/// The digests whose manifest this run removes: every row of the digest goes, and on an implementation
/// whose tag delete only untags, the manifest is an untagged one.
fn removed_digests(rows: &[Row], removes: DeleteRemoves) -> BTreeSet<String> {
    let mut goes: BTreeMap<&str, bool> = BTreeMap::new();
    for row in rows {
        if let Some(digest) = &row.digest {
            let removed = row.action == Action::Delete
                && (row.tag.is_none() || removes != DeleteRemoves::Tag);
            *goes.entry(digest).or_insert(true) &= removed;
        }
    }
    goes.into_iter()
        .filter(|(_, removed)| *removed)
        .map(|(digest, _)| digest.to_string())
        .collect()
}

/// Settles the referrers among `rows`: those whose subject is gone are orphans (removed with
/// `--orphans`, age rules applying); those whose subject's manifest this run removes follow it, and
/// their own referrers follow them, level by level ([`Depth`]). An OCI 1.1 tag-schema index that goes
/// takes the referrers it lists, which no tag names; so do those the referrers API lists
/// ([`add_api_referrers`], never twice for a digest in `asked`). A cycle, or a chain deeper than the
/// bound, fails the repository before anything is deleted.
#[allow(clippy::too_many_arguments)]
async fn follow_subjects(
    request: &CleanupRequest<'_>,
    implementation: &dyn Implementation,
    client: &Client,
    repository: &Repository,
    parallel: usize,
    kept_index_children: Option<&BTreeSet<String>>,
    now: i64,
    asked: &mut BTreeSet<String>,
    rows: &mut Vec<Row>,
) -> Result<(), RegistryError> {
    let removes = implementation.capabilities().delete_removes;
    let api = Asking {
        implementation,
        client,
        repository,
        parallel,
        now,
    };
    add_api_referrers(&api, asked, rows).await?;
    if rows.iter().all(|row| row.subject.is_none()) {
        return Ok(());
    }
    referrers::check_chains(
        rows.iter()
            .filter_map(|row| Some((row.digest.as_deref()?, row.subject.as_deref()?))),
    )?;
    let listed: BTreeSet<&str> = rows
        .iter()
        .filter_map(|row| row.digest.as_deref())
        .collect();
    let unlisted: Vec<String> = rows
        .iter()
        .filter_map(|row| row.subject.as_deref())
        .filter(|subject| !listed.contains(subject))
        .filter(|subject| !kept_index_children.is_some_and(|children| children.contains(*subject)))
        .map(str::to_owned)
        .collect();
    let gone = match implementation
        .missing_manifests(repository, &unlisted)
        .await?
    {
        Some(gone) => gone,
        None => {
            let unlisted = unlisted.iter().map(String::as_str);
            referrers::missing(client, &repository.path, unlisted, parallel).await?
        }
    };
    for row in rows.iter_mut() {
        let Some(subject) = row
            .subject
            .as_ref()
            .filter(|subject| gone.contains(*subject))
        else {
            continue;
        };
        let orphan = format!("its subject {subject} no longer exists");
        let (action, reason) = if !request.orphans {
            (Action::Keep, format!("{orphan}; --orphans removes it"))
        } else {
            let age = Policies::decide_untagged(
                &request.policies.for_repository(repository),
                row.created.map(Timestamp::unix_seconds),
                now,
            );
            let action = if age.delete {
                Action::Delete
            } else {
                Action::Keep
            };
            (action, format!("{orphan}; {}", age.reason))
        };
        row.action = action;
        row.rule = Rule::Orphan;
        row.reason = reason;
    }
    let name = repository.to_string();
    let mut depth = Depth::new("referrers", name.clone());
    let mut expanded: BTreeSet<String> = BTreeSet::new();
    loop {
        let added =
            add_schema_children(client, repository, parallel, now, &mut expanded, rows).await?;
        let answered = add_api_referrers(&api, asked, rows).await?;
        if answered {
            referrers::check_chains(
                rows.iter()
                    .filter_map(|row| Some((row.digest.as_deref()?, row.subject.as_deref()?))),
            )?;
        }
        let removed = removed_digests(rows, removes);
        let tag_of = |digest: &str| {
            rows.iter()
                .find(|row| row.digest.as_deref() == Some(digest) && row.tag.is_some())
                .and_then(|row| row.tag.clone())
        };
        let followers: Vec<(usize, String)> = rows
            .iter()
            .enumerate()
            .filter(|(_, row)| row.action == Action::Keep && row.rule == Rule::Referrer)
            .filter_map(|(index, row)| {
                let subject = row
                    .subject
                    .as_ref()
                    .filter(|subject| removed.contains(*subject))?;
                let named = tag_of(subject)
                    .map_or_else(|| subject.clone(), |tag| format!("{tag} ({subject})"));
                Some((index, named))
            })
            .collect();
        if followers.is_empty() && !added && !answered {
            return Ok(());
        }
        depth.descend()?;
        for (index, named) in followers {
            let row = &mut rows[index];
            if request.keep_referrers {
                row.rule = Rule::Orphan;
                row.reason = format!(
                    "its subject {named} is deleted; kept by --keep-referrers, it is now an orphan"
                );
            } else {
                row.action = Action::Delete;
                row.rule = Rule::FollowsSubject;
                row.reason = format!("follows its subject {named}, which is deleted");
            }
        }
    }
}

/// What asking the referrers API of a repository needs ([`add_api_referrers`]).
#[derive(Clone, Copy)]
struct Asking<'a> {
    implementation: &'a dyn Implementation,
    client: &'a Client,
    repository: &'a Repository,
    parallel: usize,
    now: i64,
}

/// Asks the OCI 1.1 referrers API, where the registry serves it, for the referrers of each manifest this
/// run removes and `asked` does not hold yet (one GET each: the API lists untagged referrers and those a
/// vendor untags, which no tag name shows). A listed referrer becomes a kept referrer of that subject
/// (its row gains the subject; one no row names gets an untagged row), which the follow rule then takes.
/// A row kept for a workload stays as it is. Returns whether the API named any referrer.
async fn add_api_referrers(
    api: &Asking<'_>,
    asked: &mut BTreeSet<String>,
    rows: &mut Vec<Row>,
) -> Result<bool, RegistryError> {
    let Asking {
        implementation,
        client,
        repository,
        parallel,
        now,
    } = *api;
    let removes = implementation.capabilities().delete_removes;
    let removed: Vec<String> = removed_digests(rows, removes)
        .into_iter()
        .filter(|digest| asked.insert(digest.clone()))
        .collect();
    let Some(found) =
        referrers::ask_api((implementation, client), repository, &removed, parallel).await?
    else {
        return Ok(false);
    };
    let name = repository.to_string();
    let mut named = false;
    for (subject, listed) in found {
        for referrer in listed {
            let mut known = false;
            for row in rows
                .iter_mut()
                .filter(|row| row.digest.as_deref() == Some(referrer.digest.as_str()))
            {
                known = true;
                if row.subject.is_none() && row.rule != Rule::InUse {
                    let decision = referrer_decision(&subject);
                    row.action = Action::Keep;
                    row.rule = decision.rule;
                    row.reason = decision.reason;
                    row.subject = Some(subject.clone());
                    named = true;
                }
            }
            if !known {
                let decision = referrer_decision(&subject);
                rows.push(
                    row(
                        &name,
                        None,
                        Some(&referrer.digest),
                        None,
                        None,
                        now,
                        decision,
                    )
                    .following(Some(subject.clone())),
                );
                named = true;
            }
        }
    }
    Ok(named)
}

/// Adds, for each OCI 1.1 tag-schema index among `rows` that goes and is not in `expanded` yet, a row
/// for each referrer it lists that no row names: those manifests have no tag, and the index is the
/// only place that lists them. Returns whether any index was read.
async fn add_schema_children(
    client: &Client,
    repository: &Repository,
    parallel: usize,
    now: i64,
    expanded: &mut BTreeSet<String>,
    rows: &mut Vec<Row>,
) -> Result<bool, RegistryError> {
    let indexes: BTreeMap<String, String> = rows
        .iter()
        .filter(|row| row.action == Action::Delete)
        .filter_map(|row| {
            let (subject, kind) = referrers::tag_subject(row.tag.as_deref()?)?;
            let digest = row.digest.clone()?;
            (kind == TagKind::SchemaIndex && !expanded.contains(&digest))
                .then_some((digest, subject))
        })
        .collect();
    if indexes.is_empty() {
        return Ok(false);
    }
    expanded.extend(indexes.keys().cloned());
    let listed: BTreeSet<String> = rows.iter().filter_map(|row| row.digest.clone()).collect();
    let children = dates::index_children(
        client,
        &repository.path,
        indexes.keys().map(String::as_str),
        parallel,
    )
    .await?;
    let name = repository.to_string();
    for (child, index) in children {
        let Some(subject) = indexes.get(&index).filter(|_| !listed.contains(&child)) else {
            continue;
        };
        let decision = Decision {
            delete: true,
            rule: Rule::FollowsSubject,
            reason: format!("listed by the referrers index of {subject}, which goes"),
        };
        rows.push(
            row(&name, None, Some(&child), None, None, now, decision)
                .following(Some(subject.clone())),
        );
    }
    Ok(true)
}

/// Keeps every selected row whose tag or digest a workload or a `--keep-images` line uses. A digest in use
/// keeps each tag on it: on several registries the last tag's delete takes the manifest.
fn keep_in_use(set: &InUse, rows: &mut [Row]) {
    for row in rows.iter_mut().filter(|row| row.action == Action::Delete) {
        if let Some(keep) = set.keeps(&row.repository, row.tag.as_deref(), row.digest.as_deref()) {
            row.action = Action::Keep;
            row.rule = Rule::InUse;
            row.reason = keep.to_string();
        }
    }
}

/// Keeps every selected tag whose manifest an index of a kept tag references, to any depth: a tag kept
/// for an index may itself be an index, whose children are then read too. Returns the manifests kept
/// indexes reference when anything is still selected (the delete request carries them, so the
/// implementation does not read the indexes again).
async fn protect_index_children(
    client: &Client,
    repository: &Repository,
    parallel: usize,
    rows: &mut [Row],
) -> Result<Option<BTreeSet<String>>, RegistryError> {
    if !rows.iter().any(|row| row.action == Action::Delete) {
        return Ok(None);
    }
    let kept_tags = |rows: &[Row]| {
        let mut kept: BTreeMap<String, String> = BTreeMap::new();
        // A referrer that is an index (the OCI 1.1 tag schema's) lists referrers, which no rule selects
        // on their own: it needs no reading.
        for row in rows
            .iter()
            .filter(|row| row.action == Action::Keep && row.subject.is_none())
        {
            if let (Some(digest), Some(tag)) = (&row.digest, &row.tag) {
                kept.entry(digest.clone()).or_insert_with(|| tag.clone());
            }
        }
        kept
    };
    let mut kept = kept_tags(rows);
    let mut unread: Vec<String> = kept.keys().cloned().collect();
    let mut children: BTreeMap<String, String> = BTreeMap::new();
    let mut depth = Depth::new("indexes", repository.to_string());
    // Each round reads only manifests newly kept, one level deeper.
    while !unread.is_empty() {
        depth.descend()?;
        children.extend(
            dates::index_children(
                client,
                &repository.path,
                unread.iter().map(String::as_str),
                parallel,
            )
            .await?,
        );
        for row in rows.iter_mut().filter(|row| row.action == Action::Delete) {
            let Some(index) = row.digest.as_ref().and_then(|digest| children.get(digest)) else {
                continue;
            };
            let tag = kept.get(index).map_or("", String::as_str);
            row.action = Action::Keep;
            row.rule = Rule::InKeptIndex;
            row.reason = format!("the kept index {tag} ({index}) references its manifest");
        }
        let now_kept = kept_tags(rows);
        unread = now_kept
            .keys()
            .filter(|digest| !kept.contains_key(*digest))
            .cloned()
            .collect();
        kept = now_kept;
    }
    Ok(Some(children.into_keys().collect()))
}

/// How a reason names a date read from the image config.
const IMAGE_CONFIG_DATE: &str = "dated by the image config's created time, not a push time";

fn row(
    repository: &str,
    tag: Option<&str>,
    digest: Option<&str>,
    date: Option<i64>,
    date_source: Option<DateSource>,
    now: i64,
    decision: Decision,
) -> Row {
    Row {
        repository: repository.to_string(),
        tag: tag.map(str::to_string),
        digest: digest.map(str::to_string),
        subject: None,
        created: date.map(Timestamp::from_unix_seconds),
        date_source,
        age: date.map(|date| policy::format_age(now.saturating_sub(date).max(0).unsigned_abs())),
        action: if decision.delete {
            Action::Delete
        } else {
            Action::Keep
        },
        rule: decision.rule,
        reason: match (date_source, decision.rule) {
            // "Newest" and "old" then mean built, not pushed: a rebuilt image may be pushed years later.
            (Some(DateSource::ImageConfig), Rule::KeepLast | Rule::TooNew | Rule::Selected) => {
                format!("{}; {IMAGE_CONFIG_DATE}", decision.reason)
            }
            _ => decision.reason,
        },
        result: RowResult::Kept,
        method: None,
        error: None,
        entry: None,
    }
}

/// Sends one delete request for the selected rows of `plan` and records each entry on its row.
async fn delete_selected(
    implementation: &dyn Implementation,
    plan: &mut RepositoryPlan,
    dry_run: bool,
    journal: Option<Journaling<'_>>,
    observer: &dyn Observer,
) {
    let targets: Vec<Target> = plan
        .rows
        .iter()
        .filter(|row| row.action == Action::Delete && (row.tag.is_some() || row.digest.is_some()))
        .map(Row::target)
        .collect();
    if targets.is_empty() {
        return;
    }
    let request = DeleteRequest {
        repository: &plan.repository,
        targets: &targets,
        dry_run,
        progress: &|units| observer.advance(units),
        kept_index_children: plan.kept_index_children.as_ref(),
        journal,
    };
    let mut entries: HashMap<Target, Entry> = implementation
        .delete(request)
        .await
        .into_iter()
        .map(|entry| (entry.target(), entry))
        .collect();
    for row in plan
        .rows
        .iter_mut()
        .filter(|row| row.action == Action::Delete)
    {
        let entry = entries.remove(&row.target()).unwrap_or_else(|| {
            Entry::failed(
                row.reference(),
                row.repository.clone(),
                row.tag.clone(),
                FailureKind::Other,
                format!(
                    "the {} implementation reported no result for it",
                    implementation.name()
                ),
            )
        });
        row.result = entry.status.into();
        row.method = entry.method;
        row.error = entry.error.clone();
        if row.digest.is_none() {
            row.digest = entry.digest.clone();
        }
        row.entry = Some(entry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_hosts_follow_dockers_rule() {
        for host in [
            "registry.example.com",
            "127.0.0.1:5000",
            "localhost",
            "host:443",
        ] {
            assert!(looks_like_host(host), "{host}");
        }
        for name in ["team", "library", ""] {
            assert!(!looks_like_host(name), "{name}");
        }
    }

    #[test]
    fn a_manifest_goes_only_when_every_row_of_it_goes_and_the_delete_takes_it() {
        let decision = |delete| Decision {
            delete,
            rule: Rule::Selected,
            reason: String::new(),
        };
        let rows = [
            row(
                "r/a",
                Some("old"),
                Some("sha256:a"),
                None,
                None,
                0,
                decision(true),
            ),
            row(
                "r/a",
                Some("sibling"),
                Some("sha256:b"),
                None,
                None,
                0,
                decision(true),
            ),
            row(
                "r/a",
                Some("kept"),
                Some("sha256:b"),
                None,
                None,
                0,
                decision(false),
            ),
            row("r/a", None, Some("sha256:c"), None, None, 0, decision(true)),
            row(
                "r/a",
                None,
                Some("sha256:d"),
                None,
                None,
                0,
                decision(false),
            ),
        ];
        let removed =
            |removes| -> Vec<String> { removed_digests(&rows, removes).into_iter().collect() };
        assert_eq!(removed(DeleteRemoves::Manifest), ["sha256:a", "sha256:c"]);
        assert_eq!(
            removed(DeleteRemoves::UnreferencedManifest),
            ["sha256:a", "sha256:c"]
        );
        // An untagging vendor leaves the manifest of a deleted tag: only an untagged manifest goes.
        assert_eq!(removed(DeleteRemoves::Tag), ["sha256:c"]);
    }

    #[test]
    fn rows_serialise_with_the_reports_names() {
        let decision = Decision {
            delete: true,
            rule: Rule::Untagged,
            reason: "no tag points at it".into(),
        };
        let mut untagged = row(
            "r.example/app",
            None,
            Some("sha256:aa"),
            Some(0),
            Some(DateSource::ImageConfig),
            86_400,
            decision,
        );
        untagged.result = Status::Planned.into();
        let json = serde_json::to_value(&untagged).unwrap();
        assert_eq!(json["created"], "1970-01-01T00:00:00Z");
        assert_eq!(json["date_source"], "image-config");
        assert_eq!(json["age"], "1d");
        assert_eq!(json["action"], "delete");
        assert_eq!(json["rule"], "untagged");
        assert_eq!(json["result"], "planned");
        assert!(json.get("entry").is_none());
        let kept = |source| {
            let decision = Decision {
                delete: false,
                rule: Rule::KeepLast,
                reason: "among the 2 newest (#1)".into(),
            };
            row(
                "r.example/app",
                Some("v1"),
                None,
                Some(0),
                source,
                86_400,
                decision,
            )
            .reason
        };
        assert_eq!(
            kept(Some(DateSource::ImageConfig)),
            format!("among the 2 newest (#1); {IMAGE_CONFIG_DATE}")
        );
        assert_eq!(kept(Some(DateSource::Vendor)), "among the 2 newest (#1)");
    }

    #[test]
    fn a_declined_plan_counts_its_selection_as_kept_and_exits_zero() {
        let selected = Decision {
            delete: true,
            rule: Rule::Selected,
            reason: String::new(),
        };
        let plan = Plan {
            connections: BTreeMap::new(),
            repositories: vec![RepositoryPlan {
                repository: Repository::parse("r.example/app").unwrap(),
                rows: vec![row(
                    "r.example/app",
                    Some("v1"),
                    None,
                    None,
                    None,
                    0,
                    selected,
                )],
                explanation: None,
                kept_index_children: None,
            }],
            notes: vec![RepositoryNote::failure(
                "r.example/other".into(),
                "default",
                "listing failed".into(),
                report::EXIT_AUTH,
            )],
            expanded: 2,
            parallel: 1,
            in_use: None,
        };
        let report = plan.decline();
        assert_eq!(report.rows[0].result, RowResult::Declined);
        assert_eq!(report.summary.kept, 1);
        // The status counts sit beside the others in the output, as flat keys.
        let summary = serde_json::to_value(&report.summary).unwrap();
        assert_eq!(
            (summary["kept"].clone(), summary["failed"].clone()),
            (1.into(), 0.into())
        );
        assert_eq!(report.summary.repositories, 2);
        assert_eq!(report.exit_code(), report::EXIT_OK);
    }
}
