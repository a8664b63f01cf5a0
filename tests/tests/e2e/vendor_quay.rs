//! `regkit` with the `quay` implementation against a Quay API v1 double: paginated active tags with
//! start times, tag deletes that keep sibling tags, expired and absent tags, immutable tags (409) reported
//! per tag, and a bad token (exit 3).

use regkit_e2e::vendors::quay::{DOCUMENTED, Quay, Tag};
use regkit_e2e::vendors::{
    DELETE_EVERY_TAG, Run, assert_documented, assert_listing_refused, digest, regkit,
};

const TOKEN: &str = "quay-oauth-token";

fn run(quay: &Quay, token: &str, args: &[&str]) -> Run {
    let config = tempfile::tempdir().unwrap();
    let url = quay.server.url();
    let mut all = vec![
        "--repo-implementation",
        "quay",
        "--quay-api-url",
        &url,
        "--repo-quay-token",
        token,
    ];
    all.extend(args);
    regkit(config.path(), &all)
}

fn tag(n: usize) -> Tag {
    Tag {
        digest: digest(n),
        start_ts: 1_704_067_200 + n as i64,
        end_ts: None,
        immutable: false,
    }
}

#[test]
fn the_route_table_is_the_documented_one() {
    let quay = Quay::start("org", "app", TOKEN);
    assert_documented(&quay.server.declared(), DOCUMENTED);
}

#[test]
fn listing_pages_and_deletes_keep_siblings() {
    let quay = Quay::start("org", "app", TOKEN);
    for i in 0..130 {
        quay.tag(&format!("t{i:03}"), tag(i % 7));
    }
    quay.tag(
        "locked",
        Tag {
            immutable: true,
            ..tag(1)
        },
    );
    quay.tag(
        "expired",
        Tag {
            end_ts: Some(1_704_067_300),
            ..tag(2)
        },
    );
    let repository = format!("{}/org/app", quay.server.host());
    let listed = run(&quay, TOKEN, &["tags", &repository]);
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    assert_eq!(listed.stdout.lines().count(), 131, "{}", listed.stdout);
    assert!(!listed.stdout.contains("\"expired\""));

    let before = quay.tags();
    let reference = |tag: &str| format!("{repository}:{tag}");
    let deleted = run(
        &quay,
        TOKEN,
        &[
            "delete",
            &reference("t000"),
            &reference("expired"),
            &reference("locked"),
            &reference("nope"),
        ],
    );
    assert_eq!(deleted.code, 1, "{}", deleted.stderr);
    let entries = deleted.entries();
    let statuses: Vec<&str> = entries
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["untagged", "absent", "failed", "absent"]);
    assert_eq!(entries[0]["digest"], digest(0));
    assert!(
        entries[2]["error"].as_str().unwrap().contains("immutable"),
        "{}",
        entries[2]
    );
    let mut expected = before;
    expected.remove("t000");
    assert_eq!(quay.tags(), expected);
    // t007 shared t000's manifest and is still there.
    assert_eq!(quay.tags()["t007"], digest(0));
    let pages = quay
        .server
        .log()
        .iter()
        .filter(|(method, path, _)| method == "GET" && path.ends_with("/tag/"))
        .count();
    assert_eq!(
        pages,
        4,
        "two listings of two pages: {:?}",
        quay.server.log()
    );
    quay.server.assert_no_violations();
}

#[test]
fn a_bad_token_exits_3_naming_the_scopes() {
    let quay = Quay::start("org", "app", TOKEN);
    quay.tag("v1", tag(1));
    let repository = format!("{}/org/app", quay.server.host());
    let denied = run(&quay, "wrong", &["delete", &format!("{repository}:v1")]);
    assert_eq!(denied.code, 3, "{}", denied.stderr);
    assert!(denied.stderr.contains("repo:write"), "{}", denied.stderr);
    assert_eq!(quay.tags().len(), 1);
    assert!(quay.server.violations().is_empty());
}

#[test]
fn a_listing_that_never_ends_fails_and_nothing_is_deleted() {
    let quay = Quay::start("org", "app", TOKEN);
    for i in 0..3 {
        quay.tag(&format!("t{i}"), tag(i));
    }
    quay.paginate_forever.on();
    let repository = format!("{}/org/app", quay.server.host());
    let listed = run(&quay, TOKEN, &["tags", &repository]);
    let swept = run(
        &quay,
        TOKEN,
        &[&["cleanup", repository.as_str()][..], &DELETE_EVERY_TAG].concat(),
    );
    assert_listing_refused(
        &listed,
        &swept,
        &quay.server.deletes(),
        &repository,
        "page 2 is page 1 again",
    );
    quay.server.assert_no_violations();
}
