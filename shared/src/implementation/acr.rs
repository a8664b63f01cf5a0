//! Azure Container Registry: tags listed with `GET /acr/v1/{name}/_tags` (newest first, paginated, with
//! digests, `createdTime` and the `deleteEnabled` lock) and removed with `DELETE /acr/v1/{name}/_tags/{tag}`,
//! which untags and leaves the manifest and its sibling tags alone. A digest target goes through
//! `DELETE /v2/{name}/manifests/{digest}`, which removes the manifest with every tag on it. No `az` CLI.
//!
//! Untagged manifests come from `GET /acr/v1/{name}/_manifests` (manifests with an empty `tags` list). Its
//! `references` name the children of each manifest list, so the children of every listed index are left
//! out without reading any manifest body.
//!
//! Each call first goes out without a token; ACR's 401 challenge names the scope it needs, for which an
//! access token is fetched from the registry's own `/oauth2/token` (always on the API's origin, whatever
//! realm the challenge names): with an ACR refresh token (the null-GUID username `docker-credential-acr`
//! answers, or an identity token) by the refresh-token grant, with Basic credentials (admin user,
//! repository-scoped token, service principal) by `GET`, else anonymously. Tokens are kept per scope.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use futures_util::stream::{self, StreamExt};
use reqwest::Method;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::rest::{self, CallError, ListedTag, Listing, ListingNeeds, TagApi};
use super::{Context, DeleteRemoves, Flag, HostRule, Implementation, Spec, UntaggedManifest};
use crate::acr::NULL_GUID;
use crate::dates::Timestamp;
use crate::dockerconfig::RegistryAuth;
use crate::reference::Repository;
use crate::referrers::manifest_subject;
use crate::registry::api::{ApiClient, ApiResponse};
use crate::registry::auth::parse_www_authenticate;
use crate::registry::pager::{Page, Pager};
use crate::registry::{Deleted, RegistryError};
use crate::secret::Secret;

pub(super) const SPEC: Spec = Spec {
    name: "acr",
    title: "ACR",
    build,
    flags: FLAGS,
    environment: &[],
    hosts: &[HostRule::Suffix(".azurecr.io")],
    probe: None,
    delete_removes: DeleteRemoves::Tag,
    lists_untagged: true,
};

/// The flags the ACR module reads.
const FLAGS: &[Flag] = &[Flag {
    name: "acr-api-url",
    value_name: "URL",
    help: "ACR data-plane base URL (default: https://<registry host>)",
}];

/// The data-plane API version the description requires on every `/acr/v1` call.
const API_VERSION: &str = "2021-07-01";
/// Tags or manifests per page.
const PAGE_SIZE: usize = 100;

const LIST_HINT: &str = "the identity needs the AcrPull role (or a repository-scoped token with content/read and metadata/read) on the registry";
const DELETE_HINT: &str = "the identity needs the AcrDelete role on the registry (or a repository-scoped token with content/delete)";
const TOKEN_HINT: &str = "log in through docker-credential-acr (Entra ID) or `az acr login`, or use the admin user or a repository-scoped token";

pub(super) fn build(context: Context) -> Box<dyn Implementation> {
    Box::new(Acr {
        api: api_client(&context),
        auth: context.auth,
        tokens: Mutex::new(BTreeMap::new()),
        challenge: tokio::sync::Mutex::new(()),
        parallel: context.parallel,
    })
}

/// The API client, with the registry's options (`--insecure-registry`, `--skip-tls-verify-registry`,
/// `--ca-file`): the API is the registry's own host, or a proxy in front of it.
fn api_client(context: &Context) -> Result<ApiClient, RegistryError> {
    ApiClient::new(
        &rest::api_base(context, "acr-api-url"),
        "ACR API",
        context.client.options(),
    )
}

struct Acr {
    api: Result<ApiClient, RegistryError>,
    auth: RegistryAuth,
    /// Access tokens by `(repository, action)`.
    tokens: Mutex<BTreeMap<(String, &'static str), Secret<String>>>,
    /// Held by the call that answers a challenge while no token is cached, so parallel calls (a batch of
    /// deletes) wait for its token instead of each fetching one.
    challenge: tokio::sync::Mutex<()>,
    parallel: usize,
}

#[derive(Deserialize)]
struct TagList {
    #[serde(default)]
    tags: Vec<AcrTag>,
}

/// The next page's link a listing body may carry instead of (or besides) the `Link` header.
#[derive(Deserialize)]
struct BodyLink {
    link: Option<String>,
}

/// The target of a body's `link`, written as a `Link` header value (`</acr/v1/…>; rel="next"`, as ACR
/// sends it) or bare.
fn body_link_target(link: &str) -> Option<String> {
    let link = link.trim();
    let target = match link.strip_prefix('<') {
        Some(rest) => &rest[..rest.find('>')?],
        None => link,
    };
    (!target.is_empty()).then(|| target.to_owned())
}

/// `link` (from a `Link` header or a body) with the `api-version` every `/acr/v1` call needs: ACR's links
/// leave it out. A link that is a path is taken under the API base, whose prefix (a proxy's) ACR does not
/// know.
fn with_api_version(link: String) -> String {
    let link = match link.strip_prefix('/') {
        Some(path) if !path.starts_with('/') => path.to_owned(),
        _ => link,
    };
    let has_version = link.split_once('?').is_some_and(|(_, query)| {
        query
            .split('&')
            .any(|pair| pair.starts_with("api-version="))
    });
    if has_version {
        link
    } else if link.contains('?') {
        format!("{link}&api-version={API_VERSION}")
    } else {
        format!("{link}?api-version={API_VERSION}")
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AcrTag {
    name: String,
    digest: Option<String>,
    created_time: Option<String>,
    changeable_attributes: Option<Changeable>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Changeable {
    delete_enabled: Option<bool>,
}

impl Changeable {
    fn locked(attributes: Option<&Changeable>) -> bool {
        attributes.and_then(|attributes| attributes.delete_enabled) == Some(false)
    }
}

#[derive(Deserialize)]
struct ManifestList {
    #[serde(default)]
    manifests: Vec<AcrManifest>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AcrManifest {
    digest: String,
    created_time: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    /// The children of a manifest list; empty for an image.
    #[serde(default)]
    references: Vec<Reference>,
    changeable_attributes: Option<Changeable>,
}

#[derive(Deserialize)]
struct Reference {
    digest: String,
}

/// The untagged manifests of a repository, children of listed indexes left out.
#[derive(Default)]
struct Untagged {
    /// Digest → `createdTime`.
    manifests: BTreeMap<String, Option<String>>,
    /// Digests locked with `deleteEnabled=false`.
    locked: BTreeSet<String>,
}

impl Untagged {
    fn from_manifests(manifests: Vec<AcrManifest>) -> Untagged {
        // Children of untagged indexes are spared too: `--older-than` judges each manifest alone and could
        // keep a recent untagged index (still pulled by digest) while deleting an older child it reuses.
        // They become plain untagged manifests once their index is gone, for the next run.
        let referenced: BTreeSet<&str> = manifests
            .iter()
            .flat_map(|manifest| manifest.references.iter().map(|r| r.digest.as_str()))
            .collect();
        let mut untagged = Untagged::default();
        for manifest in &manifests {
            if !manifest.tags.is_empty() || referenced.contains(manifest.digest.as_str()) {
                continue;
            }
            if Changeable::locked(manifest.changeable_attributes.as_ref()) {
                untagged.locked.insert(manifest.digest.clone());
            }
            untagged
                .manifests
                .insert(manifest.digest.clone(), manifest.created_time.clone());
        }
        untagged
    }
}

#[derive(Deserialize)]
struct AccessToken {
    access_token: Option<String>,
}

impl Acr {
    /// Sends `path` with the access token for `(repository, action)`, fetching one for the scope the 401
    /// challenge names when there is none yet or the cached one was refused; asking for `accept`, else
    /// JSON.
    async fn call(
        &self,
        method: Method,
        path: &str,
        operation: &str,
        repository: &Repository,
        action: &'static str,
        accept: Option<&str>,
    ) -> Result<ApiResponse, RegistryError> {
        let customise = |request: reqwest::RequestBuilder| match accept {
            Some(accept) => request.header(reqwest::header::ACCEPT, accept),
            None => request,
        };
        let api = rest::built_client(&self.api)?;
        let key = (repository.path.clone(), action);
        let lookup = || self.tokens.lock().ok().and_then(|t| t.get(&key).cloned());
        let (cached, _challenge) = match lookup() {
            Some(token) => (Some(token), None),
            None => {
                let guard = self.challenge.lock().await;
                match lookup() {
                    Some(token) => (Some(token), None),
                    None => (None, Some(guard)),
                }
            }
        };
        let response = match &cached {
            Some(token) => {
                api.clone()
                    .with_bearer(token)?
                    .send_with(method.clone(), path, operation, customise)
                    .await?
            }
            None => {
                api.send_with(method.clone(), path, operation, customise)
                    .await?
            }
        };
        if response.status != 401 {
            return Ok(response);
        }
        let challenge = response
            .header("www-authenticate")
            .map(parse_www_authenticate)
            .unwrap_or_default()
            .into_iter()
            .find(|challenge| challenge.scheme == "bearer");
        let Some(challenge) = challenge else {
            return Ok(response);
        };
        let host = api.base().host_str().unwrap_or_default().to_owned();
        let service = challenge.param("service").unwrap_or(&host).to_owned();
        let scope = challenge.param("scope").map_or_else(
            || format!("repository:{}:{action}", repository.path),
            str::to_owned,
        );
        let token = self.access_token(api, &service, &scope).await?;
        if let Ok(mut tokens) = self.tokens.lock() {
            tokens.insert(key, token.clone());
        }
        api.clone()
            .with_bearer(&token)?
            .send_with(method, path, operation, customise)
            .await
    }

    /// Sends the DELETE `path` with the `delete` token.
    async fn send_delete(
        &self,
        path: &str,
        operation: &str,
        repository: &Repository,
    ) -> Result<ApiResponse, RegistryError> {
        self.call(Method::DELETE, path, operation, repository, "delete", None)
            .await
    }

    /// Reads each of `digests` over v2 with [`Acr::call`] (`pull`), `parallel` at a time: digest → its
    /// body, `None` for one ACR does not hold. The generic v2 client would ask `/oauth2/token` without the
    /// `api-version` ACR's description requires, and with a refresh token as a password.
    async fn read_manifests(
        &self,
        repository: &Repository,
        digests: &[String],
        method: Method,
    ) -> Result<BTreeMap<String, Option<Vec<u8>>>, RegistryError> {
        let accept = crate::registry::MANIFEST_MEDIA_TYPES.join(", ");
        let accept = accept.as_str();
        let read = |digest: String| {
            let method = method.clone();
            async move {
                let operation = format!("read manifest {repository}@{digest}");
                let path = format!(
                    "v2/{}/manifests/{}",
                    v2_path(repository),
                    rest::encode(&digest)
                );
                let response = self
                    .call(method, &path, &operation, repository, "pull", Some(accept))
                    .await?;
                match response.status {
                    200 => Ok((digest, Some(response.body))),
                    404 => Ok((digest, None)),
                    _ => Err(rest::built_client(&self.api)?
                        .status_error(&response, &operation, LIST_HINT)),
                }
            }
        };
        stream::iter(digests.iter().cloned())
            .map(read)
            .buffer_unordered(self.parallel.max(1))
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect()
    }

    /// Every item of an `/acr/v1` listing starting at `path`, following the `Link` header or the body's
    /// `link`; `items` takes them out of a page.
    async fn pages<P: DeserializeOwned, T>(
        &self,
        path: String,
        operation: &str,
        repository: &Repository,
        items: impl Fn(P) -> Vec<T>,
    ) -> Result<Vec<T>, RegistryError> {
        let (first, items) = (&path, &items);
        Pager::new(&repository.registry, operation, "the next link")
            .collect(|path: Option<String>| async move {
                let path = path.as_ref().unwrap_or(first);
                let response = self
                    .call(
                        Method::GET,
                        path,
                        operation,
                        repository,
                        "metadata_read",
                        None,
                    )
                    .await?;
                let api = rest::built_client(&self.api)?;
                rest::listing_status(api, &response, repository, operation, LIST_HINT)?;
                let page = items(api.json(&response, operation)?);
                let next = response.next_link().or_else(|| {
                    serde_json::from_slice::<BodyLink>(&response.body)
                        .ok()
                        .and_then(|body| body.link)
                        .and_then(|link| body_link_target(&link))
                });
                Ok(Page::new(page, next.map(with_api_version), response.body))
            })
            .await
    }

    /// The manifests of `repository` no tag points at, from the manifest listing.
    async fn untagged(&self, repository: &Repository) -> Result<Untagged, RegistryError> {
        let operation = format!("list manifests of {repository}");
        let path = format!(
            "acr/v1/{}/_manifests?api-version={API_VERSION}&n={PAGE_SIZE}",
            rest::encode(&repository.path)
        );
        let manifests = self
            .pages(path, &operation, repository, |page: ManifestList| {
                page.manifests
            })
            .await?;
        Ok(Untagged::from_manifests(manifests))
    }

    /// An access token for `scope` from the registry's `/oauth2/token`.
    async fn access_token(
        &self,
        api: &ApiClient,
        service: &str,
        scope: &str,
    ) -> Result<Secret<String>, RegistryError> {
        let operation = format!("get an ACR access token for {scope}");
        let refresh = match &self.auth {
            RegistryAuth::Basic { username, password } if username == NULL_GUID => Some(password),
            RegistryAuth::IdentityToken(token) => Some(token),
            _ => None,
        };
        let response = match (&self.auth, refresh) {
            (_, Some(refresh)) => {
                let form = [
                    ("grant_type", "refresh_token"),
                    ("service", service),
                    ("scope", scope),
                    ("refresh_token", refresh.expose().as_str()),
                ];
                api.send_form(Method::POST, "oauth2/token", &operation, &form)
                    .await?
            }
            (RegistryAuth::RegistryToken(token), None) => return Ok(token.clone()),
            (auth, None) => {
                let client = match auth {
                    RegistryAuth::Basic { username, password } => {
                        api.clone().with_basic(username, password)?
                    }
                    _ => api.clone(),
                };
                let query = [
                    ("service", service),
                    ("scope", scope),
                    ("api-version", API_VERSION),
                ];
                client
                    .send_with(Method::GET, "oauth2/token", &operation, |request| {
                        request.query(&query)
                    })
                    .await?
            }
        };
        if response.status != 200 {
            return Err(api.status_error(&response, &operation, TOKEN_HINT));
        }
        api.json::<AccessToken>(&response, &operation)?
            .access_token
            .filter(|token| !token.is_empty())
            .map(Secret::new)
            .ok_or_else(|| RegistryError::InvalidResponse {
                registry: api.label().to_owned(),
                operation,
                message: "no access_token in the answer".into(),
            })
    }
}

/// The repository as v2 routes take it: its path with its slashes, as the distribution API does.
fn v2_path(repository: &Repository) -> String {
    repository
        .path
        .split('/')
        .map(rest::encode)
        .collect::<Vec<_>>()
        .join("/")
}

impl TagApi for Acr {
    const SPEC: &'static Spec = &SPEC;

    fn parallel(&self) -> usize {
        self.parallel
    }

    /// The tag list carries digests and creation times; asking for digests would also list the
    /// manifests, which only digest targets need.
    fn tag_listing_needs(_with_digests: bool) -> ListingNeeds {
        ListingNeeds {
            dates: true,
            digests: false,
        }
    }

    async fn listing(
        &self,
        repository: &Repository,
        needs: ListingNeeds,
    ) -> Result<Listing, RegistryError> {
        let operation = format!("list tags of {repository}");
        let path = format!(
            "acr/v1/{}/_tags?api-version={API_VERSION}&n={PAGE_SIZE}&orderby=timedesc",
            rest::encode(&repository.path)
        );
        let tags = self
            .pages(path, &operation, repository, |page: TagList| page.tags)
            .await?;
        let mut listing = Listing::default();
        listing.tags.extend(tags.into_iter().map(|tag| {
            let locked = Changeable::locked(tag.changeable_attributes.as_ref());
            ListedTag {
                last_pulled: None,
                handle: tag.name.clone(),
                refusal: locked.then(|| {
                    "the tag is locked (deleteEnabled=false); unlock it with `az acr repository update --delete-enabled true`".to_owned()
                }),
                tag: tag.name,
                digest: tag.digest,
                created: (tag.created_time.as_deref()).and_then(Timestamp::parse_rfc3339),
            }
        }));
        // Digests come with every tag; `digests` asks for digest targets, which may name an untagged
        // manifest only the manifest listing knows.
        if needs.digests {
            let untagged = self.untagged(repository).await?;
            for digest in &untagged.locked {
                listing.digest_refusals.insert(
                    digest.clone(),
                    "the manifest is locked (deleteEnabled=false); unlock it with `az acr manifest update --delete-enabled true`".to_owned(),
                );
            }
            listing.untagged.extend(untagged.manifests.into_keys());
        }
        Ok(listing)
    }

    async fn delete_tag(
        &self,
        repository: &Repository,
        tag: &ListedTag,
    ) -> Result<Deleted, CallError> {
        let operation = format!("delete tag {repository}:{}", tag.tag);
        let path = format!(
            "acr/v1/{}/_tags/{}?api-version={API_VERSION}",
            rest::encode(&repository.path),
            rest::encode(&tag.handle)
        );
        let response = self.send_delete(&path, &operation, repository).await?;
        match response.status {
            200 | 202 | 204 => Ok(Deleted::Removed),
            404 => Ok(Deleted::Absent),
            405 => Err(CallError::Refused(format!(
                "ACR refuses the delete ({}); the tag, its manifest or the repository is locked (deleteEnabled=false)",
                response.error_text()
            ))),
            _ => Err(rest::built_client(&self.api)?
                .status_error(&response, &operation, DELETE_HINT)
                .into()),
        }
    }

    async fn delete_digest(
        &self,
        repository: &Repository,
        digest: &str,
        _tags: &[ListedTag],
    ) -> Result<Deleted, CallError> {
        let operation = format!("delete manifest {repository}@{digest}");
        let path = format!(
            "v2/{}/manifests/{}?api-version={API_VERSION}",
            v2_path(repository),
            rest::encode(digest)
        );
        let response = self.send_delete(&path, &operation, repository).await?;
        match response.status {
            200 | 202 => Ok(Deleted::Removed),
            404 => Ok(Deleted::Absent),
            405 => Err(CallError::Refused(format!(
                "ACR refuses the delete ({}); the manifest or repository is locked (deleteEnabled=false)",
                response.error_text()
            ))),
            _ => Err(rest::built_client(&self.api)?
                .status_error(&response, &operation, DELETE_HINT)
                .into()),
        }
    }

    async fn untagged(
        &self,
        repository: &Repository,
    ) -> Result<Option<Vec<UntaggedManifest>>, RegistryError> {
        let untagged = Acr::untagged(self, repository).await?;
        Ok(Some(
            untagged
                .manifests
                .into_iter()
                .map(|(digest, created)| UntaggedManifest {
                    digest,
                    created: created.as_deref().and_then(Timestamp::parse_rfc3339),
                    // `_manifests` names no subject (its description has none): read over v2.
                    subject: None,
                })
                .collect(),
        ))
    }

    async fn untagged_subjects(
        &self,
        repository: &Repository,
        digests: &[String],
    ) -> Result<Option<BTreeMap<String, String>>, RegistryError> {
        let read = self
            .read_manifests(repository, digests, Method::GET)
            .await?;
        Ok(Some(
            read.into_iter()
                .filter_map(|(digest, body)| Some((digest, manifest_subject(&body?)?)))
                .collect(),
        ))
    }

    async fn api_referrers(
        &self,
        repository: &Repository,
        digests: &[String],
    ) -> Result<crate::referrers::ApiReferrers, RegistryError> {
        let ask = |digest: String| async move {
            let operation = format!("GET referrers of {repository}@{digest}");
            let first = format!(
                "v2/{}/referrers/{}",
                v2_path(repository),
                rest::encode(&digest)
            );
            let (first, operation) = (&first, &operation);
            let listed = Pager::new(&repository.registry, operation, "the next link")
                .collect(|path: Option<String>| async move {
                    let path = path.as_ref().unwrap_or(first);
                    let accept = Some("application/vnd.oci.image.index.v1+json");
                    let response = self
                        .call(Method::GET, path, operation, repository, "pull", accept)
                        .await?;
                    let api = rest::built_client(&self.api)?;
                    if response.status != 200 {
                        return Err(api.status_error(&response, operation, LIST_HINT));
                    }
                    let listed =
                        crate::registry::parse_referrers(&response.body).map_err(|message| {
                            RegistryError::InvalidResponse {
                                registry: repository.registry.clone(),
                                operation: operation.to_string(),
                                message,
                            }
                        })?;
                    Ok(Page::new(listed, response.next_link(), response.body))
                })
                .await?;
            Ok::<_, RegistryError>((digest, listed))
        };
        let asked: Vec<_> = stream::iter(digests.iter().cloned())
            .map(ask)
            .buffer_unordered(self.parallel.max(1))
            .collect()
            .await;
        let listed = asked.into_iter().collect::<Result<_, _>>()?;
        Ok(crate::referrers::ApiReferrers::Listed(listed))
    }

    async fn missing_manifests(
        &self,
        repository: &Repository,
        digests: &[String],
    ) -> Result<Option<BTreeSet<String>>, RegistryError> {
        let read = self
            .read_manifests(repository, digests, Method::HEAD)
            .await?;
        Ok(Some(
            read.into_iter()
                .filter(|(_, found)| found.is_none())
                .map(|(digest, _)| digest)
                .collect(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_client_takes_the_registry_options() {
        let context = |options: &crate::registry::ClientOptions| Context {
            client: crate::registry::Client::new("r.azurecr.io", RegistryAuth::Anonymous, options)
                .unwrap(),
            auth: RegistryAuth::Anonymous,
            parallel: 1,
            settings: super::super::Settings::new([(
                "acr-api-url".to_string(),
                "http://acr-proxy.example.test".to_string(),
            )]),
        };
        let defaults = crate::registry::ClientOptions::default();
        assert!(api_client(&context(&defaults)).is_err());
        let insecure = crate::registry::ClientOptions {
            insecure: true,
            ..defaults
        };
        assert!(api_client(&context(&insecure)).is_ok());
    }

    #[test]
    fn links_get_the_api_version_they_lack() {
        let v = API_VERSION;
        assert_eq!(
            with_api_version("/acr/v1/a/_tags?last=x&n=100".into()),
            format!("acr/v1/a/_tags?last=x&n=100&api-version={v}")
        );
        assert_eq!(
            with_api_version("/acr/v1/a/_tags".into()),
            format!("acr/v1/a/_tags?api-version={v}")
        );
        let kept = "https://r.azurecr.io/acr/v1/a/_tags?api-version=2019-08-15&last=x";
        assert_eq!(with_api_version(kept.into()), kept);
        assert_eq!(
            body_link_target("</acr/v1/a/_tags?last=x&n=2>; rel=\"next\"").as_deref(),
            Some("/acr/v1/a/_tags?last=x&n=2")
        );
        assert_eq!(
            body_link_target("/acr/v1/a/_tags?last=x").as_deref(),
            Some("/acr/v1/a/_tags?last=x")
        );
        assert_eq!(body_link_target(""), None);
        assert_eq!(body_link_target("<unterminated"), None);
    }

    #[test]
    fn children_of_listed_indexes_are_not_untagged() {
        let list: ManifestList = serde_json::from_value(serde_json::json!({"manifests": [
            {"digest": "sha256:index", "tags": ["multi"], "createdTime": "2026-01-01T00:00:00Z",
             "references": [{"digest": "sha256:amd64"}, {"digest": "sha256:arm64"}]},
            {"digest": "sha256:amd64", "tags": [], "createdTime": "2026-01-01T00:00:00Z"},
            {"digest": "sha256:arm64", "createdTime": "2026-01-01T00:00:00Z"},
            {"digest": "sha256:gone-index", "tags": [], "references": [{"digest": "sha256:child-of-gone"}]},
            {"digest": "sha256:child-of-gone", "tags": [], "createdTime": "2025-01-01T00:00:00Z"},
            {"digest": "sha256:orphan", "tags": [], "createdTime": "2025-01-01T00:00:00Z",
             "changeableAttributes": {"deleteEnabled": false}},
            {"digest": "sha256:image", "tags": ["v1"]}
        ]}))
        .unwrap();
        let untagged = Untagged::from_manifests(list.manifests);
        assert_eq!(
            untagged.manifests,
            BTreeMap::from([
                ("sha256:gone-index".to_owned(), None),
                (
                    "sha256:orphan".to_owned(),
                    Some("2025-01-01T00:00:00Z".to_owned())
                ),
            ])
        );
        assert_eq!(
            untagged.locked,
            BTreeSet::from(["sha256:orphan".to_owned()])
        );
    }
}
