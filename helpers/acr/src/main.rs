//! `docker-credential-acr`: ACR refresh tokens from Entra ID. See `regkit::acr::helper`.

fn main() -> std::process::ExitCode {
    regkit::protocol::run(
        regkit::acr::helper::BINARY,
        &regkit::cloudauth::CachedHelper::new(regkit::acr::helper::AcrProvider::new(
            regkit::cloudauth::Env::from_process(),
        )),
    )
}
