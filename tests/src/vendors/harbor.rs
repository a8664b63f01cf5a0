//! A stateful Harbor v2 API, written from Harbor's swagger (`specs/harbor/swagger.v2.15.2.yaml`, basePath
//! `/api/v2.0`): `getSystemInfo`, `listArtifacts` (with each artifact's `accessories`: the manifests whose
//! OCI 1.1 `subject` it is), `deleteTag` and `deleteArtifact`, with Basic auth.
//!
//! Repository names arrive encoded twice, as Harbor requires: the route's parameter (decoded once by the
//! server) must still hold `%2F` for a `/`, or the repository is unknown, as it would be on Harbor.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use base64::Engine;
use serde_json::json;

use super::Forever;
use crate::apiserver::{ApiServer, Reply, Request, Route, percent_decode};

/// The swagger file the routes follow.
pub const SPEC: &str = "harbor/swagger.v2.15.2.yaml";

/// One artifact.
#[derive(Debug, Clone)]
pub struct Artifact {
    /// Its digest.
    pub digest: String,
    /// `push_time`.
    pub push_time: String,
    /// `pull_time` of the artifact and its tags; `None` is never pulled, which Harbor reports as Go's
    /// zero time.
    pub pull_time: Option<String>,
    /// Tags → immutable.
    pub tags: BTreeMap<String, bool>,
    /// Digests of the manifests this index references.
    pub references: Vec<String>,
    /// The digest its OCI 1.1 `subject` names: Harbor records it as an accessory of that artifact, lists
    /// it under that artifact's `accessories` (`with_accessory=true`) and deletes it with that artifact.
    pub subject: Option<String>,
}

/// Repositories (`project/name`) → artifacts, in push order.
pub type State = BTreeMap<String, Vec<Artifact>>;

/// A running Harbor double.
pub struct Harbor {
    /// The server.
    pub server: ApiServer,
    /// Once on, every page number answers the first page and the total count says more follow.
    pub paginate_forever: Forever,
    state: Arc<Mutex<State>>,
}

const ARTIFACTS: &str =
    "/api/v2.0/projects/{project_name}/repositories/{repository_name}/artifacts";

impl Harbor {
    /// Starts a Harbor accepting only `user`:`password`.
    pub fn start(user: &str, password: &str) -> Harbor {
        let state: Arc<Mutex<State>> = Arc::default();
        let forever = Forever::default();
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        );
        let authorised =
            move |request: &Request| request.header("authorization") == Some(&expected);
        let unauthorised = || {
            Reply::json(
                401,
                &json!({"errors":[{"code":"UNAUTHORIZED","message":"unauthorized"}]}),
            )
        };
        let not_found = |what: &str| {
            Reply::json(
                404,
                &json!({"errors":[{"code":"NOT_FOUND","message":format!("{what} not found")}]}),
            )
        };
        let list = {
            let (state, authorised, forever) =
                (Arc::clone(&state), authorised.clone(), forever.clone());
            move |request: &Request| {
                if !authorised(request) {
                    return unauthorised();
                }
                let Some(key) = repository_key(request) else {
                    return not_found("repository");
                };
                let state = state.lock().expect("state");
                let Some(artifacts) = state.get(&key) else {
                    return not_found("repository");
                };
                let page: usize = request
                    .query("page")
                    .and_then(|p| p.parse().ok())
                    .filter(|_| !forever.is_on())
                    .unwrap_or(1);
                let size: usize = request
                    .query("page_size")
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(10)
                    .min(100);
                let total = if forever.is_on() {
                    usize::MAX
                } else {
                    artifacts.len()
                };
                let body: Vec<_> = artifacts
                    .iter()
                    .rev()
                    .skip((page - 1) * size)
                    .take(size)
                    .map(|artifact| artifact_json(artifact, artifacts, request))
                    .collect();
                Reply::json(200, &json!(body)).with_header("X-Total-Count", total.to_string())
            }
        };
        let delete_tag = {
            let (state, authorised) = (Arc::clone(&state), authorised.clone());
            move |request: &Request| {
                if !authorised(request) {
                    return unauthorised();
                }
                let Some(key) = repository_key(request) else {
                    return not_found("repository");
                };
                let mut state = state.lock().expect("state");
                let reference = request.param("reference");
                let tag = request.param("tag_name");
                let Some(artifact) = state.get_mut(&key).and_then(|artifacts| {
                    artifacts
                        .iter_mut()
                        .find(|a| a.digest == reference || a.tags.contains_key(reference))
                }) else {
                    return not_found("artifact");
                };
                match artifact.tags.get(tag) {
                    None => not_found("tag"),
                    // Harbor refuses immutable tags; 403 is the status the swagger gives deleteTag for it.
                    Some(true) => Reply::json(
                        403,
                        &json!({"errors":[{"code":"FORBIDDEN","message":"the tag is immutable"}]}),
                    ),
                    Some(false) => {
                        artifact.tags.remove(tag);
                        Reply::empty(200)
                    }
                }
            }
        };
        let delete_artifact = {
            let state = Arc::clone(&state);
            move |request: &Request| {
                if !authorised(request) {
                    return unauthorised();
                }
                let Some(key) = repository_key(request) else {
                    return not_found("repository");
                };
                let mut state = state.lock().expect("state");
                let Some(artifacts) = state.get_mut(&key) else {
                    return not_found("repository");
                };
                let reference = request.param("reference");
                let before = artifacts.len();
                // Its accessories go with it, and theirs with them.
                let mut gone = vec![reference.to_owned()];
                while let Some(digest) = gone.pop() {
                    let accessories = artifacts
                        .iter()
                        .filter(|a| a.subject.as_ref() == Some(&digest))
                        .map(|a| a.digest.clone());
                    gone.extend(accessories.collect::<Vec<_>>());
                    artifacts.retain(|a| a.digest != digest);
                }
                if artifacts.len() == before {
                    not_found("artifact")
                } else {
                    Reply::empty(200)
                }
            }
        };
        let routes = vec![
            Route::new("GET", "/api/v2.0/systeminfo", &[], &[200], |_| {
                Reply::json(
                    200,
                    &json!({"auth_mode":"db_auth","harbor_version":"v2.15.2"}),
                )
            }),
            Route::new(
                "GET",
                ARTIFACTS,
                &[
                    "with_tag",
                    "with_immutable_status",
                    "with_accessory",
                    "page",
                    "page_size",
                ],
                &[200, 401, 404],
                list,
            ),
            Route::new(
                "DELETE",
                "/api/v2.0/projects/{project_name}/repositories/{repository_name}/artifacts/{reference}/tags/{tag_name}",
                &[],
                &[200, 401, 403, 404],
                delete_tag,
            ),
            Route::new(
                "DELETE",
                "/api/v2.0/projects/{project_name}/repositories/{repository_name}/artifacts/{reference}",
                &[],
                &[200, 401, 404],
                delete_artifact,
            ),
        ];
        Harbor {
            server: ApiServer::start(routes),
            paginate_forever: forever,
            state,
        }
    }

    /// Adds an artifact to `repository` (`project/name…`) with these tags.
    pub fn push(&self, repository: &str, digest: &str, tags: &[&str], push_time: &str) {
        self.push_artifact(
            repository,
            Artifact {
                digest: digest.into(),
                push_time: push_time.into(),
                pull_time: None,
                tags: tags.iter().map(|t| (t.to_string(), false)).collect(),
                references: Vec::new(),
                subject: None,
            },
        );
    }

    /// Adds an artifact as given.
    pub fn push_artifact(&self, repository: &str, artifact: Artifact) {
        self.state
            .lock()
            .expect("state")
            .entry(repository.into())
            .or_default()
            .push(artifact);
    }

    /// Records a pull of the artifact `digest` of `repository` at `time`.
    pub fn pull(&self, repository: &str, digest: &str, time: &str) {
        let mut state = self.state.lock().expect("state");
        let artifacts = state.get_mut(repository).into_iter().flatten();
        for artifact in artifacts.filter(|a| a.digest == digest) {
            artifact.pull_time = Some(time.into());
        }
    }

    /// Every tag of `repository` → its digest.
    pub fn tags(&self, repository: &str) -> BTreeMap<String, String> {
        self.state
            .lock()
            .expect("state")
            .get(repository)
            .into_iter()
            .flatten()
            .flat_map(|a| a.tags.keys().map(|t| (t.clone(), a.digest.clone())))
            .collect()
    }

    /// Every artifact digest of `repository`.
    pub fn digests(&self, repository: &str) -> Vec<String> {
        self.state
            .lock()
            .expect("state")
            .get(repository)
            .into_iter()
            .flatten()
            .map(|a| a.digest.clone())
            .collect()
    }
}

/// `project/name` from the path parameters, when the name was encoded twice.
fn repository_key(request: &Request) -> Option<String> {
    let name = request.param("repository_name");
    if name.contains('/') {
        return None;
    }
    Some(format!(
        "{}/{}",
        request.param("project_name"),
        percent_decode(name)
    ))
}

/// Go's zero time, as Harbor serialises a `pull_time` never set.
const NEVER: &str = "0001-01-01T00:00:00.000Z";

/// `artifact` as `listArtifacts` shows it, among `all` of its repository (whose accessories it lists).
fn artifact_json(artifact: &Artifact, all: &[Artifact], request: &Request) -> serde_json::Value {
    let pull_time = artifact.pull_time.as_deref().unwrap_or(NEVER);
    let with_tag = request.query("with_tag") != Some("false");
    let immutable = request.query("with_immutable_status") == Some("true");
    let tags: Vec<_> = artifact
        .tags
        .iter()
        .map(|(name, locked)| {
            let mut tag =
                json!({"name": name, "push_time": artifact.push_time, "pull_time": pull_time});
            if immutable {
                tag["immutable"] = json!(locked);
            }
            tag
        })
        .collect();
    let references: Vec<_> = artifact
        .references
        .iter()
        .map(|child| json!({"parent_id": 1, "child_id": 2, "child_digest": child}))
        .collect();
    let mut body = json!({
        "digest": artifact.digest,
        "push_time": artifact.push_time,
        "pull_time": pull_time,
        "tags": if with_tag && !tags.is_empty() { json!(tags) } else { json!(null) },
        "references": if references.is_empty() { json!(null) } else { json!(references) },
    });
    if request.query("with_accessory") == Some("true") {
        let accessories: Vec<_> = all
            .iter()
            .filter(|other| other.subject.as_ref() == Some(&artifact.digest))
            .map(|accessory| {
                json!({
                    "id": 1, "artifact_id": 2, "subject_artifact_id": 3,
                    "subject_artifact_digest": artifact.digest, "subject_artifact_repo": "",
                    "size": 1, "digest": accessory.digest, "type": "subject.accessory",
                    "icon": "", "creation_time": accessory.push_time,
                })
            })
            .collect();
        body["accessories"] = json!(accessories);
    }
    body
}
