//! `regkit-ecr-token <host>`: one ECR registry token from the AWS SDK, for `docker-credential-ecr-login`'s
//! cache misses. See `regkit::ecr::token`.

fn main() -> std::process::ExitCode {
    regkit::ecr::token::serve(&regkit::ecr::Env::from_process())
}
