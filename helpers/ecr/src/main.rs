//! `docker-credential-ecr-login`: registry tokens for AWS ECR and ECR Public. See `regkit::ecr::helper`.

fn main() -> std::process::ExitCode {
    regkit::protocol::run(
        regkit::ecr::helper::BINARY,
        &regkit::ecr::helper::EcrHelper::new(regkit::ecr::Env::from_process()),
    )
}
