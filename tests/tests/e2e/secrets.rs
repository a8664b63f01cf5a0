//! The canary sweep: every binary's failure paths run with canary credentials (wrong passwords, unreachable
//! hosts, malformed config and stdin, verbose mode, and servers that echo every request back in their error
//! bodies), and every byte of stdout, stderr and the files left in their homes is searched for the canary,
//! raw and base64-encoded as Basic credentials. The only place a canary may appear is a `get` answer on a
//! credential helper's stdout.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine;
use regkit_e2e::bins;
use regkit_e2e::images::{self, Auth};
use regkit_e2e::registry::Registry;

const CANARY: &str = "canary-sweep-7d3a91";
const USER: &str = "sweep-user";

/// The forms a leak could take: raw, and inside a Basic `Authorization` value.
fn canary_forms() -> Vec<String> {
    let engine = base64::engine::general_purpose::STANDARD;
    vec![
        CANARY.to_string(),
        engine.encode(format!("{USER}:{CANARY}")),
        engine.encode(format!("<token>:{CANARY}")),
    ]
}

/// A loopback server that answers every request `401` with a `Basic` challenge and the whole request
/// (head and body, so Authorization headers and form secrets) echoed in a JSON error body.
fn echo_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    head.push_str(&line);
                }
                let length = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .and_then(|v| v.trim().parse().ok())
                    })
                    .unwrap_or(0usize);
                let mut body = vec![0; length.min(1 << 20)];
                let _ = reader.read_exact(&mut body);
                let echoed = format!("{head}\n{}", String::from_utf8_lossy(&body));
                let json = serde_json::json!({
                    "message": echoed,
                    "error": echoed,
                    "error_description": echoed,
                    "errors": [{"code": "UNAUTHORIZED", "message": echoed, "detail": echoed}],
                    "__type": "UnrecognizedClientException",
                    "Message": echoed,
                })
                .to_string();
                let answer = format!(
                    "HTTP/1.1 401 Unauthorized\r\nwww-authenticate: Basic realm=\"{}\"\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{json}",
                    echoed.lines().next().unwrap_or("").replace('"', ""),
                    json.len()
                );
                let _ = stream.write_all(answer.as_bytes());
            });
        }
    });
    addr
}

/// A closed loopback port: connections are refused.
fn closed_port() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

/// One run's outputs, with what it was.
struct Ran {
    what: String,
    stdout: String,
    stderr: String,
    /// A credential helper's `get`: its stdout is the answer and may carry the secret.
    answer_allowed: bool,
}

struct Sweep {
    runs: Vec<Ran>,
    homes: Vec<(PathBuf, Vec<PathBuf>)>,
    _dirs: Vec<tempfile::TempDir>,
}

impl Sweep {
    fn new() -> Sweep {
        Sweep {
            runs: Vec::new(),
            homes: Vec::new(),
            _dirs: Vec::new(),
        }
    }

    /// A fresh home directory (scanned afterwards, except for the `seeded` files the test wrote itself).
    fn home(&mut self, seeded: &[(&str, &str)]) -> PathBuf {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let mut written = Vec::new();
        for (name, content) in seeded {
            let file = path.join(name);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(&file, content).unwrap();
            written.push(file);
        }
        self.homes.push((path.clone(), written));
        self._dirs.push(dir);
        path
    }

    /// Runs `binary` with only `env` (plus HOME) and `stdin`, bounded to 150 s.
    fn run(
        &mut self,
        binary: &Path,
        args: &[&str],
        env: &[(&str, String)],
        home: &Path,
        stdin: &str,
    ) {
        let mut command = Command::new(binary);
        command
            .env_clear()
            .env("HOME", home)
            .env("XDG_CACHE_HOME", home.join("cache"))
            .env("XDG_CONFIG_HOME", home.join("config"))
            .env("XDG_RUNTIME_DIR", home.join("run"))
            // Closed ports: no run may reach a real cloud metadata service.
            .env("GCE_METADATA_HOST", "127.0.0.1:9")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AZURE_POD_IDENTITY_AUTHORITY_HOST", "http://127.0.0.1:9")
            .env(
                "DBUS_SESSION_BUS_ADDRESS",
                "unix:path=/nonexistent/regkit-sweep",
            )
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().unwrap();
        let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
        let started = std::time::Instant::now();
        while child.try_wait().unwrap().is_none() {
            if started.elapsed() > Duration::from_secs(150) {
                let _ = child.kill();
                panic!("{} {args:?} did not finish within 150 s", binary.display());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let output = child.wait_with_output().unwrap();
        let name = binary.file_name().unwrap().to_string_lossy().into_owned();
        self.runs.push(Ran {
            what: format!("{name} {}", args.join(" ")),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            answer_allowed: name.starts_with("docker-credential-") && args == ["get"],
        });
    }

    /// Every leak found: `(run or file, where, excerpt)`.
    fn leaks(&self) -> Vec<String> {
        let forms = canary_forms();
        let mut leaks = Vec::new();
        for ran in &self.runs {
            for form in &forms {
                if ran.stderr.contains(form.as_str()) {
                    leaks.push(format!("{}: stderr: {}", ran.what, ran.stderr));
                }
                if !ran.answer_allowed && ran.stdout.contains(form.as_str()) {
                    leaks.push(format!("{}: stdout: {}", ran.what, ran.stdout));
                }
            }
        }
        for (home, seeded) in &self.homes {
            for file in files_under(home) {
                if seeded.contains(&file) {
                    continue;
                }
                // Whatever the binaries wrote (caches, configs) is private: 0600 in a 0700 directory.
                let mode = |path: &Path| {
                    std::os::unix::fs::PermissionsExt::mode(
                        &std::fs::metadata(path).unwrap().permissions(),
                    ) & 0o777
                };
                let dir = file.parent().unwrap();
                if mode(&file) & 0o077 != 0 || (dir != home && mode(dir) & 0o077 != 0) {
                    leaks.push(format!(
                        "file {} is {:o} in a {:o} directory",
                        file.display(),
                        mode(&file),
                        mode(dir)
                    ));
                }
                let content =
                    String::from_utf8_lossy(&std::fs::read(&file).unwrap_or_default()).into_owned();
                for form in &forms {
                    if content.contains(form.as_str()) {
                        leaks.push(format!("file {} holds the canary", file.display()));
                    }
                }
            }
        }
        leaks
    }
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_under(&path));
        } else {
            found.push(path);
        }
    }
    found
}

/// Every credential helper the workspace built (`target/debug/docker-credential-*`).
fn helpers() -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(bins::target_dir())
        .unwrap()
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            name.starts_with("docker-credential-") && !name.contains('.') && path.is_file()
        })
        .collect();
    found.sort();
    for expected in [
        "docker-credential-keyring",
        "docker-credential-env",
        "docker-credential-ecr-login",
        "docker-credential-acr",
    ] {
        assert!(
            found.iter().any(|path| path.ends_with(expected)),
            "{expected} was not built"
        );
    }
    found
}

fn config_json(host: &str, user: &str, secret: &str) -> String {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{secret}"));
    serde_json::json!({"auths": {host: {"auth": auth}}}).to_string()
}

#[test]
fn no_canary_reaches_any_output_but_a_get_answer() {
    let echo = echo_server();
    let closed = closed_port();
    let registry = Registry::start_htpasswd(USER, "the-right-password");
    images::push(
        &registry.url(),
        "sweep/app",
        &["a"],
        &Auth::basic(USER, "the-right-password"),
    );
    let mut sweep = Sweep::new();
    let empty_path = tempfile::tempdir().unwrap();
    let empty_path = empty_path.path().display().to_string();

    // Credential helpers: the protocol's failure paths, with the canary in stdin and in the environment.
    let store =
        format!(r#"{{"ServerURL":"https://{echo}","Username":"{USER}","Secret":"{CANARY}"}}"#);
    let malformed_store = [
        format!(r#"{{"ServerURL":"{echo}","Username":"{USER}","Secret":"{CANARY}""#),
        format!(r#"{{"ServerURL":"{echo}","Username":"{USER}","Secret":{CANARY}}}"#),
        format!(r#"{{"ServerURL":"","Username":"{USER}","Secret":"{CANARY}"}}"#),
        format!(r#"{{"ServerURL":"{echo}","Username":"","Secret":"{CANARY}"}}"#),
        format!(r#"{{"ServerURL":"{echo}","Username":"{USER}","Secret":["{CANARY}"]}}"#),
        format!("{CANARY}\n"),
    ];
    let aws_host = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
    let malformed_auth_config = format!(r#"{{"auths":{{"{echo}":{{"auth":"{CANARY}"}}"#);
    let helper_env: Vec<(&str, String)> = vec![
        ("PATH", empty_path.clone()),
        // AWS: static canary credentials, every endpoint the echo server.
        ("AWS_ACCESS_KEY_ID", "AKIDSWEEP".into()),
        ("AWS_SECRET_ACCESS_KEY", CANARY.into()),
        ("AWS_SESSION_TOKEN", CANARY.into()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ENDPOINT_URL", format!("http://{echo}")),
        ("AWS_ENDPOINT_URL_ECR", format!("http://{echo}")),
        ("AWS_ENDPOINT_URL_ECR_PUBLIC", format!("http://{echo}")),
        ("AWS_ENDPOINT_URL_STS", format!("http://{echo}")),
        ("REGKIT_ECR_TIMEOUT", "10".into()),
        // Azure: a service principal with the canary secret, Entra ID and the login server echoing.
        (
            "AZURE_TENANT_ID",
            "00000000-0000-0000-0000-000000000001".into(),
        ),
        (
            "AZURE_CLIENT_ID",
            "00000000-0000-0000-0000-000000000002".into(),
        ),
        ("AZURE_CLIENT_SECRET", CANARY.into()),
        ("AZURE_AUTHORITY_HOST", format!("http://{echo}")),
        ("REGKIT_ACR_TEST_LOGIN_SERVER", format!("http://{echo}")),
        ("REGKIT_ACR_CREDENTIALS", "environment".into()),
        ("IDENTITY_ENDPOINT", format!("http://{echo}/msi/token")),
        ("IDENTITY_HEADER", CANARY.into()),
        ("REGKIT_AUTH_TIMEOUT", "10".into()),
        // The env helper: a canary pair for one host.
        ("DOCKER_SWEEP_EXAMPLE_USR", USER.into()),
        ("DOCKER_SWEEP_EXAMPLE_PSW", CANARY.into()),
    ];
    for helper in helpers() {
        let home = sweep.home(&[]);
        sweep.run(&helper, &["store"], &helper_env, &home, &store);
        for input in &malformed_store {
            sweep.run(&helper, &["store"], &helper_env, &home, input);
        }
        for key in [
            echo.as_str(),
            aws_host,
            "sweep.azurecr.io",
            "gcr.io",
            "sweep.example",
            "",
        ] {
            sweep.run(&helper, &["get"], &helper_env, &home, key);
            sweep.run(&helper, &["erase"], &helper_env, &home, key);
        }
        sweep.run(&helper, &["list"], &helper_env, &home, "");
        sweep.run(&helper, &[], &helper_env, &home, "");
        sweep.run(&helper, &["frobnicate"], &helper_env, &home, CANARY);
        let mut broken = helper_env.clone();
        broken.push(("DOCKER_AUTH_CONFIG", malformed_auth_config.clone()));
        sweep.run(&helper, &["get"], &broken, &home, &echo);
        sweep.run(&helper, &["list"], &broken, &home, "");
    }

    // regkit: wrong passwords, unreachable hosts, malformed configs, echoing registries and vendor APIs,
    // verbose mode, every subcommand that takes credentials.
    let regkit = bins::ours("regkit");
    let wrong = config_json(registry.host(), USER, CANARY);
    let at_echo = config_json(&echo, USER, CANARY);
    let at_closed = config_json(&closed, USER, CANARY);
    let truncated = format!(r#"{{"auths":{{"{echo}":{{"auth":"{CANARY}""#);
    let not_base64 = format!(r#"{{"auths":{{"{echo}":{{"auth":"{CANARY}"}}}}}}"#);
    let identity = format!(r#"{{"auths":{{"{echo}":{{"identitytoken":"{CANARY}"}}}}}}"#);
    let vendor_flags: Vec<Vec<String>> = vec![
        vec![],
        vec![
            "--repo-implementation".into(),
            "gitlab".into(),
            "--gitlab-api-url".into(),
            format!("http://{echo}/api/v4"),
            "--repo-gitlab-token".into(),
            CANARY.into(),
        ],
        vec![
            "--repo-implementation".into(),
            "github".into(),
            "--github-api-url".into(),
            format!("http://{echo}"),
            "--repo-github-token".into(),
            CANARY.into(),
        ],
        vec![
            "--repo-implementation".into(),
            "dockerhub".into(),
            "--docker-hub-api-url".into(),
            format!("http://{echo}"),
            "--repo-docker-hub-username".into(),
            USER.into(),
            "--repo-docker-hub-password".into(),
            CANARY.into(),
        ],
        vec![
            "--repo-implementation".into(),
            "dockerhub".into(),
            "--docker-hub-api-url".into(),
            format!("http://{echo}"),
            "--repo-docker-hub-token".into(),
            CANARY.into(),
        ],
        vec![
            "--repo-implementation".into(),
            "harbor".into(),
            "--harbor-api-url".into(),
            format!("http://{echo}"),
            "--repo-harbor-username".into(),
            USER.into(),
            "--repo-harbor-password".into(),
            CANARY.into(),
        ],
        vec![
            "--repo-implementation".into(),
            "quay".into(),
            "--quay-api-url".into(),
            format!("http://{echo}"),
            "--repo-quay-token".into(),
            CANARY.into(),
        ],
        vec![
            "--repo-implementation".into(),
            "artifactory".into(),
            "--artifactory-url".into(),
            format!("http://{echo}"),
            "--artifactory-repository".into(),
            "docker".into(),
            "--repo-artifactory-token".into(),
            CANARY.into(),
        ],
        vec![
            "--repo-implementation".into(),
            "artifactory".into(),
            "--artifactory-url".into(),
            format!("http://{echo}"),
            "--artifactory-repository".into(),
            "docker".into(),
            "--repo-artifactory-username".into(),
            USER.into(),
            "--repo-artifactory-password".into(),
            CANARY.into(),
        ],
        vec![
            "--repo-implementation".into(),
            "nexus".into(),
            "--nexus-url".into(),
            format!("http://{echo}"),
            "--nexus-repository".into(),
            "docker".into(),
            "--repo-nexus-username".into(),
            USER.into(),
            "--repo-nexus-password".into(),
            CANARY.into(),
        ],
        vec![
            "--repo-implementation".into(),
            "acr".into(),
            "--acr-api-url".into(),
            format!("http://{echo}"),
        ],
    ];
    let regkit_env: Vec<(&str, String)> = vec![
        ("PATH", empty_path.clone()),
        ("GITHUB_TOKEN", CANARY.into()),
        ("CI_JOB_TOKEN", CANARY.into()),
    ];
    for (host, config) in [
        (registry.host().to_string(), wrong.clone()),
        (echo.clone(), at_echo.clone()),
        (closed.clone(), at_closed.clone()),
        (echo.clone(), truncated.clone()),
        (echo.clone(), not_base64.clone()),
        (echo.clone(), identity.clone()),
    ] {
        let home = sweep.home(&[(".docker/config.json", &config)]);
        let docker = home.join(".docker");
        let docker = docker.to_str().unwrap();
        let repo = format!("{host}/sweep/app");
        if host == closed {
            // A refused connection is retried for the whole retry budget (2 min): one run says enough.
            sweep.run(
                &regkit,
                &["-v", "--docker-config", docker, "tags", &repo],
                &regkit_env,
                &home,
                "",
            );
            continue;
        }
        for flags in &vendor_flags {
            let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
            for command in [
                vec!["tags", repo.as_str()],
                vec!["tags", "--digests", repo.as_str()],
            ] {
                let mut args = vec!["-v", "--docker-config", docker];
                args.extend(&flags);
                args.extend(command);
                sweep.run(&regkit, &args, &regkit_env, &home, "");
            }
            let reference = format!("{repo}:a");
            let mut args = vec!["-v", "--output", "json", "--docker-config", docker];
            args.extend(&flags);
            args.extend(["delete", reference.as_str()]);
            sweep.run(&regkit, &args, &regkit_env, &home, "");
            let mut args = vec!["-v", "--docker-config", docker];
            args.extend(&flags);
            args.extend(["cleanup", "--yes", "--keep-last", "0", repo.as_str()]);
            sweep.run(&regkit, &args, &regkit_env, &home, "");
        }
        for command in [
            vec!["-v", "--docker-config", docker, "detect", repo.as_str()],
            vec!["-v", "--docker-config", docker, "doctor", repo.as_str()],
            vec!["-v", "--docker-config", docker, "ci-env"],
        ] {
            sweep.run(&regkit, &command, &regkit_env, &home, "");
        }
        // The same credentials through DOCKER_AUTH_CONFIG instead of the file.
        let mut env = regkit_env.clone();
        env.push(("DOCKER_AUTH_CONFIG", config.clone()));
        let empty = sweep.home(&[(".docker/config.json", "{}")]);
        let empty_docker = empty.join(".docker");
        sweep.run(
            &regkit,
            &[
                "-v",
                "--docker-config",
                empty_docker.to_str().unwrap(),
                "tags",
                &repo,
            ],
            &env,
            &empty,
            "",
        );
    }

    let leaks = sweep.leaks();
    println!(
        "SECRETS runs={} homes_scanned={} leaks={}",
        sweep.runs.len(),
        sweep.homes.len(),
        leaks.len()
    );
    assert!(
        sweep
            .runs
            .iter()
            .any(|ran| ran.answer_allowed && ran.stdout.contains(CANARY)),
        "no get answer carried the canary: the sweep would not see a leak either"
    );
    assert!(
        leaks.is_empty(),
        "canary leaked:\n{}",
        leaks.join("\n---\n")
    );
}
