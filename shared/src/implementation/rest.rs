//! What the vendors with their own tag-delete REST API on the registry host (Harbor, Quay, Nexus,
//! Artifactory) share: where the API is, which credentials it gets, and the delete run itself.
//!
//! Each of them lists tags with their vendor handle, then removes tags one call at a time. The run is
//! planned from one listing, so refusals (immutable tags, shared manifests the API cannot protect) are
//! reported per tag before any request changes anything, and absent tags cost no request.

use std::collections::{BTreeMap, BTreeSet};

use futures_util::stream::{self, StreamExt};
use reqwest::Url;

use super::{Context, DeleteRequest, TagInfo};
use crate::reference::{Repository, Target};
use crate::registry::api::ApiClient;
use crate::registry::{ClientOptions, RegistryError, failure_kind, http};
use crate::report::{Entry, FailureKind, Method, Status};
use crate::secret::Secret;

/// The API base URL: the `url_flag` setting, else the registry host itself (`http://` for a loopback host,
/// as the v2 client does).
pub(super) fn api_base(context: &Context, url_flag: &str) -> String {
    if let Some(url) = context.settings.text(url_flag) {
        return url.trim_end_matches('/').to_string();
    }
    host_base(context.client.registry(), context.client.options())
}

/// `https://<host>`, or `http://<host>` for a loopback host (or any host with `insecure`).
pub(super) fn host_base(host: &str, options: &ClientOptions) -> String {
    let loopback = Url::parse(&format!("http://{host}")).is_ok_and(|url| http::is_loopback(&url));
    let scheme = if loopback || options.insecure {
        "http"
    } else {
        "https"
    };
    format!("{scheme}://{host}")
}

/// Credentials for a vendor API.
pub(super) enum Credentials {
    /// None found: anonymous requests.
    Anonymous,
    /// HTTP Basic.
    Basic(String, Secret<String>),
    /// `Authorization: Bearer`.
    Bearer(Secret<String>),
}

/// The vendor's own flags for credentials (a token flag, a username and password pair), else the docker
/// config's username and password for the host: vendor APIs take no registry tokens.
pub(super) fn credentials(
    context: &Context,
    token_flag: Option<&str>,
    username_flag: &str,
    password_flag: &str,
) -> Credentials {
    if let Some(token) = token_flag.and_then(|flag| context.settings.get(flag)) {
        return Credentials::Bearer(token.clone());
    }
    if let (Some(username), Some(password)) = (
        context.settings.text(username_flag),
        context.settings.get(password_flag),
    ) {
        return Credentials::Basic(username.to_string(), password.clone());
    }
    match &context.auth {
        crate::dockerconfig::RegistryAuth::Basic { username, password } => {
            Credentials::Basic(username.clone(), password.clone())
        }
        _ => Credentials::Anonymous,
    }
}

/// An [`ApiClient`] for `label` at [`api_base`] with `credentials`.
pub(super) fn api_client(
    context: &Context,
    url_flag: &str,
    label: &str,
    credentials: Credentials,
) -> Result<ApiClient, RegistryError> {
    let client = ApiClient::sharing(&context.client, &api_base(context, url_flag), label)?;
    match credentials {
        Credentials::Anonymous => Ok(client),
        Credentials::Basic(username, password) => client.with_basic(&username, &password),
        Credentials::Bearer(token) => client.with_bearer(&token),
    }
}

/// The client [`api_client`] made, or the reason it could not be made (reported by every call).
pub(super) fn ready(api: &Result<ApiClient, RegistryError>) -> Result<&ApiClient, RegistryError> {
    api.as_ref()
        .map_err(|error| RegistryError::Config(error.to_string()))
}

/// `text` with every byte outside RFC 3986's unreserved set percent-encoded (so `/` becomes `%2F`).
pub(super) fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// One tag as a vendor API lists it, with what deleting it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Listed {
    /// The tag.
    pub tag: String,
    /// Its manifest digest, when known.
    pub digest: Option<String>,
    /// When it was pushed (RFC 3339), when known.
    pub created: Option<String>,
    /// The vendor's handle for the delete call (Harbor's artifact digest, Nexus's component id).
    pub handle: String,
    /// Why the vendor will not let it go (an immutable tag), known from the listing.
    pub refusal: Option<String>,
}

/// What a listing must include: dates and digests can cost a request per tag on some APIs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Want {
    /// Push dates.
    pub dates: bool,
    /// Manifest digests.
    pub digests: bool,
}

/// Every tag of a repository, and every manifest digest (tagged or not) the vendor knows.
#[derive(Debug, Clone, Default)]
pub(super) struct Listing {
    /// The tags.
    pub tags: Vec<Listed>,
    /// Digests of manifests with no tag, which only a digest target can name.
    pub untagged: BTreeSet<String>,
    /// Digests the vendor will not delete (an index references them) → why, one line.
    pub digest_refusals: BTreeMap<String, String>,
}

/// What a delete call found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Removed {
    /// It was removed.
    Done,
    /// It was already gone.
    Absent,
}

/// Why one delete call failed.
#[derive(Debug)]
pub(super) enum CallError {
    /// The registry failed or refused access.
    Registry(RegistryError),
    /// The vendor refused this one item (immutable, referenced by an index): one line, what to do.
    Refused(String),
}

impl From<RegistryError> for CallError {
    fn from(error: RegistryError) -> Self {
        CallError::Registry(error)
    }
}

/// One vendor REST API.
pub(super) trait TagApi {
    /// How a removed tag is reported: `untagged` when the manifest stays, `deleted` when the tag's own
    /// manifest went with it.
    const REMOVED: Status;

    /// Lists the repository; [`RegistryError::RepositoryNotFound`] when it does not exist.
    async fn listing(&self, repository: &Repository, want: Want) -> Result<Listing, RegistryError>;

    /// Removes one listed tag.
    async fn delete_tag(&self, repository: &Repository, tag: &Listed)
    -> Result<Removed, CallError>;

    /// Why `tag` must not be removed when only `requested` tags may go (checked before any delete).
    fn refuse(
        &self,
        tag: &Listed,
        requested: &BTreeSet<&str>,
        listing: &Listing,
    ) -> Option<String> {
        let _ = (requested, listing);
        tag.refusal.clone()
    }

    /// Removes a manifest and every tag on it (`tags`, from the listing). By default every tag goes
    /// through the tag API; vendors with a manifest delete override it.
    async fn delete_digest(
        &self,
        repository: &Repository,
        digest: &str,
        tags: &[&Listed],
    ) -> Result<Removed, CallError> {
        let _ = digest;
        let mut removed = Removed::Absent;
        for tag in tags {
            if self.delete_tag(repository, tag).await? == Removed::Done {
                removed = Removed::Done;
            }
        }
        Ok(removed)
    }
}

/// Sorted [`TagInfo`]s of a listing.
pub(super) fn tag_infos(listing: Listing) -> Vec<TagInfo> {
    let mut tags: Vec<TagInfo> = listing
        .tags
        .into_iter()
        .map(|listed| TagInfo {
            tag: listed.tag,
            digest: listed.digest,
            created: listed.created,
        })
        .collect();
    tags.sort_by(|a, b| a.tag.cmp(&b.tag));
    tags.dedup_by(|a, b| a.tag == b.tag);
    tags
}

/// Runs `request` against `api`: one entry per target in request order, `parallel` calls at a time.
pub(super) async fn delete<A: TagApi>(
    api: &A,
    request: &DeleteRequest<'_>,
    parallel: usize,
) -> Vec<Entry> {
    let repository = request.repository;
    let want = Want {
        dates: false,
        digests: request
            .targets
            .iter()
            .any(|target| matches!(target, Target::Digest(_))),
    };
    let listing = match api.listing(repository, want).await {
        Ok(listing) => listing,
        Err(RegistryError::RepositoryNotFound { .. }) => Listing::default(),
        Err(error) => {
            (request.progress)(request.targets.len() as u64);
            return request
                .targets
                .iter()
                .map(|target| failed(repository, target, &error))
                .collect();
        }
    };
    let by_tag: BTreeMap<&str, &Listed> = listing
        .tags
        .iter()
        .map(|listed| (listed.tag.as_str(), listed))
        .collect();
    let requested: BTreeSet<&str> = request
        .targets
        .iter()
        .filter_map(|target| match target {
            Target::Tag(tag) => Some(tag.as_str()),
            Target::Digest(_) => None,
        })
        .collect();
    let mut seen = BTreeSet::new();
    let work: Vec<_> = request
        .targets
        .iter()
        .map(|target| (target, seen.insert(target)))
        .collect();
    let (by_tag, requested, listing) = (&by_tag, &requested, &listing);
    stream::iter(work)
        .map(|(target, first)| async move {
            let entry = if first {
                delete_one(api, request, target, by_tag, requested, listing).await
            } else {
                // A repeated target was handled by its first occurrence.
                done(repository, target, None, Status::Absent, None)
            };
            (request.progress)(1);
            entry
        })
        .buffered(parallel.max(1))
        .collect()
        .await
}

async fn delete_one<A: TagApi>(
    api: &A,
    request: &DeleteRequest<'_>,
    target: &Target,
    by_tag: &BTreeMap<&str, &Listed>,
    requested: &BTreeSet<&str>,
    listing: &Listing,
) -> Entry {
    let repository = request.repository;
    match target {
        Target::Tag(tag) => {
            let Some(listed) = by_tag.get(tag.as_str()) else {
                return done(repository, target, None, Status::Absent, None);
            };
            let digest = listed.digest.clone();
            if let Some(reason) = api.refuse(listed, requested, listing) {
                return refused(repository, target, digest, &reason);
            }
            if request.dry_run {
                return done(
                    repository,
                    target,
                    digest,
                    Status::Planned,
                    Some(Method::Native),
                );
            }
            match api.delete_tag(repository, listed).await {
                Ok(Removed::Done) => {
                    done(repository, target, digest, A::REMOVED, Some(Method::Native))
                }
                Ok(Removed::Absent) => done(repository, target, None, Status::Absent, None),
                Err(error) => call_failed(repository, target, digest, error),
            }
        }
        Target::Digest(digest) => {
            let tags: Vec<&Listed> = listing
                .tags
                .iter()
                .filter(|listed| listed.digest.as_deref() == Some(digest.as_str()))
                .collect();
            if tags.is_empty() && !listing.untagged.contains(digest) {
                return done(repository, target, None, Status::Absent, None);
            }
            let refusal = listing.digest_refusals.get(digest).cloned().or_else(|| {
                tags.iter().find_map(|listed| {
                    (listed.refusal.as_ref())
                        .map(|reason| format!("its tag {}: {reason}", listed.tag))
                })
            });
            if let Some(reason) = refusal {
                return refused(repository, target, None, &reason);
            }
            if request.dry_run {
                return done(
                    repository,
                    target,
                    None,
                    Status::Planned,
                    Some(Method::Digest),
                );
            }
            match api.delete_digest(repository, digest, &tags).await {
                Ok(Removed::Done) => done(
                    repository,
                    target,
                    None,
                    Status::Deleted,
                    Some(Method::Digest),
                ),
                Ok(Removed::Absent) => done(repository, target, None, Status::Absent, None),
                Err(error) => call_failed(repository, target, None, error),
            }
        }
    }
}

/// An entry for `target`.
pub(super) fn done(
    repository: &Repository,
    target: &Target,
    digest: Option<String>,
    status: Status,
    method: Option<Method>,
) -> Entry {
    let (tag, digest) = match target {
        Target::Tag(tag) => (Some(tag.clone()), digest),
        Target::Digest(named) => (None, Some(named.clone())),
    };
    Entry {
        reference: format!("{repository}{target}"),
        repository: repository.to_string(),
        tag,
        digest,
        status,
        method,
        error: None,
        failure: None,
    }
}

fn failed(repository: &Repository, target: &Target, error: &RegistryError) -> Entry {
    let mut entry = done(repository, target, None, Status::Failed, None);
    entry.error = Some(error.to_string());
    entry.failure = Some(failure_kind(error));
    entry
}

fn refused(
    repository: &Repository,
    target: &Target,
    digest: Option<String>,
    reason: &str,
) -> Entry {
    let mut entry = done(repository, target, digest, Status::Failed, None);
    entry.error = Some(format!("{repository}{target}: {reason}"));
    entry.failure = Some(FailureKind::Other);
    entry
}

fn call_failed(
    repository: &Repository,
    target: &Target,
    digest: Option<String>,
    error: CallError,
) -> Entry {
    match error {
        CallError::Registry(error) => {
            let mut entry = failed(repository, target, &error);
            entry.digest = entry.digest.or(digest);
            entry
        }
        CallError::Refused(reason) => refused(repository, target, digest, &reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_escapes_slashes_and_keeps_unreserved() {
        assert_eq!(encode("a/b_c.d-e~f"), "a%2Fb_c.d-e~f");
        assert_eq!(encode(&encode("team/app")), "team%252Fapp");
    }

    #[test]
    fn loopback_hosts_get_plain_http() {
        let options = ClientOptions::default();
        assert_eq!(
            host_base("127.0.0.1:5000", &options),
            "http://127.0.0.1:5000"
        );
        assert_eq!(
            host_base("harbor.example.com", &options),
            "https://harbor.example.com"
        );
    }
}
