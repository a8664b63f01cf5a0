//! `docker-credential-keyring`: a docker `credsStore` in the OS keyring (Secret Service on Linux).

fn main() -> std::process::ExitCode {
    regkit::protocol::run(
        "docker-credential-keyring",
        &regkit::keyring::KeyringStore::new(),
    )
}
