//! A Docker Hub API stand-in: accounts with passwords and personal access tokens, sign-in, paginated tag
//! listings with dates, a namespace's repositories, and tag deletion, with switchable rate limiting and PAT
//! refusal.
//!
//! Routes come from `docker-hub/hub-api-latest.extract.yaml`, except [`UNDOCUMENTED_DELETE`]: the published
//! description has no delete operation; `DELETE /v2/repositories/{namespace}/{repository}/tags/{tag}/` is
//! the de-facto endpoint (research registry-apis.md §2; werf's dockerhub driver, werf-registries.md §3.2).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use serde_json::json;

use crate::apiserver::{ApiServer, Reply, Request, Route};

/// The one route outside the published description (see the module docs).
pub const UNDOCUMENTED_DELETE: (&str, &str) = (
    "DELETE",
    "/v2/repositories/{namespace}/{repository}/tags/{tag}/",
);

/// Hub's answer to a PAT-derived JWT where PATs are refused (docker/hub-feedback#2006).
pub const PAT_REFUSAL: &str = "access to the resource is forbidden with personal access token";

/// One tag: its digest and push date.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubTag {
    /// The manifest digest.
    pub digest: String,
    /// `tag_last_pushed`, RFC 3339.
    pub pushed: String,
    /// `tag_last_pulled`, RFC 3339; `None` (null) when never pulled.
    pub pulled: Option<String>,
}

#[derive(Default)]
struct State {
    base_url: String,
    /// username → password.
    passwords: BTreeMap<String, String>,
    /// personal access token → username.
    pats: BTreeMap<String, String>,
    /// issued JWT → whether it came from a personal access token.
    tokens: BTreeMap<String, bool>,
    /// `namespace/name` → tag → details.
    repositories: BTreeMap<String, BTreeMap<String, HubTag>>,
    /// Requests still to be answered 429 (`Retry-After: 1`).
    throttled: usize,
    refuse_pats: bool,
    /// Every page number answers the first page, with a `next`.
    paginate_forever: bool,
    /// Tags whose DELETE answers 404: `true` removes the tag first (a concurrent delete won), `false`
    /// keeps it (a 404 that hides a refusal).
    delete_404: BTreeMap<String, bool>,
    /// Repositories removed once their first page of tags is served.
    vanishing: BTreeSet<String>,
}

/// A running stand-in.
pub struct HubServer {
    /// The HTTP server (its log and violations).
    pub server: ApiServer,
    state: Arc<Mutex<State>>,
}

impl HubServer {
    /// Starts an empty Hub.
    pub fn start() -> HubServer {
        let state = Arc::new(Mutex::new(State::default()));
        let server = ApiServer::start(routes(&state));
        state.lock().unwrap().base_url = server.url();
        HubServer { server, state }
    }

    /// The API base URL.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// An account with a password, and optionally a personal access token.
    pub fn add_account(&self, username: &str, password: &str, pat: Option<&str>) {
        let mut state = self.state.lock().unwrap();
        state.passwords.insert(username.into(), password.into());
        if let Some(pat) = pat {
            state.pats.insert(pat.into(), username.into());
        }
    }

    /// A JWT as a password sign-in would issue it, for `--repo-docker-hub-token`.
    pub fn issue_token(&self) -> String {
        issue(&mut self.state.lock().unwrap(), false)
    }

    /// Sets `repository` (`namespace/name`) `tag` to `digest`, pushed at `pushed`.
    pub fn push(&self, repository: &str, tag: &str, digest: &str, pushed: &str) {
        self.state
            .lock()
            .unwrap()
            .repositories
            .entry(repository.into())
            .or_default()
            .insert(
                tag.into(),
                HubTag {
                    digest: digest.into(),
                    pushed: pushed.into(),
                    pulled: None,
                },
            );
    }

    /// Records a pull of `repository` `tag` at `pulled` (RFC 3339).
    pub fn pull(&self, repository: &str, tag: &str, pulled: &str) {
        if let Some(details) = (self.state.lock().unwrap().repositories.get_mut(repository))
            .and_then(|tags| tags.get_mut(tag))
        {
            details.pulled = Some(pulled.into());
        }
    }

    /// Every tag of `repository` with its digest.
    pub fn tags(&self, repository: &str) -> BTreeMap<String, String> {
        self.state.lock().unwrap().repositories[repository]
            .iter()
            .map(|(tag, details)| (tag.clone(), details.digest.clone()))
            .collect()
    }

    /// Answers the next `n` tag listings and deletes 429 with `Retry-After: 1`.
    pub fn throttle(&self, n: usize) {
        self.state.lock().unwrap().throttled = n;
    }

    /// Refuses deletes with PAT-derived tokens, as Hub did.
    pub fn refuse_pats(&self) {
        self.state.lock().unwrap().refuse_pats = true;
    }

    /// The DELETE of `tag` answers 404; `removes` says whether the tag goes first.
    pub fn delete_answers_404(&self, tag: &str, removes: bool) {
        self.state
            .lock()
            .unwrap()
            .delete_404
            .insert(tag.into(), removes);
    }

    /// `repository` is removed right after the first page of its tags is served.
    pub fn vanish_after_first_page(&self, repository: &str) {
        self.state
            .lock()
            .unwrap()
            .vanishing
            .insert(repository.into());
    }

    /// From now on, listings never end: every page number answers the first page and names a next one.
    pub fn paginate_forever(&self) {
        self.state.lock().unwrap().paginate_forever = true;
    }
}

fn issue(state: &mut State, from_pat: bool) -> String {
    let token = format!("hubjwt-{}", state.tokens.len() + 1);
    state.tokens.insert(token.clone(), from_pat);
    token
}

/// `Some(from_pat)` for a valid bearer token.
fn token_kind(state: &State, request: &Request) -> Option<bool> {
    request
        .bearer()
        .and_then(|token| state.tokens.get(token).copied())
}

fn sign_in(state: &Arc<Mutex<State>>, user: &str, secret: &str, field: &str) -> Reply {
    let mut state = state.lock().unwrap();
    let by_password = state.passwords.get(user).is_some_and(|p| p == secret);
    let by_pat = state.pats.get(secret).is_some_and(|owner| owner == user);
    if !by_password && !by_pat {
        return Reply::json(
            401,
            &json!({"detail": "Incorrect authentication credentials"}),
        );
    }
    let token = issue(&mut state, by_pat);
    Reply::json(200, &json!({ field: token }))
}

fn throttled(state: &mut State) -> Option<Reply> {
    (state.throttled > 0).then(|| {
        state.throttled -= 1;
        Reply::json(429, &json!({"detail": "Too Many Requests"})).with_header("Retry-After", "1")
    })
}

/// One page of `results` as `page` and `page_size` ask (Hub's default 10, at most 100), with `next`.
fn paged(state: &State, r: &Request, results: Vec<serde_json::Value>) -> Reply {
    let page: usize = r.query("page").and_then(|p| p.parse().ok()).unwrap_or(1);
    let size: usize = r
        .query("page_size")
        .and_then(|p| p.parse().ok())
        .unwrap_or(10)
        .clamp(1, 100);
    let count = results.len();
    if page == 0 || (!state.paginate_forever && (page - 1) * size > count) {
        return Reply::json(404, &json!({"detail": "Invalid page"}));
    }
    let start = if state.paginate_forever {
        0
    } else {
        (page - 1) * size
    };
    let next = (state.paginate_forever || start + size < count).then(|| {
        format!(
            "{}{}?page={}&page_size={size}",
            state.base_url,
            r.path,
            page + 1
        )
    });
    let results: Vec<_> = results.into_iter().skip(start).take(size).collect();
    Reply::json(
        200,
        &json!({"count": count, "next": next, "previous": null, "results": results}),
    )
}

/// The route table over `state` (also used without a server, for the description check).
fn routes(state: &Arc<Mutex<State>>) -> Vec<Route> {
    let token = Arc::clone(state);
    let login = Arc::clone(state);
    let list = Arc::clone(state);
    let delete = Arc::clone(state);
    let namespaces = Arc::clone(state);
    let read = Arc::clone(state);
    vec![
        // AuthCreateAccessToken.
        Route::new("POST", "/v2/auth/token", &[], &[200, 401], move |r| {
            let body = r.json();
            sign_in(
                &token,
                body["identifier"].as_str().unwrap_or(""),
                body["secret"].as_str().unwrap_or(""),
                "access_token",
            )
        }),
        // PostUsersLogin (deprecated).
        Route::new("POST", "/v2/users/login", &[], &[200, 401], move |r| {
            let body = r.json();
            sign_in(
                &login,
                body["username"].as_str().unwrap_or(""),
                body["password"].as_str().unwrap_or(""),
                "token",
            )
        }),
        // ListRepositoryTags; 429 from the rate-limiting section of the description.
        Route::new(
            "GET",
            "/v2/namespaces/{namespace}/repositories/{repository}/tags",
            &["page", "page_size"],
            &[200, 403, 404, 429],
            move |r| {
                let mut state = list.lock().unwrap();
                if let Some(reply) = throttled(&mut state) {
                    return reply;
                }
                if r.bearer().is_some() && token_kind(&state, r).is_none() {
                    return Reply::json(403, &json!({"detail": "forbidden"}));
                }
                let name = format!("{}/{}", r.param("namespace"), r.param("repository"));
                let Some(tags) = state.repositories.get(&name) else {
                    return Reply::json(404, &json!({"detail": "Object not found"}));
                };
                let results: Vec<_> = tags
                    .iter()
                    .map(|(tag, details)| {
                        json!({"name": tag, "last_updated": details.pushed,
                               "tag_last_pushed": details.pushed, "tag_last_pulled": details.pulled,
                               "status": "active",
                               "images": {"digest": details.digest, "architecture": "amd64", "os": "linux"}})
                    })
                    .collect();
                let reply = paged(&state, r, results);
                if state.vanishing.remove(&name) {
                    state.repositories.remove(&name);
                }
                reply
            },
        ),
        // GetRepositoryTag.
        Route::new(
            "GET",
            "/v2/namespaces/{namespace}/repositories/{repository}/tags/{tag}",
            &[],
            &[200, 403, 404],
            move |r| {
                let state = read.lock().unwrap();
                if r.bearer().is_some() && token_kind(&state, r).is_none() {
                    return Reply::json(403, &json!({"detail": "forbidden"}));
                }
                let name = format!("{}/{}", r.param("namespace"), r.param("repository"));
                match state
                    .repositories
                    .get(&name)
                    .and_then(|tags| tags.get(r.param("tag")))
                {
                    Some(details) => Reply::json(
                        200,
                        &json!({"name": r.param("tag"), "last_updated": details.pushed,
                                "tag_last_pushed": details.pushed, "status": "active",
                                "images": {"digest": details.digest, "architecture": "amd64", "os": "linux"}}),
                    ),
                    None => Reply::json(404, &json!({"detail": "Object not found"})),
                }
            },
        ),
        // listNamespaceRepositories: a namespace is an account or the first segment of a repository.
        Route::new(
            "GET",
            "/v2/namespaces/{namespace}/repositories",
            &["page", "page_size"],
            &[200, 403, 404],
            move |r| {
                let state = namespaces.lock().unwrap();
                if r.bearer().is_some() && token_kind(&state, r).is_none() {
                    return Reply::json(403, &json!({"detail": "forbidden"}));
                }
                let namespace = r.param("namespace");
                let results: Vec<_> = state
                    .repositories
                    .keys()
                    .filter_map(|name| name.strip_prefix(&format!("{namespace}/")))
                    .map(|name| {
                        json!({"name": name, "namespace": namespace, "repository_type": "image",
                               "status": 1, "status_description": "active", "is_private": false,
                               "last_updated": "2024-01-01T00:00:00Z"})
                    })
                    .collect();
                if results.is_empty() && !state.passwords.contains_key(namespace) {
                    return Reply::json(404, &json!({"detail": "Object not found"}));
                }
                paged(&state, r, results)
            },
        ),
        // Undocumented: see UNDOCUMENTED_DELETE.
        Route::new(
            UNDOCUMENTED_DELETE.0,
            UNDOCUMENTED_DELETE.1,
            &[],
            &[204, 401, 403, 404, 429],
            move |r| {
                let mut state = delete.lock().unwrap();
                if let Some(reply) = throttled(&mut state) {
                    return reply;
                }
                match token_kind(&state, r) {
                    None => {
                        return Reply::json(
                            401,
                            &json!({"detail": "Authentication credentials were not provided."}),
                        );
                    }
                    Some(true) if state.refuse_pats => {
                        return Reply::json(403, &json!({"detail": PAT_REFUSAL}));
                    }
                    Some(_) => {}
                }
                let name = format!("{}/{}", r.param("namespace"), r.param("repository"));
                if let Some(removes) = state.delete_404.get(r.param("tag")).copied() {
                    if removes && let Some(tags) = state.repositories.get_mut(&name) {
                        tags.remove(r.param("tag"));
                    }
                    return Reply::json(404, &json!({"detail": "Not found"}));
                }
                let removed = state
                    .repositories
                    .get_mut(&name)
                    .and_then(|tags| tags.remove(r.param("tag")));
                match removed {
                    Some(_) => Reply::empty(204),
                    None => Reply::json(404, &json!({"detail": "Not found"})),
                }
            },
        ),
    ]
}

/// The route table's declarations, for the description check.
pub fn declared() -> Vec<crate::apiserver::Declared> {
    crate::apiserver::declared(&routes(&Arc::new(Mutex::new(State::default()))))
}
