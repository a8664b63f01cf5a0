//! Where the binaries under test and the peer tools are.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use tempfile::TempDir;

/// The directory cargo built the workspace binaries into: `target/<profile>` (test binaries live one level
/// down, in `deps`; the harness's own programs, `regkit-bench` and `regkit-demo`, beside the others).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the running program knows its own path");
    let dir = exe
        .parent()
        .expect("a program lives in a directory")
        .to_path_buf();
    if dir.file_name().is_some_and(|name| name == "deps") {
        dir.parent().expect("deps has a parent").to_path_buf()
    } else {
        dir
    }
}

/// The path of one of our binaries. Fails with a clear message when it was not built: `make test` builds
/// every binary before running the suite.
pub fn ours(name: &str) -> PathBuf {
    let path = target_dir().join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --workspace` (make test does) before the end-to-end suite",
        path.display()
    );
    path
}

/// The path of a required third-party tool on PATH; fails naming the Debian package that provides it.
pub fn tool(name: &str, package: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "{name} is required by the end-to-end suite: apt-get install {package} (make test does)"
        )
    })
}

/// A docker config directory for one test: an empty `config.json`, removed with the value.
pub fn empty_docker_config() -> TempDir {
    let dir = tempfile::tempdir().expect("temporary docker config");
    std::fs::write(dir.path().join("config.json"), "{}").expect("write docker config");
    dir
}

/// `regkit ARGS` as a user runs it with the docker config `config`: a clean environment (`PATH`, and
/// `HOME` = `config`), `--docker-config config`, and `stdin` written to a pipe (so no terminal).
pub fn regkit_piped(config: &Path, args: &[&str], stdin: &str) -> Output {
    regkit_with(config, args, stdin, &[])
}

/// [`regkit_piped`] with the variables `env` set too.
pub fn regkit_with(config: &Path, args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(ours("regkit"));
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", config)
        .envs(env.iter().copied())
        .arg("--docker-config")
        .arg(config)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("run regkit");
    // regkit may exit before reading it.
    let _ = child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes());
    child.wait_with_output().expect("regkit's output")
}
