//! The docker credential-helper protocol, byte-compatible with `docker/docker-credential-helpers`.
//!
//! A helper binary implements [`Helper`] and hands it to [`run`], which owns argv, stdin, stdout and the exit
//! code. The rules callers depend on:
//! - one argument: `store`, `get`, `erase`, `list` or `version` (plus `--version`/`-v`, `--help`/`-h`);
//! - every answer and every error goes to stdout, newline-terminated, and nothing is ever printed before it;
//! - errors exit 1 and are told apart only by their exact text ([`NOT_FOUND`] above all: skopeo and podman
//!   fall back to anonymous access on that text and fail hard on any other);
//! - JSON is written the way Go's `json.Encoder` writes it (`<`, `>`, `&` escaped, keys in a fixed order),
//!   because some callers compare bytes.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::process::ExitCode;

use serde::Serialize;
use serde_json::Value;

use crate::secret::Secret;

/// The not-found text every caller recognises. Also the answer for a host a helper does not serve.
pub const NOT_FOUND: &str = "credentials not found in native keychain";
/// The error for an empty key on `get`/`erase` or an empty `ServerURL` on `store`.
pub const MISSING_SERVER_URL: &str = "no credentials server URL";
/// The error for an empty `Username` on `store`.
pub const MISSING_USERNAME: &str = "no credentials username";
/// The username docker uses to mark an identity (refresh) token instead of a password.
pub const IDENTITY_TOKEN_USERNAME: &str = "<token>";
/// The most stdin a helper reads. Anything larger is refused rather than buffered.
pub const MAX_INPUT_BYTES: usize = 1 << 20;

/// One set of credentials for one server key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The key the caller asked for or stored under (`host`, `https://host`, `https://index.docker.io/v1/`…).
    pub server_url: String,
    /// The username, or [`IDENTITY_TOKEN_USERNAME`] when `secret` is an identity token.
    pub username: String,
    /// The password, token or identity token.
    pub secret: Secret<String>,
}

impl Credentials {
    /// The protocol's JSON object for these credentials: `get`'s answer, `store`'s input.
    pub fn to_json(&self) -> Result<String, Error> {
        to_go_json(&CredentialsJson {
            server_url: &self.server_url,
            username: &self.username,
            secret: self.secret.expose(),
        })
    }

    /// True when the secret is an identity (refresh) token rather than a password.
    pub fn is_identity_token(&self) -> bool {
        self.username == IDENTITY_TOKEN_USERNAME
    }
}

/// What can go wrong in a helper operation. The `Display` text is what the caller sees on stdout.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// Nothing stored for the key, or a host this helper does not serve.
    #[error("credentials not found in native keychain")]
    NotFound,
    /// The key (or `ServerURL`) was empty.
    #[error("no credentials server URL")]
    MissingServerUrl,
    /// `store` got an empty `Username`.
    #[error("no credentials username")]
    MissingUsername,
    /// Any other failure, as one line that says what failed and what to do. Never contains a secret.
    #[error("{0}")]
    Other(String),
}

impl Error {
    /// Builds an [`Error::Other`] from anything printable. The text must never contain a secret.
    pub fn other(message: impl std::fmt::Display) -> Self {
        Error::Other(message.to_string())
    }
}

/// A credential helper: the four operations of the protocol. `run` does all parsing and printing.
pub trait Helper {
    /// Credentials for a key. A miss, and a host the helper does not serve, are [`Error::NotFound`].
    fn get(&self, server_url: &str) -> Result<Credentials, Error>;
    /// Saves credentials under `credentials.server_url`, replacing what was there.
    fn store(&self, credentials: Credentials) -> Result<(), Error>;
    /// Removes the credentials of a key. Erasing a missing key succeeds.
    fn erase(&self, server_url: &str) -> Result<(), Error>;
    /// Every stored key with its username.
    fn list(&self) -> Result<BTreeMap<String, String>, Error>;
}

/// Runs one protocol invocation from the process's argv, stdin and stdout, and returns the exit code.
///
/// `binary` is the program's name (`docker-credential-keyring`), used in the usage, unknown-action and
/// version texts.
pub fn run(binary: &str, helper: &dyn Helper) -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let code = run_with(binary, helper, &args, &mut io::stdin().lock(), &mut out);
    // A caller that closed its end of the pipe has gone; there is nobody left to tell.
    let _ = out.flush();
    ExitCode::from(code)
}

/// [`run`] with explicit argv (without the program name), input and output; returns the exit code.
pub fn run_with(
    binary: &str,
    helper: &dyn Helper,
    args: &[String],
    input: &mut dyn Read,
    out: &mut dyn Write,
) -> u8 {
    let usage = format!("Usage: {binary} <store|get|erase|list|version>");
    let [action] = args else {
        return answer(out, Err(Error::Other(usage)));
    };
    let result = match action.as_str() {
        "get" => read_key(input)
            .and_then(|key| helper.get(&key))
            .and_then(|c| c.to_json().map(Some)),
        "store" => read_credentials(input)
            .and_then(|c| helper.store(c))
            .map(|()| None),
        "erase" => read_key(input)
            .and_then(|key| helper.erase(&key))
            .map(|()| None),
        // docker writes `unused` to stdin for list; it is never read, so a caller that keeps stdin open
        // cannot make us hang.
        "list" => helper.list().and_then(|map| to_go_json(&map).map(Some)),
        "version" | "--version" | "-v" => Ok(Some(format!(
            "{binary} (regkit) {}",
            env!("CARGO_PKG_VERSION")
        ))),
        "--help" | "-h" => Ok(Some(usage)),
        other => Err(Error::Other(format!("{binary}: unknown action: {other}"))),
    };
    answer(out, result)
}

fn answer(out: &mut dyn Write, result: Result<Option<String>, Error>) -> u8 {
    let (text, code) = match result {
        Ok(Some(text)) => (Some(text), 0),
        Ok(None) => (None, 0),
        Err(error) => (Some(error.to_string()), 1),
    };
    if let Some(text) = text {
        // Write errors (a closed pipe) cannot be reported anywhere useful; the exit code still tells.
        let _ = writeln!(out, "{text}");
    }
    code
}

/// The protocol's credentials object, as `get` answers it and `store` reads it.
#[derive(Serialize)]
struct CredentialsJson<'a> {
    #[serde(rename = "ServerURL")]
    server_url: &'a str,
    #[serde(rename = "Username")]
    username: &'a str,
    #[serde(rename = "Secret")]
    secret: &'a str,
}

/// Reads all of stdin, bounded by [`MAX_INPUT_BYTES`], as UTF-8.
fn read_input(input: &mut dyn Read) -> Result<String, Error> {
    let mut bytes = Vec::new();
    input
        .take(MAX_INPUT_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::other(format!("cannot read stdin: {e}")))?;
    if bytes.len() > MAX_INPUT_BYTES {
        return Err(Error::other(
            "stdin is larger than 1 MiB: a credential helper expects a server URL or one credentials object",
        ));
    }
    String::from_utf8(bytes).map_err(|_| Error::other("stdin is not valid UTF-8"))
}

/// Reads the key of `get`/`erase` the way the reference helpers do: lines joined without their line breaks,
/// surrounding white space trimmed.
fn read_key(input: &mut dyn Read) -> Result<String, Error> {
    let text = read_input(input)?;
    let key: String = text
        .split('\n')
        .map(|line| line.strip_suffix('\r').unwrap_or(line))
        .collect();
    let key = key.trim();
    if key.is_empty() {
        return Err(Error::MissingServerUrl);
    }
    Ok(key.to_owned())
}

/// Reads the JSON object of `store`: the first JSON value on stdin, field names matched without regard to
/// case (as Go's decoder does), trailing bytes ignored.
fn read_credentials(input: &mut dyn Read) -> Result<Credentials, Error> {
    let text = read_input(input)?;
    if text.trim().is_empty() {
        return Err(Error::other(
            "no credentials on stdin: store expects a JSON object with ServerURL, Username and Secret",
        ));
    }
    let value = serde_json::Deserializer::from_str(&text)
        .into_iter::<Value>()
        .next()
        .unwrap_or(Ok(Value::Null))
        // serde_json's syntax errors give a position, never the input itself.
        .map_err(|e| Error::other(format!("malformed credentials JSON on stdin: {e}")))?;
    let Value::Object(fields) = value else {
        return Err(Error::other(
            "malformed credentials JSON on stdin: expected an object with ServerURL, Username and Secret",
        ));
    };
    let field = |name: &str| -> Result<String, Error> {
        let found = fields.get(name).or_else(|| {
            fields
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v)
        });
        match found {
            None | Some(Value::Null) => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(Error::other(format!(
                "malformed credentials JSON on stdin: {name} must be a string"
            ))),
        }
    };
    let credentials = Credentials {
        server_url: field("ServerURL")?,
        username: field("Username")?,
        secret: Secret::new(field("Secret")?),
    };
    if credentials.server_url.trim().is_empty() {
        return Err(Error::MissingServerUrl);
    }
    if credentials.username.is_empty() {
        return Err(Error::MissingUsername);
    }
    Ok(credentials)
}

/// Serialises like Go's `json.Encoder` with HTML escaping, which every reference helper uses.
pub fn to_go_json<T: Serialize + ?Sized>(value: &T) -> Result<String, Error> {
    let mut buffer = Vec::new();
    let mut serializer = serde_json::Serializer::with_formatter(&mut buffer, GoFormatter);
    value
        .serialize(&mut serializer)
        .map_err(|e| Error::other(format!("cannot encode the answer as JSON: {e}")))?;
    String::from_utf8(buffer).map_err(|_| Error::other("cannot encode the answer as UTF-8"))
}

/// Escapes `<`, `>`, `&`, U+2028 and U+2029 as `\u00XX`, as Go does.
struct GoFormatter;

impl serde_json::ser::Formatter for GoFormatter {
    fn write_string_fragment<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut start = 0;
        for (index, ch) in fragment.char_indices() {
            let escaped = match ch {
                '<' => "\\u003c",
                '>' => "\\u003e",
                '&' => "\\u0026",
                '\u{2028}' => "\\u2028",
                '\u{2029}' => "\\u2029",
                _ => continue,
            };
            writer.write_all(&fragment.as_bytes()[start..index])?;
            writer.write_all(escaped.as_bytes())?;
            start = index + ch.len_utf8();
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// A helper that records what it was given and serves one entry.
    #[derive(Default)]
    struct Recorder {
        stored: RefCell<Vec<Credentials>>,
        erased: RefCell<Vec<String>>,
    }

    impl Helper for Recorder {
        fn get(&self, server_url: &str) -> Result<Credentials, Error> {
            if server_url == "https://index.docker.io/v1/" {
                Ok(Credentials {
                    server_url: server_url.into(),
                    username: "<token>".into(),
                    secret: Secret::new("a&b".into()),
                })
            } else {
                Err(Error::NotFound)
            }
        }
        fn store(&self, credentials: Credentials) -> Result<(), Error> {
            self.stored.borrow_mut().push(credentials);
            Ok(())
        }
        fn erase(&self, server_url: &str) -> Result<(), Error> {
            self.erased.borrow_mut().push(server_url.into());
            Ok(())
        }
        fn list(&self) -> Result<BTreeMap<String, String>, Error> {
            Ok(BTreeMap::from([
                ("b.test".into(), "bob".into()),
                ("a.test".into(), "<token>".into()),
            ]))
        }
    }

    fn call(helper: &Recorder, args: &[&str], stdin: &[u8]) -> (u8, String) {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let mut out = Vec::new();
        let code = run_with(
            "docker-credential-t",
            helper,
            &args,
            &mut &stdin[..],
            &mut out,
        );
        (code, String::from_utf8(out).unwrap())
    }

    #[test]
    fn get_prints_go_json_in_key_order() {
        let (code, out) = call(
            &Recorder::default(),
            &["get"],
            b"https://index.docker.io/v1/",
        );
        assert_eq!(code, 0);
        assert_eq!(
            out,
            "{\"ServerURL\":\"https://index.docker.io/v1/\",\"Username\":\"\\u003ctoken\\u003e\",\"Secret\":\"a\\u0026b\"}\n"
        );
    }

    #[test]
    fn get_trims_and_joins_lines() {
        let (code, _) = call(
            &Recorder::default(),
            &["get"],
            b"  https://index.docker.io/\r\nv1/\n",
        );
        assert_eq!(code, 0);
    }

    #[test]
    fn get_miss_and_empty_key_use_exact_texts() {
        assert_eq!(
            call(&Recorder::default(), &["get"], b"x.test"),
            (1, format!("{NOT_FOUND}\n"))
        );
        assert_eq!(
            call(&Recorder::default(), &["get"], b" \n "),
            (1, format!("{MISSING_SERVER_URL}\n"))
        );
        assert_eq!(
            call(&Recorder::default(), &["erase"], b""),
            (1, format!("{MISSING_SERVER_URL}\n"))
        );
    }

    #[test]
    fn argument_errors() {
        let usage = "Usage: docker-credential-t <store|get|erase|list|version>\n";
        assert_eq!(call(&Recorder::default(), &[], b""), (1, usage.into()));
        assert_eq!(
            call(&Recorder::default(), &["get", "https://h"], b""),
            (1, usage.into())
        );
        assert_eq!(call(&Recorder::default(), &["-h"], b""), (0, usage.into()));
        assert_eq!(
            call(&Recorder::default(), &["fetch"], b""),
            (1, "docker-credential-t: unknown action: fetch\n".into())
        );
        let (code, out) = call(&Recorder::default(), &["--version"], b"");
        assert_eq!(code, 0);
        assert!(out.starts_with("docker-credential-t (regkit) "));
        assert_eq!(out.lines().count(), 1);
    }

    #[test]
    fn store_accepts_docker_forms() {
        let helper = Recorder::default();
        let inputs: [&[u8]; 4] = [
            b"{\"ServerURL\":\"h\",\"Username\":\"\\u003ctoken\\u003e\",\"Secret\":\"r\"}\n",
            b"{\"serverurl\":\"h\",\"USERNAME\":\"<token>\",\"secret\":\"r\"}",
            b"{\n  \"ServerURL\": \"h\",\n  \"Username\": \"<token>\",\n  \"Secret\": \"r\"\n}\n",
            b"{\"ServerURL\":\"h\",\"Username\":\"<token>\",\"Secret\":\"r\"} trailing",
        ];
        for input in inputs {
            assert_eq!(call(&helper, &["store"], input), (0, String::new()));
        }
        for stored in helper.stored.borrow().iter() {
            assert_eq!(stored.server_url, "h");
            assert!(stored.is_identity_token());
            assert_eq!(stored.secret.expose(), "r");
        }
    }

    #[test]
    fn store_rejects_bad_input_without_echoing_it() {
        let helper = Recorder::default();
        assert_eq!(
            call(
                &helper,
                &["store"],
                b"{\"ServerURL\":\"\",\"Username\":\"u\",\"Secret\":\"s\"}"
            ),
            (1, format!("{MISSING_SERVER_URL}\n"))
        );
        assert_eq!(
            call(
                &helper,
                &["store"],
                b"{\"ServerURL\":\"h\",\"Username\":\"\",\"Secret\":\"s\"}"
            ),
            (1, format!("{MISSING_USERNAME}\n"))
        );
        for bad in [
            &b"{\"ServerURL\":\"h\",\"Secret\":\"canary-x"[..],
            b"[\"canary-x\"]",
            b"{\"ServerURL\":\"h\",\"Username\":\"u\",\"Secret\":7}",
            b"",
            b"\xff\xfe",
        ] {
            let (code, out) = call(&helper, &["store"], bad);
            assert_eq!(code, 1, "{out}");
            assert!(!out.contains("canary"), "{out}");
            assert_eq!(out.lines().count(), 1);
        }
        assert!(helper.stored.borrow().is_empty());
    }

    #[test]
    fn oversized_input_is_refused() {
        let big = vec![b'a'; MAX_INPUT_BYTES + 1];
        let (code, out) = call(&Recorder::default(), &["get"], &big);
        assert_eq!(code, 1);
        assert!(out.contains("1 MiB"));
    }

    #[test]
    fn list_is_sorted_go_json_and_ignores_stdin() {
        let (code, out) = call(&Recorder::default(), &["list"], b"unused");
        assert_eq!(code, 0);
        assert_eq!(
            out,
            "{\"a.test\":\"\\u003ctoken\\u003e\",\"b.test\":\"bob\"}\n"
        );
    }
}
