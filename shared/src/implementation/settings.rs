//! Vendor-specific settings (API URLs, API tokens, usernames) for the vendor modules.
//!
//! Each setting has a kebab-case name, the name of its command-line flag (`repo-docker-hub-token`). Its value
//! comes from the flag, else `REGKIT_<NAME>`, else werf's `WERF_<NAME>` (`REGKIT_REPO_DOCKER_HUB_TOKEN`,
//! `WERF_REPO_DOCKER_HUB_TOKEN`), so a vendor module reads one name and every source works. Values are held
//! as [`Secret`]s: a token passed by flag never reaches a `Debug` print.

use std::collections::BTreeMap;

use super::SPECS;
use crate::secret::Secret;

/// A read-only view of the vendor settings of one run.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    flags: BTreeMap<String, Secret<String>>,
    environment: BTreeMap<String, Secret<String>>,
}

impl Settings {
    /// Settings from flag values (`name` → value; empty values count as unset) and the process environment.
    pub fn new(flags: impl IntoIterator<Item = (String, String)>) -> Settings {
        Settings::with_environment(flags, std::env::vars())
    }

    /// [`Settings::new`] with an explicit environment, for tests.
    pub fn with_environment(
        flags: impl IntoIterator<Item = (String, String)>,
        environment: impl IntoIterator<Item = (String, String)>,
    ) -> Settings {
        let non_empty = |(name, value): (String, String)| {
            (!value.trim().is_empty()).then(|| (name, Secret::new(value)))
        };
        Settings {
            flags: flags.into_iter().filter_map(non_empty).collect(),
            environment: environment
                .into_iter()
                .filter(|(name, _)| {
                    name.starts_with("REGKIT_")
                        || name.starts_with("WERF_")
                        || SPECS
                            .iter()
                            .any(|spec| spec.environment.contains(&name.as_str()))
                })
                .filter_map(non_empty)
                .collect(),
        }
    }

    /// The value of setting `name` (kebab-case): flag, then `REGKIT_<NAME>`, then `WERF_<NAME>`.
    pub fn get(&self, name: &str) -> Option<&Secret<String>> {
        let upper = name.replace('-', "_").to_ascii_uppercase();
        self.flags
            .get(name)
            .or_else(|| self.environment.get(&format!("REGKIT_{upper}")))
            .or_else(|| self.environment.get(&format!("WERF_{upper}")))
    }

    /// A non-secret setting (an URL, a repository name) as plain text.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.get(name).map(|value| value.expose().as_str())
    }

    /// A variable outside the `REGKIT_`/`WERF_` families that a vendor's spec lists as a last source
    /// (`GITHUB_TOKEN`, `CI_JOB_TOKEN`); no other variable is kept.
    pub fn environment(&self, variable: &str) -> Option<&Secret<String>> {
        self.environment.get(variable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn flag_then_regkit_then_werf() {
        let environment = pairs(&[
            ("WERF_REPO_GITHUB_TOKEN", "werf"),
            ("REGKIT_GITLAB_API_URL", "https://gitlab.example/api/v4"),
            ("WERF_GITLAB_API_URL", "ignored"),
            ("GITHUB_TOKEN", "gh"),
            ("HOME", "/root"),
        ]);
        let settings = Settings::with_environment(
            pairs(&[
                ("repo-docker-hub-token", "canary-3d1"),
                ("repo-quay-token", " "),
            ]),
            environment,
        );
        assert_eq!(
            settings.get("repo-docker-hub-token").map(Secret::expose),
            Some(&"canary-3d1".to_string())
        );
        assert_eq!(
            settings.text("gitlab-api-url"),
            Some("https://gitlab.example/api/v4")
        );
        assert_eq!(settings.text("repo-github-token"), Some("werf"));
        assert!(settings.get("repo-quay-token").is_none());
        assert_eq!(
            settings
                .environment("GITHUB_TOKEN")
                .map(|s| s.expose().as_str()),
            Some("gh")
        );
        assert!(settings.environment("HOME").is_none());
        assert!(!format!("{settings:?}").contains("canary"));
    }
}
