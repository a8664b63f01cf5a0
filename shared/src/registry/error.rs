//! [`RegistryError`], what it means for the exit code ([`failure_kind`]), and the one-line messages both
//! the registry client and the vendor-API client build from what a server or the network said.

use reqwest::StatusCode;

use super::pager::Unbounded;
use crate::report::FailureKind;
use crate::secret::{Secret, redact};

/// Why a registry call failed. `Display` is one line naming the registry and what to do.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// 401 after trying the available credentials, or a token service refusal.
    #[error("authentication to {registry} failed: {message}")]
    Unauthorized {
        /// Registry host.
        registry: String,
        /// What the registry said and what to do.
        message: String,
    },
    /// 403 / `DENIED` / insufficient scope after retrying with the challenged scope.
    #[error("permission denied by {registry}: {message}")]
    Denied {
        /// Registry host.
        registry: String,
        /// What the registry said and what to do.
        message: String,
    },
    /// 404 `NAME_UNKNOWN`.
    #[error("repository {repository} not found on {registry}")]
    RepositoryNotFound {
        /// Registry host.
        registry: String,
        /// Repository path.
        repository: String,
    },
    /// 405 `UNSUPPORTED` on a delete: the registry cannot delete.
    #[error(
        "{registry} refuses deletes ({message}); enable them (distribution: storage.delete.enabled: true)"
    )]
    DeleteUnsupported {
        /// Registry host.
        registry: String,
        /// What the registry said.
        message: String,
    },
    /// Any other HTTP error status.
    #[error("{registry} answered {status} to {operation}: {message}")]
    Status {
        /// Registry host.
        registry: String,
        /// What was attempted (`DELETE manifest sha256:…`).
        operation: String,
        /// HTTP status code.
        status: u16,
        /// The registry's error code and message.
        message: String,
    },
    /// A response that breaks the protocol (digest mismatch, bad JSON, oversized body, foreign Link host).
    #[error("{registry} sent an invalid response to {operation}: {message}")]
    InvalidResponse {
        /// Registry host.
        registry: String,
        /// What was attempted.
        operation: String,
        /// What was wrong.
        message: String,
    },
    /// Connection, TLS or timeout failure after the retry budget.
    #[error("cannot reach {registry}: {message}")]
    Transport {
        /// Registry host.
        registry: String,
        /// The cause.
        message: String,
    },
    /// Still rate limited when the time allowed for waiting ran out.
    #[error(
        "{registry} is rate limiting requests ({operation}: {message}); run again later (finished work is kept), or allow longer waits with --timeout"
    )]
    RateLimited {
        /// Registry or API host.
        registry: String,
        /// What was attempted.
        operation: String,
        /// What the server said and how long it asked to wait.
        message: String,
    },
    /// Refused before sending (Basic credentials over plain HTTP to a non-loopback host, bad options).
    #[error("{0}")]
    Config(String),
    /// A listing that never ends: refused whole, since a partial one would drive deletions.
    #[error(transparent)]
    Unbounded(#[from] Unbounded),
}

impl RegistryError {
    /// The same failure told as a failure of `operation` instead of `replaced`, the internal request that
    /// met it (a delete names the tags asked for, not its zero-digest probe).
    pub fn told_as(self, replaced: &str, operation: &str) -> RegistryError {
        match self {
            RegistryError::Status {
                registry,
                operation: _,
                status,
                message,
            } => RegistryError::Status {
                registry,
                operation: operation.to_string(),
                status,
                message,
            },
            RegistryError::InvalidResponse {
                registry,
                operation: _,
                message,
            } => RegistryError::InvalidResponse {
                registry,
                operation: operation.to_string(),
                message,
            },
            RegistryError::Transport { registry, message } => {
                let mut message = message.replacen(replaced, operation, 1);
                // reqwest names the internal request's URL too.
                if let Some(start) = message.find(" for url (")
                    && let Some(length) = message[start..].find(')')
                {
                    message.replace_range(start..=start + length, "");
                }
                RegistryError::Transport { registry, message }
            }
            other => other,
        }
    }
}

/// The exit-code class of a registry error.
pub fn failure_kind(error: &RegistryError) -> FailureKind {
    match error {
        RegistryError::Unauthorized { .. } | RegistryError::Denied { .. } => FailureKind::Auth,
        RegistryError::DeleteUnsupported { .. } => FailureKind::DeleteUnsupported,
        _ => FailureKind::Other,
    }
}

/// A connection, TLS or timeout failure of `operation` on `registry`, with the chain of causes, as one line
/// without the credentials `sent`.
pub(crate) fn transport<'a>(
    registry: &str,
    operation: &str,
    error: &reqwest::Error,
    sent: impl IntoIterator<Item = &'a Secret<String>>,
) -> RegistryError {
    let mut message = format!("{operation}: {error}");
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    RegistryError::Transport {
        registry: registry.to_string(),
        message: one_line(&redact(&message, sent)),
    }
}

/// `CODE: message` for each error in a registry error body, else the status line, as one line without the
/// credentials `sent` (a registry may echo the request in its error body).
pub(crate) fn error_summary<'a>(
    status: StatusCode,
    body: &[u8],
    sent: impl IntoIterator<Item = &'a Secret<String>>,
) -> String {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<ErrorEntry>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorEntry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    let summary = match serde_json::from_slice::<Errors>(body) {
        Ok(parsed) if !parsed.errors.is_empty() => parsed
            .errors
            .iter()
            .map(
                |entry| match (entry.code.is_empty(), entry.message.is_empty()) {
                    (false, false) => format!("{}: {}", entry.code, entry.message),
                    (false, true) => entry.code.clone(),
                    _ => entry.message.clone(),
                },
            )
            .collect::<Vec<_>>()
            .join("; "),
        _ => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            if text.is_empty() || text.starts_with('<') {
                status.to_string()
            } else {
                format!("{status}: {text}")
            }
        }
    };
    one_line(&redact(&summary, sent))
}

/// Control characters become spaces and long text is cut, so a message stays one readable line.
pub(crate) fn one_line(text: &str) -> String {
    const MAX_CHARS: usize = 400;
    let mut line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_CHARS)
        .collect();
    if text.chars().count() > MAX_CHARS {
        line.push('…');
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_become_one_line() {
        let body = br#"{"errors":[{"code":"DENIED","message":"requested access\nto the resource is denied"}]}"#;
        assert_eq!(
            error_summary(StatusCode::FORBIDDEN, body, []),
            "DENIED: requested access to the resource is denied"
        );
        assert_eq!(
            error_summary(StatusCode::BAD_GATEWAY, b"<html>oops</html>", []),
            "502 Bad Gateway"
        );
        assert_eq!(
            error_summary(StatusCode::BAD_REQUEST, b"plain", []),
            "400 Bad Request: plain"
        );
        assert!(one_line(&"x".repeat(1000)).chars().count() <= 401);
    }

    /// A loopback server that answers every request 401 with a Basic challenge, naming `base` and echoing
    /// the request head (its `Authorization` included) in the body, as some servers do.
    fn echoing_server() -> String {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}/api", listener.local_addr().unwrap());
        let named = base.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    head.push_str(&line);
                }
                let body = serde_json::json!({
                    "message": format!("see {named} for help; you sent {head}"),
                    "errors": [{"code": "UNAUTHORIZED", "message": format!("see {named} for help; you sent {head}")}],
                })
                .to_string();
                let _ = write!(
                    stream,
                    "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"x\"\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        base
    }

    #[test]
    fn errors_keep_the_api_url_and_never_show_a_credential() {
        use crate::dockerconfig::RegistryAuth;
        use crate::implementation::Settings;
        use crate::registry::api::ApiClient;
        use crate::registry::{Client, ClientOptions};
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let base = echoing_server();
        // The URL is read the way a vendor reads `--github-api-url`: through a Secret.
        let settings =
            Settings::with_environment([("github-api-url".to_string(), base.clone())], []);
        let url = settings.text("github-api-url").unwrap();
        let token = Secret::new("canary-api-token-4e2f".to_string());
        let options = ClientOptions {
            retry_budget: std::time::Duration::ZERO,
            ..ClientOptions::default()
        };
        let api = ApiClient::new(url, "GitHub API", &options)
            .unwrap()
            .with_bearer(&token)
            .unwrap();
        let response = runtime
            .block_on(api.send(reqwest::Method::GET, "repos", "list repositories"))
            .unwrap();
        let message = api
            .status_error(&response, "list repositories", "")
            .to_string();
        assert!(message.contains(&base), "{message}");
        assert!(!message.contains("canary-api-token"), "{message}");

        let password = Secret::new("canary-password-8b0d".to_string());
        let host = base.trim_start_matches("http://").trim_end_matches("/api");
        let auth = RegistryAuth::Basic {
            username: "sweep-user".into(),
            password: password.clone(),
        };
        let client = Client::new(host, auth, &options).unwrap();
        let message = runtime.block_on(client.ping()).unwrap_err().to_string();
        let encoded = crate::registry::auth::basic_credentials("sweep-user", &password);
        assert!(message.contains(&base), "{message}");
        assert!(
            !message.contains("canary-password") && !message.contains(&encoded),
            "{message}"
        );
    }
}
