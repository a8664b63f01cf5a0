//! Where the binaries under test and the peer tools are.

use std::path::PathBuf;

/// The directory cargo built the workspace binaries into (`target/debug` for `cargo test`).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary knows its own path");
    // target/debug/deps/<test> -> target/debug
    exe.parent()
        .and_then(|deps| deps.parent())
        .expect("test binaries live in target/<profile>/deps")
        .to_path_buf()
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
