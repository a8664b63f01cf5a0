//! A stateful Artifact Registry REST API (`packages.tags` list/delete, `packages.versions` list/delete),
//! written from Google's Discovery document (`specs/google-artifact-registry/artifactregistry.v1.discovery.json`),
//! with [`Discovery`], a small loader of that format that checks a route table's methods, paths (`flatPath`)
//! and query parameters against it. Discovery documents list no statuses: the allowed ones are Google's
//! error model ([`ERROR_MODEL`]).
//!
//! Packages are addressed with their `/` encoded as `%2F`, as the API requires; names in answers carry the
//! encoded form too.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::apiserver::{ApiServer, Declared, Reply, Request, Route};
use crate::specs;

/// The Discovery document the routes follow.
pub const SPEC: &str = "google-artifact-registry/artifactregistry.v1.discovery.json";
/// The statuses Google APIs answer (cloud.google.com/apis/design/errors: OK, INVALID_ARGUMENT,
/// UNAUTHENTICATED, PERMISSION_DENIED, NOT_FOUND, ABORTED, RESOURCE_EXHAUSTED, INTERNAL, UNAVAILABLE).
pub const ERROR_MODEL: &[u16] = &[200, 400, 401, 403, 404, 409, 429, 500, 503];

const PACKAGE: &str = "/v1/projects/{projectsId}/locations/{locationsId}/repositories/{repositoriesId}/packages/{packagesId}";

/// Methods of a Discovery document: `(HTTP method, normalised flat path)` → query parameter names.
pub struct Discovery {
    methods: BTreeMap<(String, String), BTreeSet<String>>,
}

fn normalise(path: &str) -> String {
    path.trim_start_matches('/')
        .split('/')
        .map(|segment| {
            if segment.starts_with('{') {
                "{}"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

impl Discovery {
    /// Loads `relative` from the specs folder.
    pub fn load(relative: &str) -> Discovery {
        let path = specs::dir().join(relative);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let document: Value = serde_json::from_str(&text).expect("Discovery JSON");
        let global: BTreeSet<String> = document["parameters"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(name, _)| name.clone())
            .collect();
        let mut methods = BTreeMap::new();
        fn walk(
            resource: &Value,
            global: &BTreeSet<String>,
            out: &mut BTreeMap<(String, String), BTreeSet<String>>,
        ) {
            for (_, method) in resource["methods"].as_object().into_iter().flatten() {
                let mut query = global.clone();
                query.extend(
                    method["parameters"]
                        .as_object()
                        .into_iter()
                        .flatten()
                        .filter(|(_, p)| p["location"] == "query")
                        .map(|(name, _)| name.clone()),
                );
                out.insert(
                    (
                        method["httpMethod"].as_str().unwrap_or("").to_owned(),
                        normalise(method["flatPath"].as_str().unwrap_or("")),
                    ),
                    query,
                );
            }
            for (_, child) in resource["resources"].as_object().into_iter().flatten() {
                walk(child, global, out);
            }
        }
        walk(&document, &global, &mut methods);
        Discovery { methods }
    }

    /// Every way `declared` leaves the document; empty when it fits.
    pub fn mismatches(&self, declared: &[Declared]) -> Vec<String> {
        let mut problems = Vec::new();
        for route in declared {
            let key = (route.method.to_owned(), normalise(route.template));
            let Some(query) = self.methods.get(&key) else {
                problems.push(format!(
                    "{} {} is not in the document",
                    route.method, route.template
                ));
                continue;
            };
            for name in route.query {
                if !query.contains(*name) {
                    problems.push(format!(
                        "{} {}: query {name} not described",
                        route.method, route.template
                    ));
                }
            }
            for status in route.statuses {
                if !ERROR_MODEL.contains(status) {
                    problems.push(format!(
                        "{} {}: status {status} not in the error model",
                        route.method, route.template
                    ));
                }
            }
        }
        problems
    }
}

/// One package: tags → digest, versions (digests) → createTime.
#[derive(Debug, Default, Clone)]
pub struct Package {
    /// Tag → digest.
    pub tags: BTreeMap<String, String>,
    /// Digest → `createTime`.
    pub versions: BTreeMap<String, String>,
    /// Digest → `metadata.mediaType` (the DockerImage fields a version carries); an OCI image manifest when
    /// absent.
    pub media_types: BTreeMap<String, String>,
}

/// The media type of versions seeded without one.
pub const IMAGE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// What the double knows.
#[derive(Debug, Default)]
pub struct State {
    /// `(project, location, repository, package)` → package.
    pub packages: BTreeMap<(String, String, String, String), Package>,
    /// Bearer tokens → may delete.
    pub tokens: BTreeMap<String, bool>,
    /// Largest page answered.
    pub max_page: usize,
    /// Tag listings still to answer 429 before serving.
    pub throttle: usize,
    /// Every page's `nextPageToken` is the first page's.
    pub paginate_forever: bool,
}

/// A running Artifact Registry double.
pub struct ArtifactRegistry {
    /// The server.
    pub server: ApiServer,
    /// Its state.
    pub state: Arc<Mutex<State>>,
}

fn google_error(code: u16, status: &str, message: &str) -> Reply {
    Reply::json(
        code,
        &json!({"error": {"code": code, "message": message, "status": status}}),
    )
}

fn key(request: &Request) -> (String, String, String, String) {
    (
        request.param("projectsId").to_owned(),
        request.param("locationsId").to_owned(),
        request.param("repositoriesId").to_owned(),
        request.param("packagesId").to_owned(),
    )
}

fn parent(request: &Request) -> String {
    // The raw path keeps the package's %2F, as resource names in answers do.
    request
        .path
        .trim_start_matches("/v1/")
        .splitn(9, '/')
        .take(8)
        .collect::<Vec<_>>()
        .join("/")
}

/// `None` when allowed, else the 401/403 answer.
fn authorize(state: &State, request: &Request, delete: bool) -> Option<Reply> {
    match request.bearer().and_then(|token| state.tokens.get(token)) {
        None => Some(google_error(
            401,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials.",
        )),
        Some(false) if delete => Some(google_error(
            403,
            "PERMISSION_DENIED",
            "Permission 'artifactregistry.tags.delete' denied on resource (or it may not exist).",
        )),
        Some(_) => None,
    }
}

fn page<T: Clone>(items: &[T], request: &Request, state: &State) -> (Vec<T>, Option<String>) {
    let max = state.max_page;
    let size = request
        .query("pageSize")
        .and_then(|s| s.parse::<usize>().ok())
        .unwrap_or(max)
        .min(max)
        .max(1);
    let start = request
        .query("pageToken")
        .and_then(|t| t.strip_prefix("offset-")?.parse().ok())
        .unwrap_or(0);
    let slice = items.iter().skip(start).take(size).cloned().collect();
    let next = if state.paginate_forever {
        Some(format!("offset-{size}"))
    } else {
        (start + size < items.len()).then(|| format!("offset-{}", start + size))
    };
    (slice, next)
}

impl ArtifactRegistry {
    /// The route table over `state`.
    pub fn routes(state: Arc<Mutex<State>>) -> Vec<Route> {
        let list_tags = {
            let state = Arc::clone(&state);
            move |request: &Request| {
                let mut state = state.lock().expect("state");
                if state.throttle > 0 {
                    state.throttle -= 1;
                    return google_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded")
                        .with_header("Retry-After", "1");
                }
                if let Some(denied) = authorize(&state, request, false) {
                    return denied;
                }
                let Some(package) = state.packages.get(&key(request)) else {
                    return google_error(404, "NOT_FOUND", "Requested entity was not found.");
                };
                let parent = parent(request);
                let rows: Vec<Value> = package
                    .tags
                    .iter()
                    .map(|(tag, digest)| {
                        json!({"name": format!("{parent}/tags/{tag}"),
                               "version": format!("{parent}/versions/{digest}")})
                    })
                    .collect();
                let (rows, next) = page(&rows, request, &state);
                let mut body = json!({ "tags": rows });
                if let Some(next) = next {
                    body["nextPageToken"] = json!(next);
                }
                Reply::json(200, &body)
            }
        };
        let list_versions = {
            let state = Arc::clone(&state);
            move |request: &Request| {
                let state = state.lock().expect("state");
                if let Some(denied) = authorize(&state, request, false) {
                    return denied;
                }
                let Some(package) = state.packages.get(&key(request)) else {
                    return google_error(404, "NOT_FOUND", "Requested entity was not found.");
                };
                let parent = parent(request);
                let full = request.query("view") == Some("FULL");
                let rows: Vec<Value> = package
                    .versions
                    .iter()
                    .map(|(digest, created)| {
                        let media_type = package
                            .media_types
                            .get(digest)
                            .map_or(IMAGE_MANIFEST, String::as_str);
                        let mut row = json!({
                            "name": format!("{parent}/versions/{}", digest.replace(':', "%3A")),
                            "createTime": created, "updateTime": created,
                            "metadata": {"mediaType": media_type, "imageSizeBytes": "1024"},
                        });
                        // The full view adds up to 100 related tags.
                        if full {
                            row["relatedTags"] = package
                                .tags
                                .iter()
                                .filter(|(_, d)| *d == digest)
                                .take(100)
                                .map(|(tag, d)| {
                                    json!({"name": format!("{parent}/tags/{tag}"),
                                           "version": format!("{parent}/versions/{d}")})
                                })
                                .collect();
                        }
                        row
                    })
                    .collect();
                let (rows, next) = page(&rows, request, &state);
                let mut body = json!({ "versions": rows });
                if let Some(next) = next {
                    body["nextPageToken"] = json!(next);
                }
                Reply::json(200, &body)
            }
        };
        let delete_tag = {
            let state = Arc::clone(&state);
            move |request: &Request| {
                let mut state = state.lock().expect("state");
                if let Some(denied) = authorize(&state, request, true) {
                    return denied;
                }
                let tag = request.param("tagsId").to_owned();
                match state
                    .packages
                    .get_mut(&key(request))
                    .and_then(|p| p.tags.remove(&tag))
                {
                    Some(_) => Reply::json(200, &json!({})),
                    None => google_error(404, "NOT_FOUND", "Requested entity was not found."),
                }
            }
        };
        let delete_version = {
            let state = Arc::clone(&state);
            move |request: &Request| {
                let mut state = state.lock().expect("state");
                if let Some(denied) = authorize(&state, request, true) {
                    return denied;
                }
                let digest = request.param("versionsId").to_owned();
                let force = request.query("force") == Some("true");
                let Some(package) = state.packages.get_mut(&key(request)) else {
                    return google_error(404, "NOT_FOUND", "Requested entity was not found.");
                };
                if !package.versions.contains_key(&digest) {
                    return google_error(404, "NOT_FOUND", "Requested entity was not found.");
                }
                if !force && package.tags.values().any(|d| *d == digest) {
                    return google_error(
                        400,
                        "FAILED_PRECONDITION",
                        "version is tagged; use force",
                    );
                }
                package.versions.remove(&digest);
                package.media_types.remove(&digest);
                package.tags.retain(|_, d| *d != digest);
                Reply::json(
                    200,
                    &json!({"name": "projects/p/locations/l/operations/op-1", "done": true}),
                )
            }
        };
        let tags = format!("{PACKAGE}/tags").leak();
        let tag = format!("{PACKAGE}/tags/{{tagsId}}").leak();
        let versions = format!("{PACKAGE}/versions").leak();
        let version = format!("{PACKAGE}/versions/{{versionsId}}").leak();
        vec![
            Route::new(
                "GET",
                tags,
                &["pageSize", "pageToken"],
                &[200, 401, 403, 404, 429],
                list_tags,
            ),
            Route::new("DELETE", tag, &[], &[200, 401, 403, 404], delete_tag),
            Route::new(
                "GET",
                versions,
                &["pageSize", "pageToken", "view"],
                &[200, 401, 403, 404],
                list_versions,
            ),
            Route::new(
                "DELETE",
                version,
                &["force"],
                &[200, 400, 401, 403, 404],
                delete_version,
            ),
        ]
    }

    /// Starts a double with one admin token and one read-only token.
    pub fn start(admin: &str, reader: &str) -> ArtifactRegistry {
        let state = Arc::new(Mutex::new(State {
            tokens: BTreeMap::from([(admin.to_owned(), true), (reader.to_owned(), false)]),
            max_page: 1000,
            ..State::default()
        }));
        ArtifactRegistry {
            server: ApiServer::start(ArtifactRegistry::routes(Arc::clone(&state))),
            state,
        }
    }

    /// Adds `count` tags `{prefix}{i}` to a package, tag `i` on `digest(i / per_digest)`, dated in order.
    pub fn seed(
        &self,
        key: (&str, &str, &str, &str),
        prefix: &str,
        count: usize,
        per_digest: usize,
    ) {
        let mut state = self.state.lock().expect("state");
        let package = state
            .packages
            .entry((key.0.into(), key.1.into(), key.2.into(), key.3.into()))
            .or_default();
        for i in 0..count {
            let digest = super::digest(i / per_digest.max(1));
            let created = format!("2026-02-01T00:{:02}:{:02}.123456Z", i / 60 % 60, i % 60);
            package.versions.entry(digest.clone()).or_insert(created);
            package.tags.insert(format!("{prefix}{i}"), digest);
        }
    }

    /// Adds a version to a package (untagged unless [`ArtifactRegistry::tag`] names it), created at `created`,
    /// with `media_type` as its metadata.
    pub fn version(
        &self,
        key: (&str, &str, &str, &str),
        digest: &str,
        created: &str,
        media_type: &str,
    ) {
        let mut state = self.state.lock().expect("state");
        let package = state
            .packages
            .entry((key.0.into(), key.1.into(), key.2.into(), key.3.into()))
            .or_default();
        package
            .versions
            .insert(digest.to_owned(), created.to_owned());
        package
            .media_types
            .insert(digest.to_owned(), media_type.to_owned());
    }

    /// Points `tag` of a package at `digest`.
    pub fn tag(&self, key: (&str, &str, &str, &str), tag: &str, digest: &str) {
        let mut state = self.state.lock().expect("state");
        state
            .packages
            .entry((key.0.into(), key.1.into(), key.2.into(), key.3.into()))
            .or_default()
            .tags
            .insert(tag.to_owned(), digest.to_owned());
    }

    /// The versions (digests) of a package now, tagged or not.
    pub fn versions(&self, key: (&str, &str, &str, &str)) -> BTreeSet<String> {
        self.state
            .lock()
            .expect("state")
            .packages
            .get(&(key.0.into(), key.1.into(), key.2.into(), key.3.into()))
            .map(|p| p.versions.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The tags of a package now.
    pub fn tags(&self, key: (&str, &str, &str, &str)) -> BTreeMap<String, String> {
        self.state
            .lock()
            .expect("state")
            .packages
            .get(&(key.0.into(), key.1.into(), key.2.into(), key.3.into()))
            .map(|p| p.tags.clone())
            .unwrap_or_default()
    }
}
