//! Webhooks, as Standard Webhooks specifies them: headers `webhook-id` (the delivery's id,
//! the same on every retry), `webhook-timestamp` (seconds, at the attempt) and
//! `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, keyed by the base64
//! after `whsec_`. `sign` and `verdict` are pure; `send` does the one HTTP call.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::WebhookEndpoint;

/// What an answer (or its absence) means for the delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Delivered {
        status: u16,
    },
    /// Try again: after `retry_after` when the endpoint said so (then it does not use up a
    /// step of the schedule).
    Retry {
        status: Option<u16>,
        retry_after: Option<u64>,
        error: String,
    },
    /// 410 Gone: the endpoint does not want deliveries any more.
    Gone {
        reason: String,
    },
    /// Will never succeed (the request itself is refused).
    Refused {
        status: u16,
        error: String,
    },
}

/// Why a signature cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    #[error("the webhook secret is not whsec_<base64>")]
    BadSecret,
}

/// The `webhook-signature` value of `body` sent as `id` at `timestamp`.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Result<String, SignError> {
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
        .map_err(|_| SignError::BadSecret)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|_| SignError::BadSecret)?;
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let signature = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    Ok(format!("v1,{signature}"))
}

/// PURE: what an HTTP status (and its `Retry-After`, in seconds) means.
pub fn verdict(status: u16, retry_after: Option<u64>, body: &str) -> Verdict {
    match status {
        200..=299 => Verdict::Delivered { status },
        410 => Verdict::Gone {
            reason: format!("410 Gone: {}", excerpt(body)),
        },
        429 | 503 => Verdict::Retry {
            status: Some(status),
            retry_after,
            error: format!("{status}: {}", excerpt(body)),
        },
        _ => Verdict::Retry {
            status: Some(status),
            retry_after: None,
            error: format!("{status}: {}", excerpt(body)),
        },
    }
}

/// The first 200 characters of an answer, for the record.
pub fn excerpt(body: &str) -> String {
    let trimmed = body.trim();
    let cut: String = trimmed.chars().take(200).collect();
    if cut.is_empty() {
        "(no body)".to_owned()
    } else {
        cut
    }
}

/// Sends one attempt of delivery `id` with `body` to `endpoint`.
pub async fn send(
    client: &reqwest::Client,
    endpoint: &WebhookEndpoint,
    id: &str,
    body: &str,
    now_secs: i64,
) -> Verdict {
    let signature = match sign(&endpoint.secret, id, now_secs, body.as_bytes()) {
        Ok(signature) => signature,
        Err(error) => {
            return Verdict::Refused {
                status: 0,
                error: error.to_string(),
            }
        }
    };
    let mut request = client
        .post(&endpoint.url)
        .header("content-type", "application/json")
        .header("user-agent", concat!("keel/", env!("CARGO_PKG_VERSION")))
        .header("webhook-id", id)
        .header("webhook-timestamp", now_secs.to_string())
        .header("webhook-signature", signature);
    for (name, value) in &endpoint.headers {
        request = request.header(name, value);
    }
    match request.body(body.to_owned()).send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            let retry_after = retry_after(response.headers());
            let text = response.text().await.unwrap_or_default();
            verdict(status, retry_after, &text)
        }
        Err(error) => Verdict::Retry {
            status: None,
            retry_after: None,
            error: super::forge::describe(&error),
        },
    }
}

/// `Retry-After` in seconds (the HTTP-date form is not used by the endpoints keel talks to).
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<u64> {
    headers
        .get("retry-after")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_standard_webhooks_one() {
        // The example of the Standard Webhooks specification.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        let signature = sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body).unwrap();
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert_eq!(sign("whsec_***", "id", 1, b""), Err(SignError::BadSecret));
    }

    #[test]
    fn answers_classify() {
        let cases = [
            (200, None, Verdict::Delivered { status: 200 }),
            (204, None, Verdict::Delivered { status: 204 }),
            (
                410,
                None,
                Verdict::Gone {
                    reason: "410 Gone: bye".into(),
                },
            ),
            (
                429,
                Some(7),
                Verdict::Retry {
                    status: Some(429),
                    retry_after: Some(7),
                    error: "429: bye".into(),
                },
            ),
            (
                500,
                Some(7),
                Verdict::Retry {
                    status: Some(500),
                    retry_after: None,
                    error: "500: bye".into(),
                },
            ),
        ];
        for (status, after, expected) in cases {
            assert_eq!(verdict(status, after, " bye "), expected, "{status}");
        }
    }
}
