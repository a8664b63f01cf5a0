//! `regkit --repo-implementation gitlab` against a GitLab API stand-in: the project found from the
//! repository path, paginated tag names, details (digest, `created_at`) fetched only when asked, one tag
//! deleted while its siblings stay, a protected tag failing alone, absent tags, a bad token (exit 3 with
//! the hint), a 429 waited out, and `cleanup GROUP/*` over the group's registry repositories.

use regkit::dates::Timestamp;
use regkit::dockerconfig::RegistryAuth;
use regkit::implementation::{self, Context, Settings};
use regkit::reference::Repository;
use regkit::registry::{Client, ClientOptions};
use regkit_e2e::specs::OpenApi;
use regkit_e2e::vendors::gitlab::{GROUPS_ROUTE, GitLabServer, declared};
use regkit_e2e::vendors::{
    DELETE_EVERY_TAG, Run, assert_listing_refused, digest, regkit, regkit_with,
};

const TOKEN: &str = "glpat-test-token";
const PROJECT: &str = "group/app";
const PATH: &str = "group/app/img";

fn run(gitlab: &GitLabServer, token: &str, args: &[&str]) -> Run {
    let config = tempfile::tempdir().unwrap();
    let url = gitlab.api_url();
    let mut all = vec![
        "--repo-implementation",
        "gitlab",
        "--gitlab-api-url",
        &url,
        "--repo-gitlab-token",
        token,
    ];
    all.extend_from_slice(args);
    regkit(config.path(), &all)
}

fn reference(gitlab: &GitLabServer, tag: &str) -> String {
    format!("{}/{PATH}:{tag}", gitlab.server.host())
}

fn requests(gitlab: &GitLabServer, suffix: &str) -> usize {
    gitlab
        .server
        .log()
        .iter()
        .filter(|(method, path, _)| method == "GET" && path.contains(suffix))
        .count()
}

#[test]
fn lists_every_page_and_fetches_details_only_when_asked() {
    let gitlab = GitLabServer::start(TOKEN);
    gitlab.push(
        PROJECT,
        PROJECT,
        "other",
        &digest(99),
        "2024-01-01T00:00:00Z",
    );
    for i in 0..230 {
        gitlab.push(
            PROJECT,
            PATH,
            &format!("t{i:03}"),
            &digest(i % 5),
            &format!("2024-03-{:02}T08:00:00.000Z", 1 + i % 28),
        );
    }
    let repository = format!("{}/{PATH}", gitlab.server.host());
    let names = run(&gitlab, TOKEN, &["tags", &repository]);
    assert_eq!(names.code, 0, "{}", names.stderr);
    let rows: Vec<serde_json::Value> = names
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 230);
    assert!(rows.iter().all(|row| row.get("digest").is_none()));
    assert_eq!(
        requests(&gitlab, "/img/tags"),
        0,
        "no details without --digests"
    );
    let tag_pages = gitlab
        .server
        .log()
        .iter()
        .filter(|(_, path, _)| path.ends_with("/tags"))
        .count();
    assert_eq!(tag_pages, 3);

    let detailed = run(&gitlab, TOKEN, &["tags", "--digests", &repository]);
    assert_eq!(detailed.code, 0, "{}", detailed.stderr);
    let rows: Vec<serde_json::Value> = detailed
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows[7]["digest"], digest(7 % 5).as_str());

    // Dates come with the details (the CLI prints none, so ask the library).
    let repository = Repository::parse(&repository).unwrap();
    let settings = Settings::with_environment(
        [
            ("gitlab-api-url".to_string(), gitlab.api_url()),
            ("repo-gitlab-token".to_string(), TOKEN.to_string()),
        ],
        Vec::<(String, String)>::new(),
    );
    let context = Context {
        client: Client::new(
            &repository.registry,
            RegistryAuth::Anonymous,
            &ClientOptions::default(),
        )
        .unwrap(),
        auth: RegistryAuth::Anonymous,
        parallel: 4,
        settings,
    };
    let vendor = implementation::build("gitlab", context).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let infos = runtime
        .block_on(vendor.list_tags(&repository, true))
        .unwrap();
    assert_eq!(infos.len(), 230);
    assert_eq!(
        infos[30].created,
        Timestamp::parse_rfc3339("2024-03-03T08:00:00.000Z")
    );
    gitlab.server.assert_no_violations();
}

#[test]
fn deleting_a_tag_keeps_its_siblings_and_a_protected_tag_fails_alone() {
    let gitlab = GitLabServer::start(TOKEN);
    for tag in ["a", "b", "c"] {
        gitlab.push(PROJECT, PATH, tag, &digest(1), "2024-01-01T00:00:00Z");
    }
    gitlab.push(PROJECT, PATH, "release", &digest(2), "2024-01-01T00:00:00Z");
    gitlab.protect("release");
    let before = gitlab.tags(PATH);
    let refs = [
        reference(&gitlab, "a"),
        reference(&gitlab, "release"),
        reference(&gitlab, "gone"),
        reference(&gitlab, "c"),
    ];
    let mut args = vec!["delete"];
    args.extend(refs.iter().map(String::as_str));
    let deleted = run(&gitlab, TOKEN, &args);
    assert_eq!(deleted.code, 1, "{}", deleted.stderr);
    let entries = deleted.entries();
    let statuses: Vec<&str> = entries
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["untagged", "failed", "absent", "untagged"]);
    assert_eq!(entries[0]["method"], "native");
    assert!(
        entries[1]["error"]
            .as_str()
            .unwrap()
            .contains("protection rule"),
        "{}",
        entries[1]
    );
    let mut expected = before.clone();
    expected.remove("a");
    expected.remove("c");
    assert_eq!(gitlab.tags(PATH), expected);

    let planned = run(&gitlab, TOKEN, &["--dry-run", "delete", &refs[1], &refs[2]]);
    assert_eq!(planned.code, 0, "{}", planned.stderr);
    let statuses: Vec<String> = planned
        .entries()
        .iter()
        .map(|e| e["status"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(statuses, ["planned", "absent"]);
    assert_eq!(gitlab.tags(PATH), expected);
    gitlab.server.assert_no_violations();
}

#[test]
fn a_delete_whose_manifest_is_not_served_over_v2_goes_ahead_and_says_it_cannot_be_undone() {
    // The journal is on (`regkit_with` without REGKIT_NO_JOURNAL); the stand-in serves GitLab's API only.
    let gitlab = GitLabServer::start(TOKEN);
    for tag in ["a", "b"] {
        gitlab.push(PROJECT, PATH, tag, &digest(1), "2024-01-01T00:00:00Z");
    }
    let config = tempfile::tempdir().unwrap();
    let url = gitlab.api_url();
    let target = reference(&gitlab, "a");
    let deleted = regkit_with(
        config.path(),
        &[
            "--repo-implementation",
            "gitlab",
            "--gitlab-api-url",
            &url,
            "--repo-gitlab-token",
            TOKEN,
            "delete",
            &target,
        ],
        &[],
    );
    assert_eq!(deleted.code, 0, "{}", deleted.stderr);
    assert_eq!(deleted.entries()[0]["status"], "untagged");
    assert!(
        deleted
            .stderr
            .contains("1 change(s) were sent without an undo journal line")
            && deleted.stderr.contains("cannot be read over v2"),
        "{}",
        deleted.stderr
    );
    assert!(!deleted.stderr.contains(TOKEN), "{}", deleted.stderr);
    assert_eq!(gitlab.tags(PATH).len(), 1);
}

#[test]
fn a_token_without_the_role_exits_3_naming_it_and_the_project_is_found_once() {
    let gitlab = GitLabServer::start(TOKEN);
    gitlab.add_reader("glpat-reporter");
    let tags = ["a", "b", "c", "d", "e"];
    for tag in tags {
        gitlab.push(PROJECT, PATH, tag, &digest(1), "2024-01-01T00:00:00Z");
    }
    let refs: Vec<String> = tags.iter().map(|tag| reference(&gitlab, tag)).collect();
    let mut args = vec!["delete"];
    args.extend(refs.iter().map(String::as_str));
    let refused = run(&gitlab, "glpat-reporter", &args);
    assert_eq!(refused.code, 3, "{}", refused.stderr);
    for entry in refused.entries() {
        let error = entry["error"].as_str().unwrap();
        assert!(
            error.contains("Developer role") && !error.contains("protection rule"),
            "{error}"
        );
    }
    assert_eq!(gitlab.tags(PATH).len(), 5);
    let lookups = gitlab
        .server
        .log()
        .into_iter()
        .filter(|(m, p, _)| m == "GET" && p.ends_with("/registry/repositories"))
        .count();
    // One lookup per run: group/app/img is no project (404), group/app is.
    assert_eq!(lookups, 2, "one project lookup per run");
    gitlab.server.assert_no_violations();
}

#[test]
fn a_bad_token_exits_3_with_the_hint() {
    let gitlab = GitLabServer::start(TOKEN);
    gitlab.push(PROJECT, PATH, "a", &digest(1), "2024-01-01T00:00:00Z");
    let failed = run(
        &gitlab,
        "glpat-wrong",
        &["delete", &reference(&gitlab, "a")],
    );
    assert_eq!(failed.code, 3, "{}", failed.stderr);
    assert!(
        failed.stderr.contains("--repo-gitlab-token") && failed.stderr.contains("api scope"),
        "{}",
        failed.stderr
    );
    assert!(!failed.stderr.contains("glpat-wrong"));
    assert_eq!(gitlab.tags(PATH).len(), 1);
    gitlab.server.assert_no_violations();
}

#[test]
fn a_rate_limited_listing_is_retried_after_the_wait() {
    let gitlab = GitLabServer::start(TOKEN);
    gitlab.push(PROJECT, PATH, "a", &digest(1), "2024-01-01T00:00:00Z");
    gitlab.throttle(1);
    let started = std::time::Instant::now();
    let listed = run(
        &gitlab,
        TOKEN,
        &["tags", &format!("{}/{PATH}", gitlab.server.host())],
    );
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    assert_eq!(listed.stdout.lines().count(), 1);
    assert!(started.elapsed().as_secs_f64() >= 1.0);
    let statuses: Vec<u16> = gitlab
        .server
        .log()
        .iter()
        .filter(|(_, p, _)| p.ends_with("/tags"))
        .map(|(_, _, s)| *s)
        .collect();
    assert_eq!(statuses, [429, 200]);
    gitlab.server.assert_no_violations();
}

#[test]
fn routes_follow_the_published_description() {
    let spec = OpenApi::load("gitlab/openapi_v2.container-registry.extract.yaml");
    // 429 is GitLab's general rate-limit answer (registry-apis.md §8), not listed per operation; the
    // group listing is described in container_registry.md only (the extract leaves it out).
    assert_eq!(
        spec.mismatches(&declared()),
        [
            format!("{} {} is not in the description", GROUPS_ROUTE.0, GROUPS_ROUTE.1),
            "GET /api/v4/projects/{id}/registry/repositories/{repository_id}/tags: status 429 is not described".to_string(),
        ]
    );
    let markdown =
        std::fs::read_to_string(regkit_e2e::specs::dir().join("gitlab/container_registry.md"))
            .unwrap();
    assert!(markdown.contains("GET /groups/:id/registry/repositories"));
}

#[test]
fn a_group_pattern_cleans_the_groups_registry_repositories() {
    let gitlab = GitLabServer::start(TOKEN);
    for (n, (project, path)) in [
        ("acme/app", "acme/app"),
        ("acme/tool", "acme/tool/cli"),
        ("other/app", "other/app"),
    ]
    .into_iter()
    .enumerate()
    {
        gitlab.push(project, path, "old", &digest(2 * n), "2024-01-01T00:00:00Z");
        gitlab.push(
            project,
            path,
            "new",
            &digest(2 * n + 1),
            "2024-02-01T00:00:00Z",
        );
    }
    let host = gitlab.server.host();
    let pattern = format!("{host}/acme/*");
    let swept = run(
        &gitlab,
        TOKEN,
        &["cleanup", &pattern, "--keep-last", "1", "--yes"],
    );
    assert_eq!(swept.code, 0, "{}\n{}", swept.stderr, swept.stdout);
    let removed: Vec<String> = swept
        .stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|row| row["result"] == "untagged" || row["result"] == "deleted")
        .map(|row| {
            format!(
                "{}:{}",
                row["repository"].as_str().unwrap(),
                row["tag"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        removed,
        [
            format!("{host}/acme/app:old"),
            format!("{host}/acme/tool/cli:old")
        ],
        "{}",
        swept.stdout
    );
    // Each repository's tags went in its own project: one vendor serves both.
    for path in ["acme/app", "acme/tool/cli"] {
        assert_eq!(gitlab.tags(path).into_keys().collect::<Vec<_>>(), ["new"]);
    }
    assert_eq!(gitlab.tags("other/app").len(), 2);
    assert_eq!(requests(&gitlab, "/groups/acme/registry/repositories"), 1);
    gitlab.server.assert_no_violations();
}

#[test]
fn a_listing_that_never_ends_fails_and_nothing_is_deleted() {
    let gitlab = GitLabServer::start(TOKEN);
    for i in 0..3 {
        gitlab.push(
            PROJECT,
            PATH,
            &format!("t{i}"),
            &digest(i),
            "2024-03-01T08:00:00.000Z",
        );
    }
    gitlab.paginate_forever();
    let repository = format!("{}/{PATH}", gitlab.server.host());
    let listed = run(&gitlab, TOKEN, &["tags", &repository]);
    let swept = run(
        &gitlab,
        TOKEN,
        &[&["cleanup", repository.as_str()][..], &DELETE_EVERY_TAG].concat(),
    );
    assert_listing_refused(
        &listed,
        &swept,
        &gitlab.server.deletes(),
        // Finding the repository among the project's is the first listing that never ends.
        &format!("list registry repositories of projects {PROJECT}"),
        "page 2 is page 1 again",
    );
    assert_eq!(gitlab.tags(PATH).len(), 3);
    gitlab.server.assert_no_violations();
}
