//! Google OAuth access tokens, from the sources Google's client libraries use, in this order unless
//! `REGKIT_GCR_CREDENTIALS` lists others (comma-separated names):
//!
//! 1. `adc`: Application Default Credentials: the file `GOOGLE_APPLICATION_CREDENTIALS` names, else gcloud's
//!    well-known `application_default_credentials.json` (under `CLOUDSDK_CONFIG`, else `~/.config/gcloud`):
//!    a service account key (an RS256 JWT exchanged at the key's `token_uri`), an authorized user (its
//!    refresh token at `token_uri`), or an external account (workload identity federation: a subject token
//!    from a file or URL exchanged at `token_url`, then service account impersonation when configured);
//! 2. `metadata`: the metadata server (`GCE_METADATA_HOST` moves it), bounded to a few seconds off Google
//!    Cloud;
//! 3. `gcloud`: `gcloud config config-helper`, with prompts disabled.
//!
//! Nothing here prompts or opens a browser. The requests are the documented OAuth ones, sent directly:
//! `gcp_auth` cannot read external accounts nor move the metadata host, and `google-cloud-auth` hides token
//! expiry (which the cache needs) and does not exchange service account keys for access tokens.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::cloudauth::{Env, run_bounded, sign_rs256, source_order, token_answer, token_client};
use crate::dates::parse_rfc3339;
use crate::secret::Secret;

/// The OAuth scope requested (Artifact Registry reads and writes, and its REST API).
pub const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// Google's token endpoint, when a credentials file names none.
const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
/// The metadata server's address (what `metadata.google.internal` resolves to on Google Cloud).
const DEFAULT_METADATA_HOST: &str = "169.254.169.254";
/// How long the metadata server gets: off Google Cloud it is unreachable and must not stall `get`.
const METADATA_WAIT: Duration = Duration::from_secs(3);
/// How long `gcloud` gets.
const CLI_WAIT: Duration = Duration::from_secs(20);
/// Lifetime assumed when an answer names none (Google's access tokens live an hour).
const DEFAULT_LIFETIME_SECS: i64 = 3600;

/// One token source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Application Default Credentials files.
    Adc,
    /// The metadata server.
    Metadata,
    /// The gcloud CLI.
    Gcloud,
}

impl Source {
    /// The name in `REGKIT_GCR_CREDENTIALS`.
    pub fn name(self) -> &'static str {
        match self {
            Source::Adc => "adc",
            Source::Metadata => "metadata",
            Source::Gcloud => "gcloud",
        }
    }

    /// The configured order: `REGKIT_GCR_CREDENTIALS`, else all three in the documented order.
    pub fn order(env: &Env) -> Result<Vec<Source>, String> {
        const ALL: [Source; 3] = [Source::Adc, Source::Metadata, Source::Gcloud];
        source_order(env, "REGKIT_GCR_CREDENTIALS", &ALL, Source::name)
    }
}

/// An access token and its expiry (Unix seconds).
#[derive(Debug, Clone)]
pub struct AccessToken {
    /// The token.
    pub token: Secret<String>,
    /// When it expires.
    pub expires_at: i64,
}

/// The Application Default Credentials file in use, if any.
pub fn adc_file(env: &Env) -> Option<PathBuf> {
    if let Some(path) = env.var("GOOGLE_APPLICATION_CREDENTIALS") {
        return Some(PathBuf::from(path));
    }
    let dir = match env.var("CLOUDSDK_CONFIG") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env.var("HOME")?).join(".config/gcloud"),
    };
    Some(dir.join("application_default_credentials.json")).filter(|path| path.is_file())
}

/// What identifies whose token is asked for (never a secret), for cache keys: the sources, the
/// credentials file (path and modification time) and the metadata host.
pub fn identity_parts(env: &Env) -> Vec<String> {
    let file = adc_file(env);
    let modified = file
        .as_ref()
        .and_then(|path| std::fs::metadata(path).ok())
        .and_then(|meta| meta.modified().ok())
        .and_then(|time| time.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |age| age.as_secs());
    vec![
        format!(
            "sources={}",
            env.var("REGKIT_GCR_CREDENTIALS").unwrap_or_default()
        ),
        format!(
            "file={}@{modified}",
            file.map(|path| path.display().to_string())
                .unwrap_or_default()
        ),
        format!(
            "metadata={}",
            env.var("GCE_METADATA_HOST").unwrap_or_default()
        ),
        format!("gcloud={}", env.var("CLOUDSDK_CONFIG").unwrap_or_default()),
    ]
}

/// A token from the first source that yields one; the error lists why each failed.
pub async fn token(env: &Env) -> Result<AccessToken, String> {
    let mut failures = Vec::new();
    for source in Source::order(env)? {
        let result = match source {
            Source::Adc => from_adc(env).await,
            Source::Metadata => from_metadata(env).await,
            Source::Gcloud => from_gcloud(env).await,
        };
        match result {
            Ok(token) => return Ok(token),
            Err(error) => failures.push(format!("{}: {error}", source.name())),
        }
    }
    Err(format!(
        "no Google credential worked ({})",
        failures.join("; ")
    ))
}

#[derive(Deserialize)]
struct OAuthAnswer {
    access_token: Option<String>,
    expires_in: Option<i64>,
}

/// Sends a form to a token endpoint and reads `access_token`/`expires_in`.
async fn post_form(
    url: &str,
    label: &str,
    form: &[(&str, &str)],
    now: i64,
) -> Result<AccessToken, String> {
    let api = token_client(url, label, false)?;
    let operation = format!("request a token from the {label}");
    let response = api
        .send_form(Method::POST, "", &operation, form)
        .await
        .map_err(|error| error.to_string())?;
    let answer: OAuthAnswer = token_answer(&api, &response, &operation, |text| {
        format!("the {label} at {url} refused: {text}")
    })?;
    let token = answer
        .access_token
        .filter(|token| !token.is_empty())
        .ok_or_else(|| format!("the {label} answered without an access token"))?;
    Ok(AccessToken {
        token: Secret::new(token),
        expires_at: now + answer.expires_in.unwrap_or(DEFAULT_LIFETIME_SECS),
    })
}

async fn from_adc(env: &Env) -> Result<AccessToken, String> {
    let path = adc_file(env).ok_or(
        "not configured (set GOOGLE_APPLICATION_CREDENTIALS or run `gcloud auth application-default login`)",
    )?;
    let text =
        std::fs::read(&path).map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    // serde_json's errors give a position, never the (secret) content.
    let file: Value = serde_json::from_slice(&text)
        .map_err(|error| format!("{} is not JSON: {error}", path.display()))?;
    let field = |name: &str| file[name].as_str().filter(|v| !v.is_empty());
    let now = env.now();
    let token_uri = field("token_uri").unwrap_or(DEFAULT_TOKEN_URI);
    match field("type") {
        Some("service_account") => {
            let (Some(email), Some(key)) = (field("client_email"), field("private_key")) else {
                return Err(format!(
                    "{}: a service account key needs client_email and private_key",
                    path.display()
                ));
            };
            let assertion = signed_jwt(email, field("private_key_id"), key, token_uri, now)?;
            post_form(
                token_uri,
                "Google token endpoint",
                &[
                    ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                    ("assertion", assertion.expose()),
                ],
                now,
            )
            .await
        }
        Some("authorized_user") => {
            let (Some(id), Some(secret), Some(refresh)) = (
                field("client_id"),
                field("client_secret"),
                field("refresh_token"),
            ) else {
                return Err(format!(
                    "{}: an authorized user needs client_id, client_secret and refresh_token",
                    path.display()
                ));
            };
            post_form(
                token_uri,
                "Google token endpoint",
                &[
                    ("grant_type", "refresh_token"),
                    ("client_id", id),
                    ("client_secret", secret),
                    ("refresh_token", refresh),
                ],
                now,
            )
            .await
            .map_err(|error| format!("{error}; run `gcloud auth application-default login` again"))
        }
        Some("external_account") => external_account(&file, now).await,
        Some(other) => Err(format!(
            "{}: credentials of type {other:?} are not supported; use a service account key, an authorized user or an external account",
            path.display()
        )),
        None => Err(format!("{}: no \"type\" field", path.display())),
    }
}

/// The RS256 JWT a service account presents to `token_uri` (Google's "service account authorization").
fn signed_jwt(
    email: &str,
    key_id: Option<&str>,
    pem: &str,
    audience: &str,
    now: i64,
) -> Result<Secret<String>, String> {
    let mut header = json!({});
    if let Some(kid) = key_id {
        header["kid"] = json!(kid);
    }
    let claims = json!({
        "iss": email, "scope": SCOPE, "aud": audience, "iat": now, "exp": now + 3600,
    });
    sign_rs256(pem, header, &claims)
        .map_err(|error| format!("the service account private_key: {error}"))
}

/// Workload identity federation: subject token (file or URL) → STS exchange → optional impersonation.
async fn external_account(file: &Value, now: i64) -> Result<AccessToken, String> {
    let field = |name: &str| file[name].as_str().filter(|v| !v.is_empty());
    let (Some(audience), Some(subject_type), Some(token_url)) = (
        field("audience"),
        field("subject_token_type"),
        field("token_url"),
    ) else {
        return Err("an external account needs audience, subject_token_type and token_url".into());
    };
    let source = &file["credential_source"];
    let raw = if let Some(path) = source["file"].as_str() {
        std::fs::read_to_string(path)
            .map_err(|error| format!("cannot read the subject token file {path}: {error}"))?
    } else if let Some(url) = source["url"].as_str() {
        let api = token_client(url, "subject token URL", false)?;
        let headers: Vec<(String, String)> = source["headers"]
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
            .collect();
        let response = api
            .send_with(Method::GET, "", "read the subject token", |mut request| {
                for (name, value) in &headers {
                    request = request.header(name.as_str(), value.as_str());
                }
                request
            })
            .await
            .map_err(|error| error.to_string())?;
        if !response.is_success() {
            return Err(format!(
                "the subject token URL answered {}",
                response.error_text()
            ));
        }
        String::from_utf8_lossy(&response.body).into_owned()
    } else {
        return Err(
            "only file and url credential sources are supported for external accounts".into(),
        );
    };
    let subject = match source["format"]["type"].as_str() {
        Some("json") => {
            let name = source["format"]["subject_token_field_name"]
                .as_str()
                .unwrap_or("access_token");
            serde_json::from_str::<Value>(&raw)
                .ok()
                .and_then(|value| value[name].as_str().map(str::to_owned))
                .ok_or_else(|| format!("the subject token has no {name} field"))?
        }
        // Sent verbatim, as Google's libraries do.
        _ => raw,
    };
    let federated = post_form(
        token_url,
        "Security Token Service",
        &[
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ),
            ("audience", audience),
            ("scope", SCOPE),
            (
                "requested_token_type",
                "urn:ietf:params:oauth:token-type:access_token",
            ),
            ("subject_token_type", subject_type),
            ("subject_token", subject.as_str()),
        ],
        now,
    )
    .await?;
    let Some(url) = field("service_account_impersonation_url") else {
        return Ok(federated);
    };
    let api = token_client(url, "IAM credentials API", false)?
        .with_bearer(&federated.token)
        .map_err(|error| error.to_string())?;
    let operation = "impersonate the service account";
    let response = api
        .send_json(Method::POST, "", operation, &json!({"scope": [SCOPE]}))
        .await
        .map_err(|error| error.to_string())?;
    let answer: Value = token_answer(&api, &response, operation, |text| {
        format!(
            "service account impersonation refused: {text}; grant the federated identity roles/iam.workloadIdentityUser"
        )
    })?;
    let token = answer["accessToken"]
        .as_str()
        .filter(|token| !token.is_empty())
        .ok_or("the IAM credentials API answered without an accessToken")?;
    Ok(AccessToken {
        token: Secret::new(token.to_owned()),
        expires_at: answer["expireTime"]
            .as_str()
            .and_then(parse_rfc3339)
            .unwrap_or(now + DEFAULT_LIFETIME_SECS),
    })
}

async fn from_metadata(env: &Env) -> Result<AccessToken, String> {
    let host = env
        .var("GCE_METADATA_HOST")
        .unwrap_or_else(|| DEFAULT_METADATA_HOST.to_owned());
    // The metadata server is plain HTTP on a link-local address by design.
    let api = token_client(&format!("http://{host}"), "metadata server", true)?;
    let operation = "request a token from the metadata server";
    let request = api.send_with(
        Method::GET,
        "/computeMetadata/v1/instance/service-accounts/default/token",
        operation,
        |request| {
            request
                .query(&[("scopes", SCOPE)])
                .header("Metadata-Flavor", "Google")
        },
    );
    let response = tokio::time::timeout(METADATA_WAIT, request)
        .await
        .map_err(|_| format!("no metadata server answered at {host} (not on Google Cloud?)"))?
        .map_err(|error| error.to_string())?;
    let answer: OAuthAnswer = token_answer(&api, &response, operation, |text| {
        format!("the metadata server answered {text}")
    })?;
    let token = answer
        .access_token
        .filter(|token| !token.is_empty())
        .ok_or("the metadata server answered without an access token")?;
    Ok(AccessToken {
        token: Secret::new(token),
        expires_at: env.now() + answer.expires_in.unwrap_or(DEFAULT_LIFETIME_SECS),
    })
}

async fn from_gcloud(env: &Env) -> Result<AccessToken, String> {
    let mut command = Command::new("gcloud");
    command
        .args(["config", "config-helper", "--format=json"])
        .env("CLOUDSDK_CORE_DISABLE_PROMPTS", "1");
    let output = run_bounded(command, "gcloud", CLI_WAIT)
        .await?
        .ok_or("gcloud config config-helper failed; run `gcloud auth login`")?;
    let answer: Value = serde_json::from_slice(&output)
        .map_err(|_| "gcloud config config-helper printed no JSON".to_owned())?;
    let credential = &answer["credential"];
    let token = credential["access_token"]
        .as_str()
        .filter(|token| !token.is_empty())
        .ok_or("gcloud has no access token; run `gcloud auth login`")?;
    Ok(AccessToken {
        token: Secret::new(token.to_owned()),
        expires_at: credential["token_expiry"]
            .as_str()
            .and_then(parse_rfc3339)
            .unwrap_or(env.now() + DEFAULT_LIFETIME_SECS),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_is_configurable_and_validated() {
        let env = Env::from_vars([("REGKIT_GCR_CREDENTIALS", "gcloud,adc")]);
        assert_eq!(Source::order(&env).unwrap(), [Source::Gcloud, Source::Adc]);
        let env = Env::from_vars([("REGKIT_GCR_CREDENTIALS", "browser")]);
        assert!(Source::order(&env).unwrap_err().contains("\"browser\""));
    }

    #[test]
    fn bad_keys_are_clear_errors() {
        assert!(signed_jwt("a@b", None, "not pem!", "https://t", 0).is_err());
        let pem = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert!(
            signed_jwt("a@b", None, pem, "https://t", 0)
                .unwrap_err()
                .contains("RSA private key")
        );
    }

    #[test]
    fn the_well_known_file_is_used_only_when_present() {
        let dir = tempfile::tempdir().unwrap();
        let env = Env::from_vars([("CLOUDSDK_CONFIG", dir.path().to_str().unwrap())]);
        assert_eq!(adc_file(&env), None);
        let file = dir.path().join("application_default_credentials.json");
        std::fs::write(&file, "{}").unwrap();
        assert_eq!(adc_file(&env), Some(file));
        let env = Env::from_vars([("GOOGLE_APPLICATION_CREDENTIALS", "/x.json")]);
        assert_eq!(adc_file(&env), Some(PathBuf::from("/x.json")));
    }
}
