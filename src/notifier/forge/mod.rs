//! Commit statuses on the forge. Each forge module builds its request (method, URL, auth
//! header, body in its own words) and reads its answers — both pure; `send` does the call.
//! Rate limits (403/429 with `Retry-After` or `X-RateLimit-Reset`) delay a status, never drop
//! it; a 422 (and any other refusal of the request itself) is recorded and not retried; a
//! server error is retried on the schedule.

pub mod gitea;
pub mod github;
pub mod gitlab;

use crate::model::delivery::CommitStatus;

use super::webhook::{excerpt, Verdict};
use super::{ForgeKind, ForgeSettings};

/// One HTTP request to a forge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub url: String,
    /// Besides `Content-Type: application/json` and `User-Agent`.
    pub headers: Vec<(String, String)>,
    pub body: serde_json::Value,
}

/// What a forge answered, as far as the verdict needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: String,
    pub retry_after: Option<u64>,
    /// `X-RateLimit-Remaining`.
    pub remaining: Option<u64>,
    /// `X-RateLimit-Reset`, epoch seconds.
    pub reset: Option<i64>,
}

/// The request that posts `status`.
pub fn request(forge: &ForgeSettings, status: &CommitStatus) -> Request {
    match forge.kind {
        ForgeKind::Github => github::request(forge, status),
        ForgeKind::Gitea => gitea::request(forge, status),
        ForgeKind::Gitlab => gitlab::request(forge, status),
    }
}

/// PURE: what an answer means, at `now_secs`.
pub fn verdict(kind: ForgeKind, answer: &Answer, now_secs: i64) -> Verdict {
    let error = format!("{}: {}", answer.status, excerpt(&answer.body));
    if kind == ForgeKind::Gitlab && gitlab::already_in_state(answer) {
        return Verdict::Delivered {
            status: answer.status,
        };
    }
    let rate_limited = answer.status == 429
        || (answer.status == 403 && (answer.retry_after.is_some() || answer.remaining == Some(0)));
    if rate_limited {
        let until_reset = answer
            .reset
            .map(|reset| u64::try_from(reset.saturating_sub(now_secs)).unwrap_or(0));
        return Verdict::Retry {
            status: Some(answer.status),
            retry_after: Some(answer.retry_after.or(until_reset).unwrap_or(60)),
            error,
        };
    }
    match answer.status {
        200..=299 => Verdict::Delivered {
            status: answer.status,
        },
        408 | 500..=599 => Verdict::Retry {
            status: Some(answer.status),
            retry_after: answer.retry_after,
            error,
        },
        _ => Verdict::Refused {
            status: answer.status,
            error,
        },
    }
}

/// Posts `status` on the forge.
pub async fn send(
    client: &reqwest::Client,
    forge: &ForgeSettings,
    status: &CommitStatus,
    now_secs: i64,
) -> Verdict {
    let built = request(forge, status);
    let mut call = client
        .post(&built.url)
        .header("content-type", "application/json")
        .header("user-agent", concat!("keel/", env!("CARGO_PKG_VERSION")));
    for (name, value) in &built.headers {
        call = call.header(name, value);
    }
    let response = match call.body(built.body.to_string()).send().await {
        Ok(response) => response,
        Err(error) => {
            return Verdict::Retry {
                status: None,
                retry_after: None,
                error: describe(&error),
            }
        }
    };
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_owned())
    };
    let answer = Answer {
        status: response.status().as_u16(),
        retry_after: header("retry-after").and_then(|v| v.parse().ok()),
        remaining: header("x-ratelimit-remaining").and_then(|v| v.parse().ok()),
        reset: header("x-ratelimit-reset").and_then(|v| v.parse().ok()),
        body: String::new(),
    };
    let body = response.text().await.unwrap_or_default();
    verdict(forge.kind, &Answer { body, ..answer }, now_secs)
}

/// A transport error in words, without the URL (which may carry credentials).
pub fn describe(error: &reqwest::Error) -> String {
    let what = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let cause = std::error::Error::source(error)
        .map(|s| format!(": {s}"))
        .unwrap_or_default();
    format!("{what}{cause}")
}

/// `POST {api_url}/repos/{owner}/{repo}/statuses/{sha}` with `state` in the forge's words —
/// the shape GitHub and Gitea share.
fn repos_statuses(
    forge: &ForgeSettings,
    status: &CommitStatus,
    state: &str,
    headers: Vec<(String, String)>,
) -> Request {
    let (owner, name) = owner_and_name(&forge.repository);
    let mut body = serde_json::json!({
        "state": state,
        "description": status.description,
        "context": status.context,
    });
    if let Some(url) = &status.target_url {
        body["target_url"] = serde_json::Value::String(url.clone());
    }
    Request {
        url: format!(
            "{}/repos/{owner}/{name}/statuses/{}",
            forge.api_url.trim_end_matches('/'),
            status.sha
        ),
        headers,
        body,
    }
}

/// `owner/name` split, or the whole for a bare id.
fn owner_and_name(repository: &str) -> (&str, &str) {
    repository.split_once('/').unwrap_or(("", repository))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16) -> Answer {
        Answer {
            status,
            body: "nope".into(),
            retry_after: None,
            remaining: None,
            reset: None,
        }
    }

    #[test]
    fn forge_answers_classify() {
        let now = 1_000;
        let cases = [
            ("created", ForgeKind::Github, answer(201), "delivered"),
            (
                "server_error_retries",
                ForgeKind::Gitea,
                answer(502),
                "retry",
            ),
            (
                "unprocessable_is_recorded",
                ForgeKind::Github,
                answer(422),
                "refused",
            ),
            (
                "forbidden_without_rate_limit",
                ForgeKind::Github,
                answer(403),
                "refused",
            ),
            (
                "rate_limited_until_reset",
                ForgeKind::Github,
                Answer {
                    remaining: Some(0),
                    reset: Some(1_030),
                    ..answer(403)
                },
                "retry after 30",
            ),
            (
                "too_many_with_retry_after",
                ForgeKind::Gitlab,
                Answer {
                    retry_after: Some(12),
                    ..answer(429)
                },
                "retry after 12",
            ),
            (
                "gitlab_same_state_is_done",
                ForgeKind::Gitlab,
                Answer {
                    body: r#"{"message":"Cannot transition status via :run from :running"}"#.into(),
                    ..answer(400)
                },
                "delivered",
            ),
            (
                "other_bad_request",
                ForgeKind::Gitlab,
                answer(400),
                "refused",
            ),
        ];
        for (name, kind, answer, expected) in cases {
            let got = match verdict(kind, &answer, now) {
                Verdict::Delivered { .. } => "delivered".to_owned(),
                Verdict::Retry {
                    retry_after: Some(after),
                    ..
                } => format!("retry after {after}"),
                Verdict::Retry { .. } => "retry".to_owned(),
                Verdict::Refused { .. } | Verdict::Gone { .. } => "refused".to_owned(),
            };
            assert_eq!(got, expected, "{name}");
        }
    }
}
