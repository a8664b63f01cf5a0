//! Google Artifact Registry (and gcr.io, which Artifact Registry serves since Container Registry's shutdown):
//! tags listed with `packages.tags.list`, dates and digests from `packages.versions.list`, tags removed with
//! `packages.tags.delete`, which untags and leaves the version (manifest) and its other tags alone. A digest
//! target goes through `packages.versions.delete?force=true`, which removes the version with its tags.
//!
//! Untagged manifests are the versions no tag points at. Version metadata carries each manifest's
//! `mediaType` but not an index's children, so every tagged version that may be an index (anything but an
//! image manifest) is read over v2 to leave its children out.
//!
//! A repository path maps onto Artifact Registry's names as Google documents: on `<location>-docker.pkg.dev`
//! and `docker.<location>.rep.pkg.dev` it is `<project>/<repository>/<package…>`; on `gcr.io` hosts it is
//! `<project>/<package…>` in the repository named after the host (`gcr.io` in `us`, `eu.gcr.io` in
//! `europe`, `asia.gcr.io` in `asia`, `us.gcr.io` in `us`). The package keeps its slashes, URL-encoded as
//! one path segment. On any other host (a proxy, a test double) `--gcr-location` names the location and the
//! path is read as on `pkg.dev`.
//!
//! The REST API takes a Google OAuth token: `--repo-gcr-token`, else the docker config's password when its
//! username is `oauth2accesstoken` (what `docker-credential-gcr` answers), else the credentials
//! `docker-credential-gcr` would use (Application Default Credentials, metadata server, gcloud).

use std::collections::{BTreeMap, BTreeSet};

use reqwest::Method;
use serde::Deserialize;
use tokio::sync::OnceCell;

use super::rest::{self, CallError, ListedTag, Listing, ListingNeeds, TagApi};
use super::{Context, DeleteRemoves, Flag, HostRule, Implementation, Spec, UntaggedManifest};
use crate::cloudauth::Env;
use crate::dates::{self, Timestamp};
use crate::dockerconfig::RegistryAuth;
use crate::gcr::{USERNAME, google};
use crate::reference::Repository;
use crate::registry::api::ApiClient;
use crate::registry::pager::{Page, Pager};
use crate::registry::{Client, ClientOptions, Deleted, MANIFEST_MEDIA_TYPES, RegistryError};
use crate::secret::Secret;

pub(super) const SPEC: Spec = Spec {
    name: "gcr",
    title: "GCR",
    build,
    flags: FLAGS,
    environment: &[],
    hosts: &[
        HostRule::Exact("gcr.io"),
        HostRule::Suffix(".gcr.io"),
        HostRule::Suffix("-docker.pkg.dev"),
        HostRule::Suffix(".rep.pkg.dev"),
    ],
    probe: None,
    delete_removes: DeleteRemoves::Tag,
    lists_untagged: true,
};

/// The flags the GCR/Artifact Registry module reads.
const FLAGS: &[Flag] = &[
    Flag {
        name: "repo-gcr-token",
        value_name: "TOKEN",
        help: "Google OAuth access token for the Artifact Registry API; default: the docker config's oauth2accesstoken password, else Application Default Credentials",
    },
    Flag {
        name: "gcr-api-url",
        value_name: "URL",
        help: "Artifact Registry API base URL (default: https://artifactregistry.googleapis.com)",
    },
    Flag {
        name: "gcr-location",
        value_name: "LOCATION",
        help: "Artifact Registry location for registry hosts that do not name one (proxies)",
    },
];

const DEFAULT_API: &str = "https://artifactregistry.googleapis.com";
/// Items per page; the API's maximum.
const PAGE_SIZE: usize = 1000;

const LIST_HINT: &str = "the caller needs artifactregistry.tags.list and artifactregistry.versions.list (roles/artifactregistry.reader) on the repository";
const DELETE_HINT: &str = "the caller needs artifactregistry.repositories.deleteArtifacts and artifactregistry.tags.delete (roles/artifactregistry.repoAdmin) on the repository";

pub(super) fn build(context: Context) -> Box<dyn Implementation> {
    let base = context.settings.text("gcr-api-url").map_or_else(
        || DEFAULT_API.to_owned(),
        |url| url.trim_end_matches('/').to_owned(),
    );
    let token = context
        .settings
        .get("repo-gcr-token")
        .cloned()
        .or_else(|| match &context.auth {
            RegistryAuth::Basic { username, password } if username == USERNAME => {
                Some(password.clone())
            }
            _ => None,
        });
    Box::new(Gcr {
        api: ApiClient::new(&base, "Artifact Registry API", &ClientOptions::default()),
        token,
        authorised: OnceCell::new(),
        location: context.settings.text("gcr-location").map(str::to_owned),
        parallel: context.parallel,
        client: context.client,
    })
}

struct Gcr {
    api: Result<ApiClient, RegistryError>,
    /// A token given by flag or docker config; else one is fetched on first use.
    token: Option<Secret<String>>,
    authorised: OnceCell<ApiClient>,
    location: Option<String>,
    parallel: usize,
    /// The v2 client, for reading indexes.
    client: Client,
}

/// Where a repository path lives in Artifact Registry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Package {
    /// `projects/<p>/locations/<l>/repositories/<r>/packages/<encoded package>`.
    parent: String,
}

/// Maps `repository` onto Artifact Registry's resource names.
fn package(repository: &Repository, location: Option<&str>) -> Result<Package, RegistryError> {
    let host = repository.registry.to_ascii_lowercase();
    let gcr_location = match host.as_str() {
        "gcr.io" | "us.gcr.io" => Some("us"),
        "eu.gcr.io" => Some("europe"),
        "asia.gcr.io" => Some("asia"),
        _ => None,
    };
    let segments: Vec<&str> = repository.path.split('/').collect();
    let invalid = |shape: &str| {
        RegistryError::Config(format!(
            "{repository}: an Artifact Registry repository path on {host} is {shape}"
        ))
    };
    let (project, location, repo, image) = if let Some(location) = gcr_location {
        let [project, image @ ..] = &segments[..] else {
            return Err(invalid("<project>/<image>"));
        };
        (*project, location, host.as_str(), image)
    } else {
        let location = host
            .strip_suffix("-docker.pkg.dev")
            .or_else(|| {
                host.strip_prefix("docker.")
                    .and_then(|rest| rest.strip_suffix(".rep.pkg.dev"))
            })
            .or(location)
            .ok_or_else(|| {
                RegistryError::Config(format!(
                    "{host} is not an Artifact Registry host (<location>-docker.pkg.dev, gcr.io); name the location with --gcr-location"
                ))
            })?;
        let [project, repo, image @ ..] = &segments[..] else {
            return Err(invalid("<project>/<repository>/<image>"));
        };
        (*project, location, *repo, image)
    };
    if image.is_empty() || [project, repo].iter().any(|part| part.is_empty()) {
        return Err(invalid("<project>/<repository>/<image>"));
    }
    Ok(Package {
        parent: format!(
            "projects/{}/locations/{}/repositories/{}/packages/{}",
            rest::encode(project),
            rest::encode(location),
            rest::encode(repo),
            rest::encode(&image.join("/"))
        ),
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TagPage {
    #[serde(default)]
    tags: Vec<ArTag>,
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
struct ArTag {
    name: String,
    version: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct VersionPage {
    #[serde(default)]
    versions: Vec<ArVersion>,
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArVersion {
    name: String,
    create_time: Option<String>,
    /// The Docker image's fields (`mediaType`, …), untyped in the API: read leniently.
    #[serde(default)]
    metadata: serde_json::Value,
}

/// One version as the untagged sweep needs it.
struct Version {
    digest: String,
    created: Option<Timestamp>,
    /// Only an image manifest is known not to be an index; any other (or no) media type is read.
    image: bool,
}

/// The last segment of a resource name, percent-decoded (`…/versions/sha256%3Aab` → `sha256:ab`).
fn last_segment(name: &str) -> String {
    let segment = name.rsplit('/').next().unwrap_or(name);
    String::from_utf8_lossy(&crate::percent::decode(segment)).into_owned()
}

impl Gcr {
    /// The API client with the token: given, or from Google's credential sources on first use.
    async fn client(&self) -> Result<&ApiClient, RegistryError> {
        self.authorised
            .get_or_try_init(|| async {
                let api = rest::built_client(&self.api)?.clone();
                let token = match &self.token {
                    Some(token) => token.clone(),
                    None => {
                        google::token(&Env::from_process())
                            .await
                            .map_err(|message| RegistryError::Unauthorized {
                                registry: api.label().to_owned(),
                                message: format!(
                                    "{message}; give --repo-gcr-token or log in with docker-credential-gcr"
                                ),
                            })?
                            .token
                    }
                };
                api.with_bearer(&token)
            })
            .await
    }

    /// Every item of a paginated list at `path` (which already carries a query).
    async fn pages<T>(
        &self,
        path: &str,
        operation: &str,
        repository: &Repository,
        page: impl Fn(
            &ApiClient,
            &crate::registry::api::ApiResponse,
        ) -> Result<(Vec<T>, Option<String>), RegistryError>,
    ) -> Result<Vec<T>, RegistryError> {
        let api = self.client().await?;
        let page = &page;
        Pager::new(&repository.registry, operation, "nextPageToken")
            .collect(|token: Option<String>| async move {
                let url = match &token {
                    Some(token) => format!("{path}&pageToken={}", rest::encode(token)),
                    None => path.to_owned(),
                };
                let response = api.send(Method::GET, &url, operation).await?;
                rest::listing_status(api, &response, repository, operation, LIST_HINT)?;
                let (batch, next) = page(api, &response)?;
                let next = next.filter(|next| !next.is_empty());
                Ok(Page::new(batch, next, response.body))
            })
            .await
    }

    /// Every tag of `package`.
    async fn tags(
        &self,
        repository: &Repository,
        package: &Package,
    ) -> Result<Vec<ArTag>, RegistryError> {
        let operation = format!("list tags of {repository}");
        self.pages(
            &format!("/v1/{}/tags?pageSize={PAGE_SIZE}", package.parent),
            &operation,
            repository,
            |api, response| {
                let page: TagPage = api.json(response, &operation)?;
                Ok((page.tags, page.next_page_token))
            },
        )
        .await
    }

    /// Every version of `package`. `full` asks for the full view, since the basic one (enough for dates)
    /// is not documented to carry the metadata with the media type.
    async fn versions(
        &self,
        repository: &Repository,
        package: &Package,
        full: bool,
    ) -> Result<Vec<Version>, RegistryError> {
        let operation = format!("list versions of {repository}");
        let view = if full { "&view=FULL" } else { "" };
        let versions = self
            .pages(
                &format!("/v1/{}/versions?pageSize={PAGE_SIZE}{view}", package.parent),
                &operation,
                repository,
                |api, response| {
                    let page: VersionPage = api.json(response, &operation)?;
                    Ok((page.versions, page.next_page_token))
                },
            )
            .await?;
        Ok(versions
            .into_iter()
            .map(|version| Version {
                digest: last_segment(&version.name),
                created: (version.create_time.as_deref()).and_then(Timestamp::parse_rfc3339),
                image: (version.metadata["mediaType"].as_str())
                    .is_some_and(|media_type| MANIFEST_MEDIA_TYPES[..2].contains(&media_type)),
            })
            .collect())
    }

    /// The untagged versions of `repository`, without the children of any listed index (tagged or not:
    /// `--older-than` could keep a recent untagged index while deleting an older child it reuses; children
    /// of a removed index go on the next run).
    async fn untagged(
        &self,
        repository: &Repository,
    ) -> Result<Vec<UntaggedManifest>, RegistryError> {
        let package = package(repository, self.location.as_deref())?;
        let tagged: BTreeSet<String> = (self.tags(repository, &package).await?)
            .into_iter()
            .filter_map(|tag| tag.version.as_deref().map(last_segment))
            .collect();
        let versions = self.versions(repository, &package, true).await?;
        let possible_indexes = versions
            .iter()
            .filter(|version| !version.image)
            .map(|version| version.digest.as_str());
        let children = dates::index_children(
            &self.client,
            &repository.path,
            possible_indexes,
            self.parallel,
        )
        .await?;
        Ok(versions
            .into_iter()
            .filter(|version| {
                !tagged.contains(version.digest.as_str()) && !children.contains_key(&version.digest)
            })
            .map(|version| UntaggedManifest {
                digest: version.digest,
                created: version.created,
                subject: None,
            })
            .collect())
    }

    async fn delete_path(&self, path: &str, operation: &str) -> Result<Deleted, CallError> {
        let api = self.client().await?;
        let response = api.send(Method::DELETE, path, operation).await?;
        match response.status {
            200 | 204 => Ok(Deleted::Removed),
            404 => Ok(Deleted::Absent),
            _ => Err(api.status_error(&response, operation, DELETE_HINT).into()),
        }
    }
}

impl TagApi for Gcr {
    const SPEC: &'static Spec = &SPEC;

    fn parallel(&self) -> usize {
        self.parallel
    }

    async fn listing(
        &self,
        repository: &Repository,
        needs: ListingNeeds,
    ) -> Result<Listing, RegistryError> {
        let package = package(repository, self.location.as_deref())?;
        let tags = self.tags(repository, &package).await?;
        // Versions give the dates, and the untagged manifests a digest target may name.
        let versions = if needs.dates || needs.digests {
            self.versions(repository, &package, false).await?
        } else {
            Vec::new()
        };
        let created: BTreeMap<&str, Timestamp> = versions
            .iter()
            .filter_map(|version| Some((version.digest.as_str(), version.created?)))
            .collect();
        let tags: Vec<ListedTag> = tags
            .into_iter()
            .map(|tag| {
                let name = last_segment(&tag.name);
                let digest = tag.version.as_deref().map(last_segment);
                ListedTag {
                    last_pulled: None,
                    handle: name.clone(),
                    tag: name,
                    created: (digest.as_deref()).and_then(|d| created.get(d)).copied(),
                    digest,
                    refusal: None,
                }
            })
            .collect();
        let tagged: BTreeSet<&str> = tags.iter().filter_map(|t| t.digest.as_deref()).collect();
        let untagged = versions
            .iter()
            .filter(|version| !tagged.contains(version.digest.as_str()))
            .map(|version| version.digest.clone())
            .collect();
        Ok(Listing {
            tags,
            untagged,
            ..Listing::default()
        })
    }

    async fn delete_tag(
        &self,
        repository: &Repository,
        tag: &ListedTag,
    ) -> Result<Deleted, CallError> {
        let package = package(repository, self.location.as_deref())?;
        let path = format!("/v1/{}/tags/{}", package.parent, rest::encode(&tag.handle));
        self.delete_path(&path, &format!("delete tag {repository}:{}", tag.tag))
            .await
    }

    async fn delete_digest(
        &self,
        repository: &Repository,
        digest: &str,
        _tags: &[ListedTag],
    ) -> Result<Deleted, CallError> {
        let package = package(repository, self.location.as_deref())?;
        // force=true: a tagged version may not be deleted otherwise; its tags go with it, as a digest
        // target means.
        let path = format!(
            "/v1/{}/versions/{}?force=true",
            package.parent,
            rest::encode(digest)
        );
        self.delete_path(&path, &format!("delete version {repository}@{digest}"))
            .await
    }

    async fn untagged(
        &self,
        repository: &Repository,
    ) -> Result<Option<Vec<UntaggedManifest>>, RegistryError> {
        Gcr::untagged(self, repository).await.map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parent(host: &str, path: &str, location: Option<&str>) -> Result<String, RegistryError> {
        let repository = Repository {
            registry: host.into(),
            path: path.into(),
        };
        package(&repository, location).map(|package| package.parent)
    }

    #[test]
    fn repository_paths_map_onto_artifact_registry_names() {
        assert_eq!(
            parent("europe-west1-docker.pkg.dev", "proj/repo/team/app", None).unwrap(),
            "projects/proj/locations/europe-west1/repositories/repo/packages/team%2Fapp"
        );
        assert_eq!(
            parent("docker.us-central1.rep.pkg.dev", "proj/repo/app", None).unwrap(),
            "projects/proj/locations/us-central1/repositories/repo/packages/app"
        );
        assert_eq!(
            parent("eu.gcr.io", "proj/team/app", None).unwrap(),
            "projects/proj/locations/europe/repositories/eu.gcr.io/packages/team%2Fapp"
        );
        assert_eq!(
            parent("gcr.io", "proj/app", None).unwrap(),
            "projects/proj/locations/us/repositories/gcr.io/packages/app"
        );
        assert_eq!(
            parent("127.0.0.1:5000", "proj/repo/app", Some("us")).unwrap(),
            "projects/proj/locations/us/repositories/repo/packages/app"
        );
        assert!(parent("127.0.0.1:5000", "proj/repo/app", None).is_err());
        assert!(parent("europe-docker.pkg.dev", "proj/repo", None).is_err());
        assert!(parent("gcr.io", "proj", None).is_err());
    }

    #[test]
    fn resource_names_end_in_their_id() {
        assert_eq!(last_segment("a/versions/sha256%3Aab"), "sha256:ab");
        assert_eq!(last_segment("a/tags/v1.2"), "v1.2");
        assert_eq!(last_segment("x%zz"), "x%zz");
    }
}
