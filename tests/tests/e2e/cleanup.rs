//! `regkit` against a real distribution registry on loopback: tag-safe deletion, listing, auth, exit codes.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Output, Stdio};

use base64::Engine;
use regkit_e2e::bins::{self, regkit_with as regkit};
use regkit_e2e::images::{self, Auth, Format, Pusher};
use regkit_e2e::registry::{Options, Registry};
use regkit_e2e::tokenserver::{TokenServer, User};
use serde_json::Value;
use tempfile::TempDir;

/// A docker config dir: empty, or with an `auths` entry for one registry.
fn docker_config(auth: Option<(&str, &str, &str)>) -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    let config = match auth {
        None => serde_json::json!({}),
        Some((host, user, password)) => {
            let encoded =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            serde_json::json!({"auths": {host: {"auth": encoded}}})
        }
    };
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    dir
}

/// A manifest's bytes from a registry without auth.
fn manifest_body(url: &str, repo: &str, digest: &str) -> Vec<u8> {
    let mut response = ureq::get(format!("{url}/v2/{repo}/manifests/{digest}"))
        .header("accept", images::ACCEPT_ALL)
        .call()
        .unwrap();
    response.body_mut().read_to_vec().unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

/// The JSON Lines report: the per-tag objects and the summary.
fn json_report(output: &Output) -> (Vec<Value>, Value) {
    let mut lines: Vec<Value> = stdout(output)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let summary = lines.pop().expect("a summary line")["summary"].clone();
    assert!(
        summary.is_object(),
        "last line is the summary: {}",
        stdout(output)
    );
    (lines, summary)
}

fn status_of(entries: &[Value]) -> BTreeMap<String, String> {
    entries
        .iter()
        .map(|entry| {
            let key = entry["tag"]
                .as_str()
                .or(entry["digest"].as_str())
                .unwrap()
                .to_string();
            (key, entry["status"].as_str().unwrap().to_string())
        })
        .collect()
}

/// `before` minus `removed`: what must remain, tag for tag and digest for digest.
fn without(before: &BTreeMap<String, String>, removed: &[&str]) -> BTreeMap<String, String> {
    let mut expected = before.clone();
    for tag in removed {
        assert!(expected.remove(*tag).is_some(), "{tag} was set up");
    }
    expected
}

fn assert_exit(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        stdout(output),
        stderr(output)
    );
}

#[test]
fn deleting_one_tag_keeps_its_siblings_and_reports_json_lines() {
    let registry = Registry::start();
    let config = docker_config(None);
    let url = registry.url();
    let shared = images::push(&url, "team/app", &["v1", "v1-alias", "stable"], &Auth::None);
    images::push_distinct(&url, "team/app", &["v2", "v3"], &Auth::None);
    let before = images::tag_digests(&url, "team/app", &Auth::None);

    let reference = format!("{}/team/app:v1", registry.host());
    let output = regkit(
        config.path(),
        &["--output", "json", "delete", &reference],
        "",
        &[],
    );
    assert_exit(&output, 0);
    let (entries, summary) = json_report(&output);
    assert_eq!(
        entries,
        vec![serde_json::json!({
            "reference": reference,
            "repository": format!("{}/team/app", registry.host()),
            "tag": "v1",
            "digest": shared,
            "status": "untagged",
            "method": "tombstone",
            "error": null,
        })]
    );
    assert_eq!(
        summary,
        serde_json::json!({"total": 1, "deleted": 0, "untagged": 1, "absent": 0, "planned": 0, "failed": 0})
    );
    let after = images::tag_digests(&url, "team/app", &Auth::None);
    assert_eq!(after, without(&before, &["v1"]));
    assert_eq!(after["v1-alias"], shared);
    assert_eq!(after["stable"], shared);
    // Every tombstone was deleted again: only the original manifest answers.
    let listed = regkit(
        config.path(),
        &["tags", &format!("{}/team/app", registry.host())],
        "",
        &[],
    );
    assert_exit(&listed, 0);
    assert_eq!(stdout(&listed), "stable\nv1-alias\nv2\nv3\n");
}

#[test]
fn deleting_every_tag_of_a_digest_removes_the_manifest_and_repeats_as_absent() {
    let registry = Registry::start();
    let config = docker_config(None);
    let url = registry.url();
    let digest = images::push(&url, "app", &["a", "b"], &Auth::None);
    images::push(&url, "app", &["keep"], &Auth::None);
    let before = images::tag_digests(&url, "app", &Auth::None);
    let refs: Vec<String> = ["a", "b"]
        .iter()
        .map(|tag| format!("{}/app:{tag}", registry.host()))
        .collect();
    let args = |extra: &[&str]| -> Vec<String> {
        let mut all: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        all.extend(refs.iter().cloned());
        all
    };
    let first_args = args(&["--output", "json", "delete"]);
    let first = regkit(
        config.path(),
        &first_args.iter().map(String::as_str).collect::<Vec<_>>(),
        "",
        &[],
    );
    assert_exit(&first, 0);
    let (entries, _) = json_report(&first);
    assert_eq!(
        status_of(&entries),
        BTreeMap::from([
            ("a".into(), "deleted".into()),
            ("b".into(), "deleted".into())
        ])
    );
    assert!(entries.iter().all(|entry| entry["method"] == "digest"));
    assert_eq!(
        Pusher::new(&url, &Auth::None).head_manifest("app", &digest),
        None,
        "the manifest is gone"
    );
    assert_eq!(
        images::tag_digests(&url, "app", &Auth::None),
        without(&before, &["a", "b"])
    );

    let again = regkit(
        config.path(),
        &first_args.iter().map(String::as_str).collect::<Vec<_>>(),
        "",
        &[],
    );
    assert_exit(&again, 0);
    let (entries, summary) = json_report(&again);
    assert_eq!(
        status_of(&entries),
        BTreeMap::from([("a".into(), "absent".into()), ("b".into(), "absent".into())])
    );
    assert_eq!(summary["absent"], 2);
}

#[test]
fn a_digest_reference_removes_that_manifest_and_its_tags_only() {
    let registry = Registry::start();
    let config = docker_config(None);
    let url = registry.url();
    let digest = images::push(&url, "a/b/c", &["x", "y"], &Auth::None);
    images::push_distinct(&url, "a/b/c", &["z"], &Auth::None);
    let before = images::tag_digests(&url, "a/b/c", &Auth::None);
    let reference = format!("{}/a/b/c@{digest}", registry.host());
    let output = regkit(config.path(), &["delete", &reference], "", &[]);
    assert_exit(&output, 0);
    assert!(
        stdout(&output).contains(&format!("deleted  digest  {reference}")),
        "{}",
        stdout(&output)
    );
    assert_eq!(
        images::tag_digests(&url, "a/b/c", &Auth::None),
        without(&before, &["x", "y"])
    );
}

#[test]
fn docker_schema2_manifests_and_indexes_are_untagged_safely() {
    let registry = Registry::start();
    let config = docker_config(None);
    let url = registry.url();
    images::push_as(
        &url,
        "formats",
        &["docker", "docker-alias"],
        &Auth::None,
        Format::Docker,
    );
    let oci_index = images::push_index(&url, "formats", "oci-index", &Auth::None, Format::Oci);
    let docker_list =
        images::push_index(&url, "formats", "docker-list", &Auth::None, Format::Docker);
    let pusher = Pusher::new(&url, &Auth::None);
    for (index, tag) in [
        (&oci_index, "oci-index-alias"),
        (&docker_list, "docker-list-alias"),
    ] {
        let media_type = if tag.starts_with("oci") {
            Format::Oci.index_type()
        } else {
            Format::Docker.index_type()
        };
        let body = manifest_body(&url, "formats", &index.digest);
        pusher.put_manifest("formats", tag, media_type, &body);
    }
    let before = images::tag_digests(&url, "formats", &Auth::None);
    assert_eq!(before["docker-list-alias"], docker_list.digest);
    let refs: Vec<String> = ["docker", "oci-index", "docker-list"]
        .iter()
        .map(|tag| format!("{}/formats:{tag}", registry.host()))
        .collect();
    let mut args = vec!["--output", "json", "delete"];
    args.extend(refs.iter().map(String::as_str));
    let output = regkit(config.path(), &args, "", &[]);
    assert_exit(&output, 0);
    let (entries, _) = json_report(&output);
    assert!(
        entries.iter().all(|entry| entry["status"] == "untagged"),
        "{entries:?}"
    );
    assert_eq!(
        images::tag_digests(&url, "formats", &Auth::None),
        without(&before, &["docker", "oci-index", "docker-list"])
    );
    for child in oci_index.children.iter().chain(&docker_list.children) {
        assert!(pusher.head_manifest("formats", child).is_some());
    }
}

#[test]
fn fifteen_hundred_tags_are_listed_and_a_selection_deleted_from_stdin() {
    let registry = Registry::start();
    let config = docker_config(None);
    let url = registry.url();
    let tags: Vec<String> = (0..1500).map(|n| format!("t{n:04}")).collect();
    let tag_refs: Vec<&str> = tags.iter().map(String::as_str).collect();
    // Groups of 15 tags share a digest: t0000–t0014, t0015–t0029, …
    for group in tag_refs.chunks(15) {
        images::push(&url, "bulk/app", group, &Auth::None);
    }
    let repository = format!("{}/bulk/app", registry.host());
    let listed = regkit(
        config.path(),
        &["--output", "json", "tags", &repository, "--digests"],
        "",
        &[],
    );
    assert_exit(&listed, 0);
    let rows: Vec<Value> = stdout(&listed)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(rows.len(), 1500);
    let before = images::tag_digests(&url, "bulk/app", &Auth::None);
    let from_cli: BTreeMap<String, String> = rows
        .iter()
        .map(|row| {
            (
                row["tag"].as_str().unwrap().to_string(),
                row["digest"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(from_cli, before);

    // The whole first group (one digest delete) and every tenth tag after it (tombstones).
    let doomed: Vec<&str> = tag_refs[..15]
        .iter()
        .chain(tag_refs[15..].iter().step_by(10))
        .copied()
        .collect();
    let input: String = doomed
        .iter()
        .map(|tag| format!("{repository}:{tag}\n"))
        .collect();
    let output = regkit(
        config.path(),
        &["--output", "json", "delete", "--stdin"],
        &format!("# cleanup list\n\n{input}"),
        &[("REGKIT_PARALLEL", "16")],
    );
    assert_exit(&output, 0);
    let (entries, summary) = json_report(&output);
    assert_eq!(entries.len(), doomed.len());
    assert_eq!(summary["failed"], 0);
    assert_eq!(
        images::tag_digests(&url, "bulk/app", &Auth::None),
        without(&before, &doomed)
    );
}

#[test]
fn dry_run_changes_nothing() {
    let registry = Registry::start();
    let config = docker_config(None);
    let url = registry.url();
    images::push(&url, "app", &["a", "b"], &Auth::None);
    images::push(&url, "app", &["c"], &Auth::None);
    let before = images::tag_digests(&url, "app", &Auth::None);
    let refs: Vec<String> = ["a", "c", "nope"]
        .iter()
        .map(|tag| format!("{}/app:{tag}", registry.host()))
        .collect();
    let mut args = vec!["--dry-run", "--output", "json", "delete"];
    args.extend(refs.iter().map(String::as_str));
    let output = regkit(config.path(), &args, "", &[]);
    assert_exit(&output, 0);
    let (entries, _) = json_report(&output);
    assert_eq!(
        entries
            .iter()
            .map(|e| (
                e["tag"].as_str().unwrap(),
                e["status"].as_str().unwrap(),
                e["method"].clone()
            ))
            .collect::<Vec<_>>(),
        vec![
            ("a", "planned", Value::from("tombstone")),
            ("c", "planned", Value::from("digest")),
            ("nope", "absent", Value::Null)
        ]
    );
    assert_eq!(images::tag_digests(&url, "app", &Auth::None), before);
}

#[test]
fn a_registry_with_deletes_disabled_exits_4_and_changes_nothing() {
    let registry = Registry::start_with(Options {
        delete_enabled: false,
        ..Options::default()
    });
    let config = docker_config(None);
    let url = registry.url();
    images::push(&url, "app", &["a", "b"], &Auth::None);
    let before = images::tag_digests(&url, "app", &Auth::None);
    let output = regkit(
        config.path(),
        &["delete", &format!("{}/app:a", registry.host())],
        "",
        &[],
    );
    assert_exit(&output, 4);
    let errors = stderr(&output);
    assert!(
        errors.starts_with("regkit: ") && errors.contains("storage.delete.enabled"),
        "{errors}"
    );
    assert_eq!(images::tag_digests(&url, "app", &Auth::None), before);
}

#[test]
fn htpasswd_credentials_come_from_the_docker_config_and_a_wrong_password_exits_3() {
    let registry = Registry::start_htpasswd("alice", "s3cret");
    let auth = Auth::basic("alice", "s3cret");
    let url = registry.url();
    images::push(&url, "private/app", &["a", "b"], &auth);
    let before = images::tag_digests(&url, "private/app", &auth);
    let reference = format!("{}/private/app:a", registry.host());

    let wrong = docker_config(Some((registry.host(), "alice", "wrong-pass-canary")));
    let output = regkit(wrong.path(), &["delete", &reference], "", &[]);
    assert_exit(&output, 3);
    assert!(
        stderr(&output).starts_with("regkit: "),
        "{}",
        stderr(&output)
    );
    assert!(!stderr(&output).contains("wrong-pass-canary"));
    assert_eq!(images::tag_digests(&url, "private/app", &auth), before);

    let right = docker_config(Some((registry.host(), "alice", "s3cret")));
    let detect = regkit(
        right.path(),
        &["detect", &format!("{}/private/app", registry.host())],
        "",
        &[],
    );
    assert_exit(&detect, 0);
    assert!(
        stdout(&detect).contains("basic as \"alice\""),
        "{}",
        stdout(&detect)
    );
    assert!(!stdout(&detect).contains("s3cret"));
    let output = regkit(right.path(), &["-v", "delete", &reference], "", &[]);
    assert_exit(&output, 0);
    let explained = stderr(&output);
    assert!(
        explained.contains("implementation default (no vendor host pattern matched); credentials: basic as \"alice\" from auths entry in"),
        "{explained}"
    );
    assert!(!explained.contains("s3cret"));
    assert_eq!(
        images::tag_digests(&url, "private/app", &auth),
        without(&before, &["a"])
    );
}

#[test]
fn token_auth_deletes_with_a_delete_grant_and_exits_3_without_one() {
    let tokens = TokenServer::start(vec![
        User::new("admin", "pw").grant("*", &["*"]),
        User::new("reader", "pw").grant("*", &["pull"]),
    ]);
    let registry = Registry::start_with(Options {
        auth: tokens.registry_auth(),
        ..Options::default()
    });
    let url = registry.url();
    let admin = Auth::basic("admin", "pw");
    images::push(&url, "team/app", &["a", "b", "c"], &admin);
    let before = images::tag_digests(&url, "team/app", &admin);
    let reference = format!("{}/team/app:a", registry.host());

    let reader = docker_config(Some((registry.host(), "reader", "pw")));
    let output = regkit(reader.path(), &["delete", &reference], "", &[]);
    assert_exit(&output, 3);
    assert_eq!(images::tag_digests(&url, "team/app", &admin), before);

    let config = docker_config(Some((registry.host(), "admin", "pw")));
    let output = regkit(config.path(), &["delete", &reference], "", &[]);
    assert_exit(&output, 0);
    assert_eq!(
        images::tag_digests(&url, "team/app", &admin),
        without(&before, &["a"])
    );
}

#[test]
fn a_tag_moved_during_the_run_does_not_take_its_new_sibling_with_it() {
    let registry = Registry::start();
    let config = docker_config(None);
    let url = registry.url();
    // 400 tags on one digest, all requested: one digest delete, after a re-check of every tag.
    let tags: Vec<String> = (0..400).map(|n| format!("old{n}")).collect();
    let tag_refs: Vec<&str> = tags.iter().map(String::as_str).collect();
    let old_digest = images::push(&url, "race", &tag_refs, &Auth::None);
    let new_digest = images::push(&url, "race", &["keep"], &Auth::None);
    let input: String = tags
        .iter()
        .map(|tag| format!("{}/race:{tag}\n", registry.host()))
        .collect();

    let pusher = Pusher::new(&url, &Auth::None);
    let body = manifest_body(&url, "race", &new_digest);
    let mut child = Command::new(bins::ours("regkit"))
        .env_clear()
        // Its undo journal goes with the test's files.
        .env("HOME", config.path())
        .args([
            "--docker-config",
            config.path().to_str().unwrap(),
            "--parallel",
            "1",
            "delete",
            "--stdin",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    // Move the last requested tag onto the digest `keep` uses while regkit works through the list.
    std::thread::sleep(std::time::Duration::from_millis(150));
    pusher.put_manifest("race", "old399", Format::Oci.manifest_type(), &body);
    let output = child.wait_with_output().unwrap();
    assert_exit(&output, 0);
    let mut after = images::tag_digests(&url, "race", &Auth::None);
    // If the push landed after regkit had removed old399, the pushed tag rightly stays.
    if let Some(moved) = after.remove("old399") {
        assert_eq!(moved, new_digest);
    }
    assert_eq!(
        after,
        BTreeMap::from([("keep".to_string(), new_digest.clone())])
    );
    assert_eq!(pusher.head_manifest("race", &old_digest), None);
    assert!(pusher.head_manifest("race", &new_digest).is_some());
}

#[test]
fn usage_errors_exit_2_before_any_request() {
    let config = docker_config(None);
    for args in [
        vec!["delete", "127.0.0.1:1/app"],
        vec!["delete", "127.0.0.1:1/App:x"],
        vec![
            "--repo-implementation",
            "nope",
            "delete",
            "127.0.0.1:1/app:x",
        ],
        vec!["--parallel", "0", "tags", "127.0.0.1:1/app"],
    ] {
        let output = regkit(config.path(), &args, "", &[]);
        assert_exit(&output, 2);
    }
    // An unknown implementation from the environment names the ones that exist.
    let output = regkit(
        config.path(),
        &["delete", "127.0.0.1:1/app:x"],
        "",
        &[("REGKIT_REPO_IMPLEMENTATION", "nope")],
    );
    assert_exit(&output, 2);
    assert!(
        stderr(&output).starts_with(
            "regkit: unknown registry implementation \"nope\"; use one of: default, ecr"
        ),
        "{}",
        stderr(&output)
    );
    let output = regkit(
        config.path(),
        &["detect", "127.0.0.1:1/app"],
        "",
        &[("WERF_REPO_CONTAINER_REGISTRY", "gitlab")],
    );
    assert_exit(&output, 0);
    assert!(
        stdout(&output).contains("implementation:  gitlab (forced by --repo-implementation)"),
        "{}",
        stdout(&output)
    );
    let output = regkit(
        config.path(),
        &["--output", "json", "detect", "ghcr.io/owner/pkg"],
        "",
        &[],
    );
    assert_exit(&output, 0);
    let mut detected: Value = serde_json::from_str(stdout(&output).trim()).unwrap();
    // Whether the module exists yet changes as vendors land.
    assert!(
        detected
            .as_object_mut()
            .unwrap()
            .remove("supported")
            .unwrap()
            .is_boolean()
    );
    assert_eq!(
        detected,
        serde_json::json!({
            "repository": "ghcr.io/owner/pkg",
            "registry": "ghcr.io",
            "implementation": "github",
            "chosen": "host matches ghcr.io",
            "credentials": {"kind": "anonymous", "username": null, "source": "none"},
        })
    );
    let help = regkit(config.path(), &["--help"], "", &[]);
    assert!(stdout(&help).contains("4  the registry cannot delete"));
}
