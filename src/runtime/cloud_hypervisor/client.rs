//! HTTP/1.1 to one VMM's API socket (`<vm dir>/api.sock`): `GET`/`PUT
//! http://localhost/api/v1/<endpoint>`, JSON bodies, one connection per call (the VMM serves
//! one request at a time anyway). A non-2xx answer is an error carrying the VMM's own message.

use std::path::{Path, PathBuf};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the VMM at {socket}: {message}")]
    Unreachable { socket: String, message: String },
    #[error("the VMM answered {status}: {message}")]
    Refused { status: u16, message: String },
    #[error("the VMM's answer is not what its API documents: {0}")]
    Malformed(String),
}

/// A VMM's API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    socket: PathBuf,
}

impl Client {
    pub fn new(socket: &Path) -> Self {
        Self {
            socket: socket.to_owned(),
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// `GET` `endpoint`, its JSON answer decoded.
    pub async fn get<T: serde::de::DeserializeOwned>(
        &self,
        endpoint: &str,
    ) -> Result<T, ClientError> {
        let body = self.call(Method::GET, endpoint, None).await?;
        serde_json::from_slice(&body).map_err(|e| ClientError::Malformed(e.to_string()))
    }

    /// `PUT` `endpoint`, with `body` as JSON when given.
    pub async fn put(
        &self,
        endpoint: &str,
        body: Option<&impl serde::Serialize>,
    ) -> Result<(), ClientError> {
        let body = body
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|e| ClientError::Malformed(e.to_string()))?;
        self.call(Method::PUT, endpoint, body).await.map(|_| ())
    }

    async fn call(
        &self,
        method: Method,
        endpoint: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Bytes, ClientError> {
        let unreachable = |message: String| ClientError::Unreachable {
            socket: self.socket.display().to_string(),
            message,
        };
        let stream = UnixStream::connect(&self.socket)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        tokio::spawn(connection);
        let mut request = Request::builder()
            .method(method)
            .uri(format!("http://localhost/api/v1/{endpoint}"))
            .header("host", "localhost")
            .header("accept", "application/json");
        if body.is_some() {
            request = request.header("content-type", "application/json");
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| ClientError::Malformed(e.to_string()))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let status = response.status().as_u16();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| unreachable(e.to_string()))?
            .to_bytes();
        if (200..300).contains(&status) {
            return Ok(bytes);
        }
        Err(ClientError::Refused {
            status,
            message: String::from_utf8_lossy(&bytes).trim().to_owned(),
        })
    }
}
