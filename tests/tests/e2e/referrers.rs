//! Signatures, attestations and SBOMs follow their image through `regkit cleanup`, on Debian's
//! distribution registry (which serves no referrers API): cosign-shaped artifacts (`created:
//! 0001-01-01…`), OCI 1.1 artifacts with a `subject` pushed by the `oras` Python SDK, and the OCI 1.1
//! referrers tag schema. Every test compares the full tag → digest map before and after, and checks the
//! untagged referrers by digest.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Output;
use std::time::{SystemTime, UNIX_EPOCH};

use regkit::dates::format_rfc3339;
use regkit_e2e::bins::{self, empty_docker_config as docker_config};
use regkit_e2e::faultproxy::{Fault, FaultProxy, Rule};
use regkit_e2e::images::{self, Auth, Format, Pusher};
use regkit_e2e::referrers::{self as refs, Cosign};
use regkit_e2e::registry::Registry;
use serde_json::Value;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const SBOM_TYPE: &str = "application/spdx+json";

fn days_ago(days: i64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    format_rfc3339(now - days * 86_400)
}

/// `regkit ARGS` with a clean environment and piped stdin answering "n" to any prompt.
fn regkit(config: &Path, args: &[&str]) -> Output {
    bins::regkit_piped(config, args, "n\n")
}

/// `regkit --output json cleanup --yes TARGET --older-than 30d`.
fn cleanup_older_than_30d(config: &Path, target: &str) -> Output {
    let args = [
        "--output",
        "json",
        "cleanup",
        "--yes",
        target,
        "--older-than",
        "30d",
    ];
    regkit(config, &args)
}

/// The JSON rows keyed by tag (untagged rows by digest), and the summary; the run must exit `code`.
fn parse(output: &Output, code: i32) -> (BTreeMap<String, Value>, Value) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let mut rows = BTreeMap::new();
    let mut summary = Value::Null;
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let value: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        if let Some(found) = value.get("summary") {
            summary = found.clone();
        } else if value.get("repository_note").is_none() {
            let key = value["tag"].as_str().or(value["digest"].as_str()).unwrap();
            rows.insert(key.to_string(), value);
        }
    }
    (rows, summary)
}

/// One image with everything that refers to it.
struct Signed {
    digest: String,
    /// The image's tag and every tag of its referrers (cosign's, the tag schema's, oras's).
    tags: BTreeSet<String>,
    /// Referrers no tag names (listed by the tag-schema index only).
    untagged: Vec<String>,
}

/// Pushes images v1 (50 days old), v2 (40), v3 (2) and v4 (1); each signed, v1 and v3 also attested (the
/// attestation signed in turn), with an SBOM (cosign's and one pushed by oras with a `subject`) and an
/// untagged artifact listed by the OCI 1.1 tag-schema index.
fn supply_chain(registry: &Registry, repo: &str) -> BTreeMap<String, Signed> {
    let pusher = Pusher::new(&registry.url(), &Auth::None);
    let dated = [
        ("v1", days_ago(50)),
        ("v2", days_ago(40)),
        ("v3", days_ago(2)),
        ("v4", days_ago(1)),
    ];
    let pairs: Vec<(&str, &str)> = dated.iter().map(|(t, c)| (*t, c.as_str())).collect();
    let pushed =
        images::push_distinct_created(&registry.url(), repo, &pairs, &Auth::None, Format::Oci);
    let mut signed = BTreeMap::new();
    for (tag, digest) in pushed {
        let mut tags = BTreeSet::from([tag.clone()]);
        let mut untagged = Vec::new();
        tags.insert(refs::push_cosign(&pusher, repo, &digest, Cosign::Signature).0);
        if tag == "v1" || tag == "v3" {
            let (att_tag, att) = refs::push_cosign(&pusher, repo, &digest, Cosign::Attestation);
            tags.insert(att_tag);
            tags.insert(refs::push_cosign(&pusher, repo, &att, Cosign::Signature).0);
            tags.insert(refs::push_cosign(&pusher, repo, &digest, Cosign::Sbom).0);
            let oras_tag = format!("sbom-{tag}");
            let size = pusher.manifest(repo, &digest).unwrap().1.len();
            refs::oras_attach(registry.host(), repo, &oras_tag, (&digest, size), SBOM_TYPE);
            tags.insert(oras_tag);
            let (artifact, size) = refs::push_subject_artifact(
                &pusher,
                repo,
                &digest,
                "application/vnd.example.vex",
                None,
            );
            refs::push_schema_index(
                &pusher,
                repo,
                &digest,
                &[(artifact.clone(), size, "application/vnd.example.vex")],
            );
            tags.insert(refs::schema_tag(&digest));
            untagged.push(artifact);
        }
        signed.insert(
            tag,
            Signed {
                digest,
                tags,
                untagged,
            },
        );
    }
    signed
}

fn tag_map(registry: &Registry, repo: &str) -> BTreeMap<String, String> {
    images::tag_digests(&registry.url(), repo, &Auth::None)
}

/// Asserts that exactly the images `deleted` went, each with all its referrers, and nothing else changed.
fn assert_only_deleted(
    registry: &Registry,
    repo: &str,
    signed: &BTreeMap<String, Signed>,
    before: &BTreeMap<String, String>,
    deleted: &[&str],
) {
    let mut expected = before.clone();
    for image in deleted {
        for tag in &signed[*image].tags {
            assert!(expected.remove(tag).is_some(), "{tag} was never pushed");
        }
    }
    assert_eq!(tag_map(registry, repo), expected, "tags after the run");
    let pusher = Pusher::new(&registry.url(), &Auth::None);
    for (image, it) in signed {
        let gone = deleted.contains(&image.as_str());
        for artifact in &it.untagged {
            assert_eq!(
                pusher.head_manifest(repo, artifact).is_none(),
                gone,
                "untagged referrer {artifact} of {image}"
            );
        }
    }
}

#[test]
fn every_policy_keeps_the_referrers_of_kept_images_and_takes_those_of_deleted_ones() {
    let registry = Registry::start();
    let config = docker_config();
    let keep_list = config.path().join("keep.txt");
    std::fs::write(&keep_list, "v3\nv4\n").unwrap();
    let keep_list = keep_list.to_str().unwrap();
    let policies: [(&str, Vec<&str>); 6] = [
        ("older", vec!["--older-than", "30d"]),
        ("keep-last", vec!["--keep-last", "2"]),
        ("match", vec!["--match", "^v[12]$"]),
        // The oras SBOMs pass this filter: only reading their `subject` keeps them.
        ("exclude", vec!["--exclude", "^v[34]$"]),
        ("keep-list", vec!["--keep-list", keep_list]),
        ("untagged", vec!["--untagged", "--older-than", "30d"]),
    ];
    for (name, policy) in policies {
        let repo = format!("team/{name}");
        let signed = supply_chain(&registry, &repo);
        let before = tag_map(&registry, &repo);
        let target = format!("{}/{repo}", registry.host());
        let mut args = vec!["--output", "json", "cleanup", "--yes", target.as_str()];
        args.extend(&policy);
        let (rows, summary) = parse(&regkit(config.path(), &args), 0);
        assert_only_deleted(&registry, &repo, &signed, &before, &["v1", "v2"]);
        // Each referrer of v1 is a row of its own naming the subject it followed.
        let v1 = &signed["v1"];
        for tag in v1.tags.iter().filter(|tag| *tag != "v1") {
            let row = &rows[tag];
            assert_eq!(row["rule"], "follows-subject", "{name}: {tag}: {row}");
            assert_eq!(row["result"], "deleted", "{name}: {tag}: {row}");
            assert!(row["subject"].is_string(), "{name}: {tag}: {row}");
        }
        assert_eq!(rows[&v1.untagged[0]]["rule"], "follows-subject");
        // The attestation's signature refers to the attestation, not to the image.
        let att = refs::cosign_tag(&v1.digest, Cosign::Attestation);
        let att_sig = v1
            .tags
            .iter()
            .find(|tag| tag.ends_with(".sig") && !tag.starts_with(&refs::schema_tag(&v1.digest)))
            .unwrap();
        assert_eq!(rows[att_sig]["subject"], before[&att].as_str(), "{name}");
        // A kept image's referrers are kept as referrers, however old cosign says they are.
        let v3_sig = refs::cosign_tag(&signed["v3"].digest, Cosign::Signature);
        assert_eq!(rows[&v3_sig]["rule"], "referrer", "{name}");
        assert_eq!(
            rows[&v3_sig]["created"],
            Value::Null,
            "{name}: not even dated"
        );
        assert_eq!(summary["orphans"], 0, "{name}");
    }
}

#[test]
fn dry_run_lists_every_referrer_that_would_go_and_changes_nothing() {
    let registry = Registry::start();
    let config = docker_config();
    let repo = "team/dry";
    let signed = supply_chain(&registry, repo);
    let before = tag_map(&registry, repo);
    let target = format!("{}/{repo}", registry.host());
    let output = regkit(
        config.path(),
        &[
            "--dry-run",
            "--output",
            "json",
            "cleanup",
            &target,
            "--older-than",
            "30d",
        ],
    );
    let (rows, summary) = parse(&output, 0);
    assert_only_deleted(&registry, repo, &signed, &before, &[]);
    let planned: BTreeSet<&str> = rows
        .iter()
        .filter(|(_, row)| row["result"] == "planned")
        .map(|(key, _)| key.as_str())
        .collect();
    let mut expected: BTreeSet<&str> = BTreeSet::new();
    for image in ["v1", "v2"] {
        expected.extend(signed[image].tags.iter().map(String::as_str));
        expected.extend(signed[image].untagged.iter().map(String::as_str));
    }
    assert_eq!(planned, expected);
    assert_eq!(summary["planned"], expected.len());
}

#[test]
fn keep_referrers_leaves_orphans_that_orphans_removes_later() {
    let registry = Registry::start();
    let config = docker_config();
    let repo = "team/orphans";
    let signed = supply_chain(&registry, repo);
    let before = tag_map(&registry, repo);
    let target = format!("{}/{repo}", registry.host());
    // Without the grace window no rule needs the dates of kept tags, so a run that deletes nothing reads
    // no manifest (the count of orphans below depends on it).
    let base = [
        "--output",
        "json",
        "cleanup",
        "--yes",
        target.as_str(),
        "--grace",
        "0",
    ];
    let mut args = base.to_vec();
    args.extend(["--older-than", "30d", "--keep-referrers"]);
    let (rows, summary) = parse(&regkit(config.path(), &args), 0);
    let mut expected = before.clone();
    expected.remove("v1");
    expected.remove("v2");
    assert_eq!(tag_map(&registry, repo), expected);
    // Their direct referrers are orphans now (v1: sig, att, sbom, oras sbom, schema index; v2: sig).
    let orphans: Vec<&String> = rows
        .iter()
        .filter(|(_, row)| row["rule"] == "orphan")
        .map(|(key, _)| key)
        .collect();
    assert_eq!(orphans.len(), 6, "{orphans:?}");
    assert_eq!(summary["orphans"], 6);
    // A later run without --orphans that deletes nothing counts those its tag names show (the oras SBOM
    // is known by reading its manifest, which such a run does not do); with --orphans they all go, with
    // their own referrers.
    let mut args = base.to_vec();
    args.extend(["--match", "^$"]);
    let (_, summary) = parse(&regkit(config.path(), &args), 0);
    assert_eq!(summary["orphans"], 5);
    assert_eq!(tag_map(&registry, repo), expected);
    let mut args = base.to_vec();
    args.extend(["--match", "^$", "--orphans"]);
    let (_, summary) = parse(&regkit(config.path(), &args), 0);
    assert_eq!(summary["orphans"], 6);
    assert_only_deleted(&registry, repo, &signed, &before, &["v1", "v2"]);
}

#[test]
fn multi_arch_indexes_take_their_signatures_and_signed_children_keep_theirs() {
    let registry = Registry::start();
    let config = docker_config();
    let repo = "team/multi";
    let pusher = Pusher::new(&registry.url(), &Auth::None);
    let multi = images::push_index(&registry.url(), repo, "multi", &Auth::None, Format::Oci);
    let kept = images::push_index(&registry.url(), repo, "kept", &Auth::None, Format::Oci);
    // Nested two levels: "nested" → an untagged index → multi's children.
    let children: Vec<(&str, &str)> = multi
        .children
        .iter()
        .map(|child| (child.as_str(), OCI_MANIFEST))
        .collect();
    let inner = refs::push_index_of(&pusher, repo, None, &children);
    let nested = refs::push_index_of(&pusher, repo, Some("nested"), &[(&inner, OCI_INDEX)]);
    for subject in [
        &multi.digest,
        &multi.children[0],
        &kept.digest,
        &kept.children[1],
        &inner,
        &nested,
    ] {
        refs::push_cosign(&pusher, repo, subject, Cosign::Signature);
    }
    let before = tag_map(&registry, repo);
    let target = format!("{}/{repo}", registry.host());
    let output = regkit(
        config.path(),
        &[
            "--output",
            "json",
            "cleanup",
            "--yes",
            &target,
            "--match",
            "^(multi|nested)$",
            // The indexes of indexes carry no date, which the grace window would keep.
            "--grace",
            "0",
        ],
    );
    let (rows, _) = parse(&output, 0);
    let sig = |digest: &str| refs::cosign_tag(digest, Cosign::Signature);
    let mut expected = before.clone();
    for tag in [
        "multi".to_string(),
        "nested".into(),
        sig(&multi.digest),
        sig(&nested),
    ] {
        assert!(expected.remove(&tag).is_some(), "{tag}");
    }
    // The children and the inner index are still in the registry (plain v2 deletes no child with its
    // index), so their signatures stay with them.
    assert_eq!(tag_map(&registry, repo), expected);
    assert_eq!(rows[&sig(&multi.children[0])]["rule"], "referrer");
    assert_eq!(rows[&sig(&inner)]["rule"], "referrer");
    assert_eq!(rows[&sig(&nested)]["rule"], "follows-subject");
    assert!(pusher.head_manifest(repo, &multi.children[0]).is_some());
}

#[test]
fn bad_referrers_short_hex_missing_subjects_and_cycles() {
    let registry = Registry::start();
    let config = docker_config();
    let pusher = Pusher::new(&registry.url(), &Auth::None);
    let repo = "team/bad";
    let old = days_ago(50);
    let pushed = images::push_distinct_created(
        &registry.url(),
        repo,
        &[("v1", old.as_str()), ("sha256-abc.sig", old.as_str())],
        &Auth::None,
        Format::Oci,
    );
    let v1 = pushed[0].1.clone();
    let missing = format!("sha256:{}", "e".repeat(64));
    let (orphan_tag, _) = refs::push_cosign(&pusher, repo, &missing, Cosign::Signature);
    let before = tag_map(&registry, repo);
    let target = format!("{}/{repo}", registry.host());
    let (rows, summary) = parse(
        &regkit(
            config.path(),
            &[
                "--output",
                "json",
                "cleanup",
                "--yes",
                &target,
                "--match",
                "^sha256-abc",
            ],
        ),
        0,
    );
    // A hex part that is not 64 digits makes an ordinary tag, which the policy selects.
    assert_eq!(rows["sha256-abc.sig"]["result"], "deleted");
    assert_eq!(rows[&orphan_tag]["rule"], "orphan");
    assert_eq!(summary["orphans"], 1);
    let mut expected = before.clone();
    expected.remove("sha256-abc.sig");
    assert_eq!(tag_map(&registry, repo), expected);

    // A cycle: two manifests, each tagged as the other's signature.
    let cycle = "team/cycle";
    let (a, _) =
        refs::push_subject_artifact(&pusher, cycle, &v1, "application/vnd.example.a", Some("a"));
    let (b, _) =
        refs::push_subject_artifact(&pusher, cycle, &v1, "application/vnd.example.b", Some("b"));
    for (manifest, subject) in [(&a, &b), (&b, &a)] {
        let (media_type, body) = pusher.manifest(cycle, manifest).unwrap();
        pusher.put_manifest(
            cycle,
            &refs::cosign_tag(subject, Cosign::Signature),
            &media_type,
            &body,
        );
    }
    let before = tag_map(&registry, cycle);
    let target = format!("{}/{cycle}", registry.host());
    let output = regkit(config.path(), &["cleanup", "--yes", "--all", &target]);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("referrer cycle: sha256:"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert_eq!(tag_map(&registry, cycle), before);
}

/// The cost figure for BENCHMARKS.md: requests a `cleanup --older-than` sends per deleted tag, on 200
/// images alone and on 200 images each with its cosign signature (counted by a relay in front of the
/// registry). Recognising a signature by its tag costs no request: the signed run may cost no more per
/// deleted tag than the plain one. Asking the OCI 1.1 referrers API, which this registry does not serve,
/// costs one request per run.
#[test]
fn requests_per_deleted_tag_with_and_without_signatures() {
    let registry = Registry::start();
    let proxy = FaultProxy::start(registry.host());
    let config = docker_config();
    let pusher = Pusher::new(&registry.url(), &Auth::None);
    let old = days_ago(50);
    let names: Vec<String> = (0..200).map(|n| format!("t{n:03}")).collect();
    let dated: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), old.as_str())).collect();
    let mut per_tag = Vec::new();
    for (repo, signed) in [("bench/plain", false), ("bench/signed", true)] {
        let pushed =
            images::push_distinct_created(&registry.url(), repo, &dated, &Auth::None, Format::Oci);
        if signed {
            for (_, digest) in &pushed {
                refs::push_cosign(&pusher, repo, digest, Cosign::Signature);
            }
        }
        let before = proxy.requests();
        let referrer_gets = || {
            let heads = proxy.heads();
            heads
                .iter()
                .filter(|head| head.contains("/referrers/"))
                .count()
        };
        let asked_before = referrer_gets();
        let target = format!("{}/{repo}", proxy.host());
        let output = cleanup_older_than_30d(config.path(), &target);
        let (_, summary) = parse(&output, 0);
        let sent = proxy.requests() - before;
        // The registry serves no referrers API: its first 404 settles that for the run.
        assert_eq!(
            referrer_gets() - asked_before,
            1,
            "one referrers GET per run"
        );
        let deleted = summary["deleted"].as_u64().unwrap() as usize;
        assert_eq!(deleted, if signed { 400 } else { 200 });
        assert!(tag_map(&registry, repo).is_empty());
        let ratio = sent as f64 / deleted as f64;
        eprintln!("{repo}: {sent} requests for {deleted} deleted tags, {ratio:.2} per tag");
        per_tag.push(ratio);
    }
    assert!(per_tag[1] <= per_tag[0], "{per_tag:?}");
}

#[test]
fn deleting_a_manifest_by_digest_takes_its_referrers_unless_asked_to_keep_them() {
    let registry = Registry::start();
    let config = docker_config();
    let repo = "team/by-digest";
    let signed = supply_chain(&registry, repo);
    let before = tag_map(&registry, repo);
    let reference = |image: &str| format!("{}/{repo}@{}", registry.host(), signed[image].digest);
    let output = regkit(config.path(), &["delete", &reference("v1")]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_only_deleted(&registry, repo, &signed, &before, &["v1"]);
    let mut expected = tag_map(&registry, repo);
    assert!(expected.remove("v2").is_some());
    let output = regkit(
        config.path(),
        &["delete", "--keep-referrers", &reference("v2")],
    );
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let after = tag_map(&registry, repo);
    assert_eq!(after, expected);
    assert!(after.contains_key(&refs::cosign_tag(&signed["v2"].digest, Cosign::Signature)));
}

#[test]
fn tags_tree_shows_each_image_with_its_referrers_beneath_it() {
    let registry = Registry::start();
    let config = docker_config();
    let repo = "team/tree";
    let signed = supply_chain(&registry, repo);
    let pusher = Pusher::new(&registry.url(), &Auth::None);
    let missing = format!("sha256:{}", "d".repeat(64));
    let (orphan_tag, _) = refs::push_cosign(&pusher, repo, &missing, Cosign::Signature);
    let before = tag_map(&registry, repo);
    let target = format!("{}/{repo}", registry.host());
    let output = regkit(
        config.path(),
        &["--output", "json", "tags", "--tree", &target],
    );
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let nodes: Vec<Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap()["node"].clone())
        .collect();
    let by_digest: BTreeMap<&str, &Value> = nodes
        .iter()
        .map(|node| (node["digest"].as_str().unwrap(), node))
        .collect();
    let v1 = &signed["v1"];
    assert_eq!(by_digest[v1.digest.as_str()]["depth"], 0);
    let sig = &before[&refs::cosign_tag(&v1.digest, Cosign::Signature)];
    assert_eq!(by_digest[sig.as_str()]["depth"], 1);
    assert_eq!(by_digest[sig.as_str()]["subject"], v1.digest.as_str());
    assert_eq!(
        by_digest[sig.as_str()]["artifact_type"],
        "application/vnd.dev.cosign.simplesigning.v1+json"
    );
    // The attestation's signature sits beneath the attestation.
    let att = &before[&refs::cosign_tag(&v1.digest, Cosign::Attestation)];
    let att_sig = &before[&refs::cosign_tag(att, Cosign::Signature)];
    assert_eq!(by_digest[att_sig.as_str()]["depth"], 2);
    // The untagged artifact the tag-schema index lists, with its type from the index.
    let vex = &by_digest[v1.untagged[0].as_str()];
    assert_eq!(
        (vex["depth"].clone(), vex["tag"].clone()),
        (1.into(), Value::Null)
    );
    assert_eq!(vex["artifact_type"], "application/vnd.example.vex");
    assert_eq!(
        by_digest[before["sbom-v1"].as_str()]["subject"],
        v1.digest.as_str()
    );
    let orphan = &by_digest[before[&orphan_tag].as_str()];
    assert_eq!(
        (orphan["orphan"].clone(), orphan["depth"].clone()),
        (true.into(), 0.into())
    );
    // Every tag appears once, each image before its referrers.
    assert_eq!(
        nodes.iter().filter(|node| node["tag"].is_string()).count(),
        before.len()
    );
    let text = regkit(config.path(), &["tags", "--tree", &target]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.lines()
            .any(|line| line.starts_with(&format!("v1  {}", v1.digest))),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "   └─ application/vnd.dev.cosign.simplesigning.v1+json  {att_sig}"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("(orphan: {missing} is gone)")),
        "{text}"
    );
    assert_eq!(tag_map(&registry, repo), before);
}

/// A referrers API answer listing `referrers` (`(digest, artifactType)`), with `extra` header lines.
fn referrers_answer(referrers: &[(&str, &str)], extra: &str) -> Fault {
    let manifests: Vec<Value> = referrers
        .iter()
        .map(|(digest, artifact_type)| {
            serde_json::json!({"mediaType": OCI_MANIFEST, "digest": digest, "size": 100,
                "artifactType": artifact_type})
        })
        .collect();
    let body =
        serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests})
            .to_string();
    Fault::Answer(format!(
        "HTTP/1.1 200 OK\r\ncontent-type: {OCI_INDEX}\r\n{extra}content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    ))
}

/// A registry that serves the OCI 1.1 referrers API (the relay answers it for the distribution registry
/// behind it): the untagged referrers it lists for an image that goes, over two pages joined by `Link`,
/// go with it as rows that follow it (`tags --tree` shows them beneath it first); a list the registry
/// filtered unasked (`OCI-Filters-Applied`) fails the repository before anything is deleted.
#[test]
fn a_served_referrers_api_lists_the_untagged_referrers_that_follow_their_image() {
    let registry = Registry::start();
    let proxy = FaultProxy::start(registry.host());
    let config = docker_config();
    let pusher = Pusher::new(&registry.url(), &Auth::None);
    let repo = "team/api";
    let (old, new) = (days_ago(50), days_ago(1));
    let dated = [("v1", old.as_str()), ("v2", new.as_str())];
    let pushed: BTreeMap<String, String> =
        images::push_distinct_created(&registry.url(), repo, &dated, &Auth::None, Format::Oci)
            .into_iter()
            .collect();
    let (image, kept) = (&pushed["v1"], &pushed["v2"]);
    let signature = "application/vnd.dev.cosign.artifact.sig.v1+json";
    let (sig, _) = refs::push_subject_artifact(&pusher, repo, image, signature, None);
    let (sbom, _) = refs::push_subject_artifact(&pusher, repo, image, SBOM_TYPE, None);
    let (kept_sig, _) = refs::push_subject_artifact(&pusher, repo, kept, signature, None);
    let listing = |extra: &str| {
        let next = format!("link: </v2/{repo}/referrers/{image}?page=2>; rel=\"next\"\r\n{extra}");
        vec![
            Rule::new(referrers_answer(&[(&sbom, SBOM_TYPE)], extra)).path("page=2"),
            Rule::new(referrers_answer(&[(&sig, signature)], &next))
                .path(&format!("/referrers/{image}")),
            Rule::new(referrers_answer(&[(&kept_sig, signature)], extra))
                .path(&format!("/referrers/{kept}")),
            Rule::new(referrers_answer(&[], extra)).path("/referrers/"),
        ]
    };
    let target = format!("{}/{repo}", proxy.host());
    let cleanup = || cleanup_older_than_30d(config.path(), &target);
    let before = tag_map(&registry, repo);

    proxy.set_rules(listing("oci-filters-applied: artifactType\r\n"));
    let refused = cleanup();
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("OCI-Filters-Applied"), "{stderr}");
    assert_eq!(tag_map(&registry, repo), before, "nothing is deleted");

    proxy.set_rules(listing(""));
    let tree = regkit(
        config.path(),
        &["--output", "json", "tags", "--tree", &target],
    );
    assert_eq!(tree.status.code(), Some(0), "{tree:?}");
    let nodes: BTreeMap<String, Value> = String::from_utf8_lossy(&tree.stdout)
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap()["node"].clone())
        .map(|node| (node["digest"].as_str().unwrap().to_owned(), node))
        .collect();
    for (referrer, subject, artifact_type) in [
        (&sig, image, signature),
        (&sbom, image, SBOM_TYPE),
        (&kept_sig, kept, signature),
    ] {
        let node = &nodes[referrer.as_str()];
        assert_eq!(node["subject"], subject.as_str(), "{node}");
        assert_eq!(node["depth"], 1, "{node}");
        assert_eq!(node["artifact_type"], artifact_type, "{node}");
    }
    let (rows, _) = parse(&cleanup(), 0);
    for referrer in [&sig, &sbom] {
        let row = &rows[referrer.as_str()];
        assert_eq!(row["rule"], "follows-subject", "{row}");
        assert_eq!(row["subject"], image.as_str(), "{row}");
        assert_eq!(row["result"], "deleted", "{row}");
        assert_eq!(pusher.head_manifest(repo, referrer), None);
    }
    assert_eq!(rows["v1"]["result"], "deleted");
    assert!(pusher.head_manifest(repo, &kept_sig).is_some());
    assert!(pusher.head_manifest(repo, kept).is_some());
    assert_eq!(tag_map(&registry, repo).keys().collect::<Vec<_>>(), ["v2"]);
}
