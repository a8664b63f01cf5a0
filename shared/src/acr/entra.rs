//! Entra ID access tokens for the ACR audience, from the sources `DefaultAzureCredential` users know, in
//! this order unless `REGKIT_ACR_CREDENTIALS` lists others (comma-separated names):
//!
//! 1. `environment`: a service principal (`AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, and `AZURE_CLIENT_SECRET` or
//!    `AZURE_CLIENT_CERTIFICATE_PATH`, a PEM file with the certificate and its key);
//! 2. `workload-identity`: a federated token file (`AZURE_FEDERATED_TOKEN_FILE`, `AZURE_CLIENT_ID`,
//!    `AZURE_TENANT_ID`), as AKS workload identity projects it;
//! 3. `managed-identity`: App Service / Functions (`IDENTITY_ENDPOINT` + `IDENTITY_HEADER`), else the VM
//!    instance metadata service (`AZURE_POD_IDENTITY_AUTHORITY_HOST` moves it), `AZURE_CLIENT_ID` picking a
//!    user-assigned identity;
//! 4. `azure-cli`: `az account get-access-token`.
//!
//! `AZURE_AUTHORITY_HOST` moves the token endpoint (sovereign clouds, proxies). The requests are the
//! documented Microsoft identity platform ones, sent directly rather than through `azure_identity`: its
//! certificate support pulls OpenSSL (here ring signs the assertion), its pipeline retries a dead endpoint for 80–120 s (the VM managed
//! identity path ignores the caller's retry options), and its in-process cache is useless to a helper that
//! lives for one `get`; the token cache of [`crate::cloudauth`] replaces it.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use reqwest::Method;
use serde::Deserialize;

use base64::Engine;

use crate::cloudauth::{
    Env, jwt_claims, pem_blocks, run_bounded, sign_rs256, source_order, token_answer, token_client,
};
use crate::secret::Secret;

/// The ACR audience (what `az acr login` asks for since registries may disable ARM-audience tokens).
pub const RESOURCE: &str = "https://containerregistry.azure.net";
/// The default authority host.
pub const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";
/// The VM instance metadata service.
const IMDS: &str = "http://169.254.169.254";
/// How long the VM metadata service gets: off Azure it is unreachable and must not stall `get`.
const IMDS_WAIT: Duration = Duration::from_secs(2);
/// How long `az` gets.
const CLI_WAIT: Duration = Duration::from_secs(20);

/// One Entra token source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Service principal with a client secret.
    Environment,
    /// Federated token file.
    WorkloadIdentity,
    /// App Service or VM managed identity.
    ManagedIdentity,
    /// The Azure CLI.
    AzureCli,
}

impl Source {
    /// The name in `REGKIT_ACR_CREDENTIALS`.
    pub fn name(self) -> &'static str {
        match self {
            Source::Environment => "environment",
            Source::WorkloadIdentity => "workload-identity",
            Source::ManagedIdentity => "managed-identity",
            Source::AzureCli => "azure-cli",
        }
    }

    /// The configured order: `REGKIT_ACR_CREDENTIALS`, else all four in the documented order.
    pub fn order(env: &Env) -> Result<Vec<Source>, String> {
        const ALL: [Source; 4] = [
            Source::Environment,
            Source::WorkloadIdentity,
            Source::ManagedIdentity,
            Source::AzureCli,
        ];
        source_order(env, "REGKIT_ACR_CREDENTIALS", &ALL, Source::name)
    }
}

/// An Entra access token with the tenant it was issued in.
#[derive(Debug, Clone)]
pub struct EntraToken {
    /// The access token.
    pub token: Secret<String>,
    /// The tenant id (`tid` claim), which the ACR exchange needs.
    pub tenant: Option<String>,
}

/// The parts of the environment that identify whose token is asked for (never a secret), for cache keys.
pub fn identity_parts(env: &Env) -> Vec<String> {
    [
        "REGKIT_ACR_CREDENTIALS",
        "AZURE_AUTHORITY_HOST",
        "AZURE_TENANT_ID",
        "AZURE_CLIENT_ID",
        "AZURE_CLIENT_CERTIFICATE_PATH",
        "AZURE_FEDERATED_TOKEN_FILE",
        "IDENTITY_ENDPOINT",
        "AZURE_POD_IDENTITY_AUTHORITY_HOST",
        "AZURE_CONFIG_DIR",
    ]
    .iter()
    .map(|name| format!("{name}={}", env.var(name).unwrap_or_default()))
    .collect()
}

/// A token from the first source that yields one; the error lists why each failed.
pub async fn token(env: &Env) -> Result<EntraToken, String> {
    let mut failures = Vec::new();
    for source in Source::order(env)? {
        match from_source(source, env).await {
            Ok(token) => return Ok(token),
            Err(error) => failures.push(format!("{}: {error}", source.name())),
        }
    }
    Err(format!(
        "no Entra ID credential worked ({})",
        failures.join("; ")
    ))
}

async fn from_source(source: Source, env: &Env) -> Result<EntraToken, String> {
    let token = match source {
        Source::Environment
            if env.var("AZURE_CLIENT_SECRET").is_none()
                && env.var("AZURE_CLIENT_CERTIFICATE_PATH").is_some() =>
        {
            let (tenant, client, path) = required(
                env,
                [
                    "AZURE_TENANT_ID",
                    "AZURE_CLIENT_ID",
                    "AZURE_CLIENT_CERTIFICATE_PATH",
                ],
            )?;
            let assertion = certificate_assertion(env, &tenant, &client, &path)?;
            client_credentials(
                env,
                &tenant,
                &[
                    ("client_id", client.as_str()),
                    ("client_assertion", assertion.expose().as_str()),
                    (
                        "client_assertion_type",
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    ),
                ],
            )
            .await?
        }
        Source::Environment => {
            let (tenant, client, secret) = required(
                env,
                ["AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET"],
            )?;
            // Exposed through Secret so an Entra ID error body that echoes the form cannot print it.
            let secret = Secret::new(secret);
            client_credentials(
                env,
                &tenant,
                &[
                    ("client_id", client.as_str()),
                    ("client_secret", secret.expose().as_str()),
                ],
            )
            .await?
        }
        Source::WorkloadIdentity => {
            let (tenant, client, file) = required(
                env,
                [
                    "AZURE_TENANT_ID",
                    "AZURE_CLIENT_ID",
                    "AZURE_FEDERATED_TOKEN_FILE",
                ],
            )?;
            // Sent verbatim, as the SDKs do: projected tokens carry no trailing newline.
            let assertion = std::fs::read_to_string(Path::new(&file)).map_err(|error| {
                format!("cannot read AZURE_FEDERATED_TOKEN_FILE {file}: {error}")
            })?;
            client_credentials(
                env,
                &tenant,
                &[
                    ("client_id", client.as_str()),
                    ("client_assertion", assertion.as_str()),
                    (
                        "client_assertion_type",
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    ),
                ],
            )
            .await?
        }
        Source::ManagedIdentity => managed_identity(env).await?,
        Source::AzureCli => azure_cli(env).await?,
    };
    let tenant = jwt_claims(token.expose())
        .and_then(|claims| claims["tid"].as_str().map(str::to_owned))
        .or_else(|| env.var("AZURE_TENANT_ID"));
    Ok(EntraToken { token, tenant })
}

/// The token endpoint of `tenant` under the configured authority.
fn token_endpoint(env: &Env, tenant: &str) -> (String, String) {
    let authority = env
        .var("AZURE_AUTHORITY_HOST")
        .unwrap_or_else(|| DEFAULT_AUTHORITY.to_owned())
        .trim_end_matches('/')
        .to_owned();
    let path = format!("/{}/oauth2/v2.0/token", urlencode(tenant));
    (authority, path)
}

/// The signed client assertion of a certificate credential (Microsoft identity platform "certificate
/// credentials"): RS256 over `aud` = the token endpoint, `iss` = `sub` = the client id, with the
/// certificate's SHA-1 and SHA-256 thumbprints in the header. The PEM file holds the certificate and its
/// unencrypted private key, as `az ad sp create-for-rbac --create-cert` writes it.
fn certificate_assertion(
    env: &Env,
    tenant: &str,
    client: &str,
    path: &str,
) -> Result<Secret<String>, String> {
    if env.var("AZURE_CLIENT_CERTIFICATE_PASSWORD").is_some() {
        return Err(
            "password-protected certificates are not supported; give an unencrypted PEM file"
                .into(),
        );
    }
    let pem = std::fs::read_to_string(path).map_err(|error| {
        format!("cannot read AZURE_CLIENT_CERTIFICATE_PATH {path} (a PEM file): {error}")
    })?;
    let certificate = pem_blocks(&pem, "CERTIFICATE")
        .into_iter()
        .next()
        .ok_or_else(|| {
            format!("{path} holds no PEM certificate (PKCS#12 files must be converted to PEM)")
        })?;
    let thumbprint = |algorithm| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(ring::digest::digest(algorithm, &certificate))
    };
    let (authority, token_path) = token_endpoint(env, tenant);
    let now = env.now();
    let mut nonce = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce)
        .map_err(|_| "no randomness for the assertion id".to_owned())?;
    let claims = serde_json::json!({
        "aud": format!("{authority}{token_path}"), "iss": client, "sub": client,
        "jti": nonce.iter().map(|b| format!("{b:02x}")).collect::<String>(),
        "nbf": now, "iat": now, "exp": now + 600,
    });
    let header = serde_json::json!({
        "x5t": thumbprint(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY),
        "x5t#S256": thumbprint(&ring::digest::SHA256),
    });
    sign_rs256(&pem, header, &claims).map_err(|error| format!("{path}: {error}"))
}

fn required(env: &Env, names: [&str; 3]) -> Result<(String, String, String), String> {
    let missing: Vec<&str> = names
        .iter()
        .copied()
        .filter(|name| env.var(name).is_none())
        .collect();
    match names.map(|name| env.var(name)) {
        [Some(a), Some(b), Some(c)] => Ok((a, b, c)),
        _ => Err(format!("not configured (set {})", missing.join(", "))),
    }
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: Option<String>,
    #[serde(rename = "accessToken")]
    cli_token: Option<String>,
}

fn access_token(answer: TokenAnswer, from: &str) -> Result<Secret<String>, String> {
    answer
        .access_token
        .or(answer.cli_token)
        .filter(|token| !token.is_empty())
        .map(Secret::new)
        .ok_or_else(|| format!("{from} answered without an access token"))
}

/// `POST {authority}/{tenant}/oauth2/v2.0/token`, `grant_type=client_credentials`, ACR scope.
async fn client_credentials(
    env: &Env,
    tenant: &str,
    fields: &[(&str, &str)],
) -> Result<Secret<String>, String> {
    let (authority, path) = token_endpoint(env, tenant);
    let api = token_client(&authority, "Entra ID token endpoint", false)?;
    let scope = format!("{RESOURCE}/.default");
    let mut form: Vec<(&str, &str)> = fields.to_vec();
    form.extend([
        ("grant_type", "client_credentials"),
        ("scope", scope.as_str()),
    ]);
    let operation = "request an Entra ID token";
    let response = api
        .send_form(Method::POST, &path, operation, &form)
        .await
        .map_err(|error| error.to_string())?;
    let answer = token_answer(&api, &response, operation, |text| {
        format!(
            "{authority} refused the token request for tenant {tenant}: {text}; check the client id, secret or federated credential"
        )
    })?;
    access_token(answer, "the Entra ID token endpoint")
}

async fn managed_identity(env: &Env) -> Result<Secret<String>, String> {
    let client_id = env.var("AZURE_CLIENT_ID");
    if let (Some(endpoint), Some(header)) =
        (env.var("IDENTITY_ENDPOINT"), env.var("IDENTITY_HEADER"))
    {
        // The header proves the caller runs inside the resource: a credential like any other.
        let header = Secret::new(header);
        let api = token_client(&endpoint, "managed identity endpoint", false)?.redacting([&header]);
        let mut query = vec![("api-version", "2019-08-01"), ("resource", RESOURCE)];
        if let Some(id) = &client_id {
            query.push(("client_id", id));
        }
        let operation = "request a managed identity token";
        let response = api
            .send_with(Method::GET, "", operation, |request| {
                request
                    .query(&query)
                    .header("X-IDENTITY-HEADER", header.expose().as_str())
            })
            .await
            .map_err(|error| error.to_string())?;
        let answer = token_answer(&api, &response, operation, |text| {
            format!("IDENTITY_ENDPOINT answered {text}")
        })?;
        return access_token(answer, "IDENTITY_ENDPOINT");
    }
    let host = env
        .var("AZURE_POD_IDENTITY_AUTHORITY_HOST")
        .unwrap_or_else(|| IMDS.to_owned());
    // The metadata service is plain HTTP on a link-local address by design.
    let api = token_client(&host, "instance metadata service", true)?;
    let mut query = vec![("api-version", "2018-02-01"), ("resource", RESOURCE)];
    if let Some(id) = &client_id {
        query.push(("client_id", id));
    }
    let operation = "request a managed identity token";
    let request = api.send_with(
        Method::GET,
        "/metadata/identity/oauth2/token",
        operation,
        |request| request.query(&query).header("Metadata", "true"),
    );
    let response = tokio::time::timeout(IMDS_WAIT, request)
        .await
        .map_err(|_| format!("no instance metadata service answered at {host} (not on Azure?)"))?
        .map_err(|error| error.to_string())?;
    let answer = token_answer(&api, &response, operation, |text| {
        format!("the instance metadata service answered {text}")
    })?;
    access_token(answer, "the instance metadata service")
}

/// `az account get-access-token --resource …`, bounded by [`CLI_WAIT`].
async fn azure_cli(env: &Env) -> Result<Secret<String>, String> {
    let mut command = Command::new("az");
    command.args([
        "account",
        "get-access-token",
        "--output",
        "json",
        "--resource",
        RESOURCE,
    ]);
    if let Some(tenant) = env.var("AZURE_TENANT_ID") {
        command.args(["--tenant", &tenant]);
    }
    let output = run_bounded(command, "az", CLI_WAIT)
        .await?
        .ok_or("az account get-access-token failed; run `az login`")?;
    let answer: TokenAnswer = serde_json::from_slice(&output)
        .map_err(|_| "az account get-access-token printed no JSON token".to_owned())?;
    access_token(answer, "az")
}

/// Percent-encodes a path segment (tenant ids are GUIDs or domain names; anything else is escaped).
fn urlencode(segment: &str) -> String {
    segment
        .bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (byte as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_is_configurable_and_validated() {
        let env = Env::from_vars([("REGKIT_ACR_CREDENTIALS", "azure-cli, environment")]);
        assert_eq!(
            Source::order(&env).unwrap(),
            [Source::AzureCli, Source::Environment]
        );
        let env = Env::from_vars([("REGKIT_ACR_CREDENTIALS", "msi")]);
        assert!(Source::order(&env).unwrap_err().contains("\"msi\""));
        assert_eq!(
            Source::order(&Env::from_vars::<&str, &str>([]))
                .unwrap()
                .len(),
            4
        );
    }

    #[test]
    fn missing_variables_are_named_and_tenants_escaped() {
        let env = Env::from_vars([("AZURE_CLIENT_ID", "c")]);
        let error = required(
            &env,
            ["AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET"],
        )
        .unwrap_err();
        assert_eq!(
            error,
            "not configured (set AZURE_TENANT_ID, AZURE_CLIENT_SECRET)"
        );
        assert_eq!(urlencode("a/b c"), "a%2Fb%20c");
    }
}
