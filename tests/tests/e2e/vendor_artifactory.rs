//! `regkit` with the `artifactory` implementation against an Artifactory double: Docker tags list pages
//! (Link), tag folder deletes that keep siblings, absent tags, a bad token (exit 3).

use regkit_e2e::vendors::artifactory::{Artifactory, DOCUMENTED};
use regkit_e2e::vendors::{Run, assert_documented, regkit};

fn run(artifactory: &Artifactory, token: &str, args: &[&str]) -> Run {
    let config = tempfile::tempdir().unwrap();
    let url = artifactory.server.url();
    let mut all = vec![
        "--repo-implementation",
        "artifactory",
        "--artifactory-url",
        &url,
        "--repo-artifactory-token",
        token,
    ];
    all.extend(args);
    regkit(config.path(), &all)
}

#[test]
fn the_route_table_is_the_documented_one() {
    let artifactory = Artifactory::start("docker-local", "tok");
    assert_documented(&artifactory.server.declared(), DOCUMENTED);
}

#[test]
fn tags_page_and_a_deleted_tag_keeps_its_siblings() {
    let artifactory = Artifactory::start("docker-local", "tok");
    for i in 0..70 {
        artifactory.push(&format!("t{i:03}"), "2024-05-01T10:00:00.000Z");
    }
    let repository = format!("{}/docker-local/team/app", artifactory.server.host());
    let listed = run(&artifactory, "tok", &["tags", &repository]);
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    assert_eq!(listed.stdout.lines().count(), 70);
    let before = artifactory.tags();
    let deleted = run(
        &artifactory,
        "tok",
        &[
            "delete",
            &format!("{repository}:t003"),
            &format!("{repository}:nope"),
        ],
    );
    assert_eq!(deleted.code, 0, "{}", deleted.stderr);
    let entries = deleted.entries();
    assert_eq!(entries[0]["status"], "deleted");
    assert_eq!(entries[1]["status"], "absent");
    let mut expected = before;
    expected.remove("t003");
    assert_eq!(artifactory.tags(), expected);
    artifactory.server.assert_no_violations();
}

#[test]
fn a_bad_token_exits_3() {
    let artifactory = Artifactory::start("docker-local", "tok");
    artifactory.push("v1", "2024-05-01T10:00:00.000Z");
    let repository = format!("{}/docker-local/team/app", artifactory.server.host());
    let denied = run(
        &artifactory,
        "bad",
        &["delete", &format!("{repository}:v1")],
    );
    assert_eq!(denied.code, 3, "{}", denied.stderr);
    assert!(
        denied.stderr.contains("--repo-artifactory-token"),
        "{}",
        denied.stderr
    );
    assert_eq!(artifactory.tags().len(), 1);
}
