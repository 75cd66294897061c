//! Serving the API's router over TCP with the bounds an agent on a production host needs, so
//! that slow or idle clients cannot exhaust its file descriptors or tasks:
//! - at most `max_connections` at once (more wait in the kernel's backlog until one ends);
//! - a request head must arrive within `header_read_timeout` (slowloris clients are cut);
//! - a connection with no byte in or out for `idle_timeout` is closed (idle keep-alives);
//! - a failed `accept` (out of descriptors, say) is logged and retried after a pause, never
//!   spun on.
//!
//! HTTP/1.1 only (the API's clients are curl, Prometheus and the CLI). Shutting down stops
//! accepting and lets requests in flight finish.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

/// The bounds of the listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeLimits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
}

impl Default for ServeLimits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// Serves `app` on `listener` until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServeLimits,
    mut shutdown: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
            _ = crate::shutdown::stopped(&mut shutdown) => return,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "the API cannot accept a connection; retrying shortly");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = crate::shutdown::stopped(&mut shutdown) => return,
        };
        let (app, shutdown) = (app.clone(), shutdown.clone());
        tokio::spawn(async move {
            connection(stream, app, limits, shutdown).await;
            drop(permit);
        });
    }
}

/// Serves one connection until it ends, idles out, or the agent shuts down.
async fn connection(
    stream: TcpStream,
    app: Router,
    limits: ServeLimits,
    mut shutdown: watch::Receiver<bool>,
) {
    let started = Instant::now();
    let activity = Arc::new(AtomicU64::new(0));
    // A response still streaming (a followed log) keeps its connection however quiet it is.
    let streaming = Streaming::default();
    let app = app
        .layer(axum::Extension(streaming.clone()))
        .layer(axum::middleware::map_response(super::bare::fill));
    let io = Tracked {
        inner: stream,
        started,
        activity: activity.clone(),
        rewritten: None,
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let conn = builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(app));
    tokio::pin!(conn);
    let check = (limits.idle_timeout / 4).max(Duration::from_millis(50));
    loop {
        tokio::select! {
            _ = conn.as_mut() => return,
            _ = tokio::time::sleep(check) => {
                let last = Duration::from_millis(activity.load(Ordering::Relaxed));
                let idle = started.elapsed().saturating_sub(last) >= limits.idle_timeout;
                if idle && !streaming.active() {
                    // Dropping the connection closes the socket.
                    return;
                }
            }
            _ = crate::shutdown::stopped(&mut shutdown) => {
                conn.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(Duration::from_secs(5), conn.as_mut()).await;
                return;
            }
        }
    }
}

/// How many responses of one connection are still streaming (see `hold`).
#[derive(Debug, Clone, Default)]
pub struct Streaming(Arc<std::sync::atomic::AtomicUsize>);

impl Streaming {
    /// Marks a response as streaming until the returned guard is dropped (with its body).
    pub fn hold(&self) -> StreamingGuard {
        self.0.fetch_add(1, Ordering::Relaxed);
        StreamingGuard(self.0.clone())
    }

    fn active(&self) -> bool {
        self.0.load(Ordering::Relaxed) > 0
    }
}

/// See `Streaming::hold`.
pub struct StreamingGuard(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for StreamingGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A stream that records when a byte last moved (milliseconds since `started`), and gives the
/// error answers the HTTP layer writes itself a problem+json body (see `bare::rewrite_head`).
struct Tracked {
    inner: TcpStream,
    started: Instant,
    activity: Arc<AtomicU64>,
    /// A rewritten answer still being written, and the length of what it stands for.
    rewritten: Option<(Vec<u8>, usize)>,
}

impl Tracked {
    fn touch(&self) {
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.activity.store(now, Ordering::Relaxed);
    }
}

impl Tracked {
    /// Writes the rewritten answer to its end, then reports the original bytes as written.
    fn write_rewritten(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        loop {
            let Some((answer, stands_for)) = self.rewritten.as_mut() else {
                return Poll::Ready(Ok(0));
            };
            if answer.is_empty() {
                let n = *stands_for;
                self.rewritten = None;
                return Poll::Ready(Ok(n));
            }
            match Pin::new(&mut self.inner).poll_write(cx, answer) {
                Poll::Ready(Ok(n)) => {
                    answer.drain(..n);
                    self.touch();
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.touch();
        }
        polled
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.rewritten.is_none() {
            self.rewritten = super::bare::rewrite_head(data).map(|answer| (answer, data.len()));
        }
        if self.rewritten.is_some() {
            return self.write_rewritten(cx);
        }
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
