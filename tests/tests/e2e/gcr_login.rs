//! `docker-credential-gcr` against a Google OAuth double on loopback, reached through the overrides a proxy
//! user sets (`token_uri` in the credentials file, `GCE_METADATA_HOST`). Nothing leaves 127.0.0.1: every run
//! points the metadata host at the double or a closed loopback port, and names its credential sources so
//! the real `gcloud` is never run.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use regkit_e2e::bins;
use regkit_e2e::process::{Run, run_piped};
use regkit_e2e::vendors::assert_documented;
use regkit_e2e::vendors::entra::now;
use regkit_e2e::vendors::google::{DOCUMENTED, Google, Key, METADATA_TOKEN};
use serde_json::{Value, json};

const EMAIL: &str = "cleaner@proj.iam.gserviceaccount.com";
const KEY: &str = "europe-west1-docker.pkg.dev";

struct Setup {
    google: Google,
    home: tempfile::TempDir,
}

fn setup() -> Setup {
    Setup {
        google: Google::start(),
        home: tempfile::tempdir().unwrap(),
    }
}

impl Setup {
    /// A service account key file whose `token_uri` is the double.
    fn service_account(&self) -> PathBuf {
        let key = Key::generate(self.home.path());
        self.google
            .state
            .lock()
            .unwrap()
            .service_accounts
            .insert(EMAIL.into(), key.public);
        let file = self.home.path().join("sa.json");
        let content = json!({
            "type": "service_account", "project_id": "proj", "private_key_id": "k1",
            "private_key": key.pem, "client_email": EMAIL,
            "token_uri": format!("{}/token", self.google.server.url()),
        });
        std::fs::write(&file, content.to_string()).unwrap();
        file
    }

    fn run(&self, action: &str, input: &str, vars: &[(&str, &str)]) -> Run {
        let mut command = Command::new(bins::ours("docker-credential-gcr"));
        command
            .arg(action)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", self.home.path())
            .env("XDG_CACHE_HOME", self.home.path().join("cache"))
            // A closed loopback port unless a test names the double.
            .env("GCE_METADATA_HOST", "127.0.0.1:9")
            .env("REGKIT_GCR_CREDENTIALS", "adc,metadata")
            .env("REGKIT_AUTH_TIMEOUT", "20");
        for (name, value) in vars {
            command.env(name, value);
        }
        run_piped(&mut command, input)
    }

    fn cache_file(&self) -> PathBuf {
        self.home.path().join("cache/regkit/gcr-cache.json")
    }

    fn assert_clean(&self) {
        self.google.server.assert_no_violations();
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
fn service_account_key_then_cache_hit_without_network() {
    let s = setup();
    let file = s.service_account();
    let file = file.to_str().unwrap();
    let vars = [("GOOGLE_APPLICATION_CREDENTIALS", file)];
    let first = answer(&s.run("get", &format!("https://{KEY}"), &vars));
    assert_eq!(first["Username"], "oauth2accesstoken");
    assert_eq!(first["ServerURL"], format!("https://{KEY}"));
    assert_eq!(first["Secret"], "ya29.test-1");
    assert_eq!(
        std::fs::metadata(s.cache_file())
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    let before = s.google.server.request_count();
    let second = answer(&s.run("get", KEY, &vars));
    assert_eq!(second["Secret"], first["Secret"]);
    assert_eq!(
        s.google.server.request_count(),
        before,
        "answered from the cache"
    );
    let list = s.run("list", "", &vars);
    let list: Value = serde_json::from_str(&list.stdout).unwrap();
    assert_eq!(list[format!("https://{KEY}")], "oauth2accesstoken");
    assert!(!s.run("get", KEY, &vars).stderr.contains("PRIVATE KEY"));
    s.assert_clean();
}

#[test]
fn a_token_near_expiry_is_refreshed() {
    let s = setup();
    let file = s.service_account();
    let file = file.to_str().unwrap();
    let first = answer(&s.run("get", "gcr.io", &[("GOOGLE_APPLICATION_CREDENTIALS", file)]));
    // 3599 s minus the 300 s margin: fresh for half of that.
    let later = (now() + 1700).to_string();
    let vars = [
        ("GOOGLE_APPLICATION_CREDENTIALS", file),
        ("REGKIT_AUTH_NOW", later.as_str()),
    ];
    let second = answer(&s.run("get", "gcr.io", &vars));
    assert_ne!(second["Secret"], first["Secret"]);
    assert_eq!(s.google.tokens_issued(), 2);
    let third = answer(&s.run("get", "gcr.io", &vars));
    assert_eq!(third["Secret"], second["Secret"]);
    assert_eq!(s.google.tokens_issued(), 2);
    s.assert_clean();
}

#[test]
fn authorized_user_from_the_well_known_file() {
    let s = setup();
    let gcloud = s.home.path().join("gcloud");
    std::fs::create_dir_all(&gcloud).unwrap();
    std::fs::write(
        gcloud.join("application_default_credentials.json"),
        json!({
            "type": "authorized_user", "client_id": "cid.apps", "client_secret": "csecret",
            "refresh_token": "1//refresh", "token_uri": format!("{}/token", s.google.server.url()),
        })
        .to_string(),
    )
    .unwrap();
    s.google
        .state
        .lock()
        .unwrap()
        .users
        .insert("cid.apps".into(), ("csecret".into(), "1//refresh".into()));
    let out = answer(&s.run(
        "get",
        "docker.us-central1.rep.pkg.dev",
        &[("CLOUDSDK_CONFIG", gcloud.to_str().unwrap())],
    ));
    assert_eq!(out["Username"], "oauth2accesstoken");
    assert_eq!(
        s.google.state.lock().unwrap().issued[out["Secret"].as_str().unwrap()],
        "cid.apps"
    );
    s.assert_clean();
}

#[test]
fn external_account_with_impersonation() {
    let s = setup();
    let subject = s.home.path().join("oidc-token");
    // No trailing newline: projected tokens have none, and the file is sent verbatim.
    std::fs::write(&subject, "eyJoidc.subject.token").unwrap();
    let audience =
        "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/gh";
    let account = "deployer@proj.iam.gserviceaccount.com";
    {
        let mut state = s.google.state.lock().unwrap();
        state.federation = Some((audience.into(), "eyJoidc.subject.token".into()));
        state.impersonable.push(account.into());
    }
    let url = s.google.server.url();
    let file = s.home.path().join("wif.json");
    std::fs::write(
        &file,
        json!({
            "type": "external_account", "audience": audience,
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
            "token_url": format!("{url}/v1/token"),
            "credential_source": {"file": subject},
            "service_account_impersonation_url":
                format!("{url}/v1/projects/-/serviceAccounts/{account}:generateAccessToken"),
        })
        .to_string(),
    )
    .unwrap();
    let out = answer(&s.run(
        "get",
        KEY,
        &[("GOOGLE_APPLICATION_CREDENTIALS", file.to_str().unwrap())],
    ));
    let token = out["Secret"].as_str().unwrap().to_owned();
    assert!(token.starts_with("ya29.impersonated-"), "{token}");
    assert_eq!(s.google.state.lock().unwrap().issued[&token], account);
    s.assert_clean();
}

#[test]
fn metadata_server_when_no_credentials_file() {
    let s = setup();
    let out = answer(&s.run(
        "get",
        "eu.gcr.io",
        &[("GCE_METADATA_HOST", s.google.server.host())],
    ));
    assert_eq!(out["Username"], "oauth2accesstoken");
    assert!(
        s.google
            .server
            .log()
            .iter()
            .any(|(method, path, status)| method == "GET"
                && path == METADATA_TOKEN
                && *status == 200)
    );
    s.assert_clean();
}

#[test]
fn gcloud_is_the_last_source_and_never_prompts() {
    let s = setup();
    let bin = s.home.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let fake = bin.join("gcloud");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\n[ \"$CLOUDSDK_CORE_DISABLE_PROMPTS\" = 1 ] || exit 9\n[ \"$*\" = 'config config-helper --format=json' ] || exit 8\necho '{{\"credential\":{{\"access_token\":\"ya29.from-gcloud\",\"token_expiry\":\"{}\"}}}}'\n",
            "2099-01-01T00:00:00Z"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:/usr/bin:/bin", bin.display());
    let out = answer(&s.run(
        "get",
        "asia.gcr.io",
        &[
            ("PATH", &path),
            ("REGKIT_GCR_CREDENTIALS", "adc,metadata,gcloud"),
        ],
    ));
    assert_eq!(out["Secret"], "ya29.from-gcloud");
}

#[test]
fn look_alike_hosts_and_failures_are_not_found() {
    let s = setup();
    let file = s.service_account();
    let file = file.to_str().unwrap();
    for key in [
        "gcr.io.evil.example",
        "https://evil.example/gcr.io",
        "x.europe-docker.pkg.dev",
        "europe-docker.pkg.dev:443",
        "docker.pkg.dev",
    ] {
        let out = s.run("get", key, &[("GOOGLE_APPLICATION_CREDENTIALS", file)]);
        assert_eq!(out.code, 1, "{key}");
        assert_eq!(
            out.stdout, "credentials not found in native keychain\n",
            "{key}"
        );
    }
    assert_eq!(s.google.server.request_count(), 0);
    assert!(!s.cache_file().exists());
    // A served host with no usable credentials: not found, the reasons on stderr.
    let out = s.run(
        "get",
        KEY,
        &[("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent.json")],
    );
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("adc:") && out.stderr.contains("metadata:"),
        "{}",
        out.stderr
    );
    assert!(!Path::new(&s.cache_file()).exists());
}

#[test]
fn store_erase_and_the_documented_routes() {
    let s = setup();
    let store = s.run(
        "store",
        r#"{"ServerURL":"gcr.io","Username":"u","Secret":"p"}"#,
        &[],
    );
    assert_eq!((store.code, store.stdout.as_str()), (0, ""));
    assert_eq!(s.run("erase", "gcr.io", &[]).code, 0);
    assert_documented(&s.google.server.declared(), DOCUMENTED);
}
