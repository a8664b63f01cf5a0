//! Running an external `docker-credential-<name>` helper's `get`, the way docker's client does, with a
//! timeout so a hung helper (a locked keyring waiting for a prompt) cannot hang the caller.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{ConfigError, RegistryAuth};
use crate::protocol::{IDENTITY_TOKEN_USERNAME, MAX_INPUT_BYTES, NOT_FOUND};
use crate::secret::Secret;

/// How long a helper may take to answer by default.
pub const DEFAULT_HELPER_TIMEOUT: Duration = Duration::from_secs(30);

/// `ETXTBSY`: the executable is open for writing somewhere, typically an fd inherited across a concurrent
/// fork while the file was being written. It clears within milliseconds.
const TEXT_FILE_BUSY: i32 = 26;

/// Finds `docker-credential-<name>` on `path` (a `PATH` value), as `exec.LookPath` does.
pub(crate) fn find_helper(name: &str, path: Option<OsString>) -> Result<PathBuf, ConfigError> {
    let binary = format!("docker-credential-{name}");
    let missing = || ConfigError::HelperNotFound {
        helper: name.to_owned(),
    };
    // A name with a separator would escape PATH and run an arbitrary file named by config.json.
    if name.is_empty() || name.contains('/') || name.contains('\\') {
        return Err(missing());
    }
    let path = path.ok_or_else(missing)?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(&binary))
        .find(|candidate| is_executable(candidate))
        .ok_or_else(missing)
}

#[cfg(unix)]
fn is_executable(path: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(path: &std::path::Path) -> bool {
    path.is_file()
}

/// Runs `<binary> get` with `key` on stdin. `Ok(None)` is the not-found answer (or an empty one): no
/// credentials from this helper. `<token>` usernames become identity tokens.
pub(crate) fn get(
    name: &str,
    binary: &PathBuf,
    key: &str,
    timeout: Duration,
) -> Result<Option<RegistryAuth>, ConfigError> {
    let failed = |detail: String| ConfigError::Helper {
        helper: name.to_owned(),
        registry: key.to_owned(),
        detail,
    };
    let mut child = spawn(binary).map_err(|e| failed(format!("cannot start it: {e}")))?;
    // The key is a few bytes, far below any pipe buffer, so this write cannot block on a helper that
    // does not read.
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(key.as_bytes());
    }
    let Some(stdout) = child.stdout.take() else {
        stop(&mut child);
        return Err(failed("its stdout was not captured".into()));
    };
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let result = stdout
            .take(MAX_INPUT_BYTES as u64)
            .read_to_end(&mut bytes)
            .map(|_| bytes);
        let _ = sender.send(result);
    });
    let deadline = Instant::now() + timeout;
    let timed_out = || ConfigError::HelperTimeout {
        helper: name.to_owned(),
        registry: key.to_owned(),
        seconds: timeout.as_secs_f64(),
    };
    let output = match receiver.recv_timeout(timeout) {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(e)) => {
            stop(&mut child);
            return Err(failed(format!("cannot read its answer: {e}")));
        }
        Err(_) => {
            stop(&mut child);
            return Err(timed_out());
        }
    };
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                stop(&mut child);
                return Err(timed_out());
            }
            Err(e) => {
                stop(&mut child);
                return Err(failed(format!("cannot wait for it: {e}")));
            }
        }
    };
    let text = String::from_utf8_lossy(&output);
    let text = text.trim();
    if !status.success() {
        if text == NOT_FOUND {
            return Ok(None);
        }
        return Err(failed(one_line(text)));
    }
    parse_answer(text).map_err(failed)
}

fn spawn(binary: &PathBuf) -> std::io::Result<Child> {
    let command = || {
        let mut command = Command::new(binary);
        command
            .arg("get")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            // Go's client captures stderr and never shows it; ours keeps the caller's output clean too.
            .stderr(Stdio::null());
        command
    };
    let mut attempts = 0;
    loop {
        match command().spawn() {
            Err(e) if e.raw_os_error() == Some(TEXT_FILE_BUSY) && attempts < 5 => {
                attempts += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

fn stop(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// A helper's error text as one bounded line: it is shown to the user, as docker shows it.
fn one_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or("").trim();
    if line.is_empty() {
        return "it exited with an error and no message".into();
    }
    let mut shown: String = line.chars().take(200).collect();
    if shown.len() < line.len() {
        shown.push('…');
    }
    shown
}

/// Parses `{"ServerURL":…,"Username":…,"Secret":…}` with Go's case-insensitive field names.
fn parse_answer(text: &str) -> Result<Option<RegistryAuth>, String> {
    let malformed = || "its answer is not a credentials JSON object".to_owned();
    let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(text) else {
        return Err(malformed());
    };
    let field = |name: &str| -> Result<String, String> {
        match fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
        {
            None | Some(Value::Null) => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(malformed()),
        }
    };
    let username = field("Username")?;
    let secret = Secret::new(field("Secret")?);
    Ok(
        if secret.is_empty() && (username.is_empty() || username == IDENTITY_TOKEN_USERNAME) {
            None
        } else if username == IDENTITY_TOKEN_USERNAME {
            Some(RegistryAuth::IdentityToken(secret))
        } else {
            Some(RegistryAuth::Basic {
                username,
                password: secret,
            })
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers() {
        assert_eq!(
            parse_answer(r#"{"ServerURL":"h","Username":"\u003ctoken\u003e","Secret":"r"}"#),
            Ok(Some(RegistryAuth::IdentityToken(Secret::new("r".into()))))
        );
        assert_eq!(
            parse_answer(r#"{"serverurl":"h","username":"u","secret":"p"}"#),
            Ok(Some(RegistryAuth::Basic {
                username: "u".into(),
                password: Secret::new("p".into())
            }))
        );
        assert_eq!(
            parse_answer(r#"{"ServerURL":"h","Username":"","Secret":""}"#),
            Ok(None)
        );
        for bad in [
            "",
            "canary",
            r#"["canary"]"#,
            r#"{"Username":1,"Secret":"canary"}"#,
        ] {
            let error = parse_answer(bad).unwrap_err();
            assert!(!error.contains("canary"), "{error}");
        }
    }

    #[test]
    fn error_text_is_one_bounded_line() {
        assert_eq!(one_line("boom\nsecond"), "boom");
        assert_eq!(one_line("  "), "it exited with an error and no message");
        assert_eq!(one_line(&"x".repeat(500)).chars().count(), 201);
    }

    #[test]
    fn helper_names_cannot_escape_path() {
        for name in ["", "../x", "/bin/sh", "a\\b"] {
            assert!(matches!(
                find_helper(name, Some("/bin".into())),
                Err(ConfigError::HelperNotFound { .. })
            ));
        }
        assert!(find_helper("nosuch-regkit", None).is_err());
    }
}
