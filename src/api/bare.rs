//! Error answers that would otherwise leave with an empty body — a 405 from the router, a 400
//! or 431 that the HTTP layer itself writes for a request it cannot parse — given the
//! problem+json body every other error of the API has.
//!
//! Inputs: a response on its way out (`fill`), or the bytes the HTTP layer writes
//! (`rewrite_head`). Outputs: the same answer with a problem+json body. Invariants: only error
//! statuses (4xx, 5xx) without a body or a content type are touched; every header but the
//! body's own is kept (`Allow` on a 405, say).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;

use super::dto::Problem;

/// The problem document of a bare error answer with `status`.
pub fn problem(status: StatusCode) -> Problem {
    let (kind, detail) = match status.as_u16() {
        400 => ("bad-request", "the request is not valid HTTP/1.1"),
        405 => (
            "method-not-allowed",
            "this route does not accept that method; the Allow header lists those it does",
        ),
        431 => (
            "headers-too-large",
            "the request's headers are larger than this server accepts",
        ),
        _ => ("error", "the request could not be served"),
    };
    Problem {
        kind: format!("https://keel.dev/problems/{kind}"),
        title: status.canonical_reason().unwrap_or("Error").to_owned(),
        status: status.as_u16(),
        detail: detail.to_owned(),
    }
}

/// `response` with a problem+json body when it is a bare error answer; else unchanged.
pub async fn fill(response: Response) -> Response {
    let bare = response.status().as_u16() >= 400
        && !response.headers().contains_key(header::CONTENT_TYPE)
        && axum::body::HttpBody::size_hint(response.body()).exact() == Some(0);
    if !bare {
        return response;
    }
    let (mut parts, _) = response.into_parts();
    let body = serde_json::to_vec(&problem(parts.status)).unwrap_or_default();
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(body))
}

/// The whole answer to write instead of `written`, when `written` is an error head the HTTP
/// layer made itself (status ≥ 400, `content-length: 0`, no content type): the same status
/// with a problem+json body, and the connection closed as the HTTP layer meant to.
pub fn rewrite_head(written: &[u8]) -> Option<Vec<u8>> {
    // Cheap first: every write of every answer passes here; a bare error head is short.
    let error = written.starts_with(b"HTTP/1.1 4") || written.starts_with(b"HTTP/1.1 5");
    if !error || written.len() > 1024 {
        return None;
    }
    let head = std::str::from_utf8(written).ok()?;
    let head = head.strip_suffix("\r\n\r\n")?;
    let mut lines = head.split("\r\n");
    let code: u16 = lines
        .next()?
        .strip_prefix("HTTP/1.1 ")?
        .split(' ')
        .next()?
        .parse()
        .ok()?;
    let status = StatusCode::from_u16(code)
        .ok()
        .filter(|s| s.as_u16() >= 400)?;
    let mut empty = false;
    for line in lines {
        let (name, value) = line.split_once(':')?;
        match name.trim().to_ascii_lowercase().as_str() {
            "content-type" => return None,
            "content-length" => empty = value.trim() == "0",
            _ => {}
        }
    }
    if !empty {
        return None;
    }
    let body = serde_json::to_vec(&problem(status)).ok()?;
    let mut out = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/problem+json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Error"),
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bare_error_heads_are_rewritten() {
        let cases: [(&str, &[u8], Option<u16>); 5] = [
            (
                "a_bare_431_gets_a_body",
                b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-length: 0\r\ndate: x\r\n\r\n",
                Some(431),
            ),
            (
                "a_bare_400_gets_a_body",
                b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n",
                Some(400),
            ),
            (
                "an_answer_with_a_body_is_kept",
                b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/problem+json\r\ncontent-length: 90\r\n\r\n",
                None,
            ),
            (
                "a_success_is_kept",
                b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
                None,
            ),
            (
                "a_write_that_is_not_a_whole_head_is_kept",
                b"{\"status\":400}",
                None,
            ),
        ];
        for (name, written, expected) in cases {
            let rewritten = rewrite_head(written);
            let status = rewritten.as_ref().map(|r| {
                let text = String::from_utf8_lossy(r);
                assert!(text.contains("application/problem+json"), "{name}: {text}");
                let body = text.split("\r\n\r\n").nth(1).unwrap();
                let problem: serde_json::Value = serde_json::from_str(body).unwrap();
                problem["status"].as_u64().unwrap() as u16
            });
            assert_eq!(status, expected, "{name}");
        }
    }
}
