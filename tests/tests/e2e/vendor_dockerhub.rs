//! `regkit --repo-implementation dockerhub` against a Hub API stand-in: paginated listing with dates, one
//! tag deleted while its siblings stay, `x` and `library/x` as one repository, absent tags, sign-in
//! failures and PAT refusal (exit 3 with the credential that works), a 429 waited out, and `cleanup
//! NAMESPACE/*` over the namespace's repositories from Hub's listing.

use std::collections::BTreeMap;
use std::time::Instant;

use base64::Engine;
use regkit::dates::Timestamp;
use regkit::dockerconfig::RegistryAuth;
use regkit::implementation::{self, Context, Settings};
use regkit::reference::Repository;
use regkit::registry::{Client, ClientOptions};
use regkit_e2e::specs::OpenApi;
use regkit_e2e::vendors::dockerhub::{HubServer, PAT_REFUSAL, UNDOCUMENTED_DELETE};
use regkit_e2e::vendors::{DELETE_EVERY_TAG, Run, assert_listing_refused, digest, regkit};
use serde_json::Value;

const REPO: &str = "library/app";

fn hub() -> HubServer {
    let hub = HubServer::start();
    hub.add_account("alice", "s3cret-pw", Some("dckr_pat_alice"));
    hub
}

/// `regkit` forced to dockerhub with the API at the stand-in; the registry host is the stand-in's (never
/// contacted: Hub reads and deletes go through its API).
fn run(hub: &HubServer, config: &std::path::Path, extra: &[&str], args: &[&str]) -> Run {
    let url = hub.url();
    let mut all = vec![
        "--repo-implementation",
        "dockerhub",
        "--docker-hub-api-url",
        &url,
    ];
    all.extend_from_slice(extra);
    all.extend_from_slice(args);
    regkit(config, &all)
}

fn reference(hub: &HubServer, path: &str, tag: &str) -> String {
    format!("{}/{path}:{tag}", hub.server.host())
}

fn login<'a>() -> [&'a str; 4] {
    [
        "--repo-docker-hub-username",
        "alice",
        "--repo-docker-hub-password",
        "s3cret-pw",
    ]
}

fn statuses(run: &Run) -> Vec<(String, String)> {
    run.entries()
        .iter()
        .map(|e| {
            (
                e["reference"].as_str().unwrap().to_string(),
                e["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn lists_every_page_with_digests_and_dates() {
    let hub = hub();
    for i in 0..230 {
        hub.push(
            REPO,
            &format!("t{i:03}"),
            &digest(i % 7),
            &format!("2024-02-{:02}T10:00:00Z", 1 + i % 28),
        );
    }
    let config = tempfile::tempdir().unwrap();
    let listed = run(
        &hub,
        config.path(),
        &login(),
        &["tags", &format!("{}/app", hub.server.host())],
    );
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    let tags: Vec<Value> = listed
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(tags.len(), 230);
    assert_eq!(tags[0]["tag"], "t000");
    let pages: Vec<_> = hub
        .server
        .log()
        .into_iter()
        .filter(|(method, path, status)| {
            method == "GET" && path.ends_with("/tags") && *status == 200
        })
        .collect();
    assert_eq!(pages.len(), 3, "{pages:?}");

    // Dates and digests come with the listing (the CLI prints no dates, so ask the library).
    let repository = Repository::parse(&format!("{}/app", hub.server.host())).unwrap();
    let settings = Settings::with_environment(
        [("docker-hub-api-url".to_string(), hub.url())],
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
    let vendor = implementation::build("dockerhub", context).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let infos = runtime
        .block_on(vendor.list_tags(&repository, false))
        .unwrap();
    assert_eq!(infos.len(), 230);
    assert_eq!(infos[29].tag, "t029");
    assert_eq!(
        infos[29].created,
        Timestamp::parse_rfc3339("2024-02-02T10:00:00Z")
    );
    assert_eq!(infos[29].digest, Some(digest(29 % 7)));
    hub.server.assert_no_violations();
}

#[test]
fn deleting_tags_keeps_their_siblings_and_library_is_implied() {
    let hub = hub();
    for tag in ["a", "b", "c"] {
        hub.push(REPO, tag, &digest(1), "2024-01-01T00:00:00Z");
    }
    hub.push(REPO, "solo", &digest(2), "2024-01-01T00:00:00Z");
    hub.push("alice/other", "a", &digest(1), "2024-01-01T00:00:00Z");
    let before = hub.tags(REPO);
    let config = tempfile::tempdir().unwrap();
    let refs = [
        reference(&hub, "app", "a"),
        reference(&hub, "library/app", "solo"),
        reference(&hub, "app", "never-pushed"),
    ];
    let mut args = vec!["delete"];
    args.extend(refs.iter().map(String::as_str));
    let deleted = run(&hub, config.path(), &login(), &args);
    assert_eq!(deleted.code, 0, "{}", deleted.stderr);
    assert_eq!(
        statuses(&deleted),
        // The CLI groups references by repository as written: `app` first, then `library/app`.
        vec![
            (refs[0].clone(), "untagged".into()),
            (refs[2].clone(), "absent".into()),
            (refs[1].clone(), "untagged".into()),
        ]
    );
    assert_eq!(deleted.entries()[0]["method"], "native");
    assert_eq!(deleted.entries()[0]["digest"], digest(1).as_str());
    let mut expected = before.clone();
    expected.remove("a");
    expected.remove("solo");
    assert_eq!(hub.tags(REPO), expected);
    assert_eq!(hub.tags("alice/other").len(), 1);
    // Signed in through the current endpoint, once.
    let signins: Vec<_> = hub
        .server
        .log()
        .into_iter()
        .filter(|(m, _, _)| m == "POST")
        .collect();
    assert_eq!(signins, vec![("POST".into(), "/v2/auth/token".into(), 200)]);

    // A digest cannot be deleted on Hub: exit 4, naming the tags to delete instead.
    let by_digest = run(
        &hub,
        config.path(),
        &login(),
        &[
            "delete",
            &format!("{}/app@{}", hub.server.host(), digest(1)),
        ],
    );
    assert_eq!(by_digest.code, 4, "{}", by_digest.stderr);
    assert!(
        by_digest.stderr.contains("delete its tags instead (b, c)")
            && !by_digest.stderr.contains("storage.delete"),
        "{}",
        by_digest.stderr
    );
    assert_eq!(hub.tags(REPO), expected);
    hub.server.assert_no_violations();
}

#[test]
fn docker_config_credentials_and_dry_run() {
    let hub = hub();
    hub.push(REPO, "a", &digest(1), "2024-01-01T00:00:00Z");
    hub.push(REPO, "b", &digest(1), "2024-01-01T00:00:00Z");
    let config = tempfile::tempdir().unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode("alice:s3cret-pw");
    std::fs::write(
        config.path().join("config.json"),
        serde_json::json!({"auths": {hub.server.host(): {"auth": auth}}}).to_string(),
    )
    .unwrap();
    let planned = run(
        &hub,
        config.path(),
        &["--dry-run"],
        &["delete", &reference(&hub, "app", "a")],
    );
    assert_eq!(planned.code, 0, "{}", planned.stderr);
    assert_eq!(planned.entries()[0]["status"], "planned");
    assert_eq!(hub.tags(REPO).len(), 2);
    let deleted = run(
        &hub,
        config.path(),
        &[],
        &["delete", &reference(&hub, "app", "a")],
    );
    assert_eq!(deleted.code, 0, "{}", deleted.stderr);
    assert_eq!(
        hub.tags(REPO),
        BTreeMap::from([("b".to_string(), digest(1))])
    );
    hub.server.assert_no_violations();
}

#[test]
fn a_wrong_password_exits_3_naming_the_credentials_that_work() {
    let hub = hub();
    hub.push(REPO, "a", &digest(1), "2024-01-01T00:00:00Z");
    let config = tempfile::tempdir().unwrap();
    let failed = run(
        &hub,
        config.path(),
        &[
            "--repo-docker-hub-username",
            "alice",
            "--repo-docker-hub-password",
            "wrong-pw",
        ],
        &["delete", &reference(&hub, "app", "a")],
    );
    assert_eq!(failed.code, 3, "{}", failed.stderr);
    assert!(
        failed.stderr.contains("--repo-docker-hub-username"),
        "{}",
        failed.stderr
    );
    assert!(!failed.stderr.contains("wrong-pw") && !failed.stdout.contains("wrong-pw"));
    assert_eq!(hub.tags(REPO).len(), 1);
    // Both sign-in endpoints were tried.
    let signins: Vec<String> = hub
        .server
        .log()
        .into_iter()
        .filter(|(m, _, _)| m == "POST")
        .map(|(_, p, _)| p)
        .collect();
    assert_eq!(signins, ["/v2/auth/token", "/v2/users/login"]);

    // Without any credentials the delete itself is refused: exit 3 too.
    let anonymous = run(
        &hub,
        config.path(),
        &[],
        &["delete", &reference(&hub, "app", "a")],
    );
    assert_eq!(anonymous.code, 3, "{}", anonymous.stderr);
    assert!(
        anonymous.stderr.contains("--repo-docker-hub-token"),
        "{}",
        anonymous.stderr
    );
    assert_eq!(hub.tags(REPO).len(), 1);
    hub.server.assert_no_violations();
}

#[test]
fn a_refused_personal_access_token_exits_3_naming_the_password() {
    let hub = hub();
    hub.refuse_pats();
    hub.push(REPO, "a", &digest(1), "2024-01-01T00:00:00Z");
    hub.push(REPO, "b", &digest(1), "2024-01-01T00:00:00Z");
    let config = tempfile::tempdir().unwrap();
    let refused = run(
        &hub,
        config.path(),
        &[
            "--repo-docker-hub-username",
            "alice",
            "--repo-docker-hub-password",
            "dckr_pat_alice",
        ],
        &["delete", &reference(&hub, "app", "a")],
    );
    assert_eq!(refused.code, 3, "{}", refused.stderr);
    assert!(refused.stderr.contains(PAT_REFUSAL), "{}", refused.stderr);
    assert!(
        refused.stderr.contains("account password"),
        "{}",
        refused.stderr
    );
    assert_eq!(hub.tags(REPO).len(), 2);
    // The password works.
    let deleted = run(
        &hub,
        config.path(),
        &login(),
        &["delete", &reference(&hub, "app", "a")],
    );
    assert_eq!(deleted.code, 0, "{}", deleted.stderr);
    assert_eq!(hub.tags(REPO).keys().collect::<Vec<_>>(), ["b"]);
    hub.server.assert_no_violations();
}

#[test]
fn rate_limits_are_waited_out_with_a_given_token() {
    let hub = hub();
    hub.push(REPO, "a", &digest(1), "2024-01-01T00:00:00Z");
    hub.push(REPO, "b", &digest(2), "2024-01-01T00:00:00Z");
    let token = hub.issue_token();
    hub.throttle(2);
    let config = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let deleted = run(
        &hub,
        config.path(),
        &["--repo-docker-hub-token", &token],
        &["delete", &reference(&hub, "app", "a")],
    );
    assert_eq!(deleted.code, 0, "{}", deleted.stderr);
    assert_eq!(statuses(&deleted)[0].1, "untagged");
    assert!(
        started.elapsed().as_secs_f64() >= 2.0,
        "{:?}",
        started.elapsed()
    );
    let statuses: Vec<u16> = hub.server.log().into_iter().map(|(_, _, s)| s).collect();
    assert_eq!(statuses, [429, 429, 200, 204]);
    assert_eq!(hub.tags(REPO).keys().collect::<Vec<_>>(), ["b"]);
    hub.server.assert_no_violations();
}

#[test]
fn routes_follow_the_published_description_except_the_tag_delete() {
    let spec = OpenApi::load("docker-hub/hub-api-latest.extract.yaml");
    let declared = regkit_e2e::vendors::dockerhub::declared();
    // The tag DELETE is the only route outside the description (it documents no delete at all; the endpoint
    // is registry-apis.md §2 / werf's driver). 429 is described in the `rate-limiting` section, not per
    // operation.
    assert_eq!(
        spec.mismatches(&declared),
        vec![
            "GET /v2/namespaces/{namespace}/repositories/{repository}/tags: status 429 is not described".to_string(),
            format!("{} {} is not in the description", UNDOCUMENTED_DELETE.0, UNDOCUMENTED_DELETE.1),
        ]
    );
    let text = std::fs::read_to_string(
        regkit_e2e::specs::dir().join("docker-hub/hub-api-latest.extract.yaml"),
    )
    .unwrap();
    assert!(
        text.contains("you will receive a response status of `429` and the `Retry-After` header")
    );
    let documented: Vec<_> = declared
        .iter()
        .filter(|d| (d.method, d.template) != UNDOCUMENTED_DELETE)
        .collect();
    assert_eq!(documented.len(), 5);
}

#[test]
fn a_listed_tag_whose_delete_answers_404_is_read_back_before_it_counts_as_absent() {
    let hub = hub();
    for (i, tag) in ["gone", "stays", "keep"].iter().enumerate() {
        hub.push(REPO, tag, &digest(i), "2024-01-01T00:00:00Z");
    }
    hub.delete_answers_404("gone", true);
    hub.delete_answers_404("stays", false);
    let config = tempfile::tempdir().unwrap();
    let deleted = run(
        &hub,
        config.path(),
        &login(),
        &[
            "delete",
            &reference(&hub, "app", "gone"),
            &reference(&hub, "app", "stays"),
        ],
    );
    assert_eq!(deleted.code, 1, "{}", deleted.stderr);
    let entries = deleted.entries();
    assert_eq!(entries[0]["status"], "absent");
    assert_eq!(entries[1]["status"], "failed");
    let error = entries[1]["error"].as_str().unwrap();
    assert!(
        error.contains("404") && error.contains("still has the tag"),
        "{error}"
    );
    assert_eq!(hub.tags(REPO).keys().collect::<Vec<_>>(), ["keep", "stays"]);
    hub.server.assert_no_violations();
}

#[test]
fn a_404_on_a_later_page_is_a_broken_listing_not_a_missing_repository() {
    let hub = hub();
    for i in 0..150 {
        hub.push(
            REPO,
            &format!("t{i:03}"),
            &digest(i),
            "2024-01-01T00:00:00Z",
        );
    }
    hub.vanish_after_first_page(REPO);
    let config = tempfile::tempdir().unwrap();
    let listed = run(
        &hub,
        config.path(),
        &login(),
        &["tags", &format!("{}/app", hub.server.host())],
    );
    assert_eq!(listed.code, 1, "{}", listed.stderr);
    assert!(
        listed.stderr.contains("answered 404") && !listed.stderr.contains("not found on"),
        "{}",
        listed.stderr
    );
    hub.server.assert_no_violations();
}

#[test]
fn a_namespace_pattern_cleans_the_namespaces_repositories() {
    let hub = hub();
    for (n, repo) in ["alice/app", "alice/tool", "bob/app"]
        .into_iter()
        .enumerate()
    {
        hub.push(repo, "old", &digest(2 * n), "2024-01-01T00:00:00Z");
        hub.push(repo, "new", &digest(2 * n + 1), "2024-02-01T00:00:00Z");
    }
    let config = tempfile::tempdir().unwrap();
    let host = hub.server.host();
    let pattern = format!("{host}/alice/*");
    let swept = run(
        &hub,
        config.path(),
        &login(),
        &["cleanup", &pattern, "--keep-last", "1", "--yes"],
    );
    assert_eq!(swept.code, 0, "{}\n{}", swept.stderr, swept.stdout);
    let deleted: Vec<String> = swept
        .stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
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
        deleted,
        [
            format!("{host}/alice/app:old"),
            format!("{host}/alice/tool:old")
        ],
        "{}",
        swept.stdout
    );
    for repo in ["alice/app", "alice/tool"] {
        assert_eq!(hub.tags(repo).into_keys().collect::<Vec<_>>(), ["new"]);
    }
    assert_eq!(hub.tags("bob/app").len(), 2);
    // Listed through Hub's API, not the registry's catalog.
    assert!(
        hub.server
            .log()
            .iter()
            .any(|(m, p, s)| m == "GET" && p == "/v2/namespaces/alice/repositories" && *s == 200),
        "{:?}",
        hub.server.log()
    );
    hub.server.assert_no_violations();
}

#[test]
fn a_listing_that_never_ends_fails_and_nothing_is_deleted() {
    let hub = hub();
    for i in 0..3 {
        hub.push(REPO, &format!("t{i}"), &digest(i), "2024-02-01T10:00:00Z");
    }
    hub.paginate_forever();
    let config = tempfile::tempdir().unwrap();
    let repository = format!("{}/app", hub.server.host());
    let listed = run(&hub, config.path(), &login(), &["tags", &repository]);
    let swept = run(
        &hub,
        config.path(),
        &login(),
        &[&["cleanup", repository.as_str()][..], &DELETE_EVERY_TAG].concat(),
    );
    assert_listing_refused(
        &listed,
        &swept,
        &hub.server.deletes(),
        &format!("list tags of {REPO}"),
        "page 2 is page 1 again",
    );
    assert_eq!(hub.tags(REPO).len(), 3);
    hub.server.assert_no_violations();
}
