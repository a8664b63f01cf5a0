//! The freedesktop Secret Service backend (Linux), through the pure-Rust `secret-service` crate.
//!
//! Each operation connects once and issues the minimal call sequence: `get` is Hello, OpenSession,
//! SearchItems, GetSecret and one property read. Writers (`store`, `erase`) also take a session-wide lock
//! (a queued well-known bus name), because "delete the old items, create the new one" is not atomic in the
//! Secret Service API and concurrent `docker login`s must never leave two entries for one server.

use std::collections::{BTreeMap, HashMap};

use secret_service::EncryptionType;
use secret_service::blocking::{Item, SecretService};
use zbus::blocking::Connection;
use zbus::blocking::fdo::DBusProxy;
use zbus::fdo::RequestNameReply;
use zbus::names::WellKnownName;

use super::{KeyringError, SessionMode};
use crate::protocol::Credentials;
use crate::secret::Secret;

/// The libsecret schema name Debian's `docker-credential-secretservice` searches with.
const SCHEMA: &str = "io.docker.Credentials";
/// The `label` attribute docker's helpers put on every item.
const LABEL: &str = "Docker Credentials";
/// The well-known bus name whose ownership is the writers' lock. The bus releases it when its owner dies,
/// so a crashed helper never leaves a stale lock behind.
const WRITE_LOCK_NAME: &str = "io.github.regkit.KeyringWriteLock";

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
    let (_connection, service) = open(mode)?;
    for key in keys {
        if let Some(found) = read_newest(&service, key)? {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

/// The username and secret stored for exactly `key`, if any.
fn read_newest(
    service: &SecretService<'_>,
    key: &str,
) -> Result<Option<(String, Secret<String>)>, KeyringError> {
    // A concurrent store may delete the item between the search and the read: search again then.
    let mut attempts = 3;
    loop {
        let Some(item) = newest(search(service, server_query(key), Need::Any)?) else {
            return Ok(None);
        };
        let read = item.get_secret().and_then(|secret| {
            let mut attributes = item.get_attributes()?;
            Ok((attributes.remove("username").unwrap_or_default(), secret))
        });
        match read {
            Err(e) if attempts > 1 && vanished(&e) => attempts -= 1,
            Err(e) => {
                return Err(classify(e, || {
                    format!("read the credentials stored for {key}")
                }));
            }
            Ok((username, secret)) => {
                let secret =
                    String::from_utf8(secret).map_err(|_| KeyringError::NotUtf8(key.to_owned()))?;
                return Ok(Some((username, Secret::new(secret))));
            }
        }
    }
}

pub(super) fn store(mode: SessionMode, credentials: &Credentials) -> Result<(), KeyringError> {
    let server = credentials.server_url.as_str();
    let (connection, service) = open(mode)?;
    let _lock = WriteLock::acquire(&connection)?;
    let stale = search(&service, server_query(server), Need::All)?;
    let collection = service.get_default_collection().map_err(|e| match e {
        secret_service::Error::NoResult => KeyringError::NoDefaultCollection,
        e => classify(e, || "open the default keyring".to_owned()),
    })?;
    let attributes = HashMap::from([
        ("label", LABEL),
        ("server", server),
        ("username", credentials.username.as_str()),
        ("docker_cli", "1"),
        ("xdg:schema", SCHEMA),
    ]);
    // The item label is the server key: the peer's `list` prints labels, not the `server` attribute.
    let created = collection
        .create_item(
            server,
            attributes,
            credentials.secret.expose().as_bytes(),
            true,
            "text/plain",
        )
        .map_err(|e| classify(e, || format!("store the credentials for {server}")))?;
    // Deleting only after the new item exists means a failed store never loses the old credentials.
    // `replace` already overwrote an item with identical attributes, so skip that one.
    for item in stale
        .iter()
        .filter(|item| item.item_path != created.item_path)
    {
        delete(item, server)?;
    }
    Ok(())
}

pub(super) fn erase(server: &str) -> Result<(), KeyringError> {
    let (connection, service) = open(metadata_mode())?;
    let _lock = WriteLock::acquire(&connection)?;
    for item in search(&service, server_query(server), Need::All)? {
        delete(&item, server)?;
    }
    Ok(())
}

pub(super) fn list() -> Result<BTreeMap<String, String>, KeyringError> {
    let (_connection, service) = open(metadata_mode())?;
    let mut entries = BTreeMap::new();
    for item in search(&service, HashMap::from([("docker_cli", "1")]), Need::All)? {
        let mut attributes = item
            .get_attributes()
            .map_err(|e| classify(e, || "read the attributes of a stored entry".to_owned()))?;
        if let Some(server) = attributes.remove("server") {
            entries.insert(server, attributes.remove("username").unwrap_or_default());
        }
    }
    Ok(entries)
}

/// Deletes one item; one that another client deleted first is already what we wanted.
fn delete(item: &Item<'_>, server: &str) -> Result<(), KeyringError> {
    match item.delete() {
        Err(e) if !vanished(&e) => Err(classify(e, || {
            format!("delete the credentials stored for {server}")
        })),
        _ => Ok(()),
    }
}

/// The item's object is gone (deleted by another client since the search).
fn vanished(error: &secret_service::Error) -> bool {
    matches!(
        dbus_error_name(error).as_deref(),
        Some(
            "org.freedesktop.DBus.Error.UnknownMethod" | "org.freedesktop.DBus.Error.UnknownObject"
        )
    )
}

/// `erase` and `list` never move a secret, so the cheaper plain session exposes nothing.
fn metadata_mode() -> SessionMode {
    SessionMode::PlainAllowed
}

/// The items of one server key, whoever wrote them (with or without `xdg:schema`).
fn server_query(server: &str) -> HashMap<&str, &str> {
    HashMap::from([("server", server), ("docker_cli", "1")])
}

/// Connects to the session bus and opens a Secret Service session in `mode`. The connection is returned
/// too, for the writers' lock.
fn open<'a>(mode: SessionMode) -> Result<(Connection, SecretService<'a>), KeyringError> {
    let connection = Connection::session().map_err(|e| {
        if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_none() {
            KeyringError::NoSessionBus
        } else {
            KeyringError::BusUnreachable(e.to_string())
        }
    })?;
    let session = |encryption| SecretService::connect_with_existing(encryption, connection.clone());
    let service = match mode {
        SessionMode::Encrypted => session(EncryptionType::Dh).map_err(|e| {
            if is_not_supported(&e) {
                KeyringError::EncryptionRefused
            } else {
                classify(e, open_action)
            }
        }),
        SessionMode::PlainAllowed => match session(EncryptionType::Plain) {
            Err(e) if is_not_supported(&e) => session(EncryptionType::Dh),
            opened => opened,
        }
        .map_err(|e| classify(e, open_action)),
    }?;
    Ok((connection, service))
}

fn open_action() -> String {
    "open a Secret Service session".to_owned()
}

/// Searches every collection. Locked matches are unlocked (a prompt on a desktop, an immediate dismissal
/// when headless) only when the caller needs them.
fn search<'a>(
    service: &'a SecretService<'a>,
    attributes: HashMap<&str, &str>,
    need: Need,
) -> Result<Vec<Item<'a>>, KeyringError> {
    let found = service
        .search_items(attributes)
        .map_err(|e| classify(e, || "search the keyring".to_owned()))?;
    let mut items = found.unlocked;
    if found.locked.is_empty() || (need == Need::Any && !items.is_empty()) {
        return Ok(items);
    }
    let locked: Vec<&Item> = found.locked.iter().collect();
    service
        .unlock_all(&locked)
        .map_err(|e| classify(e, || "unlock the keyring".to_owned()))?;
    items.extend(found.locked);
    Ok(items)
}

/// The one item to answer with. Only another writer (the peer stores one item per username) leaves
/// several; the most recently modified wins, which costs a property read per match, only in that case.
fn newest(mut items: Vec<Item<'_>>) -> Option<Item<'_>> {
    if items.len() > 1 {
        // An unreadable timestamp sorts first rather than failing a read that can still succeed.
        items.sort_by_cached_key(|item| item.get_modified().unwrap_or(0));
    }
    items.pop()
}

/// Turns a Secret Service failure into the line the user sees.
fn classify(error: secret_service::Error, action: impl FnOnce() -> String) -> KeyringError {
    use secret_service::Error as E;
    if matches!(error, E::Prompt | E::PromptDisconnected | E::Locked) {
        return KeyringError::Locked;
    }
    match dbus_error_name(&error).as_deref() {
        Some(
            "org.freedesktop.DBus.Error.ServiceUnknown"
            | "org.freedesktop.DBus.Error.NameHasNoOwner",
        ) => KeyringError::NoProvider,
        Some("org.freedesktop.Secret.Error.IsLocked") => KeyringError::Locked,
        _ => KeyringError::Service {
            action: action(),
            reason: error.to_string(),
        },
    }
}

/// The service refused the session algorithm.
fn is_not_supported(error: &secret_service::Error) -> bool {
    dbus_error_name(error).as_deref() == Some("org.freedesktop.DBus.Error.NotSupported")
}

/// The D-Bus error name of a failed method call, however zbus wrapped it.
fn dbus_error_name(error: &secret_service::Error) -> Option<String> {
    use zbus::DBusError;
    match error {
        secret_service::Error::Zbus(zbus::Error::MethodError(name, _, _)) => Some(name.to_string()),
        secret_service::Error::Zbus(zbus::Error::FDO(fdo)) => Some(fdo.name().to_string()),
        secret_service::Error::ZbusFdo(fdo) => Some(fdo.name().to_string()),
        _ => None,
    }
}

/// Ownership of [`WRITE_LOCK_NAME`]: the bus queues other writers until it is released.
struct WriteLock<'c> {
    bus: DBusProxy<'c>,
}

impl<'c> WriteLock<'c> {
    fn acquire(connection: &'c Connection) -> Result<Self, KeyringError> {
        let failed = |e: zbus::Error| KeyringError::Service {
            action: "take the keyring write lock on the session bus".to_owned(),
            reason: e.to_string(),
        };
        let bus = DBusProxy::new(connection).map_err(failed)?;
        // Subscribe before asking, so the grant cannot slip between the reply and the subscription.
        let mut granted = bus
            .receive_name_acquired_with_args(&[(0, WRITE_LOCK_NAME)])
            .map_err(failed)?;
        // Called by hand: zbus's default flags (replace the owner, never queue) would defeat the lock, and
        // no flag at all is what makes the bus queue us.
        let reply: RequestNameReply = connection
            .call_method(
                Some("org.freedesktop.DBus"),
                "/org/freedesktop/DBus",
                Some("org.freedesktop.DBus"),
                "RequestName",
                &(WRITE_LOCK_NAME, 0u32),
            )
            .and_then(|message| message.body().deserialize())
            .map_err(failed)?;
        match reply {
            RequestNameReply::PrimaryOwner | RequestNameReply::AlreadyOwner => {}
            RequestNameReply::InQueue => loop {
                let Some(signal) = granted.next() else {
                    return Err(failed(zbus::Error::Failure(
                        "the bus connection closed while waiting for another writer".to_owned(),
                    )));
                };
                if signal
                    .args()
                    .is_ok_and(|args| args.name() == WRITE_LOCK_NAME)
                {
                    break;
                }
            },
            RequestNameReply::Exists => {
                return Err(failed(zbus::Error::NameTaken));
            }
        }
        Ok(WriteLock { bus })
    }
}

impl Drop for WriteLock<'_> {
    fn drop(&mut self) {
        // Closing the connection releases the name as well; this only frees it a little earlier.
        let _ = self.bus.release_name(lock_name());
    }
}

fn lock_name() -> WellKnownName<'static> {
    WellKnownName::from_static_str_unchecked(WRITE_LOCK_NAME)
}
