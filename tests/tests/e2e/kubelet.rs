//! The kubelet credential-provider mode (`<binary> kubelet`, `credentialprovider.kubelet.k8s.io/v1`) of the
//! ECR, ACR, Google and router binaries: request/response vectors against moto, the Entra/ACR and Google
//! doubles and the real keyring, the field names and casing of the published v1 types, expiry →
//! `cacheDuration`, version negotiation, bad input, and the shipped `CredentialProviderConfig`.

use std::path::Path;
use std::process::Command;

use regkit_e2e::bins;
use regkit_e2e::dbus::Session;
use regkit_e2e::moto::{self, Moto};
use regkit_e2e::process::{Run, run_with_stdin};
use regkit_e2e::vendors::acr::Acr;
use regkit_e2e::vendors::entra::{Entra, now};
use regkit_e2e::vendors::google::{Google, Key};
use serde_json::{Value, json};

const V1: &str = "credentialprovider.kubelet.k8s.io/v1";
const CANARY: &str = "canary-k8s1";
const BINARIES: [&str; 4] = [
    "docker-credential-ecr-login",
    "docker-credential-acr",
    "docker-credential-gcr",
    "docker-credential-regkit",
];

fn request(image: &str) -> String {
    // The kubelet sends the service account token when the provider asks for it; regkit never reads it.
    json!({
        "apiVersion": V1, "kind": "CredentialProviderRequest", "image": image,
        "serviceAccountToken": format!("{CANARY}-sa"), "serviceAccountAnnotations": {"a": "b"},
    })
    .to_string()
}

/// `<binary> kubelet` with only `vars` (plus a closed metadata port and no session bus) and `stdin`.
fn kubelet(binary: &str, vars: &[(String, String)], stdin: &str) -> Run {
    kubelet_in(None, binary, vars, stdin)
}

fn kubelet_in(
    session: Option<&Session>,
    binary: &str,
    vars: &[(String, String)],
    stdin: &str,
) -> Run {
    let mut command = match session {
        Some(session) => session.command(bins::ours(binary)),
        None => {
            let mut command = Command::new(bins::ours(binary));
            command.env_clear().env(
                "DBUS_SESSION_BUS_ADDRESS",
                "unix:path=/nonexistent/regkit-bus",
            );
            command
        }
    };
    command
        .arg("kubelet")
        .env("PATH", "/usr/bin:/bin")
        .env("GCE_METADATA_HOST", "127.0.0.1:9")
        .env("AZURE_POD_IDENTITY_AUTHORITY_HOST", "http://127.0.0.1:9")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .envs(vars.iter().cloned());
    run(command, stdin)
}

fn run(mut command: Command, stdin: &str) -> Run {
    let run = run_with_stdin(&mut command, stdin, CANARY);
    assert!(
        !run.stdout.contains(&format!("{CANARY}-sa")),
        "{}",
        run.stdout
    );
    run
}

/// The response, checked against the v1 types: exactly these fields, with this casing.
fn response(run: &Run) -> Value {
    assert_eq!(run.code, 0, "stdout {} stderr {}", run.stdout, run.stderr);
    let value: Value = serde_json::from_str(&run.stdout).expect("response JSON");
    let fields: Vec<&str> = value
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for field in &fields {
        assert!(
            [
                "kind",
                "apiVersion",
                "cacheKeyType",
                "cacheDuration",
                "auth"
            ]
            .contains(field),
            "{field} is not a CredentialProviderResponse field"
        );
    }
    assert_eq!(value["kind"], "CredentialProviderResponse");
    assert_eq!(value["cacheKeyType"], "Registry");
    let auth = value["auth"].as_object().expect("auth map");
    assert_eq!(auth.len(), 1);
    for config in auth.values() {
        let mut keys: Vec<&str> = config
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort();
        assert_eq!(keys, ["password", "username"]);
    }
    value
}

/// Seconds of a Go duration string (`11h58m0s`); fails on anything Go's `time.ParseDuration` would not
/// print for whole seconds.
fn seconds(duration: &Value) -> i64 {
    let text = duration.as_str().expect("cacheDuration is a string");
    let (mut total, mut number) = (0, String::new());
    for c in text.chars() {
        match c {
            '0'..='9' => number.push(c),
            'h' | 'm' | 's' => {
                let n: i64 = number.parse().expect(text);
                total += n * match c {
                    'h' => 3600,
                    'm' => 60,
                    _ => 1,
                };
                number.clear();
            }
            _ => panic!("not a Go duration: {text}"),
        }
    }
    assert!(number.is_empty() && text.ends_with('s'), "{text}");
    total
}

fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn ecr_vectors_and_expiry_through_the_helper_and_the_router() {
    let moto = Moto::start();
    let home = tempfile::tempdir().unwrap();
    let t0 = moto::EXPIRES_AT - 86_400;
    let env = |now: i64| {
        let mut env = moto.env();
        env.extend(vars(&[
            ("REGKIT_ECR_TIMEOUT", "20"),
            ("REGKIT_CONFIG", "/nonexistent/regkit.toml"),
        ]));
        env.push(("HOME".into(), home.path().display().to_string()));
        env.push((
            "AWS_ECR_CACHE_DIR".into(),
            home.path().join("ecr").display().to_string(),
        ));
        env.push(("REGKIT_ECR_NOW".into(), now.to_string()));
        env
    };
    let image = format!("{}/team/app:1.0", moto::REGISTRY);
    let first = kubelet("docker-credential-ecr-login", &env(t0), &request(&image));
    assert_eq!(
        first.stdout,
        format!(
            "{{\"kind\":\"CredentialProviderResponse\",\"apiVersion\":\"{V1}\",\"cacheKeyType\":\"Registry\",\"cacheDuration\":\"24h0m0s\",\"auth\":{{\"{}\":{{\"username\":\"AWS\",\"password\":\"{}\"}}}}}}\n",
            moto::REGISTRY,
            moto::PASSWORD
        ),
        "{}",
        first.stderr
    );
    response(&first);
    // A cache hit two and a half hours later: the same token, its remaining lifetime.
    let later = response(&kubelet(
        "docker-credential-ecr-login",
        &env(t0 + 9000),
        &request(&image),
    ));
    assert_eq!(later["cacheDuration"], "21h30m0s");
    // The router answers ECR images from the same provider and cache.
    let routed = response(&kubelet(
        "docker-credential-regkit",
        &env(t0 + 9000),
        &request(&image),
    ));
    assert_eq!(routed, later);
    // After expiry the token moto issues is already expired: answered, but "do not cache".
    let expired = response(&kubelet(
        "docker-credential-ecr-login",
        &env(moto::EXPIRES_AT + 60),
        &request(&image),
    ));
    assert_eq!(expired["cacheDuration"], "0s");
    // An image of another cloud is refused with the reason, nothing on stdout.
    let foreign = kubelet(
        "docker-credential-ecr-login",
        &env(t0),
        &request("europe-docker.pkg.dev/p/r/app:1"),
    );
    assert_eq!((foreign.code, foreign.stdout.as_str()), (1, ""));
    assert!(
        foreign
            .stderr
            .contains("no credentials for europe-docker.pkg.dev"),
        "{}",
        foreign.stderr
    );
}

#[test]
fn acr_and_google_vectors_report_the_tokens_remaining_lifetime() {
    const TENANT: &str = "72f988bf-0000-4000-8000-2d7cd011db47";
    const CLIENT: &str = "11111111-2222-3333-4444-555555555555";
    const EMAIL: &str = "puller@proj.iam.gserviceaccount.com";
    let secret = format!("{CANARY}-azure");
    let entra = Entra::start(TENANT, CLIENT, &secret);
    let acr = Acr::start(TENANT);
    acr.state.lock().unwrap().service = "myreg.azurecr.io".into();
    let google = Google::start();
    let home = tempfile::tempdir().unwrap();
    let key = Key::generate(home.path());
    google
        .state
        .lock()
        .unwrap()
        .service_accounts
        .insert(EMAIL.into(), key.public);
    let lifetime = google.state.lock().unwrap().lifetime;
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
    let cache = home.path().join("cache");
    let env = vars(&[
        ("HOME", home.path().to_str().unwrap()),
        ("XDG_CACHE_HOME", cache.to_str().unwrap()),
        ("AZURE_AUTHORITY_HOST", &entra_url),
        ("REGKIT_ACR_TEST_LOGIN_SERVER", &acr_url),
        ("AZURE_TENANT_ID", TENANT),
        ("AZURE_CLIENT_ID", CLIENT),
        ("AZURE_CLIENT_SECRET", &secret),
        ("REGKIT_ACR_CREDENTIALS", "environment"),
        ("GOOGLE_APPLICATION_CREDENTIALS", adc.to_str().unwrap()),
        ("REGKIT_GCR_CREDENTIALS", "adc"),
        ("REGKIT_AUTH_TIMEOUT", "20"),
        ("REGKIT_CONFIG", "/nonexistent/regkit.toml"),
    ]);
    let before = now();
    let acr_answer = response(&kubelet(
        "docker-credential-acr",
        &env,
        &request("myreg.azurecr.io/team/app@sha256:0123"),
    ));
    let entry = &acr_answer["auth"]["myreg.azurecr.io"];
    assert_eq!(entry["username"], "00000000-0000-0000-0000-000000000000");
    let exp =
        regkit_e2e::vendors::entra::claims(entry["password"].as_str().unwrap()).unwrap()["exp"]
            .as_i64()
            .unwrap();
    // Cached until five minutes before the token's own expiry, which is what the kubelet is told.
    let remaining = seconds(&acr_answer["cacheDuration"]);
    assert!(
        (exp - 300 - now()..=exp - 300 - before).contains(&remaining),
        "{remaining} vs exp {exp}"
    );
    let google_answer = response(&kubelet(
        "docker-credential-gcr",
        &env,
        &request("europe-west1-docker.pkg.dev/proj/repo/app:1"),
    ));
    assert_eq!(
        google_answer["auth"]["europe-west1-docker.pkg.dev"]["username"],
        "oauth2accesstoken"
    );
    let remaining = seconds(&google_answer["cacheDuration"]);
    assert!(
        (lifetime - 310..=lifetime - 300).contains(&remaining),
        "{remaining} vs lifetime {lifetime}"
    );
    // The router routes both clouds the same way, from the caches just filled: no new token.
    let issued = (entra.tokens_issued(), google.tokens_issued());
    for image in [
        "myreg.azurecr.io/team/app:1",
        "europe-west1-docker.pkg.dev/proj/repo/app:1",
    ] {
        let routed = response(&kubelet("docker-credential-regkit", &env, &request(image)));
        assert!(seconds(&routed["cacheDuration"]) > 0, "{image}");
    }
    assert_eq!((entra.tokens_issued(), google.tokens_issued()), issued);
}

#[test]
fn router_keyring_and_env_routes_leave_the_cache_duration_to_the_kubelet() {
    let session = Session::start();
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("config.toml");
    std::fs::write(
        &config,
        "[[router.rule]]\nregistry = \"*.ci.example\"\nprovider = \"env\"\n",
    )
    .unwrap();
    let ci_secret = format!("{CANARY}-ci");
    let env = vars(&[
        ("REGKIT_CONFIG", config.to_str().unwrap()),
        ("DOCKER_build_ci_example_USR", "ci"),
        ("DOCKER_build_ci_example_PSW", &ci_secret),
    ]);
    let mut store = session.command(bins::ours("docker-credential-regkit"));
    store.arg("store").env("REGKIT_CONFIG", &config);
    let stored = run(
        store,
        &json!({"ServerURL": "registry.corp.example:5000", "Username": "alice", "Secret": format!("{CANARY}-pw")})
            .to_string(),
    );
    assert_eq!(stored.code, 0, "{}", stored.stdout);
    let keyring = response(&kubelet_in(
        Some(&session),
        "docker-credential-regkit",
        &env,
        &request("registry.corp.example:5000/team/app:1"),
    ));
    assert_eq!(
        keyring["auth"],
        json!({"registry.corp.example:5000": {"username": "alice", "password": format!("{CANARY}-pw")}})
    );
    assert!(keyring.get("cacheDuration").is_none(), "{keyring}");
    let ci = response(&kubelet_in(
        Some(&session),
        "docker-credential-regkit",
        &env,
        &request("build.ci.example/app"),
    ));
    assert_eq!(ci["auth"]["build.ci.example"]["username"], "ci");
    assert!(ci.get("cacheDuration").is_none(), "{ci}");
    let miss = kubelet_in(
        Some(&session),
        "docker-credential-regkit",
        &env,
        &request("other.example/app"),
    );
    assert_eq!((miss.code, miss.stdout.as_str()), (1, ""));
    assert!(
        miss.stderr.contains("no credentials for other.example"),
        "{}",
        miss.stderr
    );
}

#[test]
fn bad_input_exits_non_zero_with_one_clear_line() {
    let env = vars(&[
        ("HOME", "/nonexistent/home"),
        ("REGKIT_CONFIG", "/nonexistent/regkit.toml"),
    ]);
    let unknown = json!({"apiVersion": "credentialprovider.kubelet.k8s.io/v2", "kind": "CredentialProviderRequest", "image": "gcr.io/p/a"}).to_string();
    for binary in BINARIES {
        for (input, expected) in [
            (
                unknown.as_str(),
                "unsupported apiVersion \"credentialprovider.kubelet.k8s.io/v2\"",
            ),
            ("", "not JSON"),
            ("{\"apiVersion\":", "not JSON"),
            ("[]", "not a JSON object"),
            (
                "{\"kind\":\"CredentialProviderRequest\",\"image\":\"gcr.io/p/a\"}",
                "unsupported apiVersion",
            ),
            (
                &format!("{{\"apiVersion\":\"{V1}\",\"kind\":\"CredentialProviderRequest\"}}"),
                "image is missing",
            ),
            (
                &format!(
                    "{{\"apiVersion\":\"{V1}\",\"kind\":\"CredentialProviderRequest\",\"Image\":\"gcr.io/p/a\"}}"
                ),
                "image is missing",
            ),
            (
                &format!(
                    "{{\"apiVersion\":\"{V1}\",\"kind\":\"CredentialProviderResponse\",\"image\":\"gcr.io/p/a\"}}"
                ),
                "kind is \"CredentialProviderResponse\"",
            ),
        ] {
            let out = kubelet(binary, &env, input);
            assert_eq!(out.code, 1, "{binary} {input}: {}", out.stdout);
            assert_eq!(out.stdout, "", "{binary} {input}");
            assert_eq!(out.stderr.lines().count(), 1, "{binary}: {}", out.stderr);
            assert!(
                out.stderr.starts_with(&format!("{binary}: ")),
                "{}",
                out.stderr
            );
            assert!(
                out.stderr.contains(expected),
                "{binary} {input}: {}",
                out.stderr
            );
        }
        let mut extra = Command::new(bins::ours(binary));
        extra.args(["kubelet", "get"]).env_clear();
        let out = run(extra, &request("gcr.io/p/a"));
        assert_eq!((out.code, out.stdout.as_str()), (1, ""));
        assert!(out.stderr.contains("usage"), "{}", out.stderr);
    }
}

#[test]
fn the_shipped_credential_provider_config_names_our_binaries_in_kubelet_mode() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../packaging/kubernetes/credential-provider-config.yaml");
    let config: Value =
        serde_norway::from_str(&std::fs::read_to_string(path).unwrap()).expect("YAML");
    assert_eq!(config["apiVersion"], "kubelet.config.k8s.io/v1");
    assert_eq!(config["kind"], "CredentialProviderConfig");
    let providers = config["providers"].as_array().unwrap();
    let names: Vec<&str> = providers
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, BINARIES);
    for provider in providers {
        assert_eq!(provider["apiVersion"], V1);
        assert_eq!(provider["args"], json!(["kubelet"]));
        assert!(!provider["matchImages"].as_array().unwrap().is_empty());
        assert!(provider["defaultCacheDuration"].as_str().is_some());
        assert!(bins::ours(provider["name"].as_str().unwrap()).exists());
    }
}
