//! The CI templates for users: the GitHub Action (`action.yml`, `ci/install.sh`, `ci/cleanup.sh`) and the
//! GitLab CI component (`templates/cleanup.yml`), run here as their runners would run them: the shell
//! scripts against a real registry on loopback, the component's job lines in `sh` after GitLab's input
//! interpolation, the installs from a release laid out like the release workflow's (archive + SHA256SUMS)
//! behind a `file://` URL. What cannot run here: GitHub's and GitLab's own runners (the workflows and the
//! component have not run on them).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use regkit_e2e::bins;
use regkit_e2e::images::{self, Auth, Format};
use regkit_e2e::registry::Registry;
use serde_json::Value;

const VERSION: &str = "v9.9.9-test";
const LINUX_ARCHIVE: &str = "regkit-v9.9.9-test-x86_64-unknown-linux-musl";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A registry with four tags in `team/app`, `a` the oldest and `d` the newest; returns it and the
/// repository reference.
fn registry_with_tags() -> (Registry, String) {
    let registry = Registry::start();
    let dated = [
        ("a", "2024-01-01T00:00:00Z"),
        ("b", "2024-02-01T00:00:00Z"),
        ("c", "2024-03-01T00:00:00Z"),
        ("d", "2024-04-01T00:00:00Z"),
    ];
    images::push_distinct_created(
        &registry.url(),
        "team/app",
        &dated,
        &Auth::None,
        Format::Oci,
    );
    let repository = format!("{}/team/app", registry.host());
    (registry, repository)
}

fn tags(registry: &Registry) -> Vec<String> {
    images::tag_digests(&registry.url(), "team/app", &Auth::None)
        .into_keys()
        .collect()
}

/// A clean environment for a script: PATH, a home with an empty docker config, and `vars`.
fn script(program: &str, home: &Path, vars: &[(&str, &str)]) -> Command {
    std::fs::write(home.join("config.json"), "{}").unwrap();
    let mut command = Command::new(program);
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("REGKIT_DOCKER_CONFIG", home)
        .current_dir(home);
    for (name, value) in vars {
        command.env(name, value);
    }
    command
}

fn cleanup_sh(home: &Path, vars: &[(&str, &str)]) -> Output {
    let regkit = bins::ours("regkit");
    let mut command = script("bash", home, vars);
    command
        .arg(repo_root().join("ci/cleanup.sh"))
        .env("REGKIT", regkit);
    command.output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn cleanup_script_is_a_dry_run_by_default_and_deletes_only_when_told() {
    let (registry, repository) = registry_with_tags();
    let home = tempfile::tempdir().unwrap();
    let summary = home.path().join("summary.md");
    let vars = [
        ("CLEANUP_REPOSITORIES", repository.as_str()),
        ("CLEANUP_KEEP_LAST", "2"),
        ("CLEANUP_EXCLUDE", "^a$\n"),
        ("CLEANUP_SUMMARY", summary.to_str().unwrap()),
    ];
    let out = cleanup_sh(home.path(), &vars);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(tags(&registry), ["a", "b", "c", "d"]);
    let markdown = std::fs::read_to_string(&summary).unwrap();
    assert!(markdown.starts_with("## regkit cleanup: dry run, nothing was deleted\n"));
    // Printed to the log too (GitLab has no job summary).
    assert!(text(&out.stdout).contains(&markdown));
    let planned = markdown.matches("| planned | beyond").count();
    assert_eq!(planned, 1, "{markdown}");
    let report = std::fs::read_to_string(home.path().join("regkit-cleanup.jsonl")).unwrap();
    let last: Value = serde_json::from_str(report.lines().last().unwrap()).unwrap();
    assert_eq!(last["summary"]["planned"], 1, "{report}");
    assert!(markdown.contains(&format!("| 1 | {} |", last["summary"]["seen"])));

    let mut vars = vars.to_vec();
    vars.push(("CLEANUP_DRY_RUN", "false"));
    std::fs::remove_file(&summary).unwrap();
    let out = cleanup_sh(home.path(), &vars);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let markdown = std::fs::read_to_string(&summary).unwrap();
    assert!(markdown.starts_with("## regkit cleanup\n"), "{markdown}");
    assert_eq!(
        markdown.matches("| deleted | beyond").count(),
        1,
        "{markdown}"
    );
    // The excluded tag and the 2 newest stay.
    assert_eq!(tags(&registry), ["a", "c", "d"]);
}

#[test]
fn cleanup_script_refuses_bad_inputs_in_one_line_and_passes_on_regkits_exit_code() {
    let (registry, repository) = registry_with_tags();
    let home = tempfile::tempdir().unwrap();
    let summary = home.path().join("summary.md");
    for (vars, wanted) in [
        (
            vec![
                ("CLEANUP_REPOSITORIES", repository.as_str()),
                ("CLEANUP_DRY_RUN", "no"),
            ],
            "dry-run must be true or false",
        ),
        (
            vec![("CLEANUP_REPOSITORIES", " \n ")],
            "no repositories given",
        ),
        (
            vec![
                ("CLEANUP_REPOSITORIES", repository.as_str()),
                ("CLEANUP_UNTAGGED", "yes"),
            ],
            "untagged must be true or false",
        ),
    ] {
        let out = cleanup_sh(home.path(), &vars);
        assert_eq!(out.status.code(), Some(2), "{vars:?}");
        let stderr = text(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(wanted), "{stderr}");
    }
    // regkit's own usage error (exit 2) reaches the job, and the summary shows its message.
    let out = cleanup_sh(
        home.path(),
        &[
            ("CLEANUP_REPOSITORIES", repository.as_str()),
            ("CLEANUP_KEEP_LAST", "many"),
            ("CLEANUP_DRY_RUN", "false"),
            ("CLEANUP_SUMMARY", summary.to_str().unwrap()),
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let markdown = std::fs::read_to_string(&summary).unwrap();
    assert!(markdown.contains("regkit exited with 2"), "{markdown}");
    assert!(markdown.contains("many"), "{markdown}");
    assert_eq!(tags(&registry), ["a", "b", "c", "d"]);
}

/// A release directory laid out like release.yml's: `<base>/<version>/<archive>.tar.gz` and SHA256SUMS.
fn release(dir: &Path) -> String {
    let staged = dir.join("stage").join(LINUX_ARCHIVE);
    std::fs::create_dir_all(&staged).unwrap();
    std::fs::copy(bins::ours("regkit"), staged.join("regkit")).unwrap();
    std::fs::copy(
        repo_root().join("ci/cleanup.sh"),
        staged.join("regkit-ci-cleanup"),
    )
    .unwrap();
    let published = dir.join("releases").join(VERSION);
    std::fs::create_dir_all(&published).unwrap();
    let archive = format!("{LINUX_ARCHIVE}.tar.gz");
    let status = Command::new("tar")
        .arg("-czf")
        .arg(published.join(&archive))
        .arg("-C")
        .arg(dir.join("stage"))
        .arg(LINUX_ARCHIVE)
        .status()
        .unwrap();
    assert!(status.success());
    let sums = Command::new("sha256sum")
        .arg(&archive)
        .current_dir(&published)
        .output()
        .unwrap();
    assert!(sums.status.success());
    std::fs::write(published.join("SHA256SUMS"), &sums.stdout).unwrap();
    format!("file://{}", dir.join("releases").display())
}

/// Swaps the published archive for another file, keeping SHA256SUMS.
fn tamper(dir: &Path) {
    let archive = dir
        .join("releases")
        .join(VERSION)
        .join(format!("{LINUX_ARCHIVE}.tar.gz"));
    let mut bytes = std::fs::read(&archive).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&archive, bytes).unwrap();
}

#[test]
fn action_install_puts_the_verified_release_on_path_and_refuses_a_tampered_one() {
    let dir = tempfile::tempdir().unwrap();
    let base = release(dir.path());
    let home = tempfile::tempdir().unwrap();
    let github_path = home.path().join("github_path");
    let install_dir = home.path().join("tools");
    let vars = [
        ("REGKIT_VERSION", VERSION),
        ("REGKIT_RELEASE_URL", base.as_str()),
        ("RUNNER_OS", "Linux"),
        ("RUNNER_ARCH", "X64"),
        ("REGKIT_INSTALL_DIR", install_dir.to_str().unwrap()),
        ("GITHUB_PATH", github_path.to_str().unwrap()),
    ];
    let install = |vars: &[(&str, &str)]| {
        let mut command = script("bash", home.path(), vars);
        command.arg(repo_root().join("ci/install.sh"));
        command.output().unwrap()
    };
    let out = install(&vars);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let on_path = std::fs::read_to_string(&github_path).unwrap();
    assert_eq!(
        on_path.trim(),
        install_dir.join(LINUX_ARCHIVE).to_str().unwrap()
    );
    assert!(
        install_dir
            .join(LINUX_ARCHIVE)
            .join("regkit-ci-cleanup")
            .is_file()
    );

    let mut windows = vars.to_vec();
    windows[2] = ("RUNNER_OS", "Windows");
    let out = install(&windows);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no regkit release build for Windows/X64"));

    tamper(dir.path());
    std::fs::remove_dir_all(&install_dir).unwrap();
    let out = install(&vars);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("does not match its SHA-256"), "{stderr}");
    assert!(!install_dir.join(LINUX_ARCHIVE).exists());
}

/// The component's two YAML documents: the `spec` header and the jobs.
fn gitlab_component() -> (Value, Value) {
    let text = std::fs::read_to_string(repo_root().join("templates/cleanup.yml")).unwrap();
    let (header, jobs) = text.split_once("\n---\n").expect("spec header, then ---");
    (
        serde_norway::from_str(header).unwrap(),
        serde_norway::from_str(jobs).unwrap(),
    )
}

/// GitLab's `$[[ inputs.NAME ]]` interpolation: each use must name a declared input.
fn interpolate(text: &str, inputs: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("$[[") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find("]]").expect("an unclosed $[[") + start;
        let name = rest[start + 3..end].trim().trim_start_matches("inputs.");
        out.push_str(
            inputs
                .get(name)
                .unwrap_or_else(|| panic!("$[[ inputs.{name} ]] is not declared in spec:inputs")),
        );
        rest = &rest[end + 2..];
    }
    out + rest
}

/// Runs the component's job as a runner would: its variables, then before_script and script in one `sh`.
fn run_gitlab_job(home: &Path, given: &[(&str, &str)]) -> Output {
    let (header, jobs) = gitlab_component();
    let mut inputs: BTreeMap<String, String> = BTreeMap::new();
    for (name, spec) in header["spec"]["inputs"].as_object().unwrap() {
        let default = match &spec["default"] {
            Value::String(text) => text.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        };
        inputs.insert(name.clone(), default);
    }
    for (name, value) in given {
        assert!(inputs.contains_key(*name), "{name} is not an input");
        inputs.insert((*name).to_owned(), (*value).to_owned());
    }
    let job = &jobs["regkit-cleanup"];
    let variables: Vec<(String, String)> = job["variables"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, value)| (name.clone(), interpolate(value.as_str().unwrap(), &inputs)))
        .collect();
    let lines: Vec<&str> = ["before_script", "script"]
        .iter()
        .flat_map(|part| job[*part].as_array().unwrap())
        .map(|line| line.as_str().unwrap())
        .collect();
    let vars: Vec<(&str, &str)> = variables
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    let mut command = script("sh", home, &vars);
    command.arg("-ec").arg(lines.join("\n"));
    command.output().unwrap()
}

#[test]
fn gitlab_component_installs_the_verified_release_and_runs_a_dry_run_by_default() {
    let (registry, repository) = registry_with_tags();
    let dir = tempfile::tempdir().unwrap();
    let base = release(dir.path());
    let home = tempfile::tempdir().unwrap();
    let given = [
        ("repositories", repository.as_str()),
        ("keep-last", "1"),
        ("version", VERSION),
        ("release-url", base.as_str()),
    ];
    let out = run_gitlab_job(home.path(), &given);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert_eq!(tags(&registry), ["a", "b", "c", "d"]);
    let markdown = std::fs::read_to_string(home.path().join("regkit-cleanup.md")).unwrap();
    assert!(
        markdown.starts_with("## regkit cleanup: dry run"),
        "{markdown}"
    );
    assert_eq!(
        markdown.matches("| planned | beyond").count(),
        3,
        "{markdown}"
    );
    assert!(home.path().join("regkit-cleanup.jsonl").is_file());

    let mut deleting = given.to_vec();
    deleting.push(("dry-run", "false"));
    let out = run_gitlab_job(home.path(), &deleting);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(tags(&registry), ["d"]);

    // A tampered archive stops the job before regkit runs.
    let (registry, repository) = registry_with_tags();
    let home = tempfile::tempdir().unwrap();
    tamper(dir.path());
    let mut tampered = deleting.clone();
    tampered[0] = ("repositories", repository.as_str());
    let out = run_gitlab_job(home.path(), &tampered);
    assert!(!out.status.success());
    assert!(!home.path().join("regkit-cleanup.jsonl").exists());
    assert_eq!(tags(&registry), ["a", "b", "c", "d"]);
}

#[test]
fn action_and_component_hand_every_input_to_the_script() {
    let action: Value =
        serde_norway::from_str(&std::fs::read_to_string(repo_root().join("action.yml")).unwrap())
            .unwrap();
    let documented = std::fs::read_to_string(repo_root().join("ci/cleanup.sh")).unwrap();
    let env_name = |input: &str| format!("CLEANUP_{}", input.replace('-', "_").to_uppercase());
    let steps = action["runs"]["steps"].as_array().unwrap();
    let cleanup = steps.iter().find(|step| step["id"] == "cleanup").unwrap();
    let (_, jobs) = gitlab_component();
    let gitlab = &jobs["regkit-cleanup"]["variables"];
    for input in action["inputs"].as_object().unwrap().keys() {
        if matches!(input.as_str(), "version" | "install") {
            continue;
        }
        let name = env_name(input);
        assert_eq!(
            cleanup["env"][&name],
            format!("${{{{ inputs.{input} }}}}"),
            "action.yml: {input}"
        );
        assert!(
            documented.contains(&name),
            "ci/cleanup.sh does not document {name}"
        );
        assert!(
            gitlab[&name].is_string(),
            "templates/cleanup.yml sets no {name}"
        );
    }
    assert_eq!(action["inputs"]["dry-run"]["default"], "true");
}
