//! Images in use are never deleted: `regkit cleanup` against a real distribution registry, with the
//! Kubernetes stand-in (`vendors::kubernetes`, proven against kubectl here) as the cluster, and
//! `--keep-images` files. Every failure to read a cluster stops the run before anything is deleted (full tag →
//! digest maps compared).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use regkit_e2e::bins;
use regkit_e2e::images::{self, Auth};
use regkit_e2e::registry::Registry;
use regkit_e2e::vendors::kubernetes::{
    self, Auth as KubeAuth, DOCUMENTED, KINDS, KubeconfigEntry, Kubernetes, Mode, metadata,
};
use serde_json::{Value, json};
use tempfile::TempDir;

const TOKEN: &str = "kube-token-not-a-secret";
const REPO: &str = "team/app";

/// A finished run.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// The cleanup rows by tag (or digest).
    fn rows(&self) -> BTreeMap<String, Value> {
        self.lines()
            .into_iter()
            .filter(|row| row.get("action").is_some())
            .map(|row| {
                let key = row["tag"]
                    .as_str()
                    .or(row["digest"].as_str())
                    .unwrap()
                    .to_string();
                (key, row)
            })
            .collect()
    }

    fn lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
            .collect()
    }

    fn summary(&self) -> Value {
        self.lines()
            .into_iter()
            .find_map(|line| line.get("summary").cloned())
            .expect("a summary")
    }
}

/// A temporary home (no ~/.kube, an empty docker config) and the kubeconfig files written into it.
struct Home {
    dir: TempDir,
}

impl Home {
    fn new() -> Home {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), "{}").unwrap();
        Home { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a kubeconfig file with these contexts.
    fn kubeconfig(&self, name: &str, entries: &[KubeconfigEntry]) -> PathBuf {
        let path = self.path().join(name);
        std::fs::write(&path, kubernetes::kubeconfig(entries)).unwrap();
        path
    }

    /// `regkit ARGS` with only PATH, HOME, KUBECONFIG (the files given, joined) and `env` set.
    fn regkit(
        &self,
        kubeconfigs: &[&Path],
        args: &[&str],
        stdin: &str,
        env: &[(&str, &str)],
    ) -> Run {
        let mut command = Command::new(bins::ours("regkit"));
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.path())
            .arg("--docker-config")
            .arg(self.path())
            .args(["--output", "json"])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if !kubeconfigs.is_empty() {
            command.env("KUBECONFIG", std::env::join_paths(kubeconfigs).unwrap());
        }
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().unwrap();
        let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
        let output = child.wait_with_output().unwrap();
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

fn tags(registry: &Registry) -> BTreeMap<String, String> {
    images::tag_digests(&registry.url(), REPO, &Auth::None)
}

fn pod(namespace: &str, name: &str, spec: Value, status: Value) -> Value {
    json!({"metadata": metadata(namespace, name), "spec": spec, "status": status})
}

/// Deletes every tag of the repository unless something keeps it.
const SWEEP: [&str; 4] = ["--match", ".", "--older-than", "1d"];

#[test]
fn kubectl_lists_every_kind_from_the_stand_in() {
    let cluster = Kubernetes::start(TOKEN);
    for (index, kind) in KINDS.iter().enumerate() {
        let namespace = format!("ns{}", index % 3);
        let name = format!("{}-one", kind.resource);
        if kind.kind == "Pod" {
            let spec = json!({"containers": [{"name": "c", "image": "nginx"}]});
            cluster.add("Pod", pod(&namespace, &name, spec, json!({})));
        } else {
            cluster.add_workload(kind.kind, &namespace, &name, &["nginx"]);
        }
    }
    // A second Pod and a page cap of one: kubectl follows `continue` across pages.
    cluster.add(
        "Pod",
        pod("ns9", "second", json!({"containers": []}), json!({})),
    );
    cluster.set_page_cap(1);
    let home = Home::new();
    let kubectl = bins::tool("kubectl", "kubernetes-client");
    let resources: Vec<&str> = KINDS.iter().map(|kind| kind.resource).collect();
    for auth in [KubeAuth::Token, KubeAuth::ClientCertificate] {
        let config = home.kubeconfig("kubectl-config", &[cluster.entry("stand-in", auth)]);
        let output = Command::new(&kubectl)
            .env_clear()
            .env("HOME", home.path())
            .env("KUBECONFIG", &config)
            .args(["get", &resources.join(","), "-A", "-o", "json"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{auth:?}: {stderr}");
        let listed: Value = serde_json::from_slice(&output.stdout).unwrap();
        let kinds: BTreeSet<&str> = listed["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| item["kind"].as_str().unwrap_or("?"))
            .collect();
        let expected: BTreeSet<&str> = KINDS.iter().map(|kind| kind.kind).collect();
        assert_eq!(kinds, expected, "{auth:?}");
        assert_eq!(listed["items"].as_array().unwrap().len(), KINDS.len() + 1);
    }
    // With a wrong token kubectl gets the Status object Kubernetes sends, and says so.
    let config = home.kubeconfig(
        "kubectl-config",
        &[cluster.entry("stand-in", KubeAuth::WrongToken)],
    );
    let output = Command::new(&kubectl)
        .env_clear()
        .env("HOME", home.path())
        .env("KUBECONFIG", &config)
        .args(["get", "pods", "-A", "-o", "json"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("Unauthorized") || stderr.contains("credentials"),
        "{stderr}"
    );
    cluster.server.assert_no_violations();
    // Every route is a documented operation, and each kind has its cluster-wide and namespaced list.
    let declared: BTreeSet<(&str, &str)> = cluster
        .server
        .declared()
        .iter()
        .map(|route| (route.method, route.template))
        .collect();
    let documented: BTreeSet<(&str, &str)> =
        DOCUMENTED.iter().map(|(m, p, _, _)| (*m, *p)).collect();
    assert_eq!(declared, documented);
    for kind in KINDS {
        for path in [
            format!("{}/{}", kind.prefix, kind.resource),
            format!("{}/namespaces/{{namespace}}/{}", kind.prefix, kind.resource),
        ] {
            assert!(documented.contains(&("GET", path.as_str())), "{path}");
        }
    }
}

/// A registry whose `team/app` has one image per use below, and a cluster (two contexts in two kubeconfig
/// files) that uses them.
struct Scene {
    registry: Registry,
    clusters: [Kubernetes; 2],
    home: Home,
    kubeconfigs: [PathBuf; 2],
    digests: BTreeMap<String, String>,
}

impl Scene {
    fn new() -> Scene {
        let registry = Registry::start();
        let url = registry.url();
        let names = [
            "pod",
            "init",
            "ephemeral",
            "deployment",
            "old-rs",
            "statefulset",
            "daemonset",
            "job",
            "cronjob",
            "rc",
            "running",
            "other-context",
            "other-namespace",
            "unused",
        ];
        let mut digests: BTreeMap<String, String> =
            images::push_distinct(&url, REPO, &names, &Auth::None)
                .into_iter()
                .collect();
        // `moving` was running when its Pod started; the tag has moved to a new image since, and the old
        // image is still tagged `build-17`.
        let started = images::push(&url, REPO, &["moving", "build-17"], &Auth::None);
        let moved = images::push(&url, REPO, &["moving"], &Auth::None);
        digests.insert("build-17".into(), started.clone());
        digests.insert("moving".into(), moved);
        let host = registry.host().to_string();
        let image = |tag: &str| format!("{host}/{REPO}:{tag}");
        let by_digest = |tag: &str| format!("{host}/{REPO}@{}", digests[tag]);
        let a = Kubernetes::start(TOKEN);
        let b = Kubernetes::start(TOKEN);
        // Every listing crosses page boundaries.
        a.set_page_cap(2);
        a.add(
            "Pod",
            pod(
                "web",
                "web-1",
                json!({
                    "containers": [{"name": "app", "image": image("pod")}, {"name": "run", "image": image("moving")}],
                    "initContainers": [{"name": "migrate", "image": image("init")}],
                    "ephemeralContainers": [{"name": "debug", "image": image("ephemeral")}],
                }),
                json!({"containerStatuses": [
                    {"name": "app", "image": image("pod"), "imageID": format!("docker-pullable://{}", by_digest("pod")), "ready": true, "restartCount": 0},
                    {"name": "run", "image": image("moving"), "imageID": format!("{host}/{REPO}@{started}"), "ready": true, "restartCount": 0},
                ]}),
            ),
        );
        for index in 0..4 {
            // Filler Pods, so the Pod listing has several pages.
            a.add(
                "Pod",
                pod(
                    "web",
                    &format!("filler-{index}"),
                    json!({"containers": [{"name": "c", "image": image("pod")}]}),
                    json!({}),
                ),
            );
        }
        a.add_workload("Deployment", "web", "web", &[&image("deployment")]);
        a.add_workload("ReplicaSet", "web", "web-5d9f", &[&by_digest("old-rs")]);
        a.add_workload("StatefulSet", "db", "db", &[&image("statefulset")]);
        a.add_workload("DaemonSet", "kube-system", "agent", &[&image("daemonset")]);
        a.add_workload("Job", "batch", "once", &[&image("job")]);
        a.add_workload("CronJob", "batch", "nightly", &[&image("cronjob")]);
        a.add_workload("ReplicationController", "legacy", "rc", &[&image("rc")]);
        a.add_workload("Deployment", "staging", "api", &[&image("other-namespace")]);
        b.add_workload("Deployment", "web", "web", &[&image("other-context")]);
        b.add(
            "Pod",
            pod(
                "web",
                "running",
                json!({"containers": [{"name": "c", "image": image("running")}]}),
                json!({}),
            ),
        );
        let home = Home::new();
        let kubeconfigs = [
            home.kubeconfig("prod.yaml", &[a.entry("prod", KubeAuth::Token)]),
            home.kubeconfig("edge.yaml", &[b.entry("edge", KubeAuth::ClientCertificate)]),
        ];
        Scene {
            registry,
            clusters: [a, b],
            home,
            kubeconfigs,
            digests,
        }
    }

    fn regkit(&self, args: &[&str]) -> Run {
        let files: Vec<&Path> = self.kubeconfigs.iter().map(PathBuf::as_path).collect();
        self.home.regkit(&files, args, "", &[])
    }

    fn repository(&self) -> String {
        format!("{}/{REPO}", self.registry.host())
    }
}

#[test]
fn cleanup_keeps_every_image_a_workload_uses_in_every_context() {
    let scene = Scene::new();
    let before = tags(&scene.registry);
    let repository = scene.repository();
    let mut args = vec!["cleanup", repository.as_str(), "--yes"];
    args.extend(SWEEP);
    let run = scene.regkit(&args);
    assert_eq!(run.code, 0, "{}\n{}", run.stderr, run.stdout);
    let rows = run.rows();
    let expected_users = [
        ("pod", "prod/web/Pod/web-1"),
        ("init", "prod/web/Pod/web-1"),
        ("ephemeral", "prod/web/Pod/web-1"),
        ("moving", "prod/web/Pod/web-1"),
        ("build-17", "prod/web/Pod/web-1"),
        ("deployment", "prod/web/Deployment/web"),
        ("old-rs", "prod/web/ReplicaSet/web-5d9f"),
        ("statefulset", "prod/db/StatefulSet/db"),
        ("daemonset", "prod/kube-system/DaemonSet/agent"),
        ("job", "prod/batch/Job/once"),
        ("cronjob", "prod/batch/CronJob/nightly"),
        ("rc", "prod/legacy/ReplicationController/rc"),
        ("other-namespace", "prod/staging/Deployment/api"),
        ("other-context", "edge/web/Deployment/web"),
        ("running", "edge/web/Pod/running"),
    ];
    for (tag, user) in expected_users {
        let row = &rows[tag];
        assert_eq!(
            (row["action"].as_str(), row["rule"].as_str()),
            (Some("keep"), Some("in-use")),
            "{row}"
        );
        let reason = row["reason"].as_str().unwrap();
        assert!(
            reason.starts_with(&format!("in use by {user}")),
            "{tag}: {reason}"
        );
    }
    // Five Pods run `pod`: one is named, the others counted.
    assert!(
        rows["pod"]["reason"]
            .as_str()
            .unwrap()
            .ends_with("and 4 others"),
        "{}",
        rows["pod"]
    );
    assert_eq!(rows["unused"]["result"], "deleted");
    let after = tags(&scene.registry);
    let mut expected = before.clone();
    expected.remove("unused");
    assert_eq!(after, expected);
    assert_eq!(after["build-17"], scene.digests["build-17"]);
    let summary = run.summary();
    assert!(
        summary["in_use"]["images"].as_u64().unwrap() >= 15,
        "{summary}"
    );
    // One LIST per kind per context and page: 6 Pods in pages of 2 is 3 requests; nothing else repeats.
    let pod_lists = scene.clusters[0]
        .server
        .log()
        .iter()
        .filter(|(_, path, _)| path == "/api/v1/pods")
        .count();
    assert_eq!(pod_lists, 3);
    for cluster in &scene.clusters {
        cluster.server.assert_no_violations();
    }
}

#[test]
fn context_and_namespace_filters_limit_what_is_kept() {
    let scene = Scene::new();
    let repository = scene.repository();
    let planned = |extra: &[&str]| {
        let mut args = vec!["cleanup", repository.as_str(), "--dry-run"];
        args.extend(SWEEP);
        args.extend(extra);
        let run = scene.regkit(&args);
        assert_eq!(run.code, 0, "{}", run.stderr);
        run.rows()
            .into_iter()
            .filter(|(_, row)| row["result"] == "planned")
            .map(|(tag, _)| tag)
            .collect::<BTreeSet<String>>()
    };
    let set = |tags: &[&str]| {
        tags.iter()
            .map(|tag| tag.to_string())
            .collect::<BTreeSet<String>>()
    };
    assert_eq!(planned(&[]), set(&["unused"]));
    assert_eq!(
        planned(&["--kube-context", "prod"]),
        set(&["other-context", "running", "unused"])
    );
    let web_only = planned(&["--kube-namespace", "web"]);
    assert_eq!(
        web_only,
        set(&[
            "cronjob",
            "daemonset",
            "job",
            "other-namespace",
            "rc",
            "statefulset",
            "unused"
        ])
    );
    // Namespaced lists: one request per kind per namespace asked for.
    assert!(
        scene.clusters[0]
            .server
            .log()
            .iter()
            .any(|(_, path, _)| path == "/api/v1/namespaces/web/pods")
    );
    let unknown = scene.regkit(&[
        "cleanup",
        &repository,
        "--all",
        "--dry-run",
        "--kube-context",
        "nope",
    ]);
    assert_eq!(unknown.code, 2);
    assert!(
        unknown
            .stderr
            .contains("--kube-context nope: no such context"),
        "{}",
        unknown.stderr
    );
    assert!(unknown.stderr.contains("prod, edge"), "{}", unknown.stderr);
    // `regkit in-use` prints the same set, with where each use comes from.
    let listed = scene.regkit(&["in-use"]);
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    let uses = listed.lines();
    let host = scene.registry.host();
    let old_rs = &scene.digests["old-rs"];
    assert!(
        uses.contains(&json!({
            "reference": format!("{host}/{REPO}@{old_rs}"),
            "digest": old_rs,
            "from": "prod/web/ReplicaSet/web-5d9f",
        })),
        "{uses:?}"
    );
    assert!(
        uses.iter().any(|u| u["from"] == "prod/web/Pod/web-1"
            && u["reference"]
                == json!(format!(
                    "{host}/{REPO}:moving@{}",
                    scene.digests["build-17"]
                ))),
        "{uses:?}"
    );
}

#[test]
fn an_unreadable_context_stops_the_run_before_anything_is_deleted() {
    let scene = Scene::new();
    let before = tags(&scene.registry);
    let repository = scene.repository();
    let mut args = vec!["cleanup", repository.as_str(), "--yes"];
    args.extend(SWEEP);
    let closed_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let down = scene.home.kubeconfig(
        "down.yaml",
        &[KubeconfigEntry::unreachable(
            "down",
            &format!("https://127.0.0.1:{closed_port}"),
        )],
    );
    let refused = Kubernetes::start(TOKEN);
    refused.set_mode(Mode::Unauthorized);
    let unauthorized = scene
        .home
        .kubeconfig("401.yaml", &[refused.entry("expired", KubeAuth::Token)]);
    let stalled = Kubernetes::start(TOKEN);
    stalled.set_mode(Mode::Stall);
    let stalling = scene
        .home
        .kubeconfig("stall.yaml", &[stalled.entry("stalled", KubeAuth::Token)]);
    for (context, file) in [
        ("down", &down),
        ("expired", &unauthorized),
        ("stalled", &stalling),
    ] {
        let files = [scene.kubeconfigs[0].as_path(), file.as_path()];
        let started = std::time::Instant::now();
        let run = scene
            .home
            .regkit(&files, &args, "", &[("REGKIT_KUBE_TIMEOUT", "2")]);
        assert_eq!(run.code, 2, "{context}: {}\n{}", run.stderr, run.stdout);
        let lines: Vec<&str> = run.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{context}: {}", run.stderr);
        assert!(
            lines[0].contains(&format!("Kubernetes context {context}:")),
            "{}",
            lines[0]
        );
        assert!(
            lines[0].contains("--kube-context") && lines[0].contains("--without-kube"),
            "{}",
            lines[0]
        );
        assert!(!lines[0].contains(TOKEN), "{}", lines[0]);
        assert!(run.stdout.is_empty(), "{}", run.stdout);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "{context}: bounded"
        );
        assert_eq!(tags(&scene.registry), before, "{context}: nothing deleted");
    }
    // The ways out: scan only the readable context, or skip the scan knowingly.
    let files = [scene.kubeconfigs[0].as_path(), unauthorized.as_path()];
    let mut only_prod = args.clone();
    only_prod.extend(["--kube-context", "prod", "--dry-run"]);
    let run = scene.home.regkit(&files, &only_prod, "", &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let mut without = args.clone();
    without.push("--without-kube");
    let run = scene.home.regkit(&files, &without, "", &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(tags(&scene.registry).is_empty(), "every tag went");
    assert_eq!(
        run.summary()["in_use"]["scanned"][0],
        "kubernetes: not scanned (--without-kube)"
    );
}

#[test]
fn keep_images_from_a_file_and_from_standard_input() {
    let registry = Registry::start();
    let url = registry.url();
    images::push_distinct(&url, REPO, &["v1", "v2", "v3", "v4"], &Auth::None);
    let before = tags(&registry);
    let home = Home::new();
    let host = registry.host();
    let repository = format!("{host}/{REPO}");
    let file = home.path().join("nomad-images.txt");
    std::fs::write(&file, format!("# nomad jobs\n{host}/{REPO}:v1  # web\n\n")).unwrap();
    let file_arg = file.display().to_string();
    let mut args = vec!["cleanup", repository.as_str(), "--yes", "--keep-images"];
    args.extend(SWEEP);

    // A bad line: exit 2 naming it, nothing deleted, no kubeconfig needed to fail.
    let mut bad_args = args.clone();
    bad_args.insert(4, "-");
    let bad = home.regkit(
        &[],
        &bad_args,
        &format!("{host}/{REPO}:v2\nNot A Reference\n"),
        &[],
    );
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(
        bad.stderr
            .contains("--keep-images -, line 2: invalid image reference \"Not A Reference\""),
        "{}",
        bad.stderr
    );
    assert_eq!(tags(&registry), before);

    let mut from_file = args.clone();
    from_file.insert(4, &file_arg);
    from_file.push("--dry-run");
    let run = home.regkit(&[], &from_file, "", &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let rows = run.rows();
    assert_eq!(rows["v1"]["rule"], "in-use");
    assert_eq!(
        rows["v1"]["reason"],
        format!("in use by {}:2", file.display())
    );
    assert_eq!(rows["v2"]["result"], "planned");
    // No kubeconfig: nothing scanned, and the summary says so.
    let scanned = run.summary()["in_use"]["scanned"].clone();
    assert!(scanned.to_string().contains("no kubeconfig"), "{scanned}");

    // Standard input and a file together.
    let mut both = args.clone();
    both.insert(4, "-");
    both.extend(["--keep-images", &file_arg]);
    let run = home.regkit(
        &[],
        &both,
        &format!("{host}/{REPO}:v2\n{host}/{REPO}@{}\n", before["v3"]),
        &[],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let after = tags(&registry);
    assert_eq!(after.keys().collect::<Vec<_>>(), ["v1", "v2", "v3"]);
    assert_eq!(after["v3"], before["v3"]);
}

#[test]
fn malformed_objects_are_skipped_with_a_note_and_the_rest_still_protects() {
    let registry = Registry::start();
    images::push_distinct(&registry.url(), REPO, &["kept", "gone"], &Auth::None);
    let host = registry.host();
    let cluster = Kubernetes::start(TOKEN);
    cluster.add("Pod", json!({"metadata": metadata("web", "no-spec")}));
    cluster.add(
        "Pod",
        json!({"metadata": {"namespace": "web"}, "spec": {"containers": [{"name": "c"}]}}),
    );
    let bad_image = json!({"containers": [{"name": "c", "image": "Not A Ref!"}]});
    let statuses = json!({"containerStatuses": [
        {"name": "c", "imageID": "sha256:abc"},
        {"name": "d", "imageID": "x@y"},
    ]});
    cluster.add("Pod", pod("web", "bad-image", bad_image, statuses));
    cluster.add("Deployment", json!({"metadata": metadata("web", "empty")}));
    let no_template = json!({"schedule": "* * * * *", "jobTemplate": {}});
    cluster.add(
        "CronJob",
        json!({"metadata": metadata("web", "no-template"), "spec": no_template}),
    );
    let kept = format!("{host}/{REPO}:kept");
    cluster.add_workload("Deployment", "web", "web", &[&kept]);
    let home = Home::new();
    let config = home.kubeconfig("config", &[cluster.entry("prod", KubeAuth::Token)]);
    let repository = format!("{host}/{REPO}");
    let mut args = vec!["cleanup", repository.as_str(), "--yes"];
    args.extend(SWEEP);
    let run = home.regkit(&[&config], &args, "", &[]);
    assert_eq!(run.code, 0, "{}\n{}", run.stderr, run.stdout);
    assert!(
        run.stderr
            .contains("skipped prod/web/Pod/bad-image: invalid image reference \"Not A Ref!\""),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("imageID"), "{}", run.stderr);
    assert_eq!(run.rows()["kept"]["rule"], "in-use");
    assert_eq!(tags(&registry).keys().collect::<Vec<_>>(), ["kept"]);
    cluster.server.assert_no_violations();
}
