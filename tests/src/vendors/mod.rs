//! Stateful test servers for vendor REST APIs that have no local emulator (Harbor, Quay, Nexus,
//! Artifactory), each written from the vendor's published description, and what their tests share.

pub mod acr;
pub mod artifactory;
pub mod artifactregistry;
pub mod dockerhub;
pub mod entra;
pub mod github;
pub mod gitlab;
pub mod google;
pub mod harbor;
pub mod kubernetes;
pub mod nexus;
pub mod quay;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::Value;

use crate::apiserver::Declared;
use crate::bins;

/// A finished `regkit` run.
#[derive(Debug)]
pub struct Run {
    /// The exit code.
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    /// The JSON Lines of standard output that are per-tag entries (they have a `status`).
    pub fn entries(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|line| line.get("status").is_some())
            .collect()
    }

    /// The rows of a `regkit cleanup` run's JSON Lines (those with an `action`), by tag, or by digest for
    /// untagged manifests.
    pub fn rows(&self) -> BTreeMap<String, Value> {
        self.stdout
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|row| row.get("action").is_some())
            .map(|row| {
                let key = row["tag"].as_str().or(row["digest"].as_str()).unwrap();
                (key.to_owned(), row.clone())
            })
            .collect()
    }
}

/// A stand-in's switch for a listing that never ends: once on, every page says more follow, through the
/// cursor of an earlier page or as an earlier page again, as a server in a loop does. Replies stay within
/// the vendor's description.
#[derive(Debug, Clone, Default)]
pub struct Forever(Arc<AtomicBool>);

impl Forever {
    /// Turns it on.
    pub fn on(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether it is on.
    pub fn is_on(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// The policy under which every tag of a repository goes.
pub const DELETE_EVERY_TAG: [&str; 3] = ["--match", ".", "--yes"];

/// Checks a `regkit tags` and a `regkit cleanup` ([`DELETE_EVERY_TAG`]) of a repository against a
/// stand-in whose listing never ends: both exit 1 with one line holding `names` (how the error names the
/// repository: `host/path`, or the path where the API is named instead of the host) and `problem`, the
/// cleanup plans nothing, and the server saw no DELETE.
pub fn assert_listing_refused(
    tags: &Run,
    cleanup: &Run,
    deletes: &[(String, u16)],
    names: &str,
    problem: &str,
) {
    for run in [tags, cleanup] {
        assert_eq!(run.code, 1, "{}\n{}", run.stderr, run.stdout);
        let line = run
            .stderr
            .lines()
            .find(|line| line.contains("does not end"))
            .unwrap_or_else(|| panic!("no listing error: {}", run.stderr));
        assert!(line.contains(names), "{line}");
        assert!(line.contains(problem), "{line}");
        assert!(line.contains("refusing a partial listing"), "{line}");
    }
    assert!(tags.stdout.is_empty(), "{}", tags.stdout);
    // No plan at all: not one tag of a partial listing was judged.
    assert!(cleanup.rows().is_empty(), "{}", cleanup.stdout);
    assert!(deletes.is_empty(), "{deletes:?}");
}

/// The policy that selects `amd64`, the tagged child of the kept multi-arch index `multi`, and `lonely`.
pub const INDEX_CHILD_POLICY: [&str; 3] = ["--match", "^(amd64|lonely)$", "--yes"];

/// Checks a cleanup run of [`INDEX_CHILD_POLICY`]: the index's child is kept, `lonely` is deleted.
pub fn assert_index_child_kept(swept: &Run) {
    assert_eq!(swept.code, 0, "{}\n{}", swept.stderr, swept.stdout);
    let rows = swept.rows();
    assert_eq!(rows["amd64"]["action"], "keep", "{}", rows["amd64"]);
    assert_eq!(rows["amd64"]["rule"], "in-kept-index");
    assert_eq!(rows["lonely"]["result"], "deleted");
}

/// Runs `regkit ARGS` with a clean environment, an empty docker config in `config` (or the one there)
/// and JSON output, without an undo journal: most vendor doubles serve no v2 manifests, which the journal
/// reads before a vendor delete.
pub fn regkit(config: &Path, args: &[&str]) -> Run {
    regkit_with(config, args, &[("REGKIT_NO_JOURNAL", "1")])
}

/// [`regkit`] with `env` instead of turning the journal off; it goes to `config/.local/state` by default.
pub fn regkit_with(config: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    if !config.join("config.json").exists() {
        std::fs::write(config.join("config.json"), "{}").expect("write docker config");
    }
    let args = [&["--output", "json"], args].concat();
    let output = bins::regkit_with(config, &args, "", env);
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A digest-shaped name for fake manifest `n` (the vendor APIs under test never hash content).
pub fn digest(n: usize) -> String {
    format!("sha256:{n:064x}")
}

/// For vendors without a machine-readable description: every declared route must be one of the
/// `documented` `(method, path template, doc reference)` operations, with `{}` for any path parameter.
pub fn assert_documented(declared: &[Declared], documented: &[(&str, &str, &str)]) {
    let normalise = |template: &str| -> String {
        template
            .trim_end_matches('/')
            .split('/')
            .map(|segment| {
                if segment.starts_with('{') {
                    "{}"
                } else {
                    segment
                }
            })
            .collect::<Vec<_>>()
            .join("/")
    };
    let missing: Vec<String> = declared
        .iter()
        .filter(|route| {
            !documented.iter().any(|(method, path, _)| {
                *method == route.method && normalise(path) == normalise(route.template)
            })
        })
        .map(|route| format!("{} {}", route.method, route.template))
        .collect();
    assert!(
        missing.is_empty(),
        "routes not in the documented table: {missing:?}"
    );
}
