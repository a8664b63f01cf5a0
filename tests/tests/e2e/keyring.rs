//! `docker-credential-keyring` against a real gnome-keyring on a private session bus: the protocol vectors,
//! interop both ways with Debian's `docker-credential-secretservice`, failure lines, and the docker CLI and
//! skopeo driving it against a real htpasswd registry.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use regkit_e2e::dbus::Session;
use regkit_e2e::process::{Run, run_with_stdin};
use regkit_e2e::registry::Registry;
use regkit_e2e::{bins, images};

const NOT_FOUND: &str = "credentials not found in native keychain\n";
/// Every secret in this file starts with it; no stderr of any call may contain it.
const CANARY: &str = "canary-5e2f";

/// Runs `command` with `stdin`, asserting that no secret reached stderr.
fn run(mut command: Command, stdin: &str) -> Run {
    run_with_stdin(&mut command, stdin, CANARY)
}

fn ours() -> PathBuf {
    bins::ours("docker-credential-keyring")
}

fn peer() -> PathBuf {
    bins::tool(
        "docker-credential-secretservice",
        "golang-docker-credential-helpers",
    )
}

fn call(session: &Session, helper: &Path, action: &str, stdin: &str) -> Run {
    let mut command = session.command(helper);
    command.arg(action);
    run(command, stdin)
}

fn store(session: &Session, helper: &Path, server: &str, username: &str, secret: &str) {
    let input = serde_json::json!({"ServerURL": server, "Username": username, "Secret": secret});
    let result = call(session, helper, "store", &input.to_string());
    assert_eq!(
        (result.code, result.stdout.as_str()),
        (0, ""),
        "store {server}"
    );
}

/// `(username, secret)` from a successful `get`, checking the answer names the key that was asked for.
fn get(session: &Session, helper: &Path, key: &str) -> (String, String) {
    let result = call(session, helper, "get", key);
    assert_eq!(result.code, 0, "get {key}: {}", result.stdout);
    assert!(result.stdout.ends_with('\n'));
    let answer: serde_json::Value = serde_json::from_str(&result.stdout).expect("get answers JSON");
    assert_eq!(answer["ServerURL"], key);
    (
        answer["Username"].as_str().expect("Username").to_owned(),
        answer["Secret"].as_str().expect("Secret").to_owned(),
    )
}

fn list(session: &Session, helper: &Path) -> BTreeMap<String, String> {
    let result = call(session, helper, "list", "unused");
    assert_eq!(result.code, 0, "list: {}", result.stdout);
    serde_json::from_str(&result.stdout).expect("list answers JSON")
}

fn assert_not_found(session: &Session, helper: &Path, key: &str) {
    let result = call(session, helper, "get", key);
    assert_eq!(
        (result.code, result.stdout.as_str()),
        (1, NOT_FOUND),
        "get {key}"
    );
}

/// How many items the keyring holds for `server` (docker's marker set), whoever wrote them.
fn items_for(session: &Session, server: &str) -> usize {
    let output = session.dbus_send(&[
        "--dest=org.freedesktop.secrets",
        "/org/freedesktop/secrets",
        "org.freedesktop.Secret.Service.SearchItems",
        &format!("dict:string:string:server,{server},docker_cli,1"),
    ]);
    assert!(output.status.success(), "SearchItems failed");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| line.trim_start().starts_with("object path"))
        .count()
}

#[test]
fn protocol_vectors_round_trip() {
    let session = Session::start();
    let helper = ours();
    assert_eq!(call(&session, &helper, "list", "unused").stdout, "{}\n");
    let keys = [
        "https://index.docker.io/v1/",
        "https://index.docker.io/v1/access-token",
        "https://index.docker.io/v1/refresh-token",
        "docker.io",
        "localhost:5000",
        "http://h",
        "https://h",
        "[::1]:5000",
    ];
    for (i, key) in keys.iter().enumerate() {
        store(
            &session,
            &helper,
            key,
            &format!("user{i}"),
            &format!("{CANARY}-{i}"),
        );
    }
    for (i, key) in keys.iter().enumerate() {
        assert_eq!(
            get(&session, &helper, key),
            (format!("user{i}"), format!("{CANARY}-{i}"))
        );
    }
    let expected: BTreeMap<String, String> = keys
        .iter()
        .enumerate()
        .map(|(i, key)| (key.to_string(), format!("user{i}")))
        .collect();
    assert_eq!(list(&session, &helper), expected);
    for key in keys {
        assert_eq!(call(&session, &helper, "erase", key).code, 0);
    }
    for key in keys {
        assert_not_found(&session, &helper, key);
    }
    assert_eq!(call(&session, &helper, "list", "unused").stdout, "{}\n");
}

#[test]
fn identity_token_and_escaping_round_trip() {
    let session = Session::start();
    let helper = ours();
    let result = call(
        &session,
        &helper,
        "store",
        &format!(
            "{{\"ServerURL\":\"127.0.0.1:5104\",\"Username\":\"\\u003ctoken\\u003e\",\"Secret\":\"{CANARY}&<x>\"}}\n"
        ),
    );
    assert_eq!(result.code, 0, "{}", result.stdout);
    let result = call(&session, &helper, "get", "127.0.0.1:5104\n");
    assert_eq!(
        result.stdout,
        format!(
            "{{\"ServerURL\":\"127.0.0.1:5104\",\"Username\":\"\\u003ctoken\\u003e\",\"Secret\":\"{CANARY}\\u0026\\u003cx\\u003e\"}}\n"
        )
    );
}

#[test]
fn store_replaces_and_erase_is_idempotent() {
    let session = Session::start();
    let helper = ours();
    store(&session, &helper, "reg.test", "u1", &format!("{CANARY}-1"));
    store(&session, &helper, "reg.test", "u2", &format!("{CANARY}-2"));
    assert_eq!(items_for(&session, "reg.test"), 1);
    assert_eq!(
        get(&session, &helper, "reg.test"),
        ("u2".into(), format!("{CANARY}-2"))
    );
    store(&session, &helper, "reg.test", "u2", &format!("{CANARY}-3"));
    assert_eq!(items_for(&session, "reg.test"), 1);
    assert_eq!(get(&session, &helper, "reg.test").1, format!("{CANARY}-3"));
    for _ in 0..2 {
        let result = call(&session, &helper, "erase", "reg.test");
        assert_eq!((result.code, result.stdout.as_str()), (0, ""));
    }
    assert_eq!(items_for(&session, "reg.test"), 0);
    let result = call(&session, &helper, "erase", "never-stored.test");
    assert_eq!((result.code, result.stdout.as_str()), (0, ""));
}

#[test]
fn get_falls_back_to_host_forms_and_docker_hub_aliases() {
    let session = Session::start();
    let helper = ours();
    store(
        &session,
        &helper,
        "reg.test:5000",
        "alice",
        &format!("{CANARY}-a"),
    );
    store(
        &session,
        &helper,
        "https://index.docker.io/v1/",
        "hub",
        &format!("{CANARY}-h"),
    );
    for key in [
        "https://reg.test:5000",
        "http://reg.test:5000/",
        "https://reg.test:5000/v2/",
    ] {
        assert_eq!(get(&session, &helper, key).0, "alice", "{key}");
    }
    for key in [
        "docker.io",
        "index.docker.io",
        "registry-1.docker.io",
        "https://registry-1.docker.io",
    ] {
        assert_eq!(get(&session, &helper, key).0, "hub", "{key}");
    }
    // Exact keys win over fallbacks, and OAuth token keys never fall back to the password.
    store(
        &session,
        &helper,
        "docker.io",
        "podman",
        &format!("{CANARY}-p"),
    );
    assert_eq!(get(&session, &helper, "docker.io").0, "podman");
    assert_eq!(
        get(&session, &helper, "https://index.docker.io/v1/").0,
        "hub"
    );
    assert_not_found(&session, &helper, "https://index.docker.io/v1/access-token");
    assert_not_found(&session, &helper, "reg.test");
    assert_not_found(&session, &helper, "reg.test:5000/team/app");
}

#[test]
fn peer_reads_lists_and_erases_ours() {
    let session = Session::start();
    let (helper, peer) = (ours(), peer());
    store(
        &session,
        &helper,
        "https://reg.test",
        "alice",
        &format!("{CANARY}-1"),
    );
    store(
        &session,
        &helper,
        "127.0.0.1:5103",
        "<token>",
        &format!("{CANARY}-2"),
    );
    assert_eq!(
        get(&session, &peer, "https://reg.test"),
        ("alice".into(), format!("{CANARY}-1"))
    );
    assert_eq!(
        get(&session, &peer, "127.0.0.1:5103"),
        ("<token>".into(), format!("{CANARY}-2"))
    );
    assert_eq!(
        list(&session, &peer),
        BTreeMap::from([
            ("127.0.0.1:5103".into(), "<token>".into()),
            ("https://reg.test".into(), "alice".into())
        ])
    );
    assert_eq!(call(&session, &peer, "erase", "https://reg.test").code, 0);
    assert_not_found(&session, &helper, "https://reg.test");
    assert_eq!(items_for(&session, "https://reg.test"), 0);
}

#[test]
fn ours_reads_lists_and_erases_the_peers() {
    let session = Session::start();
    let (helper, peer) = (ours(), peer());
    store(
        &session,
        &peer,
        "https://reg.test",
        "alice",
        &format!("{CANARY}-1"),
    );
    store(&session, &peer, "docker.io", "bob", &format!("{CANARY}-2"));
    assert_eq!(
        get(&session, &helper, "https://reg.test"),
        ("alice".into(), format!("{CANARY}-1"))
    );
    assert_eq!(get(&session, &helper, "registry-1.docker.io").0, "bob");
    assert_eq!(
        list(&session, &helper),
        BTreeMap::from([
            ("docker.io".into(), "bob".into()),
            ("https://reg.test".into(), "alice".into())
        ])
    );
    // The peer leaves one item per username; our store replaces them all.
    store(
        &session,
        &peer,
        "https://reg.test",
        "carol",
        &format!("{CANARY}-3"),
    );
    assert_eq!(items_for(&session, "https://reg.test"), 2);
    store(
        &session,
        &helper,
        "https://reg.test",
        "dave",
        &format!("{CANARY}-4"),
    );
    assert_eq!(items_for(&session, "https://reg.test"), 1);
    assert_eq!(get(&session, &peer, "https://reg.test").0, "dave");
    assert_eq!(call(&session, &helper, "erase", "docker.io").code, 0);
    assert_not_found(&session, &peer, "docker.io");
}

#[test]
fn get_answers_with_the_peers_newest_item_when_it_left_two() {
    let session = Session::start();
    let (helper, peer) = (ours(), peer());
    // The peer keeps one item per username: a re-login as someone else leaves the stale item beside the
    // new one, usually within the same second (the resolution of the items' `Modified`).
    for round in 0..5 {
        let (old, new) = (format!("old{round}"), format!("new{round}"));
        store(
            &session,
            &peer,
            "reg.test",
            &old,
            &format!("{CANARY}-{old}"),
        );
        store(
            &session,
            &peer,
            "reg.test",
            &new,
            &format!("{CANARY}-{new}"),
        );
        assert_eq!(items_for(&session, "reg.test"), 2);
        for _ in 0..4 {
            assert_eq!(
                get(&session, &helper, "reg.test"),
                (new.clone(), format!("{CANARY}-{new}")),
                "round {round}"
            );
        }
        // Our store leaves one item for the server, whoever wrote the others.
        store(
            &session,
            &helper,
            "reg.test",
            &new,
            &format!("{CANARY}-{new}"),
        );
        assert_eq!(items_for(&session, "reg.test"), 1);
        assert_eq!(call(&session, &helper, "erase", "reg.test").code, 0);
    }
}

/// Runs every action and checks it prints exactly one line containing `needle`, exits 1, and is quick.
fn assert_clear_failure(mut command: impl FnMut() -> Command, needle: &str) {
    let store_input = format!("{{\"ServerURL\":\"h\",\"Username\":\"u\",\"Secret\":\"{CANARY}\"}}");
    for (action, stdin) in [
        ("get", "h"),
        ("store", store_input.as_str()),
        ("erase", "h"),
        ("list", ""),
    ] {
        let start = Instant::now();
        let mut cmd = command();
        cmd.arg(action);
        let result = run(cmd, stdin);
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{action} was slow"
        );
        assert_eq!(result.code, 1, "{action}: {}", result.stdout);
        assert_eq!(
            result.stdout.lines().count(),
            1,
            "{action}: {}",
            result.stdout
        );
        assert!(
            result.stdout.starts_with("docker-credential-keyring: "),
            "{}",
            result.stdout
        );
        assert!(
            result.stdout.contains(needle),
            "{action}: {}",
            result.stdout
        );
        assert!(!result.stdout.contains("X11"), "{}", result.stdout);
    }
}

#[test]
fn no_session_bus_is_one_clear_line() {
    let empty_runtime = tempfile::tempdir().unwrap();
    assert_clear_failure(
        || {
            let mut command = Command::new(ours());
            command
                .env_remove("DBUS_SESSION_BUS_ADDRESS")
                .env_remove("DISPLAY")
                .env("XDG_RUNTIME_DIR", empty_runtime.path());
            command
        },
        "no D-Bus session bus (DBUS_SESSION_BUS_ADDRESS is unset): run inside a desktop session or `dbus-run-session`",
    );
    let missing = empty_runtime.path().join("no-such-bus");
    assert_clear_failure(
        || {
            let mut command = Command::new(ours());
            command.env(
                "DBUS_SESSION_BUS_ADDRESS",
                format!("unix:path={}", missing.display()),
            );
            command
        },
        "cannot connect to the D-Bus session bus",
    );
}

#[test]
fn bus_without_provider_is_one_clear_line() {
    let session = Session::start_without_keyring();
    assert_clear_failure(|| session.command(ours()), "no Secret Service provider");
}

#[test]
fn locked_keyring_is_one_clear_line() {
    let session = Session::start();
    let helper = ours();
    store(&session, &helper, "h", "u", &format!("{CANARY}-1"));
    session.lock();
    assert_clear_failure(|| session.command(&helper), "the keyring is locked");
}

#[test]
fn plain_session_is_an_opt_in_that_interoperates() {
    let session = Session::start();
    let helper = ours();
    let with_plain = |action: &str, stdin: &str| {
        let mut command = session.command(&helper);
        command.env("REGKIT_KEYRING_PLAIN_SESSION", "1").arg(action);
        run(command, stdin)
    };
    let input = format!("{{\"ServerURL\":\"h\",\"Username\":\"u\",\"Secret\":\"{CANARY}-p\"}}");
    assert_eq!(with_plain("store", &input).code, 0);
    assert!(
        with_plain("get", "h")
            .stdout
            .contains(&format!("{CANARY}-p"))
    );
    assert_eq!(get(&session, &helper, "h").1, format!("{CANARY}-p"));
    assert_eq!(get(&session, &peer(), "h").1, format!("{CANARY}-p"));
}

/// Everything `dbus-monitor` saw on the session bus while `action` ran, with all whitespace removed (byte
/// arrays print as hex pairs wrapped over lines).
fn monitored(session: &Session, action: impl FnOnce()) -> String {
    let monitor = bins::tool("dbus-monitor", "dbus-bin");
    let mut child = session
        .command(monitor)
        .arg("--session")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (ready, started) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        for line in BufReader::new(stdout).lines() {
            let _ = ready.send(());
            text.extend(line.unwrap().chars().filter(|c| !c.is_whitespace()));
            text.push('|');
        }
        text
    });
    // Its first line (NameAcquired) shows it is listening.
    started
        .recv_timeout(Duration::from_secs(10))
        .expect("dbus-monitor started");
    action();
    // The last replies were read by the helper, so the bus has already copied them to the monitor.
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    reader.join().unwrap()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn secrets_cross_the_bus_encrypted_unless_plain_is_opted_in() {
    let session = Session::start();
    let helper = ours();
    // Non-ASCII, so dbus-monitor prints the bytes as hex; the text form is checked too.
    let secret = format!("{CANARY}-wire-\u{e9}\u{2713}");
    let leaked = |log: &str| log.contains(&hex(secret.as_bytes())) || log.contains(&secret);
    let encrypted = monitored(&session, || {
        store(&session, &helper, "wire.test", "u", &secret);
        assert_eq!(get(&session, &helper, "wire.test").1, secret);
        assert_eq!(get(&session, &peer(), "wire.test").1, secret);
    });
    assert!(
        encrypted.contains("string\"dh-ietf1024-sha256-aes128-cbc-pkcs7\""),
        "no DH session was opened"
    );
    assert!(!encrypted.contains("string\"plain\""));
    assert!(!leaked(&encrypted), "a secret crossed the bus in clear");
    // The check above can fail: with the opt-in, the same secret is visible on the bus.
    let plain = monitored(&session, || {
        let mut command = session.command(&helper);
        command.env("REGKIT_KEYRING_PLAIN_SESSION", "1").arg("get");
        assert_eq!(run(command, "wire.test").code, 0);
    });
    assert!(leaked(&plain), "the monitor did not show the plain secret");
}

#[test]
fn non_ascii_and_block_sized_secrets_interoperate_over_dh() {
    let session = Session::start();
    let (helper, peer) = (ours(), peer());
    // AES-CBC pads to 16-byte blocks: one byte short of, exactly at and one over a block boundary, a
    // multi-block secret beyond Windows' 2560-byte limit, and non-ASCII text in both fields.
    let secrets = [
        format!("{CANARY}-1234"),
        format!("{CANARY}-12345"),
        format!("{CANARY}-123456"),
        format!("{CANARY}-{}", "\u{1F511}x".repeat(1200)),
        format!("{CANARY}-p\u{e4}ss w\u{f6}rd \"\\ <&> \u{7f}"),
    ];
    for (i, secret) in secrets.iter().enumerate() {
        let (by_us, by_peer) = (format!("us{i}.test"), format!("peer{i}.test"));
        let username = format!("\u{fc}ser-{i}");
        store(&session, &helper, &by_us, &username, secret);
        store(&session, &peer, &by_peer, &username, secret);
        for (reader, key) in [(&peer, &by_us), (&helper, &by_peer), (&helper, &by_us)] {
            assert_eq!(
                get(&session, reader, key),
                (username.clone(), secret.clone()),
                "{key} read by {}",
                reader.display()
            );
        }
    }
}

#[test]
fn concurrent_writers_leave_one_entry_per_server() {
    let session = Session::start();
    let helper = ours();
    let servers = ["a.test", "b.test", "c.test", "d.test"];
    std::thread::scope(|scope| {
        for i in 0..32 {
            let (session, helper) = (&session, &helper);
            let server = servers[i % servers.len()];
            scope.spawn(move || {
                let user = format!("user{i}");
                store(session, helper, server, &user, &format!("{CANARY}-{i}"));
                let result = call(session, helper, "get", server);
                assert!(
                    result.code == 0 || result.stdout == NOT_FOUND,
                    "{}",
                    result.stdout
                );
                if i % 8 == 7 {
                    let erased = call(session, helper, "erase", server);
                    assert_eq!(erased.code, 0, "{}", erased.stdout);
                }
            });
        }
    });
    for server in servers {
        assert!(items_for(&session, server) <= 1, "{server}");
    }
    let listed = list(&session, &helper);
    for (server, user) in &listed {
        assert_eq!(&get(&session, &helper, server).0, user);
    }
}

/// A docker config dir whose `config.json` is `config`, and the PATH that puts our helper first.
fn docker_env(config: serde_json::Value) -> (tempfile::TempDir, std::ffi::OsString) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    let mut paths = vec![bins::target_dir()];
    paths.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    (dir, std::env::join_paths(paths).unwrap())
}

#[test]
fn docker_cli_logs_in_pulls_and_logs_out_through_the_keyring() {
    let docker = bins::tool("docker", "docker-ce-cli");
    let password = format!("{CANARY}-registry");
    let registry = Registry::start_htpasswd("alice", &password);
    let host = registry.host().to_owned();
    images::push(
        &registry.url(),
        "repo",
        &["v1"],
        &images::Auth::basic("alice", &password),
    );
    for config in [
        serde_json::json!({"credsStore": "keyring"}),
        serde_json::json!({"credHelpers": {host.clone(): "keyring"}}),
    ] {
        let session = Session::start();
        let (config_dir, path) = docker_env(config.clone());
        let docker_command = |args: &[&str]| {
            let mut command = session.command(&docker);
            command
                .env("DOCKER_CONFIG", config_dir.path())
                .env("PATH", &path)
                .env_remove("DOCKER_HOST")
                .args(args);
            command
        };
        let inspect = || {
            run(
                docker_command(&[
                    "manifest",
                    "inspect",
                    "--insecure",
                    &format!("{host}/repo:v1"),
                ]),
                "",
            )
        };
        assert_ne!(inspect().code, 0, "{config}: anonymous access must fail");
        let login = run(
            docker_command(&["login", &host, "-u", "alice", "--password-stdin"]),
            &password,
        );
        assert_eq!(login.code, 0, "{config}: {}", login.stdout);
        assert_eq!(
            get(&session, &ours(), &host),
            ("alice".into(), password.clone())
        );
        let saved = std::fs::read_to_string(config_dir.path().join("config.json")).unwrap();
        assert!(!saved.contains(CANARY), "{saved}");
        let inspected = inspect();
        assert_eq!(inspected.code, 0, "{config}: {}", inspected.stdout);
        assert!(
            inspected.stdout.contains("schemaVersion"),
            "{}",
            inspected.stdout
        );
        assert_eq!(run(docker_command(&["logout", &host]), "").code, 0);
        assert_eq!(list(&session, &ours()), BTreeMap::new());
    }
}

#[test]
fn skopeo_logs_in_and_lists_tags_through_cred_helpers() {
    let skopeo = bins::tool("skopeo", "skopeo");
    let password = format!("{CANARY}-registry");
    let registry = Registry::start_htpasswd("alice", &password);
    let host = registry.host().to_owned();
    images::push(
        &registry.url(),
        "repo",
        &["v1", "v2"],
        &images::Auth::basic("alice", &password),
    );
    let session = Session::start();
    let (config_dir, path) =
        docker_env(serde_json::json!({"credHelpers": {host.clone(): "keyring"}}));
    let auth_file = config_dir.path().join("config.json");
    let skopeo_command = |args: &[&str]| {
        let mut command = session.command(&skopeo);
        command
            .env("REGISTRY_AUTH_FILE", &auth_file)
            .env("PATH", &path)
            .args(args);
        command
    };
    let list_tags = || {
        run(
            skopeo_command(&[
                "list-tags",
                "--tls-verify=false",
                &format!("docker://{host}/repo"),
            ]),
            "",
        )
    };
    assert_ne!(list_tags().code, 0, "anonymous access must fail");
    let login = run(
        skopeo_command(&[
            "login",
            "--tls-verify=false",
            "-u",
            "alice",
            "--password-stdin",
            &host,
        ]),
        &password,
    );
    assert_eq!(login.code, 0, "{}", login.stdout);
    let tags = list_tags();
    assert_eq!(tags.code, 0, "{}", tags.stdout);
    let tags: serde_json::Value = serde_json::from_str(&tags.stdout).unwrap();
    let mut tags: Vec<&str> = tags["Tags"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t.as_str())
        .collect();
    tags.sort();
    assert_eq!(tags, ["v1", "v2"]);
    assert_eq!(run(skopeo_command(&["logout", &host]), "").code, 0);
    assert_not_found(&session, &ours(), &host);
}
