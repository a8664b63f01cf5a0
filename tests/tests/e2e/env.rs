//! `docker-credential-env`: the protocol vectors byte by byte, then the docker CLI and skopeo resolving
//! credentials through it (from `credHelpers`) against a real htpasswd registry.

use std::ffi::OsString;
use std::path::Path;
use std::process::Command;

use regkit_e2e::process::{Run, run_with_stdin};
use regkit_e2e::registry::Registry;
use regkit_e2e::{bins, images};

const NOT_FOUND: &str = "credentials not found in native keychain\n";
/// Every secret in this file starts with it; no stderr of any call may contain it.
const CANARY: &str = "canary-91c4";

/// Runs `command` with `stdin`, asserting that no secret reached stderr.
fn run(mut command: Command, stdin: &str) -> Run {
    run_with_stdin(&mut command, stdin, CANARY)
}

/// Our helper with exactly `vars` as its environment.
fn helper(action: &str, stdin: &str, vars: &[(&str, &str)]) -> (i32, String) {
    let mut command = Command::new(bins::ours("docker-credential-env"));
    command.env_clear().envs(vars.iter().copied());
    if !action.is_empty() {
        command.arg(action);
    }
    let result = run(command, stdin);
    assert_eq!(result.stderr, "", "helpers print nothing on stderr");
    (result.code, result.stdout)
}

fn hit(server_url: &str, username: &str, secret: &str) -> (i32, String) {
    (
        0,
        format!(
            "{{\"ServerURL\":\"{server_url}\",\"Username\":\"{username}\",\"Secret\":\"{secret}\"}}\n"
        ),
    )
}

#[test]
fn get_hits_and_misses() {
    let secret = format!("{CANARY}-pat");
    let vars = [
        ("DOCKER_ghcr_io_USR", "octo"),
        ("DOCKER_ghcr_io_PSW", secret.as_str()),
        ("DOCKER_127_0_0_1_5000_USR", "with-port"),
        ("DOCKER_127_0_0_1_5000_PSW", "pw1"),
        ("DOCKER_127_0_0_1_USR", "without-port"),
        ("DOCKER_127_0_0_1_PSW", "pw2"),
        ("DOCKER_example_com_USR", "domain"),
        ("DOCKER_example_com_PSW", "pw3"),
        ("DOCKER_acr_test_USR", "<token>"),
        ("DOCKER_acr_test_PSW", "refresh&<>"),
        ("DOCKER_only_user_test_USR", "u"),
    ];
    assert_eq!(
        helper("get", "ghcr.io", &vars),
        hit("ghcr.io", "octo", &secret)
    );
    assert_eq!(
        helper("get", "https://ghcr.io/v2/\n", &vars),
        hit("https://ghcr.io/v2/", "octo", &secret)
    );
    assert_eq!(
        helper("get", "127.0.0.1:5000", &vars),
        hit("127.0.0.1:5000", "with-port", "pw1")
    );
    assert_eq!(
        helper("get", "127.0.0.1:5001", &vars),
        hit("127.0.0.1:5001", "without-port", "pw2")
    );
    assert_eq!(
        helper("get", "a.registry.example.com", &vars),
        hit("a.registry.example.com", "domain", "pw3")
    );
    assert_eq!(
        helper("get", "acr.test", &vars),
        hit(
            "acr.test",
            "\\u003ctoken\\u003e",
            "refresh\\u0026\\u003c\\u003e"
        )
    );
    for miss in ["quay.io", "only-user.test", "example.org", "127.0.0.2:5000"] {
        assert_eq!(helper("get", miss, &vars), (1, NOT_FOUND.into()), "{miss}");
    }
    assert_eq!(helper("get", "ghcr.io", &[]), (1, NOT_FOUND.into()));
}

#[test]
fn docker_auth_config_wins_with_docker_key_normalisation() {
    // hub:hubpw and env:envpw
    let config = r#"{"auths":{"https://index.docker.io/v1/":{"auth":"aHViOmh1YnB3"},"ghcr.io":{"auth":"ZW52OmVudnB3"}}}"#;
    let vars = [
        ("DOCKER_AUTH_CONFIG", config),
        ("DOCKER_ghcr_io_USR", "octo"),
        ("DOCKER_ghcr_io_PSW", "pat"),
    ];
    assert_eq!(
        helper("get", "ghcr.io", &vars),
        hit("ghcr.io", "env", "envpw")
    );
    for hub in [
        "docker.io",
        "index.docker.io",
        "https://index.docker.io/v1/",
    ] {
        assert_eq!(helper("get", hub, &vars), hit(hub, "hub", "hubpw"));
    }
    let (code, out) = helper(
        "get",
        "ghcr.io",
        &[(
            "DOCKER_AUTH_CONFIG",
            "{\"auths\":{\"ghcr.io\":{\"auth\":\"canary-91c4\"}}}",
        )],
    );
    assert_eq!(code, 1);
    assert!(
        out.contains("DOCKER_AUTH_CONFIG") && !out.contains(CANARY),
        "{out}"
    );
    assert_eq!(out.lines().count(), 1, "{out}");
}

#[test]
fn store_is_refused_unless_ignored_and_erase_has_nothing_to_do() {
    let store = format!("{{\"ServerURL\":\"ghcr.io\",\"Username\":\"u\",\"Secret\":\"{CANARY}\"}}");
    let (code, out) = helper("store", &store, &[]);
    assert_eq!(code, 1);
    assert!(
        out.contains("read-only") && out.contains("DOCKER_CREDENTIAL_ENV_IGNORE_STORE=1"),
        "{out}"
    );
    assert!(!out.contains(CANARY), "{out}");
    assert_eq!(out.lines().count(), 1);
    assert_eq!(
        helper(
            "store",
            &store,
            &[("DOCKER_CREDENTIAL_ENV_IGNORE_STORE", "1")]
        ),
        (0, String::new())
    );
    // Nothing is stored, so erase has nothing to do: it succeeds, with a note on stderr.
    let mut command = Command::new(bins::ours("docker-credential-env"));
    command.env_clear().arg("erase");
    let erased = run(command, "ghcr.io");
    assert_eq!((erased.code, erased.stdout.as_str()), (0, ""));
    assert_eq!(
        erased.stderr,
        "docker-credential-env: nothing to erase for ghcr.io: credentials come from the environment of each run\n"
    );
}

#[test]
fn bad_input_and_arguments() {
    assert_eq!(
        helper("get", "", &[]),
        (1, "no credentials server URL\n".into())
    );
    assert_eq!(
        helper("erase", " \n", &[]),
        (1, "no credentials server URL\n".into())
    );
    let (code, out) = helper(
        "store",
        &format!("{{\"ServerURL\":\"h\",\"Secret\":\"{CANARY}"),
        &[],
    );
    assert_eq!(code, 1);
    assert!(!out.contains(CANARY), "{out}");
    assert_eq!(
        helper("", "", &[]),
        (
            1,
            "Usage: docker-credential-env <store|get|erase|list|version>\n".into()
        )
    );
    assert_eq!(
        helper("fetch", "", &[]),
        (1, "docker-credential-env: unknown action: fetch\n".into())
    );
    let (code, out) = helper("version", "", &[]);
    assert_eq!(code, 0);
    assert!(out.starts_with("docker-credential-env (regkit) "), "{out}");
}

#[test]
fn list_shows_keys_and_usernames_only() {
    let vars = [
        (
            "DOCKER_AUTH_CONFIG",
            r#"{"auths":{"quay.io":{"auth":"ZW52OmVudnB3"}}}"#,
        ),
        ("DOCKER_ghcr_io_USR", "octo"),
        ("DOCKER_ghcr_io_PSW", CANARY),
        ("DOCKER_half_USR", "nobody"),
        ("DOCKER_reg_example_com_5000_USR", "ported"),
        ("DOCKER_reg_example_com_5000_PSW", CANARY),
        ("DOCKER_my_reg_example_com_USR", "dashed"),
        ("DOCKER_my_reg_example_com_PSW", CANARY),
    ];
    // A port is known exactly; `-` and `.` are both `_` in a variable name, so the key has `.`.
    assert_eq!(
        helper("list", "unused", &vars),
        (
            0,
            "{\"ghcr.io\":\"octo\",\"my.reg.example.com\":\"dashed\",\"quay.io\":\"env\",\"reg.example.com:5000\":\"ported\"}\n"
                .into()
        )
    );
    assert_eq!(helper("list", "unused", &[]), (0, "{}\n".into()));
}

/// A docker config dir whose `config.json` routes `host` to the env helper, and a PATH with only our
/// helper in front of the system's.
fn config_for(host: &str) -> (tempfile::TempDir, OsString) {
    let dir = tempfile::tempdir().unwrap();
    let config = serde_json::json!({ "credHelpers": { host: "env" } });
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink(
        bins::ours("docker-credential-env"),
        bin.join("docker-credential-env"),
    )
    .unwrap();
    let mut paths = vec![bin];
    paths.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    (dir, std::env::join_paths(paths).unwrap())
}

/// `program` with a clean credential environment: our config, our PATH, the host's variables only.
fn client(program: &Path, dir: &Path, path: &OsString, vars: &[(String, String)]) -> Command {
    let mut command = Command::new(program);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("DOCKER_") || name == "REGISTRY_AUTH_FILE" {
            command.env_remove(name);
        }
    }
    command
        .env("DOCKER_CONFIG", dir)
        .env("HOME", dir)
        .env("PATH", path)
        .env_remove("XDG_RUNTIME_DIR")
        .envs(vars.iter().map(|(k, v)| (k, v)));
    command
}

/// `DOCKER_<ip>_<port>_USR/PSW` for a `127.0.0.1:PORT` host.
fn host_vars(host: &str, user: &str, password: &str) -> Vec<(String, String)> {
    let stem = format!("DOCKER_{}", host.replace(['.', ':'], "_"));
    vec![
        (format!("{stem}_USR"), user.to_owned()),
        (format!("{stem}_PSW"), password.to_owned()),
    ]
}

#[test]
fn docker_manifest_inspect_uses_the_env_helper() {
    let docker = bins::tool("docker", "docker-ce-cli");
    let password = format!("{CANARY}-registry");
    let registry = Registry::start_htpasswd("alice", &password);
    let host = registry.host().to_owned();
    images::push(
        &registry.url(),
        "env/app",
        &["v1"],
        &images::Auth::basic("alice", &password),
    );
    let (dir, path) = config_for(&host);
    let inspect = |vars: &[(String, String)]| {
        let mut command = client(&docker, dir.path(), &path, vars);
        command.env_remove("DOCKER_HOST").args([
            "manifest",
            "inspect",
            "--insecure",
            &format!("{host}/env/app:v1"),
        ]);
        run(command, "")
    };
    let good = inspect(&host_vars(&host, "alice", &password));
    assert_eq!(good.code, 0, "{}{}", good.stdout, good.stderr);
    assert!(good.stdout.contains("schemaVersion"), "{}", good.stdout);
    assert!(!good.stdout.contains(CANARY));

    let wrong = inspect(&host_vars(&host, "alice", &format!("{CANARY}-wrong")));
    assert_ne!(
        wrong.code, 0,
        "a wrong password must fail: {}",
        wrong.stdout
    );
    let anonymous = inspect(&[]);
    assert_ne!(
        anonymous.code, 0,
        "no variables must mean anonymous, which the registry refuses"
    );
}

#[test]
fn skopeo_lists_tags_through_cred_helpers_and_env() {
    let skopeo = bins::tool("skopeo", "skopeo");
    let password = format!("{CANARY}-registry");
    let registry = Registry::start_htpasswd("alice", &password);
    let host = registry.host().to_owned();
    images::push(
        &registry.url(),
        "env/app",
        &["v1", "v2"],
        &images::Auth::basic("alice", &password),
    );
    let (dir, path) = config_for(&host);
    let auth_file = dir.path().join("config.json");
    let list_tags = |vars: &[(String, String)]| {
        let mut command = client(&skopeo, dir.path(), &path, vars);
        command.env("REGISTRY_AUTH_FILE", &auth_file).args([
            "list-tags",
            "--tls-verify=false",
            &format!("docker://{host}/env/app"),
        ]);
        run(command, "")
    };
    let listed = list_tags(&host_vars(&host, "alice", &password));
    assert_eq!(listed.code, 0, "{}{}", listed.stdout, listed.stderr);
    let listed: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap();
    let mut tags: Vec<&str> = listed["Tags"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t.as_str())
        .collect();
    tags.sort();
    assert_eq!(tags, ["v1", "v2"]);

    let wrong = list_tags(&host_vars(&host, "alice", &format!("{CANARY}-wrong")));
    assert_ne!(
        wrong.code, 0,
        "a wrong password must fail: {}",
        wrong.stdout
    );
    assert!(
        !wrong.stderr.contains("error getting credentials"),
        "{}",
        wrong.stderr
    );
}

#[test]
fn skopeo_goes_anonymous_on_the_not_found_answer() {
    // skopeo fails hard on any helper error other than the exact not-found text, even when the registry
    // needs no credentials; this proves ours answers a miss with exactly that text.
    let skopeo = bins::tool("skopeo", "skopeo");
    let registry = Registry::start();
    let host = registry.host().to_owned();
    images::push(
        &registry.url(),
        "open/app",
        &["latest"],
        &images::Auth::None,
    );
    let (dir, path) = config_for(&host);
    let mut command = client(&skopeo, dir.path(), &path, &[]);
    command
        .env("REGISTRY_AUTH_FILE", dir.path().join("config.json"))
        .args([
            "list-tags",
            "--tls-verify=false",
            &format!("docker://{host}/open/app"),
        ]);
    let listed = run(command, "");
    assert_eq!(listed.code, 0, "{}{}", listed.stdout, listed.stderr);
    assert!(listed.stdout.contains("latest"), "{}", listed.stdout);
}

#[test]
fn podman_logout_of_a_registry_served_by_the_env_helper_succeeds() {
    // podman 4.3 overflows its stack (a self-referencing error chain) when a helper's erase fails.
    let podman = bins::tool("podman", "podman");
    let (dir, path) = config_for("127.0.0.1:5999");
    let runtime = dir.path().join("run");
    std::fs::create_dir(&runtime).unwrap();
    let registries = dir.path().join("registries.conf");
    std::fs::write(&registries, "").unwrap();
    let mut command = client(&podman, dir.path(), &path, &[]);
    command
        .env("XDG_RUNTIME_DIR", &runtime)
        .env("REGISTRY_AUTH_FILE", dir.path().join("config.json"))
        .env("CONTAINERS_REGISTRIES_CONF", &registries)
        .args(["logout", "127.0.0.1:5999"]);
    let logout = run(command, "");
    assert_eq!(
        logout.code,
        0,
        "{}{}",
        logout.stdout,
        logout.stderr.lines().take(5).collect::<Vec<_>>().join("\n")
    );
    assert!(
        logout
            .stderr
            .contains("nothing to erase for 127.0.0.1:5999")
            || logout.stdout.contains("Removed login credentials"),
        "{}{}",
        logout.stdout,
        logout.stderr
    );
}
