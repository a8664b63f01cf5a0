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
    let before = clock.moto.tags(REPOSITORY);
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
        ],
    ));
    assert_eq!(rows["old"]["result"], "planned");
    assert_eq!(rows["new"]["result"], "kept");
    assert_eq!(clock.moto.tags(REPOSITORY), before);
    let refused = regkit(&clock.moto, &["cleanup", &target(), "--older-than", "7d"]);
    assert_eq!(refused.status.code(), Some(2));
    assert_eq!(clock.moto.tags(REPOSITORY), before);
}

/// The ECR module does not list untagged images for the seam yet (sparing the children of tagged indexes
/// needs the index manifests, which it does not read): the sweep must say so and remove nothing.
#[test]
fn untagged_sweep_on_ecr_is_reported_and_removes_nothing_yet() {
    let clock = FakeClock::start();
    clock.moto.create_repository(REPOSITORY);
    clock.push("a", Some("old"), 90);
    clock.push("c", None, 90);
    clock.push("d", None, 80);
    let untagged = untagged_digests(&clock.moto);
    assert_eq!(untagged.len(), 2);
    let report = report_path(clock.dir.path());
    let output = regkit(
        &clock.moto,
        &[
            "--output",
            "json",
            "cleanup",
            &target(),
            "--untagged",
            "--older-than",
            "30d",
            "--yes",
            "--report",
            report.to_str().unwrap(),
        ],
    );
    let (rows, other) = json(&output);
    assert_eq!(rows["old"]["result"], "deleted");
    assert_eq!(rows.len(), 1, "{rows:?}");
    let note = other
        .iter()
        .find_map(|line| line.get("repository_note"))
        .expect("a repository note");
    assert_eq!(note["implementation"], "ecr");
    assert!(
        note["note"]
            .as_str()
            .unwrap()
            .contains("cannot list untagged manifests"),
        "{note}"
    );
    assert_eq!(untagged_digests(&clock.moto), untagged);
    let document: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(document["notes"][0]["implementation"], "ecr");
}
