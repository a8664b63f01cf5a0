//! A GitHub Packages REST stand-in whose container versions are derived live from a real distribution
//! registry (the ghcr.io v2 data plane): each listing reads the repository's tags and digests from the
//! registry and gives every digest it has seen a stable version id, and a version DELETE deletes that digest
//! in the registry. So a manifest pushed through v2 (a tombstone) shows up as a new version, as on GitHub.
//! A DELETE finds its version through the id index and confirms it (and that another version is left) with
//! a HEAD or two instead of a listing's HEAD per tag, so a bench's 500 deletions measure the client.
//! A manifest that has no tag is a version only once the stand-in has seen it: [`GitHubServer::sync`]
//! records what a push made (an index's children among them, untagged versions on GitHub), so a tag moved
//! away later leaves an untagged version behind, as on GitHub. An owner's container packages are the
//! registry's tagged repositories under `OWNER/`.
//!
//! Packages under `OWNER/` are owned by OWNER: the token's user reaches its own through `/user/…`, anyone
//! reads another user's through `/users/{username}/…` but only its owner deletes there (403).
//!
//! Routes come from `github/api.github.com.packages-extract.json`, except `GET /users/{username}` and
//! `GET /user` (GitHub's users API, outside the packages extract; werf-registries.md §3.3 uses the first
//! for the owner's kind, the second names the token's user).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;

use crate::apiserver::{ApiServer, Declared, Reply, Request, Route};
use crate::images::{self, ACCEPT_ALL, Auth, Pusher};
use crate::registry::Registry;

/// The one route outside the packages description.
pub const USERS_ROUTE: (&str, &str) = ("GET", "/users/{username}");
/// The token's user, outside the packages description too.
pub const USER_ROUTE: (&str, &str) = ("GET", "/user");

#[derive(Default)]
struct State {
    base_url: String,
    registry_url: String,
    token: String,
    /// The token's owner: what `/user/…` means.
    user: String,
    /// Users other than the token's.
    users: BTreeSet<String>,
    organisations: BTreeSet<String>,
    /// digest → (version id, created_at).
    ids: BTreeMap<String, (u64, String)>,
    /// version id → digest: the inverse of `ids`, so a DELETE finds its version without a listing.
    digests: BTreeMap<u64, String>,
    /// repository → the versions its last listing found, less those deleted since: candidates for the
    /// "another version exists" check of a DELETE, each confirmed by one HEAD.
    listed: BTreeMap<String, BTreeSet<String>>,
    throttled: usize,
    /// Every page number answers the first page, with a `Link` to the next.
    paginate_forever: bool,
    /// GitHub's secondary limit on DELETEs, when on.
    limit: Option<SecondaryLimit>,
}

/// How a secondary-limit refusal says how long to wait.
#[derive(Debug, Clone, Copy)]
pub enum LimitHint {
    /// `retry-after: N`.
    RetryAfter(u64),
    /// `x-ratelimit-remaining: 0` and `x-ratelimit-reset` N seconds from now.
    Reset(u64),
}

/// At most `per_window` DELETEs per `window`; the next is refused (403) and opens a wait of the hint's
/// length, during which every request is counted as sent too early.
#[derive(Debug)]
struct SecondaryLimit {
    per_window: usize,
    window: Duration,
    hint: LimitHint,
    starts: VecDeque<Instant>,
    blocked_until: Option<Instant>,
    refused: usize,
    early: usize,
    /// When the first and the last DELETE within the limit came, and how many did.
    accepted: Option<(Instant, Instant, usize)>,
}

impl SecondaryLimit {
    /// Counts a request sent during a wait.
    fn note(&mut self, now: Instant) -> bool {
        let early = self.blocked_until.is_some_and(|until| now < until);
        if early {
            self.early += 1;
        }
        early
    }

    /// `Some(refusal)` when a DELETE now goes over the limit (or into a wait).
    fn delete(&mut self, now: Instant) -> Option<Reply> {
        let early = self.note(now);
        while self
            .starts
            .front()
            .is_some_and(|start| now - *start >= self.window)
        {
            self.starts.pop_front();
        }
        if !early && self.starts.len() < self.per_window {
            self.starts.push_back(now);
            let (first, _, count) = self.accepted.unwrap_or((now, now, 0));
            self.accepted = Some((first, now, count + 1));
            return None;
        }
        self.refused += 1;
        let seconds = match self.hint {
            LimitHint::RetryAfter(seconds) | LimitHint::Reset(seconds) => seconds,
        };
        if !early {
            self.blocked_until = Some(now + Duration::from_secs(seconds));
        }
        let reply = Reply::json(
            403,
            &json!({"message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."}),
        );
        Some(match self.hint {
            LimitHint::RetryAfter(seconds) => reply.with_header("retry-after", seconds.to_string()),
            LimitHint::Reset(seconds) => {
                let reset = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_secs()
                    + seconds;
                reply
                    .with_header("x-ratelimit-remaining", "0")
                    .with_header("x-ratelimit-reset", reset.to_string())
            }
        })
    }
}

impl State {
    /// The package's versions, newest first: every digest the registry holds for `repo` that is tagged or
    /// was seen before.
    fn versions(&mut self, repo: &str) -> Vec<(u64, String, Vec<String>)> {
        let pusher = Pusher::new(&self.registry_url, &Auth::None);
        let mut tags: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for tag in pusher.list_tags(repo) {
            if let Some(digest) = pusher.head_manifest(repo, &tag) {
                tags.entry(digest).or_default().push(tag);
            }
        }
        let known: Vec<String> = self.ids.keys().cloned().collect();
        for digest in known {
            if !tags.contains_key(&digest) && pusher.head_manifest(repo, &digest).is_some() {
                tags.insert(digest, Vec::new());
            }
        }
        let mut versions: Vec<_> = tags
            .into_iter()
            .map(|(digest, tags)| (self.remember(&digest), digest, tags))
            .collect();
        versions.sort_by_key(|version| std::cmp::Reverse(version.0));
        self.listed.insert(
            repo.to_string(),
            versions
                .iter()
                .map(|(_, digest, _)| digest.clone())
                .collect(),
        );
        versions
    }

    /// The version id of `digest`, given at its first sight.
    fn remember(&mut self, digest: &str) -> u64 {
        let next = self.ids.len() as u64 + 1;
        let (id, _) = self
            .ids
            .entry(digest.to_string())
            .or_insert_with(|| (next, format!("2024-05-{:02}T12:00:00Z", 1 + next % 28)));
        self.digests.insert(*id, digest.to_string());
        *id
    }

    /// The digest of version `id` of `repo`, when the registry still holds it: one HEAD, where
    /// [`State::versions`] reads every tag.
    fn version(&self, repo: &str, id: u64) -> Option<String> {
        let digest = self.digests.get(&id)?;
        Pusher::new(&self.registry_url, &Auth::None)
            .head_manifest(repo, digest)
            .map(|_| digest.clone())
    }

    /// Whether `repo` holds a version besides `digest`: a listed one the registry still has (stale ones are
    /// dropped on the way), else a full listing decides.
    fn has_other_version(&mut self, repo: &str, digest: &str) -> bool {
        let pusher = Pusher::new(&self.registry_url, &Auth::None);
        let candidates: Vec<String> = self
            .listed
            .get(repo)
            .into_iter()
            .flatten()
            .filter(|other| *other != digest)
            .cloned()
            .collect();
        for other in candidates {
            if pusher.head_manifest(repo, &other).is_some() {
                return true;
            }
            if let Some(listed) = self.listed.get_mut(repo) {
                listed.remove(&other);
            }
        }
        self.versions(repo).len() > 1
    }

    /// Records every manifest `repo` holds now, the children of its indexes included.
    fn sync(&mut self, repo: &str) {
        let tagged: Vec<String> = self
            .versions(repo)
            .into_iter()
            .map(|(_, digest, _)| digest)
            .collect();
        for digest in tagged {
            for child in self.children(repo, &digest) {
                self.remember(&child);
            }
        }
    }

    /// The digests an index references (none for an image manifest).
    fn children(&self, repo: &str, digest: &str) -> Vec<String> {
        let mut response = ureq::get(format!(
            "{}/v2/{repo}/manifests/{digest}",
            self.registry_url
        ))
        .header("accept", ACCEPT_ALL)
        .call()
        .expect("get manifest from the registry");
        let manifest: serde_json::Value =
            serde_json::from_slice(&response.body_mut().read_to_vec().expect("manifest body"))
                .expect("manifest JSON");
        manifest["manifests"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|child| child["digest"].as_str().map(String::from))
            .collect()
    }

    fn delete_digest(&mut self, repo: &str, digest: &str) {
        let response = ureq::delete(format!(
            "{}/v2/{repo}/manifests/{digest}",
            self.registry_url
        ))
        .call()
        .expect("delete manifest in the registry");
        assert_eq!(response.status().as_u16(), 202);
        if let Some(listed) = self.listed.get_mut(repo) {
            listed.remove(digest);
        }
    }
}

/// A running stand-in.
pub struct GitHubServer {
    /// The HTTP server (its log and violations).
    pub server: ApiServer,
    state: Arc<Mutex<State>>,
}

impl GitHubServer {
    /// Starts GitHub in front of the registry at `registry_url`, accepting `token` as `user`'s.
    pub fn start(registry_url: &str, token: &str, user: &str) -> GitHubServer {
        let state = Arc::new(Mutex::new(State {
            registry_url: registry_url.into(),
            token: token.into(),
            user: user.into(),
            ..State::default()
        }));
        let server = ApiServer::start(routes(&state));
        state.lock().unwrap().base_url = server.url();
        GitHubServer { server, state }
    }

    /// The API base URL.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Makes `name` an organisation.
    pub fn add_organisation(&self, name: &str) {
        self.state.lock().unwrap().organisations.insert(name.into());
    }

    /// Makes `name` a user other than the token's.
    pub fn add_user(&self, name: &str) {
        self.state.lock().unwrap().users.insert(name.into());
    }

    /// Records what the registry holds for `repo` as versions, as GitHub does at push time: call it after
    /// pushing untagged manifests (an index's children) or before moving a tag off a manifest.
    pub fn sync(&self, repo: &str) {
        self.state.lock().unwrap().sync(repo);
    }

    /// Answers the next `n` version listings 429 with `Retry-After: 1`.
    pub fn throttle(&self, n: usize) {
        self.state.lock().unwrap().throttled = n;
    }

    /// Enforces a secondary limit: at most `per_window` DELETEs per `window`, refused beyond with `hint`.
    pub fn secondary_limit(&self, per_window: usize, window: Duration, hint: LimitHint) {
        self.state.lock().unwrap().limit = Some(SecondaryLimit {
            per_window,
            window,
            hint,
            starts: VecDeque::new(),
            blocked_until: None,
            refused: 0,
            early: 0,
            accepted: None,
        });
    }

    /// `(refused, early)`: DELETEs refused by the secondary limit, and requests sent during a wait.
    pub fn limit_counts(&self) -> (usize, usize) {
        let state = self.state.lock().unwrap();
        state
            .limit
            .as_ref()
            .map_or((0, 0), |limit| (limit.refused, limit.early))
    }

    /// `(accepted, span)`: DELETEs let through by the secondary limit, and the time from the first to the
    /// last of them (the achieved rate is `(accepted - 1) / span`).
    pub fn limit_accepted(&self) -> (usize, Duration) {
        let state = self.state.lock().unwrap();
        match state.limit.as_ref().and_then(|limit| limit.accepted) {
            Some((first, last, count)) => (count, last - first),
            None => (0, Duration::ZERO),
        }
    }

    /// From now on, listings never end: every page number answers the first page and links to the next.
    pub fn paginate_forever(&self) {
        self.state.lock().unwrap().paginate_forever = true;
    }
}

/// A registry and GitHub in front of it (token `token`, user `octocat`) where organisation `octo-org`'s
/// package `app` holds `n` tags on distinct versions (`t000`…) plus `keep`, behind a secondary limit of
/// `per_window` DELETEs per `window` refused with `hint`; with the references of the `n` tags.
pub fn limited(
    token: &str,
    n: usize,
    per_window: usize,
    window: Duration,
    hint: LimitHint,
) -> (Registry, GitHubServer, Vec<String>) {
    let registry = Registry::start();
    let github = GitHubServer::start(&registry.url(), token, "octocat");
    github.add_organisation("octo-org");
    let names: Vec<String> = (0..n).map(|i| format!("t{i:03}")).collect();
    let mut all: Vec<&str> = names.iter().map(String::as_str).collect();
    all.push("keep");
    images::push_distinct(&registry.url(), "octo-org/app", &all, &Auth::None);
    github.secondary_limit(per_window, window, hint);
    let refs = names
        .iter()
        .map(|tag| format!("{}/octo-org/app:{tag}", registry.host()))
        .collect();
    (registry, github, refs)
}

/// `owner`'s package versions; `paged` when the route takes `page` and `per_page`, else every version
/// in one answer.
fn versions_reply(state: &mut State, request: &Request, owner: &str, paged: bool) -> Reply {
    if let Some(limit) = &mut state.limit {
        limit.note(Instant::now());
    }
    if request.bearer() != Some(state.token.as_str()) {
        return Reply::json(401, &json!({"message": "Bad credentials"}));
    }
    if request.param("package_type") != "container" {
        return Reply::json(404, &json!({"message": "Not Found"}));
    }
    let repo = format!("{owner}/{}", request.param("package_name"));
    let versions = state.versions(&repo);
    if versions.is_empty() {
        return Reply::json(404, &json!({"message": "Package not found."}));
    }
    let items: Vec<_> = versions
        .iter()
        .map(|(id, digest, tags)| {
            json!({"id": id, "name": digest, "url": "", "package_html_url": "",
                   "created_at": state.ids[digest].1, "updated_at": state.ids[digest].1,
                   "metadata": {"package_type": "container", "container": {"tags": tags}}})
        })
        .collect();
    if paged {
        page_reply(state, request, items)
    } else {
        Reply::json(200, &json!(items))
    }
}

/// One page of `items` as `page` and `per_page` ask (GitHub's default 30, at most 100), with a `Link` to
/// the next.
fn page_reply(state: &State, request: &Request, items: Vec<serde_json::Value>) -> Reply {
    let page: usize = request
        .query("page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(1)
        .max(1);
    let per_page: usize = request
        .query("per_page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(30)
        .clamp(1, 100);
    let start = if state.paginate_forever {
        0
    } else {
        (page - 1) * per_page
    };
    let total = items.len();
    let items: Vec<_> = items.into_iter().skip(start).take(per_page).collect();
    let mut reply = Reply::json(200, &json!(items));
    if state.paginate_forever || start + per_page < total {
        let kind = request
            .query("package_type")
            .map(|kind| format!("package_type={kind}&"))
            .unwrap_or_default();
        reply = reply.with_header(
            "Link",
            format!(
                "<{}{}?{kind}per_page={per_page}&page={}>; rel=\"next\"",
                state.base_url,
                request.path,
                page + 1
            ),
        );
    }
    reply
}

/// The owner's container packages: every repository under `owner/` the registry's catalog lists with a
/// tag, named by the path after the owner.
fn packages_reply(state: &State, request: &Request, owner: &str) -> Reply {
    if request.bearer() != Some(state.token.as_str()) {
        return Reply::json(401, &json!({"message": "Bad credentials"}));
    }
    if request.query("package_type") != Some("container") {
        return Reply::json(200, &json!([]));
    }
    let mut response = ureq::get(format!("{}/v2/_catalog?n=1000", state.registry_url))
        .call()
        .expect("registry catalog");
    let catalog: serde_json::Value =
        serde_json::from_slice(&response.body_mut().read_to_vec().expect("catalog body"))
            .expect("catalog JSON");
    let pusher = Pusher::new(&state.registry_url, &Auth::None);
    let items: Vec<_> = catalog["repositories"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|repo| repo.as_str())
        .filter(|repo| !pusher.list_tags(repo).is_empty())
        .filter_map(|repo| repo.strip_prefix(&format!("{owner}/")).map(String::from))
        .enumerate()
        .map(|(i, name)| {
            json!({"id": i + 1, "name": name, "package_type": "container", "url": "", "html_url": "",
                   "visibility": "private", "created_at": "2024-05-01T12:00:00Z",
                   "updated_at": "2024-05-01T12:00:00Z"})
        })
        .collect();
    page_reply(state, request, items)
}

fn delete_version(state: &mut State, request: &Request, owner: &str) -> Reply {
    if request.bearer() != Some(state.token.as_str()) {
        return Reply::json(401, &json!({"message": "Bad credentials"}));
    }
    if let Some(refused) = state
        .limit
        .as_mut()
        .and_then(|limit| limit.delete(Instant::now()))
    {
        return refused;
    }
    let repo = format!("{owner}/{}", request.param("package_name"));
    let id: u64 = request.param("package_version_id").parse().unwrap_or(0);
    let Some(digest) = state.version(&repo, id) else {
        return Reply::json(404, &json!({"message": "Not Found"}));
    };
    if !state.has_other_version(&repo, &digest) {
        // GitHub's refusal (actions/delete-package-versions#231) has no documented status; a client must
        // never get here, so answer with a described one and let the test see the request in the log.
        return Reply::json(
            403,
            &json!({"message": "You cannot delete the last version of a package. You must delete the package instead."}),
        );
    }
    state.delete_digest(&repo, &digest);
    Reply::empty(204)
}

fn delete_package(state: &mut State, request: &Request, owner: &str) -> Reply {
    if request.bearer() != Some(state.token.as_str()) {
        return Reply::json(401, &json!({"message": "Bad credentials"}));
    }
    let repo = format!("{owner}/{}", request.param("package_name"));
    let versions = state.versions(&repo);
    if versions.is_empty() {
        return Reply::json(404, &json!({"message": "Not Found"}));
    }
    for (_, digest, _) in versions {
        state.delete_digest(&repo, &digest);
    }
    Reply::empty(204)
}

/// The refusal of a change to another user's package (a valid token that is not the owner's).
fn owner_only(state: &State, request: &Request) -> Option<Reply> {
    (request.bearer() == Some(state.token.as_str()) && request.param("username") != state.user)
        .then(|| {
            Reply::json(
                403,
                &json!({"message": "You must have admin permissions on this package to delete it."}),
            )
        })
}

fn routes(state: &Arc<Mutex<State>>) -> Vec<Route> {
    let s = |state: &Arc<Mutex<State>>| Arc::clone(state);
    let (users, org_list, org_delete, org_package, user_list, user_delete, user_package) = (
        s(state),
        s(state),
        s(state),
        s(state),
        s(state),
        s(state),
        s(state),
    );
    let (org_packages, user_packages, me) = (s(state), s(state), s(state));
    let (users_list, users_delete, users_package) = (s(state), s(state), s(state));
    vec![
        Route::new(
            "GET",
            "/orgs/{org}/packages",
            &["package_type", "page", "per_page"],
            &[200, 401],
            move |r| packages_reply(&org_packages.lock().unwrap(), r, r.param("org")),
        ),
        // `/users/{username}/…` lists anyone's packages; here only the token's user has any.
        Route::new(
            "GET",
            "/users/{username}/packages",
            &["package_type", "page", "per_page"],
            &[200, 401],
            move |r| {
                let state = user_packages.lock().unwrap();
                if r.param("username") == state.user {
                    packages_reply(&state, r, &state.user)
                } else {
                    Reply::json(200, &json!([]))
                }
            },
        ),
        Route::new(USERS_ROUTE.0, USERS_ROUTE.1, &[], &[200, 404], move |r| {
            let state = users.lock().unwrap();
            let name = r.param("username");
            if state.organisations.contains(name) {
                Reply::json(200, &json!({"login": name, "type": "Organization"}))
            } else if name == state.user || state.users.contains(name) {
                Reply::json(200, &json!({"login": name, "type": "User"}))
            } else {
                Reply::json(404, &json!({"message": "Not Found"}))
            }
        }),
        Route::new(USER_ROUTE.0, USER_ROUTE.1, &[], &[200, 401], move |r| {
            let state = me.lock().unwrap();
            if r.bearer() != Some(state.token.as_str()) {
                return Reply::json(401, &json!({"message": "Bad credentials"}));
            }
            Reply::json(200, &json!({"login": state.user, "type": "User"}))
        }),
        Route::new(
            "GET",
            "/users/{username}/packages/{package_type}/{package_name}/versions",
            &[],
            &[200, 401, 404],
            move |r| {
                versions_reply(
                    &mut users_list.lock().unwrap(),
                    r,
                    r.param("username"),
                    false,
                )
            },
        ),
        Route::new(
            "DELETE",
            "/users/{username}/packages/{package_type}/{package_name}/versions/{package_version_id}",
            &[],
            &[204, 401, 403, 404],
            move |r| {
                let mut state = users_delete.lock().unwrap();
                match owner_only(&state, r) {
                    Some(refused) => refused,
                    None => delete_version(&mut state, r, r.param("username")),
                }
            },
        ),
        Route::new(
            "DELETE",
            "/users/{username}/packages/{package_type}/{package_name}",
            &[],
            &[204, 401, 403, 404],
            move |r| {
                let mut state = users_package.lock().unwrap();
                match owner_only(&state, r) {
                    Some(refused) => refused,
                    None => delete_package(&mut state, r, r.param("username")),
                }
            },
        ),
        // 429: GitHub's secondary rate limits (registry-apis.md §3), not listed per operation.
        Route::new(
            "GET",
            "/orgs/{org}/packages/{package_type}/{package_name}/versions",
            &["page", "per_page"],
            &[200, 401, 404, 429],
            move |r| {
                let mut state = org_list.lock().unwrap();
                if state.throttled > 0 {
                    state.throttled -= 1;
                    return Reply::json(429, &json!({"message": "secondary rate limit"}))
                        .with_header("Retry-After", "1");
                }
                versions_reply(&mut state, r, r.param("org"), true)
            },
        ),
        Route::new(
            "DELETE",
            "/orgs/{org}/packages/{package_type}/{package_name}/versions/{package_version_id}",
            &[],
            &[204, 401, 403, 404],
            move |r| delete_version(&mut org_delete.lock().unwrap(), r, r.param("org")),
        ),
        Route::new(
            "DELETE",
            "/orgs/{org}/packages/{package_type}/{package_name}",
            &[],
            &[204, 401, 404],
            move |r| delete_package(&mut org_package.lock().unwrap(), r, r.param("org")),
        ),
        Route::new(
            "GET",
            "/user/packages/{package_type}/{package_name}/versions",
            &["page", "per_page"],
            &[200, 401, 404],
            move |r| {
                let mut state = user_list.lock().unwrap();
                let user = state.user.clone();
                versions_reply(&mut state, r, &user, true)
            },
        ),
        Route::new(
            "DELETE",
            "/user/packages/{package_type}/{package_name}/versions/{package_version_id}",
            &[],
            &[204, 401, 403, 404],
            move |r| {
                let mut state = user_delete.lock().unwrap();
                let user = state.user.clone();
                delete_version(&mut state, r, &user)
            },
        ),
        Route::new(
            "DELETE",
            "/user/packages/{package_type}/{package_name}",
            &[],
            &[204, 401, 404],
            move |r| {
                let mut state = user_package.lock().unwrap();
                let user = state.user.clone();
                delete_package(&mut state, r, &user)
            },
        ),
    ]
}

/// The route table's declarations, for the description check.
pub fn declared() -> Vec<Declared> {
    crate::apiserver::declared(&routes(&Arc::new(Mutex::new(State::default()))))
}
