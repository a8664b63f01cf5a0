//! A stateful HTTP test server built from a route table, for vendor APIs that have no local emulator.
//!
//! Each [`Route`] declares its method, path template, the query parameters it reads and the statuses it may
//! answer, so [`crate::specs`] can check the whole table against the vendor's published API description, and
//! the server enforces the declaration at run time: a request to an undeclared route or with an undeclared
//! query parameter, or a handler answering an undeclared status, is recorded as a violation (tests assert
//! [`ApiServer::violations`] is empty) and answered 500 or 404 so the client under test cannot rely on it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// A request as a handler sees it.
#[derive(Debug, Clone)]
pub struct Request {
    /// `GET`, `DELETE`, …
    pub method: String,
    /// The raw (still percent-encoded) path.
    pub path: String,
    /// Path template parameters, percent-decoded once.
    pub params: BTreeMap<String, String>,
    /// Query parameters, percent-decoded, in order.
    pub query: Vec<(String, String)>,
    /// Headers with lower-case names.
    pub headers: BTreeMap<String, String>,
    /// The body.
    pub body: Vec<u8>,
}

impl Request {
    /// A path parameter (panics if the template has none of that name: a bug in the test server).
    pub fn param(&self, name: &str) -> &str {
        self.params
            .get(name)
            .unwrap_or_else(|| panic!("route has no path parameter {name}"))
    }

    /// The first query parameter of that name.
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A header (lower-case name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    /// The `Authorization: Bearer` token, if any.
    pub fn bearer(&self) -> Option<&str> {
        self.header("authorization").and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
    }

    /// The body parsed as JSON (`Null` when empty or malformed).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// A handler's answer.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The status.
    pub status: u16,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Reply {
    /// A JSON answer.
    pub fn json(status: u16, value: &serde_json::Value) -> Reply {
        Reply {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: serde_json::to_vec(value).expect("JSON"),
        }
    }

    /// An answer without a body.
    pub fn empty(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Reply {
        self.headers.push((name.into(), value.into()));
        self
    }
}

type Handler = Box<dyn Fn(&Request) -> Reply + Send + Sync>;

/// One declared operation of the server.
pub struct Route {
    /// The method.
    pub method: &'static str,
    /// The path template, `{name}` for a parameter (one segment).
    pub template: &'static str,
    /// The query parameters the route reads; any other is a violation.
    pub query: &'static [&'static str],
    /// The statuses the route may answer; any other is a violation.
    pub statuses: &'static [u16],
    handler: Handler,
}

impl Route {
    /// A route with its declaration and handler.
    pub fn new(
        method: &'static str,
        template: &'static str,
        query: &'static [&'static str],
        statuses: &'static [u16],
        handler: impl Fn(&Request) -> Reply + Send + Sync + 'static,
    ) -> Route {
        Route {
            method,
            template,
            query,
            statuses,
            handler: Box::new(handler),
        }
    }

    /// Path parameters when `path` matches this route's template.
    fn matches(&self, method: &str, path: &str) -> Option<BTreeMap<String, String>> {
        if method != self.method {
            return None;
        }
        let template: Vec<&str> = self.template.trim_matches('/').split('/').collect();
        let actual: Vec<&str> = path.trim_matches('/').split('/').collect();
        if template.len() != actual.len() {
            return None;
        }
        let mut params = BTreeMap::new();
        for (t, a) in template.iter().zip(&actual) {
            match t.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
                Some(name) if !a.is_empty() => {
                    params.insert(name.to_string(), percent_decode(a));
                }
                Some(_) => return None,
                None if t == a => {}
                None => return None,
            }
        }
        Some(params)
    }
}

/// A declared-operation summary, for checking against a published description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Declared {
    /// The method.
    pub method: &'static str,
    /// The path template.
    pub template: &'static str,
    /// Query parameters read.
    pub query: &'static [&'static str],
    /// Statuses answered.
    pub statuses: &'static [u16],
}

struct Shared {
    routes: Vec<Route>,
    violations: Mutex<Vec<String>>,
    log: Mutex<Vec<(String, String, u16)>>,
}

/// A running server on 127.0.0.1; stops on drop.
pub struct ApiServer {
    server: Arc<tiny_http::Server>,
    shared: Arc<Shared>,
    addr: String,
    workers: Vec<JoinHandle<()>>,
    requests: Arc<AtomicUsize>,
}

impl ApiServer {
    /// Starts a server answering `routes` on an ephemeral loopback port.
    pub fn start(routes: Vec<Route>) -> ApiServer {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("bind API server"));
        let addr = server
            .server_addr()
            .to_ip()
            .expect("IP listener")
            .to_string();
        let shared = Arc::new(Shared {
            routes,
            violations: Mutex::new(Vec::new()),
            log: Mutex::new(Vec::new()),
        });
        let requests = Arc::new(AtomicUsize::new(0));
        // Several workers, so a client's concurrent requests are served concurrently.
        let workers = (0..8)
            .map(|_| {
                let server = Arc::clone(&server);
                let shared = Arc::clone(&shared);
                let requests = Arc::clone(&requests);
                std::thread::spawn(move || {
                    while let Ok(request) = server.recv() {
                        requests.fetch_add(1, Ordering::SeqCst);
                        serve(&shared, request);
                    }
                })
            })
            .collect();
        ApiServer {
            server,
            shared,
            addr,
            workers,
            requests,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> &str {
        &self.addr
    }

    /// Requests served so far.
    pub fn request_count(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// Every `(method, path, status)` answered, oldest first.
    pub fn log(&self) -> Vec<(String, String, u16)> {
        self.shared.log.lock().expect("log lock").clone()
    }

    /// Requests or answers that broke the route table's declarations.
    pub fn violations(&self) -> Vec<String> {
        self.shared
            .violations
            .lock()
            .expect("violations lock")
            .clone()
    }

    /// The declared operations, for [`crate::specs`] checks.
    pub fn declared(&self) -> Vec<Declared> {
        declared(&self.shared.routes)
    }
}

/// The declarations of a route table (without starting a server).
pub fn declared(routes: &[Route]) -> Vec<Declared> {
    routes
        .iter()
        .map(|r| Declared {
            method: r.method,
            template: r.template,
            query: r.query,
            statuses: r.statuses,
        })
        .collect()
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.server.unblock();
        for _ in 1..self.workers.len() {
            self.server.unblock();
        }
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

fn serve(shared: &Shared, mut request: tiny_http::Request) {
    let method = request.method().as_str().to_uppercase();
    let url = request.url().to_string();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    let query: Vec<(String, String)> = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (
                percent_decode(&k.replace('+', " ")),
                percent_decode(&v.replace('+', " ")),
            )
        })
        .collect();
    let headers = request
        .headers()
        .iter()
        .map(|h| {
            (
                h.field.as_str().as_str().to_ascii_lowercase(),
                h.value.as_str().to_string(),
            )
        })
        .collect();
    let mut body = Vec::new();
    let _ = request.as_reader().read_to_end(&mut body);
    let matched = shared
        .routes
        .iter()
        .find_map(|route| route.matches(&method, path).map(|params| (route, params)));
    let reply = match matched {
        None => {
            violation(shared, format!("no route for {method} {path}"));
            Reply::empty(404)
        }
        Some((route, params)) => {
            for (name, _) in &query {
                if !route.query.contains(&name.as_str()) {
                    violation(
                        shared,
                        format!(
                            "{method} {}: undeclared query parameter {name}",
                            route.template
                        ),
                    );
                }
            }
            let request = Request {
                method: method.clone(),
                path: path.to_string(),
                params,
                query,
                headers,
                body,
            };
            let reply = (route.handler)(&request);
            if route.statuses.contains(&reply.status) {
                reply
            } else {
                violation(
                    shared,
                    format!(
                        "{method} {}: handler answered undeclared status {}",
                        route.template, reply.status
                    ),
                );
                Reply::empty(500)
            }
        }
    };
    shared
        .log
        .lock()
        .expect("log lock")
        .push((method, path.to_string(), reply.status));
    let mut response = tiny_http::Response::from_data(reply.body).with_status_code(reply.status);
    for (name, value) in reply.headers {
        if let Ok(header) = tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()) {
            response.add_header(header);
        }
    }
    let _ = request.respond(response);
}

fn violation(shared: &Shared, message: String) {
    shared
        .violations
        .lock()
        .expect("violations lock")
        .push(message);
}

/// Percent-decodes once (invalid escapes are kept as they are).
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(value) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(value);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding_and_matching() {
        assert_eq!(percent_decode("a%2Fb%252F"), "a/b%2F");
        assert_eq!(percent_decode("50%"), "50%");
        let route = Route::new("GET", "/v2/{ns}/tags/{tag}", &[], &[200], |_| {
            Reply::empty(200)
        });
        let params = route.matches("GET", "/v2/a%2Fb/tags/x").expect("match");
        assert_eq!(params["ns"], "a/b");
        assert!(route.matches("GET", "/v2/a/b/tags/x").is_none());
        assert!(route.matches("DELETE", "/v2/a/tags/x").is_none());
    }

    #[test]
    fn undeclared_behaviour_is_recorded() {
        let server = ApiServer::start(vec![Route::new(
            "GET",
            "/things/{id}",
            &["page"],
            &[200],
            |r| {
                if r.param("id") == "bad" {
                    Reply::empty(418)
                } else {
                    Reply::json(200, &serde_json::json!({"id": r.param("id")}))
                }
            },
        )]);
        let agent = ureq::Agent::new_with_defaults();
        let get = |path: &str| {
            agent
                .get(format!("{}{path}", server.url()))
                .config()
                .http_status_as_error(false)
                .build()
                .call()
                .expect("request")
                .status()
                .as_u16()
        };
        assert_eq!(get("/things/1?page=2"), 200);
        assert!(server.violations().is_empty());
        assert_eq!(get("/things/1?size=2"), 200);
        assert_eq!(get("/things/bad"), 500);
        assert_eq!(get("/other"), 404);
        assert_eq!(server.violations().len(), 3, "{:?}", server.violations());
    }
}
