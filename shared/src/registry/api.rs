//! A client for a vendor's own REST API (Docker Hub, GitHub, GitLab, Harbor, Quay, Nexus, Artifactory…),
//! for the operations the v2 API cannot do.
//!
//! It shares the registry client's transport (TLS options, timeouts, redirect policy, `User-Agent`) and retry
//! policy (429/503 `Retry-After`, backoff, bounded in time), refuses to send credentials over plain HTTP to a
//! non-loopback host unless `insecure`, refuses to follow pagination links to another origin, and bounds
//! every body. Vendors interpret statuses themselves: every answer comes back as an [`ApiResponse`].

use std::time::Duration;

use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, Url};
use serde::de::DeserializeOwned;

use super::auth::basic_credentials;
use super::http::{self, ReadError};
use super::throttle;
use super::{ClientOptions, RegistryError};
use crate::secret::{Secret, redact};

/// `base_url` parsed, refused when it is not HTTP(S) or is plain HTTP to a non-loopback host without
/// `insecure`.
fn checked_base(
    base_url: &str,
    label: &str,
    options: &ClientOptions,
) -> Result<Url, RegistryError> {
    let base = Url::parse(base_url).map_err(|error| {
        RegistryError::Config(format!("invalid {label} URL {base_url:?}: {error}"))
    })?;
    if !matches!(base.scheme(), "https" | "http") {
        return Err(RegistryError::Config(format!(
            "invalid {label} URL {base_url:?}: use https://"
        )));
    }
    if base.scheme() == "http" && !http::is_loopback(&base) && !options.insecure {
        return Err(RegistryError::Config(format!(
            "refusing plain HTTP to the {label} at {base}: use HTTPS or --insecure-registry"
        )));
    }
    Ok(base)
}

/// Largest vendor API body read (a page of tags or artifacts).
pub const MAX_API_BYTES: usize = 16 << 20;

/// The OAuth 2.0 form parameters that carry a credential (RFC 6749, 7523, 8693; Azure's exchange).
const CREDENTIAL_PARAMETERS: [&str; 8] = [
    "password",
    "client_secret",
    "client_assertion",
    "assertion",
    "refresh_token",
    "access_token",
    "subject_token",
    "actor_token",
];

/// A vendor REST API at one base URL, with one `Authorization` (or none).
#[derive(Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    base: Url,
    label: String,
    authorization: Option<HeaderValue>,
    /// The credentials this client sends, cut from the error texts of its answers.
    sent: Vec<Secret<String>>,
    insecure: bool,
    retry_budget: Duration,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The Authorization header stays out of Debug output.
        f.debug_struct("ApiClient")
            .field("label", &self.label)
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

/// One answer, read whole (bounded by [`MAX_API_BYTES`]).
#[derive(Debug, Clone)]
pub struct ApiResponse {
    /// The HTTP status.
    pub status: u16,
    /// The response headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Vec<u8>,
    /// The credentials the request carried, cut from [`ApiResponse::error_text`].
    pub(crate) sent: Vec<Secret<String>>,
}

impl ApiResponse {
    /// True for 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::trim)
    }

    /// The `Link: <…>; rel="next"` target, if any (relative or absolute, as sent).
    pub fn next_link(&self) -> Option<String> {
        self.headers
            .get_all(header::LINK)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .find_map(http::parse_link_next)
    }

    /// A short description of an error body (its `message`/`detail`/`errors` fields, else its first line),
    /// for error messages. Bodies are the vendor's words, bounded to 300 characters.
    pub fn error_text(&self) -> String {
        let text = serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|value| {
                ["message", "detail", "error", "errors"]
                    .iter()
                    .find_map(|key| match &value[*key] {
                        serde_json::Value::String(text) => Some(text.clone()),
                        serde_json::Value::Null => None,
                        other => Some(other.to_string()),
                    })
            })
            .unwrap_or_else(|| {
                String::from_utf8_lossy(&self.body)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string()
            });
        // A server may echo the request, credentials included, in its error body.
        let text = redact(&text, &self.sent);
        let text = text.trim();
        let mut short: String = text.chars().take(300).collect();
        if short.len() < text.len() {
            short.push('…');
        }
        if short.is_empty() {
            format!("HTTP {}", self.status)
        } else {
            format!("HTTP {}: {short}", self.status)
        }
    }
}

impl ApiClient {
    /// A client for the API at `base_url` (`https://hub.docker.com`). `label` names it in errors
    /// (`Docker Hub API`).
    pub fn new(
        base_url: &str,
        label: &str,
        options: &ClientOptions,
    ) -> Result<Self, RegistryError> {
        let base = checked_base(base_url, label, options)?;
        Ok(Self::over(
            http::build_client(options, label)?,
            base,
            label,
            options,
        ))
    }

    /// A client for the API at `base_url` over `registry`'s connections and options: an API on the
    /// registry's own host reuses its open connections (no second TCP or TLS handshake). No credential
    /// of the registry client's comes along: they are added per request there.
    pub fn sharing(
        registry: &super::Client,
        base_url: &str,
        label: &str,
    ) -> Result<Self, RegistryError> {
        let options = registry.options();
        let base = checked_base(base_url, label, options)?;
        Ok(Self::over(registry.http().clone(), base, label, options))
    }

    fn over(http: reqwest::Client, base: Url, label: &str, options: &ClientOptions) -> Self {
        ApiClient {
            http,
            base,
            label: label.to_string(),
            authorization: None,
            sent: Vec::new(),
            insecure: options.insecure,
            retry_budget: options.retry_budget,
        }
    }

    /// The same client giving up after the first failed attempt (for probes whose failure is an answer).
    pub fn without_retries(mut self) -> Self {
        self.retry_budget = Duration::ZERO;
        self
    }

    /// The same client sending `Authorization: Bearer <token>`.
    pub fn with_bearer(self, token: &Secret<String>) -> Result<Self, RegistryError> {
        let value = format!("Bearer {}", token.expose());
        Ok(self.with_authorization(&value)?.redacting([token]))
    }

    /// The same client sending `Authorization: <scheme> <value>` for schemes other than Bearer and Basic
    /// (GitLab's `JOB-TOKEN` goes in its own header: use [`ApiClient::send_with`]).
    pub fn with_token_scheme(
        self,
        scheme: &str,
        token: &Secret<String>,
    ) -> Result<Self, RegistryError> {
        let value = format!("{scheme} {}", token.expose());
        Ok(self.with_authorization(&value)?.redacting([token]))
    }

    /// The same client sending Basic credentials.
    pub fn with_basic(
        self,
        username: &str,
        password: &Secret<String>,
    ) -> Result<Self, RegistryError> {
        let encoded = Secret::new(basic_credentials(username, password));
        Ok(self
            .with_authorization(&format!("Basic {}", encoded.expose()))?
            .redacting([password, &encoded]))
    }

    /// The same client also cutting `secrets` from the error texts of its answers: for credentials a
    /// request carries in its body or in a header of its own ([`ApiClient::send_with`],
    /// [`ApiClient::send_json`]).
    pub fn redacting<'a>(mut self, secrets: impl IntoIterator<Item = &'a Secret<String>>) -> Self {
        self.sent.extend(secrets.into_iter().cloned());
        self
    }

    fn with_authorization(mut self, value: &str) -> Result<Self, RegistryError> {
        if self.base.scheme() == "http" && !http::is_loopback(&self.base) && !self.insecure {
            return Err(RegistryError::Config(format!(
                "refusing to send credentials to the {} over plain HTTP; use HTTPS or --insecure-registry",
                self.label
            )));
        }
        let mut header = HeaderValue::from_str(value).map_err(|_| {
            RegistryError::Config(format!(
                "the credentials for the {} contain characters that cannot go in an HTTP header",
                self.label
            ))
        })?;
        header.set_sensitive(true);
        self.authorization = Some(header);
        Ok(self)
    }

    /// The base URL.
    pub fn base(&self) -> &Url {
        &self.base
    }

    /// The label used in errors.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Resolves `path` (`/v2/…`, may carry a query) against the base URL. Pagination links that lead to
    /// another origin are refused, so credentials never follow them.
    pub fn url(&self, path: &str) -> Result<Url, RegistryError> {
        let url = self.base.join(path).map_err(|error| {
            RegistryError::Config(format!(
                "cannot build a {} URL for {path}: {error}",
                self.label
            ))
        })?;
        if url.origin() != self.base.origin() {
            return Err(RegistryError::InvalidResponse {
                registry: self.label.clone(),
                operation: "pagination".into(),
                message: format!(
                    "a link leads to another host ({}); refused",
                    url.origin().ascii_serialization()
                ),
            });
        }
        Ok(url)
    }

    /// Sends a request without a body. `operation` names it in errors (`list tags of team/app`).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        operation: &str,
    ) -> Result<ApiResponse, RegistryError> {
        self.send_with(method, path, operation, |request| request)
            .await
    }

    /// Sends a request with a JSON body.
    pub async fn send_json(
        &self,
        method: Method,
        path: &str,
        operation: &str,
        body: &serde_json::Value,
    ) -> Result<ApiResponse, RegistryError> {
        self.send_with(method, path, operation, |request| request.json(body))
            .await
    }

    /// Sends a form (`application/x-www-form-urlencoded`); the values of its OAuth 2.0 credential
    /// parameters (`client_secret`, `refresh_token`, `assertion`, …) are cut from the answer's error text.
    pub async fn send_form(
        &self,
        method: Method,
        path: &str,
        operation: &str,
        form: &[(&str, &str)],
    ) -> Result<ApiResponse, RegistryError> {
        let credentials: Vec<Secret<String>> = form
            .iter()
            .filter(|(name, _)| CREDENTIAL_PARAMETERS.contains(name))
            .map(|(_, value)| Secret::new(value.to_string()))
            .collect();
        self.clone()
            .redacting(&credentials)
            .send_with(method, path, operation, |request| request.form(form))
            .await
    }

    /// Sends a request shaped by `customise` (extra headers, a form, a query), with the client's
    /// authorization and retry policy.
    pub async fn send_with(
        &self,
        method: Method,
        path: &str,
        operation: &str,
        customise: impl Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Result<ApiResponse, RegistryError> {
        let url = self.url(path)?;
        let build = || {
            let mut request = self
                .http
                .request(method.clone(), url.clone())
                .header(header::ACCEPT, "application/json");
            if let Some(authorization) = &self.authorization {
                request = request.header(header::AUTHORIZATION, authorization.clone());
            }
            customise(request)
        };
        let response = http::send_with_retries(build, self.retry_budget)
            .await
            .map_err(|error| self.transport(operation, &error))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body =
            http::read_bounded(response, MAX_API_BYTES)
                .await
                .map_err(|error| match error {
                    ReadError::TooLarge(max) => RegistryError::InvalidResponse {
                        registry: self.label.clone(),
                        operation: operation.to_string(),
                        message: format!("body larger than {max} bytes"),
                    },
                    ReadError::Transport(error) => self.transport(operation, &error),
                })?;
        Ok(ApiResponse {
            status,
            headers,
            body,
            sent: self.sent.clone(),
        })
    }

    /// Parses a successful answer's JSON body.
    pub fn json<T: DeserializeOwned>(
        &self,
        response: &ApiResponse,
        operation: &str,
    ) -> Result<T, RegistryError> {
        serde_json::from_slice(&response.body).map_err(|error| RegistryError::InvalidResponse {
            registry: self.label.clone(),
            operation: operation.to_string(),
            message: format!("unexpected JSON: {error}"),
        })
    }

    /// The error for an unexpected status: 401 → `Unauthorized`, 403 → `Denied`, others → `Status`, each
    /// with `hint` (what to do) appended when given.
    pub fn status_error(
        &self,
        response: &ApiResponse,
        operation: &str,
        hint: &str,
    ) -> RegistryError {
        if let Some(limited) = self.rate_limited(response, operation) {
            return limited;
        }
        let mut message = format!("{operation}: {}", response.error_text());
        if !hint.is_empty() {
            message.push_str("; ");
            message.push_str(hint);
        }
        let registry = self.label.clone();
        match response.status {
            401 => RegistryError::Unauthorized { registry, message },
            403 => RegistryError::Denied { registry, message },
            status => RegistryError::Status {
                registry,
                operation: operation.to_string(),
                status,
                message: response.error_text(),
            },
        }
    }

    /// How long this client retries one request.
    pub fn retry_budget(&self) -> Duration {
        self.retry_budget
    }

    /// [`RegistryError::RateLimited`] for a rate-limit answer (429, or a 403 or 503 with a wait in its
    /// headers), so a limit is never taken for missing rights.
    pub fn rate_limited(&self, response: &ApiResponse, operation: &str) -> Option<RegistryError> {
        let told = throttle::told_wait(&response.headers, std::time::SystemTime::now());
        let limited = response.status == 429
            || (matches!(response.status, 403 | 503) && told.is_some())
            || is_secondary_limit(response);
        limited.then(|| RegistryError::RateLimited {
            registry: self.label.clone(),
            operation: operation.to_string(),
            message: match told {
                Some(wait) => format!(
                    "{}, asked to wait {} s",
                    response.error_text(),
                    wait.as_secs()
                ),
                None => response.error_text(),
            },
        })
    }

    fn transport(&self, operation: &str, error: &reqwest::Error) -> RegistryError {
        super::error::transport(&self.label, operation, error, &self.sent)
    }
}

/// A 403 that says it is a rate limit without saying how long to wait (GitHub's secondary limits).
pub fn is_secondary_limit(response: &ApiResponse) -> bool {
    response.status == 403
        && throttle::told_wait(&response.headers, std::time::SystemTime::now()).is_none()
        && response
            .error_text()
            .to_ascii_lowercase()
            .contains("rate limit")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> ClientOptions {
        ClientOptions::default()
    }

    #[test]
    fn plain_http_only_to_loopback_unless_insecure() {
        assert!(ApiClient::new("http://127.0.0.1:9", "test API", &options()).is_ok());
        assert!(matches!(
            ApiClient::new("http://api.example.test", "test API", &options()),
            Err(RegistryError::Config(_))
        ));
        let insecure = ClientOptions {
            insecure: true,
            ..options()
        };
        assert!(ApiClient::new("http://api.example.test", "test API", &insecure).is_ok());
        assert!(matches!(
            ApiClient::new("ftp://api.example.test", "test API", &options()),
            Err(RegistryError::Config(_))
        ));
    }

    #[test]
    fn links_to_another_origin_are_refused() {
        let client = ApiClient::new("https://hub.example.test", "test API", &options()).unwrap();
        assert!(client.url("/v2/repos?page=2").is_ok());
        assert!(client.url("https://hub.example.test/v2/x").is_ok());
        assert!(matches!(
            client.url("https://evil.example.test/v2/x"),
            Err(RegistryError::InvalidResponse { .. })
        ));
    }

    #[test]
    fn credentials_stay_out_of_debug_and_error_text_is_bounded() {
        let client = ApiClient::new("https://hub.example.test", "test API", &options())
            .unwrap()
            .with_bearer(&Secret::new("canary-91x".into()))
            .unwrap();
        assert!(!format!("{client:?}").contains("canary"));
        let response = ApiResponse {
            status: 403,
            headers: HeaderMap::new(),
            body: format!("{{\"detail\":\"{}\"}}", "x".repeat(1000)).into_bytes(),
            sent: Vec::new(),
        };
        let text = response.error_text();
        assert!(text.starts_with("HTTP 403: xxx") && text.ends_with('…'));
        assert!(matches!(
            client.status_error(&response, "delete tag", "use a token with delete rights"),
            RegistryError::Denied { .. }
        ));
    }
}
