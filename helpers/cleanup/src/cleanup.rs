//! `regkit cleanup`: the command line over the library's cleanup engine ([`regkit::cleanup`]): the
//! options, the prompt, progress bars and the outputs (a table, JSON Lines, `--report FILE`).
//!
//! Output: one row per tag seen (and per untagged manifest considered) with `repository`, `tag`, `digest`,
//! `created`, `date_source`, `age`, `action` (`keep`/`delete`), `rule`, `reason`, `result` (`kept`,
//! `declined`, or the deletion's status) and `method`/`error`; then `repository_note` lines (listing
//! failures, untagged manifests an implementation cannot list) and a `summary`. `--report FILE` writes the
//! same as one JSON document: `{"tags": […], "notes": […], "summary": {…}}`.

use std::cell::RefCell;
use std::io::{self, BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use indicatif::ProgressBar;
use regkit::cleanup::{self, Action, CleanupRequest, Report, Row};
use regkit::policy::{self, KeepList, Policy};
use regkit::session::{Connection, Observer};

use crate::inuse::{self, InUseArgs};
use crate::{Fatal, Setup, print_with, progress_bar};

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
    #[command(flatten)]
    in_use: InUseArgs,
    /// Write a JSON report of every tag seen, kept or deleted, with the reason and the result.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
}

fn parse_duration(input: &str) -> Result<u64, String> {
    policy::parse_duration(input).map_err(|error| error.to_string())
}

/// Progress bars on a terminal and `--verbose` lines, for the engine's steps.
struct Terminal<'s> {
    setup: &'s Setup<'s>,
    bar: RefCell<Option<ProgressBar>>,
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
}

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
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
        });
    // Before the first registry request: without the in-use set, nothing may be deleted.
    let in_use = inuse::gather(&args.in_use).await?;
    inuse::explain(setup, &in_use);
    let request = CleanupRequest {
        repositories: &args.repositories,
        policy: &policy,
        untagged: args.untagged,
        in_use: Some(&in_use),
    };
    let terminal = Terminal {
        setup,
        bar: RefCell::new(None),
    };
    let plan = cleanup::plan(&setup.session, &request, now, &terminal).await?;
    let deletions = plan.deletions().count();
    let mut proceed = true;
    if !dry_run && !args.yes && deletions > 0 {
        print_plan(&plan.deletions().collect::<Vec<_>>())?;
        proceed = confirm(deletions, plan.planned_repositories())?;
    }
    let report = if proceed {
        plan.execute(dry_run, &terminal).await
    } else {
        plan.decline()
    };
    if let Some(path) = &args.report {
        write_report(path, &report)?;
    }
    output(setup, &report)?;
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

fn output(setup: &Setup<'_>, report: &Report) -> Result<(), Fatal> {
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
            serde_json::to_writer(&mut *out, &serde_json::json!({ "summary": summary }))?;
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
            "{} repositor{}, {} seen: {} kept, {} deleted, {} untagged, {} absent, {} planned, {} failed",
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
            summary.statuses.failed
        )
    })
}

fn write_report(path: &std::path::Path, report: &Report) -> Result<(), Fatal> {
    let text = serde_json::to_string_pretty(report)
        .map_err(|error| Fatal::Io(format!("cannot encode the report: {error}")))?;
    std::fs::write(path, text + "\n").map_err(|error| {
        Fatal::Io(format!(
            "cannot write the report {}: {error}",
            path.display()
        ))
    })
}
