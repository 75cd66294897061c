//! Held requests: a `GET` with `If-None-Match` and `?wait=30s` stays open until its answer
//! differs from the copy the client holds (then `200` with the new answer) or the wait ends
//! (then `304`). `keel deployments --watch`, `keel deployment --watch` and `keel events
//! --follow` ask this way instead of asking every second.
//!
//! Inputs: the request's headers and `wait`, and a builder of the answer (usually served from
//! the rendered cache). A held request wakes on the store's write signal only, rebuilds its
//! answer and compares entity tags; an answer that moves without a write (an image pull) is
//! looked at again every second. Invariant: a held request is never cut as idle by the
//! listener (it is marked streaming while it waits), and never waits past `MAX_WAIT`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{header::HeaderName, HeaderMap};
use axum::response::Response;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::rendered::{Rendered, Views};
use super::serve::Streaming;
use super::{query_pairs, single, ApiError};

/// The longest a request is held, whatever `wait` asks.
pub const MAX_WAIT: Duration = Duration::from_secs(30);

/// One answer to a request that may be held.
pub struct Answer {
    pub rendered: Arc<Rendered>,
    /// An extra header (a paged list's `Link`).
    pub link: Option<(HeaderName, String)>,
    /// Whether the answer can change without a write to the store.
    pub volatile: bool,
}

impl Answer {
    pub fn of(rendered: Arc<Rendered>) -> Self {
        Self {
            rendered,
            link: None,
            volatile: false,
        }
    }
}

fn star(headers: &HeaderMap) -> bool {
    headers
        .get(axum::http::header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim() == "*")
}

/// What a request that may be held brings: its headers (`If-None-Match`), its `wait`, and its
/// connection's streaming mark (set when served by `serve::serve`). An extractor, so that each
/// handler only says how to build its answer.
pub struct Holding {
    headers: HeaderMap,
    wait: Option<Duration>,
    streaming: Option<Streaming>,
}

impl<S: Send + Sync> FromRequestParts<S> for Holding {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Ok(Self {
            headers: parts.headers.clone(),
            wait: wait_of(&query_pairs(parts.uri.query()))?,
            streaming: parts.extensions.get::<Streaming>().cloned(),
        })
    }
}

impl Holding {
    /// Whether the client asked to wait (its answer must then be current, never a stale one).
    pub fn waits(&self) -> bool {
        self.wait.is_some()
    }

    /// Answers with `build`'s answer; while it is the one the client holds (`If-None-Match`)
    /// and `wait` has not run out, waits for the store to change and builds it again.
    pub async fn answer<F, Fut>(&self, views: &Views, build: F) -> Result<Response, ApiError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Answer, ApiError>>,
    {
        answer(
            views,
            &self.headers,
            self.wait,
            self.streaming.as_ref(),
            build,
        )
        .await
    }
}

/// The `wait` query parameter (`30s`, `500ms`), capped at `MAX_WAIT`.
fn wait_of(pairs: &[(String, String)]) -> Result<Option<Duration>, ApiError> {
    single(pairs, "wait")
        .map(|text| {
            text.parse::<crate::model::units::Duration>()
                .map(|d| d.to_std().min(MAX_WAIT))
                .map_err(|e| ApiError::BadRequest(format!("wait: {e}")))
        })
        .transpose()
}

async fn answer<F, Fut>(
    views: &Views,
    headers: &HeaderMap,
    wait: Option<Duration>,
    streaming: Option<&Streaming>,
    mut build: F,
) -> Result<Response, ApiError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Answer, ApiError>>,
{
    let deadline = wait.map(|w| tokio::time::Instant::now() + w);
    loop {
        let seen = views.count();
        let answer = build().await?;
        // `*` matches whatever the answer is: there is no copy to wait past.
        let held = deadline.filter(|_| answer.rendered.held_by(headers) && !star(headers));
        let respond = || answer.rendered.respond(headers, answer.link.clone());
        let Some(deadline) = held else {
            return Ok(respond());
        };
        // A held request is quiet on the wire: the listener must not cut it as idle.
        let _held = streaming.map(Streaming::hold);
        let changed = views.changed_since(seen, answer.volatile);
        if tokio::time::timeout_at(deadline, changed).await.is_err() {
            return Ok(respond());
        }
    }
}
