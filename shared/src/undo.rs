//! `regkit undo`: puts back what a run's [journal](crate::journal) says it removed, over the v2 API.
//!
//! Each manifest body is pushed again, under its tag (which re-points the tag) or, for a manifest removed
//! by digest alone, under its digest. Manifests go before those that need them: an index's children before
//! the index, a subject before its referrers. A tag that points at another manifest now was pushed again
//! since the run: it is left alone (`conflict`). A push the registry refuses because a blob or child is gone
//! (garbage-collected) is `lost`, naming the first one missing; its layers and children are asked with one
//! HEAD each, only then.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;

use crate::journal::Change;
use crate::reference::{Repository, Target};
use crate::referrers::tag_subject;
use crate::registry::{Client, RegistryError, failure_kind};
use crate::report::{Entry, FailureKind, Status};

/// One verified journal line to put back.
#[derive(Debug, Clone)]
pub struct Restore {
    /// Its line number in the journal.
    pub line: usize,
    /// What it records.
    pub change: Change,
    /// Its body, verified against the digest.
    pub body: Vec<u8>,
}

impl Restore {
    fn repository(&self) -> Repository {
        Repository {
            registry: self.change.registry.clone(),
            path: self.change.repository.clone(),
        }
    }

    fn target(&self) -> Target {
        match &self.change.tag {
            Some(tag) => Target::Tag(tag.clone()),
            None => Target::Digest(self.change.digest.clone()),
        }
    }

    /// The row for this line.
    fn entry(&self, status: Status, error: Option<String>, failure: Option<FailureKind>) -> Entry {
        let repository = self.repository();
        Entry {
            reference: format!("{repository}{}", self.target()),
            repository: repository.to_string(),
            tag: self.change.tag.clone(),
            digest: Some(self.change.digest.clone()),
            status,
            method: None,
            error,
            failure,
        }
    }
}

/// What a manifest refers to, as far as putting it back is concerned.
#[derive(Deserialize, Default)]
struct Refers {
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
    #[serde(default)]
    manifests: Vec<Descriptor>,
    subject: Option<Descriptor>,
}

#[derive(Deserialize)]
struct Descriptor {
    digest: String,
}

fn refers(body: &[u8]) -> Refers {
    serde_json::from_slice(body).unwrap_or_default()
}

/// The manifests `restore` needs in place first: an index's children, an OCI `subject`, and the subject a
/// cosign-style tag (`sha256-<hex>.sig`) names.
fn needs(restore: &Restore) -> Vec<String> {
    let refers = refers(&restore.body);
    let mut needs: Vec<String> = refers
        .manifests
        .into_iter()
        .chain(refers.subject)
        .map(|descriptor| descriptor.digest)
        .collect();
    if let Some((subject, _)) = restore.change.tag.as_deref().and_then(tag_subject) {
        needs.push(subject);
    }
    needs
}

/// `restores` in the order they can be pushed: each after every journaled manifest of its repository it
/// needs (children before their index, subjects before referrers), else in journal order.
pub fn order(mut restores: Vec<Restore>) -> Vec<Restore> {
    let key = |restore: &Restore| {
        (
            restore.change.registry.clone(),
            restore.change.repository.clone(),
            restore.change.digest.clone(),
        )
    };
    let needs: Vec<Vec<(String, String, String)>> = restores
        .iter()
        .map(|restore| {
            needs(restore)
                .into_iter()
                .map(|digest| {
                    (
                        restore.change.registry.clone(),
                        restore.change.repository.clone(),
                        digest,
                    )
                })
                .collect()
        })
        .collect();
    // Depth by relaxation: digests are content hashes, so chains end; the bound only guards a journal
    // edited into a cycle, whose lines then keep their relative order.
    let mut depth: HashMap<(String, String, String), usize> =
        restores.iter().map(|restore| (key(restore), 0)).collect();
    for _ in 0..restores.len().min(64) {
        let mut changed = false;
        for (restore, needs) in restores.iter().zip(&needs) {
            let deepest = needs
                .iter()
                .filter_map(|need| depth.get(need))
                .map(|depth| depth + 1)
                .max()
                .unwrap_or(0);
            let own = depth.entry(key(restore)).or_default();
            if deepest > *own {
                *own = deepest;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    restores.sort_by_key(|restore| depth.get(&key(restore)).copied().unwrap_or(0));
    restores
}

/// Puts back `restores` (one registry's, already [ordered](order)) through `client`; one entry each, in
/// order. `dry_run`: the entries say what would happen (`planned`, `conflict`, `lost` naming a blob or
/// child already gone, or `restored` for what is already in place), nothing is pushed.
pub async fn restore(client: &Client, restores: &[Restore], dry_run: bool) -> Vec<Entry> {
    let mut entries = Vec::with_capacity(restores.len());
    for restore in restores {
        entries.push(restore_one(client, restore, dry_run).await);
    }
    entries
}

async fn restore_one(client: &Client, restore: &Restore, dry_run: bool) -> Entry {
    let change = &restore.change;
    let path = change.repository.as_str();
    let reference = change.tag.as_deref().unwrap_or(&change.digest);
    let failed = |error: &RegistryError| {
        restore.entry(
            Status::Failed,
            Some(error.to_string()),
            Some(failure_kind(error)),
        )
    };
    match client.head_manifest(path, reference).await {
        Ok(Some(now)) if now.digest == change.digest => {
            return restore.entry(Status::Restored, None, None);
        }
        Ok(Some(now)) => {
            let error = format!(
                "{}{} points at {} now (pushed again since the run): left alone",
                restore.repository(),
                restore.target(),
                now.digest
            );
            return restore.entry(Status::Conflict, Some(error), Some(FailureKind::Other));
        }
        Ok(None) => {}
        Err(error) => return failed(&error),
    }
    if dry_run {
        // The plan says what a push would meet: each blob and child asked once.
        return match first_missing(client, restore).await {
            Some(missing) => lost(restore, &missing),
            None => restore.entry(Status::Planned, None, None),
        };
    }
    match client
        .put_manifest(path, reference, &change.media_type, &restore.body)
        .await
    {
        Ok(digest) if digest == change.digest => restore.entry(Status::Restored, None, None),
        Ok(digest) => {
            let error = format!(
                "{} stored the journaled body of {} as {digest}",
                change.registry, change.digest
            );
            restore.entry(Status::Failed, Some(error), Some(FailureKind::Other))
        }
        // A refusal of the body itself (400) is what a missing blob or child gives; ask which.
        Err(
            error @ RegistryError::Status {
                status: 400 | 404, ..
            },
        ) => match first_missing(client, restore).await {
            Some(missing) => lost(restore, &missing),
            None => failed(&error),
        },
        Err(error) => failed(&error),
    }
}

/// The row for a line whose `missing` blob or child the registry no longer holds.
fn lost(restore: &Restore, missing: &str) -> Entry {
    let error = format!(
        "{missing} is gone from {}/{} (garbage-collected?): the manifest cannot be pushed again",
        restore.change.registry, restore.change.repository
    );
    restore.entry(Status::Lost, Some(error), Some(FailureKind::Other))
}

/// The first blob (config, layers) or child manifest of `restore` the registry no longer holds, as
/// `blob sha256:…` or `manifest sha256:…`; `None` when all are there or cannot be asked.
async fn first_missing(client: &Client, restore: &Restore) -> Option<String> {
    let path = restore.change.repository.as_str();
    let refers = refers(&restore.body);
    for blob in refers.config.iter().chain(&refers.layers) {
        if let Ok(false) = client.blob_exists(path, &blob.digest).await {
            return Some(format!("blob {}", blob.digest));
        }
    }
    for child in refers.manifests.iter().chain(&refers.subject) {
        if let Ok(None) = client.head_manifest(path, &child.digest).await {
            return Some(format!("manifest {}", child.digest));
        }
    }
    None
}

/// `restores` by registry, each registry's in push order.
pub fn by_registry(restores: Vec<Restore>) -> BTreeMap<String, Vec<Restore>> {
    let mut grouped: BTreeMap<String, Vec<Restore>> = BTreeMap::new();
    for restore in order(restores) {
        grouped
            .entry(restore.change.registry.clone())
            .or_default()
            .push(restore);
    }
    grouped
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::ChangeKind;
    use crate::registry::{Manifest, ManifestInfo, sha256_digest};

    fn restore(line: usize, tag: Option<&str>, body: &str) -> Restore {
        let manifest = Manifest {
            info: ManifestInfo {
                digest: sha256_digest(body.as_bytes()),
                media_type: "application/vnd.oci.image.index.v1+json".into(),
                size: body.len() as u64,
            },
            body: body.as_bytes().to_vec(),
        };
        Restore {
            line,
            change: Change::new("r.io", "app", tag, &manifest, ChangeKind::ManifestDelete),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn children_and_subjects_go_first() {
        let child = restore(4, None, r#"{"layers":[]}"#);
        let child_digest = child.change.digest.clone();
        let index = restore(
            2,
            Some("v1"),
            &format!(r#"{{"manifests":[{{"digest":"{child_digest}"}}]}}"#),
        );
        let index_digest = index.change.digest.clone();
        let signature = restore(
            1,
            Some(&format!("{}.sig", index_digest.replace(':', "-"))),
            r#"{"layers":[{"digest":"sha256:aa"}]}"#,
        );
        let attestation = restore(
            3,
            None,
            &format!(r#"{{"subject":{{"digest":"{index_digest}"}}}}"#),
        );
        let unrelated = restore(5, Some("other"), "{}");
        let ordered = order(vec![signature, index, attestation, child, unrelated]);
        let lines: Vec<usize> = ordered.iter().map(|restore| restore.line).collect();
        assert_eq!(lines, [4, 5, 2, 1, 3]);
    }

    #[test]
    fn an_edited_cycle_keeps_the_journal_order() {
        let a = restore(1, Some("a"), r#"{"manifests":[{"digest":"sha256:b"}]}"#);
        let mut b = restore(2, Some("b"), "{}");
        b.change.digest = "sha256:b".into();
        let cyclic_a = a.change.digest.clone();
        b.body = format!(r#"{{"manifests":[{{"digest":"{cyclic_a}"}}]}}"#).into_bytes();
        assert_eq!(order(vec![a, b]).len(), 2, "bounded, nothing lost");
    }
}
