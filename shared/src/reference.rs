//! Image references as docker writes them: `[host[:port]/]path[:tag][@digest]`, normalised the way the docker
//! CLI does (`x` → `docker.io/library/x`) and validated against the distribution grammar.

use std::fmt;

/// The registry host docker means when a reference names none.
pub const DOCKER_HUB: &str = "docker.io";

/// Repository paths longer than this are refused by distribution.
const MAX_NAME_LEN: usize = 255;

/// Why a reference string is not a valid image reference. `Display` is one line quoting the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid image reference {input:?}: {reason}")]
pub struct ReferenceError {
    /// The string as given.
    pub input: String,
    /// What is wrong with it and the expected form.
    pub reason: String,
}

/// A repository on a registry: `docker.io/library/alpine`, `127.0.0.1:5000/a/b/c`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Repository {
    /// `host[:port]`; `docker.io` for Docker Hub.
    pub registry: String,
    /// The path inside the registry (`library/alpine`).
    pub path: String,
}

/// What a reference points at inside its repository.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    /// A tag (`latest`).
    Tag(String),
    /// A manifest digest (`sha256:…`).
    Digest(String),
}

/// A tag or digest in a repository.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    /// Where it lives.
    pub repository: Repository,
    /// The tag or digest.
    pub target: Target,
}

impl fmt::Display for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.path)
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Tag(tag) => write!(f, ":{tag}"),
            Target::Digest(digest) => write!(f, "@{digest}"),
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.repository, self.target)
    }
}

impl Repository {
    /// Parses a repository name without tag or digest (`alpine`, `ghcr.io/o/p`, `127.0.0.1:5000/a/b`).
    pub fn parse(input: &str) -> Result<Repository, ReferenceError> {
        let error = |reason: &str| ReferenceError {
            input: input.to_string(),
            reason: reason.to_string(),
        };
        if input.contains("://") {
            return Err(error(
                "write it without a scheme, as host[:port]/path, e.g. registry.example.com/team/app",
            ));
        }
        let (registry, path) = split_registry(input);
        if path.contains('@') || last_component(path).contains(':') {
            return Err(error(
                "expected a repository without tag or digest, e.g. registry.example.com/team/app",
            ));
        }
        let registry = normalise_registry(registry).map_err(|reason| error(&reason))?;
        let path = normalise_path(&registry, path).map_err(|reason| error(&reason))?;
        Ok(Repository { registry, path })
    }
}

impl Reference {
    /// Parses `repo:tag` or `repo@sha256:…`. A bare repository is refused rather than read as `:latest`,
    /// because an implicit tag in a delete command would be a surprise; a tag together with a digest is
    /// refused because it is ambiguous which of the two should go.
    pub fn parse(input: &str) -> Result<Reference, ReferenceError> {
        let error = |reason: &str| ReferenceError {
            input: input.to_string(),
            reason: reason.to_string(),
        };
        let (name, target) = if let Some((name, digest)) = input.split_once('@') {
            if last_component(name).contains(':') {
                return Err(error("give either a tag or a digest, not both"));
            }
            validate_digest(digest).map_err(|reason| error(&reason))?;
            (name, Target::Digest(digest.to_string()))
        } else {
            let last = last_component(input);
            let Some((_, tag)) = last.rsplit_once(':') else {
                return Err(error(
                    "missing tag or digest: write repo:tag or repo@sha256:<64 hex digits>",
                ));
            };
            let name = &input[..input.len() - tag.len() - 1];
            validate_tag(tag).map_err(|reason| error(&reason))?;
            (name, Target::Tag(tag.to_string()))
        };
        let repository = Repository::parse(name).map_err(|inner| error(&inner.reason))?;
        Ok(Reference { repository, target })
    }
}

/// The part after the last `/`, where a tag separator can be (a `:` before it belongs to a port).
pub(crate) fn last_component(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

/// Docker's rule: the first component is a registry host only if it has a `.` or `:` or is `localhost`.
fn split_registry(name: &str) -> (&str, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first, rest)
        }
        _ => (DOCKER_HUB, name),
    }
}

fn normalise_registry(host: &str) -> Result<String, String> {
    let (name, port) = match host.rsplit_once(':') {
        Some((name, _)) if !name.ends_with(']') && name.contains(':') => (host, None),
        Some((name, port)) => (name, Some(port)),
        None => (host, None),
    };
    if let Some(port) = port
        && (port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!("the port of registry {host:?} is not a number"));
    }
    let valid_host = if let Some(inner) = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        !inner.is_empty()
            && inner
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
    } else {
        !name.is_empty()
            && name.split('.').all(|label| {
                !label.is_empty()
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            })
    };
    if !valid_host {
        return Err(format!("{host:?} is not a valid registry host"));
    }
    let lower = host.to_ascii_lowercase();
    // The docker CLI stores and looks up Docker Hub credentials under `docker.io`, whatever alias was typed.
    Ok(match lower.as_str() {
        "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB.to_string(),
        _ => lower,
    })
}

fn normalise_path(registry: &str, path: &str) -> Result<String, String> {
    if path.is_empty() {
        return Err("the repository path is empty".into());
    }
    for component in path.split('/') {
        if !valid_path_component(component) {
            return Err(format!(
                "path component {component:?} must be lowercase letters and digits, separated by '.', '_', '__' or dashes"
            ));
        }
    }
    let path = if registry == DOCKER_HUB && !path.contains('/') {
        format!("library/{path}")
    } else {
        path.to_string()
    };
    if path.len() > MAX_NAME_LEN {
        return Err(format!(
            "the repository path is longer than {MAX_NAME_LEN} characters"
        ));
    }
    Ok(path)
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn valid_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    if !alnum(first) || !alnum(last) {
        return false;
    }
    let mut index = 0;
    while index < bytes.len() {
        if alnum(bytes[index]) {
            index += 1;
            continue;
        }
        let start = index;
        while index < bytes.len() && !alnum(bytes[index]) {
            index += 1;
        }
        let separator = &component[start..index];
        let ok = separator == "."
            || separator == "_"
            || separator == "__"
            || separator.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`
pub(crate) fn validate_tag(tag: &str) -> Result<(), String> {
    let bytes = tag.as_bytes();
    let word = |b: &u8| b.is_ascii_alphanumeric() || *b == b'_';
    let valid = matches!(bytes.first(), Some(first) if word(first))
        && bytes.len() <= 128
        && bytes.iter().all(|b| word(b) || *b == b'.' || *b == b'-');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "tag {tag:?} must be 1–128 characters of letters, digits, '_', '.' and '-', not starting with '.' or '-'"
        ))
    }
}

/// `sha256:` + 64 lowercase hex digits, or `sha512:` + 128.
pub(crate) fn validate_digest(digest: &str) -> Result<(), String> {
    let valid = match digest.split_once(':') {
        Some(("sha256", hex)) => hex.len() == 64,
        Some(("sha512", hex)) => hex.len() == 128,
        _ => false,
    } && digest.split_once(':').is_some_and(|(_, hex)| {
        hex.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    });
    if valid {
        Ok(())
    } else {
        Err(format!(
            "digest {digest:?} must be sha256:<64 lowercase hex digits>"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn reference(input: &str) -> (String, String, Target) {
        let parsed = Reference::parse(input).unwrap();
        (
            parsed.repository.registry,
            parsed.repository.path,
            parsed.target,
        )
    }

    #[test]
    fn docker_hub_names_are_normalised() {
        assert_eq!(
            reference("alpine:3"),
            (
                "docker.io".into(),
                "library/alpine".into(),
                Target::Tag("3".into())
            )
        );
        assert_eq!(reference("team/app:v1").1, "team/app");
        assert_eq!(reference("index.docker.io/alpine:3").1, "library/alpine");
        assert_eq!(reference("registry-1.docker.io/x/y:z").0, "docker.io");
        assert_eq!(
            Repository::parse("busybox").unwrap().to_string(),
            "docker.io/library/busybox"
        );
    }

    #[test]
    fn hosts_ports_and_nested_paths() {
        assert_eq!(
            reference("127.0.0.1:5000/a/b/c:v1.2-rc_3"),
            (
                "127.0.0.1:5000".into(),
                "a/b/c".into(),
                Target::Tag("v1.2-rc_3".into())
            )
        );
        assert_eq!(reference("localhost/app:x").0, "localhost");
        assert_eq!(reference("localhost:5000/app:x").0, "localhost:5000");
        assert_eq!(
            reference("Registry.Example.COM/app:x").0,
            "registry.example.com"
        );
        assert_eq!(
            reference(&format!("ghcr.io/o/p@{D}")).2,
            Target::Digest(D.into())
        );
        assert_eq!(reference("[::1]:5000/app:t").0, "[::1]:5000");
        let round = Reference::parse(&format!("127.0.0.1:5000/a/b@{D}")).unwrap();
        assert_eq!(round.to_string(), format!("127.0.0.1:5000/a/b@{D}"));
    }

    #[test]
    fn invalid_references_are_refused_with_the_reason() {
        for bad in [
            "",
            "app",
            "127.0.0.1:5000/app",
            "App:v1",
            "app:",
            "app:-x",
            "app:.x",
            "a//b:t",
            "a/-b:t",
            "a__-b:t",
            "app@sha256:abc",
            "app@md5:0123",
            "app:t@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "host:port/app:t",
            "bad_host.com/app:t",
            ":t",
        ] {
            let error = Reference::parse(bad).unwrap_err();
            assert_eq!(error.input, bad);
            assert!(!error.to_string().contains('\n'));
        }
        assert!(Reference::parse(&format!("app:{}", "t".repeat(129))).is_err());
        assert!(Reference::parse(&format!("app:{}", "t".repeat(128))).is_ok());
        assert!(Repository::parse("app:tag").is_err());
        assert!(Repository::parse(&format!("h.io/{}", "a".repeat(256))).is_err());
    }

    #[test]
    fn separators_follow_the_distribution_grammar() {
        for good in ["a.b", "a_b", "a__b", "a-b", "a---b", "a1"] {
            assert!(valid_path_component(good), "{good}");
        }
        for bad in ["a..b", "a___b", "a._b", "_a", "a-", "A"] {
            assert!(!valid_path_component(bad), "{bad}");
        }
    }
}
