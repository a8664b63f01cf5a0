//! The registry client (`regkit::registry`) against a real distribution registry: no auth, htpasswd and
//! token auth (our token server), plus canned loopback servers for the protocol edges a real registry
//! cannot be made to show (Retry-After, foreign pagination links, plain-HTTP token realms).

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use regkit::dockerconfig::RegistryAuth;
use regkit::registry::{Client, ClientOptions, Deleted, RegistryError};
use regkit::secret::Secret;
use regkit_e2e::images::{self, Auth, Format};
use regkit_e2e::registry::{Options, Registry};
use regkit_e2e::tokenserver::{self, TokenServer, User};

fn client(registry: &Registry, auth: RegistryAuth) -> Client {
    Client::new(registry.host(), auth, &ClientOptions::default()).unwrap()
}

fn basic(user: &str, password: &str) -> RegistryAuth {
    RegistryAuth::Basic {
        username: user.into(),
        password: Secret::new(password.into()),
    }
}

fn sorted(tags: Vec<String>) -> Vec<String> {
    let mut tags = tags;
    tags.sort();
    tags
}

#[test]
fn harness_pushes_shared_and_distinct_images() {
    let registry = Registry::start();
    let url = registry.url();
    let shared = images::push(&url, "a/b/c", &["one", "two"], &Auth::None);
    let docker = images::push_as(&url, "a/b/c", &["docker"], &Auth::None, Format::Docker);
    let plain = images::push_as(
        &url,
        "a/b/c",
        &["plain"],
        &Auth::None,
        Format::OciUncompressed,
    );
    let index = images::push_index(&url, "a/b/c", "multi", &Auth::None, Format::Oci);
    let state = images::tag_digests(&url, "a/b/c", &Auth::None);
    assert_eq!(state["one"], shared);
    assert_eq!(state["two"], shared);
    assert_eq!(state["docker"], docker);
    assert_eq!(state["plain"], plain);
    assert_eq!(state["multi"], index.digest);
    assert_eq!(state.len(), 5);
    assert_ne!(
        images::push(&url, "a/b/c", &["one"], &Auth::None),
        shared,
        "every push is a new image"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn manifests_round_trip_in_a_nested_repository() {
    let registry = Registry::start();
    let url = registry.url();
    let shared = images::push(&url, "a/b/c", &["one", "two"], &Auth::None);
    let docker = images::push_as(&url, "a/b/c", &["docker"], &Auth::None, Format::Docker);
    let index = images::push_index(&url, "a/b/c", "multi", &Auth::None, Format::Docker);
    let client = client(&registry, RegistryAuth::Anonymous);
    client.ping().await.unwrap();

    assert_eq!(
        sorted(client.list_tags("a/b/c").await.unwrap()),
        ["docker", "multi", "one", "two"]
    );
    let head = client.head_manifest("a/b/c", "one").await.unwrap().unwrap();
    assert_eq!(head.digest, shared);
    assert_eq!(
        head.media_type,
        "application/vnd.oci.image.manifest.v1+json"
    );
    let docker_head = client
        .head_manifest("a/b/c", "docker")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(docker_head.digest, docker);
    assert_eq!(
        docker_head.media_type,
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    let list = client
        .get_manifest("a/b/c", "multi")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(list.info.digest, index.digest);
    assert_eq!(
        list.info.media_type,
        "application/vnd.docker.distribution.manifest.list.v2+json"
    );

    let manifest = client
        .get_manifest("a/b/c", &shared)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(manifest.info, head);
    assert_eq!(manifest.info.size, manifest.body.len() as u64);
    let parsed: serde_json::Value = serde_json::from_slice(&manifest.body).unwrap();
    let config_digest = parsed["config"]["digest"].as_str().unwrap();
    let config = client
        .get_blob("a/b/c", config_digest, 1 << 20)
        .await
        .unwrap()
        .unwrap();
    let config: serde_json::Value = serde_json::from_slice(&config).unwrap();
    assert_eq!(config["created"], images::DEFAULT_CREATED);
    assert!(matches!(
        client.get_blob("a/b/c", config_digest, 10).await,
        Err(RegistryError::InvalidResponse { .. })
    ));
    assert_eq!(
        client
            .get_blob("a/b/c", &images::sha256_digest(b"absent"), 100)
            .await
            .unwrap(),
        None
    );

    // PUT the same bytes under a new tag: same digest, a third tag on it.
    let put = client
        .put_manifest("a/b/c", "three", &manifest.info.media_type, &manifest.body)
        .await
        .unwrap();
    assert_eq!(put, shared);
    assert_eq!(
        images::tag_digests(&url, "a/b/c", &Auth::None)["three"],
        shared
    );

    assert!(matches!(
        client.delete_manifest("a/b/c", "one").await,
        Err(RegistryError::Config(_))
    ));
    assert_eq!(
        client.delete_manifest("a/b/c", &shared).await.unwrap(),
        Deleted::Removed
    );
    assert_eq!(
        client.delete_manifest("a/b/c", &shared).await.unwrap(),
        Deleted::Absent
    );
    assert_eq!(client.head_manifest("a/b/c", "one").await.unwrap(), None);
    assert_eq!(client.get_manifest("a/b/c", "two").await.unwrap(), None);
    assert_eq!(
        sorted(client.list_tags("a/b/c").await.unwrap()),
        ["docker", "multi"]
    );

    // With every manifest gone distribution answers `"tags": null`.
    client.delete_manifest("a/b/c", &docker).await.unwrap();
    client
        .delete_manifest("a/b/c", &index.digest)
        .await
        .unwrap();
    assert_eq!(
        client.list_tags("a/b/c").await.unwrap(),
        Vec::<String>::new()
    );
    match client.list_tags("no/such/repo").await {
        Err(RegistryError::RepositoryNotFound { repository, .. }) => {
            assert_eq!(repository, "no/such/repo")
        }
        other => panic!("expected RepositoryNotFound, got {other:?}"),
    }
}

#[tokio::test(flavor = "current_thread")]
async fn lists_1500_tags_and_pages_through_the_catalog() {
    let registry = Registry::start();
    let url = registry.url();
    let tags: Vec<String> = (0..1500).map(|i| format!("t{i:04}")).collect();
    let tag_refs: Vec<&str> = tags.iter().map(String::as_str).collect();
    let pushed = images::push_distinct(&url, "many", &tag_refs, &Auth::None);
    assert_eq!(
        pushed.iter().map(|(_, d)| d).collect::<BTreeSet<_>>().len(),
        1500
    );
    for repo in ["team/one", "team/two", "other"] {
        images::push(&url, repo, &["v1"], &Auth::None);
    }

    let client = client(&registry, RegistryAuth::Anonymous);
    let listed = client.list_tags("many").await.unwrap();
    assert_eq!(listed.len(), 1500);
    assert_eq!(sorted(listed), tags);

    let paged = client.clone().with_page_size(1);
    assert_eq!(
        sorted(paged.catalog("").await.unwrap()),
        ["many", "other", "team/one", "team/two"]
    );
    assert_eq!(
        sorted(paged.catalog("team/").await.unwrap()),
        ["team/one", "team/two"]
    );
    // Tags with n=1: distribution 2.8 ignores n on tags and sends everything in one page.
    assert_eq!(paged.list_tags("many").await.unwrap().len(), 1500);
}

#[tokio::test(flavor = "current_thread")]
async fn htpasswd_right_wrong_and_missing_password() {
    let registry = Registry::start_htpasswd("alice", "s3cret");
    let digest = images::push(
        &registry.url(),
        "app",
        &["v1"],
        &Auth::basic("alice", "s3cret"),
    );

    let right = client(&registry, basic("alice", "s3cret"));
    right.ping().await.unwrap();
    assert_eq!(right.list_tags("app").await.unwrap(), ["v1"]);
    assert_eq!(
        right
            .head_manifest("app", "v1")
            .await
            .unwrap()
            .unwrap()
            .digest,
        digest
    );
    assert_eq!(
        right.delete_manifest("app", &digest).await.unwrap(),
        Deleted::Removed
    );

    let wrong = client(&registry, basic("alice", "wrong"));
    match wrong.list_tags("app").await {
        Err(error @ RegistryError::Unauthorized { .. }) => {
            assert!(!error.to_string().contains("wrong"), "{error}");
            assert!(error.to_string().contains(registry.host()), "{error}");
        }
        other => panic!("expected Unauthorized, got {other:?}"),
    }
    assert!(matches!(
        client(&registry, RegistryAuth::Anonymous)
            .list_tags("app")
            .await,
        Err(RegistryError::Unauthorized { .. })
    ));
}

#[tokio::test(flavor = "current_thread")]
async fn disabled_deletes_are_unsupported() {
    let registry = Registry::start_with(Options {
        delete_enabled: false,
        ..Options::default()
    });
    let digest = images::push(&registry.url(), "app", &["v1"], &Auth::None);
    let error = client(&registry, RegistryAuth::Anonymous)
        .delete_manifest("app", &digest)
        .await
        .unwrap_err();
    assert!(
        matches!(error, RegistryError::DeleteUnsupported { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("UNSUPPORTED"), "{error}");
    assert_eq!(
        images::tag_digests(&registry.url(), "app", &Auth::None)["v1"],
        digest
    );
}

fn token_setup(users: Vec<User>) -> (TokenServer, Registry) {
    let tokens = TokenServer::start(users);
    let registry = Registry::start_with(Options {
        auth: tokens.registry_auth(),
        ..Options::default()
    });
    (tokens, registry)
}

#[tokio::test(flavor = "current_thread")]
async fn token_auth_uses_the_challenged_scope_and_caches_tokens() {
    let (tokens, registry) = token_setup(vec![
        User::admin("admin", "pw"),
        User::new("reader", "r").grant("app", &["pull"]),
    ]);
    let url = registry.url();
    let keep = images::push(&url, "app", &["keep"], &Auth::basic("admin", "pw"));
    let doomed = images::push(&url, "app", &["doomed"], &Auth::basic("admin", "pw"));
    tokens.clear_requests();

    let admin = client(&registry, basic("admin", "pw"));
    assert_eq!(
        sorted(admin.list_tags("app").await.unwrap()),
        ["doomed", "keep"]
    );
    assert_eq!(
        admin
            .head_manifest("app", "keep")
            .await
            .unwrap()
            .unwrap()
            .digest,
        keep
    );
    admin.get_manifest("app", "keep").await.unwrap().unwrap();
    assert_eq!(
        admin.delete_manifest("app", &doomed).await.unwrap(),
        Deleted::Removed
    );
    let requests = tokens.requests();
    let scopes: Vec<Vec<String>> = requests.iter().map(|r| r.scopes.clone()).collect();
    // One token per scope: the pull token is reused for HEAD and GET.
    assert_eq!(
        scopes,
        [
            vec!["repository:app:pull".to_string()],
            vec!["repository:app:delete".to_string()]
        ]
    );
    assert!(requests.iter().all(|r| r.grant_type == "basic"
        && r.account.as_deref() == Some("admin")
        && r.service.as_deref() == Some(tokenserver::SERVICE)));
    assert_eq!(sorted(admin.catalog("").await.unwrap()), ["app"]);

    // Concurrent requests on a fresh client share one token fetch.
    let fresh = client(&registry, basic("admin", "pw"));
    tokens.clear_requests();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let fresh = fresh.clone();
        tasks.spawn(async move { fresh.head_manifest("app", "keep").await });
    }
    while let Some(joined) = tasks.join_next().await {
        assert_eq!(joined.unwrap().unwrap().unwrap().digest, keep);
    }
    assert_eq!(tokens.requests().len(), 1, "{:?}", tokens.requests());

    let reader = client(&registry, basic("reader", "r"));
    assert_eq!(reader.list_tags("app").await.unwrap(), ["keep"]);
    match reader.delete_manifest("app", &keep).await {
        Err(error @ RegistryError::Denied { .. }) => {
            assert!(error.to_string().contains("delete"), "{error}")
        }
        other => panic!("expected Denied, got {other:?}"),
    }
    assert!(matches!(
        reader.list_tags("other").await,
        Err(RegistryError::Denied { .. })
    ));
    assert!(matches!(
        client(&registry, basic("reader", "bad"))
            .list_tags("app")
            .await,
        Err(RegistryError::Unauthorized { .. })
    ));
    assert_eq!(
        images::tag_digests(&url, "app", &Auth::basic("admin", "pw"))["keep"],
        keep
    );
}

#[tokio::test(flavor = "current_thread")]
async fn insufficient_scope_fetches_a_new_token_once() {
    let (tokens, registry) = token_setup(vec![
        User::admin("admin", "pw"),
        User::new("ops", "o").grant("app", &["pull"]),
    ]);
    let digest = images::push(&registry.url(), "app", &["v1"], &Auth::basic("admin", "pw"));
    let ops = client(&registry, basic("ops", "o"));
    assert!(matches!(
        ops.delete_manifest("app", &digest).await,
        Err(RegistryError::Denied { .. })
    ));

    // The cached delete token lacks the right; once granted, the insufficient_scope answer makes the
    // client fetch a fresh token for the challenged scope and retry.
    tokens.set_users(vec![
        User::admin("admin", "pw"),
        User::new("ops", "o").grant("app", &["pull", "delete"]),
    ]);
    tokens.clear_requests();
    assert_eq!(
        ops.delete_manifest("app", &digest).await.unwrap(),
        Deleted::Removed
    );
    let scopes: Vec<Vec<String>> = tokens.requests().iter().map(|r| r.scopes.clone()).collect();
    assert_eq!(scopes, [vec!["repository:app:delete".to_string()]]);
}

/// What `docker login` does to obtain an identity token: GET with Basic and `offline_token=true`.
fn identity_token(tokens: &TokenServer, user: &str, password: &str) -> String {
    let basic = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("{user}:{password}"),
    );
    let mut response = ureq::get(&tokens.realm())
        .query("service", tokenserver::SERVICE)
        .query("offline_token", "true")
        .query("client_id", "docker")
        .header("authorization", format!("Basic {basic}"))
        .call()
        .unwrap();
    let body: serde_json::Value =
        serde_json::from_slice(&response.body_mut().read_to_vec().unwrap()).unwrap();
    body["refresh_token"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "current_thread")]
async fn identity_tokens_use_the_refresh_token_grant() {
    let (tokens, registry) = token_setup(vec![User::admin("admin", "pw")]);
    let digest = images::push(&registry.url(), "app", &["v1"], &Auth::basic("admin", "pw"));
    let refresh = identity_token(&tokens, "admin", "pw");
    tokens.clear_requests();

    let client = client(&registry, RegistryAuth::IdentityToken(Secret::new(refresh)));
    assert_eq!(client.list_tags("app").await.unwrap(), ["v1"]);
    assert_eq!(
        client.delete_manifest("app", &digest).await.unwrap(),
        Deleted::Removed
    );
    let requests = tokens.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert!(requests.iter().all(|r| r.method == "POST"
        && r.grant_type == "refresh_token"
        && r.client_id.as_deref() == Some("regkit")
        && r.status == 200));

    let stale = Client::new(
        registry.host(),
        RegistryAuth::IdentityToken(Secret::new("not-a-refresh-token".into())),
        &ClientOptions::default(),
    )
    .unwrap();
    assert!(matches!(
        stale.list_tags("app").await,
        Err(RegistryError::Unauthorized { .. })
    ));
}

#[tokio::test(flavor = "current_thread")]
async fn identity_tokens_fall_back_to_get_without_oauth2() {
    let tokens = TokenServer::start_with(tokenserver::Options {
        users: vec![User::admin("admin", "pw")],
        post_enabled: false,
        ..tokenserver::Options::default()
    });
    let registry = Registry::start_with(Options {
        auth: tokens.registry_auth(),
        ..Options::default()
    });
    images::push(&registry.url(), "app", &["v1"], &Auth::basic("admin", "pw"));
    let refresh = identity_token(&tokens, "admin", "pw");
    tokens.clear_requests();

    let client = client(&registry, RegistryAuth::IdentityToken(Secret::new(refresh)));
    assert_eq!(client.list_tags("app").await.unwrap(), ["v1"]);
    let requests: Vec<(String, String, u16)> = tokens
        .requests()
        .into_iter()
        .map(|r| (r.method, r.grant_type, r.status))
        .collect();
    assert_eq!(
        requests,
        [
            ("POST".to_string(), String::new(), 405),
            ("GET".to_string(), "basic_refresh_token".to_string(), 200)
        ]
    );
}

/// A loopback server answering each connection's requests from `responses` in turn (the last repeats),
/// recording request heads.
fn canned(responses: Vec<String>) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    std::thread::spawn(move || {
        for (index, stream) in listener.incoming().enumerate() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                head.push_str(&line);
            }
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0usize);
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            record.lock().unwrap().push(head);
            let response = &responses[index.min(responses.len() - 1)];
            let _ = stream.write_all(response.as_bytes());
        }
    });
    (addr, seen)
}

fn response(status: &str, headers: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test(flavor = "current_thread")]
async fn retry_after_is_honoured_within_the_budget() {
    let (addr, seen) = canned(vec![
        response("503 Service Unavailable", "Retry-After: 1\r\n", ""),
        response("429 Too Many Requests", "Retry-After: 0\r\n", ""),
        response(
            "200 OK",
            "Content-Type: application/json\r\n",
            r#"{"name":"x","tags":["a"]}"#,
        ),
    ]);
    let client = Client::new(&addr, RegistryAuth::Anonymous, &ClientOptions::default()).unwrap();
    let started = Instant::now();
    assert_eq!(client.list_tags("x").await.unwrap(), ["a"]);
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(seen.lock().unwrap().len(), 3);
    assert!(
        seen.lock().unwrap()[0]
            .to_ascii_lowercase()
            .contains("user-agent: regkit/")
    );

    // A Retry-After beyond the budget ends the retries with the registry's answer.
    let (addr, seen) = canned(vec![response(
        "503 Service Unavailable",
        "Retry-After: 3600\r\n",
        "",
    )]);
    let options = ClientOptions {
        retry_budget: Duration::from_secs(2),
        ..ClientOptions::default()
    };
    let client = Client::new(&addr, RegistryAuth::Anonymous, &options).unwrap();
    assert!(matches!(
        client.list_tags("x").await,
        Err(RegistryError::Status { status: 503, .. })
    ));
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[tokio::test(flavor = "current_thread")]
async fn pagination_links_to_another_host_are_refused() {
    let (addr, _) = canned(vec![response(
        "200 OK",
        "Link: <http://127.0.0.2:9/v2/x/tags/list?last=a>; rel=\"next\"\r\n",
        r#"{"name":"x","tags":["a"]}"#,
    )]);
    let client = Client::new(&addr, RegistryAuth::Anonymous, &ClientOptions::default()).unwrap();
    match client.list_tags("x").await {
        Err(error @ RegistryError::InvalidResponse { .. }) => {
            assert!(error.to_string().contains("127.0.0.2"), "{error}")
        }
        other => panic!("expected InvalidResponse, got {other:?}"),
    }
}

#[tokio::test(flavor = "current_thread")]
async fn credentials_never_go_to_a_plain_http_realm_elsewhere() {
    // The realm is never contacted: the client refuses before sending.
    let (addr, seen) = canned(vec![response(
        "401 Unauthorized",
        "WWW-Authenticate: Bearer realm=\"http://192.0.2.1/token\",service=\"s\",scope=\"repository:x:pull\"\r\n",
        "",
    )]);
    let client = Client::new(&addr, basic("u", "p"), &ClientOptions::default()).unwrap();
    match client.list_tags("x").await {
        Err(RegistryError::Config(message)) => assert!(message.contains("plain HTTP"), "{message}"),
        other => panic!("expected Config, got {other:?}"),
    }
    assert_eq!(seen.lock().unwrap().len(), 1);
    assert!(
        !seen.lock().unwrap()[0]
            .to_ascii_lowercase()
            .contains("authorization")
    );
}

#[tokio::test(flavor = "current_thread")]
async fn redirects_to_another_host_carry_no_credentials() {
    let blob = "config bytes";
    let (storage, storage_seen) = canned(vec![response("200 OK", "", blob)]);
    let (registry, registry_seen) = canned(vec![response(
        "307 Temporary Redirect",
        &format!("Location: http://{storage}/signed/blob\r\n"),
        "",
    )]);
    let client = Client::new(
        &registry,
        RegistryAuth::RegistryToken(Secret::new("registry-token".into())),
        &ClientOptions::default(),
    )
    .unwrap();
    let digest = images::sha256_digest(blob.as_bytes());
    assert_eq!(
        client.get_blob("x", &digest, 1024).await.unwrap().unwrap(),
        blob.as_bytes()
    );
    let to_registry = registry_seen.lock().unwrap()[0].to_ascii_lowercase();
    assert!(
        to_registry.contains("authorization: bearer registry-token"),
        "{to_registry}"
    );
    let to_storage = storage_seen.lock().unwrap()[0].to_ascii_lowercase();
    assert!(to_storage.starts_with("get /signed/blob"), "{to_storage}");
    assert!(!to_storage.contains("authorization"), "{to_storage}");
}

/// `openssl s_server -www` (answers any GET with 200) on a loopback port with a fresh self-signed
/// certificate for 127.0.0.1; killed on drop.
struct TlsServer {
    child: std::process::Child,
    addr: String,
    /// The CA that signed the server's certificate.
    cert: std::path::PathBuf,
    _pki: regkit_e2e::pki::Pki,
}

impl TlsServer {
    fn start() -> TlsServer {
        let openssl = regkit_e2e::bins::tool("openssl", "openssl");
        let pki = regkit_e2e::pki::Pki::new();
        let (key, cert, leaf) = (
            pki.path("server.key"),
            pki.path("ca.pem"),
            pki.path("server.pem"),
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let child = std::process::Command::new(&openssl)
            .args(["s_server", "-quiet", "-www", "-accept", &addr, "-cert"])
            .arg(&leaf)
            .arg("-key")
            .arg(&key)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(Instant::now() < deadline, "openssl s_server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        TlsServer {
            child,
            addr,
            cert,
            _pki: pki,
        }
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "current_thread")]
async fn tls_trusts_a_ca_file_or_skips_verification_only_when_told() {
    let server = TlsServer::start();
    let registry = format!("https://{}", server.addr);
    let options = ClientOptions {
        retry_budget: Duration::ZERO,
        ..ClientOptions::default()
    };
    let untrusted = Client::new(&registry, RegistryAuth::Anonymous, &options).unwrap();
    assert!(matches!(
        untrusted.ping().await,
        Err(RegistryError::Transport { .. })
    ));

    let with_ca = ClientOptions {
        ca_file: Some(server.cert.clone()),
        ..options.clone()
    };
    Client::new(&registry, RegistryAuth::Anonymous, &with_ca)
        .unwrap()
        .ping()
        .await
        .unwrap();

    let skip = ClientOptions {
        skip_tls_verify: true,
        ..options
    };
    Client::new(&registry, RegistryAuth::Anonymous, &skip)
        .unwrap()
        .ping()
        .await
        .unwrap();
}

/// `regkit --output json delete REFS` with an empty docker config; the JSON entries by reference.
fn regkit_delete(host: &str, repo: &str, tags: &[&str], dry_run: bool) -> Vec<serde_json::Value> {
    let config = tempfile::tempdir().unwrap();
    let mut command = std::process::Command::new(regkit_e2e::bins::ours("regkit"));
    // HOME too: the undo journal goes under it, never under the user's own.
    command
        .env_clear()
        .env("HOME", config.path())
        .arg("--docker-config")
        .arg(config.path())
        .args(["--output", "json"]);
    if dry_run {
        command.arg("--dry-run");
    }
    let output = command
        .arg("delete")
        .args(tags.iter().map(|tag| format!("{host}/{repo}:{tag}")))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter(|entry| entry.get("summary").is_none())
        .collect()
}

/// `(tag, status, method)` of each entry.
fn outcomes(entries: &[serde_json::Value]) -> Vec<(String, String, String)> {
    entries
        .iter()
        .map(|entry| {
            (
                entry["tag"].as_str().unwrap_or_default().to_string(),
                entry["status"].as_str().unwrap_or_default().to_string(),
                entry["method"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// The request methods a proxy saw, counted.
fn methods(
    proxy: &regkit_e2e::faultproxy::FaultProxy,
) -> std::collections::BTreeMap<String, usize> {
    let mut counted = std::collections::BTreeMap::new();
    for head in proxy.heads() {
        let method = head
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string();
        *counted.entry(method).or_insert(0) += 1;
    }
    counted
}

#[test]
fn deleting_tags_with_distinct_digests_costs_three_requests_per_tag() {
    let registry = Registry::start();
    let url = registry.url();
    let names: Vec<String> = (0..30).map(|n| format!("t{n}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    images::push_distinct(&url, "cost/app", &refs, &Auth::None);
    let proxy = regkit_e2e::faultproxy::FaultProxy::start(registry.host());
    let entries = regkit_delete(proxy.host(), "cost/app", &refs, false);
    assert_eq!(entries.len(), names.len());
    assert!(
        entries
            .iter()
            .all(|entry| entry["status"] == "deleted" && entry["method"] == "digest"),
        "{entries:?}"
    );
    assert!(images::tag_digests(&url, "cost/app", &Auth::None).is_empty());
    let counted = methods(&proxy);
    // Per tag: the listing HEAD, the re-check GET (which also brings the body a link repair needs) and
    // the DELETE; once per run: the vendor detection probes, the tag listing and the probe DELETE.
    assert_eq!(counted.get("HEAD"), Some(&names.len()), "{counted:?}");
    assert_eq!(
        counted.get("DELETE"),
        Some(&(names.len() + 1)),
        "{counted:?}"
    );
    let manifest_gets = proxy
        .heads()
        .iter()
        .filter(|head| head.starts_with("GET /v2/cost/app/manifests/t"))
        .count();
    assert_eq!(manifest_gets, names.len());
    assert!(
        counted
            .get("GET")
            .is_some_and(|gets| *gets <= names.len() + 5),
        "{counted:?}"
    );
    assert_eq!(counted.len(), 3, "{counted:?}");
}

#[tokio::test(flavor = "current_thread")]
async fn a_tagged_child_of_a_kept_index_is_untagged_so_the_index_still_pulls() {
    let registry = Registry::start();
    let url = registry.url();
    let index = images::push_index(&url, "multi/app", "release", &Auth::None, Format::Oci);
    images::push(&url, "multi/app", &["other"], &Auth::None);
    let client = client(&registry, RegistryAuth::Anonymous);
    let release = client
        .get_manifest("multi/app", &index.digest)
        .await
        .unwrap()
        .unwrap();
    client
        .put_manifest(
            "multi/app",
            "release-alias",
            &release.info.media_type,
            &release.body,
        )
        .await
        .unwrap();
    let child = client
        .get_manifest("multi/app", &index.children[0])
        .await
        .unwrap()
        .unwrap();
    client
        .put_manifest("multi/app", "amd64", &child.info.media_type, &child.body)
        .await
        .unwrap();
    images::push_distinct(&url, "multi/app", &["solo"], &Auth::None);
    let proxy = regkit_e2e::faultproxy::FaultProxy::start(registry.host());

    let planned = regkit_delete(proxy.host(), "multi/app", &["amd64", "solo"], true);
    assert_eq!(
        outcomes(&planned),
        [
            ("amd64".into(), "planned".into(), "tombstone".into()),
            ("solo".into(), "planned".into(), "digest".into())
        ]
    );
    let entries = regkit_delete(proxy.host(), "multi/app", &["amd64", "solo"], false);
    assert_eq!(
        outcomes(&entries),
        [
            ("amd64".into(), "untagged".into(), "tombstone".into()),
            ("solo".into(), "deleted".into(), "digest".into())
        ]
    );
    let left = images::tag_digests(&url, "multi/app", &Auth::None);
    assert_eq!(
        left.keys().collect::<Vec<_>>(),
        ["other", "release", "release-alias"]
    );
    assert_eq!(left["release"], index.digest);
    for child in &index.children {
        assert!(
            client
                .head_manifest("multi/app", child)
                .await
                .unwrap()
                .is_some(),
            "the kept index lost {child}"
        );
    }
    // Each run read the index its two kept tags share once; `other`, an image, was never read.
    let index_gets = proxy
        .heads()
        .iter()
        .filter(|head| head.starts_with(&format!("GET /v2/multi/app/manifests/{}", index.digest)))
        .count();
    assert_eq!(index_gets, 2);

    // With the index itself requested, nothing protects the child any more: both go by digest.
    client
        .put_manifest("multi/app", "amd64", &child.info.media_type, &child.body)
        .await
        .unwrap();
    let entries = regkit_delete(
        registry.host(),
        "multi/app",
        &["release", "release-alias", "amd64"],
        false,
    );
    assert_eq!(
        outcomes(&entries),
        [
            ("release".into(), "deleted".into(), "digest".into()),
            ("release-alias".into(), "deleted".into(), "digest".into()),
            ("amd64".into(), "deleted".into(), "digest".into())
        ]
    );
    assert!(
        client
            .head_manifest("multi/app", &index.children[0])
            .await
            .unwrap()
            .is_none()
    );
}
