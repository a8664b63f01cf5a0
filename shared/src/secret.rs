//! [`Secret`]: a value that never shows up in `Debug`, `Display` or an error message.

use std::fmt;
use std::sync::Mutex;

/// Every secret value that has left the process through [`Secret::expose`], for [`redact`]: a server that
/// echoes a request back in its error body must not get the secret printed in our error message.
static EXPOSED: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Shorter values (a repository key such as `docker`) occur in ordinary text too often to be cut out of it.
const MIN_REDACTED_CHARS: usize = 8;

/// Authorization schemes whose credentials an echoed request header shows in encoded form.
const SCHEMES: [&str; 3] = ["basic ", "bearer ", "token "];

/// `text` with every secret this process has exposed replaced by `REDACTED`. For text that came from
/// outside (a server's error body) before it goes into an error message or a log line.
pub fn redact(text: &str) -> String {
    let exposed = EXPOSED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut text = text.to_string();
    for value in exposed.iter() {
        if text.contains(value.as_str()) {
            text = text.replace(value.as_str(), "REDACTED");
        }
    }
    redact_schemes(&text)
}

/// Cuts the credentials after `Basic `, `Bearer ` or `Token ` (any case): an echoed `Authorization`
/// header carries the password base64-encoded with the username, which no exposed value matches.
fn redact_schemes(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut search = 0;
    while let Some((at, scheme)) = SCHEMES
        .iter()
        .filter_map(|scheme| lower[search..].find(scheme).map(|i| (search + i, scheme)))
        .min_by_key(|(at, _)| *at)
    {
        let start = at + scheme.len();
        let end = text[start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || "+/=-._~".contains(c)))
            .map_or(text.len(), |i| start + i);
        // Words after "token " in prose are short; credentials are long.
        if end - start >= MIN_REDACTED_CHARS {
            out.push_str(&text[copied..start]);
            out.push_str("REDACTED");
            copied = end;
        }
        search = end.max(start);
    }
    out.push_str(&text[copied..]);
    out
}

/// A password, token or key. `Debug` and `Display` print `REDACTED`; the only way to read the value is
/// [`Secret::expose`], which makes every use greppable.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wraps a value.
    pub fn new(value: T) -> Self {
        Secret(value)
    }

    /// Unwraps the value.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl Secret<String> {
    /// Reads the wrapped value. Call it only where the value must leave the process (stdout of `get`, a
    /// request header, a keyring write). The value is remembered for [`redact`].
    pub fn expose(&self) -> &String {
        if self.0.chars().count() >= MIN_REDACTED_CHARS {
            let mut exposed = EXPOSED
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if !exposed.contains(&self.0) {
                exposed.push(self.0.clone());
            }
        }
        &self.0
    }

    /// True when the secret is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<T> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Secret(value)
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("REDACTED")
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("REDACTED")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let secret = Secret::new(String::from("canary-7f3a"));
        assert_eq!(format!("{secret:?}"), "REDACTED");
        assert_eq!(format!("{secret}"), "REDACTED");
        assert_eq!(format!("{:?}", Some(&secret)), "Some(REDACTED)");
        assert_eq!(secret.expose(), "canary-7f3a");
    }

    #[test]
    fn exposed_values_are_redacted_from_foreign_text() {
        let secret = Secret::new(String::from("canary-redact-91"));
        let echoed = "HTTP 401: private-token: canary-redact-91";
        assert_eq!(redact(echoed), echoed);
        let _ = secret.expose();
        assert_eq!(redact(echoed), "HTTP 401: private-token: REDACTED");
        // Short values are left alone: they would cut ordinary words.
        let _ = Secret::new(String::from("docker")).expose();
        assert_eq!(redact("/api/docker/v2"), "/api/docker/v2");
        // Echoed Authorization headers lose their credentials whatever the encoding.
        assert_eq!(
            redact("authorization: Basic c3dlZXAtdXNlcjpjYW5hcnk=\r\nPRIVATE-TOKEN x"),
            "authorization: Basic REDACTED\r\nPRIVATE-TOKEN x"
        );
        assert_eq!(
            redact("Bearer eyJhbGciOi.x.y, then"),
            "Bearer REDACTED, then"
        );
        assert_eq!(redact("a token is missing"), "a token is missing");
    }
}
