//! `docker-credential-ecr-login`: registry tokens for AWS ECR and ECR Public (`kubelet` as the argument:
//! a kubelet credential provider). See `regkit::ecr::helper` and `regkit::kubelet`.

fn main() -> std::process::ExitCode {
    regkit::kubelet::dispatch(
        regkit::ecr::helper::BINARY,
        &regkit::ecr::helper::EcrHelper::new(regkit::ecr::Env::from_process()),
    )
}
