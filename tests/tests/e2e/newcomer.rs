//! What a new user runs into first with `regkit`: pasted URLs, a docker config directory that is not
//! there, results of mixed kinds and the exit code that wins, a dry run that checks what the real run would
//! do, and `--help` per subcommand.

use std::path::Path;
use std::process::{Command, Output};

use base64::Engine;
use regkit_e2e::bins;
use regkit_e2e::images::{self, Auth};
use regkit_e2e::registry::{Options, Registry};

/// `regkit ARGS` with a clean environment, HOME and the docker config in `home`.
fn regkit(home: &Path, args: &[&str]) -> Output {
    Command::new(bins::ours("regkit"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("DOCKER_CONFIG", home)
        .args(args)
        .output()
        .unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The `status` of each JSON Lines row by reference.
fn statuses(output: &Output) -> Vec<(String, String)> {
    stdout(output)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|row| row.get("reference").is_some())
        .map(|row| {
            (
                row["reference"].as_str().unwrap().to_string(),
                row["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn a_pasted_url_works_where_its_scheme_is_the_one_regkit_uses() {
    let registry = Registry::start();
    images::push(&registry.url(), "x/app", &["v1", "v2"], &Auth::None);
    let home = tempfile::tempdir().unwrap();
    let host = registry.host();

    let deleted = regkit(home.path(), &["delete", &format!("http://{host}/x/app:v1")]);
    assert_eq!(deleted.status.code(), Some(0), "{}", stderr(&deleted));
    let listed = regkit(home.path(), &["tags", &format!("HTTP://{host}/x/app")]);
    assert_eq!(stdout(&listed).trim(), "v2", "{}", stderr(&listed));

    // TLS to a loopback address, plain HTTP to a remote host without --insecure-registry, another scheme:
    // each refused in one line that says what to write, before any request.
    for (input, expected) in [
        (
            format!("https://{host}/x/app:v2"),
            format!("e.g. {host}/x/app:v2"),
        ),
        (
            "http://registry.invalid/x/app:v2".to_string(),
            "--insecure-registry".to_string(),
        ),
        (
            format!("oci://{host}/x/app:v2"),
            "https:// or http://".to_string(),
        ),
    ] {
        let refused = regkit(home.path(), &["delete", &input]);
        assert_eq!(
            refused.status.code(),
            Some(2),
            "{input}: {}",
            stderr(&refused)
        );
        assert_eq!(stderr(&refused).lines().count(), 1, "{}", stderr(&refused));
        assert!(stderr(&refused).contains(&expected), "{}", stderr(&refused));
    }
    assert_eq!(
        images::tag_digests(&registry.url(), "x/app", &Auth::None)
            .into_keys()
            .collect::<Vec<_>>(),
        ["v2"]
    );
}

#[test]
fn a_named_docker_config_directory_must_exist_the_default_may_not() {
    let registry = Registry::start();
    images::push(&registry.url(), "x/app", &["v1"], &Auth::None);
    let home = tempfile::tempdir().unwrap();
    let repository = format!("{}/x/app", registry.host());
    let missing = home.path().join("nonexistent");

    let named = regkit(
        home.path(),
        &[
            "--docker-config",
            missing.to_str().unwrap(),
            "tags",
            &repository,
        ],
    );
    assert_eq!(named.status.code(), Some(2), "{}", stderr(&named));
    assert_eq!(stderr(&named).lines().count(), 1, "{}", stderr(&named));
    assert!(
        stderr(&named).contains("does not exist"),
        "{}",
        stderr(&named)
    );
    assert!(named.stdout.is_empty());

    // No DOCKER_CONFIG and no ~/.docker: anonymous, as docker does.
    let default = Command::new(bins::ours("regkit"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .args(["tags", &repository])
        .output()
        .unwrap();
    assert_eq!(default.status.code(), Some(0), "{}", stderr(&default));
    assert_eq!(stdout(&default).trim(), "v1");

    // configure makes the directory it is told to write into.
    let made = regkit(
        home.path(),
        &[
            "--docker-config",
            missing.to_str().unwrap(),
            "configure",
            "--registry",
            "reg.example.com",
            "--helper",
            "env",
        ],
    );
    assert_eq!(made.status.code(), Some(0), "{}", stderr(&made));
    assert!(missing.join("config.json").is_file());
}

#[test]
fn mixed_failures_exit_with_the_most_actionable_code() {
    let open = Registry::start();
    let no_deletes = Registry::start_with(Options {
        delete_enabled: false,
        ..Options::default()
    });
    let locked = Registry::start_htpasswd("alice", "right");
    images::push(&open.url(), "x/app", &["v1"], &Auth::None);
    images::push(&no_deletes.url(), "x/app", &["v1"], &Auth::None);
    images::push(
        &locked.url(),
        "x/app",
        &["v1"],
        &Auth::basic("alice", "right"),
    );
    let home = tempfile::tempdir().unwrap();
    let wrong = base64::engine::general_purpose::STANDARD.encode("alice:wrong");
    std::fs::write(
        home.path().join("config.json"),
        serde_json::json!({"auths": {locked.host(): {"auth": wrong}}}).to_string(),
    )
    .unwrap();
    let reference = |registry: &Registry| format!("{}/x/app:v1", registry.host());

    // A success and a registry that refuses deletes: 4.
    let refused = regkit(
        home.path(),
        &[
            "--output",
            "json",
            "delete",
            &reference(&open),
            &reference(&no_deletes),
        ],
    );
    assert_eq!(refused.status.code(), Some(4), "{}", stderr(&refused));
    // The same with an authentication failure too: 3 wins, whatever the order.
    images::push(&open.url(), "x/app", &["v1"], &Auth::None);
    let all = regkit(
        home.path(),
        &[
            "--output",
            "json",
            "delete",
            &reference(&no_deletes),
            &reference(&open),
            &reference(&locked),
        ],
    );
    assert_eq!(all.status.code(), Some(3), "{}", stderr(&all));
    let mut seen: Vec<String> = statuses(&all)
        .into_iter()
        .map(|(_, status)| status)
        .collect();
    seen.sort();
    assert_eq!(seen, ["deleted", "failed", "failed"], "{}", stdout(&all));
}

#[test]
fn a_dry_run_gives_the_rows_and_exit_code_of_the_real_run() {
    let no_deletes = Registry::start_with(Options {
        delete_enabled: false,
        ..Options::default()
    });
    images::push(&no_deletes.url(), "x/app", &["v1", "v2"], &Auth::None);
    let open = Registry::start();
    images::push(&open.url(), "x/app", &["v1"], &Auth::None);
    let home = tempfile::tempdir().unwrap();
    let reference = format!("{}/x/app:v1", no_deletes.host());
    let repository = format!("{}/x/app", no_deletes.host());

    for dry_run in [true, false] {
        let mut args = vec!["--output", "json"];
        args.extend(dry_run.then_some("--dry-run"));
        let deleted = regkit(home.path(), &[&args[..], &["delete", &reference]].concat());
        assert_eq!(
            deleted.status.code(),
            Some(4),
            "dry run {dry_run}: {}",
            stderr(&deleted)
        );
        assert_eq!(
            statuses(&deleted),
            [(reference.clone(), "failed".to_string())]
        );
        let cleaned = regkit(
            home.path(),
            &[
                &args[..],
                &["cleanup", &repository, "--match", "^v1$", "--yes"],
            ]
            .concat(),
        );
        assert_eq!(
            cleaned.status.code(),
            Some(4),
            "dry run {dry_run}: {}",
            stderr(&cleaned)
        );
    }

    // A digest that does not exist is absent in both runs; one that does is planned.
    let missing = format!("{}/x/app@sha256:{}", open.host(), "ab".repeat(32));
    let present = images::tag_digests(&open.url(), "x/app", &Auth::None)["v1"].clone();
    let present = format!("{}/x/app@{present}", open.host());
    let planned = regkit(
        home.path(),
        &[
            "--output",
            "json",
            "--dry-run",
            "delete",
            &missing,
            &present,
        ],
    );
    assert_eq!(planned.status.code(), Some(0), "{}", stderr(&planned));
    assert_eq!(
        statuses(&planned),
        [
            (missing, "absent".to_string()),
            (present, "planned".to_string())
        ]
    );
    assert_eq!(
        images::tag_digests(&open.url(), "x/app", &Auth::None).len(),
        1
    );
}

#[test]
fn an_unreachable_registry_fails_in_seconds_and_verbose_shows_each_retry() {
    let home = tempfile::tempdir().unwrap();
    // Nothing listens on the port: refused on loopback cannot pass on retry, so no retry.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let started = std::time::Instant::now();
    let refused = regkit(
        home.path(),
        &["-v", "tags", &format!("127.0.0.1:{port}/x/app")],
    );
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    assert!(
        !stderr(&refused).contains("retrying"),
        "{}",
        stderr(&refused)
    );
    assert!(started.elapsed().as_secs() < 30, "{:?}", started.elapsed());
    // A delete's error names the tag asked for, not the request regkit made first to check delete rights.
    let reference = format!("127.0.0.1:{port}/x/app:v1");
    let delete = regkit(home.path(), &["delete", &reference]);
    assert_eq!(delete.status.code(), Some(1), "{}", stderr(&delete));
    let error = stderr(&delete);
    assert!(error.contains(&format!("DELETE {reference}: ")), "{error}");
    assert!(!error.contains("sha256:0000"), "{error}");

    // A server that accepts and hangs up at once: a few quick retries, each shown with its wait.
    let hangs_up = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = hangs_up.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in hangs_up.incoming() {
            drop(stream);
        }
    });
    let started = std::time::Instant::now();
    let reset = regkit(home.path(), &["-v", "tags", &format!("{address}/x/app")]);
    assert_eq!(reset.status.code(), Some(1), "{}", stderr(&reset));
    let retries: Vec<String> = stderr(&reset)
        .lines()
        .filter(|line| line.contains("retrying in"))
        .map(str::to_string)
        .collect();
    assert!(
        !retries.is_empty() && retries.len() <= 3,
        "{}",
        stderr(&reset)
    );
    assert!(
        retries[0].starts_with(&format!("regkit: http://{address}/v2/")),
        "{retries:?}"
    );
    assert!(started.elapsed().as_secs() < 30, "{:?}", started.elapsed());
}

#[test]
fn configure_quiet_prints_nothing_and_help_words_fit_every_subcommand() {
    let home = tempfile::tempdir().unwrap();
    let args = [
        "configure",
        "--registry",
        "reg.example.com",
        "--helper",
        "env",
    ];
    let quiet = regkit(home.path(), &[&["-q"][..], &args].concat());
    assert_eq!(quiet.status.code(), Some(0), "{}", stderr(&quiet));
    assert_eq!(stdout(&quiet), "");
    assert!(home.path().join("config.json").is_file());
    let again = regkit(home.path(), &args);
    assert!(
        stdout(&again).contains("already up to date"),
        "{}",
        stdout(&again)
    );

    let help = stdout(&regkit(home.path(), &["configure", "--help"]));
    assert!(!help.contains("Show what would be deleted"), "{help}");
    assert!(help.contains("the diff configure would write"), "{help}");
    assert!(
        !help.contains("one object per tag, then a summary)"),
        "{help}"
    );
    let options = |command: &str| {
        let help = stdout(&regkit(home.path(), &[command, "--help"]));
        let names: Vec<String> = help
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter(|word| word.starts_with("--"))
            .map(str::to_string)
            .collect();
        (help, names)
    };
    let has = |names: &[String], option: &str| names.iter().any(|name| name == option);
    let (help, names) = options("configure");
    for absent in ["--output", "--parallel", "--ca-file", "--repo-github-token"] {
        assert!(!has(&names, absent), "configure lists {absent}: {help}");
    }
    assert!(has(&names, "--dry-run"), "{help}");
    for command in ["tags", "detect", "doctor", "in-use", "ci-env"] {
        let (help, names) = options(command);
        assert!(
            !has(&names, "--dry-run"),
            "{command} lists --dry-run: {help}"
        );
    }
    let (help, names) = options("in-use");
    for absent in [
        "--ca-file",
        "--insecure-registry",
        "--parallel",
        "--repo-github-token",
    ] {
        assert!(!has(&names, absent), "in-use lists {absent}: {help}");
    }
    assert!(help.contains("one object per image in use"), "{help}");
    let (help, names) = options("tags");
    assert!(help.contains("one object per tag;"), "{help}");
    assert!(
        has(&names, "--parallel") && has(&names, "--repo-github-token"),
        "{help}"
    );
    for command in ["delete", "cleanup"] {
        let (help, names) = options(command);
        for present in [
            "--dry-run",
            "--output",
            "--parallel",
            "--max-rps",
            "--timeout",
            "--ca-file",
        ] {
            assert!(has(&names, present), "{command} lacks {present}: {help}");
        }
        assert!(
            help.contains("the exit code the real run would give"),
            "{help}"
        );
    }
    // Given before the subcommand they still parse, as scripts write them; after it only where they apply.
    let before = regkit(
        home.path(),
        &["--dry-run", "--output", "json", "configure", "--help"],
    );
    assert_eq!(before.status.code(), Some(0), "{}", stderr(&before));
    let misplaced = regkit(home.path(), &["tags", "127.0.0.1:1/x/app", "--dry-run"]);
    assert_eq!(misplaced.status.code(), Some(2), "{}", stderr(&misplaced));
    assert!(
        stderr(&misplaced).contains("--dry-run"),
        "{}",
        stderr(&misplaced)
    );
}
