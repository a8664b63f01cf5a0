//! `regkit` with the `nexus` implementation against a Nexus 3 double: search pages (continuation tokens),
//! component deletes, tags sharing a manifest with a kept tag refused, absent tags, a kept index's child
//! kept, bad credentials (exit 3).

use regkit_e2e::images::{self, Auth, Format};
use regkit_e2e::registry::Registry;
use regkit_e2e::vendors::nexus::{DOCUMENTED, Nexus};
use regkit_e2e::vendors::{
    DELETE_EVERY_TAG, INDEX_CHILD_POLICY, Run, assert_documented, assert_index_child_kept,
    assert_listing_refused, regkit,
};

fn run(nexus: &Nexus, password: &str, args: &[&str]) -> Run {
    let config = tempfile::tempdir().unwrap();
    let url = nexus.server.url();
    let mut all = vec![
        "--repo-implementation",
        "nexus",
        "--nexus-url",
        &url,
        "--nexus-repository",
        "docker-hosted",
        "--repo-nexus-username",
        "ci",
        "--repo-nexus-password",
        password,
    ];
    all.extend(args);
    regkit(config.path(), &all)
}

fn hex(n: usize) -> String {
    format!("{n:064x}")
}

#[test]
fn the_route_table_is_the_documented_one() {
    let nexus = Nexus::start("docker-hosted", "ci", "pw");
    assert_documented(&nexus.server.declared(), DOCUMENTED);
}

#[test]
fn components_page_and_shared_manifests_are_refused() {
    let nexus = Nexus::start("docker-hosted", "ci", "pw");
    for i in 0..120 {
        nexus.push("team/app", &format!("t{i:03}"), &hex(i));
    }
    nexus.push("team/app", "alias", &hex(5));
    nexus.push("team/app", "pair-a", &hex(500));
    nexus.push("team/app", "pair-b", &hex(500));
    let repository = format!("{}/team/app", nexus.server.host());
    let listed = run(&nexus, "pw", &["tags", "--digests", &repository]);
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    assert_eq!(listed.stdout.lines().count(), 123);
    assert!(listed.stdout.contains(&format!("sha256:{}", hex(7))));

    let before = nexus.tags("team/app");
    let reference = |tag: &str| format!("{repository}:{tag}");
    let deleted = run(
        &nexus,
        "pw",
        &[
            "delete",
            &reference("t001"),
            &reference("t005"),
            &reference("pair-a"),
            &reference("pair-b"),
            &reference("nope"),
        ],
    );
    assert_eq!(deleted.code, 1, "{}", deleted.stderr);
    let statuses: Vec<String> = deleted
        .entries()
        .iter()
        .map(|e| e["status"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        statuses,
        ["deleted", "failed", "deleted", "deleted", "absent"]
    );
    assert!(
        deleted.entries()[1]["error"]
            .as_str()
            .unwrap()
            .contains("alias")
    );
    let mut expected = before;
    for gone in ["t001", "pair-a", "pair-b"] {
        expected.remove(gone);
    }
    assert_eq!(nexus.tags("team/app"), expected);
    nexus.server.assert_no_violations();
}

#[test]
fn bad_credentials_exit_3() {
    let nexus = Nexus::start("docker-hosted", "ci", "pw");
    nexus.push("team/app", "v1", &hex(1));
    let repository = format!("{}/team/app", nexus.server.host());
    let denied = run(&nexus, "wrong", &["delete", &format!("{repository}:v1")]);
    assert_eq!(denied.code, 3, "{}", denied.stderr);
    assert!(
        denied.stderr.contains("--repo-nexus-username"),
        "{}",
        denied.stderr
    );
    assert_eq!(nexus.tags("team/app").len(), 1);
}

/// Deleting a component takes its manifest, so a cleanup keeps a tag whose manifest a kept multi-arch
/// index lists; the index is read from the registry's v2 API, beside the Nexus API.
#[test]
fn a_child_of_a_kept_index_is_never_removed() {
    let registry = Registry::start();
    let index = images::push_index(
        &registry.url(),
        "team/app",
        "multi",
        &Auth::None,
        Format::Oci,
    );
    let nexus = Nexus::start("docker-hosted", "ci", "pw");
    let sha = |digest: &str| digest.trim_start_matches("sha256:").to_string();
    nexus.push("team/app", "multi", &sha(&index.digest));
    nexus.push("team/app", "amd64", &sha(&index.children[0]));
    nexus.push("team/app", "lonely", &hex(9));
    let repository = format!("{}/team/app", registry.host());
    let swept = run(
        &nexus,
        "pw",
        &[&["cleanup", repository.as_str()][..], &INDEX_CHILD_POLICY].concat(),
    );
    assert_index_child_kept(&swept);
    assert_eq!(
        nexus.tags("team/app").keys().collect::<Vec<_>>(),
        ["amd64", "multi"]
    );
    nexus.server.assert_no_violations();
}

#[test]
fn a_listing_that_never_ends_fails_and_nothing_is_deleted() {
    let nexus = Nexus::start("docker-hosted", "ci", "pw");
    for i in 0..3 {
        nexus.push("team/app", &format!("t{i}"), &hex(i));
    }
    nexus.paginate_forever.on();
    let repository = format!("{}/team/app", nexus.server.host());
    let listed = run(&nexus, "pw", &["tags", &repository]);
    let swept = run(
        &nexus,
        "pw",
        &[&["cleanup", repository.as_str()][..], &DELETE_EVERY_TAG].concat(),
    );
    assert_listing_refused(
        &listed,
        &swept,
        &nexus.server.deletes(),
        &repository,
        "page 2 repeats continuationToken from page 1",
    );
    assert_eq!(nexus.tags("team/app").len(), 3);
    nexus.server.assert_no_violations();
}
