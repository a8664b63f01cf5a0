//! `regkit --repo-implementation github` against a GitHub REST stand-in whose package versions are the real
//! distribution registry's manifests: a tag sharing its version is removed through a tombstone version
//! while its siblings stay, whole versions go when all their tags are asked for, user and organisation
//! owners, paginated versions, the last-version refusal and `--github-delete-package`, a bad token (exit 3
//! with the scopes), a 429 waited out, and `cleanup --untagged`: untagged versions go by digest while the
//! children of indexes still listed stay (a child of an untagged index goes on the next run); `cleanup
//! OWNER/*` takes the owner's container packages from the packages listing (ghcr.io has no catalog).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use regkit_e2e::images::{self, Auth, Format, Pusher};
use regkit_e2e::registry::Registry;
use regkit_e2e::specs::OpenApi;
use regkit_e2e::vendors::github::{
    self, GitHubServer, LimitHint, USER_ROUTE, USERS_ROUTE, declared,
};
use regkit_e2e::vendors::{DELETE_EVERY_TAG, Run, assert_listing_refused, regkit, regkit_with};
use serde_json::Value;

const TOKEN: &str = "ghp_test_token";

fn run(github: &GitHubServer, token: &str, args: &[&str]) -> Run {
    let config = tempfile::tempdir().unwrap();
    let url = github.url();
    regkit(config.path(), &github_args(&url, token, args))
}

/// `args` for the stand-in at `url`, with `token`.
fn github_args<'a>(url: &'a str, token: &'a str, args: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec![
        "--repo-implementation",
        "github",
        "--github-api-url",
        url,
        "--repo-github-token",
        token,
    ];
    all.extend_from_slice(args);
    all
}

fn tags(registry: &Registry, repo: &str) -> BTreeMap<String, String> {
    images::tag_digests(&registry.url(), repo, &Auth::None)
}

fn statuses(run: &Run) -> Vec<(String, String)> {
    run.entries()
        .iter()
        .map(|e| {
            (
                e["status"].as_str().unwrap().to_string(),
                e["method"].as_str().unwrap_or("-").to_string(),
            )
        })
        .collect()
}

#[test]
fn organisation_tags_go_by_tombstone_or_whole_version_and_siblings_stay() {
    let registry = Registry::start();
    let github = GitHubServer::start(&registry.url(), TOKEN, "octocat");
    github.add_organisation("octo-org");
    let repo = "octo-org/app";
    images::push(&registry.url(), repo, &["a", "b", "c"], &Auth::None);
    images::push(&registry.url(), repo, &["solo"], &Auth::None);
    images::push(&registry.url(), repo, &["keep"], &Auth::None);
    let before = tags(&registry, repo);
    let reference = |tag: &str| format!("{}/{repo}:{tag}", registry.host());
    let deleted = run(
        &github,
        TOKEN,
        &[
            "delete",
            &reference("a"),
            &reference("solo"),
            &reference("missing"),
        ],
    );
    assert_eq!(deleted.code, 0, "{}", deleted.stderr);
    assert_eq!(
        statuses(&deleted),
        [
            ("untagged".into(), "tombstone".into()),
            ("deleted".into(), "native".into()),
            ("absent".into(), "-".into())
        ]
    );
    assert_eq!(deleted.entries()[0]["digest"], before["a"].as_str());
    let mut expected = before.clone();
    expected.remove("a");
    expected.remove("solo");
    assert_eq!(tags(&registry, repo), expected);
    // The tombstone was pushed through v2 and its own version deleted through the organisation's API.
    let deletes = github.server.deletes();
    assert_eq!(deletes.len(), 2, "{deletes:?}");
    assert!(
        deletes
            .iter()
            .all(|(p, _)| p.starts_with("/orgs/octo-org/packages/container/app/versions/"))
    );
    github.server.assert_no_violations();
}

/// GitHub's delete reads each manifest over v2 for the undo journal first; undo puts the tombstoned tag
/// and the deleted version back over v2, and the map of tags is what it was.
#[test]
fn undo_after_a_github_delete_puts_the_tags_back_over_v2() {
    let registry = Registry::start();
    let github = GitHubServer::start(&registry.url(), TOKEN, "octocat");
    github.add_organisation("octo-org");
    let repo = "octo-org/app";
    images::push(&registry.url(), repo, &["a", "b"], &Auth::None);
    images::push(&registry.url(), repo, &["solo"], &Auth::None);
    let before = tags(&registry, repo);
    let config = tempfile::tempdir().unwrap();
    let journal = config.path().join("run.jsonl");
    let url = github.url();
    let reference = |tag: &str| format!("{}/{repo}:{tag}", registry.host());
    let (a, solo) = (reference("a"), reference("solo"));
    let args = ["delete", &a, &solo, "--journal", journal.to_str().unwrap()];
    let deleted = regkit_with(config.path(), &github_args(&url, TOKEN, &args), &[]);
    assert_eq!(deleted.code, 0, "{}", deleted.stderr);
    let written = std::fs::read_to_string(&journal).unwrap();
    assert!(
        written.contains("\"change\":\"tombstone-untag\""),
        "{written}"
    );
    assert!(written.contains("\"change\":\"vendor-untag\""), "{written}");
    assert_ne!(tags(&registry, repo), before);

    let undone = regkit_with(config.path(), &["undo", journal.to_str().unwrap()], &[]);
    assert_eq!(undone.code, 0, "{}\n{}", undone.stdout, undone.stderr);
    let statuses: Vec<String> = undone
        .entries()
        .iter()
        .map(|entry| entry["status"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(statuses, ["restored", "restored"]);
    assert_eq!(tags(&registry, repo), before);
    github.server.assert_no_violations();
}

#[test]
fn user_packages_page_through_versions() {
    let registry = Registry::start();
    let github = GitHubServer::start(&registry.url(), TOKEN, "octocat");
    let repo = "octocat/tool";
    let names: Vec<String> = (0..105).map(|i| format!("v{i:03}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    images::push_distinct(&registry.url(), repo, &refs, &Auth::None);
    images::push(&registry.url(), repo, &["x", "y"], &Auth::None);
    let listed = run(
        &github,
        TOKEN,
        &["tags", &format!("{}/{repo}", registry.host())],
    );
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    let rows: Vec<serde_json::Value> = listed
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 107);
    let pages: Vec<u16> = github
        .server
        .log()
        .into_iter()
        .filter(|(_, p, _)| p.ends_with("/versions"))
        .map(|(_, _, s)| s)
        .collect();
    assert_eq!(pages, [200, 200], "two pages of /user versions");

    let before = tags(&registry, repo);
    let deleted = run(
        &github,
        TOKEN,
        &["delete", &format!("{}/{repo}:x", registry.host())],
    );
    assert_eq!(deleted.code, 0, "{}", deleted.stderr);
    assert_eq!(
        statuses(&deleted),
        [("untagged".into(), "tombstone".into())]
    );
    let mut expected = before;
    expected.remove("x");
    assert_eq!(tags(&registry, repo), expected);
    assert!(
        github
            .server
            .deletes()
            .iter()
            .any(|(p, _)| p.starts_with("/user/packages/container/tool/versions/"))
    );
    github.server.assert_no_violations();
}

#[test]
fn another_users_package_is_reached_by_its_owner_never_as_the_tokens_own() {
    let registry = Registry::start();
    let github = GitHubServer::start(&registry.url(), TOKEN, "bob");
    github.add_user("alice");
    for owner in ["alice", "bob"] {
        let repo = format!("{owner}/app");
        images::push_distinct(&registry.url(), &repo, &["v1", "v2"], &Auth::None);
    }
    let (alice_before, bob_before) = (tags(&registry, "alice/app"), tags(&registry, "bob/app"));
    let reference = |repo: &str| format!("{}/{repo}:v1", registry.host());
    let listed = run(
        &github,
        TOKEN,
        &["tags", &format!("{}/alice/app", registry.host())],
    );
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    assert_eq!(listed.stdout.lines().count(), 2);

    let deleted = run(
        &github,
        TOKEN,
        &["delete", &reference("alice/app"), &reference("bob/app")],
    );
    assert_eq!(deleted.code, 3, "{}", deleted.stderr);
    let entries = deleted.entries();
    let alice = &entries[0];
    assert_eq!(alice["status"], "failed");
    let error = alice["error"].as_str().unwrap();
    assert!(
        error.contains("user alice's") && error.contains("the token is bob's"),
        "{error}"
    );
    assert_eq!(entries[1]["status"], "deleted");
    assert_eq!(tags(&registry, "alice/app"), alice_before);
    let mut bob_after = bob_before;
    bob_after.remove("v1");
    assert_eq!(tags(&registry, "bob/app"), bob_after);
    let log = github.server.log();
    let token_lookups = log.iter().filter(|(m, p, _)| m == "GET" && p == "/user");
    assert_eq!(token_lookups.count(), 2, "one GET /user per run: {log:?}");
    let deletes = github.server.deletes();
    assert!(
        deletes.iter().any(
            |(p, s)| p.starts_with("/users/alice/packages/container/app/versions/") && *s == 403
        ),
        "{deletes:?}"
    );
    assert!(deletes.iter().all(|(p, _)| !p.starts_with("/user/")
        || p.starts_with("/user/packages/container/app/versions/")),);
    assert_eq!(deletes.len(), 2, "{deletes:?}");
    github.server.assert_no_violations();
}

/// `octo-org/app` with `n` tags on distinct versions plus `keep`, limited by a secondary limit.
fn limited(
    n: usize,
    per_window: usize,
    window: u64,
    hint: LimitHint,
) -> (Registry, GitHubServer, Vec<String>) {
    github::limited(TOKEN, n, per_window, Duration::from_secs(window), hint)
}

#[test]
fn a_secondary_limit_is_waited_out_and_nothing_is_sent_during_the_wait() {
    let (registry, github, refs) = limited(12, 4, 1, LimitHint::RetryAfter(1));
    let mut args = vec!["--github-delete-interval", "0", "--parallel", "4", "delete"];
    args.extend(refs.iter().map(String::as_str));
    let deleted = run(&github, TOKEN, &args);
    assert_eq!(deleted.code, 0, "{}", deleted.stderr);
    assert!(
        statuses(&deleted)
            .iter()
            .all(|(status, _)| status == "deleted")
    );
    assert_eq!(
        tags(&registry, "octo-org/app").keys().collect::<Vec<_>>(),
        ["keep"]
    );
    let (refused, early) = github.limit_counts();
    assert!(refused >= 1, "the limit was reached");
    assert_eq!(early, 0, "no request inside a wait");
    github.server.assert_no_violations();
}

/// GitHub's reset is a unix second; a server whose window frees within that second refuses a request sent
/// when the second starts.
#[test]
fn a_reset_time_is_waited_past_its_whole_second() {
    let (registry, github, refs) = limited(9, 3, 2, LimitHint::Reset(2));
    let mut args = vec!["--github-delete-interval", "0", "delete"];
    args.extend(refs.iter().map(String::as_str));
    let deleted = run(&github, TOKEN, &args);
    assert_eq!(deleted.code, 0, "{}", deleted.stderr);
    assert_eq!(tags(&registry, "octo-org/app").len(), 1);
    let (refused, early) = github.limit_counts();
    assert!(refused >= 1, "the limit was reached");
    assert_eq!(early, 0, "no request inside a wait");
    github.server.assert_no_violations();
}

#[test]
fn a_wait_past_the_timeout_stops_cleanly_with_finished_rows_reported() {
    let (registry, github, refs) = limited(6, 3, 600, LimitHint::Reset(600));
    let mut args = vec!["--github-delete-interval", "0", "--timeout", "3s", "delete"];
    args.extend(refs.iter().map(String::as_str));
    let started = std::time::Instant::now();
    let stopped = run(&github, TOKEN, &args);
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    assert_eq!(stopped.code, 1, "{}", stopped.stderr);
    let entries = stopped.entries();
    assert_eq!(entries.len(), 6);
    let deleted = entries.iter().filter(|e| e["status"] == "deleted").count();
    assert_eq!(deleted, 3, "{}", stopped.stdout);
    for entry in entries.iter().filter(|e| e["status"] != "deleted") {
        let error = entry["error"].as_str().unwrap();
        assert!(
            error.contains("rate limiting") || error.contains("--timeout"),
            "{error}"
        );
        assert!(!error.contains("permission denied"), "{error}");
    }
    assert_eq!(tags(&registry, "octo-org/app").len(), 4);
    assert_eq!(
        github.limit_counts(),
        (1, 0),
        "one refusal, nothing sent into the wait"
    );
    github.server.assert_no_violations();
}

#[test]
fn repeated_refusals_stop_the_run_after_three() {
    let registry = Registry::start();
    let github = GitHubServer::start(&registry.url(), TOKEN, "bob");
    github.add_user("alice");
    let names: Vec<String> = (0..10).map(|i| format!("t{i}")).collect();
    let mut all: Vec<&str> = names.iter().map(String::as_str).collect();
    all.push("keep");
    images::push_distinct(&registry.url(), "alice/app", &all, &Auth::None);
    let mut args = vec!["--github-delete-interval", "0", "delete"];
    let refs: Vec<String> = names
        .iter()
        .map(|tag| format!("{}/alice/app:{tag}", registry.host()))
        .collect();
    args.extend(refs.iter().map(String::as_str));
    let stopped = run(&github, TOKEN, &args);
    assert_eq!(stopped.code, 3, "{}", stopped.stderr);
    let entries = stopped.entries();
    assert_eq!(entries.len(), 10);
    assert!(entries.iter().all(|e| e["status"] == "failed"));
    let skipped = entries
        .iter()
        .filter(|e| e["error"].as_str().unwrap().starts_with("not attempted"))
        .count();
    assert_eq!(skipped, 7, "{}", stopped.stdout);
    assert_eq!(github.server.deletes().len(), 3);
    assert_eq!(tags(&registry, "alice/app").len(), 11);
    github.server.assert_no_violations();
}

#[test]
fn organisation_listing_waits_out_a_429() {
    let registry = Registry::start();
    let github = GitHubServer::start(&registry.url(), TOKEN, "octocat");
    github.add_organisation("octo-org");
    images::push(&registry.url(), "octo-org/svc", &["a"], &Auth::None);
    github.throttle(1);
    let listed = run(
        &github,
        TOKEN,
        &["tags", &format!("{}/octo-org/svc", registry.host())],
    );
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    assert_eq!(listed.stdout.lines().count(), 1);
    let pages: Vec<u16> = github
        .server
        .log()
        .into_iter()
        .filter(|(_, p, _)| p.ends_with("/versions"))
        .map(|(_, _, s)| s)
        .collect();
    assert_eq!(pages, [429, 200]);
    github.server.assert_no_violations();
}

#[test]
fn the_last_version_is_refused_unless_the_package_is_named() {
    let registry = Registry::start();
    let github = GitHubServer::start(&registry.url(), TOKEN, "octocat");
    github.add_organisation("octo-org");
    let repo = "octo-org/one";
    images::push(&registry.url(), repo, &["x", "y"], &Auth::None);
    let reference = |tag: &str| format!("{}/{repo}:{tag}", registry.host());
    let refused = run(
        &github,
        TOKEN,
        &["delete", &reference("x"), &reference("y")],
    );
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("--github-delete-package one"),
        "{}",
        refused.stderr
    );
    assert_eq!(tags(&registry, repo).len(), 2);
    assert!(github.server.deletes().is_empty());

    let wrong = run(
        &github,
        TOKEN,
        &[
            "--github-delete-package",
            "other",
            "delete",
            &reference("x"),
            &reference("y"),
        ],
    );
    assert_eq!(wrong.code, 1, "{}", wrong.stderr);
    assert_eq!(tags(&registry, repo).len(), 2);

    let deleted = run(
        &github,
        TOKEN,
        &[
            "--github-delete-package",
            "one",
            "delete",
            &reference("x"),
            &reference("y"),
        ],
    );
    assert_eq!(deleted.code, 0, "{}", deleted.stderr);
    assert_eq!(
        statuses(&deleted),
        [
            ("deleted".into(), "native".into()),
            ("deleted".into(), "native".into())
        ]
    );
    assert!(tags(&registry, repo).is_empty());
    assert!(
        github
            .server
            .deletes()
            .contains(&("/orgs/octo-org/packages/container/one".into(), 204))
    );
    github.server.assert_no_violations();
}

#[test]
fn a_bad_token_exits_3_naming_the_scopes() {
    let registry = Registry::start();
    let github = GitHubServer::start(&registry.url(), TOKEN, "octocat");
    github.add_organisation("octo-org");
    images::push(&registry.url(), "octo-org/app", &["a", "b"], &Auth::None);
    let failed = run(
        &github,
        "ghp_wrong",
        &["delete", &format!("{}/octo-org/app:a", registry.host())],
    );
    assert_eq!(failed.code, 3, "{}", failed.stderr);
    assert!(
        failed.stderr.contains("delete:packages")
            && failed.stderr.contains("GITHUB_TOKEN may not be enough"),
        "{}",
        failed.stderr
    );
    assert!(!failed.stderr.contains("ghp_wrong"));
    assert_eq!(tags(&registry, "octo-org/app").len(), 2);
    github.server.assert_no_violations();
}

#[test]
fn routes_follow_the_published_description_except_the_owner_lookup() {
    let spec = OpenApi::load("github/api.github.com.packages-extract.json");
    assert_eq!(
        spec.mismatches(&declared()),
        [
            format!("{} {} is not in the description", USERS_ROUTE.0, USERS_ROUTE.1),
            format!("{} {} is not in the description", USER_ROUTE.0, USER_ROUTE.1),
            "GET /orgs/{org}/packages/{package_type}/{package_name}/versions: status 429 is not described".to_string(),
        ]
    );
}

/// The manifests among `digests` that the registry still holds.
fn present(registry: &Registry, repo: &str, digests: &[&String]) -> BTreeSet<String> {
    let pusher = Pusher::new(&registry.url(), &Auth::None);
    digests
        .iter()
        .filter(|digest| pusher.head_manifest(repo, digest).is_some())
        .map(|digest| digest.to_string())
        .collect()
}

/// `regkit cleanup REPO --untagged` keeping every tag, with a JSON report: the rows of untagged manifests
/// by digest, and the report.
fn sweep(
    github: &GitHubServer,
    repository: &str,
    extra: &[&str],
) -> (BTreeMap<String, Value>, Value) {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let mut args = vec![
        "cleanup",
        repository,
        "--keep-last",
        "100",
        "--untagged",
        "--report",
        report.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let swept = run(github, TOKEN, &args);
    assert_eq!(swept.code, 0, "{}\n{}", swept.stderr, swept.stdout);
    regkit_e2e::report::untagged_rows(&report)
}

#[test]
fn untagged_sweep_removes_untagged_versions_and_spares_index_children() {
    let registry = Registry::start();
    let github = GitHubServer::start(&registry.url(), TOKEN, "octocat");
    github.add_organisation("octo-org");
    let repo = "octo-org/multi";
    let url = registry.url();
    // A tagged multi-arch image: its children are untagged versions that must stay.
    let latest = images::push_index(&url, repo, "latest", &Auth::None, Format::Oci);
    // `edge` moves to a new index: the old one and its children become untagged versions.
    let old_edge = images::push_index(&url, repo, "edge", &Auth::None, Format::Oci);
    github.sync(repo);
    let edge = images::push_index(&url, repo, "edge", &Auth::None, Format::Oci);
    // `v1` moves to a new image: the old image becomes an untagged version.
    let moved = images::push(&url, repo, &["v1"], &Auth::None);
    github.sync(repo);
    images::push(&url, repo, &["v1"], &Auth::None);
    github.sync(repo);
    let tags_before = tags(&registry, repo);
    let every: Vec<&String> = [&latest, &old_edge, &edge]
        .into_iter()
        .flat_map(|index| std::iter::once(&index.digest).chain(&index.children))
        .chain([&moved])
        .collect();
    assert_eq!(present(&registry, repo, &every).len(), every.len());
    let repository = format!("{}/{repo}", registry.host());
    let swept: BTreeSet<String> = [old_edge.digest.clone(), moved.clone()].into();

    let (planned, document) = sweep(&github, &repository, &["--dry-run"]);
    assert_eq!(planned.keys().cloned().collect::<BTreeSet<_>>(), swept);
    for row in planned.values() {
        assert_eq!(row["action"], "delete", "{row}");
        assert_eq!(row["rule"], "untagged", "{row}");
        assert_eq!(row["result"], "planned", "{row}");
        assert_eq!(row["reason"], "no tag points at it", "{row}");
        assert_eq!(row["date_source"], "vendor", "{row}");
        assert!(
            row["created"].as_str().unwrap().starts_with("2024-05-"),
            "{row}"
        );
    }
    assert_eq!(document["summary"]["planned"], 2, "{document}");
    assert_eq!(present(&registry, repo, &every).len(), every.len());
    assert!(github.server.deletes().is_empty());

    let (deleted, document) = sweep(&github, &repository, &["--yes"]);
    assert_eq!(deleted.keys().cloned().collect::<BTreeSet<_>>(), swept);
    for row in deleted.values() {
        assert_eq!(row["result"], "deleted", "{row}");
        assert_eq!(row["method"], "digest", "{row}");
    }
    assert_eq!(document["summary"]["deleted"], 2, "{document}");
    let mut left: BTreeSet<String> = every.iter().map(|d| d.to_string()).collect();
    left.retain(|digest| !swept.contains(digest));
    assert_eq!(present(&registry, repo, &every), left);
    assert_eq!(tags(&registry, repo), tags_before);
    let deletes = github.server.deletes();
    assert_eq!(deletes.len(), 2, "{deletes:?}");
    assert!(
        deletes
            .iter()
            .all(|(p, _)| p.starts_with("/orgs/octo-org/packages/container/multi/versions/"))
    );

    // The old index is gone, so its children are plain untagged versions now; the tagged indexes' stay.
    let (children, _) = sweep(&github, &repository, &["--yes"]);
    assert_eq!(
        children.keys().cloned().collect::<BTreeSet<_>>(),
        old_edge.children.iter().cloned().collect()
    );
    for child in &old_edge.children {
        left.remove(child);
    }
    assert_eq!(present(&registry, repo, &every), left);
    assert_eq!(tags(&registry, repo), tags_before);
    github.server.assert_no_violations();
}

/// A sweep that would remove every version (the last tag and the untagged rest) meets GitHub's
/// last-version refusal like any delete: nothing goes until `--github-delete-package` names the package.
#[test]
fn an_untagged_sweep_emptying_the_package_is_refused_unless_it_is_named() {
    let registry = Registry::start();
    let github = GitHubServer::start(&registry.url(), TOKEN, "octocat");
    github.add_organisation("octo-org");
    let repo = "octo-org/gone";
    let url = registry.url();
    let old = images::push(&url, repo, &["a"], &Auth::None);
    github.sync(repo);
    let new = images::push(&url, repo, &["a"], &Auth::None);
    let repository = format!("{}/{repo}", registry.host());
    let every = [&old, &new];
    let args = ["cleanup", &repository, "--all", "--untagged", "--yes"];
    let refused = run(&github, TOKEN, &args);
    assert_eq!(refused.code, 1, "{}\n{}", refused.stderr, refused.stdout);
    assert!(
        refused.stderr.contains("--github-delete-package gone"),
        "{}",
        refused.stderr
    );
    assert_eq!(present(&registry, repo, &every).len(), 2);
    assert!(github.server.deletes().is_empty());

    let mut named = vec!["--github-delete-package", "gone"];
    named.extend(args);
    let deleted = run(&github, TOKEN, &named);
    assert_eq!(deleted.code, 0, "{}\n{}", deleted.stderr, deleted.stdout);
    assert!(present(&registry, repo, &every).is_empty());
    assert!(
        github
            .server
            .deletes()
            .contains(&("/orgs/octo-org/packages/container/gone".into(), 204))
    );
    github.server.assert_no_violations();
}

/// The repositories a cleanup's JSON rows delete tags in, and how many tags each.
fn cleaned(run: &Run) -> BTreeMap<String, usize> {
    let mut repositories = BTreeMap::new();
    for row in run
        .stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|row| row["result"] == "deleted")
    {
        *repositories
            .entry(row["repository"].as_str().unwrap().to_string())
            .or_insert(0) += 1;
    }
    repositories
}

#[test]
fn an_owner_pattern_cleans_the_owners_container_packages() {
    let registry = Registry::start();
    let github = GitHubServer::start(&registry.url(), TOKEN, "octocat");
    github.add_organisation("octo-org");
    let host = registry.host();
    for repo in ["octo-org/app", "octo-org/tools/cli", "octocat/app"] {
        images::push_distinct(&registry.url(), repo, &["v1", "v2"], &Auth::None);
    }
    let pattern = format!("{host}/octo-org/*");
    let swept = run(
        &github,
        TOKEN,
        &["cleanup", &pattern, "--keep-last", "1", "--yes"],
    );
    assert_eq!(swept.code, 0, "{}\n{}", swept.stderr, swept.stdout);
    assert_eq!(
        cleaned(&swept),
        BTreeMap::from([
            (format!("{host}/octo-org/app"), 1),
            (format!("{host}/octo-org/tools/cli"), 1),
        ]),
        "{}",
        swept.stdout
    );
    assert_eq!(tags(&registry, "octo-org/app").len(), 1);
    assert_eq!(tags(&registry, "octo-org/tools/cli").len(), 1);
    assert_eq!(tags(&registry, "octocat/app").len(), 2);
    // A user's packages come from /users/{username}/packages, whoever owns the token.
    let user = run(
        &github,
        TOKEN,
        &[
            "cleanup",
            &format!("{host}/octocat/*"),
            "--keep-last",
            "1",
            "--yes",
        ],
    );
    assert_eq!(user.code, 0, "{}\n{}", user.stderr, user.stdout);
    assert_eq!(
        cleaned(&user),
        BTreeMap::from([(format!("{host}/octocat/app"), 1)])
    );
    let lists: Vec<String> = github
        .server
        .log()
        .into_iter()
        .filter(|(_, p, _)| p.ends_with("/packages"))
        .map(|(_, p, _)| p)
        .collect();
    assert_eq!(
        lists,
        ["/orgs/octo-org/packages", "/users/octocat/packages"]
    );
    github.server.assert_no_violations();
}

#[test]
fn a_listing_that_never_ends_fails_and_nothing_is_deleted() {
    let registry = Registry::start();
    let github = GitHubServer::start(&registry.url(), TOKEN, "octocat");
    github.add_organisation("octo-org");
    let repo = "octo-org/app";
    images::push(&registry.url(), repo, &["a", "b", "c"], &Auth::None);
    let before = tags(&registry, repo);
    github.paginate_forever();
    let repository = format!("{}/{repo}", registry.host());
    let listed = run(&github, TOKEN, &["tags", &repository]);
    let swept = run(
        &github,
        TOKEN,
        &[&["cleanup", repository.as_str()][..], &DELETE_EVERY_TAG].concat(),
    );
    assert_listing_refused(
        &listed,
        &swept,
        &github.server.deletes(),
        "GitHub API: list versions of package app",
        "page 2 is page 1 again",
    );
    assert_eq!(tags(&registry, repo), before);
    github.server.assert_no_violations();
}
