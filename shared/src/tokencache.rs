//! A per-user token cache: one JSON file, replaced atomically under a lock, shared by the cloud credential
//! helpers (ECR, ACR, Google) so each short-lived `get` can answer without a network call.
//!
//! Directories this code creates are 0700; the file and its lock are 0600. Readers never lock: a writer
//! takes the lock file, re-reads, merges its entry, writes a temporary file beside the cache and renames it
//! over, so a reader sees the old or the new file, never a torn one.
//!
//! Entries are keyed by service, registry host and an identity id (see [`TokenCache::key`]), so two
//! identities never share a token. An entry is *fresh* until half its lifetime has passed, and *usable*
//! until it expires.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::protocol::{Credentials, Error};
use crate::secret::Secret;

/// The cache file format version; a file with another version is ignored and replaced.
const VERSION: u32 = 1;
/// The most cache file this code reads.
const MAX_CACHE_BYTES: u64 = 4 << 20;
/// How long a writer waits for the lock before giving up on caching (the token is still answered).
const LOCK_WAIT: Duration = Duration::from_secs(3);

/// One cached registry token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedToken {
    /// The registry endpoint the token is for (`https://<host>`), as `list` shows it.
    pub endpoint: String,
    /// The registry username (`AWS`, `oauth2accesstoken`, …).
    pub username: String,
    /// The registry password.
    pub password: Secret<String>,
    /// When it was obtained (Unix seconds).
    pub requested_at: i64,
    /// When it expires (Unix seconds).
    pub expires_at: i64,
}

impl CachedToken {
    /// True until half the token's lifetime has passed: no refresh needed.
    pub fn is_fresh(&self, now: i64) -> bool {
        let lifetime = self.expires_at.saturating_sub(self.requested_at);
        lifetime > 0 && now >= self.requested_at && now < self.requested_at + lifetime / 2
    }

    /// True until the token expires: good enough when a refresh fails.
    pub fn is_usable(&self, now: i64) -> bool {
        now < self.expires_at
    }

    /// The token as a helper's `get` answer for `server_url`, the key the caller asked for.
    pub fn into_credentials(self, server_url: &str) -> Credentials {
        Credentials {
            server_url: server_url.to_owned(),
            username: self.username,
            secret: self.password,
        }
    }
}

/// Why the cache could not be written. Reads never fail: an unreadable cache is an empty one.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// A file operation failed.
    #[error("cannot update the token cache {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Another process held the lock too long.
    #[error("the token cache {0} stayed locked by another process; the token was not cached")]
    Busy(PathBuf),
}

#[derive(Serialize, Deserialize, Default)]
struct CacheFile {
    version: u32,
    entries: BTreeMap<String, EntryFile>,
}

#[derive(Serialize, Deserialize)]
struct EntryFile {
    endpoint: String,
    username: String,
    password: String,
    requested_at: i64,
    expires_at: i64,
}

impl From<&EntryFile> for CachedToken {
    fn from(entry: &EntryFile) -> Self {
        CachedToken {
            endpoint: entry.endpoint.clone(),
            username: entry.username.clone(),
            password: Secret::new(entry.password.clone()),
            requested_at: entry.requested_at,
            expires_at: entry.expires_at,
        }
    }
}

/// The cache file of this user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenCache {
    path: PathBuf,
}

impl TokenCache {
    /// The file `name` in this user's regkit cache directory: `$XDG_CACHE_HOME/regkit/<name>`, else
    /// `$HOME/.cache/regkit/<name>`; `None` when neither variable is set. `var` reads the environment.
    pub fn in_user_cache(var: impl Fn(&str) -> Option<String>, name: &str) -> Option<TokenCache> {
        let base = match var("XDG_CACHE_HOME") {
            Some(dir) => PathBuf::from(dir),
            None => PathBuf::from(var("HOME")?).join(".cache"),
        };
        Some(TokenCache::at(base.join("regkit").join(name)))
    }

    /// A cache in this file.
    pub fn at(path: impl Into<PathBuf>) -> TokenCache {
        TokenCache { path: path.into() }
    }

    /// The cache file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The cache key of a token.
    pub fn key(service: &str, host: &str, identity_id: &str) -> String {
        format!("{service}:{host}:{identity_id}")
    }

    /// The entry under `key`, if the file holds one.
    pub fn get(&self, key: &str) -> Option<CachedToken> {
        self.read().entries.get(key).map(CachedToken::from)
    }

    /// Every entry that is still usable at `now`, by key.
    pub fn usable(&self, now: i64) -> BTreeMap<String, CachedToken> {
        self.read()
            .entries
            .iter()
            .map(|(key, entry)| (key.clone(), CachedToken::from(entry)))
            .filter(|(_, token)| token.is_usable(now))
            .collect()
    }

    /// The registries `list` shows: endpoint and username of every entry still usable at `now`.
    pub fn logins(&self, now: i64) -> BTreeMap<String, String> {
        self.usable(now)
            .into_values()
            .map(|token| (token.endpoint, token.username))
            .collect()
    }

    /// Saves `token` under `key`, dropping entries expired at `now`.
    pub fn put(&self, key: &str, token: &CachedToken, now: i64) -> Result<(), CacheError> {
        let dir = self
            .path
            .parent()
            .filter(|dir| !dir.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| io_error(dir, source))?;
        let lock_path = with_suffix(&self.path, ".lock");
        let lock = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|source| io_error(&lock_path, source))?;
        lock_within(&lock, LOCK_WAIT).map_err(|error| match error {
            TryLockError::WouldBlock => CacheError::Busy(self.path.clone()),
            TryLockError::Error(source) => io_error(&lock_path, source),
        })?;
        let mut file = self.read();
        if file.version != VERSION {
            file = CacheFile {
                version: VERSION,
                entries: BTreeMap::new(),
            };
        }
        file.entries.retain(|_, entry| entry.expires_at > now);
        file.entries.insert(
            key.to_owned(),
            EntryFile {
                endpoint: token.endpoint.clone(),
                username: token.username.clone(),
                password: token.password.expose().clone(),
                requested_at: token.requested_at,
                expires_at: token.expires_at,
            },
        );
        let temp = with_suffix(&self.path, &format!(".{}.tmp", std::process::id()));
        let written = write_new(&temp, &file).and_then(|()| fs::rename(&temp, &self.path));
        if written.is_err() {
            // Best effort: a leftover temporary file holds a secret and must not stay behind.
            let _ = fs::remove_file(&temp);
        }
        written.map_err(|source| io_error(&self.path, source))
        // `lock` is released when it is dropped here.
    }

    fn read(&self) -> CacheFile {
        let mut text = Vec::new();
        let read = File::open(&self.path)
            .and_then(|file| file.take(MAX_CACHE_BYTES).read_to_end(&mut text));
        if read.is_err() {
            return CacheFile::default();
        }
        match serde_json::from_slice::<CacheFile>(&text) {
            Ok(file) if file.version == VERSION => file,
            _ => CacheFile::default(),
        }
    }
}

/// The token a helper's `get` answers with: the entry under `key` while it is fresh, else a `fetch`ed one
/// (saved when usable), else, when `fetch` fails, the entry while it has not expired. `note` explains
/// failures on stderr; with no token the answer is "not found", so callers fall back to anonymous access.
pub fn cached_or_fetched(
    cache: Option<&TokenCache>,
    key: &str,
    now: i64,
    fetch: impl FnOnce() -> Result<CachedToken, String>,
    note: impl Fn(&str),
) -> Result<CachedToken, Error> {
    let cached = cache.and_then(|cache| cache.get(key));
    if let Some(token) = cached.as_ref().filter(|token| token.is_fresh(now)) {
        return Ok(token.clone());
    }
    match fetch() {
        Ok(token) => {
            if let Some(cache) = cache.filter(|_| token.is_usable(now))
                && let Err(error) = cache.put(key, &token, now)
            {
                note(&error.to_string());
            }
            Ok(token)
        }
        Err(error) => match cached.filter(|token| token.is_usable(now)) {
            Some(token) => {
                note(&format!(
                    "{error}; using the cached token, which is still valid"
                ));
                Ok(token)
            }
            None => {
                note(&error);
                Err(Error::NotFound)
            }
        },
    }
}

fn io_error(path: &Path, source: std::io::Error) -> CacheError {
    CacheError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Takes the exclusive lock, polling so a stuck holder cannot hang `get` forever.
fn lock_within(file: &File, wait: Duration) -> Result<(), TryLockError> {
    let deadline = Instant::now() + wait;
    loop {
        match file.try_lock() {
            Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            other => return other,
        }
    }
}

fn write_new(path: &Path, file: &CacheFile) -> std::io::Result<()> {
    let text = serde_json::to_vec(file).map_err(std::io::Error::other)?;
    // A stale temporary file of a crashed writer with our pid is ours to replace.
    let _ = fs::remove_file(path);
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    out.write_all(&text)?;
    out.sync_all()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn token(requested_at: i64, expires_at: i64) -> CachedToken {
        CachedToken {
            endpoint: "https://h".into(),
            username: "AWS".into(),
            password: Secret::new("pw".into()),
            requested_at,
            expires_at,
        }
    }

    #[test]
    fn freshness_is_half_the_lifetime() {
        let t = token(1000, 2000);
        assert!(t.is_fresh(1000));
        assert!(t.is_fresh(1499));
        assert!(!t.is_fresh(1500));
        assert!(t.is_usable(1999));
        assert!(!t.is_usable(2000));
        assert!(
            !t.is_fresh(999),
            "a token from the future is suspicious, refresh it"
        );
        assert!(!token(2000, 1000).is_fresh(1500));
    }

    #[test]
    fn put_get_modes_and_pruning() {
        let dir = tempfile::tempdir().unwrap();
        let cache = TokenCache::at(dir.path().join("a/b/cache.json"));
        assert_eq!(cache.get("k"), None);
        cache.put("old", &token(0, 10), 0).unwrap();
        cache.put("k", &token(100, 200), 100).unwrap();
        assert_eq!(cache.get("k"), Some(token(100, 200)));
        assert_eq!(
            cache.get("old"),
            None,
            "expired entries are dropped on write"
        );
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(cache.path()), 0o600);
        assert_eq!(mode(&dir.path().join("a/b")), 0o700);
        assert_eq!(mode(&dir.path().join("a")), 0o700);
        assert_eq!(cache.usable(150).len(), 1);
        assert!(cache.usable(200).is_empty());
        let leftovers: Vec<_> = fs::read_dir(dir.path().join("a/b"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|name| name.ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn corrupt_or_foreign_files_read_as_empty_and_are_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let cache = TokenCache::at(dir.path().join("cache.json"));
        fs::write(cache.path(), b"{not json").unwrap();
        assert_eq!(cache.get("k"), None);
        fs::write(cache.path(), br#"{"version":99,"entries":{}}"#).unwrap();
        assert_eq!(cache.get("k"), None);
        cache.put("k", &token(1, 3), 1).unwrap();
        assert_eq!(cache.get("k"), Some(token(1, 3)));
    }

    #[test]
    fn user_cache_prefers_xdg() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        assert_eq!(
            TokenCache::in_user_cache(vars(&[("HOME", "/h")]), "x.json")
                .unwrap()
                .path(),
            Path::new("/h/.cache/regkit/x.json")
        );
        assert_eq!(
            TokenCache::in_user_cache(vars(&[("HOME", "/h"), ("XDG_CACHE_HOME", "/x")]), "x.json")
                .unwrap()
                .path(),
            Path::new("/x/regkit/x.json")
        );
        assert_eq!(TokenCache::in_user_cache(vars(&[]), "x.json"), None);
    }

    #[test]
    fn concurrent_writers_keep_every_entry() {
        let dir = tempfile::tempdir().unwrap();
        let cache = TokenCache::at(dir.path().join("cache.json"));
        std::thread::scope(|scope| {
            for i in 0..16 {
                let cache = cache.clone();
                scope.spawn(move || cache.put(&format!("k{i}"), &token(1, 100), 1).unwrap());
            }
        });
        assert_eq!(cache.usable(2).len(), 16);
    }
}
