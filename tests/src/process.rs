//! Running one of our binaries the way a credential-helper caller does: a payload on stdin, stdout and
//! stderr captured, and a canary secret that must never reach stderr.

use std::io::Write;
use std::process::{Command, Stdio};

/// A finished process.
#[derive(Debug)]
pub struct Run {
    /// The exit code (-1 when killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Runs `command` with `stdin` as its input and asserts that `canary` (the prefix of every secret the test
/// uses) never reached stderr.
pub fn run_with_stdin(command: &mut Command, stdin: &str, canary: &str) -> Run {
    let run = run_piped(command, stdin);
    assert!(
        !run.stderr.contains(canary),
        "a secret reached stderr: {}",
        run.stderr
    );
    run
}

/// Runs `command` with `stdin` as its input, stdout and stderr captured.
pub fn run_piped(command: &mut Command, stdin: &str) -> Run {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // A helper may exit without reading stdin (list, usage errors): a closed pipe is expected then.
    let _ = child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes());
    let output = child.wait_with_output().expect("wait");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}
