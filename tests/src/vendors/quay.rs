//! A stateful Quay API v1 double. Quay publishes no static description (its Swagger is generated at
//! `/api/v1/discovery`), so each route names the quay/quay source it follows (commit ffba0c70, see
//! `research/registry-apis.md` §7); [`DOCUMENTED`] is the table the routes are checked against.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::json;

use super::Forever;
use crate::apiserver::{ApiServer, Reply, Request, Route};

/// The documented operations: (method, path, reference). Quay's `{repository}` path parameter spans
/// `namespace/name`.
pub const DOCUMENTED: &[(&str, &str, &str)] = &[
    (
        "GET",
        "/api/v1/repository/{namespace}/{name}/tag/",
        "quay/quay endpoints/api/tag.py ListRepositoryTags (onlyActiveTags, limit<=100, page; has_additional)",
    ),
    (
        "DELETE",
        "/api/v1/repository/{namespace}/{name}/tag/{tag}",
        "quay/quay endpoints/api/tag.py RepositoryTag.delete (204; 404; 409 TagImmutable)",
    ),
];

/// One tag.
#[derive(Debug, Clone)]
pub struct Tag {
    /// `manifest_digest`.
    pub digest: String,
    /// `start_ts`.
    pub start_ts: i64,
    /// `end_ts`: when it expires (or expired).
    pub end_ts: Option<i64>,
    /// `immutable`.
    pub immutable: bool,
}

/// A running Quay double for one `namespace/name` repository.
pub struct Quay {
    /// The server.
    pub server: ApiServer,
    /// Once on, every page number answers the first page and says more follow.
    pub paginate_forever: Forever,
    tags: Arc<Mutex<BTreeMap<String, Tag>>>,
}

impl Quay {
    /// Starts a Quay serving `namespace/name` to `token` only.
    pub fn start(namespace: &str, name: &str, token: &str) -> Quay {
        let tags: Arc<Mutex<BTreeMap<String, Tag>>> = Arc::default();
        let forever = Forever::default();
        let repo = format!("{namespace}/{name}");
        let token = token.to_string();
        let check = move |request: &Request| -> Option<Reply> {
            if request.bearer() != Some(token.as_str()) {
                return Some(Reply::json(
                    401,
                    &json!({"status":401,"error_message":"Unauthorized","error_type":"invalid_token"}),
                ));
            }
            let asked = format!("{}/{}", request.param("namespace"), request.param("name"));
            (asked != repo).then(|| Reply::json(404, &json!({"status":404,"detail":"Not Found"})))
        };
        let list = {
            let (tags, check, forever) = (Arc::clone(&tags), check.clone(), forever.clone());
            move |request: &Request| {
                if let Some(reply) = check(request) {
                    return reply;
                }
                let page: usize = request
                    .query("page")
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(1);
                let first = if forever.is_on() { 1 } else { page };
                let limit: usize = request
                    .query("limit")
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(50)
                    .min(100);
                let active = request.query("onlyActiveTags") == Some("true");
                let tags = tags.lock().expect("tags");
                // Quay's active tags: no end, or an end still in the future.
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .expect("clock")
                    .as_secs() as i64;
                let all: Vec<_> = tags
                    .iter()
                    .filter(|(_, tag)| !active || tag.end_ts.is_none_or(|end| end > now))
                    .collect();
                let items: Vec<_> = all
                    .iter()
                    .skip((first - 1) * limit)
                    .take(limit)
                    .map(|(name, tag)| {
                        json!({"name": name, "manifest_digest": tag.digest, "start_ts": tag.start_ts,
                               "end_ts": tag.end_ts, "immutable": tag.immutable, "reversion": false})
                    })
                    .collect();
                Reply::json(
                    200,
                    &json!({"tags": items, "page": page, "has_additional": forever.is_on() || all.len() > page * limit}),
                )
            }
        };
        let delete = {
            let tags = Arc::clone(&tags);
            move |request: &Request| {
                if let Some(reply) = check(request) {
                    return reply;
                }
                let mut tags = tags.lock().expect("tags");
                match tags.get(request.param("tag")) {
                    None => Reply::json(404, &json!({"status":404,"detail":"Not Found"})),
                    Some(tag) if tag.immutable => Reply::json(
                        409,
                        &json!({"status":409,"error_type":"tag_immutable","detail":"Cannot delete immutable tag"}),
                    ),
                    Some(_) => {
                        tags.remove(request.param("tag"));
                        Reply::empty(204)
                    }
                }
            }
        };
        let routes = vec![
            // quay/quay endpoints/api/tag.py ListRepositoryTags
            Route::new(
                "GET",
                "/api/v1/repository/{namespace}/{name}/tag/",
                &["onlyActiveTags", "limit", "page"],
                &[200, 401, 404],
                list,
            ),
            // quay/quay endpoints/api/tag.py RepositoryTag.delete
            Route::new(
                "DELETE",
                "/api/v1/repository/{namespace}/{name}/tag/{tag}",
                &[],
                &[204, 401, 404, 409],
                delete,
            ),
        ];
        Quay {
            server: ApiServer::start(routes),
            paginate_forever: forever,
            tags,
        }
    }

    /// Adds or replaces a tag.
    pub fn tag(&self, name: &str, tag: Tag) {
        self.tags.lock().expect("tags").insert(name.into(), tag);
    }

    /// Every tag → its digest.
    pub fn tags(&self) -> BTreeMap<String, String> {
        self.tags
            .lock()
            .expect("tags")
            .iter()
            .map(|(name, tag)| (name.clone(), tag.digest.clone()))
            .collect()
    }
}
