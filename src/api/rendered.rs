//! Deployment views rendered once per change of the store, not once per request: the list of
//! every deployment's summary (and its pre-serialized body) and each deployment's detail,
//! cached under the store's write count (`Store::writes`). A request reads the count first;
//! when it is the one the cache was built at, the answer is the cached bytes and its `ETag`
//! (so `If-None-Match` gets a `304` without a body); otherwise the view is rebuilt — the list
//! with one read of the store, a detail with two indexed queries (its cost does not depend on
//! how many deployments exist). Nothing is rebuilt while nobody asks.
//!
//! Invariant: a cached view is never older than its count says: the count is read before the
//! data, and bumped after each write commits. The one exception is deliberate: while one
//! request rebuilds the list, concurrent ones get the previous rendering (`latest_list`).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::model::desired::DeploymentId;
use crate::store::Writes;

use super::dto::DeploymentSummary;

/// How often a held request looks again when no write signals a change.
const RECHECK: Duration = Duration::from_secs(1);

/// Details kept at most (then the cache starts over: a bound, not an eviction policy).
const DETAILS_KEPT: usize = 4096;

/// A serialized answer and its entity tag.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub body: Bytes,
    pub etag: String,
}

impl Rendered {
    pub fn json<T: serde::Serialize>(value: &T) -> Result<Self, serde_json::Error> {
        let body = Bytes::from(serde_json::to_vec(value)?);
        Ok(Self::from_body(body))
    }

    fn from_body(body: Bytes) -> Self {
        let etag = Self::tag(&body, "");
        Self { body, etag }
    }

    /// A page of a larger answer: its tag also covers `whole` (the tag of everything the page
    /// is cut from) and the next page's link, so that a change anywhere — on a later page, or
    /// one that only moves the link — is a new tag.
    pub fn page_of<T: serde::Serialize>(
        value: &T,
        whole: &Rendered,
        link: Option<&str>,
    ) -> Result<Self, serde_json::Error> {
        let body = Bytes::from(serde_json::to_vec(value)?);
        let etag = Self::tag(
            &body,
            &format!("{}{}", whole.etag, link.unwrap_or_default()),
        );
        Ok(Self { body, etag })
    }

    fn tag(body: &[u8], also: &str) -> String {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        body.hash(&mut hasher);
        also.hash(&mut hasher);
        format!("\"{:016x}-{:x}\"", hasher.finish(), body.len())
    }

    /// Whether the request's `If-None-Match` names this entity (the client holds it).
    pub fn held_by(&self, request: &HeaderMap) -> bool {
        request
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|tags| {
                tags.split(',')
                    .any(|t| t.trim() == self.etag || t.trim() == "*")
            })
    }

    /// `200` with the body, or `304` when the client already holds this entity.
    pub fn respond(
        &self,
        request: &HeaderMap,
        extra: Option<(header::HeaderName, String)>,
    ) -> Response {
        let etag = HeaderValue::from_str(&self.etag).ok();
        let mut response = if self.held_by(request) {
            StatusCode::NOT_MODIFIED.into_response()
        } else {
            let mut r = (StatusCode::OK, self.body.clone()).into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        };
        if let Some(etag) = etag {
            response.headers_mut().insert(header::ETAG, etag);
        }
        if let Some((name, value)) = extra {
            if let Ok(value) = HeaderValue::from_str(&value) {
                response.headers_mut().insert(name, value);
            }
        }
        response
    }
}

/// Every deployment's summary in (namespace, name) order, and the whole list rendered.
#[derive(Debug)]
pub struct List {
    pub summaries: Vec<DeploymentSummary>,
    pub all: Arc<Rendered>,
}

/// The caches, and the store's write count they are keyed by (`None`: the API reads a
/// database another process writes, so nothing is cached).
#[derive(Default)]
pub struct Views {
    writes: std::sync::OnceLock<Arc<Writes>>,
    list: Mutex<Option<(u64, Arc<List>)>>,
    details: Mutex<(u64, HashMap<DeploymentId, Arc<Rendered>>)>,
}

impl Views {
    /// Caches views from now on, under `writes` (set once; later calls are ignored).
    pub fn key_by(&self, writes: Arc<Writes>) {
        let _ = self.writes.set(writes);
    }

    /// The store's write count now (read this before reading the store).
    pub fn count(&self) -> Option<u64> {
        self.writes.get().map(|w| w.count())
    }

    /// Returns when the store may hold something new since `seen` (its count then): at the
    /// next write, or after `RECHECK` when writes are not counted here (another process
    /// writes the database) or the answer moves without a write (`volatile`: an image pull).
    pub async fn changed_since(&self, seen: Option<u64>, volatile: bool) {
        match (self.writes.get(), seen) {
            (Some(writes), Some(seen)) if !volatile => writes.after(seen).await,
            (Some(writes), Some(seen)) => {
                let _ = tokio::time::timeout(RECHECK, writes.after(seen)).await;
            }
            (Some(_), None) | (None, _) => tokio::time::sleep(RECHECK).await,
        }
    }

    pub fn list(&self, count: Option<u64>) -> Option<Arc<List>> {
        let cached = lock(&self.list);
        match (&*cached, count) {
            (Some((at, list)), Some(now)) if *at == now => Some(list.clone()),
            _ => None,
        }
    }

    /// The last list rendered, whatever the store did since.
    pub fn latest_list(&self) -> Option<Arc<List>> {
        lock(&self.list).as_ref().map(|(_, list)| list.clone())
    }

    pub fn keep_list(&self, count: Option<u64>, list: Arc<List>) {
        if let Some(count) = count {
            *lock(&self.list) = Some((count, list));
        }
    }

    pub fn detail(&self, count: Option<u64>, id: &DeploymentId) -> Option<Arc<Rendered>> {
        let cached = lock(&self.details);
        (Some(cached.0) == count)
            .then(|| cached.1.get(id).cloned())
            .flatten()
    }

    pub fn keep_detail(&self, count: Option<u64>, id: DeploymentId, detail: Arc<Rendered>) {
        let Some(count) = count else { return };
        let mut cached = lock(&self.details);
        if cached.0 != count || cached.1.len() >= DETAILS_KEPT {
            *cached = (count, HashMap::new());
        }
        cached.1.insert(id, detail);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_body_has_the_same_etag_and_if_none_match_gets_304() {
        let a = Rendered::json(&serde_json::json!({"a": 1})).unwrap();
        let b = Rendered::json(&serde_json::json!({"a": 1})).unwrap();
        let c = Rendered::json(&serde_json::json!({"a": 2})).unwrap();
        assert_eq!(a.etag, b.etag);
        assert_ne!(a.etag, c.etag);
        let mut headers = HeaderMap::new();
        assert_eq!(a.respond(&headers, None).status(), StatusCode::OK);
        headers.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_str(&a.etag).unwrap(),
        );
        let not_modified = a.respond(&headers, None);
        assert_eq!(not_modified.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(not_modified.headers()[header::ETAG], a.etag.as_str());
        assert_eq!(c.respond(&headers, None).status(), StatusCode::OK);
    }

    #[test]
    fn a_cached_view_is_served_only_at_the_count_it_was_built_at() {
        let views = Views::default();
        views.key_by(Arc::default());
        let id = DeploymentId::new("demo", "web");
        let detail = Arc::new(Rendered::json(&1).unwrap());
        views.keep_detail(Some(3), id.clone(), detail);
        assert!(views.detail(Some(3), &id).is_some());
        assert!(views.detail(Some(4), &id).is_none(), "a write since");
        let uncached = Views::default();
        uncached.keep_detail(None, id.clone(), Arc::new(Rendered::json(&1).unwrap()));
        assert!(uncached.detail(None, &id).is_none(), "no count, no cache");
    }
}
