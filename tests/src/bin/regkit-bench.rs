//! `make bench`: measures regkit against the tools people use today, on real components on loopback, with
//! each peer measured in the same run, and writes `BENCHMARKS.md`.
//!
//! Whole-process timings use hyperfine (many runs, medians); the floor beside every credential figure is
//! the same invocation of a process that only reads a file, because this machine rounds wake-ups to a few
//! milliseconds and only differences above the floor mean anything.
//!
//! Sections: `env`, `keyring`, `router`, `ecr-get`, `delete`, `journal`, `list`, `ecr-cleanup`,
//! `cleanup-repositories`, `policy`, `cleanup-referrers`, `github-limit`, `kube-scan`, `sizes`;
//! all by default,
//! some with `REGKIT_BENCH_ONLY=delete,list` (comma-separated; `journal` is the undo journal's cost).

use std::alloc::{GlobalAlloc, Layout, System};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use regkit_e2e::moto::{self, Moto};
use regkit_e2e::registry::{Registry, Twins};
use regkit_e2e::vendors::kubernetes::{self, Auth as KubeAuth, Kubernetes};
use regkit_e2e::{bins, dbus, images};

/// Counts heap bytes in use and their peak, for the in-process `policy` figure (one relaxed atomic add per
/// allocation: nothing the other sections, which time child processes, can see).
struct Counting;

static IN_USE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let now = IN_USE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(now, Ordering::Relaxed);
        // SAFETY: the caller's layout contract is passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        IN_USE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The `github-limit` row: versions deleted, and the stand-in's secondary limit (DELETEs per window).
const GITHUB_DELETES: usize = 500;
const GITHUB_PER_WINDOW: usize = 30;
const GITHUB_WINDOW: u64 = 10;

/// The `cleanup-referrers` row: images, each deleted with its signature and attestation.
const SIGNED_IMAGES: usize = 200;

/// Workers of the raw keep-alive client that measures the registry's own delete capacity.
const RAW_WORKERS: usize = 8;

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
    // `REGKIT_BENCH_ONLY=delete,list` runs some sections while working on one target; `make bench` runs all.
    let only = std::env::var("REGKIT_BENCH_ONLY").unwrap_or_default();
    let wanted = |section: &str| only.is_empty() || only.split(',').any(|s| s.trim() == section);
    let work = tempfile::tempdir().expect("temp dir");
    let mut rows = Vec::new();
    if wanted("env") {
        rows.extend(env_get(work.path(), runs));
    }
    if wanted("keyring") {
        rows.extend(keyring_get(work.path(), runs));
    }
    if wanted("router") {
        rows.extend(router_get(work.path(), runs));
    }
    if wanted("ecr-get") {
        rows.push(ecr_get(work.path(), runs));
    }
    if wanted("delete") {
        for tags in [200, 1000] {
            rows.extend(delete_distinct(tags));
        }
        eprintln!("bench: tag-safe delete");
        rows.push(delete_tag_safe(1000));
    }
    if wanted("journal") {
        eprintln!("bench: undo journal");
        rows.push(journal_cost(1000));
    }
    if wanted("list") {
        rows.extend(list_tags(runs));
    }
    if wanted("ecr-cleanup") {
        rows.push(ecr_cleanup());
    }
    if wanted("cleanup-repositories") {
        rows.push(cleanup_repositories());
    }
    if wanted("policy") {
        rows.push(policy_decide());
    }
    if wanted("cleanup-referrers") {
        rows.push(cleanup_referrers());
    }
    if wanted("github-limit") {
        use regkit_e2e::vendors::github::LimitHint;
        rows.push(github_limit(LimitHint::RetryAfter(GITHUB_WINDOW)));
        rows.push(github_limit(LimitHint::Reset(GITHUB_WINDOW)));
    }
    if wanted("kube-scan") {
        rows.push(kube_scan());
    }
    if wanted("sizes") {
        rows.extend(sizes_and_startup(runs));
    }
    write_report(&output, &rows, runs);
    eprintln!("wrote {}", output.display());
}

/// Median seconds of each command, from one hyperfine run that interleaves nothing else. Exit codes are
/// not checked (a credential miss exits 1 by protocol): callers check a hit's answer before timing it.
fn hyperfine(commands: &[String], runs: u32, configure: impl Fn(&mut Command)) -> Vec<f64> {
    let hyperfine = bins::tool("hyperfine", "hyperfine");
    let export = tempfile::NamedTempFile::new().expect("temp file");
    let mut command = Command::new(hyperfine);
    command
        .args([
            "-N",
            "--ignore-failure",
            "--style",
            "none",
            "--warmup",
            "10",
            "--runs",
        ])
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

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
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
    let with_env = |c: &mut Command| {
        c.env("DOCKER_registry_example_test_5000_USR", "bench")
            .env("DOCKER_registry_example_test_5000_PSW", "bench-secret");
    };
    assert_answers(&helper, &key, "bench-secret", with_env);
    let medians = hyperfine(&commands, runs, with_env);
    let (floor, hit, miss) = (medians[0], medians[1], medians[2]);
    let kib = peak_kib(&helper, &["get"], stdin_of(&key), with_env);
    vec![
        Row {
            what: "`docker-credential-env get` (hit), floor = `cat` of the key file".into(),
            ours: format!("{} (peak RSS {})", ms(hit), mib(kib)),
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
    let in_session = |c: &mut Command| {
        for (name, value) in session.env() {
            c.env(name, value);
        }
        c.env_remove("DISPLAY");
    };
    assert_answers(&ours, &key, "s3cret", in_session);
    assert_answers(&peer, &key, "s3cret", in_session);
    let medians = hyperfine(&commands, runs, in_session);
    let (floor, hit, peer_hit, miss) = (medians[0], medians[1], medians[2], medians[3]);
    let ours_kib = peak_kib(&ours, &["get"], stdin_of(&key), in_session);
    let peer_kib = peak_kib(&peer, &["get"], stdin_of(&key), in_session);
    let above = |t: f64| (t - floor).max(0.0);
    vec![
        Row {
            what: format!(
                "`docker-credential-keyring get` vs `docker-credential-secretservice get` (one D-Bus session, gnome-keyring), floor {}",
                ms(floor)
            ),
            ours: format!("{} (peak RSS {})", ms(hit), mib(ours_kib)),
            peer: format!("{} (peak RSS {})", ms(peer_hit), mib(peer_kib)),
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
    let isolated = |c: &mut Command| {
        c.env_clear().envs(env.iter().cloned());
    };
    let ours_kib = peak_kib(&ours, &["get"], stdin_of(&key), isolated);
    let peer_kib = peak_kib(&peer, &["get"], stdin_of(&key), isolated);
    let above = |t: f64| (t - floor).max(0.0);
    Row {
        what: format!(
            "`docker-credential-ecr-login get` (warm cache) vs Debian's amazon-ecr-credential-helper 0.6.0 (warm cache), floor {}",
            ms(floor)
        ),
        ours: format!("{} (peak RSS {})", ms(hit), mib(ours_kib)),
        peer: format!("{} (peak RSS {})", ms(peer_hit), mib(peer_kib)),
        ratio: format!(
            "{:.2} (time above floor: {} vs {})",
            above(hit) / above(peer_hit).max(1e-9),
            ms(above(hit)),
            ms(above(peer_hit))
        ),
        target: "≤ 0.25 of the peer above the floor".into(),
    }
}

/// Deletes `tags` tags with distinct digests: `regkit delete` against a `skopeo delete` loop and against the
/// registry's own capacity (raw keep-alive DELETEs by digest from [`RAW_WORKERS`] workers), each on its own
/// copy of the same content in one registry.
fn delete_distinct(tags: usize) -> Vec<Row> {
    let registry = Registry::start();
    let url = registry.url();
    let names: Vec<String> = (0..tags).map(|i| format!("t{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    images::push_distinct(&url, "bench/ours", &refs, &images::Auth::None);
    images::push_distinct(&url, "bench/skopeo", &refs, &images::Auth::None);
    let raw: Vec<String> = images::push_distinct(&url, "bench/raw", &refs, &images::Auth::None)
        .into_iter()
        .map(|(_, digest)| digest)
        .collect();

    let input: Vec<String> = names
        .iter()
        .map(|t| format!("{}/bench/ours:{t}", registry.host()))
        .collect();
    let (ours, kib) = regkit_delete(&input, |_| {});
    assert!(
        images::tag_digests(&url, "bench/ours", &images::Auth::None).is_empty(),
        "regkit left tags behind"
    );

    let raw_time = raw_delete(&url, "bench/raw", &raw, RAW_WORKERS);
    assert!(
        images::tag_digests(&url, "bench/raw", &images::Auth::None).is_empty(),
        "the raw client left tags behind"
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
    let rate = |d: Duration| tags as f64 / d.as_secs_f64();
    vec![
        Row {
            what: format!(
                "delete {tags} tags with distinct digests: `regkit delete --stdin` vs a `skopeo delete` loop (distribution 2.8, no auth)"
            ),
            ours: format!("{} (peak RSS {})", secs(ours), mib(kib)),
            peer: secs(peer),
            ratio: format!("{:.1}× faster", peer.as_secs_f64() / ours.as_secs_f64()),
            target: "≥ 6× faster".into(),
        },
        Row {
            what: format!(
                "delete {tags} tags with distinct digests: `regkit delete` vs the registry's capacity (raw keep-alive `DELETE` by digest, {RAW_WORKERS} workers, no listing or checks)"
            ),
            ours: format!("{:.0} tags/s", rate(ours)),
            peer: format!("{:.0} tags/s ({})", rate(raw_time), secs(raw_time)),
            ratio: format!("{:.2}× the raw rate", rate(ours) / rate(raw_time)),
            target: "≥ 0.8× the raw rate".into(),
        },
    ]
}

/// What the undo journal costs: `tags` deletions with distinct digests by `regkit delete`, journaled (the
/// default) and with `--no-journal`, each on its own fresh repository of the same registry.
fn journal_cost(tags: usize) -> Row {
    let registry = Registry::start();
    let url = registry.url();
    let names: Vec<String> = (0..tags).map(|i| format!("t{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    images::push_distinct(&url, "bench/journaled", &refs, &images::Auth::None);
    images::push_distinct(&url, "bench/unjournaled", &refs, &images::Auth::None);
    let input = |repo: &str| -> Vec<String> {
        names
            .iter()
            .map(|tag| format!("{}/{repo}:{tag}", registry.host()))
            .collect()
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let journal = dir.path().join("journal.jsonl");
    let (without, _) = regkit_delete(&input("bench/unjournaled"), |command| {
        command.env("REGKIT_NO_JOURNAL", "1");
    });
    let (with, kib) = regkit_delete(&input("bench/journaled"), |command| {
        command.env("REGKIT_JOURNAL", &journal);
    });
    for repo in ["bench/journaled", "bench/unjournaled"] {
        assert!(
            images::tag_digests(&url, repo, &images::Auth::None).is_empty(),
            "regkit left tags behind in {repo}"
        );
    }
    let text = std::fs::read_to_string(&journal).expect("the journal was written");
    assert_eq!(
        text.lines().count(),
        tags + 1,
        "a header and one line per tag"
    );
    let bytes = text.len() as u64;
    Row {
        what: format!(
            "undo journal on {tags} deletions (distinct digests, `regkit delete --stdin`, one fsync per line): journaled vs `--no-journal`"
        ),
        ours: format!(
            "{} (peak RSS {}), journal {:.1} KiB ({} bytes per deletion)",
            secs(with),
            mib(kib),
            bytes as f64 / 1024.0,
            bytes / tags as u64
        ),
        peer: secs(without),
        ratio: format!(
            "{:+.2} s ({:.2}×)",
            with.as_secs_f64() - without.as_secs_f64(),
            with.as_secs_f64() / without.as_secs_f64()
        ),
        target: "no request added; ≤ 1.1× the time".into(),
    }
}

/// The tag-safe path: `tags` tags, half of which share their digest with a kept sibling tag, deleted by
/// `regkit delete`; beside it the same count with distinct digests. skopeo has no peer figure: deleting by
/// digest would take the kept siblings with it.
fn delete_tag_safe(tags: usize) -> Row {
    let registry = Registry::start();
    let url = registry.url();
    let names: Vec<String> = (0..tags).map(|i| format!("t{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    images::push_distinct(&url, "bench/distinct", &refs, &images::Auth::None);
    let pushed = images::push_distinct(&url, "bench/shared", &refs, &images::Auth::None);
    let agent = raw_agent();
    let kept: Vec<(String, String)> = pushed
        .iter()
        .step_by(2)
        .map(|(tag, digest)| (format!("keep-{tag}"), digest.clone()))
        .collect();
    in_parallel(&kept, 4, |(keep, digest)| {
        let mut response = agent
            .get(format!("{url}/v2/bench/shared/manifests/{digest}"))
            .header("accept", images::ACCEPT_ALL)
            .call()
            .expect("GET manifest");
        let media_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .expect("content type")
            .to_string();
        let body = response.body_mut().read_to_vec().expect("manifest body");
        let response = agent
            .put(format!("{url}/v2/bench/shared/manifests/{keep}"))
            .header("content-type", &media_type)
            .send(&body[..])
            .expect("PUT manifest");
        assert_eq!(response.status(), 201, "PUT {keep}");
    });
    let input = |repo: &str| -> Vec<String> {
        names
            .iter()
            .map(|t| format!("{}/{repo}:{t}", registry.host()))
            .collect()
    };
    let (distinct, _) = regkit_delete(&input("bench/distinct"), |_| {});
    let (safe, kib) = regkit_delete(&input("bench/shared"), |_| {});
    let left = images::tag_digests(&url, "bench/shared", &images::Auth::None);
    let expected: std::collections::BTreeMap<String, String> = kept.into_iter().collect();
    assert_eq!(left, expected, "the kept siblings must keep their digests");
    Row {
        what: format!(
            "delete {tags} tags, half sharing their digest with a kept tag (tag-safe path: tombstones), `regkit delete`; peer = the same count with distinct digests"
        ),
        ours: format!("{} (peak RSS {})", secs(safe), mib(kib)),
        peer: format!("distinct digests {}", secs(distinct)),
        ratio: format!(
            "{:.2}× the distinct-digest time",
            safe.as_secs_f64() / distinct.as_secs_f64()
        ),
        target: "(no target; kept tags verified intact)".into(),
    }
}

/// Listing 10 000 tags: `regkit tags` against `skopeo list-tags`, hyperfine medians.
fn list_tags(runs: u32) -> Vec<Row> {
    const TAGS: usize = 10_000;
    let registry = Registry::start();
    let url = registry.url();
    let digest = images::push(&url, "bench/list", &["seed"], &images::Auth::None);
    let names: Vec<String> = (0..TAGS - 1).map(|i| format!("tag-{i:05}")).collect();
    retag(&url, "bench/list", &digest, &names);
    let regkit = bins::ours("regkit");
    let skopeo = bins::tool("skopeo", "skopeo");
    let repo = format!("{}/bench/list", registry.host());
    let listed = Command::new(&regkit)
        .args(["tags", &repo])
        .output()
        .expect("run regkit tags");
    assert!(listed.status.success(), "regkit tags failed");
    assert_eq!(
        String::from_utf8_lossy(&listed.stdout)
            .matches("tag-")
            .count(),
        TAGS - 1,
        "regkit tags must list every tag"
    );
    let ours_cmd = format!("{} tags {repo}", regkit.display());
    let peer_cmd = format!(
        "{} list-tags --tls-verify=false docker://{repo}",
        skopeo.display()
    );
    // The registry's own answer time, through the cheapest client there is.
    let curl = bins::tool("curl", "curl");
    let floor_cmd = format!(
        "{} -sf -o /dev/null {url}/v2/bench/list/tags/list",
        curl.display()
    );
    let medians = hyperfine(&[ours_cmd, peer_cmd, floor_cmd], runs.clamp(5, 30), |_| {});
    let ours_kib = peak_kib(&regkit, &["tags", &repo], Stdio::null(), |_| {});
    let peer_kib = peak_kib(
        &skopeo,
        &[
            "list-tags",
            "--tls-verify=false",
            &format!("docker://{repo}"),
        ],
        Stdio::null(),
        |_| {},
    );
    vec![Row {
        what: format!(
            "list {TAGS} tags: `regkit tags` vs `skopeo list-tags` (hyperfine medians); floor = `curl` of the tag list {}",
            ms(medians[2])
        ),
        ours: format!("{} (peak RSS {})", ms(medians[0]), mib(ours_kib)),
        peer: format!("{} (peak RSS {})", ms(medians[1]), mib(peer_kib)),
        ratio: format!(
            "{:.2}× the peer's time ({:.2} above the floor: {} vs {})",
            medians[0] / medians[1],
            (medians[0] - medians[2]).max(0.0) / (medians[1] - medians[2]).max(1e-9),
            ms((medians[0] - medians[2]).max(0.0)),
            ms((medians[1] - medians[2]).max(0.0))
        ),
        target: "≤ 0.5×".into(),
    }]
}

/// ECR cleanup of 1 000 tags on moto (half of them with a kept sibling tag), API calls counted by a proxy
/// in front of moto.
fn ecr_cleanup() -> Row {
    const TAGS: usize = 1000;
    let moto = Moto::start();
    moto.create_repository("bench/app");
    for i in 0..TAGS {
        let layer = format!("{i:x}");
        moto.put_image("bench/app", &layer, Some(&format!("t{i}")));
        if i % 2 == 0 {
            moto.put_image("bench/app", &layer, Some(&format!("keep{i}")));
        }
    }
    let home = tempfile::tempdir().expect("home");
    let env = moto.env();
    moto.start_recording();
    let repository = format!("{}/bench/app", moto::REGISTRY);
    let started = Instant::now();
    let kib = peak_kib(
        &bins::ours("regkit"),
        &[
            "cleanup",
            &repository,
            "--match",
            "^t",
            "--yes",
            "--quiet",
            "--output",
            "json",
        ],
        Stdio::null(),
        |c| {
            c.env_clear()
                .envs(env.iter().cloned())
                .env("HOME", home.path())
                .env("DOCKER_CONFIG", home.path().join("docker"));
        },
    );
    let wall = started.elapsed();
    let calls = moto.operations();
    let left = moto.tags("bench/app");
    assert_eq!(left.len(), TAGS / 2, "only the kept siblings stay");
    assert!(left.keys().all(|tag| tag.starts_with("keep")));
    let total: usize = calls.values().sum();
    let detail: Vec<String> = calls.iter().map(|(op, n)| format!("{n}× {op}")).collect();
    Row {
        what: format!(
            "ECR cleanup: `regkit cleanup --match '^t' --yes` deleting {TAGS} of {} tags on moto (half with a kept sibling), API calls counted by moto's request recorder",
            TAGS + TAGS / 2
        ),
        ours: format!(
            "{total} calls ({}), {} (peak RSS {})",
            detail.join(", "),
            secs(wall),
            mib(kib)
        ),
        peer: "—".into(),
        ratio: "—".into(),
        // BatchDeleteImage takes at most 100 ids, and the tags must be listed once to be chosen.
        target: format!(
            "10 calls (floor here: 1 DescribeImages + {} BatchDeleteImage)",
            TAGS.div_ceil(100)
        ),
    }
}

/// `regkit cleanup REGISTRY/*` over 200 repositories of 20 tags each (distinct images, dated a day apart;
/// `--keep-last 18` deletes the 2 oldest of each) against the same cleanup run one repository at a time: one
/// `regkit cleanup REGISTRY/REPO` process per repository, as a shell loop over the catalog does. Both run
/// on copies of one data directory ([`Twins`]), so they start from the same tags and must end with the same ones.
fn cleanup_repositories() -> Row {
    const REPOSITORIES: usize = 200;
    const TAGS: usize = 20;
    const KEEP: usize = 18;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let dates: Vec<(String, String)> = (0..TAGS)
        .map(|i| {
            (
                format!("v{i:02}"),
                regkit::dates::format_rfc3339(now - 86_400 * (TAGS - i) as i64),
            )
        })
        .collect();
    let dated: Vec<(&str, &str)> = dates
        .iter()
        .map(|(t, c)| (t.as_str(), c.as_str()))
        .collect();
    let repository = |index: usize| format!("bench/r{index:03}");
    eprintln!("bench: pushing {REPOSITORIES} repositories × {TAGS} tags");
    let twins = Twins::start(|seed| {
        for index in 0..REPOSITORIES {
            images::push_distinct_created(
                &seed.url(),
                &repository(index),
                &dated,
                &images::Auth::None,
                images::Format::Oci,
            );
        }
    });
    let (together, one_by_one) = (&twins.first, &twins.second);
    let regkit = bins::ours("regkit");
    let keep = KEEP.to_string();
    // Exit codes are not read here: the tags left in both registries are checked below.
    let cleanup = |target: &str| {
        peak_kib(
            &regkit,
            &[
                "--quiet",
                "--output",
                "json",
                "cleanup",
                target,
                "--keep-last",
                &keep,
                "--yes",
            ],
            Stdio::null(),
            |_| {},
        )
    };
    eprintln!("bench: cleanup of every repository at once");
    let started = Instant::now();
    let kib = cleanup(&format!("{}/*", together.host()));
    let ours = started.elapsed();
    eprintln!("bench: the same cleanup one repository at a time");
    let started = Instant::now();
    let peak_one = (0..REPOSITORIES)
        .map(|index| cleanup(&format!("{}/{}", one_by_one.host(), repository(index))))
        .max()
        .unwrap_or(0);
    let peer = started.elapsed();
    let kept: Vec<String> = dates[TAGS - KEEP..]
        .iter()
        .map(|(t, _)| t.clone())
        .collect();
    for index in 0..REPOSITORIES {
        let repo = repository(index);
        let left = images::tag_digests(&together.url(), &repo, &images::Auth::None);
        assert_eq!(
            left.keys().cloned().collect::<Vec<_>>(),
            kept,
            "{repo}: the {KEEP} newest stay"
        );
        assert_eq!(
            left,
            images::tag_digests(&one_by_one.url(), &repo, &images::Auth::None),
            "{repo}: both runs end alike"
        );
    }
    Row {
        what: format!(
            "cleanup of {REPOSITORIES} repositories × {TAGS} tags (distribution 2.8 on loopback, dates from image configs, `--keep-last {KEEP}`: {} deletions): `regkit cleanup REGISTRY/*` vs one `regkit cleanup REGISTRY/REPO` per repository in sequence (default `--parallel` 8 both)",
            REPOSITORIES * (TAGS - KEEP)
        ),
        ours: format!("{} (peak RSS {})", secs(ours), mib(kib)),
        peer: format!(
            "{} (peak RSS of the largest run {})",
            secs(peer),
            mib(peak_one)
        ),
        ratio: format!("{:.1}× faster", peer.as_secs_f64() / ours.as_secs_f64()),
        target: "≥ 3× faster".into(),
    }
}

/// The in-use scan before a cleanup: `regkit in-use` against the Kubernetes stand-in holding 10,000 Pods
/// (two containers and a running digest each) and 3,000 ReplicaSets across 200 namespaces, beside the same
/// command with `--without-kube`; the stand-in counts the requests.
fn kube_scan() -> Row {
    const PODS: usize = 10_000;
    const REPLICA_SETS: usize = 3_000;
    const NAMESPACES: usize = 200;
    let cluster = Kubernetes::start("bench-token");
    let digest = format!("sha256:{}", "ab".repeat(32));
    // Object `index` of a kind lives in one of the namespaces and runs one of 50 repositories' tags.
    let place = |index: usize, tags: usize| {
        (
            format!("ns-{:03}", index % NAMESPACES),
            format!(
                "registry.example.com/team/app-{}:v{}",
                index % 50,
                index % tags
            ),
        )
    };
    for index in 0..PODS {
        let (namespace, image) = place(index, 7);
        cluster.add(
            "Pod",
            serde_json::json!({
                "metadata": kubernetes::metadata(&namespace, &format!("pod-{index}")),
                "spec": {"containers": [{"name": "app", "image": image}, {"name": "proxy", "image": "envoyproxy/envoy:v1.30"}]},
                "status": {"containerStatuses": [{"name": "app", "image": image,
                    "imageID": format!("registry.example.com/team/app-{}@{digest}", index % 50)}]},
            }),
        );
    }
    for index in 0..REPLICA_SETS {
        let (namespace, image) = place(index, 11);
        cluster.add_workload("ReplicaSet", &namespace, &format!("rs-{index}"), &[&image]);
    }
    let home = tempfile::tempdir().expect("home");
    let config = home.path().join("kubeconfig");
    let entry = cluster.entry("bench", KubeAuth::Token);
    std::fs::write(&config, kubernetes::kubeconfig(&[entry])).expect("write kubeconfig");
    let configure = |c: &mut Command| {
        c.env_clear()
            .env("HOME", home.path())
            .env("KUBECONFIG", &config);
    };
    let regkit = bins::ours("regkit");
    let scan = ["in-use", "--output", "json", "--quiet"];
    let before = cluster.server.request_count();
    let started = Instant::now();
    let kib = peak_kib(&regkit, &scan, Stdio::null(), configure);
    let wall = started.elapsed();
    let requests = cluster.server.request_count() - before;
    let started = Instant::now();
    let without_kib = peak_kib(
        &regkit,
        &["in-use", "--without-kube", "--quiet"],
        Stdio::null(),
        configure,
    );
    let without = started.elapsed();
    cluster.server.assert_no_violations();
    // One LIST per kind per 500 objects: 20 pages of Pods, 6 of ReplicaSets, one each for the other six kinds.
    let target = PODS.div_ceil(500) + REPLICA_SETS.div_ceil(500) + 6;
    Row {
        what: format!(
            "in-use scan: `regkit in-use` over the Kubernetes stand-in (TLS, token) with {PODS} Pods and {REPLICA_SETS} ReplicaSets in {NAMESPACES} namespaces; peer = `--without-kube`"
        ),
        ours: format!(
            "{requests} requests, {} (peak RSS {})",
            secs(wall),
            mib(kib)
        ),
        peer: format!("{} (peak RSS {})", secs(without), mib(without_kib)),
        ratio: format!("+{} per cleanup", secs(wall.saturating_sub(without))),
        target: format!("{target} requests (one per kind per 500 objects)"),
    }
}

/// GitHub's secondary limit on the GitHub stand-in: `regkit delete --github-delete-interval 0` of
/// [`GITHUB_DELETES`] package versions while the stand-in lets through at most [`GITHUB_PER_WINDOW`]
/// DELETEs per [`GITHUB_WINDOW`] seconds and refuses the next with a wait of a window, told by `hint`. That
/// is the 180 DELETEs per minute with a 60 s wait, scaled down 6× in time (the window and the wait;
/// the allowed rate, 3 per second, stays). Unpaced, so the limit is what paces the run: regkit's default
/// pace (one DELETE per second, GitHub's advice) stays below any limit of 60 or more per minute. The
/// stand-in counts the requests sent inside a wait and times the DELETEs it let through.
fn github_limit(hint: regkit_e2e::vendors::github::LimitHint) -> Row {
    use regkit_e2e::vendors::github::{self, LimitHint};
    const TOKEN: &str = "ghp_bench_token";
    let deletes = GITHUB_DELETES;
    eprintln!("bench: GitHub secondary limit ({hint:?})");
    let (registry, github, refs) = github::limited(
        TOKEN,
        deletes,
        GITHUB_PER_WINDOW,
        Duration::from_secs(GITHUB_WINDOW),
        hint,
    );
    let home = tempfile::tempdir().expect("home");
    std::fs::write(home.path().join("config.json"), "{}").expect("docker config");
    let url = github.url();
    let (wall, kib) = regkit_delete(&refs, |c| {
        c.env_clear()
            .env("HOME", home.path())
            .arg("--docker-config")
            .arg(home.path())
            .args(["--repo-implementation", "github", "--github-api-url", &url])
            .args(["--repo-github-token", TOKEN])
            .args(["--github-delete-interval", "0"]);
    });
    let left = images::tag_digests(&registry.url(), "octo-org/app", &images::Auth::None);
    assert_eq!(
        left.keys().collect::<Vec<_>>(),
        ["keep"],
        "every version but keep's must go"
    );
    let answered = github.server.deletes();
    let deleted = answered.iter().filter(|(_, status)| *status == 204).count();
    let (refused, early) = github.limit_counts();
    let (accepted, span) = github.limit_accepted();
    assert_eq!((deleted, accepted), (deletes, deletes), "{answered:?}");
    assert_eq!(
        answered.len(),
        deleted + refused,
        "only limit refusals besides: {answered:?}"
    );
    github.server.assert_no_violations();
    let allowed = GITHUB_PER_WINDOW as f64 / GITHUB_WINDOW as f64;
    let rate = (accepted - 1) as f64 / span.as_secs_f64();
    Row {
        what: format!(
            "GitHub secondary limit on the GitHub stand-in ({GITHUB_PER_WINDOW} DELETEs per {GITHUB_WINDOW} s, then 403 with {}: 180 per minute and a 60 s wait scaled down 6× in time): `regkit delete --github-delete-interval 0` of {deletes} versions",
            match hint {
                LimitHint::RetryAfter(_) => format!("`retry-after: {GITHUB_WINDOW}`"),
                LimitHint::Reset(_) =>
                    "`x-ratelimit-remaining: 0` and `x-ratelimit-reset` a window ahead".into(),
            }
        ),
        ours: format!(
            "{rate:.2} DELETEs/s ({} from the first DELETE to the last; {} wall with the listing, peak RSS {}); {deleted} deleted, 0 failed, {refused} refused by the limit and waited out, {early} requests sent inside a wait",
            secs(span),
            secs(wall),
            mib(kib)
        ),
        peer: format!("allowed {allowed:.2}/s"),
        ratio: format!("{:.2}× the allowed rate", rate / allowed),
        target: "≥ 0.9× the allowed rate, 0 failed, 0 sent inside a wait".into(),
    }
}

/// The cost of following signatures (issue 17): `regkit cleanup --older-than 30d` on [`SIGNED_IMAGES`]
/// images dated 50 days ago, alone and each with a cosign signature and attestation (`sha256-<hex>.sig`,
/// `.att`, built as cosign writes them, `created: 0001-01-01`), every image going and its referrers with
/// it. Requests are counted at the registry's side by a relay in front of it, by kind.
fn cleanup_referrers() -> Row {
    use regkit_e2e::faultproxy::FaultProxy;
    use regkit_e2e::referrers::{self as refs, Cosign};
    eprintln!("bench: cleanup with signatures");
    let registry = Registry::start();
    let proxy = FaultProxy::start(registry.host());
    let url = registry.url();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let old = regkit::dates::format_rfc3339(now - 50 * 86_400);
    let names: Vec<String> = (0..SIGNED_IMAGES).map(|n| format!("t{n:03}")).collect();
    let dated: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), old.as_str())).collect();
    let pusher = images::Pusher::new(&url, &images::Auth::None);
    let home = tempfile::tempdir().expect("home");
    std::fs::write(home.path().join("config.json"), "{}").expect("docker config");
    let regkit = bins::ours("regkit");
    // (requests, deleted tags, requests by kind, wall, peak RSS)
    let mut runs = Vec::new();
    for (repo, signed) in [("bench/plain", false), ("bench/signed", true)] {
        let pushed = images::push_distinct_created(
            &url,
            repo,
            &dated,
            &images::Auth::None,
            images::Format::Oci,
        );
        if signed {
            for (_, digest) in &pushed {
                refs::push_cosign(&pusher, repo, digest, Cosign::Signature);
                refs::push_cosign(&pusher, repo, digest, Cosign::Attestation);
            }
        }
        let tags = images::tag_digests(&url, repo, &images::Auth::None).len();
        let first = proxy.heads().len();
        let target = format!("{}/{repo}", proxy.host());
        let started = Instant::now();
        let kib = peak_kib(
            &regkit,
            &[
                "--docker-config",
                &home.path().display().to_string(),
                "cleanup",
                "--yes",
                "--quiet",
                &target,
                "--older-than",
                "30d",
            ],
            Stdio::null(),
            |c| {
                c.env_clear().env("HOME", home.path());
            },
        );
        let wall = started.elapsed();
        assert!(
            images::tag_digests(&url, repo, &images::Auth::None).is_empty(),
            "{repo}: every image goes, and its referrers with it"
        );
        let heads = proxy.heads();
        let mut kinds: std::collections::BTreeMap<String, usize> = Default::default();
        for head in &heads[first..] {
            *kinds.entry(request_kind(head)).or_default() += 1;
        }
        runs.push((heads.len() - first, tags, kinds, wall, kib));
    }
    let per_tag = |run: &(usize, usize, _, _, _)| run.0 as f64 / run.1 as f64;
    let describe = |kinds: &std::collections::BTreeMap<String, usize>| {
        let mut parts: Vec<(usize, &String)> = kinds.iter().map(|(k, n)| (*n, k)).collect();
        parts.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
        parts
            .iter()
            .map(|(n, kind)| format!("{n} {kind}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (plain, signed) = (&runs[0], &runs[1]);
    Row {
        what: format!(
            "cleanup with signatures: `regkit cleanup --older-than 30d` deleting {SIGNED_IMAGES} images each with a cosign `.sig` and `.att` tag (distribution 2.8), requests per deleted tag counted by a relay in front of the registry; peer = the same {SIGNED_IMAGES} images without signatures"
        ),
        ours: format!(
            "{:.2} per tag: {} requests for {} tags ({}), {} (peak RSS {})",
            per_tag(signed),
            signed.0,
            signed.1,
            describe(&signed.2),
            secs(signed.3),
            mib(signed.4)
        ),
        peer: format!(
            "{:.2} per tag: {} requests for {} tags ({}), {}",
            per_tag(plain),
            plain.0,
            plain.1,
            describe(&plain.2),
            secs(plain.3)
        ),
        ratio: format!(
            "{:.2}× the unsigned cost per tag",
            per_tag(signed) / per_tag(plain)
        ),
        target: "no request to recognise a referrer: ≤ the unsigned cost per tag".into(),
    }
}

/// What a registry request is, from its request line: `HEAD manifest by tag`, `GET blob`, `DELETE
/// manifest by digest`…
fn request_kind(head: &str) -> String {
    let mut words = head.split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let what = if path.ends_with("/tags/list") {
        "tag list"
    } else if path.contains("/blobs/") {
        "blob"
    } else if path.contains("/manifests/sha256:") {
        "manifest by digest"
    } else if path.contains("/manifests/") {
        "manifest by tag"
    } else {
        "other"
    };
    format!("{method} {what}")
}

/// Every program `make install` ships: the Makefile's `BINARIES`.
fn shipped_binaries() -> Vec<String> {
    let makefile = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Makefile");
    let text = std::fs::read_to_string(&makefile).expect("read the Makefile");
    let line = text
        .lines()
        .find_map(|line| line.strip_prefix("BINARIES"))
        .and_then(|rest| rest.split_once(":="))
        .map(|(_, names)| names)
        .expect("the Makefile names BINARIES");
    line.split_whitespace().map(str::to_string).collect()
}

/// Size of every shipped binary (release, stripped by the profile) and its start-up cost: `version` (or
/// `--version`) beside the floor.
/// `count` tag records shaped like a busy repository: branch builds, semver releases with pre-releases,
/// commit tags, pull-request tags; dated over a year, a third with pull times.
fn policy_records(count: usize) -> Vec<regkit::policy::TagRecord> {
    const NOW: i64 = 1_800_000_000;
    (0..count)
        .map(|i| {
            let tag = match i % 5 {
                0 => format!("main-{i:07}"),
                1 => format!("release-{}-{i}", i % 40),
                2 => format!(
                    "v{}.{}.{}{}",
                    i % 7,
                    i % 50,
                    i % 13,
                    if i % 3 == 0 { "-rc.1" } else { "" }
                ),
                3 => format!("{:040x}", i.wrapping_mul(2_654_435_761)),
                _ => format!("feature-x{}-{i}", i % 200),
            };
            let created = NOW - (i as i64 * 7919) % (365 * 86_400);
            regkit::policy::TagRecord {
                tag,
                created: Some(created),
                last_pulled: (i % 3 == 0).then_some(created + 3_600),
            }
        })
        .collect()
}

/// This thread's CPU time in seconds (`/proc/thread-self/schedstat`): on a shared machine the wall time of
/// an in-process computation mostly measures the other processes.
fn thread_cpu() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|text| text.split(' ').next()?.parse::<f64>().ok())
        .map_or(0.0, |nanos| nanos / 1e9)
}

/// Deciding a policy with every rule on, in process: the median of 5 runs at 10,000 and 100,000 records
/// (linearity), in CPU and wall time, and the heap the 100,000-record decision takes at its peak.
fn policy_decide() -> Row {
    use regkit::policy::{GitRefs, KeepList, Listing, Options, Policy, Sort};
    eprintln!("bench: policy decision");
    let mut git = String::new();
    for branch in 0..200 {
        git.push_str(&format!(
            "{:040x}  refs/remotes/origin/feature/x{branch}\n",
            branch + 1
        ));
    }
    git.push_str(&format!(
        "{:040x}  refs/heads/main\n{:040x}  refs/tags/v1.2.0\n",
        7, 9
    ));
    let policy = Policy::from_options(Options {
        matches: vec!["^(main|release|v|feature|[0-9a-f])".into()],
        excludes: vec!["^release-0-".into()],
        keep_list: KeepList::parse("v1.*\nstable\n"),
        older_than: Some(30 * 86_400),
        keep_last: Some(5),
        group_by: Some("^(main|release-[0-9]+|feature-x[0-9]+)-".into()),
        sort: Sort::Semver,
        grace: 7_200,
        unpulled_for: Some(14 * 86_400),
        git: Some(GitRefs::parse(&git)),
        per_git_ref: Some(3),
    })
    .expect("policy");
    let listing = Listing {
        now: 1_800_000_000,
        pulls_unrecorded: None,
    };
    let time = |count: usize| {
        let records = policy_records(count);
        let mut runs: Vec<(f64, f64)> = (0..5)
            .map(|_| {
                let (cpu, start) = (thread_cpu(), Instant::now());
                let decisions = policy.decide(&records, listing);
                let elapsed = (thread_cpu() - cpu, start.elapsed().as_secs_f64());
                assert_eq!(decisions.len(), count);
                elapsed
            })
            .collect();
        runs.sort_by(|a, b| a.0.total_cmp(&b.0));
        runs[2]
    };
    let small = time(10_000);
    let large = time(100_000);
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split(' ').next().map(str::to_string))
        .unwrap_or_default();
    let records = policy_records(100_000);
    let base = IN_USE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let decisions = policy.decide(&records, listing);
    let peak = PEAK.load(Ordering::Relaxed) - base;
    let deleted = decisions.iter().filter(|d| d.delete).count();
    drop(decisions);
    Row {
        what: format!(
            "decide a policy with every rule (match, exclude, keep-list, keep-git + per-git-ref, keep-last per group, semver, grace, older-than, unpulled-for) on 100,000 tag records, in process ({deleted} selected)"
        ),
        ours: format!(
            "{:.3} s CPU, {:.3} s wall at load average {load} (heap peak {:.1} MiB)",
            large.0,
            large.1,
            peak as f64 / 1_048_576.0
        ),
        peer: format!("10,000 records {:.4} s CPU", small.0),
        ratio: format!("{:.1}× for 10× the records", large.0 / small.0),
        target: "≤ 0.2 s, linear in the tag count".into(),
    }
}

fn sizes_and_startup(runs: u32) -> Vec<Row> {
    let cat = bins::tool("cat", "coreutils");
    let empty = tempfile::NamedTempFile::new().expect("temp file");
    let programs: Vec<(String, PathBuf, &str)> = shipped_binaries()
        .iter()
        .map(|name| {
            let path = bins::ours(name);
            // The cheapest successful invocation; a program with neither (regkit-ecr-token) is timed
            // printing its usage error.
            let flag = ["version", "--version"]
                .into_iter()
                .find(|flag| {
                    Command::new(&path)
                        .arg(flag)
                        .stdin(Stdio::null())
                        .output()
                        .is_ok_and(|output| output.status.success())
                })
                .unwrap_or("");
            (name.to_string(), path, flag)
        })
        .collect();
    let mut commands = vec![with_stdin(&cat, "", empty.path())];
    commands.extend(
        programs
            .iter()
            .map(|(_, path, flag)| with_stdin(path, flag, empty.path())),
    );
    let medians = hyperfine(&commands, runs, |_| {});
    let floor = medians[0];
    programs
        .iter()
        .zip(&medians[1..])
        .map(|((name, path, flag), median)| {
            let bytes = std::fs::metadata(path).expect("binary size").len();
            let args: &[&str] = if flag.is_empty() { &[] } else { &[flag] };
            let kib = peak_kib(path, args, Stdio::null(), |_| {});
            Row {
                what: format!(
                    "`{name}`: stripped release size; `{}` start-up, floor {}",
                    format!("{name} {flag}").trim_end(),
                    ms(floor)
                ),
                ours: format!(
                    "{:.2} MiB; {} (peak RSS {})",
                    bytes as f64 / 1048576.0,
                    ms(*median),
                    mib(kib)
                ),
                peer: format!("floor {}", ms(floor)),
                ratio: format!("{:.2}× floor", median / floor),
                target: "(reported)".into(),
            }
        })
        .collect()
}

/// A keep-alive HTTP/1.1 client for raw registry calls: `workers` threads share one connection pool.
fn raw_agent() -> ureq::Agent {
    ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_idle_connections_per_host(64)
            .timeout_global(Some(Duration::from_secs(60)))
            .build(),
    )
}

/// Runs `job` on every item from `workers` threads; returns the wall time.
fn in_parallel<T: Sync>(items: &[T], workers: usize, job: impl Fn(&T) + Sync) -> Duration {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    job(item);
                }
            });
        }
    });
    started.elapsed()
}

/// The registry's own capacity: `DELETE /v2/<repo>/manifests/<digest>` of every digest, from several
/// keep-alive workers, with nothing else (no listing, no checks) — the rate no client can beat.
fn raw_delete(url: &str, repo: &str, digests: &[String], workers: usize) -> Duration {
    let agent = raw_agent();
    in_parallel(digests, workers, |digest| {
        let response = agent
            .delete(format!("{url}/v2/{repo}/manifests/{digest}"))
            .call()
            .expect("raw DELETE");
        assert_eq!(response.status(), 202, "raw DELETE {repo}@{digest}");
    })
}

/// Tags `tags` onto the manifest `digest` of `repo`, from several keep-alive workers.
fn retag(url: &str, repo: &str, digest: &str, tags: &[String]) {
    let agent = raw_agent();
    let mut response = agent
        .get(format!("{url}/v2/{repo}/manifests/{digest}"))
        .header("accept", images::ACCEPT_ALL)
        .call()
        .expect("GET manifest");
    assert_eq!(response.status(), 200, "GET manifest {repo}@{digest}");
    let media_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .expect("content type")
        .to_string();
    let body = response.body_mut().read_to_vec().expect("manifest body");
    in_parallel(tags, 4, |tag| {
        let response = agent
            .put(format!("{url}/v2/{repo}/manifests/{tag}"))
            .header("content-type", &media_type)
            .send(&body[..])
            .expect("PUT manifest");
        assert_eq!(response.status(), 201, "PUT manifest {repo}:{tag}");
    });
}

/// Peak resident memory (KiB) of one run of `program args` with `stdin`, from `/usr/bin/time`.
fn peak_kib(program: &Path, args: &[&str], stdin: Stdio, configure: impl Fn(&mut Command)) -> u64 {
    let time = PathBuf::from("/usr/bin/time");
    assert!(
        time.is_file(),
        "/usr/bin/time is required: apt-get install time (make bench does)"
    );
    let report = tempfile::NamedTempFile::new().expect("temp file");
    let mut command = Command::new(time);
    command
        .args(["-f", "%M", "-o"])
        .arg(report.path())
        .arg(program)
        .args(args)
        .stdin(stdin)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    configure(&mut command);
    command.status().expect("run /usr/bin/time");
    // A failing program's report starts with its exit status; the figure is the last line either way.
    std::fs::read_to_string(report.path())
        .expect("read /usr/bin/time report")
        .lines()
        .last()
        .and_then(|line| line.trim().parse().ok())
        .expect("max RSS in KiB")
}

/// Fails unless `program get` with `key` on stdin succeeds and prints `secret`: a timed hit must be a hit.
fn assert_answers(program: &Path, key: &Path, secret: &str, configure: impl Fn(&mut Command)) {
    let mut command = Command::new(program);
    command.arg("get").stdin(stdin_of(key));
    configure(&mut command);
    let output = command.output().expect("run get");
    assert!(
        output.status.success() && String::from_utf8_lossy(&output.stdout).contains(secret),
        "{} get did not answer: {}",
        program.display(),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn stdin_of(path: &Path) -> Stdio {
    Stdio::from(std::fs::File::open(path).expect("open stdin file"))
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// `regkit delete --stdin --quiet` of `refs`; the wall time and the peak RSS.
fn regkit_delete(refs: &[String], configure: impl Fn(&mut Command)) -> (Duration, u64) {
    let regkit = bins::ours("regkit");
    let input = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(input.path(), refs.join("\n")).expect("write refs");
    let started = Instant::now();
    let kib = peak_kib(
        &regkit,
        &["delete", "--stdin", "--quiet", "--output", "json"],
        Stdio::from(std::fs::File::open(input.path()).expect("refs")),
        configure,
    );
    (started.elapsed(), kib)
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
