//! `regkit cleanup`: deletes the tags a policy selects, in one or many repositories, through the same
//! tag-safe vendor path as `regkit delete`, so a kept tag never loses the manifest it shares with a deleted
//! one.
//!
//! Every step is vendor-neutral: tags and dates come from [`Implementation::list_tags`], dates missing there are read
//! from image configs over v2, untagged manifests from [`Implementation::list_untagged`], repositories under a
//! prefix from [`Implementation::list_repositories`] or `_catalog`. A vendor that lands later needs nothing here.
//!
//! Output: one row per tag seen (and per untagged manifest considered) with `repository`, `tag`, `digest`,
//! `created`, `date_source`, `age`, `action` (`keep`/`delete`), `rule` (a [`Rule`] name or `untagged`),
//! `reason`, `result` (`kept`, `declined`, or the vendor's status) and `method`/`error`; then
//! `repository_note` lines (listing failures, untagged manifests a vendor cannot list) and a `summary`.
//! `--report FILE` writes the same as one JSON document: `{"tags": […], "notes": […], "summary": {…}}`.

use std::collections::btree_map::Entry as Slot;
use std::collections::{BTreeMap, HashMap};
use std::io::{self, BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use regkit::dates::{self, DateResult, Timestamp};
use regkit::implementation::{DeleteRemoves, DeleteRequest, Implementation};
use regkit::policy::{self, Decision, KeepList, Policy, Rule, TagRecord};
use regkit::reference::{Repository, Target};
use regkit::registry::{Client, RegistryError, failure_kind};
use regkit::report::{self, Entry, Method};
use serde::Serialize;

use crate::{Fatal, Setup, parse_repository, print_with, progress_bar};

/// `regkit cleanup` options (the global ones — `--dry-run`, `--output`, `--parallel`, credentials,
/// implementation — come from the top level).
#[derive(clap::Args)]
pub(crate) struct CleanupArgs {
    /// Repositories, e.g. registry.example.com/team/app; `registry.example.com/team/*` means every
    /// repository under team/ (where the registry can list repositories).
    #[arg(required = true, value_name = "REPO")]
    repositories: Vec<String>,
    /// Keep the N newest tags of those the name filters select, however old.
    #[arg(long, value_name = "N")]
    keep_last: Option<usize>,
    /// Delete only tags older than this (30d, 12h, 1d12h, 2w); a tag without a date is kept.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    older_than: Option<u64>,
    /// Only tags matching this regex (unanchored; repeatable: every one must match; may start with -).
    #[arg(long = "match", value_name = "REGEX", allow_hyphen_values = true)]
    matches: Vec<String>,
    /// Never tags matching this regex (repeatable).
    #[arg(long = "exclude", value_name = "REGEX", allow_hyphen_values = true)]
    excludes: Vec<String>,
    /// Never tags listed in FILE: one tag or glob (*, ?) per line, # comments.
    #[arg(long, value_name = "FILE")]
    keep_list: Option<PathBuf>,
    // Built, not written: the vendors that list untagged manifests are those whose spec says so.
    #[arg(long, help = format!(
        "Also delete manifests no tag points at, where the registry can list them ({}; never a child of an index still in the repository); --older-than applies to them too",
        regkit::implementation::untagged_listers()
    ))]
    untagged: bool,
    /// Delete without asking (required when standard input is not a terminal).
    #[arg(long, short = 'y')]
    yes: bool,
    /// Write a JSON report of every tag seen, kept or deleted, with the reason and the result.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
}

fn parse_duration(input: &str) -> Result<u64, String> {
    policy::parse_duration(input).map_err(|error| error.to_string())
}

/// One tag or untagged manifest: what was decided, why, and what happened.
#[derive(Debug, Clone, Serialize)]
struct Row {
    repository: String,
    tag: Option<String>,
    digest: Option<String>,
    /// RFC 3339, when known.
    created: Option<String>,
    /// `vendor` (the listing), `image-config`, or absent.
    date_source: Option<&'static str>,
    age: Option<String>,
    action: Action,
    /// The policy rule's name, or `untagged` for a manifest `--untagged` sweeps.
    rule: &'static str,
    reason: String,
    /// `kept`, `declined` (not confirmed at the prompt), or the deletion's status (`deleted`, `untagged`,
    /// `absent`, `planned`, `failed`).
    result: String,
    method: Option<Method>,
    error: Option<String>,
    /// The vendor's entry for a deletion, for the shared exit-code rules.
    #[serde(skip)]
    outcome: Option<Entry>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Action {
    Keep,
    Delete,
}

/// A repository-level outcome: listing failures, and notes such as "cannot list untagged manifests".
#[derive(Debug, Clone, Serialize)]
struct RepositoryNote {
    repository: String,
    implementation: Option<&'static str>,
    error: Option<String>,
    note: Option<String>,
    #[serde(skip)]
    exit: u8,
}

#[derive(Debug, Default, Serialize)]
struct Summary {
    repositories: usize,
    seen: usize,
    kept: usize,
    deleted: usize,
    untagged: usize,
    absent: usize,
    planned: usize,
    failed: usize,
}

impl Summary {
    fn of(rows: &[Row], repositories: usize) -> Summary {
        let mut summary = Summary {
            repositories,
            seen: rows.len(),
            ..Summary::default()
        };
        for row in rows {
            let counter = match row.result.as_str() {
                "deleted" => &mut summary.deleted,
                "untagged" => &mut summary.untagged,
                "absent" => &mut summary.absent,
                "planned" => &mut summary.planned,
                "failed" => &mut summary.failed,
                _ => &mut summary.kept,
            };
            *counter += 1;
        }
        summary
    }
}

/// The planned work for one repository.
struct Planned {
    repository: Repository,
    rows: Vec<Row>,
}

/// Registry handles, made once per registry host.
type Handles = BTreeMap<String, (Box<dyn Implementation>, Client)>;

pub(crate) async fn cleanup(setup: &Setup<'_>, args: &CleanupArgs) -> Result<u8, Fatal> {
    let keep_list = match &args.keep_list {
        Some(path) => KeepList::parse(&std::fs::read_to_string(path).map_err(|error| {
            Fatal::Usage(format!(
                "cannot read the keep-list {}: {error}",
                path.display()
            ))
        })?),
        None => KeepList::default(),
    };
    let policy = Policy::new(
        &args.matches,
        &args.excludes,
        keep_list,
        args.older_than,
        args.keep_last,
    )
    .map_err(|error| Fatal::Usage(error.to_string()))?;
    let dry_run = setup.options.dry_run;
    // Refused before the first request: a nightly job without --yes must fail loudly, not half-run.
    let interactive = io::stdin().is_terminal() && io::stderr().is_terminal();
    if !dry_run && !args.yes && !interactive {
        return Err(Fatal::Usage(
            "cleanup deletes tags and standard input is not a terminal to confirm: pass --yes to delete \
             without asking, or --dry-run to see the plan"
                .into(),
        ));
    }
    let mut handles = Handles::new();
    let mut notes = Vec::new();
    let repositories = expand(setup, &mut handles, &args.repositories, &mut notes).await?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
        });
    let mut plans = Vec::new();
    for repository in &repositories {
        let Some((vendor, client)) = handles.get(&repository.registry) else {
            continue;
        };
        match plan(
            setup,
            args,
            &policy,
            vendor.as_ref(),
            client,
            repository,
            now,
        )
        .await
        {
            Ok((rows, note)) => {
                if let Some(note) = note {
                    notes.push(RepositoryNote {
                        repository: repository.to_string(),
                        implementation: Some(vendor.name()),
                        error: None,
                        note: Some(note),
                        exit: report::EXIT_OK,
                    });
                }
                plans.push(Planned {
                    repository: repository.clone(),
                    rows,
                });
            }
            Err(error) => notes.push(RepositoryNote {
                repository: repository.to_string(),
                implementation: Some(vendor.name()),
                error: Some(error.to_string()),
                note: None,
                exit: failure_kind(&error).exit_code(),
            }),
        }
    }
    let deletions: usize = plans
        .iter()
        .map(|plan| {
            plan.rows
                .iter()
                .filter(|row| row.action == Action::Delete)
                .count()
        })
        .sum();
    let mut proceed = true;
    if !dry_run && !args.yes && deletions > 0 {
        print_plan(&plans)?;
        proceed = confirm(deletions, plans.len())?;
    }
    if proceed {
        execute(setup, &handles, &mut plans, dry_run).await;
    } else {
        for row in plans.iter_mut().flat_map(|plan| plan.rows.iter_mut()) {
            if row.action == Action::Delete {
                row.result = "declined".into();
            }
        }
    }
    let rows: Vec<Row> = plans.into_iter().flat_map(|plan| plan.rows).collect();
    let summary = Summary::of(&rows, repositories.len());
    if let Some(path) = &args.report {
        write_report(path, &rows, &notes, &summary)?;
    }
    output(setup, &rows, &notes, &summary)?;
    for note in &notes {
        if let Some(error) = &note.error {
            eprintln!("regkit: {}: {error}", note.repository);
        } else if let Some(text) = &note.note
            && !setup.options.quiet
        {
            eprintln!("regkit: {}: {text}", note.repository);
        }
    }
    if !proceed {
        eprintln!("regkit: nothing deleted");
        return Ok(report::EXIT_OK);
    }
    let entries: Vec<Entry> = rows.iter().filter_map(|row| row.outcome.clone()).collect();
    for error in report::distinct_errors(&entries) {
        eprintln!("regkit: {error}");
    }
    let repository_exit = notes.iter().map(|note| note.exit).max().unwrap_or(0);
    Ok(report::exit_code(&entries).max(repository_exit))
}

fn reference(repository: &str, tag: Option<&str>, digest: Option<&str>) -> String {
    match (tag, digest) {
        (Some(tag), _) => format!("{repository}:{tag}"),
        (None, Some(digest)) => format!("{repository}@{digest}"),
        (None, None) => repository.to_string(),
    }
}

/// The vendor and v2 client for `registry`, made on first use.
async fn handle<'h>(
    setup: &Setup<'_>,
    handles: &'h mut Handles,
    registry: &str,
) -> Result<&'h (Box<dyn Implementation>, Client), Fatal> {
    Ok(match handles.entry(registry.to_string()) {
        Slot::Occupied(known) => known.into_mut(),
        Slot::Vacant(slot) => slot.insert(setup.vendor_and_client(registry).await?),
    })
}

/// The repositories named, `…/*` expanded; all are validated before the first request.
async fn expand(
    setup: &Setup<'_>,
    handles: &mut Handles,
    inputs: &[String],
    notes: &mut Vec<RepositoryNote>,
) -> Result<Vec<Repository>, Fatal> {
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
                return Err(Fatal::Usage(format!(
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
                handle(setup, handles, &repository.registry).await?;
                repositories.push(repository);
            }
            Named::Prefix { registry, prefix } => {
                let (vendor, client) = handle(setup, handles, &registry).await?;
                let listed = match vendor.list_repositories(&prefix).await {
                    Ok(Some(paths)) => Ok(paths),
                    Ok(None) => client.catalog(&prefix).await,
                    Err(error) => Err(error),
                };
                match listed {
                    Ok(paths) => {
                        if paths.is_empty() {
                            notes.push(RepositoryNote {
                                repository: format!("{registry}/{prefix}*"),
                                implementation: Some(vendor.name()),
                                error: None,
                                note: Some("no repository matches".into()),
                                exit: report::EXIT_OK,
                            });
                        }
                        repositories.extend(paths.into_iter().map(|path| Repository {
                            registry: registry.clone(),
                            path,
                        }));
                    }
                    Err(error) => notes.push(RepositoryNote {
                        repository: format!("{registry}/{prefix}*"),
                        implementation: Some(vendor.name()),
                        error: Some(format!("cannot list the repositories: {error}")),
                        note: None,
                        exit: failure_kind(&error).exit_code(),
                    }),
                }
            }
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    repositories.retain(|repository| seen.insert(repository.to_string()));
    Ok(repositories)
}

/// Docker's rule for the first component of a reference: a registry host has a dot or a port, or is
/// `localhost`.
fn looks_like_host(component: &str) -> bool {
    component.contains('.') || component.contains(':') || component == "localhost"
}

/// Lists, dates and decides one repository; the second value is a note for the report (untagged manifests
/// that cannot be listed).
async fn plan(
    setup: &Setup<'_>,
    args: &CleanupArgs,
    policy: &Policy,
    vendor: &dyn Implementation,
    client: &Client,
    repository: &Repository,
    now: i64,
) -> Result<(Vec<Row>, Option<String>), RegistryError> {
    let tags = vendor.list_tags(repository, true).await?;
    let mut created: Vec<(Option<i64>, Option<&'static str>)> = tags
        .iter()
        .map(|info| {
            let parsed = info.created.map(Timestamp::unix_seconds);
            (parsed, parsed.map(|_| "vendor"))
        })
        .collect();
    // Dates the vendor does not give are read from image configs, and only when a rule needs them.
    let mut missing: HashMap<String, DateResult> = HashMap::new();
    if policy.needs_dates() {
        let undated: Vec<&str> = tags
            .iter()
            .zip(&created)
            .filter(|(_, (date, _))| date.is_none())
            .filter_map(|(info, _)| info.digest.as_deref())
            .collect();
        if !undated.is_empty() {
            let distinct: std::collections::BTreeSet<&str> = undated.iter().copied().collect();
            let bar = progress_bar(setup, distinct.len());
            if let Some(bar) = &bar {
                bar.set_message(format!("dating {repository}"));
            }
            let tick = |n: u64| {
                if let Some(bar) = &bar {
                    bar.inc(n);
                }
            };
            missing = dates::image_dates(
                client,
                &repository.path,
                distinct,
                setup.options.parallel.into(),
                &tick,
            )
            .await;
            if let Some(bar) = bar {
                bar.finish_and_clear();
            }
        }
        for (info, slot) in tags.iter().zip(created.iter_mut()) {
            if slot.0.is_none()
                && let Some(Ok(date)) = info.digest.as_ref().and_then(|d| missing.get(d))
            {
                *slot = (Some(*date), Some("image-config"));
            }
        }
    }
    let records: Vec<TagRecord> = tags
        .iter()
        .zip(&created)
        .map(|(info, (date, _))| TagRecord {
            tag: info.tag.clone(),
            created: *date,
        })
        .collect();
    let decisions = policy.decide(&records, now);
    let name = repository.to_string();
    let mut rows: Vec<Row> = tags
        .iter()
        .zip(&created)
        .zip(decisions)
        .map(|((info, (date, source)), decision)| {
            let mut reason = decision.reason.clone();
            if decision.rule == Rule::NoDate {
                let why = match info.digest.as_ref().and_then(|d| missing.get(d)) {
                    Some(Err(error)) => error.clone(),
                    _ if info.digest.is_none() => {
                        "the registry gave no digest to read it from".into()
                    }
                    _ => "the registry lists no push time".into(),
                };
                reason = format!("{reason} ({why})");
            }
            row(
                &name,
                Some(&info.tag),
                info.digest.as_deref(),
                *date,
                *source,
                now,
                &decision,
                reason,
            )
        })
        .collect();
    // A vendor whose tag delete takes the manifest would remove, with a deleted tag, a manifest that a
    // kept index still references; the others leave it to the index (or refuse, as ECR does).
    if vendor.capabilities().delete_removes == DeleteRemoves::Manifest {
        protect_index_children(setup, client, repository, &mut rows).await?;
    }
    let mut note = None;
    if args.untagged {
        match vendor.list_untagged(repository).await? {
            None => {
                note = Some(format!(
                    "--untagged: the {} implementation cannot list untagged manifests; none removed",
                    vendor.name()
                ));
            }
            Some(untagged) => {
                let tagged: std::collections::BTreeSet<&str> = tags
                    .iter()
                    .filter_map(|info| info.digest.as_deref())
                    .collect();
                for manifest in untagged {
                    // A vendor listing racing a push may report a manifest that a tag now points at.
                    if tagged.contains(manifest.digest.as_str()) {
                        continue;
                    }
                    let date = manifest.created.map(Timestamp::unix_seconds);
                    let decision = untagged_decision(policy, date, now);
                    let reason = decision.reason.clone();
                    let mut untagged_row = row(
                        &name,
                        None,
                        Some(&manifest.digest),
                        date,
                        date.map(|_| "vendor"),
                        now,
                        &decision,
                        reason,
                    );
                    if decision.delete {
                        untagged_row.rule = "untagged";
                    }
                    rows.push(untagged_row);
                }
            }
        }
    }
    Ok((rows, note))
}

/// Keeps every selected tag whose manifest an index of a kept tag references.
async fn protect_index_children(
    setup: &Setup<'_>,
    client: &Client,
    repository: &Repository,
    rows: &mut [Row],
) -> Result<(), RegistryError> {
    if !rows.iter().any(|row| row.action == Action::Delete) {
        return Ok(());
    }
    let mut kept_tags: BTreeMap<String, String> = BTreeMap::new();
    for row in rows.iter().filter(|row| row.action == Action::Keep) {
        if let (Some(digest), Some(tag)) = (&row.digest, &row.tag) {
            kept_tags
                .entry(digest.clone())
                .or_insert_with(|| tag.clone());
        }
    }
    let children = dates::index_children(
        client,
        &repository.path,
        kept_tags.keys().map(String::as_str),
        setup.options.parallel.into(),
    )
    .await?;
    for row in rows.iter_mut().filter(|row| row.action == Action::Delete) {
        let Some(index) = row.digest.as_ref().and_then(|digest| children.get(digest)) else {
            continue;
        };
        let tag = kept_tags.get(index).map_or("", String::as_str);
        row.action = Action::Keep;
        row.rule = Rule::InKeptIndex.as_str();
        row.reason = format!("the kept index {tag} ({index}) references its manifest");
    }
    Ok(())
}

/// An untagged manifest goes unless `--older-than` is set and it is not (provably) that old: a manifest
/// pushed a moment ago may be the child of an index that is being pushed.
fn untagged_decision(policy: &Policy, date: Option<i64>, now: i64) -> Decision {
    let selected = Decision {
        delete: true,
        rule: Rule::Selected,
        reason: "no tag points at it".into(),
    };
    let Some(limit) = policy.older_than() else {
        return selected;
    };
    let keep = |rule, reason| Decision {
        delete: false,
        rule,
        reason,
    };
    match date {
        None => keep(Rule::NoDate, "untagged, but its age is unknown".into()),
        Some(date)
            if now.saturating_sub(date) > 0 && now.saturating_sub(date).unsigned_abs() > limit =>
        {
            Decision {
                reason: format!(
                    "no tag points at it, older than {}",
                    policy::format_age(limit)
                ),
                ..selected
            }
        }
        Some(_) => keep(
            Rule::TooNew,
            format!("untagged, not older than {}", policy::format_age(limit)),
        ),
    }
}

#[allow(clippy::too_many_arguments)]
fn row(
    repository: &str,
    tag: Option<&str>,
    digest: Option<&str>,
    date: Option<i64>,
    source: Option<&'static str>,
    now: i64,
    decision: &Decision,
    reason: String,
) -> Row {
    Row {
        repository: repository.to_string(),
        tag: tag.map(str::to_string),
        digest: digest.map(str::to_string),
        created: date.map(dates::format_rfc3339),
        date_source: source,
        age: date.map(|date| policy::format_age(now.saturating_sub(date).max(0).unsigned_abs())),
        action: if decision.delete {
            Action::Delete
        } else {
            Action::Keep
        },
        rule: decision.rule.as_str(),
        reason,
        result: "kept".into(),
        method: None,
        error: None,
        outcome: None,
    }
}

/// Deletes (or plans, on a dry run) every selected row, one vendor request per repository, and records each
/// result on its row.
async fn execute(setup: &Setup<'_>, handles: &Handles, plans: &mut [Planned], dry_run: bool) {
    let total: usize = plans
        .iter()
        .map(|plan| {
            plan.rows
                .iter()
                .filter(|row| row.action == Action::Delete)
                .count()
        })
        .sum();
    if total == 0 {
        return;
    }
    let bar = progress_bar(setup, total);
    let tick = |n: u64| {
        if let Some(bar) = &bar {
            bar.inc(n);
        }
    };
    for plan in plans.iter_mut() {
        let Some((vendor, _)) = handles.get(&plan.repository.registry) else {
            continue;
        };
        let targets: Vec<Target> = plan
            .rows
            .iter()
            .filter(|row| row.action == Action::Delete)
            .filter_map(|row| match (&row.tag, &row.digest) {
                (Some(tag), _) => Some(Target::Tag(tag.clone())),
                (None, Some(digest)) => Some(Target::Digest(digest.clone())),
                (None, None) => None,
            })
            .collect();
        if targets.is_empty() {
            continue;
        }
        let request = DeleteRequest {
            repository: &plan.repository,
            targets: &targets,
            dry_run,
            progress: &tick,
        };
        let mut results: HashMap<Target, Entry> = vendor
            .delete(request)
            .await
            .into_iter()
            .map(|entry| {
                let target = match (&entry.tag, &entry.digest) {
                    (Some(tag), _) => Target::Tag(tag.clone()),
                    (None, digest) => Target::Digest(digest.clone().unwrap_or_default()),
                };
                (target, entry)
            })
            .collect();
        for row in plan
            .rows
            .iter_mut()
            .filter(|row| row.action == Action::Delete)
        {
            let target = match (&row.tag, &row.digest) {
                (Some(tag), _) => Target::Tag(tag.clone()),
                (None, digest) => Target::Digest(digest.clone().unwrap_or_default()),
            };
            let entry = results.remove(&target).unwrap_or_else(|| {
                Entry::failed(
                    reference(&row.repository, row.tag.as_deref(), row.digest.as_deref()),
                    row.repository.clone(),
                    row.tag.clone(),
                    report::FailureKind::Other,
                    format!(
                        "the {} implementation reported no result for it",
                        vendor.name()
                    ),
                )
            });
            row.result = entry.status.as_str().to_string();
            row.method = entry.method;
            row.error = entry.error.clone();
            if row.digest.is_none() {
                row.digest = entry.digest.clone();
            }
            row.outcome = Some(entry);
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
}

/// The plan before the question: tag, age, digest, reason.
fn print_plan(plans: &[Planned]) -> Result<(), Fatal> {
    let rows: Vec<&Row> = plans
        .iter()
        .flat_map(|plan| &plan.rows)
        .filter(|row| row.action == Action::Delete)
        .collect();
    // On the terminal beside the question, so standard output stays the run's report (JSON Lines with
    // --output json).
    let mut err = io::stderr().lock();
    write_rows(&mut err, &rows, false)
        .and_then(|()| writeln!(err))
        .map_err(|error| Fatal::Usage(format!("cannot show the plan: {error}")))
}

/// Asks once on the terminal.
fn confirm(deletions: usize, repositories: usize) -> Result<bool, Fatal> {
    let mut err = io::stderr().lock();
    let _ = write!(
        err,
        "Delete {deletions} tag(s)/manifest(s) in {repositories} repositor{}? [y/N] ",
        if repositories == 1 { "y" } else { "ies" }
    );
    let _ = err.flush();
    let mut answer = String::new();
    io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|error| Fatal::Usage(format!("cannot read the answer: {error}")))?;
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

/// A table: reference, age, digest, action or result, reason (and error).
fn write_rows(out: &mut impl Write, rows: &[&Row], with_result: bool) -> io::Result<()> {
    let cells: Vec<[String; 5]> = rows
        .iter()
        .map(|row| {
            let result = if with_result {
                row.result.clone()
            } else {
                "delete".into()
            };
            let reason = match &row.error {
                Some(error) => format!("{}; {error}", row.reason),
                None => row.reason.clone(),
            };
            [
                result,
                match &row.tag {
                    Some(tag) => format!("{}:{tag}", row.repository),
                    None => format!("{} (untagged)", row.repository),
                },
                row.age.clone().unwrap_or_else(|| "-".into()),
                row.digest.clone().unwrap_or_else(|| "-".into()),
                reason,
            ]
        })
        .collect();
    let header = [
        if with_result { "RESULT" } else { "ACTION" },
        "TAG",
        "AGE",
        "DIGEST",
        "REASON",
    ];
    let mut widths = header.map(str::len);
    for cell in &cells {
        for (width, value) in widths.iter_mut().zip(cell) {
            *width = (*width).max(value.chars().count());
        }
    }
    let line = |out: &mut dyn Write, values: [&str; 5]| -> io::Result<()> {
        let mut text = String::new();
        for (index, value) in values.iter().enumerate() {
            if index + 1 == values.len() {
                text.push_str(value);
            } else {
                text.push_str(&format!("{value:<width$}  ", width = widths[index]));
            }
        }
        writeln!(out, "{}", text.trim_end())
    };
    line(out, header)?;
    for cell in &cells {
        line(out, cell.each_ref().map(String::as_str))?;
    }
    Ok(())
}

fn output(
    setup: &Setup<'_>,
    rows: &[Row],
    notes: &[RepositoryNote],
    summary: &Summary,
) -> Result<(), Fatal> {
    if setup.json() {
        return print_with(|out| {
            for row in rows {
                serde_json::to_writer(&mut *out, row)?;
                writeln!(out)?;
            }
            for note in notes {
                serde_json::to_writer(&mut *out, &serde_json::json!({ "repository_note": note }))?;
                writeln!(out)?;
            }
            serde_json::to_writer(&mut *out, &serde_json::json!({ "summary": summary }))?;
            writeln!(out)
        });
    }
    if setup.options.quiet {
        return Ok(());
    }
    // Kept tags are many and uneventful: the text output lists them only with --verbose; the report and
    // the JSON output always carry them.
    let shown: Vec<&Row> = rows
        .iter()
        .filter(|row| setup.options.verbose || row.action == Action::Delete)
        .collect();
    print_with(|out| {
        if !shown.is_empty() {
            write_rows(out, &shown, true)?;
        }
        writeln!(
            out,
            "{} repositor{}, {} seen: {} kept, {} deleted, {} untagged, {} absent, {} planned, {} failed",
            summary.repositories,
            if summary.repositories == 1 {
                "y"
            } else {
                "ies"
            },
            summary.seen,
            summary.kept,
            summary.deleted,
            summary.untagged,
            summary.absent,
            summary.planned,
            summary.failed
        )
    })
}

fn write_report(
    path: &std::path::Path,
    rows: &[Row],
    notes: &[RepositoryNote],
    summary: &Summary,
) -> Result<(), Fatal> {
    let document = serde_json::json!({
        "tags": rows,
        "notes": notes,
        "summary": summary,
    });
    let text = serde_json::to_string_pretty(&document)
        .map_err(|error| Fatal::Usage(format!("cannot encode the report: {error}")))?;
    std::fs::write(path, text + "\n").map_err(|error| {
        Fatal::Usage(format!(
            "cannot write the report {}: {error}",
            path.display()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000;

    fn policy(older_than: Option<u64>) -> Policy {
        Policy::new(&[], &[], KeepList::default(), older_than, None).unwrap()
    }

    #[test]
    fn untagged_manifests_go_unless_an_age_limit_protects_them() {
        let any = untagged_decision(&policy(None), None, NOW);
        assert!(any.delete);
        assert_eq!(any.reason, "no tag points at it");
        let day = 86_400;
        let limited = policy(Some(day as u64));
        assert!(untagged_decision(&limited, Some(NOW - 2 * day), NOW).delete);
        let fresh = untagged_decision(&limited, Some(NOW - 60), NOW);
        assert_eq!((fresh.delete, fresh.rule), (false, Rule::TooNew));
        let undated = untagged_decision(&limited, None, NOW);
        assert_eq!((undated.delete, undated.rule), (false, Rule::NoDate));
        let future = untagged_decision(&limited, Some(NOW + 5 * day), NOW);
        assert!(!future.delete);
    }

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
}
