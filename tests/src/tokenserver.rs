//! A token server for distribution's token auth, on an ephemeral loopback port: `GET /token` (Basic or
//! anonymous, with docker's `offline_token=true` refresh-token issue) and `POST /token` (`grant_type=password`
//! or `refresh_token`). Tokens are RS256 JWTs whose `kid` is the libtrust key id of the certificate the
//! registry trusts. Each user gets, per repository pattern, only the actions the test grants, so tests can
//! make a user that may pull but not delete. Every request is recorded (never its secrets).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use sha2::{Digest, Sha256};

use crate::{bins, registry};

/// The `service` the registry names and the token server serves.
pub const SERVICE: &str = "regkit-test-registry";
/// The `iss` claim of every token.
pub const ISSUER: &str = "regkit-test-issuer";

/// Actions on resources matching a pattern.
#[derive(Debug, Clone)]
pub struct Grant {
    /// `repository` or `registry` (for `registry:catalog:*`).
    pub resource_type: String,
    /// A name, or a prefix ending in `*` (`team/*`, or `*` for every name).
    pub pattern: String,
    /// Allowed actions (`pull`, `push`, `delete`, or `*` for all).
    pub actions: Vec<String>,
}

impl Grant {
    /// Actions on repositories matching `pattern`.
    pub fn repo(pattern: &str, actions: &[&str]) -> Grant {
        Grant {
            resource_type: "repository".into(),
            pattern: pattern.into(),
            actions: actions.iter().map(|a| a.to_string()).collect(),
        }
    }

    /// Access to `_catalog`.
    pub fn catalog() -> Grant {
        Grant {
            resource_type: "registry".into(),
            pattern: "catalog".into(),
            actions: vec!["*".into()],
        }
    }

    fn matches(&self, resource_type: &str, name: &str) -> bool {
        self.resource_type == resource_type
            && match self.pattern.strip_suffix('*') {
                Some(prefix) => name.starts_with(prefix),
                None => self.pattern == name,
            }
    }
}

/// A user of the token server.
#[derive(Debug, Clone)]
pub struct User {
    /// Account name.
    pub name: String,
    /// Password (Basic auth or `grant_type=password`).
    pub password: String,
    /// What the user may do.
    pub grants: Vec<Grant>,
}

impl User {
    /// A user with no rights yet.
    pub fn new(name: &str, password: &str) -> User {
        User {
            name: name.into(),
            password: password.into(),
            grants: Vec::new(),
        }
    }

    /// Adds `actions` on repositories matching `pattern`.
    pub fn grant(mut self, pattern: &str, actions: &[&str]) -> User {
        self.grants.push(Grant::repo(pattern, actions));
        self
    }

    /// A user who may do everything, catalog included.
    pub fn admin(name: &str, password: &str) -> User {
        let mut user = User::new(name, password).grant("*", &["*"]);
        user.grants.push(Grant::catalog());
        user
    }
}

/// How the server behaves.
#[derive(Debug, Clone)]
pub struct Options {
    /// Known users.
    pub users: Vec<User>,
    /// What anonymous requests get.
    pub anonymous: Vec<Grant>,
    /// `expires_in` of issued tokens, in seconds.
    pub expires_in: u64,
    /// Answer `POST /token` (false: 405, as token servers without OAuth2 support do).
    pub post_enabled: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            users: Vec::new(),
            anonymous: Vec::new(),
            expires_in: 300,
            post_enabled: true,
        }
    }
}

/// One request the server answered, without its secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    /// `GET` or `POST`.
    pub method: String,
    /// `basic`, `basic_refresh_token` (empty user, a refresh token as password) or `anonymous` for GET;
    /// the form's `grant_type` for POST.
    pub grant_type: String,
    /// The authenticated account, if any.
    pub account: Option<String>,
    /// The requested scopes, as sent.
    pub scopes: Vec<String>,
    /// The `service` parameter.
    pub service: Option<String>,
    /// Whether a refresh token was asked for (`offline_token=true`).
    pub offline_token: bool,
    /// The `client_id` parameter.
    pub client_id: Option<String>,
    /// The HTTP status answered.
    pub status: u16,
}

/// A running token server; stops on drop.
pub struct TokenServer {
    addr: String,
    state: Arc<State>,
}

struct State {
    options: Options,
    /// The user table, replaceable while running ([`TokenServer::set_users`]).
    users: Mutex<Vec<User>>,
    key: &'static SigningKey,
    requests: Mutex<Vec<TokenRequest>>,
    /// refresh token → account.
    refresh_tokens: Mutex<BTreeMap<String, String>>,
    stopped: AtomicBool,
}

struct SigningKey {
    pair: RsaKeyPair,
    kid: String,
    cert_pem: String,
}

impl TokenServer {
    /// A server with these users and nothing for anonymous requests.
    pub fn start(users: Vec<User>) -> TokenServer {
        TokenServer::start_with(Options {
            users,
            ..Options::default()
        })
    }

    /// A server with these options.
    pub fn start_with(options: Options) -> TokenServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind token server");
        let addr = listener
            .local_addr()
            .expect("token server address")
            .to_string();
        let state = Arc::new(State {
            users: Mutex::new(options.users.clone()),
            options,
            key: signing_key(),
            requests: Mutex::new(Vec::new()),
            refresh_tokens: Mutex::new(BTreeMap::new()),
            stopped: AtomicBool::new(false),
        });
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if shared.stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let state = Arc::clone(&shared);
                std::thread::spawn(move || serve_connection(&state, stream));
            }
        });
        TokenServer { addr, state }
    }

    /// `http://127.0.0.1:PORT/token`.
    pub fn realm(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    /// The signing certificate (PEM) the registry must trust.
    pub fn cert_pem(&self) -> &str {
        &self.state.key.cert_pem
    }

    /// The registry auth configuration that trusts this server.
    pub fn registry_auth(&self) -> registry::Auth {
        registry::Auth::Token {
            realm: self.realm(),
            service: SERVICE.into(),
            issuer: ISSUER.into(),
            cert_pem: self.cert_pem().into(),
        }
    }

    /// Every request answered so far, oldest first.
    pub fn requests(&self) -> Vec<TokenRequest> {
        self.state.requests.lock().expect("requests lock").clone()
    }

    /// Replaces the user table (to change a user's rights mid-test).
    pub fn set_users(&self, users: Vec<User>) {
        *self.state.users.lock().expect("users lock") = users;
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        self.state.requests.lock().expect("requests lock").clear();
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.state.stopped.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect(&self.addr);
    }
}

/// One key per test process: generating RSA keys is the slow part.
fn signing_key() -> &'static SigningKey {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    KEY.get_or_init(|| {
        let openssl = bins::tool("openssl", "openssl");
        let dir = tempfile::tempdir().expect("temp dir");
        let key = dir.path().join("key.pem");
        let cert = dir.path().join("cert.pem");
        let status = Command::new(&openssl)
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            ])
            .args(["-subj", "/CN=regkit-test-token-issuer", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("run openssl");
        assert!(
            status.success(),
            "openssl could not make the token signing key"
        );
        let spki = Command::new(&openssl)
            .args(["x509", "-pubkey", "-noout", "-in"])
            .arg(&cert)
            .output()
            .expect("run openssl");
        assert!(
            spki.status.success(),
            "openssl could not read the certificate"
        );
        let key_pem = std::fs::read_to_string(&key).expect("read key");
        let pair =
            RsaKeyPair::from_pkcs8(&pem_der(&key_pem, "PRIVATE KEY")).expect("PKCS#8 RSA key");
        let spki_der = pem_der(&String::from_utf8_lossy(&spki.stdout), "PUBLIC KEY");
        SigningKey {
            pair,
            kid: libtrust_key_id(&spki_der),
            cert_pem: std::fs::read_to_string(&cert).expect("read cert"),
        }
    })
}

fn pem_der(pem: &str, label: &str) -> Vec<u8> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let body = pem
        .split(&begin)
        .nth(1)
        .and_then(|rest| rest.split(&end).next())
        .unwrap_or_else(|| panic!("no {label} in PEM"));
    let base64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    STANDARD.decode(base64).expect("PEM base64")
}

/// libtrust's key id: base32 of the first 240 bits of sha256(SPKI DER), in 12 groups of 4 joined by `:`.
pub fn libtrust_key_id(spki_der: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let hash = Sha256::digest(spki_der);
    let mut encoded = String::new();
    for chunk in hash[..30].chunks(5) {
        let bits = chunk.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        for i in (0..8).rev() {
            encoded.push(char::from(ALPHABET[((bits >> (i * 5)) & 31) as usize]));
        }
    }
    let groups: Vec<&str> = (0..12).map(|i| &encoded[i * 4..i * 4 + 4]).collect();
    groups.join(":")
}

struct HttpRequest {
    method: String,
    path: String,
    query: Vec<(String, String)>,
    authorization: Option<String>,
    body: Vec<u8>,
    keep_alive: bool,
}

fn serve_connection(state: &State, stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    while let Some(request) = read_request(&mut reader) {
        if state.stopped.load(Ordering::SeqCst) {
            return;
        }
        let (status, body) = handle(state, &request);
        let reason = match status {
            200 => "OK",
            401 => "Unauthorized",
            404 => "Not Found",
            405 => "Method Not Allowed",
            _ => "Bad Request",
        };
        let response = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{}\r\n",
            body.len(),
            if request.keep_alive {
                ""
            } else {
                "Connection: close\r\n"
            }
        );
        if writer.write_all(response.as_bytes()).is_err()
            || writer.write_all(body.as_bytes()).is_err()
        {
            return;
        }
        if !request.keep_alive {
            return;
        }
    }
}

fn read_request(reader: &mut BufReader<TcpStream>) -> Option<HttpRequest> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let http10 = parts.next() == Some("HTTP/1.0");
    let mut content_length = 0usize;
    let mut authorization = None;
    let mut keep_alive = !http10;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).ok()? == 0 {
            return None;
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => content_length = value.parse().ok()?,
            "authorization" => authorization = Some(value.to_string()),
            "connection" => keep_alive = !value.eq_ignore_ascii_case("close"),
            _ => {}
        }
    }
    let mut body = vec![0; content_length];
    reader.read_exact(&mut body).ok()?;
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    Some(HttpRequest {
        method,
        path: path.to_string(),
        query: parse_form(query),
        authorization,
        body,
        keep_alive,
    })
}

fn parse_form(form: &str) -> Vec<(String, String)> {
    form.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key), percent_decode(value))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let hex = |b: u8| char::from(b).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'+', _, _) => out.push(b' '),
            (b'%', Some(high), Some(low)) => {
                out.push((high * 16 + low) as u8);
                i += 2;
            }
            (byte, _, _) => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn handle(state: &State, request: &HttpRequest) -> (u16, String) {
    let params = if request.method == "POST" {
        parse_form(&String::from_utf8_lossy(&request.body))
    } else {
        request.query.clone()
    };
    let param = |key: &str| {
        params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    };
    let scopes: Vec<String> = params
        .iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split(' ').map(String::from).collect::<Vec<_>>())
        .filter(|scope| !scope.is_empty())
        .collect();
    let mut record = TokenRequest {
        method: request.method.clone(),
        grant_type: String::new(),
        account: None,
        scopes: scopes.clone(),
        service: param("service"),
        offline_token: param("offline_token").as_deref() == Some("true"),
        client_id: param("client_id"),
        status: 200,
    };
    let outcome = answer(state, request, &param, &scopes, &mut record);
    record.status = outcome.0;
    state.requests.lock().expect("requests lock").push(record);
    outcome
}

fn answer(
    state: &State,
    request: &HttpRequest,
    param: &dyn Fn(&str) -> Option<String>,
    scopes: &[String],
    record: &mut TokenRequest,
) -> (u16, String) {
    if request.path != "/token" {
        return error(404, "not found");
    }
    let users = state.users.lock().expect("users lock").clone();
    let users = &users;
    let find = |name: &str, password: &str| {
        users
            .iter()
            .find(|u| u.name == name && u.password == password)
    };
    let (user, issue_refresh) = match request.method.as_str() {
        "GET" => match request.authorization.as_deref().and_then(decode_basic) {
            // BuildKit falls back to GET with an identity token as the Basic password (empty user).
            Some((name, password)) if name.is_empty() => {
                record.grant_type = "basic_refresh_token".into();
                let account = state
                    .refresh_tokens
                    .lock()
                    .expect("refresh lock")
                    .get(&password)
                    .cloned();
                match account.and_then(|name| users.iter().find(|u| u.name == name)) {
                    Some(user) => {
                        record.account = Some(user.name.clone());
                        (Some(user), false)
                    }
                    None => return error(401, "invalid refresh token"),
                }
            }
            Some((name, password)) => {
                record.grant_type = "basic".into();
                record.account = Some(name.clone());
                match find(&name, &password) {
                    Some(user) => (Some(user), record.offline_token),
                    None => return error(401, "invalid username or password"),
                }
            }
            None => {
                record.grant_type = "anonymous".into();
                (None, false)
            }
        },
        "POST" if state.options.post_enabled => {
            let grant_type = param("grant_type").unwrap_or_default();
            record.grant_type = grant_type.clone();
            match grant_type.as_str() {
                "password" => {
                    let name = param("username").unwrap_or_default();
                    record.account = Some(name.clone());
                    match find(&name, &param("password").unwrap_or_default()) {
                        Some(user) => (
                            Some(user),
                            param("access_type").as_deref() == Some("offline"),
                        ),
                        None => return error(401, "invalid username or password"),
                    }
                }
                "refresh_token" => {
                    let token = param("refresh_token").unwrap_or_default();
                    let account = state
                        .refresh_tokens
                        .lock()
                        .expect("refresh lock")
                        .get(&token)
                        .cloned();
                    match account.and_then(|name| users.iter().find(|u| u.name == name)) {
                        Some(user) => {
                            record.account = Some(user.name.clone());
                            (Some(user), false)
                        }
                        None => return error(401, "invalid refresh token"),
                    }
                }
                _ => return error(400, "unsupported grant_type"),
            }
        }
        _ => return error(405, "method not allowed"),
    };
    let grants = user.map_or(&state.options.anonymous, |user| &user.grants);
    let access: Vec<serde_json::Value> = scopes
        .iter()
        .filter_map(|scope| granted(grants, scope))
        .collect();
    let token = sign_token(state, user.map_or("", |u| u.name.as_str()), &access);
    let mut body = serde_json::json!({
        "token": token,
        "access_token": token,
        "expires_in": state.options.expires_in,
    });
    if let (Some(user), true) = (user, issue_refresh) {
        let refresh = random_token();
        state
            .refresh_tokens
            .lock()
            .expect("refresh lock")
            .insert(refresh.clone(), user.name.clone());
        body["refresh_token"] = refresh.into();
    }
    (200, body.to_string())
}

/// The `access` entry granted for `type:name:actions`, or `None` when nothing of it is allowed.
fn granted(grants: &[Grant], scope: &str) -> Option<serde_json::Value> {
    let (resource_type, rest) = scope.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    let allowed: Vec<&str> = grants
        .iter()
        .filter(|grant| grant.matches(resource_type, name))
        .flat_map(|grant| grant.actions.iter().map(String::as_str))
        .collect();
    let mut actions_granted: Vec<String> = Vec::new();
    for action in actions.split(',') {
        if allowed.contains(&"*") || allowed.contains(&action) {
            actions_granted.push(action.to_string());
        } else if action == "*" {
            // Partial rights: grant what the user has rather than nothing.
            actions_granted.extend(allowed.iter().map(|a| a.to_string()));
        }
    }
    actions_granted.dedup();
    if actions_granted.is_empty() {
        return None;
    }
    Some(serde_json::json!({"type": resource_type, "name": name, "actions": actions_granted}))
}

fn sign_token(state: &State, subject: &str, access: &[serde_json::Value]) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "kid": state.key.kid});
    let claims = serde_json::json!({
        "iss": ISSUER,
        "sub": subject,
        "aud": SERVICE,
        "exp": now + state.options.expires_in,
        "nbf": now.saturating_sub(10),
        "iat": now,
        "jti": random_token(),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut signature = vec![0; state.key.pair.public().modulus_len()];
    state
        .key
        .pair
        .sign(
            &RSA_PKCS1_SHA256,
            &SystemRandom::new(),
            signing_input.as_bytes(),
            &mut signature,
        )
        .expect("RSA signature");
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

fn random_token() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut bytes = [0u8; 16];
    SystemRandom::new().fill(&mut bytes).expect("random bytes");
    format!(
        "{}{}",
        URL_SAFE_NO_PAD.encode(bytes),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

fn decode_basic(header: &str) -> Option<(String, String)> {
    let (scheme, value) = header.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(value.trim()).ok()?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

fn error(status: u16, message: &str) -> (u16, String) {
    (
        status,
        serde_json::json!({"errors": [{"code": "UNAUTHORIZED", "message": message}]}).to_string(),
    )
}
