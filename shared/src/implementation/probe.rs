//! Detection by probing: Harbor, Nexus and Artifactory run on hosts of any name, so when no host rule
//! matches, their own unauthenticated status endpoints (each spec's [`Probe`]) on the registry host tell
//! them apart from a plain v2 registry.
//!
//! Probes are anonymous (no credential leaves for an endpoint that does not need one), run concurrently,
//! are not retried, and are bounded by a short timeout: a registry that is none of these costs one quick
//! 404 per probe.

use std::time::Duration;

use reqwest::Method;

use super::{DetectedBy, Detection, SPECS};
use crate::registry::Client;
use crate::registry::api::{ApiClient, ApiResponse};

/// Bound on each probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// A status endpoint that identifies a product on a host of any name.
pub(super) struct Probe {
    /// The path, which answers without credentials.
    pub path: &'static str,
    /// Whether an answer is this product's.
    pub recognise: fn(&ApiResponse) -> bool,
    /// When several products' probes recognise their answers, the lowest precedence wins.
    pub precedence: u8,
}

/// (implementation, its probe), in precedence order.
pub(super) fn probes() -> Vec<(&'static str, &'static Probe)> {
    let mut probes: Vec<_> = SPECS
        .iter()
        .filter_map(|spec| Some((spec.name, spec.probe.as_ref()?)))
        .collect();
    probes.sort_by_key(|(_, probe)| probe.precedence);
    probes
}

/// The self-hosted product answering on `registry`'s host, if any. The probes travel over the registry
/// client's connections, which the requests after detection then reuse.
pub async fn probe(registry: &Client) -> Option<Detection> {
    let client = ApiClient::sharing(registry, registry.base_url().as_str(), "registry")
        .ok()?
        .without_retries();
    let probes = probes();
    let answers = futures_util::future::join_all(probes.iter().map(|(_, probe)| {
        let client = &client;
        async move {
            client
                .send_with(Method::GET, probe.path, "probe", |request| {
                    request.timeout(PROBE_TIMEOUT)
                })
                .await
                .ok()
        }
    }))
    .await;
    probes
        .into_iter()
        .zip(answers)
        .find_map(|((name, probe), answer)| {
            answer.filter(probe.recognise).map(|_| Detection {
                name,
                by: DetectedBy::Probed(probe.path),
            })
        })
}
