//! The Windows Credential Manager backend, writing credentials exactly as Docker's `docker-credential-wincred`
//! does: a generic credential whose target is the server key as given, the username, the secret as raw
//! UTF-8 bytes, persisted on the local machine, with the attribute `label` = `Docker Credentials`. Docker's
//! helper lists (and reads) only credentials carrying that label, so writing it is what makes ours visible
//! to `docker-credential-wincred`; our `list` keeps the same ones ([`docker_entry::labelled`]). `get` reads
//! the exact target (then the lookup fallbacks) without requiring the label, which Docker's `get` does: a
//! generic credential named by a registry key is a registry login whoever wrote it, and reading it keeps
//! entries working where attributes are lost (Wine drops them).
//!
//! Each operation is one API call (`CredWriteW` replaces a credential of the same target in place, so
//! `store` needs no lock), none of which waits on anything but the local LSA.

use std::collections::BTreeMap;
use std::ptr;

use windows_sys::Win32::Foundation::{
    ERROR_ACCESS_DENIED, ERROR_NO_SUCH_LOGON_SESSION, ERROR_NOT_FOUND, GetLastError, WIN32_ERROR,
};
use windows_sys::Win32::Security::Credentials::{
    CRED_MAX_CREDENTIAL_BLOB_SIZE, CRED_PERSIST_LOCAL_MACHINE, CRED_TYPE_GENERIC,
    CREDENTIAL_ATTRIBUTEW, CREDENTIALW, CredDeleteW, CredEnumerateW, CredFree, CredReadW,
    CredWriteW,
};

use super::docker_entry::{self, GenericCredential, WINCRED_LABEL_KEYWORD};
use super::{KeyringError, LABEL, SessionMode};
use crate::protocol::Credentials;
use crate::secret::Secret;

pub(super) fn get(
    _: SessionMode,
    keys: &[String],
) -> Result<Option<(String, Secret<String>)>, KeyringError> {
    for key in keys {
        let target = wide(key)?;
        let mut found: *mut CREDENTIALW = ptr::null_mut();
        // SAFETY: `target` is NUL-terminated; on success `found` points to a buffer we own until CredFree.
        if unsafe { CredReadW(target.as_ptr(), CRED_TYPE_GENERIC, 0, &mut found) } == 0 {
            match last_error() {
                ERROR_NOT_FOUND => continue,
                code => return Err(failed(format!("read the credential for {key}"), code)),
            }
        }
        let found = ApiBuffer(found.cast());
        // SAFETY: CredReadW succeeded, so `found` is a valid CREDENTIALW whose blob has the stated size.
        let (username, blob) = unsafe {
            let credential = found.0.cast::<CREDENTIALW>().read_unaligned();
            (
                from_wide(credential.UserName),
                bytes(credential.CredentialBlob, credential.CredentialBlobSize).to_vec(),
            )
        };
        let secret = String::from_utf8(blob).map_err(|_| KeyringError::NotUtf8(key.clone()))?;
        return Ok(Some((username, Secret::new(secret))));
    }
    Ok(None)
}

pub(super) fn store(_: SessionMode, credentials: &Credentials) -> Result<(), KeyringError> {
    let server = &credentials.server_url;
    let secret = credentials.secret.expose().as_bytes();
    // Windows refuses larger blobs with a bare "invalid parameter"; say which limit it is.
    if secret.len() > CRED_MAX_CREDENTIAL_BLOB_SIZE as usize {
        return Err(KeyringError::Service {
            action: format!("store the credential for {server}"),
            reason: format!(
                "the secret is {} bytes, the Windows Credential Manager holds at most {CRED_MAX_CREDENTIAL_BLOB_SIZE}",
                secret.len()
            ),
        });
    }
    let mut target = wide(server)?;
    let mut username = wide(&credentials.username)?;
    let mut keyword = wide(WINCRED_LABEL_KEYWORD)?;
    let mut label = LABEL.as_bytes().to_vec();
    let mut attribute = CREDENTIAL_ATTRIBUTEW {
        Keyword: keyword.as_mut_ptr(),
        Flags: 0,
        ValueSize: label.len() as u32,
        Value: label.as_mut_ptr(),
    };
    let credential = CREDENTIALW {
        Type: CRED_TYPE_GENERIC,
        TargetName: target.as_mut_ptr(),
        UserName: username.as_mut_ptr(),
        CredentialBlobSize: secret.len() as u32,
        // CredWriteW only reads the blob; the field is `*mut` because the struct is shared with CredReadW.
        CredentialBlob: secret.as_ptr().cast_mut(),
        Persist: CRED_PERSIST_LOCAL_MACHINE,
        AttributeCount: 1,
        Attributes: &mut attribute,
        ..Default::default()
    };
    // SAFETY: every pointer in `credential` points into a buffer that lives until the end of this function.
    if unsafe { CredWriteW(&credential, 0) } == 0 {
        return Err(failed(
            format!("store the credential for {server}"),
            last_error(),
        ));
    }
    Ok(())
}

pub(super) fn erase(server: &str) -> Result<(), KeyringError> {
    let target = wide(server)?;
    // SAFETY: `target` is NUL-terminated.
    if unsafe { CredDeleteW(target.as_ptr(), CRED_TYPE_GENERIC, 0) } == 0 {
        match last_error() {
            ERROR_NOT_FOUND => {}
            code => return Err(failed(format!("erase the credential for {server}"), code)),
        }
    }
    Ok(())
}

pub(super) fn list() -> Result<BTreeMap<String, String>, KeyringError> {
    let mut count = 0u32;
    let mut found: *mut *mut CREDENTIALW = ptr::null_mut();
    // Flags 0, as Docker's helper passes: CRED_ENUMERATE_ALL_CREDENTIALS is refused on some systems.
    // SAFETY: on success `found` is an array of `count` credential pointers we own until CredFree.
    if unsafe { CredEnumerateW(ptr::null(), 0, &mut count, &mut found) } == 0 {
        return match last_error() {
            ERROR_NOT_FOUND => Ok(BTreeMap::new()),
            code => Err(failed("list the stored credentials".to_owned(), code)),
        };
    }
    let found = ApiBuffer(found.cast());
    // Wine packs the returned credentials at unaligned addresses, so every struct is read unaligned.
    // SAFETY: the array holds `count` valid CREDENTIALW pointers, each with `AttributeCount` attributes.
    let credentials = unsafe {
        std::slice::from_raw_parts(found.0.cast::<*const CREDENTIALW>(), count as usize)
            .iter()
            .map(|&credential| {
                let credential = credential.read_unaligned();
                let labelled = (0..credential.AttributeCount as usize).any(|at| {
                    let attribute = credential.Attributes.add(at).read_unaligned();
                    docker_entry::is_docker_label(
                        &from_wide(attribute.Keyword),
                        bytes(attribute.Value, attribute.ValueSize),
                    )
                });
                GenericCredential {
                    target: from_wide(credential.TargetName),
                    username: from_wide(credential.UserName),
                    labelled,
                }
            })
            .collect::<Vec<_>>()
    };
    Ok(docker_entry::labelled(credentials))
}

/// A buffer the credential API allocated, freed with `CredFree` however the caller leaves.
struct ApiBuffer(*mut std::ffi::c_void);

impl Drop for ApiBuffer {
    fn drop(&mut self) {
        // SAFETY: the pointer came from CredReadW/CredEnumerateW and is freed once.
        unsafe { CredFree(self.0) }
    }
}

fn last_error() -> WIN32_ERROR {
    // SAFETY: no preconditions; reads this thread's last-error value.
    unsafe { GetLastError() }
}

/// A NUL-terminated UTF-16 copy. A key with a NUL inside would name a different (truncated) target.
fn wide(text: &str) -> Result<Vec<u16>, KeyringError> {
    if text.contains('\0') {
        return Err(KeyringError::InvalidServerUrl(text.to_owned()));
    }
    Ok(text.encode_utf16().chain([0]).collect())
}

/// The text of a NUL-terminated UTF-16 string the API returned (empty for null).
///
/// # Safety
/// `text` is null or points to a NUL-terminated UTF-16 string.
unsafe fn from_wide(text: *const u16) -> String {
    if text.is_null() {
        return String::new();
    }
    // SAFETY: per the contract, every unit up to and including the NUL is readable (maybe unaligned: Wine).
    let units: Vec<u16> = unsafe {
        (0..)
            .map(|at| text.add(at).read_unaligned())
            .take_while(|&unit| unit != 0)
            .collect()
    };
    String::from_utf16_lossy(&units)
}

/// # Safety
/// `data` is null (with `size` 0) or points to `size` readable bytes.
unsafe fn bytes<'a>(data: *const u8, size: u32) -> &'a [u8] {
    if data.is_null() || size == 0 {
        return &[];
    }
    // SAFETY: per the contract.
    unsafe { std::slice::from_raw_parts(data, size as usize) }
}

/// One line naming the operation and the Windows error, with what to do for the errors users meet.
fn failed(action: String, code: WIN32_ERROR) -> KeyringError {
    let reason = match code {
        ERROR_NO_SUCH_LOGON_SESSION => "no logon session holds a credential store (a service or a network logon without a loaded profile): run as an interactive user".to_owned(),
        ERROR_ACCESS_DENIED => "access denied by the Credential Manager".to_owned(),
        code => format!("Windows error {code}"),
    };
    KeyringError::Service { action, reason }
}

/// Run under Wine by `scripts/wine-test.sh` (`make test`), in a fresh Wine prefix. Wine 8.0 drops credential
/// attributes on write and read, so the checks that involve Docker's label (it is written, Docker's helper
/// `get`s and `list`s ours, our `list` shows Docker's) are owed by a real Windows machine: they run there (the
/// `windows-latest` job of .github/workflows/ci.yml) and under Wine each says it was not checked.
#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::process::{Command, Output, Stdio};

    use windows_sys::Win32::System::LibraryLoader::{GetModuleHandleW, GetProcAddress};

    use super::*;
    use crate::keyring::KeyringStore;
    use crate::protocol::{Error, Helper};

    /// Wine's ntdll exports `wine_get_version`; Windows' does not.
    fn under_wine() -> bool {
        let ntdll = wide("ntdll.dll").unwrap();
        // SAFETY: both names are NUL-terminated; ntdll is loaded in every process.
        unsafe {
            let module = GetModuleHandleW(ntdll.as_ptr());
            !module.is_null()
                && GetProcAddress(module, c"wine_get_version".as_ptr().cast()).is_some()
        }
    }

    fn owed(check: &str) {
        eprintln!(
            "under Wine (drops credential attributes): not checked, owed by a real Windows machine: {check}"
        );
    }

    /// A target no other test (or concurrent run) uses.
    fn key(name: &str) -> String {
        format!("https://{name}-{}.regkit.test", std::process::id())
    }

    /// One test at a time: Wine's `CredEnumerateW` fails (error 1018, key deleted) while another thread
    /// deletes a credential, which Windows does not.
    fn serial() -> std::sync::MutexGuard<'static, ()> {
        static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
        LOCK.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn credentials(server: &str, username: &str, secret: &str) -> Credentials {
        Credentials {
            server_url: server.to_owned(),
            username: username.to_owned(),
            secret: Secret::new(secret.to_owned()),
        }
    }

    /// Docker's own `docker-credential-wincred.exe`, from `REGKIT_WINCRED_PEER` (set by the Wine script).
    fn docker_helper(action: &str, input: &str) -> Output {
        let peer = std::env::var_os("REGKIT_WINCRED_PEER")
            .expect("REGKIT_WINCRED_PEER must name Docker's docker-credential-wincred.exe (scripts/wine-test.sh sets it)");
        let mut child = Command::new(peer)
            .arg(action)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start docker-credential-wincred.exe");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    fn store_json(server: &str, username: &str, secret: &str) -> String {
        serde_json::json!({"ServerURL": server, "Username": username, "Secret": secret}).to_string()
    }

    #[test]
    fn entries_are_written_in_dockers_format() {
        let _serial = serial();
        let server = key("format");
        let store = KeyringStore::new();
        store
            .store(credentials(&server, "ü-user", "pässwörd"))
            .unwrap();
        let target = wide(&server).unwrap();
        let mut found: *mut CREDENTIALW = ptr::null_mut();
        // SAFETY: as in `get`.
        assert_ne!(
            unsafe { CredReadW(target.as_ptr(), CRED_TYPE_GENERIC, 0, &mut found) },
            0
        );
        let found = ApiBuffer(found.cast());
        // SAFETY: CredReadW succeeded.
        let credential = unsafe { found.0.cast::<CREDENTIALW>().read_unaligned() };
        assert_eq!(credential.Type, CRED_TYPE_GENERIC);
        assert_eq!(credential.Persist, CRED_PERSIST_LOCAL_MACHINE);
        // SAFETY: fields of a credential CredReadW returned.
        unsafe {
            assert_eq!(from_wide(credential.TargetName), server);
            assert_eq!(from_wide(credential.UserName), "ü-user");
            assert_eq!(
                bytes(credential.CredentialBlob, credential.CredentialBlobSize),
                "pässwörd".as_bytes()
            );
            if under_wine() {
                assert_eq!(credential.AttributeCount, 0);
                owed("the attribute label = \"Docker Credentials\" is written");
            } else {
                assert_eq!(credential.AttributeCount, 1);
                let attribute = credential.Attributes.read_unaligned();
                assert!(docker_entry::is_docker_label(
                    &from_wide(attribute.Keyword),
                    bytes(attribute.Value, attribute.ValueSize)
                ));
            }
        }
        store.erase(&server).unwrap();
    }

    #[test]
    fn store_get_list_erase_round_trip() {
        let _serial = serial();
        let store = KeyringStore::new();
        let server = key("round-trip");
        store.store(credentials(&server, "first", "s1")).unwrap();
        store.store(credentials(&server, "second", "s2")).unwrap();
        let got = store.get(&server).unwrap();
        assert_eq!(
            (got.username.as_str(), got.secret.expose().as_str()),
            ("second", "s2")
        );
        // `https://host` stored, `host` asked: the same fallbacks as on Linux.
        let bare = server.trim_start_matches("https://");
        let got = store.get(bare).unwrap();
        assert_eq!(
            (got.server_url.as_str(), got.username.as_str()),
            (bare, "second")
        );
        let listed = store.list().unwrap();
        if under_wine() {
            assert!(!listed.contains_key(&server));
            owed("`list` shows our entry (it keeps labelled credentials only)");
        } else {
            assert_eq!(listed.get(&server).map(String::as_str), Some("second"));
        }
        store.erase(&server).unwrap();
        assert_eq!(store.get(&server).unwrap_err(), Error::NotFound);
        // Erasing what is not there succeeds, as on Linux.
        store.erase(&server).unwrap();
        assert!(!store.list().unwrap().contains_key(&server));
    }

    #[test]
    fn docker_store_then_ours_get() {
        let _serial = serial();
        let store = KeyringStore::new();
        let server = key("docker-stores");
        let out = docker_helper(
            "store",
            &store_json(&server, "docker-user", "from-docker-ü"),
        );
        assert!(out.status.success(), "{out:?}");
        let got = store.get(&server).unwrap();
        assert_eq!(got.username, "docker-user");
        assert_eq!(got.secret.expose(), "from-docker-ü");
        if under_wine() {
            owed("our `list` shows what Docker stored (Docker's label is read)");
        } else {
            assert_eq!(
                store.list().unwrap().get(&server).map(String::as_str),
                Some("docker-user")
            );
        }
        store.erase(&server).unwrap();
        assert_eq!(store.get(&server).unwrap_err(), Error::NotFound);
    }

    #[test]
    fn ours_store_then_docker_erase() {
        let _serial = serial();
        let store = KeyringStore::new();
        let server = key("we-store");
        store
            .store(credentials(&server, "our-user", "from-regkit"))
            .unwrap();
        if under_wine() {
            owed("Docker's `get` and `list` find what we stored (they require the label)");
        } else {
            let out = docker_helper("get", &server);
            assert!(out.status.success(), "{out:?}");
            let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(answer["Username"], "our-user");
            assert_eq!(answer["Secret"], "from-regkit");
            let out = docker_helper("list", "");
            let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(listed[&server], "our-user");
        }
        let out = docker_helper("erase", &server);
        assert!(out.status.success(), "{out:?}");
        assert_eq!(store.get(&server).unwrap_err(), Error::NotFound);
    }

    #[test]
    fn bad_input_is_refused_in_one_line_and_stores_nothing() {
        let _serial = serial();
        let store = KeyringStore::new();
        let server = key("too-big");
        let error = store
            .store(credentials(&server, "u", &"x".repeat(2561)))
            .unwrap_err();
        assert!(error.to_string().contains("at most 2560"), "{error}");
        assert_eq!(store.get(&server).unwrap_err(), Error::NotFound);
        let error = store
            .store(credentials("reg.test\0evil", "u", "s"))
            .unwrap_err();
        assert_eq!(error.to_string().lines().count(), 1, "{error}");
        assert_eq!(store.get("reg.test").unwrap_err(), Error::NotFound);
    }

    #[test]
    fn wide_strings_round_trip_and_refuse_interior_nul() {
        let text = "https://reg.test/ü";
        let units = wide(text).unwrap();
        assert_eq!(units.last(), Some(&0));
        // SAFETY: `units` is NUL-terminated.
        assert_eq!(unsafe { from_wide(units.as_ptr()) }, text);
        // SAFETY: null is allowed.
        assert_eq!(unsafe { from_wide(ptr::null()) }, "");
        assert!(matches!(
            wide("reg.test\0evil"),
            Err(KeyringError::InvalidServerUrl(_))
        ));
    }
}
