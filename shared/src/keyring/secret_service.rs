//! The freedesktop Secret Service backend (Linux), over our own blocking D-Bus client ([`super::dbus`]).
//!
//! `get` costs two round trips to the service after the socket connect: the SASL handshake, `Hello`,
//! `OpenSession` and one `SearchItems` per lookup key go out in one write; then `GetSecret` and the
//! `Attributes` read go out together. Our two DH exponentiations each overlap a wait: the key pair is made
//! while the bus authenticates us, the shared key while the service answers `GetSecret`. Writers (`store`, `erase`) also take a session-wide lock (a queued
//! well-known bus name), because "delete the old items, create the new one" is not atomic in the Secret
//! Service API and concurrent `docker login`s must never leave two entries for one server.

use std::collections::BTreeMap;

use super::dbus::{Body, Bus, BusError, Value};
use super::dh::{self, Keypair, SessionKey};
use super::{KeyringError, LABEL, SessionMode};
use crate::protocol::Credentials;
use crate::secret::Secret;

/// The libsecret schema name Debian's `docker-credential-secretservice` searches with.
const SCHEMA: &str = "io.docker.Credentials";
/// The well-known bus name whose ownership is the writers' lock. The bus releases it when its owner's
/// connection closes (at the end of each operation, or when a helper dies), so no lock is ever stale.
const WRITE_LOCK_NAME: &str = "io.github.regkit.KeyringWriteLock";

const SERVICE: &str = "org.freedesktop.secrets";
const SERVICE_PATH: &str = "/org/freedesktop/secrets";
const SERVICE_IFACE: &str = "org.freedesktop.Secret.Service";
const ITEM_IFACE: &str = "org.freedesktop.Secret.Item";
const PROMPT_IFACE: &str = "org.freedesktop.Secret.Prompt";
const PROPERTIES_IFACE: &str = "org.freedesktop.DBus.Properties";
const BUS_NAME: &str = "org.freedesktop.DBus";
const BUS_PATH: &str = "/org/freedesktop/DBus";
/// The object path the service answers with for "no object" (no prompt needed, no such alias).
const NO_OBJECT: &str = "/";

/// Which matches a search must make usable.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Need {
    /// Readers: unlocked matches suffice; locked ones are unlocked only when nothing else matched.
    Any,
    /// Writers: every match, since each one is deleted.
    All,
}

pub(super) fn get(
    mode: SessionMode,
    keys: &[String],
) -> Result<Option<(String, Secret<String>)>, KeyringError> {
    let mut opening = Opening::start(mode)?;
    // Every lookup key's search rides along with the session request: a miss costs one round trip.
    let searches: Vec<u32> = keys
        .iter()
        .map(|key| opening.service.bus.send_search(&server_query(key)))
        .collect();
    let (mut service, mut session) = opening.finish()?;
    for (key, search) in keys.iter().zip(searches) {
        let found = service.bus.reply(search).map_err(search_failed)?;
        let found = service.usable(&found, Need::Any)?;
        if let Some(read) = service.read_newest(&mut session, key, found)? {
            return Ok(Some(read));
        }
    }
    Ok(None)
}

pub(super) fn store(mode: SessionMode, credentials: &Credentials) -> Result<(), KeyringError> {
    let server = credentials.server_url.as_str();
    let (mut service, mut session) = Opening::start(mode)?.finish()?;
    service.lock()?;
    let stale = service.search(&server_query(server), Need::All)?;
    let collection = service
        .bus
        .call(
            SERVICE,
            SERVICE_PATH,
            SERVICE_IFACE,
            "ReadAlias",
            Body::new("s").str("default"),
        )
        .and_then(|reply| first_path(&reply, "ReadAlias"))
        .map_err(|e| classify(e, || "open the default keyring".to_owned()))?;
    if collection == NO_OBJECT {
        return Err(KeyringError::NoDefaultCollection);
    }
    let created = service.create_item(&mut session, &collection, credentials)?;
    // Deleting only after the new item exists means a failed store never loses the old credentials.
    // `replace` already overwrote an item with identical attributes, so skip that one.
    for item in stale.iter().filter(|item| **item != created) {
        service.delete(item, server)?;
    }
    Ok(())
}

pub(super) fn erase(server: &str) -> Result<(), KeyringError> {
    let mut service = Service::connect()?;
    service.lock()?;
    for item in service.search(&server_query(server), Need::All)? {
        service.delete(&item, server)?;
    }
    Ok(())
}

pub(super) fn list() -> Result<BTreeMap<String, String>, KeyringError> {
    let mut service = Service::connect()?;
    let items = service.search(&[("docker_cli", "1")], Need::All)?;
    let reads: Vec<u32> = items
        .iter()
        .map(|item| service.bus.send_get_property(item, "Attributes"))
        .collect();
    let mut entries = BTreeMap::new();
    for read in reads {
        let attributes = service
            .bus
            .reply(read)
            .and_then(|reply| first(reply, "Get Attributes"))
            .map_err(|e| classify(e, || "read the attributes of a stored entry".to_owned()))?;
        let attributes = attributes.unwrap_variant();
        if let Some(server) = attributes.lookup("server").and_then(Value::as_str) {
            let username = attributes.lookup("username").and_then(Value::as_str);
            entries.insert(server.to_owned(), username.unwrap_or_default().to_owned());
        }
    }
    Ok(entries)
}

/// The items of one server key, whoever wrote them (with or without `xdg:schema`).
fn server_query(server: &str) -> [(&str, &str); 2] {
    [("server", server), ("docker_cli", "1")]
}

/// A connection whose `OpenSession` is queued but not yet answered, so more requests can join it.
struct Opening {
    service: Service,
    mode: SessionMode,
    request: u32,
    /// Our DH half, when the queued request is for an encrypted session.
    keypair: Option<Keypair>,
}

impl Opening {
    fn start(mode: SessionMode) -> Result<Opening, KeyringError> {
        let mut service = Service::connect()?;
        // The bus authenticates us and answers Hello while we generate the key pair.
        service.bus.flush().map_err(|e| classify(e, open_action))?;
        let keypair = match mode {
            SessionMode::Encrypted => Some(Keypair::generate().map_err(crypto_failed)?),
            SessionMode::PlainAllowed => None,
        };
        let request = service.bus.send_open_session(keypair.as_ref());
        Ok(Opening {
            service,
            mode,
            request,
            keypair,
        })
    }

    /// Waits for the session. A service that refuses `plain` gets an encrypted request instead.
    fn finish(mut self) -> Result<(Service, Session), KeyringError> {
        let bus = &mut self.service.bus;
        let opened = match bus.reply(self.request) {
            Err(e) if is_not_supported(&e) && self.keypair.is_none() => {
                let keypair = Keypair::generate().map_err(crypto_failed)?;
                let request = bus.send_open_session(Some(&keypair));
                self.keypair = Some(keypair);
                bus.reply(request)
            }
            opened => opened,
        };
        let reply = opened.map_err(|e| {
            if is_not_supported(&e) && self.mode == SessionMode::Encrypted {
                KeyringError::EncryptionRefused
            } else {
                classify(e, open_action)
            }
        })?;
        let failed = |reason: &str| KeyringError::Service {
            action: open_action(),
            reason: reason.to_owned(),
        };
        let [output, Value::Str(path)] = reply.as_slice() else {
            return Err(failed("unexpected reply to OpenSession"));
        };
        let crypto = match self.keypair {
            None => Crypto::Plain,
            Some(keypair) => {
                let peer = output.unwrap_variant().as_bytes();
                let peer = peer.ok_or_else(|| failed("OpenSession returned no public key"))?;
                Crypto::Pending {
                    keypair,
                    peer: peer.to_vec(),
                }
            }
        };
        let session = Session {
            path: path.clone(),
            crypto,
        };
        Ok((self.service, session))
    }
}

/// A connection to the Secret Service. Searching, unlocking, deleting and reading attributes need no
/// session, so `erase` and `list` never open one.
struct Service {
    bus: Bus,
}

/// An open Secret Service session: what `GetSecret` and `CreateItem` need.
struct Session {
    path: String,
    crypto: Crypto,
}

/// How secrets cross the bus in a session.
enum Crypto {
    Plain,
    /// Encrypted, key not derived yet: the derivation (one modular exponentiation) waits until a request
    /// is in flight, so that it overlaps the service's work instead of adding to it.
    Pending {
        keypair: Keypair,
        peer: Vec<u8>,
    },
    Encrypted(SessionKey),
}

impl Session {
    /// The key of an encrypted session (derived on first use), `None` for a plain one.
    fn key(&mut self) -> Result<Option<SessionKey>, dh::CryptoError> {
        let key = match &self.crypto {
            Crypto::Plain => return Ok(None),
            Crypto::Pending { keypair, peer } => keypair.session_key(peer)?,
            Crypto::Encrypted(key) => key.clone(),
        };
        self.crypto = Crypto::Encrypted(key.clone());
        Ok(Some(key))
    }
}

impl Service {
    fn connect() -> Result<Service, KeyringError> {
        let bus = Bus::session().map_err(|e| classify(e, open_action))?;
        Ok(Service { bus })
    }

    /// Searches every collection and makes the matches usable ([`Service::usable`]).
    fn search(
        &mut self,
        attributes: &[(&str, &str)],
        need: Need,
    ) -> Result<Vec<String>, KeyringError> {
        let request = self.bus.send_search(attributes);
        let found = self.bus.reply(request).map_err(search_failed)?;
        self.usable(&found, need)
    }

    /// The paths of a `SearchItems` answer `(unlocked, locked)`. Locked matches are unlocked (a prompt on
    /// a desktop, an immediate dismissal when headless) only when the caller needs them.
    fn usable(&mut self, found: &[Value], need: Need) -> Result<Vec<String>, KeyringError> {
        let paths = |at: usize| found.get(at).and_then(Value::as_paths);
        let (Some(mut unlocked), Some(locked)) = (paths(0), paths(1)) else {
            return Err(search_failed(BusError::Protocol(
                "unexpected reply to SearchItems".to_owned(),
            )));
        };
        if locked.is_empty() || (need == Need::Any && !unlocked.is_empty()) {
            return Ok(unlocked);
        }
        let unlock_failed = |e| classify(e, || "unlock the keyring".to_owned());
        let reply = self
            .bus
            .call(
                SERVICE,
                SERVICE_PATH,
                SERVICE_IFACE,
                "Unlock",
                Body::new("ao").array(4, |body| {
                    for path in &locked {
                        body.str(path);
                    }
                }),
            )
            .map_err(unlock_failed)?;
        match reply.get(1).and_then(Value::as_str) {
            Some(NO_OBJECT) => {}
            Some(prompt) => {
                let prompt = prompt.to_owned();
                self.prompt(&prompt, "unlock the keyring")?;
            }
            None => {
                return Err(unlock_failed(BusError::Protocol(
                    "unexpected reply to Unlock".to_owned(),
                )));
            }
        }
        unlocked.extend(locked);
        Ok(unlocked)
    }

    /// Runs a prompt and returns its result; a dismissed prompt means the user (or a headless session)
    /// declined to unlock.
    fn prompt(&mut self, path: &str, action: &str) -> Result<Value, KeyringError> {
        let failed = |e| classify(e, || action.to_owned());
        // Subscribing first: the service may complete the prompt before `Prompt` even returns.
        let rule =
            format!("type='signal',interface='{PROMPT_IFACE}',member='Completed',path='{path}'");
        let subscribe = self.bus.send(
            BUS_NAME,
            BUS_PATH,
            BUS_NAME,
            "AddMatch",
            Body::new("s").str(&rule),
        );
        let shown = self.bus.send(
            SERVICE,
            path,
            PROMPT_IFACE,
            "Prompt",
            Body::new("s").str(""),
        );
        self.bus.reply(subscribe).map_err(failed)?;
        self.bus.reply(shown).map_err(failed)?;
        let completed = self
            .bus
            .wait(|m| m.is_signal(path, PROMPT_IFACE, "Completed"))
            .and_then(|signal| signal.values())
            .map_err(failed)?;
        match completed.as_slice() {
            [Value::Bool(false), result] => Ok(result.unwrap_variant().clone()),
            [Value::Bool(true), ..] => Err(KeyringError::Locked),
            _ => Err(failed(BusError::Protocol(
                "unexpected Completed signal from a prompt".to_owned(),
            ))),
        }
    }

    /// The username and secret stored for exactly `key`, if any; `found` are the usable matches of a
    /// search already made.
    fn read_newest(
        &mut self,
        session: &mut Session,
        key: &str,
        mut found: Vec<String>,
    ) -> Result<Option<(String, Secret<String>)>, KeyringError> {
        // A concurrent store may delete the item between the search and the read: search again then.
        let mut attempts = 3;
        loop {
            let Some(item) = self.newest(found) else {
                return Ok(None);
            };
            match self.read(session, &item) {
                Err(e) if attempts > 1 && vanished(&e) => attempts -= 1,
                Err(e) => {
                    return Err(classify(e, || {
                        format!("read the credentials stored for {key}")
                    }));
                }
                Ok((username, secret)) => {
                    let secret = String::from_utf8(secret)
                        .map_err(|_| KeyringError::NotUtf8(key.to_owned()))?;
                    return Ok(Some((username, Secret::new(secret))));
                }
            }
            found = self.search(&server_query(key), Need::Any)?;
        }
    }

    /// One item's username and secret: `GetSecret` and the `Attributes` read in one round trip.
    fn read(&mut self, session: &mut Session, item: &str) -> Result<(String, Vec<u8>), BusError> {
        let secret = self.bus.send(
            SERVICE,
            item,
            ITEM_IFACE,
            "GetSecret",
            Body::new("o").str(&session.path),
        );
        let attributes = self.bus.send_get_property(item, "Attributes");
        self.bus.flush()?;
        let key = session
            .key()
            .map_err(|e| BusError::Protocol(e.to_string()))?;
        let secret = first(self.bus.reply(secret)?, "GetSecret")?;
        let attributes = first(self.bus.reply(attributes)?, "Get Attributes")?;
        let username = attributes.unwrap_variant().lookup("username");
        let username = username.and_then(Value::as_str).unwrap_or_default();
        let unexpected = || BusError::Protocol("unexpected secret from GetSecret".to_owned());
        let Some([_, parameters, value, _]) = secret.as_fields() else {
            return Err(unexpected());
        };
        let (Some(parameters), Some(value)) = (parameters.as_bytes(), value.as_bytes()) else {
            return Err(unexpected());
        };
        let secret = match key {
            None => value.to_vec(),
            Some(key) => key
                .decrypt(parameters, value)
                .map_err(|e| BusError::Protocol(e.to_string()))?,
        };
        Ok((username.to_owned(), secret))
    }

    /// The one item to answer with. Only another writer (the peer stores one item per username) leaves
    /// several; the most recently modified wins, which costs a property read per match, only in that case.
    /// `Modified` counts seconds, and a re-login often lands in the same second: then the item the service
    /// created last wins, by the number that ends its path (gnome-keyring numbers a collection's items in
    /// creation order; its search answers in hash order).
    fn newest(&mut self, mut items: Vec<String>) -> Option<String> {
        if items.len() > 1 {
            let reads: Vec<u32> = items
                .iter()
                .map(|item| self.bus.send_get_property(item, "Modified"))
                .collect();
            // An unreadable timestamp sorts first rather than failing a read that can still succeed.
            let modified: Vec<u64> = reads
                .into_iter()
                .map(|read| {
                    let reply = self.bus.reply(read).ok();
                    let value = reply.as_ref().and_then(|reply| reply.first());
                    value.and_then(|v| v.unwrap_variant().as_int()).unwrap_or(0)
                })
                .collect();
            let created = |item: &str| item.rsplit('/').next().and_then(|n| n.parse::<u64>().ok());
            let mut order: Vec<usize> = (0..items.len()).collect();
            order.sort_by_key(|&i| (modified[i], created(&items[i])));
            let newest = order.last().copied()?;
            return Some(items.swap_remove(newest));
        }
        items.pop()
    }

    /// Creates the item in `collection` (replacing one with identical attributes) and returns its path.
    fn create_item(
        &mut self,
        session: &mut Session,
        collection: &str,
        credentials: &Credentials,
    ) -> Result<String, KeyringError> {
        let server = credentials.server_url.as_str();
        let failed = |e| classify(e, || format!("store the credentials for {server}"));
        let plain = credentials.secret.expose().as_bytes();
        let (parameters, value) = match session.key().map_err(crypto_failed)? {
            None => (Vec::new(), plain.to_vec()),
            Some(key) => {
                let (iv, ciphertext) = key.encrypt(plain).map_err(crypto_failed)?;
                (iv.to_vec(), ciphertext)
            }
        };
        let attributes = [
            ("label", LABEL),
            ("server", server),
            ("username", credentials.username.as_str()),
            ("docker_cli", "1"),
            ("xdg:schema", SCHEMA),
        ];
        let mut body = Body::new("a{sv}(oayays)b");
        body.array(8, |properties| {
            // The item label is the server key: the peer's `list` prints labels, not the `server`
            // attribute.
            properties.structure(|entry| {
                entry
                    .str("org.freedesktop.Secret.Item.Label")
                    .variant("s", |v| {
                        v.str(server);
                    });
            });
            properties.structure(|entry| {
                entry
                    .str("org.freedesktop.Secret.Item.Attributes")
                    .variant("a{ss}", |v| {
                        v.string_dict(&attributes);
                    });
            });
        });
        body.structure(|secret| {
            secret
                .str(&session.path)
                .bytes(&parameters)
                .bytes(&value)
                .str("text/plain");
        });
        body.bool(true);
        let reply = self
            .bus
            .call(
                SERVICE,
                collection,
                "org.freedesktop.Secret.Collection",
                "CreateItem",
                &body,
            )
            .map_err(failed)?;
        match (
            reply.first().and_then(Value::as_str),
            reply.get(1).and_then(Value::as_str),
        ) {
            (Some(item), Some(NO_OBJECT)) => Ok(item.to_owned()),
            (Some(_), Some(prompt)) => {
                let prompt = prompt.to_owned();
                let action = format!("store the credentials for {server}");
                let result = self.prompt(&prompt, &action)?;
                result.as_str().map(str::to_owned).ok_or_else(|| {
                    failed(BusError::Protocol("the prompt returned no item".to_owned()))
                })
            }
            _ => Err(failed(BusError::Protocol(
                "unexpected reply to CreateItem".to_owned(),
            ))),
        }
    }

    /// Deletes one item; one that another client deleted first is already what we wanted.
    fn delete(&mut self, item: &str, server: &str) -> Result<(), KeyringError> {
        let action = format!("delete the credentials stored for {server}");
        match self
            .bus
            .call(SERVICE, item, ITEM_IFACE, "Delete", &Body::new(""))
        {
            Err(e) if vanished(&e) => Ok(()),
            Err(e) => Err(classify(e, || action)),
            Ok(reply) => match reply.first().and_then(Value::as_str) {
                Some(NO_OBJECT) | None => Ok(()),
                Some(prompt) => {
                    let prompt = prompt.to_owned();
                    self.prompt(&prompt, &action).map(drop)
                }
            },
        }
    }

    /// Owns [`WRITE_LOCK_NAME`], queueing behind another writer until the bus hands it over. It is held
    /// until the connection closes.
    fn lock(&mut self) -> Result<(), KeyringError> {
        let failed = |e: BusError| KeyringError::Service {
            action: "take the keyring write lock on the session bus".to_owned(),
            reason: e.to_string(),
        };
        // No flags: the bus queues us (the defaults of most libraries replace the owner or never queue,
        // which would defeat the lock).
        let reply = self
            .bus
            .call(
                BUS_NAME,
                BUS_PATH,
                BUS_NAME,
                "RequestName",
                Body::new("su").str(WRITE_LOCK_NAME).u32(0),
            )
            .map_err(failed)?;
        const PRIMARY_OWNER: u64 = 1;
        const IN_QUEUE: u64 = 2;
        const ALREADY_OWNER: u64 = 4;
        match reply.first().and_then(Value::as_int) {
            Some(PRIMARY_OWNER | ALREADY_OWNER) => Ok(()),
            // The bus tells the new owner with a NameAcquired signal addressed to it alone.
            Some(IN_QUEUE) => self
                .bus
                .wait(|m| {
                    m.is_signal(BUS_PATH, BUS_NAME, "NameAcquired")
                        && m.values().is_ok_and(|values| {
                            values.first().and_then(Value::as_str) == Some(WRITE_LOCK_NAME)
                        })
                })
                .map(drop)
                .map_err(failed),
            _ => Err(failed(BusError::Protocol(
                "the bus refused to queue for the name".to_owned(),
            ))),
        }
    }
}

/// Requests every operation shares, on top of the bare bus.
impl Bus {
    fn send_open_session(&mut self, keypair: Option<&Keypair>) -> u32 {
        let mut body = Body::new("sv");
        match keypair {
            None => body.str("plain").variant("s", |v| {
                v.str("");
            }),
            Some(keypair) => body.str(dh::ALGORITHM).variant("ay", |v| {
                v.bytes(&keypair.public);
            }),
        };
        self.send(SERVICE, SERVICE_PATH, SERVICE_IFACE, "OpenSession", &body)
    }

    fn send_search(&mut self, attributes: &[(&str, &str)]) -> u32 {
        let mut body = Body::new("a{ss}");
        body.string_dict(attributes);
        self.send(SERVICE, SERVICE_PATH, SERVICE_IFACE, "SearchItems", &body)
    }

    fn send_get_property(&mut self, item: &str, property: &str) -> u32 {
        let mut body = Body::new("ss");
        body.str(ITEM_IFACE).str(property);
        self.send(SERVICE, item, PROPERTIES_IFACE, "Get", &body)
    }
}

/// The single value of a reply.
fn first(reply: Vec<Value>, call: &str) -> Result<Value, BusError> {
    reply
        .into_iter()
        .next()
        .ok_or_else(|| BusError::Protocol(format!("empty reply to {call}")))
}

fn first_path(reply: &[Value], call: &str) -> Result<String, BusError> {
    reply
        .first()
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| BusError::Protocol(format!("unexpected reply to {call}")))
}

fn open_action() -> String {
    "open a Secret Service session".to_owned()
}

fn search_failed(error: BusError) -> KeyringError {
    classify(error, || "search the keyring".to_owned())
}

fn crypto_failed(error: dh::CryptoError) -> KeyringError {
    KeyringError::Service {
        action: "encrypt the Secret Service session".to_owned(),
        reason: error.to_string(),
    }
}

/// The item's object is gone (deleted by another client since the search).
fn vanished(error: &BusError) -> bool {
    matches!(
        error.name(),
        Some(
            "org.freedesktop.DBus.Error.UnknownMethod" | "org.freedesktop.DBus.Error.UnknownObject"
        )
    )
}

/// The service refused the session algorithm.
fn is_not_supported(error: &BusError) -> bool {
    error.name() == Some("org.freedesktop.DBus.Error.NotSupported")
}

/// Turns a bus failure into the line the user sees.
fn classify(error: BusError, action: impl FnOnce() -> String) -> KeyringError {
    match error.name() {
        Some(
            "org.freedesktop.DBus.Error.ServiceUnknown"
            | "org.freedesktop.DBus.Error.NameHasNoOwner",
        ) => return KeyringError::NoProvider,
        Some("org.freedesktop.Secret.Error.IsLocked") => return KeyringError::Locked,
        _ => {}
    }
    match error {
        BusError::Connect(reason) => {
            if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_none() {
                KeyringError::NoSessionBus
            } else {
                KeyringError::BusUnreachable(reason)
            }
        }
        error => KeyringError::Service {
            action: action(),
            reason: error.to_string(),
        },
    }
}
