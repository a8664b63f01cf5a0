//! `regkit doctor REPO`'s checks: what regkit would use for a repository and whether listing and deleting
//! would work, without changing anything. The CLI prints the [`Check`]s.
//!
//! Delete rights are probed with a DELETE of `sha256:000…0`, a digest no manifest can have (finding a
//! preimage of an all-zero SHA-256 is out of reach), so the request cannot remove anything. It goes through
//! the same authorisation and the same `storage.delete.enabled` switch as a real delete: 404 means both
//! passed, 401/403 that the credentials lack delete rights, 405 that the registry refuses deletes. Reading
//! the `access` claim of a token would only cover token auth, and would trust the token service's word
//! over the registry's behaviour.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

use crate::dates::format_rfc3339;
use crate::dockerconfig::RegistryAuth;
use crate::reference::Repository;
use crate::registry::{Client, Deleted, RegistryError, failure_kind};
use crate::report::{self, EXIT_AUTH, EXIT_OK};
use crate::session::{Observer, Session};

/// A digest no manifest can have; see the module docs.
const PROBE_DIGEST: &str =
    "sha256:0000000000000000000000000000000000000000000000000000000000000000";

/// How a check went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckStatus {
    /// It works.
    Ok,
    /// It does not; `detail` says why.
    Failed,
    /// Informational, or not checkable.
    Info,
}

impl CheckStatus {
    /// The name in JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckStatus::Ok => "ok",
            CheckStatus::Failed => "failed",
            CheckStatus::Info => "info",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone)]
pub struct Check {
    /// What was checked (`registry`, `listing`, …).
    pub name: &'static str,
    /// How it went.
    pub status: CheckStatus,
    /// What was found, one line.
    pub detail: String,
    /// The exit code a failure maps to.
    pub exit: u8,
}

impl Check {
    fn new(name: &'static str, status: CheckStatus, detail: impl Into<String>) -> Self {
        Check {
            name,
            status,
            detail: detail.into(),
            exit: EXIT_OK,
        }
    }

    fn failed(name: &'static str, error: &RegistryError) -> Self {
        Check {
            name,
            status: CheckStatus::Failed,
            detail: error.to_string(),
            exit: failure_kind(error).exit_code(),
        }
    }
}

/// Runs every check on `repository`; a failure to start at all (a bad forced implementation, a client
/// that cannot be built) is an error. `observer` hears of the connection the listing check makes.
pub async fn diagnose(
    session: &Session,
    repository: &Repository,
    observer: &dyn Observer,
) -> Result<Vec<Check>, RegistryError> {
    let registry = repository.registry.as_str();
    let detection = session
        .detect(registry, &session.anonymous_client(registry)?)
        .await?;
    let mut checks = vec![Check::new(
        "implementation",
        CheckStatus::Ok,
        format!("{} ({})", detection.name, detection.by),
    )];
    let auth = match session.credentials(registry) {
        Ok((auth, source)) => {
            checks.push(Check::new(
                "credentials",
                CheckStatus::Info,
                auth.describe(&source),
            ));
            checks.push(Check::new(
                "token expiry",
                CheckStatus::Info,
                token_expiry(&auth),
            ));
            Some(auth)
        }
        Err(error) => {
            checks.push(Check {
                name: "credentials",
                status: CheckStatus::Failed,
                detail: error.to_string(),
                exit: EXIT_AUTH,
            });
            None
        }
    };
    if let Some(auth) = auth {
        let client = Client::new(registry, auth, &session.options().client)?;
        checks.push(match client.ping().await {
            Ok(()) => Check::new(
                "registry",
                CheckStatus::Ok,
                format!(
                    "{} speaks the v2 API and accepts these credentials",
                    client.registry()
                ),
            ),
            Err(error) => Check::failed("registry", &error),
        });
        checks.push(listing(session, repository, observer).await);
        checks.push(delete_rights(&client, detection.name, &repository.path).await);
    }
    Ok(checks)
}

/// The exit code of a report: the first failure's, else 0.
pub fn exit_code(checks: &[Check]) -> u8 {
    checks
        .iter()
        .find(|check| check.status == CheckStatus::Failed)
        .map_or(report::EXIT_OK, |check| check.exit)
}

async fn listing(session: &Session, repository: &Repository, observer: &dyn Observer) -> Check {
    let connection = match session.connect(&repository.registry).await {
        Ok(connection) => connection,
        Err(error) => return Check::failed("listing", &error),
    };
    observer.connected(&repository.registry, &connection);
    match connection.implementation.list_tags(repository, false).await {
        Ok(tags) => Check::new(
            "listing",
            CheckStatus::Ok,
            format!("{} tags in {repository}", tags.len()),
        ),
        Err(error) => Check::failed("listing", &error),
    }
}

async fn delete_rights(client: &Client, implementation: &str, path: &str) -> Check {
    const NAME: &str = "delete rights";
    if implementation != "default" {
        return Check::new(
            NAME,
            CheckStatus::Info,
            format!(
                "not checked: the {implementation} implementation deletes through its own API, which has no request that is sure to change nothing"
            ),
        );
    }
    let how = format!("DELETE of {PROBE_DIGEST}, a digest no manifest can have");
    match client.delete_manifest(path, PROBE_DIGEST).await {
        Ok(Deleted::Absent) => Check::new(
            NAME,
            CheckStatus::Ok,
            format!("yes: the registry authorised a {how}, and answered 404"),
        ),
        Ok(Deleted::Removed) => Check::new(
            NAME,
            CheckStatus::Ok,
            format!("yes: the registry accepted a {how} (and claims it deleted it)"),
        ),
        Err(RegistryError::RepositoryNotFound { .. }) => Check::new(
            NAME,
            CheckStatus::Info,
            "unknown: the repository does not exist yet, so the registry did not say",
        ),
        Err(error) => {
            let mut check = Check::failed(NAME, &error);
            check.detail = format!("no ({how}): {error}");
            check
        }
    }
}

/// The expiry of tokens whose format shows one (JWTs, ECR authorisation tokens); registry tokens the client
/// fetches per scope are short-lived and renewed on demand, so they are not reported.
fn token_expiry(auth: &RegistryAuth) -> String {
    let secret = match auth {
        RegistryAuth::Anonymous => return "none: anonymous access".into(),
        RegistryAuth::Basic { password, .. } => password.expose(),
        RegistryAuth::IdentityToken(token) | RegistryAuth::RegistryToken(token) => token.expose(),
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs() as i64);
    match expiry(secret) {
        Some(expires) if expires <= now => format!(
            "expired at {} ({} ago): log in again",
            format_rfc3339(expires),
            human(now - expires)
        ),
        Some(expires) => format!("{} (in {})", format_rfc3339(expires), human(expires - now)),
        None => {
            let (kind, _) = auth.kind();
            format!(
                "not visible: the {kind} credential carries no expiry; the registry's per-request tokens are renewed as needed"
            )
        }
    }
}

/// `exp` of a JWT, or `expiration` of an ECR authorisation token (base64 of a JSON envelope).
fn expiry(secret: &str) -> Option<i64> {
    let parts: Vec<&str> = secret.split('.').collect();
    let claims = if parts.len() == 3 {
        URL_SAFE_NO_PAD
            .decode(parts[1].trim_end_matches('='))
            .ok()?
    } else {
        STANDARD.decode(secret.trim()).ok()?
    };
    let claims: serde_json::Value = serde_json::from_slice(&claims).ok()?;
    claims
        .get("exp")
        .or_else(|| claims.get("expiration"))
        .and_then(serde_json::Value::as_i64)
}

fn human(seconds: i64) -> String {
    match seconds {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3600),
        s => format!("{} days", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_of_jwts_and_ecr_tokens() {
        let jwt = format!(
            "{}.{}.sig",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256"}"#),
            URL_SAFE_NO_PAD.encode(r#"{"exp":1700000000,"access":[]}"#)
        );
        assert_eq!(expiry(&jwt), Some(1_700_000_000));
        let ecr = STANDARD.encode(r#"{"payload":"x","version":"2","expiration":1700000001}"#);
        assert_eq!(expiry(&ecr), Some(1_700_000_001));
        assert_eq!(expiry("plain-password"), None);
        assert_eq!(expiry("a.b.c"), None);
    }

    #[test]
    fn expired_tokens_say_so_without_the_token() {
        let jwt = format!(
            "h.{}.s",
            URL_SAFE_NO_PAD.encode(r#"{"exp":1000,"sub":"canary"}"#)
        );
        let auth = RegistryAuth::RegistryToken(crate::secret::Secret::new(jwt.clone()));
        let text = token_expiry(&auth);
        assert!(
            text.starts_with("expired at 1970-01-01T00:16:40Z"),
            "{text}"
        );
        assert!(!text.contains(&jwt), "{text}");
    }
}
