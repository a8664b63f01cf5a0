//! `regkit undo` on Debian's distribution registry: what a cleanup removed (a manifest by digest, a tag
//! through a tombstone, a multi-arch index, a signature with its subject) comes back with the exact
//! tag → digest map; a garbage-collected blob is `lost`, a tag pushed again is a `conflict`, and edited
//! or truncated journal lines are refused one by one.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use regkit_e2e::bins;
use regkit_e2e::images::{self, Auth, Format, Pusher};
use regkit_e2e::referrers::{self as refs, Cosign};
use regkit_e2e::registry::{self, Options, Registry};
use serde_json::Value;
use tempfile::TempDir;

const REPO: &str = "team/app";

/// A home with an empty docker config; journals go to its `state/regkit/journal`.
fn home() -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("config.json"), "{}").unwrap();
    dir
}

fn regkit(home: &Path, args: &[&str]) -> Output {
    Command::new(bins::ours("regkit"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("XDG_STATE_HOME", home.join("state"))
        .arg("--docker-config")
        .arg(home)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// The JSON lines of a run that exited `code`.
fn lines(output: &Output, code: i32) -> Vec<Value> {
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// `status` of each row by reference.
fn statuses(lines: &[Value]) -> BTreeMap<String, String> {
    lines
        .iter()
        .filter_map(|line| {
            Some((
                line["reference"].as_str()?.to_string(),
                line["status"].as_str()?.to_string(),
            ))
        })
        .collect()
}

fn tags(registry: &Registry) -> BTreeMap<String, String> {
    images::tag_digests(&registry.url(), REPO, &Auth::None)
}

#[test]
fn undo_restores_the_exact_tag_map_and_the_index_pulls_again() {
    let registry = Registry::start();
    let url = registry.url();
    let pusher = Pusher::new(&url, &Auth::None);
    // By digest: both tags of one image go.
    images::push(&url, REPO, &["gone-1", "gone-2"], &Auth::None);
    // Through a tombstone: `keep` stays on the image `drop` leaves.
    images::push(&url, REPO, &["keep", "drop"], &Auth::None);
    let index = images::push_index(&url, REPO, "multi", &Auth::None, Format::Oci);
    let signed = images::push(&url, REPO, &["signed"], &Auth::None);
    let (signature, _) = refs::push_cosign(&pusher, REPO, &signed, Cosign::Signature);
    let before = tags(&registry);
    let home = home();
    let journal = home.path().join("run.jsonl");
    let repository = format!("{}/{REPO}", registry.host());

    let cleanup = regkit(
        home.path(),
        &[
            "cleanup",
            &repository,
            "--all",
            "--match",
            "^(gone-|drop|multi|signed)",
            "--grace",
            "0",
            "--without-kube",
            "--yes",
            "--output",
            "json",
            "--journal",
            journal.to_str().unwrap(),
        ],
    );
    let run = lines(&cleanup, 0);
    assert_eq!(
        run.last().unwrap()["journal"],
        journal.to_str().unwrap(),
        "the summary line names the journal"
    );
    let after = tags(&registry);
    for gone in [
        "gone-1",
        "gone-2",
        "drop",
        "multi",
        "signed",
        signature.as_str(),
    ] {
        assert!(!after.contains_key(gone), "{gone} was removed: {after:?}");
    }
    assert_eq!(after["keep"], before["keep"]);
    let written = fs::read_to_string(&journal).unwrap();
    assert_eq!(
        written.lines().count(),
        7,
        "a header and one line per tag:\n{written}"
    );
    assert!(written.contains("\"change\":\"tombstone-untag\""));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&journal).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    let planned = regkit(
        home.path(),
        &[
            "undo",
            journal.to_str().unwrap(),
            "--dry-run",
            "--output",
            "json",
        ],
    );
    let planned = statuses(&lines(&planned, 0));
    assert_eq!(planned.len(), 6);
    assert!(
        planned.values().all(|status| status == "planned"),
        "{planned:?}"
    );
    assert_eq!(tags(&registry), after, "a dry run pushes nothing");

    let undone = regkit(
        home.path(),
        &["undo", journal.to_str().unwrap(), "--output", "json"],
    );
    let undone = statuses(&lines(&undone, 0));
    assert!(
        undone.values().all(|status| status == "restored"),
        "{undone:?}"
    );
    assert_eq!(
        tags(&registry),
        before,
        "the exact tag → digest map is back"
    );
    assert_eq!(before["multi"], index.digest);

    let copy = tempfile::tempdir().unwrap();
    let skopeo = Command::new(bins::tool("skopeo", "skopeo"))
        .args(["copy", "--all", "--src-tls-verify=false"])
        .arg(format!("docker://{repository}:multi"))
        .arg(format!(
            "oci:{}:multi",
            copy.path().join("layout").display()
        ))
        .output()
        .unwrap();
    assert!(
        skopeo.status.success(),
        "skopeo copy --all: {}",
        String::from_utf8_lossy(&skopeo.stderr)
    );

    // Everything is in place now: a second undo changes nothing and says so.
    let again = regkit(
        home.path(),
        &["undo", journal.to_str().unwrap(), "--output", "json"],
    );
    assert!(
        statuses(&lines(&again, 0))
            .values()
            .all(|s| s == "restored")
    );
}

#[test]
fn a_collected_blob_is_lost_and_a_tag_pushed_again_is_a_conflict() {
    let data = tempfile::tempdir().unwrap();
    let options = Options {
        data_dir: Some(data.path().join("data")),
        ..Options::default()
    };
    let registry = Registry::start_with(options.clone());
    let url = registry.url();
    // Docker-format images carry their nonce in the config: each has a config blob of its own.
    let collected = images::push_as(&url, REPO, &["collected"], &Auth::None, Format::Docker);
    images::push_as(
        &url,
        REPO,
        &["repushed", "stays"],
        &Auth::None,
        Format::Docker,
    );
    let pusher = Pusher::new(&url, &Auth::None);
    let (_, body) = pusher.manifest(REPO, &collected).unwrap();
    let config: Value = serde_json::from_slice(&body).unwrap();
    let config_digest = config["config"]["digest"].as_str().unwrap().to_string();
    let home = home();
    let host = registry.host().to_string();
    let deleted = regkit(
        home.path(),
        &[
            "delete",
            &format!("{host}/{REPO}:collected"),
            &format!("{host}/{REPO}:repushed"),
            "--output",
            "json",
        ],
    );
    let run = lines(&deleted, 0);
    let journal = run.last().unwrap()["journal"].as_str().unwrap().to_string();
    assert!(
        journal.starts_with(home.path().join("state/regkit/journal").to_str().unwrap()),
        "{journal}"
    );
    let repushed = images::push(&url, REPO, &["repushed"], &Auth::None);
    drop(registry);
    registry::garbage_collect(&data.path().join("data"));
    let registry = Registry::start_with(options);
    // The restarted registry listens on another port: the journal follows it.
    let moved = fs::read_to_string(&journal)
        .unwrap()
        .replace(&host, registry.host());
    fs::write(&journal, moved).unwrap();
    let before = tags(&registry);

    // The dry run already knows: the same rows, nothing pushed.
    let planned = regkit(
        home.path(),
        &["undo", "--last", "--dry-run", "--output", "json"],
    );
    let planned = statuses(&lines(&planned, 1));
    let mut seen: Vec<&str> = planned.values().map(String::as_str).collect();
    seen.sort();
    assert_eq!(seen, ["conflict", "lost"], "{planned:?}");

    let undone = regkit(home.path(), &["undo", "--last", "--output", "json"]);
    let rows = lines(&undone, 1);
    let host = registry.host();
    let row = |tag: &str| {
        rows.iter()
            .find(|row| row["reference"] == format!("{host}/{REPO}:{tag}"))
            .unwrap_or_else(|| panic!("no row for {tag}: {rows:?}"))
    };
    assert_eq!(row("collected")["status"], "lost");
    let error = row("collected")["error"].as_str().unwrap();
    assert!(
        error.contains(&format!("blob {config_digest} is gone")),
        "{error}"
    );
    assert_eq!(row("repushed")["status"], "conflict");
    assert!(
        row("repushed")["error"]
            .as_str()
            .unwrap()
            .contains(&repushed)
    );
    assert_eq!(tags(&registry), before, "nothing changed");
    assert_eq!(before["repushed"], repushed);
}

#[test]
fn edited_and_truncated_lines_are_refused_one_by_one() {
    let registry = Registry::start();
    let url = registry.url();
    images::push_distinct(&url, REPO, &["a", "b", "c"], &Auth::None);
    let before = tags(&registry);
    let home = home();
    let host = registry.host();
    let deleted = regkit(
        home.path(),
        &[
            "delete",
            &format!("{host}/{REPO}:a"),
            &format!("{host}/{REPO}:b"),
            &format!("{host}/{REPO}:c"),
            "--output",
            "json",
        ],
    );
    let journal = lines(&deleted, 0).last().unwrap()["journal"]
        .as_str()
        .unwrap()
        .to_string();
    let written = fs::read_to_string(&journal).unwrap();
    let mut kept: Vec<String> = written.lines().map(str::to_string).collect();
    let line_of = |tag: &str| {
        kept.iter()
            .position(|line| line.contains(&format!("\"tag\":\"{tag}\"")))
            .unwrap()
    };
    // `a`'s body is edited (its digest no longer matches); `b`'s line is cut short, as a crash would.
    let (a, b) = (line_of("a"), line_of("b"));
    let mut entry: Value = serde_json::from_str(&kept[a]).unwrap();
    entry["body"] = "e30=".into();
    kept[a] = entry.to_string();
    let half = kept[b].len() / 2;
    kept[b].truncate(half);
    let mut text = kept.join("\n");
    if b + 1 != kept.len() {
        // A cut line in the middle of the file is a line that does not parse.
        text.push('\n');
    }
    fs::write(&journal, text).unwrap();

    let undone = regkit(home.path(), &["undo", &journal, "--output", "json"]);
    let rows = lines(&undone, 1);
    let errors: Vec<&str> = rows
        .iter()
        .filter_map(|row| row["error"].as_str())
        .collect();
    assert_eq!(errors.len(), 2, "{rows:?}");
    assert!(errors.iter().any(|error| error.contains(&format!(
        "line {}: the body hashes to sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
        a + 1
    ))));
    assert!(
        errors
            .iter()
            .any(|error| error.contains(&format!("line {}: ", b + 1)))
    );
    assert!(
        errors
            .iter()
            .all(|error| error.ends_with("nothing pushed for it"))
    );
    let after = tags(&registry);
    assert_eq!(
        after.get("c"),
        before.get("c"),
        "the line that verifies is restored"
    );
    assert!(!after.contains_key("a") && !after.contains_key("b"));

    let stderr = String::from_utf8_lossy(&undone.stderr);
    assert!(
        stderr.lines().all(|line| line.starts_with("regkit: ")),
        "{stderr}"
    );

    let listed = regkit(home.path(), &["journal", "list", "--output", "json"]);
    let listed = lines(&listed, 0);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["command"], "delete");
    assert_eq!(listed[0]["refused"], 2);

    // A file that is no journal at all: one line, exit 2, nothing pushed.
    let other = home.path().join("other.jsonl");
    fs::write(&other, "{\"summary\":{}}\n").unwrap();
    let refused = regkit(home.path(), &["undo", other.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("is not a regkit undo journal (line 1:"),
        "{stderr}"
    );
}

#[test]
fn journal_options_are_checked_before_anything_is_deleted() {
    let registry = Registry::start();
    let url = registry.url();
    images::push_distinct(&url, REPO, &["a", "b"], &Auth::None);
    let before = tags(&registry);
    let home = home();
    let taken = home.path().join("taken.jsonl");
    fs::write(&taken, "mine\n").unwrap();
    let reference = format!("{}/{REPO}:a", registry.host());

    let refused = regkit(
        home.path(),
        &["delete", &reference, "--journal", taken.to_str().unwrap()],
    );
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("exists already: name a new file"),
        "{stderr}"
    );
    assert_eq!(fs::read_to_string(&taken).unwrap(), "mine\n");
    assert_eq!(tags(&registry), before, "nothing deleted");

    let both = regkit(
        home.path(),
        &["delete", &reference, "--journal", "x.jsonl", "--no-journal"],
    );
    assert_eq!(both.status.code(), Some(2));
    assert_eq!(tags(&registry), before);

    let missing = regkit(home.path(), &["undo", "--last"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no undo journal in"));

    // Text output names the journal on its last line; --no-journal writes none.
    let deleted = regkit(home.path(), &["delete", &reference]);
    assert_eq!(deleted.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&deleted.stdout);
    let last = stdout.lines().last().unwrap();
    assert!(last.starts_with("undo journal: "), "{stdout}");
    assert!(last.contains("state/regkit/journal/"), "{last}");
    let unjournaled = regkit(
        home.path(),
        &[
            "delete",
            &format!("{}/{REPO}:b", registry.host()),
            "--no-journal",
        ],
    );
    assert_eq!(unjournaled.status.code(), Some(0));
    assert!(!String::from_utf8_lossy(&unjournaled.stdout).contains("undo journal"));
    let journals = fs::read_dir(home.path().join("state/regkit/journal")).unwrap();
    assert_eq!(journals.count(), 1);
}
