//! `docker-credential-keyring`: a docker `credsStore` in the OS keyring (Secret Service on Linux, Keychain
//! on macOS, Credential Manager on Windows).

use std::time::Duration;

/// How long one invocation may take. Docker waits on its helper without a limit, so a keyring that never
/// answers (a hung session bus, a prompt nobody sees) must end in an error rather than a hang.
const RUN_BOUND: Duration = Duration::from_secs(60);

fn main() -> std::process::ExitCode {
    std::thread::spawn(|| {
        std::thread::sleep(RUN_BOUND);
        // stdout is held by the protocol run for the whole invocation; stderr is free.
        eprintln!(
            "docker-credential-keyring: the keyring did not answer within {} s; check that it is running and unlocked (Secret Service: gnome-keyring, KWallet, KeePassXC; macOS: the Keychain)",
            RUN_BOUND.as_secs()
        );
        std::process::exit(1);
    });
    regkit::protocol::run(
        "docker-credential-keyring",
        &regkit::keyring::KeyringStore::new(),
    )
}
