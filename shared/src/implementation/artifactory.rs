//! JFrog Artifactory: tags listed through the Docker API of a repository, dated and digested through the
//! storage API, and removed with "Delete Item" on the tag's folder, which holds that tag's own manifest:
//! sibling tags are other folders and stay.
//!
//! JFrog publishes its REST API as HTML only (jfrog.com/help, "JFrog REST APIs"): "List Docker Tags"
//! (`GET /artifactory/api/docker/{repo-key}/v2/{image}/tags/list?n=&last=`), "Folder Info" / "File Info"
//! (`GET /artifactory/api/storage/{repo-key}/{path}`: `created`, `children`, `checksums.sha256`) and
//! "Delete Item" (`DELETE /artifactory/{repo-key}/{path}`).
//!
//! The repository key: `--artifactory-repository`, else the first component of the repository path, as
//! in Artifactory's "repository path" access method and on `*.jfrog.io`
//! (`acme.jfrog.io/docker-local/team/app` → key `docker-local`, image `team/app`). With the subdomain or
//! port methods the key is not in the path, so the flag names it and the whole path is the image.

use futures_util::stream::{self, StreamExt, TryStreamExt};
use reqwest::Method;
use serde::Deserialize;

use super::rest::{self, CallError, ListedTag, Listing, ListingNeeds, TagApi};
use super::{Context, DeleteRemoves, Flag, HostRule, Implementation, Probe, Spec};
use crate::dates::Timestamp;
use crate::reference::Repository;
use crate::registry::api::ApiClient;
use crate::registry::pager::{Page, Pager};
use crate::registry::{Deleted, RegistryError};

pub(super) const SPEC: Spec = Spec {
    name: "artifactory",
    title: "Artifactory",
    build,
    flags: FLAGS,
    environment: &[],
    hosts: &[HostRule::Suffix(".jfrog.io")],
    probe: Some(Probe {
        // JFrog REST API, "System Health Ping": `OK`.
        path: "/artifactory/api/system/ping",
        recognise: |response| {
            response.is_success() && String::from_utf8_lossy(&response.body).trim() == "OK"
        },
        precedence: 2,
    }),
    delete_removes: DeleteRemoves::Manifest,
    lists_untagged: false,
};

/// The flags the Artifactory module reads.
const FLAGS: &[Flag] = &[
    Flag {
        name: "repo-artifactory-token",
        value_name: "TOKEN",
        help: "Artifactory access token (Bearer) for the Artifactory API; default: username/password, then the docker config's",
    },
    Flag {
        name: "repo-artifactory-username",
        value_name: "USER",
        help: "Artifactory user for the Artifactory API",
    },
    Flag {
        name: "repo-artifactory-password",
        value_name: "PASSWORD",
        help: "Password or identity token for --repo-artifactory-username",
    },
    Flag {
        name: "artifactory-url",
        value_name: "URL",
        help: "Artifactory base URL, without /artifactory (default: https://<registry host>)",
    },
    Flag {
        name: "artifactory-repository",
        value_name: "KEY",
        help: "Docker repository key when the registry host does not carry it in the path (subdomain or port access)",
    },
];

/// Tags per page of the Docker tags list.
const PAGE_SIZE: usize = 1000;

const AUTH_HINT: &str = "give an access token (--repo-artifactory-token) or a user (--repo-artifactory-username/--repo-artifactory-password) with read and delete permissions on the repository";

pub(super) fn build(context: Context) -> Box<dyn Implementation> {
    let credentials = rest::credentials(
        &context,
        Some("repo-artifactory-token"),
        "repo-artifactory-username",
        "repo-artifactory-password",
    );
    Box::new(Artifactory {
        api: rest::api_client(&context, "artifactory-url", "Artifactory API", credentials),
        key: context
            .settings
            .text("artifactory-repository")
            .map(str::to_string),
        parallel: context.parallel.max(1),
    })
}

struct Artifactory {
    api: Result<ApiClient, RegistryError>,
    key: Option<String>,
    parallel: usize,
}

#[derive(Deserialize)]
struct TagsList {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct ItemInfo {
    created: Option<String>,
    #[serde(default)]
    children: Vec<Child>,
    checksums: Option<Checksums>,
}

#[derive(Deserialize)]
struct Child {
    uri: String,
}

#[derive(Deserialize)]
struct Checksums {
    sha256: Option<String>,
}

impl Artifactory {
    /// The repository key and the image path inside it, each path segment encoded.
    fn locate(&self, repository: &Repository) -> Result<(String, String), RegistryError> {
        let encode_path = |path: &str| {
            path.split('/')
                .map(rest::encode)
                .collect::<Vec<_>>()
                .join("/")
        };
        match (&self.key, repository.path.split_once('/')) {
            (Some(key), _) => Ok((rest::encode(key), encode_path(&repository.path))),
            (None, Some((key, image))) if !key.is_empty() && !image.is_empty() => {
                Ok((rest::encode(key), encode_path(image)))
            }
            _ => Err(RegistryError::Config(format!(
                "{repository}: no Artifactory repository key; give it with --artifactory-repository or as the first path component (<host>/<repo-key>/<image>)"
            ))),
        }
    }

    async fn item(&self, path: &str, operation: &str) -> Result<Option<ItemInfo>, RegistryError> {
        let api = rest::built_client(&self.api)?;
        let response = api
            .send(
                Method::GET,
                &format!("/artifactory/api/storage/{path}"),
                operation,
            )
            .await?;
        match response.status {
            200 => Ok(Some(api.json(&response, operation)?)),
            404 => Ok(None),
            _ => Err(api.status_error(&response, operation, AUTH_HINT)),
        }
    }

    /// The tag folder's date and, when asked, its manifest's digest.
    async fn details(
        &self,
        key: &str,
        image: &str,
        tag: String,
        needs: ListingNeeds,
    ) -> Result<ListedTag, RegistryError> {
        let mut listed = ListedTag {
            last_pulled: None,
            handle: rest::encode(&tag),
            tag,
            digest: None,
            created: None,
            refusal: None,
        };
        if !needs.dates && !needs.digests {
            return Ok(listed);
        }
        let folder = format!("{key}/{image}/{}", listed.handle);
        let operation = format!("read the tag folder {folder}");
        let Some(info) = self.item(&folder, &operation).await? else {
            return Ok(listed);
        };
        listed.created = (info.created.as_deref()).and_then(Timestamp::parse_rfc3339);
        if needs.digests {
            // A multi-arch tag holds list.manifest.json instead of manifest.json.
            if let Some(manifest) = info
                .children
                .iter()
                .map(|child| child.uri.trim_start_matches('/'))
                .find(|name| matches!(*name, "manifest.json" | "list.manifest.json"))
            {
                let file = format!("{folder}/{manifest}");
                let operation = format!("read {file}");
                listed.digest = self
                    .item(&file, &operation)
                    .await?
                    .and_then(|info| info.checksums)
                    .and_then(|checksums| checksums.sha256)
                    .map(|hex| format!("sha256:{hex}"));
            }
        }
        Ok(listed)
    }
}

impl TagApi for Artifactory {
    const SPEC: &'static Spec = &SPEC;

    fn parallel(&self) -> usize {
        self.parallel
    }

    /// Dates come with the tag folder; digests cost a read of its manifest file each.
    fn tag_listing_needs(with_digests: bool) -> ListingNeeds {
        ListingNeeds {
            dates: true,
            digests: with_digests,
        }
    }

    async fn listing(
        &self,
        repository: &Repository,
        needs: ListingNeeds,
    ) -> Result<Listing, RegistryError> {
        let api = rest::built_client(&self.api)?;
        let (key, image) = self.locate(repository)?;
        let operation = format!("list tags of {repository}");
        let fetch = |path: Option<String>| {
            let (key, image, operation) = (&key, &image, &operation);
            async move {
                let path = path.unwrap_or_else(|| {
                    format!("/artifactory/api/docker/{key}/v2/{image}/tags/list?n={PAGE_SIZE}")
                });
                let response = api.send(Method::GET, &path, operation).await?;
                rest::listing_status(api, &response, repository, operation, AUTH_HINT)?;
                let page: TagsList = api.json(&response, operation)?;
                let page = page.tags.unwrap_or_default();
                let next = match (response.next_link(), page.last()) {
                    (Some(next), _) => Some(next),
                    (None, Some(last)) if page.len() >= PAGE_SIZE => Some(format!(
                        "/artifactory/api/docker/{key}/v2/{image}/tags/list?n={PAGE_SIZE}&last={}",
                        rest::encode(last)
                    )),
                    _ => None,
                };
                Ok::<_, RegistryError>(Page::new(page, next, response.body))
            }
        };
        let tags: Vec<String> = Pager::new(&repository.registry, &operation, "the next link")
            .collect(fetch)
            .await?;
        let (key, image) = (&key, &image);
        let tags = stream::iter(tags)
            .map(|tag| self.details(key, image, tag, needs))
            .buffered(self.parallel)
            .try_collect()
            .await?;
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
        let (key, image) = self.locate(repository)?;
        let operation = format!("delete the tag folder of {repository}:{}", tag.tag);
        let response = api
            .send(
                Method::DELETE,
                &format!("/artifactory/{key}/{image}/{}", tag.handle),
                &operation,
            )
            .await?;
        match response.status {
            200 | 202 | 204 => Ok(Deleted::Removed),
            404 => Ok(Deleted::Absent),
            _ => Err(api.status_error(&response, &operation, AUTH_HINT).into()),
        }
    }
}
