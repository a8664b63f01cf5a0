//! Which registry keys are ECR, and where their tokens come from.
//!
//! Private registries follow amazon-ecr-credential-helper's anchored pattern
//! `^(\d{12})\.dkr[.-]ecr(-fips)?\.([a-zA-Z0-9][a-zA-Z0-9-_]*)\.(<partition suffix>)$`, which covers FIPS
//! (`dkr.ecr-fips`), China (`.amazonaws.com.cn`), dual-stack (`dkr-ecr.<region>.on.aws`), EUSC
//! (`.amazonaws.eu`) and the ISO partitions. ECR Public is `public.ecr.aws` and its dual-stack name
//! `ecr-public.aws.com`; its tokens always come from `ecr-public` in us-east-1.
//!
//! Parsing is pure string work: a key that is not ECR is answered without reading any file or network.

use std::fmt;

/// The partition suffixes a private ECR host may end with, after the region label.
const PRIVATE_SUFFIXES: [&str; 9] = [
    "amazonaws.com",
    "amazonaws.com.cn",
    "amazonaws.eu",
    "on.aws",
    "on.amazonwebservices.com.cn",
    "sc2s.sgov.gov",
    "c2s.ic.gov",
    "cloud.adc-e.uk",
    "csp.hci.ic.gov",
];

/// The ECR Public hosts (the second is the dual-stack name).
const PUBLIC_HOSTS: [&str; 2] = ["public.ecr.aws", "ecr-public.aws.com"];

/// The only region ECR Public issues tokens in.
pub const PUBLIC_REGION: &str = "us-east-1";

/// An ECR registry named by a credential-helper key or an image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EcrRegistry {
    /// A private registry: `<account>.dkr.ecr.<region>.<suffix>`.
    Private {
        /// The host, lower-cased, without scheme, port or path.
        host: String,
        /// The 12-digit account (registry) id.
        account: String,
        /// The region label of the host.
        region: String,
        /// The host is a FIPS endpoint (`dkr.ecr-fips`).
        fips: bool,
        /// The host is a dual-stack endpoint (`dkr-ecr.<region>.on.aws`).
        dual_stack: bool,
    },
    /// ECR Public (`public.ecr.aws`, `ecr-public.aws.com`).
    Public {
        /// The host, lower-cased.
        host: String,
    },
}

impl EcrRegistry {
    /// Parses a helper key (`host`, `https://host`, `host:port/path`…). `None` for anything not ECR.
    pub fn parse(key: &str) -> Option<EcrRegistry> {
        let host = bare_host(key)?;
        if PUBLIC_HOSTS.contains(&host.as_str()) {
            return Some(EcrRegistry::Public { host });
        }
        parse_private(host)
    }

    /// The host, lower-cased, without scheme, port or path.
    pub fn host(&self) -> &str {
        match self {
            EcrRegistry::Private { host, .. } | EcrRegistry::Public { host } => host,
        }
    }

    /// The region of the token (and API) calls.
    pub fn region(&self) -> &str {
        match self {
            EcrRegistry::Private { region, .. } => region,
            EcrRegistry::Public { .. } => PUBLIC_REGION,
        }
    }

    /// The service that issues its tokens: `ecr` or `ecr-public`.
    pub fn service(&self) -> &'static str {
        match self {
            EcrRegistry::Private { .. } => "ecr",
            EcrRegistry::Public { .. } => "ecr-public",
        }
    }
}

impl fmt::Display for EcrRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.host())
    }
}

/// The host of a key: scheme, path and port dropped, lower-cased. `None` when nothing is left.
fn bare_host(key: &str) -> Option<String> {
    let key = key.trim();
    let rest = key.split_once("://").map_or(key, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    // Credentials in the authority (`user@host`) are not a host; drop them like a URL parser would.
    let authority = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

fn parse_private(host: String) -> Option<EcrRegistry> {
    let (account, rest) = host.split_once('.')?;
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (dual_stack, fips, rest) = if let Some(rest) = rest.strip_prefix("dkr.ecr") {
        strip_fips(rest, false)?
    } else {
        strip_fips(rest.strip_prefix("dkr-ecr")?, true)?
    };
    let (region, suffix) = rest.split_once('.')?;
    let mut bytes = region.bytes();
    let region_ok = bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !region_ok || !PRIVATE_SUFFIXES.contains(&suffix) {
        return None;
    }
    Some(EcrRegistry::Private {
        account: account.to_owned(),
        region: region.to_owned(),
        fips,
        dual_stack: dual_stack || suffix.starts_with("on."),
        host,
    })
}

/// After `dkr.ecr` / `dkr-ecr`: an optional `-fips`, then the dot before the region.
fn strip_fips(rest: &str, dual_stack: bool) -> Option<(bool, bool, &str)> {
    match rest.strip_prefix("-fips") {
        Some(rest) => Some((dual_stack, true, rest.strip_prefix('.')?)),
        None => Some((dual_stack, false, rest.strip_prefix('.')?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn private(key: &str) -> (String, String, bool) {
        match EcrRegistry::parse(key) {
            Some(EcrRegistry::Private {
                account,
                region,
                fips,
                ..
            }) => (account, region, fips),
            other => panic!("{key}: {other:?}"),
        }
    }

    #[test]
    fn private_hosts_of_every_partition() {
        for (key, region, fips) in [
            (
                "123456789012.dkr.ecr.us-east-1.amazonaws.com",
                "us-east-1",
                false,
            ),
            (
                "123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com",
                "us-gov-west-1",
                true,
            ),
            (
                "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn",
                "cn-north-1",
                false,
            ),
            ("123456789012.dkr-ecr.eu-west-1.on.aws", "eu-west-1", false),
            (
                "123456789012.dkr-ecr-fips.us-east-1.on.aws",
                "us-east-1",
                true,
            ),
            (
                "123456789012.dkr-ecr.cn-north-1.on.amazonwebservices.com.cn",
                "cn-north-1",
                false,
            ),
            (
                "123456789012.dkr.ecr.eusc-de-east-1.amazonaws.eu",
                "eusc-de-east-1",
                false,
            ),
            (
                "123456789012.dkr.ecr.us-iso-east-1.c2s.ic.gov",
                "us-iso-east-1",
                false,
            ),
            (
                "123456789012.dkr.ecr.us-isob-east-1.sc2s.sgov.gov",
                "us-isob-east-1",
                false,
            ),
            (
                "123456789012.dkr.ecr.eu-isoe-west-1.cloud.adc-e.uk",
                "eu-isoe-west-1",
                false,
            ),
            (
                "123456789012.dkr.ecr.us-isof-south-1.csp.hci.ic.gov",
                "us-isof-south-1",
                false,
            ),
        ] {
            assert_eq!(
                private(key),
                ("123456789012".into(), region.into(), fips),
                "{key}"
            );
        }
    }

    #[test]
    fn keys_may_carry_scheme_port_path_and_case() {
        for key in [
            "https://123456789012.dkr.ecr.us-east-1.amazonaws.com",
            "https://123456789012.dkr.ecr.us-east-1.amazonaws.com/",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com:443",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/team/app:latest",
            "http://123456789012.DKR.ECR.US-EAST-1.AMAZONAWS.COM:443/v2/",
            "  123456789012.dkr.ecr.us-east-1.amazonaws.com.  ",
        ] {
            let registry = EcrRegistry::parse(key).unwrap_or_else(|| panic!("{key}"));
            assert_eq!(
                registry.host(),
                "123456789012.dkr.ecr.us-east-1.amazonaws.com"
            );
            assert_eq!(registry.region(), "us-east-1");
            assert_eq!(registry.service(), "ecr");
        }
    }

    #[test]
    fn public_hosts_use_us_east_1() {
        for key in [
            "public.ecr.aws",
            "https://public.ecr.aws/v2/",
            "ecr-public.aws.com:443",
        ] {
            let registry = EcrRegistry::parse(key).unwrap_or_else(|| panic!("{key}"));
            assert!(matches!(registry, EcrRegistry::Public { .. }));
            assert_eq!(registry.region(), "us-east-1");
            assert_eq!(registry.service(), "ecr-public");
        }
    }

    #[test]
    fn lookalikes_are_not_ecr() {
        for key in [
            "",
            "https://",
            "127.0.0.1:5000",
            "registry.example.com",
            "12345678901.dkr.ecr.us-east-1.amazonaws.com",
            "1234567890123.dkr.ecr.us-east-1.amazonaws.com",
            "12345678901a.dkr.ecr.us-east-1.amazonaws.com",
            "123456789012.dkr.ecr..amazonaws.com",
            "123456789012.dkr.ecr.-us-east-1.amazonaws.com",
            "123456789012.dkr.ecr.us.east.1.amazonaws.com",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com.evil.com",
            "x.123456789012.dkr.ecr.us-east-1.amazonaws.com",
            "123456789012.dkrxecr.us-east-1.amazonaws.com",
            "123456789012.dkr.ecr-fipsx.us-east-1.amazonaws.com",
            "123456789012.dkr.ecr.us-east-1.amazonaws.org",
            "evil.com/123456789012.dkr.ecr.us-east-1.amazonaws.com",
            "public.ecr.aws.evil.com",
            "notpublic.ecr.aws",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com:http",
        ] {
            assert_eq!(EcrRegistry::parse(key), None, "{key}");
        }
    }
}
