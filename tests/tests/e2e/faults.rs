//! `regkit delete` (500 tags) and `regkit cleanup` against a real registry behind the fault proxy:
//! connection resets before and after the registry acted, stalls past the client timeout, 503 and 429
//! bursts with and without `Retry-After`, truncated bodies, and the registry killed and restarted mid-run.
//!
//! After each faulted run: it completed, or it exited non-zero naming what failed; not one tag outside the
//! requested set changed (full tag → digest maps); a rerun without faults converges to exactly "before
//! minus requested". Each scenario prints one `FAULTS` line with its figures (README "How we test").

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use regkit_e2e::bins::{self, regkit_piped as regkit};
use regkit_e2e::faultproxy::{self, Fault, FaultProxy, Rule};
use regkit_e2e::images::{self, Auth};
use regkit_e2e::registry::{Options, Registry};
use tempfile::TempDir;

const REPO: &str = "faults/app";
/// Tags the runs delete: 500, of which the first 50 share their image with a kept tag.
const DELETED: usize = 500;
const SHARED: usize = 50;
/// Tags that must survive every run: 50 sharing an image with a deleted tag, 50 on their own images.
const KEPT: usize = 100;

/// A registry data directory seeded once; each scenario runs on a copy.
struct Seed {
    dir: TempDir,
    before: BTreeMap<String, String>,
}

fn seed() -> &'static Seed {
    static SEED: OnceLock<Seed> = OnceLock::new();
    SEED.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let registry = Registry::start_with(Options {
            data_dir: Some(data),
            ..Options::default()
        });
        let url = registry.url();
        // Shared images: deleting del-i must leave keep-i (same digest) in place. Sequential: parallel
        // pushes of the same config blob into one repository race in the registry.
        for i in 0..SHARED {
            images::push(
                &url,
                REPO,
                &[&format!("del-{i:03}"), &format!("keep-{i:03}")],
                &Auth::None,
            );
        }
        let own: Vec<String> = (SHARED..DELETED)
            .map(|i| format!("del-{i:03}"))
            .chain((SHARED..KEPT).map(|i| format!("keep-{i:03}")))
            .collect();
        let own: Vec<&str> = own.iter().map(String::as_str).collect();
        images::push_distinct(&url, REPO, &own, &Auth::None);
        let before = images::tag_digests(&url, REPO, &Auth::None);
        assert_eq!(before.len(), DELETED + KEPT);
        Seed { dir, before }
    })
}

/// A registry over a fresh copy of the seeded data, and the directory that holds it.
fn seeded_registry() -> (Registry, TempDir) {
    let seed = seed();
    let copy = tempfile::tempdir().unwrap();
    let status = Command::new("cp")
        .arg("-a")
        .arg(seed.dir.path().join("data"))
        .arg(copy.path())
        .status()
        .unwrap();
    assert!(status.success(), "copy the seeded registry data");
    let registry = Registry::start_with(Options {
        data_dir: Some(copy.path().join("data")),
        ..Options::default()
    });
    (registry, copy)
}

fn requested() -> Vec<String> {
    (0..DELETED).map(|i| format!("del-{i:03}")).collect()
}

#[derive(Clone, Copy)]
enum Run {
    Delete,
    Cleanup,
}

fn run(kind: Run, proxy: &FaultProxy, config: &Path) -> Output {
    match kind {
        Run::Delete => {
            let refs: String = requested()
                .iter()
                .map(|tag| format!("{}/{REPO}:{tag}\n", proxy.host()))
                .collect();
            regkit(config, &["--output", "json", "delete", "--stdin"], &refs)
        }
        Run::Cleanup => regkit(
            config,
            &[
                "--output",
                "json",
                "cleanup",
                "--yes",
                "--match",
                "^del-",
                &format!("{}/{REPO}", proxy.host()),
            ],
            "",
        ),
    }
}

/// The registry's tags now, read straight from it (not through the proxy).
fn now(registry: &Registry) -> BTreeMap<String, String> {
    images::tag_digests(&registry.url(), REPO, &Auth::None)
}

fn kept(map: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    map.iter()
        .filter(|(tag, _)| tag.starts_with("keep-"))
        .map(|(tag, digest)| (tag.clone(), digest.clone()))
        .collect()
}

/// Runs one scenario: the faulted run, the checks, the rerun without faults, the final comparison.
/// `restart_after` kills the registry once the proxy has seen that many requests.
fn scenario(name: &str, kind: Run, rules: Vec<Rule>, restart_after: Option<usize>) {
    let seed = seed();
    let (registry, data) = seeded_registry();
    let config = tempfile::tempdir().unwrap();
    std::fs::write(config.path().join("config.json"), "{}").unwrap();
    let proxy = FaultProxy::start(registry.host());
    proxy.set_rules(rules);
    let started = Instant::now();
    let (output, registry) = match restart_after {
        Some(after) => {
            let restarter = faultproxy::restart_registry_after(
                &proxy,
                registry,
                data.path().join("data"),
                after,
                Duration::from_secs(2),
            );
            let output = run(kind, &proxy, config.path());
            (output, restarter.join().unwrap())
        }
        None => (run(kind, &proxy, config.path()), registry),
    };
    let elapsed = started.elapsed();
    let injected = proxy.injected();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!injected.is_empty(), "{name}: no fault was injected");
    let code = output.status.code();
    assert!(
        code.is_some(),
        "{name}: regkit was killed by a signal: {stderr}"
    );
    if code != Some(0) {
        // A failed run says what failed: a per-tag failure in the report or a message on stderr.
        let named = stdout.lines().any(|line| line.contains("\"failed\""))
            || stderr.contains(REPO)
            || stderr.contains(proxy.host());
        assert!(
            named,
            "{name}: exit {code:?} without naming what failed\nstdout: {stdout}\nstderr: {stderr}"
        );
    }
    assert!(
        !stderr.contains("panicked"),
        "{name}: regkit panicked: {stderr}"
    );
    let after_fault = now(&registry);
    assert_eq!(
        kept(&after_fault),
        kept(&seed.before),
        "{name}: a tag outside the requested set changed under faults\nstderr: {stderr}"
    );
    // Rerun without faults: converges to exactly the kept tags.
    proxy.set_rules(Vec::new());
    let rerun = run(kind, &proxy, config.path());
    assert_eq!(
        rerun.status.code(),
        Some(0),
        "{name}: the rerun did not converge\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&rerun.stdout),
        String::from_utf8_lossy(&rerun.stderr)
    );
    let after = now(&registry);
    assert_eq!(after, kept(&seed.before), "{name}: final tags");
    println!(
        "FAULTS scenario={name:?} injected={} requests={} exit={} rerun=0 seconds={} tags_lost=0 first_error={:?} faults={:?}",
        injected.len(),
        proxy.requests(),
        code.unwrap_or(-1),
        elapsed.as_secs(),
        stderr.lines().next().unwrap_or(""),
        &injected[..injected.len().min(3)],
    );
}

#[test]
fn delete_survives_resets_before_and_after_the_registry_acts() {
    scenario(
        "delete resets",
        Run::Delete,
        vec![
            Rule::new(Fault::ResetAfterForward)
                .method("DELETE")
                .every(9)
                .times(30),
            Rule::new(Fault::Reset).skip(3).every(7).times(60),
        ],
        None,
    );
}

#[test]
fn delete_survives_503_and_429_bursts() {
    scenario(
        "delete 503/429 bursts",
        Run::Delete,
        vec![
            Rule::new(Fault::Status {
                code: 503,
                retry_after: Some("1".into()),
            })
            .skip(20)
            .times(40),
            Rule::new(Fault::Status {
                code: 429,
                retry_after: None,
            })
            .method("DELETE")
            .skip(100)
            .times(40),
            Rule::new(Fault::Status {
                code: 503,
                retry_after: None,
            })
            .path("/manifests/")
            .skip(600)
            .every(3)
            .times(30),
        ],
        None,
    );
}

#[test]
fn delete_survives_truncated_bodies() {
    scenario(
        "delete truncated bodies",
        Run::Delete,
        vec![
            Rule::new(Fault::Truncate).method("GET").every(3).times(40),
            Rule::new(Fault::Truncate)
                .method("HEAD")
                .every(11)
                .times(20),
        ],
        None,
    );
}

#[test]
fn delete_survives_stalls_past_the_client_timeout() {
    scenario(
        "delete stalls",
        Run::Delete,
        vec![
            Rule::new(Fault::Stall(Duration::from_secs(35)))
                .skip(50)
                .every(200)
                .times(3),
        ],
        None,
    );
}

#[test]
fn delete_survives_a_registry_restart() {
    scenario(
        "delete registry restart",
        Run::Delete,
        Vec::new(),
        Some(400),
    );
}

#[test]
fn cleanup_survives_resets_and_bursts() {
    scenario(
        "cleanup resets + bursts",
        Run::Cleanup,
        vec![
            Rule::new(Fault::ResetAfterForward)
                .method("DELETE")
                .every(7)
                .times(30),
            Rule::new(Fault::Reset).skip(5).every(13).times(40),
            Rule::new(Fault::Status {
                code: 429,
                retry_after: Some("1".into()),
            })
            .skip(200)
            .times(20),
        ],
        None,
    );
}

#[test]
fn cleanup_survives_truncated_bodies() {
    scenario(
        "cleanup truncated bodies",
        Run::Cleanup,
        vec![Rule::new(Fault::Truncate).method("GET").every(17).times(20)],
        None,
    );
}

#[test]
fn cleanup_survives_a_registry_restart() {
    scenario(
        "cleanup registry restart",
        Run::Cleanup,
        Vec::new(),
        Some(700),
    );
}

/// A helper's `get`: the binary, the key on stdin, its environment, and the bound it must meet.
type HelperCase = (
    &'static str,
    &'static str,
    Vec<(&'static str, String)>,
    Duration,
);

/// Runs a credential helper's `get` with `env` and returns how long it took and its exit code.
fn helper_get(name: &str, key: &str, env: &[(&str, String)]) -> (Duration, Option<i32>, String) {
    let home = tempfile::tempdir().unwrap();
    let mut command = Command::new(bins::ours(name));
    command
        .env_clear()
        .env("HOME", home.path())
        .env("XDG_CACHE_HOME", home.path().join("cache"))
        .env("PATH", home.path())
        .env("GCE_METADATA_HOST", "127.0.0.1:9")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AZURE_POD_IDENTITY_AUTHORITY_HOST", "http://127.0.0.1:9")
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in env {
        command.env(name, value);
    }
    let started = Instant::now();
    let mut child = command.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(key.as_bytes())
        .unwrap();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    (
        started.elapsed(),
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn credential_helpers_bound_their_run_time_against_a_stalling_endpoint() {
    // Every request is held without an answer for longer than any helper may wait.
    let proxy = FaultProxy::start("127.0.0.1:9");
    proxy.set_rules(vec![Rule::new(Fault::Stall(Duration::from_secs(300)))]);
    let stall = proxy.url();
    let aws = |timeout: Option<&str>| {
        let mut env = vec![
            ("AWS_ACCESS_KEY_ID", "AKIDFAULTS".to_string()),
            ("AWS_SECRET_ACCESS_KEY", "faults-secret".to_string()),
            ("AWS_ENDPOINT_URL_ECR", stall.clone()),
            ("AWS_ENDPOINT_URL_STS", stall.clone()),
        ];
        if let Some(timeout) = timeout {
            env.push(("REGKIT_ECR_TIMEOUT", timeout.to_string()));
        }
        env
    };
    let azure = vec![
        (
            "AZURE_TENANT_ID",
            "00000000-0000-0000-0000-000000000001".to_string(),
        ),
        (
            "AZURE_CLIENT_ID",
            "00000000-0000-0000-0000-000000000002".to_string(),
        ),
        ("AZURE_CLIENT_SECRET", "faults-secret".to_string()),
        ("AZURE_AUTHORITY_HOST", stall.clone()),
        ("REGKIT_ACR_CREDENTIALS", "environment".to_string()),
        ("REGKIT_AUTH_TIMEOUT", "3".to_string()),
    ];
    let ecr_host = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
    // A bus socket whose connections the kernel queues and nobody ever answers.
    let bus_dir = tempfile::tempdir().unwrap();
    let silent_bus = bus_dir.path().join("bus");
    let _silent_listener = std::os::unix::net::UnixListener::bind(&silent_bus).unwrap();
    // (helper, key, env, documented bound + start-up slack)
    let cases: Vec<HelperCase> = vec![
        (
            "docker-credential-ecr-login",
            ecr_host,
            aws(Some("3")),
            Duration::from_secs(3 + 10),
        ),
        // The documented default: REGKIT_ECR_TIMEOUT unset is 30 s.
        (
            "docker-credential-ecr-login",
            ecr_host,
            aws(None),
            Duration::from_secs(30 + 10),
        ),
        (
            "docker-credential-acr",
            "faults.azurecr.io",
            azure,
            Duration::from_secs(3 + 10),
        ),
        // Google: no key file and no gcloud, so the metadata server, which stalls.
        (
            "docker-credential-gcr",
            "gcr.io",
            vec![
                ("GCE_METADATA_HOST", proxy.host().to_string()),
                ("REGKIT_AUTH_TIMEOUT", "3".to_string()),
            ],
            Duration::from_secs(3 + 10),
        ),
        // No network but the session bus, held open without an answer: the keyring helper's own 60 s
        // bound ends it. The env helper reads nothing but its environment.
        (
            "docker-credential-keyring",
            "faults.example",
            vec![(
                "DBUS_SESSION_BUS_ADDRESS",
                format!("unix:path={}", silent_bus.display()),
            )],
            Duration::from_secs(60 + 10),
        ),
        (
            "docker-credential-env",
            "faults.example",
            Vec::new(),
            Duration::from_secs(5),
        ),
    ];
    let handles: Vec<_> = cases
        .into_iter()
        .map(|(name, key, env, bound)| {
            std::thread::spawn(move || {
                let (took, code, stderr) = helper_get(name, key, &env);
                (name, bound, took, code, stderr)
            })
        })
        .collect();
    for handle in handles {
        let (name, bound, took, code, stderr) = handle.join().unwrap();
        assert!(
            took <= bound,
            "{name} took {took:?} against a stalling endpoint (bound {bound:?}): {stderr}"
        );
        assert_ne!(code, Some(0), "{name} cannot have answered: {stderr}");
        assert!(code.is_some(), "{name} was killed: {stderr}");
        if name == "docker-credential-keyring" {
            assert!(
                took >= Duration::from_secs(50),
                "the silent bus, not an early error, must be what ended the keyring helper: {stderr}"
            );
        }
        println!("HELPER {name} exited {code:?} after {took:?} (bound {bound:?})");
    }
}
