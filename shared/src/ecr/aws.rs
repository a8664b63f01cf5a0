//! The AWS SDK side: configuration for an identity, clients with endpoint overrides, and registry tokens.
//!
//! - One HTTP client on rustls with ring (no aws-lc, no second TLS stack).
//! - Credentials: the SDK's default chain (environment, profiles, SSO, `credential_process`, web identity,
//!   ECS/EKS, IMDSv2) with IMDS bounded to one short attempt, since a laptop or CI runner without IMDS must
//!   not wait; optionally a role assumed on top ([`Identity::role_arn`]).
//! - The region is always explicit (from the registry host), so the SDK never probes IMDS for it.
//! - `AWS_ENDPOINT_URL_<SERVICE>` / `AWS_ENDPOINT_URL` are honoured (tests, VPC endpoints); an empty value is
//!   unset (the SDK would panic on it).

use std::error::Error as StdError;
use std::time::Duration;

use aws_config::default_provider::credentials::DefaultCredentialsChain;
use aws_config::imds;
use aws_config::provider_config::ProviderConfig;
use aws_config::sts::AssumeRoleProvider;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_ecr::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_http_client::tls;
use aws_types::service_config::{LoadServiceConfig, ServiceConfigKey};
use base64::Engine as _;

use super::host::EcrRegistry;
use super::identity::Identity;
use super::{EcrError, Env, Token};
use crate::secret::Secret;

/// The session name of roles assumed for the identity map (visible in CloudTrail).
const SESSION_NAME: &str = "regkit-ecr";
/// IMDS bounds: off EC2 the address is unroutable or black-holed; one short try is enough on EC2.
const IMDS_TIMEOUT: Duration = Duration::from_secs(1);

/// Runs `future` on a fresh current-thread runtime, bounded by `timeout`. Only the slow path (a token
/// request) comes here; a cache hit never builds a runtime.
pub fn block_on<T>(
    registry: &str,
    timeout: Duration,
    future: impl Future<Output = Result<T, EcrError>>,
) -> Result<T, EcrError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| EcrError::Transport {
            registry: registry.to_owned(),
            message: format!("cannot start the async runtime: {error}"),
        })?;
    runtime
        .block_on(async { tokio::time::timeout(timeout, future).await })
        .unwrap_or_else(|_| {
            Err(EcrError::Transport {
                registry: registry.to_owned(),
                message: format!(
                    "no answer within {:.0} s (credentials or ECR API); set {} to wait longer",
                    timeout.as_secs_f64(),
                    super::TIMEOUT_VAR
                ),
            })
        })
}

/// The SDK configuration for calls in `region` made by `identity`.
pub async fn sdk_config(region: &str, identity: &Identity) -> SdkConfig {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let credentials_region =
        Region::new(identity.region.clone().unwrap_or_else(|| region.to_owned()));
    let provider_config = ProviderConfig::default()
        .with_http_client(http.clone())
        .with_region(Some(credentials_region.clone()));
    let imds = imds::Client::builder()
        .configure(&provider_config)
        .connect_timeout(IMDS_TIMEOUT)
        .read_timeout(IMDS_TIMEOUT)
        .max_attempts(1)
        .build();
    let mut chain = DefaultCredentialsChain::builder()
        .configure(provider_config)
        .imds_client(imds)
        .region(credentials_region.clone());
    if let Some(profile) = &identity.profile {
        chain = chain.profile_name(profile);
    }
    let chain = chain.build().await;
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(region.to_owned()))
        .http_client(http)
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_attempt_timeout(Duration::from_secs(20))
                .build(),
        )
        .credentials_provider(chain);
    if let Some(profile) = &identity.profile {
        loader = loader.profile_name(profile);
    }
    let loaded = loader.load().await;
    let base = loaded
        .clone()
        .into_builder()
        .service_config(NonEmptyServiceConfig(loaded))
        .build();
    let (Some(role), Some(source)) = (&identity.role_arn, base.credentials_provider()) else {
        return base;
    };
    let assumed = AssumeRoleProvider::builder(role)
        .session_name(SESSION_NAME)
        .configure(&base)
        .region(credentials_region)
        .build_from_provider(source)
        .await;
    base.into_builder()
        .credentials_provider(SharedCredentialsProvider::new(assumed))
        .build()
}

/// Service settings (endpoint URLs…) from the environment and profiles, with empty values as unset.
#[derive(Debug)]
struct NonEmptyServiceConfig(SdkConfig);

impl LoadServiceConfig for NonEmptyServiceConfig {
    fn load_config(&self, key: ServiceConfigKey<'_>) -> Option<String> {
        self.0
            .service_config()?
            .load_config(key)
            .filter(|value| !value.trim().is_empty())
    }
}

/// An ECR client for a private registry. FIPS and dual-stack hosts select the matching API endpoints,
/// unless an endpoint override is configured (the SDK refuses both together).
pub fn ecr_client(config: &SdkConfig, registry: &EcrRegistry, env: &Env) -> aws_sdk_ecr::Client {
    aws_sdk_ecr::Client::from_conf(ecr_config(config, registry, env).build())
}

/// The ECR client for cleanup calls: the SDK's `adaptive` retry mode, which also rate-limits the client
/// when ECR throttles (`ThrottlingException`), with every call bounded in time.
pub fn ecr_cleanup_client(
    config: &SdkConfig,
    registry: &EcrRegistry,
    env: &Env,
) -> aws_sdk_ecr::Client {
    let builder = ecr_config(config, registry, env)
        .retry_config(
            aws_config::retry::RetryConfig::adaptive()
                .with_max_attempts(8)
                .with_max_backoff(Duration::from_secs(20)),
        )
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_attempt_timeout(Duration::from_secs(20))
                .operation_timeout(CLEANUP_CALL_TIMEOUT)
                .build(),
        );
    aws_sdk_ecr::Client::from_conf(builder.build())
}

/// Bound on one cleanup call, its retries and adaptive waits included.
const CLEANUP_CALL_TIMEOUT: Duration = Duration::from_secs(180);

fn ecr_config(
    config: &SdkConfig,
    registry: &EcrRegistry,
    env: &Env,
) -> aws_sdk_ecr::config::Builder {
    let builder = aws_sdk_ecr::config::Builder::from(config);
    match registry {
        EcrRegistry::Private {
            fips, dual_stack, ..
        } if !overridden(env, "AWS_ENDPOINT_URL_ECR") => {
            builder.use_fips(*fips).use_dual_stack(*dual_stack)
        }
        _ => builder,
    }
}

fn overridden(env: &Env, service_var: &str) -> bool {
    !env.flag("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS")
        && (env.var(service_var).is_some() || env.var("AWS_ENDPOINT_URL").is_some())
}

/// Requests a registry token for `registry` as `identity`.
pub async fn fetch_token(
    registry: &EcrRegistry,
    identity: &Identity,
    env: &Env,
) -> Result<Token, EcrError> {
    let config = sdk_config(registry.region(), identity).await;
    let host = registry.host();
    // The token is valid for every registry the principal may access (registryIds is deprecated for that
    // reason), so the endpoint recorded is the host that was asked for, not the caller's default registry.
    let (encoded, expires_at) = match registry {
        EcrRegistry::Private { .. } => {
            let output = ecr_client(&config, registry, env)
                .get_authorization_token()
                .send()
                .await
                .map_err(|error| classify(error, host, "GetAuthorizationToken"))?;
            let data = output
                .authorization_data()
                .first()
                .ok_or_else(|| malformed(host, "GetAuthorizationToken", "no authorizationData"))?;
            (
                data.authorization_token().map(str::to_owned),
                data.expires_at().map(|t| t.secs()),
            )
        }
        EcrRegistry::Public { .. } => {
            let output = aws_sdk_ecrpublic::Client::new(&config)
                .get_authorization_token()
                .send()
                .await
                .map_err(|error| classify(error, host, "ecr-public GetAuthorizationToken"))?;
            let data = output.authorization_data().ok_or_else(|| {
                malformed(
                    host,
                    "ecr-public GetAuthorizationToken",
                    "no authorizationData",
                )
            })?;
            (
                data.authorization_token().map(str::to_owned),
                data.expires_at().map(|t| t.secs()),
            )
        }
    };
    let operation = "GetAuthorizationToken";
    let encoded = encoded.ok_or_else(|| malformed(host, operation, "no authorizationToken"))?;
    let expires_at = expires_at.ok_or_else(|| malformed(host, operation, "no expiresAt"))?;
    let (username, password) = decode_token(&encoded).ok_or_else(|| {
        malformed(
            host,
            operation,
            "authorizationToken is not base64 of user:password",
        )
    })?;
    Ok(Token {
        username,
        password,
        endpoint: format!("https://{host}"),
        expires_at,
    })
}

/// `base64("user:password")` → (user, password).
fn decode_token(encoded: &str) -> Option<(String, Secret<String>)> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (user, password) = text.split_once(':')?;
    (!user.is_empty()).then(|| (user.to_owned(), Secret::new(password.to_owned())))
}

fn malformed(registry: &str, operation: &str, what: &str) -> EcrError {
    EcrError::Api {
        registry: registry.to_owned(),
        operation: operation.to_owned(),
        status: None,
        message: format!("malformed answer: {what}"),
    }
}

/// Service error codes that mean the credentials themselves are wrong or expired.
const CREDENTIAL_CODES: [&str; 6] = [
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "ExpiredTokenException",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "MissingAuthenticationTokenException",
];

/// One line for an SDK error, without the raw response (its headers would end up in logs).
pub fn classify<E>(error: SdkError<E>, registry: &str, operation: &str) -> EcrError
where
    E: ProvideErrorMetadata + StdError + 'static,
{
    let registry = registry.to_owned();
    if let SdkError::ServiceError(service) = &error {
        let code = service.err().code().unwrap_or("unknown error").to_owned();
        let message = service.err().message().unwrap_or_default().to_owned();
        let text = if message.is_empty() {
            code.clone()
        } else {
            format!("{code}: {message}")
        };
        return match code.as_str() {
            "RepositoryNotFoundException" => EcrError::RepositoryNotFound {
                registry,
                repository: message,
            },
            "AccessDeniedException" | "AccessDenied" => EcrError::Denied {
                registry,
                operation: operation.to_owned(),
                message: text,
            },
            _ if CREDENTIAL_CODES.contains(&code.as_str()) => EcrError::Credentials {
                registry,
                message: text,
            },
            _ => EcrError::Api {
                registry,
                operation: operation.to_owned(),
                status: Some(service.raw().status().as_u16()),
                message: text,
            },
        };
    }
    let message = chain(&error);
    if has_source::<CredentialsError>(&error) {
        return EcrError::Credentials {
            registry,
            message: format!(
                "{message}; configure credentials (AWS_PROFILE, ~/.aws/config, environment) or an identity in regkit's config file"
            ),
        };
    }
    match error {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => {
            EcrError::Transport { registry, message }
        }
        _ => EcrError::Api {
            registry,
            operation: operation.to_owned(),
            status: None,
            message,
        },
    }
}

/// The error and its causes on one line, repeated texts dropped.
fn chain(error: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current = Some(error);
    while let Some(error) = current {
        let text = error.to_string();
        if !text.is_empty() && !parts.iter().any(|part| part.contains(&text)) {
            parts.push(text);
        }
        current = error.source();
    }
    parts.join(": ").replace('\n', " ")
}

fn has_source<T: StdError + 'static>(error: &(dyn StdError + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        if error.is::<T>() {
            return true;
        }
        current = error.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_decode_to_user_and_password() {
        let (user, password) = decode_token("QVdTOjEyMzQ1Njc4OTAxMi1hdXRoLXRva2Vu").unwrap();
        assert_eq!(user, "AWS");
        assert_eq!(password.expose(), "123456789012-auth-token");
        let (_, with_colon) =
            decode_token(&base64::engine::general_purpose::STANDARD.encode("AWS:a:b")).unwrap();
        assert_eq!(with_colon.expose(), "a:b");
        assert_eq!(decode_token("not base64!"), None);
        assert_eq!(
            decode_token(&base64::engine::general_purpose::STANDARD.encode("nocolon")),
            None
        );
        assert_eq!(
            decode_token(&base64::engine::general_purpose::STANDARD.encode(":pw")),
            None
        );
    }

    #[test]
    fn overrides_respect_the_ignore_switch() {
        let env = Env::from_vars([("AWS_ENDPOINT_URL_ECR", "http://127.0.0.1:1")]);
        assert!(overridden(&env, "AWS_ENDPOINT_URL_ECR"));
        let env = Env::from_vars([("AWS_ENDPOINT_URL_ECR", "")]);
        assert!(!overridden(&env, "AWS_ENDPOINT_URL_ECR"));
        let env = Env::from_vars([
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:1"),
            ("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true"),
        ]);
        assert!(!overridden(&env, "AWS_ENDPOINT_URL_ECR"));
    }
}
