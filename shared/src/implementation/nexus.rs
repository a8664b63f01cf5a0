//! Sonatype Nexus Repository 3: docker components (one per `image:tag`) found with the search API, dated by
//! their manifest asset, and removed with the components API.
//!
//! Nexus generates its Swagger at run time; the calls follow sonatype/nexus-public's resource docs:
//! `SearchResourceDoc` (`GET /service/rest/v1/search?repository=&format=docker&docker.imageName=`,
//! `continuationToken`) and `ComponentsResourceDoc` (`DELETE /service/rest/v1/components/{id}`: 204, 403,
//! 404, 422).
//!
//! Nexus documents no guarantee about what deleting one component does to other tags whose manifest has
//! the same digest (its docker storage keys manifests by digest too). So a tag that shares its manifest
//! with a tag not being deleted is refused with the reason, never risked: delete those tags together, or
//! by digest.

use std::collections::BTreeSet;

use reqwest::Method;
use serde::Deserialize;

use super::rest::{self, CallError, ListedTag, Listing, ListingNeeds, TagApi};
use super::{Context, DeleteRemoves, Flag, Implementation, Probe, Spec};
use crate::dates::Timestamp;
use crate::reference::Repository;
use crate::registry::api::ApiClient;
use crate::registry::pager::{self, Pager};
use crate::registry::{Deleted, RegistryError};

pub(super) const SPEC: Spec = Spec {
    name: "nexus",
    title: "Nexus",
    build,
    flags: FLAGS,
    environment: &[],
    // Its hosts have arbitrary names: it is found by its probe, or forced.
    hosts: &[],
    probe: Some(Probe {
        // Nexus REST API, "Status": 200 when the server can serve reads.
        path: "/service/rest/v1/status",
        recognise: |response| response.status == 200,
        precedence: 1,
    }),
    delete_removes: DeleteRemoves::Manifest,
    lists_untagged: false,
};

/// The flags the Nexus module reads.
const FLAGS: &[Flag] = &[
    Flag {
        name: "nexus-url",
        value_name: "URL",
        help: "Nexus base URL for the REST API when the docker connector is on another port (default: https://<registry host>)",
    },
    Flag {
        name: "nexus-repository",
        value_name: "NAME",
        help: "Name of the Nexus hosted docker repository (default: the one repository the image is found in)",
    },
    Flag {
        name: "repo-nexus-username",
        value_name: "USER",
        help: "Nexus user for the REST API; default: the docker config's",
    },
    Flag {
        name: "repo-nexus-password",
        value_name: "PASSWORD",
        help: "Password or user-token secret for --repo-nexus-username",
    },
];

const AUTH_HINT: &str = "give a Nexus user with the nx-repository-view-docker-<repository>-browse, -read and -delete privileges (--repo-nexus-username/--repo-nexus-password or docker login)";

pub(super) fn build(context: Context) -> Box<dyn Implementation> {
    let credentials =
        rest::credentials(&context, None, "repo-nexus-username", "repo-nexus-password");
    Box::new(Nexus {
        api: rest::api_client(&context, "nexus-url", "Nexus API", credentials),
        repository: context
            .settings
            .text("nexus-repository")
            .map(str::to_string),
        parallel: context.parallel,
    })
}

struct Nexus {
    api: Result<ApiClient, RegistryError>,
    repository: Option<String>,
    parallel: usize,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Page {
    items: Vec<Component>,
    continuation_token: Option<String>,
}

#[derive(Deserialize)]
struct Component {
    id: String,
    repository: String,
    name: String,
    version: Option<String>,
    #[serde(default)]
    assets: Vec<Asset>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Asset {
    path: String,
    checksum: Option<Checksum>,
    blob_created: Option<String>,
    last_modified: Option<String>,
}

#[derive(Deserialize)]
struct Checksum {
    sha256: Option<String>,
}

/// `name=value&…` with values encoded.
fn query(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(name, value)| format!("{name}={}", rest::encode(value)))
        .collect::<Vec<_>>()
        .join("&")
}

impl TagApi for Nexus {
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
        let operation = format!("search components of {repository}");
        let fetch = |token: Option<String>| {
            let operation = &operation;
            async move {
                let mut pairs = vec![
                    ("format", "docker"),
                    ("docker.imageName", repository.path.as_str()),
                ];
                if let Some(name) = &self.repository {
                    pairs.push(("repository", name));
                }
                if let Some(token) = &token {
                    pairs.push(("continuationToken", token));
                }
                let path = format!("/service/rest/v1/search?{}", query(&pairs));
                let response = api.send(Method::GET, &path, operation).await?;
                if response.status != 200 {
                    return Err(api.status_error(&response, operation, AUTH_HINT));
                }
                let page: Page = api.json(&response, operation)?;
                let next = page.continuation_token.filter(|token| !token.is_empty());
                // The body carries the token, so the components alone tell a repeated page.
                let ids: Vec<String> = page.items.iter().map(|item| item.id.clone()).collect();
                Ok(pager::Page::new(page.items, next, ids))
            }
        };
        let mut components = Pager::new(&repository.registry, &operation, "continuationToken")
            .collect(fetch)
            .await?;
        // Search may match loosely; only this image's tagged components count.
        components
            .retain(|component| component.name == repository.path && component.version.is_some());
        let repositories: BTreeSet<&str> = components
            .iter()
            .map(|component| component.repository.as_str())
            .collect();
        if repositories.len() > 1 {
            return Err(RegistryError::Config(format!(
                "{repository} is in several Nexus repositories ({}); name one with --nexus-repository",
                repositories.into_iter().collect::<Vec<_>>().join(", ")
            )));
        }
        let tags = components
            .into_iter()
            .filter_map(|component| {
                let manifest = component
                    .assets
                    .iter()
                    .find(|asset| asset.path.contains("/manifests/"))
                    .or_else(|| component.assets.first());
                Some(ListedTag {
                    tag: component.version?,
                    digest: manifest
                        .and_then(|asset| asset.checksum.as_ref())
                        .and_then(|checksum| checksum.sha256.as_ref())
                        .map(|hex| format!("sha256:{hex}")),
                    created: manifest
                        .and_then(|asset| {
                            (asset.blob_created.as_deref()).or(asset.last_modified.as_deref())
                        })
                        .and_then(Timestamp::parse_rfc3339),
                    last_pulled: None,
                    handle: component.id,
                    refusal: None,
                })
            })
            .collect();
        Ok(Listing {
            tags,
            ..Listing::default()
        })
    }

    fn refuse(
        &self,
        tag: &ListedTag,
        requested: &BTreeSet<&str>,
        listing: &Listing,
    ) -> Option<String> {
        let digest = tag.digest.as_deref()?;
        let kept: Vec<&str> = listing
            .tags
            .iter()
            .filter(|other| {
                other.digest.as_deref() == Some(digest) && !requested.contains(other.tag.as_str())
            })
            .map(|other| other.tag.as_str())
            .collect();
        (!kept.is_empty()).then(|| {
            format!(
                "the tag shares its manifest {digest} with {}, and Nexus does not guarantee that deleting one docker component leaves the others intact; delete them together, or by digest",
                kept.join(", ")
            )
        })
    }

    async fn delete_tag(
        &self,
        repository: &Repository,
        tag: &ListedTag,
    ) -> Result<Deleted, CallError> {
        let api = rest::built_client(&self.api)?;
        let operation = format!("delete the component of {repository}:{}", tag.tag);
        let path = format!("/service/rest/v1/components/{}", rest::encode(&tag.handle));
        let response = api.send(Method::DELETE, &path, &operation).await?;
        match response.status {
            200 | 204 => Ok(Deleted::Removed),
            404 => Ok(Deleted::Absent),
            _ => Err(api.status_error(&response, &operation, AUTH_HINT).into()),
        }
    }
}
