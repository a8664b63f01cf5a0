//! GitLab's container registry: tags listed and deleted one by one through GitLab's REST API
//! (`/projects/{id}/registry/repositories/{repository_id}/tags`), which removes a tag and nothing else.
//!
//! The project is found from the repository path: the longest leading part that is a project (looked up by
//! its URL-encoded path), whose registry repositories include this path. Tag names come without dates or
//! digests; [`Implementation::list_tags`] with `with_digests` means "details wanted" and fetches each tag's digest
//! and `created_at` (one request per tag, bounded by `--parallel`), so runs that need neither pay nothing.
//! A tag protected by a protection rule (403 whose message says so) fails alone and the rest of the run
//! goes on; any other 403 is a token without the role to delete (exit 3).
//!
//! GitLab's registry has no usable `_catalog`, so `regkit cleanup HOST/GROUP/*` lists the registry
//! repositories of the longest leading part of the prefix that is a group (`/groups/{id}/registry/
//! repositories`, in container_registry.md) or a project, and keeps those under the prefix.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use futures_util::stream::{self, StreamExt};
use reqwest::Method as Http;
use tokio::sync::OnceCell;

use super::delete::{self, Deletion, Removal, Step};
use super::rest::encode;
use super::{
    BoxFuture, Context, DeleteRemoves, DeleteRequest, Flag, HostRule, Implementation, Spec,
    TagInfo, paths_under,
};
use crate::dates::Timestamp;
use crate::reference::{Repository, Target};
use crate::registry::api::{ApiClient, ApiResponse};
use crate::registry::pager::{Page, Pager};
use crate::registry::{Deleted, RegistryError};
use crate::report::{Entry, Method, Outcome};
use crate::secret::Secret;

/// GitLab.com's API.
const DEFAULT_API_URL: &str = "https://gitlab.com/api/v4";

/// GitLab's largest page.
const PER_PAGE: u32 = 100;

/// What works, for authentication hints.
const TOKEN_HINT: &str = "give --repo-gitlab-token with a personal, project or group access token with the api scope and at least the Developer role (Maintainer for protected tags), or run inside GitLab CI with CI_JOB_TOKEN";

/// A 403 on a tag delete that is not a protection rule.
const ROLE_HINT: &str = "deleting registry tags needs at least the Developer role on the project (a token with the api scope, or the CI job token of a pipeline of a member with that role)";

pub(super) const SPEC: Spec = Spec {
    name: "gitlab",
    title: "GitLab",
    build,
    flags: FLAGS,
    environment: &["CI_JOB_TOKEN"],
    hosts: &[HostRule::Exact("registry.gitlab.com")],
    probe: None,
    delete_removes: DeleteRemoves::Tag,
    lists_untagged: false,
};

/// The flags this module reads.
const FLAGS: &[Flag] = &[
    Flag {
        name: "gitlab-api-url",
        value_name: "URL",
        help: "GitLab API base URL (default https://gitlab.com/api/v4)",
    },
    Flag {
        name: "repo-gitlab-token",
        value_name: "TOKEN",
        help: "GitLab personal, project or group access token (api scope); CI_JOB_TOKEN is used when absent",
    },
];

pub(super) fn build(context: Context) -> Box<dyn Implementation> {
    Box::new(GitLab {
        context,
        api: OnceCell::new(),
        locations: RefCell::new(HashMap::new()),
    })
}

struct GitLab {
    context: Context,
    api: OnceCell<ApiClient>,
    /// Registry repository path → where it lives, found once per repository: the lookup costs several
    /// requests, and one vendor serves every repository of a run. Never borrowed across an await.
    locations: RefCell<HashMap<String, Location>>,
}

/// Where a registry repository lives in GitLab's API.
#[derive(Debug, Clone)]
struct Location {
    path: String,
    /// `projects/{id}/registry/repositories/{repository_id}`.
    api_path: String,
}

#[derive(serde::Deserialize)]
struct RegistryRepository {
    id: u64,
    path: String,
}

#[derive(serde::Deserialize)]
struct TagName {
    name: String,
}

#[derive(serde::Deserialize)]
struct TagDetails {
    digest: Option<String>,
    created_at: Option<String>,
}

/// Which header carries the token: access tokens go in `PRIVATE-TOKEN`, CI job tokens in `JOB-TOKEN`.
enum Token<'a> {
    Private(&'a Secret<String>),
    Job(&'a Secret<String>),
    None,
}

impl GitLab {
    fn token(&self) -> Token<'_> {
        let settings = &self.context.settings;
        match settings.get("repo-gitlab-token") {
            Some(token) => Token::Private(token),
            None => settings
                .environment("CI_JOB_TOKEN")
                .map_or(Token::None, Token::Job),
        }
    }

    async fn send(
        &self,
        api: &ApiClient,
        method: Http,
        path: &str,
        operation: &str,
    ) -> Result<ApiResponse, RegistryError> {
        let header = match self.token() {
            Token::Private(token) => Some(("PRIVATE-TOKEN", token)),
            Token::Job(token) => Some(("JOB-TOKEN", token)),
            Token::None => None,
        };
        api.clone()
            .redacting(header.map(|(_, token)| token))
            .send_with(method, path, operation, |request| match header {
                Some((name, token)) => request.header(name, token.expose().as_str()),
                None => request,
            })
            .await
    }

    /// Every item of a paginated listing (`Link: rel="next"`, else `X-Next-Page`); `None` on 404.
    async fn pages<T: serde::de::DeserializeOwned>(
        &self,
        api: &ApiClient,
        first: &str,
        operation: &str,
    ) -> Result<Option<Vec<T>>, RegistryError> {
        let missing = &Cell::new(false);
        let items = Pager::new(api.label(), operation, "the next page")
            .collect(|path: Option<String>| async move {
                let path = path.as_deref().unwrap_or(first);
                let response = self.send(api, Http::GET, path, operation).await?;
                match response.status {
                    200 => {}
                    // The caller's `None`; to the pager, a last and empty page.
                    404 => {
                        missing.set(true);
                        return Ok(Page::new(Vec::new(), None, ()));
                    }
                    _ => return Err(api.status_error(&response, operation, TOKEN_HINT)),
                }
                let items = api.json::<Vec<T>>(&response, operation)?;
                let next = response.next_link().or_else(|| {
                    let page = response.header("x-next-page").filter(|p| !p.is_empty())?;
                    let base = path.split('?').next().unwrap_or(path);
                    Some(format!("{base}?per_page={PER_PAGE}&page={page}"))
                });
                Ok(Page::new(items, next, response.body))
            })
            .await?;
        Ok((!missing.get()).then_some(items))
    }

    async fn api(&self) -> Result<&ApiClient, RegistryError> {
        self.api
            .get_or_try_init(|| async {
                let url = self
                    .context
                    .settings
                    .text("gitlab-api-url")
                    .unwrap_or(DEFAULT_API_URL);
                // A trailing slash keeps `/api/v4` when relative paths are joined.
                ApiClient::new(
                    &format!("{}/", url.trim_end_matches('/')),
                    "GitLab API",
                    self.context.client.options(),
                )
            })
            .await
    }

    /// The registry repositories of group or project `scope` (`kind` is `groups` or `projects`); `None`
    /// when there is no such group or project.
    async fn registry_repositories(
        &self,
        api: &ApiClient,
        kind: &str,
        scope: &str,
    ) -> Result<Option<Vec<RegistryRepository>>, RegistryError> {
        let operation = format!("list registry repositories of {kind} {scope}");
        let first = format!(
            "{kind}/{}/registry/repositories?per_page={PER_PAGE}",
            encode(scope)
        );
        self.pages(api, &first, &operation).await
    }

    /// The API client and the registry repository for `repository`.
    async fn locate(
        &self,
        repository: &Repository,
    ) -> Result<(&ApiClient, Location), RegistryError> {
        let api = self.api().await?;
        let path = repository.path.as_str();
        if let Some(known) = self.locations.borrow().get(path) {
            return Ok((api, known.clone()));
        }
        let segments: Vec<&str> = path.split('/').collect();
        for length in (1..=segments.len()).rev() {
            let project = segments[..length].join("/");
            let Some(found) = self
                .registry_repositories(api, "projects", &project)
                .await?
            else {
                continue;
            };
            if let Some(registry) = found.iter().find(|r| r.path.eq_ignore_ascii_case(path)) {
                let location = Location {
                    path: path.to_string(),
                    api_path: format!(
                        "projects/{}/registry/repositories/{}",
                        encode(&project),
                        registry.id
                    ),
                };
                self.locations
                    .borrow_mut()
                    .insert(path.to_string(), location.clone());
                return Ok((api, location));
            }
        }
        Err(RegistryError::RepositoryNotFound {
            registry: api.label().to_string(),
            repository: format!(
                "{path} (no GitLab project at {} has it; check --gitlab-api-url and the token's access)",
                api.base()
            ),
        })
    }

    async fn tag_names(&self, repository: &Repository) -> Result<Vec<String>, RegistryError> {
        let (api, location) = self.locate(repository).await?;
        let operation = format!("list tags of {}", location.path);
        let first = format!("{}/tags?per_page={PER_PAGE}", location.api_path);
        let names = self
            .pages::<TagName>(api, &first, &operation)
            .await?
            .ok_or_else(|| RegistryError::RepositoryNotFound {
                registry: api.label().to_string(),
                repository: location.path.clone(),
            })?;
        let mut names: Vec<String> = names.into_iter().map(|tag| tag.name).collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// A tag's digest and creation time; `None` when it is gone.
    async fn details(
        &self,
        repository: &Repository,
        tag: &str,
    ) -> Result<Option<TagDetails>, RegistryError> {
        let (api, location) = self.locate(repository).await?;
        let operation = format!("get tag {}:{tag}", location.path);
        let path = format!("{}/tags/{}", location.api_path, encode(tag));
        let response = self.send(api, Http::GET, &path, &operation).await?;
        match response.status {
            200 => Ok(Some(api.json(&response, &operation)?)),
            404 => Ok(None),
            _ => Err(api.status_error(&response, &operation, TOKEN_HINT)),
        }
    }

    async fn delete_tag(&self, repository: &Repository, tag: &str) -> Result<Deleted, TagError> {
        let (api, location) = self.locate(repository).await?;
        let operation = format!("delete tag {}:{tag}", location.path);
        let path = format!("{}/tags/{}", location.api_path, encode(tag));
        let response = self.send(api, Http::DELETE, &path, &operation).await?;
        match response.status {
            200 | 202 | 204 => Ok(Deleted::Removed),
            404 => Ok(Deleted::Absent),
            // GitLab documents a 403 for a tag matching a protection rule, which concerns this tag only; a
            // token whose role may not delete gets a 403 too, without the word.
            403 if response
                .error_text()
                .to_ascii_lowercase()
                .contains("protect") =>
            {
                Err(TagError::Protected(format!(
                    "{operation}: {}; the tag matches a tag protection rule of the project: delete it with a role the rule allows, or change the rule",
                    response.error_text()
                )))
            }
            403 => Err(api.status_error(&response, &operation, ROLE_HINT).into()),
            _ => Err(api.status_error(&response, &operation, TOKEN_HINT).into()),
        }
    }
}

enum TagError {
    Registry(RegistryError),
    Protected(String),
}

impl From<RegistryError> for TagError {
    fn from(error: RegistryError) -> Self {
        TagError::Registry(error)
    }
}

impl Implementation for GitLab {
    fn spec(&self) -> &'static Spec {
        &SPEC
    }

    fn list_tags<'a>(
        &'a self,
        repository: &'a Repository,
        with_digests: bool,
    ) -> BoxFuture<'a, Result<Vec<TagInfo>, RegistryError>> {
        Box::pin(async move {
            let names = self.tag_names(repository).await?;
            if !with_digests {
                return Ok(names.into_iter().map(TagInfo::name_only).collect());
            }
            let detailed: Vec<(String, Result<Option<TagDetails>, RegistryError>)> =
                stream::iter(names)
                    .map(|tag| async move {
                        let details = self.details(repository, &tag).await;
                        (tag, details)
                    })
                    .buffered(self.context.parallel.max(1))
                    .collect()
                    .await;
            let mut tags = Vec::with_capacity(detailed.len());
            for (tag, details) in detailed {
                // A tag deleted between listing and details is simply no longer there.
                if let Some(details) = details? {
                    tags.push(TagInfo {
                        tag,
                        digest: details.digest,
                        created: (details.created_at.as_deref()).and_then(Timestamp::parse_rfc3339),
                        last_pulled: None,
                    });
                }
            }
            Ok(tags)
        })
    }

    fn list_repositories<'a>(
        &'a self,
        prefix: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<String>>, RegistryError>> {
        Box::pin(async move {
            let api = self.api().await?;
            let base = prefix.trim_end_matches('/');
            if base.is_empty() {
                return Err(RegistryError::Config(
                    "GitLab lists registry repositories per group or project: name one, as registry.gitlab.com/GROUP/*"
                        .into(),
                ));
            }
            let segments: Vec<&str> = base.split('/').collect();
            for length in (1..=segments.len()).rev() {
                let scope = segments[..length].join("/");
                // A path is a group or a project, never both.
                for kind in ["groups", "projects"] {
                    if let Some(found) = self.registry_repositories(api, kind, &scope).await? {
                        let paths = found.into_iter().map(|repository| repository.path);
                        return Ok(Some(paths_under(paths, prefix)));
                    }
                }
            }
            Err(RegistryError::RepositoryNotFound {
                registry: api.label().to_string(),
                repository: format!(
                    "{prefix}* (no GitLab group or project at {} holds it; check --gitlab-api-url and the token's access)",
                    api.base()
                ),
            })
        })
    }

    fn delete<'a>(&'a self, request: DeleteRequest<'a>) -> BoxFuture<'a, Vec<Entry>> {
        Box::pin(delete::run(self, request))
    }
}

impl Deletion for GitLab {
    /// The target: GitLab's API deletes tags only; its registry deletes manifests through v2.
    type Action = Target;

    fn parallel(&self) -> usize {
        self.context.parallel
    }

    /// A real run asks GitLab about each target directly; only a dry run lists the tags, to tell
    /// `planned` from `absent`.
    async fn plan(&self, request: &DeleteRequest<'_>) -> Result<Vec<Step<Target>>, RegistryError> {
        let (repository, targets) = (request.repository, request.targets);
        // Found once here, before the removals run in parallel and would each look it up.
        self.locate(repository).await?;
        let existing = if request.dry_run {
            Some(self.tag_names(repository).await?)
        } else {
            None
        };
        Ok(targets
            .iter()
            .map(|target| match (target, &existing) {
                (Target::Tag(tag), Some(names)) if names.binary_search(tag).is_err() => {
                    Step::Settled(Entry::absent(repository, target))
                }
                (Target::Tag(_), _) => {
                    Step::removal(target.clone(), None, Method::Native, target.clone())
                }
                (Target::Digest(_), _) => {
                    Step::removal(target.clone(), None, Method::Digest, target.clone())
                }
            })
            .collect())
    }

    async fn remove(
        &self,
        repository: &Repository,
        removal: Removal<Target>,
        _progress: &dyn Fn(u64),
    ) -> Vec<Entry> {
        let target = &removal.action;
        vec![match target {
            Target::Tag(tag) => match self.delete_tag(repository, tag).await {
                Ok(Deleted::Removed) => {
                    Entry::new(repository, target, None, Outcome::Untagged(Method::Native))
                }
                Ok(Deleted::Absent) => Entry::absent(repository, target),
                Err(TagError::Registry(error)) => delete::failed(repository, target, None, &error),
                Err(TagError::Protected(error)) => delete::refused(repository, target, None, error),
            },
            Target::Digest(digest) => match self
                .context
                .client
                .delete_manifest(&repository.path, digest)
                .await
            {
                Ok(Deleted::Removed) => {
                    Entry::new(repository, target, None, Outcome::Deleted(Method::Digest))
                }
                Ok(Deleted::Absent) => Entry::absent(repository, target),
                Err(error) => delete::failed(repository, target, None, &error),
            },
        }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_paths_and_tags_are_one_segment() {
        assert_eq!(encode("group/sub/app"), "group%2Fsub%2Fapp");
        assert_eq!(encode("v1.2_x-y"), "v1.2_x-y");
    }
}
