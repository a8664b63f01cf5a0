//! Detection by probing: Harbor, Nexus and Artifactory run on hosts of any name, so when no host rule
//! matches, their own unauthenticated status endpoints on the registry host tell them apart from a plain v2
//! registry.
//!
//! - Harbor: `GET /api/v2.0/systeminfo` (Harbor's swagger, `getSystemInfo`) answers a `GeneralInfo` object;
//! - Nexus 3: `GET /service/rest/v1/status` (Nexus REST API, "Status": 200 when the server can serve reads);
//! - Artifactory: `GET /artifactory/api/system/ping` (JFrog REST API, "System Health Ping": `OK`).
//!
//! Probes are anonymous (no credential leaves for an endpoint that does not need one), run concurrently,
//! are not retried, and are bounded by a short timeout: a registry that is none of these costs three quick
//! 404s.

use std::time::Duration;

use reqwest::Method;

use super::{DetectedBy, Detection};
use crate::registry::Client;
use crate::registry::api::{ApiClient, ApiResponse};

/// Bound on each probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

type Recognise = fn(&ApiResponse) -> bool;

/// (implementation, path, how its answer is recognised), in priority order.
const PROBES: [(&str, &str, Recognise); 3] = [
    ("harbor", "/api/v2.0/systeminfo", |response| {
        response.is_success()
            && serde_json::from_slice::<serde_json::Value>(&response.body).is_ok_and(|info| {
                info.get("harbor_version").is_some() || info.get("auth_mode").is_some()
            })
    }),
    ("nexus", "/service/rest/v1/status", |response| {
        response.status == 200
    }),
    ("artifactory", "/artifactory/api/system/ping", |response| {
        response.is_success() && String::from_utf8_lossy(&response.body).trim() == "OK"
    }),
];

/// The self-hosted product answering on `registry`'s host, if any. The probes travel over the registry
/// client's connections, which the requests after detection then reuse.
pub async fn probe(registry: &Client) -> Option<Detection> {
    let client = ApiClient::sharing(registry, registry.base_url().as_str(), "registry")
        .ok()?
        .without_retries();
    let answers = futures_util::future::join_all(PROBES.iter().map(|(_, path, _)| {
        let client = &client;
        async move {
            client
                .send_with(Method::GET, path, "probe", |request| {
                    request.timeout(PROBE_TIMEOUT)
                })
                .await
                .ok()
        }
    }))
    .await;
    PROBES
        .iter()
        .zip(answers)
        .find_map(|((name, path, recognise), answer)| {
            answer.filter(recognise).map(|_| Detection {
                name,
                by: DetectedBy::Probed(path),
            })
        })
}
