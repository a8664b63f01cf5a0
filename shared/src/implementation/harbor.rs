//! Harbor v2: tags listed with their artifacts (`push_time`, immutability, index references) and removed
//! with the tag API, which leaves the artifact and its other tags alone. A digest is removed with the
//! artifact API.
//!
//! `--untagged` lists the artifacts without tags from the same listing, leaving out every artifact that an
//! index still listed references (`references`), tagged or not: a child of an untagged index goes on a
//! later run, once nothing references it, unless Harbor removed it with its index. The listing asks for
//! each artifact's accessories (`with_accessory=true`): Harbor files every manifest with an OCI 1.1
//! `subject` it holds as an accessory of that subject, so an untagged referrer is known without a read.
//!
//! Endpoints follow Harbor's published swagger (`api/v2.0/swagger.yaml`, basePath `/api/v2.0`):
//! `listArtifacts`, `deleteTag`, `deleteArtifact`. Credentials are HTTP Basic: a user, a CLI secret or a
//! robot account (`robot$…`), which, unlike the v2 digest delete werf uses, can remove tags.

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap, HashSet};

use reqwest::Method;
use serde::Deserialize;

use super::rest::{self, CallError, ListedTag, Listing, ListingNeeds, TagApi};
use super::{Context, DeleteRemoves, Flag, Implementation, Probe, Spec, UntaggedManifest};
use crate::dates::Timestamp;
use crate::reference::Repository;
use crate::registry::api::{ApiClient, ApiResponse};
use crate::registry::pager::{Page, Pager};
use crate::registry::{Deleted, RegistryError};

pub(super) const SPEC: Spec = Spec {
    name: "harbor",
    title: "Harbor",
    build,
    flags: FLAGS,
    environment: &[],
    // Its hosts have arbitrary names: it is found by its probe, or forced.
    hosts: &[],
    probe: Some(Probe {
        // Harbor's swagger, `getSystemInfo`: a `GeneralInfo` object.
        path: "/api/v2.0/systeminfo",
        recognise: |response| {
            response.is_success()
                && serde_json::from_slice::<serde_json::Value>(&response.body).is_ok_and(|info| {
                    info.get("harbor_version").is_some() || info.get("auth_mode").is_some()
                })
        },
        precedence: 0,
    }),
    delete_removes: DeleteRemoves::Tag,
    lists_untagged: true,
};

/// The flags the Harbor module reads.
const FLAGS: &[Flag] = &[
    Flag {
        name: "repo-harbor-username",
        value_name: "USER",
        help: "Harbor user or robot account (robot$…) for the Harbor API; default: the docker config's",
    },
    Flag {
        name: "repo-harbor-password",
        value_name: "PASSWORD",
        help: "Password, CLI secret or robot secret for --repo-harbor-username",
    },
    Flag {
        name: "harbor-api-url",
        value_name: "URL",
        help: "Harbor API base URL (default: https://<registry host>)",
    },
];

/// Artifacts per page; Harbor's maximum.
const PAGE_SIZE: usize = 100;

const AUTH_HINT: &str = "give a Harbor user or robot account (robot$…) with list and read rights on the repository and delete rights on tags, with --repo-harbor-username/--repo-harbor-password or docker login";

pub(super) fn build(context: Context) -> Box<dyn Implementation> {
    let credentials = rest::credentials(
        &context,
        None,
        "repo-harbor-username",
        "repo-harbor-password",
    );
    Box::new(Harbor {
        api: rest::api_client(&context, "harbor-api-url", "Harbor API", credentials),
        parallel: context.parallel,
    })
}

struct Harbor {
    /// A bad URL or credentials unfit for a header is reported by the first call, per tag.
    api: Result<ApiClient, RegistryError>,
    parallel: usize,
}

#[derive(Deserialize)]
struct Artifact {
    digest: String,
    push_time: Option<String>,
    pull_time: Option<String>,
    #[serde(default)]
    tags: Option<Vec<Tag>>,
    #[serde(default)]
    references: Option<Vec<Reference>>,
    /// Signatures, attestations, SBOMs and other manifests with a `subject` (`with_accessory=true`).
    #[serde(default)]
    accessories: Option<Vec<Accessory>>,
}

#[derive(Deserialize)]
struct Accessory {
    digest: Option<String>,
    subject_artifact_digest: Option<String>,
}

#[derive(Deserialize)]
struct Tag {
    name: String,
    push_time: Option<String>,
    pull_time: Option<String>,
    #[serde(default)]
    immutable: bool,
}

#[derive(Deserialize)]
struct Reference {
    child_digest: Option<String>,
}

/// The last pull of a tag, from its own `pull_time` and its artifact's: Harbor stamps the tag only on
/// a pull by tag and the artifact on any pull (by digest too), so the later one counts, which keeps an
/// image pulled by digest. Harbor sends Go's zero time (`0001-01-01T00:00:00.000Z`) for never pulled;
/// no field at all is no pull record.
fn last_pulled(tag: &Tag, artifact: &Artifact) -> Option<Option<Timestamp>> {
    let times = [&tag.pull_time, &artifact.pull_time];
    if times.iter().all(|time| time.is_none()) {
        return None;
    }
    Some(
        times
            .into_iter()
            .filter_map(|time| time.as_deref().and_then(Timestamp::parse_rfc3339))
            // Before 1970 is the zero time: never pulled.
            .filter(|time| time.unix_seconds() > 0)
            .max(),
    )
}

/// `project`, and the repository inside it encoded twice as Harbor's path parameters want it.
fn split(repository: &Repository) -> Result<(String, String), RegistryError> {
    match repository.path.split_once('/') {
        Some((project, name)) if !project.is_empty() && !name.is_empty() => {
            Ok((rest::encode(project), rest::encode(&rest::encode(name))))
        }
        _ => Err(RegistryError::Config(format!(
            "{repository}: a Harbor repository is <project>/<name>"
        ))),
    }
}

impl Harbor {
    fn api(&self) -> Result<&ApiClient, RegistryError> {
        rest::built_client(&self.api)
    }

    fn fail(&self, api: &ApiClient, response: &ApiResponse, operation: &str) -> RegistryError {
        api.status_error(response, operation, AUTH_HINT)
    }

    async fn artifacts(&self, repository: &Repository) -> Result<Vec<Artifact>, RegistryError> {
        let api = self.api()?;
        let (project, name) = split(repository)?;
        let operation = format!("list artifacts of {repository}");
        // X-Total-Count is compared with every artifact so far, across the pager's calls.
        let listed = Cell::new(0);
        let fetch = |page: Option<usize>| {
            let (project, name, operation, listed) = (&project, &name, &operation, &listed);
            async move {
                let page = page.unwrap_or(1);
                let path = format!(
                    "api/v2.0/projects/{project}/repositories/{name}/artifacts?with_tag=true&with_immutable_status=true&with_accessory=true&page={page}&page_size={PAGE_SIZE}"
                );
                let response = api.send(Method::GET, &path, operation).await?;
                match response.status {
                    200 => {}
                    404 => {
                        return Err(RegistryError::RepositoryNotFound {
                            registry: repository.registry.clone(),
                            repository: repository.path.clone(),
                        });
                    }
                    _ => return Err(self.fail(api, &response, operation)),
                }
                let batch: Vec<Artifact> = api.json(&response, operation)?;
                let count = batch.len();
                listed.set(listed.get() + count);
                let total = response
                    .header("x-total-count")
                    .and_then(|total| total.parse::<usize>().ok());
                let more = match total {
                    Some(total) => listed.get() < total && count > 0,
                    None => count == PAGE_SIZE,
                };
                Ok(Page::new(batch, more.then_some(page + 1), response.body))
            }
        };
        Pager::new(&repository.registry, &operation, "the page number")
            .collect(fetch)
            .await
    }

    async fn delete_call(&self, path: String, operation: String) -> Result<Deleted, CallError> {
        let api = self.api()?;
        let response = api.send(Method::DELETE, &path, &operation).await?;
        match response.status {
            200 => Ok(Deleted::Removed),
            404 => Ok(Deleted::Absent),
            // Harbor answers 412 for an immutable tag and for an artifact an index references (its
            // PRECONDITION and VIOLATE_FOREIGN_KEY_CONSTRAINT codes), though the swagger does not list it.
            412 => Err(CallError::Refused(format!(
                "Harbor refused: {}",
                response.error_text()
            ))),
            _ => Err(self.fail(api, &response, &operation).into()),
        }
    }
}

impl TagApi for Harbor {
    const SPEC: &'static Spec = &SPEC;

    fn parallel(&self) -> usize {
        self.parallel
    }

    async fn listing(
        &self,
        repository: &Repository,
        _: ListingNeeds,
    ) -> Result<Listing, RegistryError> {
        let artifacts = self.artifacts(repository).await?;
        let mut listing = Listing::default();
        for artifact in &artifacts {
            for child in artifact.references.iter().flatten() {
                if let Some(child) = &child.child_digest {
                    listing.digest_refusals.insert(
                        child.clone(),
                        format!(
                            "the artifact is referenced by the index {}; delete the index first",
                            artifact.digest
                        ),
                    );
                }
            }
            let tags = artifact.tags.as_deref().unwrap_or_default();
            if tags.is_empty() {
                listing.untagged.insert(artifact.digest.clone());
            }
            for tag in tags {
                listing.tags.push(ListedTag {
                    tag: tag.name.clone(),
                    digest: Some(artifact.digest.clone()),
                    created: (tag.push_time.as_deref())
                        .or(artifact.push_time.as_deref())
                        .and_then(Timestamp::parse_rfc3339),
                    last_pulled: last_pulled(tag, artifact),
                    handle: artifact.digest.clone(),
                    refusal: tag.immutable.then(|| {
                        "the tag is immutable (a Harbor immutability rule of the project matches it); change the rule to delete it".to_string()
                    }),
                });
            }
        }
        Ok(listing)
    }

    async fn delete_tag(
        &self,
        repository: &Repository,
        tag: &ListedTag,
    ) -> Result<Deleted, CallError> {
        let (project, name) = split(repository)?;
        self.delete_call(
            format!(
                "api/v2.0/projects/{project}/repositories/{name}/artifacts/{}/tags/{}",
                tag.handle,
                rest::encode(&tag.tag)
            ),
            format!("delete tag {repository}:{}", tag.tag),
        )
        .await
    }

    async fn delete_digest(
        &self,
        repository: &Repository,
        digest: &str,
        _: &[ListedTag],
    ) -> Result<Deleted, CallError> {
        let (project, name) = split(repository)?;
        self.delete_call(
            format!("api/v2.0/projects/{project}/repositories/{name}/artifacts/{digest}"),
            format!("delete artifact {repository}@{digest}"),
        )
        .await
    }

    async fn untagged(
        &self,
        repository: &Repository,
    ) -> Result<Option<Vec<UntaggedManifest>>, RegistryError> {
        let artifacts = self.artifacts(repository).await?;
        let children: HashSet<&str> = artifacts
            .iter()
            .flat_map(|artifact| artifact.references.iter().flatten())
            .filter_map(|reference| reference.child_digest.as_deref())
            .collect();
        let subjects: HashMap<&str, &str> = artifacts
            .iter()
            .flat_map(|artifact| artifact.accessories.iter().flatten())
            .filter_map(|accessory| {
                Some((
                    accessory.digest.as_deref()?,
                    accessory.subject_artifact_digest.as_deref()?,
                ))
            })
            .collect();
        Ok(Some(
            artifacts
                .iter()
                .filter(|artifact| artifact.tags.as_deref().unwrap_or_default().is_empty())
                .filter(|artifact| !children.contains(artifact.digest.as_str()))
                .map(|artifact| UntaggedManifest {
                    digest: artifact.digest.clone(),
                    created: (artifact.push_time.as_deref()).and_then(Timestamp::parse_rfc3339),
                    subject: subjects
                        .get(artifact.digest.as_str())
                        .map(|subject| (*subject).to_owned()),
                })
                .collect(),
        ))
    }

    /// Harbor records every manifest whose `subject` it holds as an accessory of it, which the listing
    /// names ([`UntaggedManifest::subject`]): nothing is left to read. A manifest whose subject Harbor
    /// does not hold is an orphan, which it keeps as a plain artifact.
    async fn untagged_subjects(
        &self,
        _: &Repository,
        _: &[String],
    ) -> Result<Option<BTreeMap<String, String>>, RegistryError> {
        Ok(Some(BTreeMap::new()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_names_are_encoded_twice() {
        let repository = Repository {
            registry: "harbor.example.com".into(),
            path: "proj/team/app".into(),
        };
        assert_eq!(
            split(&repository).unwrap(),
            ("proj".to_string(), "team%252Fapp".to_string())
        );
        let flat = Repository {
            registry: "harbor.example.com".into(),
            path: "app".into(),
        };
        assert!(matches!(split(&flat), Err(RegistryError::Config(_))));
    }

    #[test]
    fn pull_times_take_the_later_and_read_the_zero_time_as_never() {
        let at = |tag: Option<&str>, artifact: Option<&str>| {
            let tag: Tag =
                serde_json::from_value(serde_json::json!({"name": "t", "pull_time": tag})).unwrap();
            let artifact: Artifact =
                serde_json::from_value(serde_json::json!({"digest": "d", "pull_time": artifact}))
                    .unwrap();
            last_pulled(&tag, &artifact).map(|time| time.map(Timestamp::unix_seconds))
        };
        const ZERO: &str = "0001-01-01T00:00:00.000Z";
        assert_eq!(at(None, None), None);
        assert_eq!(at(Some(ZERO), Some(ZERO)), Some(None));
        assert_eq!(
            at(Some(ZERO), Some("2026-01-02T00:00:00Z")),
            Some(Some(1_767_312_000))
        );
        assert_eq!(
            at(
                Some("2026-01-03T00:00:00.000Z"),
                Some("2026-01-02T00:00:00Z")
            ),
            Some(Some(1_767_398_400))
        );
    }
}
