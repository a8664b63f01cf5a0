//! The macOS Keychain backend, writing items exactly as Docker's `docker-credential-osxkeychain` (0.9.x)
//! does: an Internet password labelled `Docker Credentials`, whose server, protocol (`htps`/`http`), port
//! and path come from the server URL ([`InternetServer`]), account = username, authentication type `dflt`,
//! data = the secret as raw UTF-8. `get` and `erase` match class + server + protocol + port + path (as
//! Docker's helper does, not account or label), `list` matches class + label.
//!
//! The attributes are raw `SecItem` dictionaries with the four-letter codes as strings, as Docker's helper
//! writes them; security-framework's password helpers would write numbers. Nothing here can run on the
//! machines that build regkit's tests: it is type-checked for both Apple targets there, and its round trip
//! runs on the `macos-latest` CI job.

use std::collections::BTreeMap;
use std::ptr;

use core_foundation::array::CFArray;
use core_foundation::base::{CFType, CFTypeRef, OSStatus, TCFType};
use core_foundation::boolean::CFBoolean;
use core_foundation::data::CFData;
use core_foundation::dictionary::CFDictionary;
use core_foundation::number::CFNumber;
use core_foundation::string::{CFString, CFStringRef};
use security_framework_sys::item::{
    kSecAttrAccount, kSecAttrAuthenticationType, kSecAttrLabel, kSecAttrPath, kSecAttrPort,
    kSecAttrProtocol, kSecAttrServer, kSecClass, kSecClassInternetPassword, kSecMatchLimit,
    kSecMatchLimitAll, kSecReturnAttributes, kSecReturnData, kSecValueData,
};
use security_framework_sys::keychain_item::{SecItemAdd, SecItemCopyMatching, SecItemDelete};

use super::docker_entry::{self, InternetServer, Protocol};
use super::{KeyringError, LABEL, SessionMode};
use crate::protocol::Credentials;
use crate::secret::Secret;

// Missing from security-framework-sys.
#[link(name = "Security", kind = "framework")]
unsafe extern "C" {
    static kSecMatchLimitOne: CFStringRef;
}

const ERR_SEC_SUCCESS: OSStatus = 0;
const ERR_SEC_ITEM_NOT_FOUND: OSStatus = -25300;
const ERR_SEC_INTERACTION_NOT_ALLOWED: OSStatus = -25308;
const ERR_SEC_AUTH_FAILED: OSStatus = -25293;
const ERR_SEC_USER_CANCELED: OSStatus = -128;
/// `kSecAttrAuthenticationTypeDefault`'s value, which Docker's helper writes for older versions' sake.
const AUTHENTICATION_TYPE_DEFAULT: &str = "dflt";

pub(super) fn get(
    _: SessionMode,
    keys: &[String],
) -> Result<Option<(String, Secret<String>)>, KeyringError> {
    for server in docker_entry::internet_lookups(keys) {
        let mut query = item_query(&server);
        // SAFETY: Security framework constants, valid for the life of the process.
        query.push(unsafe { pair(kSecMatchLimit, constant(kSecMatchLimitOne)) });
        query.push(unsafe { pair(kSecReturnAttributes, CFBoolean::true_value()) });
        query.push(unsafe { pair(kSecReturnData, CFBoolean::true_value()) });
        let Some(found) = copy_matching(&query, &server.url())? else {
            continue;
        };
        // SAFETY: with kSecMatchLimitOne and both kSecReturn… keys, the result is one attribute dictionary.
        let item =
            unsafe { CFDictionary::<CFString, CFType>::wrap_under_create_rule(found.cast()) };
        // SAFETY: a Security framework constant.
        let account = unsafe { string_attribute(&item, kSecAttrAccount) };
        let data = item
            // SAFETY: a Security framework constant.
            .find(unsafe { constant(kSecValueData) })
            .and_then(|value| value.downcast::<CFData>())
            .map(|data| data.bytes().to_vec())
            .unwrap_or_default();
        let secret = String::from_utf8(data).map_err(|_| KeyringError::NotUtf8(server.url()))?;
        return Ok(Some((account, Secret::new(secret))));
    }
    Ok(None)
}

pub(super) fn store(_: SessionMode, credentials: &Credentials) -> Result<(), KeyringError> {
    let server = InternetServer::parse(&credentials.server_url)?;
    // The account is part of an Internet password's identity, so a new username would add a second item:
    // replace by deleting first, as Docker's helper does.
    erase(&credentials.server_url)?;
    let mut item = item_query(&server);
    // SAFETY: Security framework constants.
    unsafe {
        item.push(pair(kSecAttrLabel, CFString::new(LABEL)));
        item.push(pair(kSecAttrAccount, CFString::new(&credentials.username)));
        item.push(pair(
            kSecAttrAuthenticationType,
            CFString::from_static_string(AUTHENTICATION_TYPE_DEFAULT),
        ));
        item.push(pair(
            kSecValueData,
            CFData::from_buffer(credentials.secret.expose().as_bytes()),
        ));
    }
    let item = CFDictionary::from_CFType_pairs(&item);
    // SAFETY: a valid dictionary; no result is asked for.
    match unsafe { SecItemAdd(item.as_concrete_TypeRef(), ptr::null_mut()) } {
        ERR_SEC_SUCCESS => Ok(()),
        status => Err(failed(
            format!("add the Keychain item for {}", credentials.server_url),
            status,
        )),
    }
}

pub(super) fn erase(server_url: &str) -> Result<(), KeyringError> {
    let server = InternetServer::parse(server_url)?;
    let query = CFDictionary::from_CFType_pairs(&item_query(&server));
    // SAFETY: a valid query dictionary.
    match unsafe { SecItemDelete(query.as_concrete_TypeRef()) } {
        ERR_SEC_SUCCESS | ERR_SEC_ITEM_NOT_FOUND => Ok(()),
        status => Err(failed(
            format!("delete the Keychain item for {server_url}"),
            status,
        )),
    }
}

pub(super) fn list() -> Result<BTreeMap<String, String>, KeyringError> {
    // SAFETY: Security framework constants.
    let query = unsafe {
        [
            pair(kSecClass, constant(kSecClassInternetPassword)),
            pair(kSecAttrLabel, CFString::new(LABEL)),
            pair(kSecMatchLimit, constant(kSecMatchLimitAll)),
            pair(kSecReturnAttributes, CFBoolean::true_value()),
        ]
    };
    let Some(found) = copy_matching(&query, "Docker's entries")? else {
        return Ok(BTreeMap::new());
    };
    // SAFETY: with kSecMatchLimitAll and kSecReturnAttributes, the result is an array of dictionaries.
    let items =
        unsafe { CFArray::<CFDictionary<CFString, CFType>>::wrap_under_create_rule(found.cast()) };
    let mut entries = BTreeMap::new();
    for item in items.iter() {
        // SAFETY: Security framework constants.
        let (server, protocol, path, account) = unsafe {
            (
                string_attribute(&item, kSecAttrServer),
                string_attribute(&item, kSecAttrProtocol),
                string_attribute(&item, kSecAttrPath),
                string_attribute(&item, kSecAttrAccount),
            )
        };
        let port = item
            // SAFETY: a Security framework constant.
            .find(unsafe { constant(kSecAttrPort) })
            .and_then(|value| value.downcast::<CFNumber>())
            .and_then(|number| number.to_i32())
            .and_then(|port| u16::try_from(port).ok())
            .filter(|&port| port != 0);
        let server = InternetServer {
            server,
            protocol: Protocol::from_code(&protocol),
            port,
            path,
        };
        entries.insert(server.url(), account);
    }
    Ok(entries)
}

/// Class, server, protocol, and port and path when present: what identifies Docker's item for a URL.
fn item_query(server: &InternetServer) -> Vec<(CFString, CFType)> {
    // SAFETY: Security framework constants.
    unsafe {
        let mut query = vec![
            pair(kSecClass, constant(kSecClassInternetPassword)),
            pair(kSecAttrServer, CFString::new(&server.server)),
            pair(
                kSecAttrProtocol,
                CFString::from_static_string(server.protocol.code()),
            ),
        ];
        if let Some(port) = server.port {
            query.push(pair(kSecAttrPort, CFNumber::from(i32::from(port))));
        }
        if !server.path.is_empty() {
            query.push(pair(kSecAttrPath, CFString::new(&server.path)));
        }
        query
    }
}

/// The result of `SecItemCopyMatching`, `None` when nothing matched; the caller owns it. `what` names the
/// search in an error.
fn copy_matching(
    query: &[(CFString, CFType)],
    what: &str,
) -> Result<Option<CFTypeRef>, KeyringError> {
    let query = CFDictionary::from_CFType_pairs(query);
    let mut result: CFTypeRef = ptr::null();
    // SAFETY: a valid query dictionary; on success `result` holds a +1 reference.
    match unsafe { SecItemCopyMatching(query.as_concrete_TypeRef(), &mut result) } {
        ERR_SEC_SUCCESS if !result.is_null() => Ok(Some(result)),
        ERR_SEC_SUCCESS | ERR_SEC_ITEM_NOT_FOUND => Ok(None),
        status => Err(failed(format!("search the Keychain for {what}"), status)),
    }
}

/// A Security framework key constant as a CFString (no ownership taken).
///
/// # Safety
/// `key` is one of the framework's constant strings.
unsafe fn constant(key: CFStringRef) -> CFString {
    // SAFETY: per the contract; the get rule retains it.
    unsafe { CFString::wrap_under_get_rule(key) }
}

/// # Safety
/// `key` is one of the framework's constant strings.
unsafe fn pair(key: CFStringRef, value: impl TCFType) -> (CFString, CFType) {
    // SAFETY: per the contract.
    (unsafe { constant(key) }, value.into_CFType())
}

/// A string attribute of a returned item, empty when absent.
///
/// # Safety
/// `key` is one of the framework's constant strings.
unsafe fn string_attribute(item: &CFDictionary<CFString, CFType>, key: CFStringRef) -> String {
    // SAFETY: per the contract.
    item.find(unsafe { constant(key) })
        .and_then(|value| value.downcast::<CFString>())
        .map(|text| text.to_string())
        .unwrap_or_default()
}

/// One line naming the operation and the Keychain's status, with what to do for the ones users meet.
fn failed(action: String, status: OSStatus) -> KeyringError {
    let reason = match status {
        ERR_SEC_INTERACTION_NOT_ALLOWED => "the Keychain is locked and cannot ask for its password here (SSH or CI): unlock it with `security unlock-keychain`".to_owned(),
        ERR_SEC_USER_CANCELED => "the Keychain prompt was dismissed".to_owned(),
        ERR_SEC_AUTH_FAILED => "the Keychain refused the password or access".to_owned(),
        status => format!("Keychain status {status}"),
    };
    KeyringError::Service { action, reason }
}
