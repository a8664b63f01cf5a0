//! `docker-credential-gcr`: a Google OAuth access token for an anchored GCR or Artifact Registry host,
//! answered with the [`USERNAME`] Google documents and cached until shortly before it expires. See
//! [`crate::cloudauth`] for the `get` flow.

use super::{USERNAME, google, registry_host};
use crate::cloudauth::{BoxFuture, Env, Provider, Token, identity_digest};

/// The binary name.
pub const BINARY: &str = "docker-credential-gcr";

/// The Google token provider.
#[derive(Debug)]
pub struct GcrProvider {
    env: Env,
}

impl GcrProvider {
    /// A provider reading the given environment.
    pub fn new(env: Env) -> Self {
        GcrProvider { env }
    }
}

impl Provider for GcrProvider {
    fn binary(&self) -> &'static str {
        BINARY
    }

    fn cache_file(&self) -> &'static str {
        "gcr-cache.json"
    }

    fn host(&self, server_url: &str) -> Option<String> {
        registry_host(server_url)
    }

    fn identity_id(&self, _host: &str) -> String {
        identity_digest(&google::identity_parts(&self.env))
    }

    fn fetch<'a>(&'a self, _host: &'a str) -> BoxFuture<'a, Result<Token, String>> {
        Box::pin(async move {
            let token = google::token(&self.env).await?;
            Ok(Token {
                username: USERNAME.to_owned(),
                secret: token.token,
                expires_at: token.expires_at,
            })
        })
    }

    fn storage_note(&self) -> &'static str {
        "Google registry tokens come from your Application Default Credentials, the metadata server or gcloud"
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
        let helper = CachedHelper::new(GcrProvider::new(Env::from_vars([
            ("XDG_CACHE_HOME", dir.path().to_str().unwrap()),
            ("GCE_METADATA_HOST", "127.0.0.1:9"),
        ])));
        for key in [
            "gcr.io.evil.example",
            "europe-docker.pkg.dev:443",
            "ghcr.io",
        ] {
            assert_eq!(helper.get(key), Err(Error::NotFound));
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
