//! `docker-credential-gcr`: Google access tokens for GCR and Artifact Registry. See `regkit::gcr::helper`.

fn main() -> std::process::ExitCode {
    regkit::protocol::run(
        regkit::gcr::helper::BINARY,
        &regkit::cloudauth::CachedHelper::new(regkit::gcr::helper::GcrProvider::new(
            regkit::cloudauth::Env::from_process(),
        )),
    )
}
