//! The read-only status API (axum): deployments, events, namespaces, revisions, the source,
//! the runtimes, health, Prometheus metrics and the OpenAPI document. It reads the store through a small
//! pool of read-only connections on blocking threads, so slow queries never stall the runtime.
//! Errors are RFC 9457 `application/problem+json` with stable `type`s. With tokens configured,
//! every `/v1/*` route (and `/metrics`, unless made public) needs `Authorization: Bearer`.

mod bare;
pub mod client;
pub mod dto;
mod held;
pub mod hooks;
mod logs;
mod metrics;
pub mod openapi;
mod rendered;
pub mod serve;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use crate::model::desired::DeploymentId;
use crate::model::manifest::RuntimeKind;
use crate::model::status::DeploymentStatus;
use crate::reconcile::views;
use crate::store::{StoreError, StoreReader};

use dto::*;

/// What the source last did, shared between the source task and the API.
pub type SourceStatus = Arc<RwLock<SourceDto>>;

/// Who may read the API.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// Accepted bearer tokens; empty: no authentication.
    pub tokens: Vec<String>,
    /// Tokens that may also change what an operator may change (clear a cron job's failed
    /// runs); they read as well. Empty: nothing can be changed through the API.
    pub admin_tokens: Vec<String>,
    /// Whether `/metrics` stays open when tokens are set.
    pub public_metrics: bool,
}

pub struct ApiState {
    db: PathBuf,
    readers: Mutex<Vec<StoreReader>>,
    access: Access,
    pub metrics: Arc<crate::metrics::Metrics>,
    pub source: SourceStatus,
    /// Each runtime's availability, published by the controller (`with_runtime_board`).
    pub runtimes: crate::reconcile::controller::RuntimeBoard,
    /// Image pulls under way (published by the Docker runtime): shown as `building` instances.
    pub pulls: crate::runtime::PullBoard,
    /// The runtimes whose instances' output `…/logs` streams (`serve_logs_from`).
    log_sources: std::sync::RwLock<BTreeMap<RuntimeKind, Arc<dyn crate::runtime::Runtime>>>,
    /// Deployment views rendered once per change of the store.
    views: rendered::Views,
    /// One rebuild of the deployment list at a time (the others wait and take it).
    rebuilding: tokio::sync::Mutex<()>,
    /// The store's writer, for the one change an operator may make through the API (clearing
    /// a cron job's failed runs, `write_with`).
    writer: std::sync::OnceLock<Arc<crate::store::Store>>,
    /// Wakes the reconcile loop after such a change applies a revision (`wake_with`).
    waker: std::sync::OnceLock<Arc<tokio::sync::Notify>>,
}

impl ApiState {
    pub fn new(
        db: PathBuf,
        access: Access,
        metrics: Arc<crate::metrics::Metrics>,
        source: SourceStatus,
    ) -> Arc<Self> {
        Self::with_runtimes(db, access, metrics, source, Default::default())
    }

    /// Like `new`, showing the runtimes' availability the controller publishes in `runtimes`.
    pub fn with_runtimes(
        db: PathBuf,
        access: Access,
        metrics: Arc<crate::metrics::Metrics>,
        source: SourceStatus,
        runtimes: crate::reconcile::controller::RuntimeBoard,
    ) -> Arc<Self> {
        Self::with_boards(db, access, metrics, source, runtimes, Default::default())
    }

    /// Like `with_runtimes`, also showing the image pulls a runtime publishes in `pulls` as
    /// `building` instances.
    pub fn with_boards(
        db: PathBuf,
        access: Access,
        metrics: Arc<crate::metrics::Metrics>,
        source: SourceStatus,
        runtimes: crate::reconcile::controller::RuntimeBoard,
        pulls: crate::runtime::PullBoard,
    ) -> Arc<Self> {
        Arc::new(Self {
            db,
            readers: Mutex::new(Vec::new()),
            access,
            metrics,
            source,
            runtimes,
            pulls,
            log_sources: Default::default(),
            views: rendered::Views::default(),
            rebuilding: tokio::sync::Mutex::new(()),
            writer: std::sync::OnceLock::new(),
            waker: std::sync::OnceLock::new(),
        })
    }

    /// Lets admin-token requests write through `store` (set once; later calls are ignored).
    pub fn write_with(&self, store: Arc<crate::store::Store>) {
        let _ = self.writer.set(store);
    }

    /// Wakes the reconcile loop through `waker` when an admin's request applied a revision
    /// (set once; later calls are ignored).
    pub fn wake_with(&self, waker: Arc<tokio::sync::Notify>) {
        let _ = self.waker.set(waker);
    }

    /// Streams instances' output from these runtimes (`GET …/logs`).
    pub fn serve_logs_from(&self, runtimes: &[Arc<dyn crate::runtime::Runtime>]) {
        let mut sources = self.log_sources.write().unwrap_or_else(|p| p.into_inner());
        for runtime in runtimes {
            sources.insert(runtime.kind(), runtime.clone());
        }
    }

    /// The runtime that runs `kind`, when logs are served from it.
    fn log_source(&self, kind: RuntimeKind) -> Option<Arc<dyn crate::runtime::Runtime>> {
        self.log_sources
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&kind)
            .cloned()
    }

    /// Caches the deployment views under the store's write count (`Store::writes`): from now
    /// on they are rebuilt only after a write, not per request.
    pub fn cache_under(&self, writes: Arc<crate::store::Writes>) {
        self.views.key_by(writes);
    }

    /// Every deployment's summary, rendered: from the cache unless the store was written since.
    /// One request rebuilds it; while it does, the others get the previous rendering (stale by
    /// that one rebuild at most) instead of queueing behind it — a reconciling agent writes
    /// often, and readers must not pay for each write.
    /// A held request (`fresh`) waits for the rebuild instead: it must not take the previous
    /// rendering for the current one.
    async fn deployment_list(
        self: &Arc<Self>,
        fresh: bool,
    ) -> Result<Arc<rendered::List>, ApiError> {
        if let Some(list) = self.views.list(self.views.count()) {
            return Ok(list);
        }
        let _one = match self.rebuilding.try_lock() {
            Ok(guard) => guard,
            Err(_) => match self.views.latest_list().filter(|_| !fresh) {
                Some(stale) => return Ok(stale),
                None => self.rebuilding.lock().await,
            },
        };
        let count = self.views.count();
        if let Some(list) = self.views.list(count) {
            return Ok(list);
        }
        let all = self.read(|r| Ok(r.listed(None)?)).await?;
        let summaries: Vec<DeploymentSummary> = all
            .iter()
            .map(|(s, ips)| DeploymentSummary::new(s, ips.clone()))
            .collect();
        let list = Arc::new(rendered::List {
            all: Arc::new(rendered::Rendered::json(&summaries).map_err(internal)?),
            summaries,
        });
        self.views.keep_list(count, list.clone());
        Ok(list)
    }

    /// Runs `f` with a pooled read-only connection on a blocking thread.
    async fn read<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&StoreReader) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let state = self.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = state
                .readers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pop();
            let reader = match pooled {
                Some(reader) => reader,
                None => StoreReader::open(&state.db)?,
            };
            let result = f(&reader);
            let mut pool = state.readers.lock().unwrap_or_else(|p| p.into_inner());
            if pool.len() < 16 {
                pool.push(reader);
            }
            result
        })
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
    }
}

/// The router with every route.
pub fn router(state: Arc<ApiState>) -> Router {
    let v1 = Router::new()
        .route("/v1/deployments", get(deployments))
        .route("/v1/deployments/{namespace}/{name}", get(deployment))
        .route("/v1/deployments/{namespace}/{name}/events", get(events))
        .route("/v1/deployments/{namespace}/{name}/logs", get(logs::logs))
        .route("/v1/deployments/{namespace}/{name}/runs", get(runs))
        .route(
            "/v1/deployments/{namespace}/{name}/runs/clear",
            axum::routing::post(clear_runs),
        )
        .route("/v1/namespaces", get(namespaces))
        .route("/v1/revisions", get(revisions))
        .route("/v1/revisions/{id}", get(revision))
        .route(
            "/v1/revisions/{id}/retry",
            axum::routing::post(retry_revision),
        )
        .route("/v1/source", get(source))
        .route("/v1/version", get(|| async { Json(VersionDto::current()) }))
        .route("/v1/runtimes", get(runtimes))
        .route("/v1/deliveries", get(deliveries))
        .route("/openapi.json", get(openapi_document))
        .route("/metrics", get(metrics::render))
        .route_layer(middleware::from_fn_with_state(state.clone(), authorize));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .merge(v1)
        .fallback(|| async { ApiError::NotFound("no such route".to_owned()) })
        .with_state(state)
}

/// The paths the router serves (for the OpenAPI drift test).
pub const ROUTES: &[&str] = &[
    "/healthz",
    "/metrics",
    "/openapi.json",
    "/v1/deployments",
    "/v1/deployments/{namespace}/{name}",
    "/v1/deployments/{namespace}/{name}/events",
    "/v1/deployments/{namespace}/{name}/logs",
    "/v1/deployments/{namespace}/{name}/runs",
    "/v1/deployments/{namespace}/{name}/runs/clear",
    "/v1/namespaces",
    "/v1/revisions",
    "/v1/revisions/{id}",
    "/v1/revisions/{id}/retry",
    "/v1/source",
    "/v1/version",
    "/v1/runtimes",
    "/v1/deliveries",
];

async fn authorize(State(state): State<Arc<ApiState>>, request: Request, next: Next) -> Response {
    let access = &state.access;
    let open_metrics = request.uri().path() == "/metrics" && access.public_metrics;
    // A write is checked again by its handler (`admin`), against the admin tokens only.
    if access.tokens.is_empty() || open_metrics {
        return next.run(request).await;
    }
    let presented = bearer(request.headers());
    if any_matches(&access.tokens, presented) || any_matches(&access.admin_tokens, presented) {
        next.run(request).await
    } else {
        ApiError::Unauthorized.into_response()
    }
}

/// The bearer token of a request (empty when none).
fn bearer(headers: &HeaderMap) -> &str {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
}

/// Whether `presented` is one of `tokens`, compared against every one, always, so that timing
/// does not say which one nearly matched. No token is not a token, whatever is configured.
fn any_matches(tokens: &[String], presented: &str) -> bool {
    let matched = tokens.iter().fold(false, |ok, token| {
        ok | constant_time_eq(token.as_bytes(), presented.as_bytes())
    });
    matched && !presented.is_empty()
}

/// A token's fingerprint, safe to record: which of several admin tokens acted, never the
/// token (`sha256:` and the first 8 hex digits of its SHA-256).
fn fingerprint(token: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(token.as_bytes());
    let hex: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// Lets an operator's write through: 403 when the agent has no admin token (nothing may be
/// changed), 401 without a token, 403 with one that may only read.
fn admin(access: &Access, headers: &HeaderMap) -> Result<(), ApiError> {
    if access.admin_tokens.is_empty() {
        return Err(ApiError::Forbidden(
            "this agent accepts no changes through its API: set admin_tokens under [api] in keel.toml".to_owned(),
        ));
    }
    let presented = bearer(headers);
    if any_matches(&access.admin_tokens, presented) {
        return Ok(());
    }
    match presented.is_empty() || !any_matches(&access.tokens, presented) {
        true => Err(ApiError::Unauthorized),
        false => Err(ApiError::Forbidden(
            "this token may read, not change: clearing runs needs one of the admin_tokens"
                .to_owned(),
        )),
    }
}

/// Equality whose time depends only on the lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0xff);
    }
    diff == 0
}

/// Why a request failed.
#[derive(Debug)]
pub enum ApiError {
    BadRequest(String),
    NotFound(String),
    /// No (or no valid) bearer token.
    Unauthorized,
    /// A valid token that may not do this, or nothing may.
    Forbidden(String),
    /// A push receiver's signature check failed, and why.
    BadSignature(&'static str),
    /// A request body over the limit.
    TooLarge {
        limit: usize,
    },
    Internal(String),
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::Internal(e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind, title, detail) = match self {
            ApiError::BadRequest(d) => (StatusCode::BAD_REQUEST, "bad-request", "Bad request", d),
            ApiError::NotFound(d) => (StatusCode::NOT_FOUND, "not-found", "Not found", d),
            ApiError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Unauthorized",
                "this API needs a bearer token (Authorization: Bearer …)".to_owned(),
            ),
            ApiError::Forbidden(d) => (StatusCode::FORBIDDEN, "forbidden", "Forbidden", d),
            ApiError::BadSignature(why) => (
                StatusCode::UNAUTHORIZED,
                "bad-signature",
                "Signature rejected",
                format!("the push was not signed with this receiver's secret: {why}"),
            ),
            ApiError::TooLarge { limit } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "too-large",
                "Payload too large",
                format!("the body is larger than this receiver accepts ({limit} bytes)"),
            ),
            ApiError::Internal(d) => {
                tracing::error!(error = %d, "API request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "Internal error",
                    "the request could not be served".to_owned(),
                )
            }
        };
        let problem = Problem {
            kind: format!("https://keel.dev/problems/{kind}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail,
        };
        let mut response = (status, Json(problem)).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        response
    }
}

/// `a=1&b=2&a=3` → pairs, percent-decoded.
pub(crate) fn query_pairs(raw: Option<&str>) -> Vec<(String, String)> {
    raw.unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        let escaped = (byte == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (byte, escaped) {
            (_, Some(decoded)) => {
                out.push(decoded);
                i += 3;
            }
            (b'+', None) => {
                out.push(b' ');
                i += 1;
            }
            (other, None) => {
                out.push(other);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The `?status=` values, checked against the 14 statuses.
fn status_filter(pairs: &[(String, String)]) -> Result<Vec<DeploymentStatus>, ApiError> {
    pairs
        .iter()
        .filter(|(k, _)| k == "status")
        .map(|(_, v)| {
            v.parse::<DeploymentStatus>().map_err(|_| {
                let valid: Vec<&str> = DeploymentStatus::ALL.iter().map(|s| s.as_str()).collect();
                ApiError::BadRequest(format!(
                    "unknown status {v:?}; valid statuses: {}",
                    valid.join(", ")
                ))
            })
        })
        .collect()
}

/// `limit` (1–500, default 50) and the `before` cursor of a paged list.
fn paging<B: std::str::FromStr>(pairs: &[(String, String)]) -> Result<(u32, Option<B>), ApiError> {
    let limit = limit(pairs, 50, 500)?;
    Ok((u32::try_from(limit).unwrap_or(50), number(pairs, "before")?))
}

/// `limit` between 1 and `max` (`default` without one); outside it, a 400 that says so.
fn limit(pairs: &[(String, String)], default: usize, max: usize) -> Result<usize, ApiError> {
    match number::<i64>(pairs, "limit")? {
        None => Ok(default),
        Some(n) => usize::try_from(n)
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| {
                ApiError::BadRequest(format!("limit must be between 1 and {max}, got {n}"))
            }),
    }
}

/// The `before` of the page after `page`: the cursor of its last item, when the page is full.
fn next_before<T, B>(page: &[T], limit: u32, cursor: impl FnOnce(&T) -> B) -> Option<B> {
    (page.len() == limit as usize)
        .then(|| page.last().map(cursor))
        .flatten()
}

/// The whole number given as `key`, if any.
fn number<T: std::str::FromStr>(
    pairs: &[(String, String)],
    key: &str,
) -> Result<Option<T>, ApiError> {
    single(pairs, key)
        .map(|v| {
            v.parse().map_err(|_| {
                ApiError::BadRequest(format!("{key} must be a whole number, got {v:?}"))
            })
        })
        .transpose()
}

fn single<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

async fn deployments(
    State(state): State<Arc<ApiState>>,
    RawQuery(raw): RawQuery,
    holding: held::Holding,
) -> Result<Response, ApiError> {
    let pairs = query_pairs(raw.as_deref());
    let filter = ListFilter::of(&pairs)?;
    let (state, pairs, filter, fresh) = (&state, &pairs, &filter, holding.waits());
    holding
        .answer(&state.views, move || async move {
            let list = state.deployment_list(fresh).await?;
            filter.page(&list, pairs)
        })
        .await
}

/// What `GET /v1/deployments` asks for: statuses, a namespace, a kind, and a page.
struct ListFilter {
    statuses: Vec<DeploymentStatus>,
    namespace: Option<String>,
    kind: Option<crate::model::manifest::WorkloadKind>,
    limit: usize,
    after: Option<(String, String)>,
}

impl ListFilter {
    fn of(pairs: &[(String, String)]) -> Result<Self, ApiError> {
        let kind = single(pairs, "kind")
            .map(|k| {
                k.parse::<crate::model::manifest::WorkloadKind>()
                    .map_err(|e| ApiError::BadRequest(e.to_string()))
            })
            .transpose()?;
        let (limit, after) = list_paging(pairs)?;
        Ok(Self {
            statuses: status_filter(pairs)?,
            namespace: single(pairs, "namespace").map(str::to_owned),
            kind,
            limit,
            after,
        })
    }

    /// The page of `list` this filter asks for (the whole rendered list when it asks for all).
    fn page(
        &self,
        list: &rendered::List,
        pairs: &[(String, String)],
    ) -> Result<held::Answer, ApiError> {
        let filtered = !self.statuses.is_empty()
            || self.namespace.is_some()
            || self.kind.is_some()
            || self.after.is_some();
        if !filtered && list.summaries.len() <= self.limit {
            return Ok(held::Answer::of(list.all.clone()));
        }
        let matching: Vec<&DeploymentSummary> = list
            .summaries
            .iter()
            .filter(|d| self.statuses.is_empty() || self.statuses.contains(&d.status))
            .filter(|d| self.namespace.as_deref().is_none_or(|n| d.namespace == n))
            .filter(|d| self.kind.is_none_or(|k| d.kind == k.as_str()))
            .filter(|d| {
                self.after
                    .as_ref()
                    .is_none_or(|(ns, name)| (d.namespace.as_str(), d.name.as_str()) > (ns, name))
            })
            .collect();
        let page = &matching[..matching.len().min(self.limit)];
        let link = match (matching.len() > self.limit, page.last()) {
            (true, Some(last)) => Some((header::LINK, next_link(pairs, last))),
            (true, None) | (false, _) => None,
        };
        let tag_link = link.as_ref().map(|(_, l)| l.as_str());
        Ok(held::Answer {
            rendered: Arc::new(
                rendered::Rendered::page_of(&page, &list.all, tag_link).map_err(internal)?,
            ),
            link,
            volatile: false,
        })
    }
}

/// `limit` (1–5000, default 500) and the `after=<namespace>/<name>` cursor of the list.
fn list_paging(pairs: &[(String, String)]) -> Result<(usize, Option<(String, String)>), ApiError> {
    let limit = limit(pairs, DEFAULT_PAGE, 5000)?;
    let after = single(pairs, "after")
        .map(|v| {
            v.split_once('/')
                .map(|(ns, name)| (ns.to_owned(), name.to_owned()))
                .ok_or_else(|| {
                    ApiError::BadRequest(format!("after must be <namespace>/<name>, got {v:?}"))
                })
        })
        .transpose()?;
    Ok((limit, after))
}

/// Deployments per page of `GET /v1/deployments` unless `limit` says otherwise.
pub const DEFAULT_PAGE: usize = 500;

/// The `Link` to the page after `last`, keeping every other query parameter.
fn next_link(pairs: &[(String, String)], last: &DeploymentSummary) -> String {
    let mut query: Vec<String> = pairs
        .iter()
        .filter(|(k, _)| k != "after")
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect();
    query.push(format!(
        "after={}",
        percent_encode(&format!("{}/{}", last.namespace, last.name))
    ));
    format!("</v1/deployments?{}>; rel=\"next\"", query.join("&"))
}

/// Escapes what a query value cannot hold as is (the inverse of `percent_decode`).
pub fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

fn internal(error: serde_json::Error) -> ApiError {
    ApiError::Internal(error.to_string())
}

async fn deployment(
    State(state): State<Arc<ApiState>>,
    Path((namespace, name)): Path<(String, String)>,
    holding: held::Holding,
) -> Result<Response, ApiError> {
    let id = DeploymentId::new(namespace, name);
    let (state, id) = (&state, &id);
    holding
        .answer(&state.views, move || detail(state, id))
        .await
}

/// One deployment's detail: from the cache unless the store was written since, or an image
/// pull of its is under way (a pull moves without a write to the store).
async fn detail(state: &Arc<ApiState>, id: &DeploymentId) -> Result<held::Answer, ApiError> {
    let pulling = state
        .pulls
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .get(id)
        .cloned()
        .unwrap_or_default();
    let count = state.views.count();
    let volatile = !pulling.is_empty();
    if let Some(detail) = state.views.detail(count, id).filter(|_| !volatile) {
        return Ok(held::Answer::of(detail));
    }
    let (row, instances) = {
        let id = id.clone();
        state
            .read(move |r| Ok((r.deployment(&id)?, r.instances(&id)?)))
            .await?
    };
    let d = row.ok_or_else(|| ApiError::NotFound(format!("no deployment {id}")))?;
    let detail = DeploymentDetail {
        summary: DeploymentSummary::of(&d, &instances),
        status_since: d.status_since.to_rfc3339(),
        spec_hash: d.spec_hash.to_string(),
        waiting_on: d.waiting_on.clone(),
        instances: instances
            .iter()
            .map(InstanceDto::from)
            .chain(pulling.iter().map(InstanceDto::from))
            .collect(),
    };
    let rendered = Arc::new(rendered::Rendered::json(&detail).map_err(internal)?);
    if !volatile {
        state.views.keep_detail(count, id.clone(), rendered.clone());
    }
    Ok(held::Answer {
        rendered,
        link: None,
        volatile,
    })
}

async fn events(
    State(state): State<Arc<ApiState>>,
    Path((namespace, name)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
    holding: held::Holding,
) -> Result<Response, ApiError> {
    let (limit, before) = paging(&query_pairs(raw.as_deref()))?;
    let id = DeploymentId::new(namespace, name);
    let (state, id) = (&state, &id);
    holding
        .answer(&state.views, move || async move {
            let page = event_page(state, id.clone(), limit, before).await?;
            let rendered = rendered::Rendered::json(&page).map_err(internal)?;
            Ok(held::Answer::of(Arc::new(rendered)))
        })
        .await
}

/// A page of a deployment's events, newest first.
async fn event_page(
    state: &Arc<ApiState>,
    id: DeploymentId,
    limit: u32,
    before: Option<i64>,
) -> Result<EventPage, ApiError> {
    let page = state
        .read(move |r| {
            let page = r.events_page(&id, limit, before)?;
            // A purged deployment's events stay readable for a while; no events and no row
            // is an unknown name.
            if page.is_empty() && r.deployment(&id)?.is_none() {
                return Err(ApiError::NotFound(format!("no deployment {id}")));
            }
            Ok(page)
        })
        .await?;
    let next_before = next_before(&page, limit, |(seq, _)| *seq);
    Ok(EventPage {
        events: page.iter().map(|(seq, e)| EventDto::new(*seq, e)).collect(),
        next_before,
    })
}

async fn runs(
    State(state): State<Arc<ApiState>>,
    Path((namespace, name)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Json<RunPage>, ApiError> {
    let (limit, before) = paging::<u64>(&query_pairs(raw.as_deref()))?;
    let id = DeploymentId::new(namespace, name);
    let page = {
        let id = id.clone();
        state
            .read(move |r| Ok(r.runs_page(&id, limit, before)?))
            .await?
    }
    .ok_or_else(|| ApiError::NotFound(format!("no deployment {id}")))?;
    let next_before = next_before(&page, limit, |(run, _)| run.run);
    Ok(Json(RunPage {
        runs: page
            .iter()
            .map(|(run, cleared)| RunDto::new(run, *cleared))
            .collect(),
        next_before,
    }))
}

/// An admin's write: checks the request carries an admin token, then runs `write` on the
/// store's writer off the async workers, with who asked (the token's fingerprint, never the
/// token) and the time.
async fn admin_write<T: Send + 'static>(
    state: &ApiState,
    headers: &HeaderMap,
    write: impl FnOnce(&crate::store::Store, String, crate::model::time::Timestamp) -> Result<T, StoreError>
        + Send
        + 'static,
) -> Result<T, ApiError> {
    admin(&state.access, headers)?;
    let store =
        state.writer.get().cloned().ok_or_else(|| {
            ApiError::Internal("the API has no access to the store's writer".into())
        })?;
    let by = format!("the admin token {}", fingerprint(bearer(headers)));
    Ok(
        tokio::task::spawn_blocking(move || write(&store, by, crate::clock::now()))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))??,
    )
}

/// Clears a cron job's failed runs (an operator's act: admin token only).
async fn clear_runs(
    State(state): State<Arc<ApiState>>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<ClearedRuns>, ApiError> {
    let id = DeploymentId::new(namespace, name);
    let asked = id.clone();
    let done = admin_write(&state, &headers, move |store, by, now| {
        store.clear_runs(asked, by, now)
    })
    .await?;
    match done {
        crate::store::Cleared::Runs(cleared) => Ok(Json(ClearedRuns { cleared })),
        crate::store::Cleared::Unknown => Err(ApiError::NotFound(format!("no deployment {id}"))),
        crate::store::Cleared::NotCronJob(kind) => Err(ApiError::BadRequest(format!(
            "{id} is a {kind}: only a cronjob has runs to clear"
        ))),
    }
}

/// `POST /v1/revisions/{id}/retry`: an admin lifts a quarantine and applies the state again.
async fn retry_revision(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<RevisionDto>, ApiError> {
    let asked = id.clone();
    let done = admin_write(&state, &headers, move |store, by, now| {
        store.retry_revision(asked, by, now)
    })
    .await?;
    match done {
        crate::store::Retried::Applied(record) => {
            tracing::info!(revision = %id, "quarantine lifted by an admin; the revision is applied again");
            if let Some(waker) = state.waker.get() {
                waker.notify_one();
            }
            Ok(Json(RevisionDto::from(record.as_ref())))
        }
        crate::store::Retried::Unknown => Err(ApiError::NotFound(format!("no revision {id}"))),
        crate::store::Retried::Outdated(newer) => Err(ApiError::BadRequest(format!(
            "revision {newer} was applied after {id}: retrying the older state would last only until the source is read again; push a commit instead"
        ))),
        crate::store::Retried::NotQuarantined(s) => Err(ApiError::BadRequest(format!(
            "revision {id} is {s}: only a rolled-back revision, or one quarantined as its twin, can be retried (and only while its state is quarantined)"
        ))),
    }
}

async fn deliveries(
    State(state): State<Arc<ApiState>>,
    RawQuery(raw): RawQuery,
) -> Result<Json<DeliveryPage>, ApiError> {
    let pairs = query_pairs(raw.as_deref());
    let (limit, before) = paging(&pairs)?;
    let state_filter = single(&pairs, "state")
        .map(|s| {
            s.parse::<crate::model::delivery::DeliveryState>()
                .map_err(|e| ApiError::BadRequest(e.to_string()))
        })
        .transpose()?;
    let filter = crate::store::DeliveryFilter {
        state: state_filter,
        endpoint: single(&pairs, "endpoint").map(str::to_owned),
        before,
        limit,
    };
    let page = state.read(move |r| Ok(r.deliveries(&filter)?)).await?;
    let next_before = next_before(&page, limit, |d| d.seq);
    Ok(Json(DeliveryPage {
        deliveries: page.iter().map(DeliveryDto::from).collect(),
        next_before,
    }))
}

async fn namespaces(
    State(state): State<Arc<ApiState>>,
) -> Result<Json<Vec<NamespaceDto>>, ApiError> {
    let (all, failing) = state
        .read(|r| Ok((r.summaries()?, r.failing_runs()?)))
        .await?;
    let mut by_namespace: BTreeMap<&str, Vec<views::Member>> = BTreeMap::new();
    let mut counts: BTreeMap<&str, BTreeMap<DeploymentStatus, usize>> = BTreeMap::new();
    for d in &all {
        let member = views::Member {
            kind: d.kind,
            status: d.status,
            desired_instances: d.desired,
            live_instances: d.live,
            failed_run: failing.contains(&d.id),
        };
        by_namespace
            .entry(&d.id.namespace)
            .or_default()
            .push(member);
        *counts
            .entry(&d.id.namespace)
            .or_default()
            .entry(d.status)
            .or_default() += 1;
    }
    let list = by_namespace
        .into_iter()
        .map(|(name, members)| NamespaceDto {
            name: name.to_owned(),
            status: views::namespace_status(&members),
            deployments: members.len(),
            by_status: counts.remove(name).unwrap_or_default(),
        })
        .collect();
    Ok(Json(list))
}

async fn revisions(
    State(state): State<Arc<ApiState>>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Vec<RevisionDto>>, ApiError> {
    let pairs = query_pairs(raw.as_deref());
    let limit = u32::try_from(limit(&pairs, 50, 500)?).unwrap_or(50);
    let list = state.read(move |r| Ok(r.revisions(limit)?)).await?;
    Ok(Json(list.iter().map(RevisionDto::from).collect()))
}

async fn revision(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> Result<Json<RevisionDetail>, ApiError> {
    let (record, all) = {
        let id = id.clone();
        state
            .read(move |r| {
                let record = r.revision(&id)?;
                let listed = match &record {
                    Some(record) => r.listed(Some(&record.id))?,
                    None => Vec::new(),
                };
                Ok((record, listed))
            })
            .await?
    };
    let record = record.ok_or_else(|| ApiError::NotFound(format!("no revision {id}")))?;
    let deployments = all
        .into_iter()
        .map(|(d, ips)| DeploymentSummary::new(&d, ips))
        .collect();
    Ok(Json(RevisionDetail {
        revision: RevisionDto::from(&record),
        deployments,
    }))
}

async fn source(State(state): State<Arc<ApiState>>) -> Json<SourceDto> {
    Json(
        state
            .source
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone(),
    )
}

async fn runtimes(State(state): State<Arc<ApiState>>) -> Json<Vec<RuntimeDto>> {
    let board = state.runtimes.read().unwrap_or_else(|p| p.into_inner());
    let list = board
        .iter()
        .map(|(kind, s)| RuntimeDto {
            runtime: kind.as_str().to_owned(),
            available: s.available,
            reason: s.reason.clone(),
            since: s.since.to_rfc3339(),
            checked_at: s.checked_at.to_rfc3339(),
        })
        .collect();
    Json(list)
}

async fn openapi_document() -> Json<serde_json::Value> {
    Json(openapi::document())
}
