//! `regkit::dockerconfig` resolving credentials through a real external helper binary: our
//! `docker-credential-env`, run from `credHelpers` and `credsStore` as docker would run it.
//!
//! A helper inherits the caller's environment; the test process cannot safely set variables for it, so
//! `docker-credential-env` on the test PATH is a two-line script that sets them and `exec`s the real binary.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use regkit::dockerconfig::{AuthSource, ConfigDocument, DockerConfig, RegistryAuth};
use regkit::secret::Secret;
use regkit_e2e::bins;

/// A docker config dir with `config`, a bin dir holding only our env helper (run with `helper_vars`), and
/// the variables a load sees.
struct Setup {
    dir: tempfile::TempDir,
    vars: Vec<(String, OsString)>,
}

impl Setup {
    fn new(config: serde_json::Value, helper_vars: &[(&str, &str)]) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let assignments: Vec<String> = helper_vars
            .iter()
            .map(|(k, v)| format!("'{k}={v}'"))
            .collect();
        let script = bin.join("docker-credential-env");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nexec env -i {} '{}' \"$@\"\n",
                assignments.join(" "),
                bins::ours("docker-credential-env").display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let vars = vec![
            (
                "DOCKER_CONFIG".to_owned(),
                dir.path().as_os_str().to_owned(),
            ),
            ("PATH".to_owned(), bin.into_os_string()),
        ];
        Setup { dir, vars }
    }

    fn load(&self) -> DockerConfig {
        let lookup = |name: &str| {
            self.vars
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        DockerConfig::load_with_env(None, &lookup).unwrap()
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

fn basic(username: &str, password: &str) -> RegistryAuth {
    RegistryAuth::Basic {
        username: username.into(),
        password: Secret::new(password.into()),
    }
}

#[test]
fn cred_helpers_run_the_real_env_helper() {
    let setup = Setup::new(
        serde_json::json!({
            "credHelpers": {"127.0.0.1:47001": "env", "tok.test": "env", "miss.test": "env"},
            "auths": {"miss.test": {"auth": "ZmlsZTpmcHc="}}
        }),
        &[
            ("DOCKER_127_0_0_1_47001_USR", "alice"),
            ("DOCKER_127_0_0_1_47001_PSW", "s3cret"),
            ("DOCKER_tok_test_USR", "<token>"),
            ("DOCKER_tok_test_PSW", "refresh"),
        ],
    );
    let config = setup.load();
    let helper = AuthSource::Helper("env".into());
    assert_eq!(
        config.credentials_for("127.0.0.1:47001").unwrap(),
        (basic("alice", "s3cret"), helper.clone())
    );
    assert_eq!(
        config.credentials_for("https://tok.test/v2/").unwrap(),
        (
            RegistryAuth::IdentityToken(Secret::new("refresh".into())),
            helper.clone()
        )
    );
    // The helper's not-found answer falls through to the file's auths entry.
    assert_eq!(
        config.credentials_for("miss.test").unwrap(),
        (
            basic("file", "fpw"),
            AuthSource::File(setup.path().join("config.json"))
        )
    );
    assert_eq!(
        config.credentials_for("other.test").unwrap(),
        (RegistryAuth::Anonymous, AuthSource::None)
    );
}

#[test]
fn creds_store_runs_the_real_env_helper_and_docker_auth_config_wins() {
    let setup = Setup::new(
        serde_json::json!({"credsStore": "env", "credHelpers": {"docker.io": "absent"}}),
        &[
            ("DOCKER_ghcr_io_USR", "octo"),
            ("DOCKER_ghcr_io_PSW", "pat"),
            ("DOCKER_io_USR", "hub"),
            ("DOCKER_io_PSW", "hubpw"),
        ],
    );
    let config = setup.load();
    assert_eq!(
        config.credentials_for("ghcr.io").unwrap(),
        (basic("octo", "pat"), AuthSource::Helper("env".into()))
    );
    // docker asks helpers for Docker Hub under its legacy URL; the env helper strips it to the host.
    assert_eq!(
        config.credentials_for("docker.io").unwrap(),
        (basic("hub", "hubpw"), AuthSource::Helper("env".into()))
    );

    let mut with_env = Setup::new(serde_json::json!({"credsStore": "env"}), &[]);
    // env:envpw
    with_env.vars.push((
        "DOCKER_AUTH_CONFIG".into(),
        r#"{"auths":{"ghcr.io":{"auth":"ZW52OmVudnB3"}}}"#.into(),
    ));
    let config = with_env.load();
    assert_eq!(
        config.credentials_for("ghcr.io").unwrap(),
        (basic("env", "envpw"), AuthSource::Environment)
    );
    assert_eq!(
        config.credentials_for("quay.io").unwrap(),
        (RegistryAuth::Anonymous, AuthSource::None)
    );
}

#[test]
fn configure_then_resolve_through_the_helper() {
    let setup = Setup::new(
        serde_json::json!({"psFormat": "table"}),
        &[("DOCKER_reg_test_USR", "u"), ("DOCKER_reg_test_PSW", "p")],
    );
    assert_eq!(
        setup.load().credentials_for("reg.test").unwrap().1,
        AuthSource::None
    );
    let mut document = ConfigDocument::load(setup.path()).unwrap();
    document.set_cred_helper("reg.test", "env");
    document.save().unwrap();
    let saved = std::fs::read_to_string(setup.path().join("config.json")).unwrap();
    assert!(saved.contains("psFormat"), "{saved}");
    assert_eq!(
        setup.load().credentials_for("reg.test").unwrap(),
        (basic("u", "p"), AuthSource::Helper("env".into()))
    );
}
