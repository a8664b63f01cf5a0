//! Google Container Registry hosts (served by Artifact Registry since Container Registry's shutdown) and
//! Artifact Registry: the provider behind `docker-credential-gcr`.
//!
//! - [`google`]: OAuth access tokens from Application Default Credentials (service account key, authorized
//!   user, external account / workload identity federation), the metadata server, then `gcloud`;
//! - [`helper`]: the credential helper (`oauth2accesstoken` + the access token, cached until shortly
//!   before it expires).

pub mod google;
pub mod helper;

use crate::cloudauth::key_host;

/// The registry username Google documents for an OAuth access token as the password.
pub const USERNAME: &str = "oauth2accesstoken";

/// The Google registry host a credential-helper key names: `gcr.io`, `<location>.gcr.io`,
/// `<location>-docker.pkg.dev` or `docker.<location>.rep.pkg.dev`, anchored, with a location of lowercase
/// letters, digits and inner dashes; `None` for anything else (look-alikes, ports).
pub fn registry_host(server_url: &str) -> Option<String> {
    let host = key_host(server_url)?;
    let location = |label: &str| {
        !label.is_empty()
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    let matched = host == "gcr.io"
        || host.strip_suffix(".gcr.io").is_some_and(location)
        || host.strip_suffix("-docker.pkg.dev").is_some_and(location)
        || host
            .strip_prefix("docker.")
            .and_then(|rest| rest.strip_suffix(".rep.pkg.dev"))
            .is_some_and(location);
    matched.then_some(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_anchored_google_hosts_match() {
        for key in [
            "gcr.io",
            "https://eu.gcr.io/v2/",
            "asia.gcr.io",
            "marketplace.gcr.io",
            "europe-west1-docker.pkg.dev",
            "us-docker.pkg.dev",
            "docker.us-central1.rep.pkg.dev",
        ] {
            assert!(registry_host(key).is_some(), "{key}");
        }
        for key in [
            "gcr.io.evil.example",
            "evilgcr.io",
            "a.b.gcr.io",
            "gcr.io:443",
            "-docker.pkg.dev",
            "x.europe-docker.pkg.dev",
            "europe-docker.pkg.dev.evil.example",
            "docker.a.b.rep.pkg.dev",
            "docker..rep.pkg.dev",
            "pkg.dev",
            "ghcr.io",
        ] {
            assert_eq!(registry_host(key), None, "{key}");
        }
    }
}
