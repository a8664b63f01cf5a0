//! Docker Hub: tags and their push dates come from Hub's REST API, and a tag is removed with Hub's own tag
//! DELETE, which leaves the image and its other tags alone.
//!
//! Hub's registry refuses the v2 manifest DELETE (`UNSUPPORTED`), and Hub's published API description
//! documents no delete at all. `DELETE /v2/repositories/{namespace}/{repository}/tags/{tag}/` is the endpoint
//! Hub's own UI, hub-tool and werf use (research: registry-apis.md §2, werf-registries.md §3.2); it is the one
//! call here that is not in the description, so its 404 is not taken at its word: a tag the run listed that
//! then 404s is read back (`GET …/tags/{tag}`, described) and is `absent` only when Hub no longer has it.
//! Hub has no API that deletes a manifest by digest: a digest target fails with "cannot delete" (exit 4) and
//! names the tags to delete instead.
//!
//! Hub's registry has no usable `_catalog`, so `regkit cleanup docker.io/NAMESPACE/*` lists the namespace's
//! repositories from `GET /v2/namespaces/{namespace}/repositories`.

use std::collections::BTreeMap;

use futures_util::stream::{self, StreamExt};
use reqwest::Method as Http;
use tokio::sync::OnceCell;

use super::delete::{self, Deletion, Removal, Step};
use super::{
    BoxFuture, Context, DeleteRemoves, DeleteRequest, Flag, HostRule, Implementation, Spec,
    TagInfo, paths_under,
};
use crate::dates::Timestamp;
use crate::dockerconfig::RegistryAuth;
use crate::reference::{Repository, Target};
use crate::registry::api::{ApiClient, ApiResponse};
use crate::registry::pager::{self, Pager};
use crate::registry::{Deleted, RegistryError};
use crate::report::{Entry, FailureKind, Method, Outcome};
use crate::secret::Secret;

/// The public Docker Hub API.
const DEFAULT_API_URL: &str = "https://hub.docker.com";

/// Hub's largest page.
const PAGE_SIZE: u32 = 100;

/// What works for deleting tags, for every authentication hint.
const CREDENTIAL_HINT: &str = "give --repo-docker-hub-username with the account password (or a personal access token with Read, Write, Delete scope), or --repo-docker-hub-token with a Hub JWT";

/// Hub's answer to a JWT obtained from a personal access token, on deployments that refuse those.
const PAT_REFUSED_HINT: &str = "Docker Hub refuses tokens made from a personal access token here: give --repo-docker-hub-username with the account password (or --repo-docker-hub-token with a JWT from a password login)";

pub(super) const SPEC: Spec = Spec {
    name: "dockerhub",
    title: "Docker Hub",
    build,
    flags: FLAGS,
    environment: &[],
    hosts: &[
        HostRule::Exact("docker.io"),
        HostRule::Exact("index.docker.io"),
        HostRule::Exact("registry-1.docker.io"),
    ],
    probe: None,
    delete_removes: DeleteRemoves::Tag,
    lists_untagged: false,
};

/// The flags this module reads.
const FLAGS: &[Flag] = &[
    Flag {
        name: "docker-hub-api-url",
        value_name: "URL",
        help: "Docker Hub API base URL (default https://hub.docker.com)",
    },
    Flag {
        name: "repo-docker-hub-token",
        value_name: "TOKEN",
        help: "Docker Hub JWT for deleting tags, used as is",
    },
    Flag {
        name: "repo-docker-hub-username",
        value_name: "USER",
        help: "Docker Hub username, exchanged with --repo-docker-hub-password for a Hub token",
    },
    Flag {
        name: "repo-docker-hub-password",
        value_name: "PASSWORD",
        help: "Docker Hub password or personal access token for --repo-docker-hub-username",
    },
];

pub(super) fn build(context: Context) -> Box<dyn Implementation> {
    Box::new(DockerHub {
        context,
        api: OnceCell::new(),
    })
}

struct DockerHub {
    context: Context,
    /// The API client with the Hub token, made on first use (signing in costs a request).
    api: OnceCell<ApiClient>,
}

/// One page of a Hub listing (tags of a repository, repositories of a namespace).
#[derive(serde::Deserialize)]
struct Page<T> {
    next: Option<String>,
    #[serde(default = "Vec::new")]
    results: Vec<T>,
}

/// One entry of `GET /v2/namespaces/{namespace}/repositories`.
#[derive(serde::Deserialize)]
struct HubRepository {
    name: String,
}

#[derive(serde::Deserialize)]
struct HubTag {
    name: String,
    /// Not in the published schema, but sent by the live API: the manifest (or index) digest.
    digest: Option<String>,
    /// One image object in the published schema, an array in the live API; its digest is the tag's only
    /// when there is exactly one.
    images: Option<serde_json::Value>,
    tag_last_pushed: Option<String>,
    last_updated: Option<String>,
    /// The last pull; Hub sends null for a tag never pulled.
    #[serde(default)]
    tag_last_pulled: Option<String>,
}

impl HubTag {
    fn digest(&self) -> Option<String> {
        let single = match &self.images {
            Some(serde_json::Value::Array(images)) if images.len() == 1 => images.first(),
            Some(image @ serde_json::Value::Object(_)) => Some(image),
            _ => None,
        };
        self.digest
            .clone()
            .or_else(|| single?.get("digest")?.as_str().map(str::to_string))
            .filter(|digest| digest.starts_with("sha256:"))
    }
}

/// Hub names repositories `namespace/name`; a one-segment path is an official image in `library`.
fn hub_name(repository: &Repository) -> Result<(&str, &str), RegistryError> {
    let path = repository.path.as_str();
    match path.split_once('/') {
        None => Ok(("library", path)),
        Some((namespace, name)) if !name.contains('/') && !namespace.is_empty() => {
            Ok((namespace, name))
        }
        Some(_) => Err(RegistryError::Config(format!(
            "{repository}: Docker Hub repositories are namespace/name; this path has more segments"
        ))),
    }
}

impl DockerHub {
    fn base(&self) -> Result<ApiClient, RegistryError> {
        let url = self
            .context
            .settings
            .text("docker-hub-api-url")
            .unwrap_or(DEFAULT_API_URL);
        // A trailing slash keeps a base path (a proxy's prefix) when relative paths are joined.
        ApiClient::new(
            &format!("{}/", url.trim_end_matches('/')),
            "Docker Hub API",
            self.context.client.options(),
        )
    }

    /// The API client with the best credentials: a given JWT, else a sign-in with a username and password
    /// from flags or the docker config, else anonymous (public reads only).
    async fn api(&self) -> Result<&ApiClient, RegistryError> {
        self.api
            .get_or_try_init(|| async {
                let settings = &self.context.settings;
                let base = self.base()?;
                if let Some(token) = settings.get("repo-docker-hub-token") {
                    return base.with_bearer(token);
                }
                let login = match (
                    settings.text("repo-docker-hub-username"),
                    settings.get("repo-docker-hub-password"),
                ) {
                    (Some(username), Some(password)) => Some((username, password)),
                    (Some(_), None) | (None, Some(_)) => {
                        return Err(RegistryError::Config(
                            "give both --repo-docker-hub-username and --repo-docker-hub-password"
                                .into(),
                        ));
                    }
                    (None, None) => match &self.context.auth {
                        RegistryAuth::Basic { username, password } => {
                            Some((username.as_str(), password))
                        }
                        _ => None,
                    },
                };
                match login {
                    Some((username, password)) => {
                        let token = sign_in(&base, username, password).await?;
                        base.with_bearer(&token)
                    }
                    None => Ok(base),
                }
            })
            .await
    }

    async fn list(&self, repository: &Repository) -> Result<Vec<HubTag>, RegistryError> {
        let (namespace, name) = hub_name(repository)?;
        self.pages(
            format!("v2/namespaces/{namespace}/repositories/{name}/tags?page_size={PAGE_SIZE}"),
            &format!("list tags of {namespace}/{name}"),
            &format!("{namespace}/{name}"),
        )
        .await
    }

    /// Every result of a paginated listing starting at `path`; a 404 on the first page means `missing`
    /// does not exist (on a later one, the listing broke off).
    async fn pages<T: serde::de::DeserializeOwned>(
        &self,
        path: String,
        operation: &str,
        missing: &str,
    ) -> Result<Vec<T>, RegistryError> {
        let api = self.api().await?;
        let first = &path;
        Pager::new(api.label(), operation, "the next link")
            .collect(|path: Option<String>| async move {
                let first_page = path.is_none();
                let path = path.as_ref().unwrap_or(first);
                let response = api.send(Http::GET, path, operation).await?;
                match response.status {
                    200 => {}
                    404 if first_page => {
                        return Err(RegistryError::RepositoryNotFound {
                            registry: api.label().to_string(),
                            repository: missing.to_string(),
                        });
                    }
                    _ => return Err(api.status_error(&response, operation, CREDENTIAL_HINT)),
                }
                let page: Page<T> = api.json(&response, operation)?;
                let next = page.next.filter(|next| !next.is_empty());
                // The body carries the next and previous links, so the results alone tell a repeated
                // page.
                let results = serde_json::from_slice::<serde_json::Value>(&response.body)
                    .map(|body| body["results"].to_string())
                    .unwrap_or_default();
                Ok(pager::Page::new(page.results, next, results))
            })
            .await
    }

    async fn delete_tag(
        &self,
        namespace: &str,
        name: &str,
        tag: &str,
    ) -> Result<Deleted, RegistryError> {
        let api = self.api().await?;
        let operation = format!("delete tag {namespace}/{name}:{tag}");
        let path = format!("v2/repositories/{namespace}/{name}/tags/{tag}/");
        let response = api.send(Http::DELETE, &path, &operation).await?;
        match response.status {
            200 | 202 | 204 => Ok(Deleted::Removed),
            404 => self.recheck(namespace, name, tag, &response).await,
            _ => Err(refusal(api, &response, &operation)),
        }
    }

    /// After a 404 to the DELETE of a tag the run listed: absent only if Hub no longer has it.
    async fn recheck(
        &self,
        namespace: &str,
        name: &str,
        tag: &str,
        deleted: &ApiResponse,
    ) -> Result<Deleted, RegistryError> {
        let api = self.api().await?;
        let operation = format!("read tag {namespace}/{name}:{tag} after its DELETE answered 404");
        let path = format!("v2/namespaces/{namespace}/repositories/{name}/tags/{tag}");
        let response = api.send(Http::GET, &path, &operation).await?;
        match response.status {
            404 => Ok(Deleted::Absent),
            200 => Err(RegistryError::Status {
                registry: api.label().to_string(),
                operation: format!("delete tag {namespace}/{name}:{tag}"),
                status: deleted.status,
                message: format!(
                    "{}, yet Hub still has the tag; check that the account may delete in {namespace} (Read, Write, Delete) and run again",
                    deleted.error_text()
                ),
            }),
            _ => Err(refusal(api, &response, &operation)),
        }
    }
}

/// A token for `username`: `POST /v2/auth/token`, else the deprecated `POST /v2/users/login` that older
/// accounts and Hub-compatible deployments still answer.
async fn sign_in(
    base: &ApiClient,
    username: &str,
    password: &Secret<String>,
) -> Result<Secret<String>, RegistryError> {
    #[derive(serde::Deserialize)]
    struct Token {
        access_token: Option<String>,
        token: Option<String>,
    }
    let operation = "sign in to Docker Hub";
    let base = base.clone().redacting([password]);
    let current = serde_json::json!({"identifier": username, "secret": password.expose()});
    let legacy = serde_json::json!({"username": username, "password": password.expose()});
    let first = base
        .send_json(Http::POST, "v2/auth/token", operation, &current)
        .await?;
    let response = if first.is_success() {
        first
    } else {
        let second = base
            .send_json(Http::POST, "v2/users/login", operation, &legacy)
            .await?;
        if !second.is_success() {
            return Err(base.status_error(&first, operation, CREDENTIAL_HINT));
        }
        second
    };
    let token: Token = base.json(&response, operation)?;
    token
        .access_token
        .or(token.token)
        .filter(|token| !token.is_empty())
        .map(Secret::new)
        .ok_or_else(|| RegistryError::InvalidResponse {
            registry: base.label().to_string(),
            operation: operation.into(),
            message: "no token in the answer".into(),
        })
}

/// The error for a refused delete; a 403 about personal access tokens names the credential that works.
fn refusal(api: &ApiClient, response: &ApiResponse, operation: &str) -> RegistryError {
    let text = response.error_text().to_ascii_lowercase();
    let hint = if response.status == 403 && text.contains("personal access token") {
        PAT_REFUSED_HINT
    } else if response.status == 403 {
        "the account needs Read, Write, Delete access to the repository (a personal access token needs that scope)"
    } else {
        CREDENTIAL_HINT
    };
    api.status_error(response, operation, hint)
}

impl Implementation for DockerHub {
    fn spec(&self) -> &'static Spec {
        &SPEC
    }

    fn list_tags<'a>(
        &'a self,
        repository: &'a Repository,
        with_digests: bool,
    ) -> BoxFuture<'a, Result<Vec<TagInfo>, RegistryError>> {
        Box::pin(async move {
            let listed = self.list(repository).await?;
            let mut tags: Vec<TagInfo> = listed
                .into_iter()
                .map(|tag| TagInfo {
                    digest: tag.digest(),
                    created: (tag.tag_last_pushed.as_deref())
                        .or(tag.last_updated.as_deref())
                        .and_then(Timestamp::parse_rfc3339),
                    last_pulled: Some(
                        (tag.tag_last_pulled.as_deref()).and_then(Timestamp::parse_rfc3339),
                    ),
                    tag: tag.name,
                })
                .collect();
            tags.sort_by(|a, b| a.tag.cmp(&b.tag));
            tags.dedup_by(|a, b| a.tag == b.tag);
            if with_digests {
                // A multi-image tag's listing names only platform digests; the registry knows the index's.
                let client = &self.context.client;
                let resolved: Vec<Result<Option<String>, RegistryError>> = stream::iter(&tags)
                    .map(|info| async move {
                        match &info.digest {
                            Some(digest) => Ok(Some(digest.clone())),
                            None => Ok(client
                                .head_manifest(&repository.path, &info.tag)
                                .await?
                                .map(|manifest| manifest.digest)),
                        }
                    })
                    .buffered(self.context.parallel.max(1))
                    .collect()
                    .await;
                for (info, digest) in tags.iter_mut().zip(resolved) {
                    info.digest = digest?;
                }
            }
            Ok(tags)
        })
    }

    fn list_repositories<'a>(
        &'a self,
        prefix: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<String>>, RegistryError>> {
        // Hub's registry has no usable catalog; Hub lists a namespace's repositories.
        Box::pin(async move {
            let Some((namespace, _)) = prefix.split_once('/') else {
                return Err(RegistryError::Config(
                    "Docker Hub lists repositories per namespace: name one, as docker.io/NAMESPACE/*"
                        .into(),
                ));
            };
            let listed: Vec<HubRepository> = self
                .pages(
                    format!("v2/namespaces/{namespace}/repositories?page_size={PAGE_SIZE}"),
                    &format!("list repositories of namespace {namespace}"),
                    namespace,
                )
                .await?;
            let paths = listed
                .into_iter()
                .map(|repository| format!("{namespace}/{}", repository.name));
            Ok(Some(paths_under(paths, prefix)))
        })
    }

    fn delete<'a>(&'a self, request: DeleteRequest<'a>) -> BoxFuture<'a, Vec<Entry>> {
        Box::pin(delete::run(self, request))
    }
}

impl Deletion for DockerHub {
    /// The tag to delete.
    type Action = String;

    fn parallel(&self) -> usize {
        self.context.parallel
    }

    async fn plan(&self, request: &DeleteRequest<'_>) -> Result<Vec<Step<String>>, RegistryError> {
        let (repository, targets) = (request.repository, request.targets);
        hub_name(repository)?;
        let listing: BTreeMap<String, Option<String>> =
            delete::missing_is_empty(self.list(repository).await)?
                .into_iter()
                .map(|tag| (tag.digest(), tag.name))
                .map(|(digest, tag)| (tag, digest))
                .collect();
        let step = |target: &Target| match target {
            Target::Digest(digest) => {
                let tags: Vec<&str> = listing
                    .iter()
                    .filter(|(_, known)| known.as_deref() == Some(digest.as_str()))
                    .map(|(tag, _)| tag.as_str())
                    .collect();
                // Exit 4 (cannot delete), without distribution's `storage.delete.enabled` advice.
                let error = format!(
                    "Docker Hub has no API to delete a manifest by digest; delete its tags instead ({})",
                    if tags.is_empty() {
                        "none listed".to_string()
                    } else {
                        tags.join(", ")
                    }
                );
                let kind = FailureKind::DeleteUnsupported;
                let outcome = Outcome::Failed { error, kind };
                Step::Settled(Entry::new(repository, target, None, outcome))
            }
            Target::Tag(tag) => match listing.get(tag) {
                Some(digest) => {
                    Step::removal(target.clone(), digest.clone(), Method::Native, tag.clone())
                }
                None => Step::Settled(Entry::absent(repository, target)),
            },
        };
        Ok(targets.iter().map(step).collect())
    }

    async fn remove(
        &self,
        repository: &Repository,
        removal: Removal<String>,
        _progress: &dyn Fn(u64),
    ) -> Vec<Entry> {
        let tag = removal.action;
        let target = Target::Tag(tag.clone());
        let digest = removal
            .planned
            .into_iter()
            .next()
            .and_then(|planned| planned.digest);
        let deleted = match hub_name(repository) {
            Ok((namespace, name)) => self.delete_tag(namespace, name, &tag).await,
            Err(error) => Err(error),
        };
        vec![match deleted {
            Ok(Deleted::Removed) => Entry::new(
                repository,
                &target,
                digest,
                Outcome::Untagged(Method::Native),
            ),
            Ok(Deleted::Absent) => Entry::absent(repository, &target),
            Err(error) => delete::failed(repository, &target, None, &error),
        }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repository(path: &str) -> Repository {
        Repository {
            registry: "docker.io".into(),
            path: path.into(),
        }
    }

    #[test]
    fn official_images_live_in_library() {
        assert_eq!(
            hub_name(&repository("alpine")).unwrap(),
            ("library", "alpine")
        );
        assert_eq!(
            hub_name(&repository("library/alpine")).unwrap(),
            ("library", "alpine")
        );
        assert_eq!(hub_name(&repository("me/app")).unwrap(), ("me", "app"));
        assert!(matches!(
            hub_name(&repository("me/a/b")),
            Err(RegistryError::Config(_))
        ));
    }

    #[test]
    fn digests_from_either_image_shape() {
        let tag = |value: serde_json::Value| -> HubTag { serde_json::from_value(value).unwrap() };
        let d = "sha256:".to_string() + &"a".repeat(64);
        assert_eq!(
            tag(serde_json::json!({"name":"x","images":{"digest":d}})).digest(),
            Some(d.clone())
        );
        assert_eq!(
            tag(serde_json::json!({"name":"x","images":[{"digest":d}]})).digest(),
            Some(d.clone())
        );
        assert_eq!(
            tag(serde_json::json!({"name":"x","images":[{"digest":d},{"digest":"sha256:b"}]}))
                .digest(),
            None
        );
        assert_eq!(
            tag(serde_json::json!({"name":"x","digest":d,"images":[]})).digest(),
            Some(d)
        );
    }
}
