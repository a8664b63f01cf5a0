//! Which tags a cleanup policy deletes: pure selection over tag records, no I/O, so every rule and edge case
//! is unit-tested here and the command only gathers records and carries out decisions.
//!
//! **Precedence, stated once.** A tag is kept when any keep rule keeps it, consulted in this order (the
//! first that keeps it is the rule the report names): `--match` (a tag it does not match), `--exclude`,
//! the keep-list, `--keep-git` (a tag naming a branch or tag of the repository, or a head commit),
//! `--per-git-ref` (the N newest tags carrying each reference), `--keep-last` (the N newest, per
//! `--group-by` group), then the `--grace` window (nothing pushed within it). Only a tag no keep rule keeps
//! meets the delete rules: it is deleted when it is older than `--older-than` and unpulled for
//! `--unpulled-for` (every one given must select it), or when neither is given. Keep reasons the caller
//! knows and this module does not (a kept index references the manifest; in the engine, later, a workload
//! uses it or it refers to a kept image) are applied by the caller over these decisions and always win.
//!
//! Keep-last and per-git-ref rank only the tags that passed the name filters (`--match`, `--exclude`, the
//! keep-list), so `--keep-last 5 --older-than 30d` always leaves the five newest, however old (GitLab's
//! cleanup-policy order). `--sort semver` ranks versions (an optional `v`, pre-releases below their
//! release, build metadata ignored) above every non-version tag, which rank by date.
//!
//! A rule that needs a date keeps a tag without one: its age is unknown, so it can neither be proven old nor
//! ranked. Tags that tie at a keep boundary (equal dates, or versions equal but for build metadata) are all
//! kept: which of two is "newer" is not knowable, and keeping one too many is the safe error.

pub mod file;
pub mod git;
pub mod semver;

use std::fmt;

use std::borrow::Cow;

use regex::{CaptureLocations, Regex};
use serde::Serialize;

pub use git::{GitError, GitRefs};
use semver::Version;

/// The default `--grace`: werf's `keepImagesBuiltWithinLastNHours` default, long enough for a build to
/// finish pushing every tag of an image.
pub const DEFAULT_GRACE: u64 = 2 * 3_600;

/// One tag as the policy sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagRecord {
    /// The tag.
    pub tag: String,
    /// When it was pushed or built, in seconds since the Unix epoch; `None` when unknown.
    pub created: Option<i64>,
    /// When it was last pulled, where the registry records pulls; `None` when never (or unknown).
    pub last_pulled: Option<i64>,
}

impl TagRecord {
    /// A tag with a date and no pull record.
    pub fn new(tag: impl Into<String>, created: Option<i64>) -> TagRecord {
        TagRecord {
            tag: tag.into(),
            created,
            last_pulled: None,
        }
    }
}

/// What the policy is told about a repository's listing beyond its tags.
#[derive(Debug, Clone, Copy, Default)]
pub struct Listing<'a> {
    /// The reference time for ages, seconds since the epoch.
    pub now: i64,
    /// Why `last_pulled` means nothing here (the registry records no pulls), for `--unpulled-for`'s
    /// report; `None` when the listing carries pull times.
    pub pulls_unrecorded: Option<&'a str>,
}

/// The rule that decided a tag's fate, as a stable machine-readable name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    /// Kept: it fails a `--match`.
    NotMatched,
    /// Kept: it matches an `--exclude`.
    Excluded,
    /// Kept: it matches a keep-list line.
    KeepList,
    /// Kept: it names a git branch or tag, or a head commit (`--keep-git`).
    GitRef,
    /// Kept: among the `--per-git-ref` newest tags carrying a git reference.
    PerGitRef,
    /// Kept: among the `--keep-last` newest (of its `--group-by` group).
    KeepLast,
    /// Kept: pushed within the `--grace` window.
    Grace,
    /// Kept: a rule needs its date and it has none.
    NoDate,
    /// Kept: not older than `--older-than`.
    TooNew,
    /// Kept: pulled within `--unpulled-for`.
    RecentlyPulled,
    /// Kept: `--unpulled-for` is given and the registry records no pulls.
    NoPullData,
    /// Kept: a kept tag's index references its manifest (set by the caller, which reads the indexes).
    InKeptIndex,
    /// Kept: a workload or a `--keep-images` line uses its tag or digest (set by the caller, from
    /// [`crate::inuse::InUse`]).
    InUse,
    /// Deleted: every rule selects it.
    Selected,
    /// Deleted: no tag points at the manifest (`--untagged`), and the age rule, if any, selects it.
    Untagged,
    /// Kept: a signature, attestation, SBOM or other referrer is never selected on its own; it stays while
    /// its subject does (set by the caller, which recognises referrers).
    Referrer,
    /// Deleted: a referrer whose subject's manifest is deleted in the same run.
    FollowsSubject,
    /// A referrer whose subject is gone: kept unless `--orphans` (with `--older-than` applying).
    Orphan,
}

impl Rule {
    /// The kebab-case name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::NotMatched => "not-matched",
            Rule::Excluded => "excluded",
            Rule::KeepList => "keep-list",
            Rule::GitRef => "git-ref",
            Rule::PerGitRef => "per-git-ref",
            Rule::KeepLast => "keep-last",
            Rule::Grace => "grace",
            Rule::NoDate => "no-date",
            Rule::TooNew => "too-new",
            Rule::RecentlyPulled => "recently-pulled",
            Rule::NoPullData => "no-pull-data",
            Rule::InKeptIndex => "in-kept-index",
            Rule::InUse => "in-use",
            Rule::Selected => "selected",
            Rule::Untagged => "untagged",
            Rule::Referrer => "referrer",
            Rule::FollowsSubject => "follows-subject",
            Rule::Orphan => "orphan",
        }
    }
}

/// What the policy decided for one tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// Whether the tag is to be deleted.
    pub delete: bool,
    /// The deciding rule.
    pub rule: Rule,
    /// The reason in words (`older than 30d, beyond the 3 newest`).
    pub reason: String,
}

impl Decision {
    fn keep(rule: Rule, reason: String) -> Decision {
        Decision {
            delete: false,
            rule,
            reason,
        }
    }
}

/// One rule's verdict on one tag, for `--explain`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// The option that sets the rule (`--keep-last`).
    pub option: &'static str,
    /// Whether this rule alone keeps the tag.
    pub keeps: bool,
    /// What the rule found.
    pub reason: String,
}

/// Why a policy could not be built from its options.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// A `--match`/`--exclude`/`--group-by` value is not a regular expression.
    #[error("invalid {flag} regex {pattern:?}: {message}")]
    Regex {
        /// The option.
        flag: &'static str,
        /// The value given.
        pattern: String,
        /// The parser's complaint.
        message: String,
    },
    /// A duration is not `<number><unit>…`.
    #[error(
        "invalid duration {input:?}: use a number with a unit s, m, h, d or w, e.g. 30d or 1d12h (0 for none)"
    )]
    Duration {
        /// The value given.
        input: String,
    },
    /// `--per-git-ref` without a repository to read references from.
    #[error("--per-git-ref needs --keep-git DIR: the references come from that repository")]
    PerGitRefWithoutRepository,
}

/// The order `--keep-last` and `--per-git-ref` rank tags in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Sort {
    /// Newest push (or creation) date first.
    #[default]
    Date,
    /// Highest semantic version first; tags that are not versions after every version, newest first.
    Semver,
}

impl Sort {
    /// Reads `date` or `semver`.
    pub fn parse(text: &str) -> Option<Sort> {
        match text {
            "date" => Some(Sort::Date),
            "semver" => Some(Sort::Semver),
            _ => None,
        }
    }

    fn word(self) -> &'static str {
        match self {
            Sort::Date => "newest",
            Sort::Semver => "highest",
        }
    }
}

/// Tags to keep whatever the other rules say: exact tags or globs (`*` any run, `?` one character).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeepList {
    patterns: Vec<String>,
}

impl KeepList {
    /// Parses a keep-list file: one tag or glob per line; blank lines and `#` comments are ignored (`#`
    /// cannot occur in a tag, so a comment may also follow an entry).
    pub fn parse(text: &str) -> KeepList {
        KeepList {
            patterns: text
                .lines()
                .map(|line| line.split('#').next().unwrap_or("").trim())
                .filter(|line| !line.is_empty())
                .map(str::to_string)
                .collect(),
        }
    }

    /// The first line matching `tag`.
    pub fn matching(&self, tag: &str) -> Option<&str> {
        self.patterns
            .iter()
            .find(|pattern| glob_matches(pattern, tag))
            .map(String::as_str)
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.patterns.len()
    }

    /// Whether there is no entry.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }
}

/// Whole-string glob match with `*` and `?`, linear in practice: on a mismatch only the last `*` is
/// retried, which is enough because `*` matches any run.
fn glob_matches(pattern: &str, text: &str) -> bool {
    // Tags are ASCII, so the common case needs no copy; a non-ASCII pattern is matched by characters.
    if pattern.is_ascii() && text.is_ascii() {
        return glob_units(pattern.as_bytes(), text.as_bytes(), b'*', b'?');
    }
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    glob_units(&pattern, &text, '*', '?')
}

fn glob_units<T: PartialEq + Copy>(pattern: &[T], text: &[T], any_run: T, any_one: T) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(&c) if c == any_run => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == any_one || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((star_p, star_t)) => {
                    p = star_p + 1;
                    t = star_t + 1;
                    star = Some((star_p, star_t + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|c| *c == any_run)
}

/// The values of a policy as the command line or a policy file gives them.
#[derive(Debug, Clone)]
pub struct Options {
    /// `--match`: every one must match.
    pub matches: Vec<String>,
    /// `--exclude`: none may match.
    pub excludes: Vec<String>,
    /// `--keep-list` entries.
    pub keep_list: KeepList,
    /// `--older-than`, seconds.
    pub older_than: Option<u64>,
    /// `--keep-last`.
    pub keep_last: Option<usize>,
    /// `--group-by`: keep-last applies per group of this regex's captures.
    pub group_by: Option<String>,
    /// `--sort`.
    pub sort: Sort,
    /// `--grace`, seconds; 0 turns it off.
    pub grace: u64,
    /// `--unpulled-for`, seconds.
    pub unpulled_for: Option<u64>,
    /// `--keep-git`: the references of the repository.
    pub git: Option<GitRefs>,
    /// `--per-git-ref`.
    pub per_git_ref: Option<usize>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            matches: Vec::new(),
            excludes: Vec::new(),
            keep_list: KeepList::default(),
            older_than: None,
            keep_last: None,
            group_by: None,
            sort: Sort::Date,
            grace: DEFAULT_GRACE,
            unpulled_for: None,
            git: None,
            per_git_ref: None,
        }
    }
}

/// A cleanup policy.
#[derive(Debug, Clone)]
pub struct Policy {
    matches: Vec<Regex>,
    excludes: Vec<Regex>,
    keep_list: KeepList,
    older_than: Option<u64>,
    keep_last: Option<usize>,
    group_by: Option<Regex>,
    sort: Sort,
    grace: u64,
    unpulled_for: Option<u64>,
    git: Option<GitRefs>,
    per_git_ref: Option<usize>,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy::from_options(Options::default()).unwrap_or_else(|_| unreachable!())
    }
}

/// Compiles a regex, naming the option in the error. Regexes are unanchored (`^`/`$` anchor them, as in
/// grep).
pub fn compile(flag: &'static str, pattern: &str) -> Result<Regex, PolicyError> {
    Regex::new(pattern).map_err(|error| PolicyError::Regex {
        flag,
        pattern: pattern.to_string(),
        message: error.to_string().lines().last().unwrap_or("").to_string(),
    })
}

/// Where a tag stands in a ranking (its `--group-by` group, or a git reference's tags).
#[derive(Debug, Clone)]
struct Placement {
    /// The group or reference, when there are several.
    group: Option<String>,
    /// 1 + the number of tags ranked strictly above it.
    rank: usize,
    /// Among the N kept.
    kept: bool,
    /// Kept, and tied with tags beyond the N (all of them are kept).
    tie: bool,
}

/// The rank key: versions above dates, each in its natural order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum RankKey {
    Date(i64),
    Version(Version),
}

/// Group names as small numbers, so a ranking sorts on integers rather than strings.
#[derive(Default)]
struct Groups {
    ids: std::collections::HashMap<String, u32>,
    names: Vec<String>,
}

impl Groups {
    fn id(&mut self, name: &str) -> u32 {
        if let Some(id) = self.ids.get(name) {
            return *id;
        }
        let id = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
        self.ids.insert(name.to_string(), id);
        self.names.push(name.to_string());
        id
    }
}

/// Ranks `entries` (group, key, tag index) within each group, keeping `keep` per group, and records each
/// tag's best placement in `out`.
fn place(
    mut entries: Vec<(u32, RankKey, usize)>,
    groups: &Groups,
    keep: usize,
    out: &mut [Option<Placement>],
) {
    entries.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| b.1.cmp(&a.1)));
    let mut start = 0;
    while start < entries.len() {
        let end = start + entries[start..].partition_point(|entry| entry.0 == entries[start].0);
        let group = &entries[start..end];
        let boundary = keep
            .checked_sub(1)
            .and_then(|last| group.get(last))
            .map(|e| &e.1);
        let name = groups
            .names
            .get(entries[start].0 as usize)
            .filter(|name| !name.is_empty());
        for (position, (_, key, index)) in group.iter().enumerate() {
            // Rank and tie come from the keys alone, so equal keys read the same whatever the order.
            let rank = group.partition_point(|other| &other.1 > key) + 1;
            let equal_end = group.partition_point(|other| &other.1 >= key);
            let kept = position < keep || boundary.is_some_and(|limit| key >= limit);
            let placement = Placement {
                group: name.cloned(),
                rank,
                kept,
                tie: kept && equal_end > keep,
            };
            let slot = &mut out[*index];
            if slot.as_ref().is_none_or(|known| !known.kept && kept) {
                *slot = Some(placement);
            }
        }
        start = end;
    }
}

/// Everything a policy computes over a whole listing before it judges one tag.
struct Evaluation<'a> {
    tags: &'a [TagRecord],
    listing: Listing<'a>,
    /// The name filters' keep decision, per tag; `None` when it passes them.
    names: Vec<Option<Decision>>,
    keep_last: Vec<Option<Placement>>,
    per_git_ref: Vec<Option<Placement>>,
}

/// One rule's finding on one tag.
enum Finding {
    /// The rule keeps it.
    Keep(Rule, String),
    /// The rule lets it go; the words say why, where they add to the reason.
    Pass(Option<String>),
}

/// The rules after the name filters, in precedence order.
#[derive(Debug, Clone, Copy)]
enum Step {
    Git,
    PerGitRef,
    KeepLast,
    Grace,
    OlderThan,
    UnpulledFor,
}

const STEPS: [Step; 6] = [
    Step::Git,
    Step::PerGitRef,
    Step::KeepLast,
    Step::Grace,
    Step::OlderThan,
    Step::UnpulledFor,
];

impl Step {
    fn option(self) -> &'static str {
        match self {
            Step::Git => "--keep-git",
            Step::PerGitRef => "--per-git-ref",
            Step::KeepLast => "--keep-last",
            Step::Grace => "--grace",
            Step::OlderThan => "--older-than",
            Step::UnpulledFor => "--unpulled-for",
        }
    }

    /// Delete rules select; keep rules only keep.
    fn selects(self) -> bool {
        matches!(self, Step::OlderThan | Step::UnpulledFor)
    }
}

impl Policy {
    /// A policy from the command-line values (the first five options; no grace window, no other rule).
    pub fn new(
        matches: &[String],
        excludes: &[String],
        keep_list: KeepList,
        older_than: Option<u64>,
        keep_last: Option<usize>,
    ) -> Result<Policy, PolicyError> {
        Policy::from_options(Options {
            matches: matches.to_vec(),
            excludes: excludes.to_vec(),
            keep_list,
            older_than,
            keep_last,
            grace: 0,
            ..Options::default()
        })
    }

    /// A policy from every option.
    pub fn from_options(options: Options) -> Result<Policy, PolicyError> {
        let compile_all = |flag: &'static str, patterns: &[String]| {
            patterns
                .iter()
                .map(|pattern| compile(flag, pattern))
                .collect::<Result<Vec<_>, _>>()
        };
        if options.per_git_ref.is_some() && options.git.is_none() {
            return Err(PolicyError::PerGitRefWithoutRepository);
        }
        Ok(Policy {
            matches: compile_all("--match", &options.matches)?,
            excludes: compile_all("--exclude", &options.excludes)?,
            keep_list: options.keep_list,
            older_than: options.older_than,
            keep_last: options.keep_last,
            group_by: options
                .group_by
                .as_deref()
                .map(|pattern| compile("--group-by", pattern))
                .transpose()?,
            sort: options.sort,
            grace: options.grace,
            unpulled_for: options.unpulled_for,
            git: options.git,
            per_git_ref: options.per_git_ref,
        })
    }

    /// Whether any rule selects or keeps tags (the grace window alone does not: it only protects). A policy
    /// without one selects every tag, which a cleanup accepts only when told so (`--all`): a forgotten
    /// `--older-than` must not empty a repository.
    pub fn has_rule(&self) -> bool {
        !self.matches.is_empty()
            || !self.excludes.is_empty()
            || !self.keep_list.is_empty()
            || self.older_than.is_some()
            || self.keep_last.is_some()
            || self.unpulled_for.is_some()
            || self.git.is_some()
    }

    /// Whether the policy needs tag dates (a rule ranks or ages tags).
    pub fn needs_dates(&self) -> bool {
        self.older_than.is_some()
            || self.keep_last.is_some()
            || self.per_git_ref.is_some()
            || self.unpulled_for.is_some()
            || self.grace > 0
    }

    /// The decision for a manifest no tag points at (`--untagged`), dated `date`, at time `now`. It goes
    /// unless the grace window or `--older-than` protects it: a manifest pushed a moment ago may be the
    /// child of an index that is being pushed. Name and ranking rules do not apply: it has no name.
    pub fn decide_untagged(&self, date: Option<i64>, now: i64) -> Decision {
        let mut reason = "no tag points at it".to_string();
        for (limit, keep_rule, what) in [
            (
                Some(self.grace).filter(|grace| *grace > 0),
                Rule::Grace,
                "the grace window",
            ),
            (self.older_than, Rule::TooNew, "--older-than"),
        ] {
            let Some(limit) = limit else { continue };
            let Some(date) = date else {
                return Decision::keep(Rule::NoDate, "untagged, but its age is unknown".into());
            };
            if !older(now, date, limit) {
                return Decision::keep(
                    keep_rule,
                    format!("untagged, not older than {} ({what})", Age(limit)),
                );
            }
            if keep_rule == Rule::TooNew {
                reason = format!("{reason}, older than {}", Age(limit));
            }
        }
        Decision {
            delete: true,
            rule: Rule::Untagged,
            reason,
        }
    }

    /// One decision per tag, in input order.
    pub fn decide(&self, tags: &[TagRecord], listing: Listing<'_>) -> Vec<Decision> {
        let evaluation = self.evaluate(tags, listing);
        (0..tags.len())
            .map(|index| self.decide_one(&evaluation, index))
            .collect()
    }

    /// Every rule's verdict on `tag` within `tags`, then the decision; `None` when `tag` is not listed.
    pub fn explain(
        &self,
        tags: &[TagRecord],
        listing: Listing<'_>,
        tag: &str,
    ) -> Option<(Vec<Verdict>, Decision)> {
        let index = tags.iter().position(|record| record.tag == tag)?;
        let evaluation = self.evaluate(tags, listing);
        let mut verdicts = Vec::new();
        let mut name_verdict = |option, kept: Option<String>, pass: String| {
            verdicts.push(Verdict {
                option,
                keeps: kept.is_some(),
                reason: kept.unwrap_or(pass),
            });
        };
        for regex in &self.matches {
            let matched = regex.is_match(tag);
            name_verdict(
                "--match",
                (!matched).then(|| format!("does not match {:?}", regex.as_str())),
                format!("matches {:?}", regex.as_str()),
            );
        }
        for regex in &self.excludes {
            name_verdict(
                "--exclude",
                regex
                    .is_match(tag)
                    .then(|| format!("matches {:?}", regex.as_str())),
                format!("does not match {:?}", regex.as_str()),
            );
        }
        if !self.keep_list.is_empty() {
            name_verdict(
                "--keep-list",
                self.keep_list
                    .matching(tag)
                    .map(|line| format!("in the keep-list as {line:?}")),
                "in no keep-list line".into(),
            );
        }
        for step in STEPS {
            let Some(finding) = self.finding(&evaluation, index, step) else {
                continue;
            };
            verdicts.push(match finding {
                Finding::Keep(_, reason) => Verdict {
                    option: step.option(),
                    keeps: true,
                    reason,
                },
                Finding::Pass(reason) => Verdict {
                    option: step.option(),
                    keeps: false,
                    reason: reason.unwrap_or_else(|| {
                        if step.selects() {
                            "selects it"
                        } else {
                            "does not keep it"
                        }
                        .into()
                    }),
                },
            });
        }
        Some((verdicts, self.decide_one(&evaluation, index)))
    }

    fn evaluate<'a>(&self, tags: &'a [TagRecord], listing: Listing<'a>) -> Evaluation<'a> {
        let names: Vec<Option<Decision>> =
            tags.iter().map(|tag| self.name_filter(&tag.tag)).collect();
        let key = |tag: &TagRecord| match self.sort {
            Sort::Semver => Version::parse(&tag.tag)
                .map(RankKey::Version)
                .or(tag.created.map(RankKey::Date)),
            Sort::Date => tag.created.map(RankKey::Date),
        };
        let ranked = || {
            tags.iter()
                .enumerate()
                .filter(|(index, _)| names[*index].is_none())
                .filter_map(move |(index, tag)| Some((index, tag, key(tag)?)))
        };
        let mut keep_last = vec![None; tags.len()];
        if let Some(keep) = self.keep_last {
            let mut groups = Groups::default();
            let mut locations = None;
            let entries = ranked()
                .filter_map(|(index, tag, key)| {
                    Some((
                        groups.id(&self.group_key(&tag.tag, &mut locations)?),
                        key,
                        index,
                    ))
                })
                .collect();
            place(entries, &groups, keep, &mut keep_last);
        }
        let mut per_git_ref = vec![None; tags.len()];
        if let (Some(keep), Some(git)) = (self.per_git_ref, &self.git) {
            let mut groups = Groups::default();
            let mut entries = Vec::new();
            for (index, tag, key) in ranked() {
                for name in git.carried_by(&tag.tag) {
                    entries.push((groups.id(name), key.clone(), index));
                }
            }
            place(entries, &groups, keep, &mut per_git_ref);
        }
        Evaluation {
            tags,
            listing,
            names,
            keep_last,
            per_git_ref,
        }
    }

    /// The `--group-by` group of `tag`: its captures (or the whole match when the regex has none); `None`
    /// when the regex does not match. Without `--group-by` every tag is in the one unnamed group.
    fn group_of(&self, tag: &str) -> Option<String> {
        let mut locations = None;
        self.group_key(tag, &mut locations).map(Cow::into_owned)
    }

    /// [`Policy::group_of`] reusing `locations` across calls and borrowing from `tag` where it can: it
    /// runs once per tag of a listing.
    fn group_key<'t>(
        &self,
        tag: &'t str,
        locations: &mut Option<CaptureLocations>,
    ) -> Option<Cow<'t, str>> {
        let Some(regex) = &self.group_by else {
            return Some(Cow::Borrowed(""));
        };
        let locations = locations.get_or_insert_with(|| regex.capture_locations());
        regex.captures_read(locations, tag)?;
        let part = |group: usize| {
            locations
                .get(group)
                .map_or("", |(start, end)| &tag[start..end])
        };
        Some(match locations.len() {
            0 | 1 => Cow::Borrowed(part(0)),
            2 => Cow::Borrowed(part(1)),
            groups => Cow::Owned((1..groups).map(part).collect::<Vec<_>>().join(" ")),
        })
    }

    fn decide_one(&self, evaluation: &Evaluation<'_>, index: usize) -> Decision {
        if let Some(kept) = &evaluation.names[index] {
            return kept.clone();
        }
        let mut selected = Vec::new();
        let mut beyond = None;
        for step in STEPS {
            match self.finding(evaluation, index, step) {
                None | Some(Finding::Pass(None)) => {}
                Some(Finding::Keep(rule, reason)) => return Decision::keep(rule, reason),
                Some(Finding::Pass(Some(reason))) if step.selects() => selected.push(reason),
                Some(Finding::Pass(Some(reason))) => {
                    if matches!(step, Step::KeepLast) {
                        beyond = Some(reason);
                    }
                }
            }
        }
        selected.extend(beyond);
        Decision {
            delete: true,
            rule: Rule::Selected,
            reason: if selected.is_empty() {
                self.selected_reason()
            } else {
                selected.join(", ")
            },
        }
    }

    /// What `step` finds for tag `index`; `None` when the rule is not set.
    fn finding(&self, evaluation: &Evaluation<'_>, index: usize, step: Step) -> Option<Finding> {
        let tag = &evaluation.tags[index];
        let now = evaluation.listing.now;
        let no_date = |what: &str| {
            Finding::Keep(
                Rule::NoDate,
                format!("no date: its age is unknown, so {what} cannot select it"),
            )
        };
        Some(match step {
            Step::Git => {
                let git = self.git.as_ref()?;
                match git.named_by(&tag.tag) {
                    Some(reason) => Finding::Keep(Rule::GitRef, reason),
                    None => Finding::Pass(Some("names no git branch, tag or head commit".into())),
                }
            }
            Step::PerGitRef => {
                let keep = self.per_git_ref?;
                match &evaluation.per_git_ref[index] {
                    Some(placement) if placement.kept => Finding::Keep(
                        Rule::PerGitRef,
                        self.ranked_reason(placement, keep, "for the git reference"),
                    ),
                    Some(placement) => Finding::Pass(Some(format!(
                        "beyond the {keep} {} for the git reference {}",
                        self.sort.word(),
                        placement.group.as_deref().unwrap_or("")
                    ))),
                    None => Finding::Pass(None),
                }
            }
            Step::KeepLast => {
                let keep = self.keep_last?;
                match &evaluation.keep_last[index] {
                    Some(placement) if placement.kept => Finding::Keep(
                        Rule::KeepLast,
                        self.ranked_reason(placement, keep, "of the group"),
                    ),
                    Some(placement) => Finding::Pass(Some(format!(
                        "beyond the {keep} {}{}",
                        self.sort.word(),
                        group_words(placement.group.as_deref(), "of the group")
                    ))),
                    None if self.group_of(&tag.tag).is_none() => {
                        Finding::Pass(Some("in no --group-by group".into()))
                    }
                    None => no_date("--keep-last"),
                }
            }
            Step::Grace => {
                if self.grace == 0 {
                    return None;
                }
                match tag.created {
                    None => no_date("the grace window"),
                    Some(created) if !older(now, created, self.grace) => Finding::Keep(
                        Rule::Grace,
                        format!(
                            "pushed {} ago, within the {} grace window",
                            Age(now.saturating_sub(created).max(0).unsigned_abs()),
                            Age(self.grace)
                        ),
                    ),
                    Some(_) => Finding::Pass(None),
                }
            }
            Step::OlderThan => {
                let limit = self.older_than?;
                match tag.created {
                    None => no_date("--older-than"),
                    Some(created) if older(now, created, limit) => Finding::Pass(Some(format!(
                        "{} old, older than {}",
                        Age(now.saturating_sub(created).unsigned_abs()),
                        Age(limit)
                    ))),
                    Some(_) => {
                        Finding::Keep(Rule::TooNew, format!("not older than {}", Age(limit)))
                    }
                }
            }
            Step::UnpulledFor => {
                let limit = self.unpulled_for?;
                if let Some(why) = evaluation.listing.pulls_unrecorded {
                    return Some(Finding::Keep(
                        Rule::NoPullData,
                        format!("--unpulled-for cannot select it: {why}"),
                    ));
                }
                // Never pulled: unpulled since its push.
                let (since, what) = match (tag.last_pulled, tag.created) {
                    (Some(pulled), _) => (pulled, "last pulled"),
                    (None, Some(created)) => (created, "never pulled, pushed"),
                    (None, None) => return Some(no_date("--unpulled-for")),
                };
                let ago = Age(now.saturating_sub(since).max(0).unsigned_abs());
                if older(now, since, limit) {
                    Finding::Pass(Some(format!(
                        "{what} {ago} ago, unpulled for more than {}",
                        Age(limit)
                    )))
                } else {
                    Finding::Keep(
                        Rule::RecentlyPulled,
                        format!("{what} {ago} ago, within {}", Age(limit)),
                    )
                }
            }
        })
    }

    fn ranked_reason(&self, placement: &Placement, keep: usize, group: &str) -> String {
        let word = self.sort.word();
        let group = group_words(placement.group.as_deref(), group);
        let tie = if placement.tie {
            match self.sort {
                Sort::Date => ", dated the same as others there: all kept",
                Sort::Semver => ", the same version as others there: all kept",
            }
        } else {
            ""
        };
        format!("among the {keep} {word}{group} (#{}{tie})", placement.rank)
    }

    fn selected_reason(&self) -> String {
        if self.matches.is_empty() {
            "no rule keeps it".into()
        } else {
            "matches every --match".into()
        }
    }

    /// The keep decision of the name filters, or `None` when the tag passes them.
    fn name_filter(&self, tag: &str) -> Option<Decision> {
        if let Some(regex) = self.matches.iter().find(|regex| !regex.is_match(tag)) {
            return Some(Decision::keep(
                Rule::NotMatched,
                format!("does not match --match {:?}", regex.as_str()),
            ));
        }
        if let Some(regex) = self.excludes.iter().find(|regex| regex.is_match(tag)) {
            return Some(Decision::keep(
                Rule::Excluded,
                format!("matches --exclude {:?}", regex.as_str()),
            ));
        }
        self.keep_list.matching(tag).map(|pattern| {
            Decision::keep(Rule::KeepList, format!("in the keep-list as {pattern:?}"))
        })
    }
}

/// The policies a run applies: one from the command line, or the named policies of the config file, each
/// for its repositories.
#[derive(Debug, Clone)]
pub struct Policies {
    entries: Vec<(Option<String>, Vec<String>, Policy)>,
}

impl Policies {
    /// Whether the run selects by at least one rule: a named policy from the config file always counts (its
    /// author chose it), a command-line policy when [`Policy::has_rule`] says so.
    pub fn has_rule(&self) -> bool {
        self.entries
            .iter()
            .all(|(name, _, policy)| name.is_some() || policy.has_rule())
    }

    /// One policy for every repository of the run.
    pub fn single(policy: Policy) -> Policies {
        Policies {
            entries: vec![(None, Vec::new(), policy)],
        }
    }

    /// Named policies, each with the repository patterns it covers.
    pub fn named(entries: Vec<(String, Vec<String>, Policy)>) -> Policies {
        Policies {
            entries: entries
                .into_iter()
                .map(|(name, repositories, policy)| (Some(name), repositories, policy))
                .collect(),
        }
    }

    /// The policies that cover `repository`, with their names.
    pub fn for_repository(
        &self,
        repository: &crate::reference::Repository,
    ) -> Vec<(Option<&str>, &Policy)> {
        self.entries
            .iter()
            .filter(|(_, patterns, _)| {
                patterns.is_empty()
                    || patterns
                        .iter()
                        .any(|pattern| file::covers(pattern, repository))
            })
            .map(|(name, _, policy)| (name.as_deref(), policy))
            .collect()
    }

    /// The decisions of several policies on one listing, combined by the precedence rule: a policy
    /// whose `--match` a tag fails does not judge it; among the others, any keep wins (the first policy
    /// that keeps it is named); a tag is deleted only when every policy that judges it selects it, and
    /// kept when none judges it.
    pub fn decide(
        policies: &[(Option<&str>, &Policy)],
        tags: &[TagRecord],
        listing: Listing<'_>,
    ) -> Vec<Decision> {
        let all: Vec<Vec<Decision>> = policies
            .iter()
            .map(|(name, policy)| {
                let mut decisions = policy.decide(tags, listing);
                if let Some(name) = name {
                    for decision in &mut decisions {
                        decision.reason = format!("policy {name}: {}", decision.reason);
                    }
                }
                decisions
            })
            .collect();
        (0..tags.len())
            .map(|index| {
                let mut judging = all
                    .iter()
                    .map(|decisions| &decisions[index])
                    .filter(|decision| decision.rule != Rule::NotMatched)
                    .peekable();
                let first = judging.peek().copied();
                judging
                    .find(|decision| !decision.delete)
                    .or(first)
                    .or_else(|| all.first().map(|decisions| &decisions[index]))
                    .cloned()
                    .unwrap_or_else(|| {
                        Decision::keep(Rule::NotMatched, "no policy covers it".into())
                    })
            })
            .collect()
    }

    /// The combined decision for an untagged manifest: any keep wins.
    pub fn decide_untagged(
        policies: &[(Option<&str>, &Policy)],
        date: Option<i64>,
        now: i64,
    ) -> Decision {
        let decisions: Vec<Decision> = policies
            .iter()
            .map(|(_, policy)| policy.decide_untagged(date, now))
            .collect();
        decisions
            .iter()
            .find(|decision| !decision.delete)
            .or(decisions.first())
            .cloned()
            .unwrap_or_else(|| Decision::keep(Rule::NotMatched, "no policy covers it".into()))
    }
}

/// ` of the group "main"`, or nothing for the one unnamed group.
fn group_words(group: Option<&str>, what: &str) -> String {
    group.map_or(String::new(), |group| format!(" {what} {group:?}"))
}

/// Whether `date` lies strictly more than `limit` seconds before `now` (a future date is never old).
fn older(now: i64, date: i64, limit: u64) -> bool {
    let age = now.saturating_sub(date);
    age > 0 && age.unsigned_abs() > limit
}

const UNITS: [(char, u64); 5] = [
    ('w', 7 * 86_400),
    ('d', 86_400),
    ('h', 3_600),
    ('m', 60),
    ('s', 1),
];

/// Parses `30d`, `12h`, `1d12h`, `2w`, `90m`, `45s` into seconds. A bare number is refused: `30` could mean
/// seconds or days, and guessing wrong deletes the wrong tags.
pub fn parse_duration(input: &str) -> Result<u64, PolicyError> {
    let invalid = || PolicyError::Duration {
        input: input.to_string(),
    };
    let text = input.trim();
    // Zero needs no unit: it is zero in every unit.
    if text == "0" {
        return Ok(0);
    }
    if text.is_empty() {
        return Err(invalid());
    }
    let mut total: u64 = 0;
    let mut number: Option<u64> = None;
    for c in text.chars() {
        if let Some(digit) = c.to_digit(10) {
            number = Some(
                number
                    .unwrap_or(0)
                    .checked_mul(10)
                    .and_then(|n| n.checked_add(u64::from(digit)))
                    .ok_or_else(invalid)?,
            );
            continue;
        }
        let unit = UNITS
            .iter()
            .find(|(name, _)| *name == c.to_ascii_lowercase())
            .ok_or_else(invalid)?
            .1;
        let value = number.take().ok_or_else(invalid)?;
        total = value
            .checked_mul(unit)
            .and_then(|seconds| total.checked_add(seconds))
            .ok_or_else(invalid)?;
    }
    if number.is_some() {
        return Err(invalid());
    }
    Ok(total)
}

/// A duration the way [`parse_duration`] reads it, rounded down to its largest unit and the one below
/// (`3d4h`, `40d`, `5m`, `0s`): enough to judge an age at a glance.
pub fn format_age(seconds: u64) -> String {
    Age(seconds).to_string()
}

/// [`format_age`] as a `Display`, so a reason is written in one allocation.
#[derive(Clone, Copy)]
struct Age(u64);

impl fmt::Display for Age {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seconds = self.0;
        let units = &UNITS[1..];
        let Some(first) = units.iter().position(|(_, unit)| seconds >= *unit) else {
            return f.write_str("0s");
        };
        let (name, unit) = units[first];
        write!(f, "{}{name}", seconds / unit)?;
        if let Some((next_name, next_unit)) = units.get(first + 1) {
            let rest = seconds % unit / next_unit;
            if rest > 0 {
                write!(f, "{rest}{next_name}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untagged_manifests_go_unless_an_age_limit_protects_them() {
        const NOW: i64 = 1_700_000_000;
        let policy =
            |older_than| Policy::new(&[], &[], KeepList::default(), older_than, None).unwrap();
        let any = policy(None).decide_untagged(None, NOW);
        assert!(any.delete);
        assert_eq!(
            (any.rule, any.reason.as_str()),
            (Rule::Untagged, "no tag points at it")
        );
        let day = 86_400;
        let limited = policy(Some(day as u64));
        assert!(limited.decide_untagged(Some(NOW - 2 * day), NOW).delete);
        let fresh = limited.decide_untagged(Some(NOW - 60), NOW);
        assert_eq!((fresh.delete, fresh.rule), (false, Rule::TooNew));
        let undated = limited.decide_untagged(None, NOW);
        assert_eq!((undated.delete, undated.rule), (false, Rule::NoDate));
        let future = limited.decide_untagged(Some(NOW + 5 * day), NOW);
        assert!(!future.delete);
    }

    const NOW: i64 = 1_700_000_000;
    const DAY: i64 = 86_400;

    fn at(now: i64) -> Listing<'static> {
        Listing {
            now,
            pulls_unrecorded: None,
        }
    }

    fn tag(name: &str, days_old: Option<i64>) -> TagRecord {
        TagRecord::new(name, days_old.map(|days| NOW - days * DAY))
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn policy(
        matches: &[&str],
        excludes: &[&str],
        keep_list: &str,
        older_than_days: Option<u64>,
        keep_last: Option<usize>,
    ) -> Policy {
        Policy::new(
            &strings(matches),
            &strings(excludes),
            KeepList::parse(keep_list),
            older_than_days.map(|days| days * 86_400),
            keep_last,
        )
        .unwrap()
    }

    #[test]
    fn a_policy_without_any_rule_says_so() {
        assert!(!policy(&[], &[], "", None, None).has_rule());
        assert!(!policy(&[], &[], "# only a comment\n", None, None).has_rule());
        assert!(policy(&["^pr-"], &[], "", None, None).has_rule());
        assert!(policy(&[], &["^v"], "", None, None).has_rule());
        assert!(policy(&[], &[], "latest", None, None).has_rule());
        assert!(policy(&[], &[], "", Some(30), None).has_rule());
        assert!(policy(&[], &[], "", None, Some(5)).has_rule());
        let grace_only = Policy::from_options(Options::default()).unwrap();
        assert!(!grace_only.has_rule());
        assert!(!Policies::single(grace_only.clone()).has_rule());
        assert!(Policies::named(vec![("nightly".into(), vec![], grace_only)]).has_rule());
    }

    /// The deleted tags, in input order.
    fn deleted(policy: &Policy, tags: &[TagRecord]) -> Vec<String> {
        policy
            .decide(tags, at(NOW))
            .iter()
            .zip(tags)
            .filter(|(decision, _)| decision.delete)
            .map(|(_, tag)| tag.tag.clone())
            .collect()
    }

    fn rules(policy: &Policy, tags: &[TagRecord]) -> Vec<Rule> {
        policy
            .decide(tags, at(NOW))
            .iter()
            .map(|d| d.rule)
            .collect()
    }

    #[test]
    fn no_rules_select_every_tag() {
        let tags = [tag("a", Some(1)), tag("b", None)];
        assert_eq!(
            deleted(&policy(&[], &[], "", None, None), &tags),
            ["a", "b"]
        );
    }

    #[test]
    fn keep_last_keeps_the_newest_whatever_the_input_order() {
        let tags = [
            tag("old", Some(30)),
            tag("newest", Some(1)),
            tag("mid", Some(10)),
            tag("older", Some(40)),
        ];
        let policy = policy(&[], &[], "", None, Some(2));
        assert_eq!(deleted(&policy, &tags), ["old", "older"]);
        let decisions = policy.decide(&tags, at(NOW));
        assert_eq!(decisions[1].reason, "among the 2 newest (#1)");
        assert_eq!(decisions[2].reason, "among the 2 newest (#2)");
        assert_eq!(decisions[0].reason, "beyond the 2 newest");
    }

    #[test]
    fn keep_last_zero_and_keep_last_beyond_the_count() {
        let tags = [tag("a", Some(1)), tag("b", Some(2))];
        assert_eq!(
            deleted(&policy(&[], &[], "", None, Some(0)), &tags),
            ["a", "b"]
        );
        assert!(deleted(&policy(&[], &[], "", None, Some(5)), &tags).is_empty());
        assert!(deleted(&policy(&[], &[], "", None, Some(2)), &tags).is_empty());
    }

    #[test]
    fn ties_at_the_keep_last_boundary_are_all_kept() {
        let tags = [
            tag("new", Some(1)),
            tag("tie-a", Some(5)),
            tag("tie-b", Some(5)),
            tag("tie-c", Some(5)),
            tag("old", Some(9)),
        ];
        let policy = policy(&[], &[], "", None, Some(2));
        assert_eq!(deleted(&policy, &tags), ["old"]);
        let decisions = policy.decide(&tags, at(NOW));
        for tied in &decisions[1..4] {
            assert_eq!(
                tied.reason,
                "among the 2 newest (#2, dated the same as others there: all kept)"
            );
        }
        assert_eq!(decisions[0].reason, "among the 2 newest (#1)");
    }

    #[test]
    fn ties_below_the_boundary_do_not_extend_it() {
        let tags = [
            tag("a", Some(1)),
            tag("b", Some(2)),
            tag("c", Some(3)),
            tag("d", Some(3)),
        ];
        assert_eq!(
            deleted(&policy(&[], &[], "", None, Some(2)), &tags),
            ["c", "d"]
        );
    }

    #[test]
    fn older_than_is_strict_and_ignores_future_dates() {
        let tags = [
            tag("exactly", Some(30)),
            tag("older", Some(31)),
            tag("younger", Some(29)),
            tag("future", Some(-3)),
        ];
        let policy = policy(&[], &[], "", Some(30), None);
        assert_eq!(deleted(&policy, &tags), ["older"]);
        let decisions = policy.decide(&tags, at(NOW));
        assert_eq!(decisions[1].reason, "31d old, older than 30d");
        assert_eq!(decisions[0].rule, Rule::TooNew);
        assert_eq!(decisions[3].rule, Rule::TooNew);
    }

    #[test]
    fn tags_without_dates_are_kept_by_every_age_rule() {
        let tags = [tag("dated", Some(100)), tag("undated", None)];
        for policy in [
            policy(&[], &[], "", Some(1), None),
            policy(&[], &[], "", None, Some(0)),
            policy(&[], &[], "", Some(1), Some(0)),
        ] {
            assert_eq!(deleted(&policy, &tags), ["dated"]);
            assert_eq!(rules(&policy, &tags)[1], Rule::NoDate);
        }
        // A dateless tag does not take one of the keep-last places.
        let tags = [
            tag("undated", None),
            tag("new", Some(1)),
            tag("old", Some(2)),
        ];
        assert_eq!(
            deleted(&policy(&[], &[], "", None, Some(1)), &tags),
            ["old"]
        );
    }

    #[test]
    fn keep_last_ranks_before_the_age_test() {
        let tags = [
            tag("a", Some(100)),
            tag("b", Some(90)),
            tag("c", Some(80)),
            tag("d", Some(1)),
        ];
        let policy = policy(&[], &[], "", Some(30), Some(2));
        assert_eq!(deleted(&policy, &tags), ["a", "b"]);
        assert_eq!(
            policy.decide(&tags, at(NOW))[0].reason,
            "100d old, older than 30d, beyond the 2 newest"
        );
        assert_eq!(
            rules(&policy, &tags),
            [
                Rule::Selected,
                Rule::Selected,
                Rule::KeepLast,
                Rule::KeepLast
            ]
        );
    }

    #[test]
    fn match_and_exclude() {
        let tags = [
            tag("v1.0", Some(10)),
            tag("v1.1-rc", Some(10)),
            tag("main-abc", Some(10)),
            tag("v2.0", Some(10)),
        ];
        let only_v = policy(&["^v"], &["-rc$"], "", None, None);
        assert_eq!(deleted(&only_v, &tags), ["v1.0", "v2.0"]);
        assert_eq!(rules(&only_v, &tags)[1], Rule::Excluded);
        assert_eq!(rules(&only_v, &tags)[2], Rule::NotMatched);
        // Every --match must match.
        let both = policy(&["^v", r"\.0$"], &[], "", None, None);
        assert_eq!(deleted(&both, &tags), ["v1.0", "v2.0"]);
        // Unanchored search.
        assert_eq!(
            deleted(&policy(&["abc"], &[], "", None, None), &tags),
            ["main-abc"]
        );
    }

    #[test]
    fn filters_come_before_keep_last() {
        // keep-last ranks only the tags that passed the name filters.
        let tags = [
            tag("release-1", Some(30)),
            tag("release-2", Some(20)),
            tag("feature", Some(1)),
        ];
        let policy = policy(&["^release-"], &[], "", None, Some(1));
        assert_eq!(deleted(&policy, &tags), ["release-1"]);
    }

    #[test]
    fn keep_list_globs_and_comments() {
        let list = KeepList::parse("# production\nv1.*  # pinned\n\n  stable \nrc-??\n#latest\n");
        assert_eq!(list.len(), 3);
        assert_eq!(list.matching("v1.2.3"), Some("v1.*"));
        assert_eq!(list.matching("stable"), Some("stable"));
        assert_eq!(list.matching("rc-12"), Some("rc-??"));
        assert_eq!(list.matching("rc-123"), None);
        assert_eq!(list.matching("latest"), None);
        assert_eq!(list.matching("v2"), None);
        let tags = [
            tag("v1.0", Some(99)),
            tag("stable", Some(99)),
            tag("x", Some(99)),
        ];
        let policy = Policy::new(&[], &[], list, Some(86_400), None).unwrap();
        assert_eq!(deleted(&policy, &tags), ["x"]);
        assert_eq!(
            policy.decide(&tags, at(NOW))[0].reason,
            "in the keep-list as \"v1.*\""
        );
        assert!(KeepList::parse("\n# only comments\n").is_empty());
    }

    #[test]
    fn globs() {
        for (pattern, text, expected) in [
            ("*", "", true),
            ("*", "anything", true),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXbYY", false),
            ("a*", "a", true),
            ("*a", "bbba", true),
            ("*a", "bbab", false),
            ("?", "", false),
            ("??", "ab", true),
            ("a**b", "ab", true),
            ("main-*-amd64", "main-1234-amd64", true),
            ("exact", "exactly", false),
            ("*x*y*z*", "axbyczd", true),
        ] {
            assert_eq!(glob_matches(pattern, text), expected, "{pattern} {text}");
        }
    }

    #[test]
    fn invalid_regexes_name_the_flag() {
        let error =
            Policy::new(&strings(&["("]), &[], KeepList::default(), None, None).unwrap_err();
        assert!(
            error.to_string().starts_with("invalid --match regex \"(\""),
            "{error}"
        );
        let error =
            Policy::new(&[], &strings(&["[z-a]"]), KeepList::default(), None, None).unwrap_err();
        assert!(
            error.to_string().starts_with("invalid --exclude regex"),
            "{error}"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30d").unwrap(), 30 * 86_400);
        assert_eq!(parse_duration("1d12h").unwrap(), 36 * 3_600);
        assert_eq!(parse_duration("2w").unwrap(), 14 * 86_400);
        assert_eq!(parse_duration("90m").unwrap(), 5_400);
        assert_eq!(parse_duration(" 45s ").unwrap(), 45);
        assert_eq!(parse_duration("720H").unwrap(), 720 * 3_600);
        assert_eq!(parse_duration("0s").unwrap(), 0);
        for bad in [
            "",
            "30",
            "d",
            "1x",
            "1d2",
            "-1d",
            "1.5d",
            "99999999999999999999w",
            "d1",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_duration("30").unwrap_err().to_string(),
            "invalid duration \"30\": use a number with a unit s, m, h, d or w, e.g. 30d or 1d12h (0 for none)"
        );
        assert_eq!(parse_duration("0").unwrap(), 0);
    }

    #[test]
    fn ages_read_back() {
        assert_eq!(format_age(0), "0s");
        assert_eq!(format_age(59), "59s");
        assert_eq!(format_age(3 * 86_400 + 4 * 3_600 + 5), "3d4h");
        assert_eq!(format_age(86_400 + 30), "1d");
        assert_eq!(format_age(40 * 86_400 + 1), "40d");
        assert_eq!(format_age(3_600 + 60 + 1), "1h1m");
        assert_eq!(format_age(100 * 86_400), "100d");
        assert_eq!(
            parse_duration(&format_age(3 * 86_400 + 4 * 3_600)).unwrap(),
            3 * 86_400 + 4 * 3_600
        );
    }

    fn with(options: Options) -> Policy {
        Policy::from_options(Options {
            grace: 0,
            ..options
        })
        .unwrap()
    }

    fn decisions(policy: &Policy, tags: &[TagRecord]) -> Vec<(String, bool, Rule)> {
        policy
            .decide(tags, at(NOW))
            .into_iter()
            .zip(tags)
            .map(|(decision, tag)| (tag.tag.clone(), decision.delete, decision.rule))
            .collect()
    }

    #[test]
    fn grace_keeps_what_was_pushed_within_it_against_every_delete_rule() {
        let tags = [
            tag("fresh", Some(0)),
            tag("old", Some(3)),
            TagRecord::new("minutes", Some(NOW - 600)),
            tag("undated", None),
        ];
        let policy = Policy::from_options(Options::default()).unwrap();
        assert_eq!(deleted(&policy, &tags), ["old"]);
        let decided = policy.decide(&tags, at(NOW));
        assert_eq!(decided[0].rule, Rule::Grace);
        assert_eq!(
            decided[2].reason,
            "pushed 10m ago, within the 2h grace window"
        );
        assert_eq!(decided[3].rule, Rule::NoDate);
        // --grace 0 turns it off: a dateless tag is selected by the name rules alone again.
        let off = with(Options::default());
        assert_eq!(deleted(&off, &tags), ["fresh", "old", "minutes", "undated"]);
        // Untagged manifests too.
        assert!(!policy.decide_untagged(Some(NOW - 60), NOW).delete);
        assert!(!policy.decide_untagged(None, NOW).delete);
        assert!(policy.decide_untagged(Some(NOW - 3 * DAY), NOW).delete);
    }

    #[test]
    fn semver_sort_ranks_versions_above_other_tags_and_prereleases_below_releases() {
        let tags = [
            tag("v1.10.0", Some(50)),
            tag("1.9.0", Some(1)),
            tag("v2.0.0-rc.1", Some(0)),
            tag("v2.0.0", Some(70)),
            tag("v1.10.0_build.2", Some(60)),
            tag("latest", Some(0)),
            tag("nightly", None),
        ];
        let semver = |keep| {
            with(Options {
                keep_last: Some(keep),
                sort: Sort::Semver,
                ..Options::default()
            })
        };
        // The release outranks its pre-release, which outranks 1.10.0, which outranks 1.9.0.
        assert_eq!(
            deleted(&semver(2), &tags),
            ["v1.10.0", "1.9.0", "v1.10.0_build.2", "latest"]
        );
        let decided = semver(3).decide(&tags, at(NOW));
        assert_eq!(deleted(&semver(3), &tags), ["1.9.0", "latest"]);
        assert_eq!(decided[3].reason, "among the 3 highest (#1)");
        // The build-metadata twin ties with the #3 and stays.
        assert_eq!(
            decided[4].reason,
            "among the 3 highest (#3, the same version as others there: all kept)"
        );
        assert_eq!(decided[6].rule, Rule::NoDate);
        // With room for every version, non-versions come next, by date.
        assert_eq!(deleted(&semver(6), &tags), Vec::<String>::new());
        assert_eq!(decided[5].reason, "beyond the 3 highest");
        // Date order for the same tags keeps the newest pushes.
        let by_date = with(Options {
            keep_last: Some(2),
            ..Options::default()
        });
        assert_eq!(
            deleted(&by_date, &tags),
            ["v1.10.0", "1.9.0", "v2.0.0", "v1.10.0_build.2"]
        );
    }

    #[test]
    fn group_by_keeps_n_per_group_and_leaves_unmatched_tags_unranked() {
        let mut tags = Vec::new();
        for day in 1..=4 {
            tags.push(tag(&format!("main-{day}"), Some(day)));
        }
        tags.push(tag("release-1-a", Some(9)));
        tags.push(tag("release-2-a", Some(8)));
        tags.push(tag("release-2-b", Some(7)));
        tags.push(tag("pr-7", Some(1)));
        let policy = with(Options {
            keep_last: Some(2),
            group_by: Some("^(main|release-[0-9]+)-".into()),
            ..Options::default()
        });
        assert_eq!(deleted(&policy, &tags), ["main-3", "main-4", "pr-7"]);
        let decided = policy.decide(&tags, at(NOW));
        assert_eq!(
            decided[0].reason,
            "among the 2 newest of the group \"main\" (#1)"
        );
        assert_eq!(
            decided[2].reason,
            "beyond the 2 newest of the group \"main\""
        );
        assert_eq!(decided[7].reason, "in no --group-by group");
        assert!(
            Policy::from_options(Options {
                group_by: Some("(".into()),
                ..Options::default()
            })
            .unwrap_err()
            .to_string()
            .starts_with("invalid --group-by regex")
        );
    }

    fn git() -> GitRefs {
        GitRefs::parse(
            "aaaaaaa1111111111111111111111111111111111  refs/heads/main\n\
             bbbbbbb2222222222222222222222222222222222  refs/heads/feature/x\n\
             ccccccc3333333333333333333333333333333333  refs/tags/v1.2.0\n",
        )
    }

    #[test]
    fn git_references_keep_their_tags_and_heads_and_n_per_reference() {
        let tags = [
            tag("main", Some(30)),
            tag("feature-x", Some(30)),
            tag("v1.2.0", Some(30)),
            tag("aaaaaaa1", Some(30)),
            tag("main-3", Some(3)),
            tag("main-2", Some(2)),
            tag("main-1", Some(1)),
            tag("feature-x-9", Some(9)),
            tag("deleted-branch", Some(30)),
            tag("deleted-branch-4", Some(4)),
        ];
        let exact = with(Options {
            git: Some(git()),
            ..Options::default()
        });
        assert_eq!(
            deleted(&exact, &tags),
            [
                "main-3",
                "main-2",
                "main-1",
                "feature-x-9",
                "deleted-branch",
                "deleted-branch-4"
            ]
        );
        let per_ref = with(Options {
            git: Some(git()),
            per_git_ref: Some(2),
            ..Options::default()
        });
        let decided = decisions(&per_ref, &tags);
        let rule = |name: &str| decided.iter().find(|d| d.0 == name).unwrap().2;
        assert_eq!(rule("main"), Rule::GitRef);
        assert_eq!(rule("aaaaaaa1"), Rule::GitRef);
        // "main" itself is the newest? No: main-1 and main-2 are newer than the tag "main".
        assert_eq!(rule("main-1"), Rule::PerGitRef);
        assert_eq!(rule("main-2"), Rule::PerGitRef);
        assert_eq!(rule("main-3"), Rule::Selected);
        assert_eq!(rule("feature-x-9"), Rule::PerGitRef);
        assert_eq!(rule("deleted-branch"), Rule::Selected);
        assert_eq!(rule("deleted-branch-4"), Rule::Selected);
        assert_eq!(
            Policy::from_options(Options {
                per_git_ref: Some(1),
                ..Options::default()
            })
            .unwrap_err(),
            PolicyError::PerGitRefWithoutRepository
        );
    }

    #[test]
    fn unpulled_for_uses_pull_times_or_says_why_it_cannot() {
        let pulled = |name: &str, pushed: i64, pulled: Option<i64>| TagRecord {
            tag: name.into(),
            created: Some(NOW - pushed * DAY),
            last_pulled: pulled.map(|days| NOW - days * DAY),
        };
        let tags = [
            pulled("hot", 90, Some(1)),
            pulled("cold", 90, Some(40)),
            pulled("never", 90, None),
            pulled("never-new", 5, None),
        ];
        let policy = with(Options {
            unpulled_for: Some(30 * 86_400),
            ..Options::default()
        });
        assert_eq!(deleted(&policy, &tags), ["cold", "never"]);
        let decided = policy.decide(&tags, at(NOW));
        assert_eq!(decided[0].reason, "last pulled 1d ago, within 30d");
        assert_eq!(
            decided[2].reason,
            "never pulled, pushed 90d ago, unpulled for more than 30d"
        );
        let unrecorded = Listing {
            now: NOW,
            pulls_unrecorded: Some("the default implementation's listing carries no pull times"),
        };
        let decided = policy.decide(&tags, unrecorded);
        assert!(
            decided
                .iter()
                .all(|d| !d.delete && d.rule == Rule::NoPullData)
        );
        // Combined with --older-than, both must select.
        let both = with(Options {
            unpulled_for: Some(30 * 86_400),
            older_than: Some(100 * 86_400),
            ..Options::default()
        });
        assert!(deleted(&both, &tags).is_empty());
    }

    #[test]
    fn explain_gives_every_rules_verdict_and_the_winner() {
        let tags = [
            tag("main-1", Some(1)),
            tag("main", Some(40)),
            tag("x", Some(40)),
        ];
        let policy = Policy::from_options(Options {
            excludes: vec!["^x$".into()],
            keep_last: Some(1),
            older_than: Some(30 * 86_400),
            git: Some(git()),
            ..Options::default()
        })
        .unwrap();
        let (verdicts, decision) = policy.explain(&tags, at(NOW), "main").unwrap();
        let options: Vec<&str> = verdicts.iter().map(|v| v.option).collect();
        assert_eq!(
            options,
            [
                "--exclude",
                "--keep-git",
                "--keep-last",
                "--grace",
                "--older-than"
            ]
        );
        let keeps: Vec<bool> = verdicts.iter().map(|v| v.keeps).collect();
        assert_eq!(keeps, [false, true, false, false, false]);
        assert_eq!(verdicts[4].reason, "40d old, older than 30d");
        assert_eq!((decision.delete, decision.rule), (false, Rule::GitRef));
        assert!(policy.explain(&tags, at(NOW), "absent").is_none());
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        const NAMES: [&str; 12] = [
            "main",
            "main-1",
            "main-2",
            "feature-x",
            "feature-x-3",
            "v1.2.0",
            "v1.2.0-rc.1",
            "1.10.0",
            "release-1-a",
            "release-2-b",
            "latest",
            "aaaaaaa1",
        ];

        fn records() -> impl Strategy<Value = Vec<TagRecord>> {
            prop::collection::btree_map(
                prop::sample::select(NAMES.to_vec()),
                (
                    prop::option::weighted(0.85, -2i64..60),
                    prop::option::of(0i64..60),
                ),
                0..NAMES.len(),
            )
            .prop_map(|tags| {
                tags.into_iter()
                    .map(|(name, (created, pulled))| TagRecord {
                        tag: name.to_string(),
                        created: created.map(|days| NOW - days * DAY),
                        last_pulled: pulled.map(|days| NOW - days * DAY),
                    })
                    .collect()
            })
        }

        fn options() -> impl Strategy<Value = Options> {
            (
                prop::option::of(prop::sample::select(vec!["^main", "-"])),
                prop::option::of(prop::sample::select(vec!["latest", "^v"])),
                prop::option::of(0usize..4),
                prop::option::of(prop::sample::select(vec![
                    "^(main|release-[0-9])",
                    "^([a-z]+)",
                ])),
                any::<bool>(),
                prop::sample::select(vec![0u64, 7_200, 10 * 86_400]),
                prop::option::of(prop::sample::select(vec![0u64, 5 * 86_400, 30 * 86_400])),
                prop::option::of(prop::sample::select(vec![1u64, 20 * 86_400])),
                any::<bool>(),
                prop::option::of(0usize..3),
            )
                .prop_map(
                    |(
                        matching,
                        exclude,
                        keep_last,
                        group_by,
                        semver,
                        grace,
                        older,
                        unpulled,
                        git,
                        per_ref,
                    )| {
                        Options {
                            matches: matching.map(str::to_string).into_iter().collect(),
                            excludes: exclude.map(str::to_string).into_iter().collect(),
                            keep_list: KeepList::parse("release-2-*"),
                            older_than: older,
                            keep_last,
                            group_by: group_by.map(str::to_string),
                            sort: if semver { Sort::Semver } else { Sort::Date },
                            grace,
                            unpulled_for: unpulled,
                            git: (git || per_ref.is_some()).then(super::git),
                            per_git_ref: per_ref,
                        }
                    },
                )
        }

        /// Whether an oracle, judging `tag` alone against the whole listing, finds a keep rule for it.
        fn kept_by_a_keep_rule(policy: &Policy, tags: &[TagRecord], tag: &TagRecord) -> bool {
            if policy.name_filter(&tag.tag).is_some() {
                return true;
            }
            if policy
                .git
                .as_ref()
                .is_some_and(|git| git.named_by(&tag.tag).is_some())
            {
                return true;
            }
            if policy.grace > 0
                && tag
                    .created
                    .is_none_or(|created| !older(NOW, created, policy.grace))
            {
                return true;
            }
            let key = |record: &TagRecord| match policy.sort {
                Sort::Semver => Version::parse(&record.tag)
                    .map(RankKey::Version)
                    .or(record.created.map(RankKey::Date)),
                Sort::Date => record.created.map(RankKey::Date),
            };
            // Kept when fewer than N tags of its group (among those passing the name filters) rank above it.
            let ranked_within = |keep: usize, same: &dyn Fn(&TagRecord) -> bool| {
                let Some(mine) = key(tag) else { return false };
                tags.iter()
                    .filter(|other| policy.name_filter(&other.tag).is_none() && same(other))
                    .filter(|other| key(other).is_some_and(|theirs| theirs > mine))
                    .count()
                    < keep
            };
            if let (Some(keep), Some(group)) = (policy.keep_last, policy.group_of(&tag.tag))
                && ranked_within(keep, &|other| {
                    policy.group_of(&other.tag).as_ref() == Some(&group)
                })
            {
                return true;
            }
            if let (Some(keep), Some(git)) = (policy.per_git_ref, &policy.git) {
                for name in git.carried_by(&tag.tag) {
                    if ranked_within(keep, &|other| git.carried_by(&other.tag).any(|n| n == name)) {
                        return true;
                    }
                }
            }
            false
        }

        proptest! {
            #[test]
            fn fuzz_policy_every_tag_a_keep_rule_keeps_is_kept(tags in records(), options in options()) {
                let policy = Policy::from_options(options).unwrap();
                let decisions = policy.decide(&tags, at(NOW));
                for (tag, decision) in tags.iter().zip(&decisions) {
                    if kept_by_a_keep_rule(&policy, &tags, tag) {
                        prop_assert!(!decision.delete, "{tag:?} deleted: {decision:?}");
                    }
                    if decision.delete {
                        // A delete rule that is set selected it.
                        if let Some(limit) = policy.older_than {
                            prop_assert!(tag.created.is_some_and(|c| older(NOW, c, limit)));
                        }
                    }
                }
            }

            #[test]
            fn fuzz_policy_decisions_do_not_depend_on_listing_order(
                tags in records(),
                options in options(),
                seed in any::<u64>(),
            ) {
                let policy = Policy::from_options(options).unwrap();
                let mut shuffled = tags.clone();
                // A deterministic shuffle from the seed.
                let mut state = seed | 1;
                for index in (1..shuffled.len()).rev() {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    shuffled.swap(index, (state % (index as u64 + 1)) as usize);
                }
                let by_tag = |tags: &[TagRecord]| {
                    tags.iter()
                        .zip(policy.decide(tags, at(NOW)))
                        .map(|(tag, decision)| (tag.tag.clone(), decision))
                        .collect::<std::collections::BTreeMap<_, _>>()
                };
                prop_assert_eq!(by_tag(&tags), by_tag(&shuffled));
            }

            #[test]
            fn fuzz_policy_file_answers_any_text_without_panicking(
                text in "(\\[\\[cleanup\\.policy\\]\\]\n|name = \"p\"\n|repositories = \\[\"r\\.example/a\"\\]\n|[a-z-]{1,12} = (\"[^\"\n]{0,8}\"|-?[0-9]{1,3}|\\[\\])\n|.{0,10}\n){0,8}",
            ) {
                let _ = file::parse(&text);
            }
        }
    }
}
