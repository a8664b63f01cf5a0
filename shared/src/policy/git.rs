//! The references of a git repository, for `--keep-git DIR` (werf's keep policies): branch and tag names
//! as CI systems turn them into image tags, and the commits at their heads. Read with the `git` CLI
//! (`for-each-ref`), bounded in time; the matching itself is pure.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long reading a repository's references may take.
pub const GIT_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest tag a registry accepts.
const MAX_TAG: usize = 128;

/// GitLab's `CI_COMMIT_REF_SLUG` is at most 63 bytes.
const GITLAB_SLUG: usize = 63;

/// The shortest SHA prefix that names a commit.
const MIN_SHA: usize = 7;

/// Why the references could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GitError {
    /// `git` could not be run, or it refused the directory.
    #[error("--keep-git {dir}: {message}")]
    Read {
        /// The directory given.
        dir: String,
        /// What went wrong, in one line.
        message: String,
    },
}

/// The branches and tags of a repository, keyed by every tag name CI systems derive from them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GitRefs {
    /// Tag-shaped name → the reference it comes from (`feature/x`).
    names: HashMap<String, String>,
    /// Head commits (full SHA, lowercase), sorted, with the reference they head.
    heads: Vec<(String, String)>,
}

impl GitRefs {
    /// The references of the repository at `dir`: local branches, remote-tracking branches (a CI clone
    /// has mostly these) and tags, peeled to their commits.
    pub fn read(dir: &Path) -> Result<GitRefs, GitError> {
        let failed = |message: String| GitError::Read {
            dir: dir.display().to_string(),
            message,
        };
        if !dir.is_dir() {
            return Err(failed("not a directory".into()));
        }
        let listing = run_git(
            dir,
            &[
                "for-each-ref",
                "--format=%(objectname) %(*objectname) %(refname)",
                "refs/heads",
                "refs/remotes",
                "refs/tags",
            ],
        )
        .map_err(failed)?;
        Ok(GitRefs::parse(&listing))
    }

    /// Parses `for-each-ref` lines `<object> <peeled object or nothing> <refname>`.
    pub fn parse(listing: &str) -> GitRefs {
        let mut refs = GitRefs::default();
        for line in listing.lines() {
            let mut fields = line.splitn(3, ' ');
            let (Some(object), Some(peeled), Some(refname)) =
                (fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            let name = if let Some(name) = refname.strip_prefix("refs/heads/") {
                name
            } else if let Some(name) = refname.strip_prefix("refs/tags/") {
                name
            } else if let Some(rest) = refname.strip_prefix("refs/remotes/") {
                match rest.split_once('/') {
                    Some((_, "HEAD")) | None => continue,
                    Some((_, name)) => name,
                }
            } else {
                continue;
            };
            let commit = if peeled.is_empty() { object } else { peeled };
            refs.add(name, commit);
        }
        refs.heads.sort();
        refs.heads.dedup();
        refs
    }

    fn add(&mut self, name: &str, commit: &str) {
        for slug in [slug(name), gitlab_slug(name)] {
            if !slug.is_empty() {
                self.names.entry(slug).or_insert_with(|| name.to_string());
            }
        }
        self.heads
            .push((commit.to_ascii_lowercase(), name.to_string()));
    }

    /// The reference `tag` names: a branch or tag name as CI turns it into a tag, or a head commit (full or
    /// at least 7 hex digits). The answer says which, for the report.
    pub fn named_by(&self, tag: &str) -> Option<String> {
        if let Some(name) = self.names.get(tag) {
            return Some(format!("names the git reference {name}"));
        }
        if tag.len() < MIN_SHA || tag.len() > 40 || !tag.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let tag = tag.to_ascii_lowercase();
        let first = self
            .heads
            .partition_point(|(sha, _)| sha.as_str() < tag.as_str());
        self.heads
            .get(first)
            .filter(|(sha, _)| sha.starts_with(&tag))
            .map(|(_, name)| format!("is the head commit of the git reference {name}"))
    }

    /// The tag-shaped names of the references `tag` carries as a prefix or a suffix (`main-1a2b3c`,
    /// `build-7-main`; the separator is `-`, `.` or `_`), and its own name when it is one.
    pub fn carried_by<'t>(&'t self, tag: &'t str) -> impl Iterator<Item = &'t str> + 't {
        let separators = tag
            .char_indices()
            .filter(|(_, c)| matches!(c, '-' | '.' | '_'))
            .map(|(at, _)| at);
        let whole = std::iter::once(tag);
        let cuts = separators.flat_map(move |at| [&tag[..at], &tag[at + 1..]]);
        let mut seen: Vec<&str> = Vec::new();
        whole.chain(cuts).filter_map(move |part| {
            let (key, _) = self.names.get_key_value(part)?;
            if seen.contains(&key.as_str()) {
                return None;
            }
            seen.push(key);
            Some(key.as_str())
        })
    }
}

/// A reference name as a tag: lowercase, every character a tag cannot hold as `-`, 128 characters at most
/// (the docker metadata action, werf).
pub fn slug(name: &str) -> String {
    let mut slug: String = name
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '_' | '.' | '-') => c,
            _ => '-',
        })
        .collect();
    slug.truncate(MAX_TAG);
    slug
}

/// GitLab's `CI_COMMIT_REF_SLUG`: lowercase, everything but `a-z0-9` as `-`, 63 bytes, no `-` at either
/// end.
fn gitlab_slug(name: &str) -> String {
    let mut slug: String = name
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9') => c,
            _ => '-',
        })
        .collect();
    slug.truncate(GITLAB_SLUG);
    slug.trim_matches('-').to_string()
}

/// Runs `git -C dir ARGS` under [`GIT_TIMEOUT`] and returns its standard output, or one line saying why
/// not (git's own first error line).
fn run_git(dir: &Path, args: &[&str]) -> Result<String, String> {
    let mut child = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| format!("cannot run git: {error}"))?;
    let (Some(mut stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        let _ = child.kill();
        return Err("git's output was not captured".into());
    };
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        stdout.read_to_string(&mut text).map(|_| text)
    });
    let deadline = Instant::now() + GIT_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "git did not answer within {} s",
                    GIT_TIMEOUT.as_secs()
                ));
            }
            Err(error) => return Err(format!("cannot wait for git: {error}")),
        }
    };
    let output = reader
        .join()
        .map_err(|_| "cannot read git's output".to_string())?
        .map_err(|error| format!("cannot read git's output: {error}"))?;
    if !status.success() {
        let mut message = String::new();
        let _ = stderr.take(4096).read_to_string(&mut message);
        let line = message
            .lines()
            .find(|line| !line.trim().is_empty())
            .unwrap_or("git failed")
            .trim_start_matches("fatal: ")
            .to_string();
        return Err(line);
    }
    Ok(output)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LISTING: &str = "\
1111111111111111111111111111111111111111  refs/heads/main
2222222222222222222222222222222222222222  refs/remotes/origin/Feature/X_y
3333333333333333333333333333333333333333  refs/remotes/origin/HEAD
4444444444444444444444444444444444444444 5555555555555555555555555555555555555555 refs/tags/v1.2.0
";

    #[test]
    fn names_slugs_and_head_commits() {
        let refs = GitRefs::parse(LISTING);
        assert_eq!(
            refs.named_by("main").as_deref(),
            Some("names the git reference main")
        );
        // Docker-tag slug keeps `_`; GitLab's slug turns it into `-`.
        assert!(refs.named_by("feature-x_y").is_some());
        assert!(refs.named_by("feature-x-y").is_some());
        assert!(refs.named_by("v1.2.0").is_some());
        assert!(refs.named_by("HEAD").is_none() && refs.named_by("head").is_none());
        // An annotated tag is matched by the commit it points at, not the tag object.
        assert!(refs.named_by("5555555").is_some());
        assert!(refs.named_by("4444444").is_none());
        assert!(refs.named_by("111111").is_none(), "6 digits are too few");
        assert!(
            refs.named_by("1111111111111111111111111111111111111111")
                .is_some()
        );
        assert!(refs.named_by("2222222abc").is_none());
        assert!(
            refs.named_by("3333333").is_none(),
            "origin/HEAD is no reference"
        );
    }

    #[test]
    fn references_carried_as_prefix_or_suffix() {
        let refs = GitRefs::parse(LISTING);
        let carried = |tag| refs.carried_by(tag).collect::<Vec<_>>();
        assert_eq!(carried("main-1a2b3c4"), ["main"]);
        assert_eq!(carried("build.7.main"), ["main"]);
        assert_eq!(carried("feature-x-y-17"), ["feature-x-y"]);
        assert_eq!(carried("v1.2.0"), ["v1.2.0"]);
        assert!(carried("mainline-1").is_empty());
        assert!(carried("release-1").is_empty());
    }

    #[test]
    fn slugs_are_tag_shaped() {
        assert_eq!(slug("Feature/JIRA-12_fix"), "feature-jira-12_fix");
        assert_eq!(slug(&"a".repeat(300)).len(), 128);
        assert_eq!(gitlab_slug("/Feature/ü_x/"), "feature---x");
    }
}
