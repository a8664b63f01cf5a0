//! A GitLab API stand-in for the container registry endpoints: projects looked up by URL-encoded path,
//! their registry repositories, paginated tag names, tag details with digest and `created_at`, tag deletion
//! with protection rules (403), access tokens and switchable rate limiting.
//!
//! Routes come from `gitlab/openapi_v2.container-registry.extract.yaml`, except [`GROUPS_ROUTE`], which
//! only `gitlab/container_registry.md` describes (the extract leaves it out). A group's registry
//! repositories are those of the projects directly in it (the description does not say whether subgroups
//! count).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use serde_json::json;

use crate::apiserver::{ApiServer, Declared, Reply, Request, Route};

/// The group listing, described in `container_registry.md` only.
pub const GROUPS_ROUTE: (&str, &str) = ("GET", "/api/v4/groups/{id}/registry/repositories");

/// A registry repository: its path and tag → (digest, created_at).
type RegistryRepository = (String, BTreeMap<String, (String, String)>);

#[derive(Default)]
struct State {
    base_url: String,
    tokens: BTreeSet<String>,
    /// Tokens whose role (Reporter) reads but may not delete.
    readers: BTreeSet<String>,
    /// project path → registry repository paths (their id is the index + 1 in `repositories`).
    projects: BTreeMap<String, Vec<u64>>,
    /// repository id - 1 → (path, tag → (digest, created_at)).
    repositories: Vec<RegistryRepository>,
    protected: BTreeSet<String>,
    throttled: usize,
    /// Every page number answers the first page, with the headers of a next one.
    paginate_forever: bool,
}

/// A running stand-in.
pub struct GitLabServer {
    /// The HTTP server (its log and violations).
    pub server: ApiServer,
    state: Arc<Mutex<State>>,
}

impl GitLabServer {
    /// Starts a GitLab accepting `token` as `PRIVATE-TOKEN` or `JOB-TOKEN`.
    pub fn start(token: &str) -> GitLabServer {
        let state = Arc::new(Mutex::new(State::default()));
        state.lock().unwrap().tokens.insert(token.into());
        let server = ApiServer::start(routes(&state));
        state.lock().unwrap().base_url = server.url();
        GitLabServer { server, state }
    }

    /// `http://127.0.0.1:PORT/api/v4`.
    pub fn api_url(&self) -> String {
        format!("{}/api/v4", self.server.url())
    }

    /// Sets `tag` of registry repository `path` in `project` to `digest`, created at `created`.
    pub fn push(&self, project: &str, path: &str, tag: &str, digest: &str, created: &str) {
        let mut state = self.state.lock().unwrap();
        let id = match state.repositories.iter().position(|(p, _)| p == path) {
            Some(index) => index as u64 + 1,
            None => {
                state.repositories.push((path.into(), BTreeMap::new()));
                let id = state.repositories.len() as u64;
                state.projects.entry(project.into()).or_default().push(id);
                id
            }
        };
        state.repositories[id as usize - 1]
            .1
            .insert(tag.into(), (digest.into(), created.into()));
    }

    /// Tags of registry repository `path` → digest.
    pub fn tags(&self, path: &str) -> BTreeMap<String, String> {
        let state = self.state.lock().unwrap();
        let (_, tags) = state.repositories.iter().find(|(p, _)| p == path).unwrap();
        tags.iter()
            .map(|(t, (d, _))| (t.clone(), d.clone()))
            .collect()
    }

    /// Accepts `token` for reads only (a Reporter's).
    pub fn add_reader(&self, token: &str) {
        let mut state = self.state.lock().unwrap();
        state.tokens.insert(token.into());
        state.readers.insert(token.into());
    }

    /// Makes `tag` match a protection rule.
    pub fn protect(&self, tag: &str) {
        self.state.lock().unwrap().protected.insert(tag.into());
    }

    /// Answers the next `n` tag listings 429 with `Retry-After: 1`.
    pub fn throttle(&self, n: usize) {
        self.state.lock().unwrap().throttled = n;
    }

    /// From now on, listings never end: every page number answers the first page and names a next one.
    pub fn paginate_forever(&self) {
        self.state.lock().unwrap().paginate_forever = true;
    }
}

fn authorised(state: &State, request: &Request) -> bool {
    let token = request
        .header("private-token")
        .or_else(|| request.header("job-token"));
    token.is_some_and(|token| state.tokens.contains(token))
}

fn unauthorised() -> Reply {
    Reply::json(401, &json!({"message": "401 Unauthorized"}))
}

/// The repository `{repository_id}` of project `{id}` (a numeric id is not used by the client).
fn repository<'a>(state: &'a mut State, request: &Request) -> Option<&'a mut RegistryRepository> {
    let ids = state.projects.get(request.param("id"))?;
    let id: u64 = request.param("repository_id").parse().ok()?;
    if !ids.contains(&id) {
        return None;
    }
    state.repositories.get_mut(id as usize - 1)
}

/// One page of `items` with GitLab's pagination headers.
fn page(request: &Request, state: &State, items: Vec<serde_json::Value>) -> Reply {
    let base_url = &state.base_url;
    let page: usize = request
        .query("page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(1)
        .max(1);
    let per_page: usize = request
        .query("per_page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(20)
        .clamp(1, 100);
    let start = if state.paginate_forever {
        0
    } else {
        (page - 1) * per_page
    };
    let slice: Vec<_> = items.iter().skip(start).take(per_page).cloned().collect();
    let mut reply = Reply::json(200, &json!(slice)).with_header("X-Total", items.len().to_string());
    if state.paginate_forever || start + per_page < items.len() {
        reply = reply
            .with_header(
                "Link",
                format!(
                    "<{base_url}{}?page={}&per_page={per_page}>; rel=\"next\"",
                    request.path,
                    page + 1
                ),
            )
            .with_header("X-Next-Page", (page + 1).to_string());
    }
    reply
}

/// The registry repositories `ids` as GitLab lists them.
fn listed(state: &State, ids: &[u64]) -> Vec<serde_json::Value> {
    ids.iter()
        .map(|id| {
            let path = &state.repositories[*id as usize - 1].0;
            json!({"id": id, "name": path.rsplit('/').next(), "path": path,
                   "project_id": 1, "location": format!("registry.example/{path}")})
        })
        .collect()
}

fn routes(state: &Arc<Mutex<State>>) -> Vec<Route> {
    let groups = Arc::clone(state);
    let (repos, list, details, delete) = (
        Arc::clone(state),
        Arc::clone(state),
        Arc::clone(state),
        Arc::clone(state),
    );
    vec![
        Route::new(
            "GET",
            "/api/v4/projects/{id}/registry/repositories",
            &["page", "per_page"],
            &[200, 401, 404],
            move |r| {
                let state = repos.lock().unwrap();
                if !authorised(&state, r) {
                    return unauthorised();
                }
                let Some(ids) = state.projects.get(r.param("id")) else {
                    return Reply::json(404, &json!({"message": "404 Project Not Found"}));
                };
                let items = listed(&state, ids);
                page(r, &state, items)
            },
        ),
        // A group exists when a project lies under it; its listing holds its direct projects'.
        Route::new(
            GROUPS_ROUTE.0,
            GROUPS_ROUTE.1,
            &["page", "per_page"],
            &[200, 401, 404],
            move |r| {
                let state = groups.lock().unwrap();
                if !authorised(&state, r) {
                    return unauthorised();
                }
                let group = r.param("id");
                let under = |project: &str| {
                    project
                        .strip_prefix(group)
                        .is_some_and(|rest| rest.starts_with('/'))
                };
                if !state.projects.keys().any(|project| under(project)) {
                    return Reply::json(404, &json!({"message": "404 Group Not Found"}));
                }
                let ids: Vec<u64> = state
                    .projects
                    .iter()
                    .filter(|(project, _)| {
                        under(project) && !project[group.len() + 1..].contains('/')
                    })
                    .flat_map(|(_, ids)| ids.iter().copied())
                    .collect();
                let items = listed(&state, &ids);
                page(r, &state, items)
            },
        ),
        // 429: GitLab's rate limits (registry-apis.md §8), not part of the generated description.
        Route::new(
            "GET",
            "/api/v4/projects/{id}/registry/repositories/{repository_id}/tags",
            &["page", "per_page"],
            &[200, 401, 404, 429],
            move |r| {
                let mut state = list.lock().unwrap();
                if state.throttled > 0 {
                    state.throttled -= 1;
                    return Reply::json(429, &json!({"message": "Retry later"}))
                        .with_header("Retry-After", "1");
                }
                if !authorised(&state, r) {
                    return unauthorised();
                }
                let Some((path, tags)) = repository(&mut state, r) else {
                    return Reply::json(404, &json!({"message": "404 Repository Not Found"}));
                };
                let items = tags
                    .keys()
                    .map(|tag| json!({"name": tag, "path": format!("{path}:{tag}"), "location": format!("registry.example/{path}:{tag}")}))
                    .collect();
                page(r, &state, items)
            },
        ),
        Route::new(
            "GET",
            "/api/v4/projects/{id}/registry/repositories/{repository_id}/tags/{tag_name}",
            &[],
            &[200, 401, 404],
            move |r| {
                let mut state = details.lock().unwrap();
                if !authorised(&state, r) {
                    return unauthorised();
                }
                let found = repository(&mut state, r).and_then(|(path, tags)| {
                    let (digest, created) = tags.get(r.param("tag_name"))?;
                    Some(json!({"name": r.param("tag_name"), "path": format!("{path}:{}", r.param("tag_name")),
                                "digest": digest, "revision": digest.trim_start_matches("sha256:"),
                                "created_at": created, "total_size": 1234}))
                });
                match found {
                    Some(body) => Reply::json(200, &body),
                    None => Reply::json(404, &json!({"message": "404 Tag Not Found"})),
                }
            },
        ),
        Route::new(
            "DELETE",
            "/api/v4/projects/{id}/registry/repositories/{repository_id}/tags/{tag_name}",
            &[],
            &[204, 401, 403, 404],
            move |r| {
                let mut state = delete.lock().unwrap();
                if !authorised(&state, r) {
                    return unauthorised();
                }
                let token = r.header("private-token").or_else(|| r.header("job-token"));
                if token.is_some_and(|token| state.readers.contains(token)) {
                    return Reply::json(403, &json!({"message": "403 Forbidden"}));
                }
                let protected = state.protected.contains(r.param("tag_name"));
                let Some((_, tags)) = repository(&mut state, r) else {
                    return Reply::json(404, &json!({"message": "404 Repository Not Found"}));
                };
                if !tags.contains_key(r.param("tag_name")) {
                    return Reply::json(404, &json!({"message": "404 Tag Not Found"}));
                }
                if protected {
                    return Reply::json(
                        403,
                        &json!({"message": "403 Forbidden - the tag matches a tag protection rule"}),
                    );
                }
                tags.remove(r.param("tag_name"));
                Reply::empty(204)
            },
        ),
    ]
}

/// The route table's declarations, for the description check.
pub fn declared() -> Vec<Declared> {
    crate::apiserver::declared(&routes(&Arc::new(Mutex::new(State::default()))))
}
