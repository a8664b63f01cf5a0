//! `docker-credential-ecr-login`: a drop-in for amazon-ecr-credential-helper's binary of the same name.
//!
//! `get` parses the key; a host that is not ECR is answered "not found" at once, with no file read and
//! no network. For an ECR host it reads the identity map, derives the cache key and answers from the cache
//! when the entry is fresh: no runtime, no SDK object. Otherwise it asks AWS through a [`TokenSource`]
//! (the token program, see [`super::token`]; bounded by [`TIMEOUT_VAR`](super::TIMEOUT_VAR)); when that
//! fails it falls back to a cached token that has not expired yet. Failures are explained on stderr and answered "not found", as the AWS helper does, so
//! callers fall back to anonymous access (ECR Public allows it) instead of aborting.
//!
//! `store` and `erase` succeed with a note on stderr (ECR credentials come from AWS, nothing is stored),
//! silently with `AWS_ECR_IGNORE_CREDS_STORAGE=true`, so `docker login` through a config that routes ECR
//! here does not fail. `list` shows the cached, unexpired registries and never touches the network.

use std::collections::BTreeMap;

use super::Env;
use super::cache::{CachedToken, TokenCache};
use super::host::EcrRegistry;
use super::identity::{Identity, IdentityMap};
use super::token::{TokenProgram, TokenSource};
use crate::protocol::{Credentials, Error, Helper};
use crate::tokencache::cached_or_fetched;

/// The binary name, the same as amazon-ecr-credential-helper's, so `"credHelpers": {…: "ecr-login"}`
/// configurations keep working.
pub const BINARY: &str = "docker-credential-ecr-login";

/// The ECR credential helper.
pub struct EcrHelper {
    env: Env,
    source: Box<dyn TokenSource>,
}

impl EcrHelper {
    /// A helper reading the given environment, with [`TOKEN_PROGRAM`](super::token::TOKEN_PROGRAM) beside
    /// the running executable for cache misses.
    pub fn new(env: Env) -> Self {
        EcrHelper::with_source(env, Box::new(TokenProgram::beside_current_exe()))
    }

    /// A helper with its own source of fresh tokens.
    pub fn with_source(env: Env, source: Box<dyn TokenSource>) -> Self {
        EcrHelper { env, source }
    }

    fn note(&self, message: &str) {
        eprintln!("{BINARY}: {message}");
    }

    fn ignore_storage(&self) -> bool {
        self.env.flag("AWS_ECR_IGNORE_CREDS_STORAGE")
    }

    /// Now, in Unix seconds, on the cache's clock.
    pub fn now(&self) -> i64 {
        self.env.now()
    }

    /// The token `get` answers with, and its expiry (the kubelet mode reports the remaining lifetime).
    pub fn token(&self, server_url: &str) -> Result<CachedToken, Error> {
        let Some(registry) = EcrRegistry::parse(server_url) else {
            return Err(Error::NotFound);
        };
        let map = IdentityMap::load(&self.env).map_err(Error::other)?;
        let identity = Identity::for_host(&map, registry.host(), &self.env);
        let cache = TokenCache::locate(&self.env);
        let key = TokenCache::key(
            registry.service(),
            registry.host(),
            &identity.cache_id(&self.env),
        );
        let now = self.env.now();
        let fetch = || {
            let token = self
                .source
                .fetch(&registry, &self.env)
                .map_err(|error| error.to_string())?;
            Ok(CachedToken {
                endpoint: token.endpoint,
                username: token.username,
                password: token.password,
                requested_at: now,
                expires_at: token.expires_at,
            })
        };
        cached_or_fetched(cache.as_ref(), &key, now, fetch, |message| {
            self.note(message)
        })
    }
}

impl Helper for EcrHelper {
    fn get(&self, server_url: &str) -> Result<Credentials, Error> {
        self.token(server_url)
            .map(|token| token.into_credentials(server_url))
    }

    fn store(&self, credentials: Credentials) -> Result<(), Error> {
        if !self.ignore_storage() {
            self.note(&format!(
                "not storing credentials for {}: ECR tokens come from your AWS credentials (set AWS_ECR_IGNORE_CREDS_STORAGE=true to silence this)",
                credentials.server_url
            ));
        }
        Ok(())
    }

    fn erase(&self, server_url: &str) -> Result<(), Error> {
        if !self.ignore_storage() {
            self.note(&format!(
                "nothing to erase for {server_url}: ECR tokens come from your AWS credentials (set AWS_ECR_IGNORE_CREDS_STORAGE=true to silence this)"
            ));
        }
        Ok(())
    }

    fn list(&self) -> Result<BTreeMap<String, String>, Error> {
        Ok(TokenCache::locate(&self.env)
            .map(|cache| cache.logins(self.env.now()))
            .unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ecr::Token;
    use crate::secret::Secret;

    #[test]
    fn other_hosts_are_not_found_without_reading_anything() {
        // A config file that cannot be parsed proves it was never read.
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.toml");
        std::fs::write(&config, "not toml [").unwrap();
        let helper = EcrHelper::new(Env::from_vars([
            ("REGKIT_CONFIG", config.to_str().unwrap()),
            ("AWS_ECR_CACHE_DIR", dir.path().to_str().unwrap()),
        ]));
        for key in ["127.0.0.1:5000", "ghcr.io", "https://index.docker.io/v1/"] {
            assert_eq!(helper.get(key), Err(Error::NotFound));
        }
        assert!(matches!(
            helper.get("123456789012.dkr.ecr.us-east-1.amazonaws.com"),
            Err(Error::Other(message)) if message.contains("invalid regkit config file")
        ));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn fresh_cache_entries_answer_get_and_list() {
        let dir = tempfile::tempdir().unwrap();
        let env = Env::from_vars([
            ("AWS_ECR_CACHE_DIR", dir.path().to_str().unwrap()),
            ("AWS_PROFILE", "p"),
            ("REGKIT_ECR_NOW", "1000"),
        ]);
        let host = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";
        let identity = Identity {
            profile: Some("p".into()),
            ..Identity::default()
        };
        let cache = TokenCache::locate(&env).unwrap();
        let token = CachedToken {
            endpoint: format!("https://{host}"),
            username: "AWS".into(),
            password: Secret::new("pw".into()),
            requested_at: 900,
            expires_at: 2000,
        };
        cache
            .put(
                &TokenCache::key("ecr", host, &identity.cache_id(&env)),
                &token,
                900,
            )
            .unwrap();
        let helper = EcrHelper::new(env);
        let answer = helper.get(&format!("https://{host}/v2/")).unwrap();
        assert_eq!(answer.server_url, format!("https://{host}/v2/"));
        assert_eq!(answer.username, "AWS");
        assert_eq!(answer.secret.expose(), "pw");
        assert_eq!(
            helper.list().unwrap(),
            BTreeMap::from([(format!("https://{host}"), "AWS".to_owned())])
        );
    }

    /// Answers a fixed expiry and counts its calls.
    struct Fixed(i64, std::rc::Rc<std::cell::Cell<u32>>);

    impl TokenSource for Fixed {
        fn fetch(
            &self,
            registry: &EcrRegistry,
            _: &Env,
        ) -> Result<super::super::Token, super::super::EcrError> {
            self.1.set(self.1.get() + 1);
            Ok(Token {
                username: "AWS".into(),
                password: Secret::new("fresh".into()),
                endpoint: format!("https://{}", registry.host()),
                expires_at: self.0,
            })
        }
    }

    #[test]
    fn misses_ask_the_source_and_cache_only_usable_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let env = |now: &str| {
            Env::from_vars([
                ("AWS_ECR_CACHE_DIR", dir.path().to_str().unwrap()),
                ("REGKIT_ECR_NOW", now),
            ])
        };
        let host = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
        // Already expired when it arrives (moto's 2015 tokens): answered, never cached.
        let stale = EcrHelper::with_source(env("5000"), Box::new(Fixed(4000, Default::default())));
        assert_eq!(stale.get(host).unwrap().secret.expose(), "fresh");
        assert!(!dir.path().join("regkit-ecr-cache.json").exists());
        let calls = std::rc::Rc::default();
        let helper = EcrHelper::with_source(
            env("5000"),
            Box::new(Fixed(9000, std::rc::Rc::clone(&calls))),
        );
        helper.get(host).unwrap();
        helper.get(host).unwrap();
        assert_eq!(calls.get(), 1, "the second get is a cache hit");
        let missing = EcrHelper::with_source(
            env("5000"),
            Box::new(TokenProgram::at("/nonexistent/regkit-ecr-token")),
        );
        assert_eq!(
            missing.get(host).unwrap().secret.expose(),
            "fresh",
            "cache hit needs no program"
        );
        let later = EcrHelper::with_source(
            env("9500"),
            Box::new(TokenProgram::at("/nonexistent/regkit-ecr-token")),
        );
        assert_eq!(later.get(host), Err(Error::NotFound));
    }

    #[test]
    fn store_and_erase_succeed() {
        let helper = EcrHelper::new(Env::from_vars([("AWS_ECR_IGNORE_CREDS_STORAGE", "true")]));
        let credentials = Credentials {
            server_url: "h".into(),
            username: "u".into(),
            secret: Secret::new("s".into()),
        };
        assert_eq!(helper.store(credentials.clone()), Ok(()));
        assert_eq!(helper.erase("h"), Ok(()));
        let noisy = EcrHelper::new(Env::from_vars::<&str, &str>([]));
        assert_eq!(noisy.store(credentials), Ok(()));
    }
}
