//! `docker-credential-gcr`: Google access tokens for GCR and Artifact Registry (`kubelet` as the argument:
//! a kubelet credential provider). See `regkit::gcr::helper` and `regkit::kubelet`.

fn main() -> std::process::ExitCode {
    regkit::kubelet::dispatch(
        regkit::gcr::helper::BINARY,
        &regkit::cloudauth::CachedHelper::new(regkit::gcr::helper::GcrProvider::new(
            regkit::cloudauth::Env::from_process(),
        )),
    )
}
