//! `regkit` with the `gcr` implementation against the Artifact Registry REST double: paginated tags with
//! dates from versions, 429 then success, untag keeping sibling tags, absent tags, digests deleted with
//! `force`, packages with `/`, 401/403 → exit 3 naming the missing permission, and the `--untagged` sweep
//! (tagged indexes read from a real distribution registry, so their children are spared). Every run points
//! the metadata host at a closed loopback port and leaves `gcloud` out, so nothing can leave 127.0.0.1.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use regkit::dates::format_rfc3339;
use regkit_e2e::bins;
use regkit_e2e::faultproxy::{Fault, FaultProxy, Rule};
use regkit_e2e::images::{self, Auth, Format, Pusher};
use regkit_e2e::referrers::push_subject_artifact;
use regkit_e2e::registry::Registry;
use regkit_e2e::vendors::artifactregistry::{ArtifactRegistry, Discovery, IMAGE_MANIFEST, SPEC};
use regkit_e2e::vendors::{DELETE_EVERY_TAG, Run, assert_listing_refused, digest};
use serde_json::{Value, json};

const ADMIN: &str = "ya29.admin";
const READER: &str = "ya29.reader";
const PACKAGE: (&str, &str, &str, &str) = ("proj", "us", "repo", "team/app");

/// `regkit` with a docker config whose credentials for the double's host are `oauth2accesstoken`:`token`
/// (none when `token` is empty).
fn run(ar: &ArtifactRegistry, token: &str, args: &[&str]) -> Run {
    run_on(ar, ar.server.host(), token, args)
}

/// [`run`] with the credentials for the registry `host` (where the repositories are, if not on the double).
fn run_on(ar: &ArtifactRegistry, host: &str, token: &str, args: &[&str]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let config = if token.is_empty() {
        json!({})
    } else {
        let auth =
            base64::engine::general_purpose::STANDARD.encode(format!("oauth2accesstoken:{token}"));
        json!({"auths": {host: {"auth": auth}}})
    };
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    let url = ar.server.url();
    let output = Command::new(bins::ours("regkit"))
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", dir.path())
        // The vendor doubles serve no v2 manifests, which the undo journal reads before a vendor delete.
        .env("REGKIT_NO_JOURNAL", "1")
        .env("GCE_METADATA_HOST", "127.0.0.1:9")
        .env("REGKIT_GCR_CREDENTIALS", "adc,metadata")
        .arg("--docker-config")
        .arg(dir.path())
        .args(["--output", "json", "--repo-implementation", "gcr"])
        .args(["--gcr-api-url", &url, "--gcr-location", "us"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run regkit");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn repository(ar: &ArtifactRegistry) -> String {
    format!("{}/proj/repo/team/app", ar.server.host())
}

fn assert_clean(ar: &ArtifactRegistry) {
    ar.server.assert_no_violations();
}

#[test]
fn the_double_follows_the_discovery_document() {
    let ar = ArtifactRegistry::start(ADMIN, READER);
    let problems = Discovery::load(SPEC).mismatches(&ar.server.declared());
    assert!(problems.is_empty(), "{problems:?}");
    assert!(Path::new(&regkit_e2e::specs::dir().join(SPEC)).is_file());
}

#[test]
fn listing_is_paginated_with_dates_and_survives_429() {
    let ar = ArtifactRegistry::start(ADMIN, READER);
    ar.seed(PACKAGE, "t", 130, 1);
    {
        let mut state = ar.state.lock().unwrap();
        state.max_page = 40;
        state.throttle = 1;
    }
    let listed = run(&ar, READER, &["tags", &repository(&ar)]);
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    assert_eq!(listed.stdout.lines().count(), 130, "{}", listed.stdout);
    assert!(listed.stdout.contains(&digest(32)));
    let log = ar.server.log();
    let pages = |suffix: &str| {
        log.iter()
            .filter(|(m, p, s)| m == "GET" && p.ends_with(suffix) && *s == 200)
            .count()
    };
    assert_eq!(pages("/tags"), 4, "{log:?}");
    assert_eq!(pages("/versions"), 4, "{log:?}");
    assert!(
        log.iter()
            .any(|(_, p, s)| *s == 429 && p.contains("team%2Fapp")),
        "{log:?}"
    );

    // Dates come from the versions: keeping the 128 newest plans the two oldest tags.
    let planned = run(
        &ar,
        READER,
        &[
            "cleanup",
            "--dry-run",
            "--keep-last",
            "128",
            &repository(&ar),
        ],
    );
    assert_eq!(planned.code, 0, "{}", planned.stderr);
    let mut tags: Vec<String> = planned
        .stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|e| e["result"] == "planned" && e["date_source"] == "vendor")
        .map(|e| e["tag"].as_str().unwrap().to_owned())
        .collect();
    tags.sort();
    assert_eq!(tags, ["t0", "t1"], "{}", planned.stdout);
    assert_clean(&ar);
}

#[test]
fn untag_keeps_siblings_and_digests_go_with_their_tags_only() {
    let ar = ArtifactRegistry::start(ADMIN, READER);
    ar.seed(PACKAGE, "t", 12, 3);
    let before = ar.tags(PACKAGE);
    let repo = repository(&ar);
    let deleted = run(
        &ar,
        ADMIN,
        &["delete", &format!("{repo}:t0"), &format!("{repo}:nope")],
    );
    assert_eq!(deleted.code, 0, "{}", deleted.stderr);
    let entries = deleted.entries();
    let statuses: Vec<&str> = entries
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["untagged", "absent"]);
    assert_eq!(entries[0]["digest"], digest(0));
    let mut expected = before.clone();
    expected.remove("t0");
    assert_eq!(
        ar.tags(PACKAGE),
        expected,
        "t1 and t2 share t0's version and stay"
    );

    let by_digest = run(&ar, ADMIN, &["delete", &format!("{repo}@{}", digest(1))]);
    assert_eq!(by_digest.code, 0, "{}", by_digest.stderr);
    assert_eq!(by_digest.entries()[0]["status"], "deleted");
    expected.retain(|_, d| *d != digest(1));
    assert_eq!(ar.tags(PACKAGE), expected);
    assert_eq!(ar.tags(PACKAGE).len(), 8);
    assert!(
        ar.server
            .deletes()
            .iter()
            .any(|(path, _)| path.contains("/versions/sha256")),
        "{:?}",
        ar.server.log()
    );
    assert_clean(&ar);
}

#[test]
fn a_read_only_identity_exits_3_naming_the_permission() {
    let ar = ArtifactRegistry::start(ADMIN, READER);
    ar.seed(PACKAGE, "t", 3, 1);
    let denied = run(&ar, READER, &["delete", &format!("{}:t1", repository(&ar))]);
    assert_eq!(denied.code, 3, "{}\n{}", denied.stdout, denied.stderr);
    let text = format!("{}{}", denied.stdout, denied.stderr);
    assert!(
        text.contains("artifactregistry.repositories.deleteArtifacts"),
        "{text}"
    );
    assert_eq!(ar.tags(PACKAGE).len(), 3);
    assert_clean(&ar);
}

#[test]
fn no_or_bad_credentials_exit_3() {
    let ar = ArtifactRegistry::start(ADMIN, READER);
    ar.seed(PACKAGE, "t", 2, 1);
    let bad = run(&ar, "ya29.stale", &["tags", &repository(&ar)]);
    assert_eq!(bad.code, 3, "{}", bad.stderr);
    assert!(
        bad.stderr.contains("roles/artifactregistry.reader"),
        "{}",
        bad.stderr
    );
    // Without any token the Google sources are tried (metadata on a closed loopback port) and fail.
    let none = run(&ar, "", &["tags", &repository(&ar)]);
    assert_eq!(none.code, 3, "{}", none.stderr);
    assert!(
        none.stderr.contains("docker-credential-gcr"),
        "{}",
        none.stderr
    );
    assert_clean(&ar);
}

#[test]
fn untagged_sweep_reads_tagged_indexes_and_spares_their_children() {
    // The manifests live in a real registry (the tagged index is read there over v2); the API double lists
    // the same digests as versions.
    let registry = Registry::start();
    let ar = ArtifactRegistry::start(ADMIN, READER);
    let path = "proj/repo/team/app";
    let index = images::push_index(&registry.url(), path, "multi", &Auth::None, Format::Docker);
    let image = images::push(&registry.url(), path, &["v1"], &Auth::None);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let recent = format_rfc3339(now - 3_600);
    let old = "2025-01-01T00:00:00.123456Z";
    let list_type = Format::Docker.index_type();
    ar.version(PACKAGE, &index.digest, &recent, list_type);
    ar.tag(PACKAGE, "multi", &index.digest);
    ar.version(PACKAGE, &image, &recent, IMAGE_MANIFEST);
    ar.tag(PACKAGE, "v1", &image);
    for child in &index.children {
        ar.version(PACKAGE, child, old, Format::Docker.manifest_type());
    }
    let (orphan, recent_orphan) = (digest(200), digest(201));
    ar.version(PACKAGE, &orphan, old, IMAGE_MANIFEST);
    ar.version(PACKAGE, &recent_orphan, &recent, IMAGE_MANIFEST);
    // An untagged index whose manifest the registry no longer serves names no children: both go.
    let (gone_index, gone_child) = (digest(300), digest(301));
    ar.version(PACKAGE, &gone_index, old, list_type);
    ar.version(PACKAGE, &gone_child, old, IMAGE_MANIFEST);
    let before = ar.versions(PACKAGE);
    assert_eq!(before.len(), 8);
    let swept = [orphan.clone(), gone_index.clone(), gone_child.clone()];
    let repository = format!("{}/{path}", registry.host());
    let policy = ["--untagged", "--older-than", "30d"];

    let mut args = vec!["cleanup", "--dry-run", &repository];
    args.extend(policy);
    let planned = run_on(&ar, registry.host(), ADMIN, &args);
    assert_eq!(planned.code, 0, "{}\n{}", planned.stderr, planned.stdout);
    let plan = planned.rows();
    let keys: BTreeSet<&str> = plan.keys().map(String::as_str).collect();
    let mut expected_keys = BTreeSet::from(["multi", "v1", recent_orphan.as_str()]);
    expected_keys.extend(swept.iter().map(String::as_str));
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
        assert_eq!(row["created"], "2025-01-01T00:00:00Z", "{row}");
    }
    assert_eq!(plan[&recent_orphan]["action"], "keep");
    // An hour old: the default 2h grace window keeps it before --older-than is asked.
    assert_eq!(plan[&recent_orphan]["rule"], "grace");
    assert_eq!(ar.versions(PACKAGE), before, "a dry run changes nothing");
    assert!(ar.server.deletes().is_empty(), "{:?}", ar.server.log());

    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let mut args = vec!["cleanup", "--yes", "--report", report.to_str().unwrap()];
    args.push(&repository);
    args.extend(policy);
    let swept_run = run_on(&ar, registry.host(), ADMIN, &args);
    assert_eq!(
        swept_run.code, 0,
        "{}\n{}",
        swept_run.stderr, swept_run.stdout
    );
    let (reported, document) = regkit_e2e::report::untagged_rows(&report);
    assert_eq!(reported.len(), 4, "{document}");
    for digest in &swept {
        assert_eq!(
            reported[digest]["result"], "deleted",
            "{}",
            reported[digest]
        );
    }
    assert_eq!(reported[&recent_orphan]["result"], "kept");
    let mut expected = before;
    for digest in &swept {
        expected.remove(digest);
    }
    assert_eq!(ar.versions(PACKAGE), expected);
    assert!(index.children.iter().all(|child| expected.contains(child)));
    assert_eq!(ar.tags(PACKAGE).len(), 2);
    let deletes = ar.server.deletes();
    assert_eq!(deletes.len(), 3, "{deletes:?}");
    assert!(
        deletes
            .iter()
            .all(|(path, _)| path.contains("/versions/sha256")),
        "{deletes:?}"
    );
    assert_clean(&ar);
}

/// `--untagged` reads each untagged version's manifest over v2: one with a `subject` (a signature of the
/// kept image `v1`) is a referrer and stays with its subject; an untagged image goes.
#[test]
fn untagged_sweep_keeps_an_untagged_referrer_of_a_kept_image() {
    let registry = Registry::start();
    let ar = ArtifactRegistry::start(ADMIN, READER);
    let path = "proj/repo/team/app";
    let image = images::push(&registry.url(), path, &["v1"], &Auth::None);
    let pusher = Pusher::new(&registry.url(), &Auth::None);
    let signature = "application/vnd.dev.cosign.artifact.sig.v1+json";
    let (referrer, _) = push_subject_artifact(&pusher, path, &image, signature, None);
    let stale = images::push(&registry.url(), path, &["stale"], &Auth::None);
    let old = "2025-01-01T00:00:00.123456Z";
    ar.version(PACKAGE, &image, old, IMAGE_MANIFEST);
    ar.tag(PACKAGE, "v1", &image);
    ar.version(PACKAGE, &referrer, old, IMAGE_MANIFEST);
    // The registry keeps `stale` by its tag; to the double it is an untagged version.
    ar.version(PACKAGE, &stale, old, IMAGE_MANIFEST);
    let repository = format!("{}/{path}", registry.host());
    let policy = ["--untagged", "--older-than", "30d", "--exclude", "."];

    let mut args = vec!["cleanup", "--dry-run", &repository];
    args.extend(policy);
    let planned = run_on(&ar, registry.host(), ADMIN, &args);
    assert_eq!(planned.code, 0, "{}\n{}", planned.stderr, planned.stdout);
    let plan = planned.rows();
    assert_eq!(plan[&referrer]["action"], "keep", "{}", plan[&referrer]);
    assert_eq!(plan[&referrer]["rule"], "referrer", "{}", plan[&referrer]);
    assert_eq!(plan[&referrer]["subject"], image.as_str());
    assert_eq!(plan[&stale]["result"], "planned", "{}", plan[&stale]);
    assert_eq!(plan[&stale]["rule"], "untagged");

    let mut args = vec!["cleanup", "--yes", &repository];
    args.extend(policy);
    let swept = run_on(&ar, registry.host(), ADMIN, &args);
    assert_eq!(swept.code, 0, "{}\n{}", swept.stderr, swept.stdout);
    assert_eq!(
        ar.versions(PACKAGE),
        BTreeSet::from([image.clone(), referrer.clone()]),
        "the kept image keeps its untagged signature"
    );
    assert_clean(&ar);
}

/// An untagged manifest that cannot be read might be a referrer: the repository fails with one line and
/// nothing of it is deleted.
#[test]
fn an_unreadable_untagged_manifest_fails_the_repository_and_nothing_goes() {
    let registry = Registry::start();
    let proxy = FaultProxy::start(registry.host());
    let ar = ArtifactRegistry::start(ADMIN, READER);
    let path = "proj/repo/team/app";
    let image = images::push(&registry.url(), path, &["v1"], &Auth::None);
    let stale = images::push(&registry.url(), path, &["stale"], &Auth::None);
    let unreadable = images::push(&registry.url(), path, &["other"], &Auth::None);
    let old = "2025-01-01T00:00:00.123456Z";
    ar.version(PACKAGE, &image, old, IMAGE_MANIFEST);
    ar.tag(PACKAGE, "v1", &image);
    for untagged in [&stale, &unreadable] {
        ar.version(PACKAGE, untagged, old, IMAGE_MANIFEST);
    }
    let hex = unreadable.trim_start_matches("sha256:");
    // A registry that refuses the read (no retry waits out a 400).
    let refused = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    let rule = Rule::new(Fault::Answer(refused.into())).method("GET");
    proxy.set_rules(vec![rule.path(hex)]);
    let before = ar.versions(PACKAGE);
    let repository = format!("{}/{path}", proxy.host());
    let args = [
        "cleanup",
        "--yes",
        &repository,
        "--untagged",
        "--older-than",
        "30d",
        "--exclude",
        ".",
    ];
    let failed = run_on(&ar, proxy.host(), ADMIN, &args);
    assert_eq!(failed.code, 1, "{}\n{}", failed.stderr, failed.stdout);
    assert!(failed.stderr.contains(hex), "{}", failed.stderr);
    assert_eq!(ar.versions(PACKAGE), before, "nothing deleted");
    assert!(ar.server.deletes().is_empty(), "{:?}", ar.server.log());
    assert_clean(&ar);
}

#[test]
fn a_listing_that_never_ends_fails_and_nothing_is_deleted() {
    let ar = ArtifactRegistry::start(ADMIN, READER);
    ar.seed(PACKAGE, "t", 5, 1);
    {
        let mut state = ar.state.lock().unwrap();
        state.max_page = 2;
        state.paginate_forever = true;
    }
    let repository = repository(&ar);
    let listed = run(&ar, ADMIN, &["tags", &repository]);
    let swept = run(
        &ar,
        ADMIN,
        &[&["cleanup", repository.as_str()][..], &DELETE_EVERY_TAG].concat(),
    );
    assert_listing_refused(
        &listed,
        &swept,
        &ar.server.deletes(),
        &repository,
        "page 2 repeats nextPageToken from page 1",
    );
    assert_eq!(ar.tags(PACKAGE).len(), 5);
    assert_clean(&ar);
}
