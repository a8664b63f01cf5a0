//! `make demo`: regkit's main job on a throwaway registry on 127.0.0.1.
//!
//! Starts Docker's distribution registry with htpasswd auth, logs in through `docker-credential-env` (the
//! credentials come from the environment, as in CI), pushes an image whose digest carries two tags plus two
//! other images, and deletes tags with `regkit`, showing that a sibling tag on the same digest survives.

use std::process::Command;

use regkit_e2e::registry::Registry;
use regkit_e2e::{bins, images};

const USER: &str = "demo";
const PASSWORD: &str = "demo-password";

fn main() {
    let registry = Registry::start_htpasswd(USER, PASSWORD);
    let auth = images::Auth::basic(USER, PASSWORD);
    let url = registry.url();
    let repo = "demo/app";
    let shared = images::push(&url, repo, &["v2", "latest"], &auth);
    images::push_distinct(&url, repo, &["v1", "v3"], &auth);

    // A private docker config that routes this registry to the env helper.
    let config = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        config.path().join("config.json"),
        format!("{{\"credHelpers\":{{\"{}\":\"env\"}}}}", registry.host()),
    )
    .expect("write docker config");
    let variable = format!("DOCKER_{}", registry.host().replace(['.', ':', '-'], "_"));
    let path = std::env::join_paths(std::iter::once(bins::target_dir()).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .expect("PATH");
    let image = format!("{}/{repo}", registry.host());
    let regkit = |args: &[&str]| {
        println!("\n$ regkit {}", args.join(" "));
        let status = Command::new(bins::ours("regkit"))
            .args(args)
            .env("PATH", &path)
            .env("DOCKER_CONFIG", config.path())
            .env(format!("{variable}_USR"), USER)
            .env(format!("{variable}_PSW"), PASSWORD)
            .status()
            .expect("run regkit");
        println!("(exit code {})", status.code().unwrap_or(-1));
    };

    println!(
        "A registry is running at {url} (htpasswd auth). Credentials reach regkit through\n\
         credHelpers -> docker-credential-env -> {variable}_USR/_PSW.\n\
         {repo}:v2 and {repo}:latest share the digest {shared}."
    );
    regkit(&["detect", &image]);
    regkit(&["tags", &image, "--digests"]);
    regkit(&[
        "delete",
        "--dry-run",
        &format!("{image}:v2"),
        &format!("{image}:v1"),
    ]);
    regkit(&["delete", &format!("{image}:v2"), &format!("{image}:v1")]);
    regkit(&["tags", &image, "--digests"]);
    println!(
        "\nv2 and v1 are gone; latest still points at {shared}. Deleting again reports `absent`:"
    );
    regkit(&["delete", &format!("{image}:v2")]);
}
