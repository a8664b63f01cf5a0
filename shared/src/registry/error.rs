//! [`RegistryError`], what it means for the exit code ([`failure_kind`]), and the one-line messages both
//! the registry client and the vendor-API client build from what a server or the network said.

use reqwest::StatusCode;

use crate::report::FailureKind;

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
    /// Refused before sending (Basic credentials over plain HTTP to a non-loopback host, bad options).
    #[error("{0}")]
    Config(String),
}

/// The exit-code class of a registry error.
pub fn failure_kind(error: &RegistryError) -> FailureKind {
    match error {
        RegistryError::Unauthorized { .. } | RegistryError::Denied { .. } => FailureKind::Auth,
        RegistryError::DeleteUnsupported { .. } => FailureKind::DeleteUnsupported,
        _ => FailureKind::Other,
    }
}

/// A connection, TLS or timeout failure of `operation` on `registry`, with the chain of causes, as one line.
pub(crate) fn transport(registry: &str, operation: &str, error: &reqwest::Error) -> RegistryError {
    let mut message = format!("{operation}: {error}");
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    RegistryError::Transport {
        registry: registry.to_string(),
        message: one_line(&message),
    }
}

/// `CODE: message` for each error in a registry error body, else the status line.
pub(crate) fn error_summary(status: StatusCode, body: &[u8]) -> String {
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
    one_line(&summary)
}

/// Control characters become spaces and long text is cut, so a message stays one readable line.
pub(crate) fn one_line(text: &str) -> String {
    const MAX_CHARS: usize = 400;
    // A registry may echo the request, credentials included, in its error body.
    let text = &crate::secret::redact(text);
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
            error_summary(StatusCode::FORBIDDEN, body),
            "DENIED: requested access to the resource is denied"
        );
        assert_eq!(
            error_summary(StatusCode::BAD_GATEWAY, b"<html>oops</html>"),
            "502 Bad Gateway"
        );
        assert_eq!(
            error_summary(StatusCode::BAD_REQUEST, b"plain"),
            "400 Bad Request: plain"
        );
        assert!(one_line(&"x".repeat(1000)).chars().count() <= 401);
    }
}
