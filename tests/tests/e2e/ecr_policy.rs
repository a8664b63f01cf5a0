//! `regkit cleanup` with the `ecr` implementation against moto on loopback. moto runs under libfaketime so
//! each image's `imagePushedAt` is the date the test sets before pushing it: the policy's ages come from
//! ECR's own push times, not from image configs (moto has no v2 data plane to read them from).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use regkit::dates::format_rfc3339;
use regkit_e2e::bins;
use regkit_e2e::moto::{Moto, REGISTRY};
use regkit_e2e::referrers as refs;
use serde_json::Value;
use tempfile::TempDir;

const REPOSITORY: &str = "team/app";
const DAY: i64 = 86_400;

/// moto under libfaketime, whose clock reads a file the test rewrites before each push.
struct FakeClock {
    moto: Moto,
    dir: TempDir,
}

impl FakeClock {
    fn start() -> FakeClock {
        // The wrapper binary proves the package is installed; the library it preloads is what we use.
        bins::tool("faketime", "faketime");
        let library = [
            "/usr/lib/x86_64-linux-gnu",
            "/usr/lib/aarch64-linux-gnu",
            "/usr/lib",
        ]
        .iter()
        .map(|dir| PathBuf::from(dir).join("faketime/libfaketimeMT.so.1"))
        .find(|path| path.is_file())
        .expect("libfaketimeMT.so.1 (Debian package faketime) is required by the ECR policy tests");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("faketime.txt");
        // An absolute time (no `@`) stands still, so a push lands on exactly the second the test set.
        std::fs::write(&file, "2024-01-01 00:00:00\n").unwrap();
        let moto = Moto::start_with_env(&[
            ("LD_PRELOAD", library.to_str().unwrap()),
            ("FAKETIME_TIMESTAMP_FILE", file.to_str().unwrap()),
            ("FAKETIME_NO_CACHE", "1"),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
            ("TZ", "UTC"),
        ]);
        FakeClock { moto, dir }
    }

    /// Sets moto's clock to `days` days before now; returns that time as RFC 3339.
    fn set_days_ago(&self, days: i64) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let date = format_rfc3339(now - days * DAY);
        let spec = format!("{}\n", date.trim_end_matches('Z').replace('T', " "));
        std::fs::write(self.dir.path().join("faketime.txt"), spec).unwrap();
        date
    }

    /// Pushes an image with moto's clock at `days` ago; returns its push time.
    fn push(&self, layer: &str, tag: Option<&str>, days: i64) -> String {
        let date = self.set_days_ago(days);
        self.moto.put_image(REPOSITORY, layer, tag);
        date
    }
}

/// `regkit ARGS` with moto's environment and an empty docker config; stdin is not a terminal.
fn regkit(moto: &Moto, args: &[&str]) -> Output {
    let home = tempfile::tempdir().unwrap();
    Command::new(bins::ours("regkit"))
        .args(args)
        .env_clear()
        .envs(moto.env())
        .env("HOME", home.path())
        // moto serves no v2 manifests, which the undo journal reads before a vendor delete.
        .env("REGKIT_NO_JOURNAL", "1")
        .env("DOCKER_CONFIG", home.path().join("docker"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

/// Rows by tag (or digest for untagged ones), and the other JSON lines.
fn json(output: &Output) -> (BTreeMap<String, Value>, Vec<Value>) {
    assert!(
        output.status.success(),
        "exit {:?}: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
    let mut rows = BTreeMap::new();
    let mut other = Vec::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let value: Value = serde_json::from_str(line).unwrap();
        match value["tag"].as_str().or(value["digest"].as_str()) {
            Some(key) if value.get("action").is_some() => {
                rows.insert(key.to_string(), value);
            }
            _ => other.push(value),
        }
    }
    (rows, other)
}

fn target() -> String {
    format!("{REGISTRY}/{REPOSITORY}")
}

/// Digests of the images without tags (filtered here: moto ignores DescribeImages' `tagStatus` filter).
fn untagged_digests(moto: &Moto) -> Vec<String> {
    let answer = moto.ecr(
        "DescribeImages",
        &serde_json::json!({"repositoryName": REPOSITORY}),
    );
    let mut digests: Vec<String> = answer["imageDetails"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|image| image["imageTags"].as_array().is_none_or(Vec::is_empty))
        .map(|image| image["imageDigest"].as_str().unwrap().to_string())
        .collect();
    digests.sort();
    digests
}

fn report_path(dir: &Path) -> PathBuf {
    dir.join("report.json")
}

#[test]
fn keep_last_and_older_than_follow_image_pushed_at() {
    let clock = FakeClock::start();
    clock.moto.create_repository(REPOSITORY);
    let t1 = clock.push("1", Some("t1"), 100);
    clock.push("2", Some("t2"), 60);
    clock.push("3", Some("t3"), 40);
    clock.push("4", Some("t4"), 10);
    clock.push("5", Some("t5"), 1);
    // `pin` is pushed later onto t1's image: ECR keeps the image's first push time.
    clock.push("1", Some("pin"), 5);
    let before = clock.moto.tags(REPOSITORY);
    assert_eq!(before.len(), 6);
    let output = regkit(
        &clock.moto,
        &[
            "--output",
            "json",
            "cleanup",
            &target(),
            "--match",
            "^t",
            "--keep-last",
            "2",
            "--older-than",
            "30d",
            "--yes",
        ],
    );
    let (rows, _) = json(&output);
    let after = clock.moto.tags(REPOSITORY);
    let mut expected = before.clone();
    for tag in ["t1", "t2", "t3"] {
        expected.remove(tag);
    }
    assert_eq!(after, expected);
    assert_eq!(after["pin"], before["t1"], "the kept tag keeps its image");
    assert_eq!(rows["t1"]["created"], t1.as_str());
    assert_eq!(rows["t1"]["date_source"], "vendor");
    assert_eq!(rows["t1"]["result"], "untagged");
    assert_eq!(rows["t2"]["result"], "deleted");
    assert_eq!(rows["t2"]["method"], "native");
    assert_eq!(rows["t4"]["rule"], "keep-last");
    assert_eq!(rows["t5"]["rule"], "keep-last");
    assert_eq!(rows["pin"]["rule"], "not-matched");
    assert!(
        rows["t3"]["reason"]
            .as_str()
            .unwrap()
            .starts_with("40d old, older than 30d"),
        "{}",
        rows["t3"]["reason"]
    );
}

#[test]
fn dry_run_and_refusal_change_nothing_on_ecr() {
    let clock = FakeClock::start();
    clock.moto.create_repository(REPOSITORY);
    clock.push("a", Some("old"), 90);
    clock.push("b", Some("new"), 1);
    let loose = clock.push_untagged("c", 90);
    let multi = clock.push_index("1", Some("multi"), 1);
    let before = clock.moto.tags(REPOSITORY);
    let untagged = untagged_digests(&clock.moto);
    let (rows, _) = json(&regkit(
        &clock.moto,
        &[
            "--output",
            "json",
            "--dry-run",
            "cleanup",
            &target(),
            "--older-than",
            "7d",
            "--untagged",
        ],
    ));
    assert_eq!(rows["old"]["result"], "planned");
    assert_eq!(rows["new"]["result"], "kept");
    assert_eq!(rows[loose.as_str()]["result"], "planned");
    assert_eq!(rows[loose.as_str()]["method"], "digest");
    assert!(!rows.contains_key(&multi.children[0]));
    assert_eq!(rows.len(), 4, "{:?}", rows.keys());
    assert_eq!(clock.moto.tags(REPOSITORY), before);
    assert_eq!(untagged_digests(&clock.moto), untagged);
    let refused = regkit(&clock.moto, &["cleanup", &target(), "--older-than", "7d"]);
    assert_eq!(refused.status.code(), Some(2));
    assert_eq!(clock.moto.tags(REPOSITORY), before);
}

/// Runs a cleanup of [`target`] with `args`, JSON on stdout and a report file; returns the rows by tag
/// (or digest), the other stdout lines, the report document and the ECR calls moto received.
fn recorded_cleanup(
    clock: &FakeClock,
    args: &[&str],
) -> (
    BTreeMap<String, Value>,
    Vec<Value>,
    Value,
    BTreeMap<String, usize>,
) {
    let report = report_path(clock.dir.path());
    let _ = std::fs::remove_file(&report);
    let target = target();
    let mut all = vec!["--output", "json", "cleanup", &target];
    all.extend(args);
    all.extend(["--report", report.to_str().unwrap()]);
    clock.moto.start_recording();
    let output = regkit(&clock.moto, &all);
    let calls = clock.moto.operations();
    let (rows, other) = json(&output);
    let document: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    (rows, other, document, calls)
}

fn calls(expected: &[(&str, usize)]) -> BTreeMap<String, usize> {
    expected
        .iter()
        .map(|(operation, n)| (operation.to_string(), *n))
        .collect()
}

/// Images of a multi-arch push: the children go by digest only, untagged; the index carries the tag.
struct MultiArch {
    index: String,
    children: Vec<String>,
}

impl FakeClock {
    /// Pushes an untagged image with moto's clock at `days` ago; returns its digest.
    fn push_untagged(&self, layer: &str, days: i64) -> String {
        self.set_days_ago(days);
        self.moto.put_image(REPOSITORY, layer, None)
    }

    fn push_index(&self, name: &str, tag: Option<&str>, days: i64) -> MultiArch {
        let children: Vec<String> = (0..2)
            .map(|arch| self.push_untagged(&format!("f{name}{arch}"), days))
            .collect();
        self.set_days_ago(days);
        let refs: Vec<&str> = children.iter().map(String::as_str).collect();
        let index = self.moto.put_index(REPOSITORY, &refs, tag);
        MultiArch { index, children }
    }
}

#[test]
fn untagged_sweep_spares_index_children_and_respects_older_than() {
    let clock = FakeClock::start();
    clock.moto.create_repository(REPOSITORY);
    clock.push("a", Some("old"), 90);
    let c = clock.push_untagged("c", 90);
    let d = clock.push_untagged("d", 80);
    let e = clock.push_untagged("e", 1);
    // A tagged multi-arch image pushed long ago: its untagged children are as old as the others.
    let multi = clock.push_index("1", Some("multi"), 90);
    // The tag moved on from this index: it goes, and its children wait for the next run (ECR refuses to
    // delete an image an index still references).
    let stale = clock.push_index("2", None, 90);
    let before = clock.moto.tags(REPOSITORY);
    let untagged_before = untagged_digests(&clock.moto);
    assert_eq!(
        untagged_before.len(),
        8,
        "c, d, e, the stale index and 4 children"
    );

    let (rows, _, document, made) = recorded_cleanup(
        &clock,
        &[
            "--untagged",
            "--older-than",
            "30d",
            "--match",
            "^old$",
            "--yes",
        ],
    );
    // One listing serves the plan and the delete; one BatchGetImage reads both indexes, one reads the
    // untagged images for their subject (none is a referrer).
    assert_eq!(
        made,
        calls(&[
            ("BatchDeleteImage", 1),
            ("BatchGetImage", 2),
            ("DescribeImages", 1)
        ])
    );
    assert_eq!(rows["old"]["result"], "deleted");
    for digest in [&c, &d, &stale.index] {
        let row = &rows[digest.as_str()];
        assert_eq!(row["action"], "delete", "{row}");
        assert_eq!(row["rule"], "untagged", "{row}");
        assert_eq!(row["result"], "deleted", "{row}");
        assert_eq!(row["method"], "digest", "{row}");
        assert_eq!(row["date_source"], "vendor", "{row}");
        assert!(row["tag"].is_null(), "{row}");
    }
    assert!(
        rows[c.as_str()]["reason"]
            .as_str()
            .unwrap()
            .starts_with("no tag points at it, older than 30d"),
        "{}",
        rows[c.as_str()]["reason"]
    );
    assert_eq!(rows[e.as_str()]["action"], "keep");
    assert_eq!(rows[e.as_str()]["rule"], "too-new");
    assert_eq!(rows[e.as_str()]["result"], "kept");
    for child in multi.children.iter().chain(&stale.children) {
        assert!(
            !rows.contains_key(child),
            "an index child is never a row: {child}"
        );
    }
    assert_eq!(rows["multi"]["result"], "kept");
    assert_eq!(rows.len(), 6, "{:?}", rows.keys());

    let mut expected_tags = before.clone();
    expected_tags.remove("old");
    assert_eq!(clock.moto.tags(REPOSITORY), expected_tags);
    let mut left: Vec<String> = multi
        .children
        .iter()
        .chain(&stale.children)
        .cloned()
        .chain([e.clone()])
        .collect();
    left.sort();
    assert_eq!(untagged_digests(&clock.moto), left);

    let reported: Vec<&Value> = document["tags"].as_array().unwrap().iter().collect();
    assert_eq!(reported.len(), 6);
    let report_row = reported
        .iter()
        .find(|row| row["digest"] == d.as_str() && row["tag"].is_null())
        .expect("the untagged image in the report");
    assert_eq!(report_row["result"], "deleted");
    assert_eq!(report_row["rule"], "untagged");
    assert_eq!(document["summary"]["deleted"], 4);
    assert_eq!(document["summary"]["kept"], 2);

    // The stale index is gone, so its children are plain untagged images now.
    let (rows, _, _, made) = recorded_cleanup(
        &clock,
        &[
            "--untagged",
            "--older-than",
            "30d",
            "--exclude",
            "^multi$",
            "--yes",
        ],
    );
    for child in &stale.children {
        assert_eq!(rows[child.as_str()]["result"], "deleted", "{child}");
    }
    assert_eq!(made["DescribeImages"], 1);
    let mut left: Vec<String> = multi.children.iter().cloned().chain([e]).collect();
    left.sort();
    assert_eq!(untagged_digests(&clock.moto), left);
    assert_eq!(clock.moto.tags(REPOSITORY), expected_tags);
}

/// A cleanup lists the repository once: the delete reuses the plan's listing.
#[test]
fn a_cleanup_lists_once_and_deletes_in_batches_of_100() {
    let clock = FakeClock::start();
    clock.moto.create_repository(REPOSITORY);
    for i in 0..250 {
        let layer = format!("{i:x}");
        clock.push(&layer, Some(&format!("t{i}")), 40);
        if i % 2 == 0 {
            clock.push(&layer, Some(&format!("keep{i}")), 40);
        }
    }
    let (rows, _, document, made) =
        recorded_cleanup(&clock, &["--match", "^t", "--older-than", "30d", "--yes"]);
    assert_eq!(
        made,
        calls(&[("BatchDeleteImage", 3), ("DescribeImages", 1)])
    );
    for i in 0..250 {
        let row = &rows[&format!("t{i}")];
        let expected = if i % 2 == 0 { "untagged" } else { "deleted" };
        assert_eq!(row["result"], expected, "{row}");
        assert_eq!(row["method"], "native", "{row}");
    }
    assert_eq!(document["summary"]["untagged"], 125);
    assert_eq!(document["summary"]["deleted"], 125);
    let left = clock.moto.tags(REPOSITORY);
    assert_eq!(left.len(), 125);
    assert!(left.keys().all(|tag| tag.starts_with("keep")));
}

/// The JSON lines of a multi-repository run: result by (repository path, tag), repository notes, summary.
type Lines = (BTreeMap<(String, String), String>, Vec<Value>, Value);

fn lines_by_repository(output: &Output) -> Lines {
    assert!(
        output.status.success(),
        "exit {:?}: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
    let mut results = BTreeMap::new();
    let mut notes = Vec::new();
    let mut summary = Value::Null;
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let value: Value = serde_json::from_str(line).unwrap();
        if let Some(found) = value.get("summary") {
            summary = found.clone();
        } else if let Some(note) = value.get("repository_note") {
            notes.push(note.clone());
        } else {
            let repository = value["repository"].as_str().unwrap();
            let path = repository
                .strip_prefix(&format!("{REGISTRY}/"))
                .unwrap_or_else(|| panic!("a row of another registry: {value}"));
            results.insert(
                (path.to_string(), value["tag"].as_str().unwrap().to_string()),
                value["result"].as_str().unwrap().to_string(),
            );
        }
    }
    (results, notes, summary)
}

/// ECR has no `_catalog`: `REGISTRY/PREFIX/*` comes from one DescribeRepositories, filtered on the prefix
/// with its slash as the catalog path filters (`teams/d` is not under `team/`), and a prefix that matches
/// nothing is the same "no repository matches" note.
#[test]
fn prefix_pattern_is_expanded_from_describe_repositories() {
    let clock = FakeClock::start();
    let all = ["team/a", "team/b", "other/c", "teams/d"];
    for (i, repository) in all.iter().enumerate() {
        clock.moto.create_repository(repository);
        clock.set_days_ago(10);
        clock
            .moto
            .put_image(repository, &format!("{i}1"), Some("old"));
        clock.set_days_ago(1);
        clock
            .moto
            .put_image(repository, &format!("{i}2"), Some("new"));
    }
    let before: BTreeMap<&str, _> = all.iter().map(|r| (*r, clock.moto.tags(r))).collect();

    clock.moto.start_recording();
    let output = regkit(
        &clock.moto,
        &[
            "--output",
            "json",
            "cleanup",
            &format!("{REGISTRY}/team/*"),
            "--keep-last",
            "1",
            "--yes",
        ],
    );
    let made = clock.moto.operations();
    let (results, notes, summary) = lines_by_repository(&output);
    let expected: BTreeMap<(String, String), String> = [
        ("team/a", "new", "kept"),
        ("team/a", "old", "deleted"),
        ("team/b", "new", "kept"),
        ("team/b", "old", "deleted"),
    ]
    .iter()
    .map(|(path, tag, result)| ((path.to_string(), tag.to_string()), result.to_string()))
    .collect();
    assert_eq!(results, expected);
    assert!(notes.is_empty(), "{notes:?}");
    assert_eq!(summary["repositories"], 2, "{summary}");
    assert_eq!(
        made,
        calls(&[
            ("BatchDeleteImage", 2),
            ("DescribeImages", 2),
            ("DescribeRepositories", 1)
        ])
    );
    for repository in all {
        let mut expected = before[repository].clone();
        if repository.starts_with("team/") {
            expected.remove("old");
        }
        assert_eq!(clock.moto.tags(repository), expected, "{repository}");
    }

    let left: BTreeMap<&str, _> = all.iter().map(|r| (*r, clock.moto.tags(r))).collect();
    let output = regkit(
        &clock.moto,
        &[
            "--output",
            "json",
            "cleanup",
            &format!("{REGISTRY}/nothing/*"),
            "--keep-last",
            "1",
            "--yes",
        ],
    );
    let (results, notes, summary) = lines_by_repository(&output);
    assert!(results.is_empty(), "{results:?}");
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert_eq!(notes[0]["note"], "no repository matches");
    assert_eq!(notes[0]["implementation"], "ecr");
    assert_eq!(
        notes[0]["repository"],
        format!("{REGISTRY}/nothing/*").as_str()
    );
    assert_eq!(summary["repositories"], 0, "{summary}");
    for repository in all {
        assert_eq!(
            clock.moto.tags(repository),
            left[repository],
            "{repository}"
        );
    }
}

/// `--untagged` reads the untagged images' manifests with `BatchGetImage` (one call for up to 100): a
/// signature of the kept `v1`, and a signature of that signature, stay however old; an attestation of an
/// untagged image that goes follows it; a referrer whose subject ECR no longer lists is an orphan (told by
/// the listing, no request), kept until `--orphans`.
#[test]
fn untagged_referrers_follow_their_subject_and_orphans_wait_for_orphans() {
    let clock = FakeClock::start();
    let moto = &clock.moto;
    moto.create_repository(REPOSITORY);
    clock.set_days_ago(90);
    let image = moto.put_image(REPOSITORY, "a", Some("v1"));
    let stale = moto.put_image(REPOSITORY, "b", None);
    let plain = moto.put_image(REPOSITORY, "c", None);
    let fixture = refs::UntaggedReferrers::store(image, stale, plain, |body| {
        moto.put_manifest(REPOSITORY, body, refs::OCI_MANIFEST, None)
    });
    let policy = ["--untagged", "--older-than", "30d", "--keep-last", "5"];

    let (plan, _, _, calls) = recorded_cleanup(&clock, &[&policy[..], &["--dry-run"]].concat());
    fixture.assert_planned(&plan);
    assert_eq!(calls.get("BatchGetImage"), Some(&1), "{calls:?}");

    let (swept, _, _, _) = recorded_cleanup(&clock, &[&policy[..], &["--yes"]].concat());
    assert_eq!(
        swept[&fixture.att]["result"], "deleted",
        "{}",
        swept[&fixture.att]
    );
    let left = |expected: &[&String]| {
        let mut expected: Vec<String> = expected.iter().map(|d| d.to_string()).collect();
        expected.sort();
        assert_eq!(untagged_digests(moto), expected);
    };
    left(&[&fixture.sig, &fixture.sig_of_sig, &fixture.orphan]);

    let (orphans, _, _, _) =
        recorded_cleanup(&clock, &[&policy[..], &["--yes", "--orphans"]].concat());
    assert_eq!(
        orphans[&fixture.orphan]["result"], "deleted",
        "{}",
        orphans[&fixture.orphan]
    );
    left(&[&fixture.sig, &fixture.sig_of_sig]);
    assert_eq!(
        moto.tags(REPOSITORY),
        BTreeMap::from([("v1".to_owned(), fixture.image.clone())])
    );
}
