//! `regkit` with the `harbor` implementation against a Harbor double written from Harbor's swagger:
//! paginated listing with push times, tag deletes that keep sibling tags, absent tags, immutable tags and
//! index children refused per tag, a robot account's wrong password (exit 3), detection by probing, and
//! `cleanup --untagged`: untagged artifacts go by digest, an index's children stay while it is listed.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{SystemTime, UNIX_EPOCH};

use regkit::dates::{Timestamp, format_rfc3339};
use regkit_e2e::apiserver::Declared;
use regkit_e2e::specs::OpenApi;
use regkit_e2e::vendors::harbor::{Artifact, Harbor, SPEC};
use regkit_e2e::vendors::{DELETE_EVERY_TAG, assert_listing_refused, digest, regkit};
use serde_json::Value;

const ROBOT: &str = "robot$proj+ci";
const SECRET: &str = "robot-s3cret";
const REPOSITORY: &str = "proj/team/app";

fn flags(harbor: &Harbor) -> Vec<String> {
    vec![
        "--repo-implementation".into(),
        "harbor".into(),
        "--harbor-api-url".into(),
        harbor.server.url(),
        "--repo-harbor-username".into(),
        ROBOT.into(),
        "--repo-harbor-password".into(),
        SECRET.into(),
    ]
}

fn run(harbor: &Harbor, args: &[&str]) -> regkit_e2e::vendors::Run {
    let config = tempfile::tempdir().unwrap();
    let mut all = flags(harbor);
    all.extend(args.iter().map(|a| a.to_string()));
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    regkit(config.path(), &all)
}

fn reference(harbor: &Harbor, tag: &str) -> String {
    format!("{}/{REPOSITORY}:{tag}", harbor.server.host())
}

#[test]
fn the_route_table_follows_the_swagger() {
    let harbor = Harbor::start(ROBOT, SECRET);
    let declared: Vec<Declared> = harbor.server.declared();
    OpenApi::load(SPEC).assert_covers(&declared);
}

#[test]
fn an_api_url_behind_a_path_prefix_keeps_the_prefix() {
    let harbor = Harbor::start(ROBOT, SECRET);
    harbor.push(REPOSITORY, &digest(1), &["a"], "2024-01-01T00:00:00.000Z");
    harbor.push(REPOSITORY, &digest(2), &["b"], "2024-01-01T00:00:00.000Z");
    harbor.server.serve_under("/harbor");
    let config = tempfile::tempdir().unwrap();
    let mut args = flags(&harbor);
    args[3] = format!("{}/harbor/", harbor.server.url());
    args.extend(["delete".into(), reference(&harbor, "a")]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let deleted = regkit(config.path(), &args);
    assert_eq!(deleted.code, 0, "{}", deleted.stderr);
    assert_eq!(deleted.entries()[0]["status"], "untagged");
    assert_eq!(harbor.tags(REPOSITORY).keys().collect::<Vec<_>>(), ["b"]);
    harbor.server.assert_no_violations();
}

#[test]
fn listing_pages_through_artifacts_with_push_times() {
    let harbor = Harbor::start(ROBOT, SECRET);
    for i in 0..150 {
        harbor.push(
            REPOSITORY,
            &digest(i),
            &[&format!("t{i:03}")],
            &format!("2024-01-01T00:{:02}:{:02}.000Z", i / 60, i % 60),
        );
    }
    harbor.push(REPOSITORY, &digest(999), &[], "2024-02-01T00:00:00.000Z");
    let repository = format!("{}/{REPOSITORY}", harbor.server.host());
    let listed = run(&harbor, &["tags", "--digests", &repository]);
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    let rows: Vec<serde_json::Value> = listed
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 150);
    assert_eq!(rows[7]["tag"], "t007");
    assert_eq!(rows[7]["digest"], digest(7));
    let pages = harbor
        .server
        .log()
        .iter()
        .filter(|(method, path, _)| method == "GET" && path.ends_with("/artifacts"))
        .count();
    assert_eq!(pages, 2, "{:?}", harbor.server.log());

    // Push times reach the library's listing (the cleanup policy's dates).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let context = regkit::implementation::Context {
        client: regkit::registry::Client::new(
            harbor.server.host(),
            Default::default(),
            &Default::default(),
        )
        .unwrap(),
        auth: regkit::dockerconfig::RegistryAuth::Basic {
            username: ROBOT.into(),
            password: regkit::secret::Secret::new(SECRET.into()),
        },
        parallel: 4,
        settings: regkit::implementation::Settings::with_environment(Vec::new(), Vec::new()),
    };
    let vendor = regkit::implementation::build("harbor", context).unwrap();
    let repository = regkit::reference::Repository::parse(&repository).unwrap();
    let tags = runtime
        .block_on(vendor.list_tags(&repository, false))
        .unwrap();
    assert_eq!(tags.len(), 150);
    assert_eq!(tags[61].tag, "t061");
    assert_eq!(
        tags[61].created,
        Timestamp::parse_rfc3339("2024-01-01T00:01:01.000Z")
    );
    harbor.server.assert_no_violations();
}

#[test]
fn deleting_a_tag_keeps_its_siblings_and_refusals_are_per_tag() {
    let harbor = Harbor::start(ROBOT, SECRET);
    harbor.push(
        REPOSITORY,
        &digest(1),
        &["v1", "v1-alias", "latest"],
        "2024-01-01T00:00:00Z",
    );
    harbor.push(REPOSITORY, &digest(2), &["v2"], "2024-01-02T00:00:00Z");
    harbor.push_artifact(
        REPOSITORY,
        Artifact {
            digest: digest(3),
            push_time: "2024-01-03T00:00:00Z".into(),
            pull_time: None,
            tags: [("release".to_string(), true), ("rc".to_string(), false)].into(),
            references: Vec::new(),
            subject: None,
        },
    );
    // An index with one child manifest (untagged, as a multi-arch child is).
    harbor.push(REPOSITORY, &digest(10), &[], "2024-01-04T00:00:00Z");
    harbor.push_artifact(
        REPOSITORY,
        Artifact {
            digest: digest(11),
            push_time: "2024-01-04T00:00:00Z".into(),
            pull_time: None,
            tags: [("multi".to_string(), false)].into(),
            references: vec![digest(10)],
            subject: None,
        },
    );
    let before = harbor.tags(REPOSITORY);

    let dry = run(
        &harbor,
        &[
            "--dry-run",
            "delete",
            &reference(&harbor, "v1"),
            &reference(&harbor, "nope"),
        ],
    );
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    let entries = dry.entries();
    assert_eq!(entries[0]["status"], "planned");
    assert_eq!(entries[1]["status"], "absent");
    assert_eq!(harbor.tags(REPOSITORY), before);

    let child = format!("{}/{REPOSITORY}@{}", harbor.server.host(), digest(10));
    let deleted = run(
        &harbor,
        &[
            "delete",
            &reference(&harbor, "v1"),
            &reference(&harbor, "v2"),
            &reference(&harbor, "nope"),
            &reference(&harbor, "release"),
            &child,
        ],
    );
    assert_eq!(deleted.code, 1, "{}", deleted.stderr);
    let entries = deleted.entries();
    let statuses: Vec<&str> = entries
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["untagged", "untagged", "absent", "failed", "failed"]
    );
    assert_eq!(entries[0]["method"], "native");
    assert_eq!(entries[0]["digest"], digest(1));
    assert!(
        entries[3]["error"].as_str().unwrap().contains("immutable"),
        "{}",
        entries[3]
    );
    assert!(
        entries[4]["error"]
            .as_str()
            .unwrap()
            .contains("referenced by the index"),
        "{}",
        entries[4]
    );

    let mut expected = before;
    expected.remove("v1");
    expected.remove("v2");
    assert_eq!(harbor.tags(REPOSITORY), expected);
    // The artifacts stay: a tag delete only untags.
    assert!(harbor.digests(REPOSITORY).contains(&digest(2)));
    assert!(harbor.digests(REPOSITORY).contains(&digest(10)));
    // The double encoding reached the server: `team/app` travelled as `team%252Fapp`.
    assert!(
        harbor.server.deletes().iter().any(|(path, status)| {
            path.contains("/repositories/team%252Fapp/artifacts/") && *status == 200
        }),
        "{:?}",
        harbor.server.log()
    );

    let by_digest = run(
        &harbor,
        &[
            "delete",
            &format!("{}/{REPOSITORY}@{}", harbor.server.host(), digest(2)),
        ],
    );
    assert_eq!(by_digest.code, 0, "{}", by_digest.stderr);
    assert_eq!(by_digest.entries()[0]["status"], "deleted");
    assert!(!harbor.digests(REPOSITORY).contains(&digest(2)));
    harbor.server.assert_no_violations();
}

#[test]
fn a_wrong_robot_secret_exits_3_naming_the_credentials() {
    let harbor = Harbor::start(ROBOT, "the-right-one");
    harbor.push(REPOSITORY, &digest(1), &["v1"], "2024-01-01T00:00:00Z");
    let denied = run(&harbor, &["delete", &reference(&harbor, "v1")]);
    assert_eq!(denied.code, 3, "{}", denied.stderr);
    assert!(
        denied.stderr.contains("--repo-harbor-username"),
        "{}",
        denied.stderr
    );
    assert!(!denied.stderr.contains(SECRET));
    assert_eq!(harbor.tags(REPOSITORY).len(), 1);
    harbor.server.assert_no_violations();
}

/// Harbor runs on hosts of any name: when no host rule matches, its `systeminfo` endpoint identifies it.
/// A plain distribution registry answers none of the probes and stays `default`.
#[test]
fn an_unknown_host_is_detected_by_probing() {
    let harbor = Harbor::start(ROBOT, SECRET);
    let config = tempfile::tempdir().unwrap();
    let detect = |repository: &str| {
        let run = regkit(config.path(), &["detect", repository]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        serde_json::from_str::<serde_json::Value>(run.stdout.trim()).unwrap()
    };
    let found = detect(&format!("{}/{REPOSITORY}", harbor.server.host()));
    assert_eq!(found["implementation"], "harbor");
    assert_eq!(
        found["chosen"],
        "the registry host answered GET /api/v2.0/systeminfo"
    );

    let plain = regkit_e2e::registry::Registry::start();
    let found = detect(&format!("{}/team/app", plain.host()));
    assert_eq!(found["implementation"], "default");
    assert_eq!(found["chosen"], "no vendor host pattern matched");
}

/// RFC 3339, `days` days ago.
fn days_ago(days: u64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    format_rfc3339((now - days * 86_400) as i64)
}

/// Pushes an index `index` referencing `children`, each an untagged artifact, pushed `days` ago.
fn push_index(harbor: &Harbor, index: usize, tags: &[&str], children: [usize; 2], days: u64) {
    for child in children {
        harbor.push(REPOSITORY, &digest(child), &[], &days_ago(days));
    }
    harbor.push_artifact(
        REPOSITORY,
        Artifact {
            digest: digest(index),
            push_time: days_ago(days),
            pull_time: None,
            tags: tags.iter().map(|t| (t.to_string(), false)).collect(),
            references: children.iter().map(|c| digest(*c)).collect(),
            subject: None,
        },
    );
}

/// `regkit cleanup --keep-last 100 --older-than 30d --untagged` with a report: the untagged rows by
/// digest, and the report.
fn sweep(harbor: &Harbor, extra: &[&str]) -> (BTreeMap<String, Value>, Value) {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let repository = format!("{}/{REPOSITORY}", harbor.server.host());
    let mut args = vec![
        "cleanup",
        &repository,
        "--keep-last",
        "100",
        "--older-than",
        "30d",
        "--untagged",
        "--report",
        report.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let swept = run(harbor, &args);
    assert_eq!(swept.code, 0, "{}\n{}", swept.stderr, swept.stdout);
    regkit_e2e::report::untagged_rows(&report)
}

#[test]
fn untagged_sweep_removes_untagged_artifacts_and_spares_index_children() {
    let harbor = Harbor::start(ROBOT, SECRET);
    // A tagged index whose children must stay, an untagged one whose children wait for it, a tagged image,
    // an old untagged image and one pushed yesterday (too new for --older-than 30d).
    push_index(&harbor, 10, &["latest"], [11, 12], 90);
    push_index(&harbor, 20, &[], [21, 22], 90);
    harbor.push(REPOSITORY, &digest(30), &["v1"], &days_ago(90));
    harbor.push(REPOSITORY, &digest(40), &[], &days_ago(90));
    harbor.push(REPOSITORY, &digest(41), &[], &days_ago(1));
    let tags_before = harbor.tags(REPOSITORY);
    let all: BTreeSet<String> = harbor.digests(REPOSITORY).into_iter().collect();
    let digests =
        |numbers: &[usize]| -> BTreeSet<String> { numbers.iter().map(|n| digest(*n)).collect() };
    let listed = |rows: &BTreeMap<String, Value>| rows.keys().cloned().collect::<BTreeSet<_>>();

    let (planned, document) = sweep(&harbor, &["--dry-run"]);
    assert_eq!(listed(&planned), digests(&[20, 40, 41]));
    for n in [20, 40] {
        let row = &planned[&digest(n)];
        assert_eq!(row["action"], "delete", "{row}");
        assert_eq!(row["rule"], "untagged", "{row}");
        assert_eq!(row["result"], "planned", "{row}");
        assert_eq!(row["date_source"], "vendor", "{row}");
        assert_eq!(row["age"], "90d", "{row}");
    }
    let fresh = &planned[&digest(41)];
    assert_eq!(fresh["action"], "keep", "{fresh}");
    assert_eq!(fresh["rule"], "too-new", "{fresh}");
    assert_eq!(fresh["result"], "kept", "{fresh}");
    assert_eq!(document["summary"]["planned"], 2, "{document}");
    assert_eq!(
        harbor
            .digests(REPOSITORY)
            .into_iter()
            .collect::<BTreeSet<_>>(),
        all
    );
    assert!(harbor.server.deletes().is_empty());

    let (deleted, document) = sweep(&harbor, &["--yes"]);
    assert_eq!(listed(&deleted), digests(&[20, 40, 41]));
    for n in [20, 40] {
        let row = &deleted[&digest(n)];
        assert_eq!(row["result"], "deleted", "{row}");
        assert_eq!(row["method"], "digest", "{row}");
    }
    assert_eq!(deleted[&digest(41)]["result"], "kept");
    assert_eq!(document["summary"]["deleted"], 2, "{document}");
    assert_eq!(
        harbor
            .digests(REPOSITORY)
            .into_iter()
            .collect::<BTreeSet<_>>(),
        digests(&[10, 11, 12, 21, 22, 30, 41])
    );
    assert_eq!(harbor.tags(REPOSITORY), tags_before);
    let deletes = harbor.server.deletes();
    assert_eq!(deletes.len(), 2, "{deletes:?}");
    assert!(
        deletes.iter().all(|(path, _)| path
            .starts_with("/api/v2.0/projects/proj/repositories/team%252Fapp/artifacts/sha256:")),
        "{deletes:?}"
    );

    // The untagged index is gone, so its children are plain untagged artifacts now.
    let (children, _) = sweep(&harbor, &["--yes"]);
    assert_eq!(listed(&children), digests(&[21, 22, 41]));
    assert_eq!(
        harbor
            .digests(REPOSITORY)
            .into_iter()
            .collect::<BTreeSet<_>>(),
        digests(&[10, 11, 12, 30, 41])
    );
    assert_eq!(harbor.tags(REPOSITORY), tags_before);
    harbor.server.assert_no_violations();
}

/// `--untagged` never sweeps an untagged accessory (a manifest with an OCI 1.1 `subject`, which the listing
/// names under its subject's `accessories`) while its subject lives, however old it is; once its subject
/// goes by digest it follows, in the same run.
#[test]
fn untagged_sweep_keeps_accessories_of_live_subjects_and_takes_them_with_their_subject() {
    let harbor = Harbor::start(ROBOT, SECRET);
    let accessory = |n: usize, subject: usize| Artifact {
        digest: digest(n),
        push_time: days_ago(90),
        pull_time: None,
        tags: BTreeMap::new(),
        references: Vec::new(),
        subject: Some(digest(subject)),
    };
    // v1 with a signature and a signature of that signature, all old; an old untagged image with an
    // attestation; an old untagged image.
    harbor.push(REPOSITORY, &digest(1), &["v1"], &days_ago(90));
    harbor.push_artifact(REPOSITORY, accessory(2, 1));
    harbor.push_artifact(REPOSITORY, accessory(3, 2));
    harbor.push(REPOSITORY, &digest(10), &[], &days_ago(90));
    harbor.push_artifact(REPOSITORY, accessory(11, 10));
    harbor.push(REPOSITORY, &digest(20), &[], &days_ago(90));
    let present = || -> BTreeSet<String> { harbor.digests(REPOSITORY).into_iter().collect() };
    let digests =
        |numbers: &[usize]| -> BTreeSet<String> { numbers.iter().map(|n| digest(*n)).collect() };
    let before = present();

    let (planned, _) = sweep(&harbor, &["--dry-run"]);
    for (n, subject) in [(2, 1), (3, 2)] {
        let row = &planned[&digest(n)];
        assert_eq!(row["action"], "keep", "{row}");
        assert_eq!(row["rule"], "referrer", "{row}");
        assert_eq!(row["subject"], digest(subject).as_str(), "{row}");
    }
    let row = &planned[&digest(11)];
    assert_eq!(row["action"], "delete", "{row}");
    assert_eq!(row["rule"], "follows-subject", "{row}");
    assert_eq!(row["subject"], digest(10).as_str(), "{row}");
    for n in [10, 20] {
        assert_eq!(
            planned[&digest(n)]["rule"],
            "untagged",
            "{}",
            planned[&digest(n)]
        );
    }
    assert_eq!(present(), before);
    assert!(harbor.server.deletes().is_empty());

    let (swept, _) = sweep(&harbor, &["--yes"]);
    for n in [10, 20] {
        assert_eq!(
            swept[&digest(n)]["result"],
            "deleted",
            "{}",
            swept[&digest(n)]
        );
    }
    let row = &swept[&digest(11)];
    assert!(
        ["deleted", "absent"].contains(&row["result"].as_str().unwrap_or_default()),
        "Harbor may have taken it with its subject already: {row}"
    );
    assert_eq!(present(), digests(&[1, 2, 3]));
    assert_eq!(harbor.tags(REPOSITORY).keys().collect::<Vec<_>>(), ["v1"]);
    harbor.server.assert_no_violations();
}

#[test]
fn a_listing_that_never_ends_fails_and_nothing_is_deleted() {
    let harbor = Harbor::start(ROBOT, SECRET);
    for i in 0..3 {
        harbor.push(
            REPOSITORY,
            &digest(i),
            &[&format!("t{i}")],
            "2024-01-01T00:00:00.000Z",
        );
    }
    harbor.paginate_forever.on();
    let repository = format!("{}/{REPOSITORY}", harbor.server.host());
    let listed = run(&harbor, &["tags", &repository]);
    let swept = run(
        &harbor,
        &[&["cleanup", repository.as_str()][..], &DELETE_EVERY_TAG].concat(),
    );
    assert_listing_refused(
        &listed,
        &swept,
        &harbor.server.deletes(),
        &repository,
        "page 2 is page 1 again",
    );
    assert_eq!(harbor.tags(REPOSITORY).len(), 3);
    harbor.server.assert_no_violations();
}
