//! A Google OAuth double: the token endpoint (service account JWT bearer grant, refresh-token grant) and the
//! metadata server's token route. Google publishes no machine-readable description of these, so
//! [`DOCUMENTED`] lists each route with the documentation page it follows, and a test checks the route
//! table against it.
//!
//! Service account assertions are verified for real: the test makes an RSA key with `openssl`, the double
//! checks the RS256 signature with its public half and the claims Google checks (`iss`, `aud`, `scope`,
//! `exp`).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use base64::Engine;
use ring::signature::{RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
use serde_json::{Value, json};

use super::entra::{form, now};
use crate::apiserver::{ApiServer, Reply, Request, Route};
use crate::bins;

/// The scope every token is asked for.
pub const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// The metadata server's token route.
pub const METADATA_TOKEN: &str = "/computeMetadata/v1/instance/service-accounts/default/token";

/// The Security Token Service's token exchange route.
pub const STS_TOKEN: &str = "/v1/token";
/// The IAM credentials route prefix (`{name}:generateAccessToken` is one segment).
pub const IMPERSONATE: &str = "/v1/projects/-/serviceAccounts/{name}";

/// `(method, path, documentation)` for every route the double serves.
pub const DOCUMENTED: &[(&str, &str, &str)] = &[
    (
        "POST",
        "/token",
        "developers.google.com/identity/protocols/oauth2/service-account#httprest (JWT bearer grant); developers.google.com/identity/protocols/oauth2/web-server#offline (refresh_token grant)",
    ),
    (
        "POST",
        STS_TOKEN,
        "cloud.google.com/iam/docs/reference/sts/rest/v1/TopLevel/token (token exchange for workload identity federation)",
    ),
    (
        "POST",
        "/v1/projects/-/serviceAccounts/{name}:generateAccessToken",
        "cloud.google.com/iam/docs/reference/credentials/rest/v1/projects.serviceAccounts/generateAccessToken",
    ),
    (
        "GET",
        METADATA_TOKEN,
        "cloud.google.com/compute/docs/access/authenticate-workloads#applications (Metadata-Flavor: Google, scopes)",
    ),
];

/// An RSA key made with `openssl`: the PKCS#8 PEM, the public key (PKCS#1 DER), and a self-signed
/// certificate for it (PEM and DER).
pub struct Key {
    /// `-----BEGIN PRIVATE KEY-----…`.
    pub pem: String,
    /// The RSA public key, DER.
    pub public: Vec<u8>,
    /// A self-signed certificate of the key, PEM.
    pub certificate_pem: String,
    /// The same certificate, DER.
    pub certificate_der: Vec<u8>,
}

impl Key {
    /// A fresh 2048-bit key (files in `dir`).
    pub fn generate(dir: &Path) -> Key {
        let openssl = bins::tool("openssl", "openssl");
        let pem_path = dir.join("sa-key.pem");
        let der_path = dir.join("sa-pub.der");
        let run = |args: Vec<&std::ffi::OsStr>| {
            let output = Command::new(&openssl)
                .args(args)
                .output()
                .expect("run openssl");
            assert!(
                output.status.success(),
                "openssl failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        };
        run(vec![
            "genpkey".as_ref(),
            "-algorithm".as_ref(),
            "RSA".as_ref(),
            "-pkeyopt".as_ref(),
            "rsa_keygen_bits:2048".as_ref(),
            "-out".as_ref(),
            pem_path.as_os_str(),
        ]);
        run(vec![
            "rsa".as_ref(),
            "-RSAPublicKey_out".as_ref(),
            "-outform".as_ref(),
            "DER".as_ref(),
            "-in".as_ref(),
            pem_path.as_os_str(),
            "-out".as_ref(),
            der_path.as_os_str(),
        ]);
        let cert_path = dir.join("cert.pem");
        let cert_der_path = dir.join("cert.der");
        run(vec![
            "req".as_ref(),
            "-x509".as_ref(),
            "-new".as_ref(),
            "-key".as_ref(),
            pem_path.as_os_str(),
            "-subj".as_ref(),
            "/CN=regkit-test".as_ref(),
            "-days".as_ref(),
            "2".as_ref(),
            "-out".as_ref(),
            cert_path.as_os_str(),
        ]);
        run(vec![
            "x509".as_ref(),
            "-in".as_ref(),
            cert_path.as_os_str(),
            "-outform".as_ref(),
            "DER".as_ref(),
            "-out".as_ref(),
            cert_der_path.as_os_str(),
        ]);
        Key {
            pem: std::fs::read_to_string(pem_path).unwrap(),
            public: std::fs::read(der_path).unwrap(),
            certificate_pem: std::fs::read_to_string(cert_path).unwrap(),
            certificate_der: std::fs::read(cert_der_path).unwrap(),
        }
    }
}

/// What the double knows.
#[derive(Debug, Default)]
pub struct State {
    /// Service account email → public key (PKCS#1 DER).
    pub service_accounts: BTreeMap<String, Vec<u8>>,
    /// Authorized users: client id → (client secret, refresh token).
    pub users: BTreeMap<String, (String, String)>,
    /// Lifetime of issued tokens, seconds.
    pub lifetime: i64,
    /// The `aud` service account assertions must carry (the token endpoint's URL).
    pub audience: String,
    /// Access tokens issued → who they were issued to.
    pub issued: BTreeMap<String, String>,
    /// Workload identity federation: the pool audience and the subject token it accepts.
    pub federation: Option<(String, String)>,
    /// Service accounts federated tokens may impersonate.
    pub impersonable: Vec<String>,
}

/// A running Google double.
pub struct Google {
    /// The server.
    pub server: ApiServer,
    /// Its state.
    pub state: Arc<Mutex<State>>,
}

fn oauth_error(status: u16, error: &str, description: &str) -> Reply {
    Reply::json(
        status,
        &json!({"error": error, "error_description": description}),
    )
}

/// Checks an RS256 JWT's signature with an RSA public key (PKCS#1 DER); its header and claims.
pub fn verify_rs256(assertion: &str, public: &[u8]) -> Result<(Value, Value), String> {
    let decode = |part: &str| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|_| "bad base64".to_owned())
    };
    let parts: Vec<&str> = assertion.split('.').collect();
    let [header, claims, signature] = parts[..] else {
        return Err("not a JWT".into());
    };
    let header: Value = serde_json::from_slice(&decode(header)?).map_err(|e| e.to_string())?;
    let claims: Value = serde_json::from_slice(&decode(claims)?).map_err(|e| e.to_string())?;
    if header["alg"] != "RS256" {
        return Err("alg must be RS256".into());
    }
    UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, public)
        .verify(
            format!("{}.{}", parts[0], parts[1]).as_bytes(),
            &decode(signature)?,
        )
        .map_err(|_| "bad signature".to_owned())?;
    Ok((header, claims))
}

/// The `iss` claim of a JWT, unverified: it only picks the key the signature is then checked with.
fn unverified_issuer(assertion: &str) -> String {
    assertion
        .split('.')
        .nth(1)
        .and_then(|part| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(part)
                .ok()
        })
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
        .and_then(|claims| claims["iss"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn verify(assertion: &str, state: &State) -> Result<String, String> {
    let email = unverified_issuer(assertion);
    let key = state
        .service_accounts
        .get(&email)
        .ok_or("unknown service account")?;
    let (_, claims) = verify_rs256(assertion, key)?;
    let exp = claims["exp"].as_i64().unwrap_or(0);
    if claims["aud"] != state.audience.as_str() || claims["scope"] != SCOPE || exp <= now() - 60 {
        return Err(format!("bad claims {claims}"));
    }
    Ok(email)
}

impl Google {
    /// The route table over `state`.
    pub fn routes(state: Arc<Mutex<State>>) -> Vec<Route> {
        let issue = |state: &mut State, to: String| {
            let token = format!("ya29.test-{}", state.issued.len() + 1);
            state.issued.insert(token.clone(), to);
            json!({"access_token": token, "expires_in": state.lifetime, "token_type": "Bearer"})
        };
        let token = {
            let state = Arc::clone(&state);
            move |request: &Request| {
                let mut state = state.lock().expect("state");
                let form = form(request);
                match form.get("grant_type").map(String::as_str) {
                    Some("urn:ietf:params:oauth:grant-type:jwt-bearer") => {
                        let assertion = form.get("assertion").cloned().unwrap_or_default();
                        match verify(&assertion, &state) {
                            Ok(email) => Reply::json(200, &issue(&mut state, email)),
                            Err(why) => oauth_error(400, "invalid_grant", &why),
                        }
                    }
                    Some("refresh_token") => {
                        let id = form.get("client_id").cloned().unwrap_or_default();
                        let valid = state.users.get(&id).is_some_and(|(secret, refresh)| {
                            form.get("client_secret") == Some(secret)
                                && form.get("refresh_token") == Some(refresh)
                        });
                        if valid {
                            Reply::json(200, &issue(&mut state, id))
                        } else {
                            oauth_error(400, "invalid_grant", "Token has been expired or revoked.")
                        }
                    }
                    _ => oauth_error(400, "unsupported_grant_type", "Invalid grant_type"),
                }
            }
        };
        let metadata = {
            let state = Arc::clone(&state);
            move |request: &Request| {
                let mut state = state.lock().expect("state");
                if request.header("metadata-flavor") != Some("Google") {
                    return Reply::empty(403);
                }
                if request.query("scopes") != Some(SCOPE) {
                    return Reply::empty(400);
                }
                Reply::json(200, &issue(&mut state, "default-compute@developer".into()))
            }
        };
        let sts = {
            let state = Arc::clone(&state);
            move |request: &Request| {
                let mut state = state.lock().expect("state");
                let form = form(request);
                let expected = state.federation.clone().unwrap_or_default();
                let valid = form.get("grant_type").map(String::as_str)
                    == Some("urn:ietf:params:oauth:grant-type:token-exchange")
                    && form.get("audience") == Some(&expected.0)
                    && form.get("subject_token") == Some(&expected.1)
                    && form.get("scope").map(String::as_str) == Some(SCOPE)
                    && form.get("requested_token_type").map(String::as_str)
                        == Some("urn:ietf:params:oauth:token-type:access_token");
                if !valid {
                    return oauth_error(400, "invalid_grant", "subject token or audience rejected");
                }
                let mut answer = issue(&mut state, format!("federated:{}", expected.0));
                answer["issued_token_type"] =
                    json!("urn:ietf:params:oauth:token-type:access_token");
                Reply::json(200, &answer)
            }
        };
        let impersonate = {
            let state = Arc::clone(&state);
            move |request: &Request| {
                let mut state = state.lock().expect("state");
                let Some(account) = request.param("name").strip_suffix(":generateAccessToken")
                else {
                    return Reply::empty(404);
                };
                let caller = request.bearer().and_then(|t| state.issued.get(t)).cloned();
                if !caller.is_some_and(|c| c.starts_with("federated:")) {
                    return Reply::empty(401);
                }
                if !state.impersonable.iter().any(|a| a == account)
                    || request.json()["scope"] != json!([SCOPE])
                {
                    return Reply::empty(403);
                }
                let token = format!("ya29.impersonated-{}", state.issued.len() + 1);
                state.issued.insert(token.clone(), account.to_owned());
                Reply::json(
                    200,
                    &json!({"accessToken": token, "expireTime": "2099-01-01T00:00:00Z"}),
                )
            }
        };
        vec![
            Route::new("POST", "/token", &[], &[200, 400, 401], token),
            Route::new("POST", STS_TOKEN, &[], &[200, 400], sts),
            Route::new("POST", IMPERSONATE, &[], &[200, 401, 403, 404], impersonate),
            Route::new(
                "GET",
                METADATA_TOKEN,
                &["scopes"],
                &[200, 400, 403],
                metadata,
            ),
        ]
    }

    /// Starts a double.
    pub fn start() -> Google {
        let state = Arc::new(Mutex::new(State {
            lifetime: 3599,
            ..State::default()
        }));
        let server = ApiServer::start(Google::routes(Arc::clone(&state)));
        state.lock().expect("state").audience = format!("{}/token", server.url());
        Google { server, state }
    }

    /// Requests answered 200.
    pub fn tokens_issued(&self) -> usize {
        self.state.lock().expect("state").issued.len()
    }
}
