//! The Docker Registry HTTP API v2 / OCI distribution client.
//!
//! One [`Client`] per registry host: a pooled HTTP/1.1+2 connection set over rustls, Basic or bearer-token
//! auth (tokens cached per scope, the challenge's scope always preferred), bounded retries that honour
//! `Retry-After`, size-bounded bodies and digest-verified manifests. Credentials never follow a redirect
//! or a pagination link to another origin, and never travel over plain HTTP to a non-loopback host unless
//! [`ClientOptions::insecure`] says so; as docker does, they go to the token realm the registry's challenge
//! names, whatever its host (see [`auth`]).

pub mod api;
pub mod auth;
mod error;
pub(crate) mod http;
pub use http::on_retry;
pub mod pager;
pub mod throttle;
mod tls;

use std::collections::HashSet;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use reqwest::header::{self, HeaderMap};
use reqwest::{Method, StatusCode, Url};
use sha2::{Digest, Sha256};

use self::auth::{Authorization, TokenCache};
use self::error::error_summary;
pub use self::error::{RegistryError, failure_kind};
use self::http::ReadError;
use crate::dockerconfig::RegistryAuth;

/// The four manifest media types, in the `Accept` order every request sends.
pub const MANIFEST_MEDIA_TYPES: [&str; 4] = [
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// How to reach a registry.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Allow plain HTTP (and Basic credentials over it) to a non-loopback host.
    pub insecure: bool,
    /// Accept any TLS certificate.
    pub skip_tls_verify: bool,
    /// Extra PEM CA bundle to trust.
    pub ca_file: Option<std::path::PathBuf>,
    /// Bound on one request (connect + response).
    pub request_timeout: Duration,
    /// Bound on all retries of one logical operation.
    pub retry_budget: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            insecure: false,
            skip_tls_verify: false,
            ca_file: None,
            request_timeout: Duration::from_secs(30),
            retry_budget: Duration::from_secs(120),
        }
    }
}

/// A manifest's identity as the registry reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestInfo {
    /// `sha256:…`, from `Docker-Content-Digest` (verified against the body on GET).
    pub digest: String,
    /// The `Content-Type`.
    pub media_type: String,
    /// Body length in bytes.
    pub size: u64,
}

/// A manifest with its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Digest, media type and size.
    pub info: ManifestInfo,
    /// The exact bytes the registry returned.
    pub body: Vec<u8>,
}

/// What a delete found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    /// The registry removed it.
    Removed,
    /// It was already gone (404).
    Absent,
}

/// Largest manifest accepted (distribution's own limit is 4 MiB).
pub const MAX_MANIFEST_BYTES: usize = 4 << 20;
/// Largest tag-list or catalog page.
const MAX_PAGE_BYTES: usize = 16 << 20;
/// Largest error or token response read.
const MAX_SMALL_BYTES: usize = 1 << 20;
/// What [`Client::referrers`] knows of the registry's referrers API.
const REFERRERS_UNKNOWN: u8 = 0;
const REFERRERS_SERVED: u8 = 1;
const REFERRERS_ABSENT: u8 = 2;

/// A manifest the referrers API lists: one that names the asked digest as its `subject`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReferrerDescriptor {
    /// The referrer's digest.
    pub digest: String,
    /// Its artifact type (the spec makes the registry fill it from the config's media type).
    #[serde(default)]
    pub artifact_type: Option<String>,
}

/// The referrers a page of the referrers API lists (an image index), for any client that asks it.
pub fn parse_referrers(body: &[u8]) -> Result<Vec<ReferrerDescriptor>, String> {
    #[derive(serde::Deserialize)]
    struct Index {
        manifests: Option<Vec<ReferrerDescriptor>>,
    }
    let index: Index = serde_json::from_slice(body)
        .map_err(|error| format!("the referrers list is not an image index: {error}"))?;
    Ok(index.manifests.unwrap_or_default())
}

/// Sent as `User-Agent` on every request.
pub const USER_AGENT: &str = concat!("regkit/", env!("CARGO_PKG_VERSION"));

/// A client for one registry host. Cheap to clone; clones share connections and the token cache.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
    page_size: Option<u32>,
}

struct Inner {
    /// The host as the caller named it (`docker.io`, `127.0.0.1:5000`), for messages.
    registry: String,
    /// `scheme://host[:port]` requests go to.
    base: Url,
    http: reqwest::Client,
    auth: RegistryAuth,
    insecure: bool,
    retry_budget: Duration,
    /// The options the client was built with, for vendor API clients that must honour the same ones.
    options: ClientOptions,
    tokens: TokenCache,
    /// Set once the registry challenged with Basic: later requests send the credentials up front.
    basic_preferred: std::sync::atomic::AtomicBool,
    /// Whether the registry serves the OCI 1.1 referrers API, learnt from the first referrers GET
    /// (`REFERRERS_*`): a registry without it then costs one request per run, not one per manifest.
    referrers_api: std::sync::atomic::AtomicU8,
    /// Held while a token is fetched.
    token_fetch: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The credentials stay out of Debug output.
        f.debug_struct("Client")
            .field("registry", &self.inner.registry)
            .field("base", &self.inner.base.as_str())
            .field("page_size", &self.page_size)
            .finish_non_exhaustive()
    }
}

/// One logical request.
struct Call<'a> {
    method: Method,
    url: Url,
    /// The token scope this request needs (`repository:x:pull`); `None` for the `/v2/` ping.
    scope: Option<String>,
    operation: &'a str,
    accept: Option<&'a str>,
    content_type: Option<&'a str>,
    body: Option<&'a [u8]>,
}

impl<'a> Call<'a> {
    /// A GET of a page of a listing under `scope`.
    fn get(url: Url, scope: String, operation: &'a str, accept: &'a str) -> Call<'a> {
        Call {
            method: Method::GET,
            url,
            scope: Some(scope),
            operation,
            accept: Some(accept),
            content_type: None,
            body: None,
        }
    }
}

/// The scheme regkit speaks to `connect` (`host[:port]`, named `display` in errors): `explicit` when given
/// and allowed, else plain HTTP for loopback hosts (or with `insecure`) and HTTPS for the others.
fn scheme_for(
    connect: &str,
    display: &str,
    explicit: Option<&str>,
    insecure: bool,
) -> Result<&'static str, RegistryError> {
    let probe = Url::parse(&format!("http://{connect}")).map_err(|error| {
        RegistryError::Config(format!("invalid registry host {display:?}: {error}"))
    })?;
    let loopback = http::is_loopback(&probe);
    Ok(match explicit {
        Some("http") if loopback || insecure => "http",
        Some("http") => {
            return Err(RegistryError::Config(format!(
                "refusing plain HTTP to {display}: it is not a loopback host; use HTTPS or --insecure-registry"
            )));
        }
        Some("https") => "https",
        Some(other) => {
            return Err(RegistryError::Config(format!(
                "unsupported scheme {other:?} for registry {display}: use https:// or http://"
            )));
        }
        None if loopback || insecure => "http",
        None => "https",
    })
}

/// A reference or repository pasted as a URL (`http://127.0.0.1:5000/team/app:v1`) without its scheme,
/// when the scheme is the one regkit speaks to that host anyway (plain HTTP only to loopback hosts, or
/// with `insecure`); anything else is an error that says which form to write. Text without `://` is
/// returned as it is.
pub fn strip_url_scheme(input: &str, insecure: bool) -> Result<&str, RegistryError> {
    let Some((scheme, rest)) = input.split_once("://") else {
        return Ok(input);
    };
    let scheme = scheme.to_ascii_lowercase();
    let host = rest.split('/').next().unwrap_or(rest);
    let wanted = scheme_for(host, host, Some(&scheme), insecure)?;
    if scheme_for(host, host, None, insecure)? != wanted {
        return Err(RegistryError::Config(format!(
            "{input:?}: regkit speaks plain HTTP to the loopback host {host}, not {scheme}://; write the reference without a scheme, e.g. {rest}"
        )));
    }
    Ok(rest)
}

impl Client {
    /// A client for `registry` (`host[:port]`; `docker.io` means Docker Hub) with these credentials.
    /// Loopback hosts default to plain HTTP; others to HTTPS (plain HTTP only with `insecure`).
    ///
    /// `registry` may also carry an explicit `https://` or `http://` prefix; plain HTTP to a non-loopback
    /// host is refused unless `insecure`. With `insecure`, a non-loopback host without a prefix uses
    /// plain HTTP.
    pub fn new(
        registry: &str,
        auth: RegistryAuth,
        options: &ClientOptions,
    ) -> Result<Self, RegistryError> {
        let trimmed = registry.trim().trim_end_matches('/');
        let (scheme, host) = match trimmed.split_once("://") {
            Some((scheme, host)) => (Some(scheme.to_ascii_lowercase()), host),
            None => (None, trimmed),
        };
        if host.is_empty() || host.contains(['/', '?', '#', '@', ' ']) {
            return Err(RegistryError::Config(format!(
                "invalid registry host {registry:?}: give host[:port], e.g. registry.example.com:5000"
            )));
        }
        let (display, connect) = match host.to_ascii_lowercase().as_str() {
            "docker.io" | "index.docker.io" | "registry-1.docker.io" => {
                ("docker.io".to_string(), "registry-1.docker.io")
            }
            _ => (host.to_string(), host),
        };
        let scheme = scheme_for(connect, &display, scheme.as_deref(), options.insecure)?;
        let base = Url::parse(&format!("{scheme}://{connect}")).map_err(|error| {
            RegistryError::Config(format!("invalid registry host {registry:?}: {error}"))
        })?;
        let http = http::build_client(options, &display)?;
        Ok(Client {
            inner: Arc::new(Inner {
                registry: display,
                base,
                http,
                auth,
                insecure: options.insecure,
                retry_budget: options.retry_budget,
                options: options.clone(),
                tokens: TokenCache::default(),
                basic_preferred: std::sync::atomic::AtomicBool::new(false),
                referrers_api: std::sync::atomic::AtomicU8::new(REFERRERS_UNKNOWN),
                token_fetch: tokio::sync::Mutex::new(()),
            }),
            page_size: None,
        })
    }

    /// The same client asking for `n` entries per page of tags and `_catalog` (`?n=`; with no `Link` in
    /// the answer, a full page is followed by `?last=`). By default no `n` is sent and the registry's own
    /// page size and `Link` headers apply.
    pub fn with_page_size(mut self, n: u32) -> Self {
        self.page_size = Some(n.max(1));
        self
    }

    /// The registry host this client talks to.
    pub fn registry(&self) -> &str {
        &self.inner.registry
    }

    /// The options this client was built with (TLS, `insecure`, timeouts): vendor API clients for the same
    /// registry use them too, so `--insecure-registry` and `--skip-tls-verify-registry` reach every request.
    pub fn options(&self) -> &ClientOptions {
        &self.inner.options
    }

    /// The connection pool, for [`api::ApiClient::sharing`].
    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.inner.http
    }

    /// `scheme://host[:port]` requests go to (`registry-1.docker.io` for `docker.io`).
    pub fn base_url(&self) -> &Url {
        &self.inner.base
    }

    /// `GET /v2/`: checks that the registry speaks the API and that the credentials are accepted.
    pub async fn ping(&self) -> Result<(), RegistryError> {
        let operation = "GET /v2/";
        let call = Call {
            method: Method::GET,
            url: self.url("/v2/")?,
            scope: None,
            operation,
            accept: None,
            content_type: None,
            body: None,
        };
        let response = self.send(&call).await?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(self.status_error(response, operation).await)
        }
    }

    /// Every tag of `repository`, following pagination. `"tags": null` is an empty list.
    pub async fn list_tags(&self, repository: &str) -> Result<Vec<String>, RegistryError> {
        let repository = self.repository(repository)?;
        let url = self.url(&format!("/v2/{repository}/tags/list"))?;
        let operation = format!("GET tags of {repository}");
        self.paginate(
            url,
            "tags",
            pull_scope(&repository),
            &operation,
            Some(&repository),
        )
        .await
    }

    /// Repositories from `_catalog` whose names start with `prefix`, following pagination.
    pub async fn catalog(&self, prefix: &str) -> Result<Vec<String>, RegistryError> {
        let url = self.url("/v2/_catalog")?;
        let all = self
            .paginate(
                url,
                "repositories",
                "registry:catalog:*".into(),
                "GET _catalog",
                None,
            )
            .await?;
        Ok(all
            .into_iter()
            .filter(|name| name.starts_with(prefix))
            .collect())
    }

    /// Sends a manifest HEAD or GET by tag or digest; `None` when the manifest does not exist. The
    /// operation name comes back with the answer, for errors about it.
    async fn send_manifest(
        &self,
        method: Method,
        repository: &str,
        reference: &str,
    ) -> Result<Option<(reqwest::Response, String)>, RegistryError> {
        let repository = self.repository(repository)?;
        check_reference(reference)?;
        let operation = format!("{method} manifest {repository}:{reference}");
        let call = Call {
            method,
            url: self.url(&format!("/v2/{repository}/manifests/{reference}"))?,
            scope: Some(pull_scope(&repository)),
            operation: &operation,
            accept: Some(&ACCEPT_MANIFESTS),
            content_type: None,
            body: None,
        };
        let response = self.send_found(&call).await?;
        Ok(response.map(|response| (response, operation)))
    }

    /// Sends `call`; `None` on 404, the status error on any other failure.
    async fn send_found(
        &self,
        call: &Call<'_>,
    ) -> Result<Option<reqwest::Response>, RegistryError> {
        let response = self.send(call).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !response.status().is_success() {
            return Err(self.status_error(response, call.operation).await);
        }
        Ok(Some(response))
    }

    /// HEAD a manifest by tag or digest; `None` when it does not exist.
    pub async fn head_manifest(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<Option<ManifestInfo>, RegistryError> {
        let Some((response, _)) = self
            .send_manifest(Method::HEAD, repository, reference)
            .await?
        else {
            return Ok(None);
        };
        let headers = response.headers();
        let digest = header_str(headers, "docker-content-digest")
            .map(str::to_string)
            .or_else(|| is_digest(reference).then(|| reference.to_string()));
        let size =
            header_str(headers, header::CONTENT_LENGTH.as_str()).and_then(|v| v.parse().ok());
        match (digest, size) {
            (Some(digest), Some(size)) => Ok(Some(ManifestInfo {
                digest,
                media_type: media_type(headers, &[]),
                size,
            })),
            // Without a digest (or size) from HEAD the body is the only source of truth.
            _ => Ok(self
                .get_manifest(repository, reference)
                .await?
                .map(|manifest| manifest.info)),
        }
    }

    /// GET a manifest by tag or digest; `None` when it does not exist.
    pub async fn get_manifest(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<Option<Manifest>, RegistryError> {
        let Some((response, operation)) = self
            .send_manifest(Method::GET, repository, reference)
            .await?
        else {
            return Ok(None);
        };
        let headers = response.headers().clone();
        let body = self.read(response, MAX_MANIFEST_BYTES, &operation).await?;
        let computed = sha256_digest(&body);
        let claimed = header_str(&headers, "docker-content-digest");
        for expected in [claimed, is_digest(reference).then_some(reference)]
            .into_iter()
            .flatten()
        {
            if expected.starts_with("sha256:") && !expected.eq_ignore_ascii_case(&computed) {
                return Err(self.invalid(
                    &operation,
                    format!("the manifest body hashes to {computed}, not {expected}"),
                ));
            }
        }
        let digest = claimed.map_or(computed, str::to_string);
        Ok(Some(Manifest {
            info: ManifestInfo {
                digest,
                media_type: media_type(&headers, &body),
                size: body.len() as u64,
            },
            body,
        }))
    }

    /// PUT a manifest under a tag or digest; returns the digest the registry assigned.
    pub async fn put_manifest(
        &self,
        repository: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> Result<String, RegistryError> {
        let repository = self.repository(repository)?;
        check_reference(reference)?;
        if body.len() > MAX_MANIFEST_BYTES {
            return Err(RegistryError::Config(format!(
                "manifest for {repository}:{reference} is {} bytes, over the {MAX_MANIFEST_BYTES}-byte limit",
                body.len()
            )));
        }
        let operation = format!("PUT manifest {repository}:{reference}");
        let call = Call {
            method: Method::PUT,
            url: self.url(&format!("/v2/{repository}/manifests/{reference}"))?,
            scope: Some(format!("repository:{repository}:pull,push")),
            operation: &operation,
            accept: None,
            content_type: Some(media_type),
            body: Some(body),
        };
        let response = self.send(&call).await?;
        if !response.status().is_success() {
            return Err(self.status_error(response, &operation).await);
        }
        let computed = sha256_digest(body);
        match header_str(response.headers(), "docker-content-digest") {
            Some(digest)
                if digest.starts_with("sha256:") && !digest.eq_ignore_ascii_case(&computed) =>
            {
                Err(self.invalid(
                    &operation,
                    format!(
                        "the registry reports digest {digest} for a body that hashes to {computed}"
                    ),
                ))
            }
            Some(digest) => Ok(digest.to_string()),
            None => Ok(computed),
        }
    }

    /// DELETE a manifest by digest (removes every tag on it).
    pub async fn delete_manifest(
        &self,
        repository: &str,
        digest: &str,
    ) -> Result<Deleted, RegistryError> {
        let repository = self.repository(repository)?;
        if !is_digest(digest) {
            return Err(RegistryError::Config(format!(
                "cannot delete {repository}:{digest}: registries delete by digest (sha256:…); resolve the tag first"
            )));
        }
        let operation = format!("DELETE manifest {repository}@{digest}");
        let call = Call {
            method: Method::DELETE,
            url: self.url(&format!("/v2/{repository}/manifests/{digest}"))?,
            scope: Some(format!("repository:{repository}:delete")),
            operation: &operation,
            accept: None,
            content_type: None,
            body: None,
        };
        let response = self.send(&call).await?;
        match response.status() {
            status if status.is_success() => Ok(Deleted::Removed),
            StatusCode::NOT_FOUND => Ok(Deleted::Absent),
            StatusCode::METHOD_NOT_ALLOWED => Err(RegistryError::DeleteUnsupported {
                registry: self.inner.registry.clone(),
                message: self.error_message(response).await,
            }),
            _ => Err(self.status_error(response, &operation).await),
        }
    }

    /// HEAD a blob: whether the registry still holds it.
    pub async fn blob_exists(&self, repository: &str, digest: &str) -> Result<bool, RegistryError> {
        let operation = format!("HEAD blob {repository}@{digest}");
        let found = self
            .send_blob(Method::HEAD, repository, digest, &operation)
            .await?;
        Ok(found.is_some())
    }

    async fn send_blob(
        &self,
        method: Method,
        repository: &str,
        digest: &str,
        operation: &str,
    ) -> Result<Option<reqwest::Response>, RegistryError> {
        let repository = self.repository(repository)?;
        if !is_digest(digest) {
            return Err(RegistryError::Config(format!(
                "invalid blob digest {digest:?} for {repository}: expected algorithm:hex"
            )));
        }
        let call = Call {
            method,
            url: self.url(&format!("/v2/{repository}/blobs/{digest}"))?,
            scope: Some(pull_scope(&repository)),
            operation,
            accept: None,
            content_type: None,
            body: None,
        };
        self.send_found(&call).await
    }

    /// GET a blob (an image config), bounded in size; `None` when absent.
    pub async fn get_blob(
        &self,
        repository: &str,
        digest: &str,
        max_bytes: usize,
    ) -> Result<Option<Vec<u8>>, RegistryError> {
        let operation = format!("GET blob {repository}@{digest}");
        let Some(response) = self
            .send_blob(Method::GET, repository, digest, &operation)
            .await?
        else {
            return Ok(None);
        };
        let body = self.read(response, max_bytes, &operation).await?;
        let computed = sha256_digest(&body);
        if digest.starts_with("sha256:") && !digest.eq_ignore_ascii_case(&computed) {
            return Err(self.invalid(&operation, format!("the blob hashes to {computed}")));
        }
        Ok(Some(body))
    }

    /// Follows `Link: rel="next"` (same origin only), or `n`/`last` when the registry sends no links,
    /// through the [`pager`]. A name listed twice is kept once.
    async fn paginate(
        &self,
        first: Url,
        key: &str,
        scope: String,
        operation: &str,
        repository: Option<&str>,
    ) -> Result<Vec<String>, RegistryError> {
        let page_url = |last: Option<&str>| {
            let mut url = first.clone();
            if let Some(n) = self.page_size {
                url.query_pairs_mut().append_pair("n", &n.to_string());
                if let Some(last) = last {
                    url.query_pairs_mut().append_pair("last", last);
                }
            }
            url
        };
        let fetch = |url: Option<Url>| {
            let url = url.unwrap_or_else(|| page_url(None));
            let scope = scope.clone();
            async move {
                let call = Call::get(url.clone(), scope, operation, "application/json");
                let response = self.send(&call).await?;
                if let (StatusCode::NOT_FOUND, Some(repository)) = (response.status(), repository) {
                    return Err(RegistryError::RepositoryNotFound {
                        registry: self.inner.registry.clone(),
                        repository: repository.to_string(),
                    });
                }
                if !response.status().is_success() {
                    return Err(self.status_error(response, operation).await);
                }
                let link = self.next_link(response.headers(), &url, operation)?;
                let body = self.read(response, MAX_PAGE_BYTES, operation).await?;
                let page =
                    parse_page(&body, key).map_err(|message| self.invalid(operation, message))?;
                let next = match (link, self.page_size) {
                    (Some(next), _) => Some(next),
                    // A page longer than `n` means the registry ignores `n` (distribution 2.8 on tags)
                    // and sent everything.
                    (None, Some(n)) if page.len() == n as usize => {
                        Some(page_url(page.last().map(String::as_str)))
                    }
                    (None, _) => None,
                };
                Ok(pager::Page::new(page, next, body))
            }
        };
        let listed = pager::Pager::new(&self.inner.registry, operation, "the next link")
            .collect(fetch)
            .await?;
        let mut seen = HashSet::new();
        Ok(listed
            .into_iter()
            .filter(|item| seen.insert(item.clone()))
            .collect())
    }

    /// The `Link: <…>; rel="next"` of a page, resolved against `url`; one to another host is refused.
    fn next_link(
        &self,
        headers: &HeaderMap,
        url: &Url,
        operation: &str,
    ) -> Result<Option<Url>, RegistryError> {
        let Some(link) = headers
            .get_all(header::LINK)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .find_map(http::parse_link_next)
        else {
            return Ok(None);
        };
        let next = url
            .join(&link)
            .map_err(|error| self.invalid(operation, format!("bad Link {link:?}: {error}")))?;
        if !http::same_origin(&next, &self.inner.base) {
            return Err(self.invalid(
                operation,
                format!(
                    "pagination link leads to another host ({}); refused",
                    next.origin().ascii_serialization()
                ),
            ));
        }
        Ok(Some(next))
    }

    /// Whether a referrers GET of this run found the registry serving the OCI 1.1 referrers API.
    pub fn referrers_api_served(&self) -> bool {
        self.inner
            .referrers_api
            .load(std::sync::atomic::Ordering::Relaxed)
            == REFERRERS_SERVED
    }

    /// The referrers of the manifest `digest` through the OCI 1.1 referrers API (every page, following
    /// `Link`), or `None` when the registry does not serve it. Per the spec a registry that serves it
    /// never answers 404 (an unknown digest has an empty list), so the first 404 marks the API absent
    /// for the rest of the run and later calls send nothing.
    pub async fn referrers(
        &self,
        repository: &str,
        digest: &str,
    ) -> Result<Option<Vec<ReferrerDescriptor>>, RegistryError> {
        use std::sync::atomic::Ordering;
        if self.inner.referrers_api.load(Ordering::Relaxed) == REFERRERS_ABSENT {
            return Ok(None);
        }
        let repository = self.repository(repository)?;
        if !is_digest(digest) {
            return Err(RegistryError::Config(format!(
                "cannot list the referrers of {repository}:{digest}: not a digest"
            )));
        }
        let operation = format!("GET referrers of {repository}@{digest}");
        let first = self.url(&format!("/v2/{repository}/referrers/{digest}"))?;
        let absent = std::sync::atomic::AtomicBool::new(false);
        let fetch = |url: Option<Url>| {
            let first_page = url.is_none();
            let url = url.unwrap_or_else(|| first.clone());
            let (operation, absent) = (&operation, &absent);
            let scope = pull_scope(&repository);
            async move {
                let accept = "application/vnd.oci.image.index.v1+json";
                let call = Call::get(url.clone(), scope, operation, accept);
                let Some(response) = self.send_found(&call).await? else {
                    if !first_page {
                        return Err(self.invalid(operation, "a later page answered 404".into()));
                    }
                    absent.store(true, Ordering::Relaxed);
                    return Ok(pager::Page::new(Vec::new(), None, ()));
                };
                // regkit asks for no filter: a filtered answer would hide referrers that must follow.
                if response.headers().contains_key("oci-filters-applied") {
                    return Err(self.invalid(
                        operation,
                        "the registry filtered the referrers list unasked (OCI-Filters-Applied)"
                            .into(),
                    ));
                }
                let next = self.next_link(response.headers(), &url, operation)?;
                let body = self.read(response, MAX_PAGE_BYTES, operation).await?;
                let listed =
                    parse_referrers(&body).map_err(|message| self.invalid(operation, message))?;
                Ok(pager::Page::new(listed, next, body))
            }
        };
        let listed = pager::Pager::new(&self.inner.registry, &operation, "the next link")
            .collect(fetch)
            .await?;
        if absent.load(Ordering::Relaxed) {
            self.inner
                .referrers_api
                .store(REFERRERS_ABSENT, Ordering::Relaxed);
            return Ok(None);
        }
        self.inner
            .referrers_api
            .store(REFERRERS_SERVED, Ordering::Relaxed);
        let mut seen = HashSet::new();
        Ok(Some(
            listed
                .into_iter()
                .filter(|referrer| seen.insert(referrer.digest.clone()))
                .collect(),
        ))
    }

    /// One request with the shared retry policy ([`http::send_with_retries`]) within the retry budget.
    async fn execute(
        &self,
        operation: &str,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, RegistryError> {
        http::send_with_retries(build, self.inner.retry_budget)
            .await
            .map_err(|error| self.transport(operation, &error))
    }

    fn build(
        &self,
        call: &Call<'_>,
        authorization: Option<&Authorization>,
    ) -> reqwest::RequestBuilder {
        let mut request = self
            .inner
            .http
            .request(call.method.clone(), call.url.clone());
        if let Some(accept) = call.accept {
            request = request.header(header::ACCEPT, accept);
        }
        if let Some(content_type) = call.content_type {
            request = request.header(header::CONTENT_TYPE, content_type);
        }
        if let Some(body) = call.body {
            request = request.body(body.to_vec());
        }
        if let Some(authorization) = authorization {
            request = request.header(header::AUTHORIZATION, authorization.value.clone());
        }
        request
    }

    fn url(&self, path: &str) -> Result<Url, RegistryError> {
        self.inner.base.join(path).map_err(|error| {
            RegistryError::Config(format!("cannot build a URL for {path}: {error}"))
        })
    }

    /// Validates a repository path; a one-component name on Docker Hub means `library/<name>`.
    fn repository(&self, repository: &str) -> Result<String, RegistryError> {
        let valid = !repository.is_empty()
            && repository.split('/').all(|part| {
                !part.is_empty()
                    && part != "."
                    && part != ".."
                    && part
                        .bytes()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
            });
        if !valid {
            return Err(RegistryError::Config(format!(
                "invalid repository name {repository:?} for {}: use path components of letters, digits, '.', '_', '-'",
                self.inner.registry
            )));
        }
        if self.inner.registry == "docker.io" && !repository.contains('/') {
            return Ok(format!("library/{repository}"));
        }
        Ok(repository.to_string())
    }

    async fn read(
        &self,
        response: reqwest::Response,
        max: usize,
        operation: &str,
    ) -> Result<Vec<u8>, RegistryError> {
        http::read_bounded(response, max)
            .await
            .map_err(|error| match error {
                ReadError::TooLarge(max) => {
                    self.invalid(operation, format!("body larger than {max} bytes"))
                }
                ReadError::Transport(error) => self.transport(operation, &error),
            })
    }

    /// The registry's error codes and messages from an error body, as one line.
    async fn error_message(&self, response: reqwest::Response) -> String {
        let status = response.status();
        let body = http::read_bounded(response, MAX_SMALL_BYTES)
            .await
            .unwrap_or_default();
        error_summary(status, &body, &self.sent_credentials())
    }

    async fn status_error(&self, response: reqwest::Response, operation: &str) -> RegistryError {
        let status = response.status();
        let message = self.error_message(response).await;
        let registry = self.inner.registry.clone();
        match status {
            StatusCode::UNAUTHORIZED => RegistryError::Unauthorized { registry, message },
            StatusCode::FORBIDDEN => RegistryError::Denied { registry, message },
            _ => RegistryError::Status {
                registry,
                operation: operation.to_string(),
                status: status.as_u16(),
                message,
            },
        }
    }

    fn invalid(&self, operation: &str, message: String) -> RegistryError {
        RegistryError::InvalidResponse {
            registry: self.inner.registry.clone(),
            operation: operation.to_string(),
            message,
        }
    }

    fn transport(&self, operation: &str, error: &reqwest::Error) -> RegistryError {
        error::transport(
            &self.inner.registry,
            operation,
            error,
            &self.sent_credentials(),
        )
    }
}

/// The `Accept` value for manifests: all four types.
static ACCEPT_MANIFESTS: LazyLock<String> = LazyLock::new(|| MANIFEST_MEDIA_TYPES.join(", "));

fn pull_scope(repository: &str) -> String {
    format!("repository:{repository}:pull")
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
}

/// `Content-Type` without parameters, else the body's `mediaType`.
fn media_type(headers: &HeaderMap, body: &[u8]) -> String {
    let from_header = header_str(headers, header::CONTENT_TYPE.as_str())
        .and_then(|value| value.split(';').next())
        .map(str::trim)
        .filter(|value| !value.is_empty());
    match from_header {
        Some(value) => value.to_string(),
        None => serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|value| value.get("mediaType")?.as_str().map(str::to_string))
            .unwrap_or_default(),
    }
}

/// `algorithm:encoded` as the distribution spec defines a digest.
fn is_digest(reference: &str) -> bool {
    let Some((algorithm, encoded)) = reference.split_once(':') else {
        return false;
    };
    !algorithm.is_empty()
        && algorithm.bytes().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'+' | b'.' | b'_' | b'-')
        })
        && encoded.len() >= 32
        && encoded
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'=' | b'_' | b'-'))
}

/// A tag (`[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`) or a digest; anything else would alter the URL path.
fn check_reference(reference: &str) -> Result<(), RegistryError> {
    let tag = !reference.is_empty()
        && reference.len() <= 128
        && !reference.starts_with(['.', '-'])
        && reference
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
    if tag || is_digest(reference) {
        Ok(())
    } else {
        Err(RegistryError::Config(format!(
            "invalid tag or digest {reference:?}"
        )))
    }
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    let mut digest = String::with_capacity(7 + 64);
    digest.push_str("sha256:");
    for byte in hash.iter() {
        digest.push(char::from(b"0123456789abcdef"[usize::from(byte >> 4)]));
        digest.push(char::from(b"0123456789abcdef"[usize::from(byte & 15)]));
    }
    digest
}

/// The names under `key` in a tags or catalog page; `null` is an empty page.
fn parse_page(body: &[u8], key: &str) -> Result<Vec<String>, String> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|error| format!("page is not JSON: {error}"))?;
    match value.get(key) {
        None | Some(serde_json::Value::Null) => Ok(Vec::new()),
        Some(serde_json::Value::Array(names)) => names
            .iter()
            .map(|name| {
                name.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("a non-string in {key:?}"))
            })
            .collect(),
        Some(_) => Err(format!("{key:?} is not a list")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    #[test]
    fn digests_and_references() {
        assert!(is_digest(&sha256_digest(b"x")));
        assert!(!is_digest("latest"));
        assert!(!is_digest("sha256:short"));
        assert!(check_reference("v1.2.3-rc_1").is_ok());
        assert!(check_reference(&sha256_digest(b"x")).is_ok());
        for bad in [
            "",
            "../x",
            "a/b",
            ".hidden",
            "-x",
            "a?b",
            "a b",
            &"x".repeat(129),
        ] {
            assert!(check_reference(bad).is_err(), "{bad}");
        }
        assert_eq!(
            sha256_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn pages_with_null_and_bad_shapes() {
        assert_eq!(
            parse_page(br#"{"name":"a","tags":null}"#, "tags").unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(
            parse_page(br#"{"tags":["a","b"]}"#, "tags").unwrap(),
            ["a", "b"]
        );
        assert!(parse_page(br#"{"tags":"a"}"#, "tags").is_err());
        assert!(parse_page(br#"{"tags":[1]}"#, "tags").is_err());
        assert!(parse_page(b"<html>", "tags").is_err());
    }

    fn client(registry: &str, insecure: bool) -> Result<Client, RegistryError> {
        Client::new(
            registry,
            RegistryAuth::Anonymous,
            &ClientOptions {
                insecure,
                ..ClientOptions::default()
            },
        )
    }

    #[test]
    fn schemes_by_host_and_insecure() {
        assert_eq!(
            client("127.0.0.1:5000", false).unwrap().inner.base.as_str(),
            "http://127.0.0.1:5000/"
        );
        assert_eq!(
            client("localhost", false).unwrap().inner.base.scheme(),
            "http"
        );
        assert_eq!(
            client("registry.example", false)
                .unwrap()
                .inner
                .base
                .scheme(),
            "https"
        );
        assert_eq!(
            client("registry.example", true)
                .unwrap()
                .inner
                .base
                .scheme(),
            "http"
        );
        assert_eq!(
            client("https://127.0.0.1:5000", false)
                .unwrap()
                .inner
                .base
                .scheme(),
            "https"
        );
        assert!(matches!(
            client("http://registry.example", false),
            Err(RegistryError::Config(_))
        ));
        assert!(matches!(
            client("ftp://registry.example", true),
            Err(RegistryError::Config(_))
        ));
        assert!(matches!(
            client("a/b", false),
            Err(RegistryError::Config(_))
        ));
        let hub = client("docker.io", false).unwrap();
        assert_eq!(hub.registry(), "docker.io");
        assert_eq!(hub.inner.base.as_str(), "https://registry-1.docker.io/");
        assert_eq!(hub.repository("alpine").unwrap(), "library/alpine");
        assert!(hub.repository("a/../b").is_err());
    }

    #[test]
    fn pasted_urls_lose_the_scheme_regkit_would_use_anyway() {
        let strip = |input, insecure| strip_url_scheme(input, insecure).map_err(|e| e.to_string());
        assert_eq!(
            strip("127.0.0.1:5120/x/app:v1", false).unwrap(),
            "127.0.0.1:5120/x/app:v1"
        );
        assert_eq!(
            strip("http://127.0.0.1:5120/x/app:v1", false).unwrap(),
            "127.0.0.1:5120/x/app:v1"
        );
        assert_eq!(
            strip("HTTPS://reg.example/x/app", false).unwrap(),
            "reg.example/x/app"
        );
        assert_eq!(
            strip("http://reg.example:5000/x/app", true).unwrap(),
            "reg.example:5000/x/app"
        );
        let refused = strip("http://reg.example/x/app:v1", false).unwrap_err();
        assert!(refused.contains("--insecure-registry"), "{refused}");
        let loopback_tls = strip("https://127.0.0.1:5120/x/app:v1", false).unwrap_err();
        assert!(
            loopback_tls.contains("e.g. 127.0.0.1:5120/x/app:v1"),
            "{loopback_tls}"
        );
        assert!(
            strip("oci://reg.example/x/app", false)
                .unwrap_err()
                .contains("https:// or http://")
        );
    }

    #[test]
    fn clients_and_their_futures_cross_threads() {
        fn send<T: Send + Sync>(_: &T) {}
        fn future<T: Send>(_: T) {}
        let client = client("127.0.0.1:1", false).unwrap();
        send(&client);
        future(client.ping());
        future(client.list_tags("x"));
        future(client.catalog(""));
        future(client.head_manifest("x", "latest"));
        future(client.get_manifest("x", "latest"));
        future(client.put_manifest("x", "latest", "application/json", b"{}"));
        future(client.delete_manifest("x", "sha256:00"));
        future(client.get_blob("x", "sha256:00", 1));
    }

    #[test]
    fn debug_output_has_no_secret() {
        let client = Client::new(
            "127.0.0.1:1",
            RegistryAuth::Basic {
                username: "u".into(),
                password: Secret::new("hunter2-secret".into()),
            },
            &ClientOptions::default(),
        )
        .unwrap();
        assert!(!format!("{client:?}").contains("hunter2"));
    }
}
