//! `WWW-Authenticate` parsing (RFC 7235) and the bearer-token cache.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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
