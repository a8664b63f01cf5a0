//! What the Azure (ACR) and Google credential helpers share: an environment that treats empty values as
//! unset, and the `get` flow around a token provider and the per-user [`TokenCache`].
//!
//! `get` asks the provider whether the key is one of its hosts (anchored patterns, no I/O): any other key is
//! answered "not found" at once, with no file read and no network call, so a token is never sent to a
//! look-alike host. For a served host it answers from the cache while the entry is fresh (no runtime, no
//! HTTP client is built), otherwise asks the provider, bounded by [`TIMEOUT_VAR`], and falls back to a cached
//! token that has not expired when that fails. Failures are explained on stderr and answered "not found",
//! so callers fall back to anonymous access instead of aborting. `store`/`erase` succeed with a note (the
//! tokens come from the cloud identity); `list` shows cached registries and never touches the network.

use std::collections::BTreeMap;
use std::future::Future;
use std::io::Read;
use std::pin::Pin;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::envvars::Knobs;
use crate::protocol::{Credentials, Error, Helper};
use crate::registry::ClientOptions;
use crate::registry::api::{ApiClient, ApiResponse};
use crate::secret::Secret;
use crate::tokencache::{CachedToken, TokenCache, cached_or_fetched};

/// Test hook: the current time as Unix seconds, for the token cache only. Not for production use.
pub const CLOCK_VAR: &str = "REGKIT_AUTH_NOW";
/// Bound, in seconds, on one whole token request of `get`.
pub const TIMEOUT_VAR: &str = "REGKIT_AUTH_TIMEOUT";
/// The default of [`TIMEOUT_VAR`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Set (any value) to turn the token cache off.
pub const DISABLE_CACHE_VAR: &str = "REGKIT_DISABLE_TOKEN_CACHE";
/// A token is cached until this long before it expires, so a caller never receives one about to lapse.
pub const EXPIRY_MARGIN_SECS: i64 = 300;

/// The variables of the Azure and Google helpers' test clock and request bound.
#[derive(Debug, Clone, Copy, Default)]
pub struct CloudKnobs;

impl Knobs for CloudKnobs {
    const CLOCK_VAR: &'static str = CLOCK_VAR;
    const TIMEOUT_VAR: &'static str = TIMEOUT_VAR;
    const DEFAULT_TIMEOUT: Duration = DEFAULT_TIMEOUT;
}

/// The process environment as the cloud helpers see it: empty values are unset.
pub type Env = crate::envvars::Env<CloudKnobs>;

impl Env {
    /// The token cache file `name` in the user's cache directory, unless [`DISABLE_CACHE_VAR`] is set.
    pub fn token_cache(&self, name: &str) -> Option<TokenCache> {
        if self.var(DISABLE_CACHE_VAR).is_some() {
            return None;
        }
        TokenCache::in_user_cache(|var| self.var(var), name)
    }
}

/// A registry token as a provider obtained it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// The registry username that goes with it.
    pub username: String,
    /// The registry password.
    pub secret: Secret<String>,
    /// When it expires (Unix seconds).
    pub expires_at: i64,
}

/// A boxed, non-`Send` future (the helper drives it on a current-thread runtime).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// One cloud's token source behind a credential helper.
pub trait Provider {
    /// The binary name, for notes on stderr.
    fn binary(&self) -> &'static str;
    /// The cache file name (`acr-cache.json`).
    fn cache_file(&self) -> &'static str;
    /// The registry host a key names, when it is one of this cloud's hosts. Must do no I/O.
    fn host(&self, server_url: &str) -> Option<String>;
    /// A stable id of the identity tokens are asked for (never a secret), to key the cache.
    fn identity_id(&self, host: &str) -> String;
    /// Obtains a token for `host`. The error is one line saying what failed and what to do.
    fn fetch<'a>(&'a self, host: &'a str) -> BoxFuture<'a, Result<Token, String>>;
    /// Why nothing is stored (`ACR tokens come from your Entra ID identity`).
    fn storage_note(&self) -> &'static str;
    /// The environment.
    fn env(&self) -> &Env;
}

/// The credential helper around a [`Provider`].
#[derive(Debug)]
pub struct CachedHelper<P> {
    provider: P,
}

impl<P: Provider> CachedHelper<P> {
    /// A helper over `provider`.
    pub fn new(provider: P) -> Self {
        CachedHelper { provider }
    }

    fn note(&self, message: &str) {
        eprintln!("{}: {message}", self.provider.binary());
    }

    fn cache(&self) -> Option<TokenCache> {
        self.provider.env().token_cache(self.provider.cache_file())
    }
}

impl<P: Provider> CachedHelper<P> {
    /// The token `get` answers with, and its expiry (the kubelet mode reports the remaining lifetime).
    pub fn token(&self, server_url: &str) -> Result<CachedToken, Error> {
        let Some(host) = self.provider.host(server_url) else {
            return Err(Error::NotFound);
        };
        let env = self.provider.env();
        let cache = self.cache();
        let key = TokenCache::key(
            self.provider.cache_file(),
            &host,
            &self.provider.identity_id(&host),
        );
        let now = env.now();
        let fetch = || {
            let token = block_on(env.timeout(), self.provider.fetch(&host))?;
            Ok(CachedToken {
                endpoint: format!("https://{host}"),
                username: token.username,
                password: token.secret,
                requested_at: now,
                expires_at: token.expires_at.saturating_sub(EXPIRY_MARGIN_SECS),
            })
        };
        cached_or_fetched(cache.as_ref(), &key, now, fetch, |message| {
            self.note(message)
        })
    }

    /// Now, in Unix seconds, on the provider's clock.
    pub fn now(&self) -> i64 {
        self.provider.env().now()
    }
}

impl<P: Provider> Helper for CachedHelper<P> {
    fn get(&self, server_url: &str) -> Result<Credentials, Error> {
        self.token(server_url)
            .map(|token| token.into_credentials(server_url))
    }

    fn store(&self, credentials: Credentials) -> Result<(), Error> {
        self.note(&format!(
            "not storing credentials for {}: {}",
            credentials.server_url,
            self.provider.storage_note()
        ));
        Ok(())
    }

    fn erase(&self, server_url: &str) -> Result<(), Error> {
        self.note(&format!(
            "nothing to erase for {server_url}: {}",
            self.provider.storage_note()
        ));
        Ok(())
    }

    fn list(&self) -> Result<BTreeMap<String, String>, Error> {
        Ok(self
            .cache()
            .map(|cache| cache.logins(self.provider.env().now()))
            .unwrap_or_default())
    }
}

/// The credential sources named, comma-separated, in `var`, in that order; all of `all` when it is unset.
/// `name` gives a source's name in that list.
pub fn source_order<S: Copy>(
    env: &Env,
    var: &str,
    all: &[S],
    name: impl Fn(S) -> &'static str,
) -> Result<Vec<S>, String> {
    let Some(list) = env.var(var) else {
        return Ok(all.to_vec());
    };
    list.split(',')
        .map(str::trim)
        .filter(|wanted| !wanted.is_empty())
        .map(|wanted| {
            all.iter()
                .copied()
                .find(|source| name(*source) == wanted)
                .ok_or_else(|| {
                    let names: Vec<&str> = all.iter().map(|source| name(*source)).collect();
                    format!(
                        "unknown credential source {wanted:?} in {var}; use {}",
                        names.join(", ")
                    )
                })
        })
        .collect()
}

/// A client for one token endpoint (`label` names it in errors), with short bounds: a helper answers for
/// every `docker pull`. `insecure` is for the metadata services, plain HTTP on link-local addresses.
pub fn token_client(base: &str, label: &str, insecure: bool) -> Result<ApiClient, String> {
    let options = ClientOptions {
        insecure,
        request_timeout: Duration::from_secs(15),
        retry_budget: Duration::from_secs(5),
        ..ClientOptions::default()
    };
    ApiClient::new(base, label, &options).map_err(|error| error.to_string())
}

/// The JSON body of a token endpoint's answer; a refusal is worded by `refused` from its error text.
pub fn token_answer<T: DeserializeOwned>(
    api: &ApiClient,
    response: &ApiResponse,
    operation: &str,
    refused: impl FnOnce(String) -> String,
) -> Result<T, String> {
    if !response.is_success() {
        return Err(refused(response.error_text()));
    }
    api.json(response, operation)
        .map_err(|error| error.to_string())
}

/// Runs `future` on a fresh current-thread runtime, bounded by `timeout`: cloud token endpoints that accept
/// a connection and never answer must not hang `docker pull`.
pub fn block_on<T>(
    timeout: Duration,
    future: impl Future<Output = Result<T, String>>,
) -> Result<T, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("cannot start the async runtime: {error}"))?;
    runtime
        .block_on(async { tokio::time::timeout(timeout, future).await })
        .unwrap_or_else(|_| {
            Err(format!(
                "no answer from the token service within {:.0} s; set {TIMEOUT_VAR} to wait longer",
                timeout.as_secs_f64()
            ))
        })
}

/// Runs a CLI (`az`, `gcloud`) with no stdin, bounded by `wait` (killed after it), and returns its stdout
/// when it succeeded, `None` when it exited with an error. Never blocks the runtime thread.
pub async fn run_bounded(
    mut command: Command,
    name: &str,
    wait: Duration,
) -> Result<Option<Vec<u8>>, String> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|error| match error.kind() {
            std::io::ErrorKind::NotFound => format!("{name} not found on PATH"),
            _ => format!("cannot run {name}: {error}"),
        })?;
    let deadline = Instant::now() + wait;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{name} did not answer within {} s", wait.as_secs()));
            }
            Err(error) => return Err(format!("cannot wait for {name}: {error}")),
        }
    };
    let mut output = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        // A token answer is small; the bound keeps a runaway CLI from filling memory.
        stdout
            .take(1 << 20)
            .read_to_end(&mut output)
            .map_err(|error| format!("cannot read the output of {name}: {error}"))?;
    }
    Ok(status.success().then_some(output))
}

/// The base64 bodies of the PEM blocks whose label ends with `label` (`PRIVATE KEY`, `CERTIFICATE`), decoded.
pub fn pem_blocks(text: &str, label: &str) -> Vec<Vec<u8>> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("-----BEGIN ") {
            current = rest
                .strip_suffix("-----")
                .filter(|name| name.ends_with(label))
                .map(|_| String::new());
        } else if line.starts_with("-----END ") {
            if let Some(body) = current.take()
                && let Ok(der) = base64::engine::general_purpose::STANDARD.decode(body)
            {
                blocks.push(der);
            }
        } else if let Some(body) = current.as_mut() {
            body.push_str(line);
        }
    }
    blocks
}

/// A JWT of `header` (plus `alg`/`typ`) and `claims`, signed RS256 with the RSA private key in `pem`
/// (PKCS#8 `PRIVATE KEY` or PKCS#1 `RSA PRIVATE KEY`). Errors say what is wrong with the key, never its
/// content.
pub fn sign_rs256(
    pem: &str,
    mut header: serde_json::Value,
    claims: &serde_json::Value,
) -> Result<Secret<String>, String> {
    use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
    let der = pem_blocks(pem, "PRIVATE KEY");
    let key = der
        .iter()
        .find_map(|der| {
            RsaKeyPair::from_pkcs8(der)
                .or_else(|_| RsaKeyPair::from_der(der))
                .ok()
        })
        .ok_or("no RSA private key in PEM form (PKCS#8 or PKCS#1) found")?;
    header["alg"] = "RS256".into();
    header["typ"] = "JWT".into();
    let encode = |value: &serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
    };
    let message = format!("{}.{}", encode(&header), encode(claims));
    let mut signature = vec![0; key.public().modulus_len()];
    key.sign(
        &RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        message.as_bytes(),
        &mut signature,
    )
    .map_err(|_| "cannot sign with the RSA key".to_owned())?;
    Ok(Secret::new(format!(
        "{message}.{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signature)
    )))
}

/// The claims of a JWT, read without verifying it: only to learn its own `exp` or `tid`, never to trust it.
pub fn jwt_claims(token: &str) -> Option<serde_json::Value> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// A short, stable, non-reversible id of identity parts (client ids, file paths), for cache keys.
pub fn identity_digest(parts: &[impl AsRef<str>]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_ref().as_bytes());
        hasher.update([0]);
    }
    hasher
        .finalize()
        .iter()
        .take(12)
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Strips `https://`/`http://`, a path and a trailing dot from a credential-helper key and lower-cases it;
/// `None` when a port or user info is left (a port never matches a cloud registry host).
pub fn key_host(server_url: &str) -> Option<String> {
    let key = server_url.trim();
    let rest = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = rest.split('/').next().unwrap_or("");
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    (!host.is_empty() && !host.contains([':', '@', '?', '#', '\\'])).then_some(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_reduce_to_hosts() {
        assert_eq!(
            key_host("https://a.azurecr.io/v2/").as_deref(),
            Some("a.azurecr.io")
        );
        assert_eq!(key_host("A.AZURECR.IO.").as_deref(), Some("a.azurecr.io"));
        assert_eq!(key_host("a.azurecr.io:443"), None);
        assert_eq!(key_host("u@a.azurecr.io"), None);
        assert_eq!(key_host(""), None);
    }

    #[test]
    fn jwt_claims_are_read_and_garbage_is_none() {
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"exp":5}"#);
        assert_eq!(jwt_claims(&format!("h.{payload}.s")).unwrap()["exp"], 5);
        assert_eq!(jwt_claims("nodots"), None);
        assert_eq!(jwt_claims("a.!!.b"), None);
    }

    #[test]
    fn pem_blocks_pick_their_label() {
        let text = "junk\n-----BEGIN CERTIFICATE-----\nAAEC\n-----END CERTIFICATE-----\n\
                    -----BEGIN PRIVATE KEY-----\nAwQ=\n-----END PRIVATE KEY-----\n";
        assert_eq!(pem_blocks(text, "CERTIFICATE"), [vec![0, 1, 2]]);
        assert_eq!(pem_blocks(text, "PRIVATE KEY"), [vec![3, 4]]);
        assert!(sign_rs256(text, serde_json::json!({}), &serde_json::json!({})).is_err());
    }

    #[test]
    fn identity_digest_separates_parts() {
        assert_ne!(identity_digest(&["ab", "c"]), identity_digest(&["a", "bc"]));
        assert_eq!(identity_digest(&["x"]).len(), 24);
    }
}
