//! A stateful JFrog Artifactory double for one Docker repository key. JFrog publishes its REST API as HTML
//! only, so each route names the jfrog.com/help page it follows (`research/registry-apis.md` §9);
//! [`DOCUMENTED`] is the table the routes are checked against.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::json;

use super::Forever;
use crate::apiserver::{ApiServer, Reply, Request, Route};

/// The documented operations: (method, path, reference).
pub const DOCUMENTED: &[(&str, &str, &str)] = &[
    (
        "GET",
        "/artifactory/api/docker/{repo}/v2/{ns}/{image}/tags/list",
        "JFrog REST APIs, List Docker Tags (n, last)",
    ),
    (
        "GET",
        "/artifactory/api/storage/{repo}/{ns}/{image}/{tag}",
        "JFrog REST APIs, Folder Info (created, children)",
    ),
    (
        "GET",
        "/artifactory/api/storage/{repo}/{ns}/{image}/{tag}/{file}",
        "JFrog REST APIs, File Info (checksums.sha256)",
    ),
    (
        "DELETE",
        "/artifactory/{repo}/{ns}/{image}/{tag}",
        "JFrog REST APIs, Delete Item (204)",
    ),
];

/// A running Artifactory double: `key`, image `ns/image`, tags → created date.
pub struct Artifactory {
    /// The server.
    pub server: ApiServer,
    /// Once on, every page links to the page after the first one.
    pub paginate_forever: Forever,
    tags: Arc<Mutex<BTreeMap<String, String>>>,
    /// Tags whose manifest is a given one (`sha256:…`) rather than one derived from the tag name.
    digests: Arc<Mutex<BTreeMap<String, String>>>,
}

impl Artifactory {
    /// Starts Artifactory serving repository `key` to `token` only.
    pub fn start(key: &str, token: &str) -> Artifactory {
        let tags: Arc<Mutex<BTreeMap<String, String>>> = Arc::default();
        let digests: Arc<Mutex<BTreeMap<String, String>>> = Arc::default();
        let forever = Forever::default();
        let (key, token) = (key.to_string(), token.to_string());
        let check = move |r: &Request| -> Option<Reply> {
            if r.bearer() != Some(token.as_str()) {
                return Some(Reply::json(
                    401,
                    &json!({"errors":[{"status":401,"message":"Bad credentials"}]}),
                ));
            }
            (r.param("repo") != key).then(|| Reply::json(404, &json!({"errors":[{"status":404}]})))
        };
        let list = {
            let (tags, check, forever) = (Arc::clone(&tags), check.clone(), forever.clone());
            move |r: &Request| {
                if let Some(reply) = check(r) {
                    return reply;
                }
                let n: usize = r
                    .query("n")
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(usize::MAX)
                    .min(50);
                let last = r.query("last").unwrap_or("");
                let tags = tags.lock().expect("tags");
                let page: Vec<&String> =
                    tags.keys().filter(|t| t.as_str() > last).take(n).collect();
                let more = tags.keys().filter(|t| t.as_str() > last).count() > n;
                let (more, end) = if forever.is_on() {
                    (true, tags.keys().take(n).next_back())
                } else {
                    (more, page.last().copied())
                };
                let mut reply = Reply::json(
                    200,
                    &json!({"name": format!("{}/{}", r.param("ns"), r.param("image")), "tags": page}),
                );
                if let (true, Some(end)) = (more, end) {
                    reply = reply.with_header(
                        "Link",
                        format!("</artifactory/api/docker/{}/v2/{}/{}/tags/list?n={n}&last={end}>; rel=\"next\"", r.param("repo"), r.param("ns"), r.param("image")),
                    );
                }
                reply
            }
        };
        let info = {
            let (tags, check) = (Arc::clone(&tags), check.clone());
            move |r: &Request| {
                if let Some(reply) = check(r) {
                    return reply;
                }
                match tags.lock().expect("tags").get(r.param("tag")) {
                    Some(created) => Reply::json(
                        200,
                        &json!({"repo": r.param("repo"), "created": created,
                        "children": [{"uri": "/manifest.json", "folder": false}]}),
                    ),
                    None => Reply::json(404, &json!({"errors":[{"status":404}]})),
                }
            }
        };
        // A tag folder's manifest.json: its sha256 is the image's manifest digest. Unless pushed with one,
        // each tag's manifest is distinct here (derived from the tag name), so siblings never share one.
        let file = {
            let (tags, digests, check) = (Arc::clone(&tags), Arc::clone(&digests), check.clone());
            move |r: &Request| {
                if let Some(reply) = check(r) {
                    return reply;
                }
                let known = tags.lock().expect("tags").contains_key(r.param("tag"));
                if !known || r.param("file") != "manifest.json" {
                    return Reply::json(404, &json!({"errors":[{"status":404}]}));
                }
                let sha256 = (digests
                    .lock()
                    .expect("digests")
                    .get(r.param("tag"))
                    .cloned())
                .unwrap_or_else(|| crate::images::sha256_digest(r.param("tag").as_bytes()));
                Reply::json(
                    200,
                    &json!({"repo": r.param("repo"), "path": r.path,
                    "checksums": {"sha256": sha256.trim_start_matches("sha256:")}}),
                )
            }
        };
        let delete = {
            let tags = Arc::clone(&tags);
            move |r: &Request| {
                if let Some(reply) = check(r) {
                    return reply;
                }
                match tags.lock().expect("tags").remove(r.param("tag")) {
                    Some(_) => Reply::empty(204),
                    None => Reply::json(404, &json!({"errors":[{"status":404}]})),
                }
            }
        };
        let routes = vec![
            // JFrog REST APIs: List Docker Tags
            Route::new(
                "GET",
                "/artifactory/api/docker/{repo}/v2/{ns}/{image}/tags/list",
                &["n", "last"],
                &[200, 401, 404],
                list,
            ),
            // JFrog REST APIs: Folder Info
            Route::new(
                "GET",
                "/artifactory/api/storage/{repo}/{ns}/{image}/{tag}",
                &[],
                &[200, 401, 404],
                info,
            ),
            // JFrog REST APIs: File Info
            Route::new(
                "GET",
                "/artifactory/api/storage/{repo}/{ns}/{image}/{tag}/{file}",
                &[],
                &[200, 401, 404],
                file,
            ),
            // JFrog REST APIs: Delete Item
            Route::new(
                "DELETE",
                "/artifactory/{repo}/{ns}/{image}/{tag}",
                &[],
                &[204, 401, 404],
                delete,
            ),
        ];
        Artifactory {
            server: ApiServer::start(routes),
            paginate_forever: forever,
            tags,
            digests,
        }
    }

    /// Adds a tag folder created at `created`.
    pub fn push(&self, tag: &str, created: &str) {
        self.tags
            .lock()
            .expect("tags")
            .insert(tag.into(), created.into());
    }

    /// Adds a tag folder created at `created` whose manifest is `digest` (`sha256:…`).
    pub fn push_manifest(&self, tag: &str, created: &str, digest: &str) {
        self.push(tag, created);
        self.digests
            .lock()
            .expect("digests")
            .insert(tag.into(), digest.into());
    }

    /// Every tag → created.
    pub fn tags(&self) -> BTreeMap<String, String> {
        self.tags.lock().expect("tags").clone()
    }
}
