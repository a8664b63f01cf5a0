//! Referrers as real tools push them: cosign's signatures, attestations and SBOMs (`sha256-<hex>.sig`,
//! `.att`, `.sbom`, built byte for byte the way cosign writes them, `created: 0001-01-01…` included, since
//! cosign is not packaged here), OCI 1.1 artifacts with a `subject`, the OCI 1.1 referrers tag schema
//! (`sha256-<hex>`, an index of a digest's referrers, which clients such as oras-go keep on registries
//! without the referrers API), and artifacts pushed by the `oras` Python SDK from PyPI.

use std::path::PathBuf;
use std::process::Command;

use crate::images::{Pusher, sha256_digest};

/// The OCI image manifest media type.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const EMPTY_CONFIG: &str = "application/vnd.oci.empty.v1+json";

/// What a cosign artifact carries, which decides its tag suffix and layer type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cosign {
    /// `cosign sign`: `.sig`, a simple-signing payload.
    Signature,
    /// `cosign attest`: `.att`, a DSSE envelope.
    Attestation,
    /// `cosign attach sbom`: `.sbom`, an SPDX document.
    Sbom,
}

impl Cosign {
    fn suffix(self) -> &'static str {
        match self {
            Cosign::Signature => "sig",
            Cosign::Attestation => "att",
            Cosign::Sbom => "sbom",
        }
    }

    fn layer_type(self) -> &'static str {
        match self {
            Cosign::Signature => "application/vnd.dev.cosign.simplesigning.v1+json",
            Cosign::Attestation => "application/vnd.dsse.envelope.v1+json",
            Cosign::Sbom => "text/spdx+json",
        }
    }
}

/// cosign's tag for an artifact of `subject` (`sha256:<hex>` → `sha256-<hex>.<suffix>`).
pub fn cosign_tag(subject: &str, kind: Cosign) -> String {
    format!("{}.{}", schema_tag(subject), kind.suffix())
}

/// The OCI 1.1 referrers tag schema's tag for `subject` (`sha256-<hex>`).
pub fn schema_tag(subject: &str) -> String {
    subject.replacen(':', "-", 1)
}

/// Pushes a cosign artifact of `subject` under its cosign tag, as cosign writes it: an OCI manifest whose
/// config says `created: 0001-01-01T00:00:00Z` (so an age rule would see it as ancient) and one layer with
/// the payload; returns `(tag, digest)`.
pub fn push_cosign(pusher: &Pusher, repo: &str, subject: &str, kind: Cosign) -> (String, String) {
    let payload = serde_json::to_vec(&serde_json::json!({
        "critical": {
            "identity": {"docker-reference": repo},
            "image": {"docker-manifest-digest": subject},
            "type": format!("cosign container image {}", kind.suffix()),
        },
        "optional": null,
    }))
    .expect("payload");
    let payload_digest = pusher.push_blob(repo, &payload);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "",
        "created": "0001-01-01T00:00:00Z",
        "history": [{"created": "0001-01-01T00:00:00Z"}],
        "os": "",
        "rootfs": {"type": "layers", "diff_ids": [payload_digest]},
        "config": {},
    }))
    .expect("config");
    let config_digest = pusher.push_blob(repo, &config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "size": config.len(),
            "digest": config_digest,
        },
        "layers": [{
            "mediaType": kind.layer_type(),
            "size": payload.len(),
            "digest": payload_digest,
            "annotations": {"dev.cosignproject.cosign/signature": "MEUCIQDtest"},
        }],
    }))
    .expect("manifest");
    let tag = cosign_tag(subject, kind);
    let digest = pusher.put_manifest(repo, &tag, OCI_MANIFEST, &manifest);
    (tag, digest)
}

/// The one layer of an artifact of `artifact_type` about `subject`.
fn artifact_content(subject: &str, artifact_type: &str) -> String {
    format!("{artifact_type} of {subject}")
}

/// An OCI 1.1 artifact manifest (empty config, one layer) of `artifact_type` whose `subject` is the
/// manifest `subject` of `subject_size` bytes, as oras and cosign write them.
pub fn artifact_manifest(subject: &str, subject_size: usize, artifact_type: &str) -> Vec<u8> {
    let content = artifact_content(subject, artifact_type);
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": {"mediaType": EMPTY_CONFIG, "size": 2, "digest": sha256_digest(b"{}")},
        "layers": [{"mediaType": "application/octet-stream", "size": content.len(),
                    "digest": sha256_digest(content.as_bytes())}],
        "subject": {"mediaType": OCI_MANIFEST, "size": subject_size, "digest": subject},
    }))
    .expect("manifest")
}

/// Pushes an OCI 1.1 artifact (empty config, one layer) whose `subject` is `subject`, under `tag` or by
/// digest alone; returns `(digest, size)`.
pub fn push_subject_artifact(
    pusher: &Pusher,
    repo: &str,
    subject: &str,
    artifact_type: &str,
    tag: Option<&str>,
) -> (String, usize) {
    let manifest = artifact_manifest(subject, manifest_size(pusher, repo, subject), artifact_type);
    pusher.push_blob(repo, b"{}");
    pusher.push_blob(repo, artifact_content(subject, artifact_type).as_bytes());
    let reference = tag.map_or_else(|| sha256_digest(&manifest), str::to_string);
    (
        pusher.put_manifest(repo, &reference, OCI_MANIFEST, &manifest),
        manifest.len(),
    )
}

/// Pushes the referrers tag-schema index of `subject` (tag `sha256-<hex>`) listing `referrers`
/// (`(digest, size, artifactType)`), as OCI 1.1 clients keep it without the referrers API; returns its
/// digest.
pub fn push_schema_index(
    pusher: &Pusher,
    repo: &str,
    subject: &str,
    referrers: &[(String, usize, &str)],
) -> String {
    let manifests: Vec<serde_json::Value> = referrers
        .iter()
        .map(|(digest, size, artifact_type)| {
            serde_json::json!({
                "mediaType": OCI_MANIFEST, "digest": digest, "size": size, "artifactType": artifact_type,
            })
        })
        .collect();
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": manifests,
    }))
    .expect("index");
    pusher.put_manifest(repo, &schema_tag(subject), OCI_INDEX, &index)
}

/// Pushes an index (tagged `tag`, or by digest when `None`) of the given `(digest, media type)` manifests.
pub fn push_index_of(
    pusher: &Pusher,
    repo: &str,
    tag: Option<&str>,
    children: &[(&str, &str)],
) -> String {
    let manifests: Vec<serde_json::Value> = children
        .iter()
        .map(|(digest, media_type)| {
            serde_json::json!({
                "mediaType": media_type, "digest": digest, "size": manifest_size(pusher, repo, digest),
                "platform": {"architecture": "amd64", "os": "linux"},
            })
        })
        .collect();
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": manifests,
    }))
    .expect("index");
    let reference = tag.map_or_else(|| sha256_digest(&index), str::to_string);
    pusher.put_manifest(repo, &reference, OCI_INDEX, &index)
}

fn manifest_size(pusher: &Pusher, repo: &str, digest: &str) -> usize {
    pusher
        .manifest(repo, digest)
        .map_or(0, |(_, body)| body.len())
}

/// The venv's Python, where `scripts/install-deps.sh` installs the `oras` SDK (or `$REGKIT_VENV/bin/python`).
fn venv_python() -> PathBuf {
    let venv = std::env::var_os("REGKIT_VENV").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../build/venv"),
        PathBuf::from,
    );
    venv.join("bin/python")
}

/// Pushes, with the `oras` Python SDK, an artifact tagged `tag` whose `subject` is the OCI manifest
/// `subject` (`subject_size` bytes), over plain HTTP to the loopback registry `host`.
pub fn oras_attach(
    host: &str,
    repo: &str,
    tag: &str,
    (subject, subject_size): (&str, usize),
    artifact_type: &str,
) {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("sbom.spdx.json");
    std::fs::write(
        &file,
        format!("{{\"sbom\": \"{artifact_type} of {subject}\"}}"),
    )
    .expect("file");
    let script = r#"
import sys, oras.oci, oras.provider
host, repo, tag, subject, size, artifact_type, path = sys.argv[1:]
registry = oras.provider.Registry(hostname=host, insecure=True)
subject = oras.oci.Subject(mediaType="application/vnd.oci.image.manifest.v1+json", digest=subject, size=int(size))
response = registry.push(target=f"{host}/{repo}:{tag}", files=[f"{path}:{artifact_type}"],
                         subject=subject, disable_path_validation=True)
response.raise_for_status()
"#;
    let python = venv_python();
    let output = Command::new(&python)
        .args(["-c", script, host, repo, tag, subject])
        .arg(subject_size.to_string())
        .arg(artifact_type)
        .arg(&file)
        .current_dir(dir.path())
        .output()
        .unwrap_or_else(|error| {
            panic!(
                "the oras Python SDK is required at {} ({error}): run `make deps`",
                python.display()
            )
        });
    assert!(
        output.status.success(),
        "oras push {repo}:{tag}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The untagged referrers every vendor's `--untagged` test builds: a signature of the tagged `image`
/// and a signature of that signature (both stay with `image`), an attestation of the untagged image
/// `stale` (it follows `stale`), an untagged image `plain`, and a signature whose subject does not exist
/// (an orphan).
#[derive(Debug, Clone)]
pub struct UntaggedReferrers {
    /// The tagged image.
    pub image: String,
    /// Its signature.
    pub sig: String,
    /// The signature of `sig`.
    pub sig_of_sig: String,
    /// An untagged image that goes.
    pub stale: String,
    /// `stale`'s attestation.
    pub att: String,
    /// An untagged image that goes, with no referrer.
    pub plain: String,
    /// A signature of a manifest that does not exist.
    pub orphan: String,
}

impl UntaggedReferrers {
    /// Stores the referrers through `store`, which keeps an untagged manifest document and returns its
    /// digest; `image`, `stale` and `plain` are there already.
    pub fn store(
        image: String,
        stale: String,
        plain: String,
        store: impl Fn(&str) -> String,
    ) -> UntaggedReferrers {
        let signature = "application/vnd.dev.cosign.artifact.sig.v1+json";
        let refer = |subject: &str, artifact_type: &str| {
            let body = artifact_manifest(subject, 100, artifact_type);
            store(std::str::from_utf8(&body).expect("JSON is UTF-8"))
        };
        let sig = refer(&image, signature);
        let sig_of_sig = refer(&sig, signature);
        let att = refer(&stale, "application/vnd.in-toto+json");
        let orphan = refer(&format!("sha256:{:064x}", 0xdead), signature);
        UntaggedReferrers {
            image,
            sig,
            sig_of_sig,
            stale,
            att,
            plain,
            orphan,
        }
    }

    /// Asserts what a dry run of `--untagged` without `--orphans` plans (rows by tag or digest).
    pub fn assert_planned(&self, plan: &std::collections::BTreeMap<String, serde_json::Value>) {
        for (referrer, subject) in [(&self.sig, &self.image), (&self.sig_of_sig, &self.sig)] {
            let row = &plan[referrer];
            assert_eq!(row["action"], "keep", "{row}");
            assert_eq!(row["rule"], "referrer", "{row}");
            assert_eq!(row["subject"], subject.as_str(), "{row}");
        }
        let att = &plan[&self.att];
        assert_eq!(att["rule"], "follows-subject", "{att}");
        assert_eq!(att["result"], "planned", "{att}");
        let orphan = &plan[&self.orphan];
        assert_eq!(orphan["rule"], "orphan", "{orphan}");
        assert_eq!(orphan["action"], "keep", "{orphan}");
        for digest in [&self.stale, &self.plain] {
            assert_eq!(plan[digest]["result"], "planned", "{}", plan[digest]);
        }
    }
}
