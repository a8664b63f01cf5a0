//! What the vendors with their own tag-delete REST API (Harbor, Quay, Nexus, Artifactory, ACR, Artifact
//! Registry) share: where the API is, which credentials it gets, and the delete run itself.
//!
//! Each of them lists tags with their vendor handle, then removes tags one call at a time. The run is
//! planned from one listing, so refusals (immutable tags, shared manifests the API cannot protect) are
//! reported per tag before any request changes anything, and absent tags cost no request. A vendor file
//! implements [`TagApi`]; the one generic impl here makes it an [`Implementation`].

use std::collections::{BTreeMap, BTreeSet};

use reqwest::Url;

use super::delete::{self, Deletion, Planned, Removal, Step};
use super::{
    BoxFuture, Context, DeleteRemoves, DeleteRequest, Implementation, Spec, TagInfo,
    UntaggedManifest,
};
use crate::dates::Timestamp;
use crate::reference::{Repository, Target};
use crate::registry::api::{ApiClient, ApiResponse};
use crate::registry::{ClientOptions, Deleted, RegistryError, http};
use crate::report::{Entry, Method, Outcome};
use crate::secret::Secret;

/// The API base URL: the `url_flag` setting, else the registry host itself (`http://` for a loopback host,
/// as the v2 client does). It ends in `/`, so paths joined without a leading `/` keep a proxy's prefix
/// (`https://proxy/harbor/` + `api/v2.0/…`).
pub(super) fn api_base(context: &Context, url_flag: &str) -> String {
    if let Some(url) = context.settings.text(url_flag) {
        return format!("{}/", url.trim_end_matches('/'));
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
pub(super) fn built_client(
    api: &Result<ApiClient, RegistryError>,
) -> Result<&ApiClient, RegistryError> {
    api.as_ref()
        .map_err(|error| RegistryError::Config(error.to_string()))
}

/// Checks the answer to a request that lists `repository`: 404 is [`RegistryError::RepositoryNotFound`],
/// any other status but 200 the API's error with `hint`.
pub(super) fn listing_status(
    api: &ApiClient,
    response: &ApiResponse,
    repository: &Repository,
    operation: &str,
    hint: &str,
) -> Result<(), RegistryError> {
    match response.status {
        200 => Ok(()),
        404 => Err(RegistryError::RepositoryNotFound {
            registry: repository.registry.clone(),
            repository: repository.path.clone(),
        }),
        _ => Err(api.status_error(response, operation, hint)),
    }
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
pub(super) struct ListedTag {
    /// The tag.
    pub tag: String,
    /// Its manifest digest, when known.
    pub digest: Option<String>,
    /// When it was pushed, when known.
    pub created: Option<Timestamp>,
    /// Pulls, as [`TagInfo::last_pulled`](super::TagInfo::last_pulled).
    pub last_pulled: Option<Option<Timestamp>>,
    /// The vendor's handle for the delete call (Harbor's artifact digest, Nexus's component id).
    pub handle: String,
    /// Why the vendor will not let it go (an immutable tag), known from the listing.
    pub refusal: Option<String>,
}

/// What a listing must include: dates and digests can cost a request per tag on some APIs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ListingNeeds {
    /// Push dates.
    pub dates: bool,
    /// Manifest digests.
    pub digests: bool,
}

/// Every tag of a repository, and every manifest digest (tagged or not) the vendor knows.
#[derive(Debug, Clone, Default)]
pub(super) struct Listing {
    /// The tags.
    pub tags: Vec<ListedTag>,
    /// Digests of manifests with no tag, which only a digest target can name.
    pub untagged: BTreeSet<String>,
    /// Digests the vendor will not delete (an index references them) → why, one line.
    pub digest_refusals: BTreeMap<String, String>,
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

/// One vendor REST API; every such type is an [`Implementation`] through the impl below, which is the
/// whole of what the vendors share.
pub(super) trait TagApi {
    /// Its spec, for the name and for what its tag delete removes (a removed tag is reported `untagged`
    /// when only the tag went, `deleted` when its manifest went with it).
    const SPEC: &'static Spec;

    /// Bound on concurrent delete calls.
    fn parallel(&self) -> usize;

    /// What `regkit tags` and a cleanup's listing ask for; by default everything, for the APIs that
    /// list digests and dates with the tags.
    fn tag_listing_needs(with_digests: bool) -> ListingNeeds {
        let _ = with_digests;
        ListingNeeds {
            dates: true,
            digests: true,
        }
    }

    /// Lists the repository; [`RegistryError::RepositoryNotFound`] when it does not exist.
    async fn listing(
        &self,
        repository: &Repository,
        needs: ListingNeeds,
    ) -> Result<Listing, RegistryError>;

    /// Removes one listed tag.
    async fn delete_tag(
        &self,
        repository: &Repository,
        tag: &ListedTag,
    ) -> Result<Deleted, CallError>;

    /// Why `tag` must not be removed when only `requested` tags may go (checked before any delete).
    fn refuse(
        &self,
        tag: &ListedTag,
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
        tags: &[ListedTag],
    ) -> Result<Deleted, CallError> {
        let _ = digest;
        let mut removed = Deleted::Absent;
        for tag in tags {
            if self.delete_tag(repository, tag).await? == Deleted::Removed {
                removed = Deleted::Removed;
            }
        }
        Ok(removed)
    }

    /// The manifests no tag points at; `None` when the API cannot list them.
    async fn untagged(
        &self,
        repository: &Repository,
    ) -> Result<Option<Vec<UntaggedManifest>>, RegistryError> {
        let _ = repository;
        Ok(None)
    }

    /// [`Implementation::untagged_subjects`]; by default read over v2.
    async fn untagged_subjects(
        &self,
        repository: &Repository,
        digests: &[String],
    ) -> Result<Option<BTreeMap<String, String>>, RegistryError> {
        let _ = (repository, digests);
        Ok(None)
    }

    /// [`Implementation::api_referrers`]; by default not asked.
    async fn api_referrers(
        &self,
        repository: &Repository,
        digests: &[String],
    ) -> Result<crate::referrers::ApiReferrers, RegistryError> {
        let _ = (repository, digests);
        Ok(crate::referrers::ApiReferrers::Unused)
    }

    /// [`Implementation::missing_manifests`]; by default one v2 HEAD each.
    async fn missing_manifests(
        &self,
        repository: &Repository,
        digests: &[String],
    ) -> Result<Option<BTreeSet<String>>, RegistryError> {
        let _ = (repository, digests);
        Ok(None)
    }
}

impl<T: TagApi> Implementation for T {
    fn spec(&self) -> &'static Spec {
        T::SPEC
    }

    fn list_tags<'a>(
        &'a self,
        repository: &'a Repository,
        with_digests: bool,
    ) -> BoxFuture<'a, Result<Vec<TagInfo>, RegistryError>> {
        Box::pin(async move {
            let listing = self
                .listing(repository, T::tag_listing_needs(with_digests))
                .await?;
            Ok(tag_infos(listing))
        })
    }

    fn delete<'a>(&'a self, request: DeleteRequest<'a>) -> BoxFuture<'a, Vec<Entry>> {
        Box::pin(delete::run(self, request))
    }

    fn list_untagged<'a>(
        &'a self,
        repository: &'a Repository,
    ) -> BoxFuture<'a, Result<Option<Vec<UntaggedManifest>>, RegistryError>> {
        Box::pin(self.untagged(repository))
    }

    fn untagged_subjects<'a>(
        &'a self,
        repository: &'a Repository,
        digests: &'a [String],
    ) -> BoxFuture<'a, Result<Option<BTreeMap<String, String>>, RegistryError>> {
        Box::pin(TagApi::untagged_subjects(self, repository, digests))
    }

    fn missing_manifests<'a>(
        &'a self,
        repository: &'a Repository,
        digests: &'a [String],
    ) -> BoxFuture<'a, Result<Option<BTreeSet<String>>, RegistryError>> {
        Box::pin(TagApi::missing_manifests(self, repository, digests))
    }

    fn api_referrers<'a>(
        &'a self,
        repository: &'a Repository,
        digests: &'a [String],
    ) -> BoxFuture<'a, Result<crate::referrers::ApiReferrers, RegistryError>> {
        Box::pin(TagApi::api_referrers(self, repository, digests))
    }
}

/// Sorted [`TagInfo`]s of a listing.
fn tag_infos(listing: Listing) -> Vec<TagInfo> {
    let mut tags: Vec<TagInfo> = listing
        .tags
        .into_iter()
        .map(|listed| TagInfo {
            tag: listed.tag,
            digest: listed.digest,
            created: listed.created,
            last_pulled: listed.last_pulled,
        })
        .collect();
    tags.sort_by(|a, b| a.tag.cmp(&b.tag));
    tags.dedup_by(|a, b| a.tag == b.tag);
    tags
}

/// What one REST removal calls.
pub(super) enum RestAction {
    /// The tag API, for one listed tag.
    Tag(ListedTag),
    /// The manifest delete, for a digest and the tags listed on it.
    Digest(String, Vec<ListedTag>),
}

/// The run is planned from one listing, so refusals are reported per tag before any request changes
/// anything, and absent tags cost no request.
impl<T: TagApi> Deletion for T {
    type Action = RestAction;

    fn parallel(&self) -> usize {
        TagApi::parallel(self)
    }

    async fn plan(
        &self,
        request: &DeleteRequest<'_>,
    ) -> Result<Vec<Step<RestAction>>, RegistryError> {
        let (repository, targets) = (request.repository, request.targets);
        let needs = ListingNeeds {
            dates: false,
            digests: targets
                .iter()
                .any(|target| matches!(target, Target::Digest(_))),
        };
        let listing = delete::missing_is_empty(self.listing(repository, needs).await)?;
        let by_tag: BTreeMap<&str, &ListedTag> = listing
            .tags
            .iter()
            .map(|listed| (listed.tag.as_str(), listed))
            .collect();
        let requested: BTreeSet<&str> = targets
            .iter()
            .filter_map(|target| match target {
                Target::Tag(tag) => Some(tag.as_str()),
                Target::Digest(_) => None,
            })
            .collect();
        let step = |target: &Target| match target {
            Target::Tag(tag) => {
                let Some(listed) = by_tag.get(tag.as_str()) else {
                    return Step::Settled(Entry::absent(repository, target));
                };
                let digest = listed.digest.clone();
                match self.refuse(listed, &requested, &listing) {
                    Some(reason) => Step::Settled(refused(repository, target, digest, &reason)),
                    None => Step::removal(
                        target.clone(),
                        digest,
                        Method::Native,
                        RestAction::Tag((*listed).clone()),
                    ),
                }
            }
            Target::Digest(digest) => {
                let tags: Vec<ListedTag> = listing
                    .tags
                    .iter()
                    .filter(|listed| listed.digest.as_deref() == Some(digest.as_str()))
                    .cloned()
                    .collect();
                if tags.is_empty() && !listing.untagged.contains(digest) {
                    return Step::Settled(Entry::absent(repository, target));
                }
                let refusal = listing.digest_refusals.get(digest).cloned().or_else(|| {
                    tags.iter().find_map(|listed| {
                        (listed.refusal.as_ref())
                            .map(|reason| format!("its tag {}: {reason}", listed.tag))
                    })
                });
                match refusal {
                    Some(reason) => Step::Settled(refused(repository, target, None, &reason)),
                    None => Step::removal(
                        target.clone(),
                        None,
                        Method::Digest,
                        RestAction::Digest(digest.clone(), tags),
                    ),
                }
            }
        };
        Ok(targets.iter().map(step).collect())
    }

    async fn remove(
        &self,
        repository: &Repository,
        removal: Removal<RestAction>,
        _progress: &dyn Fn(u64),
    ) -> Vec<Entry> {
        // A REST removal is one call for one target.
        let Some(Planned { target, digest, .. }) = removal.planned.into_iter().next() else {
            return Vec::new();
        };
        let (result, removed) = match &removal.action {
            RestAction::Tag(listed) => (
                self.delete_tag(repository, listed).await,
                match T::SPEC.delete_removes {
                    DeleteRemoves::Tag => Outcome::Untagged(Method::Native),
                    _ => Outcome::Deleted(Method::Native),
                },
            ),
            RestAction::Digest(named, tags) => (
                self.delete_digest(repository, named, tags).await,
                Outcome::Deleted(Method::Digest),
            ),
        };
        vec![match result {
            Ok(Deleted::Removed) => Entry::new(repository, &target, digest, removed),
            Ok(Deleted::Absent) => Entry::absent(repository, &target),
            Err(CallError::Registry(error)) => delete::failed(repository, &target, digest, &error),
            Err(CallError::Refused(reason)) => refused(repository, &target, digest, &reason),
        }]
    }
}

/// The entry for `target`, which the vendor will not let go: its `reason` does not name the target.
fn refused(
    repository: &Repository,
    target: &Target,
    digest: Option<String>,
    reason: &str,
) -> Entry {
    delete::refused(
        repository,
        target,
        digest,
        format!("{repository}{target}: {reason}"),
    )
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
