//! The process environment as the cloud credential helpers (ECR, ACR, Google) see it: empty values are
//! unset, with a test clock and a bound on token requests.
//!
//! Empty counts as unset because configurations that blank a variable mean "not set", and the AWS SDK
//! panics on `AWS_ENDPOINT_URL_ECR=""` and builds `Region("")` from `AWS_REGION=""`. Only std is used here:
//! the ECR helper's cache-hit path must not link an async runtime or an HTTP client.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::marker::PhantomData;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The variables that set one helper family's test clock and request bound.
pub trait Knobs: Debug + Clone + Default {
    /// Test hook: the current time as Unix seconds, for the token cache only. Not for production use.
    const CLOCK_VAR: &'static str;
    /// Bound, in seconds, on one whole token request.
    const TIMEOUT_VAR: &'static str;
    /// The bound when [`Knobs::TIMEOUT_VAR`] is unset or invalid.
    const DEFAULT_TIMEOUT: Duration;
}

/// The process environment (or a fixed set of variables, for tests) read with empty values as unset.
#[derive(Debug, Clone, Default)]
pub struct Env<K: Knobs> {
    /// `None` reads the process environment on demand.
    vars: Option<BTreeMap<String, String>>,
    knobs: PhantomData<K>,
}

impl<K: Knobs> Env<K> {
    /// Reads the process environment.
    pub fn from_process() -> Self {
        Env {
            vars: None,
            knobs: PhantomData,
        }
    }

    /// Reads only the given variables (tests).
    pub fn from_vars<N: Into<String>, V: Into<String>>(
        vars: impl IntoIterator<Item = (N, V)>,
    ) -> Self {
        Env {
            vars: Some(
                vars.into_iter()
                    .map(|(k, v)| (k.into(), v.into()))
                    .collect(),
            ),
            knobs: PhantomData,
        }
    }

    /// The value of `name`, `None` when unset, empty, blank or not UTF-8.
    pub fn var(&self, name: &str) -> Option<String> {
        let value = match &self.vars {
            Some(vars) => vars.get(name).cloned(),
            None => std::env::var_os(name)?.into_string().ok(),
        }?;
        (!value.trim().is_empty()).then_some(value)
    }

    /// Now, in Unix seconds: [`Knobs::CLOCK_VAR`] when set (tests), else the system clock.
    pub fn now(&self) -> i64 {
        if let Some(now) = self.var(K::CLOCK_VAR).and_then(|v| v.trim().parse().ok()) {
            return now;
        }
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| {
                i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
            })
    }

    /// The bound on one token request: [`Knobs::TIMEOUT_VAR`] seconds, else [`Knobs::DEFAULT_TIMEOUT`].
    pub fn timeout(&self) -> Duration {
        self.var(K::TIMEOUT_VAR)
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|secs| secs.is_finite() && *secs > 0.0)
            .map_or(K::DEFAULT_TIMEOUT, Duration::from_secs_f64)
    }
}
