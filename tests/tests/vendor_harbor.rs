//! `regkit` with the `harbor` implementation against a Harbor double written from Harbor's swagger:
//! paginated listing with push times, tag deletes that keep sibling tags, absent tags, immutable tags and
//! index children refused per tag, a robot account's wrong password (exit 3), and detection by probing.

use regkit_e2e::apiserver::Declared;
use regkit_e2e::specs::OpenApi;
use regkit_e2e::vendors::harbor::{Artifact, Harbor, SPEC};
use regkit_e2e::vendors::{digest, regkit};

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
    let context = regkit::vendor::Context {
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
        settings: regkit::vendor::Settings::with_environment(Vec::new(), Vec::new()),
    };
    let vendor = regkit::vendor::build("harbor", context).unwrap();
    let repository = regkit::reference::Repository::parse(&repository).unwrap();
    let tags = runtime
        .block_on(vendor.list_tags(&repository, false))
        .unwrap();
    assert_eq!(tags.len(), 150);
    assert_eq!(tags[61].tag, "t061");
    assert_eq!(
        tags[61].created.as_deref(),
        Some("2024-01-01T00:01:01.000Z")
    );
    assert!(
        harbor.server.violations().is_empty(),
        "{:?}",
        harbor.server.violations()
    );
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
            tags: [("release".to_string(), true), ("rc".to_string(), false)].into(),
            references: Vec::new(),
        },
    );
    // An index with one child manifest (untagged, as a multi-arch child is).
    harbor.push(REPOSITORY, &digest(10), &[], "2024-01-04T00:00:00Z");
    harbor.push_artifact(
        REPOSITORY,
        Artifact {
            digest: digest(11),
            push_time: "2024-01-04T00:00:00Z".into(),
            tags: [("multi".to_string(), false)].into(),
            references: vec![digest(10)],
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
        harbor
            .server
            .log()
            .iter()
            .any(|(method, path, status)| method == "DELETE"
                && path.contains("/repositories/team%252Fapp/artifacts/")
                && *status == 200),
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
    assert!(
        harbor.server.violations().is_empty(),
        "{:?}",
        harbor.server.violations()
    );
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
    assert!(
        harbor.server.violations().is_empty(),
        "{:?}",
        harbor.server.violations()
    );
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
