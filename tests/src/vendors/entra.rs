//! A Microsoft Entra ID double: the v2.0 token endpoint (client credentials with a secret or a federated
//! assertion) and the App Service managed-identity endpoint. Entra publishes no machine-readable
//! description of these, so [`DOCUMENTED`] lists each route with the documentation page it follows, and a
//! test checks the route table against it.
//!
//! Access tokens are unsigned JWT-shaped strings (`header.payload.sig`) carrying `tid`, `aud`, `appid` and
//! `exp`, which is all a registry double needs to check them.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use serde_json::{Value, json};

use crate::apiserver::{ApiServer, Reply, Request, Route, percent_decode};

/// The ACR audience tokens are issued for.
pub const ACR_RESOURCE: &str = "https://containerregistry.azure.net";
/// The App Service managed-identity route.
pub const MSI_PATH: &str = "/msi/token";

/// The VM instance metadata service's token route.
pub const IMDS_PATH: &str = "/metadata/identity/oauth2/token";

/// `(method, path, documentation)` for every route the double serves.
pub const DOCUMENTED: &[(&str, &str, &str)] = &[
    (
        "POST",
        "/{tenant}/oauth2/v2.0/token",
        "learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow (shared secret; certificate or federated credential assertion); learn.microsoft.com/entra/identity-platform/certificate-credentials (assertion format)",
    ),
    (
        "GET",
        MSI_PATH,
        "learn.microsoft.com/azure/app-service/overview-managed-identity (REST endpoint reference: IDENTITY_ENDPOINT, X-IDENTITY-HEADER, api-version 2019-08-01, resource, client_id)",
    ),
    (
        "GET",
        IMDS_PATH,
        "learn.microsoft.com/entra/identity/managed-identities-azure-resources/how-to-use-vm-token (Metadata: true, api-version 2018-02-01, resource, client_id)",
    ),
];

/// Seconds since the epoch.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// An unsigned JWT-shaped token with these claims.
pub fn jwt(claims: &Value) -> String {
    let encode = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    format!(
        "{}.{}.sig",
        encode(&json!({"alg":"none","typ":"JWT"})),
        encode(claims)
    )
}

/// The claims of a token made by [`jwt`].
pub fn claims(token: &str) -> Option<Value> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// A form body (`application/x-www-form-urlencoded`) as a map.
pub fn form(request: &Request) -> BTreeMap<String, String> {
    String::from_utf8_lossy(&request.body)
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (
                percent_decode(&k.replace('+', " ")),
                percent_decode(&v.replace('+', " ")),
            )
        })
        .collect()
}

/// What the double knows.
#[derive(Debug, Default)]
pub struct State {
    /// client id → secret.
    pub secrets: BTreeMap<String, String>,
    /// client id → (RSA public key DER, certificate DER) of its certificate credential.
    pub certificates: BTreeMap<String, (Vec<u8>, Vec<u8>)>,
    /// client id → the federated assertion it accepts (compared byte for byte).
    pub assertions: BTreeMap<String, String>,
    /// The App Service identity header value; `None` disables the managed-identity route.
    pub identity_header: Option<String>,
    /// Lifetime of issued tokens.
    pub lifetime: i64,
    /// The double's own `http://127.0.0.1:PORT`, the authority certificate assertions are addressed to.
    pub authority: String,
}

/// What Entra checks in a certificate credential's assertion: the RS256 signature with the registered
/// certificate's key, its SHA-256 thumbprint in `x5t#S256`, `aud` = the token endpoint, `iss` = `sub` = the
/// client, and a live `exp`.
fn certificate_assertion_ok(
    assertion: &str,
    public: &[u8],
    certificate: &[u8],
    client: &str,
    endpoint: &str,
) -> bool {
    let Ok((header, claims)) = super::google::verify_rs256(assertion, public) else {
        return false;
    };
    let thumbprint = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(ring::digest::digest(&ring::digest::SHA256, certificate));
    header["x5t#S256"] == thumbprint.as_str()
        && claims["aud"] == endpoint
        && claims["iss"] == client
        && claims["sub"] == client
        && claims["exp"].as_i64().is_some_and(|exp| exp > now())
}

/// A running Entra double.
pub struct Entra {
    /// The server.
    pub server: ApiServer,
    /// Its state, for tests to change.
    pub state: Arc<Mutex<State>>,
    /// The tenant id it issues tokens in.
    pub tenant: String,
}

fn oauth_error(status: u16, error: &str, description: &str) -> Reply {
    Reply::json(
        status,
        &json!({"error": error, "error_description": description}),
    )
}

impl Entra {
    /// The route table over `state`, for tenant `tenant`.
    pub fn routes(state: Arc<Mutex<State>>, tenant: &str) -> Vec<Route> {
        let issue = |tenant: &str, client: &str, lifetime: i64| {
            let token = jwt(&json!({
                "aud": ACR_RESOURCE, "tid": tenant, "appid": client, "exp": now() + lifetime,
            }));
            json!({"token_type":"Bearer","expires_in": lifetime,"access_token": token})
        };
        let token = {
            let (state, tenant) = (Arc::clone(&state), tenant.to_owned());
            move |request: &Request| {
                let state = state.lock().expect("state");
                let form = form(request);
                if request.param("tenant") != tenant {
                    return oauth_error(400, "invalid_request", "AADSTS90002: tenant not found");
                }
                if form.get("grant_type").map(String::as_str) != Some("client_credentials")
                    || form.get("scope").map(String::as_str)
                        != Some(&format!("{ACR_RESOURCE}/.default"))
                {
                    return oauth_error(400, "invalid_request", "unexpected grant or scope");
                }
                let client = form.get("client_id").cloned().unwrap_or_default();
                let by_secret = form.contains_key("client_secret")
                    && state.secrets.get(&client) == form.get("client_secret");
                let jwt_bearer = form.get("client_assertion_type").map(String::as_str)
                    == Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer");
                let assertion = form.get("client_assertion").cloned().unwrap_or_default();
                let by_assertion = jwt_bearer
                    && !assertion.is_empty()
                    && state.assertions.get(&client) == Some(&assertion);
                let endpoint = format!("{}{}", state.authority, request.path);
                let by_certificate = jwt_bearer
                    && state
                        .certificates
                        .get(&client)
                        .is_some_and(|(public, cert)| {
                            certificate_assertion_ok(&assertion, public, cert, &client, &endpoint)
                        });
                if !(by_secret || by_assertion || by_certificate) {
                    return oauth_error(
                        401,
                        "invalid_client",
                        "AADSTS7000215: invalid client secret",
                    );
                }
                Reply::json(200, &issue(&tenant, &client, state.lifetime))
            }
        };
        let msi = {
            let (state, tenant) = (Arc::clone(&state), tenant.to_owned());
            move |request: &Request| {
                let state = state.lock().expect("state");
                if state.identity_header.is_none()
                    || request.header("x-identity-header") != state.identity_header.as_deref()
                {
                    return oauth_error(401, "unauthorized", "bad X-IDENTITY-HEADER");
                }
                if request.query("api-version") != Some("2019-08-01")
                    || request.query("resource") != Some(ACR_RESOURCE)
                {
                    return oauth_error(
                        400,
                        "invalid_request",
                        "unexpected api-version or resource",
                    );
                }
                let client = request.query("client_id").unwrap_or("system-assigned");
                Reply::json(200, &issue(&tenant, client, state.lifetime))
            }
        };
        let imds = {
            let (state, tenant) = (Arc::clone(&state), tenant.to_owned());
            move |request: &Request| {
                let state = state.lock().expect("state");
                if request.header("metadata") != Some("true") {
                    return oauth_error(
                        400,
                        "invalid_request",
                        "Required metadata header not specified",
                    );
                }
                if request.query("api-version") != Some("2018-02-01")
                    || request.query("resource") != Some(ACR_RESOURCE)
                {
                    return oauth_error(
                        400,
                        "invalid_request",
                        "unexpected api-version or resource",
                    );
                }
                let client = request.query("client_id").unwrap_or("vm-system-assigned");
                Reply::json(200, &issue(&tenant, client, state.lifetime))
            }
        };
        vec![
            Route::new(
                "GET",
                IMDS_PATH,
                &["api-version", "resource", "client_id"],
                &[200, 400],
                imds,
            ),
            Route::new(
                "POST",
                "/{tenant}/oauth2/v2.0/token",
                &[],
                &[200, 400, 401],
                token,
            ),
            Route::new(
                "GET",
                MSI_PATH,
                &["api-version", "resource", "client_id"],
                &[200, 400, 401],
                msi,
            ),
        ]
    }

    /// Starts a double for `tenant` with one service principal `client`:`secret`.
    pub fn start(tenant: &str, client: &str, secret: &str) -> Entra {
        let state = Arc::new(Mutex::new(State {
            secrets: BTreeMap::from([(client.to_owned(), secret.to_owned())]),
            lifetime: 3600,
            ..State::default()
        }));
        let server = ApiServer::start(Entra::routes(Arc::clone(&state), tenant));
        state.lock().expect("state").authority = server.url();
        Entra {
            server,
            state,
            tenant: tenant.to_owned(),
        }
    }

    /// Token requests answered 200 so far.
    pub fn tokens_issued(&self) -> usize {
        self.server
            .log()
            .iter()
            .filter(|(_, _, status)| *status == 200)
            .count()
    }
}
