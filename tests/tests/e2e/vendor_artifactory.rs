//! `regkit` with the `artifactory` implementation against an Artifactory double: Docker tags list pages
//! (Link), tag folder deletes that keep siblings, absent tags, a kept index's child kept, a bad token
//! (exit 3).

use regkit_e2e::images::{self, Auth, Format};
use regkit_e2e::registry::Registry;
use regkit_e2e::vendors::artifactory::{Artifactory, DOCUMENTED};
use regkit_e2e::vendors::{
    DELETE_EVERY_TAG, INDEX_CHILD_POLICY, Run, assert_documented, assert_index_child_kept,
    assert_listing_refused, regkit,
};

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

/// Deleting a tag folder takes the tag's manifest, so a cleanup keeps a tag whose manifest a kept
/// multi-arch index lists; the index is read from the registry's v2 API, beside the Artifactory API.
#[test]
fn a_child_of_a_kept_index_is_never_removed() {
    let registry = Registry::start();
    let repo = "docker-local/team/app";
    let index = images::push_index(&registry.url(), repo, "multi", &Auth::None, Format::Oci);
    let artifactory = Artifactory::start("docker-local", "tok");
    let created = "2024-05-01T10:00:00.000Z";
    artifactory.push_manifest("multi", created, &index.digest);
    artifactory.push_manifest("amd64", created, &index.children[0]);
    artifactory.push("lonely", created);
    let repository = format!("{}/{repo}", registry.host());
    let swept = run(
        &artifactory,
        "tok",
        &[&["cleanup", repository.as_str()][..], &INDEX_CHILD_POLICY].concat(),
    );
    assert_index_child_kept(&swept);
    assert_eq!(
        artifactory.tags().keys().collect::<Vec<_>>(),
        ["amd64", "multi"]
    );
    artifactory.server.assert_no_violations();
}

#[test]
fn a_listing_that_never_ends_fails_and_nothing_is_deleted() {
    let artifactory = Artifactory::start("docker-local", "tok");
    for i in 0..3 {
        artifactory.push(&format!("t{i}"), "2024-05-01T10:00:00.000Z");
    }
    artifactory.paginate_forever.on();
    let repository = format!("{}/docker-local/team/app", artifactory.server.host());
    let listed = run(&artifactory, "tok", &["tags", &repository]);
    let swept = run(
        &artifactory,
        "tok",
        &[&["cleanup", repository.as_str()][..], &DELETE_EVERY_TAG].concat(),
    );
    assert_listing_refused(
        &listed,
        &swept,
        &artifactory.server.deletes(),
        &repository,
        "page 2 repeats the next link from page 1",
    );
    assert_eq!(artifactory.tags().len(), 3);
    artifactory.server.assert_no_violations();
}
