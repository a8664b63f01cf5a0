//! Tag dates for cleanup policies: RFC 3339 timestamps, and the creation date of an image read from its
//! config over plain v2 for registries whose tag listing carries no date.
//!
//! An image's date is its config's `created`; an index's is its newest child's (attestation manifests and
//! other artifacts have no `created` and are skipped). Each distinct digest is read once, with bounded
//! concurrency, and bodies are size-bounded by the client. [`index_children`] reads which manifests
//! indexes reference, so a cleanup can spare them.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use futures_util::stream::{self, StreamExt};
use serde::Deserialize;

use crate::registry::{Client, RegistryError};

/// Largest image config read. Configs carry the build history, which stays far below this.
pub const MAX_CONFIG_BYTES: usize = 4 << 20;

/// The date of one manifest, in seconds since the epoch, or why it has none (one line).
pub type DateResult = Result<i64, String>;

/// Parses an RFC 3339 timestamp (`2024-01-31T12:00:00Z`, fractions, `+02:00` offsets, lowercase `t`/`z` or
/// a space separator) into seconds since the Unix epoch; fractions are dropped.
pub fn parse_rfc3339(input: &str) -> Option<i64> {
    let text = input.trim();
    let bytes = text.as_bytes();
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = text.get(range)?;
        if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    if bytes.len() < 20
        || bytes[4] != b'-'
        || bytes[7] != b'-'
        || !matches!(bytes[10], b'T' | b't' | b' ')
        || bytes[13] != b':'
        || bytes[16] != b':'
    {
        return None;
    }
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    let mut rest = &text[19..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        rest = &fraction[digits..];
    }
    let offset = match rest.as_bytes() {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let digits = [*h1, *h2, *m1, *m2];
            if !digits.iter().all(u8::is_ascii_digit) {
                return None;
            }
            let [h1, h2, m1, m2] = digits.map(|d| i64::from(d - b'0'));
            let minutes = (h1 * 10 + h2) * 60 + m1 * 10 + m2;
            if *sign == b'-' { -minutes } else { minutes }
        }
        _ => return None,
    };
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        _ => return None,
    };
    // 60 admits a leap second, which then counts as the next minute's first.
    if day < 1 || day > days_in_month || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(days * 86_400 + hour * 3_600 + minute * 60 + second - offset * 60)
}

/// `seconds` since the epoch as RFC 3339 in UTC (`2024-01-31T12:00:00Z`), for reports.
pub fn format_rfc3339(seconds: i64) -> String {
    let (days, rest) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    // The inverse of `days_from_civil` (Howard Hinnant's algorithm).
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3_600,
        rest % 3_600 / 60,
        rest % 60
    )
}

/// A point in time to the second, as registries date pushes: what a listing hands the cleanup, parsed
/// once where the registry's own format is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// `seconds` since the Unix epoch.
    pub fn from_unix_seconds(seconds: i64) -> Timestamp {
        Timestamp(seconds)
    }

    /// An RFC 3339 timestamp, as [`parse_rfc3339`] reads it.
    pub fn parse_rfc3339(text: &str) -> Option<Timestamp> {
        parse_rfc3339(text).map(Timestamp)
    }

    /// Seconds since the Unix epoch.
    pub fn unix_seconds(self) -> i64 {
        self.0
    }
}

/// In reports, as its RFC 3339 text.
impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// RFC 3339 in UTC, as [`format_rfc3339`] writes it.
impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&format_rfc3339(self.0))
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The fields of a manifest or index that lead to a date.
#[derive(Deserialize)]
struct ManifestDoc {
    config: Option<Descriptor>,
    manifests: Option<Vec<Descriptor>>,
}

#[derive(Deserialize)]
struct Descriptor {
    digest: String,
}

#[derive(Deserialize)]
struct ConfigDoc {
    created: Option<String>,
}

/// What reading a manifest for its date found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageDate {
    /// Its date, or why it has none.
    pub date: DateResult,
    /// The digest its `subject` names (a referrer's), when the manifest could be read: a cleanup then
    /// need not read it again to recognise a referrer.
    pub subject: Option<Option<String>>,
}

/// The dates of `digests` in `repository`, each distinct digest read once, at most `parallel` at a time.
/// `progress` is called with 1 per digest finished.
pub async fn image_dates(
    client: &Client,
    repository: &str,
    digests: impl IntoIterator<Item = &str>,
    parallel: usize,
    progress: &dyn Fn(u64),
) -> HashMap<String, ImageDate> {
    let distinct: BTreeSet<&str> = digests.into_iter().collect();
    stream::iter(distinct)
        .map(|digest| async move {
            let read = match client.get_manifest(repository, digest).await {
                Ok(Some(manifest)) => ImageDate {
                    subject: Some(crate::referrers::manifest_subject(&manifest.body)),
                    date: body_date(client, repository, digest, &manifest.body, true).await,
                },
                Ok(None) => ImageDate {
                    date: Err(format!("manifest {digest} is gone")),
                    subject: None,
                },
                Err(error) => ImageDate {
                    date: Err(error.to_string()),
                    subject: None,
                },
            };
            progress(1);
            (digest.to_string(), read)
        })
        .buffer_unordered(parallel.max(1))
        .collect()
        .await
}

/// One manifest's date; `index_allowed` is false for an index's children, so a malicious index cannot make
/// the walk recurse.
async fn manifest_date(
    client: &Client,
    repository: &str,
    digest: &str,
    index_allowed: bool,
) -> DateResult {
    let manifest = client
        .get_manifest(repository, digest)
        .await
        .map_err(|error| error.to_string())?
        .ok_or_else(|| format!("manifest {digest} is gone"))?;
    body_date(client, repository, digest, &manifest.body, index_allowed).await
}

/// The date of the manifest `digest` whose body is `body`.
async fn body_date(
    client: &Client,
    repository: &str,
    digest: &str,
    body: &[u8],
    index_allowed: bool,
) -> DateResult {
    let doc: ManifestDoc = serde_json::from_slice(body)
        .map_err(|error| format!("manifest {digest} is not valid JSON: {error}"))?;
    match (doc.config, doc.manifests) {
        (_, Some(children)) if index_allowed => {
            let mut newest: Option<i64> = None;
            let mut first_error = None;
            for child in children {
                match Box::pin(manifest_date(client, repository, &child.digest, false)).await {
                    Ok(date) => newest = Some(newest.map_or(date, |known| known.max(date))),
                    Err(error) => {
                        first_error.get_or_insert(error);
                    }
                }
            }
            newest.ok_or_else(|| {
                first_error.unwrap_or_else(|| format!("index {digest} has no manifests"))
            })
        }
        (_, Some(_)) => Err(format!("index {digest} is nested in another index")),
        (Some(config), None) => config_date(client, repository, &config.digest).await,
        (None, None) => Err(format!(
            "manifest {digest} has neither a config nor manifests"
        )),
    }
}

/// The manifests that the indexes among `digests` reference: child digest → the index's digest. Each
/// distinct digest is read once, at most `parallel` at a time; a failed read fails the whole answer, since
/// a missed reference could let a caller delete a manifest an index still needs.
pub async fn index_children(
    client: &Client,
    repository: &str,
    digests: impl IntoIterator<Item = &str>,
    parallel: usize,
) -> Result<BTreeMap<String, String>, RegistryError> {
    let distinct: BTreeSet<&str> = digests.into_iter().collect();
    let read: Vec<Result<Vec<(String, String)>, RegistryError>> = stream::iter(distinct)
        .map(|digest| async move {
            let Some(manifest) = client.get_manifest(repository, digest).await? else {
                return Ok(Vec::new());
            };
            let children = manifest_children(&manifest.body).unwrap_or_default();
            Ok(children
                .into_iter()
                .map(|child| (child, digest.to_string()))
                .collect())
        })
        .buffer_unordered(parallel.max(1))
        .collect()
        .await;
    let mut children = BTreeMap::new();
    for pairs in read {
        children.extend(pairs?);
    }
    Ok(children)
}

/// The digests an index lists in `manifests[]` (none for an image manifest); `None` when `body` is not a
/// manifest document.
pub(crate) fn manifest_children(body: &[u8]) -> Option<Vec<String>> {
    let doc: ManifestDoc = serde_json::from_slice(body).ok()?;
    Some(
        doc.manifests
            .unwrap_or_default()
            .into_iter()
            .map(|child| child.digest)
            .collect(),
    )
}

async fn config_date(client: &Client, repository: &str, digest: &str) -> DateResult {
    let body = client
        .get_blob(repository, digest, MAX_CONFIG_BYTES)
        .await
        .map_err(|error| error.to_string())?
        .ok_or_else(|| format!("config blob {digest} is missing"))?;
    let config: ConfigDoc = serde_json::from_slice(&body)
        .map_err(|_| format!("config {digest} is not an image config"))?;
    let created = config
        .created
        .ok_or_else(|| format!("config {digest} has no created date"))?;
    parse_rfc3339(&created)
        .ok_or_else(|| format!("config {digest} has an unreadable created date {created:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_forms() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2024-01-01T00:00:00Z"), Some(1_704_067_200));
        assert_eq!(
            parse_rfc3339("2024-01-01T00:00:00.123456789Z"),
            Some(1_704_067_200)
        );
        assert_eq!(
            parse_rfc3339("2024-01-01t02:00:00+02:00"),
            Some(1_704_067_200)
        );
        assert_eq!(
            parse_rfc3339("2023-12-31 19:30:00-04:30"),
            Some(1_704_067_200)
        );
        assert_eq!(parse_rfc3339("2024-02-29T12:00:00z"), Some(1_709_208_000));
        assert_eq!(parse_rfc3339("1969-12-31T23:59:59Z"), Some(-1));
        assert_eq!(parse_rfc3339("2000-03-01T00:00:00Z"), Some(951_868_800));
    }

    #[test]
    fn epoch_seconds_become_rfc3339() {
        let rfc3339 = |seconds| Timestamp::from_unix_seconds(seconds).to_string();
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_709_251_199), "2024-02-29T23:59:59Z");
        assert_eq!(rfc3339(1_767_225_600), "2026-01-01T00:00:00Z");
    }

    #[test]
    fn rfc3339_rejects() {
        for bad in [
            "",
            "2024-01-01",
            "2024-01-01T00:00:00",
            "2023-02-29T00:00:00Z",
            "2024-13-01T00:00:00Z",
            "2024-00-10T00:00:00Z",
            "2024-01-32T00:00:00Z",
            "2024-01-01T24:00:00Z",
            "2024-01-01T00:60:00Z",
            "2024-01-01T00:00:00.Z",
            "2024-01-01T00:00:00+0200",
            "2024-01-01T00:00:00+aa:00",
            "2024-1-01T00:00:00Z",
            "+024-01-01T00:00:00Z",
            "2024-01-01T00:00:00Zjunk",
            "2024-01-01X00:00:00Z",
            "2024-01-01T00:00:00€",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn formatting_reads_back() {
        for seconds in [
            0,
            -1,
            951_868_800,
            1_709_208_000,
            1_704_067_199,
            4_102_444_800,
        ] {
            assert_eq!(
                parse_rfc3339(&format_rfc3339(seconds)),
                Some(seconds),
                "{seconds}"
            );
        }
        assert_eq!(format_rfc3339(1_709_208_000), "2024-02-29T12:00:00Z");
        assert_eq!(format_rfc3339(-1), "1969-12-31T23:59:59Z");
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(1_709_251_199), "2024-02-29T23:59:59Z");
        assert_eq!(format_rfc3339(1_767_225_600), "2026-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_rfc3339(1_735_689_599), "2024-12-31T23:59:59Z");
    }

    #[test]
    fn civil_days_match_known_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 1, 1), 10_957);
        assert_eq!(days_from_civil(1600, 3, 1), -135_080);
    }
}
