//! `docker-credential-regkit`, the routing helper: the docker CLI through `credsStore: regkit` and skopeo
//! through registries.conf `credential-helpers = ["regkit"]` (containers/image never reads `credsStore`)
//! against a real htpasswd registry (keyring route, real gnome-keyring), an ECR host routed to moto, ACR and
//! Google hosts routed to their loopback doubles, config rules to the env provider and to an external
//! helper (Debian's `docker-credential-secretservice`), and a miss that touches no network.

use std::ffi::OsString;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use regkit_e2e::dbus::Session;
use regkit_e2e::moto::{self, Moto};
use regkit_e2e::process::{Run, run_with_stdin};
use regkit_e2e::registry::Registry;
use regkit_e2e::vendors::acr::Acr;
use regkit_e2e::vendors::entra::Entra;
use regkit_e2e::vendors::google::{Google, Key};
use regkit_e2e::{bins, images};
use serde_json::{Value, json};

const NOT_FOUND: &str = "credentials not found in native keychain\n";
/// Every secret in this file starts with it; no stderr may contain it.
const CANARY: &str = "canary-7a41";

fn run(command: &mut Command, stdin: &str) -> Run {
    run_with_stdin(command, stdin, CANARY)
}

fn router() -> PathBuf {
    bins::ours("docker-credential-regkit")
}

/// The router in a clean environment: its own home, the given regkit config file, no session bus unless
/// `session` gives one, and `vars` on top.
fn command(
    session: Option<&Session>,
    home: &Path,
    config: &Path,
    vars: &[(String, String)],
) -> Command {
    let mut command = match session {
        Some(session) => session.command(router()),
        None => {
            let mut command = Command::new(router());
            command.env_clear().env("HOME", home).env(
                "DBUS_SESSION_BUS_ADDRESS",
                "unix:path=/nonexistent/regkit-bus",
            );
            command
        }
    };
    command
        .env("PATH", path_with_ours())
        .env("XDG_CACHE_HOME", home.join("cache"))
        .env("REGKIT_CONFIG", config)
        // Closed loopback ports: no run may reach a real metadata service.
        .env("GCE_METADATA_HOST", "127.0.0.1:9")
        .env("AZURE_POD_IDENTITY_AUTHORITY_HOST", "http://127.0.0.1:9")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .envs(vars.iter().cloned());
    command
}

fn path_with_ours() -> OsString {
    let mut paths = vec![bins::target_dir()];
    paths.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(paths).unwrap()
}

fn answer(run: &Run) -> Value {
    assert_eq!(run.code, 0, "stdout {} stderr {}", run.stdout, run.stderr);
    serde_json::from_str(&run.stdout).expect("get answers JSON")
}

fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn docker_cli_through_creds_store_and_skopeo_through_registries_conf() {
    let docker = bins::tool("docker", "docker-ce-cli");
    let skopeo = bins::tool("skopeo", "skopeo");
    let password = format!("{CANARY}-registry");
    let registry = Registry::start_htpasswd("alice", &password);
    let host = registry.host().to_owned();
    images::push(
        &registry.url(),
        "repo",
        &["v1"],
        &images::Auth::basic("alice", &password),
    );
    let session = Session::start();
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("absent.toml");
    let docker_dir = tempfile::tempdir().unwrap();
    let docker_config = docker_dir.path().join("config.json");
    // `regkit configure --router` writes both: docker's credsStore and the podman drop-in.
    // containers/image has never read `credsStore` (containers/image#111): podman and skopeo reach the
    // router through registries.conf `credential-helpers`, with an auth file of their own.
    let registries_d = docker_dir.path().join("registries.conf.d");
    let configure = run(
        session
            .command(bins::ours("regkit"))
            .args(["configure", "--router", "--podman", "--podman-dir"])
            .arg(&registries_d)
            .env("DOCKER_CONFIG", docker_dir.path())
            .env("PATH", path_with_ours()),
        "",
    );
    assert_eq!(
        configure.code, 0,
        "{} {}",
        configure.stdout, configure.stderr
    );
    let written: Value =
        serde_json::from_str(&std::fs::read_to_string(&docker_config).unwrap()).unwrap();
    assert_eq!(written, json!({"credsStore": "regkit"}));
    let registries_conf = registries_d.join("50-regkit.conf");
    let drop_in = std::fs::read_to_string(&registries_conf).unwrap();
    assert!(
        drop_in.contains("credential-helpers = [\"regkit\", \"containers-auth.json\"]"),
        "{drop_in}"
    );
    let auth_file = docker_dir.path().join("auth.json");
    std::fs::write(&auth_file, "{}").unwrap();
    let tool = |program: &Path, args: &[&str]| {
        let mut command = session.command(program);
        if program == skopeo {
            // skopeo 1.9 reads no CONTAINERS_REGISTRIES_CONF; its hidden global flag names the file.
            command.arg("--registries-conf").arg(&registries_conf);
        }
        command
            .env("DOCKER_CONFIG", docker_dir.path())
            .env("REGISTRY_AUTH_FILE", &auth_file)
            .env("REGKIT_CONFIG", &config)
            .env("PATH", path_with_ours())
            .env_remove("DOCKER_HOST")
            .args(args);
        command
    };
    let image = format!("{host}/repo:v1");
    let inspect = || {
        run(
            &mut tool(&docker, &["manifest", "inspect", "--insecure", &image]),
            "",
        )
    };
    assert_ne!(inspect().code, 0, "anonymous access must fail");
    let login = run(
        &mut tool(
            &docker,
            &["login", &host, "-u", "alice", "--password-stdin"],
        ),
        &password,
    );
    assert_eq!(login.code, 0, "{} {}", login.stdout, login.stderr);
    let saved = std::fs::read_to_string(&docker_config).unwrap();
    assert!(!saved.contains(CANARY), "{saved}");
    // The keyring holds it: the single-purpose keyring helper reads what the router stored.
    let stored = answer(&run(
        session
            .command(bins::ours("docker-credential-keyring"))
            .arg("get"),
        &host,
    ));
    assert_eq!(stored["Secret"], password.as_str());
    let inspected = inspect();
    assert_eq!(inspected.code, 0, "{}", inspected.stderr);
    assert!(inspected.stdout.contains("schemaVersion"));
    let tags = run(
        &mut tool(
            &skopeo,
            &[
                "list-tags",
                "--tls-verify=false",
                &format!("docker://{host}/repo"),
            ],
        ),
        "",
    );
    assert_eq!(tags.code, 0, "{}", tags.stderr);
    assert_eq!(answer(&tags)["Tags"], json!(["v1"]));
    let listed = answer(&run(
        command(Some(&session), home.path(), &config, &[]).arg("list"),
        "",
    ));
    assert_eq!(listed, json!({ host.clone(): "alice" }));
    assert_eq!(run(&mut tool(&skopeo, &["logout", &host]), "").code, 0);
    let gone = run(
        command(Some(&session), home.path(), &config, &[]).arg("get"),
        &host,
    );
    assert_eq!((gone.code, gone.stdout.as_str()), (1, NOT_FOUND));
    assert_ne!(
        run(
            &mut tool(
                &skopeo,
                &[
                    "list-tags",
                    "--tls-verify=false",
                    &format!("docker://{host}/repo")
                ]
            ),
            ""
        )
        .code,
        0,
        "logged out"
    );
}

#[test]
fn ecr_host_routes_to_moto_and_store_is_ignored_with_a_note() {
    let moto = Moto::start();
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("absent.toml");
    let mut env = moto.env();
    let now = (moto::EXPIRES_AT - 86_400).to_string();
    env.extend(vars(&[
        ("REGKIT_ECR_NOW", &now),
        ("REGKIT_ECR_TIMEOUT", "20"),
    ]));
    env.push((
        "AWS_ECR_CACHE_DIR".into(),
        home.path().join("ecr").display().to_string(),
    ));
    let get = run(
        command(None, home.path(), &config, &env).arg("get"),
        &format!("https://{}", moto::REGISTRY),
    );
    let credentials = answer(&get);
    assert_eq!(credentials["Username"], "AWS");
    assert_eq!(credentials["Secret"], moto::PASSWORD);
    assert!(home.path().join("ecr/regkit-ecr-cache.json").exists());
    // No session bus in this run: a store that reached the keyring would fail.
    let store = run(
        command(None, home.path(), &config, &env).arg("store"),
        &json!({"ServerURL": moto::REGISTRY, "Username": "AWS", "Secret": format!("{CANARY}-x")})
            .to_string(),
    );
    assert_eq!(store.code, 0, "{} {}", store.stdout, store.stderr);
    assert!(
        store.stderr.contains("not storing credentials"),
        "{}",
        store.stderr
    );
}

#[test]
fn acr_and_google_hosts_route_to_their_doubles() {
    const TENANT: &str = "72f988bf-0000-4000-8000-2d7cd011db47";
    const CLIENT: &str = "11111111-2222-3333-4444-555555555555";
    const EMAIL: &str = "puller@proj.iam.gserviceaccount.com";
    let entra = Entra::start(TENANT, CLIENT, &format!("{CANARY}-azure"));
    let acr = Acr::start(TENANT);
    acr.state.lock().unwrap().service = "myreg.azurecr.io".into();
    let google = Google::start();
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("absent.toml");
    let key = Key::generate(home.path());
    google
        .state
        .lock()
        .unwrap()
        .service_accounts
        .insert(EMAIL.into(), key.public);
    let adc = home.path().join("sa.json");
    std::fs::write(
        &adc,
        json!({
            "type": "service_account", "project_id": "proj", "private_key_id": "k1",
            "private_key": key.pem, "client_email": EMAIL,
            "token_uri": format!("{}/token", google.server.url()),
        })
        .to_string(),
    )
    .unwrap();
    let (entra_url, acr_url) = (entra.server.url(), acr.server.url());
    let secret = format!("{CANARY}-azure");
    let env = vars(&[
        ("AZURE_AUTHORITY_HOST", &entra_url),
        ("REGKIT_ACR_TEST_LOGIN_SERVER", &acr_url),
        ("AZURE_TENANT_ID", TENANT),
        ("AZURE_CLIENT_ID", CLIENT),
        ("AZURE_CLIENT_SECRET", &secret),
        ("REGKIT_ACR_CREDENTIALS", "environment"),
        ("GOOGLE_APPLICATION_CREDENTIALS", adc.to_str().unwrap()),
        ("REGKIT_GCR_CREDENTIALS", "adc"),
        ("REGKIT_AUTH_TIMEOUT", "20"),
    ]);
    let acr_answer = answer(&run(
        command(None, home.path(), &config, &env).arg("get"),
        "https://myreg.azurecr.io/v2/",
    ));
    assert_eq!(
        acr_answer["Username"],
        "00000000-0000-0000-0000-000000000000"
    );
    assert!(
        acr_answer["Secret"].as_str().unwrap().contains('.'),
        "a JWT"
    );
    let gcr_answer = answer(&run(
        command(None, home.path(), &config, &env).arg("get"),
        "europe-west1-docker.pkg.dev",
    ));
    assert_eq!(gcr_answer["Username"], "oauth2accesstoken");
    assert_eq!(google.tokens_issued(), 1);
    assert_eq!(entra.tokens_issued(), 1);
    // Look-alikes are keyring keys: with no bus the keyring's own error, never a token.
    for key in ["myreg.azurecr.io.evil.example", "gcr.io.evil.example"] {
        let lookalike = run(command(None, home.path(), &config, &env).arg("get"), key);
        assert_eq!(lookalike.code, 1);
        assert!(!lookalike.stdout.contains("Secret"), "{}", lookalike.stdout);
    }
    assert_eq!(google.tokens_issued(), 1);
    assert_eq!(entra.tokens_issued(), 1);
    acr.server.assert_no_violations();
}

#[test]
fn config_rules_send_hosts_to_the_env_provider_and_an_external_helper() {
    let secretservice = bins::tool(
        "docker-credential-secretservice",
        "golang-docker-credential-helpers",
    );
    let session = Session::start();
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("config.toml");
    std::fs::write(
        &config,
        r#"
[[router.rule]]
registry = "*.ci.example"
provider = "env"

[[router.rule]]
registry = "vault.corp.example:5000"
helper = "secretservice"

[[router.rule]]
registry = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
provider = "keyring"
"#,
    )
    .unwrap();
    let ci_secret = format!("{CANARY}-ci");
    let env = vars(&[
        ("DOCKER_build_ci_example_USR", "ci"),
        ("DOCKER_build_ci_example_PSW", &ci_secret),
    ]);
    let routed = |action: &str, stdin: &str| {
        run(
            command(Some(&session), home.path(), &config, &env).arg(action),
            stdin,
        )
    };
    let ci = answer(&routed("get", "https://build.ci.example/v2/"));
    assert_eq!(ci["Username"], "ci");
    assert_eq!(ci["Secret"], format!("{CANARY}-ci"));
    // The env provider is read-only, as docker-credential-env is.
    let refused = routed(
        "store",
        &json!({"ServerURL": "build.ci.example", "Username": "u", "Secret": "s"}).to_string(),
    );
    assert_eq!(refused.code, 1);
    assert!(refused.stdout.contains("read-only"), "{}", refused.stdout);
    // The external helper stores, answers and erases its keys.
    let stored = routed(
        "store",
        &json!({"ServerURL": "vault.corp.example:5000", "Username": "v", "Secret": format!("{CANARY}-v")})
            .to_string(),
    );
    assert_eq!(stored.code, 0, "{} {}", stored.stdout, stored.stderr);
    let peer = answer(&run(
        session.command(&secretservice).arg("get"),
        "vault.corp.example:5000",
    ));
    assert_eq!(peer["Username"], "v");
    let through = answer(&routed("get", "vault.corp.example:5000"));
    assert_eq!(through["Secret"], format!("{CANARY}-v"));
    assert_eq!(routed("erase", "vault.corp.example:5000").code, 0);
    let gone = routed("get", "vault.corp.example:5000");
    assert_eq!((gone.code, gone.stdout.as_str()), (1, NOT_FOUND));
    // A rule takes an ECR host back to the keyring: answered there, no AWS call (none is configured).
    let ecr_in_keyring = routed("get", "123456789012.dkr.ecr.us-east-1.amazonaws.com");
    assert_eq!(
        (ecr_in_keyring.code, ecr_in_keyring.stdout.as_str()),
        (1, NOT_FOUND)
    );
    assert!(
        ecr_in_keyring.stderr.is_empty(),
        "{}",
        ecr_in_keyring.stderr
    );
    // A broken rule is one clear line for every operation.
    std::fs::write(
        &config,
        "[[router.rule]]\nregistry = \"x\"\nprovider = \"vault\"\n",
    )
    .unwrap();
    let broken = routed("get", "x");
    assert_eq!(broken.code, 1);
    assert!(
        broken.stdout.contains("invalid regkit config file") && broken.stdout.contains("vault"),
        "{}",
        broken.stdout
    );
    assert_eq!(broken.stdout.lines().count(), 1);
}

#[test]
fn a_miss_is_one_keyring_lookup_without_network() {
    let session = Session::start();
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("absent.toml");
    // Every cloud endpoint and proxy points at a listener that must never see a connection.
    let trap = TcpListener::bind("127.0.0.1:0").unwrap();
    trap.set_nonblocking(true).unwrap();
    let trap_url = format!("http://{}", trap.local_addr().unwrap());
    let env = vars(&[
        ("AWS_ENDPOINT_URL_ECR", &trap_url),
        ("AWS_ENDPOINT_URL", &trap_url),
        ("AZURE_AUTHORITY_HOST", &trap_url),
        ("HTTPS_PROXY", &trap_url),
        ("HTTP_PROXY", &trap_url),
        ("ALL_PROXY", &trap_url),
        ("AWS_ACCESS_KEY_ID", "AKIDREGKITTEST"),
        ("AWS_SECRET_ACCESS_KEY", "regkit-test-secret"),
    ]);
    for key in [
        "127.0.0.1:5999",
        "https://index.docker.io/v1/",
        "ghcr.io",
        "myreg.azurecr.io.evil.example",
        "123456789012.dkr.ecr.us-east-1.amazonaws.com.evil.example",
    ] {
        let miss = run(
            command(Some(&session), home.path(), &config, &env).arg("get"),
            key,
        );
        assert_eq!((miss.code, miss.stdout.as_str()), (1, NOT_FOUND), "{key}");
        assert!(miss.stderr.is_empty(), "{key}: {}", miss.stderr);
    }
    std::thread::sleep(Duration::from_millis(50));
    assert!(trap.accept().is_err(), "a miss made a network connection");
    assert!(
        !home.path().join("cache").exists(),
        "a miss must not create a token cache"
    );
}
