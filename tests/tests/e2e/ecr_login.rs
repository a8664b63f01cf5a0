//! `docker-credential-ecr-login` against moto on loopback: cold and warm cache, refresh at half-life and
//! fallback to a still-valid token, file modes, 16 concurrent cold gets, hosts it does not serve, ECR
//! Public, the identity map, store/erase/list, and an empty endpoint variable.
//!
//! moto's tokens expire on 2015-01-01, so every test sets the helper's clock (`REGKIT_ECR_NOW`, the cache's
//! documented test hook) to a day before that.

use std::io::Write;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use regkit_e2e::bins;
use regkit_e2e::moto::{self, EcrPublicDouble, Moto, PASSWORD, PUBLIC_PASSWORD, REGISTRY};
use serde_json::Value;

const NOT_FOUND: &str = "credentials not found in native keychain\n";
/// A day before moto's fixed expiry: tokens then live 24 h, fresh for 12 h.
const T0: i64 = moto::EXPIRES_AT - 86_400;
const HOUR: i64 = 3600;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// One isolated user: a home, a cache directory that does not exist yet, and the moto environment.
struct User {
    home: tempfile::TempDir,
    vars: Vec<(String, String)>,
}

impl User {
    fn new(moto: Option<&Moto>) -> User {
        let home = tempfile::tempdir().expect("home");
        let mut vars = moto.map(Moto::env).unwrap_or_else(|| {
            vec![
                ("AWS_ACCESS_KEY_ID".into(), "AKIDREGKITTEST".into()),
                ("AWS_SECRET_ACCESS_KEY".into(), "regkit-test-secret".into()),
                ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
            ]
        });
        vars.push(("HOME".into(), home.path().display().to_string()));
        vars.push((
            "AWS_ECR_CACHE_DIR".into(),
            home.path().join("cache/ecr").display().to_string(),
        ));
        vars.push(("REGKIT_ECR_NOW".into(), T0.to_string()));
        vars.push(("REGKIT_ECR_TIMEOUT".into(), "20".into()));
        User { home, vars }
    }

    fn set(&mut self, name: &str, value: impl Into<String>) {
        self.vars.retain(|(k, _)| k != name);
        self.vars.push((name.into(), value.into()));
    }

    fn cache_dir(&self) -> PathBuf {
        self.home.path().join("cache/ecr")
    }

    fn cache_file(&self) -> PathBuf {
        self.cache_dir().join("regkit-ecr-cache.json")
    }

    fn cache(&self) -> Value {
        serde_json::from_slice(&std::fs::read(self.cache_file()).expect("cache file"))
            .expect("cache JSON")
    }

    fn command(&self, action: &str) -> Command {
        let mut command = Command::new(bins::ours("docker-credential-ecr-login"));
        command
            .arg(action)
            .env_clear()
            .envs(self.vars.iter().cloned());
        command
    }

    fn run(&self, action: &str, stdin: &str) -> Run {
        let child = self.command(action);
        finish(spawn(child, stdin))
    }

    fn get(&self, key: &str) -> Run {
        self.run("get", key)
    }
}

fn spawn(mut command: Command, stdin: &str) -> std::process::Child {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn docker-credential-ecr-login");
    let _ = child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes());
    child
}

fn finish(child: std::process::Child) -> Run {
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output().expect("wait");
    let run = Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    };
    assert!(
        !run.stderr.contains(PASSWORD),
        "the token reached stderr: {}",
        run.stderr
    );
    run
}

fn answer(key: &str) -> String {
    format!("{{\"ServerURL\":\"{key}\",\"Username\":\"AWS\",\"Secret\":\"{PASSWORD}\"}}\n")
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).expect("stat").permissions().mode() & 0o777
}

#[test]
fn cold_get_fills_the_cache_and_a_warm_get_needs_no_network() {
    let mut moto = Moto::start();
    let user = User::new(Some(&moto));
    let cold = user.get(REGISTRY);
    assert_eq!(
        (cold.code, cold.stdout.as_str()),
        (0, answer(REGISTRY).as_str()),
        "{}",
        cold.stderr
    );
    assert_eq!(mode(&user.cache_dir()), 0o700);
    assert_eq!(mode(user.cache_dir().parent().unwrap()), 0o700);
    assert_eq!(mode(&user.cache_file()), 0o600);
    let cache = user.cache();
    let entries = cache["entries"].as_object().expect("entries");
    assert_eq!(entries.len(), 1);
    let (key, entry) = entries.iter().next().unwrap();
    assert!(key.starts_with(&format!("ecr:{REGISTRY}:")), "{key}");
    assert!(
        !key.contains("AKIDREGKITTEST"),
        "the access key id is in the key: {key}"
    );
    assert_eq!(entry["requested_at"], T0);
    assert_eq!(entry["expires_at"], moto::EXPIRES_AT);

    moto.stop();
    let mut later = user;
    later.set("REGKIT_ECR_NOW", (T0 + HOUR).to_string());
    for key in [
        REGISTRY.to_owned(),
        format!("https://{REGISTRY}"),
        format!("{REGISTRY}:443/v2/"),
    ] {
        let started = Instant::now();
        let warm = later.get(&key);
        assert_eq!(
            (warm.code, warm.stdout.as_str(), warm.stderr.as_str()),
            (0, answer(&key).as_str(), "")
        );
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}

#[test]
fn an_entry_past_half_life_is_refreshed_and_a_valid_one_survives_an_outage() {
    let mut moto = Moto::start();
    let mut user = User::new(Some(&moto));
    assert_eq!(user.get(REGISTRY).code, 0);

    // 13 h after a 24 h token: stale, so the helper asks again and records the new request time.
    let t1 = T0 + 13 * HOUR;
    user.set("REGKIT_ECR_NOW", t1.to_string());
    let refreshed = user.get(REGISTRY);
    assert_eq!(
        (refreshed.code, refreshed.stdout.as_str()),
        (0, answer(REGISTRY).as_str())
    );
    let cache = user.cache();
    let entry = cache["entries"]
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap();
    assert_eq!(entry["requested_at"], t1);

    // Stale again (past half of the remaining 11 h) and AWS unreachable: the still-valid token is used.
    moto.stop();
    let t2 = t1 + 6 * HOUR;
    user.set("REGKIT_ECR_NOW", t2.to_string());
    let fallback = user.get(REGISTRY);
    assert_eq!(
        (fallback.code, fallback.stdout.as_str()),
        (0, answer(REGISTRY).as_str())
    );
    assert!(
        fallback.stderr.contains("using the cached token"),
        "{}",
        fallback.stderr
    );

    // Expired and unreachable: not found, with the reason on stderr.
    user.set("REGKIT_ECR_NOW", (moto::EXPIRES_AT + 1).to_string());
    let expired = user.get(REGISTRY);
    assert_eq!((expired.code, expired.stdout.as_str()), (1, NOT_FOUND));
    assert!(
        expired.stderr.contains("cannot reach the ECR API"),
        "{}",
        expired.stderr
    );
}

#[test]
fn sixteen_concurrent_cold_gets_leave_one_valid_cache_file() {
    let moto = Moto::start();
    let user = User::new(Some(&moto));
    let children: Vec<_> = (0..16)
        .map(|_| spawn(user.command("get"), REGISTRY))
        .collect();
    for child in children {
        let run = finish(child);
        assert_eq!(
            (run.code, run.stdout.as_str()),
            (0, answer(REGISTRY).as_str()),
            "{}",
            run.stderr
        );
    }
    let mut names: Vec<String> = std::fs::read_dir(user.cache_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["regkit-ecr-cache.json", "regkit-ecr-cache.json.lock"]
    );
    assert_eq!(mode(&user.cache_file()), 0o600);
    assert_eq!(user.cache()["entries"].as_object().unwrap().len(), 1);
}

#[test]
fn hosts_it_does_not_serve_are_not_found_without_any_network() {
    // A listener that never accepts: any connection attempt would sit in its backlog.
    let hole = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", hole.local_addr().unwrap());
    let mut user = User::new(None);
    for name in [
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_ECR",
        "AWS_ENDPOINT_URL_ECR_PUBLIC",
        "AWS_ENDPOINT_URL_STS",
    ] {
        user.set(name, url.clone());
    }
    for key in [
        "127.0.0.1:5000",
        "https://index.docker.io/v1/",
        "ghcr.io",
        "123456789012.dkr.ecr.us-east-1.amazonaws.com.evil.example",
        "12345678901.dkr.ecr.us-east-1.amazonaws.com",
        "public.ecr.aws.evil.example",
    ] {
        let started = Instant::now();
        let run = user.get(key);
        assert_eq!(
            (run.code, run.stdout.as_str(), run.stderr.as_str()),
            (1, NOT_FOUND, ""),
            "{key}"
        );
        assert!(started.elapsed() < Duration::from_secs(2), "{key}");
    }
    hole.set_nonblocking(true).unwrap();
    assert!(
        hole.accept().is_err(),
        "the helper connected to the endpoint for a host it does not serve"
    );
    assert!(!user.cache_dir().exists(), "the cache was touched");
}

#[test]
fn ecr_public_tokens_come_from_ecr_public_in_us_east_1() {
    let double = EcrPublicDouble::start();
    let mut user = User::new(None);
    user.set("AWS_ENDPOINT_URL_ECR_PUBLIC", double.url());
    // The caller's region must not matter: ECR Public issues tokens in us-east-1 only.
    user.set("AWS_REGION", "eu-west-1");
    for key in [
        "public.ecr.aws",
        "https://public.ecr.aws/v2/",
        "ecr-public.aws.com",
    ] {
        let run = user.get(key);
        assert_eq!(
            (run.code, run.stdout.as_str()),
            (
                0,
                format!("{{\"ServerURL\":\"{key}\",\"Username\":\"AWS\",\"Secret\":\"{PUBLIC_PASSWORD}\"}}\n").as_str()
            ),
            "{}",
            run.stderr
        );
    }
    // public.ecr.aws was asked twice (two keys, one host): the second was a cache hit.
    let requests = double.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    for (target, scope) in requests {
        assert_eq!(target, "SpencerFrontendService.GetAuthorizationToken");
        assert!(
            scope.ends_with("/us-east-1/ecr-public/aws4_request"),
            "{scope}"
        );
    }
    let cache = user.cache();
    let keys: Vec<&String> = cache["entries"].as_object().unwrap().keys().collect();
    assert!(
        keys.iter()
            .any(|k| k.starts_with("ecr-public:public.ecr.aws:")),
        "{keys:?}"
    );
    assert!(
        keys.iter()
            .any(|k| k.starts_with("ecr-public:ecr-public.aws.com:")),
        "{keys:?}"
    );
}

#[test]
fn the_identity_map_selects_profile_and_role_and_keys_the_cache_by_identity() {
    let moto = Moto::start();
    let mut user = User::new(Some(&moto));
    let aws_config = user.home.path().join("aws-config");
    std::fs::write(
        &aws_config,
        "[profile other]\naws_access_key_id = AKIDOTHER\naws_secret_access_key = other-secret\n",
    )
    .unwrap();
    user.set("AWS_CONFIG_FILE", aws_config.display().to_string());
    let config_home = user.home.path().join("xdg");
    std::fs::create_dir_all(config_home.join("regkit")).unwrap();
    std::fs::write(
        config_home.join("regkit/config.toml"),
        format!(
            "[[ecr.identity]]\nregistry = \"{}\"\nprofile = \"other\"\n\n\
             [[ecr.identity]]\nregistry = \"*.dkr.ecr.*.amazonaws.com\"\n\
             role_arn = \"arn:aws:iam::123456789012:role/ecr-pull\"\n",
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
        ),
    )
    .unwrap();
    user.set("XDG_CONFIG_HOME", config_home.display().to_string());

    let profile_key = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";
    let profile = user.get(profile_key);
    assert_eq!(
        (profile.code, profile.stdout.as_str()),
        (0, answer(profile_key).as_str()),
        "{}",
        profile.stderr
    );
    // The role is assumed through moto's STS with the environment's credentials.
    let role = user.get(REGISTRY);
    assert_eq!(
        (role.code, role.stdout.as_str()),
        (0, answer(REGISTRY).as_str()),
        "{}",
        role.stderr
    );

    // Without the map the same registry is a different identity: a second entry, not a hit.
    user.set(
        "XDG_CONFIG_HOME",
        user.home.path().join("empty").display().to_string(),
    );
    assert_eq!(user.get(REGISTRY).code, 0);
    let cache = user.cache();
    let mut ids: Vec<&str> = cache["entries"]
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| k.contains(REGISTRY))
        .map(|k| k.rsplit(':').next().unwrap())
        .collect();
    ids.dedup();
    assert_eq!(ids.len(), 2, "{cache}");

    // The role really goes through STS: with STS unreachable (and no cache) the same get fails.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    user.set("XDG_CONFIG_HOME", config_home.display().to_string());
    user.set("AWS_ECR_DISABLE_CACHE", "1");
    user.set("AWS_ENDPOINT_URL_STS", format!("http://{closed}"));
    let no_sts = user.get(REGISTRY);
    assert_eq!((no_sts.code, no_sts.stdout.as_str()), (1, NOT_FOUND));
    assert!(no_sts.stderr.contains(REGISTRY), "{}", no_sts.stderr);
    assert_eq!(
        user.get(profile_key).code,
        0,
        "the profile entry needs no STS"
    );

    // A broken config file is a clear error, not a silent fallback.
    std::fs::write(
        config_home.join("regkit/config.toml"),
        "[[ecr.identity]]\nregistry = \"x\"\nprofil = \"p\"\n",
    )
    .unwrap();
    user.set("XDG_CONFIG_HOME", config_home.display().to_string());
    let broken = user.get(REGISTRY);
    assert_eq!(broken.code, 1);
    assert!(
        broken.stdout.starts_with("invalid regkit config file "),
        "{}",
        broken.stdout
    );
    assert_eq!(broken.stdout.lines().count(), 1);
}

#[test]
fn store_and_erase_succeed_and_list_shows_cached_registries_offline() {
    let mut moto = Moto::start();
    let mut user = User::new(Some(&moto));
    let store = user.run(
        "store",
        &format!("{{\"ServerURL\":\"{REGISTRY}\",\"Username\":\"AWS\",\"Secret\":\"x\"}}\n"),
    );
    assert_eq!((store.code, store.stdout.as_str()), (0, ""));
    assert!(
        store.stderr.contains("not storing credentials"),
        "{}",
        store.stderr
    );
    let erase = user.run("erase", REGISTRY);
    assert_eq!((erase.code, erase.stdout.as_str()), (0, ""));
    user.set("AWS_ECR_IGNORE_CREDS_STORAGE", "true");
    let quiet = user.run("erase", REGISTRY);
    assert_eq!(
        (quiet.code, quiet.stdout.as_str(), quiet.stderr.as_str()),
        (0, "", "")
    );

    assert_eq!(user.run("list", "unused").stdout, "{}\n");
    assert_eq!(user.get(REGISTRY).code, 0);
    moto.stop();
    let list = user.run("list", "unused");
    assert_eq!(
        (list.code, list.stdout.as_str()),
        (0, format!("{{\"https://{REGISTRY}\":\"AWS\"}}\n").as_str())
    );
    user.set("REGKIT_ECR_NOW", (moto::EXPIRES_AT + 1).to_string());
    assert_eq!(user.run("list", "unused").stdout, "{}\n");
}

#[test]
fn empty_variables_are_unset_and_the_cache_can_be_disabled() {
    let moto = Moto::start();
    let mut user = User::new(Some(&moto));
    // The SDK panics on an empty service endpoint; here the global one must win instead.
    user.set("AWS_ENDPOINT_URL_ECR", "");
    user.set("AWS_ENDPOINT_URL", moto.url());
    user.set("AWS_PROFILE", "");
    user.set("AWS_REGION", "");
    user.set("AWS_ECR_DISABLE_CACHE", "1");
    let run = user.get(REGISTRY);
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (0, answer(REGISTRY).as_str()),
        "{}",
        run.stderr
    );
    assert!(
        !user.cache_dir().exists(),
        "AWS_ECR_DISABLE_CACHE still wrote a cache"
    );
}

#[test]
fn a_silent_endpoint_is_cut_off_by_the_outer_timeout() {
    // Accepts connections (in the kernel backlog) and never answers.
    let hole = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut user = User::new(None);
    user.set(
        "AWS_ENDPOINT_URL_ECR",
        format!("http://{}", hole.local_addr().unwrap()),
    );
    user.set("REGKIT_ECR_TIMEOUT", "1");
    let started = Instant::now();
    let run = user.get(REGISTRY);
    let elapsed = started.elapsed();
    assert_eq!((run.code, run.stdout.as_str()), (1, NOT_FOUND));
    assert!(
        run.stderr.contains("no answer within 1 s"),
        "{}",
        run.stderr
    );
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
}
