//! `docker-credential-acr` against an Entra ID double and an ACR data-plane double on loopback, reached
//! through the overrides a sovereign-cloud or proxy user sets (`AZURE_AUTHORITY_HOST`, `IDENTITY_ENDPOINT`)
//! and the test-only login-server override. Nothing leaves 127.0.0.1: the metadata-service override points
//! at a closed loopback port in every run.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use regkit_e2e::bins;
use regkit_e2e::process::{Run, run_piped};
use regkit_e2e::vendors::acr::{Acr, SPEC};
use regkit_e2e::vendors::assert_documented;
use regkit_e2e::vendors::entra::{DOCUMENTED, Entra, MSI_PATH, claims, now};
use serde_json::Value;

const TENANT: &str = "72f988bf-0000-4000-8000-2d7cd011db47";
const CLIENT: &str = "11111111-2222-3333-4444-555555555555";
const SECRET: &str = "s3cr3t&x=y";
const KEY: &str = "myreg.azurecr.io";
const NULL_GUID: &str = "00000000-0000-0000-0000-000000000000";

struct Setup {
    entra: Entra,
    acr: Acr,
    home: tempfile::TempDir,
}

fn setup() -> Setup {
    let entra = Entra::start(TENANT, CLIENT, SECRET);
    let acr = Acr::start(TENANT);
    acr.state.lock().unwrap().service = KEY.to_owned();
    Setup {
        entra,
        acr,
        home: tempfile::tempdir().unwrap(),
    }
}

impl Setup {
    fn base_env(&self) -> Vec<(String, String)> {
        [
            ("HOME", self.home.path().to_str().unwrap().to_owned()),
            (
                "XDG_CACHE_HOME",
                self.home.path().join("cache").to_str().unwrap().to_owned(),
            ),
            ("AZURE_AUTHORITY_HOST", self.entra.server.url()),
            ("REGKIT_ACR_TEST_LOGIN_SERVER", self.acr.server.url()),
            // Closed loopback ports: no test may reach the real metadata services.
            (
                "AZURE_POD_IDENTITY_AUTHORITY_HOST",
                "http://127.0.0.1:9".into(),
            ),
            ("GCE_METADATA_HOST", "127.0.0.1:9".into()),
            ("AZURE_TENANT_ID", TENANT.into()),
            ("AZURE_CLIENT_ID", CLIENT.into()),
            ("AZURE_CLIENT_SECRET", SECRET.into()),
            ("REGKIT_ACR_CREDENTIALS", "environment".into()),
            ("REGKIT_AUTH_TIMEOUT", "20".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    fn run(&self, action: &str, input: &str, extra: &[(&str, &str)]) -> Run {
        let mut env = self.base_env();
        for (name, value) in extra {
            env.retain(|(k, _)| k != name);
            if !value.is_empty() {
                env.push((name.to_string(), value.to_string()));
            }
        }
        let mut command = Command::new(bins::ours("docker-credential-acr"));
        command
            .arg(action)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .envs(env);
        run_piped(&mut command, input)
    }

    fn get(&self, key: &str, extra: &[(&str, &str)]) -> Run {
        self.run("get", key, extra)
    }

    fn cache_file(&self) -> std::path::PathBuf {
        self.home.path().join("cache/regkit/acr-cache.json")
    }

    fn assert_clean(&self) {
        self.entra.server.assert_no_violations();
        self.acr.server.assert_no_violations();
    }
}

fn answer(output: &Run) -> Value {
    assert_eq!(
        output.code, 0,
        "stdout {} stderr {}",
        output.stdout, output.stderr
    );
    serde_json::from_str(&output.stdout).expect("get answers JSON")
}

#[test]
fn token_exchange_then_cache_hit_without_network() {
    let s = setup();
    let first = answer(&s.get(&format!("https://{KEY}"), &[]));
    assert_eq!(first["ServerURL"], format!("https://{KEY}"));
    assert_eq!(first["Username"], NULL_GUID);
    let refresh = first["Secret"].as_str().unwrap();
    let claims = claims(refresh).expect("an ACR refresh token");
    assert_eq!(claims["tenant"], TENANT);
    assert_eq!(claims["sub"], CLIENT);
    assert_eq!(s.entra.tokens_issued(), 1);
    let exchanges: Vec<_> = s.acr.server.log();
    assert_eq!(exchanges.len(), 1);
    assert_eq!(exchanges[0].1, "/oauth2/exchange");
    let mode = std::fs::metadata(s.cache_file())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let dir_mode = std::fs::metadata(s.cache_file().parent().unwrap())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(dir_mode, 0o700);

    // Second call: the same token, no request to either server.
    let (entra_before, acr_before) = (s.entra.server.request_count(), s.acr.server.request_count());
    let second = answer(&s.get(KEY, &[]));
    assert_eq!(second["Secret"], first["Secret"]);
    assert_eq!(second["ServerURL"], KEY);
    assert_eq!(s.entra.server.request_count(), entra_before);
    assert_eq!(s.acr.server.request_count(), acr_before);
    // Even with the registry's token service on a closed port (the authority host is part of the identity,
    // so it stays), and with no Entra request made.
    let offline = answer(&s.get(
        KEY,
        &[("REGKIT_ACR_TEST_LOGIN_SERVER", "http://127.0.0.1:9")],
    ));
    assert_eq!(offline["Secret"], first["Secret"]);
    assert_eq!(s.entra.server.request_count(), entra_before);

    // list is offline and shows the registry with the null-GUID username.
    let list = s.run(
        "list",
        "",
        &[("AZURE_AUTHORITY_HOST", "http://127.0.0.1:9")],
    );
    assert_eq!(list.code, 0, "{}", list.stdout);
    let list: Value = serde_json::from_str(&list.stdout).unwrap();
    assert_eq!(list[format!("https://{KEY}")], NULL_GUID);
    // The secret never reaches stderr.
    assert!(!s.get(KEY, &[]).stderr.contains(SECRET));
    s.assert_clean();
}

#[test]
fn a_token_near_expiry_is_refreshed() {
    let s = setup();
    s.acr.state.lock().unwrap().refresh_lifetime = 3600;
    let first = answer(&s.get(KEY, &[]));
    // Half of the cached lifetime (exp minus the margin) later the token is no longer fresh.
    let later = (now() + 2000).to_string();
    let second = answer(&s.get(KEY, &[("REGKIT_AUTH_NOW", &later)]));
    assert_ne!(second["Secret"], first["Secret"], "a new exchange was made");
    assert_eq!(s.entra.tokens_issued(), 2);
    // Within the fresh window the new token is answered from the cache.
    let third = answer(&s.get(KEY, &[("REGKIT_AUTH_NOW", &later)]));
    assert_eq!(third["Secret"], second["Secret"]);
    assert_eq!(s.entra.tokens_issued(), 2);
    // A still-valid cached token covers an outage of the registry's token service.
    let outage = (now() + 2900).to_string();
    let fallback = s.get(
        KEY,
        &[
            ("REGKIT_AUTH_NOW", &outage),
            ("REGKIT_ACR_TEST_LOGIN_SERVER", "http://127.0.0.1:9"),
        ],
    );
    assert_eq!(answer(&fallback)["Secret"], second["Secret"]);
    assert!(
        fallback.stderr.contains("using the cached token"),
        "{}",
        fallback.stderr
    );
    s.assert_clean();
}

#[test]
fn look_alike_hosts_are_refused_without_any_request() {
    let s = setup();
    for key in [
        "myreg.azurecr.io.evil.example",
        "https://evil.example/myreg.azurecr.io",
        "myreg.azurecr.io:8443",
        "my-reg.azurecr.io",
        "azurecr.io",
        "ghcr.io",
    ] {
        let output = s.get(key, &[]);
        assert_eq!(output.code, 1, "{key}");
        assert_eq!(
            output.stdout, "credentials not found in native keychain\n",
            "{key}"
        );
    }
    assert_eq!(s.entra.server.request_count(), 0);
    assert_eq!(s.acr.server.request_count(), 0);
    assert!(!s.cache_file().exists());
}

#[test]
fn workload_identity_and_app_service_managed_identity() {
    let s = setup();
    let assertion = "eyJhbGciOiJSUzI1NiJ9.projected.sig";
    let file = s.home.path().join("azure-identity-token");
    std::fs::write(&file, assertion).unwrap();
    s.entra
        .state
        .lock()
        .unwrap()
        .assertions
        .insert(CLIENT.into(), assertion.into());
    let output = answer(&s.get(
        KEY,
        &[
            ("REGKIT_ACR_CREDENTIALS", "environment,workload-identity"),
            ("AZURE_CLIENT_SECRET", ""),
            ("AZURE_FEDERATED_TOKEN_FILE", file.to_str().unwrap()),
        ],
    ));
    assert_eq!(output["Username"], NULL_GUID);

    s.entra.state.lock().unwrap().identity_header = Some("hdr-42".into());
    let msi = format!("{}{MSI_PATH}", s.entra.server.url());
    let cache = s.home.path().join("other-cache");
    let output = answer(&s.get(
        KEY,
        &[
            ("REGKIT_ACR_CREDENTIALS", "managed-identity"),
            ("AZURE_CLIENT_SECRET", ""),
            ("AZURE_CLIENT_ID", ""),
            ("IDENTITY_ENDPOINT", &msi),
            ("IDENTITY_HEADER", "hdr-42"),
            ("XDG_CACHE_HOME", cache.to_str().unwrap()),
        ],
    ));
    assert_eq!(
        claims(output["Secret"].as_str().unwrap()).unwrap()["sub"],
        "system-assigned"
    );
    assert!(
        s.entra
            .server
            .log()
            .iter()
            .any(|(m, p, st)| m == "GET" && p == MSI_PATH && *st == 200)
    );
    s.assert_clean();
}

#[test]
fn certificate_credential() {
    let s = setup();
    let key = regkit_e2e::vendors::google::Key::generate(s.home.path());
    let pem = s.home.path().join("sp.pem");
    std::fs::write(&pem, format!("{}{}", key.certificate_pem, key.pem)).unwrap();
    s.entra
        .state
        .lock()
        .unwrap()
        .certificates
        .insert(CLIENT.into(), (key.public, key.certificate_der));
    let output = answer(&s.get(
        KEY,
        &[
            ("AZURE_CLIENT_SECRET", ""),
            ("AZURE_CLIENT_CERTIFICATE_PATH", pem.to_str().unwrap()),
        ],
    ));
    assert_eq!(
        claims(output["Secret"].as_str().unwrap()).unwrap()["sub"],
        CLIENT
    );
    // A certificate the tenant does not know is refused.
    let other = tempfile::tempdir().unwrap();
    let stranger = regkit_e2e::vendors::google::Key::generate(other.path());
    let pem2 = other.path().join("sp.pem");
    std::fs::write(
        &pem2,
        format!("{}{}", stranger.certificate_pem, stranger.pem),
    )
    .unwrap();
    let refused = s.get(
        KEY,
        &[
            ("AZURE_CLIENT_SECRET", ""),
            ("AZURE_CLIENT_CERTIFICATE_PATH", pem2.to_str().unwrap()),
        ],
    );
    assert_eq!(refused.code, 1, "{}", refused.stdout);
    assert!(
        refused.stderr.contains("invalid_client"),
        "{}",
        refused.stderr
    );
    assert!(
        !refused.stderr.contains("PRIVATE KEY"),
        "{}",
        refused.stderr
    );
    s.assert_clean();
}

#[test]
fn vm_managed_identity_through_the_metadata_override() {
    let s = setup();
    let output = answer(&s.get(
        KEY,
        &[
            ("REGKIT_ACR_CREDENTIALS", "managed-identity"),
            ("AZURE_CLIENT_SECRET", ""),
            ("AZURE_CLIENT_ID", ""),
            ("AZURE_POD_IDENTITY_AUTHORITY_HOST", &s.entra.server.url()),
        ],
    ));
    assert_eq!(
        claims(output["Secret"].as_str().unwrap()).unwrap()["sub"],
        "vm-system-assigned"
    );
    s.assert_clean();
}

#[test]
fn a_token_service_that_never_answers_is_bounded() {
    let s = setup();
    // Accepts connections and never answers.
    let hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", hole.local_addr().unwrap());
    let started = std::time::Instant::now();
    let output = s.get(
        KEY,
        &[
            ("REGKIT_ACR_TEST_LOGIN_SERVER", &url),
            ("REGKIT_AUTH_TIMEOUT", "1.5"),
        ],
    );
    let elapsed = started.elapsed();
    assert_eq!(output.code, 1);
    assert_eq!(output.stdout, "credentials not found in native keychain\n");
    assert!(
        output.stderr.contains("REGKIT_AUTH_TIMEOUT"),
        "{}",
        output.stderr
    );
    assert!(elapsed.as_secs_f64() < 6.0, "{elapsed:?}");
    drop(hole);
}

#[test]
fn a_refused_identity_is_not_found_with_the_reason_on_stderr() {
    let s = setup();
    let output = s.get(
        KEY,
        &[
            ("AZURE_CLIENT_SECRET", "wrong"),
            // Every source but the Azure CLI, which would reach past loopback if installed.
            (
                "REGKIT_ACR_CREDENTIALS",
                "environment,workload-identity,managed-identity",
            ),
        ],
    );
    assert_eq!(output.code, 1);
    assert_eq!(output.stdout, "credentials not found in native keychain\n");
    assert!(
        output.stderr.contains("invalid_client"),
        "{}",
        output.stderr
    );
    assert!(
        output.stderr.contains("managed-identity"),
        "{}",
        output.stderr
    );
    assert!(!output.stderr.contains("wrong"), "{}", output.stderr);
    assert!(!s.cache_file().exists());
    s.assert_clean();
}

#[test]
fn store_and_erase_succeed_with_a_note() {
    let s = setup();
    let store = s.run(
        "store",
        r#"{"ServerURL":"myreg.azurecr.io","Username":"u","Secret":"p"}"#,
        &[],
    );
    assert_eq!((store.code, store.stdout.as_str()), (0, ""));
    assert!(store.stderr.contains("Entra ID"), "{}", store.stderr);
    let erase = s.run("erase", KEY, &[]);
    assert_eq!((erase.code, erase.stdout.as_str()), (0, ""));
    assert_eq!(s.entra.server.request_count(), 0);
}

#[test]
fn the_doubles_follow_the_published_descriptions() {
    let s = setup();
    s.acr.assert_follows_descriptions();
    assert_documented(&s.entra.server.declared(), DOCUMENTED);
    assert!(Path::new(&regkit_e2e::specs::dir().join(SPEC)).is_file());
}
