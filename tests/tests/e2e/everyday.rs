//! `regkit configure`, `regkit doctor` and `regkit ci-env` against a real registry, the docker CLI and skopeo.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use base64::Engine;
use regkit_e2e::bins;
use regkit_e2e::images::{self, Auth};
use regkit_e2e::registry::{self, Options, Registry};
use tempfile::TempDir;

/// Must never appear in any output.
const CANARY: &str = "canary-everyday";

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn all_output(output: &Output) -> String {
    format!("{}{}", text(&output.stdout), text(&output.stderr))
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// A sandbox: a HOME, a docker config dir, and a PATH holding only the programs a test names (so docker
/// cannot pick up the machine's docker-credential-secretservice as its default store).
struct Sandbox {
    temp: TempDir,
}

impl Sandbox {
    fn new(programs: &[PathBuf]) -> Sandbox {
        let temp = tempfile::tempdir().unwrap();
        fs::create_dir_all(temp.path().join("bin")).unwrap();
        fs::create_dir_all(temp.path().join("docker")).unwrap();
        for program in programs
            .iter()
            .cloned()
            .chain([bins::ours("regkit"), bins::ours("docker-credential-env")])
        {
            let name = program.file_name().unwrap().to_owned();
            std::os::unix::fs::symlink(&program, temp.path().join("bin").join(name)).unwrap();
        }
        Sandbox { temp }
    }

    fn docker_dir(&self) -> PathBuf {
        self.temp.path().join("docker")
    }

    fn config_path(&self) -> PathBuf {
        self.docker_dir().join("config.json")
    }

    /// `program` with only the sandbox's HOME, PATH, docker config and `vars`.
    fn command(&self, program: impl AsRef<std::ffi::OsStr>, vars: &[(String, String)]) -> Command {
        let mut command = Command::new(program);
        command
            .env_clear()
            .env("HOME", self.temp.path())
            .env("PATH", self.temp.path().join("bin"))
            .env("DOCKER_CONFIG", self.docker_dir())
            .env("TMPDIR", self.temp.path())
            .envs(vars.iter().map(|(k, v)| (k, v)));
        command
    }

    fn regkit(&self, args: &[&str], vars: &[(String, String)]) -> Output {
        self.command(bins::ours("regkit"), vars)
            .args(args)
            .output()
            .unwrap()
    }
}

/// `DOCKER_<ip>_<port>_USR/PSW`, which docker-credential-env answers from.
fn env_credentials(host: &str, user: &str, password: &str) -> Vec<(String, String)> {
    let stem = format!("DOCKER_{}", host.replace(['.', ':'], "_"));
    vec![
        (format!("{stem}_USR"), user.to_owned()),
        (format!("{stem}_PSW"), password.to_owned()),
    ]
}

fn basic_auth(user: &str, password: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}

#[test]
fn configure_keeps_unknown_keys_and_mode_is_idempotent_and_docker_uses_the_result() {
    let docker = bins::tool("docker", "docker.io");
    let password = format!("{CANARY}-pw");
    let registry = Registry::start_htpasswd("alice", &password);
    let host = registry.host().to_owned();
    images::push(
        &registry.url(),
        "team/app",
        &["v1"],
        &Auth::basic("alice", &password),
    );
    let sandbox = Sandbox::new(std::slice::from_ref(&docker));
    let original = serde_json::json!({
        "auths": {host.clone(): {"auth": basic_auth("stale", CANARY)}},
        "psFormat": "table {{.ID}}",
        "proxies": {"default": {"noProxy": "127.0.0.1"}},
        "credHelpers": {"other.test": "pass"},
    });
    fs::write(sandbox.config_path(), original.to_string()).unwrap();
    fs::set_permissions(sandbox.config_path(), fs::Permissions::from_mode(0o640)).unwrap();

    let args = [
        "configure",
        "--registry",
        "docker.io",
        "--registry",
        &host,
        "--helper",
        "env",
    ];
    let dry = sandbox.regkit(&[&args[..], &["--dry-run"]].concat(), &[]);
    assert_eq!(dry.status.code(), Some(0), "{}", all_output(&dry));
    let shown = text(&dry.stdout);
    assert!(
        shown.contains(&format!("+    \"{host}\": \"env\"")),
        "{shown}"
    );
    assert!(shown.contains("+    \"docker.io\": \"env\""), "{shown}");
    assert!(!all_output(&dry).contains(CANARY), "{}", all_output(&dry));
    let untouched: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(sandbox.config_path()).unwrap()).unwrap();
    assert_eq!(untouched, original, "--dry-run wrote the file");

    let first = sandbox.regkit(&args, &[]);
    assert_eq!(first.status.code(), Some(0), "{}", all_output(&first));
    let warning = text(&first.stderr);
    assert!(
        warning.contains(&format!("stored credential for {host} in auths")),
        "the stale auths entry must be named: {warning}"
    );
    assert!(!all_output(&first).contains(CANARY));
    let written = fs::read_to_string(sandbox.config_path()).unwrap();
    let saved: serde_json::Value = serde_json::from_str(&written).unwrap();
    assert_eq!(saved["credHelpers"]["https://index.docker.io/v1/"], "env");
    assert_eq!(saved["credHelpers"]["docker.io"], "env");
    assert_eq!(saved["credHelpers"][host.as_str()], "env");
    assert_eq!(saved["credHelpers"]["other.test"], "pass");
    assert_eq!(saved["psFormat"], original["psFormat"]);
    assert_eq!(saved["proxies"], original["proxies"]);
    assert_eq!(saved["auths"], original["auths"]);
    assert_eq!(mode(&sandbox.config_path()), 0o640);
    assert_eq!(
        fs::read_dir(sandbox.docker_dir()).unwrap().count(),
        1,
        "a temp file was left behind"
    );

    let modified = fs::metadata(sandbox.config_path())
        .unwrap()
        .modified()
        .unwrap();
    let again = sandbox.regkit(&args, &[]);
    assert_eq!(again.status.code(), Some(0), "{}", all_output(&again));
    assert!(text(&again.stdout).contains("already up to date"));
    assert_eq!(fs::read_to_string(sandbox.config_path()).unwrap(), written);
    assert_eq!(
        fs::metadata(sandbox.config_path())
            .unwrap()
            .modified()
            .unwrap(),
        modified,
        "an unchanged config must not be rewritten"
    );

    // The helper now answers for the host, ahead of the stale auths entry.
    let inspect = sandbox
        .command(&docker, &env_credentials(&host, "alice", &password))
        .args([
            "manifest",
            "inspect",
            "--insecure",
            &format!("{host}/team/app:v1"),
        ])
        .output()
        .unwrap();
    assert_eq!(inspect.status.code(), Some(0), "{}", all_output(&inspect));
    assert!(text(&inspect.stdout).contains("schemaVersion"));
}

#[test]
fn configure_podman_writes_a_registries_conf_drop_in() {
    let sandbox = Sandbox::new(&[]);
    let podman_dir = sandbox.temp.path().join("registries.conf.d");
    let args = [
        "configure",
        "--podman",
        "--podman-dir",
        podman_dir.to_str().unwrap(),
        "--helper",
        "env",
        "--registry",
        "ghcr.io",
    ];
    let dry = sandbox.regkit(&[&args[..], &["--dry-run"]].concat(), &[]);
    assert_eq!(dry.status.code(), Some(0), "{}", all_output(&dry));
    assert!(
        text(&dry.stdout).contains("+credential-helpers = [\"env\", \"containers-auth.json\"]")
    );
    assert!(!podman_dir.exists(), "--dry-run created the drop-in");

    let output = sandbox.regkit(&args, &[]);
    assert_eq!(output.status.code(), Some(0), "{}", all_output(&output));
    let drop_in = fs::read_to_string(podman_dir.join("50-regkit.conf")).unwrap();
    let settings: Vec<&str> = drop_in
        .lines()
        .filter(|line| !line.starts_with('#'))
        .collect();
    assert_eq!(
        settings,
        ["credential-helpers = [\"env\", \"containers-auth.json\"]"]
    );
    let again = sandbox.regkit(&args, &[]);
    assert_eq!(
        text(&again.stdout).matches("already up to date").count(),
        2,
        "{}",
        all_output(&again)
    );

    let none = sandbox.regkit(&["configure"], &[]);
    assert_eq!(none.status.code(), Some(2), "{}", all_output(&none));
    let bad = sandbox.regkit(
        &["configure", "--registry", "x.test", "--helper", "../x"],
        &[],
    );
    assert_eq!(bad.status.code(), Some(2), "{}", all_output(&bad));
}

/// Runs `regkit doctor` with `auths` credentials for the registry, in text and JSON.
fn doctor(registry: &Registry, user: &str, password: &str, repository: &str) -> (Output, Output) {
    let sandbox = Sandbox::new(&[]);
    let config =
        serde_json::json!({"auths": {registry.host(): {"auth": basic_auth(user, password)}}});
    fs::write(sandbox.config_path(), config.to_string()).unwrap();
    let reference = format!("{}/{repository}", registry.host());
    let text_report = sandbox.regkit(&["doctor", &reference], &[]);
    let json_report = sandbox.regkit(&["--output", "json", "doctor", &reference], &[]);
    for output in [&text_report, &json_report] {
        assert!(
            !all_output(output).contains(CANARY),
            "a secret reached the output: {}",
            all_output(output)
        );
    }
    (text_report, json_report)
}

fn statuses(json: &Output) -> Vec<(String, String)> {
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|check| {
            (
                check["check"].as_str().unwrap().to_owned(),
                check["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn doctor_with_good_credentials_finds_listing_and_delete_rights_and_deletes_nothing() {
    let password = format!("{CANARY}-pw");
    let registry = Registry::start_htpasswd("alice", &password);
    let auth = Auth::basic("alice", &password);
    images::push(&registry.url(), "team/app", &["v1", "v2"], &auth);
    let before = images::tag_digests(&registry.url(), "team/app", &auth);

    let (report, json) = doctor(&registry, "alice", &password, "team/app");
    assert_eq!(report.status.code(), Some(0), "{}", all_output(&report));
    let shown = text(&report.stdout);
    assert!(
        shown.contains("implementation: ok: default (no vendor host pattern matched)"),
        "{shown}"
    );
    assert!(
        shown.contains("basic as \"alice\" from auths entry in"),
        "{shown}"
    );
    assert!(shown.contains("password redacted"), "{shown}");
    assert!(shown.contains("token expiry:   not visible"), "{shown}");
    assert!(shown.contains("listing:        ok: 2 tags"), "{shown}");
    assert!(shown.contains("delete rights:  ok: yes"), "{shown}");
    assert_eq!(json.status.code(), Some(0));
    assert_eq!(
        statuses(&json),
        pairs(&[
            ("implementation", "ok"),
            ("credentials", "info"),
            ("token expiry", "info"),
            ("registry", "ok"),
            ("listing", "ok"),
            ("delete rights", "ok"),
        ])
    );
    assert_eq!(
        images::tag_digests(&registry.url(), "team/app", &auth),
        before,
        "doctor changed the repository"
    );
}

#[test]
fn doctor_with_a_wrong_password_fails_with_exit_3() {
    let registry = Registry::start_htpasswd("alice", "right-password");
    images::push(
        &registry.url(),
        "team/app",
        &["v1"],
        &Auth::basic("alice", "right-password"),
    );
    let (report, json) = doctor(&registry, "alice", &format!("{CANARY}-wrong"), "team/app");
    assert_eq!(report.status.code(), Some(3), "{}", all_output(&report));
    let shown = text(&report.stdout);
    assert!(
        shown.contains("registry:       FAILED: authentication to"),
        "{shown}"
    );
    assert!(shown.contains("listing:        FAILED"), "{shown}");
    assert_eq!(json.status.code(), Some(3));
    let checks = statuses(&json);
    assert!(
        checks.contains(&("delete rights".into(), "failed".into())),
        "{checks:?}"
    );
}

#[test]
fn doctor_reports_a_registry_that_refuses_deletes_with_exit_4() {
    let registry = Registry::start_with(Options {
        auth: registry::Auth::Htpasswd(vec![("alice".into(), "pw".into())]),
        delete_enabled: false,
        ..Options::default()
    });
    images::push(
        &registry.url(),
        "team/app",
        &["v1"],
        &Auth::basic("alice", "pw"),
    );
    let (report, _) = doctor(&registry, "alice", "pw", "team/app");
    assert_eq!(report.status.code(), Some(4), "{}", all_output(&report));
    let shown = text(&report.stdout);
    assert!(shown.contains("listing:        ok: 1 tags"), "{shown}");
    assert!(shown.contains("delete rights:  FAILED: no"), "{shown}");
    assert!(shown.contains("refuses deletes"), "{shown}");
}

#[test]
fn ci_env_gives_docker_and_skopeo_a_private_config_and_cleans_it_up() {
    let docker = bins::tool("docker", "docker.io");
    let skopeo = bins::tool("skopeo", "skopeo");
    let sh = bins::tool("sh", "dash");
    let password = format!("{CANARY}-pw");
    let registry = Registry::start_htpasswd("alice", &password);
    let host = registry.host().to_owned();
    images::push(
        &registry.url(),
        "team/app",
        &["v1", "v2"],
        &Auth::basic("alice", &password),
    );
    let login_registry = Registry::start_htpasswd("bob", "bob-pw");
    let sandbox = Sandbox::new(&[docker, skopeo]);
    let source = serde_json::json!({
        "credHelpers": {host.clone(): "env"},
        "psFormat": "kept in the source only",
    });
    let source_text = source.to_string();
    fs::write(sandbox.config_path(), &source_text).unwrap();

    // One job: select the private config, read through the copied helper route with docker and skopeo, and
    // log in to another registry, which must land in the private config only.
    let script = format!(
        r#"set -e
eval "$(regkit ci-env --docker-config-from "$SOURCE")"
echo "dir=$DOCKER_CONFIG"
docker manifest inspect --insecure {host}/team/app:v1 >/dev/null
skopeo list-tags --tls-verify=false docker://{host}/team/app
printf bob-pw | docker login {login} -u bob --password-stdin >/dev/null 2>&1
"#,
        login = login_registry.host()
    );
    let vars = [
        env_credentials(&host, "alice", &password),
        vec![(
            "SOURCE".to_string(),
            sandbox.docker_dir().to_str().unwrap().to_string(),
        )],
    ]
    .concat();
    let job = sandbox
        .command(&sh, &vars)
        .env_remove("DOCKER_CONFIG")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert_eq!(job.status.code(), Some(0), "{}", all_output(&job));
    let stdout = text(&job.stdout);
    assert!(stdout.contains("\"v2\""), "skopeo listed no tags: {stdout}");
    let private = PathBuf::from(
        stdout
            .lines()
            .find_map(|line| line.strip_prefix("dir="))
            .unwrap(),
    );
    assert_ne!(private, sandbox.docker_dir());
    assert_eq!(mode(&private), 0o700);
    assert_eq!(mode(&private.join("config.json")), 0o600);
    assert_eq!(mode(&private.join("auth.json")), 0o600);
    let private_config: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(private.join("config.json")).unwrap()).unwrap();
    assert_eq!(private_config["credHelpers"][host.as_str()], "env");
    assert!(private_config.get("psFormat").is_none());
    assert!(
        private_config["auths"][login_registry.host()]["auth"].is_string(),
        "docker login did not write into the private config: {private_config}"
    );
    assert_eq!(
        fs::read_to_string(sandbox.config_path()).unwrap(),
        source_text,
        "the shared config changed"
    );

    let second = sandbox.regkit(&["ci-env"], &[]);
    assert_eq!(second.status.code(), Some(0), "{}", all_output(&second));
    assert!(
        !text(&second.stdout).contains(private.to_str().unwrap()),
        "two jobs must not share a directory"
    );

    let stray = sandbox.temp.path().join("not-made-by-ci-env");
    fs::create_dir(&stray).unwrap();
    let refused = sandbox.regkit(&["ci-env", "--cleanup", stray.to_str().unwrap()], &[]);
    assert_eq!(refused.status.code(), Some(2), "{}", all_output(&refused));
    assert!(stray.is_dir());
    let cleaned = sandbox.regkit(
        &[
            "ci-env",
            "--shell",
            "fish",
            "--cleanup",
            private.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(cleaned.status.code(), Some(0), "{}", all_output(&cleaned));
    assert_eq!(
        text(&cleaned.stdout),
        "set -e DOCKER_CONFIG\nset -e REGISTRY_AUTH_FILE\n"
    );
    assert!(!private.exists());
}
