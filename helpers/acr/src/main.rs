//! `docker-credential-acr`: ACR refresh tokens from Entra ID (`kubelet` as the argument: a kubelet
//! credential provider). See `regkit::acr::helper` and `regkit::kubelet`.

fn main() -> std::process::ExitCode {
    regkit::kubelet::dispatch(
        regkit::acr::helper::BINARY,
        &regkit::cloudauth::CachedHelper::new(regkit::acr::helper::AcrProvider::new(
            regkit::cloudauth::Env::from_process(),
        )),
    )
}
