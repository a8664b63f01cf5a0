//! Azure Container Registry: the provider behind `docker-credential-acr` and what the ACR cleanup vendor
//! shares with it.
//!
//! - [`entra`]: Entra ID access tokens for the registry audience (service principal secret, workload identity,
//!   managed identity, Azure CLI), requested directly over HTTPS;
//! - [`helper`]: the credential helper: Entra token → `POST /oauth2/exchange` → ACR refresh token, cached.

pub mod entra;
pub mod helper;

use crate::cloudauth::key_host;

/// The username that marks an ACR refresh token as the password (`docker login -u 0000…`).
pub const NULL_GUID: &str = "00000000-0000-0000-0000-000000000000";

/// Test and proxy hook: the base URL the token exchange is sent to instead of `https://<registry>`
/// (the `service` stays the registry host). Only for tests and debugging proxies; never needed in use.
pub const TEST_LOGIN_SERVER_VAR: &str = "REGKIT_ACR_TEST_LOGIN_SERVER";

/// Login-server suffixes of the public and sovereign clouds (Azure public, China, US Government).
const SUFFIXES: [&str; 3] = [".azurecr.io", ".azurecr.cn", ".azurecr.us"];

/// The ACR login server a credential-helper key names: `<name>.azurecr.io` (or a sovereign suffix) with a
/// registry name of 1–50 letters and digits, anchored; `None` for anything else, including look-alikes such
/// as `x.azurecr.io.evil.example` and hosts with a port.
pub fn registry_host(server_url: &str) -> Option<String> {
    let host = key_host(server_url)?;
    let name = SUFFIXES
        .iter()
        .find_map(|suffix| host.strip_suffix(suffix))?;
    let valid = (1..=50).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric());
    valid.then_some(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_anchored_login_servers_match() {
        for (key, host) in [
            ("myreg.azurecr.io", "myreg.azurecr.io"),
            ("https://MyReg.azurecr.io/v2/", "myreg.azurecr.io"),
            ("reg1.azurecr.cn", "reg1.azurecr.cn"),
            ("gov.azurecr.us", "gov.azurecr.us"),
        ] {
            assert_eq!(registry_host(key).as_deref(), Some(host), "{key}");
        }
        for key in [
            "azurecr.io",
            ".azurecr.io",
            "myreg.azurecr.io.evil.example",
            "evil.example/myreg.azurecr.io",
            "my-reg.azurecr.io",
            "a.b.azurecr.io",
            "myreg.azurecr.io:443",
            "myregazurecr.io",
            "ghcr.io",
        ] {
            assert_eq!(registry_host(key), None, "{key}");
        }
    }
}
