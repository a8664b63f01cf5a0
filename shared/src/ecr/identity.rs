//! Which AWS identity asks for a registry: regkit's per-registry identity map, and the cache key it gives.
//!
//! The map lives in regkit's config file, `$XDG_CONFIG_HOME/regkit/config.toml` (default
//! `~/.config/regkit/config.toml`; `REGKIT_CONFIG` names another file). Entries are tried in order; the first
//! whose `registry` pattern matches the host wins. In a pattern `*` stands for any run of characters inside
//! one DNS label:
//!
//! ```toml
//! [[ecr.identity]]
//! registry = "111111111111.dkr.ecr.*.amazonaws.com"
//! profile = "prod"                                     # a profile of ~/.aws/config
//!
//! [[ecr.identity]]
//! registry = "222222222222.dkr.ecr.eu-west-1.amazonaws.com"
//! role_arn = "arn:aws:iam::222222222222:role/ecr-pull" # assumed with the profile's (or default) credentials
//! region = "eu-west-1"                                 # region of the credential calls (STS, SSO)
//! ```
//!
//! Without a matching entry the SDK's default chain answers, with `AWS_PROFILE` as usual. Other tables of
//! the file belong to other parts of regkit and are ignored here.
//!
//! Reading the map and computing the key is cheap and local: it is the first half of the cache-hit path.

use std::path::PathBuf;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use super::{EcrError, Env};

/// Names another config file than the XDG default.
pub const CONFIG_VAR: &str = "REGKIT_CONFIG";

/// The most config file this code reads; a larger one is refused rather than parsed.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// The identity that asks AWS for a registry's token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// The shared-config profile (from the map, else `AWS_PROFILE`).
    pub profile: Option<String>,
    /// A role assumed on top of the profile's credentials.
    pub role_arn: Option<String>,
    /// The region of the credential calls; the registry's own region when unset.
    pub region: Option<String>,
}

impl Identity {
    /// The identity for `host`: the first matching map entry, with `AWS_PROFILE` filling a missing profile.
    pub fn for_host(map: &IdentityMap, host: &str, env: &Env) -> Identity {
        let mut identity = map.lookup(host).cloned().unwrap_or_default();
        if identity.profile.is_none() {
            identity.profile = env.var("AWS_PROFILE");
        }
        identity
    }

    /// A stable, non-reversible digest of who asks: the profile, role and region, plus the environment that
    /// changes which credentials the default chain finds (the access key id, the web-identity role) and
    /// where the API is (endpoint overrides). The raw access key id never leaves this function.
    pub fn cache_id(&self, env: &Env) -> String {
        let mut hasher = Sha256::new();
        let mut field = |name: &str, value: Option<&str>| {
            if let Some(value) = value {
                hasher.update(name.as_bytes());
                hasher.update([0]);
                hasher.update(value.as_bytes());
                hasher.update([0]);
            }
        };
        field("profile", self.profile.as_deref());
        field("role_arn", self.role_arn.as_deref());
        field("region", self.region.as_deref());
        for name in [
            "AWS_ACCESS_KEY_ID",
            "AWS_ROLE_ARN",
            "AWS_ENDPOINT_URL",
            "AWS_ENDPOINT_URL_ECR",
            "AWS_ENDPOINT_URL_ECR_PUBLIC",
        ] {
            field(name, env.var(name).as_deref());
        }
        let digest = hasher.finalize();
        digest[..16].iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// The `[[ecr.identity]]` entries of regkit's config file, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdentityMap {
    entries: Vec<(String, Identity)>,
}

#[derive(Deserialize, Default)]
struct ConfigFile {
    #[serde(default)]
    ecr: EcrSection,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct EcrSection {
    #[serde(default)]
    identity: Vec<EntryFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryFile {
    registry: String,
    profile: Option<String>,
    role_arn: Option<String>,
    region: Option<String>,
}

impl IdentityMap {
    /// Where regkit's config file is: `REGKIT_CONFIG`, else `$XDG_CONFIG_HOME/regkit/config.toml`, else
    /// `~/.config/regkit/config.toml`. `None` when no home is known.
    pub fn path(env: &Env) -> Option<PathBuf> {
        if let Some(path) = env.var(CONFIG_VAR) {
            return Some(PathBuf::from(path));
        }
        let base = match env.var("XDG_CONFIG_HOME") {
            Some(dir) => PathBuf::from(dir),
            None => PathBuf::from(env.var("HOME")?).join(".config"),
        };
        Some(base.join("regkit").join("config.toml"))
    }

    /// Reads regkit's config file (bounded): its path and text, `None` when there is no file or no home.
    fn read_file(env: &Env) -> Result<Option<(PathBuf, String)>, EcrError> {
        let Some(path) = IdentityMap::path(env) else {
            return Ok(None);
        };
        match read_bounded(&path) {
            Ok(text) => Ok(Some((path, text))),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(EcrError::Config(format!(
                "cannot read regkit's config file {}: {error}",
                path.display()
            ))),
        }
    }

    /// Reads regkit's config file and parses its text with `parse`; `None` when there is no file. A parse
    /// error names the file. Every part of regkit that has a table in the file reads it through here.
    pub fn load_with<T>(
        env: &Env,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<Option<T>, EcrError> {
        let Some((path, text)) = IdentityMap::read_file(env)? else {
            return Ok(None);
        };
        parse(&text).map(Some).map_err(|message| {
            EcrError::Config(format!(
                "invalid regkit config file {}: {message}",
                path.display()
            ))
        })
    }

    /// Loads the map from the config file; a missing file is an empty map.
    pub fn load(env: &Env) -> Result<IdentityMap, EcrError> {
        Ok(IdentityMap::load_with(env, IdentityMap::parse)?.unwrap_or_default())
    }

    /// Parses the text of a config file.
    pub fn parse(text: &str) -> Result<IdentityMap, String> {
        let file: ConfigFile = parse_toml(text)?;
        let mut entries = Vec::new();
        for (index, entry) in file.ecr.identity.into_iter().enumerate() {
            let pattern = entry.registry.trim().to_ascii_lowercase();
            let pattern = pattern
                .split_once("://")
                .map_or(pattern.as_str(), |(_, rest)| rest)
                .trim_end_matches('/')
                .to_owned();
            if pattern.is_empty() {
                return Err(format!(
                    "ecr.identity entry {} has an empty registry",
                    index + 1
                ));
            }
            let clean = |value: Option<String>| {
                value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
            };
            let identity = Identity {
                profile: clean(entry.profile),
                role_arn: clean(entry.role_arn),
                region: clean(entry.region),
            };
            if identity == Identity::default() {
                return Err(format!(
                    "ecr.identity entry {} ({pattern}) sets none of profile, role_arn, region",
                    index + 1
                ));
            }
            entries.push((pattern, identity));
        }
        Ok(IdentityMap { entries })
    }

    /// The first entry whose pattern matches `host` (lower-case, no port).
    pub fn lookup(&self, host: &str) -> Option<&Identity> {
        self.entries
            .iter()
            .find(|(pattern, _)| glob_labels(pattern, host))
            .map(|(_, identity)| identity)
    }
}

/// Parses the text of regkit's config file as TOML; the error is one line.
pub fn parse_toml<T: DeserializeOwned>(text: &str) -> Result<T, String> {
    toml::from_str(text).map_err(|e| {
        // toml's Display spans several lines (source excerpt); the first line says what is wrong.
        e.message()
            .lines()
            .next()
            .unwrap_or("syntax error")
            .to_owned()
    })
}

fn read_bounded(path: &std::path::Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(MAX_CONFIG_BYTES)
        .read_to_string(&mut text)?;
    Ok(text)
}

/// `*` matches any run of characters other than `.`; everything else matches itself.
pub(crate) fn glob_labels(pattern: &str, text: &str) -> bool {
    let (pattern, text) = (pattern.as_bytes(), text.as_bytes());
    // Classic two-pointer wildcard match with backtracking to the last star.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((star_p, star_t)) = star.filter(|&(_, star_t)| text[star_t] != b'.') {
            p = star_p + 1;
            t = star_t + 1;
            star = Some((star_p, star_t + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
[other]
whatever = 1

[[ecr.identity]]
registry = "111111111111.dkr.ecr.*.amazonaws.com"
profile = "prod"

[[ecr.identity]]
registry = "https://*.dkr.ecr.eu-west-1.amazonaws.com/"
role_arn = "arn:aws:iam::222222222222:role/ecr-pull"
region = "eu-west-1"
"#;

    #[test]
    fn first_matching_entry_wins() {
        let map = IdentityMap::parse(FILE).unwrap();
        let env = Env::from_vars([("AWS_PROFILE", "dev")]);
        let prod = Identity::for_host(&map, "111111111111.dkr.ecr.eu-west-1.amazonaws.com", &env);
        assert_eq!(prod.profile.as_deref(), Some("prod"));
        assert_eq!(prod.role_arn, None);
        let role = Identity::for_host(&map, "222222222222.dkr.ecr.eu-west-1.amazonaws.com", &env);
        assert_eq!(role.profile.as_deref(), Some("dev"));
        assert_eq!(
            role.role_arn.as_deref(),
            Some("arn:aws:iam::222222222222:role/ecr-pull")
        );
        assert_eq!(role.region.as_deref(), Some("eu-west-1"));
        let default =
            Identity::for_host(&map, "333333333333.dkr.ecr.us-east-1.amazonaws.com", &env);
        assert_eq!(
            default,
            Identity {
                profile: Some("dev".into()),
                ..Identity::default()
            }
        );
    }

    #[test]
    fn stars_stay_inside_one_label() {
        assert!(glob_labels(
            "*.dkr.ecr.*.amazonaws.com",
            "1.dkr.ecr.us-east-1.amazonaws.com"
        ));
        assert!(glob_labels("1*2.x", "1a2.x"));
        assert!(glob_labels("*", "public"));
        assert!(!glob_labels("*", "public.ecr.aws"));
        assert!(!glob_labels(
            "*.amazonaws.com",
            "1.dkr.ecr.us-east-1.amazonaws.com"
        ));
        assert!(!glob_labels("a.*", "a.b.c"));
        assert!(glob_labels("a.*", "a.b"));
        assert!(!glob_labels("public.ecr.aws", "public.ecr.aws.evil"));
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        let typo = "[[ecr.identity]]\nregistry = \"x\"\nprofil = \"p\"\n";
        assert!(IdentityMap::parse(typo).unwrap_err().contains("profil"));
        let empty = "[[ecr.identity]]\nregistry = \"x\"\n";
        assert!(
            IdentityMap::parse(empty)
                .unwrap_err()
                .contains("sets none of")
        );
        assert!(IdentityMap::parse("[[ecr.identity]]\nregistry = \"\"\nprofile=\"p\"").is_err());
        assert!(IdentityMap::parse("not toml [").is_err());
        assert_eq!(IdentityMap::parse("").unwrap(), IdentityMap::default());
    }

    #[test]
    fn cache_id_hides_the_key_and_follows_the_identity() {
        let akid = "AKIAEXAMPLEKEYID1234";
        let env = Env::from_vars([("AWS_ACCESS_KEY_ID", akid)]);
        let id = Identity::default().cache_id(&env);
        assert_eq!(id.len(), 32);
        assert!(!id.contains(akid));
        assert_eq!(id, Identity::default().cache_id(&env));
        let other_key = Env::from_vars([("AWS_ACCESS_KEY_ID", "AKIAOTHER")]);
        assert_ne!(id, Identity::default().cache_id(&other_key));
        let profile = Identity {
            profile: Some("p".into()),
            ..Identity::default()
        };
        assert_ne!(id, profile.cache_id(&env));
        let empty_is_unset = Env::from_vars([("AWS_ACCESS_KEY_ID", ""), ("AWS_PROFILE", " ")]);
        assert_eq!(
            Identity::default().cache_id(&empty_is_unset),
            Identity::default().cache_id(&Env::from_vars::<&str, &str>([]))
        );
    }

    #[test]
    fn config_path_follows_xdg() {
        let env = Env::from_vars([("HOME", "/h")]);
        assert_eq!(
            IdentityMap::path(&env).unwrap(),
            PathBuf::from("/h/.config/regkit/config.toml")
        );
        let env = Env::from_vars([("HOME", "/h"), ("XDG_CONFIG_HOME", "/x")]);
        assert_eq!(
            IdentityMap::path(&env).unwrap(),
            PathBuf::from("/x/regkit/config.toml")
        );
        assert_eq!(IdentityMap::path(&Env::from_vars::<&str, &str>([])), None);
    }
}
