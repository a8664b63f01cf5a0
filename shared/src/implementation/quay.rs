//! Quay (quay.io and Red Hat Quay), API v1: active tags listed with their manifest digests and start times,
//! and removed with the tag API, which ends that tag alone (the manifest stays for its other tags).
//!
//! Quay publishes no static API description (its Swagger is generated at `/api/v1/discovery`); the calls
//! follow quay/quay `endpoints/api/tag.py`: `ListRepositoryTags` (`GET /api/v1/repository/{repo}/tag/`,
//! `onlyActiveTags`, `limit` ≤ 100, `page`, answer `has_additional`) and `RepositoryTag.delete`
//! (`DELETE /api/v1/repository/{repo}/tag/{tag}`, 204; 409 `TagImmutable`).

use std::time::{SystemTime, UNIX_EPOCH};

use reqwest::Method;
use serde::Deserialize;

use super::rest::{self, CallError, ListedTag, Listing, ListingNeeds, TagApi};
use super::{Context, DeleteRemoves, Flag, HostRule, Implementation, Spec};
use crate::dates::Timestamp;
use crate::reference::Repository;
use crate::registry::api::ApiClient;
use crate::registry::pager::{self, Pager};
use crate::registry::{Deleted, RegistryError};

pub(super) const SPEC: Spec = Spec {
    name: "quay",
    title: "Quay",
    build,
    flags: FLAGS,
    environment: &[],
    hosts: &[HostRule::Exact("quay.io")],
    probe: None,
    delete_removes: DeleteRemoves::Tag,
    lists_untagged: false,
};

/// The flags the Quay module reads.
const FLAGS: &[Flag] = &[
    Flag {
        name: "repo-quay-token",
        value_name: "TOKEN",
        help: "Quay OAuth application token (repo:read and repo:write) for the Quay API; default: the docker config's credentials",
    },
    Flag {
        name: "quay-api-url",
        value_name: "URL",
        help: "Quay API base URL (default: https://<registry host>)",
    },
];

/// Tags per page; Quay's maximum.
const PAGE_SIZE: usize = 100;

const AUTH_HINT: &str = "give an OAuth application token with the repo:read and repo:write scopes (--repo-quay-token) for a user with write access to the repository";

pub(super) fn build(context: Context) -> Box<dyn Implementation> {
    let credentials = rest::credentials(&context, Some("repo-quay-token"), "", "");
    Box::new(Quay {
        api: rest::api_client(&context, "quay-api-url", "Quay API", credentials),
        parallel: context.parallel,
    })
}

struct Quay {
    api: Result<ApiClient, RegistryError>,
    parallel: usize,
}

#[derive(Deserialize)]
struct Page {
    tags: Vec<QuayTag>,
    #[serde(default)]
    has_additional: bool,
}

#[derive(Deserialize)]
struct QuayTag {
    name: String,
    manifest_digest: Option<String>,
    start_ts: Option<i64>,
    end_ts: Option<i64>,
}

/// `namespace/name` as Quay's `{repository}` path: the path as is (Quay routes take its slash).
fn repository_path(repository: &Repository) -> Result<String, RegistryError> {
    match repository.path.split_once('/') {
        Some((namespace, name)) if !namespace.is_empty() && !name.is_empty() => Ok(repository
            .path
            .split('/')
            .map(rest::encode)
            .collect::<Vec<_>>()
            .join("/")),
        _ => Err(RegistryError::Config(format!(
            "{repository}: a Quay repository is <namespace>/<name>"
        ))),
    }
}

impl TagApi for Quay {
    const SPEC: &'static Spec = &SPEC;

    fn parallel(&self) -> usize {
        self.parallel
    }

    async fn listing(
        &self,
        repository: &Repository,
        _: ListingNeeds,
    ) -> Result<Listing, RegistryError> {
        let api = rest::built_client(&self.api)?;
        let path = repository_path(repository)?;
        let operation = format!("list tags of {repository}");
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|elapsed| elapsed.as_secs() as i64)
            .unwrap_or_default();
        let fetch = |page: Option<usize>| {
            let (path, operation) = (&path, &operation);
            async move {
                let page = page.unwrap_or(1);
                let response = api
                    .send(
                        Method::GET,
                        &format!(
                            "/api/v1/repository/{path}/tag/?onlyActiveTags=true&limit={PAGE_SIZE}&page={page}"
                        ),
                        operation,
                    )
                    .await?;
                rest::listing_status(api, &response, repository, operation, AUTH_HINT)?;
                let batch: Page = api.json(&response, operation)?;
                let next = batch.has_additional.then_some(page + 1);
                // The body echoes the page number, so the tags alone tell a repeated page.
                let names: Vec<String> = batch.tags.iter().map(|tag| tag.name.clone()).collect();
                Ok::<_, RegistryError>(pager::Page::new(batch.tags, next, names))
            }
        };
        let tags = Pager::new(&repository.registry, &operation, "the page number")
            .collect(fetch)
            .await?;
        // A tag whose expiration has passed is history, not a tag: it cannot be deleted again.
        let tags = tags
            .into_iter()
            .filter(|tag| tag.end_ts.is_none_or(|end| end > now))
            .map(|tag| ListedTag {
                last_pulled: None,
                handle: tag.name.clone(),
                tag: tag.name,
                digest: tag.manifest_digest,
                created: tag.start_ts.map(Timestamp::from_unix_seconds),
                refusal: None,
            })
            .collect();
        Ok(Listing {
            tags,
            ..Listing::default()
        })
    }

    async fn delete_tag(
        &self,
        repository: &Repository,
        tag: &ListedTag,
    ) -> Result<Deleted, CallError> {
        let api = rest::built_client(&self.api)?;
        let operation = format!("delete tag {repository}:{}", tag.tag);
        let path = format!(
            "/api/v1/repository/{}/tag/{}",
            repository_path(repository)?,
            rest::encode(&tag.handle)
        );
        let response = api.send(Method::DELETE, &path, &operation).await?;
        match response.status {
            200 | 204 => Ok(Deleted::Removed),
            404 => Ok(Deleted::Absent),
            409 => Err(CallError::Refused(format!(
                "the tag is immutable in Quay ({}); make it mutable in the repository settings to delete it",
                response.error_text()
            ))),
            _ => Err(api.status_error(&response, &operation, AUTH_HINT).into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_are_namespace_and_name() {
        let repository = |path: &str| Repository {
            registry: "quay.io".into(),
            path: path.into(),
        };
        assert_eq!(repository_path(&repository("org/app")).unwrap(), "org/app");
        assert!(repository_path(&repository("app")).is_err());
    }
}
