//! The registry client against a real distribution registry: no auth, htpasswd and token auth.

use regkit_e2e::images::{self, Auth, Format};
use regkit_e2e::registry::Registry;

#[test]
fn harness_pushes_shared_and_distinct_images() {
    let registry = Registry::start();
    let url = registry.url();
    let shared = images::push(&url, "a/b/c", &["one", "two"], &Auth::None);
    let docker = images::push_as(&url, "a/b/c", &["docker"], &Auth::None, Format::Docker);
    let plain = images::push_as(
        &url,
        "a/b/c",
        &["plain"],
        &Auth::None,
        Format::OciUncompressed,
    );
    let index = images::push_index(&url, "a/b/c", "multi", &Auth::None, Format::Oci);
    let state = images::tag_digests(&url, "a/b/c", &Auth::None);
    assert_eq!(state["one"], shared);
    assert_eq!(state["two"], shared);
    assert_eq!(state["docker"], docker);
    assert_eq!(state["plain"], plain);
    assert_eq!(state["multi"], index.digest);
    assert_eq!(state.len(), 5);

    let tags: Vec<String> = (0..1500).map(|i| format!("t{i:04}")).collect();
    let tag_refs: Vec<&str> = tags.iter().map(String::as_str).collect();
    let started = std::time::Instant::now();
    let pushed = images::push_distinct(&url, "many", &tag_refs, &Auth::None);
    eprintln!("pushed 1500 in {:?}", started.elapsed());
    let state = images::tag_digests(&url, "many", &Auth::None);
    eprintln!("listed 1500 in {:?}", started.elapsed());
    assert_eq!(state.len(), 1500);
    let distinct: std::collections::BTreeSet<_> = pushed.iter().map(|(_, d)| d.clone()).collect();
    assert_eq!(distinct.len(), 1500);
    for (tag, digest) in &pushed {
        assert_eq!(&state[tag], digest);
    }
}

#[test]
fn harness_pushes_through_token_auth() {
    use regkit_e2e::registry::Options;
    use regkit_e2e::tokenserver::{TokenServer, User};
    let tokens = TokenServer::start(vec![
        User::admin("admin", "pw"),
        User::new("reader", "r").grant("*", &["pull"]),
    ]);
    let registry = Registry::start_with(Options {
        auth: tokens.registry_auth(),
        ..Options::default()
    });
    let url = registry.url();
    let digest = images::push(&url, "x/y", &["t1", "t2"], &Auth::basic("admin", "pw"));
    let state = images::tag_digests(&url, "x/y", &Auth::basic("reader", "r"));
    assert_eq!(state.len(), 2);
    assert_eq!(state["t1"], digest);
    let requests = tokens.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.scopes == ["repository:x/y:pull,push"]
                && r.account.as_deref() == Some("admin")),
        "{requests:?}"
    );
}
