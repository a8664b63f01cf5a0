//! How the registry client authenticates: `WWW-Authenticate` parsing (RFC 7235), answering a 401 with
//! Basic credentials or a bearer token from the challenge's realm, and the token cache.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::header::{self, HeaderValue};
use reqwest::{StatusCode, Url};

use super::{Call, Client, MAX_SMALL_BYTES, RegistryError, http};
use crate::dockerconfig::RegistryAuth;
use crate::secret::Secret;

/// One challenge of a `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The auth scheme, lower-cased (`bearer`, `basic`).
    pub scheme: String,
    /// `name=value` parameters; names lower-cased, quoted values unescaped.
    pub params: Vec<(String, String)>,
    /// A bare `token68` (as in `Negotiate abc==`), if the challenge has one instead of parameters.
    pub token68: Option<String>,
}

impl Challenge {
    /// The value of parameter `name` (lower case).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// Every challenge in one `WWW-Authenticate` value. Never fails: unparseable parts are skipped.
///
/// Commas separate both challenges and parameters, and quoted strings may hold commas and `\` escapes, so
/// this is a small tokenizer rather than a split.
pub fn parse_www_authenticate(header: &str) -> Vec<Challenge> {
    let mut parser = Parser {
        text: header.as_bytes(),
        pos: 0,
    };
    let mut challenges = Vec::new();
    loop {
        parser.skip(|c| c == b' ' || c == b'\t' || c == b',');
        let scheme = parser.token();
        if scheme.is_empty() {
            if parser.at_end() {
                break;
            }
            // Not a token where a scheme belongs: skip to the next comma and resynchronise.
            parser.skip(|c| c != b',');
            continue;
        }
        let mut challenge = Challenge {
            scheme: scheme.to_ascii_lowercase(),
            params: Vec::new(),
            token68: None,
        };
        parser.parse_params(&mut challenge);
        challenges.push(challenge);
    }
    challenges
}

struct Parser<'a> {
    text: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn at_end(&self) -> bool {
        self.pos >= self.text.len()
    }

    fn peek(&self) -> Option<u8> {
        self.text.get(self.pos).copied()
    }

    fn skip(&mut self, mut while_true: impl FnMut(u8) -> bool) {
        while self.peek().is_some_and(&mut while_true) {
            self.pos += 1;
        }
    }

    fn skip_spaces(&mut self) {
        self.skip(|c| c == b' ' || c == b'\t');
    }

    /// An RFC 7230 `token` (letters, digits and `!#$%&'*+-.^_`|~`).
    fn token(&mut self) -> String {
        let start = self.pos;
        self.skip(|c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~/:".contains(&c));
        String::from_utf8_lossy(&self.text[start..self.pos]).into_owned()
    }

    fn quoted(&mut self) -> String {
        // Caller saw the opening quote.
        self.pos += 1;
        let mut value = Vec::new();
        while let Some(c) = self.peek() {
            self.pos += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    if let Some(escaped) = self.peek() {
                        value.push(escaped);
                        self.pos += 1;
                    }
                }
                _ => value.push(c),
            }
        }
        String::from_utf8_lossy(&value).into_owned()
    }

    /// Parameters (or a token68) after a scheme, up to the start of the next challenge.
    fn parse_params(&mut self, challenge: &mut Challenge) {
        let mut first = true;
        loop {
            let before = self.pos;
            self.skip(|c| c == b' ' || c == b'\t' || c == b',');
            let name = self.token();
            if name.is_empty() {
                return;
            }
            self.skip_spaces();
            let equals = self.peek() == Some(b'=');
            // `name==` or `name=` at the end of a challenge is a token68 (base64 padding), not a parameter.
            let token68 = first && equals && {
                let rest = &self.text[self.pos..];
                let count = rest.iter().take_while(|c| **c == b'=').count();
                let after = rest[count..].iter().find(|c| **c != b' ' && **c != b'\t');
                count > 1 || matches!(after, None | Some(b','))
            };
            if token68 {
                // token68: the `=` signs are padding, not an assignment.
                let start = self.pos;
                self.skip(|c| c == b'=');
                let padding = String::from_utf8_lossy(&self.text[start..self.pos]).into_owned();
                challenge.token68 = Some(name + &padding);
                return;
            }
            if !equals {
                if first && matches!(self.peek(), None | Some(b',')) {
                    challenge.token68 = Some(name);
                    return;
                }
                // The next challenge's scheme.
                self.pos = before;
                return;
            }
            self.pos += 1;
            self.skip_spaces();
            let value = if self.peek() == Some(b'"') {
                self.quoted()
            } else {
                let start = self.pos;
                self.skip(|c| c != b',' && c != b' ' && c != b'\t');
                String::from_utf8_lossy(&self.text[start..self.pos]).into_owned()
            };
            challenge.params.push((name.to_ascii_lowercase(), value));
            first = false;
        }
    }
}

/// Bearer tokens by scope, each until its expiry.
#[derive(Debug, Default)]
pub(crate) struct TokenCache {
    tokens: Mutex<HashMap<String, (Secret<String>, Instant)>>,
}

/// The shortest lifetime assumed for a token: docker's and the spec's default when `expires_in` is missing
/// or smaller.
pub(crate) const MIN_TOKEN_LIFETIME: Duration = Duration::from_secs(60);

impl TokenCache {
    /// The unexpired token for `scope`.
    pub fn get(&self, scope: &str) -> Option<Secret<String>> {
        let tokens = self.tokens.lock().ok()?;
        let (token, expires) = tokens.get(scope)?;
        (Instant::now() < *expires).then(|| Secret::new(token.expose().clone()))
    }

    /// Every unexpired token.
    pub fn tokens(&self) -> Vec<Secret<String>> {
        let Ok(tokens) = self.tokens.lock() else {
            return Vec::new();
        };
        let now = Instant::now();
        tokens
            .values()
            .filter(|(_, expires)| now < *expires)
            .map(|(token, _)| token.clone())
            .collect()
    }

    /// Remembers `token` for every scope in `scopes` for `lifetime` (at least [`MIN_TOKEN_LIFETIME`]),
    /// less a margin so a token never expires in flight.
    pub fn insert(&self, scopes: &[&str], token: &Secret<String>, lifetime: Duration) {
        let lifetime = lifetime.max(MIN_TOKEN_LIFETIME);
        let expires = Instant::now() + lifetime - Duration::from_secs(5);
        if let Ok(mut tokens) = self.tokens.lock() {
            tokens.retain(|_, (_, expiry)| Instant::now() < *expiry);
            for scope in scopes {
                tokens.insert(
                    scope.to_string(),
                    (Secret::new(token.expose().clone()), expires),
                );
            }
        }
    }
}

/// What is sent as `Authorization`, and why (to decide what a 401 means).
pub(super) struct Authorization {
    pub(super) value: HeaderValue,
    kind: AuthKind,
}

#[derive(PartialEq, Eq)]
enum AuthKind {
    Basic,
    /// A token obtained (or cached) for this scope.
    Token(String),
    /// `RegistryAuth::RegistryToken`, sent as is.
    Static,
}

#[derive(serde::Deserialize)]
struct TokenResponse {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<u64>,
}

impl Client {
    /// Every credential this client sends: its own (a Basic password also as the encoded header value)
    /// and the tokens it holds, for cutting them out of what the registry answers.
    pub(super) fn sent_credentials(&self) -> Vec<Secret<String>> {
        let mut sent = self.inner.tokens.tokens();
        match &self.inner.auth {
            RegistryAuth::Anonymous => {}
            RegistryAuth::Basic { username, password } => {
                sent.push(password.clone());
                sent.push(Secret::new(basic_credentials(username, password)));
            }
            RegistryAuth::IdentityToken(token) | RegistryAuth::RegistryToken(token) => {
                sent.push(token.clone());
            }
        }
        sent
    }

    /// Sends `call`, answering 401 challenges (at most two token fetches) and mapping 403 to `Denied`.
    pub(super) async fn send(&self, call: &Call<'_>) -> Result<reqwest::Response, RegistryError> {
        let mut authorization = self.initial_authorization(call)?;
        let mut token_fetches = 0;
        loop {
            let response = self
                .execute(call.operation, || self.build(call, authorization.as_ref()))
                .await?;
            match response.status() {
                StatusCode::UNAUTHORIZED => {}
                StatusCode::FORBIDDEN => {
                    return Err(RegistryError::Denied {
                        registry: self.inner.registry.clone(),
                        message: format!(
                            "{} ({}); check the account's permissions",
                            call.operation,
                            self.error_message(response).await
                        ),
                    });
                }
                _ => return Ok(response),
            }
            let challenges: Vec<Challenge> = response
                .headers()
                .get_all(header::WWW_AUTHENTICATE)
                .iter()
                .filter_map(|value| value.to_str().ok())
                .flat_map(parse_www_authenticate)
                .collect();
            let message = self.error_message(response).await;
            let sent = authorization.take();
            authorization = Some(
                self.answer(call, &challenges, sent, &mut token_fetches, &message)
                    .await?,
            );
        }
    }

    /// What to send before any challenge: a static or cached token, or Basic once the registry asked.
    fn initial_authorization(
        &self,
        call: &Call<'_>,
    ) -> Result<Option<Authorization>, RegistryError> {
        match &self.inner.auth {
            RegistryAuth::RegistryToken(token) => Ok(Some(Authorization {
                value: self.bearer(token)?,
                kind: AuthKind::Static,
            })),
            RegistryAuth::Basic { username, password }
                if self
                    .inner
                    .basic_preferred
                    .load(std::sync::atomic::Ordering::Relaxed) =>
            {
                self.basic_authorization(&call.url, username, password)
                    .map(Some)
            }
            _ => {
                let scope = call.scope.clone().unwrap_or_default();
                match self.inner.tokens.get(&scope) {
                    Some(token) => Ok(Some(Authorization {
                        value: self.bearer(&token)?,
                        kind: AuthKind::Token(scope),
                    })),
                    None => Ok(None),
                }
            }
        }
    }

    /// The `Authorization` answering a 401, or why there is none.
    async fn answer(
        &self,
        call: &Call<'_>,
        challenges: &[Challenge],
        sent: Option<Authorization>,
        token_fetches: &mut u32,
        message: &str,
    ) -> Result<Authorization, RegistryError> {
        let registry = &self.inner.registry;
        let unauthorized = |message: String| RegistryError::Unauthorized {
            registry: registry.clone(),
            message,
        };
        if sent
            .as_ref()
            .is_some_and(|sent| sent.kind == AuthKind::Static)
        {
            return Err(unauthorized(format!(
                "the registry token was refused ({message}); log in again"
            )));
        }
        let bearer = challenges.iter().find(|c| c.scheme == "bearer");
        let basic = challenges.iter().find(|c| c.scheme == "basic");
        if let Some(challenge) = bearer {
            let scope = challenge
                .param("scope")
                .map(str::to_string)
                .or_else(|| call.scope.clone())
                .unwrap_or_default();
            let insufficient = challenge.param("error") == Some("insufficient_scope");
            let sent_value = sent.as_ref().map(|sent| sent.value.clone());
            let same_scope = sent.is_some_and(|sent| sent.kind == AuthKind::Token(scope.clone()));
            if (same_scope && *token_fetches >= 1) || *token_fetches >= 2 {
                return Err(if insufficient {
                    RegistryError::Denied {
                        registry: registry.clone(),
                        message: format!(
                            "{} needs {scope}, which the token service did not grant; check the account's permissions",
                            call.operation
                        ),
                    }
                } else {
                    unauthorized(format!(
                        "{} was refused with a fresh token ({message}); check the credentials",
                        call.operation
                    ))
                });
            }
            // One fetch at a time: concurrent requests that hit the same challenge wait for the first
            // fetch and reuse its token instead of each asking the token service.
            let _fetching = self.inner.token_fetch.lock().await;
            if let Some(cached) = self.inner.tokens.get(&scope) {
                let value = self.bearer(&cached)?;
                if sent_value.as_ref() != Some(&value) {
                    return Ok(Authorization {
                        value,
                        kind: AuthKind::Token(scope),
                    });
                }
            }
            *token_fetches += 1;
            let token = self.fetch_token(challenge, &scope).await?;
            let mut scopes = vec![scope.as_str()];
            if let Some(own) = &call.scope {
                scopes.push(own);
            }
            self.inner.tokens.insert(&scopes, &token.0, token.1);
            return Ok(Authorization {
                value: self.bearer(&token.0)?,
                kind: AuthKind::Token(scope),
            });
        }
        if basic.is_some() {
            return match &self.inner.auth {
                RegistryAuth::Basic { username, password } if sent.is_none() => {
                    self.inner
                        .basic_preferred
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                    self.basic_authorization(&call.url, username, password)
                }
                RegistryAuth::Basic { username, .. } => Err(unauthorized(format!(
                    "the registry refused the password for {username} ({message}); check it or run docker login {registry}"
                ))),
                _ => Err(unauthorized(format!(
                    "the registry wants a username and password ({message}); run docker login {registry}"
                ))),
            };
        }
        Err(unauthorized(format!(
            "401 without a Basic or Bearer challenge ({message})"
        )))
    }

    /// A bearer token for `scope` from the challenge's realm, and its lifetime. The credentials go to the
    /// realm whatever its origin, as docker's do (Docker Hub's realm is `auth.docker.io`): the registry
    /// names its token service. Plain HTTP is refused unless the realm is loopback or `insecure`.
    async fn fetch_token(
        &self,
        challenge: &Challenge,
        scope: &str,
    ) -> Result<(Secret<String>, Duration), RegistryError> {
        let registry = &self.inner.registry;
        let realm = challenge.param("realm").ok_or_else(|| {
            self.invalid(
                "authentication",
                "a Bearer challenge without a realm".into(),
            )
        })?;
        let realm = self.inner.base.join(realm).map_err(|error| {
            self.invalid(
                "authentication",
                format!("bad token realm {realm:?}: {error}"),
            )
        })?;
        if !matches!(realm.scheme(), "https" | "http") {
            return Err(self.invalid(
                "authentication",
                format!("token realm {realm} is not HTTP(S)"),
            ));
        }
        self.guard_plain_http(&realm, "a token request")?;
        let realm_host = realm.origin().ascii_serialization();
        let operation = format!("token request to {realm_host}");
        let mut query: Vec<(&str, &str)> = Vec::new();
        if let Some(service) = challenge.param("service") {
            query.push(("service", service));
        }
        for scope in scope.split_whitespace() {
            query.push(("scope", scope));
        }
        let get = |user: Option<(&str, &str)>| {
            let mut request = self.inner.http.get(realm.clone()).query(&query);
            if let Some((user, password)) = user {
                if !user.is_empty() {
                    request = request.query(&[("account", user)]);
                }
                request = request.basic_auth(user, Some(password));
            }
            request
        };
        let response = match &self.inner.auth {
            RegistryAuth::Basic { username, password } => {
                self.execute(&operation, || get(Some((username, password.expose()))))
                    .await?
            }
            RegistryAuth::IdentityToken(refresh) => {
                let mut form = vec![
                    ("grant_type", "refresh_token"),
                    ("refresh_token", refresh.expose().as_str()),
                    ("client_id", "regkit"),
                ];
                form.extend(
                    challenge
                        .param("service")
                        .map(|service| ("service", service)),
                );
                let joined = scope.split_whitespace().collect::<Vec<_>>().join(" ");
                if !joined.is_empty() {
                    form.push(("scope", &joined));
                }
                let response = self
                    .execute(&operation, || {
                        self.inner.http.post(realm.clone()).form(&form)
                    })
                    .await?;
                // Token services without OAuth2 answer POST with 404/405; BuildKit then retries with GET,
                // the refresh token as the Basic password.
                if matches!(response.status().as_u16(), 404 | 405) {
                    self.execute(&operation, || get(Some(("", refresh.expose()))))
                        .await?
                } else {
                    response
                }
            }
            RegistryAuth::Anonymous | RegistryAuth::RegistryToken(_) => {
                self.execute(&operation, || get(None)).await?
            }
        };
        let status = response.status();
        if matches!(status.as_u16(), 401 | 403) {
            return Err(RegistryError::Unauthorized {
                registry: registry.clone(),
                message: format!(
                    "the token service {realm_host} refused the credentials ({}); check them or run docker login {registry}",
                    self.error_message(response).await
                ),
            });
        }
        if !status.is_success() {
            return Err(self.status_error(response, &operation).await);
        }
        let body = self.read(response, MAX_SMALL_BYTES, &operation).await?;
        let parsed: TokenResponse = serde_json::from_slice(&body).map_err(|error| {
            self.invalid(&operation, format!("token response is not JSON: {error}"))
        })?;
        let token = parsed
            .token
            .filter(|token| !token.is_empty())
            .or(parsed.access_token)
            .filter(|token| !token.is_empty())
            .ok_or_else(|| self.invalid(&operation, "token response without a token".into()))?;
        let lifetime = Duration::from_secs(parsed.expires_in.unwrap_or(60));
        Ok((Secret::new(token), lifetime))
    }

    fn basic_authorization(
        &self,
        url: &Url,
        username: &str,
        password: &Secret<String>,
    ) -> Result<Authorization, RegistryError> {
        self.guard_plain_http(url, "Basic credentials")?;
        Ok(Authorization {
            value: sensitive(
                &format!("Basic {}", basic_credentials(username, password)),
                &self.inner.registry,
            )?,
            kind: AuthKind::Basic,
        })
    }

    fn bearer(&self, token: &Secret<String>) -> Result<HeaderValue, RegistryError> {
        sensitive(&format!("Bearer {}", token.expose()), &self.inner.registry)
    }

    /// Refuses to send secrets over plain HTTP to a host that is not this machine, unless `insecure`.
    fn guard_plain_http(&self, url: &Url, what: &str) -> Result<(), RegistryError> {
        if url.scheme() == "http" && !http::is_loopback(url) && !self.inner.insecure {
            return Err(RegistryError::Config(format!(
                "refusing to send {what} to {} over plain HTTP (registry {}); use HTTPS or --insecure",
                url.host_str().unwrap_or("?"),
                self.inner.registry
            )));
        }
        Ok(())
    }
}

/// `username:password`, base64-encoded as the `Basic` scheme sends it.
pub(crate) fn basic_credentials(username: &str, password: &Secret<String>) -> String {
    base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("{username}:{}", password.expose()),
    )
}

fn sensitive(value: &str, registry: &str) -> Result<HeaderValue, RegistryError> {
    let mut value = HeaderValue::from_str(value).map_err(|_| {
        RegistryError::Config(format!(
            "the credentials for {registry} contain characters that cannot go in an HTTP header"
        ))
    })?;
    value.set_sensitive(true);
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(challenge: &Challenge) -> Vec<(&str, &str)> {
        challenge
            .params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    #[test]
    fn docker_hub_bearer() {
        let parsed = parse_www_authenticate(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/ubuntu:pull""#,
        );
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[0].scheme, "bearer");
        assert_eq!(
            params(&parsed[0]),
            [
                ("realm", "https://auth.docker.io/token"),
                ("service", "registry.docker.io"),
                ("scope", "repository:library/ubuntu:pull")
            ]
        );
    }

    #[test]
    fn commas_inside_quotes_and_several_scopes() {
        let parsed = parse_www_authenticate(
            r#"Bearer realm="http://127.0.0.1:5/token",service="reg",scope="repository:a/b:pull,push repository:c:pull",error="insufficient_scope""#,
        );
        assert_eq!(parsed.len(), 1);
        assert_eq!(
            parsed[0].param("scope"),
            Some("repository:a/b:pull,push repository:c:pull")
        );
        assert_eq!(parsed[0].param("error"), Some("insufficient_scope"));
    }

    #[test]
    fn escapes_in_quoted_strings() {
        let parsed =
            parse_www_authenticate(r#"Basic realm="a \"quoted\" realm, with \\ backslash""#);
        assert_eq!(
            parsed[0].param("realm"),
            Some(r#"a "quoted" realm, with \ backslash"#)
        );
    }

    #[test]
    fn several_challenges_in_one_header() {
        let parsed = parse_www_authenticate(
            r#"Basic realm="basic-realm", Bearer realm="https://t/token", service="s""#,
        );
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0].scheme, "basic");
        assert_eq!(parsed[0].param("realm"), Some("basic-realm"));
        assert_eq!(parsed[1].scheme, "bearer");
        assert_eq!(parsed[1].param("service"), Some("s"));
    }

    #[test]
    fn unquoted_values_spaces_and_case() {
        let parsed = parse_www_authenticate(
            "BEARER  Realm = https://t/token ,  SERVICE=reg , scope=repository:x:pull",
        );
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[0].scheme, "bearer");
        assert_eq!(parsed[0].param("realm"), Some("https://t/token"));
        assert_eq!(parsed[0].param("service"), Some("reg"));
        assert_eq!(parsed[0].param("scope"), Some("repository:x:pull"));
    }

    #[test]
    fn token68_and_bare_schemes() {
        let parsed = parse_www_authenticate(r#"Negotiate abc==, Basic realm="r", NTLM"#);
        assert_eq!(parsed.len(), 3, "{parsed:?}");
        assert_eq!(parsed[0].token68.as_deref(), Some("abc=="));
        assert_eq!(parsed[1].param("realm"), Some("r"));
        assert_eq!(parsed[2].scheme, "ntlm");
        assert!(parsed[2].params.is_empty());
    }

    #[test]
    fn empty_values_and_garbage_never_panic() {
        assert!(parse_www_authenticate("").is_empty());
        assert!(parse_www_authenticate("   ,, ").is_empty());
        let parsed = parse_www_authenticate(r#"Bearer realm="",service="#);
        assert_eq!(parsed[0].param("realm"), Some(""));
        for garbage in [
            "===",
            "\"",
            "Bearer \"",
            "Bearer realm=\"unterminated",
            "é=ü",
            "Bearer ,,=,",
        ] {
            let _ = parse_www_authenticate(garbage);
        }
        let parsed = parse_www_authenticate(r#"Bearer realm="unterminated"#);
        assert_eq!(parsed[0].param("realm"), Some("unterminated"));
    }

    #[test]
    fn token_cache_keeps_tokens_per_scope() {
        let cache = TokenCache::default();
        cache.insert(
            &["repository:a:pull"],
            &Secret::new("t1".into()),
            Duration::from_secs(0),
        );
        assert_eq!(
            cache.get("repository:a:pull").map(|t| t.expose().clone()),
            Some("t1".to_string())
        );
        assert!(cache.get("repository:a:delete").is_none());
    }
}
