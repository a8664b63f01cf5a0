//! `regkit cleanup` against a real distribution registry on loopback. Dates come from the image configs
//! pushed here (plain v2 lists no push time), so every policy rule is exercised with controlled ages; each
//! test compares the tag set before and after, so a tag outside the plan that disappears fails it.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use regkit::dates::format_rfc3339;
use regkit_e2e::bins::{self, empty_docker_config as docker_config};
use regkit_e2e::images::{self, Auth, Format};
use regkit_e2e::registry::Registry;
use serde_json::Value;

const DAY: i64 = 86_400;

/// An RFC 3339 date `days` days ago.
fn days_ago(days: i64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    format_rfc3339(now - days * DAY)
}

/// `regkit ARGS` with a clean environment, an empty docker config and piped (non-terminal) stdin.
pub(super) fn regkit(config: &Path, args: &[&str]) -> Output {
    // A "y" that must never be read: without --yes a non-terminal run refuses before asking.
    bins::regkit_piped(config, args, "y\n")
}

pub(super) fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The JSON Lines output: tag rows (by tag, untagged rows by digest), repository notes, and the summary.
struct Run {
    rows: BTreeMap<String, Value>,
    notes: Vec<Value>,
    summary: Value,
}

fn json(output: &Output) -> Run {
    assert!(
        output.status.success(),
        "exit {:?}: {}",
        output.status.code(),
        stderr(output)
    );
    let mut run = Run {
        rows: BTreeMap::new(),
        notes: Vec::new(),
        summary: Value::Null,
    };
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let value: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        if let Some(summary) = value.get("summary") {
            run.summary = summary.clone();
        } else if let Some(note) = value.get("repository_note") {
            run.notes.push(note.clone());
        } else {
            let key = value["tag"]
                .as_str()
                .or(value["digest"].as_str())
                .unwrap()
                .to_string();
            run.rows.insert(
                format!("{}:{key}", value["repository"].as_str().unwrap()),
                value,
            );
        }
    }
    run
}

pub(super) fn tags(registry: &Registry, repo: &str) -> BTreeMap<String, String> {
    images::tag_digests(&registry.url(), repo, &Auth::None)
}

/// Pushes one image per `(tag, created)`; returns tag → digest.
fn push(registry: &Registry, repo: &str, dated: &[(&str, String)]) -> BTreeMap<String, String> {
    let pairs: Vec<(&str, &str)> = dated.iter().map(|(t, c)| (*t, c.as_str())).collect();
    images::push_distinct_created(&registry.url(), repo, &pairs, &Auth::None, Format::Oci)
        .into_iter()
        .collect()
}

/// `before` without `removed`.
fn without(before: &BTreeMap<String, String>, removed: &[&str]) -> BTreeMap<String, String> {
    let mut expected = before.clone();
    for tag in removed {
        assert!(expected.remove(*tag).is_some(), "{tag} was never pushed");
    }
    expected
}

#[test]
fn keep_last_keeps_the_newest_by_image_config_date() {
    let registry = Registry::start();
    let config = docker_config();
    let repo = "team/keep-last";
    push(
        &registry,
        repo,
        &[
            ("a", days_ago(50)),
            ("b", days_ago(40)),
            ("c", days_ago(30)),
            ("d", days_ago(20)),
            ("e", days_ago(10)),
        ],
    );
    let index = images::push_index(&registry.url(), repo, "multi", &Auth::None, Format::Oci);
    let before = tags(&registry, repo);
    let target = format!("{}/{repo}", registry.host());
    let run = json(&regkit(
        config.path(),
        &[
            "--output",
            "json",
            "cleanup",
            &target,
            "--keep-last",
            "2",
            "--yes",
        ],
    ));
    // The index is dated by its newest child (2024-01-01), so it is the oldest of all.
    assert_eq!(
        tags(&registry, repo),
        without(&before, &["a", "b", "c", "multi"])
    );
    let row = |tag: &str| &run.rows[&format!("{target}:{tag}")];
    assert_eq!(row("e")["rule"], "keep-last");
    assert_eq!(
        row("e")["reason"],
        "among the 2 newest (#1); dated by the image config's created time, not a push time"
    );
    assert_eq!(row("d")["result"], "kept");
    assert_eq!(row("c")["action"], "delete");
    assert_eq!(row("c")["result"], "deleted");
    assert_eq!(
        row("c")["reason"],
        "beyond the 2 newest; dated by the image config's created time, not a push time"
    );
    assert_eq!(row("c")["date_source"], "image-config");
    assert_eq!(row("multi")["created"], images::DEFAULT_CREATED);
    assert_eq!(row("multi")["digest"], index.digest.as_str());
    assert_eq!(run.summary["seen"], 6);
    assert_eq!(run.summary["kept"], 2);
    assert_eq!(run.summary["deleted"], 4);
}

#[test]
fn older_than_never_selects_a_tag_without_a_date() {
    let registry = Registry::start();
    let config = docker_config();
    let repo = "team/age";
    push(
        &registry,
        repo,
        &[
            ("ancient", days_ago(100)),
            ("old", days_ago(31)),
            ("recent", days_ago(29)),
            ("fresh", days_ago(0)),
            ("undated", String::new()),
        ],
    );
    let before = tags(&registry, repo);
    let target = format!("{}/{repo}", registry.host());
    let output = regkit(
        config.path(),
        &[
            "--output",
            "json",
            "cleanup",
            &target,
            "--older-than",
            "30d",
            "--yes",
        ],
    );
    let run = json(&output);
    assert_eq!(tags(&registry, repo), without(&before, &["ancient", "old"]));
    let row = |tag: &str| &run.rows[&format!("{target}:{tag}")];
    assert_eq!(row("undated")["rule"], "no-date");
    assert_eq!(row("undated")["result"], "kept");
    assert!(row("undated")["created"].is_null());
    let reason = row("undated")["reason"].as_str().unwrap();
    assert!(reason.starts_with("no date"), "{reason}");
    assert!(reason.contains("created date"), "{reason}");
    assert_eq!(row("recent")["rule"], "too-new");
    assert!(
        row("old")["reason"]
            .as_str()
            .unwrap()
            .contains("older than 30d; dated by the image config's created time"),
        "{}",
        row("old")["reason"]
    );
}

#[test]
fn match_exclude_and_keep_list() {
    let registry = Registry::start();
    let config = docker_config();
    let repo = "team/names";
    let old = days_ago(60);
    push(
        &registry,
        repo,
        &[
            ("v1.0", old.clone()),
            ("v1.1", old.clone()),
            ("v1.2-rc", old.clone()),
            ("v2.0", old.clone()),
            ("main-1", old.clone()),
            ("main-2", old.clone()),
            ("feature", old.clone()),
        ],
    );
    let before = tags(&registry, repo);
    let target = format!("{}/{repo}", registry.host());
    let keep_list = config.path().join("keep.txt");
    std::fs::write(&keep_list, "# pinned releases\nv2.*\nmain-?  # CI\n").unwrap();
    let run = json(&regkit(
        config.path(),
        &[
            "--output",
            "json",
            "cleanup",
            &target,
            "--match",
            "^(v|main)",
            "--exclude",
            "-rc$",
            "--keep-list",
            keep_list.to_str().unwrap(),
            "--yes",
        ],
    ));
    assert_eq!(tags(&registry, repo), without(&before, &["v1.0", "v1.1"]));
    let rule = |tag: &str| run.rows[&format!("{target}:{tag}")]["rule"].clone();
    assert_eq!(rule("feature"), "not-matched");
    assert_eq!(rule("v1.2-rc"), "excluded");
    assert_eq!(rule("v2.0"), "keep-list");
    assert_eq!(rule("main-2"), "keep-list");
    assert_eq!(rule("v1.0"), "selected");
}

#[test]
fn a_kept_tag_keeps_the_image_it_shares_with_a_deleted_tag() {
    let registry = Registry::start();
    let config = docker_config();
    let repo = "team/shared";
    let shared = images::push(&registry.url(), repo, &["build-1", "release"], &Auth::None);
    push(&registry, repo, &[("build-2", days_ago(90))]);
    let before = tags(&registry, repo);
    let target = format!("{}/{repo}", registry.host());
    let run = json(&regkit(
        config.path(),
        &[
            "--output", "json", "cleanup", &target, "--match", "^build-", "--yes",
        ],
    ));
    let after = tags(&registry, repo);
    assert_eq!(after, without(&before, &["build-1", "build-2"]));
    assert_eq!(
        after["release"], shared,
        "the kept tag still names its image"
    );
    let build1 = &run.rows[&format!("{target}:build-1")];
    assert_eq!(build1["result"], "untagged");
    assert_eq!(build1["method"], "tombstone");
    assert_eq!(run.rows[&format!("{target}:build-2")]["result"], "deleted");
}

#[test]
fn dry_run_plans_and_changes_nothing() {
    let registry = Registry::start();
    let config = docker_config();
    let repo = "team/dry";
    push(
        &registry,
        repo,
        &[("a", days_ago(90)), ("b", days_ago(80)), ("c", days_ago(1))],
    );
    let before = tags(&registry, repo);
    let target = format!("{}/{repo}", registry.host());
    let run = json(&regkit(
        config.path(),
        &[
            "--output",
            "json",
            "--dry-run",
            "cleanup",
            &target,
            "--older-than",
            "7d",
        ],
    ));
    assert_eq!(tags(&registry, repo), before);
    assert_eq!(run.rows[&format!("{target}:a")]["result"], "planned");
    assert_eq!(run.rows[&format!("{target}:b")]["result"], "planned");
    assert_eq!(run.rows[&format!("{target}:c")]["result"], "kept");
    assert_eq!(run.summary["planned"], 2);
    assert_eq!(run.summary["deleted"], 0);
    // The text plan names tag, age, digest and reason.
    let text = regkit(
        config.path(),
        &["--dry-run", "cleanup", &target, "--older-than", "7d"],
    );
    assert!(text.status.success(), "{}", stderr(&text));
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    let line = text
        .lines()
        .find(|line| line.contains(&format!("{target}:a ")))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(line.starts_with("planned"), "{line}");
    assert!(line.contains("90d"), "{line}");
    assert!(line.contains(&before["a"]), "{line}");
    assert!(line.contains("older than 7d"), "{line}");
    assert!(!text.contains(&format!("{target}:c ")), "{text}");
    assert_eq!(tags(&registry, repo), before);
}

#[test]
fn without_yes_a_non_interactive_run_refuses_and_changes_nothing() {
    let registry = Registry::start();
    let config = docker_config();
    let repo = "team/refuse";
    push(&registry, repo, &[("a", days_ago(90))]);
    let before = tags(&registry, repo);
    let target = format!("{}/{repo}", registry.host());
    let output = regkit(config.path(), &["cleanup", &target, "--older-than", "1d"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("--yes"), "{}", stderr(&output));
    assert!(output.stdout.is_empty());
    assert_eq!(tags(&registry, repo), before);
    // Usage errors are exit 2 too, before anything is read.
    for bad in [
        &["--older-than", "30"][..],
        &["--match", "("][..],
        &["--keep-list", "/nonexistent/keep.txt"][..],
    ] {
        let mut args = vec!["cleanup", target.as_str(), "--yes"];
        args.extend_from_slice(bad);
        let output = regkit(config.path(), &args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{bad:?}: {}",
            stderr(&output)
        );
    }
    assert_eq!(tags(&registry, repo), before);
}

#[test]
fn without_a_rule_cleanup_refuses_unless_told_all() {
    let registry = Registry::start();
    let config = docker_config();
    let repo = "team/no-rule";
    push(&registry, repo, &[("a", days_ago(90)), ("b", days_ago(1))]);
    let before = tags(&registry, repo);
    let target = format!("{}/{repo}", registry.host());
    for args in [
        &["cleanup", target.as_str(), "--yes"][..],
        &["cleanup", target.as_str(), "--untagged", "--yes"][..],
        &["--dry-run", "cleanup", target.as_str()][..],
    ] {
        let output = regkit(config.path(), args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
        let message = stderr(&output);
        assert_eq!(message.lines().count(), 1, "{message}");
        assert!(
            message.contains("needs a rule") && message.contains("--all"),
            "{message}"
        );
        assert!(output.stdout.is_empty());
        assert_eq!(tags(&registry, repo), before);
    }
    let run = json(&regkit(
        config.path(),
        &["--output", "json", "cleanup", &target, "--all", "--yes"],
    ));
    assert_eq!(run.summary["deleted"], 2, "{:?}", run.summary);
    assert!(tags(&registry, repo).is_empty());
}

#[test]
fn the_report_lists_every_tag_with_reason_and_result() {
    let registry = Registry::start();
    let config = docker_config();
    let repo = "team/report";
    let pushed = push(
        &registry,
        repo,
        &[
            ("old", days_ago(90)),
            ("new", days_ago(1)),
            ("nodate", String::new()),
        ],
    );
    let target = format!("{}/{repo}", registry.host());
    let report = config.path().join("report.json");
    let output = regkit(
        config.path(),
        &[
            "cleanup",
            &target,
            "--older-than",
            "30d",
            "--untagged",
            "--yes",
            "--report",
            report.to_str().unwrap(),
        ],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    // plain v2 cannot list untagged manifests: said on stderr and in the report, not an error.
    assert!(
        stderr(&output).contains("cannot list untagged manifests"),
        "{}",
        stderr(&output)
    );
    let document: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let rows = document["tags"].as_array().unwrap();
    let by_tag: BTreeMap<&str, &Value> = rows
        .iter()
        .map(|row| (row["tag"].as_str().unwrap(), row))
        .collect();
    assert_eq!(
        by_tag.keys().copied().collect::<Vec<_>>(),
        ["new", "nodate", "old"]
    );
    for (tag, row) in &by_tag {
        assert_eq!(row["repository"], target.as_str());
        assert_eq!(row["digest"], pushed[*tag].as_str(), "{tag}");
        assert!(!row["reason"].as_str().unwrap().is_empty(), "{tag}");
    }
    assert_eq!(by_tag["old"]["action"], "delete");
    assert_eq!(by_tag["old"]["result"], "deleted");
    assert_eq!(by_tag["old"]["method"], "digest");
    assert_eq!(by_tag["new"]["action"], "keep");
    assert_eq!(by_tag["new"]["result"], "kept");
    assert_eq!(by_tag["new"]["rule"], "too-new");
    assert_eq!(by_tag["nodate"]["rule"], "no-date");
    assert_eq!(document["summary"]["seen"], 3);
    assert_eq!(document["summary"]["deleted"], 1);
    assert_eq!(document["summary"]["kept"], 2);
    let notes = document["notes"].as_array().unwrap();
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0]["implementation"], "default");
    assert!(
        notes[0]["note"]
            .as_str()
            .unwrap()
            .contains("cannot list untagged manifests"),
        "{notes:?}"
    );
    assert_eq!(
        tags(&registry, repo).keys().collect::<Vec<_>>(),
        ["new", "nodate"]
    );
}

#[test]
fn a_prefix_pattern_cleans_every_repository_under_it() {
    let registry = Registry::start();
    let config = docker_config();
    for repo in ["team/a", "team/b", "team/sub/c", "other/d", "teams/e"] {
        push(
            &registry,
            repo,
            &[("old", days_ago(90)), ("new", days_ago(1))],
        );
    }
    let pattern = format!("{}/team/*", registry.host());
    let run = json(&regkit(
        config.path(),
        &[
            "--output",
            "json",
            "cleanup",
            &pattern,
            "--keep-last",
            "1",
            "--yes",
        ],
    ));
    assert_eq!(run.summary["repositories"], 3);
    for repo in ["team/a", "team/b", "team/sub/c"] {
        assert_eq!(
            tags(&registry, repo).keys().collect::<Vec<_>>(),
            ["new"],
            "{repo}"
        );
    }
    for repo in ["other/d", "teams/e"] {
        assert_eq!(
            tags(&registry, repo).keys().collect::<Vec<_>>(),
            ["new", "old"],
            "{repo}"
        );
    }
    // The host alone takes every repository.
    let every = json(&regkit(
        config.path(),
        &[
            "--output",
            "json",
            "--dry-run",
            "cleanup",
            &format!("{}/*", registry.host()),
            "--keep-last",
            "1",
        ],
    ));
    assert_eq!(every.summary["repositories"], 5);
    assert_eq!(every.summary["planned"], 2);
    // Several repositories named at once, and a prefix that matches nothing is a note, not an error.
    let output = regkit(
        config.path(),
        &[
            "--output",
            "json",
            "cleanup",
            &format!("{}/other/d", registry.host()),
            &format!("{}/teams/e", registry.host()),
            &format!("{}/nothing/*", registry.host()),
            "--keep-last",
            "1",
            "--yes",
        ],
    );
    let run = json(&output);
    assert_eq!(run.summary["repositories"], 2);
    assert_eq!(run.summary["deleted"], 2);
    assert_eq!(run.notes.len(), 1, "{:?}", run.notes);
    assert_eq!(run.notes[0]["note"], "no repository matches");
    assert!(tags(&registry, "other/d").keys().eq(["new"]));
    assert!(tags(&registry, "teams/e").keys().eq(["new"]));
}

/// `regkit ARGS` on a pseudo-terminal (util-linux `script`), with `answer` typed in.
fn regkit_on_terminal(config: &Path, args: &[&str], answer: &str) -> Output {
    regkit_on_terminal_with(config, args, answer, &[])
}

/// [`regkit_on_terminal`] with `env` set too (`TERM`, without which a terminal is "dumb" and shows no
/// progress bar).
pub(super) fn regkit_on_terminal_with(
    config: &Path,
    args: &[&str],
    answer: &str,
    env: &[(&str, &str)],
) -> Output {
    let script = bins::tool("script", "bsdutils");
    let mut line = format!(
        "{} --docker-config {}",
        bins::ours("regkit").display(),
        config.display()
    );
    for arg in args {
        // Test arguments are plain words; quoting keeps regex characters away from the shell.
        line.push_str(&format!(" '{arg}'"));
    }
    let mut child = Command::new(script)
        .args(["-qec", &line, "/dev/null"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", config)
        .env("SHELL", "/bin/sh")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(answer.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn on_a_terminal_it_shows_the_plan_and_asks_once() {
    let registry = Registry::start();
    let config = docker_config();
    let repo = "team/ask";
    push(&registry, repo, &[("a", days_ago(90)), ("b", days_ago(1))]);
    let before = tags(&registry, repo);
    let target = format!("{}/{repo}", registry.host());
    let args = ["cleanup", target.as_str(), "--older-than", "30d"];
    let declined = regkit_on_terminal(config.path(), &args, "n\n");
    let screen = String::from_utf8_lossy(&declined.stdout).into_owned();
    assert_eq!(declined.status.code(), Some(0), "{screen}");
    assert_eq!(screen.matches("[y/N]").count(), 1, "{screen}");
    assert!(
        screen.contains("Delete 1 tag(s)/manifest(s) in 1 repository?"),
        "{screen}"
    );
    let planned = screen
        .lines()
        .find(|line| line.contains(&format!("{target}:a ")))
        .unwrap_or_else(|| panic!("{screen}"));
    assert!(planned.starts_with("delete"), "{planned}");
    assert!(
        planned.contains("90d") && planned.contains(&before["a"]),
        "{planned}"
    );
    assert!(screen.contains("nothing deleted"), "{screen}");
    assert!(
        screen
            .lines()
            .any(|line| line.starts_with("declined") && line.contains(&format!("{target}:a "))),
        "{screen}"
    );
    assert_eq!(tags(&registry, repo), before);

    let accepted = regkit_on_terminal(config.path(), &args, "y\n");
    let screen = String::from_utf8_lossy(&accepted.stdout).into_owned();
    assert_eq!(accepted.status.code(), Some(0), "{screen}");
    assert_eq!(screen.matches("[y/N]").count(), 1, "{screen}");
    assert_eq!(tags(&registry, repo), without(&before, &["a"]));
}

/// Per-platform tags next to the multi-platform index built from them (`docker buildx imagetools create`):
/// plain v2 deletes by digest, so deleting such a tag alone would break the kept index.
#[test]
fn a_tag_on_a_manifest_a_kept_index_references_is_kept() {
    let registry = Registry::start();
    let config = docker_config();
    let repo = "team/multi";
    let index = images::push_index(&registry.url(), repo, "multi", &Auth::None, Format::Oci);
    let pusher = images::Pusher::new(&registry.url(), &Auth::None);
    let mut response = ureq::get(format!(
        "{}/v2/{repo}/manifests/{}",
        registry.url(),
        index.children[0]
    ))
    .header("accept", images::ACCEPT_ALL)
    .call()
    .unwrap();
    let child = response.body_mut().read_to_vec().unwrap();
    pusher.put_manifest(repo, "multi-amd64", Format::Oci.manifest_type(), &child);
    push(&registry, repo, &[("lone-amd64", days_ago(90))]);
    let before = tags(&registry, repo);
    assert_eq!(before["multi-amd64"], index.children[0]);
    let target = format!("{}/{repo}", registry.host());
    let run = json(&regkit(
        config.path(),
        &[
            "--output", "json", "cleanup", &target, "--match", "amd64$", "--yes",
        ],
    ));
    let row = &run.rows[&format!("{target}:multi-amd64")];
    assert_eq!(row["rule"], "in-kept-index", "{row}");
    assert_eq!(row["result"], "kept");
    assert!(
        row["reason"].as_str().unwrap().contains(&index.digest),
        "{row}"
    );
    assert_eq!(
        run.rows[&format!("{target}:lone-amd64")]["result"],
        "deleted"
    );
    assert_eq!(tags(&registry, repo), without(&before, &["lone-amd64"]));
    for child in &index.children {
        assert!(pusher.head_manifest(repo, child).is_some(), "{child}");
    }
}

/// An index of indexes (an outer index whose entry is itself a multi-platform index): the engine follows
/// kept indexes to any depth, so neither the inner index's tag nor its platform's tag goes.
#[test]
fn tags_under_a_kept_index_of_indexes_are_kept_at_every_depth() {
    let registry = Registry::start();
    let config = docker_config();
    let repo = "team/nested";
    let inner = images::push_index(
        &registry.url(),
        repo,
        "nested-inner",
        &Auth::None,
        Format::Oci,
    );
    let pusher = images::Pusher::new(&registry.url(), &Auth::None);
    let read = |reference: &str| {
        ureq::get(format!(
            "{}/v2/{repo}/manifests/{reference}",
            registry.url()
        ))
        .header("accept", images::ACCEPT_ALL)
        .call()
        .unwrap()
        .body_mut()
        .read_to_vec()
        .unwrap()
    };
    let platform = read(&inner.children[0]);
    pusher.put_manifest(repo, "nested-amd64", Format::Oci.manifest_type(), &platform);
    let index_type = "application/vnd.oci.image.index.v1+json";
    let outer = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": index_type,
        "manifests": [{
            "mediaType": index_type,
            "digest": inner.digest,
            "size": read(&inner.digest).len(),
        }],
    });
    pusher.put_manifest(repo, "outer", index_type, outer.to_string().as_bytes());
    let before = tags(&registry, repo);
    let target = format!("{}/{repo}", registry.host());
    let run = json(&regkit(
        config.path(),
        &[
            "--output", "json", "cleanup", &target, "--match", "^nested-", "--yes",
        ],
    ));
    for tag in ["nested-inner", "nested-amd64"] {
        let row = &run.rows[&format!("{target}:{tag}")];
        assert_eq!(row["rule"], "in-kept-index", "{row}");
        assert_eq!(row["result"], "kept", "{row}");
    }
    assert!(
        run.rows[&format!("{target}:nested-amd64")]["reason"]
            .as_str()
            .unwrap()
            .contains(&inner.digest)
    );
    assert_eq!(tags(&registry, repo), before);
}

/// A report that cannot be written is regkit's own failure (exit 1), not a usage error (exit 2): the
/// command line was right.
#[test]
fn a_report_that_cannot_be_written_exits_1_naming_the_file() {
    let registry = Registry::start();
    let config = docker_config();
    let repo = "team/report";
    push(&registry, repo, &[("a", days_ago(90))]);
    let before = tags(&registry, repo);
    let target = format!("{}/{repo}", registry.host());
    let missing = config.path().join("no-such-dir/report.json");
    let run = regkit(
        config.path(),
        &[
            "--dry-run",
            "cleanup",
            &target,
            "--older-than",
            "7d",
            "--report",
            missing.to_str().unwrap(),
        ],
    );
    assert_eq!(run.status.code(), Some(1), "{}", stderr(&run));
    let error = stderr(&run);
    assert!(
        error.contains("cannot write the report") && error.contains("no-such-dir"),
        "{error}"
    );
    assert_eq!(error.lines().count(), 1, "{error}");
    assert_eq!(tags(&registry, repo), before);
}

/// `git ARGS` in `dir` with a fixed identity; panics on failure.
fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
        .args(args)
        .output()
        .unwrap();
    assert!(output.status.success(), "git {args:?}: {}", stderr(&output));
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

#[test]
fn git_references_keep_their_tags_heads_and_newest_per_reference() {
    let repository = tempfile::tempdir().unwrap();
    let dir = repository.path();
    git(dir, &["init", "-q", "-b", "main"]);
    git(dir, &["commit", "-q", "--allow-empty", "-m", "one"]);
    git(dir, &["tag", "-a", "v1.2.0", "-m", "release"]);
    git(dir, &["branch", "feature/x"]);
    git(dir, &["branch", "gone"]);
    git(dir, &["commit", "-q", "--allow-empty", "-m", "two"]);
    git(dir, &["branch", "-D", "gone"]);
    let head = git(dir, &["rev-parse", "HEAD"]);
    let short = &head[..7];
    let registry = Registry::start();
    let config = docker_config();
    let repo = "team/git";
    push(
        &registry,
        repo,
        &[
            ("main", days_ago(40)),
            ("feature-x", days_ago(40)),
            ("v1.2.0", days_ago(40)),
            (short, days_ago(40)),
            ("main-3", days_ago(3)),
            ("main-2", days_ago(2)),
            ("main-1", days_ago(1)),
            ("gone", days_ago(40)),
            ("gone-1", days_ago(1)),
        ],
    );
    let before = tags(&registry, repo);
    let target = format!("{}/{repo}", registry.host());
    let keep_git = dir.to_str().unwrap();
    let run = json(&regkit(
        config.path(),
        &[
            "--output",
            "json",
            "cleanup",
            &target,
            "--keep-git",
            keep_git,
            "--per-git-ref",
            "2",
            "--grace",
            "0",
            "--yes",
        ],
    ));
    // The deleted branch's images go; main keeps its 2 newest, the ref tags and the head commit stay.
    assert_eq!(
        tags(&registry, repo),
        without(&before, &["main-3", "gone", "gone-1"])
    );
    let row = |tag: &str| &run.rows[&format!("{target}:{tag}")];
    assert_eq!(row("feature-x")["rule"], "git-ref");
    assert_eq!(
        row("feature-x")["reason"],
        "names the git reference feature/x"
    );
    assert_eq!(row(short)["rule"], "git-ref");
    assert_eq!(row("v1.2.0")["rule"], "git-ref");
    assert_eq!(row("main-1")["rule"], "per-git-ref");
    assert_eq!(row("gone")["rule"], "selected");

    // A directory that is not a repository stops the run before any request: exit 2, one line.
    let plain = tempfile::tempdir().unwrap();
    let output = regkit(
        config.path(),
        &[
            "cleanup",
            &target,
            "--keep-git",
            plain.path().to_str().unwrap(),
            "--grace",
            "0",
            "--yes",
        ],
    );
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let message = stderr(&output);
    assert_eq!(message.lines().count(), 1, "{message}");
    assert!(
        message.contains("--keep-git") && message.contains("not a git repository"),
        "{message}"
    );
    assert_eq!(tags(&registry, repo).len(), before.len() - 3);
}

#[test]
fn grouped_keep_last_semver_order_and_the_grace_window() {
    let registry = Registry::start();
    let config = docker_config();
    let target = |repo: &str| format!("{}/{repo}", registry.host());
    // Groups of different sizes: main has 4, release-1 has 1, release-2 has 3; pr-7 is in no group.
    let grouped = "team/grouped";
    push(
        &registry,
        grouped,
        &[
            ("main-a", days_ago(1)),
            ("main-b", days_ago(2)),
            ("main-c", days_ago(3)),
            ("main-d", days_ago(4)),
            ("release-1-a", days_ago(90)),
            ("release-2-a", days_ago(7)),
            ("release-2-b", days_ago(8)),
            ("release-2-c", days_ago(9)),
            ("pr-7", days_ago(1)),
        ],
    );
    let before = tags(&registry, grouped);
    let run = json(&regkit(
        config.path(),
        &[
            "--output",
            "json",
            "cleanup",
            &target(grouped),
            "--group-by",
            "^(main|release-[0-9]+)-",
            "--keep-last",
            "2",
            "--grace",
            "0",
            "--yes",
        ],
    ));
    assert_eq!(
        tags(&registry, grouped),
        without(&before, &["main-c", "main-d", "release-2-c", "pr-7"])
    );
    let row = |tag: &str| &run.rows[&format!("{}:{tag}", target(grouped))];
    assert_eq!(
        row("release-1-a")["reason"],
        "among the 2 newest of the group \"release-1\" (#1); dated by the image config's created time, not a push time"
    );
    assert_eq!(
        row("pr-7")["reason"],
        "in no --group-by group; dated by the image config's created time, not a push time"
    );

    // Semver: the release above its pre-release, versions above other tags; build metadata ties.
    let versions = "team/versions";
    push(
        &registry,
        versions,
        &[
            ("v1.10.0", days_ago(50)),
            ("1.9.0", days_ago(1)),
            ("v2.0.0-rc.1", days_ago(1)),
            ("v2.0.0", days_ago(60)),
            ("latest", days_ago(0)),
        ],
    );
    let before = tags(&registry, versions);
    json(&regkit(
        config.path(),
        &[
            "--output",
            "json",
            "cleanup",
            &target(versions),
            "--sort",
            "semver",
            "--keep-last",
            "3",
            "--yes",
        ],
    ));
    // latest, pushed now and not a version, is beyond the 3 highest but the default 2h grace keeps it.
    assert_eq!(tags(&registry, versions), without(&before, &["1.9.0"]));
    // A plain v2 registry records no pulls: --unpulled-for selects nothing and says why.
    let run = json(&regkit(
        config.path(),
        &[
            "--output",
            "json",
            "cleanup",
            &target(versions),
            "--unpulled-for",
            "1d",
            "--grace",
            "0",
            "--yes",
        ],
    ));
    let v2 = &run.rows[&format!("{}:v2.0.0", target(versions))];
    assert_eq!(v2["rule"], "no-pull-data", "{v2}");
    assert_eq!(
        v2["reason"],
        "--unpulled-for cannot select it: the default implementation's listing carries no pull times"
    );
    assert_eq!(tags(&registry, versions), without(&before, &["1.9.0"]));

    // The default grace window keeps a fresh push against every rule; --grace 0 turns it off.
    let fresh = "team/fresh";
    push(
        &registry,
        fresh,
        &[("now", days_ago(0)), ("old", days_ago(3))],
    );
    let run = json(&regkit(
        config.path(),
        &[
            "--output",
            "json",
            "cleanup",
            &target(fresh),
            "--keep-last",
            "0",
            "--yes",
        ],
    ));
    let now = &run.rows[&format!("{}:now", target(fresh))];
    assert_eq!(now["rule"], "grace");
    assert!(
        now["reason"]
            .as_str()
            .unwrap()
            .ends_with("within the 2h grace window"),
        "{now}"
    );
    assert_eq!(tags(&registry, fresh).keys().collect::<Vec<_>>(), ["now"]);
    json(&regkit(
        config.path(),
        &[
            "--output",
            "json",
            "cleanup",
            &target(fresh),
            "--all",
            "--grace",
            "0",
            "--yes",
        ],
    ));
    assert!(tags(&registry, fresh).is_empty());
}

/// Writes regkit's config file where a run with `HOME=home` reads it.
fn write_config(home: &Path, text: &str) -> std::path::PathBuf {
    let dir = home.join(".config/regkit");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_policy_file_with_two_policies_on_one_repository_and_explain() {
    let registry = Registry::start();
    let config = docker_config();
    let repo = "team/policies";
    let target = format!("{}/{repo}", registry.host());
    push(
        &registry,
        repo,
        &[
            ("main-1", days_ago(40)),
            ("main-2", days_ago(50)),
            ("x-old", days_ago(40)),
            ("x-new", days_ago(1)),
        ],
    );
    let before = tags(&registry, repo);
    write_config(
        config.path(),
        &format!(
            r#"
[[ecr.identity]]
registry = "*.dkr.ecr.*.amazonaws.com"
profile = "other"

[[cleanup.policy]]
name = "branches"
repositories = ["{target}"]
match = "^main-"
keep-last = 1
grace = "0"

[[cleanup.policy]]
name = "old"
repositories = ["{}/team/*"]
older-than = "30d"
"#,
            registry.host()
        ),
    );
    // --explain prints every rule of each policy and deletes nothing, even without --yes.
    let output = regkit(
        config.path(),
        &["cleanup", "--all-policies", "--explain", "main-1"],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("policy branches") && text.contains("policy old"),
        "{text}"
    );
    assert!(
        text.contains("--keep-last") && text.contains("--older-than"),
        "{text}"
    );
    assert!(
        text.contains("decision: keep (keep-last): policy branches: among the 1 newest (#1)"),
        "{text}"
    );
    assert_eq!(tags(&registry, repo), before);

    let run = json(&regkit(
        config.path(),
        &[
            "--output", "json", "cleanup", "--policy", "branches", "--policy", "old", "--yes",
        ],
    ));
    // main-1: kept by branches' keep-last although old selects it; x-old: branches does not judge it
    // (no --match), old selects it; x-new: old keeps it.
    assert_eq!(
        tags(&registry, repo),
        without(&before, &["main-2", "x-old"])
    );
    let row = |tag: &str| &run.rows[&format!("{target}:{tag}")];
    assert_eq!(row("main-1")["rule"], "keep-last");
    assert_eq!(row("x-new")["rule"], "too-new");
    assert!(
        row("x-old")["reason"]
            .as_str()
            .unwrap()
            .starts_with("policy old: 40d old"),
        "{}",
        row("x-old")
    );

    // Flags override the file: --keep-last 0 makes branches select main-1 too.
    let output = regkit(
        config.path(),
        &[
            "--output",
            "json",
            "cleanup",
            "--policy",
            "branches",
            "--keep-last",
            "0",
            "--dry-run",
        ],
    );
    let planned = json(&output);
    assert_eq!(
        planned.rows[&format!("{target}:main-1")]["result"],
        "planned"
    );
}

#[test]
fn bad_policy_files_stop_the_run_with_one_line_naming_file_line_and_key() {
    let registry = Registry::start();
    let config = docker_config();
    let repo = "team/bad-files";
    push(&registry, repo, &[("old", days_ago(40))]);
    let before = tags(&registry, repo);
    let head = format!(
        "[[cleanup.policy]]\nname = \"p\"\nrepositories = [\"{}/{repo}\"]\n",
        registry.host()
    );
    for (body, expected) in [
        (
            format!("{head}keep-lats = 3\n"),
            "line 4: unknown field `keep-lats`",
        ),
        (
            format!("{head}match = \"(\"\n"),
            "line 4, key match: invalid match regex",
        ),
        (
            format!("{head}older-than = \"30\"\n"),
            "line 4, key older-than: invalid duration \"30\"",
        ),
        (
            "[[cleanup.policy]]\nname = \"p\"\nolder-than = \"1d\"\n".to_string(),
            "key repositories: policy \"p\" names no repository",
        ),
    ] {
        let path = write_config(config.path(), &body);
        let output = regkit(
            config.path(),
            &["cleanup", "--policy", "p", "--grace", "0", "--yes"],
        );
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{body}: {message}");
        assert_eq!(message.lines().count(), 1, "{message}");
        assert!(message.contains(path.to_str().unwrap()), "{message}");
        assert!(message.contains(expected), "{expected}: {message}");
    }
    write_config(config.path(), &format!("{head}older-than = \"1d\"\n"));
    let output = regkit(config.path(), &["cleanup", "--policy", "nope", "--yes"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("--policy nope: ") && stderr(&output).contains("(defined: p)"),
        "{}",
        stderr(&output)
    );
    assert_eq!(tags(&registry, repo), before, "nothing was deleted");
}
