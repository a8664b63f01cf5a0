//! `regkit cleanup`: the command line over the library's cleanup engine ([`regkit::cleanup`]): the
//! options, the prompt, progress bars and the outputs (a table, JSON Lines, `--report FILE`).
//!
//! Output: one row per tag seen (and per untagged manifest considered) with `repository`, `tag`, `digest`,
//! `subject` (a referrer's), `created`, `date_source`, `age`, `action` (`keep`/`delete`), `rule`, `reason`, `result` (`kept`,
//! `declined`, or the deletion's status) and `method`/`error`; then `repository_note` lines (listing
//! failures, untagged manifests an implementation cannot list) and a `summary`. `--report FILE` writes the
//! same as one JSON document: `{"tags": […], "notes": […], "summary": {…}}`.

use std::cell::{Cell, RefCell};
use std::io::{self, BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use indicatif::ProgressBar;
use regkit::cleanup::{self, Action, CleanupRequest, Report, Row};
use regkit::ecr::identity::IdentityMap;
use regkit::policy::file::{Rules, RulesError};
use regkit::policy::{self, Policies, Sort};
use regkit::report;
use regkit::session::{Connection, Observer};

use crate::inuse::{self, InUseArgs};
use crate::{
    Fatal, JournalArgs, Setup, journal_line, journal_written, open_journal, print_with,
    progress_bar, warn_unrecorded,
};

/// `regkit cleanup`'s own options (`--dry-run`, `--output`, `--parallel`, the registry options come from
/// the groups in main.rs it shares with other subcommands).
#[derive(clap::Args)]
pub(crate) struct CleanupArgs {
    /// Repositories, e.g. registry.example.com/team/app; `registry.example.com/team/*` means every
    /// repository under team/ (where the registry can list repositories). With --policy, they replace the
    /// policies' own repositories.
    #[arg(value_name = "REPO", required_unless_present_any = ["policies", "all_policies"])]
    repositories: Vec<String>,
    /// Apply the [[cleanup.policy]] of this name from regkit's config file (REGKIT_CONFIG, else
    /// ~/.config/regkit/config.toml) to its repositories; repeatable. Rule flags given here override
    /// the file's values.
    #[arg(long = "policy", value_name = "NAME")]
    policies: Vec<String>,
    /// Apply every [[cleanup.policy]] of the config file.
    #[arg(long, conflicts_with = "policies")]
    all_policies: bool,
    /// Print every rule's verdict on TAG in each repository, and the decision; deletes nothing.
    #[arg(long, value_name = "TAG")]
    explain: Option<String>,
    /// Keep the N newest tags of those the name filters select (per --group-by group), however old.
    /// Tags dated the same as the Nth newest are all kept (tags on one image share its date), so more than
    /// N may stay.
    #[arg(long, value_name = "N")]
    keep_last: Option<usize>,
    /// Apply --keep-last per group: the capture groups of this regex's match form the group key
    /// (`^(main|release-.*)-` keeps N per branch); tags it does not match are not ranked.
    #[arg(long, value_name = "REGEX", allow_hyphen_values = true)]
    group_by: Option<String>,
    /// How --keep-last and --per-git-ref rank tags: date (newest push first), or semver (highest version
    /// first, optional v prefix, pre-releases below their release; other tags below every version, by
    /// date) [default: date].
    #[arg(long, value_name = "ORDER", value_parser = parse_sort)]
    sort: Option<Sort>,
    /// Never delete anything pushed within this window, whatever the rules (0 turns it off), so a
    /// cleanup never races a build that is still pushing [default: 2h].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    grace: Option<u64>,
    /// Delete only tags not pulled for this long (never-pulled tags count from their push), where the
    /// registry records pulls; elsewhere the rule selects nothing and the report says why.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    unpulled_for: Option<u64>,
    /// Keep tags naming a branch or tag of this git repository (as CI turns ref names into tags:
    /// lowercase, / to -) or a head commit (full or 7+ hex digits); read with `git`, bounded in time.
    #[arg(long, value_name = "DIR")]
    keep_git: Option<PathBuf>,
    /// With --keep-git: also keep the N newest tags carrying each reference as a prefix or suffix
    /// (main-1a2b3c4, build-7-main).
    #[arg(long, value_name = "N")]
    per_git_ref: Option<usize>,
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
        "Also delete manifests no tag points at, where the registry can list them ({}; never a child of an index still in the repository, nor a referrer whose subject exists); --older-than applies to them too",
        regkit::implementation::untagged_listers()
    ))]
    untagged: bool,
    /// Keep the signatures, attestations, SBOMs and other referrers of the manifests deleted (they become
    /// orphans); by default they go with their subject.
    #[arg(long)]
    keep_referrers: bool,
    /// Also delete orphans: referrers (sha256-<digest>.sig tags, manifests with a subject) whose subject
    /// no longer exists; --older-than applies to them too.
    #[arg(long)]
    orphans: bool,
    /// Select every tag when no rule is given (--match, --exclude, --keep-list, --older-than,
    /// --keep-last): without a rule and without --all, cleanup refuses to run.
    #[arg(long)]
    all: bool,
    /// Delete without asking (required when standard input is not a terminal).
    #[arg(long, short = 'y')]
    yes: bool,
    #[command(flatten)]
    in_use: InUseArgs,
    /// Write a JSON report of every tag seen, kept or deleted, with the reason and the result.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
}

pub(crate) fn parse_duration(input: &str) -> Result<u64, String> {
    policy::parse_duration(input).map_err(|error| error.to_string())
}

fn parse_sort(input: &str) -> Result<Sort, String> {
    Sort::parse(input).ok_or_else(|| format!("{input:?} is no order: use date or semver"))
}

impl CleanupArgs {
    /// The rule values given on the command line.
    fn rules(&self) -> Rules {
        Rules {
            matches: self.matches.clone(),
            excludes: self.excludes.clone(),
            keep_list: self.keep_list.clone(),
            older_than: self.older_than,
            keep_last: self.keep_last,
            group_by: self.group_by.clone(),
            sort: self.sort,
            grace: self.grace,
            unpulled_for: self.unpulled_for,
            keep_git: self.keep_git.clone(),
            per_git_ref: self.per_git_ref,
        }
    }

    /// The policies of the run and the repositories they cover: the command line's rules, or the named
    /// policies of the config file with the command line's rules over them. Every file, regex and git
    /// repository is read here, before the first request.
    fn policies(&self) -> Result<(Policies, Vec<String>), Fatal> {
        let flags = self.rules();
        let usage = |error: RulesError| Fatal::Usage(error.to_string());
        if self.policies.is_empty() && !self.all_policies {
            return Ok((
                Policies::single(flags.policy().map_err(usage)?),
                self.repositories.clone(),
            ));
        }
        let env = regkit::ecr::Env::from_process();
        let file = IdentityMap::load_with(&env, |text| {
            policy::file::parse(text).map_err(|error| error.to_string())
        })
        .map_err(|error| Fatal::Usage(error.to_string()))?;
        let place = IdentityMap::path(&env).map_or_else(
            || "regkit's config file".into(),
            |path| path.display().to_string(),
        );
        let defined = file.unwrap_or_default();
        let mut chosen = Vec::new();
        if self.all_policies {
            if defined.is_empty() {
                return Err(Fatal::Usage(format!(
                    "--all-policies: {place} defines no [[cleanup.policy]]"
                )));
            }
            chosen.extend(defined.iter());
        }
        for name in &self.policies {
            let named = defined
                .iter()
                .find(|policy| &policy.name == name)
                .ok_or_else(|| {
                    let known: Vec<&str> =
                        defined.iter().map(|policy| policy.name.as_str()).collect();
                    Fatal::Usage(format!(
                        "--policy {name}: {place} defines no such [[cleanup.policy]] (defined: {})",
                        if known.is_empty() {
                            "none".into()
                        } else {
                            known.join(", ")
                        }
                    ))
                })?;
            if !chosen.iter().any(|policy| policy.name == named.name) {
                chosen.push(named);
            }
        }
        let mut entries = Vec::new();
        let mut repositories: Vec<String> = self.repositories.clone();
        for named in chosen {
            let covered = if self.repositories.is_empty() {
                named.repositories.clone()
            } else {
                self.repositories.clone()
            };
            let policy = named
                .rules
                .clone()
                .overlaid(&flags)
                .policy()
                .map_err(|error| Fatal::Usage(format!("policy {}: {error}", named.name)))?;
            for repository in &covered {
                if !repositories.contains(repository) {
                    repositories.push(repository.clone());
                }
            }
            entries.push((named.name.clone(), covered, policy));
        }
        Ok((Policies::named(entries), repositories))
    }
}

/// Progress bars on a terminal and `--verbose` lines, for the engine's steps.
struct Terminal<'s> {
    setup: &'s Setup<'s>,
    bar: RefCell<Option<ProgressBar>>,
    /// Tags (and untagged manifests) of the repositories planned so far.
    rows: Cell<usize>,
}

impl Observer for Terminal<'_> {
    fn connected(&self, registry: &str, connection: &Connection) {
        self.setup.explain(registry, connection);
    }

    fn begin(&self, total: usize, label: Option<&str>) {
        let bar = progress_bar(self.setup, total);
        if let (Some(bar), Some(label)) = (&bar, label) {
            bar.set_message(label.to_string());
        }
        *self.bar.borrow_mut() = bar;
    }

    fn advance(&self, units: u64) {
        if let Some(bar) = &*self.bar.borrow() {
            bar.inc(units);
        }
    }

    fn end(&self) {
        if let Some(bar) = self.bar.borrow_mut().take() {
            bar.finish_and_clear();
        }
    }

    fn planned(&self, rows: usize) {
        self.rows.set(self.rows.get() + rows);
        if let Some(bar) = &*self.bar.borrow() {
            bar.inc(1);
            bar.set_message(format!("repositories planned, {} tags", self.rows.get()));
        }
    }
}

pub(crate) async fn cleanup(
    setup: &Setup<'_>,
    args: &CleanupArgs,
    journal_args: &JournalArgs,
) -> Result<u8, Fatal> {
    let (policies, repositories) = args.policies()?;
    if !args.all && args.explain.is_none() && !policies.has_rule() {
        return Err(Fatal::Usage(
            "cleanup needs a rule (--older-than, --keep-last, --match, --exclude, --keep-list, --unpulled-for, \
             --keep-git or a --policy), or --all to delete every tag"
                .into(),
        ));
    }
    let dry_run = setup.options.dry_run;
    // Refused before the first request: a nightly job without --yes must fail loudly, not half-run.
    let interactive = io::stdin().is_terminal() && io::stderr().is_terminal();
    if !dry_run && !args.yes && !interactive && args.explain.is_none() {
        return Err(Fatal::Usage(
            "cleanup deletes tags and standard input is not a terminal to confirm: pass --yes to delete \
             without asking, or --dry-run to see the plan"
                .into(),
        ));
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
        });
    let repositories = repositories
        .iter()
        .map(|input| setup.unpasted(input).map(str::to_string))
        .collect::<Result<Vec<_>, _>>()?;
    // Before the first registry request: without the in-use set, nothing may be deleted.
    let in_use = inuse::gather(&args.in_use).await?;
    inuse::explain(setup, &in_use);
    let request = CleanupRequest {
        repositories: &repositories,
        policies: &policies,
        explain: args.explain.as_deref(),
        untagged: args.untagged,
        keep_referrers: args.keep_referrers,
        orphans: args.orphans,
        in_use: Some(&in_use),
    };
    let terminal = Terminal {
        setup,
        bar: RefCell::new(None),
        rows: Cell::new(0),
    };
    let plan = cleanup::plan(&setup.session, &request, now, &terminal).await?;
    if let Some(tag) = &args.explain {
        return explain(setup, &plan, tag);
    }
    let deletions = plan.deletions().count();
    let mut proceed = true;
    if !dry_run && !args.yes && deletions > 0 {
        print_plan(&plan.deletions().collect::<Vec<_>>())?;
        proceed = confirm(deletions, plan.planned_repositories())?;
    }
    let mut journaled = None;
    let report = if proceed {
        let registries = plan
            .rows()
            .map(|row| {
                row.repository
                    .split('/')
                    .next()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let journal = open_journal(setup, journal_args, "cleanup", registries)?;
        let report = plan.execute(dry_run, journal.as_ref(), &terminal).await;
        warn_unrecorded(journal.as_ref());
        journaled = journal_written(journal.as_ref());
        report
    } else {
        plan.decline()
    };
    if let Some(path) = &args.report {
        write_report(path, &report, journaled.as_deref())?;
    }
    output(setup, &report, journaled.as_deref())?;
    for note in &report.notes {
        if let Some(error) = &note.error {
            eprintln!("regkit: {}: {error}", note.repository);
        } else if let Some(text) = &note.note
            && !setup.options.quiet
        {
            eprintln!("regkit: {}: {text}", note.repository);
        }
    }
    if report.declined {
        eprintln!("regkit: nothing deleted");
    } else {
        for error in report.errors() {
            eprintln!("regkit: {error}");
        }
    }
    Ok(report.exit_code())
}

/// `--explain TAG`: per repository listing it, every rule's verdict (per policy), then the decision the
/// plan holds (which includes what the engine adds, such as a kept index's children). Changes nothing;
/// exit 1 when no repository lists the tag.
fn explain(setup: &Setup<'_>, plan: &cleanup::Plan, tag: &str) -> Result<u8, Fatal> {
    let mut found = false;
    let result = print_with(|out| {
        for explanation in plan.explanations() {
            found = true;
            let row = plan.rows().find(|row| {
                row.repository == explanation.repository && row.tag.as_deref() == Some(tag)
            });
            if setup.json() {
                let value = serde_json::json!({ "explain": explanation, "decision": row });
                serde_json::to_writer(&mut *out, &value)?;
                writeln!(out)?;
                continue;
            }
            writeln!(out, "{}:{tag}", explanation.repository)?;
            for (name, verdicts) in &explanation.policies {
                if let Some(name) = name {
                    writeln!(out, "  policy {name}")?;
                }
                for verdict in verdicts {
                    let mark = if verdict.keeps { "keeps" } else { "-" };
                    writeln!(
                        out,
                        "    {:<16} {mark:<6} {}",
                        verdict.option, verdict.reason
                    )?;
                }
            }
            if let Some(row) = row {
                writeln!(
                    out,
                    "  decision: {} ({}): {}",
                    if row.action == Action::Delete {
                        "delete"
                    } else {
                        "keep"
                    },
                    row.rule,
                    row.reason
                )?;
            }
        }
        Ok(())
    });
    result?;
    for note in plan.notes() {
        if let Some(error) = &note.error {
            eprintln!("regkit: {}: {error}", note.repository);
        }
    }
    if found {
        Ok(report::EXIT_OK)
    } else {
        eprintln!("regkit: --explain {tag}: no repository of the run lists this tag");
        Ok(report::EXIT_FAILED)
    }
}

/// The plan before the question: tag, age, digest, reason.
fn print_plan(rows: &[&Row]) -> Result<(), Fatal> {
    // On the terminal beside the question, so standard output stays the run's report (JSON Lines with
    // --output json).
    let mut err = io::stderr().lock();
    write_rows(&mut err, rows, false)
        .and_then(|()| writeln!(err))
        .map_err(|error| Fatal::Io(format!("cannot show the plan: {error}")))
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
        .map_err(|error| Fatal::Io(format!("cannot read the answer: {error}")))?;
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
                row.result.as_str()
            } else {
                "delete"
            };
            let reason = match &row.error {
                Some(error) => format!("{}; {error}", row.reason),
                None => row.reason.clone(),
            };
            [
                result.to_string(),
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

fn output(setup: &Setup<'_>, report: &Report, journal: Option<&str>) -> Result<(), Fatal> {
    let summary = &report.summary;
    if setup.json() {
        return print_with(|out| {
            for row in &report.rows {
                serde_json::to_writer(&mut *out, row)?;
                writeln!(out)?;
            }
            for note in &report.notes {
                serde_json::to_writer(&mut *out, &serde_json::json!({ "repository_note": note }))?;
                writeln!(out)?;
            }
            let mut last = serde_json::json!({ "summary": summary });
            if let Some(journal) = journal {
                last["journal"] = journal.into();
            }
            serde_json::to_writer(&mut *out, &last)?;
            writeln!(out)
        });
    }
    if setup.options.quiet {
        return Ok(());
    }
    // Kept tags are many and uneventful: the text output lists them only with --verbose; the report and
    // the JSON output always carry them.
    let shown: Vec<&Row> = report
        .rows
        .iter()
        .filter(|row| setup.options.verbose || row.action == Action::Delete)
        .collect();
    print_with(|out| {
        if !shown.is_empty() {
            write_rows(out, &shown, true)?;
        }
        writeln!(
            out,
            "{} repositor{}, {} seen: {} kept, {} deleted, {} untagged, {} absent, {} planned, {} failed, {} orphan(s)",
            summary.repositories,
            if summary.repositories == 1 {
                "y"
            } else {
                "ies"
            },
            summary.seen,
            summary.kept,
            summary.statuses.deleted,
            summary.statuses.untagged,
            summary.statuses.absent,
            summary.statuses.planned,
            summary.statuses.failed,
            summary.orphans
        )?;
        match journal {
            Some(journal) => writeln!(out, "{}", journal_line(journal)),
            None => Ok(()),
        }
    })
}

fn write_report(
    path: &std::path::Path,
    report: &Report,
    journal: Option<&str>,
) -> Result<(), Fatal> {
    let encoding =
        |error: serde_json::Error| Fatal::Io(format!("cannot encode the report: {error}"));
    let mut document = serde_json::to_value(report).map_err(encoding)?;
    if let Some(journal) = journal {
        document["journal"] = journal.into();
    }
    let text = serde_json::to_string_pretty(&document).map_err(encoding)?;
    std::fs::write(path, text + "\n").map_err(|error| {
        Fatal::Io(format!(
            "cannot write the report {}: {error}",
            path.display()
        ))
    })
}
