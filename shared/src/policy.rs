//! Which tags a cleanup policy deletes: pure selection over tag records, no I/O, so every rule and edge case
//! is unit-tested here and the command only gathers records and carries out decisions.
//!
//! A tag is deleted when it matches every `--match` (all tags when there is none), matches no `--exclude`,
//! is in no keep-list line, is older than `--older-than` and is not among the `--keep-last` newest of the
//! tags that passed the name filters. Keep-last ranks before the age test (GitLab's cleanup-policy order), so
//! `--keep-last 5 --older-than 30d` always leaves the five newest, however old.
//!
//! Whenever an age rule is given, a tag without a date is kept: its age is unknown, so it can neither be
//! proven old nor ranked. Tags with equal dates at the keep-last boundary are all kept: which of two
//! simultaneous pushes is "newer" is not knowable, and keeping one too many is the safe error.

use std::fmt;

use regex_lite::Regex;
use serde::Serialize;

/// One tag as the policy sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagRecord {
    /// The tag.
    pub tag: String,
    /// When it was pushed or built, in seconds since the Unix epoch; `None` when unknown.
    pub created: Option<i64>,
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
    /// Kept: an age rule applies and the tag has no date.
    NoDate,
    /// Kept: among the `--keep-last` newest.
    KeepLast,
    /// Kept: not older than `--older-than`.
    TooNew,
    /// Kept: a kept tag's index references its manifest (set by the caller, which reads the indexes).
    InKeptIndex,
    /// Kept: a workload or a `--keep-images` line uses its tag or digest (set by the caller, from
    /// [`crate::inuse::InUse`]).
    InUse,
    /// Deleted: every rule selects it.
    Selected,
    /// Deleted: no tag points at the manifest (`--untagged`), and the age rule, if any, selects it.
    Untagged,
}

impl Rule {
    /// The kebab-case name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::NotMatched => "not-matched",
            Rule::Excluded => "excluded",
            Rule::KeepList => "keep-list",
            Rule::NoDate => "no-date",
            Rule::KeepLast => "keep-last",
            Rule::TooNew => "too-new",
            Rule::InKeptIndex => "in-kept-index",
            Rule::InUse => "in-use",
            Rule::Selected => "selected",
            Rule::Untagged => "untagged",
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

/// Why a policy could not be built from its options.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// A `--match`/`--exclude` value is not a regular expression.
    #[error("invalid {flag} regex {pattern:?}: {message}")]
    Regex {
        /// `--match` or `--exclude`.
        flag: &'static str,
        /// The value given.
        pattern: String,
        /// The parser's complaint.
        message: String,
    },
    /// A duration is not `<number><unit>…`.
    #[error(
        "invalid duration {input:?}: use a number with a unit s, m, h, d or w, e.g. 30d or 1d12h"
    )]
    Duration {
        /// The value given.
        input: String,
    },
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
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == '?' || c == text[t] => {
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
    pattern[p..].iter().all(|c| *c == '*')
}

/// A cleanup policy.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    matches: Vec<Regex>,
    excludes: Vec<Regex>,
    keep_list: KeepList,
    older_than: Option<u64>,
    keep_last: Option<usize>,
}

impl Policy {
    /// A policy from the command-line values. Regexes are unanchored (`^`/`$` anchor them, as in grep).
    pub fn new(
        matches: &[String],
        excludes: &[String],
        keep_list: KeepList,
        older_than: Option<u64>,
        keep_last: Option<usize>,
    ) -> Result<Policy, PolicyError> {
        let compile = |flag: &'static str, patterns: &[String]| {
            patterns
                .iter()
                .map(|pattern| {
                    Regex::new(pattern).map_err(|error| PolicyError::Regex {
                        flag,
                        pattern: pattern.clone(),
                        message: error.to_string().lines().last().unwrap_or("").to_string(),
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(Policy {
            matches: compile("--match", matches)?,
            excludes: compile("--exclude", excludes)?,
            keep_list,
            older_than,
            keep_last,
        })
    }

    /// Whether the policy needs tag dates (an age rule is set).
    pub fn needs_dates(&self) -> bool {
        self.older_than.is_some() || self.keep_last.is_some()
    }

    /// The decision for a manifest no tag points at (`--untagged`), dated `date`, at time `now`. It goes
    /// unless `--older-than` is set and it is not (provably) that old: a manifest pushed a moment ago may
    /// be the child of an index that is being pushed. Name rules do not apply: it has no name.
    pub fn decide_untagged(&self, date: Option<i64>, now: i64) -> Decision {
        let selected = Decision {
            delete: true,
            rule: Rule::Untagged,
            reason: "no tag points at it".into(),
        };
        let Some(limit) = self.older_than else {
            return selected;
        };
        match date {
            None => Decision::keep(Rule::NoDate, "untagged, but its age is unknown".into()),
            Some(date)
                if now.saturating_sub(date) > 0
                    && now.saturating_sub(date).unsigned_abs() > limit =>
            {
                Decision {
                    reason: format!("no tag points at it, older than {}", format_age(limit)),
                    ..selected
                }
            }
            Some(_) => Decision::keep(
                Rule::TooNew,
                format!("untagged, not older than {}", format_age(limit)),
            ),
        }
    }

    /// One decision per tag, in input order, at time `now` (seconds since the epoch).
    pub fn decide(&self, tags: &[TagRecord], now: i64) -> Vec<Decision> {
        let mut decisions: Vec<Option<Decision>> =
            tags.iter().map(|tag| self.name_filter(&tag.tag)).collect();
        let mut dated: Vec<(i64, usize)> = Vec::new();
        for (index, tag) in tags.iter().enumerate() {
            if decisions[index].is_some() {
                continue;
            }
            match tag.created {
                Some(created) => dated.push((created, index)),
                None if self.needs_dates() => {
                    decisions[index] = Some(Decision::keep(
                        Rule::NoDate,
                        "no date: its age is unknown, so no age rule can select it".into(),
                    ));
                }
                None => {}
            }
        }
        if let Some(keep) = self.keep_last {
            // Newest first; the rank of a tag is 1 + the number of strictly newer tags, so ties share one.
            dated.sort_by_key(|(created, _)| std::cmp::Reverse(*created));
            let boundary = keep
                .checked_sub(1)
                .and_then(|last| dated.get(last))
                .map(|(created, _)| *created);
            for (position, (created, index)) in dated.iter().enumerate() {
                let rank = dated.partition_point(|(other, _)| other > created) + 1;
                let kept = position < keep || boundary.is_some_and(|limit| *created >= limit);
                if kept {
                    let reason = if position < keep {
                        format!("among the {keep} newest (#{rank})")
                    } else {
                        format!("pushed at the same time as the #{keep} newest")
                    };
                    decisions[*index] = Some(Decision::keep(Rule::KeepLast, reason));
                }
            }
        }
        for (created, index) in dated {
            if decisions[index].is_some() {
                continue;
            }
            let beyond = self
                .keep_last
                .map(|keep| format!("beyond the {keep} newest"));
            let decision = match self.older_than {
                Some(limit) => {
                    let age = now.saturating_sub(created);
                    if age > 0 && age.unsigned_abs() > limit {
                        let mut reason = format!(
                            "{} old, older than {}",
                            format_age(age.unsigned_abs()),
                            format_age(limit)
                        );
                        if let Some(beyond) = beyond {
                            reason = format!("{reason}, {beyond}");
                        }
                        Decision {
                            delete: true,
                            rule: Rule::Selected,
                            reason,
                        }
                    } else {
                        Decision::keep(
                            Rule::TooNew,
                            format!("not older than {}", format_age(limit)),
                        )
                    }
                }
                None => Decision {
                    delete: true,
                    rule: Rule::Selected,
                    reason: beyond.unwrap_or_else(|| self.selected_reason()),
                },
            };
            decisions[index] = Some(decision);
        }
        // Without age rules, dateless tags were left undecided above: the name filters alone select them.
        decisions
            .into_iter()
            .map(|decision| {
                decision.unwrap_or_else(|| Decision {
                    delete: true,
                    rule: Rule::Selected,
                    reason: self.selected_reason(),
                })
            })
            .collect()
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
    let units = &UNITS[1..];
    let Some(first) = units.iter().position(|(_, unit)| seconds >= *unit) else {
        return "0s".into();
    };
    let (name, unit) = units[first];
    let mut text = format!("{}{name}", seconds / unit);
    if let Some((next_name, next_unit)) = units.get(first + 1) {
        let rest = seconds % unit / next_unit;
        if rest > 0 {
            text.push_str(&format!("{rest}{next_name}"));
        }
    }
    text
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

    fn tag(name: &str, days_old: Option<i64>) -> TagRecord {
        TagRecord {
            tag: name.into(),
            created: days_old.map(|days| NOW - days * DAY),
        }
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

    /// The deleted tags, in input order.
    fn deleted(policy: &Policy, tags: &[TagRecord]) -> Vec<String> {
        policy
            .decide(tags, NOW)
            .iter()
            .zip(tags)
            .filter(|(decision, _)| decision.delete)
            .map(|(_, tag)| tag.tag.clone())
            .collect()
    }

    fn rules(policy: &Policy, tags: &[TagRecord]) -> Vec<Rule> {
        policy.decide(tags, NOW).iter().map(|d| d.rule).collect()
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
        let decisions = policy.decide(&tags, NOW);
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
        let decisions = policy.decide(&tags, NOW);
        let tied: Vec<&str> = decisions[1..4].iter().map(|d| d.reason.as_str()).collect();
        assert!(tied.contains(&"among the 2 newest (#2)"), "{tied:?}");
        assert_eq!(
            tied.iter()
                .filter(|r| **r == "pushed at the same time as the #2 newest")
                .count(),
            2
        );
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
        let decisions = policy.decide(&tags, NOW);
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
            policy.decide(&tags, NOW)[0].reason,
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
            policy.decide(&tags, NOW)[0].reason,
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
            "invalid duration \"30\": use a number with a unit s, m, h, d or w, e.g. 30d or 1d12h"
        );
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
}
