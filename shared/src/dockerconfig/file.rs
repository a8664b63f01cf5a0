//! Parsing `config.json`, containers `auth.json` and `DOCKER_AUTH_CONFIG`.
//!
//! Documents are parsed into `serde_json::Value` and read field by field, so no error message can quote a
//! value from the file (serde's typed errors would: `invalid type: string "…"`).

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde_json::{Map, Value};

use super::keys::registry_key;
use super::{ConfigError, RegistryAuth};
use crate::protocol::IDENTITY_TOKEN_USERNAME;
use crate::secret::Secret;

/// Docker writes padded base64; hand-written configs often drop the padding, which Go would reject but
/// which is unambiguous.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// One `auths` entry, decoded.
#[derive(Debug, Clone, Default)]
struct AuthEntry {
    username: String,
    password: Secret<String>,
    identity_token: Secret<String>,
    registry_token: Secret<String>,
}

impl AuthEntry {
    /// The credentials this entry holds, or `None` for docker's empty `{}` markers.
    ///
    /// A registry token wins over an identity token, which wins over a password: the order docker's
    /// registry client applies them in.
    fn auth(&self) -> Option<RegistryAuth> {
        if !self.registry_token.is_empty() {
            Some(RegistryAuth::RegistryToken(self.registry_token.clone()))
        } else if !self.identity_token.is_empty() {
            Some(RegistryAuth::IdentityToken(self.identity_token.clone()))
        } else if !self.username.is_empty() || !self.password.is_empty() {
            Some(RegistryAuth::Basic {
                username: self.username.clone(),
                password: self.password.clone(),
            })
        } else {
            None
        }
    }
}

/// An `auths` map: registry key → credentials, looked up the way docker's file store does.
#[derive(Debug, Clone, Default)]
pub struct AuthMap {
    entries: BTreeMap<String, AuthEntry>,
}

impl AuthMap {
    /// Parses `DOCKER_AUTH_CONFIG`: the docker CLI's JSON form, `{"auths":{"<key>":{"auth":"<base64>"}}}`.
    /// A second JSON value is rejected, as docker does; unknown keys are ignored, where docker rejects them,
    /// so one variable can serve CLI versions that know different fields. Errors name the variable, never
    /// its contents.
    pub fn parse_env(text: &str) -> Result<Self, ConfigError> {
        Ok(ConfigFile::parse(text, "the DOCKER_AUTH_CONFIG environment variable")?.auths)
    }

    /// The credentials for `registry`: the exact normalised key first, then legacy keys
    /// (`https://host/v1/`, `http://host`) that name the same host. Empty markers are skipped.
    pub fn get(&self, registry: &str) -> Option<RegistryAuth> {
        let key = registry_key(registry);
        if key.is_empty() {
            return None;
        }
        if let Some(auth) = self.entries.get(&key).and_then(AuthEntry::auth) {
            return Some(auth);
        }
        self.entries
            .iter()
            .filter(|(stored, _)| registry_key(stored) == key)
            .find_map(|(_, entry)| entry.auth())
    }

    /// Every key that holds credentials, with its username (`<token>` for token entries). No secrets.
    pub fn usernames(&self) -> BTreeMap<String, String> {
        self.entries
            .iter()
            .filter_map(|(key, entry)| {
                let username = match entry.auth()? {
                    RegistryAuth::Basic { username, .. } => username,
                    _ => IDENTITY_TOKEN_USERNAME.to_owned(),
                };
                Some((key.clone(), username))
            })
            .collect()
    }
}

/// The parts of a docker-style config file that decide credentials.
#[derive(Debug, Clone, Default)]
pub(crate) struct ConfigFile {
    pub(crate) auths: AuthMap,
    pub(crate) cred_helpers: BTreeMap<String, String>,
    pub(crate) creds_store: Option<String>,
}

impl ConfigFile {
    /// Parses a config document; `origin` names it in errors ("the file /x/config.json").
    pub(crate) fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let malformed = |detail: String| ConfigError::Malformed {
            origin: origin.to_owned(),
            detail,
        };
        let value: Value = serde_json::from_str(text).map_err(|e| malformed(json_error(&e)))?;
        let Value::Object(root) = value else {
            return Err(malformed("the top level must be a JSON object".into()));
        };
        let mut file = ConfigFile::default();
        if let Some(auths) = object_field(&root, "auths").map_err(&malformed)? {
            for (key, entry) in auths {
                let entry = parse_entry(key, entry).map_err(&malformed)?;
                file.auths.entries.insert(key.clone(), entry);
            }
        }
        if let Some(helpers) = object_field(&root, "credHelpers").map_err(&malformed)? {
            for (key, helper) in helpers {
                match helper {
                    Value::String(name) if !name.is_empty() => {
                        file.cred_helpers.insert(key.clone(), name.clone());
                    }
                    Value::String(_) | Value::Null => {}
                    _ => {
                        return Err(malformed(format!(
                            "credHelpers[\"{key}\"] must be a string"
                        )));
                    }
                }
            }
        }
        match root.get("credsStore") {
            None | Some(Value::Null) => {}
            Some(Value::String(name)) => {
                file.creds_store = Some(name.clone()).filter(|n| !n.is_empty());
            }
            Some(_) => return Err(malformed("credsStore must be a string".into())),
        }
        Ok(file)
    }
}

/// A field that must be an object when present; `null` counts as absent, as in Go.
fn object_field<'a>(
    root: &'a Map<String, Value>,
    name: &str,
) -> Result<Option<&'a Map<String, Value>>, String> {
    match root.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(map)) => Ok(Some(map)),
        Some(_) => Err(format!("{name} must be an object")),
    }
}

fn parse_entry(key: &str, entry: &Value) -> Result<AuthEntry, String> {
    let fields = match entry {
        Value::Object(fields) => fields,
        Value::Null => return Ok(AuthEntry::default()),
        _ => return Err(format!("auths[\"{key}\"] must be an object")),
    };
    let field = |name: &str| -> Result<String, String> {
        match fields.get(name) {
            None | Some(Value::Null) => Ok(String::new()),
            Some(Value::String(text)) => Ok(text.clone()),
            Some(_) => Err(format!("auths[\"{key}\"].{name} must be a string")),
        }
    };
    let mut entry = AuthEntry {
        username: field("username")?,
        password: Secret::new(field("password")?),
        identity_token: Secret::new(field("identitytoken")?),
        registry_token: Secret::new(field("registrytoken")?),
    };
    let auth = Secret::new(field("auth")?);
    if !auth.is_empty() {
        let (username, password) = decode_auth(auth.expose()).ok_or_else(|| {
            format!("auths[\"{key}\"].auth is not base64 of \"username:password\"")
        })?;
        entry.username = username;
        entry.password = Secret::new(password);
    }
    Ok(entry)
}

/// Decodes `base64(user:password)`; `None` when it is not base64, not UTF-8, or has no `:`.
fn decode_auth(auth: &str) -> Option<(String, String)> {
    let bytes = BASE64.decode(auth.trim()).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (username, password) = text.split_once(':')?;
    Some((username.to_owned(), password.to_owned()))
}

/// A JSON syntax error as category and position: serde_json's messages for `Value` never quote input, but
/// the position is all a user needs to find the fault.
fn json_error(error: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let what = match error.classify() {
        Category::Eof => "the JSON ends early",
        Category::Syntax => "invalid JSON",
        Category::Data => "unexpected JSON value",
        Category::Io => "cannot read the JSON",
    };
    format!("{what} at line {} column {}", error.line(), error.column())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(text: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(text)
    }

    fn basic(username: &str, password: &str) -> RegistryAuth {
        RegistryAuth::Basic {
            username: username.into(),
            password: Secret::new(password.into()),
        }
    }

    #[test]
    fn entry_forms() {
        let text = format!(
            r#"{{"auths":{{
                "a.test":{{"auth":"{}"}},
                "b.test":{{"username":"bob","password":"pw"}},
                "c.test":{{"identitytoken":"refresh"}},
                "d.test":{{"registrytoken":"bearer","identitytoken":"refresh"}},
                "e.test":{{"auth":"{}","username":"ignored"}},
                "f.test":{{}},
                "g.test":{{"auth":""}},
                "h.test":{{"auth":"{}"}}
            }}}}"#,
            b64("alice:s3:cret"),
            b64("eve:pw2"),
            "Y2Fyb2w6cHc", // carol:pw without padding
        );
        let map = ConfigFile::parse(&text, "test").unwrap().auths;
        assert_eq!(map.get("a.test"), Some(basic("alice", "s3:cret")));
        assert_eq!(map.get("b.test"), Some(basic("bob", "pw")));
        assert_eq!(
            map.get("c.test"),
            Some(RegistryAuth::IdentityToken(Secret::new("refresh".into())))
        );
        assert_eq!(
            map.get("d.test"),
            Some(RegistryAuth::RegistryToken(Secret::new("bearer".into())))
        );
        assert_eq!(map.get("e.test"), Some(basic("eve", "pw2")));
        assert_eq!(map.get("f.test"), None);
        assert_eq!(map.get("g.test"), None);
        assert_eq!(map.get("h.test"), Some(basic("carol", "pw")));
        assert_eq!(map.get("x.test"), None);
        assert_eq!(map.get(""), None);
    }

    #[test]
    fn legacy_keys_match_by_hostname_and_markers_are_skipped() {
        let text = format!(
            r#"{{"auths":{{
                "https://index.docker.io/v1/":{{"auth":"{}"}},
                "http://legacy.test":{{"auth":"{}"}},
                "https://old.test/v1/":{{"auth":"{}"}},
                "marker.test":{{}},
                "https://marker.test":{{"auth":"{}"}}
            }}}}"#,
            b64("hub:1"),
            b64("leg:2"),
            b64("old:3"),
            b64("real:4"),
        );
        let map = ConfigFile::parse(&text, "test").unwrap().auths;
        for hub in [
            "docker.io",
            "index.docker.io",
            "registry-1.docker.io",
            "https://index.docker.io/v1/",
        ] {
            assert_eq!(map.get(hub), Some(basic("hub", "1")), "{hub}");
        }
        assert_eq!(map.get("legacy.test"), Some(basic("leg", "2")));
        assert_eq!(map.get("old.test"), Some(basic("old", "3")));
        assert_eq!(map.get("marker.test"), Some(basic("real", "4")));
        assert_eq!(map.get("old.test:5000"), None);
    }

    #[test]
    fn hub_alias_key_matches_hub() {
        let text = format!(r#"{{"auths":{{"docker.io":{{"auth":"{}"}}}}}}"#, b64("u:p"));
        let map = ConfigFile::parse(&text, "test").unwrap().auths;
        assert_eq!(map.get("index.docker.io"), Some(basic("u", "p")));
    }

    #[test]
    fn helpers_and_store() {
        let file = ConfigFile::parse(
            r#"{"credHelpers":{"a.test":"env","b.test":""},"credsStore":"pass","other":[1]}"#,
            "test",
        )
        .unwrap();
        assert_eq!(
            file.cred_helpers.get("a.test").map(String::as_str),
            Some("env")
        );
        assert!(!file.cred_helpers.contains_key("b.test"));
        assert_eq!(file.creds_store.as_deref(), Some("pass"));
        let empty = ConfigFile::parse(r#"{"credsStore":"","auths":null}"#, "test").unwrap();
        assert_eq!(empty.creds_store, None);
    }

    #[test]
    fn malformed_documents_name_the_origin_never_the_contents() {
        let bad = [
            r#"{"auths":{"a.test":{"auth":"canary-secret"}}}"#.to_owned(),
            format!(
                r#"{{"auths":{{"a.test":{{"auth":"{}"}}}}}}"#,
                b64("canary-no-colon")
            ),
            r#"{"auths":{"a.test":{"password":["canary-secret"]}}}"#.to_owned(),
            r#"{"auths":{"a.test":"canary-secret"}}"#.to_owned(),
            r#"{"auths":["canary-secret"]}"#.to_owned(),
            r#"{"credHelpers":{"a.test":7}}"#.to_owned(),
            r#"{"credsStore":{"canary-secret":1}}"#.to_owned(),
            r#"{"auths":{"a.test":{"auth":"canary-secret"#.to_owned(),
            r#"{"auths":{"a.test":{"auth":canary-secret}}}"#.to_owned(),
            r#"["canary-secret"]"#.to_owned(),
            r#"{"auths":{}} {"canary-secret":1}"#.to_owned(),
            String::new(),
        ];
        for text in bad {
            let error = ConfigFile::parse(&text, "the file /x/config.json").unwrap_err();
            let message = error.to_string();
            assert!(message.contains("/x/config.json"), "{message}");
            assert!(!message.contains("canary"), "{message}");
            assert_eq!(message.lines().count(), 1, "{message}");
        }
    }

    #[test]
    fn env_form_and_usernames() {
        let text = format!(
            r#"{{"auths":{{"ghcr.io":{{"auth":"{}"}},"tok.test":{{"identitytoken":"r"}},"m.test":{{}}}}}}"#,
            b64("octo:pat")
        );
        let map = AuthMap::parse_env(&text).unwrap();
        assert_eq!(map.get("https://ghcr.io/v2/"), Some(basic("octo", "pat")));
        assert_eq!(
            map.usernames(),
            BTreeMap::from([
                ("ghcr.io".to_owned(), "octo".to_owned()),
                ("tok.test".to_owned(), "<token>".to_owned())
            ])
        );
        let error = AuthMap::parse_env("{not json").unwrap_err().to_string();
        assert!(error.contains("DOCKER_AUTH_CONFIG"), "{error}");
    }
}
