//! A minimal HTTP/1.1 client for the API (plain `http://`, one request per connection): what
//! the CLI and the tests use to talk to an agent. Deliberately small — the API is local.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An answer of the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub body: String,
    /// The path of the next page (a `Link: <path>; rel="next"` header), when there is one.
    pub next: Option<String>,
    /// The answer's entity tag (`ETag`), when it has one.
    pub etag: Option<String>,
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
    #[error("the keel API at {0} closed the stream before its end")]
    Cut(String),
}

/// `GET base + path`, with a bearer token when given.
pub async fn get(base: &str, path: &str, token: Option<&str>) -> Result<Reply, ClientError> {
    get_unless(base, path, token, None).await
}

/// `GET base + path` for a client that holds the copy tagged `held` (`If-None-Match`): a
/// `304` without a body while it is current.
pub async fn get_unless(
    base: &str,
    path: &str,
    token: Option<&str>,
    held: Option<&str>,
) -> Result<Reply, ClientError> {
    send(base, "GET", path, token, held).await
}

/// `POST base + path` without a body (the API's writes take their input from the path).
pub async fn post(base: &str, path: &str, token: Option<&str>) -> Result<Reply, ClientError> {
    send(base, "POST", path, token, None).await
}

/// What to ask: the method, the path, and the request's optional headers.
struct Ask<'a> {
    method: &'a str,
    path: &'a str,
    accept: &'a str,
    token: Option<&'a str>,
    /// The entity tag of the copy held (`If-None-Match`).
    held: Option<&'a str>,
}

/// Connects to `base` and sends the request `ask` describes (no body): the connection and
/// the address, for errors.
async fn open(base: &str, ask: &Ask<'_>) -> Result<(TcpStream, String), ClientError> {
    let rest = base
        .strip_prefix("http://")
        .ok_or_else(|| ClientError::BadUrl(base.to_owned()))?;
    let address = rest.trim_end_matches('/').to_owned();
    let io = |source| ClientError::Connect {
        address: address.clone(),
        source,
    };
    let mut stream = TcpStream::connect(&address).await.map_err(io)?;
    let auth = ask
        .token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let held = ask
        .held
        .filter(|tag| !tag.contains(['\r', '\n']))
        .map(|tag| format!("If-None-Match: {tag}\r\n"))
        .unwrap_or_default();
    let length = match ask.method {
        "GET" => "",
        _ => "Content-Length: 0\r\n",
    };
    let (method, path, accept) = (ask.method, ask.path, ask.accept);
    let request = format!("{method} {path} HTTP/1.1\r\nHost: {address}\r\nAccept: {accept}\r\n{auth}{held}{length}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.map_err(io)?;
    Ok((stream, address))
}

async fn send(
    base: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    held: Option<&str>,
) -> Result<Reply, ClientError> {
    let ask = Ask {
        method,
        path,
        accept: "application/json",
        token,
        held,
    };
    let (mut stream, address) = open(base, &ask).await?;
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

/// `GET base + path` whose answer is streamed: a 200's body goes to `sink` chunk by chunk as it
/// arrives (until the server ends it); any other answer is returned whole.
pub async fn stream(
    base: &str,
    path: &str,
    token: Option<&str>,
    mut sink: impl FnMut(&[u8]) -> std::io::Result<()>,
) -> Result<Option<Reply>, ClientError> {
    let ask = Ask {
        method: "GET",
        path,
        accept: "text/plain",
        token,
        held: None,
    };
    let (mut stream, address) = open(base, &ask).await?;
    let io = |source| ClientError::Connect {
        address: address.clone(),
        source,
    };
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = stream.read(&mut chunk).await.map_err(io)?;
        if n == 0 {
            return Err(ClientError::Malformed(address));
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).to_lowercase();
    if !head.starts_with("http/1.1 200") {
        stream.read_to_end(&mut buffer).await.map_err(io)?;
        return parse(&buffer)
            .map(Some)
            .ok_or(ClientError::Malformed(address));
    }
    let chunked = head.contains("transfer-encoding: chunked");
    let mut body = Dechunker::new(chunked);
    let mut pending = buffer.split_off(head_end);
    loop {
        let done = body.feed(&mut pending, &mut sink).map_err(io)?;
        if done {
            return Ok(None);
        }
        let n = stream.read(&mut chunk).await.map_err(io)?;
        if n == 0 {
            // A chunked body ends with its last chunk; a closed connection before it is a cut.
            return match chunked {
                true => Err(ClientError::Cut(address)),
                false => Ok(None),
            };
        }
        pending.extend_from_slice(&chunk[..n]);
    }
}

/// The longest chunk-size line accepted (a size in hex and its extensions).
const MAX_SIZE_LINE: usize = 1024;

/// Decodes a body as it arrives: chunked transfer coding, or the bytes as they are.
struct Dechunker {
    chunked: bool,
}

impl Dechunker {
    fn new(chunked: bool) -> Self {
        Self { chunked }
    }

    /// Hands every complete piece of `pending` to `sink`, keeping what is incomplete; true at
    /// the last chunk.
    fn feed(
        &mut self,
        pending: &mut Vec<u8>,
        sink: &mut impl FnMut(&[u8]) -> std::io::Result<()>,
    ) -> std::io::Result<bool> {
        if !self.chunked {
            sink(pending)?;
            pending.clear();
            return Ok(false);
        }
        let malformed = |what: &str| std::io::Error::other(format!("a malformed chunk: {what}"));
        loop {
            let Some(line_end) = pending.windows(2).position(|w| w == b"\r\n") else {
                if pending.len() > MAX_SIZE_LINE {
                    return Err(malformed("its size line is too long"));
                }
                return Ok(false);
            };
            let size_text = String::from_utf8_lossy(&pending[..line_end]);
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| malformed("its size is not hexadecimal"))?;
            if size == 0 {
                return Ok(true);
            }
            let start = line_end + 2;
            let end = start
                .checked_add(size)
                .and_then(|e| e.checked_add(2))
                .ok_or_else(|| malformed("its size is too large"))?;
            if pending.len() < end {
                return Ok(false);
            }
            if &pending[end - 2..end] != b"\r\n" {
                return Err(malformed("no CRLF after its data"));
            }
            sink(&pending[start..end - 2])?;
            pending.drain(..end);
        }
    }
}

fn parse(raw: &[u8]) -> Option<Reply> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let mut lines = head.lines();
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let mut content_type = String::new();
    let mut chunked = false;
    let mut next = None;
    let mut etag = None;
    for line in lines {
        let (name, value) = line.split_once(':')?;
        match name.trim().to_ascii_lowercase().as_str() {
            "content-type" => content_type = value.trim().to_owned(),
            "transfer-encoding" => chunked = value.trim().eq_ignore_ascii_case("chunked"),
            "link" => next = next_page(value),
            "etag" => etag = Some(value.trim().to_owned()),
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
        etag,
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
    fn a_streamed_chunked_body_is_decoded_whatever_the_pieces_it_arrives_in() {
        let wire = b"5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n";
        for piece in [1, 3, 7, wire.len()] {
            let mut out = Vec::new();
            let mut decoder = Dechunker::new(true);
            let mut pending = Vec::new();
            let mut done = false;
            for part in wire.chunks(piece) {
                pending.extend_from_slice(part);
                done = decoder
                    .feed(&mut pending, &mut |b: &[u8]| {
                        out.extend_from_slice(b);
                        Ok(())
                    })
                    .unwrap();
            }
            assert!(done, "pieces of {piece}");
            assert_eq!(out, b"hello, world", "pieces of {piece}");
        }
    }

    #[test]
    fn malformed_chunks_are_errors_not_panics() {
        for wire in [&b"ffffffffffffffff\r\nx"[..], b"5\r\nhelloXX", b"zz\r\n"] {
            let mut pending = wire.to_vec();
            let result = Dechunker::new(true).feed(&mut pending, &mut |_: &[u8]| Ok(()));
            assert!(result.is_err(), "{:?}", String::from_utf8_lossy(wire));
        }
        let mut endless = vec![b'1'; MAX_SIZE_LINE + 1];
        assert!(Dechunker::new(true)
            .feed(&mut endless, &mut |_: &[u8]| Ok(()))
            .is_err());
    }

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
