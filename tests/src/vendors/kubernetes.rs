//! A stateful Kubernetes API server stand-in for the in-use scan: the list operations of the workload kinds
//! (cluster-wide and per namespace, `limit`/`continue` pagination), the legacy discovery documents kubectl
//! reads first, `Status` error objects, and bearer-token or client-certificate authentication over TLS.
//!
//! Written from the Kubernetes API reference (kubernetes/kubernetes `api/openapi-spec/v3/`, commit
//! 0021731de5897e81f1d576a134db15c7c301eeff: `api__v1_openapi.json`, `apis__apps__v1_openapi.json`,
//! `apis__batch__v1_openapi.json`, `api_openapi.json`, `apis_openapi.json`, `version_openapi.json`);
//! [`DOCUMENTED`] is the table of those operations the routes are checked against. kubectl proves the answers are Kubernetes's: it lists
//! every kind from this server in a test.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::apiserver::{ApiServer, Reply, Request, Route, Tls};
use crate::pki::Pki;

/// A workload kind: the group-version path, its resource name, `Kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind {
    /// `/api/v1` or `/apis/apps/v1`…
    pub prefix: &'static str,
    /// `pods`, `deployments`…
    pub resource: &'static str,
    /// `Pod`, `Deployment`…
    pub kind: &'static str,
}

/// The kinds the scan reads.
pub const KINDS: [Kind; 8] = [
    Kind {
        prefix: "/api/v1",
        resource: "pods",
        kind: "Pod",
    },
    Kind {
        prefix: "/apis/apps/v1",
        resource: "deployments",
        kind: "Deployment",
    },
    Kind {
        prefix: "/apis/apps/v1",
        resource: "replicasets",
        kind: "ReplicaSet",
    },
    Kind {
        prefix: "/apis/apps/v1",
        resource: "statefulsets",
        kind: "StatefulSet",
    },
    Kind {
        prefix: "/apis/apps/v1",
        resource: "daemonsets",
        kind: "DaemonSet",
    },
    Kind {
        prefix: "/apis/batch/v1",
        resource: "jobs",
        kind: "Job",
    },
    Kind {
        prefix: "/apis/batch/v1",
        resource: "cronjobs",
        kind: "CronJob",
    },
    Kind {
        prefix: "/api/v1",
        resource: "replicationcontrollers",
        kind: "ReplicationController",
    },
];

/// The list query parameters of every list operation in the reference (kubectl and kube-rs send some).
const LIST_QUERY: &[&str] = &[
    "allowWatchBookmarks",
    "continue",
    "fieldSelector",
    "labelSelector",
    "limit",
    "pretty",
    "resourceVersion",
    "resourceVersionMatch",
    "sendInitialEvents",
    "timeoutSeconds",
    "watch",
];

/// The discovery documents' parameters: `timeout` is the API server's on every request (kubectl's discovery
/// client sends `timeout=32s`), not listed per operation in the description.
const DISCOVERY_QUERY: &[&str] = &["pretty", "timeout"];

/// The documented operations: (method, path, statuses, reference: file and operationId).
pub const DOCUMENTED: &[(&str, &str, &[u16], &str)] = &[
    (
        "GET",
        "/version/",
        &[200, 401],
        "version_openapi.json getCodeVersion",
    ),
    (
        "GET",
        "/api/",
        &[200, 401],
        "api_openapi.json getCoreAPIVersions",
    ),
    (
        "GET",
        "/apis/",
        &[200, 401],
        "apis_openapi.json getAPIVersions",
    ),
    (
        "GET",
        "/api/v1/",
        &[200, 401],
        "api__v1_openapi.json getCoreV1APIResources",
    ),
    (
        "GET",
        "/apis/apps/v1/",
        &[200, 401],
        "apis__apps__v1_openapi.json getAppsV1APIResources",
    ),
    (
        "GET",
        "/apis/batch/v1/",
        &[200, 401],
        "apis__batch__v1_openapi.json getBatchV1APIResources",
    ),
    (
        "GET",
        "/api/v1/pods",
        &[200, 401],
        "api__v1_openapi.json listCoreV1PodForAllNamespaces",
    ),
    (
        "GET",
        "/api/v1/namespaces/{namespace}/pods",
        &[200, 401],
        "api__v1_openapi.json listCoreV1NamespacedPod",
    ),
    (
        "GET",
        "/api/v1/replicationcontrollers",
        &[200, 401],
        "api__v1_openapi.json listCoreV1ReplicationControllerForAllNamespaces",
    ),
    (
        "GET",
        "/api/v1/namespaces/{namespace}/replicationcontrollers",
        &[200, 401],
        "api__v1_openapi.json listCoreV1NamespacedReplicationController",
    ),
    (
        "GET",
        "/apis/apps/v1/deployments",
        &[200, 401],
        "apis__apps__v1_openapi.json listAppsV1DeploymentForAllNamespaces",
    ),
    (
        "GET",
        "/apis/apps/v1/namespaces/{namespace}/deployments",
        &[200, 401],
        "apis__apps__v1_openapi.json listAppsV1NamespacedDeployment",
    ),
    (
        "GET",
        "/apis/apps/v1/replicasets",
        &[200, 401],
        "apis__apps__v1_openapi.json listAppsV1ReplicaSetForAllNamespaces",
    ),
    (
        "GET",
        "/apis/apps/v1/namespaces/{namespace}/replicasets",
        &[200, 401],
        "apis__apps__v1_openapi.json listAppsV1NamespacedReplicaSet",
    ),
    (
        "GET",
        "/apis/apps/v1/statefulsets",
        &[200, 401],
        "apis__apps__v1_openapi.json listAppsV1StatefulSetForAllNamespaces",
    ),
    (
        "GET",
        "/apis/apps/v1/namespaces/{namespace}/statefulsets",
        &[200, 401],
        "apis__apps__v1_openapi.json listAppsV1NamespacedStatefulSet",
    ),
    (
        "GET",
        "/apis/apps/v1/daemonsets",
        &[200, 401],
        "apis__apps__v1_openapi.json listAppsV1DaemonSetForAllNamespaces",
    ),
    (
        "GET",
        "/apis/apps/v1/namespaces/{namespace}/daemonsets",
        &[200, 401],
        "apis__apps__v1_openapi.json listAppsV1NamespacedDaemonSet",
    ),
    (
        "GET",
        "/apis/batch/v1/jobs",
        &[200, 401],
        "apis__batch__v1_openapi.json listBatchV1JobForAllNamespaces",
    ),
    (
        "GET",
        "/apis/batch/v1/namespaces/{namespace}/jobs",
        &[200, 401],
        "apis__batch__v1_openapi.json listBatchV1NamespacedJob",
    ),
    (
        "GET",
        "/apis/batch/v1/cronjobs",
        &[200, 401],
        "apis__batch__v1_openapi.json listBatchV1CronJobForAllNamespaces",
    ),
    (
        "GET",
        "/apis/batch/v1/namespaces/{namespace}/cronjobs",
        &[200, 401],
        "apis__batch__v1_openapi.json listBatchV1NamespacedCronJob",
    ),
];

/// How the server behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// As Kubernetes does.
    Serve,
    /// Every request is 401 (an expired token, a revoked certificate).
    Unauthorized,
    /// Every request hangs until the server stops (or a minute passes).
    Stall,
}

/// One stored object: its kind, namespace, name and body (any JSON, so tests can send malformed objects).
#[derive(Debug, Clone)]
struct Object {
    kind: &'static str,
    namespace: String,
    body: Value,
}

#[derive(Debug)]
struct State {
    objects: Vec<Object>,
    mode: Mode,
    /// The most items a page holds whatever `limit` asks (the API lets a server send fewer).
    page_cap: Option<usize>,
}

/// A running stand-in with its PKI; stops on drop.
pub struct Kubernetes {
    /// The HTTPS server.
    pub server: ApiServer,
    /// The CA the server's certificate and accepted client certificates chain to.
    pub pki: Pki,
    /// The bearer token it accepts.
    pub token: String,
    state: Arc<Mutex<State>>,
    stopping: Arc<AtomicBool>,
}

/// How a kubeconfig user authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// `token:` the server's token.
    Token,
    /// `client-certificate-data` / `client-key-data` from the server's CA.
    ClientCertificate,
    /// A token the server does not accept.
    WrongToken,
}

fn status(code: u16, reason: &str, message: &str) -> Reply {
    Reply::json(
        code,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": message, "reason": reason, "code": code}),
    )
}

impl Kubernetes {
    /// Starts a stand-in over TLS that accepts `token` or a client certificate of its CA.
    pub fn start(token: &str) -> Kubernetes {
        let pki = Pki::new();
        let state = Arc::new(Mutex::new(State {
            objects: Vec::new(),
            mode: Mode::Serve,
            page_cap: None,
        }));
        let stopping = Arc::new(AtomicBool::new(false));
        let token = token.to_string();
        // Authentication and the failure modes, before any handler.
        let gate = {
            let (state, stopping, token) =
                (Arc::clone(&state), Arc::clone(&stopping), token.clone());
            move |request: &Request| -> Option<Reply> {
                let mode = state.lock().expect("state").mode;
                if mode == Mode::Stall {
                    let since = Instant::now();
                    while !stopping.load(Ordering::SeqCst)
                        && since.elapsed() < Duration::from_secs(60)
                    {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
                let authenticated = request.bearer() == Some(token.as_str())
                    || request.client_certificate.is_some();
                (mode != Mode::Serve || !authenticated)
                    .then(|| status(401, "Unauthorized", "Unauthorized"))
            }
        };
        let mut routes = Vec::new();
        for (method, path, statuses, _) in DOCUMENTED {
            let gate = gate.clone();
            let state = Arc::clone(&state);
            let path = *path;
            let handler = move |request: &Request| {
                if let Some(reply) = gate(request) {
                    return reply;
                }
                answer(&state.lock().expect("state"), path, request)
            };
            let query: &'static [&'static str] = if path.ends_with('/') {
                DISCOVERY_QUERY
            } else {
                LIST_QUERY
            };
            routes.push(Route::new(method, path, query, statuses, handler));
        }
        let tls = Tls {
            cert: pki.path("server.pem"),
            key: pki.path("server.key"),
            client_ca: pki.path("ca.pem"),
        };
        let server = ApiServer::start_tls(routes, &tls);
        Kubernetes {
            server,
            pki,
            token,
            state,
            stopping,
        }
    }

    /// Adds an object of `kind` (`Pod`, `Deployment`…) with this body; `metadata.namespace` places it.
    pub fn add(&self, kind: &'static str, body: Value) {
        let namespace = body["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_string();
        self.state.lock().expect("state").objects.push(Object {
            kind,
            namespace,
            body,
        });
    }

    /// Adds a workload of `kind` (not a Pod) whose pod template runs `images`.
    pub fn add_workload(&self, kind: &'static str, namespace: &str, name: &str, images: &[&str]) {
        self.add(kind, workload(kind, namespace, name, images));
    }

    /// Sets how the server behaves.
    pub fn set_mode(&self, mode: Mode) {
        self.state.lock().expect("state").mode = mode;
    }

    /// Caps every page at `items`, whatever `limit` asks.
    pub fn set_page_cap(&self, items: usize) {
        self.state.lock().expect("state").page_cap = Some(items);
    }

    /// A kubeconfig `clusters`/`users`/`contexts` entry set for one context named `context` on this server.
    pub fn entry(&self, context: &str, auth: Auth) -> KubeconfigEntry {
        let ca = std::fs::read(self.pki.path("ca.pem")).expect("CA");
        let user = match auth {
            Auth::Token => json!({"token": self.token}),
            Auth::ClientCertificate => {
                let (cert, key) = self.pki.client(context);
                json!({
                    "client-certificate-data": base64(&std::fs::read(cert).expect("client cert")),
                    "client-key-data": base64(&std::fs::read(key).expect("client key")),
                })
            }
            Auth::WrongToken => json!({"token": "not-the-token"}),
        };
        KubeconfigEntry {
            context: context.to_string(),
            server: self.server.url(),
            ca: Some(ca),
            user,
        }
    }
}

impl Drop for Kubernetes {
    fn drop(&mut self) {
        // Stalled handlers end before the server joins its thread.
        self.stopping.store(true, Ordering::SeqCst);
    }
}

fn base64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// One context of a kubeconfig file.
#[derive(Debug, Clone)]
pub struct KubeconfigEntry {
    /// The context (and cluster and user) name.
    pub context: String,
    /// `https://127.0.0.1:PORT`.
    pub server: String,
    /// The CA the server's certificate chains to (PEM), if any.
    pub ca: Option<Vec<u8>>,
    /// The user's fields.
    pub user: Value,
}

impl KubeconfigEntry {
    /// A context whose server is `server`, e.g. a port nothing listens on, with a token user.
    pub fn unreachable(context: &str, server: &str) -> KubeconfigEntry {
        KubeconfigEntry {
            context: context.to_string(),
            server: server.to_string(),
            ca: None,
            user: json!({"token": "unused"}),
        }
    }
}

/// A kubeconfig (YAML is a superset of JSON) with these contexts; the first is the current one.
pub fn kubeconfig(entries: &[KubeconfigEntry]) -> String {
    let clusters: Vec<Value> = entries
        .iter()
        .map(|entry| {
            let mut cluster = json!({"server": entry.server});
            if let Some(ca) = &entry.ca {
                cluster["certificate-authority-data"] = json!(base64(ca));
            }
            json!({"name": entry.context, "cluster": cluster})
        })
        .collect();
    let users: Vec<Value> = entries
        .iter()
        .map(|entry| json!({"name": entry.context, "user": entry.user}))
        .collect();
    let contexts: Vec<Value> = entries
        .iter()
        .map(|entry| {
            json!({"name": entry.context, "context": {"cluster": entry.context, "user": entry.context}})
        })
        .collect();
    let document = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": clusters,
        "users": users,
        "contexts": contexts,
        "current-context": entries.first().map(|entry| entry.context.clone()).unwrap_or_default(),
    });
    serde_json::to_string_pretty(&document).expect("kubeconfig")
}

/// A discovery document or a list.
fn answer(state: &State, path: &'static str, request: &Request) -> Reply {
    match path {
        "/version/" => Reply::json(
            200,
            &json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0", "platform": "linux/amd64"}),
        ),
        "/api/" => Reply::json(
            200,
            &json!({"kind": "APIVersions", "versions": ["v1"],
                    "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": request.header("host").unwrap_or("")}]}),
        ),
        "/apis/" => {
            let group = |name: &str| {
                json!({"name": name, "versions": [{"groupVersion": format!("{name}/v1"), "version": "v1"}],
                       "preferredVersion": {"groupVersion": format!("{name}/v1"), "version": "v1"}})
            };
            Reply::json(
                200,
                &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [group("apps"), group("batch")]}),
            )
        }
        _ if path.ends_with('/') => {
            let prefix = path.trim_end_matches('/');
            let group_version = prefix
                .trim_start_matches("/apis/")
                .trim_start_matches("/api/");
            let resources: Vec<Value> = KINDS
                .iter()
                .filter(|kind| kind.prefix == prefix)
                .map(|kind| {
                    json!({"name": kind.resource, "singularName": kind.kind.to_lowercase(), "namespaced": true,
                           "kind": kind.kind, "verbs": ["get", "list"]})
                })
                .collect();
            Reply::json(
                200,
                &json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version,
                        "resources": resources}),
            )
        }
        _ => list(state, request),
    }
}

/// A page of one kind, all namespaces or one; `continue` is the offset of the next item.
fn list(state: &State, request: &Request) -> Reply {
    let resource = request.path.rsplit('/').next().unwrap_or_default();
    let kind = KINDS
        .iter()
        .find(|kind| kind.resource == resource)
        .expect("every list route is a kind's");
    let namespace = request.params.get("namespace");
    let matching: Vec<&Object> = state
        .objects
        .iter()
        .filter(|object| object.kind == kind.kind)
        .filter(|object| namespace.is_none_or(|namespace| *namespace == object.namespace))
        .collect();
    let start: usize = request
        .query("continue")
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let mut size = request
        .query("limit")
        .and_then(|limit| limit.parse().ok())
        .filter(|limit| *limit > 0)
        .unwrap_or(usize::MAX);
    if let Some(cap) = state.page_cap {
        size = size.min(cap);
    }
    let end = start.saturating_add(size).min(matching.len());
    let items: Vec<Value> = matching[start.min(end)..end]
        .iter()
        .map(|object| object.body.clone())
        .collect();
    let mut metadata = json!({"resourceVersion": "1000"});
    if end < matching.len() {
        metadata["continue"] = json!(end.to_string());
        metadata["remainingItemCount"] = json!(matching.len() - end);
    }
    let api_version = kind
        .prefix
        .trim_start_matches("/apis/")
        .trim_start_matches("/api/");
    Reply::json(
        200,
        &json!({"kind": format!("{}List", kind.kind), "apiVersion": api_version, "metadata": metadata, "items": items}),
    )
}

/// A pod template with these container images.
fn template(images: &[&str]) -> Value {
    let containers: Vec<Value> = images
        .iter()
        .enumerate()
        .map(|(index, image)| json!({"name": format!("c{index}"), "image": image}))
        .collect();
    json!({"metadata": {}, "spec": {"containers": containers}})
}

/// Metadata for `namespace/name`.
pub fn metadata(namespace: &str, name: &str) -> Value {
    json!({"namespace": namespace, "name": name, "uid": format!("{namespace}-{name}"), "resourceVersion": "1"})
}

/// A workload of `kind` (not a Pod) whose pod template runs `images`.
fn workload(kind: &str, namespace: &str, name: &str, images: &[&str]) -> Value {
    let spec = match kind {
        "CronJob" => {
            json!({"schedule": "0 * * * *", "jobTemplate": {"spec": {"template": template(images)}}})
        }
        // A ReplicationController's selector is a plain label map; the apps kinds' is a LabelSelector.
        "ReplicationController" => json!({"selector": {"app": name}, "template": template(images)}),
        _ => json!({"selector": {"matchLabels": {"app": name}}, "template": template(images)}),
    };
    json!({"metadata": metadata(namespace, name), "spec": spec})
}
