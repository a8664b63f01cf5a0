//! The one loop behind every paginated listing (v2 `_catalog` and tags, each vendor API, ECR).
//!
//! A listing drives deletions: a cut-short one would make the cleanup judge a repository by part of its
//! tags. So a listing that does not end (a server that repeats a cursor or a page, sends an empty page
//! that says more follow, or pages past [`MAX_PAGES`]) is an error, [`Unbounded`], never a shorter
//! result. Each caller keeps its own request and parsing; it hands the pager one [`Page`] per request.

use std::collections::HashMap;
use std::future::Future;
use std::hash::{DefaultHasher, Hash, Hasher};

/// Bound on pages of one listing. Every listing asks for the largest page its API allows (50 to 1000
/// items), so this is half a million items or more: beyond any real repository, and reached in minutes,
/// not hours, by a server that never ends.
pub const MAX_PAGES: usize = 10_000;

/// One answer of a listing: its items, the cursor of the next page if the server says there is one, and
/// a fingerprint of what the server sent.
#[derive(Debug)]
pub struct Page<T, C> {
    items: Vec<T>,
    next: Option<C>,
    content: u64,
}

impl<T, C> Page<T, C> {
    /// `content` is what identifies the answer (its body, as received), so a server that answers every
    /// page number with the same page is caught even though the cursor moves.
    pub fn new(items: Vec<T>, next: Option<C>, content: impl Hash) -> Self {
        let mut hasher = DefaultHasher::new();
        content.hash(&mut hasher);
        Page {
            items,
            next,
            content: hasher.finish(),
        }
    }
}

/// How a listing failed to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Runaway {
    /// More than [`MAX_PAGES`] pages.
    #[error("more than {0} pages")]
    TooManyPages(usize),
    /// A page sent a cursor (`nextToken`, `Link`…) that an earlier page had sent.
    #[error("page {page} repeats {cursor} from page {earlier}")]
    RepeatedCursor {
        /// The page that repeated it (1-based).
        page: usize,
        /// The page that sent it first.
        earlier: usize,
        /// What the cursor is called in this API.
        cursor: &'static str,
    },
    /// A page's content is that of an earlier page.
    #[error("page {page} is page {earlier} again")]
    RepeatedPage {
        /// The repeating page (1-based).
        page: usize,
        /// The page it repeats.
        earlier: usize,
    },
    /// An empty page that says more follow: what follows cannot be trusted to come.
    #[error("page {page} is empty but says more follow")]
    EmptyPage {
        /// The empty page (1-based).
        page: usize,
    },
}

/// A listing that does not end; see the module documentation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{registry}: {operation} does not end ({problem}); refusing a partial listing")]
pub struct Unbounded {
    /// Registry host (or API) that sent the pages.
    pub registry: String,
    /// The listing (`list tags of registry/repository`).
    pub operation: String,
    /// What went wrong.
    pub problem: Runaway,
}

/// One listing: which registry, what is listed, and what its cursor is called, for the error.
#[derive(Debug, Clone, Copy)]
pub struct Pager<'a> {
    registry: &'a str,
    operation: &'a str,
    cursor: &'static str,
    empty_pages_continue: bool,
}

impl<'a> Pager<'a> {
    /// A listing of `operation` on `registry`, whose pages point to the next one with `cursor`.
    pub fn new(registry: &'a str, operation: &'a str, cursor: &'static str) -> Self {
        Pager {
            registry,
            operation,
            cursor,
            empty_pages_continue: false,
        }
    }

    /// For APIs that filter on the server after paging (AWS's): a page may be empty and still carry a
    /// cursor. Such a listing is still bounded by its cursors, which must not repeat, and by the cap.
    pub fn empty_pages_continue(self) -> Self {
        Pager {
            empty_pages_continue: true,
            ..self
        }
    }

    /// Every item, in order: `fetch` gets `None` for the first page, then each page's cursor.
    pub async fn collect<T, C, E, F, Fut>(self, fetch: F) -> Result<Vec<T>, E>
    where
        C: Clone + Eq + Hash,
        F: FnMut(Option<C>) -> Fut,
        Fut: Future<Output = Result<Page<T, C>, E>>,
        E: From<Unbounded>,
    {
        self.collect_at_most(MAX_PAGES, fetch).await
    }

    async fn collect_at_most<T, C, E, F, Fut>(
        self,
        max_pages: usize,
        mut fetch: F,
    ) -> Result<Vec<T>, E>
    where
        C: Clone + Eq + Hash,
        F: FnMut(Option<C>) -> Fut,
        Fut: Future<Output = Result<Page<T, C>, E>>,
        E: From<Unbounded>,
    {
        let mut items = Vec::new();
        // Cursor → the page that sent it; fingerprint → the page it was.
        let mut cursors: HashMap<C, usize> = HashMap::new();
        let mut contents: HashMap<u64, usize> = HashMap::new();
        let mut cursor = None;
        for page in 1..=max_pages {
            let Page {
                items: found,
                next,
                content,
            } = fetch(cursor.take()).await?;
            if let Some(next) = &next
                && let Some(&earlier) = cursors.get(next)
            {
                return Err(self.stop(Runaway::RepeatedCursor {
                    page,
                    earlier,
                    cursor: self.cursor,
                }));
            }
            // Empty pages all look alike: where they may continue, only their cursors tell them apart.
            let fingerprinted = !(found.is_empty() && self.empty_pages_continue);
            if fingerprinted && let Some(&earlier) = contents.get(&content) {
                return Err(self.stop(Runaway::RepeatedPage { page, earlier }));
            }
            let Some(next) = next else {
                items.extend(found);
                return Ok(items);
            };
            if found.is_empty() && !self.empty_pages_continue {
                return Err(self.stop(Runaway::EmptyPage { page }));
            }
            items.extend(found);
            if fingerprinted {
                contents.insert(content, page);
            }
            cursors.insert(next.clone(), page);
            cursor = Some(next);
        }
        Err(self.stop(Runaway::TooManyPages(max_pages)))
    }

    fn stop<E: From<Unbounded>>(&self, problem: Runaway) -> E {
        E::from(Unbounded {
            registry: self.registry.to_owned(),
            operation: self.operation.to_owned(),
            problem,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::future::ready;

    use super::*;

    fn run<T>(future: impl Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(future)
    }

    const PAGER: Pager<'static> = Pager {
        registry: "registry.example",
        operation: "list tags of registry.example/app",
        cursor: "nextToken",
        empty_pages_continue: false,
    };

    /// Pages of `size` numbers out of `total`, the cursor being the offset.
    fn numbers(
        total: u32,
        size: u32,
    ) -> impl FnMut(Option<u32>) -> std::future::Ready<Result<Page<u32, u32>, Unbounded>> {
        move |offset| {
            let start = offset.unwrap_or(0);
            let end = (start + size).min(total);
            let items: Vec<u32> = (start..end).collect();
            let next = (end < total).then_some(end);
            ready(Ok(Page::new(items.clone(), next, items)))
        }
    }

    #[test]
    fn follows_every_page_to_the_end() {
        let items = run(PAGER.collect(numbers(250, 100))).unwrap();
        assert_eq!(items, (0..250).collect::<Vec<_>>());
        // An empty last page is the end, as registries send one after a full page.
        let empty_last = run(PAGER.collect(|offset: Option<u32>| {
            let page = match offset {
                None => Page::new(vec![1, 2], Some(2), 1),
                Some(_) => Page::new(vec![], None, 2),
            };
            ready(Ok::<_, Unbounded>(page))
        }));
        assert_eq!(empty_last.unwrap(), [1, 2]);
        let nothing = run(PAGER.collect(|_: Option<u32>| {
            ready(Ok::<_, Unbounded>(Page::<u32, u32>::new(vec![], None, 0)))
        }));
        assert!(nothing.unwrap().is_empty());
    }

    #[test]
    fn a_listing_past_the_cap_is_an_error() {
        assert!(run(PAGER.collect_at_most(3, numbers(300, 100))).is_ok());
        let error = run(PAGER.collect_at_most(3, numbers(301, 100))).unwrap_err();
        assert_eq!(error.problem, Runaway::TooManyPages(3));
        assert_eq!(
            error.to_string(),
            "registry.example: list tags of registry.example/app does not end (more than 3 pages); \
             refusing a partial listing"
        );
    }

    #[test]
    fn a_repeated_cursor_is_an_error_before_its_page_is_asked_for() {
        let calls = Cell::new(0);
        let error = run(PAGER.collect(|offset: Option<u32>| {
            calls.set(calls.get() + 1);
            let start = offset.unwrap_or(0);
            // 0 → 10 → 20 → 10: the third page points back.
            let next = if start == 20 { 10 } else { start + 10 };
            ready(Ok::<_, Unbounded>(Page::new(
                vec![start],
                Some(next),
                start,
            )))
        }))
        .unwrap_err();
        assert_eq!(
            error.problem,
            Runaway::RepeatedCursor {
                page: 3,
                earlier: 1,
                cursor: "nextToken"
            }
        );
        assert_eq!(calls.get(), 3);
        assert!(
            error
                .to_string()
                .contains("page 3 repeats nextToken from page 1")
        );
    }

    #[test]
    fn a_repeated_page_is_an_error_though_the_cursor_moves() {
        // A server that ignores the page number: every page is the first.
        let error = run(PAGER.collect(|page: Option<u32>| {
            let page = page.unwrap_or(1);
            ready(Ok::<_, Unbounded>(Page::new(
                vec!["a", "b"],
                Some(page + 1),
                b"[\"a\",\"b\"]",
            )))
        }))
        .unwrap_err();
        assert_eq!(
            error.problem,
            Runaway::RepeatedPage {
                page: 2,
                earlier: 1
            }
        );
    }

    #[test]
    fn an_empty_page_that_says_more_follow_is_an_error() {
        let error = run(PAGER.collect(|page: Option<u32>| {
            let page = page.unwrap_or(1);
            let items = if page == 1 { vec![1] } else { vec![] };
            ready(Ok::<_, Unbounded>(Page::new(items, Some(page + 1), page)))
        }))
        .unwrap_err();
        assert_eq!(error.problem, Runaway::EmptyPage { page: 2 });
    }

    #[test]
    fn where_empty_pages_may_continue_only_a_repeated_cursor_or_the_cap_stops_them() {
        // Pages 2 and 3 are empty with fresh cursors, page 4 ends: every item arrives.
        let items = run(PAGER.empty_pages_continue().collect(|page: Option<u32>| {
            let page = page.unwrap_or(1);
            let items = if page == 1 || page == 4 {
                vec![page]
            } else {
                vec![]
            };
            let next = (page < 4).then_some(page + 1);
            ready(Ok::<_, Unbounded>(Page::new(items, next, page)))
        }))
        .unwrap();
        assert_eq!(items, [1, 4]);
        let error = run(PAGER.empty_pages_continue().collect(|page: Option<u32>| {
            // Empty pages whose cursor alternates 2, 3, 2: the repeat is caught.
            let next = if page == Some(3) {
                2
            } else {
                page.unwrap_or(1) + 1
            };
            ready(Ok::<_, Unbounded>(Page::<u32, u32>::new(
                vec![],
                Some(next),
                0,
            )))
        }))
        .unwrap_err();
        assert_eq!(
            error.problem,
            Runaway::RepeatedCursor {
                page: 3,
                earlier: 1,
                cursor: "nextToken"
            }
        );
        let error = run(PAGER
            .empty_pages_continue()
            .collect_at_most(5, |page: Option<u32>| {
                let next = page.unwrap_or(0) + 1;
                ready(Ok::<_, Unbounded>(Page::<u32, u32>::new(
                    vec![],
                    Some(next),
                    0,
                )))
            }))
        .unwrap_err();
        assert_eq!(error.problem, Runaway::TooManyPages(5));
    }

    #[test]
    fn fetch_errors_pass_through() {
        let error = run(PAGER.collect(|_: Option<u32>| {
            ready(Err::<Page<u32, u32>, _>(Unbounded {
                registry: "r".into(),
                operation: "o".into(),
                problem: Runaway::EmptyPage { page: 9 },
            }))
        }))
        .unwrap_err();
        assert_eq!(error.problem, Runaway::EmptyPage { page: 9 });
    }
}
