//! A registry implementation that exists only in tests. It is added the way a new vendor is (this file, its
//! `mod` line, its entry in `SPECS`), so the tests in `mod.rs` can show that every table and help text picks
//! a vendor up from its spec alone.

use super::{
    BoxFuture, Context, DeleteRemoves, DeleteRequest, Flag, HostRule, Implementation, Probe, Spec,
    TagInfo, UntaggedManifest,
};
use crate::reference::Repository;
use crate::registry::RegistryError;
use crate::report::Entry;

pub(super) const SPEC: Spec = Spec {
    name: "example",
    title: "Example",
    build,
    flags: &[Flag {
        name: "example-api-url",
        value_name: "URL",
        help: "Example API base URL",
    }],
    environment: &["EXAMPLE_TOKEN"],
    hosts: &[HostRule::Exact("registry.example.test")],
    probe: Some(Probe {
        path: "/example/status",
        recognise: |response| response.status == 200,
        precedence: u8::MAX,
    }),
    delete_removes: DeleteRemoves::Tag,
    lists_untagged: true,
};

fn build(_context: Context) -> Box<dyn Implementation> {
    Box::new(Example)
}

struct Example;

impl Implementation for Example {
    fn spec(&self) -> &'static Spec {
        &SPEC
    }

    fn list_tags<'a>(
        &'a self,
        _repository: &'a Repository,
        _with_digests: bool,
    ) -> BoxFuture<'a, Result<Vec<TagInfo>, RegistryError>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    fn delete<'a>(&'a self, _request: DeleteRequest<'a>) -> BoxFuture<'a, Vec<Entry>> {
        Box::pin(async { Vec::new() })
    }

    fn list_untagged<'a>(
        &'a self,
        _repository: &'a Repository,
    ) -> BoxFuture<'a, Result<Option<Vec<UntaggedManifest>>, RegistryError>> {
        Box::pin(async { Ok(Some(Vec::new())) })
    }
}
