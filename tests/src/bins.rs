//! Where the binaries under test and the peer tools are.

use std::path::PathBuf;

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
