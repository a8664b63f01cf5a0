//! Pushes small, valid images straight through the registry API, so tests can set up thousands of tags in
//! seconds without docker or skopeo: a one-file tar layer (gzip'd or plain), a config blob and an OCI or
//! docker v2s2 manifest, plus image indexes. Handles the registry's Basic and Bearer (token server)
//! challenges. Every function panics with a clear message on failure: it is test set-up.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use sha2::{Digest, Sha256};
use ureq::Agent;
use ureq::http::{Request, Response};

/// The `Accept` header that makes a registry answer with any of the four manifest kinds.
pub const ACCEPT_ALL: &str = "application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json";

/// The `created` date of configs pushed without an explicit one.
pub const DEFAULT_CREATED: &str = "2024-01-01T00:00:00Z";

/// Parallel connections used for bulk pushes and lookups.
const WORKERS: usize = 8;

/// Credentials for the registry. `Basic` answers both a `Basic` challenge (htpasswd) and a `Bearer`
/// challenge (sent to the token server as Basic credentials); `None` fetches anonymous tokens.
#[derive(Debug, Clone)]
pub enum Auth {
    /// No credentials.
    None,
    /// `(user, password)`.
    Basic(String, String),
}

impl Auth {
    /// `Auth::Basic` from string slices.
    pub fn basic(user: &str, password: &str) -> Auth {
        Auth::Basic(user.into(), password.into())
    }
}

/// The manifest and layer flavour of a pushed image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// OCI image manifest, gzip'd layer.
    #[default]
    Oci,
    /// OCI image manifest, uncompressed tar layer.
    OciUncompressed,
    /// Docker image manifest v2 schema 2, gzip'd layer.
    Docker,
}

impl Format {
    /// The manifest media type.
    pub fn manifest_type(self) -> &'static str {
        match self {
            Format::Oci | Format::OciUncompressed => "application/vnd.oci.image.manifest.v1+json",
            Format::Docker => "application/vnd.docker.distribution.manifest.v2+json",
        }
    }

    /// The media type of an index of manifests of this format.
    pub fn index_type(self) -> &'static str {
        match self {
            Format::Oci | Format::OciUncompressed => "application/vnd.oci.image.index.v1+json",
            Format::Docker => "application/vnd.docker.distribution.manifest.list.v2+json",
        }
    }

    fn config_type(self) -> &'static str {
        match self {
            Format::Oci | Format::OciUncompressed => "application/vnd.oci.image.config.v1+json",
            Format::Docker => "application/vnd.docker.container.image.v1+json",
        }
    }

    fn layer_type(self) -> &'static str {
        match self {
            Format::Oci => "application/vnd.oci.image.layer.v1.tar+gzip",
            Format::OciUncompressed => "application/vnd.oci.image.layer.v1.tar",
            Format::Docker => "application/vnd.docker.image.rootfs.diff.tar.gzip",
        }
    }
}

/// An image index pushed by [`push_index`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Index {
    /// The index's own digest.
    pub digest: String,
    /// The digests of the two child manifests (linux/amd64, linux/arm64), untagged.
    pub children: Vec<String>,
}

/// Pushes one new OCI image (gzip'd layer) to `repo` and tags it with every tag in `tags`; returns its
/// digest. Every call makes a fresh image (a new digest), even for the same tags.
pub fn push(registry_url: &str, repo: &str, tags: &[&str], auth: &Auth) -> String {
    push_as(registry_url, repo, tags, auth, Format::Oci)
}

/// [`push`] in the given format.
pub fn push_as(
    registry_url: &str,
    repo: &str,
    tags: &[&str],
    auth: &Auth,
    format: Format,
) -> String {
    let pusher = Pusher::new(registry_url, auth);
    let layer = pusher.push_layer(repo, format);
    pusher.push_image(
        repo,
        tags,
        format,
        &layer,
        &Config::new(DEFAULT_CREATED, "amd64"),
    )
}

/// Pushes one distinct OCI image per tag (each a new digest; they share one layer); returns `(tag, digest)`
/// in the order of `tags`.
pub fn push_distinct(
    registry_url: &str,
    repo: &str,
    tags: &[&str],
    auth: &Auth,
) -> Vec<(String, String)> {
    let dated: Vec<(&str, &str)> = tags.iter().map(|tag| (*tag, DEFAULT_CREATED)).collect();
    push_distinct_created(registry_url, repo, &dated, auth, Format::Oci)
}

/// [`push_distinct`] with each image's config `created` date (RFC 3339) given per tag: `(tag, created)`.
pub fn push_distinct_created(
    registry_url: &str,
    repo: &str,
    tags: &[(&str, &str)],
    auth: &Auth,
    format: Format,
) -> Vec<(String, String)> {
    let pusher = Pusher::new(registry_url, auth);
    let layer = pusher.push_layer(repo, format);
    parallel_map(tags, |(tag, created)| {
        let digest =
            pusher.push_image(repo, &[tag], format, &layer, &Config::new(created, "amd64"));
        (tag.to_string(), digest)
    })
}

/// Pushes an image index referencing two new child manifests (linux/amd64 and linux/arm64, pushed by
/// digest, untagged) and tags the index `tag`.
pub fn push_index(registry_url: &str, repo: &str, tag: &str, auth: &Auth, format: Format) -> Index {
    let pusher = Pusher::new(registry_url, auth);
    let layer = pusher.push_layer(repo, format);
    let mut children = Vec::new();
    let mut entries = Vec::new();
    for arch in ["amd64", "arm64"] {
        let manifest =
            pusher.image_manifest(repo, format, &layer, &Config::new(DEFAULT_CREATED, arch));
        let digest = pusher.put_manifest(
            repo,
            &sha256_digest(&manifest),
            format.manifest_type(),
            &manifest,
        );
        entries.push(serde_json::json!({
            "mediaType": format.manifest_type(),
            "digest": digest,
            "size": manifest.len(),
            "platform": {"architecture": arch, "os": "linux"},
        }));
        children.push(digest);
    }
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": format.index_type(),
        "manifests": entries,
    }))
    .expect("serialise index");
    let digest = pusher.put_manifest(repo, tag, format.index_type(), &index);
    Index { digest, children }
}

/// Every tag of `repo` with the digest it points at (HEAD with all four manifest types accepted). An
/// unknown repository is an empty map.
pub fn tag_digests(registry_url: &str, repo: &str, auth: &Auth) -> BTreeMap<String, String> {
    let pusher = Pusher::new(registry_url, auth);
    let tags = pusher.list_tags(repo);
    parallel_map(&tags, |tag| {
        let digest = pusher
            .head_manifest(repo, tag)
            .unwrap_or_else(|| panic!("tag {repo}:{tag} is listed but has no manifest"));
        (tag.clone(), digest)
    })
    .into_iter()
    .collect()
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    let mut out = String::from("sha256:");
    for byte in hash.iter() {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

/// A connection pool and auth state for one registry: the building block of the functions above, for tests
/// that need several steps on one session.
pub struct Pusher {
    base: String,
    agent: Agent,
    auth: Auth,
    authorization: Mutex<Option<String>>,
    /// Config digests already uploaded in this session (configs are shared between OCI images).
    pushed_configs: Mutex<HashSet<String>>,
}

/// A blob already in the repository: its digest and size.
#[derive(Debug, Clone)]
pub struct Blob {
    /// `sha256:…`.
    pub digest: String,
    /// Length in bytes.
    pub size: usize,
    /// For layers, the digest of the uncompressed tar (the config's `diff_id`).
    pub diff_id: String,
}

/// What makes an image's config (and so its digest) unique.
struct Config<'a> {
    created: &'a str,
    architecture: &'a str,
    nonce: u64,
}

impl<'a> Config<'a> {
    fn new(created: &'a str, architecture: &'a str) -> Self {
        // A per-process counter plus the start time keeps images distinct across calls and test runs.
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let started = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0) as u64;
        Config {
            created,
            architecture,
            nonce: started
                ^ (COUNTER.fetch_add(1, Ordering::Relaxed) << 40)
                ^ u64::from(std::process::id()),
        }
    }
}

impl Pusher {
    /// A session on `registry_url` (`http://127.0.0.1:PORT`).
    pub fn new(registry_url: &str, auth: &Auth) -> Pusher {
        let agent = Agent::new_with_config(
            Agent::config_builder()
                .http_status_as_error(false)
                .max_redirects(0)
                .max_idle_connections_per_host(WORKERS * 2)
                .timeout_global(Some(Duration::from_secs(30)))
                .build(),
        );
        Pusher {
            base: registry_url.trim_end_matches('/').to_string(),
            agent,
            auth: auth.clone(),
            authorization: Mutex::new(None),
            pushed_configs: Mutex::new(HashSet::new()),
        }
    }

    /// Uploads the shared test layer (if absent) in `format`'s compression.
    pub fn push_layer(&self, repo: &str, format: Format) -> Blob {
        let tar = layer_tar();
        let diff_id = sha256_digest(&tar);
        let bytes = if format == Format::OciUncompressed {
            tar
        } else {
            gzip_stored(&tar)
        };
        let digest = sha256_digest(&bytes);
        let url = format!("{}/v2/{repo}/blobs/{digest}", self.base);
        if self.send("HEAD", &url, &[], None).status() != 200 {
            self.push_blob(repo, &bytes);
        }
        Blob {
            digest,
            size: bytes.len(),
            diff_id,
        }
    }

    /// Uploads a blob (POST then PUT); returns its digest.
    pub fn push_blob(&self, repo: &str, bytes: &[u8]) -> String {
        let digest = sha256_digest(bytes);
        let start = self.send(
            "POST",
            &format!("{}/v2/{repo}/blobs/uploads/", self.base),
            &[],
            Some(&[]),
        );
        assert_eq!(
            start.status(),
            202,
            "starting a blob upload to {repo}: {}",
            describe(start)
        );
        let location = header(&start, "location").expect("upload Location");
        let location = if location.starts_with('/') {
            format!("{}{location}", self.base)
        } else {
            location
        };
        let separator = if location.contains('?') { '&' } else { '?' };
        let url = format!("{location}{separator}digest={digest}");
        let done = self.send(
            "PUT",
            &url,
            &[("content-type", "application/octet-stream")],
            Some(bytes),
        );
        assert_eq!(
            done.status(),
            201,
            "finishing a blob upload to {repo}: {}",
            describe(done)
        );
        digest
    }

    /// PUTs a manifest under `reference`; returns the registry's digest (checked against the body).
    pub fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> String {
        let url = format!("{}/v2/{repo}/manifests/{reference}", self.base);
        let response = self.send("PUT", &url, &[("content-type", media_type)], Some(body));
        assert_eq!(
            response.status(),
            201,
            "PUT manifest {repo}:{reference}: {}",
            describe(response)
        );
        let digest = header(&response, "docker-content-digest").expect("Docker-Content-Digest");
        assert_eq!(
            digest,
            sha256_digest(body),
            "registry digest of {repo}:{reference}"
        );
        digest
    }

    /// The digest `reference` points at, or `None` when absent.
    pub fn head_manifest(&self, repo: &str, reference: &str) -> Option<String> {
        let url = format!("{}/v2/{repo}/manifests/{reference}", self.base);
        let response = self.send("HEAD", &url, &[("accept", ACCEPT_ALL)], None);
        match response.status().as_u16() {
            200 => Some(header(&response, "docker-content-digest").expect("Docker-Content-Digest")),
            404 => None,
            _ => panic!("HEAD manifest {repo}:{reference}: {}", describe(response)),
        }
    }

    /// The media type and body of the manifest `reference` points at, or `None` when absent.
    pub fn manifest(&self, repo: &str, reference: &str) -> Option<(String, Vec<u8>)> {
        let url = format!("{}/v2/{repo}/manifests/{reference}", self.base);
        let mut response = self.send("GET", &url, &[("accept", ACCEPT_ALL)], None);
        match response.status().as_u16() {
            200 => {}
            404 => return None,
            _ => panic!("GET manifest {repo}:{reference}: {}", describe(response)),
        }
        let media_type = header(&response, "content-type").unwrap_or_default();
        let body = response.body_mut().read_to_vec().expect("manifest body");
        Some((media_type, body))
    }

    /// Every tag of `repo` (following `Link` pagination); empty for an unknown repository.
    pub fn list_tags(&self, repo: &str) -> Vec<String> {
        let mut url = format!("{}/v2/{repo}/tags/list", self.base);
        let mut tags = Vec::new();
        loop {
            let mut response = self.send("GET", &url, &[], None);
            match response.status().as_u16() {
                200 => {}
                404 => return tags,
                _ => panic!("listing tags of {repo}: {}", describe(response)),
            }
            let next = header(&response, "link").and_then(|link| {
                let target = link
                    .split('>')
                    .next()?
                    .trim()
                    .trim_start_matches('<')
                    .to_string();
                Some(if target.starts_with('/') {
                    format!("{}{target}", self.base)
                } else {
                    target
                })
            });
            let body: serde_json::Value =
                serde_json::from_slice(&response.body_mut().read_to_vec().expect("tag list body"))
                    .expect("tag list JSON");
            if let Some(page) = body["tags"].as_array() {
                tags.extend(page.iter().filter_map(|tag| tag.as_str().map(String::from)));
            }
            match next {
                Some(next) => url = next,
                None => return tags,
            }
        }
    }

    fn push_image(
        &self,
        repo: &str,
        tags: &[&str],
        format: Format,
        layer: &Blob,
        config: &Config,
    ) -> String {
        let manifest = self.image_manifest(repo, format, layer, config);
        let mut digest = None;
        for tag in tags {
            let pushed = self.put_manifest(repo, tag, format.manifest_type(), &manifest);
            digest = Some(pushed);
        }
        digest.unwrap_or_else(|| {
            self.put_manifest(
                repo,
                &sha256_digest(&manifest),
                format.manifest_type(),
                &manifest,
            )
        })
    }

    /// Uploads the config (once per distinct config) and returns the manifest bytes referencing it and
    /// `layer`. OCI manifests carry the image's nonce as an annotation, so images with equal configs still
    /// differ and bulk pushes cost one request per image; docker v2s2 has no annotations, so there the
    /// nonce goes into the config.
    fn image_manifest(&self, repo: &str, format: Format, layer: &Blob, config: &Config) -> Vec<u8> {
        let mut labels = serde_json::Map::new();
        if format == Format::Docker {
            labels.insert(
                "org.regkit.test.nonce".into(),
                config.nonce.to_string().into(),
            );
        }
        let config_bytes = serde_json::to_vec(&serde_json::json!({
            "created": config.created,
            "architecture": config.architecture,
            "os": "linux",
            "config": {"Labels": labels},
            "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]},
            "history": [{"created": config.created, "created_by": "regkit test harness"}],
        }))
        .expect("serialise config");
        let config_digest = sha256_digest(&config_bytes);
        // Keyed by repository too: a blob must be linked into every repository that references it. The
        // lock is held over the upload: distribution races when two uploads of one blob commit at once
        // (the loser's manifest then sees the blob as unknown).
        let key = format!("{repo}@{config_digest}");
        let mut pushed = self.pushed_configs.lock().expect("config cache lock");
        if !pushed.contains(&key) {
            self.push_blob(repo, &config_bytes);
            pushed.insert(key);
        }
        drop(pushed);
        let mut manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": format.manifest_type(),
            "config": {"mediaType": format.config_type(), "digest": config_digest, "size": config_bytes.len()},
            "layers": [{"mediaType": format.layer_type(), "digest": layer.digest, "size": layer.size}],
        });
        if format != Format::Docker {
            manifest["annotations"] =
                serde_json::json!({"org.regkit.test.nonce": config.nonce.to_string()});
        }
        serde_json::to_vec(&manifest).expect("serialise manifest")
    }

    /// One request; on a 401 answers the challenge once and resends.
    fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Response<ureq::Body> {
        let response = self.send_once(method, url, headers, body);
        if response.status() != 401 {
            return response;
        }
        let challenge = header(&response, "www-authenticate")
            .unwrap_or_else(|| panic!("{method} {url}: 401 without WWW-Authenticate"));
        let authorization = self.answer(&challenge);
        *self.authorization.lock().expect("auth lock") = Some(authorization);
        let response = self.send_once(method, url, headers, body);
        assert_ne!(
            response.status(),
            401,
            "{method} {url} still unauthorized after answering {challenge}"
        );
        response
    }

    fn send_once(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Response<ureq::Body> {
        let mut request = Request::builder().method(method).uri(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(authorization) = self.authorization.lock().expect("auth lock").clone() {
            request = request.header("authorization", authorization);
        }
        let result = match body {
            Some(body) => self.agent.run(request.body(body).expect("request")),
            None => self.agent.run(request.body(()).expect("request")),
        };
        result.unwrap_or_else(|error| panic!("{method} {url}: {error}"))
    }

    /// The `Authorization` value answering a `WWW-Authenticate` challenge.
    fn answer(&self, challenge: &str) -> String {
        let (scheme, params) = parse_challenge(challenge);
        if scheme.eq_ignore_ascii_case("basic") {
            let Auth::Basic(user, password) = &self.auth else {
                panic!("the registry wants Basic credentials and the test gave none");
            };
            return basic(user, password);
        }
        assert!(
            scheme.eq_ignore_ascii_case("bearer"),
            "unsupported challenge {challenge}"
        );
        let realm = params
            .get("realm")
            .unwrap_or_else(|| panic!("no realm in {challenge}"));
        let mut request = self.agent.get(realm);
        for key in ["service", "scope"] {
            if let Some(value) = params.get(key) {
                request = request.query(key, value);
            }
        }
        if let Auth::Basic(user, password) = &self.auth {
            request = request
                .query("account", user)
                .header("authorization", basic(user, password));
        }
        let mut response = request
            .call()
            .unwrap_or_else(|error| panic!("token request to {realm}: {error}"));
        assert_eq!(response.status(), 200, "token request to {realm} refused");
        let body: serde_json::Value =
            serde_json::from_slice(&response.body_mut().read_to_vec().expect("token body"))
                .expect("token JSON");
        let token = body["token"]
            .as_str()
            .or(body["access_token"].as_str())
            .expect("token in token response");
        format!("Bearer {token}")
    }
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// `Bearer realm="…",service="…",scope="repository:a:pull,push"` → scheme and parameters. One challenge is
/// enough for the test registries.
fn parse_challenge(challenge: &str) -> (String, BTreeMap<String, String>) {
    let challenge = challenge.trim();
    let (scheme, mut rest) = challenge.split_once(' ').unwrap_or((challenge, ""));
    let mut params = BTreeMap::new();
    loop {
        rest = rest.trim_start_matches([' ', ',']);
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let mut value = String::new();
        let mut chars = after.chars();
        let mut consumed = 0;
        if after.starts_with('"') {
            chars.next();
            consumed += 1;
            while let Some(c) = chars.next() {
                consumed += c.len_utf8();
                match c {
                    '"' => break,
                    '\\' => {
                        if let Some(escaped) = chars.next() {
                            consumed += escaped.len_utf8();
                            value.push(escaped);
                        }
                    }
                    _ => value.push(c),
                }
            }
        } else {
            let raw = after.split(',').next().unwrap_or("");
            value = raw.trim().to_string();
            consumed = raw.len();
        }
        params.insert(key.trim().to_ascii_lowercase(), value);
        rest = &after[consumed..];
    }
    (scheme.to_string(), params)
}

fn header(response: &Response<ureq::Body>, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(String::from)
}

fn describe(mut response: Response<ureq::Body>) -> String {
    let status = response.status();
    let body = response.body_mut().read_to_string().unwrap_or_default();
    format!("{status} {body}")
}

/// Runs `f` over `items` on a few threads (sharing the agent's connection pool); results in input order.
fn parallel_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let chunk = items.len().div_ceil(WORKERS).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| scope.spawn(|| part.iter().map(&f).collect::<Vec<R>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|handle| handle.join().expect("push worker panicked"))
            .collect()
    })
}

/// A tar archive holding one small file.
fn layer_tar() -> Vec<u8> {
    let content = b"regkit test layer\n";
    let mut header = [0u8; 512];
    let mut put =
        |offset: usize, field: &[u8]| header[offset..offset + field.len()].copy_from_slice(field);
    put(0, b"regkit-test.txt");
    put(100, b"0000644\0");
    put(108, b"0000000\0");
    put(116, b"0000000\0");
    put(124, format!("{:011o}\0", content.len()).as_bytes());
    put(136, b"00000000000\0");
    put(148, b"        ");
    put(156, b"0");
    put(257, b"ustar\0");
    put(263, b"00");
    let checksum: u32 = header.iter().map(|b| u32::from(*b)).sum();
    header[148..156].copy_from_slice(format!("{checksum:06o}\0 ").as_bytes());
    let mut tar = header.to_vec();
    tar.extend_from_slice(content);
    tar.resize(512 * 2, 0);
    tar.resize(512 * 4, 0);
    tar
}

/// `data` as a valid gzip stream of stored (uncompressed) deflate blocks.
fn gzip_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    let chunks: Vec<&[u8]> = data.chunks(0xffff).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        out.push(u8::from(i + 1 == chunks.len()));
        let len = chunk.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for byte in data {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
