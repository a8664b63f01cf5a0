//! `regkit` against registries that lie, through the fault proxy in front of a real registry: a manifest
//! whose body does not hash to its digest header, a `Link` to another host, a `Link` that never ends, a
//! token realm elsewhere over plain HTTP, a redirect to another host, gigantic bodies, and TLS (a CA
//! bundle through `SSL_CERT_FILE`, `--skip-tls-verify-registry`, neither). Each lie is refused or
//! bounded, no tag is lost, and the canary credentials go nowhere but the registry they belong to.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use regkit_e2e::bins;
use regkit_e2e::faultproxy::{Fault, FaultProxy, Rule};
use regkit_e2e::images::{self, Auth};
use regkit_e2e::pki::Pki;
use regkit_e2e::registry::{Options, Registry};
use tempfile::TempDir;

const USER: &str = "hostile-user";
const CANARY: &str = "canary-hostile-5e1f";
const REPO: &str = "hostile/app";

/// A docker config with the canary credentials for `host`.
fn config_for(host: &str) -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{CANARY}"));
    let config = serde_json::json!({"auths": {host: {"auth": auth}}});
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    dir
}

fn regkit(config: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    bins::regkit_with(config, args, "", env)
}

fn text(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Nothing regkit printed holds the canary.
fn assert_no_canary(output: &Output) {
    assert!(
        !text(output).contains(CANARY),
        "canary printed: {}",
        text(output)
    );
}

/// An htpasswd registry holding `REPO` with tags `a` and `b` on one image and `c` on its own.
fn registry() -> (Registry, BTreeMap<String, String>) {
    let registry = Registry::start_htpasswd(USER, CANARY);
    let auth = Auth::basic(USER, CANARY);
    images::push(&registry.url(), REPO, &["a", "b"], &auth);
    images::push(&registry.url(), REPO, &["c"], &auth);
    let before = images::tag_digests(&registry.url(), REPO, &auth);
    (registry, before)
}

fn tags_now(registry: &Registry) -> BTreeMap<String, String> {
    images::tag_digests(&registry.url(), REPO, &Auth::basic(USER, CANARY))
}

/// A loopback server on `127.0.0.2` (another host than the registry's `127.0.0.1`) that records request
/// heads and answers each with `answer`.
fn other_host(answer: String) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.2:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
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
            record.lock().unwrap().push(head);
            let _ = stream.write_all(answer.as_bytes());
        }
    });
    (addr, seen)
}

fn answer(status: &str, headers: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\n{headers}content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Credentials did reach the registry (so the test is not vacuous), and only through the proxy.
fn assert_credentials_used(proxy: &FaultProxy) {
    assert!(
        proxy
            .heads()
            .iter()
            .any(|head| head.to_ascii_lowercase().contains("authorization: basic")),
        "regkit never sent the credentials to the registry"
    );
}

#[test]
fn a_manifest_that_does_not_hash_to_its_digest_is_refused() {
    let (registry, before) = registry();
    let proxy = FaultProxy::start(registry.host());
    let config = config_for(proxy.host());
    let digest = &before["a"];
    // Untagging `a` while `b` shares its image needs the manifest body: the registry sends another body
    // under the real digest.
    let lie = "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"config\":{},\"layers\":[]}";
    proxy.set_rules(vec![
        Rule::new(Fault::Answer(answer(
            "200 OK",
            &format!(
                "content-type: application/vnd.oci.image.manifest.v1+json\r\ndocker-content-digest: {digest}\r\n"
            ),
            lie,
        )))
        .method("GET")
        .path("/manifests/"),
    ]);
    let output = regkit(
        config.path(),
        &["delete", &format!("{}/{REPO}:a", proxy.host())],
        &[],
    );
    assert_ne!(output.status.code(), Some(0), "{}", text(&output));
    assert!(
        text(&output).contains("hashes to"),
        "the error names the mismatch: {}",
        text(&output)
    );
    assert_no_canary(&output);
    assert_credentials_used(&proxy);
    assert!(
        !proxy.heads().iter().any(|head| head.starts_with("PUT ")),
        "nothing was written from a lying manifest"
    );
    assert_eq!(tags_now(&registry), before, "no tag changed");
}

#[test]
fn a_link_to_another_host_is_not_followed() {
    let (registry, before) = registry();
    let (elsewhere, seen) = other_host(answer("200 OK", "", "{\"name\":\"x\",\"tags\":[\"b\"]}"));
    let proxy = FaultProxy::start(registry.host());
    let config = config_for(proxy.host());
    proxy.set_rules(vec![
        Rule::new(Fault::Answer(answer(
            "200 OK",
            &format!(
                "content-type: application/json\r\nlink: <http://{elsewhere}/v2/{REPO}/tags/list?last=a>; rel=\"next\"\r\n"
            ),
            &format!("{{\"name\":\"{REPO}\",\"tags\":[\"a\"]}}"),
        )))
        .path("/tags/list"),
    ]);
    for args in [
        vec!["tags".to_string(), format!("{}/{REPO}", proxy.host())],
        vec!["delete".to_string(), format!("{}/{REPO}:c", proxy.host())],
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let output = regkit(config.path(), &args, &[]);
        assert_ne!(output.status.code(), Some(0), "{}", text(&output));
        assert!(
            text(&output).contains("127.0.0.2"),
            "the error names the foreign host: {}",
            text(&output)
        );
        assert_no_canary(&output);
    }
    assert_credentials_used(&proxy);
    assert!(
        seen.lock().unwrap().is_empty(),
        "{:?}",
        seen.lock().unwrap()
    );
    assert_eq!(tags_now(&registry), before);
}

#[test]
fn a_tag_list_whose_next_link_never_ends_fails_and_nothing_is_deleted() {
    let (registry, before) = registry();
    let proxy = FaultProxy::start(registry.host());
    let config = config_for(proxy.host());
    // Every page, the second included, links to the second page.
    proxy.set_rules(vec![
        Rule::new(Fault::Answer(answer(
            "200 OK",
            &format!(
                "content-type: application/json\r\nlink: </v2/{REPO}/tags/list?last=a>; rel=\"next\"\r\n"
            ),
            &format!("{{\"name\":\"{REPO}\",\"tags\":[\"a\"]}}"),
        )))
        .path("/tags/list"),
    ]);
    let repository = format!("{}/{REPO}", proxy.host());
    for args in [
        vec!["tags", repository.as_str()],
        vec!["cleanup", repository.as_str(), "--match", ".", "--yes"],
    ] {
        let output = regkit(config.path(), &args, &[]);
        assert_eq!(output.status.code(), Some(1), "{}", text(&output));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(&format!(
                "{}: GET tags of {REPO} does not end",
                proxy.host()
            )) && stderr.contains("page 2 repeats the next link from page 1"),
            "{}",
            text(&output)
        );
        assert_no_canary(&output);
    }
    assert!(
        !proxy.heads().iter().any(|head| head.starts_with("DELETE ")),
        "{:?}",
        proxy.heads()
    );
    assert_eq!(tags_now(&registry), before);
}

#[test]
fn a_plain_http_token_realm_on_another_host_gets_nothing() {
    let (registry, before) = registry();
    let proxy = FaultProxy::start(registry.host());
    let config = config_for(proxy.host());
    // 192.0.2.0/24 is TEST-NET-1: refused before any connection, so nothing leaves the machine.
    proxy.set_rules(vec![Rule::new(Fault::Answer(answer(
        "401 Unauthorized",
        "www-authenticate: Bearer realm=\"http://192.0.2.1/token\",service=\"registry\",scope=\"repository:hostile/app:pull\"\r\ncontent-type: application/json\r\n",
        "{\"errors\":[{\"code\":\"UNAUTHORIZED\"}]}",
    )))]);
    let started = Instant::now();
    let output = regkit(
        config.path(),
        &["delete", &format!("{}/{REPO}:c", proxy.host())],
        &[],
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "refused at once"
    );
    assert_ne!(output.status.code(), Some(0), "{}", text(&output));
    assert!(
        text(&output).contains("plain HTTP"),
        "the error says why: {}",
        text(&output)
    );
    assert_no_canary(&output);
    assert_eq!(tags_now(&registry), before);
}

#[test]
fn a_redirect_to_another_host_carries_no_credentials() {
    let (registry, before) = registry();
    let (elsewhere, seen) = other_host(answer(
        "200 OK",
        "content-type: application/json\r\n",
        &format!("{{\"name\":\"{REPO}\",\"tags\":[\"a\",\"b\",\"c\"]}}"),
    ));
    let proxy = FaultProxy::start(registry.host());
    let config = config_for(proxy.host());
    proxy.set_rules(vec![
        Rule::new(Fault::Answer(answer(
            "307 Temporary Redirect",
            &format!("location: http://{elsewhere}/v2/{REPO}/tags/list\r\n"),
            "",
        )))
        .path("/tags/list")
        // The first listing meets the registry's challenge; the one with credentials is redirected.
        .skip(1),
    ]);
    let output = regkit(
        config.path(),
        &["tags", &format!("{}/{REPO}", proxy.host())],
        &[],
    );
    assert_no_canary(&output);
    assert_credentials_used(&proxy);
    let seen = seen.lock().unwrap().clone();
    assert!(
        !seen.is_empty(),
        "the redirect was followed: {}",
        text(&output)
    );
    for head in &seen {
        let lower = head.to_ascii_lowercase();
        assert!(!lower.contains("authorization"), "{head}");
        assert!(!head.contains(CANARY), "{head}");
    }
    assert_eq!(tags_now(&registry), before);
}

#[test]
fn gigantic_bodies_are_bounded() {
    let (registry, before) = registry();
    let proxy = FaultProxy::start(registry.host());
    let config = config_for(proxy.host());
    for (path, args) in [
        (
            "/tags/list",
            vec!["tags".to_string(), format!("{}/{REPO}", proxy.host())],
        ),
        (
            "/manifests/",
            vec!["delete".to_string(), format!("{}/{REPO}:a", proxy.host())],
        ),
    ] {
        proxy.set_rules(vec![
            Rule::new(Fault::Flood("application/json".into()))
                .method("GET")
                .path(path),
            Rule::new(Fault::Answer(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 9000000000\r\nconnection: close\r\n\r\n{".into(),
            ))
            .method("HEAD")
            .path(path),
        ]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let started = Instant::now();
        let output = regkit(config.path(), &args, &[]);
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{path}: the read is bounded in time too"
        );
        assert_ne!(output.status.code(), Some(0), "{path}: {}", text(&output));
        assert!(
            text(&output).contains("limit") || text(&output).contains("larger"),
            "{path}: the error names the limit: {}",
            text(&output)
        );
        assert!(
            output.stderr.len() < 4096,
            "{path}: a flood is not echoed: {} bytes",
            output.stderr.len()
        );
        assert_no_canary(&output);
    }
    assert_eq!(tags_now(&registry), before);
}

#[test]
fn tls_registry_with_a_ca_bundle_skip_verify_or_neither() {
    let pki = Pki::new();
    // The harness pushes over plain HTTP; the same data is then served over HTTPS.
    let data = tempfile::tempdir().unwrap();
    let seed = Registry::start_with(Options {
        data_dir: Some(data.path().join("data")),
        ..Options::default()
    });
    images::push(&seed.url(), REPO, &["a", "b"], &Auth::None);
    images::push(&seed.url(), REPO, &["c", "d"], &Auth::None);
    drop(seed);
    let registry = Registry::start_with(Options {
        data_dir: Some(data.path().join("data")),
        tls: Some((pki.path("server.pem"), pki.path("server.key"))),
        ..Options::default()
    });
    assert!(registry.url().starts_with("https://"));
    // regkit speaks plain HTTP to loopback hosts; the IPv4-mapped form of 127.0.0.1 is not one to it, so
    // it takes HTTPS, while the connection still stays on this machine.
    let port = registry.host().rsplit(':').next().unwrap();
    let host = format!("[::ffff:127.0.0.1]:{port}");
    let config = config_for(&host);
    let repo = format!("{host}/{REPO}");
    let bundle = pki.path("ca.pem");
    let bundle = bundle.to_str().unwrap();

    // Neither: the certificate is not trusted, and the error says so at once (no retries: every
    // handshake would fail the same way).
    let started = Instant::now();
    let output = regkit(config.path(), &["tags", &repo], &[]);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "an untrusted certificate fails fast, not after the retry budget: {:?}",
        started.elapsed()
    );
    assert_ne!(output.status.code(), Some(0), "{}", text(&output));
    let lower = text(&output).to_ascii_lowercase();
    assert!(
        lower.contains("certificate") || lower.contains("tls"),
        "the error names the TLS failure: {}",
        text(&output)
    );
    assert_no_canary(&output);
    let output = regkit(config.path(), &["delete", &format!("{repo}:a")], &[]);
    assert_ne!(output.status.code(), Some(0), "{}", text(&output));
    assert_no_canary(&output);

    // A CA bundle through SSL_CERT_FILE.
    let output = regkit(
        config.path(),
        &["tags", &repo],
        &[("SSL_CERT_FILE", bundle)],
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    for tag in ["a", "b", "c", "d"] {
        assert!(
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .any(|line| line.trim() == tag || line.starts_with(&format!("{tag} "))),
            "{tag}: {}",
            text(&output)
        );
    }
    let output = regkit(
        config.path(),
        &["delete", &format!("{repo}:a")],
        &[("SSL_CERT_FILE", bundle)],
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));

    // The same bundle through --ca-file.
    let output = regkit(
        config.path(),
        &["--ca-file", bundle, "delete", &format!("{repo}:e")],
        &[],
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));

    // --skip-tls-verify-registry, only when asked.
    let output = regkit(
        config.path(),
        &["--skip-tls-verify-registry", "delete", &format!("{repo}:c")],
        &[],
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert_no_canary(&output);

    // The siblings of the deleted tags stayed; the deleted ones went.
    let output = regkit(
        config.path(),
        &["--skip-tls-verify-registry", "tags", &repo],
        &[],
    );
    let listed: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| line.split_whitespace().next().unwrap_or("").to_string())
        .filter(|tag| !tag.is_empty())
        .collect();
    assert!(
        listed.contains(&"b".to_string()) && listed.contains(&"d".to_string()),
        "{listed:?}"
    );
    assert!(
        !listed.contains(&"a".to_string()) && !listed.contains(&"c".to_string()),
        "{listed:?}"
    );
}
