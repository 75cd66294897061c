//! What keel talks to, faithfully faked on 127.0.0.1:0: a webhook receiver that verifies the
//! Standard Webhooks signature with its own implementation of the algorithm, and the GitHub,
//! Gitea and GitLab commit-status APIs, which check method, path, auth header, required
//! fields, their own state words and the 140-character description limit, and answer what a
//! test scripts (rate limits, server errors, 422, GitLab's same-state 400).
#![allow(dead_code)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

/// Standard Webhooks verification, written from the specification (not keel's code):
/// `v1,` + base64(HMAC-SHA256(base64-decoded secret after `whsec_`, "id.timestamp.body")), the
/// timestamp within 5 minutes of `now`.
pub fn verify(
    secret: &str,
    id: &str,
    timestamp: &str,
    signatures: &str,
    body: &[u8],
    now: i64,
) -> Result<(), String> {
    let sent: i64 = timestamp.parse().map_err(|_| "bad timestamp".to_owned())?;
    if (now - sent).abs() > 300 {
        return Err("stale timestamp".into());
    }
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .map_err(|_| "bad secret".to_owned())?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    signatures
        .split(' ')
        .filter_map(|s| s.strip_prefix("v1,"))
        .any(|s| s == expected)
        .then_some(())
        .ok_or_else(|| "signature mismatch".to_owned())
}

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// One verified webhook delivery.
#[derive(Debug, Clone)]
pub struct Received {
    pub id: String,
    pub kind: String,
    pub body: Value,
    pub signature: String,
    pub at: Instant,
}

#[derive(Default)]
struct ReceiverState {
    secret: String,
    /// Answers to give before accepting (status, Retry-After).
    script: VecDeque<(u16, Option<u64>)>,
    /// While true, every request is answered 503 (without Retry-After).
    down: bool,
    received: Vec<Received>,
    rejected: Vec<String>,
}

/// A webhook endpoint.
#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    state: Arc<Mutex<ReceiverState>>,
}

impl Receiver {
    pub async fn start(secret: &str) -> Self {
        let state = Arc::new(Mutex::new(ReceiverState {
            secret: secret.to_owned(),
            ..ReceiverState::default()
        }));
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, state }
    }

    pub fn set_down(&self, down: bool) {
        self.state.lock().unwrap().down = down;
    }

    pub fn script(&self, answers: &[(u16, Option<u64>)]) {
        self.state
            .lock()
            .unwrap()
            .script
            .extend(answers.iter().copied());
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    pub fn rejected(&self) -> Vec<String> {
        self.state.lock().unwrap().rejected.clone()
    }
}

async fn receive(
    State(state): State<Arc<Mutex<ReceiverState>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let mut state = state.lock().unwrap();
    if state.down {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let (id, timestamp, signature) = (
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
    );
    if let Err(why) = verify(
        &state.secret,
        &id,
        &timestamp,
        &signature,
        &body,
        now_secs(),
    ) {
        state.rejected.push(why);
        return StatusCode::UNAUTHORIZED.into_response();
    }
    if let Some((status, retry_after)) = state.script.pop_front() {
        let mut response = StatusCode::from_u16(status).unwrap().into_response();
        if let Some(after) = retry_after {
            response
                .headers_mut()
                .insert("retry-after", after.to_string().parse().unwrap());
        }
        return response;
    }
    let parsed: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            state.rejected.push(format!("not JSON: {e}"));
            return StatusCode::BAD_REQUEST.into_response();
        }
    };
    state.received.push(Received {
        id,
        kind: parsed["type"].as_str().unwrap_or_default().to_owned(),
        body: parsed,
        signature,
        at: Instant::now(),
    });
    StatusCode::NO_CONTENT.into_response()
}

/// Which forge API a `FakeForge` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forge {
    Github,
    Gitea,
    Gitlab,
}

/// One commit status the fake accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posted {
    pub sha: String,
    pub context: String,
    pub state: String,
    pub description: String,
    pub target_url: Option<String>,
    pub at: Instant,
    /// The same moment on the wall clock (to compare with the agent's event times).
    pub wall_ms: i64,
}

/// A scripted answer: status, headers, body.
type Scripted = (u16, Vec<(String, String)>, String);

/// A scripted answer as a test writes it.
pub type Answer<'a> = (u16, &'a [(&'a str, &'a str)], &'a str);

#[derive(Default)]
struct ForgeState {
    token: String,
    script: VecDeque<Scripted>,
    posted: Vec<Posted>,
    rejected: Vec<String>,
    /// Requests answered, scripted ones included.
    requests: usize,
}

/// A forge's commit-status API.
#[derive(Clone)]
pub struct FakeForge {
    pub kind: Forge,
    /// What `[forge] api_url` is set to.
    pub api_url: String,
    state: Arc<Mutex<ForgeState>>,
}

pub const REPOSITORY: &str = "ops/deploy";

impl FakeForge {
    pub async fn start(kind: Forge, token: &str) -> Self {
        let state = Arc::new(Mutex::new(ForgeState {
            token: token.to_owned(),
            ..ForgeState::default()
        }));
        let (route, prefix) = match kind {
            Forge::Github => ("/repos/{owner}/{repo}/statuses/{sha}", ""),
            Forge::Gitea => ("/api/v1/repos/{owner}/{repo}/statuses/{sha}", "/api/v1"),
            Forge::Gitlab => ("/api/v4/projects/{id}/statuses/{sha}", "/api/v4"),
        };
        let app = match kind {
            Forge::Github | Forge::Gitea => Router::new().route(
                route,
                post(
                    move |s: State<Arc<Mutex<ForgeState>>>,
                          p: Path<(String, String, String)>,
                          h: HeaderMap,
                          b: Bytes| owner_repo(kind, s, p, h, b),
                ),
            ),
            Forge::Gitlab => Router::new().route(route, post(gitlab)),
        }
        .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let api_url = format!("http://{}{prefix}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            kind,
            api_url,
            state,
        }
    }

    /// Answers to give to the next requests (status, headers, body), before accepting.
    pub fn script(&self, answers: &[Answer<'_>]) {
        let mut state = self.state.lock().unwrap();
        for (status, headers, body) in answers {
            let headers = headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            state
                .script
                .push_back((*status, headers, (*body).to_owned()));
        }
    }

    pub fn posted(&self) -> Vec<Posted> {
        self.state.lock().unwrap().posted.clone()
    }

    pub fn rejected(&self) -> Vec<String> {
        self.state.lock().unwrap().rejected.clone()
    }

    pub fn requests(&self) -> usize {
        self.state.lock().unwrap().requests
    }

    /// The forge's name in `[forge] kind`.
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            Forge::Github => "github",
            Forge::Gitea => "gitea",
            Forge::Gitlab => "gitlab",
        }
    }
}

fn reject(state: &mut ForgeState, status: StatusCode, why: String) -> Response {
    state.rejected.push(why.clone());
    (status, why).into_response()
}

fn header(headers: &HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// GitHub and Gitea: `POST …/repos/{owner}/{repo}/statuses/{sha}`.
async fn owner_repo(
    kind: Forge,
    State(state): State<Arc<Mutex<ForgeState>>>,
    Path((owner, repo, sha)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut state = state.lock().unwrap();
    state.requests += 1;
    let (auth, states): (String, &[&str]) = match kind {
        Forge::Github => (
            format!("Bearer {}", state.token),
            &["pending", "success", "failure", "error"],
        ),
        Forge::Gitea | Forge::Gitlab => (
            format!("token {}", state.token),
            &["pending", "success", "error", "failure", "warning"],
        ),
    };
    if header(&headers, "authorization") != auth {
        return reject(
            &mut state,
            StatusCode::UNAUTHORIZED,
            "bad authorization".into(),
        );
    }
    if kind == Forge::Github && header(&headers, "accept") != "application/vnd.github+json" {
        return reject(&mut state, StatusCode::BAD_REQUEST, "bad accept".into());
    }
    if header(&headers, "user-agent").is_empty() {
        return reject(&mut state, StatusCode::FORBIDDEN, "no user agent".into());
    }
    if format!("{owner}/{repo}") != REPOSITORY {
        return reject(
            &mut state,
            StatusCode::NOT_FOUND,
            format!("no repository {owner}/{repo}"),
        );
    }
    accept(&mut state, &sha, &body, "context", states)
}

/// GitLab: `POST /projects/{id}/statuses/{sha}`, `PRIVATE-TOKEN`, context in `name`; a
/// transition to the state a status already has is refused with 400.
async fn gitlab(
    State(state): State<Arc<Mutex<ForgeState>>>,
    Path((id, sha)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut state = state.lock().unwrap();
    state.requests += 1;
    if header(&headers, "private-token") != state.token {
        return reject(
            &mut state,
            StatusCode::UNAUTHORIZED,
            "bad private token".into(),
        );
    }
    if id != REPOSITORY {
        return reject(
            &mut state,
            StatusCode::NOT_FOUND,
            format!("no project {id}"),
        );
    }
    if let Ok(parsed) = serde_json::from_slice::<Value>(&body) {
        let (name, wanted) = (parsed["name"].as_str(), parsed["state"].as_str());
        let current = state
            .posted
            .iter()
            .rev()
            .find(|p| {
                Some(p.sha.as_str()) == Some(sha.as_str()) && Some(p.context.as_str()) == name
            })
            .map(|p| p.state.clone());
        if current.is_some() && current.as_deref() == wanted && state.script.is_empty() {
            let message = format!(
                "{{\"message\":\"Cannot transition status via :run from :{}\"}}",
                wanted.unwrap_or_default()
            );
            return (StatusCode::BAD_REQUEST, message).into_response();
        }
    }
    accept(
        &mut state,
        &sha,
        &body,
        "name",
        &["pending", "running", "success", "failed", "canceled"],
    )
}

fn accept(
    state: &mut ForgeState,
    sha: &str,
    body: &[u8],
    context_field: &str,
    states: &[&str],
) -> Response {
    let parsed: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return reject(state, StatusCode::BAD_REQUEST, format!("not JSON: {e}")),
    };
    let Some(status) = parsed["state"].as_str() else {
        return reject(
            state,
            StatusCode::UNPROCESSABLE_ENTITY,
            "state is required".into(),
        );
    };
    if !states.contains(&status) {
        return reject(
            state,
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("state {status:?} is not one of {states:?}"),
        );
    }
    let Some(context) = parsed[context_field].as_str() else {
        return reject(
            state,
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{context_field} is required"),
        );
    };
    let description = parsed["description"].as_str().unwrap_or_default();
    if description.chars().count() > 140 {
        return reject(
            state,
            StatusCode::UNPROCESSABLE_ENTITY,
            "description over 140 characters".into(),
        );
    }
    if let Some((status, headers, text)) = state.script.pop_front() {
        let mut response = (StatusCode::from_u16(status).unwrap(), text).into_response();
        for (k, v) in headers {
            response.headers_mut().insert(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        return response;
    }
    state.posted.push(Posted {
        sha: sha.to_owned(),
        context: context.to_owned(),
        state: status.to_owned(),
        description: description.to_owned(),
        target_url: parsed["target_url"].as_str().map(str::to_owned),
        at: Instant::now(),
        wall_ms: now_millis(),
    });
    (StatusCode::CREATED, "{}").into_response()
}
