//! Push receivers: `POST /v1/hooks/{github,gitlab,gitea,generic}`. A verified push to the
//! followed branch triggers an immediate fetch (202 at once); pushes to other branches are
//! acknowledged and ignored; a bad signature is 401 and triggers nothing. Signatures are
//! checked in constant time; bodies are capped at 1 MiB (413). Secrets come from the agent
//! config only.

use std::sync::{Arc, RwLock};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::Notify;

use super::{constant_time_eq, ApiError};

/// The largest push payload accepted.
pub const MAX_BODY: usize = 1 << 20;

/// How far a Standard Webhooks timestamp may be from now.
pub const TOLERANCE_SECS: i64 = 300;

/// One secret per forge; a forge without one has no receiver.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct HookSecrets {
    pub github: Option<String>,
    pub gitlab: Option<String>,
    pub gitea: Option<String>,
    /// Standard Webhooks: `whsec_<base64>`.
    pub generic: Option<String>,
}

impl std::fmt::Debug for HookSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = |s: &Option<String>| if s.is_some() { "[set]" } else { "[none]" };
        f.debug_struct("HookSecrets")
            .field("github", &set(&self.github))
            .field("gitlab", &set(&self.gitlab))
            .field("gitea", &set(&self.gitea))
            .field("generic", &set(&self.generic))
            .finish()
    }
}

/// What a verified push does.
pub struct Hooks {
    pub secrets: HookSecrets,
    /// The followed branch (`None`: accept pushes to any branch).
    pub branch: Arc<RwLock<Option<String>>>,
    /// Wakes the source.
    pub fetch: Arc<Notify>,
    pub clock: crate::clock::Clock,
}

/// The forges keel understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forge {
    Github,
    Gitlab,
    Gitea,
    Generic,
}

impl Forge {
    fn parse(name: &str) -> Option<Self> {
        match name {
            "github" => Some(Forge::Github),
            "gitlab" => Some(Forge::Gitlab),
            "gitea" => Some(Forge::Gitea),
            "generic" => Some(Forge::Generic),
            _ => None,
        }
    }
}

pub fn router(hooks: Arc<Hooks>) -> Router {
    Router::new()
        .route("/v1/hooks/{forge}", post(receive))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(hooks)
}

async fn receive(
    State(hooks): State<Arc<Hooks>>,
    Path(forge): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return ApiError::TooLarge { limit: MAX_BODY }.into_response();
        }
        Err(rejection) => return ApiError::BadRequest(rejection.body_text()).into_response(),
    };
    let Some(forge) = Forge::parse(&forge) else {
        return ApiError::NotFound(format!(
            "no receiver for {forge:?}; use github, gitlab, gitea or generic"
        ))
        .into_response();
    };
    let secret = match forge {
        Forge::Github => hooks.secrets.github.as_deref(),
        Forge::Gitlab => hooks.secrets.gitlab.as_deref(),
        Forge::Gitea => hooks.secrets.gitea.as_deref(),
        Forge::Generic => hooks.secrets.generic.as_deref(),
    };
    let Some(secret) = secret else {
        return ApiError::NotFound("no secret is configured for this receiver".to_owned())
            .into_response();
    };
    let now_secs = (hooks.clock)().millis() / 1000;
    if let Err(why) = verify(forge, secret, &headers, &body, now_secs) {
        tracing::warn!(?forge, why, "push hook rejected");
        return ApiError::BadSignature(why).into_response();
    }
    let payload = match push_payload(forge, &headers, &body) {
        Ok(payload) => payload,
        Err(why) => {
            tracing::warn!(?forge, why, "push hook refused: not a push document");
            return ApiError::BadRequest(why).into_response();
        }
    };
    let followed = hooks
        .branch
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    match payload.as_ref().and_then(branch_of) {
        Some(branch) if followed.as_deref().is_some_and(|f| f != branch) => {
            (StatusCode::ACCEPTED, Json(serde_json::json!({"fetch": false, "reason": format!("push to {branch}, not the followed branch")}))).into_response()
        }
        Some(_) | None => {
            hooks.fetch.notify_one();
            (StatusCode::ACCEPTED, Json(serde_json::json!({"fetch": true}))).into_response()
        }
    }
}

/// The push's JSON document: the body, or the `payload` field of a form-encoded one (GitHub's
/// `application/x-www-form-urlencoded` content type). A forge's push must be a JSON object: a
/// signed body that is not one (empty, `[]`, broken) is refused, and nothing is fetched for
/// it. The generic receiver takes any body (`None` when it is no JSON).
pub fn push_payload(
    forge: Forge,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Option<serde_json::Value>, String> {
    let form = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
    let document = match form {
        true => form_payload(body).ok_or("a form-encoded push needs a `payload` field")?,
        false => body.to_vec(),
    };
    let parsed = serde_json::from_slice::<serde_json::Value>(&document);
    match (forge, parsed) {
        (Forge::Generic, parsed) => Ok(parsed.ok()),
        (Forge::Github | Forge::Gitlab | Forge::Gitea, Ok(serde_json::Value::Object(map))) => {
            Ok(Some(serde_json::Value::Object(map)))
        }
        (Forge::Github | Forge::Gitlab | Forge::Gitea, Ok(other)) => Err(format!(
            "the push payload must be a JSON object, got {}",
            json_kind(&other)
        )),
        (Forge::Github | Forge::Gitlab | Forge::Gitea, Err(e)) if document.is_empty() => {
            Err(format!("the push payload is empty ({e})"))
        }
        (Forge::Github | Forge::Gitlab | Forge::Gitea, Err(e)) => {
            Err(format!("the push payload is not JSON: {e}"))
        }
    }
}

/// The `payload` field of a form-encoded body, decoded.
fn form_payload(body: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(body).ok()?;
    super::query_pairs(Some(text))
        .into_iter()
        .find(|(key, _)| key == "payload")
        .map(|(_, value)| value.into_bytes())
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// The branch of a push payload (`"ref": "refs/heads/<branch>"`), when it names one.
pub fn pushed_branch(body: &[u8]) -> Option<String> {
    branch_of(&serde_json::from_slice(body).ok()?)
}

/// The branch a push document names (`"ref": "refs/heads/<branch>"`).
fn branch_of(payload: &serde_json::Value) -> Option<String> {
    payload["ref"]
        .as_str()?
        .strip_prefix("refs/heads/")
        .map(str::to_owned)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, &'static str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .ok_or("missing signature header")
}

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return Vec::new();
    };
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks a push's signature the way its forge signs.
pub fn verify(
    forge: Forge,
    secret: &str,
    headers: &HeaderMap,
    body: &[u8],
    now_secs: i64,
) -> Result<(), &'static str> {
    let ok = match forge {
        Forge::Github => {
            let expected = format!("sha256={}", hex(&hmac_sha256(secret.as_bytes(), &[body])));
            constant_time_eq(
                expected.as_bytes(),
                header(headers, "x-hub-signature-256")?.as_bytes(),
            )
        }
        Forge::Gitea => {
            let expected = hex(&hmac_sha256(secret.as_bytes(), &[body]));
            constant_time_eq(
                expected.as_bytes(),
                header(headers, "x-gitea-signature")?.as_bytes(),
            )
        }
        Forge::Gitlab => constant_time_eq(
            secret.as_bytes(),
            header(headers, "x-gitlab-token")?.as_bytes(),
        ),
        Forge::Generic => return standard_webhooks(secret, headers, body, now_secs),
    };
    if ok {
        Ok(())
    } else {
        Err("signature mismatch")
    }
}

/// Standard Webhooks: `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`
/// (space-separated, any may match), keyed by the base64 after `whsec_`; the timestamp must be
/// within five minutes of now, so a captured request cannot be replayed later.
fn standard_webhooks(
    secret: &str,
    headers: &HeaderMap,
    body: &[u8],
    now_secs: i64,
) -> Result<(), &'static str> {
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
        .map_err(|_| "the configured secret is not whsec_<base64>")?;
    let id = header(headers, "webhook-id")?;
    let timestamp = header(headers, "webhook-timestamp")?;
    let sent: i64 = timestamp
        .parse()
        .map_err(|_| "malformed webhook-timestamp")?;
    // abs_diff: a timestamp near i64::MIN must not overflow into "within the tolerance".
    if now_secs.abs_diff(sent) > TOLERANCE_SECS.unsigned_abs() {
        return Err("webhook-timestamp outside the tolerance");
    }
    let expected = base64::engine::general_purpose::STANDARD.encode(hmac_sha256(
        &key,
        &[id.as_bytes(), b".", timestamp.as_bytes(), b".", body],
    ));
    let matched = header(headers, "webhook-signature")?
        .split(' ')
        .filter_map(|s| s.strip_prefix("v1,"))
        .fold(false, |ok, candidate| {
            ok | constant_time_eq(candidate.as_bytes(), expected.as_bytes())
        });
    if matched {
        Ok(())
    } else {
        Err("signature mismatch")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = br#"{"ref":"refs/heads/main"}"#;
    const NOW: i64 = 1_800_000_000;

    fn headers(pairs: &[(&str, String)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        map
    }

    fn standard(secret_key: &[u8], id: &str, ts: i64, body: &[u8]) -> HeaderMap {
        let sig = base64::engine::general_purpose::STANDARD.encode(hmac_sha256(
            secret_key,
            &[id.as_bytes(), b".", ts.to_string().as_bytes(), b".", body],
        ));
        headers(&[
            ("webhook-id", id.into()),
            ("webhook-timestamp", ts.to_string()),
            ("webhook-signature", format!("v1,bad v1,{sig}")),
        ])
    }

    #[test]
    fn a_timestamp_at_the_edge_of_i64_is_outside_the_tolerance_not_an_overflow() {
        let key = b"0123456789abcdef";
        let secret = format!(
            "whsec_{}",
            base64::engine::general_purpose::STANDARD.encode(key)
        );
        for ts in [i64::MIN, i64::MAX] {
            let signed = standard(key, "msg_1", ts, BODY);
            assert_eq!(
                verify(Forge::Generic, &secret, &signed, BODY, NOW),
                Err("webhook-timestamp outside the tolerance"),
                "{ts}"
            );
        }
    }

    /// (behaviour, forge, configured secret, request headers, body, verdict)
    type Case<'a> = (
        &'a str,
        Forge,
        &'a str,
        HeaderMap,
        &'a [u8],
        Result<(), &'static str>,
    );

    #[test]
    fn signatures_per_forge() {
        let key = b"0123456789abcdef";
        let whsec = format!(
            "whsec_{}",
            base64::engine::general_purpose::STANDARD.encode(key)
        );
        let gh = format!("sha256={}", hex(&hmac_sha256(b"s3cret", &[BODY])));
        let gitea = hex(&hmac_sha256(b"s3cret", &[BODY]));
        let cases: Vec<Case> = vec![
            (
                "github_valid",
                Forge::Github,
                "s3cret",
                headers(&[("x-hub-signature-256", gh.clone())]),
                BODY,
                Ok(()),
            ),
            (
                "github_wrong_secret",
                Forge::Github,
                "other",
                headers(&[("x-hub-signature-256", gh.clone())]),
                BODY,
                Err("signature mismatch"),
            ),
            (
                "github_tampered_body",
                Forge::Github,
                "s3cret",
                headers(&[("x-hub-signature-256", gh.clone())]),
                b"{}",
                Err("signature mismatch"),
            ),
            (
                "github_missing_header",
                Forge::Github,
                "s3cret",
                HeaderMap::new(),
                BODY,
                Err("missing signature header"),
            ),
            (
                "gitea_valid",
                Forge::Gitea,
                "s3cret",
                headers(&[("x-gitea-signature", gitea.clone())]),
                BODY,
                Ok(()),
            ),
            (
                "gitea_sha1_style_rejected",
                Forge::Gitea,
                "s3cret",
                headers(&[("x-gitea-signature", format!("sha256={gitea}"))]),
                BODY,
                Err("signature mismatch"),
            ),
            (
                "gitlab_token_valid",
                Forge::Gitlab,
                "s3cret",
                headers(&[("x-gitlab-token", "s3cret".into())]),
                BODY,
                Ok(()),
            ),
            (
                "gitlab_token_wrong",
                Forge::Gitlab,
                "s3cret",
                headers(&[("x-gitlab-token", "s3cre".into())]),
                BODY,
                Err("signature mismatch"),
            ),
            (
                "generic_valid",
                Forge::Generic,
                &whsec,
                standard(key, "msg_1", NOW - 10, BODY),
                BODY,
                Ok(()),
            ),
            (
                "generic_wrong_key",
                Forge::Generic,
                &whsec,
                standard(b"another-key-xyz!", "msg_1", NOW, BODY),
                BODY,
                Err("signature mismatch"),
            ),
            (
                "generic_replayed_old",
                Forge::Generic,
                &whsec,
                standard(key, "msg_1", NOW - 301, BODY),
                BODY,
                Err("webhook-timestamp outside the tolerance"),
            ),
            (
                "generic_from_the_future",
                Forge::Generic,
                &whsec,
                standard(key, "msg_1", NOW + 301, BODY),
                BODY,
                Err("webhook-timestamp outside the tolerance"),
            ),
            (
                "generic_id_swapped",
                Forge::Generic,
                &whsec,
                {
                    let mut h = standard(key, "msg_1", NOW, BODY);
                    h.insert("webhook-id", "msg_2".parse().unwrap());
                    h
                },
                BODY,
                Err("signature mismatch"),
            ),
        ];
        for (name, forge, secret, headers, body, expected) in cases {
            assert_eq!(
                verify(forge, secret, &headers, body, NOW),
                expected,
                "{name}"
            );
        }
    }

    #[test]
    fn a_forges_push_is_a_json_object_sent_as_json_or_as_a_form_payload() {
        let json = headers(&[("content-type", "application/json".into())]);
        let form = headers(&[("content-type", "application/x-www-form-urlencoded".into())]);
        // (name, forge, headers, body, the branch read or part of the refusal)
        type Case<'a> = (
            &'a str,
            Forge,
            &'a HeaderMap,
            &'a [u8],
            Result<Option<&'a str>, &'a str>,
        );
        let cases: [Case; 8] = [
            ("json_object", Forge::Github, &json, BODY, Ok(Some("main"))),
            (
                "form_payload",
                Forge::Github,
                &form,
                b"payload=%7B%22ref%22%3A%22refs%2Fheads%2Fmain%22%7D",
                Ok(Some("main")),
            ),
            (
                "form_without_payload",
                Forge::Github,
                &form,
                b"x=1",
                Err("payload"),
            ),
            (
                "broken",
                Forge::Gitlab,
                &json,
                b"{not json",
                Err("not JSON"),
            ),
            ("empty", Forge::Gitea, &json, b"", Err("empty")),
            ("array", Forge::Github, &json, b"[]", Err("an array")),
            (
                "generic_takes_anything",
                Forge::Generic,
                &json,
                b"[]",
                Ok(None),
            ),
            (
                "generic_without_json",
                Forge::Generic,
                &json,
                b"ping",
                Ok(None),
            ),
        ];
        for (name, forge, headers, body, expected) in cases {
            let got = push_payload(forge, headers, body);
            match (got, expected) {
                (Ok(payload), Ok(branch)) => assert_eq!(
                    payload.as_ref().and_then(branch_of).as_deref(),
                    branch,
                    "{name}"
                ),
                (Err(why), Err(part)) => assert!(why.contains(part), "{name}: {why}"),
                (got, expected) => panic!("{name}: {got:?}, expected {expected:?}"),
            }
        }
    }

    #[test]
    fn the_pushed_branch_comes_from_ref() {
        assert_eq!(pushed_branch(BODY).as_deref(), Some("main"));
        assert_eq!(pushed_branch(br#"{"ref":"refs/tags/v1"}"#), None);
        assert_eq!(pushed_branch(b"not json"), None);
    }
}
