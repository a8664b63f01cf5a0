//! The per-user ECR token cache, a [`crate::tokencache`] file at the place amazon-ecr-credential-helper's
//! users expect.
//!
//! Location: `$AWS_ECR_CACHE_DIR/regkit-ecr-cache.json` when set (the file name differs from
//! amazon-ecr-credential-helper's `cache.json`, which that helper deletes when it cannot parse it), else
//! `$XDG_CACHE_HOME/regkit/ecr-cache.json`, else `~/.cache/regkit/ecr-cache.json`.
//! `AWS_ECR_DISABLE_CACHE` (any value) turns the cache off.

use std::path::PathBuf;

pub use crate::tokencache::{CacheError, CachedToken, TokenCache};

use super::Env;

// The ECR location rules belong to the ECR module; the cache itself is shared.
impl TokenCache {
    /// The cache at its usual place, or `None` when disabled or when no home directory is known.
    pub fn locate(env: &Env) -> Option<TokenCache> {
        if env.var("AWS_ECR_DISABLE_CACHE").is_some() {
            return None;
        }
        let path = match env.var("AWS_ECR_CACHE_DIR") {
            // amazon-ecr-credential-helper expands a leading `~`; configurations written for it do that.
            Some(dir) => match dir.strip_prefix("~/") {
                Some(rest) => PathBuf::from(env.var("HOME")?).join(rest),
                None => PathBuf::from(dir),
            }
            .join("regkit-ecr-cache.json"),
            None => {
                return TokenCache::in_user_cache(|name| env.var(name), "ecr-cache.json");
            }
        };
        Some(TokenCache::at(path))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn locate_honours_the_variables() {
        let env = Env::from_vars([("HOME", "/h")]);
        assert_eq!(
            TokenCache::locate(&env).unwrap().path(),
            Path::new("/h/.cache/regkit/ecr-cache.json")
        );
        let env = Env::from_vars([("HOME", "/h"), ("XDG_CACHE_HOME", "/x")]);
        assert_eq!(
            TokenCache::locate(&env).unwrap().path(),
            Path::new("/x/regkit/ecr-cache.json")
        );
        let env = Env::from_vars([("HOME", "/h"), ("AWS_ECR_CACHE_DIR", "/e")]);
        assert_eq!(
            TokenCache::locate(&env).unwrap().path(),
            Path::new("/e/regkit-ecr-cache.json")
        );
        let env = Env::from_vars([("HOME", "/h"), ("AWS_ECR_CACHE_DIR", "~/.ecr")]);
        assert_eq!(
            TokenCache::locate(&env).unwrap().path(),
            Path::new("/h/.ecr/regkit-ecr-cache.json")
        );
        let env = Env::from_vars([("HOME", "/h"), ("AWS_ECR_DISABLE_CACHE", "1")]);
        assert_eq!(TokenCache::locate(&env), None);
        let env = Env::from_vars([("HOME", "/h"), ("AWS_ECR_DISABLE_CACHE", "")]);
        assert!(TokenCache::locate(&env).is_some());
    }
}
