//! `regkit` with the `acr` implementation against the ACR data-plane double: access tokens for the scope
//! each 401 challenge names (refresh-token grant with the null-GUID username docker-credential-acr answers,
//! Basic for admin users), paginated newest-first listing with dates, untag keeping sibling tags, locked
//! and absent tags, digest deletes, 429 then success, 401/403 → exit 3 naming what is missing, and the
//! `--untagged` sweep from the manifest listing (children of a tagged index spared).

use std::collections::BTreeSet;
use std::path::Path;

use base64::Engine;
use regkit::dates::format_rfc3339;
use regkit_e2e::referrers as refs;
use regkit_e2e::vendors::acr::{Acr, Tag};
use regkit_e2e::vendors::entra::{jwt, now};
use regkit_e2e::vendors::{DELETE_EVERY_TAG, Run, assert_listing_refused, digest, regkit};
use serde_json::json;

const TENANT: &str = "72f988bf-0000-4000-8000-2d7cd011db47";
const APP: &str = "11111111-2222-3333-4444-555555555555";
const NULL_GUID: &str = "00000000-0000-0000-0000-000000000000";

fn roles(acr: &Acr, app: &str, roles: &[&str]) {
    acr.state
        .lock()
        .unwrap()
        .roles
        .insert(app.into(), roles.iter().map(|r| r.to_string()).collect());
}

/// A docker config whose credentials for the double are `username`:`password`.
fn config(dir: &Path, acr: &Acr, username: &str, password: &str) {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    let config = json!({"auths": {acr.server.host(): {"auth": auth}}});
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
}

/// An ACR refresh token for `app`, as the token exchange issues them.
fn refresh_token(app: &str) -> String {
    jwt(&json!({"sub": app, "tenant": TENANT, "exp": now() + 3600}))
}

const OLD: &str = "2025-01-01T00:00:00.0000000Z";

/// An ACR double holding tags `v0…` (`tags` of them), the untagged images `digest(50)` and `digest(51)`
/// and [`refs::UntaggedReferrers`] around `digest(image)`, all old; a docker config for it in the
/// returned directory, and the repository to name.
fn referrer_fixture(
    tags: usize,
    image: usize,
) -> (Acr, refs::UntaggedReferrers, tempfile::TempDir, String) {
    let acr = Acr::start(TENANT);
    roles(&acr, APP, &["AcrPull", "AcrDelete"]);
    acr.seed("app", "v", tags, 1);
    let (stale, plain) = (digest(50), digest(51));
    acr.manifest("app", &stale, OLD, &[]);
    acr.manifest("app", &plain, OLD, &[]);
    let fixture = refs::UntaggedReferrers::store(digest(image), stale, plain, |body| {
        acr.manifest_document("app", body, OLD)
    });
    let dir = tempfile::tempdir().unwrap();
    config(dir.path(), &acr, NULL_GUID, &refresh_token(APP));
    let repository = format!("{}/app", acr.server.host());
    (acr, fixture, dir, repository)
}

fn run(dir: &Path, args: &[&str]) -> Run {
    let mut all = vec!["--repo-implementation", "acr"];
    all.extend(args);
    regkit(dir, &all)
}

fn assert_clean(acr: &Acr) {
    acr.server.assert_no_violations();
}

#[test]
fn the_double_follows_the_published_description() {
    let acr = Acr::start(TENANT);
    acr.assert_follows_descriptions();
}

#[test]
fn listing_is_paginated_with_dates_and_survives_429() {
    let acr = Acr::start(TENANT);
    roles(&acr, APP, &["AcrPull"]);
    acr.seed("team/app", "t", 250, 5);
    acr.state.lock().unwrap().throttle = 1;
    let dir = tempfile::tempdir().unwrap();
    config(dir.path(), &acr, NULL_GUID, &refresh_token(APP));
    let repository = format!("{}/team/app", acr.server.host());
    let listed = run(dir.path(), &["tags", &repository]);
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    assert_eq!(listed.stdout.lines().count(), 250, "{}", listed.stdout);
    assert!(listed.stdout.contains(&digest(49)));
    let log = acr.server.log();
    let pages: Vec<_> = log
        .iter()
        .filter(|(method, path, status)| {
            method == "GET" && path.ends_with("/_tags") && *status == 200
        })
        .collect();
    assert_eq!(pages.len(), 3, "{log:?}");
    assert!(log.iter().any(|(_, _, status)| *status == 429), "{log:?}");
    // One token for the listing scope, reused for every page.
    let tokens = log
        .iter()
        .filter(|(_, path, _)| path == "/oauth2/token")
        .count();
    assert_eq!(tokens, 1, "{log:?}");
    // The dates drive policies: keeping the 245 newest plans exactly the five oldest.
    let planned = run(
        dir.path(),
        &["cleanup", "--dry-run", "--keep-last", "245", &repository],
    );
    assert_eq!(planned.code, 0, "{}", planned.stderr);
    let mut tags: Vec<String> = planned
        .stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|e| e["result"] == "planned" && e["date_source"] == "vendor")
        .map(|e| e["tag"].as_str().unwrap().to_owned())
        .collect();
    tags.sort();
    assert_eq!(tags, ["t0", "t1", "t2", "t3", "t4"], "{}", planned.stdout);
    assert_clean(&acr);
}

#[test]
fn a_next_link_in_the_body_is_followed_with_the_api_version() {
    let acr = Acr::start(TENANT);
    roles(&acr, APP, &["AcrPull"]);
    acr.seed("team/app", "t", 250, 5);
    acr.state.lock().unwrap().body_link = true;
    let dir = tempfile::tempdir().unwrap();
    config(dir.path(), &acr, NULL_GUID, &refresh_token(APP));
    let listed = run(
        dir.path(),
        &["tags", &format!("{}/team/app", acr.server.host())],
    );
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    assert_eq!(listed.stdout.lines().count(), 250, "{}", listed.stdout);
    let log = acr.server.log();
    let pages = log
        .iter()
        .filter(|(m, p, s)| m == "GET" && p.ends_with("/_tags") && *s == 200);
    assert_eq!(pages.count(), 3, "{log:?}");
    assert_clean(&acr);
}

#[test]
fn an_api_url_behind_a_path_prefix_keeps_the_prefix() {
    let acr = Acr::start(TENANT);
    roles(&acr, APP, &["AcrPull", "AcrDelete"]);
    acr.seed("team/app", "t", 150, 1);
    acr.server.serve_under("/acr-proxy");
    let dir = tempfile::tempdir().unwrap();
    config(dir.path(), &acr, NULL_GUID, &refresh_token(APP));
    let api_url = format!("{}/acr-proxy", acr.server.url());
    let repository = format!("{}/team/app", acr.server.host());
    let listed = run(
        dir.path(),
        &["--acr-api-url", &api_url, "tags", &repository],
    );
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    assert_eq!(listed.stdout.lines().count(), 150, "{}", listed.stdout);
    let deleted = run(
        dir.path(),
        &[
            "--acr-api-url",
            &api_url,
            "delete",
            &format!("{repository}:t7"),
        ],
    );
    assert_eq!(deleted.code, 0, "{}", deleted.stderr);
    assert!(!acr.tags("team/app").contains("t7"));
    assert_clean(&acr);
}

#[test]
fn untag_keeps_siblings_and_reports_locked_and_absent_tags() {
    let acr = Acr::start(TENANT);
    roles(&acr, APP, &["AcrPull", "AcrDelete"]);
    acr.seed("team/app", "t", 12, 3);
    acr.seed("solo", "s", 4, 2);
    acr.state
        .lock()
        .unwrap()
        .repositories
        .get_mut("team/app")
        .unwrap()
        .get_mut("t5")
        .unwrap()
        .locked = true;
    let dir = tempfile::tempdir().unwrap();
    config(dir.path(), &acr, NULL_GUID, &refresh_token(APP));
    let host = acr.server.host().to_owned();
    let before = acr.tags("team/app");

    let planned = run(
        dir.path(),
        &["delete", "--dry-run", &format!("{host}/team/app:t0")],
    );
    assert_eq!(planned.code, 0, "{}", planned.stderr);
    assert_eq!(planned.entries()[0]["status"], "planned");
    assert_eq!(acr.tags("team/app"), before);

    let deleted = run(
        dir.path(),
        &[
            "delete",
            &format!("{host}/team/app:t0"),
            &format!("{host}/team/app:t5"),
            &format!("{host}/team/app:nope"),
        ],
    );
    assert_eq!(deleted.code, 1, "{}", deleted.stderr);
    let entries = deleted.entries();
    let statuses: Vec<&str> = entries
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["untagged", "failed", "absent"]);
    assert_eq!(entries[0]["digest"], digest(0));
    assert!(
        entries[1]["error"].as_str().unwrap().contains("locked"),
        "{}",
        entries[1]
    );
    let mut expected = before;
    expected.remove("t0");
    assert_eq!(
        acr.tags("team/app"),
        expected,
        "only t0 went; t1 and t2 share its manifest"
    );

    // A digest removes its manifest and every tag on it, nothing else.
    let by_digest = run(
        dir.path(),
        &["delete", &format!("{host}/solo@{}", digest(1))],
    );
    assert_eq!(by_digest.code, 0, "{}", by_digest.stderr);
    assert_eq!(by_digest.entries()[0]["status"], "deleted");
    assert_eq!(
        acr.tags("solo"),
        BTreeSet::from(["s0".to_owned(), "s1".to_owned()])
    );
    assert_clean(&acr);
}

#[test]
fn a_missing_acr_delete_role_exits_3_naming_it() {
    let acr = Acr::start(TENANT);
    roles(&acr, APP, &["AcrPull"]);
    acr.seed("team/app", "t", 3, 1);
    let dir = tempfile::tempdir().unwrap();
    config(dir.path(), &acr, NULL_GUID, &refresh_token(APP));
    let host = acr.server.host().to_owned();
    let denied = run(dir.path(), &["delete", &format!("{host}/team/app:t1")]);
    assert_eq!(denied.code, 3, "{}\n{}", denied.stdout, denied.stderr);
    assert!(
        denied.stdout.contains("AcrDelete") || denied.stderr.contains("AcrDelete"),
        "{}\n{}",
        denied.stdout,
        denied.stderr
    );
    assert_eq!(acr.tags("team/app").len(), 3);
    assert_clean(&acr);
}

#[test]
fn wrong_admin_credentials_exit_3_and_right_ones_work() {
    let acr = Acr::start(TENANT);
    acr.state.lock().unwrap().users.insert(
        "myreg".into(),
        (
            "admin-pw".into(),
            BTreeSet::from(["AcrPush".into(), "AcrDelete".into()]),
        ),
    );
    acr.seed("app", "v", 3, 1);
    let host = acr.server.host().to_owned();
    let dir = tempfile::tempdir().unwrap();
    config(dir.path(), &acr, "myreg", "wrong");
    let refused = run(dir.path(), &["tags", &format!("{host}/app")]);
    assert_eq!(refused.code, 3, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("docker-credential-acr"),
        "{}",
        refused.stderr
    );
    assert!(!refused.stderr.contains("wrong"), "{}", refused.stderr);

    config(dir.path(), &acr, "myreg", "admin-pw");
    let deleted = run(dir.path(), &["delete", &format!("{host}/app:v1")]);
    assert_eq!(deleted.code, 0, "{}", deleted.stderr);
    assert_eq!(
        acr.tags("app"),
        BTreeSet::from(["v0".to_owned(), "v2".to_owned()])
    );
    assert_clean(&acr);
}

#[test]
fn untagged_sweep_spares_index_children_until_their_index_is_gone() {
    let acr = Acr::start(TENANT);
    roles(&acr, APP, &["AcrPull", "AcrDelete"]);
    // One path segment: the double's routes take `{name}` as one segment, and the v2 delete keeps slashes.
    let recent = format_rfc3339(now() - 3_600);
    let old = "2025-01-01T00:00:00.0000000Z";
    let (index, children) = (digest(100), [digest(101), digest(102)]);
    let (gone_index, gone_child) = (digest(300), digest(301));
    {
        let mut state = acr.state.lock().unwrap();
        let tags = state.repositories.entry("app".into()).or_default();
        for (tag, manifest) in [("multi", &index), ("v1", &digest(1))] {
            let tag_row = Tag {
                digest: manifest.clone(),
                created: recent.clone(),
                updated: recent.clone(),
                locked: false,
            };
            tags.insert(tag.into(), tag_row);
        }
    }
    // The tagged index is old; its children (untagged, as multi-arch children are) are old too.
    acr.manifest("app", &index, old, &[&children[0], &children[1]]);
    for child in &children {
        acr.manifest("app", child, old, &[]);
    }
    acr.manifest("app", &digest(200), old, &[]);
    acr.manifest("app", &digest(201), &recent, &[]);
    // An untagged index goes first; its child is spared while the index is listed, and goes on the next
    // run (a recent untagged index kept by --older-than must never lose a child).
    acr.manifest("app", &gone_index, old, &[&gone_child]);
    acr.manifest("app", &gone_child, old, &[]);
    let dir = tempfile::tempdir().unwrap();
    config(dir.path(), &acr, NULL_GUID, &refresh_token(APP));
    let repository = format!("{}/app", acr.server.host());
    let before = acr.manifests("app");
    assert_eq!(before.len(), 8);
    let swept = [digest(200), gone_index.clone()];

    let planned = run(
        dir.path(),
        &[
            "cleanup",
            "--dry-run",
            "--untagged",
            "--older-than",
            "30d",
            &repository,
        ],
    );
    assert_eq!(planned.code, 0, "{}\n{}", planned.stderr, planned.stdout);
    let plan = planned.rows();
    let keys: BTreeSet<&str> = plan.keys().map(String::as_str).collect();
    let mut expected_keys = BTreeSet::from(["multi", "v1"]);
    expected_keys.insert(&swept[0]);
    expected_keys.insert(&swept[1]);
    let recent_orphan = digest(201);
    expected_keys.insert(&recent_orphan);
    assert_eq!(
        keys, expected_keys,
        "children get no row: {}",
        planned.stdout
    );
    for digest in &swept {
        let row = &plan[digest];
        assert_eq!(row["result"], "planned", "{row}");
        assert_eq!(row["rule"], "untagged", "{row}");
        assert_eq!(row["date_source"], "vendor", "{row}");
        assert!(row["tag"].is_null(), "{row}");
    }
    assert_eq!(plan[&recent_orphan]["action"], "keep");
    // An hour old: the default 2h grace window keeps it before --older-than is asked.
    assert_eq!(plan[&recent_orphan]["rule"], "grace");
    assert_eq!(plan["multi"]["action"], "keep");
    assert_eq!(acr.manifests("app"), before, "a dry run changes nothing");
    assert!(acr.server.deletes().is_empty(), "{:?}", acr.server.log());

    let report = dir.path().join("report.json");
    let swept_run = run(
        dir.path(),
        &[
            "cleanup",
            "--yes",
            "--untagged",
            "--older-than",
            "30d",
            "--report",
            report.to_str().unwrap(),
            &repository,
        ],
    );
    assert_eq!(
        swept_run.code, 0,
        "{}\n{}",
        swept_run.stderr, swept_run.stdout
    );
    let (reported, document) = regkit_e2e::report::untagged_rows(&report);
    assert_eq!(reported.len(), 3, "{document}");
    for digest in &swept {
        assert_eq!(
            reported[digest]["result"], "deleted",
            "{}",
            reported[digest]
        );
        assert_eq!(reported[digest]["rule"], "untagged");
    }
    assert_eq!(reported[&recent_orphan]["result"], "kept");
    let mut expected = before;
    for digest in &swept {
        expected.remove(digest);
    }
    assert_eq!(
        acr.manifests("app"),
        expected,
        "the children of the tagged index stay"
    );
    assert!(expected.contains(&children[0]) && expected.contains(&children[1]));
    assert!(
        expected.contains(&gone_child),
        "spared while its index was listed"
    );

    let second = run(
        dir.path(),
        &[
            "cleanup",
            "--yes",
            "--untagged",
            "--older-than",
            "30d",
            &repository,
        ],
    );
    assert_eq!(second.code, 0, "{}\n{}", second.stderr, second.stdout);
    expected.remove(&gone_child);
    assert_eq!(
        acr.manifests("app"),
        expected,
        "the orphaned child goes on the next run; the tagged index's children stay"
    );
    assert_eq!(
        acr.tags("app"),
        BTreeSet::from(["multi".to_owned(), "v1".to_owned()])
    );
    assert_clean(&acr);
}

/// `--untagged` reads each untagged manifest over v2 (ACR's `_manifests` names no subject): a signature of
/// the kept `v1`, and a signature of that signature, stay however old; an attestation of an untagged image
/// that goes follows it; a referrer whose subject is gone is an orphan, kept until `--orphans`.
#[test]
fn untagged_sweep_keeps_referrers_of_live_subjects_and_orphans_until_asked() {
    let (acr, fixture, dir, repository) = referrer_fixture(2, 1);
    let before = acr.manifests("app");
    let cleanup = |extra: &[&str]| {
        let mut args = vec![
            "cleanup",
            "--untagged",
            "--older-than",
            "30d",
            "--keep-last",
            "10",
        ];
        args.extend(extra);
        args.push(&repository);
        let run = run(dir.path(), &args);
        assert_eq!(run.code, 0, "{}\n{}", run.stderr, run.stdout);
        run.rows()
    };

    let plan = cleanup(&["--dry-run"]);
    fixture.assert_planned(&plan);
    assert_eq!(acr.manifests("app"), before, "a dry run changes nothing");

    let swept = cleanup(&["--yes"]);
    assert_eq!(
        swept[&fixture.att]["result"], "deleted",
        "{}",
        swept[&fixture.att]
    );
    let mut expected = before.clone();
    for digest in [&fixture.stale, &fixture.plain, &fixture.att] {
        expected.remove(digest);
    }
    assert_eq!(acr.manifests("app"), expected);

    let orphans = cleanup(&["--yes", "--orphans"]);
    assert_eq!(
        orphans[&fixture.orphan]["result"], "deleted",
        "{}",
        orphans[&fixture.orphan]
    );
    expected.remove(&fixture.orphan);
    assert_eq!(acr.manifests("app"), expected);
    assert!(expected.contains(&fixture.sig) && expected.contains(&fixture.sig_of_sig));
    assert_eq!(
        acr.tags("app"),
        BTreeSet::from(["v0".to_owned(), "v1".to_owned()])
    );
    assert_clean(&acr);
}

#[test]
fn untagged_manifests_are_paged_and_a_locked_one_is_refused() {
    let acr = Acr::start(TENANT);
    roles(&acr, APP, &["AcrPull", "AcrDelete"]);
    acr.seed("app", "t", 2, 1);
    let orphans: Vec<String> = (1_000..1_130).map(digest).collect();
    for orphan in &orphans {
        acr.manifest("app", orphan, "2025-01-01T00:00:00Z", &[]);
    }
    let locked = digest(2_000);
    acr.manifest("app", &locked, "2025-01-01T00:00:00Z", &[]);
    acr.state
        .lock()
        .unwrap()
        .manifests
        .get_mut("app")
        .unwrap()
        .get_mut(&locked)
        .unwrap()
        .locked = true;
    let dir = tempfile::tempdir().unwrap();
    config(dir.path(), &acr, NULL_GUID, &refresh_token(APP));
    let repository = format!("{}/app", acr.server.host());
    let cleanup = |dry_run: bool| {
        let mut args = vec!["cleanup", "--untagged", "--exclude", ".", &repository];
        args.push(if dry_run { "--dry-run" } else { "--yes" });
        run(dir.path(), &args)
    };
    let before = acr.manifests("app");

    let planned = cleanup(true);
    assert_eq!(planned.code, 1, "{}\n{}", planned.stderr, planned.stdout);
    let plan = planned.rows();
    assert_eq!(plan.len(), 133, "{}", planned.stdout);
    for orphan in &orphans {
        assert_eq!(plan[orphan]["result"], "planned", "{}", plan[orphan]);
    }
    // The lock is known from the listing: refused before any request, on a dry run too.
    assert_eq!(plan[&locked]["result"], "failed");
    assert!(
        plan[&locked]["error"]
            .as_str()
            .unwrap()
            .contains("deleteEnabled=false"),
        "{}",
        plan[&locked]
    );
    assert_eq!(acr.manifests("app"), before);
    // 133 manifests at 100 a page: two pages for the sweep's listing and two for the delete's plan.
    let pages = acr
        .server
        .log()
        .iter()
        .filter(|(method, path, status)| {
            method == "GET" && path.ends_with("/_manifests") && *status == 200
        })
        .count();
    assert_eq!(pages, 4);

    // The double answers 405 for a locked manifest, as ACR does, when a delete reaches it.
    acr.state
        .lock()
        .unwrap()
        .manifests
        .get_mut("app")
        .unwrap()
        .retain(|digest, _| digest == &locked || !orphans[3..].contains(digest));
    let swept = cleanup(false);
    assert_eq!(swept.code, 1, "{}\n{}", swept.stderr, swept.stdout);
    let rows = swept.rows();
    assert_eq!(rows.len(), 6, "{}", swept.stdout);
    for orphan in &orphans[..3] {
        assert_eq!(rows[orphan]["result"], "deleted", "{}", rows[orphan]);
    }
    assert_eq!(rows[&locked]["result"], "failed");
    assert_eq!(
        acr.manifests("app"),
        BTreeSet::from([digest(0), digest(1), locked.clone()])
    );
    assert_clean(&acr);
}

#[test]
fn a_listing_that_never_ends_fails_and_nothing_is_deleted() {
    let acr = Acr::start(TENANT);
    roles(&acr, APP, &["AcrPull", "AcrDelete"]);
    acr.seed("team/app", "t", 3, 1);
    acr.state.lock().unwrap().paginate_forever = true;
    let dir = tempfile::tempdir().unwrap();
    config(dir.path(), &acr, NULL_GUID, &refresh_token(APP));
    let repository = format!("{}/team/app", acr.server.host());
    let listed = run(dir.path(), &["tags", &repository]);
    let swept = run(
        dir.path(),
        &[&["cleanup", repository.as_str()][..], &DELETE_EVERY_TAG].concat(),
    );
    assert_listing_refused(
        &listed,
        &swept,
        &acr.server.deletes(),
        &repository,
        "page 2 repeats the next link from page 1",
    );
    assert_eq!(acr.tags("team/app").len(), 3);
    assert_clean(&acr);
}

/// ACR serves the OCI 1.1 referrers API: `delete REPO@digest` finds the untagged referrers of the manifest
/// it removes there (a signature, and a signature of that signature), one GET per manifest that goes;
/// `--keep-referrers` keeps them; a cleanup that sweeps an untagged image takes its attestation as a row
/// of its own whose `rule` follows it, and leaves the referrers of what stays.
#[test]
fn the_referrers_api_finds_untagged_referrers_of_what_goes() {
    let (acr, fixture, dir, repository) = referrer_fixture(3, 0);
    let store = |subject: &str| {
        let body = refs::artifact_manifest(
            subject,
            100,
            "application/vnd.dev.cosign.artifact.sig.v1+json",
        );
        acr.manifest_document("app", std::str::from_utf8(&body).unwrap(), OLD)
    };
    let kept_sig = store(&digest(1));
    let referrer_gets = || {
        acr.server
            .log()
            .iter()
            .filter(|(method, path, status)| {
                method == "GET" && path.contains("/referrers/") && *status == 200
            })
            .count()
    };
    let mut expected = acr.manifests("app");

    let swept = run(
        dir.path(),
        &[
            "cleanup",
            "--yes",
            "--untagged",
            "--older-than",
            "30d",
            "--keep-last",
            "10",
            &repository,
        ],
    );
    assert_eq!(swept.code, 0, "{}\n{}", swept.stderr, swept.stdout);
    let rows = swept.rows();
    assert_eq!(
        rows[&fixture.att]["rule"], "follows-subject",
        "{}",
        rows[&fixture.att]
    );
    assert_eq!(rows[&fixture.att]["subject"], fixture.stale.as_str());
    assert_eq!(rows[&fixture.att]["result"], "deleted");
    for digest in [&fixture.stale, &fixture.plain, &fixture.att] {
        expected.remove(digest);
    }
    assert_eq!(acr.manifests("app"), expected);
    // One GET for each manifest that went (the two untagged images and the attestation).
    assert_eq!(referrer_gets(), 3);

    let image = format!("{repository}@{}", fixture.image);
    let deleted = run(dir.path(), &["delete", &image]);
    assert_eq!(deleted.code, 0, "{}\n{}", deleted.stderr, deleted.stdout);
    for digest in [&fixture.image, &fixture.sig, &fixture.sig_of_sig] {
        expected.remove(digest);
    }
    assert_eq!(acr.manifests("app"), expected, "{}", deleted.stdout);
    assert_eq!(referrer_gets(), 6, "one GET per manifest that goes");

    let kept = format!("{repository}@{}", digest(1));
    let deleted = run(dir.path(), &["delete", "--keep-referrers", &kept]);
    assert_eq!(deleted.code, 0, "{}\n{}", deleted.stderr, deleted.stdout);
    expected.remove(&digest(1));
    assert_eq!(acr.manifests("app"), expected);
    assert!(expected.contains(&kept_sig));
    assert_eq!(acr.tags("app"), BTreeSet::from(["v2".to_owned()]));
    assert_clean(&acr);
}
