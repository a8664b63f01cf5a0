//! A stateful Azure Container Registry data plane, written from the registry's Swagger description
//! (`specs/azure-acr/containerregistry.2021-07-01.extract.json`) and ACR's OAuth docs (`acr-docs-AAD-OAuth.md`,
//! `acr-docs-Token-BasicAuth.md`): the Entra token exchange, access tokens (refresh-token grant and Basic),
//! tag and manifest listing, tag deletion (the manifest stays, untagged), and manifest deletion by digest.
//!
//! Form fields are the documented snake_case names (the TypeSpec-generated description spells them
//! camelCase, which the service does not accept). Every data-plane call without a bearer token is answered
//! 401 with the challenge naming the scope it needs; a token whose identity lacks the role is answered 403.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use base64::Engine;
use serde_json::json;

use super::entra::{ACR_RESOURCE, claims, form, jwt, now};
use crate::apiserver::{ApiServer, Declared, Reply, Request, Route};
use crate::specs::OpenApi;

/// The description the routes follow.
pub const SPEC: &str = "azure-acr/containerregistry.2021-07-01.extract.json";
/// The description of the v2 manifest reads, which ACR's leaves out.
pub const OCI_SPEC: &str = "oci-distribution/spec.v1.1.1.md";

/// One tag.
#[derive(Debug, Clone)]
pub struct Tag {
    /// The manifest digest.
    pub digest: String,
    /// `createdTime` (RFC 3339).
    pub created: String,
    /// `lastUpdateTime` (RFC 3339).
    pub updated: String,
    /// `changeableAttributes.deleteEnabled == false`.
    pub locked: bool,
}

/// One manifest, tagged or not.
#[derive(Debug, Clone, Default)]
pub struct Manifest {
    /// `createdTime` (RFC 3339).
    pub created: String,
    /// `lastUpdateTime` (RFC 3339).
    pub updated: String,
    /// `references`: the children of a manifest list.
    pub references: Vec<String>,
    /// `changeableAttributes.deleteEnabled == false`.
    pub locked: bool,
    /// The manifest document `GET /v2/<name>/manifests/<digest>` serves; one seeded by digest alone has
    /// none and is answered 404 there (a made-up digest has no document that hashes to it).
    pub body: Option<String>,
}

/// What the registry double knows.
#[derive(Debug, Default)]
pub struct State {
    /// The `service` name tokens are issued for (the registry host).
    pub service: String,
    /// The tenant whose Entra tokens the exchange accepts.
    pub tenant: String,
    /// Repository → tag → tag.
    pub repositories: BTreeMap<String, BTreeMap<String, Tag>>,
    /// Repository → digest → manifest. A tag's manifest missing here exists with the tag's dates.
    pub manifests: BTreeMap<String, BTreeMap<String, Manifest>>,
    /// Entra application id → ACR roles (`AcrPull`, `AcrPush`, `AcrDelete`); unknown apps get `AcrPull`.
    pub roles: BTreeMap<String, BTreeSet<String>>,
    /// Basic users (admin user / repository-scoped tokens): name → (password, roles).
    pub users: BTreeMap<String, (String, BTreeSet<String>)>,
    /// Lifetime of issued refresh tokens, seconds.
    pub refresh_lifetime: i64,
    /// Tag listings still to answer 429 (`Retry-After: 1`) before serving.
    pub throttle: usize,
    /// Tag and manifest listings link every page to the page after the first one, as a server in a loop
    /// does.
    pub paginate_forever: bool,
    /// Listings name the next page in the body's `link` (Link-header syntax) instead of a `Link` header.
    pub body_link: bool,
    /// Issued access tokens → roles of their identity.
    access: BTreeMap<String, BTreeSet<String>>,
    issued: u64,
}

/// A running ACR double.
pub struct Acr {
    /// The server.
    pub server: ApiServer,
    /// Its state.
    pub state: Arc<Mutex<State>>,
}

fn acr_error(status: u16, code: &str, message: &str) -> Reply {
    Reply::json(
        status,
        &json!({"errors":[{"code": code, "message": message}]}),
    )
}

/// The 400 for a call without the `api-version` the description requires (links never carry it).
fn without_api_version(request: &Request) -> Option<Reply> {
    request.query("api-version").is_none().then(|| {
        acr_error(
            400,
            "UNSUPPORTED",
            "the api-version query parameter is required",
        )
    })
}

/// A listing page: `body`, and the link to `next` as `Link` header or, with `body_link`, in the body.
fn page_reply(state: &State, mut body: serde_json::Value, next: Option<String>) -> Reply {
    let Some(next) = next else {
        return Reply::json(200, &body);
    };
    let link = format!("<{next}>; rel=\"next\"");
    if state.body_link {
        body["link"] = json!(link);
        Reply::json(200, &body)
    } else {
        Reply::json(200, &body).with_header("Link", link)
    }
}

/// The state of a v2 read of `request`'s repository `name`, or the reply refusing it.
fn pulled<'r>(
    state: &'r Mutex<State>,
    host: &Mutex<String>,
    request: &'r Request,
) -> Result<(std::sync::MutexGuard<'r, State>, &'r str), Reply> {
    let state = state.lock().expect("state");
    let host = host.lock().expect("host").clone();
    let name = request.param("name");
    match state.authorize(request, &host, name, "pull") {
        Some(denied) => Err(denied),
        None => Ok((state, name)),
    }
}

fn allows(roles: &BTreeSet<String>, action: &str) -> bool {
    let granted: &[&str] = match action {
        "delete" => &["AcrDelete"],
        _ => &["AcrPull", "AcrPush"],
    };
    granted.iter().any(|role| roles.contains(*role))
}

impl State {
    fn issue_access(&mut self, roles: BTreeSet<String>) -> serde_json::Value {
        self.issued += 1;
        let token = format!("acr-access-{}", self.issued);
        self.access.insert(token.clone(), roles);
        json!({ "access_token": token })
    }

    /// `None` when the request may go on, else the 401/403 answer.
    fn authorize(&self, request: &Request, host: &str, name: &str, action: &str) -> Option<Reply> {
        let Some(roles) = request.bearer().and_then(|token| self.access.get(token)) else {
            return Some(
                acr_error(401, "UNAUTHORIZED", "authentication required").with_header(
                    "WWW-Authenticate",
                    format!(
                        "Bearer realm=\"http://{host}/oauth2/token\",service=\"{}\",scope=\"repository:{name}:{action}\"",
                        self.service
                    ),
                ),
            );
        };
        (!allows(roles, action)).then(|| {
            acr_error(
                403,
                "DENIED",
                &format!("requested access to the resource is denied ({action} on {name})"),
            )
        })
    }
}

impl State {
    /// Every manifest of `repository`, with the tags on it: those recorded, and those only a tag names.
    fn manifest_rows(&self, repository: &str) -> BTreeMap<String, (Manifest, Vec<String>)> {
        let mut rows: BTreeMap<String, (Manifest, Vec<String>)> = self
            .manifests
            .get(repository)
            .into_iter()
            .flatten()
            .map(|(digest, manifest)| (digest.clone(), (manifest.clone(), Vec::new())))
            .collect();
        for (name, tag) in self.repositories.get(repository).into_iter().flatten() {
            rows.entry(tag.digest.clone())
                .or_insert_with(|| {
                    let manifest = Manifest {
                        created: tag.created.clone(),
                        updated: tag.updated.clone(),
                        references: Vec::new(),
                        locked: false,
                        body: None,
                    };
                    (manifest, Vec::new())
                })
                .1
                .push(name.clone());
        }
        rows
    }
}

impl Acr {
    /// The route table over `state`; `host` is the server's own `127.0.0.1:PORT` (for realms and links).
    pub fn routes(state: Arc<Mutex<State>>, host: Arc<Mutex<String>>) -> Vec<Route> {
        let exchange = {
            let state = Arc::clone(&state);
            move |request: &Request| {
                let mut state = state.lock().expect("state");
                let form = form(request);
                let entra = form
                    .get("access_token")
                    .and_then(|token| claims(token))
                    .unwrap_or_default();
                let valid = form.get("grant_type").map(String::as_str) == Some("access_token")
                    && form.get("service") == Some(&state.service)
                    && form.get("tenant") == Some(&state.tenant)
                    && entra["aud"] == ACR_RESOURCE
                    && entra["tid"] == state.tenant.as_str()
                    && entra["exp"].as_i64().is_some_and(|exp| exp > now());
                if !valid {
                    // Not described (the description lists 200 only): recorded as a violation.
                    return acr_error(401, "UNAUTHORIZED", "invalid Entra ID token");
                }
                state.issued += 1;
                let refresh = jwt(&json!({
                    "sub": entra["appid"], "tenant": state.tenant, "grant_type": "refresh_token",
                    "exp": now() + state.refresh_lifetime, "jti": state.issued,
                }));
                Reply::json(200, &json!({ "refresh_token": refresh }))
            }
        };
        let token_post = {
            let state = Arc::clone(&state);
            move |request: &Request| {
                let mut state = state.lock().expect("state");
                let form = form(request);
                let refresh = form
                    .get("refresh_token")
                    .and_then(|token| claims(token))
                    .unwrap_or_default();
                let valid = form.get("grant_type").map(String::as_str) == Some("refresh_token")
                    && form.get("service") == Some(&state.service)
                    && form.contains_key("scope")
                    && refresh["exp"].as_i64().is_some_and(|exp| exp > now());
                if !valid {
                    return acr_error(401, "UNAUTHORIZED", "invalid refresh token");
                }
                let app = refresh["sub"].as_str().unwrap_or_default();
                let roles = state
                    .roles
                    .get(app)
                    .cloned()
                    .unwrap_or_else(|| BTreeSet::from(["AcrPull".to_owned()]));
                Reply::json(200, &state.issue_access(roles))
            }
        };
        let token_get = {
            let state = Arc::clone(&state);
            move |request: &Request| {
                let mut state = state.lock().expect("state");
                if let Some(refused) = without_api_version(request) {
                    return refused;
                }
                let basic = request
                    .header("authorization")
                    .and_then(|h| h.strip_prefix("Basic "))
                    .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default();
                let (user, password) = basic.split_once(':').unwrap_or(("", ""));
                let roles = match state.users.get(user) {
                    Some((expected, roles)) if expected == password => roles.clone(),
                    _ => return acr_error(401, "UNAUTHORIZED", "authentication required"),
                };
                if request.query("service") != Some(state.service.as_str()) {
                    return acr_error(401, "UNAUTHORIZED", "unknown service");
                }
                Reply::json(200, &state.issue_access(roles))
            }
        };
        let list = {
            let (state, host) = (Arc::clone(&state), Arc::clone(&host));
            move |request: &Request| {
                let mut state = state.lock().expect("state");
                if state.throttle > 0 {
                    state.throttle -= 1;
                    return acr_error(429, "TOOMANYREQUESTS", "too many requests")
                        .with_header("Retry-After", "1");
                }
                if let Some(refused) = without_api_version(request) {
                    return refused;
                }
                let host = host.lock().expect("host").clone();
                let name = request.param("name");
                if let Some(denied) = state.authorize(request, &host, name, "metadata_read") {
                    return denied;
                }
                let Some(tags) = state.repositories.get(name) else {
                    return acr_error(404, "NAME_UNKNOWN", "repository name not known to registry");
                };
                let orderby = request.query("orderby").unwrap_or("");
                let mut rows: Vec<(&String, &Tag)> = tags.iter().collect();
                if orderby == "timedesc" {
                    rows.sort_by(|a, b| b.1.updated.cmp(&a.1.updated).then(a.0.cmp(b.0)));
                }
                let start = match request.query("last") {
                    Some(last) => rows
                        .iter()
                        .position(|(tag, _)| *tag == last)
                        .map_or(0, |i| i + 1),
                    None => 0,
                };
                let n: usize = request
                    .query("n")
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(100);
                let page: Vec<_> = rows.iter().skip(start).take(n).collect();
                let body = json!({
                    "registry": state.service,
                    "imageName": name,
                    "tags": page.iter().map(|(tag, row)| json!({
                        "name": tag, "digest": row.digest, "createdTime": row.created,
                        "lastUpdateTime": row.updated, "signed": false,
                        "changeableAttributes": {"deleteEnabled": !row.locked, "writeEnabled": true,
                                                 "readEnabled": true, "listEnabled": true},
                    })).collect::<Vec<_>>(),
                });
                let end = if state.paginate_forever {
                    rows.iter().take(n).next_back()
                } else {
                    page.last().copied().filter(|_| start + n < rows.len())
                };
                let next = end.map(|(last, _)| {
                    format!("{}?last={last}&n={n}&orderby={orderby}", request.path)
                });
                page_reply(&state, body, next)
            }
        };
        let delete_tag = {
            let (state, host) = (Arc::clone(&state), Arc::clone(&host));
            move |request: &Request| {
                let mut state = state.lock().expect("state");
                let host = host.lock().expect("host").clone();
                let name = request.param("name").to_owned();
                if let Some(denied) = state.authorize(request, &host, &name, "delete") {
                    return denied;
                }
                let reference = request.param("reference").to_owned();
                let Some(tags) = state.repositories.get_mut(&name) else {
                    return acr_error(404, "NAME_UNKNOWN", "repository name not known to registry");
                };
                match tags.get(&reference) {
                    None => acr_error(404, "TAG_UNKNOWN", "the specified tag does not exist"),
                    Some(tag) if tag.locked => acr_error(
                        405,
                        "UNSUPPORTED",
                        "The operation is disallowed on this registry, repository or image.",
                    ),
                    Some(_) => {
                        // The manifest stays, untagged once its last tag is gone.
                        let Some(tag) = tags.remove(&reference) else {
                            return Reply::empty(202);
                        };
                        state
                            .manifests
                            .entry(name)
                            .or_default()
                            .entry(tag.digest)
                            .or_insert(Manifest {
                                created: tag.created,
                                updated: tag.updated,
                                references: Vec::new(),
                                locked: false,
                                body: None,
                            });
                        Reply::empty(202)
                    }
                }
            }
        };
        let delete_manifest = {
            let (state, host) = (Arc::clone(&state), Arc::clone(&host));
            move |request: &Request| {
                let mut state = state.lock().expect("state");
                let host = host.lock().expect("host").clone();
                let name = request.param("name").to_owned();
                if let Some(denied) = state.authorize(request, &host, &name, "delete") {
                    return denied;
                }
                let digest = request.param("reference").to_owned();
                match state.manifest_rows(&name).get(&digest) {
                    None => return acr_error(404, "MANIFEST_UNKNOWN", "manifest unknown"),
                    Some((manifest, _)) if manifest.locked => {
                        return acr_error(
                            405,
                            "UNSUPPORTED",
                            "The operation is disallowed on this registry, repository or image.",
                        );
                    }
                    Some(_) => {}
                }
                if let Some(tags) = state.repositories.get_mut(&name) {
                    tags.retain(|_, tag| tag.digest != digest);
                }
                if let Some(manifests) = state.manifests.get_mut(&name) {
                    manifests.remove(&digest);
                }
                Reply::empty(202)
            }
        };
        let list_manifests = {
            let (state, host) = (Arc::clone(&state), Arc::clone(&host));
            move |request: &Request| {
                let state = state.lock().expect("state");
                if let Some(refused) = without_api_version(request) {
                    return refused;
                }
                let host = host.lock().expect("host").clone();
                let name = request.param("name");
                if let Some(denied) = state.authorize(request, &host, name, "metadata_read") {
                    return denied;
                }
                if !state.repositories.contains_key(name) && !state.manifests.contains_key(name) {
                    return acr_error(404, "NAME_UNKNOWN", "repository name not known to registry");
                }
                let orderby = request.query("orderby").unwrap_or("");
                let mut rows: Vec<(String, (Manifest, Vec<String>))> =
                    state.manifest_rows(name).into_iter().collect();
                match orderby {
                    "timedesc" => rows.sort_by(|a, b| b.1.0.updated.cmp(&a.1.0.updated)),
                    "timeasc" => rows.sort_by(|a, b| a.1.0.updated.cmp(&b.1.0.updated)),
                    _ => {}
                }
                let start = match request.query("last") {
                    Some(last) => rows
                        .iter()
                        .position(|(digest, _)| digest == last)
                        .map_or(0, |i| i + 1),
                    None => 0,
                };
                let n: usize = request
                    .query("n")
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(100);
                let page: Vec<_> = rows.iter().skip(start).take(n).collect();
                let body = json!({
                    "registry": state.service,
                    "imageName": name,
                    "manifests": page.iter().map(|(digest, (manifest, tags))| json!({
                        "digest": digest, "imageSize": 1024, "createdTime": manifest.created,
                        "lastUpdateTime": manifest.updated, "tags": tags,
                        "references": manifest.references.iter()
                            .map(|child| json!({"digest": child})).collect::<Vec<_>>(),
                        "changeableAttributes": {"deleteEnabled": !manifest.locked,
                                                 "writeEnabled": true, "readEnabled": true,
                                                 "listEnabled": true},
                    })).collect::<Vec<_>>(),
                });
                let end = if state.paginate_forever {
                    rows.iter().take(n).next_back()
                } else {
                    page.last().copied().filter(|_| start + n < rows.len())
                };
                let next = end.map(|(last, _)| {
                    format!("{}?last={last}&n={n}&orderby={orderby}", request.path)
                });
                page_reply(&state, body, next)
            }
        };
        // The OCI distribution spec's manifest read (end-3), which ACR serves as any registry does.
        let get_manifest = {
            let (state, host) = (Arc::clone(&state), Arc::clone(&host));
            move |request: &Request| {
                let (state, name) = match pulled(&state, &host, request) {
                    Ok(pulled) => pulled,
                    Err(denied) => return denied,
                };
                let reference = request.param("reference");
                let digest = state
                    .repositories
                    .get(name)
                    .and_then(|tags| tags.get(reference))
                    .map_or(reference, |tag| tag.digest.as_str());
                let body = state
                    .manifests
                    .get(name)
                    .and_then(|manifests| manifests.get(digest))
                    .and_then(|manifest| manifest.body.clone());
                let Some(body) = body else {
                    return acr_error(404, "MANIFEST_UNKNOWN", "manifest unknown");
                };
                let media_type = serde_json::from_str::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|document| document["mediaType"].as_str().map(str::to_owned))
                    .unwrap_or_else(|| "application/vnd.oci.image.manifest.v1+json".into());
                Reply {
                    status: 200,
                    headers: vec![
                        ("Content-Type".into(), media_type),
                        ("Docker-Content-Digest".into(), digest.to_owned()),
                    ],
                    body: body.into_bytes(),
                }
            }
        };
        // The OCI 1.1 referrers API (end-12a), which ACR serves: the manifests whose `subject` names the
        // digest, as an image index; an unknown digest has an empty one (never 404, per the spec).
        let referrers = {
            let (state, host) = (Arc::clone(&state), Arc::clone(&host));
            move |request: &Request| {
                let (state, name) = match pulled(&state, &host, request) {
                    Ok(pulled) => pulled,
                    Err(denied) => return denied,
                };
                let digest = request.param("digest");
                let listed: Vec<serde_json::Value> = state
                    .manifests
                    .get(name)
                    .into_iter()
                    .flatten()
                    .filter_map(|(referrer, manifest)| {
                        let body = manifest.body.as_deref()?;
                        let document: serde_json::Value = serde_json::from_str(body).ok()?;
                        (document["subject"]["digest"].as_str() == Some(digest)).then(|| {
                            let artifact_type = document["artifactType"]
                                .as_str()
                                .or(document["config"]["mediaType"].as_str())
                                .unwrap_or_default()
                                .to_owned();
                            json!({
                                "mediaType": document["mediaType"],
                                "digest": referrer,
                                "size": body.len(),
                                "artifactType": artifact_type,
                            })
                        })
                    })
                    .collect();
                let index = json!({
                    "schemaVersion": 2,
                    "mediaType": "application/vnd.oci.image.index.v1+json",
                    "manifests": listed,
                });
                Reply {
                    status: 200,
                    headers: vec![(
                        "Content-Type".into(),
                        "application/vnd.oci.image.index.v1+json".into(),
                    )],
                    body: index.to_string().into_bytes(),
                }
            }
        };
        vec![
            Route::new(
                "GET",
                "/v2/{name}/referrers/{digest}",
                &[],
                &[200, 400, 401, 403],
                referrers,
            ),
            Route::new(
                "GET",
                "/v2/{name}/manifests/{reference}",
                &[],
                &[200, 401, 403, 404],
                get_manifest.clone(),
            ),
            Route::new(
                "HEAD",
                "/v2/{name}/manifests/{reference}",
                &[],
                &[200, 401, 403, 404],
                get_manifest,
            ),
            Route::new("POST", "/oauth2/exchange", &[], &[200], exchange),
            Route::new("POST", "/oauth2/token", &[], &[200], token_post),
            Route::new(
                "GET",
                "/oauth2/token",
                &["service", "scope", "api-version"],
                &[200, 400, 401],
                token_get,
            ),
            Route::new(
                "GET",
                "/acr/v1/{name}/_tags",
                &["api-version", "n", "last", "orderby"],
                &[200, 400, 401, 403, 404, 429],
                list,
            ),
            Route::new(
                "GET",
                "/acr/v1/{name}/_manifests",
                &["api-version", "n", "last", "orderby"],
                &[200, 400, 401, 403, 404],
                list_manifests,
            ),
            Route::new(
                "DELETE",
                "/acr/v1/{name}/_tags/{reference}",
                &["api-version"],
                &[202, 401, 403, 404, 405],
                delete_tag,
            ),
            Route::new(
                "DELETE",
                "/v2/{name}/manifests/{reference}",
                &["api-version"],
                &[202, 401, 403, 404, 405],
                delete_manifest,
            ),
        ]
    }

    /// Starts a registry double accepting Entra tokens of `tenant`; `service` defaults to its own host.
    pub fn start(tenant: &str) -> Acr {
        let state = Arc::new(Mutex::new(State {
            tenant: tenant.to_owned(),
            refresh_lifetime: 3 * 3600,
            ..State::default()
        }));
        let host = Arc::new(Mutex::new(String::new()));
        let server = ApiServer::start(Acr::routes(Arc::clone(&state), Arc::clone(&host)));
        *host.lock().expect("host") = server.host().to_owned();
        state.lock().expect("state").service = server.host().to_owned();
        Acr { server, state }
    }

    /// Adds `count` tags `{prefix}{i}` to `repository`, tag `i` on digest `digest(i / per_digest)`, with
    /// increasing dates.
    pub fn seed(&self, repository: &str, prefix: &str, count: usize, per_digest: usize) {
        let mut state = self.state.lock().expect("state");
        let tags = state.repositories.entry(repository.to_owned()).or_default();
        for i in 0..count {
            let date = format!("2026-01-01T00:{:02}:{:02}.0000000Z", i / 60 % 60, i % 60);
            tags.insert(
                format!("{prefix}{i}"),
                Tag {
                    digest: super::digest(i / per_digest.max(1)),
                    created: date.clone(),
                    updated: date,
                    locked: false,
                },
            );
        }
    }

    /// Adds an untagged manifest to `repository`, created at `created`, with `references` as children.
    pub fn manifest(&self, repository: &str, digest: &str, created: &str, references: &[&str]) {
        self.state
            .lock()
            .expect("state")
            .manifests
            .entry(repository.to_owned())
            .or_default()
            .insert(
                digest.to_owned(),
                Manifest {
                    created: created.to_owned(),
                    updated: created.to_owned(),
                    references: references.iter().map(|r| (*r).to_owned()).collect(),
                    locked: false,
                    body: None,
                },
            );
    }

    /// Adds the untagged manifest `body` to `repository`, created at `created`; returns its digest.
    pub fn manifest_document(&self, repository: &str, body: &str, created: &str) -> String {
        let digest = crate::images::sha256_digest(body.as_bytes());
        self.manifest(repository, &digest, created, &[]);
        let mut state = self.state.lock().expect("state");
        let manifests = state.manifests.entry(repository.to_owned()).or_default();
        if let Some(manifest) = manifests.get_mut(&digest) {
            manifest.body = Some(body.to_owned());
        }
        digest
    }

    /// Panics unless every route follows its published description: ACR's own (the `/acr/v1` and
    /// `/oauth2` calls, the manifest delete) or, for the v2 manifest reads and the referrers API that
    /// ACR's leaves out, the OCI distribution spec's endpoint table.
    pub fn assert_follows_descriptions(&self) {
        let (oci, own): (Vec<Declared>, Vec<Declared>) = self
            .server
            .declared()
            .into_iter()
            .partition(|route| route.template.starts_with("/v2/") && route.method != "DELETE");
        OpenApi::load(SPEC).assert_covers(&own);
        OpenApi::load_oci_endpoints(OCI_SPEC).assert_covers(&oci);
    }

    /// The manifest digests of `repository` now, tagged or not.
    pub fn manifests(&self, repository: &str) -> BTreeSet<String> {
        self.state
            .lock()
            .expect("state")
            .manifest_rows(repository)
            .into_keys()
            .collect()
    }

    /// The tags of `repository` now.
    pub fn tags(&self, repository: &str) -> BTreeSet<String> {
        self.state
            .lock()
            .expect("state")
            .repositories
            .get(repository)
            .map(|tags| tags.keys().cloned().collect())
            .unwrap_or_default()
    }
}
