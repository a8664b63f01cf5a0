//! `regkit doctor REPO`: what regkit would use for a repository and whether it would work, without changing
//! anything.
//!
//! Delete rights are probed with a DELETE of `sha256:000…0`, a digest no manifest can have (finding a
//! preimage of an all-zero SHA-256 is out of reach), so the request cannot remove anything. It goes through
//! the same authorisation and the same `storage.delete.enabled` switch as a real delete: 404 means both
//! passed, 401/403 that the credentials lack delete rights, 405 that the registry refuses deletes. Reading
//! the `access` claim of a token would only cover token auth, and would trust the token service's word
//! over the registry's behaviour.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use regkit::dates::format_rfc3339;
use regkit::dockerconfig::RegistryAuth;
use regkit::registry::{Client, Deleted, RegistryError, failure_kind};
use regkit::report::{EXIT_AUTH, EXIT_OK};

use super::{Fatal, Setup, auth_kind, describe_credentials, parse_repository, print_with};

/// A digest no manifest can have; see the module docs.
const PROBE_DIGEST: &str =
    "sha256:0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Status {
    Ok,
    Failed,
    /// Informational, or not checkable.
    Info,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Failed => "failed",
            Status::Info => "info",
        }
    }
}

/// One line of the report.
struct Check {
    name: &'static str,
    status: Status,
    detail: String,
    /// The exit code a failure maps to.
    exit: u8,
}

impl Check {
    fn new(name: &'static str, status: Status, detail: impl Into<String>) -> Self {
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
            status: Status::Failed,
            detail: error.to_string(),
            exit: failure_kind(error).exit_code(),
        }
    }
}

/// Runs every check and prints the report; the exit code is the first failure's, else 0.
pub(crate) async fn run(setup: &Setup<'_>, repository: &str) -> Result<u8, Fatal> {
    let repository = parse_repository(repository)?;
    let registry = repository.registry.as_str();
    let detection = setup
        .detection(registry, &setup.anonymous_client(registry)?)
        .await?;
    let mut checks = vec![Check::new(
        "implementation",
        Status::Ok,
        format!("{} ({})", detection.name, detection.by),
    )];
    let auth = match setup.credentials(registry) {
        Ok((auth, source)) => {
            checks.push(Check::new(
                "credentials",
                Status::Info,
                describe_credentials(&auth, &source),
            ));
            checks.push(Check::new(
                "token expiry",
                Status::Info,
                token_expiry(&auth),
            ));
            Some(auth)
        }
        Err(error) => {
            checks.push(Check {
                name: "credentials",
                status: Status::Failed,
                detail: error.to_string(),
                exit: EXIT_AUTH,
            });
            None
        }
    };
    if let Some(auth) = auth {
        let client = Client::new(registry, auth, &setup.client_options())?;
        checks.push(match client.ping().await {
            Ok(()) => Check::new(
                "registry",
                Status::Ok,
                format!(
                    "{} speaks the v2 API and accepts these credentials",
                    client.registry()
                ),
            ),
            Err(error) => Check::failed("registry", &error),
        });
        checks.push(listing(setup, &repository).await);
        checks.push(delete_rights(&client, detection.name, &repository.path).await);
    }
    let exit = checks
        .iter()
        .find(|check| check.status == Status::Failed)
        .map_or(EXIT_OK, |check| check.exit);
    print_report(setup, &repository.to_string(), &checks)?;
    Ok(exit)
}

async fn listing(setup: &Setup<'_>, repository: &regkit::reference::Repository) -> Check {
    let vendor = match setup.vendor(&repository.registry).await {
        Ok(vendor) => vendor,
        Err(fatal) => {
            return Check {
                name: "listing",
                status: Status::Failed,
                detail: fatal.to_string(),
                exit: fatal.exit(),
            };
        }
    };
    match vendor.list_tags(repository, false).await {
        Ok(tags) => Check::new(
            "listing",
            Status::Ok,
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
            Status::Info,
            format!(
                "not checked: the {implementation} implementation deletes through its own API, which has no request that is sure to change nothing"
            ),
        );
    }
    let how = format!("DELETE of {PROBE_DIGEST}, a digest no manifest can have");
    match client.delete_manifest(path, PROBE_DIGEST).await {
        Ok(Deleted::Absent) => Check::new(
            NAME,
            Status::Ok,
            format!("yes: the registry authorised a {how}, and answered 404"),
        ),
        Ok(Deleted::Removed) => Check::new(
            NAME,
            Status::Ok,
            format!("yes: the registry accepted a {how} (and claims it deleted it)"),
        ),
        Err(RegistryError::RepositoryNotFound { .. }) => Check::new(
            NAME,
            Status::Info,
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
            let (kind, _) = auth_kind(auth);
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

fn print_report(setup: &Setup<'_>, repository: &str, checks: &[Check]) -> Result<(), Fatal> {
    if setup.json() {
        let checks: Vec<serde_json::Value> = checks
            .iter()
            .map(|check| {
                serde_json::json!({
                    "check": check.name,
                    "status": check.status.as_str(),
                    "detail": check.detail,
                })
            })
            .collect();
        let line = serde_json::json!({"repository": repository, "checks": checks});
        return print_with(|out| writeln!(out, "{line}"));
    }
    print_with(|out| {
        writeln!(out, "{:<16}{repository}", "repository:")?;
        for check in checks {
            let mark = match check.status {
                Status::Ok => "ok: ",
                Status::Failed => "FAILED: ",
                Status::Info => "",
            };
            writeln!(
                out,
                "{:<16}{mark}{}",
                format!("{}:", check.name),
                check.detail
            )?;
        }
        Ok(())
    })
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
        let auth = RegistryAuth::RegistryToken(regkit::secret::Secret::new(jwt.clone()));
        let text = token_expiry(&auth);
        assert!(
            text.starts_with("expired at 1970-01-01T00:16:40Z"),
            "{text}"
        );
        assert!(!text.contains(&jwt), "{text}");
    }
}
