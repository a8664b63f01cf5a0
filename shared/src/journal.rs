//! The undo journal: what a `delete` or `cleanup` run removed, written before each change is sent, so
//! `regkit undo` can put it back while the registry still holds the blobs.
//!
//! One file per run, JSON Lines: a [`Header`], then one [`Change`] per tag or manifest removed, with the
//! exact manifest body (base64) the registry returned. Each line is appended and synced before the change
//! it describes goes out; a journal that cannot be written stops that change. Nothing secret is in it: no
//! credentials, no token, only what anyone who can pull the repository can read.
//!
//! The file is made at the first change (a dry run, or a run that removes nothing, leaves none), 0600 in a
//! 0700 directory, by default `$XDG_STATE_HOME/regkit/journal/` (`~/.local/state/regkit/journal/`).

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read as _, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::dates::format_rfc3339;
use crate::registry::{Manifest, sha256_digest};

/// What the header line's `journal` key holds; a file without it is not a journal.
const MAGIC: &str = "regkit-undo";
/// The format version this build writes and reads.
const VERSION: u32 = 1;
/// A journal line longer than this is refused unread (manifests are capped at 4 MiB, base64 adds a third).
const MAX_LINE_BYTES: usize = 8 * 1024 * 1024;
/// How long journals are kept by default: 30 days.
pub const DEFAULT_KEEP: Duration = Duration::from_secs(30 * 86_400);

/// What went wrong with a journal, one line naming the file.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// No state directory to put journals in.
    #[error(
        "no directory for the undo journal: set XDG_STATE_HOME or HOME, or give --journal FILE (or --no-journal)"
    )]
    NoStateDir,
    /// The file or directory could not be made, written or read.
    #[error("cannot {action} the undo journal {}: {source}", path.display())]
    Io {
        /// What was attempted (`create`, `write`, `read`).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The first line is not a regkit journal header.
    #[error("{} is not a regkit undo journal (line 1: {message})", path.display())]
    NotAJournal {
        /// The file.
        path: PathBuf,
        /// What is wrong with its first line.
        message: String,
    },
    /// `undo --last` found no journal.
    #[error("no undo journal in {}", dir.display())]
    NoJournal {
        /// The directory searched.
        dir: PathBuf,
    },
}

/// The first line of a journal: which run wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// Always `regkit-undo`.
    pub journal: String,
    /// The format version.
    pub version: u32,
    /// When the run started, RFC 3339 UTC.
    pub time: String,
    /// The run's id, also in the file name.
    pub run_id: String,
    /// `delete` or `cleanup`.
    pub command: String,
    /// The registry hosts the run was given.
    pub registries: Vec<String>,
}

/// What a change removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChangeKind {
    /// The manifest was deleted by digest, and the tag (if any) with it.
    ManifestDelete,
    /// The tag was moved onto a tombstone that was deleted; the manifest stays for its other tags.
    TombstoneUntag,
    /// The vendor's API removed the tag; the manifest usually stays.
    VendorUntag,
}

impl ChangeKind {
    /// The name written in the journal and the reports.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::ManifestDelete => "manifest-delete",
            ChangeKind::TombstoneUntag => "tombstone-untag",
            ChangeKind::VendorUntag => "vendor-untag",
        }
    }
}

/// One line per tag or manifest removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// The registry host.
    pub registry: String,
    /// The repository path on it.
    pub repository: String,
    /// The tag removed, or `None` for a manifest removed by digest alone.
    pub tag: Option<String>,
    /// The manifest's digest.
    pub digest: String,
    /// The manifest's media type (its `Content-Type`).
    pub media_type: String,
    /// The exact manifest body, base64.
    pub body: String,
    /// What the change did.
    pub change: ChangeKind,
}

impl Change {
    /// The line for removing `tag` (or, with `None`, the manifest alone) whose manifest is `manifest`.
    pub fn new(
        registry: &str,
        repository: &str,
        tag: Option<&str>,
        manifest: &Manifest,
        change: ChangeKind,
    ) -> Change {
        Change {
            registry: registry.to_string(),
            repository: repository.to_string(),
            tag: tag.map(str::to_string),
            digest: manifest.info.digest.clone(),
            media_type: manifest.info.media_type.clone(),
            body: STANDARD.encode(&manifest.body),
            change,
        }
    }

    /// The body, once it is known to hash to `digest`.
    pub fn verified_body(&self) -> Result<Vec<u8>, String> {
        let body = STANDARD
            .decode(&self.body)
            .map_err(|error| format!("the body is not base64 ({error})"))?;
        let computed = sha256_digest(&body);
        if !self.digest.eq_ignore_ascii_case(&computed) {
            return Err(format!(
                "the body hashes to {computed}, not {}",
                self.digest
            ));
        }
        if self.media_type.trim().is_empty() {
            return Err("the media type is empty".into());
        }
        Ok(body)
    }
}

/// Where a run writes its journal.
#[derive(Debug, Clone)]
pub enum Location {
    /// A file per run in this directory (the default: [`default_dir`]).
    Dir(PathBuf),
    /// This file (`--journal FILE`), which must not exist yet.
    File(PathBuf),
}

/// The default journal directory: `$XDG_STATE_HOME/regkit/journal`, else `~/.local/state/regkit/journal`.
pub fn default_dir() -> Result<PathBuf, JournalError> {
    let var = |name: &str| std::env::var_os(name).filter(|value| !value.is_empty());
    if let Some(state) = var("XDG_STATE_HOME") {
        return Ok(PathBuf::from(state).join("regkit/journal"));
    }
    std::env::home_dir()
        .filter(|home| !home.as_os_str().is_empty())
        .map(|home| home.join(".local/state/regkit/journal"))
        .ok_or(JournalError::NoStateDir)
}

/// A run's journal: cheap to clone, shared by every repository of the run.
#[derive(Debug, Clone)]
pub struct Journal {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    header: Header,
    file: Mutex<Option<File>>,
    changes: AtomicUsize,
    bytes: AtomicUsize,
    unrecorded: AtomicUsize,
    first_unrecorded: Mutex<Option<String>>,
}

impl Journal {
    /// The journal of a run of `command` over `registries`, at `location`; the file is made at the first
    /// [`record`](Journal::record).
    pub fn new(location: Location, command: &str, registries: Vec<String>) -> Journal {
        let started = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let time = format_rfc3339(started.as_secs() as i64);
        let run_id = run_id(started);
        let path = match location {
            Location::File(path) => path,
            Location::Dir(dir) => {
                let stamp: String = time.chars().filter(|c| !matches!(c, '-' | ':')).collect();
                dir.join(format!("{stamp}-{run_id}.jsonl"))
            }
        };
        let header = Header {
            journal: MAGIC.to_string(),
            version: VERSION,
            time,
            run_id,
            command: command.to_string(),
            registries,
        };
        Journal {
            inner: Arc::new(Inner {
                path,
                header,
                file: Mutex::new(None),
                changes: AtomicUsize::new(0),
                bytes: AtomicUsize::new(0),
                unrecorded: AtomicUsize::new(0),
                first_unrecorded: Mutex::new(None),
            }),
        }
    }

    /// The file's path (it exists once a change was recorded).
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// How many changes were recorded.
    pub fn changes(&self) -> usize {
        self.inner.changes.load(Ordering::Relaxed)
    }

    /// How many bytes were written, header included.
    pub fn bytes(&self) -> usize {
        self.inner.bytes.load(Ordering::Relaxed)
    }

    /// Notes a change sent without a line of its own because its manifest could not be read (`why`): a
    /// registry that will not serve the body to regkit must not stop a delete the user asked for, but the
    /// run says it cannot be undone.
    pub fn unrecorded(&self, why: String) {
        self.inner.unrecorded.fetch_add(1, Ordering::Relaxed);
        self.inner
            .first_unrecorded
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get_or_insert(why);
    }

    /// How many changes went without a line, and why the first did.
    pub fn missing(&self) -> Option<(usize, String)> {
        let count = self.inner.unrecorded.load(Ordering::Relaxed);
        let why = self
            .inner
            .first_unrecorded
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        why.filter(|_| count > 0).map(|why| (count, why))
    }

    /// Appends `change` and syncs it to disk; the change may be sent once this returns `Ok`.
    pub fn record(&self, change: &Change) -> Result<(), JournalError> {
        let path = &self.inner.path;
        let fail = |action, source| JournalError::Io {
            action,
            path: path.clone(),
            source,
        };
        let mut line = serde_json::to_vec(change).map_err(|error| fail("write", error.into()))?;
        line.push(b'\n');
        // A poisoned lock only means another thread panicked mid-write; the file is still append-only.
        let mut guard = self
            .inner
            .file
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let file = match &mut *guard {
            Some(file) => file,
            slot @ None => {
                let mut created = create(path).map_err(|error| fail("create", error))?;
                let mut header = serde_json::to_vec(&self.inner.header)
                    .map_err(|error| fail("write", error.into()))?;
                header.push(b'\n');
                created
                    .write_all(&header)
                    .map_err(|error| fail("write", error))?;
                self.inner.bytes.fetch_add(header.len(), Ordering::Relaxed);
                slot.insert(created)
            }
        };
        file.write_all(&line)
            .and_then(|()| file.sync_data())
            .map_err(|error| fail("write", error))?;
        self.inner.changes.fetch_add(1, Ordering::Relaxed);
        self.inner.bytes.fetch_add(line.len(), Ordering::Relaxed);
        Ok(())
    }
}

/// A short id for the run: the clock and the process, mixed with the standard library's per-process
/// random hash keys, so two runs in the same second get different files.
fn run_id(started: Duration) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(started.as_nanos());
    hasher.write_u32(std::process::id());
    format!("{:08x}", hasher.finish() as u32)
}

/// Makes `path` (never over an existing file) 0600, and its directory 0700.
fn create(path: &Path) -> io::Result<File> {
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir)?;
    }
    let mut options = OpenOptions::new();
    options.append(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// A journal as read back: the header and every change line, each verified or refused.
#[derive(Debug)]
pub struct Read {
    /// The file.
    pub path: PathBuf,
    /// Its first line.
    pub header: Header,
    /// One per change line (blank lines skipped), in file order.
    pub lines: Vec<Line>,
}

/// One change line of a journal.
#[derive(Debug)]
pub struct Line {
    /// Its 1-based line number in the file.
    pub number: usize,
    /// The change with its verified body, or why the line is refused.
    pub change: Result<(Change, Vec<u8>), String>,
}

/// Reads and verifies the journal at `path`: a header that is not a regkit journal's is an error; a
/// change line that does not parse, or whose body does not hash to its digest, is refused on its own.
pub fn read(path: &Path) -> Result<Read, JournalError> {
    let fail = |source| JournalError::Io {
        action: "read",
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(fail)?;
    let mut reader = BufReader::new(file);
    let mut header = None;
    let mut lines = Vec::new();
    let mut buffer = Vec::new();
    for number in 1.. {
        buffer.clear();
        let read = (&mut reader)
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut buffer)
            .map_err(fail)?;
        if read == 0 {
            break;
        }
        let complete = buffer.ends_with(b"\n");
        if !complete && buffer.len() > MAX_LINE_BYTES {
            // Skip the rest of the oversized line, bounded like the rest.
            let mut rest = Vec::new();
            while !rest.ends_with(b"\n") {
                rest.clear();
                if (&mut reader)
                    .take(MAX_LINE_BYTES as u64)
                    .read_until(b'\n', &mut rest)
                    .map_err(fail)?
                    == 0
                {
                    break;
                }
            }
        }
        let text = String::from_utf8_lossy(&buffer);
        let text = text.trim();
        if header.is_none() {
            header = Some(parse_header(path, text)?);
            continue;
        }
        if text.is_empty() {
            continue;
        }
        let change = if buffer.len() > MAX_LINE_BYTES {
            Err(format!("longer than {MAX_LINE_BYTES} bytes"))
        } else if !complete {
            Err("truncated (no line end)".to_string())
        } else {
            parse_change(text)
        };
        lines.push(Line { number, change });
    }
    let header = header.ok_or_else(|| JournalError::NotAJournal {
        path: path.to_path_buf(),
        message: "the file is empty".into(),
    })?;
    Ok(Read {
        path: path.to_path_buf(),
        header,
        lines,
    })
}

fn parse_header(path: &Path, text: &str) -> Result<Header, JournalError> {
    let not = |message: String| JournalError::NotAJournal {
        path: path.to_path_buf(),
        message,
    };
    let header: Header = serde_json::from_str(text).map_err(|error| not(error.to_string()))?;
    if header.journal != MAGIC {
        return Err(not(format!(
            "journal is {:?}, not {MAGIC:?}",
            header.journal
        )));
    }
    if header.version != VERSION {
        return Err(not(format!(
            "version {} is not {VERSION}, the one this regkit reads",
            header.version
        )));
    }
    Ok(header)
}

fn parse_change(text: &str) -> Result<(Change, Vec<u8>), String> {
    let change: Change =
        serde_json::from_str(text).map_err(|error| format!("not a journal entry: {error}"))?;
    let valid_digest = change
        .digest
        .strip_prefix("sha256:")
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()));
    if !valid_digest {
        return Err(format!("{:?} is not a sha256 digest", change.digest));
    }
    let body = change.verified_body()?;
    Ok((change, body))
}

/// The newest journal in `dir` (names start with the time, so the greatest name).
pub fn last(dir: &Path) -> Result<PathBuf, JournalError> {
    journals(dir)?.pop().ok_or_else(|| JournalError::NoJournal {
        dir: dir.to_path_buf(),
    })
}

/// The journals in `dir`, oldest first; a missing directory holds none.
pub fn journals(dir: &Path) -> Result<Vec<PathBuf>, JournalError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(JournalError::Io {
                action: "read",
                path: dir.to_path_buf(),
                source,
            });
        }
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "jsonl") && path.is_file())
        .collect();
    paths.sort();
    Ok(paths)
}

/// Removes the journals in `dir` last written more than `keep` ago; the paths removed.
pub fn prune(dir: &Path, keep: Duration) -> Result<Vec<PathBuf>, JournalError> {
    let now = SystemTime::now();
    let mut removed = Vec::new();
    for path in journals(dir)? {
        let old = fs::metadata(&path)
            .and_then(|meta| meta.modified())
            .ok()
            .and_then(|modified| now.duration_since(modified).ok())
            .is_some_and(|age| age > keep);
        if old {
            fs::remove_file(&path).map_err(|source| JournalError::Io {
                action: "remove",
                path: path.clone(),
                source,
            })?;
            removed.push(path);
        }
    }
    Ok(removed)
}

/// One journal as `regkit journal list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// The file.
    pub path: PathBuf,
    /// When the run started.
    pub time: String,
    /// `delete` or `cleanup`.
    pub command: String,
    /// The registries the run was given.
    pub registries: Vec<String>,
    /// Manifests deleted.
    pub manifest_deletes: usize,
    /// Tags untagged through tombstones.
    pub tombstone_untags: usize,
    /// Tags removed by a vendor API.
    pub vendor_untags: usize,
    /// Lines that do not parse or verify.
    pub refused: usize,
}

/// The summary of the journal at `path`.
pub fn summary(path: &Path) -> Result<Summary, JournalError> {
    let read = read(path)?;
    let mut summary = Summary {
        path: read.path,
        time: read.header.time,
        command: read.header.command,
        registries: read.header.registries,
        manifest_deletes: 0,
        tombstone_untags: 0,
        vendor_untags: 0,
        refused: 0,
    };
    for line in read.lines {
        *match line.change {
            Ok((change, _)) => match change.change {
                ChangeKind::ManifestDelete => &mut summary.manifest_deletes,
                ChangeKind::TombstoneUntag => &mut summary.tombstone_untags,
                ChangeKind::VendorUntag => &mut summary.vendor_untags,
            },
            Err(_) => &mut summary.refused,
        } += 1;
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::ManifestInfo;

    fn manifest(body: &str) -> Manifest {
        Manifest {
            info: ManifestInfo {
                digest: sha256_digest(body.as_bytes()),
                media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                size: body.len() as u64,
            },
            body: body.as_bytes().to_vec(),
        }
    }

    fn journal_in(dir: &Path) -> Journal {
        Journal::new(
            Location::Dir(dir.to_path_buf()),
            "cleanup",
            vec!["r.io".into()],
        )
    }

    #[test]
    fn nothing_recorded_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let journal = journal_in(&dir.path().join("j"));
        assert!(!journal.path().exists());
        assert_eq!(
            journals(&dir.path().join("j")).unwrap(),
            Vec::<PathBuf>::new()
        );
    }

    #[test]
    fn records_read_back_verified_with_private_modes() {
        let dir = tempfile::tempdir().unwrap();
        let journal = journal_in(&dir.path().join("j"));
        let one = manifest(r#"{"schemaVersion":2}"#);
        let change = Change::new("r.io", "app", Some("v1"), &one, ChangeKind::TombstoneUntag);
        journal.record(&change).unwrap();
        journal
            .record(&Change::new(
                "r.io",
                "app",
                None,
                &one,
                ChangeKind::ManifestDelete,
            ))
            .unwrap();
        assert_eq!(journal.changes(), 2);
        let read = read(journal.path()).unwrap();
        assert_eq!(read.header.command, "cleanup");
        assert_eq!(read.lines.len(), 2);
        let (first, body) = read.lines[0].change.as_ref().unwrap();
        assert_eq!(first, &change);
        assert_eq!(body, &one.body);
        assert_eq!(
            journal.bytes() as u64,
            fs::metadata(journal.path()).unwrap().len()
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(journal.path()), 0o600);
            assert_eq!(mode(&dir.path().join("j")), 0o700);
        }
        assert_eq!(last(&dir.path().join("j")).unwrap(), journal.path());
        let summary = summary(journal.path()).unwrap();
        assert_eq!(
            (
                summary.manifest_deletes,
                summary.tombstone_untags,
                summary.refused
            ),
            (1, 1, 0)
        );
    }

    #[test]
    fn an_explicit_file_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mine.jsonl");
        fs::write(&path, "keep me\n").unwrap();
        let journal = Journal::new(Location::File(path.clone()), "delete", vec![]);
        let change = Change::new(
            "r.io",
            "a",
            None,
            &manifest("{}"),
            ChangeKind::ManifestDelete,
        );
        let error = journal.record(&change).unwrap_err().to_string();
        assert!(
            error.starts_with("cannot create the undo journal"),
            "{error}"
        );
        assert_eq!(fs::read_to_string(&path).unwrap(), "keep me\n");
    }

    #[test]
    fn bad_lines_are_refused_one_by_one() {
        let dir = tempfile::tempdir().unwrap();
        let journal = journal_in(dir.path());
        let good = Change::new(
            "r.io",
            "app",
            Some("v1"),
            &manifest(r#"{"a":1}"#),
            ChangeKind::ManifestDelete,
        );
        journal.record(&good).unwrap();
        let mut edited = good.clone();
        edited.body = STANDARD.encode(br#"{"a":2}"#);
        let mut text = fs::read_to_string(journal.path()).unwrap();
        text.push_str(&serde_json::to_string(&edited).unwrap());
        text.push_str("\n{\"registry\":\"r.io\"\n");
        text.push_str(&serde_json::to_string(&good).unwrap()[..40]);
        fs::write(journal.path(), text).unwrap();
        let read = read(journal.path()).unwrap();
        let outcomes: Vec<(usize, Result<(), String>)> = read
            .lines
            .iter()
            .map(|line| {
                (
                    line.number,
                    line.change.as_ref().map(|_| ()).map_err(Clone::clone),
                )
            })
            .collect();
        assert_eq!(outcomes[0], (2, Ok(())));
        assert!(outcomes[1].1.as_ref().unwrap_err().contains("hashes to"));
        assert_eq!(outcomes[1].0, 3);
        assert!(
            outcomes[2]
                .1
                .as_ref()
                .unwrap_err()
                .starts_with("not a journal entry")
        );
        assert_eq!(outcomes[3], (5, Err("truncated (no line end)".into())));
    }

    #[test]
    fn a_file_that_is_not_a_journal_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.jsonl");
        fs::write(&path, "{\"summary\":{}}\n").unwrap();
        let error = read(&path).unwrap_err().to_string();
        assert!(
            error.contains("is not a regkit undo journal (line 1:"),
            "{error}"
        );
    }

    #[test]
    fn prune_keeps_recent_journals() {
        let dir = tempfile::tempdir().unwrap();
        let journal = journal_in(dir.path());
        journal
            .record(&Change::new(
                "r.io",
                "a",
                None,
                &manifest("{}"),
                ChangeKind::ManifestDelete,
            ))
            .unwrap();
        assert!(prune(dir.path(), DEFAULT_KEEP).unwrap().is_empty());
        assert!(journal.path().exists());
        let month_ago = SystemTime::now() - Duration::from_secs(31 * 86_400);
        File::options()
            .append(true)
            .open(journal.path())
            .unwrap()
            .set_modified(month_ago)
            .unwrap();
        assert_eq!(prune(dir.path(), DEFAULT_KEEP).unwrap().len(), 1);
        assert!(!journal.path().exists());
    }
}
