//! Registry keys as docker writes them: Docker Hub's legacy URL, hostnames with or without scheme and path.

/// The key docker uses for Docker Hub in `auths`, `credHelpers` and helper calls.
pub const INDEX_SERVER: &str = "https://index.docker.io/v1/";

/// The key containers/image (podman, skopeo) uses for Docker Hub.
pub const CONTAINERS_HUB_KEY: &str = "docker.io";

/// The names docker treats as Docker Hub.
const HUB_ALIASES: [&str; 3] = ["docker.io", "index.docker.io", "registry-1.docker.io"];

/// The host (with port) of a key: scheme and path stripped, as docker's `ConvertToHostname` does.
///
/// `https://ghcr.io/v2/` → `ghcr.io`, `localhost:5000/app:1` → `localhost:5000`, `docker.io` → `docker.io`.
pub fn hostname(key: &str) -> &str {
    let key = key.trim();
    let without_scheme = match key.find("://") {
        Some(index) => &key[index + 3..],
        None => key,
    };
    match without_scheme.find('/') {
        Some(index) => &without_scheme[..index],
        None => without_scheme,
    }
}

/// True when `host` (already stripped by [`hostname`]) names Docker Hub.
pub fn is_docker_hub(host: &str) -> bool {
    HUB_ALIASES
        .iter()
        .any(|alias| alias.eq_ignore_ascii_case(host))
}

/// The key docker looks `registry` up under: [`INDEX_SERVER`] for Docker Hub's names, else `host[:port]`.
pub fn registry_key(registry: &str) -> String {
    let host = hostname(registry);
    if is_docker_hub(host) {
        INDEX_SERVER.to_owned()
    } else {
        host.to_owned()
    }
}

/// The key containers/image passes for `registry`: `docker.io` for Docker Hub, else `host[:port]`.
pub fn containers_key(registry: &str) -> String {
    let host = hostname(registry);
    if is_docker_hub(host) {
        CONTAINERS_HUB_KEY.to_owned()
    } else {
        host.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_table() {
        let table = [
            ("docker.io", INDEX_SERVER),
            ("index.docker.io", INDEX_SERVER),
            ("registry-1.docker.io", INDEX_SERVER),
            ("Docker.IO", INDEX_SERVER),
            ("https://index.docker.io/v1/", INDEX_SERVER),
            ("https://registry-1.docker.io/v2/", INDEX_SERVER),
            ("docker.io/library/alpine", INDEX_SERVER),
            ("ghcr.io", "ghcr.io"),
            ("https://ghcr.io", "ghcr.io"),
            ("http://127.0.0.1:5000/v1/", "127.0.0.1:5000"),
            ("localhost:5000/app:1", "localhost:5000"),
            ("[::1]:5000", "[::1]:5000"),
            ("  quay.io \n", "quay.io"),
            ("", ""),
            ("://", ""),
        ];
        for (input, expected) in table {
            assert_eq!(registry_key(input), expected, "{input:?}");
        }
    }

    #[test]
    fn containers_key_uses_docker_io_for_hub() {
        assert_eq!(containers_key("index.docker.io"), "docker.io");
        assert_eq!(containers_key("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(containers_key("quay.io/org/app"), "quay.io");
    }
}
