//! `make bench`: measures regkit against the tools people use today, on real components on loopback, with
//! each peer measured in the same run, and writes `BENCHMARKS.md`.
//!
//! Whole-process timings use hyperfine (many runs, medians); the floor beside every credential figure is
//! the same invocation of a process that only reads a file, because this machine rounds wake-ups to a few
//! milliseconds and only differences above the floor mean anything.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use regkit_e2e::moto::{self, Moto};
use regkit_e2e::registry::Registry;
use regkit_e2e::{bins, dbus, images};

/// One line of the results table.
struct Row {
    what: String,
    ours: String,
    peer: String,
    ratio: String,
    target: String,
}

fn main() {
    let output = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("BENCHMARKS.md"));
    let runs: u32 = std::env::var("REGKIT_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let work = tempfile::tempdir().expect("temp dir");
    let mut rows = Vec::new();
    rows.extend(env_get(work.path(), runs));
    rows.extend(keyring_get(work.path(), runs));
    rows.extend(router_get(work.path(), runs));
    rows.push(ecr_get(work.path(), runs));
    for tags in [200, 1000] {
        rows.push(delete_distinct(tags));
    }
    write_report(&output, &rows, runs);
    eprintln!("wrote {}", output.display());
}

/// Median seconds of each command, from one hyperfine run that interleaves nothing else.
fn hyperfine(commands: &[String], runs: u32, configure: impl Fn(&mut Command)) -> Vec<f64> {
    let hyperfine = bins::tool("hyperfine", "hyperfine");
    let export = tempfile::NamedTempFile::new().expect("temp file");
    let mut command = Command::new(hyperfine);
    command
        .args(["-N", "--style", "none", "--warmup", "10", "--runs"])
        .arg(runs.to_string())
        .arg("--export-json")
        .arg(export.path())
        .args(commands)
        .stdout(Stdio::null());
    configure(&mut command);
    let status = command.status().expect("run hyperfine");
    assert!(status.success(), "hyperfine failed: {commands:?}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(export.path()).expect("read hyperfine export"))
            .expect("hyperfine JSON");
    report["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["median"].as_f64().expect("median"))
        .collect()
}

/// `sh -c 'exec PROGRAM ARGS < FILE'`: hyperfine 1.15 has no stdin option, and the floor goes through the
/// same wrapper so the shell's cost cancels out.
fn with_stdin(program: &Path, args: &str, stdin: &Path) -> String {
    format!(
        "sh -c 'exec {} {args} < {}'",
        program.display(),
        stdin.display()
    )
}

fn ms(seconds: f64) -> String {
    format!("{:.2} ms", seconds * 1000.0)
}

fn env_get(work: &Path, runs: u32) -> Vec<Row> {
    let key = work.join("env-key");
    std::fs::write(&key, "registry.example.test:5000").expect("write key");
    let helper = bins::ours("docker-credential-env");
    let cat = bins::tool("cat", "coreutils");
    let miss = work.join("env-miss");
    std::fs::write(&miss, "unserved.example.test").expect("write key");
    let commands = [
        with_stdin(&cat, "", &key),
        with_stdin(&helper, "get", &key),
        with_stdin(&helper, "get", &miss),
    ];
    let medians = hyperfine(&commands, runs, |c| {
        c.env("DOCKER_registry_example_test_5000_USR", "bench")
            .env("DOCKER_registry_example_test_5000_PSW", "bench-secret");
    });
    let (floor, hit, miss) = (medians[0], medians[1], medians[2]);
    vec![
        Row {
            what: "`docker-credential-env get` (hit), floor = `cat` of the key file".into(),
            ours: ms(hit),
            peer: format!("floor {}", ms(floor)),
            ratio: format!("{:.2}× floor", hit / floor),
            target: "≤ 1.3× floor".into(),
        },
        Row {
            what: "`docker-credential-env get` (miss: a host it does not serve)".into(),
            ours: ms(miss),
            peer: format!("hit {}", ms(hit)),
            ratio: format!("{:.2}× hit", miss / hit),
            target: "≤ 1.2× warm get".into(),
        },
    ]
}

fn keyring_get(work: &Path, runs: u32) -> Vec<Row> {
    let session = dbus::Session::start();
    let ours = bins::ours("docker-credential-keyring");
    let peer = bins::tool(
        "docker-credential-secretservice",
        "golang-docker-credential-helpers",
    );
    let cat = bins::tool("cat", "coreutils");
    let server = "https://bench.example.test";
    // The peer writes the entry, so both read an item neither of them is favoured by.
    let mut store = session
        .command(&peer)
        .arg("store")
        .stdin(Stdio::piped())
        .spawn()
        .expect("run peer store");
    store
        .stdin
        .take()
        .expect("stdin")
        .write_all(
            format!("{{\"ServerURL\":\"{server}\",\"Username\":\"bench\",\"Secret\":\"s3cret\"}}")
                .as_bytes(),
        )
        .expect("write store input");
    assert!(store.wait().expect("peer store").success());
    let key = work.join("keyring-key");
    std::fs::write(&key, server).expect("write key");
    let miss = work.join("keyring-miss");
    std::fs::write(&miss, "unserved.example.test").expect("write key");
    let commands = [
        with_stdin(&cat, "", &key),
        with_stdin(&ours, "get", &key),
        with_stdin(&peer, "get", &key),
        with_stdin(&ours, "get", &miss),
    ];
    let medians = hyperfine(&commands, runs, |c| {
        for (name, value) in session.env() {
            c.env(name, value);
        }
        c.env_remove("DISPLAY");
    });
    let (floor, hit, peer_hit, miss) = (medians[0], medians[1], medians[2], medians[3]);
    let above = |t: f64| (t - floor).max(0.0);
    vec![
        Row {
            what: format!(
                "`docker-credential-keyring get` vs `docker-credential-secretservice get` (one D-Bus session, gnome-keyring), floor {}",
                ms(floor)
            ),
            ours: ms(hit),
            peer: ms(peer_hit),
            ratio: format!(
                "{:.2} (time above floor: {} vs {})",
                above(hit) / above(peer_hit).max(1e-9),
                ms(above(hit)),
                ms(above(peer_hit))
            ),
            target: "≤ 0.35 of the peer above the floor".into(),
        },
        Row {
            what: "`docker-credential-keyring get` (miss)".into(),
            ours: ms(miss),
            peer: format!("hit {}", ms(hit)),
            ratio: format!("{:.2}× hit", miss / hit),
            target: "≤ 1.2× warm get".into(),
        },
    ]
}

/// `docker-credential-regkit get` on its keyring route, hit and miss, against `docker-credential-keyring`
/// in the same D-Bus session: what routing (one config file read, anchored patterns) costs on top.
fn router_get(work: &Path, runs: u32) -> Vec<Row> {
    let session = dbus::Session::start();
    let router = bins::ours("docker-credential-regkit");
    let keyring = bins::ours("docker-credential-keyring");
    let cat = bins::tool("cat", "coreutils");
    let server = "router.example.test";
    let mut store = session
        .command(&keyring)
        .arg("store")
        .stdin(Stdio::piped())
        .spawn()
        .expect("run keyring store");
    store
        .stdin
        .take()
        .expect("stdin")
        .write_all(
            format!("{{\"ServerURL\":\"{server}\",\"Username\":\"bench\",\"Secret\":\"s3cret\"}}")
                .as_bytes(),
        )
        .expect("write store input");
    assert!(store.wait().expect("keyring store").success());
    let key = work.join("router-key");
    std::fs::write(&key, server).expect("write key");
    let miss = work.join("router-miss");
    std::fs::write(&miss, "unserved.example.test").expect("write key");
    let commands = [
        with_stdin(&cat, "", &key),
        with_stdin(&router, "get", &key),
        with_stdin(&keyring, "get", &key),
        with_stdin(&router, "get", &miss),
        with_stdin(&keyring, "get", &miss),
    ];
    let medians = hyperfine(&commands, runs, |c| {
        for (name, value) in session.env() {
            c.env(name, value);
        }
        // No rules: every key takes the built-in patterns, then the keyring.
        c.env("REGKIT_CONFIG", work.join("no-regkit-config.toml"))
            .env_remove("DISPLAY");
    });
    let (floor, hit, keyring_hit, router_miss, keyring_miss) =
        (medians[0], medians[1], medians[2], medians[3], medians[4]);
    let above = |t: f64| (t - floor).max(0.0);
    let row = |what: &str, ours: f64, peer: f64, target: &str| Row {
        what: format!("{what}, floor {}", ms(floor)),
        ours: ms(ours),
        peer: ms(peer),
        ratio: format!(
            "{:.2} (time above floor: {} vs {})",
            above(ours) / above(peer).max(1e-9),
            ms(above(ours)),
            ms(above(peer))
        ),
        target: target.into(),
    };
    vec![
        row(
            "`docker-credential-regkit get` vs `docker-credential-keyring get` (keyring route, hit)",
            hit,
            keyring_hit,
            "≤ 1.2 of the keyring helper above the floor",
        ),
        row(
            "`docker-credential-regkit get` vs `docker-credential-keyring get` (miss: no rule, not stored; one keyring lookup, no network)",
            router_miss,
            keyring_miss,
            "≤ 1.2 of the keyring helper above the floor",
        ),
    ]
}

/// Warm-cache `get` of `docker-credential-ecr-login`: ours against Debian's amazon-ecr-credential-helper, each
/// from its own cache file in one directory. The peer's cache is written in its format (key
/// `<region>-<base64(AKID ++ md5(""))>-<registry id>`); ours is filled by one real get against moto, which
/// is then stopped, so neither side can reach a network during the measurement.
fn ecr_get(work: &Path, runs: u32) -> Row {
    let ours = bins::ours("docker-credential-ecr-login");
    let peer = PathBuf::from("/usr/bin/docker-credential-ecr-login");
    assert!(
        peer.is_file(),
        "Debian's docker-credential-ecr-login is required: apt-get install amazon-ecr-credential-helper (make bench does)"
    );
    let cat = bins::tool("cat", "coreutils");
    let cache_dir = work.join("ecr-cache");
    std::fs::create_dir_all(&cache_dir).expect("ecr cache dir");
    let akid = "AKIDBENCH";
    let mut peer_key_bytes = akid.as_bytes().to_vec();
    // md5 of the empty input: upstream's `md5.New().Sum(akid)` appends it to the key id.
    peer_key_bytes.extend([
        0xd4, 0x1d, 0x8c, 0xd9, 0x8f, 0x00, 0xb2, 0x04, 0xe9, 0x80, 0x09, 0x98, 0xec, 0xf8, 0x42,
        0x7e,
    ]);
    let peer_key = format!(
        "{}-{}-{}",
        moto::REGION,
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, peer_key_bytes),
        moto::ACCOUNT
    );
    let token = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("AWS:{}", moto::PASSWORD),
    );
    let peer_cache = serde_json::json!({
        "Registries": {peer_key: {
            "AuthorizationToken": token,
            "RequestedAt": "2026-01-01T00:00:00Z",
            "ExpiresAt": "2100-01-01T00:00:00Z",
            "ProxyEndpoint": format!("https://{}", moto::REGISTRY),
            "Service": "ecr",
        }},
        "Version": "1.0",
    });
    std::fs::write(cache_dir.join("cache.json"), peer_cache.to_string()).expect("peer cache");

    let mut moto = Moto::start();
    let mut env: Vec<(String, String)> = moto.env();
    env.retain(|(name, _)| name != "AWS_ACCESS_KEY_ID");
    env.extend([
        ("AWS_ACCESS_KEY_ID".to_string(), akid.to_string()),
        ("HOME".to_string(), work.display().to_string()),
        (
            "AWS_ECR_CACHE_DIR".to_string(),
            cache_dir.display().to_string(),
        ),
        // moto's tokens expired in 2015; the cache's test clock makes ours cacheable.
        (
            "REGKIT_ECR_NOW".to_string(),
            (moto::EXPIRES_AT - 86_400).to_string(),
        ),
        (
            "PATH".to_string(),
            std::env::var("PATH").unwrap_or_default(),
        ),
    ]);
    let key = work.join("ecr-key");
    std::fs::write(&key, moto::REGISTRY).expect("write key");
    let get = |program: &Path| {
        let output = Command::new(program)
            .arg("get")
            .env_clear()
            .envs(env.iter().cloned())
            .stdin(std::fs::File::open(&key).expect("key"))
            .output()
            .expect("run docker-credential-ecr-login");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    assert!(
        get(&ours).contains(moto::PASSWORD),
        "ours did not fill its cache"
    );
    moto.stop();
    for program in [&ours, &peer] {
        assert!(
            get(program).contains(moto::PASSWORD),
            "{} missed its warm cache",
            program.display()
        );
    }
    let commands = [
        with_stdin(&cat, "", &key),
        with_stdin(&ours, "get", &key),
        with_stdin(&peer, "get", &key),
    ];
    let medians = hyperfine(&commands, runs, |c| {
        c.env_clear().envs(env.iter().cloned());
    });
    let (floor, hit, peer_hit) = (medians[0], medians[1], medians[2]);
    let above = |t: f64| (t - floor).max(0.0);
    Row {
        what: format!(
            "`docker-credential-ecr-login get` (warm cache) vs Debian's amazon-ecr-credential-helper 0.6.0 (warm cache), floor {}",
            ms(floor)
        ),
        ours: ms(hit),
        peer: ms(peer_hit),
        ratio: format!(
            "{:.2} (time above floor: {} vs {})",
            above(hit) / above(peer_hit).max(1e-9),
            ms(above(hit)),
            ms(above(peer_hit))
        ),
        target: "≤ 0.25 of the peer above the floor".into(),
    }
}

/// Deletes `tags` tags with distinct digests: `regkit delete` against a `skopeo delete` loop, each on its
/// own copy of the same content in one registry.
fn delete_distinct(tags: usize) -> Row {
    let registry = Registry::start();
    let url = registry.url();
    let names: Vec<String> = (0..tags).map(|i| format!("t{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    images::push_distinct(&url, "bench/ours", &refs, &images::Auth::None);
    images::push_distinct(&url, "bench/skopeo", &refs, &images::Auth::None);

    let regkit = bins::ours("regkit");
    let input: String = names
        .iter()
        .map(|t| format!("{}/bench/ours:{t}\n", registry.host()))
        .collect();
    let started = Instant::now();
    let mut child = Command::new(&regkit)
        .args(["delete", "--stdin", "--quiet", "--output", "json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("run regkit");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write refs");
    assert!(
        child.wait().expect("regkit").success(),
        "regkit delete failed"
    );
    let ours = started.elapsed();
    assert!(
        images::tag_digests(&url, "bench/ours", &images::Auth::None).is_empty(),
        "regkit left tags behind"
    );

    let skopeo = bins::tool("skopeo", "skopeo");
    let started = Instant::now();
    for tag in &names {
        let status = Command::new(&skopeo)
            .args(["delete", "--tls-verify=false"])
            .arg(format!("docker://{}/bench/skopeo:{tag}", registry.host()))
            .stderr(Stdio::null())
            .status()
            .expect("run skopeo");
        assert!(status.success(), "skopeo delete failed");
    }
    let peer = started.elapsed();
    let secs = |d: Duration| format!("{:.2} s", d.as_secs_f64());
    Row {
        what: format!(
            "delete {tags} tags with distinct digests: `regkit delete --stdin` vs a `skopeo delete` loop (distribution 2.8, no auth)"
        ),
        ours: secs(ours),
        peer: secs(peer),
        ratio: format!("{:.1}× faster", peer.as_secs_f64() / ours.as_secs_f64()),
        target: "≥ 6× faster".into(),
    }
}

fn write_report(path: &Path, rows: &[Row], runs: u32) {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let mut text = String::new();
    let _ = writeln!(text, "# Benchmarks\n");
    let _ = writeln!(
        text,
        "Machine: {cores} cores, {cpu}. Date: {date}. Reproduce with `make bench` (debug builds are never \
         measured: it builds `--release`). Credential figures are hyperfine medians of {runs} runs each, \
         every peer and floor measured in the same run.\n"
    );
    let _ = writeln!(text, "| what | ours | peer / reference | ratio | target |");
    let _ = writeln!(text, "|---|---|---|---|---|");
    for row in rows {
        let _ = writeln!(
            text,
            "| {} | {} | {} | {} | {} |",
            row.what, row.ours, row.peer, row.ratio, row.target
        );
    }
    std::fs::write(path, text).expect("write report");
}
