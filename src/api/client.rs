//! A minimal HTTP/1.1 client for the API (plain `http://`, one request per connection): what
//! the CLI and the tests use to talk to an agent. Deliberately small — the API is local.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An answer of the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub body: String,
    /// The path of the next page (a `Link: <path>; rel="next"` header), when there is one.
    pub next: Option<String>,
}

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0:?} is not an http:// URL")]
    BadUrl(String),
    #[error("cannot reach the keel API at {address}")]
    Connect {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the keel API at {0} sent a malformed response")]
    Malformed(String),
}

/// `GET base + path`, with a bearer token when given.
pub async fn get(base: &str, path: &str, token: Option<&str>) -> Result<Reply, ClientError> {
    let rest = base
        .strip_prefix("http://")
        .ok_or_else(|| ClientError::BadUrl(base.to_owned()))?;
    let address = rest.trim_end_matches('/').to_owned();
    let mut stream = tokio::net::TcpStream::connect(&address)
        .await
        .map_err(|source| ClientError::Connect {
            address: address.clone(),
            source,
        })?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nAccept: application/json\r\n{auth}Connection: close\r\n\r\n");
    let io = |source| ClientError::Connect {
        address: address.clone(),
        source,
    };
    stream.write_all(request.as_bytes()).await.map_err(io)?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .await
        .map_err(|source| ClientError::Connect {
            address: address.clone(),
            source,
        })?;
    parse(&raw).ok_or(ClientError::Malformed(address))
}

fn parse(raw: &[u8]) -> Option<Reply> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let mut lines = head.lines();
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let mut content_type = String::new();
    let mut chunked = false;
    let mut next = None;
    for line in lines {
        let (name, value) = line.split_once(':')?;
        match name.trim().to_ascii_lowercase().as_str() {
            "content-type" => content_type = value.trim().to_owned(),
            "transfer-encoding" => chunked = value.trim().eq_ignore_ascii_case("chunked"),
            "link" => next = next_page(value),
            _ => {}
        }
    }
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_owned()
    };
    Some(Reply {
        status,
        content_type,
        body,
        next,
    })
}

/// The target of the `rel="next"` entry of a `Link` header.
fn next_page(link: &str) -> Option<String> {
    link.split(',').find_map(|entry| {
        let (target, params) = entry.split_once(';')?;
        params
            .split(';')
            .any(|p| p.trim() == "rel=\"next\"")
            .then(|| {
                target
                    .trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_owned()
            })
    })
}

/// Decodes a chunked body.
fn dechunk(mut body: &str) -> Option<String> {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n")?;
        let size = usize::from_str_radix(size.trim(), 16).ok()?;
        if size == 0 {
            return Some(out);
        }
        out.push_str(rest.get(..size)?);
        body = rest.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked_responses() {
        let plain = parse(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n[]",
        )
        .unwrap();
        assert_eq!(
            (
                plain.status,
                plain.content_type.as_str(),
                plain.body.as_str()
            ),
            (200, "application/json", "[]")
        );
        let paged = parse(
            b"HTTP/1.1 200 OK\r\nLink: </v1/deployments?after=a%2Fb>; rel=\"next\"\r\n\r\n[]",
        )
        .unwrap();
        assert_eq!(paged.next.as_deref(), Some("/v1/deployments?after=a%2Fb"));
        assert_eq!(plain.next, None);
        let chunked = parse(b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n2\r\nef\r\n0\r\n\r\n").unwrap();
        assert_eq!((chunked.status, chunked.body.as_str()), (404, "abcdef"));
    }
}
