//! `regkit cleanup REGISTRY/*` over many repositories of a real distribution registry: repositories are
//! planned at once within `--parallel` requests in flight (counted by the fault proxy), the result equals
//! one run per repository, and a repository whose listing fails or is cut short loses nothing while the
//! others are cleaned.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use regkit_e2e::bins;
use regkit_e2e::faultproxy::{Fault, FaultProxy, Rule};
use regkit_e2e::images::{self, Auth, Pusher};
use regkit_e2e::registry::{Registry, Twins};
use serde_json::Value;

use super::policy_cleanup::{regkit, regkit_on_terminal_with, stderr, tags};

const REPOSITORIES: usize = 24;
const PARALLEL: usize = 4;

fn repository(index: usize) -> String {
    format!("team/r{index:02}")
}

/// In each repository: `old-1` and `old-2` (selected by `--match ^old-`), `keep`, and `alias` on
/// `old-1`'s image (a sibling that must survive the deletion of `old-1`).
fn populate(registry: &Registry, repositories: usize) {
    let url = registry.url();
    let pusher = Pusher::new(&url, &Auth::None);
    for index in 0..repositories {
        let repo = repository(index);
        images::push_distinct(&url, &repo, &["old-1", "old-2", "keep"], &Auth::None);
        let (media_type, body) = pusher.manifest(&repo, "old-1").expect("old-1 pushed");
        pusher.put_manifest(&repo, "alias", &media_type, &body);
    }
}

/// The JSON Lines tag rows, each as what must match across runs (the registry host left out), and the
/// summary.
fn rows(output: &Output) -> (Vec<[String; 6]>, Value) {
    let mut rows = Vec::new();
    let mut summary = Value::Null;
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let value: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        if let Some(found) = value.get("summary") {
            summary = found.clone();
        } else if value.get("tag").is_some() {
            let field = |name: &str| value[name].as_str().unwrap_or_default().to_string();
            let path = field("repository")
                .split_once('/')
                .map(|(_, path)| path.to_string())
                .unwrap_or_default();
            rows.push([
                path,
                field("tag"),
                field("digest"),
                field("action"),
                field("rule"),
                field("result"),
            ]);
        }
    }
    (rows, summary)
}

/// `regkit cleanup TARGET --match ^old- --yes` with `--parallel` and JSON Lines.
fn cleanup(config: &Path, parallel: usize, target: &str) -> Output {
    let parallel = parallel.to_string();
    regkit(
        config,
        &[
            "--output",
            "json",
            "--parallel",
            &parallel,
            "cleanup",
            target,
            "--match",
            "^old-",
            "--yes",
        ],
    )
}

fn assert_exit(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&output.stdout),
        stderr(output)
    );
}

#[test]
fn many_repositories_are_planned_at_once_within_parallel_and_match_one_run_per_repository() {
    let twins = Twins::start(|registry| populate(registry, REPOSITORIES));
    let (together, one_by_one) = (&twins.first, &twins.second);
    let config = bins::empty_docker_config();
    let proxy = FaultProxy::start(together.host());
    // A slow tag listing: repositories planned at once overlap, one at a time they cannot.
    proxy.set_rules(vec![
        Rule::new(Fault::Delay(Duration::from_millis(100))).path("/tags/list"),
    ]);
    let every = format!("{}/*", proxy.host());
    let output = cleanup(config.path(), PARALLEL, &every);
    assert_exit(&output, 0);
    let (all, summary) = rows(&output);
    assert_eq!(summary["repositories"], REPOSITORIES, "{summary}");
    assert!(
        proxy.peak_in_flight() <= PARALLEL,
        "{} requests in flight at once, --parallel {PARALLEL}",
        proxy.peak_in_flight()
    );
    // The first requests after the catalog are the tag listings of PARALLEL different repositories.
    let heads = proxy.heads();
    let catalog = heads
        .iter()
        .position(|head| head.contains("/_catalog"))
        .expect("the catalog was read");
    let first: Vec<&str> = heads[catalog + 1..catalog + 1 + PARALLEL]
        .iter()
        .map(|head| head.lines().next().unwrap_or_default())
        .collect();
    assert!(
        first.iter().all(|line| line.contains("/tags/list")),
        "{first:?}"
    );
    let mut listed: Vec<&str> = first.clone();
    listed.dedup();
    assert_eq!(listed.len(), PARALLEL, "{first:?}");

    let mut sequential = Vec::new();
    for index in 0..REPOSITORIES {
        let one = format!("{}/{}", one_by_one.host(), repository(index));
        let output = cleanup(config.path(), 1, &one);
        assert_exit(&output, 0);
        sequential.extend(rows(&output).0);
    }
    // The same rows in the same order (repositories as the catalog lists them), whatever finished first.
    assert_eq!(all, sequential);
    for index in 0..REPOSITORIES {
        let repo = repository(index);
        let left = tags(together, &repo);
        assert_eq!(left.keys().collect::<Vec<_>>(), ["alias", "keep"], "{repo}");
        assert_eq!(left, tags(one_by_one, &repo), "{repo}");
    }
}

#[test]
fn a_repository_whose_listing_fails_or_is_cut_short_loses_nothing_and_the_others_are_cleaned() {
    const MANY: usize = 12;
    let registry = Registry::start();
    populate(&registry, MANY);
    let before: BTreeMap<String, BTreeMap<String, String>> = (0..MANY)
        .map(|index| (repository(index), tags(&registry, &repository(index))))
        .collect();
    let config = bins::empty_docker_config();
    let proxy = FaultProxy::start(registry.host());
    let refused = format!("/v2/{}/tags/list", repository(3));
    let cut = format!("/v2/{}/tags/list", repository(7));
    proxy.set_rules(vec![
        Rule::new(Fault::Status {
            code: 400,
            retry_after: None,
        })
        .path(&refused),
        Rule::new(Fault::Truncate).path(&cut),
    ]);
    let every = format!("{}/*", proxy.host());
    let output = cleanup(config.path(), 4, &every);
    assert_exit(&output, 1);
    let text = stderr(&output);
    let notes: Vec<Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter_map(|value| value.get("repository_note").cloned())
        .collect();
    assert_eq!(notes.len(), 2, "{notes:?}");
    for (note, index) in notes.iter().zip([3, 7]) {
        let named = format!("{}/{}", proxy.host(), repository(index));
        assert_eq!(note["repository"], named.as_str(), "{note}");
        assert!(note["error"].is_string(), "{note}");
        assert!(
            text.lines()
                .any(|line| line.starts_with(&format!("regkit: {named}: "))),
            "{text}"
        );
    }
    let (rows, summary) = rows(&output);
    assert_eq!(summary["repositories"], MANY, "{summary}");
    assert_eq!(
        summary["deleted"].as_u64().unwrap() + summary["untagged"].as_u64().unwrap(),
        2 * (MANY as u64 - 2),
        "{summary}"
    );
    for (repo, was) in &before {
        let now = tags(&registry, repo);
        if [repository(3), repository(7)].contains(repo) {
            assert_eq!(&now, was, "{repo}: nothing of a repository not listed goes");
            assert!(rows.iter().all(|row| &row[0] != repo), "{repo} has no rows");
        } else {
            assert_eq!(now.keys().collect::<Vec<_>>(), ["alias", "keep"], "{repo}");
            assert_eq!(now["alias"], was["old-1"], "{repo}");
        }
    }
}

#[test]
fn on_a_terminal_the_bar_counts_repositories_and_tags() {
    let registry = Registry::start();
    populate(&registry, 3);
    let config = bins::empty_docker_config();
    let proxy = FaultProxy::start(registry.host());
    // Slow enough listings for the bar's once-a-second redraw to show a count.
    proxy.set_rules(vec![
        Rule::new(Fault::Delay(Duration::from_millis(700))).path("/tags/list"),
    ]);
    let every = format!("{}/*", proxy.host());
    let output = regkit_on_terminal_with(
        config.path(),
        &[
            "--parallel",
            "1",
            "--dry-run",
            "cleanup",
            &every,
            "--match",
            "^old-",
        ],
        "",
        &[("TERM", "xterm")],
    );
    let screen = String::from_utf8_lossy(&output.stdout).into_owned();
    assert_eq!(output.status.code(), Some(0), "{screen}");
    assert!(
        screen.contains("/3 repositories planned, ") && screen.contains(" tags"),
        "{screen}"
    );
}
