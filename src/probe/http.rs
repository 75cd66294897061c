//! HTTP probe: `GET` the check's URL; 2xx is healthy, anything else (redirects included) is
//! not. `localhost` in the URL means the instance. A deliberately small HTTP/1.1 client:
//! one request, `Connection: close`, only the status line is read.

use std::net::SocketAddr;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::model::manifest::HealthCheck;
use crate::model::observed::ObservedInstance;
use crate::runtime::Runtime;

/// `http://host[:port]/path` split into its parts.
#[derive(Debug, PartialEq, Eq)]
pub struct Url<'a> {
    pub host: &'a str,
    pub port: u32,
    pub path: &'a str,
}

pub fn parse(url: &str) -> Result<Url<'_>, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url:?} is not an http:// URL"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || authority.starts_with('[') => (
            host,
            port.parse().map_err(|_| format!("bad port in {url:?}"))?,
        ),
        Some(_) | None => (authority, 80),
    };
    if host.is_empty() {
        return Err(format!("{url:?} has no host"));
    }
    Ok(Url { host, port, path })
}

pub async fn probe(
    check: &HealthCheck,
    runtime: &dyn Runtime,
    instance: &ObservedInstance,
) -> Result<String, String> {
    let url = check.url.as_deref().ok_or("http check without a url")?;
    let parsed = parse(url)?;
    let addr = address(&parsed, runtime, instance).await?;
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: keel-probe\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        parsed.path, parsed.host
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("send to {addr}: {e}"))?;
    let mut line = String::new();
    BufReader::new(stream)
        .read_line(&mut line)
        .await
        .map_err(|e| format!("read from {addr}: {e}"))?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("not an HTTP response from {addr}: {:?}", line.trim_end()))?;
    match status {
        200..=299 => Ok(format!("GET {url}: {status}")),
        300..=399 => Err(format!("GET {url}: {status} (redirects count as failures)")),
        _ => Err(format!("GET {url}: {status}")),
    }
}

async fn address(
    url: &Url<'_>,
    runtime: &dyn Runtime,
    instance: &ObservedInstance,
) -> Result<SocketAddr, String> {
    if url.host == "localhost" {
        return super::endpoint(runtime, instance, url.port);
    }
    let port = u16::try_from(url.port).map_err(|_| format!("port {} is out of range", url.port))?;
    tokio::net::lookup_host((url.host, port))
        .await
        .map_err(|e| format!("resolve {}: {e}", url.host))?
        .next()
        .ok_or_else(|| format!("{} has no address", url.host))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_host_port_and_path() {
        assert_eq!(
            parse("http://localhost:8080/health?x=1").unwrap(),
            Url {
                host: "localhost",
                port: 8080,
                path: "/health?x=1"
            }
        );
        assert_eq!(
            parse("http://10.0.0.2").unwrap(),
            Url {
                host: "10.0.0.2",
                port: 80,
                path: "/"
            }
        );
        assert!(parse("https://localhost/").is_err());
        assert!(parse("http://:80/").is_err());
        assert!(parse("http://localhost:http/").is_err());
    }
}
