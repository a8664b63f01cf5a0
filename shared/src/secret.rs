//! [`Secret`]: a value that never shows up in `Debug`, `Display` or an error message, and [`redact`], which
//! cuts the credentials a client sent out of what a server sends back.

use std::fmt;

/// Shorter values (a repository key such as `docker`) occur in ordinary text too often to be cut out of it.
const MIN_REDACTED_CHARS: usize = 8;

/// Authorization schemes whose credentials an echoed request header shows in encoded form.
const SCHEMES: [&str; 3] = ["basic ", "bearer ", "token "];

/// `text` with each of `sent` (the credentials a client sent with the request) and the credentials after
/// an authorization scheme replaced by `REDACTED`. For text that came from outside (a server's error body,
/// which may echo the request) before it goes into an error message or a log line. Only what the caller
/// names is cut: settings, URLs and other values read through [`Secret::expose`] stay readable.
pub fn redact<'a>(text: &str, sent: impl IntoIterator<Item = &'a Secret<String>>) -> String {
    let mut text = text.to_string();
    for value in sent {
        let value = value.0.as_str();
        if value.chars().count() >= MIN_REDACTED_CHARS && text.contains(value) {
            text = text.replace(value, "REDACTED");
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
    /// request header, a keyring write). A client that sends it also passes it to [`redact`] for the
    /// answers it reads back.
    pub fn expose(&self) -> &String {
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
    fn sent_values_are_redacted_from_foreign_text() {
        let secret = Secret::new(String::from("canary-redact-91"));
        let echoed = "HTTP 401: private-token: canary-redact-91";
        assert_eq!(redact(echoed, []), echoed);
        assert_eq!(
            redact(echoed, [&secret]),
            "HTTP 401: private-token: REDACTED"
        );
        // Short values are left alone: they would cut ordinary words.
        let short = Secret::new(String::from("docker"));
        assert_eq!(redact("/api/docker/v2", [&short]), "/api/docker/v2");
        // Echoed Authorization headers lose their credentials whatever the encoding.
        assert_eq!(
            redact(
                "authorization: Basic c3dlZXAtdXNlcjpjYW5hcnk=\r\nPRIVATE-TOKEN x",
                []
            ),
            "authorization: Basic REDACTED\r\nPRIVATE-TOKEN x"
        );
        assert_eq!(
            redact("Bearer eyJhbGciOi.x.y, then", []),
            "Bearer REDACTED, then"
        );
        assert_eq!(redact("a token is missing", []), "a token is missing");
    }

    #[test]
    fn exposing_a_value_leaves_no_trace_in_other_text() {
        // A setting read through a Secret (an API URL) must stay readable in every later message.
        let url = Secret::new(String::from("http://127.0.0.1:5999/api"));
        assert_eq!(url.expose(), "http://127.0.0.1:5999/api");
        let token = Secret::new(String::from("canary-token-5f1c"));
        let _ = token.expose();
        let text = "cannot reach http://127.0.0.1:5999/api: you sent canary-token-5f1c";
        assert_eq!(
            redact(text, [&token]),
            "cannot reach http://127.0.0.1:5999/api: you sent REDACTED"
        );
    }
}
