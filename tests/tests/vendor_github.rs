//! `regkit --repo-implementation github` against a GitHub REST stand-in whose package versions are the real
//! distribution registry's manifests: a tag sharing its version is removed through a tombstone version
//! while its siblings stay, whole versions go when all their tags are asked for, user and organisation
//! owners, paginated versions, the last-version refusal and `--github-delete-package`, a bad token (exit 3
//! with the scopes) and a 429 waited out.

use std::collections::BTreeMap;

use regkit_e2e::images::{self, Auth};
use regkit_e2e::registry::Registry;
use regkit_e2e::specs::OpenApi;
use regkit_e2e::vendors::github::{GitHubServer, USERS_ROUTE, declared};
use regkit_e2e::vendors::{Run, regkit};

const TOKEN: &str = "ghp_test_token";

fn run(github: &GitHubServer, token: &str, args: &[&str]) -> Run {
    let config = tempfile::tempdir().unwrap();
    let url = github.url();
    let mut all = vec![
        "--repo-implementation",
        "github",
        "--github-api-url",
        &url,
        "--repo-github-token",
        token,
    ];
    all.extend_from_slice(args);
    regkit(config.path(), &all)
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
    let deletes: Vec<String> = github
        .server
        .log()
        .into_iter()
        .filter(|(m, _, _)| m == "DELETE")
        .map(|(_, p, _)| p)
        .collect();
    assert_eq!(deletes.len(), 2, "{deletes:?}");
    assert!(
        deletes
            .iter()
            .all(|p| p.starts_with("/orgs/octo-org/packages/container/app/versions/"))
    );
    assert!(
        github.server.violations().is_empty(),
        "{:?}",
        github.server.violations()
    );
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
            .log()
            .iter()
            .any(|(m, p, _)| m == "DELETE"
                && p.starts_with("/user/packages/container/tool/versions/"))
    );
    assert!(
        github.server.violations().is_empty(),
        "{:?}",
        github.server.violations()
    );
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
    assert!(
        github.server.violations().is_empty(),
        "{:?}",
        github.server.violations()
    );
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
    assert!(!github.server.log().iter().any(|(m, _, _)| m == "DELETE"));

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
    assert!(github.server.log().iter().any(|(m, p, s)| m == "DELETE"
        && p == "/orgs/octo-org/packages/container/one"
        && *s == 204));
    assert!(
        github.server.violations().is_empty(),
        "{:?}",
        github.server.violations()
    );
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
    assert!(
        github.server.violations().is_empty(),
        "{:?}",
        github.server.violations()
    );
}

#[test]
fn routes_follow_the_published_description_except_the_owner_lookup() {
    let spec = OpenApi::load("github/api.github.com.packages-extract.json");
    assert_eq!(
        spec.mismatches(&declared()),
        [
            format!("{} {} is not in the description", USERS_ROUTE.0, USERS_ROUTE.1),
            "GET /orgs/{org}/packages/{package_type}/{package_name}/versions: status 429 is not described".to_string(),
        ]
    );
}
