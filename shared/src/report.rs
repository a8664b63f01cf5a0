//! What a cleanup run did, tag by tag: JSON Lines or a text table, a summary, and the process exit code.

use std::io::{self, Write};

use serde::Serialize;

use crate::reference::{Repository, Target};

/// Exit code: everything requested is done (already absent counts as done).
pub const EXIT_OK: u8 = 0;
/// Exit code: some tags failed.
pub const EXIT_FAILED: u8 = 1;
/// Exit code: usage or configuration error.
pub const EXIT_USAGE: u8 = 2;
/// Exit code: authentication failed or permission denied.
pub const EXIT_AUTH: u8 = 3;
/// Exit code: the registry cannot delete.
pub const EXIT_DELETE_UNSUPPORTED: u8 = 4;

/// The exit codes as `regkit --help` documents them.
pub const EXIT_CODES_HELP: &str = "Exit codes (when several apply, the first of 2, 3, 4, 1 wins):
  0  everything requested is done (a tag that was already absent counts as done)
  1  some tags failed, a repository could not be listed, or an output could not be written
  2  usage or configuration error
  3  authentication failed or permission denied
  4  the registry cannot delete (distribution: set storage.delete.enabled: true)";

/// What happened to one tag or digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The manifest was deleted, and the tag with it.
    Deleted,
    /// Only the tag was removed; the manifest stays for its other tags.
    Untagged,
    /// It did not exist (any more).
    Absent,
    /// Dry run: what would be done.
    Planned,
    /// It could not be removed; see `error`.
    Failed,
    /// `undo`: put back as the journal recorded it.
    Restored,
    /// `undo`: the tag points at another manifest now; left alone.
    Conflict,
    /// `undo`: the registry no longer holds a blob or manifest it needs; `error` names the first.
    Lost,
}

impl Status {
    /// The lowercase name used in both outputs.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Deleted => "deleted",
            Status::Untagged => "untagged",
            Status::Absent => "absent",
            Status::Planned => "planned",
            Status::Failed => "failed",
            Status::Restored => "restored",
            Status::Conflict => "conflict",
            Status::Lost => "lost",
        }
    }
}

/// How a tag was (or would be) removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// `DELETE` of the manifest digest: every tag on it goes.
    Digest,
    /// A unique tombstone manifest was pushed under the tag and deleted, leaving sibling tags alone.
    Tombstone,
    /// The vendor's own tag-delete API.
    Native,
}

impl Method {
    /// The lowercase name used in both outputs.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Digest => "digest",
            Method::Tombstone => "tombstone",
            Method::Native => "native",
        }
    }
}

/// Which exit code a failure maps to. The order is the exit codes' precedence (see [`worst_exit`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FailureKind {
    /// Any other failure (exit 1).
    Other,
    /// The registry refuses deletes (exit 4).
    DeleteUnsupported,
    /// Authentication or permission (exit 3).
    Auth,
}

/// The result for one tag (or one explicitly requested digest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// `registry/repository:tag` or `registry/repository@digest`.
    pub reference: String,
    /// `registry/repository`.
    pub repository: String,
    /// The tag, or `None` for a digest request.
    pub tag: Option<String>,
    /// The digest the tag pointed at, when known.
    pub digest: Option<String>,
    /// The outcome.
    pub status: Status,
    /// How it was (or would be) removed.
    pub method: Option<Method>,
    /// Why it failed, one line.
    pub error: Option<String>,
    /// The exit-code class of `error`.
    #[serde(skip)]
    pub failure: Option<FailureKind>,
}

/// How one target ended, as [`Entry::new`] records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The manifest was deleted, and the tag with it.
    Deleted(Method),
    /// Only the tag was removed; the manifest stays for its other tags.
    Untagged(Method),
    /// It did not exist (any more).
    Absent,
    /// Dry run: it would be removed this way.
    Planned(Method),
    /// It could not be removed.
    Failed {
        /// Why, one line.
        error: String,
        /// Its exit-code class.
        kind: FailureKind,
    },
}

impl Entry {
    /// The entry for `target` of `repository`. `digest` is what a tag pointed at, when known; a digest
    /// target is its own digest.
    pub fn new(
        repository: &Repository,
        target: &Target,
        digest: Option<String>,
        outcome: Outcome,
    ) -> Entry {
        let (tag, digest) = match target {
            Target::Tag(tag) => (Some(tag.clone()), digest),
            Target::Digest(named) => (None, Some(named.clone())),
        };
        let (status, method, error, failure) = match outcome {
            Outcome::Deleted(method) => (Status::Deleted, Some(method), None, None),
            Outcome::Untagged(method) => (Status::Untagged, Some(method), None, None),
            Outcome::Absent => (Status::Absent, None, None, None),
            Outcome::Planned(method) => (Status::Planned, Some(method), None, None),
            Outcome::Failed { error, kind } => (Status::Failed, None, Some(error), Some(kind)),
        };
        Entry {
            reference: format!("{repository}{target}"),
            repository: repository.to_string(),
            tag,
            digest,
            status,
            method,
            error,
            failure,
        }
    }

    /// The entry for a target that does not exist.
    pub fn absent(repository: &Repository, target: &Target) -> Entry {
        Entry::new(repository, target, None, Outcome::Absent)
    }

    /// The target this entry reports on.
    pub fn target(&self) -> Target {
        match &self.tag {
            Some(tag) => Target::Tag(tag.clone()),
            None => Target::Digest(self.digest.clone().unwrap_or_default()),
        }
    }

    /// A failed entry for a row that has no [`Repository`] or [`Target`] at hand.
    pub fn failed(
        reference: String,
        repository: String,
        tag: Option<String>,
        kind: FailureKind,
        error: String,
    ) -> Entry {
        Entry {
            reference,
            repository,
            tag,
            digest: None,
            status: Status::Failed,
            method: None,
            error: Some(error),
            failure: Some(kind),
        }
    }
}

/// How many targets ended in each status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StatusCounts {
    /// `deleted` targets.
    pub deleted: usize,
    /// `untagged` targets.
    pub untagged: usize,
    /// `absent` targets.
    pub absent: usize,
    /// `planned` targets.
    pub planned: usize,
    /// `failed` targets.
    pub failed: usize,
    /// `restored` targets (`undo` only, which alone prints the three below).
    #[serde(skip_serializing_if = "is_zero")]
    pub restored: usize,
    /// `conflict` targets.
    #[serde(skip_serializing_if = "is_zero")]
    pub conflict: usize,
    /// `lost` targets.
    #[serde(skip_serializing_if = "is_zero")]
    pub lost: usize,
}

fn is_zero(count: &usize) -> bool {
    *count == 0
}

impl StatusCounts {
    /// Counts one target that ended in `status`.
    pub fn add(&mut self, status: Status) {
        *match status {
            Status::Deleted => &mut self.deleted,
            Status::Untagged => &mut self.untagged,
            Status::Absent => &mut self.absent,
            Status::Planned => &mut self.planned,
            Status::Failed => &mut self.failed,
            Status::Restored => &mut self.restored,
            Status::Conflict => &mut self.conflict,
            Status::Lost => &mut self.lost,
        } += 1;
    }
}

/// Counts per status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Entries in the report.
    pub total: usize,
    /// Entries per status.
    #[serde(flatten)]
    pub statuses: StatusCounts,
}

impl Summary {
    /// Counts `entries`.
    pub fn of(entries: &[Entry]) -> Summary {
        let mut statuses = StatusCounts::default();
        for entry in entries {
            statuses.add(entry.status);
        }
        Summary {
            total: entries.len(),
            statuses,
        }
    }
}

/// The exit code for a finished run: the most actionable failure wins, see [`worst_exit`].
pub fn exit_code(entries: &[Entry]) -> u8 {
    entries
        .iter()
        .filter_map(|entry| entry.failure)
        .max()
        .map_or(EXIT_OK, FailureKind::exit_code)
}

/// The exit code of a run whose parts ended with `codes`: the most actionable first. 2 (the command or the
/// configuration is wrong) over 3 (the user's credentials or permissions: theirs to fix) over 4 (a registry
/// setting: its administrator's to change) over 1 (anything else, often worth a rerun) over 0.
pub fn worst_exit(codes: impl IntoIterator<Item = u8>) -> u8 {
    let rank = |code: &u8| match *code {
        EXIT_OK => 0,
        EXIT_USAGE => 4,
        EXIT_AUTH => 3,
        EXIT_DELETE_UNSUPPORTED => 2,
        _ => 1,
    };
    codes.into_iter().max_by_key(rank).unwrap_or(EXIT_OK)
}

impl FailureKind {
    /// The process exit code for this class.
    pub fn exit_code(self) -> u8 {
        match self {
            FailureKind::Other => EXIT_FAILED,
            FailureKind::Auth => EXIT_AUTH,
            FailureKind::DeleteUnsupported => EXIT_DELETE_UNSUPPORTED,
        }
    }
}

/// The distinct error messages, in first-seen order, for the one-line-per-error stderr output.
pub fn distinct_errors(entries: &[Entry]) -> Vec<&str> {
    let mut seen = Vec::new();
    for error in entries.iter().filter_map(|entry| entry.error.as_deref()) {
        if !seen.contains(&error) {
            seen.push(error);
        }
    }
    seen
}

/// One JSON object per entry, then `{"summary":{…}}`, which names the undo `journal` the run wrote, if any.
pub fn write_json_lines(
    out: &mut impl Write,
    entries: &[Entry],
    journal: Option<&str>,
) -> io::Result<()> {
    for entry in entries {
        serde_json::to_writer(&mut *out, entry)?;
        out.write_all(b"\n")?;
    }
    #[derive(Serialize)]
    struct Line<'a> {
        summary: &'a Summary,
        #[serde(skip_serializing_if = "Option::is_none")]
        journal: Option<&'a str>,
    }
    serde_json::to_writer(
        &mut *out,
        &Line {
            summary: &Summary::of(entries),
            journal,
        },
    )?;
    out.write_all(b"\n")
}

/// An aligned table with a header, then a one-line summary.
pub fn write_text(out: &mut impl Write, entries: &[Entry]) -> io::Result<()> {
    let rows: Vec<[&str; 5]> = entries
        .iter()
        .map(|entry| {
            [
                entry.status.as_str(),
                entry.method.map(Method::as_str).unwrap_or("-"),
                entry.reference.as_str(),
                entry.digest.as_deref().unwrap_or("-"),
                entry.error.as_deref().unwrap_or(""),
            ]
        })
        .collect();
    write_table(
        out,
        ["STATUS", "METHOD", "REFERENCE", "DIGEST", "ERROR"],
        &rows,
    )?;
    let summary = Summary::of(entries);
    writeln!(
        out,
        "{} total: {} deleted, {} untagged, {} absent, {} planned, {} failed",
        summary.total,
        summary.statuses.deleted,
        summary.statuses.untagged,
        summary.statuses.absent,
        summary.statuses.planned,
        summary.statuses.failed
    )
}

/// One tag of a `regkit tags` listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TagRow {
    /// `registry/repository`.
    pub repository: String,
    /// The tag.
    pub tag: String,
    /// Its manifest digest, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

/// Tags as JSON Lines (`{"repository","tag"[,"digest"]}`) or one per line (`tag  digest` with digests).
pub fn write_tags(out: &mut impl Write, rows: &[TagRow], json: bool) -> io::Result<()> {
    if json {
        for row in rows {
            serde_json::to_writer(&mut *out, row)?;
            out.write_all(b"\n")?;
        }
        return Ok(());
    }
    if rows.iter().any(|row| row.digest.is_some()) {
        let table: Vec<[&str; 2]> = rows
            .iter()
            .map(|row| [row.tag.as_str(), row.digest.as_deref().unwrap_or("-")])
            .collect();
        return write_table(out, ["TAG", "DIGEST"], &table);
    }
    for row in rows {
        writeln!(out, "{}", row.tag)?;
    }
    Ok(())
}

/// An aligned table: `header`, then `rows`, columns as wide as their widest cell.
pub fn write_table<const N: usize>(
    out: &mut impl Write,
    header: [&str; N],
    rows: &[[&str; N]],
) -> io::Result<()> {
    let mut widths = header.map(str::len);
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (index, (cell, width)) in row.iter().zip(widths).enumerate() {
            if index + 1 == N {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  "));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(tag: &str, status: Status, failure: Option<FailureKind>) -> Entry {
        Entry {
            reference: format!("r.io/app:{tag}"),
            repository: "r.io/app".into(),
            tag: Some(tag.into()),
            digest: Some("sha256:aa".into()),
            status,
            method: Some(Method::Tombstone),
            error: failure.map(|_| format!("boom {tag}")),
            failure,
        }
    }

    #[test]
    fn json_lines_shape() {
        let entries = [
            entry("a", Status::Untagged, None),
            entry("b", Status::Failed, Some(FailureKind::Other)),
        ];
        let mut out = Vec::new();
        write_json_lines(&mut out, &entries, None).unwrap();
        let lines: Vec<serde_json::Value> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(
            lines[0],
            serde_json::json!({"reference":"r.io/app:a","repository":"r.io/app","tag":"a","digest":"sha256:aa",
                "status":"untagged","method":"tombstone","error":null})
        );
        assert_eq!(lines[1]["error"], "boom b");
        assert_eq!(
            lines[2],
            serde_json::json!({"summary":{"total":2,"deleted":0,"untagged":1,"absent":0,"planned":0,"failed":1}})
        );
    }

    #[test]
    fn exit_code_prefers_the_most_specific_failure() {
        let ok = entry("a", Status::Absent, None);
        assert_eq!(exit_code(std::slice::from_ref(&ok)), EXIT_OK);
        let other = entry("b", Status::Failed, Some(FailureKind::Other));
        let auth = entry("c", Status::Failed, Some(FailureKind::Auth));
        let unsupported = entry("d", Status::Failed, Some(FailureKind::DeleteUnsupported));
        assert_eq!(exit_code(&[ok.clone(), other.clone()]), EXIT_FAILED);
        assert_eq!(exit_code(&[other.clone(), auth.clone()]), EXIT_AUTH);
        assert_eq!(
            exit_code(&[unsupported.clone(), other.clone()]),
            EXIT_DELETE_UNSUPPORTED
        );
        assert_eq!(
            exit_code(&[ok.clone(), unsupported, auth, other.clone()]),
            EXIT_AUTH
        );
        assert_eq!(
            worst_exit([EXIT_FAILED, EXIT_DELETE_UNSUPPORTED]),
            EXIT_DELETE_UNSUPPORTED
        );
        assert_eq!(
            worst_exit([EXIT_DELETE_UNSUPPORTED, EXIT_AUTH, EXIT_FAILED]),
            EXIT_AUTH
        );
        assert_eq!(worst_exit([EXIT_AUTH, EXIT_USAGE]), EXIT_USAGE);
        assert_eq!(worst_exit([]), EXIT_OK);
        assert_eq!(distinct_errors(&[other.clone(), other, ok]), vec!["boom b"]);
    }

    #[test]
    fn text_table_is_aligned_and_summarised() {
        let entries = [
            entry("a", Status::Untagged, None),
            entry("long-tag", Status::Absent, None),
        ];
        let mut out = Vec::new();
        write_text(&mut out, &entries).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0].find("REFERENCE"), lines[1].find("r.io/app:a"));
        assert_eq!(lines[1].find("sha256"), lines[2].find("sha256"));
        assert_eq!(
            lines[3],
            "2 total: 0 deleted, 1 untagged, 1 absent, 0 planned, 0 failed"
        );
    }

    #[test]
    fn tags_listing_formats() {
        let rows = [
            TagRow {
                repository: "r/a".into(),
                tag: "v1".into(),
                digest: Some("sha256:1".into()),
            },
            TagRow {
                repository: "r/a".into(),
                tag: "v2".into(),
                digest: Some("sha256:1".into()),
            },
        ];
        let mut out = Vec::new();
        write_tags(&mut out, &rows, true).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"repository\":\"r/a\",\"tag\":\"v1\",\"digest\":\"sha256:1\"}\n{\"repository\":\"r/a\",\"tag\":\"v2\",\"digest\":\"sha256:1\"}\n"
        );
        let mut out = Vec::new();
        write_tags(&mut out, &rows[..1], false).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "TAG  DIGEST\nv1   sha256:1\n"
        );
    }
}
