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
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderName, HeaderValue};
use hyper::http::request::Parts;
use hyper_util::rt::TokioIo;
use tokio::sync::oneshot;

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
    /// The DER certificate the client presented over TLS, verified against the server's client CA.
    pub client_certificate: Option<Vec<u8>>,
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
    /// The path prefix a reverse proxy in front would strip (see [`ApiServer::serve_under`]).
    prefix: Mutex<String>,
    violations: Mutex<Vec<String>>,
    log: Mutex<Vec<(String, String, u16)>>,
    requests: AtomicUsize,
}

/// TLS for a server: its certificate chain and key (PEM files), and the CA whose client certificates it
/// verifies. A client without a certificate is still served: handlers decide (a bearer token may do).
#[derive(Debug, Clone)]
pub struct Tls {
    /// The server's certificate (PEM).
    pub cert: std::path::PathBuf,
    /// Its private key (PEM).
    pub key: std::path::PathBuf,
    /// The CA of the client certificates it accepts (PEM).
    pub client_ca: std::path::PathBuf,
}

impl Tls {
    fn server_config(&self) -> Arc<rustls::ServerConfig> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for ca in CertificateDer::pem_file_iter(&self.client_ca).expect("client CA file") {
            roots.add(ca.expect("client CA PEM")).expect("client CA");
        }
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::clone(&provider),
        )
        .allow_unauthenticated()
        .build()
        .expect("client verifier");
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&self.cert)
            .expect("server certificate file")
            .map(|cert| cert.expect("server certificate PEM"))
            .collect();
        let key = PrivateKeyDer::from_pem_file(&self.key).expect("server key");
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .expect("server certificate and key");
        Arc::new(config)
    }
}

/// A running server on 127.0.0.1; stops on drop.
pub struct ApiServer {
    shared: Arc<Shared>,
    addr: String,
    scheme: &'static str,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl ApiServer {
    /// Starts a server answering `routes` on an ephemeral loopback port.
    pub fn start(routes: Vec<Route>) -> ApiServer {
        ApiServer::start_with(routes, None)
    }

    /// Starts a server answering `routes` over TLS.
    pub fn start_tls(routes: Vec<Route>, tls: &Tls) -> ApiServer {
        ApiServer::start_with(routes, Some(tls.server_config()))
    }

    fn start_with(routes: Vec<Route>, tls: Option<Arc<rustls::ServerConfig>>) -> ApiServer {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind API server");
        let addr = listener
            .local_addr()
            .expect("API server address")
            .to_string();
        listener
            .set_nonblocking(true)
            .expect("non-blocking API listener");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("API server runtime");
        let listener = {
            let _context = runtime.enter();
            tokio::net::TcpListener::from_std(listener).expect("API listener")
        };
        let shared = Arc::new(Shared {
            routes,
            prefix: Mutex::new(String::new()),
            violations: Mutex::new(Vec::new()),
            log: Mutex::new(Vec::new()),
            requests: AtomicUsize::new(0),
        });
        let (stop, stopped) = oneshot::channel();
        let thread = std::thread::spawn({
            let shared = Arc::clone(&shared);
            // Dropping the runtime when the accept loop ends closes every connection still open.
            move || runtime.block_on(accept(listener, shared, tls, stopped))
        });
        ApiServer {
            shared,
            addr,
            scheme,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// From now on, answers only paths under `prefix` (`/harbor`) and sees them without it, as a backend
    /// behind a reverse proxy that strips it does: its routes, logs and links never carry the prefix.
    pub fn serve_under(&self, prefix: &str) {
        *self.shared.prefix.lock().expect("prefix lock") = prefix.trim_end_matches('/').to_string();
    }

    /// `http://127.0.0.1:PORT` (`https://` with TLS).
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> &str {
        &self.addr
    }

    /// Requests served so far.
    pub fn request_count(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Every `(method, path, status)` answered, oldest first.
    pub fn log(&self) -> Vec<(String, String, u16)> {
        self.shared.log.lock().expect("log lock").clone()
    }

    /// The `(path, status)` of every DELETE answered, oldest first: what a run removed, or tried to.
    pub fn deletes(&self) -> Vec<(String, u16)> {
        self.log()
            .into_iter()
            .filter(|(method, _, _)| method == "DELETE")
            .map(|(_, path, status)| (path, status))
            .collect()
    }

    /// Requests or answers that broke the route table's declarations.
    pub fn violations(&self) -> Vec<String> {
        self.shared
            .violations
            .lock()
            .expect("violations lock")
            .clone()
    }

    /// Fails the test, listing them, when any request or answer broke the route table's declarations.
    #[track_caller]
    pub fn assert_no_violations(&self) {
        let violations = self.violations();
        assert!(violations.is_empty(), "{violations:?}");
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
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Serves every connection as its own task until `stop` fires. A connection lives as long as the client keeps
/// it alive, so none may wait for another to close (tiny_http's connection pool queued connections behind
/// busy threads: a client's request on a queued keep-alive connection went unanswered until its timeout).
async fn accept(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    tls: Option<Arc<rustls::ServerConfig>>,
    mut stop: oneshot::Receiver<()>,
) {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    loop {
        let stream = tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // Out of descriptors or a connection reset before it was accepted: try again shortly
                // rather than spin.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let shared = Arc::clone(&shared);
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            match acceptor {
                None => serve_connection(stream, shared, None).await,
                // A failed handshake (an untrusted client certificate) ends that connection only.
                Some(acceptor) => {
                    if let Ok(stream) = acceptor.accept(stream).await {
                        let certificate = stream
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|chain| chain.first())
                            .map(|leaf| leaf.as_ref().to_vec());
                        serve_connection(stream, shared, certificate).await;
                    }
                }
            }
        });
    }
}

async fn serve_connection<S>(stream: S, shared: Arc<Shared>, certificate: Option<Vec<u8>>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |request| {
        answer(Arc::clone(&shared), request, certificate.clone())
    });
    // A client dropping its connection mid-request is no concern of the server's.
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

/// One request: the whole body is read, then the route's handler answers.
async fn answer(
    shared: Arc<Shared>,
    request: hyper::Request<Incoming>,
    certificate: Option<Vec<u8>>,
) -> Result<hyper::Response<Full<Bytes>>, hyper::Error> {
    let (head, body) = request.into_parts();
    let body = body.collect().await?.to_bytes().to_vec();
    let target = format!("{} {}", head.method, head.uri.path());
    // Handlers are synchronous and may wait on shared state: they run off the connections' I/O thread.
    let reply = tokio::task::spawn_blocking({
        let shared = Arc::clone(&shared);
        move || serve(&shared, &head, body, certificate)
    })
    .await
    .unwrap_or_else(|_| {
        violation(&shared, format!("{target}: handler panicked"));
        Reply::empty(500)
    });
    let mut response = hyper::Response::new(Full::new(Bytes::from(reply.body)));
    *response.status_mut() = hyper::StatusCode::from_u16(reply.status)
        .unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in reply.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            response.headers_mut().append(name, value);
        }
    }
    Ok(response)
}

fn serve(shared: &Shared, head: &Parts, body: Vec<u8>, certificate: Option<Vec<u8>>) -> Reply {
    shared.requests.fetch_add(1, Ordering::SeqCst);
    let method = head.method.as_str().to_uppercase();
    let prefix = shared.prefix.lock().expect("prefix lock").clone();
    let Some(path) = head.uri.path().strip_prefix(prefix.as_str()) else {
        violation(
            shared,
            format!("{method} {} is outside {prefix}", head.uri.path()),
        );
        return Reply::empty(404);
    };
    let query: Vec<(String, String)> = head
        .uri
        .query()
        .unwrap_or("")
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
    let headers = head
        .headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_string(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
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
                client_certificate: certificate,
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
    reply
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

    /// regkit's parallel calls: a burst of new keep-alive connections, every request answered within a short
    /// timeout. Each round starts a fresh server, as the first burst of connections to a server was what
    /// tiny_http's pool left unserved (it had 4 idle threads and could queue later connections behind them).
    #[tokio::test]
    async fn parallel_keep_alive_requests_are_all_answered() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        for round in 0..5 {
            let server = ApiServer::start(vec![
                Route::new("GET", "/items/{id}", &[], &[200], |r| {
                    Reply::json(200, &serde_json::json!({"id": r.param("id")}))
                }),
                Route::new("DELETE", "/items/{id}", &[], &[204], |_| Reply::empty(204)),
                Route::new("POST", "/items", &[], &[200], |r| {
                    Reply::json(200, &serde_json::json!({"size": r.body.len()}))
                }),
            ]);
            let failures = burst(&server.url(), 400, 16).await;
            assert!(
                failures.is_empty(),
                "round {round}: {} failed: {failures:?}",
                failures.len()
            );
            assert_eq!(server.request_count(), 400);
            assert!(server.violations().is_empty(), "{:?}", server.violations());
        }
    }

    /// `total` requests (GET, DELETE, POST with a large and an empty body) from `tasks` concurrent tasks
    /// sharing one pooled client; the failures.
    async fn burst(url: &str, total: usize, tasks: usize) -> Vec<String> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("client");
        let next = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..tasks)
            .map(|_| {
                let (client, url, next) = (client.clone(), url.to_string(), Arc::clone(&next));
                tokio::spawn(async move {
                    let mut failures = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        if i >= total {
                            return failures;
                        }
                        let (request, size) = match i % 4 {
                            0 => (client.get(format!("{url}/items/{i}")), None),
                            1 => (client.delete(format!("{url}/items/{i}")), None),
                            2 => (
                                client.post(format!("{url}/items")).body(vec![b'x'; 4000]),
                                Some(4000),
                            ),
                            _ => (client.post(format!("{url}/items")).body(""), Some(0)),
                        };
                        let answer = match request.send().await {
                            Ok(response) if response.status().is_success() => {
                                response.bytes().await.map_err(|e| format!("body: {e}"))
                            }
                            Ok(response) => Err(response.status().to_string()),
                            Err(e) => Err(format!("{e} (timed out: {})", e.is_timeout())),
                        };
                        match (answer, size) {
                            (Err(error), _) => failures.push(format!("request {i}: {error}")),
                            (Ok(body), Some(size)) => {
                                let echoed = serde_json::from_slice::<serde_json::Value>(&body)
                                    .expect("JSON")["size"]
                                    .as_u64();
                                if echoed != Some(size) {
                                    failures.push(format!("request {i}: body size {echoed:?}"));
                                }
                            }
                            (Ok(_), None) => {}
                        }
                    }
                })
            })
            .collect();
        let mut failures = Vec::new();
        for task in tasks {
            failures.extend(task.await.expect("task"));
        }
        failures
    }
}
