//! Property tests over every parser that reads input regkit does not control: the helper protocol's stdin,
//! `WWW-Authenticate`, docker config / auth.json, image references, `Link`/`Retry-After`, dates, the ECR
//! identity file and registry JSON answers. Each property feeds arbitrary bytes (never panics, answers stay
//! well-formed) and, where a parser has an inverse, round-trips generated valid input.
//!
//! Parsers whose types are private to their module keep their properties there, named `fuzz_` so that
//! `make fuzz` runs them too: the Secret Service client's D-Bus decoder (messages, header fields,
//! signatures and bodies from the bus, `keyring/dbus.rs`) and its session's peer key and ciphertexts
//! (`keyring/dh.rs`).
//!
//! The normal suite runs proptest's default 256 cases per property; `make fuzz` sets `PROPTEST_CASES` much
//! higher. Nightly is not available, so this stands in for cargo-fuzz.

use std::collections::BTreeMap;
use std::sync::Mutex;

use proptest::prelude::*;

use crate::dockerconfig::{AuthMap, ConfigDocument, DockerConfig, RegistryAuth};
use crate::protocol::{self, Credentials, Error, Helper};
use crate::reference::{Reference, Repository};
use crate::secret::Secret;

/// Bytes biased towards the characters the parsers split on, so generated input reaches deep branches.
fn tricky_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[ \t,;=\"\\\\<>/:@a-zA-Z0-9._\\-\r\n{}\\[\\]]{0,80}",
    ]
}

/// A helper that remembers what it was given, to check `store` hands over exactly what was sent.
#[derive(Default)]
struct Recorder {
    stored: Mutex<Option<Credentials>>,
}

impl Helper for Recorder {
    fn get(&self, server_url: &str) -> Result<Credentials, Error> {
        Ok(Credentials {
            server_url: server_url.to_owned(),
            username: "user".into(),
            secret: Secret::new("canary-fuzz-secret".into()),
        })
    }
    fn store(&self, credentials: Credentials) -> Result<(), Error> {
        *self.stored.lock().unwrap() = Some(credentials);
        Ok(())
    }
    fn erase(&self, _: &str) -> Result<(), Error> {
        Ok(())
    }
    fn list(&self) -> Result<BTreeMap<String, String>, Error> {
        Ok(BTreeMap::new())
    }
}

fn run(action: &str, stdin: &[u8]) -> (u8, String) {
    let helper = Recorder::default();
    let mut out = Vec::new();
    let code = protocol::run_with(
        "docker-credential-fuzz",
        &helper,
        &[action.to_owned()],
        &mut &stdin[..],
        &mut out,
    );
    (code, String::from_utf8(out).expect("answers are UTF-8"))
}

proptest! {
    #[test]
    fn fuzz_protocol_any_stdin(
        action in prop_oneof![Just("get".to_owned()), Just("store".to_owned()), Just("erase".to_owned()), Just("list".to_owned()), "[a-z-]{0,8}"],
        stdin in prop_oneof![any::<Vec<u8>>(), tricky_text().prop_map(String::into_bytes)],
    ) {
        let (code, out) = run(&action, &stdin);
        prop_assert!(code <= 1);
        // Exactly one answer line (or none, for a successful store/erase).
        prop_assert!(out.is_empty() || (out.ends_with('\n') && !out.trim_end_matches('\n').contains('\n')), "{out:?}");
        // An error never echoes stdin back: the caller may have sent a secret.
        if code == 1 && stdin.len() > 12 {
            let text = String::from_utf8_lossy(&stdin);
            prop_assert!(!out.contains(text.trim()) || text.trim().len() < 12, "{out:?}");
        }
    }

    #[test]
    fn fuzz_protocol_store_round_trip(
        server in "[a-zA-Z0-9.:/_-]{1,40}",
        user in "[^\u{0}]{1,20}",
        secret in any::<String>(),
        upper in any::<bool>(),
        trailing in tricky_text(),
    ) {
        prop_assume!(!server.trim().is_empty());
        let key = |name: &str| if upper { name.to_ascii_uppercase() } else { name.to_owned() };
        let object = serde_json::json!({key("ServerURL"): server, key("Username"): user, key("Secret"): secret});
        let mut stdin = object.to_string().into_bytes();
        stdin.push(b'\n');
        stdin.extend_from_slice(trailing.as_bytes());
        let helper = Recorder::default();
        let mut out = Vec::new();
        let code = protocol::run_with("h", &helper, &["store".into()], &mut &stdin[..], &mut out);
        prop_assert_eq!(code, 0, "{}", String::from_utf8_lossy(&out));
        let stored = helper.stored.lock().unwrap().take().unwrap();
        prop_assert_eq!(stored.server_url, server);
        prop_assert_eq!(stored.username, user);
        prop_assert_eq!(stored.secret.expose(), &secret);
    }

    #[test]
    fn fuzz_protocol_get_answer_is_json(key in "[^\r\n]{1,60}") {
        prop_assume!(!key.trim().is_empty());
        let (code, out) = run("get", key.as_bytes());
        prop_assert_eq!(code, 0);
        let value: serde_json::Value = serde_json::from_str(&out).unwrap();
        prop_assert_eq!(value["ServerURL"].as_str(), Some(key.trim()));
    }

    #[test]
    fn fuzz_www_authenticate_any(header in tricky_text()) {
        for challenge in registry_free::parse(&header) {
            prop_assert!(!challenge.is_empty());
        }
    }

    #[test]
    fn fuzz_docker_auth_config_any(text in prop_oneof![tricky_text(), json_like()], host in "[a-z0-9.:]{1,20}") {
        if let Ok(map) = AuthMap::parse_env(&text) {
            let _ = map.get(&host);
            let _ = map.usernames();
        }
    }

    #[test]
    fn fuzz_docker_auth_config_round_trip(
        host in "[a-z][a-z0-9-]{0,10}(\\.[a-z]{2,5}){0,2}(:[0-9]{2,5})?",
        user in "[^:\u{0}]{1,16}",
        password in "[^\u{0}]{1,24}",
        form in 0..3usize,
    ) {
        use base64::Engine;
        let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        let key = match form {
            0 => host.clone(),
            1 => format!("https://{host}"),
            _ => format!("http://{host}/"),
        };
        let text = serde_json::json!({"auths": {key: {"auth": encoded}}}).to_string();
        let map = AuthMap::parse_env(&text).unwrap();
        match map.get(&host) {
            Some(RegistryAuth::Basic { username, password: found }) => {
                prop_assert_eq!(username, user);
                prop_assert_eq!(found.expose(), &password);
            }
            other => prop_assert!(false, "{host}: {other:?}"),
        }
    }

    #[test]
    fn fuzz_config_files_any(config in prop_oneof![tricky_text(), json_like()], auth_json in prop_oneof![tricky_text(), json_like()]) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), &config).unwrap();
        let auth_file = dir.path().join("auth.json");
        std::fs::write(&auth_file, &auth_json).unwrap();
        let env = |name: &str| match name {
            "REGISTRY_AUTH_FILE" => Some(auth_file.clone().into_os_string()),
            _ => None,
        };
        // Any config either loads or fails with an error that does not quote the file.
        match DockerConfig::load_with_env(Some(dir.path()), &env) {
            Ok(loaded) => { let _ = loaded.credentials_for("registry.example"); }
            Err(error) => {
                let message = error.to_string();
                prop_assert!(!message.contains('\n'), "{message}");
                if config.trim().len() > 16 {
                    prop_assert!(!message.contains(config.trim()), "{message}");
                }
            }
        }
        let _ = ConfigDocument::load(dir.path());
    }

    #[test]
    fn fuzz_reference_any(input in tricky_text()) {
        if let Ok(reference) = Reference::parse(&input) {
            // What parses once parses again to the same thing from its own display form.
            let shown = reference.to_string();
            prop_assert_eq!(Reference::parse(&shown).unwrap(), reference);
        }
        if let Ok(repository) = Repository::parse(&input) {
            let shown = repository.to_string();
            prop_assert_eq!(Repository::parse(&shown).unwrap(), repository);
        }
    }

    #[test]
    fn fuzz_reference_valid_round_trip(
        registry in prop_oneof![Just(String::new()), "[a-z]([a-z0-9-]{0,8}[a-z0-9])?\\.[a-z]{2,4}(:[0-9]{2,5})?/", Just("127.0.0.1:5000/".to_owned())],
        path in "[a-z0-9]{1,8}((\\.|_|__|-+)[a-z0-9]{1,4})?(/[a-z0-9]{1,8}){0,3}",
        tag in "[A-Za-z0-9_][A-Za-z0-9_.-]{0,40}",
    ) {
        let input = format!("{registry}{path}:{tag}");
        let reference = Reference::parse(&input).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(Reference::parse(&reference.to_string()).unwrap(), reference);
    }
}

/// JSON documents shaped like docker configs, with arbitrary leaves.
fn json_like() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        tricky_text().prop_map(serde_json::Value::from),
        "[A-Za-z0-9+/=]{0,24}".prop_map(serde_json::Value::from),
    ];
    let value = leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::btree_map(
                prop_oneof![
                    Just("auths".to_owned()),
                    Just("auth".to_owned()),
                    Just("identitytoken".to_owned()),
                    Just("credsStore".to_owned()),
                    Just("credHelpers".to_owned()),
                    Just("username".to_owned()),
                    Just("password".to_owned()),
                    "[a-z.:]{1,12}",
                ],
                inner,
                0..4
            )
            .prop_map(|map| serde_json::Value::Object(map.into_iter().collect())),
        ]
    });
    value.prop_map(|value| value.to_string())
}

/// `WWW-Authenticate` lives behind the `registry` feature; without it the property checks nothing.
mod registry_free {
    #[cfg(feature = "registry")]
    pub fn parse(header: &str) -> Vec<String> {
        crate::registry::auth::parse_www_authenticate(header)
            .into_iter()
            .map(|challenge| challenge.scheme)
            .collect()
    }

    #[cfg(not(feature = "registry"))]
    pub fn parse(_: &str) -> Vec<String> {
        Vec::new()
    }
}

#[cfg(feature = "registry")]
mod registry {
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, SystemTime};

    use proptest::prelude::*;

    use super::tricky_text;
    use crate::dockerconfig::RegistryAuth;
    use crate::registry::api::ApiResponse;
    use crate::registry::auth::parse_www_authenticate;
    use crate::registry::http::{parse_link_next, parse_retry_after};
    use crate::registry::{Client, ClientOptions};

    /// A loopback server answering every request with the current `(headers, body)`, as fast as possible.
    struct Canned {
        url: String,
        reply: Arc<Mutex<(String, Vec<u8>)>>,
    }

    impl Canned {
        fn start() -> Canned {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let url = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
            let reply = Arc::new(Mutex::new((String::new(), Vec::new())));
            let shared = reply.clone();
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    let Ok(mut stream) = stream else { return };
                    let shared = shared.clone();
                    std::thread::spawn(move || {
                        let mut request = Vec::new();
                        let mut buffer = [0u8; 4096];
                        loop {
                            let Ok(n) = stream.read(&mut buffer) else {
                                return;
                            };
                            if n == 0 {
                                return;
                            }
                            request.extend_from_slice(&buffer[..n]);
                            if !request.windows(4).any(|w| w == b"\r\n\r\n") {
                                continue;
                            }
                            request.clear();
                            let (headers, body) = shared.lock().unwrap().clone();
                            let head = format!(
                                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n{headers}\r\n",
                                body.len()
                            );
                            if stream.write_all(head.as_bytes()).is_err()
                                || stream.write_all(&body).is_err()
                            {
                                return;
                            }
                        }
                    });
                }
            });
            Canned { url, reply }
        }
    }

    /// Registry JSON: arbitrary bytes, and JSON shaped like tag lists and manifests with arbitrary leaves.
    fn registry_json() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            any::<Vec<u8>>(),
            tricky_text().prop_map(String::into_bytes),
            (
                prop::collection::vec(prop_oneof![tricky_text().prop_map(serde_json::Value::from), Just(serde_json::Value::Null), any::<i64>().prop_map(serde_json::Value::from)], 0..6),
                prop_oneof![Just("tags"), Just("name"), Just("repositories"), Just("x")],
            )
                .prop_map(|(tags, key)| serde_json::json!({"name": "x", key: tags}).to_string().into_bytes()),
            (
                prop_oneof![Just(2), any::<i64>()],
                prop_oneof![
                    Just("application/vnd.oci.image.manifest.v1+json".to_owned()),
                    Just("application/vnd.oci.image.index.v1+json".to_owned()),
                    tricky_text()
                ],
                prop::collection::vec(("[a-z0-9:]{0,20}", any::<i64>()), 0..3),
            )
                .prop_map(|(version, media, entries)| {
                    let entries: Vec<_> = entries
                        .into_iter()
                        .map(|(digest, size)| serde_json::json!({"digest": digest, "size": size, "mediaType": media}))
                        .collect();
                    serde_json::json!({"schemaVersion": version, "mediaType": media, "manifests": entries, "layers": entries, "config": {"digest": "sha256:0"}})
                        .to_string()
                        .into_bytes()
                }),
        ]
    }

    fn headers() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(String::new()),
            Just("content-type: application/json\r\n".to_owned()),
            "[a-zA-Z0-9</>;=\" ,?&:.-]{0,60}".prop_map(|link| format!("link: {link}\r\n")),
            "(sha256:)?[0-9a-f]{0,64}".prop_map(|digest| format!("docker-content-digest: {digest}\r\ncontent-type: application/vnd.oci.image.manifest.v1+json\r\n")),
        ]
    }

    proptest! {
        #[test]
        fn fuzz_www_authenticate_round_trip(
            realm in "[ -~]{0,30}",
            service in "[ -~]{0,30}",
            scope in "[ -~]{0,30}",
        ) {
            let quote = |value: &str| format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""));
            let header = format!(
                "Bearer realm={},service={}, scope={}",
                quote(&realm), quote(&service), quote(&scope)
            );
            let challenges = parse_www_authenticate(&header);
            prop_assert_eq!(challenges.len(), 1, "{}", header);
            prop_assert_eq!(challenges[0].scheme.as_str(), "bearer");
            prop_assert_eq!(challenges[0].param("realm"), Some(realm.as_str()));
            prop_assert_eq!(challenges[0].param("service"), Some(service.as_str()));
            prop_assert_eq!(challenges[0].param("scope"), Some(scope.as_str()));
        }

        #[test]
        fn fuzz_link_and_retry_after_any(value in tricky_text()) {
            if let Some(target) = parse_link_next(&value) {
                prop_assert!(value.contains(&target));
            }
            let _ = parse_retry_after(&value, SystemTime::now());
        }

        #[test]
        fn fuzz_dates_round_trip(seconds in -62_135_596_800i64..253_402_300_799i64, junk in tricky_text()) {
            let text = crate::dates::format_rfc3339(seconds);
            prop_assert_eq!(crate::dates::parse_rfc3339(&text), Some(seconds));
            let _ = crate::dates::parse_rfc3339(&junk);
        }

        #[test]
        fn fuzz_api_response_any(status in 100u16..600, body in registry_json(), link in tricky_text()) {
            let mut headers = reqwest::header::HeaderMap::new();
            if let Ok(value) = reqwest::header::HeaderValue::from_str(&link) {
                headers.insert(reqwest::header::LINK, value);
            }
            let response = ApiResponse { status, headers, body, sent: Vec::new() };
            let text = response.error_text();
            // Error text is bounded: a gigantic body cannot flood a terminal or a log.
            prop_assert!(text.chars().count() <= 320, "{}", text.len());
            let _ = response.next_link();
        }
    }

    proptest! {
        // Each case is a few loopback round trips; a quarter of the cases keeps the suite fast.
        #![proptest_config(ProptestConfig {
            cases: ProptestConfig::default().cases.div_ceil(4),
            ..ProptestConfig::default()
        })]

        #[test]
        fn fuzz_registry_answers_any(body in registry_json(), headers in headers()) {
            thread_local! {
                static SERVER: Canned = Canned::start();
                static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            }
            SERVER.with(|server| {
                *server.reply.lock().unwrap() = (headers, body);
                let options = ClientOptions {
                    request_timeout: Duration::from_secs(5),
                    retry_budget: Duration::ZERO,
                    ..ClientOptions::default()
                };
                let client = Client::new(&server.url, RegistryAuth::Anonymous, &options).unwrap();
                RUNTIME.with(|runtime| {
                    runtime.block_on(async {
                        if let Ok(tags) = client.list_tags("fuzz/app").await {
                            // A tag list never yields a name the registry did not send.
                            let body = server.reply.lock().unwrap().1.clone();
                            let text = String::from_utf8_lossy(&body);
                            assert!(tags.iter().all(|tag| text.contains(tag.as_str()) || tag.is_empty() || text.contains('\\')));
                        }
                        let _ = client.get_manifest("fuzz/app", "latest").await;
                        let _ = client.head_manifest("fuzz/app", "latest").await;
                    });
                });
            });
        }
    }
}

#[cfg(feature = "ecr")]
mod ecr {
    use proptest::prelude::*;

    use super::tricky_text;
    use crate::ecr::EcrRegistry;
    use crate::ecr::identity::IdentityMap;

    proptest! {
        #[test]
        fn fuzz_ecr_identity_file_and_hosts(text in tricky_text(), host in "[a-z0-9.-]{0,60}") {
            if let Ok(map) = IdentityMap::parse(&text) {
                let _ = map.lookup(&host);
            }
            if let Some(registry) = EcrRegistry::parse(&host) {
                prop_assert!(!registry.region().is_empty());
            }
        }

        #[test]
        fn fuzz_ecr_host_round_trip(account in "[0-9]{12}", region in "[a-z]{2}-[a-z]{4,9}-[1-9]") {
            let host = format!("{account}.dkr.ecr.{region}.amazonaws.com");
            let registry = EcrRegistry::parse(&host).unwrap();
            prop_assert_eq!(registry.region(), region.as_str());
            prop_assert_eq!(registry.host(), host.as_str());
        }
    }
}

#[cfg(feature = "acr")]
mod acr {
    use proptest::prelude::*;

    use super::tricky_text;

    proptest! {
        #[test]
        fn fuzz_acr_server_url_any(input in tricky_text()) {
            if let Some(host) = crate::acr::registry_host(&input) {
                prop_assert!(!host.contains('/'), "{host}");
            }
        }
    }
}
