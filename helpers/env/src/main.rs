//! `docker-credential-env`: credentials from environment variables, for CI. See `regkit::envhelper`.

fn main() -> std::process::ExitCode {
    regkit::protocol::run(
        "docker-credential-env",
        &regkit::envhelper::EnvHelper::from_process(),
    )
}
