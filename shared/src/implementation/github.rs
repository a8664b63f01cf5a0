//! GitHub Packages (`ghcr.io`, legacy `docker.pkg.github.com`): tags, digests and dates come from the
//! package's versions in GitHub's REST API; deletion removes versions there, since ghcr.io refuses the v2
//! DELETE.
//!
//! A version is a digest with every tag on it, and GitHub has no API that removes one tag. So a tag whose
//! version keeps other, unrequested tags is moved away first: a unique tombstone manifest is pushed under it
//! through the v2 API, which makes a new version holding that tag alone, and that version is deleted. A
//! version is deleted directly when all its tags (or its digest) were requested. GitHub refuses to delete a
//! package's last version; a run that would need that fails unless `--github-delete-package` names the
//! package, which then is deleted whole.
//!
//! `--untagged` lists the versions without tags. Multi-arch pushes leave their per-platform manifests as
//! untagged versions too, so every version's manifest is read over v2 and the children of any index still
//! listed are left out: a child of an untagged index goes on the run after its index.
//!
//! The owner's kind comes from `GET /users/{owner}` (werf-registries.md §3.3; outside the packages
//! description): organisations use `/orgs/{owner}/…`. `/user/…` means the token's user, whoever the
//! reference names, so it serves only that user's packages (the token's login comes from `GET /user`, once
//! per run); any other user's go through `/users/{owner}/…`, where a refusal names both users.
//!
//! ghcr.io has no `_catalog`, so `regkit cleanup ghcr.io/OWNER/*` lists the owner's container packages
//! (`/users/{owner}/packages` for a user, who need not own the token).

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use reqwest::Method as Http;
use tokio::sync::OnceCell;

use super::delete::{self, Deletion, Planned, Removal, Step};
use super::distribution::unique_tombstone;
use super::{
    BoxFuture, Context, DeleteRemoves, DeleteRequest, Flag, HostRule, Implementation, Spec,
    TagInfo, UntaggedManifest, paths_under,
};
use crate::dates::{self, Timestamp};
use crate::reference::{Repository, Target};
use crate::registry::RegistryError;
use crate::registry::api::{ApiClient, ApiResponse, is_secondary_limit};
use crate::registry::pager::{Page, Pager};
use crate::registry::throttle::{self, SECONDARY_LIMIT_WAIT};
use crate::report::{Entry, Method, Outcome};

/// GitHub.com's REST API.
const DEFAULT_API_URL: &str = "https://api.github.com";

/// GitHub's largest page.
const PER_PAGE: u32 = 100;

/// GitHub's advice for mutations from one token: serially, about one per second.
const DELETE_INTERVAL: Duration = Duration::from_secs(1);

const TOKEN_HINT: &str = "give --repo-github-token (or GITHUB_TOKEN) a token with the read:packages and delete:packages scopes; a workflow's default GITHUB_TOKEN may not be enough (it deletes only packages whose repository grants the workflow admin access)";

pub(super) const SPEC: Spec = Spec {
    name: "github",
    title: "GitHub",
    build,
    flags: FLAGS,
    environment: &["GITHUB_TOKEN"],
    hosts: &[
        HostRule::Exact("ghcr.io"),
        HostRule::Exact("docker.pkg.github.com"),
    ],
    probe: None,
    delete_removes: DeleteRemoves::Manifest,
    lists_untagged: true,
};

/// The flags this module reads.
const FLAGS: &[Flag] = &[
    Flag {
        name: "github-api-url",
        value_name: "URL",
        help: "GitHub REST API base URL, for GitHub Enterprise Server (default https://api.github.com)",
    },
    Flag {
        name: "repo-github-token",
        value_name: "TOKEN",
        help: "GitHub token with read:packages and delete:packages (GITHUB_TOKEN is used when absent)",
    },
    Flag {
        name: "github-delete-interval",
        value_name: "SECONDS",
        help: "seconds between two GitHub DELETEs (default 1: GitHub asks for mutations one at a time, about one per second; 0 = no pacing)",
    },
    Flag {
        name: "github-delete-package",
        value_name: "PACKAGE",
        help: "delete package PACKAGE whole when a run would remove its last version (GitHub refuses that)",
    },
];

pub(super) fn build(context: Context) -> Box<dyn Implementation> {
    Box::new(GitHub {
        context,
        api: OnceCell::new(),
        token_user: OnceCell::new(),
    })
}

struct GitHub {
    context: Context,
    api: OnceCell<ApiClient>,
    /// The token's login (`GET /user`), `None` without a token or for a token with no user (an app's).
    token_user: OnceCell<Option<String>>,
}

#[derive(Debug, Clone, serde::Deserialize)]
struct Version {
    id: u64,
    /// The manifest digest.
    name: String,
    created_at: Option<String>,
    updated_at: Option<String>,
    #[serde(default)]
    metadata: Metadata,
}

impl Version {
    /// The later of creation and update, so an untagged version never looks older than its last change
    /// (such as losing its last tag), which `--older-than` measures from.
    fn last_change(&self) -> Option<Timestamp> {
        let parsed = |date: &Option<String>| date.as_deref().and_then(Timestamp::parse_rfc3339);
        // `None` orders before any date, so either date alone wins over a missing or unreadable one.
        parsed(&self.created_at).max(parsed(&self.updated_at))
    }
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
struct Metadata {
    #[serde(default)]
    container: Container,
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
struct Container {
    #[serde(default)]
    tags: Vec<String>,
}

/// A package's versions endpoint: `orgs/{org}/…`, `user/…` (the token's user) or `users/{owner}/…`.
#[derive(Clone)]
struct Package {
    api_path: String,
    /// The package name (the repository path after the owner).
    name: String,
    /// Set for a package of a user other than the token's, whose refusals name both.
    foreign: Option<Foreign>,
}

/// A user's package reached with someone else's token.
#[derive(Clone)]
struct Foreign {
    owner: String,
    token_user: Option<String>,
}

impl Foreign {
    /// What a 403/404 on this package means, and what to do.
    fn explain(&self, package: &str) -> String {
        let token = match &self.token_user {
            Some(user) => format!("the token is {user}'s"),
            None => "the token has no user".to_string(),
        };
        format!(
            "package {package} is user {0}'s and {token}: only {0}, or a user with admin rights on the package, can see a private package and delete its versions",
            self.owner
        )
    }
}

impl GitHub {
    async fn api(&self) -> Result<&ApiClient, RegistryError> {
        self.api
            .get_or_try_init(|| async {
                let settings = &self.context.settings;
                let url = settings.text("github-api-url").unwrap_or(DEFAULT_API_URL);
                let api = ApiClient::new(
                    &format!("{}/", url.trim_end_matches('/')),
                    "GitHub API",
                    self.context.client.options(),
                )?;
                let interval = match settings.text("github-delete-interval") {
                    None => DELETE_INTERVAL,
                    Some(text) => text
                        .trim()
                        .parse::<f64>()
                        .ok()
                        .filter(|seconds| seconds.is_finite() && *seconds >= 0.0)
                        .map(Duration::from_secs_f64)
                        .ok_or_else(|| {
                            RegistryError::Config(format!(
                                "--github-delete-interval {text:?}: give a number of seconds (0 or more)"
                            ))
                        })?,
                };
                throttle::global()
                    .host(&throttle::host_key(api.base()))
                    .pace_mutations(interval);
                match settings
                    .get("repo-github-token")
                    .or_else(|| settings.environment("GITHUB_TOKEN"))
                {
                    Some(token) => api.with_bearer(token),
                    None => Ok(api),
                }
            })
            .await
    }

    /// Sends a request; a secondary-limit 403 that names no wait holds the API host back for at least a
    /// minute, doubling each time (GitHub's advice), within the run's bound.
    async fn send(
        &self,
        method: Http,
        path: &str,
        operation: &str,
    ) -> Result<ApiResponse, RegistryError> {
        let api = self.api().await?;
        let deadline = throttle::global()
            .deadline()
            .unwrap_or_else(|| Instant::now() + api.retry_budget());
        let mut wait = SECONDARY_LIMIT_WAIT;
        loop {
            let response = api
                .send_with(method.clone(), path, operation, |request| {
                    request
                        .header("Accept", "application/vnd.github+json")
                        .header("X-GitHub-Api-Version", "2022-11-28")
                })
                .await?;
            if !is_secondary_limit(&response) || Instant::now() + wait > deadline {
                return Ok(response);
            }
            // The host's gate makes every request to it, this one's retry too, wait.
            throttle::global()
                .host(&throttle::host_key(api.base()))
                .block_for(wait);
            wait *= 2;
        }
    }

    async fn status_error(&self, response: &ApiResponse, operation: &str) -> RegistryError {
        match self.api().await {
            Ok(api) => api.status_error(response, operation, TOKEN_HINT),
            Err(error) => error,
        }
    }

    /// The token's login, asked once per run; `None` without a token, or when the token has no user (an
    /// app's or a workflow's token, refused with 403).
    async fn token_user(&self) -> Result<Option<&str>, RegistryError> {
        let user = self
            .token_user
            .get_or_try_init(|| async {
                let settings = &self.context.settings;
                if settings.get("repo-github-token").is_none()
                    && settings.environment("GITHUB_TOKEN").is_none()
                {
                    return Ok(None);
                }
                let operation = "look up the token's user";
                let response = self.send(Http::GET, "user", operation).await?;
                match response.status {
                    200 => {}
                    403 | 404 => return Ok(None),
                    _ => return Err(self.status_error(&response, operation).await),
                }
                #[derive(serde::Deserialize)]
                struct User {
                    login: String,
                }
                let user: User = self.api().await?.json(&response, operation)?;
                Ok(Some(user.login))
            })
            .await?;
        Ok(user.as_deref())
    }

    /// The error for `response` to `operation` on `package`: for another user's package, a 403 or 404
    /// names the owner and the token's user.
    async fn package_error(
        &self,
        package: &Package,
        response: &ApiResponse,
        operation: &str,
    ) -> RegistryError {
        match &package.foreign {
            Some(foreign) if matches!(response.status, 403 | 404) => RegistryError::Denied {
                registry: "GitHub API".into(),
                message: format!(
                    "{operation}: {}; {}",
                    response.error_text(),
                    foreign.explain(&package.name)
                ),
            },
            _ => self.status_error(response, operation).await,
        }
    }

    /// Whether `owner` is an organisation (else a user), from `GET /users/{owner}`.
    async fn is_organisation(&self, owner: &str) -> Result<bool, RegistryError> {
        let operation = format!("look up owner {owner}");
        let response = self
            .send(Http::GET, &format!("users/{owner}"), &operation)
            .await?;
        if response.status != 200 {
            return Err(self.status_error(&response, &operation).await);
        }
        #[derive(serde::Deserialize)]
        struct Owner {
            r#type: String,
        }
        let kind: Owner = self.api().await?.json(&response, &operation)?;
        Ok(kind.r#type != "User")
    }

    async fn package(&self, repository: &Repository) -> Result<Package, RegistryError> {
        let Some((owner, name)) = repository.path.split_once('/') else {
            return Err(RegistryError::Config(format!(
                "{repository}: GitHub packages are named OWNER/PACKAGE"
            )));
        };
        let (prefix, foreign) = if self.is_organisation(owner).await? {
            (format!("orgs/{owner}"), None)
        } else {
            match self.token_user().await? {
                // GitHub logins are case-insensitive.
                Some(user) if user.eq_ignore_ascii_case(owner) => ("user".to_string(), None),
                token_user => (
                    format!("users/{owner}"),
                    Some(Foreign {
                        owner: owner.to_string(),
                        token_user: token_user.map(String::from),
                    }),
                ),
            }
        };
        Ok(Package {
            api_path: format!("{prefix}/packages/container/{}", name.replace('/', "%2F")),
            name: name.to_string(),
            foreign,
        })
    }

    /// Every item of a paginated listing starting at `path`; a 404 is `not_found` when given, other
    /// refusals are `package`'s when given.
    async fn list<T: serde::de::DeserializeOwned>(
        &self,
        path: String,
        operation: &str,
        not_found: Option<RegistryError>,
        package: Option<&Package>,
    ) -> Result<Vec<T>, RegistryError> {
        let (first, not_found) = (&path, &Cell::new(not_found));
        Pager::new("GitHub API", operation, "the next link")
            .collect(|path: Option<String>| async move {
                let path = path.as_ref().unwrap_or(first);
                let response = self.send(Http::GET, path, operation).await?;
                match response.status {
                    200 => {}
                    404 if let Some(error) = not_found.take() => return Err(error),
                    _ => {
                        return Err(match package {
                            Some(package) => {
                                self.package_error(package, &response, operation).await
                            }
                            None => self.status_error(&response, operation).await,
                        });
                    }
                }
                let items = self.api().await?.json::<Vec<T>>(&response, operation)?;
                Ok(Page::new(items, response.next_link(), response.body))
            })
            .await
    }

    async fn versions(&self, package: &Package) -> Result<Vec<Version>, RegistryError> {
        // Another user's package: its 404 may only mean the token cannot see it, and the description
        // gives `/users/{owner}/…/versions` no paging parameters (a `Link` is still followed).
        let (path, not_found) = match package.foreign {
            Some(_) => (format!("{}/versions", package.api_path), None),
            None => (
                format!("{}/versions?per_page={PER_PAGE}", package.api_path),
                Some(RegistryError::RepositoryNotFound {
                    registry: "GitHub API".into(),
                    repository: package.name.clone(),
                }),
            ),
        };
        let operation = format!("list versions of package {}", package.name);
        self.list(path, &operation, not_found, Some(package)).await
    }

    async fn delete_path(
        &self,
        package: &Package,
        path: &str,
        operation: &str,
    ) -> Result<(), RegistryError> {
        let response = self.send(Http::DELETE, path, operation).await?;
        match response.status {
            200 | 202 | 204 => Ok(()),
            _ => Err(self.package_error(package, &response, operation).await),
        }
    }

    /// Moves `tag` off `digest` onto a tombstone of its own and deletes the tombstone's version.
    async fn untag(
        &self,
        repository: &Repository,
        package: &Package,
        tag: &str,
        digest: &str,
    ) -> Result<(), RegistryError> {
        let client = &self.context.client;
        let path = &repository.path;
        let manifest = client.get_manifest(path, digest).await?.ok_or_else(|| {
            RegistryError::InvalidResponse {
                registry: repository.registry.clone(),
                operation: format!("GET manifest {path}@{digest}"),
                message: "GitHub lists the version but the registry has no such manifest".into(),
            }
        })?;
        let grave =
            unique_tombstone(&manifest.body).map_err(|message| RegistryError::InvalidResponse {
                registry: repository.registry.clone(),
                operation: format!("untag {path}:{tag}"),
                message,
            })?;
        let grave_digest = client
            .put_manifest(path, tag, &manifest.info.media_type, &grave)
            .await?;
        let versions = self.versions(package).await?;
        let version = versions.iter().find(|v| v.name == grave_digest).ok_or_else(|| RegistryError::InvalidResponse {
            registry: "GitHub API".into(),
            operation: format!("list versions of package {}", package.name),
            message: format!("no version for the tombstone {grave_digest} pushed under {tag}; {tag} now points at it, delete it again"),
        })?;
        self.delete_path(
            package,
            &format!("{}/versions/{}", package.api_path, version.id),
            &format!("delete the tombstone version of {path}:{tag}"),
        )
        .await
    }
}

/// What to do with one version.
enum Action {
    /// Delete the version: every tag on it (or its digest) was requested.
    Delete {
        version: u64,
        digest: String,
        targets: Vec<Target>,
    },
    /// Move the tag off its version, which keeps other tags.
    Untag {
        tag: String,
        digest: String,
    },
    Absent(Target),
}

fn plan(targets: &[Target], versions: &[Version]) -> Vec<Action> {
    let by_tag: BTreeMap<&str, &Version> = versions
        .iter()
        .flat_map(|v| {
            v.metadata
                .container
                .tags
                .iter()
                .map(move |t| (t.as_str(), v))
        })
        .collect();
    let mut groups: BTreeMap<u64, (&Version, Vec<Target>)> = BTreeMap::new();
    let mut actions = Vec::new();
    for target in targets {
        let version = match target {
            Target::Tag(tag) => by_tag.get(tag.as_str()).copied(),
            Target::Digest(digest) => versions.iter().find(|v| &v.name == digest),
        };
        match version {
            Some(version) => groups
                .entry(version.id)
                .or_insert((version, Vec::new()))
                .1
                .push(target.clone()),
            None => actions.push(Action::Absent(target.clone())),
        }
    }
    for (id, (version, targets)) in groups {
        let requested: BTreeSet<&str> = targets
            .iter()
            .filter_map(|t| match t {
                Target::Tag(tag) => Some(tag.as_str()),
                Target::Digest(_) => None,
            })
            .collect();
        let whole = targets.iter().any(|t| matches!(t, Target::Digest(_)))
            || version
                .metadata
                .container
                .tags
                .iter()
                .all(|t| requested.contains(t.as_str()));
        if whole {
            actions.push(Action::Delete {
                version: id,
                digest: version.name.clone(),
                targets,
            });
        } else {
            actions.extend(requested.into_iter().map(|tag| Action::Untag {
                tag: tag.to_string(),
                digest: version.name.clone(),
            }));
        }
    }
    actions
}

impl Implementation for GitHub {
    fn spec(&self) -> &'static Spec {
        &SPEC
    }

    fn list_tags<'a>(
        &'a self,
        repository: &'a Repository,
        _with_digests: bool,
    ) -> BoxFuture<'a, Result<Vec<TagInfo>, RegistryError>> {
        // Versions carry digests and creation times with their tags, so they always come along.
        Box::pin(async move {
            let package = self.package(repository).await?;
            let mut tags: Vec<TagInfo> = self
                .versions(&package)
                .await?
                .into_iter()
                .flat_map(|version| {
                    let Version {
                        name,
                        created_at,
                        metadata,
                        ..
                    } = version;
                    metadata.container.tags.into_iter().map(move |tag| TagInfo {
                        tag,
                        digest: Some(name.clone()),
                        created: created_at.as_deref().and_then(Timestamp::parse_rfc3339),
                        last_pulled: None,
                    })
                })
                .collect();
            tags.sort_by(|a, b| a.tag.cmp(&b.tag));
            tags.dedup_by(|a, b| a.tag == b.tag);
            Ok(tags)
        })
    }

    fn list_untagged<'a>(
        &'a self,
        repository: &'a Repository,
    ) -> BoxFuture<'a, Result<Option<Vec<UntaggedManifest>>, RegistryError>> {
        Box::pin(async move {
            let package = self.package(repository).await?;
            let versions = self.versions(&package).await?;
            if versions
                .iter()
                .all(|v| !v.metadata.container.tags.is_empty())
            {
                return Ok(Some(Vec::new()));
            }
            let children = dates::index_children(
                &self.context.client,
                &repository.path,
                versions.iter().map(|v| v.name.as_str()),
                self.context.parallel,
            )
            .await?;
            Ok(Some(
                versions
                    .iter()
                    .filter(|v| v.metadata.container.tags.is_empty())
                    .filter(|v| !children.contains_key(&v.name))
                    .map(|v| UntaggedManifest {
                        digest: v.name.clone(),
                        created: v.last_change(),
                        subject: None,
                    })
                    .collect(),
            ))
        })
    }

    fn list_repositories<'a>(
        &'a self,
        prefix: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<String>>, RegistryError>> {
        // ghcr.io has no catalog: the owner's container packages are its repositories.
        Box::pin(async move {
            let Some((owner, _)) = prefix.split_once('/') else {
                return Err(RegistryError::Config(
                    "GitHub lists packages per owner: name one, as ghcr.io/OWNER/*".into(),
                ));
            };
            // `/users/{owner}/…` rather than `/user/…`: the owner need not be the token's.
            let base = if self.is_organisation(owner).await? {
                format!("orgs/{owner}")
            } else {
                format!("users/{owner}")
            };
            #[derive(serde::Deserialize)]
            struct Listed {
                name: String,
            }
            let packages: Vec<Listed> = self
                .list(
                    format!("{base}/packages?package_type=container&per_page={PER_PAGE}"),
                    &format!("list container packages of {owner}"),
                    None,
                    None,
                )
                .await?;
            let paths = packages
                .into_iter()
                .map(|package| format!("{owner}/{}", package.name));
            Ok(Some(paths_under(paths, prefix)))
        })
    }

    fn delete<'a>(&'a self, request: DeleteRequest<'a>) -> BoxFuture<'a, Vec<Entry>> {
        Box::pin(delete::run(self, request))
    }
}

/// One removal in `package`.
struct Change {
    package: Package,
    kind: ChangeKind,
}

enum ChangeKind {
    /// Delete the version `id`, of manifest `digest`.
    Version { id: u64, digest: String },
    /// Move `tag` off its version `digest`, which keeps other tags.
    Untag { tag: String, digest: String },
    /// Delete the whole package (`--github-delete-package`): every version goes.
    Package,
}

impl Deletion for GitHub {
    type Action = Change;

    /// GitHub asks API clients to make requests for one user serially, not concurrently, against its
    /// secondary rate limits.
    fn parallel(&self) -> usize {
        1
    }

    async fn plan(&self, request: &DeleteRequest<'_>) -> Result<Vec<Step<Change>>, RegistryError> {
        let (repository, targets) = (request.repository, request.targets);
        let package = self.package(repository).await?;
        let versions = self.versions(&package).await?;
        let actions = plan(targets, &versions);
        let deleted_versions = actions
            .iter()
            .filter(|a| matches!(a, Action::Delete { .. }))
            .count();
        let every_version = !versions.is_empty() && deleted_versions == versions.len();
        let delete_package = every_version
            && self.context.settings.text("github-delete-package") == Some(package.name.as_str());
        let refused = every_version && !delete_package;
        let last_version = format!(
            "this would delete every version of package {0} on GitHub, which refuses to delete a package's last version; pass --github-delete-package {0} to delete the whole package",
            package.name
        );
        let change = |kind| Change {
            package: package.clone(),
            kind,
        };
        let mut steps = Vec::new();
        let mut whole_package = Vec::new();
        for action in actions {
            match action {
                Action::Absent(target) => {
                    steps.push(Step::Settled(Entry::absent(repository, &target)))
                }
                Action::Delete {
                    version,
                    digest,
                    targets,
                } => {
                    let planned = targets.into_iter().map(|target| {
                        let method = match target {
                            Target::Digest(_) => Method::Digest,
                            Target::Tag(_) => Method::Native,
                        };
                        Planned::new(target, Some(digest.clone()), method)
                    });
                    if refused {
                        steps.extend(planned.map(|planned| {
                            Step::Settled(delete::refused(
                                repository,
                                &planned.target,
                                planned.digest,
                                last_version.clone(),
                            ))
                        }));
                    } else if delete_package {
                        whole_package.extend(planned);
                    } else {
                        steps.push(Step::Remove(Removal {
                            planned: planned.collect(),
                            action: change(ChangeKind::Version {
                                id: version,
                                digest: digest.clone(),
                            }),
                        }));
                    }
                }
                Action::Untag { tag, digest } => steps.push(Step::removal(
                    Target::Tag(tag.clone()),
                    Some(digest.clone()),
                    Method::Tombstone,
                    change(ChangeKind::Untag { tag, digest }),
                )),
            }
        }
        if !whole_package.is_empty() {
            steps.push(Step::Remove(Removal {
                planned: whole_package,
                action: change(ChangeKind::Package),
            }));
        }
        Ok(steps)
    }

    async fn remove(
        &self,
        repository: &Repository,
        removal: Removal<Change>,
        _progress: &dyn Fn(u64),
    ) -> Vec<Entry> {
        let Change { package, kind } = removal.action;
        let (result, removed): (_, fn(Method) -> Outcome) = match kind {
            ChangeKind::Untag { tag, digest } => (
                self.untag(repository, &package, &tag, &digest).await,
                Outcome::Untagged,
            ),
            ChangeKind::Version { id, digest } => (
                self.delete_path(
                    &package,
                    &format!("{}/versions/{id}", package.api_path),
                    &format!("delete version {digest} of package {}", package.name),
                )
                .await,
                Outcome::Deleted,
            ),
            ChangeKind::Package => (
                self.delete_path(
                    &package,
                    &package.api_path,
                    &format!("delete package {}", package.name),
                )
                .await,
                Outcome::Deleted,
            ),
        };
        removal
            .planned
            .into_iter()
            .map(|planned| match &result {
                Ok(()) => Entry::new(
                    repository,
                    &planned.target,
                    planned.digest,
                    removed(planned.method),
                ),
                Err(error) => delete::failed(repository, &planned.target, None, error),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(created_at: Option<&str>, updated_at: Option<&str>) -> Version {
        Version {
            id: 1,
            name: "sha256:00".into(),
            created_at: created_at.map(String::from),
            updated_at: updated_at.map(String::from),
            metadata: Metadata::default(),
        }
    }

    #[test]
    fn an_untagged_version_dates_from_its_last_change() {
        let created = "2024-01-01T00:00:00Z";
        let updated = "2024-03-01T00:00:00Z";
        assert_eq!(
            version(Some(created), Some(updated)).last_change(),
            Timestamp::parse_rfc3339(updated)
        );
        assert_eq!(
            version(Some(updated), Some(created)).last_change(),
            Timestamp::parse_rfc3339(updated)
        );
        assert_eq!(
            version(Some(created), Some("not a date")).last_change(),
            Timestamp::parse_rfc3339(created)
        );
        assert_eq!(
            version(None, Some(updated)).last_change(),
            Timestamp::parse_rfc3339(updated)
        );
        assert_eq!(version(None, None).last_change(), None);
    }
}
