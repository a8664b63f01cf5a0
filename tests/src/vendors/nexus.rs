//! A stateful Nexus Repository 3 double. Nexus generates its Swagger at run time, so each route names the
//! sonatype/nexus-public resource doc it follows (commit aec50e47, `research/registry-apis.md` §10);
//! [`DOCUMENTED`] is the table the routes are checked against.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use base64::Engine;
use serde_json::json;

use super::Forever;
use crate::apiserver::{ApiServer, Reply, Request, Route};

/// The documented operations: (method, path, reference).
pub const DOCUMENTED: &[(&str, &str, &str)] = &[
    (
        "GET",
        "/service/rest/v1/search",
        "nexus-public SearchResourceDoc: repository, format, docker.imageName, continuationToken; page of 50",
    ),
    (
        "DELETE",
        "/service/rest/v1/components/{id}",
        "nexus-public ComponentsResourceDoc: 204 deleted, 403, 404, 422",
    ),
];

/// Results per search page, as Nexus's SearchResource.
const PAGE: usize = 50;

/// Components by id: `(image, tag, manifest sha256 hex)`.
type Components = Arc<Mutex<BTreeMap<String, (String, String, String)>>>;

/// A running Nexus double: components `id → (image, tag, manifest sha256 hex)` in one repository.
pub struct Nexus {
    /// The server.
    pub server: ApiServer,
    /// Once on, every page's continuation token is the first page's.
    pub paginate_forever: Forever,
    components: Components,
}

impl Nexus {
    /// Starts a Nexus with hosted repository `repository`, accepting only `user`:`password`.
    pub fn start(repository: &str, user: &str, password: &str) -> Nexus {
        let components: Components = Arc::default();
        let forever = Forever::default();
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        );
        let authorised = move |r: &Request| r.header("authorization") == Some(&expected);
        let search = {
            let (components, authorised, repository, forever) = (
                Arc::clone(&components),
                authorised.clone(),
                repository.to_string(),
                forever.clone(),
            );
            move |request: &Request| {
                if !authorised(request) {
                    return Reply::empty(401);
                }
                let image = request.query("docker.imageName").unwrap_or("");
                let wrong_repository = request.query("repository").is_some_and(|r| r != repository);
                let start: usize = request
                    .query("continuationToken")
                    .and_then(|t| t.parse().ok())
                    .unwrap_or(0);
                let components = components.lock().expect("components");
                let all: Vec<_> = components
                    .iter()
                    .filter(|(_, (name, _, _))| !wrong_repository && name == image)
                    .collect();
                let items: Vec<_> = all
                    .iter()
                    .skip(start)
                    .take(PAGE)
                    .map(|(id, (name, tag, sha))| {
                        json!({"id": id, "repository": repository, "format": "docker", "group": null,
                               "name": name, "version": tag, "assets": [{
                                   "id": format!("a-{id}"), "path": format!("v2/{name}/manifests/{tag}"),
                                   "checksum": {"sha256": sha}, "blobCreated": "2024-03-01T10:00:00.000+00:00",
                                   "lastModified": "2024-03-02T10:00:00.000+00:00"}]})
                    })
                    .collect();
                let token = if forever.is_on() {
                    Some(PAGE.to_string())
                } else {
                    (all.len() > start + PAGE).then(|| (start + PAGE).to_string())
                };
                Reply::json(200, &json!({"items": items, "continuationToken": token}))
            }
        };
        let delete = {
            let components = Arc::clone(&components);
            move |request: &Request| {
                if !authorised(request) {
                    return Reply::empty(401);
                }
                match components
                    .lock()
                    .expect("components")
                    .remove(request.param("id"))
                {
                    Some(_) => Reply::empty(204),
                    None => Reply::empty(404),
                }
            }
        };
        let routes = vec![
            // nexus-public SearchResourceDoc
            Route::new(
                "GET",
                "/service/rest/v1/search",
                &[
                    "repository",
                    "format",
                    "docker.imageName",
                    "continuationToken",
                ],
                &[200, 401],
                search,
            ),
            // nexus-public ComponentsResourceDoc
            Route::new(
                "DELETE",
                "/service/rest/v1/components/{id}",
                &[],
                &[204, 401, 404],
                delete,
            ),
        ];
        Nexus {
            server: ApiServer::start(routes),
            paginate_forever: forever,
            components,
        }
    }

    /// Adds a component `image:tag` whose manifest has digest `sha256:<hex>`.
    pub fn push(&self, image: &str, tag: &str, hex: &str) {
        let mut components = self.components.lock().expect("components");
        let id = format!("c{:05}", components.len());
        components.insert(id, (image.into(), tag.into(), hex.into()));
    }

    /// Every tag of `image` → its manifest sha256 hex.
    pub fn tags(&self, image: &str) -> BTreeMap<String, String> {
        self.components
            .lock()
            .expect("components")
            .values()
            .filter(|(name, _, _)| name == image)
            .map(|(_, tag, sha)| (tag.clone(), sha.clone()))
            .collect()
    }
}
