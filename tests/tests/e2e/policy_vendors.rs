//! One `regkit cleanup` policy run per vendor against its API double: the dates come from the vendor's own
//! listing, the selected tags go through the vendor's tag-safe delete, and a kept tag sharing an image
//! with a deleted one keeps it. The same command code runs for every implementation.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;

use regkit::dates::format_rfc3339;
use regkit_e2e::images::{self, Auth};
use regkit_e2e::registry::Registry;
use regkit_e2e::vendors::acr::{self, Acr};
use regkit_e2e::vendors::artifactory::Artifactory;
use regkit_e2e::vendors::artifactregistry::{ArtifactRegistry, IMAGE_MANIFEST};
use regkit_e2e::vendors::dockerhub::HubServer;
use regkit_e2e::vendors::github::GitHubServer;
use regkit_e2e::vendors::gitlab::GitLabServer;
use regkit_e2e::vendors::harbor::Harbor;
use regkit_e2e::vendors::nexus::Nexus;
use regkit_e2e::vendors::quay::{Quay, Tag};
use regkit_e2e::vendors::{Run, digest, regkit};
use serde_json::Value;

/// Seconds since the epoch, `days` days ago.
fn days_ago(days: i64) -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        - days * 86_400
}

/// The tags every vendor gets: (tag, digest number, age in days). `pin` shares `t-old`'s image and is
/// outside `--match`, so it must keep that image.
const TAGS: [(&str, usize, i64); 4] = [
    ("t-old", 1, 400),
    ("t-mid", 2, 60),
    ("t-new", 3, 1),
    ("pin", 1, 400),
];

/// The policy run: tags matching `^t-` older than 30 days.
const POLICY: [&str; 6] = ["--match", "^t-", "--older-than", "30d", "--yes", "--report"];

/// Runs the policy on `repository` with the vendor flags, checks the rows and returns them by tag.
fn cleanup(flags: &[&str], repository: &str) -> BTreeMap<String, Value> {
    let config = tempfile::tempdir().unwrap();
    cleanup_in(config.path(), flags, repository)
}

/// The `--report` file's rows by tag.
fn report_rows(report: &Path) -> BTreeMap<String, Value> {
    let document: Value = serde_json::from_slice(&std::fs::read(report).unwrap()).unwrap();
    document["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| (row["tag"].as_str().unwrap().to_string(), row.clone()))
        .collect()
}

/// The flags that reach the Docker Hub double as alice.
fn hub_flags(url: &str) -> [&str; 8] {
    [
        "--repo-implementation",
        "dockerhub",
        "--docker-hub-api-url",
        url,
        "--repo-docker-hub-username",
        "alice",
        "--repo-docker-hub-password",
        "s3cret-pw",
    ]
}

/// The flags that reach the Harbor double as its robot account.
fn harbor_flags(url: &str) -> [&str; 8] {
    [
        "--repo-implementation",
        "harbor",
        "--harbor-api-url",
        url,
        "--repo-harbor-username",
        "robot$proj+ci",
        "--repo-harbor-password",
        "robot-s3cret",
    ]
}

/// [`cleanup`] with the docker config (and report) in `config`, for vendors whose credentials come from it.
fn cleanup_in(config: &Path, flags: &[&str], repository: &str) -> BTreeMap<String, Value> {
    let report = config.join("report.json");
    let mut args: Vec<&str> = flags.to_vec();
    args.extend(["cleanup", repository]);
    args.extend(POLICY);
    args.push(report.to_str().unwrap());
    let run: Run = regkit(config, &args);
    assert_eq!(run.code, 0, "{}\n{}", run.stderr, run.stdout);
    let rows = report_rows(&report);
    assert_eq!(
        rows.keys().map(String::as_str).collect::<Vec<_>>(),
        ["pin", "t-mid", "t-new", "t-old"]
    );
    for tag in ["t-old", "t-mid", "t-new"] {
        assert_eq!(rows[tag]["date_source"], "vendor", "{tag}: {}", rows[tag]);
    }
    for tag in ["t-old", "t-mid"] {
        assert_eq!(rows[tag]["action"], "delete", "{tag}");
        assert!(
            ["deleted", "untagged"].contains(&rows[tag]["result"].as_str().unwrap()),
            "{tag}: {}",
            rows[tag]
        );
    }
    assert_eq!(rows["t-new"]["rule"], "too-new");
    assert_eq!(rows["pin"]["rule"], "not-matched");
    rows
}

/// What every vendor must hold afterwards.
fn expected() -> BTreeMap<String, String> {
    [("pin", digest(1)), ("t-new", digest(3))]
        .into_iter()
        .map(|(tag, digest)| (tag.to_string(), digest))
        .collect()
}

#[test]
fn quay() {
    let quay = Quay::start("org", "app", "quay-token");
    for (tag, n, days) in TAGS {
        quay.tag(
            tag,
            Tag {
                digest: digest(n),
                start_ts: days_ago(days),
                end_ts: None,
                immutable: false,
            },
        );
    }
    let url = quay.server.url();
    let flags = [
        "--repo-implementation",
        "quay",
        "--quay-api-url",
        &url,
        "--repo-quay-token",
        "quay-token",
    ];
    cleanup(&flags, &format!("{}/org/app", quay.server.host()));
    assert_eq!(quay.tags(), expected());
    quay.server.assert_no_violations();
}

#[test]
fn dockerhub() {
    let hub = HubServer::start();
    hub.add_account("alice", "s3cret-pw", None);
    for (tag, n, days) in TAGS {
        hub.push(
            "alice/app",
            tag,
            &digest(n),
            &format_rfc3339(days_ago(days)),
        );
    }
    let url = hub.url();
    cleanup(
        &hub_flags(&url),
        &format!("{}/alice/app", hub.server.host()),
    );
    assert_eq!(hub.tags("alice/app"), expected());
    hub.server.assert_no_violations();
}

/// The tags of the `--unpulled-for 30d` runs: (tag, digest number, pushed and last pulled days ago).
const PULLS: [(&str, usize, i64, Option<i64>); 4] = [
    ("hot", 1, 90, Some(2)),
    ("cold", 2, 90, Some(60)),
    ("never", 3, 90, None),
    ("young", 4, 5, None),
];

/// Runs `--unpulled-for 30d` on `repository`, holding [`PULLS`], and checks the verdicts: a tag pulled
/// lately stays, one pulled long ago or never (counted from its push) goes; the rule names what it found.
fn unpulled_for(flags: &[&str], repository: &str) {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let mut args = flags.to_vec();
    args.extend([
        "cleanup",
        repository,
        "--unpulled-for",
        "30d",
        "--yes",
        "--report",
        report.to_str().unwrap(),
    ]);
    let run: Run = regkit(dir.path(), &args);
    assert_eq!(run.code, 0, "{}\n{}", run.stderr, run.stdout);
    let rows = report_rows(&report);
    assert_eq!(rows["hot"]["rule"], "recently-pulled");
    assert_eq!(rows["hot"]["reason"], "last pulled 2d ago, within 30d");
    assert_eq!(rows["cold"]["action"], "delete", "{}", rows["cold"]);
    assert_eq!(
        rows["never"]["reason"],
        "never pulled, pushed 90d ago, unpulled for more than 30d"
    );
    assert_eq!(rows["young"]["action"], "keep", "{}", rows["young"]);
}

/// `--unpulled-for` reads Docker Hub's `tag_last_pulled`.
#[test]
fn dockerhub_unpulled_for_reads_tag_last_pulled() {
    let hub = HubServer::start();
    hub.add_account("alice", "s3cret-pw", None);
    for (tag, n, pushed, pulled) in PULLS {
        hub.push(
            "alice/pulls",
            tag,
            &digest(n),
            &format_rfc3339(days_ago(pushed)),
        );
        if let Some(days) = pulled {
            hub.pull("alice/pulls", tag, &format_rfc3339(days_ago(days)));
        }
    }
    let url = hub.url();
    unpulled_for(
        &hub_flags(&url),
        &format!("{}/alice/pulls", hub.server.host()),
    );
    assert_eq!(
        hub.tags("alice/pulls")
            .keys()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        ["hot", "young"]
    );
    hub.server.assert_no_violations();
}

/// `--unpulled-for` reads Harbor's `pull_time`, whose zero time means never pulled.
#[test]
fn harbor_unpulled_for_reads_pull_time() {
    let harbor = Harbor::start("robot$proj+ci", "robot-s3cret");
    let repository = "proj/pulls";
    for (tag, n, pushed, pulled) in PULLS {
        harbor.push(
            repository,
            &digest(n),
            &[tag],
            &format_rfc3339(days_ago(pushed)),
        );
        if let Some(days) = pulled {
            harbor.pull(repository, &digest(n), &format_rfc3339(days_ago(days)));
        }
    }
    let url = harbor.server.url();
    unpulled_for(
        &harbor_flags(&url),
        &format!("{}/{repository}", harbor.server.host()),
    );
    assert_eq!(
        harbor
            .tags(repository)
            .keys()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        ["hot", "young"]
    );
    harbor.server.assert_no_violations();
}

#[test]
fn gitlab() {
    let gitlab = GitLabServer::start("gitlab-token");
    for (tag, n, days) in TAGS {
        gitlab.push(
            "group/app",
            "group/app/img",
            tag,
            &digest(n),
            &format_rfc3339(days_ago(days)),
        );
    }
    let url = gitlab.api_url();
    let flags = [
        "--repo-implementation",
        "gitlab",
        "--gitlab-api-url",
        &url,
        "--repo-gitlab-token",
        "gitlab-token",
    ];
    cleanup(&flags, &format!("{}/group/app/img", gitlab.server.host()));
    assert_eq!(gitlab.tags("group/app/img"), expected());
    gitlab.server.assert_no_violations();
}

#[test]
fn harbor() {
    let harbor = Harbor::start("robot$proj+ci", "robot-s3cret");
    let repository = "proj/team/app";
    harbor.push(
        repository,
        &digest(1),
        &["t-old", "pin"],
        &format_rfc3339(days_ago(400)),
    );
    harbor.push(
        repository,
        &digest(2),
        &["t-mid"],
        &format_rfc3339(days_ago(60)),
    );
    harbor.push(
        repository,
        &digest(3),
        &["t-new"],
        &format_rfc3339(days_ago(1)),
    );
    let url = harbor.server.url();
    let rows = cleanup(
        &harbor_flags(&url),
        &format!("{}/{repository}", harbor.server.host()),
    );
    assert_eq!(rows["t-old"]["result"], "untagged");
    assert_eq!(harbor.tags(repository), expected());
    harbor.server.assert_no_violations();
}

#[test]
fn artifactory() {
    let artifactory = Artifactory::start("docker-local", "tok");
    for (tag, _, days) in TAGS {
        artifactory.push(tag, &format_rfc3339(days_ago(days)));
    }
    let url = artifactory.server.url();
    let flags = [
        "--repo-implementation",
        "artifactory",
        "--artifactory-url",
        &url,
        "--repo-artifactory-token",
        "tok",
    ];
    // Deleting a tag folder takes its manifest, so the cleanup reads kept tags' manifests (for index
    // children) from the registry's v2 API, which the API double does not serve.
    let registry = Registry::start();
    cleanup(
        &flags,
        &format!("{}/docker-local/team/app", registry.host()),
    );
    assert_eq!(
        artifactory
            .tags()
            .keys()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        ["pin", "t-new"]
    );
    artifactory.server.assert_no_violations();
}

/// Nexus deletes whole components, so it refuses a tag whose manifest a kept tag shares: the policy run
/// reports that tag failed (exit 1) and the kept tag keeps its image.
#[test]
fn nexus() {
    let nexus = Nexus::start("docker-hosted", "ci", "pw");
    nexus.push("team/app", "t-old", &format!("{:064x}", 1));
    nexus.push("team/app", "pin", &format!("{:064x}", 1));
    nexus.push("team/app", "t-mid", &format!("{:064x}", 2));
    nexus.push("team/app", "keep-me", &format!("{:064x}", 3));
    let url = nexus.server.url();
    let config = tempfile::tempdir().unwrap();
    // Deleting a component takes its manifest, so the cleanup reads kept tags' manifests (for index
    // children) from the registry's v2 API, which the API double does not serve.
    let registry = Registry::start();
    let repository = format!("{}/team/app", registry.host());
    let run = regkit(
        config.path(),
        &[
            "--repo-implementation",
            "nexus",
            "--nexus-url",
            &url,
            "--nexus-repository",
            "docker-hosted",
            "--repo-nexus-username",
            "ci",
            "--repo-nexus-password",
            "pw",
            "cleanup",
            &repository,
            "--match",
            "^t-",
            "--older-than",
            "30d",
            "--yes",
        ],
    );
    assert_eq!(run.code, 1, "{}\n{}", run.stderr, run.stdout);
    let rows = run.rows();
    assert_eq!(rows["t-old"]["result"], "failed");
    assert_eq!(rows["t-mid"]["result"], "deleted");
    assert_eq!(rows["t-mid"]["date_source"], "vendor");
    let after = nexus.tags("team/app");
    assert_eq!(
        after.keys().map(String::as_str).collect::<Vec<_>>(),
        ["keep-me", "pin", "t-old"]
    );
    assert_eq!(after["pin"], format!("{:064x}", 1));
    nexus.server.assert_no_violations();
}

/// GitHub's versions are the real registry's manifests behind the stand-in; the policy is by name here
/// (the stand-in dates every version at its creation).
#[test]
fn github() {
    let registry = Registry::start();
    let github = GitHubServer::start(&registry.url(), "ghp_test_token", "octocat");
    github.add_organisation("octo-org");
    let repo = "octo-org/app";
    let shared = images::push(&registry.url(), repo, &["t-old", "pin"], &Auth::None);
    images::push(&registry.url(), repo, &["t-mid"], &Auth::None);
    let new = images::push(&registry.url(), repo, &["t-new"], &Auth::None);
    let url = github.url();
    let config = tempfile::tempdir().unwrap();
    let run = regkit(
        config.path(),
        &[
            "--repo-implementation",
            "github",
            "--github-api-url",
            &url,
            "--repo-github-token",
            "ghp_test_token",
            "cleanup",
            &format!("{}/{repo}", registry.host()),
            "--match",
            "^t-",
            "--exclude",
            "new",
            "--yes",
        ],
    );
    assert_eq!(run.code, 0, "{}\n{}", run.stderr, run.stdout);
    let after = images::tag_digests(&registry.url(), repo, &Auth::None);
    let expected: BTreeMap<String, String> =
        [("pin".to_string(), shared), ("t-new".to_string(), new)]
            .into_iter()
            .collect();
    assert_eq!(after, expected);
    github.server.assert_no_violations();
}

/// A vendor whose API has no untagged manifests to list (Quay) answers `--untagged` with a repository note
/// in the report, not an error, and removes nothing.
#[test]
fn untagged_on_quay_is_a_note() {
    let quay = Quay::start("org", "app", "quay-token");
    for (tag, n, days) in TAGS {
        quay.tag(
            tag,
            Tag {
                digest: digest(n),
                start_ts: days_ago(days),
                end_ts: None,
                immutable: false,
            },
        );
    }
    let before = quay.tags();
    let url = quay.server.url();
    let config = tempfile::tempdir().unwrap();
    let report = config.path().join("report.json");
    let run = regkit(
        config.path(),
        &[
            "--repo-implementation",
            "quay",
            "--quay-api-url",
            &url,
            "--repo-quay-token",
            "quay-token",
            "cleanup",
            &format!("{}/org/app", quay.server.host()),
            "--keep-last",
            "10",
            "--untagged",
            "--yes",
            "--report",
            report.to_str().unwrap(),
        ],
    );
    assert_eq!(run.code, 0, "{}\n{}", run.stderr, run.stdout);
    let document: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let notes = document["notes"].as_array().unwrap();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert_eq!(notes[0]["implementation"], "quay");
    assert_eq!(
        notes[0]["note"],
        "--untagged: the quay implementation cannot list untagged manifests; none removed"
    );
    assert!(
        document["tags"]
            .as_array()
            .unwrap()
            .iter()
            .all(|row| row["action"] == "keep"),
        "{document}"
    );
    assert_eq!(quay.tags(), before);
    quay.server.assert_no_violations();
}

#[test]
fn acr() {
    let acr = Acr::start("72f988bf-0000-4000-8000-2d7cd011db47");
    {
        let mut state = acr.state.lock().unwrap();
        let roles = ["AcrPull", "AcrDelete"].map(str::to_owned).into();
        state
            .users
            .insert("myreg".into(), ("admin-pw".into(), roles));
        let tags = state.repositories.entry("team/app".into()).or_default();
        for (tag, n, days) in TAGS {
            let date = format_rfc3339(days_ago(days));
            let row = acr::Tag {
                digest: digest(n),
                created: date.clone(),
                updated: date,
                locked: false,
            };
            tags.insert(tag.into(), row);
        }
    }
    // ACR's credentials come from the docker config only: the admin user.
    let config = tempfile::tempdir().unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode("myreg:admin-pw");
    let docker = serde_json::json!({"auths": {acr.server.host(): {"auth": auth}}});
    std::fs::write(config.path().join("config.json"), docker.to_string()).unwrap();
    let flags = ["--repo-implementation", "acr"];
    let repository = format!("{}/team/app", acr.server.host());
    let rows = cleanup_in(config.path(), &flags, &repository);
    assert_eq!(rows["t-old"]["result"], "untagged");
    let state = acr.state.lock().unwrap();
    let tags: BTreeMap<String, String> = state.repositories["team/app"]
        .iter()
        .map(|(tag, row)| (tag.clone(), row.digest.clone()))
        .collect();
    assert_eq!(tags, expected());
    drop(state);
    acr.server.assert_no_violations();
}

#[test]
fn gcr() {
    let ar = ArtifactRegistry::start("ya29.admin", "ya29.reader");
    let package = ("proj", "us", "repo", "team/app");
    for (tag, n, days) in TAGS {
        let created = format_rfc3339(days_ago(days));
        ar.version(package, &digest(n), &created, IMAGE_MANIFEST);
        ar.tag(package, tag, &digest(n));
    }
    let url = ar.server.url();
    let flags = [
        "--repo-implementation",
        "gcr",
        "--gcr-api-url",
        &url,
        "--gcr-location",
        "us",
        "--repo-gcr-token",
        "ya29.admin",
    ];
    let rows = cleanup(&flags, &format!("{}/proj/repo/team/app", ar.server.host()));
    assert_eq!(rows["t-old"]["result"], "untagged");
    assert_eq!(ar.tags(package), expected());
    ar.server.assert_no_violations();
}
