//! `regkit` with the `ecr` implementation against moto on loopback: 250 tags deleted in batches while their
//! sibling tags survive, whole images removed with their last tag, explicit digests, `failures[]` entries,
//! a missing repository, dry runs, listing and a credentials failure.

use std::io::Write;
use std::process::{Command, Stdio};

use regkit_e2e::bins;
use regkit_e2e::moto::{Moto, REGISTRY};
use serde_json::Value;

const REPOSITORY: &str = "team/app";

struct Run {
    code: i32,
    lines: Vec<Value>,
    stderr: String,
}

/// `regkit --output json ARGS` with moto's environment, an empty docker config and `stdin`.
fn regkit(moto: &Moto, args: &[&str], stdin: &str, remove: &[&str]) -> Run {
    let home = tempfile::tempdir().expect("home");
    let mut command = Command::new(bins::ours("regkit"));
    command
        .args(["--output", "json"])
        .args(args)
        .env_clear()
        .envs(moto.env())
        .env("HOME", home.path())
        .env("DOCKER_CONFIG", home.path().join("docker"))
        // moto serves no v2 manifests, which the undo journal reads before a vendor delete.
        .env("REGKIT_NO_JOURNAL", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for name in remove {
        command.env_remove(name);
    }
    let mut child = command.spawn().expect("spawn regkit");
    let _ = child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes());
    let output = child.wait_with_output().expect("wait regkit");
    let stdout = String::from_utf8_lossy(&output.stdout);
    Run {
        code: output.status.code().unwrap_or(-1),
        lines: stdout
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
            .collect(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn entries(run: &Run) -> Vec<&Value> {
    run.lines
        .iter()
        .filter(|line| line.get("status").is_some())
        .collect()
}

fn reference(tag: &str) -> String {
    format!("{REGISTRY}/{REPOSITORY}:{tag}")
}

#[test]
fn deleting_250_tags_keeps_their_siblings_and_removes_lone_images() {
    let moto = Moto::start();
    moto.create_repository(REPOSITORY);
    for i in 0..250 {
        let layer = format!("{i:x}");
        moto.put_image(REPOSITORY, &layer, Some(&format!("t{i}")));
        moto.put_image(REPOSITORY, &layer, Some(&format!("keep{i}")));
    }
    for i in 0..5 {
        moto.put_image(REPOSITORY, &format!("f0{i}"), Some(&format!("solo{i}")));
    }
    let before = moto.tags(REPOSITORY);
    assert_eq!(before.len(), 505);

    let mut input: Vec<String> = (0..250).map(|i| reference(&format!("t{i}"))).collect();
    input.extend((0..5).map(|i| reference(&format!("solo{i}"))));
    input.push(reference("never-pushed"));
    moto.start_recording();
    let run = regkit(&moto, &["delete", "--stdin"], &input.join("\n"), &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    // One listing to tell `untagged` from `deleted`, then 256 ids in batches of at most 100.
    let calls: Vec<(String, usize)> = moto.operations().into_iter().collect();
    assert_eq!(
        calls,
        [
            ("BatchDeleteImage".to_string(), 3),
            ("DescribeImages".to_string(), 1)
        ]
    );
    let entries = entries(&run);
    assert_eq!(entries.len(), 256);
    for (i, entry) in entries[..250].iter().enumerate() {
        assert_eq!(entry["reference"], reference(&format!("t{i}")));
        assert_eq!(entry["status"], "untagged", "{entry}");
        assert_eq!(entry["method"], "native");
        assert_eq!(entry["digest"], before[&format!("t{i}")].as_str());
    }
    for entry in &entries[250..255] {
        assert_eq!(entry["status"], "deleted", "{entry}");
        assert_eq!(entry["method"], "native");
    }
    assert_eq!(entries[255]["status"], "absent");
    let summary = &run.lines.last().unwrap()["summary"];
    assert_eq!(
        (
            summary["untagged"].as_u64(),
            summary["deleted"].as_u64(),
            summary["absent"].as_u64(),
            summary["failed"].as_u64()
        ),
        (Some(250), Some(5), Some(1), Some(0)),
        "{summary}"
    );

    let after = moto.tags(REPOSITORY);
    assert_eq!(after.len(), 250);
    for i in 0..250 {
        assert_eq!(
            after.get(&format!("keep{i}")),
            before.get(&format!("keep{i}")),
            "keep{i}"
        );
    }
}

#[test]
fn digests_failures_missing_repositories_and_dry_runs() {
    let moto = Moto::start();
    moto.create_repository(REPOSITORY);
    let shared = moto.put_image(REPOSITORY, "a1", Some("a"));
    moto.put_image(REPOSITORY, "a1", Some("b"));
    moto.put_image(REPOSITORY, "c1", Some("c"));

    // Dry run: planned for what exists, absent for the rest; nothing changes.
    let dry = regkit(
        &moto,
        &[
            "--dry-run",
            "delete",
            &reference("a"),
            &reference("zz"),
            &format!("{REGISTRY}/{REPOSITORY}@{shared}"),
        ],
        "",
        &[],
    );
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    let statuses: Vec<&str> = entries(&dry)
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["planned", "absent", "planned"]);
    assert_eq!(moto.tags(REPOSITORY).len(), 3);

    // Listing: every tag with its digest.
    let tags = regkit(
        &moto,
        &["tags", &format!("{REGISTRY}/{REPOSITORY}")],
        "",
        &[],
    );
    assert_eq!(tags.code, 0, "{}", tags.stderr);
    let listed: Vec<(&str, &str)> = tags
        .lines
        .iter()
        .map(|l| (l["tag"].as_str().unwrap(), l["digest"].as_str().unwrap()))
        .collect();
    assert_eq!(listed.len(), 3);
    assert_eq!(listed[0], ("a", shared.as_str()));

    // An explicit digest removes the image and both its tags; an unknown digest is a failures[] entry.
    let missing_digest = format!("sha256:{:064}", 7);
    let run = regkit(
        &moto,
        &[
            "delete",
            &format!("{REGISTRY}/{REPOSITORY}@{shared}"),
            &format!("{REGISTRY}/{REPOSITORY}@{missing_digest}"),
        ],
        "",
        &[],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let statuses: Vec<(&str, &str)> = entries(&run)
        .iter()
        .map(|e| {
            (
                e["status"].as_str().unwrap(),
                e["method"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    assert_eq!(statuses, [("deleted", "digest"), ("absent", "-")]);
    assert_eq!(moto.tags(REPOSITORY).keys().collect::<Vec<_>>(), ["c"]);

    // A repository that does not exist: every tag is absent, not an error.
    let gone = regkit(
        &moto,
        &["delete", &format!("{REGISTRY}/no/such:x")],
        "",
        &[],
    );
    assert_eq!(gone.code, 0, "{}", gone.stderr);
    assert_eq!(entries(&gone)[0]["status"], "absent");
}

#[test]
fn missing_credentials_are_an_auth_failure() {
    let moto = Moto::start();
    moto.create_repository(REPOSITORY);
    moto.put_image(REPOSITORY, "a1", Some("a"));
    let run = regkit(
        &moto,
        &["delete", &reference("a")],
        "",
        &["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"],
    );
    assert_eq!(run.code, 3, "{:?} {}", run.lines, run.stderr);
    let entry = entries(&run)[0];
    assert_eq!(entry["status"], "failed");
    let error = entry["error"].as_str().unwrap();
    assert!(error.contains("credentials"), "{error}");
    assert!(!error.contains('\n'));
    assert_eq!(moto.tags(REPOSITORY).len(), 1);
}
