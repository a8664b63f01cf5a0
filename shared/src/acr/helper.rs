//! `docker-credential-acr`: an ACR refresh token for an anchored ACR login server, obtained by exchanging an
//! Entra ID token at `POST https://<registry>/oauth2/exchange`, answered with the [`NULL_GUID`] username
//! and cached until shortly before the `exp` inside it. See [`crate::cloudauth`] for the `get` flow.

use reqwest::Method;
use serde::Deserialize;

use super::{NULL_GUID, TEST_LOGIN_SERVER_VAR, entra, registry_host};
use crate::cloudauth::{
    BoxFuture, Env, Provider, Token, identity_digest, jwt_claims, token_answer, token_client,
};
use crate::secret::Secret;

/// The binary name.
pub const BINARY: &str = "docker-credential-acr";
/// Lifetime assumed for a refresh token without a readable `exp` (ACR's are about three hours).
const FALLBACK_LIFETIME_SECS: i64 = 30 * 60;

/// The ACR token provider.
#[derive(Debug)]
pub struct AcrProvider {
    env: Env,
}

impl AcrProvider {
    /// A provider reading the given environment.
    pub fn new(env: Env) -> Self {
        AcrProvider { env }
    }
}

#[derive(Deserialize)]
struct Exchanged {
    refresh_token: Option<String>,
}

/// Exchanges an Entra token for an ACR refresh token at `base` (the login server URL) for `service`.
async fn exchange(
    base: &str,
    service: &str,
    entra: &entra::EntraToken,
) -> Result<Secret<String>, String> {
    let api = token_client(base, "ACR token exchange", false)?;
    let tenant = entra.tenant.as_deref().unwrap_or("");
    let form = [
        ("grant_type", "access_token"),
        ("service", service),
        ("tenant", tenant),
        ("access_token", entra.token.expose().as_str()),
    ];
    let operation = "exchange the Entra ID token";
    let response = api
        .send_form(Method::POST, "/oauth2/exchange", operation, &form)
        .await
        .map_err(|error| error.to_string())?;
    token_answer::<Exchanged>(&api, &response, operation, |text| {
        format!(
            "{service} refused the Entra ID token: {text}; grant the identity AcrPull (or AcrPush) on the registry"
        )
    })?
    .refresh_token
        .filter(|token| !token.is_empty())
        .map(Secret::new)
        .ok_or_else(|| format!("{service} answered the token exchange without a refresh_token"))
}

impl Provider for AcrProvider {
    fn binary(&self) -> &'static str {
        BINARY
    }

    fn cache_file(&self) -> &'static str {
        "acr-cache.json"
    }

    fn host(&self, server_url: &str) -> Option<String> {
        registry_host(server_url)
    }

    fn identity_id(&self, _host: &str) -> String {
        identity_digest(&entra::identity_parts(&self.env))
    }

    fn fetch<'a>(&'a self, host: &'a str) -> BoxFuture<'a, Result<Token, String>> {
        Box::pin(async move {
            let entra = entra::token(&self.env).await?;
            let base = self
                .env
                .var(TEST_LOGIN_SERVER_VAR)
                .unwrap_or_else(|| format!("https://{host}"));
            let refresh = exchange(&base, host, &entra).await?;
            let expires_at = jwt_claims(refresh.expose())
                .and_then(|claims| claims["exp"].as_i64())
                .unwrap_or_else(|| self.env.now() + FALLBACK_LIFETIME_SECS);
            Ok(Token {
                username: NULL_GUID.to_owned(),
                secret: refresh,
                expires_at,
            })
        })
    }

    fn storage_note(&self) -> &'static str {
        "ACR tokens come from your Entra ID identity (environment, workload or managed identity, az login)"
    }

    fn env(&self) -> &Env {
        &self.env
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloudauth::CachedHelper;
    use crate::protocol::{Error, Helper};

    #[test]
    fn other_hosts_are_not_found_without_touching_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let helper = CachedHelper::new(AcrProvider::new(Env::from_vars([
            ("XDG_CACHE_HOME", dir.path().to_str().unwrap()),
            ("AZURE_AUTHORITY_HOST", "http://127.0.0.1:9"),
        ])));
        for key in ["myreg.azurecr.io.evil.example", "ghcr.io", "127.0.0.1:5000"] {
            assert_eq!(helper.get(key), Err(Error::NotFound));
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn the_identity_id_follows_the_client_not_the_secret() {
        let id = |vars: &[(&str, &str)]| {
            AcrProvider::new(Env::from_vars(vars.iter().copied())).identity_id("r.azurecr.io")
        };
        let a = id(&[("AZURE_CLIENT_ID", "a"), ("AZURE_CLIENT_SECRET", "s1")]);
        assert_eq!(
            a,
            id(&[("AZURE_CLIENT_ID", "a"), ("AZURE_CLIENT_SECRET", "s2")])
        );
        assert_ne!(
            a,
            id(&[("AZURE_CLIENT_ID", "b"), ("AZURE_CLIENT_SECRET", "s1")])
        );
        assert!(!a.contains("s1"));
    }
}
