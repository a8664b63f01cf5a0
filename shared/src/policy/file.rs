//! Named policies in regkit's config file, and the rule values a command line gives, in one shape.
//!
//! ```toml
//! [[cleanup.policy]]
//! name = "branches"
//! repositories = ["registry.example.com/team/app", "registry.example.com/team/tools/*"]
//! match = "^(main|release-.*)-"
//! group-by = "^(main|release-.*)-"
//! keep-last = 5
//! older-than = "30d"
//! ```
//!
//! Keys are the `regkit cleanup` flag names; `match` and `exclude` take a string or a list. Paths
//! (`keep-list`, `keep-git`) are read from the current directory, as on the command line. Every value is
//! checked when the file is read, and an error names the line and the key, so a bad file stops a run before
//! its first request. Other tables of the file belong to other parts of regkit and are ignored here.

use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use super::{GitRefs, KeepList, Options, Policy, PolicyError, Sort, compile, parse_duration};
use crate::reference::Repository;

/// The rule values of one policy, or of the command line: `None` (or empty) is "not given".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    /// `--match`.
    pub matches: Vec<String>,
    /// `--exclude`.
    pub excludes: Vec<String>,
    /// `--keep-list FILE`.
    pub keep_list: Option<PathBuf>,
    /// `--older-than`, seconds.
    pub older_than: Option<u64>,
    /// `--keep-last`.
    pub keep_last: Option<usize>,
    /// `--group-by`.
    pub group_by: Option<String>,
    /// `--sort`.
    pub sort: Option<Sort>,
    /// `--grace`, seconds.
    pub grace: Option<u64>,
    /// `--unpulled-for`, seconds.
    pub unpulled_for: Option<u64>,
    /// `--keep-git DIR`.
    pub keep_git: Option<PathBuf>,
    /// `--per-git-ref`.
    pub per_git_ref: Option<usize>,
}

/// Why the rules could not become a policy (a file they name cannot be read, or a value is refused).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RulesError {
    /// The keep-list cannot be read.
    #[error("cannot read the keep-list {path}: {message}")]
    KeepList {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// The git repository's references cannot be read.
    #[error(transparent)]
    Git(#[from] super::GitError),
    /// A value is refused.
    #[error(transparent)]
    Policy(#[from] PolicyError),
}

impl Rules {
    /// These rules with every value `over` gives replacing this one's (the command line over a file).
    pub fn overlaid(mut self, over: &Rules) -> Rules {
        fn take<T: Clone>(slot: &mut Option<T>, over: &Option<T>) {
            if over.is_some() {
                slot.clone_from(over);
            }
        }
        if !over.matches.is_empty() {
            self.matches.clone_from(&over.matches);
        }
        if !over.excludes.is_empty() {
            self.excludes.clone_from(&over.excludes);
        }
        take(&mut self.keep_list, &over.keep_list);
        take(&mut self.older_than, &over.older_than);
        take(&mut self.keep_last, &over.keep_last);
        take(&mut self.group_by, &over.group_by);
        take(&mut self.sort, &over.sort);
        take(&mut self.grace, &over.grace);
        take(&mut self.unpulled_for, &over.unpulled_for);
        take(&mut self.keep_git, &over.keep_git);
        take(&mut self.per_git_ref, &over.per_git_ref);
        self
    }

    /// The policy: reads the keep-list and the git references (bounded), compiles the regexes.
    pub fn policy(&self) -> Result<Policy, RulesError> {
        let keep_list = match &self.keep_list {
            Some(path) => KeepList::parse(&std::fs::read_to_string(path).map_err(|error| {
                RulesError::KeepList {
                    path: path.display().to_string(),
                    message: error.to_string(),
                }
            })?),
            None => KeepList::default(),
        };
        let git = self.keep_git.as_deref().map(GitRefs::read).transpose()?;
        Ok(Policy::from_options(Options {
            matches: self.matches.clone(),
            excludes: self.excludes.clone(),
            keep_list,
            older_than: self.older_than,
            keep_last: self.keep_last,
            group_by: self.group_by.clone(),
            sort: self.sort.unwrap_or_default(),
            grace: self.grace.unwrap_or(super::DEFAULT_GRACE),
            unpulled_for: self.unpulled_for,
            git,
            per_git_ref: self.per_git_ref,
        })?)
    }
}

/// One `[[cleanup.policy]]` of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedPolicy {
    /// Its `name`.
    pub name: String,
    /// Its `repositories`: references, or `registry/prefix/*` patterns.
    pub repositories: Vec<String>,
    /// Its rules.
    pub rules: Rules,
}

/// An error in the file: the line, the key and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}{}: {message}", key.as_ref().map(|key| format!(", key {key}")).unwrap_or_default())]
pub struct FileError {
    /// 1-based line.
    pub line: usize,
    /// The key, when the error is about one.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

#[derive(Deserialize, Default)]
struct Document {
    #[serde(default)]
    cleanup: Option<Section>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Section {
    #[serde(default)]
    policy: Vec<Spanned<Entry>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(one) => vec![one],
            OneOrMany::Many(many) => many,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Entry {
    name: Spanned<String>,
    repositories: Option<Spanned<Vec<String>>>,
    #[serde(rename = "match")]
    matches: Option<Spanned<OneOrMany>>,
    exclude: Option<Spanned<OneOrMany>>,
    keep_list: Option<String>,
    older_than: Option<Spanned<String>>,
    keep_last: Option<usize>,
    group_by: Option<Spanned<String>>,
    sort: Option<Spanned<String>>,
    grace: Option<Spanned<String>>,
    unpulled_for: Option<Spanned<String>>,
    keep_git: Option<String>,
    per_git_ref: Option<usize>,
}

/// The policies of a config file's text, in file order, every value checked.
pub fn parse(text: &str) -> Result<Vec<NamedPolicy>, FileError> {
    // Counted in bytes: a span from the parser could end inside a character.
    let line_of = |offset: usize| {
        let bytes = text.as_bytes();
        bytes[..offset.min(bytes.len())]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1
    };
    let document: Document = toml::from_str(text).map_err(|error| FileError {
        line: error.span().map_or(1, |span| line_of(span.start)),
        key: None,
        message: error
            .message()
            .lines()
            .next()
            .unwrap_or("syntax error")
            .to_string(),
    })?;
    let fail = |span: std::ops::Range<usize>, key: &str, message: String| FileError {
        line: line_of(span.start),
        key: Some(key.to_string()),
        message,
    };
    let mut policies: Vec<NamedPolicy> = Vec::new();
    for entry in document
        .cleanup
        .map(|section| section.policy)
        .unwrap_or_default()
    {
        let entry_span = entry.span();
        let entry = entry.into_inner();
        let name_span = entry.name.span();
        let name = entry.name.into_inner();
        if name.trim().is_empty() {
            return Err(fail(name_span, "name", "a policy needs a name".into()));
        }
        if policies.iter().any(|known| known.name == name) {
            return Err(fail(
                name_span,
                "name",
                format!("a second policy named {name:?}"),
            ));
        }
        let repositories = match entry.repositories {
            Some(list) if !list.get_ref().is_empty() => {
                let span = list.span();
                let list = list.into_inner();
                for repository in &list {
                    let base = repository.strip_suffix("/*").unwrap_or(repository);
                    if !base.contains('/') && repository.ends_with("/*") {
                        continue;
                    }
                    Repository::parse(base)
                        .map_err(|error| fail(span.clone(), "repositories", error.to_string()))?;
                }
                list
            }
            Some(list) => {
                return Err(fail(
                    list.span(),
                    "repositories",
                    format!("policy {name:?} names no repository"),
                ));
            }
            None => {
                return Err(fail(
                    entry_span,
                    "repositories",
                    format!(
                        "policy {name:?} names no repository: add repositories = [\"registry.example.com/team/app\"]"
                    ),
                ));
            }
        };
        let regexes = |value: Option<Spanned<OneOrMany>>, key: &'static str| {
            let Some(value) = value else {
                return Ok(Vec::new());
            };
            let span = value.span();
            let patterns = value.into_inner().into_vec();
            for pattern in &patterns {
                compile(key, pattern)
                    .map_err(|error| fail(span.clone(), key, error.to_string()))?;
            }
            Ok(patterns)
        };
        let duration = |value: Option<Spanned<String>>, key: &str| {
            value
                .map(|value| {
                    parse_duration(value.get_ref())
                        .map_err(|error| fail(value.span(), key, error.to_string()))
                })
                .transpose()
        };
        let group_by = match entry.group_by {
            Some(value) => {
                compile("group-by", value.get_ref())
                    .map_err(|error| fail(value.span(), "group-by", error.to_string()))?;
                Some(value.into_inner())
            }
            None => None,
        };
        let sort = entry
            .sort
            .map(|value| {
                Sort::parse(value.get_ref()).ok_or_else(|| {
                    fail(
                        value.span(),
                        "sort",
                        format!(
                            "{:?} is no order: use \"date\" or \"semver\"",
                            value.get_ref()
                        ),
                    )
                })
            })
            .transpose()?;
        if entry.per_git_ref.is_some() && entry.keep_git.is_none() {
            return Err(fail(
                entry_span,
                "per-git-ref",
                PolicyError::PerGitRefWithoutRepository.to_string(),
            ));
        }
        policies.push(NamedPolicy {
            name,
            repositories,
            rules: Rules {
                matches: regexes(entry.matches, "match")?,
                excludes: regexes(entry.exclude, "exclude")?,
                keep_list: entry.keep_list.map(PathBuf::from),
                older_than: duration(entry.older_than, "older-than")?,
                keep_last: entry.keep_last,
                group_by,
                sort,
                grace: duration(entry.grace, "grace")?,
                unpulled_for: duration(entry.unpulled_for, "unpulled-for")?,
                keep_git: entry.keep_git.map(PathBuf::from),
                per_git_ref: entry.per_git_ref,
            },
        });
    }
    Ok(policies)
}

/// Whether the repository pattern `pattern` (a reference, `registry/prefix/*` or `registry/*`) covers
/// `repository`.
pub fn covers(pattern: &str, repository: &Repository) -> bool {
    let Some(base) = pattern.strip_suffix("/*") else {
        return Repository::parse(pattern).is_ok_and(|named| named == *repository);
    };
    if !base.contains('/') {
        return Repository::parse(&format!("{base}/x"))
            .is_ok_and(|named| named.registry == repository.registry);
    }
    Repository::parse(base).is_ok_and(|named| {
        named.registry == repository.registry
            && repository
                .path
                .strip_prefix(named.path.as_str())
                .is_some_and(|rest| rest.starts_with('/'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: &str = r#"
[ecr]
[[cleanup.policy]]
name = "branches"
repositories = ["registry.example.com/team/app"]
match = ["^(main|release-.*)-"]
group-by = "^(main|release-.*)-"
keep-last = 5

[[cleanup.policy]]
name = "old"
repositories = ["registry.example.com/team/*"]
older-than = "30d"
grace = "0"
sort = "semver"
"#;

    #[test]
    fn two_policies_with_their_values() {
        let policies = parse(TWO).unwrap();
        assert_eq!(policies.len(), 2);
        assert_eq!(policies[0].rules.matches, ["^(main|release-.*)-"]);
        assert_eq!(policies[0].rules.keep_last, Some(5));
        assert_eq!(policies[1].rules.older_than, Some(30 * 86_400));
        assert_eq!(policies[1].rules.grace, Some(0));
        assert_eq!(policies[1].rules.sort, Some(Sort::Semver));
        assert!(parse("[router]\n").unwrap().is_empty());
        // The command line overrides the file, key by key.
        let over = Rules {
            keep_last: Some(2),
            ..Rules::default()
        };
        let merged = policies[0].rules.clone().overlaid(&over);
        assert_eq!((merged.keep_last, merged.matches.len()), (Some(2), 1));
    }

    #[test]
    fn errors_name_the_line_and_the_key() {
        let bad = |text: &str| parse(text).unwrap_err().to_string();
        let head = "[[cleanup.policy]]\nname = \"p\"\nrepositories = [\"r.example/app\"]\n";
        let error = bad(&format!("{head}keep-lats = 3\n"));
        assert!(
            error.starts_with("line 4: unknown field `keep-lats`"),
            "{error}"
        );
        assert_eq!(
            bad(&format!("{head}match = \"(\"\n")).split(':').next(),
            Some("line 4, key match")
        );
        let error = bad(&format!("{head}older-than = \"30\"\n"));
        assert!(
            error.starts_with("line 4, key older-than: invalid duration \"30\""),
            "{error}"
        );
        let error = bad(&format!("{head}\ngroup-by = \"[\"\n"));
        assert!(
            error.starts_with("line 5, key group-by: invalid group-by regex"),
            "{error}"
        );
        let error = bad("[[cleanup.policy]]\nname = \"p\"\nkeep-last = 1\n");
        assert!(
            error.contains("key repositories: policy \"p\" names no repository"),
            "{error}"
        );
        let error = bad("[[cleanup.policy]]\nname = \"p\"\nrepositories = []\n");
        assert!(error.starts_with("line 3, key repositories"), "{error}");
        let error = bad(&format!("{head}sort = \"alpha\"\n"));
        assert!(error.starts_with("line 4, key sort"), "{error}");
        let error = bad(&format!(
            "{head}[[cleanup.policy]]\nname = \"p\"\nrepositories = [\"r.example/b\"]\n"
        ));
        assert!(
            error.starts_with("line 5, key name: a second policy"),
            "{error}"
        );
        let error = bad(&format!("{head}keep-last = -1\n"));
        assert!(error.starts_with("line 4"), "{error}");
        let error = bad("[[cleanup.policy]]\nname = \"p\"\nrepositories = [\"Bad Repo\"]\n");
        assert!(error.starts_with("line 3, key repositories"), "{error}");
        assert!(bad("[cleanup\n").starts_with("line 1"));
    }

    #[test]
    fn repository_patterns() {
        let repository = Repository::parse("registry.example.com/team/app").unwrap();
        for (pattern, expected) in [
            ("registry.example.com/team/app", true),
            ("registry.example.com/team/*", true),
            ("registry.example.com/*", true),
            ("registry.example.com/team/app/*", false),
            ("registry.example.com/tea/*", false),
            ("other.example.com/*", false),
            ("registry.example.com/team/ap", false),
        ] {
            assert_eq!(covers(pattern, &repository), expected, "{pattern}");
        }
    }
}
