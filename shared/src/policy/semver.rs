//! Semantic versions as tags carry them, for `--sort semver`: an optional `v`, `MAJOR.MINOR.PATCH`, an
//! optional `-pre.release`, optional build metadata after `+` (or `_`, since `+` cannot occur in a tag:
//! Helm and others write it as `_`). Build metadata does not order; a pre-release ranks below its release.

use std::cmp::Ordering;

/// A parsed version; the order is SemVer 2.0's precedence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    core: [u64; 3],
    pre: Vec<Identifier>,
}

/// A pre-release identifier: numeric ones rank below alphanumeric ones.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Identifier {
    Number(u64),
    Text(String),
}

impl Version {
    /// The version a tag names, or `None` when it is not one.
    pub fn parse(tag: &str) -> Option<Version> {
        let text = tag.strip_prefix('v').unwrap_or(tag);
        let text = text.split(['+', '_']).next().unwrap_or(text);
        let (core, pre) = match text.split_once('-') {
            Some((core, pre)) => (core, Some(pre)),
            None => (text, None),
        };
        let mut numbers = core.split('.');
        let mut next = || numbers.next().and_then(number);
        let core = [next()?, next()?, next()?];
        if numbers.next().is_some() {
            return None;
        }
        let pre = match pre {
            None => Vec::new(),
            Some(pre) => pre
                .split('.')
                .map(|part| {
                    if part.is_empty() {
                        None
                    } else if part.bytes().all(|b| b.is_ascii_digit()) {
                        number(part).map(Identifier::Number)
                    } else if part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                        Some(Identifier::Text(part.to_string()))
                    } else {
                        None
                    }
                })
                .collect::<Option<Vec<_>>>()?,
        };
        Some(Version { core, pre })
    }
}

/// A numeric identifier: digits, no leading zero.
fn number(text: &str) -> Option<u64> {
    if text.is_empty()
        || !text.bytes().all(|b| b.is_ascii_digit())
        || (text.len() > 1 && text.starts_with('0'))
    {
        return None;
    }
    text.parse().ok()
}

impl Ord for Version {
    fn cmp(&self, other: &Version) -> Ordering {
        self.core
            .cmp(&other.core)
            .then_with(|| match (self.pre.is_empty(), other.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => self.pre.cmp(&other.pre),
            })
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Version) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn semver_precedence_with_prefix_prereleases_and_build_metadata() {
        // SemVer 2.0's own example, ascending, with and without the v prefix.
        let ordered = [
            "1.0.0-alpha",
            "v1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "v1.0.1",
            "1.2.0",
            "1.10.0",
            "2.0.0",
        ];
        let versions: Vec<Version> = ordered.iter().map(|t| Version::parse(t).unwrap()).collect();
        for pair in versions.windows(2) {
            assert!(pair[0] < pair[1], "{pair:?}");
        }
        assert_eq!(
            Version::parse("1.2.3+build.5"),
            Version::parse("v1.2.3_build.7")
        );
        for not in [
            "latest",
            "1.2",
            "1.2.3.4",
            "01.2.3",
            "1.2.3-",
            "1.2.3-a..b",
            "main-1.2.3",
            "v",
            "",
        ] {
            assert_eq!(Version::parse(not), None, "{not}");
        }
    }
}
