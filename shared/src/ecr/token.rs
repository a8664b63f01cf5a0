//! Tokens on a cache miss, from a separate small program: `regkit-ecr-token <host>`.
//!
//! The helper itself never links the AWS SDK into its hot path: a process that maps a 8 MB SDK binary pays
//! for it on every start, cache hit or not, so `docker-credential-ecr-login` stays small and runs
//! [`TOKEN_PROGRAM`] (installed beside it) only when the cache cannot answer. The program resolves the same
//! identity from the same environment and config file, asks AWS, and prints one JSON line
//! `{"username":…,"password":…,"expires_at":…}` on stdout (exit 0), or its one-line error (exit 1).

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::host::EcrRegistry;
use super::identity::{Identity, IdentityMap};
use super::{EcrError, Env, Token, aws};
use crate::secret::Secret;

/// The token program's name.
pub const TOKEN_PROGRAM: &str = "regkit-ecr-token";
/// Extra time the helper gives the program beyond its own timeout before killing it.
const GRACE: Duration = Duration::from_secs(2);

/// Where a token comes from when the cache cannot answer.
pub trait TokenSource {
    /// A fresh token for `registry`.
    fn fetch(&self, registry: &EcrRegistry, env: &Env) -> Result<Token, EcrError>;
}

/// The token program, run as a child process.
#[derive(Debug, Clone)]
pub struct TokenProgram {
    program: PathBuf,
}

impl TokenProgram {
    /// [`TOKEN_PROGRAM`] in the directory of the running executable.
    pub fn beside_current_exe() -> TokenProgram {
        let program = std::env::current_exe()
            .map(|exe| exe.with_file_name(TOKEN_PROGRAM))
            .unwrap_or_else(|_| PathBuf::from(TOKEN_PROGRAM));
        TokenProgram { program }
    }

    /// A specific program.
    pub fn at(program: impl Into<PathBuf>) -> TokenProgram {
        TokenProgram {
            program: program.into(),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct TokenLine {
    username: String,
    password: String,
    expires_at: i64,
}

impl TokenSource for TokenProgram {
    fn fetch(&self, registry: &EcrRegistry, env: &Env) -> Result<Token, EcrError> {
        let mut child = Command::new(&self.program)
            .arg(registry.host())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|error| {
                EcrError::Fetch(format!(
                    "cannot run {}: {error}; it is installed beside docker-credential-ecr-login",
                    self.program.display()
                ))
            })?;
        let deadline = Instant::now() + env.timeout() + GRACE;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Ok(None) | Err(_) => {
                    // Best effort: the child is abandoned either way.
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(EcrError::Transport {
                        registry: registry.host().to_owned(),
                        message: format!("{TOKEN_PROGRAM} gave no answer in time"),
                    });
                }
            }
        };
        let mut output = String::new();
        if let Some(mut stdout) = child.stdout.take() {
            // Bounded: one JSON line or one error line.
            let _ = stdout.by_ref().take(1 << 16).read_to_string(&mut output);
        }
        if !status.success() {
            let message = output.lines().next().unwrap_or_default().trim();
            return Err(EcrError::Fetch(if message.is_empty() {
                format!("{TOKEN_PROGRAM} failed ({status}) for {}", registry.host())
            } else {
                message.to_owned()
            }));
        }
        let line: TokenLine = serde_json::from_str(output.trim()).map_err(|_| {
            EcrError::Fetch(format!(
                "{TOKEN_PROGRAM} printed no token for {}",
                registry.host()
            ))
        })?;
        Ok(Token {
            username: line.username,
            password: Secret::new(line.password),
            endpoint: format!("https://{}", registry.host()),
            expires_at: line.expires_at,
        })
    }
}

/// The AWS SDK, in this process.
#[derive(Debug, Clone, Copy, Default)]
pub struct InProcess;

impl TokenSource for InProcess {
    fn fetch(&self, registry: &EcrRegistry, env: &Env) -> Result<Token, EcrError> {
        let map = IdentityMap::load(env)?;
        let identity = Identity::for_host(&map, registry.host(), env);
        aws::block_on(
            registry.host(),
            env.timeout(),
            aws::fetch_token(registry, &identity, env),
        )
    }
}

/// The `main` of [`TOKEN_PROGRAM`]: one argument, the registry host.
pub fn serve(env: &Env) -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.as_slice() {
        [host] => EcrRegistry::parse(host)
            .ok_or_else(|| EcrError::Config(format!("{host} is not an ECR registry host")))
            .and_then(|registry| InProcess.fetch(&registry, env)),
        _ => Err(EcrError::Config(format!(
            "usage: {TOKEN_PROGRAM} <ECR registry host> (run by docker-credential-ecr-login)"
        ))),
    };
    let printed = match result {
        Ok(token) => serde_json::to_string(&TokenLine {
            username: token.username,
            password: token.password.into_inner(),
            expires_at: token.expires_at,
        })
        .map(|line| (line, ExitCode::SUCCESS))
        .unwrap_or_else(|error| {
            (
                format!("cannot encode the token: {error}"),
                ExitCode::FAILURE,
            )
        }),
        Err(error) => (error.to_string(), ExitCode::FAILURE),
    };
    // A closed stdout leaves nobody to tell; the exit code still does.
    let _ = writeln!(std::io::stdout(), "{}", printed.0);
    printed.1
}
