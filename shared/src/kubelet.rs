//! The kubelet's exec credential-provider protocol (`credentialprovider.kubelet.k8s.io/v1`), spoken by the
//! cloud helpers and the router when their first argument is `kubelet`.
//!
//! The kubelet writes one `CredentialProviderRequest` on stdin:
//!
//! ```json
//! {"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderRequest","image":"…"}
//! ```
//!
//! (plus `serviceAccountToken` and `serviceAccountAnnotations` when the provider asks for them; regkit
//! identifies itself from the node's own credentials and never reads them). The answer is one
//! `CredentialProviderResponse` on stdout, from the same providers and token caches as `get`:
//!
//! ```json
//! {"kind":"CredentialProviderResponse","apiVersion":"credentialprovider.kubelet.k8s.io/v1",
//!  "cacheKeyType":"Registry","cacheDuration":"11h55m0s","auth":{"<registry>":{"username":"…","password":"…"}}}
//! ```
//!
//! The `auth` key is the image's registry (`host[:port]`), a glob that matches that registry only: an ECR
//! or ACR token is valid for one registry, so a wider glob would hand it to another account's. The
//! `cacheDuration` is the token's remaining lifetime (`0s`, "do not cache", once it has expired); it is
//! left out for credentials without an expiry (keyring, environment, external helpers), so the kubelet's
//! `defaultCacheDuration` applies. Any failure exits 1 with one line on stderr and nothing on stdout.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::process::ExitCode;

use serde::Serialize;
use serde_json::Value;

use crate::protocol::{self, Credentials, Error, Helper, MAX_INPUT_BYTES};

/// The first argument that selects this mode.
pub const MODE: &str = "kubelet";
/// The API version the kubelet has spoken since Kubernetes 1.26 (GA).
pub const API_VERSION: &str = "credentialprovider.kubelet.k8s.io/v1";
/// The beta version of kubelets 1.24 and 1.25, with the same fields; answered in kind.
pub const API_VERSION_BETA: &str = "credentialprovider.kubelet.k8s.io/v1beta1";
/// The request's `kind`.
pub const REQUEST_KIND: &str = "CredentialProviderRequest";
/// The response's `kind`.
pub const RESPONSE_KIND: &str = "CredentialProviderResponse";

/// Credentials and how long they stay valid.
#[derive(Debug, Clone)]
pub struct Lease {
    /// The credentials, as `get` answers them.
    pub credentials: Credentials,
    /// Seconds until they expire (0 once expired); `None` when they do not expire.
    pub remaining_secs: Option<u64>,
}

/// A credential source that can say how long its answers stay valid.
pub trait Expiring: Helper {
    /// Credentials for a key with their remaining lifetime. By default `get`'s answer, without expiry.
    fn lease(&self, server_url: &str) -> Result<Lease, Error> {
        self.get(server_url).map(|credentials| Lease {
            credentials,
            remaining_secs: None,
        })
    }
}

/// The lease of a cached token at `now`.
#[cfg(any(feature = "ecr", feature = "acr", feature = "gcr"))]
fn lease_of(server_url: &str, token: crate::tokencache::CachedToken, now: i64) -> Lease {
    Lease {
        credentials: Credentials {
            server_url: server_url.to_owned(),
            username: token.username,
            secret: token.password,
        },
        remaining_secs: Some(u64::try_from(token.expires_at.saturating_sub(now)).unwrap_or(0)),
    }
}

impl Expiring for crate::envhelper::EnvHelper {}

#[cfg(feature = "keyring")]
impl Expiring for crate::keyring::KeyringStore {}

#[cfg(feature = "ecr")]
impl Expiring for crate::ecr::helper::EcrHelper {
    fn lease(&self, server_url: &str) -> Result<Lease, Error> {
        Ok(lease_of(server_url, self.token(server_url)?, self.now()))
    }
}

#[cfg(any(feature = "acr", feature = "gcr"))]
impl<P: crate::cloudauth::Provider> Expiring for crate::cloudauth::CachedHelper<P> {
    fn lease(&self, server_url: &str) -> Result<Lease, Error> {
        Ok(lease_of(server_url, self.token(server_url)?, self.now()))
    }
}

/// Why a kubelet request could not be answered. `Display` is the one line written to stderr.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KubeletError {
    /// stdin could not be read, was too large, or is not a JSON object.
    #[error("cannot read the CredentialProviderRequest on stdin: {0}")]
    Input(String),
    /// The request names an API version this program does not speak.
    #[error(
        "unsupported apiVersion {0:?} in the CredentialProviderRequest: this plugin speaks {API_VERSION} (and {API_VERSION_BETA}); set apiVersion in the kubelet's CredentialProviderConfig to one of them"
    )]
    Version(String),
    /// A required field is missing, empty or of the wrong type.
    #[error("invalid CredentialProviderRequest: {0}")]
    Field(String),
    /// The provider has no credentials for the image's registry.
    #[error(
        "no credentials for {registry} (image {image}): {reason}; check that the kubelet's matchImages only name registries this plugin serves"
    )]
    NotFound {
        /// The registry.
        registry: String,
        /// The image of the request.
        image: String,
        /// What the provider said.
        reason: String,
    },
    /// The answer could not be encoded or written.
    #[error("cannot write the CredentialProviderResponse: {0}")]
    Output(String),
}

/// Runs the kubelet mode when the only argument is [`MODE`], else the docker credential-helper protocol.
pub fn dispatch<S: Expiring>(binary: &str, source: &S) -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) != Some(MODE) {
        return protocol::run(binary, source);
    }
    if args.len() > 1 {
        eprintln!("{binary}: usage: {binary} {MODE} (a CredentialProviderRequest on stdin)");
        return ExitCode::FAILURE;
    }
    let stdout = io::stdout();
    let mut out = stdout.lock();
    match answer(source, &mut io::stdin().lock(), &mut out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{binary}: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Reads one request from `input` and writes the response to `out`.
pub fn answer(
    source: &dyn Expiring,
    input: &mut dyn Read,
    out: &mut dyn Write,
) -> Result<(), KubeletError> {
    let request = Request::read(input)?;
    let registry = registry_of(&request.image).ok_or_else(|| {
        KubeletError::Field(format!("image {:?} names no registry", request.image))
    })?;
    let lease = source
        .lease(registry)
        .map_err(|error| KubeletError::NotFound {
            registry: registry.to_owned(),
            image: request.image.clone(),
            reason: match error {
                Error::NotFound => "the provider has none (see the note above, if any)".to_owned(),
                other => other.to_string(),
            },
        })?;
    let response = Response {
        kind: RESPONSE_KIND,
        api_version: &request.api_version,
        cache_key_type: "Registry",
        cache_duration: lease.remaining_secs.map(go_duration),
        auth: BTreeMap::from([(
            registry,
            AuthConfig {
                username: &lease.credentials.username,
                password: lease.credentials.secret.expose(),
            },
        )]),
    };
    let text = protocol::to_go_json(&response).map_err(|e| KubeletError::Output(e.to_string()))?;
    writeln!(out, "{text}").map_err(|e| KubeletError::Output(e.to_string()))
}

/// The fields of a request regkit uses. The service account token is never read.
#[derive(Debug)]
struct Request {
    api_version: String,
    image: String,
}

impl Request {
    fn read(input: &mut dyn Read) -> Result<Request, KubeletError> {
        let mut bytes = Vec::new();
        input
            .take(MAX_INPUT_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| KubeletError::Input(e.to_string()))?;
        if bytes.len() > MAX_INPUT_BYTES {
            return Err(KubeletError::Input("it is larger than 1 MiB".into()));
        }
        // serde_json's syntax errors give a position, never the input (which may hold a token).
        let value: Value = serde_json::from_slice(&bytes)
            .map_err(|e| KubeletError::Input(format!("not JSON: {e}")))?;
        let Value::Object(fields) = value else {
            return Err(KubeletError::Input("not a JSON object".into()));
        };
        let text = |name: &str| -> Result<String, KubeletError> {
            match fields.get(name) {
                Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
                Some(Value::String(_)) | None | Some(Value::Null) => {
                    Err(KubeletError::Field(format!("{name} is missing or empty")))
                }
                Some(_) => Err(KubeletError::Field(format!("{name} must be a string"))),
            }
        };
        let api_version = match text("apiVersion") {
            Ok(version) => version,
            Err(_) => return Err(KubeletError::Version(String::new())),
        };
        if api_version != API_VERSION && api_version != API_VERSION_BETA {
            return Err(KubeletError::Version(
                api_version.chars().take(100).collect(),
            ));
        }
        let kind = text("kind")?;
        if kind != REQUEST_KIND {
            return Err(KubeletError::Field(format!(
                "kind is {:?}, expected {REQUEST_KIND}",
                kind.chars().take(100).collect::<String>()
            )));
        }
        Ok(Request {
            api_version,
            image: text("image")?,
        })
    }
}

/// The registry of an image reference, as the kubelet and docker read it: the first path component when it
/// looks like a host (a `.` or `:`, or `localhost`), else Docker Hub.
pub fn registry_of(image: &str) -> Option<&str> {
    let image = image.trim();
    if image.is_empty() || image.contains(char::is_whitespace) || image.contains("://") {
        return None;
    }
    match image.split_once('/') {
        Some((first, rest))
            if !rest.is_empty() && (first.contains(['.', ':']) || first == "localhost") =>
        {
            Some(first)
        }
        _ if image.starts_with('/') => None,
        _ => Some("docker.io"),
    }
}

/// A whole number of seconds the way Go's `time.Duration.String` writes it (`11h58m0s`, `1m5s`, `0s`), which
/// is how the kubelet's `metav1.Duration` reads it.
pub fn go_duration(secs: u64) -> String {
    let (hours, minutes, seconds) = (secs / 3600, secs % 3600 / 60, secs % 60);
    if hours > 0 {
        format!("{hours}h{minutes}m{seconds}s")
    } else if minutes > 0 {
        format!("{minutes}m{seconds}s")
    } else {
        format!("{seconds}s")
    }
}

/// `CredentialProviderResponse`, fields in the order of the Go type (TypeMeta first).
#[derive(Serialize)]
struct Response<'a> {
    kind: &'static str,
    #[serde(rename = "apiVersion")]
    api_version: &'a str,
    #[serde(rename = "cacheKeyType")]
    cache_key_type: &'static str,
    #[serde(rename = "cacheDuration", skip_serializing_if = "Option::is_none")]
    cache_duration: Option<String>,
    auth: BTreeMap<&'a str, AuthConfig<'a>>,
}

/// `AuthConfig`: basic credentials for the registry.
#[derive(Serialize)]
struct AuthConfig<'a> {
    username: &'a str,
    password: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    /// Serves one registry with a fixed lifetime.
    struct Fixed(Option<u64>);

    impl Helper for Fixed {
        fn get(&self, server_url: &str) -> Result<Credentials, Error> {
            if server_url != "r.example:5000" {
                return Err(Error::NotFound);
            }
            Ok(Credentials {
                server_url: server_url.into(),
                username: "u".into(),
                secret: Secret::new("p<&>".into()),
            })
        }
        fn store(&self, _: Credentials) -> Result<(), Error> {
            Ok(())
        }
        fn erase(&self, _: &str) -> Result<(), Error> {
            Ok(())
        }
        fn list(&self) -> Result<BTreeMap<String, String>, Error> {
            Ok(BTreeMap::new())
        }
    }

    impl Expiring for Fixed {
        fn lease(&self, server_url: &str) -> Result<Lease, Error> {
            Ok(Lease {
                credentials: self.get(server_url)?,
                remaining_secs: self.0,
            })
        }
    }

    fn run(source: &Fixed, input: &str) -> Result<String, KubeletError> {
        let mut out = Vec::new();
        answer(source, &mut input.as_bytes(), &mut out)?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn answers_with_the_v1_field_names() {
        let request = r#"{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderRequest","image":"r.example:5000/team/app:1","serviceAccountToken":"canary","serviceAccountAnnotations":{"a":"b"}}"#;
        assert_eq!(
            run(&Fixed(Some(43080)), request).unwrap(),
            "{\"kind\":\"CredentialProviderResponse\",\"apiVersion\":\"credentialprovider.kubelet.k8s.io/v1\",\"cacheKeyType\":\"Registry\",\"cacheDuration\":\"11h58m0s\",\"auth\":{\"r.example:5000\":{\"username\":\"u\",\"password\":\"p\\u003c\\u0026\\u003e\"}}}\n"
        );
        let beta = request.replace("/v1\"", "/v1beta1\"");
        let out = run(&Fixed(None), &beta).unwrap();
        assert!(out.contains("\"apiVersion\":\"credentialprovider.kubelet.k8s.io/v1beta1\""));
        assert!(!out.contains("cacheDuration"), "{out}");
    }

    #[test]
    fn bad_requests_say_what_is_wrong_without_echoing_tokens() {
        let v1 = r#""apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderRequest""#;
        for (input, expected) in [
            ("", "not JSON"),
            ("[1]", "not a JSON object"),
            (
                r#"{"apiVersion":"credentialprovider.kubelet.k8s.io/v2","kind":"CredentialProviderRequest","image":"a/b"}"#,
                "unsupported apiVersion \"credentialprovider.kubelet.k8s.io/v2\"",
            ),
            (
                r#"{"kind":"CredentialProviderRequest","image":"a/b"}"#,
                "unsupported apiVersion \"\"",
            ),
            (&format!("{{{v1}}}"), "image is missing"),
            (&format!("{{{v1},\"image\":7}}"), "image must be a string"),
            (
                &format!("{{{v1},\"Image\":\"r.example:5000/x\"}}"),
                "image is missing",
            ),
            (
                r#"{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"Other","image":"a"}"#,
                "kind is \"Other\"",
            ),
            (
                &format!(
                    "{{{v1},\"image\":\"other.example/x\",\"serviceAccountToken\":\"canary\"}}"
                ),
                "no credentials for other.example",
            ),
        ] {
            let error = run(&Fixed(None), input).unwrap_err().to_string();
            assert!(error.contains(expected), "{input}: {error}");
            assert!(!error.contains("canary"), "{error}");
            assert_eq!(error.lines().count(), 1);
        }
    }

    #[test]
    fn registries_of_images() {
        for (image, registry) in [
            ("r.example:5000/team/app:1", Some("r.example:5000")),
            ("localhost/app", Some("localhost")),
            ("nginx", Some("docker.io")),
            ("library/nginx:1", Some("docker.io")),
            (
                "1.dkr.ecr.us-east-1.amazonaws.com/app@sha256:00",
                Some("1.dkr.ecr.us-east-1.amazonaws.com"),
            ),
            ("", None),
            ("a b", None),
            ("https://r.example/x", None),
        ] {
            assert_eq!(registry_of(image), registry, "{image}");
        }
    }

    #[test]
    fn durations_as_go_writes_them() {
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(59), "59s");
        assert_eq!(go_duration(60), "1m0s");
        assert_eq!(go_duration(3600), "1h0m0s");
        assert_eq!(go_duration(43080), "11h58m0s");
        assert_eq!(go_duration(90061), "25h1m1s");
    }
}
